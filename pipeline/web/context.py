"""What was said around a segment: the turns before and after it.

Two sources, best first:

* the turns the run saved (``turns.parquet``: every turn ingest read, the
  interviewer's included, as the run analysed them, de-identified where the run
  was). A case is used only when every segment of the run is found at its offsets
  in its turn, so the page never shows text that differs from what the run analysed;
* the run's own segments, for a folder written before the turns were saved: the
  participant's turns the run kept, and the question each one answered.

Nothing reads the transcripts again: the run folder holds what the run knew
(pipeline/runfolder.py). Read lazily (at the first page that needs it) and once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import pandas as pd

from ..errors import ConsensaError
from ..review.model import RunItems
from ..runfolder import RunFolder

log = logging.getLogger("consensa.web")


@dataclass(frozen=True)
class Piece:
    text: str
    mark: bool = False      # the segment itself


@dataclass(frozen=True)
class Turn:
    turn_index: int
    speaker: str
    role: str
    pieces: tuple[Piece, ...]
    own: bool = False       # the turn the segment is in


class Context:
    """The turns around any segment of one run."""

    def __init__(self, run: RunItems) -> None:
        self.run = run
        self._lock = threading.Lock()
        self._turns: dict[str, pd.DataFrame] = {}   # case id -> its checked turns, in order
        self._loaded = False
        seg = run.segments
        self._seg = seg.set_index("segment_id", drop=False)
        self._by_case = {c: g.sort_values(["turn_index", "start_char"])
                         for c, g in seg.groupby("case_id", sort=False)}

    # --- loading ---------------------------------------------------------------
    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            try:
                turns = RunFolder(self.run.folder).turns()
            except ConsensaError as exc:        # a damaged file: the segments still serve
                log.warning("context from the run's segments only: %s", exc)
                turns = None
            if turns is not None:
                self._turns = _checked_turns(turns, self._by_case)
            self._loaded = True

    @property
    def from_turns(self) -> set[str]:
        """The cases whose context is the interview's own turns (saved by the run)."""
        self._load()
        return set(self._turns)

    # --- the turns around one segment -------------------------------------------
    def around(self, segment_id: str, before: int = 2, after: int = 2) -> list[Turn]:
        self._load()
        if segment_id not in self._seg.index:
            return []
        s = self._seg.loc[segment_id]
        turns = self._turns.get(str(s["case_id"]))
        if turns is not None:
            rows = [(int(t.turn_index), str(t.speaker), str(t.role), str(t.text),
                     int(t.start_char)) for t in turns.itertuples()]
            idx = next((i for i, r in enumerate(rows) if r[0] == int(s["turn_index"])), None)
            if idx is not None:
                out = []
                for ti, speaker, role, text, start in rows[max(0, idx - before): idx + after + 1]:
                    own = ti == int(s["turn_index"])
                    if own:
                        a, b = int(s["start_char"]) - start, int(s["end_char"]) - start
                        pieces = (Piece(text[:a]), Piece(text[a:b], True), Piece(text[b:]))
                    else:
                        pieces = (Piece(text),)
                    out.append(Turn(ti, speaker, role, tuple(p for p in pieces if p.text), own))
                return out
        return self._from_segments(s, before, after)

    def _from_segments(self, s, before: int, after: int) -> list[Turn]:
        """Turns rebuilt from the run's segments (participant turns) and their questions."""
        rows = self._by_case.get(s["case_id"])
        if rows is None:
            return []
        turns: dict[int, dict] = {}
        for r in rows.itertuples():
            t = turns.setdefault(int(r.turn_index), {"speaker": str(r.speaker),
                                                     "role": str(r.role), "pieces": []})
            t["pieces"].append(Piece(str(r.text), r.segment_id == s["segment_id"]))
            q = int(r.question_turn_index)
            if q >= 0 and q not in turns and str(r.question):
                turns[q] = {"speaker": "(question)", "role": "interviewer",
                            "pieces": [Piece(str(r.question))]}
        order = sorted(turns)
        own = int(s["turn_index"])
        idx = order.index(own)
        out = []
        for ti in order[max(0, idx - before): idx + after + 1]:
            t = turns[ti]
            pieces = []
            for i, p in enumerate(t["pieces"]):
                if i:
                    pieces.append(Piece(" "))
                pieces.append(p)
            out.append(Turn(ti, t["speaker"], t["role"], tuple(x for x in pieces if x.text),
                            ti == own))
        return out


def _checked_turns(turns: pd.DataFrame, segments: dict[str, pd.DataFrame]
                   ) -> dict[str, pd.DataFrame]:
    """The saved turns of each case whose every segment is found at its offsets in
    its turn (a case that fails is left to the segments)."""
    out = {}
    for case, rows in turns.groupby("case_id", sort=False):
        seg = segments.get(case)
        if seg is None:
            continue
        rows = rows.sort_values("turn_index")
        by_turn = {int(t): (int(a), str(x)) for t, a, x in
                   zip(rows["turn_index"], rows["start_char"], rows["text"], strict=True)}
        ok = True
        for t, a, b, text in zip(seg["turn_index"], seg["start_char"], seg["end_char"],
                                 seg["text"], strict=True):
            start, turn_text = by_turn.get(int(t), (0, None))
            if turn_text is None or turn_text[int(a) - start:int(b) - start] != text:
                ok = False
                break
        if ok:
            out[str(case)] = rows
    return out
