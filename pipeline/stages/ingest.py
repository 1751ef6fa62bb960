"""Read interview transcripts into a :class:`Corpus` of speaker turns.

Formats, by extension: ``.txt``/``.md``/``.docx`` (a speaker label starts each
turn at the start of a line), ``.vtt``/``.srt`` (subtitle cues with ``<v Name>``
voice tags or ``Name:`` prefixes), ``.csv``/``.xlsx`` (one row per turn, many
cases per table) and ``.qdpx`` (a REFI-QDA project: each text source a case, read
as a .txt is). Every turn's ``text`` is exactly
``corpus.sources[case_id].text[start_char:end_char]``, so quotes point back to
the place they came from.

Control characters: a form feed or vertical tab (page and line breaks from a
conversion) becomes a space, and every other C0/C1 control character but tab,
newline and carriage return (escape, DEL, ...) is removed, in every format and
before anything is parsed, so the source text, the turns and every offset agree; so
is an invisible format character (Unicode category Cf: a zero-width space, a direction
mark, a soft hyphen, a byte-order mark in the middle of a file) at a line's start or
inside a speaker label, which would hide the label, and a direction override or
isolate anywhere, which shows a quote reversed (:data:`_CONTROLS`).
So is a stray NUL in a text or CSV file (a few, none next to another unless the file
is otherwise UTF-8: more are a binary file, refused, see :mod:`pipeline.textio`). Each file where this happened
gets a note, and the manifest counts them (``control_characters_replaced``,
``control_characters_removed``). A spreadsheet cannot hold these characters, and
they carry no words.

Speaker labels (.txt/.md/.docx and subtitle prefixes): ``speaker_pattern`` is
matched at the start of each line; a label of more than four words is not a
label. The default accepts "Interviewer:", "I:", "P3:", "**Therapist:**",
"Participant 7:", "Dr. Okafor:", role words in lower case ("interviewer:"), a
name or role with an aside in parentheses ("Interviewer (Mara):", "Sam (P3):", "Dana
Whitfield (she/her):"), and
rejects "What I noticed was this: ..." (words after the first must be capitalised
or numbers) and "so: ..." (a word in lower case is a label only if it is a role).
A capital is one of any script that has them ("Łucja Nowak:", "İpek:", "Đặng Thu Hà:";
:data:`_LETTER_CLASSES`). A speaker ``roles`` names is a label however it is written
("zoe lindqvist:", "Whitfield, Dana:", "王芳:"; :func:`_named_labels`), and so is a
recogniser's numbered speaker ("speaker_00:"), also in brackets as WhisperX writes it,
with or without a colon ("[SPEAKER_00]: ...", "[SPEAKER_00] ...";
:data:`_BRACKETED_SPEAKER`), after a time range as whisper.cpp writes one. Labels that differ only in case or in
"_" and spaces are one speaker, written one way (:func:`label_key`,
:func:`_one_spelling`), and a line opening with one of its file's labels written another
way is that speaker's turn (:meth:`_Reader._other_spellings`). In a subtitle
file whose cues nearly all open with a name, as Zoom's do, a display name no pattern
reads ("Zoë Lindqvist | Uppsala:", "zoe lindqvist:") that opens two cues or more is a
label too, and noted (:meth:`_Reader._cue_names`).
A file with no such label may write each label alone on a line with its time and
no colon, the words following ("Mara Reyes   0:03", as Teams and Otter save
transcripts; :data:`HEADING_LABEL_PATTERN`). A Markdown heading
line after the first label ("## Training") is a turn labelled "Heading", as a Word
heading is (see :func:`_docx_text`). A line labelled as a
transcriber's note ("Note:", "NB:", "Transcriber's note:") or a prompt ("Task 1:",
"Section B:"; ``not_speakers``) is a turn of role "other", kept and not analysed, and
takes no part in the role rules below.
Known trade-off: a paragraph inside a turn that starts with another capitalised word
and a colon ("Update: ...") starts a new turn for that "speaker"; it matches no role,
so it is reported. So does a line that opens like a label with a spreadsheet formula's
first character ("=cmd: ..."), which no pattern takes for a label: read as words, it
was the end of another speaker's turn (:data:`_SIGNED_LABEL`). Inline HTML formatting
tags ("<b>P</b>:") are removed before the labels are read (:func:`strip_inline_tags`),
counted as ``inline_tags_removed``.
Leading one-line "Key: value" lines whose key matches no role and is used only
once (``Date: 3 May``) are header lines, not turns.

Roles: a label gets its role from, in order, the table's role column (if
configured and filled in), ``roles`` (label -> role, case-insensitive),
``interviewer_speakers``, then ``participant_speakers`` (case-insensitive
regexes, full match on the label). If no label of a case is a participant by
these rules and exactly one label matched nothing, that label is the
participant (an interview with a named participant). If no label of a case has a
role by these rules and it has exactly two speakers ("Speaker 1" and "Speaker 2",
as Otter and Zoom name them, or two display names from Teams), the one who asks
the questions is the interviewer and the other the participant, when the turns say
so clearly (:data:`ASKER_MIN_QUESTIONS` turns with a question, a share of
questions at least :data:`ASKER_RATIO` times the other's; in a case with no "?" at
all, a turn that opens as a question does, :func:`opens_with_a_question`); the note
says so, and
``roles`` overrides it. Every other unmatched label gets role "other": its turns
are kept but not analysed, and it is reported in ``Corpus.skipped``.

Nothing is lost without a word: a listed path that is not a file (a broken
symbolic link, a link loop, a folder named "T01.txt", a pipe) is noted, and so is
a file whose name is not valid UTF-8 (possible on Linux; it is not read, since no
table or report can hold its name, and the other files are); so is
each line of a file that mixes UTF-8 and Windows-1252 lines (each line is decoded
in its own encoding, see :mod:`pipeline.textio`), each .xlsx text cell holding a
formula (a formula is not spoken words: the turn is left out), and each subtitle
cue that ends before it starts (its words are kept, its times dropped), and each
cue that starts before an earlier cue of its file (kept where the file has it). The
manifest counts them (``paths_not_read``, ``lines_decoded_as_cp1252``,
``xlsx_formula_cells_not_read``, ``cue_times_dropped``, ``cues_out_of_order``). A .csv/.xlsx table whose
header gives a column Consensa reads twice (two ``text`` columns, or ``Text`` and
``text``) is refused, naming both, since only one of them would be read.
"""

from __future__ import annotations

import bisect
import codecs
import datetime
import errno
import hashlib
import html
import io
import lzma
import math
import os
import re
import unicodedata
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import groupby, pairwise
from operator import itemgetter
from pathlib import Path
from typing import Literal

import docx
import pandas as pd
from docx.oxml.ns import qn
from docx.oxml.xmlchemy import BaseOxmlElement
from lxml import etree
from pydantic import BaseModel, ConfigDict, field_validator

from ..errors import ConsensaError, InputError, Skipped
from ..exchange.qde import text_sources
from ..fsutil import anchored
from ..textio import MIXED, TIME_MARK, cp1252_lines, decode_bytes, escaped
from ..types import ROLES, TURN_COLUMNS, Corpus, SourceText

Role = Literal["participant", "interviewer", "other"]


def _category_classes(classes: Mapping[str, frozenset[str]]) -> dict[str, str]:
    """For each name in ``classes``, the body of a regex character class ("A-ZÀ-ÖØ-Þ...")
    holding every character of its Unicode categories. Planes 0, 1 and 14 hold every
    cased letter, mark and format character (planes 2-3 are ideographs, which have no
    case); scanning only those, once for all the classes, keeps the import quick."""
    owner = {category: name for name, categories in classes.items() for category in categories}
    ranges: dict[str, list[str]] = {name: [] for name in classes}
    for plane in (range(0x20000), range(0xE0000, 0xE1000)):
        names = map(owner.get, map(unicodedata.category, map(chr, plane)))
        for name, run in groupby(zip(plane, names, strict=True), key=itemgetter(1)):
            if name is not None:
                points = [point for point, _ in run]
                first, last = points[0], points[-1]
                ranges[name].append(re.escape(chr(first)) + (
                    f"-{re.escape(chr(last))}" if last > first else ""))
    return {name: "".join(found) for name, found in ranges.items()}


#: Unicode classes Python's ``re`` has no syntax for, which a speaker pattern writes as
#: ``\p{Lu}`` (a capital letter of any script, titlecase "ǅ" included), ``\p{Ll}`` (a
#: lower-case letter) and ``\p{M}`` (a combining mark, as a name typed on a Mac holds:
#: "Zoe" and U+0308 for "Zoë"), alone or inside brackets (:func:`letter_classes`).
#: A label's capital was "[A-ZÀ-ÖØ-Þ]", Latin-1's: "Łucja:", "Şule:", "İpek:" and
#: "Đặng Thu Hà:" were no labels, and their lines the end of the turn above.
_CLASSES = _category_classes({"Lu": frozenset({"Lu", "Lt"}), "Ll": frozenset({"Ll"}),
                               "M": frozenset({"Mn", "Mc", "Me"}), "Cf": frozenset({"Cf"})})
_LETTER_CLASSES = {name: _CLASSES[name] for name in ("Lu", "Ll", "M")}
_LETTER_CLASS = re.compile(r"\\p\{(Lu|Ll|M)\}")


def letter_classes(pattern: str) -> str:
    r"""``pattern`` with each ``\p{Lu}``, ``\p{Ll}`` and ``\p{M}`` written out as the
    characters it stands for (:data:`_LETTER_CLASSES`): a class of its own where it
    stands alone, its characters where it is inside brackets ("[\p{Lu}0-9]"). Written
    out in the default pattern, the classes made the config saved beside every run
    thousands of characters long; any pattern ``re`` reads is left as it is."""
    if "\\p{" not in pattern:
        return pattern
    out: list[str] = []
    i, opened = 0, -1               # where the bracket class we are in opened (-1: none)
    while i < len(pattern):
        ch = pattern[i]
        found = _LETTER_CLASS.match(pattern, i) if ch == "\\" else None
        if found:
            body = _LETTER_CLASSES[found[1]]
            out.append(body if opened >= 0 else f"[{body}]")
            i = found.end()
            continue
        step = 2 if ch == "\\" else 1           # an escaped character is one
        if opened < 0 and ch == "[":
            opened = i + 1 + (pattern[i + 1:i + 2] == "^")
        elif opened >= 0 and ch == "]" and i > opened:   # "[]...]": the first "]" is a character
            opened = -1
        out.append(pattern[i:i + step])
        i += step
    return "".join(out)


_FIRST_WORD = r"\p{Lu}[\w\p{M}.'’-]*"
_NEXT_WORD = (r"(?:[\p{Lu}0-9][\w\p{M}.'’-]*"
              r"|van|von|der|den|de|da|del|di|du|la|le|bin|al)")
#: A speaker's name or label: one to four words, the first capitalised (in any script
#: that has capitals)
_NAME = rf"{_FIRST_WORD}(?: {_NEXT_WORD}){{0,3}}"
#: A time stamp beside a label, as transcription services write it: "[00:04:02]",
#: "(4:02)", "00:04:02.5", before the label or, in brackets, after it.
_STAMP = r"(?:\d{1,2}:)?\d{1,2}:\d{2}(?:[.,]\d{1,3})?"
#: Role words a transcript may write in lower case ("interviewer:", "participant 3:"):
#: a label all the same. Any other word in lower case before a colon is speech.
_ROLE_WORD = (r"(?:interviewer|interviewee|participant|respondent|therapist|client"
              r"|moderator|facilitator|researcher)(?: ?\d+)?"
              # a diarising recogniser's numbered speakers, in any case ("speaker_00:")
              r"|(?i:speaker)[ _]?\d{1,3}")
#: A diarising recogniser's numbered speaker in brackets, as WhisperX writes it,
#: with or without a colon, after a time or a time range or none: "[SPEAKER_00]: ...",
#: "[SPEAKER_00] ...", "[00:00:00.000 --> 00:00:04.000] [SPEAKER_00]: ...". Without a
#: colon, only such a number is a label: "[Laughs] yes" is speech.
_BRACKETED_SPEAKER = re.compile(
    rf"^\s*(?:\[(?P<time>{_STAMP})(?:\s*-->\s*{_STAMP})?\]\s*)?"
    r"\[(?P<speaker>(?i:speaker)[ _]?\d{1,3})\](?:[ \t]*:)?[ \t]*")
#: Pronouns a display name carries in parentheses: "Dana Whitfield (she/her)"
_PRONOUNS = r"\p{Ll}+(?:/\p{Ll}+){1,2}"
#: A label with an aside in parentheses: "Interviewer (Mara)", "Sam (P3)", "Dana
#: Whitfield (she/her)". The role comes from the whole label, else from the part before
#: the parentheses, else from the aside (:class:`_Roles`).
_LABEL = rf"(?:{_NAME}|{_ROLE_WORD})(?: ?\((?:{_NAME}|{_ROLE_WORD}|{_PRONOUNS})\))?"
_ASIDE = re.compile(r"^(?P<outer>.+?) ?\((?P<inner>[^()]+)\)$")


#: A line that opens like a label but with a spreadsheet formula's first character
#: ("=cmd: ...", "@Mara: "; one word, "=HYPERLINK(...)" is none): no label the speaker
#: pattern knows, and no speech either, which never starts so. Read as words, it and the
#: lines under it were the end of the turn above, another speaker's. It is a turn of its
#: own, under its label as written; unless ``ingest.roles`` names it, it takes no part in
#: the role rules and is named with the labels that match no role (:meth:`_Roles.assign`).
#: It is no sign of how a file writes its labels (:meth:`_Reader._labelled_turns`).
_SIGNS = "=+@\uff1d\uff0b\uff20"
_SIGNED_LABEL = re.compile(
    rf"^\s*(?P<speaker>[{_SIGNS}][^\W\d_][\w.'’-]{{0,39}})[ \t]*:(?=\s|$)")


def _signed(label: str) -> bool:
    """Whether ``label`` was read by :data:`_SIGNED_LABEL`."""
    return label[:1] in _SIGNS


#: A Markdown heading line ("## Training"): after the first speaker label, a turn of
#: its own labelled :data:`HEADING_SPEAKER` (as a Word heading is), not the last words of
#: the turn above it
_MD_HEADING = re.compile(r"[ ]{0,3}#{1,6}[ \t]+(?P<words>\S.*?)[ \t]*")
_MARK_AT_END = re.compile(TIME_MARK.pattern + r"\s*\Z")


def _names_a_form(label: str) -> bool:
    """Whether a block's label shows how the file writes its labels: not a heading's,
    and not one read by :data:`_SIGNED_LABEL` alone."""
    return label != HEADING_SPEAKER and not _signed(label)


def label_parts(label: str) -> tuple[str, ...]:
    """A speaker label's parts: ("Interviewer", "Mara") for "Interviewer (Mara)", the
    label alone when it has no aside in parentheses."""
    aside = _ASIDE.match(" ".join(label.split()))
    return (aside["outer"], aside["inner"]) if aside else (label,)


def _colon_label(speaker: str) -> str:
    """A speaker label ending in a colon at the start of a line, the speaker as
    ``speaker`` (a regex) says, maybe in brackets ("[SPEAKER_01]:", as WhisperX writes
    it): with a time stamp or a time range before it ("[00:04:02] Sam:", whisper.cpp's
    "[00:00:00.000 --> 00:00:04.000] SPEAKER_00:"), in brackets after it ("Sam
    (4:02):") or in brackets right after the colon ("Speaker 1: (00:02) ...", as some
    services write it: read as words, the stamp opened every turn and the turn had no
    time)."""
    return (rf"^\s*(?:[\[(]?(?P<time>{_STAMP})(?:\s*-->\s*{_STAMP})?[\])]?\s*[-–]?\s*)?"
            rf"[*_]{{0,2}}(?P<bracket>\[)?(?P<speaker>{speaker})(?(bracket)\])"
            rf"(?:\s*[\[(](?P<time_after>{_STAMP})[\])])?"
            r"[*_]{0,2}\s*:(?!\d)[*_]{0,2}\s*"      # "Monday 9:00" is a time, not a label
            rf"(?:[\[(](?P<time_said>{_STAMP})[\])](?!\S)\s*)?")


def _name_and_time(speaker: str) -> str:
    """A speaker (``speaker``, a regex) and a time stamp alone on a line
    (:data:`HEADING_LABEL_PATTERN`), the time after the name or before it ("[00:00:03]
    **Dana Whitfield**", as Trint writes a .docx: read as no label, the whole file was
    refused)."""
    after = r"(?:\s+|\s*[-–|]\s*)[\[(]?({})[\])]?[*_]{{0,2}}"
    return (rf"^\s*(?:[\[(]?(?P<time>{_STAMP})[\])]?\s+)?"
            rf"(?:[*_]{{0,2}}|\[)(?P<speaker>{speaker})(?:[*_]{{0,2}}|\])"
            # a time after the name, which a line with none before it must have
            rf"(?(time)|(?={after.format('?:' + _STAMP)}\s*$))"
            rf"(?:{after.format('?P<time_after>' + _STAMP)})?\s*$")


DEFAULT_SPEAKER_PATTERN = _colon_label(_LABEL)
#: A speaker's name and a time stamp alone on a line, the words on the lines after it:
#: "Mara Reyes   0:03" (a Teams transcript saved as .docx), "Speaker 1  0:00" (Otter's
#: .txt), "[Mara Reyes] 14:02:03" (Zoom's saved captions). Read only in a file with
#: no "Name:" label, and only with the default ``speaker_pattern``: a file keeps to
#: one way of writing labels, so a line such as "Monday 9:00" inside a labelled turn
#: is speech, never a new turn.
HEADING_LABEL_PATTERN = _name_and_time(_NAME)


def _named_labels(names: Iterable[str], heading: bool) -> re.Pattern[str] | None:
    """A label naming one of ``names`` (the speakers ``ingest.roles`` names), in any case,
    with "_" or spaces between its words (:func:`label_key`), and whatever characters it
    holds ("zoe lindqvist:", "Whitfield, Dana:", "王芳:", "speaker_00:" for "SPEAKER 00"):
    the team said who speaks, so such a line is that speaker's turn even where the
    default pattern sees no name. ``heading``: the name alone with a time
    (:func:`_name_and_time`), else the name and a colon. None when no name is given.
    The longest name is tried first: "Dana Whitfield" before "Dana"."""
    names = sorted({label_key(n) for n in names} - {""}, key=len, reverse=True)
    if not names:
        return None
    spoken = "(?i:" + "|".join(r"[\s_]+".join(map(re.escape, n.split())) for n in names) + ")"
    return _compile(_name_and_time(spoken) if heading else _colon_label(spoken))


#: What Teams writes between the turns of a transcript in that form: "Mara Reyes started
#: transcription", "... stopped transcription". Not speech: it ends the turn above.
_MEETING_NOTICE = re.compile(letter_classes(
    rf"^\s*{_NAME} (?:started|stopped) "
    r"(?:transcription|recording)\s*$"))
DEFAULT_INTERVIEWER_SPEAKERS = [r"interviewer( ?\d+)?", "i", "int", "q", "moderator",
                                "facilitator", r"researcher( ?\d+)?"]
DEFAULT_PARTICIPANT_SPEAKERS = [r"participant( ?\d+)?", r"p ?\d*", "t", r"therapist( ?\d+)?",
                                r"respondent( ?\d+)?", "r", "client", "interviewee", "a"]
#: Labels a transcriber writes before a note of their own ("Note: the phone rang")
NOTE_LABELS = [r"notes?", "nb", r"n\.b\.", r"(transcriber|editor|translator)('?s)?( note)?",
               r"transcription note", "comment", r"observer('?s)?( note)?", "observation",
               "aside"]
#: Labels of a prompt read out or shown: "Task 1", "Section B", "Vignette 1a", and a
#: .docx heading (:data:`HEADING_SPEAKER`). The protocol stage reads them as prompts.
PROMPT_LABELS = [
    r"(?:task|scenario|prompt|vignette|exercise|activity|section|topic|part|question|stimulus|"
    r"instruction|heading)s?(?: ?\d[\w.]{0,3}| [a-z](?:\d[\w.]{0,2})?)?"]
