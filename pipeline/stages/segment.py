"""Segment stage: speaker turns -> meaning units.

A participant turn is split into sentences (spaCy's rule-based sentencizer on a
blank English pipeline: no model needed) and consecutive sentences are grouped
into meaning units of bounded length. Backchannels ("mm-hmm", "yeah", "right")
and turns of roles that are not analysed (the interviewer, by default) do not
become segments; each is counted, as are units of fewer than ``min_words`` words
and units of transcriber notes and line numbers alone ("[inaudible] [crosstalk]",
"63 64 65 66 67 68": an export's line numbers, or a slide's numbering that automatic
transcription took down), which hold no word of the speaker's. Every participant
segment carries the interviewer question it answers.
"""

from __future__ import annotations

import bisect
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from ..cache import Cache, digest, stage_key
from ..errors import Skipped
from ..registry import segmenters
from ..types import (
    LEFT_OUT_COLUMNS,
    SEGMENT_COLUMNS,
    TURN_COLUMNS,
    Corpus,
    Segmentation,
    check_columns,
)

#: Words that, alone or together, make an utterance a backchannel.
BACKCHANNEL_WORDS = frozenset("""
mm mmm mhm hm hmm mm-hmm mm-hm mhmm uh-huh uh huh um umm uhm er erm ah oh ooh wow
yeah yea yes yep yup ya right okay ok sure exactly totally absolutely true
indeed alright gotcha i see got it sounds good that's right thats right of course
no nope nah really interesting great good fine cool thanks thank you sorry
""".split())

_WORD = re.compile(r"[\w'’-]+")
_WORD_CHAR = re.compile(r"\w")


#: how many turns or units a skipped entry names (case:turn); the count gives the rest
SKIPPED_LISTED = 20


def _listed(where: list[str]) -> str:
    """``T03:12, T07:40`` (at most :data:`SKIPPED_LISTED`, then `` ...``)."""
    return ", ".join(where[:SKIPPED_LISTED]) + (" ..." if len(where) > SKIPPED_LISTED else "")


def is_backchannel(text: str, extra_words: Iterable[str] = ()) -> bool:
    """True when every word of ``text`` is a backchannel word (and there is one)."""
    words = _WORD.findall(text)
    if not words or len(words) > 6:
        return False
    vocab = _backchannel_vocab(tuple(extra_words))
    return all(w.lower().replace("’", "'") in vocab for w in words)


@lru_cache(maxsize=32)
def _backchannel_vocab(extra_words: tuple[str, ...]) -> frozenset[str]:
    return BACKCHANNEL_WORDS | {w.lower() for w in extra_words}


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


def _has_words(unit: str) -> bool:
    """Whether a word is left in ``unit`` once its transcriber notes and line numbers
    are removed (:func:`pipeline.stages.naming.strip_transcriber_notes`)."""
    from .naming import strip_transcriber_notes

    return _WORD_CHAR.search(strip_transcriber_notes(unit)) is not None


def _questions(turns: pd.DataFrame, extra_words: tuple[str, ...]) -> tuple[list[str], list[int]]:
    """For each turn, the latest substantive interviewer turn before it in its case."""
    texts: list[str] = []
    idxs: list[int] = []
    last_case, last_q, last_i = None, "", -1
    for case, role, text, ti in zip(turns["case_id"], turns["role"], turns["text"],
                                    turns["turn_index"]):
        if case != last_case:
            last_case, last_q, last_i = case, "", -1
        texts.append(last_q)
        idxs.append(last_i)
        if role == "interviewer" and not is_backchannel(text, extra_words) \
                and (count_words(text) >= 4 or "?" in text):
            last_q, last_i = text, int(ti)
    return texts, idxs


