"""One very long case: peak memory and wall time of ``consensa run`` (the CQR
analysis, TF-IDF vectors) at this checkout and at a baseline revision, side by side,
and whether the two runs' tables are the same.

    .venv/bin/python bench/one_case.py [--baseline REV] [--inputs turn50k vtt10k ...]

A study of one case whose every segment lands in one domain (no interviewer
question found: the whole study is one domain) is the largest unit the core ideas
work on: all the case's sentences are candidates for its one core idea. At the
baseline (750fbb4) that choice built matrices of all those sentences against all,
and the run's memory grew with their square (4.3 GB for a 200,000-word turn).

Inputs, written under ``.cache/bench/one_case/`` (the same words each time,
random.seed(1), from a vocabulary of 45 words):

* ``turn50k``, ``turn200k``: an interview whose participant answers one question in
  one turn of 50,000 or 200,000 words, sentences of 15 words (1,091 and 4,353
  segments);
* ``vtt10k``, ``vtt30k``: a WebVTT transcript of 10,000 or 30,000 cues of 10 words,
  every tenth the interviewer's question (2,895 and about 8,700 segments). The
  baseline would need about 20 GB for ``vtt30k``: it is run at this checkout only;
* ``files3k``, for comparison: 3,000 files of one 25-word answer each (3,000 cases).

Each run is a fresh process with its own cache (cold), under ``/usr/bin/time -v``
(peak RSS: the maximum resident set size); the two revisions take turns, this
checkout first, after an untimed run of each on ``turn50k`` (numba compiles UMAP's
functions on a copy of the code's first run). Results: ``bench/results/one_case.csv``
(``--tag`` for another name).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
from pathlib import Path

import pandas as pd
from bench_common import PYTHON, ROOT, print_table, run_measured, save, save_environment
from speed import baseline_code

WORK = ROOT / ".cache" / "bench" / "one_case"
#: the commit before the core ideas stopped building matrices of all sentences
BASELINE = "750fbb4"
#: the inputs the baseline is not run on (it would need about 20 GB)
TOO_BIG_FOR_BASELINE = {"vtt30k"}
INPUTS = {"turn50k": ("turn", 50_000), "turn200k": ("turn", 200_000),
          "vtt10k": ("vtt", 10_000), "vtt30k": ("vtt", 30_000), "files3k": ("files", 3_000)}
#: the tables of a run that must be the same at both revisions
TABLES = ("segments", "categories", "core_ideas", "cqr_table", "domains")

VOCABULARY = ("i felt the tears come and i did not know what to do with them my supervisor said it "
              "was fine but i was not so sure the client looked at me and she seemed relieved that "
              "someone else could feel it too we talked about it the next week").split()
CONFIG = """name: one-case
output_dir: runs
cache_dir: cache
analysis: consensa.CQR.v1
embed: {name: consensa.TfidfSVD.v1}
ingest:
  paths: [data]
  roles: {Mara Reyes: interviewer}
