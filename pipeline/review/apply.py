"""``consensa review apply``: the consensus applied to the run, as the final codebook.

Order: domain merges and renames; then per theme its consensus (reject, merge into
another theme following chains, split, rename, reassign to a domain, core idea
note); then segment moves. Counts and frequency labels are computed again from
the segments each final category holds (:mod:`pipeline.stages.cqr`).

Domain splits move their ticked themes to the new domain; each case's core idea
per domain is the judges' where they wrote one. For a CQR run a category's label
counts its counted cases again (a segment the judges placed counts) and its flags
are computed again (:mod:`.evidence`).

Writes into ``RUN/review/`` only (the run's own outputs stay as they are):
``codebook.yaml``, ``codebook.md``, ``cqr_table.md``, ``cqr_table.csv``,
``cqr_subgroups.csv`` (with case attributes: each category's label within each
group of an attribute) and ``assignments.csv`` (segment -> final category: the
training labels for ``consensa precode``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from .. import safeyaml
from ..fsutil import atomic_write_text
from ..sheets import markdown_cell, markdown_text, to_csv
from ..stages.cqr import frequency_label
from ..types import CQR_COLUMNS, frame_domain_ids
from .agreement import ReviewStatus, audit_words
from .evidence import UNSTABLE, is_cqr, recount, subgroups, theme_evidence
from .model import (
    SPLIT_SOURCE,
    Decision,
    ReviewError,
    RunItems,
    core_idea_item,
    domain_item,
    merge_cycles,
    theme_item,
)

N_QUOTES = 3   # at least this many example quotes per category (where it has them)
MAX_QUOTES = 5


@dataclass
class Codebook:
    data: dict                 # what codebook.yaml holds
    assignments: pd.DataFrame  # segment_id, case_id, category_id, category, domain_id, domain
    table: pd.DataFrame        # CQR_COLUMNS + core_idea, core_idea_source, level, flags,
    #                            label_if_reassigned_counted (see :func:`review_table`)
    #: per category, its frequency label within each group of a case attribute
    subgroups: pd.DataFrame = field(default_factory=pd.DataFrame)


def _follow(start: str, cons: dict[str, Decision], kind: str) -> str:
    """The id a theme/domain ends up in after following merges."""
    seen, cur = set(), start
    while True:
        d = cons.get(f"{kind}:{cur}")
        if d is None or d.decision != "merge":
            return cur
        if cur in seen:  # pragma: no cover - cycles are refused earlier
            raise ReviewError(f"merge cycle through {kind} {cur}")
        seen.add(cur)
        cur = d.target


def build_codebook(run: RunItems, status: ReviewStatus, draft: bool = False) -> Codebook:
    """The codebook the consensus makes of the run.

    ``draft``: the codebook as it stands while items are still open (the live codebook
    of the web app, ``review status`` and ``review apply --preview``): an item without
    a consensus stays as proposed (from round 2 on, as the round before left it), and
    the codebook says it is a draft and which items are open. Without it, an open
    round is refused.
    """
    if not status.closed and not draft:
        pending = "; ".join(f"{i.label} ({i.state})" for i in status.pending()[:10])
        raise ReviewError(f"round {status.round} is still open: {len(status.pending())} item(s) "
                          f"have no consensus decision: {pending}",
                          hint="resolve them with `consensa review resolve`, then apply again")
    cons = status.effective_consensus()
    cycles = merge_cycles(list(cons.values()))
    if cycles:
        c = cycles[0]
        raise ReviewError(f"the consensus merges in a cycle: {c[0].kind}s "
                          + " -> ".join([c[0].ident] + [d.target for d in c]),
                          hint="resolve one of these items again")
    themes = run.themes.set_index("theme_id")
    domains = run.domains.set_index("domain_id")

    # --- domains --------------------------------------------------------------
    dom_final = {int(d): int(_follow(str(d), cons, "domain")) for d in domains.index}
    dom_name, dom_changes, dom_def = {}, {int(d): [] for d in domains.index}, {}
    # a domain split moves its ticked themes to the new domain (theme id -> domain id)
    split_to: dict[int, tuple[int, int]] = {}  # theme -> (the split domain, the new one)
    for d in domains.index:
        dec = cons.get(domain_item(d))
        if dec and dec.decision == "split" and int(dec.target) in dom_changes:
            for t in dec.segments:
                split_to[int(t)] = (int(d), int(dec.target))
            dom_changes[int(d)].append(f"split: theme(s) {', '.join(dec.segments)} moved to "
                                       f'new domain {dec.target} "{dec.new_name}"')
    for d in domains.index:
        dec = cons.get(domain_item(d))
        name = domains.at[d, "name"]
        if dec and dec.decision == "create":
            dom_changes[int(d)].append("created by the judges" if not dec.source.startswith(
                "split from") else f"made by the judges: {dec.source}")
        elif dec and dec.decision == "split":
            pass  # its new name and definition are the new domain's
        elif dec and dec.new_name and dec.decision != "merge":
            dom_changes[int(d)].append(f'renamed (proposed: "{name}")')
            name = dec.new_name
        if dec and dec.core_idea and dec.decision not in ("merge", "split"):
            dom_changes[int(d)].append("defined by the judges")
            dom_def[int(d)] = dec.core_idea
        dom_name[int(d)] = name
    for d, final in dom_final.items():
        if final != d:
            dom_changes[final].append(f'domain {d} "{domains.at[d, "name"]}" merged in')

    # --- themes ---------------------------------------------------------------
    def final_theme(t: int) -> int:
        end = int(_follow(str(t), cons, "theme"))
        dec = cons.get(theme_item(end))
        return -1 if dec is not None and dec.decision == "reject" else end

    cat: dict[int, dict] = {}
    split_of: dict[str, int] = {}  # segment_id -> new category id
    split_from: dict[int, int] = {}  # new category id -> the theme it was split from
    splits: dict[int, tuple[int, int, int]] = {}  # new id -> (theme, segments, its change)
    proposed_segments = {int(t): set(ids.astype(str)) for t, ids in
                         run.segments.groupby("theme")["segment_id"]}
    for t in sorted(int(x) for x in themes.index):
        row = themes.loc[t]
        dec = cons.get(theme_item(t)) or Decision(theme_item(t), "accept")
        if dec.decision in ("merge", "reject"):
            continue
        dom = int(dec.domain) if dec.domain else int(row["domain_id"])
        changes = []
        if t in split_to and split_to[t][0] == dom:  # in the split domain: it goes
            changes.append(f"moved to domain {split_to[t][1]} by a split of domain {dom}")
            dom = split_to[t][1]
        if dec.decision == "create":
            changes.append(f"created by the judges from {len(dec.segments)} segment(s)")
        parent = final_theme(int(dec.target)) if dec.decision == "subcategory" else -1
        if dec.decision == "subcategory":
            if parent < 0 or parent == t:
                changes.append(f"meant as a subcategory of theme {dec.target}, which is no "
                               "category in the end: kept as a category of its own")
                parent = -1
            else:
                changes.append(f"subcategory of category {parent}")
        name = row["name"]
        if dec.new_name and dec.decision == "create":
            name = dec.new_name
        elif dec.new_name and dec.decision != "split":
            changes.append(f'renamed (proposed: "{name}")')
            name = dec.new_name
        if dec.domain and int(dec.domain) != int(row["domain_id"]):
            changes.append(f"moved to domain {dec.domain} (proposed: domain {int(row['domain_id'])})")
        cat[t] = {"name": name, "proposed_name": row["name"], "domain_id": dom,
                  "from_themes": [t], "core_idea": dec.core_idea or row["core_idea"],
                  "core_idea_source": "judges" if dec.core_idea else "proposed",
                  "keywords": list(row["keywords"]), "quote_ids": list(row["quote_ids"]),
                  "changes": changes, "proposed_label": row["frequency_label"],
                  # the cases the proposed label counted (a CQR run's counted cases)
                  "proposed_cases": _label_cases(row), "parent": parent,
                  # the segments its keywords were computed from
                  "proposed_segments": proposed_segments.get(t, set())}
        if dec.decision == "split":
            made = dec.target.isdigit() and int(dec.target) in themes.index
            if made:                 # its id given when recorded: an item of the review
                nid = int(dec.target)
            else:                    # the judges agreed on it without a recorded consensus:
                # the id recording it would give, the theme's own (never a running count)
                nid = run.split_category_id(t)
                # recorded in a round before (the same split): that category, not another
                earlier = run.created_themes.get(str(nid))
                made = earlier is not None and earlier.source == f"{SPLIT_SOURCE} {t}"
                if not made:
                    _not_taken(run, nid, f"the category split off theme {t}")
            for s in dec.segments:
                split_of[s] = nid
            cat[t]["changes"].append(f"{len(dec.segments)} segment(s) split off into category {nid}")
            splits[nid] = (t, len(dec.segments), len(cat[t]["changes"]) - 1)
            split_from[nid] = t
            if not made:
                # its "split off from theme" change is given below, as to every
                # category a split made (given here too, it was listed twice)
                cat[nid] = {"name": dec.new_name or f"{row['name']} (split)", "proposed_name": "",
                            "domain_id": dom, "from_themes": [t], "core_idea": "",
                            "core_idea_source": "proposed", "keywords": [], "quote_ids": [],
                            "changes": [], "proposed_label": "", "proposed_cases": 0,
                            "parent": -1, "proposed_segments": set()}
    for nid, t in split_from.items():
        # a category a split made reads as split off from the theme (a recorded split's
        # is its own "create" item), and goes where the theme went unless the judges
        # placed it
        if nid not in cat:
            continue
        made = cons.get(theme_item(nid))
        placed = made is not None and made.decision in ("reassign", "create") and \
            not made.source.startswith(SPLIT_SOURCE)
        if not placed and t in cat:
            cat[nid]["domain_id"] = cat[t]["domain_id"]
        cat[nid]["proposed_name"] = ""
        cat[nid]["changes"] = [f'split off from theme {t} "{themes.at[t, "name"]}"'] + [
            c for c in cat[nid]["changes"] if not c.startswith("created by the judges")]
    for t in sorted(int(x) for x in themes.index):
        dec = cons.get(theme_item(t))
        if dec and dec.decision == "merge":
            end = final_theme(t)
            if end >= 0:
                cat[end]["from_themes"].append(t)
                cat[end]["quote_ids"] += list(themes.at[t, "quote_ids"])
                cat[end]["changes"].append(f'theme {t} "{themes.at[t, "name"]}" merged in')

    # --- segments -------------------------------------------------------------
    seg = run.segments[["segment_id", "case_id", "text", "theme", "strength"]].copy()
    final = []
    moved_in: dict[int, int] = {}
    moved_out: dict[int, int] = {}
    created_of = {s: int(d.ident) for d in cons.values() if d.kind == "theme"
                  and d.decision == "create" for s in d.segments}
    # the segments the judges placed (split off, in a category they made, moved): they
    # count toward their category's frequency like the ones the clusterer placed
    placed = set(split_of) | set(created_of)
    for s in seg.itertuples():
        t = int(s.theme)
        now = split_of.get(s.segment_id, final_theme(t) if t >= 0 else -1)
        if s.segment_id in created_of:
            before, now = now, final_theme(created_of[s.segment_id])
            if before >= 0 and before != now:
                moved_out[before] = moved_out.get(before, 0) + 1
        dec = cons.get(f"segment:{s.segment_id}")
        if dec is not None and dec.decision == "move":
            before = now
            now = -1 if dec.target == "none" else final_theme(int(dec.target))
            if now != before:
                placed.add(s.segment_id)
                if now >= 0:
                    moved_in[now] = moved_in.get(now, 0) + 1
                if before >= 0:
                    moved_out[before] = moved_out.get(before, 0) + 1
        final.append(now)
    seg["category_id"] = final
    # a split whose segments the judges placed elsewhere too (moved, or into a category
    # they created) makes a smaller category, or none: the change says what it made
    made = seg["category_id"].value_counts()
    for nid, (t, asked, at) in splits.items():
        got = int(made.get(nid, 0))
        if got == 0:
            cat[t]["changes"][at] = (f"a split of {asked} segment(s) made no category: the "
                                     "judges placed every one of them elsewhere")
        elif got < asked:
            cat[t]["changes"][at] = (f"{got} of {asked} segment(s) split off into category {nid} "
                                     "(the judges placed the others elsewhere)")
    for c, n in moved_in.items():
        cat[c]["changes"].append(f"{n} segment(s) moved in")
    for c, n in moved_out.items():
        cat[c]["changes"].append(f"{n} segment(s) moved out")

    # the subcategories the run proposed that the judges kept: each a category under
    # the category its parent theme became, holding its segments still there
    not_reviewed, dropped = _kept_subcategories(run, cons, cat, seg, final_theme)

    # a subcategory sits in its parent's domain; a parent that is itself a subcategory
    # (through merges) makes its child a subcategory of the grandparent: one level only
    for c in cat.values():
        p = c["parent"]
        while p >= 0 and p in cat and cat[p]["parent"] >= 0:
            p = cat[p]["parent"]
        c["parent"] = p if p in cat else -1
        if c["parent"] >= 0:
            c["domain_id"] = cat[c["parent"]]["domain_id"]
    total = run.n_cases
    # a category counts the segments of its subcategories too, as CQR nests them: a
    # subcategory's case is a case of its category (the proposal's categories hold
    # their subcategories' segments so)
    children: dict[int, list[int]] = {}
    for cid, c in cat.items():
        if c["parent"] >= 0:
            children.setdefault(c["parent"], []).append(cid)
    _recompute_stale_keywords(run, cat, seg, children)
    rows = []
    for cid, c in cat.items():
        members = seg[seg["category_id"].isin([cid, *children.get(cid, [])])]
        if members.empty:
            continue
        members_ids = set(members["segment_id"])
        quotes = [q for q in dict.fromkeys(c["quote_ids"]) if q in members_ids]
        for q in members.sort_values("strength", ascending=False)["segment_id"]:
            if len(quotes) >= N_QUOTES:
                break
            if q not in quotes:
                quotes.append(q)
        quotes = quotes[:MAX_QUOTES]
        cases = sorted(members["case_id"].unique())
        own = cid in themes.index and c["from_themes"][0] == cid
        counts = recount(run, run.segments[run.segments["segment_id"].isin(members_ids)],
                         placed, unstable=own and UNSTABLE in theme_evidence(run, cid)["flags"])
        label = counts["frequency_label"]
        core = c["core_idea"] or str(members.set_index("segment_id").at[quotes[0], "text"])
        if c["proposed_label"] and label != c["proposed_label"]:
            # the cases each label counts, so that the two numbers explain the change
            c["changes"].append(f"frequency {c['proposed_label']} -> {label} "
                                f"({c['proposed_cases']} -> "
                                f"{len(counts['counted_cases'])} cases)")
        if c["core_idea_source"] == "judges":
            c["changes"].append("core idea written by the judges")
        rows.append({"theme_id": cid, "name": c["name"], "domain_id": dom_final[c["domain_id"]],
                     "n_segments": len(members), "n_cases": len(cases), "cases": cases,
                     "frequency_label": label, "quote_ids": quotes, "core_idea": core,
                     "core_idea_source": c["core_idea_source"], "keywords": c["keywords"],
                     "proposed_name": c["proposed_name"], "from_themes": c["from_themes"],
                     "changes": c["changes"], "parent": c["parent"],
                     "n_counted_cases": len(counts["counted_cases"]),
                     "counted_cases": list(counts["counted_cases"]), "flags": counts["flags"],
                     "label_if_reassigned_counted": counts["label_if_reassigned_counted"],
                     "proposed_subcategory": c.get("proposed_subcategory", -1)})
    cats = pd.DataFrame(rows, columns=["theme_id", "name", "domain_id", "n_segments", "n_cases",
                                       "cases", "frequency_label", "quote_ids", "core_idea",
                                       "core_idea_source", "keywords", "proposed_name",
                                       "from_themes", "changes", "parent", "n_counted_cases",
                                       "counted_cases", "flags",
                                       "label_if_reassigned_counted", "proposed_subcategory"])
    # domains of the final codebook: those holding at least one category, and those the
    # judges kept that hold none but core ideas (every category rejected, say): dropped,
    # a domain every judge accepted left the codebook with its core ideas, unsaid
    bare = _kept_without_category(run, cons, dom_final, cats, final_theme, dom_name)
    dom_rows = []
    for d in sorted(set(cats["domain_id"]) | set(bare)):
        in_dom = seg[seg["category_id"].isin(cats.loc[cats["domain_id"] == d, "theme_id"])]
        n = in_dom["case_id"].nunique()
        dom_rows.append({"domain_id": d, "name": dom_name[d], "n_cases": n,
                         "frequency_label": frequency_label(n, total, run.cqr),
                         "proposed_name": domains.at[d, "name"], "changes": dom_changes[d]})
    doms = pd.DataFrame(dom_rows, columns=["domain_id", "name", "n_cases", "frequency_label",
                                           "proposed_name", "changes"])
    table = review_table(cats, doms, run.segments, total, flags=is_cqr(run))

    name_of = dict(zip(cats["theme_id"], cats["name"]))
    dom_of = dict(zip(cats["theme_id"], cats["domain_id"]))
    seg["category"] = [name_of.get(c, "") for c in seg["category_id"]]
    seg["domain_id"] = [dom_of.get(c, -1) for c in seg["category_id"]]
    seg["domain"] = [dom_name.get(d, "") for d in seg["domain_id"]]
    # a segment coded to a subcategory says the category it is under: read alone (a
    # spreadsheet, a training script), the subcategory's id does not
    parent_of = {int(t): int(p) for t, p in zip(cats["theme_id"], cats["parent"])}
    seg["parent_category_id"] = [parent_of.get(int(c), -1) for c in seg["category_id"]]
    seg["parent_category"] = [name_of.get(p, "") for p in seg["parent_category_id"]]
    assignments = seg[["segment_id", "case_id", "category_id", "category", "parent_category_id",
                       "parent_category", "domain_id", "domain"]]

    text = dict(zip(run.segments["segment_id"], run.segments["text"]))
    case = dict(zip(run.segments["segment_id"], run.segments["case_id"]))
    # where each segment ends up: its category's domain, or for one in no category the
    # domain its proposed domain became (a core idea quotes only what is in its domain)
    proposed_dom = dict(zip(run.segments["segment_id"].astype(str),
                            run.segments["domain_id"].astype(int)
                            if "domain_id" in run.segments.columns else [-1] * len(run.segments)))
    seg_final_domain = {str(sid): (int(dm) if int(dm) >= 0 else
                                   dom_final.get(proposed_dom.get(str(sid), -1), -1))
                        for sid, dm in zip(seg["segment_id"], seg["domain_id"])}
    data = {
        "consensa_codebook": 1,
        **({"draft": True, "open_items": [f"{i.label} ({i.state})" for i in status.pending()]}
           if draft and not status.closed else {}),
        "run": {"name": run.name, "id": run.run_id, "folder": str(run.folder.resolve())},
        "review": {"round": status.round, "judges": status.judges, "auditors": status.auditors,
                   "audited_by": status.audited,
                   # decided after the latest audit comment: no auditor saw these
                   "not_audited": [{"round": d["round"], "item": d["label"],
                                    "item_id": d["item"], "decision": d["decision"],
                                    "at": d["at"]} for d in status.not_audited],
                   "unanswered_audit_comments": status.unanswered(),
                   # the auditors' comments and the judges' answers, every round: what
                   # the audit asked and how the panel answered is part of the record
                   "audit": [{"round": c["round"], "item": c["label"], "item_id": c["item"],
                              "comment_id": int(c["id"]),
                              "by": c["by"], "comment": c["comment"], "at": c["at"],
                              "answers": [{"judge": j, "answer": a["answer"], "text": a["text"],
                                           "at": a["at"]}
                                          for j, a in c["answers"].items()]}
                             for c in status.audit_trail],
                   # the comments written with the decisions, every round ("why we
                   # merged these"): the panel's with its consensus, a judge's with
                   # their own position, each said to be whose; an export of this
                   # file carries them as the review's does
                   "comments": [{"round": c["round"], "item_id": c["item"],
                                 "item": c["label"], "by": c["by"],
                                 "written_with": "consensus" if c["consensus"] else "position",
                                 **({} if c["consensus"] else {"position": c["position"]}),
                                 "comment": c["comment"], "at": c["at"]}
                                for c in status.comment_trail],
                   "applied_at": datetime.now(UTC).isoformat(timespec="seconds")},
        "training": {"run_folder": str(run.folder.resolve()), "assignments": "assignments.csv"},
        "cases_total": total,
        "domains": [],
        "rejected_themes": [],
        "unassigned_segments": int((seg["category_id"] < 0).sum()),
        # the proposal's subcategories nobody kept or dropped are not in the codebook,
        # and it says so (SUBCATEGORIES_NOT_REVIEWED); those the judges dropped, or kept
        # under a category that is none in the end, are named with why
        "subcategories_not_reviewed": not_reviewed,
        **({"subcategories_dropped": dropped} if dropped else {}),
    }
    adopted, unplaced = _written_without_domain(run, cons, dom_final, doms, seg_final_domain)
    if unplaced:
        data["core_ideas_without_domain"] = unplaced
    for d in doms.itertuples():
        entry = {"id": int(d.domain_id), "name": d.name, "frequency_label": d.frequency_label,
                 "n_cases": int(d.n_cases), "changed": bool(d.changes),
                 "changes": list(d.changes), "categories": []}
        if int(d.domain_id) in dom_def:
            entry["definition"] = dom_def[int(d.domain_id)]
        if int(d.domain_id) in bare:
            entry["no_category"] = bare[int(d.domain_id)]
        if str(d.domain_id) in run.created_domains:
            entry["created"] = True
        elif d.name != d.proposed_name:
            entry["proposed_name"] = d.proposed_name
        mine = cats[cats["domain_id"] == d.domain_id].sort_values(
            ["n_cases", "n_segments", "theme_id"], ascending=[False, False, True])
        ordered = []  # each category followed by its subcategories
        for c in mine[mine["parent"] < 0].itertuples():
            ordered.append(c)
            ordered += list(mine[mine["parent"] == c.theme_id].itertuples())
        ordered += [c for c in mine.itertuples() if c not in ordered]  # parent empty
        cat_name = dict(zip(cats["theme_id"], cats["name"]))
        for c in ordered:
            entry["categories"].append({
                **({"parent": int(c.parent), "parent_name": cat_name.get(c.parent, "")}
                   if c.parent >= 0 else {}),
                "id": int(c.theme_id), "name": c.name,
                **({"proposed_name": c.proposed_name} if c.proposed_name and
                   c.proposed_name != c.name else {}),
                "core_idea": c.core_idea, "core_idea_source": c.core_idea_source,
                "keywords": list(c.keywords),
                "frequency_label": c.frequency_label, "n_cases": int(c.n_cases),
                "n_segments": int(c.n_segments), "cases": list(c.cases),
                # the cases themselves, not only their number: an export's case x
                # category matrix marks what the label counts (exchange/tables.py)
                **({"n_counted_cases": int(c.n_counted_cases),
                    "counted_cases": [str(x) for x in c.counted_cases], "flags": list(c.flags),
                    "label_if_reassigned_counted": c.label_if_reassigned_counted}
                   if is_cqr(run) else {}),
                "from_themes": [int(x) for x in c.from_themes],
                **({"proposed_subcategory": int(c.proposed_subcategory)}
                   if int(c.proposed_subcategory) >= 0 else {}),
                "changed": bool(c.changes), "changes": list(c.changes),
                "example_quotes": [{"segment_id": q, "case": case.get(q, ""), "text": text.get(q, "")}
                                   for q in c.quote_ids]})
        ideas = agreed_core_ideas(run, cons, [k for k, v in dom_final.items()
                                              if v == int(d.domain_id)],
                                  names={int(k): str(v) for k, v in domains["name"].items()},
                                  where=(int(d.domain_id), seg_final_domain), texts=text,
                                  adopted=adopted.get(int(d.domain_id), set()))
        if ideas:
            entry["core_ideas"] = ideas
        elif int(d.domain_id) in bare:
            # nothing of it is left here: its core ideas went with its segments, each
            # marked "moved here" in the domain they went to
            continue
        data["domains"].append(entry)
    for t in sorted(int(x) for x in themes.index):
        dec = cons.get(theme_item(t))
        if dec is not None and (dec.decision == "reject" or
                                (dec.decision == "merge" and final_theme(t) < 0)):
            data["rejected_themes"].append({"id": t, "name": themes.at[t, "name"],
                                            "n_segments": int(themes.at[t, "n_segments"]),
                                            "comment": _reasons(status, theme_item(t), dec)})
    sub = [{"domain": dom_name.get(c.domain_id, ""), "category_id": int(c.theme_id),
            "category": c.name, **g} for c in cats.itertuples()
           for g in subgroups(run, list(c.counted_cases))]
    return Codebook(data, assignments.reset_index(drop=True), table,
                    pd.DataFrame(sub, columns=SUBGROUP_COLUMNS))


def _kept_without_category(run: RunItems, cons: dict[str, Decision], dom_final: Mapping,
                           cats: pd.DataFrame, final_theme, dom_name: Mapping) -> dict[int, str]:
    """The domains the consensus keeps (accepted or renamed, or open in a draft) that
    hold no category in the end, each with why, theme by theme: a CQR domain is an
    area of the interview, and its core ideas say what each case said there whatever
    became of its categories. Not a domain merged, split or created (those go where
    the judges put them), nor the interview frame (set apart, never a domain of the
    cross-analysis)."""
    held = {int(x) for x in cats["domain_id"]}
    frame = frame_domain_ids(run.domains)
    name_of = dict(zip(cats["theme_id"].astype(int), cats["name"]))
    dom_of = dict(zip(cats["theme_id"].astype(int), cats["domain_id"].astype(int)))
    out = {}
    for d, final in dom_final.items():
        dec = cons.get(domain_item(d))
        if final != d or d in held or d in frame or str(d) in run.created_domains or (
                dec is not None and dec.decision not in ("accept", "rename")):
            continue
        ids = {k for k, v in dom_final.items() if v == d}
        mine = run.themes[run.themes["domain_id"].astype(int).isin(ids)]
        why = []
        for t, name in zip(mine["theme_id"].astype(int), mine["name"]):
            end = final_theme(t)
            said = f'theme {t} "{name}"'
            if end < 0:
                why.append(f"{said} was rejected")
            elif end in dom_of:
                into = f' (into category {end} "{name_of[end]}")' if end != t else ""
                why.append(f'{said} went to domain {dom_of[end]} '
                           f'"{dom_name.get(dom_of[end], "")}"{into}')
            else:
                why.append(f"{said} has no segment left here")
        out[d] = "; ".join(why) or "Consensa proposed no category in it"
    return out


#: the fields of a proposed subcategory a codebook lists when it leaves one out
_SUB_LISTED = ("id", "name", "parent_theme", "parent_name", "n_segments", "n_cases")


def _not_taken(run: RunItems, nid: int, what: str) -> None:
    """Refuse to give ``what`` the id of a theme: only a review store that created
    categories by the thousand, before their ids kept clear of the block
    (:meth:`RunItems.derived_ids`), has one there, and two categories of one id would
    be one code in every export."""
    if str(nid) in run.theme_ids:
        raise ReviewError(f"{what} is category {nid}, but theme {nid} "
                          f"\"{run.theme_name(nid)}\" has that id",
                          hint=f"merge or reject theme {nid} (its segments can make a new "
                          "category), then apply again")


def _kept_subcategories(run: RunItems, cons: dict[str, Decision], cat: dict[int, dict],
                        seg: pd.DataFrame, final_theme) -> tuple[list[dict], list[dict]]:
    """The proposed subcategories the judges kept, added to ``cat`` (category id ->
    category) as subcategories, and their segments given that id in ``seg``; returns
    the ones nobody reviewed and the ones the codebook leaves out although reviewed
    (each with ``why``).

    A kept subcategory follows its parent theme: under the category the theme became
    (merged into another: under that one; made a subcategory itself: under its parent,
    as subcategories go one level deep), in its domain. It holds the segments of it
    that the consensus leaves in that category: a segment moved, split off or taken
    into a category the judges created goes there. With none left, or its parent
    theme rejected (its segments then are in no category), there is nothing to keep:
    the codebook says so rather than drop the judges' decision unseen. Its id is its
    proposed subcategory's (:meth:`RunItems.kept_subcategory_id`): the same in every
    apply, whatever else the judges decided."""
    not_reviewed, dropped = [], []
    for s in sorted(run.subcategories, key=lambda s: int(s["id"])):
        listed = {k: s[k] for k in _SUB_LISTED}
        # listed under its category as the codebook names it (renamed, or merged into
        # another), not under a proposed name the codebook no longer has
        home = final_theme(int(s["parent_theme"])) if int(s["parent_theme"]) >= 0 else -1
        if home in cat:
            listed["parent_name"] = cat[home]["name"]
        dec = cons.get(f"subcategory:{s['id']}")
        if dec is None:
            # each says why it is left out and where its segments are: "not reviewed,
            # or dropped" said of all was wrong for one whose category was rejected
            not_reviewed.append({**listed, "why": NOT_REVIEWED if home in cat else
                                 NOT_REVIEWED_REJECTED})
            continue
        if dec.decision == "drop":
            dropped.append({**listed, "why": "dropped by the judges: its segments stay in "
                                             "its category"})
            continue
        parent = final_theme(int(s["parent_theme"])) if int(s["parent_theme"]) >= 0 else -1
        if dec.new_name and dec.new_name != s["name"]:
            # named as the judges kept it, the proposed name beside it
            listed = {**listed, "name": dec.new_name, "proposed_name": s["name"]}
        if parent < 0 or parent not in cat:
            dropped.append({**listed, "why": "kept by the judges, but its category was "
                                             "rejected: its segments are in no category"})
            continue
        here = (seg["segment_id"].astype(str).isin(set(s["segment_ids"]))
                & (seg["category_id"] == parent)).to_numpy()
        if not here.any():
            dropped.append({**listed, "why": "kept by the judges, but the consensus placed "
                                             "every one of its segments elsewhere"})
            continue
        nid = run.kept_subcategory_id(s["id"])
        _not_taken(run, nid, f"proposed subcategory {s['id']}, kept,")
        seg.loc[here, "category_id"] = nid
        changes = [f"proposed subcategory {s['id']} of theme {s['parent_theme']}, kept by "
                   "the judges"]
        if dec.new_name and dec.new_name != s["name"]:
            changes.append(f'renamed (proposed: "{s["name"]}")')
        if int(here.sum()) < len(s["segment_ids"]):
            changes.append(f"{len(s['segment_ids']) - int(here.sum())} of its "
                           f"{len(s['segment_ids'])} segment(s) placed elsewhere by the judges")
        cat[nid] = {"name": dec.new_name or s["name"], "proposed_name": s["name"],
                    "domain_id": cat[parent]["domain_id"],
                    # no proposed theme of its own: nothing was merged into it
                    "from_themes": [], "core_idea": dec.core_idea or s["definition"],
                    "core_idea_source": "judges" if dec.core_idea else "proposed",
                    "keywords": list(s["keywords"]), "quote_ids": list(s["quote_ids"]),
                    "changes": changes, "proposed_label": "", "proposed_cases": 0,
                    "parent": parent, "proposed_subcategory": int(s["id"]),
                    "proposed_segments": {str(x) for x in s["segment_ids"]}}
    return not_reviewed, dropped


def _recompute_stale_keywords(run: RunItems, cat: dict[int, dict], seg: pd.DataFrame,
                              children: Mapping[int, list[int]]) -> None:
    """The keywords of every category whose segments are not those it was proposed
    with (split, segments moved in or out, themes merged in, made by the judges),
    computed again from the segments it holds now, in place. The run's keywords of
    a split category listed the words of the part split off ("rupture; repair"
    under "Deepened the relationship"), and the exports write keywords into the
    code descriptions. The contrast is the codebook's categories, the words and the
    pooling per case the naming stage's (:func:`~pipeline.stages.naming.category_keywords`)."""
    members: dict[int, pd.DataFrame] = {
        cid: seg[seg["category_id"].isin([cid, *children.get(cid, [])])] for cid in cat}
    stale = [cid for cid, c in cat.items() if len(members[cid])
             and set(members[cid]["segment_id"].astype(str)) != c["proposed_segments"]]
    if not stale:
        return
    from ..stages.naming import category_keywords

    naming_cfg = (run.config or {}).get("naming") or {}
    kept = {cid: m for cid, m in members.items() if len(m)}
    keywords = category_keywords(
        {cid: m["text"].astype(str).tolist() for cid, m in kept.items()},
        {cid: m["case_id"].astype(str).tolist() for cid, m in kept.items()},
        n_keywords=int(naming_cfg.get("n_keywords", 10)),
        extra_stop_words=list(naming_cfg.get("extra_stop_words") or []))
    for cid in stale:
        cat[cid]["keywords"] = keywords[cid]


