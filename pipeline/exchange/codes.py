"""Human codes: import them, and place them on a Consensa run's segments.

Two kinds of file hold human codes:

* a table (``.csv``/``.tsv``/``.xlsx``), one row per coded passage: the case, the
  coded text and/or its ``start``/``end`` offsets, the code, and optionally the
  coder. A cell may hold several codes joined with ";", and a passage may also
  appear on several rows. Code hierarchies are written as paths,
  ``Parent > Child`` (the top level is the *domain*). Columns are found by name
  (see :data:`COLUMN_ALIASES`), or given explicitly.
* a REFI-QDA project (``.qdpx``, or a bare ``project.qde``), read by
  :mod:`pipeline.exchange.refi`: its text sources, nested codes, coders (users) and
  codings, with offsets counted in Unicode code points of each source's plain
  text.

**Placing codes.** Every coded passage is placed in Consensa's own source text of
its case (``SourceText.text``, as the run read it), so its offsets can be compared
with the segments' ``start_char``/``end_char``:

* when the codes come with their own copy of the text (a .qdpx), the two texts are
  aligned (:class:`TextMap`): both are brought to a canonical form (Unicode NFC,
  every run of whitespace - CRLF, LF, tabs, blank lines - as one space, byte-order
  marks dropped) with a map back to the original positions; identical canonical
  texts map exactly, otherwise matching blocks are found (unique anchors, then a
  character diff in the gaps) and a passage keeps the part of it that matches;
* when a table gives offsets, they are read against Consensa's text as it is and
  against its variants with other line endings (LF, CRLF) and Unicode forms (NFC,
  NFD); the variant is chosen per case: the one under which the rows' quotes are
  found at their offsets, else under which the passages start and end on word
  boundaries. Offsets whose quote is not there are located by their text;
* when a table gives only the text, it is located in Consensa's text: exactly
  after canonicalisation, else approximately (:class:`Locator`): the densest band
  of matching 6-grams, joined by nearby bands when the quote skips text ("[...]",
  speaker labels such as "Dan:" that the transcript lacks), then a character
  alignment; it is placed when at least ``min_match`` (default 0.6) of its
  characters match. A ``turn_index`` column, when given, breaks ties between
  several places. Located and aligned spans never start or end on whitespace.

A passage that cannot be placed is kept in the table with its reason (case not
in the run, text not found, offsets outside the text) and counted.

**Codes of a segment.** A code is *assigned* to a segment when the passages of
that code (by one coder, or pooled over coders) cover at least ``min_coverage``
(default 0.5) of the segment's characters; a code covering some but less is a
*partial* overlap, counted and listed but not assigned. A segment's *primary*
code is its assigned code with the highest coverage (ties: the code more coders
gave, then the deeper code, then alphabetical order).
"""

from __future__ import annotations

import bisect
import difflib
import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..runfolder import RunFolder, run_id_of
from ..textio import decode_bytes

SEPARATOR = ">"
JOIN = " > "
MIN_COVERAGE = 0.5
MIN_MATCH = 0.6

#: The imported codings, one row per (passage, code).
#: case        str  the case as the codes name it (a file name, a source name)
#: code        str  the code's full path, levels joined with " > "
#: coder       str  "" when not recorded
#: start, end  int  offsets into the codes' own text of the case (code points); -1 if not given
#: text        str  the coded text as the file gives it ("" if not given)
#: turn_index  int  a hint where the text is (-1 if not given)
#: origin      str  where the coding came from ("row 12", "selection <guid>")
CODING_COLUMNS = ("case", "code", "coder", "start", "end", "text", "turn_index", "origin")

#: The codebook: every code, also those never applied.
#: code str (full path); name str (last level); parent str (path, "" at the top);
#: domain str (first level); depth int (1 = top); guid str; description str; color str
CODE_COLUMNS = ("code", "name", "parent", "domain", "depth", "guid", "description", "color")

#: The codings placed in a run's source texts: CODING_COLUMNS plus
#: case_id str (the run's case, "" if none matched); start_char, end_char int (in
#: Consensa's source text, -1 if not placed); how str (identical / normalised /
#: aligned / offsets as is / offsets with <variant> / located / located approximately);
#: match float (share of the passage's characters found); status str ("placed" or why not)
PLACED_COLUMNS = CODING_COLUMNS + ("case_id", "start_char", "end_char", "how", "match", "status")

#: Column names recognised in a codes table, in order of preference (case-insensitive).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "case": ("case_id", "case", "document", "document name", "doc", "source", "file",
             "transcript", "interview"),
    "code": ("code", "codes", "code_path", "code path", "node", "nodes", "tag", "label"),
    "text": ("text", "quote", "quotation", "segment", "segment_text", "excerpt", "passage"),
    "start": ("start_char", "start", "startposition", "start_position", "begin", "from"),
    "end": ("end_char", "end", "endposition", "end_position", "stop", "to"),
    "coder": ("coder", "coders", "user", "annotator", "annotator_id", "rater", "creatinguser",
              "created by"),
    "turn_index": ("turn_index", "turn"),
}
#: The columns of MAXQDA's export of coded segments (Reports > Export > Coded segments,
#: as a table): its "Begin" and "End" count paragraphs, not characters, and its code
#: paths are joined with a backslash ("Parent\Child")
MAXQDA_SEGMENTS = ("document name", "code", "begin", "end", "segment")
_IGNORABLE = {"\ufeff", "\u200b", "\u200c", "\u200d", "\u2060", "\u00ad"}


# --- The imported codes -----------------------------------------------------------

@dataclass
class HumanCodes:
    """Codes read from one file, before they are placed on a run."""

    path: str
    kind: str                                   # "table", "qdpx" or "qde"
    codings: pd.DataFrame                       # CODING_COLUMNS
    codebook: pd.DataFrame                      # CODE_COLUMNS
    texts: dict[str, str] = field(default_factory=dict)   # case -> the codes' own text
    notes: list[str] = field(default_factory=list)        # what was left out, and why
    info: dict = field(default_factory=dict)              # e.g. origin tool, source counts

    @property
    def coders(self) -> list[str]:
        return sorted(c for c in self.codings["coder"].unique() if c)

    @property
    def hierarchical(self) -> bool:
        return bool(len(self.codebook)) and int(self.codebook["depth"].max()) > 1


def split_path(code: str, separator: str = SEPARATOR) -> list[str]:
    """``"A > B >C"`` -> ``["A", "B", "C"]`` (levels stripped, empty levels dropped)."""
    return [p.strip() for p in str(code).split(separator) if p.strip()]


def join_path(parts: Iterable[str]) -> str:
    return JOIN.join(parts)


