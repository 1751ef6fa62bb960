"""What each page of the review app shows, built from the run and the review store.

Plain functions: each takes the run (:class:`RunItems`), an open
:class:`ReviewStore` and the request's parameters as plain values, and returns the
page's template context. No request, session or response here, so what a page shows
can be tested without a server; :mod:`.routes` reads the request, calls one of these
and renders the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from ..errors import ConsensaError
from ..exchange.agreed import stale_codebook
from ..precode import NONE, PrecodeBatch, agreed_code, unread_words
from ..review.agreement import (
    SETTLED,
    ItemStatus,
    ReviewStatus,
    not_reviewed_subcategories,
    review_status,
)
from ..review.apply import live_codebook, unproposed_core_ideas
from ..review.evidence import attribute_text, counted_cases, subgroups, theme_evidence
from ..review.model import (
    CREATED_DOMAIN_DECISIONS,
    DOMAIN_DECISIONS,
    MOVED_IN,
    SEGMENT_DECISIONS,
    Decision,
    RunItems,
    agreed_name,
    core_idea_item,
    domain_item,
    segment_item,
    theme_item,
)
from ..review.model import say as say_named
from ..review.store import ReviewStore, StaleError
from .context import Context
from .query import Query
from .similar import Similar

STATE_WORDS = {"agreed": "agreed", "resolved": "resolved", "carried": "carried over",
               "disputed": "disputed", "blocked": "blocked", "open": "not yet judged"}
#: quotes a search page lists (it says how many more matched)
MAX_SEARCH_RESULTS = 200
#: audit-log entries the log page lists, newest first (it says how many there are)
MAX_LOG_ENTRIES = 1000
#: entries about one item shown on its page
ITEM_LOG_ENTRIES = 10
#: the files the export page offers for download: folder -> allowed suffixes
DOWNLOADS = {"review": (".yaml", ".md", ".csv", ".qdc"), "export": (".qdc", ".qdpx")}
MEDIA_TYPES = {".yaml": "application/yaml", ".md": "text/markdown; charset=utf-8",
               ".csv": "text/csv; charset=utf-8", ".qdc": "application/xml",
               ".qdpx": "application/zip"}
#: a position that only marks an item nobody touched (not a judge's decision)
LEFT_ALONE = "left alone"
#: queued segments the queue page lists at once (previous / next page through the rest)
QUEUE_PAGE_SIZE = 50
#: which queued segments the queue page lists: still without a choice, with one, all
QUEUE_SHOW = {"left": "left to code", "done": "coded", "all": "all"}


# --- words and addresses -------------------------------------------------------------

def item_url(item: str) -> str:
    kind, _, ident = item.partition(":")
    if kind == "core_idea":  # shown, and edited, on its domain's page
        case, _, dom = ident.rpartition(":")
        return f"/domain/{dom}#core-{quote(case, safe='')}"
    return f"/{kind}/{quote(ident, safe='')}"


def when(value: str | None) -> str:
    """A stored UTC time stamp in the server's local time, to the second."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


def is_item(run: RunItems, item: str) -> bool:
    """Whether ``item`` names a theme, domain, segment, core idea or proposed
    subcategory of this run."""
    kind, _, ident = item.partition(":")
    if kind == "theme":
        return ident in run.theme_ids
    if kind == "domain":
        return ident in run.domain_ids
    if kind == "segment":
        return ident in run.segment_ids
    if kind == "core_idea":
        return run.core_idea_writable(ident)
    if kind == "subcategory":
        return ident in run.subcategory_ids
    return False


def say(run: RunItems, d: Decision | None,
        agreed: Mapping[str, Decision] | None = None) -> str:
    """A decision in words, with the names of the themes and domains it points to: by
    the names ``agreed`` (the consensus so far) gives them, the proposed one beside."""
    return say_named(run, d, agreed)


def describe_json(run: RunItems, value: str | None,
                  agreed: Mapping[str, Decision] | None = None) -> str:
    """An audit-log value in words (decisions as decisions; other text as it is)."""
    if not value or not value.startswith("{"):
        return value or ""
    try:
        d = Decision.from_json(value)
    except (ValueError, TypeError):
        return value
    return say(run, d, agreed) + (f' "{d.comment}"' if d.comment else "")


def _choice_name(proposed: str, d: Decision | None) -> str:
    """A theme's or domain's name in a dropdown: the one the judges agreed, the proposed
    one beside it where they renamed it (they pick it by the name the meeting gave it,
    and may remember the old one)."""
    agreed = agreed_name(d)
    return f"{agreed} (proposed: {proposed})" if agreed and agreed != proposed else proposed


def theme_choices(run: RunItems, agreed: Mapping[str, Decision] | None = None
                  ) -> list[tuple[str, str]]:
    """(id, name) of every theme, for the forms' dropdowns: named as ``agreed`` (the
    consensus so far) names them."""
    agreed = agreed or {}
    return [(str(int(t.theme_id)), _choice_name(t.name, agreed.get(theme_item(t.theme_id))))
            for t in run.themes.sort_values("theme_id").itertuples()]


def domain_choices(run: RunItems, agreed: Mapping[str, Decision] | None = None
                   ) -> list[tuple[str, str]]:
    """(id, name) of every domain, for the forms' dropdowns, as :func:`theme_choices`."""
    agreed = agreed or {}
    return [(str(int(d.domain_id)), _choice_name(d.name, agreed.get(domain_item(d.domain_id))))
            for d in run.domains.sort_values("domain_id").itertuples()]


