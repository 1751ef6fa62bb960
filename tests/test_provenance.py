"""A run's manifest says what it was computed from, and the cache never serves a
result of other inputs than the run's: a model's weights, the protocol and cases
table a config names, Consensa's own code, a batch's settings, the transcripts."""

from __future__ import annotations

import json

import numpy as np

from pipeline.cache import Cache
from pipeline.compose import embed_texts
from pipeline.stages import embed as embed_mod
from pipeline.stages.embed import SentenceTransformerEmbedder

TEXTS = ["a tear ran down", "she passed me the tissues", "my supervisor listened"]


def _model(folder, weights: bytes):
    """A model folder as a SentenceTransformer saves it (the weights are made up)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / "modules.json").write_text("[]")
    (folder / "model.safetensors").write_bytes(weights)
    return folder


class WeightsModel(SentenceTransformerEmbedder):
    """Vectors that depend on the weights file's bytes, as a real model's do."""

    def encode(self, texts):
        from pathlib import Path

        seed = sum(Path(self.model, "model.safetensors").read_bytes())
        return np.array([[len(t), t.count("e"), seed % 97, 1.0] for t in texts], np.float32)


def test_a_model_saved_again_in_place_with_the_same_size_is_embedded_again(tmp_path):
    """A model fine-tuned again and saved in place keeps its file names and size;
    the cache must not serve the old model's vectors."""
    model = _model(tmp_path / "mymodel", b"A" * 4096)
    cache = Cache(tmp_path / "cache")
    first, counts = embed_texts(WeightsModel(model=str(model)), TEXTS, cache)
    assert counts["embedded"] == 3
    (model / "model.safetensors").write_bytes(b"B" * 4096)       # same name, same size
    second, counts = embed_texts(WeightsModel(model=str(model)), TEXTS, cache)
    assert counts == {"embedded": 3, "from_cache": 0}
    assert not np.array_equal(first, second)
    # the same weights again (a new mtime, the same bytes) are the same model
    (model / "model.safetensors").write_bytes(b"A" * 4096)
    again, counts = embed_texts(WeightsModel(model=str(model)), TEXTS, cache)
    assert counts == {"embedded": 0, "from_cache": 3} and np.array_equal(again, first)


def test_the_weights_digest_is_remembered_in_the_cache(tmp_path, monkeypatch):
    """The weights are read once per (file, size, mtime): the next process finds
    their digest in the run's cache."""
    import hashlib

    model = _model(tmp_path / "m", b"W" * 1000)
    cache = Cache(tmp_path / "cache")
    embedder = SentenceTransformerEmbedder(model=str(model))
    want = {"model.safetensors": hashlib.sha256(b"W" * 1000).hexdigest()}
    assert embedder.weights_sha256(cache) == want
    monkeypatch.setattr(embed_mod, "_WEIGHTS_SHA256", {})        # another process
    real_open = open

    def no_weights(path, *a, **k):
        assert not str(path).endswith(".safetensors"), "the weights were read again"
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", no_weights)
    assert embedder.weights_sha256(cache) == want
    assert embedder.model_id_with(cache) == embedder.model_id


def test_the_manifest_records_the_weights_digest(tmp_path, monkeypatch):
    import hashlib

    from tests.study import run_study_cli

    model = _model(tmp_path / "mymodel", b"C" * 512)
    monkeypatch.setattr(SentenceTransformerEmbedder, "encode", WeightsModel.encode)
    run = run_study_cli(tmp_path, embed={"name": "consensa.SentenceTransformer.v1",
                                         "model": str(model)})
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stage_params"]["embed"]["weights_sha256"] == {
        "model.safetensors": hashlib.sha256(b"C" * 512).hexdigest()}
