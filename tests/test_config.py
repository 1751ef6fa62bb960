import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import load_config, parse_override, resolved, validate_config
from pipeline.errors import ConfigError

#: any text that can be saved as UTF-8, with YAML's line breaks often among it
_TEXT = st.text(st.one_of(st.sampled_from(list("\x85\u2028\u2029\r\n\t '\"#:-")),
                          st.characters(exclude_categories=("Cs",))), max_size=12)


def write(tmp_path, data, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def runnable(tmp_path, data):
    """``data`` with an ingest section naming a folder that exists, as a run needs."""
    (tmp_path / "interviews").mkdir(exist_ok=True)
    return {"ingest": {"paths": ["interviews"]}, **data}


def test_defaults_validate_and_resolve_every_stage_parameter(tmp_path):
    cfg, base = load_config(write(tmp_path, runnable(tmp_path, {"name": "x"})))
    assert base == tmp_path.resolve()
    r = resolved(cfg)
    assert r["cluster"]["name"] == "consensa.HDBSCAN.v3"
    assert r["reduce"]["name"] == "consensa.Spectral.v1" and r["reduce"]["n_components"] == 20
    assert "min_cluster_size" in r["cluster"] and r["cluster"]["max_cluster_share"] == 0.25
    assert r["map"]["name"] == "consensa.UMAP.v2" and r["map"]["n_epochs"] == 200
    assert r["embed"]["quantize"] == "int8"
    assert r["context"] == {"window": 2, "weight": 0.2}


def test_typo_in_a_section_key_names_the_key_and_what_is_allowed(tmp_path):
    p = write(tmp_path, {"label": {"n_keyword": 5}})
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and "label.n_keyword" in msg and "n_keywords" in msg


def test_typo_in_a_stage_parameter_is_checked_against_the_implementation(tmp_path):
    p = write(tmp_path, {"cluster": {"name": "consensa.HDBSCAN.v1", "min_cluster_sise": 5}})
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "cluster.min_cluster_sise" in str(e.value) and "min_cluster_size" in str(e.value)


def test_unknown_top_level_key_and_wrong_type(tmp_path):
    with pytest.raises(ConfigError, match="'sede' is not a known setting"):
        load_config(write(tmp_path, {"sede": 1}))
    with pytest.raises(ConfigError, match="reduce.n_components"):
        load_config(write(tmp_path, {"reduce": {"name": "consensa.UMAP.v1", "n_components": "five"}}))


def test_every_problem_of_a_config_is_reported_at_once(tmp_path):
    # a misspelt top-level key used to hide the stage sections' problems until fixed
    p = write(tmp_path, {"sede": 1, "cluster": {"name": "consensa.HDBSCAN.v1",
                                                "min_cluster_sise": 5},
                         "reduce": {"name": "consensa.UMAP.v1", "n_components": "five"},
                         "stability": {"resamples": 0}})
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: 4 problems:\n")
    for key in ("'sede' is not a known setting", "'cluster.min_cluster_sise'",
                "'reduce.n_components'", "'stability.resamples'"):
        assert msg.count(key) == 1, key
    # one problem reads as before
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, {"sede": 1}))
    assert "problems" not in str(e.value)


def test_unknown_implementation_lists_the_registered_ones(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, {"cluster": {"name": "consensa.DBSCAN.v9"}}))
    assert "cluster.name" in str(e.value) and "consensa.HDBSCAN.v1" in str(e.value)