#: Labels that name no speaker: a note's or a prompt's. Such a line is kept as role
#: "other" and takes no part in the role rules: one "Note:" or "Task 1:" line beside a
#: named participant made two unknown labels, and every participant turn "other".
DEFAULT_NOT_SPEAKERS = NOTE_LABELS + PROMPT_LABELS
#: The label a .docx heading paragraph is given (Heading 1-9, Title, Subtitle styles)
HEADING_SPEAKER = "Heading"
SUPPORTED_SUFFIXES = (".txt", ".md", ".docx", ".vtt", ".srt", ".csv", ".xlsx", ".qdpx")
MAX_UNZIPPED_BYTES = 200 * 1024 * 1024
MAX_COMPRESSION_RATIO = 100
_MAX_WORDS_IN_LABEL = 4


class TableMapping(BaseModel):
    """Column names of a .csv/.xlsx transcript table (one row per turn, or per timed
    piece of speech in a speech-recognition export)."""

    model_config = ConfigDict(extra="forbid")

    #: a table without this column is one interview, the file's name its case id (as
    #: for every other format), unless another column is named here on purpose (the
    #: default name, written out in a run folder's config.yaml, is no such choice)
    case_id: str = "case_id"
    speaker: str = "speaker"
    text: str = "text"
    turn_index: str | None = "turn_index"   # orders the rows when the column exists
    role: str | None = None                 # a column holding roles directly
    sheet: str | int = 0                    # .xlsx sheet name or 0-based position
    #: when the row was said (seconds, or a time stamp "00:01:02.5"), used when the
    #: column exists; a table with times is an export of timed speech, whose
    #: consecutive rows of one speaker make one turn, as a subtitle file's cues do
    start: str | None = "start"
    end: str | None = "end"


class IngestConfig(BaseModel):
    """The ``ingest`` section of a run config. Loading a config makes its paths
    absolute (:func:`pipeline.config.resolve_paths`); relative paths in a section
    built in code are read from the ``base_dir`` given to :func:`ingest`."""

    model_config = ConfigDict(extra="forbid")

    paths: list[Path] = []
    recursive: bool = False
    cases_table: Path | None = None
    speaker_pattern: str = DEFAULT_SPEAKER_PATTERN
    interviewer_speakers: list[str] = DEFAULT_INTERVIEWER_SPEAKERS
    participant_speakers: list[str] = DEFAULT_PARTICIPANT_SPEAKERS
    not_speakers: list[str] = DEFAULT_NOT_SPEAKERS
    roles: dict[str, Role] = {}
    #: roles for one case's labels, by case id, before ``roles``: a diarising recogniser
    #: numbers the speakers of each file afresh, so SPEAKER_00 may be the interviewer in
    #: one case and the participant in the next (:meth:`_Roles.contradicted`)
    case_roles: dict[str, dict[str, Role]] = {}
    table: TableMapping = TableMapping()
    encoding: str = "auto"
    case_id_from: Literal["stem"] = "stem"

    @field_validator("paths", mode="before")
    @classmethod
    def _one_path_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, (str, Path)) else value

    @field_validator("speaker_pattern")
    @classmethod
    def _speaker_pattern_compiles(cls, value: str) -> str:
        if "speaker" not in _compile(value).groupindex:
            raise ValueError("needs a named group (?P<speaker>...) around the label")
        return value

    @field_validator("interviewer_speakers", "participant_speakers", "not_speakers")
    @classmethod
    def _role_patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            _compile(pattern)
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        if value != "auto":
            # any text encoding Python knows (a study may have Mac Roman or Latin-1 files);
            # codecs.lookup alone also passes bytes-to-bytes codecs such as 'base64',
            # which only fail on the first file, so a decode is tried here
            try:
                codecs.lookup(value)
            except LookupError:
                raise ValueError(f"unknown encoding '{value}'; {_ENCODINGS}") from None
            try:
                b"a".decode(value)
            except LookupError:
                raise ValueError(f"'{value}' is not a text encoding; {_ENCODINGS}") from None
            except (UnicodeError, ValueError):
                pass            # a text encoding in which one byte "a" is no character
        return value


_ENCODINGS = ("use 'auto' (the default: UTF-8, UTF-16 or Windows-1252, detected per file) "
              "or the name of a text encoding, such as 'utf-8', 'utf-16', 'cp1252', "
              "'latin-1' or 'mac-roman'")


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(letter_classes(pattern))
    except re.error as exc:
        raise ValueError(f"'{pattern}' is not a valid regular expression: {exc}") from None


def ingest(config: IngestConfig, base_dir: Path = Path(".")) -> Corpus:
    """Read every transcript under ``config.paths`` into a :class:`Corpus`.

    Files that cannot be read are left out and listed in ``Corpus.skipped``;
    raises :class:`InputError` when no transcript is left, or when the cases
    table cannot be used.
    """
    if not config.paths:
        raise InputError("no transcript files or folders are configured",
                         field="ingest.paths",
                         hint="list the transcript files or folders under ingest.paths")
    cases_table = anchored(config.cases_table, base_dir) if config.cases_table else None
    files, skipped = _list_files(config, base_dir, cases_table)
    n_listed = len(skipped)                 # paths listed but not read (not files, unsupported)
    reader = _Reader(config)
    cases: dict[str, _Case] = {}
    attributes: dict[str, dict[str, str]] = {}       # of the cases kept, from their file
    reads: list[_Read] = []
    for path in files:
        shown = str(path)
        try:
            result = reader.read(path, shown)
        except ConsensaError as err:
            skipped.append(_as_skipped(err, shown))
            continue
        reads.append(result)
        skipped.extend(result.notes)
        for case in result.cases:
            if case.case_id in cases:
                skipped.append(Skipped(shown, (
                    f"case '{case.case_id}' is also in {cases[case.case_id].source.path}; "
                    "this copy was left out (cases are never merged): rename or remove "
                    "one of the two")))
                continue
            cases[case.case_id] = case
            if case.attributes:
                attributes[case.case_id] = case.attributes
    if not cases:
        raise _nothing_read(config, files, skipped)

    counts = {"control_characters_replaced": sum(r.replaced for r in reads),
              "control_characters_removed": sum(r.removed for r in reads)}
    counts.update({"paths_not_read": n_listed,
                   **{key: sum(r.tally[key] for r in reads) for key in _TALLIES},
                   "cases_roles_contradicted": 0})
    records = []
    times: dict[str, tuple[tuple[int, int, float, float], ...]] = {}
    for case in cases.values():
        text = case.source.text
        named = [*config.case_roles.get(case.case_id, {}), *config.roles]
        if (spelled := _one_spelling(case, named)) is not None:
            skipped.append(spelled)
        if any(len(turn.pieces) > 1 for turn in case.turns):
            times[case.case_id] = tuple(p for turn in case.turns for p in turn.pieces)
        roles, unmatched, asked = reader.roles.assign(case.turns, text, case.case_id)
        if (doubt := reader.roles.contradicted(case, roles)) is not None:
            skipped.append(doubt)
            counts["cases_roles_contradicted"] += 1
        if asked is not None:
            skipped.append(Skipped(case.source.path, (
                f"case '{case.case_id}': no speaker label names a role; {asked}; "
                "name them in ingest.roles if that is wrong"), kept=True))
        for index, (turn, role) in enumerate(zip(case.turns, roles, strict=True)):
            records.append((case.case_id, index, turn.speaker, role,
                            text[turn.start:turn.end], turn.start, turn.end,
                            turn.start_time, turn.end_time, case.source.path))
        skipped.extend(_role_notes(case, roles, unmatched, reader.roles))
    skipped.extend(_duplicate_files(cases))
    absent = [c for c in config.case_roles if c not in cases]
    if absent:
        skipped.append(Skipped("ingest.case_roles", (
            f"names case(s) no transcript holds ({', '.join(repr(c) for c in absent)}): "
            "their roles were not used; what to do: check the case ids (a file's name "
            "without its extension, or a table's case_id)"), kept=True))
    turns = pd.DataFrame.from_records(records, columns=list(TURN_COLUMNS)).astype(
        {"turn_index": "int64", "start_char": "int64", "end_char": "int64",
         "start_time": "float64", "end_time": "float64"})
    given = _given_attributes(list(cases), attributes)
    case_frame = given
    if cases_table is not None:
        # the cases table is named in the config: where it and a project give the same
        # attribute, the table's is used, and the note says so
        case_frame, notes = _join_cases_table(given[["case_id"]], cases_table, config.encoding)
        skipped.extend(notes)
        both = [c for c in given.columns[1:] if c in case_frame.columns]
        if both:
            skipped.append(Skipped(str(cases_table), (
                f"attributes given both by the cases table and by a QDA project "
                f"({', '.join(both)}) are the cases table's"), kept=True))
        case_frame = case_frame.merge(given.drop(columns=both), on="case_id", how="left")
    return Corpus(turns=turns, cases=case_frame,
                  sources={cid: case.source for cid, case in cases.items()},
                  skipped=tuple(skipped), counts=counts, times=times)


def _given_attributes(case_ids: list[str], given: dict[str, dict[str, str]]) -> pd.DataFrame:
    """One row per case: its id and the attributes its file gave (a QDA project's case
    variables), blank where a case has none; columns in the order first seen."""
    columns = list(dict.fromkeys(a for c in case_ids for a in given.get(c, {})
                                 if a != "case_id"))
    return pd.DataFrame({"case_id": case_ids,
                         **{a: [given.get(c, {}).get(a, "") for c in case_ids] for a in columns}})


# --- Internal records ---------------------------------------------------------

@dataclass
class _Turn:
    speaker: str
    start: int
    end: int
    start_time: float = math.nan
    end_time: float = math.nan
    role: str | None = None          # given by a table's role column
    #: the timed pieces (cues, table rows) merged into this turn, each
    #: ``(start, end, start_time, end_time)``: a segment of a long turn takes its own
    #: pieces' times (see ``Corpus.times``)
    pieces: list[tuple[int, int, float, float]] = field(default_factory=list)


@dataclass
class _Case:
    case_id: str
    source: SourceText
    turns: list[_Turn]
    #: attributes the file gives the case (a QDA project's case variables)
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class _Read:
    """What one file gave: its cases, and notes on what was left out."""

    cases: list[_Case]
    notes: list[Skipped] = field(default_factory=list)
    replaced: int = 0      # control characters that became spaces
    removed: int = 0       # control characters removed
    #: what else was changed or left out in this file, by kind (keys of _TALLIES)
    tally: Counter[str] = field(default_factory=Counter)


#: What a file's reading can change or leave out, besides whole files and turns, each
#: counted in the manifest (``counts``) and noted with the file and line, cell or cue:
#: text cells of an .xlsx holding formulas (or formula cells without a saved value),
#: lines of a mixed UTF-8/Windows-1252 file read as Windows-1252, subtitle cues whose
#: times were dropped because they end before they start, cues that start before an
#: earlier cue (kept in the file's order), speaker labels of a
#: .txt/.md/.docx with no words after them (no turn is made for them), a meeting
#: program's notices between the turns of a transcript in the Teams form, turn_index
#: cells of a .csv/.xlsx that are no whole number (the row is kept, after the row above),
#: inline HTML tags removed from a .txt/.md/.docx (:func:`strip_inline_tags`).
_TALLIES = ("xlsx_formula_cells_not_read", "lines_decoded_as_cp1252", "cue_times_dropped",
            "cues_out_of_order", "labelled_turns_without_text", "meeting_notices_not_read",
            "turn_index_cells_not_read", "inline_tags_removed")


def _mixed_encoding(data: bytes, encoding: str, shown: str,
                    tally: Counter[str]) -> list[Skipped]:
    """A note naming the lines read as Windows-1252 in a file that mixes them with
    UTF-8 lines (:data:`pipeline.textio.MIXED`); nothing for a file in one encoding."""
    if encoding != MIXED:
        return []
    lines = cp1252_lines(data)
    tally["lines_decoded_as_cp1252"] += len(lines)
    listed = ", ".join(map(str, lines[:20])) + (f" and {len(lines) - 20} more"
                                                if len(lines) > 20 else "")
    return [Skipped(f"{shown}:{lines[0]}", (
        f"mixes UTF-8 and Windows-1252 text: {len(lines)} line(s) ({listed}) are not valid "
        "UTF-8 and were read as Windows-1252, every other line as UTF-8; what to do: check "
        "the accented letters and quotes on those lines, and save the file as UTF-8"),
        kept=True)]


# --- Files --------------------------------------------------------------------

def transcript_files(config: IngestConfig, base_dir: Path = Path(".")) -> tuple[list[Path], list[Skipped]]:
    """The transcript files ``config.paths`` names, in the order ingest reads them
    (each folder sorted), and what is not read (unsupported formats, missing paths).
    A sharded job splits this list; the cases table is never a transcript."""
    table = anchored(config.cases_table, base_dir) if config.cases_table is not None else None
    return _list_files(config, base_dir, table)


def _list_files(config: IngestConfig, base_dir: Path,
                cases_table: Path | None) -> tuple[list[Path], list[Skipped]]:
    """Transcript files in config order, each folder sorted; unsupported ones noted."""
    ignored = {cases_table.resolve()} if cases_table else set()
    files: list[Path] = []
    notes: list[Skipped] = []
    for entry in config.paths:
        root = anchored(entry, base_dir)
        if root.is_dir():
            found = root.rglob("*") if config.recursive else root.iterdir()
            candidates = []
            found = sorted(found)
            notes += [Skipped(shown_path(p), (
                "a hidden file (its name starts with '.') is not read; what to do: rename it "
                "without the dot if it is a transcript"))
                for p in found if _hidden_transcript(p.relative_to(root)) and p.is_file()]
            for p in (p for p in found if not _hidden(p.relative_to(root))):
                if p.is_file():
                    candidates.append(p)
                    continue
                why = _not_a_file(p, config.recursive)
                if why:
                    notes.append(Skipped(shown_path(p), why))
        elif root.is_file():
            candidates = [root]
        else:
            notes.append(Skipped(shown_path(root), _not_a_file(root, True) or (
                "file or folder not found: check the path under ingest.paths in the config")))
            continue
        for path in candidates:
            key = path.resolve()
            if key in ignored:
                continue
            ignored.add(key)
            suffix = path.suffix.lower()
            why = _name_not_utf8(path, root)
            if why:
                notes.append(Skipped(shown_path(path), why))
            elif suffix in SUPPORTED_SUFFIXES:
                files.append(path)
                outside = _linked_from_outside(path, root, key)
                if outside:
                    notes.append(Skipped(shown_path(path), outside, kept=True))
            else:
                what = f"unsupported format '{suffix}'" if suffix else "no file extension"
                notes.append(Skipped(str(path), f"{what}; convert it to .docx or .txt"))
    return files, list(dict.fromkeys(notes))     # a path listed twice is noted once


def _linked_from_outside(path: Path, root: Path, target: Path) -> str | None:
    """A note on a transcript in a listed folder that is a link to a file outside that
    folder (``target``, resolved), or None. It is read, as the team may keep its files
    so; but a link into another study's folder would bring that text into the run, its
    report and its .qdpx without a word."""
    if root == path or not root.is_dir() or not any(
            p.is_symlink() for p in (path, *path.parents) if p != root and root in p.parents):
        return None
    try:
        target.relative_to(root.resolve())
        return None
    except ValueError:
        return (f"is a link to {shown_path(target)}, outside {shown_path(root)}; it was read "
                "as a transcript: what to do: remove the link if it was not meant to bring "
                "that file into this study")


def shown_path(path: Path) -> str:
    """``path`` as text that can always be printed and stored.

    On Linux a file name is any bytes; Python keeps bytes that are not UTF-8 as
    lone surrogates ("bad\\udcffname.txt"), which no UTF-8 output (a terminal,
    JSON, Parquet) accepts. Here each such byte shows as U+FFFD instead."""
    return os.fsencode(path).decode("utf-8", "replace")


def _name_not_utf8(path: Path, root: Path) -> str | None:
    """Why a file whose name (or a folder's on its path) is not valid UTF-8 is not
    read, or None. Its name becomes its case id and its source path in every table
    and report, and none of them can hold such a name: reading it would stop the
    whole run, so it is left out and the others are read."""
    if _utf8(str(path)):
        return None
    if not _utf8(path.name):
        return ("its name is not valid UTF-8 (the bytes that are not are shown as \ufffd); "
                "it was not read: what to do: rename it")
    if not _utf8(str(root)):
        return ("the name of the folder listed under ingest.paths is not valid UTF-8; this "
                "file was not read: what to do: rename the folder")
    return ("the name of a folder it is in is not valid UTF-8; it was not read: what to "
            "do: rename that folder")


def _utf8(name: str) -> bool:
    """Whether ``name`` (from the file system) is valid UTF-8, with no lone surrogates."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _not_a_file(path: Path, recursive: bool) -> str | None:
    """Why ``path``, listed in a folder but not a regular file, was not read; None for a
    folder that is simply a folder (read when ``recursive``, else not a transcript).

    A broken symbolic link, a link loop or a folder named like a transcript
    ("T01.txt/") would otherwise vanish without a word, and a named pipe or device
    would block or never end if it were read."""
    try:
        is_link = path.is_symlink()
        exists = path.exists()
    except OSError:                     # a name too long, a folder that cannot be listed
        is_link, exists = False, False
    if is_link and not exists:
        try:
            path.resolve(strict=True)
        except (RuntimeError, OSError) as exc:
            if isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP:
                return ("is a symbolic link that loops back on itself (a link loop); it was not "
                        "read: what to do: point the link at the transcript, or remove it")
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return (f"is a symbolic link to '{target}', which does not exist (a broken link); it "
                "was not read: what to do: point the link at the transcript, or remove it")
    if path.is_dir():
        if recursive:
            return None
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            # a subfolder of transcripts (one per site, per wave) is easily missed
            if _holds_transcripts(path):
                return ("is a subfolder holding transcript files; it was not read: what to "
                        "do: set ingest.recursive: true to read subfolders, or list it under "
                        "ingest.paths")
            return None
        return ("is a folder, not a transcript file, although its name ends in "
                f"'{path.suffix}'; it was not read: what to do: put the transcript file "
                "itself here, or set ingest.recursive: true to read the files inside it")
    if exists:
        return ("is not a regular file (a pipe, socket or device); it was not read: what "
                "to do: copy the transcript into the folder as a file")
    return None


def _holds_transcripts(folder: Path) -> bool:
    """Whether a folder holds a file Consensa reads, at any depth (stops at the first)."""
    try:
        return any(p.suffix.lower() in SUPPORTED_SUFFIXES and p.is_file()
                   and not _hidden(p.relative_to(folder)) for p in folder.rglob("*"))
    except OSError:
        return False


def _hidden_transcript(relative: Path) -> bool:
    """A hidden file in a folder that is not hidden, named as a transcript would be
    (".T07.txt"): left out like the rest, but named, since it may be one. A Mac's
    "._T07.docx" (the resource fork a copy leaves beside each file) is not."""
    name = relative.name
    return (name.startswith(".") and not name.startswith("._")
            and not any(part.startswith(".") for part in relative.parts[:-1])
            and Path(name).suffix.lower() in SUPPORTED_SUFFIXES)


def _hidden(relative: Path) -> bool:
    """Hidden files and folders, and Office lock files ("~$T01.docx")."""
    return any(part.startswith(".") for part in relative.parts) or \
        relative.name.startswith("~$")


def check_zip(data: bytes, shown: str, kind: str) -> None:
    """Refuse damaged archives and zip bombs before a parser unpacks them."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as exc:
        if _reads_as_text(data):
            # a transcript saved as .txt (or a table as .csv) and renamed: nothing is
            # damaged, and "save it again" sends the user looking for a broken file
            instead = ".csv" if kind == ".xlsx" else ".txt"
            raise InputError(f"is not a {kind} file but plain text: a {kind} file is a zip "
                             "archive, and this one's bytes read as text (it was probably "
                             f"renamed to {kind})", path=shown,
                             hint=f"rename it to {instead}, or open it and save it as "
                                  f"{kind}") from exc
        raise InputError(f"is not a valid {kind} file (it may be damaged or only partly "
                         "copied)", path=shown,
                         hint=f"open it and save it again as {kind}") from exc
    if any(not m.filename for m in members):
        # every part of an Office package has a name; a damaged central directory can
        # give one none (its name length overwritten with 0), which zipfile accepts
        raise InputError(f"is not a valid {kind} file: one of its parts has no name (it "
                         "may be damaged or only partly copied)", path=shown,
                         hint=f"open it and save it again as {kind}")
    total = sum(m.file_size for m in members)
    ratio = max((m.file_size / max(m.compress_size, 1) for m in members
                 if m.file_size >= 1024 * 1024), default=0)
    if total > MAX_UNZIPPED_BYTES or ratio > MAX_COMPRESSION_RATIO:
        raise InputError(
            f"was not opened: it would unpack to {total / 1e6:.0f} MB (compression ratio "
            f"{ratio:.0f}); the limits are {MAX_UNZIPPED_BYTES / 1e6:.0f} MB and "
            f"{MAX_COMPRESSION_RATIO}", path=shown,
            hint=f"open it and save it again as {kind}, without embedded files")
    _refuse_dtd(data, members, shown, kind)


