"""Speed: `consensa run` vs an equivalent BERTopic script, end to end.

    .venv/bin/python bench/speed.py [--sizes demo 10000] [--reps 2] [--with-float32] [--with-cqr]

Every run is a fresh process under ``/usr/bin/time -v`` (wall time, peak RSS),
after waiting for a quiet machine; Consensa and BERTopic runs alternate (A/B,
then B/A) so both see the same conditions, and ratios are taken per pair.

* Consensa cold: `consensa run CONFIG` with an empty embedding cache and an
  empty reduction cache, a new run folder each time.
* Consensa warm: the same config again with the caches filled by the cold run,
  and only clustering settings changed (``--set cluster.min_cluster_size=K``,
  a different K each time). The default clusterer (HDBSCAN.v3) keeps
  ``min_samples`` when the smallest theme size changes, so this run cuts the
  cached HDBSCAN hierarchy.
* Consensa warm, new density (``--set cluster.min_samples=M``): a change that
  HDBSCAN's hierarchy depends on, so the warm run builds it again.
* Consensa float32 (``--with-float32``): cold, with ``--set embed.quantize=none``
  (the default embedder quantizes the model to int8; this shows what that buys).
* BERTopic: bench/bertopic_run.py on the same segments: the same
  all-MiniLM-L6-v2 weights through sentence-transformers' defaults, then
  ``BERTopic()`` with its defaults; writes its document and topic tables.

Inputs: ``demo`` is data/demo through configs/demo.yaml (BERTopic gets the 439
segments Consensa cut from it, as a table, since it reads no transcripts);
``10000`` is the synthetic table of bench_common.SYNTHETIC_HOW (TurnSegmenter,
so both get the same 10,000 texts). Before measuring, one untimed run of each
tool fills numba's compile caches (a property of the installation).

* Baseline (``--baseline REV``): the whole run as Consensa made it at the git
  revision REV, cold and warm (a new ``min_cluster_size``), taking turns with the
  runs above. Its code is that revision's files (``git archive``, under
  .cache/bench/speed), run by this environment's Python; the demo is run through
  that revision's own configs/demo.yaml, the 10k study through the same config as
  the other runs. The CQR analysis's time goal bounds the CQR run by the times
  Consensa had before it was begun: the runs of b4e21b8, the last commit before it.
  Comparing with today's whole-corpus themes instead is stricter: they have since
  been made faster too.

Targets: on 10k segments, cold Consensa at most half of BERTopic's wall time; a
warm re-run under 10% of the cold run; the CQR run within 1.2x of the baseline's
cold and warm times. Writes bench/results/speed.csv (every run),
speed_summary.csv and speed_stages.csv (``--tag T``: speed_T.csv, ...).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
from bench_common import (
    CONSENSA,
    PYTHON,
    ROOT,
    SYNTHETIC_HOW,
    print_table,
    run_measured,
    save,
    synthetic_study,
)

WORK = ROOT / ".cache" / "bench" / "speed"


def measured(cmd: list[str], cwd: Path | None = None) -> dict:
    """Run ``cmd`` in a fresh process (in ``cwd``): wall time, peak RSS, exit status,
    load before."""
    m = run_measured(cmd, cwd=cwd)
    if m.returncode != 0:
        print(m.stderr[-2000:], file=sys.stderr)
    return {"wall_s": m.wall_s, "peak_rss_mb": m.peak_rss_mb, "rc": m.returncode,
            "load_before": m.load_before}


#: the rows named "consensa" measure the whole-corpus themes, whatever the config names
#: (configs/demo.yaml asks for the CQR analysis); "consensa-cqr" rows measure that
THEMES = ["--set", "analysis=consensa.Themes.v1"]
CQR = ["--set", "analysis=consensa.CQR.v1"]


def consensa(cfg: Path, out: Path, cache: Path, extra: list[str], code: Path | None = None) -> dict:
    """``consensa run``: this checkout's, or with ``code`` the package in that folder
    (a baseline revision's files), run as ``python -m pipeline.cli`` from there."""
    cmd = [CONSENSA] if code is None else [PYTHON, "-m", "pipeline.cli"]
    # the baseline's package is the one in its folder: python -m puts the folder first
    row = measured([*cmd, "run", str(cfg), "--out", str(out), "--set", f"cache_dir={cache}",
                    *extra], cwd=code)
    if row["rc"] != 0:
        return row
    man = json.loads((out / "manifest.json").read_text())
    counts = man.get("counts", {})
    row.update({f"t_{k}": v for k, v in man["timings"].items()})
    row.update(themes=counts.get("themes"), outlier_share=man.get("outlier_share"),
               embedded=counts.get("embedded"), from_cache=counts.get("embeddings_from_cache"))
    return row


def baseline_code(rev: str) -> tuple[Path, str]:
    """The files of git revision ``rev`` of this repository, unpacked once under WORK:
    (folder, the commit's full id)."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    folder = WORK / f"baseline-{sha[:12]}"
    if not (folder / ".unpacked").exists():
        shutil.rmtree(folder, ignore_errors=True)
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", sha],
                             capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            archive.extractall(folder, filter="data")
        (folder / ".unpacked").write_text(sha + "\n")
    return folder, sha


def bertopic(table: Path, out: Path) -> dict:
    tjson = out.with_suffix(".json")
    row = measured([PYTHON, str(ROOT / "bench" / "bertopic_run.py"), str(table), str(out),
                    "--timings", str(tjson)])
    if row["rc"] != 0:
        return row
    t = json.loads(tjson.read_text())
    row.update({f"t_{k}": v for k, v in t.items() if k not in ("themes", "outlier_share")})
    row.update(themes=t["themes"], outlier_share=t["outlier_share"])
    return row


def inputs(size: str, folder: Path) -> tuple[Path, Path]:
    """(consensa config, table of the same segments for BERTopic)."""
    folder.mkdir(parents=True, exist_ok=True)
    if size == "demo":
        cfg = ROOT / "configs" / "demo.yaml"
        table = folder / "demo_segments.csv"
        if not table.exists():
            probe = folder / "segments-probe"
            shutil.rmtree(probe, ignore_errors=True)
            r = consensa(cfg, probe, folder / "probe-cache", [])
            assert r["rc"] == 0, "the demo run failed"
            seg = pd.read_csv(probe / "segments.csv")
            seg.assign(speaker="participant")[["case_id", "turn_index", "speaker", "text"]] \
                .to_csv(table, index=False)
        return cfg, table
    n = int(size)
    cfg, _ = synthetic_study(folder, n)
    return cfg, folder / f"synthetic_{n}.csv"


def warm_up(folder: Path) -> None:
    """Fill numba's compile caches for both tools (n > 4096 takes other code paths)."""
    cfg, _ = synthetic_study(folder, 5000)
    table = folder / "synthetic_5000.csv"
    print("warm-up (untimed): consensa and BERTopic on 5,000 segments ...", flush=True)
    shutil.rmtree(folder / "warm-out", ignore_errors=True)
    consensa(cfg, folder / "warm-out", folder / "warm-cache", [])
    bertopic(table, folder / "warm-bt")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["demo", "10000"])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--with-float32", action="store_true")
    ap.add_argument("--no-warm-up", action="store_true")
    ap.add_argument("--with-cqr", action="store_true",
                    help="also the CQR analysis (analysis: consensa.CQR.v1), cold and warm")
    ap.add_argument("--baseline", metavar="REV", default=None,
                    help="also the whole run at git revision REV, cold and warm (b4e21b8: the "
                         "last commit before the CQR analysis)")
    ap.add_argument("--tag", default="", help="write speed_TAG.csv etc. instead of speed.csv")
    args = ap.parse_args(argv)
    tag = f"_{args.tag}" if args.tag else ""
    import importlib.util

    if importlib.util.find_spec("bertopic") is None:
        print("BERTopic is not installed, and every ratio here is against it: "
              "pip install -e '.[bench]' (after torch, see the Makefile)", file=sys.stderr)
        return 2
    print(SYNTHETIC_HOW)
    WORK.mkdir(parents=True, exist_ok=True)
    if not args.no_warm_up:
        warm_up(WORK / "warm-up")
    base = None
    if args.baseline:
        base, sha = baseline_code(args.baseline)
        print(f"baseline: the run at {sha[:12]} ({args.baseline}), its files in {base}")
    rows = []
    for size in args.sizes:
        folder = WORK / size
        cfg, table = inputs(size, folder)
        # the baseline runs the demo as that revision's own config asked; the 10k
        # study through the same config as the others
        base_cfg = (base / "configs" / "demo.yaml") if base is not None and size == "demo" else cfg
        for rep in range(args.reps):
            cache = folder / "cache"
            runs = folder / f"runs-{rep}"
            shutil.rmtree(runs, ignore_errors=True)
            runs.mkdir(parents=True)
            order = ["consensa", "bertopic"] if rep % 2 == 0 else ["bertopic", "consensa"]
            if args.with_float32:
                order.insert(1, "consensa-float32")
            if args.with_cqr:
                order.insert(1, "consensa-cqr")
            if base is not None:
                order.insert(1, "baseline")
            for tool in order:
                print(f"{size} rep {rep}: {tool} cold ...", flush=True)
                if tool == "bertopic":
                    r = bertopic(table, runs / "bertopic")
                elif tool == "consensa":
                    shutil.rmtree(cache, ignore_errors=True)
                    r = consensa(cfg, runs / "consensa-cold", cache, THEMES)
                elif tool == "consensa-cqr":
                    shutil.rmtree(folder / "cache-cqr", ignore_errors=True)
                    r = consensa(cfg, runs / "consensa-cqr-cold", folder / "cache-cqr", CQR)
                elif tool == "baseline":
                    shutil.rmtree(folder / "cache-baseline", ignore_errors=True)
                    r = consensa(base_cfg, runs / "baseline-cold", folder / "cache-baseline", [],
                                 code=base)
                else:
                    shutil.rmtree(folder / "cache-float32", ignore_errors=True)
                    r = consensa(cfg, runs / "consensa-float32", folder / "cache-float32",
                                 [*THEMES, "--set", "embed.quantize=none"])
                rows.append({"size": size, "rep": rep, "tool": tool, "mode": "cold", **r})
                print(f"  {r['wall_s']:.1f} s, peak {r['peak_rss_mb']:.0f} MB", flush=True)
            # warm: caches filled by this rep's cold run, new clustering settings only
            mcs = 12 + rep if size == "demo" else 40 + 5 * rep
            print(f"{size} rep {rep}: consensa warm (cluster.min_cluster_size={mcs}) ...", flush=True)
            r = consensa(cfg, runs / "consensa-warm", cache,
                         [*THEMES, "--set", f"cluster.min_cluster_size={mcs}"])
            rows.append({"size": size, "rep": rep, "tool": "consensa", "mode": "warm", **r})
            print(f"  {r['wall_s']:.1f} s", flush=True)
            ms = 5 + rep
            print(f"{size} rep {rep}: consensa warm, new density (cluster.min_samples={ms}) ...", flush=True)
            r = consensa(cfg, runs / "consensa-warm-density", cache,
                         [*THEMES, "--set", f"cluster.min_samples={ms}"])
            rows.append({"size": size, "rep": rep, "tool": "consensa", "mode": "warm-density", **r})
            print(f"  {r['wall_s']:.1f} s", flush=True)
            if base is not None:
                print(f"{size} rep {rep}: baseline warm (cluster.min_cluster_size={mcs}) ...",
                      flush=True)
                r = consensa(base_cfg, runs / "baseline-warm", folder / "cache-baseline",
                             ["--set", f"cluster.min_cluster_size={mcs}"], code=base)
                rows.append({"size": size, "rep": rep, "tool": "baseline", "mode": "warm", **r})
                print(f"  {r['wall_s']:.1f} s", flush=True)
            if args.with_cqr:
                # warm: the cache of this rep's cold CQR run, a new cross-analysis setting
                sub_min = 20 + rep
                print(f"{size} rep {rep}: consensa CQR warm "
                      f"(crossanalysis.subcategory_min_segments={sub_min}) ...", flush=True)
                r = consensa(cfg, runs / "consensa-cqr-warm", folder / "cache-cqr",
                             [*CQR, "--set", f"crossanalysis.subcategory_min_segments={sub_min}"])
                rows.append({"size": size, "rep": rep, "tool": "consensa-cqr", "mode": "warm", **r})
                print(f"  {r['wall_s']:.1f} s", flush=True)

    df = pd.DataFrame(rows)
    failed = df["rc"] != 0
    if failed.any():                # a failed run's time is no measurement
        print(f"{int(failed.sum())} run(s) failed (their output is above) and count as missing: "
              + ", ".join(sorted(set(df.loc[failed, "tool"] + " " + df.loc[failed, "mode"]))))
        df.loc[failed, [c for c in df.columns if c.startswith("t_") or c == "wall_s"]] = float("nan")
    save(df.round(3), f"speed{tag}.csv")
    stage_cols = [c for c in df.columns if c.startswith("t_") and c != "t_total"]
    summary = []
    for size, g in df.groupby("size", sort=False):
        cold = g[(g["tool"] == "consensa") & (g["mode"] == "cold")].set_index("rep")
        warm = g[(g["tool"] == "consensa") & (g["mode"] == "warm")].set_index("rep")
        dens = g[(g["tool"] == "consensa") & (g["mode"] == "warm-density")].set_index("rep")
        bt = g[g["tool"] == "bertopic"].set_index("rep")
        f32 = g[g["tool"] == "consensa-float32"].set_index("rep")
        cqr_cold = g[(g["tool"] == "consensa-cqr") & (g["mode"] == "cold")].set_index("rep")
        cqr_warm = g[(g["tool"] == "consensa-cqr") & (g["mode"] == "warm")].set_index("rep")
        base_cold = g[(g["tool"] == "baseline") & (g["mode"] == "cold")].set_index("rep")
        base_warm = g[(g["tool"] == "baseline") & (g["mode"] == "warm")].set_index("rep")
        s = {"size": size, "reps": len(cold),
             "consensa_cold_s": cold["wall_s"].median(), "bertopic_s": bt["wall_s"].median(),
             "cold/bertopic (per pair, median)": (cold["wall_s"] / bt["wall_s"]).median(),
             "consensa_warm_s": warm["wall_s"].median(),
             "warm/cold (per pair, median)": (warm["wall_s"] / cold["wall_s"]).median(),
             "consensa_warm_new_density_s": dens["wall_s"].median(),
             "warm new density/cold (per pair, median)": (dens["wall_s"] / cold["wall_s"]).median(),
             "consensa_cold_peak_MB": cold["peak_rss_mb"].max(),
             "consensa_warm_peak_MB": warm["peak_rss_mb"].max(),
             "bertopic_peak_MB": bt["peak_rss_mb"].max()}
        if not f32.empty:
            s["float32_cold_s"] = f32["wall_s"].median()
            s["float32/bertopic (per pair, median)"] = (f32["wall_s"] / bt["wall_s"]).median()
            s["float32_peak_MB"] = f32["peak_rss_mb"].max()
        if not cqr_cold.empty:
            s["cqr_cold_s"] = cqr_cold["wall_s"].median()
            s["cqr cold/themes cold (per pair, median)"] = (cqr_cold["wall_s"] / cold["wall_s"]).median()
            s["cqr_warm_s"] = cqr_warm["wall_s"].median()
            s["cqr warm/themes warm (per pair, median)"] = (cqr_warm["wall_s"] / warm["wall_s"]).median()
            s["cqr_peak_MB"] = cqr_cold["peak_rss_mb"].max()
        if not base_cold.empty:
            s["baseline_cold_s"] = base_cold["wall_s"].median()
            s["baseline_warm_s"] = base_warm["wall_s"].median()
            s["themes cold/baseline cold (per pair, median)"] = (
                cold["wall_s"] / base_cold["wall_s"]).median()
            if not cqr_cold.empty:
                s["cqr cold/baseline cold (per pair, median)"] = (
                    cqr_cold["wall_s"] / base_cold["wall_s"]).median()
                s["cqr warm/baseline warm (per pair, median)"] = (
                    cqr_warm["wall_s"] / base_warm["wall_s"]).median()
        summary.append(s)
    summ = pd.DataFrame(summary).round(3)
    print_table(summ.T.reset_index().rename(columns={"index": "measure"}),
                "End to end, fresh process each (wall s, peak RSS MB)")
    stages = df.groupby(["size", "tool", "mode"], sort=False)[stage_cols].median().round(2)
    stages = stages.dropna(axis=1, how="all").reset_index()
    print_table(stages, "Per-stage wall time, median over reps (Consensa: manifest timings; "
                        "BERTopic: the script's steps)")
    save(summ, f"speed_summary{tag}.csv")
    save(stages, f"speed_stages{tag}.csv")
    for _, r in summ.iterrows():
        if "cqr cold/baseline cold (per pair, median)" in r and pd.notna(
                r["cqr cold/baseline cold (per pair, median)"]):
            for mode in ("cold", "warm"):
                ratio = r[f"cqr {mode}/baseline {mode} (per pair, median)"]
                print(f"Target CQR {mode} <= 1.2 x the baseline's ({r['size']}): {ratio:.2f} -> "
                      f"{'met' if ratio <= 1.2 else 'NOT met'}")
    ten = summ[summ["size"] == "10000"]
    if not ten.empty:
        r = ten.iloc[0]
        print(f"\nTarget cold <= 0.5 x BERTopic on 10k: {r['cold/bertopic (per pair, median)']:.2f} -> "
              f"{'met' if r['cold/bertopic (per pair, median)'] <= 0.5 else 'NOT met'}")
        if "float32/bertopic (per pair, median)" in r:
            print(f"  with embed.quantize=none (float32): {r['float32/bertopic (per pair, median)']:.2f}")
        print(f"Target warm < 10% of cold on 10k: {r['warm/cold (per pair, median)']:.3f} -> "
              f"{'met' if r['warm/cold (per pair, median)'] < 0.1 else 'NOT met'}")
        d = r["warm new density/cold (per pair, median)"]
        print(f"  with min_samples changed (hierarchy rebuilt): {d:.3f} -> "
              f"{'under' if d < 0.1 else 'NOT under'} 10%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
