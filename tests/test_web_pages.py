"""The review app without a server: what each page shows (pipeline.web.pages), the
request checks (pipeline.web.security), and one Decision whichever way it is entered
(web form, workbook, `consensa review resolve`)."""

from __future__ import annotations

import re
from dataclasses import replace

import pandas as pd
import pytest
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.testclient import TestClient

from pipeline.cli import main
from pipeline.review.agreement import review_status
from pipeline.review.apply import live_codebook
from pipeline.review.model import Decision, ReviewError, load_run
from pipeline.review.signing import WorkbookCheck, load_key
from pipeline.review.store import ReviewStore, StaleError
from pipeline.review.workbook import read_workbook
from pipeline.web import create_app, pages
from pipeline.web.context import Context
from pipeline.web.routes import decision_from_form
from pipeline.web.security import (
    MAX_SESSIONS,
    Access,
    csrf_ok,
    local_target,
    same_origin,
)
from tests.review_helpers import fill


@pytest.fixture()
def run_folder(review_run):
    return review_run


@pytest.fixture()
def store(run_folder):
    with ReviewStore(load_run(run_folder), create=True) as s:
        s.set_panel(["ana", "ben"], ["dee"])
        yield s


def _seg_of(run, theme: int, n: int = 1) -> list[str]:
    return run.segments[run.segments["theme"] == theme]["segment_id"].head(n).tolist()


# --- one Decision from the three ways in ----------------------------------------------

def _web(item: str, pairs: list[tuple[str, str]]) -> Decision:
    return decision_from_form(item, FormData(pairs), "ana")


def test_web_form_workbook_and_command_line_give_equal_decisions(run_folder, capsys):
    run = load_run(run_folder)
    split = _seg_of(run, 0, 2)
    mover = _seg_of(run, 1)[0]
    expected = {
        "theme:0": Decision("theme:0", "split", new_name="Learning on the job",
                            segments=tuple(split)),
        "theme:1": Decision("theme:1", "rename", new_name="Supervision as support",
                            core_idea="Supervisors helped.", comment="from the meeting"),
        "theme:2": Decision("theme:2", "merge", target="1"),
        f"segment:{mover}": Decision(f"segment:{mover}", "move", target="none"),
    }

    # the web form: every field is sent, the ones that do not go with the decision too
    web = {
        "theme:0": _web("theme:0", [("decision", "split"), ("new_name", " Learning  on the job"),
                                    ("target", "1"), ("domain", "1"), ("segments", split[0]),
                                    ("segments", split[1]), ("segments", split[0])]),
        "theme:1": _web("theme:1", [("decision", " Rename "),
                                    ("new_name", "Supervision \n as support "),
                                    ("core_idea", " Supervisors helped. "),
                                    ("comment", "from the meeting ")]),
        "theme:2": _web("theme:2", [("decision", "merge"), ("target", "1"),
                                    ("new_name", "left over")]),
        f"segment:{mover}": _web(f"segment:{mover}", [("decision", "move"),
                                                     ("target", "NONE")]),
    }

    # a judge's workbook: cells as a spreadsheet holds them (numbers as numbers)
    assert main(["review", "export", str(run_folder), "--judges", "ana,ben"]) == 0
    wb = run_folder / "review" / "round-1" / "ana.xlsx"
    fill(wb, "themes", 0, decision="Split", new_name="Learning on the job  ",
         split_off_segments=f"{split[0]}; {split[1]}")
    fill(wb, "themes", 1, decision="rename", new_name=" Supervision  as support",
         core_idea_note="Supervisors helped.", comment=" from the meeting")
    fill(wb, "themes", 2, decision="MERGE", merge_into=1.0)
    fill(wb, "segments", mover, move_to_theme="None")
    with ReviewStore(run) as st:
        check = WorkbookCheck(load_key(run_folder), run_folder, tuple(st.panel().items()),
                              st.round)
    read, errors = read_workbook(wb, run, check)
    assert errors == []
    workbook = {d.item: d for d in read.decisions}

    # the command line, recorded as the consensus and read back from the store
    for args in (["--theme", "0", "--decision", "split", "--name", "Learning on the job",
                  "--segments", f"{split[0]},{split[1]}"],
                 ["--theme", "1", "--decision", "rename", "--name", "Supervision as  support",
                  "--core-idea", "Supervisors helped.", "--comment", "from the meeting"],
                 ["--theme", "2", "--decision", "merge", "--target", " 1 "],
                 ["--segment", mover, "--decision", "Move", "--target", "none"]):
        assert main(["review", "resolve", str(run_folder), *args, "--by", "ana"]) == 0
    capsys.readouterr()
    with ReviewStore(run) as st:
        cli = st.consensus()

    # recorded as the consensus, a split gets the id of the category it makes (theme 0's
    # own split id, clear of every theme id), so the new category is an item of the
    # review at once
    assert cli["theme:0"].target == str(run.split_category_id(0))
    assert int(cli["theme:0"].target) > int(pd.read_parquet(
        run_folder / "themes.parquet")["theme_id"].max())
    cli["theme:0"] = replace(cli["theme:0"], target="")
    for name, got in (("web form", web), ("workbook", workbook), ("command line", cli)):
        assert {k: replace(d, source="") for k, d in got.items()} == expected, name
    assert web["theme:0"].source == "web form (ana)"
    assert workbook["theme:2"].source == "ana.xlsx, sheet 'themes', row 4"
    assert cli["theme:2"].source == "command line"