def test_yaml_syntax_error_names_the_line(tmp_path):
    p = write(tmp_path, "name: x\ningest:\n  paths: [a\n  b: c\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "line" in str(e.value) and str(p) in str(e.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_are_dotted_and_typed(tmp_path):
    cfg, _ = load_config(write(tmp_path, runnable(tmp_path, {})),
                         ["cluster.min_cluster_size=12", "seed=3", "outliers.reassign=false"])
    assert cfg.cluster.params() == {"min_cluster_size": 12}
    assert cfg.seed == 3 and cfg.outliers.reassign is False
    assert parse_override("label.extra_stop_words=[a, b]") == ("label.extra_stop_words", ["a", "b"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("cluster.min_cluster_size")


def test_an_override_of_a_section_the_cqr_analysis_does_not_use_is_refused(tmp_path):
    # the run would be the same without it, and the user would think it was tuned
    p = write(tmp_path, runnable(tmp_path, {"analysis": "consensa.CQR.v1"}))
    with pytest.raises(ConfigError) as e:
        load_config(p, ["cluster.min_cluster_size=8"])
    assert "--set cluster.min_cluster_size" in str(e.value) and "crossanalysis" in str(e.value)
    cfg, _ = load_config(p, ["crossanalysis.subcategory_min_segments=15", "seed=1"])
    assert cfg.crossanalysis.subcategory_min_segments == 15
    cfg, _ = load_config(p, ["cluster.min_cluster_size=8", "analysis=consensa.Themes.v1"])
    assert cfg.cluster.params() == {"min_cluster_size": 8}


def test_demo_config_is_valid():
    from pathlib import Path

    cfg, _ = load_config(Path(__file__).parent.parent / "configs" / "demo.yaml")
    assert [c.name for c in cfg.concepts.items] == ["genuineness", "countertransference", "training gaps"]


def test_validate_config_accepts_a_mapping():
    assert validate_config({"seed": 1}).seed == 1


def test_a_stage_section_without_name_overrides_the_default_implementation(tmp_path):
    cfg, _ = load_config(write(tmp_path, runnable(tmp_path, {"map": {"n_components": 3}})))
    assert cfg.map.name == "consensa.UMAP.v2"
    assert cfg.map.params() == {"n_components": 3, "min_dist": 0.1}


# --- YAML aliases that multiply a file ("billion laughs") ---------------------------

def alias_bomb(dotted: str) -> str:
    """Nine levels of nine aliases each: 9**9 (387 million) strings from 11 lines."""
    lines = ["a: &a [" + ", ".join(["lol"] * 9) + "]"]
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    *sections, key = dotted.split(".")
    for depth, section in enumerate(sections):
        lines.append("  " * depth + f"{section}:")
    lines.append("  " * len(sections) + f"{key}: *i")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("key", ["seed", "label.extra_stop_words", "deidentify.known_names",
                                 "sweep.seed"])
def test_an_alias_bomb_is_refused_at_once_naming_the_file_and_line(tmp_path, key):
    import time
    import tracemalloc

    from pipeline.cli import main

    path = write(tmp_path, alias_bomb(key))
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as e:
            load_config(path)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    msg = str(e.value)
    assert str(path) in msg and "line " in msg and "aliases" in msg
    assert seconds < 5 and peak < 50 * 2**20, (seconds, peak)
    assert main(["validate", str(path)]) == 2          # the CLI path, sweep: included


def test_an_alias_bomb_in_a_set_override_is_refused():
    levels = ["&a [" + ", ".join(["lol"] * 9) + "]"]
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        levels.append(f"&{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    with pytest.raises(ConfigError, match="label.extra_stop_words.*aliases"):
        parse_override("label.extra_stop_words=[" + ", ".join(levels) + "]")


def test_an_alias_that_contains_itself_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="line 2.*refers to the collection it is inside"):
        load_config(write(tmp_path, "label:\n  extra_stop_words: &a [um, *a]\n"))


def test_ordinary_aliases_and_merge_keys_still_load(tmp_path):
    text = (
        "ingest:\n  paths: [interviews]\n"
        "deidentify:\n  enabled: false\n  known_names: &people [Maria Lopez, Siobhan Byrne]\n"
        "  keep: *people\n"
        "reduce: &graph\n  name: consensa.Spectral.v1\n  n_neighbors: 12\n"
        "map:\n  <<: *graph\n  name: consensa.UMAP.v2\n  n_components: 2\n")
    (tmp_path / "interviews").mkdir()
    cfg, _ = load_config(write(tmp_path, text))
    assert cfg.deidentify.keep == cfg.deidentify.known_names == ["Maria Lopez", "Siobhan Byrne"]
    assert cfg.map.params() == {"n_neighbors": 12, "n_components": 2}


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path):
    # YAML keeps the last of two keys: the first section's settings vanished unseen
    text = "segment:\n  max_words: 60\nseed: 3\nsegment:\n  min_words: 3\n"
    with pytest.raises(ConfigError, match=r"line 4: .*'segment' is given twice \(first on "
                                          r"line 1\)"):
        load_config(write(tmp_path, text))
    with pytest.raises(ConfigError, match="'max_words' is given twice"):
        load_config(write(tmp_path, "segment:\n  max_words: 60\n  max_words: 80\n"))


def test_other_yaml_readers_refuse_an_alias_bomb(tmp_path):
    from pipeline.errors import InputError
    from pipeline.exchange.refi import codebook_from_yaml

    path = write(tmp_path, alias_bomb("domains"), name="codebook.yaml")
    with pytest.raises(InputError, match="AliasExpansionError"):
        codebook_from_yaml(path)


# --- YAML that Consensa writes reads back exactly ----------------------------------

#: every character YAML reads as a line break, and strings that hold them
LINE_BREAK_STRINGS = ["a\x85b", "\x85", "ends with NEL\x85", "\u2028", "a\u2029b",
                      "a\rb", "a\r\nb", "\r", "a\nb", "\n\n", " \x85 \u2028 ",
                      "- \x85 # not a list, not a comment", "word " * 30 + "\x85" + " word" * 30]


def _round_trips(value: object, folder) -> None:
    from pipeline import safeyaml

    text = safeyaml.dump(value, width=100)
    assert safeyaml.load(text) == value
    path = folder / "back.yaml"
    path.write_text(text, encoding="utf-8")       # read as the files Consensa wrote are
    assert safeyaml.load_file(path) == value


@pytest.mark.parametrize("text", LINE_BREAK_STRINGS)
def test_written_yaml_gives_back_every_line_break_character(tmp_path, text):
    # PyYAML alone writes NEL raw inside single quotes, and reads it back as a space
    _round_trips({"name": text, text: [text, {"note": text}]}, tmp_path)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(_TEXT, st.lists(_TEXT, max_size=3), max_size=3))
def test_written_yaml_gives_back_any_text(tmp_path, value):
    _round_trips(value, tmp_path)


def test_consensa_writes_yaml_only_through_safeyaml_dump():
    import pipeline

    root = Path(pipeline.__file__).parent
    direct = [str(path.relative_to(root)) for path in root.rglob("*.py")
              if path.name != "safeyaml.py"
              and re.search(r"\byaml\.(safe_)?dump(_all)?\(", path.read_text(encoding="utf-8"))]
    assert direct == [], "write YAML with pipeline.safeyaml.dump, so that it reads back"


def test_a_refused_value_is_shown_short(tmp_path):
    names = [f"name {i}" for i in range(5000)]
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, runnable(tmp_path, {"seed": names})))
    assert "'seed'" in str(e.value) and len(str(e.value)) < 600


