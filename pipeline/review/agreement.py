"""Where the judges agree, where they do not, and how much (percent, Fleiss' kappa).

An item is *agreed* when every judge took a position and the positions are the same
decision (:meth:`Decision.key`); it then has that consensus automatically. A core idea
merged into the case's core idea in a domain that is not merged with its own is
*blocked*, however it was agreed (:func:`pipeline.review.settle.blocked_merges`). An item
*resolved* has a consensus decision recorded with ``consensa review resolve`` (or a
consensus workbook). Otherwise it is *disputed* (positions differ) or *open* (a
judge has not decided yet). A segment nobody moved needs no decision; one that a
judge moved is an item. A judge who left it alone (a blank row in a workbook) has
taken no position on it: it is open until the others decide or the panel resolves
it, never disputed by a silence.

Rounds: round N+1 starts from round N's consensus (``consensa review next-round``).
That consensus is each item's *baseline*; an item nobody proposes to change in the
new round keeps it (state *carried*). A judge's position that differs from the
baseline opens the item again, and it needs agreement or a resolve like any other.

An item agreed, resolved or carried is *settled*; a round whose items are all settled
(:attr:`ReviewStatus.closed`) can be closed, but stays open until ``consensa review
next-round`` closes it (or ``apply`` writes its codebook): the judges can still change
an item, and ``status``, the web app and the codebook speak of it as the open round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .model import FATE, Decision, RunItems
from .settle import (
    blocked_merges,
    made_by_splits,
    same_as,
    settle,
    theme_domains,
    touched_items,
)
from .store import ReviewStore

STATES = ("agreed", "resolved", "carried", "disputed", "blocked", "open")
#: the fates the agreement compares, per kind of item: a proposed subcategory is kept or
#: dropped (its decisions are its fates)
FATES = {"theme": ["keep", "merge", "split", "reject"], "domain": ["keep", "merge", "split"],
         "subcategory": ["keep", "drop"]}
#: each kind as an agreement line names it
_PLURAL = {"theme": "themes", "domain": "domains", "subcategory": "proposed subcategories"}
#: the states in which an item has its consensus
SETTLED = ("agreed", "resolved", "carried")


@dataclass
class ItemStatus:
    item: str
    label: str
    state: str
    positions: dict[str, Decision]
    consensus: Decision | None = None
    by: str = ""
    comments: list[tuple[str, str]] = field(default_factory=list)
    #: the consensus of the round before (None in round 1, or for an item new to this round)
    baseline: Decision | None = None
    #: the auditors' comments as stored rows (id, by, comment, answers), to answer
    audit: list[dict] = field(default_factory=list)
    #: why a blocked item's consensus does not stand
    note: str = ""

    @property
    def changed(self) -> bool:
        """Whether this round's consensus differs from the round before's."""
        if self.baseline is None or self.consensus is None:
            return False
        return not same_as(self.consensus, self.baseline)

    @property
    def kind(self) -> str:
        return self.item.split(":", 1)[0]


@dataclass
class Agreement:
    """Agreement of the judges over the items every judge decided."""

    kind: str
    n_items: int
    n_judges: int
    percent: float            # share of items with identical positions (exact decision)
    percent_fate: float       # share with the same fate (keep / merge / split / reject)
    kappa: float              # Fleiss' kappa on the fate; nan when undefined
    categories: list[str]
    #: items left out: every judge's position repeats the round before's consensus
    repeated: int = 0

    def line(self) -> str:
        left = (f" ({self.repeated} item(s) left out: every judge's position repeats the "
                "round before's consensus)") if self.repeated else ""
        if not self.n_items:
            return f"{_PLURAL.get(self.kind, self.kind)}: no item decided by every judge yet{left}"
        kappa = "n/a (one category only)" if math.isnan(self.kappa) else f"{self.kappa:.2f}"
        return (f"{_PLURAL.get(self.kind, self.kind)}: {self.n_items} items x {self.n_judges} judges; "
                f"identical decisions {self.percent:.0%}; same fate ({'/'.join(self.categories)}) "
                f"{self.percent_fate:.0%}; Fleiss' kappa {kappa}{left}")


@dataclass
class ReviewStatus:
    round: int
    judges: list[str]
    auditors: list[str]
    items: list[ItemStatus]
    agreement: list[Agreement]
    #: the auditors with a recorded comment (ReviewStore.audited_by)
    audited: list[str] = field(default_factory=list)
    #: every auditor's comment of this round and the rounds before, with the judges'
    #: answers: {round, item, label, id, by, comment, answers: {judge: row}}
    audit_trail: list[dict] = field(default_factory=list)
    #: every comment written with a decision, this round and the rounds before:
    #: {round, item, label, by, comment, consensus, decision, position, at}; ``consensus``
    #: tells the panel's comment on its consensus decision from a judge's on their own
    #: position (``position``: it in words), which is the judge's, not the panel's
    comment_trail: list[dict] = field(default_factory=list)
    #: the consensus decisions recorded after the latest audit comment
    #: (:meth:`ReviewStore.decided_after_audit`), each with its ``label``: not audited
    not_audited: list[dict] = field(default_factory=list)

    @property
    def closed(self) -> bool:
        """Whether every item of the round has its consensus (is settled), so that the
        round can be closed: it is still the open round until ``next-round``."""
        return all(i.state in SETTLED for i in self.items)

    def pending(self) -> list[ItemStatus]:
        return [i for i in self.items if i.state not in SETTLED]

    def effective_consensus(self) -> dict[str, Decision]:
        """What stands for each item: its consensus; for an item open again in a later
        round (disputed, or decided by some judges only), the round before's, which
        the round starts from: a theme made a subcategory in round 1 whose name the
        judges dispute in round 2 is a subcategory still, not back to the proposal."""
        out = {}
        for i in self.items:
            if i.consensus is not None:
                out[i.item] = i.consensus
            elif i.baseline is not None and i.state != "blocked":
                out[i.item] = i.baseline
        return out

    def unanswered(self) -> list[str]:
        """The auditors' comments of this round that a judge has not answered, one line
        each: ``comment 3 on theme 1 "Grief" (dee): not answered by ben, caro``."""
        out = []
        for i in self.items:
            for c in i.audit:
                missing = [j for j in self.judges if j not in c["answers"]]
                if missing:
                    out.append(f"comment {c['id']} on {i.label} ({c['by']}): not answered by "
                               + ", ".join(missing))
        return out

    def nothing_decided(self) -> str:
        """Why this round has nothing to close, in words ("" when it has a decision of
        its own). A round after the first begins settled, every item carrying the round
        before's consensus: closing it at once opens a round nobody reviewed. The rule
        of both ways to close a round (``consensa review next-round`` and the web app's
        *Start round N+1*), so that they never disagree on it."""
        if self.round > 1 and not any(i.state in ("agreed", "resolved") for i in self.items):
            return (f"nothing has been decided in round {self.round} yet: every item carries "
                    f"round {self.round - 1}'s consensus")
        return ""


def review_status(store: ReviewStore, round: int | None = None) -> ReviewStatus:
    run = store.run
    round = round or store.round
    judges = store.judges(round)
    positions = store.positions(round)
    explicit = store.consensus(round)
    by = store.consensus_by(round)
    comments = store.audit_comments(round)
    audit_rounds = store.audit_rounds(round)
    audit = audit_rounds.get(round, {})
    baseline = store.standing(round - 1) if round > 1 else {}
    items = run.items()
    touched = touched_items(positions, explicit, comments, baseline)
    made = made_by_splits(explicit, by, theme_domains(run))
    out = []
    for item in items + touched:
        pos = {j: positions.get(item, {})[j] for j in judges if j in positions.get(item, {})}
        base = baseline.get(item)
        st = ItemStatus(item, run.label(item), "open", pos, comments=comments.get(item, []),
                        baseline=base, audit=audit.get(item, []))
        st.state, st.consensus, st.by = settle(item, pos, judges, explicit, by, made, base,
                                               round)
        out.append(st)
    # a core idea merge between domains that are not merged does not stand (settle.py)
    blocked = blocked_merges({i.item: i.consensus for i in out if i.consensus is not None})
    for i in out:
        if i.item in blocked:
            i.state, i.consensus, i.by, i.note = "blocked", None, "", blocked[i.item]
    # a later round's workbooks and forms start from the round before's consensus: a
    # position that repeats it is that consensus carried, not a judgement made again,
    # and counting it made a round in which each judge changed two rows read "identical
    # decisions 100%; Fleiss' kappa 1.00"
    anew = [i for i in out if i.baseline is None
            or any(not same_as(p, i.baseline) for p in i.positions.values())]
    agreement = [agreement_stats([i for i in anew if i.kind == k], judges, k,
                                 repeated=sum(1 for i in out if i.kind == k and i not in anew
                                              and len(i.positions) == len(judges)))
                 for k in ("theme", "domain", "subcategory")
                 if k != "subcategory" or run.subcategories]
    status = ReviewStatus(round, judges, store.auditors(), out, agreement,
                          audited=store.audited_by(round))
    # an item goes by the name the judges agreed so far (a renamed theme or domain),
    # a name agreed in a round before too while this round's judges dispute the item
    agreed = status.effective_consensus()
    for i in out:
        i.label = run.label(i.item, agreed)
    label = {i.item: i.label for i in out}
    status.audit_trail = [{"round": r, "label": label.get(item) or run.label(item), **c}
                          for r, by_item in sorted(audit_rounds.items())
                          for item, rows in by_item.items() for c in rows]
    status.comment_trail = comment_trail(store, round, label)
    status.not_audited = [{**d, "label": label.get(d["item"]) or run.label(d["item"])}
                          for d in store.decided_after_audit(round)]
    return status


def comment_trail(store: ReviewStore, round: int, label: dict[str, str]) -> list[dict]:
    """:attr:`ReviewStatus.comment_trail`: the comments of rounds 1 to ``round`` as the
    store keeps them (:meth:`ReviewStore.decision_comments`). A comment a later round
    wrote again on the same item (a form or workbook that started from it) is listed
    once, in the round that first gave it."""
    out, seen = [], set()
    for c in store.decision_comments(round):
        key = (c["item"], c["by"], c["consensus"], " ".join(c["comment"].split()))
        if key in seen:
            continue
        seen.add(key)
        d = c["decision"]
        out.append({"round": c["round"], "item": c["item"],
                    "label": label.get(c["item"]) or store.run.label(c["item"]),
                    "by": c["by"], "comment": c["comment"], "consensus": c["consensus"],
                    "decision": d.decision, "at": c["at"],
                    "position": "" if c["consensus"] else d.describe()})
    return out


def agreement_stats(items: list[ItemStatus], judges: list[str], kind: str,
                    repeated: int = 0) -> Agreement:
    """Percent agreement and Fleiss' kappa (statsmodels) over items every judge decided;
    ``repeated``: the items left out because every judge's position repeats the round
    before's consensus."""
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    complete = [i for i in items if len(i.positions) == len(judges) and judges]
    cats = FATES.get(kind, ["keep", "merge", "split"])
    if not complete:
        return Agreement(kind, 0, len(judges), float("nan"), float("nan"), float("nan"), cats,
                         repeated)
    exact = np.mean([len({i.positions[j].key() for j in judges}) == 1 for i in complete])
    code = {c: n for n, c in enumerate(cats)}
    data = np.array([[code[FATE.get(i.positions[j].decision, i.positions[j].decision)]
                      for j in judges] for i in complete])
    same = np.mean([len(set(row)) == 1 for row in data])
    kappa = float("nan")
    if len(judges) >= 2:
        table, _ = aggregate_raters(data, n_cat=len(cats))
        with np.errstate(divide="ignore", invalid="ignore"):
            kappa = float(fleiss_kappa(table, method="fleiss"))
    return Agreement(kind, len(complete), len(judges), float(exact), float(same), kappa, cats,
                     repeated)