def _reads_as_text(data: bytes) -> bool:
    """Whether ``data``, which is no zip archive, is text (:func:`decode_bytes` reads it,
    with no control characters but a few stray ones) rather than a damaged archive or
    another binary file."""
    if data.startswith(b"PK"):                          # a zip archive's first bytes
        return False
    try:
        text, _ = decode_bytes(data)
    except InputError:
        return False
    return bool(text.strip()) and len(_CONTROLS.findall(text)) <= 3


#: "<!DOCTYPE" and "<!ENTITY" as bytes in every Unicode encoding an XML parser detects
#: by itself (XML 1.0 appendix F), so that a part is searched whatever its encoding.
_DTD_MARKS = re.compile(b"|".join(
    re.escape(mark.encode(codec)) for mark in ("<!DOCTYPE", "<!ENTITY", "<!doctype", "<!entity")
    for codec in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")))
_DTD_TEXT = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
#: How an XML document's first bytes give its encoding (XML 1.0, appendix F): a
#: byte-order mark, else "<?" as UTF-32, UTF-16 or EBCDIC (UTF-32 marks first: the
#: little-endian one starts with UTF-16's).
_XML_BOMS = ((codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF32_LE, "utf-32-le"),
             (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_BE, "utf-16-be"),
             (codecs.BOM_UTF16_LE, "utf-16-le"))
_XML_FIRST_BYTES = ((b"\x00\x00\x00<", "utf-32-be"), (b"<\x00\x00\x00", "utf-32-le"),
                    (b"\x00<\x00?", "utf-16-be"), (b"<\x00?\x00", "utf-16-le"),
                    (b"Lo\xa7\x94", "cp500"))
_XML_ENCODING = re.compile(r"""<\?xml[^>]*?\sencoding\s*=\s*["']([^"']*)["']""")


def _xml_text(data: bytes) -> str | None:
    """``data`` decoded as an XML parser would decode it, or None when it does not look
    like XML (no byte-order mark, and no "<" as its first character in any encoding).

    The encoding comes from the byte-order mark or the first four bytes (XML 1.0,
    appendix F), then, for UTF-8 and EBCDIC without a mark, from the ``encoding=`` of
    the XML declaration, which may name any encoding (UTF-7, another code page): a
    parser that honours it reads "<!DOCTYPE" where the bytes show "+ADw-!DOCTYPE".
    Raises ``LookupError`` (or ``UnicodeError``) for a declared encoding Python does
    not know or cannot decode with replacement characters.
    """
    for bom, codec in _XML_BOMS:
        if data.startswith(bom) and codec != "utf-8":
            return data[len(bom):].decode(codec, "replace")
    data = data.removeprefix(codecs.BOM_UTF8)     # its declaration may still name another
    codec = next((c for first, c in _XML_FIRST_BYTES if data.startswith(first)), None)
    if codec is None:
        if not data.lstrip(b" \t\r\n").startswith(b"<"):
            return None
        codec = "utf-8"
    if codec in ("utf-8", "cp500"):
        declared = _XML_ENCODING.match(data[:1024].decode(codec, "replace"))
        if declared:
            codec = codecs.lookup(declared.group(1).strip()).name
    return data.decode(codec, "replace")


def _refuse_dtd(data: bytes, members: list[zipfile.ZipInfo], shown: str, kind: str) -> None:
    """Refuse an Office file whose XML declares a DTD or entities.

    Word and Excel never write them, and they are how XML attacks work (external
    entities that read local files, "billion laughs" expansion). python-docx's lxml
    parser already has ``resolve_entities=False`` and lxml never fetches from the
    network by default, and openpyxl parses with defusedxml; this check refuses such
    a file outright, with a message, before either parser sees it.

    Every part is checked, whatever its name: the package's [Content_Types].xml and
    relationships can point a parser at a part named ``document.dat``. A part that
    looks like XML is decoded as a parser would decode it (UTF-16, UTF-32, a declared
    encoding) and searched; every part is also searched for the marks as UTF-8, UTF-16
    and UTF-32 bytes. Reading every part also finds a damaged one (a bad checksum,
    corrupt compressed data) before the parsers do.
    """
    def refuse(member: zipfile.ZipInfo, why: str) -> InputError:
        return InputError(
            f"was not opened: its part '{member.filename}' {why}", path=shown,
            hint=f"open it in Word or Excel and save it again as {kind}; do not "
                 "open it elsewhere if you do not know where it came from")

    dtd = f"declares a DTD or XML entities, which {kind} files never contain (this is how " \
        "XML attacks work)"

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as exc:
        raise InputError(f"is not a valid {kind} file (it may be damaged or only partly "
                         "copied)", path=shown,
                         hint=f"open it and save it again as {kind}") from exc
    with archive:
        for member in members:
            if member.is_dir():
                continue
            try:
                with archive.open(member) as fh:
                    content = fh.read(MAX_UNZIPPED_BYTES + 1)
            except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError,
                    RuntimeError, zlib.error, lzma.LZMAError) as exc:
                raise InputError(f"is not a valid {kind} file: its part '{member.filename}' "
                                 f"cannot be unpacked ({exc}); it may be damaged or only "
                                 "partly copied", path=shown,
                                 hint=f"open it and save it again as {kind}") from exc
            if _DTD_MARKS.search(content):
                raise refuse(member, dtd)
            try:
                text = _xml_text(content)
            except (LookupError, ValueError):   # unknown, or not a text encoding ('idna')
                raise refuse(member, f"declares an XML encoding that {kind} files never use "
                                     "and that cannot be checked for XML attacks") from None
            if text is not None and _DTD_TEXT.search(text):
                raise refuse(member, dtd)


# --- Roles --------------------------------------------------------------------

def _norm_label(label: str) -> str:
    return " ".join(clean_name(label).split()).strip("*_ ")


def label_key(label: str) -> str:
    """What tells one speaker's label from another's: its words, in any case, "_" and
    spaces alike. A recogniser or a transcriber that writes "SPEAKER_00", "Speaker_00"
    and "speaker_00" in one file means one speaker: read as three, no two of them made
    the two speakers of the question-asker rule, and the case was dropped."""
    return " ".join(_norm_label(label).replace("_", " ").split()).casefold()


def _one_spelling(case: _Case, named: Iterable[str]) -> Skipped | None:
    """Write each speaker of ``case`` one way: labels that differ only in case or in
    "_" and spaces (:func:`label_key`) become the spelling ``ingest.roles`` gives
    (``named``), else the one the case writes most (the first, on a tie), so that
    ``turns.speaker`` and every export name one speaker once. A note names the spellings
    read as one."""
    given: dict[str, str] = {}
    for name in named:                              # the case's own map first
        given.setdefault(label_key(name), _norm_label(name))
    spellings: dict[str, Counter[str]] = {}
    for turn in case.turns:
        spellings.setdefault(label_key(turn.speaker), Counter())[turn.speaker] += 1
    merged = {key: found for key, found in spellings.items() if len(found) > 1}
    if not merged:
        return None
    chosen = {key: given.get(key) or found.most_common(1)[0][0]
              for key, found in merged.items()}
    for turn in case.turns:
        turn.speaker = chosen.get(label_key(turn.speaker), turn.speaker)
    listed = "; ".join(
        ", ".join(f"'{label}' ({n} turn{'s' if n > 1 else ''})" for label, n in found.items())
        + f" as '{chosen[key]}'" for key, found in merged.items())
    return Skipped(case.source.path, (
        f"case '{case.case_id}': speaker labels that differ only in capitals or in '_' and "
        f"spaces were read as one speaker each: {listed}; what to do: nothing, unless "
        "they are different people (then give them different labels)"), kept=True)


class _Roles:
    """The role rule described in the module docstring."""

    def __init__(self, config: IngestConfig) -> None:
        self.explicit = {label_key(k): v for k, v in config.roles.items()}
        self.by_case = {case: {label_key(k): v for k, v in given.items()}
                        for case, given in config.case_roles.items()}
        self.interviewer = [re.compile(p, re.IGNORECASE) for p in config.interviewer_speakers]
        self.participant = [re.compile(p, re.IGNORECASE) for p in config.participant_speakers]
        self.not_speakers = [re.compile(p, re.IGNORECASE) for p in config.not_speakers]
        self.notes = [re.compile(p, re.IGNORECASE) for p in NOTE_LABELS
                      if p in config.not_speakers]

    def is_note(self, label: str) -> bool:
        """Whether ``label`` is a transcriber's note's (not a task's or a heading's)."""
        return self.known(label) is None and any(p.fullmatch(label) for p in self.notes)

    def names_no_speaker(self, label: str) -> bool:
        """Whether ``label`` is a note's or a prompt's that no role rule names."""
        return self.known(label) is None and any(p.fullmatch(label) for p in self.not_speakers)

    def known(self, label: str, case_id: str | None = None) -> str | None:
        """The role the roles maps or the patterns give ``label`` (in case ``case_id``;
        None: in any case, as a file is read), else None.

        A label with an aside, "Interviewer (Mara)" or "Sam (P3)", is known by the
        whole label, else by the part before the parentheses, else by the aside:
        transcribers add the role to a name or the name to a role.
        """
        role = self._known(label, case_id)
        parts = label_parts(label)
        if role is None and len(parts) > 1:
            role = self._known(parts[0], case_id) or self._known(parts[1], case_id)
        return role

    def given(self, label: str, case_id: str | None) -> str | None:
        """The role ``ingest.case_roles`` or ``ingest.roles`` gives ``label``, else None."""
        key = label_key(label)
        maps = [self.by_case.get(case_id, {}), self.explicit] if case_id is not None \
            else [self.explicit, *self.by_case.values()]
        return next((m[key] for m in maps if key in m), None)

    def _known(self, label: str, case_id: str | None) -> str | None:
        if (role := self.given(label, case_id)) is not None:
            return role
        if any(p.fullmatch(label) for p in self.interviewer):
            return "interviewer"
        if any(p.fullmatch(label) for p in self.participant):
            return "participant"
        return None

    def assign(self, turns: list[_Turn], text: str,
               case_id: str | None = None) -> tuple[list[str], list[str], str | None]:
        """Roles for ``turns`` (one case) of ``text``, the labels left as "other", and
        what was read from who asks the questions (None: nothing). A note's or a prompt's
        label (:data:`DEFAULT_NOT_SPEAKERS`) is "other" and takes no part in the rule; so
        is a label read by :data:`_SIGNED_LABEL` that ``roles`` does not name, which is
        left as one that matches no role: one "=cmd:" line beside a named participant
        made two unknown labels, and the participant's every turn "other"."""
        signed = {t.speaker for t in turns
                  if t.role is None and _signed(t.speaker)
                  and self.known(t.speaker, case_id) is None}
        notes = signed | {t.speaker for t in turns
                          if t.role is None and self.names_no_speaker(t.speaker)}
        spoken = [t for t in turns if t.role is not None or t.speaker not in notes]
        by_label = {t.speaker: self.known(t.speaker, case_id) for t in spoken if t.role is None}
        unmatched = [label for label, role in by_label.items() if role is None]
        has_participant = any(t.role == "participant" for t in spoken) or \
            "participant" in by_label.values()
        asked = None
        if not has_participant and len(unmatched) == 1:
            by_label[unmatched.pop()] = "participant"
        elif len(unmatched) == 2 and len(by_label) == 2 and all(t.role is None for t in spoken):
            asked = _asker(spoken, text)
            if asked is not None:
                interviewer, participant, why = asked
                by_label.update({interviewer: "interviewer", participant: "participant"})
                unmatched, asked = [], (f"{why}: '{interviewer}' is taken as the interviewer "
                                        f"and '{participant}' as the participant")
        roles = [t.role or by_label.get(t.speaker) or "other" for t in turns]
        unmatched += [label for label in dict.fromkeys(t.speaker for t in turns)
                      if label in signed]
        return roles, unmatched, asked


    def contradicted(self, case: _Case, roles: list[str]) -> Skipped | None:
        """A warning when the roles the config gives a case's two speakers are the
        reverse of what their turns say (:func:`_asker`): the "participant" clearly
        asks the questions, the "interviewer" does not. A diarising recogniser (WhisperX,
        pyannote) numbers the speakers of each file afresh, so one ``ingest.roles`` for
        every file made one case's questions its participant's speech, analysed, and
        its answers the interviewer's, unread, without a word."""
        spoken = [(t, r) for t, r in zip(case.turns, roles, strict=True)
                  if t.role is None and r in ("interviewer", "participant")]
        by_role: dict[str, set[str]] = {"interviewer": set(), "participant": set()}
        for turn, role in spoken:
            by_role[role].add(turn.speaker)
        if any(len(labels) != 1 for labels in by_role.values()):
            return None
        (asker,), (answerer,) = by_role["interviewer"], by_role["participant"]
        if self.given(asker, case.case_id) is None or self.given(answerer, case.case_id) is None:
            return None
        found = _asker([t for t, _ in spoken], case.source.text)
        if found is None or found[0] != answerer:
            return None
        where = ("ingest.case_roles" if case.case_id in self.by_case else "ingest.roles")
        return Skipped(case.source.path, (
            f"case '{case.case_id}': {ROLES_CONTRADICTED}: {where} makes '{asker}' the "
            f"interviewer and '{answerer}' the participant, but {found[2]}; "
            "a speech recogniser numbers the speakers of each file afresh, so the two may "
            "be swapped in this case, its questions analysed as the participant's answers: "
            f"what to do: check the transcript, and if so give this case its own roles in "
            f"the config, ingest.case_roles: {{{case.case_id}: {{{answerer}: interviewer, "
            f"{asker}: participant}}}}"), kept=True)


#: The words of the warning on a case whose turns say its roles are swapped
#: (:meth:`_Roles.contradicted`), which the run's summary repeats
ROLES_CONTRADICTED = "the turns contradict the speakers' roles"

#: The words of the warning on files of the same bytes (:func:`_duplicate_files`),
#: which the run's summary repeats
DUPLICATE_FILES = "byte-identical files"


def _duplicate_files(cases: dict) -> list[Skipped]:
    """A note for each set of transcript files with the same sha256: a transcript
    copied under another name (T10.txt copied to T11.txt) is read as a participant of
    its own, and counts one person twice in every frequency label. Both are kept (the
    copy may be on purpose, or the wrong one may be the older): the note names them.
    A file that holds several cases (a table, a QDA project) is one file here."""
    by_sha: dict[str, dict[str, list[str]]] = {}
    for case in cases.values():
        by_sha.setdefault(case.source.sha256, {}).setdefault(case.source.path, []).append(
            case.case_id)
    notes = []
    for sha, files in by_sha.items():
        if len(files) < 2:
            continue
        paths = sorted(files)
        ids = [c for p in paths for c in files[p]]
        names = ", ".join(Path(p).name for p in paths)
        notes.append(Skipped(", ".join(paths), (
            f"{DUPLICATE_FILES} (the same sha256, {sha[:12]}...): {names} hold the same "
            f"bytes and were each read as a case of their own "
            f"({', '.join(repr(c) for c in ids)}), so one interview counts {len(paths)} "
            "times in every frequency label; if one is a copy, move it out of the "
            "transcripts' folder and run again"), kept=True))
    return notes


#: Two speakers whose roles no rule gives: the one who asks is the interviewer when at
#: least this many of their turns hold a question ...
ASKER_MIN_QUESTIONS = 3
#: ... and the share of their turns that do is at least this many times the other's
#: (a participant asks now and then: "What do you mean?")
ASKER_RATIO = 3.0


#: A question that asks nothing of the other speaker: a tag at the end of a sentence
#: ("..., you know?", "..., right?", "..., isn't it?") or a question heard in speech
#: that a participant says as often as an interviewer.
_TAG_QUESTION = re.compile(
    r"(?:you know|you see|know what i mean|(?:do )?you know what i mean|you know what i'm"
    r" saying|right|yeah|yes|no|okay|ok|eh|huh|innit|see|sure|or not|or something"
    r"|(?:is|was|are|were|do|does|did|have|has|had|can|could|would|will|should|wo|ca)n'?t"
    r" (?:it|i|you|he|she|we|they|there|that))", re.I)
#: A note in brackets or parentheses ("[inaudible?]", "(unclear?)"): a transcriber's
#: doubt, not a question.
_NOTE_SPAN = re.compile(r"\[[^\[\]\n]*\]|\([^()\n]*\)|\{[^{}\n]*\}|<[^<>\n]*>")


def asks_a_question(words: str) -> bool:
    """Whether a turn asks the other speaker something: a sentence that ends with "?"
    and is not a tag ("It was hard, you know?") or inside a transcriber's note.

    A participant who says "you know?" in every other turn does not ask the questions
    of the interview; counted as questions, those tags made the interviewer of two
    unnamed speakers impossible to tell, or told the wrong one."""
    words = _NOTE_SPAN.sub(" ", words)
    for sentence in re.findall(r"[^.!?\n]*\?", words):
        last = re.split(r"[,;:\u2013\u2014-]", sentence.rstrip("? "))[-1]
        last = last.strip(" \t'\"\u2018\u2019\u201c\u201d").lower().replace("\u2019", "'")
        if last and not _TAG_QUESTION.fullmatch(last):
            return True
    return False


#: How a question opens, for a transcript with no question marks (an automatic one, as
#: Otter writes it unpunctuated): after a filler ("and", "so", "okay"), a question word
#: and a verb ("how did", "what was", "what would"), a verb and who is asked ("do you",
#: "can you", "was there", "is anything"), or a request ("tell me"). "what helped was",
#: "how i felt", "i was" open an answer.
_FILLER = r"(?:(?:and|so|okay|ok|alright|right|um+|uh+|erm|well|great|yeah|mm+|hm+)[,.]?\s+)*"
_QUESTION_OPENER = re.compile(
    _FILLER + r"(?:(?:how|what|why|when|where|who|which)(?:'s|\s+(?:is|was|are|were|do|does"
    r"|did|has|have|had|would|could|can|will|should|made|makes|happened|about|kind|sort"
    r"|else)\b)|how\s+(?:long|much|many|often|come|far)\b"
    r"|(?:do|does|did|can|could|would|will|have|has|had|is|was|are|were|should)\s+"
    r"(?:you|your|there|anything|it|that|they|she|he|things)\b"
    r"|tell\s+me\b)", re.IGNORECASE)


def opens_with_a_question(words: str) -> bool:
    """Whether a turn opens as a question does (:data:`_QUESTION_OPENER`), a
    transcriber's note before it ("[inaudible] how did you ...") aside: the sign of a
    question in a transcript that writes no "?"."""
    return _QUESTION_OPENER.match(_NOTE_SPAN.sub(" ", words).lstrip(" \t\n'\"")) is not None


def _asker(turns: list[_Turn], text: str) -> tuple[str, str, str] | None:
    """(interviewer, participant, the evidence in words) for a case of two speakers
    whose roles no rule gives, when one of them clearly asks the questions
    (:func:`asks_a_question`; in a case with no "?" at all, an automatic transcript
    with no punctuation, :func:`opens_with_a_question`: there every turn asked
    nothing, and the case was dropped)."""
    unpunctuated = not any("?" in text[t.start:t.end] for t in turns)
    asks_in = opens_with_a_question if unpunctuated else asks_a_question
    asks: dict[str, list[int]] = {}
    for t in turns:
        tally = asks.setdefault(t.speaker, [0, 0])
        tally[0] += asks_in(text[t.start:t.end])
        tally[1] += 1
    if len(asks) != 2:
        return None
    (a, (qa, na)), (b, (qb, nb)) = sorted(asks.items(), key=lambda kv: -kv[1][0] / kv[1][1])
    if qa < ASKER_MIN_QUESTIONS or qa / na < ASKER_RATIO * qb / nb:
        return None
    how = ("opens turns as a question does (the transcript has no question marks: 'how "
           "did you', 'what was', 'can you', 'do you', ...)" if unpunctuated
           else "asks questions")
    return a, b, f"'{a}' {how} in {qa} of {na} turns, '{b}' in {qb} of {nb}"


#: the labels a note on unmatched speaker labels names; the rest are counted (a file
#: whose every line starts "Something:" would name thousands)
MAX_LABELS_NAMED = 20


def _role_notes(case: _Case, roles: list[str], unmatched: list[str],
                rule: _Roles) -> list[Skipped]:
    notes = []
    others = Counter(t.speaker for t, r in zip(case.turns, roles, strict=True)
                     if r == "other" and t.role is None)
    noted = {label: n for label, n in others.items() if rule.names_no_speaker(label)}
    if noted:
        lines = ", ".join(f"{n} labelled '{label}'" for label, n in noted.items())
        notes.append(Skipped(case.source.path, (
            f"case '{case.case_id}': lines of notes, tasks or headings ({lines}) were "
            "read as no one's speech: kept as role 'other' and not analysed (a task or "
            "heading may set a topic of the protocol); name the label in ingest.roles "
            "if it is a speaker"), kept=True))
    if unmatched:
        looked_up = set(unmatched)      # a file of thousands of labels: not turns x labels
        n = sum(1 for t, r in zip(case.turns, roles, strict=True)
                if r == "other" and t.speaker in looked_up)
        labels = ", ".join(f"'{label}'" for label in unmatched[:MAX_LABELS_NAMED]) + (
            f" and {len(unmatched) - MAX_LABELS_NAMED} more" if len(unmatched) >
            MAX_LABELS_NAMED else "")
        turns = "1 turn" if n == 1 else f"{n} turns"
        notes.append(Skipped(case.source.path, (
            f"case '{case.case_id}': speaker labels {labels} match no role ({turns}); "
            "they are kept as role 'other' and not analysed: add them to ingest.roles "
            "in the config if they are speakers")))
    if "participant" not in roles:
        notes.append(Skipped(case.source.path, (
            f"case '{case.case_id}': no participant speech found: check the speaker "
            "labels or the roles map in the config (ingest.roles)")))
    return notes


# --- Reading ------------------------------------------------------------------

class _Reader:
    """Reads one file of any supported format into cases."""

    def __init__(self, config: IngestConfig) -> None:
        self.config = config
        self.pattern = _compile(config.speaker_pattern)
        self.heading = _compile(HEADING_LABEL_PATTERN) \
            if config.speaker_pattern == DEFAULT_SPEAKER_PATTERN else None
        # the speakers ingest.roles names are labels wherever a line starts with them
        names = [*config.roles, *(k for given in config.case_roles.values() for k in given)]
        self.named = _named_labels(names, heading=False)
        self.named_heading = _named_labels(names, heading=True) \
            if self.heading is not None else None
        self.roles = _Roles(config)
        self.not_times: list[str] = []      # stamps beside labels that are no time

    def read(self, path: Path, shown: str) -> _Read:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot be read ({exc.strerror})", path=shown,
                             hint="check that the file exists and is readable") from exc
        if not data:
            raise InputError("is empty", path=shown,
                             hint="remove it from the folder, or export the transcript again")
        sha = hashlib.sha256(data).hexdigest()
        suffix = path.suffix.lower()
        case_id = case_id_of(path.stem)
        if suffix in (".csv", ".xlsx"):
            return self._table(suffix, data, shown, sha, case_id)
        if suffix == ".qdpx":
            return self._project(path, shown, sha)
        tally: Counter[str] = Counter()
        mixed: list[Skipped] = []
        if suffix == ".docx":
            text, encoding = _docx_text(data, shown), "docx"
        else:
            # a stray NUL is removed and counted below, with the other control characters
            text, encoding = decode_bytes(data, self.config.encoding, path=shown,
                                          stray_nuls=True)
            mixed = _mixed_encoding(data, encoding, shown, tally)
        # before parsing: labels, turns and offsets all see the normalised text
        text, replaced, removed = clean_controls(text)
        tags = 0
        if suffix not in (".vtt", ".srt"):           # a cue's markup is read with the cue
            text, tags = strip_inline_tags(text)
            tally["inline_tags_removed"] += tags
        text, hidden = self._unhide_labels(text)
        removed += hidden
        if not text.strip():
            raise InputError("contains no text", path=shown,
                             hint="remove it from the folder, or export the transcript again")
        if suffix in (".vtt", ".srt"):
            cues, notes = (_vtt_cues if suffix == ".vtt" else _srt_cues)(text, shown)
            tally["cue_times_dropped"] += sum(math.isnan(c.start) for c in cues)
            tally["cues_out_of_order"] += sum(c.out_of_order for c in cues)
            turns, text, n_before, named = self._cue_turns(cues, shown)
            notes += named
            unit = "cue"
        else:
            self.not_times = []
            turns, n_before, empty, notices, footer = self._labelled_turns(text, shown)
            notes, unit = (_without_text(shown, empty, suffix) + _notices(shown, notices)
                           + _footer_note(shown, footer)), "line"
            if self.not_times:
                shown_stamps = ", ".join(f"'{t}'" for t in list(dict.fromkeys(self.not_times))[:5])
                notes.append(Skipped(shown, (
                    f"{len(self.not_times)} time stamp(s) beside a speaker label are no time "
                    f"of day or of the recording ({shown_stamps}: minutes or seconds past "
                    "59); those turns were read without a time: what to do: check the "
                    "stamps"), kept=True))
            tally["labelled_turns_without_text"] += len(empty)
            tally["meeting_notices_not_read"] += len(notices)
        if n_before:
            notes.append(_before_first_label(shown, n_before, unit))
        notes += _controls_note(shown, replaced, removed) + _tags_note(shown, tags)
        notes += _renamed_note(shown, {path.stem: case_id})
        source = SourceText(case_id, shown, text, sha, encoding)
        return _Read([_Case(case_id, source, turns)], mixed + notes, replaced, removed, tally)

    def _label(self, line: str, pattern: re.Pattern | None = None) -> tuple[str, int, float] | None:
        """``(speaker, end of the label, its time stamp in seconds or NaN)`` when
        ``line`` starts with a speaker label (``pattern``: the config's by default)."""
        pattern = pattern or self.pattern
        named = self.named if pattern is self.pattern else (
            self.named_heading if pattern is self.heading else None)
        match = named.match(line) if named is not None else None
        if match is not None:                   # a speaker ingest.roles names, as written
            speaker = _norm_label(match.group("speaker"))
        else:
            match = pattern.match(line)
            if not match or not match.group("speaker"):
                return None
            speaker = _norm_label(match.group("speaker"))
            if not speaker or len(speaker.split()) > _MAX_WORDS_IN_LABEL:
                return None
        found = match.groupdict()
        stamp = found.get("time") or found.get("time_after") or found.get("time_said")
        seconds = _stamp_seconds(stamp) if stamp else math.nan
        if stamp and math.isnan(seconds):
            self.not_times.append(stamp)
        return speaker, match.end(), seconds

    def _unhide_labels(self, text: str) -> tuple[str, int]:
        """``text`` without the format characters (:data:`_FORMAT`) inside or before a
        speaker label, and how many were removed: a line that reads as a label without
        them ("Therapist\u200f:", "Thera\u00adpist:") is one. A direction mark or a soft
        hyphen is invisible: the line looked like a label and was read as words, the
        end of the turn above, and the participant's answer became the interviewer's,
        left out of the analysis without a word. Those at a line's start are gone
        already (:func:`clean_controls`); those between the label and the first word
        after it go too (a quote would start with them), the others stay with the
        words."""
        if not _FORMAT_CHAR.search(text):
            return text, 0
        not_times, self.not_times = self.not_times, []    # a stamp is noted when parsed
        out: list[str] = []
        at = removed = 0
        for start, end in _lines(text):
            line = text[start:end]
            if not _FORMAT_CHAR.search(line):
                continue
            bare = _FORMAT_CHAR.sub("", line)
            label = self._any_label(bare) or (
                self._label(bare, self.heading) if self.heading is not None else None)
            if label is None:
                continue
            cut, kept = 0, 0                        # the label's end, in ``line``
            while kept < label[1]:
                kept += not _FORMAT_CHAR.match(line, cut)
                cut += 1
            while cut < len(line) and (line[cut].isspace() or _FORMAT_CHAR.match(line, cut)):
                cut += 1                            # and up to the first word after it
            head = _FORMAT_CHAR.sub("", line[:cut])
            if len(head) == cut:
                continue
            out += [text[at:start], head]
            at, removed = start + cut, removed + cut - len(head)
        self.not_times = not_times
        return ("".join(out) + text[at:], removed) if removed else (text, 0)

    def _any_label(self, line: str,
                   pattern: re.Pattern | None = None) -> tuple[str, int, float] | None:
        """:meth:`_label` by ``pattern`` (the config's by default), else a recogniser's
        bracketed speaker (:data:`_BRACKETED_SPEAKER`), else a label read by
        :data:`_SIGNED_LABEL`."""
        return self._label(line, pattern) or self._label(line, _BRACKETED_SPEAKER) \
            or self._label(line, _SIGNED_LABEL)

    # .txt, .md, .docx
    def _labelled_turns(self, text: str, shown: str) -> tuple[
            list[_Turn], int, list[tuple[int, str]], list[int], tuple[int, str] | None]:
        """Turns of a labelled text, the number of non-blank lines before the first, the
        ``(line number, speaker)`` of each label with no words after it, the line
        numbers of the meeting program's notices after the first label (Teams form
        only: :data:`_MEETING_NOTICE`), each of which ends the turn above it, and the
        ``(line number, line)`` of a transcription service's footer (:data:`_FOOTER`),
        which ends the last turn, or None."""
        blocks: list[tuple[str, int, int, float]] = []   # speaker, label line, text start, time
        numbers: list[int] = []                          # each block's line number
        lines = list(_lines(text))
        used = None                                      # the pattern that found the labels
        for pattern in (self.pattern, self.heading):
            # headings alone ("Heading: Part 1" of a Word heading) are no sign of the
            # labels' form: a Teams document with headings has its labels on lines alone
            if pattern is None or any(_names_a_form(b[0]) for b in blocks):
                break
            used, blocks, numbers = pattern, [], []
            for number, (line_start, line_end) in enumerate(lines, 1):
                line = text[line_start:line_end]
                label = self._label(line, pattern)
                if not label and pattern is not self.pattern:
                    label = self._label(line, self.pattern)
                    label = label if label and label[0] == HEADING_SPEAKER else None
                if not label:
                    label = self._label(line, _BRACKETED_SPEAKER) or \
                        self._label(line, _SIGNED_LABEL)
                if label:
                    blocks.append((label[0], line_start, line_start + label[1], label[2]))
                    numbers.append(number)
                elif blocks and (heading := _MD_HEADING.fullmatch(text[line_start:line_end])):
                    # "## Training" between turns: a turn of its own, no one's speech
                    blocks.append((HEADING_SPEAKER, line_start,
                                   line_start + heading.start("words"), math.nan))
                    numbers.append(number)
        if not any(_names_a_form(b[0]) for b in blocks):
            blocks = []                                  # headings and no speaker
        elif used is not None:
            blocks, numbers = self._other_spellings(lines, text, blocks, numbers,
                                                    heading=used is self.heading)
        if not blocks:
            raise InputError(
                "has no speaker labels: each turn must start a line with a label such as "
                "'Interviewer:' or 'P3:', or a line of its own with the speaker's name and "
                "time ('Mara Reyes   0:03', as Teams and Otter write them)", path=shown,
                hint="add speaker labels, or set ingest.speaker_pattern to match the "
                     "labels this transcript uses")
        blocks, numbers = self._after_notes(text, lines, blocks, numbers)
        ends = [b[1] for b in blocks[1:]] + [len(text)]
        notices: list[tuple[int, int]] = []              # (line number, line start)
        if used is not None and used is self.heading:
            notices = [(n, s) for n, (s, e) in enumerate(lines, 1)
                       if s > blocks[0][1] and _MEETING_NOTICE.match(text[s:e])]
            cut = [s for _, s in notices]                # in text order
            for i, b in enumerate(blocks):
                k = bisect.bisect_left(cut, b[2])
                if k < len(cut) and cut[k] < ends[i]:
                    ends[i] = cut[k]
        footer = _footer(text, lines)
        if footer is not None and footer[1] >= blocks[-1][2]:
            ends[-1] = min(ends[-1], footer[1])
        else:
            footer = None
        spans = [_strip_span(text, b[2], end) for b, end in zip(blocks, ends, strict=True)]
        counts = Counter(label_key(b[0]) for b in blocks)
        header = 0
        # a heading above the first turn is a title, however many headings follow
        while (header < len(blocks) - 1
               and (counts[label_key(blocks[header][0])] == 1 or blocks[header][0] == HEADING_SPEAKER)
               and self.roles.known(blocks[header][0]) is None
               and _is_one_line(text, spans[header])):
            header += 1
        first = blocks[header][1]
        n_before = sum(1 for s, e in lines if e <= first and text[s:e].strip())
        turns = [_Turn(b[0], *span, start_time=b[3])
                 for b, span in zip(blocks[header:], spans[header:], strict=True) if span]
        if not turns:
            raise InputError("has speaker labels but no speech after them", path=shown,
                             hint="check that the transcript text follows the labels")
        _mark_times(text, turns)
        empty = [(n, b[0]) for n, b, span in zip(numbers[header:], blocks[header:],
                                                 spans[header:], strict=True) if not span]
        return turns, n_before, empty, [n for n, _ in notices], \
            None if footer is None else (footer[0], text[footer[1]:footer[2]].strip())

    def _other_spellings(self, lines: list[tuple[int, int]], text: str,
                         blocks: list[tuple[str, int, int, float]], numbers: list[int],
                         heading: bool) -> tuple[list[tuple[str, int, int, float]], list[int]]:
        """``blocks`` and their line ``numbers`` with a block added for each line that
        opens with one of the file's own labels written another way ("speaker_00:" in a
        file of "SPEAKER_00:", "mara reyes:" in one of "Mara Reyes:"; :func:`label_key`).
        Such a line is a label all the same: read as words, "speaker_00: And what was
        the first session like?" was the end of the participant's answer, the label
        inside the participant's words, and the interviewer's question lost."""
        pattern = _named_labels({b[0] for b in blocks if _names_a_form(b[0])}, heading)
        if pattern is None:
            return blocks, numbers
        taken = set(numbers)
        found = list(zip(blocks, numbers, strict=True))
        for number, (start, end) in enumerate(lines, 1):
            if number not in taken and (label := self._label(text[start:end], pattern)):
                found.append(((label[0], start, start + label[1], label[2]), number))
        if len(found) == len(blocks):
            return blocks, numbers
        found.sort(key=lambda item: item[0][1])
        return [b for b, _ in found], [n for _, n in found]

    def _after_notes(self, text: str, lines: list[tuple[int, int]],
                     blocks: list[tuple[str, int, int, float]], numbers: list[int]):
        """``blocks`` and their line ``numbers`` with the unlabelled lines after a
        transcriber's note's line (:meth:`_Roles.is_note`) given back to the speaker
        before it, as a block of their own: "Note: the phone rang." covers its line, and
        "And then when we started again I said..." below it is the participant's, not
        the note's (it was read as the note's, role "other", and never analysed). A note
        with no speaker before it keeps its lines; so do a task and a heading, whose
        lines below may be anyone's (a think-aloud participant's, or the task's own)."""
        out, out_numbers = [], []
        starts = [s for s, _ in lines]
        speaker = None                                  # the last block that is speech
        for i, (block, number) in enumerate(zip(blocks, numbers, strict=True)):
            out.append(block)
            out_numbers.append(number)
            if not self.roles.names_no_speaker(block[0]):
                speaker = block[0]
            if not self.roles.is_note(block[0]):
                continue
            k = bisect.bisect_right(starts, block[2]) - 1        # the label's line
            nxt = blocks[i + 1][1] if i + 1 < len(blocks) else len(text)
            if speaker is None or k + 1 >= len(lines) or lines[k + 1][0] >= nxt \
                    or not text[lines[k + 1][0]:nxt].strip():
                continue
            line = next(j for j in range(k + 1, len(lines))
                        if text[lines[j][0]:lines[j][1]].strip())
            out.append((speaker, lines[line][0], lines[line][0], math.nan))
            out_numbers.append(line + 1)
        return out, out_numbers

    # .vtt, .srt
    def _cue_turns(self, cues: list[_Cue],
                   shown: str) -> tuple[list[_Turn], str, int, list[Skipped]]:
        """Turns from subtitle cues (a speaker's consecutive cues merged), the spoken
        text they index into, the number of cues before the first speaker name, and a
        note naming the display names read by :meth:`_cue_names`."""
        runs = [_cue_runs(cue.payload) for cue in cues]
        names = self._cue_names(runs)
        used: Counter[str] = Counter()
        pieces: list[tuple[str | None, str, _Cue]] = []
        speaker: str | None = None
        for cue, cue_runs in zip(cues, runs, strict=True):
            for label, chunk in self._cue_segments(cue_runs, names, used):
                speaker = label or speaker
                if chunk.strip():
                    pieces.append((speaker, chunk.strip(), cue))
        turns: list[_Turn] = []
        before: set[int] = set()
        position = 0
        for label, chunk, cue in pieces:
            start, end = position, position + len(chunk)
            position = end + 1                                  # the joining "\n"
            if label is None:
                before.add(cue.line)
            elif turns and label_key(turns[-1].speaker) == label_key(label):
                # the turn ends when the last of its cues does: an overlapping or
                # out-of-order cue that ends earlier gave a turn an end before its start
                last = turns[-1].end_time
                turns[-1].end = end
                turns[-1].end_time = cue.end if math.isnan(last) else (
                    last if math.isnan(cue.end) else max(last, cue.end))
                turns[-1].pieces.append((start, end, cue.start, cue.end))
            else:
                turns.append(_Turn(label, start, end, cue.start, cue.end,
                                   pieces=[(start, end, cue.start, cue.end)]))
        if not turns:
            raise InputError(
                "has no speaker names in its cues: expected <v Name> voice tags (Teams) or "
                "'Name:' before the text (Zoom)", path=shown,
                hint="export the transcript with speaker names, or add 'Name:' to the cues")
        notes = []
        if used:
            listed = ", ".join(f"'{name}' in {n} lines" for name, n
                               in used.most_common(MAX_LABELS_NAMED))
            more = (f" and {len(used) - MAX_LABELS_NAMED} more" if len(used) > MAX_LABELS_NAMED
                    else "")
            notes.append(Skipped(shown, (
                f"{used.total()} cue line(s) open with a display name before ': ' that the "
                f"speaker label patterns do not read ({listed}{more}): each opens "
                f"{MIN_CUES_NAMED} cues or more, so it was read as that speaker's name, "
                "not as words: what to do: check that they are names, and name them in "
                "ingest.roles to give them a role"), kept=True))
        return turns, "\n".join(p[1] for p in pieces), len(before), notes

    def _cue_names(self, runs: list[list[tuple[str | None, str]]]) -> set[str]:
        """The display names a file's cues write before ": " that no label pattern
        reads: "Dana Whitfield (she/her)", "Zoë Lindqvist | Uppsala", "zoe lindqvist",
        "Whitfield, Dana" (Zoom writes the name as the participant typed it). Read as
        words, each such cue was the end of the other speaker's turn.

        Such a prefix is a name when it has the shape of one (:func:`_cue_prefix`),
        opens :data:`MIN_CUES_NAMED` cues or more (a speaker speaks more than once, and
        a sentence seldom starts twice the same way), and the file names its speakers
        cue by cue, as Zoom does: with these names, at least :data:`NAMED_CUES_SHARE`
        of its cues open with a speaker's name (a label, a voice tag or one of them). In
        a file whose cues are mostly words, a phrase before a colon that comes back
        ("then she said: ...") is speech."""
        openings: list[str | None] = []           # of each cue: "" when a label or a voice
        for cue_runs in runs:                     # tag opens it, else its prefix or None
            first = next(((voice, text.strip()) for voice, text in cue_runs
                          if text.strip()), None)
            if first is None:
                openings.append(None)
                continue
            voice, text = first
            line = text.split("\n", 1)[0]
            labelled = voice is not None or self._any_label(line)
            openings.append("" if labelled else _cue_prefix(line))
        counts = Counter(p for p in openings if p)
        names = {p for p, n in counts.items() if n >= MIN_CUES_NAMED}
        named = sum(1 for p in openings if p == "" or p in names)
        return names if names and named >= NAMED_CUES_SHARE * len(runs) else set()

    def _cue_segments(self, runs: list[tuple[str | None, str]], names: set[str],
                      used: Counter[str]) -> list[tuple[str | None, str]]:
        """``(speaker or None, text)`` runs of a cue (:func:`_cue_runs`); text outside
        voice tags is split into lines and checked for 'Name:' prefixes, and for the
        file's display names (``names``, :meth:`_cue_names`; each one read is counted in
        ``used``)."""
        segments: list[tuple[str | None, str]] = []
        for voice, text in runs:
            if voice is not None:
                segments.append((voice, text))
                continue
            for line in text.split("\n"):
                label = self._any_label(line)
                if not label and names and (found := _CUE_PREFIX.match(line)) \
                        and (name := _norm_label(found["speaker"])) in names:
                    label = (name, found.end(), math.nan)
                    used[name] += 1
                segments.append((label[0], line[label[1]:]) if label else (None, line))
        return segments

    # .qdpx
    def _project(self, path: Path, shown: str, sha: str) -> _Read:
        """Each text source of a REFI-QDA project as a case, read as a .txt is.

        A team whose transcripts already live in NVivo, ATLAS.ti or MAXQDA exports
        them as one project; each text source is one interview, its case id the
        source's name without a document extension ("T01.docx" is case "T01", as the
        file T01.docx would be), so that the project's own codes place on the run
        (``consensa compare``). The variables of the project's cases that hold a source,
        and the source's own (a participant's orientation, years in practice), are its
        case attributes, as a cases table's are (see :func:`text_sources`). A source
        that cannot be read as a transcript (no text in the project, no speaker labels)
        is left out with a note naming the project and the source, and the others are
        read; sources that are not text
        (PDF, pictures, audio, video) are counted in one note. The project's codes
        are not read here: they are the team's, compared with the run, not input to it.
        """
        sources, other, variable_notes = text_sources(path)
        cases: list[_Case] = []
        notes: list[Skipped] = [Skipped(shown, n) for n in variable_notes]
        tally: Counter[str] = Counter()
        replaced = removed = 0
        for source in sources:
            where = f"{shown}: source '{source.name}'"
            if source.text is None:
                notes.append(Skipped(where, f"{source.why}; it was not read"))
                continue
            text, rep, rem = clean_controls(source.text)
            replaced, removed = replaced + rep, removed + rem
            text, tags = strip_inline_tags(text)
            tally["inline_tags_removed"] += tags
            text, hidden = self._unhide_labels(text)
            removed, rem = removed + hidden, rem + hidden
            notes += _controls_note(where, rep, rem) + _tags_note(where, tags)
            if not text.strip():
                notes.append(Skipped(where, "contains no text; it was not read"))
                continue
            try:
                turns, n_before, empty, notices, footer = self._labelled_turns(text, where)
            except InputError as err:
                notes.append(_as_skipped(err, where))
                continue
            notes += (_without_text(where, empty, ".txt") + _notices(where, notices)
                      + _footer_note(where, footer))
            tally["labelled_turns_without_text"] += len(empty)
            tally["meeting_notices_not_read"] += len(notices)
            if n_before:
                notes.append(_before_first_label(where, n_before, "line"))
            case_id = source_case_id(source.name)
            notes += _renamed_note(where, {without_extension(source.name): case_id})
            cases.append(_Case(case_id, SourceText(case_id, shown, text, sha, "qdpx"), turns,
                               dict(source.attributes)))
        listed = ", ".join(f"{n} {kind.replace('Source', '').lower()}" for kind, n in
                           sorted(other.items()))          # "2 pdf, 1 audio"
        if other:
            notes.append(Skipped(shown, f"sources that are not text were not read ({listed}): "
                                 "Consensa reads transcripts as text"))
        if not cases:
            # the notes on the sources go with the error, which alone reaches the run's
            # notes: "see the notes above" pointed at notes that were never kept
            prefix = f"{shown}: "
            said = [f"{n.what.removeprefix(prefix)}: {n.reason.removesuffix('; it was not read')}"
                    for n in notes if n.what.startswith(f"{prefix}source '") and not n.kept]
            why = "; ".join(said[:10]) + (f"; and {len(said) - 10} more" if len(said) > 10 else "")
            found = (f"none of its {len(sources)} text source(s) could be read as a transcript"
                     + (f" ({why})" if why else "") if sources else "it holds no text source"
                     + (f" (its sources are not text: {listed})" if other else ""))
            raise InputError(f"was not read as transcripts: {found}", path=shown,
                             hint="export the project with its sources embedded, and speaker "
                                  "labels ('Interviewer:', 'P3:') at the start of each turn")
        return _Read(cases, notes, replaced, removed, tally)

    # .csv, .xlsx
    def _table(self, suffix: str, data: bytes, shown: str, sha: str, stem: str) -> _Read:
        tally: Counter[str] = Counter()
        if suffix == ".csv":
            text, encoding = decode_bytes(data, self.config.encoding, path=shown,
                                          stray_nuls=True)          # see _clean_frame
            first = _mixed_encoding(data, encoding, shown, tally)
            frame, written = _read_csv(text, shown)
        else:
            mapping = self.config.table
            frame, written, formulas, sheet, others, dates = _read_xlsx(
                data, mapping.sheet, shown, look_for=(mapping.case_id, mapping.text))
            encoding = "xlsx"
            first = _formula_cells(frame, formulas, mapping, shown, sheet, tally)
            first += _date_cells(frame, dates, mapping, shown, sheet, formulas)
            if others:
                # one interview a sheet is a common way to keep a study in one workbook:
                # the sheets not read are named, not passed over in silence
                listed = ", ".join(f"'{n}'" for n in others)
                first.append(Skipped(shown, (
                    f"{len(others)} other sheet(s) with the columns '{mapping.case_id}' and "
                    f"'{mapping.text}' were not read ({listed}): a workbook is read from one "
                    f"sheet (ingest.table.sheet, here '{sheet}'); put the cases on one sheet, "
                    "or save each sheet as a workbook of its own")))
        frame, replaced, removed = _clean_frame(frame)
        result = _table_cases(frame, written, self.config.table, shown, sha, encoding, stem,
                              letters=suffix != ".csv",
                              sheet=sheet if suffix == ".xlsx" else None)
        result.notes[:0] = first
        result.tally.update(tally)
        result.notes += _controls_note(shown, replaced, removed)
        result.replaced, result.removed = replaced, removed
        return result


