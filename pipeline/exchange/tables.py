"""``consensa export csv``: the codebook for Taguette, and a case x category matrix.

Two kinds of tool take a table rather than a REFI-QDA file:

* **Taguette** imports a codebook from a CSV with exactly one of the columns ``tag``,
  ``name`` or ``path`` (the tag) and optionally ``description``; it refuses a file
  with two of them, a row with an empty tag, or a row shorter than the header. The
  codebook CSV has a ``tag`` column (the category's path, ``Domain > Category``, so
  that two categories of the same name in two domains stay two tags), its
  ``description``, and more columns Taguette ignores (domain, category, frequency
  label, counts, the matrix column that holds the category).
* **R and SPSS** take a matrix: one row per case, its attributes (from the study's
  table of cases), then one column per category: the number of the case's segments
  in it (``..._counts.csv``) or whether it occurs in the case at all, 0/1
  (``..._presence.csv``, what CQR's frequency labels count). A category's column
  name is a valid SPSS and R variable name (``c3_training_was_silent``: a letter
  first, letters, digits and ``_``, at most 40 characters, unique); the codebook CSV
  maps it back to the category.

Every file is written atomically and formula-safe (:mod:`pipeline.sheets`): a
category named ``=SUM(A1)`` or a case attribute starting with ``-`` stays text.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pandas as pd

from ..fsutil import atomic_write_text
from ..sheets import to_csv
from .agreed import ExportContent, export_content
from .refi import KIND_SUFFIX, codes_from_data, iter_codes

MAX_VARIABLE = 40


def variable_name(cid: int, name: str, taken: set[str]) -> str:
    """A column name SPSS and R accept for category ``cid`` (see the module docstring)."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^0-9A-Za-z]+", "_", ascii_).strip("_").lower()
    base = f"c{cid}_{slug}".rstrip("_")[:MAX_VARIABLE].rstrip("_") if slug else f"c{cid}"
    out, k = base, 2
    while out.lower() in taken:
        out = f"{base[:MAX_VARIABLE - len(str(k)) - 1]}_{k}"
        k += 1
    taken.add(out.lower())
    return out


def codebook_table(content: ExportContent) -> pd.DataFrame:
    """One row per category: tag, description, and what the matrix needs."""
    codes = codes_from_data(content.data, content.run.run_id)
    info = {int(c["id"]): (d, c) for d, c in content.categories()}
    for c in content.data.get("loose_categories") or []:
        info[int(c["id"])] = (None, c)
    rows, taken = [], set()
    for path, code in iter_codes(codes):
        if code.theme_id is None:
            continue
        dom, cat = info[code.theme_id]
        rows.append({"tag": path, "description": code.description,
                     "domain": "" if dom is None else str(dom.get("name", "")),
                     "category": code.name, "category_id": code.theme_id,
                     "frequency_label": str(cat.get("frequency_label", "")),
                     "n_cases": int(cat.get("n_cases") or 0),
                     "n_segments": int(cat.get("n_segments") or 0),
                     "variable": variable_name(code.theme_id, code.name, taken),
                     "status": content.kind})
    return pd.DataFrame(rows, columns=["tag", "description", "domain", "category",
                                       "category_id", "frequency_label", "n_cases",
                                       "n_segments", "variable", "status"])


def case_matrix(content: ExportContent, book: pd.DataFrame) -> pd.DataFrame:
    """Cases x categories: the number of each case's segments in each category, after the
    case's attributes. Every analysed case has a row, also one with no coded segment."""
    cases = sorted(content.run.segments["case_id"].unique())
    coded = content.assignments[content.assignments["category_id"] >= 0]
    counts = pd.crosstab(coded["case_id"], coded["category_id"])
    counts = counts.reindex(index=cases, columns=list(book["category_id"]), fill_value=0)
    counts.columns = list(book["variable"])
    counts.index.name = "case_id"
    out = counts.reset_index()
    if content.cases is not None:
        attrs = content.cases.drop_duplicates("case_id")
        out = attrs.merge(out, on="case_id", how="right").fillna("")
        out = out[["case_id"] + [c for c in attrs.columns if c != "case_id"]
                  + list(book["variable"])]
    return out


def export_tables(source: str | Path, out: str | Path | None = None, *, draft: bool = False,
                  proposal: bool = False) -> tuple[dict[str, Path], ExportContent]:
    """Write the codebook CSV and the two matrices; the files and what they hold.

    ``out`` is a folder (default ``RUN/export/``, or the folder of a codebook.yaml);
    the files are named after the run and the kind of export (``-agreed``, ``-draft``,
    ``-proposal``).
    """
    src = Path(source)
    content = export_content(src, draft=draft, proposal=proposal, sources=False)
    folder = Path(out) if out else (src / "export" if src.is_dir() else src.parent)
    stem = f"{content.run.name}{KIND_SUFFIX[content.kind]}"
    book = codebook_table(content)
    counts = case_matrix(content, book)
    presence = counts.copy()
    for v in book["variable"]:
        presence[v] = (presence[v] > 0).astype("int64")
    paths = {"codebook": folder / f"{stem}-codebook.csv",
             "counts": folder / f"{stem}-case_category_counts.csv",
             "presence": folder / f"{stem}-case_category_presence.csv"}
    atomic_write_text(paths["codebook"], to_csv(book, index=False))
    atomic_write_text(paths["counts"], to_csv(counts, index=False))
    atomic_write_text(paths["presence"], to_csv(presence, index=False))
    return paths, content