def test_parse_refuses_what_is_not_a_decision_naming_the_field():
    with pytest.raises(ReviewError, match="field 'item'"):
        Decision.parse("topic:3", {"decision": "accept"}, source="t")
    with pytest.raises(ReviewError, match="field 'item'"):
        Decision.parse("theme: ", {"decision": "accept"}, source="t")
    with pytest.raises(ReviewError, match="field 'merge_into' is not a field of a decision"):
        Decision.parse("theme:1", {"decision": "merge", "merge_into": "2"}, source="t")
    with pytest.raises(ReviewError, match="field 'target' holds 2 values"):
        Decision.parse("theme:1", {"decision": "merge", "target": ["2", "0"]}, source="t")
    with pytest.raises(ReviewError, match="field 'segments'"):
        Decision.parse("theme:1", {"decision": "split", "segments": {"a", "b"}}, source="t")
    # the item's id is tidied like any other id
    assert Decision.parse("theme: 3.0", {"decision": "accept"}, source="t").item == "theme:3"


def test_parse_keeps_what_does_not_fit_unless_told_to_drop_it():
    fields = {"decision": "reject", "new_name": "x", "target": "2", "domain": "1",
              "segments": "a;b"}
    kept = Decision.parse("theme:1", fields, source="workbook")
    assert (kept.new_name, kept.target, kept.domain, kept.segments) == ("x", "2", "1",
                                                                         ("a", "b"))
    dropped = Decision.parse("theme:1", fields, source="web", ignore_unused=True)
    assert dropped == Decision("theme:1", "reject", source="web")
    # a domain goes with a kept theme only
    d = Decision.parse("theme:1", {"decision": "accept", "domain": "1.0"}, source="web",
                       ignore_unused=True)
    assert d.domain == "1"
    assert Decision.parse("domain:1", {"decision": "accept", "domain": "0"}, source="web",
                          ignore_unused=True).domain == ""


def test_web_form_drops_the_fields_a_keep_does_not_take(run_folder):
    run = load_run(run_folder)
    sid = _seg_of(run, 0)[0]
    d = _web(f"segment:{sid}", [("decision", "keep"), ("target", "2"), ("new_name", "x")])
    assert d == Decision(f"segment:{sid}", "keep", source="web form (ana)")


def _sign_in(client: TestClient, review, name: str) -> str:
    """``client`` signed in as ``name`` through the printed address; its CSRF token."""
    client.get(review.url("127.0.0.1", 8000))
    csrf = re.search(r'name="csrf" value="([^"]*)"', client.get("/login").text).group(1)
    client.post("/login", data={"csrf": csrf, "name": name})
    return csrf


def _form_values(page: str, *names: str) -> dict[str, str]:
    """The values of a page's first fields with these names, as the browser sends them."""
    return {k: re.search(rf'name="{k}" value="([^"]*)"', page).group(1) for k in names}


