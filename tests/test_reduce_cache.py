"""The reduce stage's neighbour search, its cache and the shared kNN graph.

``run.py`` wires these together through ``pipeline.compose.reduce``: the reduce step
fits ``UMAPReducer`` (``reduce(reducer, vectors, cache)``) and gives back its
neighbour graph; the 2-D map then fits a second ``UMAPReducer`` on it
(``reduce(mapper, vectors, cache, neighbours=reduction.neighbours)``) so it need
not search the neighbours again. The tests below follow that use.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

from pipeline.cache import Cache, digest, stage_key
from pipeline.compose import reduce
from pipeline.stages.reduce import (
    PCAReducer,
    UMAPReducer,
    auto_neighbors,
    check_matrix,
    graph_components,
    nearest_neighbours,
)

N_BLOBS, PER_BLOB, DIM = 3, 40, 32
SEED = 0


def blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three tight clouds around random (so nearly orthogonal) directions."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_BLOBS, DIM)) * 4
    X = np.vstack([c + rng.normal(size=(PER_BLOB, DIM)) for c in centres]).astype(np.float32)
    return X, np.repeat(np.arange(N_BLOBS), PER_BLOB)


def count_calls(monkeypatch, cls) -> list[dict]:
    """Record every ``cls.fit_transform`` call (its keyword arguments), still fitting."""
    calls: list[dict] = []
    original = cls.fit_transform

    @functools.wraps(original)
    def wrapper(self, X, **kwargs):
        calls.append(kwargs)
        return original(self, X, **kwargs)

    monkeypatch.setattr(cls, "fit_transform", wrapper)
    return calls


def same_partition(coords: np.ndarray, labels: np.ndarray) -> bool:
    """Do the coordinates fall into exactly the groups of ``labels``?"""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    found = KMeans(N_BLOBS, n_init=10, random_state=0).fit_predict(coords)
    return adjusted_rand_score(labels, found) == 1.0


# --- shared UMAP fits (the first one compiles numba; fit each only once) --------

@pytest.fixture(scope="module")
def data():
    return blobs()


@pytest.fixture(scope="module")
def reduce_fit(data):
    """The reduce stage as run.py configures it: 5 dimensions, automatic neighbourhood."""
    X, _ = data
    reducer = UMAPReducer(n_components=5, random_state=SEED)
    return reducer, reducer.fit_transform(X)


def make_mapper() -> UMAPReducer:
    """The map stage's defaults (config.py): 2 dimensions, min_dist 0.1."""
    return UMAPReducer(n_components=2, min_dist=0.1, random_state=SEED)


@pytest.fixture(scope="module")
def map_fit(data):
    """The map fitted on its own, searching its own neighbours."""
    X, _ = data
    mapper = make_mapper()
    return mapper, mapper.fit_transform(X)


# --- nearest_neighbours -------------------------------------------------------

def sklearn_cosine(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(X).kneighbors(X)
    return idx, dist


def test_cosine_neighbours_match_sklearn_brute_force():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 24)).astype(np.float32)
    k = 8
    idx, dist = nearest_neighbours(X, k)
    assert idx.shape == dist.shape == (200, k)
    assert idx.dtype == np.int64 and dist.dtype == np.float32

    ref_idx, ref_dist = sklearn_cosine(X, k + 1)
    np.testing.assert_allclose(dist, ref_dist[:, :k], atol=1e-5)
    # compare the neighbour sets only where the k-th and (k+1)-th are not (nearly) tied
    clear = (ref_dist[:, k] - ref_dist[:, k - 1]) > 1e-4
    assert clear.sum() > 150
    for row in np.flatnonzero(clear):
        assert set(idx[row]) == set(ref_idx[row, :k]), row
    # nearest first
    assert (np.diff(dist, axis=1) >= 0).all()
    assert ((dist >= 0) & (dist <= 2)).all()


def test_each_row_is_its_own_first_neighbour():
    X = np.random.default_rng(2).normal(size=(150, 16)).astype(np.float32)
    idx, dist = nearest_neighbours(X, 5)
    np.testing.assert_array_equal(idx[:, 0], np.arange(150))
    assert np.abs(dist[:, 0]).max() <= 1e-6
    # the other neighbours are other rows
    assert (idx[:, 1:] != np.arange(150)[:, None]).all()


def test_self_distance_is_exactly_zero():
    X = np.random.default_rng(2).normal(size=(150, 16)).astype(np.float32)
    _, dist = nearest_neighbours(X, 5)
    assert (dist[:, 0] == 0).all()


