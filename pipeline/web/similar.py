"""Find similar: the segments nearest in meaning to a category or to a typed sentence.

Both use the vectors the run saved for its segments (``vectors.npy``, through
:meth:`pipeline.runfolder.RunFolder.vectors`), so nothing is embedded again for a
category: its centre is the mean of its segments' vectors. A typed sentence is
embedded with the run's own embedder, built from the run's saved config
(:func:`pipeline.compose.build_stage`), so that it lands in the same space as the
segments: a sentence-transformer loads its model once (a few seconds, at the first
sentence); an embedder fitted on the corpus (LSA) is fitted again on the run's
segments first, which gives it the run's own space. Both are kept for later searches.
"""

from __future__ import annotations

import threading

import numpy as np

from ..errors import ConsensaError
from ..review.model import RunItems
from ..runfolder import RunFolder


class SimilarityError(ConsensaError):
    """A find-similar search this run cannot answer (no saved vectors, no embedder)."""


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm == 0, 1, norm)


class Similar:
    """Cosine similarity of every segment of one run to a category or a sentence."""

    def __init__(self, run: RunItems) -> None:
        self.run = run
        self._lock = threading.Lock()
        self._vectors: np.ndarray | None = None
        self._embedder = None

    def vectors(self) -> np.ndarray:
        with self._lock:
            if self._vectors is None:
                vecs = RunFolder(self.run.folder).vectors(len(self.run.segments))
                if vecs is None:
                    raise SimilarityError(
                        "this run folder has no saved segment vectors (vectors.npy), so "
                        "nothing can be found by meaning", path=self.run.folder,
                        hint="a run made by this version of Consensa saves them; the word "
                        "search works without them")
                self._vectors = _unit(vecs.astype(np.float32))
            return self._vectors

    def to_theme(self, theme_id: int) -> np.ndarray:
        """Each segment's similarity to the centre of theme ``theme_id``'s segments."""
        members = (self.run.segments["theme"] == int(theme_id)).to_numpy()
        if not members.any():
            raise SimilarityError(f"theme {theme_id} has no segments to take a centre of")
        vecs = self.vectors()
        return vecs @ _unit(vecs[members].mean(axis=0))

    def to_text(self, text: str) -> np.ndarray:
        """Each segment's similarity to ``text``, embedded as the run embedded its segments."""
        text = " ".join(text.split())
        if not text:
            raise SimilarityError("type a sentence to find segments similar to it")
        vecs = self.vectors()
        with self._lock:
            if self._embedder is None:
                self._embedder = self._build_embedder()
            v = np.asarray(self._embedder.encode([text]), dtype=np.float32)[0]
        if v.shape[0] != vecs.shape[1]:
            raise SimilarityError(f"the sentence's vector has {v.shape[0]} dimensions, the "
                                  f"run's {vecs.shape[1]}: the run's embedder is not the one "
                                  "that made its vectors")
        return vecs @ _unit(v)

    def _build_embedder(self):
        from ..compose import build_stage
        from ..config import RunConfig

        folder = RunFolder(self.run.folder)
        try:
            cfg = RunConfig.model_validate(folder.config)
        except Exception as exc:  # pydantic's errors for an old or hand-edited config
            raise SimilarityError(f"the run's config.yaml cannot build its embedder ({exc})",
                                  path=self.run.folder,
                                  hint="find similar to a category works without it") from exc
        embedder = build_stage("embed", cfg)
        if embedder.model_id is None:  # fitted on the corpus: fit it on the run's segments
            embedder.encode(list(self.run.segments["text"].astype(str)))
        return embedder
