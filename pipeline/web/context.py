"""What was said around a segment: the turns before and after it.

Two sources, best first:

* the transcripts themselves, read again the way the run read them (the paths and
  sha256 in ``manifest.json``'s ``inputs``, the run's ``ingest`` settings). A case is
  used only when its file is unchanged and every segment of the run is found at its
  offsets, so the page never shows text that differs from what the run analysed
  (a de-identified run, or an edited file, falls back to the second source);
* the run's own segments: the participant's turns the run kept, and the question
  each one answered.

Read lazily (at the first page that needs it) and once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import safeyaml
from ..review.model import RunItems


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
        self._turns: pd.DataFrame | None = None   # verified source turns
        self._texts: dict[str, str] = {}
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
                self._turns, self._texts = _source_turns(self.run)
            except Exception:  # noqa: BLE001 - any failure: fall back to the segments
                self._turns, self._texts = None, {}
            self._loaded = True

    @property
    def from_sources(self) -> set[str]:
        """The cases whose context comes from the transcripts themselves."""
        self._load()
        return set(self._texts)

    # --- the turns around one segment -------------------------------------------
    def around(self, segment_id: str, before: int = 2, after: int = 2) -> list[Turn]:
        self._load()
        if segment_id not in self._seg.index:
            return []
        s = self._seg.loc[segment_id]
        case = str(s["case_id"])
        if case in self._texts and self._turns is not None:
            turns = self._turns[self._turns["case_id"] == case]
            text = self._texts[case]
            rows = [(int(t.turn_index), str(t.speaker), str(t.role), int(t.start_char),
                     int(t.end_char)) for t in turns.itertuples()]
            idx = next((i for i, r in enumerate(rows) if r[0] == int(s["turn_index"])), None)
            if idx is not None:
                out = []
                for ti, speaker, role, start, end in rows[max(0, idx - before): idx + after + 1]:
                    own = ti == int(s["turn_index"])
                    if own:
                        a, b = int(s["start_char"]), int(s["end_char"])
                        pieces = (Piece(text[start:a]), Piece(text[a:b], True), Piece(text[b:end]))
                    else:
                        pieces = (Piece(text[start:end]),)
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


def _candidates(path: str, run: RunItems) -> list[Path]:
    p = Path(path)
    base = run.manifest.get("base_dir")
    out = [p, run.folder / p, run.folder.parent / p]
    if base:
        out.append(Path(str(base)) / p)
    return out


def _source_turns(run: RunItems) -> tuple[pd.DataFrame | None, dict[str, str]]:
    """The verified cases' turns and texts, read again from the transcripts."""
    from ..stages.ingest import IngestConfig, ingest

    inputs = [i for i in run.manifest.get("inputs") or [] if isinstance(i, dict)]
    paths = {}
    for item in inputs:
        for cand in _candidates(str(item.get("path", "")), run):
            if str(item.get("path", "")) and cand.is_file():
                paths[str(item.get("case_id"))] = cand.resolve()
                break
    if not paths:
        return None, {}
    section = {}
    cfg_file = run.folder / "config.yaml"
    if cfg_file.is_file():
        cfg = safeyaml.load(cfg_file.read_text(encoding="utf-8")) or {}
        section = dict(cfg.get("ingest") or {})
    section.update(paths=sorted({str(p) for p in paths.values()}), cases_table=None,
                   recursive=False)
    corpus = ingest(IngestConfig.model_validate(section), Path("/"))
    sha = {str(i.get("case_id")): i.get("sha256") for i in inputs}
    texts = {}
    for case, rows in run.segments.groupby("case_id"):
        src = corpus.sources.get(case)
        if src is None or (sha.get(case) and src.sha256 != sha[case]):
            continue
        if all(src.text[int(a):int(b)] == t for a, b, t in
               zip(rows["start_char"], rows["end_char"], rows["text"], strict=True)):
            texts[str(case)] = src.text
    turns = corpus.turns[corpus.turns["case_id"].isin(texts)].sort_values(
        ["case_id", "turn_index"])
    return turns, texts
