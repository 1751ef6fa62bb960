"""Stability of the themes: do they come back when the data are resampled?

A theme the pipeline proposes should not hinge on one participant or on the
random seed. ``consensa stability RUN`` re-runs the run's own reduce + cluster +
outlier-assignment stages (its resolved ``config.yaml``) on resamples of its
embeddings, with a different seed each time:

* **leave-k-cases-out**: all segments of k cases are withheld (each combination
  of cases once before any is repeated);
* **bootstrap**: segments are drawn with replacement; the distinct ones are
  clustered.

Each original theme is matched to the resampled theme with the highest Jaccard
overlap of members, counted over the segments present in that resample. A theme
*reappears* when that best Jaccard is at least ``threshold`` (0.5). Per theme:
the share of resamples it reappears in, its mean best Jaccard, and, over the
leave-out resamples, the share in which its CQR frequency label (recomputed with
:func:`pipeline.stages.cqr.frequency_label` on the cases present, each counted by the
rule the run's label used: in a CQR run through placed segments only) differs from the
run's: the label the re-analysis would print, which is "none" when the theme
does not reappear. Themes reappearing in fewer than ``unstable_below`` (0.6) of
the resamples are marked unstable.

The run folder gains ``stability.csv``, ``stability.md`` and a ``stability``
column in ``themes.csv``; ``report.html`` is rendered again with a stability
section; in a CQR run the flag "unstable" is set in ``categories.csv``,
``themes.csv`` and ``cqr_table.csv``/``.md`` (:func:`written_files` lists them
for the summary). All writes are atomic; no other output of the run is changed.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# StabilityConfig and parse_stability are the config's ``stability:`` section; they
# are importable from here too, where the check is
from .cache import Cache
from .compose import build_stage, embed_texts, find_themes
from .config import (  # noqa: F401
    RunConfig,
    StabilityConfig,
    parse_stability,
    read_yaml,
    validate_config,
)
from .errors import ConfigError, InputError
from .fsutil import atomic_write_text
from .progress import progress
from .runfolder import RunFolder, raw_to_csv
from .sheets import markdown_cell
from .stages.cluster import join_sample, stratified_sample
from .stages.cqr import frequency_label
from .types import Clustering

log = logging.getLogger("consensa.stability")

#: stability.csv, one row per theme of the run.
#: theme_id int; name str; reappearance float in [0, 1] (share of the resamples in
#: which the theme reappeared); mean_jaccard float in [0, 1] (mean best Jaccard);
#: label_change_rate float in [0, 1] (share of leave-out resamples in which the
#: frequency label differed; empty without leave-out resamples); stable bool;
#: resamples int (the resamples the theme had members in: the denominator of the
#: first two numbers); reappearance_leave_out, reappearance_bootstrap float: the
#: reappearance within each kind of resample (empty when there were none)
STABILITY_COLUMNS = ("theme_id", "name", "reappearance", "mean_jaccard", "label_change_rate",
                     "stable", "resamples", "reappearance_leave_out", "reappearance_bootstrap")


@dataclass(frozen=True)
class Resample:
    kind: str                    # "leave-out" or "bootstrap"
    index: np.ndarray            # sorted distinct positions of the segments present
    withheld: tuple[str, ...]    # cases left out (leave-out only)
    seed: int                    # random_state of the reducer and clusterer


@dataclass
class StabilityResult:
    table: pd.DataFrame                          # STABILITY_COLUMNS
    overall: float                               # reappearance weighted by theme size
    settings: StabilityConfig
    seed: int
    n_leave_out: int
    n_bootstrap: int
    reproduced: float | None = None              # mean best Jaccard of a full re-run
    #: how the run's vectors were had: read from the run folder, or (a folder written
    #: before they were saved) embedded again / taken from the cache
    embedded: dict = field(default_factory=dict)
    seconds: float = 0.0
    #: what was run again on each resample, for the report's wording
    regrouped_by: str = "reduce, cluster and outlier steps"

    @property
    def n_unstable(self) -> int:
        return int((~self.table["stable"].astype(bool)).sum()) if len(self.table) else 0

    def summary(self) -> dict[str, Any]:
        """What the report and the batch summary show about the check."""
        return {"resamples": self.n_leave_out + self.n_bootstrap,
                "leave_out_resamples": self.n_leave_out, "bootstrap_resamples": self.n_bootstrap,
                "leave_out": self.settings.leave_out, "threshold": self.settings.threshold,
                "unstable_below": self.settings.unstable_below, "seed": self.seed,
                "overall": None if math.isnan(self.overall) else round(self.overall, 4),
                "n_unstable": self.n_unstable, "n_themes": len(self.table),
                "reproduced": None if self.reproduced is None else round(self.reproduced, 4)}


# --- Resampling -------------------------------------------------------------------

def plan_resamples(case_ids: np.ndarray, settings: StabilityConfig, seed: int) -> list[Resample]:
    """The resamples, deterministic for a seed."""
    case_ids = np.asarray(case_ids).astype(str)
    n_seg = len(case_ids)
    cases = sorted(set(case_ids.tolist()))
    k = settings.leave_out
    total = settings.resamples
    if k and settings.bootstrap:
        n_lo, n_bs = (total + 1) // 2, total // 2
    elif k:
        n_lo, n_bs = total, 0
    else:
        n_lo, n_bs = 0, total
    if n_lo and k >= len(cases):
        raise ConfigError(f"cannot leave {k} case(s) out of {len(cases)}: at least one must stay",
                          field="stability.leave_out",
                          hint="use a smaller leave_out (1 is usual), or bootstrap only")
    rng = np.random.default_rng(seed)
    out: list[Resample] = []
    combos = _combination_stream(len(cases), k, n_lo, rng) if n_lo else []
    for combo in combos:
        withheld = tuple(cases[i] for i in combo)
        keep = np.flatnonzero(~np.isin(case_ids, withheld))
        out.append(Resample("leave-out", keep, withheld, int(rng.integers(2**31 - 1))))
    for _ in range(n_bs):
        draw = rng.integers(0, n_seg, size=n_seg)
        out.append(Resample("bootstrap", np.unique(draw), (), int(rng.integers(2**31 - 1))))
    return out


def _combination_stream(n: int, k: int, count: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """``count`` k-subsets of range(n): every subset once (shuffled) before any repeats."""
    if math.comb(n, k) <= 50_000:
        every = list(combinations(range(n), k))
        out: list[tuple[int, ...]] = []
        while len(out) < count:
            out += [every[i] for i in rng.permutation(len(every))]
        return out[:count]
    return [tuple(sorted(rng.choice(n, size=k, replace=False).tolist())) for _ in range(count)]


def recluster(vectors: np.ndarray, cfg: RunConfig, seed: int | None = None) -> Clustering:
    """The run's reduce + cluster + assign on ``vectors`` (seed None: the run's own):
    :func:`pipeline.compose.find_themes`, the step the run found its themes with."""
    return find_themes(vectors, cfg, seed=seed).clustering


def themes_regroup(case_ids: np.ndarray, cfg: RunConfig):
    """The ``regroup`` of a themes run: :func:`recluster`, and for a resample of more
    than ``scale.fit_sample_above`` segments what the run did with all of them: the
    themes found on a case-stratified sample of ``scale.fit_sample_size`` (drawn with
    the resample's seed; the run's own sample seed when ``seed`` is None, as in the
    reproduction check) and the other segments joined to their nearest theme
    (pipeline/run.py). A resample of a large run thus costs what the run cost, and is
    grouped the way the run was grouped."""
    own_seed = cfg.seed if cfg.scale.sample_seed is None else cfg.scale.sample_seed

    def regroup(x: np.ndarray, index: np.ndarray, seed: int | None) -> np.ndarray:
        if len(x) <= cfg.scale.fit_sample_above:
            return recluster(x, cfg, seed).theme
        rows = stratified_sample(case_ids[index], cfg.scale.fit_sample_size,
                                 own_seed if seed is None else seed)
        fitted = recluster(x[rows], cfg, seed)
        return join_sample(x, rows, fitted, cfg.outliers.min_similarity).theme

    return regroup


def best_matches(original: np.ndarray, new: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each original theme 0..k-1: best Jaccard, the matching new theme, members present.

    ``original`` and ``new`` are theme labels of the same segments (-1 = none).
    """
    original = np.asarray(original, dtype=np.int64)
    new = np.asarray(new, dtype=np.int64)
    m = int(new.max()) + 1 if len(new) and new.max() >= 0 else 0
    size_o = np.bincount(original[original >= 0], minlength=k)[:k]
    if m == 0 or k == 0:
        return np.zeros(k), np.full(k, -1), size_o
    size_n = np.bincount(new[new >= 0], minlength=m)
    both = (original >= 0) & (new >= 0)
    inter = np.zeros((k, m))
    np.add.at(inter, (original[both], new[both]), 1.0)
    union = size_o[:, None] + size_n[None, :] - inter
    jac = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return jac.max(axis=1), jac.argmax(axis=1), size_o


