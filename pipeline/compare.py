"""``consensa compare RUN CODES``: how a run's themes agree with human codes.

The human codes (a table or a REFI-QDA project, see :mod:`pipeline.exchange.codes`) are
placed in the run's source texts and laid over its segments: a segment *carries*
a code covering at least ``min_coverage`` of its characters, and its *primary*
code is the one covering most. Then, at the level of categories (themes vs. full
code paths, or paths cut to ``depth`` levels) and, when the codes are
hierarchical (``Parent > Child``), at the level of domains (Consensa's domains vs.
the codes' top level):

* **Overall agreement**, on the segments that are both in a theme and coded
  (primary code vs. theme): adjusted Rand index, normalised and adjusted mutual
  information, homogeneity (each theme holds one code), completeness (each code
  lies in one theme), V-measure (sklearn.metrics); and Cohen's kappa after the
  best one-to-one matching of themes to codes (Hungarian algorithm on the
  contingency table, scipy's ``linear_sum_assignment``; a theme matched to no
  code, or only to a code it shares no segment with, never agrees).
* **Per code**: the themes that hold its segments (a code *split* across themes),
  its best theme (F1 = 2|both| / (|code| + |theme|), on segments carrying it);
  status *found* (F1 >= 0.5), *partly found* (>= 0.25), *split* (no theme holds
  half of it, and two or more are needed to hold 80%), *not found*, *coded
  passages shorter than half a segment (n codings)* (its codings lie in analysed
  segments, but none covers half of one, so no segment carries it: sentence-level
  coding; a lower ``min_coverage`` counts them, and a note says so), *not in the
  analysed segments* (none of its codings touches an analysed segment, e.g. it was
  applied to interviewer talk only), or *not placed (n codings)* (none of its
  codings was found in the run's texts: a quote that is not there, a case the run
  does not have). Every code has a row, so a code that
  could not be placed is seen where the codes are, not only in ``coding_spans.csv``;
  the note on the codings not placed is the first of the notes, in full.
* **Per theme**: the codes it mixes (it *mixes* codes when two or more primary
  codes are needed to hold 80% of its coded segments), its purity (share of its
  most frequent primary code), its uncoded share; a theme whose segments are
  mostly uncoded (>= 50%) is a *candidate new code*.

  Both count only the segments of the *coded cases*, those with at least one placed
  coding (as the between-coder figures do): coders often code a subset of the
  transcripts, and a case nobody opened says nothing about whether a theme would
  have been coded. Counting such cases made codes look not found and themes mostly
  uncoded at perfect agreement. The summary says "over the 2 coded cases of 10"
  whenever cases were left out; ``by_theme.csv`` keeps each theme's size over all
  cases beside it (``n_segments_all_cases``), and a theme with no segment in the
  coded cases is *outside the coded cases*.
* **Disagreement queue**: coded segments in a theme other than their code's
  matched theme (unless they also carry the code matched to their theme), with
  quotes: first the *conflicts* (the code is matched to another theme), then the
  segments whose code is matched to no theme; each most confident first (theme
  membership strength x the code's coverage of the segment). As
  ``disagreements.xlsx`` for review, and a section of ``compare.html``.
* **Between coders** (when the codes name two or more): the segments are the
  units; a coder rates the segments of the cases they coded anything in, with
  their primary code, or "(no code)". The headline figures count only the
  segments **at least one coder coded** (:func:`coded_units`): a segment both left
  uncoded is no agreement about a code, and counting it inflates kappa. Cohen's
  kappa per pair, Fleiss' kappa (units rated by all, statsmodels), Krippendorff's
  alpha (nominal, missing ratings allowed, ``krippendorff``), and percent
  agreement (mean over pairs); overall, and per code (the code present or absent,
  on the same units). The same figures over all segments are shown beside them,
  named as such (``all segments`` in ``coders.csv``).

Everything is written to ``RUN/compare/`` (or ``--out``): CSV tables, the review
workbook, ``compare.html`` (self-contained: inline CSS and SVG, no script, escaped)
and ``summary.txt``, the summary the terminal shows.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .errors import InputError
from .exchange.codes import (
    MIN_COVERAGE,
    MIN_MATCH,
    HumanCodes,
    RunData,
    level_of,
    load_run,
    not_placed_note,
    place_codes,
    primary_codes,
    segment_coverage,
)
from .exchange.read import read_codes
from .exchange.refi import CONSENSA_USER, CONSENSUS_USER
from .fsutil import atomic_write_bytes, atomic_write_text, file_sha256
from .sheets import append_row, to_csv

log = logging.getLogger("consensa.compare")

NO_CODE = "(no code)"
LEVELS = ("category", "domain")
MAX_HEATMAP = 40
MAX_HTML_QUEUE = 60
VERDICTS = ("theme fits", "code fits", "both fit", "neither fits", "unsure")
FOUND_F1 = 0.5
#: the status of a code whose codings are all too short to carry a segment
SHORT_PASSAGES = "coded passages shorter than"
PARTLY_F1 = 0.25
NEW_CODE_SHARE = 0.5


# --- Metrics ------------------------------------------------------------------------

def best_matching(table: pd.DataFrame) -> dict[Any, Any]:
    """column -> row of the best one-to-one matching of a contingency table (Hungarian).

    Rows are codes, columns themes; pairs that share no item are not matches.
    """
    from scipy.optimize import linear_sum_assignment

    if table.empty:
        return {}
    values = table.to_numpy(dtype=float)
    rows, cols = linear_sum_assignment(-values)
    return {table.columns[c]: table.index[r] for r, c in zip(rows, cols, strict=True)
            if values[r, c] > 0}


def agreement_metrics(codes: Sequence, themes: Sequence) -> dict[str, float]:
    """Agreement of two labellings of the same items (codes = reference, themes = found)."""
    from sklearn import metrics as skm

    codes = [str(c) for c in codes]
    themes = [str(t) for t in themes]
    n = len(codes)
    out: dict[str, float] = {"n": n}
    if n == 0:
        return {**out, **{k: math.nan for k in (
            "ari", "nmi", "ami", "homogeneity", "completeness", "v_measure", "kappa",
            "matched_agreement")}}
    h, c, v = skm.homogeneity_completeness_v_measure(codes, themes)
    table = pd.crosstab(pd.Series(codes, name="code"), pd.Series(themes, name="theme"))
    match = best_matching(table)
    mapped = [match.get(t, f"\x00unmatched {t}") for t in themes]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kappa = skm.cohen_kappa_score(codes, mapped)
        ami = skm.adjusted_mutual_info_score(codes, themes)
    out.update(ari=float(skm.adjusted_rand_score(codes, themes)),
               nmi=float(skm.normalized_mutual_info_score(codes, themes)),
               ami=float(ami), homogeneity=float(h), completeness=float(c),
               v_measure=float(v), kappa=float(kappa),
               matched_agreement=float(np.mean([a == b for a, b in zip(codes, mapped)])))
    return out


METRIC_NAMES = {
    "ari": "adjusted Rand index",
    "nmi": "normalised mutual information",
    "ami": "adjusted mutual information",
    "homogeneity": "homogeneity (each theme one code)",
    "completeness": "completeness (each code one theme)",
    "v_measure": "V-measure",
    "kappa": "Cohen's kappa after matching",
    "matched_agreement": "agreement after matching",
}


def nominal_agreement(ratings: pd.DataFrame) -> dict[str, Any]:
    """Agreement between raters: ``ratings`` is units x raters, NaN/None = not rated.

    Returns cohen (mean over pairs), pairs {(a, b): (kappa, percent, n)}, fleiss (on
    units rated by every rater), krippendorff (nominal alpha), percent (mean pairwise
    share of units with the same label), and the units counted.
    """
    from sklearn.metrics import cohen_kappa_score

    raters = list(ratings.columns)
    pairs: dict[tuple[str, str], tuple[float, float, int]] = {}
    for a, b in combinations(raters, 2):
        both = ratings[[a, b]].dropna()
        if both.empty:
            continue
        x = both[a].astype(str).tolist()
        y = both[b].astype(str).tolist()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            k = float(cohen_kappa_score(x, y)) if len(set(x) | set(y)) > 1 else math.nan
        pairs[(a, b)] = (k, float(np.mean([p == q for p, q in zip(x, y)])), len(x))
    complete = ratings.dropna()
    fleiss = math.nan
    if len(complete) and len(raters) >= 2:
        from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

        cats = sorted({str(v) for v in complete.to_numpy().ravel()})
        if len(cats) > 1:
            idx = {c: i for i, c in enumerate(cats)}
            data = np.vectorize(lambda v: idx[str(v)])(complete.to_numpy())
            table, _ = aggregate_raters(data, n_cat=len(cats))
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fleiss = float(fleiss_kappa(table, method="fleiss"))
    alpha = krippendorff_alpha(ratings)
    kappas = [v[0] for v in pairs.values() if not math.isnan(v[0])]
    percents = [v[1] for v in pairs.values()]
    rated = ratings.notna().sum(axis=1)
    return {"cohen": float(np.mean(kappas)) if kappas else math.nan, "pairs": pairs,
            "fleiss": fleiss, "krippendorff": alpha,
            "percent": float(np.mean(percents)) if percents else math.nan,
            "n_units": int((rated >= 2).sum()), "n_complete": len(complete)}


def krippendorff_alpha(ratings: pd.DataFrame) -> float:
    """Krippendorff's alpha, nominal, for units x raters (NaN = missing)."""
    import krippendorff

    values = sorted({str(v) for v in ratings.to_numpy().ravel() if _rated(v)})
    if len(values) < 2:
        return math.nan
    idx = {v: float(i) for i, v in enumerate(values)}
    data = np.array([[idx[str(v)] if _rated(v) else np.nan for v in ratings[r]]
                     for r in ratings.columns], dtype=float)
    if (np.sum(~np.isnan(data), axis=0) >= 2).sum() == 0:
        return math.nan
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(krippendorff.alpha(reliability_data=data,
                                            level_of_measurement="nominal"))
    except (ValueError, ZeroDivisionError):
        return math.nan


