"""Reading a finished run folder back, for the steps that come after a run.

``consensa stability`` (and ``consensa batch``) add files to a run folder that
exists already. They read the run's outputs with these helpers, add a column to
``themes.csv`` without touching the other bytes of the file, and render the
report again from the folder, all written atomically.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import InputError
from .fsutil import atomic_write_text
from .sheets import restore_frame, to_csv
from .types import (
    CONCEPT_COLUMNS,
    CQR_COLUMNS,
    DOMAIN_COLUMNS,
    THEME_COLUMNS,
    RunResult,
)

#: Columns of the run's CSV tables that hold numbers or booleans (the rest are text).
_INT_COLUMNS = {"theme_id", "domain_id", "n_segments", "n_cases", "n_reassigned", "n_themes",
                "cases_total"}
_FLOAT_COLUMNS = {"mean_strength", "similarity"}
_BOOL_COLUMNS = {"is_miscellaneous"}

REQUIRED_FILES = ("segments.parquet", "themes.csv", "manifest.json", "config.yaml")


def run_id_of(manifest: dict) -> str:
    """A run's identity: its config hash and start time (two runs of one config differ).

    Review workbooks and REFI-QDA GUIDs are keyed by it, so both must use this one.
    """
    return f"{manifest.get('config_sha256', '')}@{manifest.get('started_at', '')}"


def check_run_folder(folder: Path) -> Path:
    """The folder, if it is a finished Consensa run folder; else a clear InputError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("no such run folder", path=folder,
                         hint="give the folder `consensa run` printed (it holds report.html)")
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if missing:
        raise InputError(f"not a Consensa run folder (missing {', '.join(missing)})", path=folder,
                         hint="give the folder `consensa run` printed (it holds report.html)")
    return folder


def read_raw_csv(path: Path) -> pd.DataFrame:
    """A CSV as written, every cell a string ("" where empty): safe to write back unchanged.

    The run's CSVs carry a leading "'" on text that would start a spreadsheet formula
    (pipeline/sheets.py); it is taken off here, so the cells hold the exact text.
    """
    return restore_frame(pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False))


def raw_to_csv(df: pd.DataFrame) -> str:
    """``df`` as CSV text, text that would start a formula neutralised (the inverse of
    :func:`read_raw_csv`: the cells it did not change come out as they were read)."""
    buf = io.StringIO()
    to_csv(df, buf, index=False)
    return buf.getvalue()


def typed(df: pd.DataFrame) -> pd.DataFrame:
    """Raw string cells converted back to the types the run wrote (see pipeline/types.py)."""
    df = df.copy()
    for col in df.columns:
        if col in _INT_COLUMNS:
            num = pd.to_numeric(df[col], errors="coerce")
            whole = num.notna().all() and bool((num % 1 == 0).all())
            df[col] = num.astype(np.int64) if whole else num
        elif col in _FLOAT_COLUMNS:
            df[col] = pd.to_numeric(df[col], errors="coerce")
        elif col in _BOOL_COLUMNS:
            df[col] = df[col].map(lambda v: {"true": True, "false": False}.get(str(v).lower()))
    return df


def read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=list(columns))
    return typed(read_raw_csv(path))


def add_theme_column(folder: Path, column: str, values: dict[int, str], default: str = "") -> None:
    """Add (or replace) one column of ``themes.csv``, atomically, keeping every other cell."""
    path = Path(folder) / "themes.csv"
    raw = read_raw_csv(path)
    ids = pd.to_numeric(raw["theme_id"], errors="coerce")
    raw[column] = [values.get(int(t), default) if pd.notna(t) else default for t in ids]
    atomic_write_text(path, raw_to_csv(raw))


def theme_linkage(vectors: np.ndarray, theme: np.ndarray) -> np.ndarray | None:
    """The theme tree the run drew, computed again from the embeddings.

    Same computation as the domains stage (pipeline/stages/domains.py): average linkage,
    cosine distance, over the unit-length centroids of themes 0..k-1.
    """
    from scipy.cluster.hierarchy import linkage

    from .stages.cluster import centroids

    theme = np.asarray(theme, dtype=np.int64)
    k = int(theme.max()) + 1 if len(theme) and theme.max() >= 0 else 0
    if k < 2:
        return None
    link = linkage(centroids(vectors, theme, k).astype(np.float64), method="average",
                   metric="cosine")
    link[:, 2] = np.maximum(link[:, 2], 0.0)
    return link


def load_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))


def load_result(folder: Path, vectors: np.ndarray | None = None,
                extra_theme_columns: pd.DataFrame | None = None) -> RunResult:
    """A run folder as the :class:`RunResult` the report is rendered from.

    ``vectors`` (the run's embeddings, in segment order) let the theme tree be drawn
    again; without them the report has no dendrogram. The manifest's ``write``
    timing is left out: the run rendered its report before it was written, so the
    report shows the same stage times as the one the run wrote.
    ``extra_theme_columns`` (indexed by theme_id) are joined onto the themes for
    the report only.
    """
    from . import safeyaml

    folder = check_run_folder(folder)
    segments = pd.read_parquet(folder / "segments.parquet")
    themes = read_table(folder / "themes.csv", THEME_COLUMNS)
    if extra_theme_columns is not None and len(themes):
        extra = extra_theme_columns.drop(columns=[c for c in extra_theme_columns.columns
                                                  if c in themes.columns])
        themes = themes.join(extra, on="theme_id")
    domains = read_table(folder / "domains.csv", DOMAIN_COLUMNS)
    cqr = read_table(folder / "cqr_table.csv", CQR_COLUMNS)
    concepts = read_table(folder / "concepts.csv", CONCEPT_COLUMNS) \
        if (folder / "concepts.csv").is_file() else pd.DataFrame()
    manifest = load_manifest(folder)
    timings = manifest.get("timings")
    if isinstance(timings, dict):
        manifest["timings"] = {k: v for k, v in timings.items() if k != "write"}
    config = safeyaml.load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    link = None
    if vectors is not None and "theme" in segments.columns:
        link = theme_linkage(vectors, segments["theme"].to_numpy())
    return RunResult(segments=segments, themes=themes, domains=domains, cqr=cqr,
                     concepts=concepts, theme_linkage=link, manifest=manifest, config=config)


def rerender_report(folder: Path, result: RunResult) -> None:
    """Write ``report.html`` again from ``result``, atomically."""
    from .report.render import render_report

    atomic_write_text(Path(folder) / "report.html", render_report(result))