def codebook_from_paths(paths: Iterable[str], descriptions: Mapping[str, str] | None = None,
                        guids: Mapping[str, str] | None = None,
                        colors: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The codebook of a set of code paths, their parents included, in first-seen order."""
    rows: dict[str, dict] = {}
    for path in paths:
        parts = split_path(path, ">")
        for depth in range(1, len(parts) + 1):
            code = join_path(parts[:depth])
            if code not in rows:
                rows[code] = {"code": code, "name": parts[depth - 1],
                              "parent": join_path(parts[:depth - 1]), "domain": parts[0],
                              "depth": depth,
                              "guid": (guids or {}).get(code, ""),
                              "description": (descriptions or {}).get(code, ""),
                              "color": (colors or {}).get(code, "")}
    return pd.DataFrame(list(rows.values()), columns=list(CODE_COLUMNS)).astype(
        {"depth": "int64"})



#: What to do with a table whose bytes are not text: the decoder's own advice is about
#: transcripts (ingest.encoding, .docx), which does not fit a table of codes
TABLE_AS_TEXT = ("save the table again as CSV UTF-8 (Excel: Save As > 'CSV UTF-8'), or "
                 "give the .xlsx workbook itself")


def decoded_table(path: Path, shown: str) -> str:
    """The text of a CSV/TSV table, its encoding detected; bytes that are not text are an
    :class:`InputError` naming the file, with advice for a table."""
    try:
        return decode_bytes(path.read_bytes(), "auto", path=shown)[0]
    except InputError as exc:
        raise InputError(exc.reason, path=shown, hint=TABLE_AS_TEXT) from None

def read_table(path: Path,
           sheet: str | int) -> tuple[pd.DataFrame, list[str], list[tuple[int, int, str]], str]:
    """All cells of the table as str; its header row as the file writes it (pandas
    renames a repeated column name, so :func:`read_codes_table` checks this row); and,
    for a workbook, where its formula cells are and the sheet's name (pandas reads a
    formula's saved result, or nothing, as if it had been typed), else ``[]`` and ""."""
    from ..stages.ingest import check_row_widths, check_zip, formula_positions, header_row

    shown = str(path)
    formulas: list[tuple[int, int, str]] = []
    name = ""
    if path.suffix.lower() == ".xlsx":
        data = path.read_bytes()
        check_zip(data, shown, ".xlsx")
        try:
            with pd.ExcelFile(io.BytesIO(data), engine="openpyxl") as book:
                frame = pd.read_excel(book, sheet_name=sheet, dtype=str).fillna("")
                written = header_row(pd.read_excel(book, sheet_name=sheet, header=None,
                                                   nrows=1, dtype=object))
                name = sheet if isinstance(sheet, str) else str(book.sheet_names[sheet])
                formulas = formula_positions(data, name)
        except Exception as exc:  # openpyxl raises many types for a damaged file
            raise InputError(f"could not be read as an Excel workbook ({type(exc).__name__})",
                             path=shown, hint="open it in Excel and save it again as .xlsx "
                             "(or as CSV, UTF-8)") from exc
    else:
        text = decoded_table(path, shown)
        header = text.lstrip("\ufeff").split("\n", 1)[0]
        delimiter = "\t" if path.suffix.lower() == ".tsv" else \
            max((",", ";", "\t"), key=header.count)
        check_row_widths(text, delimiter, shown)
        try:
            frame = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str,
                                keep_default_na=False)
            written = header_row(pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str,
                                             keep_default_na=False, header=None, nrows=1))
        except ValueError as exc:
            raise InputError(f"could not be read as a CSV table ({exc})", path=shown,
                             hint="save it again as CSV (UTF-8), one row per coded passage"
                             ) from exc
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    return frame, written, formulas, name


def _find_columns(frame: pd.DataFrame, given: Mapping[str, str] | None,
                  shown: str) -> dict[str, str | None]:
    names = list(frame.columns)
    lower = {n.casefold(): n for n in reversed(names)}
    found: dict[str, str | None] = {}
    for key, aliases in COLUMN_ALIASES.items():
        if given and given.get(key):
            name = given[key]
            if name not in names and name.casefold() not in lower:
                raise InputError(f"has no column '{name}' (given for {key}); its columns are "
                                 f"{names}", path=shown,
                                 hint=f"check the column name given for {key}")
            found[key] = name if name in names else lower[name.casefold()]
        else:
            found[key] = next((lower[a] for a in aliases if a in lower), None)
    for key in ("case", "code"):
        if found[key] is None:
            raise InputError(
                f"has no {key} column; its columns are {names}", path=shown,
                hint=f"name the column '{COLUMN_ALIASES[key][0]}' (or one of "
                     f"{', '.join(COLUMN_ALIASES[key][1:4])}), or give it with "
                     f"--column {key}=NAME")
    has_offsets = found["start"] is not None and found["end"] is not None
    if found["text"] is None and not has_offsets:
        raise InputError(
            f"has neither a text column nor start/end offset columns; its columns are {names}",
            path=shown, hint="add the coded text (column 'text') or its character offsets "
                             "in the transcript (columns 'start' and 'end')")
    return found


