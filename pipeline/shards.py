"""Sharded work over many transcripts: in this process or on a Dask cluster, restartable.

Pre-coding an archive of thousands of interviews is too much for one process, and
a job that runs for hours must survive being killed. :func:`run_shards` splits the
input files into *shards* (sorted paths, a fixed number of files each), runs a
caller's function ``work(files) -> pandas.DataFrame`` on every shard, and writes
each shard's rows as one parquet file of a partitioned dataset::

    OUT/part=<shard id>.parquet     one per shard, written whole or not at all
    OUT/_extra=<shard id>           a file that belongs with the part (:class:`ShardOutput`),
                                    when the shard function returns one
    OUT/_done.jsonl                 the ledger: one line per finished shard

A file that holds many cases (a transcript table, a REFI-QDA project) can be given
as parts, ``PATH#cases=FIRST-LAST`` (:func:`file_part`): each part is a shard of its
own, so one file of a thousand cases spreads over the workers and a stopped job
loses one part of it, not the file.

A shard's id is a hash of its file list, so the same inputs give the same shards.
The ledger records, for each finished shard, the SHA-256 of every file it read;
a restarted job skips a shard whose files are unchanged and whose part file is
there, and recomputes one whose files changed (or whose ``fingerprint``, what
else its rows depend on, changed). Part files are written to a temporary name
and renamed, and a shard enters the ledger (an fsync'd append) only after its
part file (and its extra file, written before it) is in place, so a job killed
at any moment loses at most the shards in flight and never leaves a
half-written or duplicated one. ``OUT`` holds the result of exactly the planned
shards: parts (and extra files) of shards no longer planned (the input set
changed) are removed, so reading the folder never counts a segment twice.

Engines:

``"local"``
    this process, one shard after another; no Dask needed.
``"dask"``
    a ``dask.distributed`` cluster (:class:`ClusterConfig`): a ``LocalCluster`` on
    this machine by default, the scheduler at ``scheduler="tcp://HOST:PORT"``, or
    SLURM / PBS jobs through dask-jobqueue, from a config section such as::

        engine:
          kind: slurm
          cores: 8
          memory: 16GB
          walltime: "02:00:00"
          jobs: 4

    Workers write their part files themselves, so ``OUT`` must be on a file
    system every worker sees (the shared home or scratch of an HPC cluster).

A shard that fails is retried ``retries`` times (Dask's task retries; a worker
that dies is replaced and its shard rerun up to the same count). A
:class:`~pipeline.errors.ConsensaError` raised by ``work`` (a broken transcript)
is the input's fault and is not retried. Failures that persist are reported
together at the end, naming each shard's files (:class:`ShardError`), after every
other shard has been run and saved: a re-run then computes only the failed ones.

Heavy state a shard needs (the embedding model, a fitted classifier) is loaded
once per worker with :func:`worker_state`, not once per shard.

The same clusters embed the texts of a large ``consensa run`` (``scale.engine``;
:func:`pipeline.compose.embed_texts`): :func:`dask_client` starts or reaches the
cluster and :func:`worker_state` holds each worker's model, with chunks of texts
in place of shards and the embedding cache in place of the parquet dataset.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .errors import ConfigError, ConsensaError, InputError
from .fsutil import atomic_write_bytes, atomic_write_text, file_sha256
from .heap import trim_after_each_batch, trim_heap
from .progress import bars_wanted

log = logging.getLogger("consensa.shards")

LEDGER = "_done.jsonl"
LOCK = "_lock"
PART_PREFIX = "part="
PART_SUFFIX = ".parquet"
#: a shard's extra file: "_" first, so a parquet reader of the folder passes it by
EXTRA_PREFIX = "_extra="
ENGINES = ("local", "dask")
#: how many failed shards a :class:`ShardError` lists one by one
MAX_LISTED_FAILURES = 20


@dataclass(frozen=True)
class ShardOutput:
    """What a shard function returns when its rows come with a file that belongs to them.

    ``extra`` (any bytes; the caller chooses the format) is saved as
    ``OUT/_extra=<shard id>`` before the part file, and the ledger records its
    size, so a finished shard always has both and a restarted job reruns a shard
    whose extra file is gone. Read it back with :meth:`ShardReport.extra`.
    """

    rows: pd.DataFrame
    extra: bytes


Work = Callable[[list[str]], "pd.DataFrame | ShardOutput"]


# --- Shards --------------------------------------------------------------------------

@dataclass(frozen=True)
class Shard:
    """A fixed group of input files, processed and saved as one unit."""

    index: int                      # its place in the plan (the order of the files)
    id: str                         # a hash of its file list
    files: tuple[str, ...]          # absolute paths, sorted; or one part of a file
    hashes: tuple[str, ...]         # SHA-256 of each file when the job was planned

    @property
    def part_name(self) -> str:
        return f"{PART_PREFIX}{self.id}{PART_SUFFIX}"

    @property
    def extra_name(self) -> str:
        return f"{EXTRA_PREFIX}{self.id}"


#: One part of a file of many cases: the path, then ``#cases=FIRST-LAST``
_PART = re.compile(r"^(?P<path>.+)#cases=(?P<first>[1-9]\d*)-(?P<last>[1-9]\d*)$")


def file_part(path: str | Path, first: int, last: int) -> str:
    """The input that stands for cases ``first`` to ``last`` (counted from 1, in the order
    the work function reads them) of the file at ``path``: ``PATH#cases=FIRST-LAST``."""
    if not 1 <= first <= last:
        raise ValueError(f"a part's cases run from 1 up: got {first}-{last}")
    return f"{path}#cases={first}-{last}"