def _rated(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


# --- The comparison ------------------------------------------------------------------

@dataclass
class LevelResult:
    level: str
    metrics: dict[str, float]
    contingency: pd.DataFrame            # primary code x theme id (comparable segments)
    match: dict[int, str]                # theme id -> matched code
    by_code: pd.DataFrame
    by_theme: pd.DataFrame
    theme_names: dict[int, str]
    counts: dict[str, int]


@dataclass
class CoderResult:
    """Agreement between coders. ``overall`` (the headline) and ``per_code`` count the
    units at least one coder coded; ``all_units`` counts every unit of the cases each
    coder coded, uncoded ones included, and is shown beside it, named as such."""

    level: str
    coders: list[str]
    overall: dict[str, Any]
    per_code: pd.DataFrame               # code, n_units, n_with_code, cohen, fleiss, krippendorff, percent
    all_units: dict[str, Any] = field(default_factory=dict)


def coded_units(nominal: pd.DataFrame) -> list:
    """The units at least one coder gave a code (not "(no code)", not unrated).

    Two coders who both leave a segment uncoded have not agreed on anything about it:
    counting such segments as agreement inflates kappa, the more so the more of a
    transcript goes uncoded."""
    given = nominal.apply(lambda col: col.map(lambda v: _rated(v) and v != NO_CODE))
    return list(nominal.index[given.any(axis=1)])


@dataclass
class CompareResult:
    run: RunData
    codes: HumanCodes
    placed: pd.DataFrame
    segments: pd.DataFrame
    levels: dict[str, LevelResult]
    queue: pd.DataFrame
    coders: dict[str, CoderResult]
    level: str
    params: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    #: the note on codings that could not be placed (also first in ``notes``), "" if none
    unplaced_note: str = ""
    #: the note on codes coded only in passages too short to carry a segment (also in
    #: ``notes``; the summary lists those codes on a line of their own), "" if none
    short_note: str = ""
    #: why coders were left out of the agreement between coders, or why none was computed
    #: (also in ``notes``; the summary prints them where the agreement would be)
    coder_notes: list[str] = field(default_factory=list)


#: The users Consensa codes as in the projects it writes: its proposal (``Consensa``)
#: and the judges' agreed result (``Consensus``). Their codings are the run's themes, not
#: a human coder's, so they are compared with the run but never counted as a coder.
CONSENSA_CODERS = (CONSENSA_USER, CONSENSUS_USER)


def agreeing_coders(placed: pd.DataFrame, coders: Sequence[str], level: str,
                    depth: int | None) -> tuple[list[str], list[str]]:
    """The coders whose agreement is computed at ``level`` (none when fewer than two
    remain), and why the others are not.

    Consensa's own users are left out (:data:`CONSENSA_CODERS`; the note on them is
    :func:`consensa_coders_note`'s). So is a coder who shares no code with any other:
    coders of two code systems (the team's codes and a codebook made elsewhere) never
    give the same label, and a kappa of 0 or an alpha below 0 would read as disagreement
    about passages they never coded alike."""
    notes = []
    humans = [c for c in coders if c not in CONSENSA_CODERS]
    ok = placed[(placed["status"] == "placed") & placed["coder"].isin(humans)]
    used = {c: {level_of(x, level, depth) for x in ok.loc[ok["coder"] == c, "code"]}
            for c in humans}
    alone = [c for c in humans if not any(used[c] & used[o] for o in humans if o != c)]
    kind = "code" if level == "category" else "top-level code"
    if len(humans) >= 2 and alone:
        notes.append(f"{_names(alone)} share{'s' if len(alone) == 1 else ''} no {kind} "
                     "with the other coder(s): codes of another code system, so agreement "
                     "with them would say nothing and is not computed")
    kept = [c for c in humans if c not in alone]
    if len(kept) < 2 and len(coders) >= 2:
        notes.append("not computed: " + (
            f"no two of the coders share a {kind}" if len(humans) >= 2 else
            f"one human coder ({_names(humans)})" if humans else "no human coder"))
    return (kept if len(kept) >= 2 else []), notes


def consensa_coders_note(coders: Sequence[str]) -> str:
    """The note that Consensa's own users are not counted as coders ("" if none is)."""
    machine = [c for c in coders if c in CONSENSA_CODERS]
    if not machine:
        return ""
    one = len(machine) == 1
    return (f"{_names(machine)} {'is Consensa' if one else 'are Consensa'}'s own "
            f"user{'' if one else 's'} (the run's themes, as coded in a project Consensa "
            "wrote), not a human coder: compared with the run, but left out of the "
            "agreement between coders")


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def compare(run_folder: str | Path, codes_path: str | Path, *, level: str = "category",
            min_coverage: float = MIN_COVERAGE, min_match: float = MIN_MATCH,
            depth: int | None = None, separator: str = ">",
            columns: Mapping[str, str] | None = None) -> CompareResult:
    """Compare a run's themes with human codes (see the module docstring)."""
    if level not in LEVELS:
        raise InputError(f"unknown level '{level}'", field="--level",
                         hint="use --level category or --level domain")
    if depth is not None and depth < 1:
        # a negative cut dropped the last levels and 0 cut nothing, both without a word
        raise InputError(f"--depth must be 1 or more; got {depth}", field="--depth",
                         hint="--depth 1 keeps the top level of 'Parent > Child', 2 two levels")
    if not 0 < min_coverage <= 1:
        raise InputError("min_coverage must be in (0, 1]", field="--min-coverage",
                         hint="e.g. 0.5: a code must cover half a segment's characters")
    log.info("reading the run ...")
    run = load_run(run_folder)
    log.info("reading the codes ...")
    codes = read_codes(codes_path, separator=separator, columns=columns)
    log.info("placing %d codings in the run's texts ...", len(codes.codings))
    placed, place_notes = place_codes(codes, run, min_match=min_match)
    unplaced_note = not_placed_note(placed)
    notes = ([unplaced_note] if unplaced_note else []) + list(run.notes) + list(codes.notes) \
        + [n for n in place_notes if n != unplaced_note]
    if not (placed["status"] == "placed").any():
        # why, counted: a case name that is not the run's is one reason among several
        cases = sorted(run.sources)
        listed = ", ".join(cases[:10]) + (f" ... ({len(cases)} cases)" if len(cases) > 10 else "")
        names_only = set(placed["status"]) == {"case not in the run"}
        # nothing is written, so the codings are named here, not in a coding_spans.csv
        shown = [f"{r.case} '{r.code}'"
                 + (f" {int(r.start)}-{int(r.end)}" if r.start >= 0 and r.end >= 0 else "")
                 + f": {r.status}" for r in placed.head(5).itertuples()]
        said = unplaced_note.replace(" (listed in coding_spans.csv)", "")
        raise InputError(
            f"none of the codes could be placed in the run's texts: {said}; "
            + "; ".join(shown) + (f"; and {len(placed) - 5} more" if len(placed) > 5 else ""),
            path=codes.path,
            hint=(f"name the cases as the run's case ids ({listed})" if names_only else
                  "check that the codes code these transcripts (the texts, or their offsets, "
                  f"as the run read them); the run's cases are {listed}"))
    if level == "domain" and not codes.hierarchical:
        raise InputError("--level domain needs hierarchical codes ('Parent > Child'); these "
                         "codes have one level", path=codes.path, field="--level",
                         hint="use --level category")
    seg = run.segments.reset_index(drop=True).copy()
    # the cases the coders opened: a case without a placed coding was not coded, and its
    # segments are not evidence that a theme is uncoded (see _level)
    coded_cases = set(placed.loc[placed["status"] == "placed", "case_id"])
    levels = ["category"] + (["domain"] if codes.hierarchical else [])
    log.info("laying the codes over the segments ...")
    table = seg[["segment_id", "case_id", "turn_index", "speaker", "text", "start_char",
                 "end_char", "theme", "theme_name", "domain_id", "domain_name",
                 "strength"]].copy()
    results: dict[str, LevelResult] = {}
    coder_results: dict[str, CoderResult] = {}
    machine = consensa_coders_note(codes.coders)
    coder_notes: list[str] = [f"between coders: {machine}"] if machine else []
    for lv in levels:
        pooled = segment_coverage(seg, placed, level=lv, depth=depth, by_coder=False)
        per = segment_coverage(seg, placed, level=lv, depth=depth, by_coder=True)
        votes = per[per["coverage"] >= min_coverage - 1e-12].groupby(
            ["segment_id", "code"]).size().to_dict()
        primary = primary_codes(pooled, min_coverage, votes)
        got = pooled[pooled["coverage"] >= min_coverage - 1e-12]
        partial = pooled[pooled["coverage"] < min_coverage - 1e-12]
        carried = got.groupby("segment_id")["code"].apply(lambda s: sorted(set(s))).to_dict()
        part = partial.groupby("segment_id")["code"].apply(lambda s: sorted(set(s))).to_dict()
        cov = {(a, b): c for a, b, c in zip(pooled["segment_id"], pooled["code"],
                                             pooled["coverage"], strict=True)}
        prefix = "" if lv == "category" else "domain_"
        table[f"{prefix}code"] = [primary.get(s, "") for s in seg["segment_id"]]
        table[f"{prefix}coverage"] = [round(cov.get((s, primary[s]), 0.0), 4) if s in primary
                                      else 0.0 for s in seg["segment_id"]]
        # lists stay lists: a CSV or workbook cell joins them (pipeline/sheets.py)
        table[f"{prefix}codes"] = [carried.get(s, []) for s in seg["segment_id"]]
        table[f"{prefix}partial_codes"] = [part.get(s, []) for s in seg["segment_id"]]
        if lv == "category":
            who = per[per["coverage"] >= min_coverage - 1e-12].groupby("segment_id")[
                "coder"].apply(lambda s: sorted({c for c in s if c})).to_dict()
            table["coders"] = [who.get(s, []) for s in seg["segment_id"]]
        theme_col = "theme" if lv == "category" else "domain_id"
        names = _theme_names(run, lv)
        used = {level_of(c, lv, depth) for c in placed.loc[placed["status"] == "placed", "code"]}
        unplaced = placed.loc[placed["status"] != "placed", "code"].map(
            lambda c, lv=lv: level_of(c, lv, depth)).value_counts().to_dict()
        results[lv] = _level(lv, table, theme_col, prefix, names, carried, part, used,
                             coded_cases, unplaced, _codebook_codes(codes.codebook, lv, depth),
                             in_segments=_codings_in_segments(seg, placed, lv, depth),
                             short=_shorter_than(min_coverage))
        if len(codes.coders) >= 2:
            kept, said = agreeing_coders(placed, codes.coders, lv, depth)
            coder_notes += [f"between coders ({lv} level): {n}" for n in said]
            if kept:
                coder_results[lv] = _coders(seg, placed, per, kept, min_coverage, votes)
    queue = _queue(table, results[level], level)
    params = {"level": level, "min_coverage": min_coverage, "min_match": min_match,
              "depth": depth, "separator": separator}
    short_note = _short_passages_note(results[level].by_code, min_coverage)
    return CompareResult(run=run, codes=codes, placed=placed, segments=table, levels=results,
                         queue=queue, coders=coder_results, level=level, params=params,
                         notes=notes + ([short_note] if short_note else []) + coder_notes,
                         unplaced_note=unplaced_note, short_note=short_note,
                         coder_notes=coder_notes)


def _shorter_than(min_coverage: float) -> str:
    """The placing rule as a status says it: "half a segment" at the default 0.5."""
    return "half a segment" if abs(min_coverage - 0.5) < 1e-9 else \
        f"{min_coverage:.0%} of a segment"


def _codings_in_segments(seg: pd.DataFrame, placed: pd.DataFrame, level: str,
                         depth: int | None) -> dict[str, int]:
    """code (at ``level``) -> how many of its placed codings overlap an analysed
    segment at all, however little: a code none of whose segments it carries is coded
    in passages too short to carry one when this is not 0, and outside the analysed
    segments (interviewer talk, say) when it is."""
    ok = placed[placed["status"] == "placed"]
    out: dict[str, int] = {}
    for case_id, spans in ok.groupby("case_id"):
        mine = seg[seg["case_id"] == case_id]
        if mine.empty:
            continue
        st = mine["start_char"].to_numpy(dtype=np.int64)
        en = mine["end_char"].to_numpy(dtype=np.int64)
        for code, a, b in zip(spans["code"], spans["start_char"], spans["end_char"],
                              strict=True):
            if ((np.minimum(en, int(b)) - np.maximum(st, int(a))) > 0).any():
                label = level_of(code, level, depth)
                out[label] = out.get(label, 0) + 1
    return out


def _short_passages_note(by_code: pd.DataFrame, min_coverage: float) -> str:
    """The note naming the codes coded only in passages too short to carry a segment,
    and what to do about it; "" when there are none."""
    from .report.templating import counted

    short = by_code[by_code["status"].str.startswith(SHORT_PASSAGES)] if len(by_code) \
        else by_code
    if not len(short):
        return ""
    lower = max(round(min_coverage / 2, 2), 0.05)
    return (f"{counted(len(short), 'code')} coded only in passages shorter than "
            f"{_shorter_than(min_coverage)} (sentence-level coding): "
            + _listing(list(short["code"]), 200)
            + f". A segment carries a code that covers at least {min_coverage:.0%} of it, so "
            "these codes are in no segment and are not compared; to count shorter passages, "
            f"compare again with a lower minimum coverage (--min-coverage {lower:g}, say), which "
            "applies to every code")


def _theme_names(run: RunData, level: str) -> dict[int, str]:
    if level == "category":
        return {int(t): str(n) for t, n in zip(run.themes["theme_id"], run.themes["name"],
                                              strict=True)}
    if len(run.domains):
        return {int(d): str(n) for d, n in zip(run.domains["domain_id"], run.domains["name"],
                                              strict=True)}
    return {}


def _codebook_codes(codebook: pd.DataFrame, level: str, depth: int | None) -> set[str]:
    """The codes of the codes' codebook at ``level``: every code with no child (a
    category), or every code's top level (a domain). A code never applied has a row in
    the per-code table too, "not used": the team sees that no passage carries it."""
    if codebook is None or codebook.empty:
        return set()
    codes = [str(c) for c in codebook["code"]]
    if level == "category":
        parents = {str(p) for p in codebook["parent"] if str(p)}
        codes = [c for c in codes if c not in parents]
    return {level_of(c, level, depth) for c in codes}


def _level(level: str, table: pd.DataFrame, theme_col: str, prefix: str,
           names: dict[int, str], carried: dict[str, list[str]],
           partial: dict[str, list[str]], used: set[str],
           coded_cases: set[str], unplaced: Mapping[str, int] | None = None,
           listed: set[str] = frozenset(), *, in_segments: Mapping[str, int] | None = None,
           short: str = "half a segment") -> LevelResult:
    """Agreement, per code and per theme at one level.

    The per-code F1 and the per-theme shares count only the segments of
    ``coded_cases`` (cases with at least one placed coding). Coders often code a
    subset of the transcripts; a theme's segments in the cases nobody coded say
    nothing about whether the coders would have coded them, and counting them made
    codes look "not found" and every theme "mostly uncoded" even at perfect agreement.

    Every code of the codes file has a row, also one none of whose codings could be
    placed (``unplaced``: code -> codings not placed): it is *not placed (n codings)*
    rather than missing from the table, so the codes counted in the summary's header
    and in the table are the same. A code in no segment whose codings do overlap
    analysed segments (``in_segments``: code -> such codings) is coded in passages
    shorter than ``short``, not "not in the analysed segments".
    """
    from .report.templating import counted

    unplaced = dict(unplaced or {})
    in_segments = dict(in_segments or {})
    code_col = f"{prefix}code"
    in_theme = table[theme_col] >= 0
    coded = table[code_col] != ""
    in_scope = table["case_id"].isin(coded_cases)
    both = table[in_theme & coded]
    metrics = agreement_metrics(both[code_col].tolist(), both[theme_col].tolist())
    contingency = pd.crosstab(both[code_col], both[theme_col]) if len(both) else \
        pd.DataFrame(dtype=int)
    match = {int(t): c for t, c in best_matching(contingency).items()}
    code_theme = {c: t for t, c in match.items()}
    counts = {"segments": len(table), "in_theme": int(in_theme.sum()),
              "coded": int(coded.sum()), "compared": len(both),
              "cases": int(table["case_id"].nunique()),
              "coded_cases": int(table.loc[in_scope, "case_id"].nunique()),
              "segments_in_coded_cases": int(in_scope.sum()),
              "coded_unassigned": int((coded & ~in_theme).sum()),
              "uncoded_in_theme": int((in_theme & in_scope & ~coded).sum()),
              "partly_covered": int(sum(1 for s, c in zip(table["segment_id"], table[code_col],
                                                           strict=True)
                                        if not c and partial.get(s))),
              "partial_overlaps": int(sum(len(v) for v in partial.values()))}
    # --- per code (segments carrying the code, several per segment allowed) ---
    long = [(sid, code, t, case) for sid, t, case in
            zip(table["segment_id"], table[theme_col], table["case_id"], strict=True)
            for code in carried.get(sid, [])]
    long = pd.DataFrame(long, columns=["segment_id", "code", "theme", "case_id"])
    part_long = pd.DataFrame([(sid, code) for sid, codes in partial.items() for code in codes],
                             columns=["segment_id", "code"])
    theme_sizes = table[in_theme & in_scope].groupby(theme_col).size().to_dict()
    code_rows = []
    all_codes = sorted(set(long["code"]) | set(part_long["code"]) | used | set(unplaced)
                       | set(listed))
    for code in all_codes:
        mine = long[long["code"] == code]
        held = mine[mine["theme"] >= 0]
        by_t = held.groupby("theme").size().sort_values(ascending=False, kind="stable")
        n = len(mine)
        n_held = len(held)
        f1s = {int(t): 2 * k / (n + theme_sizes.get(t, 0)) for t, k in by_t.items()}
        best = max(f1s, key=lambda t: (f1s[t], -t)) if f1s else -1
        best_f1 = f1s.get(best, 0.0)
        top_share = by_t.iloc[0] / n_held if n_held else 0.0
        need = int(np.searchsorted(np.cumsum(by_t.to_numpy()) / max(n_held, 1), 0.8 - 1e-9)
                   + 1) if n_held else 0
        if code not in used and not unplaced.get(code):
            status = "not used (0 codings)"
        elif code not in used:
            status = f"not placed ({counted(unplaced.get(code, 0), 'coding')})"
        elif n == 0 and in_segments.get(code):
            status = f"{SHORT_PASSAGES} {short} ({counted(in_segments[code], 'coding')})"
        elif n == 0:
            status = "not in the analysed segments"
        elif best_f1 >= FOUND_F1:
            status = "found"
        elif top_share < 0.5 and need >= 2:
            status = "split"
        elif best_f1 >= PARTLY_F1:
            status = "partly found"
        else:
            status = "not found"
        code_rows.append({
            "level": level, "code": code, "n_segments": n,
            "n_cases": int(mine["case_id"].nunique()),
            "n_partial": int((part_long["code"] == code).sum()),
            "n_not_placed": int(unplaced.get(code, 0)),
            "n_unassigned": int((mine["theme"] < 0).sum()),
            "matched_theme": code_theme.get(code, -1),
            "matched_theme_name": names.get(code_theme.get(code, -1), ""),
            "best_theme": best, "best_theme_name": names.get(best, ""),
            "best_f1": round(best_f1, 4), "share_in_top_theme": round(float(top_share), 4),
            "n_themes": len(by_t), "themes_for_80pct": need,
            "themes": "; ".join(f"{int(t)} {names.get(int(t), '')} ({int(k)})"
                                for t, k in by_t.head(6).items()),
            "status": status})
    by_code = pd.DataFrame(code_rows, columns=[
        "level", "code", "n_segments", "n_cases", "n_partial", "n_not_placed", "n_unassigned",
        "matched_theme",
        "matched_theme_name", "best_theme", "best_theme_name", "best_f1", "share_in_top_theme",
        "n_themes", "themes_for_80pct", "themes", "status"])
    # --- per theme ---
    theme_rows = []
    for t in sorted(int(x) for x in table.loc[in_theme, theme_col].unique()):
        n_all = int((table[theme_col] == t).sum())
        mine = table[(table[theme_col] == t) & in_scope]
        n = len(mine)
        sub = long[long["theme"] == t]
        n_coded = int(sub["segment_id"].nunique())
        by_c = sub.groupby("code").size().sort_values(ascending=False, kind="stable")
        primary = mine[mine[code_col] != ""][code_col].value_counts()
        purity = float(primary.iloc[0] / primary.sum()) if len(primary) else 0.0
        need = int(np.searchsorted(np.cumsum(primary.to_numpy()) / max(primary.sum(), 1),
                                   0.8 - 1e-9) + 1) if len(primary) else 0
        uncoded = 1 - n_coded / n if n else math.nan
        if n == 0:
            status = "outside the coded cases"
        elif uncoded >= NEW_CODE_SHARE:
            status = "candidate new code (mostly uncoded)"
        elif need >= 2:
            status = f"mixes {need} codes"
        elif t in match:
            status = "matches a code"
        else:
            status = "no matching code"
        theme_rows.append({
            "level": level, "theme": t, "name": names.get(t, ""), "n_segments": n,
            "n_segments_all_cases": n_all,
            "n_coded": n_coded, "uncoded_share": round(uncoded, 4),
            "matched_code": match.get(t, ""),
            "top_code": primary.index[0] if len(primary) else "",
            "purity": round(purity, 4), "n_codes": len(by_c), "codes_for_80pct": need,
            "codes": "; ".join(f"{c} ({int(k)})" for c, k in by_c.head(6).items()),
            "status": status})
    by_theme = pd.DataFrame(theme_rows, columns=[
        "level", "theme", "name", "n_segments", "n_segments_all_cases", "n_coded",
        "uncoded_share", "matched_code",
        "top_code", "purity", "n_codes", "codes_for_80pct", "codes", "status"])
    return LevelResult(level, metrics, contingency, match, by_code, by_theme, names, counts)


def _queue(table: pd.DataFrame, res: LevelResult, level: str) -> pd.DataFrame:
    prefix = "" if level == "category" else "domain_"
    theme_col = "theme" if level == "category" else "domain_id"
    code_theme = {c: t for t, c in res.match.items()}
    rows = []
    for r in table.itertuples(index=False):
        code = getattr(r, f"{prefix}code")
        theme = int(getattr(r, theme_col))
        if not code or theme < 0:
            continue
        expected = code_theme.get(code, -1)
        carried = list(getattr(r, f"{prefix}codes"))
        if expected == theme or res.match.get(theme) in carried:
            continue          # agrees (also when the theme's own code is a secondary code)
        coverage = float(getattr(r, f"{prefix}coverage"))
        strength = float(r.strength) if r.strength == r.strength else 0.0
        rows.append({
            "segment_id": r.segment_id, "case_id": r.case_id, "turn_index": int(r.turn_index),
            "quote": r.text, "human_code": code, "code_coverage": round(coverage, 4),
            "kind": "conflict" if expected >= 0 else "code without a theme",
            "other_codes": [c for c in carried if c != code],
            "coders": r.coders,
            "theme": theme, "theme_name": res.theme_names.get(theme, ""),
            "strength": round(strength, 4),
            "theme_stands_for": res.match.get(theme, ""),
            "code_expected_in_theme": expected,
            "code_expected_in_theme_name": res.theme_names.get(expected, ""),
            "confidence": round(strength * coverage, 4)})
    cols = ["rank", "kind", "segment_id", "case_id", "turn_index", "quote", "human_code",
            "code_coverage", "other_codes", "coders", "theme", "theme_name", "strength",
            "theme_stands_for", "code_expected_in_theme", "code_expected_in_theme_name",
            "confidence", "verdict", "note"]
    if not rows:
        return pd.DataFrame(columns=cols)
    q = pd.DataFrame(rows)
    q["_conflict"] = q["kind"] == "conflict"
    q = q.sort_values(["_conflict", "confidence", "segment_id"], ascending=[False, False, True],
                      kind="stable").reset_index(drop=True).drop(columns="_conflict")
    q.insert(0, "rank", np.arange(1, len(q) + 1))
    q["verdict"] = ""
    q["note"] = ""
    return q[cols]


def _coders(seg: pd.DataFrame, placed: pd.DataFrame, per: pd.DataFrame, coders: list[str],
            min_coverage: float, votes) -> CoderResult:
    """Agreement between the human coders on the run's segments (see the module docstring)."""
    ok = placed[placed["status"] == "placed"]
    cases_of = {c: set(ok.loc[ok["coder"] == c, "case_id"]) for c in coders}
    got = per[per["coverage"] >= min_coverage - 1e-12]
    prim: dict[tuple[str, str], str] = {}
    for coder, grp in got.groupby("coder"):
        for sid, code in primary_codes(grp, min_coverage, votes).items():
            prim[(sid, coder)] = code
    sets = got.groupby(["segment_id", "coder"])["code"].apply(set).to_dict()
    units = list(seg["segment_id"])
    unit_case = dict(zip(seg["segment_id"], seg["case_id"], strict=True))
    nominal = pd.DataFrame({c: [prim.get((u, c), NO_CODE) if unit_case[u] in cases_of[c]
                                else None for u in units] for c in coders}, index=units)
    coded = coded_units(nominal)
    overall = nominal_agreement(nominal.loc[coded])
    all_units = nominal_agreement(nominal)
    rows = []
    for code in sorted(set(got["code"])):
        binary = pd.DataFrame({c: [float(code in sets.get((u, c), ())) if unit_case[u] in
                                   cases_of[c] else np.nan for u in coded] for c in coders},
                              index=coded)
        stats = nominal_agreement(binary)
        rows.append({"code": code, "n_units": stats["n_units"],
                     "n_with_code": int((binary == 1).any(axis=1).sum()),
                     "cohen": stats["cohen"], "fleiss": stats["fleiss"],
                     "krippendorff": stats["krippendorff"], "percent": stats["percent"]})
    return CoderResult(level="", coders=coders, overall=overall, all_units=all_units,
                       per_code=pd.DataFrame(rows, columns=[
                           "code", "n_units", "n_with_code", "cohen", "fleiss", "krippendorff",
                           "percent"]))


def coder_agreement_on_spans(codes: HumanCodes, *, level: str = "category",
                             depth: int | None = None,
                             min_coverage: float = MIN_COVERAGE) -> CoderResult:
    """Agreement between coders without a run: the units are the distinct coded passages
    (case, start, end) of all coders, each coder rating the units of the cases they coded."""
    cod = codes.codings[codes.codings["start"] >= 0]
    if cod.empty:
        raise InputError("these codes have no offsets: agreement between coders needs them "
                         "(or a run to place them on)", path=codes.path)
    placed = cod.assign(case_id=cod["case"], start_char=cod["start"], end_char=cod["end"],
                        status="placed")
    units = placed[["case_id", "start_char", "end_char"]].drop_duplicates().reset_index(drop=True)
    units["segment_id"] = [f"{c}:{s}-{e}" for c, s, e in
                           zip(units["case_id"], units["start_char"], units["end_char"],
                               strict=True)]
    per = segment_coverage(units, placed, level=level, depth=depth, by_coder=True)
    votes = per[per["coverage"] >= min_coverage - 1e-12].groupby(
        ["segment_id", "code"]).size().to_dict()
    res = _coders(units, placed, per, codes.coders, min_coverage, votes)
    res.level = level
    return res


# --- Output -------------------------------------------------------------------------

def _f(x: Any, digits: int = 2) -> str:
    """A measure as the terminal summary and the page show it (the page's ``f`` filter)."""
    from .report.templating import number

    return number(x, digits)


def summary_text(res: CompareResult, folder: Path | None = None) -> str:
    """The one-screen summary the terminal shows."""
    run, codes = res.run, res.codes
    cat = res.levels["category"]
    placed = res.placed
    n_placed = int((placed["status"] == "placed").sum())
    humans = [c for c in codes.coders if c not in CONSENSA_CODERS]
    machine = [c for c in codes.coders if c in CONSENSA_CODERS]
    lines = [(f"Consensa compare: run '{run.name}' vs {Path(codes.path).name} "
              f"({codes.kind}; {codes.codings['code'].nunique()} codes, "
              f"{len(humans) or 'no named'} coder{'s' if len(humans) != 1 else ''}"
              + (f" and Consensa's {_names(machine)}" if machine else "") + ")")]
    c = cat.counts
    lines.append(f"  codings placed: {n_placed} of {len(placed)}   segments: {c['segments']}, "
                 f"coded {c['coded']} (>= {res.params['min_coverage']:.0%} covered), "
                 f"in a theme {c['in_theme']}; partial overlaps {c['partial_overlaps']} "
                 f"({c['partly_covered']} segments covered only partly)")
    head = f"  {'agreement (coded segments in a theme)':<40}"
    shown = [lv for lv in LEVELS if lv in res.levels]
    head += "".join(f"{lv + ' (n=' + str(res.levels[lv].counts['compared']) + ')':>20}"
                    for lv in shown)
    lines.append(head)
    for key in ("ari", "nmi", "ami", "homogeneity", "completeness", "kappa"):
        lines.append(f"    {METRIC_NAMES[key]:<38}" +
                     "".join(f"{_f(res.levels[lv].metrics[key]):>20}" for lv in shown))
    wrappers = list(codes.info.get("wrappers") or [])
    for note in wrappers:
        # said beside the figures: a domain level read from a container code is 0.00
        # whatever the coding, and a note at the end was easy to miss
        lines.append(f"  levels: {note}")
    lv = res.levels[res.level]
    scope = coded_scope(lv.counts)
    if scope:
        lines.append(f"  per code and per theme: {scope}")
    bc = lv.by_code
    unplaced = bc[bc["status"].str.startswith("not placed")]
    short = "coded only in short passages"
    st = bc["status"].where(~bc["status"].str.startswith("not placed"), "not placed") \
        .where(~bc["status"].str.startswith(SHORT_PASSAGES), short) \
        .value_counts().to_dict() if len(bc) else {}
    order = ("found", "partly found", "split", "not found", short,
             "not in the analysed segments", "not placed")
    lines.append(f"  codes ({res.level}): {len(bc)}; " +
                 ", ".join(f"{st[s]} {s}" for s in order if st.get(s)))
    if len(unplaced):
        lines.append("    not placed (no coding found in the run's texts): " + _listing(
            [f"{c} ({n})" for c, n in zip(unplaced["code"], unplaced["n_not_placed"],
                                          strict=True)], 100))
    if res.short_note:
        lines.append("    " + res.short_note)
    missed = bc[bc["status"].isin(["not found", "split"])].sort_values(
        "n_segments", ascending=False)
    if len(missed):
        lines.append("    not found or split: " + _listing(
            [f"{c} ({n})" for c, n in zip(missed["code"], missed["n_segments"], strict=True)],
            100))
    bt = lv.by_theme
    new = bt[bt["status"].str.startswith("candidate")]
    mixed = bt[bt["status"].str.startswith("mixes")]
    outside = int((bt["status"] == "outside the coded cases").sum())
    lines.append(f"  themes ({res.level}): {len(bt)}; " +
                 (f"{outside} outside the coded cases, " if outside else "") +
                 f"{len(mixed)} mix codes, {len(new)} "
                 "candidate new codes (mostly uncoded)" + (": " + _listing(
                     [f"{t} {n}" for t, n in zip(new["theme"], new["name"], strict=True)], 60)
                     if len(new) else ""))
    n_conf = int((res.queue["kind"] == "conflict").sum()) if len(res.queue) else 0
    lines.append(f"  disagreement queue: {len(res.queue)} segments, {n_conf} in conflict (their "
                 "code matched to another theme), most confident first")
    for note in res.coder_notes:
        if note.startswith((f"between coders ({res.level} level)", "between coders:")):
            lines.append(f"  {note}")
    if res.coders:
        cr = res.coders.get(res.level) or next(iter(res.coders.values()))
        o = cr.overall
        lines.append(f"  between {len(cr.coders)} coders, on the {o['n_units']} segments at "
                     f"least one of them coded: Cohen's kappa {_f(o['cohen'])}, Krippendorff's "
                     f"alpha {_f(o['krippendorff'])}, Fleiss' kappa {_f(o['fleiss'])}, "
                     f"agreement {_f(o['percent'] * 100, 0)}%")
        a = cr.all_units
        if a:
            lines.append(f"    on all {a['n_units']} segments of the cases they coded (uncoded "
                         f"by both counted as agreement): Cohen's kappa {_f(a['cohen'])}, "
                         f"Krippendorff's alpha {_f(a['krippendorff'])}, agreement "
                         f"{_f(a['percent'] * 100, 0)}%")
    # the note on short passages is on the codes' lines above, in full
    # the notes on coders are printed above (those of the other level are in compare.html)
    notes = [n for n in res.notes if n != res.short_note and n not in wrappers
             and n not in res.coder_notes]
    if notes:
        # the codings left out come first and in full: cut short or counted as "(+1)"
        # behind a long note about case names, they were easy to miss
        first = [n for n in notes[:1] if n == res.unplaced_note]
        rest = notes[len(first):]
        head = f"  notes: {len(notes)} (see compare.html): "
        if first:
            lines.append(head + first[0])
            if rest:
                lines.append("    " + _listing(rest, 120))
        else:
            lines.append(head + _listing(rest, 120))
    if folder is not None:
        lines.append(f"  folder: {folder}   (compare.html, disagreements.xlsx)")
    return "\n".join(lines)


def coded_scope(counts: Mapping[str, int]) -> str:
    """What the per-code and per-theme tables count, when the coders left cases out:
    "over the 2 coded cases of 10 (63 segments) ...". Empty when every case was coded."""
    from .report.templating import counted

    n, m = counts.get("coded_cases", 0), counts.get("cases", 0)
    if n >= m:
        return ""
    return (f"over the {counted(n, 'coded case')} of {m} "
            f"({counted(counts.get('segments_in_coded_cases', 0), 'segment')}); cases "
            "without a placed coding are left out")


def _listing(items: Sequence[str], limit: int) -> str:
    """Items joined into one line of about ``limit`` characters, the rest counted. The
    first item is always shown (cut short if it is long): a line of notes that shows
    none of them says nothing."""
    out = ""
    for k, item in enumerate(items):
        if not out and len(item) > limit:
            item = item[:max(limit - 1, 1)].rstrip() + "…"
        piece = (", " if out else "") + item
        if len(out) + len(piece) > limit:
            return out + f", ... (+{len(items) - k})"
        out += piece
    return out


def write_compare(res: CompareResult, out: str | Path | None = None) -> Path:
    """Write the comparison's folder (replacing an earlier comparison there)."""
    folder = Path(out) if out else res.run.folder / "compare"
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (
            folder / "compare_manifest.json").is_file())):
        raise InputError("exists and is not a folder written by `consensa compare`; it was "
                         "left as it is", path=folder, hint="choose another --out folder")
    tmp = folder.parent / f".{folder.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write_files(res, tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if folder.exists():
        old = folder.parent / f".{folder.name}.old-{os.getpid()}"
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def _write_files(res: CompareResult, tmp: Path, final: Path) -> None:
    metrics_rows = []
    for lv, r in res.levels.items():
        for key, name in METRIC_NAMES.items():
            metrics_rows.append({"level": lv, "measure": key, "name": name,
                                 "value": r.metrics[key], "n_segments": r.counts["compared"]})
    # codes, theme names and quotes are text in a spreadsheet, never formulas (sheets.py)
    to_csv(pd.DataFrame(metrics_rows), tmp / "agreement.csv", index=False)
    to_csv(pd.concat([r.by_code for r in res.levels.values()]), tmp / "by_code.csv",
           index=False)
    to_csv(pd.concat([r.by_theme for r in res.levels.values()]), tmp / "by_theme.csv",
           index=False)
    for lv, r in res.levels.items():
        to_csv(r.contingency, tmp / f"contingency_{lv}.csv")
    seg = res.segments.drop(columns=["start_char", "end_char"])
    to_csv(seg, tmp / "segments.csv", index=False)
    to_csv(res.placed, tmp / "coding_spans.csv", index=False)
    to_csv(res.queue, tmp / "disagreements.csv", index=False)
    atomic_write_bytes(tmp / "disagreements.xlsx", queue_xlsx(res.queue))
    if res.coders:
        rows = []
        for lv, cr in res.coders.items():
            o = cr.overall
            for scope, stats in (("overall", o), ("all segments", cr.all_units)):
                for key in ("cohen", "fleiss", "krippendorff", "percent") if stats else ():
                    rows.append({"level": lv, "scope": scope, "pair": "", "measure": key,
                                 "value": stats[key], "n_units": stats["n_units"]
                                 if key != "fleiss" else stats["n_complete"]})
            for (a, b), (k, p, n) in o["pairs"].items():
                rows.append({"level": lv, "scope": "overall", "pair": f"{a} | {b}",
                             "measure": "cohen", "value": k, "n_units": n})
                rows.append({"level": lv, "scope": "overall", "pair": f"{a} | {b}",
                             "measure": "percent", "value": p, "n_units": n})
            for r in cr.per_code.itertuples(index=False):
                for key in ("cohen", "fleiss", "krippendorff", "percent"):
                    rows.append({"level": lv, "scope": r.code, "pair": "", "measure": key,
                                 "value": getattr(r, key), "n_units": r.n_units})
        to_csv(pd.DataFrame(rows), tmp / "coders.csv", index=False)
    summary = summary_text(res, final)
    atomic_write_text(tmp / "summary.txt", summary + "\n")
    atomic_write_text(tmp / "compare.html", render_html(res, summary))
    manifest = {
        "consensa_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": str(res.run.folder), "run_name": res.run.name, "run_id": res.run.run_id,
        "codes": {"path": res.codes.path, "sha256": file_sha256(res.codes.path),
                  "kind": res.codes.kind, "coders": res.codes.coders,
                  "info": _plain(res.codes.info)},
        "params": res.params,
        "counts": {lv: r.counts for lv, r in res.levels.items()},
        "metrics": {lv: r.metrics for lv, r in res.levels.items()},
        "notes": res.notes,
    }
    atomic_write_text(tmp / "compare_manifest.json",
                      json.dumps(_plain(manifest), indent=2, ensure_ascii=False))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(float(obj)) else float(obj)
    return obj