@pytest.mark.parametrize("rows_per_block", [1, 7, 64])
def test_block_size_does_not_change_the_result(rows_per_block):
    X = np.random.default_rng(3).normal(size=(100, 20)).astype(np.float32)
    n, k = X.shape[0], 6
    whole_idx, whole_dist = nearest_neighbours(X, k, chunk_bytes=1 << 30)
    # chunk_bytes // (4 * n) rows a block: 1 forces one row a block, 7 leaves a remainder
    chunk = 1 if rows_per_block == 1 else 4 * n * rows_per_block
    idx, dist = nearest_neighbours(X, k, chunk_bytes=chunk)
    np.testing.assert_array_equal(idx, whole_idx)
    np.testing.assert_allclose(dist, whole_dist, atol=1e-6)


def test_cosine_neighbours_ignore_the_vector_length():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(80, 12)).astype(np.float32)
    scaled = X * rng.uniform(0.1, 10, size=(80, 1)).astype(np.float32)
    idx, dist = nearest_neighbours(X, 5)
    idx2, dist2 = nearest_neighbours(scaled, 5)
    np.testing.assert_array_equal(idx, idx2)
    np.testing.assert_allclose(dist, dist2, atol=1e-5)


def test_a_zero_row_gives_finite_distances():
    X = np.random.default_rng(5).normal(size=(50, 10)).astype(np.float32)
    X[17] = 0.0
    idx, dist = nearest_neighbours(X, 5)
    assert np.isfinite(dist).all()
    assert ((idx >= 0) & (idx < 50)).all()
    # a zero vector has no direction: it is at cosine distance 1 from everything
    np.testing.assert_allclose(dist[17], 1.0, atol=1e-6)
    np.testing.assert_allclose(dist[idx == 17], 1.0, atol=1e-6)
    # the other rows still find themselves first
    others = np.arange(50) != 17
    np.testing.assert_array_equal(idx[others, 0], np.arange(50)[others])


def test_other_metrics_go_through_sklearn():
    from sklearn.neighbors import NearestNeighbors

    X = np.random.default_rng(6).normal(size=(60, 8)).astype(np.float32)
    idx, dist = nearest_neighbours(X, 4, metric="euclidean")
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=4, algorithm="brute").fit(X).kneighbors(X)
    assert idx.dtype == np.int64 and dist.dtype == np.float32
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-5)


# --- graph_components and auto_neighbors ----------------------------------------

def test_two_disjoint_cliques_are_two_components():
    idx = np.array([[0, 1, 2], [1, 2, 0], [2, 0, 1],
                    [3, 4, 5], [4, 5, 3], [5, 3, 4]])
    assert graph_components(idx) == 2


def test_components_ignore_edge_direction():
    # each row points only at the next one: a directed chain, one undirected component
    n = 6
    idx = np.stack([np.arange(n), np.minimum(np.arange(n) + 1, n - 1)], axis=1)
    assert graph_components(idx) == 1
    # rows that see only themselves are components of their own
    assert graph_components(np.arange(n)[:, None]) == n
    assert graph_components(np.stack([np.arange(n), np.arange(n)], axis=1)) == n


def test_components_of_separated_blobs(data):
    X, _ = data
    idx, _ = nearest_neighbours(X, 5)
    assert graph_components(idx) == N_BLOBS
    # once a neighbourhood is wider than a blob, the blobs join
    idx, _ = nearest_neighbours(X, PER_BLOB + 5)
    assert graph_components(idx) == 1


@pytest.mark.parametrize("n,expected", [(1, 5), (16, 5), (100, 5), (144, 6), (400, 10),
                                        (900, 15), (1_000_000, 15)])
def test_auto_neighbors(n, expected):
    assert auto_neighbors(n) == expected


def test_auto_neighbors_never_shrinks():
    sizes = [auto_neighbors(n) for n in range(1, 3000)]
    assert sizes == sorted(sizes)


# --- UMAPReducer ------------------------------------------------------------------

def test_umap_records_what_it_chose(data, reduce_fit):
    X, _ = data
    reducer, coords = reduce_fit
    assert coords.shape == (len(X), 5) and coords.dtype == np.float32
    assert np.isfinite(coords).all()
    assert reducer.method_ == "umap"
    assert reducer.n_neighbors_ == auto_neighbors(len(X))
    assert reducer.shared_knn_ is False
    idx, dist = reducer.knn_
    assert idx.shape == dist.shape == (len(X), reducer.n_neighbors_)
    assert reducer.graph_components_ == N_BLOBS
    assert reducer.init_ == "spectral"


