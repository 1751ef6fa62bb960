"""Stage composition: the stages a config names, and the steps that run them.

``consensa run``, ``consensa stability`` and ``consensa precode`` build their stages
here, with :func:`build_stage`, so a config section means the same stage
everywhere. The steps below run those stages and do their caching
(:mod:`pipeline.cache`): a stage computes; the orchestrator decides what is kept.
Stages follow the scikit-learn contract and receive nothing else, except what
their contract documents: a segmenter's ``memory=`` (the cache, where it keeps the
spans it finds) and a reducer's ``knn=`` (the reduce step's neighbour graph, which
the map is given). No stage is inspected for the arguments it takes.

:func:`find_themes` is the one reduce + cluster + outlier assignment: the run
finds its themes with it, and the stability check finds the resamples' themes
with it, so both always group segments the same way.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cache import Cache, code_digest, digest, key, stage_key, text_keys
from .config import STAGE_KINDS, RunConfig, ScaleConfig
from .errors import ConfigError, ConsensaError
from .fsutil import anchored
from .progress import progress
from .registry import REGISTRIES, clone, get_params
from .stages.cluster import assign
from .stages.label import Vocabulary, build_vocabulary, vocabulary_arrays, vocabulary_from_arrays
from .stages.reduce import check_matrix
from .types import Clustering

log = logging.getLogger("consensa.compose")


def build_stage(section: str, cfg: RunConfig, *, seed: int | None = None) -> Any:
    """The implementation that config section ``section`` (segment, embed, reduce,
    cluster or map) names, built with its parameters.

    The config's seed fills ``random_state`` where the section leaves it out;
    ``seed`` (a stability resample's own seed) replaces it in a stage that takes one.
    """
    spec = getattr(cfg, section)
    registry = REGISTRIES[STAGE_KINDS[section]]
    params = spec.params()
    if seed is not None and "random_state" in registry.params_model(spec.name).model_fields:
        params["random_state"] = seed
    return registry.build(spec.name, params, seed=cfg.seed, where=section)


def stage_record(section: str, cfg: RunConfig, stage: Any) -> dict[str, Any]:
    """What the manifest records of a built stage: its name and every parameter."""
    return {"name": getattr(cfg, section).name, **get_params(stage)}


def open_cache(cfg: RunConfig, base_dir: str | Path | None = None) -> Cache:
    """The cache in the config's ``cache_dir`` (a relative one read from ``base_dir``,
    the config file's folder); ``Cache(None)`` when the config has none."""
    if cfg.cache_dir is None:
        return Cache(None)
    return Cache(anchored(cfg.cache_dir, base_dir if base_dir is not None else Path.cwd()))


# --- embed --------------------------------------------------------------------------

def model_id_of(embedder: Any, cache: Cache) -> str | None:
    """The embedder's ``model_id``; for one that reads its model's weights
    (``model_id_with``), their digests remembered in ``cache``."""
    with_cache = getattr(embedder, "model_id_with", None)
    return with_cache(cache) if with_cache is not None else embedder.model_id


def embed_texts(embedder: Any, texts: Sequence[str], cache: Cache,
                scale: ScaleConfig | None = None) -> tuple[np.ndarray, dict]:
    """``embedder.encode(texts)`` through ``cache``, one vector a text: ``(vectors,
    {"embedded": texts encoded now, "from_cache": texts read from the cache})``.

    ``scale`` (the config's section): with an ``engine`` other than ``local`` the
    texts the cache lacks are embedded on a Dask cluster (:func:`_embed_on_cluster`);
    otherwise, and without it, here, as described below.

    The embedder's ``model_id`` names what else its vectors depend on (a model's
    weights); an embedder whose ``model_id`` is None fits itself to the texts it is
    given (TF-IDF), so its vectors are not a text's own and are never cached. The
    texts not in the cache are encoded together, each once, in a fixed order.

    An embedder whose vectors depend on the batch they were made in
    (``batch_dependent``: int8 quantization) is cached per set of texts: the whole
    set is looked up, and embedded again, each text once, in a fixed order, when any
    text is new. So the vectors of a run never depend on what the cache held.
    """
    texts = list(texts)
    if scale is not None and scale.engine != "local" and texts:
        return _embed_on_cluster(embedder, texts, cache, scale)
    model_id = model_id_of(embedder, cache) if cache.enabled else None
    if model_id is None:
        return embedder.encode(texts), {"embedded": len(texts), "from_cache": 0}
    if getattr(embedder, "batch_dependent", False):
        model_id = digest(model_id, *sorted(set(texts)))
    model = stage_key(embedder, digest(model_id))
    keys = text_keys(texts)
    found = cache.get_vectors(model, sorted(set(keys)))
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in found}.items())
    if todo:
        new = embedder.encode([t for _, t in todo])
        fresh = {k: new[i] for i, (k, _) in enumerate(todo)}
        cache.put_vectors(model, fresh)
        found.update(fresh)
    if not texts:
        return embedder.encode([]), {"embedded": 0, "from_cache": 0}
    vecs = np.stack([found[k] for k in keys]).astype(np.float32, copy=False)
    return vecs, {"embedded": len(todo), "from_cache": len(set(keys)) - len(todo)}


