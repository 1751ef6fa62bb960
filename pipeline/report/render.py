"""The run report: one self-contained HTML page a researcher opens offline.

:func:`render_report` turns a :class:`~pipeline.types.RunResult` into a single
HTML document. Nothing in it is fetched from elsewhere: the CSS is inline, the
plots are inline SVG drawn by matplotlib (text kept as text, dense parts
rasterized into ``data:`` PNGs inside the SVG), there is no script, and a
Content-Security-Policy ``<meta>`` forbids loading anything external even if a
reference slipped in. Transcript text is user data: the Jinja2 template escapes
everything it prints (autoescaping on), and the only markup passed through
unescaped is the SVG matplotlib writes, which escapes its own text.

The output is deterministic: the same RunResult renders to the same bytes (no
dates in plot metadata, a fixed ``svg.hashsalt`` per plot, a fixed seed for the
map's subsample). Plots use matplotlib's object API with the Agg canvas, never
pyplot, so no global figure state is touched or left behind (:mod:`.plots`, shared
with the comparison page). The template environment comes from :mod:`.templating`.

The result is typed as ``pipeline/types.py`` documents it (a run's own result, or
one read back through :class:`~pipeline.runfolder.RunFolder`): numbers are numbers,
list columns (``keywords``, ``cases``, ``quote_ids``, ``theme_ids``) are lists. A table
that lacks a documented column is refused with an error naming it. Beyond that:

* CQR rows carry no theme id; each row is linked to its theme through
  ``quote_segment_id`` (the segment's ``theme``), else through a unique
  ``category`` == theme ``name`` match, else left unlinked.
* ``theme_linkage`` leaf ``i`` is the ``i``-th theme by ascending ``theme_id``
  (the linkage is computed over the centroids of themes ``0..k-1``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from markupsafe import Markup
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from ..config import CQR_ANALYSIS
from ..errors import left_out_and_kept, note_count
from ..stages.cluster import sample_summary
from ..stages.cqr import shown_category
from ..stages.llm import stats_summary
from ..stages.protocol import placed_summary
from ..types import (
    ASSIGNED_SEGMENT_COLUMNS,
    CONCEPT_COLUMNS,
    CQR_COLUMNS,
    DOMAIN_COLUMNS,
    SKIPPED_CSV,
    THEME_COLUMNS,
    RunResult,
    check_columns,
    domains_in_words,
    frame_domain_ids,
)
from .plots import figure_svg, mpl_text
from .templating import counted, page_environment

__all__ = ["render_report", "MAX_MAP_POINTS", "MAX_UNASSIGNED_LISTED"]

#: The map draws at most this many points (a deterministic stratified subsample).
MAX_MAP_POINTS = 20_000
#: Unassigned segments listed in full up to this many; beyond, the first ones by case/turn.
MAX_UNASSIGNED_LISTED = 500
#: Skipped items listed individually up to this many (all are counted by reason).
MAX_SKIPPED_LISTED = 2_000

#: The manifest's counts (``manifest.json``: ``counts``) in the words the report's
#: Counts table gives them: key -> (what it is about, what was counted). The keys are
#: the program's; a researcher reads the words (the key stays on hover, to find it in
#: manifest.json). A key not listed here is still shown, in words made from it
#: (:func:`count_words`): no count is left out of the table for want of a phrase.
COUNT_WORDS: dict[str, tuple[str, str]] = {
    "cases": ("Transcripts", "Cases (transcripts) read"),
    "cases_analysed": ("Transcripts", "Cases analysed"),
    "turns": ("Transcripts", "Speaker turns read"),
    "paths_not_read": ("Transcripts", "Files listed but not read"),
    "control_characters_replaced": ("Transcripts", "Control characters replaced"),
    "control_characters_removed": ("Transcripts", "Control characters removed"),
    "xlsx_formula_cells_not_read": ("Transcripts", "Spreadsheet cells holding a formula, not read"),
    "lines_decoded_as_cp1252": ("Transcripts", "Lines read as Windows-1252, not UTF-8"),
    "cue_times_dropped": ("Transcripts", "Subtitle cues whose times were dropped "
                                         "(ending before they start)"),
    "cues_out_of_order": ("Transcripts", "Subtitle cues starting before an earlier cue"),
    "labelled_turns_without_text": ("Transcripts", "Speaker labels with no words after them"),
    "meeting_notices_not_read": ("Transcripts", "Meeting program notices between turns, "
                                                "not read"),
    "cases_roles_contradicted": ("Transcripts", "Cases whose turns say the roles given to "
                                                "their speakers are swapped"),
    "segment_turns": ("Segments", "Turns the segmenter read"),
    "segment_turns_not_analysed_role": ("Segments", "Turns of a role not analysed "
                                                    "(the interviewer's, say)"),
    "segment_turns_backchannel": ("Segments", "Backchannel turns set aside (\"mm-hm\")"),
    "segment_units_too_short": ("Segments", "Passages too short to be a segment"),
    "segment_units_no_words": ("Segments", "Passages with no words"),
    "segment_segments": ("Segments", "Segments analysed"),
    "segment_cases_without_segments": ("Segments", "Cases with no segment"),
    "embedded": ("Segments", "Segments embedded in this run"),
    "embeddings_from_cache": ("Segments", "Embeddings taken from the cache"),
    "themes": ("Themes", "Themes"),
    "domains": ("Themes", "Domains"),
    "outliers_before_reassignment": ("Themes", "Outliers (in no theme before reassignment)"),
    "reassigned": ("Themes", "Outliers reassigned to the nearest theme"),
    "unassigned": ("Themes", "Segments in no theme"),
    "fitted_on_sample": ("Themes", "Segments the themes were fitted on (a sample)"),
    "joined_after_sample": ("Themes", "Segments that joined the themes after the sample"),
    "unassigned_after_sample": ("Themes", "Of these, segments no theme was close enough to"),
    "sample_seed": ("Themes", "Seed of the sample"),
    "frame_segments": ("Categories", "Segments of the interview frame (set apart)"),
    "segments_moved_domain": ("Cross-analysis", "Segments moved to the domain nearest "
                                                "in content"),
    "segments_placed_by_content": ("Cross-analysis", "Segments answering no question of the "
                                                     "protocol, placed by content"),
    "crossanalysis_segments": ("Cross-analysis", "Segments"),
    "crossanalysis_analysed": ("Cross-analysis", "Segments in the cross-analysis"),
    "crossanalysis_no_domain": ("Cross-analysis", "Segments in no domain"),
    "crossanalysis_frame_skipped": ("Cross-analysis", "Segments of the interview frame, "
                                                      "not cross-analysed"),
    "crossanalysis_outliers": ("Cross-analysis", "Outliers within their domains, before "
                                                 "reassignment"),
    "crossanalysis_reassigned": ("Cross-analysis", "Outliers reassigned to the nearest "
                                                   "category of their domain"),
    "crossanalysis_reassigned_counted": ("Cross-analysis", "Reassigned outliers close enough "
                                                           "to count toward a label"),
    "crossanalysis_unassigned": ("Cross-analysis", "Segments in no category of their domain"),
    "crossanalysis_whole_domain_categories": ("Cross-analysis", "Domains kept whole as one "
                                                                "category"),
    "crossanalysis_subcategorised": ("Cross-analysis", "Categories split into subcategories"),
    "crossanalysis_stance_splits": ("Cross-analysis", "Categories split by the participants' "
                                                      "stance"),
    "crossanalysis_stance_splits_not_in_words": ("Cross-analysis", "Stance splits not proposed: "
                                                                "the words did not lean as the "
                                                                "poles said"),
    "crossanalysis_fitted_on_sample": ("Cross-analysis", "Segments the categories were fitted "
                                                         "on (a sample)"),
    "crossanalysis_joined_after_sample": ("Cross-analysis", "Segments that joined a category "
                                                            "after the sample"),
    "crossanalysis_laid_out_domains": ("Cross-analysis", "Domains laid out before clustering "
                                                         "(large)"),
    "crossanalysis_laid_out_segments": ("Cross-analysis", "Segments in those domains"),
    "protocol_prompts": ("Interview protocol", "Interviewer prompts"),
    "protocol_main_questions": ("Interview protocol", "Main questions"),
    "protocol_follow_ups": ("Interview protocol", "Follow-up questions"),
    "protocol_probes": ("Interview protocol", "Probes"),
    "protocol_backchannels": ("Interview protocol", "Backchannels (\"mm-hm\")"),
    "protocol_tasks": ("Interview protocol", "Tasks"),
    "protocol_frame_prompts": ("Interview protocol", "Prompts of the interview frame "
                                                     "(greeting, background, closing)"),
    "protocol_areas": ("Interview protocol", "Topic areas"),
    "protocol_background_prompts_made_content": ("Interview protocol", "Background prompts "
                                                                       "taken as questions of "
                                                                       "content"),
    "protocol_frame_areas": ("Interview protocol", "Areas of the interview frame"),
    "protocol_areas_without_segments": ("Interview protocol", "Areas no segment answers"),
    "protocol_segments_small_talk": ("Interview protocol", "Segments of small talk"),
    "protocol_prompts_matched_by_polarity": ("Interview protocol", "Questions matched to the "
                                                                   "file's question of their "
                                                                   "polarity (what helped, "
                                                                   "what did not)"),
    "protocol_segments_closing_courtesy": ("Interview protocol", "Courtesies in the closing "
                                                                 "(thanks), kept in the frame"),
    "protocol_segments_in_frame_areas": ("Interview protocol", "Segments in an area of the "
                                                               "interview frame"),
    "protocol_segments_without_question": ("Interview protocol", "Segments after no "
                                                                 "interviewer question"),
    "protocol_prompts_without_area": ("Interview protocol", "Prompts in no area"),
    "protocol_prompts_not_in_protocol_after_frame": (
        "Interview protocol", "Prompts not in the protocol file, asked after the frame"),
    "protocol_prompts_not_in_protocol_in_frame": (
        "Interview protocol", "Prompts not in the protocol file, kept in the interview frame "
                              "(small talk, background; protocol.yaml lists them)"),
}

#: A CQR run's own words for the counts a themes run shares: its groups are categories,
#: and its domains include the interview frame.
CQR_COUNT_WORDS: dict[str, tuple[str, str]] = {
    "themes": ("Categories", "Categories"),
    "domains": ("Categories", "Domains, the interview frame among them"),
    "outliers_before_reassignment": ("Categories", "Outliers (in no category at first)"),
    "reassigned": ("Categories", "Outliers reassigned to the nearest category"),
    "unassigned": ("Categories", "Segments in no category (those in no domain included)"),
}

#: The stage a key without words of its own is about, by its prefix (``segment_``...).
_COUNT_PREFIXES = (("crossanalysis_", "Cross-analysis"), ("protocol_", "Interview protocol"),
                   ("segment_", "Segments"), ("llm_", "Language model"))


def count_words(key: str, cqr: bool = False) -> tuple[str, str]:
    """(what a count is about, what it counts) in words, for the report's Counts table.
    ``cqr``: a CQR run, whose ``themes`` are categories and whose domains include the
    interview frame."""
    if cqr and key in CQR_COUNT_WORDS:
        return CQR_COUNT_WORDS[key]
    if key in COUNT_WORDS:
        return COUNT_WORDS[key]
    group, rest = next(((g, key[len(p):]) for p, g in _COUNT_PREFIXES if key.startswith(p)),
                       ("Other counts", key))
    words = " ".join(rest.replace("_", " ").split()) or key
    return group, words[:1].upper() + words[1:]
#: above this many cases the heat map labels every n-th case column only
MAX_CASE_LABELS = 60
#: The heat map of at most MAX_CASE_LABELS cases and this many cells is a table, its
#: counts in its cells (text a reader can select and zoom, and a millisecond to write
#: where matplotlib took 0.4 s); a larger one is drawn, without the counts. A CQR
#: study has a few dozen cases; a pre-coded archive may have thousands.
TABLE_MAX_CELLS = 3_000
#: The question a quote answers is shown up to about this many characters.
QUESTION_CHARS = 200
#: Map labels show theme names up to this many themes, ids only beyond.
MAP_NAMED_LABELS = 25
#: Above this many points the map's scatter is rasterized (inside the SVG).
RASTERIZE_ABOVE = 3_000

MAP_SEED = 20240531
UNASSIGNED_COLOUR = "#cfcfd4"
#: The interview frame is drawn as rings of this grey, not as filled light-grey dots:
#: it was set apart on purpose, and a reader who saw it as unassigned would take the
#: run for one that left far more of its data unexplained than it did.
FRAME_COLOUR = "#8e8e96"
#: the map's stratum for the frame's segments (themes are >= 0, unassigned -1), so a
#: subsampled map keeps some of each as it keeps some of every theme
_FRAME_GROUP = -2
TEMPLATE_NAME = "report.html.j2"

# tab20 without its grey pair (kept for "unassigned"), dark shades first so that
# neighbouring theme ids get different hues, not the light twin of the same hue.
_TAB20 = [to_hex(matplotlib.colormaps["tab20"].colors[i])
          for i in (0, 2, 4, 6, 8, 10, 12, 16, 18, 1, 3, 5, 7, 9, 11, 13, 17, 19)]

DEFAULT_FREQUENCY_TEXT = (
    "general = all cases or all but one; typical = more than half of the cases, up to "
    "the cut-off for general; variant = 2 cases up to half; rare = 2–3 cases, used "
    "instead of the lower end of variant only when there are more than 15 cases; a "
    "category found in a single case is flagged single case.")


# --- Public entry point -------------------------------------------------------

def render_report(result: RunResult) -> str:
    """Render the run report as one self-contained HTML document (a str).

    The caller writes it to disk (atomically). Deterministic: rendering the same
    result twice gives the same string.
    """
    concepts = result.concepts if result.concepts is not None and len(result.concepts) else None
    for df, columns, what in ((result.segments, ASSIGNED_SEGMENT_COLUMNS, "segments"),
                              (result.themes, THEME_COLUMNS, "themes"),
                              (result.domains, DOMAIN_COLUMNS, "domains"),
                              (result.cqr, CQR_COLUMNS, "CQR table"),
                              (concepts, CONCEPT_COLUMNS, "concepts")):
        if df is not None:
            check_columns(df, columns, f"the run's {what}")
    manifest: Mapping = result.manifest or {}
    config: Mapping = result.config or {}
    cqr, domains = result.cqr, result.domains

    seg = result.segments.reset_index(drop=True)
    seg_theme = seg["theme"].to_numpy(dtype=np.int64)
    lookup = _SegmentLookup(seg)

    domain_rank, domain_names = _domain_order(domains, result.themes)
    themes = result.themes.assign(_rank=result.themes["domain_id"].map(domain_rank)).sort_values(
        ["_rank", "theme_id"], kind="stable").drop(columns="_rank").reset_index(drop=True)
    colours = {int(t): _TAB20[int(t) % len(_TAB20)] for t in themes["theme_id"]}
    theme_names = {int(t): n for t, n in zip(themes["theme_id"], themes["name"])}

    cases = _natural_sorted(set(seg["case_id"]))
    per_theme_case = _theme_case_counts(seg, seg_theme)
    n_cases_total = _cases_total(cqr, cases)

    frame = _frame_segments(seg, seg_theme, domains)
    # one answer to "which cases does a theme's label count", for every place that
    # shows a count beside a label (the domains' tree, the theme cards)
    counted_cases = _counted_cases(seg, seg_theme)
    ctx: dict[str, Any] = {
        "header": _header(seg, seg_theme, themes, domains, manifest, config,
                          n_cases_total, cases, frame),
        "toc": [],
        "cqr": _cqr_section(cqr, themes, lookup, manifest, n_cases_total, config),
        "protocol": _protocol_section(result.protocol, domains, n_cases_total,
                                      _protocol_given(config)),
        "core_ideas": _core_ideas_section(result.core_ideas, domains, cases),
        "map": _map_section(seg, seg_theme, themes, colours, frame),
        "heatmap": _heatmap_section(themes, domain_names, cases, per_theme_case),
        "tree": _tree_section(result.theme_linkage, themes, domains, domain_rank, colours,
                              counted_cases),
        "concepts": _concepts_section(concepts, theme_names, lookup),
        "themes": _theme_cards(themes, domain_names, colours, per_theme_case, lookup,
                               counted_cases),
        "stability": _stability_section(themes, manifest),
        "unassigned": _unassigned_section(seg, seg_theme, frame),
        "skipped": _skipped_section(manifest, getattr(result, "left_out", None)),
        "provenance": _provenance_section(manifest, config),
    }
    ctx["toc"] = [(anchor, title) for anchor, title, key in (
        ("summary", "Summary", "header"), ("cqr", "Cross-analysis (CQR table)", "cqr"),
        ("protocol", "Domains from the interview protocol", "protocol"),
        ("core-ideas", "Core ideas", "core_ideas"),
        ("map", "Map of segments", "map"), ("heatmap", "Themes by case", "heatmap"),
        ("domains", "Domains", "tree"), ("concepts", "Sensitizing concepts", "concepts"),
        ("themes", "Themes", "themes"), ("stability", "Stability of the themes", "stability"),
        ("unassigned", "Unassigned segments", "unassigned"),
        ("skipped", "What was skipped", "skipped"), ("provenance", "How this was made",
                                                       "provenance"),
    ) if ctx[key] is not None]
    return page_environment().get_template(TEMPLATE_NAME).render(**ctx)


# --- Small helpers ------------------------------------------------------------

def _computed(x: float | None) -> bool:
    """Whether a measure was computed: not None (a key the manifest lacks), not NaN (a
    statistic with nothing to count, e.g. a theme absent from every resample)."""
    return x is not None and math.isfinite(x)


def _fmt_float(x: float | None, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if _computed(x) else "—"


def _fmt_share(n: int, total: int) -> str:
    if total <= 0:
        return "—"
    return f"{100.0 * n / total:.1f} % ({n:,} of {total:,})"


def _n(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _fmt_seconds(sec: float) -> str:
    if sec < 60:
        return f"{sec:.1f} s"
    minutes, s = divmod(int(round(sec)), 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {s:02d} s"


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "none"


def _natural_key(text: str) -> tuple:
    parts = re.split(r"(\d+)", text)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)) + (text,)


def _natural_sorted(items: Iterable[str]) -> list[str]:
    return sorted(items, key=_natural_key)


def _truncate(text: str, limit: int) -> tuple[str, bool]:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text, False
    cut = text[:limit]
    if " " in cut[limit // 2:]:
        cut = cut[:cut.rfind(" ")]
    return cut.rstrip(" ,;:") + " …", True


def _freq(label: str | None) -> dict[str, str]:
    text = label or "not recorded"
    return {"text": text, "cls": _slug(text)}


def _plain(obj: Any) -> Any:
    """Config values as plain YAML-able data."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [_plain(v) for v in obj]
        return sorted(items, key=str) if isinstance(obj, (set, frozenset)) else items
    if isinstance(obj, np.ndarray):
        return [_plain(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if hasattr(obj, "model_dump"):  # pydantic models
        return _plain(obj.model_dump())
    return str(obj)


class _SegmentLookup:
    """segment_id -> the fields a quote shows, without a pandas lookup per quote."""

    FIELDS = ("segment_id", "case_id", "turn_index", "speaker", "text", "start_char",
              "end_char", "start_time", "question", "theme", "strength", "reassigned",
              "source_file")

    def __init__(self, seg: pd.DataFrame) -> None:
        self._cols = {f: seg[f].to_numpy(dtype=object) for f in self.FIELDS}
        self._pos: dict[str, int] = {}
        for i, sid in enumerate(self._cols["segment_id"]):
            self._pos.setdefault(sid, i)

    def theme_of(self, segment_id: str) -> int | None:
        i = self._pos.get(segment_id)
        return None if i is None else int(self._cols["theme"][i])

    def quote(self, segment_id: str) -> dict[str, Any]:
        i = self._pos.get(segment_id)
        if i is None:
            return {"found": False, "segment_id": segment_id}
        c = {f: self._cols[f][i] for f in self.FIELDS}
        question = c["question"]
        q_short, q_cut = _truncate(question, QUESTION_CHARS)
        start_time = c["start_time"]              # NaN when the transcript has no times
        return {
            "found": True, "segment_id": segment_id, "text": c["text"],
            "case_id": c["case_id"], "speaker": c["speaker"],
            "turn": str(c["turn_index"]), "start": str(c["start_char"]), "end": str(c["end_char"]),
            "time": _fmt_clock(start_time) if _computed(start_time) else "",
            "question": q_short, "question_full": question if q_cut else "",
            "strength": _fmt_float(c["strength"]), "reassigned": bool(c["reassigned"]),
        }


def _fmt_clock(sec: float) -> str:
    sec = int(sec)
    h, rest = divmod(sec, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _domain_order(domains: pd.DataFrame, themes: pd.DataFrame
                  ) -> tuple[dict[int, tuple], dict[int, str]]:
    """Rank of each domain id (numbered domains, then Miscellaneous, then unknown ones)."""
    rank: dict[int, tuple] = {}
    names: dict[int, str] = {}
    for d, name, misc in zip(domains["domain_id"], domains["name"], domains["is_miscellaneous"]):
        d = int(d)
        rank.setdefault(d, (1 if misc else 0, d))
        names.setdefault(d, name)
    for d in themes["domain_id"]:
        d = int(d)
        if d not in rank:
            rank[d] = (2, d)
            names[d] = "No domain" if d < 0 else f"Domain {d} (not in the domains table)"
    return rank, names


def _theme_case_counts(seg: pd.DataFrame, seg_theme: np.ndarray) -> dict[int, dict[str, int]]:
    mask = seg_theme >= 0
    if not mask.any():
        return {}
    frame = pd.DataFrame({"theme": seg_theme[mask], "case": seg["case_id"].to_numpy()[mask]})
    out: dict[int, dict[str, int]] = {}
    for (t, c), n in frame.groupby(["theme", "case"], sort=True).size().items():
        out.setdefault(int(t), {})[c] = int(n)
    return out


def _cases_total(cqr: pd.DataFrame, cases: list[str]) -> int:
    return max(len(cases), int(cqr["cases_total"].max())) if len(cqr) else len(cases)


# --- Sections -----------------------------------------------------------------

def _frame_segments(seg: pd.DataFrame, seg_theme: np.ndarray,
                    domains: pd.DataFrame) -> np.ndarray:
    """The segments of the interview frame (a CQR run's domains left out of the
    cross-analysis: greetings, thanks, background): set apart on purpose, so not
    counted or listed as unassigned, as the run's summary does not count them."""
    if "domain_id" not in seg.columns:
        return np.zeros(len(seg), dtype=bool)
    return (seg_theme < 0) & seg["domain_id"].isin(frame_domain_ids(domains)).to_numpy()


def _header(seg: pd.DataFrame, seg_theme: np.ndarray, themes: pd.DataFrame,
            domains: pd.DataFrame, manifest: Mapping, config: Mapping, n_cases_total: int,
            cases: list[str], frame: np.ndarray) -> dict[str, Any]:
    n_seg = len(seg)
    n_unassigned = int(((seg_theme < 0) & ~frame).sum())
    counts = manifest.get("counts") or {}
    sampled = sample_summary(counts)
    # segments joined after a sample are marked reassigned (they count as such), but
    # only the sample's outliers were moved: the manifest counts those
    n_reassigned = int(counts.get("reassigned", 0)) if sampled else \
        int(seg["reassigned"].astype(bool).sum())
    timings = manifest.get("timings")
    wall = _fmt_seconds(sum(timings.values())) if timings else None
    started = manifest.get("started_at")
    cases_text = f"{n_cases_total:,}"
    if n_cases_total != len(cases):
        cases_text += f" ({len(cases):,} with analysed segments)"
    # a CQR run's groups are categories, and its interview frame is listed among the
    # domains but is none of the cross-analysis's: named, not counted, as the run's
    # summary line says it ("5 and the interview frame", where the header said 6)
    cqr = manifest.get("analysis") == CQR_ANALYSIS
    n_frame = len(frame_domain_ids(domains))
    stats = [
        ("Cases", cases_text),
        ("Segments analysed", f"{n_seg:,}"),
        ("Categories" if cqr else "Themes", f"{len(themes):,}"),
        ("Domains", domains_in_words(len(domains) - n_frame, n_frame)),
        ("Unassigned segments", _fmt_share(n_unassigned, n_seg)),
        *([("Interview frame (set apart)", _fmt_share(int(frame.sum()), n_seg))]
          if frame.any() else []),
        ("Reassigned outliers", _fmt_share(n_reassigned, n_seg)),
        ("Wall time", wall or "not recorded"),
    ]
    if sampled:
        stats.append(("Themes found on a sample",
                      f"{sampled[0].upper()}{sampled[1:]} (scale.fit_sample_above, "
                      "scale.fit_sample_size)"))
    if counts.get("crossanalysis_laid_out_domains"):
        n_dom = int(counts["crossanalysis_laid_out_domains"])
        stats.append(("Categories found on a layout",
                      f"{counted(n_dom, 'large domain')} "
                      f"({int(counts.get('crossanalysis_laid_out_segments', 0)):,} segments) "
                      "clustered on a UMAP layout of the vectors; similarities and "
                      "reassignment use the vectors (crossanalysis.layout_above)"))
    placed = placed_summary(counts)
    if placed:
        stats.append(("Domains by content", placed))
    if counts.get("crossanalysis_fitted_on_sample"):
        stats.append(("Categories found on a sample",
                      f"{counts['crossanalysis_fitted_on_sample']:,} segments, drawn from every "
                      f"case; the other {counts.get('crossanalysis_joined_after_sample', 0):,} "
                      "joined their nearest category (crossanalysis.max_fit_segments)"))
    name = config.get("name")
    return {"name": name or "Unnamed run", "started_at": started or "not recorded",
            "stats": stats}


def _cqr_section(cqr: pd.DataFrame, themes: pd.DataFrame, lookup: _SegmentLookup,
                 manifest: Mapping, n_cases_total: int, config: Mapping) -> dict[str, Any]:
    known = set(int(t) for t in themes["theme_id"])
    by_name = Counter(themes["name"])
    id_by_name = {n: int(t) for t, n in zip(themes["theme_id"], themes["name"])
                  if by_name[n] == 1}
    groups: list[dict[str, Any]] = []
    index: dict[str, dict[str, Any]] = {}
    for r in cqr.to_dict("records"):
        domain = r["domain"] or "(no domain)"
        sid = r["quote_segment_id"]
        tid = lookup.theme_of(sid) if sid else None
        if tid is None or tid not in known:
            tid = id_by_name.get(r["category"])
        if domain not in index:
            index[domain] = {"domain": domain, "rows": []}
            groups.append(index[domain])
        index[domain]["rows"].append({
            "category": shown_category(r), "theme_id": tid if tid in known else None,
            "freq": _freq(r["frequency_label"]),
            "n_cases": str(r["n_cases"]), "cases_total": str(r["cases_total"]),
            "quote": r["quote"], "quote_case": r["quote_case"], "quote_segment_id": sid,
            "quote_segment_ids": [str(i) for i in r.get("quote_segment_ids", [])]
            if isinstance(r.get("quote_segment_ids"), (list, tuple, np.ndarray)) else [],
            "sub": r.get("level") == "subcategory", "flags": _flags_text(r),
        })
    honest = None
    if "level" in cqr.columns:
        cfg_cqr = config.get("cqr") or {}
        honest = ("A case counts toward a label only through segments the clustering placed "
                  "in the category, or outliers reassigned to it with a cosine similarity of "
                  f"at least {cfg_cqr.get('count_reassigned_above', 0.5)} "
                  "(cqr.count_reassigned_above). Flags: single story (one case gives more "
                  "than half the segments), thin (a case counts only through reassigned "
                  "outliers or one short segment), unstable (from consensa stability), "
                  "minimal responses (many segments say nothing beyond assent, fillers and "
                  "hedges, such as \"Yeah, I guess so.\": their sense is in the questions), "
                  "answered no (the answers that open with a negative reply to the "
                  "domain's main question, \"No.\", \"Not at all.\").")
    return {"groups": groups, "frequency_text": _frequency_text(manifest, n_cases_total),
            "honest": honest}


def _flags_text(row: Mapping) -> str:
    """A CQR row's flags, and the label it would have if reassigned outliers counted
    where that differs; "" for a themes run's table."""
    flags = row.get("flags")
    items = [str(f) for f in flags] if isinstance(flags, (list, tuple, np.ndarray)) else \
        [f for f in str(flags or "").split("; ") if f]
    other = row.get("label_if_reassigned_counted") or ""
    if other and other != row.get("frequency_label"):
        items.append(f"{other} if reassigned outliers counted")
    return "; ".join(items)


def _core_ideas_section(core: pd.DataFrame | None, domains: pd.DataFrame,
                        cases: list[str]) -> dict[str, Any] | None:
    """A CQR run's core ideas: per domain, what each case said there, in fewer words."""
    if core is None or not len(core):
        return None
    order = {int(d): i for i, d in enumerate(domains["domain_id"])}
    groups = []
    for _d, rows in sorted(core.groupby("domain_id"), key=lambda kv: order.get(int(kv[0]), 0)):
        by_case = {str(r["case_id"]): r for r in rows.to_dict("records")}
        groups.append({"domain": str(rows["domain"].iloc[0]), "rows": [
            {"case": c, "idea": by_case[c]["core_idea"],
             "segments": ", ".join(by_case[c]["segment_ids"])}
            for c in cases if c in by_case]})
    return {"groups": groups}


def _protocol_given(config: Mapping) -> bool:
    """Whether the run's config gave the protocol (a file or inline areas)."""
    section = config.get("protocol") if isinstance(config, Mapping) else None
    return isinstance(section, Mapping) and bool(section.get("file") or section.get("areas"))


def _protocol_section(protocol: str | None, domains: pd.DataFrame,
                      n_cases_total: int = 0, given: bool = False) -> dict[str, Any] | None:
    """Where a CQR run's domains came from: the protocol's areas, the moves and the
    frame set apart; and a note when the areas recur little across the cases
    (:func:`pipeline.stages.protocol.scattered_protocol`)."""
    from ..stages.protocol import scattered_protocol

    if protocol is None:
        return None
    rows = []
    for r in domains.to_dict("records"):
        rows.append({"name": r["name"], "kind": r.get("kind", ""),
                     "in_cross": bool(r.get("in_cross_analysis", True)),
                     "n_segments": str(r["n_segments"]), "n_cases": str(r["n_cases"]),
                     "moved_in": str(r.get("n_moved_in", 0)), "moved_out": str(r.get("n_moved_out", 0))})
    return {"rows": rows, "yaml": protocol, "note": scattered_protocol(domains, n_cases_total, given)}


def _frequency_text(manifest: Mapping, n_cases_total: int) -> str:
    cut = manifest.get("frequency_cutoffs")
    if not isinstance(cut, Mapping) or not cut:
        return DEFAULT_FREQUENCY_TEXT
    parts = []
    def order(item):
        label, rng = item
        return (-rng[0], label)
    for label, (lo, hi) in sorted(cut.items(), key=order):
        if lo == hi:
            span = counted(lo, "case")
        else:
            span = f"{lo}–{hi} cases"
        parts.append(f"{label} = {span}")
    return (f"With {n_cases_total} cases in this run: " + "; ".join(parts) +
            ". (general = all or all but one case; typical = more than half; variant = at "
            "least 2 cases up to half; rare replaces the lowest variant counts when there are "
            "more than 15 cases; single case is flagged.)")


def _subsample(groups: np.ndarray, cap: int, seed: int = MAP_SEED) -> np.ndarray:
    """Indices of at most ~cap items, stratified by group so small themes stay visible."""
    n = len(groups)
    if n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    order = np.argsort(groups, kind="stable")
    uniq, starts, counts = np.unique(groups[order], return_index=True, return_counts=True)
    floor = np.minimum(counts, 20)
    budget = max(cap - int(floor.sum()), 0)
    extra = counts - floor
    quota = floor + (np.floor(extra * budget / extra.sum()).astype(int) if extra.sum() else 0)
    chosen = []
    for start, count, q in zip(starts, counts, quota):
        members = order[start:start + count]
        chosen.append(members if q >= count else rng.choice(members, size=int(q), replace=False))
    return np.sort(np.concatenate(chosen))


def _map_section(seg: pd.DataFrame, seg_theme: np.ndarray, themes: pd.DataFrame,
                 colours: dict[int, str], frame: np.ndarray | None = None) -> dict[str, Any]:
    """The 2-D map of the segments. ``frame`` marks the interview frame's segments
    (:func:`_frame_segments`): they are drawn and counted apart from the unassigned
    ones, as the header, the run's summary and the manifest count them."""
    n = len(seg)
    frame = np.zeros(n, dtype=bool) if frame is None else frame
    x = seg["map_x"].to_numpy(dtype=float)
    y = seg["map_y"].to_numpy(dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    legend = [{"id": int(t), "name": nm, "colour": colours[int(t)]}
              for t, nm in zip(themes["theme_id"], themes["name"])]
    keys = {"unassigned_colour": UNASSIGNED_COLOUR, "frame_colour": FRAME_COLOUR,
            "has_frame": False}
    if not ok.any():
        return {"svg": None, "caption": "Map coordinates were not recorded for any segment; "
                "no map is drawn." if n else "There are no segments to map.", "legend": legend,
                **keys}
    idx = np.flatnonzero(ok)
    pick = idx[_subsample(np.where(frame, _FRAME_GROUP, seg_theme)[idx], MAX_MAP_POINTS)]
    px, py, pt, pf = x[pick], y[pick], seg_theme[pick], frame[pick]
    grey = (pt < 0) & ~pf
    size = 4 if len(pick) > 5000 else (9 if len(pick) > 500 else 22)
    raster = len(pick) > RASTERIZE_ABOVE
    names = {int(t): nm for t, nm in zip(themes["theme_id"], themes["name"])}
    with_names = len(themes) <= MAP_NAMED_LABELS

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        if grey.any():
            ax.scatter(px[grey], py[grey], s=size, c=UNASSIGNED_COLOUR, linewidths=0,
                       rasterized=raster, label="unassigned")
        if pf.any():
            ax.scatter(px[pf], py[pf], s=size, facecolors="none", edgecolors=FRAME_COLOUR,
                       linewidths=0.7, rasterized=raster, label="interview frame")
        placed = pt >= 0
        if placed.any():
            cols = [colours.get(int(t), "#444444") for t in pt[placed]]
            ax.scatter(px[placed], py[placed], s=size, c=cols, linewidths=0, alpha=0.85,
                       rasterized=raster)
        all_theme = seg_theme[idx]
        for t in themes["theme_id"]:
            members = idx[all_theme == int(t)]
            if not len(members):
                continue
            cx, cy = float(np.median(x[members])), float(np.median(y[members]))
            label = f"{int(t)} {names.get(int(t), '')}" if with_names else str(int(t))
            ax.text(cx, cy, mpl_text(label, 28), fontsize=7 if with_names else 6,
                    ha="center", va="center", color="#1d1d1f",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": colours[int(t)],
                          "lw": 0.8, "alpha": 0.85})
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ("top", "right", "bottom", "left"):
            ax.spines[side].set_color("#d9d9de")

    svg = figure_svg("map", (9.0, 6.4), draw)
    n_drawn, n_ok = len(pick), int(ok.sum())
    n_frame = int(frame[idx].sum())
    n_grey = int(((seg_theme[idx] < 0) & ~frame[idx]).sum())
    frame_text = (f", grey rings = the interview frame, set apart from the cross-analysis on "
                  f"purpose ({_n(n_frame, 'segment')})" if n_frame else "")
    caption = (f"Each dot is a segment, placed by similarity of meaning (the axes have no "
               f"units); colour = theme, light grey = unassigned "
               f"({_n(n_grey, 'segment')}){frame_text}. Labels sit at each "
               f"theme's median position" + (" (theme id and name)." if with_names else
                                             " (theme id only, as there are many themes; "
                                             "names are in the legend below)."))
    if n_drawn < n_ok:
        caption += (f" For speed the map shows a fixed random subsample of {n_drawn:,} of "
                    f"{n_ok:,} segments (every theme keeps at least "
                    f"{min(20, n_ok)} points or all it has); counts elsewhere in this report use "
                    "all segments.")
    else:
        caption += f" All {n_ok:,} segments are drawn."
    if n_ok < n:
        caption += f" {_n(n - n_ok, 'segment')} without map coordinates are not drawn."
    return {"svg": svg, "caption": caption, "legend": legend, **keys,
            "has_frame": bool(n_frame)}


def _heatmap_section(themes: pd.DataFrame, domain_names: dict[int, str], cases: list[str],
                     per_theme_case: dict[int, dict[str, int]]) -> dict[str, Any]:
    if not len(themes) or not cases:
        return {"svg": None, "table": None, "caption": "No themes or no cases: nothing to show."}
    tids = [int(t) for t in themes["theme_id"]]
    dids = [int(d) for d in themes["domain_id"]]
    grid = np.array([[per_theme_case.get(t, {}).get(c, 0) for c in cases] for t in tids], float)
    n_rows, n_cols = grid.shape
    as_table = n_cols <= MAX_CASE_LABELS and n_rows * n_cols <= TABLE_MAX_CELLS
    # domain bands: (first row, last row, name)
    bands: list[tuple[int, int, str]] = []
    for i, d in enumerate(dids):
        if bands and bands[-1][2] == d:
            bands[-1] = (bands[-1][0], i, d)
        else:
            bands.append((i, i, d))
    vmax = max(float(grid.max()), 1.0)
    if as_table:
        return _heatmap_table(grid, vmax, tids, themes["name"].tolist(), bands,
                              domain_names, cases)
    row_labels = [mpl_text(f"{t} {n}", 40) for t, n in zip(tids, themes["name"])]
    font = 8 if n_rows <= 60 else 6
    width = min(max(5.5, 3.6 + 0.32 * n_cols), 22.0)
    # a label per column up to MAX_CASE_LABELS cases; beyond, every step-th case
    # (hundreds of rotated labels cost seconds of layout and cannot be read anyway)
    step = max(1, math.ceil(n_cols / MAX_CASE_LABELS))
    height = min(max(2.4, 1.4 + 0.24 * n_rows), 60.0)

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        mesh = ax.pcolormesh(grid, cmap="Blues", vmin=0, vmax=vmax, edgecolors="white",
                             linewidth=0.5 if n_rows * n_cols <= 2500 else 0,
                             rasterized=n_rows * n_cols > 2500)
        ax.set_xlim(0, n_cols)
        ax.set_ylim(n_rows, 0)
        ax.set_yticks(np.arange(n_rows) + 0.5, labels=row_labels, fontsize=font)
        ax.set_xticks(np.arange(0, n_cols, step) + 0.5,
                      labels=[mpl_text(c, 16) for c in cases[::step]],
                      fontsize=font, rotation=90 if n_cols > 8 else 0)
        ax.xaxis.tick_top()
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        for lo, _hi, _d in bands:
            if lo > 0:
                ax.axhline(lo, color="#1d1d1f", lw=0.8)
        twin = ax.twinx()
        twin.set_ylim(n_rows, 0)
        twin.set_yticks([(lo + hi + 1) / 2 for lo, hi, _ in bands],
                        labels=[mpl_text(domain_names.get(d, f"domain {d}"), 30)
                                for _, _, d in bands],
                        fontsize=font, color="#555555")
        twin.tick_params(length=0)
        for side in twin.spines.values():
            side.set_visible(False)
        fig.colorbar(mesh, ax=[ax, twin], location="bottom", shrink=0.5, aspect=40,
                     pad=0.02, label="segments")

    svg = figure_svg("heatmap", (width, height), draw)
    caption = ("Rows: themes, grouped by domain (domain names on the right); columns: cases; "
               "cell: number of the case's segments in the theme.")
    caption += " The grid is too large to print counts; the theme cards below list them."
    if step > 1:
        caption += f" {n_cols:,} cases: one in every {step} is labelled, in case order."
    return {"svg": svg, "table": None, "caption": caption}


def _heatmap_table(grid: np.ndarray, vmax: float, tids: list[int], names: list[Any],
                   bands: list[tuple[int, int, int]], domain_names: dict[int, str], cases: list[str]) -> dict[str, Any]:
    """The heat map as a table: a row per theme under its domain's heading, a column
    per case, each cell its count on the colour of matplotlib's "Blues" scale (the
    drawn map's), so a small grid reads as the large one looks. The template writes
    every label as text."""
    blues = matplotlib.colormaps["Blues"]
    groups = []
    for lo, hi, d in bands:
        rows = []
        for i in range(lo, hi + 1):
            cells = []
            for v in grid[i].astype(int).tolist():
                cells.append({"n": v, "bg": to_hex(blues(v / vmax)) if v else "",
                              "dark": v > 0.55 * vmax})
            rows.append({"id": tids[i], "name": str(names[i]), "cells": cells})
        groups.append({"name": domain_names.get(d, f"domain {d}"), "rows": rows})
    caption = ("Rows: themes, grouped by domain; columns: cases; cell: number of the case's "
               "segments in the theme, darker for more.")
    return {"svg": None, "table": {"cases": [str(c) for c in cases], "groups": groups},
            "caption": caption}


def _cases_beside_label(n_cases: Any, n_counted: int | None) -> str:
    """The cases a theme's frequency label stands on, as the CQR table gives them.

    In a CQR run the label counts a case only through segments the clustering placed
    in the theme or outliers reassigned to it above cqr.count_reassigned_above, while
    ``n_cases`` counts every case with a segment there: "typical" beside "10 cases"
    of 10 reads as a mistake. So the counted cases come first, and every case only
    where it differs, worded as the CQR table's flag words the other label.
    ``n_counted`` is None in a themes run, where every case counts."""
    if n_counted is None or n_counted == int(n_cases):
        return counted(n_cases, "case")
    return f"{counted(n_counted, 'case')} counted, {n_cases} if reassigned outliers counted"


def _tree_section(linkage: Any, themes: pd.DataFrame, domains: pd.DataFrame,
                  domain_rank: dict[int, tuple], colours: dict[int, str],
                  counted_cases: dict[int, set[str]] | None = None) -> dict[str, Any]:
    """The domains with their themes, each beside its frequency label and the cases
    that label counts (``counted_cases``: :func:`_counted_cases`)."""
    by_domain: dict[int, list[dict[str, Any]]] = {}
    for r in themes.to_dict("records"):
        tid = int(r["theme_id"])
        n_counted = None if counted_cases is None else len(counted_cases.get(tid, ()))
        by_domain.setdefault(int(r["domain_id"]), []).append({
            "id": tid, "name": r["name"], "cases": _cases_beside_label(r["n_cases"], n_counted),
            "n_segments": str(r["n_segments"]), "freq": _freq(r["frequency_label"]),
            "colour": colours[tid]})
    drows = {int(r["domain_id"]): r for r in domains.to_dict("records")}
    # the interview frame has no frequency label on purpose (it is not a finding):
    # "not recorded" beside its cases would read as data gone missing
    set_apart = frame_domain_ids(domains)
    tree = []
    for d in sorted(domain_rank, key=lambda d: domain_rank[d]):
        r = drows.get(d)
        if r is None:
            name = "No domain" if d < 0 else f"Domain {d} (not in the domains table)"
            entry = {"id": d, "name": name, "keywords": [], "misc": False, "n_cases": "—",
                     "n_segments": "—", "freq": _freq(None)}
        else:
            entry = {"id": d, "name": r["name"], "keywords": list(r["keywords"]),
                     "misc": bool(r["is_miscellaneous"]),
                     "n_cases": str(r["n_cases"]), "n_segments": str(r["n_segments"]),
                     "freq": _freq(r["frequency_label"])}
        entry["set_apart"] = d in set_apart
        entry["themes"] = by_domain.get(d, [])
        listed = {t["id"] for t in entry["themes"]}
        entry["unlisted"] = [t for t in r["theme_ids"] if t not in listed] \
            if r is not None else []
        tree.append(entry)

    svg, note = None, None
    if linkage is not None:
        Z = np.asarray(linkage, dtype=float)
        if Z.ndim == 2 and Z.shape[0] >= 1 and Z.shape[1] == 4:
            svg, note = _dendrogram(Z, themes)
        elif Z.size:
            note = f"The theme linkage has an unexpected shape {Z.shape}; no dendrogram drawn."
    return {"domains": tree, "dendrogram": svg, "dendrogram_note": note}


def _dendrogram(Z: np.ndarray, themes: pd.DataFrame) -> tuple[Markup | None, str | None]:
    from scipy.cluster import hierarchy

    if not hierarchy.is_valid_linkage(Z):
        return None, "The theme linkage is not a valid scipy linkage; no dendrogram drawn."
    k = Z.shape[0] + 1
    ordered = themes.sort_values("theme_id", kind="stable")
    note = ("Themes joined lower down have more similar centroids. Leaves are labelled with "
            "theme id and name.")
    if len(ordered) == k:
        labels = [mpl_text(f"{int(t)} {n}", 40) for t, n in zip(ordered["theme_id"], ordered["name"])]
    else:
        labels = [str(i) for i in range(k)]
        note = (f"The linkage has {k} leaves but there are {len(ordered)} themes, so leaves "
                "are labelled by position only.")
    height = min(max(2.0, 0.8 + 0.22 * k), 40.0)

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        hierarchy.dendrogram(Z, labels=labels, orientation="right", ax=ax,
                             leaf_font_size=8 if k <= 60 else 6,
                             above_threshold_color="#888888")
        ax.set_xlabel("merge distance", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)

    return figure_svg("dendrogram", (8.0, height), draw), note


def _concepts_section(concepts: pd.DataFrame | None, theme_names: dict[int, str],
                      lookup: _SegmentLookup) -> list[dict[str, Any]] | None:
    if concepts is None:
        return None
    rows = []
    for r in concepts.to_dict("records"):
        status = r["status"].lower() or "not recorded"
        supporting = [{"id": t, "name": theme_names.get(t, ""), "known": t in theme_names,
                       "raw": str(t)} for t in r["theme_ids"]]
        rows.append({
            "concept": r["concept"], "description": r["description"],
            "status": status, "supported": status == "supported",
            "themes": supporting, "similarity": _fmt_float(r["similarity"], 3),
            "n_segments": str(r["n_segments"]), "n_cases": str(r["n_cases"]),
            "quotes": [lookup.quote(q) for q in r["quote_ids"]],
        })
    return rows


def _text_or_empty(value: Any) -> str:
    """A table cell as text: "" for a missing column's None or a CSV's NaN."""
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def _counted_cases(seg: pd.DataFrame, seg_theme: np.ndarray) -> dict[int, set[str]] | None:
    """{theme: the cases its CQR label counts} (segments.counted), None in a themes run,
    where every case with a segment counts."""
    if "counted" not in seg.columns:
        return None
    out: dict[int, set[str]] = {}
    for t, c, k in zip(seg_theme, seg["case_id"].astype(str), seg["counted"].astype(bool)):
        if t >= 0 and k:
            out.setdefault(int(t), set()).add(c)
    return out


def _theme_cards(themes: pd.DataFrame, domain_names: dict[int, str], colours: dict[int, str],
                 per_theme_case: dict[int, dict[str, int]], lookup: _SegmentLookup,
                 counted: dict[int, set[str]] | None = None) -> list[dict[str, Any]]:
    cards = []
    for r in themes.to_dict("records"):
        tid = int(r["theme_id"])
        counts = per_theme_case.get(tid, {})
        listed = list(r["cases"])
        shown = set(listed)
        # a CQR label counts some cases only: each case says whether it is one of them
        mine = None if counted is None else counted.get(tid, set())
        case_list = [{"case": c, "n": counts.get(c), "counted": None if mine is None else c in mine}
                     for c in listed]
        case_list += [{"case": c, "n": n, "counted": None if mine is None else c in mine}
                      for c, n in sorted(counts.items(), key=lambda kv: _natural_key(kv[0]))
                      if c not in shown]
        cards.append({
            "id": tid, "name": r["name"], "colour": colours[tid],
            "domain_id": int(r["domain_id"]),
            "domain": domain_names.get(int(r["domain_id"]), ""),
            "freq": _freq(r["frequency_label"]),
            "n_segments": str(r["n_segments"]), "n_cases": str(r["n_cases"]),
            "n_counted": None if mine is None or len(mine) == len(case_list) else str(len(mine)),
            "cases": case_list, "mean_strength": _fmt_float(r["mean_strength"]),
            "n_reassigned": str(r["n_reassigned"]),
            "keywords": list(r["keywords"]), "key_phrases": list(r["key_phrases"]),
            "core_idea": r["core_idea"],
            # a CQR run with a language model: its definition, and Consensa's own name
            # beside the model's (the judges choose; neither replaces the other)
            "definition": _text_or_empty(r.get("definition")),
            "extractive_name": "" if _text_or_empty(r.get("extractive_name")) == r["name"]
            else _text_or_empty(r.get("extractive_name")),
            "quotes": [lookup.quote(q) for q in r["quote_ids"]],
            # set by `consensa stability` (a "stability" column in themes.csv), else None
            "stability": _stability_of(r),
        })
    return cards


# --- Stability (added by `consensa stability`; see pipeline/stability.py) ------------

def _stability_of(row: Mapping) -> dict[str, str] | None:
    """A theme's stability badge, when themes carry a "stability" column."""
    if "stability" not in row:
        return None
    text = row["stability"].strip().lower() or "not assessed"
    return {"text": text, "cls": _slug(text), "unstable": text == "unstable",
            "reappearance": _fmt_pct(row.get("reappearance"))}


def _fmt_pct(x: float | None) -> str:
    return f"{100.0 * x:.0f} %" if _computed(x) else "—"


def _stability_section(themes: pd.DataFrame, manifest: Mapping) -> dict[str, Any] | None:
    """The stability table; None (no section) unless themes have a "stability" column."""
    if "stability" not in themes.columns:
        return None
    rows = []
    for r in themes.sort_values("theme_id", kind="stable").to_dict("records"):
        badge = _stability_of(r)
        resamples = r.get("stability_resamples")
        rows.append({"id": int(r["theme_id"]), "name": r["name"], "badge": badge,
                     "reappearance": badge["reappearance"],
                     "mean_jaccard": _fmt_float(r.get("mean_jaccard")),
                     "label_change": _fmt_pct(r.get("label_change_rate")),
                     "by_kind": f"{_fmt_pct(r.get('reappearance_leave_out'))} · "
                                f"{_fmt_pct(r.get('reappearance_bootstrap'))}",
                     # a float column where a theme has no stability row (NaN)
                     "resamples": f"{resamples:.0f}" if _computed(resamples) else "—"})
    info = manifest.get("stability")
    info = info if isinstance(info, Mapping) else {}
    threshold, cut = info.get("threshold"), info.get("unstable_below")
    facts = []
    if info.get("resamples") is not None:
        facts.append(("Resamples", f"{info.get('leave_out_resamples', 0)} leaving "
                      f"{info.get('leave_out', 0)} case(s) out, "
                      f"{info.get('bootstrap_resamples', 0)} bootstrap"))
    if _computed(info.get("overall")):
        facts.append(("Overall stability", _fmt_float(info.get("overall"))))
    facts.append(("Unstable themes", f"{sum(r['badge']['unstable'] for r in rows)} of {len(rows)}"))
    if _computed(info.get("reproduced")):
        facts.append(("Re-run with the run's seed (mean Jaccard)", _fmt_float(info.get("reproduced"), 3)))
    return {"rows": rows, "facts": facts,
            "threshold": "—" if threshold is None else f"{threshold:g}",
            "cut": "—" if cut is None else f"{100.0 * cut:.0f} %"}


def _unassigned_section(seg: pd.DataFrame, seg_theme: np.ndarray,
                        frame: np.ndarray) -> dict[str, Any]:
    idx = np.flatnonzero((seg_theme < 0) & ~frame)
    total = len(idx)
    rows: list[dict[str, str]] = []
    if total:
        sub = seg.iloc[idx]
        case_rank = {c: i for i, c in enumerate(_natural_sorted(set(sub["case_id"])))}
        keys = pd.DataFrame({
            "case": sub["case_id"].map(case_rank).to_numpy(),
            "turn": sub["turn_index"].to_numpy(), "start": sub["start_char"].to_numpy(),
            "pos": idx})
        keys = keys.sort_values(["case", "turn", "start", "pos"], kind="stable")
        for i in keys["pos"].to_numpy()[:MAX_UNASSIGNED_LISTED]:
            r = seg.iloc[int(i)]
            rows.append({"segment_id": r["segment_id"], "case_id": r["case_id"],
                         "turn": str(r["turn_index"]), "speaker": r["speaker"],
                         "start": str(r["start_char"]), "end": str(r["end_char"]),
                         "text": r["text"]})
    share = f"{100.0 * total / len(seg):.1f} %" if len(seg) else "—"
    analysed = len(seg) - int(frame.sum())
    return {"total": total, "n_segments": len(seg), "rows": rows,
            "truncated": total > len(rows), "share": share, "n_frame": int(frame.sum()),
            "share_analysed": f"{100.0 * total / analysed:.1f} %" if analysed else "—"}


def _skipped_section(manifest: Mapping, left_out: pd.DataFrame | None = None) -> dict[str, Any]:
    """The notes of what was skipped, counted by the items each stands for;
    ``left_out`` (the segmenter's rows, written to skipped.csv) only says whether the
    folder has that file."""
    raw = manifest.get("skipped")
    items = []
    for it in raw or []:
        if hasattr(it, "as_dict"):
            it = it.as_dict()
        if isinstance(it, Mapping):
            items.append({"what": it.get("what", ""), "reason": it.get("reason", ""),
                          "stage": it.get("stage", ""), "kept": it.get("kept") is True,
                          "count": note_count(dict(it))})
        else:
            items.append({"what": str(it), "reason": "", "stage": "", "kept": False,
                          "count": 1})
    by_reason: Counter[str] = Counter()
    for it in items:
        # a note of 341 turns counts 341 (errors.Skipped.count), not 1
        by_reason[it["reason"] or "(no reason given)"] += 1 if it["kept"] else it["count"]
    counts_raw = manifest.get("counts")
    # the counts in words, grouped by what they are about (in the order the run wrote
    # them); every one of the manifest's counts has its row
    cqr = manifest.get("analysis") == CQR_ANALYSIS
    groups: dict[str, list[dict[str, str]]] = {}
    for k, v in (counts_raw.items() if isinstance(counts_raw, Mapping) else ()):
        group, words = count_words(str(k), cqr)
        value = f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
        groups.setdefault(group, []).append({"key": str(k), "words": words, "value": value})
    counts = list(groups.items())
    return {
        "recorded": raw is not None, "total": len(items),
        "csv": SKIPPED_CSV if left_out is not None and len(left_out) else "",
        **dict(zip(("left_out", "kept"), left_out_and_kept(items), strict=True)),
        "by_reason": sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])),
        "entries": items[:MAX_SKIPPED_LISTED], "truncated": len(items) > MAX_SKIPPED_LISTED,
        "counts": counts, "counts_recorded": isinstance(counts_raw, Mapping),
        # how the language model did, in words: a raw "llm_fallbacks 120" among the
        # counts hides a model that never answered
        "llm": stats_summary(manifest["llm"]) if isinstance(manifest.get("llm"), Mapping) else None,
    }


