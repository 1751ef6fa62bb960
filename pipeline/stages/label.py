"""Label stage: keywords, key phrases, a provisional name and representative quotes.

Keywords are class-based TF-IDF (c-TF-IDF) over lemmas: a word scores high for a
theme when it is frequent in the theme and rare across themes. Stop words and
spoken fillers ("um", "like", "you know", "kind of") are removed first, only for
this scoring: quotes are never altered. Keywords are shown in their most common
spoken form ("taught", not the lemma "teach").
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..types import Clustering
from .cluster import centroids

FILLER_PHRASES = ("you know", "kind of", "sort of", "i mean", "i guess", "i think",
                  "a little bit", "a bit", "and stuff", "or something", "or whatever",
                  "at the end of the day", "to be honest", "i don't know", "i dunno")
FILLER_WORDS = frozenset("""
um umm uh uhh uhm er erm ah oh hmm mm mmm mhm mm-hmm uh-huh like yeah yes yep okay ok
right well so just really actually basically literally totally stuff thing things gonna
wanna gotta kinda sorta laugh laughs laughing pause inaudible crosstalk lot lots little bit
pretty maybe sure mean guess know think say
said tell told go going went get got come came want thing something anything everything
way time kind sort yeah probably definitely obviously honestly certainly
""".split())


class LabelConfig(BaseModel):
    """Settings of the label stage (config section ``label``)."""

    model_config = ConfigDict(extra="forbid")

    n_keywords: int = Field(10, ge=1, description="keywords listed per theme (at least 1)")
    n_phrases: int = Field(5, ge=0, description="phrases listed per theme (0 for none)")
    n_quotes: int = Field(5, ge=1, description="quotes shown per theme (at least 1)")
    name_words: int = Field(3, ge=1, description="keywords in a theme's name (at least 1)")
    diversity: float = Field(0.3, ge=0, le=1, description=(
        "0 picks the quotes nearest the theme's centre, 1 the most unlike each other"))
    extra_stop_words: list[str] = []


@dataclass(frozen=True)
class Vocabulary:
    """Per-document content lemmas and the surface form shown for each lemma."""

    docs: list[list[str]]          # content lemmas per document, in order
    chains: list[list[list[str]]]  # runs of adjacent content lemmas (for phrases)
    surface: dict[str, str]        # lemma -> most common spoken form


def _stop_words(extra: Sequence[str]) -> frozenset[str]:
    # spaCy's list, not scikit-learn's: the latter holds content words such as
    # "cry", "fire" and "system", fatal for interviews about crying.
    from .nlp import stop_words

    return stop_words() | FILLER_WORDS | {w.lower() for w in extra}


_FILLER_RE = re.compile(r"\b(" + "|".join(re.escape(p) for p in FILLER_PHRASES) + r")\b"
                        r"|\[[^\]]{0,40}\]", re.I)  # and transcriber notes: [laughs], [pause]


def build_vocabulary(texts: Sequence[str], extra_stop_words: Sequence[str] = ()) -> Vocabulary:
    from .nlp import spacy

    nlp = spacy().blank("en")
    nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
    nlp.initialize()
    stop = _stop_words(extra_stop_words)
    forms: dict[str, Counter] = defaultdict(Counter)
    lower_seen: set[str] = set()     # lemmas seen in lower case somewhere
    docs, chains = [], []
    # spaCy refuses a text longer than nlp.max_length (only one unbroken "word" makes a
    # segment that long): its keywords come from its start
    cleaned = [_FILLER_RE.sub(" | ", t)[:nlp.max_length - 1] for t in texts]
    for doc in nlp.pipe(cleaned, batch_size=512):
        lemmas: list[str] = []
        runs: list[list[str]] = [[]]
        for tok in doc:
            word = tok.text.lower().replace("’", "'")
            lemma = tok.lemma_.lower().replace("’", "'")
            if (tok.is_alpha and len(lemma) > 2 and word not in stop and lemma not in stop):
                lemmas.append(lemma)
                runs[-1].append(lemma)
                forms[lemma][word] += 1
                if not tok.is_title:
                    lower_seen.add(lemma)
            elif runs[-1]:
                runs.append([])
        docs.append(lemmas)
        chains.append([r for r in runs if len(r) >= 2])
    # A word only ever written with a capital is a name (Jess, Okafor): it says who,
    # not what, so it neither names a theme nor counts for one.
    names = set(forms) - lower_seen
    if names:
        docs = [[w for w in d if w not in names] for d in docs]
        chains = [[r for r in c if not names & set(r)] for c in chains]
    surface = {lemma: c.most_common(1)[0][0] for lemma, c in forms.items() if lemma not in names}
    return Vocabulary(docs=docs, chains=chains, surface=surface)


def vocabulary_arrays(vocab: Vocabulary) -> dict[str, np.ndarray]:
    """``vocab`` as a cache entry (:mod:`pipeline.cache`): its lemmas as JSON text,
    never the segments' sentences."""
    return {"vocabulary": np.asarray(json.dumps(
        {"docs": vocab.docs, "chains": vocab.chains, "surface": vocab.surface}))}


