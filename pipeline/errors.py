"""Errors Consensa reports to its users.

Every problem a user can fix (a broken transcript, a typo in a config) is raised
as a :class:`ConsensaError`. The CLI prints its message and exits with status 2,
never a traceback. The message names the file (and line, field or key where one
applies) and says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ConsensaError(Exception):
    """A problem with the user's input or settings, explained in words."""

    exit_status = 2

    def __init__(self, message: str, *, path: str | Path | None = None,
                 line: int | None = None, field: str | None = None,
                 hint: str | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.hint = hint
        self.reason = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.path:
            where = self.path
            if self.line is not None:
                where += f", line {self.line}"
            if self.field:
                where += f", field '{self.field}'"
            where += ": "
        elif self.field:
            where = f"'{self.field}': "
        text = where + self.reason
        if self.hint:
            text += f"\n  What to do: {self.hint}"
        return text


class InputError(ConsensaError):
    """A transcript, table or codes file that cannot be read as it is."""


class ConfigError(ConsensaError):
    """A run config that is not valid."""


@dataclass(frozen=True)
class Skipped:
    """Something left out of a run, and why. Counted in the manifest and report.

    ``kept``: nothing was left out; the note says what was changed in, or is doubtful
    about, text that was read (a cue kept without its times, a line read as
    Windows-1252). Such notes are listed with the others, so that nothing changes
    without a word, but counted apart: a summary that calls them skipped says that
    text was lost when it was not. The manifest writes ``"kept": true`` on them only,
    so a manifest from before has every note as left out, as it was.

    ``count``: how many items one note stands for ("341 turns: T01:3, ..."). Counts are
    what summaries add up: a note of 341 backchannel turns is not one item. The
    manifest writes ``"count"`` only where it is not 1."""

    what: str      # the file (or file:line) that was skipped
    reason: str    # why, in words a researcher understands
    stage: str = "ingest"
    kept: bool = False
    count: int = 1

    def as_dict(self) -> dict[str, str | bool | int]:
        out: dict[str, str | bool | int] = {"what": self.what, "reason": self.reason,
                                            "stage": self.stage}
        if self.kept:
            out["kept"] = True
        if self.count != 1:
            out["count"] = int(self.count)
        return out


def note_count(note) -> int:
    """How many items a note (:class:`Skipped` or the manifest's dict of one) stands for."""
    n = note.get("count", 1) if isinstance(note, dict) else getattr(note, "count", 1)
    return int(n) if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else 1


def left_out_and_kept(notes) -> tuple[int, int]:
    """(items left out, notes on text that was kept) among ``notes``: :class:`Skipped`
    or the manifest's dicts of them. Items are counted (:func:`note_count`), notes on
    kept text one each."""
    left = kept = 0
    for n in notes:
        if n.get("kept") is True if isinstance(n, dict) else getattr(n, "kept", False):
            kept += 1
        else:
            left += note_count(n)
    return left, kept
