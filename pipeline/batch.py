"""``consensa batch``: many runs in one go, sweeps of settings, one summary.

A batch runs every config it is given (or every ``.yaml`` in a folder, sorted),
each into its own run folder inside one batch folder, and writes there
``batch_summary.csv`` and ``index.html`` (a self-contained page linking every
run's report). A config that fails (a typo'd key, unreadable input) is recorded
with its reason and the batch goes on; the exit status is 1 if any run failed.

Two sections of a config (:class:`~pipeline.config.RunConfig`) matter here:

``sweep:``
    dotted config keys, each with a list of values; the config expands into one
    run per combination, named ``<name>__<key>=<value>__...``
    (:func:`~pipeline.config.expand_sweep`)::

        sweep:
          cluster.min_cluster_size: [8, 12]
          reduce.n_neighbors: [10, 15]

``stability:``
    settings of :class:`~pipeline.config.StabilityConfig` (or ``true``); each
    run's themes are then checked for stability right after the run.

Runs share the embedding cache when their configs name the same ``cache_dir``
(a SQLite file in WAL mode, safe for the parallel runs of ``--jobs N``).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .config import (  # noqa: F401  (safe_name: also pipeline.batch's, as before)
    CQR_ANALYSIS,
    RunConfig,
    expand_sweep,
    format_value,
    load_config,
    safe_name,
)
from .errors import ConfigError, ConsensaError, InputError
from .fsutil import atomic_write_text
from .progress import progress

log = logging.getLogger("consensa.batch")

LABELS = ("general", "typical", "variant", "rare", "single case")
#: batch_summary.csv: one row per run, in the order the configs were given; the
#: swept keys get a column each, after ``parameters``.
#: ``domains`` counts a CQR run's domains as its own summary does, without the interview
#: frame (set apart from the cross-analysis); ``interview_frame`` says whether it has one.
SUMMARY_COLUMNS = ("run", "config", "status", "parameters", "themes", "domains",
                   "interview_frame", "cases",
                   "segments", "outlier_share", "n_general", "n_typical", "n_variant", "n_rare",
                   "n_single_case", "wall_time_s", "stability", "n_unstable", "report", "error")
TEMPLATE = "batch_index.html.j2"


def unit_heading(rows: list[dict[str, Any]]) -> str:
    """What the batch's groups are called: themes, categories, or both in a mixed batch."""
    units = {r.get("unit") for r in rows if r.get("unit")}
    return "Categories" if units == {"categories"} else (
        "Themes or categories" if len(units) > 1 else "Themes")


# --- Reading configs: sweep and stability -----------------------------------------

@dataclass
class Plan:
    """One run of a batch (or a config that could not be read, with ``error`` set)."""

    config: str                                   # the config file, as given
    run: str                                      # the run folder's name in the batch
    params: dict[str, Any] = field(default_factory=dict)   # swept key -> value
    cfg: RunConfig | None = None
    base: Path | None = None                      # the config's folder
    stability: Any = None                         # cfg.stability: StabilityConfig or None
    error: str = ""
    given: dict | None = None                     # the manifest's config_given


def load_single(path: str | Path, overrides: list[str] = ()) -> tuple[RunConfig, Path, Any]:
    """``consensa run``'s config: :func:`~pipeline.config.load_config`, refusing a
    ``sweep:`` (that is a batch). Returns (config, its folder, its ``stability``
    settings or None)."""
    cfg, base = load_config(path, overrides)
    if cfg.sweep:
        raise ConfigError("this config has a sweep: section; run it with consensa batch",
                          path=path, hint=f"consensa batch {path}")
    return cfg, base, cfg.stability


def load_plans(path: str | Path, overrides: list[str] = ()) -> list[Plan]:
    """One config file as the runs it stands for (one per sweep combination), read
    through :func:`~pipeline.config.load_config` as ``consensa run`` reads it."""
    cfg, base = load_config(path, overrides)
    if not cfg.sweep:
        return [Plan(str(path), safe_name(cfg.name), {}, cfg, base, cfg.stability)]
    # the run's folder name in the batch; its config's name is that with only the
    # characters a run name allows
    return [Plan(str(path), safe_name(f"{cfg.name}__{_label(params)}"), params, run_cfg, base,
                 run_cfg.stability)
            for params, run_cfg in expand_sweep(cfg, base, Path(path))]


def _label(params: dict[str, Any]) -> str:
    return "__".join(f"{k}={format_value(v)}" for k, v in params.items())