def test_umap_keeps_the_blobs_apart(data, reduce_fit, map_fit):
    _, labels = data
    assert same_partition(reduce_fit[1], labels)
    assert same_partition(map_fit[1], labels)


@pytest.mark.slow   # a second UMAP fit, with its own neighbour search
def test_umap_on_our_neighbours_matches_umaps_own_search_in_structure(data, reduce_fit):
    """UMAP searching its own neighbours (float64 distances) does not give the same
    coordinates as UMAP given ours (float32, and see the self-distance test above),
    but it finds the same groups."""
    import umap

    X, labels = data
    reducer, _ = reduce_fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        own = umap.UMAP(n_components=5, n_neighbors=reducer.n_neighbors_, min_dist=0.0,
                        metric="cosine", random_state=SEED).fit_transform(X)
    assert same_partition(own, labels)


def test_too_few_rows_fall_back_to_pca(data):
    X, _ = data
    small = X[:10]
    reducer = UMAPReducer(n_components=2, random_state=SEED)
    out = reducer.fit_transform(small, knn=nearest_neighbours(small, 5))
    assert out.shape == (10, 2) and np.isfinite(out).all()
    assert reducer.method_ == "pca" and reducer.n_neighbors_ == 0
    np.testing.assert_allclose(out, PCAReducer(2).fit_transform(small), atol=1e-5)


@pytest.mark.parametrize("case,shared", [("wider", True), ("narrower", False),
                                         ("other rows", False)])
def test_precomputed_knn_gives_the_same_map(data, map_fit, case, shared):
    """Neighbours handed in are used when they fit (trimmed to the neighbourhood) and
    ignored otherwise; either way the map is the one UMAP computes on its own."""
    X, _ = data
    _, expected = map_fit
    k = auto_neighbors(len(X))
    knn = {"wider": lambda: nearest_neighbours(X, k + 7),
           "narrower": lambda: nearest_neighbours(X, k - 2),
           "other rows": lambda: nearest_neighbours(X[:-5], k)}[case]()
    mapper = make_mapper()
    coords = mapper.fit_transform(X, knn=knn)
    assert mapper.shared_knn_ is shared
    assert mapper.knn_[0].shape == (len(X), k)
    np.testing.assert_array_equal(coords, expected)


# --- the key of a reduction -------------------------------------------------------------

def rkey(reducer, X) -> str:
    """The key ``pipeline.compose.reduce`` files a reduction under."""
    return stage_key(reducer, digest(check_matrix(X)))


def test_key_is_stable_for_identical_inputs(data):
    X, _ = data
    k1 = rkey(UMAPReducer(n_components=5, random_state=SEED), X)
    k2 = rkey(UMAPReducer(n_components=5, random_state=SEED), X.copy())
    assert k1 == k2
    assert len(k1) == 64 and int(k1, 16) >= 0


def test_key_ignores_fitted_state():
    X = np.random.default_rng(7).normal(size=(30, 6)).astype(np.float32)
    reducer = PCAReducer(2, random_state=SEED)
    before = rkey(reducer, X)
    reducer.fit_transform(X)
    assert rkey(reducer, X) == before


def test_key_changes_with_the_data(data):
    X, _ = data
    reducer = UMAPReducer(n_components=5, random_state=SEED)
    base = rkey(reducer, X)
    nudged = X.copy()
    nudged[3, 4] += 1e-3
    assert rkey(reducer, nudged) != base
    assert rkey(reducer, X[:-1]) != base
    # the same bytes in another shape are other data
    flat = np.arange(24, dtype=np.float32)
    assert rkey(PCAReducer(2), flat.reshape(4, 6)) != rkey(PCAReducer(2), flat.reshape(6, 4))


@pytest.mark.parametrize("change", [dict(n_components=2), dict(n_neighbors=10),
                                    dict(min_dist=0.1), dict(metric="euclidean"),
                                    dict(random_state=SEED + 1), dict(random_state=None),
                                    dict(n_epochs=200)])
def test_key_changes_with_any_parameter(data, change):
    X, _ = data
    params = dict(n_components=5, n_neighbors=None, min_dist=0.0, metric="cosine",
                  random_state=SEED)
    base = rkey(UMAPReducer(**params), X)
    assert rkey(UMAPReducer(**{**params, **change}), X) != base