def read_codes_table(path: str | Path, *, separator: str = SEPARATOR,
                     columns: Mapping[str, str] | None = None,
                     sheet: str | int = 0) -> HumanCodes:
    """A table of codes: one row per coded passage (see the module docstring).

    A column read here whose name the header gives twice (two ``text`` columns, or
    ``Text`` and ``text``) is refused, since only one could be read and the other's
    passages would be lost (:func:`~pipeline.stages.ingest.check_columns_read_once`).

    A workbook's formula cells in the columns read are treated as in a transcript
    workbook (:func:`~pipeline.stages.ingest.formula_cell_notes`): a coded text cell
    that is a formula is not the words that were coded, so it is read as empty (the
    row is placed by its offsets, if it has them); a formula with no saved result
    elsewhere reads as empty. Either way a note counts and names the cells."""
    from ..stages.ingest import check_columns_read_once, formula_cell_notes

    path = Path(path)
    shown = str(path)
    frame, written, formulas, sheet_name = read_table(path, sheet)
    col = _find_columns(frame, columns, shown)
    maxqda = _maxqda_notes(frame, col, columns)
    if maxqda and separator == SEPARATOR and any(
            "\\" in c and SEPARATOR not in c for c in frame[col["code"]]):
        separator = "\\"
        maxqda.append("its code paths are read with MAXQDA's separator '\\' "
                      "(Parent\\Child); --separator sets another")
    check_columns_read_once(
        written, list(frame.columns), {f"the {key} column": name for key, name in col.items()},
        shown, letters=path.suffix.lower() == ".xlsx")
    notes, _ = formula_cell_notes(
        frame, formulas, col["text"], [name for key, name in col.items() if key != "text"],
        sheet_name, so="a formula is not the words that were coded, so those cells were read "
                       "as empty (a row with start/end offsets is placed by them)")
    notes = maxqda + notes

    def cells(key: str) -> list[str]:
        name = col[key]
        return [str(v) for v in frame[name]] if name else [""] * len(frame)

    rows = []
    no_code = no_case = 0
    bad_offsets: list[int] = []
    nothing_to_place: list[int] = []
    for i, (case, code, text, start, end, coder, turn) in enumerate(zip(
            *(cells(k) for k in ("case", "code", "text", "start", "end", "coder", "turn_index")),
            strict=True)):
        row = i + 2
        codes = [join_path(split_path(c, separator)) for c in code.split(";")]
        codes = list(dict.fromkeys(c for c in codes if c))
        if not codes:
            no_code += 1
            continue
        if not case.strip():
            no_case += 1
            continue
        s = _as_int(start)
        e = _as_int(end)
        if (start.strip() or end.strip()) and (s is None or e is None or s < 0 or e <= s):
            bad_offsets.append(row)
            s = e = None
        if s is None and not text.strip():
            if row not in bad_offsets[-1:]:           # that row's note says so already
                nothing_to_place.append(row)
                continue
            # its offsets are unreadable and it has no text: kept, so that the code is
            # counted as not placed (and has its row in by_code.csv), not dropped unseen
        t = _as_int(turn)
        for c in codes:
            rows.append((case.strip(), c, coder.strip(), -1 if s is None else s,
                         -1 if e is None else e, text, -1 if t is None else t, f"row {row}"))
    if no_code:
        notes.append(f"{no_code} row(s) without a code were left out (uncoded rows)")
    if no_case:
        notes.append(f"{no_case} row(s) without a case were left out: fill in the "
                     f"'{col['case']}' column")
    if bad_offsets:
        listed = ", ".join(map(str, bad_offsets[:10])) + (" ..." if len(bad_offsets) > 10 else "")
        notes.append(f"{len(bad_offsets)} row(s) have start/end offsets that are not whole "
                     f"numbers with start < end (rows {listed}); their text was used instead "
                     "where they have one, and those without are not placed (coding_spans.csv)")
    if nothing_to_place:
        listed = ", ".join(map(str, nothing_to_place[:10])) + (" ..." if len(nothing_to_place) > 10
                                                               else "")
        notes.append(f"{len(nothing_to_place)} row(s) have a case and a code but neither the coded "
                     f"text nor usable offsets, so they were left out (rows {listed}): fill in "
                     f"the '{col['text'] or 'text'}' column")
    if not rows:
        # the notes say why each row went: without them the refusal names no row to mend
        why = "; ".join(notes)
        raise InputError("holds no coded passage (no row has a case, a code and a text or "
                         "offsets)" + (f": {why}" if why else ""), path=shown,
                         hint="one row per coded passage: case, code, and the coded text or "
                              "its start/end offsets")
    codings = pd.DataFrame(rows, columns=list(CODING_COLUMNS)).astype(
        {"start": "int64", "end": "int64", "turn_index": "int64"})
    return HumanCodes(path=shown, kind="table", codings=codings,
                      codebook=codebook_from_paths(codings["code"]), notes=notes,
                      info={"columns": {k: v for k, v in col.items() if v}})


def _maxqda_notes(frame: pd.DataFrame, col: dict[str, str | None],
                  given: Mapping[str, str] | None) -> list[str]:
    """For MAXQDA's table of coded segments (:data:`MAXQDA_SEGMENTS`), what is read
    otherwise than its column names say, and why ([] for any other table). Its "Begin"
    and "End" are paragraph numbers: read as character offsets, every row was "not a
    whole number with start < end" (6-6) or a passage at the start of the transcript,
    so they are not read (unless given with --column) and the coded text is located."""
    names = {str(c).casefold() for c in frame.columns}
    if not set(MAXQDA_SEGMENTS) <= names:
        return []
    given = given or {}
    said = [f"a MAXQDA export of coded segments: '{col['case']}' is the case, "
            f"'{col['code']}' the code, '{col['text']}' the coded text"
            + (f", '{col['coder']}' the coder" if col.get("coder") else "")]
    if not given.get("start") and not given.get("end") and \
            str(col.get("start") or "").casefold() == "begin":
        col["start"] = col["end"] = None
        said[0] += ("; its 'Begin' and 'End' count paragraphs, not characters, so each "
                    "passage is found by its text")
    return said


def _as_int(text: str) -> int | None:
    m = re.fullmatch(r"\s*(-?\d+)(?:\.0*)?\s*", text or "")
    return int(m.group(1)) if m else None


# --- Canonical text and text alignment ----------------------------------------------

@dataclass(frozen=True)
class Canonical:
    """A text in canonical form, each character mapped back to its original range.

    ``text[i]`` came from ``original[starts[i]:ends[i]]``.
    """

    text: str
    starts: np.ndarray
    ends: np.ndarray

    def from_original(self, start: int, end: int) -> tuple[int, int]:
        """The canonical range of the characters that come from ``original[start:end]``."""
        a = int(np.searchsorted(self.ends, start, side="right"))
        b = int(np.searchsorted(self.starts, end, side="left"))
        return a, b

    def to_original(self, a: int, b: int) -> tuple[int, int]:
        return int(self.starts[a]), int(self.ends[b - 1])


_WORDS = re.compile(r"\s+|\S+")


def _clusters(text: str, offset: int = 0) -> Iterable[tuple[int, int]]:
    """Boundaries of base characters with the combining marks that follow them."""
    start = None
    for i, ch in enumerate(text):
        if start is not None and (unicodedata.combining(ch) or 0x1160 <= ord(ch) <= 0x11FF):
            continue
        if start is not None:
            yield offset + start, offset + i
        start = i
    if start is not None:
        yield offset + start, offset + len(text)