def _reasons(status: ReviewStatus, item: str, dec: Decision) -> str:
    """Why ``item`` has its consensus ``dec``, in the words recorded: the panel's comments
    on it in every round, and each judge's comment on a position that decided as the
    consensus did (``ana: not a theme``: the judge's, and said so)."""
    out = []
    for c in status.comment_trail:
        if c["item"] != item:
            continue
        if c["consensus"]:
            out.append(c["comment"])
        elif c["decision"] == dec.decision:
            out.append(f"{c['by']}: {c['comment']}")
    return "; ".join(dict.fromkeys(out))


#: cqr_subgroups.csv: one row per category and group of a case attribute
SUBGROUP_COLUMNS = ["domain", "category_id", "category", "attribute", "group", "n_group",
                    "n_cases", "frequency_label"]


def _written_without_domain(run: RunItems, cons: dict[str, Decision], dom_final: Mapping,
                            doms: pd.DataFrame, seg_final_domain: Mapping[str, int]):
    """The core ideas the judges wrote for a domain the codebook no longer lists (a
    split or moves took all its categories elsewhere). A judges' core idea is listed
    in its own domain only, so such a one would be in no domain of the codebook: it
    goes, as written, to the listed domain that holds most of its segments (the first
    of them on a tie). Returns (final domain -> {(case, proposed domain)}, and the
    entries no listed domain holds a segment of, which the codebook lists apart)."""
    listed = {int(x) for x in doms["domain_id"]}
    adopted: dict[int, set] = {}
    unplaced = []
    if run.core_ideas.empty:
        return adopted, unplaced
    for r in run.core_ideas.itertuples():
        dec = cons.get(core_idea_item(r.case_id, r.domain_id))
        if dec is None or dec.decision != "edit" or not dec.core_idea.strip() \
                or dom_final.get(int(r.domain_id), -1) in listed:
            continue
        votes: dict[int, int] = {}
        for sid in r.segment_ids:
            d = seg_final_domain.get(str(sid), -1)
            if d in listed:
                votes[d] = votes.get(d, 0) + 1
        if votes:
            best = max(votes.values())
            home = next(d for d in votes if votes[d] == best)
            adopted.setdefault(home, set()).add((str(r.case_id), int(r.domain_id)))
        else:
            unplaced.append({"case": str(r.case_id), "domain": int(r.domain_id),
                             "domain_name": run.domain_name(r.domain_id),
                             "core_idea": dec.core_idea, "source": "judges",
                             "segment_ids": [str(x) for x in r.segment_ids]})
    return adopted, unplaced