def split_part(unit: str) -> tuple[str, tuple[int, int] | None]:
    """``(path, (first, last))`` of a part made by :func:`file_part`; ``(path, None)`` for
    a whole file (also for a file whose own name ends like a part)."""
    m = _PART.match(unit)
    if m is None or Path(unit).is_file():
        return unit, None
    return m["path"], (int(m["first"]), int(m["last"]))


def shard_id(files: Sequence[str]) -> str:
    """The id of a shard of ``files``: the same files give the same id in every run."""
    return hashlib.sha256("\n".join(files).encode("utf-8")).hexdigest()[:16]


def plan_shards(files: Sequence[str | Path], shard_size: int) -> list[Shard]:
    """``files`` (deduplicated, sorted by absolute path) cut into shards of ``shard_size``;
    a part of a file (:func:`file_part`) is a shard of its own.

    Sorting makes the plan independent of the order the files were listed or
    found in, so a restarted job plans the same shards.
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ConfigError("the shard size must be a whole number of files, 1 or more; "
                          f"got {shard_size!r}", field="shard_size")
    units: dict[str, tuple[str, tuple[int, int]]] = {}
    for f in files:
        path, part = split_part(str(f))
        path = str(Path(path).expanduser().resolve())
        units[path if part is None else file_part(path, *part)] = (path, part or (0, 0))
    if not units:
        # an empty plan would also clear an earlier job's results from its folder
        raise InputError("there are no input files to run", hint="check the transcripts folder")
    hashes: dict[str, str] = {}
    for path, _ in units.values():
        if path not in hashes:
            if not Path(path).is_file():
                raise InputError("this input file does not exist (or is not a file)", path=path,
                                 hint="check the transcripts folder; list only files that exist")
            hashes[path] = file_sha256(path)
    groups: list[tuple[str, ...]] = []
    group: list[str] = []
    for unit, (_path, part) in sorted(units.items(), key=lambda kv: kv[1]):
        if part != (0, 0):
            if group:
                groups.append(tuple(group))
                group = []
            groups.append((unit,))
            continue
        group.append(unit)
        if len(group) == shard_size:
            groups.append(tuple(group))
            group = []
    if group:
        groups.append(tuple(group))
    return [Shard(index=index, id=shard_id(g), files=g,
                  hashes=tuple(hashes[units[u][0]] for u in g))
            for index, g in enumerate(groups)]


def unit_sha256(unit: str) -> str:
    """The SHA-256 of the file a shard's input (a file or a part of one) is read from."""
    return file_sha256(split_part(unit)[0])


# --- Cluster settings ------------------------------------------------------------------

_Section = ConfigDict(extra="forbid")
#: Dask's own byte sizes: "16GB", "4 GiB", "500MB"
_BYTES = re.compile(r"^\s*\d+(\.\d+)?\s*([kKmMgGtT]i?)?[bB]\s*$")
_WALLTIME = re.compile(r"^(\d+-)?\d{1,3}:\d{2}:\d{2}$")
_ADDRESS = re.compile(r"^(tcp|tls|ws|wss)://[^\s/:]+:\d{1,5}$")

Memory = Annotated[str, Field(pattern=_BYTES.pattern, description=(
    "memory as Dask writes it, e.g. '16GB' or '4GiB'"))]
Address = Annotated[str, Field(pattern=_ADDRESS.pattern, description=(
    "a Dask scheduler's address, tcp://HOST:PORT"))]


class LocalClusterConfig(BaseModel):
    """A ``dask.distributed.LocalCluster`` on this machine (``--engine dask`` alone)."""

    model_config = _Section
    kind: Literal["localcluster"] = "localcluster"
    n_workers: int | None = Field(None, ge=1, description=(
        "worker processes, 1 or more; null: one per CPU, at most one per shard"))
    threads_per_worker: int = Field(1, ge=1, description="threads in each worker, 1 or more")
    processes: bool = Field(True, description=(
        "workers in their own processes (true: parallel Python); false: threads of this process"))
    memory_limit: Memory | None = Field(None, description=(
        "memory per worker, e.g. '4GB'; null: the machine's memory shared between the workers"))


