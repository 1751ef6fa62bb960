"""Sharded runs (pipeline.shards): deterministic shards, a restartable parquet dataset,
retries, failures named by file, per-worker state, and the Dask engines.

The shard functions are in tests/shard_work.py, where Dask's worker processes can
import them.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline import shards
from pipeline.errors import ConfigError, ConsensaError, InputError
from pipeline.shards import (
    LEDGER,
    WORKER_PROFILE_OFF,
    ShardError,
    cluster_config,
    job_script,
    plan_shards,
    read_dataset,
    read_ledger,
    run_shards,
)
from tests import shard_work
from tests.shard_work import (
    crash_on,
    dies,
    flaky,
    heap_probe,
    segment_files,
    with_extra,
    with_model,
    write_transcripts,
)

ROOT = Path(__file__).resolve().parents[1]
#: a LocalCluster whose workers are threads of the test process: starts in ~0.1 s
THREADS = {"kind": "localcluster", "n_workers": 2, "processes": False}


def expected_rows(files) -> pd.DataFrame:
    """What an uninterrupted run must hold: every file's rows, in sorted-path order."""
    return segment_files([str(p) for p in sorted(Path(f).resolve() for f in files)])


def ledger_ids(out: Path) -> list[str]:
    return [json.loads(line)["shard"] for line in (out / LEDGER).read_text().splitlines()]


def part_ids(out: Path) -> set[str]:
    return {p.name[len("part="):-len(".parquet")] for p in out.glob("part=*.parquet")}


# --- Planning ----------------------------------------------------------------------------------

def test_plan_is_sorted_fixed_size_and_independent_of_listing_order(tmp_path):
    files = write_transcripts(tmp_path / "in", 7)
    plan = plan_shards(files, 3)
    again = plan_shards(list(reversed(files)) + files[:2], 3)   # other order, duplicates
    assert [s.id for s in plan] == [s.id for s in again]
    assert [len(s.files) for s in plan] == [3, 3, 1]
    assert [f for s in plan for f in s.files] == sorted(str(f.resolve()) for f in files)
    assert plan[0].id == shards.shard_id(plan[0].files)
    assert len({s.id for s in plan}) == 3
    assert plan[1].hashes[0] == shards.file_sha256(plan[1].files[0])


def test_parts_of_a_file_are_shards_of_their_own_in_the_order_of_their_cases(tmp_path):
    files = write_transcripts(tmp_path / "in", 3)
    table = files[1]
    parts = [shards.file_part(table, a, a + 1) for a in (11, 1, 3, 5, 7, 9)]
    odd = tmp_path / "in" / "named#cases=1-2"        # a file whose own name looks like a part
    odd.write_text("x", encoding="utf-8")
    plan = plan_shards([files[0], *parts, files[2], odd], 2)
    assert [[f.rpartition("/")[2] for f in s.files] for s in plan] == [
        [files[0].name], *[[f"{table.name}#cases={a}-{a + 1}"] for a in (1, 3, 5, 7, 9, 11)],
        [files[2].name, odd.name]]
    assert {h for s in plan[1:7] for h in s.hashes} == {shards.file_sha256(table)}
    assert shards.split_part(plan[3].files[0]) == (str(table.resolve()), (5, 6))
    assert shards.split_part(str(odd)) == (str(odd), None)
    with pytest.raises(InputError, match="does not exist"):
        plan_shards([shards.file_part(tmp_path / "gone.csv", 1, 2)], 2)


def test_plan_refuses_a_bad_shard_size_and_a_missing_file(tmp_path):
    files = write_transcripts(tmp_path / "in", 2)
    with pytest.raises(ConfigError, match="shard size") as err:
        plan_shards(files, 0)
    assert err.value.field == "shard_size"
    with pytest.raises(InputError, match="does not exist") as err:
        plan_shards([*files, tmp_path / "in" / "gone.txt"], 2)
    assert err.value.path.endswith("gone.txt")
    with pytest.raises(InputError, match="no input files"):
        plan_shards([], 2)