def agreed_core_ideas(run: RunItems, cons: dict[str, Decision], domain_ids,
                      names: dict[int, str] | None = None,
                      where: tuple[int, Mapping[str, int]] | None = None,
                      texts: Mapping[str, str] | None = None,
                      adopted: set[tuple[str, int]] = frozenset()) -> list[dict]:
    """The core ideas of the given (proposed) domains, one per case and domain: the
    judges' where they wrote one (``source: judges``, with the proposed one beside it),
    else the proposed one (``source: proposed``); each with the segments it came from.
    Domains merged into one keep each its own core ideas (``from_domain``, and its
    proposed name in ``from_domain_name``): a case can then have one from each, and
    none of them, the judges' least of all, is dropped, until the judges merge them.
    A core idea the judges merged into the case's core idea of another of the merged
    domains is listed in that one's ``merged_from`` (with its text), and its segments
    join that one's: the case then has one core idea in the domain, as CQR writes it.
    The target's text is the judges' where they wrote one (for both domains); where
    they did not, the proposed texts are joined, so that nothing proposed is lost. A
    merge whose domains are not (or no longer) merged is not applied: each stays.

    ``where``: (the final domain, segment id -> its final domain). A proposed core idea
    quotes only segments that are in the domain: the sentences of segments the judges
    moved out go with them, to the core idea of the case in the domain they went to
    (``moved_from``: the proposed domain they came from); one left with none is not
    listed. A core idea the judges wrote stays as they wrote it, in its own domain,
    or, for the (case, proposed domain) pairs in ``adopted``, in this one (its domain
    is no longer listed: :func:`_written_without_domain`)."""
    ci = run.core_ideas
    if ci.empty:
        return []
    ids = {int(d) for d in domain_ids}
    out, folded, own = [], [], {}
    mine = ci[ci["domain_id"].astype(int).isin(ids)]
    final, seg_dom = where if where is not None else (None, {})
    if texts is None:       # the segments' texts, which a caller per domain passes once
        texts = dict(zip(run.segments["segment_id"].astype(str),
                         run.segments["text"].astype(str)))
    for r in mine.sort_values(["case_id", "domain_id"]).itertuples():
        dec = cons.get(core_idea_item(r.case_id, r.domain_id))
        entry = {"case": str(r.case_id), "core_idea": str(r.core_idea), "source": "proposed",
                 "segment_ids": [str(x) for x in r.segment_ids]}
        written = dec is not None and dec.decision == "edit" and dec.core_idea.strip()
        if final is not None and not written:
            kept = _spans_in(r, texts, lambda sid: seg_dom.get(sid, final) == final)
            if kept is None:
                pass                                     # all its segments are here
            elif not kept[0]:
                continue                                 # they all went elsewhere
            else:
                entry.update(core_idea=kept[0], segment_ids=kept[1])
        if len(domain_ids) > 1:
            entry["from_domain"] = int(r.domain_id)
            entry["from_domain_name"] = (names or {}).get(int(r.domain_id),
                                                          run.domain_name(r.domain_id))
        if written:
            entry.update(core_idea=dec.core_idea, source="judges", proposed=str(r.core_idea))
            if final is not None:   # it cites only the segments still in its domain
                entry["segment_ids"] = [x for x in entry["segment_ids"]
                                        if seg_dom.get(x, final) == final]
        if dec is not None and dec.decision == "merge" and dec.target.isdigit() \
                and int(dec.target) in ids - {int(r.domain_id)}:
            folded.append((entry, int(dec.target)))
            continue
        own[(entry["case"], int(r.domain_id))] = entry
        out.append(entry)
    for entry, target in folded:
        into = own.get((entry["case"], target))
        if into is None:    # its target merged on in turn: refused when recorded
            out.append(entry)
            continue
        into.setdefault("merged_from", []).append(
            {"domain": entry.get("from_domain"), "domain_name": entry.get("from_domain_name", ""),
             "core_idea": entry["core_idea"]})
        into["segment_ids"] = list(dict.fromkeys(into["segment_ids"] + entry["segment_ids"]))
        if into["source"] == "proposed":
            into["core_idea"] = f"{into['core_idea'].rstrip()} {entry['core_idea'].strip()}"
    if final is not None:
        # the sentences of segments moved here from a domain outside this one
        others = ci[~ci["domain_id"].astype(int).isin(ids)]
        for r in others.sort_values(["case_id", "domain_id"]).itertuples():
            dec = cons.get(core_idea_item(r.case_id, r.domain_id))
            if dec is not None and dec.decision == "edit" and dec.core_idea.strip() \
                    and (str(r.case_id), int(r.domain_id)) in adopted:
                out.append({"case": str(r.case_id), "core_idea": dec.core_idea,
                            "source": "judges", "proposed": str(r.core_idea),
                            "segment_ids": [str(x) for x in r.segment_ids],
                            "moved_from": int(r.domain_id),
                            "moved_from_name": (names or {}).get(
                                int(r.domain_id), run.domain_name(r.domain_id))})
                continue
            # the judges' text for its own domain speaks for what stayed there; the
            # sentences of the segments they moved here come with the segments
            kept = _spans_in(r, texts, lambda sid: seg_dom.get(sid) == final, home=False)
            if kept is None:                 # every segment of it came here
                kept = (str(r.core_idea), [str(x) for x in r.segment_ids])
            if kept[0]:
                out.append({"case": str(r.case_id), "core_idea": kept[0], "source": "proposed",
                            "segment_ids": kept[1], "moved_from": int(r.domain_id),
                            "moved_from_name": (names or {}).get(int(r.domain_id),
                                                                 run.domain_name(r.domain_id))})
        out = _written_here(run, cons, ids, final, seg_dom, out)
        out.sort(key=lambda e: e["case"])
    return out


