"""How an item of a review round gets its consensus, from what the store holds.

One rule, used by the status the judges read (:func:`pipeline.review.agreement.review_status`)
and by the store when it checks a consensus decision before recording it
(:meth:`pipeline.review.store.ReviewStore.standing`). A consensus decision must be checked
against everything that stands, not only the decisions recorded one by one: a theme the
judges all rejected in their workbooks is as rejected as one a panel resolved, and a merge
into it would otherwise leave its segments in no category without anyone saying so.

An item's consensus, first rule that applies:

1. *resolved*: a decision recorded for it (``consensa review resolve``, a consensus
   workbook, the web app);
2. *resolved*: a domain made by a domain split, whose consensus is the split's;
3. *agreed*: every judge took the same position on it, with at most one core idea
   note between them (two different notes are two positions);
4. *disputed*: the judges' positions differ;
5. *carried*: each judge who took a position kept the round before's consensus.

Otherwise it is *open*.

After that, one rule looks at the consensus as a whole (:func:`blocked_merges`): a case's
core idea merged into its core idea in another domain stands only while the two domains
are merged. Every judge may agree to such a merge while the domains' own consensus is
still open, or a domain merge may be taken back after it; the core idea merge is then
*blocked*: it has no consensus, and the round is not closed until the domains are merged
or the core idea is decided again. (A consensus recorded one by one is refused in that
case; agreed and carried positions are not recorded, so they are checked here.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from .model import SPLIT_SOURCE, Decision, merges_across_domains


def agreed(positions: dict[str, Decision]) -> Decision:
    """The common decision, keeping any core idea note. It carries no comment: what a
    judge wrote with their position is theirs, not the panel's, and stays with the
    position (the codebook and the exports list it as the judge's: the store's
    :meth:`~pipeline.review.store.ReviewStore.decision_comments`)."""
    first = next(iter(positions.values()))
    core = next((d.core_idea for d in positions.values() if d.core_idea), "")
    return replace(first, core_idea=core, comment="", source="all judges agreed")


def same_as(d: Decision, base: Decision) -> bool:
    """Whether position ``d`` keeps ``base`` (the same decision, and no other core idea)."""
    return d.key() == base.key() and (not d.core_idea or d.core_idea == base.core_idea)


def _notes(positions: dict[str, Decision]) -> set[str]:
    """The distinct core idea notes of a theme's or domain's positions (a case's core
    idea is its decision's own text, compared by :meth:`Decision.key`)."""
    return {" ".join(d.core_idea.split()).casefold() for d in positions.values()
            if d.kind != "core_idea" and d.core_idea.strip()}


def made_by_splits(explicit: dict[str, Decision], by: dict[str, str],
                   theme_domain: Mapping[str, str] | None = None
                   ) -> dict[str, tuple[Decision, str]]:
    """The domains a domain split made, and the categories a theme split made (its
    ``target``, given when the consensus was recorded): item -> (its "create"
    consensus, who recorded it). ``theme_domain``: a proposed theme's domain id, where
    the category split off from it begins."""
    out = {f"domain:{d.target}": (Decision(f"domain:{d.target}", "create",
                                           new_name=d.new_name, core_idea=d.core_idea,
                                           source=f"split from domain {d.ident}"),
                                  by.get(d.item, ""))
           for d in explicit.values() if d.kind == "domain" and d.decision == "split"}
    for d in explicit.values():
        if d.kind == "theme" and d.decision == "split" and d.target.isdigit():
            out[f"theme:{d.target}"] = (split_category(d, (theme_domain or {}).get(d.ident, "")),
                                        by.get(d.item, ""))
    return out


def theme_domains(run) -> dict[str, str]:
    """Theme id -> its domain id, as strings, for :func:`made_by_splits`."""
    themes = run.themes
    return {str(int(t)): str(int(d)) for t, d in zip(themes["theme_id"], themes["domain_id"])}


def split_category(d: Decision, domain: str) -> Decision:
    """The "create" of the category a theme split ``d`` made, in ``domain``."""
    return Decision(f"theme:{d.target}", "create",
                    new_name=d.new_name or f"split from theme {d.ident}",
                    segments=tuple(d.segments), domain=str(domain),
                    source=f"{SPLIT_SOURCE} {d.ident}")


def touched_items(*tables) -> list[str]:
    """Segments, core ideas and proposed subcategories are items once someone decided
    or commented on them: one nobody touched stays as proposed (a subcategory: not
    reviewed) and needs no consensus."""
    return sorted({i for t in tables for i in t
                   if i.startswith(("segment:", "core_idea:", "subcategory:"))})


def settle(item: str, positions: dict[str, Decision], judges: list[str],
           explicit: dict[str, Decision], by: dict[str, str],
           made: dict[str, tuple[Decision, str]], base: Decision | None,
           round: int) -> tuple[str, Decision | None, str]:
    """``(state, consensus or None, who)`` of one item (the rules in the module's words).
    ``positions``: the judges' positions on it; ``base``: the round before's consensus."""
    keys = {d.key() for d in positions.values()}
    if item in explicit:
        return "resolved", explicit[item], by.get(item, "")
    if item in made:
        return "resolved", *made[item]
    if len(keys) > 1 or len(_notes(positions)) > 1:
        return "disputed", None, ""
    if judges and len(positions) == len(judges) and keys:
        return "agreed", agreed(positions), "all judges"
    if base is not None and all(same_as(d, base) for d in positions.values()):
        return "carried", base, f"round {round - 1}"
    return "open", None, ""


def blocked_merges(consensus: dict[str, Decision]) -> dict[str, str]:
    """The core idea merges in ``consensus`` (item -> Decision, all that stands) whose two
    domains are not merged in it: item -> why, in the judges' words."""
    out = {}
    for item, d in consensus.items():
        if merges_across_domains(d, consensus):
            case, _, dom = d.ident.rpartition(":")
            out[item] = (f"merged into the core idea of case {case!r} in domain {d.target}, but "
                         f"domains {dom} and {d.target} are not merged; merge the domains, or "
                         "keep a core idea in each")
    return out
