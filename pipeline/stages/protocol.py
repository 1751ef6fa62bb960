"""Protocol stage: the interview protocol as topic areas, and the interview frame.

A CQR team starts its domains from the interview protocol: the questions every
participant was asked. In a semi-structured study the same main questions recur,
worded a little differently, in every case, while follow-ups and probes ("Can you
say more?") follow what the participant said. This module finds that protocol,
or takes the one the team wrote, and says which area every prompt and every
participant segment belongs to. It also marks the *interview frame*: greetings,
consent and recording notices, background questions (years in practice, age,
training, current role), closing thanks and "anything else you'd like to add?",
which a CQR analysis reports apart from its domains.

Public functions (all pure: tables, arrays and callables in, frozen dataclasses
out; the only file read is :func:`load_protocol`'s):

* :func:`infer_protocol` ``(turns, segments, encode, config, *, segment_vectors=None,
  given=None) -> ProtocolInference``. ``turns`` has ``TURN_COLUMNS``, ``segments``
  ``SEGMENT_COLUMNS``; ``encode(list[str]) -> ndarray`` returns one unit vector
  per text (the run's embedder). The protocol used is, in order: ``given``; the
  inline ``config.areas``; the file ``config.file`` (read with
  :func:`load_protocol`; a relative path is read from the current folder, so the
  caller resolves it against the config's folder first); else, with
  ``config.infer``, the protocol inferred from the prompts. With none of these the
  result has an empty protocol and every area is -1.
* :func:`propose_domains_from_protocol` ``(segment_vectors, segment_area, protocol,
  config, segment_case, *, segment_small_talk=None, segment_text=None) ->
  DomainProposal``: one proposed domain per area, checked against what the
  segments say (moves, merges, new domains; the rules are in its docstring).
* :func:`protocol_to_yaml` / :func:`load_protocol`: the protocol as the YAML file
  a team edits and passes back as ``protocol.file``.

Prompts are the interviewer's turns and the non-participant turns that set a
topic: a task read out or shown (a think-aloud study writes ``Task: ...``; role
'other', speaker label matching ``config.prompt_speakers``), a section heading
given as a turn of role 'other', and any other 'other' turn that asks a question
(a second interviewer whose label matched no role). Ingest labels a .docx heading
after the first labelled line "Heading", so it is such a turn; in a .txt or .md a
heading counts as a prompt only when the transcript gives it a label ("Section:
Training").

How the protocol is inferred (each threshold is a ``ProtocolConfig`` field):

1. Each prompt is reduced to its *core*: the sentences from its first question or
   request ("Could you tell me...", "Tell me...") to its last, so "Mm-hmm.
   That's helpful. Is there anything else...?" is read as its question.
2. Backchannels ("Mm.", "Right.") and 'other' turns that are neither tasks nor
   questions set no topic: they stay in the area in progress.
3. Frame prompts (see *Frame* below) go to one frame area per kind: opening,
   background, closing.
4. Generic probes ("Can you say more?", "How did that feel?", "What do you
   mean?"), by pattern, by ``probe_similarity`` to a few such phrases, or as a
   feeling or elaboration question whose only object refers back ("How did you
   feel about that?", "How was that for you?": :func:`_generic_probe`), stay in
   the area in progress.
5. The remaining prompts that ask something (a reflection such as "So you were
   dreading it." asks nothing) are grouped across cases (average-linkage cosine
   clustering cut at ``area_similarity``). A group is a protocol area when it
   holds prompts from at least ``min_cases`` cases and at least one of them is a
   full question (more than ``probe_max_words`` words); a short prompt counts for
   its case only when it names a topic word of a full question of the group
   ("And supervision?"), not when it merely sounds alike ("And did you?"). A
   group asked twice or
   more in at least ``probe_repeat_share`` of its cases is split along its tree
   (it joined two questions), and when it cannot be split it is a probe
   repeated through each interview ("What are you thinking now?"), not a topic.
   Groups that ask the same question in different interviews are then joined
   (see :func:`_merge_groups`). A part of a group (its wordings at
   ``join_similarity``) that a minority of its interviews ask, beside the group's
   other question, and whose answers are far from the answers to it, is a
   question of its own (:func:`_split_apart`). Task and heading lines take no part in this: each
   then joins the group whose questions it is most alike (at least
   ``area_similarity``), else it is an area of its own, even when only one case
   has it (:func:`_place_tasks`).
6. Walking each interview in order, a prompt in an area group opens that area. A
   prompt in no group is a *follow-up* of the area in progress, unless it is
   similar to another area's questions (``join_similarity``: the protocol question
   reworded) or says it moves on ("my next question", "that brings me to"): then
   it opens the most similar area (at least ``area_similarity``), or an area of its
   own. Short prompts of at most ``probe_max_words`` words are probes unless they
   fall in an area group with a full question. Follow-ups of several interviews
   whose answers are nearer each other than anything the other interviews answered
   ask about a topic no area covers, and open an area of their own
   (:func:`_new_topics`).
7. A follow-up question whose answers say what the other cases said to a later
   area's main questions, by ``rehome_margin`` more than to its own area's,
   opens that area (:func:`_rehome_follow_ups`): a protocol question asked in the
   interviewer's own words is found by its answers when its wording is too far
   from the others'.
8. Areas are numbered in interview order (mean relative position of their
   questions) and named after one of their most representative questions (a
   wording of the question most of the area's interviews ask, then mean
   similarity to the others; :func:`_representative`): the wording that reads
   best once its speech is taken out (:func:`area_name`: lead-ins such as "So,
   um," and "Could you tell me about", fillers, restarts, words said twice, a
   participant's name), cut at a clause boundary after about ``name_max_words``
   words. Frame areas are named "Interview frame: opening" / "background" /
   "closing".

Frame, from the question and the content: a prompt is *background* when its
core asks about years in practice, age, training, orientation or current role
(patterns; in the first half of the interview, or later when its answers
agree), or is within ``frame_similarity`` of such anchor questions and its
answers agree, or comes in the first quarter of the interview and at least
``frame_content_share`` of its answer segments describe a background ("I've been
practising for nine years", "I trained as ..."; patterns, or
``frame_similarity`` to anchor sentences; for a question that asks "how long",
an answer that opens with a number of years, "About ten years now", not "Two
years ago"). It is *closing* when it asks for
anything else to add (or, in the last quarter, "anything else you'd like to
say?"). A greeting, consent or recording notice or a thank-you
(patterns, or ``frame_similarity`` to anchor phrases) is *opening* in the first
quarter of the interview and *closing* in the last, unless its core asks a
question of a protocol area. Separately, each participant segment of at most
``small_talk_max_words`` words that is courtesy ("Thanks, good luck with the
study": courtesy phrases with at most two other content words, or
``small_talk_similarity`` to anchor phrases) is flagged small talk, whatever
question it answers; in answer to the closing, any such segment with a courtesy
phrase is ("Thank you for asking about this, nobody ever asks the client.").

With a team's protocol, a question that says what helped or what did not
(:func:`_polarity`) goes to the file's question of its own polarity when that is
at most ``polarity_margin`` less similar than the nearest one (:func:`_by_polarity`).

Segments get the area of the prompt they answer: ``question_turn_index`` from
segmentation, or a later task/heading line of the same case when there is one
(segmentation looks at interviewer turns only). Segments that answer no prompt
get area -1.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .. import safeyaml
from ..errors import ConfigError, ConsensaError
from ..types import SEGMENT_COLUMNS, TURN_COLUMNS, check_columns
from .coreideas import ends_with_abbreviation
from .ingest import PROMPT_LABELS
from .naming import REDACTION_MARK

Encoder = Callable[[list[str]], np.ndarray]

FRAME_DOMAIN = "Interview frame"
FRAME_KINDS = ("opening", "background", "closing")
_FRAME_NAME = {k: f"{FRAME_DOMAIN}: {k}" for k in FRAME_KINDS}

# --- Config -------------------------------------------------------------------


class AreaSpec(BaseModel):
    """One area of a protocol written inline in the config."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, description="the area's name, as the team calls it")
    questions: list[str] = Field(..., min_length=1, description=(
        "the questions of this area, as asked (one is enough; variants help matching)"))
    frame: bool = Field(False, description=(
        "part of the interview frame (greeting, background, closing), not a topic"))
    follow_ups: list[str] = Field([], description=(
        "a frame area's follow-up questions, as asked: a question asked inside the frame "
        "that is listed here stays in it, with its answers"))

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("an area needs a name that is not blank")
        return value.strip()

    @field_validator("questions", "follow_ups")
    @classmethod
    def _questions_not_blank(cls, value: list[str]) -> list[str]:
        if any(not q.strip() for q in value):
            raise ValueError("a question is blank; remove it or write it out")
        return [q.strip() for q in value]


#: 'other' speaker labels that set a topic: "Task", "Task 2", "Section B", "Vignette 1a",
#: and the label ingest gives a .docx heading
DEFAULT_PROMPT_SPEAKERS = PROMPT_LABELS


class ProtocolConfig(BaseModel):
    """Settings of the protocol stage (config section ``protocol``).

    Similarities are cosine similarities of the run's embedding vectors; the
    defaults suit all-MiniLM-L6-v2.
    """

    model_config = ConfigDict(extra="forbid")

    file: Path | None = Field(None, description=(
        "a protocol YAML file (as Consensa writes it, edited by the team); overrides inference"))
    areas: list[AreaSpec] = Field([], description="the protocol written inline; overrides 'file'")
    infer: bool = Field(True, description="infer the protocol from the prompts when none is given")
    include_frame: bool = Field(False, description=(
        "bring the interview frame (greetings, background, closing) into the cross-analysis"))
    prompt_speakers: list[str] = Field(DEFAULT_PROMPT_SPEAKERS, description=(
        "speaker labels (case-insensitive regexes, full match) of 'other' turns that set a "
        "topic: tasks read out or shown, section headings"))
    area_similarity: float = Field(0.5, ge=-1, le=1, description=(
        "prompts from different cases at least this similar (average linkage) ask the same "
        "question"))
    join_similarity: float = Field(0.6, ge=-1, le=1, description=(
        "a prompt asked in one case only opens an area when at least this similar to the "
        "area's questions (the protocol question reworded); otherwise it is a follow-up"))
    min_cases: int = Field(2, ge=1, description=(
        "a recurring question is an area when asked in at least this many cases"))
    probe_max_words: int = Field(4, ge=0, le=50, description=(
        "prompts of at most this many words are probes unless their area group has a "
        "longer question"))
    probe_similarity: float = Field(0.75, ge=-1, le=1, description=(
        "a prompt this similar to a generic probe ('Can you say more?') is a probe"))
    probe_repeat_share: float = Field(0.6, gt=0, le=1, description=(
        "a question group asked twice or more within this share of its cases is a probe"))
    frame_similarity: float = Field(0.6, ge=-1, le=1, description=(
        "a prompt this similar to a frame anchor (\"How long have you been practising?\") "
        "is a frame prompt when its answers agree"))
    frame_content_share: float = Field(0.5, ge=0, le=1, description=(
        "share of a prompt's answer segments that must read as background (years in "
        "practice, training) for the answers to agree"))
    small_talk_max_words: int = Field(20, ge=0, le=200, description=(
        "participant segments of at most this many words can be flagged as small talk"))
    small_talk_similarity: float = Field(0.7, ge=-1, le=1, description=(
        "a short segment this similar to a courtesy anchor ('Thank you, good luck with the "
        "study') is small talk"))
    name_max_words: int = Field(12, ge=3, le=40, description=(
        "an area name is its question cut at a clause boundary after about this many words"))
    move_margin: float = Field(0.2, ge=0, le=2, description=(
        "a segment is proposed to move to another area's domain when it is this much more "
        "similar to that area's centre than to its own area's centre"))
    min_centre_segments: int = Field(3, ge=1, description=(
        "an area needs this many segments for its centre to be used in the content checks"))
    merge_similarity: float = Field(0.9, ge=-1, le=1, description=(
        "two areas whose centres are at least this similar are proposed for merging"))
    uncovered_similarity: float = Field(0.3, ge=-1, le=1, description=(
        "a segment less similar than this to every area centre is content no area covers"))
    new_domain_similarity: float = Field(0.5, ge=-1, le=1, description=(
        "uncovered segments at least this similar (average linkage) form one new domain"))
    new_domain_min_segments: int = Field(3, ge=1, description=(
        "a new domain needs at least this many uncovered segments (and follow-ups that "
        "open an area of a topic no area covers, this many answers)"))
    new_domain_min_cases: int = Field(2, ge=1, description=(
        "a new domain needs uncovered segments from at least this many cases (and such "
        "follow-ups, from this many)"))
    wording_similarity: float = Field(0.4, ge=-1, le=1, description=(
        "with a team's protocol: a question the interviewers asked in at least min_cases "
        "interviews, in words the file's questions do not reach, opens the area whose "
        "question is at least this similar to the centre of its wordings"))
    polarity_margin: float = Field(0.1, ge=0, le=2, description=(
        "with a team's protocol: a question that says what helped, or what did not (a "
        "negation, 'unhelpful', 'wrong'), goes to the question of its own polarity when that "
        "is at most this much less similar than one of the other polarity; 0: on a tie only"))
    rehome_margin: float = Field(0.1, ge=0, le=2, description=(
        "a follow-up question whose answers are this much more similar to another area's "
        "answers (in the other cases) than to its own area's opens that area; 2: never"))

    @field_validator("areas")
    @classmethod
    def _names_unique(cls, value: list[AreaSpec]) -> list[AreaSpec]:
        seen: set[str] = set()
        for spec in value:
            if spec.name.casefold() in seen:
                raise ValueError(f"two areas are named {spec.name!r}; merge them or rename one")
            seen.add(spec.name.casefold())
        return value

    @field_validator("prompt_speakers")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression ({exc})") from None
        return value


# --- Protocol model -------------------------------------------------------------

Source = Literal["given", "inferred"]


@dataclass(frozen=True)
class Area:
    """One topic area of the protocol: its questions, as asked."""

    area_id: int
    name: str
    questions: tuple[str, ...]
    frame: bool = False
    source: Source = "given"
    #: a frame area's follow-up questions (:func:`protocol_to_yaml`)
    follow_ups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Protocol:
    areas: tuple[Area, ...] = ()

    def area(self, area_id: int) -> Area:
        return self.areas[area_id]

    @property
    def frame_ids(self) -> tuple[int, ...]:
        return tuple(a.area_id for a in self.areas if a.frame)


def protocol_from_specs(specs: Sequence[AreaSpec]) -> Protocol:
    return Protocol(tuple(Area(i, s.name, tuple(s.questions), s.frame, "given",
                               tuple(s.follow_ups)) for i, s in enumerate(specs)))


_YAML_HEADER = """\
# Interview protocol: the topic areas of the interviews and the questions of each.
# Edit it (rename, merge or split areas, add or remove questions, set frame: true
# on greetings, background and closing questions) and give it back to Consensa as
#   protocol:
#     file: this-file.yaml
# Areas keep the order written here. Every area needs a name and one question or more.
# A frame area can list 'follow_ups': questions asked inside the frame, which keep
# their answers in it.
"""


#: A protocol's areas are questions asked of most participants. When the median area is
#: answered in fewer than this share of the cases (and the study has at least
#: :data:`SCATTERED_MIN_CASES`), the interviewer's questions do not recur: sessions or
#: open conversations rather than semi-structured interviews, whose "areas" are one
#: interview's questions each (a real semi-structured study of 7 interviews: a median
#: of 2 of 7; 133 counselling sessions: 3 of 133).
SCATTERED_SHARE = 0.1
SCATTERED_MIN_CASES = 10


def placed_summary(counts: Mapping) -> str | None:
    """What the run summary and the report say of the segments placed by content
    (``segments_placed_by_content`` of a CQR run's counts); None when there are none."""
    n = int(counts.get("segments_placed_by_content", 0))
    if not n:
        return None
    return (f"{n} segment{'s' if n != 1 else ''} {'answers' if n == 1 else 'answer'} no "
            "question of the protocol (said before the first question, to a question the "
            "protocol file lacks, or in transcripts of the participants' words only); each "
            "was proposed for the domain nearest in content")


def scattered_protocol(domains: pd.DataFrame, n_cases: int, given: bool = False) -> str | None:
    """A note for the user when a CQR run's protocol areas recur little across its
    cases, else None. Its domains then follow single interviews more than a protocol,
    and nothing else in the output says so: a domain named after a question one
    session asked about a client's pet reads like any other. ``given``: the
    team gave the protocol (a file or inline areas), so the advice is to check it."""
    if "kind" not in domains.columns or n_cases < SCATTERED_MIN_CASES:
        return None
    areas = domains[(domains["kind"] == "area") & (domains["n_segments"] > 0)]
    if len(areas) < 3:
        return None
    median = float(areas["n_cases"].median())
    if median >= SCATTERED_SHARE * n_cases:
        return None
    head = (f"the {len(areas)} protocol areas are answered in a median of {median:g} of "
            f"{n_cases} cases")
    if given:
        return (head + ": most of the protocol's questions were not found in most "
                "interviews; check its wordings against protocol_prompts.csv, which lists "
                "every question the interviewers asked and the area it went to")
    return (head + ": the interviewer's questions recur little, so the domains follow "
            "single interviews more than a shared protocol. If there is a protocol, give it "
            "as protocol.file (protocol.yaml in the run folder is a start); if these are "
            "sessions rather than semi-structured interviews, analysis: consensa.Themes.v1 "
            "finds themes across the whole study")


def protocol_to_yaml(protocol: Protocol, prompts: pd.DataFrame | None = None) -> str:
    """The protocol as a YAML file: ``areas:``, each with ``name``, ``frame`` and
    ``questions``. Loading it back with :func:`load_protocol` gives the same areas,
    all with source "given" (the team has taken them over).

    ``prompts`` (the inference's prompt table: ``kind``, ``area_id``, ``question``):
    a frame area also lists, under ``follow_ups``, the follow-up questions asked
    inside it ("And is that private practice?" after the background question).
    Given back, a question the file does not list, asked after the frame, answers no
    area (:func:`_assign_given`): without them an unedited file sent the background's
    follow-ups, and their answers, out of the frame, to the domain nearest in content.
    They are kept apart from the questions because a follow-up ("So a lot of high-risk
    work.") must not open the frame when it is matched elsewhere in an interview."""
    follow_ups: dict[int, list[str]] = defaultdict(list)
    if prompts is not None and len(prompts):
        frame = {a.area_id for a in protocol.areas if a.frame}
        for kind, area, q in zip(prompts["kind"], prompts["area_id"], prompts["question"]):
            if kind == "follow_up" and int(area) in frame and isinstance(q, str) and q.strip():
                follow_ups[int(area)].append(" ".join(q.split()))
    data = {"areas": []}
    for a in protocol.areas:
        entry = {"name": a.name, "frame": a.frame, "questions": list(a.questions)}
        asked = list(dict.fromkeys([*a.follow_ups, *follow_ups[a.area_id]]))
        if asked:
            entry["follow_ups"] = asked
        data["areas"].append(entry)
    if not protocol.areas:
        # nothing to edit: say what to write, since the answers can be placed by it
        return _YAML_HEADER + _NO_AREAS + safeyaml.dump(data, width=100)
    return _YAML_HEADER + safeyaml.dump(data, width=100)


_NO_AREAS = """\
# No interviewer question was found in the transcripts, so no area was inferred. To
# give the interviews' topic areas, write them in place of the empty list, e.g.
#   areas:
#   - name: Experience of crying in session
#     questions:
#     - Could you tell me about a time you cried in session?
#   - name: 'Interview frame: background'
#     frame: true
#     questions:
#     - How long have you been practising?
# Each answer then goes to the area whose questions and answers it is nearest to.
"""