def highlight(text: str, query: Query | list[str]) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, is_a_match) for what was searched (case-insensitive)."""
    if not isinstance(query, Query):
        query = Query.parse(" OR ".join(f'"{w}"' for w in query))
    pattern = query.pattern()
    if pattern is None:
        return [(text, False)]
    out, pos = [], 0
    for m in pattern.finditer(text):
        if m.end() == m.start():
            continue
        if m.start() > pos:
            out.append((text[pos:m.start()], False))
        out.append((m.group(0), True))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out


# --- overview --------------------------------------------------------------------------

@dataclass(frozen=True)
class Filters:
    """The overview's filters, as the address gives them."""

    status: str = ""   # a state, or "pending" (disputed, blocked or not yet judged)
    domain: str = ""   # a domain id
    judge: str = ""    # a judge's name ...
    judged: str = ""   # ... and "yes" (judged by them) or anything else (waiting for them)

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> Filters:
        f = {k: params.get(k, "") for k in ("status", "domain", "judge", "judged")}
        if ":" in f["judge"]:  # "ana:no" (waiting for ana), "ana:yes" (judged by ana)
            f["judge"], _, f["judged"] = f["judge"].rpartition(":")
        return cls(**f)

    def keeps(self, i: ItemStatus, judges: list[str]) -> bool:
        if self.status == "pending" and i.state in SETTLED:
            return False
        if self.status and self.status != "pending" and i.state != self.status:
            return False
        if self.judge in judges:
            judged = _judged(i, self.judge)
            if self.judged == "yes" and not judged:
                return False
            if self.judged != "yes" and judged:
                return False
        return True


def _judged(i: ItemStatus, judge: str) -> bool:
    d = i.positions.get(judge)
    return d is not None and d.source != LEFT_ALONE


def overview(run: RunItems, store: ReviewStore, filters: Filters) -> dict:
    """Every domain with its themes (most cases first), the segments someone decided
    about, and the counts per state; only what the filters keep.

    Domains and themes stand as the codebook stands (:func:`live_codebook`), as on the
    domain pages and in ``consensa review status``: a domain's header gives its name
    and frequency now, a theme is listed under the domain its category is in now (a
    split or a move takes it along), and the proposal shows beside it where it differs.
    A rejected theme stays under the domain it was proposed in: it is nowhere now."""
    st = review_status(store)
    undo = store.undo_target()
    items = {i.item: i for i in st.items}
    live = live_codebook(run, st)

    def keep(i: ItemStatus) -> bool:
        return filters.keeps(i, st.judges)

    def where(t) -> int:
        now = live["themes"].get(int(t.theme_id), {}).get("domain_id")
        return int(t.domain_id) if now is None else int(now)

    in_domain: dict[int, list] = {}
    for t in run.themes.sort_values(["n_cases", "n_segments"], ascending=False).itertuples():
        in_domain.setdefault(where(t), []).append(t)
    domains = []
    for d in run.domains.sort_values("domain_id").itertuples():
        did = int(d.domain_id)
        if filters.domain and filters.domain != str(did):
            continue
        themes = []
        for t in in_domain.get(did, []):
            i = items[theme_item(t.theme_id)]
            if keep(i):
                themes.append({"t": t, "status": i, **_theme_name(run, t, live["themes"]),
                               "proposed_in": int(t.domain_id) if int(t.domain_id) != did
                               and int(t.domain_id) >= 0 else None})
        ds = items[domain_item(did)]
        if themes or keep(ds):
            domains.append({"d": d, "status": ds, "themes": themes, "shown": keep(ds),
                            **_domain_header(run, d, live["domains"].get(did))})
    seg_items = [i for i in st.items if i.kind == "segment" and keep(i)]
    counts = {s: sum(1 for i in st.items if i.state == s) for s in STATE_WORDS}
    if not counts["blocked"]:       # rare (a core idea merge across unmerged domains)
        del counts["blocked"]
    f = asdict(filters)
    return {"st": st, "domains": domains, "seg_items": seg_items, "counts": counts,
            "filters": f, "undo": undo, "not_yet": next_round_refusal(st),
            "domain_choices": domain_choices(run, st.effective_consensus()),
            "undo_label": run.label(undo["item"], st.effective_consensus()) if undo else "",
            "n_unassigned": int((run.segments["theme"] < 0).sum()),
            "filtered": any(f.values())}


def next_round_refusal(st: ReviewStatus) -> str:
    """Why round N+1 cannot start from this page yet, in words ("" when it can).

    The command line's rules (``consensa review next-round``): every item has its
    consensus, and every auditor's comment a judge's answer (its ``--force`` closes
    the round without them; the page has no such button), and round N has a decision
    of its own (:meth:`ReviewStatus.nothing_decided`): a round begins settled, every
    item carrying the round before's consensus, so without it the button showed the
    moment a round began, offering to close a round nobody had reviewed."""
    if not st.closed:
        return (f"{len(st.pending())} item(s) of round {st.round} still need a consensus "
                "decision")
    unanswered = st.unanswered()
    if unanswered:
        return (f"{len(unanswered)} auditor's comment(s) still wait for a judge's answer: "
                + "; ".join(unanswered[:5]) + (" ..." if len(unanswered) > 5 else "")
                + " (answer them on the items' pages, or close the round without them: "
                "consensa review next-round RUN --force)")
    return st.nothing_decided()


def frequency_text(label: str, n_cases, total: int) -> str:
    """"variant, 4/10 cases": a domain's frequency in a header. A domain without a
    label (the interview frame has none, by design) shows its cases alone, with no
    dangling comma; without a count (no category now) it is empty."""
    parts = [label] if label else []
    if n_cases is not None and n_cases == n_cases:
        parts.append(f"{int(n_cases)}/{total} cases")
    return ", ".join(parts) if parts else ""