def _embed_on_cluster(embedder: Any, texts: list[str], cache: Cache,
                      scale: ScaleConfig) -> tuple[np.ndarray, dict]:
    """:func:`embed_texts` on the Dask cluster ``scale.engine`` describes.

    The distinct texts, in the order of their keys, are cut into chunks of
    ``scale.chunk_size``; each chunk the cache lacks is one task, embedded by a
    worker that loads the model once (:func:`encode_chunk`), and written to the
    cache here as soon as it arrives. A run stopped half way has its finished
    chunks in the cache, and started again embeds only what is missing; no cluster
    is started when nothing is. A chunk that fails is tried again
    ``scale.retries`` times (a dead worker's chunk on another worker); the chunks
    that still fail are named together at the end, after every other chunk is
    cached (the cache must be on: ``cache_dir``, else nothing survives a failure).

    A text's vector must not depend on how the texts were cut. For an embedder
    whose vectors are a text's own that holds, and its vectors are cached per text,
    shared with the local engine. An embedder whose vectors depend on the batch
    they were made in (``batch_dependent``: int8 quantization scales each batch by
    its largest activation) is cached per chunk, under the chunk's set of texts:
    the chunks are fixed by the run's set of texts and ``chunk_size`` alone, so a
    restarted run cuts the same chunks and finds the finished ones, and a run's
    vectors never depend on what else the cache holds. They are the vectors the
    local engine would give each chunk embedded on its own: on the demo's
    segments a mean cosine of 0.96 (at least 0.90) to those of the whole set
    embedded at once, about what int8 costs against float32. That is the price of
    embedding a large corpus in pieces, paid the same way by every run of the same
    texts; refusing the default embedder on a cluster would cost its 1.8x speed
    where it matters most.
    """
    model_id = model_id_of(embedder, cache)
    if model_id is None:
        raise ConfigError(f"the embedder {type(embedder).__name__} fits itself to the texts it "
                          "is given, so texts embedded in chunks would not share one space",
                          field="scale.engine", hint="set scale.engine: local")
    keys = text_keys(texts)
    distinct = sorted(dict(zip(keys, texts)).items())
    size = scale.chunk_size
    cut = [distinct[i:i + size] for i in range(0, len(distinct), size)]
    found: dict[str, np.ndarray] = {}
    todo: list[tuple[str, list[tuple[str, str]]]] = []      # (cache model key, chunk)
    if getattr(embedder, "batch_dependent", False):
        for chunk in cut:
            model = stage_key(embedder, digest(digest(model_id, *sorted(t for _, t in chunk))))
            hit = cache.get_vectors(model, [k for k, _ in chunk])
            if len(hit) == len(chunk):
                found.update(hit)
            else:
                todo.append((model, chunk))
    else:
        model = stage_key(embedder, digest(model_id))
        found = cache.get_vectors(model, [k for k, _ in distinct])
        missing = [(k, t) for k, t in distinct if k not in found]
        todo = [(model, missing[i:i + size]) for i in range(0, len(missing), size)]
    n_todo = sum(len(chunk) for _, chunk in todo)
    if todo:
        _run_chunks(embedder, todo, cache, scale, found)
    vecs = np.stack([found[k] for k in keys]).astype(np.float32, copy=False)
    return vecs, {"embedded": n_todo, "from_cache": len(distinct) - n_todo}


