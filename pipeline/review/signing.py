"""Who a review workbook belongs to, signed: editing the hidden ``_meta`` sheet's
person (or role, or round) does not make a workbook someone else's.

A workbook's identity is its format, run id, person, role and round (the ``_meta``
fields :data:`SIGNED_FIELDS`). On export it gets ``signature``: an HMAC-SHA-256 of
that identity keyed by the review's secret, ``RUN/review/workbook.key`` (32 random
bytes, created once by the first export, readable by its owner only). The key is
never written into a workbook, the packet or any other export, so a judge who holds
the workbook cannot make a valid signature for another identity; the import
recomputes it and refuses a workbook whose ``_meta`` no longer matches.

Deleting the key makes every workbook out for the review unimportable (export
fresh ones); copying a run folder copies its key, so the copy's workbooks import
into either.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .model import ROLES, ReviewError, norm_id

KEY_NAME = "workbook.key"
KEY_BYTES = 32
#: the _meta fields the signature covers, in this order
SIGNED_FIELDS = ("format", "run_id", "person", "role", "round")


def key_path(run_folder: Path) -> Path:
    """The key sits beside the review database, not in the round folders handed out."""
    return Path(run_folder) / "review" / KEY_NAME


def ensure_key(run_folder: Path) -> bytes:
    """The review's key, created on first use.

    Created whole or not at all, never replaced: the random bytes are written and
    synced to a private temporary file (mode 0600 from the start) which is then
    hard-linked to the key's name; a link fails when the name exists, so of two
    exports running at once, one key wins and both use it.
    """
    path = key_path(run_folder)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{KEY_NAME}.", suffix=".tmp")
        try:  # mkstemp creates the file 0600; the link keeps that mode
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(KEY_BYTES))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another export made it first: use that one
            except OSError:
                # a file system without hard links: exclusive create still never replaces
                _create_exclusive(path, Path(tmp).read_bytes())
        finally:
            Path(tmp).unlink(missing_ok=True)
    return load_key(run_folder)


def _create_exclusive(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def load_key(run_folder: Path) -> bytes | None:
    """The review's key, or None when it has none (a review begun before workbooks
    were signed, or its key was deleted)."""
    path = key_path(run_folder)
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    if os.name == "posix" and stat.S_IMODE(info.st_mode) & 0o077:
        raise ReviewError("the review's workbook key can be read by other users of this "
                          f"computer (mode {stat.S_IMODE(info.st_mode):o})", path=path,
                          hint=f"make it private: chmod 600 {path}")
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise ReviewError(f"the review's workbook key cannot be read ({exc.strerror or exc})",
                          path=path, hint="import as the user who exported the workbooks") from None
    if len(key) != KEY_BYTES:
        raise ReviewError(f"the review's workbook key is damaged ({len(key)} bytes, not "
                          f"{KEY_BYTES})", path=path,
                          hint="delete it and export fresh workbooks with --force (the "
                          "workbooks out now cannot be imported any more)")
    return key


def signature(key: bytes, meta: Mapping[str, str]) -> str:
    """The HMAC-SHA-256 (hex) of a workbook's identity: the :data:`SIGNED_FIELDS` of
    ``meta``, as a JSON list (unambiguous: no value can run into the next). The round
    is taken as a number, so a spreadsheet that turned the text "2" into 2.0 still
    matches."""
    values = {k: str(meta.get(k, "")) for k in SIGNED_FIELDS}
    values["round"] = norm_id(values["round"])
    identity = json.dumps([values[k] for k in SIGNED_FIELDS], ensure_ascii=False)
    return hmac.new(key, identity.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WorkbookCheck:
    """Checks the ``_meta`` of workbooks being imported against their signature.

    ``people`` (name, role) and ``rounds`` are the identities the review knows; when a
    signature does not match, they are tried to name the field that was edited and
    what it said when the workbook was exported.
    """

    key: bytes | None = field(repr=False)
    run_folder: Path
    people: tuple[tuple[str, str], ...] = ()
    rounds: int = 1

    def problem(self, name: str, meta: Mapping[str, str]) -> str | None:
        """Why the workbook ``name`` with this ``_meta`` is not imported (None: it is
        signed and unchanged)."""
        where = f"{name}, sheet '_meta'"
        person = meta.get("person", "")
        if self.key is None:
            return (f"{where}: cannot be checked: this review has no workbook key "
                    f"({key_path(self.run_folder)} is missing); export fresh workbooks "
                    f"({export_command(self.run_folder, meta)}) and import those")
        given = str(meta.get("signature", "")).strip().lower()
        if not given:
            return (f"{where}, field 'signature': missing, so whose workbook this is cannot "
                    f"be checked; export a fresh one ({export_command(self.run_folder, meta)})")
        if _same(given, signature(self.key, meta)):
            return None
        original = self._exported_as(meta, given)
        if original is None:
            return (f"{where}, fields {', '.join(SIGNED_FIELDS)}: do not match the workbook's "
                    "signature (the _meta sheet was edited, or the workbook comes from another "
                    "review); import the workbook as it was exported, or export a fresh one "
                    f"({export_command(self.run_folder, meta)})")
        changed = [k for k in SIGNED_FIELDS if str(meta.get(k, "")) != original[k]]
        said = "; ".join(f"'{k}' was {original[k]!r} when exported, now {meta.get(k, '')!r}"
                         for k in changed)
        return (f"{where}, field{'s' if len(changed) > 1 else ''} "
                f"{', '.join(repr(k) for k in changed)}: edited ({said}); this is "
                f"{original['role']} {original['person']}'s workbook, so its rows are not "
                f"imported as the decisions of {person!r}. Import it under its own "
                f"{original['role']}, as {original['person']}'s (put the exported values back "
                f"in _meta), or, if {person!r} needs a workbook, export a fresh one "
                f"({export_command(self.run_folder, meta)})")

    def _exported_as(self, meta: Mapping[str, str], given: str) -> dict[str, str] | None:
        """The identity the signature was made for, among the ones this review knows."""
        people = set(self.people) | {(str(meta.get("person", "")), r) for r in ROLES}
        rounds = {str(r) for r in range(1, self.rounds + 1)} | {str(meta.get("round", ""))}
        for person, role in sorted(people):
            for rnd in sorted(rounds):
                candidate = {**{k: str(meta.get(k, "")) for k in SIGNED_FIELDS},
                             "person": person, "role": role, "round": rnd}
                if _same(given, signature(self.key, candidate)):
                    return candidate
        return None


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison; as bytes, since a pasted signature may not be ASCII."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("ascii"))


def export_command(run_folder: Path, meta: Mapping[str, str]) -> str:
    person, role = str(meta.get("person", "")) or "NAME", str(meta.get("role", ""))
    which = {"auditor": f"--auditor {person}",
             "consensus": f"--consensus --by {person}"}.get(role, f"--judges {person}")
    return f"`consensa review export {run_folder} {which} --force`"
