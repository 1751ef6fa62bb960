"""Very long turns: a whole recording transcribed as one turn without punctuation.

Cutting a run-on sentence into units used to take time quadratic in its length (a
5 MB turn ran for a quarter of an hour); it is linear now and cuts at exactly the
same places. A turn longer than spaCy's ``nlp.max_length`` is sentencized in pieces.
"""

from __future__ import annotations

import random
import re
import time

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.stages import segment
from pipeline.stages.segment import (
    _WORD,
    CLAUSE_WORDS,
    SentenceSegmenter,
    _pieces,
    _trim,
    count_words,
)
from pipeline.types import Corpus, SourceText


def reference_cut_long(text: str, s: int, e: int, max_words: int) -> list[tuple[int, int]]:
    """``SentenceSegmenter._cut_long`` written plainly as the reference: it finds the
    words of the rest of the line again after every cut (the first cut took time
    quadratic in the length so)."""
    if count_words(text[s:e]) <= max_words:
        return [(s, e)]
    pieces = []
    for line in re.finditer(r"[^\r\n]+", text[s:e]):
        a, b = _trim(text, s + line.start(), s + line.end())
        if a < b:
            pieces.extend(_reference_cut_line(text, a, b, max_words))
    return pieces


def _reference_cut_line(text: str, s: int, e: int, max_words: int) -> list[tuple[int, int]]:
    pieces = []
    while count_words(text[s:e]) > max_words:
        words = list(_WORD.finditer(text, s, e))
        limit = words[max_words - 1].end()
        floor = words[max_words // 2].end()
        cut = max(text.rfind(c, floor, limit) for c in ",;–—")
        if cut >= floor:
            cut += 1
        else:
            cut = next((words[j].start() for j in range(max_words, max_words // 2, -1)
                        if words[j].group().lower() in CLAUSE_WORDS), limit)
        a, b = _trim(text, s, cut)
        pieces.append((a, b))
        s, e = _trim(text, cut, e)
    if s < e:
        pieces.append((s, e))
    return pieces


_TOKENS = ["so", "and", "When", "I", "don't", "know", "well-meaning", "it’s", "café", "Zürich", "42", "_x_",
           ",", ";", " – ", "—", " - ", "-", "'", "’", "...", "(", ")", "[laughs]", "\n",
           "\r\n", "  ", "\t", " ", ", ", "; ", "日本語", "ß", "\u00a0", "🙂"]


def _text(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        out.append(rng.choice(_TOKENS))
        out.append(rng.choice([" ", " ", " ", "", "  ", "\n"]))
    return "".join(out)


@pytest.mark.parametrize("max_words", [1, 2, 3, 5, 8, 30, 80])
@pytest.mark.parametrize("seed", range(12))
def test_cut_points_are_the_same_as_before(max_words, seed):
    rng = random.Random(seed * 1000 + max_words)
    text = _text(rng, rng.choice([5, 40, 300, 2000]))
    s, e = _trim(text, 0, len(text))
    new = SentenceSegmenter(target_words=max_words, max_words=max_words, min_words=1)
    if s < e:
        assert new._cut_long(text, s, e) == reference_cut_long(text, s, e, max_words)
    # and from inside the text, as the segmenter calls it for one sentence of many
    a, b = _trim(text, len(text) // 3, 2 * len(text) // 3)
    if a < b:
        assert new._cut_long(text, a, b) == reference_cut_long(text, a, b, max_words)


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(st.one_of(st.sampled_from(_TOKENS), st.text(max_size=6)), max_size=400),
       max_words=st.integers(1, 40))
def test_cut_points_are_the_same_as_before_for_any_text(parts, max_words):
    text = " ".join(parts)
    s, e = _trim(text, 0, len(text))
    if s < e:
        seg = SentenceSegmenter(target_words=max_words, max_words=max_words, min_words=1)
        assert seg._cut_long(text, s, e) == reference_cut_long(text, s, e, max_words)


def test_a_long_unpunctuated_turn_is_cut_where_its_cues_end():
    """Speech recognition writes a whole answer without a full stop: it is one sentence,
    and it was cut every max_words words, mid-phrase. Its cues (a subtitle turn's lines)
    end where the speaker paused: the units end with them, near target_words."""
    rng = random.Random(5)
    words = ["i", "felt", "she", "remembered", "what", "said", "week", "to", "my", "thoughts"]
    cues = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(14)]   # 168 words
    text = "\n".join(cues)
    units = SentenceSegmenter(target_words=40, max_words=80, min_words=1)._spans([text])[0]
    assert [text[a:b] for a, b in units] == ["\n".join(cues[i:i + 4]) for i in (0, 4, 8)] + \
        ["\n".join(cues[12:])]


def test_a_long_line_without_commas_is_cut_before_a_clause_not_mid_phrase():
    """One line a turn (a .txt from speech recognition), no punctuation: the cut falls
    before a word opening a clause in the second half of the unit, not at word 80."""
    first = " ".join(["we", "talked", "about", "the", "plan"] * 12)          # 60 words
    text = f"{first} and he would call me out when i was avoiding things " + \
        " ".join(["it", "was", "hard"] * 10)
    units = SentenceSegmenter(target_words=40, max_words=80, min_words=1)._spans([text])[0]
    assert [text[a:b] for a, b in units][0].endswith("call me out")
    assert text[units[1][0]:].startswith("when i was avoiding things")


def _unpunctuated(n_chars: int) -> str:
    rng = random.Random(7)
    words = ["so", "i", "think", "the", "therapy", "was", "hard", "and", "then", "we",
             "talked", "about", "it", "with", "my", "supervisor"]
    out, size = [], 0
    while size < n_chars:
        w = rng.choice(words)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n_chars].rstrip()


def test_cutting_a_million_unpunctuated_characters_is_linear():
    text = _unpunctuated(1_000_000)
    seg = SentenceSegmenter()
    started = time.perf_counter()
    pieces = seg._cut_long(text, 0, len(text))
    took = time.perf_counter() - started
    assert took < 5, f"{took:.1f} s"           # the quadratic cut took minutes
    assert all(count_words(text[a:b]) <= seg.max_words for a, b in pieces)
    assert sum(count_words(text[a:b]) for a, b in pieces) == count_words(text)


def _corpus(text: str) -> Corpus:
    full = "P1: " + text
    turns = pd.DataFrame({
        "case_id": ["T1"], "turn_index": [0], "speaker": ["P1"], "role": ["participant"],
        "text": [text], "start_char": [4], "end_char": [len(full)], "start_time": [float("nan")],
        "end_time": [float("nan")], "source_file": ["T1.txt"]})
    return Corpus(turns=turns, cases=pd.DataFrame({"case_id": ["T1"]}),
                  sources={"T1": SourceText("T1", "T1.txt", full, "0" * 64, "utf-8")})


@pytest.mark.slow
def test_a_turn_longer_than_spacys_max_length_segments_in_seconds():
    """1.2 million characters, no punctuation: longer than spaCy's nlp.max_length, which
    is sentencized in pieces (no traceback, no memory for the whole turn at once)."""
    text = _unpunctuated(1_200_000)
    assert len(text) > segment.MAX_DOC_CHARS
    started = time.perf_counter()
    seg = SentenceSegmenter().segment(_corpus(text))
    took = time.perf_counter() - started
    assert took < 30, f"{took:.1f} s"
    s = seg.segments
    assert s["n_words"].max() <= 80
    assert s["n_words"].sum() == count_words(text)
    assert (s["start_char"].diff().dropna() > 0).all()


def test_a_turn_longer_than_the_piece_limit_is_sentencized_in_pieces(monkeypatch):
    rng = random.Random(3)
    sentences = [" ".join(rng.choice(["we", "talked", "about", "it", "then", "she", "left"])
                         for _ in range(rng.randint(3, 25))).capitalize() + "."
                 for _ in range(300)]
    text = " ".join(sentences)
    seg = SentenceSegmenter(target_words=20, max_words=30, min_words=1)
    whole = seg._spans([text, "Short one. Two."])
    monkeypatch.setattr(segment, "MAX_DOC_CHARS", 500)
    pieced = seg._spans([text, "Short one. Two."])
    assert len(text) > 10 * 500
    assert pieced == whole                   # cut at sentence ends: the same units
    # unpunctuated: cut at spaces, every word kept once, units within bounds
    run_on = _unpunctuated(5000)
    spans = seg._spans([run_on])[0]
    assert all(count_words(run_on[a:b]) <= 30 for a, b in spans)
    assert sum(count_words(run_on[a:b]) for a, b in spans) == count_words(run_on)


@pytest.mark.parametrize("text", [
    "One. Two three. " * 100,
    "no punctuation at all " * 100,
    "line one\nline two\r\n" * 100,
    "x" * 1000,
    "é" * 10 + " " + "y" * 990,
])
def test_pieces_cover_the_text_within_the_limit(text):
    pieces = _pieces(text, 150)
    assert pieces[0][0] == 0 and pieces[-1][1] == len(text)
    assert all(a < b <= a + 150 for a, b in pieces)
    assert all(b == c for (_, b), (c, _) in zip(pieces, pieces[1:]))
    for a, b in pieces[:-1]:
        if any(ch.isspace() for ch in text[a + 75:a + 150]):
            assert text[b - 1].isspace()     # not inside a word when a space is near the limit
        else:
            assert b == a + 150              # one word longer than half the limit: cut there


def test_a_thread_keeps_its_sentencizer_until_its_strings_pass_the_bound(monkeypatch):
    """spaCy's blank pipeline costs more to make than a small study costs to sentencize:
    each thread makes one and keeps it, and makes a new one once its string store holds
    more than SENTENCIZER_MAX_STRINGS strings. Units are the same either way."""
    import threading

    from pipeline.stages import nlp

    seg = SentenceSegmenter(target_words=5, max_words=12, min_words=1)
    text = "I cried once. It was in session, with a client I had seen for years. She saw it."
    first = nlp.sentencizer()
    units = seg._spans([text])
    assert nlp.sentencizer() is first and seg._spans([text]) == units
    other = []
    thread = threading.Thread(target=lambda: other.append(nlp.sentencizer()))
    thread.start()
    thread.join()
    assert other[0] is not first
    monkeypatch.setattr(nlp, "SENTENCIZER_MAX_STRINGS", len(first.vocab.strings) - 1)
    renewed = nlp.sentencizer()
    assert renewed is not first and seg._spans([text]) == units