# --- The check --------------------------------------------------------------------

def compute_stability(segments: pd.DataFrame, themes: pd.DataFrame, vectors: np.ndarray,
                      cfg: RunConfig, settings: StabilityConfig,
                      check_reproduction: bool = True, regroup=None) -> StabilityResult:
    """Resample, re-cluster and match; ``segments`` (with ``theme``) align with ``vectors``.

    ``regroup(vectors, index, seed) -> labels`` groups the resampled segments
    (``index``: their rows in ``segments``) as the run grouped all of them; the
    default is the run's reduce + cluster + assign (:func:`recluster`). A CQR run
    passes its cross-analysis (:func:`cqr_regroup`), which also says which segments
    count toward a frequency label (the labels, counted): a resample's label is
    recounted by the run's own rule."""
    start = time.perf_counter()
    case_ids = segments["case_id"].astype(str).to_numpy()
    if regroup is None:
        regroup = themes_regroup(case_ids, cfg)
    theme = segments["theme"].to_numpy(dtype=np.int64)
    tids = [int(t) for t in themes["theme_id"]]
    k = max([int(theme.max()) + 1 if len(theme) else 0, *(t + 1 for t in tids)])
    seed = settings.seed if settings.seed is not None else cfg.seed
    plan = plan_resamples(case_ids, settings, seed)
    orig_label = _original_labels(themes, theme, case_ids, cfg, k)

    assessed = np.zeros(k)
    reappeared = np.zeros(k)
    by_kind = {kind: (np.zeros(k), np.zeros(k)) for kind in ("leave-out", "bootstrap")}
    jac_sum = np.zeros(k)
    lo_changed = np.zeros(k)
    n_lo = sum(r.kind == "leave-out" for r in plan)
    for i, rs in enumerate(progress(plan, "stability", unit="resample"), 1):
        what = f"leaving out {', '.join(rs.withheld)}" if rs.kind == "leave-out" else \
            f"bootstrap, {len(rs.index)} distinct segments"
        log.info("stability: resample %d/%d (%s)", i, len(plan), what)
        new, counts = _grouped(regroup(vectors[rs.index], np.asarray(rs.index), rs.seed))
        best, match, present = best_matches(theme[rs.index], new, k)
        has = present > 0
        back = has & (best >= settings.threshold)
        assessed += has
        reappeared += back
        by_kind[rs.kind][0][:] += has
        by_kind[rs.kind][1][:] += back
        jac_sum += np.where(has, best, 0.0)
        if rs.kind == "leave-out":
            sub_cases = case_ids[rs.index]
            n_present = len(set(sub_cases.tolist()))
            for t in range(k):
                if back[t]:
                    # the cases the label counts, by the rule the run's label used: in a
                    # CQR run only segments placed there (or reassigned above the
                    # stricter similarity), not every reassigned outlier
                    n = len(set(sub_cases[(new == match[t]) & counts].tolist()))
                    label = frequency_label(n, n_present, cfg.cqr)
                else:
                    label = "none"
                lo_changed[t] += label != orig_label[t]

    reproduced = None
    if check_reproduction and k:
        log.info("stability: re-clustering all segments with the run's own seed (a check)")
        again, _ = _grouped(regroup(vectors, np.arange(len(vectors)), None))
        best, _, present = best_matches(theme, again, k)
        weights = present.astype(float)
        reproduced = float(np.sum(best * weights) / weights.sum()) if weights.sum() else None

    names = dict(zip(tids, themes["name"].astype(str)))
    rows = []
    for t in tids:
        rate = reappeared[t] / assessed[t] if assessed[t] else float("nan")
        rows.append({
            "theme_id": t, "name": names.get(t, ""),
            "reappearance": round(float(rate), 4) if assessed[t] else float("nan"),
            "mean_jaccard": round(float(jac_sum[t] / assessed[t]), 4) if assessed[t] else float("nan"),
            "label_change_rate": round(float(lo_changed[t] / n_lo), 4) if n_lo else float("nan"),
            "stable": bool(assessed[t]) and bool(rate >= settings.unstable_below),
            "resamples": int(assessed[t]),
            **{f"reappearance_{kind.replace('-', '_')}":
               round(float(back[t] / seen[t]), 4) if seen[t] else float("nan")
               for kind, (seen, back) in by_kind.items()}})
    table = pd.DataFrame(rows, columns=list(STABILITY_COLUMNS))
    sizes = np.array([int(np.sum(theme == t)) for t in tids], dtype=float)
    ok = table["reappearance"].notna().to_numpy() & (sizes > 0) if len(table) else np.array([], bool)
    overall = float(np.sum(table["reappearance"].to_numpy()[ok] * sizes[ok]) / sizes[ok].sum()) \
        if ok.any() else float("nan")
    return StabilityResult(table=table, overall=overall, settings=settings, seed=seed,
                           n_leave_out=n_lo, n_bootstrap=len(plan) - n_lo, reproduced=reproduced,
                           seconds=round(time.perf_counter() - start, 3))