#: Unicode's format characters (category Cf), all invisible: direction marks (U+200E,
#: U+200F, U+061C), direction embeddings, overrides and isolates (:data:`_BIDI_CONTROLS`),
#: the zero-width space, joiner and non-joiner, the word joiner, the soft hyphen, a
#: byte-order mark in the middle of a file. As the body of a regex character class.
_FORMAT = _CLASSES["Cf"]
_FORMAT_CHAR = re.compile(f"[{_FORMAT}]")
#: The direction embeddings, overrides and isolates (U+202A-202E, U+2066-2069): they
#: reorder the text after them on screen, so that a quote a judge reads shows reversed
#: or as other words than the ones it holds ("\u202eon" shows as "no"). They carry no
#: words, and a direction mark (U+200E, U+200F), which only sets the direction of the
#: characters around it, does what a right-to-left transcript needs of them.
_BIDI_CONTROLS = "\u202a-\u202e\u2066-\u2069"
#: C0 and C1 control characters and DEL, but tab, newline and carriage return, and the
#: direction controls (:data:`_BIDI_CONTROLS`), anywhere; at a line's start (among the
#: spaces before its first word) also every other format character a pasted or joined
#: file brings (a zero-width space, a direction mark, a byte-order mark mid-file), which
#: would hide the speaker label after it and join that turn to the one before.
#: Elsewhere they stay: a zero-width space separates words in Thai or Khmer, a
#: non-joiner spells a Persian word, a joiner makes one emoji of several. Inside a
#: label they are removed too, by the reader that knows the labels
#: (:meth:`_Reader._unhide_labels`).
_CONTROLS = re.compile(rf"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI_CONTROLS}]"
                       rf"|(?<![^\r\n])[ \t\u00a0]*[{_FORMAT}][ \t\u00a0{_FORMAT}]*")