# --- The local engine --------------------------------------------------------------------------

def test_local_run_writes_one_part_per_shard_and_a_ledger(tmp_path):
    files = write_transcripts(tmp_path / "in", 8)
    out = tmp_path / "out"
    report = run_shards(files, out, segment_files, shard_size=3)
    plan = plan_shards(files, 3)
    assert report.computed == [s.id for s in plan] and report.skipped == []
    assert part_ids(out) == {s.id for s in plan}
    assert sorted(ledger_ids(out)) == sorted(s.id for s in plan)
    result = report.read()
    pd.testing.assert_frame_equal(result, expected_rows(files))
    assert report.segments == len(result) > 0
    # the folder is a parquet dataset as it stands: the ledger and lock are not parts
    assert len(pd.read_parquet(out)) == len(result)
    pd.testing.assert_frame_equal(read_dataset(out), result)


def test_a_rerun_skips_finished_shards_without_calling_the_work(tmp_path):
    files = write_transcripts(tmp_path / "in", 5)
    out = tmp_path / "out"
    first = run_shards(files, out, segment_files, shard_size=2)
    # every file is "crashing" now: a shard that ran would fail
    again = run_shards(files, out, functools.partial(crash_on, marker=files[0].name), shard_size=2)
    assert again.computed == [] and sorted(again.skipped) == sorted(first.computed)
    assert again.segments == first.segments
    pd.testing.assert_frame_equal(again.read(), first.read())


def test_a_changed_file_recomputes_its_shard_only(tmp_path):
    files = write_transcripts(tmp_path / "in", 6)
    out = tmp_path / "out"
    run_shards(files, out, segment_files, shard_size=2)
    files[3].write_text("I: New question?\nP: A new answer entirely.\n", encoding="utf-8")
    report = run_shards(files, out, segment_files, shard_size=2)
    changed = next(s for s in plan_shards(files, 2) if str(files[3].resolve()) in s.files)
    assert report.computed == [changed.id]
    assert len(report.skipped) == 2
    assert sorted(ledger_ids(out)) == sorted(s.id for s in plan_shards(files, 2))   # once each
    pd.testing.assert_frame_equal(report.read(), expected_rows(files))
    assert "A new answer entirely." in set(report.read()["text"])


def test_a_new_input_set_leaves_no_stale_part_behind(tmp_path):
    files = write_transcripts(tmp_path / "in", 6)
    out = tmp_path / "out"
    run_shards(files, out, segment_files, shard_size=4)
    # a file sorting first shifts every shard: the old parts must go, or rows would repeat
    extra = tmp_path / "in" / "case-first.txt"
    extra.write_text("P: An extra case.\n", encoding="utf-8")
    report = run_shards([*files, extra], out, segment_files, shard_size=4)
    assert len(report.removed) == 2
    assert part_ids(out) == {s.id for s in report.shards}
    pd.testing.assert_frame_equal(read_dataset(out), expected_rows([*files, extra]))
    assert len(pd.read_parquet(out)) == len(expected_rows([*files, extra]))


def test_a_ledger_line_cut_short_reruns_that_shard_and_a_damaged_one_is_named(tmp_path):
    files = write_transcripts(tmp_path / "in", 4)
    out = tmp_path / "out"
    run_shards(files, out, segment_files, shard_size=1)
    lines = (out / LEDGER).read_text().splitlines()
    (out / LEDGER).write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])    # killed mid-append
    report = run_shards(files, out, segment_files, shard_size=1)
    assert len(report.computed) == 1 and len(report.skipped) == 3
    assert sorted(ledger_ids(out)) == sorted(s.id for s in report.shards)

    (out / LEDGER).write_text("not json\n" + (out / LEDGER).read_text())
    with pytest.raises(InputError) as err:
        run_shards(files, out, segment_files, shard_size=1)
    assert err.value.line == 1 and err.value.path.endswith(LEDGER)


