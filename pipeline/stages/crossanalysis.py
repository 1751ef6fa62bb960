"""Cross-analysis stage: categories within each domain, honest frequencies, flags.

In Consensual Qualitative Research the team's third step is the *cross-analysis*:
within each domain, the core ideas of all cases are sorted into categories (and,
where a category is large, subcategories), and each is labelled general, typical,
variant or rare by how many cases it occurs in (Hill et al. 1997, 2005; Hill
2012). This module proposes that start list from the segments and their domains.

Public functions (pure: tables, arrays and callables in, a frozen dataclass out;
nothing is printed or written):

* :func:`cross_analyse` ``(segments, vectors, segment_domain, config, cqr, *,
  cluster_fn=None, encode=None, frame_domains=(), include_frame=False,
  stability=None, n_cases_total=None, memory=None, answered_no=None) -> CrossAnalysis``.

  - ``segments`` needs ``segment_id``, ``case_id`` and ``text``
    (``SEGMENT_COLUMNS`` has them); ``n_words`` is used when present, else counted.
  - ``vectors``: the segments' embedding vectors, rows aligned with ``segments``
    (made unit length here).
  - ``segment_domain``: int array aligned with the rows; -1 = in no domain (such
    segments are in no category). ``DomainProposal.proposed_domain`` from
    :mod:`pipeline.stages.protocol` is meant.
  - ``cqr``: :class:`~pipeline.stages.cqr.CQRConfig`, the frequency cut-offs and
    ``count_reassigned_above`` (the honest-frequency rule below).
  - ``cluster_fn(vectors) -> (labels, probabilities)``: any clusterer; labels -1
    are outliers, probabilities are membership strengths in [0, 1]. It is called
    on one domain's (or one category's) unit vectors at a time; one with the
    attribute ``case_aware = True`` is called ``cluster_fn(vectors, cases)``.
    Default: :func:`hdbscan_cluster_fn` with the config's ``same_case_distance``
    and ``min_category_case_share``. Any clusterer can be wrapped:
    ``lambda X: (c := make_clusterer().fit(X)).labels_, c.probabilities_``.
  - ``encode(list[str]) -> ndarray``: the embedder that made ``vectors``; it
    embeds the stance anchors. Without it no stance subcategories are proposed.
  - ``frame_domains``: the ids of the interview-frame domains (rows of kind
    "frame" in ``DomainProposal.domains``); they are skipped unless
    ``include_frame`` (``protocol.include_frame``).
  - ``stability``: category id -> stable (bool), from a stability run; a
    category marked False is flagged *unstable*.
  - ``n_cases_total``: the number of cases in the study, the base of the
    frequency labels; default: the distinct ``case_id`` of ``segments``.
  - ``answered_no``: bool array aligned with the rows, the segments of an answer to
    its domain's main question that opens with a negative reply
    (:func:`answered_no_mask` makes it from the turns and the protocol's prompts);
    None: no *answered no* categories.
  - ``memory`` (scikit-learn's name for it): a :class:`~pipeline.cache.Cache`
    where the default clusterer's groups are kept, one entry per set of vectors
    clustered (group numbers and strengths only, no text), and the stance test's
    split of each category (which side each segment is on). A re-run that changes
    only how categories are split or labelled reads them instead of clustering
    again; the groups of a ``cluster_fn`` given by the caller are never cached
    (nothing says what it computes).
* :func:`hdbscan_cluster_fn` ``(min_cluster_size=None, min_samples=None,
  floor=3, same_case_distance=0.0, case_share=0.0, case_share_cap=15) ->
  cluster_fn``: scikit-learn's HDBSCAN, the smallest category scaled to the
  number of segments and of cases clustered, segments of one case held apart.

What :class:`CrossAnalysis` holds
---------------------------------
``categories`` (:data:`CATEGORY_COLUMNS`), one row per category, subcategory and
stance subcategory, in display order: domains by id; within a domain, categories
by counted cases (most first), then segments; each category followed by its
subcategories. ``category_id`` numbers the rows in that order.

=========================== ===========================================================
category_id                 int
parent_id                   int   the category of a subcategory; -1 for a category
domain_id                   int
kind                        str   "category", "subcategory" (content clustered again)
                                  or "stance" (evaluative subcategory)
n_segments                  int   its segments, reassigned outliers included
n_cases                     int   cases among them
cases                       list[str] those cases, in the order they first appear
counted_cases               list[str] the cases that count (honest rule below)
frequency_label             str   Hill's label from ``len(counted_cases)``
label_if_reassigned_counted str   the label if every reassigned outlier counted
                                  (``n_cases``): where it differs, the CQR table can
                                  say the label rests on outliers
flags                       list[str] "single story", "thin", "unstable", "minimal responses",
                                  "answered no" (below)
spans_domains               list[int] other domains whose content the category
                                  shares (categories only; [] otherwise)
quote_ids                   list[str] segment ids, most central first, one per case
                                  before a second from any case, counted segments
                                  before the others (at most ``n_quotes``)
n_reassigned                int   segments that are reassigned outliers
thin_cases                  list[str] counted cases that are *thin* (below)
pole                        str   for a stance subcategory, the pole's name ("helpful",
                                  "negative", ...); "" otherwise
=========================== ===========================================================

Arrays aligned with the segments: ``category`` (its top-level category id; -1:
none), ``subcategory`` (its subcategory or stance subcategory id; -1: none),
``reassigned`` (an outlier moved to its category), ``strength`` (the clusterer's
probability for a placed segment, the cosine to the category's centre for a
reassigned one or for a category that is the whole domain, 0 when in no
category), ``counted`` (the segment counts toward its category's frequency);
``subcategory_reassigned`` and ``subcategory_counted`` the same for the
subcategory level. ``counts`` says how many segments were analysed, skipped
(frame, no domain), outliers, reassigned, counted and left unassigned, and how
many domains (and their segments) were clustered on a layout (``laid_out_*``).

How categories are made
-----------------------
1. **Per domain.** Each analysed domain's segments are clustered on their own
   (``cluster_fn``). By default two segments of one case are held a little apart
   (``same_case_distance``) and the smallest category grows with the cases that
   spoke in the domain (``min_category_case_share``), so that a category is what
   several cases said, not one participant's story told over several turns. A
   category's *centre* is the normalised mean of the segments the clusterer
   placed there. An outlier moves to the nearest centre of its
   domain when the cosine is at least ``reassign_similarity``; otherwise it stays
   in no category. A domain where the clusterer finds no group (too few or too
   uniform segments) becomes one category holding all its segments, all placed:
   the protocol question put them together. A domain of more than
   ``layout_above`` segments (a study without a protocol, or a large study) is
   clustered on a UMAP layout of its vectors instead (:func:`layout_cluster_fn`);
   centres and reassignment stay in the embedding space.
2. **Subcategories.** A category with more than ``subcategory_min_segments``
   segments is clustered again the same way; when that gives two groups or more,
   they are its subcategories (two levels, as CQR papers print them). Its
   segments that fit no subcategory stay in the category only, and so do those of
   a group through which no case would count (made only of outliers reassigned to
   the category below ``cqr.count_reassigned_above``): a subcategory of no case is
   not proposed.
3. **Stance** (with ``encode`` and ``stance_axes``). Human categories often pair
   a subject with the participant's judgement ("export was simple", "navigation
   was confusing"). Each axis is the difference of the normalised means of its
   positive and negative anchor phrases, embedded with ``encode``. A category's
   segments are projected on the axis and cut where the two sides are tightest
   (1-D 2-means). The cut is a *stance split* when each side has at least
   ``stance_min_segments`` segments from ``stance_min_cases`` cases, the sides
   are clearly apart (Ashman's D, the gap of the two means over their pooled
   spread, at least ``stance_separation``; a cut of one normal hump gives about
   2.6) and they lie on either side of the study's typical value on that axis
   (the median over all analysed segments), so that the names "helpful" / "not
   helpful" say which side leans which way. The axis with the largest D wins.
   A pole is a claim about what the participants said, and the embedding reads
   topic more than judgement, so the words are checked too
   (:mod:`pipeline.stages.valence`): the side named for the positive pole must read
   more positive than the other by at least ``stance_valence_margin`` in mean
   valence, the two on either side of the study's typical valence (the median over
   a sample of 2,000 analysed segments at most); a split that fails is not proposed
   (counted as ``stance_splits_not_in_words``) and the category is split by content
   instead.
   The two sides become the category's subcategories (kind "stance"), in place
   of content subcategories.
4. **Answered no** (with ``answered_no``, ``negative_answers``). A case that
   answers a domain's yes/no question "No." ("Not really.", "Not at all.", "Zero.",
   "I don't think so.") said what it did not experience: its answer is about the
   absence, and a CQR table lists it as a category of its own ("Training did not
   prepare them", typical), not inside the content of the cases that said yes.
   Clustered with them it was counted in their category: "helpful disclosure",
   general, held the answers of clients who said no disclosure had helped and then
   told of one that had not. When the answers of at least
   ``negative_answer_min_cases`` cases open with a negative reply
   (:func:`negative_reply`), those cases' segments in the domain that answer the
   question and its follow-ups are one category, flagged *answered no*, and the
   domain's other segments are clustered as above. An answer that turns at once
   ("Not really, but there was one time") is no negative reply, nor is a "No" to a
   probe or a follow-up: only the answer to the main question of the domain counts
   (the caller says which segments those are: :func:`answered_no_mask`).
5. **Spans domains.** A category whose centre is at least as similar to another
   domain's centre as to its own domain's centre minus ``spans_margin``, or
   whose centre is within ``duplicate_similarity`` of a category of another
   domain, lists those domains in ``spans_domains``. Nothing is moved or split:
   the team decides.

Honest frequencies and flags
----------------------------
A case counts toward a (sub)category's frequency label only through segments the
clusterer placed there, or outliers reassigned with a cosine of at least
``cqr.count_reassigned_above`` (stricter than ``reassign_similarity``). A
subcategory's segment counts when it counts for the category and was placed in
the subcategory or reassigned to it above the same threshold. Stance sides are a
cut, not a reassignment: a segment counts in its side when it counts in the
category.

* **single story**: one case gives more than ``single_story_share`` of the
  segments;
* **thin**: a counted case is thin when all its counted segments are reassigned
  outliers, or when it counts through a single segment of fewer than
  ``thin_words`` words; the category is flagged when its label would change
  without its thin cases;
* **unstable**: ``stability[category_id]`` is False;
* **answered no**: the category holds the answers that open with a negative reply
  to the domain's main question (step 4 above);
* **minimal responses**: more than ``minimal_share`` of the segments say nothing
  beyond assent, fillers, hedges and function words (:func:`says_little`: "Yeah, I
  guess so.", "I don't know."). Their sense is in the questions they answer, so such
  a category gathers replies to many questions rather than one thing several cases
  said; it is listed after the other categories of its domain.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import ConsensaError
from ..types import check_columns
from .cluster import join_nearest, stratified_sample
from .cqr import CQRConfig, frequency_label
from .valence import poles_read_right, typical_valence

ClusterFn = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray]"]
Encoder = Callable[[list[str]], np.ndarray]

#: CrossAnalysis.categories; see the module docstring for each column
CATEGORY_COLUMNS = ("category_id", "parent_id", "domain_id", "kind", "n_segments", "n_cases",
                    "cases", "counted_cases", "frequency_label", "label_if_reassigned_counted",
                    "flags", "spans_domains", "quote_ids", "n_reassigned", "thin_cases", "pole")

SINGLE_STORY = "single story"
THIN = "thin"
UNSTABLE = "unstable"
MINIMAL = "minimal responses"
ANSWERED_NO = "answered no"

#: words that, with assent, fillers and function words, make a reply that says nothing
#: of its own: hedges ("I guess", "I think", "I don't know"), degree ("a little bit"),
#: agreement and courtesy ("I agree", "No problem", "Thank you", "Nice to meet you")
_HEDGE_WORDS = frozenset("""
guess think know mean suppose reckon say said would could maybe probably perhaps
definitely little bit lot much pretty quite kind sort stuff thing things
agree understand point hi hello hey welcome problem worries thank thanks please bye
goodbye morning afternoon evening nice meet having
""".split())
_ANY_WORD = re.compile(r"[\w'’-]+")


def says_little(text: str) -> bool:
    """Whether a segment says nothing beyond assent, fillers, hedges and function words
    ("Yeah, I guess so.", "Yes, I have.", "I think I could do that.", "-you know,-"): its
    sense is in the question it answers, so a category of such replies gathers the
    answers to many questions, not one thing several cases said. A text with no word at
    all says little too."""
    from .naming import strip_transcriber_notes

    # transcriber notes ("[sighs]") are no words of the participant's
    for w in _ANY_WORD.findall(strip_transcriber_notes(text)):
        if not _says_nothing(w):
            return False
    return True


@lru_cache(maxsize=100_000)
def _says_nothing(word: str) -> bool:
    """Whether one word of :func:`says_little`'s is assent, a filler, a hedge or a
    function word. Worked out once a spelling: a study has few, and every segment is
    asked (10,000 segments took a second)."""
    from .naming import FILLER_WORDS
    from .nlp import stop_words
    from .segment import BACKCHANNEL_WORDS

    stop = stop_words()

    def empty(w: str) -> bool:
        if len(w) < 2 or not any(ch.isalnum() for ch in w):
            return True
        # a contraction says what its first part says: "don't" -> do, "I'm" -> i
        base = w[:-3] if w.endswith("n't") else w.split("'")[0]
        return any(x in stop or x in FILLER_WORDS or x in BACKCHANNEL_WORDS or x in _HEDGE_WORDS
                   for x in (w, base)) or base in ("ca", "wo")

    w = word.lower().replace("’", "'").strip("-'")
    # a stutter or a word said twice ("I-I", "E-exactly", "that-that's"): its parts
    return empty(w) or ("-" in w and all(empty(p) for p in w.split("-")))


#: what may come before a reply and leave it a reply: fillers, a laugh or a note, an
#: echo of the question ("Prepare me? No.", "Honestly? No.")
_REPLY_LEAD = (r"(?:(?:um+|uh+|erm+|er|hmm+|mm+|ah+|oh|well|honestly|so|i mean|to be "
               r"(?:honest|fair)|truthfully|sadly|actually)[\s,.…-]+|[^.?!…\n]{1,30}\?\s+)*")
#: a negative reply, and what may follow it within the reply ("No, not really.")
_NEGATIVE = (r"(?:no+|nope|nah|zero|none(?: at all)?|nothing(?: at all| really)?|never"
             r"|(?:not|none|nothing) that i (?:can |could )?(?:remember|recall|know of|think of)"
             r"|nothing (?:comes|springs) to mind"
             r"|not (?:really|at all|much|especially|particularly|a lot|very much|as such)(?: at all)?"
             # a thing denied and the denial said again: "No regrets, no."
             r"|no [a-z'’-]+,? no"
             r"|i (?:don'?t|do not) think so|i wouldn'?t say so|i can'?t say (?:it|they|that|she|he) did"
             r"|absolutely not|definitely not|certainly not|not once|no way"
             # a judgement denied and confirmed: "Not really helpful, no."
             r"|not (?:really |very |particularly |that |especially )?[a-z'’-]+[\s,]+no)")
_NEGATIVE_REPLY = re.compile(
    r"^\s*" + _REPLY_LEAD + r"(?P<reply>" + _NEGATIVE + r"(?:[\s,]+(?:" + _NEGATIVE +
    r"|really|honestly|to be honest|actually))*)\s*(?:[.,!;:…—–-]|$)", re.I)
#: the opening words said twice, the first time broken off
_RESTART = re.compile(r"^(\s*)((?:[\w'’]+\s+){0,2}[\w'’]+)\s*[,-]+\s*(?=\2\b)", re.I)
#: a reply that turns at once: "Not really, but there was one time"
_TURNS = re.compile(r"^[\s,.;:…—–-]*(?:but|although|though|except|apart from|other than|well,? actually"
                    r"|actually,? yes|yes|yeah|mostly|except"
                    r"|well,? (?:one|once|yes|yeah|maybe|sometimes|kind of|sort of|a (?:little|bit|couple))"
                    r"|well,? there (?:was|were|is))\b", re.I)
#: after a comma, the "No" is someone's words the participant reports: "No, I said to her"
_REPORTED = re.compile(r"^\s*(?:i|she|he|they|we|you) (?:said|say|told|tell|asked|went|was like)\b",
                       re.I)


def negative_reply(text: str) -> str:
    """The negative reply an answer opens with, as said ("No", "Not really, no", "Not at
    all" of "[laughs] Prepare me? No.", "Zero", "I don't think so"), or "" when it opens
    with none or turns at once ("Not really, but there was one time..."): the
    participant answered the question in the negative. Transcriber notes are no words
    of the participant's."""
    from .naming import strip_transcriber_notes

    # a false start said again is said once: "I don't, I don't think so, no." The reply
    # is at the opening: a turn of 200,000 words is not read whole
    text = _RESTART.sub(r"\1", strip_transcriber_notes(str(text)[:2000]))
    m = _NEGATIVE_REPLY.match(text)
    if not m:
        return ""
    # the reply said again in other words ("No. Not really.") may still turn: "Well, one."
    rest = text[m.end():]
    while (again := _NEGATIVE_REPLY.match(rest)) and again.end() > 0:
        rest = rest[again.end():]
    if _TURNS.match(rest) or (text[m.end() - 1:m.end()] == "," and _REPORTED.match(text[m.end():])):
        return ""
    # "Not at all, honestly" is the reply "Not at all"
    reply = re.sub(r"(?:[\s,]+(?:honestly|to be honest|actually))+$", "", m.group("reply"), flags=re.I)
    return " ".join(reply.split()).rstrip(" ,")


#: a yes/no question: one that opens with an auxiliary or "any" ("Did your training
#: prepare you?", "Was there a time...?", "Can you think of a time...?", "Any regrets?"),
#: after a joining word; "Can you tell me about...?" asks for a telling, not a yes or no
_POLAR = re.compile(
    r"^(?:(?:and|so|but|now|okay|ok|right|well|then|mm+|mm-hmm|um+|uh+)[\s,.…-]+)*"
    r"(?:(?:do|does|did|is|are|was|were|have|has|had|can|could|would|will|should|may|might)"
    r"(?:n'?t|n’t)?\s+(?!you\s+(?:please\s+)?(?:tell|describe|say|talk|walk|give|explain|share|"
    r"expand|elaborate|speak|go|list|name|take\s+(?:me|us)\s+through)\b)|any(?:thing|one|body)?\b)",
    re.I)


def polar_question(text: str) -> bool:
    """Whether a prompt asks a yes or no (:data:`_POLAR`), read on its last sentence
    that asks (a prompt often leads in: "Thank you. Did your training prepare you?")."""
    asks = [q.strip() for q in re.findall(r"[^.?!…]*\?", str(text))]
    return any(_POLAR.match(q) for q in asks[-1:]) or bool(not asks and _POLAR.match(str(text).strip()))


def answered_no_mask(segments: pd.DataFrame, turns: pd.DataFrame,
                     prompts: pd.DataFrame) -> np.ndarray:
    """The segments of every case's answer to a yes/no main question that it answered
    no, as a bool array aligned with ``segments``.

    ``prompts``: the protocol's prompts (``PROMPT_COLUMNS``: ``case_id``,
    ``turn_index``, ``kind``, ``question``); the main questions (``kind == "main"``)
    that ask a yes or no (:func:`polar_question`) are read. A case's answer to one is
    the participant's first turn after it in ``turns`` (every turn ingest read), as
    said: a bare "No." the segmenter sets aside as a backchannel, or a "Nope." it cuts
    from the front of a segment, is still the answer. When that turn opens with a
    negative reply (:func:`negative_reply`), the case said no to the question, and its
    segments that answer the question or the follow-ups and probes after it, up to its
    next main question, are marked: a case that said "Never." and then told of next
    September is not a case of the ones who did. A "No" to a follow-up or a probe
    ("So you didn't tell anyone?" "No, nobody.") is not the answer to the domain's
    question, and an open question answered "Nothing really. Just that..." is not
    answered no."""
    check_columns(segments, ("case_id", "question_turn_index"), "the segments table")
    n = len(segments)
    out = np.zeros(n, bool)
    if not n or prompts is None or prompts.empty or turns is None or turns.empty:
        return out
    check_columns(turns, ("case_id", "turn_index", "role", "text"), "the turns table")
    check_columns(prompts, ("case_id", "turn_index", "kind", "question"), "the prompts table")
    mains: dict[str, list[tuple[int, bool]]] = {}
    prompt_turns: dict[str, list[int]] = {}
    for c, t, kind, q in zip(prompts["case_id"].astype(str), prompts["turn_index"].astype(int),
                             prompts["kind"].astype(str), prompts["question"].astype(str)):
        prompt_turns.setdefault(c, []).append(t)
        if kind == "main":
            mains.setdefault(c, []).append((t, polar_question(q)))
    spoken: dict[str, list[tuple[int, str]]] = {}
    part = turns[turns["role"].astype(str) == "participant"]
    for c, t, text in zip(part["case_id"].astype(str), part["turn_index"].astype(int),
                          part["text"].astype(str)):
        spoken.setdefault(c, []).append((t, text))
    ranges: dict[str, list[tuple[int, int]]] = {}      # per case: [q, next main) said no
    for c, qs in mains.items():
        qs.sort()
        after = sorted(prompt_turns.get(c, []))
        said = sorted(spoken.get(c, []))
        said_at = [t for t, _ in said]
        for k, (q, polar) in enumerate(qs):
            if not polar:
                continue
            # found by bisection: a case of many thousand turns is read once, not once a
            # question
            j = bisect.bisect_right(after, q)
            nxt = after[j] if j < len(after) else None
            j = bisect.bisect_right(said_at, q)
            answer = said[j][1] if j < len(said) and (nxt is None or said_at[j] < nxt) else ""
            if negative_reply(answer):
                end = qs[k + 1][0] if k + 1 < len(qs) else None
                ranges.setdefault(c, []).append((q, end))
    if not ranges:
        return out
    asked = pd.to_numeric(segments["question_turn_index"], errors="coerce").to_numpy()
    for i, (c, q) in enumerate(zip(segments["case_id"].astype(str), asked)):
        if not np.isnan(q):
            out[i] = any(a <= q and (b is None or q < b) for a, b in ranges.get(c, ()))
    return out


def mostly_minimal(minimal: np.ndarray, share: float) -> bool:
    """The rule of the *minimal responses* flag: more than ``share`` of a category's
    segments (``minimal``, one bool each from :func:`says_little`) say little."""
    minimal = np.asarray(minimal, dtype=bool)
    return bool(len(minimal)) and float(minimal.mean()) > share


# --- Config -------------------------------------------------------------------


class StanceAxis(BaseModel):
    """One evaluative axis: anchor phrases for each pole, and the poles' names."""

    model_config = ConfigDict(extra="forbid")

    positive_name: str = Field(..., min_length=1, description="name of the positive pole")
    negative_name: str = Field(..., min_length=1, description="name of the negative pole")
    positive: list[str] = Field(..., min_length=1, description=(
        "short phrases a participant might say at the positive pole"))
    negative: list[str] = Field(..., min_length=1, description=(
        "short phrases a participant might say at the negative pole"))

    @field_validator("positive", "negative")
    @classmethod
    def _not_blank(cls, value: list[str]) -> list[str]:
        if any(not p.strip() for p in value):
            raise ValueError("an anchor phrase is blank; remove it or write it out")
        return [p.strip() for p in value]


#: Judgements that recur in interview studies: whether something helped, whether it
#: was clear, and how the participant felt about it. Worded generically, first
#: person, as participants speak; no study's own phrases.
DEFAULT_STANCE_AXES = (
    StanceAxis(positive_name="helpful", negative_name="not helpful",
               positive=["it was helpful", "it was really useful", "I liked it",
                         "it worked well for me"],
               negative=["it was not helpful", "it was not useful at all", "I did not like it",
                         "it did not work for me"]),
    StanceAxis(positive_name="clear", negative_name="confusing",
               positive=["it was clear and easy", "it was simple to understand"],
               negative=["it was confusing and difficult", "it was hard to understand"]),
    StanceAxis(positive_name="positive", negative_name="negative",
               positive=["I felt good about it", "it was a positive experience", "I was glad"],
               negative=["I felt bad about it", "it was a negative experience",
                         "I regretted it"]),
)


#: The most segments a domain's clusterer compares all pairs of at once (see
#: :func:`hdbscan_cluster_fn`); also the default of ``max_fit_segments``, so that a
#: larger domain is fitted on a sample of this size.
BRUTE_MAX_SEGMENTS = 5000


class CrossAnalysisConfig(BaseModel):
    """Settings of the cross-analysis stage (config section ``crossanalysis``).

    Similarities are cosine similarities of the run's embedding vectors; the
    defaults suit all-MiniLM-L6-v2.
    """

    model_config = ConfigDict(extra="forbid")

    reassign_similarity: float = Field(0.35, ge=-1, le=1, description=(
        "an outlier joins the nearest category of its domain when at least this similar "
        "to the category's centre"))
    subcategory_min_segments: int = Field(20, ge=2, description=(
        "a category with more segments than this is clustered again into subcategories"))
    single_story_share: float = Field(0.5, gt=0, lt=1, description=(
        "flag 'single story' when one case gives more than this share of the segments"))
    minimal_share: float = Field(0.3, gt=0, le=1, description=(
        "flag 'minimal responses' when more than this share of the segments say nothing "
        "beyond assent, fillers and hedges (\"Yeah, I guess so.\"); such a category is "
        "listed after the others of its domain"))
    thin_words: int = Field(8, ge=1, le=200, description=(
        "a case counting through one segment of fewer words than this is thin"))
    spans_margin: float = Field(0.05, ge=0, le=2, description=(
        "a category spans another domain when at least as similar to that domain's centre "
        "as to its own domain's centre minus this"))
    duplicate_similarity: float = Field(0.9, ge=-1, le=1, description=(
        "categories of two domains whose centres are at least this similar hold the same "
        "content: each spans the other's domain"))
    n_quotes: int = Field(5, ge=1, le=100, description="quote ids kept per (sub)category")
    stance: bool = Field(True, description=(
        "propose evaluative subcategories (needs the embedder: 'encode')"))
    stance_axes: list[StanceAxis] = Field(list(DEFAULT_STANCE_AXES), description=(
        "the evaluative axes, each with anchor phrases for its two poles"))
    stance_min_segments: int = Field(3, ge=1, description=(
        "each side of a stance split needs at least this many segments"))
    stance_min_cases: int = Field(2, ge=1, description=(
        "each side of a stance split needs segments from at least this many cases"))
    stance_separation: float = Field(2.5, ge=0, description=(
        "a stance split needs its sides at least this far apart (Ashman's D: the gap of the "
        "two means over their pooled standard deviation)"))
    stance_null_quantile: float = Field(0.95, ge=0, le=1, description=(
        "and further apart than this share of the same cuts along random directions "
        "through the category's segments"))
    stance_null_directions: int = Field(100, ge=10, le=10000, description=(
        "random directions that set the bar for a clear stance split"))
    stance_valence_margin: float | None = Field(0.2, ge=0, le=2, description=(
        "and the side named for the positive pole reads more positive than the other by "
        "at least this, in the mean valence of its segments' words (VADER's compound "
        "score, -1 to 1), the two sides on either side of the study's median valence; "
        "null: no check of the words"))
    negative_answers: bool = Field(True, description=(
        "the answers to a domain's main question that open with a negative reply ('No.', "
        "'Not really.') are a category of their own, flagged 'answered no', when at least "
        "negative_answer_min_cases cases gave one"))
    negative_answer_min_cases: int = Field(2, ge=1, description=(
        "the cases needed for that category; fewer stay with the domain's other answers"))
    max_fit_segments: int = Field(BRUTE_MAX_SEGMENTS, ge=100, le=10_000_000, description=(
        "a domain with more segments than this finds its categories on a case-stratified "
        "sample of this many; the others join the nearest category (as reassigned segments, "
        "so they count only above cqr.count_reassigned_above) and the counts say so. "
        "Clustering time and memory grow with the square of this number"))
    sample_seed: int = Field(0, ge=0, description=(
        "seed of that sample and of the layout of a large domain (layout_above)"))
    layout_above: int | None = Field(200, ge=50, description=(
        "a domain (or category) of more segments than this is clustered on a UMAP layout "
        "of its vectors, as the whole-corpus themes are: in the embedding's dimensions a "
        "density clusterer leaves most of a large set as outliers. Centres, reassignment "
        "and similarities stay in the embedding space. null: never"))
    layout_components: int = Field(5, ge=2, le=100, description=(
        "the dimensions of that layout"))
    same_case_distance: float = Field(0.2, ge=0, le=2, description=(
        "added to the distance between two segments of one case when a domain is clustered, "
        "so that a category forms from what several cases said rather than from one "
        "participant's story told over several turns; 0 clusters on the content alone"))
    min_category_case_share: float = Field(0.5, ge=0, le=5, description=(
        "a category holds at least this many segments per case that spoke in the domain "
        "(cases counted up to 15), besides the size scaled to the domain's segments; "
        "0 scales it to the segments only"))


# --- Clusterers ---------------------------------------------------------------


def hdbscan_cluster_fn(min_cluster_size: int | None = None, min_samples: int | None = None,
                       floor: int = 3, same_case_distance: float = 0.0,
                       case_share: float = 0.0, case_share_cap: int = 15) -> ClusterFn:
    """A ``cluster_fn`` over scikit-learn's HDBSCAN (euclidean on unit vectors, which
    orders pairs as cosine does).

    The smallest category, unless given, is scaled to the ``n`` segments clustered,
    ``max(floor, round(sqrt(n) / 2))`` (3 for a domain of 40 segments, 5 for 100,
    50 for 10,000), as the whole-corpus clusterer does. ``min_samples``, unless
    given, is a third of it (at least 1): with HDBSCAN's default (equal to the
    smallest category) most of a small domain's segments are called outliers.
    Fewer than twice the smallest category's segments give no group at all.

    Called with the segments' cases as well (``fit(vectors, cases)``; the
    cross-analysis does), two settings make a category what several cases said
    rather than one participant's story, which is what a CQR category is:

    * ``same_case_distance`` is added to the distance between two segments of one
      case. A participant who tells one story over several turns says it in words
      close to each other, and a density clusterer makes a category of it; with the
      penalty, those turns group only where other cases come close too.
    * ``case_share``: the smallest category holds at least this many segments per
      case among those clustered (``round(case_share * k)``, ``k`` counted up to
      ``case_share_cap``, the size of a CQR sample). In a domain where ten cases
      spoke, three segments are rarely a category the team would keep.

    The penalty needs the full distance matrix, so it applies to sets of at most
    ``BRUTE_MAX_SEGMENTS`` segments (the cross-analysis fits larger domains on a
    sample of that size).
    """
    if floor < 2:
        raise ConsensaError(f"floor must be at least 2, got {floor}")

    def fit(vectors: np.ndarray, cases: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.cluster import HDBSCAN

        X = np.asarray(vectors, dtype=np.float64)
        n = len(X)
        k = len(set(np.asarray(cases).tolist())) if cases is not None else 0
        mcs = min_cluster_size or max(floor, int(round(math.sqrt(n) / 2)),
                                      int(round(case_share * min(k, case_share_cap))))
        ms = min_samples or max(1, int(round(mcs / 3)))
        if n < max(2 * mcs, ms, 2):
            return np.full(n, -1, np.int64), np.zeros(n, np.float32)
        if cases is not None and same_case_distance > 0 and n <= BRUTE_MAX_SEGMENTS:
            codes = _case_codes(cases)
            D = _distances(X)
            D += same_case_distance * (codes[:, None] == codes[None, :])
            np.fill_diagonal(D, 0.0)
            model = HDBSCAN(min_cluster_size=mcs, min_samples=ms, metric="precomputed",
                            copy=True).fit(D)
        else:
            # The same exact algorithm either way. In 384 dimensions a tree cannot
            # prune, and scikit-learn's tree search took 5.2 s for 3,300 segments where
            # the full distance matrix took 0.46 s (10x; quadratic in both). The matrix
            # holds n^2 doubles (200 MB at 5,000), so beyond BRUTE_MAX_SEGMENTS the tree
            # is used.
            algorithm = "brute" if n <= BRUTE_MAX_SEGMENTS else "auto"
            model = HDBSCAN(min_cluster_size=mcs, min_samples=ms, algorithm=algorithm,
                            copy=True).fit(X)
        return (np.asarray(model.labels_, np.int64),
                np.asarray(model.probabilities_, np.float32))

    #: the cross-analysis passes the segments' cases (see above)
    fit.case_aware = True
    # what the cache keys the groups on (``memory`` of :func:`cross_analyse`)
    fit.cache_params = {"clusterer": "sklearn.HDBSCAN", "min_cluster_size": min_cluster_size,
                        "min_samples": min_samples, "floor": floor,
                        "same_case_distance": float(same_case_distance),
                        "case_share": float(case_share), "case_share_cap": int(case_share_cap),
                        "brute_max_segments": BRUTE_MAX_SEGMENTS}
    return fit


def layout_cluster_fn(cluster_fn: ClusterFn, above: int | None, n_components: int = 5,
                      seed: int = 0) -> ClusterFn:
    """``cluster_fn`` run on a UMAP layout of the vectors (cosine, ``n_components``
    dimensions, ``seed``) when it is given more than ``above`` of them; on the vectors
    themselves otherwise, or when ``above`` is None.

    Why: in the embedding's 384 dimensions the distances between many segments
    crowd together, and a density clusterer finds few dense places. A study without
    a protocol (one domain of 3,607 counselling turns) had 83% of its segments called
    outliers and 47% left in no category at all; the whole-corpus themes, which
    cluster a UMAP layout, left 2%. The crowding starts well below a thousand: a study
    of 262 segments without a protocol had 54% of them left out or reassigned on the
    vectors and 9% on a layout (its categories' AMI against the human codes 0.12 and
    0.23); 133 counselling sessions with their inferred protocol, whose largest
    domains hold 200-1,000 turns, 42% and 26% of all their segments (bench/README.md,
    "Large domains on a layout"). A CQR sample's domains, tens of segments, are left
    as they are: a layout of so few is mostly noise.

    Only the grouping is made in the layout. The categories' centres, the outliers'
    reassignment and every similarity a judge sees stay in the embedding space
    (:func:`_cluster_now` computes them from the vectors).

    The layout is centred and scaled so that its median distance between two
    segments is the vectors' own, so that ``same_case_distance`` (added to the
    distances) keeps its meaning. Its rows are then not of unit length, and
    :func:`hdbscan_cluster_fn` measures them as they are (:func:`_distances`).
    """
    inner_params = getattr(cluster_fn, "cache_params", None)
    case_aware = getattr(cluster_fn, "case_aware", False)

    def fit(vectors: np.ndarray, cases: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(vectors, dtype=np.float32)
        if above is not None and len(X) > above:
            X = _layout(X, n_components, seed)
        return cluster_fn(X, cases) if case_aware else cluster_fn(X)

    fit.case_aware = case_aware
    if inner_params is not None:
        fit.cache_params = {**inner_params, "layout_above": above,
                            "layout": {"method": "consensa.UMAP.v2", "metric": "cosine",
                                       "n_components": int(n_components), "min_dist": 0.0,
                                       "seed": int(seed)}}
    return fit


def _layout(X: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    """The UMAP layout of :func:`layout_cluster_fn`, centred and scaled so that the
    median distance between its rows is that of ``X``'s (both measured on the same
    seeded sample of at most 2,000 rows)."""
    from .reduce import UMAPReducer

    Y = UMAPReducer(n_components=n_components, min_dist=0.0, metric="cosine",
                    random_state=seed, n_epochs=200).fit_transform(X)
    Y = np.asarray(Y, dtype=np.float64)
    Y -= Y.mean(axis=0)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(X), size=min(len(X), 2000), replace=False)
    d_x = _median_distance(np.asarray(X, dtype=np.float64)[pick])
    d_y = _median_distance(Y[pick])
    return Y * (d_x / d_y) if d_y > 0 else Y


def _median_distance(A: np.ndarray) -> float:
    iu = np.triu_indices(len(A), k=1)
    return float(np.median(_distances(A)[iu])) if len(iu[0]) else 0.0


# --- Result -------------------------------------------------------------------


@dataclass(frozen=True)
class CrossAnalysis:
    """What :func:`cross_analyse` returns; see the module docstring."""

    categories: pd.DataFrame            # CATEGORY_COLUMNS
    category: np.ndarray
    subcategory: np.ndarray
    counted: np.ndarray
    reassigned: np.ndarray
    strength: np.ndarray
    subcategory_counted: np.ndarray
    subcategory_reassigned: np.ndarray
    n_cases_total: int
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass
class _Group:
    """A (sub)category while it is built: rows into the segments table."""

    domain: int
    kind: str
    rows: np.ndarray                    # segment rows
    reassigned: np.ndarray              # aligned with rows
    counted: np.ndarray
    strength: np.ndarray
    centre: np.ndarray
    pole: str = ""
    answered_no: bool = False
    children: list[_Group] = field(default_factory=list)
    spans: list[int] = field(default_factory=list)


# --- Helpers ------------------------------------------------------------------


def _distances(X: np.ndarray) -> np.ndarray:
    """Euclidean distances between all rows of ``X`` (float64). Rows of unit length, as
    the cross-analysis passes its vectors (an empty text's row is zeros), take
    sqrt(2 - 2 cos); a layout's rows
    (:func:`layout_cluster_fn`) take their norms into account."""
    X = np.asarray(X, dtype=np.float64)
    G = X @ X.T
    sq = (X * X).sum(axis=1)
    if np.allclose(sq[sq > 0], 1.0, atol=1e-4):
        return np.sqrt(np.clip(2.0 - 2.0 * G, 0.0, None))
    return np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2.0 * G, 0.0, None))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _centre(vectors: np.ndarray) -> np.ndarray:
    c = vectors.mean(axis=0)
    n = np.linalg.norm(c)
    return (c / n if n > 0 else c).astype(np.float32)


def _cluster(X: np.ndarray, cluster_fn: ClusterFn, min_similarity: float, where: str,
             fit_rows: np.ndarray | None = None, memory=None, cases: np.ndarray | None = None):
    """Cluster ``X``, then move outliers to the nearest group centre at least
    ``min_similarity`` away. Returns (group per row, -1 = none; strength;
    reassigned; centres), or None when the clusterer found no group.

    ``fit_rows`` (a sample of the rows): only they are clustered; the other rows
    join the nearest centre as outliers do.

    ``memory``: the cache where the result is kept, for a ``cluster_fn`` that says
    what it computes (``cache_params``, as :func:`hdbscan_cluster_fn` does).

    ``cases``: the rows' cases, passed on to a ``cluster_fn`` marked ``case_aware``."""
    params = getattr(cluster_fn, "cache_params", None)
    if not getattr(cluster_fn, "case_aware", False):
        cases = None
    if memory is None or params is None:
        return _cluster_now(X, cluster_fn, min_similarity, where, fit_rows, cases)
    from .. import cache as cache_mod

    fit = np.arange(len(X)) if fit_rows is None else np.asarray(fit_rows, dtype=np.int64)
    entry = cache_mod.key("consensa.crossanalysis.cluster",
                          {**params, "min_similarity": float(min_similarity)},
                          cache_mod.digest(np.asarray(X, dtype=np.float32), fit,
                                           _case_codes(cases)),
                          cache_mod.code_digest(_cluster_now))

    def encode(res):
        if res is None:
            return {"none": np.array(True)}
        group, strength, moved, centres = res
        return {"group": group, "strength": strength, "moved": moved, "centres": centres}

    def decode(arrays):
        if "none" in arrays:
            return _NO_GROUP
        res = (np.asarray(arrays["group"], np.int64), np.asarray(arrays["strength"], np.float32),
               np.asarray(arrays["moved"], bool), np.asarray(arrays["centres"], np.float32))
        return res if all(len(a) == len(X) for a in res[:3]) else None

    res, _ = memory.cached("crossanalysis", entry,
                           lambda: _cluster_now(X, cluster_fn, min_similarity, where, fit_rows,
                                                cases),
                           encode, decode)
    return None if res is _NO_GROUP else res


#: a cache entry saying the clusterer found no group (``None`` is a cache miss)
_NO_GROUP = object()


def _case_codes(cases: np.ndarray | None) -> np.ndarray:
    """The cases as integers, numbered in order of first appearance: what a case-aware
    clusterer's result depends on (which rows share a case), not the case ids."""
    if cases is None:
        return np.zeros(0, np.int64)
    return pd.factorize(pd.Series(np.asarray(cases).astype(str)))[0].astype(np.int64)


def _cluster_now(X: np.ndarray, cluster_fn: ClusterFn, min_similarity: float, where: str,
                 fit_rows: np.ndarray | None = None, cases: np.ndarray | None = None):
    n = len(X)
    fit = np.arange(n) if fit_rows is None else np.asarray(fit_rows, dtype=np.int64)
    try:
        if cases is not None:
            fit_labels, fit_probs = cluster_fn(X[fit], np.asarray(cases)[fit])
        else:
            fit_labels, fit_probs = cluster_fn(X[fit])
    except (TypeError, ValueError) as exc:
        raise ConsensaError(f"the clusterer failed on {where} ({len(fit)} segments): "
                            f"{exc}") from None
    fit_labels = np.asarray(fit_labels).astype(np.int64).ravel()
    fit_probs = np.asarray(fit_probs, dtype=np.float32).ravel()
    if len(fit_labels) != len(fit) or len(fit_probs) != len(fit):
        raise ConsensaError(f"the clusterer returned {len(fit_labels)} labels and "
                            f"{len(fit_probs)} probabilities for the {len(fit)} segments of "
                            f"{where}")
    labels = np.full(n, -1, np.int64)
    probs = np.zeros(n, np.float32)
    labels[fit], probs[fit] = fit_labels, fit_probs
    found = sorted(set(labels[labels >= 0].tolist()))
    if not found:
        return None
    remap = {old: new for new, old in enumerate(found)}
    group = np.array([remap.get(int(g), -1) for g in labels], dtype=np.int64)
    centres = np.stack([_centre(X[group == g]) for g in range(len(found))])
    strength = np.where(group >= 0, np.clip(np.nan_to_num(probs), 0.0, 1.0), 0.0)
    strength = strength.astype(np.float32)
    moved = join_nearest(X, group, strength, centres, min_similarity)
    return group, strength, moved, centres


#: Ashman's D of a cut whose sides have no spread (repeated segments): far apart, but
#: finite, so that the stance test's quantile of such cuts never subtracts infinities
_FAR = 1e12


def _best_cut(s: np.ndarray, cases: np.ndarray, min_segments: int, min_cases: int):
    """The 1-D 2-means cut of ``s`` (sides at least ``min_segments`` long with
    ``min_cases`` cases each): (low-side mask, Ashman's D, low mean, high mean), or
    None. ``cases`` are the segments' case codes (integers).

    Vectorised: the stance test asks this of a hundred random directions per
    category, and a Python loop over the cut points made it a tenth of a CQR run.
    Of cuts within 1e-12 of the least squared error, the first (lowest) is taken."""
    m = len(s)
    if m < 2 * min_segments:
        return None
    order = np.argsort(s, kind="stable")
    v = s[order].astype(np.float64)
    c = np.asarray(cases)[order]
    first = np.zeros(m, np.int64)
    first[np.unique(c, return_index=True)[1]] = 1
    left_cases = np.cumsum(first)                       # distinct cases in v[:k+1]
    last = np.zeros(m, np.int64)
    last[m - 1 - np.unique(c[::-1], return_index=True)[1]] = 1
    right_cases = np.cumsum(last[::-1])[::-1]           # distinct cases in v[k:]
    csum, csq = np.cumsum(v), np.cumsum(v * v)
    k = np.arange(min_segments, m - min_segments + 1)   # left = v[:k]
    ok = (left_cases[k - 1] >= min_cases) & (right_cases[k] >= min_cases)
    if not ok.any():
        return None
    k = k[ok]
    sl, ql = csum[k - 1], csq[k - 1]
    sr, qr = csum[-1] - sl, csq[-1] - ql
    sse = (ql - sl * sl / k) + (qr - sr * sr / (m - k))
    best = int(k[np.flatnonzero(sse <= sse.min() + 1e-12)[0]])
    lo, hi = v[:best], v[best:]
    pooled = math.sqrt((lo.var() + hi.var()) / 2)
    d = (hi.mean() - lo.mean()) / pooled if pooled > 1e-12 else _FAR
    low = np.zeros(m, bool)
    low[order[:best]] = True
    return low, float(d), float(lo.mean()), float(hi.mean())


def _random_directions(dim: int, k: int) -> np.ndarray:
    """``k`` random unit directions, the same on every call (seeded): the stance
    test's reference, so a run gives the same splits every time."""
    r = np.random.default_rng(0).standard_normal((k, dim))
    return (r / np.linalg.norm(r, axis=1, keepdims=True)).astype(np.float32)


def _stance(X: np.ndarray, cases: np.ndarray, axes, config: CrossAnalysisConfig):
    """The clearest stance split of one category: (low-side mask, axis) or None.
    ``axes`` holds (vector, typical value, StanceAxis)."""
    cases = np.unique(np.asarray(cases), return_inverse=True)[1]     # integer codes
    found = []
    for vec, typical, spec in axes:
        cut = _best_cut(X @ vec, cases, config.stance_min_segments, config.stance_min_cases)
        if cut is None:
            continue
        low, d, lo_mean, hi_mean = cut
        if d >= config.stance_separation and lo_mean < typical < hi_mean:
            found.append((d, low, spec))
    if not found:
        return None
    # A few points cut in two always look apart: the split must be clearer than the
    # same cut along most random directions through the same segments.
    # Repeated segments give cuts of D = _FAR along the axis and the random
    # directions alike: a split that random directions make just as well is no stance.
    null = []
    projected = X @ _random_directions(X.shape[1], config.stance_null_directions).T
    for j in range(projected.shape[1]):
        cut = _best_cut(projected[:, j], cases, config.stance_min_segments, config.stance_min_cases)
        null.append(cut[1] if cut is not None else 0.0)
    bar = float(np.quantile(null, config.stance_null_quantile))
    d, low, spec = max(found, key=lambda f: f[0])
    return (low, spec) if d > bar else None


def _stance_kept(X: np.ndarray, cases: np.ndarray, axes, config: CrossAnalysisConfig,
                 memory=None):
    """:func:`_stance`, kept in ``memory`` (the run's cache) when there is one.

    The test cuts a category along a hundred random directions, a tenth of a second
    a category, and a re-run with a new setting of a later step (the subcategories,
    the names) finds the same categories: on 10,000 segments it was 0.7 s of a 10 s
    re-run. The entry depends on the category's vectors, which rows share a case,
    the axes (their vectors and typical values) and the stance settings."""
    if memory is None:
        return _stance(X, cases, axes, config)
    from .. import cache as cache_mod

    params = {k: v for k, v in config.model_dump().items() if k.startswith("stance")}
    entry = cache_mod.key(
        "consensa.crossanalysis.stance", params,
        cache_mod.digest(np.asarray(X, dtype=np.float32), _case_codes(cases),
                         np.array([typical for _, typical, _ in axes], np.float64),
                         *[np.asarray(vec, np.float32) for vec, _, _ in axes]),
        cache_mod.code_digest(_stance))

    def encode(res):
        if res is _NO_GROUP:
            return {"none": np.array(True)}
        low, spec = res
        return {"low": np.asarray(low, bool),
                "axis": np.array(next(i for i, a in enumerate(axes) if a[2] is spec))}

    def decode(arrays):
        if "none" in arrays:
            return _NO_GROUP
        low, axis = np.asarray(arrays["low"], bool), int(arrays["axis"])
        return (low, axes[axis][2]) if len(low) == len(X) and 0 <= axis < len(axes) else None

    res, _ = memory.cached("crossanalysis", entry,
                           lambda: _stance(X, cases, axes, config) or _NO_GROUP,
                           encode, decode)
    return None if res is _NO_GROUP else res


def _case_order(segments: pd.DataFrame) -> dict[str, int]:
    return {c: i for i, c in enumerate(dict.fromkeys(segments["case_id"].astype(str)))}


# --- The stage ----------------------------------------------------------------


def cross_analyse(segments: pd.DataFrame, vectors: np.ndarray, segment_domain: np.ndarray,
                  config: CrossAnalysisConfig = CrossAnalysisConfig(),
                  cqr: CQRConfig = CQRConfig(), *, cluster_fn: ClusterFn | None = None,
                  encode: Encoder | None = None, frame_domains: Iterable[int] = (),
                  include_frame: bool = False, stability: Mapping[int, bool] | None = None,
                  n_cases_total: int | None = None, memory=None,
                  answered_no: np.ndarray | None = None) -> CrossAnalysis:
    """Categories, subcategories and stance subcategories within each domain, with
    honest frequency labels and flags. The contract and the rules are in the module
    docstring."""
    check_columns(segments, ("segment_id", "case_id", "text"), "the segments table")
    n = len(segments)
    vecs = np.asarray(vectors)
    if vecs.ndim != 2 or len(vecs) != n:
        raise ConsensaError(f"vectors have shape {vecs.shape}; expected one row per segment "
                            f"({n})")
    vecs = _unit_rows(vecs)
    domain = np.asarray(segment_domain).astype(np.int64).ravel()
    if len(domain) != n:
        raise ConsensaError(f"segment_domain has {len(domain)} entries for {n} segments")
    # the sets the default clusterer lays out first (counted, so the run can say so)
    layout_above = config.layout_above if cluster_fn is None else None
    cluster_fn = cluster_fn or layout_cluster_fn(
        hdbscan_cluster_fn(same_case_distance=config.same_case_distance,
                           case_share=config.min_category_case_share),
        config.layout_above, config.layout_components, config.sample_seed)
    cases = segments["case_id"].astype(str).to_numpy(dtype=object)
    ids = segments["segment_id"].astype(str).to_numpy(dtype=object)
    if "n_words" in segments.columns:
        words = pd.to_numeric(segments["n_words"], errors="coerce").fillna(0).to_numpy(np.int64)
    else:
        words = np.array([len(str(t).split()) for t in segments["text"]], dtype=np.int64)
    texts = segments["text"].astype(str).tolist()
    minimal = np.array([says_little(t) for t in texts], dtype=bool)
    total = int(n_cases_total) if n_cases_total is not None else len(set(cases.tolist()))
    if total < 0:
        raise ConsensaError(f"n_cases_total must not be negative, got {total}")
    frame = {int(d) for d in frame_domains}
    skipped_frame = np.isin(domain, list(frame)) if (frame and not include_frame) \
        else np.zeros(n, bool)
    analysed = (domain >= 0) & ~skipped_frame
    domains = sorted(set(domain[analysed].tolist()))
    counts = {"segments": n, "analysed": int(analysed.sum()), "no_domain": int((domain < 0).sum()),
              "frame_skipped": int(skipped_frame.sum()), "outliers": 0, "reassigned": 0,
              "reassigned_counted": 0, "unassigned": 0, "whole_domain_categories": 0,
              "subcategorised": 0, "stance_splits": 0, "stance_splits_not_in_words": 0,
              "answered_no_categories": 0, "answered_no_segments": 0}
    said_no = np.zeros(n, bool)
    if answered_no is not None and config.negative_answers:
        said_no = np.asarray(answered_no, dtype=bool).ravel()
        if len(said_no) != n:
            raise ConsensaError(f"answered_no has {len(said_no)} entries for {n} segments")

    @lru_cache(maxsize=1)
    def study_valence() -> float:
        # read once, and only when a category splits along an axis
        return typical_valence([texts[i] for i in np.flatnonzero(analysed)],
                               seed=config.sample_seed)

    axes = []
    if config.stance and encode is not None and config.stance_axes and analysed.any():
        phrases = [p for a in config.stance_axes for p in (*a.positive, *a.negative)]
        anchor = _unit_rows(encode(phrases))
        if anchor.ndim != 2 or len(anchor) != len(phrases) or anchor.shape[1] != vecs.shape[1]:
            raise ConsensaError(f"the encoder returned vectors of shape {anchor.shape} for "
                                f"{len(phrases)} anchor phrases; the segments' vectors have "
                                f"{vecs.shape[1]} dimensions")
        at = 0
        for a in config.stance_axes:
            pos = anchor[at:at + len(a.positive)]
            at += len(a.positive)
            neg = anchor[at:at + len(a.negative)]
            at += len(a.negative)
            axis = _centre(pos) - _centre(neg)
            norm = np.linalg.norm(axis)
            if norm > 1e-6:     # the same phrases on both sides give no direction
                axis = axis / norm
                axes.append((axis, float(np.median(vecs[analysed] @ axis)), a))

    threshold = cqr.count_reassigned_above
    by_domain: dict[int, list[_Group]] = {}
    for d in domains:
        rows = np.flatnonzero(analysed & (domain == d))
        no_group = None
        no_rows = rows[said_no[rows]]
        if len(no_rows) and len(set(cases[no_rows].tolist())) >= config.negative_answer_min_cases:
            # the cases that answered the domain's question "No": one category of their
            # own, the others' answers clustered as the domain
            centre = _centre(vecs[no_rows])
            no_group = _Group(d, "category", no_rows, np.zeros(len(no_rows), bool),
                              np.ones(len(no_rows), bool),
                              np.clip(vecs[no_rows] @ centre, 0.0, 1.0).astype(np.float32),
                              centre, answered_no=True)
            counts["answered_no_categories"] += 1
            counts["answered_no_segments"] += len(no_rows)
            rows = rows[~said_no[rows]]
        X = vecs[rows]
        fit_rows = None
        if len(rows) > config.max_fit_segments:
            fit_rows = stratified_sample(cases[rows], config.max_fit_segments,
                                         config.sample_seed + d)
            counts["fitted_on_sample"] = counts.get("fitted_on_sample", 0) + len(fit_rows)
            counts["joined_after_sample"] = counts.get("joined_after_sample", 0) + \
                len(rows) - len(fit_rows)
        res = _cluster(X, cluster_fn, config.reassign_similarity, f"domain {d}", fit_rows,
                       memory, cases[rows]) if len(rows) >= 2 else None
        n_fit = len(rows) if fit_rows is None else len(fit_rows)
        if layout_above is not None and n_fit > layout_above:
            counts["laid_out_domains"] = counts.get("laid_out_domains", 0) + 1
            counts["laid_out_segments"] = counts.get("laid_out_segments", 0) + n_fit
        groups: list[_Group] = [no_group] if no_group is not None else []
        if res is None and len(rows):
            # no group found: the protocol question holds the domain together
            centre = _centre(X)
            counts["whole_domain_categories"] += 1
            groups.append(_Group(d, "category", rows, np.zeros(len(rows), bool),
                                 np.ones(len(rows), bool),
                                 np.clip(X @ centre, 0.0, 1.0).astype(np.float32), centre))
        elif res is not None:
            group, strength, moved, centres = res
            counts["outliers"] += int(((group < 0) | moved).sum())
            counts["unassigned"] += int((group < 0).sum())
            for g in range(len(centres)):
                m = group == g
                counted = ~moved[m] | (strength[m] >= threshold)
                groups.append(_Group(d, "category", rows[m], moved[m], counted, strength[m],
                                     centres[g]))
        for g in groups:
            counts["reassigned"] += int(g.reassigned.sum())
            counts["reassigned_counted"] += int((g.reassigned & g.counted).sum())
            split = _stance_kept(vecs[g.rows], cases[g.rows], axes, config, memory) \
                if axes and not g.answered_no else None
            if split is not None and config.stance_valence_margin is not None and \
                    not poles_read_right([texts[i] for i in g.rows], split[0],
                                         config.stance_valence_margin, study_valence())[0]:
                # apart in the embedding, but the sides' words do not lean as the poles
                # say: no stance is proposed, and the category is split by content
                counts["stance_splits_not_in_words"] += 1
                split = None
            if split is not None:
                low, spec = split
                counts["stance_splits"] += 1
                for side, pole in ((~low, spec.positive_name), (low, spec.negative_name)):
                    # a side holds the category's segments as they are: its reassigned
                    # outliers stay reassigned (n_reassigned, and the thin cases)
                    g.children.append(_Group(d, "stance", g.rows[side], g.reassigned[side],
                                             g.counted[side], g.strength[side],
                                             _centre(vecs[g.rows[side]]), pole=pole))
            elif len(g.rows) > config.subcategory_min_segments:
                g.children = _subcategories(g, vecs, cluster_fn, config, threshold, cases,
                                            memory)
                counts["subcategorised"] += bool(g.children)
        # categories of minimal responses last: they are listed, flagged, not led with
        groups.sort(key=lambda g: (mostly_minimal(minimal[g.rows], config.minimal_share),
                                   -len(set(cases[g.rows[g.counted]].tolist())),
                                   -len(g.rows), int(g.rows.min())))
        by_domain[d] = groups

    _spans(by_domain, vecs, analysed, domain, config)
    return _assemble(segments, by_domain, ids, cases, words, vecs, total, config, cqr,
                     stability, counts, minimal)


def _subcategories(g: _Group, vecs: np.ndarray, cluster_fn: ClusterFn,
                   config: CrossAnalysisConfig, threshold: float,
                   cases: np.ndarray | None = None, memory=None) -> list[_Group]:
    fit_rows = None
    if len(g.rows) > config.max_fit_segments and cases is not None:
        fit_rows = stratified_sample(cases[g.rows], config.max_fit_segments, config.sample_seed)
    res = _cluster(vecs[g.rows], cluster_fn, config.reassign_similarity,
                   f"a category of domain {g.domain}", fit_rows, memory,
                   None if cases is None else cases[g.rows])
    if res is None or len(res[3]) < 2:
        return []
    group, strength, moved, centres = res
    out = []
    for s in range(len(centres)):
        m = group == s
        counted = g.counted[m] & (~moved[m] | (strength[m] >= threshold))
        # reassigned: to the category (an outlier of its domain) or within it
        reassigned = g.reassigned[m] | moved[m]
        if not counted.any():
            # a group of the category's weakly reassigned outliers: no case counts
            # toward it, and a table row "none, 0 cases" says nothing a judge can use;
            # its segments stay in the category only
            continue
        out.append(_Group(g.domain, "subcategory", g.rows[m], reassigned, counted, strength[m],
                          centres[s]))
    if len(out) < 2:
        return []
    out.sort(key=lambda c: (-len(c.rows), int(c.rows.min())))
    return out


def _spans(by_domain: dict[int, list[_Group]], vecs: np.ndarray, analysed: np.ndarray,
           domain: np.ndarray, config: CrossAnalysisConfig) -> None:
    """Fill ``spans`` of each category (see the module docstring)."""
    ids = sorted(by_domain)
    if len(ids) < 2:
        return
    dcent = np.stack([_centre(vecs[analysed & (domain == d)]) for d in ids])
    pos = {d: i for i, d in enumerate(ids)}
    cats = [g for d in ids for g in by_domain[d]]
    cc = np.stack([g.centre for g in cats])
    to_domains = cc @ dcent.T
    to_cats = cc @ cc.T
    for i, g in enumerate(cats):
        own = to_domains[i, pos[g.domain]]
        spans = {ids[j] for j in range(len(ids))
                 if ids[j] != g.domain and to_domains[i, j] >= own - config.spans_margin}
        spans |= {cats[j].domain for j in range(len(cats))
                  if cats[j].domain != g.domain and to_cats[i, j] >= config.duplicate_similarity}
        g.spans = sorted(spans)


def _assemble(segments, by_domain, ids, cases, words, vecs, total, config, cqr, stability,
              counts, minimal) -> CrossAnalysis:
    n = len(segments)
    order = _case_order(segments)
    category = np.full(n, -1, np.int64)
    subcategory = np.full(n, -1, np.int64)
    counted = np.zeros(n, bool)
    reassigned = np.zeros(n, bool)
    strength = np.zeros(n, np.float32)
    sub_counted = np.zeros(n, bool)
    sub_reassigned = np.zeros(n, bool)
    rows = []

    def row(g: _Group, cid: int, parent: int) -> dict:
        seg_cases = cases[g.rows]
        all_cases = sorted(set(seg_cases.tolist()), key=order.__getitem__)
        count_cases = sorted(set(seg_cases[g.counted].tolist()), key=order.__getitem__)
        thin = []
        for c in count_cases:
            m = (seg_cases == c) & g.counted
            if g.reassigned[m].all() or (m.sum() == 1 and words[g.rows[m]][0] < config.thin_words):
                thin.append(c)
        label = frequency_label(len(count_cases), total, cqr)
        flags = []
        per_case = pd.Series(seg_cases).value_counts()
        if len(g.rows) and per_case.iloc[0] > config.single_story_share * len(g.rows):
            flags.append(SINGLE_STORY)
        if thin and frequency_label(len(count_cases) - len(thin), total, cqr) != label:
            flags.append(THIN)
        if stability is not None and cid in stability and not bool(stability[cid]):
            flags.append(UNSTABLE)
        if mostly_minimal(minimal[g.rows], config.minimal_share):
            flags.append(MINIMAL)
        if g.answered_no:
            flags.append(ANSWERED_NO)
        return {"category_id": cid, "parent_id": parent, "domain_id": g.domain, "kind": g.kind,
                "n_segments": int(len(g.rows)), "n_cases": len(all_cases), "cases": all_cases,
                "counted_cases": count_cases, "frequency_label": label,
                "label_if_reassigned_counted": frequency_label(len(all_cases), total, cqr),
                "flags": flags, "spans_domains": list(g.spans) if parent < 0 else [],
                "quote_ids": _quotes(g, vecs, ids, cases, config.n_quotes),
                "n_reassigned": int(g.reassigned.sum()), "thin_cases": thin, "pole": g.pole}

    cid = 0
    for d in sorted(by_domain):
        for g in by_domain[d]:
            top = cid
            rows.append(row(g, top, -1))
            category[g.rows] = top
            counted[g.rows] = g.counted
            reassigned[g.rows] = g.reassigned
            strength[g.rows] = g.strength
            cid += 1
            for c in g.children:
                rows.append(row(c, cid, top))
                subcategory[c.rows] = cid
                sub_counted[c.rows] = c.counted
                sub_reassigned[c.rows] = c.reassigned
                cid += 1
    table = pd.DataFrame(rows, columns=list(CATEGORY_COLUMNS))
    table = table.astype({"category_id": "int64", "parent_id": "int64", "domain_id": "int64",
                          "n_segments": "int64", "n_cases": "int64", "n_reassigned": "int64"})
    return CrossAnalysis(categories=table, category=category, subcategory=subcategory,
                         counted=counted, reassigned=reassigned, strength=strength,
                         subcategory_counted=sub_counted, subcategory_reassigned=sub_reassigned,
                         n_cases_total=total, counts=dict(counts))


def _quotes(g: _Group, vecs: np.ndarray, ids: np.ndarray, cases: np.ndarray,
            k: int) -> list[str]:
    """Most central first; counted segments first, one per case before a second."""
    central = vecs[g.rows] @ g.centre
    ranked = sorted(range(len(g.rows)), key=lambda i: (not g.counted[i], -central[i], g.rows[i]))
    chosen: list[int] = []
    seen: set = set()
    for counted_pass in (True, False):
        for i in ranked:
            if bool(g.counted[i]) == counted_pass and cases[g.rows[i]] not in seen:
                chosen.append(i)
                seen.add(cases[g.rows[i]])
    taken = set(chosen)
    rest = [i for i in ranked if i not in taken]
    return [str(ids[g.rows[i]]) for i in (chosen + rest)[:k]]
