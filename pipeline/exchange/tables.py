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
  in it, every segment the category holds, reassigned outliers included
  (``..._counts.csv``), or 0/1, whether the case counts toward the category's
  frequency label (``..._presence.csv``). A team tabulating the presence matrix must
  get the labels it publishes, so in a CQR run a case is 1 only where the label
  counts it (a segment the clustering or the judges placed there, or an outlier
  reassigned above ``cqr.count_reassigned_above``: the codebook's counted cases,
  its ``n_counted_cases`` column); in a themes run every case with a segment in the
  category counts. A category's column name is a valid SPSS and R variable name
  (``c3_training_was_silent``: a letter first, letters, digits and ``_``, at most
  40 characters, unique); the codebook CSV maps it back to the category. The
  attributes' columns are named the same way (``Years in practice`` ->
  ``years_in_practice``).

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


def _slug(name: str) -> str:
    """``name`` in lower-case ASCII letters, digits and ``_`` (accents dropped)."""
    ascii_ = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    return re.sub(r"[^0-9A-Za-z]+", "_", ascii_).strip("_").lower()


def _unique(base: str, taken: set[str]) -> str:
    """``base``, or ``base_2``, ``base_3`` ... cut to fit, whichever ``taken`` (lower
    case) does not hold yet; it is added to ``taken``."""
    out, k = base, 2
    while out.lower() in taken:
        out = f"{base[:MAX_VARIABLE - len(str(k)) - 1]}_{k}"
        k += 1
    taken.add(out.lower())
    return out


def variable_name(cid: int, name: str, taken: set[str]) -> str:
    """A column name SPSS and R accept for category ``cid`` (see the module docstring)."""
    slug = _slug(name)
    return _unique(f"c{cid}_{slug}".rstrip("_")[:MAX_VARIABLE].rstrip("_") if slug
                   else f"c{cid}", taken)


def attribute_name(name: str, taken: set[str]) -> str:
    """A column name SPSS and R accept for a case attribute from the study's table of
    cases ("Years in practice" -> ``years_in_practice``; a name that does not start
    with a letter gets ``a_`` before it), unique among the matrix's columns."""
    slug = _slug(name)
    if not slug[:1].isalpha():
        slug = f"a_{slug}".rstrip("_")
    return _unique(slug[:MAX_VARIABLE].rstrip("_"), taken)


def codebook_table(content: ExportContent) -> pd.DataFrame:
    """One row per category: tag, description, and what the matrix needs. A CQR run's
    has ``n_counted_cases`` beside ``n_cases`` (every case with a segment), since its
    label counts the former."""
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
                     "n_counted_cases": len((content.counted or {}).get(code.theme_id, ())),
                     "n_segments": int(cat.get("n_segments") or 0),
                     "variable": variable_name(code.theme_id, code.name, taken),
                     "status": content.kind})
    columns = ["tag", "description", "domain", "category", "category_id", "frequency_label",
               "n_cases", "n_counted_cases", "n_segments", "variable", "status"]
    if content.counted is None:          # a themes run: every case counts
        columns.remove("n_counted_cases")
    return pd.DataFrame(rows, columns=columns)


def case_matrix(content: ExportContent, book: pd.DataFrame) -> pd.DataFrame:
    """Cases x categories: the number of each case's segments in each category (all of
    them, reassigned outliers included), after the case's attributes. Every analysed
    case has a row, also one with no coded segment."""
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
        own = [c for c in attrs.columns if c != "case_id"]
        out = out[["case_id"] + own + list(book["variable"])]
        # the attributes' headers are the team's ("Years in practice", "=orientation"):
        # named like the category columns, so R and SPSS read every column
        taken = {"case_id", *(v.lower() for v in book["variable"])}
        out.columns = ["case_id", *(attribute_name(c, taken) for c in own),
                       *book["variable"]]
    return out


def presence_matrix(content: ExportContent, book: pd.DataFrame,
                    counts: pd.DataFrame) -> pd.DataFrame:
    """The counts matrix as 0/1: whether the case counts toward the category's label.

    In a CQR run a case with only reassigned outliers below the threshold has
    segments in the category (counts > 0) but is not counted, so the matrix takes
    the counted cases, not the counts; a themes run counts every case with a segment.
    """
    presence = counts.copy()
    for cid, v in zip(book["category_id"], book["variable"], strict=True):
        if content.counted is None:
            presence[v] = (presence[v] > 0).astype("int64")
        else:
            mine = content.counted.get(int(cid), set())
            presence[v] = presence["case_id"].astype(str).isin(mine).astype("int64")
    return presence


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
    presence = presence_matrix(content, book, counts)
    paths = {"codebook": folder / f"{stem}-codebook.csv",
             "counts": folder / f"{stem}-case_category_counts.csv",
             "presence": folder / f"{stem}-case_category_presence.csv"}
    atomic_write_text(paths["codebook"], to_csv(book, index=False))
    atomic_write_text(paths["counts"], to_csv(counts, index=False))
    atomic_write_text(paths["presence"], to_csv(presence, index=False))
    return paths, content
