"""The C heap of a long-lived process: freed memory given back to the system.

A Dask worker codes shard after shard for hours. glibc keeps the memory a shard
freed inside its heap, and a transformer frees a batch's activations (blocks of
up to tens of MB) after every batch; the next batch, of another shape, does not
always fit in the holes they leave, so the heap takes new pages while the old
free ones stay resident. Traced on one Dask worker (float32 all-MiniLM-L6-v2, 20
shards of 200 synthetic segments): the memory in use stayed at 187 MB after every
shard, but the heap's free part grew by about 12 MB a shard (88 MB after the first
shard, 337 MB after the last). On one worker thread with shards of 800 segments the
peak within a shard rose from 818 to 919-936 MB over 6 shards; giving the free pages
back after each batch (:func:`batch_done`) kept it at 730-752 MB, for about 2% more
CPU time (bench/README.md, *Pre-coding*).

The pipeline's worker plugin (:mod:`pipeline.shards`) turns the per-batch trim on
in every Dask worker; a stage that runs a model batch by batch calls
:func:`batch_done` after each batch. Elsewhere (one ``consensa run``, a short
process) nothing changes.
"""

from __future__ import annotations

import functools
import platform
import sys

_each_batch = False


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None (not Linux with glibc)."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def trim_heap() -> bool:
    """Give the free pages of every malloc arena back to the system (glibc's
    ``malloc_trim(0)``); True if some memory was released. False off glibc."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


def trim_after_each_batch(on: bool = True) -> None:
    """Make :func:`batch_done` trim the heap in this process (a Dask worker) or not."""
    global _each_batch
    _each_batch = bool(on)


def trims_after_each_batch() -> bool:
    """Whether :func:`batch_done` trims the heap in this process."""
    return _each_batch


def batch_done() -> bool:
    """Called after each batch of model work: the heap trimmed when this process
    asked for it (:func:`trim_after_each_batch`); True if it trimmed."""
    if not _each_batch:
        return False
    trim_heap()
    return True