def test_an_accept_after_a_rename_records_no_new_name(store):
    """A judge's rename is in the form when she comes back to the theme; choosing
    "accept" sends the name along (the field is still filled in). It was recorded as an
    accept named like the rename, which reads and counts as the rename: an accept takes
    the proposal as it is."""
    review = create_app(store.run.folder)
    with TestClient(review.asgi, base_url="http://127.0.0.1:8000") as client:
        csrf = _sign_in(client, review, "ana")
        for mode in ("position", "consensus"):
            page = client.get("/theme/1").text
            form = {"csrf": csrf, "item": "theme:1", "as": mode,
                    **_form_values(page, "v_item", "v_mine")}
            assert client.post("/decide", data={**form, "decision": "rename",
                                                "new_name": "Held back the tears"},
                               follow_redirects=False).status_code == 303
            page = client.get("/theme/1").text
            assert _form_values(page, "new_name")["new_name"] == "Held back the tears"
            form.update(_form_values(page, "v_item", "v_mine", "new_name"))
            assert client.post("/decide", data={**form, "decision": "accept"},
                               follow_redirects=False).status_code == 303
        got = [store.positions()["theme:1"]["ana"], store.consensus()["theme:1"]]
        assert [(d.decision, d.new_name) for d in got] == [("accept", "")] * 2
        assert "Held back the tears" not in client.get("/").text
        # a workbook's accept with a name is a rename: the form starts from it as one,
        # so that saving it unchanged keeps the name
        store.record_positions([("ben", [Decision("theme:2", "accept", new_name="Tissues")])])
        page = client.get("/theme/2?from=ben").text
        assert re.search(r'<option value="rename" selected>', page)
        assert _form_values(page, "new_name")["new_name"] == "Tissues"


# --- page models ------------------------------------------------------------------------

def test_overview_counts_and_filters(store):
    run = store.run
    store.record_positions([("ana", [Decision("theme:0", "accept"), Decision("theme:1", "accept")]),
                            ("ben", [Decision("theme:0", "accept"),
                                     Decision("theme:1", "reject")])])
    everything = pages.overview(run, store, pages.Filters())
    listed = [row["status"].item for d in everything["domains"] for row in d["themes"]]
    assert sorted(listed) == sorted(f"theme:{t}" for t in run.themes["theme_id"])
    assert everything["counts"] == {"agreed": 1, "resolved": 0, "carried": 0, "disputed": 1,
                                    "open": len(run.items()) - 2}
    assert not everything["filtered"] and everything["n_unassigned"] == 0

    disputed = pages.overview(run, store, pages.Filters(status="disputed"))
    rows = [(d["shown"], [r["status"].item for r in d["themes"]]) for d in disputed["domains"]]
    assert rows == [(False, ["theme:1"])] and disputed["filtered"]

    pending = pages.overview(run, store, pages.Filters(status="pending"))
    assert "theme:0" not in [r["status"].item for d in pending["domains"] for r in d["themes"]]

    by_ana = pages.Filters.from_query({"judge": "ana:yes"})
    assert by_ana == pages.Filters(judge="ana", judged="yes")
    judged = pages.overview(run, store, by_ana)
    assert sorted(r["status"].item for d in judged["domains"] for r in d["themes"]) == \
        ["theme:0", "theme:1"]
    waiting = pages.overview(run, store, pages.Filters.from_query({"judge": "ana:no"}))
    assert [r["status"].item for d in waiting["domains"] for r in d["themes"]] == ["theme:2"]

    one = int(run.domains["domain_id"].iloc[0])
    only = pages.overview(run, store, pages.Filters(domain=str(one)))
    assert [int(d["d"].domain_id) for d in only["domains"]] == [one]


def test_overview_headers_and_grouping_as_the_codebook_stands(store):
    """After a split the overview agrees with ``review status`` and the domain page:
    the new domain's header gives its live label and cases (not the created row's empty
    ones, with a dangling comma), the moved theme is listed under it, and the domain it
    left shows its proposal beside what it is now."""
    run = store.run
    dom = next(int(d) for d, n in run.themes.groupby("domain_id").size().items() if n > 1)
    moved = int(run.themes[run.themes["domain_id"] == dom]["theme_id"].iloc[0])
    new = int(store.split_domain(str(dom), [str(moved)], "Split <off>", "ana",
                                 "its definition").split(":")[1])
    run = store.run
    live = live_codebook(run, review_status(store))["domains"]
    page = pages.overview(run, store, pages.Filters())
    entry = {int(e["d"].domain_id): e for e in page["domains"]}
    for did in (dom, new):
        now = live[did]
        assert entry[did]["name"] == now["name"]
        assert entry[did]["freq"] == f"{now['frequency_label']}, {now['n_cases']}/{run.n_cases} cases"
    assert [int(r["t"].theme_id) for r in entry[new]["themes"]] == [moved]
    assert entry[new]["themes"][0]["proposed_in"] == dom and not entry[new]["proposed_freq"]
    assert moved not in [int(r["t"].theme_id) for r in entry[dom]["themes"]]
    proposed = run.domains[run.domains["domain_id"] == dom].iloc[0]
    was = f"{proposed['frequency_label']}, {proposed['n_cases']}/{run.n_cases} cases"
    assert entry[dom]["proposed_freq"] == ("" if was == entry[dom]["freq"] else was)
    html = _render(store, "overview.html", page)
    assert "Split &lt;off&gt;" in html and "Split <off>" not in html
    assert f"(proposed in domain {dom})" in html and '<span class="freq">, ' not in html
    assert pages.frequency_text("", 10, 10) == "10/10 cases"


