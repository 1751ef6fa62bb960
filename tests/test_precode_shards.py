"""Pre-coding in shards (pipeline/shards.py): the same codes as in one process, a
stopped job resumed where it stopped, and what cannot be sharded refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

import pipeline.precode as precode_mod
from pipeline.cli import main
from tests.review_helpers import agree_and_apply
from tests.study import study_config, write_study

MODEL = {"name": "consensa.SentenceTransformer.v1"}     # float32: the same vector in any batch


@pytest.fixture(scope="module")
def codebook(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    study = write_study(root / "study")
    cfg = study_config(study, embed=MODEL)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["run", str(path), "--out", str(root / "run")]) == 0
    return agree_and_apply(root / "run")


def _codes(out: Path) -> pd.DataFrame:
    seg = pd.read_parquet(out / "segments.parquet")
    return seg.set_index("segment_id")[["status", "category_id"]].sort_index()


@pytest.mark.slow
def test_shards_code_as_one_process_does_and_a_stopped_job_goes_on(codebook, tmp_path,
                                                                   monkeypatch, capsys):
    new = write_study(tmp_path / "new", n_cases=5)
    one = tmp_path / "one"
    assert main(["precode", str(codebook), "--transcripts", str(new), "--out", str(one)]) == 0
    sharded = tmp_path / "sharded"
    # the job stops after its shards are done, before the output is written
    real = precode_mod.os.replace

    def stop(src, dst):
        if Path(dst) == sharded:
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(precode_mod.os, "replace", stop)
    with pytest.raises(KeyboardInterrupt):
        precode_mod.precode(codebook, new, out=sharded, engine="local", shard_size=2)
    assert not sharded.exists()
    parts = sorted((sharded.parent / ".sharded.shards" / "parts").glob("part=*.parquet"))
    assert len(parts) == 3                                  # 5 files in shards of 2
    monkeypatch.setattr(precode_mod.os, "replace", real)
    capsys.readouterr()
    assert main(["precode", str(codebook), "--transcripts", str(new), "--out", str(sharded),
                 "--engine", "local", "--shard-size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "shards: 3 on local (0 run now, 3 finished by an earlier job)" in printed
    shards = json.loads((sharded / "manifest.json").read_text())["shards"]
    assert shards["computed"] == 0 and shards["skipped"] == 3 and not shards["failed"]
    assert not (sharded.parent / ".sharded.shards").exists()
    got, want = _codes(sharded), _codes(one)
    assert list(got.index) == list(want.index)              # every segment once, none lost
    assert (got["category_id"] == want["category_id"]).mean() >= 0.95


@pytest.mark.slow
def test_shards_run_on_a_dask_local_cluster_the_cluster_file_describes(codebook, tmp_path):
    new = write_study(tmp_path / "new", n_cases=4)
    one, dask = tmp_path / "one", tmp_path / "dask"
    cluster = tmp_path / "engine.yaml"
    cluster.write_text("engine:\n  kind: localcluster\n  n_workers: 2\n", encoding="utf-8")
    assert main(["precode", str(codebook), "--transcripts", str(new), "--out", str(one)]) == 0
    assert main(["precode", str(codebook), "--transcripts", str(new), "--out", str(dask),
                 "--engine", "dask", "--shard-size", "2", "--cluster", str(cluster)]) == 0
    m = json.loads((dask / "manifest.json").read_text())
    assert m["shards"]["engine"].startswith("dask") and m["shards"]["computed"] == 2
    got, want = _codes(dask), _codes(one)
    assert list(got.index) == list(want.index)
    assert (got["category_id"] == want["category_id"]).mean() >= 0.95


def test_a_sharded_precoding_needs_out_and_a_shared_embedding_space(tmp_path, study_run, capsys):
    run = Path(shutil.copytree(study_run(), tmp_path / "run"))      # TF-IDF embeddings
    cb = agree_and_apply(run)
    new = write_study(tmp_path / "new", n_cases=2)
    assert main(["precode", str(cb), "--transcripts", str(new), "--engine", "local"]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["precode", str(cb), "--transcripts", str(new), "--engine", "local",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "embed.name" in err and "shards would not share one space" in err
    assert main(["precode", str(cb), "--transcripts", str(new), "--scheduler",
                 "tcp://127.0.0.1:1", "--out", str(tmp_path / "o")]) == 2
    assert "--engine dask" in capsys.readouterr().err
    # a cluster file with a fault is refused before anything runs, naming the key
    bad = tmp_path / "engine.yaml"
    bad.write_text("engine:\n  kind: slurm\n  cores: 0\n  memory: 16GB\n  walltime: '02:00:00'\n",
                   encoding="utf-8")
    assert main(["precode", str(cb), "--transcripts", str(new), "--engine", "dask",
                 "--cluster", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "engine.cores" in err and "engine.yaml" in err and "Traceback" not in err
    assert not (tmp_path / ".o.shards").exists()
