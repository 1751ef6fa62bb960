"""Pre-coding on Dask workers: throughput with 1 and 2 workers, memory per worker, and the
time for 1 million and 10 million segments.

    .venv/bin/python bench/precode_scale.py [--sizes 5000 20000 50000] [--workers 1 2]
    .venv/bin/python bench/precode_scale.py --quick          # 800 and 1600 segments: a check
    .venv/bin/python bench/precode_scale.py --million        # adds 1,000,000 segments, 2 workers

What runs: ``precode(codebook, transcripts, engine="dask", scheduler=...)``, the code path
of ``consensa precode --engine dask``: the transcripts read, segmented, embedded
(all-MiniLM-L6-v2, int8) and coded on the workers, shard by shard. The codebook is the
demo's, agreed (configs/demo.yaml run, every item accepted, ``review apply``), built
once under .cache/bench/precode_scale/. The transcripts are synthetic
(bench_common.SYNTHETIC_HOW): one text file per case of 40 participant turns, each after
an interviewer's question, coded with the run's config but the TurnSegmenter, so a size
of N is N segments.

Each (size, workers) runs on a fresh ``LocalCluster`` (one thread per worker, worker
processes, as ``--engine dask`` starts one), reached by its address so that the bench
can ask its workers, and each waits for a quiet machine first. Measured:

* ``startup_s``: starting the cluster and its worker processes.
* ``window_s``: first shard started to last shard finished (Dask's task stream);
  ``seg_per_s`` = segments / window_s: the workers' throughput, each worker's first
  shard loading the model included. ``e2e_seg_per_s`` = segments / (startup + the whole
  ``precode`` call).
* ``worker_rate``: segments per second of one warm worker, from its shards after its
  first (their segments / their compute time); ``load_s``: what a worker's first shard
  took beyond that rate (loading the model and the classifier).
* ``gap_per_shard_s``: worker time not spent computing, per shard:
  (workers x window_s - total compute time) / shards (scheduling, and the tail where a
  worker has no shard left).
* ``pre_s`` / ``post_s``: ``precode`` before the first shard (embedding the judged
  segments, fitting the classifier, planning the shards) and after the last (reading
  the parts, writing segments, tables and the queue workbook), in this process.
* ``peak_rss_mb``: each worker process's own peak resident set size (``VmHWM``, asked
  on the workers with ``client.run`` after ``precode`` returns; see ``worker_memory``);
  ``ru_maxrss_mb``: their ``ru_maxrss``, the figure earlier runs reported, which also
  holds the peak of this process before the worker started; ``idle_rss_mb``: their RSS
  after start-up, before any shard.
* ``torch_threads``: ``torch.get_num_threads()`` on each worker after the run (Dask's
  nanny starts workers with OMP_NUM_THREADS=1, so a one-thread worker's torch uses one
  core).
* the engine's own cost per shard (``overhead_per_shard_s``): a run of 200 shards of
  one tiny file each through the same engine (``run_shards``, a function returning one
  row) on a fresh 2-worker cluster: its wall time / 200.

The projection (always printed) for 1M segments on one machine and 10M on 10 and 100
such machines (each with the measured number of workers), from the largest run with
the most workers: see PROJECTION_NOTE. ``--million`` also measures the 1M run (hours:
run it on a quiet machine).

Goals (bench/README.md): 2 workers at least 1.7x the throughput of 1 (``seg_per_s``);
peak RSS per worker flat as the corpus grows (at most 10% more from the smallest
size to the largest).

``--compare-profiler`` runs each (size, workers) a second time with Dask's profiler
on in the workers (Dask's default; Consensa's clusters turn it off: pipeline/shards.py,
``WORKER_PROFILE_OFF``) and prints peak RSS and throughput side by side, as ratios.

``--table`` also runs each (size, workers) on the same cases written as one transcript
table (``all.csv``), which ``precode`` cuts into parts of ``--shard-files`` cases, a
shard each, and prints its throughput and memory beside the file-per-case run's
(precode_scale_onetable[_TAG].csv).

Writes bench/results/precode_scale[_TAG].csv (one row per run),
precode_scale_projection[_TAG].csv and, with --compare-profiler,
precode_scale_profiler_on[_TAG].csv.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from bench_common import ROOT, SYNTHETIC_HOW, print_table, save, synthetic_table, wait_for_quiet

WORK = ROOT / ".cache" / "bench" / "precode_scale"
TURNS_PER_CASE = 40
MILLION = 1_000_000
FLAT = 1.10             # the goal: the largest size's peak RSS per worker at most 10% above the smallest's
SPEEDUP_GOAL = 1.7
PROJECTION_NOTE = (
    "T(N, M) = startup_s + load_s + a + b*N + ceil(ceil(N/S) / (M*w)) * S / worker_rate "
    "+ ceil(N/S) * overhead_per_shard_s, for N segments on M machines of w workers each, "
    "shards of S segments. startup_s, load_s and worker_rate: the largest run with w "
    "workers; a + b*N: this process's work before and after the shards (pre_s + post_s), "
    "a line fitted over the sizes run with w workers (one size: b = (pre_s + post_s) / n, "
    "an upper bound); overhead_per_shard_s: the run of tiny shards. The shards run in "
    "waves of M*w; the engine's per-shard cost is counted as if one process paid it for "
    "every shard (there is one scheduler and one ledger), an upper bound. Not modelled: "
    "the shared file system and starting SLURM jobs (startup_s is a LocalCluster's).")


# --- what the bench codes with, and what it codes ----------------------------------------

def agreed_codebook() -> Path:
    """The demo run with every review item accepted and applied: its codebook.yaml.

    Built once: the run folder is kept under WORK and reused while its codebook is there.
    """
    from pipeline.cli import main
    from pipeline.review.model import Decision, load_run
    from pipeline.review.store import ReviewStore

    run = WORK / "demo" / "run"
    codebook = run / "review" / "codebook.yaml"
    if codebook.is_file():
        return codebook
    shutil.rmtree(run, ignore_errors=True)
    run.parent.mkdir(parents=True, exist_ok=True)
    print("building the demo's agreed codebook (once) ...", flush=True)
    if main(["run", str(ROOT / "configs" / "demo.yaml"), "--out", str(run), "--quiet"]) != 0:
        raise SystemExit("the demo run failed; see above")
    items = load_run(run)
    with ReviewStore(items, create=True) as store:
        store.set_panel(["ana", "ben"])
        store.resolve([Decision(i, "accept") for i in items.items()
                       if not i.startswith("core_idea:")], by="ana")
    if main(["review", "apply", str(run), "--quiet"]) != 0 or not codebook.is_file():
        raise SystemExit("`consensa review apply` on the demo run failed; see above")
    return codebook


def turn_config(codebook: Path) -> Path:
    """The run's config with the TurnSegmenter: one segment per synthetic turn."""
    run = codebook.parent.parent
    cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    cfg["segment"] = {"name": "consensa.TurnSegmenter.v1"}
    path = WORK / "demo" / "config_turns.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def transcripts(n_segments: int, table: bool = False) -> Path:
    """``n_segments`` synthetic participant turns as text files, one case each, or with
    ``table`` the same turns as one transcript table (``all.csv``: case_id, speaker, text,
    turn_index); written once per size (a stamp file beside the folder says the set is
    complete: inside it, pre-coding would report it as a file it left out)."""
    folder = WORK / ("tables" if table else "transcripts") / str(n_segments)
    stamp = folder.with_name(f"{n_segments}.complete.json")
    if stamp.is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"writing {n_segments:,} synthetic segments as "
          f"{'one table' if table else 'transcripts'} (once) ...", flush=True)
    frame, info = synthetic_table(n_segments, seed=0, turns_per_case=TURNS_PER_CASE)
    if table:
        rows = frame.sort_values("case_id", kind="stable").copy()
        rows["speaker"] = np.where(rows["speaker"] == "interviewer", "Interviewer", "Participant")
        rows["text"] = [" ".join(str(t).split()) for t in rows["text"]]
        rows["turn_index"] = rows.groupby("case_id").cumcount()
        rows[["case_id", "speaker", "text", "turn_index"]].to_csv(folder / "all.csv", index=False)
        stamp.write_text(json.dumps(info), encoding="utf-8")
        return folder
    for case, turns in frame.groupby("case_id", sort=True):
        lines = []
        for speaker, text in zip(turns["speaker"], turns["text"]):
            # one line per turn: a line break inside a text would start a turn of its own
            lines.append(f"{'Interviewer' if speaker == 'interviewer' else 'Participant'}: "
                         f"{' '.join(str(text).split())}")
        (folder / f"{case}.txt").write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    stamp.write_text(json.dumps(info), encoding="utf-8")
    return folder