_AREA_KEYS = ("name", "questions", "frame", "follow_ups")


def load_protocol(path: str | Path) -> Protocol:
    """Read a protocol YAML file (see :func:`protocol_to_yaml`).

    Raises :class:`ConfigError` naming the file, the line and the field
    (``areas[2].questions``) of the first problem."""
    path = Path(path)
    hint_form = ("write 'areas:' and under it one '- name: ...' per area, with "
                 "'questions:' listing its questions (see the file Consensa wrote)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError("protocol file not found", path=path, field="protocol.file",
                          hint="check the path; a relative path is read from the config's "
                               "folder") from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as exc:
        raise ConfigError(f"cannot read the protocol file ({exc.__class__.__name__})", path=path,
                          field="protocol.file", hint="a protocol is a UTF-8 YAML text file") from None
    loader = safeyaml.BoundedSafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        line, hint = safeyaml.error_line(exc, "check indentation and colons on that line")
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', None) or exc}", path=path,
                          line=line, hint=hint) from None
    except RecursionError:
        raise ConfigError("not a usable protocol: nested too deeply", path=path,
                          hint=hint_form) from None
    finally:
        loader.dispose()

    def line_of(n: object) -> int | None:
        return n.start_mark.line + 1 if n is not None and hasattr(n, "start_mark") else None

    def child(n: object, key: str) -> object:
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.value == key:
                    return v
        return None

    def texts(item: dict, inode: object, where: str, key: str, noun: str,
              needed: str | None) -> tuple[str, ...]:
        """The list under ``key`` of an area, each entry text and not blank;
        ``needed``: the message when it is missing or empty (None: it may be)."""
        value, seq = item.get(key), child(inode, key)
        if value is None and needed is None:
            return ()
        if not isinstance(value, list) or (needed and not value):
            raise ConfigError(needed or f"'{key}' must be a list of questions", path=path,
                              line=line_of(seq or inode), field=f"{where}.{key}",
                              hint=f"write each {noun} on its own '- ' line under '{key}:'")
        entries = seq.value if isinstance(seq, yaml.SequenceNode) else []
        for j, q in enumerate(value):
            if not isinstance(q, str) or not q.strip():
                raise ConfigError(f"a {noun} must be text, not blank", path=path,
                                  line=line_of(entries[j] if j < len(entries) else seq),
                                  field=f"{where}.{key}[{j}]",
                                  hint="write the question out, or remove the line")
        return tuple(q.strip() for q in value)

    if not isinstance(data, dict) or "areas" not in data:
        raise ConfigError("a protocol is a mapping with the key 'areas'", path=path,
                          line=line_of(node), field="areas", hint=hint_form)
    extra = [k for k in data if k != "areas"]
    if extra:
        raise ConfigError(f"unknown key {extra[0]!r}", path=path,
                          line=line_of(child(node, str(extra[0]))), field=str(extra[0]),
                          hint="a protocol has only 'areas'")
    areas_node = child(node, "areas")
    if not isinstance(data["areas"], list) or not data["areas"]:
        raise ConfigError("'areas' must be a list with one area or more", path=path,
                          line=line_of(areas_node), field="areas", hint=hint_form)
    items = areas_node.value if isinstance(areas_node, yaml.SequenceNode) else []
    areas: list[Area] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(data["areas"]):
        inode = items[i] if i < len(items) else None
        where = f"areas[{i}]"
        if not isinstance(item, dict):
            raise ConfigError("each area must be a mapping with 'name' and 'questions'", path=path,
                              line=line_of(inode), field=where, hint=hint_form)
        for key in item:
            if key not in _AREA_KEYS:
                raise ConfigError(f"unknown key {key!r}", path=path,
                                  line=line_of(child(inode, str(key))), field=f"{where}.{key}",
                                  hint=f"an area has only {', '.join(_AREA_KEYS)}")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("an area needs a name (text, not blank)", path=path,
                              line=line_of(child(inode, "name") or inode), field=f"{where}.name",
                              hint="write e.g. 'name: Training experiences'")
        name = name.strip()
        if name.casefold() in seen:
            raise ConfigError(f"two areas are named {name!r}", path=path,
                              line=line_of(child(inode, "name")), field=f"{where}.name",
                              hint=f"areas[{seen[name.casefold()]}] has the same name: merge "
                                   "them or rename one")
        seen[name.casefold()] = i

        questions = texts(item, inode, where, "questions", "question",
                          "an area needs 'questions': a list with one question or more")
        frame = item.get("frame", False)
        if not isinstance(frame, bool):
            raise ConfigError("'frame' must be true or false", path=path,
                              line=line_of(child(inode, "frame")), field=f"{where}.frame",
                              hint="write 'frame: true' for greetings, background and closing")
        follow = texts(item, inode, where, "follow_ups", "follow-up", None)
        areas.append(Area(len(areas), name, questions, frame, "given", follow))
    return Protocol(tuple(areas))


# --- Text helpers ---------------------------------------------------------------

_WORD = re.compile(r"[\w'’-]+")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9À-Þ])")
_LEAD = (r"(?:(?:so|and|but|okay|ok|right|well|now|then|um+|uh+|erm|er|just|maybe|also|great|"
         r"yeah|yes|alright|mm-hmm|mm+|mhm|oh|ah)\b[,.…]*\s*)*")
_REQUEST = re.compile(
    r"^\W*" + _LEAD +
    r"(?:(?:could|can|would|will|might) (?:you|we)\b|tell me\b|describe\b|"
    r"talk (?:me )?(?:about|through)\b|walk me through\b|think (?:back|about|of)\b|imagine\b|"
    r"recall\b|remember (?:a|an|the) |"
    r"i(?:'d|’d| would) (?:like|love|be interested)\b|let(?:'s|’s| us) (?:talk|turn|move|start|"
    r"begin|go)\b|please\b|i(?:'m|’m| am) (?:interested|curious)\b|"
    r"i want(?:ed)? to (?:ask|hear|know)\b|i wonder(?:ed)?\b|how about\b|what about\b)", re.I)
_MAIN_MARKER = re.compile(
    r"\b(?:(?:first|next|last|final|main|another|other) (?:question|thing|topic|area|section)s?|"
    r"mov(?:e|ing) on|brings? (?:me|us) to|turn(?:ing)? (?:now )?to|switch(?:ing)? (?:gears|topics)|"
    r"change (?:of )?(?:topic|subject)|the main thing|i(?:'m|’m| am) going to ask you|"
    r"(?:now|next) i(?:'d|’d| would) like to|ask you what i ask everyone)\b", re.I)
_FILLER_IN_NAME = re.compile(r"\b(?:um+|uh+|erm|er)\b[,.…]*\s*", re.I)
_NAME_LEAD = re.compile(
    r"^\W*(?:(?:so|and|but|okay|ok|right|well|now|then|just|maybe|also|great|yeah|yes|alright|"
    r"mm-hmm|mm+|mhm|oh|ah|like|i guess)\b[,.…]*\s*|"
    r"to (?:start|begin)(?: (?:us )?(?:off|with))?[,.]?\s*|"
    r"(?:just )?(?:to )?before we (?:move on|go on|finish)[,.]?\s*)+",
    re.I)
#: A word or a run of two or three said again at once: the speaker restarting
#: ("Which, which plots", "what a what a plot", "your, your your analysis").
_REPEAT = re.compile(r"\b(\w[\w'’]*(?:[ ,]+\w[\w'’]*){0,2}?)(?:(?:[ ,]+|-)\1\b)+", re.I)
#: "like", "you know" or "I mean" between commas, or opening the text before one: a
#: filler ("whether, like, it helped", "that, you know, you can"). Not "what did you
#: like, and ...", where it is the verb.
_LIKE_FILLER = re.compile(r"(?:,\s*|^\s*)(?:like|you know|i mean)\s*,\s*", re.I)
_ASKS = (r"(?:what|how|why|when|where|which|who|whose|do|does|did|are|is|was|were|would|could|"
         r"can|will|have|has|had)")
#: A question tag at the end of a statement ("..., isn't it?", "..., right?").
_TAG = re.compile(r",\s*(?:(?:\w+n['’]t|is|are|do|does|did|was|were|will|would|can|could) "
                  r"(?:it|you|they|he|she|we|there|that|i)|right|yeah|no|okay|ok)\W*$", re.I)
#: A question word that asks ("what do", not the "what" of "that's what you want"), or
#: a verb before its subject, inside a sentence.
_ASKS_INSIDE = re.compile(
    r"\b(?:what|how|why|where|which|whom?)(?:['’]s)? (?:do|does|did|are|is|was|were|would|"
    r"could|can|will|have|has|about|else|kind|sort|made|makes|happened)\b|"
    r"\b(?:do|does|did|are|is|was|were|would|could|"
    r"can|will|have|has|had|should)(?:n't|n’t)? (?:you|we|they|he|she|it|there|i|that|this|"
    r"these|those|your|any)\b", re.I)
#: A sentence that opens asking, after the lead-ins and a short preamble or two ("So,
#: um, how ...", "Same scale, 0 to 10, how confident ...", "Any thoughts on ...?").
_OPENS_ASKING = re.compile(r"^\W*" + _LEAD + r"(?:[^,?]{0,30},\s+){0,2}(?:" + _ASKS +
                           r"|any|anything|anyone|anybody)\b", re.I)
#: A question begun, dropped and begun again: the words before the comma say
#: nothing, and a question starts after it ("How, what did you say", "did you, were
#: you able to", "Do you think that it, would you want a written plan").
_RESTART = re.compile(r"^([^,]{0,40}),\s+(?=(?:" + _ASKS + r"|so|if)\b)", re.I)
#: Words broken off at the start of a turn ("And-and your-- So, you said ..."), or
#: the dash of a turn that cuts in ("-those sessions ...").
_CUT_IN = re.compile(r"^\s*(?:[^.?!\n]{0,40}?--|[-–—]+)\s*")
#: Words after which a question is not finished: a name never ends on one. (Not the
#: prepositions: "which notes to look at", "who did you turn to" end on theirs.)
_OPEN_END = frozenset("""
a an the and or but if than your my our their his her its like so because whether
""".split())
#: Verbs that carry no topic: a name whose only words past the stop words are these
#: ("Do you think that it") says nothing.
_LIGHT_VERBS = frozenset("think know say mean guess want get go like see feel".split())
_NAME_REQUEST = re.compile(
    r"^(?:(?:could|can|would|will) you (?:please )?(?:tell me|describe|talk (?:me )?(?:about|through)|"
    r"say)(?: (?:a (?:little|bit)|a little bit|something|more))?(?: (?:about|of))?|"
    r"(?:please )?tell me(?: (?:a (?:little|bit)|something|more))?(?: about)?|"
    r"(?:please )?describe|i(?:'d|’d| would) (?:like|love) (?:you )?to (?:ask|hear|know)(?: (?:you )?about)?|"
    r"i want(?:ed)? to ask you(?: about)?|i wonder(?:ed)?(?: if| whether)?|"
    r"(?:that |this )?brings? (?:me|us) to|(?:moving|move) on to|(?:turning|turn) (?:now )?to|"
    r"(?:my|the) (?:first|next|last|final|main) question(?: (?:is|would be|will be))?"
    r"(?: about| whether| if)?|"
    r"let(?:'s|’s| us) (?:talk about|move on to|turn to))\s+", re.I)
#: "for me" said to the interviewer's request, opening or closing what it asks ("describe
#: for me how ...", "describe that first session for me"), once the request is taken off.
_REQUEST_ADDRESSEE = re.compile(r"^(?:for|to) (?:me|us)\b[,]?\s*|,?\s+for (?:me|us)(?=\W*$)",
                                re.I)

_STOP = frozenset("""
a an the and or but if of to in on at for with about as by from into over after before
is are was were be been being am do does did have has had having i me my mine you your
yours he him his she her they them their we us our it its this that these those there here
what which who whom whose when where why how not no so than too very can could would should
will shall may might must just then now also any some all each more most other such only own
same up down out off again further once um umm uh er erm ah oh mm hmm yeah okay ok right well
like really actually kind sort bit little lot
""".split())


def _words(text: str) -> list[str]:
    return [w.lower().replace("’", "'") for w in _WORD.findall(text)]


def _last_words(parts: list[str]) -> str:
    """The end of ``" ".join(parts)`` that :func:`ends_with_abbreviation` reads: its last
    two words (an abbreviation is inside one; an initial's title is the word before)."""
    last = parts[-1]
    if len(parts) == 1 or len(last.split(None, 1)) > 1:
        return last
    return parts[-2] + " " + last


def _sentences(text: str) -> list[str]:
    """The sentences of ``text``. A sentence joined from many pieces ("Mr. A. ...
    Mr. A. ...") is kept as its pieces until the end, and only its last words are
    checked for an abbreviation: checking (and growing) the whole sentence at each
    piece was quadratic in its length."""
    out: list[list[str]] = []
    for piece in _SENTENCE_END.split(text.strip()):
        piece = piece.strip()
        if not piece:
            continue
        if out and ends_with_abbreviation(_last_words(out[-1]), piece):  # "Mr. A. to supervision?" is one
            out[-1].append(piece)
        else:
            out.append([piece])
    return [" ".join(parts) for parts in out]


def _is_question(sentence: str) -> bool:
    return sentence.rstrip(" \"'”’)]").endswith("?") or bool(_REQUEST.match(sentence))


def _asks(sentence: str) -> bool:
    """Whether a sentence asks: it opens with a question word or a request ("How many
    drinks ...?", "Tell me about ..."), or has a question word or a verb before its
    subject in it ("..., but for the filtering are there any other ways?"); not a
    statement that only ends on a question mark or a tag ("So, maybe around 20 drinks
    a week?", "Yeah, that makes sense?", "..., isn't it?": a reflection or a check the
    participant confirms)."""
    return bool(_OPENS_ASKING.match(sentence) or _REQUEST.match(sentence)
                or _ASKS_INSIDE.search(_TAG.sub("", sentence)))


def question_core(text: str) -> str:
    """The part of a prompt that asks: from its first question or request sentence
    to its last. A prompt with none (a reflection, a task) is kept whole."""
    sents = _sentences(text)
    flags = [_is_question(s) for s in sents]
    if not any(flags):
        # a statement: from the sentence that moves on ("That brings me to ..."),
        # without the backchannels before it
        marked = [i for i, s in enumerate(sents) if _MAIN_MARKER.search(s)]
        kept = sents[marked[0]:] if marked else [s for s in sents if not _backchannel(s)]
        return " ".join(kept or sents)
    first = flags.index(True)
    last = len(flags) - 1 - flags[::-1].index(True)
    return " ".join(sents[first:last + 1])


#: The name of an area whose question leaves no words once cleaned.
UNTITLED_AREA = "Untitled area"
#: The name of an area whose question is redaction marks alone ("XX XX?", each word two
#: or more x's): the marks would read as a name and say nothing; the team names it in
#: protocol.yaml.
REDACTED_AREA = "Redacted question"


def _clean_spoken(text: str) -> str:
    """A question as a name shows it: without the words broken off at the start of
    the turn, fillers and words said twice ("Which, which particular plots" ->
    "Which particular plots")."""
    text = _CUT_IN.sub("", text)
    text = _FILLER_IN_NAME.sub("", text)
    text = _LIKE_FILLER.sub(lambda m: " " if m.group(0).lstrip()[:1] == "," else "", text)
    text = _REPEAT.sub(r"\1", text)
    return " ".join(text.split())


def _without_vocative(text: str) -> str:
    """The question without the participant's name it opens with ("Jordan, what
    did ..." -> "what did ..."), ends on or says between commas ("..., Bob?", "...,
    Mrs. Smith, ..."): a name says whom the interviewer asked, not what,
    and a domain name must not carry it. A word counts as a name when it is a given
    name of the de-identification list (``pipeline/data/first_names.txt``) or a
    redaction mark ("XX"); any other word before a comma may be the topic
    ("Supervision, was it any help?") and stays."""
    from .deidentify import first_names

    def is_name(word: str) -> bool:
        return bool(REDACTION_MARK.match(word)) or (
            word[:1].isupper() and word.casefold() in first_names())

    m = re.match(r"^([A-Za-z][\w'’-]*),\s+(\S.*)$", text, re.S)
    if m and is_name(m.group(1)):
        text = m.group(2)
    # the name it ends on, or says between commas: "What brings you here, Bob",
    # "Let me ask you this, Bob, what ...", "How are things, Mrs. Smith"
    text = _TITLED_VOCATIVE.sub(lambda t: t.group(1), text)
    return _VOCATIVE.sub(lambda v: v.group(1) if is_name(v.group(2)) else v.group(0), text)


#: ", Bob" at the end of a question or between commas (the name is checked apart).
_VOCATIVE = re.compile(r"(,)\s+([A-Za-z][\w'’-]*)(?=\s*(?:[,?.!…]|$))(?:\s*,(?=\s))?")
#: ", Mrs. Smith": a title and a capitalised word, at the end or between commas.
_TITLED_VOCATIVE = re.compile(r"(,)\s+(?:Mr|Mrs|Ms|Miss|Mx|Dr)\.?\s+[A-Z][\w'’-]*"
                              r"(?=\s*(?:[,?.!…]|$))(?:\s*,(?=\s))?")


#: A question broken off after its first words: "..., do you", "... or are there".
#: After a comma or a conjunction only: "How often do you do it" ends on its verb
#: and object, which a space alone before them took for a question begun again.
_BROKEN_OFF = re.compile(r"(?:,\s*|\s+(?:and|or|but)\s+)" + _ASKS +
                         r"\s+(?:you|we|they|it|there|i)\W*$", re.I)


def _trim_open_end(text: str) -> str:
    """Drop the words a question cannot end on (``_OPEN_END``: "... whether
    your, like") and a question broken off after its first words ("..., do you"),
    with the punctuation left before them, keeping at least two words."""
    while True:
        words = text.split()
        if len(words) > 3 and _BROKEN_OFF.search(text):
            text = _BROKEN_OFF.sub("", text)
        elif len(words) > 2 and (_words(words[-1]) or [""])[-1] in _OPEN_END:
            text = " ".join(words[:-1])
        else:
            return text.rstrip(" ,;:-–")


def area_name(question: str, max_words: int = 12) -> str:
    """A readable name from a question's own words: its first question sentence
    (or, when none asks, its first sentence that says something) without lead-ins
    ("So, um,", "I guess the first question would be", "Could you tell me about",
    with the "for me" of "Can you describe ... for me?"), fillers, restarts, a
    participant's name and the question mark, cut at a clause boundary after about
    ``max_words`` words and never on a word a question cannot end on ("the", "for",
    "like"). A question of redaction marks alone is
    :data:`REDACTED_AREA`."""
    return _named(question, max_words)[0]


