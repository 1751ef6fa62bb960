"""Speaker names written into a transcript whose text holds none.

A subtitle file's text (as Consensa reads it) is its cues' words, and a table's is its
text cells: who spoke is kept apart. A REFI-QDA project gets the names written in
(``Speaker: `` before each turn), and reading such a project back takes them out
again. Both :mod:`pipeline.exchange.refi` (writing) and :mod:`pipeline.exchange.codes`
(reading back) use these, so they sit below both.
"""

from __future__ import annotations

import pandas as pd

#: Transcript formats whose text, as Consensa reads it, holds no speaker names: a
#: subtitle file keeps them in its voice tags or cue prefixes.
SUBTITLE_SUFFIXES = (".vtt", ".srt")
#: ... and every format whose speakers are kept apart from the words: a table's text is
#: its text cells, one a line, its speakers in their own column. A project writes these
#: with :func:`speaker_labelled`.
UNLABELLED_SUFFIXES = (*SUBTITLE_SUFFIXES, ".csv", ".xlsx")


def speaker_labelled(text: str, turns: pd.DataFrame):
    """``text`` with ``Speaker: `` before each turn, and the function that moves a
    position of ``text`` to the same character of the new text (``end=True`` for the
    end of a span, which stays before a name inserted exactly there).

    A subtitle transcript's text is its cues' words; who spoke is in the voice tags
    (a table's, its text cells; who spoke is in the speaker column). Written as it is
    into a project, a QDA program shows an interview with no speakers, and Consensa,
    reading the project back, finds no speaker labels. With the names written as a
    .txt transcript writes them, both read it as an interview. A turn with no speaker
    (a table without a speaker column) gets no label.
    """
    from bisect import bisect_left, bisect_right

    labels = speaker_labels(turns)
    if labels is None:                  # a damaged table is left as is
        return text, lambda p, end=False: p
    starts = [start for start, _ in labels]
    added = [0]
    parts: list[str] = []
    position = 0
    for start, label in labels:
        parts += [text[position:start], label]
        position = start
        added.append(added[-1] + len(label))
    parts.append(text[position:])

    def moved(p: int, end: bool = False) -> int:
        return p + added[(bisect_left if end else bisect_right)(starts, p)]

    return "".join(parts), moved


def speaker_labels(turns: pd.DataFrame) -> list[tuple[int, str]] | None:
    """(position in the text, the label :func:`speaker_labelled` puts there) for each
    turn, in order ("" for a turn with no speaker); None when turns overlap (they never
    do; a damaged table is written as it is)."""
    rows = turns.sort_values("start_char")
    out = []
    position = 0
    for start, speaker in zip(rows["start_char"], rows["speaker"], strict=True):
        start = int(start)
        if start < position:
            return None
        out.append((start, f"{speaker}: " if str(speaker or "").strip() else ""))
        position = start
    return out


def speaker_unlabelled(turns: pd.DataFrame):
    """The inverse of :func:`speaker_labelled`'s move: a position of the labelled text
    -> the same character of the text without the names (a position in a name -> the
    start of its turn), or None when the turns give no labels. Reading back a project
    Consensa wrote, a coding on such a source is placed on the run's own text."""
    from bisect import bisect_right

    labels = speaker_labels(turns)
    if labels is None:
        return None
    at, before, lengths = [], [], []   # where each label starts in the labelled text
    total = 0
    for start, label in labels:
        if label:
            at.append(start + total)
            before.append(total)
            lengths.append(len(label))
            total += len(label)

    def back(q: int) -> int:
        k = bisect_right(at, q) - 1
        if k < 0:
            return q
        if q < at[k] + lengths[k]:      # within the name: its turn starts after it
            return at[k] - before[k]
        return q - before[k] - lengths[k]

    return back
