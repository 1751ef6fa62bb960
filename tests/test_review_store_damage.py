"""A review store that cannot be trusted is named, never a traceback and never a new
review: the judges' decisions live only in ``RUN/review/decisions.sqlite``, so a damaged
file must say which file and how to restore it, and an emptied one beside an earlier
review must not quietly start the review again (and then refuse the judges' workbooks
as "not a judge")."""

from __future__ import annotations

import sqlite3

import pytest

from pipeline.cli import main
from pipeline.review.model import Decision, ReviewError, load_run
from pipeline.review.store import ReviewStore, db_path
from tests.review_helpers import fill


@pytest.fixture()
def exported(review_run, capsys):
    """A run whose review was started: the store, workbook.key and round-1 workbooks."""
    assert main(["review", "export", str(review_run), "--judges", "ana,ben"]) == 0
    capsys.readouterr()
    return review_run


def _half(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _garbage(path):
    path.write_text("garbage")


def _spoil_table(path, table: str) -> None:
    """Overwrite the first page of ``table`` with bytes that are no b-tree page: the file
    still opens, and only a query that reads the table finds the damage."""
    con = sqlite3.connect(path)
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (table,)).fetchone()[0]
    page = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    with open(path, "r+b") as fh:
        fh.seek((root - 1) * page)
        fh.write(b"\xff" * page)


def _says_damaged(err: str, path) -> None:
    assert f"{path}: the review store is damaged" in err, err
    assert "backup" in err and "Keeping the review safe" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("damage", [_half, _garbage], ids=["truncated", "garbage"])
@pytest.mark.parametrize("command", [["review", "status"], ["export", "csv"]],
                         ids=["status", "export-csv"])
def test_a_damaged_store_is_named_with_what_to_do(exported, capsys, damage, command):
    path = db_path(exported)
    damage(path)
    before = path.read_bytes()
    assert main([*command, str(exported)]) == 2
    _says_damaged(capsys.readouterr().err, path)
    assert path.read_bytes() == before
    assert not path.with_name(path.name + "-wal").exists()


def test_damage_found_by_a_later_query_is_named(exported, capsys):
    """The file opens; the damaged table is met only when a command reads it."""
    rdir = exported / "review" / "round-1"
    fill(rdir / "ana.xlsx", "themes", 0, decision="accept")
    assert main(["review", "import", str(exported), str(rdir / "ana.xlsx")]) == 0
    capsys.readouterr()
    path = db_path(exported)
    _spoil_table(path, "positions")
    with ReviewStore(load_run(exported)) as store:
        assert store.judges() == ["ana", "ben"]
        with pytest.raises(ReviewError, match="damaged") as err:
            store.positions()
        assert str(path) in str(err.value)
        # met inside a write's transaction: the damage is reported, not a failed ROLLBACK
        with pytest.raises(ReviewError, match="damaged"):
            store.record_positions([("ben", [Decision("theme:0", "accept")])])
    assert main(["review", "status", str(exported)]) == 2
    _says_damaged(capsys.readouterr().err, path)


def test_other_database_errors_keep_their_own_type(exported):
    """Only damage is reported as damage: the append-only triggers still refuse as before."""
    with ReviewStore(load_run(exported)) as store:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.con.execute("DELETE FROM audit_log")


def _positions(path) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT COUNT(*) FROM positions").fetchone()[0]
    finally:
        con.close()