def canonical(text: str) -> Canonical:
    """NFC, whitespace runs as one space (none at the ends), ignorable characters dropped."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    n = len(text)
    for m in _WORDS.finditer(text):
        s, e = m.span()
        piece = m.group()
        if piece[0].isspace():
            if out and e < n:
                out.append(" ")
                starts.append(s)
                ends.append(e)
            continue
        if piece.isascii():
            out.append(piece)
            starts.extend(range(s, e))
            ends.extend(range(s + 1, e + 1))
            continue
        for cs, ce in _clusters(piece, s):
            chunk = unicodedata.normalize("NFC", text[cs:ce])
            chunk = "".join(ch for ch in chunk if ch not in _IGNORABLE)
            out.append(chunk)
            starts.extend([cs] * len(chunk))
            ends.extend([ce] * len(chunk))
    joined = "".join(out)
    if joined.endswith(" "):          # a trailing space left by ignorable characters
        joined = joined[:-1]
        starts, ends = starts[:-1], ends[:-1]
    return Canonical(joined, np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64))


def _common_prefix(x: str, i: int, y: str, j: int, limit: int) -> int:
    """Length of the longest common prefix of ``x[i:]`` and ``y[j:]`` (at most ``limit``)."""
    if limit <= 0 or x[i] != y[j]:
        return 0
    lo, step = 1, 1
    while lo + step <= limit and x[i + lo:i + lo + step] == y[j + lo:j + lo + step]:
        lo += step
        step *= 2
    while step > 1:               # x[i:i+lo] == y[j:j+lo]; search the rest, halving
        step //= 2
        if lo + step <= limit and x[i + lo:i + lo + step] == y[j + lo:j + lo + step]:
            lo += step
    while lo < limit and x[i + lo] == y[j + lo]:
        lo += 1
    return lo


def _common_suffix(x: str, i: int, y: str, j: int, limit: int) -> int:
    """Length of the longest common suffix of ``x[:i]`` and ``y[:j]`` (at most ``limit``)."""
    if limit <= 0 or x[i - 1] != y[j - 1]:
        return 0
    lo, step = 1, 1
    while lo + step <= limit and x[i - lo - step:i - lo] == y[j - lo - step:j - lo]:
        lo += step
        step *= 2
    while step > 1:
        step //= 2
        if lo + step <= limit and x[i - lo - step:i - lo] == y[j - lo - step:j - lo]:
            lo += step
    while lo < limit and x[i - lo - 1] == y[j - lo - 1]:
        lo += 1
    return lo


def _lis(values: list[int]) -> list[int]:
    """Indices of a longest strictly increasing subsequence of ``values``."""
    tails: list[int] = []
    tail_idx: list[int] = []
    prev = [-1] * len(values)
    for k, v in enumerate(values):
        pos = bisect.bisect_left(tails, v)
        if pos == len(tails):
            tails.append(v)
            tail_idx.append(k)
        else:
            tails[pos] = v
            tail_idx[pos] = k
        prev[k] = tail_idx[pos - 1] if pos else -1
    out = []
    k = tail_idx[-1] if tail_idx else -1
    while k >= 0:
        out.append(k)
        k = prev[k]
    return out[::-1]


def align_blocks(x: str, y: str) -> list[tuple[int, int, int]]:
    """Matching blocks ``(i, j, n)`` with ``x[i:i+n] == y[j:j+n]``, increasing in i and j."""
    blocks: list[tuple[int, int, int]] = []
    _align(x, 0, len(x), y, 0, len(y), blocks, 32, 0)
    blocks.sort()
    return [b for b in blocks if b[2] > 0]


def _align(x: str, x0: int, x1: int, y: str, y0: int, y1: int,
           out: list[tuple[int, int, int]], k: int, depth: int) -> None:
    if x0 >= x1 or y0 >= y1:
        return
    p = _common_prefix(x, x0, y, y0, min(x1 - x0, y1 - y0))
    if p:
        out.append((x0, y0, p))
        x0, y0 = x0 + p, y0 + p
    s = _common_suffix(x, x1, y, y1, min(x1 - x0, y1 - y0)) if x0 < x1 and y0 < y1 else 0
    if s:
        out.append((x1 - s, y1 - s, s))
        x1, y1 = x1 - s, y1 - s
    if x0 >= x1 or y0 >= y1:
        return
    if (x1 - x0) * (y1 - y0) <= 250_000:
        sm = difflib.SequenceMatcher(None, x[x0:x1], y[y0:y1], autojunk=False)
        out.extend((x0 + a, y0 + b, n) for a, b, n in sm.get_matching_blocks() if n)
        return
    if depth > 8 or k < 6:
        return
    anchors = _unique_anchors(x, x0, x1, y, y0, y1, k)
    if not anchors:
        _align(x, x0, x1, y, y0, y1, out, k // 2, depth + 1)
        return
    chosen = [anchors[i] for i in _lis([b for _, b in anchors])]
    ci, cj = x0, y0
    for i, j in chosen:
        if i < ci or j < cj:              # inside the block found last
            continue
        _align(x, ci, i, y, cj, j, out, k, depth + 1)
        n = _common_prefix(x, i, y, j, min(x1 - i, y1 - j))
        out.append((i, j, n))
        ci, cj = i + n, j + n
    _align(x, ci, x1, y, cj, y1, out, k, depth + 1)


def _unique_anchors(x: str, x0: int, x1: int, y: str, y0: int, y1: int,
                    k: int) -> list[tuple[int, int]]:
    """Pairs of word-start positions whose next ``k`` characters occur once in each range."""
    def grams(t: str, a: int, b: int) -> dict[str, int]:
        seen: dict[str, int] = {}
        for i in _word_starts(t, a, b - k):
            g = t[i:i + k]
            seen[g] = -1 if g in seen else i
        return seen

    gx = grams(x, x0, x1)
    gy = grams(y, y0, y1)
    return sorted((i, gy[g]) for g, i in gx.items() if i >= 0 and gy.get(g, -1) >= 0)


def _word_starts(t: str, a: int, b: int) -> Iterable[int]:
    if a <= b and (a == 0 or t[a - 1] == " "):
        yield a
    i = t.find(" ", a)
    while 0 <= i < b:
        yield i + 1
        i = t.find(" ", i + 1)


def _strip(text: str, s: int, e: int) -> tuple[int, int]:
    """``(s, e)`` without the whitespace at its ends (unchanged if it is all whitespace)."""
    piece = text[s:e]
    if not piece.strip():
        return s, e
    return s + len(piece) - len(piece.lstrip()), e - len(piece) + len(piece.rstrip())


class TextMap:
    """Maps offsets in one text of a case (the codes') into another (Consensa's)."""

    def __init__(self, source: str, target: str) -> None:
        self.same = source == target
        self.target = target
        self.a = canonical(source)
        self.b = canonical(target)
        if self.same or self.a.text == self.b.text:
            self.blocks = [(0, 0, len(self.a.text))]
            self.how = "identical" if self.same else "normalised"
        else:
            self.blocks = align_blocks(self.a.text, self.b.text)
            self.how = "aligned"
        self._starts = [b[0] for b in self.blocks]
        self.matched = sum(b[2] for b in self.blocks) / max(len(self.a.text), 1)

    def span(self, start: int, end: int) -> tuple[int, int, float] | None:
        """``(start, end, share matched)`` in the target, or None if nothing of it matches."""
        if self.same:
            return start, end, 1.0
        a, b = self.a.from_original(start, end)
        if b <= a:
            return None
        k = max(bisect.bisect_right(self._starts, a) - 1, 0)
        first = last = None
        matched = 0
        while k < len(self.blocks) and self.blocks[k][0] < b:
            i, j, n = self.blocks[k]
            lo, hi = max(a, i), min(b, i + n)
            if lo < hi:
                matched += hi - lo
                if first is None:
                    first = j + lo - i
                last = j + hi - i
            k += 1
        if first is None or last is None or last <= first:
            return None
        s, e = _strip(self.target, *self.b.to_original(first, last))
        return s, e, matched / (b - a)


class Locator:
    """Finds a quote in a text: exactly (after canonicalisation) or approximately."""

    K = 6

    def __init__(self, text: str) -> None:
        self.text = text
        self.c = canonical(text)
        self._index: dict[str, list[int]] | None = None

    def _grams(self) -> dict[str, list[int]]:
        if self._index is None:
            index: dict[str, list[int]] = {}
            t = self.c.text
            for i in _word_starts(t, 0, len(t) - self.K):
                index.setdefault(t[i:i + self.K], []).append(i)
            self._index = index
        return self._index

    def find(self, quote: str, hint: int | None = None,
             min_match: float = MIN_MATCH) -> tuple[int, int, float, int] | None:
        """``(start, end, share matched, places found)`` in the original text, or None."""
        q = canonical(quote).text
        q = re.sub(r"^(?:…|\.\.\.)\s*|\s*(?:…|\.\.\.)$", "", q)
        if not q:
            return None
        t = self.c.text
        hint_c = None if hint is None or hint < 0 else \
            self.c.from_original(hint, hint + 1)[0]
        found = []
        i = t.find(q)
        while i >= 0:
            found.append(i)
            i = t.find(q, i + 1)
        if found:
            best = min(found, key=lambda p: abs(p - hint_c)) if hint_c is not None else found[0]
            s, e = self.c.to_original(best, best + len(q))
            return s, e, 1.0, len(found)
        got = self._approximate(q, hint_c, min_match)
        if got is None:
            return None
        s, e = _strip(self.text, got[0], got[1])
        return s, e, got[2], got[3]

    def _approximate(self, q: str, hint_c: int | None,
                     min_match: float) -> tuple[int, int, float, int] | None:
        """Where most of ``q`` matches: the densest band of matching word-start 6-grams
        (hits on nearby diagonals), joined by further bands while less than
        ``min_match`` of ``q`` is covered (a quote that skips text, "[...]"), then
        aligned character by character."""
        index = self._grams()
        hits: list[tuple[int, int]] = []
        for i in _word_starts(q, 0, len(q) - self.K):
            for j in index.get(q[i:i + self.K], ())[:200]:
                hits.append((j - i, i))
        if not hits:
            return None
        hits.sort()
        width = max(20, len(q) // 4)
        t = self.c.text
        bands: list[tuple[int, int]] = []          # (lowest, highest diagonal) per band
        covered: set[int] = set()
        candidates = hits
        result = None
        for _ in range(5):
            band = _densest(candidates, width, hint_c, covered)
            if band is None:
                break
            covered.update(i for d, i in hits if band[0] <= d <= band[1])
            trial = bands + [band]
            lo = max(0, min(b[0] for b in trial) - width)
            hi = min(len(t), max(b[1] for b in trial) + len(q) + width)
            blocks = [blk for blk in align_blocks(q, t[lo:hi]) if blk[2] >= 3]
            matched = sum(blk[2] for blk in blocks) / len(q)
            solid = [blk for blk in blocks if blk[2] >= 8] or blocks
            if blocks and (result is None or matched >= result[2] + 0.05):
                bands = trial
                (qa, ta, _), (qb, tb, nb) = solid[0], solid[-1]
                ta, tb = lo + ta, lo + tb + nb
                qb += nb
                while qa > 0 and ta > 0 and q[qa - 1] == t[ta - 1]:
                    qa, ta = qa - 1, ta - 1
                while qb < len(q) and tb < len(t) and q[qb] == t[tb]:
                    qb, tb = qb + 1, tb + 1
                while ta < tb and t[ta] in ":;,. ":        # a label's colon, say
                    ta += 1
                s, e = self.c.to_original(ta, tb)
                result = (s, e, matched, 1)
            if result is not None and result[2] >= 0.95:
                break
            reach = max(2000, 4 * len(q))
            d_lo = min(b[0] for b in bands or [band]) - reach
            d_hi = max(b[1] for b in bands or [band]) + reach
            candidates = [(d, i) for d, i in hits if d_lo <= d <= d_hi and i not in covered]
        if result is None or result[2] < min_match:
            return None
        return result


def _densest(hits: list[tuple[int, int]], width: int, hint_c: int | None,
             covered: set[int]) -> tuple[int, int] | None:
    """The band of diagonals (at most ``width`` apart) holding the most hits not yet covered."""
    hits = [h for h in hits if h[1] not in covered]
    if len(hits) < 2:
        return None
    best = (0, 0, 0)
    lo = 0
    for hi in range(len(hits)):
        while hits[hi][0] - hits[lo][0] > width:
            lo += 1
        n = hi - lo + 1
        if n > best[0] or (n == best[0] and hint_c is not None and
                           abs(hits[lo][0] - hint_c) < abs(hits[best[1]][0] - hint_c)):
            best = (n, lo, hi)
    return hits[best[1]][0], hits[best[2]][0]


# --- Offsets against variants of a text -------------------------------------------

_LINES = re.compile(r"\r\n|\r|\n|[^\r\n]+")


def text_variant(text: str, newline: str | None = None,
                 form: str | None = None) -> tuple[str, np.ndarray, np.ndarray]:
    """``text`` with its line endings as ``newline`` and in Unicode ``form``, mapped back.

    Returns ``(variant, starts, ends)``: ``variant[i]`` came from ``text[starts[i]:ends[i]]``.
    """
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for m in _LINES.finditer(text):
        s, e = m.span()
        piece = m.group()
        if piece[0] in "\r\n":
            rep = newline if newline is not None else piece
            out.append(rep)
            starts.extend([s] * len(rep))
            ends.extend([e] * len(rep))
        elif form is None or piece.isascii():
            out.append(piece)
            starts.extend(range(s, e))
            ends.extend(range(s + 1, e + 1))
        else:
            for cs, ce in _clusters(piece, s):
                chunk = unicodedata.normalize(form, text[cs:ce])
                out.append(chunk)
                starts.extend([cs] * len(chunk))
                ends.extend([ce] * len(chunk))
    return "".join(out), np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)


def offset_variants(text: str) -> list[tuple[str, str, np.ndarray | None, np.ndarray | None]]:
    """``(name, variant, starts, ends)`` for the text as is and its plausible re-encodings."""
    out: list[tuple[str, str, np.ndarray | None, np.ndarray | None]] = [("as is", text, None, None)]
    newlines = [None]
    if "\r" in text:
        newlines.append("\n")
    if "\n" in text and "\r\n" not in text:
        newlines.append("\r\n")
    forms: list[str | None] = [None]
    if not text.isascii():
        if not unicodedata.is_normalized("NFC", text):
            forms.append("NFC")
        if not unicodedata.is_normalized("NFD", text):
            forms.append("NFD")
    for nl in newlines:
        for form in forms:
            if nl is None and form is None:
                continue
            variant, s, e = text_variant(text, nl, form)
            name = "+".join(p for p in ({"\n": "LF", "\r\n": "CRLF"}.get(nl or ""), form) if p)
            if variant != text:
                out.append((name, variant, s, e))
    return out


def _same_quote(found: str, quote: str) -> bool:
    a = canonical(found).text
    b = re.sub(r"\s*(?:…|\.\.\.)$", "", canonical(quote).text)
    if not b:
        return False
    return a == b or (len(b) >= 20 and a.startswith(b)) or (len(a) >= 20 and b.startswith(a))


def _on_word_bounds(t: str, s: int, e: int) -> int:
    left = s == 0 or not (t[s - 1].isalnum() and t[s].isalnum())
    right = e >= len(t) or not (t[e - 1].isalnum() and t[e].isalnum())
    return int(left) + int(right)


# --- A run's texts ------------------------------------------------------------------

@dataclass
class RunData:
    """What comparing and exporting need from a finished run folder."""

    folder: Path
    segments: pd.DataFrame
    themes: pd.DataFrame
    domains: pd.DataFrame
    manifest: dict
    config: dict
    sources: dict[str, str] = field(default_factory=dict)   # case_id -> Consensa's text
    turn_starts: dict[tuple[str, int], int] = field(default_factory=dict)
    #: the turns the run saved (case_id, speaker, start_char, ...), None without them
    turns: pd.DataFrame | None = None
    exact: dict[str, bool] = field(default_factory=dict)     # False: rebuilt from segments
    #: case_id -> why its exact text could not be read again (:meth:`RunFolder.read_sources`)
    problems: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.folder.name)

    @property
    def run_id(self) -> str:
        """The run's identity: config hash and start time (as ``consensa review`` has it)."""
        return run_id_of(self.manifest)