def _theme_name(run: RunItems, t, live_themes: Mapping[int, dict]) -> dict:
    """A theme's name in its overview row, as the codebook stands: the name the judges
    agreed for the category (a rename), the proposed one beside it where it differs
    (as on the theme's page). A theme merged away or rejected keeps its own name: the
    row is about it, not about the category it went into."""
    now = live_themes.get(int(t.theme_id)) or {}
    if now.get("fate") != "category" or now["name"] == t.name:
        return {"name": t.name, "proposed_name": ""}
    made = str(int(t.theme_id)) in run.created_themes
    return {"name": now["name"], "proposed_name": "" if made else t.name}


def _domain_header(run: RunItems, d, now: dict | None) -> dict:
    """A domain's header in the overview, as the codebook stands: its name, frequency
    and fate now, and the proposal's beside them where they differ (never for a domain
    the judges created: it had no proposal)."""
    created = str(int(d.domain_id)) in run.created_domains
    proposed = frequency_text(d.frequency_label, d.n_cases, run.n_cases)
    if now is None or getattr(d, "kind", "") == "frame":
        # the interview frame is never in the codebook: the proposal is all there is
        return {"name": d.name, "freq": proposed, "proposed_name": "",
                "proposed_freq": "", "into": None}
    into = int(now["into"]) if int(now["into"]) != int(d.domain_id) else None
    freq = frequency_text(now.get("frequency_label", ""), now.get("n_cases"), run.n_cases)
    if not freq and into is None:
        freq = "no category now"
    return {"name": now["name"], "freq": freq, "into": into,
            "proposed_name": d.name if not created and now["name"] != d.name else "",
            "proposed_freq": proposed if not created and freq != proposed else ""}


# --- item pages ------------------------------------------------------------------------

def prefill(status: ItemStatus, who: str | None, start_from: str = "",
            draft: Decision | None = None) -> tuple[Decision, str]:
    """The decision the form starts from, and where it comes from: the refused entries,
    else the position or consensus asked for (``?from=``), else the consensus, else
    the person's own position, else no decision at all: a form never starts on a
    choice nobody made, so a save without one is refused rather than taken as "accept"."""
    if draft is not None:
        return draft, "your refused entries"
    if start_from in status.positions and status.positions[start_from].source != LEFT_ALONE:
        return _as_form(status.positions[start_from]), f"{start_from}'s position"
    if status.consensus is not None:
        return _as_form(status.consensus), "the consensus"
    if who in status.positions and status.positions[who].source != LEFT_ALONE:
        return _as_form(status.positions[who]), "your position"
    return Decision(status.item, ""), "nothing yet"


def _as_form(d: Decision) -> Decision:
    """``d`` as the decision form shows it. A workbook's "accept" with a new name is a
    rename (:meth:`Decision.key`); the form drops the name of an accept (a leftover of
    the rename it started from), so it starts such a one as the rename it is, and
    saving it unchanged keeps the name."""
    if d.decision == "accept" and d.new_name:
        return replace(d, decision="rename")
    return d


def stale_by(error: Exception, who: str | None) -> bool:
    """Whether a stale save was overtaken by the person's own earlier save (a second tab,
    or a form left open while they saved another): "someone else changed this" would
    send them looking for a judge who was never there."""
    change = getattr(error, "change", None) or {}
    return isinstance(error, StaleError) and who is not None and change.get("who") == who


def changed_by(error: Exception) -> str:
    """Who made a save stale: the person of the change it was overtaken by, as the
    store logged it ("" when it does not say; the page then says "another judge")."""
    change = getattr(error, "change", None) or {}
    return str(change.get("who") or "") if isinstance(error, StaleError) else ""


def error_box(error: Exception | None, who: str | None = None) -> dict | None:
    """A refused save as the page's error box shows it (stale: changed since the page was
    read, by someone else, named, or by ``who`` themself)."""
    if error is None:
        return None
    return {"stale": isinstance(error, StaleError), "by_you": stale_by(error, who),
            "by": changed_by(error),
            "message": getattr(error, "reason", str(error)),
            "hint": getattr(error, "hint", "")}


def _item_common(run: RunItems, store: ReviewStore, item: str, who: str | None,
                 start_from: str, error: Exception | None, draft: Decision | None) -> dict:
    """What every item page shows: its status, the versions its forms carry, the form's
    starting decision, the refused save, the last entries about it."""
    st = review_status(store)
    versions = store.item_versions()
    mine = store.item_versions(judge=who) if who else {}
    undo = store.undo_target()
    log = [r for r in store.audit_log() if r["item"] == item][-ITEM_LOG_ENTRIES:]
    status = next((i for i in st.items if i.item == item), None)
    if status is None:  # a segment nobody touched: not an item of the status yet
        status = ItemStatus(item, run.label(item, st.effective_consensus()), "untouched",
                            {j: Decision(item, "keep", source=LEFT_ALONE) for j in st.judges})
    start, start_text = prefill(status, who, start_from, draft)
    # the auditor's comments of earlier rounds on this item, with the judges' answers:
    # a round starts from the last one's consensus, so what was argued then still matters
    earlier = [{"round": r, "comments": cs} for r in range(1, st.round)
               if (cs := [c for c in st.audit_trail if c["round"] == r and c["item"] == item])]
    agreed = st.effective_consensus()
    return {"st": st, "live": live_codebook(run, st), "status": status, "item": item,
            "earlier_comments": earlier,
            "v_item": versions.get(item, 0),
            "v_mine": mine.get(item, 0), "versions": versions, "mine": mine,
            "prefill": start, "prefill_from": start_text, "err": error_box(error, who),
            "undo": undo, "item_log": log, "theme_choices": theme_choices(run, agreed),
            "domain_choices": domain_choices(run, agreed)}


