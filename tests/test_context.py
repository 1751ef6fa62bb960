"""The context stage: segments blended with their neighbours in the same interview."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config import validate_config
from pipeline.errors import ConfigError, ConsensaError
from pipeline.stages.context import contextualize, speaking_order


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def frame(cases, turns, starts=None):
    return pd.DataFrame({"case_id": cases, "turn_index": turns,
                         "start_char": starts if starts is not None else [0] * len(cases)})


def test_blend_matches_the_formula_in_speaking_order():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 5)).astype(np.float32)
    # rows out of order: case a is turns 3, 1, 2; case b is turns 1, 2, 4
    seg = frame(["a", "a", "a", "b", "b", "b"], [3, 1, 2, 4, 1, 2])
    Y = contextualize(X, seg, window=1, weight=0.5)
    u = unit(X.astype(np.float64))

    def expect(i, nbrs):
        c = unit(u[nbrs].mean(axis=0))
        return unit(u[i] + 0.5 * c)

    # a: order is row1 (t1), row2 (t2), row0 (t3)
    assert np.allclose(Y[1], expect(1, [2]), atol=1e-6)
    assert np.allclose(Y[2], expect(2, [1, 0]), atol=1e-6)
    assert np.allclose(Y[0], expect(0, [2]), atol=1e-6)
    # b: row4 (t1), row5 (t2), row3 (t4): never a neighbour from case a
    assert np.allclose(Y[5], expect(5, [4, 3]), atol=1e-6)
    assert np.allclose(np.linalg.norm(Y, axis=1), 1.0, atol=1e-6)


def test_position_within_a_turn_orders_segments():
    X = np.eye(3, dtype=np.float32)
    seg = frame(["a"] * 3, [1, 1, 1], [50, 0, 20])     # row1 < row2 < row0 in the turn
    assert speaking_order(seg).tolist() == [1, 2, 0]
    Y = contextualize(X, seg, window=1, weight=1.0)
    # row 1 (first) has only row 2 as neighbour: no share of row 0
    assert Y[1, 0] == pytest.approx(0.0, abs=1e-7) and Y[1, 2] > 0


def test_context_never_crosses_cases_and_a_lone_segment_keeps_its_direction():
    X = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 3]], dtype=np.float32)
    seg = frame(["a", "a", "b"], [1, 2, 1])
    Y = contextualize(X, seg, window=5, weight=2.0)
    assert np.allclose(Y[2], [0, 0, 1])                  # alone in case b
    assert Y[0, 2] == 0 and Y[1, 2] == 0                 # nothing from case b
    assert Y[0, 1] > 0 and Y[1, 0] > 0                   # each other's context


def test_weight_zero_or_window_zero_only_normalises():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(8, 4)).astype(np.float32)
    seg = frame(["a"] * 8, list(range(8)))
    for kw in ({"weight": 0.0}, {"window": 0}):
        assert np.allclose(contextualize(X, seg, **{"window": 2, "weight": 0.5, **kw}), unit(X),
                           atol=1e-6)


def test_input_untouched_and_shape_checked():
    X = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    before = X.copy()
    contextualize(X, frame(["a"] * 4, [0, 1, 2, 3]))
    assert np.array_equal(X, before)
    with pytest.raises(ConsensaError, match="3 segments"):
        contextualize(X, frame(["a"] * 3, [0, 1, 2]))
    with pytest.raises(ConsensaError, match="case_id"):
        contextualize(X, pd.DataFrame({"turn_index": [0, 1, 2, 3]}))


def test_neighbours_pull_an_ambiguous_segment_to_its_interview_topic():
    # two interviews on two topics; one vague segment in each sits halfway between
    topic_a, topic_b = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    vague = unit(np.array([1.0, 1.0, 0.2]))
    X = np.array([topic_a, topic_a, vague, topic_a, topic_b, topic_b, vague, topic_b],
                 dtype=np.float32)
    seg = frame(["a"] * 4 + ["b"] * 4, [0, 1, 2, 3] * 2)
    Y = contextualize(X, seg, window=2, weight=0.5)
    assert Y[2] @ topic_a > Y[2] @ topic_b
    assert Y[6] @ topic_b > Y[6] @ topic_a
    plain = contextualize(X, seg, window=2, weight=0.0)
    assert plain[2] @ topic_a == pytest.approx(plain[2] @ topic_b)


def test_config_section_is_validated():
    assert validate_config({}).context.window == 2
    with pytest.raises(ConfigError, match="context.weight"):
        validate_config({"context": {"weight": -1}})
    with pytest.raises(ConfigError, match="not a known setting"):
        validate_config({"context": {"windw": 3}})
