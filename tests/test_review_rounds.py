"""Safer forms, rounds, the auditor's round and the judges' answers: through the store,
the command line, the workbooks and the web app (in process, without a browser)."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from starlette.testclient import TestClient

from pipeline.cli import main
from pipeline.report.templating import counted
from pipeline.review.agreement import review_status
from pipeline.review.model import Decision, ReviewError, load_run
from pipeline.review.store import ReviewStore
from pipeline.review.workbook import FRAME_NOTE
from pipeline.stages.cqr import frequency_label
from pipeline.web import create_app
from tests.review_helpers import fill

BASE = "http://127.0.0.1:8765"


# --- an in-process client ------------------------------------------------------------------

class Web:
    """The review app of a run as one person sees it: signed in, with their CSRF token."""

    def __init__(self, run: Path, name: str) -> None:
        self.review = create_app(run)
        self.client = TestClient(self.review.asgi, base_url=BASE, follow_redirects=False)
        r = self.client.get(f"/?token={self.review.token}")
        assert r.status_code in (302, 303, 307)
        page = self.client.get("/login").text
        self.post("/login", name=name, _page=page)

    def csrf(self, page: str) -> str:
        return re.search(r'name="csrf" value="([^"]+)"', page).group(1)

    def get(self, path: str) -> str:
        r = self.client.get(path)
        assert r.status_code == 200, r.text[:500]
        return r.text

    def post(self, path: str, _page: str | None = None, _pairs=(), **fields):
        page = _page if _page is not None else self.get("/")
        data: dict[str, list[str]] = {}
        for k, v in [("csrf", self.csrf(page)), *fields.items(), *_pairs]:
            data.setdefault(k, []).append(v)
        return self.client.post(path, data=data, headers={"Origin": BASE})

    def flashes(self) -> str:
        return " ".join(re.findall(r'<p class="flash[^"]*"[^>]*>([^<]*)</p>', self.get("/")))


@pytest.fixture()
def panel(review_run):
    with ReviewStore(load_run(review_run), create=True) as s:
        s.set_panel(["ana", "ben"], ["dee"])
    return review_run


def _select(page: str, name: str) -> str:
    """The HTML of the first <select name=...> of a page."""
    return re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', page, re.S).group(1)


def _selected(html: str) -> list[str]:
    return re.findall(r'<option value="([^"]*)"[^>]*\bselected\b', html)


# --- 1. safer forms -----------------------------------------------------------------------

def test_forms_start_without_a_choice_and_refuse_a_save_without_one(panel):
    web = Web(panel, "ana")
    page = web.get("/theme/0")
    # the decision and the move target start on the empty choice, not on "accept" / theme 0
    assert _selected(_select(page, "decision")) == [""]
    assert _selected(_select(page, "move_to")) == [""]
    assert _selected(_select(web.get("/search?q=the&in=0"), "move_to")) == [""]
    seg = load_run(panel).segments["segment_id"].iloc[0]
    assert _selected(_select(web.get(f"/segment/{seg}"), "decision")) == [""]

    r = web.post("/decide", _page=page, item="theme:0", v_item="0", v_mine="0",
                 decision="", new_name="", target="", domain="", core_idea="", comment="",
                 **{"as": "position"})
    assert r.status_code == 400 and "Choose a decision first" in r.text
    r = web.post("/move", _page=page, _pairs=[("segments", seg)], move_to="",
                 **{"as": "consensus"})
    assert r.status_code == 400 and "Choose the theme to move the segments to" in r.text
    with ReviewStore(load_run(panel)) as store:
        assert store.positions() == {} and store.consensus() == {}
        assert not [r for r in store.audit_log() if r["item"]]

    # with a choice, the same form saves
    r = web.post("/decide", _page=page, item="theme:0", v_item="0", v_mine="0",
                 decision="accept", **{"as": "position"})
    assert r.status_code == 303
    with ReviewStore(load_run(panel)) as store:
        assert store.positions()["theme:0"]["ana"].decision == "accept"


def test_a_busy_store_keeps_the_judges_entry_on_the_page(panel, monkeypatch):
    """When another program holds the store past the wait, the judge's decision is not
    lost on an error page: the form comes back with what they wrote and says that
    nothing was saved and what to do."""
    import sqlite3

    import pipeline.review.store as store_module

    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.2)
    web = Web(panel, "ana")
    page = web.get("/theme/0")
    other = sqlite3.connect(store_module.db_path(panel), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        r = web.post("/decide", _page=page, item="theme:0", v_item="0", v_mine="0",
                     decision="rename", new_name="Tears as a signal",
                     comment="my reasons, written at length", **{"as": "position"})
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert r.status_code == 400, r.text[:300]
    assert "stayed busy" in r.text and "nothing was recorded" in r.text
    assert "Tears as a signal" in r.text and "my reasons, written at length" in r.text
    with ReviewStore(load_run(panel)) as store:
        assert store.positions() == {}
    # a form whose page cannot keep the entry (moving segments) says what to do
    other = sqlite3.connect(store_module.db_path(panel), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        seg = load_run(panel).segments["segment_id"].iloc[0]
        r = web.post("/move", _page=page, _pairs=[("segments", seg)], move_to="keep",
                     **{"as": "position"})
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert r.status_code == 400 and "stayed busy" in r.text
    assert "Nothing was saved. Wait for the other command to finish" in r.text
    # an auditor's comment comes back in its box, as a judge's decision does (and as
    # text, never markup)
    dee = Web(panel, "dee")
    page = dee.get("/theme/0")
    other = sqlite3.connect(store_module.db_path(panel), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        r = dee.post("/comment", _page=page, item="theme:0", back="/theme/0",
                     comment="Why <b>typical</b>? Only 3 cases say it in their own words.")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert r.status_code == 400 and "stayed busy" in r.text
    assert ("Why &lt;b&gt;typical&lt;/b&gt;? Only 3 cases say it in their own words."
            "</textarea>") in r.text
    with ReviewStore(load_run(panel)) as store:
        assert not store.audit_comment_rows(store.round)


def test_a_form_sent_after_the_server_started_again_gives_the_words_back(panel):
    """After `consensa serve` was killed and started again, a judge's form from the page
    still open got "This review can be opened only with the address ... printed" (403):
    it did not say nothing was saved, nor why, and what she typed was gone."""
    web = Web(panel, "ana")
    page = web.get("/theme/0")
    again = Web(panel, "ben")            # a new start: the sessions of the old one are gone
    again.client.cookies.clear()
    data = {"csrf": web.csrf(page), "item": "theme:0", "v_item": "0", "v_mine": "0",
            "decision": "rename", "new_name": "Tears as a signal",
            "comment": "my reasons, written at length", "as": "position"}
    r = again.client.post("/decide", data=data, headers={"Origin": BASE})
    assert r.status_code == 403
    assert "started again" in r.text and "Nothing was saved" in r.text and "--port" in r.text
    assert "Tears as a signal" in r.text and "my reasons, written at length" in r.text
    with ReviewStore(load_run(panel)) as store:
        assert store.positions() == {}
    # a form from another site is still refused, with nothing of it shown
    r = again.client.post("/decide", data=data, headers={"Origin": "https://elsewhere.example"})
    assert r.status_code == 403 and "Tears as a signal" not in r.text


def test_a_segment_page_says_where_the_segment_is_now(panel):
    """After the judges agreed to move a segment, its page still said "Theme now: theme
    5" (where Consensa had put it) and its breadcrumb led there."""
    seg = pd.read_parquet(panel / "segments.parquet")
    row = seg[seg["theme"] >= 0].iloc[0]
    sid, home = str(row["segment_id"]), int(row["theme"])
    themes = pd.read_parquet(panel / "themes.parquet")
    target = int(themes.loc[themes["theme_id"] != home, "theme_id"].iat[0])
    name = str(themes.loc[themes["theme_id"] == target, "name"].iat[0])
    with ReviewStore(load_run(panel)) as store:
        store.resolve([Decision(f"segment:{sid}", "move", target=str(target))], by="ana")
    page = Web(panel, "ana").get(f"/segment/{sid}")
    facts = page.split("<dt>Category now</dt>", 1)[1].split("</dd>", 1)[0]
    assert f'<a href="/theme/{target}">{html.escape(name)}</a> ({target})' in facts
    assert f"(proposed: theme {home}:" in facts


def test_final_codebook_button_is_enabled_only_when_nothing_is_open(panel):
    web = Web(panel, "ana")
    page = web.get("/export")
    button = re.search(r'<button[^>]*id="write-codebook"[^>]*>', page).group(0)
    assert "disabled" in button and 'id="why-not-final"' in page
    assert "still open" in page.split('id="why-not-final"')[1][:300]
    # a form sent anyway: back to the export page with the reason, nothing written
    r = web.post("/export/codebook", _page=page)
    assert r.status_code == 303 and r.headers["location"] == "/export"
    said = web.flashes()
    assert "was not written" in said and "still open" in said
    assert not (panel / "review" / "codebook.yaml").exists()

    run = load_run(panel)
    with ReviewStore(run) as store:
        store.resolve([Decision(i, "accept") for i in run.items()], by="ana")
    page = web.get("/export")
    button = re.search(r'<button[^>]*id="write-codebook"[^>]*>', page).group(0)
    assert "disabled" not in button and 'id="why-not-final"' not in page
    assert web.post("/export/codebook", _page=page).status_code == 303
    assert (panel / "review" / "codebook.yaml").is_file()


def test_resolve_merge_without_target_names_the_flag(panel, capsys):
    assert main(["review", "resolve", str(panel), "--theme", "1", "--decision", "merge",
                 "--by", "ana"]) == 2
    err = capsys.readouterr().err
    assert "--target" in err and "column" not in err


def test_a_blank_segment_row_is_no_position_and_keep_is_one(panel, capsys):
    run = load_run(panel)
    assert main(["review", "export", str(panel), "--judges", "ana,ben"]) == 0
    rdir = panel / "review" / "round-1"
    seg = run.segments[run.segments["theme"] == 0]["segment_id"].tolist()
    fill(rdir / "ana.xlsx", "segments", seg[0], move_to_theme=1)
    fill(rdir / "ana.xlsx", "segments", seg[1], move_to_theme=1)
    fill(rdir / "ben.xlsx", "segments", seg[1], move_to_theme="keep")
    capsys.readouterr()
    assert main(["review", "import", str(panel), str(rdir / "ana.xlsx"),
                 str(rdir / "ben.xlsx")]) == 0
    with ReviewStore(run) as store:
        st = {i.item: i for i in review_status(store).items}
        pos = store.positions()
    # ben left seg[0] blank: no position, so it waits for him; it is not disputed
    assert st[f"segment:{seg[0]}"].state == "open"
    assert set(st[f"segment:{seg[0]}"].positions) == {"ana"}
    # "keep" written in the workbook is a position, and differs from ana's move
    assert pos[f"segment:{seg[1]}"]["ben"].decision == "keep"
    assert st[f"segment:{seg[1]}"].state == "disputed"


# --- 2. rounds --------------------------------------------------------------------------

