"""The registry: versions as presets, stages loaded without an import circle, stages
from other packages through entry points, and the package's public API."""

import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import pipeline.registry as registry
from pipeline.errors import ConfigError
from pipeline.registry import REGISTRIES, get_params

ROOT = Path(__file__).resolve().parent.parent

_HDBSCAN = {"min_cluster_size": None, "min_samples": None, "cluster_selection_method": "eom",
            "cluster_selection_epsilon": 0.0}
_UMAP = {"n_components": 5, "n_neighbors": None, "min_dist": 0.0, "metric": "cosine",
         "random_state": None}
_ST = {"model": "all-MiniLM-L6-v2", "batch_size": 64, "show_progress_bar": None,
       "device": "cpu", "batch_tokens": 2048}

#: Every registered name and every default it means. A version's name keeps its
#: meaning for good: a changed default is a new version, and a new version adds a row.
DEFAULTS = {
    ("segmenter", "consensa.SentenceSegmenter.v1"): {
        "roles": ("participant",), "target_words": 40, "max_words": 80, "min_words": 4,
        "backchannels": (), "batch_size": 256},
    ("segmenter", "consensa.TurnSegmenter.v1"): {
        "roles": ("participant",), "min_words": 1, "backchannels": ()},
    ("embedder", "consensa.SentenceTransformer.v1"): {**_ST, "quantize": "none"},
    ("embedder", "consensa.SentenceTransformer.v2"): {**_ST, "quantize": "int8"},
    ("embedder", "consensa.TfidfSVD.v1"): {"n_components": 100, "random_state": None},
    ("reducer", "consensa.Identity.v1"): {},
    ("reducer", "consensa.PCA.v1"): {"n_components": 5, "random_state": None},
    ("reducer", "consensa.Spectral.v1"): {
        "n_components": 20, "n_neighbors": None, "metric": "cosine", "normalize_rows": True},
    ("reducer", "consensa.UMAP.v1"): {**_UMAP, "n_epochs": None},
    ("reducer", "consensa.UMAP.v2"): {**_UMAP, "n_epochs": 200},
    ("clusterer", "consensa.Agglomerative.v1"): {"n_clusters": 10},
    ("clusterer", "consensa.HDBSCAN.v1"): {
        **_HDBSCAN, "max_cluster_share": None, "min_samples_from": "min_cluster_size"},
    ("clusterer", "consensa.HDBSCAN.v2"): {
        **_HDBSCAN, "max_cluster_share": 0.25, "min_samples_from": "min_cluster_size"},
    ("clusterer", "consensa.HDBSCAN.v3"): {
        **_HDBSCAN, "max_cluster_share": 0.25, "min_samples_from": "n_segments"},
    ("clusterer", "consensa.KMeans.v1"): {"n_clusters": 10, "random_state": None},
    ("namer", "consensa.LocalLLM.v1"): {
        "base_url": "http://127.0.0.1:11434/v1", "timeout_s": 120.0, "temperature": 0.0,
        "max_tokens": 256, "seed": 0, "allow_remote": False, "fallback": "error",
        "api_key_env": None, "max_input_chars": 8000, "min_word_overlap": 0.5},
}
#: parameters a version cannot do without
REQUIRED = {("namer", "consensa.LocalLLM.v1"): {"model": "llama3.1:8b"}}

REGISTERED = [(kind, name) for kind, reg in REGISTRIES.items() for name in reg.names()]


def test_every_registered_name_has_a_row_of_defaults():
    assert sorted(REGISTERED) == sorted(DEFAULTS)


@pytest.mark.parametrize("kind,name", sorted(DEFAULTS))
def test_each_version_means_its_own_defaults(kind, name):
    reg = REGISTRIES[kind]
    assert reg.defaults(name) == DEFAULTS[kind, name]
    model = reg.params_model(name)
    assert {k for k, f in model.model_fields.items() if f.is_required()} == \
        set(REQUIRED.get((kind, name), {}))
    # what a config gets (every parameter passed, the version's included) and what
    # the run folder's config.yaml shows
    built = reg.build(name, dict(REQUIRED.get((kind, name), {})))
    assert get_params(built) == {**DEFAULTS[kind, name], **REQUIRED.get((kind, name), {})}
    # code that builds a stage without a config gets the same object
    preset = reg.preset(name)(**REQUIRED.get((kind, name), {}))
    assert type(preset) is type(built) and get_params(preset) == get_params(built)


def test_validate_and_the_resolved_config_show_each_versions_own_defaults():
    from pipeline.config import resolved, validate_config

    for name in ("consensa.HDBSCAN.v1", "consensa.HDBSCAN.v2", "consensa.HDBSCAN.v3"):
        data = resolved(validate_config({"cluster": {"name": name}}))
        assert data["cluster"] == {"name": name, **DEFAULTS["clusterer", name]}
    data = resolved(validate_config({"map": {"name": "consensa.UMAP.v1"}}))
    assert data["map"]["n_epochs"] is None


