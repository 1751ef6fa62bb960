"""Importing review workbooks: every bad row is named (file, sheet, row); all or nothing;
an import killed half-way leaves no trace and loses nothing acknowledged before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.review import store as review_store
from pipeline.review.model import load_run
from pipeline.review.store import ReviewStore
from tests.review_helpers import fill, set_meta, sort_apart_from_ids

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def exported(review_run, capsys):
    run = review_run
    assert main(["review", "export", str(run), "--judges", "ana,ben,caro"]) == 0
    capsys.readouterr()
    return run, run / "review" / "round-1"


def _positions(run):
    with ReviewStore(load_run(run)) as store:
        return store.positions()


def _bad_unknown_theme(wb):
    import openpyxl
    book = openpyxl.load_workbook(wb)
    book["themes"]["A3"] = 99
    book["themes"]["K3"] = "accept"
    book.save(wb)
    return "themes", 3, "unknown theme id '99'"


def _bad_self_merge(wb):
    return "themes", fill(wb, "themes", 1, decision="merge", merge_into=1), "cannot merge into itself"


def _bad_cycle(wb):
    fill(wb, "themes", 1, decision="merge", merge_into=2)
    return "themes", fill(wb, "themes", 2, decision="merge", merge_into=1), "merge cycle"


def _bad_word(wb):
    return "themes", fill(wb, "themes", 0, decision="maybe"), "unknown decision 'maybe'"


def _bad_domain_target(wb):
    return "domains", fill(wb, "domains", 0, decision="merge", merge_into=7), "unknown domain id '7'"


def _bad_split(wb):
    return ("themes", fill(wb, "themes", 0, decision="split", split_off_segments="case01:99:0"),
            "not in theme 0")


def _bad_move(wb):
    import pandas as pd
    seg = pd.read_parquet(wb.parents[2] / "segments.parquet")["segment_id"].iloc[0]
    return "segments", fill(wb, "segments", seg, move_to_theme=42), "unknown theme id '42'"


def _other_run(wb):
    set_meta(wb, "run_id", "0123abcd@2020-01-01T00:00:00+00:00")
    return "_meta", None, "belongs to another run"


def _no_decision(wb):
    return "themes", fill(wb, "themes", 1, comment="hmm"), "decision is blank"


@pytest.mark.parametrize("spoil", [_bad_unknown_theme, _bad_self_merge, _bad_cycle, _bad_word,
                                   _bad_domain_target, _bad_split, _bad_move, _other_run,
                                   _no_decision])
def test_bad_row_is_named_and_nothing_is_imported(exported, spoil, capsys):
    run, rdir = exported
    good, bad = rdir / "ana.xlsx", rdir / "ben.xlsx"
    fill(good, "themes", 0, decision="accept")
    fill(bad, "themes", 2, decision="accept")  # a good row in the bad file too
    sheet, row, words = spoil(bad)
    assert main(["review", "import", str(run), str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    where = f"ben.xlsx, sheet '{sheet}'" + (f", row {row}" if row else "")
    assert where in err, err
    assert words in err, err
    assert "nothing was imported" in err and "Traceback" not in err
    assert _positions(run) == {}


@pytest.mark.parametrize("sheet, on", [("themes", "name"), ("segments", "text"),
                                       ("domains", "name")])
def test_a_sheet_sorted_apart_from_its_ids_is_refused(exported, sheet, on, capsys):
    """Every row's decision moved with its name but not with its id: each would be
    recorded for another item. The row's read-only columns tell, and nothing is stored."""
    import openpyxl
    run, rdir = exported
    wb = rdir / "ben.xlsx"
    book = openpyxl.load_workbook(wb)
    ids = [r[0].value for r in book[sheet].iter_rows(min_row=2)]
    column = {"themes": "decision", "segments": "move to theme", "domains": "decision"}[sheet]
    value = {"themes": "reject", "segments": "none", "domains": "accept"}[sheet]
    fill(wb, sheet, ids[0], **{column.replace(" ", "_"): value})
    fill(wb, "domains" if sheet != "domains" else "themes", 0, decision="accept")
    sort_apart_from_ids(wb, sheet, on)
    assert main(["review", "import", str(run), str(wb)]) == 2
    err = capsys.readouterr().err
    assert f"ben.xlsx, sheet '{sheet}': " in err, err
    assert "do not match the id in their first column" in err, err
    assert "select all of its columns" in err and "review export" in err, err
    assert "Traceback" not in err
    assert _positions(run) == {}


def test_one_import_names_every_problem_at_once(exported, capsys):
    """A formula in one row, a sheet renamed, and a decision typed "mrege" in another
    row: the first import named the formula and the sheet only, the typo came up on
    the next attempt. Every problem is named in the first."""
    import openpyxl
    run, rdir = exported
    wb = rdir / "ben.xlsx"
    fill(wb, "themes", 1, decision="mrege", merge_into=0)
    formula = fill(wb, "themes", 2, decision="accept", comment="=SUM(1,2)")
    book = openpyxl.load_workbook(wb)
    book["unassigned"].title = "Unassigned"
    book.save(wb)
    assert main(["review", "import", str(run), str(wb)]) == 2
    err = capsys.readouterr().err
    assert f"sheet 'themes', row {formula}, column 'comment': the cell holds a formula" in err
    assert "the sheet 'unassigned' is missing" in err, err
    assert "unknown decision 'mrege'" in err, err
    assert _positions(run) == {}