def _close_round_one(run_folder: Path) -> tuple:
    """Round 1 with every item settled: theme 1 renamed, theme 2 merged into 1."""
    run = load_run(run_folder)
    with ReviewStore(run) as store:
        store.resolve([Decision(i, "accept") for i in run.items()], by="ana")
        store.resolve([Decision("theme:1", "rename", new_name="Supervision as support"),
                       Decision("theme:2", "merge", target="1")], by="ben")
    return run


def test_next_round_starts_from_the_consensus_and_marks_changes(panel, capsys):
    run = _close_round_one(panel)
    # workbooks of a closed round are not written again from the proposal, even with --force
    assert main(["review", "export", str(panel), "--judges", "ana,ben", "--force"]) == 2
    err = capsys.readouterr().err
    assert "every item of round 1 has its consensus" in err and "next-round" in err
    assert not (panel / "review" / "round-1" / "ana.xlsx").exists()

    assert main(["review", "next-round", str(panel), "--by", "ana"]) == 0
    assert "round 2 is open" in capsys.readouterr().out
    with ReviewStore(run) as store:
        assert store.round == 2
        assert [r["round"] for r in store.rounds()] == [1, 2]
        assert store.rounds()[0]["closed_by"] == "ana"
        st = review_status(store)
        # nothing decided yet in round 2, and yet every item has its consensus: carried
        assert st.closed and {i.state for i in st.items} == {"carried"}
        assert st.effective_consensus()["theme:1"].new_name == "Supervision as support"
        actions = [r["action"] for r in store.audit_log()]
        assert "round closed" in actions and "round opened" in actions
        # round 1 stays as it was
        assert review_status(store, 1).effective_consensus()["theme:2"].target == "1"

    assert main(["review", "status", str(panel)]) == 0
    out = capsys.readouterr().out
    assert "round 2 (round 1 closed" in out
    assert re.search(r'theme 1 "Supervision as support" \(proposed: "[^"]*"\): carried '
                     r'from round 1, rename to "Supervision', out)

    # the round-2 workbook starts from round 1's consensus and marks what it changed
    assert main(["review", "export", str(panel), "--judges", "ana,ben"]) == 0
    wb = openpyxl.load_workbook(panel / "review" / "round-2" / "ana.xlsx")
    ws = wb["themes"]
    head = [c.value for c in ws[1]]
    rows = {r[0]: dict(zip(head, r)) for r in ws.iter_rows(min_row=2, values_only=True)}
    assert rows[1]["decision"] == "rename" and rows[1]["new name"] == "Supervision as support"
    assert rows[2]["decision"] == "merge" and str(rows[2]["merge into"]) == "1"
    assert "rename" in rows[1]["changed"] and not rows[0]["changed"]
    assert rows[0]["decision"] == "accept"
    # the round-2 packet shows round 1's consensus beside each proposal, as the
    # workbooks start from it; round 1's packet showed the proposal alone
    packet = (panel / "review" / "round-2" / "packet.html").read_text()
    theme_1 = packet.split("<h3>Theme 1: ")[1].split("<h3>")[0]
    assert "<b>Consensus of round 1:</b> rename to &#34;Supervision as support&#34;" in theme_1
    theme_2 = packet.split("<h3>Theme 2: ")[1].split("<h3>")[0]
    assert re.search(r"Consensus of round 1:</b> merge into theme 1 &#34;", theme_2)
    assert "consensus of round 1, which this round" in packet
    from pipeline.review.html import render_packet
    assert "onsensus of round" not in render_packet(load_run(panel), 1, ["ana", "ben"], [])

    # a judge changes one item in round 2: only that item opens again
    fill(panel / "review" / "round-2" / "ana.xlsx", "themes", 0, decision="rename",
         new_name="Learning on the job")
    capsys.readouterr()
    assert main(["review", "import", str(panel), str(panel / "review" / "round-2" /
                                                     "ana.xlsx")]) == 0
    with ReviewStore(run) as store:
        st = {i.item: i for i in review_status(store).items}
    assert st["theme:0"].state == "open" and st["theme:1"].state == "carried"
    assert st["theme:1"].baseline.new_name == "Supervision as support"
    assert main(["review", "resolve", str(panel), "--theme", "0", "--decision", "rename",
                 "--name", "Learning on the job", "--by", "ben"]) == 0
    with ReviewStore(run) as store:
        st = {i.item: i for i in review_status(store).items}
    assert st["theme:0"].changed and not st["theme:1"].changed
    assert main(["review", "apply", str(panel)]) == 0
    import yaml
    cb = yaml.safe_load((panel / "review" / "codebook.yaml").read_text())
    names = {c["name"] for d in cb["domains"] for c in d["categories"]}
    assert {"Supervision as support", "Learning on the job"} <= names
    assert cb["review"]["round"] == 2


def test_round_two_agreement_counts_only_what_the_judges_decided_anew(panel, capsys):
    """Round-2 workbooks start from round 1's consensus: a judge who changes one row
    hands back every other row as it was. Those rows carry the consensus; counted as
    positions, they made the round's agreement 100% and Fleiss' kappa 1.00."""
    _close_round_one(panel)
    assert main(["review", "next-round", str(panel), "--by", "ana"]) == 0
    assert main(["review", "export", str(panel), "--judges", "ana,ben"]) == 0
    books = [panel / "review" / "round-2" / f"{j}.xlsx" for j in ("ana", "ben")]
    fill(books[0], "themes", 0, decision="rename", new_name="Learning on the job")
    fill(books[1], "themes", 0, decision="reject")
    assert main(["review", "import", str(panel), *map(str, books)]) == 0
    with ReviewStore(load_run(panel)) as store:
        st = review_status(store)
    themes = next(a for a in st.agreement if a.kind == "theme")
    both = sum(1 for i in st.items if i.kind == "theme" and len(i.positions) == 2)
    carried = both - 1                  # every row but theme 0 handed back as it was
    assert themes.n_items == 1 and themes.percent == 0.0
    assert themes.repeated == carried > 0
    capsys.readouterr()
    assert main(["review", "status", str(panel)]) == 0
    out = capsys.readouterr().out
    assert "themes: 1 items x 2 judges; identical decisions 0%" in out
    assert f"({carried} item(s) left out: every judge's position repeats" in out


def test_an_item_disputed_in_round_two_stands_as_round_one_left_it(panel, capsys):
    """Round 1 renamed theme 1 and merged theme 2 into it; in round 2 two judges
    disputed theme 1's name, and the draft codebook showed theme 1 as Consensa had
    proposed it: round 2 starts from round 1's consensus, until the judges settle it."""
    run = _close_round_one(panel)
    assert main(["review", "next-round", str(panel), "--by", "ana"]) == 0
    assert main(["review", "export", str(panel), "--judges", "ana,ben"]) == 0
    for judge, name in (("ana", "Support from supervisors"), ("ben", "Supervisors' support")):
        path = panel / "review" / "round-2" / f"{judge}.xlsx"
        fill(path, "themes", 1, decision="rename", new_name=name)
        assert main(["review", "import", str(panel), str(path)]) == 0
    capsys.readouterr()
    with ReviewStore(run) as store:
        st = review_status(store)
    item = {i.item: i for i in st.items}["theme:1"]
    assert item.state == "disputed" and item.consensus is None
    assert st.effective_consensus()["theme:1"].new_name == "Supervision as support"
    assert main(["review", "status", str(panel)]) == 0
    out = capsys.readouterr().out
    codebook = out[out.index("Codebook as it stands"):]
    assert "Supervision as support" in codebook


def test_every_rounds_reasons_reach_the_codebook_and_the_qdpx_each_as_whose(panel, capsys):
    """A reason the panel recorded in round 1 was lost once the judges agreed on the
    same decision in round 2 (their prefilled workbooks imported unchanged): the
    codebook took its comments from the last round's consensus only. And a judge's
    own comment on their position ("@ben is this too broad?") was exported as the
    "Consensus comment" of an item every judge agreed on."""
    import yaml

    from pipeline.exchange.agreed import export_content

    run = load_run(panel)
    with ReviewStore(run) as store:
        store.record_positions([("ana", [Decision("theme:0", "reject",
                                                  comment="@ben is this too broad?")]),
                                ("ben", [Decision("theme:0", "reject")])])
        store.resolve([Decision(i, "accept") for i in run.items() if i != "theme:0"], by="ana")
        store.resolve([Decision("theme:1", "rename", new_name="Supervision as support",
                                comment="WHY: the name ben gave")], by="team")
        store.next_round("team", closed=True)
    assert main(["review", "export", str(panel), "--judges", "ana,ben"]) == 0
    rdir = panel / "review" / "round-2"
    assert main(["review", "import", str(panel), str(rdir / "ana.xlsx"),
                 str(rdir / "ben.xlsx")]) == 0
    with ReviewStore(run) as store:
        st = {i.item: i for i in review_status(store).items}
    assert st["theme:1"].state == "agreed" and not st["theme:0"].consensus.comment
    assert main(["review", "apply", str(panel)]) == 0
    capsys.readouterr()
    cb = yaml.safe_load((panel / "review" / "codebook.yaml").read_text())
    comments = {c["comment"]: c for c in cb["review"]["comments"]}
    assert comments["WHY: the name ben gave"]["round"] == 1
    assert comments["WHY: the name ben gave"]["written_with"] == "consensus"
    assert comments["WHY: the name ben gave"]["by"] == "team"
    mine = comments["@ben is this too broad?"]
    assert (mine["written_with"], mine["by"], mine["round"]) == ("position", "ana", 1)
    # the rejection's reason is ana's, and says so
    assert cb["rejected_themes"][0]["comment"] == "ana: @ben is this too broad?"
    md = (panel / "review" / "codebook.md").read_text(encoding="utf-8")
    assert re.search(r'- round 1, theme 1 [^\n]*consensus, recorded by team: '
                     r'"WHY: the name ben gave"', md)
    assert re.search(r"- round 1, theme 0 [^\n]*ana, with their position \(reject\): "
                     r'"@ben is this too broad\?"', md)
    # the exports, from the store and from the codebook.yaml, say the same
    for source in (panel, panel / "review" / "codebook.yaml"):
        notes = {n.text.split("\n")[0]: n for n in export_content(source).notes}
        why = notes["WHY: the name ben gave"]
        assert why.title.startswith("Consensus comment (round 1): theme 1")
        assert why.author == "Consensus" and why.about == ("category", 1)
        question = notes["@ben is this too broad?"]
        assert question.author == "ana" and "Consensus" not in question.title
        assert question.title.startswith("Comment of ana on their position (round 1)")
    assert main(["export", "qdpx", str(panel)]) == 0
    qde = next((panel / "export").glob("*-agreed.qdpx"))
    import zipfile
    with zipfile.ZipFile(qde) as zf:
        assert "WHY: the name ben gave" in zf.read("project.qde").decode("utf-8")


def test_next_round_refuses_an_open_round(panel, capsys):
    assert main(["review", "next-round", str(panel)]) == 2
    assert "round 1 is still open" in capsys.readouterr().err
    with ReviewStore(load_run(panel)) as store:
        assert store.round == 1


def test_web_shows_the_open_round_and_the_starting_point(panel):
    run = _close_round_one(panel)
    with ReviewStore(run) as store:
        store.next_round("ana", closed=True)
    web = Web(panel, "ana")
    page = web.get("/")
    assert "round 2" in page
    theme1 = web.get("/theme/1")
    assert "Starting point" in theme1 and "Supervision as support" in theme1