def _named(question: str, max_words: int) -> tuple[str, bool]:
    """:func:`area_name`'s name, and whether the sentence it comes from asks
    (:func:`_asks`; False when no sentence is a question)."""
    from .naming import strip_transcriber_notes  # "(laughs)" is no part of a name

    question = " ".join(strip_transcriber_notes(question).split()) or question
    sents = _sentences(question) or [question]
    asked = _asked(sents)

    def clean(sentence: str) -> str:
        text = _clean_spoken(sentence)
        text = _NAME_LEAD.sub("", text).strip()
        while (m := _RESTART.match(text)) and not _has_content(m.group(1)) \
                and len(_words(text[m.end():])) >= 2:
            text = _NAME_LEAD.sub("", text[m.end():]).strip()
        text = _without_vocative(text)
        text = _NAME_LEAD.sub("", text).strip()
        stripped = _NAME_REQUEST.sub("", text, count=1).strip()
        if stripped != text:
            # whom the request was made to goes with it: "Can you describe that first
            # session for me?" names "That first session", not "... for me"
            stripped = _REQUEST_ADDRESSEE.sub("", stripped).strip()
        if len(_words(stripped)) >= 2:
            text = stripped
        return text.strip(" \t\n\"'“”‘’,").rstrip("?.!…,;: ").strip()

    if asked:
        text = clean(asked[0])
    else:
        said = [clean(s) for s in sents]
        text = next((t for t in said if _has_content(t) and len(_words(t)) >= 3),
                    said[0] if said else "")
    words = text.split()
    if len(words) > max_words + 3:
        head = " ".join(words[:max_words + 3])
        floor = len(" ".join(words[:3]))
        # the latest clause boundary whose words make a name (a cut that leaves "Do
        # you think that it" or ends on "of the" is not one): punctuation first,
        # then a conjunction that joins two questions ("... in your work or have you")
        good = []
        for marks in (r",|;| -| –", r" (?:or|and|but) "):
            cuts = sorted({m.start() for m in re.finditer(marks, head) if m.start() >= floor},
                          reverse=True)
            good += [c for c in cuts if _has_content(head[:c])
                     and (_words(head[:c]) or [""])[-1] not in _OPEN_END]
        if good:
            text = head[:good[0]]
        else:
            text = _trim_open_end(" ".join(words[:max_words])) + "…"
    text = _trim_open_end(text.rstrip(" ,;:-–")) if not text.endswith("…") else text
    asks = bool(asked) and _asks(asked[0])
    words = _words(text)
    if words and all(REDACTION_MARK.match(w) for w in words):
        return REDACTED_AREA, asks
    return ((text[:1].upper() + text[1:]) if text else UNTITLED_AREA), asks


def _has_content(text: str) -> bool:
    """Whether ``text`` has a word beyond the stop words, the verbs that carry no
    topic ("Do you think that it" has none) and redaction marks ("XX XX": a
    question redacted in the transcript says nothing a name could carry)."""
    return any(w not in _STOP and w not in _LIGHT_VERBS and len(w) > 2
               and not REDACTION_MARK.match(w) for w in _words(text))


_FALSE_START = re.compile(r"^\W*(\w[\w'’]*)(?:\s+(\w[\w'’]*))?\s*,")


def _false_start(name: str) -> bool:
    """One or two words that say nothing, then a comma: "For, how did your, ..."."""
    m = _FALSE_START.match(name)
    return bool(m) and all(w.lower() in _STOP for w in m.groups() if w)


def _name_defects(name: str) -> int:
    """How far an area name falls short of a readable one: no word that says
    something (2); cut short ("…"), ending on a word a question cannot end on, a
    word said twice, a false start (:func:`_false_start`) (1 each); no words at all
    (10). A question of redaction marks alone (:data:`REDACTED_AREA`) counts as one
    with no word that says something: the better wording of the two is taken."""
    if name == UNTITLED_AREA:
        return 10
    if name == REDACTED_AREA:           # says no more than a question with no content
        return 2
    words = _words(name)
    return (2 * (not _has_content(name)) + name.endswith("…")
            + bool(words and words[-1] in _OPEN_END) + bool(_REPEAT.search(name))
            + _false_start(name))


def _backchannel(text: str) -> bool:
    words = _words(text)
    return (not words or len(words) <= 6) and "?" not in text and \
        all(w in _BACKCHANNEL for w in words)


_BACKCHANNEL = frozenset("""
mm mmm mhm hm hmm mm-hmm mm-hm mhmm uh-huh uh huh um umm uhm er erm ah oh ooh wow yeah yea
yes yep yup ya right okay ok sure exactly totally absolutely true indeed alright gotcha i
see got it good great fine cool really interesting laughs laugh pause sighs
""".split())

# --- Frame and probe patterns ---------------------------------------------------

_BACKGROUND_Q = re.compile(
    r"\bhow long (?:have )?(?:you(?:'ve|’ve)?|has (?:s?he|they)) (?:been )?(?:practi[sc]|work|"
    r"in (?:practice|the field|this (?:field|role|job))|qualified|licensed|a |an )|"
    r"\bhow many years\b|\byears? (?:of|in) (?:practice|experience|the field)\b|"
    r"\byour (?:background|theoretical (?:orientation|approach)|orientation|current (?:role|"
    r"position|job|post)|job title|age|qualifications?|professional (?:background|training))\b|"
    r"\bhow old (?:are you|you are)\b|\bwhat age (?:are you|you are)\b|"
    r"\bhow long (?:have |had )?(?:you(?:'ve|’ve|'d|’d)?|has (?:s?he|they)) (?:been|were|was) "
    r"(?:in (?:therapy|counsel+ing|treatment|psychotherapy|analysis|care|recovery)|"
    r"seeing (?:your|a|the|him|her|them)\b|(?:having|getting|receiving|attending|going to) "
    r"(?:therapy|counsel+ing|treatment|sessions))|"
    r"\bwhere (?:did|do) you (?:train|work)\b|"
    r"\bwhat (?:was|is) your (?:training|discipline|profession)\b|"
    r"\bwhere you are in your (?:training|course|studies)\b|\byour training so far\b|"
    r"\bwhat (?:course|programme|program|year) are you (?:on|in)\b|"
    r"\byour (?:current )?(?:clinical )?placement\b|"
    r"\b(?:a bit|a little|a little bit|something) about (?:you|yourself)\b|"
    r"\bwhat do you do (?:for (?:a living|work)|professionally)\b|\bintroduce yourself\b", re.I)
_CLOSING_Q = re.compile(
    r"\banything\b[^.?!]{0,40}?\b(?:add|mention|say before|haven'?t (?:asked|covered|touched|"
    r"talked)|have not (?:asked|covered|touched)|didn'?t ask|did not ask|(?:we|i) (?:missed|"
    r"left out))\b|\bany (?:final|last|closing|other) (?:thoughts|comments|words|reflections)\b|"
    r"\banything you(?:'d|’d| would)? (?:like|want) to ask me\b", re.I)
#: "Anything else?" with nothing after it but the wish to say it ("Is there anything
#: else you'd like to say?", "Anything else you want to tell me?"): in the last quarter
#: of an interview it closes it (:func:`_frame_kind`); earlier it is a probe.
_ANYTHING_ELSE = re.compile(
    r"^\W*" + _LEAD + r"(?:(?:is|was) there |(?:do|have) you (?:have |got )?)?anything else"
    r"(?: (?:at all|that|which))?(?: (?:you|we)(?:'d|’d| would)? (?:like|want|wish|care|need) to "
    r"(?:say|tell (?:me|us)|share|add|mention|raise|talk about|bring up|ask(?: me| us)?))?"
    r"(?: (?:before we (?:finish|stop|end|close|wrap up)|today|at all))?\W*$", re.I)
_COURTESY_TURN = re.compile(
    r"\b(?:record(?:ing|er)?|transcri(?:ption|bing|ber))(?:'s|’s| is| are)? "
    r"(?:going|running|on|started|working|rolling)\b|\b(?:we(?:'re|’re| are)|that(?:'s|’s| is)|"
    r"it(?:'s|’s| is)|i(?:'m|’m| am)) (?:now )?(?:recording|transcribing)\b|"
    r"\b(?:stop|end|turn off|switch off|pause) the (?:recording|recorder|transcription)\b|"
    r"\bcan you (?:hear|see) me\b|\bconsent(?: form)?\b|\binformation sheet\b|"
    r"\bthank(?:s| you)\b|\bappreciate (?:you|it|your)\b|"
    r"^\W*(?:hi|hiya|hey|hello|good (?:morning|afternoon|evening)|welcome|nice to (?:meet|see) "
    r"you)\b|"
    r"\b(?:good|nice|lovely|great) (?:place|point) to (?:end|finish|stop|wrap up)\b|"
    r"\b(?:that(?:'s|’s| is)|those are) (?:all|it for) (?:my|the) questions\b", re.I)
#: A question that asks leave to record, or about the consent form: the frame's
#: opening itself, even when every interview asks it ("We're recording now, is that
#: okay?", "Are you okay with me recording?", "Any questions about the consent form?").
#: A courtesy turn is frame only tentatively (its core may be the first protocol
#: question); this one is not, and asked in most cases it became a content domain.
_CONSENT_Q = re.compile(
    r"\b(?:okay|ok|alright|all right|happy|fine|comfortable|mind)\b[^.?!]{0,30}?"
    r"\b(?:record(?:ing|ed)?|transcrib(?:e|ed|ing))\b|"
    r"\b(?:record(?:ing|ed)?|transcrib(?:e|ed|ing))\b[^.?!]{0,30}?"
    r"\b(?:okay|ok|alright|all right|fine)\b|"
    r"\bconsent(?: form)?\b|\binformation sheet\b|\bcan you (?:hear|see) me\b", re.I)
_PROBE = re.compile(
    r"^\W*" + _LEAD + r"(?:(?:can|could|would) you (?:say|tell me|talk|explain|expand)"
    r"(?: (?:a (?:bit|little)|a little bit|some(?:thing)?))? more\b|tell me more\b|"
    r"(?:what|how) do you mean\b|how did (?:that|it|this) (?:feel|make you feel)\b|"
    r"what was (?:that|it|this) like\b|(?:and )?(?:then what|what happened (?:next|then))\W*$|"
    r"why(?: (?:is|was) that| do you think| not)?\W*$|how so\W*$|in what way\W*$|"
    r"(?:can|could) you give (?:me )?an example\b|for example\W*$|such as\W*$|"
    r"keep (?:going|talking)\b|go on\b|carry on\b|what (?:are|were) you thinking\b|"
    r"what(?:'s|’s| is) going through your (?:mind|head)\b|say more\b|anything else\W*$|"
    r"what did you do(?: (?:then|next|about it|with (?:that|it)))?\W*$|how was that\W*$|"
    r"what happened (?:when you did|after that|then|next)\W*$)", re.I)
#: What makes a question a feeling or elaboration probe: it asks how something felt,
#: how the participant took it, what happened, or for more.
_PROBE_ASKS = frozenset("""
feel feels felt feeling feelings react reacted reaction respond responded response happen
happens happened happening mean meant more expand elaborate example experience experienced
""".split())
#: Words that name no topic in such a question: verbs of saying and taking in, and a
#: time or moment ("at the time", "in that moment", "at the end of it") that refers
#: back as "that" does.
_PROBE_NEUTRAL = frozenset("""
say saying said tell telling told talk talking explain describe hear hearing heard think
thinking thought make made find found go going went come came get got time moment
end beginning start
""".split())
#: Someone other than the participant as the subject: the question asks about them.
_OTHER_SUBJECT = frozenset("he she they".split())
#: The pronouns that refer back to what the participant just said.
_REFERS_BACK = frozenset("that it this those these them then".split())


#: A turn that recalls what the participant said earlier ("You said there were times
#: you held it back. Could you say a bit about those?"): its "those" is what it recalls.
_CALLBACK = re.compile(
    r"\b(?:you(?:'ve|’ve| have)? (?:said|mentioned|told me|talked about|spoke about|described|"
    r"brought up)|you were (?:saying|talking about)|earlier|(?:going|coming) back to)\b", re.I)


def _generic_probe(core: str, text: str = "") -> bool:
    """Whether a question is a generic probe by what it names: a feeling or
    elaboration question (:data:`_PROBE_ASKS`) or one that refers back
    (:data:`_REFERS_BACK`), whose other words are stop words and words that name
    no topic (:data:`_PROBE_NEUTRAL`). "How did you feel about that?", "How was it
    for you?", "What did that feel like?", "What happened then?" and "How did you
    feel about him telling you that?" name nothing but what was just said, and
    were asked after a story in nearly every interview: as a probe list missed
    them, they made a domain of their own that mixed the feelings about every
    story. "How did you feel about your therapist's disclosure?" names its
    subject, and is a main question; so is "And how did she respond?", which asks
    about someone else (a client, a parent) as a protocol question does, and a
    question whose turn (``text``) recalls what it refers to (:data:`_CALLBACK`)."""
    if text and _CALLBACK.search(text):
        return False
    words = _words(core)
    if not words or len(words) > 12 or not any(_is_question(s) for s in _sentences(core)):
        return False
    if any(w.split("'")[0] in _OTHER_SUBJECT for w in words):
        return False
    if not any(w in _PROBE_ASKS or w in _REFERS_BACK for w in words):
        return False
    return all(w in _STOP or w in _PROBE_ASKS or w in _PROBE_NEUTRAL for w in words)

#: A negation: "not", "never", "no", "didn't", "wasn't", "can't".
_NEGATION = frozenset("not never no nothing none nobody neither nor cannot".split())
#: "or not" asks both ways ("Did it help or not?", "whether or not"): no polarity.
_OR_NOT = re.compile(r"\bor not\b", re.I)
#: Words that say something went badly: the antonyms of a question about what helped.
_HINDERING = frozenset("""
unhelpful wrong bad worse worst harmful hurtful hinder hinders hindered hindering negative
damaging unsupportive unwelcome inappropriate ineffective useless counterproductive
""".split())
#: Words that say something went well.
_HELPING = frozenset("""
help helps helped helping helpful good better best useful positive beneficial benefit
benefited valuable supportive
""".split())


def _polarity(text: str) -> int:
    """-1 for a question about what went badly (a negation, or a word such as
    "unhelpful", "wrong", "hindering"), 1 for one about what went well ("helped",
    "helpful", "good") and says no negation, 0 for any other. CQR protocols pair
    such questions ("a disclosure that helped", "one that did not"), and a sentence
    embedder reads the words they share and hardly the "not": "Was there a time
    something she shared didn't help?" was as near "a time your therapist shared
    something that helped" as the team's "did not help" question."""
    words = _words(_OR_NOT.sub(" ", text))
    if any(w in _NEGATION or w.endswith("n't") or w in _HINDERING for w in words):
        return -1
    return 1 if any(w in _HELPING for w in words) else 0


_ANCHORS = {
    "background": ("How long have you been practising?",
                   "Could you tell me a bit about your background and training?",
                   "How many years of experience do you have in this role?",
                   "What is your current job or role?", "How old are you?"),
    "closing": ("Is there anything else you would like to add?",
                "Is there anything I haven't asked about that you want to mention?",
                "Thank you for your time, that is the end of the interview."),
    "opening": ("Thank you for agreeing to take part in this interview.",
                "Is the recording working? Can you hear me?",
                "Before we start, are you happy to give your consent to be recorded?"),
}
_PROBE_ANCHORS = ("Can you say more about that?", "How did that feel?",
                  "What was that like for you?", "What do you mean by that?",
                  "Could you give me an example?", "And then what happened?")
_BACKGROUND_ANCHORS = ("I have been practising for ten years.",
                       "I trained as a psychologist and qualified in 2010.",
                       "I work in private practice, mostly with adults.",
                       "I am forty-five years old.")
_SMALL_TALK_ANCHORS = ("Thank you, it was nice talking to you.", "Good luck with the study.",
                       "You're welcome, happy to help.", "Can you hear me? Yes, I can hear you.",
                       "Thanks for having me.")
#: what a participant says to the opening's consent and recording questions
_CONSENT_ANCHORS = ("Yes, I read the information sheet and signed the consent form.",
                    "Yes, I'm happy for you to record.")

_NUMBER = (r"(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
           r"fifteen|twenty|thirty|forty|fifty|a few|a couple of|several|many)")
_BACKGROUND_CONTENT = re.compile(
    r"\b(?:practi[sc]ing|practi[sc]ed|qualified|licensed|trained|training|experience|working as|"
    r"worked as|in practice|career)\b[^.?!]{0,60}?\b" + _NUMBER + r"[\s-]*(?:-?ish )?years?\b|"
    r"\b" + _NUMBER + r"[\s-]*years?\b[^.?!]{0,40}?\b(?:practi[sc]|qualified|licensed|experience|"
    r"as an? |in (?:the|this) (?:field|role|job))|"
    r"\bi (?:trained|qualified|retrained|studied)\b|\bmy (?:training|orientation|background) "
    r"(?:is|was)\b|\bi(?:'m|’m| am) (?:a|an) [\w-]+(?: [\w-]+)? (?:therapist|psychologist|"
    r"counsel+or|psychotherapist|analyst|psychiatrist|nurse|doctor|social worker|clinician|"
    r"engineer|scientist|teacher|manager|student)\b|\byears old\b|"
    r"\bi work (?:in|at|for|as) (?:a |an |the )?(?:private practice|practice|clinic|hospital|"
    r"service|university|company|team)", re.I)
#: "How long ...?" asks for a duration, and an answer that opens with a number of years
#: ("About ten years now", "Eight years, give or take") gives one. Where the answers are
#: asked at all (_frame_kind: in the first quarter of an interview, or for a question
#: close to the background anchors), such a question asks how long someone has done
#: their work ("how long you have supervised trainees"), which is background however
#: the question names the work. Not "two years ago", which dates an event.
_HOW_LONG = re.compile(r"\bhow long\b", re.I)
_DURATION_ANSWER = re.compile(
    r"^\W*(?:(?:about|around|nearly|almost|over|only|just|roughly|maybe|probably|oh|um|uh|"
    r"er|well|so|hmm|i'?d say|it'?s been|it has been|i think)[\s,.…-]+)*" + _NUMBER
    + r"[\s-]*(?:-?ish )?(?:years?|yrs)\b(?![^.?!]{0,12}\bago\b)", re.I)
_COURTESY_PHRASES = re.compile(
    r"\bthank(?:s| you)(?: (?:so|very) much| again| too)?(?: for (?:having me|asking|"
    r"the (?:interview|conversation|questions|opportunity)|your time))?\b|"
    r"\bgood luck(?: with (?:the|your) (?:study|research|project|thesis|dissertation|work))?\b|"
    r"\b(?:you(?:'re|’re| are)|you are very) welcome\b|\b(?:my|a) pleasure\b|"
    r"\bhappy to (?:help|do it|take part|have helped)\b|\bglad to (?:help|talk|take part)\b|"
    r"\b(?:it was |it's been |it has been )?(?:good|nice|great|lovely|interesting) "
    r"(?:to talk(?: about it)?|talking(?: to you)?|to meet you|meeting you)\b|"
    r"\b(?:bye|goodbye|take care|all the best|see you)\b|\bcan you hear me\b|\bi can hear you\b|"
    r"\bno problem\b|\bany time\b", re.I)


def is_small_talk(text: str, max_words: int | None = None) -> bool:
    """Whether a participant's segment is courtesy and little else ("Not at all, it was
    good to talk about it."), by the phrases the run's small-talk rule looks for (the
    run also compares short segments with anchor phrases); ``max_words`` defaults to
    ``ProtocolConfig.small_talk_max_words``. Pre-coding sets such a segment apart as
    the run does."""
    if max_words is None:
        max_words = ProtocolConfig.model_fields["small_talk_max_words"].default
    return _is_small_talk(text, max_words)


def _is_small_talk(text: str, max_words: int) -> bool:
    """Courtesy with at most a few other content words left ("Thank you. It was,
    um, good to talk about it, actually.")."""
    if len(_words(text)) > max_words or not _COURTESY_PHRASES.search(text):
        return False
    rest = [w for w in _words(_COURTESY_PHRASES.sub(" ", text)) if w not in _STOP]
    return len(rest) <= 2


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ConsensaError(f"the encoder returned an array of shape {x.shape}; expected "
                            "(texts, dimensions)")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _encode(encode: Encoder, texts: list[str]) -> np.ndarray:
    if not texts:
        return np.zeros((0, 1), dtype=np.float32)
    out = _unit_rows(encode(list(texts)))
    if out.shape[0] != len(texts):
        raise ConsensaError(f"the encoder returned {out.shape[0]} vectors for {len(texts)} texts")
    return out


