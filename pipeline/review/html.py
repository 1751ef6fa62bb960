"""The read-only review packet: the workbook's content as one self-contained HTML file.

Everything is escaped (jinja2 autoescape); no scripts, fonts or images are loaded. The
template lives with the other pages' templates (pipeline/report/templates/).
"""

from __future__ import annotations

from ..report.templating import page_environment
from .evidence import (
    attribute_text,
    counted_cases,
    evidence_text,
    subgroups,
    theme_evidence,
)
from .model import Decision, RunItems, core_idea_item, domain_item, say, segment_item, theme_item

#: pipeline/report/templates/, rendered by the environment every page shares
TEMPLATE = "packet.html.j2"


def render_packet(run: RunItems, round: int, judges: list[str], auditors: list[str],
                  standing: dict[str, Decision] | None = None) -> str:
    """The packet of ``round``. From round 2 on, ``standing`` is the round before's
    consensus by item: the packet shows it beside each proposal, since that, and not
    Consensa's proposal, is what the judges' workbooks start from."""
    standing = standing or {}

    def agreed(item: str) -> str:
        return say(run, standing.get(item), standing, full=True)   # by the names agreed

    text = dict(zip(run.segments["segment_id"], run.segments["text"]))
    case = dict(zip(run.segments["segment_id"], run.segments["case_id"]))
    themes = []
    for t in run.themes.to_dict("records"):
        themes.append({**t, "quotes": [{"id": q, "text": text.get(q, ""), "case": case.get(q, "")}
                                       for q in t["quote_ids"][:5]],
                       # a CQR run's flags and honest label, the subgroups where the run
                       # has case attributes; nothing for a themes run without them
                       "evidence": evidence_text(theme_evidence(run, t["theme_id"])),
                       # the cases its label counts, where that is not every case it has
                       "n_counted": theme_evidence(run, t["theme_id"])["n_counted"],
                       "subgroups": subgroups(run, counted_cases(run, t["theme_id"], t["cases"])),
                       "agreed": agreed(theme_item(t["theme_id"])),
                       # the subcategories proposed in it, which the judges keep or drop:
                       # the packet is the panel's whole proposal, two levels
                       "subcategories": [
                           {**sub, "agreed": agreed(f"subcategory:{sub['id']}"),
                            "quotes": [{"id": q, "text": text.get(q, ""), "case": case.get(q, "")}
                                       for q in (sub["quote_ids"] or sub["segment_ids"])[:3]]}
                           for sub in run.subcategories
                           if int(sub["parent_theme"]) == int(t["theme_id"])]})
    core_ideas = [{"domain": run.domain_name(c["domain_id"]), "case": c["case_id"],
                   "attributes": attribute_text(run.attributes(c["case_id"])),
                   "core_idea": c["core_idea"], "segment_ids": list(c["segment_ids"]),
                   "agreed": agreed(core_idea_item(c["case_id"], c["domain_id"]))}
                  for c in run.core_ideas.to_dict("records")] if len(run.core_ideas) else []
    unassigned = [{**s, "agreed": agreed(segment_item(s["segment_id"]))}
                  for s in run.segments[run.segments["theme"] < 0].to_dict("records")]
    domains = [{**d, "agreed": agreed(domain_item(d["domain_id"]))}
               for d in run.domains.to_dict("records")]
    return page_environment().get_template(TEMPLATE).render(
        run=run, round=round, judges=judges, auditors=auditors, domains=domains,
        themes=themes, unassigned=unassigned, core_ideas=core_ideas,
        before=round - 1 if standing else 0)
