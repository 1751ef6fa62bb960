"""The data that flows between stages, with its documented schemas.

Stages receive and return these objects, never the whole pipeline. Tables are
pandas DataFrames whose columns are listed here; :func:`check_columns` is the
boundary check each stage applies to what it receives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import ConsensaError, Skipped

# --- Ingest -----------------------------------------------------------------
#: One row per speaker turn.
#: case_id      str   the case (interview) this turn belongs to
#: turn_index   int   0-based position of the turn within its case
#: speaker      str   the label as written in the source ("Interviewer", "P3")
#: role         str   "participant" or "interviewer" (or "other")
#: text         str   the turn's text, exactly ``source.text[start_char:end_char]``
#: start_char   int   offset of the text in the case's source text (see SourceText)
#: end_char     int   end offset (exclusive)
#: start_time   float seconds from the start of the recording, NaN if unknown
#: end_time     float seconds, NaN if unknown
#: source_file  str   path of the file the turn came from
TURN_COLUMNS = ("case_id", "turn_index", "speaker", "role", "text", "start_char",
                "end_char", "start_time", "end_time", "source_file")

ROLES = ("participant", "interviewer", "other")


@dataclass(frozen=True)
class SourceText:
    """The text of one case as Consensa decoded it; offsets index into ``text``.

    For plain-text formats ``text`` is the decoded file with line endings kept as
    they are. For .docx it is the paragraphs joined with "\\n"; for .vtt/.srt the
    cue payloads; for tables the cells joined with "\\n". In every format, control
    characters are normalised before anything is parsed (form feed and vertical
    tab as spaces, the others but tab, newline and carriage return removed), so
    offsets index the normalised text. ``sha256`` is the hash of the file's bytes,
    recorded in the manifest.
    """

    case_id: str
    path: str
    text: str
    sha256: str
    encoding: str


@dataclass(frozen=True)
class Corpus:
    """What ingest returns: turns, case attributes, source texts, what was skipped."""

    turns: pd.DataFrame                       # TURN_COLUMNS
    cases: pd.DataFrame                       # case_id + user attributes
    sources: Mapping[str, SourceText]         # case_id -> source text
    skipped: tuple[Skipped, ...] = ()
    #: what ingest changed in the texts it read, for the manifest's counts
    #: (control_characters_replaced, control_characters_removed; see pipeline/stages/ingest.py)
    counts: Mapping[str, int] = field(default_factory=dict)
    #: case_id -> the timed pieces its turns were merged from (a subtitle file's cues,
    #: a timed table's rows), each ``(start_char, end_char, start_time, end_time)`` in
    #: the source text, in text order: a segment takes the times of the pieces it spans
    #: (pipeline/stages/segment.py), not its whole turn's. A case without is absent.
    times: Mapping[str, tuple[tuple[int, int, float, float], ...]] = field(default_factory=dict)


# --- Segment ----------------------------------------------------------------
#: One row per meaning unit (a run of sentences within one turn).
#: segment_id   str   "<case_id>:<turn_index>:<n>", stable across runs
#: case_id, turn_index, speaker, role, start_char, end_char, start_time, end_time,
#: source_file    as in TURN_COLUMNS (offsets of this segment's text; its times are those
#:                of the cues or timed rows it spans, where ingest kept them: Corpus.times)
#: text         str   exactly ``source.text[start_char:end_char]``
#: question     str   text of the interviewer turn this segment answers ("" if none)
#: question_turn_index int  turn_index of that question (-1 if none)
#: n_words      int
SEGMENT_COLUMNS = ("segment_id", "case_id", "turn_index", "speaker", "role", "text",
                   "start_char", "end_char", "start_time", "end_time", "source_file",
                   "question", "question_turn_index", "n_words")


#: Every turn or unit the segmenter set aside, one row each (``skipped.csv`` in the
#: run folder); ``skipped`` holds the same as counted notes with the first few places.
#:
#: case_id, turn_index, speaker, role   the turn it is in
#: start_char, end_char  int            where it is in the source text
#: source_file                          the file
#: reason                               why it was set aside, as the note says
#: text                                 what was said
LEFT_OUT_COLUMNS = ("case_id", "turn_index", "speaker", "role", "start_char", "end_char",
                    "source_file", "reason", "text")
#: the run folder's file of them, written when there is one
SKIPPED_CSV = "skipped.csv"


@dataclass(frozen=True)
class Segmentation:
    """What segmentation returns: the segments to analyse, and what was set aside."""

    segments: pd.DataFrame                    # SEGMENT_COLUMNS, analysed ones only
    skipped: tuple[Skipped, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    left_out: pd.DataFrame | None = None      # LEFT_OUT_COLUMNS: what ``skipped`` counts


# --- Cluster ----------------------------------------------------------------
@dataclass(frozen=True)
class Clustering:
    """Theme assignments for the segments, in the segments' order.

    theme     int    theme number (0..k-1); -1 where a segment stays unassigned
    strength  float  membership strength in [0, 1]: the clusterer's probability for
                     core members, cosine similarity to the theme centroid for
                     reassigned outliers, 0 for unassigned
    reassigned bool  True where an outlier was moved to its nearest theme
    """

    theme: np.ndarray
    strength: np.ndarray
    reassigned: np.ndarray
    n_outliers_initial: int

    @property
    def n_themes(self) -> int:
        return int(self.theme.max()) + 1 if len(self.theme) and self.theme.max() >= 0 else 0

    @property
    def unassigned_share(self) -> float:
        return float(np.mean(self.theme < 0)) if len(self.theme) else 0.0


def frame_domain_ids(domains: pd.DataFrame) -> set[int]:
    """The domains a CQR run sets apart from the cross-analysis (the interview frame:
    greetings, thanks, background); none for a table without ``in_cross_analysis``."""
    if "in_cross_analysis" not in domains.columns:
        return set()
    return set(domains.loc[~domains["in_cross_analysis"].astype(bool), "domain_id"].astype(int))


def domains_in_words(n_domains: int, n_frame: int) -> str:
    """A run's domains as its summaries say them: the interview frame is listed among
    the domains but is not one of the cross-analysis's, so it is named, not counted
    ("11 and the interview frame"). ``n_domains`` excludes the frame already."""
    return f"{n_domains} and the interview frame" if n_frame else f"{n_domains}"


def check_columns(df: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    """Boundary check: a stage refuses a table that lacks the columns it needs."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConsensaError(f"{what} lacks the columns {missing}; expected {list(columns)}")


