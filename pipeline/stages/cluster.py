"""Cluster stage: reduced vectors -> candidate themes, and outlier reassignment.

Clusterers follow the scikit-learn contract: ``fit(X)`` returns ``self`` and sets
``labels_`` (-1 = outlier) and ``probabilities_`` (membership strength in [0, 1]).
:func:`assign` then numbers themes by size and moves outliers to their nearest
theme when they are similar enough, keeping the similarity as their strength, so
nothing is hidden: the report shows who was moved and how close they were.

A corpus too large to cluster whole is clustered on a :func:`stratified_sample`
of its segments, every case represented, and :func:`join_sample` then gives every
other segment its nearest theme by the same rule outliers are moved by.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from ..errors import ConfigError, InputError
from ..registry import RandomState, clusterers
from ..types import Clustering
from .reduce import check_matrix

# Parameter bounds, checked by the registry (and so by `consensa validate`) before a
# run starts; scikit-learn would refuse these values only after the embeddings, with
# a traceback. 0 is not "automatic": that is null, or leaving the key out.
MinClusterSize = Annotated[int | None, Field(ge=2, description=(
    "the smallest theme, in segments, at least 2; for the automatic size (scaled to the "
    "study) leave the key out or write null: 0 is not automatic"))]
MinSamples = Annotated[int | None, Field(ge=1, description=(
    "HDBSCAN's density smoothing, in segments (at least 1); null (or left out) chooses it"))]
SelectionMethod = Literal["eom", "leaf"]
SelectionEpsilon = Annotated[float, Field(ge=0, allow_inf_nan=False, description=(
    "HDBSCAN's distance, in the reduced space, below which themes are merged; 0 merges "
    "none"))]
MaxClusterShare = Annotated[float | None, Field(gt=0, le=1, description=(
    "the largest share of the segments one theme may hold, above 0 and at most 1; "
    "null for no cap"))]
NClusters = Annotated[int, Field(ge=1, description="the number of themes (at least 1)")]
MinSamplesFrom = Annotated[Literal["min_cluster_size", "n_segments"], Field(description=(
    "where min_samples comes from when it is not set: a third of min_cluster_size, or "
    "a third of the automatic smallest theme for the number of segments"))]


def auto_min_samples(min_cluster_size: int) -> int:
    """HDBSCAN's density smoothing: a third of the smallest theme, at least 3.

    scikit-learn's default (min_samples = min_cluster_size) leaves a quarter to a
    half of interview segments as noise; a smaller value keeps themes apart while
    calling far fewer segments outliers.
    """
    return int(max(3, round(min_cluster_size / 3)))


def auto_min_cluster_size(n: int) -> int:
    """Smallest theme scaled to corpus size: 5 for a small study, ~50 at 10k segments."""
    return int(max(5, round(math.sqrt(n) / 2)))


@clusterers.register("consensa.HDBSCAN.v1", max_cluster_share=None,
                     min_samples_from="min_cluster_size")
@clusterers.register("consensa.HDBSCAN.v2", max_cluster_share=0.25,
                     min_samples_from="min_cluster_size")
@clusterers.register("consensa.HDBSCAN.v3", max_cluster_share=0.25,
                     min_samples_from="n_segments")
class HDBSCANClusterer:
    """Density clustering (scikit-learn's HDBSCAN); finds the number of themes itself.

    Its versions differ in two settings, which each pins:

    * v1: no cap on a theme's size; ``min_samples``, when not set, a third of
      ``min_cluster_size``.
    * v2: ``max_cluster_share`` 0.25: no theme holds more than a quarter of the
      segments. HDBSCAN's "excess of mass" selection can flip, from one seed to the
      next, between many themes and one theme holding most of the study (on AnnoMI
      client talk, some seeds gave 11 themes where others gave 26, and the seeds'
      assignments agreed with an NMI of 0.2); the cap makes it keep the themes
      inside such a block (bench/README.md).
    * v3: v2 with ``min_samples_from: n_segments``: ``min_samples``, when not set,
      is taken from the number of segments (a third of the automatic smallest
      theme) and no longer from ``min_cluster_size``. ``min_samples`` sets how much
      the density is smoothed, which is a property of the corpus;
      ``min_cluster_size`` says how small a theme the team wants to see. Kept apart,
      changing the smallest theme size selects themes from the same HDBSCAN
      hierarchy instead of re-estimating the density too. With
      both left to auto, v3 finds the same themes as v2. A ``min_cluster_size`` far
      below the automatic one (very small themes in a large corpus) wants
      ``min_samples`` set lower too.
    """

    def __init__(self, min_cluster_size: MinClusterSize = None, min_samples: MinSamples = None,
                 cluster_selection_method: SelectionMethod = "eom",
                 cluster_selection_epsilon: SelectionEpsilon = 0.0,
                 max_cluster_share: MaxClusterShare = None,
                 min_samples_from: MinSamplesFrom = "min_cluster_size") -> None:
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_method = cluster_selection_method
        self.cluster_selection_epsilon = cluster_selection_epsilon
        self.max_cluster_share = max_cluster_share
        self.min_samples_from = min_samples_from

    def fit(self, X) -> HDBSCANClusterer:
        """Fit on ``X``.

        A run keeps what the fit learned under these settings
        (:func:`pipeline.compose.fit_clusterer`), but HDBSCAN's hierarchy is built on
        every fit, not cached: keeping it would mean cutting it with scikit-learn's
        private ``_hdbscan._tree.tree_to_labels``, and at 10,000 segments that saves
        about 1 s of a 5-7 s re-run with a new ``min_cluster_size`` (2% of a cold run;
        bench/README.md).
        """
        from sklearn.cluster import HDBSCAN

        X = check_matrix(X, "reduced vectors")
        n = X.shape[0]
        mcs = self.min_cluster_size or auto_min_cluster_size(n)
        self.min_cluster_size_ = mcs
        self.min_samples_ = self.min_samples or self._auto_min_samples(n, mcs)
        if n < max(2, mcs, self.min_samples_):
            self.labels_ = np.full(n, -1, dtype=np.int64)
            self.probabilities_ = np.zeros(n, dtype=np.float32)
            return self
        cap = None
        if self.max_cluster_share is not None:
            if not 0 < self.max_cluster_share <= 1:
                raise ConfigError(f"cluster.max_cluster_share must be in (0, 1], got "
                                  f"{self.max_cluster_share}", field="cluster.max_cluster_share")
            cap = max(2 * mcs, int(math.ceil(self.max_cluster_share * n)))
        self.max_cluster_size_ = cap or 0
        model = HDBSCAN(min_cluster_size=mcs, min_samples=self.min_samples_,
                        cluster_selection_method=self.cluster_selection_method,
                        cluster_selection_epsilon=self.cluster_selection_epsilon,
                        max_cluster_size=cap, copy=True).fit(X.astype(np.float64))
        self.labels_ = np.asarray(model.labels_).astype(np.int64)
        self.probabilities_ = np.asarray(model.probabilities_).astype(np.float32)
        return self

    def _auto_min_samples(self, n: int, min_cluster_size: int) -> int:
        """``min_samples`` when it is not set (``min_samples_from``)."""
        if self.min_samples_from == "n_segments":
            return auto_min_samples(auto_min_cluster_size(n))
        return auto_min_samples(min_cluster_size)

    def check_n_segments(self, n: int) -> None:
        """Refuse settings that cannot give one theme on ``n`` segments, before the
        run embeds them.

        HDBSCAN never makes all the segments one theme: a theme appears where a group
        splits into two parts of at least ``min_cluster_size`` segments each, so
        fewer than twice ``min_cluster_size`` segments (or fewer than ``min_samples``)
        always give no theme at all. Such a run used to finish with "themes: 0".
        """
        mcs = self.min_cluster_size or auto_min_cluster_size(n)
        ms = self.min_samples or self._auto_min_samples(n, mcs)
        fit = n // 2
        other = (f"set cluster.min_cluster_size to at most {fit} (half the segments)"
                 if fit >= 2 else "add transcripts")
        if self.min_cluster_size and n >= 2 * auto_min_cluster_size(n):
            other += ", or leave it out to scale it to the study"
        other += ", or use consensa.KMeans.v1 with n_clusters"
        if n < 2 * mcs:
            if self.min_cluster_size:
                raise ConfigError(
                    f"{mcs} is more than the study's {n} segments can hold: HDBSCAN makes "
                    f"themes only from groups that split into parts of at least {mcs} "
                    "segments each, so this run would find no theme",
                    field="cluster.min_cluster_size", hint=other)
            raise ConfigError(
                f"the study has only {n} segments, too few for HDBSCAN's smallest theme of "
                f"{mcs} segments chosen by default (it needs twice as many segments)",
                field="cluster.min_cluster_size", hint=other)
        if n < ms:
            raise ConfigError(
                f"{ms} is more than the study's {n} segments, so this run would find no "
                "theme", field="cluster.min_samples",
                hint=f"set it to at most {n}, or leave it out to choose it by default")


def no_themes_error(clusterer, n: int, n_components: int | None = None) -> InputError:
    """The error of a run whose clusterer left every one of its ``n`` segments an
    outlier: a run without themes has nothing for the judges to review.

    ``n_components``: the reducer's dimensions. As many as the segments (a sweep's
    largest value, say) leave no density to find, whatever the cluster settings, so the
    error names that setting first."""
    if n_components is not None and n_components >= n - 2:
        return InputError(f"no themes found: the clusterer left all {n} segments as outliers; "
                          f"reduce.n_components ({n_components}) is as many as the segments "
                          "(or more), which leaves nothing dense to find", field="reduce",
                          hint="set reduce.n_components well below the number of segments "
                               "(5-50 is usual)")
    settings = [f"cluster.{k} (it was {getattr(clusterer, k + '_')})"
                for k in ("min_cluster_size", "min_samples") if hasattr(clusterer, k + "_")]
    lower = f"lower {' or '.join(settings)}, " if settings else ""
    return InputError(f"no themes found: the clusterer left all {n} segments as outliers",
                      field="cluster",
                      hint=f"{lower}or use consensa.KMeans.v1 with n_clusters, which assigns "
                           "every segment")


@clusterers.register("consensa.KMeans.v1")
class KMeansClusterer:
    """k-means with a fixed number of themes; every segment is assigned."""

    def __init__(self, n_clusters: NClusters = 10, random_state: RandomState = None) -> None:
        self.n_clusters = n_clusters
        self.random_state = random_state

    def fit(self, X) -> KMeansClusterer:
        from sklearn.cluster import KMeans

        X = check_matrix(X, "reduced vectors")
        k = max(1, min(self.n_clusters, X.shape[0]))
        model = KMeans(k, n_init=10, random_state=self.random_state).fit(X)
        self.labels_ = model.labels_.astype(np.int64)
        # the number of themes used: fewer than asked when there are fewer segments,
        # which the manifest's fitted state then shows
        self.n_clusters_ = int(k)
        d = model.transform(X).min(axis=1)
        scale = float(np.max(d)) or 1.0
        self.probabilities_ = (1.0 - d / scale).astype(np.float32)
        return self


@clusterers.register("consensa.Agglomerative.v1")
class AgglomerativeClusterer:
    """Ward hierarchical clustering cut at ``n_clusters``; every segment is assigned."""

    def __init__(self, n_clusters: NClusters = 10) -> None:
        self.n_clusters = n_clusters

    def fit(self, X) -> AgglomerativeClusterer:
        from sklearn.cluster import AgglomerativeClustering

        X = check_matrix(X, "reduced vectors")
        n = X.shape[0]
        if n < 2:
            self.labels_ = np.zeros(n, dtype=np.int64)
        else:
            self.labels_ = AgglomerativeClustering(min(self.n_clusters, n)).fit(X).labels_.astype(np.int64)
        self.n_clusters_ = int(max(1, min(self.n_clusters, n)))   # as k-means records it
        self.probabilities_ = np.ones(n, dtype=np.float32)
        return self


def centroids(vectors: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Unit-length mean vector of each theme 0..k-1."""
    out = np.zeros((k, vectors.shape[1]), dtype=np.float32)
    for t in range(k):
        members = vectors[labels == t]
        if len(members):
            c = members.mean(axis=0)
            out[t] = c / (np.linalg.norm(c) or 1.0)
    return out