def is_protocol_file(path: Path) -> bool:
    """Whether a .yaml file is an interview protocol (only ``areas:``), not a config. A
    config reads its protocol file from its own folder (``protocol: {file: ...}``), so a
    folder of configs often holds one."""
    from . import safeyaml

    try:
        data = safeyaml.load(path.read_text(encoding="utf-8-sig"))
    except Exception:                   # unreadable: the config reader reports it
        return False
    return isinstance(data, dict) and set(data) == {"areas"}


def collect_configs(items: list[str], notes: list[str] | None = None) -> list[Path]:
    """The config files named; a folder stands for its .yaml/.yml files, sorted, less
    the protocol files among them (each named in ``notes``)."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir()
                           if f.is_file() and f.suffix.lower() in (".yaml", ".yml"))
            protocols = [f for f in found if is_protocol_file(f)]
            found = [f for f in found if f not in protocols]
            if notes is not None:
                notes += [f"{f}: a protocol file, not a config (read by the configs that "
                          "name it)" for f in protocols]
            if not found:
                raise ConfigError("no .yaml config files in this folder", path=p,
                                  hint="give config files or a folder that holds some")
            out += found
        else:
            out.append(p)
    return out


def plan_batch(items: list[str], overrides: list[str] = (),
               notes: list[str] | None = None) -> list[Plan]:
    """Every run of the batch; configs that cannot be read become failed plans.
    ``notes`` gets the files of a folder that were not taken as configs."""
    from .run import config_given

    plans: list[Plan] = []
    for path in collect_configs(items, notes):
        try:
            found = load_plans(path, overrides)
        except ConsensaError as exc:
            plans.append(Plan(str(path), safe_name(path.stem), error=str(exc)))
            continue
        for plan in found:
            # as `consensa run` records it: the file, its sha256 and the --set settings;
            # and the values this run of a sweep took
            plan.given = config_given(path, list(overrides))
            if plan.params:
                plan.given["sweep"] = dict(plan.params)
        plans += found
    seen: dict[str, int] = {}
    for plan in plans:                 # two configs with one name get distinct folders
        n = seen.get(plan.run, 0) + 1
        seen[plan.run] = n
        if n > 1:
            plan.run = f"{plan.run}-{n}"
    return plans


# --- Running ----------------------------------------------------------------------

@dataclass
class Job:
    """What a worker needs for one run (picklable)."""

    cfg: RunConfig
    base: Path
    out: Path
    stability: Any = None
    given: dict | None = None


def execute(job: Job) -> dict[str, Any]:
    """Run one config (and its stability check); never raises for a user error."""
    from .run import run
    from .stability import stability_for_run

    start = time.perf_counter()

    def failed(msg: str) -> dict[str, Any]:
        return {"status": "failed", "error": msg, "seconds": round(time.perf_counter() - start, 3)}

    try:
        run(job.cfg, job.base, job.out, shared=(job.out.parent,),   # the batch folder
            given=job.given)
    except ConsensaError as exc:
        return failed(str(exc))
    except Exception as exc:  # a bug: keep the batch going, keep the traceback
        log.error("%s: unexpected error", job.out.name, exc_info=True)
        return failed(f"unexpected error ({type(exc).__name__}: {exc}); please report it")
    if job.stability is not None:
        try:
            stability_for_run(job.out, job.stability)
        except ConsensaError as exc:
            return failed(f"the run finished, but its stability check failed: {exc}")
        except Exception as exc:
            log.error("%s: unexpected error in the stability check", job.out.name, exc_info=True)
            return failed(f"the run finished, but its stability check failed with an unexpected "
                          f"error ({type(exc).__name__}: {exc}); please report it")
    return {"status": "ok", "error": "", "seconds": round(time.perf_counter() - start, 3)}


def batch_folder(plans: list[Plan], out: str | Path | None) -> Path:
    """``--out``, or ``<output_dir of the first config>/batch-<time>``; never a used folder."""
    if out is not None:
        folder = Path(out)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise InputError("the batch folder exists already and is not empty; Consensa never "
                             "overwrites runs", path=folder, hint="choose another --out folder")
        return folder
    first = next((p for p in plans if p.cfg is not None), None)
    # a plan's config was loaded (load_plans): its output_dir is absolute already
    parent = first.cfg.output_dir if first else Path("runs")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = parent / f"batch-{stamp}"
    n = 1
    while folder.exists():
        n += 1
        folder = parent / f"batch-{stamp}-{n}"
    return folder


@dataclass
class BatchResult:
    folder: Path
    rows: list[dict[str, Any]]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] != "ok"]


def run_batch(plans: list[Plan], out: str | Path | None = None, jobs: int = 1) -> BatchResult:
    """Run the plans (``jobs`` at a time, in separate processes when > 1) and summarise.

    The summary is rewritten (atomically) after every run, so a long batch can be
    followed in index.html and an interrupted one keeps what it finished.
    """
    folder = batch_folder(plans, out)
    folder.mkdir(parents=True, exist_ok=True)
    outcomes: dict[int, dict[str, Any]] = {
        i: {"status": "failed", "error": p.error, "seconds": None}
        for i, p in enumerate(plans) if p.error}
    todo = [(i, Job(p.cfg, p.base, folder / p.run, p.stability, p.given))
            for i, p in enumerate(plans) if not p.error]
    write_summary(folder, plans, outcomes)
    done = 0

    def record(i: int, outcome: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        outcomes[i] = outcome
        msg = f"[{done}/{len(todo)}] {plans[i].run}: {outcome['status']}"
        if outcome.get("seconds") is not None:
            msg += f" ({outcome['seconds']:.1f} s)"
        if outcome["error"]:
            msg += " - " + outcome["error"].splitlines()[0]
        log.info("%s", msg)
        write_summary(folder, plans, outcomes)

    try:
        if jobs <= 1 or len(todo) <= 1:
            for i, job in progress(todo, "batch", unit="run"):
                log.info("running %s ...", plans[i].run)
                record(i, execute(job))
        else:
            _run_parallel(todo, min(jobs, len(todo)), record)
    finally:
        for i, _ in todo:                        # interrupted: say so in the summary
            outcomes.setdefault(i, {"status": "not run", "error": "the batch was interrupted",
                                    "seconds": None})
        rows = write_summary(folder, plans, outcomes)
    return BatchResult(folder, rows)


def _run_parallel(todo: list[tuple[int, Job]], jobs: int, record) -> None:
    from concurrent.futures.process import BrokenProcessPool

    # Each worker gets its share of the cores (numeric libraries read these when
    # the worker imports them); the parent's own settings are put back after.
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    saved = {n: os.environ.get(n) for n in names}
    for n in names:
        os.environ.setdefault(n, threads)
    try:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {}
            for i, job in todo:
                futures[pool.submit(execute, job)] = i
            log.info("running %d runs, %d at a time ...", len(todo), jobs)
            for fut in progress(as_completed(futures), "batch", total=len(futures), unit="run"):
                try:
                    outcome = fut.result()
                except BrokenProcessPool as exc:
                    outcome = {"status": "failed", "seconds": None,
                               "error": f"the worker process died ({exc}); out of memory?"}
                except Exception as exc:
                    outcome = {"status": "failed", "seconds": None,
                               "error": f"unexpected error ({type(exc).__name__}: {exc})"}
                record(futures[fut], outcome)
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


# --- Summary ------------------------------------------------------------------------

def summarise_run(folder: Path) -> dict[str, Any]:
    """The numbers of one finished run folder that the batch summary shows."""
    import pandas as pd

    from .runfolder import RunFolder
    from .types import frame_domain_ids

    row: dict[str, Any] = {}
    run = RunFolder(folder)
    if not run.has("manifest"):          # the run failed before writing its folder
        return row
    manifest = run.manifest
    counts = manifest.get("counts", {})
    # a CQR run's groups are categories within domains; a themes run's, themes
    row["unit"] = "categories" if manifest.get("analysis") == CQR_ANALYSIS else "themes"
    # the interview frame is listed as a domain but is not one of the cross-analysis's:
    # counted apart, so that a batch and the run's own summary give the same number
    n_frame = len(frame_domain_ids(run.domains()))
    n_domains = counts.get("domains")
    row.update(themes=counts.get("themes"),
               domains=None if n_domains is None else int(n_domains) - n_frame,
               interview_frame=n_frame, cases=counts.get("cases_analysed"), segments=counts.get("segment_segments"),
               outlier_share=manifest.get("outlier_share"), wall_time_s=manifest.get("wall_time_s"))
    themes = run.themes()
    labels = themes["frequency_label"].value_counts() if len(themes) else {}
    for label in LABELS:
        row[f"n_{label.replace(' ', '_')}"] = int(labels.get(label, 0))
    stab = folder / "stability.csv"
    if stab.is_file():
        s = pd.read_csv(stab).merge(themes[["theme_id", "n_segments"]], on="theme_id", how="left")
        ok = s["reappearance"].notna() & (pd.to_numeric(s["n_segments"], errors="coerce") > 0)
        w = pd.to_numeric(s.loc[ok, "n_segments"])
        row["stability"] = round(float((s.loc[ok, "reappearance"] * w).sum() / w.sum()), 4) \
            if w.sum() else None
        row["n_unstable"] = int((~s["stable"].astype(bool)).sum())
    if (folder / "report.html").is_file():
        row["report"] = f"{folder.name}/report.html"
    return row


def summary_rows(folder: Path, plans: list[Plan],
                 outcomes: dict[int, dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    keys = list(dict.fromkeys(k for p in plans for k in p.params))
    rows = []
    for i, plan in enumerate(plans):
        out = outcomes.get(i, {"status": "pending", "error": "", "seconds": None})
        row: dict[str, Any] = {c: None for c in SUMMARY_COLUMNS}
        row.update(run=plan.run, config=plan.config, status=out["status"],
                   error=out.get("error") or "",
                   parameters="; ".join(f"{k}={format_value(v)}" for k, v in plan.params.items()))
        if out["status"] in ("ok", "failed") and not plan.error:
            row.update(summarise_run(folder / plan.run))
        if row["wall_time_s"] is None and out.get("seconds") is not None and out["status"] == "ok":
            row["wall_time_s"] = out["seconds"]
        for k in keys:
            v = plan.params.get(k)
            row[k] = v if v is None or isinstance(v, (bool, int, float, str)) else format_value(v)
        rows.append(row)
    return rows, keys


def write_summary(folder: Path, plans: list[Plan],
                  outcomes: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """batch_summary.csv and index.html in the batch folder, atomically."""
    import pandas as pd

    rows, keys = summary_rows(folder, plans, outcomes)
    fixed = list(SUMMARY_COLUMNS)
    at = fixed.index("parameters") + 1
    columns = fixed[:at] + [k for k in keys if k not in fixed] + fixed[at:]
    table = pd.DataFrame(rows, columns=columns)
    for col in ("themes", "domains", "interview_frame", "cases", "segments",
                *(f"n_{lbl.replace(' ', '_')}" for lbl in LABELS), "n_unstable"):
        table[col] = pd.array(table[col].tolist(), dtype="Int64")
    for k in keys:           # swept integers stay integers beside the rows without them
        values = [r[k] for r in rows]
        given = [v for v in values if v is not None]
        if given and all(isinstance(v, int) and not isinstance(v, bool) for v in given):
            table[k] = pd.array(values, dtype="Int64")
    from .sheets import to_csv  # an error message or a name may start a formula

    atomic_write_text(folder / "batch_summary.csv", to_csv(table, index=False))
    atomic_write_text(folder / "index.html", render_index(folder.name, rows, keys))
    return rows


def _fmt(v: Any, spec: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return format(v, spec) if spec else str(v)


def render_index(title: str, rows: list[dict[str, Any]], keys: list[str]) -> str:
    """index.html: one table row per run, linking its report (relative links)."""
    from .report.templating import page_environment
    from .types import domains_in_words

    view = []
    for r in rows:
        view.append({
            "run": r["run"], "config": r["config"], "config_name": Path(r["config"]).name,
            "status": r["status"],
            "href": quote(r["report"], safe="/=+,") if r.get("report") else None,
            "params": [(k, format_value(r[k]) if r.get(k) is not None else "—") for k in keys],
            "themes": _fmt(r["themes"]),
            "domains": _fmt(r["domains"]) if r["domains"] is None
            else domains_in_words(r["domains"], r["interview_frame"] or 0),
            "outliers": _fmt(None if r["outlier_share"] is None else 100 * r["outlier_share"], ".1f")
            + (" %" if r["outlier_share"] is not None else ""),
            "labels": [_fmt(r[f"n_{lbl.replace(' ', '_')}"]) for lbl in LABELS],
            "wall": _fmt(r["wall_time_s"], ".1f") + (" s" if r["wall_time_s"] is not None else ""),
            "stability": _fmt(r["stability"], ".2f"), "n_unstable": _fmt(r["n_unstable"]),
            "error": r["error"]})
    n_ok = sum(r["status"] == "ok" for r in rows)
    n_failed = sum(r["status"] in ("failed", "not run") for r in rows)
    return page_environment().get_template(TEMPLATE).render(
        title=title, rows=view, keys=keys, labels=LABELS, n_ok=n_ok, n_failed=n_failed,
        n_pending=len(rows) - n_ok - n_failed, unit=unit_heading(rows), any_stability=any(r["stability"] is not None
                                                                   for r in rows))
