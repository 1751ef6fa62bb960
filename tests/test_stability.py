"""``consensa stability``: resampling, matching, the files it adds, the report section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.cli import main
from pipeline.config import validate_config
from pipeline.errors import ConfigError, ConsensaError
from pipeline.report.render import render_report
from pipeline.run import run
from pipeline.runfolder import RunFolder, read_raw_csv
from pipeline.stability import (
    STABILITY_COLUMNS,
    StabilityConfig,
    best_matches,
    compute_stability,
    parse_stability,
    plan_resamples,
    run_config,
    stability_for_run,
)
from tests.study import study_config, write_study
from tests.test_report import parse

SEPARABLE = {"embed": {"name": "consensa.TfidfSVD.v1", "n_components": 20},
             "reduce": {"name": "consensa.Identity.v1"},
             "cluster": {"name": "consensa.KMeans.v1", "n_clusters": 3}}

# Sentences of random words from one pool: no themes to find, so k-means cuts the
# cloud wherever the sample and the seed push it.
WORDS = ("session client tears supervisor training feeling moment grief trust silence room "
         "week mother story voice hands shame relief colleague course father loss answer "
         "question memory office chair door window morning evening letter phone book music "
         "garden river winter summer train bridge city paper glass stone light shadow").split()


def write_noise_study(folder: Path, n_cases: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for c in range(n_cases):
        lines = []
        for _ in range(6):
            said = " ".join(" ".join(rng.choice(WORDS, 8, replace=False)).capitalize() + "."
                            for _ in range(2))
            lines += ["Interviewer: Tell me more.", "", f"Therapist: {said}", ""]
        (folder / f"case{c + 1:02d}.txt").write_text("\n".join(lines), encoding="utf-8")
    return folder


def make_run(folder: Path, study: Path, **sections) -> Path:
    cfg = validate_config(study_config(study, **{**SEPARABLE, **sections}))
    return run(cfg, folder, folder / "run")


@pytest.fixture(scope="module")
def separable(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("separable")
    return make_run(base, write_study(base / "interviews"))


@pytest.fixture(scope="module")
def noise(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("noise")
    return make_run(base, write_noise_study(base / "interviews"),
                    cluster={"name": "consensa.KMeans.v1", "n_clusters": 5})


def test_cli_writes_stability_files_and_the_themes_column(separable, capsys):
    before = read_raw_csv(separable / "themes.csv")
    assert main(["stability", str(separable), "--resamples", "12", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "unstable themes: 0 of 3" in out
    assert "stability.md, themes.csv (column 'stability'), report.html" in out   # a themes run

    table = pd.read_csv(separable / "stability.csv")
    assert tuple(table.columns) == STABILITY_COLUMNS
    assert table["theme_id"].tolist() == before["theme_id"].astype(int).tolist()
    for col in ("reappearance", "mean_jaccard", "label_change_rate", "reappearance_leave_out",
                "reappearance_bootstrap"):
        assert table[col].between(0, 1).all(), col
    assert table["stable"].all() and (table["resamples"] == 12).all()

    after = read_raw_csv(separable / "themes.csv")
    assert after["stability"].tolist() == ["stable"] * 3
    pd.testing.assert_frame_equal(after.drop(columns="stability"), before)  # nothing else changed

    md = (separable / "stability.md").read_text(encoding="utf-8")
    assert "Overall stability" in md and "| Theme |" in md
    assert "6 leaving 1 case out" in md and "6 bootstrap" in md and "reproduced" in md

    html = (separable / "report.html").read_text(encoding="utf-8")
    doc = parse(html)
    assert doc.errors == [] and doc.stack == [] and len(doc.ids) == len(set(doc.ids))
    assert 'id="stability"' in html and 'href="#stability"' in html
    assert "stability-unstable" not in html.split("</style>")[1]


def test_an_arbitrary_split_is_found_unstable(noise, separable):
    result = stability_for_run(noise, StabilityConfig(resamples=12))
    assert result.n_unstable >= 1
    stable = dict(zip(result.table["theme_id"], result.table["stable"]))
    themes = pd.read_csv(noise / "themes.csv")
    assert [("stable" if stable[t] else "unstable") for t in themes["theme_id"]] == \
        themes["stability"].tolist()
    html = (noise / "report.html").read_text(encoding="utf-8")
    cards = html[html.index('<section id="themes">'):html.index('<section id="stability">')]
    assert cards.count('class="badge stability-unstable">unstable</span></h3>') == result.n_unstable
    assert parse(html).errors == []
    # the separable study's themes, checked the same way (this test does not rely on
    # another one having checked them first: tests may run in any order, or apart)
    sep = stability_for_run(separable, StabilityConfig(resamples=12, seed=5)).table
    assert result.overall < sep["reappearance"].min()


def test_the_same_seed_gives_the_same_files(tmp_path):
    run_dir = make_run(tmp_path, write_study(tmp_path / "interviews"))
    files = ("stability.csv", "stability.md", "themes.csv", "report.html")
    stability_for_run(run_dir, StabilityConfig(resamples=8, seed=1))
    first = {f: (run_dir / f).read_bytes() for f in files}
    stability_for_run(run_dir, StabilityConfig(resamples=8, seed=1))
    assert {f: (run_dir / f).read_bytes() for f in files} == first


def test_the_report_rendered_from_the_folder_is_the_runs_own(tmp_path):
    run_dir = make_run(tmp_path, write_study(tmp_path / "interviews"))
    folder = RunFolder(run_dir)
    vectors = folder.vectors()           # saved by the run: the theme tree is drawn again
    assert vectors.dtype == np.float32 and len(vectors) == len(folder.segments())
    assert render_report(folder.result()) == (run_dir / "report.html").read_text(encoding="utf-8")


def test_leave_out_resamples_withhold_each_case_once_before_repeating():
    cases = np.repeat(["a", "b", "c", "d"], 5)
    plan = plan_resamples(cases, StabilityConfig(resamples=10, leave_out=1), seed=3)
    lo = [r for r in plan if r.kind == "leave-out"]
    bs = [r for r in plan if r.kind == "bootstrap"]
    assert len(lo) == 5 and len(bs) == 5
    assert sorted(r.withheld for r in lo[:4]) == [("a",), ("b",), ("c",), ("d",)]
    for r in lo:
        assert not set(cases[r.index]) & set(r.withheld) and len(r.index) == 15
    for r in bs:
        assert np.all(np.diff(r.index) > 0) and len(r.index) < 20
    assert len({r.seed for r in plan}) == len(plan)
    again = plan_resamples(cases, StabilityConfig(resamples=10, leave_out=1), seed=3)
    assert all(np.array_equal(a.index, b.index) and a.seed == b.seed for a, b in zip(plan, again))


def test_best_matches_uses_jaccard_over_the_members_present():
    original = np.array([0, 0, 0, 0, 1, 1, 1, -1])
    new = np.array([5, 5, 5, 2, 2, 2, 2, 2])
    best, match, present = best_matches(original, new, 2)
    assert present.tolist() == [4, 3]
    assert match.tolist() == [5, 2]
    assert best[0] == pytest.approx(3 / 4) and best[1] == pytest.approx(3 / 5)


def test_label_change_counts_leave_out_resamples_that_change_the_cqr_label():
    # five cases; theme 0 in every case (general), theme 1 in three (typical): leaving any
    # one case out makes theme 1 variant (2 of 4) or general (3 of 4), never typical.
    rng = np.random.default_rng(0)
    rows, vecs = [], []
    for c in range(5):
        for theme in ([0, 1] if c < 3 else [0]):
            for _ in range(4):
                rows.append({"case_id": f"c{c}", "theme": theme})
                v = np.zeros(8)
                v[theme] = 1.0
                vecs.append(v + rng.normal(0, 0.02, 8))
    seg = pd.DataFrame(rows)
    vectors = np.asarray(vecs, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    themes = pd.DataFrame({"theme_id": [0, 1], "name": ["everyone", "some"],
                           "frequency_label": ["general", "typical"]})
    cfg = validate_config({"reduce": {"name": "consensa.Identity.v1"},
                           "cluster": {"name": "consensa.KMeans.v1", "n_clusters": 2}})
    res = compute_stability(seg, themes, vectors, cfg,
                            StabilityConfig(resamples=5, bootstrap=False), check_reproduction=False)
    t = res.table.set_index("theme_id")
    assert res.n_leave_out == 5 and res.n_bootstrap == 0
    assert t.loc[0, "reappearance"] == 1 and t.loc[1, "reappearance"] == 1
    assert t.loc[0, "label_change_rate"] == 0 and t.loc[1, "label_change_rate"] == 1
    assert res.overall == 1


def test_a_resamples_label_counts_the_cases_by_the_runs_own_rule():
    """A CQR label counts a case only through segments placed in the category (not every
    reassigned outlier); a resample's label must be counted the same way, or a category
    whose label holds reads as changing. Theme 0 has a segment in each of 10 cases, but
    only 4 cases count (variant): leaving one case out keeps it variant."""
    seg = pd.DataFrame({"case_id": [f"c{c}" for c in range(10)], "theme": [0] * 10})
    themes = pd.DataFrame({"theme_id": [0], "name": ["some"], "frequency_label": ["variant"]})
    counted = np.array([c < 4 for c in range(10)])
    cfg = validate_config({"reduce": {"name": "consensa.Identity.v1"}})

    def regroup(x, index, seed):                # every segment back in one category
        return np.zeros(len(index), dtype=np.int64), counted[index]

    res = compute_stability(seg, themes, np.eye(10, dtype=np.float32), cfg,
                            StabilityConfig(resamples=10, bootstrap=False),
                            check_reproduction=False, regroup=regroup)
    assert res.table.loc[0, "reappearance"] == 1 and res.table.loc[0, "label_change_rate"] == 0


def test_run_honours_a_stability_section(tmp_path, capsys):
    study = write_study(tmp_path / "interviews")
    data = study_config(study, **SEPARABLE)
    data["stability"] = {"resamples": 4, "leave_out": 2, "bootstrap": False}
    path = tmp_path / "with_stability.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "--out", str(tmp_path / "r")]) == 0
    assert "stability:" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "r" / "stability.csv")
    assert len(table) == 3 and (table["resamples"] == 4).all()


def test_bad_settings_and_folders_are_clear_errors(separable, tmp_path, capsys):
    with pytest.raises(ConfigError, match="stability.threshold"):
        parse_stability({"threshold": 2})
    with pytest.raises(ConfigError, match="stability.resampels"):
        parse_stability({"resampels": 3})
    with pytest.raises(ConfigError, match="nothing to resample"):
        parse_stability({"leave_out": 0, "bootstrap": False})
    with pytest.raises(ConfigError, match="cannot leave 6 case"):
        stability_for_run(separable, StabilityConfig(leave_out=6))
    assert main(["stability", str(tmp_path)]) == 2
    assert "not a Consensa run folder" in capsys.readouterr().err
    assert main(["stability", str(separable), "--seed", "-5"]) == 2     # not a numpy traceback
    assert "'stability.seed'" in capsys.readouterr().err
    with pytest.raises(ConsensaError, match="no such run folder"):
        stability_for_run(tmp_path / "nope")


def test_the_run_records_its_cache_and_stability_resamples_the_saved_vectors(tmp_path):
    study = write_study(tmp_path / "interviews")
    cfg = validate_config({**study_config(study, **SEPARABLE), "cache_dir": "cache"})
    run_dir = run(cfg, tmp_path, tmp_path / "run")
    folder = RunFolder(run_dir)
    assert folder.cache_dir == tmp_path / "cache"          # absolute, whatever the config says
    result = stability_for_run(run_dir, StabilityConfig(resamples=4, seed=2))
    assert result.embedded == {"embedded": 0, "from_cache": 0,
                               "from_run_folder": len(folder.segments())}


def test_a_folder_without_saved_vectors_embeds_again_through_its_cache(tmp_path):
    study = write_study(tmp_path / "interviews")
    cfg = validate_config({**study_config(study, **SEPARABLE), "cache_dir": "cache"})
    run_dir = run(cfg, tmp_path, tmp_path / "run")
    want = stability_for_run(run_dir, StabilityConfig(resamples=4, seed=2)).table
    (run_dir / "vectors.npy").unlink()                      # as written by an older Consensa
    manifest = RunFolder(run_dir).manifest
    del manifest["cache_dir"]                               # nor was the cache recorded:
    RunFolder(run_dir).write_manifest(manifest)             # config cache_dir + base_dir
    assert RunFolder(run_dir).cache_dir == tmp_path / "cache"
    again = stability_for_run(run_dir, StabilityConfig(resamples=4, seed=2))
    assert again.embedded["embedded"] == len(RunFolder(run_dir).segments())  # TF-IDF: not cached
    pd.testing.assert_frame_equal(again.table, want)


def test_a_run_folder_from_before_the_context_stage_is_read_without_context(tmp_path):
    from pipeline.config import dump_yaml, resolved, validate_config

    data = resolved(validate_config({"name": "old"}))
    (tmp_path / "config.yaml").write_text(dump_yaml(data), encoding="utf-8")
    assert run_config(tmp_path).context.weight == 0.2          # written out: kept
    del data["context"]
    (tmp_path / "config.yaml").write_text(dump_yaml(data), encoding="utf-8")
    assert run_config(tmp_path).context.weight == 0.0