def quotes(rows: pd.DataFrame, context: Context, st: ReviewStatus, versions: dict[str, int],
           mine: dict[str, int], before: int = 2, after: int = 2) -> list[dict]:
    """Segments as the pages list them: text, case, question, the turns around them,
    their status and the versions a move form carries."""
    items = {i.item: i for i in st.items}
    out = []
    for r in rows.itertuples():
        sid = str(r.segment_id)
        it = segment_item(sid)
        out.append({"id": sid, "case": r.case_id, "speaker": r.speaker, "text": r.text,
                    "attributes": attribute_text(context.run.attributes(r.case_id)),
                    "question": r.question, "theme": int(r.theme),
                    "theme_name": r.theme_name, "strength": float(r.strength),
                    "context": context.around(sid, before, after),
                    "status": items.get(it), "vi": versions.get(it, 0),
                    "vm": mine.get(it, 0)})
    return out


def _proposed_subcategories(run: RunItems, ctx: dict, tid: int, who: str | None,
                            draft: Decision | None) -> list[dict]:
    """The subcategories the run proposed within theme ``tid``, as its page lists them:
    each with its status (the positions, the consensus), the versions its form carries,
    where the codebook as it stands has it (``kept_as``: its category there, if kept),
    and the form's starting decision, as :func:`prefill` chooses it for an item's form
    (the refused ``draft`` on it, else the consensus, else the person's own position).

    Those of a theme merged into ``tid``, and those kept under ``tid`` (their theme
    made a subcategory of it), are listed too: the judges look for them under the
    category they are in now, where the domain page links them, not only on the page
    of a theme that is no category any more."""
    st, live = ctx["st"], ctx["live"]
    status = {i.item: i for i in st.items}
    kept = {int(c["proposed_subcategory"]): c for d in live["codebook"]["domains"]
            for c in d["categories"] if "proposed_subcategory" in c}
    out = []
    for s in run.subcategories:
        home = live["themes"].get(int(s["parent_theme"])) or {}
        now = kept.get(int(s["id"])) or {}
        if int(s["parent_theme"]) != tid and now.get("parent") != tid and not (
                home.get("fate") == "merged" and home.get("into") == tid):
            continue
        item = f"subcategory:{s['id']}"
        i = status.get(item)
        start = (draft if draft is not None and draft.item == item else
                 (i.consensus if i is not None else None)
                 or (i.positions.get(who) if i is not None and who else None))
        # the auditors' comments on it, to answer here as on a theme's page: it is an
        # item of the round like any other, and a comment nobody can answer keeps the
        # round from closing (this round's with the status, earlier rounds' to read)
        earlier = [{"round": r, "comments": cs} for r in range(1, st.round)
                   if (cs := [c for c in st.audit_trail
                              if c["round"] == r and c["item"] == item])]
        out.append({**s, "item": item, "status": i, "kept_as": kept.get(int(s["id"])),
                    "v_item": ctx["versions"].get(item, 0), "v_mine": ctx["mine"].get(item, 0),
                    "start": start, "audit": {"audit": i.audit if i is not None else []},
                    # the evidence its keep or drop weighs, as the CQR table gives it
                    "frequency": _frequency(s["frequency_label"], int(s["n_cases"]),
                                            s["n_counted_cases"], int(s["n_segments"]),
                                            s["label_if"], s["flags"]),
                    "earlier_comments": earlier})
    return out


def theme_page(run: RunItems, store: ReviewStore, context: Context, ident: str,
               who: str | None, start_from: str = "", error: Exception | None = None,
               draft: Decision | None = None) -> dict:
    """One theme: its quotes (the representative quotes first, then by strength),
    keywords, the segments someone moved into it, and the decision form.

    Its frequency, cases and quotes are the category's in the codebook as it stands
    (:func:`~pipeline.review.apply.live_codebook`), as the domain page and ``review
    status`` give them, with the proposal's figures beside them where they differ: a
    judge who reads "variant" here and "typical" there cannot tell which stands. A
    theme that is no category now (merged, rejected) shows the proposal's, marked so."""
    tid = int(ident)
    # a refused entry on one of its proposed subcategories goes back into that one's form
    mine = draft if draft is None or draft.item == theme_item(tid) else None
    ctx = _item_common(run, store, theme_item(tid), who, start_from, error, mine)
    t = run.themes[run.themes["theme_id"] == tid].iloc[0].to_dict()
    live = ctx["live"]
    fate = live["themes"].get(tid) or {"name": t["name"], "fate": "empty",
                                       "into": None, "domain_id": None, "domain": ""}
    # its subcategories: those the judges made of themes, and those Consensa proposed,
    # which the judges keep or drop here, each with its own form
    made = [(int(c), info["name"]) for c, info in sorted(live["themes"].items())
            if info.get("fate") == "category" and info.get("parent") == tid]
    proposed = _proposed_subcategories(run, ctx, tid, who, draft)
    # the cases its label counts: the case list marks the others, the subgroups count these
    counting = counted_cases(run, tid, list(t["cases"]))
    if str(tid) in run.created_themes:  # a category the judges made: its own segments
        own = run.members(tid)
    else:
        own = run.segments.loc[run.segments["theme"] == tid, "segment_id"].tolist()
    # the page is about the category as the codebook stands: its segments now (those
    # moved in, merged in, in its subcategories), then those proposed here that the
    # consensus placed elsewhere (a split's ticks stay on them, and they say where)
    cat = _live_category(live, tid) if fate["fate"] == "category" else None
    where = dict(zip(live["assignments"]["segment_id"].astype(str),
                     live["assignments"]["category_id"].astype(int)))
    holds = {tid, *(c for c, _ in made),
             *(int(s["kept_as"]["id"]) for s in proposed if s["kept_as"])}
    if cat is not None:
        members = [s for s, c in where.items() if c in holds]
        quote_ids = [q["segment_id"] for q in cat["example_quotes"]]
    else:
        members, quote_ids = list(own), list(t["quote_ids"])
    kept = set(members)
    left = [s for s in own if s not in kept] if cat is not None else []
    listed = _ranked_quotes(run, members, quote_ids, context, ctx)
    gone = _ranked_quotes(run, left, [], context, ctx)
    names = _category_names(live)
    for q in listed + gone:  # where a segment is, when not in this category itself
        c = where.get(q["id"], -1)
        q["now_in"] = None if c == tid or cat is None else {
            "id": c, "name": names.get(c, ""), "sub": c in holds}
    shown = {q["id"] for q in listed}
    # segments moved into this theme by someone (positions or consensus), not yet among
    # its segments above
    moved_in = [i for i in ctx["st"].items if i.kind == "segment"
                and i.item.partition(":")[2] not in shown and (any(d.decision == "move" and d.target == ident
                         for d in i.positions.values())
                     or (i.consensus is not None and i.consensus.target == ident))]
    evidence = theme_evidence(run, tid)
    asked = _frequency(t["frequency_label"], int(t["n_cases"]), evidence["n_counted"],
                       int(t["n_segments"]), evidence["label_if"], evidence["flags"])
    if cat is not None:
        now = _frequency(cat["frequency_label"], int(cat["n_cases"]),
                         cat.get("n_counted_cases"), int(cat["n_segments"]),
                         cat.get("label_if_reassigned_counted", ""), cat.get("flags", []))
        cases, counts = list(cat["cases"]), set(cat.get("counted_cases", cat["cases"]))
    else:
        now, cases, counts = None, list(t["cases"]), set(counting)
    return {**ctx, "t": t, "tid": tid, "quotes": listed, "left": gone, "now": fate,
            "subcategories": made, "proposed_subcategories": proposed,
            "evidence": evidence, "frequency": now or asked, "live_frequency": now is not None,
            "proposed_frequency": asked if now is not None and now != asked else None,
            "case_list": [{"case": c, "attributes": attribute_text(run.attributes(c)),
                           "counts": c in counts} for c in cases],
            "proposed_cases": list(t["cases"]) if set(cases) != set(t["cases"]) else [],
            "count_above": run.cqr.count_reassigned_above,
            "subgroups": subgroups(run, counting),
            "live_subgroups": _live_subgroups(run, ctx["live"], tid, fate),
            "keywords": list(t["keywords"]),
            "quote_ids": set(quote_ids), "moved_in": moved_in,
            "domain_name": run.domain_name(t["domain_id"]),
            "decisions": run.theme_decisions(tid),
            "n_cases_total": run.n_cases,
            "context_from_turns": bool(context.from_turns)}


