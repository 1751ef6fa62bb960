"""Valence of what participants said: the check that a stance pole is in the words.

A stance split (:mod:`pipeline.stages.crossanalysis`) is found in the embedding
space, along an axis between anchor phrases ("it was helpful" against "it was not
helpful"). Sentence embeddings such as all-MiniLM-L6-v2 place a text by its topic
far more than by the judgement in it, so a split can separate two sets of accounts
by something else and still be named "helpful" and "not helpful": the demo's run
proposed "(stance: helpful)" for quotes saying training did not help, and a study of
ruptures "(stance: positive)" for body language and fears. A pole is a claim about what the participants said, so it is
checked against their words: the side named for the positive pole must read more
positive than the other, by VADER's valence (Hutto & Gilbert, 2014), a lexicon of
about 7,500 words rated by people, with rules for negation ("not helpful", "didn't
help"), degree ("really", "a bit") and contrast ("but").

VADER matches words as written, so an inflected form its lexicon lacks ("helped",
"supported") is read as its lemma (spaCy's lookup table) where the lexicon has
that ("help", "support"). Transcriber notes ("[laughs]") are not the participant's
words and are left out. Text in a language other than English
reads as neutral, so no split of it passes the check: a pole is then not proposed
rather than proposed unchecked.

Public functions: :func:`valence` ``(texts) -> ndarray`` (one compound score in
[-1, 1] a text), :func:`typical_valence` ``(texts, at_most, seed) -> float`` and
:func:`poles_read_right` ``(texts, low, margin, typical) -> (bool, positive side's
mean, negative side's mean)``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

#: a word inside a whitespace token, with what comes before and after it
_WORD = re.compile(r"^(\W*)([\w'’-]+?)(\W*)$")


@lru_cache(maxsize=1)
def _analyser():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def _lemmatised(text: str, lexicon) -> str:
    """``text`` with each word that VADER's lexicon lacks replaced by its lemma where
    the lexicon has that ("helped" -> "help"); every other character as it was, so
    VADER's rules (capitals, "!", negation) read what they read before."""
    from .naming import _lemma  # naming's cached lookup lemma: one lemma for a word everywhere

    out = []
    for token in text.split():
        m = _WORD.match(token)
        if m is None:
            out.append(token)
            continue
        before, word, after = m.groups()
        lower = word.lower()
        if lower not in lexicon:
            lemma = _lemma(lower)
            if lemma != lower and lemma in lexicon:
                word = lemma.upper() if word.isupper() and len(word) > 1 else lemma
        out.append(before + word + after)
    return " ".join(out)


def valence(texts: Sequence[str]) -> np.ndarray:
    """VADER's compound score of each text, in [-1, 1] (0: neutral or not English),
    its transcriber notes left out and its words read as their lemmas where the
    lexicon lacks the form said."""
    from .naming import strip_transcriber_notes

    sia = _analyser()
    return np.array([sia.polarity_scores(_lemmatised(strip_transcriber_notes(str(t)),
                                                     sia.lexicon))["compound"]
                     for t in texts], dtype=np.float64)


def typical_valence(texts: Sequence[str], at_most: int = 2000, seed: int = 0) -> float:
    """The median valence of a study's segments, on a seeded sample of ``at_most`` of
    them: what its participants' talk reads as when it leans neither way. Interview
    talk reads a little positive ("yeah", "well", "I like"): about 0.14 on the demo."""
    texts = list(texts)
    if len(texts) > at_most:
        pick = np.random.default_rng(seed).choice(len(texts), at_most, replace=False)
        texts = [texts[i] for i in sorted(pick)]
    return float(np.median(valence(texts))) if texts else 0.0


def poles_read_right(texts: Sequence[str], low: np.ndarray, margin: float,
                     typical: float) -> tuple[bool, float, float]:
    """Whether a stance split's sides read as their poles: the positive side (``~low``)
    reads more positive than the negative side (``low``) by at least ``margin`` in
    mean valence, and the two lie on either side of the study's ``typical`` valence
    (:func:`typical_valence`), as the embedding's test asks of the axis. A side
    less positive than the other but still above what the study's talk reads as is
    not "negative". Returns that, and the two means (positive side first)."""
    low = np.asarray(low, dtype=bool)
    v = valence(texts)
    pos, neg = float(v[~low].mean()), float(v[low].mean())
    return pos - neg >= margin and neg < typical < pos, pos, neg


__all__ = ["valence", "typical_valence", "poles_read_right"]
