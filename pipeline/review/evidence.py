"""The evidence the judges weigh: flags, honest labels, case attributes, subgroups.

A CQR run says of each category whether one participant's story makes it (*single
story*), whether a case counts only through a reassigned outlier or one short line
(*thin*), whether it came back when the run was resampled (*unstable*), and which
label it would have if the reassigned outliers counted. Those facts belong in front
of the judges when they decide, and in the table they publish. CQR papers also
compare subgroups (the therapists who cried against those who held back), so each
category's frequency label is given within each group of a case attribute.

A themes run has none of this: every function here gives nothing for it, and the
pages, workbooks and tables then show nothing extra.

The rules are the cross-analysis' own (:mod:`pipeline.stages.crossanalysis`): after
the judges' moves and merges a category is computed again with them, and a segment a
judge placed counts (the judges, not the clusterer, put it there).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..stages.cqr import frequency_label
from ..stages.crossanalysis import (
    ANSWERED_NO,
    MINIMAL,
    SINGLE_STORY,
    THIN,
    UNSTABLE,
    CrossAnalysisConfig,
    mostly_minimal,
    says_little,
)
from .model import RunItems

#: a case attribute makes subgroups when it has this many distinct values (a column
#: with one value compares nothing; one with many, such as an age, makes groups of one)
SUBGROUP_VALUES = (2, 6)


def is_cqr(run: RunItems) -> bool:
    """Whether the run carries the CQR evidence (its segments say which ones count)."""
    return "counted" in run.segments.columns


def settings(run: RunItems) -> CrossAnalysisConfig:
    """The run's cross-analysis settings (the flags' thresholds), defaults if none."""
    section = (run.config or {}).get("crossanalysis")
    try:
        return CrossAnalysisConfig(**section) if isinstance(section, dict) else \
            CrossAnalysisConfig()
    except ValueError:  # a run written by another version: its thresholds as defaults
        return CrossAnalysisConfig()


def theme_evidence(run: RunItems, tid) -> dict:
    """What the run says of a proposed theme: ``flags`` (list), ``label_if`` (the label
    if reassigned outliers counted, "" where it is the same), ``n_counted`` (None in a
    themes run), ``definition``. Empty values for a themes run."""
    out = {"flags": [], "label_if": "", "n_counted": None, "definition": ""}
    themes = run.themes
    if "flags" not in themes.columns:
        return out
    hit = themes[themes["theme_id"] == int(tid)]
    if hit.empty:
        return out
    row = hit.iloc[0]
    flags = row.get("flags")
    out["flags"] = [str(f) for f in flags] if isinstance(flags, (list, tuple)) or \
        hasattr(flags, "tolist") else []
    other = row.get("label_if_reassigned_counted")
    other = "" if other is None or (isinstance(other, float) and pd.isna(other)) else str(other)
    out["label_if"] = other if other and other != str(row["frequency_label"]) else ""
    n = row.get("n_counted_cases")
    out["n_counted"] = None if n is None or pd.isna(n) else int(n)
    definition = row.get("definition")
    out["definition"] = "" if definition is None or pd.isna(definition) else str(definition)
    return out


def evidence_text(ev: dict) -> str:
    """Flags and the other label in one line, as a workbook cell or a table cell."""
    parts = list(ev.get("flags") or [])
    if ev.get("label_if"):
        parts.append(f"{ev['label_if']} if reassigned outliers counted")
    return "; ".join(parts)


def attribute_text(attrs: dict[str, str]) -> str:
    """A case's attributes in one line: ``orientation: CBT; cried: yes``."""
    return "; ".join(f"{k}: {v}" for k, v in attrs.items() if str(v).strip())


def subgroup_attributes(run: RunItems) -> dict[str, list[str]]:
    """{attribute: its values} for the attributes that make subgroups: 2-6 values, and
    fewer values than cases. A column whose every case has its own value (years in
    practice in a study of six) makes groups of one, which compare nothing."""
    return subgroup_values(run.cases)


def subgroup_values(cases: pd.DataFrame | None) -> dict[str, list[str]]:
    """:func:`subgroup_attributes` of a table of cases (``case_id`` and one column per
    attribute): the rule the review's subgroups and the exports' sets of cases share."""
    if cases is None or cases.empty:
        return {}
    lo, hi = SUBGROUP_VALUES
    out = {}
    for col in cases.columns:
        if col == "case_id":
            continue
        given = [str(v).strip() for v in cases[col] if str(v).strip()]
        values = sorted(set(given))
        if lo <= len(values) <= hi and len(values) < len(given):
            out[col] = values
    return out