def warm_up(codebook: Path) -> None:
    """Pre-code the three demo_new interviews in this process, untimed: the first
    ``precode`` of a process imports the model's stack, which the first measured run
    would otherwise pay alone."""
    from pipeline.precode import precode

    out = WORK / "out" / "warm-up"
    shutil.rmtree(out, ignore_errors=True)
    precode(codebook, ROOT / "data" / "demo_new", out=out)
    shutil.rmtree(out, ignore_errors=True)


# --- on the workers -------------------------------------------------------------------------

def worker_memory() -> dict:
    """This worker process's own peak RSS and its RSS now, in MB; and ``ru_maxrss``.

    The peak is the kernel's high-water mark of the process's own memory (``VmHWM``
    in /proc/self/status). ``ru_maxrss`` is not that: a process started by fork (or
    vfork) and exec keeps, as its ru_maxrss, the peak of the process that started it.
    Dask's nanny starts each worker from this process, which by then holds the model
    and the last run's segments, so a worker's ru_maxrss was this process's peak
    whenever that was larger than the worker's own (bench/README.md, *Pre-coding*).
    Off Linux the peak falls back to ru_maxrss.
    """
    import resource

    import psutil

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # KiB on Linux
    peak = None
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024                    # kB
    except OSError:
        pass
    return {"peak_mb": maxrss if peak is None else peak, "ru_maxrss_mb": maxrss,
            "rss_mb": psutil.Process().memory_info().rss / 2**20}


