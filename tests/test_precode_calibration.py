"""The pre-coding classifier's confidence means what it says, and "none" is an answer.

Synthetic data only: vectors drawn around class centres, in "cases" of 20, so the
case-grouped folds have something to hold out.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.precode import (
    NONE,
    _logits,
    _softmax,
    _unit,
    case_folds,
    fit_classifier,
    fit_temperature,
    reliability,
)

D, K = 64, 3


def _centres(rng, k=K, d=D):
    c = rng.normal(size=(k, d))
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def _sample(rng, centres, n, signal):
    y = rng.integers(0, len(centres), n)
    noise = rng.normal(size=(n, centres.shape[1])) / np.sqrt(centres.shape[1])
    return centres[y] * signal + noise, y


def test_reliability_table_and_ece_by_hand():
    conf = np.array([0.15, 0.15, 0.85, 0.85, 0.85, 0.85])
    right = np.array([False, False, True, True, True, False])
    ece, table = reliability(conf, right)
    assert [r["bin"] for r in table] == ["0.1-0.2", "0.8-0.9"]
    assert [r["n"] for r in table] == [2, 4]
    assert table[1]["accuracy"] == 0.75 and table[1]["mean_confidence"] == 0.85
    # 2/6 * |0 - 0.15| + 4/6 * |0.75 - 0.85|
    assert ece == pytest.approx(2 / 6 * 0.15 + 4 / 6 * 0.10)


def test_ece_is_high_when_confidence_does_not_match_accuracy():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.9, 1.0, 2000)
    coin = rng.random(2000) < 0.5                   # right half of the time, sure every time
    assert reliability(conf, coin)[0] > 0.4
    matched = rng.random(2000) < conf               # right as often as it says
    assert reliability(conf, matched)[0] < 0.03


def test_temperature_undoes_a_known_overconfidence():
    rng = np.random.default_rng(2)
    true = rng.normal(size=(5000, 4)) * 1.5
    y = np.array([rng.choice(4, p=p) for p in _softmax(true)])
    t = fit_temperature(true * 3.0, y)               # scores three times too sharp
    assert t == pytest.approx(3.0, rel=0.15)


def test_confidence_08_is_right_about_80_percent_on_unseen_cases():
    rng = np.random.default_rng(0)
    centres = _centres(rng)
    X, y = _sample(rng, centres, 600, signal=0.35)
    clf = fit_classifier(X, y, groups=np.repeat(np.arange(30), 20), seed=0)
    cal = clf.calibration
    assert cal["folds"].startswith("GroupKFold") and 0 < cal["ece"] < 0.05
    assert sum(r["n"] for r in cal["reliability"]) == 600

    Xt, yt = _sample(rng, centres, 4000, signal=0.35)     # cases it never saw
    pred, conf = clf.predict(Xt)
    right = pred == yt
    ece, table = reliability(conf, right)
    assert ece < 0.04
    for row in table:
        if row["n"] >= 100:                               # e.g. 0.8-0.9: about 85% right
            assert abs(row["accuracy"] - row["mean_confidence"]) < 0.08, row
    # the uncalibrated model (temperature 1) is measurably off on the same segments
    raw = _softmax(_logits(clf.model, _unit(Xt)))
    raw_ece, _ = reliability(raw.max(axis=1), clf.classes_[raw.argmax(axis=1)] == yt)
    assert raw_ece > 2 * ece


def test_shuffled_codes_give_no_confident_segment():
    rng = np.random.default_rng(3)
    X, y = _sample(rng, _centres(rng), 600, signal=0.35)
    y = rng.permutation(y)                                # the codes mean nothing now
    clf = fit_classifier(X, y, groups=np.repeat(np.arange(30), 20), seed=0)
    assert clf.calibration["accuracy"] < 0.45
    _, conf = clf.predict(rng.normal(size=(500, D)))
    assert conf.mean() < 1 / K + 0.1 and (conf < 0.6).all()
    at = {r["threshold"]: r for r in clf.calibration["precision_at"]}
    assert at[0.7]["coverage"] < 0.02


def test_none_class_takes_what_fits_no_category():
    rng = np.random.default_rng(4)
    centres = _centres(rng, k=3)
    X, y = _sample(rng, centres, 600, signal=0.5)
    y = np.where(y == 2, NONE, y + 10)            # the third group is "none of these"
    clf = fit_classifier(X, y, groups=np.repeat(np.arange(30), 20), seed=0)
    assert NONE in clf.classes_
    other = centres[2] * 0.5 + rng.normal(size=(300, D)) / np.sqrt(D)
    pred, conf = clf.predict(other)
    assert (pred == NONE).mean() > 0.95
    labels, probs = clf.top(other, 3)
    assert labels.shape == (300, 3) and np.allclose(probs.sum(axis=1), 1.0)
    assert (np.diff(probs, axis=1) <= 0).all()


def test_folds_keep_cases_whole():
    y = np.tile([0, 1], 30)
    groups = np.repeat(np.arange(6), 10)
    splits, how = case_folds(y, groups, folds=5)
    assert "GroupKFold" in how and len(splits) == 5
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
    _, how = case_folds(y, np.repeat([0, 1], 30))            # two cases: by segment
    assert "StratifiedKFold" in how


def test_the_precode_table_nests_subcategories_under_their_category():
    """A codebook's subcategory (``parent``) was a row of its own and its category,
    coded nothing of its own, was not in the table: a category counts its
    subcategories' cases, and each subcategory follows it, marked as one."""
    import pandas as pd

    from pipeline.precode import nested_table
    from pipeline.stages.cqr import CQRConfig, cqr_markdown

    cb = {"domains": [{"id": 0, "name": "Supervision", "categories": [
        {"id": 3, "name": "Took it to supervision"},
        {"id": 7, "name": "Supportive supervision", "parent": 3},
        {"id": 8, "name": "Shamed in supervision", "parent": 3},
        {"id": 9, "name": "Never told anyone"}]}]}
    cats = {3: ("Took it to supervision", 0, "Supervision"),
            7: ("Supportive supervision", 0, "Supervision"),
            8: ("Shamed in supervision", 0, "Supervision"),
            9: ("Never told anyone", 0, "Supervision")}
    seg = pd.DataFrame({"segment_id": [f"C{k}:1:0" for k in range(5)],
                        "case_id": [f"C{k}" for k in range(5)],
                        "text": [f"Words of case {k}." for k in range(5)]})
    coded = seg.assign(category_id=[7, 7, 8, 9, 9], confidence=[0.9, 0.8, 0.95, 0.9, 0.7])
    table, absent = nested_table(cb, cats, coded, seg, 5, CQRConfig(),
                                 pd.DataFrame([{"domain_id": 0, "name": "Supervision"}]))
    assert absent == []
    assert list(zip(table["category"], table["level"], table["n_cases"])) == [
        ("Took it to supervision", "category", 3), ("Supportive supervision", "subcategory", 2),
        ("Shamed in supervision", "subcategory", 1), ("Never told anyone", "category", 2)]
    md = cqr_markdown(table, by_segment=True).splitlines()
    assert md[2].startswith("| Supervision | Took it to supervision | typical | 3/5 |")
    assert md[3].startswith("|  | ↳ Supportive supervision | variant | 2/5 |")
