"""The CQR run's map made in a process of its own (``pipeline.compose.reduce_apart``)
while the analysis runs: the same map as one made in the run's own process, cached
the same way, its errors the run's errors, and a process that dies or cannot be
started replaced by the map made here."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import yaml

from pipeline import compose
from pipeline.cache import Cache
from pipeline.compose import reduce, reduce_apart
from pipeline.runfolder import RunFolder
from pipeline.stages.reduce import PCAReducer, UMAPReducer
from tests.study import study_config, write_study


def blobs(n: int = 120, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)) * 4
    return (centres[np.arange(n) % 3] + rng.normal(size=(n, dim))).astype(np.float32)


class FailingReducer(PCAReducer):
    """A reducer that refuses its rows, as a reducer of a broken install would."""

    def fit_transform(self, X, knn=None):
        raise ValueError("this reducer refuses the rows")


@pytest.mark.slow
def test_a_map_made_apart_is_the_map_made_here_and_is_cached(tmp_path):
    X = blobs()
    here = reduce(UMAPReducer(n_components=2, random_state=0, n_epochs=50), X, Cache(None))
    cache = Cache(tmp_path / "cache")
    pending = reduce_apart(UMAPReducer(n_components=2, random_state=0, n_epochs=50), X, cache,
                           above=0)
    assert pending.apart
    apart = pending.result()
    np.testing.assert_array_equal(apart.coords, here.coords)
    assert apart.fitted["from_cache_"] is False and apart.fitted["method_"] == "umap"
    again = reduce_apart(UMAPReducer(n_components=2, random_state=0, n_epochs=50), X, cache,
                         above=0)
    assert not again.apart
    np.testing.assert_array_equal(again.result().coords, here.coords)
    assert again.result().fitted["from_cache_"] is True


def test_a_small_map_is_made_here_at_once(tmp_path):
    pending = reduce_apart(PCAReducer(n_components=2), blobs(), Cache(None))
    assert not pending.apart
    np.testing.assert_allclose(pending.result().coords,
                               PCAReducer(n_components=2).fit_transform(blobs()), rtol=1e-5)


def test_the_reducers_error_in_its_process_is_the_runs_error():
    pending = reduce_apart(FailingReducer(n_components=2), blobs(), Cache(None), above=0)
    assert pending.apart
    with pytest.raises(ValueError, match="refuses the rows"):
        pending.result()


def test_a_process_that_dies_is_replaced_by_the_map_made_here(caplog):
    pending = reduce_apart(PCAReducer(n_components=2), blobs(), Cache(None), above=0)
    assert pending.apart
    pending._process.kill()
    with caplog.at_level(logging.WARNING, logger="consensa.compose"):
        coords = pending.result().coords
    assert "gave no answer" in caplog.text
    np.testing.assert_allclose(coords, PCAReducer(n_components=2).fit_transform(blobs()), rtol=1e-5)


def test_a_reducer_that_cannot_be_sent_is_fitted_here(caplog):
    class Local(PCAReducer):           # a class of a function's own cannot be pickled
        pass

    with caplog.at_level(logging.WARNING, logger="consensa.compose"):
        pending = reduce_apart(Local(n_components=2), blobs(), Cache(None), above=0)
    assert not pending.apart and "cannot start a process" in caplog.text
    assert pending.result().coords.shape == (120, 2)


def test_a_cancelled_map_leaves_no_process_and_no_files(tmp_path, monkeypatch):
    monkeypatch.setattr(compose.tempfile, "tempdir", str(tmp_path))
    pending = reduce_apart(UMAPReducer(n_components=2, random_state=0), blobs(3000), Cache(None),
                           above=0)
    process = pending._process
    pending.cancel()
    assert process.poll() is not None
    assert not any(p.name.startswith("consensa-reduce-") for p in tmp_path.iterdir())


def _task(folder, X):
    import pickle

    folder.mkdir()
    with open(folder / "task.pickle", "wb") as f:
        pickle.dump((PCAReducer(n_components=2), X), f)
    return folder


def test_the_maps_process_keeps_the_vectors_on_disk_only_until_it_has_read_them(tmp_path):
    """The task file holds the study's vectors: the process deletes it once read, so a
    run killed mid-map leaves none of them in the temporary folder."""
    folder = _task(tmp_path / "task", blobs())
    compose.reduce_in_folder(folder, parent=os.getppid())
    assert sorted(p.name for p in folder.iterdir()) == ["answer.pickle"]


def test_the_maps_process_removes_its_folder_when_the_run_that_started_it_is_gone(tmp_path):
    # the process's parent is no longer the run (killed): no one will read the answer
    folder = _task(tmp_path / "task", blobs())
    compose.reduce_in_folder(folder, parent=os.getppid() + 1)
    assert not folder.exists()


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="made apart only with two processors")
def test_a_cqr_run_whose_map_is_made_apart_is_the_run_made_in_one_process(tmp_path, monkeypatch):
    write_study(tmp_path / "study")
    cfg = study_config(tmp_path / "study", analysis="consensa.CQR.v1")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    from pipeline.cli import main

    assert main(["run", str(path), "--out", str(tmp_path / "here"), "--set", "cache_dir=null"]) == 0
    started = []
    original = compose.reduce_apart

    def apart(reducer, X, cache, *, above=None):
        pending = original(reducer, X, cache, above=0)
        started.append(pending.apart)
        return pending

    monkeypatch.setattr("pipeline.run.reduce_apart", apart)
    assert main(["run", str(path), "--out", str(tmp_path / "apart"), "--set", "cache_dir=null"]) == 0
    assert started == [True]
    here, there = (RunFolder.open(tmp_path / n) for n in ("here", "apart"))
    for name in ("segments.csv", "themes.csv", "cqr_table.csv", "core_ideas.csv"):
        assert (tmp_path / "here" / name).read_bytes() == (tmp_path / "apart" / name).read_bytes(), name
    assert "map" in there.manifest["timings"] and here.manifest["counts"] == there.manifest["counts"]