def worker_torch_threads() -> int | None:
    """torch's intra-op threads in this worker (None: torch not imported here)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def one_row(files: list[str]) -> pd.DataFrame:
    """The least a shard can do: one row naming its files (the engine's own cost alone)."""
    return pd.DataFrame({"files": [";".join(Path(f).name for f in files)]})


# --- one measured run ------------------------------------------------------------------------

def cluster(n_workers: int, worker_profile: bool = False):
    """A LocalCluster as ``--engine dask`` starts one, with the same settings
    (pipeline/shards.py, ``cluster_settings``); ``worker_profile``: with Dask's
    profiler on in the workers, as Dask's default has it."""
    import dask
    from distributed import Client, LocalCluster

    from pipeline.shards import cluster_settings

    with dask.config.set(cluster_settings(2, worker_profile=worker_profile)):
        c = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                         memory_limit="auto", dashboard_address=None,
                         silence_logs=logging.CRITICAL)
    return c, Client(c)


def shard_timings(stream: list[dict]) -> pd.DataFrame:
    """The shards' compute start and stop on each worker, from Dask's task stream."""
    rows = []
    for rec in stream:
        m = re.match(r"consensa-shard-(\d+)-", str(rec["key"]))
        if not m:
            continue
        for ss in rec["startstops"]:
            if ss["action"] == "compute":
                rows.append({"index": int(m.group(1)), "worker": rec["worker"],
                             "start": ss["start"], "stop": ss["stop"]})
    return pd.DataFrame(rows, columns=["index", "worker", "start", "stop"])