# --- `consensa validate` refuses what `consensa run` would -------------------------

BAD = [
    ({"cluster": {"min_cluster_size": -5}}, "cluster.min_cluster_size"),
    ({"cluster": {"min_cluster_size": 0}}, "cluster.min_cluster_size"),
    ({"cluster": {"min_samples": 0}}, "cluster.min_samples"),
    ({"cluster": {"max_cluster_share": 0}}, "cluster.max_cluster_share"),
    ({"cluster": {"cluster_selection_method": "excess"}}, "cluster.cluster_selection_method"),
    ({"cluster": {"cluster_selection_epsilon": -1}}, "cluster.cluster_selection_epsilon"),
    ({"cluster": {"name": "consensa.KMeans.v1", "n_clusters": 0}}, "cluster.n_clusters"),
    ({"cluster": {"name": "consensa.Agglomerative.v1", "n_clusters": -2}}, "cluster.n_clusters"),
    ({"seed": 2**32}, "seed"),
    ({"seed": -1}, "seed"),
    ({"reduce": {"n_neighbors": 1}}, "reduce.n_neighbors"),
    ({"reduce": {"n_components": 0}}, "reduce.n_components"),
    ({"reduce": {"metric": "cosin"}}, "reduce.metric"),
    ({"reduce": {"name": "consensa.UMAP.v2", "random_state": 2**32}}, "reduce.random_state"),
    ({"map": {"min_dist": 5}}, "map.min_dist"),
    ({"map": {"n_epochs": 0}}, "map.n_epochs"),
    ({"map": {"name": "consensa.PCA.v1", "n_components": -1}}, "map.n_components"),
    ({"embed": {"batch_size": 0}}, "embed.batch_size"),
    ({"embed": {"batch_tokens": 0}}, "embed.batch_tokens"),
    ({"embed": {"device": "gpu"}}, "embed.device"),
    ({"embed": {"name": "consensa.TfidfSVD.v1", "n_components": 0}}, "embed.n_components"),
    ({"embed": {"model": "models/no-such-model"}}, "embed.model"),
    ({"label": {"n_keywords": 0}}, "label.n_keywords"),
    ({"label": {"diversity": 1.5}}, "label.diversity"),
    ({"domains": {"name_words": 0}}, "domains.name_words"),
    ({"concepts": {"n_quotes": 0}}, "concepts.n_quotes"),
    ({"context": {"window": -1}}, "context.window"),
    ({"segment": {"min_words": 0}}, "segment"),       # min <= target <= max: one rule
    ({"seed": True}, "seed"),                          # `seed: yes` had run with seed 1
    ({"segment": {"min_words": True}}, "segment.min_words"),
    ({"embed": {"batch_size": True}}, "embed.batch_size"),
    # a sweep of a section the CQR analysis never reads: runs that would all be the same
    ({"analysis": "consensa.CQR.v1", "sweep": {"cluster.min_cluster_size": [3, 5]}},
     "sweep.cluster.min_cluster_size"),
    ({"segment": {"max_words": 10, "target_words": 40}}, "segment"),
    ({"name": "x" * 300}, "name"),
    ({"ingest": {"paths": ["interviews", "no-such-folder"]}}, "ingest.paths"),
    ({"ingest": {"paths": []}}, "ingest.paths"),
    ({"ingest": {"paths": ["interviews"], "cases_table": "cases.csv"}}, "ingest.cases_table"),
    ({"output_dir": "a-file"}, "output_dir"),
    ({"deidentify": {"enabled": True, "model": "no_such_spacy_model"}}, "deidentify.model"),
    ({"deidentify": {"enabled": True, "ner": False, "mapping_file": "runs/map.csv"}},
     "deidentify.mapping_file"),
    ("", "ingest.paths"),                                 # an empty config
]


