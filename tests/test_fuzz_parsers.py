"""Fuzzing the parsers: any input gives a result or Consensa's own error, never another
exception (a traceback for the user). Bounded: at most 200 examples per parser."""

from __future__ import annotations

import codecs
import io
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import read_yaml, validate_config
from pipeline.errors import ConsensaError
from pipeline.stages.ingest import IngestConfig, _join_cases_table, _Reader
from pipeline.textio import decode_bytes
from tests.broken import make_corpus as corpus

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
READER = _Reader(IngestConfig())


def read(data: bytes, suffix: str):
    """One file through the transcript reader: its cases, or our error."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"T{suffix}"
        path.write_bytes(data)
        try:
            result = READER.read(path, str(path))
        except ConsensaError:
            return None
    for case in result.cases:                  # what it gives is usable
        assert isinstance(case.source.text, str)
        for turn in case.turns:
            assert 0 <= turn.start <= turn.end <= len(case.source.text)
    return result


@FUZZ
@given(data=st.binary(max_size=2000),
       encoding=st.sampled_from(["auto", "utf-8", "utf-16", "cp1252", "latin-1"]))
def test_decode_bytes(data, encoding):
    try:
        text, name = decode_bytes(data, encoding, path="x.txt")
    except ConsensaError:
        return
    assert data.decode(name) == text


@FUZZ
@given(data=st.binary(max_size=3000),
       suffix=st.sampled_from([".txt", ".md", ".vtt", ".srt", ".csv", ".docx", ".xlsx"]))
def test_any_bytes_in_any_format(data, suffix):
    read(data, suffix)


_FRAGMENTS = st.sampled_from([
    "WEBVTT", "\n", "\n\n", "\r\n", "00:00:01.000 --> 00:00:02.000", "00:00:01,000 --> 00:00:02,000",
    "00:0x:01.000 --> 00:00:02.000", "-->", "1", "NOTE x", "<v Mara Reyes>", "</v>", "<v>", "<i>",
    "</i>", "<c.red>", "&amp;", "&", "Interviewer: ", "P1: ", "Mara Reyes: ", "hello there",
    "é", "\x00", "\ufeff", ":", " ", "<", ">", "<v.loud Sam>", "99:99:99.999 --> 1",
    "00:00:05.000 --> 00:00:01.000", "00:00:05,000 --> 00:00:01,000",   # ends before it starts
])
_CSV_FRAGMENTS = st.sampled_from([
    "case_id", "turn_index", "speaker", "text", "role", ",", ";", "\t", "\n", "\r\n", '"', '""',
    "T1", "0", "1", "-1", "1.0", "x", "Interviewer", "P1", "hello, there", "participant", "host",
    "", " ", "é", "\x00", "=cmd()", "nan", "NULL",
])


@FUZZ
@given(parts=st.lists(_FRAGMENTS, max_size=40), suffix=st.sampled_from([".vtt", ".srt", ".txt"]))
def test_subtitle_and_text_shaped_input(parts, suffix):
    read("".join(parts).encode("utf-8"), suffix)


@FUZZ
@given(parts=st.lists(_CSV_FRAGMENTS, max_size=50),
       header=st.sampled_from(["case_id,turn_index,speaker,text\n", "case_id;speaker;text\n",
                               "case_id\tspeaker\ttext\trole\n", ""]))
def test_table_shaped_input(parts, header):
    read((header + "".join(parts)).encode("utf-8"), ".csv")


_DOCX = corpus.docx_bytes()


def _xlsx() -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["case_id", "speaker", "text"])
    book.active.append(["T1", "P1", "hello"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


_XLSX = _xlsx()


@FUZZ
@given(kind=st.sampled_from([(".docx", _DOCX), (".xlsx", _XLSX)]),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_damaged_office_files(kind, flips, cut):
    suffix, good = kind
    data = bytearray(good)
    for position, value in flips:
        data[position % len(data)] = value
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    read(bytes(data), suffix)


def test_an_office_file_with_an_unnamed_part_is_refused_naming_the_file():
    """Found by test_damaged_office_files: a central-directory entry whose name length
    is 0 gave zipfile a part named "", and a traceback (IndexError in is_dir)."""
    from pipeline.errors import InputError
    from pipeline.stages.ingest import check_zip

    data = bytearray(_DOCX)
    entry = data.rfind(b"PK\x01\x02")          # the last part's central-directory entry
    name_length = int.from_bytes(data[entry + 28:entry + 30], "little")
    data[entry + 28:entry + 30] = (0).to_bytes(2, "little")
    data[entry + 46:entry + 46 + name_length] = b""
    size = data.rfind(b"PK\x05\x06")
    central = int.from_bytes(data[size + 12:size + 16], "little") - name_length
    data[size + 12:size + 16] = central.to_bytes(4, "little")
    assert any(not m.filename for m in zipfile.ZipFile(io.BytesIO(bytes(data))).infolist())
    try:
        check_zip(bytes(data), "T01.docx", ".docx")
    except InputError as exc:
        assert "T01.docx" in str(exc) and "no name" in str(exc)
    else:
        raise AssertionError("an unnamed part was let through")
    assert read(bytes(data), ".docx") is None          # the reader: our error, no traceback


@FUZZ
@given(xml=st.text(max_size=400), wrap=st.booleans())
def test_docx_with_any_document_xml(xml, wrap):
    body = (f'<w:document {corpus.W_NS}><w:body><w:p><w:r><w:t>{xml}</w:t></w:r></w:p>'
            '</w:body></w:document>') if wrap else xml
    read(corpus.replace_member(_DOCX, "word/document.xml", body.encode("utf-8", "replace")),
         ".docx")


@FUZZ
@given(text=st.text(max_size=300))
def test_cases_table(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cases.csv"
        path.write_bytes(text.encode("utf-8", "replace"))
        try:
            _join_cases_table(pd.DataFrame({"case_id": ["T1", "T2"]}), path, "auto")
        except ConsensaError:
            pass


_YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
              st.text(max_size=20)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=12), children, max_size=4)),
    max_leaves=20)
_SECTIONS = st.sampled_from(["name", "seed", "output_dir", "cache_dir", "ingest", "deidentify",
                             "segment", "embed", "reduce", "cluster", "outliers", "label",
                             "concepts", "domains", "cqr", "map", "clustr"])
_KEYS = st.sampled_from(["name", "paths", "roles", "n_clusters", "min_cluster_size", "enabled",
                         "known_names", "mapping_file", "types", "encoding", "table", "items",
                         "speaker_pattern", "keep", "n_components", "random_state"])


@FUZZ
@given(config=st.dictionaries(_SECTIONS, st.one_of(
    _YAML_VALUES, st.dictionaries(_KEYS, _YAML_VALUES, max_size=4)), max_size=6))
def test_any_config_mapping(config):
    try:
        validate_config(config)
    except ConsensaError:
        pass


@FUZZ
@given(text=st.text(max_size=300))
def test_any_config_text(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.yaml"
        path.write_text(text, encoding="utf-8", errors="replace")
        try:
            validate_config(read_yaml(path), path)
        except ConsensaError:
            pass


_PROJECT = corpus.PROJECT.encode()


@FUZZ
@given(data=st.binary(max_size=600),
       how=st.sampled_from(["raw", "zipped-qde", "qdpx-member"]),
       name=st.sampled_from(["project.qde", "../x.qde", "Sources/a.txt", "/abs.qde", "a\\b.qde"]))
def test_refi_project_reader(data, how, name):
    from pipeline.exchange.refi import read_project

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("p.qde" if how == "raw" else "p.qdpx")
        if how == "raw":
            payload = data
        elif how == "zipped-qde":
            payload = corpus.qdpx({"project.qde": data})
        else:
            payload = corpus.qdpx({"project.qde": _PROJECT, name: data})
        path.write_bytes(payload)
        try:
            read_project(path)
        except ConsensaError:
            pass


# --- mixed encodings, hidden DTDs, formulas, damaged and deep REFI-QDA projects ----------

_LINE_TEXT = st.text(st.characters(codec="cp1252", exclude_categories=("Cc", "Cs")), max_size=30)


@FUZZ
@given(lines=st.lists(st.tuples(_LINE_TEXT, st.sampled_from(["utf-8", "cp1252"])), max_size=12),
       newline=st.sampled_from(["\n", "\r\n", "\r"]))
def test_lines_in_utf8_and_cp1252_each_come_back(lines, newline):
    """Every UTF-8 line comes back exactly, and so does every Windows-1252 line that is
    not valid UTF-8 by chance (almost all with an accent or a curly quote in them)."""
    data = b"".join((text + newline).encode(codec) for text, codec in lines)
    try:
        decoded, name = decode_bytes(data, "auto", path="x.txt")
    except ConsensaError:
        return                                # e.g. a binary-looking mostly-control text
    assert data.decode(name) == decoded
    got = decoded.split(newline)
    assert len(got) == len(lines) + 1 and got[-1] == ""
    for (text, codec), back in zip(lines, got):
        raw = text.encode(codec)
        if codec == "utf-8" or raw.isascii() or not _is_utf8(raw):
            assert back == text


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@FUZZ
@given(text=st.text(max_size=60),
       codec=st.sampled_from(["utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be",
                              "utf-7"]),
       bom=st.booleans(), part=st.sampled_from(["word/document.xml", "word/settings.xml",
                                                 "customXml/item1.dat", "word/media/x.bin"]),
       mark=st.sampled_from(["<!DOCTYPE d>", '<!ENTITY x "y">', "<!doctype d>"]))
def test_a_dtd_in_any_part_and_encoding_is_refused(text, codec, bom, part, mark):
    boms = {"utf-8": codecs.BOM_UTF8, "utf-16-le": codecs.BOM_UTF16_LE,
            "utf-16-be": codecs.BOM_UTF16_BE, "utf-32-le": codecs.BOM_UTF32_LE,
            "utf-32-be": codecs.BOM_UTF32_BE, "utf-7": b""}
    decl = f' encoding="{codec.split("-le")[0].split("-be")[0].upper()}"'
    xml = f'<?xml version="1.0"{decl}?>{mark}<r>{text.replace("<", "")}</r>'
    data = (boms[codec] if bom else b"") + xml.encode(codec, "surrogatepass")
    docx_data = corpus.replace_member(_DOCX, part, data) if part in _DOCX_PARTS \
        else corpus.add_member(_DOCX, part, data)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "T.docx"
        path.write_bytes(docx_data)
        try:
            READER.read(path, str(path))
        except ConsensaError as err:
            assert f"its part '{part}' declares" in err.reason
            return
    raise AssertionError(f"a DTD in {part} ({codec}, BOM {bom}) was not refused")


_DOCX_PARTS = set(zipfile.ZipFile(io.BytesIO(_DOCX)).namelist())
#: openpyxl writes a str that starts with "=" (and is longer) as a formula
_FORMULAS = ["=1+1", '=A2&"x"', '=HYPERLINK("x")']
_CELLS = st.sampled_from(_FORMULAS + ["hello there", "=", "P1", "Interviewer", "T1", "0", "",
                                      " =SUM(A1)", "'=not a formula"])


@FUZZ
@given(rows=st.lists(st.lists(_CELLS, min_size=3, max_size=3), max_size=8))
def test_xlsx_formula_cells_never_become_speech(rows):
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["case_id", "speaker", "text"])
    for row in rows:
        book.active.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    result = read(buffer.getvalue(), ".xlsx")
    if result is None:
        return
    for case in result.cases:
        for turn in case.turns:
            assert case.source.text[turn.start:turn.end] not in _FORMULAS


_QDPX = corpus.qdpx({"project.qde": _PROJECT.replace(
    b"</Project>", b'<Sources><TextSource guid="s1" name="A" plainTextPath="internal://s1.txt">'
    b'<PlainTextSelection guid="x" startPosition="0" endPosition="5"><Coding guid="k">'
    b'<CodeRef targetGUID="c1"/></Coding></PlainTextSelection></TextSource></Sources>'
    b"</Project>"), "Sources/s1.txt": "Hello there, café.".encode() * 20})


@FUZZ
@given(member=st.sampled_from(["project.qde", "Sources/s1.txt"]),
       damage=st.fixed_dictionaries({}, optional={
           "flags": st.sampled_from([1, 8, 0x40, 0xFFFF]), "method": st.integers(0, 0xFFFF),
           "crc_xor": st.integers(1, 2**32 - 1), "garble": st.integers(1, 40)}),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4))
def test_damaged_qdpx(member, damage, flips):
    from pipeline.exchange.refi import read_project

    data = bytearray(corpus.zip_patch(_QDPX, member, **damage))
    for position, value in flips:
        data[position % len(data)] = value
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.qdpx"
        path.write_bytes(bytes(data))
        try:
            read_project(path)
        except ConsensaError:
            pass


@settings(max_examples=25, deadline=None)
@given(depth=st.integers(0, 3000))
def test_refi_codes_nested_to_any_depth(depth):
    from pipeline.exchange.refi import MAX_CODE_DEPTH, read_project

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.qde"
        path.write_bytes(corpus.nested_codes_project(depth))
        try:
            codes = read_project(path)
        except ConsensaError as err:
            assert depth > MAX_CODE_DEPTH and "levels deep" in err.reason
            return
    assert depth <= MAX_CODE_DEPTH and len(codes.codebook) == depth


@FUZZ
@given(data=st.binary(max_size=400))
def test_lines_of_any_bytes_join_to_the_bytes(data):
    from pipeline.textio import _line_bytes, cp1252_lines

    lines = _line_bytes(data)
    assert b"".join(lines) == data and all(lines)
    assert all(1 <= n <= len(lines) for n in cp1252_lines(data))