def load_run(folder: str | Path, *, sources: bool = True) -> RunData:
    """Read a run folder (and, with ``sources``, the case texts the run read)."""
    run_folder = RunFolder.open(folder)
    segments = run_folder.segments()
    for col in ("theme", "domain_id", "start_char", "end_char", "turn_index"):
        if col in segments.columns:
            segments[col] = segments[col].astype("int64")
    run = RunData(run_folder.path, segments, run_folder.themes(), run_folder.domains(),
                  run_folder.manifest, run_folder.config)
    if sources:
        _read_sources(run, run_folder)
    return run


def _read_sources(run: RunData, folder: RunFolder) -> None:
    """Each case's text as the run read it (:meth:`RunFolder.read_sources`: from its
    file, checked against the run); a case whose text cannot be had falls back to the
    text of its analysed segments, at their offsets, and is noted. The turns' starts
    (hints where a quote is) come from the turns the run saved."""
    seg = run.segments
    found = folder.read_sources(seg)
    by_case = {str(i.get("case_id")): i for i in run.manifest.get("inputs") or []
               if isinstance(i, dict)}
    for case_id, text in found.texts.items():
        run.sources[case_id] = text
        run.exact[case_id] = True
    run.problems.update(found.problems)
    for case_id, reason in found.problems.items():
        rows = seg[seg["case_id"] == case_id]
        if rows.empty:
            continue
        chars = [" "] * int(rows["end_char"].max())
        for s, e, t in zip(rows["start_char"], rows["end_char"], rows["text"], strict=True):
            chars[s:e] = list(t)
        run.sources[case_id] = "".join(chars)
        run.exact[case_id] = False
        run.notes.append(f"case '{case_id}': {reason} ({by_case.get(case_id, {}).get('path', '?')}); "
                         "codes were placed against the text of its analysed segments only")
    turns = folder.turns()
    if turns is None:              # a folder written before the turns were saved
        turns = found.turns
    run.turns = turns
    if turns is not None:
        run.turn_starts.update({(c, int(t)): int(s) for c, t, s in
                                zip(turns["case_id"], turns["turn_index"], turns["start_char"],
                                    strict=True)})
    for c, t, s in zip(seg["case_id"], seg["turn_index"], seg["start_char"], strict=True):
        run.turn_starts.setdefault((c, int(t)), int(s))