"""


def _stamp(x: float) -> str:
    return f"{int(x // 3600):02d}:{int(x % 3600 // 60):02d}:{x % 60:06.3f}"


def make_input(name: str) -> Path:
    """The study folder of input ``name`` (its config ``study.yaml`` and ``data/``),
    written once."""
    kind, n = INPUTS[name]
    folder = WORK / name
    config = folder / "study.yaml"
    if config.exists():
        return config
    data = folder / "data"
    shutil.rmtree(folder, ignore_errors=True)
    data.mkdir(parents=True)
    rng = random.Random(1)

    def words(k: int) -> str:
        return " ".join(rng.choice(VOCABULARY) for _ in range(k))

    if kind == "turn":
        answer = " ".join(words(15).capitalize() + "." for _ in range(0, n, 15))
        (data / "interview.txt").write_text(
            "Interviewer: Could you tell me about a time you cried in session?\n\n"
            f"Therapist: {answer}\n", encoding="utf-8")
    elif kind == "vtt":
        lines = ["WEBVTT", ""]
        for i in range(n):
            who = "Mara Reyes" if i % 10 == 0 else "Sam Lee"
            said = ("Could you tell me more about that time?" if who == "Mara Reyes"
                    else words(10).capitalize() + ".")
            lines += [str(i + 1), f"{_stamp(i * 2.0)} --> {_stamp(i * 2.0 + 1.9)}",
                      f"<v {who}>{said}</v>", ""]
        (data / "cues.vtt").write_text("\n".join(lines), encoding="utf-8")
    else:
        for i in range(n):
            (data / f"C{i:05d}.txt").write_text(
                "Interviewer: How did it feel to cry in session?\n\n"
                f"Participant: {words(25).capitalize()}.\n", encoding="utf-8")
    config.write_text(CONFIG, encoding="utf-8")
    return config


def run(config: Path, code: Path, out: Path, max_load: float) -> dict:
    """``consensa run`` of ``config`` with the package in ``code``, cold (its own new
    cache), into ``out``."""
    cache = out.with_name(out.name + "-cache")
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    m = run_measured([PYTHON, "-m", "pipeline.cli", "run", str(config), "-q", "--out", str(out),
                      "--set", f"cache_dir={cache}"], cwd=code, max_load=max_load)
    shutil.rmtree(cache, ignore_errors=True)
    if m.returncode != 0:
        print(m.stderr[-3000:], file=sys.stderr)
    segments = (len(pd.read_parquet(out / "segments.parquet", columns=["segment_id"]))
                if m.returncode == 0 else None)
    return {"wall_s": round(m.wall_s, 1), "peak_rss_mb": round(m.peak_rss_mb),
            "rc": m.returncode, "segments": segments, "load_before": round(m.load_before, 2)}


def same_tables(a: Path, b: Path) -> str:
    """"yes", or the tables that differ between the run folders ``a`` and ``b``."""
    differ = []
    for name in TABLES:
        x, y = pd.read_parquet(a / f"{name}.parquet"), pd.read_parquet(b / f"{name}.parquet")
        if not x.equals(y):
            differ.append(name)
    return "yes" if not differ else "no: " + ", ".join(differ)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", nargs="+",
                    default=["turn50k", "vtt10k", "turn200k", "vtt30k", "files3k"],
                    choices=sorted(INPUTS))
    ap.add_argument("--baseline", metavar="REV", default=BASELINE,
                    help=f"the revision compared with (default {BASELINE}: the last before the "
                         "core ideas stopped building matrices of all sentences)")
    ap.add_argument("--max-load", type=float, default=2.5,
                    help="wait before each run while the 1-minute load average is above this")
    ap.add_argument("--no-warm-up", action="store_true",
                    help="skip the untimed first run of each revision")
    ap.add_argument("--tag", default="", help="write one_case_TAG.csv instead of one_case.csv")
    args = ap.parse_args(argv)
    tag = f"_{args.tag}" if args.tag else ""
    base, sha = baseline_code(args.baseline)
    print(f"baseline: {sha[:12]} ({args.baseline}); this checkout: {ROOT}")
    if not args.no_warm_up:
        # numba compiles UMAP's functions for each copy of the code on its first run
        print("warm-up (untimed): both revisions on turn50k ...", flush=True)
        config = make_input("turn50k")
        for code, out in ((ROOT, "warm-new"), (base, "warm-old")):
            run(config, code, config.parent / out, args.max_load)
    rows = []
    for name in args.inputs:
        config = make_input(name)
        folder = config.parent
        print(f"{name}: this checkout ...", flush=True)
        new = run(config, ROOT, folder / "run-new", args.max_load)
        row = {"input": name, "segments": new["segments"], "new_peak_rss_mb": new["peak_rss_mb"],
               "new_wall_s": new["wall_s"], "new_rc": new["rc"], "load_new": new["load_before"]}
        if name not in TOO_BIG_FOR_BASELINE:
            print(f"{name}: baseline {sha[:12]} ...", flush=True)
            old = run(config, base, folder / "run-old", args.max_load)
            row.update({"old_peak_rss_mb": old["peak_rss_mb"], "old_wall_s": old["wall_s"],
                        "old_rc": old["rc"], "load_old": old["load_before"],
                        "rss_new/old": round(new["peak_rss_mb"] / old["peak_rss_mb"], 2),
                        "wall_new/old": round(new["wall_s"] / old["wall_s"], 2),
                        "same_tables": (same_tables(folder / "run-new", folder / "run-old")
                                        if new["rc"] == old["rc"] == 0 else "")})
        rows.append(row)
    df = pd.DataFrame(rows)
    print_table(df, "One long case: this checkout (new) and the baseline (old), cold runs")
    print(f"\nwrote {save(df, f'one_case{tag}.csv')} and "
          f"{save_environment(f'one_case_env{tag}.csv')}")
    return 0 if all(r.get("new_rc") == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