def _written_here(run: RunItems, cons: dict[str, Decision], ids: set[int], final: int,
                  seg_dom: Mapping[str, int], out: list[dict]) -> list[dict]:
    """``out`` with the core ideas the judges wrote for a case in one of the domains
    ``ids`` where the run proposed the case none (its segments came there from another
    domain). The judges' text stands for the case's segments moved here: it takes the
    place of the proposed sentences that came with them (``moved_from`` entries of the
    case), and cites the case's segments now in the domain."""
    proposed = run.core_idea_ids
    new = {}
    for item, dec in cons.items():
        if not item.startswith("core_idea:") or dec.decision != "edit" \
                or not dec.core_idea.strip():
            continue
        ident = item.split(":", 1)[1]
        case, _, dom = ident.rpartition(":")
        if ident in proposed or not dom.isdigit() or int(dom) not in ids:
            continue
        new[(case, int(dom))] = dec.core_idea
    if not new:
        return out
    from ..stages.coreideas import GAP

    segs = run.segments
    in_final = [str(sid) for sid in segs["segment_id"] if seg_dom.get(str(sid)) == final]
    case_of = dict(zip(segs["segment_id"].astype(str), segs["case_id"].astype(str)))
    cases = {case for case, _ in new}
    kept = [e for e in out if not (e["case"] in cases and e.get("moved_from") is not None
                                   and e["source"] == "proposed")]
    for case, dom in sorted(new):
        replaced = [e for e in out if e not in kept and e["case"] == case]
        kept.append({"case": case, "core_idea": new[(case, dom)], "source": "judges",
                     "proposed": GAP.join(e["core_idea"] for e in replaced),
                     "segment_ids": [s for s in in_final if case_of.get(s) == case],
                     **({"from_domain": dom} if len(ids) > 1 else {})})
        out = [e for e in out if e not in replaced]
    return kept