def test_versions_of_one_class_are_not_subclasses_and_behave_by_their_parameters():
    """v3's behaviour is in its parameters: the v1 class with v3's settings is v3."""
    import numpy as np

    from pipeline.stages.cluster import auto_min_cluster_size, auto_min_samples

    reg = REGISTRIES["clusterer"]
    classes = {reg.get(n) for n in ("consensa.HDBSCAN.v1", "consensa.HDBSCAN.v2",
                                    "consensa.HDBSCAN.v3")}
    assert len(classes) == 1
    X = np.random.default_rng(0).normal(size=(400, 3)).astype(np.float32)
    v1 = reg.build("consensa.HDBSCAN.v1", {"min_cluster_size": 40}).fit(X)
    v3 = reg.build("consensa.HDBSCAN.v3", {"min_cluster_size": 40}).fit(X)
    assert v1.min_samples_ == auto_min_samples(40) == 13
    assert v3.min_samples_ == auto_min_samples(auto_min_cluster_size(400)) == 3
    like_v3 = reg.build("consensa.HDBSCAN.v1", {"min_cluster_size": 40, "max_cluster_share": 0.25,
                                                "min_samples_from": "n_segments"}).fit(X)
    assert (like_v3.labels_ == v3.labels_).all()


def test_a_preset_naming_an_unknown_parameter_or_a_name_registered_twice_is_refused(
        monkeypatch):
    reg = registry.Registry("reducer")

    class Half:
        def __init__(self, n_components: int = 2) -> None:
            self.n_components = n_components

    with pytest.raises(ValueError, match="takes no parameter n_epochs"):
        reg.register("acme.Half.v1", n_epochs=3)(Half)
    reg.register("acme.Half.v1", n_components=3)(Half)
    reg.register("acme.Half.v1", n_components=3)(Half)          # the same again is fine
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("acme.Half.v1", n_components=4)(Half)


def test_importing_the_registry_imports_no_stage_until_a_name_is_looked_up():
    code = textwrap.dedent("""
        import sys
        import pipeline.registry as r
        assert not [m for m in sys.modules if m.startswith("pipeline.stages")], sys.modules
        assert "consensa.HDBSCAN.v3" in r.clusterers.names()
        assert "pipeline.stages.cluster" in sys.modules
        import pipeline
        assert "pipeline.config" not in sys.modules and "pipeline.run" not in sys.modules
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_registry_does_not_import_the_stage_modules_that_import_it():
    """The stage modules import the registry to register; the registry names them by
    string (BUILTIN_MODULES), so the import graph has no circle, not even inside a
    function."""
    import ast

    tree = ast.parse((ROOT / "pipeline" / "registry.py").read_text(encoding="utf-8"))
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for a in node.names]
    assert not [m for m in imported if "stages" in m or m.startswith("pipeline")], imported


STAGE_MODULE = '''
from pipeline.registry import reducers


@reducers.register("acme.Half.v1", keep=0.5)
@reducers.register("acme.Half.v2", keep=0.25)
class Half:
    """Keeps the first share of the columns."""

    def __init__(self, keep: float = 1.0) -> None:
        self.keep = keep

    def fit_transform(self, X):
        return X[:, : max(1, int(X.shape[1] * self.keep))]
'''


@pytest.fixture
def fresh_registry(monkeypatch):
    """The registry as before any stage was loaded; restored after the test."""
    for reg in REGISTRIES.values():
        monkeypatch.setattr(reg, "_items", dict(reg._items))
        monkeypatch.setattr(reg, "_models", dict(reg._models))
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_broken", {})


def test_a_stage_from_another_package_is_loaded_through_its_entry_point(
        tmp_path, monkeypatch, fresh_registry):
    (tmp_path / "acme_stages.py").write_text(STAGE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "acme_stages", raising=False)
    seen = []

    def entry_points(group):
        seen.append(group)
        return [EntryPoint("acme", "acme_stages", group)]

    monkeypatch.setattr(registry, "entry_points", entry_points)
    from pipeline.config import resolved, validate_config

    cfg = validate_config({"reduce": {"name": "acme.Half.v2"}})
    assert seen == ["consensa.stages"]
    assert resolved(cfg)["reduce"] == {"name": "acme.Half.v2", "keep": 0.25}
    assert registry.reducers.build("acme.Half.v1", {}).keep == 0.5
    assert "consensa.UMAP.v2" in registry.reducers.names()       # the built-ins as well
    with pytest.raises(ConfigError, match="'reduce.kep' is not a known setting"):
        validate_config({"reduce": {"name": "acme.Half.v1", "kep": 1}})


def test_a_package_whose_stages_fail_to_import_is_named_not_fatal(
        tmp_path, monkeypatch, fresh_registry, caplog):
    (tmp_path / "broken_stages.py").write_text("raise RuntimeError('needs a licence key')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [EntryPoint("broken", "broken_stages", group)])
    from pipeline.config import validate_config

    assert "consensa.PCA.v1" in registry.reducers.names()           # the others still load
    assert validate_config({"reduce": {"name": "consensa.PCA.v1"}}).reduce.name == \
        "consensa.PCA.v1"
    assert "broken_stages" in caplog.text and "needs a licence key" in caplog.text
    with pytest.raises(ConfigError) as e:
        validate_config({"reduce": {"name": "broken.Thing.v1"}})
    assert "reduce.name" in str(e.value)
    assert "broken = broken_stages (RuntimeError: needs a licence key)" in str(e.value)


def test_the_package_has_a_public_api_loaded_on_first_use():
    code = textwrap.dedent("""
        import sys
        import pipeline
        assert not [m for m in sys.modules if m.startswith("pipeline.")], sorted(sys.modules)
        for name in pipeline.__all__:
            assert getattr(pipeline, name) is not None, name
        from pipeline import ConfigError, RunConfig, load_config, run, clusterers
        from pipeline.run import build
        assert pipeline.run is run and callable(run) and run.build is build
        assert clusterers is pipeline.REGISTRIES["clusterer"]
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
