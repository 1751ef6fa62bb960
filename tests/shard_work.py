"""Shard functions for tests/test_shards.py, importable by Dask workers and subprocesses.

A Dask worker process unpickles a shard function by importing its module, so the
functions live here rather than in the test module. They read small transcripts
written by the tests ("P: text" lines) and turn each participant line into a row,
as a pre-coding shard function turns a shard's files into coded segments.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import pandas as pd

from pipeline.errors import InputError
from pipeline.shards import ShardOutput, worker_state

COLUMNS = ["file", "line", "text", "n_words", "score"]


def write_transcripts(folder: Path, n_files: int, lines_per_file: int = 4) -> list[Path]:
    """``n_files`` small interviews with a different number of answers each."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_files):
        lines = []
        for j in range(lines_per_file + i % 3):
            lines.append(f"I: Question {j} for case {i}?")
            lines.append(f"P: Answer {j} of case {i}, about supervision and tears number {i * j}.")
        path = folder / f"case{i:03d}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def segment_files(files: list[str], delay: float = 0.0) -> pd.DataFrame:
    """One row per participant line of ``files``, with a score that depends only on the text."""
    rows = []
    for path in files:
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
            if not line.startswith("P:"):
                continue
            if line.startswith("P: BROKEN"):
                raise InputError("this line cannot be read as a turn", path=path, line=number)
            text = line[2:].strip()
            score = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
            rows.append((Path(path).name, number, text, len(text.split()), score))
    time.sleep(delay)
    return pd.DataFrame(rows, columns=COLUMNS)


def with_extra(files: list[str]) -> ShardOutput:
    """Like :func:`segment_files`, with a file kept beside the part: the shard's file names."""
    return ShardOutput(segment_files(files), "\n".join(Path(f).name for f in files).encode())


def crash_on(files: list[str], marker: str) -> pd.DataFrame:
    """Like :func:`segment_files`, but a shard holding a file named ``marker`` always fails."""
    if any(Path(f).name == marker for f in files):
        raise RuntimeError("the embedding model ran out of memory")
    return segment_files(files)


def flaky(files: list[str], attempts_dir: str) -> pd.DataFrame:
    """Fails on each shard's first attempt (counted in files, so across processes), then works."""
    key = hashlib.sha256("|".join(files).encode()).hexdigest()[:12]
    marker = Path(attempts_dir) / key
    if not marker.exists():
        marker.write_text("1")
        raise ConnectionError("lost the connection to the scheduler")
    return segment_files(files)


def dies(files: list[str], always: str, once: str, attempts_dir: str) -> pd.DataFrame:
    """Kills its worker: always on a shard holding ``always``, the first time on ``once``."""
    names = {Path(f).name for f in files}
    marker = Path(attempts_dir) / once
    if always in names or (once in names and not marker.exists()):
        if once in names:
            marker.write_text("1")
        os._exit(1)                                  # as the out-of-memory killer would
    return segment_files(files)


def with_model(files: list[str], model_path: str, loads_log: str) -> pd.DataFrame:
    """A shard function that needs a costly model: loaded through worker_state, logged per load."""

    def load():
        with open(loads_log, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()}\n")
        return {"path": model_path, "weight": 2.0}

    model = worker_state(("model", model_path), load)
    frame = segment_files(files)
    frame["score"] = frame["score"] * model["weight"]
    return frame


def served_by_mmap(size: int = 1 << 20) -> bool | None:
    """Whether glibc serves a ``size``-byte allocation with its own mmap (None: not glibc,
    or a glibc too old for ``mallinfo2``). Counts glibc's mmapped blocks around one
    malloc, so it says what the allocator does, not what it was told."""
    import ctypes
    import platform

    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    before = libc.mallinfo2().hblks
    block = libc.malloc(size)
    try:
        return libc.mallinfo2().hblks > before
    finally:
        libc.free(block)


def heap_probe(files: list[str]) -> pd.DataFrame:
    """One row per shard: the worker's pid, Dask's allocator setting, whether a
    1 MiB allocation is an mmap of its own there, whether the worker samples
    its tasks for Dask's profiler, and whether it trims its heap after each batch."""
    from distributed import get_worker

    from pipeline.heap import trims_after_each_batch

    return pd.DataFrame({"file": [Path(files[0]).name], "pid": [os.getpid()],
                         "trim": [os.environ.get("MALLOC_TRIM_THRESHOLD_", "")],
                         "mmapped": [served_by_mmap()],
                         "profiled": ["profile" in get_worker().periodic_callbacks],
                         "batch_trim": [trims_after_each_batch()]})


def main(argv: list[str]) -> None:
    """``python -c '...main([...])'``: the job the kill test starts, then kills."""
    import functools
    import logging

    from pipeline.shards import run_shards

    logging.basicConfig(level=logging.WARNING)
    folder, out, engine, delay = argv
    files = sorted(Path(folder).glob("*.txt"))
    run_shards(files, out, functools.partial(segment_files, delay=float(delay)), shard_size=1,
               engine=engine, cluster_config={"kind": "localcluster", "n_workers": 2},
               progress=False)


if __name__ == "__main__":
    main(sys.argv[1:])