# --- Placing codes in a run's texts ---------------------------------------------------

def match_cases(names: Iterable[str], case_ids: Iterable[str]) -> dict[str, str]:
    """Each codes case name -> the run's case id (exact, then ignoring case and extension:
    the extensions a transcript file or a QDA program's source name has, "T01.docx",
    "T07.m4a"), read as ingest reads a source's name into a case id
    (:func:`pipeline.stages.ingest.source_case_id`): the name's own extension cut, not a
    path's ("<b>T02</b>.txt" is case "<b>T02</b>"), and without control characters."""
    from ..stages.ingest import DOCUMENT_SUFFIXES, clean_name, without_extension

    case_ids = list(case_ids)
    exact = set(case_ids)
    folded = {c.casefold(): c for c in case_ids}
    suffixes = (*DOCUMENT_SUFFIXES, ".csv", ".xlsx")
    out = {}
    for name in names:
        stem = without_extension(name, suffixes)
        for cand in dict.fromkeys((name, stem, clean_name(stem))):
            if cand in exact:
                out[name] = cand
                break
            if cand.casefold() in folded:
                out[name] = folded[cand.casefold()]
                break
    return out


def place_codes(codes: HumanCodes, run: RunData, *,
                min_match: float = MIN_MATCH) -> tuple[pd.DataFrame, list[str]]:
    """Place every coding in Consensa's source text of its case (see the module docstring)."""
    df = codes.codings.copy()
    notes: list[str] = []
    cases = match_cases(sorted(df["case"].unique()), run.sources)
    df["case_id"] = [cases.get(c, "") for c in df["case"]]
    df["start_char"] = -1
    df["end_char"] = -1
    df["how"] = ""
    df["match"] = 0.0
    df["status"] = ""
    unknown = sorted(c for c in df["case"].unique() if c not in cases)
    if unknown:
        shown = ", ".join(f"'{c}'" for c in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        n = int(df["case"].isin(unknown).sum())
        notes.append(f"{n} coding(s) of {len(unknown)} case(s) not in the run were left out: "
                     f"{shown} (the run's cases are {', '.join(sorted(run.sources)[:10])}"
                     f"{' ...' if len(run.sources) > 10 else ''}): name the cases as the "
                     "transcript files are named, without extension")
    df.loc[df["case_id"] == "", "status"] = "case not in the run"
    for case, idx in df[df["case_id"] != ""].groupby("case").groups.items():
        case_id = cases[case]
        target = run.sources[case_id]
        rows = df.loc[idx]
        own = codes.texts.get(case)
        if own is not None:
            results, how_note = _place_with_text(rows, own, target,
                                                 _as_exported(run, case_id, target))
        else:
            results, how_note = _place_by_offsets_or_text(
                rows, target, min_match,
                lambda t, c=case_id: run.turn_starts.get((c, t)))
        if how_note:
            notes.append(f"case '{case}': {how_note}")
        for i, (s, e, how, share, status) in zip(idx, results, strict=True):
            df.at[i, "start_char"] = s
            df.at[i, "end_char"] = e
            df.at[i, "how"] = how
            df.at[i, "match"] = round(share, 4)
            df.at[i, "status"] = status
    df = df.astype({"start_char": "int64", "end_char": "int64"})
    summary = not_placed_note(df)
    return df[list(PLACED_COLUMNS)], ([summary] if summary else []) + notes


def not_placed_note(placed: pd.DataFrame) -> str:
    """One sentence on the codings that could not be placed, every reason counted ("" when
    all were placed). It comes first among the notes: a coding left out of every
    comparison is the thing a reader must not miss."""
    status = placed["status"]
    missing = status[status != "placed"].value_counts()
    if missing.empty:
        return ""
    reasons = ", ".join(f"{int(n)} {why}" for why, n in sorted(missing.items()))
    return (f"{int(missing.sum())} of {len(placed)} coding(s) not placed in Consensa's "
            f"text: {reasons} (listed in coding_spans.csv)")


Result = tuple[int, int, str, float, str]


def _as_exported(run: RunData, case_id: str, target: str):
    """``(text, back)`` for a case read from a subtitle file or a table of turns: the
    text Consensa's project export writes for it, with each speaker's name before their
    turn (its own text has none), and the move of a position of that text back to the
    run's; None for any other case. A project the run exported, compared with the run,
    then places every coding exactly, instead of aligning around the names."""
    from .speakers import UNLABELLED_SUFFIXES, speaker_labelled, speaker_unlabelled

    item = next((i for i in run.manifest.get("inputs") or []
                 if isinstance(i, dict) and str(i.get("case_id")) == case_id), {})
    if Path(str(item.get("path") or "")).suffix.lower() not in UNLABELLED_SUFFIXES \
            or run.turns is None:
        return None
    turns = run.turns[run.turns["case_id"] == case_id]
    back = speaker_unlabelled(turns)
    text = speaker_labelled(target, turns)[0]
    return (text, back) if back is not None and text != target else None


def _place_with_text(rows: pd.DataFrame, own: str, target: str,
                     as_exported: tuple[str, Callable[[int], int]] | None = None
                     ) -> tuple[list[Result], str]:
    """Each coding of ``rows`` (offsets in ``own``, the codes' copy of the text) placed
    in ``target``, Consensa's text; ``as_exported`` (:func:`_as_exported`): the text
    with the speakers' names Consensa's export added, which ``own`` is compared with
    when it matches better, the names then set aside."""
    tmap = TextMap(own, target)
    back = None
    if as_exported is not None and tmap.how == "aligned":
        named = TextMap(own, as_exported[0])
        if named.matched > tmap.matched:
            tmap, back = named, as_exported[1]
    how = tmap.how + (", speaker names set aside" if back is not None else "")
    out: list[Result] = []
    for s, e in zip(rows["start"], rows["end"], strict=True):
        if s < 0 or e > len(own) or e <= s:
            out.append((-1, -1, "", 0.0, "offsets outside the text"))
            continue
        got = tmap.span(int(s), int(e))
        if got is not None and back is not None:
            got = (back(got[0]), back(got[1]), got[2])
            if got[1] <= got[0]:
                out.append((-1, -1, how, 0.0, "only a speaker's name, which Consensa's "
                            "export added"))
                continue
        if got is None:
            out.append((-1, -1, how, 0.0, "text not found in Consensa's text"))
        else:
            out.append((got[0], got[1], how, got[2], "placed"))
    note = ""
    if back is not None:
        note = ("the codes' copy of the text has each speaker's name before their turn, as "
                "Consensa's project export writes a subtitle or table transcript (its own "
                "text has none); the names were set aside, and "
                + ("the rest matched exactly" if tmap.how == "identical" else
                   "the rest differs only in line endings, whitespace or Unicode "
                   "normalisation" if tmap.how == "normalised" else
                   f"{tmap.matched:.0%} of its characters were matched"))
    elif tmap.how == "aligned":
        note = (f"the codes' copy of the text differs from Consensa's; "
                f"{tmap.matched:.0%} of its characters were matched")
    elif tmap.how == "normalised":
        note = ("the codes' copy of the text differs from Consensa's only in line endings, "
                "whitespace or Unicode normalisation; offsets were mapped exactly")
    return out, note


def _place_by_offsets_or_text(rows: pd.DataFrame, target: str, min_match: float,
                              turn_start: Callable[[int], int | None]
                              ) -> tuple[list[Result], str]:
    has_off = rows["start"].to_numpy() >= 0
    variant_name, variant = "as is", None
    if has_off.any():
        variant_name, variant = _choose_variant(rows[has_off], target)
    locator: Locator | None = None
    out: list[Result] = []
    for s, e, text, turn in zip(rows["start"], rows["end"], rows["text"], rows["turn_index"],
                                strict=True):
        if s >= 0 and variant is not None:
            vtext, vs, ve = variant
            ok = e <= len(vtext) and (not text.strip() or _same_quote(vtext[s:e], text))
            if ok:
                if vs is None:
                    span = (int(s), int(e))
                else:
                    span = (int(vs[s]), int(ve[e - 1]))
                how = "offsets as is" if vs is None else f"offsets read as {variant_name}"
                out.append((span[0], span[1], how, 1.0, "placed"))
                continue
            if not text.strip():
                out.append((-1, -1, "", 0.0, "offsets outside the text"))
                continue
        if s < 0 and not text.strip():
            # a row whose offsets could not be read (Excel's "1,927") and has no text
            out.append((-1, -1, "", 0.0, "offsets unusable (not whole numbers, or start not "
                        "before end), no text"))
            continue
        if locator is None:
            locator = Locator(target)
        hint = turn_start(int(turn)) if turn >= 0 else None
        got = locator.find(text, hint, min_match)
        if got is None:
            out.append((-1, -1, "", 0.0, "text not found in Consensa's text"))
        else:
            how = "located" if got[2] >= 1.0 else "located approximately"
            if got[3] > 1:
                how += f" (1 of {got[3]} places)"
            out.append((got[0], got[1], how, got[2], "placed"))
    note = ""
    if variant_name != "as is":
        note = (f"offsets read against the text with {variant_name} "
                "(they did not fit the text as Consensa read it)")
    return out, note


def _choose_variant(rows: pd.DataFrame, target: str):
    best = None
    for name, vtext, vs, ve in offset_variants(target):
        score = 0
        for s, e, text in zip(rows["start"], rows["end"], rows["text"], strict=True):
            if e > len(vtext):
                continue
            score += 2
            if text.strip():
                score += 20 if _same_quote(vtext[s:e], text) else 0
            else:
                score += _on_word_bounds(vtext, int(s), int(e))
        if best is None or score > best[0]:
            best = (score, name, (vtext, vs, ve))
    return best[1], best[2]


# --- Codes of segments ----------------------------------------------------------------

def level_of(code: str, level: str, depth: int | None = None) -> str:
    """The code at a level: its domain (first level), or its path cut to ``depth`` levels."""
    parts = code.split(JOIN)
    if level == "domain":
        return parts[0]
    return JOIN.join(parts[:depth]) if depth else code


def segment_coverage(segments: pd.DataFrame, placed: pd.DataFrame, *, level: str = "category",
                     depth: int | None = None, by_coder: bool = True) -> pd.DataFrame:
    """Share of each segment's characters that each code covers (one row per overlap).

    Columns: segment_id, coder ("" when pooled), code, covered (characters), coverage.
    Codes are taken at ``level`` (the domain, or the path cut to ``depth``); a code's
    passages are merged before counting, so overlapping passages count once.
    """
    ok = placed[placed["status"] == "placed"]
    out = []
    if ok.empty:
        return pd.DataFrame(columns=["segment_id", "coder", "code", "covered", "coverage"])
    labels = [level_of(c, level, depth) for c in ok["code"]]
    ok = ok.assign(label=labels, who=ok["coder"] if by_coder else "")
    for case_id, seg in segments.groupby("case_id"):
        spans = ok[ok["case_id"] == case_id]
        if spans.empty:
            continue
        keys: list[tuple[str, str]] = []
        starts: list[int] = []
        ends: list[int] = []
        key_of: list[int] = []
        for (who, label), grp in spans.groupby(["who", "label"]):
            keys.append((who, label))
            for a, b in _merge(sorted(zip(grp["start_char"], grp["end_char"]))):
                starts.append(a)
                ends.append(b)
                key_of.append(len(keys) - 1)
        st = np.asarray(starts, dtype=np.int64)
        en = np.asarray(ends, dtype=np.int64)
        kk = np.asarray(key_of, dtype=np.int64)
        for sid, s, e in zip(seg["segment_id"], seg["start_char"], seg["end_char"], strict=True):
            overlap = np.clip(np.minimum(en, e) - np.maximum(st, s), 0, None)
            if not overlap.any():
                continue
            covered = np.bincount(kk, weights=overlap, minlength=len(keys))
            length = max(int(e) - int(s), 1)
            for k in np.flatnonzero(covered):
                out.append((sid, keys[k][0], keys[k][1], int(covered[k]), covered[k] / length))
    return pd.DataFrame(out, columns=["segment_id", "coder", "code", "covered", "coverage"])


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for s, e in spans:
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(a, b) for a, b in out]