_AS_SPACE = "\x0b\x0c"          # vertical tab, form feed: line and page breaks


#: Extensions a QDA program keeps in a source's name ("T01.docx", a recording's
#: "T01.mp3"); a case id drops them.
DOCUMENT_SUFFIXES = (".txt", ".md", ".docx", ".doc", ".rtf", ".pdf", ".odt", ".vtt", ".srt",
                     ".mp3", ".m4a", ".wav", ".mp4", ".mov")


def source_case_id(name: str) -> str:
    """A project source's case id: its name without a document extension, and without
    control and format characters (:func:`clean_name`)."""
    return case_id_of(without_extension(name))


def without_extension(name: str, suffixes: Iterable[str] = DOCUMENT_SUFFIXES) -> str:
    """``name`` without its last extension when that is one of ``suffixes``. A name, not
    a path: a source named "<b>T02</b>.txt" is case "<b>T02</b>", where a path's stem
    cut at its "/" ("b>")."""
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and stem.strip() and f".{suffix.lower()}" in suffixes else name


def clean_controls(text: str) -> tuple[str, int, int]:
    """``text`` with form feed and vertical tab as spaces and the other control
    characters (but tab, newline, carriage return) removed, and the format characters
    :data:`_CONTROLS` names; and how many were replaced and removed.

    A page break from a Word or PDF conversion separates words, so it becomes a
    space; an escape sequence or a stray DEL carries nothing. No spreadsheet cell
    can hold them (an .xlsx refuses them outright).
    """
    replaced = removed = 0

    def one(match: re.Match[str]) -> str:
        nonlocal replaced, removed
        found = match.group()
        if found in _AS_SPACE:
            replaced += 1
            return " "
        kept = _FORMAT_CHAR.sub("", found) if len(found) > 1 else ""   # the spaces stay
        removed += len(found) - len(kept)
        return kept

    cleaned = _CONTROLS.sub(one, text)
    return cleaned, replaced, removed


#: The characters a case id or a speaker's name is read without: every control
#: character, and every format character (:data:`_FORMAT`) but a joiner or non-joiner
#: between two letters, which spells a Persian or Hindi name.
_NOT_IN_NAMES = re.compile(rf"[\x00-\x1f\x7f-\x9f]|(?!(?<=\w)[\u200c\u200d](?=\w))[{_FORMAT}]")


def clean_name(name: str) -> str:
    """``name`` (a case id from a file's name, a table's cell or a project's source; a
    speaker's name) without control and invisible format characters
    (:data:`_NOT_IN_NAMES`; a tab or line break becomes a space).

    A case id is typed, matched and written everywhere: in cases.csv, the judges'
    workbooks (which cannot hold a control character: it was dropped there, and a
    judge's core idea for "\\x1b[31mRED" was refused on import as a case the run does
    not have), a QDA program's project. An invisible character in it makes two ids
    that look alike differ, and an escape sequence printed recolours the terminal."""
    return _NOT_IN_NAMES.sub(lambda m: " " if m.group() in "\t\n\r\x0b\x0c" else "", name)


def case_id_of(name: str) -> str:
    """The case id of a file or source named ``name`` (without its extension):
    :func:`clean_name`, or, for a name of nothing but such characters, the name with
    them written as escapes ("\\u200f"), so that no case is named ""."""
    cleaned = clean_name(name)
    return cleaned if cleaned.strip() else escaped(name, _NOT_IN_NAMES)


def _renamed_note(shown: str, ids: Mapping[str, str]) -> list[Skipped]:
    """A note on the case ids read without the characters :func:`clean_name` removes
    (``ids``: as written -> as read), the characters shown as escapes."""
    changed = {was: now for was, now in ids.items() if was != now}
    if not changed:
        return []
    listed = ", ".join(f"'{escaped(was, _NOT_IN_NAMES)}' as '{now}'"
                       for was, now in list(changed.items())[:10])
    more = f" and {len(changed) - 10} more" if len(changed) > 10 else ""
    return [Skipped(shown, (
        f"{len(changed)} case id(s) held control or invisible format characters, which "
        f"were removed: read {listed}{more} (the characters shown as escapes), as every "
        "table, workbook and export names the case: what to do: rename the file (or the "
        "id) if that is unexpected"), kept=True)]


#: Inline HTML formatting tags, as a transcript pasted from a web page or an HTML export
#: holds them ("<b>P</b>: I felt ..."): the start or end tag of bold, italic, underline,
#: span or font, with attributes only in the form name="value". Anything else in angle
#: brackets is kept: a transcriber's "<laughs>", or slowed speech in Jefferson's
#: notation ("<I don't know>"), which reads as a tag with words in it, not attributes.
_INLINE_TAG = re.compile(
    r"</?(?:b|strong|i|em|u|s|strike|mark|small|big|sub|sup|span|font)"
    r"""(?:\s+[\w:-]+\s*=\s*(?:"[^"<>\n]*"|'[^'<>\n]*'|[^\s"'<>=]+))*\s*/?>""",
    re.IGNORECASE)


def strip_inline_tags(text: str) -> tuple[str, int]:
    """``text`` without inline HTML formatting tags (:data:`_INLINE_TAG`), and how many.

    Markup is not what was said: "<b>P</b>:" hid the label, so the participant's words
    became the end of the interviewer's turn, and a tag among the words reached the
    segments, the names and every output. Removed before parsing, as control characters
    are, so that the source text, the turns and every offset agree; the words inside a
    tag pair stay."""
    return _INLINE_TAG.subn("", text) if "<" in text else (text, 0)


def _tags_note(shown: str, removed: int) -> list[Skipped]:
    if not removed:
        return []
    return [Skipped(shown, (
        f"{removed} HTML formatting tag(s) (bold, italic, underline, span or font) were "
        "removed, the words inside them kept: markup from a web page or an HTML export, "
        "not what was said; quotes and offsets refer to the text without them: what to "
        "do: check the export that made this file if that is unexpected"), kept=True)]


def _clean_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """:func:`clean_controls` on every cell and column name of a table (all str):
    case ids and speaker labels as well as the text."""
    replaced = removed = 0

    def one(value: str) -> str:
        nonlocal replaced, removed
        value, rep, rem = clean_controls(value)
        replaced, removed = replaced + rep, removed + rem
        return value

    out = frame.map(one)
    out.columns = [one(str(c)) for c in frame.columns]
    return out, replaced, removed


def _controls_note(shown: str, replaced: int, removed: int) -> list[Skipped]:
    if not replaced and not removed:
        return []
    parts = []
    if replaced:
        parts.append(f"{replaced} form feed or vertical tab character(s) became spaces")
    if removed:
        parts.append(f"{removed} other control character(s) (such as escape or NUL, or an "
                     "invisible format character: a zero-width space, direction mark, soft "
                     "hyphen or byte-order mark before or inside a speaker label, or a "
                     "direction override, which shows text reversed) were removed")
    return [Skipped(shown, " and ".join(parts) + "; quotes and offsets refer to the text "
                    "without them: check the export that made this file if that is unexpected",
                    kept=True)]


def _lines(text: str) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each line, line breaks (\\n, \\r\\n, \\r) excluded."""
    start = 0
    for brk in re.finditer(r"\r\n|\r|\n", text):
        yield start, brk.start()
        start = brk.end()
    yield start, len(text)


def _strip_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """``(start, end)`` narrowed to exclude surrounding whitespace; None if blank."""
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return None
    first = start + len(piece) - len(piece.lstrip())
    return first, first + len(stripped)


def _is_one_line(text: str, span: tuple[int, int] | None) -> bool:
    return span is None or not re.search(r"[\r\n]", text[span[0]:span[1]])


def _mark_times(text: str, turns: list[_Turn]) -> None:
    """Times from f4transkript's marks (:data:`TIME_MARK`): a turn that ends with one
    ended then, and the turn after it, with no time of its own, started then (one
    speaker follows another). A mark that would end a turn before it starts is not
    read; the words stay either way."""
    for before, turn in zip([None, *turns], turns):
        if (math.isnan(turn.start_time) and before is not None
                and not math.isnan(before.end_time)):
            turn.start_time = before.end_time
        mark = _MARK_AT_END.search(text, turn.start, turn.end)
        if mark and math.isnan(turn.end_time):
            end = _stamp_seconds(mark["time"])
            if math.isnan(turn.start_time) or end >= turn.start_time:
                turn.end_time = end


def _stamp_seconds(stamp: str) -> float:
    """"01:04:02" / "4:02" / "00:04:02,5" / f4transkript's "00:04:02-5" in seconds; NaN
    for a stamp that is no time ("99:99:99", "12:61"): minutes or seconds past 59 were
    read as a time hours away, without a word."""
    parts = stamp.replace(",", ".").replace("-", ".").split(":")
    seconds = 0.0
    for n, part in enumerate(parts):
        value = float(part)
        if n and value >= 60:
            return math.nan
        seconds = seconds * 60 + value
    return seconds


def _without_text(shown: str, empty: list[tuple[int, str]], suffix: str) -> list[Skipped]:
    """A note on the speaker labels with no words after them: an answer that was lost
    in an export, or is kept where it is not read, must not vanish without a word."""
    if not empty:
        return []
    listed = ", ".join(f"{n} ('{speaker}')" for n, speaker in empty[:20]) + (
        f" and {len(empty) - 20} more" if len(empty) > 20 else "")
    where = ("; in a Word document, words in a text box, a comment, a footnote or a tracked "
             "deletion are not read" if suffix == ".docx" else "")
    return [Skipped(f"{shown}:{empty[0][0]}", (
        f"{len(empty)} speaker label(s) have no words after them, on line(s) {listed}; no "
        f"turn was made for them: what to do: check the transcript there{where}"))]


def _notices(shown: str, numbers: list[int]) -> list[Skipped]:
    """A note on the meeting program's notices that ended a turn and were not read."""
    if not numbers:
        return []
    listed = ", ".join(str(n) for n in numbers[:10]) + (" ..." if len(numbers) > 10 else "")
    return [Skipped(f"{shown}:{numbers[0]}", (
        f"{len(numbers)} line(s) of the meeting program ('... started transcription', "
        f"'... stopped transcription'), on line(s) {listed}, were not read as speech"))]