def join_nearest(vectors: np.ndarray, group: np.ndarray, strength: np.ndarray,
                 centres: np.ndarray, min_similarity: float) -> np.ndarray:
    """Move each outlier (group -1) to the nearest of ``centres`` by cosine when that
    similarity is at least ``min_similarity``, in place: its group becomes that centre's
    and its strength the similarity. Returns which rows moved. ``vectors`` and
    ``centres`` are unit length."""
    moved = np.zeros(len(group), dtype=bool)
    out_idx = np.flatnonzero(group < 0)
    if len(out_idx) and len(centres):
        sims = vectors[out_idx] @ centres.T
        best = sims.argmax(axis=1)
        best_sim = sims[np.arange(len(out_idx)), best]
        ok = best_sim >= min_similarity
        group[out_idx[ok]] = best[ok]
        strength[out_idx[ok]] = np.clip(best_sim[ok], 0.0, 1.0)
        moved[out_idx[ok]] = True
    return moved


def assign(embeddings: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
           reassign: bool = True, min_similarity: float = 0.35) -> Clustering:
    """Number themes by size (largest first) and reassign outliers.

    An outlier moves to the theme whose centroid (in embedding space) is nearest by
    cosine when that similarity is at least ``min_similarity``; its strength is the
    similarity. Outliers below it stay unassigned (theme -1, strength 0).
    """
    labels = np.asarray(labels, dtype=np.int64)
    found = sorted(set(labels[labels >= 0].tolist()),
                   key=lambda t: (-int(np.sum(labels == t)), int(np.argmax(labels == t))))
    remap = {old: new for new, old in enumerate(found)}
    theme = np.array([remap.get(int(t), -1) for t in labels], dtype=np.int64)
    strength = np.where(theme >= 0, np.asarray(probabilities, dtype=np.float32), 0.0).astype(np.float32)
    moved = np.zeros(len(theme), dtype=bool)
    n_out = int(np.sum(theme < 0))
    if reassign and found and n_out:
        moved = join_nearest(embeddings, theme, strength, centroids(embeddings, theme, len(found)),
                             min_similarity)
    return Clustering(theme=theme, strength=strength, reassigned=moved, n_outliers_initial=n_out)


