"""Core ideas: for each case and domain, what that participant said, briefly, in
their own words.

In CQR the team writes, for every case and domain, a *core idea*: a short
summary, close to the participant's words, of what they said in that domain.
Consensa proposes one extractively: one to three of the participant's own
sentences from the domain (at most ``max_words`` words in all, 40 by default),
tidied of the noise of speech, for the team to edit.

Public functions (pure: tables and arrays in, DataFrames out):

* :func:`core_ideas` ``(segments, domain_of_segment, vectors, config, *,
  encode=None, only=None, memory=None) -> DataFrame`` (``memory``: a cache where
  the chosen sentences are kept by position, never by their words). ``segments`` needs ``segment_id``, ``case_id``
  and ``text`` (``SEGMENT_COLUMNS`` has them); ``domain_of_segment`` is an int
  array aligned with its rows (-1: in no domain, so in no core idea); ``vectors``
  the segments' unit vectors, rows aligned. ``encode(list[str]) -> ndarray``,
  optional, is the embedder that made ``vectors``: pass it (the better choice,
  about 2 s more on the demo) and the best sentences are compared by their own
  vectors, not their segment's. One row per (case, domain) that has segments,
  cases in order of first appearance, then by domain, with the columns
  :data:`CORE_IDEA_COLUMNS`:

  =========== ================================================================
  case_id     str
  domain_id   int
  core_idea   str   the chosen sentences, tidied, in the order they were said
                    ("" when every segment of the case in the domain is only
                    fillers and transcriber notes)
  segment_ids list[str] the segments they come from, in that order
  n_words     int   words in ``core_idea`` (at most ``max_words``)
  spans       list[tuple[str, int, int]] (segment_id, start, end) of each
                    sentence before tidying, offsets into that segment's text
                    (add the segment's ``start_char`` for the source text)
  =========== ================================================================

* :func:`tidy_utterance` ``(text) -> str``: the clean-up applied to each
  sentence (below); usable on any quote.

How sentences are chosen
------------------------
Each segment is split into sentences (at ``.``, ``!``, ``?`` and ``…`` followed
by a space, not after "Dr.", "e.g." and the like; at blank lines), with
transcriber notes blanked first so a note never makes or hides a boundary. A
sentence longer than ``max_words`` after tidying is cut at its commas, semicolons,
colons and dashes into as few pieces of at most ``max_words`` words as fit, as even
as its clauses allow (at word boundaries if a clause alone is longer), so that the
clause a spoken sentence builds up to is not left over on its own; a piece that
does not start or end the sentence is marked with "…". Sentences of fewer than ``min_sentence_words`` words ("Yes,
definitely.") are candidates only when the case has nothing longer in the domain,
and questions ("Does that make sense?") only when it has nothing else.

*Relevance* of a sentence: ``1 - lexical_weight`` times its segment's centrality
(``1 - domain_weight`` times the cosine to the centroid of the case's segments
in the domain, plus ``domain_weight`` times the cosine to the domain's centroid
over all cases), plus ``lexical_weight`` times its lexical centrality (TF-IDF
cosine to all of the case's sentences in the domain), which is what tells apart
the sentences of one segment. With ``encode``, the ``max_encoded`` most
relevant sentences of each case and domain are embedded and their own vectors
replace their segment's in this formula. Sentences are then chosen by maximal
marginal relevance: the most relevant first, then each time the one with the
highest relevance minus ``diversity`` times its redundancy with those chosen
(the highest of the cosine of their vectors, 1 for two sentences of one segment
that share its vector, and their TF-IDF cosine), among those that still fit in
the word budget, while that score stays above 0 and fewer than
``max_sentences`` are chosen.

What tidying removes (and nothing else: the words left are the participant's,
in their order; only the first letter's case may change):

* transcriber notes ("(laughs)", "[inaudible]"; the rule is
  :func:`pipeline.stages.naming.strip_transcriber_notes`'s); a note of speech the
  transcriber could not take down ("[inaudible]", "<crosstalk>") between words
  leaves the omission mark "[…]", so that words not said together do not read as
  one phrase;
* fillers: "um", "uh", "er", "erm", "hmm", "mm" and the like, everywhere;
  "you know" and "I mean" where they stand apart (between punctuation, or
  "I mean" opening a sentence and not followed by "it", "that", ...); "like"
  followed by a comma after a pause, "and", "but", "so", "just" or a form of
  "be" ("it was like, really hard"), but not after "be" before a clause of its
  own ("It's like, her breakup isn't my breakup"). Commas touching a removed
  filler go with it ("I was, um, thinking" -> "I was thinking"), but for one where a new
  clause or phrase follows, or a noun phrase naming the one before ("the
  alliance, you know, Bordin" -> "the alliance, Bordin");
* false starts and immediate repetitions: a run of one to four words said
  twice in a row, the two separated by nothing, a comma, a dash or an ellipsis
  ("I — I was", "we, we", "it was, it was", "very very", "it it"); the second
  is dropped. "had had", "that that" and "is is" are grammatical and kept,
  unless a comma or dash parts them or "that that" comes before a subject
  ("the one that that I think about");
* cut-off words: a fragment ending in a hyphen followed by the word it starts
  ("go- going"). A dash the text ends on stays: the speech broke off there;
* false starts broken off at a hesitation and begun again from the same subject:
  two to four words from a subject pronoun to a word a clause cannot end on, with
  no negation, then a filler or a dash, then that pronoun ("He used to, um, he'd say
  things" -> "He'd say things", not "He used to he'd say things").

The short sentences that open a turn ("Not at all.", "Partly.", "I didn't.", "Shame.
Absolute shame. I was mortified.": each under ``min_sentence_words``, or of a few words
that say no, "Not really helpful, no.", "I don't think so, no."; up to the turn's first
other sentence) go with a sentence of that turn chosen after them: they are the
participant's answer to the question, which the rest only explains. The word budget
counts them with that sentence, so a sentence is chosen with its answer when the two
fit (alone only when no sentence fits with its answer, and never when the answer says
no: "She told me she'd recovered from anorexia herself." is not the participant's
meaning without the "Not really helpful, no." before it). They are not counted among
the ``max_sentences``, and each has a span of its own. A question ("Honestly?"), an
acknowledgement or an assent alone ("Okay.", "Yeah.", "It was.": a "yes" says no more
than what follows it, where a "no" does), or a remark that takes the floor ("Good
question.", "Let me think.", "So, two things.") is not an answer, nor a turn opening
on "and", "but" or "or", which goes on with the one before.

The answer that opens the case's first turn in the domain, when it says no (a negation
other than "I don't know", "not sure"), is in the core idea whatever else is chosen,
with the sentence after it in its segment that judges something not good ("I don't
think so, no. [...] But the things she told me about herself didn't help me."), when
one does and fits: set before the rest, another turn's story ("She told me early on
that she was a Christian"), it is the answer the rest bears out; left out, the story
read as the answer. A later turn's answer (to a follow-up, or to another question of
a domain that merges several) is not put first: it would read as the answer to all.

A sentence that leans on the one before it for its verb or subject ("Not never, but
less.", "But not your beliefs.", "Same with my mum.": one opening on "not", "less",
"same", "neither" or "nor", after an "and", "but", "or" or "so"), said inside a turn,
is chosen only with that sentence, the word budget counting both.

A sentence said again, whole or in part, is not chosen a second time for one
core idea.

A sentence taken from inside a quotation ('And I'm sorry for how I said it."', its
opening mark in the sentence before) gets the quotation's other mark, at its start or
end, so that the quotation does not open or close on nothing; the mark is not among
the participant's words, and the spans are unchanged.

If tidying would leave nothing of a text that has a word other than a filler,
the text is returned with only its transcriber notes removed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError
from .naming import blank_transcriber_notes, strip_transcriber_notes, transcriber_note_spans

CORE_IDEA_COLUMNS = ("case_id", "domain_id", "core_idea", "segment_ids", "n_words", "spans")


class CoreIdeaConfig(BaseModel):
    """Settings of the core-idea stage (config section ``core_ideas``)."""

    model_config = ConfigDict(extra="forbid")

    max_words: int = Field(40, ge=5, le=200, description="most words in one core idea")
    max_sentences: int = Field(3, ge=1, le=10, description=(
        "most sentences chosen for one core idea (a short answer that opens a turn, kept "
        "with the chosen sentence after it, is not counted)"))
    min_sentence_words: int = Field(4, ge=1, le=40, description=(
        "a shorter sentence is used only when the case has nothing longer in the domain, "
        "or with a chosen sentence of the turn it opens (the answer to the question)"))
    domain_weight: float = Field(0.5, ge=0.0, le=1.0, description=(
        "share of a segment's centrality measured against the domain (the rest: against "
        "the case's own segments in the domain)"))
    lexical_weight: float = Field(0.3, ge=0.0, le=1.0, description=(
        "share of relevance from word overlap with the case's sentences in the domain"))
    diversity: float = Field(0.5, ge=0.0, le=1.0, description=(
        "how strongly a sentence redundant with one already chosen is penalised"))
    max_encoded: int = Field(8, ge=1, le=200, description=(
        "with an encoder: sentences per case and domain embedded on their own (the most "
        "relevant by their segment's vector)"))


# --- tidying ----------------------------------------------------------------------

FILLERS = frozenset("um umm uhm uh uhh er erm hmm hm mm mmm mhm mm-hmm mm-hm uh-huh".split())
_BE_AND_LINKS = frozenset("""
was is were are am be been being it's that's 's and but so just
""".split())
#: "I mean" followed by one of these is the verb ("I mean it"), not a filler.
_MEAN_OBJECTS = frozenset("it that this what to nothing something everything anything well business".split())
_KEEP_DOUBLED = frozenset({"had", "that", "is"})
#: "that that" before one of these is said twice ("the one that that I think about"):
#: the grammatical double is a conjunction before a demonstrative ("said that that was").
_SUBJECTS = frozenset("i you he she we they i'm i've i'd i'll you're we're they're he's she's".split())
_DASHES = frozenset({"-", "—", "–", "--"})
_SEPARATORS = frozenset({",", "-", "--", "—", "–", "...", "…", "—,", ",—"})
_TERMINAL = frozenset({".", "!", "?", "…", "...", "?!", "!?"})

_TOKEN = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]+")
_WORD = re.compile(r"\w+(?:[-'’]\w+)*")


# Both are asked of every token several times per sentence, and a corpus has few
# distinct tokens: memoised, tidying 10,000 segments takes a third less time.
@lru_cache(maxsize=1 << 16)
def _norm(word: str) -> str:
    return word.lower().replace("’", "'")


@lru_cache(maxsize=1 << 16)
def _is_word(tok: str) -> bool:
    return bool(_WORD.fullmatch(tok))


def _tokens(text: str) -> list[list]:
    """[text, space_before] for each word and punctuation run."""
    return [[m.group(), m.start() > 0 and text[m.start() - 1].isspace()]
            for m in _TOKEN.finditer(text)]


def _join(toks: list[list]) -> str:
    out = []
    for i, (tok, space) in enumerate(toks):
        if i and (space or (_is_word(tok) and _is_word(toks[i - 1][0]))):
            out.append(" ")
        out.append(tok)
    return "".join(out)


#: Words that open a clause: after a filler set off by commas ("every few
#: sessions, like, is this useful"), one comma stays, or two clauses run together.
_CLAUSE_OPENERS = frozenset("""
i i'm i've i'd i'll you you're he she it it's we we're they they're there there's that's
this what why how when where who which is was are were do did does can could would will
should if because and but so then or
""".split())


#: words that open a phrase of their own after a filler between commas ("with her, you
#: know, in my head": "with her, in my head", not the run-on "with her in my head");
#: not "of" or "to", which go on the words before ("the kind, um, of person")
_PHRASE_OPENERS = frozenset("""
in on at from with about after before during since until into onto over under through
without within although though while
""".split())


#: words that open a noun phrase: one before a filler ends a noun phrase two words on
#: at most ("the alliance, you know, Bordin"), and one after it opens another
_DETERMINERS = frozenset("""
the a an my your his her our their its this these those every each another
""".split())


#: words a noun phrase does not end on: "a category for, um, the therapist" is one
#: phrase ("a category for the therapist")
_NOT_PHRASE_ENDS = _DETERMINERS | _BE_AND_LINKS | _CLAUSE_OPENERS | _PHRASE_OPENERS | frozenset(
    "of to for by as than like".split())


def _apposition(toks, left: int, right: int) -> bool:
    """Whether the filler whose commas are ``toks[left]`` and ``toks[right - 1]``
    stands between two noun phrases, the second naming or listing the first: "the
    alliance, you know, Bordin, the bond", "a client, um, a woman about my age". The
    one before ends in a word one or two words after a determiner; the one after
    starts with a determiner or a capitalised name. Dropping both commas ran them
    into one ("the alliance Bordin"); a verb's object ("I had, um, a client") has no
    determiner before the comma, and "the kind, um, of person" no phrase after it."""
    if right >= len(toks) or left < 2 or not _is_word(toks[right][0]):
        return False
    after, before = toks[right][0], _norm(toks[left - 1][0])
    named = after[:1].isupper() and not re.match(r"I\b", after)
    if not (_norm(after) in _DETERMINERS or named) or not _is_word(toks[left - 1][0]) \
            or before in _NOT_PHRASE_ENDS:
        return False
    for k in (left - 2, left - 3):
        if k < 0 or not _is_word(toks[k][0]):
            return False
        if _norm(toks[k][0]) in _DETERMINERS:
            return True
    return False


class _Gap:
    """A token list edited near a cursor: the items before it in ``head``, the rest in
    ``tail``, reversed; and as many lists in step with it (a token's normalised form,
    say), edited alike. Removing items at the cursor costs what is removed, moving the
    cursor what it moves; rebuilding the list at each removal (``toks[:i] + toks[j:]``)
    cost its whole length, so a long utterance full of fillers or repeats ("I, I, I,
    ...", 16,000 words) took a minute, quadratic in its length."""

    __slots__ = ("head", "tail", "columns")

    def __init__(self, items: list, *in_step: list) -> None:
        #: (head, tail) of the items, then of each list in step with them
        self.columns = [([], x[::-1]) for x in (items, *in_step)]
        self.head, self.tail = self.columns[0]

    def __len__(self) -> int:
        return len(self.head) + len(self.tail)

    def __getitem__(self, k: int):
        return self.get(k)

    def __setitem__(self, k: int, value) -> None:
        self.put(k, value)

    def get(self, k: int, column: int = 0):
        head, tail = self.columns[column]
        return head[k] if k < len(head) else tail[len(head) - k - 1]

    def put(self, k: int, value, column: int = 0) -> None:
        head, tail = self.columns[column]
        if k < len(head):
            head[k] = value
        else:
            tail[len(head) - k - 1] = value

    def seek(self, k: int) -> None:
        """Move the cursor to ``k`` (or the end)."""
        step = min(k - len(self.head), len(self.tail))
        for head, tail in self.columns:
            if step > 0:
                head.extend(tail[:-step - 1:-1])
                del tail[-step:]
            elif step < 0:
                tail.extend(head[:step - 1:-1])
                del head[step:]

    def delete(self, start: int, end: int) -> None:
        """Remove items ``start`` to ``end``."""
        self.seek(start)
        for _, tail in self.columns:
            del tail[len(tail) - (end - start):]

    def items(self) -> list:
        return self.head + self.tail[::-1]


def _drop(toks: _Gap, start: int, end: int) -> _Gap:
    """Remove toks[start:end] (a filler) with the commas touching it.

    A filler between two commas takes both when it sat inside a clause ("it was,
    you know, hard"), and only the one after it when a new clause or phrase follows
    ("sessions, like, is this useful": "sessions, is this useful"; "with her, you
    know, in my head": "with her, in my head") or a noun phrase in apposition ("the
    alliance, you know, Bordin": "the alliance, Bordin"), unless the word before is
    itself a link ("And, you know, I cried": "And I cried")."""
    left, right = start, end
    if right < len(toks) and toks[right][0] in _DASHES and not toks[right][1]:
        right += 1                             # "um-": the dash is the filler's
    took_comma = right < len(toks) and toks[right][0] == ","
    if took_comma:
        right += 1
    opens = (right < len(toks) and _norm(toks[right][0]) in _CLAUSE_OPENERS | _PHRASE_OPENERS
             and left >= 2 and _is_word(toks[left - 2][0])
             and _norm(toks[left - 2][0]) not in _BE_AND_LINKS) \
        or (took_comma and left > 0 and toks[left - 1][0] == "," and _apposition(toks, left - 1,
                                                                             right))
    if left > 0 and toks[left - 1][0] == "," and (right >= len(toks) or not _is_word(toks[right][0])
                                                   or (took_comma and not opens)):
        left -= 1
    if left > 0 and toks[left - 1][0] == "," and right < len(toks) and toks[right][0] in _TERMINAL:
        left -= 1
    kept_space = toks[left][1] if left < len(toks) else False
    toks.delete(left, right)
    if left < len(toks):
        toks[left] = [toks[left][0], toks[left][1] or kept_space]
    return toks


#: a filler, or the first and second word of one: without any, nothing is removed
_FILLER_PAIRS = frozenset({("you", "know"), ("i", "mean"), ("like", ",")})

#: forms of "be" after which "like," may frame a clause of its own ("It's like, her
#: breakup isn't my breakup") rather than fill a pause ("it was like, really hard")
_BE_FORMS = frozenset("was is were are am be been being it's that's 's".split())
#: words that make a clause finite: auxiliaries and modals (and their "n't" forms)
_FINITE = frozenset("""
is was are were am do does did has have had can could would will should might must may
shall
""".split())
#: pronouns that are a clause's subject, alone or with a verb ("she's", "he'd")
_SUBJECT_PRONOUNS = frozenset("i you he she we they it".split())


def _base(norm: str) -> str:
    """A pronoun without its contracted verb: "he'd" -> "he"."""
    return norm.split("'", 1)[0]


def _clause_follows(tail: list) -> bool:
    """Whether what follows "like," (``tail``, reversed, "like" and its comma last) up
    to the next punctuation is a clause: it has a subject pronoun or a finite verb.
    Then "like" frames it ("It's like, her breakup isn't my breakup", "it was like,
    she knew"), and dropping it ran two clauses into one ("It's her breakup isn't my
    breakup"); a phrase ("it was like, really hard") is the filler's. Reads at most
    twelve words."""
    for k in range(len(tail) - 3, max(-1, len(tail) - 15), -1):
        tok = tail[k][0]
        if not _is_word(tok):
            return False
        w = _norm(tok)
        if w in _FINITE or w.endswith("n't") or _base(w) in _SUBJECT_PRONOUNS \
                or (w != _base(w) and _base(w) in {"that", "there", "what", "who"}):
            return True
    return False


#: words a false start breaks off on: the clause cannot end there ("He used to, um,
#: he'd say", "I was going to, uh, I'd rather")
_UNFINISHED = _DETERMINERS | _FINITE | frozenset("to been being used".split())
#: negations: a run that holds one is never a false start ("I didn't want to, um, I had to")
_NEGATIONS = frozenset("no not never nothing none nope nah neither nor nobody nowhere".split())
#: verbs of a remark put in ("I was, um, I think, the only one"), not a restart
_REMARKS = frozenset("think mean guess suppose know reckon believe".split())


def _negates(norm: str) -> bool:
    return norm in _NEGATIONS or norm.endswith("n't")


def _remove_restarts(tokens: list[list]) -> list[list]:
    """Without the false starts broken off at a hesitation and said again from the
    same subject: "He used to, um, he'd say things like" is "He'd say things like".

    Removing the filler alone ran the two together ("He used to he'd say"), words the
    participant never said as one clause. A false start here is two to four words
    at a clause's start, from a subject pronoun to a word the clause cannot end on
    (:data:`_UNFINISHED`), with no negation; then a filler or a dash, with any
    commas; then the same pronoun ("he", "he'd"), not as a remark put in ("I was,
    um, I think, the only one")."""
    norms = [_norm(t[0]) for t in tokens]
    if FILLERS.isdisjoint(norms) and _DASHES.isdisjoint(norms):
        return tokens                          # most sentences
    out: list[list] = []
    k, n = 0, len(tokens)
    while k < n:
        cut = _restart_at(tokens, norms, k) if _base(norms[k]) in _SUBJECT_PRONOUNS and (
            k == 0 or not _is_word(tokens[k - 1][0])) else None
        if cut is None:
            out.append(tokens[k])
            k += 1
            continue
        out.append([tokens[cut][0], tokens[k][1]])
        k = cut + 1
    return out


def _restart_at(tokens: list[list], norms: list[str], k: int) -> int | None:
    """Where the clause said again starts, when ``tokens[k]`` opens a false start
    (:func:`_remove_restarts`); else None."""
    j = k + 1
    while j < len(tokens) and j - k < 4 and _is_word(tokens[j][0]):
        j += 1
    if j - k < 2 or norms[j - 1] not in _UNFINISHED \
            or any(_negates(w) for w in norms[k:j]):
        return None
    broke = False
    while j < len(tokens) and (norms[j] in FILLERS or tokens[j][0] in _DASHES
                               or tokens[j][0] == ","):
        broke = broke or norms[j] in FILLERS or tokens[j][0] in _DASHES
        j += 1
    if not broke or j + 1 >= len(tokens) or _base(norms[j]) != _base(norms[k]) \
            or not _is_word(tokens[j + 1][0]) or norms[j + 1] in _REMARKS:
        return None
    return j


def _remove_fillers(tokens: list[list]) -> list[list]:
    norms = [_norm(t[0]) for t in tokens]
    if FILLERS.isdisjoint(norms) and _FILLER_PAIRS.isdisjoint(zip(norms, norms[1:])):
        return tokens                          # most sentences
    toks = _Gap(tokens, norms)
    head, tail = toks.head, toks.tail          # the cursor is at i
    norm_head, norm_tail = toks.columns[1]
    while tail:
        i = len(head)
        w = norm_tail[-1]
        nxt = norm_tail[-2] if len(tail) > 1 else None
        # toks[i - 1] is head[-1], toks[i + 2] tail[-3]; "borders a pause": the text's
        # edge or punctuation
        if w in FILLERS:
            end = i + 1
        elif w == "you" and nxt == "know" and (not head or not _is_word(head[-1][0])) \
                and (len(tail) < 3 or not _is_word(tail[-3][0])):
            end = i + 2
        elif w == "i" and nxt == "mean" and (not head or not _is_word(head[-1][0])) and (
                len(tail) < 3 or not _is_word(tail[-3][0])
                or ((not head or head[-1][0] in _TERMINAL)
                    and _norm(tail[-3][0]) not in _MEAN_OBJECTS)):
            end = i + 2
        elif w == "like" and nxt == "," and (not head or not _is_word(head[-1][0])
                                             or _norm(head[-1][0]) in _BE_AND_LINKS) \
                and not (head and _norm(head[-1][0]) in _BE_FORMS and _clause_follows(tail)):
            end = i + 1
        else:
            head.append(tail.pop())
            norm_head.append(norm_tail.pop())
            continue
        _drop(toks, i, end)
        toks.seek(max(0, i - 1))                # the word before may start one now
    return toks.items()


#: A repetition starting at i reads no further than i + 9 (four words, two separators,
#: four words; the word after "that that"): an edit at k makes or unmakes one only from
#: k - _REACH on.
_REACH = 12
#: how many starts :func:`_find_repetition` looks at in one go
_SCAN = 64
_NORM, _IS_WORD = 1, 2                 # the columns of the tokens' _Gap


def _find_repetition(toks: _Gap, start: int) -> tuple[int, int, int] | None:
    """(i, n, j): toks[i:i + n] said again at toks[j:j + n], with only separators
    between; the leftmost at or after ``start``, longest first. Moves the cursor."""
    toks.seek(start)
    head, tail = toks.head, toks.tail
    norm_tail, word_tail = toks.columns[_NORM][1], toks.columns[_IS_WORD][1]
    while tail:
        # the next _SCAN starts, and the ten tokens from each: all a repetition reads
        texts = [t[0] for t in tail[:-_SCAN - 11:-1]]
        norms = norm_tail[:-_SCAN - 11:-1]
        words = word_tail[:-_SCAN - 11:-1]
        for p in range(min(_SCAN, len(norms))):
            # a repeat of toks[i:i + n] starts within n + 2 tokens of i (n <= 4): without
            # the same word there, no repetition starts at i (the common case)
            if words[p] and norms[p] in norms[p + 1:p + 7]:
                found = _repetition_at(texts[p:p + 10], norms[p:p + 10], words[p:p + 10])
                if found is not None:
                    i = len(head) + p
                    toks.seek(i)
                    return i, found[0], i + found[1]
        toks.seek(len(head) + _SCAN)
    return None


def _repetition_at(texts: list[str], norms: list[str], words: list[bool]) -> tuple[int, int] | None:
    """(n, j): the tokens from 0 to n said again from j; None if none starts at 0."""
    size = len(norms)
    for n in (4, 3, 2, 1):
        if 2 * n > size or not all(words[:n]):
            continue
        j = n
        while j < size and texts[j] in _SEPARATORS and j - n < 2:
            j += 1
        if j + n > size or norms[j] != norms[0] or norms[:n] != norms[j:j + n] \
                or not all(words[j:j + n]):
            continue
        if n == 1 and norms[0] in _KEEP_DOUBLED and j == 1 and not (
                norms[0] == "that" and j + 1 < size and norms[j + 1] in _SUBJECTS):
            continue
        if n == 1 and j > 1 and _parallel(norms, words, j):
            continue
        return n, j
    return None


def _parallel(norms: list[str], words: list[bool], j: int) -> bool:
    """Whether the word at 0, said again at ``j`` after a comma or dash, opens a list
    of like phrases: it comes a third time after other words ("all slightly
    different, different forms, different leads"). Dropping the second would change
    what was said ("different forms, different leads" became "different forms");
    a stutter ("I, I, I think") says it again with nothing between, and an
    intensifier said twice is emphasis ("very, very CBT, very focused" is "very CBT,
    very focused")."""
    return norms[0] not in _INTENSIFIERS and j + 1 < len(norms) and words[j + 1] \
        and norms[j + 1] != norms[0] and any(norms[k] == norms[0]
                                             for k in range(j + 2, len(norms)))


#: words said twice for emphasis, never opening a list of like phrases
_INTENSIFIERS = frozenset({"very", "really", "so", "too", "quite", "much", "more", "most",
                           "completely", "totally", "absolutely", "just", "such"})


def _cut_off(part: list, dash: list, whole: list) -> bool:
    """``part``, ``dash`` and ``whole`` are a cut-off word and the word it starts."""
    if not (dash[0] in _DASHES and not dash[1] and whole[1]
            and _is_word(part[0]) and _is_word(whole[0])):
        return False
    part, whole = _norm(part[0]), _norm(whole[0])
    return len(whole) > len(part) and whole.startswith(part)


def _remove_repetitions(tokens: list[list]) -> list[list]:
    """Cut-off words first (the leftmost, until none is left), then the leftmost
    repetition, and again. An edit changes what is found only near it, so the search
    goes on from there rather than from the start: linear in the length."""
    norms = [_norm(t[0]) for t in tokens]
    dashes = [k for k, t in enumerate(tokens) if t[0] in _DASHES]
    cuts = [k - 1 for k in dashes if 0 < k < len(tokens) - 1
            and _cut_off(tokens[k - 1], tokens[k], tokens[k + 1])]
    # the first repetition: at a word said again within six tokens
    for first, norm in enumerate(norms):
        if norm in norms[first + 1:first + 7] and _is_word(tokens[first][0]):
            near = tokens[first:first + 10]
            if _repetition_at([t[0] for t in near], norms[first:first + 10],
                              [_is_word(t[0]) for t in near]) is not None:
                break
    else:
        if not cuts:
            return tokens             # nothing to remove: most sentences
        first = len(norms)
    toks = _Gap(tokens, norms, [_is_word(t[0]) for t in tokens])
    # a cut-off word can start only in [cut_lo, cut_hi)
    cut_lo, cut_hi = (cuts[0], cuts[-1] + 1) if cuts else (0, 0)
    rep_lo = first                    # no repetition starts before rep_lo
    while True:
        # cut-off words: "go- going"
        at = next((k for k in range(cut_lo, min(cut_hi, len(toks) - 2))
                   if _cut_off(toks[k], toks[k + 1], toks[k + 2])), None)
        if at is not None:
            toks[at] = [toks[at + 2][0], toks[at][1]]
            toks.put(at, toks.get(at + 2, _NORM), _NORM)
            toks.put(at, toks.get(at + 2, _IS_WORD), _IS_WORD)
            toks.delete(at + 1, at + 3)
            # a new one can start two before; those after moved two to the left
            cut_lo, cut_hi = max(0, at - 2), max(cut_hi - 2, at + 1)
            rep_lo = min(rep_lo, max(0, at - _REACH))
            continue
        found = _find_repetition(toks, rep_lo)
        if found is None:
            return toks.items()
        i, n, j = found
        after_space = toks[j + n][1] if j + n < len(toks) else False
        toks.delete(i + n, j + n)
        if i + n < len(toks):
            toks[i + n] = [toks[i + n][0], toks[i + n][1] or after_space]
        # the only cut-off words now are those across the join
        cut_lo, cut_hi = max(0, i + n - 2), i + n
        rep_lo = max(0, i + n - _REACH)


_DANGLING = frozenset({",", ";", ":", "-", "--", "—", "–"})


def _tidy_punctuation(toks: list[list]) -> list[list]:
    out: list[list] = []
    for k, tok in enumerate(toks):
        t = tok[0]
        if not _is_word(t):
            # nothing before it any more; but a hyphen on the word after it is that
            # word's ("-10 degrees", "-ish"): dropped, it changed what was said
            attached = t == "-" and k + 1 < len(toks) and not toks[k + 1][1] \
                and _is_word(toks[k + 1][0])
            if not out and t in _DANGLING and not attached:
                continue
            if out and out[-1][0] in _DANGLING and t in (",", *_TERMINAL):
                out.pop()                      # ", ," and ", ." left by a removal
                tok = [t, False]               # "too." from "too-- you know."
        out.append(tok)
    # a dash the text itself ends on marks speech broken off ("so I-"): it stays, or
    # the sentence would read as finished where the speaker stopped
    broken_off = bool(toks) and toks[-1][0] in _DASHES and bool(out) and out[-1] is toks[-1]
    while out and out[-1][0] in _DANGLING and not (broken_off and len(out) > 1
                                                    and out[-1] is toks[-1]
                                                    and _is_word(out[-2][0])):
        out.pop()                              # nothing after it any more
    if out and out[-1][0] in _DASHES:
        out[-1] = [out[-1][0], False]          # "so I-", not "so I -"
    return out


#: Where a tidied text lost speech the transcriber could not take down: an omission
#: mark, as a quotation shows one. Without it "going on [unintelligible 00:02:29] the
#: and I get" read "going on the and I get", words run together that were not said so.
MISSING_MARK = "[…]"
#: the cues of such notes ("[inaudible]", "(unintelligible 00:02:29)", "<crosstalk>")
_MISSING_CUES = frozenset("""
inaudible unintelligible unclear indistinct incomprehensible crosstalk cross-talk
overlapping garbled
""".split())
#: any of those cues, anywhere: a text without one has no such note to look for
_MISSING_HINT = re.compile("|".join(map(re.escape, sorted(_MISSING_CUES))), re.I)
_MISSING = "\ue000"          # stands for a gap while tidying: no word, no note, no filler
_NOTE_WORDS = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")


def _mark_missing(text: str) -> str:
    """``text`` with each note of missing speech replaced by :data:`_MISSING`. Most texts
    have no such cue: they are returned at once, unscanned (tidying is most of the core
    ideas' time)."""
    if not _MISSING_HINT.search(text):
        return text
    parts, last = [], 0
    for s, e in transcriber_note_spans(text):
        if _MISSING_CUES.intersection(w.lower() for w in _NOTE_WORDS.findall(text[s:e])):
            parts += [text[last:s], f" {_MISSING} "]
            last = e
    return "".join(parts) + text[last:] if parts else text


def _missing_inside(toks: list[list]) -> list[list]:
    """Marks of missing speech between words only, one for a run: at either end of the text
    nothing reads as joined, and the sentence keeps its own start."""
    out: list[list] = []
    for tok in toks:
        if tok[0] == _MISSING and (not out or out[-1][0] == _MISSING):
            continue
        out.append([tok[0], True] if tok[0] == _MISSING else tok)
    while out and out[-1][0] == _MISSING:
        out.pop()
    return out


def tidy_utterance(text: str) -> str:
    """``text`` without transcriber notes, fillers, false starts, immediate
    repetitions and cut-off words (the rules are in the module docstring).

    Extractive: the words left are a subsequence of the text's words, none cut;
    only the case of a sentence's first letter may change: capitalised when the text
    is written in sentence case (it has a capital letter outside its transcriber
    notes), so a sentence that lost its start to a filler or a note still starts
    with one. Never empty when the text has a word other than a filler.
    """
    marked = _mark_missing(text)
    base = strip_transcriber_notes(marked)
    stripped = base if marked is text else strip_transcriber_notes(text)
    toks = _tokens(base)
    if not toks:
        return ""
    toks = _remove_restarts(toks)
    toks = _remove_fillers(toks)
    toks = _remove_repetitions(toks)
    toks = _tidy_punctuation(toks)
    if marked is not text:
        toks = _missing_inside(toks)
    out = _join(toks).strip()
    if marked is not text:
        out = out.replace(_MISSING, MISSING_MARK)
    if not any(_is_word(t[0]) for t in toks):
        substantive = [w for w in _WORD.findall(stripped) if _norm(w) not in FILLERS]
        return re.sub(r"\s+", " ", stripped).strip() if substantive else ""
    if any(ch.isupper() for ch in stripped):
        out = _sentence_case(out)
    return out


#: where a sentence's first letter is: the text's start, or after a sentence end (not
#: after a quotation's closing mark: 'she said "no." and left' goes on)
_SENTENCE_START = re.compile(r"(?:^|(?<=[.!?…])\s+)[\"'“‘(\[]?([a-z])")


def _sentence_case(text: str) -> str:
    """Every sentence of ``text`` starting with a capital. Used when the transcript is
    written in sentence case: a sentence whose start was a filler or a transcriber
    note ("[inaudible] and then she left") keeps its next word, in lower case."""
    def up(m: re.Match) -> str:
        # the words just before the stop are enough to tell an abbreviation
        if m.start() and ends_with_abbreviation(text[max(0, m.start() - 24):m.start()],
                                                m.group(1)):
            return m.group(0)
        return m.group(0)[:-1] + m.group(1).upper()
    return _SENTENCE_START.sub(up, text)


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


# --- sentences ------------------------------------------------------------------------

#: a full stop after one of these does not end the sentence: a title or a Latin or
#: common abbreviation
_ABBREVIATION = re.compile(
    r"\b(?i:dr|mr|mrs|ms|prof|st|mt|vs|etc|e\.g|i\.e|eg|ie|cf|approx|fig)\.$")
#: a single capital letter with its full stop
_INITIAL = re.compile(r"\b[A-Z]\.$")


def ends_with_abbreviation(text: str, following: str = "") -> bool:
    """Whether the full stop ending ``text`` belongs to an abbreviation or an initial
    rather than ending the sentence; ``following`` is the text after it.

    A single capital letter is an initial when a title or another initial comes
    before or after it, or when the next word starts in lower case: "So when Mr. A. said
    thank you" is one sentence, not "So when Mr. A." and "said thank you"; "I was
    in group A. Then it ended." is two."""
    text = text.rstrip()
    if _ABBREVIATION.search(text):
        return True
    initial = _INITIAL.search(text)
    if initial is None:
        return False
    before = text[:initial.start()].rstrip()
    return following.lstrip()[:1].islower() or bool(
        _ABBREVIATION.search(before) or _INITIAL.search(before)
        or re.match(r"\s*[A-Z]\.(?!\w)", following))
#: a sentence's end: stops (never from inside a run of them), closing marks, a space;
#: or a blank line. Possessive, and starting where a run of stops starts: trying every
#: start inside a long run of stops ("......" with no space after) was quadratic
_END = re.compile(r"(?<![.!?…])[.!?…]++[\"'”’)\]]*+(?=\s|$)|\n\s*\n")
_CLAUSE = re.compile(r"[,;:]+\s+|\s+[—–-]{1,2}\s+|[—–]")


def _abbreviation_reads(text: str, start: int, end: int) -> int:
    """Where the sentence so far (``text[start:end]``, ending in a full stop) can start
    for :func:`ends_with_abbreviation` to give the same answer: the last word before the
    stop, the spaces before it, and twelve characters more (the longest abbreviation,
    its full stop and the character before it). Passing all of it, again at each full
    stop that does not end the sentence ("Dr. A. and Dr. B. and ..."), was quadratic."""
    at = end - 2                              # the letter of an initial
    while at > start and text[at - 1].isspace():
        at -= 1
    return max(start, at - 12)


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``, trimmed of whitespace."""
    blanked = blank_transcriber_notes(text)
    spans, start = [], 0
    for m in _END.finditer(blanked):
        if m.group() == "." and ends_with_abbreviation(
                blanked[_abbreviation_reads(blanked, start, m.end()):m.end()],
                blanked[m.end():m.end() + 4]):
            continue
        spans.append((start, m.end()))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for s, e in spans:
        piece = blanked[s:e]
        if piece.strip():
            s2 = s + len(piece) - len(piece.lstrip())
            e2 = e - (len(piece) - len(piece.rstrip()))
            out.append((s2, e2))
    return out


#: A span of :func:`_pieces` holds at most this many words as spoken per tidied word
#: it may hold.
_RAW_PER_TIDIED = 4


def _pieces(text: str, s: int, e: int, max_words: int) -> list[tuple[int, int]]:
    """A sentence too long after tidying, cut into spans of at most ``max_words``
    tidied words: at clause punctuation, else at word boundaries.

    The clauses are cut into as few pieces as fit, as even as they allow
    (:func:`_even_pieces`): filled from the start, the last piece was what was left
    over, often the clause a spoken sentence builds up to ("…, and I thought about my
    therapist standing on his own bridge twenty years ago, and somehow that helped me
    not feel like the only one": the first piece ended on "years ago", without its
    point, and the point stood alone without what it was about).

    A span also closes at ``_RAW_PER_TIDIED`` times ``max_words`` words as spoken, so
    that a span of fillers or repetitions ("um, um, um, ...", "I, I, I, ...") that
    tidies to almost nothing does not grow without end."""
    cuts = [s] + [s + m.end() for m in _CLAUSE.finditer(text[s:e])] + [e]
    clauses = [(a, b) for a, b in zip(cuts, cuts[1:]) if text[a:b].strip()]
    out: list[tuple[int, int]] = []
    run: list[tuple[int, int, int, int]] = []      # clauses that fit: (a, b, words, raw)

    def flush() -> None:
        out.extend(_even_pieces(text, run, max_words))
        run.clear()

    for a, b in clauses:
        words = count_words(tidy_utterance(text[a:b]))
        if words > max_words:
            flush()
            spoken = list(_WORD.finditer(text[a:b]))
            for k in range(0, len(spoken), max_words):
                chunk = spoken[k:k + max_words]
                end = a + (spoken[k + max_words].start() if k + max_words < len(spoken)
                           else b - a)
                out.append((a + chunk[0].start(), end))
            continue
        run.append((a, b, words, len(_WORD.findall(text[a:b]))))
    flush()
    return [(a, b - (len(text[a:b]) - len(text[a:b].rstrip()))) for a, b in out]


def _packed(run: list[tuple[int, int, int, int]], limit: int, raw_cap: int) -> list[int]:
    """Where each piece of ``run`` starts when clauses are added to a piece while it
    holds at most ``limit`` tidied and ``raw_cap`` spoken words."""
    starts, words, raw = [0], 0, 0
    for k, (_a, _b, w, r) in enumerate(run):
        if k and (words + w > limit or raw + r > raw_cap):
            starts.append(k)
            words, raw = 0, 0
        words += w
        raw += r
    return starts


def _even_pieces(text: str, run: list[tuple[int, int, int, int]], max_words: int
                 ) -> list[tuple[int, int]]:
    """The clauses of ``run`` (each at most ``max_words`` tidied words) as the fewest
    pieces of at most ``max_words`` words, the largest as small as can be: the least
    limit that needs no more pieces than ``max_words`` does, found by bisection
    (linear in the clauses each time). A clause's words are counted tidied on its
    own; a piece is tidied whole once to check it, and one that tidies longer (a
    filler read otherwise beside its neighbours) is cut again before its last clause."""
    if not run:
        return []
    raw_cap = _RAW_PER_TIDIED * max_words
    fewest = len(_packed(run, max_words, raw_cap))
    lo, hi = max(w for _a, _b, w, _r in run), max_words
    while lo < hi:
        mid = (lo + hi) // 2
        if len(_packed(run, mid, raw_cap)) <= fewest:
            hi = mid
        else:
            lo = mid + 1
    starts = _packed(run, lo, raw_cap) + [len(run)]
    out = []
    for p, q in zip(starts, starts[1:]):
        a, b = run[p][0], run[q - 1][1]
        if q - p > 1 and count_words(tidy_utterance(text[a:b])) > max_words:
            out.extend(_even_pieces(text, run[p:q - 1], max_words))
            out.append((run[q - 1][0], b))
        else:
            out.append((a, b))
    return out


def _unit_text(text: str, a: int, b: int, sent_start: int, sent_end: int) -> str:
    tidy = tidy_utterance(text[a:b])
    if not tidy:
        return ""
    tidy = tidy.rstrip(",;:—–- ")
    if a > sent_start:
        tidy = "…" + tidy[0].lower() + tidy[1:] if tidy[:1].isupper() and tidy[:2] != "I " else "…" + tidy
    if b < sent_end and not tidy.endswith(tuple(_TERMINAL)):
        tidy += "…"
    return tidy


# --- the stage ----------------------------------------------------------------------------

def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _check(segments: pd.DataFrame, domain_of_segment, vectors) -> np.ndarray:
    missing = [c for c in ("segment_id", "case_id", "text") if c not in segments.columns]
    if missing:
        raise InputError(f"segments table lacks column(s) {', '.join(missing)}", field="segments",
                         hint="pass the segments table of the run (SEGMENT_COLUMNS)")
    dom = np.asarray(domain_of_segment)
    if dom.ndim != 1 or len(dom) != len(segments):
        raise InputError(f"{len(dom)} domain ids for {len(segments)} segments",
                         field="domain_of_segment", hint="give one domain id per segment row (-1: none)")
    if len(dom) and not np.issubdtype(dom.dtype, np.integer):
        raise InputError(f"domain ids must be integers, not {dom.dtype}", field="domain_of_segment",
                         hint="use -1 for a segment in no domain")
    vec = np.asarray(vectors)
    if vec.ndim != 2 or len(vec) != len(segments):
        raise InputError(f"vectors of shape {vec.shape} for {len(segments)} segments", field="vectors",
                         hint="pass one vector row per segment row, in the same order")
    return dom.astype(np.int64)


def _lexical(texts: list[str]):
    """TF-IDF rows (L2-normalised, sparse) for ``texts``; None when no content word."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from .nlp import stop_words

    skip = stop_words() | FILLERS

    def words(text: str) -> list[str]:
        return [w for w in (_norm(x) for x in _WORD.findall(text))
                if w not in skip and not w[:1].isdigit() and len(w) > 1]

    vectorizer = TfidfVectorizer(analyzer=words, sublinear_tf=True)
    try:
        return vectorizer.fit_transform(texts)
    except ValueError:                       # empty vocabulary: nothing but stop words
        return None


#: Between two sentences of a core idea that are not next to each other in the
#: transcript: the reader sees that something was left out between them (another
#: turn, the interviewer's question, sentences not chosen), as an ellipsis marks a
#: cut in a quotation, and does not take the two for one continuous statement.
GAP = " … "


def _turn_keys(segments: pd.DataFrame) -> list[tuple[str, str]]:
    """The turn of each segment row: (case, turn index), from the columns when the
    table has them, else from the segment id ("<case>:<turn>:<n>")."""
    if "turn_index" in segments.columns:
        return list(zip(segments["case_id"].astype(str), segments["turn_index"].astype(str)))
    parts = [str(sid).rsplit(":", 2) for sid in segments["segment_id"]]
    return [(str(c), p[-2] if len(p) == 3 else ":".join(p))
            for c, p in zip(segments["case_id"], parts)]


def _said(text: str) -> str:
    """``text`` without the transcriber's notes of what was not speech ("(laughs)"):
    between two sentences, such a note leaves nothing out, where a note of speech not
    taken down ("[inaudible]") does."""
    return strip_transcriber_notes(_mark_missing(text))


def _joined(pieces: list[tuple[int, int, int, str]], texts: list[str],
            turns: list[tuple[str, str]]) -> str:
    """The chosen sentences ``(segment row, start, end, tidied text)``, in transcript
    order, as one core idea: a space between sentences that follow each other in
    the transcript, :data:`GAP` where anything lies between them."""
    runs: list[list[str]] = []
    for k, (r, a, _b, text) in enumerate(pieces):
        if k:
            pr, _pa, pb, _ = pieces[k - 1]
            between = _said(texts[r][pb:a]) if r == pr else ""
            next_to = (r == pr and not between.strip(" \t\r\n,;:-—–")) or (
                r == pr + 1 and turns[r] == turns[pr] and not _said(texts[pr][pb:]).strip()
                and not _said(texts[r][:a]).strip())
            if next_to and runs[-1][-1].endswith("…") and text.startswith("…"):
                # two pieces of one sentence, one after the other: the sentence as said,
                # its punctuation between them, not "ago… …and"
                sep = between.strip()
                sep = f" {sep} " if sep[:1] in "-—–" else f"{sep} "
                runs[-1][-1] = f"{runs[-1][-1][:-1]}{sep}{text[1:]}"
                continue
            if next_to:
                runs[-1].append(text)
                continue
        runs.append([text])
    # one omission mark where a piece cut from its sentence meets a gap: "… …and" read
    # as two cuts, the second glued to its word
    out = ""
    for k, run in enumerate(runs):
        text = balance_quotes(" ".join(run))
        if k:
            out = out.removesuffix("…").rstrip() + GAP + text.removeprefix("…").lstrip()
        else:
            out = text
    return out


#: characters after which a straight double quote opens a quotation, and before which
#: one closes it
_BEFORE_OPENING = "([{—–-…/"
_AFTER_CLOSING = ".,;:!?)]}…—–-/"


def balance_quotes(text: str) -> str:
    """``text`` with a double quotation mark added for each one whose partner lies
    outside it: an opening mark at the start for a closing one left alone, a closing
    mark at the end for an opening one never closed.

    A sentence taken from inside a quotation keeps one of its marks and not the
    other: 'And I'm sorry for how I said it."' read as if the quotation closed on
    nothing; the words before an orphaned closing mark were inside the quotation, and
    so are those after an opening mark never closed. Straight marks are told apart by
    what touches them (a space or the text's edge before an opening mark, after a
    closing one); curly ones by their shape."""
    depth, lead, shapes = 0, [], []
    for i, ch in enumerate(text):
        if ch == "“":
            opens = True
        elif ch == "”":
            opens = False
        elif ch == '"':
            before = text[i - 1] if i else " "
            after = text[i + 1] if i + 1 < len(text) else " "
            if (before.isspace() or before in _BEFORE_OPENING) and not after.isspace():
                opens = True
            elif not before.isspace() and (after.isspace() or after in _AFTER_CLOSING):
                opens = False
            else:
                opens = depth == 0
        else:
            continue
        if opens:
            depth += 1
            shapes.append(ch)
        elif depth:
            depth -= 1
            shapes.pop()
        else:
            lead.append("“" if ch == "”" else '"')
    return "".join(lead) + text + "".join("”" if ch == "“" else '"' for ch in reversed(shapes))


@dataclass
class _Units:
    """The candidate sentences of the corpus: segment row, span, tidied text, words."""

    seg: np.ndarray
    span: list[tuple[int, int]]
    text: list[str]
    words: np.ndarray


def _split_units(texts: list[str], dom: np.ndarray, max_words: int) -> _Units:
    seg, span, out, words = [], [], [], []

    def add(i: int, sp: tuple[int, int], tidy: str) -> None:
        seg.append(i)
        span.append(sp)
        out.append(tidy)
        words.append(count_words(tidy))

    for i, text in enumerate(texts):
        if dom[i] < 0:
            continue
        for sp, tidy in _units_of(text, max_words):
            add(i, sp, tidy)
    return _Units(np.array(seg, dtype=np.int64), span, out, np.array(words, dtype=np.int64))


@lru_cache(maxsize=100_000)
def _units_of(text: str, max_words: int) -> tuple[tuple[tuple[int, int], str], ...]:
    """The candidate sentences of one text: (span, tidied text). Kept per text: a CQR
    analysis asks three times (per domain, category and subcategory), and tidying is
    most of the cost (10 of 14 s at 10,000 segments)."""
    return tuple(u for s, e in _sentence_spans(text) for u in _sentence_units(text, s, e, max_words))


@lru_cache(maxsize=100_000)
def _sentence_units(text: str, s: int, e: int, max_words: int
                    ) -> tuple[tuple[tuple[int, int], str], ...]:
    """The candidate units of the sentence ``text[s:e]``: the sentence tidied, or its
    pieces when it is longer than ``max_words``."""
    tidy = tidy_utterance(text[s:e])
    if count_words(tidy) > max_words:
        return tuple(((a, b), piece) for a, b in _pieces(text, s, e, max_words)
                     if (piece := _unit_text(text, a, b, s, e)))
    return (((s, e), tidy),) if tidy else ()


def _unit_at(text: str, a: int, b: int, max_words: int) -> str | None:
    """The tidied unit of ``text`` at ``[a, b)``, or None when there is none: what a
    cached choice of sentences gives back. Only the sentence holding it is tidied (a
    re-run of 10,000 segments tidied every sentence of every chosen segment: 0.7 s)."""
    for s, e in _sentence_spans(text):
        if s <= a and b <= e:
            return dict(_sentence_units(text, s, e, max_words)).get((a, b))
    return None


def core_ideas(segments: pd.DataFrame, domain_of_segment: np.ndarray, vectors: np.ndarray,
               config: CoreIdeaConfig, *,
               encode: Callable[[list[str]], np.ndarray] | None = None,
               only: Collection[tuple[str, int]] | None = None, memory=None) -> pd.DataFrame:
    """One core idea per (case, domain); see the module docstring.

    ``encode`` (optional, the embedder that made ``vectors``): with it, the best
    ``max_encoded`` sentences of each case and domain (by the segment-level
    relevance) are embedded themselves, and chosen by their own vectors.

    ``only`` (optional): the (case, domain) pairs wanted; the others are skipped.
    Centroids and word weights still come from every segment, so a pair's core idea
    is the one a full pass gives it.

    ``memory`` (optional, a :class:`~pipeline.cache.Cache`): the choice is kept
    there, keyed by the segments (ids, cases, texts), the domains, the vectors and
    the config. An entry holds which sentences were chosen (segment rows and
    character offsets), never their words: on a hit only the chosen sentences are
    tidied again. ``encode`` is taken to be the embedder that made ``vectors``, as
    the contract says, so the vectors stand for it in the key.
    """
    dom = _check(segments, domain_of_segment, vectors)
    seg_ids = segments["segment_id"].astype(str).tolist()
    if memory is None or len(set(seg_ids)) != len(seg_ids):
        return _core_ideas_now(segments, dom, vectors, config, encode, only)
    from .. import cache as cache_mod

    texts = segments["text"].fillna("").astype(str).tolist()
    cases = segments["case_id"].astype(str).tolist()
    wanted = None if only is None else sorted({(str(c), int(d)) for c, d in only})
    entry = cache_mod.key(
        "consensa.core_ideas",
        {**config.model_dump(), "encode": encode is not None, "only": wanted},
        cache_mod.digest(seg_ids, cases, texts, dom, np.asarray(vectors, dtype=np.float32)),
        cache_mod.code_digest(_core_ideas_now))
    turns = _turn_keys(segments)
    row_of = {sid: i for i, sid in enumerate(seg_ids)}
    first_row: dict[str, int] = {}
    for i, c in enumerate(cases):
        first_row.setdefault(c, i)

    def to_arrays(df: pd.DataFrame) -> dict[str, np.ndarray]:
        picks = [[(row_of[sid], a, b) for sid, a, b in spans] for spans in df["spans"]]
        flat = np.array([p for ps in picks for p in ps], dtype=np.int64).reshape(-1, 3)
        return {"case_row": np.array([first_row[str(c)] for c in df["case_id"]], dtype=np.int64),
                "domain": df["domain_id"].to_numpy(np.int64),
                "n_picks": np.array([len(ps) for ps in picks], dtype=np.int64),
                "picks": flat}

    def from_arrays(arrays) -> pd.DataFrame | None:
        picks, at, rows = arrays["picks"], 0, []
        for case_row, d, k in zip(arrays["case_row"], arrays["domain"], arrays["n_picks"]):
            chosen = []
            for r, a, b in picks[at:at + int(k)]:
                found = _unit_at(texts[int(r)], int(a), int(b), config.max_words)
                if found is None:
                    return None               # not a sentence of this text: a miss
                chosen.append((int(r), int(a), int(b), found))
            at += int(k)
            row = {"case_id": cases[int(case_row)], "domain_id": int(d), "core_idea": "",
                   "segment_ids": [], "n_words": 0, "spans": []}
            if chosen:
                text = _joined(chosen, texts, turns)
                row.update(core_idea=text, n_words=count_words(text),
                           segment_ids=list(dict.fromkeys(seg_ids[r] for r, *_ in chosen)),
                           spans=[(seg_ids[r], a, b) for r, a, b, _ in chosen])
            rows.append(row)
        return pd.DataFrame(rows, columns=list(CORE_IDEA_COLUMNS))

    value, _ = memory.cached("core_ideas", entry,
                             lambda: _core_ideas_now(segments, dom, vectors, config, encode, only),
                             to_arrays, from_arrays)
    return value


def _core_ideas_now(segments: pd.DataFrame, dom: np.ndarray, vectors: np.ndarray,
                    config: CoreIdeaConfig, encode, only) -> pd.DataFrame:
    vec = np.asarray(vectors, dtype=np.float32)
    seg_ids = segments["segment_id"].astype(str).to_numpy()
    case_of = segments["case_id"].astype(str).to_numpy()
    texts = segments["text"].fillna("").astype(str).tolist()
    units = _split_units(texts, dom, config.max_words)
    lex = _lexical(units.text) if units.text else None
    unit_vec = vec[units.seg] if len(units.seg) else np.zeros((0, vec.shape[1]), dtype=np.float32)
    own_vector = np.zeros(len(units.seg), dtype=bool)      # True: the sentence's own embedding

    domain_centroid = {d: _unit(vec[dom == d].mean(axis=0)) for d in np.unique(dom[dom >= 0])}
    members_of: dict[str, dict[int, list[int]]] = {}
    for i in np.flatnonzero(dom >= 0):
        members_of.setdefault(case_of[i], {}).setdefault(int(dom[i]), []).append(int(i))
    units_of: dict[int, list[int]] = {}
    for u, i in enumerate(units.seg):
        units_of.setdefault(int(i), []).append(u)
    plans = []
    turns = _turn_keys(segments)
    wanted = None if only is None else {(str(c), int(d)) for c, d in only}
    for case, by_domain in members_of.items():             # cases in order of appearance
        for d in sorted(by_domain):
            if wanted is not None and (case, d) not in wanted:
                continue
            members = np.array(by_domain[d], dtype=np.int64)
            mine = np.array([u for i in members for u in units_of.get(int(i), [])], dtype=np.int64)
            plans.append((case, d, members, mine, _candidates(mine, units, texts, config)))
    if encode is not None:
        keep: dict[int, np.ndarray] = {}
        for k, (_case, d, members, mine, cand) in enumerate(plans):
            if len(cand):
                rel = _relevance(cand, mine, units, unit_vec, vec[members].mean(axis=0),
                                 domain_centroid[d], lex, config)
                top = cand[np.argsort(-rel, kind="stable")[:config.max_encoded]]
                # the sentences chosen with an answer that says no stay candidates
                first = _first_no(mine, units, turns, _opening_answers(mine, units, config, turns))
                judged = set(first[1]) if first else set()
                keep[k] = np.concatenate([top, np.array(sorted(judged & set(cand.tolist())
                                                               - set(top.tolist())),
                                                        dtype=np.int64)])
        to_embed = sorted({int(u) for c in keep.values() for u in c})
        if to_embed:
            sv = np.asarray(encode([units.text[u] for u in to_embed]), dtype=np.float32)
            if sv.shape != (len(to_embed), vec.shape[1]):
                raise InputError(f"the encoder returned {sv.shape} for {len(to_embed)} sentences "
                                 f"(segment vectors are {vec.shape[1]}-d)", field="encode",
                                 hint="pass the embedder that made the segment vectors")
            unit_vec[to_embed] = sv
            own_vector[to_embed] = True
        plans = [(case, d, members, mine, keep.get(k, cand))
                 for k, (case, d, members, mine, cand) in enumerate(plans)]
    rows = [_choose(case, d, members, mine, cand, units, unit_vec, own_vector, vec, domain_centroid[d],
                    lex, seg_ids, config, texts, turns) for case, d, members, mine, cand in plans]
    return pd.DataFrame(rows, columns=list(CORE_IDEA_COLUMNS))


def _asks(text: str) -> bool:
    """The sentence is a question ("Does that make sense?"), its closing quote or
    bracket aside."""
    return text.rstrip("…\"'”’) ").endswith("?")


def _candidates(mine: np.ndarray, units: _Units, texts: list[str], config: CoreIdeaConfig) -> np.ndarray:
    """The sentences a core idea may use: long enough and not a question, unless the
    case has nothing else in the domain (then long enough, then anything)."""
    if len(mine) == 0:
        return mine
    long_enough = mine[units.words[mine] >= config.min_sentence_words]
    statements = np.array([u for u in long_enough if not _asks(units.text[u])],
                          dtype=np.int64)
    for pool in (statements, long_enough):
        if len(pool):
            return pool
    return mine


def _relevance(cand, mine, units: _Units, unit_vec, cd_mean, dom_centroid, lex,
               config: CoreIdeaConfig) -> np.ndarray:
    """How relevant each candidate sentence is to its case in the domain (module
    docstring), one value per candidate."""
    cd_centroid = _unit(cd_mean)
    v = unit_vec[cand]
    sem = (1 - config.domain_weight) * (v @ cd_centroid) + config.domain_weight * (v @ dom_centroid)
    if lex is not None:
        m = lex[cand]
        profile = np.asarray(lex[mine].sum(axis=0)).ravel()
        norm = float(np.linalg.norm(profile))
        lex_rel = np.asarray(m @ (profile / norm)).ravel() if norm > 0 else np.zeros(len(cand))
    else:
        lex_rel = np.zeros(len(cand))
    return (1 - config.lexical_weight) * sem + config.lexical_weight * lex_rel


class _Redundancy:
    """The redundancy of every candidate with one of them, a row at a time: the
    higher of the cosine of their vectors (1 for two sentences of one segment that
    share its vector) and their TF-IDF cosine.

    Why a row at a time: a core idea takes at most ``max_sentences`` sentences, so
    only their rows are read, and the whole matrix holds candidates x candidates
    numbers. A case that said everything in one domain (one 200,000-word turn: 13,000
    sentences) made several such matrices of 1.4 GB each, and the run's memory grew
    with the square of the case's sentences (4.3 GB; bench/README.md, "One long case"). A row's
    cosines are a matrix-vector product, which BLAS sums in another order than the
    matrix product: the same to float32's last bit, as another CPU's kernels are
    (tests/test_demo_golden.py)."""

    def __init__(self, cand: np.ndarray, units: _Units, unit_vec: np.ndarray,
                 own_vector: np.ndarray, lex) -> None:
        self.v = unit_vec[cand]
        self.seg = units.seg[cand]
        self.shared = ~own_vector[cand]
        self.lex = lex[cand] if lex is not None else None
        # transposed once (scipy would on every product), in the layout it multiplies
        self.lex_t = self.lex.T.tocsr() if lex is not None else None

    def row(self, k: int) -> np.ndarray:
        same = (self.seg == self.seg[k]) & self.shared[k]
        lex_sim = ((self.lex[k] @ self.lex_t).toarray().ravel() if self.lex is not None
                   else np.zeros(len(self.seg)))
        return np.maximum(np.where(same, 1.0, self.v @ self.v[k]), lex_sim)


#: words that acknowledge a question rather than answer it ("Okay. So in my training
#: ..."), and those of assent ("Yeah.", "Definitely.", "Of course.", "It was.", "Yes, I
#: did."): a short opening made only of them is not the answer. A "yes" says no more
#: than the sentences after it, which say what was done or felt; a "no" ("No.", "Not
#: really.", "I didn't.") is kept, as what follows does not repeat it.
_ACKNOWLEDGEMENTS = frozenset("""
okay ok right well so sure alright oh ah hmm mm yeah yea yes yep yup ya mhm mm-hmm mm-hm
uh-huh definitely absolutely certainly totally exactly indeed true of course for
i you he she it we they that this
am is are was were do does did have has had can could would will
""".split())
#: openings that take the floor rather than answer: a remark on the question ("Good
#: question."), time to think ("Let me think."), an announcement ("So, two things.")
_NOT_AN_ANSWER = re.compile(
    r"\b(?:good|great|interesting|hard|tough|difficult|big|fair) question\b|"
    r"\b(?:that|it)(?:'s|’s| is) a (?:good|great|hard|tough|big|difficult) one\b|"
    r"\blet me (?:think|see)\b|\bwhere (?:do|should|shall) i (?:start|begin)\b|"
    r"\bhow (?:do|can|shall|should) i put (?:it|this)\b|"
    r"^\W*(?:so\W+)?(?:two|three|four|a few|a couple of|several|some) (?:things|points|reasons|"
    r"parts|ways)\b", re.I)


#: a turn opening on one of these goes on with what was said before the interviewer's
#: "Mm."
_GOES_ON = frozenset({"and", "but", "or"})


def _is_answer(text: str) -> bool:
    """Whether a short sentence opening a turn answers the question: not a question
    itself ("Honestly?"), an acknowledgement or assent alone ("Okay.", "Yeah.", "It
    was."), nor a remark that takes the floor ("Good question.")."""
    words = [_norm(w) for w in _WORD.findall(text)]
    return bool(words) and not _asks(text) and not all(w in _ACKNOWLEDGEMENTS for w in words) \
        and not _NOT_AN_ANSWER.search(text)


#: the words of a bare "no"
_NO = frozenset("no nope nah".split())
#: words after an opening "not" that make it a "no" to the question ("Not really at
#: all.", "Not much, honestly."), not a contrast with what was said ("Not performing a
#: therapist.")
_NOT_DEGREES = frozenset("""
really at much a quite exactly particularly especially very so too that once ever always
sure entirely totally completely
""".split())
#: an opening sentence up to this many words that says no ("Not really helpful, no.",
#: "I don't think so, no.") is part of the answer, however many words it has
_ANSWER_MAX_WORDS = 8
_NOT_SO = re.compile(r"\b(?:don't|don’t|do not) think so\b", re.I)


def _says_no_briefly(text: str) -> bool:
    """A short sentence that answers no: it ends on a bare "no" ("Not really helpful,
    no."), says "I don't think so", or opens on "no" or "not" as an answer does ("No,
    not really, never.", "Not really at all."). Not one that goes on to say something
    else ("No, honestly, I cry fairly readily.") or contrasts ("Not performing a
    therapist.")."""
    words = [_norm(w) for w in _WORD.findall(text)]
    if not 0 < len(words) <= _ANSWER_MAX_WORDS:
        return False
    return words[-1] in _NO or bool(_NOT_SO.search(text)) \
        or (words[0] in _NO and not any(_base(w) in _SUBJECT_PRONOUNS for w in words[1:])) \
        or (words[0] == "not" and len(words) > 1 and words[1] in _NOT_DEGREES)


#: words that judge what the question asks about: "it didn't help", "it wasn't
#: appropriate", "that one wasn't helpful"
_JUDGEMENTS = frozenset("""
help helps helped helping helpful useful good great okay ok fine right appropriate
work works worked matter mattered
""".split())


def _judges_no(text: str) -> bool:
    """The sentence judges something not good: a negation with a word of
    :data:`_JUDGEMENTS` at most three words after it ("But the things she told me
    about herself didn't help me.", "It wasn't really helpful.")."""
    words = [_norm(w) for w in _WORD.findall(text)]
    return any(_negates(w) and not _JUDGEMENTS.isdisjoint(words[k + 1:k + 4])
               for k, w in enumerate(words))


def _first_no(mine: np.ndarray, units: _Units, turns: list[tuple[str, str]],
              openings: list[tuple[tuple[int, ...], tuple[int, ...]]]
              ) -> tuple[tuple[int, ...], list[int]] | None:
    """The answer that opens the case's first turn in the domain, when it says no, and
    the sentences after it in its segment that judge something not good
    (:func:`_judges_no`): what the "no" was about, in the participant's next words ("I
    don't think so, no. [...] But the things she told me about herself didn't help
    me."). Only the first turn's: it answers the domain's question, where a later
    turn's answers a follow-up, or another question of a domain that merges several,
    and set before the rest it would read as the answer to all of it."""
    if not len(mine) or not openings:
        return None
    first = turns[int(units.seg[int(min(mine))])]
    answer, after = openings[0]
    if turns[int(units.seg[answer[0]])] != first \
            or not any(_says_no(units.text[a]) for a in answer):
        return None
    seg = units.seg[answer[-1]]
    return answer, [u for u in after if units.seg[u] == seg and _judges_no(units.text[u])]


#: a negation that says the speaker is unsure, not that the answer is no
_UNSURE = re.compile(r"\b(?:don't|don’t|do not|didn't|didn’t) (?:really )?know\b|\bnot sure\b",
                     re.I)


def _says_no(text: str) -> bool:
    """The sentence holds a negation ("no", "not", "never", "didn't", ...), other than
    one of doubt ("I don't know.", "Not sure.")."""
    return any(_negates(_norm(w)) for w in _WORD.findall(_UNSURE.sub(" ", text)))


def _opening_answers(mine: np.ndarray, units: _Units, config: CoreIdeaConfig,
                     turns: list[tuple[str, str]]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """For each turn of the case in the domain that opens on an answer: the sentences
    of that opening that answer the question (:func:`_is_answer`), and the sentences of
    the turn said after the opening.

    Asked "What were you feeling?", a participant answers "Shame. Absolute shame. I
    was mortified." and then explains ("I felt my whole body go hot and cold."). The
    answer is too short for any of its sentences to be chosen on its own, yet it is
    what the participant said in the domain: it goes with whichever sentence of that
    turn is chosen. The opening is the run of sentences from the turn's start that are
    shorter than ``min_sentence_words`` or say no in a few words ("Not really helpful,
    no.", :func:`_says_no_briefly`), up to the turn's first other sentence; a
    question, an acknowledgement or a remark inside it ("Honestly? Defensive.") is
    passed over, not taken. A turn that opens on "and", "but" or "or" ("And I did.",
    after the interviewer's "Mm.") goes on with what was said before: no answer."""
    own = {int(u) for u in mine}
    out: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    for u in sorted(own):
        r = int(units.seg[u])
        opens_turn = r == 0 or turns[r - 1] != turns[r]
        if not opens_turn or (u > 0 and units.seg[u - 1] == r):
            continue                           # not the first sentence of a turn
        first = _WORD.search(units.text[u])
        if first is None or _norm(first.group()) in _GOES_ON:
            continue
        answer, k = [], u
        while k in own and turns[int(units.seg[k])] == turns[r] and (
                int(units.words[k]) < config.min_sentence_words
                or _says_no_briefly(units.text[k])):
            if _is_answer(units.text[k]):
                answer.append(k)
            k += 1
        if not answer:
            continue
        after = []
        while k in own and turns[int(units.seg[k])] == turns[r]:
            after.append(k)
            k += 1
        out.append((tuple(answer), tuple(after)))
    return out


#: first words of a sentence that leans on the one before for its verb or its
#: subject: "Not never, but less." (after "And I started hiding in the toilets less."),
#: "Not one of them, if I'm honest.", "But not your beliefs.", "Same with my mum."
_ELLIPTIC_OPENERS = frozenset("not less same neither nor".split())


def _elliptic(text: str) -> bool:
    """The sentence says something only with the one before it (:data:`_ELLIPTIC_OPENERS`,
    after an "and", "but", "or" or "so")."""
    words = [_norm(w) for w in _WORD.findall(text)][:2]
    if words and words[0] in _GOES_ON | {"so"}:
        words = words[1:]
    return bool(words) and words[0] in _ELLIPTIC_OPENERS


def _antecedents(mine: np.ndarray, units: _Units,
                 turns: list[tuple[str, str]]) -> dict[int, tuple[int, ...] | None]:
    """For each elliptic sentence of the case in the domain (:func:`_elliptic`) said
    inside a turn, the sentences it needs before it, in order: the one just before,
    and that one's own when it is elliptic too; None when that sentence is not the
    case's in the domain, and the elliptic one cannot be chosen. Alone, "Not never, but
    less." said nothing, or the opposite of what was meant. One that opens its turn
    answers the question ("Not really, no."), and needs nothing."""
    own = {int(u) for u in mine}
    out: dict[int, tuple[int, ...] | None] = {}
    for u in sorted(own):
        if not _elliptic(units.text[u]):
            continue
        r = int(units.seg[u])
        prev = u - 1 if u > 0 else None
        if prev is not None and int(units.seg[prev]) == r:
            pass                               # a sentence before it in its segment
        elif r == 0 or turns[r - 1] != turns[r]:
            continue                           # it opens its turn
        elif prev is None or int(units.seg[prev]) != r - 1:
            prev = None                        # the row before said nothing kept
        if prev is None or prev not in own:
            out[u] = None
            continue
        before = out.get(prev, ())
        out[u] = None if before is None else (*before, prev)
    return out


def _choose(case, d, members, mine, cand, units: _Units, unit_vec, own_vector, vec, dom_centroid, lex,
            seg_ids, config: CoreIdeaConfig, texts: list[str],
            turns: list[tuple[str, str]]) -> dict:
    """The core idea of one case in one domain: its sentences chosen by maximal
    marginal relevance (the module docstring), each with the sentences it cannot go
    without. An elliptic sentence comes with the one before it
    (:func:`_antecedents`); a sentence after a turn's opening answer comes with that
    answer, which it must when the answer says no: "She told me she'd recovered from
    anorexia herself." read as a helpful disclosure without the "Not really helpful,
    no." that opened it. The first turn's answer that says no comes first, with the
    sentence that says what was not good (:func:`_first_no`): the answer to the
    domain's question, which the rest, another turn's story, only bears out ("I don't
    think so, no." before "She told me early on that she was a Christian")."""
    empty = {"case_id": case, "domain_id": d, "core_idea": "", "segment_ids": [], "n_words": 0,
             "spans": []}
    if len(cand) == 0:
        return empty
    rel = _relevance(cand, mine, units, unit_vec, vec[members].mean(axis=0), dom_centroid, lex,
                     config)
    red = _Redundancy(cand, units, unit_vec, own_vector, lex)
    words = units.words[cand]
    said = [f" {' '.join(_WORD.findall(units.text[int(u)].casefold()))} " for u in cand]
    openings = _opening_answers(mine, units, config, turns)
    answer_of = {u: answer for answer, after in openings for u in after}
    says_no = [answer for answer, _ in openings if any(_says_no(units.text[a]) for a in answer)]
    before_of = _antecedents(mine, units, turns)
    stands = np.array([before_of.get(int(u), ()) is not None for u in cand], dtype=bool)
    if not stands.any():
        stands[:] = True                       # nothing else was said here
    chosen: list[int] = []
    companions: list[int] = []                 # answers and antecedents taken with a choice
    state = {"used": 0, "redundancy": np.zeros(len(cand)),
             "repeated": np.zeros(len(cand), dtype=bool)}

    def extras(u: int, taken: set[int]) -> tuple[list[int], list[int]]:
        """The sentences ``u`` must come with, and those it comes with when they fit."""
        before = before_of.get(u) or ()
        must = [b for b in before if b not in taken]
        may: list[int] = []
        for x in (*before, u):
            answer = answer_of.get(x, ())
            into = must if answer in says_no else may
            into += [a for a in answer if a not in taken and a not in must and a not in may]
        return must, may

    def cost_of(found: list[int]) -> int:
        return int(units.words[found].sum()) if found else 0

    def take(k: int, extra: list[int]) -> None:
        chosen.append(k)
        companions.extend(extra)
        state["used"] += int(words[k]) + cost_of(extra)
        state["redundancy"] = np.maximum(state["redundancy"], red.row(k))
        # a sentence said again, whole or in part ("I don't really know what issues I
        # need to sort." then "I don't really know what issues I need to-"), is never
        # a second sentence of the core idea
        state["repeated"] |= np.array([a in said[k] or said[k] in a for a in said], dtype=bool)

    def taken() -> set[int]:
        return {int(cand[k]) for k in chosen} | set(companions)

    first = _first_no(mine, units, turns, openings)
    if first is not None:                      # the answer to the domain's question, first
        answer, judged = first
        if cost_of(list(answer)) <= config.max_words:
            companions.extend(answer)
            state["used"] += cost_of(list(answer))
            # with the sentence after it that says what was not good, when one does
            have, budget = taken(), config.max_words - state["used"]
            fits = [(k, must) for k, u in enumerate(cand)
                    if int(u) in judged and stands[k] and int(u) not in have
                    for must in [extras(int(u), have)[0]]
                    if int(words[k]) + cost_of(must) <= budget]
            if fits:
                take(*max(fits, key=lambda f: rel[f[0]]))
    while len(chosen) < config.max_sentences:
        score = rel - config.diversity * state["redundancy"] if chosen else rel.copy()
        score[chosen] = -np.inf
        score[state["repeated"]] = -np.inf
        score[~stands] = -np.inf
        # a sentence comes with its turn's short answer, and the word budget counts both;
        # alone only when no sentence fits with its answer (never when it says no)
        have = taken()
        score[[k for k, u in enumerate(cand) if int(u) in have]] = -np.inf
        both = [extras(int(u), have) for u in cand]
        budget = config.max_words - state["used"]
        extra = [must + may for must, may in both]
        cost = words + np.array([cost_of(e) for e in extra], dtype=np.int64)
        with_answer = np.where(cost <= budget, score, -np.inf)
        if np.isfinite(with_answer).any():
            score = with_answer
        else:
            extra = [must for must, _ in both]
            cost = words + np.array([cost_of(e) for e in extra], dtype=np.int64)
            score = np.where(cost <= budget, score, -np.inf)
        best = int(np.argmax(score))
        if not np.isfinite(score[best]) or (chosen and score[best] <= 0):
            break
        take(best, extra[best])
    if not chosen and not companions:
        return empty
    picked = sorted({int(cand[k]) for k in chosen} | set(companions),
                    key=lambda u: (units.seg[u], units.span[u][0]))
    text = _joined([(int(units.seg[u]), *units.span[u], units.text[u]) for u in picked],
                   texts, turns)
    return {"case_id": case, "domain_id": d, "core_idea": text,
            "segment_ids": list(dict.fromkeys(str(seg_ids[units.seg[u]]) for u in picked)),
            "n_words": count_words(text),
            "spans": [(str(seg_ids[units.seg[u]]), int(units.span[u][0]), int(units.span[u][1]))
                      for u in picked]}
