"""Shared helpers for the review tests: filling in workbooks, synthetic runs. The run
they review is the ``review_run`` fixture (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pandas as pd


def agree_and_apply(run: Path) -> Path:
    """Two judges, every item accepted as proposed (core ideas stay as proposed), and
    ``consensa review apply``: the run's agreed codebook.yaml."""
    from pipeline.cli import main
    from pipeline.review.model import Decision, load_run
    from pipeline.review.store import ReviewStore

    items = load_run(run)
    with ReviewStore(items, create=True) as store:
        store.set_panel(["ana", "ben"])
        store.resolve([Decision(i, "accept") for i in items.items()
                       if not i.startswith("core_idea:")], by="ana")
    assert main(["review", "apply", str(run)]) == 0
    return run / "review" / "codebook.yaml"


def propose_subcategory(run: Path, theme: int, n: int = 2, name: str = "Tears in session",
                        pole: str = "") -> tuple[int, list[str]]:
    """Make the first ``n`` segments of ``theme`` a subcategory the CQR run proposed
    within it (a row of ``categories.parquet`` with the theme's category as parent, and
    the segments' ``subcategory_id``), as the cross-analysis writes one of a large
    category: the invented study's categories are too small to have any (``pole``: a
    stance subcategory's). Returns the subcategory's id and its segment ids."""
    cats = pd.read_parquet(run / "categories.parquet")
    seg = pd.read_parquet(run / "segments.parquet")
    parent = cats[(cats["parent_id"] < 0) & (cats["theme_id"] == theme)].iloc[0]
    ids = seg.loc[seg["theme"] == theme, "segment_id"].head(n).tolist()
    cid = int(cats["category_id"].max()) + 1
    row = parent.to_dict()
    cases = sorted(seg.loc[seg["segment_id"].isin(ids), "case_id"].unique())
    row.update(category_id=cid, parent_id=int(parent["category_id"]), kind="subcategory",
               name=name, segment_ids=ids, quote_ids=ids[:1], n_segments=len(ids),
               n_cases=len(cases), cases=cases, counted_cases=cases,
               definition="Crying in front of a client.", pole=pole)
    pd.concat([cats, pd.DataFrame([row])], ignore_index=True).to_parquet(
        run / "categories.parquet", index=False)
    seg.loc[seg["segment_id"].isin(ids), "subcategory_id"] = cid
    seg.to_parquet(run / "segments.parquet", index=False)
    return cid, ids


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


def sort_apart_from_ids(path, sheet: str, on: str) -> int:
    """Sort a sheet's rows on the column headed ``on``, the id column (A) left where it
    was (Excel's "continue with the current selection" on columns B onward); the rows
    sorted."""
    book = openpyxl.load_workbook(path)
    ws = book[sheet]
    k = [c.value for c in ws[1]].index(on) - 1
    rows = [[c.value for c in r[1:]] for r in ws.iter_rows(min_row=2)]
    rows.sort(key=lambda r: str(r[k]))
    for n, values in enumerate(rows, start=2):
        for col, value in enumerate(values, start=2):
            ws.cell(n, col).value = value
    book.save(path)
    return len(rows)


def fill_rows(path: Path, sheet: str, rows: dict) -> None:
    """:func:`fill` for many rows at once (``{ident: {header: value}}``), the workbook
    read and saved once: a judge's whole sheet in one step."""
    wb = openpyxl.load_workbook(path)
    ws = wb[sheet]
    header = [c.value for c in ws[1]]
    left = {str(k): v for k, v in rows.items()}
    for row in ws.iter_rows(min_row=2):
        values = left.pop(str(row[0].value), None)
        for key, value in (values or {}).items():
            row[header.index(key.replace("_", " "))].value = value
    if left:
        raise KeyError(f"{sorted(left)} not on sheet {sheet}")
    wb.save(path)


def set_meta(path: Path, key: str, value: str) -> None:
    wb = openpyxl.load_workbook(path)
    for row in wb["_meta"].iter_rows():
        if row[0].value == key:
            row[1].value = value
    wb.save(path)


def synthetic_run(folder: Path, n_segments: int, n_themes: int = 5, n_domains: int = 2) -> Path:
    """A run folder as far as the review reads it, without running the pipeline: fast,
    at any size (segment i is in theme i % n_themes; every 7th is unassigned)."""
    import json

    folder.mkdir(parents=True)
    ids = range(n_segments)
    seg = pd.DataFrame({"segment_id": [f"case{i // 100:02d}:{i % 100}:0" for i in ids],
                        "case_id": [f"case{i // 100:02d}" for i in ids],
                        "text": [f"segment {i} says something" for i in ids],
                        "theme": [-1 if i % 7 == 6 else i % n_themes for i in ids]})
    seg["theme_name"] = [f"theme {t}" if t >= 0 else "" for t in seg["theme"]]
    seg.to_parquet(folder / "segments.parquet", index=False)
    themes = []
    for t in range(n_themes):
        mine = seg[seg["theme"] == t]
        themes.append({"theme_id": t, "name": f"theme {t}", "domain_id": t % n_domains,
                       "keywords": "a; b", "n_segments": len(mine),
                       "n_cases": mine["case_id"].nunique(), "cases": "",
                       "frequency_label": "typical",
                       "quote_ids": "; ".join(mine["segment_id"][:2]),
                       "core_idea": ""})
    pd.DataFrame(themes).to_csv(folder / "themes.csv", index=False)
    pd.DataFrame([{"domain_id": d, "name": f"domain {d}", "keywords": "c",
                   "theme_ids": "; ".join(str(t) for t in range(d, n_themes, n_domains)),
                   "n_themes": len(range(d, n_themes, n_domains)), "n_segments": 0, "n_cases": 0,
                   "frequency_label": "general"} for d in range(n_domains)]
                 ).to_csv(folder / "domains.csv", index=False)
    (folder / "manifest.json").write_text(json.dumps(
        {"name": "synthetic", "config_sha256": f"{n_segments:064x}",
         "started_at": "2026-01-01T00:00:00+00:00"}))
    return folder