def test_an_extra_file_is_kept_beside_its_part_and_a_missing_one_reruns_its_shard(tmp_path):
    files = write_transcripts(tmp_path / "in", 5)
    out = tmp_path / "out"
    report = run_shards(files, out, with_extra, shard_size=2)
    assert [report.extra(s) for s in report.shards] == \
        ["\n".join(Path(f).name for f in s.files).encode() for s in report.shards]
    pd.testing.assert_frame_equal(report.read(), expected_rows(files))
    assert len(pd.read_parquet(out)) == len(report.read())       # still a parquet dataset
    (out / report.shards[1].extra_name).unlink()
    again = run_shards(files, out, with_extra, shard_size=2)
    assert again.computed == [report.shards[1].id] and len(again.skipped) == 2
    assert again.extra(report.shards[1]) == b"case002.txt\ncase003.txt"
    # a new input set: the extra files of shards no longer planned go with their parts
    files[0].unlink()
    third = run_shards(files[1:], out, with_extra, shard_size=2)
    assert {p.name for p in out.glob("_extra=*")} == {s.extra_name for s in third.shards}


def test_a_shard_finished_with_another_fingerprint_is_run_again(tmp_path):
    files = write_transcripts(tmp_path / "in", 4)
    out = tmp_path / "out"
    first = run_shards(files, out, segment_files, shard_size=2, fingerprint="model-a")
    same = run_shards(files, out, segment_files, shard_size=2, fingerprint="model-a")
    assert same.computed == [] and sorted(same.skipped) == sorted(first.computed)
    other = run_shards(files, out, segment_files, shard_size=2, fingerprint="model-b")
    assert sorted(other.computed) == sorted(first.computed) and other.skipped == []
    assert sorted(ledger_ids(out)) == sorted(first.computed)          # once each
    assert {json.loads(line)["fingerprint"] for line in (out / LEDGER).read_text().splitlines()} \
        == {"model-b"}


def test_a_second_job_on_the_same_folder_is_refused(tmp_path):
    files = write_transcripts(tmp_path / "in", 2)
    out = tmp_path / "out"
    out.mkdir()
    with shards._exclusive(out), pytest.raises(ConfigError, match="another job"):
        run_shards(files, out, segment_files, shard_size=1)


def test_progress_bar_counts_shards_and_segments(tmp_path, monkeypatch, capsys):
    files = write_transcripts(tmp_path / "in", 4)
    monkeypatch.setattr(shards, "bars_wanted", lambda: True)
    run_shards(files, tmp_path / "out", segment_files, shard_size=1)
    err = capsys.readouterr().err
    assert re.search(r" 4/4 \[\d\d:\d\d<\d\d:\d\d", err)          # shards done, time left
    assert f"segments={len(expected_rows(files))}" in err
    run_shards(files, tmp_path / "quiet", segment_files, shard_size=1, progress=False)
    assert capsys.readouterr().err == ""


# --- Failures and retries ----------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["local", "dask"])
def test_a_persistent_failure_names_the_files_and_keeps_the_other_shards(tmp_path, engine):
    files = write_transcripts(tmp_path / "in", 6)
    out = tmp_path / "out"
    bad = files[4]
    with pytest.raises(ShardError) as err:
        run_shards(files, out, functools.partial(crash_on, marker=bad.name), shard_size=2,
                   engine=engine, cluster_config=THREADS, retries=1, progress=False)
    message = str(err.value)
    assert isinstance(err.value, ConsensaError)                 # the CLI prints it, exit 2
    assert "1 of 3 shard(s) failed after 2 attempt(s)" in message
    assert str(bad.resolve()) in message and str(files[5].resolve()) in message
    assert "RuntimeError: the embedding model ran out of memory" in message
    assert "Traceback" not in message
    report = err.value.report
    assert len(report.computed) == 2 and part_ids(out) == set(report.computed)
    # the next run computes only the failed shard
    again = run_shards(files, out, segment_files, shard_size=2, engine=engine,
                       cluster_config=THREADS)
    assert again.computed == [report.failed[0].shard]
    pd.testing.assert_frame_equal(again.read(), expected_rows(files))


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_a_transient_failure_is_retried(tmp_path, engine):
    files = write_transcripts(tmp_path / "in", 4)
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    work = functools.partial(flaky, attempts_dir=str(attempts))
    report = run_shards(files, tmp_path / "out", work, shard_size=2, engine=engine,
                        cluster_config=THREADS, retries=1)
    assert len(report.computed) == 2 and not report.failed
    pd.testing.assert_frame_equal(report.read(), expected_rows(files))

    for marker in attempts.iterdir():
        marker.unlink()
    with pytest.raises(ShardError, match="ConnectionError: lost the connection"):
        run_shards(files, tmp_path / "out0", work, shard_size=2, engine=engine,
                   cluster_config=THREADS, retries=0)


