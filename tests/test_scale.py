"""A large run: themes fitted on a case-stratified sample, the rest joined to their
nearest theme, and texts embedded on a Dask cluster, restartable (the ``scale``
section; pipeline/run.py, pipeline/compose.py).

The study is tests/study.py's, ten cases of 12 segments, with thresholds small
enough that 120 segments count as a large corpus. The embedders of the Dask tests
are defined here, at module level, where Dask's workers find them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.cache import Cache, text_keys
from pipeline.cli import main
from pipeline.compose import embed_texts
from pipeline.config import ScaleConfig, load_config, validate_config
from pipeline.errors import ConfigError, ConsensaError
from pipeline.runfolder import RunFolder
from pipeline.stages.cluster import stratified_sample
from pipeline.stages.reduce import auto_neighbors
from tests.study import study_config, write_study

ROOT = Path(__file__).resolve().parents[1]
#: scale settings under which the 120-segment study is a large corpus
SMALL = {"fit_sample_above": 60, "fit_sample_size": 40}


def write_config(folder: Path, name: str = "config.yaml", **sections) -> Path:
    study = write_study(folder / "interviews", n_cases=10)
    # no context blend: the space the themes are found in is the embeddings' own, so
    # the test can check the joining rule against the saved vectors
    data = study_config(study, context={"weight": 0}, **sections)
    path = folder / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def sampled(tmp_path_factory) -> tuple[RunFolder, str]:
    """A run of the study over the small thresholds, made with the CLI, and what it
    printed."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("scale")
    path = write_config(root, scale=SMALL)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["run", str(path), "--out", str(root / "run")]) == 0
    return RunFolder(root / "run"), printed.getvalue()


# --- Themes fitted on a sample -------------------------------------------------------------

def test_a_large_run_fits_its_themes_on_exactly_a_case_stratified_sample(sampled):
    run, _ = sampled
    seg = run.segments()
    counts = run.manifest["counts"]
    sample = stratified_sample(seg["case_id"].to_numpy(), SMALL["fit_sample_size"], seed=7)
    assert counts["fitted_on_sample"] == len(sample)
    assert counts["joined_after_sample"] == len(seg) - len(sample) == 120 - len(sample)
    assert counts["sample_seed"] == 7                       # the run's seed: none was given
    assert set(seg["case_id"].iloc[sample]) == set(seg["case_id"])      # every case
    # the sample's k-means placed each of its segments; no sample segment was moved
    assert (seg["theme"].iloc[sample] >= 0).all() and not seg["reassigned"].iloc[sample].any()
    assert counts["reassigned"] == 0 and counts["outliers_before_reassignment"] == 0


def test_the_other_segments_join_their_nearest_theme_when_close_enough(sampled):
    run, _ = sampled
    seg = run.segments()
    counts = run.manifest["counts"]
    vectors = unit(run.vectors(len(seg)))
    theme = seg["theme"].to_numpy()
    sample = stratified_sample(seg["case_id"].to_numpy(), SMALL["fit_sample_size"], seed=7)
    rest = np.setdiff1d(np.arange(len(seg)), sample)
    k = int(theme.max()) + 1
    cents = unit(np.stack([vectors[sample][theme[sample] == t].mean(axis=0) for t in range(k)]))
    sims = vectors[rest] @ cents.T
    best, best_sim = sims.argmax(axis=1), sims.max(axis=1)
    close = best_sim >= 0.35                                  # outliers.min_similarity
    assert close.any() and (~close).any()                     # both sides of the rule occur
    assert np.array_equal(theme[rest], np.where(close, best, -1))
    np.testing.assert_allclose(seg["strength"].to_numpy()[rest],
                               np.where(close, best_sim, 0.0), atol=1e-5)
    # a joined segment was placed by its similarity, as a reassigned outlier is
    assert np.array_equal(seg["reassigned"].to_numpy()[rest], close)
    assert counts["unassigned_after_sample"] == int((~close).sum()) == counts["unassigned"]


def test_the_map_places_the_other_segments_among_their_nearest_sample_segments(sampled):
    run, _ = sampled
    seg = run.segments()
    vectors = unit(run.vectors(len(seg)))
    xy = seg[["map_x", "map_y"]].to_numpy()
    sample = stratified_sample(seg["case_id"].to_numpy(), SMALL["fit_sample_size"], seed=7)
    rest = np.setdiff1d(np.arange(len(seg)), sample)
    k = auto_neighbors(len(sample))           # the PCA map has no neighbour graph of its own
    nearest = np.argsort(-(vectors[rest] @ vectors[sample].T), axis=1, kind="stable")[:, :k]
    np.testing.assert_allclose(xy[rest], xy[sample][nearest].mean(axis=1), atol=1e-4)
    # the PCA map was fitted on the sample alone: its coordinates are centred there
    np.testing.assert_allclose(xy[sample].mean(axis=0), 0.0, atol=1e-4)