class SchedulerConfig(BaseModel):
    """A running Dask scheduler (``dask scheduler`` on a head node), by address."""

    model_config = _Section
    kind: Literal["scheduler"]
    address: Address
    timeout: float = Field(30.0, gt=0, description="seconds to wait for the scheduler to answer")


class JobQueueConfig(BaseModel):
    """Workers started as SLURM or PBS jobs by dask-jobqueue; the scheduler runs here."""

    model_config = _Section
    kind: Literal["slurm", "pbs"]
    cores: int = Field(ge=1, description="CPU cores per job, 1 or more")
    memory: Memory = Field(description="memory per job, e.g. '16GB'")
    walltime: str = Field(pattern=_WALLTIME.pattern, description=(
        "the time limit of each job, HH:MM:SS (SLURM also D-HH:MM:SS)"))
    jobs: int = Field(1, ge=1, description="how many jobs to submit, 1 or more")
    processes: int = Field(1, ge=1, description=(
        "worker processes per job; the cores are shared between them"))
    queue: str | None = Field(None, description=(
        "the partition (SLURM) or queue (PBS); null: the site's default"))
    account: str | None = Field(None, description=(
        "the account or project to charge; null: none given"))
    interface: str | None = Field(None, description=(
        "the network interface the workers talk on, e.g. 'ib0'; null: the default"))
    local_directory: str | None = Field(None, description="scratch folder on the compute nodes")
    log_directory: str | None = Field(None, description="folder for the jobs' output files")
    job_extra_directives: list[str] = Field(default_factory=list, description=(
        "extra #SBATCH / #PBS lines, e.g. ['--qos=normal']"))
    job_script_prologue: list[str] = Field(default_factory=list, description=(
        "shell lines run before the worker starts, e.g. ['module load python', "
        "'source ~/consensa/.venv/bin/activate']"))
    python: str | None = Field(None, description=(
        "the Python interpreter on the compute nodes; null: the one running Consensa"))


ClusterConfig = LocalClusterConfig | SchedulerConfig | JobQueueConfig
_KINDS: dict[str, type[BaseModel]] = {
    "localcluster": LocalClusterConfig, "scheduler": SchedulerConfig,
    "slurm": JobQueueConfig, "pbs": JobQueueConfig}


def cluster_config(value: Mapping[str, Any] | BaseModel | None, *,
                   path: str | Path | None = None, where: str = "engine") -> ClusterConfig:
    """The ``engine:`` section of a config, validated; errors name the key (``engine.cores``).

    No section means a ``LocalCluster`` with its defaults. ``kind`` picks the model
    first, so an error names the key the user wrote, not pydantic's union branch.
    """
    from .registry import config_error_from

    if value is None:
        return LocalClusterConfig()
    if isinstance(value, LocalClusterConfig | SchedulerConfig | JobQueueConfig):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"'{where}' must be a section such as {{kind: slurm, cores: 8, ...}}; "
                          f"got {value!r}", path=path, field=where)
    kind = value.get("kind", "localcluster")
    model = _KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ConfigError(f"'{where}.kind' must be one of {', '.join(_KINDS)}; got {kind!r}",
                          path=path, field=f"{where}.kind")
    try:
        return model.model_validate(dict(value))
    except pydantic.ValidationError as exc:
        raise config_error_from(exc, where=where, model=model,
                                path=str(path) if path else None) from None


#: Set in a SLURM or PBS job before its worker starts, as a LocalCluster's workers get it
#: from this process's Dask config. A Dask worker samples the stack of the task it runs
#: every 10 ms for the dashboard's profile, which Consensa's clusters do not serve, and
#: keeps a profile a second for its last 1,000 seconds. Coding the same 20,000
#: segments on one LocalCluster worker, a worker with the profiler held 85 MB more
#: between shards from the first shard on, and about 1 MB more with each shard. Its
#: effect on the peak and the speed is within the spread of repeated runs
#: (bench/README.md, *Pre-coding*).
WORKER_PROFILE_OFF = "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False"


def _jobqueue_cluster(cfg: JobQueueConfig):
    """The dask-jobqueue cluster object for ``cfg`` (a scheduler here; no job submitted yet)."""
    try:
        from dask_jobqueue import PBSCluster, SLURMCluster
    except ImportError:  # pragma: no cover - a dependency of Consensa
        raise ConfigError("a SLURM or PBS engine needs dask-jobqueue, which is not installed",
                          field="engine.kind", hint="pip install dask-jobqueue") from None
    cls = SLURMCluster if cfg.kind == "slurm" else PBSCluster
    kwargs: dict[str, Any] = dict(
        cores=cfg.cores, memory=cfg.memory, walltime=cfg.walltime, processes=cfg.processes,
        queue=cfg.queue, account=cfg.account, interface=cfg.interface,
        local_directory=cfg.local_directory, log_directory=cfg.log_directory,
        job_extra_directives=list(cfg.job_extra_directives),
        job_script_prologue=[WORKER_PROFILE_OFF, *cfg.job_script_prologue],
        python=cfg.python or sys.executable,
        scheduler_options={"dashboard_address": None},
    )
    return cls(**{k: v for k, v in kwargs.items() if v is not None})