def test_key_changes_with_the_reducer():
    X = np.random.default_rng(8).normal(size=(30, 6)).astype(np.float32)
    assert rkey(PCAReducer(5, random_state=SEED), X) != rkey(UMAPReducer(5, random_state=SEED), X)


def test_key_changes_with_the_library_versions(monkeypatch, data):
    import pipeline.cache as cache_module

    X, _ = data
    base = rkey(UMAPReducer(n_components=5, random_state=SEED), X)
    newer = {**cache_module.library_versions(), "umap-learn": "99.0"}
    monkeypatch.setattr(cache_module, "library_versions", lambda: newer)
    assert rkey(UMAPReducer(n_components=5, random_state=SEED), X) != base


# --- reduce through the cache ---------------------------------------------------------

def write_garbage(path):
    path.write_bytes(b"this is not an npz file at all")


def write_without_fitted(path):
    np.savez(path, coords=np.zeros((30, 2), dtype=np.float32))


def write_bad_json(path):
    np.savez(path, coords=np.zeros((30, 2), dtype=np.float32), fitted="{not json")


def write_other_rows(path):
    np.savez(path, coords=np.zeros((29, 2), dtype=np.float32), fitted="{}")


def truncate(path):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def empty(path):
    path.write_bytes(b"")


def test_reduce_without_cache_just_fits(monkeypatch):
    calls = count_calls(monkeypatch, PCAReducer)
    X = np.random.default_rng(10).normal(size=(30, 6)).astype(np.float32)
    reducer = PCAReducer(2, random_state=SEED)
    got = reduce(reducer, X, Cache(None))
    np.testing.assert_array_equal(got.coords, PCAReducer(2, random_state=SEED).fit_transform(X))
    assert len(calls) == 2 and calls[0] == {}
    assert got.fitted == {"method_": "pca", "from_cache_": False} and got.neighbours is None


def test_reduce_passes_neighbours_to_a_reducer_that_ignores_them(monkeypatch, tmp_path):
    # e.g. a map configured as PCA, handed the reduce stage's neighbours
    calls = count_calls(monkeypatch, PCAReducer)
    X = np.random.default_rng(11).normal(size=(30, 6)).astype(np.float32)
    knn = nearest_neighbours(X, 5)
    got = reduce(PCAReducer(2), X, Cache(tmp_path), neighbours=knn)
    assert len(calls) == 1 and calls[0]["knn"] is knn
    np.testing.assert_array_equal(got.coords, PCAReducer(2).fit_transform(X))


def test_reduce_serves_the_second_call_from_the_cache(monkeypatch, tmp_path):
    calls = count_calls(monkeypatch, PCAReducer)
    X = np.random.default_rng(12).normal(size=(30, 6)).astype(np.float32)
    cache = Cache(tmp_path)
    first = reduce(PCAReducer(3, random_state=SEED), X, cache)
    assert len(calls) == 1 and first.fitted["from_cache_"] is False

    again = reduce(PCAReducer(3, random_state=SEED), X, cache)
    assert len(calls) == 1
    np.testing.assert_array_equal(again.coords, first.coords)
    assert again.coords.dtype == np.float32
    assert again.fitted == {"method_": "pca", "from_cache_": True}

    # other data or other parameters miss
    reduce(PCAReducer(3, random_state=SEED), X[:-1], cache)
    reduce(PCAReducer(2, random_state=SEED), X, cache)
    assert len(calls) == 3
    # one file a result, no temporary file left behind
    assert sorted(p.suffix for p in (tmp_path / "reduced").iterdir()) == [".npz"] * 3


@pytest.mark.parametrize("spoil", [write_garbage, write_without_fitted, write_bad_json,
                                   write_other_rows, truncate, empty])
def test_reduce_refits_over_an_unreadable_entry(monkeypatch, tmp_path, caplog, spoil):
    X = np.random.default_rng(13).normal(size=(30, 6)).astype(np.float32)
    reduce(PCAReducer(2), X, Cache(tmp_path))
    entry = tmp_path / "reduced" / f"{rkey(PCAReducer(2), X)}.npz"
    assert entry.is_file()
    spoil(entry)
    calls = count_calls(monkeypatch, PCAReducer)
    with caplog.at_level("WARNING", logger="consensa.cache"):
        got = reduce(PCAReducer(2), X, Cache(tmp_path))
    assert len(calls) == 1 and got.fitted["from_cache_"] is False
    np.testing.assert_array_equal(got.coords, PCAReducer(2).fit_transform(X))
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    # the entry was written afresh: the next run is served
    assert reduce(PCAReducer(2), X, Cache(tmp_path)).fitted["from_cache_"] is True


