"""`consensa serve`: the review in a real browser (headless Chromium through Playwright).

The server runs in a background thread (uvicorn on a free port of 127.0.0.1) over a
copy of the fixture run; every test drives it with clicks and typing, then checks
the review store and the exported files directly.
"""

from __future__ import annotations

import os
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import playwright.sync_api as playwright_sync
import pytest
import uvicorn
import yaml

from pipeline.review.agreement import review_status
from pipeline.review.model import load_run
from pipeline.review.store import ReviewStore
from pipeline.web import create_app
from pipeline.web.server import bind
from tests.review_helpers import segments

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

# Skipped only outside CI for a developer without root; in CI a missing browser fails.
pytestmark = pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"),
                                reason="needs Debian's chromium at /usr/bin/chromium "
                                "(`make test` installs it)")


# --- fixtures -------------------------------------------------------------------------

@contextmanager
def serving(run_folder: Path):
    """The review app of ``run_folder`` on a free port of 127.0.0.1, in a thread."""
    review = create_app(run_folder)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(review.asgi, log_level="warning", access_log=False,
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield review, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def served(review_run):
    run = review_run
    with ReviewStore(load_run(run), create=True) as store:
        store.set_panel(["ana", "ben"], ["dee"])
    with serving(run) as (review, base):
        yield run, review, base


# --- helpers --------------------------------------------------------------------------

def open_as(browser, review, base: str, name: str):
    """A new browser context: open the printed address, pick ``name``; its page."""
    ctx = browser.new_context()
    ctx.set_default_timeout(10_000)
    page = ctx.new_page()
    page.goto(review.url("127.0.0.1", int(base.rsplit(":", 1)[1])))
    assert page.url == f"{base}/login"  # the token is gone from the address bar
    page.check(f"input[name=name][value={name}]")
    follow(page, "button:has-text('Continue')")
    assert page.url == f"{base}/"
    assert page.locator("header .whoami").inner_text().startswith(name)
    return page


def follow(page, selector: str) -> None:
    """Click a link or a GET form's button and wait for the page it opens to load.

    A click returns once the navigation starts; ``count()`` does not wait, so a
    count read right after it can see a page with no rows yet.
    """
    with page.expect_navigation(wait_until="load"):
        page.click(selector)


def submit(page, selector: str) -> int:
    """Click a submit button; the status of the POST it sends."""
    with page.expect_response(lambda r: r.request.method == "POST") as info:
        page.click(selector)
    page.wait_for_load_state()
    return info.value.status


def decide(page, base: str, item: str, decision: str, as_: str = "position", **fields) -> int:
    kind, ident = item.split(":")
    page.goto(f"{base}/{kind}/{ident}")
    page.select_option("#decide select[name=decision]", decision)
    for name, value in fields.items():
        sel = f"#decide [name={name}]"
        if page.locator(sel).evaluate("e => e.tagName") == "SELECT":
            page.select_option(sel, str(value))
        else:
            page.fill(sel, str(value))
    return submit(page, f"#decide button[value={as_}]")


def flash(page) -> str:
    return page.locator(".flash").inner_text()


def row_state(page, item: str) -> str:
    return page.locator(f"tr[data-item='{item}'] .badge").first.inner_text()


def status_of(run: Path):
    with ReviewStore(load_run(run)) as store:
        return {i.item: i for i in review_status(store).items}


# --- the meeting ----------------------------------------------------------------------

def test_full_review_in_the_browser(browser, served):
    run, review, base = served
    ana = open_as(browser, review, base, "ana")
    ben = open_as(browser, review, base, "ben")
    dee = open_as(browser, review, base, "dee")

    # the overview: both domains, three themes, nobody has judged yet
    assert ana.locator("section.domain").count() == 2
    assert [row_state(ana, f"theme:{t}") for t in (0, 1, 2)] == ["not yet judged"] * 3
    assert "Round 1 is open" in ana.locator(".summary").inner_text()

    # each judge records their positions
    for page in (ana, ben):
        for d in (0, 1):
            assert decide(page, base, f"domain:{d}", "accept") == 303
            assert "Saved your position" in flash(page)
    assert decide(ana, base, "theme:0", "rename", new_name="Training was silent",
                  core_idea="Training never prepared therapists for their own tears.") == 303
    assert decide(ben, base, "theme:0", "rename", new_name="training  was silent") == 303
    assert decide(ana, base, "theme:1", "accept") == 303
    assert decide(ben, base, "theme:1", "accept") == 303
    assert decide(ana, base, "theme:2", "merge", target=1,
                  comment="client reactions are support too") == 303
    assert 'merge into theme 1 "supervisor' in flash(ana)
    assert decide(ben, base, "theme:2", "accept") == 303

    # agreement and the dispute, seen by the other judge
    ben.goto(f"{base}/")
    assert row_state(ben, "theme:0") == "agreed" and row_state(ben, "theme:1") == "agreed"
    assert row_state(ben, "theme:2") == "disputed"
    ben.select_option("select[name=status]", "disputed")
    follow(ben, "button:has-text('Filter')")
    assert ben.locator("tr[data-item^='theme:']").count() == 1
    assert ben.locator("tr[data-item='theme:2']").count() == 1

    # the auditor comments; the judges see it beside the positions side by side
    dee.goto(f"{base}/theme/2")
    assert dee.locator("#decide").count() == 0  # auditors comment, judges decide
    dee.fill(".comment-form textarea[name=comment]", "Client reactions are not supervision.")
    assert submit(dee, ".comment-form button") == 303
    ana.goto(f"{base}/theme/2")
    assert "Client reactions are not supervision." in ana.locator(".comments").inner_text()
    assert ana.locator(".comment-form").count() == 0
    assert "merge into theme 1" in ana.locator("tr[data-judge=ana] td.decision").inner_text()
    ben.goto(f"{base}/theme/2")
    assert ben.locator("tr[data-judge=ben] td.decision").inner_text() == "accept"

    # the quotes show case, speaker, question, and the turns around them on demand
    quote = ana.locator("li.quote").first
    assert "case case0" in quote.inner_text() and quote.locator(".question").count() == 1
    details = quote.locator("details.context")
    assert not details.evaluate("d => d.open")
    details.locator("summary").click()
    assert details.locator("li.turn").count() >= 2
    assert details.locator("li.turn.own mark").inner_text().strip() in quote.locator(
        "blockquote").inner_text()
    assert details.locator("li.turn.interviewer").count() >= 1  # read from the transcripts

    # resolve: ana records the consensus; ben's page, opened before, is now stale
    follow(ana, "tr[data-judge=ana] a:has-text('start from this')")
    assert ana.locator("#decide select[name=decision]").input_value() == "merge"
    assert submit(ana, "#decide button[value=consensus]") == 303
    assert "Saved the consensus" in flash(ana)
    ben.select_option("#decide select[name=decision]", "accept")
    ben.fill("#decide textarea[name=comment]", "keep it apart")
    assert submit(ben, "#decide button[value=consensus]") == 409
    box = ben.locator(".error-box.stale").inner_text()
    assert "has changed since you opened it" in box and "ana" in box
    assert ben.locator("#decide textarea[name=comment]").input_value() == "keep it apart"
    assert "merge into theme 1" in ben.locator("tr.consensus-row").inner_text()
    cons = status_of(run)["theme:2"]
    assert cons.state == "resolved" and cons.consensus.decision == "merge" and cons.by == "ana"

    # undo the last consensus decision, then record it again
    ana.goto(f"{base}/log")
    assert "theme 2" in ana.locator("form.undo").inner_text()
    assert submit(ana, "form.undo button") == 303
    assert "Undone" in flash(ana)
    assert status_of(run)["theme:2"].state == "disputed"
    assert decide(ana, base, "theme:2", "merge", as_="consensus", target=1) == 303

    # search for what theme 1 missed, and move it in
    ana.goto(f"{base}/search?q=learn+about+tears&in=0&into=1")
    assert ana.locator("li.quote").count() >= 4
    assert ana.locator("li.quote mark").first.inner_text().lower() in ("learn", "about", "tears")
    moved = ana.locator("li.quote").first.get_attribute("data-segment")
    ana.locator("li.quote input[name=segments]").first.check()
    # no target is preselected, not even the theme searched for: a move is chosen
    assert ana.locator("select[name=move_to]").input_value() == ""
    assert submit(ana, "#move button[value=consensus]") == 400
    assert "Choose the theme to move the segments to" in ana.content()
    ana.go_back()
    ana.locator("li.quote input[name=segments]").first.check()
    ana.select_option("select[name=move_to]", "1")
    assert submit(ana, "#move button[value=consensus]") == 303
    assert "1 segment(s), move to theme 1" in flash(ana)

    ana.goto(f"{base}/")
    assert "Every item of round 1 is agreed" in ana.locator(".summary").inner_text()
    assert row_state(ana, f"segment:{moved}") == "resolved"

    # export: the final codebook, downloaded from the export page
    follow(ana, "nav a:has-text('Export')")
    assert submit(ana, "#write-codebook") == 303
    assert "Final codebook written: 2 categories" in flash(ana)
    with ana.expect_download() as dl:
        ana.click("a[href='/download/review/codebook.yaml']")
    cb = yaml.safe_load(Path(dl.value.path()).read_text(encoding="utf-8"))
    assert cb == yaml.safe_load((run / "review" / "codebook.yaml").read_text(encoding="utf-8"))
    cats = {c["name"]: c for d in cb["domains"] for c in d["categories"]}
    seg = segments(run)
    assert set(cats) == {"Training was silent", "supervisor / helped / session"}
    training = cats["Training was silent"]
    assert training["core_idea"].startswith("Training never prepared")
    assert training["core_idea_source"] == "judges"
    assert training["n_segments"] == int((seg["theme"] == 0).sum()) - 1
    support = cats["supervisor / helped / session"]
    assert sorted(support["from_themes"]) == [1, 2]
    assert support["n_segments"] == int(seg["theme"].isin([1, 2]).sum()) + 1
    assert (run / "review" / "cqr_table.md").is_file()
    assert submit(ana, "#export-qdc") == 303  # REFI-QDA, of the agreed codebook
    assert "REFI-QDA file written" in flash(ana) and "the agreed codebook" in flash(ana)
    [qdc] = (run / "export").glob("*-agreed.qdc")
    assert 'name="Training was silent"' in qdc.read_text(encoding="utf-8")

    # the store holds it all, and every action is in the audit log
    with ReviewStore(load_run(run)) as store:
        pos = store.positions()
        assert pos["theme:0"]["ana"].new_name == "Training was silent"
        assert pos["theme:2"]["ben"].decision == "accept"
        assert store.consensus()["theme:2"].target == "1"
        assert store.consensus()[f"segment:{moved}"].target == "1"
        log = store.audit_log()
    actions = [r["action"] for r in log]
    assert {"panel", "position", "consensus", "consensus undo", "audit comment"} <= set(actions)
    assert actions.count("consensus") == 3  # merge, merge again, the move; ben's was refused
    assert all(r["who"] in ("ana", "ben", "dee") for r in log if r["action"] != "panel")
    for page in (ana, ben, dee):
        page.context.close()


def test_split_and_the_same_validation_as_the_workbooks(browser, served):
    run, review, base = served
    ana = open_as(browser, review, base, "ana")
    # a rename without a name is refused, and the entries stay in the form
    assert decide(ana, base, "theme:0", "rename", comment="needs a better name") == 400
    assert "rename needs a new name" in ana.locator(".error-box").inner_text()
    assert ana.locator("#decide select[name=decision]").input_value() == "rename"
    assert ana.locator("#decide textarea[name=comment]").input_value() == "needs a better name"
    # a split with no segment ticked is refused
    assert decide(ana, base, "theme:0", "split") == 400
    assert "split needs the ids" in ana.locator(".error-box").inner_text()
    # a split of the ticked segments
    ana.goto(f"{base}/theme/0")
    seg = segments(run)
    chosen = seg[(seg["theme"] == 0) & seg["case_id"].isin(["case01", "case02"])]["segment_id"]
    for sid in chosen:
        ana.check(f"li.quote[data-segment='{sid}'] input[name=segments]")
    ana.select_option("#decide select[name=decision]", "split")
    ana.fill("#decide input[name=new_name]", "Learning on the job")
    assert submit(ana, "#decide button[value=position]") == 303
    assert f'split off {len(chosen)} segment(s) as "Learning on the job"' in flash(ana)
    # merging into itself is not offered; a reassign to the other domain goes through
    assert ana.locator("#decide select[name=target] option[value='1']").count() == 1
    assert ana.locator("#decide select[name=target] option[value='0']").count() == 0
    assert decide(ana, base, "theme:1", "reassign", as_="consensus", domain=1) == 303
    with ReviewStore(load_run(run)) as store:
        d = store.positions()["theme:0"]["ana"]
        assert d.decision == "split" and set(d.segments) == set(chosen)
        assert d.new_name == "Learning on the job"
        assert store.consensus()["theme:1"].domain == "1"
        assert not store.positions().get("theme:1")
    ana.context.close()


def test_no_token_no_csrf_no_entry(browser, served):
    run, review, base = served
    # without the token (or with another one): 403, on every page
    ctx = browser.new_context()
    page = ctx.new_page()
    for path in ("/", "/theme/0", "/login", "/static/app.css", "/?token=not-the-token"):
        resp = page.goto(base + path)
        assert resp.status == 403, path
        assert "not allowed" in page.locator("h1").inner_text().lower()
    assert "access token" in page.locator("main").inner_text() or "token" in page.content()
    resp = page.request.post(f"{base}/decide", form={"item": "theme:0", "as": "position",
                                                      "decision": "accept"})
    assert resp.status == 403
    ctx.close()

    ana = open_as(browser, review, base, "ana")
    cookie = next(c for c in ana.context.cookies() if c["name"] == review.cookie)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    resp = ana.goto(f"{base}/theme/0")
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    assert "<script" not in ana.content()

    # a form without the CSRF token, or with another one: 403, nothing saved
    ana.select_option("#decide select[name=decision]", "accept")
    ana.locator("#decide input[name=csrf]").evaluate("e => e.remove()")
    assert submit(ana, "#decide button[value=position]") == 403
    assert "CSRF" in ana.locator("main").inner_text()
    ana.goto(f"{base}/theme/0")
    ana.locator("#decide input[name=csrf]").evaluate("e => e.value = 'forged'")
    assert submit(ana, "#decide button[value=consensus]") == 403
    ana.goto(f"{base}/theme/0")
    csrf = ana.locator("#decide input[name=csrf]").first.get_attribute("value")
    # a form posted from another site is refused even with the token
    resp = ana.request.post(f"{base}/decide", headers={"Origin": "http://example.org"},
                            form={"csrf": "x", "item": "theme:0", "as": "position",
                                  "decision": "accept"})
    assert resp.status == 403
    with ReviewStore(load_run(run)) as store:
        assert store.positions() == {} and store.consensus() == {}

    # an auditor cannot record a decision, even with a valid form
    dee = open_as(browser, review, base, "dee")
    dee.goto(f"{base}/theme/0")
    dee_csrf = dee.locator("input[name=csrf]").first.get_attribute("value")
    resp = dee.request.post(f"{base}/decide", form={"csrf": dee_csrf, "item": "theme:0",
                                                    "as": "position", "decision": "accept",
                                                    "v_mine": "0", "v_item": "0"})
    assert resp.status == 403 and "Only a judge" in resp.text()
    assert csrf != dee_csrf  # one token per session
    with ReviewStore(load_run(run)) as store:
        assert store.positions() == {}
    ana.context.close()
    dee.context.close()


def test_switch_person_and_unknown_pages(browser, served):
    _, review, base = served
    ana = open_as(browser, review, base, "ana")
    resp = ana.goto(f"{base}/theme/42")
    assert resp.status == 404 and "no theme '42'" in ana.locator("main").inner_text()
    follow(ana, "button:has-text('switch person')")
    assert ana.url == f"{base}/login"
    ana.check("input[name=name][value=ben]")
    follow(ana, "button:has-text('Continue')")
    assert ana.locator("header .whoami").inner_text().startswith("ben")
    ana.goto(f"{base}/theme/1")
    assert re.search(r"Save as my position \(ben\)", ana.locator("#decide").inner_text())
    ana.context.close()


def test_forms_start_empty_and_refuse_a_save_without_a_choice(served, browser):
    run, review, base = served
    ana = open_as(browser, review, base, "ana")
    ana.goto(f"{base}/theme/0")
    assert ana.locator("#decide select[name=decision]").input_value() == ""
    assert ana.locator("select[name=move_to]").input_value() == ""
    assert submit(ana, "#decide button[value=position]") == 400
    assert "Choose a decision first" in ana.locator(".error-box").inner_text()
    # ticked segments without a target: refused, nothing moved to theme 0's neighbour
    ana.locator("li.quote input[name=segments]").first.check()
    assert submit(ana, ".bulk button[value=consensus]") == 400
    assert "Choose the theme to move the segments to" in ana.content()
    ana.goto(f"{base}/export")
    assert ana.locator("#write-codebook").is_disabled()
    assert "still open" in ana.locator("#why-not-final").inner_text()
    with ReviewStore(load_run(run)) as store:
        assert store.positions() == {} and store.consensus() == {}
    ana.context.close()