def _live_category(live: dict, tid: int) -> dict | None:
    """Category ``tid`` of the codebook as it stands (None where it is none)."""
    for d in live["codebook"]["domains"]:
        for c in d["categories"]:
            if c["id"] == tid:
                return c
    return None


def _category_names(live: dict) -> dict[int, str]:
    """Every category of the codebook as it stands: id -> its name there."""
    return {c["id"]: c["name"] for d in live["codebook"]["domains"] for c in d["categories"]}


def _ranked_quotes(run: RunItems, ids: list[str], quote_ids: list[str], context: Context,
                   ctx: dict) -> list[dict]:
    """Segments ``ids`` as a theme page lists them: ``quote_ids`` (its representative
    quotes) first in their order, then by how strongly they belong to their theme."""
    seg = run.segments[run.segments["segment_id"].isin(ids)].copy()
    rank = {q: i for i, q in enumerate(quote_ids)}
    seg["_rank"] = [rank.get(s, len(rank)) for s in seg["segment_id"]]
    seg = seg.sort_values(["_rank", "strength"], ascending=[True, False], kind="stable")
    return quotes(seg, context, ctx["st"], ctx["versions"], ctx["mine"])


def _frequency(label: str, n_cases: int, n_counted, n_segments: int, label_if,
               flags) -> dict:
    """A category's frequency facts as a theme page prints them: the label, its cases
    (``n_counted`` those the label counts, None where every case counts), segments, the
    label if reassigned outliers counted ("" where it is the same) and the flags."""
    label_if = "" if not label_if or str(label_if) == str(label) else str(label_if)
    return {"label": str(label), "n_cases": n_cases,
            "n_counted": None if n_counted is None or int(n_counted) == n_cases
            else int(n_counted),
            "n_segments": n_segments, "label_if": label_if, "flags": [str(f) for f in flags]}


def _live_subgroups(run: RunItems, live: dict, tid: int, fate: dict) -> list[dict]:
    """The subgroups of the category a theme is now (after the consensus so far); []
    without case attributes or when it is no category any more."""
    if fate.get("fate") not in ("category", "merged") or run.cases is None:
        return []
    for d in live["codebook"]["domains"]:
        for c in d["categories"]:
            if c["id"] == fate.get("into"):
                return subgroups(run, c.get("counted_cases", c["cases"]))
    return []


