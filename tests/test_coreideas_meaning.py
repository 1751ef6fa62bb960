"""Core ideas that keep what the participant meant (pipeline/stages/coreideas.py): the
point a long sentence builds up to, words not run together by the clean-up. Texts
written for these tests."""

from __future__ import annotations

import pytest

from pipeline.stages.coreideas import _units_of, count_words, tidy_utterance


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