def _group_sums(rows: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """The sum of ``rows`` per group (``group[i]`` in 0..n_groups-1), in one sparse
    product: linear in the rows, where a mask per group is rows x groups."""
    from scipy.sparse import csr_matrix

    onehot = csr_matrix((np.ones(len(group), np.float64), (group, np.arange(len(group)))),
                        shape=(n_groups, len(group)))
    return np.asarray(onehot @ rows.astype(np.float64))


def question_centres(protocol: Protocol, encode: Encoder) -> np.ndarray:
    """One unit row per area of ``protocol``: the normalised mean of its questions'
    vectors (zeros for an area without questions); what
    :func:`propose_domains_from_protocol` starts from when no segment answers a
    prompt."""
    questions = [q for a in protocol.areas for q in a.questions]
    vecs = _encode(encode, questions)
    out = np.zeros((len(protocol.areas), vecs.shape[1]), dtype=np.float32)
    at = 0
    for i, a in enumerate(protocol.areas):
        if a.questions:
            out[i] = vecs[at:at + len(a.questions)].mean(axis=0)
        at += len(a.questions)
    return _unit_rows(out)


def _max_similarity(vectors: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Each row's highest cosine to ``anchors`` (unit rows both); -inf without anchors."""
    if len(vectors) == 0 or anchors.size == 0:
        return np.full(len(vectors), -np.inf)
    return (vectors @ anchors.T).max(axis=1)


#: the most rows average linkage groups at once. Its distance matrix and tree take
#: time and memory in the square of the rows (8,000 prompts: 15 s and 0.8 GB; 30,000,
#: as a thousand interviews ask, would take minutes and 11 GB): above this, the
#: groups are found on a case-stratified sample and the other rows join them.
LINKAGE_MAX_ROWS = 4000

#: how many samples in all the rows are grouped on (:func:`_average_linkage_groups`)
LINKAGE_ROUNDS = 3


def _average_linkage_groups(vectors: np.ndarray, min_similarity: float, *,
                            cases: Sequence[str] | None = None,
                            max_rows: int | None = None,
                            rounds: int = LINKAGE_ROUNDS) -> np.ndarray:
    """Groups of an average-linkage (cosine) tree cut at ``1 - min_similarity``.

    More than ``max_rows`` (default :data:`LINKAGE_MAX_ROWS`) rows are grouped on a
    sample of that many (stratified by ``cases`` when given, so every case keeps its
    share; seeded, so a run repeats). Every other row joins the group whose centre
    is most similar when that similarity is at least ``min_similarity``, the bar the
    tree cut sets for a group's members. The rows that join none (a question asked
    in no sampled case) are grouped among themselves the same way, on a sample of
    their own while they are more than ``max_rows``, for at most ``rounds`` samples
    in all; a row still alone after the last is a group of its own.

    Why the bound: where nothing groups (answers that share no content, or 200,000
    random vectors), nearly every row joins none, and sampling again from what is
    left took 50 rounds of a 4,000-row tree and a pass over the rest each: 219 s, in
    the square of the rows. A group of m rows among N that none of three samples of
    4,000 touched is unlikely: (1 - 4,000/N)^(3m), under 1% for 25 rows among 50,000."""
    n = len(vectors)
    max_rows = LINKAGE_MAX_ROWS if max_rows is None else max(int(max_rows), 2)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    if n > max_rows:
        if rounds <= 0:
            return np.arange(n, dtype=np.int64)
        return _grouped_on_sample(vectors, min_similarity, cases, max_rows, rounds)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    dist = np.clip(pdist(vectors.astype(np.float64), metric="cosine"), 0.0, 2.0)
    dist = np.nan_to_num(dist, nan=1.0)
    link = linkage(dist, method="average")
    return fcluster(link, t=1.0 - min_similarity, criterion="distance").astype(np.int64) - 1


def _grouped_on_sample(vectors: np.ndarray, min_similarity: float,
                       cases: Sequence[str] | None, max_rows: int, rounds: int) -> np.ndarray:
    from .cluster import JOIN_BLOCK, centroids, join_nearest, stratified_sample

    n = len(vectors)
    case_arr = None if cases is None else np.asarray([str(c) for c in cases], dtype=object)
    if case_arr is not None:
        sample = np.sort(stratified_sample(case_arr, max_rows, seed=0))
    else:
        sample = np.sort(np.random.default_rng(0).choice(n, size=max_rows, replace=False))
    labels = np.full(n, -1, dtype=np.int64)
    labels[sample] = _average_linkage_groups(vectors[sample], min_similarity,
                                             max_rows=max(max_rows, len(sample)))
    k = int(labels.max()) + 1
    unit = _unit_rows(vectors)
    centres = centroids(unit[sample], labels[sample], k)
    rest = np.setdiff1d(np.arange(n), sample, assume_unique=True)
    for start in range(0, len(rest), JOIN_BLOCK):       # the rest join as outliers do
        block = rest[start:start + JOIN_BLOCK]
        group = np.full(len(block), -1, dtype=np.int64)
        join_nearest(unit[block], group, np.zeros(len(block), np.float32), centres,
                     min_similarity)
        labels[block] = group
    alone = np.flatnonzero(labels < 0)
    if len(alone):
        labels[alone] = k + _average_linkage_groups(
            vectors[alone], min_similarity,
            cases=None if case_arr is None else case_arr[alone], max_rows=max_rows,
            rounds=rounds - 1)
    return labels


def _centre(vectors: np.ndarray) -> np.ndarray:
    c = vectors.mean(axis=0)
    n = np.linalg.norm(c)
    return c / n if n > 0 else c


# --- Inference ------------------------------------------------------------------

#: ProtocolInference.turns: one row per interviewer/other turn, in case and turn order.
#: case_id str; turn_index int; role str; speaker str
#: kind str   "main" (opens its area), "follow_up" (a question in no area group, asked
#:            after an answer), "probe" (generic or short), "task" (a task/heading line
#:            that opens its area), "backchannel", "other" ('other' turn that sets no topic)
#: area_id int  the area the turn belongs to (-1: before any area)
#: frame_kind str  for prompts in a frame area: the part of the frame detected
#:                 ("opening"/"background"/"closing"), "frame" when the prompt is there
#:                 for another reason (a follow-up, a match to a given frame area);
#:                 "" for prompts outside the frame
#: question str    the prompt's core (see :func:`question_core`)
PROMPT_COLUMNS = ("case_id", "turn_index", "role", "speaker", "kind", "area_id", "frame_kind",
                  "question")


@dataclass(frozen=True)
class ProtocolInference:
    """What :func:`infer_protocol` returns.

    ``segment_area``, ``segment_prompt_turn``, ``segment_small_talk`` and
    ``segment_frame`` are aligned with the rows of the segments given:
    ``segment_area`` is the area (-1: the segment answers no prompt),
    ``segment_prompt_turn`` the turn_index of that prompt (-1: none),
    ``segment_small_talk`` flags courtesy segments, ``segment_frame`` segments in a
    frame area or small talk, ``segment_greeted`` segments that answer a prompt of
    the frame's opening (a greeting: ``frame_kind`` "opening" in ``turns``),
    ``segment_frame_similarity`` each segment's highest similarity to the frame's
    anchor phrases (small talk, background, consent; -inf without them).
    """

    protocol: Protocol
    turns: pd.DataFrame                   # PROMPT_COLUMNS
    segment_area: np.ndarray
    segment_prompt_turn: np.ndarray
    segment_small_talk: np.ndarray
    segment_frame: np.ndarray
    counts: Mapping[str, int] = field(default_factory=dict)
    segment_greeted: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    segment_frame_similarity: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass
class _Prompt:
    row: int                 # position in the sorted turns table
    case_id: str
    turn_index: int
    role: str
    speaker: str
    text: str
    position: float          # relative position of the turn in its case, 0..1
    core: str = ""
    kind: str = ""           # backchannel / other / task / question
    frame: str = ""
    tentative: bool = False  # a frame kind that a protocol question overrides
    courtesy: bool = False
    probe: bool = False
    short: bool = False
    marked: bool = False
    asks: bool = False       # has a question or request sentence (not only a reflection)
    vec: int = -1            # row in the core vectors
    group: int = -1          # area group (step 5)
    area: int = -1
    left: int = -1           # the area group it was taken out of (:func:`_split_apart`)
    after_frame: int = -1    # a question the file lacks: the frame area it was asked in
    filed: bool = False      # a frame area's follow-up that the team's file lists
    final_kind: str = ""


def infer_protocol(turns: pd.DataFrame, segments: pd.DataFrame, encode: Encoder,
                   config: ProtocolConfig, *, segment_vectors: np.ndarray | None = None,
                   given: Protocol | None = None) -> ProtocolInference:
    """The protocol (given, or inferred from the prompts) and the area of every
    prompt and segment. See the module docstring for the rules.

    ``segment_vectors`` (rows aligned with ``segments``, unit length) saves
    encoding the segments again; without it the segments' texts are encoded.
    """
    check_columns(turns, TURN_COLUMNS, "the turns table")
    check_columns(segments, SEGMENT_COLUMNS, "the segments table")
    if given is None and config.areas:
        given = protocol_from_specs(config.areas)
    if given is None and config.file is not None:
        given = load_protocol(config.file)
    ordered = turns.sort_values(["case_id", "turn_index"], kind="stable").reset_index(drop=True)
    prompts = _read_prompts(ordered, config)
    counts: Counter[str] = Counter()
    if given is None and not config.infer:
        for p in prompts:
            p.final_kind = p.kind if p.kind in ("backchannel", "other", "task") else "main"
        protocol = Protocol()
        counts["protocol_not_used"] = 1
        seg_prompt = _segment_prompts(segments, prompts, counts)
        return _result(protocol, prompts, segments, seg_prompt, np.zeros(len(segments), bool),
                       counts)

    # one call to the encoder for every prompt core and anchor
    cores = sorted({p.core for p in prompts if p.kind in ("task", "question")})
    anchor_texts = [t for kind in FRAME_KINDS for t in _ANCHORS[kind]]
    given_questions = [q for a in given.areas for q in a.questions] if given else []
    texts = cores + anchor_texts + list(_PROBE_ANCHORS) + list(_BACKGROUND_ANCHORS) + \
        list(_SMALL_TALK_ANCHORS) + given_questions
    vecs = _encode(encode, texts)
    core_vec = {c: i for i, c in enumerate(cores)}
    at = len(cores)
    anchor_vecs = {}
    for kind in FRAME_KINDS:
        anchor_vecs[kind] = vecs[at:at + len(_ANCHORS[kind])]
        at += len(_ANCHORS[kind])
    probe_anchor_vecs = vecs[at:at + len(_PROBE_ANCHORS)]
    at += len(_PROBE_ANCHORS)
    bg_anchor_vecs = vecs[at:at + len(_BACKGROUND_ANCHORS)]
    at += len(_BACKGROUND_ANCHORS)
    talk_anchor_vecs = vecs[at:at + len(_SMALL_TALK_ANCHORS)]
    at += len(_SMALL_TALK_ANCHORS)
    given_vecs = vecs[at:]
    # apart: an int8 embedder's vectors depend on the texts encoded with them, and
    # the cores' vectors name the areas
    consent_anchor_vecs = _encode(encode, list(_CONSENT_ANCHORS))
    qv = vecs[:len(cores)]
    for p in prompts:
        if p.core in core_vec:
            p.vec = core_vec[p.core]

    if segment_vectors is None:
        segment_vectors = _encode(encode, segments["text"].astype(str).tolist()) \
            if len(segments) else np.zeros((0, qv.shape[1] if qv.size else 1), np.float32)
    segment_vectors = np.asarray(segment_vectors, dtype=np.float32)
    if segment_vectors.ndim != 2 or len(segment_vectors) != len(segments) or \
            (len(segments) and segment_vectors.shape[1] != vecs.shape[1]):
        raise ConsensaError(f"segment_vectors has shape {segment_vectors.shape}; expected one "
                            f"row per segment ({len(segments)}) of the encoder's "
                            f"{vecs.shape[1]} dimensions")
    seg_prompt = _segment_prompts(segments, prompts, counts)
    seg_text = segments["text"].astype(str).tolist()
    seg_case = segments["case_id"].astype(str).tolist()
    # each segment's nearest anchor, for all segments in one product
    talk_sim = _max_similarity(segment_vectors, talk_anchor_vecs)
    bg_sim = _max_similarity(segment_vectors, bg_anchor_vecs)
    short = np.array([len(_WORD.findall(t)) <= config.small_talk_max_words for t in seg_text],
                     dtype=bool)
    small_talk = np.array(
        [bool(sh) and (_is_small_talk(t, config.small_talk_max_words)
                       or sim >= config.small_talk_similarity)
         for t, sh, sim in zip(seg_text, short, talk_sim)], dtype=bool)

    def background_share(ans: list[int], how_long: bool) -> float | None:
        """The share of the answer segments ``ans`` that describe a background (for a
        "how long" question, an answer that opens with a number of years does). The
        regular expression is the slow part, and only a few prompts need it (those
        _frame_kind asks about), so it is run on their answers alone."""
        if not ans:
            return None
        return float(np.mean([bg_sim[i] >= config.frame_similarity
                              or bool(_BACKGROUND_CONTENT.search(seg_text[i]))
                              or (how_long and bool(_DURATION_ANSWER.match(seg_text[i])))
                              for i in ans]))

    answers: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, (case, t) in enumerate(zip(seg_case, seg_prompt)):
        if t >= 0:
            answers[(case, int(t))].append(i)

    # a question asked in several interviews in the same words has one core, and so
    # one similarity to each frame anchor and one reading of its words (the frame
    # patterns, and whether it asks "how long")
    by_core: dict[int, tuple[dict[str, float], tuple[bool, bool, bool], bool]] = {}
    for p in prompts:
        if p.kind != "question":
            continue
        ans = answers.get((p.case_id, p.turn_index), [])
        if p.vec not in by_core:
            by_core[p.vec] = ({k: float((anchor_vecs[k] @ qv[p.vec]).max())
                               for k in FRAME_KINDS if anchor_vecs[k].size},
                              _frame_words(p.core), bool(_HOW_LONG.search(p.core)))
        sims, words, how_long = by_core[p.vec]
        p.frame, p.tentative = _frame_kind(p, sims, words,
                                           functools.partial(background_share, ans, how_long),
                                           config)
        if not p.frame and not p.marked:
            p.probe = bool(_PROBE.match(p.core) or _ANYTHING_ELSE.match(p.core)) \
                or _generic_probe(p.core, p.text) or (
                probe_anchor_vecs.size > 0 and
                float((probe_anchor_vecs @ qv[p.vec]).max()) >= config.probe_similarity)
    if given is not None:
        protocol = _assign_given(prompts, qv, given, given_vecs, config, counts)
    else:
        protocol = _infer_areas(prompts, qv, config, counts, answers=answers,
                                vecs=segment_vectors, small_talk=small_talk)
    _rehome_follow_ups(prompts, protocol, qv, answers, segment_vectors, small_talk, config,
                       counts)
    # the frame's own words, for what is asked and answered in it
    frame_answer_anchors = np.vstack([talk_anchor_vecs, bg_anchor_vecs, consent_anchor_vecs])
    segment_frame_sim = _max_similarity(segment_vectors, frame_answer_anchors)
    if given is not None:
        owner = np.array([a.area_id for a in given.areas for _ in a.questions], dtype=np.int64)
        frame_q = np.isin(owner, [a.area_id for a in given.areas if a.frame])
        _keep_frame_follow_ups(
            prompts, protocol, qv, answers, segment_vectors, small_talk, frame_answer_anchors,
            np.vstack([anchor_vecs[k] for k in FRAME_KINDS] + [given_vecs[frame_q]]),
            given_vecs[~frame_q], owner[~frame_q], config, counts)
    seg_frame_area = np.array([False] * len(segments), dtype=bool)
    prompt_area = {(p.case_id, p.turn_index): p.area for p in prompts}
    frame_ids = set(protocol.frame_ids)
    for i, (case, t) in enumerate(zip(seg_case, seg_prompt)):
        if t >= 0 and prompt_area.get((case, int(t)), -1) in frame_ids:
            seg_frame_area[i] = True
    # the closing's courtesies: a short answer there that thanks or wishes well is
    # said to the interview, whatever else it names ("Thank you for asking about
    # this, nobody ever asks the client."), and stays in the frame (small talk is
    # never moved); what a participant adds there without one can still move
    closing_ids = _closing_ids(protocol)
    courtesy = np.array([bool(short[i]) and not small_talk[i] and t >= 0
                         and prompt_area.get((case, int(t)), -1) in closing_ids
                         and bool(_COURTESY_PHRASES.search(seg_text[i]))
                         for i, (case, t) in enumerate(zip(seg_case, seg_prompt))], dtype=bool)
    if courtesy.any():
        counts["segments_closing_courtesy"] = int(courtesy.sum())
        small_talk = small_talk | courtesy
    counts["segments_small_talk"] = int(small_talk.sum())
    return _result(protocol, prompts, segments, seg_prompt, small_talk, counts,
                   frame=seg_frame_area | small_talk, frame_similarity=segment_frame_sim)


def _closing_ids(protocol: Protocol) -> set[int]:
    """The frame areas that close the interview: those after the last content area
    (an inferred protocol is in interview order; a team's file in its own, and
    :func:`_other_side_of_frame` reads it so too)."""
    content = [i for i, a in enumerate(protocol.areas) if not a.frame]
    if not content:
        return set()
    return {a.area_id for i, a in enumerate(protocol.areas) if a.frame and i > content[-1]}


def _read_prompts(ordered: pd.DataFrame, config: ProtocolConfig) -> list[_Prompt]:
    """The interviewer and 'other' turns, each with its core and first labels."""
    speaker_res = [re.compile(p, re.I) for p in config.prompt_speakers]
    sizes = ordered.groupby("case_id", sort=False)["turn_index"].transform("size").to_numpy()
    ranks = ordered.groupby("case_id", sort=False).cumcount().to_numpy()
    # what a prompt's words say, once per distinct wording: interviewers say the same
    # backchannels and follow-ups ("Mm-hm.", "Can you say more?") many times over
    read: dict[tuple[str, bool, str], dict[str, object]] = {}

    def labels(role: str, label_is_prompt: bool, text: str) -> dict[str, object]:
        core = question_core(text)
        if role == "other" and label_is_prompt:
            return {"core": core, "kind": "task" if core.strip() else "other"}
        if role == "other" and "?" not in text:
            return {"core": core, "kind": "other"}
        if _backchannel(text) or not core.strip():
            return {"core": core, "kind": "backchannel"}
        return {"core": core, "kind": "question", "marked": bool(_MAIN_MARKER.search(text)),
                "asks": any(_is_question(s) for s in _sentences(text)),
                "short": len(_words(core)) <= config.probe_max_words,
                "courtesy": bool(_COURTESY_TURN.search(text))}

    prompts: list[_Prompt] = []
    for row, (case, ti, role, speaker, text) in enumerate(zip(
            ordered["case_id"].astype(str).tolist(), ordered["turn_index"].tolist(),
            ordered["role"].tolist(), ordered["speaker"].astype(str).tolist(),
            ordered["text"].fillna("").astype(str).tolist())):
        if role not in ("interviewer", "other"):
            continue
        label_is_prompt = role == "other" and any(r.fullmatch(speaker.strip())
                                                  for r in speaker_res)
        key = (role, label_is_prompt, text)
        if key not in read:
            read[key] = labels(role, label_is_prompt, text)
        prompts.append(_Prompt(row, case, int(ti), role, speaker, text,
                               float(ranks[row]) / max(int(sizes[row]) - 1, 1), **read[key]))
    return prompts


#: frame prompts by position: a greeting or thank-you in the first quarter of an
#: interview opens it, in the last quarter closes it; in between it is conversation
_FRAME_EDGE = 0.25


def _frame_words(core: str) -> tuple[bool, bool, bool]:
    """Whether a question's core asks for a background, closes the interview, or asks
    "anything else?"."""
    return (bool(_BACKGROUND_Q.search(core)), bool(_CLOSING_Q.search(core)),
            bool(_ANYTHING_ELSE.match(core)))


def _frame_kind(p: _Prompt, sims: Mapping[str, float], words: tuple[bool, bool, bool],
                bg_share: Callable[[], float | None], config: ProtocolConfig
                ) -> tuple[str, bool]:
    """Which part of the interview frame a question prompt is ("" for none), and
    whether that is tentative: a courtesy turn or an anchor match on opening or
    closing stays a content prompt when its core turns out to ask a protocol
    question (step 5). ``sims`` holds the core's highest similarity to each kind's
    anchors, ``words`` :func:`_frame_words` of the core, ``bg_share()`` the share
    of its answers that describe a background (None without answers), asked for
    only where it decides."""
    share: list[float | None] = []

    def agrees() -> bool:
        if not share:
            share.append(bg_share())
        s = share[0]
        return s is not None and s >= config.frame_content_share and s > 0

    asks_background, closes, anything_else = words
    if p.position <= _FRAME_EDGE and _CONSENT_Q.search(p.core):
        return "opening", False
    if asks_background and (p.position <= 0.5 or agrees()):
        return "background", False
    if closes or (anything_else and p.position >= 1 - _FRAME_EDGE):
        return "closing", False
    best = max(sims, key=sims.get) if sims else ""
    if best and sims[best] >= config.frame_similarity:
        if best == "background" and (agrees() or share[0] is None):
            return "background", False
        if best == "opening" and p.position <= _FRAME_EDGE:
            return "opening", True
        if best == "closing" and p.position >= 1 - _FRAME_EDGE:
            return "closing", True
    if p.position <= _FRAME_EDGE and agrees():
        return "background", False
    if p.courtesy and p.position <= _FRAME_EDGE:
        return "opening", True
    if p.courtesy and p.position >= 1 - _FRAME_EDGE:
        return "closing", True
    return "", False


class _AnswerCentres:
    """Each area's *content centre*: the mean of the answers (small talk left out) to
    its main questions, in the cases other than the one asking (:meth:`centre`), so
    a long story cannot pull its own area towards itself."""

    def __init__(self, prompts: list[_Prompt], protocol: Protocol,
                 answers: Mapping[tuple[str, int], list[int]], vecs: np.ndarray,
                 small_talk: np.ndarray, config: ProtocolConfig) -> None:
        dim = vecs.shape[1]
        self.min_segments = config.min_centre_segments
        self.sums = {a.area_id: np.zeros(dim, np.float64) for a in protocol.areas}
        self.by_case: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
        self.sizes: Counter[int] = Counter()
        self.case_sizes: Counter[tuple[str, int]] = Counter()
        #: (area, case, segment row) of every answer counted
        self.members: list[tuple[int, str, int]] = []
        for p in prompts:
            if p.area in self.sums and p.final_kind in ("main", "task"):
                rows = [i for i in answers.get((p.case_id, p.turn_index), [])
                        if not small_talk[i]]
                if rows:
                    v = vecs[rows].sum(axis=0)
                    self.sums[p.area] += v
                    self.by_case[p.case_id][p.area] = self.by_case[p.case_id].get(p.area, 0) + v
                    self.sizes[p.area] += len(rows)
                    self.case_sizes[(p.case_id, p.area)] += len(rows)
                    self.members.extend((p.area, p.case_id, i) for i in rows)

    def centre(self, a: int, case: str) -> np.ndarray | None:
        """Area ``a``'s centre without the answers of ``case``; None when fewer than
        ``min_centre_segments`` answers are left."""
        if self.sizes[a] - self.case_sizes[(case, a)] < self.min_segments:
            return None
        rest = self.sums[a] - self.by_case[case].get(a, 0)
        n = float(np.linalg.norm(rest))
        return rest / n if n > 0 else None


def _rehome_follow_ups(prompts: list[_Prompt], protocol: Protocol, qv: np.ndarray,
                       answers: Mapping[tuple[str, int], list[int]], vecs: np.ndarray,
                       small_talk: np.ndarray, config: ProtocolConfig,
                       counts: Counter[str]) -> None:
    """A follow-up question whose answers say what other participants said to
    another area's main question opens that area (its probes and reflections go
    with it).

    An interviewer who asks a protocol question in words of their own ("And the
    first young person who dropped out, can you tell me about them?" where the
    others asked "Tell me about your first client who dropped out") is often too
    far from the area's wordings to be matched by the question alone, and the
    whole answer then lands in the area before it. The answers tell: an area's
    *content centre* is the mean of the answers to its main questions in the other
    cases (the case's own answers left out, so a long story cannot pull its own
    area towards itself; a frame area's centre is its background or greeting
    answers). A follow-up that asks something, with the answers of its
    block (it and the probes and reflections after it) at least ``rehome_margin``
    more similar to another content area's centre than to its own area's, at
    least as similar to it as every case's own answers there are (content no area
    covers is not pushed into the nearest one), and
    whose question is no further from that area's questions than from its own
    area's, opens that area, when the case has not reached it yet: an interview
    moves on through its protocol, it does not come back to an area it covered.
    A follow-up that the team's file lists under a frame area stays there.
    """
    if config.rehome_margin >= 2 or not len(vecs):
        return
    content = [a.area_id for a in protocol.areas if not a.frame]
    if not content or len(protocol.areas) < 2:
        return
    # every area has a centre (a follow-up after a background question can open a
    # content area), but only content areas are opened: nothing moves into the frame
    centres = _AnswerCentres(prompts, protocol, answers, vecs, small_talk, config)
    sums, by_case, centre = centres.sums, centres.by_case, centres.centre

    # how close a case's own answers to an area's main questions come to what the
    # other cases answered there (the least close case): a block that is not as
    # close is no answer to that area, however much closer than to its own
    fit: dict[int, float] = {}
    for a in content:
        sims = []
        for case, parts in by_case.items():
            c = centre(a, case)
            n = float(np.linalg.norm(parts[a])) if a in parts else 0.0
            if c is not None and n > 0:
                sims.append(float(parts[a] @ c) / n)
        if len(sims) >= 2:
            fit[a] = float(min(sims))
    asked: dict[int, list[int]] = defaultdict(list)
    for p in prompts:
        if p.area in sums and p.final_kind in ("main", "task") and p.vec >= 0:
            asked[p.area].append(p.vec)
    qcentre = {a: _centre(qv[v]) for a, v in asked.items()}

    def asks_as_near(p: _Prompt, a: int) -> bool:
        if p.vec < 0 or a not in qcentre or p.area not in qcentre:
            return False
        return float(qcentre[a] @ qv[p.vec]) >= float(qcentre[p.area] @ qv[p.vec])

    cases: dict[str, list[_Prompt]] = defaultdict(list)
    for p in prompts:
        cases[p.case_id].append(p)
    for case, ps in cases.items():
        reached = set()
        k = 0
        while k < len(ps):
            p = ps[k]
            if p.final_kind in ("main", "task") and p.area >= 0:
                reached.add(p.area)
            k += 1
            if not (p.final_kind == "follow_up" and p.asks and not p.short and not p.probe
                    and p.area in sums) or p.filed:
                # (a follow-up the team's file lists under a frame area is the team's
                # filing: given back, the file keeps it where the run had it)
                continue
            block = [p]
            while k < len(ps) and (ps[k].final_kind in ("probe", "backchannel", "other")
                                   or (ps[k].final_kind == "follow_up" and not ps[k].asks)) \
                    and ps[k].area == p.area:
                block.append(ps[k])
                k += 1
            rows = [i for q in block for i in answers.get((q.case_id, q.turn_index), [])
                    if not small_talk[i]]
            if not rows:
                continue
            b = vecs[rows].mean(axis=0)
            b = b / (float(np.linalg.norm(b)) or 1.0)
            own = centre(p.area, case)
            if own is None:
                continue
            own_sim = float(b @ own)
            best, best_sim = -1, -2.0
            for a in content:
                if a == p.area or a in reached:
                    continue
                c = centre(a, case)
                if c is not None and float(b @ c) > best_sim:
                    best, best_sim = a, float(b @ c)
            if best >= 0 and best_sim - own_sim >= config.rehome_margin \
                    and best_sim >= fit.get(best, 2.0) and asks_as_near(p, best):
                for q in block:
                    q.area = best
                p.final_kind = "main"
                reached.add(best)
                counts["follow_ups_rehomed_by_content"] += 1


#: the share of an area's answers that must be less similar to its centre than a
#: segment is, for the segment to reach that area (:func:`_keep_frame_follow_ups`)
FLOOR_QUANTILE = 0.25


def _keep_frame_follow_ups(prompts: list[_Prompt], protocol: Protocol, qv: np.ndarray,
                           answers: Mapping[tuple[str, int], list[int]], vecs: np.ndarray,
                           small_talk: np.ndarray, answer_anchors: np.ndarray,
                           frame_questions: np.ndarray, content_questions: np.ndarray,
                           content_owner: np.ndarray, config: ProtocolConfig,
                           counts: Counter[str]) -> None:
    """A question the team's file lacks, asked in the interview frame ("And is now
    still a good time?", "So couples are most of your work?", a joke about the
    plant in the room), stays in the frame area it was asked in, with its probes,
    when it and its answers read as the frame; else it answers no area, and its
    answers go to the domain nearest in content (:func:`_assign_given`).

    It reads as the frame when no content area takes it: an area takes it when its
    answers (small talk left out) are nearer to the area's answers in the other
    cases (:class:`_AnswerCentres`) than to the frame, the answers' and the question's
    similarities added (the frame: the small-talk, background and consent anchor
    phrases and the frame areas' own answers for the answers; the frame anchor
    questions and the file's frame questions for the question), and its answers are
    at least as near that area as ``FLOOR_QUANTILE`` of the area's own answers are.
    A question asked in other interviews too (at ``area_similarity``) is a protocol
    question the file lacks, and what its answers say that no area covers is
    content (a new domain), not chat: the floor does not hold for it, and the frame
    keeps it only when it is at least ``move_margin`` nearer the frame than every
    content area (as a segment moves). A question without answers of content
    (none, or small talk) stays in the frame. Each is counted, kept or not, so that the team can add
    them to the file (protocol.yaml lists the kept ones as the frame area's
    follow-ups)."""
    content = [a.area_id for a in protocol.areas if not a.frame]
    frame = [a.area_id for a in protocol.areas if a.frame]
    floor: dict[int, float] = {}
    if len(vecs):
        centres = _AnswerCentres(prompts, protocol, answers, vecs, small_talk, config)
        for a in content:
            sims = [float(vecs[i] @ c) for b, case, i in centres.members
                    if b == a and (c := centres.centre(a, case)) is not None]
            if sims:
                floor[a] = float(np.quantile(sims, FLOOR_QUANTILE))
    if not floor:
        # no content area has answers to compare with: nothing decides, and each
        # stays a question of no area
        counts["prompts_not_in_protocol_after_frame"] += sum(p.after_frame >= 0 for p in prompts)
        return
    # questions the file lacks that other interviews ask too (any of them, kept or not)
    loose = [p for p in prompts if p.area < 0 and p.final_kind == "follow_up" and p.vec >= 0]
    recurring: set[tuple[str, int]] = set()
    if len(loose) > 1:
        lv = qv[[p.vec for p in loose]]
        near = lv @ lv.T >= config.area_similarity
        lcase = np.array([p.case_id for p in loose], dtype=object)
        for k, p in enumerate(loose):
            if len(set(lcase[near[k]]) - {p.case_id}) >= max(config.min_cases - 1, 1):
                recurring.add((p.case_id, p.turn_index))

    def reads_as_frame(block: list[_Prompt]) -> bool:
        p = block[0]
        rows = [i for q in block for i in answers.get((q.case_id, q.turn_index), [])
                if not small_talk[i]]
        if not rows:
            return True
        v = vecs[rows].mean(axis=0)
        v = v / (float(np.linalg.norm(v)) or 1.0)
        q = qv[p.vec] if p.vec >= 0 else None
        frame_sim = float((answer_anchors @ v).max()) if answer_anchors.size else -1.0
        for f in frame:
            if (c := centres.centre(f, p.case_id)) is not None:
                frame_sim = max(frame_sim, float(c @ v))
        if q is not None and frame_questions.size:
            frame_sim += float((frame_questions @ q).max())
        one_off = (p.case_id, p.turn_index) not in recurring
        best = -np.inf
        for a in content:
            c = centres.centre(a, p.case_id)
            if c is None or a not in floor:
                continue
            near = float(c @ v)
            if one_off and near < floor[a]:
                continue
            asked = content_questions[content_owner == a]
            if q is not None and len(asked):
                near += float((asked @ q).max())
            best = max(best, near)
        return frame_sim >= best + (config.move_margin if not one_off else 0.0)

    by_case: dict[str, list[_Prompt]] = defaultdict(list)
    for p in prompts:
        by_case[p.case_id].append(p)
    for ps in by_case.values():
        in_frame = -1               # the frame area in progress
        k = 0
        while k < len(ps):
            p = ps[k]
            k += 1
            if p.area >= 0:
                in_frame = p.area if protocol.areas[p.area].frame else -1
                continue
            if in_frame < 0 or p.final_kind != "follow_up":
                continue
            # its probes, backchannels and other turns follow it
            block = [p]
            while k < len(ps) and ps[k].area < 0 and ps[k].final_kind != "follow_up":
                block.append(ps[k])
                k += 1
            if p.after_frame < 0:
                # asked after another such question that the frame kept: as that one
                counts["prompts_without_area"] -= 1
            p.after_frame = in_frame
            if reads_as_frame(block):
                for q in block:
                    q.area = in_frame
                counts["prompts_not_in_protocol_in_frame"] += 1
            else:
                in_frame = -1
                counts["prompts_not_in_protocol_after_frame"] += 1


def _segment_prompts(segments: pd.DataFrame, prompts: list[_Prompt],
                     counts: Counter[str]) -> np.ndarray:
    """The turn_index of the prompt each segment answers: its question_turn_index,
    or a later task/heading line of its case before the segment's turn."""
    known = {(p.case_id, p.turn_index) for p in prompts}
    tasks: dict[str, list[int]] = defaultdict(list)
    for p in prompts:
        if p.kind == "task":
            tasks[p.case_id].append(p.turn_index)
    out = np.full(len(segments), -1, dtype=np.int64)
    for i, (case, ti, qi) in enumerate(zip(segments["case_id"].astype(str),
                                           segments["turn_index"].astype(int),
                                           segments["question_turn_index"].astype(int))):
        q = qi
        lines = tasks.get(case)
        if lines:
            k = bisect.bisect_left(lines, ti) - 1
            if k >= 0 and lines[k] > q:
                q = lines[k]
        if q >= 0 and (case, q) not in known:
            counts["segments_question_not_found"] += 1
            q = -1
        if q < 0:
            counts["segments_without_question"] += 1
        out[i] = q
    return out


def _group_areas(prompts: list[_Prompt], qv: np.ndarray, config: ProtocolConfig,
                 counts: Counter[str]) -> list[list[_Prompt]]:
    """Step 5: the prompt groups that recur across cases, with the task lines (every
    task is in a group: :func:`_place_tasks`). Tentative frame prompts take part, but
    only the other prompts count towards ``min_cases``: thank-yous said in every case
    are not a protocol question."""
    cands = [p for p in prompts if p.kind == "task" or
             (p.kind == "question" and not p.probe and (p.asks or p.marked) and
              (not p.frame or p.tentative))]
    if not cands:
        return []
    labels = _average_linkage_groups(qv[[p.vec for p in cands]], config.area_similarity,
                                     cases=[p.case_id for p in cands])
    if len(cands) > LINKAGE_MAX_ROWS:
        counts["prompts_grouped_on_sample"] = len(cands)
    groups: list[list[_Prompt]] = []
    tasks: list[list[_Prompt]] = []
    for g in range(int(labels.max()) + 1):
        members = [p for p, lab in zip(cands, labels) if lab == g]
        tasks.append([p for p in members if p.kind == "task"])
        groups.extend(_recurring([p for p in members if p.kind != "task"], qv, config, counts))
    return _place_tasks(_merge_groups(groups, qv, config), [t for t in tasks if t], qv, config)


def _place_tasks(groups: list[list[_Prompt]], tasks: list[list[_Prompt]], qv: np.ndarray,
                 config: ProtocolConfig) -> list[list[_Prompt]]:
    """``groups`` of questions with each task or heading line (``tasks``: as average
    linkage grouped them) joined to the group it is most alike (its centre at least
    ``area_similarity``); the lines left are groups of their own, since a task is an
    area even when only one case has it.

    The questions of a linkage group are judged, split and joined as any are, and the
    tasks placed after: a group holding a task was kept whole, so one .docx with
    headings among twenty plain transcripts put "A meaningful silence" beside two
    questions asked in every case, and the two questions became one area."""
    if not groups:
        return tasks
    centres = np.stack([qv[[p.vec for p in group]].mean(axis=0) for group in groups])
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    groups = [list(group) for group in groups]
    alone = []
    for linked in tasks:
        left = []
        for task in linked:
            similarity = centres @ qv[task.vec]
            best = int(np.argmax(similarity))
            if similarity[best] >= config.area_similarity:
                groups[best].append(task)
            else:
                left.append(task)
        if left:
            alone.append(left)
    return groups + alone


#: two groups asked together in more than this share of the smaller one's cases are
#: two questions of the protocol, however alike their wording
_MERGE_MAX_OVERLAP = 0.34


def _merge_groups(groups: list[list[_Prompt]], qv: np.ndarray,
                  config: ProtocolConfig) -> list[list[_Prompt]]:
    """Join groups that ask the same question in different cases. Average linkage
    leaves "How did she respond?" and "How did the clients respond?" apart when
    one group holds an outlier; they are joined when their centres are at least
    ``area_similarity`` alike or their closest questions at least
    ``join_similarity``, and they are rarely asked in the same interview (at most
    :data:`_MERGE_MAX_OVERLAP` of the smaller group's cases). Most similar first.

    The pairwise tables are computed once and updated row by row after each merge
    (the closest pair of a union is the closer of the two), so thousands of
    prompts take a fraction of a second."""
    groups = [list(g) for g in groups]
    g = len(groups)
    if g < 2:
        return groups
    sums = np.stack([qv[[p.vec for p in grp]].sum(axis=0) for grp in groups]).astype(np.float64)
    cases = [{p.case_id for p in grp if not p.frame} for grp in groups]
    members = qv[[p.vec for grp in groups for p in grp]]
    starts = np.cumsum([0] + [len(grp) for grp in groups[:-1]])
    closest = np.empty((g, g))
    for i in range(g):
        best = (qv[[p.vec for p in groups[i]]] @ members.T).max(axis=0)
        closest[i] = np.maximum.reduceat(best, starts)
    np.fill_diagonal(closest, -2.0)

    def overlap_ok(i: int, j: int) -> bool:
        return len(cases[i] & cases[j]) <= _MERGE_MAX_OVERLAP * min(len(cases[i]), len(cases[j]))

    ok = np.array([[i != j and overlap_ok(i, j) for j in range(g)] for i in range(g)])
    alive = np.ones(g, dtype=bool)
    while True:
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centres = np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0)
        csim = centres @ centres.T
        valid = ok & alive[:, None] & alive[None, :] & \
            ((csim >= config.area_similarity) | (closest >= config.join_similarity))
        if not valid.any():
            break
        i, j = np.unravel_index(int(np.argmax(np.where(valid, csim, -np.inf))), csim.shape)
        i, j = (int(i), int(j)) if i < j else (int(j), int(i))
        groups[i] = groups[i] + groups[j]
        sums[i] += sums[j]
        cases[i] |= cases[j]
        closest[i, :] = closest[:, i] = np.maximum(closest[i], closest[j])
        alive[j] = False
        ok[j, :] = ok[:, j] = False
        for k in np.flatnonzero(alive):
            ok[i, k] = ok[k, i] = k != i and overlap_ok(i, k)
    return [grp for k, grp in enumerate(groups) if alive[k]]


def _recurring(members: list[_Prompt], qv: np.ndarray, config: ProtocolConfig,
               counts: Counter[str]) -> list[list[_Prompt]]:
    """The parts of a question group that are protocol questions.

    A protocol question is asked about once per interview. A group asked twice or
    more in ``probe_repeat_share`` of its cases either joins two questions (the
    average linkage put "a time you cried" and "times you held tears back"
    together) or is a probe repeated through each interview: it is split in two
    along its own tree and each part judged again; a group that cannot be split
    (its questions are all alike) is a probe.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    out: list[list[_Prompt]] = []
    todo = [members]
    while todo:
        group = todo.pop()
        # a greeting before a question ("Thanks for joining. Could you tell me how
        # you started?") makes the prompt a tentative opening, but its core asks
        # the protocol's first question: it counts, where a thank-you, a recording
        # check or an instruction ("Please think aloud as you work") does not
        content = [p for p in group if not p.frame or (
            p.tentative and not p.short and "?" in p.core
            and not _COURTESY_TURN.search(p.core))]
        # a short prompt asks the group's question only when it names a topic word of
        # one of the full questions ("And supervision?" beside "How did supervision
        # come into it?"); "And did you?" beside "And what brought you to it?" does not,
        # and two cases asking such things are no protocol question
        topic = {w for p in content if not p.short for w in _words(p.core)
                 if w not in _STOP and w not in _LIGHT_VERBS and len(w) > 2}
        asking = [p for p in content if not p.short or topic & set(_words(p.core))]
        per_case = Counter(p.case_id for p in asking)
        if len(per_case) < config.min_cases or all(p.short for p in content):
            continue
        repeated = sum(1 for k in per_case.values() if k >= 2) / len(per_case)
        if repeated < config.probe_repeat_share:
            out.append(group)
            continue
        m = qv[[p.vec for p in group]]
        if len(group) < 2 or float((m @ m.T).min()) >= 0.95:
            for p in content:
                p.probe = True
            counts["probe_groups"] += 1
            continue
        dist = np.nan_to_num(np.clip(pdist(m.astype(np.float64), metric="cosine"), 0.0, 2.0),
                             nan=1.0)
        halves = fcluster(linkage(dist, method="average"), t=2, criterion="maxclust")
        for h in (1, 2):
            part = [p for p, lab in zip(group, halves) if lab == h]
            if part and len(part) < len(group):
                todo.append(part)
    out.sort(key=lambda g: min(p.row for p in g))      # a stable, input-ordered result
    return out


def _consistent_background(groups: list[list[_Prompt]], prompts: list[_Prompt],
                           qv: np.ndarray, config: ProtocolConfig,
                           counts: Counter[str]) -> list[list[_Prompt]]:
    """One question is background, or content, in every interview that asks it.

    The background patterns catch some wordings of a question and miss others
    ("a little about yourself, your course" is background; "your training and
    your placement" is not caught), so one question became frame in two cases and
    a content domain in five. A background prompt outside any group that is as
    similar to an early group's questions as a reworded protocol question is
    (``join_similarity``), and more similar to them than to the other cases'
    background questions that are not as similar to the group, is taken as that
    question asked in its case ("Could you tell me your age range and how long you
    were in therapy?" is about as near to "Can you tell me about a time your
    therapist shared something personal?" as a rewording, but far nearer to the
    age questions of the other interviews, and its answer was counted in the
    disclosure's domain). When such
    prompts come from at least as many cases as the group's, the whole group is
    background; otherwise they join the group as content. Only groups asked in the
    first half of every interview that asks them, where background questions are,
    are compared: a later "Did your training prepare you for this?" is content. A
    question in the first half of its interview that is in no group and is as
    similar to the background prompts is background too."""
    background = [p for p in prompts if p.frame == "background" and not p.tentative
                  and p.kind == "question" and p.vec >= 0]
    if not background:
        return groups
    out, claimed = [], set()
    for members in groups:
        early = max(p.position for p in members) <= 0.5
        if not early or any(p.kind == "task" for p in members):
            out.append(members)
            continue
        centre = _centre(qv[[p.vec for p in members]])
        cases = {p.case_id for p in members}
        sims = {id(p): float(qv[p.vec] @ centre) for p in background}
        near = [p for p in background if id(p) not in claimed and p.case_id not in cases
                and sims[id(p)] >= config.join_similarity]
        # the background questions this group is not near ask something else: a prompt
        # nearer to those of the other cases than to the group asks what they ask
        apart = [p for p in background if sims[id(p)] < config.join_similarity]
        near = [p for p in near if _nearer_than(p, sims[id(p)], apart, qv)]
        if not near:
            out.append(members)
        elif len({p.case_id for p in near}) >= len(cases):
            for p in members:
                p.frame, p.tentative = "background", False
            counts["question_groups_made_background"] += 1
        else:
            for p in near:
                p.frame = ""
                claimed.add(id(p))
            out.append(members + near)
            counts["background_prompts_made_content"] += len(near)
    # a wording asked in one case only, that the patterns missed, of a question the
    # other cases asked as background, is background too
    grouped = {id(p) for g in out for p in g}
    bg_vecs = [p.vec for p in background if p.frame == "background"]
    if bg_vecs:
        centre = _centre(qv[bg_vecs])
        for p in prompts:
            if (p.kind == "question" and not p.frame and not p.probe and p.asks
                    and p.vec >= 0 and id(p) not in grouped and p.position <= 0.5
                    and float(qv[p.vec] @ centre) >= config.join_similarity):
                p.frame, p.tentative = "background", False
                counts["prompts_made_background"] += 1
    return out


def _split_apart(groups: list[list[_Prompt]], qv: np.ndarray,
                 answers: Mapping[tuple[str, int], list[int]], vecs: np.ndarray,
                 small_talk: np.ndarray, config: ProtocolConfig,
                 counts: Counter[str]) -> list[list[_Prompt]]:
    """A question that a minority of a group's interviews ask, and whose answers are
    far from the answers to the group's other questions, is a question of its own.

    Average linkage at ``area_similarity`` groups by shared words: "How does your
    culture, or your faith, shape how you see tears in the room?", asked in two of
    fourteen interviews, joined "What would you tell trainees about tears in the
    room?", and what those two said about culture and faith was counted as advice
    to trainees. Within a group, the wordings of one question are at least
    ``join_similarity`` alike (average linkage again); a part asked in fewer than
    half of the group's interviews leaves the group when its answers (small talk
    left out; each segment compared with the centre of the other questions' answers
    in the other interviews) are on average less similar to the rest's answers than
    ``FLOOR_QUANTILE`` of the interviews' own answers to the rest are, when the
    interviews that ask it also ask the rest (more than :data:`_MERGE_MAX_OVERLAP` of
    them: two questions of one interview); asked apart from the rest, it leaves only
    when at least ``min_cases`` interviews ask it and its answers are less similar
    than every interview's own (a question one interview asks instead of the rest
    is that interview's wording of it, as far as the questions tell: the domains'
    content check judges its answers). A part asked in at least ``min_cases``
    interviews is then a group of its own; a part asked in fewer is no area
    question, and does not join the group it left as a reworded question
    (``_Prompt.left``). The wordings of one protocol question, however unlike,
    answer alike, and stay; a group whose other answers are too few to compare
    (``min_centre_segments``; fewer than two interviews) is kept whole."""
    out: list[list[_Prompt]] = []
    alone: list[tuple[int, list[_Prompt]]] = []
    for members in groups:
        if len(members) < 3 or any(p.kind == "task" for p in members):
            out.append(members)
            continue
        labels = _average_linkage_groups(qv[[p.vec for p in members]], config.join_similarity)
        parts = [[p for p, lab in zip(members, labels) if lab == g]
                 for g in range(int(labels.max()) + 1)]
        if len(parts) < 2:
            out.append(members)
            continue
        n_cases = len({p.case_id for p in members})
        parts.sort(key=lambda part: (-len({p.case_id for p in part}), min(p.row for p in part)))
        kept, apart = list(members), []
        for part in parts[1:]:
            cases = {p.case_id for p in part}
            if 2 * len(cases) >= n_cases or any(p.frame for p in part):
                continue
            rest = [p for p in kept if all(p is not q for q in part)]
            together = len(cases & {p.case_id for p in rest}) > _MERGE_MAX_OVERLAP * len(cases)
            if not together and len(cases) < config.min_cases:
                continue        # the one question of its interview here: its wording
            if _answers_apart(part, rest, answers, vecs, small_talk, config,
                              FLOOR_QUANTILE if together else 0.0):
                kept = rest
                apart.append(part)
        out.append(kept)
        for part in apart:
            counts["questions_apart_from_their_group"] += 1
            if len({p.case_id for p in part}) >= config.min_cases:
                out.append(part)
            else:
                alone.append((len(out) - 1, part))
    for at, part in alone:
        for p in part:
            p.left = at
    return out


def _answers_apart(part: list[_Prompt], rest: list[_Prompt],
                   answers: Mapping[tuple[str, int], list[int]], vecs: np.ndarray,
                   small_talk: np.ndarray, config: ProtocolConfig, quantile: float) -> bool:
    """Whether the answers to ``part`` are less similar to the answers to ``rest`` (in
    the other interviews) than ``quantile`` of the interviews' own answers to ``rest``
    are (:func:`_split_apart`). Similarities are a segment's to a centre, averaged
    over the answer, so that a long answer and a short one compare."""
    def rows_of(ps: list[_Prompt]) -> dict[str, list[int]]:
        rows: dict[str, list[int]] = defaultdict(list)
        for p in ps:
            rows[p.case_id] += [i for i in answers.get((p.case_id, p.turn_index), [])
                                if not small_talk[i]]
        return {c: r for c, r in rows.items() if r}

    rest_rows, part_rows = rows_of(rest), rows_of(part)
    if not part_rows:
        return False
    total = sum(vecs[r].sum(axis=0) for r in rest_rows.values())
    size = sum(len(r) for r in rest_rows.values())

    def without(case: str) -> np.ndarray | None:
        own = rest_rows.get(case, [])
        if size - len(own) < config.min_centre_segments:
            return None
        c = total - (vecs[own].sum(axis=0) if own else 0)
        n = float(np.linalg.norm(c))
        return c / n if n > 0 else None

    fit = [float((vecs[r] @ c).mean()) for case, r in rest_rows.items()
           if (c := without(case)) is not None]
    if len(fit) < 2:
        return False
    sims = [vecs[r] @ c for case, r in part_rows.items() if (c := without(case)) is not None]
    if not sims:
        return False
    return float(np.concatenate(sims).mean()) < float(np.quantile(fit, quantile))


def _nearer_than(p: _Prompt, sim: float, others: list[_Prompt], qv: np.ndarray) -> bool:
    """Whether ``sim`` is above ``p``'s similarity to the centre of ``others`` asked in
    the other cases (True when there are none)."""
    vecs = [q.vec for q in others if q.case_id != p.case_id]
    return not vecs or sim > float(qv[p.vec] @ _centre(qv[vecs]))


def _infer_areas(prompts: list[_Prompt], qv: np.ndarray, config: ProtocolConfig,
                 counts: Counter[str], *,
                 answers: Mapping[tuple[str, int], list[int]] | None = None,
                 vecs: np.ndarray | None = None,
                 small_talk: np.ndarray | None = None) -> Protocol:
    groups = _consistent_background(_group_areas(prompts, qv, config, counts), prompts, qv,
                                    config, counts)
    if answers is not None and vecs is not None and len(vecs):
        groups = _split_apart(groups, qv, answers, vecs,
                              np.zeros(len(vecs), bool) if small_talk is None else small_talk,
                              config, counts)
    area_members: list[list[_Prompt]] = []
    for members in groups:
        for p in members:
            p.group = len(area_members)
            p.frame = ""              # a tentative frame whose core asks a protocol question
        area_members.append(list(members))
    kinds = {}            # area index -> frame kind
    centres = [_centre(qv[[p.vec for p in m]]) for m in area_members]

    def frame_area(kind: str) -> int:
        for a, k in kinds.items():
            if k == kind:
                return a
        area_members.append([])
        centres.append(np.zeros(qv.shape[1], np.float32))
        kinds[len(area_members) - 1] = kind
        return len(area_members) - 1

    def nearest(p: _Prompt) -> tuple[int, float]:
        best, sim = -1, -2.0
        for a, c in enumerate(centres):
            if a in kinds or not area_members[a] or a == p.left:
                continue
            s = float(c @ qv[p.vec])
            if s > sim:
                best, sim = a, s
        return best, sim

    by_case: dict[str, list[_Prompt]] = defaultdict(list)
    for p in prompts:
        by_case[p.case_id].append(p)
    for case in sorted(by_case):
        current = -1
        for p in by_case[case]:
            if p.kind in ("backchannel", "other"):
                p.area, p.final_kind = current, p.kind
                continue
            if p.frame and p.group < 0:
                p.area = current = frame_area(p.frame)
                area_members[p.area].append(p)
                p.final_kind = "main"
                continue
            if kinds.get(current) == "opening":
                # a greeting is answered by a greeting; what the interviewer asks or
                # says next that is no greeting ("Can you tell me more about your
                # concerns about vaccines?") is content, whether or not other cases
                # ask it: its answers are placed by what they say, not set apart
                current = -1
            if p.group >= 0 and not (p.short and not p.marked and p.group == current):
                p.area = current = p.group
                p.final_kind = "task" if p.kind == "task" else "main"
                continue
            if p.probe or (p.short and not p.marked):
                p.area, p.final_kind = current, "probe"
                continue
            if not (p.asks or p.marked) and current >= 0:
                p.area, p.final_kind = current, "follow_up"     # a reflection
                continue
            best, sim = nearest(p)
            if best >= 0 and best != current and sim >= config.join_similarity:
                p.area = current = best
                p.final_kind = "main"
                area_members[best].append(p)
            elif p.marked or p.kind == "task" or current < 0:
                if best >= 0 and sim >= config.area_similarity:
                    p.area = current = best
                    area_members[best].append(p)
                    p.final_kind = "task" if p.kind == "task" else "main"
                elif p.marked or p.kind == "task":
                    area_members.append([p])
                    centres.append(qv[p.vec])
                    p.area = current = len(area_members) - 1
                    p.final_kind = "task" if p.kind == "task" else "main"
                    counts["single_case_areas"] += 1
                else:
                    p.area, p.final_kind = -1, "follow_up"
                    counts["prompts_without_area"] += 1
            else:
                p.area, p.final_kind = current, "follow_up"
    if answers is not None and vecs is not None and len(vecs):
        content = [a for a in range(len(area_members)) if a not in kinds and area_members[a]]
        for blocks in _new_topics(prompts, content, answers, vecs,
                                  np.zeros(len(vecs), bool) if small_talk is None
                                  else small_talk, config, counts):
            new = len(area_members)
            area_members.append([block[0] for block in blocks])
            centres.append(_centre(qv[[block[0].vec for block in blocks]]))
            for block in blocks:
                for p in block:
                    p.area = new
                block[0].final_kind = "main"
    # number the areas in interview order and name them
    used = [a for a in range(len(area_members)) if area_members[a]]
    mains = {a: [p for p in area_members[a] if p.area == a and p.final_kind in ("main", "task")]
             for a in used}
    used = [a for a in used if mains[a]]
    order = sorted(used, key=lambda a: (float(np.mean([p.position for p in mains[a]])), a))
    new_id = {a: i for i, a in enumerate(order)}
    areas: list[Area] = []
    names: Counter[str] = Counter()
    for a in order:
        members = mains[a]
        questions = _ranked_questions(members, qv, same=config.join_similarity)
        if a in kinds:
            name = _FRAME_NAME[kinds[a]]
        else:
            full = [p for p in members if not p.short] or members
            name = area_name(_representative(full, qv, config.name_max_words,
                                             same=config.join_similarity),
                             config.name_max_words)
        names[name] += 1
        if names[name] > 1:
            name = f"{name} ({names[name]})"
        areas.append(Area(new_id[a], name, tuple(questions), a in kinds, "inferred"))
    for p in prompts:
        p.area = new_id.get(p.area, -1)
    counts["areas"] = len(areas)
    counts["frame_areas"] = sum(a.frame for a in areas)
    return Protocol(tuple(areas))


#: follow-up blocks compared with the other answers at once (:func:`_new_topics`)
_COVER_BLOCK = 1024


def _new_topics(prompts: list[_Prompt], content: list[int],
                answers: Mapping[tuple[str, int], list[int]], vecs: np.ndarray,
                small_talk: np.ndarray, config: ProtocolConfig,
                counts: Counter[str]) -> list[list[list[_Prompt]]]:
    """Follow-up questions of several interviews that ask about one topic no area
    covers, each as its block (the follow-up, with the probes and reflections after
    it), grouped: each group is to be an area.

    A topic the interviewers raised in their own words in a few interviews ("Has
    working by video changed any of this for you, crying or holding back?", "Has
    working online changed any of this for you?") joins no question group, its
    wordings too far apart, and each was counted as the area it followed, though
    what the two answered was nearer each other than any area's content; it made
    no new domain either, since a segment's own words are near enough some area's
    centre. The answers tell: a follow-up block's answers (small talk left out;
    their mean) and another interview's are joined when they are more similar to
    each other than either is to anything the other interviews answered (the answer
    to any one prompt, in any area, follow-up blocks left out): where another
    interview said as much in answer to a protocol question, a probe or a reflection,
    an area covers it. Joined blocks (by connection) from at least
    ``new_domain_min_cases`` interviews with at least ``new_domain_min_segments``
    answers, the bars of content no area covers, are a group."""
    by_case: dict[str, list[_Prompt]] = defaultdict(list)
    for p in prompts:
        by_case[p.case_id].append(p)

    def said(ps: list[_Prompt]) -> list[int]:
        return [i for q in ps for i in answers.get((q.case_id, q.turn_index), [])
                if not small_talk[i]]

    blocks: list[list[_Prompt]] = []
    for ps in by_case.values():
        for k, p in enumerate(ps):
            if not (p.kind == "question" and p.final_kind == "follow_up" and p.asks
                    and not p.short and not p.probe and p.area in content):
                continue
            block = [p]
            for q in ps[k + 1:]:
                if q.area != p.area or q.final_kind in ("main", "task") or \
                        (q.final_kind == "follow_up" and q.asks):
                    break
                block.append(q)
            if said(block):
                blocks.append(block)
    if len(blocks) < 2:
        return []
    in_blocks = {id(q) for b in blocks for q in b}
    # what the interviews answered to each other prompt of an area (the frame's too)
    cover = [(p.case_id, rows) for p in prompts
             if p.area >= 0 and id(p) not in in_blocks and (rows := said([p]))]
    if not cover:
        return []
    cover_vecs = _unit_rows(np.stack([vecs[rows].mean(axis=0) for _, rows in cover]))
    cover_case = np.array([c for c, _ in cover], dtype=object)
    means = [_centre(vecs[said(block)]) for block in blocks]
    nearest = np.full(len(blocks), -np.inf)
    for start in range(0, len(blocks), _COVER_BLOCK):
        chunk = np.stack(means[start:start + _COVER_BLOCK])
        sim = chunk @ cover_vecs.T
        own = np.array([b[0].case_id for b in blocks[start:start + _COVER_BLOCK]],
                       dtype=object)
        sim[own[:, None] == cover_case[None, :]] = -np.inf
        nearest[start:start + len(chunk)] = sim.max(axis=1)
    kept = [b for b, near in zip(blocks, nearest) if np.isfinite(near)]
    means = [m for m, near in zip(means, nearest) if np.isfinite(near)]
    nearest = nearest[np.isfinite(nearest)]
    if len(kept) < 2:
        return []
    m = np.stack(means)
    case = np.array([b[0].case_id for b in kept], dtype=object)
    rows_at, cols_at = [], []
    for start in range(0, len(kept), _COVER_BLOCK):
        sim = m[start:start + _COVER_BLOCK] @ m.T
        joined = (sim > nearest[start:start + len(sim), None]) & (sim > nearest[None, :]) & \
            (case[start:start + len(sim), None] != case[None, :])
        r, c = np.nonzero(joined)
        rows_at.append(r + start)
        cols_at.append(c)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    r, c = np.concatenate(rows_at), np.concatenate(cols_at)
    joined = coo_matrix((np.ones(len(r), bool), (r, c)), shape=(len(kept), len(kept)))
    n_groups, label = connected_components(joined, directed=False)
    out = []
    for g in range(n_groups):
        members = np.flatnonzero(label == g)
        n_cases = len(set(case[members]))
        if n_cases >= max(config.new_domain_min_cases, 2) and \
                sum(len(said(kept[i])) for i in members) >= config.new_domain_min_segments:
            out.append([kept[i] for i in members])
            counts["follow_ups_made_an_area"] += len(members)
    return out


#: How far below the most representative question an area's other wordings may
#: score (mean cosine similarity to the others) and still give the area its name.
_NAME_POOL = 0.15


def _representative(members: list[_Prompt], qv: np.ndarray, max_words: int = 12,
                    same: float | None = None) -> str:
    """The question an area is named after. The wordings of one protocol question
    are all representative of it, and spoken ones differ mostly in how readable
    they are ("Do you think that it, would you want a written plan ..."), so among
    those within ``_NAME_POOL`` of the best (mean similarity to the others) the one
    whose name has the fewest defects (:func:`_name_defects`, and one more for a
    wording that does not ask, :func:`_asks`) is taken; then those
    within 0.05 of the best, then the shortest, for the plainest name. Only the
    wordings of the question most of the area's interviews ask take part (``same``:
    :func:`_ranked_questions`): a follow-up asked in one interview, that shares a few
    words with it, does not name an area eight interviews answer."""
    ranked = [(q, score) for q, score, most in
              _ranked_questions(members, qv, with_scores=True, same=same) if most]
    top = max(score for _, score in ranked)
    pool = [(i, q, score) for i, (q, score) in enumerate(ranked) if score >= top - _NAME_POOL]
    best = min(pool, key=lambda x: (_wording_defects(x[1], max_words),
                                    x[2] < top - 0.05, len(_words(x[1])), x[0]))
    return best[1]


def _asked(sents: list[str]) -> list[str]:
    """The question sentences among ``sents`` that :func:`area_name` may take, in order:
    one that asks ("So how confident are you ...?") before a statement said as a
    question, which checks or reflects ("Yeah, that makes sense?")."""
    asked = [s for s in sents if _is_question(s)]
    return [s for s in asked if _asks(s)] or asked


def _wording_defects(question: str, max_words: int) -> int:
    """The defects of the name a wording gives (:func:`_name_defects`), and one more
    when the sentence it is named from does not ask (:func:`_asks`): a reflection said
    as a question ("So, maybe around 20 drinks a week?") names an area worse than "How
    many drinks would you have in a week?". A redacted question is not asked to ask."""
    name, asks = _named(question, max_words)
    if name in (REDACTED_AREA, UNTITLED_AREA):
        return _name_defects(name)
    return _name_defects(name) + (not asks)


