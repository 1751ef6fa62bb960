"""Cross-analysis (CQR): how many cases each category and domain occurs in.

Frequency labels follow Hill et al. (2005), "Consensual qualitative research: an
update", J. Counseling Psychology 52(2): *general* applies to all cases or all
but one; *typical* to more than half, up to the cut-off for general; *variant*
to at least two cases, up to half. With more than 15 cases, *rare* covers 2-3
cases and variant starts at 4 (Hill, 2012). A category found in one case only is
flagged *single case*: CQR usually drops it or moves it to an "other" category.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..sheets import markdown_cell
from ..types import ASSIGNED_SEGMENT_COLUMNS, CQR_COLUMNS, DOMAIN_COLUMNS, THEME_COLUMNS


class CQRConfig(BaseModel):
    """Cut-offs of the frequency labels (config section ``cqr``)."""

    model_config = ConfigDict(extra="forbid")

    general_all_but: int = Field(1, ge=0, description="general = all cases but at most this many")
    rare_above_cases: int = Field(15, ge=1, description="use 'rare' when there are more cases than this")
    rare_max_cases: int = Field(3, ge=2, description="rare = 2 up to this many cases")
    count_reassigned_above: float = Field(0.5, ge=-1, le=1, description=(
        "a case counts toward a category's frequency label through an outlier reassigned to "
        "the category only when the outlier's cosine similarity to the category's centre is "
        "at least this; segments the clusterer placed there always count"))


def frequency_label(n: int, total: int, config: CQRConfig = CQRConfig()) -> str:
    if n <= 0:
        return "none"
    if n == 1:
        return "single case"
    if n >= total - config.general_all_but:
        return "general"
    if n > total / 2:
        return "typical"
    if total > config.rare_above_cases and n <= config.rare_max_cases:
        return "rare"
    return "variant"


def cutoffs(total: int, config: CQRConfig = CQRConfig()) -> dict[str, list[int]]:
    """For the report: each label's [min, max] number of cases, for ``total`` cases."""
    ranges: dict[str, list[int]] = {}
    for n in range(1, total + 1):
        label = frequency_label(n, total, config)
        lo, hi = ranges.get(label, [n, n])
        ranges[label] = [min(lo, n), max(hi, n)]
    return ranges


def cqr_table(themes: pd.DataFrame, domains: pd.DataFrame, segments: pd.DataFrame,
              n_cases_total: int) -> pd.DataFrame:
    """The table a CQR paper prints: domain, category, label, cases, a core-idea quote.

    Ordered by domain (as numbered), then by number of cases, most first.
    """
    text_by_id = dict(zip(segments["segment_id"], segments["text"]))
    case_by_id = dict(zip(segments["segment_id"], segments["case_id"]))
    dom_name = dict(zip(domains["domain_id"], domains["name"]))
    rows = []
    ordered = themes.sort_values(["domain_id", "n_cases", "n_segments", "theme_id"],
                                 ascending=[True, False, False, True])
    for _, t in ordered.iterrows():
        first = t["quote_ids"][0] if len(t["quote_ids"]) else ""
        rows.append({"domain": dom_name.get(t["domain_id"], ""), "category": t["name"],
                     "frequency_label": t["frequency_label"], "n_cases": int(t["n_cases"]),
                     "cases_total": n_cases_total, "quote": text_by_id.get(first, ""),
                     "quote_case": case_by_id.get(first, ""), "quote_segment_id": first})
    return pd.DataFrame(rows, columns=list(CQR_COLUMNS))


def _md(text: object) -> str:
    """A cell of a Markdown table: one line, text shown and never obeyed as markup."""
    return markdown_cell(text)


def shown_category(row) -> str:
    """A CQR table row's category as a reader sees it: a stance subcategory with the
    pole it stands for, "Tell my supervisor (stance: negative)". Its name is a phrase
    its quotes contain, which seldom says which judgement its participants share; a
    CQR paper prints the two halves of a category as "helpful" and "not helpful", and
    without the pole the judges could not tell the two rows of a category apart."""
    pole = row.get("pole") if hasattr(row, "get") else None
    name = str(row["category"])
    if isinstance(pole, str) and pole and row.get("level") == "subcategory":
        return f"{name} (stance: {pole})"
    return name