def test_unknown_judge_and_non_workbook(exported, tmp_path, capsys):
    run, rdir = exported
    wb = rdir / "ana.xlsx"
    fill(wb, "themes", 0, decision="accept")
    set_meta(wb, "person", "zed")
    junk = tmp_path / "notes.xlsx"
    junk.write_text("not a workbook")
    assert main(["review", "import", str(run), str(wb), str(junk)]) == 2
    err = capsys.readouterr().err
    assert "'zed' is not a judge" in err or "notes.xlsx: cannot be read" in err
    assert "notes.xlsx: cannot be read" in err
    assert _positions(run) == {}


def _import_cmd(run, files):
    return [sys.executable, "-m", "pipeline.cli", "review", "import", str(run), *map(str, files)]


#: `consensa review import` that stops half-way through its rows, inside the transaction:
#: it writes the row number to the flag file (argv[1]) and sleeps until it is killed
PAUSED_IMPORT = """
import sys, time
from pathlib import Path
from pipeline.cli import main
from pipeline.review import store

def pause(n, total):
    if n == total // 2:
        Path(sys.argv[1]).write_text(str(n))
        time.sleep(60)

store.import_row_hook = pause
sys.exit(main(["review", "import", *sys.argv[2:]]))
"""


class Stop(Exception):
    pass


def test_an_import_stopped_part_way_keeps_nothing_of_it(exported, monkeypatch):
    run, rdir = exported
    for t in (0, 1, 2):
        fill(rdir / "ana.xlsx", "themes", t, decision="accept")
    calls = []

    def stop(n, total):
        calls.append((n, total))
        if n == total // 2:
            raise Stop

    monkeypatch.setattr(review_store, "import_row_hook", stop)
    with pytest.raises(Stop):
        main(["review", "import", str(run), str(rdir / "ana.xlsx")])
    assert calls == [(0, 3), (1, 3)]
    assert _positions(run) == {}
    monkeypatch.setattr(review_store, "import_row_hook", None)
    assert main(["review", "import", str(run), str(rdir / "ana.xlsx")]) == 0
    assert set(_positions(run)) == {"theme:0", "theme:1", "theme:2"}


def test_an_import_stopped_with_ctrl_c_says_what_it_stored(exported, monkeypatch, capsys):
    """Ctrl+C during `review import` printed `consensa run`'s words (a run folder not
    written, embeddings in the cache); it says whether the import was stored, as the
    store holds it."""
    run, rdir = exported
    for t in (0, 1, 2):
        fill(rdir / "ana.xlsx", "themes", t, decision="accept")

    def interrupt(n, total):
        if n == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(review_store, "import_row_hook", interrupt)
    assert main(["review", "import", str(run), str(rdir / "ana.xlsx")]) == 130
    err = capsys.readouterr().err
    assert "interrupted; nothing of this import was stored" in err
    assert "run folder" not in err and "embeddings" not in err
    assert _positions(run) == {}
    # stopped once its transaction had committed: stored whole, and said so
    monkeypatch.setattr(review_store, "import_row_hook", None)
    record = ReviewStore.record_positions

    def then_interrupt(self, *a, **k):
        record(self, *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(ReviewStore, "record_positions", then_interrupt)
    assert main(["review", "import", str(run), str(rdir / "ana.xlsx")]) == 130
    err = capsys.readouterr().err
    assert "interrupted; the import had been stored whole" in err and "review status" in err
    assert set(_positions(run)) == {"theme:0", "theme:1", "theme:2"}


def test_import_killed_mid_transaction_leaves_all_or_nothing(exported, tmp_path):
    run, rdir = exported
    for t in (0, 1, 2):
        fill(rdir / "caro.xlsx", "themes", t, decision="accept")
    # an earlier import, acknowledged
    done = subprocess.run(_import_cmd(run, [rdir / "caro.xlsx"]), cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "imported 3" in done.stdout
    for j in ("ana", "ben"):
        for t in (0, 1, 2):
            fill(rdir / f"{j}.xlsx", "themes", t, decision="reject")
        fill(rdir / f"{j}.xlsx", "domains", 0, decision="accept")
    flag = tmp_path / "paused"
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_IMPORT, str(flag), str(run),
                             str(rdir / "ana.xlsx"), str(rdir / "ben.xlsx")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 45
    while not flag.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert flag.exists(), proc.communicate(timeout=5)
    assert int(flag.read_text()) == 4  # half of the 8 rows are written, uncommitted
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    pos = _positions(run)
    # the killed import left nothing; the acknowledged one is whole
    assert {j for p in pos.values() for j in p} == {"caro"}
    assert all(pos[f"theme:{t}"]["caro"].decision == "accept" for t in (0, 1, 2))
    with ReviewStore(load_run(run)) as store:
        assert len(store.imports()) == 1
        assert not [r for r in store.audit_log() if r["who"] in ("ana", "ben")
                    and r["action"] == "position"]
    # the same import, run again, goes through whole
    again = subprocess.run(_import_cmd(run, [rdir / "ana.xlsx", rdir / "ben.xlsx"]), cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    pos = _positions(run)
    assert all(set(pos[f"theme:{t}"]) == {"ana", "ben", "caro"} for t in (0, 1, 2))
    assert set(pos["domain:0"]) == {"ana", "ben"}
