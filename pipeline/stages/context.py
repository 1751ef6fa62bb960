"""Context stage: each segment's vector, read with its neighbours in the interview.

A segment is a few sentences cut out of a conversation. "It was the first time"
means little alone; the segments around it say what it is about. Human coders
read a unit in its context, and so does the grouping here: each segment's vector
is blended with the mean of its neighbours in the same interview (``window``
segments on each side, in the order they were spoken), with ``weight`` for the
context::

    v' = unit(unit(v) + weight * unit(mean of the neighbours' unit vectors))

The context never crosses from one case into another, and the segment's own text
still decides where it goes (the neighbours' mean counts ``weight`` as much, a fifth
by default). These vectors are used only to group segments into themes (reduce,
cluster, outlier reassignment and the map); labels, quotes, domains and concept
matches use each segment's own vector, so every quote still stands for itself.
``weight: 0`` turns the stage off. On the coded benchmark data, context raises
the agreement of themes with the human codes (bench/README.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConsensaError


class ContextConfig(BaseModel):
    """Config section ``context``."""

    model_config = ConfigDict(extra="forbid")

    window: int = Field(2, ge=0, le=50, description=(
        "neighbouring segments on each side, in the same interview, that give a segment its context"))
    weight: float = Field(0.2, ge=0.0, le=10.0, description=(
        "weight of the context against the segment's own meaning (1); 0 turns context off"))


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


def speaking_order(segments: pd.DataFrame) -> np.ndarray:
    """Row positions of ``segments`` sorted by case, then turn, then position in the
    turn (``start_char`` when present); rows that tie keep their order."""
    keys = [c for c in ("case_id", "turn_index", "start_char") if c in segments.columns]
    if "case_id" not in keys:
        raise ConsensaError("the context stage needs the segments' case_id column")
    frame = segments[keys].reset_index(drop=True)
    return frame.sort_values(keys, kind="stable").index.to_numpy()


def contextualize(vectors: np.ndarray, segments: pd.DataFrame, window: int = 2,
                  weight: float = 0.5) -> np.ndarray:
    """Context-blended unit vectors, row for row with ``vectors`` (see the module doc).

    ``segments`` gives each row's ``case_id`` and, where present, ``turn_index`` and
    ``start_char`` (the speaking order). A segment with no neighbour in its case
    keeps its own direction. ``vectors`` is not modified.
    """
    X = np.asarray(vectors, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] != len(segments):
        raise ConsensaError(f"the context stage got {X.shape[0] if X.ndim else 0} vectors for "
                            f"{len(segments)} segments")
    U = _unit(X)
    if window <= 0 or weight <= 0 or len(U) == 0:
        return U
    order = speaking_order(segments)
    cases = segments["case_id"].astype(str).to_numpy()[order]
    bounds = np.r_[0, np.flatnonzero(cases[1:] != cases[:-1]) + 1, len(order)]
    out = np.empty_like(U)
    for a, b in zip(bounds[:-1], bounds[1:]):         # one interview at a time
        rows = order[a:b]
        S = U[rows].astype(np.float64)
        m = len(S)
        pos = np.arange(m)
        lo = np.maximum(pos - window, 0)
        hi = np.minimum(pos + window + 1, m)
        csum = np.vstack([np.zeros((1, S.shape[1])), np.cumsum(S, axis=0)])
        count = (hi - lo - 1)[:, None]                 # neighbours, the segment itself left out
        context = np.zeros_like(S)
        has = count[:, 0] > 0
        context[has] = _unit((csum[hi] - csum[lo] - S)[has] / count[has])
        out[rows] = _unit(S + weight * context)
    return out