def _provenance_section(manifest: Mapping, config: Mapping) -> dict[str, Any]:
    versions = manifest.get("versions")
    versions = sorted((str(k), str(v)) for k, v in versions.items()) \
        if isinstance(versions, Mapping) else []
    seed = manifest.get("seed")
    inputs_raw = manifest.get("inputs")
    inputs = []
    if isinstance(inputs_raw, Mapping):
        inputs = [{"path": str(k), "sha256": str(v)} for k, v in inputs_raw.items()]
    elif inputs_raw:
        for it in inputs_raw:
            if isinstance(it, Mapping):
                inputs.append({"path": it.get("path", ""), "sha256": it.get("sha256", "")})
            else:
                inputs.append({"path": str(it), "sha256": ""})
    timings = manifest.get("timings")
    timing_rows = []
    if isinstance(timings, Mapping):
        timing_rows = [(str(k), _fmt_seconds(v)) for k, v in timings.items()]
    ctx = config.get("context") if isinstance(config, Mapping) else None
    if manifest.get("analysis") == CQR_ANALYSIS:
        # the CQR analysis clusters each domain's segments on their own vectors; the
        # config's context section (its defaults) told of a blend it never made
        context = "not used: each domain's segments are grouped by their own words"
    elif isinstance(ctx, Mapping) and ctx.get("weight", 0) > 0 and ctx.get("window", 0) > 0:
        context = (f"each segment with the {ctx['window']} segments before and after it "
                   f"in its interview, at weight {ctx['weight']:g}")
    elif isinstance(ctx, Mapping):
        context = "off: each segment grouped by its own words only"
    else:
        context = "not recorded"
    deid = manifest.get("deidentify")
    if isinstance(deid, Mapping):
        reps = deid.get("replacements")
        n = sum(reps.values()) \
            if isinstance(reps, Mapping) else None
        deidentified = "no" if not deid.get("enabled") else (
            "yes: identifiers replaced with placeholders before analysis"
            + (f" ({n:,} replacements)" if n is not None else ""))
    else:
        deidentified = "not recorded"
    return {
        "versions": versions, "seed": str(seed) if seed is not None else "not recorded",
        "context": context, "deidentified": deidentified,
        "config_yaml": _dump_config(config) if config else "",
        "inputs": inputs, "timings": timing_rows,
    }


def _dump_config(config: Mapping) -> str:
    data = _plain(config)
    try:
        from .. import safeyaml
        return safeyaml.dump(data, default_flow_style=False, width=100)
    except ImportError:  # pragma: no cover - PyYAML is a dependency of the CLI
        import json
        return json.dumps(data, indent=2, ensure_ascii=False, default=str)