def test_theme_page_quotes_prefill_and_moves(store):
    run = store.run
    context = Context(run)
    page = pages.theme_page(run, store, context, "0", "ana")
    t = run.themes[run.themes["theme_id"] == 0].iloc[0]
    proposed = list(t["quote_ids"])
    assert [q["id"] for q in page["quotes"][:len(proposed)]] == proposed
    assert len(page["quotes"]) == int(t["n_segments"]) and page["quote_ids"] == set(proposed)
    assert page["keywords"] == list(t["keywords"]) and len(page["keywords"]) > 1
    assert page["prefill"] == Decision("theme:0", "")  # no choice made for the judge
    assert page["prefill_from"] == "nothing yet" and page["err"] is None
    assert any(turn.own for turn in page["quotes"][0]["context"])

    mover = _seg_of(run, 1)[0]
    store.record_positions([("ana", [Decision("theme:0", "reject")])])
    # ben keeps theme 0 and moves a segment into it (ana, who rejects it, could not)
    store.record_positions([("ben", [Decision("theme:0", "accept"),
                                     Decision(f"segment:{mover}", "move", target="0")])])
    page = pages.theme_page(run, store, context, "0", "ana")
    assert (page["prefill"].decision, page["prefill_from"]) == ("reject", "your position")
    assert [i.item for i in page["moved_in"]] == [f"segment:{mover}"]
    assert page["v_mine"] == store.item_version("theme:0", judge="ana") > 0
    page = pages.theme_page(run, store, context, "0", "ana", start_from="ben")
    assert page["prefill_from"] == "ben's position" and page["prefill"].decision == "accept"
    store.resolve([Decision("theme:0", "rename", new_name="Silent training")], by="ben")
    page = pages.theme_page(run, store, context, "0", "ana")
    assert page["prefill_from"] == "the consensus" and page["prefill"].new_name == \
        "Silent training"
    draft = Decision("theme:0", "merge", target="1")
    stale = StaleError("theme 0 has changed since you opened it", hint="look again")
    page = pages.theme_page(run, store, context, "0", "ana", error=stale, draft=draft)
    assert page["prefill"] is draft and page["prefill_from"] == "your refused entries"
    assert page["err"] == {"stale": True, "by_you": False, "by": "", "message": stale.reason,
                           "hint": "look again"}


def _render(store, template: str, ctx: dict) -> str:
    """A page's HTML as the app renders it for ana, a judge."""
    review = create_app(store.run.folder)
    return review.env.get_template(template).render(
        run=review.run, round=store.round, who="ana", role="judge", panel=store.panel(),
        csrf="x", flash=[], path="/", **ctx)


