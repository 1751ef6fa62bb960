"""What the search box understands: words, "phrases", OR, and a trailing wildcard.

``ashamed OR crying`` finds segments with either word; ``"my supervisor"`` the two
words together, in that order; ``supervis*`` every word starting so (supervisor,
supervision, supervising). Words next to each other must all occur (AND); OR
separates alternatives, each of which may hold several words. Case never matters.

A word matches as a whole word (``cry`` does not find ``crying``: that is what
``cry*`` is for), so that a short word does not find every longer word holding it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

_TOKEN = re.compile(r'"([^"]*)"?|(\S+)')
#: what separates alternatives (OR in capitals: "or" in lower case is a word like any other)
OR_WORDS = ("OR", "|")


@dataclass(frozen=True)
class Query:
    """A parsed search: alternatives (OR), each a list of terms that must all match."""

    text: str
    groups: tuple[tuple[str, ...], ...]  # each term as a regular expression

    @classmethod
    def parse(cls, text: str) -> Query:
        groups: list[list[str]] = [[]]
        for m in _TOKEN.finditer(text or ""):
            phrase, word = m.group(1), m.group(2)
            if word in OR_WORDS:
                if groups[-1]:
                    groups.append([])
                continue
            term = _phrase(phrase) if phrase is not None else _word(word)
            if term:
                groups[-1].append(term)
        return cls(" ".join((text or "").split()), tuple(tuple(g) for g in groups if g))

    def __bool__(self) -> bool:
        return bool(self.groups)

    def mask(self, hay: pd.Series) -> pd.Series:
        """Which rows of ``hay`` (text) the query finds."""
        if not self.groups:
            return pd.Series(True, index=hay.index)
        hay = hay.astype(str)
        out = pd.Series(False, index=hay.index)
        for group in self.groups:
            hit = pd.Series(True, index=hay.index)
            for term in group:
                hit &= hay.str.contains(term, flags=re.IGNORECASE, regex=True)
            out |= hit
        return out

    def pattern(self) -> re.Pattern | None:
        """Every term of the query in one pattern, to mark what was found in a text."""
        terms = sorted({t for g in self.groups for t in g}, key=len, reverse=True)
        return re.compile("|".join(terms), re.IGNORECASE) if terms else None


def _edges(body: str) -> str:
    # whole words: no letter or digit right before or after (\b fails next to punctuation)
    return rf"(?<!\w){body}(?!\w)"


def _word(word: str) -> str:
    if word.endswith("*") and len(word.rstrip("*")) > 0:
        return rf"(?<!\w){re.escape(word.rstrip('*'))}\w*"
    word = word.strip("*")
    return _edges(re.escape(word)) if word else ""


def _phrase(phrase: str) -> str:
    words = phrase.split()
    if not words:
        return ""
    body = r"\s+".join(re.escape(w.rstrip("*")) + (r"\w*" if w.endswith("*") else "")
                       for w in words)
    return rf"(?<!\w){body}" + ("" if words[-1].endswith("*") else r"(?!\w)")