def job_script(cfg: Mapping[str, Any] | JobQueueConfig) -> str:
    """The batch script dask-jobqueue would submit for each job of ``cfg``, without submitting.

    For checking a cluster section before spending an allocation on it.
    """
    settings = cluster_config(cfg)
    if not isinstance(settings, JobQueueConfig):
        raise ConfigError("only a slurm or pbs engine has a job script; "
                          f"this one is {settings.kind!r}", field="engine.kind")
    cluster = _jobqueue_cluster(settings)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


# --- Heavy state, once per worker ---------------------------------------------------------

_STATE_LOCK = threading.Lock()
_PROCESS_STATE: dict[Any, Any] = {}
_WORKER_STATE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def worker_state(key: Any, load: Callable[[], Any]) -> Any:
    """``load()``'s result, computed once per Dask worker (once per process outside Dask).

    A shard function calls this for what is costly to build and the same for every
    shard: ``worker_state(("model", path), lambda: SentenceTransformer(path))``.
    Keyed by worker, not only by process, so threads-only workers each hold their
    own copy, as process workers do. ``key`` must say everything the state depends
    on (a model's path, a classifier file's hash).
    """
    try:
        from distributed import get_worker

        holder = _WORKER_STATE.setdefault(get_worker(), {})
    except (ImportError, ValueError):           # not inside a Dask task
        holder = _PROCESS_STATE
    with _STATE_LOCK:
        if key not in holder:
            holder[key] = load()
        return holder[key]


#: glibc's largest dynamic mmap threshold on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Environment variables that, when set, make glibc keep a fixed mmap threshold.
_FIXED_MALLOC = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_",
                 "MALLOC_MMAP_MAX_")


def restore_mmap_threshold(environ: Mapping[str, str] | None = None) -> bool:
    """Let a Dask worker's large allocations come from the heap again; True if changed.

    Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536`` so that
    freed memory goes back to the system. Setting any such variable also turns off
    glibc's dynamic mmap threshold: from then on every allocation over 128 KiB is a
    fresh ``mmap`` and every free an ``munmap``, and a transformer's activations are
    allocated and freed many times a batch. The new pages fault in one by one; a
    worker embedded at about half the speed of the same code in a plain process
    (bench/README.md, *Pre-coding*). This sets the mmap threshold to the value glibc's
    own dynamic threshold can reach (32 MiB) and leaves Dask's trim threshold alone,
    so freed memory at the top of the heap is still returned.

    Acts only on glibc, and only when the environment fixes the allocator (Dask's
    variable, or another of ``_FIXED_MALLOC``) without choosing an mmap threshold:
    a threshold someone set is kept.
    """
    env = os.environ if environ is None else environ
    if not any(name in env for name in _FIXED_MALLOC) or "MALLOC_MMAP_THRESHOLD_" in env:
        return False
    import ctypes
    import platform

    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_mmap_threshold = -3                       # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD))


def _worker_allocator_plugin():
    """A Dask worker plugin for the heap of every worker, those that join later included:
    :func:`restore_mmap_threshold` and the heap trimmed after each batch of model work
    (:func:`pipeline.heap.trim_after_each_batch`) from when the worker starts, and
    :func:`~pipeline.heap.trim_heap` after each task it ran.

    Keeping large blocks on the heap leaves freed blocks inside it: at the end of a
    shard a worker holds about 1.1 GB, of which some 0.3 GB is free heap that it keeps
    until the next shard. One trim per task (some 30 ms after a shard of 800 segments,
    about 0.5% of its time) gives that back, so a worker waiting for work, or sharing a
    node with other jobs, holds about 0.76 GB. The trim after a task does not lower the
    peak within a shard, which rose over a worker's first ten or so shards as the free
    part of the heap grew (about 12 MB a shard); trimming after each batch as well keeps
    that peak where the first shard left it (:mod:`pipeline.heap`; bench/README.md,
    *Pre-coding*).
    """
    from distributed import WorkerPlugin

    class Heap(WorkerPlugin):
        name = "consensa-heap"

        def setup(self, worker) -> None:
            restore_mmap_threshold()
            trim_after_each_batch(True)

        def transition(self, key, start, finish, **kwargs) -> None:
            if start == "executing":
                trim_heap()

    return Heap()


# --- The ledger ---------------------------------------------------------------------------

