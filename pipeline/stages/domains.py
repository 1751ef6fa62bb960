"""Domains stage: group themes into proposed domains.

A hierarchy (average linkage, cosine distance) over the theme centroids is cut
at ``distance_threshold`` (or into ``n_domains`` groups). A theme left alone by
the cut goes to the Miscellaneous domain, as CQR keeps an "other" domain for
what fits nowhere else. Domains are named by the words that set their segments
apart from the rest (keyness; see :func:`pipeline.stages.label.keyness`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from .label import Vocabulary, keyness

MISC = "Miscellaneous"


class DomainConfig(BaseModel):
    """Settings of the domains stage (config section ``domains``)."""

    model_config = ConfigDict(extra="forbid")

    distance_threshold: float = Field(0.4, gt=0, le=2,
                                      description="cut the theme tree at this cosine distance")
    n_domains: int | None = Field(None, ge=1, description="cut into this many groups instead")
    singletons_to_miscellaneous: bool = True
    name_words: int = Field(3, ge=1, description="keywords in a domain's name (at least 1)")


@dataclass(frozen=True)
class DomainAssignment:
    theme_domain: np.ndarray        # domain id per theme
    domains: pd.DataFrame           # domain_id, name, keywords, theme_ids, n_themes, is_miscellaneous
    linkage: np.ndarray | None      # scipy linkage matrix over theme centroids


def propose_domains(theme_centroids: np.ndarray, segment_theme: np.ndarray,
                    vocabulary: Vocabulary, config: DomainConfig) -> DomainAssignment:
    from scipy.cluster.hierarchy import fcluster, linkage

    k = theme_centroids.shape[0]
    link = None
    if k >= 2:
        link = linkage(theme_centroids.astype(np.float64), method="average", metric="cosine")
        link[:, 2] = np.maximum(link[:, 2], 0.0)
        if config.n_domains:
            groups = fcluster(link, t=min(config.n_domains, k), criterion="maxclust")
        else:
            groups = fcluster(link, t=config.distance_threshold, criterion="distance")
    else:
        groups = np.ones(k, dtype=int)
    sizes = {g: int(np.sum(groups == g)) for g in set(groups.tolist())}
    misc = [t for t in range(k) if config.singletons_to_miscellaneous and k > 1 and sizes[groups[t]] == 1]
    # Number domains by their first (largest) theme, so domain 0 holds theme 0.
    order: list[int] = []
    for t in range(k):
        if t not in misc and groups[t] not in order:
            order.append(int(groups[t]))
    theme_domain = np.array([len(order) if t in misc else order.index(int(groups[t]))
                             for t in range(k)], dtype=np.int64)
    n_dom = len(order) + (1 if misc else 0)
    docs = {d: [vocabulary.docs[i] for i in np.flatnonzero(segment_theme >= 0)
                if theme_domain[segment_theme[i]] == d] for d in range(n_dom)}
    words = keyness(docs)
    rows = []
    for d in range(n_dom):
        members = np.flatnonzero(theme_domain == d).tolist()
        kw = [vocabulary.surface.get(w, w) for w, _ in words[d][:10]]
        is_misc = bool(misc) and d == len(order)
        name = MISC if is_misc else (" / ".join(kw[:config.name_words]) or f"domain {d}")
        rows.append({"domain_id": d, "name": name, "keywords": kw,
                     "theme_ids": [int(t) for t in members],
                     "n_themes": len(members), "is_miscellaneous": is_misc})
    domains = pd.DataFrame(rows, columns=["domain_id", "name", "keywords", "theme_ids", "n_themes",
                                          "is_miscellaneous"])
    return DomainAssignment(theme_domain=theme_domain, domains=domains, linkage=link)
