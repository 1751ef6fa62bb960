"""The segment stage's spans in the cache: a re-run reuses where each unit starts and ends.

``run.py`` segments through ``segmenter.segment(corpus, memory=cache)`` (a
``pipeline.cache.Cache``); the segments must be exactly those of a segmenter
without a cache, and a change to the texts or the settings must never be served an
old answer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.cache import Cache, digest, stage_key
from pipeline.stages.segment import SentenceSegmenter, TurnSegmenter
from tests.test_stages import corpus_from

TEXT = (
    "I: What was it like when the client cried?\n"
    "P: It was the first time. [laughs] I did not know what to do with my own face. "
    "My supervisor had never said a word about it, and training skipped it entirely; "
    "we learned on the job, mostly by getting it wrong. Yeah.\n"
    "I: And afterwards?\n"
    "P: Mm-hmm.\n"
    "P: Afterwards I wrote it all down. I think it mattered that I stayed with her. "
    "It felt honest, more honest than any technique.\n"
)


def spans_found(monkeypatch) -> list[int]:
    """Count calls to SentenceSegmenter._spans (the spaCy part), still finding them."""
    calls: list[int] = []
    original = SentenceSegmenter._spans

    def counting(self, texts):
        calls.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(SentenceSegmenter, "_spans", counting)
    return calls


def make() -> SentenceSegmenter:
    return SentenceSegmenter(target_words=12, max_words=20, min_words=3)


def test_a_cached_segmentation_equals_a_fresh_one(tmp_path, monkeypatch):
    calls = spans_found(monkeypatch)
    cache = Cache(tmp_path)
    fresh = make().segment(corpus_from(TEXT))
    first = make().segment(corpus_from(TEXT), memory=cache)
    again = make().segment(corpus_from(TEXT), memory=cache)
    assert len(calls) == 2                       # the fresh one and the first cached one
    for seg in (first, again):
        pd.testing.assert_frame_equal(seg.segments, fresh.segments)
        assert seg.skipped == fresh.skipped and dict(seg.counts) == dict(fresh.counts)
    assert len(fresh.segments) >= 4
    # quotes still point into the transcript
    for row in again.segments.itertuples():
        assert TEXT[row.start_char:row.end_char] == row.text


def test_only_integers_are_written(tmp_path):
    make().segment(corpus_from(TEXT), memory=Cache(tmp_path))
    (entry,) = (tmp_path / "spans").glob("*.npz")
    with np.load(entry, allow_pickle=False) as data:
        assert sorted(data.files) == ["bounds", "counts"]
        assert all(data[f].dtype.kind == "i" for f in data.files)
    assert b"supervisor" not in entry.read_bytes()


@pytest.mark.parametrize("change", [
    lambda text, seg: (text.replace("first time", "second time"), seg),
    lambda text, seg: (text.replace("wrong.", "wrong. Really."), seg),
    lambda text, seg: (text, SentenceSegmenter(target_words=12, max_words=25, min_words=3)),
    lambda text, seg: (text, SentenceSegmenter(target_words=12, max_words=20, min_words=3,
                                               backchannels=("indeed",))),
], ids=["a-word", "a-sentence", "max_words", "backchannels"])
def test_a_change_to_the_texts_or_settings_is_a_miss(tmp_path, monkeypatch, change):
    cache = Cache(tmp_path)
    make().segment(corpus_from(TEXT), memory=cache)
    calls = spans_found(monkeypatch)
    text, seg = change(TEXT, make())
    got = seg.segment(corpus_from(text), memory=cache)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(got.segments, seg.segment(corpus_from(text)).segments)


def test_texts_are_told_apart_by_their_boundaries():
    seg = make()
    assert stage_key(seg, digest(["ab", "c"])) != stage_key(seg, digest(["a", "bc"]))
    assert stage_key(seg, digest(["ab", "c"])) == stage_key(make(), digest(["ab", "c"]))


def spoil_counts(path):
    with np.load(path) as d:
        np.savez(path, counts=d["counts"][:-1], bounds=d["bounds"])


def spoil_bounds(path):
    with np.load(path) as d:
        b = d["bounds"].copy()
    b[0, 1] = 10 ** 6                               # past the end of its text
    with np.load(path) as d:
        np.savez(path, counts=d["counts"], bounds=b)


@pytest.mark.parametrize("spoil", [
    lambda p: p.write_bytes(b"not a zip"),
    lambda p: p.write_bytes(p.read_bytes()[:40]),
    lambda p: np.savez(p, other=np.zeros(2)),
    spoil_counts,
    spoil_bounds,
], ids=["garbage", "truncated", "wrong-arrays", "counts-off", "span-past-the-text"])
def test_an_entry_that_does_not_fit_is_found_again(tmp_path, monkeypatch, caplog, spoil):
    make().segment(corpus_from(TEXT), memory=Cache(tmp_path))
    (entry,) = (tmp_path / "spans").glob("*.npz")
    spoil(entry)
    calls = spans_found(monkeypatch)
    with caplog.at_level("WARNING", logger="consensa.cache"):
        got = make().segment(corpus_from(TEXT), memory=Cache(tmp_path))
    assert len(calls) == 1
    pd.testing.assert_frame_equal(got.segments, make().segment(corpus_from(TEXT)).segments)
    (warning,) = [r for r in caplog.records if r.name == "consensa.cache"]
    assert str(entry) in warning.getMessage()


def test_the_turn_segmenter_needs_no_cache(tmp_path):
    got = TurnSegmenter().segment(corpus_from(TEXT), memory=Cache(tmp_path))
    assert len(got.segments) and not list(tmp_path.iterdir())


def test_an_unwritable_cache_does_not_stop_segmentation(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    cache = Cache(blocker / "cache")
    with caplog.at_level("DEBUG", logger="consensa.cache"):
        got = make().segment(corpus_from(TEXT), memory=cache)
        again = make().segment(corpus_from(TEXT), memory=cache)
    for seg in (got, again):
        pd.testing.assert_frame_equal(seg.segments, make().segment(corpus_from(TEXT)).segments)
    # reported once, as a warning naming the place; later failures only at debug level
    levels = [r.levelname for r in caplog.records if r.name == "consensa.cache"]
    assert levels[0] == "WARNING" and len(levels) > 1 and set(levels[1:]) == {"DEBUG"}
    assert str(blocker) in caplog.records[0].getMessage()