def unproposed_core_ideas(run: RunItems, codebook: dict) -> dict[int, list[dict]]:
    """Domain id -> the core ideas of the codebook as it stands (``codebook``:
    :func:`build_codebook`'s data) for cases the run proposed none in that domain: the
    sentences of segments the judges moved there, or the core idea the judges wrote
    for them. Each is an item the judges can write (``core_idea:CASE:DOMAIN``), so the
    workbooks and the domain pages give it a row of its own."""
    proposed = run.core_idea_ids
    out: dict[int, list[dict]] = {}
    for dom in codebook.get("domains", []):
        seen = set()
        for ci in dom.get("core_ideas", []):
            # a merged-in domain's own core idea is its item (from_domain); sentences
            # moved here, and a core idea written for them, are the final domain's
            at = int(ci["from_domain"]) if ci.get("moved_from") is None and \
                "from_domain" in ci else int(dom["id"])
            ident = f"{ci['case']}:{at}"
            if ident in proposed or ident in seen:
                continue
            seen.add(ident)
            out.setdefault(at, []).append(
                {"case": ci["case"], "domain_id": at, "domain_name": dom["name"],
                 "core_idea": ci.get("proposed") if ci["source"] == "judges"
                 else ci["core_idea"], "segment_ids": list(ci["segment_ids"])})
    return out