def core_idea_rows(run: RunItems, st: ReviewStatus, did: int, versions: dict[str, int],
                   mine: dict[str, int], drafts: dict[str, Decision] | None = None,
                   live_domains: dict | None = None, more: list[dict] = (),
                   here: dict[str, list[str]] | None = None) -> list[dict]:
    """The proposed core ideas of one domain, one per case, each with the judges'
    positions, the consensus so far, the versions its form carries and the text the
    form starts from (a refused entry, else the consensus, else the proposal).

    Where the domain and others are merged into one (``live_domains``, the codebook as
    it stands), a case can have a core idea in each: ``merge_into`` lists the other
    domains whose core idea of the case this one can merge into, and ``merged_in``
    the domains whose core idea of the case the consensus merged into this one;
    ``fellow_ideas`` the case's core ideas in those other domains as they stand, so that
    a judge who writes one core idea for all of them reads them all in one place.
    ``more``: the domain's core ideas the run did not propose, for cases whose segments
    the judges moved here (:func:`~pipeline.review.apply.unproposed_core_ideas`), each
    with a row of its own. ``here``: case -> its segments still in this domain as the
    codebook stands (:func:`cases_here`); a proposed core idea cites only those, and one
    whose segments all left (``gone``) offers no form: its words went with them."""
    ci = run.core_ideas
    if ci.empty:
        return []
    items = {i.item: i for i in st.items}
    text = dict(zip(run.segments["segment_id"], run.segments["text"]))
    ends = {int(d): int(info.get("into", d)) for d, info in (live_domains or {}).items()}
    fellows = [d for d in sorted(ends) if d != did and ends[d] == ends.get(did, did)]
    ideas = dict(zip(zip(ci["case_id"].astype(str), ci["domain_id"].astype(int)),
                     ci["core_idea"].astype(str)))

    def consensus_of(item: str) -> Decision | None:
        status = items.get(item)
        return status.consensus if status else None

    out = []
    for r in ci[ci["domain_id"].astype(int) == did].sort_values("case_id").itertuples():
        item = core_idea_item(r.case_id, did)
        status = items.get(item)
        cons = status.consensus if status else None
        draft = (drafts or {}).get(item)
        start = (draft.core_idea if draft else cons.core_idea if cons and cons.core_idea
                 else str(r.core_idea))
        others = [d for d in fellows if (str(r.case_id), d) in ideas]
        merged_in = [d for d in others if (m := consensus_of(core_idea_item(r.case_id, d)))
                     is not None and m.decision == "merge" and m.target == str(did)]
        fellow_ideas = []
        for d in others:
            m = consensus_of(core_idea_item(r.case_id, d))
            fellow_ideas.append({"domain": d, "merged": d in merged_in,
                                 "text": m.core_idea if m is not None and m.core_idea
                                 else ideas[(str(r.case_id), d)],
                                 "judges": m is not None and bool(m.core_idea)})
        cited = list(r.segment_ids) if here is None else here.get(str(r.case_id), [])
        out.append({"item": item, "case": r.case_id,
                    "attributes": attribute_text(run.attributes(r.case_id)),
                    "proposed": str(r.core_idea), "segment_ids": cited,
                    "segments": [{"id": s, "text": text.get(s, "")} for s in cited],
                    "moved_out": [s for s in dict.fromkeys(r.segment_ids) if s not in cited],
                    "gone": not cited,
                    "status": status, "consensus": cons, "start": start,
                    "merge_into": others, "merged_in": merged_in,
                    "fellow_ideas": fellow_ideas,
                    "v_item": versions.get(item, 0), "v_mine": mine.get(item, 0)})
    for c in more:       # cases whose segments the judges moved here: none was proposed
        item = core_idea_item(c["case"], did)
        status = items.get(item)
        cons = status.consensus if status else None
        draft = (drafts or {}).get(item)
        out.append({"item": item, "case": c["case"],
                    "attributes": attribute_text(run.attributes(c["case"])),
                    "proposed": c["core_idea"] or MOVED_IN, "segment_ids": c["segment_ids"],
                    "segments": [{"id": s, "text": text.get(s, "")} for s in c["segment_ids"]],
                    "status": status, "consensus": cons,
                    "start": draft.core_idea if draft else cons.core_idea if cons
                    and cons.core_idea else c["core_idea"],
                    "merge_into": [], "merged_in": [], "fellow_ideas": [],
                    "moved_out": [], "gone": False,
                    "v_item": versions.get(item, 0), "v_mine": mine.get(item, 0)})
    return out


def cases_here(codebook: dict, did: int, into: int) -> dict[str, list[str]] | None:
    """Case -> the segments of its proposed core idea in domain ``did`` that are still
    there as the codebook stands (``codebook``: the draft's data; ``into``: the domain
    ``did`` ends in, itself unless merged): what the judges moved to another domain
    left with its segments, as ``review apply`` writes it. None when the codebook
    lists no domain ``into`` (its categories all went elsewhere: its core ideas are
    listed apart, and the page shows them as proposed)."""
    out: dict[str, list[str]] = {}
    listed = [d for d in codebook.get("domains", []) if int(d["id"]) == into]
    if not listed:
        return None
    for dom in listed:
        for ci in dom.get("core_ideas", []):
            if ci.get("moved_from") is None and int(ci.get("from_domain", into)) == did:
                out.setdefault(str(ci["case"]), []).extend(ci["segment_ids"])
    return out


def domain_page(run: RunItems, store: ReviewStore, ident: str, who: str | None,
                start_from: str = "", error: Exception | None = None,
                draft: Decision | None = None, core_draft: Decision | None = None) -> dict:
    """One domain: its themes with their status, the decision form, the core ideas of
    its cases (a CQR run) with their edit forms, and the form that splits it.
    ``core_draft``: a refused core idea, kept in its form."""
    did = int(ident)
    ctx = _item_common(run, store, domain_item(did), who, start_from, error, draft)
    d = run.domains[run.domains["domain_id"] == did].iloc[0].to_dict()
    items = {i.item: i for i in ctx["st"].items}
    themes = [{"t": t, "status": items[theme_item(t.theme_id)]} for t in
              run.themes[run.themes["domain_id"] == did].itertuples()]
    now = ctx["live"]["domains"][did]
    created = ident in run.created_domains
    drafts = {core_draft.item: core_draft} if core_draft is not None else {}
    # the themes a split can move: the categories in the domain now
    movable = [(str(tid), info["name"]) for tid, info in sorted(ctx["live"]["themes"].items())
               if info.get("domain_id") == did and info["fate"] == "category"]
    return {**ctx, "d": d, "did": did, "themes": themes, "now": now, "created": created,
            "categories": now["categories"],
            # a split is its own form (tick the themes, name the new domain)
            "decisions": CREATED_DOMAIN_DECISIONS if created else
            tuple(x for x in DOMAIN_DECISIONS if x != "split"),
            "core_ideas": core_idea_rows(run, ctx["st"], did, ctx["versions"], ctx["mine"],
                                         drafts, ctx["live"]["domains"],
                                         unproposed_core_ideas(run, ctx["live"]["codebook"])
                                         .get(did, []),
                                         cases_here(ctx["live"]["codebook"], did,
                                                    int(now.get("into", did)))),
            "movable": movable, "n_cases_total": run.n_cases}