def read_ledger(out_dir: str | Path) -> dict[str, dict]:
    """The finished shards recorded in ``out_dir``'s ledger: shard id -> its last entry.

    A last line cut short (the job was killed during the append) is ignored: that
    shard is simply not finished. A damaged line elsewhere is an error naming it.
    """
    path = Path(out_dir) / LEDGER
    if not path.exists():
        return {}
    lines = path.read_text(encoding="utf-8").split("\n")
    entries: dict[str, dict] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or not isinstance(entry.get("shard"), str):
                raise ValueError("not a shard entry")
        except ValueError:
            if number == len(lines):              # the final line, without its newline
                log.warning("%s: line %d was cut short (the job was stopped while writing it); "
                            "that shard will be run again", path, number)
                continue
            raise InputError("this line of the ledger of finished shards is not a shard entry",
                             path=path, line=number,
                             hint="delete the ledger to recompute every shard") from None
        entries[entry["shard"]] = entry
    return entries


def _done(shard: Shard, entry: dict | None, out_dir: Path, fingerprint: str | None = None) -> bool:
    """Whether ``entry`` shows ``shard`` finished with today's files and fingerprint, and
    its part file (and extra file, if it has one) is whole."""
    if entry is None or entry.get("fingerprint") != fingerprint:
        return False
    recorded = [(f.get("path"), f.get("sha256")) for f in entry.get("files", [])]
    if recorded != list(zip(shard.files, shard.hashes, strict=True)):
        return False
    if "extra_bytes" in entry:
        extra = out_dir / shard.extra_name
        if not extra.is_file() or extra.stat().st_size != entry["extra_bytes"]:
            return False
    part = out_dir / shard.part_name
    if not part.is_file():
        return False
    try:
        import pyarrow.parquet as pq

        return pq.read_metadata(part).num_rows == entry.get("rows")
    except Exception:                             # unreadable: recompute it
        return False


