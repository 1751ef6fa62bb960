"""Core ideas that keep what the participant meant (pipeline/stages/coreideas.py): words
not run together by the clean-up. Texts written for these tests."""

from __future__ import annotations

import pytest

from pipeline.stages.coreideas import tidy_utterance


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