def test_theme_page_shows_the_category_as_the_codebook_stands(store):
    """After a merge and a move by consensus the page's frequency, cases and quotes are
    the live codebook's (as the domain page and `review status` give them), the
    proposal's beside them; the segments that left are listed apart, saying where."""
    run = store.run
    themes = run.themes.set_index("theme_id")
    tid, other = 1, 2
    seg = run.segments
    gone_case = themes.at[tid, "cases"][-1]
    # every segment of one case leaves (the merged theme's too): one case fewer
    leavers = seg[seg["theme"].isin([tid, other]) & (seg["case_id"] == gone_case)]
    newcomer = seg[(seg["theme"] == 0) & (seg["case_id"] != gone_case)]["segment_id"].iloc[0]
    store.resolve([Decision(f"theme:{other}", "merge", target=str(tid)),
                   Decision(f"segment:{newcomer}", "move", target=str(tid))]
                  + [Decision(f"segment:{s}", "move", target="none")
                     for s in leavers["segment_id"]], by="ana")
    page = pages.theme_page(run, store, Context(run), str(tid), "ana")
    cat = next(c for d in page["live"]["codebook"]["domains"] for c in d["categories"]
               if c["id"] == tid)
    ids = {q["id"] for q in page["quotes"]}
    assert len(ids) == cat["n_segments"] == int(themes.at[tid, "n_segments"]) + int(
        themes.at[other, "n_segments"]) + 1 - len(leavers)
    assert newcomer in ids and not ids & set(leavers["segment_id"])
    assert set(seg[seg["theme"] == other]["segment_id"]) - set(leavers["segment_id"]) <= ids
    own_leavers = leavers[leavers["theme"] == tid]["segment_id"]
    assert sorted(q["id"] for q in page["left"]) == sorted(own_leavers)
    assert all(q["now_in"]["id"] == -1 for q in page["left"])
    assert page["live_frequency"] and page["frequency"]["n_cases"] == cat["n_cases"] == \
        int(themes.at[tid, "n_cases"]) - 1
    assert page["frequency"]["n_segments"] == cat["n_segments"]
    assert page["proposed_frequency"]["n_segments"] == int(themes.at[tid, "n_segments"])
    assert [c["case"] for c in page["case_list"]] == cat["cases"]
    assert gone_case not in cat["cases"]
    assert page["proposed_cases"] == list(themes.at[tid, "cases"])
    html = _render(store, "theme.html", page)
    facts = html[html.index("<dt>Frequency"):html.index("<dt>Keywords")]
    assert f'{cat["n_cases"]}/{run.n_cases} cases' in facts
    assert f'{cat["n_segments"]} segments, as the codebook stands' in facts
    assert f'(proposed: {themes.at[tid, "frequency_label"]} · ' in facts
    assert html.count('name="segments"') == cat["n_segments"] + len(own_leavers)
    assert f"placed elsewhere by the consensus ({len(own_leavers)})" in html
    assert "now in no category" in html

    # a theme merged away is no category: its figures are the proposal's, and say so
    page = pages.theme_page(run, store, Context(run), str(other), "ana")
    assert not page["live_frequency"] and page["proposed_frequency"] is None
    assert page["frequency"]["n_segments"] == int(themes.at[other, "n_segments"])
    assert "Frequency <span class=\"muted\">(proposed)</span>" in _render(store, "theme.html",
                                                                           page)


def test_dropdowns_and_messages_name_themes_as_agreed(store):
    """After a rename by consensus the forms' dropdowns, the decisions in words and the
    messages after a save name the theme and the domain by the agreed name, the
    proposed one beside it; names are text, escaped like everything else."""
    run = store.run
    theme, dom = run.theme_name(1), run.domain_name(0)
    store.resolve([Decision("theme:1", "rename", new_name="Came <b>close</b>"),
                   Decision("domain:0", "rename", new_name="Support")], by="ben")
    page = pages.theme_page(run, store, Context(run), "0", "ana")
    assert ("1", f"Came <b>close</b> (proposed: {theme})") in page["theme_choices"]
    assert ("0", f"Support (proposed: {dom})") in page["domain_choices"]
    assert ("2", run.theme_name(2)) in page["theme_choices"]  # not renamed: as proposed
    found = pages.search(run, store, Context(run), "", where="1", who="ana")
    assert found["theme_choices"] == page["theme_choices"]
    assert ("0", f"Support (proposed: {dom})") in pages.overview(
        run, store, pages.Filters())["domain_choices"]
    agreed = review_status(store).effective_consensus()
    assert pages.say(run, Decision("theme:2", "merge", target="1"), agreed) == \
        f'merge into theme 1 "Came <b>close</b>" (proposed: "{theme}")'
    html = _render(store, "theme.html", page)
    assert f"theme 1: Came &lt;b&gt;close&lt;/b&gt; (proposed: {theme})" in html
    assert "<b>close</b>" not in html

    # the message after a move, through the app: the theme by its agreed name
    review = create_app(run.folder)
    sid = _seg_of(run, 0)[0]
    with TestClient(review.asgi, base_url="http://127.0.0.1:8000") as client:
        client.get(review.url("127.0.0.1", 8000))
        csrf = re.search(r'name="csrf" value="([^"]*)"', client.get("/login").text).group(1)
        client.post("/login", data={"csrf": csrf, "name": "ana"})
        moved = client.post("/move", data={"csrf": csrf, "segments": sid, "move_to": "1",
                                           "as": "position", "back": "/theme/0"})
        assert moved.status_code == 200
        flash = moved.text[moved.text.index('class="flash'):]
        flash = flash[:flash.index("</")]
        assert "move to theme 1 &#34;Came &lt;b&gt;close&lt;/b&gt;&#34; (proposed: " in flash