def queue_xlsx(queue: pd.DataFrame) -> bytes:
    """The disagreement queue as a review workbook (a verdict list in each row)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.worksheet.datavalidation import DataValidation

    wb = Workbook()
    ws = wb.active
    ws.title = "disagreements"
    cols = list(queue.columns)
    append_row(ws, cols)
    for cell in ws[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDE5F0")
    for row in queue.itertuples(index=False):
        append_row(ws, row)               # never a formula, whatever the text starts with
    widths = {"quote": 70, "human_code": 30, "theme_name": 30, "other_codes": 25,
              "theme_stands_for": 30, "code_expected_in_theme_name": 30, "note": 40,
              "verdict": 16, "segment_id": 16}
    from openpyxl.utils import get_column_letter

    for i, name in enumerate(cols, 1):
        ws.column_dimensions[get_column_letter(i)].width = widths.get(name, 12)
        if name in ("quote", "note", "human_code", "theme_name"):
            for cell in ws[get_column_letter(i)][1:]:
                cell.alignment = Alignment(wrap_text=True, vertical="top")
    ws.freeze_panes = "B2"
    if len(queue):
        col = get_column_letter(cols.index("verdict") + 1)
        dv = DataValidation(type="list", formula1='"' + ",".join(VERDICTS) + '"',
                            allow_blank=True)
        dv.add(f"{col}2:{col}{len(queue) + 1}")
        ws.add_data_validation(dv)
    about = wb.create_sheet("about")
    for line in (
            ["Consensa disagreement queue"],
            [("Each row: a segment whose human code and Consensa theme disagree; first the "
              "conflicts (the code is matched to another theme), then the segments whose code "
              "is matched to no theme; each most confident first (confidence = theme "
              "membership strength x the code's coverage of the segment).")],
            [("theme_stands_for: the code matched to the segment's theme; "
              "code_expected_in_theme: the theme matched to the segment's code (-1: none).")],
            ["Fill in 'verdict' (" + ", ".join(VERDICTS) + ") and 'note'."]):
        append_row(about, line)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


# --- HTML ---------------------------------------------------------------------------

def _path_label(code: str, limit: int) -> str:
    """A code path for a plot label: its last levels, as many as fit in ``limit``."""
    from .report.plots import mpl_text

    parts = str(code).split(" > ")
    label = parts[-1]
    for part in reversed(parts[:-1]):
        if len(part) + len(label) + 3 > limit:
            label = "… > " + label
            break
        label = f"{part} > {label}"
    return mpl_text(label, limit)


def heatmap_svg(lv: LevelResult, title: str) -> str:
    """The code x theme contingency table as inline SVG (shares of each code's segments)."""
    from .report.plots import figure_svg, mpl_text

    table = lv.contingency
    if table.empty:
        return ""
    code_theme = {c: t for t, c in lv.match.items()}
    rows = sorted(table.index, key=lambda c: (-table.loc[c].sum(), str(c)))[:MAX_HEATMAP]
    rows = sorted(rows, key=lambda c: (code_theme.get(c) is None,
                                       list(table.columns).index(code_theme[c])
                                       if c in code_theme else 0, -table.loc[c].sum()))
    cols_matched = [code_theme[c] for c in rows if c in code_theme]
    rest = [t for t in table.columns if t not in cols_matched]
    rest = sorted(rest, key=lambda t: -table[t].sum())
    cols = (cols_matched + rest)[:MAX_HEATMAP]
    sub = table.loc[rows, cols]
    shares = sub.div(table.loc[rows].sum(axis=1).replace(0, 1), axis=0).to_numpy()
    h = max(2.5, 0.22 * len(rows) + 1.6)
    w = max(4.0, 0.28 * len(cols) + 3.8)

    def draw(fig) -> None:
        ax = fig.add_subplot()
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels([mpl_text(f"{t} {lv.theme_names.get(int(t), '')}", 28)
                            for t in cols], rotation=60, ha="right")
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([_path_label(r, 44) for r in rows])
        if len(rows) * len(cols) <= 600:
            for i in range(len(rows)):
                for j in range(len(cols)):
                    k = int(sub.iat[i, j])
                    if k:
                        ax.text(j, i, str(k), ha="center", va="center", fontsize=6.5,
                                color="white" if shares[i, j] > 0.55 else "#222222")
        ax.set_xlabel("Consensa " + ("theme" if lv.level == "category" else "domain"))
        ax.set_ylabel("human code" if lv.level == "category" else "human code domain")
        ax.set_title(mpl_text(title, 90))

    return str(figure_svg(lv.level, (w, h), draw, rc={"font.size": 8},
                          label=f"heat map, {lv.level} level"))


def render_html(res: CompareResult, summary: str) -> str:
    from markupsafe import Markup

    from .report.templating import page_environment

    levels = []
    for lv, r in res.levels.items():
        title = f"{'Codes' if lv == 'category' else 'Code domains'} x Consensa " \
                f"{'themes' if lv == 'category' else 'domains'} (share of each code's segments)"
        levels.append({"name": lv, "metrics": [(METRIC_NAMES[k], r.metrics[k])
                                               for k in METRIC_NAMES],
                       "counts": r.counts, "scope": coded_scope(r.counts),
                       "svg": Markup(heatmap_svg(r, title)),
                       "by_code": r.by_code.to_dict("records"),
                       "by_theme": r.by_theme.to_dict("records")})
    coders = []
    for lv, cr in res.coders.items():
        coders.append({"level": lv, "coders": cr.coders, "overall": cr.overall,
                       "pairs": [(a, b, *v) for (a, b), v in cr.overall["pairs"].items()],
                       "per_code": cr.per_code.to_dict("records")})
    placed = res.placed
    hows = placed[placed["status"] == "placed"]["how"].str.replace(
        r" \(1 of \d+ places\)", " (several places)", regex=True).value_counts().to_dict()
    status = placed["status"].value_counts().to_dict()
    ctx = {"run": res.run, "codes": res.codes, "summary": summary, "levels": levels,
           "level": res.level, "coders": coders,
           "queue": res.queue.head(MAX_HTML_QUEUE).to_dict("records"),
           "n_queue": len(res.queue), "notes": res.notes, "params": res.params,
           "hows": hows, "status": status, "version": __version__,
           "codes_name": Path(res.codes.path).name}
    return page_environment().get_template("compare.html.j2").render(**ctx)
