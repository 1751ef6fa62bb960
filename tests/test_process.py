"""A whole CQR process, as a team of two judges and an auditor carries it out: round 1
partly in the browser (headless Chromium) and partly in a workbook, the consensus
(a new domain, a subcategory, a judges' core idea, a moved segment), the auditor's
round, the judges' answers, round 2 on round 1's consensus, and the final codebook
and its REFI-QDA project.

The process runs once per module (``process``); the tests check what it left in the
review store, in the final codebook and in the exported project. Screenshots of the
key pages go to a temporary folder and, when CONSENSA_SCREENSHOTS names a folder,
there too (``CONSENSA_SCREENSHOTS=docs/screenshots`` refreshes the README's).
"""

from __future__ import annotations

import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

import openpyxl
import pandas as pd
import pytest
import yaml

from pipeline.cli import main
from pipeline.exchange.codes import load_run as load_codes
from pipeline.exchange.refi import NS_PROJECT, read_project
from pipeline.review.agreement import review_status
from pipeline.review.model import core_idea_item, load_run, segment_item
from pipeline.review.store import ReviewStore
from tests.refi_schema import schema_errors
from tests.review_helpers import fill, fill_rows
from tests.study import run_study_cli
from tests.test_web import CHROMIUM, CHROMIUM_ARGS, decide, flash, open_as, serving, submit

NEEDS_CHROMIUM = pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"),
                                    reason="needs Debian's chromium at /usr/bin/chromium "
                                    "(`make test` installs it)")


def process_test(f):
    """A test of what the process left: slow (the run, a browser, about 30 s once)."""
    return pytest.mark.slow(NEEDS_CHROMIUM(f))


P = f"{{{NS_PROJECT}}}"
CASES = {"case01": ("CBT", 4, "yes"), "case02": ("CBT", 11, "yes"),
         "case03": ("psychodynamic", 7, "yes"), "case04": ("CBT", 19, "no"),
         "case05": ("psychodynamic", 2, "no"), "case06": ("psychodynamic", 25, "no")}
#: the invented study's supervision themes: MERGED ("My supervisor listened and
#: helped") goes into theme BASE ("The supervisor helped me sort"); SUB ("In
#: consultation my colleagues said") becomes a subcategory of it
BASE, MERGED, SUB = 7, 10, 6
RENAMED = "Learning about tears on the job"
RENAMED_2 = "What training left out: tears learned on the job"
DOMAIN = "Supervision and consultation"
DOMAIN_DEF = "Where therapists took their tears after the session, and what they found there."
CORE_ANA = "Her training was silent about tears; supervision made sense of them."
CORE_BEN = "Nobody taught her what to do with her own tears."
CORE = "Training was silent about her tears; her supervisor helped her understand them."
AUDIT_WEB = "Is consultation with colleagues really supervision? Check case02's quotes."
AUDIT_BOOK = "The name says 'on the job'; the quotes say what training left out."
ROUND_2_WHY = "the auditor's point, taken up"
ARGUE = "Colleagues stood in for the supervisor; the participants say so."


@dataclass
class Process:
    """What the process did, for the tests to find again."""
    run: Path
    shots: Path
    new_domain: str = ""
    moved: str = ""
    comments: dict[str, int] = field(default_factory=dict)   # item -> audit comment id
    unstable: list[int] = field(default_factory=list)


# --- the study and the screenshots ------------------------------------------------------------