def _spans_in(row, texts: Mapping[str, str], here,
              home: bool = True) -> tuple[str, list[str]] | None:
    """A proposed core idea cut to its sentences whose segment is ``here`` (a predicate
    on segment ids): (text, segment ids); None when every sentence is, so the text
    stays exactly as proposed. The text is rebuilt from the sentences as core ideas are
    (tidied, joined with " … "). A core idea without sentence spans (an older run) is
    not cut: whole in its ``home`` domain while any of its segments is there, whole
    elsewhere only when all of them are."""
    from ..stages.coreideas import GAP, balance_quotes, tidy_utterance

    spans = [str(x) for x in (row.spans if getattr(row, "spans", None) is not None else [])]
    parsed = []
    for sp in spans:
        sid, _, rng = sp.rpartition(":")
        a, _, b = rng.partition("-")
        if sid and a.isdigit() and b.isdigit():
            parsed.append((sid, int(a), int(b)))
    if not parsed:                  # no sentence spans (an older run): the whole or nothing
        test = any if home else all
        return None if test(here(str(i)) for i in row.segment_ids) else ("", [])
    keep = [p for p in parsed if here(p[0])]
    if len(keep) == len(parsed):
        return None
    # each sentence stands alone between gaps: one from inside a quotation gets the
    # quotation's other mark, as in a core idea the stage writes
    pieces = [balance_quotes(tidy_utterance(texts.get(sid, "")[a:b])) for sid, a, b in keep]
    return GAP.join(p for p in pieces if p), list(dict.fromkeys(sid for sid, _, _ in keep))


def review_table(cats: pd.DataFrame, doms: pd.DataFrame, segments: pd.DataFrame, total: int,
                 flags: bool = False) -> pd.DataFrame:
    """The CQR table of the agreed codebook: the columns of
    :func:`pipeline.stages.cqr.cqr_table` (subcategories under their category) with
    the core idea the judges wrote where they wrote one (``core_idea_source``: judges
    or quote) and, for a CQR run, the flags and the label if reassigned outliers
    counted."""
    rows = []
    by_id = cats.set_index("theme_id")
    order = []
    for d in sorted(set(cats["domain_id"])):
        mine = cats[cats["domain_id"] == d].sort_values(
            ["n_cases", "n_segments", "theme_id"], ascending=[False, False, True])
        for c in mine[mine["parent"] < 0].itertuples():
            order.append(c.theme_id)
            order += list(mine[mine["parent"] == c.theme_id]["theme_id"])
        order += [t for t in mine["theme_id"] if t not in order]
    text = dict(zip(segments["segment_id"], segments["text"]))
    case = dict(zip(segments["segment_id"], segments["case_id"]))
    dom_name = dict(zip(doms["domain_id"], doms["name"]))
    for tid in order:
        c = by_id.loc[tid]
        first = c["quote_ids"][0] if len(c["quote_ids"]) else ""
        judges = c["core_idea_source"] == "judges"
        rows.append({"domain": dom_name.get(c["domain_id"], ""), "category": c["name"],
                     "frequency_label": c["frequency_label"],
                     # a CQR label counts the counted cases: the table shows that count
                     "n_cases": int(c["n_counted_cases"] if flags else c["n_cases"]),
                     "cases_total": total, "quote": text.get(first, ""),
                     "quote_case": case.get(first, ""), "quote_segment_id": first,
                     "core_idea": c["core_idea"] if judges else text.get(first, ""),
                     "core_idea_source": "judges" if judges else "quote",
                     "level": "subcategory" if c["parent"] >= 0 else "category",
                     "flags": list(c["flags"]) if flags else [],
                     "label_if_reassigned_counted": c["label_if_reassigned_counted"]
                     if flags else ""})
    return pd.DataFrame(rows, columns=list(CQR_COLUMNS) + TABLE_EXTRA)


TABLE_EXTRA = ["core_idea", "core_idea_source", "level", "flags", "label_if_reassigned_counted"]


def table_markdown(table: pd.DataFrame, flags: bool) -> str:
    """``cqr_table.md`` of the agreed codebook: the judges' core idea where they wrote
    one (a quote, in quotation marks with its segment id, where they did not), subcategories
    under their category, and for a CQR run the evidence column."""
    md = markdown_cell

    head = "| Domain | Category | Frequency | Cases | Core idea |"
    head += " Evidence |" if flags else ""
    lines = [head, "|---|---|---|---|---|" + ("---|" if flags else "")]
    last = None
    for r in table.itertuples():
        dom = md(r.domain) if r.domain != last else ""
        last = r.domain
        name = ("↳ " if r.level == "subcategory" else "") + md(r.category)
        core = (md(r.core_idea) + " (judges)" if r.core_idea_source == "judges"
                else f'"{md(r.quote)}" ({md(r.quote_segment_id)})' if r.quote_segment_id
                else f'"{md(r.quote)}" ({md(r.quote_case)})')
        row = f"| {dom} | {name} | {r.frequency_label} | {r.n_cases}/{r.cases_total} | {core} |"
        if flags:
            ev = list(r.flags)
            if r.label_if_reassigned_counted and r.label_if_reassigned_counted != r.frequency_label:
                ev.append(f"{r.label_if_reassigned_counted} if reassigned outliers counted")
            row += f" {md('; '.join(ev))} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


#: Why a codebook leaves out a subcategory the run proposed, and how to keep one.
SUBCATEGORIES_NOT_REVIEWED = (
    "The judges keep or drop each subcategory Consensa proposed (keeping one is "
    "optional); the ones below are not part of this codebook, each with why and where "
    "its segments are. To keep one, "
    "decide 'keep' on it: on its category's page in `consensa serve`, in the workbook's "
    "sheet 'subcategories', or with `consensa review resolve RUN --subcategory ID "
    "--decision keep`.")


#: why a proposed subcategory nobody kept or dropped is left out (``why`` of an entry
#: of ``subcategories_not_reviewed``), its category in the codebook, or rejected
NOT_REVIEWED = "not reviewed (left out unless kept): its segments are coded with its category"
NOT_REVIEWED_REJECTED = ("not reviewed, and its category was rejected: its segments are in "
                         "no category")