@pytest.mark.parametrize("changes,key", BAD, ids=[k + ("" if isinstance(c, str) else
                                                        "=" + repr(c)[:40]) for c, k in BAD])
def test_validate_and_run_refuse_a_bad_value_in_one_line_naming_the_key(tmp_path, capsys,
                                                                       changes, key):
    from pipeline.cli import main

    (tmp_path / "a-file").write_text("not a folder")
    data = changes if isinstance(changes, str) else runnable(tmp_path, changes)
    path = write(tmp_path, data)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    first, *rest = err.strip().splitlines()
    assert first.startswith(f"consensa: error: {path}") and f"'{key}'" in first, err
    assert len(rest) <= 1 and all(line.startswith("  What to do:") for line in rest), err
    # one validation path: run refuses the same config with the same message, at once
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[0] == first
    assert not (tmp_path / "out").exists()


def test_zero_is_not_automatic_and_the_message_says_what_is():
    with pytest.raises(ConfigError) as e:
        validate_config({"cluster": {"min_cluster_size": 0}})
    assert "leave the key out or write null" in str(e.value) and "(got 0)" in str(e.value)
    assert validate_config({"cluster": {"min_cluster_size": None}}).cluster.params() == \
        {"min_cluster_size": None}


def test_a_config_that_validates_is_what_run_reads(tmp_path):
    """validate and run go through the same loaders: both take this config."""
    from pipeline.batch import load_plans, load_single

    path = write(tmp_path, runnable(tmp_path, {"cluster": {"min_cluster_size": 2},
                                               "seed": 2**32 - 1}))
    (plan,) = load_plans(path)
    cfg, base, _ = load_single(path)
    assert plan.cfg == cfg and plan.base == base == tmp_path.resolve()


# --- settings that cannot give a theme on the study ---------------------------------

