"""Importing human codes from tables, and placing them in Consensa's texts."""

from __future__ import annotations

import io
import re
import shutil
import unicodedata
import zipfile

import openpyxl
import pandas as pd
import pytest

from pipeline.errors import InputError
from pipeline.exchange.codes import (
    Locator,
    TextMap,
    align_blocks,
    canonical,
    codebook_from_paths,
    load_run,
    match_cases,
    offset_variants,
    place_codes,
    primary_codes,
    segment_coverage,
)
from pipeline.exchange.read import read_codes
from tests.broken import make_corpus
from tests.compare_helpers import (
    TOPIC_CODES,
    nfc_lf,
    nfd_crlf,
    topic_rows,
    write_csv,
)

# --- Tables -----------------------------------------------------------------------

def test_csv_codes_several_per_cell_rows_hierarchies_and_coders(tmp_path):
    path = write_csv(tmp_path / "codes.csv", [
        {"Document": "T01.txt", "Quote": "I cried", "Codes": "Emotion>Tears ; Support",
         "Coder": "Ana", "Start": "10", "End": "17"},
        {"Document": "T01.txt", "Quote": "I cried", "Codes": "Emotion > Tears",
         "Coder": "Ben", "Start": "10", "End": "17"},
        {"Document": "T02", "Quote": "no offsets here", "Codes": "Emotion >  Shame  > Hidden",
         "Coder": "", "Start": "", "End": ""},
        {"Document": "T02", "Quote": "", "Codes": "", "Coder": "Ana", "Start": "", "End": ""},
        {"Document": "T02", "Quote": "bad", "Codes": "Support", "Coder": "Ana", "Start": "9",
         "End": "3"},
        {"Document": "T02", "Quote": "", "Codes": "Support", "Coder": "Ana", "Start": "",
         "End": ""},
    ])
    codes = read_codes(path)
    c = codes.codings
    assert list(c["code"]) == ["Emotion > Tears", "Support", "Emotion > Tears",
                               "Emotion > Shame > Hidden", "Support"]
    assert list(c["coder"]) == ["Ana", "Ana", "Ben", "", "Ana"]
    assert list(c["start"]) == [10, 10, 10, -1, -1]         # bad offsets: the text is used
    assert codes.coders == ["Ana", "Ben"]
    assert codes.hierarchical
    book = codes.codebook.set_index("code")
    assert set(book.index) == {"Emotion", "Emotion > Tears", "Support", "Emotion > Shame",
                               "Emotion > Shame > Hidden"}
    assert book.at["Emotion > Shame > Hidden", "depth"] == 3
    assert book.at["Emotion > Shame > Hidden", "domain"] == "Emotion"
    assert book.at["Emotion > Shame", "parent"] == "Emotion"
    assert any("without a code" in n for n in codes.notes)
    assert any("start < end" in n and "rows 6)" in n for n in codes.notes)
    # a coding with nowhere to go is counted and named, never dropped unseen
    assert any(n.startswith("1 row(s) have a case and a code but neither") and "(rows 7)" in n
               and "'Quote' column" in n for n in codes.notes)