def measure(codebook: Path, config: Path, n_segments: int, n_workers: int,
            shard_files: int, kind: str = "size", worker_profile: bool = False,
            table: bool = False) -> dict:
    from distributed import get_task_stream

    from pipeline.precode import precode
    from pipeline.shards import file_part, plan_shards

    folder = transcripts(n_segments, table)
    n_cases = math.ceil(n_segments / TURNS_PER_CASE)
    if table:
        # precode cuts the table into parts of shard_files cases, a shard each
        csv = (folder / "all.csv").resolve()
        files = [file_part(csv, a + 1, min(a + shard_files, n_cases))
                 for a in range(0, n_cases, shard_files)]
        turns = {f: TURNS_PER_CASE * (min(a + shard_files, n_cases) - a)
                 for f, a in zip(files, range(0, n_cases, shard_files), strict=True)}
        turns[files[-1]] -= TURNS_PER_CASE * n_cases - n_segments        # the last case
    else:
        files = sorted(folder.glob("*.txt"))
        turns = {str(f.resolve()): TURNS_PER_CASE for f in files}
        turns[str(files[-1].resolve())] = n_segments - TURNS_PER_CASE * (len(files) - 1)   # the last case
    per_shard = {s.index: sum(turns[f] for f in s.files) for s in plan_shards(files, shard_files)}
    out = WORK / "out" / f"{n_segments}_{n_workers}w{'_table' if table else ''}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.parent / f".{out.name}.shards", ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)

    load = wait_for_quiet()
    parent_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # what a worker inherits
    started = time.time()
    c, client = cluster(n_workers, worker_profile)
    try:
        startup = time.time() - started
        idle = client.run(worker_memory)
        with get_task_stream(client) as stream:
            t0 = time.time()
            precode(codebook, folder, config=config, out=out, engine="dask",
                    scheduler=c.scheduler_address, shard_size=shard_files)
            t1 = time.time()
        memory = client.run(worker_memory)
        threads = sorted(set(client.run(worker_torch_threads).values()), key=str)
    finally:
        client.close()
        c.close()
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    shutil.rmtree(out, ignore_errors=True)

    t = shard_timings(stream.data)
    if len(t) != len(per_shard):
        raise SystemExit(f"the task stream holds {len(t)} shard(s) of {len(per_shard)}: "
                         "raise distributed.scheduler.dashboard.status.task-stream-length")
    t["seconds"] = t["stop"] - t["start"]
    t["segments"] = t["index"].map(per_shard)
    t = t.sort_values("start")
    first = t.groupby("worker").head(1)
    warm = t.drop(first.index)
    rate = (warm["segments"].sum() / warm["seconds"].sum()) if len(warm) else float("nan")
    load_s = float((first["seconds"] - first["segments"] / rate).mean()) if len(warm) else float("nan")
    window = float(t["stop"].max() - t["start"].min())
    segments = int(manifest["n_segments"])
    if segments != n_segments:
        raise SystemExit(f"{n_segments:,} turns were written but {segments:,} segments coded: the "
                         f"segments per shard would be wrong (is the TurnSegmenter in {config}?)")
    return {
        "segments": segments, "workers": n_workers, "shards": len(per_shard),
        "segments_per_shard": shard_files * TURNS_PER_CASE,
        "startup_s": round(startup, 2), "wall_s": round(t1 - t0, 2),
        "pre_s": round(float(t["start"].min()) - t0, 2), "window_s": round(window, 2),
        "post_s": round(t1 - float(t["stop"].max()), 2),
        "seg_per_s": round(segments / window, 1),
        "e2e_seg_per_s": round(segments / (t1 - started), 1),
        "worker_rate": round(rate, 2), "load_s": round(load_s, 2),
        "gap_per_shard_s": round((n_workers * window - t["seconds"].sum()) / len(t), 3),
        "peak_rss_mb": round(max(m["peak_mb"] for m in memory.values()), 1),
        "peak_rss_mb_each": " ".join(f"{m['peak_mb']:.0f}" for m in memory.values()),
        "ru_maxrss_mb": round(max(m["ru_maxrss_mb"] for m in memory.values()), 1),
        "parent_peak_mb_at_start": round(parent_peak, 1),
        "idle_rss_mb": round(max(m["rss_mb"] for m in idle.values()), 1),
        "torch_threads": " ".join(map(str, threads)),
        "needs_human": int(manifest["n_needs_human"]),
        "load_avg_before": round(load, 2), "run": kind, "worker_profile": worker_profile,
        "input": "one table" if table else "a file per case",
    }


