"""Sensitizing concepts (optional, deductive): does the data support what we expected?

Each concept from the config ("genuineness: being real and human with the
client ...") is embedded with the same model as the segments. Segments similar
to it above ``segment_threshold`` support it; the themes holding those segments
are listed. A concept with too little support is reported as unsupported, never
forced onto a theme.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..types import CONCEPT_COLUMNS
from .label import representative


class Concept(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""


class ConceptsConfig(BaseModel):
    """Config section ``concepts``."""

    model_config = ConfigDict(extra="forbid")

    items: list[Concept] = []
    segment_threshold: float = Field(0.45, ge=-1, le=1)
    min_segments: int = Field(3, ge=1)
    min_cases: int = Field(2, ge=1)
    n_quotes: int = Field(3, ge=1, description="quotes shown per supported concept (at least 1)")


def concept_text(c: Concept) -> str:
    return f"{c.name}: {c.description}" if c.description else c.name


def match_concepts(concept_vectors: np.ndarray, config: ConceptsConfig, segments: pd.DataFrame,
                   embeddings: np.ndarray, segment_theme: np.ndarray,
                   theme_centroids: np.ndarray) -> pd.DataFrame:
    cases = segments["case_id"].tolist()
    ids = segments["segment_id"].tolist()
    rows = []
    for concept, vec in zip(config.items, concept_vectors):
        sims = embeddings @ vec
        support = np.flatnonzero(sims >= config.segment_threshold)
        sup_cases = sorted({cases[i] for i in support})
        by_theme: dict[int, int] = {}
        for i in support:
            if segment_theme[i] >= 0:
                by_theme[int(segment_theme[i])] = by_theme.get(int(segment_theme[i]), 0) + 1
        theme_sims = theme_centroids @ vec if len(theme_centroids) else np.zeros(0)
        themes = sorted((t for t, n in by_theme.items() if n >= 2),
                        key=lambda t: (-by_theme[t], -theme_sims[t], t))
        ok = len(support) >= config.min_segments and len(sup_cases) >= config.min_cases
        quotes = representative(embeddings, support, vec, cases, config.n_quotes, 0.3) if ok else []
        rows.append({"concept": concept.name, "description": concept.description,
                     "status": "supported" if ok else "unsupported",
                     "theme_ids": [int(t) for t in themes],
                     "similarity": float(theme_sims.max()) if len(theme_sims) else 0.0,
                     "n_segments": int(len(support)), "n_cases": len(sup_cases),
                     "quote_ids": [ids[q] for q in quotes],
                     # the segments n_segments counts, most similar first
                     "segment_ids": [ids[i] for i in sorted(support, key=lambda i: (-sims[i], i))]})
    return pd.DataFrame(rows, columns=list(CONCEPT_COLUMNS))