def test_the_summary_and_the_report_say_so(sampled):
    run, printed = sampled
    c = run.manifest["counts"]
    sentence = (f"themes fitted on a case-stratified sample of {c['fitted_on_sample']} of 120 "
                f"segments; the other {c['joined_after_sample']} joined their nearest theme "
                f"({c['unassigned_after_sample']} left unassigned)")
    assert f"  {sentence}\n" in printed
    assert (f"reassigned outliers: {c['reassigned']} of the {c['fitted_on_sample']} fitted "
            f"({c['reassigned'] / c['fitted_on_sample']:.1%})") in printed
    html = (run.path / "report.html").read_text(encoding="utf-8")
    assert sentence[1:] in html and "Themes found on a sample" in html


def test_a_sample_of_more_cases_than_its_size_draws_cases_not_the_whole_corpus():
    # a survey's open answers: one segment a respondent; every case getting its row
    # would make the "sample" the corpus itself
    cases = np.repeat([f"R{i}" for i in range(1000)], [1, 2] * 500)
    sample = stratified_sample(cases, 100, seed=3)
    assert len(sample) == 100 == len(set(cases[sample]))
    assert np.array_equal(sample, stratified_sample(cases, 100, seed=3))
    assert not np.array_equal(sample, stratified_sample(cases, 100, seed=4))
    # with fewer cases than the size, every case is still in it
    few = np.repeat([f"C{i}" for i in range(10)], 30)
    assert set(few[stratified_sample(few, 50, seed=3)]) == set(few)


