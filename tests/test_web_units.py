"""The parts under `consensa serve` without a browser: versions and undo in the review
store, the turns around a segment, and the `serve` command itself."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.review.agreement import review_status
from pipeline.review.model import Decision, ReviewError, load_run
from pipeline.review.store import ReviewStore, StaleError
from pipeline.runfolder import RunFolder
from pipeline.web.context import Context
from pipeline.web.server import is_loopback

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def store(review_run):
    run = review_run
    with ReviewStore(load_run(run), create=True) as s:
        s.set_panel(["ana", "ben"], ["dee"])
        yield s


def test_versions_refuse_a_stale_write(store):
    assert store.item_version("theme:1") == 0
    store.record_positions([("ana", [Decision("theme:1", "accept", source="t")])])
    v_ana = store.item_version("theme:1", judge="ana")
    v_item = store.item_version("theme:1")
    assert v_ana == v_item > 0 and store.item_version("theme:1", judge="ben") == 0
    # ben's own position is not blocked by ana's
    store.record_positions([("ben", [Decision("theme:1", "reject", source="t")])],
                           expect={("ben", "theme:1"): 0})
    assert store.item_version("theme:1", judge="ana") == v_ana
    # ana saves on the strength of an old page: refused, nothing written
    n = len(store.audit_log())
    with pytest.raises(StaleError, match="changed since you opened it"):
        store.record_positions([("ana", [Decision("theme:1", "rename", new_name="x",
                                                  source="t")])],
                               expect={("ana", "theme:1"): v_ana - 1})
    with pytest.raises(StaleError, match=r"ben: position"):
        store.resolve([Decision("theme:1", "accept")], by="ana", expect={"theme:1": v_item})
    assert len(store.audit_log()) == n
    assert store.positions()["theme:1"]["ana"].decision == "accept"
    assert store.consensus() == {}
    store.resolve([Decision("theme:1", "accept")], by="ana",
                  expect={"theme:1": store.item_version("theme:1")})
    assert store.item_versions()["theme:1"] == store.item_version("theme:1")
    assert store.item_versions(judge="ben") == {"theme:1": store.item_version("theme:1", "ben")}


def test_undo_takes_back_consensus_decisions_in_turn(store):
    with pytest.raises(ReviewError, match="no consensus decision to undo"):
        store.undo_consensus("ana")
    store.resolve([Decision("theme:2", "merge", target="1")], by="ana")
    store.resolve([Decision("theme:2", "accept", core_idea="kept apart")], by="ben")
    store.resolve([Decision("theme:0", "reject")], by="ana")
    assert store.undo_target()["item"] == "theme:0"
    with pytest.raises(StaleError, match="not the one you meant to undo"):
        store.undo_consensus("ana", expect=store.undo_target()["id"] - 1)
    assert set(store.consensus()) == {"theme:0", "theme:2"}
    assert store.undo_consensus("ben", expect=store.undo_target()["id"])["item"] == "theme:0"
    assert set(store.consensus()) == {"theme:2"}
    assert store.undo_consensus("ben")["who"] == "ben"  # ben's accept of theme 2
    assert store.consensus()["theme:2"].target == "1"
    assert store.consensus_by()["theme:2"] == "ana"  # the earlier decision, by its maker
    store.undo_consensus("ana")
    assert store.consensus() == {} and store.undo_target() is None
    log = store.audit_log()
    undos = [r for r in log if r["action"] == "consensus undo"]
    assert [r["who"] for r in undos] == ["ben", "ben", "ana"]
    assert json.loads(undos[0]["previous"])["decision"] == "reject" and undos[0]["value"] is None
    assert json.loads(undos[1]["value"])["target"] == "1"
    # a new decision after an undo can be undone again; status follows the store
    store.resolve([Decision("theme:2", "merge", target="1")], by="ana")
    assert {i.item: i.state for i in review_status(store).items}["theme:2"] == "resolved"
    assert store.undo_target()["item"] == "theme:2"


def test_context_from_the_saved_turns_and_from_segments(store, tmp_path):
    sid = store.run.segments[store.run.segments["theme"] == 0]["segment_id"].iloc[3]
    # the transcripts gone: the turns the run saved still give the context
    moved = RunFolder(shutil.copytree(store.run.folder, tmp_path / "moved"))
    moved.write_manifest(dict(moved.manifest, inputs=[
        dict(i, path=str(tmp_path / "gone.txt")) for i in moved.manifest["inputs"]]))
    run = load_run(moved.path)
    ctx = Context(run)
    turns = ctx.around(sid)
    assert ctx.from_turns == set(run.segments["case_id"])
    own = [t for t in turns if t.own]
    assert len(own) == 1 and any(p.mark for p in own[0].pieces)
    assert "".join(p.text for p in own[0].pieces if p.mark) == \
        run.segments.set_index("segment_id").at[sid, "text"]
    assert {t.role for t in turns} >= {"interviewer", "participant"}
    assert len(turns) == 5  # two before, two after
    # a folder written before the turns were saved: rebuilt from the run's segments
    old = Path(shutil.copytree(run.folder, tmp_path / "old"))
    (old / "turns.parquet").unlink()
    ctx2 = Context(load_run(old))
    turns2 = ctx2.around(sid)
    assert ctx2.from_turns == set()
    assert any(t.own and any(p.mark for p in t.pieces) for t in turns2)
    assert any(t.speaker == "(question)" for t in turns2)
    assert ctx2.around("no-such-segment") == []
    # a saved turn that no longer holds its segment's text is not shown for that case
    bad = Path(shutil.copytree(run.folder, tmp_path / "bad"))
    saved = pd.read_parquet(bad / "turns.parquet")
    case = run.segments.set_index("segment_id").at[sid, "case_id"]
    saved.loc[saved["case_id"] == case, "text"] = saved["text"].str.upper()
    saved.to_parquet(bad / "turns.parquet", index=False)
    ctx3 = Context(load_run(bad))
    assert case not in ctx3.from_turns and ctx3.from_turns == set(run.segments["case_id"]) - {case}


def test_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")


def test_serve_command_prints_an_address_with_a_token(review_run, capsys):
    run = review_run
    # a run without a review and no panel given: a clear error, no server
    assert main(["serve", str(run)]) == 2
    assert "no review yet" in capsys.readouterr().err
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", str(run),
                             "--judges", "ana,ben", "--auditor", "dee"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "open: " in line:
                break
        url = lines[-1].split("open: ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:") and "?token=" in url
        assert "panel: ana (judge), ben (judge), dee (auditor)" in "".join(lines)
        assert "WARNING" not in "".join(lines)
        base = url.split("/?", 1)[0]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "/", timeout=10)
        assert refused.value.code == 403
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "x", timeout=10)
        assert refused.value.code == 403

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as moved:
            opener.open(url, timeout=10)
        assert moved.value.code == 303 and moved.value.headers["location"] == "/"
        cookie = moved.value.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with ReviewStore(load_run(run)) as store:
        assert store.panel() == {"ana": "judge", "ben": "judge", "dee": "auditor"}