def test_an_unwritable_cache_does_not_stop_the_reduction(tmp_path):
    """The error policy: a cache that cannot be written is a miss, never an exception
    (the reduction cache once raised here, where the others carried on)."""
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    X = np.random.default_rng(14).normal(size=(30, 6)).astype(np.float32)
    got = reduce(PCAReducer(2), X, Cache(blocker / "cache"))
    np.testing.assert_array_equal(got.coords, PCAReducer(2).fit_transform(X))
    assert got.fitted["from_cache_"] is False


def test_map_on_shared_neighbours_is_cached_and_served(monkeypatch, tmp_path, data,
                                                       reduce_fit, map_fit):
    """The run's map step: the reduce step's neighbours go in, the cache serves the
    re-run, and the result is the map UMAP computes with its own neighbours."""
    X, _ = data
    reducer, _ = reduce_fit
    _, expected = map_fit
    cache = Cache(tmp_path)
    calls = count_calls(monkeypatch, UMAPReducer)

    mapped = reduce(make_mapper(), X, cache, neighbours=reducer.knn_)
    assert len(calls) == 1 and calls[0]["knn"] is reducer.knn_
    assert mapped.fitted["shared_knn_"] is True and mapped.fitted["from_cache_"] is False
    np.testing.assert_array_equal(mapped.coords, expected)

    rerun = reduce(make_mapper(), X, cache, neighbours=reducer.knn_)
    assert len(calls) == 1
    np.testing.assert_array_equal(rerun.coords, mapped.coords)
    assert rerun.fitted == {**mapped.fitted, "from_cache_": True}
    # arrays are not cached: a reduction from the cache hands the map no neighbours
    assert mapped.neighbours is not None and rerun.neighbours is None


def test_the_reduce_step_hands_its_neighbours_to_the_map(monkeypatch, tmp_path, data, reduce_fit):
    """The neighbours are an output of the reduce step, given to the map explicitly."""
    X, _ = data
    reducer, expected = reduce_fit
    fitted = reduce(UMAPReducer(n_components=5, random_state=SEED), X, Cache(tmp_path))
    np.testing.assert_array_equal(fitted.coords, expected)
    idx, dist = fitted.neighbours
    np.testing.assert_array_equal(idx, reducer.knn_[0])
    np.testing.assert_array_equal(dist, reducer.knn_[1])
    calls = count_calls(monkeypatch, UMAPReducer)
    again = reduce(UMAPReducer(n_components=5, random_state=SEED), X, Cache(tmp_path))
    assert calls == [] and again.fitted["n_neighbors_"] == reducer.n_neighbors_
    np.testing.assert_array_equal(again.coords, expected)


# --- the spectral reducer ------------------------------------------------------------

def test_spectral_is_deterministic_and_keeps_blobs_apart(data):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from pipeline.stages.reduce import SpectralReducer

    X, labels = data
    a = SpectralReducer(n_components=6).fit_transform(X)
    b = SpectralReducer(n_components=6).fit_transform(X.copy())
    assert a.shape == (len(X), 6) and a.dtype == np.float32
    assert np.array_equal(a, b)                                  # no seed, no drift
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    pred = KMeans(len(set(labels.tolist())), n_init=5, random_state=0).fit_predict(a)
    assert adjusted_rand_score(labels, pred) == 1.0


def test_spectral_uses_shared_neighbours_and_falls_back_to_pca_when_tiny(data):
    from pipeline.stages.reduce import SpectralReducer

    X, _ = data
    k = auto_neighbors(len(X))
    knn = nearest_neighbours(X, k + 3)
    r = SpectralReducer(n_components=4)
    shared = r.fit_transform(X, knn=knn)
    assert r.shared_knn_ and r.n_neighbors_ == k and r.method_ == "spectral"
    own = SpectralReducer(n_components=4).fit_transform(X)
    assert np.allclose(np.abs(shared), np.abs(own), atol=1e-4)
    tiny = SpectralReducer(n_components=4)
    assert tiny.fit_transform(X[:10]).shape == (10, 4) and tiny.method_ == "pca"


