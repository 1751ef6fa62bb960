"""The whole pipeline on small studies written for these tests."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.cli import main
from pipeline.config import validate_config
from pipeline.errors import ConfigError, InputError
from pipeline.run import run
from pipeline.types import ASSIGNED_SEGMENT_COLUMNS, CQR_COLUMNS, DOMAIN_COLUMNS, THEME_COLUMNS
from tests.study import TOPICS, study_config, write_study

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def study(tmp_path):
    return write_study(tmp_path / "study")


def write_config(folder, data):
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_cli_run_writes_a_complete_run_folder(study, capsys):
    cfg = write_config(study.parent, study_config(study))
    out = study.parent / "out"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "themes: 3" in printed and str(out / "report.html") in printed
    for name in ("segments.parquet", "segments.csv", "themes.csv", "domains.csv", "cqr_table.md",
                 "cqr_table.csv", "config.yaml", "manifest.json", "report.html"):
        assert (out / name).is_file(), name
    seg = pd.read_parquet(out / "segments.parquet")
    assert list(seg.columns) == list(ASSIGNED_SEGMENT_COLUMNS)
    assert list(pd.read_csv(out / "themes.csv").columns) == list(THEME_COLUMNS)
    assert list(pd.read_csv(out / "domains.csv").columns) == list(DOMAIN_COLUMNS)
    assert list(pd.read_csv(out / "cqr_table.csv").columns) == list(CQR_COLUMNS)
    # every quote points back to the exact place in its transcript
    for row in seg.itertuples():
        source = Path(row.source_file).read_text(encoding="utf-8")
        assert source[row.start_char:row.end_char] == row.text
    # the three topics come back as three themes, each from one topic's sentences
    topic_of = {s: t for t, ss in TOPICS.items() for s in ss}
    for theme, group in seg.groupby("theme"):
        topics = {topic_of.get(t) for t in group["text"] if t in topic_of}
        assert len(topics) == 1, f"theme {theme} mixes {topics}"
    assert (seg["question"] != "").all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["cases_analysed"] == 6 and manifest["seed"] == 7
    assert set(manifest["timings"]) >= {"ingest", "segment", "embed", "reduce", "cluster", "label",
                                        "domains", "map", "write"}
    assert len(manifest["inputs"]) == 6 and all(len(i["sha256"]) == 64 for i in manifest["inputs"])
    assert any("backchannel" in s["reason"] for s in manifest["skipped"])
    # the CPU kernels the results depend on, beside the versions
    assert manifest["kernels"]["numpy"] and manifest["kernels"]["blas"]
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["cluster"] == {"name": "consensa.KMeans.v1", "n_clusters": 3, "random_state": None}
    themes = pd.read_csv(out / "themes.csv")
    assert (themes["n_cases"] == 6).all() and (themes["frequency_label"] == "general").all()
    html = (out / "report.html").read_text()
    assert all(q in html for q in themes["core_idea"])


def test_a_run_never_overwrites_an_existing_run_folder(study, capsys):
    cfg = write_config(study.parent, study_config(study))
    out = study.parent / "out"
    out.mkdir()
    (out / "decisions.sqlite").write_text("judges' work")
    assert main(["run", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "never overwrites" in err and "Traceback" not in err
    assert (out / "decisions.sqlite").read_text() == "judges' work"
    assert not list(study.parent.glob(".out.partial*"))


def test_two_runs_of_one_config_give_identical_assignments(study):
    cfg = validate_config(study_config(study))
    a = run(cfg, study, study.parent / "a")
    b = run(cfg, study, study.parent / "b")
    sa, sb = pd.read_parquet(a / "segments.parquet"), pd.read_parquet(b / "segments.parquet")
    pd.testing.assert_frame_equal(sa, sb)
    pd.testing.assert_frame_equal(pd.read_csv(a / "themes.csv"), pd.read_csv(b / "themes.csv"))
    assert (a / "cqr_table.md").read_text() == (b / "cqr_table.md").read_text()


def test_warm_cache_embeds_nothing_new(tmp_path):
    study = write_study(tmp_path / "s")
    cfg = validate_config(study_config(study, embed={"name": "consensa.SentenceTransformer.v1"}))
    first = json.loads((run(cfg, study, tmp_path / "r1") / "manifest.json").read_text())
    second = json.loads((run(cfg, study, tmp_path / "r2") / "manifest.json").read_text())
    n = first["counts"]["segment_segments"]
    assert first["counts"]["embedded"] > 0
    assert second["counts"]["embedded"] == 0 and second["counts"]["embeddings_from_cache"] > 0
    assert n == second["counts"]["segment_segments"]


def test_a_warm_run_with_another_smallest_theme_uses_the_cache_and_matches_a_cold_one(tmp_path):
    study = write_study(tmp_path / "s")
    base = study_config(study, cluster={"name": "consensa.HDBSCAN.v3", "min_cluster_size": 4})
    run(validate_config(base), study, tmp_path / "first")
    changed = {**base, "cluster": {"name": "consensa.HDBSCAN.v3", "min_cluster_size": 6}}
    warm = run(validate_config(changed), study, tmp_path / "warm")
    cold = run(validate_config({**changed, "cache_dir": str(tmp_path / "empty-cache")}), study,
               tmp_path / "cold")
    manifests = [json.loads((f / "manifest.json").read_text()) for f in (warm, cold)]
    fitted = [m["fitted"] for m in manifests]
    assert fitted[0]["reduce"]["from_cache_"] is True and fitted[1]["reduce"]["from_cache_"] is False
    assert fitted[0]["cluster"]["min_samples_"] == fitted[1]["cluster"]["min_samples_"]
    sw, sc = pd.read_parquet(warm / "segments.parquet"), pd.read_parquet(cold / "segments.parquet")
    pd.testing.assert_frame_equal(sw, sc)
    assert sw["theme"].nunique() >= 2


def test_the_number_of_themes_k_means_used_is_in_the_manifest(study):
    """k-means asked for more themes than there are segments uses as many as there are;
    that went without a trace (the manifest's fitted cluster state was empty)."""
    cfg = write_config(study.parent, study_config(
        study, cluster={"name": "consensa.KMeans.v1", "n_clusters": 1000}))
    out = study.parent / "many"
    assert main(["run", str(cfg), "--out", str(out), "-q"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    n = len(pd.read_parquet(out / "segments.parquet"))
    assert manifest["fitted"]["cluster"]["n_clusters_"] == n < 1000


def test_bad_config_and_bad_input_exit_2_without_traceback(study, capsys):
    bad = write_config(study.parent, {**study_config(study), "clustr": {}})
    assert main(["validate", str(bad)]) == 2
    assert "'clustr' is not a known setting" in capsys.readouterr().err
    empty = study.parent / "empty"
    empty.mkdir()
    cfg = write_config(study.parent, study_config(empty))
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "Traceback" not in err


def test_a_broken_file_is_skipped_and_reported_while_the_rest_runs(study):
    (study / "broken.docx").write_bytes(b"PK\x03\x04 this is not a real docx")
    out = run(validate_config(study_config(study)), study, study.parent / "out")
    manifest = json.loads((out / "manifest.json").read_text())
    skipped = [s for s in manifest["skipped"] if "broken.docx" in s["what"]]
    assert len(skipped) == 1 and manifest["counts"]["cases_analysed"] == 6
    assert "broken.docx" in (out / "report.html").read_text()


def test_sensitizing_concepts_are_matched_or_reported_unsupported(study):
    concepts = {"items": [{"name": "training gaps", "description": "training program never taught tears"},
                          {"name": "medication", "description": "dosage of antidepressant pills"}],
                "segment_threshold": 0.3}
    out = run(validate_config(study_config(study, concepts=concepts)), study, study.parent / "out")
    table = pd.read_csv(out / "concepts.csv", dtype=str, keep_default_na=False)
    assert table["status"].tolist() == ["supported", "unsupported"]
    # the segments a concept's support counts are listed: each is one of the run's
    seg = pd.read_parquet(out / "segments.parquet")
    for r in table.itertuples():
        ids = [s for s in r.segment_ids.split("; ") if s]
        assert len(ids) == int(r.n_segments) and set(ids) <= set(seg["segment_id"])
        assert set(r.quote_ids.split("; ")) <= set(ids) or not r.quote_ids
        assert len({s.split(":")[0] for s in ids}) == int(r.n_cases)
    # a run folder written before the column still renders
    old = pd.read_parquet(out / "concepts.parquet").drop(columns=["segment_ids"])
    old.to_parquet(out / "concepts.parquet", index=False)
    from pipeline.runfolder import RunFolder
    assert RunFolder.open(out).result().concepts["segment_ids"].tolist() == [[], []]
    themes = pd.read_csv(out / "themes.csv")
    best = int(table.loc[0, "theme_ids"].split(";")[0])
    assert "train" in themes.loc[themes["theme_id"] == best, "keywords"].iloc[0]


@pytest.mark.slow
def test_demo_study_with_the_default_pipeline(tmp_path):
    """The bundled demo, real model, the whole-corpus themes (consensa.Themes.v1; the
    demo's CQR analysis is tested in test_analysis.py): themes a reader recognises,
    the same twice and the same under another seed (the spectral reduction has none)."""
    from pipeline.config import load_config

    themes = "analysis=consensa.Themes.v1"
    cfg, base = load_config(ROOT / "configs" / "demo.yaml", [f"cache_dir={tmp_path / 'cache'}", themes])
    a = run(cfg, base, tmp_path / "a")
    b = run(cfg, base, tmp_path / "b")
    sa, sb = pd.read_parquet(a / "segments.parquet"), pd.read_parquet(b / "segments.parquet")
    assert sa["theme"].tolist() == sb["theme"].tolist()
    fitted_b = json.loads((b / "manifest.json").read_text())["fitted"]["reduce"]
    assert fitted_b["from_cache_"] is True
    assert len(list((tmp_path / "cache" / "spans").glob("*.npz"))) == 1    # spans reused
    pd.testing.assert_frame_equal(sa, sb)
    other, _ = load_config(ROOT / "configs" / "demo.yaml",
                           [f"cache_dir={tmp_path / 'cache'}", "seed=7", themes])
    sc = pd.read_parquet(run(other, base, tmp_path / "c") / "segments.parquet")
    assert sc["theme"].tolist() == sa["theme"].tolist()
    assert sc["map_x"].tolist() != sa["map_x"].tolist()       # the map is UMAP: seeded
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["counts"]["cases_analysed"] == 10
    assert manifest["outlier_share"] <= 0.15
    themes = pd.read_csv(a / "themes.csv")
    assert len(themes) >= 6
    words = " ".join(themes["keywords"])
    assert {"supervisor", "taught", "training"} <= set(words.replace(";", " ").split())
    concepts = pd.read_csv(a / "concepts.csv")
    assert (concepts["status"] == "supported").all()


def test_a_smallest_theme_the_study_cannot_hold_stops_the_run_before_embedding(study, capsys,
                                                                              caplog):
    data = study_config(study, cluster={"name": "consensa.HDBSCAN.v1", "min_cluster_size": 1000})
    with pytest.raises(ConfigError) as e, caplog.at_level("INFO", logger="consensa"):
        run(validate_config(data), study, study.parent / "out")
    stages = [r.getMessage() for r in caplog.records if r.name == "consensa.run"]
    assert stages == ["ingest ...", "segment ..."]          # no embedding, no "themes: 0"
    assert "'cluster.min_cluster_size': 1000 is more than the study's 72 segments" in str(e.value)
    assert "at most 36" in str(e.value)
    assert main(["run", str(write_config(study.parent, data))]) == 2
    err = capsys.readouterr().err
    assert "cluster.min_cluster_size" in err and "Traceback" not in err
    assert not (study.parent / "out").exists() and not (study / "runs").exists()


def test_a_run_that_finds_no_theme_stops_with_what_to_change(study):
    # 2 x 30 <= 72 segments, so themes are possible, but the three topics (24 segments
    # each) cannot split into parts of 30: HDBSCAN leaves every segment an outlier
    data = study_config(study, cluster={"name": "consensa.HDBSCAN.v1", "min_cluster_size": 30})
    with pytest.raises(InputError) as e:
        run(validate_config(data), study, study.parent / "out")
    msg = str(e.value)
    assert "no themes found" in msg and "all 72 segments" in msg
    assert "cluster.min_cluster_size (it was 30)" in msg
    assert not (study.parent / "out").exists()


def test_a_run_of_as_many_dimensions_as_segments_says_so_not_the_cluster_settings(study):
    # a sweep's largest n_components: the spectral map is cut to the 72 segments and
    # padded, and nothing is dense; the cluster settings are not what to change
    data = study_config(study, reduce={"name": "consensa.Spectral.v1", "n_components": 1000},
                        cluster={"name": "consensa.HDBSCAN.v1", "min_cluster_size": 5})
    with pytest.raises(InputError) as e:
        run(validate_config(data), study, study.parent / "out")
    assert "reduce.n_components (1000) is as many as the segments" in str(e.value)
    assert "cluster.min_cluster_size" not in str(e.value)


def test_an_existing_out_folder_is_refused_before_any_work(study, tmp_path, monkeypatch):
    import pipeline.run as run_module
    from pipeline.precode import precode

    def no_work(*args, **kwargs):
        raise AssertionError("the pipeline ran although its output folder exists")

    taken = tmp_path / "taken"
    taken.mkdir()
    monkeypatch.setattr(run_module, "build", no_work)
    cfg = validate_config(study_config(study))
    with pytest.raises(InputError, match="exists already"):
        run(cfg, tmp_path, out=taken)
    # pre-coding too: refused before the codebook is even read
    with pytest.raises(InputError, match="exists already"):
        precode(tmp_path / "no-codebook.yaml", study, out=taken)


def test_the_manifest_says_when_pytorch_computed_nothing():
    """A run whose vectors all came from the cache recorded no "torch" kernels at all,
    which read as if they were unknown; it now says PyTorch was not loaded."""
    import subprocess
    import sys

    code = ("import json, sys; from pipeline.run import kernels; "
            "print(json.dumps(['torch' in sys.modules, kernels().get('torch')]))")
    loaded, said = json.loads(subprocess.run([sys.executable, "-c", code], check=True,
                                             capture_output=True, text=True).stdout)
    assert not loaded and said.startswith("not loaded: no stage of this process computed")


def test_two_runs_started_in_the_same_second_each_get_a_folder(tmp_path):
    """Two runs of one config started in the same second were given one folder name:
    the second did all its work, then failed with "Directory not empty" and left its
    hidden .partial folder behind. A run named by its time takes the next free name;
    one named by --out stops, naming the folder; neither leaves anything behind."""
    from pipeline.run import _free, _publish

    def made(name: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "manifest.json").write_text(name)
        return folder

    first = made("study-20261207-204235")
    assert _free(first) == tmp_path / "study-20261207-204235-2"
    went = _publish(made(".study.partial-2"), first, named=False)
    assert went == tmp_path / "study-20261207-204235-2"
    assert (went / "manifest.json").read_text() == ".study.partial-2"
    assert (first / "manifest.json").read_text() == "study-20261207-204235"
    with pytest.raises(InputError, match="exists already"):
        _publish(made(".study.partial-3"), first, named=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "study-20261207-204235", "study-20261207-204235-2"]


def test_the_manifest_names_the_kernels_an_avx512_machine_computes_with_as_avx2():
    """Two machines with the same versions compute different runs when their kernels
    differ (OpenBLAS's AVX-512 ones chose another sentence for a demo core idea): the
    manifest says which ran, and the settings that make an AVX-512 machine compute
    as an AVX2 one show there."""
    import os
    import subprocess
    import sys

    from pipeline.run import kernels

    here = kernels()
    if "X86_V3" not in here["numpy"]:
        pytest.skip("a CPU without AVX2: nothing to pin")
    code = "import json; from pipeline.run import kernels; print(json.dumps(kernels()))"
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
           "OPENBLAS_CORETYPE": "Haswell"}
    pinned = json.loads(subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                                       capture_output=True, text=True, check=True).stdout)
    assert pinned["numpy"] == ["X86_V3"]
    assert [b.rsplit(" ", 1)[-1] for b in pinned["blas"]] == ["Haswell"]
