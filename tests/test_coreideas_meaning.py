"""Core ideas that keep what the participant meant (pipeline/stages/coreideas.py): the
point a long sentence builds up to, words not run together by the clean-up, one
omission mark per cut. Texts written for these tests."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.stages.coreideas import _joined, _turn_keys, _units_of, count_words, tidy_utterance


def _turns(rows: list[tuple[str, int, str]]) -> pd.DataFrame:
    """Segments of one case in one domain: (segment id, turn, text)."""
    return pd.DataFrame({"segment_id": [r[0] for r in rows], "case_id": ["A"] * len(rows),
                         "turn_index": [r[1] for r in rows], "text": [r[2] for r in rows]})


def test_a_long_sentence_is_cut_into_even_pieces():
    """Filled from the start, the first piece of a 42-word sentence ended on "thirty
    years ago", and the clause the sentence builds up to ("and somehow that made me
    feel less alone with it") was left over on its own: a core idea holding the
    first piece lost the point, one holding the last lost what it was about."""
    text = ("And later, on the anniversary, I drove out to the coast, like I told you, and "
            "I left some flowers, and I pictured my counsellor standing at his own brother's "
            "grave thirty years ago, and somehow that made me feel less alone with it.")
    assert count_words(tidy_utterance(text)) > 40
    pieces = [piece for _span, piece in _units_of(text, 40)]
    assert len(pieces) == 2 and all(count_words(p) <= 40 for p in pieces)
    assert "grave thirty years ago, and somehow that made me feel" in pieces[1], pieces
    assert pieces[0].endswith("some flowers…") and pieces[1].startswith("…and I pictured")


@pytest.mark.parametrize("raw, tidy", [
    # a false start broken off at a hesitation is dropped, not run into what follows
    ("He used to, um, he'd say things like, I'm tired today.",
     "He'd say things like, I'm tired today."),
    ("Yeah, I was going to — I'd rather stay, actually.", "Yeah, I'd rather stay, actually."),
    # ... but not words that say no, nor a clause that is finished
    ("I didn't want to, um, I had to.", "I didn't want to, I had to."),
    ("He came in, um, he sat down.", "He came in, he sat down."),
    # "like," before a clause of its own frames it: removed, two clauses ran together
    ("It's like, her divorce isn't my divorce.", "It's like, her divorce isn't my divorce."),
    ("It was like, the room was spinning.", "It was like, the room was spinning."),
    ("It was like, she knew.", "It was like, she knew."),
    ("It was like, the worst week of my life.", "It was the worst week of my life."),
])
def test_the_clean_up_does_not_run_words_together(raw, tidy):
    assert tidy_utterance(raw) == tidy


def test_one_omission_mark_where_a_piece_of_a_sentence_follows_a_gap():
    """A core idea printed "That was the first time. … …and somehow": the omission
    mark between two sentences and the one of a piece cut from its sentence, the
    second glued to its word. Two pieces of one sentence, one after the other, read as
    the sentence said them; a note of laughter between two sentences leaves nothing
    out, a note of speech not taken down does."""
    said = "I stood there a long time, and somehow that helped me."
    seg = _turns([("A:1:0", 1, "That was the first time. We never spoke of it again."),
                  ("A:1:1", 1, said)])
    texts, turns = seg["text"].tolist(), _turn_keys(seg)
    first = (0, 0, 24, "That was the first time.")
    head = (1, 0, said.index(","), "I stood there a long time…")
    tail = (1, said.index("and"), len(said), "…and somehow that helped me.")
    assert _joined([first, tail], texts, turns) == \
        "That was the first time. … and somehow that helped me."
    assert _joined([first, head], texts, turns) == \
        "That was the first time. … I stood there a long time…"
    assert _joined([head, tail], texts, turns) == said
    for note, joined in (("(laughs)", "I stood there. It helped."),
                         ("[inaudible]", "I stood there. … It helped.")):
        text = f"I stood there. {note} It helped."
        pieces = [(0, 0, 14, "I stood there."), (0, len(text) - 10, len(text), "It helped.")]
        assert _joined(pieces, [text], [("A", "1")]) == joined, note