def test_laplacian_eigenmap_spans_scikit_learns_spectral_embedding(data):
    from scipy.linalg import subspace_angles
    from sklearn.manifold import spectral_embedding
    from umap.umap_ import fuzzy_simplicial_set

    from pipeline.stages.reduce import laplacian_eigenmap

    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 12)).astype(np.float32)        # one connected cloud
    idx, dist = nearest_neighbours(X, 10)
    assert graph_components(idx) == 1
    graph, _, _ = fuzzy_simplicial_set(X, 10, np.random.RandomState(0), "cosine",
                                       knn_indices=idx, knn_dists=dist)
    ours = laplacian_eigenmap(graph, 5)
    ref = spectral_embedding(graph, n_components=5, drop_first=True, random_state=0)
    assert ours.shape == (200, 5)
    assert np.degrees(subspace_angles(ours, ref)).max() < 0.1
    assert np.array_equal(ours, laplacian_eigenmap(graph.copy(), 5))
    # each vector's largest entry is positive: no sign flips between runs
    assert (ours[np.abs(ours).argmax(axis=0), np.arange(5)] > 0).all()


# --- the clusterer's fit, through the same cache -------------------------------

def test_a_clustering_is_read_back_from_the_cache_without_fitting(monkeypatch, tmp_path, data):
    """The second fit of the same clusterer on the same coordinates is read from the
    cache, learned values included; the entry holds numbers only."""
    from pipeline.compose import fit_clusterer
    from pipeline.stages.cluster import HDBSCANClusterer

    X, _ = data
    cache = Cache(tmp_path)
    first = fit_clusterer(HDBSCANClusterer(min_cluster_size=10), X, cache)
    assert (tmp_path / "clustered").is_dir() and first.labels_.max() >= 1

    def refuse(self, X):
        raise AssertionError("fitted again")

    monkeypatch.setattr(HDBSCANClusterer, "fit", refuse)
    again = fit_clusterer(HDBSCANClusterer(min_cluster_size=10), X, cache)
    np.testing.assert_array_equal(again.labels_, first.labels_)
    np.testing.assert_array_equal(again.probabilities_, first.probabilities_)
    assert again.min_samples_ == first.min_samples_
    assert again.labels_.dtype == first.labels_.dtype
    # other settings or other coordinates are other entries
    with pytest.raises(AssertionError, match="fitted again"):
        fit_clusterer(HDBSCANClusterer(min_cluster_size=11), X, cache)
    with pytest.raises(AssertionError, match="fitted again"):
        fit_clusterer(HDBSCANClusterer(min_cluster_size=10), X[:-1], cache)


def test_a_clusterer_that_learns_an_object_is_fitted_every_time(tmp_path, data):
    """Only arrays and single values are kept: a fitted model object cannot be
    restored from numbers, so such a clusterer is not cached."""
    from pipeline.compose import fit_clusterer

    class WithModel:
        fits = 0

        def fit(self, X):
            WithModel.fits += 1
            self.model_ = object()
            self.labels_ = np.zeros(len(X), dtype=np.int64)
            self.probabilities_ = np.ones(len(X), dtype=np.float32)
            return self

    X, _ = data
    cache = Cache(tmp_path)
    fit_clusterer(WithModel(), X, cache)
    fit_clusterer(WithModel(), X, cache)
    assert WithModel.fits == 2 and not (tmp_path / "clustered").exists()


@pytest.mark.slow
def test_umaps_compiled_layout_is_kept_on_disk_for_the_next_process(tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    code = ("import numpy as np; from pipeline.stages.reduce import UMAPReducer; "
            "X = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32); "
            "np.save(sys.argv[1], UMAPReducer(n_components=2, random_state=0, n_epochs=20)"
            ".fit_transform(X))")
    # pynndescent compiles and caches its own functions when umap is imported (25 s
    # into an empty folder); they are not what is tested, so they are copied in
    cached = Path(os.environ["NUMBA_CACHE_DIR"])
    for folder in cached.glob("pynndescent_*") if cached.is_dir() else ():
        shutil.copytree(folder, tmp_path / "numba" / folder.name, dirs_exist_ok=True)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    outs = []
    for run in range(2):
        out = tmp_path / f"coords{run}.npy"
        subprocess.run([sys.executable, "-c", "import sys; " + code, str(out)], env=env, check=True)
        outs.append(np.load(out))
    kept = {p.name.split("-")[0] for p in (tmp_path / "numba").glob("umap_*/*.nbi")}
    assert {"layouts._optimize_layout_euclidean_single_epoch", "umap_.smooth_knn_dist"} <= kept
    np.testing.assert_array_equal(outs[0], outs[1])      # compiled or loaded: the same layout
