"""Shared helpers for the review tests: one fixture run, and filling in workbooks."""

from __future__ import annotations

import shutil
from pathlib import Path

import openpyxl
import pandas as pd

from pipeline.config import validate_config
from pipeline.run import run
from study import study_config, write_study

_CACHE: dict[str, Path] = {}


def base_run(tmp_root: Path) -> Path:
    """Run the fixture study once per test session; return the run folder."""
    if "run" not in _CACHE:
        study = write_study(tmp_root / "study")
        _CACHE["run"] = run(validate_config(study_config(study)), study, tmp_root / "base-run")
    return _CACHE["run"]


def copy_run(tmp_root: Path, dest: Path) -> Path:
    shutil.copytree(base_run(tmp_root), dest)
    return dest


def segments(run_folder: Path) -> pd.DataFrame:
    return pd.read_parquet(run_folder / "segments.parquet")


def fill(path: Path, sheet: str, ident, **values) -> int:
    """Write ``values`` (header -> value, '_' for ' ') into the row whose first cell is ``ident``."""
    wb = openpyxl.load_workbook(path)
    ws = wb[sheet]
    header = [c.value for c in ws[1]]
    for row in ws.iter_rows(min_row=2):
        if str(row[0].value) == str(ident):
            for key, value in values.items():
                row[header.index(key.replace("_", " "))].value = value
            wb.save(path)
            return row[0].row
    raise KeyError(f"{ident} not on sheet {sheet}")


def set_meta(path: Path, key: str, value: str) -> None:
    wb = openpyxl.load_workbook(path)
    for row in wb["_meta"].iter_rows():
        if row[0].value == key:
            row[1].value = value
    wb.save(path)