def _run_chunks(embedder: Any, todo: list[tuple[str, list[tuple[str, str]]]], cache: Cache,
                scale: ScaleConfig, found: dict[str, np.ndarray]) -> None:
    """Embed the chunks of ``todo`` on the cluster, each cached and added to ``found``
    as it arrives; raise once at the end, naming the chunks that failed."""
    from distributed import as_completed

    from .shards import dask_client, describe_failure

    n_texts = sum(len(chunk) for _, chunk in todo)
    log.info("embedding %d text(s) in %d chunk(s) on a Dask cluster (%s)", n_texts, len(todo),
             scale.engine.kind)
    # the task carries the embedder's settings only, never a loaded model: each worker
    # loads its own once (encode_chunk), keyed by what the vectors depend on
    fresh = clone(embedder)
    state = stage_key(embedder, digest(model_id_of(embedder, cache)))
    failed: list[tuple[int, int, str]] = []
    with dask_client(scale.engine, scale.retries, len(todo), where="scale.engine") as client:
        futures = {}
        for index, (model, chunk) in enumerate(todo):
            future = client.submit(encode_chunk, [t for _, t in chunk], fresh, state,
                                   retries=scale.retries, pure=False,
                                   key=f"consensa-embed-{index}-{model[:12]}")
            futures[future] = index
        for future in progress(as_completed(futures), "embedding", total=len(futures),
                               unit="chunk"):
            index = futures[future]
            model, chunk = todo[index]
            if future.status == "error":
                failed.append((index, len(chunk), describe_failure(future.exception())))
            else:
                vecs = future.result()
                if vecs.shape[0] != len(chunk):
                    failed.append((index, len(chunk), f"the embedder returned {vecs.shape[0]} "
                                                      f"vectors for {len(chunk)} texts"))
                else:
                    fresh_vectors = {k: vecs[i] for i, (k, _) in enumerate(chunk)}
                    cache.put_vectors(model, fresh_vectors)
                    found.update(fresh_vectors)
            future.release()
    if failed:
        failed.sort()
        lines = [f"{len(failed)} of {len(todo)} embedding chunk(s) failed on the Dask cluster "
                 f"after {scale.retries + 1} attempt(s)"
                 + ("; the others are in the embedding cache:" if cache.enabled else ":")]
        lines += [f"  chunk {i + 1} ({n:,} texts): {error}" for i, n, error in failed[:20]]
        if len(failed) > 20:
            lines.append(f"  ... and {len(failed) - 20} more")
        hint = ("run the same command again: only the texts not in the cache are embedded"
                if cache.enabled else
                "set cache_dir, so that finished chunks are kept, and run again")
        raise ConsensaError("\n".join(lines), field="scale.engine",
                            hint=hint + "; a worker that ran out of memory needs a smaller "
                                        "scale.chunk_size or more memory per worker")


def encode_chunk(texts: list[str], embedder: Any, state: str) -> np.ndarray:
    """One chunk of :func:`_embed_on_cluster`, on a Dask worker: ``embedder``'s vectors
    of ``texts``. The embedder (and so its model) is loaded once per worker
    (:func:`pipeline.shards.worker_state`), under ``state``: the cache's key of its
    class, parameters and model, so a worker never mixes two models."""
    from .shards import worker_state

    model = worker_state(("embedder", state), lambda: clone(embedder))
    return np.asarray(model.encode(list(texts)), dtype=np.float32)


# --- reduce -------------------------------------------------------------------------

@dataclass(frozen=True)
class Reduction:
    """What the reduce step gives.

    ``coords``: the reduced coordinates. ``neighbours``: the neighbour graph the
    reducer built, ``(indices, distances)`` nearest first (its ``knn_``), or None
    (no graph, or the coordinates came from the cache); the run passes it on to the
    map, which then need not search the same neighbours again. ``fitted``: the
    reducer's scalar learned attributes (what it chose, e.g. ``n_neighbors_``) and
    ``from_cache_``, as the manifest records them.
    """

    coords: np.ndarray
    neighbours: tuple[np.ndarray, np.ndarray] | None = None
    fitted: dict[str, Any] = field(default_factory=dict)