def test_a_run_at_or_under_the_threshold_is_the_run_without_the_section(tmp_path):
    """120 segments and fit_sample_above: 120 is not more: the same files, byte for
    byte, as a config without the section, and no sample counted."""
    outs = []
    for name, sections in (("plain", {}), ("scaled", {"scale": {"fit_sample_above": 120,
                                                                 "fit_sample_size": 40}})):
        path = write_config(tmp_path, f"{name}.yaml", **sections)    # the same transcripts
        outs.append(tmp_path / name)
        assert main(["run", str(path), "--out", str(outs[-1]), "--quiet"]) == 0
    for name in ("segments.csv", "themes.csv", "domains.csv", "cqr_table.csv"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    counts = [json.loads((o / "manifest.json").read_text(encoding="utf-8"))["counts"]
              for o in outs]
    assert counts[0] == counts[1] and "fitted_on_sample" not in counts[1]


# --- The section's settings ----------------------------------------------------------------

@pytest.mark.parametrize("scale, named", [
    ({"fit_sample_above": 100, "fit_sample_size": 200}, "scale.fit_sample_size"),
    ({"fit_sample_size": 60_000}, "scale.fit_sample_size"),
    ({"fit_sample_above": 0}, "scale.fit_sample_above"),
    ({"sample_size": 10}, "scale.sample_size"),
    ({"engine": "fast"}, "scale.engine"),
    ({"engine": {"kind": "slurm", "memory": "8GB", "walltime": "01:00:00"}}, "scale.engine.cores"),
    ({"engine": {"kind": "scheduler", "address": "localhost"}}, "scale.engine.address"),
    ({"engine": {"kind": "localcluster", "n_workers": 0}}, "scale.engine.n_workers"),
    ({"chunk_size": 0}, "scale.chunk_size"),
    ("big", "scale"),
])
def test_scale_errors_name_the_file_and_the_key(tmp_path, scale, named):
    path = write_config(tmp_path, scale=scale)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"'{named}'" in str(err.value) and str(path) in str(err.value)


def test_scale_settings_and_their_defaults():
    assert ScaleConfig() == validate_config({}).scale
    assert (ScaleConfig().fit_sample_above, ScaleConfig().fit_sample_size) == (50_000, 20_000)
    assert ScaleConfig().engine == "local"
    cfg = validate_config({"scale": {"engine": "dask"}})
    assert cfg.scale.engine.kind == "localcluster" and cfg.scale.engine.n_workers is None
    # the resolved config (config.yaml) validates again to the same settings
    again = validate_config({"scale": cfg.scale.model_dump(mode="json")})
    assert again.scale == cfg.scale


def test_a_corpus_fitted_embedder_cannot_embed_on_a_cluster(tmp_path, capsys):
    """TF-IDF fits itself to the texts it is given: chunks would not share one space."""
    path = write_config(tmp_path, scale={"engine": "dask"})
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "scale.engine" in err and "consensa.TfidfSVD.v1" in err and "Traceback" not in err


# --- Embedding on a Dask cluster -----------------------------------------------------------

#: texts whose chunk fails on the workers (set by a test); the texts each embedder
#: encoded, and each failed attempt. The workers are threads of this process.
FAILING: set[str] = set()
ENCODED: list[str] = []
ATTEMPTS: list[tuple[str, ...]] = []
_LOCK = threading.Lock()
#: seconds each chunk takes (the killed job's, so it can be killed half way)
DELAY = 0.0


class OwnVectors:
    """Each text's vector from its own letters: no batch changes it."""

    model_id = "test-own-letters"
    batch_dependent = False

    def __init__(self) -> None:
        pass

    def encode(self, texts):
        texts = list(texts)
        with _LOCK:
            if FAILING & set(texts):
                ATTEMPTS.append(tuple(texts))
                raise RuntimeError("the worker ran out of memory")
            ENCODED.extend(texts)
        time.sleep(DELAY)
        own = np.array([[len(t), t.count("a"), t.count("e"), t.count("s"), 1.0] for t in texts],
                       np.float32).reshape(len(texts), 5)
        return own / np.linalg.norm(own, axis=1, keepdims=True) if len(texts) else own


class BatchVectors(OwnVectors):
    """A stand-in for an int8 model: each vector carries a bit of its batch's mean."""

    model_id = "test-batch-mean"
    batch_dependent = True

    def encode(self, texts):
        own = super().encode(texts)
        return own + 0.1 * own.mean(axis=0, keepdims=True) if len(own) else own


TEXTS = [f"segment {i}: {'a' * (i % 4)} tears {'e' * (i % 3)} and {'s' * (i % 5)}"
         for i in range(11)]
#: a LocalCluster whose workers are threads of the test process: starts in ~0.1 s
THREADS = {"kind": "localcluster", "n_workers": 2, "processes": False}


def on_cluster(**settings) -> ScaleConfig:
    return ScaleConfig(**{"engine": THREADS, "chunk_size": 3, "retries": 1, **settings})


@pytest.fixture
def fresh_log():
    FAILING.clear()
    ENCODED.clear()
    ATTEMPTS.clear()
    yield
    FAILING.clear()


@pytest.mark.slow
def test_the_dask_path_gives_the_local_vectors_and_a_restart_embeds_only_what_is_missing(
        tmp_path, fresh_log):
    texts = TEXTS + TEXTS[:3]                       # repeated texts are embedded once
    local, _ = embed_texts(OwnVectors(), texts, Cache(tmp_path / "local"))
    ENCODED.clear()
    cache = Cache(tmp_path / "cluster")
    FAILING.add(TEXTS[5])
    with pytest.raises(ConsensaError) as err:
        embed_texts(OwnVectors(), texts, cache, on_cluster())
    message = str(err.value)
    assert "1 of 4 embedding chunk(s) failed on the Dask cluster after 2 attempt(s)" in message
    assert "(3 texts): RuntimeError: the worker ran out of memory" in message
    assert "run the same command again" in message and "Traceback" not in message
    assert len(ATTEMPTS) == 2                       # tried again once (scale.retries: 1)
    failed_chunk = set(ATTEMPTS[0])
    assert TEXTS[5] in failed_chunk and len(ENCODED) == 11 - 3   # the other chunks, cached

    FAILING.clear()
    ENCODED.clear()
    vectors, counts = embed_texts(OwnVectors(), texts, cache, on_cluster())
    assert set(ENCODED) == failed_chunk             # only what the cache lacked
    assert counts == {"embedded": 3, "from_cache": 8}
    assert np.array_equal(vectors, local)
    # the local engine reads the same cache: a text's own vector is shared
    ENCODED.clear()
    again, counts = embed_texts(OwnVectors(), texts, cache)
    assert counts == {"embedded": 0, "from_cache": 11} and not ENCODED
    assert np.array_equal(again, local)


@pytest.mark.slow
def test_batch_dependent_vectors_are_made_and_cached_per_fixed_chunk(tmp_path, fresh_log):
    """An int8-like embedder: each chunk's vectors are those of the chunk embedded on
    its own, the chunks fixed by the set of texts, so a restart finds the finished ones
    and a run's vectors never depend on what the cache held."""
    cache = Cache(tmp_path / "cache")
    FAILING.add(TEXTS[2])
    with pytest.raises(ConsensaError, match="1 of 4 embedding chunk"):
        embed_texts(BatchVectors(), TEXTS, cache, on_cluster())
    FAILING.clear()
    ENCODED.clear()
    vectors, counts = embed_texts(BatchVectors(), TEXTS, cache, on_cluster())
    assert counts == {"embedded": 3, "from_cache": 8} and TEXTS[2] in ENCODED
    # what each chunk gives embedded on its own: distinct texts in key order, in threes
    ordered = [t for _, t in sorted(zip(text_keys(TEXTS), TEXTS))]
    want = {}
    for start in range(0, len(ordered), 3):
        chunk = ordered[start:start + 3]
        want.update(zip(chunk, BatchVectors().encode(chunk)))
    assert np.array_equal(vectors, np.stack([want[t] for t in TEXTS]))
    cold, _ = embed_texts(BatchVectors(), TEXTS, Cache(tmp_path / "cold"), on_cluster())
    assert np.array_equal(cold, vectors)
    # one chunk holding every text: the local engine's vectors, under the same entry
    whole, _ = embed_texts(BatchVectors(), TEXTS, Cache(tmp_path / "whole"),
                           on_cluster(chunk_size=100))
    ENCODED.clear()
    local, counts = embed_texts(BatchVectors(), TEXTS, Cache(tmp_path / "whole"))
    assert np.array_equal(whole, local) and counts["embedded"] == 0 and not ENCODED


@pytest.mark.slow
def test_a_run_embeds_through_the_dask_path_with_the_real_model(tmp_path):
    """consensa run with scale.engine: the sentence-transformer's vectors and the
    themes of the same run embedded in this process."""
    runs = []
    for name, scale in (("local", {}), ("dask", {"engine": THREADS, "chunk_size": 50})):
        path = write_config(tmp_path / name, scale=scale,
                            embed={"name": "consensa.SentenceTransformer.v1"},
                            cache_dir=str(tmp_path / name / "cache"))
        assert main(["run", str(path), "--out", str(tmp_path / name / "run"), "--quiet"]) == 0
        runs.append(RunFolder(tmp_path / name / "run"))
    n = len(runs[0].segments())
    np.testing.assert_allclose(runs[1].vectors(n), runs[0].vectors(n), atol=1e-5)
    assert runs[1].manifest["counts"]["embedded"] == runs[0].manifest["counts"]["embedded"]
    pd.testing.assert_series_equal(runs[1].segments()["theme"], runs[0].segments()["theme"])


#: the killed job's texts: one chunk each
MANY = [f"answer {i}: {'a' * (i % 7)} {'e' * (i % 5)} {'s' * (i % 3)}" for i in range(16)]


def embed_job(cache_dir: str) -> None:
    """The job the kill test starts in a process of its own, and then kills."""
    global DELAY
    DELAY = 0.4
    embed_texts(OwnVectors(), MANY, Cache(cache_dir), on_cluster(chunk_size=1))


def cached_rows(cache_dir: Path) -> int:
    path = cache_dir / "embeddings.sqlite"
    if not path.exists():
        return 0
    try:
        con = sqlite3.connect(path, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:                  # the job is creating the table now
        return 0


@pytest.mark.slow
def test_a_killed_run_embeds_only_the_missing_texts_when_started_again(tmp_path, fresh_log):
    """kill -9 of an embedding on a LocalCluster after some chunks: the chunks that
    arrived are in the cache, and the same call embeds only the others."""
    cache_dir = tmp_path / "cache"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from tests import test_scale; "
            "test_scale.embed_job(sys.argv[2])")
    job = subprocess.Popen([sys.executable, "-c", code, str(ROOT), str(cache_dir)],
                           start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and job.poll() is None and cached_rows(cache_dir) < 4:
            time.sleep(0.05)
        assert job.poll() is None, f"the job ended before it could be killed: {job.stderr.read()!r}"
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=30)
        job.stderr.close()
    before = cached_rows(cache_dir)
    assert 4 <= before < len(MANY)

    vectors, counts = embed_texts(OwnVectors(), MANY, Cache(cache_dir), on_cluster(chunk_size=1))
    assert counts == {"embedded": len(MANY) - before, "from_cache": before}
    assert len(ENCODED) == len(set(ENCODED)) == len(MANY) - before
    assert np.array_equal(vectors, OwnVectors().encode(MANY))


def test_stability_of_a_sampled_run_regroups_each_resample_as_the_run_was_grouped(sampled, tmp_path):
    """A resample of a large run is fitted on a sample and the rest joined, as the run
    was: re-grouping all segments with the run's own seeds gives back its themes
    exactly, where clustering all of them (what a run under the threshold does) would not."""
    from pipeline.stability import StabilityConfig, stability_for_run

    run, _ = sampled
    copy = Path(shutil.copytree(run.path, tmp_path / "run"))
    result = stability_for_run(copy, StabilityConfig(resamples=2, bootstrap=False))
    assert result.reproduced == pytest.approx(1.0)
    assert result.table["resamples"].max() >= 1