#: The line a transcription service writes under the last turn of its export: Otter's
#: "Transcribed by https://otter.ai". Read as words, it ended the participant's last
#: answer. A web address is what tells it from speech ("Transcribed by hand." is words).
_FOOTER = re.compile(r"\s*(?:transcribed|transcription|transcript) (?:by|with|using|from) "
                     r"(?:https?://)?(?:www\.)?[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}(?:/\S*)?\s*",
                     re.IGNORECASE)


def _footer(text: str, lines: list[tuple[int, int]]) -> tuple[int, int, int] | None:
    """``(line number, start, end)`` of the last non-blank line of ``text`` when it is a
    transcription service's footer (:data:`_FOOTER`), else None."""
    for number in range(len(lines), 0, -1):
        start, end = lines[number - 1]
        if text[start:end].strip():
            return (number, start, end) if _FOOTER.fullmatch(text, start, end) else None
    return None


def _footer_note(shown: str, footer: tuple[int, str] | None) -> list[Skipped]:
    """A note on a service's footer set aside, as the title lines above the first label
    are: it is no one's speech."""
    if footer is None:
        return []
    return [Skipped(f"{shown}:{footer[0]}", (
        f"1 line after the last turn ('{footer[1]}') is the transcription service's "
        "footer and was not read as speech"))]


def _before_first_label(shown: str, n: int, unit: str) -> Skipped:
    noun, verb = (unit, "was") if n == 1 else (f"{unit}s", "were")
    return Skipped(shown, f"{n} {noun} before the first speaker label {verb} not read as "
                          "speech (a title or date line is fine; otherwise check the labels)")


def _as_skipped(err: ConsensaError, shown: str) -> Skipped:
    what = err.path or shown
    if err.line is not None:
        what += f":{err.line}"
    reason = err.reason + (f"; what to do: {err.hint}" if err.hint else "")
    return Skipped(what, reason)


def _nothing_read(config: IngestConfig, files: list[Path],
                  skipped: list[Skipped]) -> InputError:
    where = ", ".join(shown_path(p) for p in config.paths)
    if not files and not skipped:
        return InputError(f"no transcripts found in {where}", field="ingest.paths",
                          hint="supported formats are " + ", ".join(SUPPORTED_SUFFIXES))
    listed = "".join(f"\n  - {s.what}: {s.reason}" for s in skipped[:10])
    more = f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""
    error = InputError(f"no transcript could be read from {where}:{listed}{more}",
                       field="ingest.paths",
                       hint="fix the files listed above, or check ingest.paths in the config")
    # what was left out, for a caller that reads a part of a corpus (a shard) and
    # reports it beside the other parts' notes instead of stopping
    error.skipped = list(skipped)
    return error


# --- .docx --------------------------------------------------------------------

_W_P = qn("w:p")
_W_R = qn("w:r")
#: Markup whose runs are not the document's text as Word shows it: deleted text
#: (tracked deletions, the old place of a tracked move), the phonetic guide above
#: ruby text, and the copy of a text box or drawing kept for older readers
#: (mc:Fallback; what Word shows is in mc:Choice).
_NOT_SHOWN = frozenset({qn("w:del"), qn("w:moveFrom"), qn("w:rt"),
                        "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"})


def _docx_text(data: bytes, shown: str) -> str:
    """Body paragraphs (table cells included, in document order) joined with "\\n";
    a transcript table's rows as labelled lines (:func:`_transcript_rows`).

    A heading paragraph (:func:`_is_heading`) after the first labelled line (or a
    line of a name and a time alone, as Teams writes a label) is labelled
    :data:`HEADING_SPEAKER`: unlabelled, "Training" under "Sam: As a nurse." was read as
    Sam's words. Labelled, it is no one's speech and can set a topic of the protocol. A
    heading above the first labelled line stays as written, a title; one under a
    header line ("Date: 4 March") and above the first turn is a title too, which
    :meth:`_Reader._labelled_turns` leaves out with the header lines (unlabelled, it
    made the date's block two lines long, so neither was taken for a header).
    """
    check_zip(data, shown, ".docx")
    try:
        try:
            document = docx.Document(io.BytesIO(data))
        except KeyError as exc:             # a part the package lists or needs is not in it
            raise InputError(f"could not be read as a Word document: {_missing_part(exc)} "
                             "(the file is not complete, or not a Word document)",
                             path=shown, hint="open it in Word and save it again as .docx; "
                             "if Word cannot open it either, copy or export the transcript "
                             "again") from exc
        body = document.element.body
        known = _speakers_of(body)
        headings = _heading_styles(document)
        started = False                         # a labelled line or a transcript row read
        lines: list[str] = []
        read_as_rows = []                       # transcript tables (held: lxml keeps
        for p in body.iter(_W_P, _W_TBL):       # one proxy per element while it lives)
            if p.tag == _W_TBL:
                if next(p.iterancestors(_W_TBL), None) is None:
                    rows = _transcript_rows(p, known)
                    if rows is not None:
                        lines.extend(rows)
                        read_as_rows.append(p)
                        started = True
                continue
            if next(p.iterancestors(_W_P), None) is not None:
                continue                                                # text boxes
            if read_as_rows and any(t is read_as_rows[-1] for t in p.iterancestors(_W_TBL)):
                continue                                # its row is read already
            line = _paragraph_text(p)
            shown_as = strip_inline_tags(line)[0]           # as the labels are read
            if _LABELLED_PARAGRAPH.match(shown_as) or _NAME_AND_TIME.match(shown_as):
                started = True
            elif started and line.strip() and _is_heading(p, headings):
                line = f"{HEADING_SPEAKER}: {' '.join(line.split())}"
            lines.append(line)
    except etree.XMLSyntaxError as exc:
        if _too_deep(exc):
            raise InputError(
                "could not be read as a Word document: its XML is nested deeper than the "
                f"{_XML_MAX_DEPTH} levels the XML parser reads (tables inside table cells, "
                "about 80 deep or more); no transcript is laid out so", path=shown,
                hint="copy the transcript's text into a new document (or turn the nested "
                     "tables into text: Table Layout > Convert to Text) and save it as "
                     ".docx") from None
        raise InputError(f"could not be read as a Word document ({type(exc).__name__})",
                         path=shown, hint="open it in Word and save it again as .docx") from exc
    except InputError:
        raise
    except Exception as exc:  # python-docx/lxml raise many types for a damaged file
        raise InputError(f"could not be read as a Word document ({type(exc).__name__})",
                         path=shown, hint="open it in Word and save it again as .docx") from exc
    return "\n".join(lines)


def _missing_part(exc: KeyError) -> str:
    """What a .docx lacks, from python-docx's KeyError (zipfile's "There is no item named
    'word/document.xml' in the archive"): "could not be read as a Word document
    (KeyError)" said nothing of what was wrong, nor that the file is incomplete."""
    said = str(exc.args[0]) if exc.args else ""
    named = re.search(r"no item named '(.+)' in the archive", said)
    if named:
        what = {"word/document.xml": ", the part that holds the document's text,",
                "[Content_Types].xml": ", the list of the document's parts,"}.get(named[1], "")
        return f"its part '{named[1]}'{what} is missing"
    if "no relationship" in said and "officeDocument" in said:
        return ("its list of parts (_rels/.rels) does not say which part holds the "
                "document's text")
    return f"a part it needs is missing ({said or 'KeyError'})"


#: How deep libxml2 (under python-docx's lxml parser) nests elements before it stops
#: with "Excessive depth in document": its limit without the XML_PARSE_HUGE option,
#: which also lifts its other limits against hostile files and so stays off. A table
#: inside a table cell is three levels deeper (w:tbl, w:tr, w:tc).
_XML_MAX_DEPTH = 256


def _too_deep(exc: etree.XMLSyntaxError) -> bool:
    """Whether the parser stopped at its nesting limit (by its message: libxml2 has
    given that error more than one code over its versions)."""
    return "excessive depth" in str(exc).lower()


_W_TBL = qn("w:tbl")
_W_PPR = qn("w:pPr")
_W_PSTYLE = qn("w:pStyle")
_W_OUTLINE = qn("w:outlineLvl")
_W_VAL = qn("w:val")
#: Body-text outline level: what Word writes for a paragraph that is no heading
_BODY_LEVEL = "9"


def _heading_styles(document: docx.document.Document) -> frozenset[str]:
    """Ids of the paragraph styles that are headings: "Heading 1" to "Heading 9" (Word
    stores the built-in names in English whatever its language) or any style with an
    outline level, as a team's own heading style has."""
    ids = set()
    for style in document.styles.element.iterchildren(qn("w:style")):
        name = style.find(qn("w:name"))
        level = style.find(f"{_W_PPR}/{_W_OUTLINE}")
        if (name is not None and re.fullmatch(r"heading [1-9]", name.get(_W_VAL, "").lower())
                or level is not None and level.get(_W_VAL) != _BODY_LEVEL):
            ids.add(style.get(qn("w:styleId")))
    return frozenset(ids)


def _is_heading(paragraph: BaseOxmlElement, styles: frozenset[str]) -> bool:
    """Whether ``paragraph`` has a heading style or an outline level of its own."""
    props = paragraph.find(_W_PPR)
    if props is None:
        return False
    level = props.find(_W_OUTLINE)
    if level is not None:
        return level.get(_W_VAL) != _BODY_LEVEL
    style = props.find(_W_PSTYLE)
    return style is not None and style.get(_W_VAL) in styles
_W_TR = qn("w:tr")
_W_TC = qn("w:tc")
#: A cell of a speaker's name, with or without a colon after it ("Interviewer:", as a
#: transcriber who types labels writes it in a table too)
_NAME_CELL = _compile(rf"(?P<name>{_NAME})[ \t]*:?")


def _cell_name(cell: str) -> str | None:
    """The speaker's name a table cell holds alone (:data:`_NAME_CELL`), without its
    colon; None for any other cell."""
    found = _NAME_CELL.fullmatch(cell)
    return found["name"] if found else None
_STAMP_CELL = re.compile(rf"[\[(]?{_STAMP}[\])]?")


#: Words that are speech, not a column's name: four words or more, or a sentence mark
_SAID = re.compile(r"[.,;!?…]|\S+(?:\s+\S+){3}")


#: A paragraph of a speaker's name and time alone, as Teams writes it ("Mara Reyes 0:03")
_NAME_AND_TIME = _compile(HEADING_LABEL_PATTERN)
#: A paragraph that opens with a speaker label ("Interviewer:", "[0:03] Sam:")
_LABELLED_PARAGRAPH = _compile(rf"^\s*(?:[\[(]?{_STAMP}[\])]?\s*)?(?P<label>{_NAME}):\s*\S")


def _table_rows(table: BaseOxmlElement) -> list[list[str]]:
    """The text of each cell of each row of ``table`` (not of a table nested in it)."""
    rows = []
    for tr in table.iter(_W_TR):
        if next(tr.iterancestors(_W_TBL)) is not table:
            continue                                            # a nested table's row
        rows.append(["\n".join(_paragraph_text(p) for p in tc.iter(_W_P)).strip()
                     for tc in tr if tc.tag == _W_TC])
    return rows


def _speakers_of(body: BaseOxmlElement) -> frozenset[str]:
    """The speakers a Word document names outside any one table: the labels that open
    its paragraphs ("Interviewer: ..."), and the names that stand alone in a cell of
    two or more of its tables. A short table of such speakers' turns is a transcript
    table too (:func:`_transcript_rows`): one of two rows inside a labelled document,
    or a transcript split over several small tables, was read cell by cell, each cell
    a line of the turn above, so the interviewer's question became the participant's
    words."""
    labels = set()
    for p in body.iter(_W_P):
        if next(p.iterancestors(_W_TBL), None) is None:
            m = _LABELLED_PARAGRAPH.match(_paragraph_text(p))
            if m:
                labels.add(m.group("label"))
    tables: Counter = Counter()
    for t in body.iter(_W_TBL):
        if next(t.iterancestors(_W_TBL), None) is None:
            tables.update({n for r in _table_rows(t) for c in r if (n := _cell_name(c))})
    return frozenset(labels | {n for n, k in tables.items() if k >= 2})


