"""Scale: wall time and peak memory per stage at 1k, 10k and 100k segments.

    .venv/bin/python bench/scale.py [--sizes 1000 10000 100000] [--set embed.quantize=int8]

Each size is one `consensa run` (through bench/stage_probe.py) in a fresh
process with an empty embedding cache and an empty reduction cache (numba's
compile cache, a property of the installation, stays warm). Per stage: wall time
(the manifest's timings) and the peak resident set size while the stage ran (a
20 ms sampling thread); for the whole process: wall time and peak RSS from
``/usr/bin/time -v``. Ratios between consecutive sizes show the growth curve (10x
the segments: linear growth means ~10x time for linear stages and ~10x the memory
above the fixed start-up footprint).

Data: see bench_common.SYNTHETIC_HOW (printed below): AnnoMI and PDPilot
utterances resampled with replacement into synthetic 40-turn cases and lightly
perturbed so every segment is unique.

Targets: 100k segments end-to-end within 20 minutes and 6 GB peak RSS.
Writes bench/results/scale.csv (per stage) and bench/results/scale_summary.csv.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys

import pandas as pd
from bench_common import (
    PYTHON,
    ROOT,
    SYNTHETIC_HOW,
    print_table,
    run_measured,
    save,
    synthetic_study,
)

WORK = ROOT / ".cache" / "bench" / "scale"
STAGES = ["import", "ingest", "segment", "embed", "context", "reduce", "cluster", "label", "domains",
          "map", "write"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--tag", default="")
    ap.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args(argv)
    print(SYNTHETIC_HOW)
    long_rows, summary = [], []
    for n in args.sizes:
        folder = WORK / str(n)
        shutil.rmtree(folder / "cache", ignore_errors=True)
        shutil.rmtree(folder / "runs", ignore_errors=True)
        cfg, info = synthetic_study(folder, n)
        result = folder / "probe.json"
        result.unlink(missing_ok=True)
        cmd = [PYTHON, str(ROOT / "bench" / "stage_probe.py"), str(cfg), str(folder / "runs" / "run"),
               str(result)]
        for o in args.overrides:
            cmd += ["--set", o]
        print(f"\n{n} segments (mean {info['mean_words']} words; {info['case_id_appended']} "
              f"with the case id appended) ...", flush=True)
        m = run_measured(cmd, timeout=args.timeout)
        if m.returncode != 0 or not result.exists():
            print(m.stderr[-3000:], file=sys.stderr)
            summary.append({"segments": n, "wall_s": round(m.wall_s, 1), "peak_rss_mb": m.peak_rss_mb,
                            "ok": False})
            continue
        probe = json.loads(result.read_text())
        base = next(r["rss_peak_mb"] for r in probe["stages"] if r["stage"] == "import")
        for r in probe["stages"]:
            if r["stage"] in ("startup",):
                continue
            long_rows.append({"segments": n, "stage": r["stage"], "wall_s": r["wall_s"],
                              "rss_peak_mb": r["rss_peak_mb"]})
        summary.append({"segments": n, "wall_s": round(m.wall_s, 1),
                        "peak_rss_mb": round(m.peak_rss_mb, 1),
                        "rss_above_import_mb": round(m.peak_rss_mb - base, 1),
                        "themes": probe["counts"]["themes"],
                        "outlier_share": probe["outlier_share"],
                        "load_before": round(m.load_before, 2), "ok": True})
        print(f"  {m.wall_s:.1f} s, peak RSS {m.peak_rss_mb:.0f} MB", flush=True)

    per_stage = pd.DataFrame(long_rows)
    summ = pd.DataFrame(summary)
    tag = f"_{args.tag}" if args.tag else ""
    if not per_stage.empty:
        wall = per_stage.pivot(index="stage", columns="segments", values="wall_s").reindex(STAGES)
        rss = per_stage.pivot(index="stage", columns="segments", values="rss_peak_mb").reindex(STAGES)
        table = pd.DataFrame({"stage": wall.index})
        sizes = list(wall.columns)
        for n in sizes:
            table[f"{n} wall_s"] = wall[n].values
        for a, b in itertools.pairwise(sizes):
            table[f"x{b}/{a}"] = (wall[b] / wall[a]).round(1).values
        for n in sizes:
            table[f"{n} peakRSS_MB"] = rss[n].values
        print_table(table, "Per stage: wall time (s) and peak RSS while the stage ran (MB)")
        save(per_stage, f"scale{tag}.csv")
    if len(summ) > 1:
        for col in ("wall_s", "peak_rss_mb", "rss_above_import_mb"):
            if col in summ:
                summ[f"{col}_ratio_to_previous"] = (summ[col] / summ[col].shift(1)).round(2)
    big = summ[summ["segments"] == 100000]
    if not big.empty:
        row = big.iloc[0]
        summ["target"] = ""
        summ.loc[big.index, "target"] = (
            f"<=1200 s: {'met' if row['ok'] and row['wall_s'] <= 1200 else 'NOT met'}; "
            f"<=6144 MB: {'met' if row['ok'] and row['peak_rss_mb'] <= 6144 else 'NOT met'}")
    print_table(summ, "End to end (fresh process each; /usr/bin/time -v)")
    save(summ, f"scale_summary{tag}.csv")
    if args.overrides:
        print("overrides:", " ".join(args.overrides))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
