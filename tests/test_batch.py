"""``consensa batch``: many configs, sweeps, failures recorded, parallel runs."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.batch import load_plans, plan_batch, safe_name
from pipeline.cache import Cache
from pipeline.cli import main
from pipeline.config import validate_config
from pipeline.errors import ConfigError
from pipeline.run import run
from tests.study import study_config, write_study
from tests.test_report import parse

FAST = {"embed": {"name": "consensa.TfidfSVD.v1", "n_components": 20},
        "reduce": {"name": "consensa.Identity.v1"},
        "cluster": {"name": "consensa.KMeans.v1", "n_clusters": 3}}


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return write_study(tmp_path_factory.mktemp("batch") / "interviews")


def write_config(folder: Path, file: str, study: Path, **changes) -> Path:
    data = study_config(study, **FAST)
    data.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / file).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return folder / file


def summary(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "batch_summary.csv", keep_default_na=False, na_values=[""])


def test_a_broken_config_is_reported_and_the_batch_goes_on(study, tmp_path, capsys):
    configs = tmp_path / "configs"
    write_config(configs, "a_good.yaml", study, name="good-one")
    write_config(configs, "b_typo.yaml", study, name="typo",
                 cluster={"name": "consensa.KMeans.v1", "n_clustres": 3})
    write_config(configs, "c_no_input.yaml", study, name="no-input",
                 ingest={"paths": [str(tmp_path / "missing")]})
    write_config(configs, "d_good.yaml", study, name="good-two", seed=3)
    (configs / "notes.txt").write_text("not a config")
    out = tmp_path / "batch"

    assert main(["batch", str(configs), "--out", str(out)]) == 1

    table = summary(out)
    # a config that cannot be read, or names no input, is listed under its file name
    assert table["run"].tolist() == ["good-one", "b_typo", "c_no_input", "good-two"]
    assert table["status"].tolist() == ["ok", "failed", "failed", "ok"]
    errors = dict(zip(table["run"], table["error"].fillna("")))
    assert "b_typo.yaml" in errors["b_typo"] and "cluster.n_clustres" in errors["b_typo"]
    assert "no transcript" in errors["c_no_input"] and "missing" in errors["c_no_input"]
    for name in ("good-one", "good-two"):
        row = table.set_index("run").loc[name]
        assert (out / name / "report.html").is_file()
        assert row["report"] == f"{name}/report.html"
        assert row["themes"] == 3 and row["n_general"] + row["n_typical"] + row["n_variant"] \
            + row["n_rare"] + row["n_single_case"] == 3
        assert 0 <= row["outlier_share"] <= 1 and row["wall_time_s"] > 0
    assert not (out / "b_typo").exists() and not (out / "c_no_input").exists()
    printed = capsys.readouterr().out
    assert "2 of 4 runs succeeded" in printed and "cluster.n_clustres" in printed

    index = (out / "index.html").read_text(encoding="utf-8")
    doc = parse(index)
    assert doc.errors == [] and doc.stack == []
    assert sorted(doc.urls) == ["good-one/report.html", "good-two/report.html"]
    assert "n_clustres" in index and "http" not in index.replace("http-equiv", "")


def test_a_two_by_two_sweep_names_runs_by_their_parameters(study, tmp_path, capsys):
    path = write_config(tmp_path, "sweep.yaml", study, name="mini",
                        sweep={"cluster.n_clusters": [2, 3], "embed.n_components": [10, 20]},
                        stability={"resamples": 4})
    out = tmp_path / "batch"
    assert main(["batch", str(path), "--out", str(out)]) == 0

    table = summary(out)
    expected = [(2, 10), (2, 20), (3, 10), (3, 20)]
    assert list(zip(table["cluster.n_clusters"], table["embed.n_components"])) == expected
    names = [f"mini__cluster.n_clusters={k}__embed.n_components={d}" for k, d in expected]
    assert table["run"].tolist() == names
    assert table["parameters"].tolist() == [f"cluster.n_clusters={k}; embed.n_components={d}"
                                           for k, d in expected]
    assert (table["status"] == "ok").all() and table["themes"].tolist() == [2, 2, 3, 3]
    for name, (k, d) in zip(names, expected):
        folder = out / name
        cfg = yaml.safe_load((folder / "config.yaml").read_text())
        assert cfg["cluster"]["n_clusters"] == k and cfg["embed"]["n_components"] == d
        assert cfg["name"] == name       # as its folder in the batch names it
        assert (folder / "stability.csv").is_file()
        assert "stability" in pd.read_csv(folder / "themes.csv").columns
    assert table["stability"].between(0, 1).all()
    assert (table["n_unstable"] >= 0).all()
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="mini__cluster.n_clusters=2__embed.n_components=10/report.html"' in index
    assert "Stability" in index


def test_an_unknown_sweep_key_names_the_file_and_the_key(study, tmp_path):
    path = write_config(tmp_path, "typo.yaml", study,
                        sweep={"cluster.n_clusters": [2, 3], "cluster.min_cluster_sise": [5]})
    with pytest.raises(ConfigError) as e:
        load_plans(path)
    msg = str(e.value)
    assert str(path) in msg and "sweep.cluster.min_cluster_sise" in msg
    assert "not a known setting" in msg

    bad_value = write_config(tmp_path, "value.yaml", study, sweep={"cluster.n_clusters": ["many"]})
    with pytest.raises(ConfigError, match="cluster.n_clusters"):
        load_plans(bad_value)
    not_a_list = write_config(tmp_path, "scalar.yaml", study, sweep={"cluster.n_clusters": 4})
    with pytest.raises(ConfigError, match="non-empty list"):
        load_plans(not_a_list)
    # in a batch it is one failed row, with the same message
    plans = plan_batch([str(path)])
    assert len(plans) == 1 and "sweep.cluster.min_cluster_sise" in plans[0].error


def test_run_refuses_a_config_with_a_sweep(study, tmp_path, capsys):
    path = write_config(tmp_path, "sweep.yaml", study, sweep={"cluster.n_clusters": [2, 3]})
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "sweep: section" in err and "consensa batch" in err and "Traceback" not in err


def test_jobs_2_runs_in_parallel_processes_with_the_same_results(study, tmp_path):
    configs = tmp_path / "configs"
    write_config(configs, "a.yaml", study, name="first")
    write_config(configs, "b.yaml", study, name="second", seed=11,
                 cluster={"name": "consensa.KMeans.v1", "n_clusters": 2})
    out = tmp_path / "batch"
    assert main(["batch", str(configs / "a.yaml"), str(configs / "b.yaml"),
                 "--jobs", "2", "--out", str(out)]) == 0
    table = summary(out)
    assert table["status"].tolist() == ["ok", "ok"] and table["themes"].tolist() == [3, 2]
    # the same config run in this process gives the same themes
    cfg = validate_config(yaml.safe_load((configs / "a.yaml").read_text()))
    here = run(cfg, tmp_path, tmp_path / "here")
    assert (here / "themes.csv").read_bytes() == (out / "first" / "themes.csv").read_bytes()


def test_existing_out_folder_is_refused(study, tmp_path, capsys):
    path = write_config(tmp_path, "a.yaml", study)
    out = tmp_path / "used"
    out.mkdir()
    (out / "something").write_text("x")
    assert main(["batch", str(path), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_two_configs_with_one_name_get_two_folders(study, tmp_path):
    a = write_config(tmp_path, "a.yaml", study, name="same")
    b = write_config(tmp_path, "b.yaml", study, name="same")
    assert [p.run for p in plan_batch([str(a), str(b)])] == ["same", "same-2"]


def test_safe_names():
    assert safe_name("mini__label.extra_stop_words=[\"um\",\"uh\"]") == \
        "mini__label.extra_stop_words=_um_,_uh"
    assert safe_name("a/b c:d") == "a_b_c_d"
    assert safe_name(".hidden") == "_.hidden"
    long_a, long_b = safe_name("x" * 300 + "a"), safe_name("x" * 300 + "b")
    assert len(long_a) <= 120 and long_a != long_b


def _hammer(args):
    path, worker = args
    cache = Cache(Path(path))
    rng = np.random.default_rng(worker)
    for _ in range(15):
        keys = sorted({f"k{j}" for j in rng.integers(0, 100, 40)})
        found = cache.get_vectors("model", keys)
        cache.put_vectors("model", {k: np.full(8, int(k[1:]), np.float32) for k in keys
                                    if k not in found})
    assert not cache.reported                 # no write was lost to a busy database
    return len(cache.get_vectors("model", [f"k{j}" for j in range(100)]))


def test_the_embedding_cache_takes_parallel_processes(tmp_path):
    path = tmp_path / "fresh"
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as pool:
        counts = list(pool.map(_hammer, [(str(path), w) for w in range(3)]))
    assert all(c > 0 for c in counts)
    vecs = Cache(path).get_vectors("model", [f"k{j}" for j in range(100)])
    assert all(float(v[0]) == int(k[1:]) for k, v in vecs.items())


def test_a_protocol_file_beside_the_configs_is_not_taken_for_a_config(study, tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    write_config(folder, "a.yaml", study)
    (folder / "protocol.yaml").write_text(
        "areas:\n  - name: Coping\n    questions:\n      - How did you cope?\n", encoding="utf-8")
    notes: list[str] = []
    plans = plan_batch([str(folder)], notes=notes)
    assert [Path(p.config).name for p in plans] == ["a.yaml"] and not plans[0].error
    assert len(notes) == 1 and "protocol.yaml: a protocol file, not a config" in notes[0]


def test_a_cqr_run_is_summarised_in_categories(study, tmp_path, capsys):
    configs = tmp_path / "configs"
    write_config(configs, "a_themes.yaml", study, name="themes-run")
    write_config(configs, "b_cqr.yaml", study, name="cqr-run", analysis="consensa.CQR.v1")
    out = tmp_path / "batch"
    assert main(["batch", str(configs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = summary(out).set_index("run")
    assert f"themes-run: {table.loc['themes-run', 'themes']} themes," in printed
    assert f"cqr-run: {table.loc['cqr-run', 'themes']} categories," in printed
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "Themes or categories</th>" in index
    out_cqr = tmp_path / "batch-cqr"
    assert main(["batch", str(configs / "b_cqr.yaml"), "--out", str(out_cqr)]) == 0
    index = (out_cqr / "index.html").read_text(encoding="utf-8")
    assert ">Categories</th>" in index and ">Themes</th>" not in index


def test_the_interview_frame_is_not_counted_among_the_domains(study, tmp_path, capsys):
    """The batch counts a CQR run's domains as the run's own summary does: the interview
    frame is set apart from the cross-analysis, so it is named, not counted."""
    configs = tmp_path / "configs"
    config = write_config(configs, "cqr.yaml", study, name="cqr-run",
                          analysis="consensa.CQR.v1")
    single = tmp_path / "single"
    assert main(["run", str(config), "--out", str(single)]) == 0
    said = capsys.readouterr().out
    assert "and the interview frame" in said           # the study has a frame
    n_domains = int(said.split("domains: ", 1)[1].split()[0])
    out = tmp_path / "batch"
    assert main(["batch", str(configs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{n_domains} domains and the interview frame," in printed
    row = summary(out).set_index("run").loc["cqr-run"]
    assert int(row["domains"]) == n_domains and int(row["interview_frame"]) == 1
    index = (out / "index.html").read_text(encoding="utf-8")
    assert f'<td class="num">{n_domains} and the interview frame</td>' in index


def test_a_set_of_a_swept_key_is_refused_naming_it(study, tmp_path, capsys):
    """`consensa batch CFG --set KEY=V` of a key the sweep sets was ignored without a
    word: every run took its swept value. It is refused, naming the key and the sweep;
    a --set of another key is taken."""
    path = write_config(tmp_path, "sweep.yaml", study, name="mini",
                        sweep={"cluster.n_clusters": [2, 3]})
    out = tmp_path / "batch"
    assert main(["batch", str(path), "--set", "cluster.n_clusters=4", "--out", str(out)]) == 1
    said = " ".join(capsys.readouterr().out.split())
    assert "--set cluster.n_clusters=4 (sweep: cluster.n_clusters: [2, 3])" in said, said
    assert not any(p.is_dir() for p in out.iterdir())               # no run was made
    # a whole section set over a swept key is refused too
    with pytest.raises(ConfigError, match=r"--set cluster=.*sweep: cluster.n_clusters"):
        load_plans(path, ['cluster={"name": "consensa.KMeans.v1", "n_clusters": 4}'])
    capsys.readouterr()
    assert main(["validate", str(path), "--set", "cluster.n_clusters=4"]) == 2
    assert "--set cluster.n_clusters=4 (sweep: cluster.n_clusters" in capsys.readouterr().err


def test_every_batch_run_records_the_config_given(study, tmp_path):
    """A batch run's manifest lacked config_given (the config file, its sha256 and the
    --set settings), which the README's manifest table promises; a run of a sweep
    also records the values it took."""
    import hashlib
    import json

    path = write_config(tmp_path, "sweep.yaml", study, name="mini",
                        sweep={"cluster.n_clusters": [2, 3]})
    out = tmp_path / "batch"
    assert main(["batch", str(path), "--set", "seed=11", "--out", str(out)]) == 0
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    for k in (2, 3):
        manifest = json.loads((out / f"mini__cluster.n_clusters={k}" / "manifest.json").read_text())
        assert manifest["config_given"] == {"path": str(path.resolve()), "sha256": sha,
                                            "set": ["seed=11"], "sweep": {"cluster.n_clusters": k}}
        assert manifest["seed"] == 11