def vocabulary_from_arrays(arrays, n_docs: int) -> Vocabulary | None:
    """The vocabulary of a cache entry, or None when it is not one of ``n_docs``
    documents (an entry that does not fit is built again)."""
    data = json.loads(str(arrays["vocabulary"]))
    docs, chains, surface = data["docs"], data["chains"], data["surface"]
    if not (isinstance(docs, list) and isinstance(chains, list) and isinstance(surface, dict)) \
            or len(docs) != n_docs or len(chains) != n_docs:
        return None
    return Vocabulary(docs=docs, chains=chains, surface=surface)


def ctfidf(groups: dict[int, list[list[str]]], min_docs: int = 2) -> dict[int, list[tuple[str, float]]]:
    """Class-based TF-IDF: for each group, its terms ranked by score (best first).

    ``groups`` maps a group id to its documents' term lists. A term must occur in
    at least ``min_docs`` documents of a group (or all of them, if fewer) to be
    ranked for it, so one vivid quote cannot name a theme.
    """
    tf: dict[int, Counter] = {}
    df_in_group: dict[int, Counter] = {}
    for g, docs in groups.items():
        tf[g] = Counter(t for d in docs for t in d)
        df_in_group[g] = Counter(t for d in docs for t in set(d))
    total = Counter()
    for c in tf.values():
        total.update(c)
    avg_words = np.mean([sum(c.values()) for c in tf.values()]) if tf else 0.0
    out: dict[int, list[tuple[str, float]]] = {}
    for g, counts in tf.items():
        n_words = sum(counts.values()) or 1
        need = min(min_docs, len(groups[g]))
        scored = [(t, (c / n_words) * np.log(1 + avg_words / total[t]))
                  for t, c in counts.items() if df_in_group[g][t] >= need]
        scored.sort(key=lambda x: (-x[1], x[0]))
        out[g] = [(t, float(s)) for t, s in scored]
    return out


def keyness(groups: dict[int, list[list[str]]], min_count: int = 3) -> dict[int, list[tuple[str, float]]]:
    """Terms that set a group apart: p(t|g) * log(p(t|g) / p(t)), positive only.

    Used for domains, which are few and large: there a word frequent everywhere
    ("felt", "session") still tops a c-TF-IDF ranking, while its keyness is ~0.
    """
    tf = {g: Counter(t for d in docs for t in d) for g, docs in groups.items()}
    total: Counter = Counter()
    for c in tf.values():
        total.update(c)
    n_all = sum(total.values()) or 1
    out: dict[int, list[tuple[str, float]]] = {}
    for g, counts in tf.items():
        n = sum(counts.values()) or 1
        scored = [(t, (c / n) * np.log((c / n) / (total[t] / n_all)))
                  for t, c in counts.items() if c >= min_count]
        scored = sorted(((t, float(v)) for t, v in scored if v > 0), key=lambda x: (-x[1], x[0]))
        out[g] = scored
    return out