def learned_scalars(stage: Any) -> dict[str, Any]:
    """A fitted stage's learned attributes (ending in ``_``) that are single values,
    as plain Python values."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in vars(stage).items()
            if k.endswith("_") and np.isscalar(v)}


def _reduction_arrays(value: tuple[np.ndarray, dict]) -> dict[str, np.ndarray]:
    coords, fitted = value
    return {"coords": np.asarray(coords, dtype=np.float32), "fitted": np.asarray(json.dumps(fitted))}


def _reduction_from(arrays: Mapping[str, np.ndarray], n: int) -> tuple[np.ndarray, dict] | None:
    coords, fitted = arrays["coords"], json.loads(str(arrays["fitted"]))
    if coords.ndim != 2 or coords.shape[0] != n or not isinstance(fitted, dict):
        return None
    return coords.astype(np.float32), fitted


def reduce(reducer: Any, X: np.ndarray, cache: Cache,
           neighbours: tuple[np.ndarray, np.ndarray] | None = None) -> Reduction:
    """``reducer.fit_transform(X)`` through ``cache``.

    ``neighbours`` (the reduce step's :attr:`Reduction.neighbours`, for the map) is
    passed on as ``fit_transform(X, knn=neighbours)``: every reducer takes ``knn``,
    and one that builds no neighbour graph ignores it. The result depends only on
    ``X``, so it is cached without them.
    """
    X = check_matrix(X)

    def fit() -> tuple[np.ndarray, dict]:
        coords = reducer.fit_transform(X) if neighbours is None else \
            reducer.fit_transform(X, knn=neighbours)
        return coords, learned_scalars(reducer)

    (coords, fitted), from_cache = cache.cached(
        "reduced", stage_key(reducer, digest(X)), fit, _reduction_arrays,
        lambda arrays: _reduction_from(arrays, X.shape[0]))
    # a graph reducer keeps the graph it built in knn_ (pipeline/stages/reduce.py)
    graph = None if from_cache else getattr(reducer, "knn_", None)
    return Reduction(coords=coords, neighbours=graph, fitted={**fitted, "from_cache_": from_cache})


#: A reduction of more rows than this is made by :func:`reduce_apart` in a process of
#: its own; below it, starting the process (a new interpreter that imports UMAP) costs
#: about what the reduction does.
APART_ABOVE = 2000


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                      # not on Linux
        return os.cpu_count() or 1


#: what the process of :func:`reduce_apart` runs (``python -c``): nothing of the
#: caller's own script is imported again, as a "spawn" process would import it
_APART_MAIN = ("import sys; from pipeline.compose import reduce_in_folder; "
               "reduce_in_folder(sys.argv[1], int(sys.argv[2]))")


def reduce_in_folder(folder: str | Path, parent: int | None = None) -> None:
    """The process of :func:`reduce_apart`: fit the reducer of ``folder``'s
    ``task.pickle`` to its rows and write ``answer.pickle``: ("ok", coordinates,
    learned scalars), ("error", the exception the reducer raised) or
    ("unavailable", why the task could not be read).

    The task holds the study's vectors, so it is deleted as soon as it is read: they
    are then in memory only. When ``parent`` (the caller's process id) is no longer
    this process's parent once the answer is written, the caller was killed and no
    one will read the answer: the folder is removed.
    """
    where = Path(folder)
    answer: tuple | None = None
    try:
        with open(where / "task.pickle", "rb") as f:
            reducer, X = pickle.load(f)
    except Exception as exc:                    # e.g. a reducer class only the caller has
        answer = ("unavailable", f"{type(exc).__name__}: {exc}")
    (where / "task.pickle").unlink(missing_ok=True)
    if answer is None:
        try:
            coords = reducer.fit_transform(X)
            answer = ("ok", np.asarray(coords, dtype=np.float32), learned_scalars(reducer))
        except Exception as exc:
            answer = ("error", exc)
    part = where / "answer.pickle.part"
    try:
        payload = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:                    # an exception that cannot be pickled
        payload = pickle.dumps(("error", ConsensaError(f"{type(answer[1]).__name__}: {answer[1]}"))
                               if answer[0] == "error" else ("unavailable", str(exc)))
    part.write_bytes(payload)
    os.replace(part, where / "answer.pickle")
    if parent is not None and os.getppid() != parent:
        shutil.rmtree(where, ignore_errors=True)


class PendingReduction:
    """A reduction :func:`reduce_apart` started: :meth:`result` waits for it, and
    :meth:`cancel` stops it (a run that fails does not wait for its map)."""

    def __init__(self, reducer: Any, X: np.ndarray, cache: Cache, *,
                 done: Reduction | None = None, process: subprocess.Popen | None = None,
                 folder: Path | None = None) -> None:
        self._reducer, self._X, self._cache = reducer, X, cache
        self._done, self._process, self._folder = done, process, folder

    @property
    def apart(self) -> bool:
        """Whether the reduction is being made in a process of its own."""
        return self._process is not None

    def _answer(self) -> tuple | None:
        try:
            self._process.wait()
            with open(self._folder / "answer.pickle", "rb") as f:
                return pickle.load(f)
        except Exception:                       # no answer, or one that cannot be read
            return None
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)

    def result(self) -> Reduction:
        if self._done is not None:
            return self._done
        answer = self._answer()
        code, self._process = self._process.returncode, None
        if answer is None or answer[0] == "unavailable":
            # killed (out of memory, a signal), or a reducer the process cannot build:
            # the reduction is made here instead
            why = f"exit code {code}" if answer is None else answer[1]
            log.warning("the process making the %s-row reduction gave no answer (%s); "
                        "making it here", self._X.shape[0], why)
            self._done = reduce(self._reducer, self._X, self._cache)
            return self._done
        if answer[0] == "error":
            raise answer[1]
        _, coords, fitted = answer
        for name, value in fitted.items():      # as if fitted here (learned_scalars)
            setattr(self._reducer, name, value)
        (coords, fitted), _ = self._cache.cached(
            "reduced", stage_key(self._reducer, digest(self._X)), lambda: (coords, fitted),
            _reduction_arrays, lambda arrays: _reduction_from(arrays, self._X.shape[0]))
        self._done = Reduction(coords=coords, fitted={**fitted, "from_cache_": False})
        return self._done

    def cancel(self) -> None:
        """Stop the process, if one is still making the reduction."""
        if self._done is None and self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
            shutil.rmtree(self._folder, ignore_errors=True)


def reduce_apart(reducer: Any, X: np.ndarray, cache: Cache, *,
                 above: int | None = None) -> PendingReduction:
    """:func:`reduce` (without ``neighbours``) begun in a process of its own, while
    the caller goes on: what the CQR analysis does with its map, which nothing in
    the analysis waits for.

    Why: UMAP's layout holds Python's lock for all of its 200 epochs, so a thread
    would not run beside the analysis; a process does, on another processor. At
    10,000 segments the map is a third of what a CQR run does after embedding.

    Made here and at once, as :func:`reduce` makes it, when the cache holds it, for
    ``above`` rows or fewer (default :data:`APART_ABOVE`), on a machine with one
    usable processor, or when the process cannot be started. The process is a new
    interpreter (:func:`reduce_in_folder`), given the task in a private temporary
    folder that is removed afterwards: not a fork of a process that holds the
    embedding model's threads, and not a "spawn" process, which imports the
    caller's script again.
    The result is the one :func:`reduce` gives (the reducer is seeded), and is
    cached the same way.
    """
    X = check_matrix(X)
    hit = cache.get("reduced", stage_key(reducer, digest(X)),
                    lambda arrays: _reduction_from(arrays, X.shape[0]))
    if hit is not None:
        coords, fitted = hit
        return PendingReduction(reducer, X, cache,
                                done=Reduction(coords=coords, fitted={**fitted, "from_cache_": True}))
    if X.shape[0] <= (APART_ABOVE if above is None else above) or _usable_cpus() < 2:
        return PendingReduction(reducer, X, cache, done=reduce(reducer, X, cache))
    folder = Path(tempfile.mkdtemp(prefix="consensa-reduce-"))
    try:
        with open(folder / "task.pickle", "wb") as f:
            pickle.dump((reducer, X), f, protocol=pickle.HIGHEST_PROTOCOL)
        # the package is found where this process found it
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        process = subprocess.Popen([sys.executable, "-c", _APART_MAIN, str(folder),
                                    str(os.getpid())],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=env)
    except (OSError, pickle.PicklingError, TypeError, AttributeError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        log.warning("cannot start a process for the reduction (%s); making it here", exc)
        return PendingReduction(reducer, X, cache, done=reduce(reducer, X, cache))
    return PendingReduction(reducer, X, cache, process=process, folder=folder)


# --- reduce + cluster + assign ----------------------------------------------------------

def _untimed(name: str) -> AbstractContextManager:
    return nullcontext()


def fit_clusterer(clusterer: Any, X: np.ndarray, cache: Cache) -> Any:
    """``clusterer.fit(X)`` through ``cache``: what it learned (its labels, membership
    strengths and single values) is kept under its settings and ``X``.

    Why keep a fit that takes a second: HDBSCAN's result depends on numpy's kernels,
    which differ between CPUs (AVX-512 rounds some results otherwise than AVX2), so
    the same reduced coordinates read from a copied cache could still give a few
    other themes on a colleague's machine. Read from the cache, they give the
    run's own. A clusterer that learns anything but arrays and single values (a
    fitted model object, say) is fitted every time, as before.
    """
    X = check_matrix(X, "reduced vectors")
    entry = stage_key(clusterer, digest(X))

    def decode(arrays: Mapping[str, np.ndarray]) -> dict[str, Any] | None:
        learned = {k[2:]: np.asarray(v) for k, v in arrays.items() if k.startswith("a:")}
        learned.update(json.loads(str(arrays["scalars"])))
        labels = learned.get("labels_")
        return learned if labels is not None and len(labels) == X.shape[0] else None

    learned = cache.get("clustered", entry, decode)
    if learned is not None:
        for name, value in learned.items():
            setattr(clusterer, name, value)
        return clusterer
    clusterer.fit(X)
    arrays = {k: v for k, v in vars(clusterer).items()
              if k.endswith("_") and isinstance(v, np.ndarray)}
    scalars = learned_scalars(clusterer)
    if len(arrays) + len(scalars) < sum(k.endswith("_") for k in vars(clusterer)):
        return clusterer                     # it learned something else: not kept
    try:
        text = json.dumps(scalars)
    except (TypeError, ValueError):          # a single value JSON cannot hold (bytes, say)
        return clusterer
    cache.put("clustered", entry, {**{f"a:{k}": v for k, v in arrays.items()},
                                   "scalars": np.asarray(text)})
    return clusterer


@dataclass(frozen=True)
class ThemeFit:
    """The fitted reducer and clusterer, the reduction and the themes they gave."""

    reducer: Any
    reduction: Reduction
    clusterer: Any
    clustering: Clustering


def find_themes(vectors: np.ndarray, cfg: RunConfig, *, cache: Cache | None = None,
                seed: int | None = None,
                timed: Callable[[str], AbstractContextManager] = _untimed) -> ThemeFit:
    """The config's reduce, cluster and outlier assignment on ``vectors``.

    ``cache``: where the reduction is kept (None: nowhere); ``seed`` replaces the
    stages' random_state (None: the config's own); ``timed(name)`` times each of
    the "reduce" and "cluster" steps (the run's per-stage timings).
    """
    with timed("reduce"):
        reducer = build_stage("reduce", cfg, seed=seed)
        reduction = reduce(reducer, vectors, cache if cache is not None else Cache(None))
    with timed("cluster"):
        clusterer = fit_clusterer(build_stage("cluster", cfg, seed=seed), reduction.coords,
                                  cache if cache is not None else Cache(None))
        clustering = assign(vectors, clusterer.labels_, clusterer.probabilities_,
                            cfg.outliers.reassign, cfg.outliers.min_similarity)
    return ThemeFit(reducer=reducer, reduction=reduction, clusterer=clusterer,
                    clustering=clustering)


# --- label --------------------------------------------------------------------------

def vocabulary(texts: Sequence[str], extra_stop_words: Sequence[str], cache: Cache) -> Vocabulary:
    """:func:`~pipeline.stages.label.build_vocabulary` through ``cache``: a re-run with
    new clustering settings does not lemmatise every segment again."""
    texts = list(texts)
    extra = sorted({w.lower() for w in extra_stop_words})
    entry = key("consensa.label.vocabulary", {"extra_stop_words": extra}, digest(texts),
                code_digest(Vocabulary))             # the label module's code
    vocab, _ = cache.cached("vocabulary", entry, lambda: build_vocabulary(texts, extra_stop_words),
                            vocabulary_arrays,
                            lambda arrays: vocabulary_from_arrays(arrays, len(texts)))
    return vocab
