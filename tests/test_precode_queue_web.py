"""The pre-coding queue in the browser: `consensa serve PRECODE_OUT` serves the review of
the codebook's run with a Queue page, and a choice made there is stored exactly as
`consensa precode import` stores one (in process, without a browser)."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import yaml

from pipeline.cli import main
from pipeline.precode import CHOICE_ACTION, NONE, QUEUE_HEAD, stored_choices
from pipeline.review.store import db_path
from pipeline.web import pages
from pipeline.web.server import Listening, listen
from tests.review_helpers import agree_and_apply, set_meta
from tests.study import write_study
from tests.test_review_rounds import BASE, Web, _select, _selected

SCRIPT = "<script>alert('queue')</script>"


@pytest.fixture(scope="module")
def precoded(study_run, tmp_path_factory) -> Path:
    """The study run with an agreed codebook, and two new interviews pre-coded with it at
    threshold 1 (every segment queued); one answer holds markup."""
    root = tmp_path_factory.mktemp("queue-web")
    run = Path(shutil.copytree(study_run(), root / "run"))
    codebook = agree_and_apply(run)
    new = write_study(root / "new", n_cases=2)
    case = new / "case01.txt"
    case.write_text(case.read_text(encoding="utf-8") + "\nInterviewer: Anything else?\n\n"
                    f"Therapist: {SCRIPT} My training never said a word about crying.\n",
                    encoding="utf-8")
    assert main(["precode", str(codebook), "--transcripts", str(new), "--threshold", "1",
                 "--out", str(root / "pre"), "-q"]) == 0
    return root


@pytest.fixture()
def batch(precoded, tmp_path) -> tuple[Path, Path]:
    """A fresh copy of the run and of its pre-coding (their paths rewritten): (run, out)."""
    run = Path(shutil.copytree(precoded / "run", tmp_path / "run"))
    out = Path(shutil.copytree(precoded / "pre", tmp_path / "pre"))
    codebook = run / "review" / "codebook.yaml"
    codebook.write_text(codebook.read_text(encoding="utf-8").replace(
        str((precoded / "run").resolve()), str(run.resolve())), encoding="utf-8")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    manifest["codebook"] = str(codebook.resolve())
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    set_meta(out / "queue.xlsx", "codebook", str(codebook.resolve()))
    set_meta(out / "queue.xlsx", "precode_folder", str(out.resolve()))
    return run, out


def _queue(out: Path) -> pd.DataFrame:
    seg = pd.read_parquet(out / "segments.parquet")
    return seg[seg["needs_human"]].sort_values("confidence", kind="stable").reset_index(drop=True)


def _categories(run: Path) -> list[int]:
    cb = yaml.safe_load((run / "review" / "codebook.yaml").read_text(encoding="utf-8"))
    return [int(c["id"]) for d in cb["domains"] for c in d["categories"]]


def _choice_rows(run: Path) -> list[tuple]:
    con = sqlite3.connect(db_path(run))
    try:
        return con.execute("SELECT who, action, item, value, import_id FROM audit_log "
                           "WHERE action=? ORDER BY id", (CHOICE_ACTION,)).fetchall()
    finally:
        con.close()


def test_the_queue_page_lists_queued_segments_with_three_suggestions(batch):
    run, out = batch
    queue = _queue(out)
    assert len(queue) >= 10
    web = Web(out, "ana")
    assert web.review.run.folder.resolve() == run.resolve()
    assert '<a href="/queue"' in web.get("/")          # the nav links to it
    page = web.get("/queue?show=all")
    batch_name = json.loads((out / "manifest.json").read_text())["batch"]
    assert batch_name in page
    assert f"<b>{len(queue)}</b> left to code" in page and "<b>0</b> coded" in page
    listed = re.findall(r'data-segment="([^"]+)"', page)
    assert listed == queue["segment_id"].tolist()     # least confident first, all on one page
    first = page.split(f'data-segment="{listed[0]}"', 1)[1].split("</li>", 1)[0]
    r = queue.iloc[0]
    assert f"case {r['case_id']}" in first
    for k in (1, 2, 3):
        cid = int(r[f"top{k}_category_id"])
        label = "none of these" if cid == NONE else f"{cid}: {r[f'top{k}_category']}"
        assert f"<td>{label}</td><td class=\"num\">{r[f'top{k}_confidence']:.2f}</td>" in first
    # the category starts on no choice; every category of the codebook and "none" offered
    choice = _select(first, "category")
    assert _selected(choice) == [""]
    assert set(re.findall(r'<option value="([^"]+)"', choice)) == \
        {str(c) for c in _categories(run)} | {"none"}


def test_transcript_markup_on_the_queue_page_is_text(batch):
    run, out = batch
    page = Web(out, "ana").get("/queue?show=all")
    assert "&lt;script&gt;alert(&#39;queue&#39;)&lt;/script&gt;" in page
    assert "<script>" not in page


def test_a_choice_on_the_page_is_stored_as_an_imported_one_and_retrains(batch, tmp_path):
    run, out = batch
    queue = _queue(out)
    cats = _categories(run)
    web = Web(out, "ana")
    page = web.get("/queue")
    r = web.post("/queue/choose", _page=page, segment=queue["segment_id"][0],
                 category=str(cats[1]), comment="fits, though short")
    assert r.status_code == 303
    assert r.headers["location"] == "/queue?show=left&page=1#q-2"   # the next undone row
    r = web.post("/queue/choose", _page=page, segment=queue["segment_id"][3], category="none")
    assert r.headers["location"] == "/queue?show=left&page=1#q-5"

    # ben codes another segment in queue.xlsx and imports it
    wb = openpyxl.load_workbook(out / "queue.xlsx")
    ws = wb["queue"]
    row = next(c.row for c in ws["A"] if c.value == queue["segment_id"][1])
    ws.cell(row=row, column=QUEUE_HEAD.index("code as category") + 1, value=cats[0])
    wb.save(tmp_path / "ben.xlsx")
    assert main(["precode", "import", str(tmp_path / "ben.xlsx"), "--by", "ben"]) == 0

    name = json.loads((out / "manifest.json").read_text())["batch"]
    rows = _choice_rows(run)
    assert [(w, i) for w, _, i, _, _ in rows] == [
        ("ana", f"precode:{name}/{queue['segment_id'][0]}"),
        ("ana", f"precode:{name}/{queue['segment_id'][3]}"),
        ("ben", f"precode:{name}/{queue['segment_id'][1]}")]
    web_value, imported = json.loads(rows[0][3]), json.loads(rows[2][3])
    assert set(web_value) == set(imported)            # the same JSON, whichever way it came
    assert web_value["batch"] == imported["batch"] == name
    assert web_value["text"] == queue["text"][0] and web_value["comment"] == "fits, though short"
    assert web_value["source"] == "web form (ana)" and all(r[4] is not None for r in rows)

    got = stored_choices(run).set_index("segment_id")["label"].to_dict()
    assert got == {queue["segment_id"][0]: cats[1], queue["segment_id"][3]: NONE,
                   queue["segment_id"][1]: cats[0]}

    # the page shows what is stored, and the counts
    page = web.get("/queue?show=all")
    assert f"<b>{len(queue) - 3}</b> left to code" in page and "<b>3</b> coded" in page
    assert f'data-who="ben"><b>ben</b>: {cats[0]}:' in page
    assert "Stored your choice" in page
    left = re.findall(r'data-segment="([^"]+)"', web.get("/queue"))
    assert len(left) == len(queue) - 3 and queue["segment_id"][0] not in left

    # --retrain learns from the web choices as from imported ones
    again = tmp_path / "again"
    codebook = run / "review" / "codebook.yaml"
    new = write_study(tmp_path / "next", n_cases=1)
    assert main(["precode", str(codebook), "--transcripts", str(new), "--retrain",
                 "--out", str(again), "-q"]) == 0
    assert json.loads((again / "manifest.json").read_text())["retrain"] == \
        {"enabled": True, "n_choices": 3, "n_disagreed": 0, "n_not_in_codebook": 0,
         "n_followed": 0, "n_unread": 0}


def test_retraining_takes_one_code_per_segment_and_leaves_out_a_split_one(batch):
    run, out = batch
    ids, cats = _queue(out)["segment_id"].tolist(), _categories(run)
    for who, picks in (("ana", (cats[0], cats[0], "none")), ("ben", (cats[0], cats[1], "none"))):
        web = Web(out, who)
        page = web.get("/queue")
        for sid, cat in zip(ids, picks, strict=False):
            assert web.post("/queue/choose", _page=page, segment=sid,
                            category=str(cat)).status_code == 303
    got = stored_choices(run)
    # agreed twice: one training row each, not two; split 1-1: no row, and counted
    assert got.set_index("segment_id")["label"].to_dict() == {ids[0]: cats[0], ids[2]: NONE}
    assert got.attrs == {"n_disagreed": 1, "n_people_choices": 6, "n_not_in_codebook": 0,
                         "n_unread": 0, "unread": {}, "n_followed": 0}
    # the queue page says which segment they split on, and counts it
    page = Web(out, "ana").get("/queue?show=all")
    assert re.search(r'<li class="split-count"><b>1</b> where the judges chose differently',
                     page)
    row = re.search(rf'data-segment="{re.escape(ids[1])}".*?</form>', page, re.S).group(0)
    assert "The judges chose differently here" in row
    assert page.count("The judges chose differently here") == 1


def test_a_bad_choice_is_refused_and_nothing_is_stored(batch):
    run, out = batch
    sid = _queue(out)["segment_id"][0]
    web = Web(out, "ana")
    page = web.get("/queue")
    r = web.post("/queue/choose", _page=page, segment=sid, category="9999")
    assert r.status_code == 400 and "9999 is not a category of the codebook" in r.text
    assert "nothing was stored" in r.text
    r = web.post("/queue/choose", _page=page, segment=sid, category="")
    assert r.status_code == 400 and "Choose a category" in r.text
    r = web.post("/queue/choose", _page=page, segment=sid, category="Training")
    assert r.status_code == 400 and "is not a category id" in r.text
    r = web.post("/queue/choose", _page=page, segment="case99:1:0", category="none")
    assert r.status_code == 400 and "not a queued segment" in r.text
    # without the session's CSRF token, or from another site
    r = web.client.post("/queue/choose", data={"segment": sid, "category": "none",
                                               "csrf": "forged"}, headers={"Origin": BASE})
    assert r.status_code == 403
    r = web.client.post("/queue/choose", data={"segment": sid, "category": "none",
                                               "csrf": web.csrf(page)},
                        headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert _choice_rows(run) == [] and stored_choices(run).empty


def test_the_queue_pages_through_hundreds_and_returns_to_the_next_undone(batch, monkeypatch):
    run, out = batch
    monkeypatch.setattr(pages, "QUEUE_PAGE_SIZE", 4)
    ids = _queue(out)["segment_id"].tolist()
    web = Web(out, "ana")
    page = web.get("/queue?show=all&page=2")
    assert re.findall(r'data-segment="([^"]+)"', page) == ids[4:8]
    assert 'href="/queue?show=all&amp;page=1" rel="prev"' in page
    assert 'href="/queue?show=all&amp;page=3" rel="next"' in page
    assert re.findall(r'data-segment="([^"]+)"', web.get("/queue?page=999"))  # the last page
    r = web.post("/queue/choose", _page=page, segment=ids[3], category="none", show="all")
    # the next undone row is #5: the second page of all segments
    assert r.headers["location"] == "/queue?show=all&page=2#q-5"
    r = web.post("/queue/choose", _page=page, segment=ids[4], category="none")
    # left to code: 1, 2, 3, 6, ...: #6 is the fourth, on the first page
    assert r.headers["location"] == "/queue?show=left&page=1#q-6"
    assert 'id="q-6"' in web.get("/queue?show=left&page=1")


def test_serve_finds_the_run_of_a_precode_folder(batch, monkeypatch, capsys):
    run, out = batch
    app = listen(out)
    try:
        assert app.review.run.folder.resolve() == run.resolve()
        assert app.store_path == db_path(app.review.run.folder)
        assert app.review.queue is not None and app.review.queue.folder == out
    finally:
        app.sock.close()
    # the command says which batch's queue it serves (the server itself is not started)
    monkeypatch.setattr(Listening, "run", lambda self: None)
    assert main(["serve", str(out)]) == 0
    said = capsys.readouterr().out
    batch_name = json.loads((out / "manifest.json").read_text())["batch"]
    assert f"pre-coding queue of batch {batch_name}" in said
    assert f"{len(_queue(out))} of {len(_queue(out))} queued segment(s) left" in said
    # a plain run is served as before: no queue, and /queue says so
    web = Web(run, "ana")
    assert '<a href="/queue"' not in web.get("/")
    assert web.client.get("/queue").status_code == 404


def test_a_form_body_over_the_limit_or_of_no_length_is_not_read(batch, monkeypatch):
    import pipeline.web.security as security

    run, out = batch
    sid = _queue(out)["segment_id"][0]
    web = Web(out, "ana")
    page = web.get("/queue")
    monkeypatch.setattr(security, "MAX_FORM_BYTES", 200)
    r = web.post("/queue/choose", _page=page, segment=sid, category="none", comment="x" * 300)
    assert r.status_code == 413 and "at most 200 are read" in r.text
    body = f"csrf={web.csrf(page)}&segment={sid}&category=none".encode()

    def chunks():                                   # no Content-Length: sent chunked
        yield body

    r = web.client.post("/queue/choose", content=chunks(), headers={
        "Origin": BASE, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 411
    assert _choice_rows(run) == [] and stored_choices(run).empty
    monkeypatch.setattr(security, "MAX_FORM_BYTES", 10_000)
    r = web.post("/queue/choose", _page=page, segment=sid, category="none", comment="fits")
    assert r.status_code == 303 and len(stored_choices(run)) == 1


def test_a_study_folder_moved_whole_still_serves_and_imports_its_queue(precoded, tmp_path):
    """The run (with its codebook) and its pre-coding copied elsewhere together: the
    copies find each other, not the originals, though those are still in place."""
    from pipeline.precode import import_queue, open_batch

    moved = Path(shutil.copytree(precoded, tmp_path / "moved to a shared drive"))
    batch = open_batch(moved / "pre")
    assert batch.codebook == (moved / "run" / "review" / "codebook.yaml").resolve()
    assert batch.run_folder == (moved / "run").resolve()
    done = import_queue(moved / "pre" / "queue.xlsx", by="ana")
    assert (done.stored, done.run_folder) == (0, (moved / "run").resolve())
    app = listen(moved / "pre")
    try:
        assert app.review.run.folder.resolve() == (moved / "run").resolve()
    finally:
        app.sock.close()


def test_an_auditor_cannot_code_a_queued_segment(batch):
    """Coding is the judges' part; the auditor comments. An auditor's choice is
    refused and nothing is stored."""
    from pipeline.review.model import load_run
    from pipeline.review.store import ReviewStore

    run, out = batch
    with ReviewStore(load_run(run), create=True) as s:
        s.set_panel(["ana", "ben"], ["dee"])
    sid = _queue(out)["segment_id"][0]
    web = Web(out, "dee")
    page = web.get("/queue")
    assert 'action="/queue/choose"' not in page and "The judges code the queue" in page
    r = web.post("/queue/choose", _page=page, segment=sid, category="none")
    assert r.status_code == 403 and "Only a judge can do this" in r.text
    assert _choice_rows(run) == [] and stored_choices(run).empty
    judge = Web(out, "ana")
    r = judge.post("/queue/choose", _page=judge.get("/queue"), segment=sid, category="none")
    assert r.status_code == 303 and len(_choice_rows(run)) == 1


def test_a_stored_choice_shows_the_category_it_is_read_as_once_the_codebook_changed(batch):
    """An old batch whose codebook was applied again since (its copy not kept): a stored
    choice names its category by id, and that id may be another category now. The page
    reads it as `consensa precode` does (the category it became), or says it is not read
    and why, never naming the category that has its id now."""
    from pipeline.precode import GONE, open_batch

    run, out = batch
    ids, cats = _queue(out)["segment_id"].tolist(), _categories(run)
    first, second, third = cats[:3]
    codebook = run / "review" / "codebook.yaml"
    cb = yaml.safe_load(codebook.read_text(encoding="utf-8"))
    name = {int(c["id"]): c["name"] for d in cb["domains"] for c in d["categories"]}
    web = Web(out, "ana")
    page = web.get("/queue")
    for sid, cid in zip(ids, (first, second, third), strict=False):
        assert web.post("/queue/choose", _page=page, segment=sid,
                        category=str(cid)).status_code == 303

    # applied again: ``first`` and ``second`` swap ids, ``third`` rejected; no kept copy
    (out / "codebook.yaml").unlink()
    for d in cb["domains"]:
        for c in d["categories"]:
            c["id"] = {first: second, second: first}.get(int(c["id"]), c["id"])
        d["categories"] = [c for c in d["categories"] if c["name"] != name[third]]
    cb.setdefault("review", {})["applied_at"] = "2999-01-01T00:00:00+00:00"
    codebook.write_text(yaml.safe_dump(cb, allow_unicode=True, sort_keys=False),
                        encoding="utf-8")
    assert open_batch(out).codebook_changed

    page = Web(out, "ana").get("/queue?show=all")

    def said(sid: str) -> str:
        row = page.split(f'data-segment="{sid}"', 1)[1].split("</li>", 1)[0]
        return re.search(r'data-who="ana"><b>ana</b>: (.*?)</span>', row).group(1)

    assert said(ids[0]) == f"{second}: {name[first]}"
    assert said(ids[1]) == f"{first}: {name[second]}"
    gone = said(ids[2])
    assert name[third] in gone and "not read" in gone and GONE.split(" (")[0] in gone
    assert 'class="choice unread" data-who="ana"' in page
    # its segment goes back to the queue, as the next pre-coding sends it back, until
    # ana chooses again
    n = len(ids)
    assert f"<b>{n - 2}</b> left to code" in page and "<b>2</b> coded" in page
    web = Web(out, "ana")
    left = web.get("/queue")
    assert ids[2] in re.findall(r'data-segment="([^"]+)"', left)
    assert web.post("/queue/choose", _page=left, segment=ids[2],
                    category=str(first)).status_code == 303
    page = web.get("/queue?show=all")
    assert "<b>3</b> coded" in page and "not read" not in page