def representative(vectors: np.ndarray, members: np.ndarray, centroid: np.ndarray,
                   cases: Sequence[str], n: int, diversity: float) -> list[int]:
    """Indices of ``n`` quotes near the centroid yet unlike each other (MMR).

    Quotes from a case already chosen are penalised, so the quotes span cases.
    """
    if len(members) == 0:
        return []
    sims = vectors[members] @ centroid
    chosen = [int(np.argmax(sims))]
    seen_cases = {cases[members[chosen[0]]]}
    while len(chosen) < min(n, len(members)):
        redundancy = (vectors[members] @ vectors[members[chosen]].T).max(axis=1)
        score = (1 - diversity) * sims - diversity * redundancy
        score -= np.array([0.05 if cases[m] in seen_cases else 0.0 for m in members])
        score[chosen] = -np.inf
        best = int(np.argmax(score))
        chosen.append(best)
        seen_cases.add(cases[members[best]])
    return [int(members[i]) for i in chosen]


def _by_case(docs: list[list[str]], case_of: np.ndarray, mask: np.ndarray) -> list[list[str]]:
    pooled: dict[str, list[str]] = {}
    for i in np.flatnonzero(mask):
        pooled.setdefault(case_of[i], []).extend(docs[i])
    return list(pooled.values())


def label_themes(segments: pd.DataFrame, embeddings: np.ndarray, clustering: Clustering,
                 config: LabelConfig, vocabulary: Vocabulary | None = None) -> pd.DataFrame:
    """One row per theme: keywords, key phrases, name, quotes and counts.

    Columns: theme_id, name, keywords, key_phrases, n_segments, n_cases, cases,
    quote_ids, core_idea, mean_strength, n_reassigned (see types.THEME_COLUMNS;
    domain and frequency label are added by later stages).
    """
    vocab = vocabulary or build_vocabulary(segments["text"].tolist(), config.extra_stop_words)
    theme = clustering.theme
    k = clustering.n_themes
    case_of = segments["case_id"].to_numpy()
    phrase_docs = [[" ".join(c[j:j + n]) for c in chains for n in (2, 3)
                    for j in range(len(c) - n + 1)] for chains in vocab.chains]
    # Terms are pooled per case within a theme, so a keyword must be used in at
    # least two cases: a theme is named by what cases share, not one story's details.
    words = ctfidf({t: _by_case(vocab.docs, case_of, theme == t) for t in range(-1, k)})
    phrases = ctfidf({t: _by_case(phrase_docs, case_of, theme == t) for t in range(-1, k)})
    cents = centroids(embeddings, theme, k)
    cases = segments["case_id"].tolist()
    ids = segments["segment_id"].tolist()
    rows = []
    for t in range(k):
        members = np.flatnonzero(theme == t)
        core = members[~clustering.reassigned[members]]
        pool = core if len(core) else members
        quotes = representative(embeddings, pool, cents[t], cases, config.n_quotes, config.diversity)
        kw = [vocab.surface.get(w, w) for w, _ in words[t][:config.n_keywords]]
        ph = [" ".join(vocab.surface.get(w, w) for w in p.split())
              for p, _ in phrases[t][:config.n_phrases]]
        theme_cases = sorted(set(segments["case_id"].iloc[members]))
        rows.append({
            "theme_id": t,
            "name": " / ".join(kw[:config.name_words]) if kw else f"theme {t}",
            "keywords": kw, "key_phrases": ph,
            "n_segments": int(len(members)), "n_cases": len(theme_cases),
            "cases": theme_cases,
            "quote_ids": [ids[q] for q in quotes],
            "core_idea": segments["text"].iloc[quotes[0]] if quotes else "",
            "mean_strength": float(np.mean(clustering.strength[members])) if len(members) else 0.0,
            "n_reassigned": int(clustering.reassigned[members].sum()),
        })
    return pd.DataFrame(rows, columns=["theme_id", "name", "keywords", "key_phrases", "n_segments",
                                       "n_cases", "cases", "quote_ids", "core_idea",
                                       "mean_strength", "n_reassigned"])