def _ranked_questions(members: list[_Prompt], qv: np.ndarray, with_scores: bool = False,
                      same: float | None = None):
    """The distinct cores of an area's questions, most representative first: those of
    the question most of its interviews ask, then the highest mean similarity to the
    others (shorter first on ties). With ``with_scores``, (core, score, whether it is
    that question's) triples.

    A wording is asked in the interviews where one of the area's questions is at least
    ``same`` alike (``join_similarity``, a protocol question reworded); the question
    most interviews ask is the wordings asked in more than half of the area's
    interviews, or, when none is, in the most. Mean similarity alone counts each
    distinct wording once: "Was there a moment when you felt stuck?", asked in the
    same words in all eight interviews, and "Did you tell anyone how you felt?",
    asked in one, scored the same, and the shorter named the area. Without ``same``
    every wording takes part."""
    distinct: dict[str, _Prompt] = {}
    for p in members:
        key = " ".join(p.core.split()).casefold()
        distinct.setdefault(key, p)
    ps = list(distinct.values())
    if len(ps) <= 1:
        score = np.ones(len(ps))
    else:
        m = qv[[p.vec for p in ps]]
        sims = m @ m.T
        score = (sims.sum(axis=1) - np.diag(sims)) / (len(ps) - 1)
    most = np.ones(len(ps), dtype=bool)
    if same is not None and len(ps) > 1:
        case = np.array([p.case_id for p in members], dtype=object)
        near = qv[[p.vec for p in ps]] @ qv[[p.vec for p in members]].T >= same
        asked_in = np.array([len(set(case[row])) for row in near])
        most = asked_in * 2 > len(set(case))
        if not most.any():
            most = asked_in == asked_in.max()
    order = sorted(range(len(ps)), key=lambda i: (not most[i], -round(float(score[i]), 6),
                                                  len(ps[i].core)))
    if with_scores:
        return [(" ".join(ps[i].core.split()), float(score[i]), bool(most[i])) for i in order]
    return [" ".join(ps[i].core.split()) for i in order]