def audit_words(auditors: list[str], audited: list[str], not_audited: list[str] = ()) -> str:
    """What a codebook or an export says of its audit: only an auditor who recorded a
    comment audited; one who is only named on the panel is said to have none; and the
    decisions recorded after the audit (``not_audited``, their labels) are named as not
    audited, since "audited by" would claim an auditor saw them."""
    done = [a for a in auditors if a in audited]
    idle = [a for a in auditors if a not in audited]
    after = ""
    if done and not_audited:
        after = (f" (except {len(not_audited)} decision(s) made after the audit, not "
                 "audited: " + "; ".join(not_audited[:5])
                 + (" ..." if len(not_audited) > 5 else "") + ")")
    return ((f", audited by {', '.join(done)}{after}" if done else "")
            + (f" (auditor {', '.join(idle)}: no audit comment recorded)" if idle else ""))


def current_label(store: ReviewStore, item: str) -> str:
    """The item in words, by the name the judges agreed so far (a renamed theme or
    domain: :meth:`RunItems.label` with the consensus of the open round)."""
    return store.run.label(item, review_status(store).effective_consensus())


def not_reviewed_subcategories(status: ReviewStatus, run: RunItems) -> list[str]:
    """The ids of the subcategories the run proposed that no judge kept or dropped and
    nobody commented on (no item of ``status``): the codebook leaves them out."""
    touched = {i.item for i in status.items if i.kind == "subcategory"}
    return [str(s["id"]) for s in run.subcategories
            if f"subcategory:{s['id']}" not in touched]