def left_out_subcategories(data: dict) -> list[dict]:
    """The proposed subcategories a codebook (``data``: codebook.yaml's) leaves out, each
    with why: those nobody reviewed, then those the judges dropped or whose kept
    subcategory has no place in the end."""
    return ([{"why": NOT_REVIEWED, **s} for s in data.get("subcategories_not_reviewed") or []]
            + list(data.get("subcategories_dropped") or []))


def _label_cases(row) -> int:
    """How many cases a proposed theme's label counts: ``n_counted_cases`` in a CQR
    run, every case it has in a themes run."""
    n = row.get("n_counted_cases")
    return int(row["n_cases"]) if n is None or pd.isna(n) else int(n)


def cases_text(c: dict, total: int) -> str:
    """A category's cases beside its label: the cases the label counts, and every case
    it has where reassigned outliers add some (``6/10 cases counted, 10 with reassigned
    outliers``), so that the number beside a label is the one it was counted from."""
    n = int(c.get("n_counted_cases", c["n_cases"]))
    if n == int(c["n_cases"]):
        return f"{n}/{total} cases"
    return f"{n}/{total} cases counted, {c['n_cases']} with reassigned outliers"


def codebook_markdown(cb: Codebook) -> str:
    """``codebook.md``. Every name, definition, core idea, quote and comment in it is
    text the judges or the participants wrote: shown, never obeyed as Markdown or HTML
    (:func:`pipeline.sheets.markdown_text`)."""
    t = markdown_text
    d = cb.data
    standing = "as proposed" if d["review"]["round"] == 1 else \
        "as proposed, or as the round before left them"
    draft = ([f"**DRAFT**: {len(d['open_items'])} item(s) still have no consensus and stand "
              f"{standing}: " + "; ".join(t(i) for i in d["open_items"][:20])
              + (" ..." if len(d["open_items"]) > 20 else ""), ""] if d.get("open_items") else
             ["**DRAFT**: a preview (`consensa review apply RUN --preview`), written with no "
              "item open; the codebook is what `consensa review apply RUN` writes.", ""]
             if d.get("draft") else [])
    lines = [f"# {'Draft codebook' if d.get('draft') else 'Codebook'}: {t(d['run']['name'])}", "",
             *draft,
             f"Agreed by {t(', '.join(d['review']['judges']))} (round {d['review']['round']})"
             + audit_words(d["review"]["auditors"], d["review"].get("audited_by") or [],
                           [t(x["item"]) for x in d["review"].get("not_audited") or []])
             + f"; {d['cases_total']} cases. Items marked **changed** differ from what "
             "Consensa proposed.", "",
             *(["**Auditor's comments not answered by every judge**: "
                + "; ".join(t(x) for x in d["review"]["unanswered_audit_comments"]), ""]
               if d["review"].get("unanswered_audit_comments") else [])]
    for dom in d["domains"]:
        mark = " (changed)" if dom["changed"] else ""
        lines += [f"## {t(dom['name'])}{mark}", "",
                  f"{dom['frequency_label']}, {dom['n_cases']}/{d['cases_total']} cases"]
        if dom.get("definition"):
            lines.append(f"\n**Definition**: {t(dom['definition'])}")
        if dom.get("no_category"):
            lines.append(f"\n**No category**: the judges kept this domain, and no category "
                         f"of the codebook is in it: {t(dom['no_category'])}. Its core ideas "
                         "are kept.")
        for ch in dom["changes"]:
            lines.append(f"- changed: {t(ch)}")
        lines.append("")
        if dom.get("core_ideas"):
            lines += _core_idea_lines(dom)
        for c in dom["categories"]:
            mark = " **changed**" if c["changed"] else ""
            level = "####" if "parent" in c else "###"
            under = f" (subcategory of {t(c['parent_name'])})" if "parent" in c else ""
            lines += [f"{level} {t(c['name'])}{under}{mark}", "",
                      f"*{c['frequency_label']}*, {cases_text(c, d['cases_total'])}, "
                      f"{c['n_segments']} segments", "",
                      *([f"**Evidence**: {t('; '.join(_evidence(c)))}", ""] if _evidence(c)
                        else []),
                      f"**Core idea** ({c['core_idea_source']}): {t(c['core_idea'])}", ""]
            if c["keywords"]:
                lines += [f"Keywords: {t(', '.join(c['keywords']))}", ""]
            for ch in c["changes"]:
                lines.append(f"- changed: {t(ch)}")
            if c["changes"]:
                lines.append("")
            for q in c["example_quotes"]:
                lines.append(f"> {t(q['text'])} ({t(q['case'])}, {t(q['segment_id'])})")
                lines.append(">")
            if c["example_quotes"]:
                lines.pop()
            lines.append("")
    if d["review"].get("comments"):
        # every round's reasons: the panel's with its consensus, a judge's with their
        # own position (never presented as the panel's)
        lines += ["## Comments with the decisions", ""]
        for c in d["review"]["comments"]:
            who = (f"{t(c.get('by') or '')}, with their position ({t(c.get('position') or '')})"
                   if c.get("written_with") == "position" else
                   "consensus" + (f", recorded by {t(c['by'])}" if c.get("by") else ""))
            lines.append(f"- round {c.get('round', d['review']['round'])}, {t(c['item'])}, "
                         f"{who}: \"{t(c['comment'])}\"")
        lines.append("")
    if d["review"].get("audit"):
        lines += ["## Audit", ""]
        for c in d["review"]["audit"]:
            answers = "; ".join(f"{t(a['judge'])}: {a['answer']}"
                                + (f" ({t(a['text'])})" if a["text"] else "")
                                for a in c["answers"]) or "not answered"
            lines.append(f"- round {c['round']}, {t(c['item'])}, {t(c['by'])}: "
                         f"\"{t(c['comment'])}\"; answers: {answers}")
        lines.append("")
    if d["rejected_themes"]:
        lines += ["## Rejected proposals", ""]
        for r in d["rejected_themes"]:
            lines.append(f"- theme {r['id']} \"{t(r['name'])}\" ({r['n_segments']} segments)"
                         + (f": {t(r['comment'])}" if r["comment"] else ""))
        lines.append("")
    if d.get("core_ideas_without_domain"):
        lines += ["## Core ideas the judges wrote for a domain no longer in the codebook", "",
                  "None of their segments is in a category of the codebook.", ""]
        lines += [f"- {t(ci['case'])}, domain {ci['domain']} \"{t(ci['domain_name'])}\": "
                  f"{t(ci['core_idea'])} [{t(', '.join(ci['segment_ids']))}]"
                  for ci in d["core_ideas_without_domain"]]
        lines.append("")
    if left_out_subcategories(d):
        lines += ["## Proposed subcategories not in this codebook", "",
                  SUBCATEGORIES_NOT_REVIEWED, ""]
        lines += [f"- \"{t(s['name'])}\" (under \"{t(s['parent_name'])}\"): {t(s['why'])}"
                  for s in left_out_subcategories(d)]
        lines.append("")
    lines.append(f"Unassigned segments: {d['unassigned_segments']}")
    return "\n".join(lines) + "\n"