def _grouped(out) -> tuple[np.ndarray, np.ndarray]:
    """A regrouping's labels, and which segments count toward a label: a regroup returns
    the labels, or (labels, counted) when its analysis counts only some segments (a CQR
    run's honest frequencies, :func:`cqr_regroup`)."""
    labels, counted = out if isinstance(out, tuple) else (out, None)
    labels = np.asarray(labels, dtype=np.int64)
    return labels, (np.ones(len(labels), bool) if counted is None
                    else np.asarray(counted, dtype=bool))


def _original_labels(themes: pd.DataFrame, theme: np.ndarray, case_ids: np.ndarray,
                     cfg: RunConfig, k: int) -> list[str]:
    n_total = len(set(case_ids.tolist()))
    given = {}
    if "frequency_label" in themes.columns:
        given = {int(t): str(lbl) for t, lbl in zip(themes["theme_id"], themes["frequency_label"])
                 if isinstance(lbl, str) and lbl}
    return [given.get(t) or frequency_label(len(set(case_ids[theme == t].tolist())), n_total, cfg.cqr)
            for t in range(k)]


# --- On a run folder --------------------------------------------------------------

def cqr_regroup(segments: pd.DataFrame, domains: pd.DataFrame, cfg: RunConfig):
    """The regrouping of a CQR run (``analysis: consensa.CQR.v1``): the resampled
    segments keep the domains the run proposed for them, and the cross-analysis
    finds the categories within each domain again (stance subcategories aside: a
    category's stability is about its segments, not its split). The labels are the
    top-level categories, numbered as the resample's cross-analysis numbers them."""
    from .stages.crossanalysis import cross_analyse

    domain = segments["domain_id"].to_numpy(dtype=np.int64)
    frame = tuple(int(d) for d in domains.loc[domains["kind"] == "frame", "domain_id"]) \
        if "kind" in domains.columns else ()
    xcfg = cfg.crossanalysis.model_copy(update={"stance": False})

    def regroup(x: np.ndarray, index: np.ndarray, seed: int | None) -> np.ndarray:
        sub = segments.iloc[index].reset_index(drop=True)
        sub["segment_id"] = [f"{s}#{i}" for i, s in enumerate(sub["segment_id"])]  # bootstrap repeats
        xa = cross_analyse(sub, x, domain[index], xcfg, cfg.cqr, frame_domains=frame,
                           include_frame=cfg.protocol.include_frame,
                           n_cases_total=int(segments["case_id"].nunique()))
        # with the segments that count toward a label, as the run's label counted them
        return np.asarray(xa.category, dtype=np.int64), np.asarray(xa.counted, dtype=bool)

    return regroup