def test_a_store_held_by_another_program_is_named_and_nothing_is_half_written(
        exported, capsys, monkeypatch):
    """Another program writing to the store past the wait (an import running beside the
    web app) is an error naming the file and what to do, not a traceback; the import
    records nothing, and runs once the store is free."""
    import pipeline.review.store as store_module

    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.2)
    rdir = exported / "review" / "round-1"
    fill(rdir / "ana.xlsx", "themes", 0, decision="accept")
    path = db_path(exported)
    before = _positions(path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        assert main(["review", "import", str(exported), str(rdir / "ana.xlsx")]) == 2
        err = capsys.readouterr().err
        assert f"{path}: the review store stayed busy for 0.2 seconds" in err, err
        assert "nothing was recorded" in err and "try again" in err
        assert "Traceback" not in err and "database is locked" not in err
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert _positions(path) == before
    assert main(["review", "import", str(exported), str(rdir / "ana.xlsx")]) == 0
    assert _positions(path) == before + 1


def test_a_write_the_disk_refuses_is_named_and_leaves_the_store_as_it_was(exported):
    """A store that may be read but not written (a read-only or full disk) refuses the
    decision with the file and what to check; the decisions before it are kept."""
    with ReviewStore(load_run(exported)) as store:
        store.record_positions([("ana", [Decision("theme:0", "accept")])])
        store.con.execute("PRAGMA query_only=ON")     # SQLite's "readonly database"
        with pytest.raises(ReviewError, match="could not be read or written") as err:
            store.record_positions([("ben", [Decision("theme:0", "reject")])])
        assert str(db_path(exported)) in str(err.value)
        assert "free space" in (err.value.hint or "")
        assert not store.con.in_transaction
        store.con.execute("PRAGMA query_only=OFF")
        held = store.positions()["theme:0"]
        assert {j: d.decision for j, d in held.items()} == {"ana": "accept"}


@pytest.mark.parametrize("emptied", ["zero bytes", "no schema"])
def test_an_emptied_store_beside_an_earlier_review_is_refused(exported, capsys, emptied):
    path = db_path(exported)
    if emptied == "zero bytes":
        path.write_bytes(b"")
    else:   # a valid SQLite file without the review's tables
        path.unlink()
        con = sqlite3.connect(path)
        con.execute("PRAGMA user_version=1")
        con.close()
    before = path.read_bytes()
    rdir = exported / "review" / "round-1"
    fill(rdir / "ana.xlsx", "themes", 0, decision="accept")
    for command in (["review", "status", str(exported)],
                    ["review", "import", str(exported), str(rdir / "ana.xlsx")],
                    ["review", "export", str(exported), "--judges", "ana,ben", "--force"],
                    ["export", "csv", str(exported)]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert f"{path}: the review store " in err, err
        assert "earlier review" in err and "workbook.key" in err and "round-1/ana.xlsx" in err
        assert "not a judge" not in err and "Traceback" not in err
        assert path.read_bytes() == before, command


def test_an_empty_file_without_an_earlier_review_is_no_review_yet(review_run, capsys):
    """Nothing to lose (say a first export stopped before its first commit): reading
    says there is no review yet, and starting one works."""
    path = db_path(review_run)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert main(["review", "status", str(review_run)]) == 2
    assert "has no review yet" in capsys.readouterr().err
    assert main(["review", "export", str(review_run), "--judges", "ana,ben"]) == 0
    with ReviewStore(load_run(review_run)) as store:
        assert store.judges() == ["ana", "ben"]


def test_an_absent_store_is_still_created(review_run):
    with ReviewStore(load_run(review_run), create=True) as store:
        assert store.round == 1
    assert db_path(review_run).stat().st_size > 0


def test_the_precode_reader_of_the_store_names_a_damaged_file(tmp_path):
    """Pre-coding reads the stored choices straight from the file, not through ReviewStore."""
    from pipeline.precode import latest_choices

    path = db_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("garbage")
    with pytest.raises(ReviewError, match="damaged") as err:
        latest_choices(tmp_path)
    assert str(path) in str(err.value)


def _archived(monkeypatch, path) -> None:
    """The store as a read-only folder holds it: a test run as root may write
    whatever the permissions say, so the check Consensa makes is what is answered."""
    import os

    real = os.access
    monkeypatch.setattr("pipeline.review.store.os.access",
                        lambda p, mode: False if mode == os.W_OK and str(p) in
                        (str(path), str(path.parent)) else real(p, mode))


@pytest.mark.parametrize("left_wal", [False, True], ids=["closed", "with-wal"])
def test_an_archived_review_is_read_and_refuses_writes_by_name(exported, capsys, monkeypatch,
                                                               left_wal):
    """`consensa review status` on an archived (read-only) run failed with "attempt to
    write a readonly database": the store was opened for writing (WAL mode), although
    status only reads. A read-only store is read, with the decisions still in a -wal
    file too, and a write says the store is read-only."""
    path = db_path(exported)
    with ReviewStore(load_run(exported)) as store:
        store.resolve([Decision("theme:0", "accept")], by="ana")
    if left_wal:        # a store not closed cleanly: the decision is still in the -wal
        keep = sqlite3.connect(path, isolation_level=None)
        keep.execute("PRAGMA wal_autocheckpoint=0")
        keep.execute("INSERT INTO meta VALUES ('left', 'in the wal')")
        assert path.with_name(path.name + "-wal").stat().st_size > 0
    _archived(monkeypatch, path)
    with ReviewStore(load_run(exported)) as store:
        assert store.read_only and "theme:0" in store.consensus()
        assert store.meta().get("left") == ("in the wal" if left_wal else None)
        with pytest.raises(ReviewError, match="the review store is read-only here"):
            store.resolve([Decision("theme:1", "accept")], by="ana")
    capsys.readouterr()
    assert main(["review", "status", str(exported)]) == 0
    assert "Review of run" in capsys.readouterr().out
    if left_wal:
        keep.close()