@pytest.mark.slow
def test_a_dead_worker_is_replaced_and_its_shard_rerun(tmp_path):
    files = write_transcripts(tmp_path / "in", 4)
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    work = functools.partial(dies, always=files[3].name, once=files[1].name,
                             attempts_dir=str(attempts))
    with pytest.raises(ShardError) as err:
        run_shards(files, tmp_path / "out", work, shard_size=1, engine="dask", retries=1,
                   cluster_config={"n_workers": 2, "processes": True}, progress=False)
    report = err.value.report
    assert [f.files for f in report.failed] == [(str(files[3].resolve()),)]
    assert "the worker running it died" in report.failed[0].error
    assert (attempts / files[1].name).exists()              # it died once, then ran again
    assert len(report.computed) == 3
    pd.testing.assert_frame_equal(report.read(), expected_rows(files[:3]))


def test_a_broken_transcript_is_reported_once_with_its_line(tmp_path, caplog):
    files = write_transcripts(tmp_path / "in", 3)
    with files[1].open("a", encoding="utf-8") as fh:
        fh.write("P: BROKEN turn\n")
    with pytest.raises(ShardError) as err:
        run_shards(files, tmp_path / "out", segment_files, shard_size=1, retries=2)
    failure = err.value.report.failed[0]
    assert failure.files == (str(files[1].resolve()),)
    assert f"{files[1].resolve()}, line" in failure.error and "cannot be read" in failure.error
    assert "attempt" not in caplog.text              # the input's fault: not retried
    message = str(err.value)
    assert "1 of 3 shard(s) failed on their input (not retried" in message
    assert "attempt" not in message
    assert failure.input_fault and err.value.report.as_dict()["failed"][0]["retried"] is False


# --- Heavy state, once per worker --------------------------------------------------------------

def test_the_model_is_loaded_once_in_a_local_run(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "_PROCESS_STATE", {})
    files = write_transcripts(tmp_path / "in", 6)
    loads = tmp_path / "loads.log"
    work = functools.partial(with_model, model_path=str(tmp_path / "model-a"), loads_log=str(loads))
    report = run_shards(files, tmp_path / "out", work, shard_size=1)
    assert len(report.computed) == 6
    assert loads.read_text().split() == [str(os.getpid())]
    # another model is another piece of state
    run_shards(files, tmp_path / "out-b", functools.partial(with_model, model_path="model-b",
                                                            loads_log=str(loads)), shard_size=1)
    assert len(loads.read_text().split()) == 2


def test_the_model_is_loaded_once_per_thread_worker(tmp_path):
    files = write_transcripts(tmp_path / "in", 8)
    loads = tmp_path / "loads.log"
    work = functools.partial(with_model, model_path=str(tmp_path / "model"), loads_log=str(loads))
    report = run_shards(files, tmp_path / "out", work, shard_size=1, engine="dask",
                        cluster_config=THREADS)
    assert len(report.computed) == 8
    assert 1 <= len(loads.read_text().split()) <= 2           # 2 workers, 8 shards