class _SegmenterBase(ABC):
    """What the two segmenters share: which turns are analysed, and the question."""

    roles: tuple[str, ...]
    min_words: int
    backchannels: tuple[str, ...]
    #: whether finding the spans costs enough to be worth keeping in the cache
    cache_spans: bool = False

    def segment(self, corpus: Corpus, memory: Cache | None = None) -> Segmentation:
        """Cut the corpus's turns into segments.

        ``memory`` (scikit-learn's name for it): a :class:`~pipeline.cache.Cache` where
        the units' character spans are kept, and taken from when the same segmenter
        (name, parameters, code) saw the same turns before; None keeps nothing. Only
        the spans' integers are kept, never the text (:func:`spans_to_arrays`).
        """
        turns = corpus.turns
        check_columns(turns, TURN_COLUMNS, "the turns table")
        turns = turns.sort_values(["case_id", "turn_index"], kind="stable").reset_index(drop=True)
        questions, q_idx = _questions(turns, tuple(self.backchannels))
        analysed = turns["role"].isin(list(self.roles)).to_numpy()
        counts = {"turns": len(turns), "turns_not_analysed_role": int((~analysed).sum()),
                  "turns_backchannel": 0, "units_too_short": 0, "units_no_words": 0}
        rows: list[dict] = []
        keep_idx = np.flatnonzero(analysed)
        # plain lists, one per column: reading a turn is then a list index (pandas'
        # iloc costs ~50 us a row, to_dict("records") a dict a row)
        col = {c: turns[c].tolist() for c in ("case_id", "turn_index", "speaker", "role", "text",
                                              "start_char", "start_time", "end_time",
                                              "source_file")}
        texts = [col["text"][i] for i in keep_idx]
        if memory is not None and self.cache_spans:
            spans_per_turn, _ = memory.cached(
                "spans", stage_key(self, digest(texts)), lambda: self._spans(texts),
                spans_to_arrays, lambda arrays: spans_from_arrays(arrays, texts))
        else:
            spans_per_turn = self._spans(texts)
        # where each turn or unit left out is (case:turn, and the unit's characters in the
        # source), so that the counts the report gives trace back to the transcripts
        left_turns: list[str] = []
        left_units: list[str] = []
        wordless: list[str] = []
        left_rows: list[tuple] = []         # every one of them, for skipped.csv
        backchannel = "backchannel (e.g. 'mm-hmm', 'yeah'): not a theme"
        too_short = f"fewer than {self.min_words} words"
        no_words = "no words once transcriber notes and line numbers are removed"

        def left(i: int, s: int, e: int, text: str, reason: str) -> None:
            at = int(col["start_char"][i])
            left_rows.append((col["case_id"][i], int(col["turn_index"][i]), col["speaker"][i],
                              col["role"][i], at + s, at + e, col["source_file"][i], reason,
                              text[s:e]))

        for i, text, spans in zip(keep_idx, texts, spans_per_turn):
            if is_backchannel(text, self.backchannels):
                counts["turns_backchannel"] += 1
                left_turns.append(f"{col['case_id'][i]}:{int(col['turn_index'][i])}")
                left(i, 0, len(text), text, backchannel)
                continue
            turn = {c: v[i] for c, v in col.items()}
            pieces = corpus.times.get(turn["case_id"])
            n = 0
            for s, e in spans:
                unit = text[s:e]
                nw = count_words(unit)
                if nw < self.min_words or not _has_words(unit):
                    # too short, or transcriber notes and line numbers alone ("[inaudible]
                    # [crosstalk] [laughs] [inaudible]", "63 64 65 66 67 68"): no words of
                    # the speaker's, which every case's export may hold alike
                    short = nw < self.min_words
                    counts["units_too_short" if short else "units_no_words"] += 1
                    at = int(turn["start_char"])
                    (left_units if short else wordless).append(
                        f"{turn['case_id']}:{int(turn['turn_index'])} (chars {at + s}-{at + e})")
                    left(i, s, e, text, too_short if short else no_words)
                    continue
                at = int(turn["start_char"])
                start_time, end_time = (pieces and span_times(pieces, at + s, at + e)) or \
                    (turn["start_time"], turn["end_time"])
                rows.append({
                    "segment_id": f"{turn['case_id']}:{int(turn['turn_index'])}:{n}",
                    "case_id": turn["case_id"], "turn_index": int(turn["turn_index"]),
                    "speaker": turn["speaker"], "role": turn["role"], "text": unit,
                    "start_char": at + s, "end_char": at + e,
                    "start_time": start_time, "end_time": end_time,
                    "source_file": turn["source_file"], "question": questions[i],
                    "question_turn_index": q_idx[i], "n_words": nw})
                n += 1
        segments = pd.DataFrame(rows, columns=list(SEGMENT_COLUMNS))
        segments = segments.astype({"turn_index": "int64", "start_char": "int64",
                                    "end_char": "int64", "question_turn_index": "int64",
                                    "n_words": "int64", "start_time": "float64",
                                    "end_time": "float64"})
        counts["segments"] = len(segments)
        skipped = []
        if counts["turns_backchannel"]:
            skipped.append(Skipped(f"{counts['turns_backchannel']} turns: "
                                   + _listed(left_turns), backchannel, "segment",
                                   count=counts["turns_backchannel"]))
        if counts["units_too_short"]:
            skipped.append(Skipped(f"{counts['units_too_short']} units: " + _listed(left_units),
                                   too_short, "segment", count=counts["units_too_short"]))
        if counts["units_no_words"]:
            skipped.append(Skipped(f"{counts['units_no_words']} units: " + _listed(wordless),
                                   no_words, "segment", count=counts["units_no_words"]))
        # a case whose analysed speech gave no segment drops out of the study: name it
        spoken = dict.fromkeys(col["case_id"][i] for i in keep_idx)
        kept = set(segments["case_id"])
        lost = [str(c) for c in spoken if c not in kept]
        counts["cases_without_segments"] = len(lost)
        if lost:
            skipped.append(Skipped(
                f"{len(lost)} case(s): {', '.join(lost[:20])}{' ...' if len(lost) > 20 else ''}",
                f"no segment: every {'/'.join(self.roles)} turn was a backchannel, shorter "
                f"than {self.min_words} words or notes alone, so the case is not analysed "
                "(check its speaker labels and roles)", "segment", count=len(lost)))
        left_out = pd.DataFrame(left_rows, columns=list(LEFT_OUT_COLUMNS)).astype(
            {"turn_index": "int64", "start_char": "int64", "end_char": "int64"})
        return Segmentation(segments=segments, skipped=tuple(skipped), counts=counts,
                            left_out=left_out)

    @abstractmethod
    def _spans(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        """Character spans of the units of each text, in order."""


def span_times(pieces: tuple[tuple[int, int, float, float], ...], start: int,
               end: int) -> tuple[float, float] | None:
    """``(start_time, end_time)`` of the characters ``start:end`` of a case's source:
    from the earliest start to the latest end of the timed pieces (``Corpus.times``:
    the cues or table rows its turns were merged from) that share a character with
    them, NaN where none of those pieces has a time; None when no piece holds them
    (the turn's times are then used). Every segment of a 600-word
    turn read from a .vtt carried the whole turn's four minutes, and a team going
    back to the recording found the quote in none of them.

    ``pieces`` are in text order and do not overlap, so the first one is found by
    bisection and the walk stops at the first piece past ``end``."""
    starts, ends = [], []
    for i in range(max(bisect.bisect_right(pieces, (start, math.inf)) - 1, 0), len(pieces)):
        a, b, t0, t1 = pieces[i]
        if a >= end:
            break
        if b > start:
            starts.append(t0)
            ends.append(t1)
    if not starts:
        return None
    begun = [t for t in starts if not math.isnan(t)]
    ended = [t for t in ends if not math.isnan(t)]
    return (min(begun) if begun else math.nan, max(ended) if ended else math.nan)


def _trim(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


#: A line of a text, its line break excluded: where a sentence too long for one unit is
#: cut first (:meth:`SentenceSegmenter._cut_long`)
_LINE_BREAK = re.compile(r"[^\r\n]+")

#: Words that open a clause in English speech: where a line too long for one unit and
#: without a comma is cut, before the word (:meth:`SentenceSegmenter._cut_line`)
CLAUSE_WORDS = frozenset("""
and but so because cause 'cause or then when whenever while after before until since
although though if unless whereas which where
""".split())

_OPEN_CLOSE = {"[": "]", "(": ")"}


def _mend_brackets(text: str, sents: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Move a sentence boundary that falls inside a bracketed note back before the
    bracket: spaCy's sentencizer ends "It was caring. [" and starts the next sentence
    with "laughs] That's ...", and a quote must not begin or end half-way through
    a transcriber's note."""
    out = [list(x) for x in sents]
    for i in range(len(out) - 1):
        s, e = out[i]
        for opening, closing in _OPEN_CLOSE.items():
            at = text.rfind(opening, s, e)
            if at < 0 or text.find(closing, at, e) >= 0:
                continue                              # no bracket left open at the end
            nxt_s, nxt_e = out[i + 1]
            if text.find(closing, nxt_s, nxt_e) < 0:
                continue                              # not closed in the next one either
            if at > s:
                out[i][1] = at
                out[i + 1][0] = at
            break
    return [(s, e) for s, e in out if s < e]


#: The most characters spaCy is given at once. spaCy refuses a text longer than its
#: ``nlp.max_length`` (1,000,000 by default), and its memory grows with the text (about
#: 120 MB a million characters with the sentencizer), so a longer turn (a whole recording
#: transcribed without punctuation, say) is sentencized in pieces of at most this many
#: characters instead of raising the limit to the turn's length.
MAX_DOC_CHARS = 1_000_000

_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*\s")


def _pieces(text: str, limit: int) -> list[tuple[int, int]]:
    """``text`` as consecutive ``(start, end)`` pieces of at most ``limit`` characters,
    each ending where a sentence most likely ends: after the last ". " (or "! ", "? ")
    in the second half of the piece, else after its last line break, else after its last
    space, else (one "word" of half a million characters) at the limit. A piece's end
    then ends a sentence, which is where the sentencizer would mostly have ended one."""
    out = []
    s = 0
    while len(text) - s > limit:
        lo, hi = s + max(limit // 2, 1), s + limit
        cut = -1
        for match in _SENTENCE_END.finditer(text, lo, hi):
            cut = match.end()
        if cut < 0:
            cut = max(text.rfind(c, lo, hi) for c in "\n\r") + 1 or \
                max(text.rfind(c, lo, hi) for c in " \t\f\v\u00a0") + 1 or hi
        out.append((s, cut))
        s = cut
    out.append((s, len(text)))
    return out


def _sentences(nlp, texts: list[str], batch_size: int) -> Iterator[list[tuple[int, int]]]:
    """The sentencizer's ``(start, end)`` sentences of each text, in order; a text longer
    than :data:`MAX_DOC_CHARS` is sentencized piece by piece (see :func:`_pieces`)."""
    limit = min(nlp.max_length, MAX_DOC_CHARS)
    docs = iter(nlp.pipe((t for t in texts if len(t) <= limit), batch_size=batch_size))
    for text in texts:
        if len(text) <= limit:
            yield [(x.start_char, x.end_char) for x in next(docs).sents]
            continue
        sents: list[tuple[int, int]] = []
        for a, b in _pieces(text, limit):
            sents.extend((a + x.start_char, a + x.end_char) for x in nlp(text[a:b]).sents)
        yield sents


@segmenters.register("consensa.SentenceSegmenter.v1")
class SentenceSegmenter(_SegmenterBase):
    """Sentences grouped into meaning units of at most ``max_words`` words.

    Sentences are added to a unit until it reaches ``target_words`` or the next
    sentence would pass ``max_words``. A single sentence longer than ``max_words``
    (run-on speech is common in transcripts, and speech recognition often writes no
    full stop at all) is cut at its line breaks (a subtitle file's cue boundaries),
    then at a comma, semicolon or dash near the limit, else before a word opening a
    clause ("and", "because"), else at a word boundary. Backchannel sentences at the edges of
    a unit ("Yeah. So what happened was ...") are trimmed off.
    """

    cache_spans = True      # spaCy's import and sentencizer: ~2 s for the demo study

    def __init__(self, roles: tuple[Literal["participant", "interviewer", "other"], ...] = ("participant",),
                 target_words: Annotated[int, Field(ge=1, le=10_000)] = 40,
                 max_words: Annotated[int, Field(ge=1, le=10_000)] = 80,
                 min_words: Annotated[int, Field(ge=0, le=10_000)] = 4,
                 backchannels: tuple[str, ...] = (),
                 batch_size: Annotated[int, Field(ge=1, le=100_000)] = 256) -> None:
        self.roles = roles
        self.target_words = target_words
        self.max_words = max_words
        self.min_words = min_words
        self.backchannels = backchannels
        self.batch_size = batch_size

    @staticmethod
    def params_problem(params: dict) -> str | None:
        """The rule between the sizes, checked when the config is (pipeline/registry.py)."""
        lo, mid, hi = params["min_words"], params["target_words"], params["max_words"]
        if not 0 < lo <= mid <= hi:
            return (f"need 0 < min_words <= target_words <= max_words, got {lo}, {mid}, {hi}: "
                    "set them in that order")
        return None

    def _spans(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        from .nlp import sentencizer

        if not 0 < self.min_words <= self.target_words <= self.max_words:
            from ..errors import ConfigError
            raise ConfigError("segment: need 0 < min_words <= target_words <= max_words, got "
                              f"{self.min_words}, {self.target_words}, {self.max_words}")
        nlp = sentencizer()
        out = []
        for text, found in zip(texts, _sentences(nlp, texts, self.batch_size)):
            sents: list[tuple[int, int]] = []
            for sent in _mend_brackets(text, found):
                s, e = _trim(text, sent[0], sent[1])
                if s < e:
                    sents.extend(self._cut_long(text, s, e))
            out.append(self._group(text, sents))
        return out

    def _cut_long(self, text: str, s: int, e: int) -> list[tuple[int, int]]:
        """``text[s:e]``, one sentence of more than ``max_words`` words, cut into pieces
        of at most ``max_words`` words: first at its line breaks, then each line still
        too long at a clause boundary (:meth:`_cut_line`); :meth:`_group` makes units of
        the pieces as it does of sentences.

        Speech recognition writes long turns without a full stop, so a whole answer is
        one "sentence", and it was cut every ``max_words`` words mid-phrase ("he would
        call call me out when i was | avoiding things"). Its line breaks are where it
        paused: in a subtitle file each cue is a line of its turn (a speaker's cues are
        joined with line breaks), in a transcript a new paragraph or line.
        """
        if count_words(text[s:e]) <= self.max_words:
            return [(s, e)]
        pieces: list[tuple[int, int]] = []
        for line in _LINE_BREAK.finditer(text, s, e):
            a, b = _trim(text, *line.span())
            if a < b:
                pieces.extend(self._cut_line(text, a, b))
        return pieces

    def _cut_line(self, text: str, s: int, e: int) -> list[tuple[int, int]]:
        """``text[s:e]`` cut into pieces of at most ``max_words`` words, each ending at the
        last comma, semicolon or dash in its second half, else before the last word in
        its second half that opens a clause (:data:`CLAUSE_WORDS`: "and", "because",
        "when"; unpunctuated speech has no comma), else after its last word.

        The words are found once and a cursor walks them, so a turn of any length (a
        whole unpunctuated recording) costs time linear in its length. Re-finding the
        words after each cut would give the same words, because a cut always falls on
        a non-word character (after a comma or dash, before a word, or where a whole
        word ends), but costs time quadratic in the length.
        """
        words = [m.span() for m in _WORD.finditer(text, s, e)]
        starts = [w[0] for w in words]
        ends = [w[1] for w in words]
        pieces = []
        first = 0                                    # index of the first word at or after s
        while len(ends) - first > self.max_words:
            limit = ends[first + self.max_words - 1]
            floor = ends[first + self.max_words // 2]
            cut = max(text.rfind(c, floor, limit) for c in ",;–—")
            if cut >= floor:
                cut += 1
            else:
                # before a clause's first word, the piece keeping more than half the words
                cut = next((starts[j] for j in range(first + self.max_words,
                                                     first + self.max_words // 2, -1)
                            if text[starts[j]:ends[j]].lower() in CLAUSE_WORDS), limit)
            a, b = _trim(text, s, cut)
            pieces.append((a, b))
            s, e = _trim(text, cut, e)
            while first < len(starts) and starts[first] < s:
                first += 1
        if s < e:
            pieces.append((s, e))
        return pieces

    def _group(self, text: str, sents: list[tuple[int, int]]) -> list[tuple[int, int]]:
        units: list[list[tuple[int, int]]] = []
        current: list[tuple[int, int]] = []
        words = 0
        for s, e in sents:
            n = count_words(text[s:e])
            if current and (words >= self.target_words or words + n > self.max_words):
                units.append(current)
                current, words = [], 0
            current.append((s, e))
            words += n
        if current:
            # a short tail joins the unit before it when that stays within bounds
            tail_words = sum(count_words(text[s:e]) for s, e in current)
            if units and tail_words < self.min_words and \
                    sum(count_words(text[s:e]) for s, e in units[-1]) + tail_words <= self.max_words:
                units[-1].extend(current)
            else:
                units.append(current)
        spans = []
        for unit in units:
            while len(unit) > 1 and is_backchannel(text[unit[0][0]:unit[0][1]], self.backchannels):
                unit = unit[1:]
            while len(unit) > 1 and is_backchannel(text[unit[-1][0]:unit[-1][1]], self.backchannels):
                unit = unit[:-1]
            spans.append((unit[0][0], unit[-1][1]))
        return spans


@segmenters.register("consensa.TurnSegmenter.v1")
class TurnSegmenter(_SegmenterBase):
    """One segment per turn, for data already cut into utterances."""

    def __init__(self, roles: tuple[Literal["participant", "interviewer", "other"], ...] = ("participant",),
                 min_words: Annotated[int, Field(ge=0, le=10_000)] = 1,
                 backchannels: tuple[str, ...] = ()) -> None:
        self.roles = roles
        self.min_words = min_words
        self.backchannels = backchannels

    def _spans(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        return [[_trim(t, 0, len(t))] for t in texts]


def spans_to_arrays(spans: list[list[tuple[int, int]]]) -> dict[str, np.ndarray]:
    """The units' spans as a cache entry: how many units each text has (``counts``)
    and where each starts and ends (``bounds``). Only integers: never the text."""
    counts = np.array([len(x) for x in spans], dtype=np.int64)
    bounds = np.array([b for x in spans for b in x], dtype=np.int64).reshape(-1, 2)
    return {"counts": counts, "bounds": bounds}


def spans_from_arrays(arrays, texts: list[str]) -> list[list[tuple[int, int]]] | None:
    """The spans of a cache entry, or None when they do not fit ``texts`` (a count a
    text, each span inside its text): such an entry is found again."""
    counts, bounds = arrays["counts"], arrays["bounds"]
    if counts.shape != (len(texts),) or bounds.ndim != 2 or bounds.shape[1] != 2 \
            or counts.min(initial=0) < 0 or int(counts.sum()) != len(bounds):
        return None
    ends = np.repeat(np.array([len(t) for t in texts], dtype=np.int64), counts)
    if len(bounds) and not ((bounds[:, 0] >= 0) & (bounds[:, 0] < bounds[:, 1])
                            & (bounds[:, 1] <= ends)).all():
        return None
    flat = [(int(a), int(b)) for a, b in bounds.tolist()]
    out, at = [], 0
    for c in counts.tolist():
        out.append(flat[at:at + c])
        at += c
    return out