def test_csv_with_semicolons_utf8_bom_and_explicit_columns(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_bytes("\ufeffFall;Kode;Zitat\nT01;A > B;Das war schön\n".encode("utf-8"))
    codes = read_codes(path, columns={"case": "Fall", "code": "Kode", "text": "Zitat"})
    assert codes.codings.loc[0, ["case", "code", "text"]].tolist() == ["T01", "A > B",
                                                                       "Das war schön"]
    other = read_codes(write_csv(tmp_path / "c2.csv", [{"case": "T1", "code": "A::B",
                                                        "text": "x"}]), separator="::")
    assert other.codings.loc[0, "code"] == "A > B"


def test_maxqdas_export_of_coded_segments_is_read_by_its_own_column_names(tmp_path):
    """MAXQDA's table of coded segments names the case "Document name" and the coder
    "Created by" (both were not found), counts paragraphs in "Begin" and "End" (read as
    character offsets, every row was "not a whole number with start < end"), and joins
    code paths with a backslash."""
    text = ("Interviewer: How was it?\n\nTrainee: Honestly I barely slept. I kept "
            "rehearsing the contract.\n")
    path = tmp_path / "Coded segments.csv"
    path.write_text(
        "\ufeffColor,Document group,Document name,Code,Begin,End,Weight score,Segment,"
        "Modified by,Created by,Area,Coverage %\n"
        "#ff0000,Interviews,P01,Anticipation\\Anxiety before meeting,3,3,0,"
        "Honestly I barely slept.,Kim Lee,Sam Okafor,24,10\n"
        "#ff0000,Interviews,P01,Anticipation\\Over-preparation,3,3,0,"
        "I kept rehearsing the contract.,Sam Okafor,Ana Ruiz,31,12\n", encoding="utf-8")
    codes = read_codes(path)
    assert codes.info["columns"] == {"case": "Document name", "code": "Code",
                                     "text": "Segment", "coder": "Created by"}
    assert codes.coders == ["Ana Ruiz", "Sam Okafor"]
    assert codes.codings["code"].tolist() == ["Anticipation > Anxiety before meeting",
                                              "Anticipation > Over-preparation"]
    assert (codes.codings["start"] == -1).all() and codes.hierarchical
    notes = " | ".join(codes.notes)
    assert "a MAXQDA export of coded segments" in notes and "count paragraphs" in notes
    assert "not whole numbers" not in notes
    from pipeline.exchange.codes import Locator

    got = [Locator(text).find(t)[:2] for t in codes.codings["text"]]
    assert [text[a:b] for a, b in got] == ["Honestly I barely slept.",
                                          "I kept rehearsing the contract."]
    # a separator given, and offsets given by name, are as given
    again = read_codes(path, separator="/", columns={"start": "Begin", "end": "End"})
    assert again.codings["code"].iloc[0] == "Anticipation\\Anxiety before meeting"
    assert again.codings["start"].tolist() == [-1, -1]       # 3-3 is no passage, as said
    assert "not whole numbers" in " | ".join(again.notes)


def test_xlsx_codes(tmp_path):
    path = tmp_path / "codes.xlsx"
    pd.DataFrame({"case_id": ["T01"], "code": ["A > B"], "text": ["hello"]}).to_excel(
        path, index=False)
    assert read_codes(path).codings.loc[0, "code"] == "A > B"


def test_formula_cells_in_a_codes_workbook_are_noted_by_cell(tmp_path):
    book = openpyxl.Workbook()
    for row in (["case", "code", "text", "start", "end"],
                ["T01", "A", "hello", None, None],
                ["T01", "=B2", "world", None, None],        # no saved result: no code
                ["T01", "A", '=A2&" said"', None, None],    # saved result, below
                ["T01", "A", "=C2", 0, 5]):                 # placed by its offsets
        book.active.append(row)
    path = tmp_path / "codes.xlsx"
    book.save(path)
    # Excel saves a formula's result: pandas alone would read C4 as "T01 said"
    data = path.read_bytes()
    sheet = zipfile.ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet1.xml")
    sheet, n = re.subn(rb'<c r="C4"><f>(.*?)</f><v\s*/?>(</v>)?</c>',
                       rb'<c r="C4" t="str"><f>\1</f><v>T01 said</v></c>', sheet)
    assert n == 1
    path.write_bytes(make_corpus.replace_member(data, "xl/worksheets/sheet1.xml", sheet))
    codes = read_codes(path)
    assert codes.codings[["code", "text", "start", "end", "origin"]].values.tolist() == [
        ["A", "hello", -1, -1, "row 2"], ["A", "", 0, 5, "row 5"]]
    notes = "\n".join(codes.notes)
    assert ("sheet 'Sheet': 2 cell(s) of the text column 'text' hold formulas (C4, C5); a "
            "formula is not the words that were coded") in notes
    assert "1 cell(s) hold formulas with no saved result (B3) and were read as empty" in notes
    assert "1 row(s) have a case and a code but neither" in notes and "(rows 4)" in notes


@pytest.mark.parametrize("name, header, where", [
    ("codes.csv", "case,code,text,text", "(columns 3 and 4)"),
    ("codes.tsv", "case\tcode\ttext\tText ", "(columns 3 'text' and 4 'Text ')"),
    ("codes.xlsx", "case,text,code,text", "(columns B and D)"),
])
def test_a_column_read_that_the_header_repeats_is_refused(tmp_path, name, header, where):
    # pandas reads the second 'text' as 'text.1', so its passages would never be read
    path = tmp_path / name
    sep = "\t" if name.endswith(".tsv") else ","
    rows = [header.split(sep), ["T01", "A", "hello", "world"]]
    if name.endswith(".xlsx"):
        pd.DataFrame(rows[1:], columns=rows[0]).to_excel(path, index=False)
    else:
        path.write_text("".join(sep.join(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_codes(path)
    message = str(err.value)
    assert str(path) in message
    assert f"the column 'text' (the text column) is in the header twice {where}" in message
    assert "rename the column that is not meant" in message


def test_a_repeated_column_that_is_not_read_is_left_alone(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text("case,code,quote,text,Quote\nT01,A,q1,hello,q2\n", encoding="utf-8")
    codes = read_codes(path)
    assert codes.codings[["case", "code", "text"]].values.tolist() == [["T01", "A", "hello"]]
    assert codes.notes == []


@pytest.mark.parametrize("rows, message", [
    ([{"who": "T01", "code": "A", "text": "x"}], "has no case column"),
    ([{"case": "T01", "what": "A", "text": "x"}], "has no code column"),
    ([{"case": "T01", "code": "A", "start": "1"}], "neither a text column nor start/end"),
    ([{"case": "T01", "code": "", "text": "x"}], "holds no coded passage"),
])
def test_unusable_tables_are_refused_naming_the_file(tmp_path, rows, message):
    path = write_csv(tmp_path / "codes.csv", rows)
    with pytest.raises(InputError) as err:
        read_codes(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "What to do" in str(err.value)


def test_a_codes_table_that_is_not_text_is_refused_with_advice_for_a_table(tmp_path):
    path = tmp_path / "codes.csv"
    # UTF-16 with its byte-order mark, cut inside a character
    path.write_bytes("case,code,text\nT01,A,hello\n".encode("utf-16") + b"\x00\xd8")
    with pytest.raises(InputError) as err:
        read_codes(path)
    said = str(err.value)
    assert str(path) in said and "UTF-16" in said
    assert "CSV UTF-8" in said and "transcript" not in said and "ingest." not in said


def test_a_codes_table_row_with_a_stray_comma_is_refused_naming_it(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text("case,code,text\nT01,A,hello, world\nT01,B,bye\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"row 2 \(line 2\) has 4 cells but the header has 3"):
        read_codes(path)


def test_missing_or_unknown_codes_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_codes(tmp_path / "nope.csv")
    (tmp_path / "codes.json").write_text("{}")
    with pytest.raises(InputError, match="unsupported codes file type"):
        read_codes(tmp_path / "codes.json")


def test_codebook_from_paths_adds_parents_once():
    book = codebook_from_paths(["A > B > C", "A > D", "E"])
    assert list(book["code"]) == ["A", "A > B", "A > B > C", "A > D", "E"]
    assert list(book["depth"]) == [1, 2, 3, 2, 1]


# --- Text positions -------------------------------------------------------------------

def test_canonical_maps_back_to_the_original():
    text = "\ufeffCafe\u0301  au\r\n\r\nlait "
    c = canonical(text)
    assert c.text == "Café au lait"
    a, b = c.from_original(text.index("au"), text.index("au") + 2)
    assert c.text[a:b] == "au"
    s, e = c.to_original(0, 4)          # "Café": the composed é maps to e + U+0301
    assert text[s:e] == "Cafe\u0301"


def test_text_map_crlf_and_nfd_against_lf_and_nfc():
    consensa = "P1: Das Café\r\n\r\nwar schön.\r\nP2: Ja.\r\n"
    consensa = unicodedata.normalize("NFD", consensa)
    theirs = unicodedata.normalize("NFC", consensa.replace("\r\n", "\n"))
    m = TextMap(theirs, consensa)
    assert m.how == "normalised"
    s = theirs.index("Café")
    e = theirs.index("schön.") + len("schön.")
    got = m.span(s, e)
    assert got is not None and got[2] == 1.0
    assert consensa[got[0]:got[1]] == unicodedata.normalize("NFD", "Café\r\n\r\nwar schön.")
    assert TextMap(consensa, consensa).span(3, 7) == (3, 7, 1.0)


def test_text_map_of_texts_that_differ_keeps_what_matches():
    base = " ".join(f"word{i} alpha beta gamma delta" for i in range(3000))
    changed = base.replace("word1500 ", "CHANGED ").replace("word10 ", "")
    m = TextMap(base, changed)
    assert m.how == "aligned" and m.matched > 0.99
    s = base.index("word2000 ")
    got = m.span(s, s + len("word2000 alpha"))
    assert changed[got[0]:got[1]] == "word2000 alpha" and got[2] == 1.0
    s = base.index("word1500 ")
    got = m.span(s, s + len("word1500 alpha"))
    assert changed[got[0]:got[1]].endswith("alpha") and got[2] < 1.0
    blocks = align_blocks("abcdefghij" * 3, "abcdeXfghij" * 3)
    assert sum(n for _, _, n in blocks) == 30


def test_locator_exact_approximate_and_not_found():
    text = ("Interviewer: Did it help?\nParticipant: It helped a lot, really.\n"
            "Interviewer: Why?\nParticipant: Because my supervisor listened to me and I felt "
            "heard. That was new.\n")
    loc = Locator(text)
    s, e, share, n = loc.find("It helped  a lot,\nreally.")
    assert text[s:e] == "It helped a lot, really." and share == 1.0 and n == 1
    # speaker labels inside a quote spanning turns; a truncated quote
    s, e, share, _ = loc.find("Dan: Why? Participant: Because my supervisor listened to me and "
                              "I felt heard.")
    assert text[s:e] == "Why?\nParticipant: Because my supervisor listened to me and I felt heard."
    assert share < 1.0
    s, e, share, _ = loc.find("Because my supervisor listened…")
    assert text[s:e] == "Because my supervisor listened" and share == 1.0
    assert loc.find("Something that nobody ever said in this interview at all") is None


def test_locator_joins_a_quote_that_skips_text():
    filler = " ".join(f"n{i}" for i in range(300))
    text = f"First part of the answer about training. {filler} Second part about supervision."
    s, e, share, _ = Locator(text).find("First part of the answer about training. [...] Second "
                                        "part about supervision.")
    assert text[s:e] == text.strip() and share > 0.85


def test_locator_prefers_the_place_nearest_the_hint():
    text = "Yeah. I agree.\nOther things.\nYeah. I agree.\n"
    later = text.rindex("Yeah")
    assert Locator(text).find("Yeah. I agree.", hint=later)[:2] == (later, later + 14)
    assert Locator(text).find("Yeah. I agree.")[3] == 2


def test_offset_variants_cover_line_endings_and_unicode_forms():
    text = unicodedata.normalize("NFD", "a\r\nb é\r\n")
    names = [v[0] for v in offset_variants(text)]
    assert names[0] == "as is" and "LF" in names and "NFC" in names and "LF+NFC" in names


def test_match_cases():
    got = match_cases(["T01.docx", "t02", "Interview 3.txt", "zzz"], ["T01", "T02", "Interview 3"])
    assert got == {"T01.docx": "T01", "t02": "T02", "Interview 3.txt": "Interview 3"}


def test_a_source_name_is_matched_as_ingest_made_its_case_id():
    """A project's source "<b>src2</b>.txt" is case "<b>src2</b>" (ingest cuts the
    name's own extension); read as a path its stem was "b>", and its codes were left out
    as a case not in the run. So is a name with a control character ingest removed."""
    names = ["<b>src2</b>.txt", "=SRC1.txt", "Site A/T03.docx", "T\u202e04.docx"]
    got = match_cases(names, ["<b>src2</b>", "=SRC1", "Site A/T03", "T04"])
    assert got == {"<b>src2</b>.txt": "<b>src2</b>", "=SRC1.txt": "=SRC1",
                   "Site A/T03.docx": "Site A/T03", "T\u202e04.docx": "T04"}


# --- Placing codes on a run -------------------------------------------------------------

def _expected_spans(study, text_of=lambda t: t):
    """(case, start, end) of each study sentence in Consensa's own text."""
    return {(r["case"], r["text"]): (r["start"], r["end"])
            for r in topic_rows(study, text_of=text_of)}


@pytest.mark.parametrize("offsets, quotes", [(True, True), (True, False), (False, True)])
def test_placing_table_codes_on_crlf_nfd_transcripts(study_run, tmp_path, offsets, quotes):
    """Codes made on LF + NFC copies of CRLF + NFD transcripts land on the right characters."""
    folder = study_run("crlf-nfd")
    run = load_run(folder)
    study = folder.parent / "study-crlf-nfd"
    assert "\r\n" in run.sources["case01"] and "i\u0308" in run.sources["case01"]
    rows = topic_rows(study, text_of=nfc_lf, offsets=offsets, quotes=quotes)
    codes = read_codes(write_csv(tmp_path / "codes.csv", rows))
    placed, notes = place_codes(codes, run)
    assert (placed["status"] == "placed").all()
    truth = topic_rows(study)   # offsets in the transcripts as they are (CRLF, NFD)
    for got, want in zip(placed.itertuples(), truth, strict=True):
        text = run.sources[got.case_id]
        assert (got.start_char, got.end_char) == (want["start"], want["end"]), got
        assert unicodedata.normalize("NFC", text[got.start_char:got.end_char]) == \
            unicodedata.normalize("NFC", want["text"])
    if offsets:
        assert all("LF+NFC" in h for h in placed["how"])
        assert any("LF+NFC" in n for n in notes)
    else:
        assert set(placed["how"]) <= {"located", "located (1 of 2 places)",
                                      "located (1 of 3 places)"}


def test_segment_coverage_assigns_codes_covering_half_a_segment(study_run, tmp_path):
    folder = study_run()
    run = load_run(folder)
    seg = run.segments[run.segments["case_id"] == "case01"].iloc[[0]]
    sid, s, e = seg["segment_id"].iloc[0], int(seg["start_char"].iloc[0]), \
        int(seg["end_char"].iloc[0])
    n = e - s
    rows = [  # A: 60% in two overlapping passages (counted once); B: 20%, partial only
        {"case": "case01", "code": "A", "start": s, "end": s + n * 4 // 10, "coder": "Ana"},
        {"case": "case01", "code": "A", "start": s + n * 2 // 10, "end": s + n * 6 // 10,
         "coder": "Ana"},
        {"case": "case01", "code": "B", "start": e - n // 5, "end": e + 50, "coder": "Ana"},
        {"case": "case01", "code": "C", "start": s, "end": e, "coder": "Ben"},
    ]
    codes = read_codes(write_csv(tmp_path / "codes.csv", rows))
    placed, _ = place_codes(codes, run)
    cov = segment_coverage(seg, placed, by_coder=False).set_index("code")["coverage"]
    assert cov["A"] == pytest.approx((s + n * 6 // 10 - s) / n)
    assert cov["B"] == pytest.approx((n // 5) / n)
    assert cov["C"] == 1.0
    assert primary_codes(segment_coverage(seg, placed, by_coder=False)) == {sid: "C"}
    per = segment_coverage(seg, placed, by_coder=True)
    assert primary_codes(per[per["coder"] == "Ana"]) == {sid: "A"}
    assert set(per["coder"]) == {"Ana", "Ben"}


def test_primary_code_ties_go_to_more_coders_then_deeper_then_alphabetical():
    cov = pd.DataFrame({"segment_id": ["s"] * 3, "coder": [""] * 3,
                        "code": ["B", "A", "A > X"], "covered": [5] * 3, "coverage": [1.0] * 3})
    assert primary_codes(cov) == {"s": "A > X"}
    assert primary_codes(cov, votes={("s", "B"): 2, ("s", "A > X"): 1}) == {"s": "B"}
    assert primary_codes(cov.iloc[:2]) == {"s": "A"}


def test_unknown_cases_are_reported(study_run, tmp_path):
    run = load_run(study_run())
    codes = read_codes(write_csv(tmp_path / "codes.csv", [
        {"case": "nobody", "code": "A", "text": "x"},
        {"case": "case01.txt", "code": "A", "text": "Thank you for joining me today."}]))
    placed, notes = place_codes(codes, run)
    assert list(placed["status"]) == ["case not in the run", "placed"]
    assert any("'nobody'" in n and "not in the run" in n for n in notes)


def test_moved_transcripts_fall_back_to_the_segments_text(study_run, tmp_path):
    src = study_run()
    folder = shutil.copytree(src, tmp_path / "run")
    manifest = (folder / "manifest.json").read_text()
    (folder / "manifest.json").write_text(manifest.replace("study-plain", "moved-away"))
    run = load_run(folder)
    assert not any(run.exact.values())
    assert any("not found" in n for n in run.notes)
    seg = run.segments.iloc[0]
    assert run.sources[seg["case_id"]][seg["start_char"]:seg["end_char"]] == seg["text"]
    study = src.parent / "study-plain"
    codes = read_codes(write_csv(tmp_path / "codes.csv", topic_rows(study)))
    placed, _ = place_codes(codes, run)
    cov = segment_coverage(run.segments, placed, by_coder=False)
    assert len(primary_codes(cov)) == len(run.segments)
    assert set(primary_codes(cov).values()) == set(TOPIC_CODES.values())


def test_not_a_run_folder(tmp_path):
    with pytest.raises(InputError, match="not a Consensa run folder"):
        load_run(tmp_path)
    with pytest.raises(InputError, match="no such run folder"):
        load_run(tmp_path / "nope")


def test_nfd_crlf_helpers_are_inverse_up_to_normalisation():
    text = "The client said\nso.\n"
    assert nfc_lf(nfd_crlf(text)) == unicodedata.normalize("NFC", text.replace(
        "client", "cli\u0308ent"))
