import pytest
import yaml

from pipeline.config import load_config, parse_override, resolved, validate_config
from pipeline.errors import ConfigError


def write(tmp_path, data, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def test_defaults_validate_and_resolve_every_stage_parameter(tmp_path):
    cfg, base = load_config(write(tmp_path, {"name": "x"}))
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
    cfg, _ = load_config(write(tmp_path, {}), ["cluster.min_cluster_size=12", "seed=3",
                                               "outliers.reassign=false"])
    assert cfg.cluster.params() == {"min_cluster_size": 12}
    assert cfg.seed == 3 and cfg.outliers.reassign is False
    assert parse_override("label.extra_stop_words=[a, b]") == ("label.extra_stop_words", ["a", "b"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("cluster.min_cluster_size")


def test_demo_config_is_valid():
    from pathlib import Path

    cfg, _ = load_config(Path(__file__).parent.parent / "configs" / "demo.yaml")
    assert [c.name for c in cfg.concepts.items] == ["genuineness", "countertransference", "training gaps"]


def test_validate_config_accepts_a_mapping():
    assert validate_config({"seed": 1}).seed == 1


def test_a_stage_section_without_name_overrides_the_default_implementation(tmp_path):
    cfg, _ = load_config(write(tmp_path, {"map": {"n_components": 3}}))
    assert cfg.map.name == "consensa.UMAP.v2"
    assert cfg.map.params() == {"n_components": 3, "min_dist": 0.1}