def segment_page(run: RunItems, store: ReviewStore, context: Context, ident: str,
                 who: str | None, start_from: str = "", error: Exception | None = None,
                 draft: Decision | None = None) -> dict:
    """One segment with more of the conversation around it, and the move form."""
    seg = run.segments[run.segments["segment_id"] == ident]
    ctx = _item_common(run, store, segment_item(ident), who, start_from, error, draft)
    quote_ = quotes(seg, context, ctx["st"], ctx["versions"], ctx["mine"],
                    before=6, after=6)[0]
    # where it is as the codebook stands (moved, merged in, split off), beside where
    # Consensa put it: after an agreed move the page named the old theme only
    placed = ctx["live"]["assignments"]
    row = placed[placed["segment_id"] == ident]
    now = ({"id": int(row["category_id"].iat[0]), "name": str(row["category"].iat[0]),
            "domain": str(row["domain"].iat[0])} if len(row) else None)
    return {**ctx, "q": quote_, "sid": ident, "decisions": SEGMENT_DECISIONS, "now": now}


# --- search ----------------------------------------------------------------------------

def search(run: RunItems, store: ReviewStore, context: Context, text: str, where: str = "",
           into: str = "", who: str | None = None, like: str = "", like_text: str = "",
           similar: Similar | None = None) -> dict:
    """The segments the query finds (:class:`~.query.Query`: words, "phrases", OR, a
    trailing wildcard; case-insensitive; in the segment, its theme's name or its case),
    within ``where``: ``unassigned``, a theme id, or ``outside`` theme ``into`` (what a
    theme missed). Nothing without words, a place or a similarity.

    Find similar: ``like`` (a theme id: nearest to its centre) or ``like_text`` (a
    typed sentence) ranks what is found by meaning, nearest first (``similar``: the
    run's :class:`~.similar.Similar`); a search that cannot be answered says why.
    """
    query = Query.parse(text)
    seg = run.segments
    hits = seg
    if where == "unassigned":
        hits = hits[hits["theme"] < 0]
    elif where.lstrip("-").isdigit():
        hits = hits[hits["theme"] == int(where)]
    elif where == "outside" and into in run.theme_ids:
        hits = hits[hits["theme"] != int(into)]
    if query:
        hay = (hits["text"].astype(str) + " \u0000 " + hits["theme_name"].astype(str)
               + " \u0000 " + hits["case_id"].astype(str))
        hits = hits[query.mask(hay)]
    scores, problem, like_what = None, "", ""
    like_text = " ".join(like_text.split())
    if (like or like_text) and similar is not None:
        try:
            if like_text:
                scores, like_what = similar.to_text(like_text), f"“{like_text}”"
            elif like in run.theme_ids:
                scores = similar.to_theme(int(like))
                like_what = f"the centre of theme {like}: {run.theme_name(like)}"
            else:
                problem = f"There is no theme {like!r} to find similar segments to."
        except ConsensaError as exc:
            problem = exc.reason + (f" ({exc.hint})" if exc.hint else "")
    if scores is not None:
        pos = seg.index.get_indexer(hits.index)
        order = np.argsort(-scores[pos], kind="stable")
        hits = hits.iloc[order]
        sims = dict(zip(hits["segment_id"], scores[pos][order]))
    elif not query and not where:
        hits = hits.iloc[0:0]
    st = review_status(store)
    versions = store.item_versions()
    mine = store.item_versions(judge=who)
    results = quotes(hits.head(MAX_SEARCH_RESULTS), context, st, versions, mine)
    for r in results:
        r["parts"] = highlight(r["text"], query)
        r["similarity"] = float(sims[r["id"]]) if scores is not None else None
    agreed = st.effective_consensus()
    return {"st": st, "q": query.text, "where": where, "into": into, "results": results,
            "total": len(hits), "limit": MAX_SEARCH_RESULTS,
            "theme_choices": theme_choices(run, agreed),
            "domain_choices": domain_choices(run, agreed),
            "like": like, "like_text": like_text, "like_what": like_what if scores is not None
            else "", "problem": problem}


# --- audit log -------------------------------------------------------------------------

def audit_log(run: RunItems, store: ReviewStore) -> dict:
    """The newest entries of the audit log first, values in words."""
    rows = store.audit_log()
    undo = store.undo_target()
    # items go by the names the judges agreed so far
    agreed = review_status(store).effective_consensus()
    entries = [{**r, "value_text": describe_json(run, r["value"], agreed),
                "previous_text": describe_json(run, r["previous"], agreed),
                "label": run.label(r["item"], agreed) if r["item"] else ""}
               for r in reversed(rows[-MAX_LOG_ENTRIES:])]
    return {"entries": entries, "total": len(rows), "undo": undo,
            "undo_label": run.label(undo["item"], agreed) if undo else ""}


# --- the pre-coding queue ------------------------------------------------------------------

def category_label(batch: PrecodeBatch, category_id: int) -> str:
    """A category of the codebook as the queue page names it ("none of these" for none)."""
    if int(category_id) == NONE:
        return "none of these"
    name = batch.categories.get(int(category_id), ("(not in the codebook)",))[0]
    return f"{int(category_id)}: {name}"