def test_a_settled_round_is_called_open_until_the_next_one_starts(panel, capsys):
    """Every item of round 1 had its consensus: `review status` (and `resolve`) said
    "Round 1 is closed" while the web app's header said "round 1 open". The round is
    closed by `next-round` only: until then both say it is open, and settled."""
    run = load_run(panel)
    with ReviewStore(run) as store:
        store.resolve([Decision(i, "accept") for i in run.items() if i != "theme:0"], by="ana")
    assert main(["review", "resolve", str(panel), "--theme", "0", "--decision", "accept",
                 "--by", "ana"]) == 0
    out = capsys.readouterr().out
    assert "every item of round 1 has its consensus (the round stays open" in out
    assert "round closed" not in out
    assert main(["review", "status", str(panel)]) == 0
    out = capsys.readouterr().out
    assert ("Every item of round 1 has a consensus decision; the round stays open until "
            "round 2 starts") in out
    assert "is closed" not in out
    page = Web(panel, "ana").get("/")
    assert '<span id="round">round 1 open</span>' in page
    assert "Every item of round 1 is agreed, resolved or carried over; the round stays open " \
           "until round 2 starts" in page
    assert "is closed" not in page


# --- 3. the auditor's round ---------------------------------------------------------------

def test_auditor_workbook_shows_the_consensus_and_takes_comments(panel, capsys):
    _close_round_one(panel)
    assert main(["review", "export", str(panel), "--auditor", "dee"]) == 0
    path = panel / "review" / "round-1" / "dee.xlsx"
    ws = openpyxl.load_workbook(path)["themes"]
    head = [c.value for c in ws[1]]
    rows = {r[0]: dict(zip(head, r)) for r in ws.iter_rows(min_row=2, values_only=True)}
    assert rows[1]["consensus so far"] == 'rename to "Supervision as support"'
    assert rows[1]["changed"] == 'rename to "Supervision as support"'
    # theme 1 by the name agreed for it, not the one its rename replaced
    assert rows[2]["consensus so far"].startswith(
        'merge into theme 1 "Supervision as support" (proposed: "')
    assert not rows[1]["decision"]  # the auditor's decision columns stay blank
    fill(path, "themes", 2, comment="Is client support really supervision?")
    capsys.readouterr()
    assert main(["review", "import", str(panel), str(path)]) == 0
    with ReviewStore(load_run(panel)) as store:
        comments = store.audit_comment_rows()["theme:2"]
    assert comments[0]["by"] == "dee" and comments[0]["answers"] == {}


def _audited(panel) -> tuple:
    """Round 1 closed, and dee's comment on theme 2: (the run, the comment's id)."""
    run = _close_round_one(panel)
    assert main(["review", "audit", str(panel), "--theme", "2", "--by", "dee",
                 "--comment", "Is client support really supervision?"]) == 0
    with ReviewStore(run) as store:
        return run, store.audit_comment_rows()["theme:2"][0]["id"]


