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
:func:`pipeline.stages.cqr.frequency_label` on the cases present) differs from the
run's: the label the re-analysis would print, which is "none" when the theme
does not reappear. Themes reappearing in fewer than ``unstable_below`` (0.6) of
the resamples are marked unstable.

The run folder gains ``stability.csv``, ``stability.md`` and a ``stability``
column in ``themes.csv``; ``report.html`` is rendered again with a stability
section. All writes are atomic; no other output of the run is changed.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .config import STAGE_KINDS, RunConfig, read_yaml, validate_config
from .errors import ConfigError, InputError
from .fsutil import atomic_write_text
from .registry import REGISTRIES, config_error_from
from .runfolder import (
    add_theme_column,
    check_run_folder,
    load_manifest,
    load_result,
    raw_to_csv,
    read_table,
    rerender_report,
)
from .stages.cluster import assign
from .stages.cqr import frequency_label
from .types import THEME_COLUMNS, Clustering

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


class StabilityConfig(BaseModel):
    """Settings of a stability check (``consensa stability``, or a config's ``stability:``)."""

    model_config = ConfigDict(extra="forbid")

    resamples: int = Field(20, ge=1, le=10_000, description=(
        "re-clusterings in all; split half and half between leave-out and bootstrap "
        "when both are on"))
    leave_out: int = Field(1, ge=0, description="cases withheld per leave-out resample; 0 = none")
    bootstrap: bool = Field(True, description="also resample the segments with replacement")
    threshold: float = Field(0.5, gt=0, le=1, description=(
        "a theme reappears when its best Jaccard overlap in a resample is at least this"))
    unstable_below: float = Field(0.6, ge=0, le=1, description=(
        "themes reappearing in fewer than this share of the resamples are unstable"))
    seed: int | None = Field(None, description="seed of the resampling; default: the run's seed")


def parse_stability(value: Any, path: str | Path | None = None) -> StabilityConfig | None:
    """A config's ``stability:`` value: a section, ``true`` (defaults) or ``false``/absent."""
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError("'stability' must be a section such as {resamples: 20, leave_out: 1}, "
                          f"or true; got {value!r}", path=path, field="stability")
    try:
        settings = StabilityConfig.model_validate(value)
    except pydantic.ValidationError as exc:
        raise config_error_from(exc, where="stability", model=StabilityConfig,
                                path=str(path) if path else None) from None
    if settings.leave_out == 0 and not settings.bootstrap:
        raise ConfigError("stability has nothing to resample: leave_out is 0 and bootstrap is off",
                          path=path, field="stability",
                          hint="set stability.leave_out to 1 or more, or bootstrap: true")
    return settings


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
    embedded: dict = field(default_factory=dict)
    seconds: float = 0.0

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


def _stage(section: str, cfg: RunConfig, seed: int | None):
    """Build a stage from the config; ``seed`` (when given) overrides its random_state."""
    spec = getattr(cfg, section)
    registry = REGISTRIES[STAGE_KINDS[section]]
    params = spec.params()
    if seed is not None and "random_state" in registry.params_model(spec.name).model_fields:
        params["random_state"] = seed
    return registry.build(spec.name, params, seed=cfg.seed, where=section)


def recluster(vectors: np.ndarray, cfg: RunConfig, seed: int | None = None) -> Clustering:
    """The run's reduce + cluster + assign on ``vectors`` (seed None: the run's own)."""
    reduced = _stage("reduce", cfg, seed).fit_transform(vectors)
    clusterer = _stage("cluster", cfg, seed).fit(reduced)
    return assign(vectors, clusterer.labels_, clusterer.probabilities_,
                  cfg.outliers.reassign, cfg.outliers.min_similarity)


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
                      report: Callable[[str], None] = lambda m: None,
                      check_reproduction: bool = True) -> StabilityResult:
    """Resample, re-cluster and match; ``segments`` (with ``theme``) align with ``vectors``."""
    start = time.perf_counter()
    theme = segments["theme"].to_numpy(dtype=np.int64)
    case_ids = segments["case_id"].astype(str).to_numpy()
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
    for i, rs in enumerate(plan, 1):
        what = f"leaving out {', '.join(rs.withheld)}" if rs.kind == "leave-out" else \
            f"bootstrap, {len(rs.index)} distinct segments"
        report(f"stability: resample {i}/{len(plan)} ({what})")
        new = recluster(vectors[rs.index], cfg, rs.seed).theme
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
                    n = len(set(sub_cases[new == match[t]].tolist()))
                    label = frequency_label(n, n_present, cfg.cqr)
                else:
                    label = "none"
                lo_changed[t] += label != orig_label[t]

    reproduced = None
    if check_reproduction and k:
        report("stability: re-clustering all segments with the run's own seed (a check)")
        again = recluster(vectors, cfg).theme
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


