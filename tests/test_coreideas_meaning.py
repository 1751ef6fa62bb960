"""Core ideas that keep what the participant meant (pipeline/stages/coreideas.py): an
answer that says no, the sentence an elliptic one leans on, the point a long sentence
builds up to, words not run together by the clean-up, one omission mark per cut.
Texts written for these tests; vectors from the deterministic fake encoder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.stages.coreideas import (
    CoreIdeaConfig,
    _joined,
    _turn_keys,
    _units_of,
    core_ideas,
    count_words,
    tidy_utterance,
)
from tests.test_coreideas import fake_encode


def _turns(rows: list[tuple[str, int, str]]) -> pd.DataFrame:
    """Segments of one case in one domain: (segment id, turn, text)."""
    return pd.DataFrame({"segment_id": [r[0] for r in rows], "case_id": ["A"] * len(rows),
                         "turn_index": [r[1] for r in rows], "text": [r[2] for r in rows]})


def _idea(seg: pd.DataFrame, **config) -> pd.Series:
    dom = np.zeros(len(seg), dtype=np.int64)
    return core_ideas(seg, dom, fake_encode(seg["text"].tolist()),
                      CoreIdeaConfig(**config)).iloc[0]


def test_an_answer_that_says_no_in_a_few_words_stays_with_what_follows():
    """Asked for a disclosure that helped, a participant said "Um, not really useful,
    no. I mean, he told me he had been divorced twice himself." The answer has four
    words, enough to be a candidate of its own and too few to be chosen: the core idea
    kept what he told, without the "no", as a helpful disclosure."""
    seg = _turns([
        ("A:3:0", 3, "Um, not really useful, no. I mean, he told me he had been divorced "
                     "twice himself. I think he wanted to give me some hope about my divorce."),
        ("A:5:0", 5, "He said the divorce was the hardest year of his life. He told me he had "
                     "hope again after the divorce, and that I would too.")])
    for max_words in (20, 30, 40):
        for max_sentences in (1, 2, 3):
            row = _idea(seg, max_words=max_words, max_sentences=max_sentences)
            assert row.core_idea.startswith("Not really useful, no."), \
                (max_words, max_sentences, row.core_idea)
            assert row.n_words <= max_words


def test_the_first_answer_that_says_no_comes_first_with_what_did_not_help():
    """"I don't think so, no." answered the domain's question, and "But the things he
    told me about himself didn't help me." said what the no was about; asked to say
    more, the participant told the story of a disclosure. The core idea kept the story
    without what did not help: the answer, and the sentence saying it, come first."""
    seg = _turns([
        ("A:3:0", 3, "I don't, I don't think so, no. He was very patient, I won't say "
                     "otherwise. But the things he told me about himself didn't help me. "
                     "Not one of them, if I'm honest."),
        ("A:5:0", 5, "Well. He told me early on that he ran marathons, and that running had "
                     "got him through his own divorce. And he said running would get me "
                     "through my divorce too."),
        ("A:7:0", 7, "He ran marathons every spring, he said, and running was how he got over "
                     "the divorce.")])
    row = _idea(seg)
    assert row.core_idea.startswith("I don't think so, no."), row.core_idea
    assert "didn't help me" in row.core_idea and "marathons" in row.core_idea, row.core_idea
    assert row.n_words <= 40
    # a "no" to a later question of the domain is not put first: it would read as the
    # answer to the first
    later = _turns([
        ("A:3:0", 3, "Yes, there was one. He told me early on that he ran marathons, and that "
                     "running had got him through his own divorce."),
        ("A:5:0", 5, "Not really, no. Once he mentioned his holiday in Spain, and I didn't "
                     "know what to do with that.")])
    row = _idea(later, max_sentences=1)
    assert "Not really" not in row.core_idea, row.core_idea


def test_an_elliptic_sentence_comes_with_the_one_it_leans_on():
    """"Not never, but less." said nothing without "And I started skipping the gym
    less." before it, and a core idea ended on it after an omission mark."""
    seg = _turns([
        ("A:13:0", 13, "I thought about it a lot on the train home. I told my sister, "
                       "actually, that my counsellor had been through it too, and that made "
                       "me feel less alone. And I started skipping the gym less."),
        ("A:13:1", 13, "(laughs) Not never, but less.")])
    for max_words in (20, 30, 40, 60):
        for max_sentences in (1, 2, 3):
            row = _idea(seg, max_words=max_words, max_sentences=max_sentences)
            if "Not never" in row.core_idea:
                assert "skipping the gym less. Not never, but less." in row.core_idea, \
                    (max_words, max_sentences, row.core_idea)
            assert row.n_words <= max_words
    # one that opens its turn answers the question, and needs nothing
    alone = _turns([("A:3:0", 3, "Not in the way she meant it, no, and not for a long time.")])
    assert _idea(alone).core_idea == "Not in the way she meant it, no, and not for a long time."


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