def written_files(run: RunFolder) -> list[str]:
    """What ``consensa stability`` writes into the run folder, as its summary names it."""
    files = ["stability.csv", "stability.md", "themes.csv (column 'stability')"]
    if "flags" in run.cqr().columns:           # a CQR run: the flag 'unstable' too
        files += ["categories.csv", "cqr_table.csv", "cqr_table.md"]
    return files + ["report.html"]


def _flag_unstable(run: RunFolder, result: StabilityResult) -> None:
    """A CQR run's categories that did not reappear often enough carry the flag
    "unstable", in the categories and themes tables and the CQR table."""
    from .stages.cqr import cqr_markdown

    unstable = {int(t) for t, ok in zip(result.table["theme_id"], result.table["stable"]) if not ok}

    def flagged(flags, is_unstable: bool) -> list[str]:
        kept = [f for f in list(flags) if f != "unstable"]
        return kept + ["unstable"] if is_unstable else kept

    cats = run.table("categories")
    top = cats["parent_id"] < 0
    cats["flags"] = [flagged(f, bool(t) and int(th) in unstable)
                     for f, t, th in zip(cats["flags"], top, cats["theme_id"])]
    run.write_table("categories", cats)
    themes = run.themes()
    if "flags" in themes.columns:
        themes["flags"] = [flagged(f, int(t) in unstable)
                           for f, t in zip(themes["flags"], themes["theme_id"])]
        run.write_table("themes", themes)
    table = run.cqr()
    if "flags" in table.columns and len(table) == len(cats):
        table["flags"] = list(cats["flags"])
        run.write_table("cqr", table)
        from .fsutil import atomic_write_text

        atomic_write_text(run.path / "cqr_table.md", cqr_markdown(table))