def _transcript_rows(table: BaseOxmlElement,
                     known: frozenset[str] = frozenset()) -> list[str] | None:
    """A table laid out as a transcript (a speaker column, the words, optionally a
    time column; transcription services deliver interviews so) as one line per row,
    "Name: words" or "[0:03] Name: words"; None for any other table, whose cells stay
    paragraphs as they are.

    A transcript table has at least three rows and two or three columns, each with
    its part: in at least 80% of its filled cells after the first row, one column holds
    a name of one to four capitalised words, alone or with a colon after it ("Zoë:"; it
    was read as a paragraph, and a time column's stamps as words), taken by few speakers
    (at most half the rows, or two), one of whom speaks twice at least; in a third column, a time
    stamp; the other column holds the words. A table with any other column (notes,
    codes) is read as before, so that nothing in it is dropped. A row whose name is
    blank goes on with the turn above; a first row whose name is no speaker of the
    others and whose words are a column's name ("Speaker | Text": at most three words,
no sentence mark) is a header, kept in brackets as a transcriber's note. A table whose
    cells hold a label and words ("Interviewer: Welcome.") is read as before, line by line.

    ``known``: the speakers the document names elsewhere (:func:`_speakers_of`). A
    table whose speaker column holds only those is a transcript table however short:
    one or two rows, each name once."""
    rows = _table_rows(table)
    width = max((len(r) for r in rows), default=0)
    short = len(rows) < 3
    if width not in (2, 3) or not rows or (short and not known):
        return None
    body = [r for r in (rows if short else rows[1:]) if len(r) == width]   # the first: below
    if len(body) < (1 if known else 2):
        return None

    def share(col: int, test) -> float:
        """Of the column's filled cells (a blank name continues a turn): how many pass."""
        filled = [r[col] for r in body if r[col]]
        enough = len(filled) >= 2 or (filled and known)
        return sum(1 for c in filled if test(c)) / len(filled) if enough else 0.0

    def is_stamp(cell: str) -> bool:
        return bool(_STAMP_CELL.fullmatch(cell))

    def is_name(cell: str) -> bool:         # capitalised first: never a time stamp
        return _cell_name(cell) is not None

    columns = list(range(width))
    when = None
    if width == 3:
        stamps = [c for c in columns if share(c, is_stamp) >= 0.8]
        if len(stamps) != 1:
            return None
        when = stamps[0]
    names = [c for c in columns if c != when and share(c, is_name) >= 0.8]
    if len(names) != 1:
        return None                     # no speaker column, or no column of words
    who = names[0]
    text = next(c for c in columns if c not in (who, when))
    said = Counter(n for r in body if (n := _cell_name(r[who])))
    named = bool(said) and set(said) <= known
    if not named and (not said or short or len(said) > max(2, len(body) // 2)
                      or max(said.values()) < 2):
        return None                     # a table of attributes: "Age | 42", "Sex | F"
    first = rows[0]
    # a header names the columns in a word or three ("Speaker | Text", "Name | What was
    # said"); a first speaker who never speaks again ("Chair | Welcome, everyone. ...")
    # said something, which is a turn
    header = not short and (
        len(first) != width or (when is not None and not is_stamp(first[when])) or (
            _cell_name(first[who]) not in said and _cell_name(first[who]) not in known
            and not _SAID.search(first[text])))
    lines = []
    for i, r in enumerate(rows):
        if i == 0 and header:
            # the columns' names, in brackets as a transcriber's note: kept in the text,
            # read as a title line before the first label, and never as anyone's words
            # (left out of the vectors and the names) where the table follows a turn
            lines.append("[" + " ".join(c for c in r if c) + "]")
            continue
        if len(r) != width:
            lines.append(" ".join(c for c in r if c))          # as a title line is read
            continue
        # the speaker column says who speaks: the paragraphs of a cell of words are one
        # line, so that one of them that opens like a label ("Mum: you should have...",
        # "Note: ...") is the speaker's words, not a turn of someone else's
        words = " ".join(r[text].split("\n"))
        if not r[who]:
            lines.append(words)                                 # the turn above goes on
            continue
        stamp = f"[{r[when].strip('[]()')}] " if when is not None and r[when] else ""
        lines.append(f"{stamp}{_cell_name(r[who]) or r[who]}: {words}")
    return lines


def _paragraph_text(paragraph: BaseOxmlElement) -> str:
    """The text of every run of ``paragraph`` in document order, at any depth.

    Word wraps runs in much markup: hyperlinks and tracked insertions, but also
    smart tags, inline content controls (w:sdt), right-to-left spans (w:dir,
    w:bdo), tracked moves (w:moveTo), custom XML and simple fields (their shown
    result). Taking only the paragraph's direct runs lost the words inside those,
    so a participant's answer could read as nothing. Runs under :data:`_NOT_SHOWN`
    are left out, and so are the paragraphs of a text box inside this one (a nested
    w:p): a text box is layout beside the conversation, not the turn it sits in.
    Each run gives its text as python-docx reads it (w:t, w:tab and w:ptab as a tab,
    a line break w:br or w:cr as a newline, a page break as nothing); field codes
    (w:instrText) and deleted text (w:delText) are not text.
    """
    parts: list[str] = []
    stack = list(reversed(paragraph))
    while stack:
        element = stack.pop()
        tag = element.tag
        if not isinstance(tag, str) or tag in _NOT_SHOWN or tag == _W_P:
            continue                                # comments, left-out markup, text boxes
        if tag == _W_R:
            parts.append(element.text)
        stack.extend(reversed(element))
    return "".join(parts)


# --- .vtt, .srt ---------------------------------------------------------------

@dataclass(frozen=True)
class _Cue:
    line: int        # 1-based line of the timing line
    start: float
    end: float
    payload: str
    out_of_order: bool = False   # starts before an earlier cue of the file


#: Cue markup: WebVTT's tags (voice, class, italic, bold, underline, ruby, language)
#: and timestamps, and the .srt's <font>. A "<" that opens none of them is what was
#: said ("from <3 to >5 sessions"): taken for a tag, it swallowed the words up to the
#: next ">" without a word, and searching from each "<" to the end of the line made a
#: long line of them quadratic.
_TAG = re.compile(r"</?(?:[cibuv]|ruby|rt|lang|font)(?=[\s.>])[^<>\n]*>"
                  r"|<(?:\d+:)?\d{2}:\d{2}\.\d{3}>", re.IGNORECASE)
_VOICE_OPEN = re.compile(r"<v(?:\.[^\s>]*)?[ \t]+([^>]*)>")
_VOICE_CLOSE = re.compile(r"</v\s*>")
_TIMING = re.compile(r"\s*(\S+?)\s*-->\s*(\S+)(?:\s.*)?")
_VTT_STAMP = re.compile(r"(?:(\d+):)?([0-5]\d):([0-5]\d)\.(\d{3})")
_SRT_STAMP = re.compile(r"(\d+):([0-5]\d):([0-5]\d)[,.](\d{3})")
#: A display name before ": " at the start of a cue line that no label pattern may read
#: (:meth:`_Reader._cue_names`): a letter first, at most 60 characters, no colon.
_CUE_PREFIX = re.compile(r"^\s*(?P<speaker>[^\W\d_][^:\n]{0,59}?)[ \t]*:(?:[ \t]+|$)")
#: A mark of a sentence, which no display name holds: "so yes. and then: ...", "why?"
#: (an abbreviation's full stop, "Dr." or "J.", is no such mark).
_SENTENCE_MARK = re.compile(r"[?!;…\"“”«»]|\.")
_ABBREVIATION = re.compile(letter_classes(r"(?<!\w)\p{Lu}\p{Ll}{0,3}\."))
#: A display name has at most this many words ("Siobhán Ó Briain | Uppsala University")
_MAX_WORDS_IN_CUE_NAME = 6
#: ... and opens at least this many cues of its file, ...
MIN_CUES_NAMED = 2
#: ... in which at least this share of the cues open with a speaker's name, with such
#: names (Zoom names the speaker of every cue)
NAMED_CUES_SHARE = 0.8


def _cue_prefix(line: str) -> str | None:
    """The text before ": " at the start of a cue line when it may be a display name
    (:data:`_CUE_PREFIX`, no sentence mark, at most :data:`_MAX_WORDS_IN_CUE_NAME`
    words), else None."""
    found = _CUE_PREFIX.match(line)
    if not found:
        return None
    prefix = _norm_label(found["speaker"])
    words = [w for w in prefix.split() if any(c.isalnum() for c in w)]
    if not words or len(words) > _MAX_WORDS_IN_CUE_NAME \
            or _SENTENCE_MARK.search(_ABBREVIATION.sub("", prefix)):
        return None
    return prefix


def _cue_runs(payload: str) -> list[tuple[str | None, str]]:
    """``(voice or None, text)`` runs of a cue payload with the markup removed: the
    text inside each voice tag (``<v Name>``) under its name, the rest under None."""
    runs: list[tuple[str | None, str]] = []
    voice: str | None = None
    parts: list[str] = []
    position = 0
    for tag in _TAG.finditer(payload):
        parts.append(payload[position:tag.start()])
        position = tag.end()
        opened = _VOICE_OPEN.fullmatch(tag.group())
        if opened or _VOICE_CLOSE.fullmatch(tag.group()):
            runs.append((voice, "".join(parts)))
            parts = []
            voice = (_norm_label(opened.group(1)) or None) if opened else None
    parts.append(payload[position:])
    runs.append((voice, "".join(parts)))
    return [(voice, html.unescape(raw)) for voice, raw in runs]


def _blocks(text: str) -> list[list[tuple[int, str]]]:
    """Runs of non-blank lines as ``(line number, line)``."""
    blocks: list[list[tuple[int, str]]] = [[]]
    for number, (start, end) in enumerate(_lines(text), 1):
        line = text[start:end]
        if line.strip():
            blocks[-1].append((number, line))
        elif blocks[-1]:
            blocks.append([])
    return [b for b in blocks if b]


_A_TIME = re.compile(r"\d:\d\d")


def _timed(line: str) -> bool:
    """Whether ``line`` holds a cue timing, well formed or not: an arrow and a time
    (two searches, not one pattern with ".*" between them: that is quadratic in a
    long line of arrows)."""
    return "-->" in line and _A_TIME.search(line) is not None


#: A cue number (.srt, Zoom) or a Teams cue identifier ("5f3a/12-0") above a timing line
_CUE_ID = re.compile(r"\s*(?:\d+|[0-9a-fA-F-]+/\d+-\d+)\s*")


def _one_cue_each(blocks: list[list[tuple[int, str]]]) -> list[list[tuple[int, str]]]:
    """``blocks`` with each block that holds more than one timing line cut before every
    timing line after the first (and before the cue number just above it).

    Cues are separated by a blank line, but an edited or hand-made file can lose one
    (and a .vtt its blank line after WEBVTT). Read as one block, the next cue's number
    and timing line became words of the previous speaker, its words took the previous
    cue's times, and a cue glued to the header was dropped without a word. A cue's text
    never holds "-->" (WebVTT forbids it), so a timing line always starts a cue.
    """
    out: list[list[tuple[int, str]]] = []
    for block in blocks:
        out.append([])
        timed = False
        for item in block:
            if _timed(item[1]):
                if timed:
                    last = out[-1]
                    number = [last.pop()] if len(last) > 1 and _CUE_ID.fullmatch(last[-1][1]) \
                        else []
                    out.append(number)
                timed = True
            out[-1].append(item)
    return out


def _vtt_cues(text: str, shown: str) -> tuple[list[_Cue], list[Skipped]]:
    if not re.match(r"WEBVTT(?:[ \t\r\n]|$)", text):
        raise InputError("is not a WebVTT file: the first line must be WEBVTT", path=shown,
                         hint="export the transcript again as .vtt, or save it as .txt")
    header, *rest = _blocks(text)
    # the header's own lines (WEBVTT, "Kind: captions") end where a cue glued to it starts
    at = next((i for i, (_, line) in enumerate(header) if _timed(line)), len(header))
    if 1 < at < len(header) and _CUE_ID.fullmatch(header[at - 1][1]):
        at -= 1                                           # its cue number
    blocks = [b for b in _one_cue_each([header[at:], *rest])
              if b and not re.match(r"(?:NOTE|STYLE|REGION)(?:[ \t]|$)", b[0][1])]
    return _cues(blocks, _VTT_STAMP, "HH:MM:SS.mmm --> HH:MM:SS.mmm", shown)


def _srt_cues(text: str, shown: str) -> tuple[list[_Cue], list[Skipped]]:
    return _cues(_one_cue_each(_blocks(text)), _SRT_STAMP, "HH:MM:SS,mmm --> HH:MM:SS,mmm",
                 shown)


def _cues(blocks: list[list[tuple[int, str]]], stamp: re.Pattern[str], form: str,
          shown: str) -> tuple[list[_Cue], list[Skipped]]:
    """Cues of the blocks after a header, in the file's order; a cue whose timing is broken
    is noted and left out, one that starts before an earlier cue is noted and kept."""
    cues: list[_Cue] = []
    notes: list[Skipped] = []
    latest = (-math.inf, 0, "")          # the latest start so far: seconds, line, as written
    for block in blocks:
        at = next((i for i, (_, line) in enumerate(block[:2]) if "-->" in line), None)
        # a broken timing line is named by its own line number, not by the cue number
        # before it: the first of the block's first two lines that holds a time
        shown_at = at if at is not None else next(
            (i for i, (_, line) in enumerate(block[:2]) if re.search(r"\d:\d\d", line)), 0)
        number, timing = block[shown_at]
        times = _parse_timing(timing, stamp) if at is not None else None
        if isinstance(times, tuple):
            payload = "\n".join(line for _, line in block[at + 1:])
            start, end = _TIMING.fullmatch(timing).group(1, 2)      # as written
            if times[1] < times[0]:
                # the words are still what was said: keep them, without the times
                notes.append(Skipped(f"{shown}:{number}", (
                    f"line {number}: the cue ends ({end}) before it starts ({start}); its text "
                    "was kept without times: correct the timing line"), kept=True))
                times = (math.nan, math.nan)
            back = times[0] < latest[0]
            if back:
                # kept where the file has it (the file's order is the transcript's), but
                # said: a cue that goes back in time is usually two exports pasted together
                notes.append(Skipped(f"{shown}:{number}", (
                    f"line {number}: the cue starts ({start}) before the cue at line "
                    f"{latest[1]} ({latest[2]}); it was kept in the file's order: check that "
                    "the cues are in time order"), kept=True))
            if times[0] >= latest[0]:
                latest = (times[0], number, start)
            cues.append(_Cue(number, times[0], times[1], payload, out_of_order=back))
            continue
        problem = (f"timing '{times}' is not {form}" if at is not None else
                   f"expected a timing line {form}, found '{timing.strip()[:60]}'")
        notes.append(Skipped(f"{shown}:{number}", f"line {number}: {problem}; this cue was "
                             "left out: correct the timing line"))
    if not cues:
        reason = f"; first problem: {notes[0].reason}" if notes else ""
        raise InputError(f"has no readable cues{reason}", path=shown,
                         hint=f"check that the cue timing lines read {form}")
    return cues, notes


def _parse_timing(line: str, stamp: re.Pattern[str]) -> tuple[float, float] | str:
    """``(start, end)`` seconds, or the part of ``line`` that is not a timestamp."""
    match = _TIMING.fullmatch(line)
    if not match:
        return line.strip()
    seconds = []
    for part in match.group(1, 2):
        found = stamp.fullmatch(part)
        if not found:
            return part
        h, m, s, ms = (int(g or 0) for g in found.groups())
        seconds.append(h * 3600 + m * 60 + s + ms / 1000)
    return seconds[0], seconds[1]


# --- .csv, .xlsx --------------------------------------------------------------

def _read_csv(text: str, shown: str) -> tuple[pd.DataFrame, list[str]]:
    """All cells as str, and the header row as written (see :func:`header_row`); the
    delimiter (, ; or tab) is the one the header uses most."""
    header = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=header.count)
    options = {"sep": delimiter, "dtype": str, "keep_default_na": False,
               "skip_blank_lines": False}
    check_row_widths(text, delimiter, shown)
    try:
        frame = pd.read_csv(io.StringIO(text), **options)
        written = header_row(pd.read_csv(io.StringIO(text), header=None, nrows=1, **options))
    except ValueError as exc:             # pandas' ParserError, EmptyDataError
        raise InputError(f"could not be read as a CSV table ({exc})", path=shown,
                         hint="open it in a spreadsheet program and save it again as CSV "
                              "(UTF-8)") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame, written


def _read_xlsx(data: bytes, sheet: str | int, shown: str, look_for: tuple[str, ...] = ()
               ) -> tuple[pd.DataFrame, list[str], list[tuple[int, int, str]], str, list[str],
                          list[tuple[int, int, str]]]:
    """All cells of one sheet as str (whole numbers without a trailing '.0', a date
    without a time as its day), its header row as written (see :func:`header_row`),
    where its formula cells are (see :func:`formula_positions`), the sheet's name, the
    other sheets whose header names every column of ``look_for`` (any case): tables
    like it, which are not read, and ``(row, column, cell reference)`` of each cell
    that holds a date or time, in the frame's positions as for the formulas."""
    check_zip(data, shown, ".xlsx")
    names: list[str] = []
    frame = None
    others: list[str] = []
    try:
        with pd.ExcelFile(io.BytesIO(data), engine="openpyxl") as book:
            names = [str(n) for n in book.sheet_names]
            # a sheet's position counts the sheets Excel shows: the first sheet is the
            # first one a person sees, not a hidden sheet of lookups before it
            shown_names = [str(ws.title) for ws in book.book.worksheets
                           if getattr(ws, "sheet_state", "visible") == "visible"] or names
            if sheet in names if isinstance(sheet, str) else 0 <= sheet < len(shown_names):
                name = sheet if isinstance(sheet, str) else shown_names[sheet]
                frame = pd.read_excel(book, sheet_name=name, dtype=object)
                written = header_row(pd.read_excel(book, sheet_name=name, header=None,
                                                   nrows=1, dtype=object))
                formulas = formula_positions(data, name)
                wanted = {c.strip().casefold() for c in look_for}
                for other in (n for n in names if n != name and wanted):
                    head = pd.read_excel(book, sheet_name=other, header=None, nrows=1,
                                         dtype=object)
                    if wanted <= {_cell_str(c).strip().casefold() for c in header_row(head)}:
                        others.append(other)
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise InputError(f"could not be read as an Excel workbook ({type(exc).__name__})",
                         path=shown, hint="open it in Excel and save it again as .xlsx") from exc
    if frame is None:
        raise InputError(f"has no sheet {sheet!r}; its sheets are {names} (a position counts "
                         "the sheets that are not hidden)", path=shown,
                         field="ingest.table.sheet",
                         hint="set ingest.table.sheet to a sheet name or its 0-based position")
    frame.columns = [_cell_str(c).strip() for c in frame.columns]
    from openpyxl.utils import get_column_letter

    dates = [(row, column, f"{get_column_letter(column + 1)}{row + 2}")
             for column in range(frame.shape[1])
             for row, value in enumerate(frame.iloc[:, column]) if _is_date(value)]
    return frame.map(_cell_str), written, formulas, name, others, dates


def _is_date(value: object) -> bool:
    return isinstance(value, (datetime.date, datetime.time))


def formula_positions(data: bytes, sheet: str) -> list[tuple[int, int, str]]:
    """``(row, column, cell reference)`` of each formula cell below the header row, as
    positions in the frame pandas reads (row 1 is the header, and pandas reads every
    row and column from A1 on, blank ones included: sheet row 2 is frame row 0).

    pandas reads a formula's saved result (what Excel last showed), or nothing when
    none was saved (a workbook written by a script), so a formula cell cannot be told
    from a typed one in its frame: the workbook is opened a second time, formulas
    and all, to find them."""
    import openpyxl

    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False,
                                  keep_links=False)
    try:
        worksheet = book[sheet]
        worksheet.reset_dimensions()            # declared dimensions can be wrong
        return [(cell.row - 2, cell.column - 1, cell.coordinate)
                for row in worksheet.iter_rows(min_row=2) for cell in row
                if getattr(cell, "data_type", None) == "f"]
    finally:
        book.close()


def _formula_cells(frame: pd.DataFrame, formulas: list[tuple[int, int, str]],
                   mapping: TableMapping, shown: str, sheet: str,
                   tally: Counter[str]) -> list[Skipped]:
    """:func:`formula_cell_notes` for a transcript table: the turns of formula cells in
    the text column are left out, and the cells are counted in ``tally``."""
    columns = list(frame.columns)
    others = [_find_column(columns, name) for name in (mapping.case_id, mapping.speaker,
                                                       mapping.turn_index, mapping.role)
              if name]
    reasons, count = formula_cell_notes(frame, formulas, _find_column(columns, mapping.text),
                                        others, sheet,
                                        so="a formula is not spoken words, so those turns "
                                           "were left out")
    tally["xlsx_formula_cells_not_read"] += count
    return [Skipped(shown, reason) for reason in reasons]


def _date_cells(frame: pd.DataFrame, dates: list[tuple[int, int, str]],
                mapping: TableMapping, shown: str, sheet: str,
                formulas: list[tuple[int, int, str]]) -> list[Skipped]:
    """A note on the cells of the text column that hold a date or time: Excel turns
    words typed as "3/4", "1-2" or "10:30" into one, and a turn that read "2024-03-04"
    without a word would pass for what was said. They are kept as Excel saved them."""
    text = _find_column(list(frame.columns), mapping.text)
    computed = {ref for _, _, ref in formulas}
    cells = [(row, ref) for row, column, ref in dates
             if frame.columns[column] == text and ref not in computed]
    if not cells:
        return []
    shown_cells = ", ".join(f"{ref} '{frame.iat[row, frame.columns.get_loc(text)]}'"
                            for row, ref in cells[:10]) + (" ..." if len(cells) > 10 else "")
    return [Skipped(shown, (
        f"sheet '{sheet}': {len(cells)} cell(s) of the text column '{text}' hold a date or "
        f"time, not words ({shown_cells}); they are read as Excel saved them: what to do: "
        "if Excel turned what was typed (\"3/4\", \"1-2\") into a date, format the column "
        "as Text, type the words again and save the workbook"), kept=True)]


def formula_cell_notes(frame: pd.DataFrame, formulas: list[tuple[int, int, str]],
                       text: str | None, others: Iterable[str | None], sheet: str, *,
                       so: str) -> tuple[list[str], int]:
    """Blank the formula cells of the ``text`` column (a formula is not the words people
    said, even when Excel saved its result) and note them, saying ``so`` what became of
    them; note formula cells of the ``others`` columns read that have no saved result
    and so read as empty. Formula cells of columns that are not read are no concern.

    ``formulas`` are from :func:`formula_positions`. Returns the notes (naming the sheet
    and the cells, no file) and how many cells they name."""
    columns = list(frame.columns)
    others = set(others) - {None, text}
    left_out, empty = [], []
    for row, column, ref in formulas:
        if column >= len(columns):
            continue
        inside = row < len(frame)
        if text is not None and columns[column] == text:
            if inside:
                frame.iat[row, column] = ""
            left_out.append(ref)
        elif columns[column] in others and (not inside or frame.iat[row, column] == ""):
            empty.append(ref)

    def listed(refs: list[str]) -> str:
        return ", ".join(refs[:30]) + (f" and {len(refs) - 30} more" if len(refs) > 30 else "")

    notes = []
    if left_out:
        notes.append(
            f"sheet '{sheet}': {len(left_out)} cell(s) of the text column '{text}' hold "
            f"formulas ({listed(left_out)}); {so}: what to do: replace each formula by the "
            "words themselves (copy, then Paste Special > Values) and save the workbook again")
    if empty:
        notes.append(
            f"sheet '{sheet}': {len(empty)} cell(s) hold formulas with no saved result "
            f"({listed(empty)}) and were read as empty: what to do: open the workbook in "
            "Excel and save it again so that the results are saved, or type the values")
    return notes, len(left_out) + len(empty)


def _cell_str(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime) and value.time() == datetime.time():
        return value.date().isoformat()         # a day, as a person typed it
    return str(value)


def _find_column(columns: list[str], name: str) -> str | None:
    """``name`` among ``columns``, exactly or ignoring case and surrounding spaces."""
    if name in columns:
        return name
    return next((c for c in columns if c.strip().casefold() == name.strip().casefold()), None)


def check_row_widths(text: str, delimiter: str, shown: str, field: str | None = None) -> None:
    """Refuse a delimited table in which a row has more cells than its header.

    pandas reads such a table without a word: when the first data row has one cell
    more it takes the first column as the index and shifts every column by one (the
    case ids become speakers, the text a stray column), and with ``index_col=False``
    it drops the extra cell with a warning. The usual cause is a comma inside a cell
    that is not in quotes, which a hand-made CSV has easily."""
    import csv

    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=delimiter)
    try:
        width = len(next(reader, []))
        for row_number, row in enumerate(reader, start=2):
            if len(row) > width:
                raise InputError(
                    f"row {row_number} (line {reader.line_num}) has {len(row)} cells but the "
                    f"header has {width}: {delimiter!r} inside a cell that is not in "
                    "quotes? The cells of that row cannot be told apart, so none of the "
                    "table's rows was read (its other cases neither)", path=shown, field=field,
                    hint="put that cell in double quotes (\"...\"), or save the table again "
                         "from a spreadsheet program, which quotes it")
    except csv.Error:
        return              # pandas reads what the csv module cannot, or says why


def header_row(first: pd.DataFrame) -> list[str]:
    """The header row of a table as its file writes it, from the table read again with
    ``header=None, nrows=1`` (and otherwise the same options).

    pandas renames a repeated column name in the header it reads (a second ``text``
    becomes ``text.1``), so its column names cannot tell a repeated name from one
    written that way; this row can. Empty cells are ""."""
    return [_cell_str(c) for c in first.iloc[0]] if len(first) else []


def check_columns_read_once(written: list[str], columns: list[str],
                            read: Mapping[str, str | None], shown: str, *,
                            letters: bool) -> None:
    """Refuse a table whose header names a column Consensa reads more than once.

    ``written`` is the header row as the file writes it (:func:`header_row`);
    ``columns`` the names of the frame read from it, position by position; ``read``
    what each column read is used as (``ingest.table.text``) and its name among
    ``columns``. Names are compared as columns are found, ignoring case and the spaces
    around them. Of two ``text`` columns only one would be read, and the other's cells
    would be lost without a word, so the table is refused naming both (as spreadsheet
    letters when ``letters``, else as numbers counted from 1), and saying to rename or
    delete the one that is not meant.

    A repeated name that Consensa does not read (two ``notes`` columns, two blank
    headers) is left alone: none of those cells would be read either way, and tables
    exported from survey software and edited by hand often carry such columns, so refusing
    them would send the user to change a file for nothing.
    """
    def key(name: str) -> str:
        return name.strip().lstrip("\ufeff").strip().casefold()

    for what, name in read.items():
        if name is None or name not in columns:
            continue
        at = columns.index(name)
        if at >= len(written) or not key(written[at]):
            continue
        same = [i for i, w in enumerate(written) if key(w) == key(written[at])]
        if len(same) < 2:
            continue
        if letters:
            from openpyxl.utils import get_column_letter

            places = [get_column_letter(i + 1) for i in same]
        else:
            places = [str(i + 1) for i in same]
        if len({written[i] for i in same}) > 1:
            places = [f"{p} '{written[i]}'" for p, i in zip(places, same, strict=True)]
        where = ", ".join(places[:-1]) + " and " + places[-1]
        raise InputError(
            f"the column '{written[at].strip()}' ({what}) is in the header "
            f"{'twice' if len(same) == 2 else f'{len(same)} times'} (columns {where}), and "
            "only one of them would be read", path=shown,
            hint="rename the column that is not meant (names are compared ignoring case "
                 "and surrounding spaces), or delete it, and save the table again")


