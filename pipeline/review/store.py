"""The review's decisions in SQLite: ``RUN/review/decisions.sqlite``.

Durability: WAL journal, ``synchronous=FULL``, and every import is one
``BEGIN IMMEDIATE ... COMMIT``: a command reports success only after the commit,
so an acknowledged decision survives a killed process or a power cut, and a
killed import leaves no trace.

Tables
  meta            key/value: run_id, run_name, round, schema
  panel           the judges and auditors (name, role)
  positions       one judge's current position on one item in one round
  consensus       the panel's consensus decision on one item in one round
  audit_comments  the auditors' comments (append-only)
  audit_answers   the judges' answers to them: accept or argue, with a reason
                  (append-only; the latest answer of a judge to a comment counts)
  audit_log       every change: who, what, when, the new and the previous value
                  (append-only: triggers abort any UPDATE or DELETE)

The API below (record_positions, positions, resolve, consensus, add_audit_comment,
audit_log) is what the CLI uses and what the web app (:mod:`pipeline.web`) uses. Every
write checks the decision against the run (:func:`pipeline.review.model.check_set`).

Two people saving at once: an item's *version* is the id of the last audit-log row
about it (:meth:`ReviewStore.item_version`; for one judge's position, the last row of
that judge's positions on it). A writer that read the item at version v passes
``expect={...: v}``; the write is refused with :class:`StaleError` when the item has
changed since, checked inside the write's transaction, so nothing is silently
overwritten. :meth:`ReviewStore.undo_consensus` takes back the last consensus decision
(the audit log keeps both the decision and its undoing).

A damaged store (a truncated file, one overwritten with something else, a bad page met
by a later query) is a :class:`ReviewError` naming the file and saying how to restore
it, never a traceback. A new store is created only where there is no file: an existing
file that holds no review (empty, or no schema) is refused when the review folder shows
an earlier review, because starting afresh there would silently drop the judges'
acknowledged decisions (and then refuse their workbooks as "not a judge").
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import sqlite3
import unicodedata
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from .model import (
    Decision,
    ReviewError,
    RunItems,
    check_decision,
    check_set,
    core_idea_merge_problems,
    merge_cycles,
    moved_into_rejected_problems,
    nesting_problems,
    overlap_problems,
    rejected_target_problems,
    split_outside_problems,
    typed_text,
    unknown_subcategory,
)
from .settle import (
    blocked_merges,
    made_by_splits,
    settle,
    split_category,
    theme_domains,
    touched_items,
)

SCHEMA_VERSION = "1"
DB_NAME = "decisions.sqlite"
#: the audit-log action under which a person's choice for a segment a pre-coding
#: queued is stored (pipeline/precode.py writes and reads it; an export asks whether
#: a codebook is older than the store's last write other than such a choice)
CHOICE_ACTION = "precode choice"

_DECISION_COLS = ("decision", "new_name", "target", "domain", "segments", "core_idea",
                  "comment", "source")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS panel (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('judge', 'auditor')),
    added_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS imports (
    import_id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL, who TEXT NOT NULL, what TEXT NOT NULL, n_rows INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS positions (
    round INTEGER NOT NULL, item TEXT NOT NULL, judge TEXT NOT NULL,
    decision TEXT NOT NULL, new_name TEXT, target TEXT, domain TEXT, segments TEXT,
    core_idea TEXT, comment TEXT, source TEXT, import_id INTEGER, at TEXT NOT NULL,
    PRIMARY KEY (round, item, judge));
CREATE TABLE IF NOT EXISTS consensus (
    round INTEGER NOT NULL, item TEXT NOT NULL,
    decision TEXT NOT NULL, new_name TEXT, target TEXT, domain TEXT, segments TEXT,
    core_idea TEXT, comment TEXT, source TEXT, by TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (round, item));
CREATE TABLE IF NOT EXISTS audit_comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, round INTEGER NOT NULL, item TEXT NOT NULL,
    by TEXT NOT NULL, comment TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT, comment_id INTEGER NOT NULL, round INTEGER NOT NULL,
    item TEXT NOT NULL, by TEXT NOT NULL, answer TEXT NOT NULL CHECK (answer IN ('accept',
    'argue', 'withdrawn')), text TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, who TEXT NOT NULL,
    action TEXT NOT NULL, round INTEGER, item TEXT, value TEXT, previous TEXT,
    import_id INTEGER);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_comments_no_update BEFORE UPDATE ON audit_comments
BEGIN SELECT RAISE(ABORT, 'audit comments are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_comments_no_delete BEFORE DELETE ON audit_comments
BEGIN SELECT RAISE(ABORT, 'audit comments are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_answers_no_update BEFORE UPDATE ON audit_answers
BEGIN SELECT RAISE(ABORT, 'answers to audit comments are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_answers_no_delete BEFORE DELETE ON audit_answers
BEGIN SELECT RAISE(ABORT, 'answers to audit comments are append-only'); END;
"""

#: what a judge answers to an auditor's comment
ANSWERS = ("accept", "argue")

#: the audit-log action that names the workbook an import's positions of a judge came
#: from and when it was exported (``FILE, exported AT``)
WORKBOOK_ACTION = "workbook"
EXPORTED = "exported"

#: Called as ``import_row_hook(n, total)`` before an import writes its ``n``-th row,
#: inside the import's transaction; None in normal use. It lets a test stop an import
#: part-way (and kill the process) to show that a killed import leaves nothing behind.
import_row_hook: Callable[[int, int], None] | None = None


class StaleError(ReviewError):
    """A save based on a state of an item that has changed since it was read."""

    def __init__(self, message: str, *, item: str = "", change: dict | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.item = item
        self.change = change or {}


def now_utc() -> str:
    """The time a decision is stored at, as the store writes it (UTC, microseconds): a
    command that compares its own start with the store's rows takes it from here."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def db_path(run_folder: Path) -> Path:
    return Path(run_folder) / "review" / DB_NAME


#: SQLite's primary result codes for a damaged file: SQLITE_CORRUPT, SQLITE_NOTADB
_DAMAGE_CODES = (11, 26)

_RESTORE_HINT = (
    "stop `consensa serve` on this run, move {name} (and any {name}-wal and {name}-shm "
    "beside it) aside, copy your last backup of it in its place, then check it with "
    "`consensa review status RUN` (README: \"Keeping the review safe\"); the judges' "
    "decisions are kept only in this file, so do not start a new review over it")


def _code(exc: BaseException) -> int | None:
    """SQLite's primary result code of ``exc`` (None when it carries none)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` says the file is damaged or not a database at all (as opposed to a
    locked store, a constraint or a bug, which keep their own error)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = _code(exc)
    if code is not None:
        return code in _DAMAGE_CODES
    text = str(exc)
    return "malformed" in text or "not a database" in text


def damaged_error(path: Path, exc: BaseException) -> ReviewError:
    """The error a damaged store is reported with: the file, what SQLite found, what to do."""
    return ReviewError(f"the review store is damaged and cannot be read ({exc}); nothing was "
                       "changed", path=path, hint=_RESTORE_HINT.format(name=Path(path).name))