def engine_overhead(n_workers: int, n_shards: int = 200) -> float:
    """Seconds per shard of the engine alone: ``n_shards`` shards of one tiny file each."""
    from pipeline.shards import run_shards

    folder = WORK / "tiny"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "in").mkdir(parents=True)
    files = []
    for i in range(n_shards):
        path = folder / "in" / f"t{i:04d}.txt"
        path.write_text(f"Participant: tiny {i}\n", encoding="utf-8")
        files.append(path)
    wait_for_quiet()
    c, client = cluster(n_workers)
    try:
        t0 = time.perf_counter()
        run_shards(files, folder / "out", one_row, shard_size=1, engine="dask",
                   scheduler=c.scheduler_address, progress=False)
        seconds = time.perf_counter() - t0
    finally:
        client.close()
        c.close()
    shutil.rmtree(folder, ignore_errors=True)
    return seconds / n_shards


# --- the projection --------------------------------------------------------------------------

def serial_line(runs: pd.DataFrame) -> tuple[float, float, str]:
    """``a, b``: this process's seconds before and after the shards, ``a + b * segments``,
    over ``runs`` (one worker count); and how they were found."""
    x = runs["segments"].to_numpy(dtype=float)
    y = (runs["pre_s"] + runs["post_s"]).to_numpy(dtype=float)
    if len(set(x)) < 2:
        return 0.0, float(y[-1] / x[-1]), f"proportional to the one size ({int(x[-1]):,})"
    b = max(float(np.polyfit(x, y, 1)[0]), 0.0)
    return max(float(np.mean(y - b * x)), 0.0), b, f"a line over {len(set(x))} sizes"


def projected_s(base: pd.Series, a: float, b: float, overhead: float, n: int, machines: int) -> float:
    """PROJECTION_NOTE's T(N, M) from the measured run ``base``."""
    w, s = int(base["workers"]), int(base["segments_per_shard"])
    shards = math.ceil(n / s)
    waves = math.ceil(shards / (machines * w))
    return float(base["startup_s"] + base["load_s"] + a + b * n + waves * s / base["worker_rate"]
                 + shards * overhead)


def projection(runs: pd.DataFrame, overhead: float, million: dict | None) -> pd.DataFrame:
    w = int(runs["workers"].max())
    mine = runs[runs["workers"] == w].sort_values("segments")
    base = mine.iloc[-1]
    a, b, how = serial_line(mine)
    basis = (f"projected from {int(base['segments']):,} segments on {w} worker(s): worker_rate "
             f"{base['worker_rate']:.1f} seg/s, load_s {base['load_s']:.1f}, overhead "
             f"{overhead * 1000:.0f} ms/shard, this process {a:.1f} s + {b * 1000:.2f} ms/segment "
             f"({how})")
    rows = []
    for n, machines in ((MILLION, 1), (10 * MILLION, 10), (10 * MILLION, 100)):
        seconds = projected_s(base, a, b, overhead, n, machines)
        rows.append({"segments": n, "machines": machines, "workers": machines * w,
                     "projected_h": round(seconds / 3600, 2),
                     "measured_h": (round((million["startup_s"] + million["wall_s"]) / 3600, 2)
                                    if million and n == MILLION and machines == 1 else None),
                     "basis": basis})
    return pd.DataFrame(rows)


