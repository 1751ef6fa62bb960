"""Fuzzing the parsers: any input gives a result or Consensa's own error, never another
exception (a traceback for the user). Bounded: at most 200 examples per parser."""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import read_yaml, validate_config
from pipeline.errors import ConsensaError
from pipeline.ingest import IngestConfig, _join_cases_table, _Reader
from pipeline.textio import decode_bytes

sys.path.insert(0, str(Path(__file__).parent / "broken"))
import make_corpus as corpus  # noqa: E402

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
    from pipeline.refi import read_project

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