def test_hdbscan_refuses_a_smallest_theme_the_study_cannot_hold():
    from pipeline.registry import clusterers

    def check(n, **params):
        clusterers.build("consensa.HDBSCAN.v3", params, where="cluster").check_n_segments(n)

    with pytest.raises(ConfigError) as e:
        check(30, min_cluster_size=50)
    msg = str(e.value)
    assert "'cluster.min_cluster_size': 50 is more than the study's 30 segments" in msg
    assert "at most 15" in msg and "leave it out" in msg
    with pytest.raises(ConfigError, match="at most 15"):
        check(30, min_cluster_size=16)           # 2 x 16 > 30: no split can give a theme
    check(32, min_cluster_size=16)
    with pytest.raises(ConfigError, match="only 8 segments.*chosen by default"):
        check(8)                                  # the automatic smallest theme is 5
    check(10)
    with pytest.raises(ConfigError, match="'cluster.min_samples': 40 is more"):
        check(30, min_cluster_size=5, min_samples=40)


def test_lists_nested_thousands_deep_are_one_line_not_a_recursion_traceback(tmp_path):
    path = write(tmp_path, "seed: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path)


def test_a_file_read_for_a_command_nested_thousands_deep_is_named_not_a_traceback(tmp_path):
    """A codebook, cluster file or run config (safeyaml.load_file) gets the same clear
    error as a config: libyaml's nesting limit, or Python's stack, is not a traceback."""
    from pipeline.errors import InputError
    from pipeline.safeyaml import load_file

    path = write(tmp_path, "domains: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(InputError, match="codebook is nested too deeply") as e:
        load_file(path, what="codebook")
    assert str(path) in str(e.value)


# --- one config model: sweep: and stability: sections, paths resolved at load -------

def test_validate_and_run_read_the_stability_and_sweep_sections_alike(tmp_path, capsys):
    """load_config used to refuse a stability: section that `consensa run` took."""
    from pipeline.batch import load_plans, load_single
    from pipeline.cli import main
    from pipeline.config import StabilityConfig

    path = write(tmp_path, runnable(tmp_path, {"stability": {"resamples": 6}}))
    cfg, base = load_config(path)
    assert cfg.stability == StabilityConfig(resamples=6) and cfg.sweep == {}
    assert load_single(path) == (cfg, base, cfg.stability)
    (plan,) = load_plans(path)
    assert plan.cfg == cfg and plan.stability == cfg.stability
    assert main(["validate", str(path)]) == 0
    assert load_config(write(tmp_path, runnable(tmp_path, {"stability": True})))[0].stability \
        == StabilityConfig()

    path = write(tmp_path, runnable(tmp_path, {"sweep": {"cluster": {"min_cluster_size": [4, 6]},
                                                         "seed": [1]}}))
    cfg, _ = load_config(path)
    assert cfg.sweep == {"cluster.min_cluster_size": [4, 6], "seed": [1]}
    plans = load_plans(path)
    assert [(p.params, p.cfg.cluster.params(), p.cfg.sweep) for p in plans] == [
        ({"cluster.min_cluster_size": 4, "seed": 1}, {"min_cluster_size": 4}, {}),
        ({"cluster.min_cluster_size": 6, "seed": 1}, {"min_cluster_size": 6}, {})]
    assert [p.cfg.name for p in plans] == ["run__cluster.min_cluster_size=4__seed=1",
                                           "run__cluster.min_cluster_size=6__seed=1"]
    assert main(["validate", str(path)]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("section,key", [
    ({"stability": {"resamples": 0}}, "stability.resamples"),
    ({"stability": {"leave_out": 0, "bootstrap": False}}, "stability"),
    ({"stability": "often"}, "stability"),
    ({"sweep": {"cluster.min_cluster_size": 8}}, "sweep.cluster.min_cluster_size"),
    ({"sweep": {"name": ["a", "b"]}}, "sweep.name"),
    ({"sweep": {"cluster.min_cluster_size": [8, 0]}}, "sweep.cluster.min_cluster_size"),
    # the same run twice, the second named '-2', without a word
    ({"sweep": {"core_ideas.max_words": [40, 30, 40]}}, "sweep.core_ideas.max_words"),
    ({"sweep": {"seed": [1], "core_ideas": {"max_words": [40]},
                "core_ideas.max_words": [30]}}, "sweep.core_ideas.max_words"),
])
def test_a_bad_stability_or_sweep_section_is_refused_alike_by_every_loader(tmp_path, capsys,
                                                                           section, key):
    from pipeline.batch import load_plans
    from pipeline.cli import main

    path = write(tmp_path, runnable(tmp_path, section))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    first = str(e.value).splitlines()[0]
    assert str(path) in first and f"'{key}'" in first, first
    with pytest.raises(ConfigError) as again:
        load_plans(path)
    assert str(again.value).splitlines()[0] == first
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err.splitlines()[0] == f"consensa: error: {first}"


def test_relative_paths_are_read_from_the_configs_folder_whatever_the_current_folder(
        tmp_path, monkeypatch):
    study = tmp_path / "study"
    (study / "interviews").mkdir(parents=True)
    (study / "cases.csv").write_text("case_id\nT01\n")
    (study / "conf" / "models" / "mini").mkdir(parents=True)
    (study / "conf" / "models" / "mini" / "modules.json").write_text("[]")
    path = write(study / "conf", {
        "output_dir": "../runs", "cache_dir": "~/consensa-cache",
        "ingest": {"paths": ["../interviews"], "cases_table": "../cases.csv"},
        "deidentify": {"enabled": True, "ner": False, "mapping_file": "../private/map.csv"},
        "embed": {"model": "models/mini"}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg, base = load_config(path)
    assert base == (study / "conf").resolve()
    root = study.resolve()
    assert cfg.output_dir == root / "runs" and cfg.ingest.paths == [root / "interviews"]
    assert cfg.ingest.cases_table == root / "cases.csv"
    assert cfg.cache_dir == tmp_path / "home" / "consensa-cache"
    assert cfg.deidentify.mapping_file == root / "private" / "map.csv"
    # the model folder beside the config, not in the current folder (the error said
    # "neither 'all-MiniLM-L6-v2' nor a local folder" before)
    assert cfg.embed.params()["model"] == str(root / "conf" / "models" / "mini")
    # the packaged model's name is a name, not a path
    cfg2, _ = load_config(write(study / "conf", {"ingest": {"paths": ["../interviews"]},
                                                 "embed": {"model": "all-MiniLM-L6-v2"}}))
    assert cfg2.embed.params()["model"] == "all-MiniLM-L6-v2"


def test_a_swept_relative_path_is_read_from_the_configs_folder(tmp_path, monkeypatch):
    from pipeline.batch import load_plans

    for name in ("a", "b"):
        (tmp_path / "conf" / name).mkdir(parents=True)
    path = write(tmp_path / "conf", {"sweep": {"ingest.paths": [["a"], ["b"]]}})
    monkeypatch.chdir(tmp_path)
    plans = load_plans(path)
    assert [p.cfg.ingest.paths for p in plans] == [[(tmp_path / "conf" / n).resolve()]
                                                    for n in "ab"]


def test_resolving_paths_twice_changes_nothing(tmp_path):
    from pipeline.config import resolve_paths

    cfg = validate_config({"ingest": {"paths": ["x"]}, "embed": {"model": "m"},
                           "cache_dir": None})
    once = resolve_paths(cfg, tmp_path)
    assert once.ingest.paths == [tmp_path.resolve() / "x"] and once.cache_dir is None
    assert resolve_paths(once, tmp_path / "other") == once


def test_a_run_folders_config_is_resolved_redacted_and_runs_again_from_anywhere(
        tmp_path, monkeypatch):
    """The saved config.yaml holds absolute paths (the mapping file redacted), its hash
    is the manifest's, and it loads again, from another folder, as the same config."""
    from pipeline.cli import main
    from pipeline.config import config_hash, resolved
    from tests.study import study_config, write_study

    study = write_study(tmp_path / "study" / "interviews")
    data = study_config(study)
    data.update(output_dir="runs", cache_dir="cache", ingest={"paths": ["interviews"]},
                deidentify={"enabled": True, "ner": False, "mapping_file": "../private/m.csv"},
                stability={"resamples": 2})
    path = write(tmp_path / "study", data)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "study" / "runs" / "one"
    assert main(["run", str(path), "--out", str(out)]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    root = (tmp_path / "study").resolve()
    assert saved["ingest"]["paths"] == [str(root / "interviews")]
    assert saved["cache_dir"] == str(root / "cache") and saved["output_dir"] == str(root / "runs")
    assert saved["deidentify"]["mapping_file"] is None and (tmp_path / "private" / "m.csv").is_file()
    assert saved["stability"]["resamples"] == 2 and "sweep" not in saved
    manifest = __import__("json").loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["config_sha256"] == config_hash(saved)
    monkeypatch.chdir(out)
    again, _ = load_config(out / "config.yaml")
    assert resolved(again) == saved


def test_a_model_folder_that_holds_no_model_is_refused_by_validate_naming_the_key(tmp_path,
                                                                                  capsys):
    from pipeline.cli import main
    from pipeline.stages.embed import SentenceTransformerEmbedder

    (tmp_path / "interviews").mkdir()
    (tmp_path / "interviews" / "T01.txt").write_text("Interviewer: Hi?\nP1: Hello.\n")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a model")
    path = write(tmp_path, {"ingest": {"paths": ["interviews"]}, "embed": {"model": "notes"}})
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'embed.model'" in err and "holds no SentenceTransformer model" in err
    # a folder that looks like one but is not loads into a refusal, not a traceback
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="could not be loaded") as caught:
        SentenceTransformerEmbedder(model=str(tmp_path / "broken")).encode(["hello"])
    assert caught.value.field == "embed.model"


def test_a_bad_value_given_with_set_is_said_to_come_from_the_command_line(tmp_path, capsys):
    from pipeline.cli import main

    (tmp_path / "interviews").mkdir()
    (tmp_path / "interviews" / "T01.txt").write_text("Interviewer: Hi?\nP1: Hello.\n")
    path = write(tmp_path, {"ingest": {"paths": ["interviews"]}})
    assert main(["validate", str(path), "--set", "naming.max_words=1"]) == 2
    err = capsys.readouterr().err
    assert "'naming.max_words'" in err and "(given on the command line: --set " \
        "naming.max_words=1)" in err and "change the value given with --set" in err
    # an error of the file itself is the file's, as before
    bad = write(tmp_path, {"ingest": {"paths": ["interviews"]}, "naming": {"max_words": 1}},
                name="bad.yaml")
    assert main(["validate", str(bad), "--set", "seed=3"]) == 2
    assert "command line" not in capsys.readouterr().err


#: README's settings table: sections whose defaults are plain fields of the config
_PLAIN_SECTIONS = ("deidentify", "context", "outliers", "concepts", "domains", "cqr",
                   "protocol", "crossanalysis", "naming", "core_ideas", "scale", "label")


def test_the_readmes_settings_table_gives_the_defaults_the_code_has():
    """Every "`key` value" the README's table of sections gives for a plain section is
    that section's default (the table once said naming.min_cases 2 where it was 1)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    cfg = validate_config({})
    checked = 0
    for row in re.findall(r"^\| `(\w+)` \|[^|]*\|(.*)\|$", readme, flags=re.M):
        section, settings = row
        if section not in _PLAIN_SECTIONS:
            continue
        model = getattr(cfg, section)
        for key, written in re.findall(r"`(\w+)` (-?[\d,]*\.?\d+|true|false)\b", settings):
            if key not in type(model).model_fields:
                continue
            default = getattr(model, key)
            value = (written == "true") if written in ("true", "false") else \
                float(written.replace(",", ""))
            assert value == default, f"README: {section}.{key} {written}; the code: {default}"
            checked += 1
    assert checked >= 20


def test_a_section_the_cqr_analysis_does_not_read_is_named_by_validate(tmp_path, capsys):
    """`--set cluster.min_cluster_size=5` on a CQR config is refused; the same setting
    written in the file passed `validate` and changed nothing. validate names it (run
    does too, after its summary). The demo's config gives no such section."""
    from pipeline.cli import main

    path = write(tmp_path, runnable(tmp_path, {
        "analysis": "consensa.CQR.v1",
        "cluster": {"name": "consensa.HDBSCAN.v3", "min_cluster_size": 5},
        "outliers": {"min_similarity": 0.5}}))
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "note: the CQR analysis does not read the cluster, outliers sections" in out
    themes = write(tmp_path, runnable(tmp_path, {"cluster": {"name": "consensa.HDBSCAN.v3"}}),
                   "themes.yaml")
    demo = Path(__file__).parent.parent / "configs" / "demo.yaml"
    for quiet in (themes, demo):
        assert main(["validate", str(quiet)]) == 0
        assert "does not read" not in capsys.readouterr().out


@pytest.mark.parametrize("table, said", [
    ("case_id,orientation\nT01,CBT\nT01,PD\n", "more than one row for ['T01']"),
    ("", "could not be read as a CSV table"),
])
def test_validate_reads_the_cases_table_as_the_run_would(tmp_path, capsys, table, said):
    """validate said "valid" of a config whose run then stopped on its cases table (a
    case on two rows, an empty file)."""
    from pipeline.cli import main

    (tmp_path / "cases.csv").write_text(table, encoding="utf-8")
    path = write(tmp_path, runnable(tmp_path, {"ingest": {"paths": ["interviews"],
                                                          "cases_table": "cases.csv"}}))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert said in err and "cases.csv" in err and "Traceback" not in err


def test_one_value_where_a_list_is_wanted_says_so(tmp_path, capsys):
    """`segment.roles: participant` was refused with pydantic's "Input should be a
    valid tuple", which names no fix."""
    from pipeline.cli import main

    path = write(tmp_path, runnable(tmp_path, {"segment": {"roles": "participant"}}))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'segment.roles': a list is wanted here, such as [participant] (got 'participant')" \
        in err and "valid tuple" not in err


def test_a_repeat_of_a_cqr_run_from_its_config_yaml_gives_no_unread_note(tmp_path, capsys):
    """A run folder's config.yaml writes every section out with its defaults, and each
    repeat of a CQR run from it said the analysis does not read context, reduce,
    cluster, ...: sections nobody had set. Only a setting that differs is named."""
    from pipeline.cli import main
    from pipeline.config import dump_yaml

    cfg, _ = load_config(write(tmp_path, runnable(tmp_path, {"analysis": "consensa.CQR.v1"})))
    full = resolved(cfg)
    repeat = tmp_path / "repeat.yaml"
    repeat.write_text(dump_yaml(full), encoding="utf-8")
    assert main(["validate", str(repeat)]) == 0
    assert "does not read" not in capsys.readouterr().out
    full["reduce"]["n_components"] = 12       # one setting changed: that section is named
    full["context"]["window"] = 3
    repeat.write_text(dump_yaml(full), encoding="utf-8")
    assert main(["validate", str(repeat)]) == 0
    assert "does not read the context, reduce sections" in capsys.readouterr().out


def test_a_sweep_value_listed_twice_is_named(tmp_path):
    """``core_ideas.max_words: [40, 40]`` made two identical runs, the second named
    '...-2', and nothing said so."""
    path = write(tmp_path, runnable(tmp_path, {"sweep": {
        "crossanalysis": {"stance": [True, False, True]}}}))
    with pytest.raises(ConfigError, match=r"'sweep.crossanalysis.stance': the value true is "
                                          r"listed twice") as e:
        load_config(path)
    assert str(path) in str(e.value) and "[true, false]" in str(e.value)


@pytest.mark.parametrize("section, key, said", [
    ({"deidentify": {"enabled": True, "ner": False, "mapping_file": "private/map.csv"}},
     "deidentify.mapping_file", "the mapping of another study"),
    ({"llm": {"name": "consensa.LocalLLM.v1", "model": "x",
              "base_url": "http://10.0.0.5:11434/v1"}}, "llm.base_url", "is not this machine"),
])
def test_the_mapping_of_another_study_and_a_remote_llm_name_the_config(tmp_path, capsys,
                                                                       section, key, said):
    """Both were said without the config file: the mapping of another study only by
    the run (validate had said "valid"), the remote base_url with the key alone."""
    from pipeline.cli import main
    from pipeline.stages.deidentify import mapping_header

    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "map.csv").write_text(
        mapping_header("other", "0" * 16) + "case_id,type,placeholder,original,occurrences\n",
        encoding="utf-8")
    path = write(tmp_path, runnable(tmp_path, {"analysis": "consensa.CQR.v1", **section}))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    first = str(e.value).splitlines()[0]
    assert first.startswith(f"{path}, field '{key}': ") and said in first, first
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err.splitlines()[0] == f"consensa: error: {first}"