# --- Run outputs ------------------------------------------------------------
#: segments.parquet/.csv: SEGMENT_COLUMNS plus
#: theme        int   theme_id, -1 = unassigned
#: theme_name   str   provisional name ("" when unassigned)
#: domain_id    int   -1 = unassigned
#: domain_name  str
#: strength     float membership strength (see Clustering)
#: reassigned   bool
#: map_x, map_y float 2-D map coordinates for the report
ASSIGNED_SEGMENT_COLUMNS = SEGMENT_COLUMNS + (
    "theme", "theme_name", "domain_id", "domain_name", "strength", "reassigned",
    "map_x", "map_y")

#: themes.parquet/.csv, one row per theme (a CQR "category").
#: theme_id int; name str; domain_id int; keywords list[str] (best first);
#: key_phrases list[str]; n_segments int; n_cases int; cases list[str];
#: frequency_label str (general/typical/variant/rare/single case); quote_ids list[str]
#: (segment_ids of representative quotes, best first); core_idea str (the
#: first representative quote); mean_strength float; n_reassigned int
#: List columns stay lists in memory and in the parquet tables; only a CSV or a
#: workbook cell joins them with "; " (pipeline/sheets.py, :func:`~pipeline.sheets.join_list`).
THEME_COLUMNS = ("theme_id", "name", "domain_id", "keywords", "key_phrases",
                 "n_segments", "n_cases", "cases", "frequency_label", "quote_ids",
                 "core_idea", "mean_strength", "n_reassigned")

#: domains.parquet/.csv, one row per proposed domain. The miscellaneous domain is named
#: "Miscellaneous" and holds themes that fit no other domain.
#: domain_id int; name str; keywords list[str]; theme_ids list[int]; n_themes int;
#: n_segments int; n_cases int; frequency_label str; is_miscellaneous bool
DOMAIN_COLUMNS = ("domain_id", "name", "keywords", "theme_ids", "n_themes",
                  "n_segments", "n_cases", "frequency_label", "is_miscellaneous")

#: cqr_table.parquet/.csv: Domain / Category / Frequency label / n cases / core idea quote.
#: A CQR run's table adds level, flags, label_if_reassigned_counted, quote_segment_ids
#: list[str] (every segment its illustrative core idea quotes; quote_segment_id is the
#: first), category_id (its row in categories.csv) and pole (a stance subcategory's
#: pole, "helpful" or "not helpful"; "" for every other row)
CQR_COLUMNS = ("domain", "category", "frequency_label", "n_cases", "cases_total",
               "quote", "quote_case", "quote_segment_id")