def _core_idea_lines(dom: dict) -> list[str]:
    """A domain's core ideas in codebook.md, each case once. In a domain others were
    merged into, a case can have a core idea from each of them (a core idea is one per
    case and domain, and the judges reviewed each proposed domain's): they are listed
    together under the case, each with the domain it came from, unless the judges
    merged them into one, which says the domains it stands for."""
    t = markdown_text
    by_case: dict[str, list[dict]] = {}
    for ci in dom["core_ideas"]:
        by_case.setdefault(str(ci["case"]), []).append(ci)

    def idea(ci: dict) -> str:
        both = ""
        if ci.get("merged_from"):
            dids = [int(ci.get("from_domain", dom["id"]))] + [
                int(m["domain"]) for m in ci["merged_from"] if m.get("domain") is not None]
            both = (" (one core idea for domains " + ", ".join(str(x) for x in dids[:-1])
                    + f" and {dids[-1]})")
        if ci.get("moved_from") is not None:
            name = ci.get("moved_from_name") or ""
            made = "written for" if ci["source"] == "judges" else "proposed in"
            both += (f" (from the core idea {made} domain {int(ci['moved_from'])}"
                     + (f' "{t(name)}"' if name else "") + ": its segments moved here)")
        cited = (t(", ".join(ci["segment_ids"])) if ci["segment_ids"] else
                 "no segment of the case is left in this domain")
        return f"({ci['source']}): {t(ci['core_idea'])} [{cited}]{both}"

    def origin(ci: dict) -> str:
        if ci.get("moved_from") is not None:         # idea() says where it came from
            return "moved here"
        did = int(ci.get("from_domain", dom["id"]))
        name = ci.get("from_domain_name") or ""
        merged = ", merged in" if did != int(dom["id"]) else ""
        return f"domain {did}" + (f' "{t(name)}"' if name else "") + merged

    merged = ({int(ci["from_domain"]) for ci in dom["core_ideas"] if "from_domain" in ci}
              | {int(m["domain"]) for ci in dom["core_ideas"] for m in ci.get("merged_from", ())
                 if m.get("domain") is not None}) - {int(dom["id"])}
    head = ("**Core ideas** (one per case)" if not merged else
            "**Core ideas** (one per case and proposed domain: "
            + ("domain " if len(merged) == 1 else "domains ")
            + ", ".join(str(x) for x in sorted(merged))
            + (" was" if len(merged) == 1 else " were") + " merged in, so a case can have "
            "one from each, listed together, unless the judges merged them into one)")
    lines = [head, ""]
    for case, ideas in by_case.items():
        if len(ideas) == 1:
            ci = ideas[0]
            where = f" {origin(ci)}" if int(ci.get("from_domain", dom["id"])) != int(
                dom["id"]) else ""
            lines.append(f"- {t(case)}{where} {idea(ci)}")
            continue
        # from merged domains, or from segments the judges moved here from another domain
        lines.append(f"- {t(case)}: {len(ideas)} core ideas, one from each domain its "
                     "segments here come from")
        lines += [f"  - {origin(ci)} {idea(ci)}" for ci in ideas]
    return lines + [""]


def _evidence(c: dict) -> list[str]:
    """A category's flags and its label if reassigned outliers counted (where it differs)."""
    out = list(c.get("flags") or [])
    other = c.get("label_if_reassigned_counted")
    if other and other != c["frequency_label"]:
        out.append(f"{other} if reassigned outliers counted")
    return out


def write_codebook(cb: Codebook, folder: Path) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {n: folder / n for n in ("codebook.yaml", "codebook.md", "cqr_table.md",
                                     "cqr_table.csv", "assignments.csv")}
    # category names and quotes are text in a spreadsheet, never formulas; precode reads
    # assignments.csv back through sheets.restore_frame (codebook.yaml keeps the exact text)
    atomic_write_text(paths["assignments.csv"], to_csv(cb.assignments, index=False))
    atomic_write_text(paths["cqr_table.csv"], to_csv(cb.table, index=False))
    mark = ("**DRAFT**: items are still open; see codebook.md.\n\n" if cb.data.get("open_items")
            else "**DRAFT**: a preview; see codebook.md.\n\n" if cb.data.get("draft") else "")
    cqr_run = any("n_counted_cases" in c for c in _all_categories(cb.data))
    atomic_write_text(paths["cqr_table.md"], mark + table_markdown(cb.table, flags=cqr_run))
    if len(cb.subgroups):
        paths["cqr_subgroups.csv"] = folder / "cqr_subgroups.csv"
        atomic_write_text(paths["cqr_subgroups.csv"], to_csv(cb.subgroups, index=False))
    atomic_write_text(paths["codebook.md"], codebook_markdown(cb))
    data = cb.data
    training = data.get("training") or {}
    if training.get("run_folder"):
        # the run as seen from the codebook too: a study folder moved or copied whole
        # (to a shared drive, another laptop) keeps its codebook working
        rel = os.path.relpath(Path(training["run_folder"]).resolve(), folder.resolve())
        data = {**data, "training": {**training, "run_folder_relative": Path(rel).as_posix()}}
    atomic_write_text(paths["codebook.yaml"], safeyaml.dump(data, width=100))
    return paths


def alike_categories(data: dict) -> list[tuple[dict, dict, dict]]:
    """(domain, category, category) for each two categories of one domain, at one level
    (categories, or the subcategories of one category), whose names differ at most in
    case and spacing: "Crying" and "crying". A QDA program merges such codes on import
    or refuses them, and the judges likely meant one category."""
    out = []
    for d in data.get("domains") or []:
        seen: dict[tuple[int, str], dict] = {}
        for c in d.get("categories") or []:
            key = (int(c.get("parent", -1)), _alike_key(c["name"]))
            first = seen.setdefault(key, c)
            if first is not c:
                out.append((d, first, c))
    return out


def _alike_key(name: object) -> str:
    """What two names alike (:func:`alike_categories`) share."""
    return " ".join(str(name).split()).casefold()


def may_be_named_alike(run: RunItems, consensus: Mapping[str, Decision], item: str,
                       name: str) -> bool:
    """Whether category ``item``, named ``name``, can share its name with another
    category (:func:`alike_categories`) without the codebook being built: a category's
    name is a proposed theme's, a split's made of one, or one a theme's consensus gives.
    False is certain; True is for :func:`alike_categories` to settle. Building the
    codebook to find out took most of a consensus rename's save on the demo run."""
    key = _alike_key(name)
    own = run.themes["theme_id"].astype(str) == item.partition(":")[2]
    others = [str(n) for n in run.themes.loc[~own, "name"]]
    split = [f"{n} (split)" for n in run.themes["name"]]
    given = [d.new_name for i, d in consensus.items()
             if i != item and d.kind == "theme" and d.new_name]
    return any(_alike_key(n) == key for n in others + split + given)


def name_clashes(data: dict) -> list[str]:
    """:func:`alike_categories` in words, with the command that renames one: the
    codebook is written, and ``review apply`` says so."""
    return [f'domain {d["id"]} "{d["name"]}" holds categories {a["id"]} "{a["name"]}" and '
            f'{b["id"]} "{b["name"]}", named alike: rename one (`consensa review resolve RUN '
            f"--theme {b['id']} --decision rename --name ...`) or merge them"
            for d, a, b in alike_categories(data)]


def _all_categories(data: dict):
    for d in data.get("domains") or []:
        yield from d.get("categories") or []


def live_codebook(run: RunItems, status: ReviewStatus) -> dict:
    """The codebook as it stands, for the pages that show a theme or a domain: what
    each proposed theme and domain has become so far.

    ``{"themes": {id: {"name", "fate", "into", "domain_id", "domain"}}, "domains":
    {id: {"name", "definition", "into", "categories": [category]}}, "draft": bool,
    "codebook": the codebook's data, "assignments": each segment's category}``;
    a theme's ``fate`` is ``category`` (it is one), ``merged`` (into category
    ``into``) or ``rejected``. The assignments let a page list a category's segments
    as they stand (moved in, merged in), not only count them.
    """
    built = build_codebook(run, status, draft=True)
    cb = built.data
    themes, domains = {}, {}
    for d in cb["domains"]:
        domains[d["id"]] = {"name": d["name"], "definition": d.get("definition", ""),
                            "into": d["id"], "categories": d["categories"],
                            "frequency_label": d.get("frequency_label", ""),
                            "n_cases": d.get("n_cases")}
        for c in d["categories"]:
            for t in c["from_themes"]:
                if t == c["id"]:
                    themes[t] = {"name": c["name"], "fate": "category", "into": t,
                                 "domain_id": d["id"], "domain": d["name"],
                                 "parent": c.get("parent"), "parent_name": c.get("parent_name")}
                elif t not in themes or themes[t]["fate"] != "category":
                    themes[t] = {"name": c["name"], "fate": "merged", "into": c["id"],
                                 "domain_id": d["id"], "domain": d["name"]}
    for t in cb["rejected_themes"]:
        themes.setdefault(t["id"], {"name": t["name"], "fate": "rejected", "into": None,
                                    "domain_id": None, "domain": ""})
    cons = status.effective_consensus()
    for did in (int(x) for x in run.domains["domain_id"]):
        if did not in domains:
            end = int(_follow(str(did), cons, "domain"))
            dec = cons.get(domain_item(did))
            name = dec.new_name if dec and dec.new_name and dec.decision != "merge" \
                else run.domain_name(did)
            domains[did] = {"name": name, "definition": "", "into": end, "categories": [],
                            "frequency_label": "", "n_cases": None}
    return {"themes": themes, "domains": domains, "draft": bool(cb.get("draft")),
            "codebook": cb, "assignments": built.assignments}
