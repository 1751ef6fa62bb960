"""Reduce stage: embeddings -> a few dimensions where density clustering works.

Implementations take ``fit_transform(X, knn=None) -> ndarray`` and keep what they
chose in attributes ending in ``_`` (e.g. ``n_neighbors_`` when it was set to auto),
which the run records in its manifest.

``knn`` is a neighbour graph found already for the same rows, ``(indices,
distances)`` nearest first. A reducer that builds such a graph (UMAP, spectral)
keeps the one it used in ``knn_``; the run passes it on to the map, which then
need not search the same neighbours again (:func:`pipeline.compose.reduce`). A
reducer that builds no graph takes ``knn`` and ignores it, so any reducer can
draw the map.
"""

from __future__ import annotations

import math
import warnings
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from ..errors import ConsensaError
from ..registry import RandomState, reducers

# Parameter bounds, checked by the registry (and so by `consensa validate`) before a
# run starts. Below them UMAP, ARPACK or scikit-learn fail deep inside (one
# neighbour is the segment itself: ARPACK gets an empty graph); above them a typo
# asks for gigabytes of coordinates.
NComponents = Annotated[int, Field(ge=1, le=1024, description=(
    "the number of dimensions to reduce to, 1 to 1024"))]
NNeighbors = Annotated[int | None, Field(ge=2, le=1000, description=(
    "the neighbours of each segment in the graph, 2 to 1000 (the segment itself counts "
    "as one); null (or left out) scales it to the study"))]
MinDist = Annotated[float, Field(ge=0, le=1, description=(
    "how tightly UMAP packs close points, 0 to 1 (its spread)"))]
#: the distances both UMAP and scikit-learn's exact neighbour search compute on
#: real-valued vectors without further parameters
Metric = Literal["cosine", "euclidean", "l2", "manhattan", "l1", "chebyshev", "correlation",
                 "canberra", "braycurtis"]
NEpochs = Annotated[int | None, Field(ge=1, le=10_000, description=(
    "UMAP's optimisation epochs, 1 to 10000; null (or left out) is UMAP's own choice"))]


#: UMAP's modules whose compiled functions :func:`umap_module` keeps on disk
_UMAP_MODULES = ("umap.umap_", "umap.layouts", "umap.utils", "umap.spectral", "umap.distances",
                 "umap.sparse")
_umap_cached = False


def umap_module():
    """The ``umap`` package, its compiled functions kept in numba's disk cache.

    Why: UMAP compiles its functions (numba) on first use in every process, 6-8 s
    before the first layout, and unlike pynndescent's they are not marked for
    caching. Each one is marked here (numba's ``enable_caching``), so a later
    process loads the machine code instead (about 1 s): every run after the
    first on a machine, and the process that makes a large map beside a CQR run.
    The code is what numba compiles anyway, so the layouts are the same. A module
    whose cache has nowhere to go (no writable folder) compiles as before.
    """
    global _umap_cached
    import importlib

    import umap

    if not _umap_cached:
        _umap_cached = True
        from numba.core.registry import CPUDispatcher

        for name in _UMAP_MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            for obj in vars(module).values():
                if isinstance(obj, CPUDispatcher) and obj.__module__ == name:
                    try:
                        obj.enable_caching()
                    except (RuntimeError, OSError):
                        pass            # no locator (no writable folder): compiled each time
    return umap


def check_matrix(X, what: str = "embeddings") -> np.ndarray:
    """The boundary check for the numeric stages: a finite 2-D float32 array."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ConsensaError(f"{what} must be a 2-D array (segments x dimensions), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ConsensaError(f"{what} hold NaN or infinite values; delete the embedding cache "
                            "(cache_dir in the config) and run again")
    return X


def nearest_neighbours(X: np.ndarray, k: int, metric: str = "cosine",
                       chunk_bytes: int = 64 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest neighbours of every row among all rows (itself included),
    nearest first: ``(indices, distances)``, as UMAP's ``precomputed_knn`` takes them.

    Cosine neighbours are found by :func:`_cosine_topk` (a block of rows times all
    rows at a time, with torch). Other metrics use scikit-learn.
    """
    n = X.shape[0]
    if metric != "cosine":
        from sklearn.neighbors import NearestNeighbors

        dist, idx = NearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute").fit(X).kneighbors(X)
        return idx.astype(np.int64), dist.astype(np.float32)
    idx, sims = _cosine_topk(X, X, k, chunk_bytes)
    dist = np.clip(1.0 - sims, 0.0, 2.0)
    # a row's distance to itself is 0, not float32's ~1e-7: UMAP takes the first
    # positive distance as the distance to the nearest other row
    dist[idx == np.arange(n)[:, None]] = 0.0
    return idx, dist


