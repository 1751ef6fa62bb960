"""Run one Consensa config in this (fresh) process and record, per stage, the wall
time (from the manifest) and the peak resident set size (RSS) while it ran.

    .venv/bin/python bench/stage_probe.py CONFIG OUT_DIR RESULT_JSON [--set KEY=VALUE ...]

A thread samples this process's RSS (/proc/self/statm) every 20 ms; the run's
progress messages (logger ``consensa.run``: "ingest ...") mark where each stage
starts, so the peak is attributed to the stage that was running. ``ru_maxrss``
(the kernel's exact peak) is recorded too.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import threading
import time
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 2**20


class StageRSS:
    def __init__(self, interval: float = 0.02) -> None:
        self.stage = "startup"
        self.peaks: dict[str, float] = {}
        self.start_rss: dict[str, float] = {}
        self.order: list[str] = []
        self.interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.mark("startup")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def mark(self, stage: str) -> None:
        now = rss_mb()
        with self._lock:
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), now)
            self.stage = stage
            if stage not in self.order:
                self.order.append(stage)
                self.start_rss[stage] = now
            self.peaks[stage] = max(self.peaks.get(stage, 0.0), now)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = rss_mb()
            with self._lock:
                self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), now)

    def stop(self) -> None:
        self.mark("done")
        self._stop.set()
        self.thread.join()


def main(argv: list[str]) -> int:
    t0 = time.perf_counter()
    probe = StageRSS()
    config, out, result = argv[0], Path(argv[1]), Path(argv[2])
    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    probe.mark("import")
    from pipeline.config import load_config
    from pipeline.run import run

    cfg, base = load_config(config, overrides)

    class StageMarks(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            probe.mark(record.getMessage().removesuffix(" ..."))

    stage_log = logging.getLogger("consensa.run")
    stage_log.setLevel(logging.INFO)
    stage_log.addHandler(StageMarks())
    folder = run(cfg, base, out)
    probe.stop()
    manifest = json.loads((folder / "manifest.json").read_text())
    stages = [s for s in probe.order if s not in ("done",)]
    timings = {"startup": None, "import": None, **manifest["timings"]}
    rows = [{"stage": s, "wall_s": timings.get(s), "rss_start_mb": round(probe.start_rss[s], 1),
             "rss_peak_mb": round(probe.peaks.get(s, 0.0), 1)} for s in stages]
    data = {"stages": rows, "wall_s": round(time.perf_counter() - t0, 3),
            "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "counts": manifest["counts"], "outlier_share": manifest["outlier_share"],
            "fitted": manifest.get("fitted", {})}
    result.write_text(json.dumps(data, indent=2))
    print(json.dumps({k: v for k, v in data.items() if k != "stages"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