def _assign_given(prompts: list[_Prompt], qv: np.ndarray, given: Protocol,
                  given_vecs: np.ndarray, config: ProtocolConfig,
                  counts: Counter[str]) -> Protocol:
    """Prompts matched to a protocol the team gave: a prompt opens the area of its
    most similar question at ``join_similarity`` (``area_similarity`` when it says
    it moves on, or is a task), or the area the interviewers' own wordings of it
    point to (:func:`_interviewer_wordings`); frame prompts the protocol does not
    cover get an inferred frame area added at the end; a greeting or background
    question is not matched to a frame area written after the content areas, nor a
    closing to one written before them (:func:`_other_side_of_frame`); a frame area's
    listed follow-ups, asked inside it, stay there, and asked in another part of the
    frame or after a question of no area, go back to it; probes and the rest follow
    the area in progress, but for a question the file does not list asked after the
    frame, which answers no area unless it and its answers read as the frame
    (:func:`_keep_frame_follow_ups`)."""
    owner = np.array([a.area_id for a in given.areas for _ in a.questions], dtype=np.int64)
    areas = list(given.areas)
    frame_given = {a.area_id for a in given.areas if a.frame}
    # a frame area's follow-ups, as written in the file (the prompt's core, spaced and
    # cased alike): asked inside that area, such a question stays there
    listed_follow_ups = {a.area_id: {" ".join(q.split()).casefold() for q in a.follow_ups}
                         for a in given.areas if a.frame and a.follow_ups}
    listed_in: dict[str, set[int]] = defaultdict(set)
    for area, asked in listed_follow_ups.items():
        for q in asked:
            listed_in[q].add(area)
    away = _other_side_of_frame(given)
    worded = _interviewer_wordings(prompts, qv, owner, given_vecs, frame_given, config)
    # each question of the file: whether it asks what helped or what did not, and
    # whether it is a content question (only those are told apart by polarity)
    polarity = np.array([_polarity(q) for a in given.areas for q in a.questions], dtype=np.int64)
    content_q = ~np.isin(owner, list(frame_given))
    word_areas = _area_words(given)
    # the file's questions, as asked word for word: each opens its own area, whatever
    # the similarities say (below)
    verbatim = {_as_asked(q): a.area_id for a in given.areas for q in a.questions}
    added: dict[str, int] = {}
    by_case: dict[str, list[_Prompt]] = defaultdict(list)
    for p in prompts:
        by_case[p.case_id].append(p)
    for case in sorted(by_case):
        current = -1
        for p in by_case[case]:
            if p.kind in ("backchannel", "other"):
                p.area, p.final_kind = current, p.kind
                continue
            if (listed := verbatim.get(_as_asked(p.core))) is not None:
                # asked as the file writes it: the team's own filing. The closing "Is
                # there anything else about feedback in supervision you'd like to add?"
                # names its topic, so nothing marked it as frame, and the rule below
                # kept it from the frame area that lists it: its answers, closing
                # remarks of every case, made a category of a content domain
                p.area = current = listed
                p.final_kind = "task" if p.kind == "task" else "main"
                counts["prompts_matched_word_for_word"] += 1
                continue
            sims = given_vecs @ qv[p.vec] if len(owner) else np.zeros(0)
            if len(sims) and frame_given and not p.frame and p.position > _FRAME_EDGE:
                # past the opening, a question nothing marks as frame is not matched to
                # a frame area by its words alone: "Looking back, has it changed how you
                # practise?" is nearer "How long have you been practising?" than "How
                # has it changed the way you work?", and its answer was set apart
                sims = np.where(np.isin(owner, list(frame_given)), -2.0, sims)
            if len(sims) and away.get(p.frame):
                # a greeting is not matched to the closing's "Thank you for your time
                # today" (nor a thanks at the end to the opening) by its words
                sims = np.where(np.isin(owner, list(away[p.frame])), -2.0, sims)
            pol = _polarity(p.core) if not (p.frame or p.probe or p.short) else 0
            top = int(np.argmax(sims)) if len(sims) else -1
            row = _by_polarity(sims, pol, polarity, content_q, config.polarity_margin) \
                if top >= 0 else -1
            best = int(owner[row]) if row >= 0 else -1
            sim = float(sims[row]) if row >= 0 else -2.0
            bar = config.area_similarity if (p.marked or p.kind == "task" or p.frame) \
                else config.join_similarity
            if best >= 0 and sim >= bar and not (p.probe and best == current):
                p.area = current = best
                p.final_kind = "task" if p.kind == "task" else "main"
                if best != int(owner[top]):
                    counts["prompts_matched_by_polarity"] += 1
            elif (pol and p.asks and 0 <= current != best and not areas[current].frame
                  and content_q[row] and polarity[row] == pol
                  and _pair_with(sims, owner == current, polarity, row,
                                 config.polarity_margin, config.wording_similarity)):
                # below the bar, but the area in progress's question, of the other
                # polarity, and one of the prompt's own are about as near, and one of
                # them near enough to be the prompt reworded: the prompt asks the other
                # question of the pair in words of its own ("Were there other times
                # something she shared felt unhelpful?" after "a time ... that helped",
                # with the file's "did not help" question; the embedder reads the words
                # the two share)
                p.area = current = best
                p.final_kind = "main"
                counts["prompts_matched_by_polarity"] += 1
            elif worded.get((p.case_id, p.turn_index), current) != current:
                p.area = current = worded[(p.case_id, p.turn_index)]
                p.final_kind = "main"
                counts["prompts_matched_by_interviewer_wording"] += 1
            elif p.frame:
                if frame_given:
                    fr = [i for i in range(len(owner)) if owner[i] in frame_given]
                    p.area = current = int(owner[fr[int(np.argmax(sims[fr]))]])
                else:
                    if p.frame not in added:
                        added[p.frame] = len(areas)
                        areas.append(Area(len(areas), _FRAME_NAME[p.frame], (), True, "inferred"))
                    p.area = current = added[p.frame]
                p.final_kind = "main"
            elif p.short and not p.probe and (named := _named_area(p.core, word_areas,
                                                                   current)) is not None:
                p.area = current = named
                p.final_kind = "main"
                counts["prompts_matched_by_area_word"] += 1
            elif p.probe or p.short:
                p.area, p.final_kind = current, "probe"
            elif " ".join(p.core.split()).casefold() in listed_follow_ups.get(current, ()):
                p.area, p.final_kind, p.filed = current, "follow_up", True
                counts["prompts_matched_as_frame_follow_up"] += 1
            elif (current < 0 or areas[current].frame) and len(
                    owners := listed_in.get(" ".join(p.core.split()).casefold(), ())) == 1:
                # the team filed it under another area of the frame: asked in the frame,
                # or after a question no area lists, it is that area's
                p.area = current = next(iter(owners))
                p.final_kind, p.filed = "follow_up", True
                counts["prompts_matched_as_frame_follow_up"] += 1
            elif current >= 0 and areas[current].frame:
                # a question the protocol does not list, asked after the frame (the
                # background, the greeting): its answers are not small talk, so they are
                # not sent to the frame unseen; they answer no area of the protocol, and
                # the question is counted so the team can add it to the file
                # (:func:`_keep_frame_follow_ups` then keeps it in the frame when it and
                # its answers read as the frame: small talk, background, consent)
                p.after_frame = current
                p.area = current = -1           # its probes follow it, not the frame
                p.final_kind = "follow_up"
            else:
                p.area, p.final_kind = current, "follow_up"
                if current < 0:
                    counts["prompts_without_area"] += 1
    questions: dict[int, list[str]] = defaultdict(list)
    for p in prompts:
        if p.area in added.values() and p.final_kind == "main":
            q = " ".join(p.core.split())
            if q not in questions[p.area]:
                questions[p.area].append(q)
    areas = [replace(a, questions=tuple(questions[a.area_id])) if a.area_id in added.values()
             else a for a in areas]
    counts["areas"] = len(areas)
    counts["frame_areas"] = sum(a.frame for a in areas)
    counts["frame_areas_added"] = len(added)
    return Protocol(tuple(areas))