def run_config(folder: Path) -> RunConfig:
    """The run's resolved config (config.yaml in the run folder).

    A run folder is resolved: every setting is written out. One without a
    ``context`` section was made before the context stage existed, when each
    segment was grouped by its own words alone; it is read that way, so its
    themes are reproduced rather than regrouped under today's default."""
    path = Path(folder) / "config.yaml"
    data = read_yaml(path)
    data.setdefault("context", {"weight": 0.0})
    return validate_config(data, path)


def find_cache(folder: RunFolder, cfg: RunConfig, cache_dir: Path | None = None):
    """The embedding cache of a run folder written before the vectors were saved; None
    when there is none.

    ``cache_dir`` (``consensa stability --cache-dir``) if given, else the cache the run
    folder records (:attr:`RunFolder.cache_dir`). Only a cache file that exists is used.
    """
    where = Path(cache_dir).expanduser() if cache_dir is not None else folder.cache_dir
    if where is None or cfg.cache_dir is None and cache_dir is None:
        return None
    cache = Cache(where)
    return cache if cache_dir is not None or cache.vectors_path.is_file() else None


def stability_for_run(folder: str | Path, settings: StabilityConfig | None = None, *,
                      cache_dir: Path | None = None) -> StabilityResult:
    """Check the stability of a run's themes and add the results to its folder.

    The run's own vectors (``vectors.npy``) are resampled. A folder written before
    they were saved has its segments embedded again with the run's embedder, through
    its cache (``cache_dir``, else the one the folder records) where there is one.
    """
    from .stages.context import contextualize

    run = RunFolder.open(folder)
    folder = run.path
    settings = settings or StabilityConfig()
    cfg = run_config(folder)
    segments = run.segments()
    themes = run.themes()
    for col in ("theme", "case_id", "text"):
        if col not in segments.columns:
            raise InputError(f"segments.parquet lacks the column '{col}'", path=folder)
    if segments.empty:
        raise InputError("the run has no segments to resample", path=folder)

    vectors = run.vectors(len(segments))
    if vectors is None:
        vectors, counts = _embed_again(run, cfg, segments, cache_dir)
    else:
        counts = {"embedded": 0, "from_cache": 0, "from_run_folder": len(vectors)}
    cqr_run = run.manifest.get("analysis") == "consensa.CQR.v1"
    if cqr_run:
        result = compute_stability(segments, themes, vectors, cfg, settings,
                                   regroup=cqr_regroup(segments, run.domains(), cfg))
    else:
        # resamples are grouped as the run was: in context (computed on the whole study,
        # so a left-out or repeated case does not change the others' context)
        grouping = contextualize(vectors, segments, cfg.context.window, cfg.context.weight)
        result = compute_stability(segments, themes, grouping, cfg, settings)
    result.embedded = counts
    if cqr_run:
        result.regrouped_by = "cross-analysis steps (categories found again within each domain)"

    write_stability(run, result, cfg.name)
    if cqr_run:
        _flag_unstable(run, result)
    extra = result.table.set_index("theme_id")[[
        "reappearance", "mean_jaccard", "label_change_rate", "resamples",
        "reappearance_leave_out", "reappearance_bootstrap"]]
    extra = extra.rename(columns={"resamples": "stability_resamples"})
    res = run.result(vectors, extra_theme_columns=extra)
    res.manifest["stability"] = result.summary()  # for the report only; manifest.json is kept
    run.write_report(res)
    return result