def _naming_the_store(method):
    """``method`` of :class:`sqlite3.Cursor` with a store error (damage, a busy store, a
    refusing disk) raised as :func:`_translated` gives it."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise _translated(self.connection.path, exc) from exc
    return call


class _Cursor(sqlite3.Cursor):
    """A cursor of the review store: damage met while stepping through rows (a bad page
    is found only when a query reaches it) becomes :func:`damaged_error`, and so on for
    every error :func:`_translated` names."""

    execute = _naming_the_store(sqlite3.Cursor.execute)
    __next__ = _naming_the_store(sqlite3.Cursor.__next__)
    fetchone = _naming_the_store(sqlite3.Cursor.fetchone)
    fetchall = _naming_the_store(sqlite3.Cursor.fetchall)
    fetchmany = _naming_the_store(sqlite3.Cursor.fetchmany)


class _Connection(sqlite3.Connection):
    """The store's connection: every query runs on a :class:`_Cursor`, so damage found
    by any query, not only on opening, names the file."""

    path: Path = Path(DB_NAME)

    def execute(self, sql, parameters=()):
        return self.cursor(_Cursor).execute(sql, parameters)


#: how long a command waits for another program that is writing to the store
BUSY_TIMEOUT_S = 30.0

#: SQLite's primary result codes for a store that is held by another process:
#: SQLITE_BUSY, SQLITE_LOCKED
_BUSY_CODES = (5, 6)
#: ... and for a file that cannot be written or read where it is: SQLITE_PERM,
#: SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN
_DISK_CODES = (3, 8, 10, 13, 14)


def _translated(path: Path, exc: sqlite3.DatabaseError) -> BaseException:
    """The error a failed query is reported with. Damage, a store held by another
    process past :data:`BUSY_TIMEOUT_S`, and a disk that refuses the write each get a
    :class:`ReviewError` naming the file and what to do, so the command line prints it
    and the web app shows it above the judge's unsaved entry instead of an error page
    that loses it. A write that fails is rolled back: nothing of it is recorded, and
    the decisions recorded before it are untouched. Anything else (a constraint, a
    bug) keeps its own error."""
    if is_damage(exc):
        return damaged_error(path, exc)
    code = _code(exc)
    if code in _BUSY_CODES:
        return ReviewError(
            f"the review store stayed busy for {BUSY_TIMEOUT_S:g} seconds: another program "
            "is writing to it (a `consensa serve` or a `consensa review` command on this "
            "run); nothing was recorded", path=path,
            hint="wait for the other command to finish, or stop it, and try again; the "
            "decisions recorded so far are safe")
    if code in _DISK_CODES:
        return ReviewError(
            f"the review store could not be read or written where it is ({exc}); nothing "
            "was recorded", path=path,
            hint="check that the disk has free space and that you may write to this "
            "folder (a read-only or synced folder can refuse it), then try again; the "
            "decisions recorded so far are safe")
    return exc


def earlier_review(folder: Path) -> list[Path]:
    """Files in a review folder that only an earlier review leaves behind: its workbook
    key, its codebook, the files of its rounds (workbooks, packets)."""
    folder = Path(folder)
    found = [folder / n for n in ("workbook.key", "codebook.yaml") if (folder / n).is_file()]
    for round_folder in sorted(folder.glob("round-*")):
        if round_folder.is_dir():
            found += sorted(p for p in round_folder.iterdir() if p.is_file())
    return found


class ReviewStore:
    """The review database of one run. Use as a context manager, or call close()."""

    def __init__(self, run: RunItems, create: bool = False) -> None:
        self.run = run
        self.path = db_path(run.folder)
        if not self.path.is_file() and not create:
            raise ReviewError("this run has no review yet", path=run.folder,
                              hint="start one with `consensa review export RUN --judges a,b,c`")
        existed = self.path.is_file()
        #: an archived run (a read-only folder or file) is opened for reading only
        self.read_only = existed and not (os.access(self.path, os.W_OK)
                                          and os.access(self.path.parent, os.W_OK))
        if not existed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = sqlite3.connect(self._uri() if self.read_only else self.path,
                                       isolation_level=None, timeout=BUSY_TIMEOUT_S,
                                       factory=_Connection, uri=self.read_only)
        except sqlite3.DatabaseError as exc:
            raise _translated(self.path, exc) from exc
        self.con.path = self.path
        try:
            if existed:
                self._check_holds_review(create)
            self.con.row_factory = sqlite3.Row
            if not self.read_only:
                self.con.execute("PRAGMA journal_mode=WAL")
            self.con.execute("PRAGMA synchronous=FULL")
            self.con.execute("PRAGMA foreign_keys=ON")
            self._open(run)
        except BaseException:
            self.con.close()
            raise

    def _uri(self) -> str:
        """The URI that opens the store for reading only. Without a ``-wal`` file beside
        it, every decision is in the file itself, which is opened as immutable: SQLite
        then needs no lock or ``-shm`` file, which a read-only folder could not hold.
        With one (a store not closed cleanly), its decisions are read from it as well,
        which SQLite can do only where it may create the ``-shm`` file, or one is there."""
        wal = self.path.with_name(self.path.name + "-wal")
        mode = "mode=ro" if wal.exists() else "immutable=1"
        return f"{self.path.resolve().as_uri()}?{mode}"

    def _check_holds_review(self, create: bool) -> None:
        """Refuse an existing file that holds no review, before anything is written to it.

        Only an absent file means "no review yet": an empty file (or one without the
        review's tables) beside an earlier review's workbooks, key or codebook is a store
        that lost its decisions, and starting a new review in it would hide that."""
        tables = {r[0] for r in self.con.execute("SELECT name FROM sqlite_master WHERE "
                                                 "type='table'")}
        if "meta" in tables and self.con.execute(
                "SELECT 1 FROM meta WHERE key='run_id'").fetchone():
            return
        size = self.path.stat().st_size
        what = "is empty (0 bytes)" if size == 0 else (
            "holds no review" if not tables else
            f"is not a review store (its tables: {', '.join(sorted(tables))})")
        traces = earlier_review(self.path.parent)
        if traces:
            shown = ", ".join(str(p.relative_to(self.path.parent)) for p in traces[:4])
            more = f" and {len(traces) - 4} more" if len(traces) > 4 else ""
            raise ReviewError(
                f"the review store {what}, but this review folder holds an earlier review "
                f"({shown}{more}); its decisions are missing, so no new review is started "
                "over them", path=self.path,
                hint=_RESTORE_HINT.format(name=self.path.name) + "; if no decision was ever "
                "recorded in this review, delete the file and start again with `consensa "
                "review export RUN --judges a,b,c --force`")
        if tables:
            raise ReviewError(f"the review store {what}", path=self.path,
                              hint="move it aside; `consensa review export RUN --judges a,b,c` "
                              "then starts the review in a new file")
        if not create:
            raise ReviewError("this run has no review yet (its review store is empty)",
                              path=self.path,
                              hint="start one with `consensa review export RUN --judges a,b,c`")

    def _open(self, run: RunItems) -> None:
        """Create the tables (first use) and check the store is this run's; apart from
        __init__ so a failure here closes the connection instead of leaking it.

        A store that has all its tables and its run is opened without taking the write
        lock: in WAL mode readers go on beside one writer, so the web app's pages, the
        status and the exports read the store while an import writes to it, and a
        judge's save that must wait is the only thing that waits."""
        have = {r[0] for r in self.con.execute("SELECT name FROM sqlite_master")}
        stored = self.meta().get("run_id") if "meta" in have else None
        if stored is None or not set(_SCHEMA_OBJECTS) <= have:
            with self.transaction():
                for statement in _statements(SCHEMA):
                    self.con.execute(statement)
                stored = self.meta().get("run_id")
                if stored is None:
                    for k, v in (("run_id", run.run_id), ("run_name", run.name),
                                 ("round", "1"), ("schema", SCHEMA_VERSION),
                                 ("created_at", now_utc())):
                        self.con.execute("INSERT INTO meta VALUES (?, ?)", (k, v))
        if stored is not None and stored != run.run_id:
            raise ReviewError(f"the review database belongs to another run ({stored}, this "
                              f"run is {run.run_id})", path=self.path)
        self._sync_domains()

    def _sync_domains(self) -> None:
        """Keep the run's domain table in step with the domains the judges created
        (consensus ``create`` decisions still in force, in any round, and the new domains
        of domain splits, whose id is the split's ``target``)."""
        created: dict[int, str] = {}
        for r in self.con.execute("SELECT item, decision, target, new_name FROM consensus "
                                  "WHERE decision IN ('create', 'split') AND item LIKE "
                                  "'domain:%' ORDER BY round, at"):
            new = r["target"] if r["decision"] == "split" else r["item"].split(":", 1)[1]
            if str(new).isdigit():
                created[int(new)] = r["new_name"]
        self.run.with_created_domains(created)
        themes: dict[int, Decision] = {}
        domain_of = theme_domains(self.run)
        for r in self.con.execute("SELECT * FROM consensus WHERE item LIKE 'theme:%' AND "
                                  "decision IN ('create', 'split') ORDER BY round, at"):
            d = Decision.from_row(r)
            if d.decision == "create":
                themes[int(d.ident)] = d
            elif d.target.isdigit():       # the category a theme split made
                themes[int(d.target)] = split_category(d, domain_of.get(d.ident, ""))
        self.run.with_created_themes(themes)

    def unused_id(self, kind: str) -> int:
        """The id a new ``kind`` ("theme" or "domain") gets: after every one the run
        proposed and every one the store has ever named. Ids are never reused: a
        category created and then undone keeps its id, so the positions and comments
        recorded on it stay its own and never attach to the next one created. A theme id
        is never one of the block kept for kept subcategories and split-off categories
        (:meth:`RunItems.derived_ids`): past the block once the ids before it are used."""
        if kind == "theme":
            used = [int(t) for t in self.run.themes["theme_id"]] or [-1]
        else:
            used = [self.run.next_domain_id() - 1]
        for (item,) in self.con.execute(
                "SELECT item FROM audit_log WHERE item LIKE ? UNION "
                "SELECT item FROM positions WHERE item LIKE ? UNION "
                "SELECT item FROM consensus WHERE item LIKE ? UNION "
                "SELECT item FROM audit_comments WHERE item LIKE ?", (f"{kind}:%",) * 4):
            ident = str(item).split(":", 1)[1]
            if ident.isdigit():
                used.append(int(ident))
        for (target,) in self.con.execute(
                "SELECT target FROM consensus WHERE item LIKE ? AND decision='split'",
                (f"{kind}:%",)):
            if str(target or "").isdigit():
                used.append(int(target))       # a split's new domain, though undone
        if kind != "theme":
            return max(used) + 1
        kept = self.run.derived_ids()
        new = max([u for u in used if u not in kept], default=-1) + 1
        return kept.stop if new in kept else new

    def create_category(self, name: str, segments: list[str], domain: str, by: str,
                        definition: str = "") -> str:
        """A new category of the given segments (from any theme), as a consensus
        decision (undone like any other); its item.

        The id is chosen in the transaction that records the category: two judges
        creating a category at the same moment would otherwise both be given the
        next id, and the second create would replace the first."""
        with self.transaction():
            item = f"theme:{self.unused_id('theme')}"
            self.resolve([Decision(item, "create", new_name=" ".join(name.split()),
                                   segments=tuple(dict.fromkeys(segments)), domain=str(domain),
                                   core_idea=definition.strip(), source="create a category")],
                         by=by)
        return item

    def split_domain(self, domain: str, themes: list[str], name: str, by: str,
                     definition: str = "", expect: int | None = None) -> str:
        """Split a domain: ``themes`` leave it for a new domain named ``name``. One
        consensus decision on the domain (undone like any other); the new domain's item.
        ``expect``: the domain's version the caller saw (:meth:`item_version`). The new
        domain's id is chosen in the transaction that records the split, so two splits
        at the same moment make two domains, not one."""
        with self.transaction():
            new = str(self.unused_id("domain"))
            self.resolve([Decision(f"domain:{int(domain)}", "split",
                                   new_name=" ".join(name.split()), target=new,
                                   segments=tuple(dict.fromkeys(str(t) for t in themes)),
                                   core_idea=definition.strip(), source="split a domain")],
                         by=by, expect=None if expect is None else {f"domain:{int(domain)}": expect})
        return f"domain:{new}"

    def create_domain(self, name: str, by: str, definition: str = "") -> str:
        """A new domain, as a consensus decision (undone like any other); its item. Its
        id is chosen in the transaction that records it (as :meth:`create_category`)."""
        with self.transaction():
            item = f"domain:{self.unused_id('domain')}"
            self.resolve([Decision(item, "create", new_name=" ".join(name.split()),
                                   core_idea=definition.strip(), source="create a domain")],
                         by=by)
        return item

    # --- plumbing -------------------------------------------------------------
    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self):
        """One write (``BEGIN IMMEDIATE ... COMMIT``): the write lock is taken first, so
        what the write reads (a free id, an item's version, the consensus it is checked
        against) cannot change before it commits. Inside another transaction it is part
        of that one, so a caller can read and write under one lock (a new category's
        id, then its create)."""
        if self.con.in_transaction:
            yield self.con
            return
        if self.read_only:
            raise ReviewError(
                "the review store is read-only here (the run folder or the file may not be "
                "written: an archived run); nothing was recorded", path=self.path,
                hint="read it as it is (`consensa review status`, the exports with --out "
                "elsewhere), or make the run's review folder writable to record decisions; "
                "the decisions recorded so far are safe")
        self.con.execute("BEGIN IMMEDIATE")
        try:
            yield self.con
        except BaseException:
            # SQLite may have rolled back already (a damaged page ends the transaction):
            # a second ROLLBACK would fail and hide the error that matters
            if self.con.in_transaction:
                self.con.execute("ROLLBACK")
            raise
        try:
            self.con.execute("COMMIT")
        except BaseException:
            if self.con.in_transaction:     # a refused commit leaves nothing half-written
                self.con.execute("ROLLBACK")
            raise

    def meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self.con.execute("SELECT key, value FROM meta")}

    @property
    def round(self) -> int:
        return int(self.meta().get("round", "1"))

    def _log(self, who: str, action: str, item: str | None = None, value: str | None = None,
             previous: str | None = None, round: int | None = None,
             import_id: int | None = None) -> None:
        self.con.execute("INSERT INTO audit_log (at, who, action, round, item, value, previous, "
                         "import_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (now_utc(), who, action, round, item, value, previous, import_id))

    # --- panel ----------------------------------------------------------------
    def set_panel(self, judges: Iterable[str], auditors: Iterable[str] = (), by: str = "") -> None:
        """Add people to the panel (those on it already stay as they are).

        A name that is a spelling of someone on the panel ('Ana', 'ana_' beside 'ana') is
        refused: it would be another person, with no positions, and every item the
        panel agreed on would wait for them. A new judge is refused too once the open
        round has a consensus of its own, or its codebook was applied: an item is
        agreed when every judge took the same position, so a judge who has taken none
        would open every agreed item again (and stop `apply`, the exports and
        `next-round`). A judge joins at the start of a round, which begins from the
        consensus before it; an auditor may join at any time."""
        judges, auditors = list(judges), list(auditors)
        if len(set(judges) | set(auditors)) != len(judges) + len(auditors):
            raise ReviewError("a name appears twice among the judges and auditors")
        current = self.panel()
        on_panel = ", ".join(f"{n} ({r})" for n, r in current.items()) or "nobody yet"
        # each person has a workbook named after them, and Windows and macOS read 'Ana.xlsx'
        # and 'ana.xlsx' as one file: one would overwrite the other's decisions
        seen = {name_key(n): n for n in current}
        for name in judges + auditors:
            other = seen.setdefault(name_key(name), name)
            if other != name and name not in current:
                case_only = other.casefold() == name.casefold()
                raise ReviewError(
                    f"'{name}' and '{other}' " + (
                        "differ only in upper and lower case; their workbooks would be one "
                        "file on Windows and macOS" if case_only else
                        "differ only in case, spaces or punctuation: two judges, one of whom "
                        "decided nothing, where one person was meant"),
                    hint=f"give each person one spelling (on the panel: {on_panel}); "
                         "nothing was changed")
        new = [n for n in judges if n not in current]
        if new:
            if why := self._judges_fixed():
                close = {n: closest_name(n, current) for n in new}
                meant = "; ".join(f"did you mean '{c}' for '{n}'?" for n, c in close.items() if c)
                raise ReviewError(
                    f"cannot add {', '.join(repr(n) for n in new)} as judge(s): {why}; a judge "
                    "who decided nothing would open every item the judges agreed on again "
                    f"(the panel: {on_panel})" + (f"; {meant}" if meant else ""),
                    hint="name the judges as they are on the panel; to add a judge, close "
                         f"round {self.round} first (`consensa review next-round "
                         f"{self.run.folder}`): the "
                         f"judge joins round {self.round + 1}, which starts from round "
                         f"{self.round}'s consensus; nothing was changed")
        with self.transaction():
            for role, names in (("judge", judges), ("auditor", auditors)):
                for name in names:
                    if name in current:
                        if current[name] != role:
                            raise ReviewError(f"{name} is already on the panel as {current[name]}")
                        continue
                    self.con.execute("INSERT INTO panel VALUES (?, ?, ?)", (name, role, now_utc()))
                    self._log(by or name, "panel", value=f"{name}: {role}")

    def _judges_fixed(self) -> str:
        """Why the open round takes no new judge, in words ("" when it does): it has a
        consensus of its own (an item the judges agreed on or the panel resolved; an
        item carried from the round before stays carried with a judge more), or its
        codebook was applied."""
        round, judges = self.round, self.judges()
        positions, explicit = self.positions(round), self.consensus(round)
        agreed = sum(1 for pos in positions.values()
                     if judges and set(judges) <= set(pos)
                     and len({pos[j].key() for j in judges}) == 1)
        if explicit or agreed:
            return (f"round {round} has a consensus already ({agreed} item(s) agreed by "
                    f"every judge, {len(explicit)} resolved)")
        applied = self.run.folder / "review" / "codebook.yaml"
        if applied.is_file():
            from .. import safeyaml
            from ..errors import InputError
            try:
                cb = safeyaml.load_file(applied, what="codebook") or {}
            except InputError:      # a codebook that cannot be read tells of no round
                cb = {}
            if isinstance(cb, dict) and (cb.get("review") or {}).get("round") == round:
                return f"round {round}'s codebook was applied ({applied})"
        return ""

    def check_person(self, name: str, option: str = "--by") -> None:
        """Refuse a name that is someone on the panel spelled otherwise ('Ana', 'ana_'
        for 'ana'): recorded under it, a decision or an answer would be another
        person's. A name of no one on the panel ('team') is left to the command."""
        panel = self.panel()
        if name in panel:
            return
        twin = next((n for n in panel if name_key(n) == name_key(name)), None)
        if twin is not None:
            raise ReviewError(f"{option} {name!r}: no one on the panel is named so, but "
                              f"{twin!r} is ({panel[twin]})",
                              hint=f"give the name as on the panel ({', '.join(panel)}); "
                                   "nothing was recorded")

    def panel(self) -> dict[str, str]:
        return {r["name"]: r["role"] for r in self.con.execute("SELECT name, role FROM panel "
                                                               "ORDER BY rowid")}

    def judges(self, round: int | None = None) -> list[str]:
        """The judges of ``round`` (default: the open one), in panel order: those who
        joined the panel in it or before. A judge who joined in round 2 took no position
        in round 1, whose items every judge of round 1 agreed on stay agreed (and round
        2 starts from them)."""
        round = round or self.round
        joined = self.joined()
        return [n for n, r in self.panel().items() if r == "judge" and joined.get(n, 1) <= round]

    def joined(self) -> dict[str, int]:
        """{name: the round that was open when they joined the panel}, from the time
        each was added and the rounds' openings (and undoings) in the log."""
        events = [(r["at"], int(r["value"])) for r in self.con.execute(
            "SELECT at, value FROM audit_log WHERE action IN ('round opened', "
            "'round reopened') ORDER BY id")]
        out = {}
        for r in self.con.execute("SELECT name, added_at FROM panel"):
            out[r["name"]] = max([1] + [n for at, n in events if at <= r["added_at"]][-1:])
        return out

    def auditors(self) -> list[str]:
        return [n for n, r in self.panel().items() if r == "auditor"]

    def decided_after_audit(self, last: int | None = None) -> list[dict]:
        """The consensus decisions of rounds 1 to ``last`` (default: the current one)
        recorded after the latest auditor's comment of those rounds, oldest first:
        ``{round, item, decision, at}``. No auditor saw them: a rename, merge or
        category created once the audit was done is the panel's, not audited ([] when
        no auditor commented at all)."""
        last = last or self.round
        audit = self.con.execute("SELECT MAX(at) AS at FROM audit_comments WHERE round <= ?",
                                 (last,)).fetchone()["at"]
        if audit is None:
            return []
        return [{"round": int(r["round"]), "item": r["item"], "decision": r["decision"],
                 "at": r["at"]}
                for r in self.con.execute("SELECT round, item, decision, at FROM consensus "
                                          "WHERE round <= ? AND at > ? ORDER BY at, item",
                                          (last, audit))]

    def audited_by(self, round: int | None = None) -> list[str]:
        """The auditors who recorded at least one comment up to ``round`` (default: the
        current one), in panel order: being named auditor is not having audited."""
        rows = self.con.execute("SELECT DISTINCT by FROM audit_comments WHERE round <= ?",
                                (round or self.round,))
        commented = {r["by"] for r in rows}
        return [a for a in self.auditors() if a in commented]

    # --- positions ------------------------------------------------------------
    def record_positions(self, batches: list[tuple[str, list[Decision]]], what: str = "",
                         round: int | None = None,
                         comments: list[tuple[str, str, str, str]] = (),
                         expect: dict[tuple[str, str], int] | None = None,
                         workbooks: Iterable[tuple[str, str, str]] = ()) -> int:
        """Record judges' positions, all in one transaction: every batch is checked first.

        ``batches`` is a list of (judge, decisions). A judge's new position on an item
        replaces the old one (the old one stays in the audit log). ``comments`` are
        auditors' comments imported with them: (auditor, item, comment, source).
        ``expect`` maps (judge, item) to the version of that judge's position the
        caller saw (:meth:`item_version`); a changed one refuses the whole write
        (:class:`StaleError`). ``workbooks``: (judge, file name, exported_at) of the
        workbooks the positions come from, logged with them (:meth:`position_origins`
        tells by it which export a position was imported from). Returns the rows written.
        """
        round = round or self.round
        panel = self.panel()
        errors = []
        for auditor, item, _comment, source in comments:
            if panel.get(auditor) != "auditor":
                errors.append(f"{source}: {auditor!r} is not an auditor of this review"
                              + _meant(auditor, self.auditors()))
            errors += [f"{source}: {e}" for e in self._check_item(item)]
        judges = self.judges(round)
        for judge, decisions in batches:
            if judge not in judges:
                errors.append(f"{what or 'input'}: {judge!r} is not a judge of round {round} "
                              f"of this review (judges: {', '.join(judges) or 'none'})"
                              + _meant(judge, judges))
                continue
            errors += check_set(decisions, self.run)
        if errors:
            raise ReviewError(listing(errors), hint="fix what is listed and try again; "
                              "nothing was imported or saved")
        rows = [(judge, d) for judge, ds in batches for d in ds]
        hook = import_row_hook
        with self.transaction():
            for (judge, item), version in (expect or {}).items():
                self._check_version(item, version, judge=judge)
            cur = self.con.execute("INSERT INTO imports (at, who, what, n_rows) VALUES (?, ?, ?, ?)",
                                   (now_utc(), ",".join(j for j, _ in batches), what, len(rows)))
            import_id = cur.lastrowid
            for n, (judge, d) in enumerate(rows):
                if hook is not None:
                    hook(n, len(rows))
                old = self.con.execute("SELECT * FROM positions WHERE round=? AND item=? AND "
                                       "judge=?", (round, d.item, judge)).fetchone()
                previous = Decision.from_row(old).to_json() if old else None
                self.con.execute(
                    "INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (round, d.item, judge, *_decision_values(d), import_id, now_utc()))
                self._log(judge, "position", d.item, d.to_json(), previous, round, import_id)
            wrote = {judge for judge, d in rows}
            for judge, file, exported_at in workbooks:
                if judge in wrote:
                    self._log(judge, WORKBOOK_ACTION, value=f"{file}, {EXPORTED} {exported_at}",
                              round=round, import_id=import_id)
            added = 0
            for auditor, item, comment, _ in comments:
                comment = typed_text(comment)
                # the same workbook imported again holds the same comments: each stays one
                # comment for the judges to answer, not two
                if self.con.execute("SELECT 1 FROM audit_comments WHERE round=? AND item=? "
                                    "AND by=? AND comment=?",
                                    (round, item, auditor, comment)).fetchone():
                    continue
                self._add_comment(item, auditor, comment, round)
                added += 1
        return len(rows) + added

    def positions(self, round: int | None = None) -> dict[str, dict[str, Decision]]:
        """{item: {judge: Decision}} for one round (default: the current one)."""
        out: dict[str, dict[str, Decision]] = {}
        for r in self.con.execute("SELECT * FROM positions WHERE round=? ORDER BY item, judge",
                                  (round or self.round,)):
            out.setdefault(r["item"], {})[r["judge"]] = Decision.from_row(r)
        return out

    def position_origins(self, round: int | None = None) -> dict[tuple[str, str], dict]:
        """{(item, judge): {at, source, exported_at}} for each position of one round
        (default: the current one): when it was recorded, where it came from (a
        workbook's row, the web form) and, for one imported from a workbook, when that
        workbook was exported ("" otherwise, and for one imported before this was
        logged)."""
        exports = {}
        for r in self.con.execute("SELECT who, value, import_id FROM audit_log WHERE "
                                  "action=? AND round=?", (WORKBOOK_ACTION,
                                                           round or self.round)):
            exports[(r["import_id"], r["who"])] = str(r["value"]).rpartition(
                f", {EXPORTED} ")[2]
        return {(r["item"], r["judge"]): {"at": r["at"], "source": r["source"] or "",
                                          "exported_at": exports.get((r["import_id"],
                                                                      r["judge"]), "")}
                for r in self.con.execute("SELECT item, judge, at, source, import_id FROM "
                                          "positions WHERE round=?", (round or self.round,))}

    # --- consensus --------------------------------------------------------------
    def resolve(self, decisions: list[Decision], by: str, round: int | None = None,
                expect: dict[str, int] | None = None) -> int:
        """Record consensus decisions (one transaction), checked with the consensus so far.

        ``expect`` maps items to the version the caller saw (:meth:`item_version`); if
        one has changed since, nothing is recorded (:class:`StaleError`).

        The checks run in the write's transaction, on the run and consensus as they are
        once the write lock is held: checked before it, two decisions saved at the same
        moment (a split's new category each, two merges into each other) would each be
        checked without the other and both be recorded.
        """
        with self.transaction():
            self._sync_domains()
            self._resolve(decisions, by, round or self.round, expect)
        self._sync_domains()
        return len(decisions)

    def _resolve(self, decisions: list[Decision], by: str, round: int,
                 expect: dict[str, int] | None) -> None:
        """:meth:`resolve`, in its transaction."""
        decisions = self._split_targets(decisions, round)
        errors = []
        for d in decisions:
            errors += [f"{d.source or d.item}: {e}" for e in check_decision(d, self.run)]
        # against all that stands, the judges' agreed positions too, not only the decisions
        # recorded one by one (pipeline/review/settle.py)
        before = self.standing(round)
        errors += [f"{d.source or d.item}: {e}" for d in decisions
                   if (e := _replaces_a_domains_other_change(before.get(d.item), d))]
        merged = {**before, **{d.item: d for d in decisions}}
        for cycle in merge_cycles(list(merged.values())):
            chain = " -> ".join([cycle[0].ident] + [c.target for c in cycle])
            errors.append(f"{decisions[0].source or decisions[0].item}: the consensus would "
                          f"merge in a cycle ({cycle[0].kind}s {chain})")
        errors += nesting_problems(list(merged.values()))
        errors += rejected_target_problems(list(merged.values()))
        errors += moved_into_rejected_problems(list(merged.values()))
        errors += core_idea_merge_problems(list(merged.values()))
        errors += overlap_problems(list(merged.values()))
        errors += split_outside_problems(decisions, merged, self.run)
        if errors:
            raise ReviewError(listing(errors), hint="nothing was recorded")
        for item, version in (expect or {}).items():
            self._check_version(item, version)
        for d in decisions:
            old = self.con.execute("SELECT * FROM consensus WHERE round=? AND item=?",
                                   (round, d.item)).fetchone()
            previous = Decision.from_row(old).to_json() if old else None
            self.con.execute(
                "INSERT OR REPLACE INTO consensus VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (round, d.item, *_decision_values(d), by, now_utc()))
            self._log(by, "consensus", d.item, d.to_json(), previous, round)

    def _split_targets(self, decisions: list[Decision], round: int) -> list[Decision]:
        """Theme splits with the id of the category they make, given here, when the
        consensus is recorded (as a domain split's new domain gets its id): the new
        category is then an item of the review, which the judges rename, merge, move
        segments to or audit like any other, and its id does not change at apply. The
        id is the theme's own split id (:meth:`RunItems.split_category_id`), the one a
        split the judges agreed on without recording it has at apply, so recording it
        later changes nothing. A split recorded again keeps the id it had (one recorded
        before split ids were the theme's keeps its number)."""
        out = []
        for d in decisions:
            if d.kind == "theme" and d.decision == "split" and not d.target:
                old = self.con.execute("SELECT target FROM consensus WHERE item=? AND "
                                       "decision='split' ORDER BY round DESC LIMIT 1",
                                       (d.item,)).fetchone()
                if old is not None and str(old["target"] or "").isdigit():
                    d = replace(d, target=str(old["target"]))
                else:
                    d = replace(d, target=str(self.run.split_category_id(d.ident)))
            out.append(d)
        return out

    def standing(self, round: int | None = None) -> dict[str, Decision]:
        """The consensus as it stands in ``round`` (default: the current one), {item:
        Decision}: the recorded decisions, the items the judges agreed on, the domains a
        split made and what the round before settled that nobody changed
        (:func:`pipeline.review.settle.settle`), less the core idea merges between domains
        that are not merged (:func:`~pipeline.review.settle.blocked_merges`)."""
        round = round or self.round
        judges, positions = self.judges(round), self.positions(round)
        explicit, by = self.consensus(round), self.consensus_by(round)
        baseline = self.standing(round - 1) if round > 1 else {}
        made = made_by_splits(explicit, by, theme_domains(self.run))
        out = {}
        for item in self.run.items() + touched_items(positions, explicit, baseline):
            pos = {j: positions.get(item, {})[j] for j in judges if j in positions.get(item, {})}
            _, decision, _ = settle(item, pos, judges, explicit, by, made, baseline.get(item),
                                    round)
            if decision is not None:
                out[item] = decision
        # a core idea merge between domains that are not merged does not stand (blocked)
        for item in blocked_merges(out):
            del out[item]
        return out

    def consensus(self, round: int | None = None) -> dict[str, Decision]:
        """The recorded (explicit) consensus decisions: {item: Decision}."""
        return {r["item"]: Decision.from_row(r) for r in self.con.execute(
            "SELECT * FROM consensus WHERE round=? ORDER BY item", (round or self.round,))}

    def consensus_by(self, round: int | None = None) -> dict[str, str]:
        return {r["item"]: r["by"] for r in self.con.execute(
            "SELECT item, by FROM consensus WHERE round=?", (round or self.round,))}

    def consensus_times(self, last: int | None = None) -> dict[str, str]:
        """{item: when its latest consensus up to round ``last`` (default: the current
        one) was recorded}: the time a decision the judges agreed (a core idea they
        wrote, a theme they rejected) was written, for the notes an export makes of it."""
        last = last or self.round
        return {r["item"]: r["at"] for r in self.con.execute(
            "SELECT item, at FROM consensus WHERE round <= ? ORDER BY round, at", (last,))}

    def decision_comments(self, last: int | None = None) -> list[dict]:
        """The comments written with a decision in rounds 1 to ``last`` (default: the
        current one), oldest round first: ``{round, item, by, comment, decision,
        consensus, at}`` (``at``: when it was recorded), where ``consensus`` says
        whether the comment came with a consensus decision (``by`` is who recorded
        it) or with a judge's own position (``by`` is the judge). A round's consensus
        stands on the round before's, so a reason recorded in round 1 is nowhere in
        round 2's consensus: the record of why the panel decided is every round's,
        kept apart from what a judge wrote for their position."""
        last = last or self.round
        out = []
        for table, who, panel in (("consensus", "by", True), ("positions", "judge", False)):
            for r in self.con.execute(f"SELECT * FROM {table} WHERE round <= ? AND "
                                      f"comment IS NOT NULL AND comment != '' "
                                      f"ORDER BY round, item, {who}", (last,)):
                out.append({"round": int(r["round"]), "item": r["item"], "by": r[who],
                            "comment": r["comment"], "decision": Decision.from_row(r),
                            "consensus": panel, "at": r["at"]})
        return sorted(out, key=lambda c: (c["round"], not c["consensus"]))

    # --- auditors -----------------------------------------------------------------
    def add_audit_comment(self, item: str, by: str, comment: str, round: int | None = None) -> None:
        if self.panel().get(by) != "auditor":
            raise ReviewError(f"{by!r} is not an auditor of this review "
                              f"(auditors: {', '.join(self.auditors()) or 'none'})"
                              + _meant(by, self.auditors()),
                              hint="add one with `consensa review export RUN ... --auditor NAME`")
        errors = self._check_item(item)
        if errors:
            raise ReviewError(errors[0])
        comment = typed_text(comment)
        if not comment.strip():
            raise ReviewError("the comment is empty")
        with self.transaction():
            self._add_comment(item, by, comment, round or self.round)

    def _check_item(self, item: str) -> list[str]:
        kind, _, ident = item.partition(":")
        known = {"theme": self.run.theme_ids, "domain": self.run.domain_ids,
                 "segment": self.run.segment_ids,
                 "core_idea": self.run.core_idea_ids,
                 "subcategory": self.run.subcategory_ids}.get(kind, set())
        if ident in known or (kind == "core_idea" and self.run.core_idea_writable(ident)):
            return []
        if kind == "subcategory":   # as `resolve` says it, with the ids to pick from
            return [unknown_subcategory(ident, self.run)]
        return [f"unknown item {kind} {ident!r}"]

    def _add_comment(self, item: str, by: str, comment: str, round: int) -> None:
        comment = typed_text(comment)
        self.con.execute("INSERT INTO audit_comments (round, item, by, comment, at) VALUES "
                         "(?, ?, ?, ?, ?)", (round, item, by, comment, now_utc()))
        self._log(by, "audit comment", item, comment, None, round)

    def audit_comments(self, round: int | None = None) -> dict[str, list[tuple[str, str]]]:
        out: dict[str, list[tuple[str, str]]] = {}
        for r in self.con.execute("SELECT item, by, comment FROM audit_comments WHERE round=? "
                                  "ORDER BY id", (round or self.round,)):
            out.setdefault(r["item"], []).append((r["by"], r["comment"]))
        return out

    def audit_comment_rows(self, round: int | None = None) -> dict[str, list[dict]]:
        """{item: [comment]} of a round, each comment a dict (id, by, comment, at) with
        ``answers``: {judge: their latest answer (answer, text, at)}; a judge who took
        their answer back (:meth:`undo_answer`) is left out."""
        round = round or self.round
        return self.audit_rounds(round, first=round).get(round, {})

    def audit_rounds(self, last: int | None = None, first: int = 1
                     ) -> dict[int, dict[str, list[dict]]]:
        """{round: {item: [comment]}} of rounds ``first`` to ``last`` (default: the
        current one), each comment as :meth:`audit_comment_rows` gives it: the whole
        audit trail in two queries."""
        last = last or self.round
        answers: dict[int, dict[str, dict]] = {}
        for r in self.con.execute("SELECT * FROM audit_answers WHERE round BETWEEN ? AND ? "
                                  "ORDER BY id", (first, last)):
            mine = answers.setdefault(r["comment_id"], {})
            if r["answer"] == "withdrawn":
                mine.pop(r["by"], None)
            else:
                mine[r["by"]] = dict(r)
        out: dict[int, dict[str, list[dict]]] = {}
        for r in self.con.execute("SELECT id, round, item, by, comment, at FROM audit_comments "
                                  "WHERE round BETWEEN ? AND ? ORDER BY round, id", (first, last)):
            row = {k: r[k] for k in ("id", "item", "by", "comment", "at")}
            out.setdefault(r["round"], {}).setdefault(r["item"], []).append(
                {**row, "answers": answers.get(r["id"], {})})
        return out

    def answer_audit(self, comment_id: int, by: str, answer: str, text: str = "") -> dict:
        """A judge's answer to an auditor's comment: ``accept`` it, or ``argue`` (with the
        reason in ``text``). A later answer of the same judge replaces theirs; all stay
        in the table and the audit log. Returns the comment answered."""
        if self.panel().get(by) != "judge":
            raise ReviewError(f"{by!r} is not a judge of this review "
                              f"(judges: {', '.join(self.judges()) or 'none'})"
                              + _meant(by, self.judges()))
        if answer not in ANSWERS:
            raise ReviewError(f"the answer is {answer!r}; it is one of: {', '.join(ANSWERS)}"
                              if answer else "choose an answer: accept or argue")
        text = typed_text(text).strip()
        if answer == "argue" and not text:
            raise ReviewError("say why you argue against the comment")
        with self.transaction():
            row = self.con.execute("SELECT * FROM audit_comments WHERE id=?",
                                   (int(comment_id),)).fetchone()
            if row is None:
                raise ReviewError(f"there is no audit comment {comment_id}")
            self.con.execute("INSERT INTO audit_answers (comment_id, round, item, by, answer, "
                             "text, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (row["id"], row["round"], row["item"], by, answer, text, now_utc()))
            self._log(by, "audit answer", row["item"],
                      f"{answer} comment {row['id']} ({row['by']})" + (f": {text}" if text else ""),
                      None, row["round"])
        return dict(row)

    def undo_answer(self, comment_id: int, by: str) -> dict:
        """Take back ``by``'s answer to a comment (recorded as ``withdrawn``: the comment
        is unanswered by them again, and the log keeps both)."""
        current = next((c for cs in self.audit_comment_rows(self._comment_round(comment_id))
                        .values() for c in cs if c["id"] == int(comment_id)), None)
        if current is None or by not in current["answers"]:
            raise ReviewError(f"{by} has no answer to audit comment {comment_id} to take back")
        with self.transaction():
            self.con.execute("INSERT INTO audit_answers (comment_id, round, item, by, answer, "
                             "text, at) VALUES (?, ?, ?, ?, 'withdrawn', '', ?)",
                             (current["id"], self._comment_round(comment_id), current["item"],
                              by, now_utc()))
            self._log(by, "audit answer undo", current["item"],
                      f"withdrew the answer to comment {current['id']}",
                      current["answers"][by]["answer"], self._comment_round(comment_id))
        return current

    def _comment_round(self, comment_id: int) -> int:
        row = self.con.execute("SELECT round FROM audit_comments WHERE id=?",
                               (int(comment_id),)).fetchone()
        if row is None:
            raise ReviewError(f"there is no audit comment {comment_id}")
        return int(row["round"])

    # --- rounds -------------------------------------------------------------------
    def next_round(self, by: str, closed: bool, round: int | None = None) -> int:
        """Close the current round and open the next one, which starts from this round's
        consensus (:func:`pipeline.review.agreement.review_status`). ``closed`` is whether
        every item of the round has its consensus; an open round is not closed.

        ``round`` is the round the caller means to close (the one its page showed; default:
        the open one). It is compared with the open round inside the write's transaction:
        two judges pressing "Start round 2" at the same moment would otherwise close round
        1 and then round 2, skipping a round nobody reviewed."""
        if not by.strip():
            raise ReviewError("say who closes the round")
        now = self.round if round is None else int(round)
        if not closed:
            raise ReviewError(f"round {now} is still open: some items have no consensus "
                              "decision yet", hint="see `consensa review status RUN`")
        with self.transaction():
            self.check_round(now)
            self.con.execute("UPDATE meta SET value=? WHERE key='round'", (str(now + 1),))
            self._log(by, "round closed", value=str(now), round=now)
            self._log(by, "round opened", value=str(now + 1), round=now + 1)
        return now + 1

    def check_round(self, round: int) -> None:
        """Refuse (:class:`StaleError`) when ``round``, the round a page or command was
        shown, is not the open round any more, naming who opened or reopened the open
        one: a judge told "someone else" goes looking for a person who may be
        themself, in another tab."""
        current = int(self.meta().get("round", "1"))
        if current == int(round):
            return
        row = self.con.execute("SELECT * FROM audit_log WHERE action IN ('round opened', "
                               "'round reopened') ORDER BY id DESC LIMIT 1").fetchone()
        change = dict(row) if row else {}
        who = change.get("who") or "another judge"
        did = "went back to it" if change.get("action") == "round reopened" else "started it"
        raise StaleError(f"round {round} is not the open round any more (round {current} "
                         f"is: {who} {did} meanwhile); nothing was changed", change=change,
                         hint=f"look at round {current} before closing it")

    def reopen_round(self, by: str) -> int:
        """Undo :meth:`next_round`: go back to the round before, as long as nothing was
        recorded in the new round yet (no position, consensus or comment). The log keeps
        the opening and its undoing."""
        now = self.round
        if now <= 1:
            raise ReviewError("round 1 is the first round: there is no round to go back to")
        with self.transaction():
            for table in ("positions", "consensus", "audit_comments"):
                if self.con.execute(f"SELECT 1 FROM {table} WHERE round=? LIMIT 1",
                                    (now,)).fetchone():
                    raise ReviewError(f"round {now} already holds decisions or comments, so it "
                                      "cannot be undone", hint="undo them first, or go on in "
                                      f"round {now}")
            self.con.execute("UPDATE meta SET value=? WHERE key='round'", (str(now - 1),))
            self._log(by, "round reopened", value=str(now - 1), previous=str(now),
                      round=now - 1)
        return now - 1

    def rounds(self) -> list[dict]:
        """Every round so far: {round, opened_at, closed_at, closed_by} (round 1 opened
        with the review)."""
        out = {1: {"round": 1, "opened_at": self.meta().get("created_at", ""),
                   "closed_at": "", "closed_by": ""}}
        for r in self.con.execute("SELECT * FROM audit_log WHERE action IN ('round closed', "
                                  "'round opened', 'round reopened') ORDER BY id"):
            n = int(r["value"])
            if r["action"] == "round reopened":  # the later round is undone
                out.pop(int(r["previous"]), None)
                out[n]["closed_at"] = out[n]["closed_by"] = ""
                continue
            entry = out.setdefault(n, {"round": n, "opened_at": "", "closed_at": "",
                                       "closed_by": ""})
            if r["action"] == "round opened":
                entry["opened_at"] = r["at"]
            else:
                entry["closed_at"], entry["closed_by"] = r["at"], r["who"]
        return [out[k] for k in sorted(out)]

    def audit_log(self) -> list[dict]:
        return [dict(r) for r in self.con.execute("SELECT * FROM audit_log ORDER BY id")]

    def imports(self) -> list[dict]:
        return [dict(r) for r in self.con.execute("SELECT * FROM imports ORDER BY import_id")]

    # --- versions (stale-write detection) -----------------------------------------
    def last_change(self, item: str, judge: str | None = None) -> dict | None:
        """The last audit-log row about ``item`` (with ``judge``: about their position)."""
        if judge is None:
            row = self.con.execute("SELECT * FROM audit_log WHERE item=? ORDER BY id DESC "
                                   "LIMIT 1", (item,)).fetchone()
        else:
            row = self.con.execute("SELECT * FROM audit_log WHERE item=? AND who=? AND "
                                   "action='position' ORDER BY id DESC LIMIT 1",
                                   (item, judge)).fetchone()
        return dict(row) if row else None

    def item_version(self, item: str, judge: str | None = None) -> int:
        """The id of the last audit-log row about ``item`` (0: never changed).

        With ``judge``: the last change of that judge's position on it only, so two
        judges recording their own positions on one item do not block each other.
        """
        change = self.last_change(item, judge)
        return int(change["id"]) if change else 0

    def item_versions(self, judge: str | None = None) -> dict[str, int]:
        """Every changed item's version, {item: last audit-log id} (as :meth:`item_version`;
        items never changed are left out: their version is 0)."""
        if judge is None:
            rows = self.con.execute("SELECT item, MAX(id) FROM audit_log WHERE item IS NOT NULL "
                                    "GROUP BY item")
        else:
            rows = self.con.execute("SELECT item, MAX(id) FROM audit_log WHERE item IS NOT NULL "
                                    "AND who=? AND action='position' GROUP BY item", (judge,))
        return {r[0]: int(r[1]) for r in rows}

    def _check_version(self, item: str, version: int, judge: str | None = None) -> None:
        change = self.last_change(item, judge)
        if (int(change["id"]) if change else 0) != int(version):
            what = f"{judge}'s position on " if judge else ""
            raise StaleError(
                f"{what}{self.run.label(item)} has changed since you opened it "
                f"({(change or {}).get('who', '?')}: {(change or {}).get('action', '?')} at "
                f"{str((change or {}).get('at', '?'))[:19].replace('T', ' ')} UTC); "
                "nothing was saved", item=item, change=change,
                hint="look at the item again, then save once more")

    # --- undo of consensus decisions -----------------------------------------------
    def _consensus_stack(self, round: int) -> list[dict]:
        """The consensus decisions of a round still in force, oldest first (undone ones
        are popped: an undo takes back the latest one not yet undone)."""
        stack: list[dict] = []
        for r in self.con.execute("SELECT * FROM audit_log WHERE round=? AND action IN "
                                  "('consensus', 'consensus undo') ORDER BY id", (round,)):
            if r["action"] == "consensus":
                stack.append(dict(r))
            elif stack:
                stack.pop()
        return stack

    def undo_target(self, round: int | None = None) -> dict | None:
        """The audit-log row of the consensus decision an undo would take back, or None."""
        stack = self._consensus_stack(round or self.round)
        return stack[-1] if stack else None

    def undo_consensus(self, by: str, expect: int | None = None,
                       round: int | None = None) -> dict:
        """Take back the last consensus decision: the item's consensus is what it was
        before (none, or the earlier decision). Logged as ``consensus undo``.

        ``expect`` is the audit-log id of the decision the caller means to undo; if a
        newer one was recorded (or it was undone already), nothing happens
        (:class:`StaleError`). Returns the audit-log row of the undone decision.
        """
        round = round or self.round
        if not by.strip():
            raise ReviewError("say who undoes the decision")
        with self.transaction():
            stack = self._consensus_stack(round)
            if not stack and expect is None:
                raise ReviewError(f"there is no consensus decision to undo in round {round}")
            if expect is not None and (not stack or int(stack[-1]["id"]) != int(expect)):
                # the change that made the undo stale is the round's latest consensus
                # decision or undo, not the decision now on top: that one can be the
                # person's own, under another judge's undo of the one they meant
                latest = dict(self.con.execute(
                    "SELECT * FROM audit_log WHERE round=? AND action IN ('consensus', "
                    "'consensus undo') ORDER BY id DESC LIMIT 1", (round,)).fetchone() or {})
                what = ("undid the one" if latest.get("action") == "consensus undo"
                        else "recorded one") + (f" on {self.run.label(latest['item'])}"
                                                if latest else "")
                now = (f"the last consensus decision is now the one on "
                       f"{self.run.label(stack[-1]['item'])} by {stack[-1]['who']}"
                       if stack else f"there is no consensus decision left to undo in round "
                       f"{round}")
                raise StaleError(f"{now}, not the one you meant to undo "
                                 f"({latest.get('who') or 'another judge'} {what} meanwhile); "
                                 "nothing was undone",
                                 item=stack[-1]["item"] if stack else "", change=latest,
                                 hint="look at the log again, then undo once more")
            target = stack[-1]
            item = target["item"]
            if target["previous"] is None:
                self.con.execute("DELETE FROM consensus WHERE round=? AND item=?", (round, item))
            else:
                earlier = [r for r in stack[:-1] if r["item"] == item]
                prev_by = earlier[-1]["who"] if earlier else by
                d = Decision.from_json(target["previous"])
                self.con.execute(
                    "INSERT OR REPLACE INTO consensus VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (round, item, *_decision_values(d), prev_by, now_utc()))
            self._log(by, "consensus undo", item, target["previous"], target["value"], round)
        self._sync_domains()
        return target


def _replaces_a_domains_other_change(old: Decision | None, new: Decision) -> str:
    """Why ``new``, a consensus on a domain, may not take the place of ``old``, the one
    that stands ("" if it may). A domain holds one consensus: a split recorded over a
    rename dropped the agreed name, and a rename recorded over a split undid the split
    (its new domain gone, its categories back), each without a word. Creating the new
    domain and reassigning its categories does what a split does and leaves the
    domain's own consensus as it is."""
    if old is None or new.kind != "domain" or old.key() == new.key():
        return ""
    instead = ("create the new domain and reassign its categories to it (each category's "
               "domain), which leaves the domain's own consensus as it is")
    if old.decision == "split" and new.decision != "split":
        return (f"the consensus on this domain is a split (categories "
                f"{', '.join(old.segments)} to domain {old.target} \"{old.new_name}\"); "
                f"recording '{new.describe()}' in its place would undo the split; to keep "
                f"both, undo the split first, record this, then {instead}")
    named = old.decision == "rename" or (old.decision == "accept" and (old.new_name
                                                                       or old.core_idea))
    if new.decision == "split" and named:
        return (f"the consensus on this domain is '{old.describe()}'; a split recorded in "
                f"its place would drop it; to split the domain and keep it, {instead}")
    return ""


def _decision_values(d: Decision) -> tuple:
    return (d.decision, d.new_name, d.target, d.domain, "\n".join(d.segments), d.core_idea,
            d.comment, d.source)


def _statements(script: str) -> list[str]:
    """Split the schema into statements (triggers contain ';' inside BEGIN ... END)."""
    out, buf = [], []
    for line in script.strip().splitlines():
        buf.append(line)
        text = "\n".join(buf)
        if sqlite3.complete_statement(text):
            out.append(text)
            buf = []
    return out


#: the tables and triggers SCHEMA creates: a store holding all of them needs no write to open
_SCHEMA_OBJECTS = tuple(re.findall(r"CREATE (?:TABLE|TRIGGER|INDEX|VIEW) IF NOT EXISTS (\w+)",
                                   SCHEMA))


def name_key(name: str) -> str:
    """A person's name as two spellings of it compare: case, spaces and punctuation
    aside ('Ana', 'ana_' and ' ana' are 'ana')."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", name).casefold() if ch.isalnum())


def closest_name(name: str, names: Iterable[str]) -> str:
    """The name of ``names`` that ``name`` looks like a typo of ("" when none does): the
    same but for case, spaces and punctuation, else the nearest by its letters."""
    names = list(names)
    same = [n for n in names if name_key(n) == name_key(name)]
    if same:
        return same[0]
    keys = {name_key(n): n for n in names}
    near = difflib.get_close_matches(name_key(name), list(keys), n=1, cutoff=0.75)
    return keys[near[0]] if near else ""


def _meant(name: str, names: Iterable[str]) -> str:
    """``; did you mean 'ana'?`` when ``name`` looks like a typo of one of ``names``."""
    close = closest_name(name, names)
    return f"; did you mean {close!r}?" if close else ""


def listing(errors: list[str], limit: int = 30) -> str:
    """Problems as one message: counted, one a line, the first ``limit`` shown."""
    shown = errors[:limit]
    more = f"\n  ... and {len(errors) - limit} more" if len(errors) > limit else ""
    head = "1 problem" if len(errors) == 1 else f"{len(errors)} problems"
    return f"{head}:\n  " + "\n  ".join(shown) + more