#: concepts.parquet/.csv: one row per sensitizing concept from the config.
#: concept str; description str; status "supported"/"unsupported"; theme_ids list[int]
#: (themes that support it, best first); similarity float (best theme);
#: n_segments int (segments above the threshold); n_cases int; quote_ids list[str];
#: segment_ids list[str] (the n_segments segments, most similar first)
CONCEPT_COLUMNS = ("concept", "description", "status", "theme_ids", "similarity",
                   "n_segments", "n_cases", "quote_ids", "segment_ids")

#: The list columns of the run's tables and the type of their items, per table (the
#: keys of :class:`RunResult`'s tables): written as parquet lists, read back as lists.
#: categories.parquet/.csv (a CQR run only; pipeline/analysis.py): every category and
#: subcategory in display order: the cross-analysis' columns
#: (pipeline/stages/crossanalysis.py, CATEGORY_COLUMNS) and the category's name
#: (pipeline/stages/naming.py), plus theme_id int (the run's theme row of its
#: top-level category: the review's unit), segment_ids list[str], extractive_name str
#: (the phrase name; ``name`` is the language model's where the config has ``llm``)
#: and definition str (the language model's; "" without one)
CATEGORY_TABLE_COLUMNS = (
    "category_id", "parent_id", "theme_id", "domain_id", "kind", "name", "alternatives",
    "keywords", "n_segments", "n_cases", "cases", "counted_cases", "frequency_label",
    "label_if_reassigned_counted", "flags", "spans_domains", "quote_ids", "n_reassigned",
    "thin_cases", "pole", "segment_ids", "extractive_name", "definition")

#: core_ideas.parquet/.csv (a CQR run only): one row per case and domain
#: (pipeline/stages/coreideas.py): case_id str; domain_id int; domain str; core_idea
#: str; segment_ids list[str]; n_words int; spans list[str] ("segment_id:start-end",
#: offsets into the segment's text)
CORE_IDEA_TABLE_COLUMNS = ("case_id", "domain_id", "domain", "core_idea", "segment_ids",
                           "n_words", "spans", "extractive_core_idea")

LIST_COLUMNS: Mapping[str, Mapping[str, type]] = {
    "themes": {"keywords": str, "key_phrases": str, "cases": str, "quote_ids": str,
               "flags": str},
    "domains": {"keywords": str, "theme_ids": int, "area_ids": int},
    "cqr": {"flags": str, "quote_segment_ids": str},
    "concepts": {"theme_ids": int, "quote_ids": str, "segment_ids": str},
    "categories": {"alternatives": str, "keywords": str, "cases": str, "counted_cases": str,
                   "flags": str, "spans_domains": int, "quote_ids": str, "thin_cases": str,
                   "segment_ids": str},
    "core_ideas": {"segment_ids": str, "spans": str},
}


@dataclass(frozen=True)
class RunResult:
    """Everything a run produced, as handed to the writers and the report."""

    segments: pd.DataFrame          # ASSIGNED_SEGMENT_COLUMNS
    themes: pd.DataFrame            # THEME_COLUMNS
    domains: pd.DataFrame           # DOMAIN_COLUMNS
    cqr: pd.DataFrame               # CQR_COLUMNS
    concepts: pd.DataFrame          # CONCEPT_COLUMNS (may be empty)
    theme_linkage: np.ndarray | None  # scipy linkage over theme centroids (k-1, 4)
    manifest: Mapping               # see pipeline/run.py
    config: Mapping                 # the resolved config
    #: the segments' embeddings (float32, segment order) and every turn ingest read
    #: (TURN_COLUMNS, interviewer turns included): saved in the run folder so that
    #: later steps need neither re-embed nor re-read the transcripts (pipeline/runfolder.py)
    vectors: np.ndarray | None = None
    turns: pd.DataFrame | None = None
    #: a CQR run's own tables (pipeline/analysis.py): None in a themes run
    categories: pd.DataFrame | None = None    # CATEGORY_TABLE_COLUMNS
    core_ideas: pd.DataFrame | None = None    # CORE_IDEA_TABLE_COLUMNS
    protocol: str | None = None               # protocol.yaml
    prompts: pd.DataFrame | None = None       # the protocol's prompts (protocol_prompts.csv)
    llm_log: str | None = None                # llm_log.jsonl: every call to the language model
    left_out: pd.DataFrame | None = None      # LEFT_OUT_COLUMNS (skipped.csv)
    #: the case attributes ingest read (case_id + one text column per attribute, from a
    #: cases table or a QDA project's case variables): cases.csv, so the run folder keeps
    #: the attributes its subgroups and exports use; None or no attribute: not written
    cases: pd.DataFrame | None = None
