"""The embedding cache never makes a run's vectors depend on what earlier runs embedded.

An int8 model's vector of a text depends on the other texts in its batch, so such
an embedder is cached per set of texts (pipeline/compose.py, embed_texts)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.cache import Cache
from pipeline.compose import embed_texts


class BatchMean:
    """A stand-in for a quantized model: each vector is the text's own features plus
    a bit of its batch's mean, as a per-batch activation scale makes it."""

    model_id = "batch-mean"
    batch_dependent = True

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        own = np.array([[len(t), t.count("a"), t.count("e"), 1.0] for t in texts], np.float32)
        return own + 0.1 * own.mean(axis=0, keepdims=True) if len(texts) else own

    def get_params(self, deep: bool = True):
        return {}


class Own(BatchMean):
    model_id = "own"
    batch_dependent = False

    def encode(self, texts):
        self.calls.append(list(texts))
        return np.array([[len(t), t.count("a"), t.count("e"), 1.0] for t in texts], np.float32)


TEXTS = ["a tear ran down", "she passed me the tissues", "my supervisor listened",
         "training never mentioned it", "we talked about it later"]


def test_batch_dependent_vectors_do_not_depend_on_the_cache_history(tmp_path):
    cold = embed_texts(BatchMean(), TEXTS, Cache(tmp_path / "cold"))[0]
    cache = Cache(tmp_path / "warm")
    embed_texts(BatchMean(), TEXTS[:2], cache)            # an earlier run embedded two of them
    embedder = BatchMean()
    warm, counts = embed_texts(embedder, TEXTS, cache)
    assert np.array_equal(warm, cold)
    assert counts == {"embedded": 5, "from_cache": 0}      # the whole set, embedded together
    again, counts = embed_texts(embedder, list(reversed(TEXTS)), cache)
    assert np.array_equal(again, cold[::-1]) and counts["from_cache"] == 5


def test_a_texts_own_vectors_are_cached_per_text(tmp_path):
    cache = Cache(tmp_path)
    embed_texts(Own(), TEXTS[:2], cache)
    embedder = Own()
    vecs, counts = embed_texts(embedder, TEXTS, cache)
    assert counts == {"embedded": 3, "from_cache": 2}
    assert sorted(embedder.calls[0]) == sorted(TEXTS[2:])
    assert np.array_equal(vecs, Own().encode(TEXTS))


@pytest.mark.slow
def test_a_run_repeats_exactly_on_another_machine_given_a_copy_of_its_cache(tmp_path, monkeypatch):
    """The int8 embedder's vectors differ a little between CPUs, and so can a run's
    categories. A copy of the run's cache_dir carries every vector the run used (the
    segments', and the questions', names' and sentences' of a CQR analysis) and every
    step's result, so the same config on another machine repeats the run exactly
    without embedding anything. "Another machine" is simulated by an embedder whose
    vectors are slightly off."""
    import shutil

    import yaml

    from pipeline.cli import main
    from pipeline.stages.embed import SentenceTransformerEmbedder
    from tests.study import study_config, write_study

    study = write_study(tmp_path / "study", n_cases=6)

    def run(cache: str, out: str) -> None:
        cfg = study_config(study, analysis="consensa.CQR.v1", cache_dir=str(tmp_path / cache),
                           embed={"name": "consensa.SentenceTransformer.v2"})
        path = tmp_path / f"{out}.yaml"
        path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        assert main(["run", str(path), "--out", str(tmp_path / out)]) == 0

    run("cache", "here")
    shutil.copytree(tmp_path / "cache", tmp_path / "copied")
    real = SentenceTransformerEmbedder.encode
    calls = []

    def other_cpu(self, texts, *args, **kwargs):
        calls.append(len(texts))
        v = np.asarray(real(self, texts, *args, **kwargs), dtype=np.float32)
        return v + np.float32(0.02) * np.sin(np.arange(v.size, dtype=np.float32)).reshape(v.shape)

    monkeypatch.setattr(SentenceTransformerEmbedder, "encode", other_cpu)
    run("copied", "there")
    assert calls == []                                      # nothing embedded again
    for name in ("segments.csv", "categories.csv", "core_ideas.csv", "cqr_table.md"):
        assert (tmp_path / "here" / name).read_bytes() == (tmp_path / "there" / name).read_bytes(), name
    assert np.array_equal(np.load(tmp_path / "here" / "vectors.npy"),
                          np.load(tmp_path / "there" / "vectors.npy"))
    run("empty", "fresh")                                   # the other machine on its own
    assert calls and not np.array_equal(np.load(tmp_path / "here" / "vectors.npy"),
                                        np.load(tmp_path / "fresh" / "vectors.npy"))