def cqr_markdown(table: pd.DataFrame, by_segment: bool = False) -> str:
    """``cqr_table.md``: the table in Markdown, one row per category.

    A CQR run's table (pipeline/analysis.py) also has subcategories (indented
    under their category), flags, and the label a category would have if the
    reassigned outliers counted, shown where it differs. Its quotes are cited by
    segment id, as are those of a table with ``by_segment`` (a pre-coding's); others
    by case."""
    cqr_run = "level" in table.columns
    head = "| Domain | Category | Frequency | Cases | Illustrative core idea |"
    lines = [head + " Flags |" if cqr_run else head,
             "|---|---|---|---|---|---|" if cqr_run else "|---|---|---|---|---|"]
    last = None
    for _, r in table.iterrows():
        dom = _md(r["domain"]) if r["domain"] != last else ""
        last = r["domain"]
        category, label = _md(shown_category(r)), str(r["frequency_label"])
        source = _md(r["quote_segment_id"] if by_segment and r.get("quote_segment_id")
                     else r["quote_case"])
        ids = r.get("quote_segment_ids")
        if cqr_run and isinstance(ids, (list, tuple, np.ndarray)) and len(ids):
            source = _md(", ".join(str(i) for i in ids))   # each sentence traces back
        row = (f"| {dom} | {category} | {label} | {r['n_cases']}/{r['cases_total']} | "
               f"\"{_md(r['quote'])}\" ({source}) |")
        if cqr_run:
            if r["level"] == "subcategory":
                row = f"| {dom} | ↳ {category} |" + row.split("|", 3)[3]
            flags = list(r["flags"]) if isinstance(r["flags"], (list, tuple)) else \
                [f for f in str(r["flags"] or "").split("; ") if f]
            other = r.get("label_if_reassigned_counted", "")
            if other and other != label:
                flags.append(f"{other} if reassigned outliers counted")
            row += f" {_md('; '.join(flags))} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class CrossAnalysis:
    """The run's tables once every segment has its theme and every theme its domain."""

    segments: pd.DataFrame        # ASSIGNED_SEGMENT_COLUMNS
    themes: pd.DataFrame          # THEME_COLUMNS
    domains: pd.DataFrame         # DOMAIN_COLUMNS
    table: pd.DataFrame           # CQR_COLUMNS
    n_cases: int                  # cases analysed: the denominator of every frequency label
    #: what only the CQR analysis makes (pipeline/analysis.py); None in a themes run
    categories: pd.DataFrame | None = None      # every category and subcategory
    core_ideas: pd.DataFrame | None = None      # one per case and domain
    protocol: str | None = None                 # protocol.yaml, for the team to edit
    prompts: pd.DataFrame | None = None         # every prompt, with its kind and area
    merges: pd.DataFrame | None = None          # areas proposed for merging
    counts: dict | None = None                  # the protocol's and cross-analysis' counts
    llm_log: str | None = None                  # every language-model call (llm_log.jsonl)
    llm_stats: dict | None = None               # LLMStats.as_dict(): the manifest's "llm"


def cross_analysis(segments: pd.DataFrame, clustering, themes: pd.DataFrame, domains,
                   coords, config: CQRConfig = CQRConfig()) -> CrossAnalysis:
    """The cross-analysis: each segment's theme, domain and map position; each theme's
    and domain's frequency label over the cases analysed; the domains' counts; and
    the CQR table.

    ``segments`` (SEGMENT_COLUMNS), ``clustering`` (a :class:`~pipeline.types.Clustering`
    of those segments), ``themes`` (the label stage's table), ``domains`` (the domain
    stage's assignment: ``theme_domain``, ``domains``) and ``coords`` (the 2-D map,
    a row a segment) come from the stages; nothing here changes a theme.
    """
    n_total = int(segments["case_id"].nunique())
    seg = segments.copy()
    seg["theme"] = clustering.theme
    seg["strength"] = clustering.strength
    seg["reassigned"] = clustering.reassigned
    theme_names = dict(zip(themes["theme_id"], themes["name"]))
    domain_of_theme = dict(enumerate(domains.theme_domain.tolist()))
    dom_names = dict(zip(domains.domains["domain_id"], domains.domains["name"]))
    seg["theme_name"] = [theme_names.get(t, "") for t in seg["theme"]]
    seg["domain_id"] = [domain_of_theme.get(t, -1) for t in seg["theme"]]
    seg["domain_name"] = [dom_names.get(d, "") for d in seg["domain_id"]]
    seg["map_x"] = coords[:, 0].astype(float)
    seg["map_y"] = coords[:, 1].astype(float) if coords.shape[1] > 1 else 0.0
    seg = seg[list(ASSIGNED_SEGMENT_COLUMNS)]

    themes = themes.copy()
    themes["domain_id"] = [domain_of_theme[t] for t in themes["theme_id"]]
    themes["frequency_label"] = [frequency_label(n, n_total, config) for n in themes["n_cases"]]
    themes = themes[list(THEME_COLUMNS)]
    doms = domains.domains.copy()
    assigned = seg[seg["domain_id"] >= 0]
    doms["n_segments"] = [int((assigned["domain_id"] == d).sum()) for d in doms["domain_id"]]
    doms["n_cases"] = [assigned.loc[assigned["domain_id"] == d, "case_id"].nunique()
                       for d in doms["domain_id"]]
    doms["frequency_label"] = [frequency_label(n, n_total, config) for n in doms["n_cases"]]
    doms = doms.reindex(columns=list(DOMAIN_COLUMNS))
    return CrossAnalysis(segments=seg, themes=themes, domains=doms,
                         table=cqr_table(themes, doms, seg, n_total), n_cases=n_total)