#: what to do about a case whose table numbers a turn twice
_ONCE = ("number each turn of a case once, or set ingest.table.turn_index: null to keep the "
         "rows in file order")


def _rows_text(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:10])
    return f"row{'s' if len(rows) > 1 else ''} {shown}" + (" ..." if len(rows) > 10 else "")


def _table_cases(frame: pd.DataFrame, written: list[str], mapping: TableMapping, shown: str,
                 sha: str, encoding: str, stem: str, *, letters: bool,
                 sheet: str | None = None) -> _Read:
    """One case per case id; rows ordered by the turn_index column when there is one.

    A table without the case id column (and whose config names no other) is one
    interview, case ``stem`` (the file's name), as a .vtt or .txt is: the export of a
    speech-recognition tool (start, end, speaker, text) was refused for a column it
    has no reason to hold. A table with a start or end column gives each row's times,
    and its consecutive rows of one speaker (and role) make one turn, as a subtitle
    file's cues do: such a tool writes a row a stretch of speech, and a 60-word
    answer over three rows was three participant turns, each with its own question.
    The rows' times are kept (``_Turn.pieces``) for the segments cut from the turn.

    A row whose turn_index cell is no whole number (empty, "12a") is kept, as the turn
    after the row above it in the file in its case, and noted with its file, sheet
    (``sheet``, for a workbook) and row: one such cell left the whole case out, every
    turn of the interview with it, and a row added by hand between two turns is
    usually where the file has it.

    ``written`` is the header row as the file writes it: a column read here that the
    header names twice is refused (:func:`check_columns_read_once`)."""
    columns = list(frame.columns)
    found: dict[str, str | None] = {}
    optional = ("turn_index", "start", "end")
    for key in ("case_id", "speaker", "text", *optional, "role"):
        name = getattr(mapping, key)
        found[key] = _find_column(columns, name) if name else None
        # by its name, not by whether it was set: the config.yaml a run folder keeps
        # writes the default out, and a repeat of the run from it refused the table
        one_interview = key == "case_id" and name == TableMapping.model_fields["case_id"].default
        if name and found[key] is None and key not in optional and not one_interview:
            raise InputError(
                f"has no column '{name}' (ingest.table.{key}); its columns are {columns}",
                path=shown, hint=f"rename the column, or set ingest.table.{key} to its name "
                "(if this is a table of case attributes, set ingest.cases_table instead)")
    check_columns_read_once(
        written, columns, {f"ingest.table.{key}": name for key, name in found.items()}, shown,
        letters=letters)

    def cells(key: str) -> list[str]:
        column = found[key]
        return list(frame[column]) if column else [""] * len(frame)

    # (spreadsheet row, turn number or None, speaker, text, role, start, end), in file order
    rows: dict[str, list[_Row]] = {}
    no_case: list[int] = []
    blank: list[int] = []          # rows with a case or a speaker but no text
    unnumbered: list[tuple[int, str, str]] = []      # (row, its turn_index cell, case)
    bad_role: dict[str, list[int]] = {}
    untimed: list[tuple[int, str]] = []              # (row, why its times were not read)
    renamed: dict[str, str] = {}                     # case id as written -> as read
    keys = ("case_id", "speaker", "text", "turn_index", "role", "start", "end")
    for i, (case_id, speaker, text, order, role, begun, ended) in enumerate(
            zip(*(cells(k) for k in keys), strict=True)):
        row = i + 2                                  # as numbered in a spreadsheet
        if not text.strip():
            if case_id.strip() or speaker.strip():
                blank.append(row)                    # a row left empty is no row
            continue
        if not found["case_id"]:
            case_id = stem
        else:
            written_id, case_id = case_id.strip(), clean_name(case_id).strip()
            renamed[written_id] = case_id
        if not case_id.strip():
            no_case.append(row)
            continue
        number = re.fullmatch(r"\s*(-?\d+)(?:\.0*)?\s*", order)
        if found["turn_index"] and not number:
            unnumbered.append((row, order, case_id.strip()))
        role = role.strip().lower() or None
        if role is not None and role not in ROLES:
            bad_role.setdefault(case_id.strip(), []).append(row)
        turn = int(number.group(1)) if number else None if found["turn_index"] else i
        start, end, why = _row_times(begun, ended, found)
        if why:
            untimed.append((row, why))
        rows.setdefault(case_id.strip(), []).append(
            (row, turn, _norm_label(speaker), text, role, start, end))
    # (rows by case, what is wrong with them, what to do)
    checks = [(bad_role, f"{found['role']} is not one of {', '.join(ROLES)}",
               "use participant, interviewer or other (or leave it empty)")]
    if rows and set(bad_role) >= set(rows):
        # no case is readable: the file is refused with what to fix first
        bad, what, fix = next(c for c in checks if c[0])
        raise InputError(f"{_rows_text(sorted(sum(bad.values(), [])))}: {what}", path=shown,
                         hint=fix)
    notes = _renamed_note(shown, renamed)
    # a bad cell leaves out its own case, never the file's other cases: each is named
    for case_id in rows:
        problems = [(f"{_rows_text(bad[case_id])}: {what}", fix)
                    for bad, what, fix in checks if case_id in bad]
        if problems:
            n = len(rows[case_id])
            notes.append(Skipped(shown, (
                f"case '{case_id}' ({n} row{'s' if n > 1 else ''}) was left out: "
                + "; ".join(what for what, _ in problems) + ". To keep it, "
                + "; ".join(fix for _, fix in problems))))
    rows = {c: r for c, r in rows.items() if c not in bad_role}
    if no_case:
        verbs = "has no case id and was" if len(no_case) == 1 else "have no case id and were"
        notes.append(Skipped(shown, f"{_rows_text(no_case)} {verbs} left out: fill in the "
                                    f"{found['case_id']} column"))
    cases = []
    continued: list[int] = []
    repeated: list[str] = []                         # cases left out for a repeated turn
    for case_id, case_rows in rows.items():
        case_rows.sort(key=_turn_order(case_rows))
        numbered = [r for r in case_rows if r[1] is not None]
        duplicates = [(a[0], b[0], a[1]) for a, b in pairwise(numbered) if a[1] == b[1]]
        if duplicates:
            listed = "; ".join(f"rows {a} and {b} (turn {t})" for a, b, t in duplicates[:5])
            notes.append(Skipped(shown, (
                f"case '{case_id}' has the same {found['turn_index']} twice: {listed}; this "
                f"case was left out: {_ONCE}")))
            a, b, t = duplicates[0]
            repeated.append(f"case '{case_id}' rows {a} and {b} (turn {t})")
            continue
        # a row with an empty speaker cell goes on with the speaker of the row before in
        # its case (and that row's role, unless it gives its own), as a row with no
        # speaker does in a .docx table: an answer split over two rows stays the answer
        for k in range(1, len(case_rows)):
            r, before = case_rows[k], case_rows[k - 1]
            if not r[2] and before[2]:
                case_rows[k] = (r[0], r[1], before[2], r[3], r[4] or before[4], *r[5:])
                continued.append(r[0])
        text = "\n".join(r[3] for r in case_rows)
        turns: list[_Turn] = []
        position = 0
        timed = bool(found["start"] or found["end"])
        for _, _, speaker, cell, role, start, end in case_rows:
            span = _strip_span(text, position, position + len(cell))
            position += len(cell) + 1
            if span is None:
                continue
            piece = (*span, start, end)
            last = turns[-1] if turns else None
            if timed and last is not None and (last.speaker, last.role) == (speaker, role):
                # one speaker's next row goes on with the turn, as a .vtt's next cue does
                last.end = span[1]
                last.start_time = start if math.isnan(last.start_time) else last.start_time
                last.end_time = end if math.isnan(last.end_time) else (
                    last.end_time if math.isnan(end) else max(last.end_time, end))
                last.pieces.append(piece)
            else:
                turns.append(_Turn(speaker, *span, start, end, role=role, pieces=[piece]))
        cases.append(_Case(case_id, SourceText(case_id, shown, text, sha, encoding), turns))
    if not cases and repeated:
        # every case was left out for the same reason: the file is refused with it, not
        # with "no rows", which would send the user to the wrong columns
        more = f" (and {len(repeated) - 3} more cases)" if len(repeated) > 3 else ""
        raise InputError(f"every case has the same {found['turn_index']} on two rows: "
                         f"{'; '.join(repeated[:3])}{more}", path=shown, hint=_ONCE)
    if not cases:
        raise InputError("has no rows with both a case id and text", path=shown,
                         hint="fill in the case_id and text columns")
    read: Counter[str] = Counter()
    if unnumbered:
        built = {case.case_id for case in cases}      # not a case left out for another cause
        kept = [(row, cell) for row, cell, case_id in unnumbered if case_id in built]
        read["turn_index_cells_not_read"] = len(kept)
        if kept:
            cells = ", ".join(f"row {row} ({repr(cell.strip()[:30]) if cell.strip() else 'empty'})"
                              for row, cell in kept[:10]) + (" ..." if len(kept) > 10 else "")
            where = f"sheet '{sheet}': " if sheet is not None else ""
            notes.append(Skipped(shown, (
                f"{where}{len(kept)} row(s) have a {found['turn_index']} cell that is not a "
                f"whole number: {cells}; each was kept, as the turn after the row above it "
                "in the file in the same case: what to do: fill in the turn numbers, or set "
                "ingest.table.turn_index: null to keep the rows in file order"), kept=True))
    if blank:
        # nothing is lost, but a row is not read as a turn: it is counted, not dropped
        # without a word (an answer left out of a copied table looks just so)
        notes.append(Skipped(shown, (
            f"{_rows_text(sorted(blank))}: the {found['text']} cell is empty, so no turn was "
            "made for it; what to do: check the cell, and fill it in if words are missing "
            "there"), kept=True))
    if continued:
        notes.append(Skipped(shown, (
            f"{_rows_text(sorted(continued))}: the {found['speaker']} cell is empty, so the "
            "speaker of the row before in the same case was taken (a turn split over rows); "
            "fill in the cell if that is not who spoke"), kept=True))
    if untimed:
        listed = "; ".join(f"row {row}: {why}" for row, why in untimed[:10]) + \
            (" ..." if len(untimed) > 10 else "")
        notes.append(Skipped(shown, (
            f"{len(untimed)} row(s) were read without their times ({listed}); their words "
            "were kept: what to do: write each time as seconds (12.5) or as a time stamp "
            "(00:00:12.500)"), kept=True))
    return _Read(cases, notes, tally=read)


#: one row of a transcript table: (spreadsheet row, turn number or None, speaker, text,
#: role or None, start and end time in seconds or NaN)
_Row = tuple[int, int | None, str, str, str | None, float, float]
#: a time cell: seconds ("12.5", "12,5") or a time stamp ("00:00:12.500", "0:12,5", "1:02")
_TIME_CELL = re.compile(r"\s*(?:(\d+(?:[.,]\d+)?)|((?:\d+:)?\d{1,2}:\d{2}(?:[.,]\d+)?))\s*")


def _row_times(begun: str, ended: str, found: Mapping[str, str | None]
               ) -> tuple[float, float, str | None]:
    """A table row's start and end in seconds (NaN for an empty cell, or for a table
    without the column), and why they were not read, or None: a cell that is no
    time, or an end before the start (both are then dropped, as a subtitle cue's)."""
    times = []
    for key, cell in (("start", begun), ("end", ended)):
        if not cell.strip():
            times.append(math.nan)
            continue
        match = _TIME_CELL.fullmatch(cell)
        value = (float(match[1].replace(",", ".")) if match[1] else _stamp_seconds(match[2])) \
            if match else math.nan
        if math.isnan(value):
            return math.nan, math.nan, f"{found[key]} '{cell.strip()[:30]}' is no time"
        times.append(value)
    start, end = times
    if end < start:
        return math.nan, math.nan, f"it ends ({end:g} s) before it starts ({start:g} s)"
    return start, end, None


def _turn_order(case_rows: list[_Row]):
    """The sort key of one case's rows (in file order, each with its turn number or
    None): by turn number, a row without one right after the row above it in the file
    (after any rows that share that row's number), rows without one in file order."""
    keys: dict[int, tuple[float, int, int]] = {}
    last: float = -math.inf                     # the number of the row above, or none yet
    for position, r in enumerate(case_rows):
        if r[1] is not None:
            last = r[1]
        keys[r[0]] = (last, r[1] is None, position)
    return lambda r: keys[r[0]]


# --- Cases table ----------------------------------------------------------------

def check_cases_table(path: Path, encoding: str = "auto") -> None:
    """Read the cases table as a run joins it, and refuse it as the run would (no rows,
    a case on two rows, a damaged file): ``consensa validate`` said "valid" of a config
    whose run then stopped on its cases table."""
    _join_cases_table(pd.DataFrame({"case_id": pd.Series([], dtype=str)}), path, encoding)


def strip_attribute_values(table: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """``table`` (a case id column and one text column per attribute, indexed by row
    as read from the file, the header above them) with the spaces and tabs around each
    attribute value removed, and a note naming the cells that had them (None when none
    had).

    White space around a value is not part of it: a tab pasted in with the value from
    a Word table, a space after the comma of a hand-made CSV; the subgroup counts
    compare values without it. Kept here, a tab before "North" stayed in the run's
    cases.csv while the .qdpx and the case matrix dropped it without a word. Stripped
    once, at the join, and noted: the run, the review and every export agree."""
    cells: list[str] = []
    out = table.copy()
    for column in out.columns:
        if column == "case_id":
            continue
        values = [str(v) for v in out[column]]
        stripped = [v.strip() for v in values]
        cells += [f"row {i + 2} '{column}'" for i, a, b in      # as numbered in a spreadsheet
                  zip(out.index, values, stripped, strict=True) if a != b]
        out[column] = stripped
    if not cells:
        return out, None
    listed = ", ".join(cells[:10]) + (f" and {len(cells) - 10} more" if len(cells) > 10 else "")
    return out, (f"{len(cells)} case attribute value(s) had spaces or tabs before or after "
                 f"them ({listed}); they were removed, since white space around a value is "
                 "not part of it (\" North\" and \"North\" are one group in the subgroup "
                 "counts and the exports): what to do: nothing, unless the spaces were meant")


def _join_cases_table(cases: pd.DataFrame, path: Path,
                      encoding: str) -> tuple[pd.DataFrame, list[Skipped]]:
    """``cases`` with the table's attributes (empty strings where a case has no row); the
    table is a CSV or the first sheet of an .xlsx."""
    shown = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"the cases table cannot be read ({exc.strerror})", path=shown,
                         field="ingest.cases_table",
                         hint="check the path of ingest.cases_table in the config") from exc
    notes: list[Skipped] = []
    if path.suffix.lower() == ".xlsx":
        # a team's table of participants is as often a workbook as a CSV; the first
        # sheet is the table. A formula's saved result is an attribute like any other
        # (an age worked out from a birth date); one never calculated reads as blank
        table, written, formulas, sheet, others, _ = _read_xlsx(data, 0, shown,
                                                                 look_for=("case_id",))
        if others and _find_column(list(table.columns), "case_id") is None:
            # a workbook whose first sheet is a cover or notes sheet: the table is later
            raise InputError(f"the cases table is read from the workbook's first sheet, "
                             f"'{sheet}', which has no case_id column; sheet '{others[0]}' "
                             "has one", path=shown, field="ingest.cases_table",
                             hint=f"move sheet '{others[0]}' to the front of the workbook, "
                                  "or save it as a CSV file of its own")
        blank = [ref for row, column, ref in formulas
                 if row < len(table) and column < len(table.columns) and
                 not table.iat[row, column].strip()]
        if blank:
            notes.append(Skipped(shown, (
                f"{len(blank)} formula cell(s) of sheet '{sheet}' have no saved result and "
                f"read as blank ({', '.join(blank[:10])}{' ...' if len(blank) > 10 else ''}): "
                "open the workbook in Excel and save it, so that their values are saved")))
    else:
        try:
            text, used = decode_bytes(data, encoding, path=shown)
        except InputError as exc:
            # the decoder's advice is for a transcript (save it as .txt or .docx)
            raise InputError(f"the cases table {exc.reason}", path=shown,
                             field="ingest.cases_table",
                             hint="save the table as CSV UTF-8 or as an .xlsx workbook (an "
                                  "old .xls workbook too: open it and save it as .xlsx)"
                             ) from None
        table, written = _read_csv(text, shown)
        notes += _mixed_encoding(data, used, shown, Counter())
    # every named column is an attribute: one named twice would reach the subgroups
    # under a name pandas made up ("age.1")
    for column in table.columns:
        check_columns_read_once(written, list(table.columns), {"a case attribute": column},
                                shown, letters=path.suffix.lower() == ".xlsx")
    if table.empty or not len(table.columns):
        raise InputError("the cases table has no rows", path=shown, field="ingest.cases_table",
                         hint="add one row per case, with the case id in the first column")
    key = _find_column(list(table.columns), "case_id") or table.columns[0]
    table = table.rename(columns={key: "case_id"})
    table = table[["case_id"] + [c for c in table.columns if c != "case_id"]]
    # read as the transcripts' case ids are (clean_name): an id with an invisible
    # character in it matched no transcript, its attributes lost
    written_ids = list(table["case_id"].str.strip())
    table["case_id"] = [clean_name(c).strip() for c in table["case_id"]]
    notes += _renamed_note(shown, dict(zip(written_ids, table["case_id"], strict=True)))
    table, spaced = strip_attribute_values(table)
    if spaced:
        notes.append(Skipped(shown, spaced, kept=True))
    # a Mac writes a file name's accents decomposed (NFD, "Zoe" + a combining diaeresis)
    # and a spreadsheet keeps them as typed, composed (NFC): one name, two spellings
    # that look alike and never matched. A row takes the transcript's spelling.
    spelled = {unicodedata.normalize("NFC", c): c for c in cases["case_id"]}
    table["case_id"] = [spelled.get(unicodedata.normalize("NFC", c), c)
                        for c in table["case_id"]]
    table = table[(table.map(str.strip) != "").any(axis=1)]             # blank rows
    repeated = sorted(set(table["case_id"][table["case_id"].duplicated()]))
    if repeated:
        # with no column named case_id the first column is taken for it, and a table of
        # attributes only (orientation, years) repeats its first attribute's values
        which = ("its column 'case_id'" if key.strip().casefold() == "case_id" else
                 f"its first column, '{key}', taken as the case id since no column is named "
                 "'case_id'")
        raise InputError(f"the cases table has more than one row for {repeated} in {which}",
                         path=shown, field="ingest.cases_table",
                         hint="keep one row per case" if key.strip().casefold() == "case_id"
                         else "add a column named case_id with the transcripts' case ids "
                              "(their file names without extension), one row per case")
    known = set(cases["case_id"])                     # once: a survey has thousands of cases
    unknown = [cid or "(no case id)" for cid in table["case_id"] if cid not in known]
    if unknown:
        notes.append(Skipped(shown, (
            f"{len(unknown)} row(s) of the cases table name cases that are not among the "
            f"transcripts: {', '.join(unknown[:20])}; their attributes were not used: "
            "check that the case ids match the transcript file names (without extension)")))
    listed = set(table["case_id"])
    absent = [cid for cid in cases["case_id"] if cid not in listed]
    if absent:
        notes.append(Skipped(shown, (
            f"{len(absent)} of {len(cases)} case(s) have no row in the cases table: "
            f"{', '.join(absent[:20])}{' ...' if len(absent) > 20 else ''}; their attributes "
            "are blank, so the subgroup counts leave them out: add a row for each"),
            kept=True))
    joined = cases.merge(table, on="case_id", how="left")
    return joined.fillna(""), notes

