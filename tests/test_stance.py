"""Stance subcategories (pipeline/stages/crossanalysis.py, step 3): a category whose
segments split along an evaluative axis is proposed as two subcategories named after
the axis' poles; one hump of segments, or a split that random directions make as
well, is not."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from pipeline.stages.crossanalysis import CrossAnalysisConfig, StanceAxis, cross_analyse

DIM = 32
AXIS = StanceAxis(positive_name="helpful", negative_name="not helpful",
                  positive=["it helped", "it was useful"],
                  negative=["it did not help", "it was useless"])


def _basis(i: int) -> np.ndarray:
    v = np.zeros(DIM)
    v[i] = 1.0
    return v


def _encode(texts: list[str]) -> np.ndarray:
    """Anchor phrases on one subject (dimension 1), apart on dimension 0 only."""
    sign = {**{t: 1.0 for t in AXIS.positive}, **{t: -1.0 for t in AXIS.negative}}
    return np.array([_basis(1) + sign[t] * _basis(0) for t in texts])


def _said(X: np.ndarray, flip: bool = False) -> list[str]:
    """What each segment says: words that lean as its side of dimension 0 does (the
    other way with ``flip``), neutral words near 0."""
    helped = "the supervision sessions with my supervisor really helped, I was glad"
    did_not = "the supervision sessions with my supervisor did not help, I felt bad"
    side = np.asarray(X)[:, 0] * (-1 if flip else 1)
    return [helped if v > 0.5 else did_not if v < -0.5 else "the supervision sessions"
            for v in side]


def _one_category(X: np.ndarray, cases: list[str], texts: list[str] | None = None, **settings):
    n = len(X)
    seg = pd.DataFrame({"segment_id": [f"s{i}" for i in range(n)], "case_id": cases,
                        "text": _said(X) if texts is None else texts})
    whole = lambda Y: (np.zeros(len(Y), int), np.ones(len(Y)))  # noqa: E731 - one category
    return cross_analyse(seg, X, np.zeros(n, int),
                         CrossAnalysisConfig(stance_axes=[AXIS], subcategory_min_segments=1000,
                                             **settings),
                         cluster_fn=whole, encode=_encode)


def _segments(sides: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 3 * _basis(1) + np.outer(sides, _basis(0)) + 0.1 * rng.normal(size=(len(sides), DIM))


def test_a_category_that_splits_by_judgement_gets_two_stance_subcategories():
    sides = np.tile([1.0, -1.0], 20)                   # each case speaks on both sides
    cases = [f"c{i % 8}" for i in range(len(sides))]
    res = _one_category(_segments(sides), cases)
    assert res.counts["stance_splits"] == 1
    subs = res.categories[res.categories["kind"] == "stance"]
    assert sorted(subs["pole"]) == ["helpful", "not helpful"]
    pole = dict(zip(subs["category_id"], subs["pole"]))
    got = np.array([pole.get(int(s), "") for s in res.subcategory])
    assert (got[sides > 0] == "helpful").all() and (got[sides < 0] == "not helpful").all()


def test_a_split_whose_words_do_not_lean_as_its_poles_is_not_proposed():
    """Apart along the axis in the embedding, but the side it would name "helpful"
    says it did not help: no pole is proposed against the participants' words; the
    run counts the split it left out. Without the check (null) it is proposed."""
    sides = np.tile([1.0, -1.0], 20)
    cases = [f"c{i % 8}" for i in range(len(sides))]
    X = _segments(sides)
    res = _one_category(X, cases, texts=_said(X, flip=True))
    assert res.counts["stance_splits"] == 0
    assert res.counts["stance_splits_not_in_words"] == 1
    assert not (res.categories["kind"] == "stance").any()
    unchecked = _one_category(X, cases, texts=_said(X, flip=True), stance_valence_margin=None)
    assert unchecked.counts["stance_splits"] == 1


def test_a_split_of_sides_that_both_read_positive_is_not_proposed():
    """"Less positive than the other side" is not "negative": both sides above what the
    study's talk reads as give no stance, however far apart they are."""
    sides = np.tile([1.0, -1.0], 20)
    cases = [f"c{i % 8}" for i in range(len(sides))]
    X = _segments(sides)
    texts = ["supervision was wonderful, great, really helpful, I loved it" if v > 0 else
             "supervision was fine, I was glad" for v in sides]
    # the study's typical valence comes from its analysed segments: these, and many
    # neutral ones of another domain
    n_other = 60
    seg = pd.DataFrame({"segment_id": [f"s{i}" for i in range(len(X) + n_other)],
                        "case_id": cases + [f"c{i % 8}" for i in range(n_other)],
                        "text": texts + ["we met on Tuesdays in the old building"] * n_other})
    Y = np.vstack([X, 3 * _basis(2) + 0.1 * np.random.default_rng(1).normal(size=(n_other, DIM))])
    whole = lambda Z: (np.zeros(len(Z), int), np.ones(len(Z)))  # noqa: E731 - one category
    domain = np.r_[np.zeros(len(X), int), np.ones(n_other, int)]
    res = cross_analyse(seg, Y, domain,
                        CrossAnalysisConfig(stance_axes=[AXIS], subcategory_min_segments=1000),
                        cluster_fn=whole, encode=_encode)
    assert res.counts["stance_splits"] == 0
    assert res.counts["stance_splits_not_in_words"] == 1