def choice_label(batch: PrecodeBatch, v: dict) -> str:
    """A stored choice as the queue page names it: the category it is read as in the
    codebook the page offers (:meth:`PrecodeBatch.choices`), or, when it cannot be read
    there, what it was stored as and why (never the category that has its id now)."""
    return unread_words(v) if v.get("unread") else category_label(batch, v["category_id"])


def _queue_rows(batch: PrecodeBatch, chosen: dict[str, dict[str, dict]], show: str
                ) -> list[tuple[int, str]]:
    """(position in the whole queue, segment id) of the rows ``show`` keeps, in queue order."""
    ids, done = batch.queue["segment_id"].astype(str).tolist(), batch.done(chosen)
    return [(n, sid) for n, sid in enumerate(ids, start=1)
            if show == "all" or (sid in done) == (show == "done")]


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def queue_page(batch: PrecodeBatch, show: str = "left", page: int = 1) -> dict:
    """One page of the pre-coding's queue: each segment with its case, question and
    text, the classifier's three likeliest categories with their confidences, and the
    choices stored for it (the latest of each person); how many are left and done."""
    show = show if show in QUEUE_SHOW else "left"
    chosen = batch.choices()
    split = split_choices(chosen)
    rows = _queue_rows(batch, chosen, show)
    pages = max(1, -(-len(rows) // QUEUE_PAGE_SIZE))
    page = min(max(1, page), pages)
    shown = rows[(page - 1) * QUEUE_PAGE_SIZE: page * QUEUE_PAGE_SIZE]
    by_id = batch.queue.set_index(batch.queue["segment_id"].astype(str))
    listed = []
    for n, sid in shown:
        r = by_id.loc[sid]
        top = [{"id": int(r[f"top{k}_category_id"]),
                "label": category_label(batch, int(r[f"top{k}_category_id"])),
                "confidence": float(r[f"top{k}_confidence"])} for k in (1, 2, 3)]
        listed.append({"n": n, "id": sid, "case": str(r["case_id"]),
                       "question": _text(r.get("question")),
                       "text": str(r["text"]), "top": top,
                       "choices": [{"who": who, "label": choice_label(batch, v),
                                    "unread": v.get("unread", ""),
                                    "comment": v.get("comment", "")}
                                   for who, v in sorted(chosen.get(sid, {}).items())],
                       "split": sid in split})
    total = len(batch.queue)
    done = batch.n_done(chosen)
    doms: dict[str, list[tuple[int, str]]] = {}
    for cid, (name, _, dom) in sorted(batch.categories.items()):
        doms.setdefault(dom, []).append((cid, name))
    return {"batch": batch.batch, "folder": str(batch.folder), "rows": listed, "show": show,
            "show_words": QUEUE_SHOW, "page": page, "pages": pages, "n_shown": len(rows),
            "total": total, "done": done, "left": total - done, "split": len(split),
            "category_choices": list(doms.items())}


def split_choices(chosen: dict[str, dict[str, dict]]) -> set[str]:
    """The queued segments the people who coded them split evenly on
    (:func:`pipeline.precode.agreed_code`): retraining leaves them out
    (:func:`pipeline.precode.stored_choices`), so the page says which they are. Each
    choice counts as the category it is read as; one that cannot be read counts for
    none (retraining leaves its segment out anyway)."""
    split = set()
    for sid, by in chosen.items():
        codes = [int(v["category_id"]) for v in by.values() if not v.get("unread")]
        if codes and agreed_code(codes) is None:
            split.add(sid)
    return split


def queue_next(batch: PrecodeBatch, after: str, show: str = "left") -> str:
    """Where the queue page goes after a choice for segment ``after``: the next segment
    not yet coded (from ``after`` on, then from the top), on its page."""
    chosen = batch.choices()
    show = "all" if show == "all" else "left"
    rows = _queue_rows(batch, chosen, show)
    ids = batch.queue["segment_id"].astype(str).tolist()
    start = ids.index(after) + 1 if after in ids else 0
    done = batch.done(chosen)
    left = [n for n, sid in enumerate(ids, start=1) if sid not in done]
    target = next((n for n in left if n > start), left[0] if left else None)
    if target is None:
        return f"/queue?show={show}"
    at = next(i for i, (n, _) in enumerate(rows) if n == target)
    return f"/queue?show={show}&page={at // QUEUE_PAGE_SIZE + 1}#q-{target}"


# --- export ----------------------------------------------------------------------------

def downloads(folder: Path) -> list[dict]:
    """The files of the run the export page offers (only these can be downloaded)."""
    out = []
    for sub, suffixes in DOWNLOADS.items():
        base = folder / sub
        if base.is_dir():
            for p in sorted(base.iterdir()):
                if p.is_file() and p.suffix in suffixes:
                    out.append({"folder": sub, "name": p.name, "size": p.stat().st_size,
                                "when": datetime.fromtimestamp(p.stat().st_mtime)
                                .strftime("%Y-%m-%d %H:%M:%S")})
    return out


def export_page(run: RunItems, store: ReviewStore) -> dict:
    """What the export page offers, and the proposed subcategories nobody kept or
    dropped (``left_out``: item, label): keeping one is optional, so they do not hold
    the round open, and the page says they will be left out before the team exports.
    ``stale``: why ``review/codebook.yaml`` is older than the review store's last
    decision, or "", by the rule the command line's export applies: the file offered
    for download here calls itself the agreed codebook, and must not be taken for the
    review as it stands."""
    st = review_status(store)
    agreed = st.effective_consensus()
    left = [(f"subcategory:{s}", run.label(f"subcategory:{s}", agreed))
            for s in not_reviewed_subcategories(st, run)]
    return {"st": st, "files": downloads(run.folder), "left_out": left,
            "final": (run.folder / "review" / "codebook.yaml").is_file(),
            "stale": stale_codebook(run.folder)}