def stratified_sample(cases: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Rows of a sample of ``size`` rows in which every case keeps its share of the
    rows (rounded, at least one row a case), drawn at random within each case.

    The sample is about ``size`` rows: each case's share is rounded on its own (at
    most ``size`` more rows, from cases whose share rounds to none). A study with
    more cases than ``size`` (a survey's open answers: one or two segments a
    respondent) cannot give every case a row: ``size`` cases are drawn at random,
    one row each, or the "sample" would be the whole corpus. Cases are taken in the
    order they first appear, each case's rows in their order, so the same rows and
    seed always give the same sample. The rows of each case are found in one
    grouping pass, not one scan of all rows a case, so a million segments of
    thousands of cases are sampled in a moment.
    """
    rng = np.random.default_rng(seed)
    codes, uniques = pd.factorize(np.asarray(cases, dtype=object))
    n = len(codes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    by_case = np.argsort(codes, kind="stable")            # each case's rows, in order
    bounds = np.r_[0, np.cumsum(np.bincount(codes, minlength=len(uniques)))]
    if len(uniques) > size:
        chosen = np.sort(rng.choice(len(uniques), size=size, replace=False))
        return np.sort(np.array([rng.choice(by_case[bounds[c]:bounds[c + 1]]) for c in chosen],
                                dtype=np.int64))
    picked: list[np.ndarray] = []
    for c in range(len(uniques)):
        rows = by_case[bounds[c]:bounds[c + 1]]
        k = max(1, int(round(len(rows) * size / n)))
        picked.append(np.sort(rng.choice(rows, size=min(k, len(rows)), replace=False)))
    return np.sort(np.concatenate(picked))


#: Rows compared with the theme centroids at a time when a sample's themes are
#: joined: memory stays at a block of rows times the themes, whatever the corpus.
JOIN_BLOCK = 65_536


def join_sample(vectors: np.ndarray, rows: np.ndarray, fitted: Clustering,
                min_similarity: float) -> Clustering:
    """The themes of every row of ``vectors`` from ``fitted``, the themes found on the
    sample ``rows`` alone.

    A sample row keeps what the clustering gave it. Every other row joins the theme
    whose centroid is nearest by cosine when that similarity is at least
    ``min_similarity``, as an outlier is moved (:func:`assign`), and is marked
    ``reassigned`` with the similarity as its strength: it was placed by its
    similarity, not by the clustering, so it counts like a reassigned outlier
    wherever frequencies are counted honestly, and quotes come from the clustered
    segments first. Below ``min_similarity`` it stays unassigned. The centroids are
    those outlier reassignment uses: the mean of each theme's clustered (not moved)
    sample rows, in the space of ``vectors`` (unit length), the space the themes
    were found in. Themes are numbered again by size over all rows, largest first.
    """
    n = len(vectors)
    rows = np.asarray(rows, dtype=np.int64)
    k = fitted.n_themes
    theme = np.full(n, -1, dtype=np.int64)
    strength = np.zeros(n, dtype=np.float32)
    reassigned = np.zeros(n, dtype=bool)
    theme[rows], strength[rows], reassigned[rows] = fitted.theme, fitted.strength, fitted.reassigned
    clustered = np.where(fitted.reassigned, -1, fitted.theme)
    cents = centroids(vectors[rows], clustered, k)
    rest = np.setdiff1d(np.arange(n), rows, assume_unique=True)
    for start in range(0, len(rest), JOIN_BLOCK):
        block = rest[start:start + JOIN_BLOCK]
        group = np.full(len(block), -1, dtype=np.int64)
        sim = np.zeros(len(block), dtype=np.float32)
        reassigned[block] = join_nearest(vectors[block], group, sim, cents, min_similarity)
        theme[block], strength[block] = group, sim
    if k:
        size = np.bincount(theme[theme >= 0], minlength=k)
        first = np.full(k, n, dtype=np.int64)
        np.minimum.at(first, theme[theme >= 0], np.flatnonzero(theme >= 0))
        order = sorted(range(k), key=lambda t: (-int(size[t]), int(first[t])))
        remap = np.empty(k, dtype=np.int64)
        remap[order] = np.arange(k)
        theme = np.where(theme >= 0, remap[np.maximum(theme, 0)], -1)
    return Clustering(theme=theme, strength=strength, reassigned=reassigned,
                      n_outliers_initial=fitted.n_outliers_initial)


def sample_summary(counts: Mapping) -> str | None:
    """The sentence the summary and the report give a run whose themes were fitted
    on a sample (its manifest's ``counts``); None for a run that clustered every
    segment."""
    fitted = int(counts.get("fitted_on_sample") or 0)
    if not fitted:
        return None
    joined = int(counts.get("joined_after_sample") or 0)
    left = int(counts.get("unassigned_after_sample") or 0)
    return (f"themes fitted on a case-stratified sample of {fitted:,} of {fitted + joined:,} "
            f"segments; the other {joined:,} joined their nearest theme ({left:,} left "
            "unassigned)")


#: HDBSCANClusterer with the defaults of v2 and v3, for code that builds a clusterer
#: without a config; the versions themselves are registered on the class
HDBSCANClustererV2 = clusterers.preset("consensa.HDBSCAN.v2")
HDBSCANClustererV3 = clusterers.preset("consensa.HDBSCAN.v3")