def _append(fh, entry: dict) -> None:
    fh.write(json.dumps(entry, sort_keys=True) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a crash of the machine, not only of the job)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    """Refuse a second job writing into the same folder; the lock goes when this process does."""
    try:
        import fcntl
    except ImportError:                           # pragma: no cover - Windows: no lock
        yield
        return
    with open(out_dir / LOCK, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError("another job is writing into this folder now", path=out_dir,
                              hint="wait for it to finish, or choose another output folder",
                              ) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --- One shard (runs on a worker) ------------------------------------------------------------

def run_one_shard(shard: Shard, out_dir: str, work: Work) -> dict:
    """Run ``work`` on ``shard``'s files and write its part file; the ledger entry to record.

    Hashes the files as read here (they may have changed since planning), so the
    ledger says what this shard's rows were made from. A ConsensaError from
    ``work`` comes back as ``{"error": ...}`` rather than raised: the input is at
    fault, and a retry would fail the same way. An extra file (:class:`ShardOutput`)
    is written before the part file, so a part in place always has its extra file.
    """
    started = time.perf_counter()
    hashes = [unit_sha256(p) for p in shard.files]
    try:
        frame = work(list(shard.files))
    except ConsensaError as exc:
        return {"shard": shard.id, "error": str(exc), "input_fault": True}
    extra = None
    if isinstance(frame, ShardOutput):
        frame, extra = frame.rows, frame.extra
    if not isinstance(frame, pd.DataFrame) or not isinstance(extra, bytes | None):
        raise TypeError(f"the shard function returned {type(frame).__name__}, "
                        "not a pandas DataFrame (or a ShardOutput of one and bytes)")
    entry: dict[str, Any] = {}
    if extra is not None:
        atomic_write_bytes(Path(out_dir) / shard.extra_name, extra)
        entry["extra_bytes"] = len(extra)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(Path(out_dir) / shard.part_name, buffer.getvalue())
    _fsync_dir(Path(out_dir))
    return {"shard": shard.id, "index": shard.index, "part": shard.part_name, "rows": len(frame),
            **entry,
            "files": [{"path": p, "sha256": h} for p, h in zip(shard.files, hashes, strict=True)],
            "seconds": round(time.perf_counter() - started, 3),
            "finished": datetime.now(UTC).isoformat(timespec="seconds")}


# --- Engines: each yields (shard, entry-or-error) as shards finish ----------------------------

def describe_failure(exc: BaseException) -> str:
    """An exception in one line, for a researcher: its kind and message, no traceback."""
    name = type(exc).__name__
    text = " ".join(str(exc).split())
    if name == "KilledWorker":
        return "the worker running it died each time (out of memory, or killed)"
    return f"{name}: {text}"[:400] if text else name


def _run_local(shards: list[Shard], out_dir: str, work: Work,
               retries: int) -> Iterator[tuple[Shard, dict]]:
    for shard in shards:
        for attempt in range(retries + 1):
            try:
                outcome = run_one_shard(shard, out_dir, work)
                break
            except Exception as exc:              # retried, then reported with the shard's files
                log.warning("shard %d failed (attempt %d of %d): %s", shard.index, attempt + 1,
                            retries + 1, describe_failure(exc))
                outcome = {"shard": shard.id, "error": describe_failure(exc)}
        yield shard, outcome


def cluster_settings(retries: int, *, worker_profile: bool = False) -> dict[str, Any]:
    """The Dask config of a cluster Consensa starts (LocalCluster, SLURM, PBS), set
    while it starts; none of it reaches a scheduler given by its address.

    A worker that dies takes its tasks with it; the scheduler reruns them on another
    worker ``retries`` times before giving up (KilledWorker). It blames every task
    the worker held, so a worker holds only the tasks it is running (saturation
    1.0): a shard that kills its worker cannot use up the retries of a shard queued
    behind it. The workers do not run Dask's profiler (:data:`WORKER_PROFILE_OFF`);
    ``worker_profile=True`` leaves it on, for the benchmark that measures its cost.
    """
    return {"distributed.scheduler.allowed-failures": retries,
            "distributed.scheduler.worker-saturation": 1.0,
            "distributed.worker.profile.enabled": worker_profile}


@contextlib.contextmanager
def dask_client(settings: ClusterConfig, retries: int, n_tasks: int, *,
                where: str | None = None):
    """A ``distributed.Client`` for ``settings``, and its cluster, both closed after.

    ``n_tasks`` caps the workers of a LocalCluster left to choose their number (no
    more workers than tasks). ``where`` is the config key the settings came from
    (``scale.engine``), named by the errors; None: the command line's ``--scheduler``
    and ``engine``, as ``consensa precode`` takes them.

    Dask's own log is silenced meanwhile: what failed is reported once, at the end,
    in the job's words (which shard, which files), not as the scheduler's notes
    about keys and workers.
    """
    import dask
    from distributed import Client, LocalCluster

    dask_log = logging.getLogger("distributed")
    level = dask_log.level
    dask_log.setLevel(logging.CRITICAL)
    cluster = client = None
    try:
        with dask.config.set(cluster_settings(retries)):
            if isinstance(settings, SchedulerConfig):
                try:
                    client = Client(settings.address, timeout=settings.timeout)
                except (OSError, TimeoutError) as exc:
                    raise ConfigError(f"cannot reach the Dask scheduler at {settings.address} "
                                      f"({describe_failure(exc)})",
                                      field=f"{where}.address" if where else "scheduler",
                                      hint="start it with `dask scheduler` and check the address "
                                           "and port it prints") from None
            elif isinstance(settings, JobQueueConfig):
                cluster = _jobqueue_cluster(settings)
                cluster.scale(jobs=settings.jobs)
                client = Client(cluster)
            else:
                n_workers = settings.n_workers or max(1, min(os.cpu_count() or 1, n_tasks))
                try:
                    cluster = LocalCluster(n_workers=n_workers,
                                           threads_per_worker=settings.threads_per_worker,
                                           processes=settings.processes,
                                           memory_limit=settings.memory_limit or "auto",
                                           dashboard_address=None, silence_logs=logging.CRITICAL)
                except Exception as exc:             # e.g. too little memory for the workers
                    raise ConfigError(f"could not start a Dask LocalCluster of {n_workers} "
                                      f"worker(s): {describe_failure(exc)}",
                                      field=where or "engine",
                                      hint=f"set {where or 'engine'}.n_workers or "
                                           f"{where or 'engine'}.memory_limit lower, or run "
                                           + ("with scale.engine: local" if where
                                              else "with --engine local")) from None
                client = Client(cluster)
        client.register_plugin(_worker_allocator_plugin())
        yield client
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        dask_log.setLevel(level)


def _run_dask(shards: list[Shard], out_dir: str, work: Work, retries: int,
              client) -> Iterator[tuple[Shard, dict]]:
    from distributed import as_completed

    # ``work`` travels with each task (it should carry paths, not models: heavy state
    # is loaded on the worker, see worker_state). Scattering it once instead would
    # lose it with the worker holding it, and every shard after with it.
    futures = {client.submit(run_one_shard, shard, out_dir, work, retries=retries,
                             pure=False, key=f"consensa-shard-{shard.index}-{shard.id}"): shard
               for shard in shards}
    for future in as_completed(futures):
        shard = futures[future]
        if future.status == "error":
            outcome = {"shard": shard.id, "error": describe_failure(future.exception())}
        else:
            outcome = future.result()
        future.release()
        yield shard, outcome


# --- The job -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShardFailure:
    shard: str
    index: int
    files: tuple[str, ...]
    error: str
    #: the input was at fault (a ConsensaError from ``work``): run once, not retried
    input_fault: bool = False


@dataclass
class ShardReport:
    """What a sharded job did: the dataset's parts, and which shards ran, were reused or failed."""

    out_dir: Path
    engine: str
    shards: list[Shard]
    computed: list[str] = field(default_factory=list)     # shard ids run by this job
    skipped: list[str] = field(default_factory=list)      # shard ids finished by an earlier job
    failed: list[ShardFailure] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)      # part files of shards no longer planned
    segments: int = 0                                     # rows in the dataset's finished parts
    seconds: float = 0.0

    @property
    def parts(self) -> list[Path]:
        """The finished shards' part files, in the order of the input files."""
        failed = {f.shard for f in self.failed}
        return [self.out_dir / s.part_name for s in self.shards if s.id not in failed]

    def read(self) -> pd.DataFrame:
        """Every finished shard's rows, in the order of the input files."""
        return read_parts(self.parts)

    def extra(self, shard: Shard) -> bytes | None:
        """The extra file a finished shard's function returned (:class:`ShardOutput`), or None."""
        path = self.out_dir / shard.extra_name
        return path.read_bytes() if path.is_file() else None

    def as_dict(self) -> dict:
        """For a manifest: counts, the engine, and every failure with its files."""
        return {"engine": self.engine, "shards": len(self.shards), "computed": len(self.computed),
                "skipped": len(self.skipped), "removed": len(self.removed),
                "segments": self.segments, "seconds": round(self.seconds, 3),
                "failed": [{"shard": f.shard, "files": list(f.files), "error": f.error,
                            "retried": not f.input_fault} for f in self.failed]}