def test_judges_answer_audit_comments_with_undo(panel, capsys):
    run, cid = _audited(panel)
    capsys.readouterr()
    assert main(["review", "answer", str(panel), "--comment", str(cid), "--by", "ana",
                 "--accept"]) == 0
    assert main(["review", "answer", str(panel), "--comment", str(cid), "--by", "ben",
                 "--argue", "they say so themselves"]) == 0
    assert main(["review", "answer", str(panel), "--comment", str(cid), "--by", "dee",
                 "--accept"]) == 2  # an auditor does not answer themselves
    assert "not a judge" in capsys.readouterr().err
    assert main(["review", "status", str(panel)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"ana\s+accept", out) and re.search(r"ben\s+argue: they say so", out)
    with ReviewStore(run) as store:
        answers = store.audit_comment_rows()["theme:2"][0]["answers"]
        assert answers["ana"]["answer"] == "accept" and answers["ben"]["answer"] == "argue"
        with pytest.raises(ReviewError, match="say why"):
            store.answer_audit(cid, "ana", "argue", "")
        store.undo_answer(cid, "ben")
        assert set(store.audit_comment_rows()["theme:2"][0]["answers"]) == {"ana"}
        actions = [r["action"] for r in store.audit_log()]
        assert actions.count("audit answer") == 2 and "audit answer undo" in actions


def test_a_round_with_an_unanswered_audit_comment_does_not_close_unseen(panel, capsys):
    run, cid = _audited(panel)
    assert main(["review", "answer", str(panel), "--comment", str(cid), "--by", "ana",
                 "--accept"]) == 0
    capsys.readouterr()
    # the codebook is written, and says so; the command warns
    assert main(["review", "apply", str(panel)]) == 0
    captured = capsys.readouterr()
    assert f"comment {cid} on" in captured.err and "not answered by ben" in captured.err
    md = (panel / "review" / "codebook.md").read_text(encoding="utf-8")
    assert "not answered by every judge" in md and "not answered by ben" in md
    # the round is not closed over it, on the command line or in the web app
    assert main(["review", "next-round", str(panel), "--by", "ana"]) == 2
    err = capsys.readouterr().err
    assert f"comment {cid} on" in err and "not answered by ben" in err and "--force" in err
    web = Web(panel, "ana")
    r = web.post("/next-round", _page=web.get("/"), round="1")
    assert r.status_code == 400 and "not answered by ben" in r.text
    assert "someone else changed" not in r.text
    with ReviewStore(run) as store:
        assert store.round == 1
    # once ben answers it closes; --force closes over an unanswered one and says so
    assert main(["review", "answer", str(panel), "--comment", str(cid), "--by", "ben",
                 "--argue", "they say so themselves"]) == 0
    assert main(["review", "apply", str(panel)]) == 0
    assert "not answered" not in (panel / "review" / "codebook.md").read_text(encoding="utf-8")
    with ReviewStore(run) as store:
        store.undo_answer(cid, "ben")
    capsys.readouterr()
    assert main(["review", "next-round", str(panel), "--by", "ana", "--force"]) == 0
    assert "left unanswered" in capsys.readouterr().out
    with ReviewStore(run) as store:
        assert store.round == 2


def test_a_renamed_item_goes_by_the_name_the_judges_agreed(panel, capsys):
    """After a rename by consensus the audit, the answers, the status, the codebook's
    list of unanswered comments and the web pages (title and heading alike) name the
    theme by its agreed name, the proposed one beside it."""
    run = load_run(panel)
    old, new = run.theme_name(1), "Came close to crying"
    assert main(["review", "resolve", str(panel), "--theme", "1", "--decision", "rename",
                 "--name", new, "--by", "team"]) == 0
    assert f'theme 1 "{old}": rename to "{new}"' in capsys.readouterr().out
    now = f'theme 1 "{new}" (proposed: "{old}")'
    assert main(["review", "audit", str(panel), "--theme", "1", "--by", "dee",
                 "--comment", "check the quotes"]) == 0
    assert f"auditor comment on {now} recorded" in capsys.readouterr().out
    with ReviewStore(run) as store:
        cid = store.audit_comment_rows()["theme:1"][0]["id"]
    assert main(["review", "answer", str(panel), "--comment", str(cid), "--by", "ana",
                 "--accept"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"on {now}")
    assert main(["review", "status", str(panel)]) == 0
    out = capsys.readouterr().out
    # the line that gives the rename names the theme by its agreed name, the proposed
    # one beside it, as the comment does
    assert f'  theme 1 "{new}" (proposed: "{old}"): resolved by team, rename to "{new}"' \
        in out
    assert main(["review", "apply", str(panel), "--preview"]) == 0
    assert f"comment {cid} on {now} (dee): not answered by ben" in capsys.readouterr().err
    page = Web(panel, "ana").get("/theme/1")
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    assert new.replace("'", "&#39;") in title and old not in title
    # a renamed domain too
    assert main(["review", "resolve", str(panel), "--domain", "0", "--decision", "rename",
                 "--name", "Tears in the room", "--by", "team"]) == 0
    page = Web(panel, "ana").get("/domain/0")
    assert "Tears in the room" in re.search(r"<title>(.*?)</title>", page, re.S).group(1)


def test_overview_and_status_list_a_renamed_category_by_its_agreed_name(panel, capsys):
    """The overview's category rows and `review status` showed the proposed name after
    the team agreed a rename, and in round 2 still while the judges disputed the item
    again: the agreed name stands, with the proposed one beside it."""
    run = load_run(panel)
    old, new = run.theme_name(1), "Came close to crying"
    row = f'1: {html.escape(new)}</a> <span class="muted proposed">(proposed: ' \
          f'“{html.escape(old)}”)</span>'
    line = f'  theme 1 "{new}" (proposed: "{old}"): '

    def overview_row() -> str:
        page = Web(panel, "ana").get("/")
        return re.search(r'<tr data-item="theme:1".*?</tr>', page, re.S).group(0)

    with ReviewStore(run) as store:
        store.resolve([Decision(i, "accept") for i in run.items() if i != "theme:1"], by="ana")
        store.resolve([Decision("theme:1", "rename", new_name=new)], by="ben")
    assert row in overview_row()
    assert main(["review", "status", str(panel)]) == 0
    assert line + f'resolved by ben, rename to "{new}"' in capsys.readouterr().out
    with ReviewStore(run) as store:
        store.next_round("ana", closed=True)
        store.record_positions([("ana", [Decision("theme:1", "reject")])])
    assert row in overview_row()
    assert main(["review", "status", str(panel)]) == 0
    assert line + "OPEN" in capsys.readouterr().out


def test_judges_answer_in_the_web_app(panel):
    run = _close_round_one(panel)
    with ReviewStore(run) as store:
        store.add_audit_comment("theme:2", "dee", "Is client support really supervision?")
        cid = store.audit_comment_rows()["theme:2"][0]["id"]
    dee = Web(panel, "dee")
    page = dee.get("/theme/2")
    # the auditor sees the consensus and its change against the proposal
    assert "Change against the proposal" in page and "merge into theme 1" in page
    ana = Web(panel, "ana")
    page = ana.get("/theme/2")
    assert f'name="comment_id" value="{cid}"' in page
    assert _selected(_select(page, "answer")) == [""]
    r = ana.post("/answer", _page=page, comment_id=str(cid), answer="", text="")
    assert r.status_code == 400 and "Choose an answer" in r.text
    r = ana.post("/answer", _page=page, comment_id=str(cid), answer="argue",
                 text="they say so themselves", back="/theme/2")
    assert r.status_code == 303
    with ReviewStore(run) as store:
        a = store.audit_comment_rows()["theme:2"][0]["answers"]["ana"]
    assert a["answer"] == "argue" and a["text"] == "they say so themselves"
    assert "argue" in ana.get("/theme/2")


def test_typed_text_that_no_file_can_hold_is_stored_without_it(panel, capsys):
    """A name with U+FFFE was saved from the web form, and then every workbook and
    REFI-QDA file written after it was broken; an escape sequence reached the terminal
    through `review status`."""
    web = Web(panel, "ana")
    page = web.get("/theme/0")
    r = web.post("/decide", _page=page, item="theme:0", v_item="0", v_mine="0",
                 decision="rename", new_name="Felt \ufffe ashamed\x1b[2J\x00",
                 core_idea="line one\nline two\x07", **{"as": "consensus"})
    assert r.status_code == 303
    with ReviewStore(load_run(panel)) as store:
        d = store.consensus()["theme:0"]
    assert (d.new_name, d.core_idea) == ("Felt ashamed[2J", "line one\nline two")
    assert main(["review", "export", str(panel), "--judges", "ana,ben", "--force"]) == 0
    assert main(["export", "qdc", str(panel), "--draft", "--out",
                 str(panel / "x.qdc")]) == 0
    __import__("xml.etree.ElementTree").etree.ElementTree.parse(panel / "x.qdc")
    # an audit comment id beyond any integer the store holds is no comment, not an error
    with ReviewStore(load_run(panel)) as store:
        store.add_audit_comment("theme:1", "dee", "Which\x1b[31m cases?")
        assert store.audit_comments()["theme:1"] == [("dee", "Which[31m cases?")]
    r = web.post("/answer", _page=web.get("/theme/1"), comment_id="9" * 23, answer="accept")
    assert r.status_code == 400 and "no audit comment" in r.text
    # the address with the token never sends the judge to another site
    fresh = create_app(panel)
    client = TestClient(fresh.asgi, base_url=BASE, follow_redirects=False)
    for path in ("//evil.example/", "/%2F%2Fevil.example"):
        r = client.get(f"{path}?token={fresh.token}")
        assert r.status_code == 303 and r.headers["location"] == "/", path


def test_a_category_named_like_another_of_its_domain_is_flagged_where_it_is_typed(panel):
    items = load_run(panel)
    dom = items.themes["domain_id"].value_counts().idxmax()
    a, b = (int(t) for t in items.themes[items.themes["domain_id"] == dom]["theme_id"][:2])
    web = Web(panel, "ana")
    for tid, name, alike in ((a, "Crying", False), (b, " crying ", True)):
        r = web.post("/decide", _page=web.get(f"/theme/{tid}"), item=f"theme:{tid}",
                     v_item="0", v_mine="0", decision="rename", new_name=name,
                     **{"as": "consensus"})
        assert r.status_code == 303
        warned = re.findall(r'<p class="flash warn"[^>]*>([^<]*)</p>', web.get("/"))
        assert bool(warned) == alike, warned
    # escaped as any text is (the names are the judges')
    assert f"categories {a} &#34;Crying&#34; and {b} &#34;crying&#34;, named alike" in warned[0]


def test_a_consensus_rename_builds_the_codebook_only_for_a_name_that_may_clash(panel,
                                                                              monkeypatch):
    """Saving a consensus rename built the whole codebook to look for a category named
    alike: most of the save's time on the demo run. It is built only when a proposed
    name, a split's or a name the consensus gave is alike the new one."""
    from pipeline.review.apply import may_be_named_alike
    from pipeline.web import routes

    items = load_run(panel)
    dom = items.themes["domain_id"].value_counts().idxmax()
    a, b = (int(t) for t in items.themes[items.themes["domain_id"] == dom]["theme_id"][:2])
    built = []
    live = routes.live_codebook
    monkeypatch.setattr(routes, "live_codebook", lambda *args: built.append(1) or live(*args))
    web = Web(panel, "ana")
    for tid, name, n_built in ((a, "Held back", 0), (b, " held  BACK", 1)):
        r = web.post("/decide", _page=web.get(f"/theme/{tid}"), item=f"theme:{tid}",
                     v_item="0", v_mine="0", decision="rename", new_name=name,
                     **{"as": "consensus"})
        assert r.status_code == 303 and len(built) == n_built, name
    assert "named alike" in web.flashes()
    other = items.theme_name(b)
    cons = {f"theme:{a}": Decision(f"theme:{a}", "rename", new_name="Held back")}
    assert may_be_named_alike(items, cons, f"theme:{b}", "held back")
    assert not may_be_named_alike(items, cons, f"theme:{a}", "held back")   # its own name
    assert may_be_named_alike(items, {}, f"theme:{a}", other.upper())
    assert not may_be_named_alike(items, {}, f"theme:{b}", other)          # its own, proposed
    assert may_be_named_alike(items, {}, f"theme:{b}", f"{other} (split)")


def test_round_two_pages_show_round_one_comments_and_answers(panel, capsys):
    run, cid = _audited(panel)
    for judge, answer in (("ana", ["--accept"]), ("ben", ["--argue", "they <b>say</b> so"])):
        assert main(["review", "answer", str(panel), "--comment", str(cid), "--by", judge,
                     *answer]) == 0
    assert main(["review", "next-round", str(panel), "--by", "ana"]) == 0
    page = Web(panel, "ana").get("/theme/2")
    earlier = re.search(r'<details class="earlier-comments" data-round="1".*?</details>',
                        page, re.S).group(0)
    assert "Round 1 (1 comment)" in earlier and "Is client support really supervision?" in earlier
    assert re.search(r'data-judge="ana">ana: <b>accept</b>', earlier)
    assert "they &lt;b&gt;say&lt;/b&gt; so" in earlier  # an answer is text, never markup
    # round 2's own comments are still where they were, and the other pages have none
    assert "<h3>Round 2</h3>" in page and "No comment yet." in page
    assert "earlier-comments" not in Web(panel, "ana").get("/theme/1")


# --- 4. the live codebook ----------------------------------------------------------------

def test_live_codebook_in_pages_status_and_preview(panel, capsys):
    run = load_run(panel)
    d0 = int(run.themes.loc[run.themes["theme_id"] == 1, "domain_id"].iloc[0])
    other = next(int(d) for d in run.domains["domain_id"] if int(d) != d0)
    with ReviewStore(run) as store:
        store.resolve([Decision("theme:1", "rename", new_name="Supervision as support",
                                domain=str(other)),
                       Decision("theme:2", "merge", target="1"),
                       Decision(f"domain:{other}", "rename", new_name="Support",
                                core_idea="Who helped, and how.")], by="ana")
    web = Web(panel, "ana")
    page = web.get("/theme/1")
    # the header shows the consensus name while the round is open
    assert re.search(r'<span class="live-name">Supervision as support</span>', page)
    assert f"Now in domain {other}: Support" in page and "a draft" in page
    assert "Merged into" in web.get("/theme/2")
    dom = web.get(f"/domain/{other}")
    assert '<span class="live-name">Support</span>' in dom and "Who helped, and how." in dom
    cats = dom.split("Categories as they stand")[1].split("Themes proposed")[0]
    assert "Supervision as support" in cats  # reassigned here before any apply

    assert main(["review", "status", str(panel)]) == 0
    out = capsys.readouterr().out
    tail = out.split("Codebook as it stands")[1]
    assert "(a draft" in tail and "Support  [" in tail and "- Supervision as support" in tail

    assert main(["review", "apply", str(panel)]) == 2  # the final one waits
    assert main(["review", "apply", str(panel), "--preview"]) == 0
    capsys.readouterr()
    import yaml
    draft = panel / "review" / "draft"
    cb = yaml.safe_load((draft / "codebook.yaml").read_text())
    assert cb["draft"] is True and cb["open_items"]
    assert (draft / "codebook.md").read_text().startswith("# Draft codebook")
    assert "**DRAFT**" in (draft / "cqr_table.md").read_text()
    dom = next(d for d in cb["domains"] if d["id"] == other)
    assert dom["name"] == "Support" and dom["definition"] == "Who helped, and how."
    assert not (panel / "review" / "codebook.yaml").exists()
    # a draft is not what the judges agreed: pre-coding with it is refused
    new = panel.parent / "new"
    new.mkdir()
    (new / "T01.txt").write_text("Interviewer: Hi?\nP1: Hello there, I cried once.\n")
    assert main(["precode", str(draft / "codebook.yaml"), "--transcripts", str(new),
                 "--out", str(panel.parent / "pre")]) == 2
    err = capsys.readouterr().err
    assert "is a draft codebook" in err and "review apply" in err
    assert not (panel.parent / "pre").exists()


def test_a_preview_with_nothing_open_is_still_a_draft_that_precode_refuses(panel, capsys):
    """With every item settled, `apply --preview` wrote a codebook labelled as agreed,
    without the draft mark, into review/draft/: written before the audit and any later
    round, pre-coding took it for the agreed codebook."""
    run = load_run(panel)
    with ReviewStore(run) as store:
        store.resolve([Decision(i, "accept") for i in run.items()], by="ana")
    assert main(["review", "apply", str(panel), "--preview"]) == 0
    import yaml
    draft = panel / "review" / "draft"
    cb = yaml.safe_load((draft / "codebook.yaml").read_text())
    assert cb["draft"] is True and cb["open_items"] == []
    assert "**DRAFT**: a preview" in (draft / "codebook.md").read_text()
    assert (draft / "cqr_table.md").read_text().startswith("**DRAFT**: a preview")
    new = panel.parent / "new"
    new.mkdir()
    (new / "T01.txt").write_text("Interviewer: Hi?\nP1: Hello there, I cried once.\n")
    capsys.readouterr()
    assert main(["precode", str(draft / "codebook.yaml"), "--transcripts", str(new),
                 "--out", str(panel.parent / "pre")]) == 2
    assert "is a draft codebook: a preview" in capsys.readouterr().err
    # the codebook apply writes is no draft
    assert main(["review", "apply", str(panel)]) == 0
    assert "draft" not in yaml.safe_load((panel / "review" / "codebook.yaml").read_text())


# --- 5. search -------------------------------------------------------------------------

def test_query_phrases_or_wildcards_and_case():
    import pandas as pd

    from pipeline.web.query import Query
    hay = pd.Series(["I was ASHAMED of it", "crying in session", "my Supervisor helped",
                     "supervision was kind", "the supervisor, my own", "cry baby",
                     "I cried (quietly)"])
    def found(q):
        return [i for i, hit in enumerate(Query.parse(q).mask(hay)) if hit]
    assert found("ashamed OR crying") == [0, 1]
    assert found('"my supervisor"') == [2]          # the phrase, not both words apart
    assert found("my supervisor") == [2, 4]          # both words, anywhere
    assert found("supervis*") == [2, 3, 4]
    assert found("cry") == [5] and found("cry*") == [1, 5]
    assert found("quietly") == [6]                   # next to punctuation
    assert found("SUPERVISION OR ashamed session") == [3]  # AND binds tighter than OR
    assert not Query.parse("  OR  ") and found("") == list(range(len(hay)))
    from pipeline.web.pages import highlight
    assert [p for p, hit in highlight("My supervisor, my supervision.",
                                      Query.parse("supervis*")) if hit] == \
        ["supervisor", "supervision"]


def test_search_page_understands_the_query(panel):
    run = load_run(panel)
    with ReviewStore(run) as store:
        from pipeline.web import pages
        from pipeline.web.context import Context
        ctx = Context(run)
        words = pages.search(run, store, ctx, "train*", who="ana")
        texts = run.segments["text"].str.lower()
        want = int(texts.str.contains(r"(?<!\w)train\w*", regex=True).sum())
        assert words["total"] == want > 0
        either = pages.search(run, store, ctx, "training OR tears", who="ana")
        one = pages.search(run, store, ctx, "training", who="ana")["total"]
        other = pages.search(run, store, ctx, "tears", who="ana")["total"]
        both = pages.search(run, store, ctx, "training tears", who="ana")["total"]
        assert either["total"] == one + other - both and one and other


def test_find_similar_to_a_category_and_to_a_sentence(panel):
    import numpy as np

    from pipeline.runfolder import RunFolder
    from pipeline.web import pages
    from pipeline.web.context import Context
    from pipeline.web.similar import Similar
    run = load_run(panel)
    vecs = RunFolder(panel).vectors(len(run.segments))
    assert vecs is not None
    sim = Similar(run)
    with ReviewStore(run) as store:
        page = pages.search(run, store, Context(run), "", like="1", similar=sim, who="ana")
        assert page["like_what"].startswith("the centre of theme 1") and not page["problem"]
        scores = [r["similarity"] for r in page["results"]]
        assert scores == sorted(scores, reverse=True) and page["total"] == len(run.segments)
        # the nearest segments to a theme's centre are mostly its own
        top = [r["theme"] for r in page["results"][:10]]
        assert top.count(1) >= 7
        # the centre is the mean of the theme's saved vectors, not something else
        unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        centre = unit[(run.segments["theme"] == 1).to_numpy()].mean(axis=0)
        best = int(np.argmax(unit @ (centre / np.linalg.norm(centre))))
        assert page["results"][0]["id"] == run.segments["segment_id"].iloc[best]

        # a sentence, embedded with the run's own embedder: a segment's own text is nearest
        target = run.segments.iloc[5]
        page = pages.search(run, store, Context(run), "", like_text=target["text"],
                            similar=sim, who="ana")
        assert page["results"][0]["id"] == target["segment_id"]
        assert page["results"][0]["similarity"] > 0.99
        # within a place and a word filter, still ranked
        page = pages.search(run, store, Context(run), "", where="outside", into="1", like="1",
                            similar=sim, who="ana")
        assert all(r["theme"] != 1 for r in page["results"])

    (panel / "vectors.npy").unlink()
    with ReviewStore(run) as store:
        page = pages.search(run, store, Context(run), "", like="1", similar=Similar(run))
    assert "no saved segment vectors" in page["problem"] and page["results"] == []


def test_subcategory_is_a_decision_with_undo_in_the_codebook(panel, capsys):
    run = load_run(panel)
    with ReviewStore(run) as store:
        store.resolve([Decision(i, "accept") for i in run.items()], by="ana")
        store.resolve([Decision("theme:2", "subcategory", target="1",
                                new_name="Support from clients")], by="ben")
        # one level only: a subcategory of a subcategory is refused, nothing recorded
        with pytest.raises(ReviewError, match="one level deep"):
            store.resolve([Decision("theme:0", "subcategory", target="2")], by="ben")
        assert store.consensus()["theme:0"].decision == "accept"
    assert main(["review", "resolve", str(panel), "--theme", "0", "--decision",
                 "subcategory", "--by", "ana"]) == 2
    assert "--target" in capsys.readouterr().err
    assert main(["review", "apply", str(panel)]) == 0
    import yaml
    cb = yaml.safe_load((panel / "review" / "codebook.yaml").read_text())
    cats = [c for d in cb["domains"] for c in d["categories"]]
    sub = next(c for c in cats if c["id"] == 2)
    parent_domain = next(d["id"] for d in cb["domains"] for c in d["categories"] if c["id"] == 1)
    assert sub["parent"] == 1 and sub["name"] == "Support from clients"
    # a category counts its subcategory's cases and segments, as CQR nests them: a
    # subcategory never has more cases than its category
    top = next(c for c in cats if c["id"] == 1)
    assert set(sub["cases"]) <= set(top["cases"])
    before = load_run(panel).themes.set_index("theme_id")["n_segments"]
    assert top["n_segments"] == before[1] + before[2]
    assert next(d["id"] for d in cb["domains"] for c in d["categories"] if c["id"] == 2) \
        == parent_domain
    ids = [c["id"] for d in cb["domains"] if d["id"] == parent_domain for c in d["categories"]]
    assert ids.index(2) == ids.index(1) + 1  # listed right after its parent
    assert "#### Support from clients (subcategory of" in \
        (panel / "review" / "codebook.md").read_text()
    # and in the status's codebook, one level in under its category
    capsys.readouterr()
    assert main(["review", "status", str(panel)]) == 0
    listed = capsys.readouterr().out.split("Codebook as it stands", 1)[1].splitlines()
    parent_name = next(c["name"] for c in cats if c["id"] == 1)
    at = next(n for n, line in enumerate(listed) if line.startswith(f"    - {parent_name}  ["))
    assert listed[at + 1].startswith("        - Support from clients  [")
    # in the QDA tools it sits under its category, not beside it
    parent = next(c["name"] for c in cats if c["id"] == 1)
    domain = next(d["name"] for d in cb["domains"] if d["id"] == parent_domain)
    assert main(["export", "qdc", str(panel)]) == 0
    root = ET.parse(next((panel / "export").glob("*-agreed.qdc"))).getroot()
    ns = root.tag.split("}")[0] + "}"
    parent_of = {child.get("name"): code.get("name") for code in root.iter(f"{ns}Code")
                 for child in code.findall(f"{ns}Code")}
    assert parent_of["Support from clients"] == parent and parent_of[parent] == domain
    assert main(["export", "csv", str(panel)]) == 0
    book = pd.read_csv(next((panel / "export").glob("*-agreed-codebook.csv")))
    assert f"{domain} > {parent} > Support from clients" in set(book["tag"])
    with ReviewStore(run) as store:  # undo: a top-level category again
        store.undo_consensus("ana")
        st = review_status(store)
    assert st.effective_consensus()["theme:2"].decision == "accept"


def test_theme_page_shows_a_subcategory_and_next_round_button(panel):
    run = _close_round_one(panel)
    with ReviewStore(run) as store:
        store.resolve([Decision("theme:0", "subcategory", target="1")], by="ana")
    web = Web(panel, "ana")
    assert "Subcategory of" in web.get("/theme/0") and "category 1: Supervision as support" \
        in web.get("/theme/0")
    # and its category's page lists it
    sub_name = re.search(r'<span class="live-name">([^<]*)</span>', web.get("/theme/0")).group(1)
    assert f'<a href="/theme/0">category 0: {sub_name}</a>' in web.get("/theme/1")
    page = web.get("/")
    assert 'id="next-round"' in page
    r = web.post("/next-round", _page=page, round="1")
    assert r.status_code == 303
    assert "round 2 open" in web.get("/")
    # a second press from the old page does not close round 2
    r = web.post("/next-round", _page=page, round="1")
    assert r.status_code == 409
    with ReviewStore(run) as store:
        assert store.round == 2


def test_start_round_n_plus_1_is_offered_once_round_n_has_its_own_decisions(panel):
    """Round 2 begins settled (every item carries round 1's consensus), and the overview
    offered "Start round 3" at once. It is offered when the command line would start
    it and round 2 has a decision of its own; otherwise the page says what is left,
    and a form sent from an older page is refused the same way."""
    run = _close_round_one(panel)
    with ReviewStore(run) as store:
        store.next_round("ana", closed=True)
    web = Web(panel, "ana")
    page = web.get("/")
    assert 'id="next-round"' not in page
    assert "Round 3 can start once this round is done: nothing has been decided in " \
           "round 2 yet" in page
    r = web.post("/next-round", _page=page, round="2")
    assert r.status_code == 400 and "nothing has been decided in round 2" in r.text
    with ReviewStore(run) as store:
        assert store.round == 2
        store.resolve([Decision("theme:1", "rename", new_name="Support from supervisors")],
                      by="ben")
        store.add_audit_comment("theme:1", "dee", "Which cases say so?")
    page = web.get("/")
    assert 'id="next-round"' not in page
    assert "1 auditor&#39;s comment(s) still wait for a judge&#39;s answer" in page
    assert "not answered by ana, ben" in page
    with ReviewStore(run) as store:
        cid = store.audit_comment_rows()["theme:1"][0]["id"]
        for judge in ("ana", "ben"):
            store.answer_audit(cid, judge, "accept", "")
    page = web.get("/")
    assert 'id="next-round"' in page and "can start once" not in page
    with ReviewStore(run) as store:       # a judge opens an item again: round 2 is open
        store.record_positions([("ana", [Decision("theme:0", "reject")])])
    page = web.get("/")
    assert 'id="next-round"' not in page
    assert "1 item(s) still need a consensus decision; round 3 can start once" in page


def test_next_round_on_the_command_line_refuses_a_round_with_nothing_decided(panel, capsys):
    """`review next-round` closed round 2 the moment it began, every item carried from
    round 1, while the web app refuses that: the command line says the page's words,
    and --force closes the round as it is, saying so."""
    from pipeline.web.pages import next_round_refusal

    run = _close_round_one(panel)
    assert main(["review", "next-round", str(panel), "--by", "ana"]) == 0
    capsys.readouterr()
    assert main(["review", "next-round", str(panel), "--by", "ana"]) == 2
    err = capsys.readouterr().err
    with ReviewStore(run) as store:
        assert store.round == 2
        why = next_round_refusal(review_status(store))
    assert why == "nothing has been decided in round 2 yet: every item carries round 1's " \
                  "consensus"
    assert why in err and "--force" in err
    assert main(["review", "next-round", str(panel), "--by", "ana", "--force"]) == 0
    assert "Round 2 was closed with no decision of its own." in capsys.readouterr().out
    with ReviewStore(run) as store:
        assert store.round == 3
        store.resolve([Decision("theme:1", "rename", new_name="Support from supervisors")],
                      by="ben")
    assert main(["review", "next-round", str(panel), "--by", "ana"]) == 0
    assert "no decision of its own" not in capsys.readouterr().out
    with ReviewStore(run) as store:
        assert store.round == 4


def test_next_round_can_be_undone_while_the_new_round_is_empty(panel, capsys):
    run = _close_round_one(panel)
    assert main(["review", "next-round", str(panel)]) == 0
    assert main(["review", "next-round", str(panel), "--undo"]) == 0
    with ReviewStore(run) as store:
        assert store.round == 1 and [r["round"] for r in store.rounds()] == [1]
        assert store.rounds()[0]["closed_at"] == ""
        assert "round reopened" in [r["action"] for r in store.audit_log()]
        store.next_round("ana", closed=True)
        store.resolve([Decision("theme:0", "reject")], by="ana")
    capsys.readouterr()
    assert main(["review", "next-round", str(panel), "--undo"]) == 2
    assert "already holds decisions" in capsys.readouterr().err


def test_judges_create_and_define_a_domain_with_undo(panel, capsys):
    run = load_run(panel)
    proposed = set(run.items())
    web = Web(panel, "ana")
    page = web.get("/")
    assert web.post("/create-domain", _page=page, new_name=" ").status_code == 400
    r = web.post("/create-domain", _page=page, new_name="  Tears  as  data ",
                 core_idea="What crying told the therapist.")
    assert r.status_code == 303
    new = r.headers["location"].rsplit("/", 1)[1]
    assert new == str(int(run.domains["domain_id"].max()) + 1)
    dom = web.get(f"/domain/{new}")
    assert '<span class="live-name">Tears as data</span>' in dom
    assert 'value="create"' in dom and 'value="accept"' not in _select(dom, "decision")
    # the theme page offers it; a theme goes into it, as the consensus
    assert f'<option value="{new}">domain {new}: Tears as data' in web.get("/theme/1")
    r = web.post("/decide", _page=web.get("/theme/1"), item="theme:1", v_item="0",
                 v_mine="0", decision="reassign", domain=new, **{"as": "consensus"})
    assert r.status_code == 303
    # its page gives the figures of the codebook as it stands, not the empty proposal's
    with ReviewStore(load_run(panel)) as store:
        live = {d["id"]: d for d in review_status_codebook(store)["domains"]}
    figures = _between(web.get(f"/domain/{new}"), 'class="live-frequency"', "</dd>")
    assert f"{live[int(new)]['n_cases']}/{run.n_cases} cases, as the codebook stands" in figures
    assert live[int(new)]["n_cases"] > 0 and "proposed:" not in figures
    with ReviewStore(load_run(panel)) as store:
        store.resolve([Decision(i, "accept") for i in proposed
                       if i not in store.consensus()], by="ben")
        assert review_status(store).closed
    assert main(["review", "apply", str(panel)]) == 0
    import yaml
    cb = yaml.safe_load((panel / "review" / "codebook.yaml").read_text())
    made = next(d for d in cb["domains"] if d["id"] == int(new))
    assert made["name"] == "Tears as data" and made["created"]
    assert made["definition"] == "What crying told the therapist."
    assert [c["id"] for c in made["categories"]] == [1]
    assert "created by the judges" in made["changes"]
    # undo, newest first: ben's accepts, the reassign, then the domain itself
    fresh = load_run(panel)
    with ReviewStore(fresh) as store:
        while store.undo_target()["item"] != f"domain:{new}":
            store.undo_consensus("ana")
        assert f"domain:{new}" in store.run.items()
        store.undo_consensus("ana")
        assert new not in store.run.domain_ids and set(store.run.items()) == proposed
        assert [r["action"] for r in store.audit_log()].count("consensus undo") >= 2
    # a new domain needs a name; a proposed domain cannot be "created"
    with ReviewStore(load_run(panel)) as store:
        with pytest.raises(ReviewError, match="needs the new domain's name"):
            store.resolve([Decision("domain:99", "create")], by="ana")
        with pytest.raises(ReviewError, match="one the run proposed"):
            store.resolve([Decision("domain:0", "create", new_name="x")], by="ana")


def test_judges_create_a_category_from_ticked_segments_with_undo(panel):
    run = load_run(panel)
    proposed = set(run.items())
    picked = (run.segments[run.segments["theme"] == 0]["segment_id"].head(2).tolist()
              + run.segments[run.segments["theme"] == 1]["segment_id"].head(1).tolist())
    web = Web(panel, "ana")
    page = web.get("/search?q=the")
    assert 'id="create-category"' in page
    assert _selected(_select(page, "category_domain")) == [""]
    pairs = [("segments", s) for s in picked]
    r = web.post("/create-category", _page=page, _pairs=pairs, category_name="Tears as data",
                 category_domain="")
    assert r.status_code == 400 and "choose its domain" in r.text
    r = web.post("/create-category", _page=page, _pairs=pairs, category_name="Tears as data",
                 category_domain="1", category_definition="What crying told them.")
    assert r.status_code == 303
    new = r.headers["location"].rsplit("/", 1)[1]
    assert new == str(int(run.themes["theme_id"].max()) + 1)
    page = web.get(f"/theme/{new}")
    assert '<span class="live-name">Tears as data</span>' in page
    assert sorted(re.findall(r'data-segment="([^"]+)"', page)) == sorted(picked)
    # a segment can be in one new category only
    with ReviewStore(load_run(panel)) as store:
        with pytest.raises(ReviewError, match="is in new category"):
            store.create_category("Again", picked[:1], "0", "ben")
        store.resolve([Decision(i, "accept") for i in proposed], by="ben")
    assert main(["review", "apply", str(panel)]) == 0
    import pandas as pd
    import yaml
    cb = yaml.safe_load((panel / "review" / "codebook.yaml").read_text())
    cats = {c["id"]: c for d in cb["domains"] for c in d["categories"]}
    made = cats[int(new)]
    assert made["name"] == "Tears as data" and made["n_segments"] == 3
    assert made["core_idea"] == "What crying told them."
    assert next(d["id"] for d in cb["domains"] if int(new) in
                [c["id"] for c in d["categories"]]) == 1
    assert "2 segment(s) moved out" in cats[0]["changes"]
    assigned = pd.read_csv(panel / "review" / "assignments.csv")
    assert set(assigned.loc[assigned["category_id"] == int(new), "segment_id"]) == set(picked)
    with ReviewStore(load_run(panel)) as store:
        while store.undo_target() is not None:
            store.undo_consensus("ana")
        assert set(store.run.items()) == proposed and new not in store.run.theme_ids


def test_an_undone_category_keeps_its_id_and_what_was_said_about_it(panel):
    """A category created, judged and commented on, then undone: the next category
    created gets a new id, so ben's position and dee's comment on the undone one never
    appear on it."""
    run = load_run(panel)
    picked = run.segments[run.segments["theme"] == 0]["segment_id"].head(2).tolist()
    with ReviewStore(run) as store:
        store.resolve([Decision(i, "accept") for i in run.items()], by="ana")
        first = store.create_category("Tears as data", picked, "1", "ana")
        store.record_positions([("ben", [Decision(first, "merge", target="1")])])
        store.add_audit_comment(first, "dee", "Why a category of its own?")
        store.undo_consensus("ana")
        assert first.split(":")[1] not in store.run.theme_ids
        second = store.create_category("Tissues", picked, "1", "ana")
        assert second != first
        status = review_status(store)
    again = next(i for i in status.items if i.item == second)
    assert again.positions == {} and again.audit == []
    # it has the frequency label of its cases, on its page too
    cases = run.segments.set_index("segment_id").loc[picked, "case_id"].nunique()
    web = Web(panel, "ana")
    page = web.get(f"/theme/{second.split(':')[1]}")
    label = frequency_label(int(cases), run.n_cases)
    assert f'<span class="label {label.replace(" ", "-")}">{label}</span>' in page
    assert "nan" not in page
    # a domain split's new domain is not reused either
    with ReviewStore(load_run(panel)) as store:
        d1 = store.create_domain("Tears", "ana")
        store.add_audit_comment(d1, "dee", "Is this a domain?")
        store.undo_consensus("ana")
        d2 = store.create_domain("Crying", "ana")
    assert d2 != d1


def _meanwhile(folder: Path, save):
    """``save(store)`` by another judge, on a connection of its own that does not wait
    for the write lock: what it returns, or None when another write holds the store."""
    with ReviewStore(load_run(folder)) as other:
        other.con.execute("PRAGMA busy_timeout=0")
        try:
            return save(other)
        except ReviewError as exc:
            assert "busy" in str(exc), exc
            return None


def _two_domains(run) -> list[tuple[str, str]]:
    """Two domains of the run, those with most themes: (domain, its first theme)."""
    counts = run.themes.groupby("domain_id")["theme_id"].agg(list)
    return [(str(d), str(ts[0])) for d, ts in sorted(counts.items(), key=lambda x: -len(x[1]))][:2]

def test_no_created_category_takes_an_id_kept_for_kept_subcategories_and_splits(panel):
    """Kept subcategories and split-off categories have ids of their own, in a block no
    theme id is in: a category created once the ids before the block are used is
    given one after it, and a create naming an id in it is refused, naming the block."""
    run = load_run(panel)
    kept = run.derived_ids()
    segs = sorted(run.segments_of(0))
    with ReviewStore(run) as store:
        store.resolve([Decision(f"theme:{kept.start - 1}", "create", new_name="Last before",
                                segments=(segs[0],), domain="0")], by="ana")
        assert store.create_category("After the block", segs[1:2], "0",
                                     by="ana") == f"theme:{kept.stop}"
        with pytest.raises(ReviewError, match=f"theme id {kept.start + 3} is kept for the "
                                              "proposed subcategories the judges keep"):
            store.resolve([Decision(f"theme:{kept.start + 3}", "create", new_name="Inside",
                                    segments=(segs[2],), domain="0")], by="ana")


def test_a_split_recorded_with_the_id_after_the_themes_keeps_it(panel):
    """A store written before split ids were the theme's holds a split whose category
    is numbered after the run's themes: it reads and applies with that id, which a
    category created since does not take."""
    from pipeline.review.apply import build_codebook

    run = load_run(panel)
    old = int(run.themes["theme_id"].max()) + 1
    segs = sorted(run.segments_of(0))
    with ReviewStore(run) as store:
        store.resolve([Decision("theme:0", "split", new_name="Numbered the old way",
                                segments=(segs[0],), target=str(old))], by="ana")
        made = store.create_category("Created since", segs[1:2], "0", by="ben")
        assert made == f"theme:{old + 1}"
        store.resolve([Decision(i.item, "accept") for i in review_status(store).pending()],
                      by="ana")
    with ReviewStore(load_run(panel)) as store:
        cb = build_codebook(store.run, review_status(store))
    ids = {c["name"]: c["id"] for d in cb.data["domains"] for c in d["categories"]}
    assert ids["Numbered the old way"] == old and ids["Created since"] == old + 1



@pytest.mark.parametrize("what", ["category", "domain", "split"])
def test_two_creates_at_the_same_moment_each_get_their_own_id(panel, monkeypatch, what):
    """ben's new category (domain, domain split) is recorded just as ana's has chosen
    its id: each keeps its own id and both are recorded, instead of both being told
    "created" and ana's replacing ben's. Forced: ben saves from inside ana's
    ``unused_id``; when ana's save holds the write lock there, ben's waits (here: is
    refused as busy) and goes after it."""
    run = load_run(panel)
    picked = run.segments["segment_id"].head(2).tolist()
    (dom_a, theme_a), (dom_b, theme_b) = _two_domains(run)
    saves = {
        "category": (lambda s: s.create_category("Tears", picked[:1], dom_a, "ana"),
                     lambda s: s.create_category("Tissues", picked[1:], dom_a, "ben")),
        "domain": (lambda s: s.create_domain("Tears", "ana"),
                   lambda s: s.create_domain("Tissues", "ben")),
        "split": (lambda s: s.split_domain(dom_a, [theme_a], "Tears", "ana"),
                  lambda s: s.split_domain(dom_b, [theme_b], "Tissues", "ben")),
    }[what]
    made: dict[str, str | None] = {}
    unused_id = ReviewStore.unused_id

    def ben_meanwhile(self, kind):
        ident = unused_id(self, kind)
        if "ben" not in made:
            made["ben"] = None
            made["ben"] = _meanwhile(panel, saves[1])
        return ident

    monkeypatch.setattr(ReviewStore, "unused_id", ben_meanwhile)
    with ReviewStore(load_run(panel)) as store:
        made["ana"] = saves[0](store)
    if made["ben"] is None:         # ana's save held the store: ben's goes after it
        with ReviewStore(load_run(panel)) as store:
            made["ben"] = saves[1](store)
    assert made["ana"] != made["ben"]
    with ReviewStore(load_run(panel)) as store:
        names = {i: store.run.label(i) for i in made.values()}
        if what == "split":
            splits = {d.target for d in store.consensus().values() if d.decision == "split"}
            assert splits == {m.split(":")[1] for m in made.values()}
    assert '"Tears"' in names[made["ana"]] and '"Tissues"' in names[made["ben"]]


def test_two_judges_starting_the_next_round_at_once_start_one(panel, monkeypatch):
    """ana and ben press "Start round 2" at the same moment: one round is started, and
    the second request is refused (409) instead of closing round 2 unseen. Forced: ana
    starts round 2 while ben's request, past its check of the form's round, reads the
    status."""
    from pipeline.web import routes

    run = load_run(panel)
    with ReviewStore(run) as store:
        store.resolve([Decision(i, "accept") for i in run.items()], by="ana")
    ben = Web(panel, "ben")
    page = ben.get("/")
    status = routes.review_status

    def ana_meanwhile(store, *args):
        if store.round == 1:
            with ReviewStore(load_run(panel)) as other:
                other.next_round("ana", closed=True, round=1)
        return status(store, *args)

    monkeypatch.setattr(routes, "review_status", ana_meanwhile)
    r = ben.post("/next-round", _page=page, round="1")
    assert r.status_code == 409, r.text[:300]
    assert "Round 1 is not the open round any more" in r.text
    with ReviewStore(load_run(panel)) as store:
        assert store.round == 2
        with pytest.raises(ReviewError, match="round 1 is not the open round any more"):
            store.next_round("ben", closed=True, round=1)


@pytest.mark.parametrize("path", ["/", "/domain/{domain}"])
def test_a_page_built_while_another_judge_creates_a_category_is_shown(panel, monkeypatch,
                                                                     path):
    """ben's page is being built when ana's request creates a category in its domain
    (on another thread, as the app serves judges at once): ben's page is the review as
    it was when his request read it, not a 500 because ana's store changed the run's
    themes under it. Forced: ana's request runs while ben's reads the status."""
    import threading

    from pipeline.web import pages

    ben = Web(panel, "ben")
    run = load_run(panel)
    domain = str(int(run.themes["domain_id"].iloc[0]))
    picked = run.segments["segment_id"].head(1).tolist()
    status = pages.review_status
    made = []

    def ana(review):
        with review.store() as store:
            made.append(store.create_category(f"Tears {len(made)}", picked, domain, "ana"))

    def ana_meanwhile(store):
        st = status(store)
        if not made:
            other = threading.Thread(target=ana, args=(ben.review,))
            other.start()
            other.join()
        return st

    monkeypatch.setattr(pages, "review_status", ana_meanwhile)
    r = ben.client.get(path.format(domain=domain))
    assert r.status_code == 200, r.text[:300]
    assert made and 'Tears 0' not in r.text
    monkeypatch.setattr(pages, "review_status", status)
    assert "Tears 0" in ben.get(path.format(domain=domain))


def test_a_split_whose_segments_went_elsewhere_says_what_it_made(panel):
    """Theme 0 splits off two segments, but the team moves both (or one) to theme 1:
    the codebook says the split made no category (or a smaller one), never that the
    segments went into a category that does not exist."""
    import yaml

    run = load_run(panel)
    two = run.segments[run.segments["theme"] == 0]["segment_id"].head(2).tolist()
    with ReviewStore(run) as store:
        store.resolve([Decision(i, "accept") for i in run.items()], by="ana")
        store.resolve([Decision("theme:0", "split", new_name="Learning on the job",
                                segments=tuple(two))], by="ana")
        store.resolve([Decision(f"segment:{s}", "move", target="1") for s in two], by="ben")
    assert main(["review", "apply", str(panel)]) == 0
    cb = yaml.safe_load((panel / "review" / "codebook.yaml").read_text())
    cats = {c["id"]: c for d in cb["domains"] for c in d["categories"]}
    assert not any(c["name"] == "Learning on the job" for c in cats.values())
    assert "a split of 2 segment(s) made no category: the judges placed every one of them " \
           "elsewhere" in cats[0]["changes"]
    with ReviewStore(load_run(panel)) as store:
        store.undo_consensus("ben")
        store.resolve([Decision(f"segment:{two[0]}", "move", target="1")], by="ben")
    assert main(["review", "apply", str(panel)]) == 0
    cb = yaml.safe_load((panel / "review" / "codebook.yaml").read_text())
    cats = {c["id"]: c for d in cb["domains"] for c in d["categories"]}
    made = next(c for c in cats.values() if c["name"] == "Learning on the job")
    assert made["n_segments"] == 1
    assert f"1 of 2 segment(s) split off into category {made['id']} (the judges placed the " \
           "others elsewhere)" in cats[0]["changes"]


@pytest.mark.slow
def test_the_theme_page_lists_the_subcategories_consensa_proposed(applied_demo, tmp_path):
    """The demo's run (as `applied_demo` makes it) proposes subcategories. A theme's page names them with their
    counts and, for a stance one, its pole, says one nobody keeps is not in the
    codebook, and its key phrases read as phrases, not as a Python list."""
    import shutil

    from pipeline.runfolder import RunFolder

    run = Path(shutil.copytree(applied_demo, tmp_path / "run"))
    subs = RunFolder.open(run).proposed_subcategories()
    parent = subs[0]["parent_theme"]
    page = Web(run, "ana").get(f"/theme/{parent}")
    shown = re.search(r'<dd class="proposed-subcategories">(.*?)</dd>', page, re.S).group(1)
    for s in (s for s in subs if s["parent_theme"] == parent):
        pole = f' <span class="muted">(stance: {s["pole"]})</span>' if s["pole"] else ""
        # its label first, and the cases it counts where fewer than those it has
        n = s["n_counted_cases"]
        assert f"{s['name']}{pole} <span class=\"muted\">({s['frequency_label']}, " \
               f"{counted(s['n_segments'], 'segment')}, {counted(s['n_cases'], 'case')}" \
               + (f", {n} counted" if n is not None and n != s["n_cases"] else "") \
               + ")</span>" in shown.replace("&#39;", "'")
    assert "not in the codebook" in shown
    assert "['" not in page and "[&#39;" not in page


@pytest.mark.slow
def test_the_workbook_shows_the_subcategories_consensa_proposed(applied_demo, tmp_path):
    import shutil

    from pipeline.runfolder import RunFolder

    run = Path(shutil.copytree(applied_demo, tmp_path / "run"))
    shutil.rmtree(run / "review")                  # a fresh review of the demo's run
    assert main(["review", "export", str(run), "--judges", "ana,ben"]) == 0
    ws = openpyxl.load_workbook(run / "review" / "round-1" / "ana.xlsx")["themes"]
    header = [c.value for c in ws[1]]
    col = header.index("proposed subcategories")
    shown = {r[0]: r[col] or "" for r in ws.iter_rows(min_row=2, values_only=True)}
    subs = RunFolder.open(run).proposed_subcategories()
    assert subs
    frame = [r for r in openpyxl.load_workbook(run / "review" / "round-1" / "ana.xlsx")[
        "unassigned"].iter_rows(min_row=2, values_only=True) if r[3] == FRAME_NOTE]
    assert frame                                   # the demo's greetings and thanks
    for s in subs:
        pole = f" (stance: {s['pole']})" if s["pole"] else ""
        assert f"{s['name']}{pole} ({counted(s['n_segments'], 'segment')}, " \
               f"{counted(s['n_cases'], 'case')})" in shown[s["parent_theme"]]


def review_status_codebook(store) -> dict:
    from pipeline.review.apply import build_codebook

    return build_codebook(store.run, review_status(store), draft=True).data


def _between(page: str, start: str, end: str) -> str:
    i = page.index(start)
    return page[i:page.index(end, i)]


def test_a_category_made_by_a_split_is_an_item_of_the_review_with_a_lasting_id(panel, capsys):
    """A category split off a theme got its id only at apply: the judges could not
    rename, reject, move segments to or audit it ("unknown theme id '18'"), and a
    category created in the browser afterwards took its id. Recorded as the consensus,
    a split now gives the new category its id; the category is an item like any other."""

    run = load_run(panel)
    own = sorted(run.segments_of(0))
    new = str(run.split_category_id(0))          # theme 0's own, kept clear of theme ids
    created = int(run.themes["theme_id"].max()) + 1
    assert int(new) > created
    assert main(["review", "resolve", str(panel), "--theme", "0", "--decision", "split",
                 "--name", "Peer consultation", "--segments", ",".join(own[:2]),
                 "--by", "ana"]) == 0
    capsys.readouterr()
    with ReviewStore(load_run(panel)) as store:
        items = {i.item: i for i in review_status(store).items}
        assert items[f"theme:{new}"].state == "resolved"
        # a category created since takes the next theme id, not the split's
        made = store.create_category("Created later", own[2:3], "0", by="ben")
    assert made == f"theme:{created}"
    assert main(["review", "audit", str(panel), "--theme", new, "--by", "dee",
                 "--comment", "is this one thing?"]) == 0
    assert main(["review", "resolve", str(panel), "--segment", own[3], "--decision", "move",
                 "--target", new, "--by", "ana"]) == 0
    assert main(["review", "resolve", str(panel), "--theme", new, "--decision", "rename",
                 "--name", "Peer consultation group", "--by", "ana"]) == 0
    assert main(["review", "resolve", str(panel), "--theme", new, "--decision", "split",
                 "--segments", own[0], "--name", "again", "--by", "ana"]) == 2
    assert "unknown decision 'split'" in capsys.readouterr().err
    from pipeline.review.apply import build_codebook

    with ReviewStore(load_run(panel)) as store:
        assert [c["comment"] for c in store.audit_comment_rows()[f"theme:{new}"]] == \
            ["is this one thing?"]
        cb = build_codebook(store.run, review_status(store), draft=True)
    cats = {c["id"]: c for d in cb.data["domains"] for c in d["categories"]}
    assert cats[int(new)]["name"] == "Peer consultation group"
    assert cats[int(new)]["changes"][0] == f'split off from theme 0 "{run.theme_name(0)}"'
    dom_of = {c["id"]: d["id"] for d in cb.data["domains"] for c in d["categories"]}
    assert dom_of[int(new)] == dom_of[0]
    placed = cb.assignments.set_index("segment_id")["category_id"]
    assert {int(placed[s]) for s in own[:2] + own[3:4]} == {int(new)}
    assert int(placed[own[2]]) == created
    # the split's position of a judge (no id) is the same decision as the consensus
    with ReviewStore(load_run(panel)) as store:
        cons = store.consensus()["theme:0"]
        assert cons.target == new
        assert Decision("theme:0", "split", new_name="Peer consultation",
                        segments=tuple(own[:2])).key() == cons.key()


def _version_fields(page: str, item: str) -> dict[str, str]:
    """The hidden version fields of the form that decides ``item`` on a page."""
    form = next(f for f in re.findall(r"<form.*?</form>", page, re.S)
                if f'name="item" value="{item}"' in f)
    return dict(re.findall(r'name="(v_\w+)" value="([^"]*)"', form))


def _round_two(panel: Path) -> tuple[Path, Path, Path]:
    """Round 1 closed, round 2's workbooks exported: ana's, ben's, and a copy of ben's."""
    import shutil
    _close_round_one(panel)
    assert main(["review", "next-round", str(panel), "--by", "ana"]) == 0
    assert main(["review", "export", str(panel), "--judges", "ana,ben"]) == 0
    rdir = panel / "review" / "round-2"
    return rdir / "ana.xlsx", rdir / "ben.xlsx", Path(shutil.copy(rdir / "ben.xlsx",
                                                                  panel / "ben-copy.xlsx"))


def _ben(run) -> dict[str, Decision]:
    with ReviewStore(run) as store:
        return {i: by["ben"] for i, by in store.positions().items() if "ben" in by}


def test_a_workbook_imported_as_exported_keeps_the_judges_later_positions(panel, capsys):
    """Ben exported his round-2 workbook (prefilled with round 1's consensus), renamed
    items in the browser and in a copy of the workbook, then changed one row of the
    workbook as exported and imported it: its untouched rows put the starting point
    back over his renames, and the agreed items were disputed again; the import said so
    only once it was done."""
    run = load_run(panel)
    ana, ben, copy = _round_two(panel)
    # ana and ben agree on two renames: ben's by a copy of his workbook and in the browser
    fill(ana, "themes", 0, decision="rename", new_name="Learning on the job")
    fill(ana, "themes", 1, decision="rename", new_name="Support from supervisors")
    fill(copy, "themes", 0, decision="rename", new_name="Learning on the job")
    assert main(["review", "import", str(panel), str(ana), str(copy)]) == 0
    web = Web(panel, "ben")
    page = web.get("/theme/1")
    r = web.post("/decide", _page=page, item="theme:1", decision="rename",
                 new_name="Support from supervisors", **_version_fields(page, "theme:1"),
                 **{"as": "position"})
    assert r.status_code == 303
    with ReviewStore(run) as store:
        states = {i.item: i.state for i in review_status(store).items}
        log = len(store.audit_log())
    assert states["theme:0"] == states["theme:1"] == "agreed"
    capsys.readouterr()

    # the workbook as exported, one other row changed
    fill(ben, "domains", 0, decision="rename", new_name="Hard cases")
    assert main(["review", "import", str(panel), str(ben)]) == 0
    out = capsys.readouterr().out
    mine = _ben(run)
    assert mine["theme:0"].new_name == "Learning on the job"
    assert mine["theme:1"].new_name == "Support from supervisors"
    assert mine["domain:0"].new_name == "Hard cases"
    with ReviewStore(run) as store:
        states = {i.item: i.state for i in review_status(store).items}
        written = [r for r in store.audit_log()[log:] if r["action"] == "position"]
    assert states["theme:0"] == states["theme:1"] == "agreed"
    # each kept position is named, with where and when it was made
    assert "2 row(s) left as the workbook was exported did not replace" in out
    assert re.search(r"kept ben's later position on theme 0 \"Learning on the job\" "
                     r"\(proposed: \"[^\"]*\"\): rename to "
                     r"\"Learning on the job\" \(made [0-9-]+ [0-9:]+ UTC by importing "
                     r"ben-copy\.xlsx\), not the workbook's unchanged row", out)
    assert "kept ben's later position on theme 1" in out and "in the browser" in out
    # domain 0's row replaces the accept a copy of the same workbook recorded
    assert "1 position(s) replace a different one" in out and "ben on domain:0" in out
    # the rows that are ben's position already are not recorded again: one row written
    assert [r["item"] for r in written] == ["domain:0"]
    assert "row(s) hold the position recorded already and were not recorded again" in out

    # the same workbook again writes nothing
    assert main(["review", "import", str(panel), str(ben)]) == 0
    assert "imported 0 decision(s)" in capsys.readouterr().out
    with ReviewStore(run) as store:
        assert not [r for r in store.audit_log()[log + len(written):]
                    if r["action"] == "position"]

    # a row ben changed in the workbook, against his later position in the browser: refused
    row = fill(ben, "themes", 1, decision="rename", new_name="Supervisors")
    assert main(["review", "import", str(panel), str(ben)]) == 2
    err = capsys.readouterr().err
    assert (f"ben.xlsx, sheet 'themes', row {row}: ben changed theme 1" in err
            and "in the browser" in err and "after the workbook was exported" in err)
    assert "export a fresh workbook" in err and "--workbook-wins" in err
    assert _ben(run)["theme:1"].new_name == "Support from supervisors"
    # ... unless the workbook is to win
    assert main(["review", "import", str(panel), str(ben), "--workbook-wins"]) == 0
    assert "1 position(s) replace a different one" in capsys.readouterr().out
    assert _ben(run)["theme:1"].new_name == "Supervisors"


def test_a_workbook_exported_before_the_exported_values_were_kept_is_read_alike(panel,
                                                                               capsys):
    """A workbook without the sheet of the values it was exported with: its untouched
    rows are told by the round's starting point, which the store gives."""
    ana, ben, copy = _round_two(panel)
    book = openpyxl.load_workbook(ben)
    del book["_exported"]
    book.save(ben)
    fill(copy, "themes", 0, decision="rename", new_name="Learning on the job")
    assert main(["review", "import", str(panel), str(copy)]) == 0
    fill(ben, "domains", 0, decision="rename", new_name="Hard cases")
    capsys.readouterr()
    assert main(["review", "import", str(panel), str(ben)]) == 0
    out = capsys.readouterr().out
    assert "kept ben's later position on theme 0" in out
    mine = _ben(load_run(panel))
    assert (mine["theme:0"].new_name, mine["domain:0"].new_name) == ("Learning on the job",
                                                                     "Hard cases")


def test_a_judge_added_to_a_round_with_its_consensus_is_refused_and_joins_the_next(panel,
                                                                                  capsys):
    """A typo in --judges, or a judge who joins once the judges agreed, opened every agreed
    item again (a judge with no position): `apply`, the exports and `next-round` refused
    the finished review, and no command took the name off the panel."""
    from pipeline.web.server import ensure_panel

    run = load_run(panel)
    with ReviewStore(run) as store:
        # round 1 agreed by every judge's positions, one item resolved by the panel
        store.record_positions([(j, [Decision(i, "accept") for i in run.items()])
                                for j in ("ana", "ben")])
        store.resolve([Decision("theme:1", "rename", new_name="Supervision as support")],
                      by="team")
    assert main(["review", "apply", str(panel)]) == 0
    capsys.readouterr()

    # a spelling of someone on the panel, however the panel stands
    with pytest.raises(ReviewError, match=r"'ana_' and 'ana' differ only in case, spaces or "
                                          r"punctuation"):
        ensure_panel(panel, ["ana_"], [])
    # a new judge once the round has its consensus: refused, the panel and the closest name
    # named, and what to do
    assert main(["review", "export", str(panel), "--judges", "anna", "--force"]) == 2
    err = capsys.readouterr().err
    assert "cannot add 'anna' as judge(s): round 1 has a consensus already" in err
    assert "ana (judge), ben (judge), dee (auditor)" in err and "did you mean 'ana'" in err
    assert "next-round" in err
    for name in ("Ana", "ana ", "a.na"):
        assert main(["review", "resolve", str(panel), "--theme", "0", "--decision",
                     "reject", "--by", name]) == 2
        assert "no one on the panel is named so, but 'ana' is" in capsys.readouterr().err
    assert main(["review", "answer", str(panel), "--comment", "1", "--by", "Ben",
                 "--accept"]) == 2
    assert "did you mean 'ben'" in capsys.readouterr().err
    with ReviewStore(run) as store:
        assert store.judges() == ["ana", "ben"] and "theme:0" not in store.consensus()
        assert review_status(store).closed
    assert main(["review", "apply", str(panel)]) == 0
    assert main(["export", "qdc", str(panel)]) == 0

    # a real new judge joins the next round, which starts from this consensus; round 1
    # stays as its judges agreed it
    assert main(["review", "next-round", str(panel), "--by", "team"]) == 0
    ensure_panel(panel, ["carl"], [])
    with ReviewStore(run) as store:
        assert store.judges() == ["ana", "ben", "carl"] and store.judges(1) == ["ana", "ben"]
        one, two = review_status(store, 1), review_status(store)
        assert one.closed and {i.state for i in one.items} == {"agreed", "resolved"}
        assert two.closed and {i.state for i in two.items} == {"carried"}
        assert two.effective_consensus()["theme:1"].new_name == "Supervision as support"


def test_round_two_workbooks_are_written_after_a_consensus_of_round_two(panel, capsys):
    """One consensus decision in round 2 refused the judges' round-2 workbooks: the items
    carried from round 1 counted as round 2's consensus, and the refusal said a workbook
    would start from the proposal, where round 2's start from round 1's consensus."""
    run = _close_round_one(panel)
    assert main(["review", "next-round", str(panel), "--by", "ana"]) == 0
    assert main(["review", "resolve", str(panel), "--theme", "0", "--decision", "rename",
                 "--name", "Learning on the job", "--by", "team"]) == 0
    capsys.readouterr()
    assert main(["review", "export", str(panel), "--judges", "ana,ben"]) == 0, \
        capsys.readouterr().err
    ws = openpyxl.load_workbook(panel / "review" / "round-2" / "ana.xlsx")["themes"]
    head = [c.value for c in ws[1]]
    rows = {r[0]: dict(zip(head, r)) for r in ws.iter_rows(min_row=2, values_only=True)}
    assert rows[1]["new name"] == "Supervision as support"
    # every item decided in round 2 itself: a workbook would start that round again
    with ReviewStore(run) as store:
        store.resolve([Decision(i, "accept") for i in run.items() if i != "theme:0"],
                      by="team")
    assert main(["review", "export", str(panel), "--judges", "ana,ben", "--force"]) == 2
    err = capsys.readouterr().err
    assert "every item of round 2 has its consensus of this round" in err
    assert "start the round again from round 1's consensus" in err and "proposal" not in err


def test_a_round_two_import_says_how_many_rows_changed(panel, capsys):
    """A round-2 workbook with one row changed said "imported N decision(s)", N every
    prefilled row: which rows were the judge's doing was not said."""
    _close_round_one(panel)
    assert main(["review", "next-round", str(panel), "--by", "ana"]) == 0
    assert main(["review", "export", str(panel), "--judges", "ana,ben"]) == 0
    wb = panel / "review" / "round-2" / "ana.xlsx"
    fill(wb, "themes", 0, decision="rename", new_name="Learning on the job")
    capsys.readouterr()
    assert main(["review", "import", str(panel), str(wb)]) == 0
    out = capsys.readouterr().out
    n = int(re.search(r"imported (\d+) decision", out).group(1))
    assert n > 2
    assert (f"of the judges' rows recorded: 1 changed in the workbook, {n - 1} left as "
            "exported (the round before's consensus") in out
    run = load_run(panel)
    with ReviewStore(run) as store:
        assert store.positions()["theme:0"]["ana"].new_name == "Learning on the job"
        assert store.positions()["theme:1"]["ana"].new_name == "Supervision as support"