# --- main --------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 50000],
                    help="segments per run (each size with each worker count)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--shard-files", type=int, default=20,
                    help=f"files per shard (precode's --shard-size; {TURNS_PER_CASE} segments a file)")
    ap.add_argument("--million", action="store_true",
                    help="also pre-code 1,000,000 segments with the most workers (hours)")
    ap.add_argument("--quick", action="store_true",
                    help="800 and 1600 segments in shards of 4 files: checks the bench runs")
    ap.add_argument("--compare-profiler", action="store_true",
                    help="also run each size with Dask's profiler on in the workers (Dask's "
                         "default; Consensa turns it off) and print the two side by side")
    ap.add_argument("--table", action="store_true",
                    help="also pre-code each size as one transcript table (all.csv) and print "
                         "its throughput beside the file-per-case runs")
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.shard_files = [800, 1600], 4
    import dask
    import distributed  # noqa: F401  (sets its loggers up when imported: quieten them after)

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("distributed").setLevel(logging.ERROR)    # workers closing, and so on

    # the task stream keeps this many tasks: every shard of the largest run
    dask.config.set({"distributed.scheduler.dashboard.status.task-stream-length": 1_000_000})
    print(SYNTHETIC_HOW)
    codebook = agreed_codebook()
    config = turn_config(codebook)
    warm_up(codebook)
    rows, profiled, tabled = [], [], []
    for n in sorted(set(args.sizes)):
        for w in sorted(set(args.workers)):
            # with --compare-profiler, the two settings take turns going first
            order = [False, True] if args.compare_profiler else [False]
            if args.compare_profiler and (n + w) % 2:
                order.reverse()
            for on in order:
                print(f"\n{n:,} segments, {w} worker(s)"
                      f"{', with Dask profiler' if on else ''} ...", flush=True)
                r = measure(codebook, config, n, w, args.shard_files, worker_profile=on)
                (profiled if on else rows).append(r)
                print(f"  {r['seg_per_s']} seg/s on the workers, peak RSS per worker "
                      f"{r['peak_rss_mb']} MB", flush=True)
            if args.table:
                print(f"\n{n:,} segments as one table, {w} worker(s) ...", flush=True)
                r = measure(codebook, config, n, w, args.shard_files, kind="table", table=True)
                tabled.append(r)
                print(f"  {r['seg_per_s']} seg/s on the workers in {r['shards']} shard(s)",
                      flush=True)
    runs = pd.DataFrame(rows)
    overhead = engine_overhead(int(runs["workers"].max()))
    million = None
    if args.million:
        w = int(runs["workers"].max())
        print(f"\n{MILLION:,} segments, {w} worker(s) (the scale run) ...", flush=True)
        million = measure(codebook, config, MILLION, w, args.shard_files, kind="scale")
        runs = pd.concat([runs, pd.DataFrame([million])], ignore_index=True)
    runs["overhead_per_shard_s"] = round(overhead, 4)

    print_table(runs.drop(columns=["peak_rss_mb_each"]), "Pre-coding on a LocalCluster (one row per run)")
    sizes = runs[runs["run"] == "size"]
    lo, hi = int(sizes["workers"].min()), int(sizes["workers"].max())
    if lo != hi:
        pair = sizes.pivot(index="segments", columns="workers", values="seg_per_s")
        e2e = sizes.pivot(index="segments", columns="workers", values="e2e_seg_per_s")
        speed = pd.DataFrame({"segments": pair.index, f"seg_per_s {lo}w": pair[lo].values,
                              f"seg_per_s {hi}w": pair[hi].values,
                              "speedup": (pair[hi] / pair[lo]).round(2).values,
                              "speedup_end_to_end": (e2e[hi] / e2e[lo]).round(2).values})
        speed["goal"] = [f">= {SPEEDUP_GOAL}: {'met' if x >= SPEEDUP_GOAL else 'NOT met'}"
                         for x in speed["speedup"]]
        print_table(speed, f"Throughput, {hi} workers against {lo} (seg_per_s: the workers' window; "
                           "end to end: with start-up and this process's work)")
    # the 1M run, when measured, is the largest size: memory at scale is what the goal is for
    mem = runs[runs["workers"] == hi].sort_values("segments")[
        ["segments", "idle_rss_mb", "peak_rss_mb", "peak_rss_mb_each", "ru_maxrss_mb",
         "parent_peak_mb_at_start"]]
    if len(mem) > 1:
        growth = mem["peak_rss_mb"].iloc[-1] / mem["peak_rss_mb"].iloc[0]
        print_table(mem, f"Peak RSS per worker ({hi} workers; each worker's own VmHWM): "
                         f"x{growth:.2f} from {mem['segments'].iloc[0]:,} to {mem['segments'].iloc[-1]:,} "
                         f"segments; goal <= x{FLAT}: {'met' if growth <= FLAT else 'NOT met'}")
    if profiled:
        on = pd.DataFrame(profiled).set_index(["segments", "workers"])
        off = runs[runs["run"] == "size"].set_index(["segments", "workers"]).loc[on.index]
        side = pd.DataFrame({"peak_rss_mb off": off["peak_rss_mb"], "peak_rss_mb on": on["peak_rss_mb"],
                             "rss ratio off/on": (off["peak_rss_mb"] / on["peak_rss_mb"]).round(3),
                             "seg_per_s off": off["seg_per_s"], "seg_per_s on": on["seg_per_s"],
                             "speed ratio off/on": (off["seg_per_s"] / on["seg_per_s"]).round(3)})
        print_table(side.reset_index(), "Dask's profiler in the workers: off (Consensa) against on "
                                        "(Dask's default), the same runs otherwise")
    if tabled:
        tab = pd.DataFrame(tabled).set_index(["segments", "workers"])
        files = runs[runs["run"] == "size"].set_index(["segments", "workers"]).loc[tab.index]
        side = pd.DataFrame({"shards (files)": files["shards"], "shards (table)": tab["shards"],
                             "seg_per_s files": files["seg_per_s"],
                             "seg_per_s table": tab["seg_per_s"],
                             "ratio table/files": (tab["seg_per_s"] / files["seg_per_s"]).round(2),
                             "peak_rss_mb files": files["peak_rss_mb"],
                             "peak_rss_mb table": tab["peak_rss_mb"]})
        print_table(side.reset_index(), "The same cases as one transcript table (cut into parts "
                                        "of --shard-files cases) against a file per case")
        print("wrote", save(pd.DataFrame(tabled), f"precode_scale_onetable{'_' + args.tag if args.tag else ''}.csv"))
    proj = projection(runs, overhead, million)
    print_table(proj, "Time for 1M segments on one machine and 10M on 10 and 100 such machines")
    print(f"\nEngine overhead: {overhead * 1000:.1f} ms per shard (200 shards of one tiny file, "
          f"{int(runs['workers'].max())} workers).")
    if million is None:
        print(f"The 1M row is a projection from {int(sizes['segments'].max()):,} segments, not a "
              "measurement (--million measures it).")
    print("Projection:", PROJECTION_NOTE)
    tag = f"_{args.tag}" if args.tag else ""
    if profiled:
        print("wrote", save(pd.DataFrame(profiled), f"precode_scale_profiler_on{tag}.csv"))
    print("wrote", save(runs, f"precode_scale{tag}.csv"), "and",
          save(proj.assign(note=PROJECTION_NOTE), f"precode_scale_projection{tag}.csv"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