def test_a_store_that_cannot_be_opened_refuses_in_words_and_keeps_what_was_typed(
        store, monkeypatch):
    """The run folder turns read-only while ``serve`` runs: each page says which file
    cannot be opened and what to do (not a bare "Something went wrong"), and a save
    gives back what the judge typed, escaped like any text from a person."""
    review = create_app(store.run.folder)
    path = store.path

    def unwritable():
        raise ReviewError("the review store could not be read or written where it is "
                          "(unable to open database file); nothing was recorded", path=path,
                          hint="check that you may write to this folder, then try again")

    with TestClient(review.asgi, base_url="http://127.0.0.1:8000") as client:
        client.get(review.url("127.0.0.1", 8000))
        csrf = re.search(r'name="csrf" value="([^"]*)"', client.get("/login").text).group(1)
        client.post("/login", data={"csrf": csrf, "name": "ana"})
        page = client.get("/theme/1").text
        v = {k: re.search(rf'name="{k}" value="([^"]*)"', page).group(1)
             for k in ("v_item", "v_mine")}
        monkeypatch.setattr(review, "store", unwritable)
        shown = client.get("/theme/1")
        assert shown.status_code == 503 and str(path) in shown.text
        assert "This page cannot be shown" in shown.text and "Check that you may" in shown.text
        saved = client.post("/decide", data={
            "csrf": csrf, "item": "theme:1", "decision": "rename", "as": "position",
            "new_name": "Tears <i>held</i>", "comment": "keep me", **v})
        assert saved.status_code == 503 and "Not saved" in saved.text
        assert str(path) in saved.text and "keep me" in saved.text
        assert "Tears &lt;i&gt;held&lt;/i&gt;" in saved.text and "<i>held" not in saved.text
        assert "ana" in saved.text          # the header still says who is there


def test_a_stale_save_overtaken_by_the_same_judge_says_so(store):
    """Two tabs of one judge: the second save is stale, and the page says she changed it
    herself, not "someone else"; a save overtaken by another judge still says that."""
    review = create_app(store.run.folder)
    with TestClient(review.asgi, base_url="http://127.0.0.1:8000") as client:
        client.get(review.url("127.0.0.1", 8000))
        csrf = re.search(r'name="csrf" value="([^"]*)"', client.get("/login").text).group(1)
        client.post("/login", data={"csrf": csrf, "name": "ana"})
        page = client.get("/theme/1").text
        form = {"csrf": csrf, "item": "theme:1", "as": "consensus",
                **{k: re.search(rf'name="{k}" value="([^"]*)"', page).group(1)
                   for k in ("v_item", "v_mine")}}
        assert client.post("/decide", data={**form, "decision": "accept"},
                           follow_redirects=False).status_code == 303
        again = client.post("/decide", data={**form, "decision": "reject"})
        assert again.status_code == 409
        assert "by you, in another tab or form" in again.text
        assert "someone else changed this first" not in again.text

        page = client.get("/theme/2").text
        form = {**form, "item": "theme:2",
                **{k: re.search(rf'name="{k}" value="([^"]*)"', page).group(1)
                   for k in ("v_item", "v_mine")}}
        store.resolve([Decision("theme:2", "accept")], by="ben")
        other = client.post("/decide", data={**form, "decision": "reject"})
        assert other.status_code == 409 and "ben changed this first" in other.text
    assert pages.error_box(StaleError("x", change={"who": "ana"}), "ana")["by_you"]
    assert not pages.error_box(StaleError("x", change={"who": "ben"}), "ana")["by_you"]
    assert pages.error_box(StaleError("x"), "ana")["by"] == ""    # "another judge"