def primary_codes(coverage: pd.DataFrame, min_coverage: float = MIN_COVERAGE,
                  votes: Mapping[tuple[str, str], int] | None = None) -> dict[str, str]:
    """segment_id -> its primary code (assigned codes only; see the module docstring)."""
    got = coverage[coverage["coverage"] >= min_coverage - 1e-12]
    best: dict[str, tuple] = {}
    for sid, code, cov in zip(got["segment_id"], got["code"], got["coverage"], strict=True):
        key = (round(float(cov), 9), (votes or {}).get((sid, code), 0), code.count(JOIN),
               _neg(code))
        if sid not in best or key > best[sid][0]:
            best[sid] = (key, code)
    return {sid: v[1] for sid, v in best.items()}


def _neg(text: str) -> tuple[int, ...]:
    """Sorts text in reverse, so that max() picks the alphabetically first."""
    return tuple(-ord(ch) for ch in text)





#: Where a run's case attributes are looked for, first found first: the table the run
#: folder holds (what the run read, also from a QDA project), else the config's
#: ``ingest.cases_table`` (the file the run joined; folders written before cases.csv).
CASES_FILES = ("cases.csv",)


def case_attributes(run: RunData) -> tuple[pd.DataFrame | None, list[str]]:
    """The case attributes of a run (``case_id`` + one text column per attribute), and
    notes on what was left out; ``None`` when the run has none.

    Exports carry them (REFI-QDA variables, the case x category matrix) because CQR
    papers compare subgroups: the therapists who cried and those who held back. The
    attributes are read as the run read them: the first column named ``case_id``
    (else the first column) is the case; cases the run did not analyse are dropped
    with a note; every value stays text (its type is decided by the writer).
    """
    from ..stages.ingest import check_row_widths, strip_attribute_values

    candidates = [run.folder / name for name in CASES_FILES]
    table = ((run.config or {}).get("ingest") or {}).get("cases_table")
    deidentified = bool(((run.config or {}).get("deidentify") or {}).get("enabled"))
    if table and not deidentified:
        candidates.append(Path(str(table)))
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        if table and deidentified:
            # the table the config names is the original: in a run made to be shared, its
            # names and e-mails would reach the export that the texts kept them out of
            return None, [f"the run was de-identified and its folder holds no de-identified "
                          f"case attributes (cases.csv); {Path(str(table)).name} is not read, "
                          "so the export has no case variables (run the study again to "
                          "get them)"]
        return None, []
    notes: list[str] = []
    try:
        if path.suffix.lower() == ".xlsx":      # a cases table may be a workbook (ingest)
            frame = read_table(path, 0)[0]
        else:
            text = decoded_table(path, str(path))
    except OSError as exc:
        return None, [f"the case attributes in {path} could not be read ({exc.strerror}); "
                      "the export has no case variables"]
    if path.suffix.lower() != ".xlsx":
        header = text.lstrip("\ufeff").split("\n", 1)[0]
        delimiter = max((",", ";", "\t"), key=header.count)
        check_row_widths(text, delimiter, str(path), field="ingest.cases_table")
        try:
            frame = pd.read_csv(io.StringIO(text.lstrip("\ufeff")), sep=delimiter, dtype=str,
                                keep_default_na=False, skip_blank_lines=False)
        except ValueError as exc:
            raise InputError(f"could not be read as a table of case attributes ({exc})",
                             path=path, field="ingest.cases_table",
                             hint="save it again as CSV (UTF-8), one row per case") from exc
    from ..sheets import restore_frame

    frame = restore_frame(frame)
    frame.columns = [str(c).strip() for c in frame.columns]
    # blank lines are read as rows, so that each row keeps its number in the file
    frame = frame[(frame.map(lambda v: str(v).strip()) != "").any(axis=1)]
    if frame.empty or len(frame.columns) < 2:
        return None, [f"{path} holds no case attributes; the export has no case variables"]
    key = next((c for c in frame.columns if c.casefold() == "case_id"), frame.columns[0])
    frame = frame.rename(columns={key: "case_id"})
    frame = frame[["case_id"] + [c for c in frame.columns if c != "case_id"]]
    frame["case_id"] = frame["case_id"].str.strip()
    # as the run's own join does (rows still as the file has them, for the note): the
    # run folder's cases.csv is stripped already, a table named in the config (a folder
    # written before cases.csv) may not be
    frame, spaced = strip_attribute_values(frame)
    if spaced:
        notes.append(f"{path.name}: {spaced}")
    analysed = set(run.segments["case_id"])
    # a row spelled with composed accents takes the case's decomposed spelling (a Mac's
    # file names), as the run's own join does (pipeline/stages/ingest.py)
    spelled = {unicodedata.normalize("NFC", c): c for c in analysed}
    frame["case_id"] = [spelled.get(unicodedata.normalize("NFC", c), c)
                        for c in frame["case_id"]]
    frame = frame[frame["case_id"] != ""].drop_duplicates("case_id")
    extra = sorted(set(frame["case_id"]) - analysed)
    if extra:
        notes.append(f"{len(extra)} row(s) of {path.name} name cases the run did not analyse "
                     f"({', '.join(extra[:8])}); left out")
    frame = frame[frame["case_id"].isin(analysed)].reset_index(drop=True)
    return frame, notes
