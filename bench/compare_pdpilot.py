"""Consensa's themes vs. the PDPilot study's human codes.

Runs Consensa (the real embedding model, UMAP, HDBSCAN: the demo's settings) on
the 7 PDPilot interviews (``pdpilot_turns.csv``, one row per turn), then
``consensa compare`` against the coded passages of ``pdpilot_segments.csv``
(codes in a domain > category (> subcategory) hierarchy, quotes without offsets:
they are located in the turns' text) and prints the compare summary.

    .venv/bin/python bench/compare_pdpilot.py [--keep] [--level category|domain]

Writes its config and run under a temporary folder in /tmp (removed unless
``--keep``). Needs /work/shared/data/pdpilot (or CONSENSA_BENCH_DATA).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("CONSENSA_BENCH_DATA", "/work/shared/data")) / "pdpilot"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--level", default="category", choices=("category", "domain"))
    args = ap.parse_args()
    turns, segments = DATA / "pdpilot_turns.csv", DATA / "pdpilot_segments.csv"
    for f in (turns, segments):
        if not f.is_file():
            print(f"missing {f}", file=sys.stderr)
            return 2
    from pipeline.cli import main as consensa

    tmp = Path(tempfile.mkdtemp(prefix="consensa-pdpilot-"))
    try:
        config = {
            "name": "pdpilot", "seed": 42, "output_dir": str(tmp / "runs"),
            "cache_dir": str(ROOT / ".cache" / "consensa"),
            "ingest": {"paths": [str(turns)],
                       "table": {"case_id": "case_id", "speaker": "speaker", "text": "text",
                                 "turn_index": "turn_index"}},
            "segment": {"name": "consensa.SentenceSegmenter.v1", "target_words": 40,
                        "max_words": 80},
            "embed": {"name": "consensa.SentenceTransformer.v1", "model": "all-MiniLM-L6-v2"},
            "reduce": {"name": "consensa.UMAP.v1", "n_components": 5},
            "cluster": {"name": "consensa.HDBSCAN.v1"},
        }
        cfg = tmp / "pdpilot.yaml"
        cfg.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        run = tmp / "runs" / "pdpilot"
        start = time.perf_counter()
        status = consensa(["run", str(cfg), "--out", str(run)])
        if status:
            return status
        print(f"(consensa run: {time.perf_counter() - start:.1f} s)\n", flush=True)
        start = time.perf_counter()
        status = consensa(["compare", str(run), str(segments), "--level", args.level])
        print(f"\n(consensa compare: {time.perf_counter() - start:.1f} s)")
        if args.keep:
            print(f"kept: {tmp}")
        return status
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