def _by_polarity(sims: np.ndarray, pol: int, polarity: np.ndarray, content_q: np.ndarray,
                 margin: float) -> int:
    """The row of the file's question a prompt of polarity ``pol`` (:func:`_polarity`)
    is matched to: the most similar, unless that is a content question of the other
    polarity and a content question of the prompt's own is at most ``margin`` less
    similar. A helpful/hindering pair of questions shares its words; the negation
    that tells them apart hardly moves a sentence embedding ("Was there ever a time
    something she shared didn't help, or felt wrong?" was as near the file's
    "helped" question as its "didn't help" one, and its story was counted there)."""
    top = int(np.argmax(sims))
    if not pol or not content_q[top] or polarity[top] != -pol:
        return top
    agree = content_q & (polarity == pol) & (sims > -2.0)
    if not agree.any():
        return top
    own = int(np.argmax(np.where(agree, sims, -np.inf)))
    return own if sims[own] >= sims[top] - margin else top


def _pair_with(sims: np.ndarray, in_area: np.ndarray, polarity: np.ndarray, row: int,
               margin: float, floor: float) -> bool:
    """Whether the question ``row`` and the nearest question of an area (``in_area``
    marks its questions) are a pair told apart by polarity: the area's is of the other
    polarity, the two are at most ``margin`` apart in similarity to the prompt, and the
    nearer is at least ``floor`` (``wording_similarity``) similar to it."""
    if not in_area.any():
        return False
    near = int(np.argmax(np.where(in_area, sims, -np.inf)))
    return (polarity[near] == -polarity[row] != 0 and abs(sims[near] - sims[row]) <= margin
            and max(sims[near], sims[row]) >= floor)


def _other_side_of_frame(given: Protocol) -> dict[str, set[int]]:
    """For each part of the interview frame, the frame areas of a protocol file it is
    not matched to: a greeting or a background question ("opening", "background") not
    to the frame areas written after the last content area, a closing not to those
    written before the first. Areas keep the file's order, so those are the closing's
    and the opening's. "Hello Isla, thanks for making time for this." shares more
    words with the closing "Thank you so much for your time today." than with a long
    opening question, and was put in the closing area. A part for which every frame
    area of the file is on the other side keeps them all."""
    content = [i for i, a in enumerate(given.areas) if not a.frame]
    if not content:
        return {}
    before = {a.area_id for i, a in enumerate(given.areas) if a.frame and i < content[0]}
    after = {a.area_id for i, a in enumerate(given.areas) if a.frame and i > content[-1]}
    frame = {a.area_id for a in given.areas if a.frame}
    out = {"opening": after, "background": after, "closing": before}
    return {kind: areas for kind, areas in out.items() if areas and frame - areas}


def _as_asked(question: str) -> str:
    """A question as words alone, to compare a prompt with a protocol file's wording:
    case, spacing and punctuation aside ("Is there anything else you'd like to add?")."""
    return " ".join(_words(question))


def _content_words(text: str) -> set[str]:
    """The words of ``text`` that name a topic: no stop word, no word under four
    letters, a plural's "s" and a possessive dropped ("parents", "parent" and
    "parent's" alike)."""
    out = set()
    for w in _words(text):
        w = w.removesuffix("'s").removesuffix("'")       # "student's", "students'"
        if len(w) >= 4 and w not in _STOP:
            out.add(w[:-1] if w.endswith("s") and not w.endswith("ss") else w)
    return out


def _area_words(given: Protocol) -> dict[str, int]:
    """Each content word of a team's protocol that the questions of one content area
    alone use -> that area ("parent" -> "Involving parents and carers")."""
    where: dict[str, set[int]] = defaultdict(set)
    for a in given.areas:
        if a.frame:
            continue
        for q in (*a.questions, a.name):
            for w in _content_words(q):
                where[w].add(a.area_id)
    return {w: next(iter(ids)) for w, ids in where.items() if len(ids) == 1}


def _named_area(question: str, word_areas: dict[str, int], current: int) -> int | None:
    """The area a short question names by a word only that area's protocol questions
    use, when it is not the area in progress and the question names no other:
    "And contacting her parents?" asked after "How did you respond in that moment?"
    opens "How did you involve the student's parents or carers?". A short question is
    otherwise a probe of the area in progress, and a sentence embedder puts a
    four-word paraphrase at a cosine of 0.3-0.4 to the team's wording, below any bar
    that keeps probes where they are."""
    named = {word_areas[w] for w in _content_words(question) if w in word_areas}
    if len(named) != 1:
        return None
    area = next(iter(named))
    return None if area == current else area