def _cqr_run(root: Path) -> Path:
    """A CQR run of the invented study, resampled by `consensa stability`, with a
    table of three case attributes in the run folder."""
    run = run_study_cli(root, analysis="consensa.CQR.v1")
    assert main(["stability", str(run), "--resamples", "6", "--unstable-below", "0.7",
                 "-q"]) == 0
    rows = ["case_id,orientation,years_in_practice,cried"]
    rows += [f"{c},{o},{y},{cried}" for c, (o, y, cried) in CASES.items()]
    (run / "cases.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return run


def _shoot(page, proc: Process, name: str, *, height: int | None = 1100) -> None:
    """A screenshot of the page's top ``height`` pixels (None: the window as it is
    scrolled), into the test's folder and, when CONSENSA_SCREENSHOTS names one, into
    that folder as well."""
    if height:
        page.set_viewport_size({"width": 1280, "height": height})
    path = proc.shots / name
    page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size > 10_000, f"{name} looks empty"
    extra = os.environ.get("CONSENSA_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(extra) / name)


def _rows(path: Path, sheet: str) -> dict:
    ws = openpyxl.load_workbook(path)[sheet]
    head = [c.value for c in ws[1]]
    return {str(r[0]): dict(zip(head, r)) for r in ws.iter_rows(min_row=2, values_only=True)}


def _status(run: Path) -> dict:
    with ReviewStore(load_run(run)) as store:
        return {i.item: i for i in review_status(store).items}


def _cli(*args: str) -> None:
    assert main(list(args)) == 0, args


# --- the process ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def process(tmp_path_factory) -> Process:
    import playwright.sync_api as playwright_sync

    root = tmp_path_factory.mktemp("process")
    proc = Process(run=_cqr_run(root), shots=root / "screenshots")
    proc.shots.mkdir()
    run = proc.run
    stab = pd.read_csv(run / "stability.csv")
    proc.unstable = [int(t) for t, ok in zip(stab["theme_id"], stab["stable"]) if not ok]
    seg = pd.read_parquet(run / "segments.parquet")
    # a segment the run left out of every category (the frame's small talk holds it)
    found = seg[(seg["theme"] == -1) & seg["text"].str.contains("keeps emotion out")]
    proc.moved = str(found["segment_id"].iloc[0])
    names = pd.read_csv(run / "themes.csv").set_index("theme_id")["name"].str.lower()
    assert "supervisor" in names[BASE] and "supervisor" in names[MERGED], names  # see MERGED
    assert "consultation" in names[SUB], names

    # round 1: a workbook for each judge and the auditor
    _cli("review", "export", str(run), "--judges", "ana,ben", "--auditor", "dee")
    books = run / "review" / "round-1"
    assert {p.name for p in books.glob("*.xlsx")} == {"ana.xlsx", "ben.xlsx", "dee.xlsx"}

    with playwright_sync.sync_playwright() as p, serving(run) as (review, base):
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        ana = open_as(browser, review, base, "ana")
        assert "Round 1 is open" in ana.locator(".summary").inner_text()

        # ana decides in the browser: a rename, a merge, a subcategory, a core idea, a move
        assert decide(ana, base, "theme:1", "rename", new_name=RENAMED) == 303
        assert decide(ana, base, f"theme:{MERGED}", "merge", target=BASE,
                      comment="the same supervisor, twice") == 303
        assert decide(ana, base, f"theme:{SUB}", "subcategory", target=BASE) == 303
        assert f"subcategory of theme {BASE}" in flash(ana)
        ana.goto(f"{base}/domain/0")
        ana.fill("#core-case01 textarea[name=core_idea]", CORE_ANA)
        assert submit(ana, "#core-case01 button[value=position]") == 303
        ana.goto(f"{base}/search?q=%22keeps+emotion+out%22&in=unassigned")
        ana.check(f"li.quote[data-segment='{proc.moved}'] input[name=segments]")
        ana.select_option("select[name=move_to]", "1")
        assert submit(ana, "#move button[value=position]") == 303
        assert "1 segment(s), move to theme 1" in flash(ana)

        # ... and creates a domain, and puts the supervision theme in it (as the consensus)
        ana.goto(f"{base}/")
        ana.click("details.create-domain summary")
        ana.fill("#create-domain input[name=new_name]", DOMAIN)
        ana.fill("#create-domain textarea[name=core_idea]", DOMAIN_DEF)
        assert submit(ana, "#create-domain button") == 303
        proc.new_domain = ana.url.rsplit("/", 1)[1]
        assert proc.new_domain == str(int(load_run(run).domains["domain_id"].max()) + 1)
        assert decide(ana, base, f"theme:{BASE}", "reassign", as_="consensus",
                      domain=proc.new_domain) == 303

        # ben fills his workbook; it is imported
        ben = books / "ben.xlsx"
        fill_rows(ben, "themes", {**{tid: {"decision": "accept"} for tid in _rows(ben, "themes")},
                                  "1": {"decision": "rename", "new_name": RENAMED},
                                  str(MERGED): {"decision": "merge", "merge_into": BASE}})
        fill_rows(ben, "domains", {did: {"decision": "accept"} for did in _rows(ben, "domains")})
        fill(ben, "core ideas", "case01:0", your_core_idea=CORE_BEN)
        fill(ben, "unassigned", proc.moved, move_to_theme=1)
        _cli("review", "import", str(run), str(ben))
        st = _status(run)
        for item in ("theme:1", f"theme:{MERGED}", segment_item(proc.moved)):
            assert st[item].state == "agreed", item
        assert st[f"theme:{SUB}"].state == "disputed"             # ana: subcategory; ben: accept
        assert st[core_idea_item("case01", 0)].state == "disputed"
        assert st[f"theme:{BASE}"].state == "resolved"

        # the consensus: the subcategory in the browser, the core idea and the rest on the
        # command line
        ana.goto(f"{base}/theme/{SUB}")
        ana.click("tr[data-judge=ana] a:has-text('start from this')")
        assert ana.locator("#decide select[name=decision]").input_value() == "subcategory"
        assert submit(ana, "#decide button[value=consensus]") == 303
        _cli("review", "resolve", str(run), "--core-idea-of", "case01:0", "--decision", "edit",
             "--core-idea", CORE, "--by", "team")
        for item in [i for i, s in _status(run).items() if s.state in ("open", "disputed")]:
            kind, ident = item.split(":", 1)
            assert kind in ("theme", "domain"), item
            assert item not in ("theme:1", f"theme:{BASE}", f"theme:{MERGED}", f"theme:{SUB}"), item
            _cli("review", "resolve", str(run), f"--{kind}", ident, "--decision", "accept",
                 "--by", "team")
        ana.goto(f"{base}/")
        assert "Every item of round 1 is agreed" in ana.locator(".summary").inner_text()
        # the new domain's page: its categories as they stand, the merge and subcategory in
        ana.goto(f"{base}/domain/{proc.new_domain}")
        cats = ana.locator("ul.category-list").inner_text()
        assert f"{BASE}: The supervisor helped me sort" in cats and f"{SUB}:" in cats

        # the auditor's round: dee's workbook shows the consensus; a comment in it ...
        _cli("review", "export", str(run), "--auditor", "dee", "--force")
        dee_book = books / "dee.xlsx"
        row = _rows(dee_book, "themes")["1"]
        assert row["consensus so far"] == f'rename to "{RENAMED}"' and not row["decision"]
        fill(dee_book, "themes", 1, comment=AUDIT_BOOK)
        _cli("review", "import", str(run), str(dee_book))
        # ... and one in the browser, where the change against the proposal is shown
        dee = open_as(browser, review, base, "dee")
        dee.goto(f"{base}/theme/{SUB}")
        assert f"subcategory of theme {BASE}" in dee.locator("dd.change").inner_text()
        assert dee.locator("#decide").count() == 0
        dee.fill(".comment-form textarea[name=comment]", AUDIT_WEB)
        assert submit(dee, ".comment-form button") == 303
        _shoot(dee, proc, "auditor.png", height=1000)
        with ReviewStore(load_run(run)) as store:
            rows = store.audit_comment_rows()
        proc.comments = {"theme:1": rows["theme:1"][0]["id"],
                         "sub": rows[f"theme:{SUB}"][0]["id"]}

        # the judges answer: ana in the browser, ben on the command line
        ana.goto(f"{base}/theme/{SUB}")
        form = ana.locator(f"#comment-{proc.comments['sub']} form.answer-form")
        form.locator("select[name=answer]").select_option("accept")
        form.locator("input[name=text]").fill("we read case02 again")
        assert submit(ana, f"#comment-{proc.comments['sub']} form.answer-form "
                      "button:has-text('Answer')") == 303
        _cli("review", "answer", str(run), "--comment", str(proc.comments["sub"]),
             "--by", "ben", "--argue", ARGUE)
        for judge in ("ana", "ben"):
            _cli("review", "answer", str(run), "--comment", str(proc.comments["theme:1"]),
                 "--by", judge, "--accept")
        ana.goto(f"{base}/theme/{SUB}")
        answers = ana.locator(f"#comment-{proc.comments['sub']} ul.answers").inner_text()
        assert "ana: accept: we read case02 again" in answers and f"ben: argue: {ARGUE}" in answers

        # round 2 opens on round 1's consensus; its workbooks start from it
        _cli("review", "next-round", str(run), "--by", "team")
        _cli("review", "export", str(run), "--judges", "ana,ben")
        row = _rows(run / "review" / "round-2" / "ana.xlsx", "themes")["1"]
        assert row["decision"] == "rename" and row["new name"] == RENAMED and row["changed"]
        ana.goto(f"{base}/")
        summary = ana.locator(".summary").inner_text()
        assert "Round 1 is closed; round 2 starts from round 1's consensus" in summary
        # a round that has just begun is not called closed, while the header says open
        assert "Round 2 has just begun" in summary and "of round 2 is agreed" not in summary
        _shoot(ana, proc, "overview.png", height=1000)
        ana.goto(f"{base}/theme/1")
        assert RENAMED in ana.locator("dd.baseline").inner_text()
        # one change in round 2: the auditor's point on theme 1, taken up
        assert decide(ana, base, "theme:1", "rename", as_="consensus", new_name=RENAMED_2,
                      comment=ROUND_2_WHY) == 303
        assert ana.locator("h1 .live-name").inner_text() == RENAMED_2
        assert "changed in round 2" in ana.locator("dd.baseline").inner_text()
        _shoot(ana, proc, "round2.png", height=900)

        # the evidence in front of the judges: flags, cases with attributes, subgroups
        shown = proc.unstable[0] if proc.unstable else 0
        ana.goto(f"{base}/theme/{shown}")
        if proc.unstable:
            assert "unstable" in ana.locator("dd.flags").inner_text()
        assert ana.locator("section.subgroups tr[data-attribute=cried]").count() == 2
        # one case a value: groups of one, no subgroup
        assert ana.locator("section.subgroups tr[data-attribute=years_in_practice]").count() == 0
        ana.locator("details.context").first.evaluate("d => d.open = true")
        _shoot(ana, proc, "theme.png", height=2000)
        ana.goto(f"{base}/domain/0")
        assert CORE in ana.locator("#core-case01 .core-now").inner_text()
        ana.set_viewport_size({"width": 1280, "height": 1200})
        ana.locator("#core-h").evaluate("e => e.scrollIntoView()")
        _shoot(ana, proc, "domain.png", height=None)

        # the final codebook, and the agreed project, from the export page
        ana.goto(f"{base}/export")
        assert not ana.locator("#write-codebook").is_disabled()
        _cli("review", "apply", str(run))
        _cli("export", "qdpx", str(run))
        ana.goto(f"{base}/export")
        assert ana.locator("table.files").inner_text().count("codebook.yaml") == 1
        _shoot(ana, proc, "export.png", height=900)
        browser.close()
    return proc


# --- what it left -----------------------------------------------------------------------------

@process_test
def test_every_decision_is_in_the_store(process):
    run, new = process.run, process.new_domain
    with ReviewStore(load_run(run)) as store:
        rounds = store.rounds()
        assert [r["round"] for r in rounds] == [1, 2] and rounds[0]["closed_by"] == "team"
        one = review_status(store, 1)
        pos = {i.item: i.positions for i in one.items}
        cons = one.effective_consensus()
        two = review_status(store, 2).effective_consensus()
        comments = store.audit_comment_rows(1)
        log = store.audit_log()
    # ana's positions from the browser, ben's from his workbook
    assert pos["theme:1"]["ana"].new_name == RENAMED == pos["theme:1"]["ben"].new_name
    assert pos[f"theme:{MERGED}"]["ana"].target == str(BASE) == pos[f"theme:{MERGED}"]["ben"].target
    assert pos[f"theme:{SUB}"]["ana"].decision == "subcategory"
    assert pos[f"theme:{SUB}"]["ben"].decision == "accept"
    ci = core_idea_item("case01", 0)
    assert pos[ci]["ana"].core_idea == CORE_ANA and pos[ci]["ben"].core_idea == CORE_BEN
    assert pos[segment_item(process.moved)]["ana"].target == "1"
    # round 1's consensus
    assert cons[f"domain:{new}"].decision == "create" and cons[f"domain:{new}"].new_name == DOMAIN
    assert cons[f"theme:{BASE}"].decision == "reassign" and cons[f"theme:{BASE}"].domain == new
    assert cons[f"theme:{SUB}"].decision == "subcategory" and cons[f"theme:{SUB}"].target == str(BASE)
    assert cons[ci].core_idea == CORE
    assert cons["theme:1"].new_name == RENAMED
    assert cons[segment_item(process.moved)].target == "1"
    # round 2 carries all of it, and changed theme 1
    assert two["theme:1"].new_name == RENAMED_2
    assert two[f"theme:{SUB}"].target == str(BASE) and two[ci].core_idea == CORE
    # the auditor's comments and the judges' answers
    web, book = comments[f"theme:{SUB}"][0], comments["theme:1"][0]
    assert (web["by"], web["comment"]) == ("dee", AUDIT_WEB)
    assert (book["by"], book["comment"]) == ("dee", AUDIT_BOOK)
    assert web["answers"]["ana"]["answer"] == "accept"
    assert web["answers"]["ben"]["answer"] == "argue" and web["answers"]["ben"]["text"] == ARGUE
    assert {j: a["answer"] for j, a in book["answers"].items()} == {"ana": "accept",
                                                                   "ben": "accept"}
    # and the audit log has every kind of step, each by the person who took it
    actions = {r["action"] for r in log}
    assert {"panel", "position", "consensus", "audit comment", "audit answer", "round closed",
            "round opened"} <= actions
    assert {r["who"] for r in log if r["action"] == "position"} == {"ana", "ben"}
    assert {r["who"] for r in log if r["action"] == "audit comment"} == {"dee"}


@process_test
def test_every_decision_is_in_the_final_codebook(process):
    run, new = process.run, int(process.new_domain)
    book = yaml.safe_load((run / "review" / "codebook.yaml").read_text(encoding="utf-8"))
    assert not book.get("draft") and book["review"]["round"] == 2
    domains = {d["id"]: d for d in book["domains"]}
    cats = {c["id"]: (d["id"], c) for d in book["domains"] for c in d["categories"]}
    made = domains[new]
    assert made["name"] == DOMAIN and made["definition"] == DOMAIN_DEF and made["created"]
    # the supervision theme, with the theme merged into it and its new subcategory
    assert cats[BASE][0] == new and sorted(cats[BASE][1]["from_themes"]) == sorted([BASE, MERGED])
    assert MERGED not in cats
    assert cats[SUB][0] == new and cats[SUB][1]["parent"] == BASE
    # the renamed category (round 2's name), with the segment moved into it
    assert cats[1][1]["name"] == RENAMED_2
    seg = pd.read_parquet(run / "segments.parquet")
    assert cats[1][1]["n_segments"] == int((seg["theme"] == 1).sum()) + 1
    assigned = pd.read_csv(run / "review" / "assignments.csv")
    assert assigned.set_index("segment_id").at[process.moved, "category_id"] == 1
    # the judges' core idea of case01 in domain 0
    core = [c for d in book["domains"] for c in d.get("core_ideas", []) if c["case"] == "case01"
            and c.get("from_domain", d["id"]) == 0]
    assert [(c["core_idea"], c["source"]) for c in core] == [(CORE, "judges")]
    md = (run / "review" / "codebook.md").read_text(encoding="utf-8")
    assert RENAMED_2 in md and DOMAIN in md and "(subcategory of" in md
    # the audit of round 1 with the judges' answers: part of the record, in both files
    audit = {c["comment"]: c for c in book["review"]["audit"]}
    assert set(audit) == {AUDIT_WEB, AUDIT_BOOK}
    assert {c["round"] for c in audit.values()} == {1} and audit[AUDIT_WEB]["by"] == "dee"
    assert {a["judge"]: (a["answer"], a["text"]) for a in audit[AUDIT_WEB]["answers"]} == {
        "ana": ("accept", "we read case02 again"), "ben": ("argue", ARGUE)}
    assert f'dee: "{AUDIT_WEB}"; answers: ana: accept (we read case02 again); ben: argue' in md
    if process.unstable:
        flagged = [cid for cid, (_, c) in cats.items() if "unstable" in c.get("flags", [])]
        assert set(flagged) == {t for t in process.unstable if t in cats}


@process_test
def test_the_screenshots_show_the_process(process):
    names = sorted(p.name for p in process.shots.glob("*.png"))
    assert names == ["auditor.png", "domain.png", "export.png", "overview.png", "round2.png",
                     "theme.png"]


def _qde(path: Path) -> ET.Element:
    with zipfile.ZipFile(path) as zf:
        return ET.fromstring(zf.read("project.qde"))


@process_test
def test_the_agreed_qdpx_validates_against_the_refi_schema(process):
    assert schema_errors(process.run / "export" / "mini-agreed.qdpx") == []


@process_test
def test_pyrefiqda_reads_every_code_source_coding_note_and_variable(process):
    from pyrefiqda import RefiProject

    run = process.run
    path = run / "export" / "mini-agreed.qdpx"
    root = _qde(path)
    project = RefiProject.load(path, extract_dir=str(run / "export" / "pyrefiqda"))

    def walk(codes):
        for c in codes:
            yield c
            yield from walk(c.code)

    codes = {c.name for c in walk(project.code_book.codes.code)}
    assert len(list(walk(project.code_book.codes.code))) == len(list(root.iter(f"{P}Code")))
    assert {DOMAIN, RENAMED_2, "The supervisor helped me sort"} <= codes
    sources = project.sources.text_source
    assert len(sources) == len(CASES)
    n_codings = sum(len(c.coding) for s in sources for c in s.plain_text_selection)
    assert n_codings == len(list(root.iter(f"{P}Coding"))) > 0
    notes = [n.plain_text_content or "" for n in project.notes.note]
    assert len(notes) == len(root.find(f"{P}Notes"))
    assert any(CORE in n for n in notes) and any(ROUND_2_WHY in n for n in notes)
    assert {v.name for v in project.variables.variable} == {
        "orientation", "years_in_practice", "cried"}
    assert len(project.cases.case) == len(CASES)
    assert all(len(c.variable_value) == 3 for c in project.cases.case)
    # the codings' text is the transcripts' text at their offsets; the moved segment is coded
    back = read_project(path)
    sources = load_codes(run).sources
    assert all(back.texts[r.case][r.start:r.end] == sources[r.case][r.start:r.end]
               for r in back.codings.itertuples())
    moved = pd.read_parquet(run / "segments.parquet").set_index("segment_id").loc[process.moved]
    [code] = back.codebook.loc[back.codebook["name"] == RENAMED_2, "code"]
    hits = back.codings[(back.codings["case"] == moved["case_id"]) & (back.codings["code"] == code)]
    texts = {back.texts[r.case][r.start:r.end] for r in hits.itertuples()}
    assert moved["text"] in texts


@process_test
def test_the_auditors_comments_of_every_round_are_notes(process):
    root = _qde(process.run / "export" / "mini-agreed.qdpx")
    texts = [n.findtext(f"{P}PlainTextContent") or "" for n in root.find(f"{P}Notes")]
    assert any(AUDIT_WEB in t for t in texts) and any(AUDIT_BOOK in t for t in texts)
    # with the judges' answers to them
    assert any(AUDIT_WEB in t and ARGUE in t for t in texts) or \
        any(AUDIT_BOOK in t and ARGUE in t for t in texts)


def test_an_attribute_with_a_value_per_case_makes_no_subgroups():
    """Six cases with six values of years in practice make six groups of one: no
    subgroups. Orientation (two values) and a value shared by two cases still do."""
    from types import SimpleNamespace

    from pipeline.review.evidence import subgroup_attributes
    cases = pd.DataFrame({"case_id": list(CASES), "orientation": [v[0] for v in CASES.values()],
                          "years_in_practice": [str(v[1]) for v in CASES.values()],
                          "cried": [v[2] for v in CASES.values()],
                          "site": ["a", "a", "b", "c", "d", "e"]})
    got = subgroup_attributes(SimpleNamespace(cases=cases))
    assert got == {"orientation": ["CBT", "psychodynamic"], "cried": ["no", "yes"],
                   "site": ["a", "b", "c", "d", "e"]}
    assert subgroup_attributes(SimpleNamespace(cases=cases.iloc[:2])) == {}


@process_test
def test_a_cases_core_idea_is_linked_to_its_case_and_its_domain(process):
    root = _qde(process.run / "export" / "mini-agreed.qdpx")
    case_guid = {c.get("name"): c.get("guid") for c in root.iter(f"{P}Case")}
    note_text = {n.get("guid"): n.findtext(f"{P}PlainTextContent") or ""
                 for n in root.find(f"{P}Notes")}
    codes = {c.get("guid") for c in root.iter(f"{P}Code")}
    links = list(root.iter(f"{P}Link"))
    assert links
    mine = [lk for lk in links if lk.get("originGUID") == case_guid["case01"]
            and CORE in note_text[lk.find(f"{P}NoteRef").get("targetGUID")]]
    assert len(mine) == 1 and mine[0].get("targetGUID") in codes