def _unit_rows(A: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(A, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(A / norms, dtype=np.float32)


def _cosine_topk(X: np.ndarray, reference: np.ndarray, k: int,
                 chunk_bytes: int = 64 << 20) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``reference`` most cosine-similar to each row of ``X``,
    nearest first: ``(indices, similarities)``. Block by block (a block of ``X``
    times all of ``reference``, ``chunk_bytes`` at most) with torch's matrix product
    and top-k, which use both cores: about 3x faster than scikit-learn's brute-force
    search, with memory bounded by the block."""
    import torch

    k = min(k, reference.shape[0])
    R = torch.from_numpy(_unit_rows(reference))
    rows = int(max(1, chunk_bytes // (4 * max(1, reference.shape[0]))))
    idx = np.empty((X.shape[0], k), dtype=np.int64)
    sims = np.empty((X.shape[0], k), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, X.shape[0], rows):
            Q = torch.from_numpy(_unit_rows(X[start:start + rows]))
            top = torch.topk(Q @ R.T, k, dim=1, largest=True, sorted=True)
            idx[start:start + rows] = top.indices.numpy()
            sims[start:start + rows] = top.values.numpy()
    return idx, sims


def nearest_in(X: np.ndarray, reference: np.ndarray, k: int,
               chunk_bytes: int = 64 << 20) -> np.ndarray:
    """The indices of the ``k`` rows of ``reference`` nearest to each row of ``X`` by
    cosine, nearest first (:func:`_cosine_topk`, the search :func:`nearest_neighbours`
    makes among all rows)."""
    return _cosine_topk(X, reference, k, chunk_bytes)[0]


#: Rows placed on the map at a time by :func:`place_by_neighbours`.
PLACE_BLOCK = 65_536


def place_by_neighbours(X: np.ndarray, rows: np.ndarray, coords: np.ndarray,
                        k: int) -> np.ndarray:
    """Coordinates for every row of ``X`` from ``coords``, those of the sample ``rows``
    of ``X`` alone: a sample row keeps its own, every other row gets the mean of the
    coordinates of its ``k`` nearest sample rows (cosine, in the space of ``X``).

    Why not fit the map on every row: a UMAP layout of a million segments takes
    hours and more memory than the themes needed, and only a sample was clustered.
    Why not the mapper's ``transform``: not every reducer has one (the UMAP reducer
    gives UMAP precomputed neighbours, with which UMAP cannot place new points
    without the whole index), and this works for every reducer alike. The mean of
    the nearest sample points is where UMAP's own ``transform`` starts a new point
    before refining it: a segment lands among the segments most like it, so the
    map shows each theme where its sample lies, at the cost of the fine structure
    between sample points.
    """
    rows = np.asarray(rows, dtype=np.int64)
    coords = np.asarray(coords, dtype=np.float32)
    out = np.empty((X.shape[0], coords.shape[1]), dtype=np.float32)
    out[rows] = coords
    rest = np.setdiff1d(np.arange(X.shape[0]), rows, assume_unique=True)
    if not len(rows):
        return out
    sample = X[rows]
    for start in range(0, len(rest), PLACE_BLOCK):       # memory: a block, not the corpus
        block = rest[start:start + PLACE_BLOCK]
        out[block] = coords[nearest_in(X[block], sample, max(1, k))].mean(axis=1)
    return out


def neighbours_for(X: np.ndarray, k: int, metric: str,
                   knn: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, bool]:
    """``k`` neighbours of every row: the first ``k`` columns of ``knn`` when it was
    found already for these rows with at least ``k`` columns (shared: True), else a
    new exact search (shared: False)."""
    if knn is not None and knn[0].shape[0] == X.shape[0] and knn[0].shape[1] >= k:
        return knn[0][:, :k], knn[1][:, :k], True
    idx, dist = nearest_neighbours(X, k, metric)
    return idx, dist, False


#: Above this many connected components of the neighbour graph, UMAP starts from
#: the principal components instead of its (per-component) spectral layout.
MAX_SPECTRAL_COMPONENTS = 32


def graph_components(idx: np.ndarray) -> int:
    """Number of connected components of the (undirected) k-nearest-neighbour graph."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    n, k = idx.shape
    graph = csr_matrix((np.ones(n * k, dtype=np.int8), (np.repeat(np.arange(n), k), idx.ravel())),
                       shape=(n, n))
    return int(connected_components(graph, directed=False)[0])


def _neighbour_graph(reducer, X: np.ndarray, knn: tuple[np.ndarray, np.ndarray] | None
                     ) -> tuple[int, np.ndarray, np.ndarray] | None:
    """What the graph reducers (UMAP, spectral) start from: ``(k, indices, distances)``
    of the neighbour graph, recorded on ``reducer`` (``shared_knn_``, ``knn_``,
    ``graph_components_``); or None below 16 rows, too few for a graph, where the
    reducer falls back to PCA (``method_`` "pca")."""
    n = X.shape[0]
    if n < 16:
        reducer.method_ = "pca"
        reducer.n_neighbors_ = 0
        return None
    k = min(reducer.n_neighbors or auto_neighbors(n), n - 1)
    idx, dist, reducer.shared_knn_ = neighbours_for(X, k, reducer.metric, knn)
    reducer.knn_ = (idx, dist)
    reducer.graph_components_ = graph_components(idx)
    return k, idx, dist


def auto_neighbors(n: int) -> int:
    """UMAP neighbourhood scaled to corpus size: 5 for tiny studies, 15 from ~900 on."""
    return int(min(15, max(5, round(math.sqrt(n) / 2))))


@reducers.register("consensa.UMAP.v1", n_epochs=None)
@reducers.register("consensa.UMAP.v2", n_epochs=200)
class UMAPReducer:
    """UMAP on cosine neighbours computed exactly with scikit-learn.

    Passing exact neighbours spares UMAP's own approximate search (and most of its
    numba compilation) and makes the result depend only on the data and the seed.
    Fewer than 16 segments are too few for UMAP: PCA is used and recorded.
    ``n_epochs: null`` is UMAP's own choice (500 up to 10,000 segments, 200 above).

    The versions differ in ``n_epochs``, which each pins: v1 leaves it to UMAP; v2
    takes 200 at every corpus size. The extra epochs below 10,000 segments cost 2-3x
    the layout time; the themes' agreement with the human codes moved by at most
    0.011 AMI without them (bench/README.md).
    """

    def __init__(self, n_components: NComponents = 5, n_neighbors: NNeighbors = None,
                 min_dist: MinDist = 0.0, metric: Metric = "cosine",
                 random_state: RandomState = None, n_epochs: NEpochs = None) -> None:
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.random_state = random_state
        self.n_epochs = n_epochs

    def fit_transform(self, X, knn: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """``knn``: neighbours found already (e.g. by the reduce stage, for the map),
        ``(indices, distances)`` nearest first with at least as many columns as
        this reducer's neighbourhood; they spare the second search."""
        X = check_matrix(X)
        unique, inverse = np.unique(X, axis=0, return_inverse=True)
        if len(unique) < len(X):
            # identical texts (a "Thank you." in every interview) are one point: as
            # copies they form a component of their own in the neighbour graph, and
            # UMAP's layout of a graph of several components changed from one run to
            # the next with the same seed. Laid out once, each copy takes its place.
            return self.fit_transform(unique)[inverse.ravel()]
        found = _neighbour_graph(self, X, knn)
        if found is None:
            return PCAReducer(self.n_components).fit_transform(X)
        k, idx, dist = found
        # UMAP starts from a spectral layout, computed component by component of the
        # neighbour graph: with many components (clumps of near-identical texts) that
        # loop takes minutes. Interview data gives one component; beyond
        # MAX_SPECTRAL_COMPONENTS the start is the principal components instead.
        self.init_ = "spectral" if self.graph_components_ <= MAX_SPECTRAL_COMPONENTS else "pca"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = umap_module().UMAP(n_components=self.n_components, n_neighbors=k,
                                       min_dist=self.min_dist, metric=self.metric,
                                       random_state=self.random_state, init=self.init_,
                                       precomputed_knn=(idx, dist, None),
                                       n_epochs=self.n_epochs, verbose=False)
            out = model.fit_transform(X)
        self.method_ = "umap"
        self.n_neighbors_ = k
        return np.asarray(out, dtype=np.float32)


#: UMAPReducer with the defaults of v2, for code that builds a reducer without a config
UMAPReducerV2 = reducers.preset("consensa.UMAP.v2")


def laplacian_eigenmap(graph, dim: int, drop_first: bool = True) -> np.ndarray:
    """The ``dim`` leading eigenvectors of the graph's normalized adjacency
    D^-1/2 W D^-1/2 (the smallest of its normalized Laplacian), scaled by D^-1/2:
    a Laplacian eigenmap, as scikit-learn's ``spectral_embedding`` computes it.

    Lanczos on the adjacency's largest eigenvalues needs no shift-invert
    factorisation: on 10,000 interview segments 0.1 s instead of scikit-learn's
    39 s, with the same subspace (principal angles under 0.01 degree). It starts
    from a constant vector and flips each vector's sign so its largest entry is
    positive, so the same graph always gives the same coordinates.
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import eigsh

    W = sp.csr_matrix(graph, dtype=np.float64)
    n = W.shape[0]
    deg = np.asarray(W.sum(axis=1)).ravel()
    deg[deg <= 0] = 1.0                       # an isolated row keeps a zero embedding
    scale = 1.0 / np.sqrt(deg)
    A = sp.diags(scale) @ W @ sp.diags(scale)
    k = min(dim + int(drop_first), n - 1)
    vals, vecs = eigsh(A, k=k, which="LA", v0=np.ones(n), tol=1e-8)
    order = np.argsort(-vals, kind="stable")
    vecs = vecs[:, order] * scale[:, None]
    if drop_first:
        vecs = vecs[:, 1:]
    signs = np.sign(vecs[np.abs(vecs).argmax(axis=0), np.arange(vecs.shape[1])])
    signs[signs == 0] = 1.0
    return vecs * signs


@reducers.register("consensa.Spectral.v1")
class SpectralReducer:
    """A spectral embedding (Laplacian eigenmap) of UMAP's neighbour graph, rows
    scaled to unit length: the coordinates spectral clustering uses.

    Deterministic: the same vectors always give the same coordinates, whatever the
    run's seed, so the themes do not change from one seed to the next (with UMAP,
    the assignments of two seeds agree with an NMI of about 0.8; bench/README.md).
    The neighbour graph is UMAP's fuzzy graph on exact cosine neighbours (as
    ``consensa.UMAP``); the eigenvectors come from Lanczos, started from a fixed
    vector (:func:`laplacian_eigenmap`). ``n_components`` eigenvectors (the first, constant one dropped) leave
    room for that many broad themes; HDBSCAN then finds the themes in them.
    Fewer than 16 segments are too few: PCA is used and recorded.
    """

    def __init__(self, n_components: NComponents = 20, n_neighbors: NNeighbors = None,
                 metric: Metric = "cosine", normalize_rows: bool = True) -> None:
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.normalize_rows = normalize_rows

    def fit_transform(self, X, knn: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """``knn`` as for :meth:`UMAPReducer.fit_transform`."""
        X = check_matrix(X)
        n = X.shape[0]
        if self.n_components < 1:
            raise ConsensaError(f"reduce.n_components must be at least 1, got {self.n_components}")
        dim = min(self.n_components, max(1, n - 2))
        found = _neighbour_graph(self, X, knn)
        if found is None:
            return PCAReducer(self.n_components).fit_transform(X)
        k, idx, dist = found
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            umap_module()
            from umap.umap_ import fuzzy_simplicial_set

            graph, _, _ = fuzzy_simplicial_set(X, k, np.random.RandomState(0), self.metric,
                                               knn_indices=idx, knn_dists=dist)
        # a connected graph's first eigenvector is constant and is dropped; with
        # several components the first ones tell the components apart and stay
        out = laplacian_eigenmap(graph, dim, drop_first=self.graph_components_ == 1)
        out = np.asarray(out, dtype=np.float64)
        if self.normalize_rows:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            out = out / norms
        if dim < self.n_components:
            out = np.hstack([out, np.zeros((n, self.n_components - dim))])
        self.method_ = "spectral"
        self.n_neighbors_ = k
        return out.astype(np.float32)


@reducers.register("consensa.PCA.v1")
class PCAReducer:
    """Principal components: linear, fast, deterministic."""

    def __init__(self, n_components: NComponents = 5, random_state: RandomState = None) -> None:
        self.n_components = n_components
        self.random_state = random_state

    def fit_transform(self, X, knn: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """``knn`` is ignored: principal components need no neighbours."""
        from sklearn.decomposition import PCA

        X = check_matrix(X)
        k = min(self.n_components, X.shape[0], X.shape[1])
        out = np.zeros((X.shape[0], self.n_components), dtype=np.float32)
        if k >= 1 and X.shape[0] >= 2:
            out[:, :k] = PCA(k, random_state=self.random_state).fit_transform(X)
        self.method_ = "pca"
        return out


@reducers.register("consensa.Identity.v1")
class IdentityReducer:
    """No reduction: cluster the embeddings as they are."""

    def __init__(self) -> None:
        pass

    def fit_transform(self, X, knn: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """``knn`` is ignored: nothing is reduced."""
        self.method_ = "identity"
        return check_matrix(X)
