"""Shared helpers for the codes / REFI-QDA / compare tests: study runs and codes on them.

Everything here is written for these tests (the invented study of tests/study.py);
nothing comes from real data.
"""

from __future__ import annotations

import csv
import io
import unicodedata
import uuid
import zipfile
from pathlib import Path

from pipeline.config import validate_config
from pipeline.run import run
from tests.study import QUESTIONS, TOPICS, study_config, write_study

FIXTURES = Path(__file__).parent / "fixtures" / "refi"
#: a Teams transcript of three cues: who spoke is in the voice tags, not in the text
#: Consensa reads (an export writes the names in; compare sets them aside)
TEAMS_VTT = ("WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n<v Interviewer>How did supervision help "
             "you with it?\n\n00:00:04.500 --> 00:00:09.000\n<v Participant>My supervisor "
             "helped me understand my tears with a client.\n\n00:00:09.500 --> 00:00:12.000\n"
             "<v Participant>She listened without judging me at all.\n")
#: study topic -> a hierarchical code (domain > category)
TOPIC_CODES = {"training": "Preparation > Training gaps", "supervision": "Support > Supervision",
               "client": "Relationship > Client response"}

VARIANTS = ("plain", "crlf-nfd")


def make_study_run(tmp_root: Path, variant: str = "plain") -> Path:
    """Run the study in ``tmp_root/run-VARIANT`` (transcripts in ``tmp_root/study-VARIANT``):
    "plain" (LF, ASCII) or "crlf-nfd" (CRLF line endings, and "client" spelled "clïent" in
    decomposed form, NFD). The tests share one run per variant: the ``study_run`` fixture."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown study variant {variant!r}")
    folder = tmp_root / f"study-{variant}"
    write_study(folder)
    if variant == "crlf-nfd":
        for f in sorted(folder.glob("*.txt")):
            text = f.read_text(encoding="utf-8")
            f.write_bytes(nfd_crlf(text).encode("utf-8"))
    return run(validate_config(study_config(folder)), folder, tmp_root / f"run-{variant}")


def nfd_crlf(text: str) -> str:
    """LF -> CRLF and "client" -> "clïent" (NFD: i + combining diaeresis)."""
    return text.replace("client", unicodedata.normalize("NFD", "cli\u0308ent")) \
        .replace("\n", "\r\n")


def nfc_lf(text: str) -> str:
    """What a QDA program may have made of a "crlf-nfd" transcript: LF and NFC."""
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n"))


def sentence_spans(text: str):
    """(topic, index, start, end, sentence) for every study sentence in ``text``."""
    for topic, sentences in TOPICS.items():
        for k, sentence in enumerate(sentences):
            for variant in {sentence, sentence.replace("client", "cl\u00efent"),
                            sentence.replace("client", "cli\u0308ent")}:
                start = text.find(variant)
                while start >= 0:
                    yield topic, k, start, start + len(variant), variant
                    start = text.find(variant, start + 1)


def question_spans(text: str):
    for topic, q in QUESTIONS.items():
        start = text.find(q)
        while start >= 0:
            yield topic, start, start + len(q), q
            start = text.find(q, start + 1)


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def topic_rows(study: Path, code_of=None, coder: str = "", text_of=lambda t: t,
               offsets: bool = True, quotes: bool = True) -> list[dict]:
    """One row per study sentence in each case: its code (``code_of(topic, k, case)``,
    default TOPIC_CODES[topic]; None leaves it uncoded), offsets in ``text_of(text)``."""
    rows = []
    for f in sorted(study.glob("case*.txt")):
        text = text_of(f.read_bytes().decode("utf-8"))
        for topic, k, s, e, sentence in sentence_spans(text):
            code = code_of(topic, k, f.stem) if code_of else TOPIC_CODES[topic]
            if code is None:
                continue
            row = {"case": f.stem, "code": code}
            if offsets:
                row.update(start=s, end=e)
            if quotes:
                row["text"] = sentence
            if coder:
                row["coder"] = coder
            rows.append(row)
    return rows


def zip_fixture(dest: Path, folder: Path = FIXTURES / "small", extra: dict | None = None,
                qde: bytes | None = None) -> Path:
    """Pack a fixture project folder (project.qde, Sources/) into a .qdpx."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("project.qde", qde if qde is not None else
                    (folder / "project.qde").read_bytes())
        for f in sorted((folder / "Sources").glob("*")):
            zf.writestr(f"Sources/{f.name}", f.read_bytes())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return dest


def topic_project(study: Path, dest: Path, rows: list[dict], *, wrap: str = "",
                  wrap_codable: bool = False) -> Path:
    """A .qdpx of the study's transcripts coded by ``rows`` (:func:`topic_rows`, offsets
    and optionally a coder each): the codes' paths nested as codes, every coder a user;
    ``wrap`` puts the whole code system under one top-level code of that name (not
    codable unless ``wrap_codable``), as NVivo's "Nodes" holds its codes; a row whose
    code is ``wrap`` codes that code itself."""
    from xml.sax.saxutils import quoteattr

    def g(*parts) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(map(str, parts))))

    tree: dict = {}
    for r in rows:
        if wrap and r["code"] == wrap:
            continue
        node = tree
        for part in r["code"].split(" > "):
            node = node.setdefault(part, {})

    def codes_xml(node: dict, path: tuple) -> str:
        return "".join(f'<Code guid="{g("code", *path, name)}" name={quoteattr(name)} '
                       f'isCodable="true">{codes_xml(kids, (*path, name))}</Code>'
                       for name, kids in node.items())

    book = codes_xml(tree, ())
    if wrap:
        book = (f'<Code guid="{g("code", wrap)}" name={quoteattr(wrap)} '
                f'isCodable="{"true" if wrap_codable else "false"}">{book}</Code>')
    coders = sorted({r.get("coder", "") for r in rows} - {""})
    users = "".join(f'<User guid="{g("user", c)}" name={quoteattr(c)}/>' for c in coders)
    texts = {f.stem: f.read_text(encoding="utf-8") for f in sorted(study.glob("case*.txt"))}
    sources = ""
    for case in texts:
        sels = "".join(
            f'<PlainTextSelection guid="{g("sel", case, k)}" startPosition="{r["start"]}" '
            f'endPosition="{r["end"]}"'
            + (f' creatingUser="{g("user", r["coder"])}"' if r.get("coder") else "")
            + f'><Coding guid="{g("coding", case, k)}"><CodeRef targetGUID="'
            f'{g("code", *r["code"].split(" > "))}"/></Coding></PlainTextSelection>'
            for k, r in enumerate(rows) if r["case"] == case)
        sources += (f'<TextSource guid="{g("source", case)}" name="{case}" '
                    f'plainTextPath="internal://{g("source", case)}.txt">{sels}</TextSource>')
    qde = (f'<?xml version="1.0" encoding="utf-8"?><Project xmlns="urn:QDA-XML:project:1.0" '
           f'name="topics"><Users>{users}</Users><CodeBook><Codes>{book}</Codes></CodeBook>'
           f'<Sources>{sources}</Sources></Project>')
    with zipfile.ZipFile(dest, "w") as zf:
        zf.writestr("project.qde", qde)
        for case, text in texts.items():
            zf.writestr(f"Sources/{g('source', case)}.txt", text.encode("utf-8"))
    return dest