def find_cache(folder: Path, cfg: RunConfig, manifest: dict, cache_dir: Path | None = None,
               base_dir: Path | None = None):
    """The run's embedding cache, if it can be found; None otherwise.

    A run folder's config.yaml keeps ``cache_dir`` as written: relative to the
    folder of the config the run was made from, which the run folder does not
    record. It is taken from ``base_dir`` (``consensa run``/``batch`` pass it),
    from the manifest's ``base_dir`` if it has one, else worked out from the input
    paths in the manifest and the ingest paths of the config; the current folder
    is tried last. Only a cache file that exists is used.
    """
    from .stages.embed import EmbeddingCache

    if cache_dir is not None:
        return EmbeddingCache(Path(cache_dir).expanduser() / "embeddings.sqlite")
    if cfg.cache_dir is None:
        return None
    rel = Path(cfg.cache_dir).expanduser()
    if rel.is_absolute():
        candidates = [rel]
    else:
        bases = [Path(b) for b in (base_dir, manifest.get("base_dir")) if b]
        candidates = [Path(os.path.normpath(b / rel)) for b in bases]
        candidates += _targets_from_inputs(cfg, manifest, rel)
        candidates.append(Path(os.path.normpath(Path.cwd() / rel)))
    for c in dict.fromkeys(candidates):
        if (c / "embeddings.sqlite").is_file():
            return EmbeddingCache(c / "embeddings.sqlite")
    return None


def _split_up(rel: Path) -> tuple[int, tuple[str, ...]] | None:
    """("..", "..", "a", "b") -> (2, ("a", "b")); None when ".." appears later on."""
    parts = [p for p in rel.parts if p != "."]
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    tail = tuple(parts[ups:])
    return None if ".." in tail else (ups, tail)


def _targets_from_inputs(cfg: RunConfig, manifest: dict, target: Path) -> list[Path]:
    """Where ``target`` (relative to the unknown config folder B) lies, from the inputs.

    An input file read from ingest path ``rel`` = ``../``*u + tail lies under
    ``norm(B/rel)`` = (B up u levels)/tail; so B up u levels is the part of the
    input's path before ``tail``, and ``target`` = ``../``*t + rest is found when
    t >= u (the names below that level cancel out).
    """
    goal = _split_up(target)
    if goal is None:
        return []
    t_up, t_tail = goal
    sources = [Path(str(it.get("path", ""))) for it in manifest.get("inputs") or []
               if isinstance(it, dict)]
    sources = [s for s in sources if s.is_absolute()]
    out: list[Path] = []
    for rel in cfg.ingest.paths:
        rel = Path(rel)
        split = None if rel.is_absolute() else _split_up(rel)
        if split is None or split[0] > t_up:
            continue
        ups, tail = split
        for src in sources:
            parts = src.parts
            anchors = []
            if tail:
                anchors = [j for j in range(len(parts) - len(tail), 0, -1)
                           if parts[j:j + len(tail)] == tail]
            else:
                anchors = [len(parts) - 1]        # the input's own folder
            for j in anchors[:1]:
                level = Path(*parts[:j])
                for _ in range(t_up - ups):
                    level = level.parent
                out.append(Path(os.path.normpath(level.joinpath(*t_tail))))
    return list(dict.fromkeys(out))