def test_one_hump_of_segments_is_not_split():
    n = 40
    res = _one_category(_segments(np.zeros(n)), [f"c{i % 8}" for i in range(n)])
    assert res.counts["stance_splits"] == 0
    assert not (res.categories["kind"] == "stance").any()


def test_repeated_segments_are_judged_without_arithmetic_on_infinities():
    # Two texts said over and over: every cut, along the axis and along random
    # directions alike, has sides without spread. Random directions split them as
    # well as the axis does, so there is no stance to propose, and no warning.
    sides = np.tile([1.0, -1.0], 20)
    X = 3 * _basis(1) + np.outer(sides, _basis(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = _one_category(X, [f"c{i % 8}" for i in range(len(sides))])
    assert res.counts["stance_splits"] == 0


def test_a_stance_subcategory_keeps_the_category_s_reassigned_outliers():
    """The sides of a category hold its segments as they are: a segment reassigned to
    the category is reassigned in its side too, so the side's n_reassigned counts it
    and a case that counts only through such segments is a thin case there as well."""
    sides = np.tile([1.0, -1.0], 20)
    cases = [f"c{(i // 2) % 8}" for i in range(len(sides))]   # each case on both sides
    X = _segments(sides)
    n = len(X)
    outlier = np.array([c == "c0" for c in cases])   # c0's segments: the clusterer's outliers
    seg = pd.DataFrame({"segment_id": [f"s{i}" for i in range(n)], "case_id": cases,
                        "text": _said(X)})

    def one_with_outliers(Y):
        return np.where(outlier, -1, 0), np.where(outlier, 0.0, 1.0)

    res = cross_analyse(seg, X, np.zeros(n, int),
                        CrossAnalysisConfig(stance_axes=[AXIS], subcategory_min_segments=1000),
                        cluster_fn=one_with_outliers, encode=_encode)
    assert res.reassigned[outlier].all() and res.counted[outlier].all()
    cats = res.categories.set_index("category_id")
    top = cats[cats["kind"] == "category"]
    assert int(top["n_reassigned"].iloc[0]) == int(outlier.sum())
    assert list(top["thin_cases"].iloc[0]) == ["c0"]
    subs = cats[cats["kind"] == "stance"]
    assert len(subs) == 2
    for cid, r in subs.iterrows():
        mine = res.subcategory == cid
        assert int(r["n_reassigned"]) == int((mine & outlier).sum()) > 0
        assert list(r["thin_cases"]) == ["c0"]
    assert int(subs["n_reassigned"].sum()) == int(outlier.sum())


def test_a_rerun_reads_the_stance_split_from_the_cache_keyed_on_its_settings(tmp_path,
                                                                            monkeypatch):
    """The stance test (a hundred random cuts a category) is kept in the run's cache: a
    re-run on the same categories reads the split, the same segments on each side; a
    new stance setting, or no split at all, is computed and kept in its own entry."""
    import pipeline.stages.crossanalysis as xa
    from pipeline.cache import Cache

    sides = np.tile([1.0, -1.0], 20)
    X = _segments(sides)
    cases = [f"c{i % 8}" for i in range(len(sides))]
    seg = pd.DataFrame({"segment_id": [f"s{i}" for i in range(len(X))], "case_id": cases,
                        "text": _said(X)})
    whole = lambda Y: (np.zeros(len(Y), int), np.ones(len(Y)))  # noqa: E731 - one category
    memory = Cache(tmp_path / "cache")
    calls = []
    real = xa._stance

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    counted.__module__ = real.__module__          # the cache keys on the module's code
    monkeypatch.setattr(xa, "_stance", counted)

    def run(**settings):
        return cross_analyse(seg, X, np.zeros(len(X), int),
                             CrossAnalysisConfig(stance_axes=[AXIS], subcategory_min_segments=1000,
                                                 **settings),
                             cluster_fn=whole, encode=_encode, memory=memory)

    first = run()
    assert len(calls) == 1 and first.counts["stance_splits"] == 1
    again = run()
    assert len(calls) == 1
    assert np.array_equal(again.subcategory, first.subcategory)
    pd.testing.assert_frame_equal(again.categories, first.categories)
    strict = run(stance_separation=1000.0)            # no split clears this bar
    assert len(calls) == 2 and strict.counts["stance_splits"] == 0
    run(stance_separation=1000.0)                     # "no split" is kept too
    assert len(calls) == 2


def test_valence_reads_inflected_words_negation_and_leaves_out_notes():
    from pipeline.stages.valence import valence

    helped, not_helped, laughs, plain = valence([
        "It really helped me.",              # "helped" is not in the lexicon; "help" is
        "It didn't help at all.",
        "[laughs] We met on Tuesdays.",      # a transcriber's note is not their words
        "We met on Tuesdays."])
    assert helped > 0.3 and not_helped < -0.2
    assert laughs == plain == 0.0