def test_a_stale_save_overtaken_by_another_judge_names_them_and_keeps_the_text(store):
    """ben changed the consensus first. ana's undo, pressed on the overview she had
    open, said it was changed "by you": the store named the decision now on top (her
    own) as the change. Her split of a domain ben had just decided lost the name and
    definition she typed. The 409 page names ben and gives her words back."""
    review = create_app(store.run.folder)
    with TestClient(review.asgi, base_url="http://127.0.0.1:8000") as client:
        csrf = _sign_in(client, review, "ana")
        store.resolve([Decision("theme:1", "accept")], by="ana")
        store.resolve([Decision("theme:2", "accept")], by="ana")
        expect = _form_values(client.get("/").text, "expect")["expect"]
        store.undo_consensus("ben")
        r = client.post("/undo", data={"csrf": csrf, "expect": expect})
        assert r.status_code == 409 and "Not saved: ben changed it first" in r.text
        assert "by you" not in r.text and "ben undid the one on theme 2" in r.text
        assert store.undo_target()["id"] != int(expect)     # nothing was undone

        did = str(int(store.run.domains["domain_id"].iloc[0]))
        page = client.get(f"/domain/{did}").text
        theme = re.search(r'name="themes" value="([^"]*)"', page).group(1)
        store.resolve([Decision(f"domain:{did}", "accept")], by="ben")
        r = client.post("/split-domain", data={
            "csrf": csrf, "domain": did, "themes": theme, "new_name": "Tears <b>kept</b>",
            "definition": "What the therapist held back.",
            "v_item": _form_values(page, "v_item")["v_item"]})
        assert r.status_code == 409 and "Not saved: ben changed it first" in r.text
        assert "What you entered (not saved)" in r.text
        assert "Tears &lt;b&gt;kept&lt;/b&gt;" in r.text and "<b>kept" not in r.text
        assert "What the therapist held back." in r.text
        assert "split" not in store.consensus()[f"domain:{did}"].decision

        # a round started meanwhile: named too, whoever pressed the button
        store.resolve([Decision(i, "accept") for i in store.run.items()
                       if not i.startswith("core_idea:")], by="ben")
        store.next_round("ben", closed=True)
        r = client.post("/next-round", data={"csrf": csrf, "round": "1"})
        assert r.status_code == 409 and "Not saved: ben changed it first" in r.text
        assert "ben started it meanwhile" in r.text


def test_domain_and_segment_pages(store):
    run = store.run
    did = int(run.domains["domain_id"].iloc[0])
    page = pages.domain_page(run, store, str(did), "ana")
    assert sorted(int(r["t"].theme_id) for r in page["themes"]) == sorted(
        run.themes[run.themes["domain_id"] == did]["theme_id"])
    assert page["decisions"] == ("accept", "rename", "merge")
    sid = _seg_of(run, 0)[0]
    page = pages.segment_page(run, store, Context(run), sid, "ana")
    assert page["q"]["id"] == sid and page["status"].state == "untouched"
    assert page["prefill"] == Decision(f"segment:{sid}", "")
    assert set(page["status"].positions) == {"ana", "ben"}
    # more of the conversation than a quote on a theme page shows
    near = pages.quotes(run.segments[run.segments["segment_id"] == sid], Context(run),
                        review_status(store), {}, {})[0]["context"]
    assert len(page["q"]["context"]) > len(near)


def test_search_needs_every_word_and_marks_them(store):
    run = store.run
    page = pages.search(run, store, Context(run), "  TRAINING   tears ", who="ana")
    assert page["q"] == "TRAINING tears" and page["total"] == len(page["results"]) > 0
    for r in page["results"]:
        hay = f"{r['text']} {r['theme_name']} {r['case']}".casefold()
        assert "training" in hay and "tears" in hay
        assert "".join(p for p, _ in r["parts"]) == r["text"]
        assert {p.casefold() for p, hit in r["parts"] if hit} <= {"training", "tears"}
    assert pages.search(run, store, Context(run), "")["total"] == 0  # no words, no place
    inside = pages.search(run, store, Context(run), "", where="1")
    assert inside["total"] == int((run.segments["theme"] == 1).sum())
    outside = pages.search(run, store, Context(run), "", where="outside", into="1")
    assert outside["total"] == int((run.segments["theme"] != 1).sum())
    assert all(r["theme"] != 1 for r in outside["results"])
    assert len(outside["results"]) == min(outside["total"], pages.MAX_SEARCH_RESULTS)


def test_audit_log_newest_first_in_words(store):
    run = store.run
    store.resolve([Decision("theme:2", "merge", target="1", comment="same story")], by="ana")
    store.undo_consensus("ben")
    page = pages.audit_log(run, store)
    assert page["total"] == len(store.audit_log()) and page["undo"] is None
    first, second = page["entries"][:2]
    assert first["action"] == "consensus undo" and second["action"] == "consensus"
    name = run.theme_name(1)
    assert second["value_text"] == f'merge into theme 1 "{name}" "same story"'
    assert first["previous_text"] == second["value_text"] and first["value_text"] == ""
    assert second["label"] == run.label("theme:2")