def stability_for_run(folder: str | Path, settings: StabilityConfig | None = None, *,
                      cache_dir: Path | None = None, base_dir: Path | None = None,
                      report: Callable[[str], None] = lambda m: None) -> StabilityResult:
    """Check the stability of a run's themes and add the results to its folder."""
    from .stages.context import contextualize
    from .stages.embed import embed_texts

    folder = check_run_folder(Path(folder))
    settings = settings or StabilityConfig()
    cfg = run_config(folder)
    manifest = load_manifest(folder)
    segments = pd.read_parquet(folder / "segments.parquet")
    themes = read_table(folder / "themes.csv", THEME_COLUMNS)
    for col in ("theme", "case_id", "text"):
        if col not in segments.columns:
            raise InputError(f"segments.parquet lacks the column '{col}'", path=folder)
    if segments.empty:
        raise InputError("the run has no segments to resample", path=folder)

    cache = find_cache(folder, cfg, manifest, cache_dir, base_dir)
    report("stability: embedding the run's segments again" +
           (f" (cache {cache.path})" if cache else " (no cache found: computing them)"))
    embedder = REGISTRIES["embedder"].build(cfg.embed.name, cfg.embed.params(), seed=cfg.seed,
                                            where="embed")
    vectors, counts = embed_texts(embedder, segments["text"].astype(str).tolist(), cache)
    # resamples are grouped as the run was: in context (computed on the whole study, so a
    # left-out or repeated case does not change the others' context)
    grouping = contextualize(vectors, segments, cfg.context.window, cfg.context.weight)
    result = compute_stability(segments, themes, grouping, cfg, settings, report)
    result.embedded = counts

    write_stability(folder, result, cfg.name)
    extra = result.table.set_index("theme_id")[[
        "reappearance", "mean_jaccard", "label_change_rate", "resamples",
        "reappearance_leave_out", "reappearance_bootstrap"]]
    extra = extra.rename(columns={"resamples": "stability_resamples"})
    res = load_result(folder, vectors, extra_theme_columns=extra)
    res.manifest["stability"] = result.summary()  # for the report only; manifest.json is kept
    rerender_report(folder, res)
    return result


def write_stability(folder: Path, result: StabilityResult, run_name: str = "") -> None:
    """stability.csv, stability.md and the themes.csv column, each atomically."""
    atomic_write_text(folder / "stability.csv", raw_to_csv(result.table))
    atomic_write_text(folder / "stability.md", stability_markdown(result, run_name))
    add_theme_column(folder, "stability", {int(r.theme_id): "stable" if r.stable else "unstable"
                                           for r in result.table.itertuples()})


def _pct(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f} %"


def _num(x: float) -> str:
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
        f"The run's reduce, cluster and outlier steps were run again, with its settings, on "
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
        f"- Overall stability (reappearance weighted by theme size): **{_num(result.overall)}**",
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
        lines.append(f"| {r.theme_id} | {_md(r.name)} | {_pct(r.reappearance)} | "
                     f"{_num(r.mean_jaccard)} | {_pct(r.label_change_rate)} | "
                     f"{'yes' if r.stable else '**no**'} | {r.resamples} | "
                     f"{_pct(r.reappearance_leave_out)} | {_pct(r.reappearance_bootstrap)} |")
    return "\n".join(lines) + "\n"


def _md(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def cli(run: str | Path, *, resamples: int | None = None, leave_out: int | None = None,
        bootstrap: bool | None = None, threshold: float | None = None,
        unstable_below: float | None = None, seed: int | None = None,
        cache_dir: Path | None = None, report: Callable[[str], None] = lambda m: None) -> int:
    """``consensa stability RUN``: check, write, print the table."""
    given = {"resamples": resamples, "leave_out": leave_out, "bootstrap": bootstrap,
             "threshold": threshold, "unstable_below": unstable_below, "seed": seed}
    settings = parse_stability({k: v for k, v in given.items() if v is not None})
    folder = check_run_folder(Path(run))
    result = stability_for_run(folder, settings, cache_dir=cache_dir, report=report)
    print(f"Consensa stability of '{folder.name}': {result.n_leave_out} leave-"
          f"{result.settings.leave_out}-out + {result.n_bootstrap} bootstrap resamples "
          f"in {result.seconds:.1f} s")
    print(f"  overall stability (reappearance weighted by theme size): {_num(result.overall)}; "
          f"unstable themes: {result.n_unstable} of {len(result.table)}")
    if result.reproduced is not None and result.reproduced < 0.999:
        print(f"  note: re-clustering all segments with the run's seed gives a mean Jaccard of "
              f"{result.reproduced:.3f} with the run's themes (embeddings changed since the run?)")
    print(f"  {'theme':>5}  {'reappear':>8}  {'(lo/bs)':>11}  {'jaccard':>7}  {'label chg':>9}  "
          "stable  name")
    for r in result.table.itertuples():
        split = f"{_pct(r.reappearance_leave_out)}/{_pct(r.reappearance_bootstrap)}"
        print(f"  {r.theme_id:>5}  {_pct(r.reappearance):>8}  {split:>11}  {_num(r.mean_jaccard):>7}  "
              f"{_pct(r.label_change_rate):>9}  {'yes' if r.stable else 'NO ':<6}  {r.name}")
    print(f"  written: {folder / 'stability.csv'}, stability.md, themes.csv (column 'stability'), "
          "report.html")
    return 0
