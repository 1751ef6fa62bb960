"""HDBSCAN's versions: where ``min_samples`` comes from when it is not set.

(HDBSCAN's single-linkage tree used to be cached here and cut again for a new
``min_cluster_size`` with scikit-learn's private ``tree_to_labels``; measured at
10,000 segments it saved about 1 s of a warm re-run, 2% of a cold one, so the
hierarchy is now built on every fit. bench/README.md has the numbers.)
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.stages.cluster import (
    HDBSCANClusterer,
    HDBSCANClustererV2,
    HDBSCANClustererV3,
    auto_min_cluster_size,
    auto_min_samples,
)


def clouds(n_per: int = 60, seed: int = 0) -> np.ndarray:
    """Five clouds of different spread, some close together, plus scattered noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, 6)) * 3
    parts = [c + rng.normal(size=(n_per, 6)) * s for c, s in zip(centres, (0.3, 0.5, 0.8, 0.4, 1.0))]
    parts.append(rng.uniform(-8, 8, size=(n_per // 2, 6)))
    return np.vstack(parts).astype(np.float32)


@pytest.fixture(scope="module")
def X():
    return clouds()


def test_v3_min_samples_follows_the_corpus_not_the_smallest_theme(X):
    n = len(X)
    expected = auto_min_samples(auto_min_cluster_size(n))
    for mcs in (8, 15, 40):
        assert HDBSCANClustererV3(min_cluster_size=mcs).fit(X).min_samples_ == expected
    # v1 and v2 tie it to min_cluster_size
    assert HDBSCANClustererV2(min_cluster_size=40).fit(X).min_samples_ == auto_min_samples(40)
    assert HDBSCANClusterer(min_cluster_size=40).fit(X).min_samples_ == auto_min_samples(40)
    # an explicit value wins
    assert HDBSCANClustererV3(min_cluster_size=40, min_samples=7).fit(X).min_samples_ == 7


def test_v3_with_auto_settings_finds_what_v2_finds():
    big = clouds(n_per=400, seed=3)     # auto min_cluster_size 25, min_samples 8
    v2, v3 = HDBSCANClustererV2().fit(big), HDBSCANClustererV3().fit(big)
    assert v3.min_cluster_size_ == v2.min_cluster_size_ == auto_min_cluster_size(len(big))
    np.testing.assert_array_equal(v2.labels_, v3.labels_)


def test_fewer_points_than_min_samples_are_all_unassigned(X):
    few = X[:4]
    fit = HDBSCANClustererV3(min_cluster_size=2, min_samples=5).fit(few)
    assert (fit.labels_ == -1).all() and (fit.probabilities_ == 0).all()