def counted_cases(run: RunItems, tid, cases) -> list[str]:
    """The cases a proposed theme's frequency label counts. In a CQR run a case counts
    through a segment the clustering placed in the theme or an outlier reassigned above
    ``cqr.count_reassigned_above`` (the segments' ``counted`` column); a category the
    judges created counts every case of its segments (they placed them), and so does
    every theme of a themes run. ``cases`` are the theme's cases, returned as they are
    where every case counts."""
    if not is_cqr(run) or str(tid) in run.created_themes:
        return [str(c) for c in cases]
    seg = run.segments
    mine = (seg["theme"] == int(tid)).to_numpy() & seg["counted"].astype(bool).to_numpy()
    order = {str(c): i for i, c in enumerate(cases)}
    return sorted(set(seg.loc[mine, "case_id"].astype(str)),
                  key=lambda c: (order.get(c, len(order)), c))


def subgroups(run: RunItems, category_cases) -> list[dict]:
    """The frequency label of a category within each group of each attribute:
    ``[{attribute, group, n_group, n_cases, frequency_label}]``. The label counts the
    group's cases that have the category against the group's size, with the run's
    cut-offs, as CQR papers print the cried / held-back comparison. Give the cases
    the category's label counts (:func:`counted_cases`; a codebook category's
    ``counted_cases``), so that each group's label is counted as the category's is."""
    attrs = subgroup_attributes(run)
    if not attrs:
        return []
    mine = {str(c) for c in category_cases}
    cases = run.cases
    rows = []
    for attr, values in attrs.items():
        for value in values:
            group = {str(c) for c in cases.loc[cases[attr].astype(str).str.strip() == value,
                                               "case_id"]}
            n = len(group & mine)
            rows.append({"attribute": attr, "group": value, "n_group": len(group),
                         "n_cases": n, "frequency_label": frequency_label(n, len(group), run.cqr)})
    return rows


def recount(run: RunItems, members: pd.DataFrame, placed: set[str],
            unstable: bool = False) -> dict:
    """A final category's honest count and flags, from the segments it holds.

    ``members`` are its segments (rows of the run's segments); ``placed`` the ids of
    those the judges put there (moved, split off, in a category they made), which
    count. Returns ``counted_cases``, ``frequency_label`` (from the counted cases),
    ``label_if_reassigned_counted`` (from every case), ``flags``. For a themes run
    every case counts and no flag is raised.
    """
    total = run.n_cases
    cases = members["case_id"].astype(str)
    all_cases = sorted(set(cases))
    if not is_cqr(run):
        label = frequency_label(len(all_cases), total, run.cqr)
        return {"counted_cases": all_cases, "frequency_label": label,
                "label_if_reassigned_counted": label, "flags": []}
    cfg = settings(run)
    by_judges = members["segment_id"].isin(placed).to_numpy()
    counted = members["counted"].astype(bool).to_numpy() | by_judges
    reassigned = (members["reassigned"].astype(bool).to_numpy() & ~by_judges
                  if "reassigned" in members.columns else counted & False)
    words = (members["n_words"].to_numpy() if "n_words" in members.columns
             else members["text"].astype(str).str.split().str.len().to_numpy())
    counted_cases = sorted(set(cases[counted]))
    label = frequency_label(len(counted_cases), total, run.cqr)
    thin = []
    for c in counted_cases:
        m = (cases == c).to_numpy() & counted
        if reassigned[m].all() or (m.sum() == 1 and words[m][0] < cfg.thin_words):
            thin.append(c)
    flags = []
    if len(members) and cases.value_counts().iloc[0] > cfg.single_story_share * len(members):
        flags.append(SINGLE_STORY)
    if thin and frequency_label(len(counted_cases) - len(thin), total, run.cqr) != label:
        flags.append(THIN)
    if unstable:
        flags.append(UNSTABLE)
    if mostly_minimal(np.array([says_little(t) for t in members["text"].astype(str)], bool),
                      cfg.minimal_share):
        flags.append(MINIMAL)
    # the cases that answered the domain's question "No": the proposal's category of
    # them, kept whole or in part, says so still (the run found them in the turns)
    proposed = run.proposed_themes if run.proposed_themes is not None else run.themes
    if len(members) and "theme" in members.columns and "flags" in proposed.columns:
        said_no = {int(t) for t, f in zip(proposed["theme_id"], proposed["flags"])
                   if isinstance(f, (list, tuple, np.ndarray)) and ANSWERED_NO in list(f)}
        if said_no and members["theme"].astype(int).isin(said_no).all():
            flags.append(ANSWERED_NO)
    return {"counted_cases": counted_cases, "frequency_label": label,
            "label_if_reassigned_counted": frequency_label(len(all_cases), total, run.cqr),
            "flags": flags}
