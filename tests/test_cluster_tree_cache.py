"""HDBSCAN's single-linkage tree on disk (``TreeCache``) and the v3 clusterer.

``run.py`` fits the cluster stage through ``fit_clusterer(clusterer, reduced,
tcache)``: the first fit stores the tree, a later fit on the same points with the
same ``min_samples`` cuts the stored tree instead of building it again. A cut tree
must give exactly what a fresh fit gives.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.stages.cluster import (
    HDBSCANClusterer,
    HDBSCANClustererV2,
    HDBSCANClustererV3,
    TreeCache,
    auto_min_cluster_size,
    auto_min_samples,
    fit_clusterer,
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


SETTINGS = [
    dict(min_cluster_size=10),
    dict(min_cluster_size=25),
    dict(min_cluster_size=10, cluster_selection_method="leaf"),
    dict(min_cluster_size=10, cluster_selection_epsilon=0.8),
    dict(min_cluster_size=10, max_cluster_share=0.15),
    dict(min_cluster_size=40, max_cluster_share=0.5),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_a_cut_of_the_cached_tree_equals_a_fresh_fit(tmp_path, X, settings):
    cache = TreeCache(tmp_path)
    # fill the cache under other selection settings, same min_samples
    first = fit_clusterer(HDBSCANClustererV2(min_cluster_size=60, min_samples=5), X, cache)
    assert first.tree_from_cache_ is False
    fresh = HDBSCANClustererV2(min_samples=5, **settings).fit(X)
    cut = fit_clusterer(HDBSCANClustererV2(min_samples=5, **settings), X, cache)
    assert cut.tree_from_cache_ is True and fresh.tree_from_cache_ is False
    np.testing.assert_array_equal(cut.labels_, fresh.labels_)
    np.testing.assert_array_equal(cut.probabilities_, fresh.probabilities_)
    assert len(set(fresh.labels_.tolist()) - {-1}) >= 2     # a real clustering was compared


def test_another_min_samples_builds_another_tree(tmp_path, X):
    cache = TreeCache(tmp_path)
    fit_clusterer(HDBSCANClustererV2(min_cluster_size=10, min_samples=5), X, cache)
    other = fit_clusterer(HDBSCANClustererV2(min_cluster_size=10, min_samples=9), X, cache)
    assert other.tree_from_cache_ is False
    assert len(list(tmp_path.glob("*.npz"))) == 2
    fresh = HDBSCANClustererV2(min_cluster_size=10, min_samples=9).fit(X)
    np.testing.assert_array_equal(other.labels_, fresh.labels_)


def test_other_points_build_another_tree(tmp_path, X):
    cache = TreeCache(tmp_path)
    fit_clusterer(HDBSCANClustererV2(min_cluster_size=10, min_samples=5), X, cache)
    moved = X.copy()
    moved[0, 0] += 1e-3
    again = fit_clusterer(HDBSCANClustererV2(min_cluster_size=10, min_samples=5), moved, cache)
    assert again.tree_from_cache_ is False


def test_key_depends_on_points_and_min_samples_only(X):
    X64 = X.astype(np.float64)
    assert TreeCache.key(X64, 5) == TreeCache.key(X64.copy(), 5)
    assert TreeCache.key(X64, 5) != TreeCache.key(X64, 6)
    assert TreeCache.key(X64, 5) != TreeCache.key(X64[::-1].copy(), 5)
    assert TreeCache.key(X64, 5) != TreeCache.key(X64[:-1].copy(), 5)


@pytest.mark.parametrize("spoil", [
    lambda p: p.write_bytes(b"not a zip"),
    lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    lambda p: p.write_bytes(b""),
    lambda p: np.savez(p, other=np.zeros(3)),
    lambda p: np.savez(p, tree=np.zeros(3)),
    lambda p: np.savez(p, tree=np.load(p)["tree"][:-1]),
    lambda p: np.savez(p, tree=np.load(p)["tree"].astype(
        [("left_node", "i4"), ("right_node", "i4"), ("value", "f8"), ("cluster_size", "i4")])),
], ids=["garbage", "truncated", "empty", "wrong-array", "not-a-tree", "too-short", "int32-fields"])
def test_an_unreadable_tree_is_built_again(tmp_path, X, spoil):
    cache = TreeCache(tmp_path)
    fit_clusterer(HDBSCANClustererV2(min_cluster_size=10, min_samples=5), X, cache)
    (entry,) = tmp_path.glob("*.npz")
    spoil(entry)
    again = fit_clusterer(HDBSCANClustererV2(min_cluster_size=12, min_samples=5), X, cache)
    assert again.tree_from_cache_ is False
    fresh = HDBSCANClustererV2(min_cluster_size=12, min_samples=5).fit(X)
    np.testing.assert_array_equal(again.labels_, fresh.labels_)
    # and the entry was written afresh: the next fit is served
    assert fit_clusterer(HDBSCANClustererV2(min_cluster_size=14, min_samples=5), X,
                         cache).tree_from_cache_ is True


def test_no_temporary_files_are_left(tmp_path, X):
    fit_clusterer(HDBSCANClustererV2(min_cluster_size=10, min_samples=5), X, TreeCache(tmp_path))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_fit_clusterer_without_a_cache_or_for_other_clusterers(tmp_path, X):
    from pipeline.stages.cluster import KMeansClusterer

    plain = fit_clusterer(HDBSCANClustererV2(min_cluster_size=10), X, None)
    assert plain.tree_from_cache_ is False
    km = fit_clusterer(KMeansClusterer(n_clusters=3, random_state=0), X, TreeCache(tmp_path))
    assert len(set(km.labels_.tolist())) == 3 and not list(tmp_path.iterdir())


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


def test_v3_reuses_the_tree_when_only_the_smallest_theme_changes(tmp_path):
    big = clouds(n_per=400, seed=3)
    cache = TreeCache(tmp_path)
    fit_clusterer(HDBSCANClustererV3(), big, cache)
    coarser = fit_clusterer(HDBSCANClustererV3(min_cluster_size=60), big, cache)
    assert coarser.tree_from_cache_ is True
    # v2 changes min_samples with it, so its tree is built again
    assert fit_clusterer(HDBSCANClustererV2(), big, cache).tree_from_cache_ is True
    assert fit_clusterer(HDBSCANClustererV2(min_cluster_size=60), big, cache).tree_from_cache_ is False


def test_fewer_points_than_min_samples_are_all_unassigned(X):
    few = X[:4]
    fit = HDBSCANClustererV3(min_cluster_size=2, min_samples=5).fit(few)
    assert (fit.labels_ == -1).all() and (fit.probabilities_ == 0).all()


def test_a_cache_that_cannot_be_written_does_not_stop_the_fit(tmp_path, X):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    fit = fit_clusterer(HDBSCANClustererV2(min_cluster_size=10, min_samples=5), X,
                        TreeCache(blocker / "trees"))
    fresh = HDBSCANClustererV2(min_cluster_size=10, min_samples=5).fit(X)
    np.testing.assert_array_equal(fit.labels_, fresh.labels_)