class ShardError(ConsensaError):
    """Some shards failed even after their retries; the others are saved (``report``)."""

    def __init__(self, done: ShardReport, retries: int) -> None:
        self.report = done
        n, total = len(done.failed), len(done.shards)
        n_input = sum(f.input_fault for f in done.failed)
        if n_input == n:        # the input's fault is not retried: a retry would fail the same way
            how = "on their input (not retried: a retry would fail the same way)"
        elif n_input == 0:
            how = f"after {retries + 1} attempt(s)"
        else:
            how = (f"({n - n_input} after {retries + 1} attempt(s), {n_input} on their "
                   "input, not retried)")
        lines = [f"{n} of {total} shard(s) failed {how}; the other "
                 f"{total - n} are saved in {done.out_dir}:"]
        for failure in done.failed[:MAX_LISTED_FAILURES]:
            lines.append(f"  shard {failure.index} ({', '.join(failure.files)}): {failure.error}")
        if n > MAX_LISTED_FAILURES:
            lines.append(f"  ... and {n - MAX_LISTED_FAILURES} more, listed in the report")
        super().__init__("\n".join(lines),
                         hint="fix or remove the files named above and run the same command "
                              "again: finished shards are kept, only the failed ones are run")


def read_parts(parts: Sequence[str | Path]) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in parts]
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def read_dataset(out_dir: str | Path) -> pd.DataFrame:
    """The rows of every finished shard in ``out_dir``, in the order of the input files."""
    entries = sorted(read_ledger(out_dir).values(), key=lambda e: e.get("index", 0))
    return read_parts([Path(out_dir) / e["part"] for e in entries])


def _prepare(out_dir: Path, shards: list[Shard],
             fingerprint: str | None = None) -> tuple[list[Shard], list[Shard], list[str]]:
    """Split the plan into shards already done and shards to run; tidy ``out_dir``.

    Rewrites the ledger with only the planned, finished shards (dropping a line cut
    short and shards of an older plan), removes part and extra files no shard of
    the plan owns and temporary files of writes that were interrupted.
    """
    entries = read_ledger(out_dir)
    done = [s for s in shards if _done(s, entries.get(s.id), out_dir, fingerprint)]
    done_ids = {s.id for s in done}
    todo = [s for s in shards if s.id not in done_ids]
    atomic_write_text(out_dir / LEDGER, "".join(json.dumps(entries[s.id], sort_keys=True) + "\n"
                                                for s in done))
    planned = {s.part_name for s in shards}
    removed = []
    for part in sorted(out_dir.glob(f"{PART_PREFIX}*{PART_SUFFIX}")):
        if part.name not in planned:
            part.unlink()
            removed.append(part.name)
    planned_extras = {s.extra_name for s in shards}
    for extra in out_dir.glob(f"{EXTRA_PREFIX}*"):
        if extra.name not in planned_extras:
            extra.unlink()
    for prefix in (PART_PREFIX, EXTRA_PREFIX):
        for tmp in out_dir.glob(f".{prefix}*.tmp"):
            tmp.unlink(missing_ok=True)
    if removed:
        log.info("removed %d part file(s) of shards that are no longer planned (the input "
                 "files or the shard size changed)", len(removed))
    return done, todo, removed