def test_downloads_offer_only_the_exported_files(store):
    folder = store.run.folder
    (folder / "review" / "codebook.yaml").write_text("domains: []\n", encoding="utf-8")
    (folder / "review" / "notes.txt").write_text("private", encoding="utf-8")
    (folder / "export").mkdir()
    (folder / "export" / "run.qdpx").write_bytes(b"PK")
    (folder / "export" / "run.yaml").write_text("x", encoding="utf-8")
    files = {(f["folder"], f["name"]) for f in pages.downloads(folder)}
    assert ("review", "codebook.yaml") in files and ("export", "run.qdpx") in files
    assert ("review", "notes.txt") not in files and ("export", "run.yaml") not in files
    assert not any(name.endswith(".sqlite") for _, name in files)
    assert pages.export_page(store.run, store)["final"]


def test_export_page_says_the_codebook_yaml_is_stale(store):
    """A codebook.yaml written before the store's last decision is not the review as
    it stands: the export page, which offers it for download, says so as the command
    line's export does (the same rule, pipeline.exchange.agreed.stale_codebook), with
    what to do; written after it, the page says nothing."""
    import yaml

    folder = store.run.folder
    book = folder / "review" / "codebook.yaml"
    store.resolve([Decision("theme:2", "merge", target="1")], by="ana")

    def applied(at: str) -> None:
        book.write_text(yaml.safe_dump({"domains": [], "review": {"applied_at": at}}),
                        encoding="utf-8")

    applied("2000-01-01T00:00:00+00:00")
    review = create_app(folder)
    with TestClient(review.asgi, base_url="http://127.0.0.1:8000") as client:
        _sign_in(client, review, "ana")
        page = client.get("/export").text
        warn = re.search(r'<p class="warn" id="stale-codebook">(.*?)</p>', page, re.S)
        assert warn, "the export page does not say codebook.yaml is stale"
        assert f"{book} is stale" in warn.group(1)
        assert f"consensa review apply {folder}" in warn.group(1)
        applied("2999-01-01T00:00:00+00:00")
        assert 'id="stale-codebook"' not in client.get("/export").text
    assert pages.export_page(store.run, store)["stale"] == ""


def test_is_item_and_say(store):
    run = store.run
    sid = _seg_of(run, 0)[0]
    assert pages.is_item(run, "theme:0") and pages.is_item(run, f"segment:{sid}")
    assert not pages.is_item(run, "theme:42") and not pages.is_item(run, "review:0")
    assert pages.say(run, Decision("theme:2", "merge", target="1")) == \
        f'merge into theme 1 "{run.theme_name(1)}"'
    assert pages.item_url(f"segment:{sid}") == "/segment/" + sid.replace(":", "%3A")


# --- request checks ----------------------------------------------------------------------

def test_back_addresses_stay_on_this_site():
    assert local_target("/theme/1?from=ana#decide") == "/theme/1?from=ana#decide"
    for bad in ("https://example.org/", "//example.org/x", "javascript:alert(1)", "theme/1",
                "/\\example.org/x", None, ""):
        assert local_target(bad, "/x") == "/x", bad


def _request(headers: dict[str, str]) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/decide",
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]})


def test_origin_and_csrf_checks():
    assert same_origin(_request({"host": "127.0.0.1:8000"}))
    assert same_origin(_request({"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000"}))
    assert not same_origin(_request({"host": "127.0.0.1:8000", "origin": "http://example.org"}))
    assert not same_origin(_request({"host": "127.0.0.1:8000", "origin": "null"}))
    access = Access("fixed-token")
    s = access.new_session()
    assert csrf_ok(s, s.csrf) and not csrf_ok(s, "") and not csrf_ok(s, s.csrf + "x")
    assert access.token_ok("fixed-token") and not access.token_ok("fixed-tokeN")
    assert access.url("::1", 8000) == "http://[::1]:8000/?token=fixed-token"
    assert Access("other").cookie != access.cookie


def test_sessions_are_bounded_dropping_the_least_recently_seen():
    access = Access()
    first = access.new_session()
    rest = [access.new_session() for _ in range(MAX_SESSIONS - 1)]
    assert access.session_of(first.sid) is first  # seen again: now the most recent
    access.new_session()
    assert len(access.sessions) == MAX_SESSIONS
    assert access.session_of(first.sid) is first and access.session_of(rest[0].sid) is None
