"""The heap of a long-lived worker (pipeline.heap): freed memory given back after each
batch of model work in a Dask worker, and nowhere else."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import heap, shards
from pipeline.stages.embed import SentenceTransformerEmbedder


@pytest.fixture
def trims(monkeypatch):
    """The calls to the heap trim, counted (not run); per-batch trimming off to start."""
    calls = []
    monkeypatch.setattr(heap, "_each_batch", False)
    monkeypatch.setattr(heap, "trim_heap", lambda: calls.append(1) or True)
    return calls


class _Tokenizer:
    def __call__(self, texts, truncation, max_length):
        return {"input_ids": [[0] * min(max_length, len(t.split()) + 2) for t in texts]}


class _Model:
    """What the embedder asks of a SentenceTransformer, without the model."""

    tokenizer = _Tokenizer()
    max_seq_length = 256

    def __init__(self) -> None:
        self.batches: list[int] = []

    def get_embedding_dimension(self) -> int:
        return 4

    def encode(self, texts, batch_size, show_progress_bar, convert_to_numpy, normalize_embeddings):
        self.batches.append(len(texts))
        return np.ones((len(texts), 4), dtype=np.float32)


def _embedder(**kw) -> SentenceTransformerEmbedder:
    emb = SentenceTransformerEmbedder(show_progress_bar=False, **kw)
    emb.model_ = _Model()
    return emb


def test_batch_done_trims_only_when_the_process_asked_for_it(trims):
    assert heap.batch_done() is False and trims == []
    heap.trim_after_each_batch(True)
    assert heap.trims_after_each_batch()
    assert heap.batch_done() is True and trims == [1]
    heap.trim_after_each_batch(False)
    assert heap.batch_done() is False and trims == [1]


def test_the_embedder_gives_the_heap_back_after_each_batch_in_a_worker(trims):
    texts = [" ".join(["word"] * n) for n in range(1, 301)]
    emb = _embedder(batch_tokens=512, batch_size=64)
    vectors = emb.encode(texts)
    assert vectors.shape == (300, 4) and trims == []           # a plain process: no trim
    heap.trim_after_each_batch(True)
    emb.model_.batches.clear()
    emb.encode(texts)
    assert len(emb.model_.batches) > 1
    assert len(trims) == len(emb.model_.batches)               # one trim after every batch


def test_the_worker_plugin_turns_the_per_batch_trim_on(trims, monkeypatch):
    monkeypatch.setattr(shards, "restore_mmap_threshold", lambda: False)
    shards._worker_allocator_plugin().setup(worker=None)
    assert heap.trims_after_each_batch()


def test_the_trim_is_glibcs_or_nothing():
    assert isinstance(heap.trim_heap(), bool)
