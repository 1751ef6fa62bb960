"""Reduce stage: embeddings -> a few dimensions where density clustering works.

Implementations take ``fit_transform(X) -> ndarray`` and keep what they chose
in attributes ending in ``_`` (e.g. ``n_neighbors_`` when it was set to auto),
which the run records in its manifest.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .errors import ConsensaError
from .registry import reducers


def check_matrix(X, what: str = "embeddings") -> np.ndarray:
    """The boundary check for the numeric stages: a finite 2-D float32 array."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ConsensaError(f"{what} must be a 2-D array (segments x dimensions), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ConsensaError(f"{what} hold NaN or infinite values; delete the embedding cache "
                            "(cache_dir in the config) and run again")
    return X


def auto_neighbors(n: int) -> int:
    """UMAP neighbourhood scaled to corpus size: 5 for tiny studies, 15 from ~900 on."""
    return int(min(15, max(5, round(math.sqrt(n) / 2))))


@reducers.register("consensa.UMAP.v1")
class UMAPReducer:
    """UMAP on cosine neighbours computed exactly with scikit-learn.

    Passing exact neighbours spares UMAP's own approximate search (and most of its
    numba compilation) and makes the result depend only on the data and the seed.
    Fewer than 16 segments are too few for UMAP: PCA is used and recorded.
    """

    def __init__(self, n_components: int = 5, n_neighbors: int | None = None,
                 min_dist: float = 0.0, metric: str = "cosine",
                 random_state: int | None = None) -> None:
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.random_state = random_state

    def fit_transform(self, X) -> np.ndarray:
        X = check_matrix(X)
        n = X.shape[0]
        if n < 16:
            self.method_ = "pca"
            self.n_neighbors_ = 0
            return PCAReducer(self.n_components).fit_transform(X)
        from sklearn.neighbors import NearestNeighbors

        k = self.n_neighbors or auto_neighbors(n)
        k = min(k, n - 1)
        nn = NearestNeighbors(n_neighbors=k, metric=self.metric, algorithm="brute").fit(X)
        dist, idx = nn.kneighbors(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import umap

            model = umap.UMAP(n_components=self.n_components, n_neighbors=k,
                              min_dist=self.min_dist, metric=self.metric,
                              random_state=self.random_state,
                              precomputed_knn=(idx, dist, None), verbose=False)
            out = model.fit_transform(X)
        self.method_ = "umap"
        self.n_neighbors_ = k
        return np.asarray(out, dtype=np.float32)


@reducers.register("consensa.PCA.v1")
class PCAReducer:
    """Principal components: linear, fast, deterministic."""

    def __init__(self, n_components: int = 5, random_state: int | None = None) -> None:
        self.n_components = n_components
        self.random_state = random_state

    def fit_transform(self, X) -> np.ndarray:
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

    def fit_transform(self, X) -> np.ndarray:
        self.method_ = "identity"
        return check_matrix(X)