@pytest.mark.slow
def test_process_workers_load_the_model_once_each(tmp_path):
    files = write_transcripts(tmp_path / "in", 8)
    loads = tmp_path / "loads.log"
    work = functools.partial(with_model, model_path=str(tmp_path / "model"), loads_log=str(loads))
    report = run_shards(files, tmp_path / "out", work, shard_size=1, engine="dask",
                        cluster_config={"n_workers": 2, "processes": True})
    pids = loads.read_text().split()
    assert len(report.computed) == 8
    assert 1 <= len(pids) <= 2 and len(set(pids)) == len(pids)   # once per worker process
    assert str(os.getpid()) not in pids                         # the work ran on the workers
    expected = expected_rows(files)
    expected["score"] = expected["score"] * 2.0
    pd.testing.assert_frame_equal(report.read(), expected)


_PROBE = ("import json, sys; sys.path.insert(0, {root!r}); "
          "from pipeline.shards import restore_mmap_threshold; "
          "from tests.shard_work import served_by_mmap; "
          "before = [served_by_mmap(), served_by_mmap()]; changed = restore_mmap_threshold(); "
          "print(json.dumps([before, changed, served_by_mmap()]))")


def _probe(env: dict) -> list:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    out = subprocess.run([sys.executable, "-c", _PROBE.format(root=str(ROOT))], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_dasks_allocator_setting_no_longer_maps_every_large_allocation():
    """With Dask's MALLOC_TRIM_THRESHOLD_ every 1 MiB block is an mmap of its own (and
    an munmap when freed): what halved a worker's embedding speed."""
    before, changed, after = _probe({"MALLOC_TRIM_THRESHOLD_": "65536"})
    if None in before:
        pytest.skip("not glibc, or a glibc without mallinfo2")
    assert before == [True, True] and changed is True and after is False


def test_the_allocator_is_left_alone_unless_dasks_setting_fixed_it():
    before, changed, after = _probe({})
    if None in before:
        pytest.skip("not glibc, or a glibc without mallinfo2")
    # glibc's own dynamic threshold: the first 1 MiB block is mapped, and once it is
    # freed the threshold rises above it
    assert (before, changed, after) == ([True, False], False, False)
    # a threshold someone chose is kept
    _, changed, after = _probe({"MALLOC_TRIM_THRESHOLD_": "65536",
                                "MALLOC_MMAP_THRESHOLD_": str(1 << 16)})
    assert changed is False and after is True


_TRIM = """
import ctypes, json, sys
sys.path.insert(0, {root!r})
from pipeline.shards import _worker_allocator_plugin
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20
blocks = [libc.malloc(1 << 20) for _ in range(64)]
for b in blocks:
    ctypes.memset(b, 1, 1 << 20)
for b in blocks[:-1]:                   # the last keeps the freed ones inside the heap
    libc.free(b)
plugin, sizes = _worker_allocator_plugin(), [rss()]
plugin.transition("a-shard", "waiting", "processing")
sizes.append(rss())
plugin.transition("a-shard", "executing", "memory")
sizes.append(rss())
print(json.dumps(sizes))
"""


def test_a_worker_gives_freed_memory_back_after_each_task():
    if sys.platform != "linux" or not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
        pytest.skip("glibc only")
    # freed blocks stay inside the heap: no automatic trim, no mmap of their own
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | {
        "MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(1 << 25)}
    out = subprocess.run([sys.executable, "-c", _TRIM.format(root=str(ROOT))], env=env,
                         capture_output=True, text=True, check=True)
    held, after_other, after_task = json.loads(out.stdout)
    assert after_other > held - 8                  # only a finished task trims ...
    assert after_task < held - 48                  # ... and 63 MiB freed go back


@pytest.mark.slow
def test_process_workers_keep_large_allocations_on_the_heap(tmp_path):
    files = write_transcripts(tmp_path / "in", 4)
    report = run_shards(files, tmp_path / "out", heap_probe, shard_size=1, engine="dask",
                        cluster_config={"n_workers": 2, "processes": True})
    rows = report.read()
    assert len(rows) == 4 and str(os.getpid()) not in set(rows["pid"].astype(str))
    assert set(rows["trim"]) == {"65536"}            # Dask's setting is there ...
    assert not rows["profiled"].any()                # (and no profiler sampling the work)
    assert rows["batch_trim"].all()                  # freed heap given back after each batch
    if rows["mmapped"].isna().any():
        pytest.skip("not glibc, or a glibc without mallinfo2")
    assert not rows["mmapped"].any()                 # ... and no longer maps 1 MiB blocks


# --- Dask engines ------------------------------------------------------------------------------

def test_a_dask_localcluster_gives_the_local_result(tmp_path):
    files = write_transcripts(tmp_path / "in", 9)
    local = run_shards(files, tmp_path / "local", segment_files, shard_size=2)
    on_dask = run_shards(files, tmp_path / "dask", segment_files, shard_size=2, engine="dask",
                         cluster_config=THREADS)
    assert on_dask.engine == "dask (localcluster)"
    assert sorted(on_dask.computed) == sorted(local.computed)
    pd.testing.assert_frame_equal(on_dask.read(), local.read())


def test_the_workers_started_here_do_not_profile_their_tasks(tmp_path):
    """Dask's profiler, which only its dashboard reads, cost a worker 85 MB and more
    with each shard (WORKER_PROFILE_OFF); process workers are checked in
    test_process_workers_keep_large_allocations_on_the_heap."""
    files = write_transcripts(tmp_path / "in", 2)
    report = run_shards(files, tmp_path / "out", heap_probe, shard_size=1, engine="dask",
                        cluster_config=THREADS)
    assert len(report.read()) == 2 and not report.read()["profiled"].any()
    script = job_script(SLURM)
    assert WORKER_PROFILE_OFF in script.split("\n")
    # before the team's own lines, so that they can turn it back on
    assert script.index(WORKER_PROFILE_OFF) < script.index(SLURM["job_script_prologue"][0])


def test_a_running_scheduler_is_used_by_its_address(tmp_path):
    from distributed import LocalCluster

    files = write_transcripts(tmp_path / "in", 4)
    with LocalCluster(n_workers=1, processes=False, protocol="tcp://",
                      dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://")
        report = run_shards(files, tmp_path / "out", segment_files, shard_size=2, engine="dask",
                            scheduler=address)
    assert report.engine == "dask (scheduler)"
    pd.testing.assert_frame_equal(report.read(), expected_rows(files))


def test_scheduler_addresses_are_checked(tmp_path):
    files = write_transcripts(tmp_path / "in", 1)
    with pytest.raises(ConfigError, match="tcp://HOST:PORT") as err:
        run_shards(files, tmp_path / "out", segment_files, shard_size=1, engine="dask",
                   scheduler="localhost:8786")
    assert err.value.field == "scheduler"
    with pytest.raises(ConfigError, match="needs the dask engine"):
        run_shards(files, tmp_path / "out", segment_files, shard_size=1, scheduler="tcp://h:1")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        run_shards(files, tmp_path / "out", segment_files, shard_size=1, engine="dask",
                   cluster_config={"kind": "scheduler", "address": "tcp://127.0.0.1:9",
                                   "timeout": 1})
    assert time.perf_counter() - started < 20


# --- Cluster settings and job scripts ----------------------------------------------------------

SLURM = {"kind": "slurm", "cores": 8, "memory": "16GB", "walltime": "02:00:00", "jobs": 4,
         "queue": "short", "account": "cqr-lab",
         "job_script_prologue": ["source ~/consensa/.venv/bin/activate"]}


def test_a_slurm_section_builds_its_job_script_without_submitting():
    script = job_script(SLURM)
    assert script.startswith("#!/usr/bin/env bash")
    for line in ("#SBATCH -p short", "#SBATCH -A cqr-lab", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --mem=15G", "#SBATCH -t 02:00:00",
                 "source ~/consensa/.venv/bin/activate"):
        assert line in script, line
    assert "distributed.cli.dask_worker" in script and "--nthreads 8" in script
    assert sys.executable in script


def test_a_pbs_section_builds_its_job_script():
    script = job_script({**SLURM, "kind": "pbs", "account": None})
    assert "#PBS -q short" in script and "#PBS -l walltime=02:00:00" in script
    assert "#PBS -l select=1:ncpus=8:mem=15GB" in script


@pytest.mark.parametrize(("section", "named"), [
    ({**SLURM, "cores": 0}, "'engine.cores'"),
    ({k: v for k, v in SLURM.items() if k != "memory"}, "'engine.memory' is required"),
    ({**SLURM, "memory": "lots"}, "'engine.memory'"),
    ({**SLURM, "walltime": "2h"}, "'engine.walltime'"),
    ({**SLURM, "gpus": 1}, "'engine.gpus' is not a known setting"),
    ({"kind": "kubernetes"}, "'engine.kind' must be one of"),
    ({"kind": "scheduler", "address": "localhost"}, "'engine.address'"),
    ({"n_workers": 0}, "'engine.n_workers'"),
])
def test_cluster_settings_errors_name_the_key(section, named):
    with pytest.raises(ConfigError) as err:
        cluster_config(section, path="study.yaml")
    assert named in str(err.value)
    assert str(err.value).startswith("study.yaml")


def test_cluster_settings_defaults():
    assert cluster_config(None).kind == "localcluster"
    assert cluster_config({"n_workers": 3}).n_workers == 3
    assert cluster_config(SLURM).jobs == 4
    with pytest.raises(ConfigError, match="only a slurm or pbs engine"):
        job_script({"kind": "localcluster"})


# --- Killed and restarted ----------------------------------------------------------------------

@pytest.mark.slow
def test_a_killed_job_restarts_where_it_stopped(tmp_path):
    """kill -9 of a job on a LocalCluster after some shards, then the same command:
    every shard exactly once, the same rows as an uninterrupted run."""
    folder = tmp_path / "in"
    files = write_transcripts(folder, 16)
    out = tmp_path / "out"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from tests import shard_work; "
            "shard_work.main(sys.argv[2:])")
    job = subprocess.Popen(
        [sys.executable, "-c", code, str(ROOT), str(folder), str(out), "dask", "0.4"],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finished_before_kill = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and job.poll() is None:
            if (out / LEDGER).exists() and len(read_ledger(out)) >= 4:
                break
            time.sleep(0.05)
        assert job.poll() is None, f"the job ended before it could be killed: {job.stderr.read()!r}"
        os.killpg(job.pid, signal.SIGKILL)          # the job and its worker processes
        job.wait(timeout=30)
        finished_before_kill = list(read_ledger(out))
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=30)
        job.stderr.close()
    assert 4 <= len(finished_before_kill) < 16

    restarted = run_shards(sorted(folder.glob("*.txt")), out, segment_files, shard_size=1,
                           engine="dask", cluster_config=THREADS)
    assert set(restarted.skipped) == set(finished_before_kill)
    assert len(restarted.computed) == 16 - len(finished_before_kill)
    ids = ledger_ids(out)
    assert len(ids) == len(set(ids)) == 16                     # every shard exactly once
    assert part_ids(out) == set(ids)
    assert not list(out.glob(".part=*"))                       # no half-written part left
    uninterrupted = run_shards(files, tmp_path / "whole", segment_files, shard_size=1)
    pd.testing.assert_frame_equal(read_dataset(out), uninterrupted.read())
    assert not read_dataset(out).duplicated(["file", "line"]).any()


def test_the_kill_test_job_runs_to_the_end_when_left_alone(tmp_path):
    """The job the kill test starts, run whole in this process (so a broken job
    cannot pass the kill test by dying early on its own)."""
    files = write_transcripts(tmp_path / "in", 3)
    shard_work.main([str(tmp_path / "in"), str(tmp_path / "out"), "local", "0"])
    pd.testing.assert_frame_equal(read_dataset(tmp_path / "out"), expected_rows(files))