def status_text(status: ReviewStatus, run: RunItems) -> str:
    closed = "round 1" if status.round == 2 else f"rounds 1-{status.round - 1}"
    earlier = (f" ({closed} closed; this round starts from round "
               f"{status.round - 1}'s consensus)" if status.round > 1 else "")
    lines = [f"Review of run '{run.name}', round {status.round}{earlier}: judges "
             f"{', '.join(status.judges) or '(none)'}"
             + (f"; auditor(s) {', '.join(status.auditors)}" if status.auditors else "")]
    width = max([len(j) for j in status.judges] + [4])
    for kind, title in (("domain", "Domains"), ("theme", "Themes (categories)"),
                        ("segment", "Segments moved by a judge"),
                        ("core_idea", "Core ideas a judge edited or merged"),
                        ("subcategory", "Proposed subcategories a judge kept or dropped")):
        group = [i for i in status.items if i.kind == kind]
        if not group:
            continue
        lines += ["", title]
        for i in group:
            # by the name agreed so far, the proposed one beside it: "theme 1 "Came
            # close to crying" (proposed: "Fourth session"): agreed, rename to ..."
            label = i.label
            if i.state == "agreed":
                lines.append(f"  {label}: agreed, {i.consensus.describe()}")
            elif i.state == "resolved":
                lines.append(f"  {label}: resolved by {i.by}, {i.consensus.describe()}")
            elif i.state == "carried":
                lines.append(f"  {label}: carried from {i.by}, {i.consensus.describe()}")
            else:
                lines.append(f"  {label}: {i.state.upper()}" + (f": {i.note}" if i.note else ""))
            if i.state not in ("agreed", "carried"):
                for j in status.judges:
                    d = i.positions.get(j)
                    text = d.describe() if d else "(no decision yet)"
                    if d and d.comment:
                        text += f'  "{d.comment}"'
                    lines.append(f"      {j:<{width}}  {text}")
            for c in i.audit:
                lines.append(f"      auditor {c['by']} (comment {c['id']}): {c['comment']}")
                for j in status.judges:
                    a = c["answers"].get(j)
                    if a is None:
                        lines.append(f"        {j:<{width}}  (no answer yet: consensa review "
                                     f"answer RUN --comment {c['id']} --by {j} --accept)")
                    else:
                        lines.append(f"        {j:<{width}}  {a['answer']}"
                                     + (f": {a['text']}" if a["text"] else ""))
    # the proposed subcategories nobody kept or dropped are no item of the round (keeping
    # one is optional, and they do not hold it open), but `resolve --subcategory` takes
    # their ids from here, and the team should see before it exports that they are out
    untouched = not_reviewed_subcategories(status, run)
    if untouched:
        agreed = status.effective_consensus()
        lines += ["", "Proposed subcategories nobody kept or dropped (optional; keep one with "
                  "consensa review resolve RUN --subcategory ID --decision keep --by NAME)"]
        lines += [f"  {run.label(f'subcategory:{s}', agreed)}: not reviewed: left out unless "
                  "kept" for s in untouched]
    lines += ["", "Agreement across judges"]
    lines += [f"  {a.line()}" for a in status.agreement]
    pending = status.pending()
    lines.append("")
    if status.closed:
        # settled, not closed: the round is open until next-round (the web app's
        # header says "round N open" meanwhile)
        lines.append(f"Every item of round {status.round} has a consensus decision; the round "
                     f"stays open until round {status.round + 1} starts. Next: the auditor's "
                     "round (consensa review export RUN --auditor NAME), round "
                     f"{status.round + 1} (consensa review next-round RUN) or the final "
                     "codebook (consensa review apply RUN)")
        if untouched:
            lines.append(f"  {len(untouched)} proposed subcategor{'y' if len(untouched) == 1 else 'ies'}"
                         " nobody kept or dropped (listed above) will be left out of the "
                         "codebook and of every export, an agreed one too: keep any the "
                         "team wants first")
    else:
        lines.append(f"Round {status.round} is open: {len(pending)} item(s) need a consensus "
                     "decision (consensa review resolve RUN --theme ID --decision ... --by NAME)")
    return "\n".join(lines) + "\n"