def _embed_again(run: RunFolder, cfg: RunConfig, segments: pd.DataFrame,
                 cache_dir: Path | None) -> tuple[np.ndarray, dict]:
    """The vectors of a run folder that did not save them, computed again."""
    cache = find_cache(run, cfg, cache_dir)
    log.info("stability: embedding the run's segments again%s",
             f" (cache {cache.folder})" if cache else " (no cache found: computing them)")
    return embed_texts(build_stage("embed", cfg), segments["text"].astype(str).tolist(),
                       cache or Cache(None))


def write_stability(run: RunFolder, result: StabilityResult, run_name: str = "") -> None:
    """stability.csv, stability.md and the themes' stability column, each atomically."""
    atomic_write_text(run.path / "stability.csv", raw_to_csv(result.table))
    atomic_write_text(run.path / "stability.md", stability_markdown(result, run_name))
    run.add_theme_column("stability", {int(r.theme_id): "stable" if r.stable else "unstable"
                                       for r in result.table.itertuples()})


def fmt_share(x: float) -> str:
    """A share as a whole percentage; "–" where there was nothing to count (NaN)."""
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f} %"


def fmt_number(x: float) -> str:
    """A number with two decimals; "–" where there was nothing to count (NaN)."""
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def stability_markdown(result: StabilityResult, run_name: str = "") -> str:
    s = result.settings
    t = result.table
    lines = [f"# Stability of the themes{': ' + run_name if run_name else ''}", ""]
    parts = []
    if result.n_leave_out:
        parts.append(f"{result.n_leave_out} leaving {s.leave_out} case"
                     f"{'' if s.leave_out == 1 else 's'} out (all the segments of "
                     f"{'that case' if s.leave_out == 1 else 'those cases'}; each combination "
                     "of cases once before any is repeated)")
    if result.n_bootstrap:
        parts.append(f"{result.n_bootstrap} bootstrap samples of the segments (drawn with "
                     "replacement; the distinct ones clustered)")
    lines += [
        f"The run's {result.regrouped_by} were run again, with its settings, on "
        f"{result.n_leave_out + result.n_bootstrap} resamples of its segments: "
        + " and ".join(parts) + f". Each resample used its own seed (resampling seed "
        f"{result.seed}).", "",
        f"A theme **reappears** in a resample when a theme found there shares at least "
        f"{s.threshold:.0%} of their joint members with it (Jaccard overlap of the members "
        f"present in the resample >= {s.threshold:g}). A theme reappearing in fewer than "
        f"{s.unstable_below:.0%} of the resamples is marked **unstable**: read its quotes "
        "with care before the judges adopt it as a category.", "",
        "*Label change* is the share of the leave-out resamples in which the theme's CQR "
        "frequency label, computed on the cases present, differs from the run's (a theme that "
        "does not reappear counts as changed).", "",
        f"- Overall stability (reappearance weighted by theme size): **{fmt_number(result.overall)}**",
        f"- Unstable themes: **{result.n_unstable} of {len(t)}**"
        + (": " + "; ".join(f"{r.theme_id} {_md(r.name)}" for r in t.itertuples() if not r.stable)
           if result.n_unstable else ""),
    ]
    if result.reproduced is not None:
        note = "the run's themes are reproduced" if result.reproduced >= 0.999 else (
            "the themes differ from the run's: the embeddings or the software may have changed "
            "since the run, so read these results with care")
        lines.append(f"- Check: all segments clustered again with the run's own seed give a "
                     f"mean best Jaccard of {result.reproduced:.3f} ({note})")
    lines += ["", "| Theme | Name | Reappearance | Mean Jaccard | Label change | Stable | Resamples "
              "| Reappearance, leave-out | Reappearance, bootstrap |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in t.itertuples():
        lines.append(f"| {r.theme_id} | {_md(r.name)} | {fmt_share(r.reappearance)} | "
                     f"{fmt_number(r.mean_jaccard)} | {fmt_share(r.label_change_rate)} | "
                     f"{'yes' if r.stable else '**no**'} | {r.resamples} | "
                     f"{fmt_share(r.reappearance_leave_out)} | {fmt_share(r.reappearance_bootstrap)} |")
    return "\n".join(lines) + "\n"


def _md(text: Any) -> str:
    return markdown_cell(text)