def _interviewer_wordings(prompts: list[_Prompt], qv: np.ndarray, owner: np.ndarray,
                          given_vecs: np.ndarray, frame_given: set[int],
                          config: ProtocolConfig) -> dict[tuple[str, int], int]:
    """The content area of each question that the team's wording does not reach but
    the interviewers' own wordings do, keyed by (case, turn).

    A team writes each protocol question once; the interviewers ask it in their own
    words ("And how did she respond?" for "How did the client react to your
    tears?"), and a sentence embedder puts such paraphrases at a cosine of 0.3-0.5,
    below ``join_similarity``. Left as follow-ups, their answers fall into the area
    asked before, and an area can end up with no question at all.

    So the questions (no probe, no frame prompt, no reflection without a question)
    are grouped across interviews by average linkage at ``area_similarity``, as an
    inferred protocol's are. A group asked in at least ``min_cases`` interviews is
    a question the interviewers asked everyone, and its questions that no wording
    of the file reaches open the area that

    * the team's wording gave to other questions of the group (the most of them),
      or, when it reached none,
    * whose team wording is nearest to the group's centre, when that is at least
      ``wording_similarity``: one paraphrase carries its own interview's words
      ("How did Dana respond, in the moment itself?"), the centre of several keeps
      what they share.

    An interview asks each protocol question once, so a question never opens an
    area that the team's words reached in its own interview: a question the file
    omits, asked everywhere next to one it lists, is not taken for that one. Short
    questions ("How did she respond?") take part, as they do in an inferred area
    group.
    """
    content = np.array([a not in frame_given for a in owner], dtype=bool)
    asked = [p for p in prompts if p.kind == "question" and p.vec >= 0 and p.asks
             and not (p.frame or p.probe)]
    if not content.any() or len(asked) < config.min_cases:
        return {}
    av = qv[[p.vec for p in asked]]
    sims = av @ given_vecs.T
    best = owner[sims.argmax(axis=1)]
    reached = sims.max(axis=1) >= np.array(
        [config.area_similarity if p.marked else config.join_similarity for p in asked])
    groups = _average_linkage_groups(av, config.area_similarity,
                                     cases=[p.case_id for p in asked])
    # an interview asks a protocol question once: where the team's words reached an
    # area's question in an interview, no other question there opens it by these rules
    own_words = {(p.case_id, int(b)) for p, b, r, g in zip(asked, best, reached, groups) if r}
    team, team_owner = given_vecs[content], owner[content]
    out: dict[tuple[str, int], int] = {}
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        if len({asked[i].case_id for i in members}) < config.min_cases or reached[members].all():
            continue
        hit = Counter(int(best[i]) for i in members if reached[i] and int(best[i]) not in frame_given)
        if hit:
            area = hit.most_common(1)[0][0]
        else:
            s = team @ _centre(av[members])
            if s.max() < config.wording_similarity:
                continue
            area = int(team_owner[int(s.argmax())])
        for i in members:
            if not reached[i] and (asked[i].case_id, area) not in own_words:
                out[(asked[i].case_id, asked[i].turn_index)] = area
    return out


def _result(protocol: Protocol, prompts: list[_Prompt], segments: pd.DataFrame,
            seg_prompt: np.ndarray, small_talk: np.ndarray, counts: Counter[str],
            frame: np.ndarray | None = None,
            frame_similarity: np.ndarray | None = None) -> ProtocolInference:
    prompt_area = {(p.case_id, p.turn_index): p.area for p in prompts}
    seg_area = np.array([prompt_area.get((c, int(t)), -1) if t >= 0 else -1
                         for c, t in zip(segments["case_id"].astype(str), seg_prompt)],
                        dtype=np.int64)
    table = pd.DataFrame(
        [(p.case_id, p.turn_index, p.role, p.speaker, p.final_kind or p.kind, p.area,
          (p.frame or "frame") if p.area >= 0 and protocol.areas[p.area].frame else "",
          p.core) for p in prompts], columns=list(PROMPT_COLUMNS))
    table = table.astype({"turn_index": "int64", "area_id": "int64"})
    opening = set(zip(table.loc[table["frame_kind"] == "opening", "case_id"],
                      table.loc[table["frame_kind"] == "opening", "turn_index"]))
    greeted = np.array([t >= 0 and (c, int(t)) in opening for c, t in
                        zip(segments["case_id"].astype(str), seg_prompt)], dtype=bool)
    kinds = Counter(table["kind"])
    counts.update({"prompts": len(prompts), "main_questions": kinds.get("main", 0),
                   "follow_ups": kinds.get("follow_up", 0), "probes": kinds.get("probe", 0),
                   "backchannels": kinds.get("backchannel", 0), "tasks": kinds.get("task", 0),
                   "frame_prompts": int((table["frame_kind"] != "").sum()),
                   "segments_in_frame_areas": int(np.isin(seg_area, protocol.frame_ids).sum())})
    return ProtocolInference(
        protocol=protocol, turns=table, segment_area=seg_area, segment_prompt_turn=seg_prompt,
        segment_small_talk=small_talk.astype(bool),
        segment_frame=(frame if frame is not None else np.zeros(len(segments), bool)).astype(bool),
        counts=dict(counts), segment_greeted=greeted,
        segment_frame_similarity=(np.full(len(segments), -np.inf) if frame_similarity is None
                                  else np.asarray(frame_similarity, dtype=np.float64)))


# --- Domains from the protocol --------------------------------------------------

#: DomainProposal.domains, one row per proposed domain, in protocol order, then new
#: domains, then the frame domain.
#: domain_id int; name str; kind str ("area": one protocol area; "new": content no
#: area covers; "frame": the interview frame); area_ids list[int] (the areas it comes from);
#: n_segments int (segments proposed for it: its areas' segments after moves);
#: n_cases int; in_cross_analysis bool (False for the frame unless include_frame);
#: n_moved_in int; n_moved_out int; example_row int (for a new domain: the row of its
#: most central segment; -1 otherwise)
DOMAIN_PROPOSAL_COLUMNS = ("domain_id", "name", "kind", "area_ids", "n_segments", "n_cases",
                           "in_cross_analysis", "n_moved_in", "n_moved_out", "example_row")
#: DomainProposal.merges: area_a int; area_b int; name_a str; name_b str; similarity float
MERGE_COLUMNS = ("area_a", "area_b", "name_a", "name_b", "similarity")


@dataclass(frozen=True)
class DomainProposal:
    """Domains started from the protocol and checked against the segments.

    Arrays are aligned with the segments: ``segment_domain`` the domain of the
    segment's area (-1: no area), ``moved`` where its content belongs to another
    area's domain, ``uncovered`` where no area centre is near it,
    ``proposed_domain`` where the segment is proposed to go (the moved-to or new
    domain, else its area's; -1: none), ``placed`` where a segment that answers no
    prompt was proposed for the domain nearest in content, ``area_domain`` area id ->
    domain id.
    """

    domains: pd.DataFrame               # DOMAIN_PROPOSAL_COLUMNS
    merges: pd.DataFrame                # MERGE_COLUMNS
    segment_domain: np.ndarray
    proposed_domain: np.ndarray
    moved: np.ndarray
    uncovered: np.ndarray
    area_domain: Mapping[int, int]
    placed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


#: k-means steps that move the centres seeded by the areas' questions to the answers
SEED_STEPS = 10


def propose_domains_from_protocol(segment_vectors: np.ndarray, segment_area: np.ndarray,
                                  protocol: Protocol, config: ProtocolConfig,
                                  segment_case: Sequence[str], *,
                                  segment_small_talk: np.ndarray | None = None,
                                  segment_text: Sequence[str] | None = None,
                                  area_vectors: np.ndarray | None = None,
                                  segment_greeted: np.ndarray | None = None,
                                  segment_frame_similarity: np.ndarray | None = None
                                  ) -> DomainProposal:
    """One domain per content area, one "Interview frame" domain for the frame
    areas (and small talk), checked against what the segments say.

    Rules (vectors are unit length; an area's *centre* is the normalised mean of
    its segments' vectors, used when it has at least ``min_centre_segments``):

    * **moved**: a segment is at least ``move_margin`` more similar to another
      content area's centre than to its own area's centre computed without it, and
      that area is in another domain. Its proposed domain is that area's. Segments
      of frame areas can move out (what a participant adds after "anything
      else?" is often content), but nothing moves into the frame: the frame is
      what its questions and small talk make it, and a move into it would take
      content out of the cross-analysis.
    * **merge**: two content areas whose centres have a cosine similarity of at
      least ``merge_similarity`` hold the same content; they are listed as a
      proposed merge (the domains stay apart until the team decides).
    * **placed**: a segment that answers no prompt (it comes before the first
      question of its case, or its transcript holds the participant's words only)
      is proposed for the domain of the content area whose centre is most similar,
      when that similarity is at least ``uncovered_similarity``; below it, the
      segment is uncovered (next rule). Where no segment answers a content
      question (no prompt at all, or a greeting and then the participant's story;
      the protocol given), every segment is placed so, and the areas' questions
      start the centres: ``area_vectors`` (one row per area: the
      normalised mean of its questions' vectors) puts each segment in the area,
      the frame's included, whose questions it is closest to; k-means steps
      (``SEED_STEPS``) move the centres to the answers, and each segment is then
      placed as above, in the frame too (the background questions take the
      background answers, as they would have); one that answered a frame prompt
      and goes elsewhere is marked as moved. Without ``area_vectors`` segments that
      answer no prompt stay in no domain. A segment that answers a greeting
      (``segment_greeted``: its prompt opens the interview and asks nothing, so it
      is in a frame area) is placed the same way when its content is near a
      content area, and marked as moved, when it is also at least ``move_margin``
      more similar to that area's centre than to the frame's (as a segment moves),
      the frame's anchor phrases (``segment_frame_similarity``: small talk,
      background, consent) included; else it stays in the frame. (A participant who tells their story after
      "thanks for joining me" was set apart whole; a joke about the lunch break went
      to a content domain.)
    * **new domain**: segments less similar than ``uncovered_similarity`` to every
      centre (their own without them) are *uncovered*; uncovered segments grouped by
      average linkage at ``new_domain_similarity`` make a new domain when a group has
      at least ``new_domain_min_segments`` segments from at least
      ``new_domain_min_cases`` cases. It is named after the opening words of its most
      central segment when ``segment_text`` is given (that segment's row is its
      ``example_row``), else numbered.
    * Frame areas and small-talk segments go to the frame domain; it is listed but
      ``in_cross_analysis`` is False unless ``include_frame``. Small talk is never
      moved or uncovered.
    """
    vecs = _unit_rows(segment_vectors) if len(segment_vectors) else \
        np.zeros((0, 1), np.float32)
    area = np.asarray(segment_area, dtype=np.int64)
    cases = np.asarray([str(c) for c in segment_case], dtype=object)
    n = len(area)
    if len(vecs) != n or len(cases) != n:
        raise ConsensaError(f"segment_vectors ({len(vecs)}), segment_area ({n}) and "
                            f"segment_case ({len(cases)}) must have one row per segment")
    if n and (area.max() >= len(protocol.areas) or area.min() < -1):
        raise ConsensaError(f"segment_area holds area ids outside 0..{len(protocol.areas) - 1}")
    talk = np.zeros(n, bool) if segment_small_talk is None else \
        np.asarray(segment_small_talk, dtype=bool)
    content_areas = [a for a in protocol.areas if not a.frame]
    frame_areas = [a for a in protocol.areas if a.frame]
    area_domain = {a.area_id: d for d, a in enumerate(content_areas)}
    next_id = len(content_areas)

    # no segment answers a content question (no question at all, or a greeting and
    # then the participant's story): the areas' questions place every segment, the
    # frame's too (the background questions take the background answers, as they would
    # have); otherwise only the segments that answer no prompt are placed
    content_cols = np.array([not a.frame for a in protocol.areas], dtype=bool)
    in_content = (area >= 0) & content_cols[np.clip(area, 0, None)] if len(content_cols) \
        else np.zeros(n, bool)
    seeded = bool(area_vectors is not None and content_cols.any() and (~talk).any()
                  and not (in_content & ~talk).any())
    greeted = np.zeros(n, bool) if segment_greeted is None else \
        np.asarray(segment_greeted, dtype=bool)
    if segment_frame_similarity is not None and len(segment_frame_similarity) != n:
        raise ConsensaError(f"segment_frame_similarity has {len(segment_frame_similarity)} "
                            f"rows; expected one per segment ({n})")
    unlinked = ~talk if seeded else ((area < 0) | greeted) & ~talk

    # centres, with each member's leave-one-out similarity to its own centre
    dim = vecs.shape[1]
    sums = np.zeros((len(protocol.areas), dim), np.float64)
    sizes = np.zeros(len(protocol.areas), np.int64)
    active = (area >= 0) & ~talk & ~unlinked
    for a in range(len(protocol.areas)):
        m = active & (area == a)
        sizes[a] = int(m.sum())
        if sizes[a]:
            sums[a] = vecs[m].sum(axis=0)
    if seeded:
        av = _unit_rows(np.asarray(area_vectors, dtype=np.float32))
        if av.shape != (len(protocol.areas), dim):
            raise ConsensaError(f"area_vectors has shape {av.shape}; expected one row per "
                                f"protocol area ({len(protocol.areas)}) of {dim} dimensions")
        cols = np.flatnonzero(np.linalg.norm(av, axis=1) > 0)      # areas with questions
        u = vecs[unlinked]
        start = cols[(u @ av[cols].T).argmax(axis=1)]
        # then k-means steps from there: an answer is closer to other answers than to
        # a question, so the centres move to where the answers are
        for _ in range(SEED_STEPS):
            live = np.unique(start)
            centre = _unit_rows(_group_sums(u, np.searchsorted(live, start), len(live)))
            step = live[(u @ centre.T).argmax(axis=1)]
            if np.array_equal(step, start):
                break
            start = step
        sizes += np.bincount(start, minlength=len(sizes))
        sums += _group_sums(u, start, len(sums))
    has_centre = sizes >= config.min_centre_segments
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    centres = np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0).astype(np.float32)
    sim = vecs @ centres.T if len(protocol.areas) else np.zeros((n, 0), np.float32)
    sim[:, ~has_centre] = -2.0
    own = np.full(n, -2.0, np.float32)
    for i in np.flatnonzero(active):
        a = area[i]
        if has_centre[a] and sizes[a] > 1:
            rest = sums[a] - vecs[i]
            nr = np.linalg.norm(rest)
            own[i] = float(rest @ vecs[i] / nr) if nr > 0 else -2.0
            sim[i, a] = own[i]

    frame_id = None
    if frame_areas or talk.any():
        frame_id = -2                         # numbered after the new domains
        for a in frame_areas:
            area_domain[a.area_id] = frame_id

    def domain_of(a: int) -> int:
        return area_domain.get(int(a), -1) if a >= 0 else -1

    moved = np.zeros(n, bool)
    proposed = np.array([domain_of(a) for a in area], dtype=np.int64)
    segment_domain = proposed.copy()
    best_sim = sim.max(axis=1) if sim.shape[1] else np.full(n, -2.0)
    frame_cols = ~content_cols
    for i in np.flatnonzero(active):
        a = area[i]
        others = sim[i].copy()
        others[a] = -2.0
        others[frame_cols] = -2.0       # nothing is moved into the frame (see the rules)
        b = int(others.argmax()) if len(others) else -1
        if b < 0 or others[b] <= -2.0:
            continue
        if others[b] - own[i] >= config.move_margin and own[i] > -2.0 and \
                domain_of(b) != domain_of(a):
            moved[i] = True
            proposed[i] = domain_of(b)

    # segments that answer no prompt: to the nearest content area's domain, when near
    # (the frame's too when the questions placed them: see above)
    placed = np.zeros(n, bool)
    if unlinked.any() and sim.shape[1]:
        rows_u = np.flatnonzero(unlinked)
        near = sim[rows_u] if seeded else np.where(content_cols[None, :], sim[rows_u], -2.0)
        nearest = near.argmax(axis=1)
        best_near = near[np.arange(len(rows_u)), nearest]
        ok = best_near >= config.uncovered_similarity
        if not seeded and frame_cols.any():
            # a reply to a greeting leaves the frame only as a moved segment would: at
            # least move_margin nearer a content area than the frame's own answers.
            # Small talk ("Lunch break is a theoretical concept at our clinic") can be
            # as near a content area as the background answers are, and went there
            # The frame's own answers may be too few for a centre, or none like this
            # one: "I signed the consent form and sent it back" went to the repair
            # domain. Its anchor phrases stand for the frame too.
            frame_near = sim[rows_u][:, frame_cols].max(axis=1)
            if segment_frame_similarity is not None:
                frame_near = np.maximum(frame_near, np.asarray(
                    segment_frame_similarity, dtype=np.float64)[rows_u])
            ok &= ~greeted[rows_u] | (best_near - frame_near >= config.move_margin)
        placed[rows_u[ok]] = True
        proposed[rows_u[ok]] = [domain_of(int(b)) for b in nearest[ok]]
        # one that answers a frame prompt (a greeting) and goes elsewhere has moved
        moved |= placed & (area >= 0) & (proposed != segment_domain)
        if not seeded:
            placed &= ~greeted              # counted as moved, not as answering no prompt

    # uncovered content and new domains
    candidates = ~talk & (best_sim < config.uncovered_similarity) & \
        (has_centre.any() if len(has_centre) else False)
    if not seeded:
        # a reply to a greeting that no content area is near stays in the frame: chat
        # such as "I can hear you fine" is no new domain
        candidates &= ~greeted
    uncovered = candidates.copy()
    new_rows = []
    idx = np.flatnonzero(candidates)
    if len(idx) >= config.new_domain_min_segments:
        labels = _average_linkage_groups(vecs[idx], config.new_domain_similarity,
                                         cases=[str(c) for c in cases[idx]])
        for g in range(int(labels.max()) + 1):
            members = idx[labels == g]
            if len(members) < config.new_domain_min_segments or \
                    len(set(cases[members])) < config.new_domain_min_cases:
                continue
            m = vecs[members]
            central = members[int((m @ _centre(m)).argmax())]
            new_rows.append((next_id, members, int(central)))
            proposed[members] = next_id
            moved[members] = False
            next_id += 1
    if frame_id is not None:
        frame_id = next_id
        for a in frame_areas:
            area_domain[a.area_id] = frame_id
        segment_domain[segment_domain == -2] = frame_id
        proposed[proposed == -2] = frame_id
        proposed[talk] = frame_id

    rows = []

    def row(d: int, name: str, kind: str, area_ids: list[int], in_cross: bool) -> dict:
        members = proposed == d
        return {"domain_id": d, "name": name, "kind": kind, "example_row": -1,
                "area_ids": [int(a) for a in area_ids],
                "n_segments": int(members.sum()), "n_cases": int(len(set(cases[members]))),
                "in_cross_analysis": in_cross,
                # moved in: from another question's domain (a segment that answers no
                # question was placed, not moved)
                "n_moved_in": int((members & (segment_domain >= 0)
                                   & (segment_domain != d)).sum()),
                "n_moved_out": int(((segment_domain == d) & ~members).sum())}

    for a in content_areas:
        rows.append(row(area_domain[a.area_id], a.name, "area", [a.area_id], True))
    for k, (d, _members, central) in enumerate(new_rows, 1):
        name = f"Not in the protocol ({k})"
        if segment_text is not None:
            words = str(segment_text[central]).split()
            name = "Not in the protocol: " + " ".join(words[:config.name_max_words]) + \
                ("…" if len(words) > config.name_max_words else "")
        rows.append({**row(d, name, "new", [], True), "example_row": central})
    if frame_id is not None:
        rows.append(row(frame_id, FRAME_DOMAIN, "frame", [a.area_id for a in frame_areas],
                        config.include_frame))
    domains = pd.DataFrame(rows, columns=list(DOMAIN_PROPOSAL_COLUMNS))
    merges = []
    for i, a in enumerate(content_areas):
        for b in content_areas[i + 1:]:
            if has_centre[a.area_id] and has_centre[b.area_id]:
                s = float(centres[a.area_id] @ centres[b.area_id])
                if s >= config.merge_similarity:
                    merges.append((a.area_id, b.area_id, a.name, b.name, round(s, 4)))
    merges_df = pd.DataFrame(merges, columns=list(MERGE_COLUMNS))
    return DomainProposal(domains=domains, merges=merges_df, segment_domain=segment_domain,
                          proposed_domain=proposed, moved=moved, uncovered=uncovered,
                          area_domain=dict(area_domain), placed=placed)