def _bar(progress_wanted: bool, total: int, initial: int):
    if not (progress_wanted and bars_wanted()):
        return None
    from tqdm import tqdm

    # redrawn at every finished shard (mininterval=0): shards take seconds, and the
    # count of segments beside the bar should never lag behind a finished shard
    return tqdm(total=total, initial=initial, desc="shards", unit="shard", leave=False,
                file=sys.stderr, dynamic_ncols=True, mininterval=0)


def run_shards(files: Sequence[str | Path], out_dir: str | Path, work: Work, *, shard_size: int,
               engine: Literal["local", "dask"] = "local", scheduler: str | None = None,
               cluster_config: Mapping[str, Any] | ClusterConfig | None = None, retries: int = 2,
               progress: bool = True, fingerprint: str | None = None) -> ShardReport:
    """Run ``work`` on every shard of ``files`` not finished before; write the parquet dataset.

    ``work(files) -> DataFrame`` is called with a shard's absolute paths and must be
    picklable for the Dask engine (a module-level function, or a ``functools.partial``
    of one). Its rows are saved as ``out_dir/part=<shard id>.parquet`` (index not
    kept); it may return a :class:`ShardOutput` to keep a file beside them.
    ``fingerprint`` says what else the rows depend on (a hash of the model, the
    config): it is recorded with each finished shard, and a shard finished with
    another fingerprint is run again. ``engine="dask"`` runs on ``scheduler`` (``tcp://HOST:PORT``) when given,
    else on the cluster ``cluster_config`` describes (see :class:`ClusterConfig`;
    default a ``LocalCluster``). Returns the :class:`ShardReport`; raises
    :class:`ShardError` (after all other shards are saved) if some shards failed
    ``retries + 1`` times.
    """
    started = time.perf_counter()
    if engine not in ENGINES:
        raise ConfigError(f"the engine must be one of {', '.join(ENGINES)}; got {engine!r}",
                          field="engine")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries must be a whole number, 0 or more; got {retries!r}",
                          field="retries")
    if engine == "local" and scheduler is not None:
        raise ConfigError("a scheduler address needs the dask engine", field="scheduler",
                          hint="add --engine dask")
    settings = _settings(cluster_config)
    if scheduler is not None:
        if not isinstance(scheduler, str) or not _ADDRESS.match(scheduler):
            raise ConfigError(f"a scheduler address looks like tcp://HOST:PORT; got {scheduler!r}",
                              field="scheduler", hint="copy the address `dask scheduler` prints")
        timeout = settings.timeout if isinstance(settings, SchedulerConfig) else 30.0
        settings = SchedulerConfig(kind="scheduler", address=scheduler, timeout=timeout)
    shards = plan_shards(files, shard_size)
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        done, todo, removed = _prepare(out, shards, fingerprint)
        entries = read_ledger(out)
        described = "local" if engine == "local" else f"dask ({settings.kind})"
        report = ShardReport(out_dir=out, engine=described, shards=shards,
                             skipped=[s.id for s in done], removed=removed,
                             segments=sum(int(entries[s.id]["rows"]) for s in done))
        log.info("%d shard(s) of %d file(s): %d finished earlier, %d to run (%s)", len(shards),
                 sum(len(s.files) for s in shards), len(done), len(todo), report.engine)
        if todo:
            bar = _bar(progress, len(shards), len(done))
            with (open(out / LEDGER, "a", encoding="utf-8") as ledger,
                  contextlib.ExitStack() as stack):
                if bar is not None:
                    stack.callback(bar.close)
                if engine == "local":
                    outcomes = _run_local(todo, str(out), work, retries)
                else:
                    client = stack.enter_context(dask_client(settings, retries, len(todo)))
                    outcomes = _run_dask(todo, str(out), work, retries, client)
                for shard, outcome in outcomes:
                    if "error" in outcome:
                        report.failed.append(ShardFailure(
                            shard.id, shard.index, shard.files, outcome["error"],
                            input_fault=bool(outcome.get("input_fault"))))
                    else:
                        if fingerprint is not None:
                            outcome["fingerprint"] = fingerprint
                        _append(ledger, outcome)
                        report.computed.append(shard.id)
                        report.segments += outcome["rows"]
                    if bar is not None:
                        bar.set_postfix(segments=f"{report.segments:,}", failed=len(report.failed),
                                        refresh=False)
                        bar.update(1)
    report.failed.sort(key=lambda f: f.index)
    report.seconds = time.perf_counter() - started
    log.info("%d shard(s) run, %d reused, %d failed; %d segment(s) in %s (%.1f s)",
             len(report.computed), len(report.skipped), len(report.failed), report.segments, out,
             report.seconds)
    if report.failed:
        raise ShardError(report, retries)
    return report


def _settings(value, where: str = "engine") -> ClusterConfig:
    return cluster_config(value, where=where)
