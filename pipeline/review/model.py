"""What the judges decide about, and how a decision is checked.

An *item* is a key naming one thing of a run the judges decide about:
``theme:<theme_id>``, ``domain:<domain_id>``, ``segment:<segment_id>``,
``core_idea:<case_id>:<domain_id>`` or ``subcategory:<category_id>`` (a subcategory a
CQR run proposed within a category: its id in the run's ``categories`` table).

A :class:`Decision` is one judge's position on one item (or the consensus on it):

=========  ==========  ===============================================================
item       decision    fields used
=========  ==========  ===============================================================
theme      accept      optional ``new_name``, ``domain``, ``core_idea``
theme      rename      ``new_name`` (required); optional ``domain``, ``core_idea``
theme      reassign    ``domain`` (required): the theme belongs to another domain
theme      merge       ``target``: the theme it merges into (chains allowed, no cycles)
theme      split       ``segments``: the segment ids that go to a new category, named
                       ``new_name`` (optional); the rest stays
theme      reject      not a theme: its segments become unassigned
theme      subcategory ``target``: the category it is a subcategory of (one level: the
                       parent is not a subcategory itself); optional ``new_name``,
                       ``core_idea``. It keeps its segments and takes the parent's domain
domain     accept / rename (``new_name``) / merge (``target``: another domain)
domain     split       ``segments``: the ids of the themes (categories) that leave it for a
                       new domain named ``new_name`` (required), whose id is ``target``
                       (given by the store, after every other domain's); optional
                       ``core_idea`` (the new domain's definition). One decision, so one
                       undo takes the whole split back
theme      create      a category the judges add from segments of any theme (consensus
                       only): ``new_name`` (required), ``segments`` (required), optional
                       ``domain`` and ``core_idea``; the segments leave their themes
domain     create      a domain the judges add (consensus only): ``new_name`` (required),
                       ``core_idea`` (its definition); its id follows the run's. Themes
                       are reassigned to it like to any domain
segment    move        ``target``: a theme id, or ``none`` to leave it unassigned
core_idea  edit        ``core_idea`` (required): the judges' core idea of one case in one
                       domain (item ``core_idea:<case_id>:<domain_id>``), in place of the
                       one the run proposed (a CQR run's ``core_ideas`` table)
core_idea  merge       ``target``: the id of another domain the case has a core idea in;
                       once the two domains are merged, the case has one core idea there
                       (the target's, which the judges write for both), not one of each
subcat.    keep        a subcategory the run proposed is kept, under its category (wherever
                       that category goes: merged, made a subcategory itself), with the
                       segments of it still there; optional ``new_name``, ``core_idea``
subcat.    drop        it is not kept: its segments stay in its category
=========  ==========  ===============================================================

Why a proposed subcategory is an item of its own, rather than a category the judges
create of its segments and make a subcategory: CQR reviews the whole two-level table,
so each judge takes a position on each proposed subcategory (in the workbook, the web
app or on the command line) and the panel agrees on it like on any item: positions,
agreement, consensus, rounds and the audit all work on items, and need nothing new
for it. A created category would be the panel's decision only (a create has no
positions), and it would be two decisions on one item. Like a segment, a proposed
subcategory is an item once someone decides on it: a review that never does (every
store written before subcategories were reviewed) reads and applies as before, and
lists them as not reviewed.

``core_idea`` is a core idea note (the category's definition in the codebook);
``comment`` is free text shown beside the item.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd

from ..errors import ConsensaError
from ..runfolder import RunFolder, run_id_of
from ..stages.cqr import CQRConfig, frequency_label

THEME_DECISIONS = ("accept", "rename", "reassign", "merge", "split", "reject", "subcategory")
DOMAIN_DECISIONS = ("accept", "rename", "merge", "split")
#: what the consensus can decide about a domain the judges created
CREATED_DOMAIN_DECISIONS = ("create", "merge")
#: ... and about a category the judges created
CREATED_THEME_DECISIONS = ("create", "merge", "subcategory", "reject")
#: the ``source`` of the "create" a theme split makes (pipeline/review/settle.py)
SPLIT_SOURCE = "split from theme"
SEGMENT_DECISIONS = ("move", "keep")
#: a core idea is edited (a judge who keeps the proposed one takes no position)
CORE_IDEA_DECISIONS = ("edit", "merge")
#: a subcategory the run proposed: kept under its category, or dropped (its segments
#: stay in the category)
SUBCATEGORY_DECISIONS = ("keep", "drop")
KINDS = ("theme", "domain", "segment", "core_idea", "subcategory")
#: whose a review workbook is: a judge's positions, an auditor's comments, the consensus
ROLES = ("judge", "auditor", "consensus")
#: what a person fills in for a decision (form fields, workbook columns, command options)
DECISION_FIELDS = ("decision", "new_name", "target", "domain", "segments", "core_idea", "comment")

#: for agreement statistics, the fate of a theme: what happens to it as a category
FATE = {"accept": "keep", "rename": "keep", "reassign": "keep", "merge": "merge",
        "split": "split", "reject": "reject", "move": "move", "subcategory": "keep",
        # a category or domain the judges created, kept as it is in a later round
        "create": "keep"}


class ReviewError(ConsensaError):
    """Review input that cannot be used as it is (a bad workbook row, an unknown item)."""


#: What no typed text holds: control characters but tab and line breaks (an escape
#: sequence would reach a judge's terminal through `review status`), and what XML cannot
#: hold at all (U+FFFE, U+FFFF, lone surrogates), which broke every workbook and REFI-QDA
#: file written after it.
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff]")


def typed_text(value: str) -> str:
    """``value`` without the characters no text a person types holds (:data:`_NOT_TEXT`):
    names, core ideas, comments and answers are stored without them, whichever way they
    came in (web form, workbook, command line), so every writer can write what is stored."""
    return _NOT_TEXT.sub("", value)


@dataclass(frozen=True)
class Decision:
    item: str
    decision: str
    new_name: str = ""
    target: str = ""
    domain: str = ""
    segments: tuple[str, ...] = ()
    core_idea: str = ""
    comment: str = ""
    #: where it came from ("ana.xlsx, sheet 'themes', row 4", or "command line")
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("new_name", "core_idea", "comment"):
            value = getattr(self, name)
            if isinstance(value, str) and _NOT_TEXT.search(value):
                value = typed_text(value)
                # a name is one line with single spaces, also where a character went
                object.__setattr__(self, name, " ".join(value.split()) if name == "new_name"
                                   else value)

    @property
    def kind(self) -> str:
        return self.item.split(":", 1)[0]

    @property
    def ident(self) -> str:
        return self.item.split(":", 1)[1]

    def key(self) -> tuple:
        """What two positions must share to count as the same decision."""
        decision = self.decision
        if self.kind == "core_idea":  # the text is the decision: two judges agree on it
            return (decision, " ".join(self.core_idea.split()).casefold(), self.target)
        name = " ".join(self.new_name.split()).casefold()
        if decision in ("rename", "accept", "reassign"):
            decision = "keep"
        # a theme split's target is the id its new category got when the consensus was
        # recorded: the judges' positions name no id, and say the same split
        target = "" if self.kind == "theme" and self.decision == "split" else self.target
        return (decision, name if self.decision != "merge" else "", target, self.domain,
                tuple(sorted(self.segments)))

    def describe(self, full: bool = False) -> str:
        """Short words for the status table: ``merge into theme 2``. ``full`` gives a
        core idea's whole text, where an auditor reads what the panel agreed (a
        workbook's "consensus so far", the packet); the status table cuts it."""
        d = self.decision
        if d == "merge" and self.kind == "core_idea":
            return f"merge into the core idea in domain {self.target}"
        if self.kind == "subcategory" and d in SUBCATEGORY_DECISIONS:
            text = ("keep as a subcategory" + (f', named "{self.new_name}"'
                                               if self.new_name else "")
                    if d == "keep" else "drop: its segments stay in its category")
            if self.core_idea:
                text += (f', core idea: "{" ".join(self.core_idea.split())}"' if full
                         else " (+ core idea)")
            return text
        if d == "merge":
            text = f"merge into {self.kind} {self.target}"
        elif d == "move":
            text = "move to unassigned" if self.target == "none" else f"move to theme {self.target}"
        elif d == "split" and self.kind != "domain":
            text = f"split off {len(self.segments)} segment(s)"
            if self.new_name:
                text += f' as "{self.new_name}"'
        elif d == "reassign":
            text = f"reassign to domain {self.domain}"
        elif d == "split" and self.kind == "domain":
            text = (f"split: theme(s) {', '.join(self.segments)} to new domain {self.target} "
                    f'"{self.new_name}"')
        elif d == "edit":
            words = " ".join(self.core_idea.split())
            shown = words if full or len(words) <= 80 else words[:80] + "..."
            return f'core idea: "{shown}"' + ("" if words else " (empty)")
        elif d == "create":
            what = "domain" if self.kind == "domain" else "category"
            text = f'create {what} "{self.new_name}"'
        elif d == "subcategory":
            text = f"subcategory of theme {self.target}"
            if self.new_name:
                text += f', named "{self.new_name}"'
        elif d == "rename":
            text = f'rename to "{self.new_name}"'
        else:
            text = d
        if d in ("accept", "rename") and self.domain:
            text += f", domain {self.domain}"
        if d == "accept" and self.new_name:
            text += f', named "{self.new_name}"'
        if self.core_idea:
            text += (f', core idea: "{" ".join(self.core_idea.split())}"' if full
                     else " (+ core idea)")
        return text

    def to_json(self) -> str:
        data = asdict(self)
        data["segments"] = list(self.segments)
        return json.dumps(data, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Decision:
        """The inverse of :meth:`to_json` (as the audit log holds decisions)."""
        data = json.loads(text)
        data["segments"] = tuple(data.get("segments") or ())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    @classmethod
    def from_row(cls, row) -> Decision:
        segs = row["segments"] or ""
        return cls(item=row["item"], decision=row["decision"], new_name=row["new_name"] or "",
                   target=row["target"] or "", domain=row["domain"] or "",
                   segments=tuple(s for s in segs.split("\n") if s),
                   core_idea=row["core_idea"] or "", comment=row["comment"] or "",
                   source=row["source"] or "")

    @classmethod
    def parse(cls, item: str, fields: Mapping[str, object], *, source: str,
              ignore_unused: bool = False) -> Decision:
        """A decision from what a person entered: the web form, a workbook row and
        ``consensa review resolve`` all come through here, so the same entries give the
        same Decision whichever way they came in.

        Tidied the one way: the decision word in lower case; ids as ids (3, 3.0 and
        " 3 " are "3"); ``none`` in any case as ``none`` (a segment left unassigned);
        the new name on one line with single spaces (names are compared that way, see
        :meth:`key`); notes stripped. ``segments`` is text (ids separated by ``;``,
        ``,`` or new lines) or a list of ids (a form's ticked boxes, each taken whole).

        Whether the decision fits the run is :func:`check_decision`'s question, asked
        where all of a person's decisions are checked together so that every bad row is
        listed at once. Refused here, with a :class:`ReviewError` naming the field, is
        only what is not a decision at all: an item that is not ``theme:ID``,
        ``domain:ID`` or ``segment:ID``, a field no decision has, several values where
        one goes.

        ``ignore_unused`` drops the fields that do not go with the chosen decision: the
        web form shows every field at once (no script hides the ones that do not apply),
        so a leftover there is no mistake. In a workbook row or on the command line such
        a field is reported by :func:`check_decision` instead.
        """
        kind, _, ident = str(item).partition(":")
        # segment ids are text ("case01:3:0"); theme and domain ids are numbers; a core
        # idea is a case (text) and a domain (a number)
        if kind == "core_idea":
            case, _, dom = ident.rpartition(":")
            ident = f"{case.strip()}:{norm_id(dom)}" if case.strip() and norm_id(dom) else ""
        else:
            ident = ident.strip() if kind == "segment" else norm_id(ident)
        if kind not in KINDS or not ident:
            raise ReviewError(f"field 'item': {item!r} is not theme:ID, domain:ID, segment:ID, "
                              "core_idea:CASE:DOMAIN_ID or subcategory:ID")
        unknown = sorted(set(fields) - set(DECISION_FIELDS))
        if unknown:
            raise ReviewError(f"field {unknown[0]!r} is not a field of a decision; the fields "
                              f"are {', '.join(DECISION_FIELDS)}")

        def one(name: str) -> object:
            value = fields.get(name)
            if isinstance(value, (list, tuple, set, frozenset, Mapping)):
                raise ReviewError(f"field {name!r} holds {len(value)} values; it takes one")
            return value

        def text(name: str) -> str:
            value = one(name)
            return "" if value is None else str(value).strip()

        decision = text("decision").lower()
        new_name = " ".join(text("new_name").split())
        target = norm_id(one("target"))
        if target.lower() == "none":
            target = "none"
        domain = norm_id(one("domain"))
        raw = fields.get("segments")
        if isinstance(raw, (list, tuple)):
            segments = tuple(dict.fromkeys(s for s in (str(v).strip() for v in raw) if s))
        elif isinstance(raw, (set, frozenset, Mapping)):  # no order to keep: not a list of ids
            raise ReviewError("field 'segments' is neither text nor a list of segment ids")
        else:
            segments = split_ids(raw)
        if ignore_unused:
            if decision not in ("merge", "move", "subcategory") and not (
                    kind == "domain" and decision == "split"):
                target = ""
            if decision not in ("split", "create"):
                segments = ()
            if kind != "theme" or decision not in ("accept", "rename", "reassign", "create"):
                domain = ""
            # an accept keeps the proposed name: a name left in the form by the rename
            # it started from would make the accept a rename (:meth:`key`), recorded
            # under the word "accept" by a judge who chose to take the proposal; a kept
            # proposed subcategory may be named anew, a kept segment is not named
            if decision in ("accept", "merge", "reject", "move", "drop") or (
                    decision == "keep" and kind != "subcategory"):
                new_name = ""
        return cls(item=f"{kind}:{ident}", decision=decision, new_name=new_name, target=target,
                   domain=domain, segments=segments, core_idea=text("core_idea"),
                   comment=text("comment"), source=source)


def say(run: RunItems, d: Decision | None,
        consensus: Mapping[str, Decision] | None = None, full: bool = False) -> str:
    """A decision in words, with the names of the themes and domains it points to
    (``merge into theme 2 "Supervision"``): what a judge reads in a page or a workbook.
    With ``consensus`` (item -> its consensus so far) a theme or domain the judges
    renamed goes by the agreed name, the proposed one beside it (:meth:`RunItems.label`):
    after a rename the meeting knows it by its new name, not by the one it replaced.
    ``full``: with a core idea's whole text (:meth:`Decision.describe`)."""
    if d is None:
        return ""
    import re

    def named(m: re.Match) -> str:
        kind, ident = m.group(1), m.group(2)
        name = run.theme_name(ident) if kind == "theme" else run.domain_name(ident)
        return run.label(f"{kind}:{ident}", consensus) if name else m.group(0)

    return re.sub(r"\b(theme|domain) (\d+)\b", named, d.describe(full))


def agreed_name(d: Decision | None) -> str:
    """The name a theme's or domain's consensus gives it ("" where it gives none: a
    merge or a reject keeps the name, a split's name is the new category's or domain's)."""
    if d is None or d.decision in ("merge", "reject", "split"):
        return ""
    return d.new_name


#: the proposed text of a core idea the run did not propose (a case's segments the
#: judges moved into a domain) when the judges' own text is all it has
MOVED_IN = "(none proposed: the case's segments here were moved in by the judges)"


def core_idea_item(case_id, domain_id) -> str:
    return f"core_idea:{case_id}:{int(domain_id)}"


def is_change(d: Decision | None) -> bool:
    """Whether a consensus changes what was proposed (anything but a plain accept)."""
    return d is not None and not (d.decision in ("accept", "keep") and not d.new_name
                                  and not d.domain and not d.core_idea)


def theme_item(theme_id) -> str:
    return f"theme:{int(theme_id)}"


def domain_item(domain_id) -> str:
    return f"domain:{int(domain_id)}"


def segment_item(segment_id: str) -> str:
    return f"segment:{segment_id}"




@dataclass
class RunItems:
    """The parts of a run folder the review needs, read once.

    The id lookups (:attr:`theme_ids`, :attr:`segment_ids`, :meth:`segments_of`) are
    built once per table and kept: checking a decision asks them several times, and
    an import checks one decision per workbook row, so rebuilding them per question
    made a 75,000-row import quadratic (over an hour). A lookup is rebuilt only when
    its table is replaced by another object; the tables are not edited in place.
    """

    folder: Path
    manifest: dict
    themes: pd.DataFrame
    domains: pd.DataFrame
    segments: pd.DataFrame
    cqr: CQRConfig = field(default_factory=CQRConfig)
    #: the domains the run proposed; :attr:`domains` adds those the judges created
    #: (:meth:`with_created_domains`, kept in step by the review store)
    proposed_domains: pd.DataFrame | None = None
    #: ids of the domains the judges created
    created_domains: frozenset[str] = frozenset()
    #: the themes the run proposed; :attr:`themes` adds the categories the judges created
    proposed_themes: pd.DataFrame | None = None
    #: the categories the judges created: {id: their create decision}
    created_themes: dict = field(default_factory=dict)
    #: a CQR run's core ideas, one per case and domain (CORE_IDEA_TABLE_COLUMNS); empty
    #: for a themes run, which proposes none
    core_ideas: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: the case attributes (``case_id`` + one text column each: the run's cases table,
    #: read as the exports read it), None when the run has none
    cases: pd.DataFrame | None = None
    #: the run's resolved config (its cross-analysis thresholds name the flags' rules)
    config: dict = field(default_factory=dict)
    #: the subcategories a CQR run proposed, with their segments
    #: (:meth:`RunFolder.proposed_subcategories`, ``detail``); [] for a themes run
    subcategories: list = field(default_factory=list)
    #: name -> (the table it was built from, the lookup); see :meth:`_lookup`
    _lookups: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def _lookup(self, name: str, table: pd.DataFrame, build):
        """``build(table)``, kept for as long as ``table`` is the same object."""
        hit = self._lookups.get(name)
        if hit is None or hit[0] is not table:
            hit = self._lookups[name] = (table, build(table))
        return hit[1]

    def view(self) -> RunItems:
        """A copy whose created themes and domains are its own: the review store keeps
        them in step with the store it opens (:meth:`with_created_domains`), so a copy
        given to each request of the web app lets one judge's request see the store as
        it was when it opened it, while another judge's creates a category. The tables
        are shared, not copied (they are replaced, never edited in place), and so are
        the lookups built so far."""
        out = copy.copy(self)
        out._lookups = dict(self._lookups)
        return out

    def with_created_domains(self, created: dict[int, str]) -> None:
        """The domain table: the run's proposed domains and those the judges created
        ({id: name}), so that every page, workbook and check sees both. The table is
        replaced (never edited in place), so the id lookups follow it."""
        if self.proposed_domains is None:
            self.proposed_domains = self.domains
        ids = frozenset(str(i) for i in created)
        if ids == self.created_domains and all(
                self.domain_name(i) == n for i, n in created.items()):
            return
        rows = pd.DataFrame([{"domain_id": int(i), "name": n, "keywords": [], "theme_ids": [],
                              "n_themes": 0, "n_segments": 0, "n_cases": 0,
                              "frequency_label": "", "created": True}
                             for i, n in sorted(created.items())])
        base = self.proposed_domains
        self.domains = (pd.concat([base, rows], ignore_index=True) if len(rows)
                        else base)
        self.created_domains = ids

    def with_created_themes(self, created: dict[int, Decision]) -> None:
        """The theme table: the run's proposed themes and the categories the judges
        created ({id: create decision}), as :meth:`with_created_domains` does for domains."""
        if self.proposed_themes is None:
            self.proposed_themes = self.themes
        created = {str(k): v for k, v in created.items()}
        if created == self.created_themes:
            return
        base = self.proposed_themes
        case_of = dict(zip(self.segments["segment_id"], self.segments["case_id"]))
        rows = []
        total = self.n_cases
        for i, d in sorted(created.items(), key=lambda kv: int(kv[0])):
            cases = sorted({case_of[s] for s in d.segments if s in case_of})
            # every segment of it was placed by the judges, so every case counts
            label = frequency_label(len(cases), total, self.cqr)
            rows.append({"theme_id": int(i), "name": d.new_name,
                         "domain_id": int(d.domain) if d.domain else -1, "keywords": [],
                         "key_phrases": [], "n_segments": len(d.segments),
                         "n_cases": len(cases), "cases": cases, "frequency_label": label,
                         "label_if_reassigned_counted": label, "n_counted_cases": len(cases),
                         "quote_ids": list(d.segments[:3]), "core_idea": d.core_idea,
                         "mean_strength": 0.0, "n_reassigned": 0, "created": True})
        self.themes = pd.concat([base, pd.DataFrame(rows)], ignore_index=True) if rows else base
        self.created_themes = created

    def theme_decisions(self, tid) -> tuple[str, ...]:
        """The decisions a theme takes: a category the judges created takes its create
        again (to rename or redefine it), merge, subcategory or reject; one a recorded
        split made (its "create" is the split's) is renamed, reassigned, merged,
        rejected or made a subcategory like a proposed theme, but not split again."""
        created = self.created_themes.get(str(int(tid)))
        if created is None:
            return THEME_DECISIONS
        if created.source.startswith(SPLIT_SOURCE):
            return tuple(x for x in THEME_DECISIONS if x != "split")
        return CREATED_THEME_DECISIONS

    def members(self, tid) -> list[str]:
        """The segment ids a theme holds as the run proposed it, or a created category's."""
        created = self.created_themes.get(str(int(tid)))
        return list(created.segments) if created else sorted(self.segments_of(tid))

    def next_theme_id(self) -> int:
        return int(self.themes["theme_id"].max()) + 1 if len(self.themes) else 0

    # --- the ids of the categories the judges make of what the run proposed ------
    # A proposed subcategory the judges keep, and a category a theme split makes, are
    # categories of the codebook; their ids name them in codebook.yaml, the CQR table,
    # assignments.csv (pre-coding's labels) and the GUIDs of the REFI-QDA exports
    # (uuid5 of the run id and the category id). Given at apply from a running counter,
    # one apply gave a kept subcategory 17 and the next, after a category was created
    # elsewhere, 18 (and the created one 17): a judge's exported codebook named other
    # codes. Each id is now made of what the category comes from alone, in a block of
    # ids no theme id is in: the proposed themes' ids are below it, and a category the
    # judges create is given one outside it (ReviewStore.unused_id).

    def derived_id_base(self) -> int:
        """``B``: a kept proposed subcategory ``s`` is category ``B + s``, the category a
        split of proposed theme ``t`` makes is ``2B + t`` (:meth:`kept_subcategory_id`,
        :meth:`split_category_id`), and no theme id is in ``[B, 3B)``. A power of ten
        from 1000 up, above every proposed theme's and subcategory's id: it depends on
        the run alone, so every apply of the run's review gives the same ids, and the
        ids read as what they come from (1012: proposed subcategory 12)."""
        proposed = self.proposed_themes if self.proposed_themes is not None else self.themes
        top = max([int(t) for t in proposed["theme_id"]]
                  + [int(s["id"]) for s in self.subcategories], default=-1) + 1
        base = 1000
        while base < top:
            base *= 10
        return base

    def derived_ids(self) -> range:
        """The ids kept for kept subcategories and split-off categories: no theme, proposed
        or created, has one."""
        base = self.derived_id_base()
        return range(base, 3 * base)

    def kept_subcategory_id(self, sub) -> int:
        """The codebook id of proposed subcategory ``sub`` kept by the judges."""
        return self.derived_id_base() + int(sub)

    def split_category_id(self, theme) -> int:
        """The id of the category a split of proposed theme ``theme`` makes: a theme is
        split once (one decision per item; a split-off category is not split again)."""
        return 2 * self.derived_id_base() + int(theme)

    def next_domain_id(self) -> int:
        """The id a newly created domain gets: after every proposed and created one."""
        return int(self.domains["domain_id"].max()) + 1 if len(self.domains) else 0

    @property
    def core_idea_ids(self) -> frozenset[str]:
        """``case:domain_id`` of every proposed core idea."""
        return self._lookup("core_idea_ids", self.core_ideas, _core_idea_id_set)

    def core_idea_writable(self, ident: str) -> bool:
        """Whether the judges may write the core idea ``case:domain_id``: one the run
        proposed, or any case of the run in any domain of the run. CQR wants one core
        idea per case in each domain the case speaks to, and a case's segments that the
        judges move into a domain where the run proposed it none need one there."""
        if ident in self.core_idea_ids:
            return True
        case, _, dom = ident.rpartition(":")
        return (not self.core_ideas.empty and dom in self.domain_ids
                and case in self._lookup("case_ids", self.segments, _case_id_set))

    def core_idea_row(self, ident: str) -> dict | None:
        """The proposed core idea ``case:domain_id`` as a dict, or None."""
        case, _, dom = ident.rpartition(":")
        ci = self.core_ideas
        if ci.empty:
            return None
        hit = ci[(ci["case_id"].astype(str) == case) & (ci["domain_id"].astype(int) == int(dom))]
        return hit.iloc[0].to_dict() if len(hit) else None

    def attributes(self, case_id) -> dict[str, str]:
        """The case's attributes ({} without a cases table, or for a case it lacks)."""
        return self._lookup("attributes", self.cases, _attributes_by_case).get(str(case_id), {})

    @property
    def run_id(self) -> str:
        return run_id_of(self.manifest)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.folder.name))

    @property
    def theme_ids(self) -> frozenset[str]:
        return self._lookup("theme_ids", self.themes, _theme_id_set)

    @property
    def domain_ids(self) -> frozenset[str]:
        return self._lookup("domain_ids", self.domains, _domain_id_set)

    @property
    def segment_ids(self) -> frozenset[str]:
        return self._lookup("segment_ids", self.segments, _segment_id_set)

    def theme_name(self, tid) -> str:
        hit = self.themes.loc[self.themes["theme_id"] == int(tid), "name"]
        return str(hit.iloc[0]) if len(hit) else ""

    def domain_name(self, did) -> str:
        hit = self.domains.loc[self.domains["domain_id"] == int(did), "name"]
        return str(hit.iloc[0]) if len(hit) else ""

    def label(self, item: str, consensus: Mapping[str, Decision] | None = None) -> str:
        """The item in words: ``theme 1 "Fourth session"``. With ``consensus`` (item ->
        its consensus so far) a theme or domain the judges renamed goes by the name they
        agreed, the one it had before beside it: ``theme 1 "Came close to crying"
        (proposed: "Fourth session")``."""
        kind, ident = item.split(":", 1)
        if kind == "theme":
            return f"theme {ident} {self._named(item, self.theme_name(ident), consensus)}"
        if kind == "domain":
            return f"domain {ident} {self._named(item, self.domain_name(ident), consensus)}"
        if kind == "core_idea":
            case, _, dom = ident.rpartition(":")
            return (f"core idea of case {case} in domain {dom} "
                    f"{self._named(domain_item(dom), self.domain_name(dom), consensus)}")
        if kind == "subcategory":
            s = self.subcategory(ident) or {"name": "", "parent_theme": -1}
            parent = theme_item(s["parent_theme"]) if int(s["parent_theme"]) >= 0 else ""
            # a stance subcategory's pole: its name seldom says the judgement it stands for
            pole = f" (stance: {s['pole']})" if s.get("pole") else ""
            return (f"proposed subcategory {ident} {self._named(item, s['name'], consensus)}"
                    + pole + (f" of {self.label(parent, consensus)}" if parent else "")
                    + self._now_under(int(s["parent_theme"]), consensus))
        return f"segment {ident}"

    def _now_under(self, tid: int, consensus: Mapping[str, Decision] | None) -> str:
        """Where a proposed subcategory of theme ``tid`` is now, where that is not
        ``tid`` itself (``, now under theme 5 "Grief"``; "" where it is): a label that
        names only a theme merged away sends the judges to a category that is gone."""
        if tid < 0 or not consensus:
            return ""
        cur, seen = str(tid), set()
        while (d := consensus.get(theme_item(cur))) is not None and d.decision == "merge" \
                and d.target and cur not in seen:
            seen.add(cur)
            cur = str(d.target)
        d = consensus.get(theme_item(cur))
        if d is not None and d.decision == "reject":  # (a merge into one is refused)
            return ", its category rejected"
        if d is not None and d.decision == "subcategory" and d.target:
            cur = str(d.target)       # one level deep: kept under its category's parent
        return "" if cur == str(tid) else f", now under {self.label(theme_item(cur), consensus)}"

    def _named(self, item: str, name: str, consensus: Mapping[str, Decision] | None) -> str:
        agreed = agreed_name((consensus or {}).get(item))
        if not agreed or agreed == name:
            return f'"{name}"'
        kind, ident = item.split(":", 1)
        made = kind in ("theme", "domain") and ident in (
            self.created_themes if kind == "theme" else self.created_domains)
        return f'"{agreed}" ({"created as" if made else "proposed"}: "{name}")'

    def items(self) -> list[str]:
        """The items every judge is asked about: all domains and themes."""
        return ([domain_item(d) for d in self.domains["domain_id"]]
                + [theme_item(t) for t in self.themes["theme_id"]])

    def segments_of(self, tid) -> frozenset[str]:
        return self._lookup("by_theme", self.segments, _segments_by_theme).get(int(tid),
                                                                               frozenset())

    @property
    def n_cases(self) -> int:
        return int(self.segments["case_id"].nunique())

    @property
    def subcategory_ids(self) -> frozenset[str]:
        """The ids of the subcategories the run proposed (items ``subcategory:<id>``)."""
        return frozenset(str(s["id"]) for s in self.subcategories)

    def subcategory(self, ident) -> dict | None:
        """The proposed subcategory ``ident`` (RunFolder.proposed_subcategories), or None."""
        return next((s for s in self.subcategories if str(s["id"]) == str(ident)), None)


# The lookups RunItems keeps (module functions, so a test can count the builds).

def _theme_id_set(themes: pd.DataFrame) -> frozenset[str]:
    return frozenset(str(int(t)) for t in themes["theme_id"])


def _domain_id_set(domains: pd.DataFrame) -> frozenset[str]:
    return frozenset(str(int(d)) for d in domains["domain_id"])


def _segment_id_set(segments: pd.DataFrame) -> frozenset[str]:
    return frozenset(segments["segment_id"])


def _case_id_set(segments: pd.DataFrame) -> frozenset[str]:
    return frozenset(segments["case_id"].astype(str))


def _core_idea_id_set(core_ideas: pd.DataFrame) -> frozenset[str]:
    if core_ideas.empty:
        return frozenset()
    return frozenset(f"{c}:{int(d)}" for c, d in zip(core_ideas["case_id"],
                                                     core_ideas["domain_id"]))


def _attributes_by_case(cases: pd.DataFrame | None) -> dict[str, dict[str, str]]:
    if cases is None or cases.empty:
        return {}
    return {str(r["case_id"]): {k: str(v) for k, v in r.items() if k != "case_id"}
            for r in cases.to_dict("records")}


def _segments_by_theme(segments: pd.DataFrame) -> dict[int, frozenset[str]]:
    """{theme id: its segment ids}, in one pass over the segments."""
    groups: dict[int, set[str]] = {}
    for sid, theme in zip(segments["segment_id"], segments["theme"]):
        groups.setdefault(int(theme), set()).add(sid)
    return {t: frozenset(ids) for t, ids in groups.items()}


def load_run(folder: str | Path) -> RunItems:
    """The parts of a run folder the review needs (through :class:`RunFolder`: typed
    tables, list columns as lists; a folder written before the typed tables is read
    from its CSVs). The CQR settings are the run's, the defaults when it has none."""
    from ..exchange.codes import RunData, case_attributes

    run = RunFolder.open(folder, need=("manifest", "themes", "domains", "segments"))
    cqr = CQRConfig()
    if isinstance(run.config.get("cqr"), dict):
        cqr = CQRConfig(**run.config["cqr"])
    segments = run.segments()
    core = run.table("core_ideas") if run.has("core_ideas") else pd.DataFrame()
    # the cases table as the exports read it (ingest.cases_table, or cases.csv in the
    # folder), so the judges see the same attributes the .qdpx carries
    cases, _ = case_attributes(RunData(run.path, segments, pd.DataFrame(), pd.DataFrame(),
                                       run.manifest, run.config))
    return RunItems(run.path, run.manifest, run.themes(), run.domains(), segments, cqr,
                    core_ideas=core, cases=cases, config=run.config,
                    subcategories=run.proposed_subcategories(detail=True))


# --- validation ---------------------------------------------------------------

def norm_id(value) -> str:
    """A cell as an id: 3, 3.0 and " 3 " are all "3"; text stays text."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    try:
        f = float(text)
        if f.is_integer() and text.lstrip("+-").replace(".", "", 1).isdigit():
            return str(int(f))
    except ValueError:
        pass
    return text


def split_ids(value) -> tuple[str, ...]:
    if value is None:
        return ()
    parts = str(value).replace(",", ";").replace("\n", ";").split(";")
    return tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))


#: how each way in names a decision's fields: the command line's flags, the web
#: form's labels, the workbook's columns (the default), so that an error names what
#: the person can see and fix where they typed it
FIELD_NAMES = {
    "command line": {"target": "--target", "new_name": "--name", "domain": "--to-domain",
                     "segments": "--segments"},
    "web form": {"target": "'Merge into / subcategory of' or 'Move to'", "new_name": "'New name'",
                 "domain": "'Domain'", "segments": "the ticked segments"},
    "workbook": {"target": "column 'merge into'", "new_name": "column 'new name'",
                 "domain": "column 'new domain'", "segments": "column 'split off segments'"},
}


def field_name(d: Decision, key: str) -> str:
    """The name of field ``key`` where ``d`` was entered (see :data:`FIELD_NAMES`)."""
    for way in ("command line", "web form"):
        if d.source.startswith(way):
            return FIELD_NAMES[way][key]
    return FIELD_NAMES["workbook"][key]


def _span(ids: range) -> str:
    return f"{ids.start} to {ids.stop - 1}"


def check_decision(d: Decision, run: RunItems) -> list[str]:
    """Problems with one decision on its own, in words (empty when it is fine)."""
    kind = d.kind
    errs: list[str] = []
    if kind == "core_idea":
        return _check_core_idea(d, run)
    if kind == "subcategory":
        return _check_subcategory(d, run)
    if kind == "domain" and d.decision == "split":
        return _check_domain_split(d, run)
    if kind == "theme" and d.decision == "create":
        if d.ident in run.theme_ids and d.ident not in run.created_themes:
            return [f"theme {d.ident} is one the run proposed; create gives a new category"]
        if not d.ident.isdigit():
            return [f"a new category's id is a number, not {d.ident!r}"]
        if int(d.ident) in run.derived_ids() and d.ident not in run.created_themes:
            return [f"theme id {d.ident} is kept for the proposed subcategories the judges "
                    f"keep and the categories splits make ({_span(run.derived_ids())}); a new "
                    "category takes another (the web app and the store give one)"]
        if not d.new_name.strip():
            errs.append(f"create needs the new category's name ({field_name(d, 'new_name')})")
        if not d.segments:
            errs.append(f"create needs the segments of the new category "
                        f"({field_name(d, 'segments')})")
        unknown = [s for s in d.segments if s not in run.segment_ids]
        if unknown:
            errs.append(f"unknown segment id(s): {', '.join(unknown[:5])}")
        if not d.domain:
            errs.append(f"create needs the domain the new category goes in "
                        f"({field_name(d, 'domain')})")
        elif d.domain not in run.domain_ids:
            errs.append(f"unknown domain id {d.domain!r}")
        return errs
    elif kind == "theme":
        if d.ident not in run.theme_ids:
            return [f"unknown theme id {d.ident!r} (this run has themes "
                    f"{', '.join(sorted(run.theme_ids, key=int))})"]
        allowed = run.theme_decisions(d.ident)
    elif kind == "domain" and d.decision == "create":
        if d.ident in run.domain_ids and d.ident not in run.created_domains:
            return [f"domain {d.ident} is one the run proposed; create gives a new domain"]
        if not d.ident.isdigit():
            return [f"a new domain's id is a number, not {d.ident!r}"]
        return [] if d.new_name.strip() else [f"create needs the new domain's name "
                                              f"({field_name(d, 'new_name')})"]
    elif kind == "domain":
        if d.ident not in run.domain_ids:
            return [f"unknown domain id {d.ident!r} (this run has domains "
                    f"{', '.join(sorted(run.domain_ids, key=int))})"]
        allowed = (CREATED_DOMAIN_DECISIONS if d.ident in run.created_domains
                   else DOMAIN_DECISIONS)
    elif kind == "segment":
        if d.ident not in run.segment_ids:
            return [f"unknown segment id {d.ident!r}"]
        allowed = SEGMENT_DECISIONS
    else:
        return [f"unknown item {d.item!r}"]
    if d.decision not in allowed:
        return [f"unknown decision {d.decision!r} for a {kind}; use one of: {', '.join(allowed)}"]
    dec = d.decision
    ids = run.theme_ids if kind in ("theme", "segment") else run.domain_ids
    if dec in ("merge", "subcategory"):
        what = "merge into" if dec == "merge" else "be a subcategory of"
        if not d.target:
            errs.append(f"{dec} needs the {kind} id to {what} ({field_name(d, 'target')})")
        elif d.target == d.ident:
            errs.append(f"a {kind} cannot {what} itself ({kind} {d.ident})")
        elif d.target not in ids:
            errs.append(f"{what} unknown {kind} id {d.target!r}")
    elif d.target and kind == "theme" and dec == "split":
        # the new category's id, given when the consensus is recorded
        if not d.target.isdigit():
            errs.append(f"a split's new category id is a number, not {d.target!r}")
        elif d.target in run.theme_ids and d.target not in run.created_themes:
            errs.append(f"theme {d.target} is one the run proposed; a split makes a new one")
        elif int(d.target) in run.derived_ids() and \
                int(d.target) != run.split_category_id(d.ident) and \
                d.target not in run.created_themes:
            errs.append(f"the new category of a split of theme {d.ident} is category "
                        f"{run.split_category_id(d.ident)}, not {d.target} (leave the id out: "
                        "the store gives it)")
    elif d.target:
        if dec == "move":
            if d.target != "none" and d.target not in ids:
                errs.append(f"move to unknown theme id {d.target!r} (or 'none' for unassigned)")
        else:
            errs.append(f"{field_name(d, 'target')} is filled in but the decision is {dec!r}, "
                        "not merge")
    if dec == "move" and not d.target:
        errs.append("move needs the theme to move the segment to")
    if dec == "rename" and not d.new_name.strip():
        errs.append(f"rename needs a new name ({field_name(d, 'new_name')})")
    if dec in ("merge", "reject") and d.new_name.strip():
        errs.append(f"a new name does not go with {dec!r}")
    if dec == "reassign" and not d.domain:
        errs.append(f"reassign needs the domain id to move the theme to "
                    f"({field_name(d, 'domain')})")
    if d.domain:
        if kind != "theme" or dec in ("merge", "reject", "subcategory"):
            errs.append(f"a new domain does not go with {dec!r}")
        elif d.domain not in run.domain_ids:
            errs.append(f"unknown domain id {d.domain!r}")
    if dec == "split":
        if not d.segments:
            errs.append("split needs the ids of the segments that go "
                        f"({field_name(d, 'segments')})")
        else:
            own = run.segments_of(d.ident)
            foreign = [s for s in d.segments if s not in own]
            if foreign:
                errs.append(f"split names segments that are not in theme {d.ident}: "
                            f"{', '.join(foreign[:5])}")
            elif set(d.segments) == own:
                errs.append("split would move every segment of the theme; use rename instead")
    elif d.segments:
        errs.append(f"segment ids are filled in but the decision is {dec!r}, not split")
    return errs


def _check_core_idea(d: Decision, run: RunItems) -> list[str]:
    """A judge's core idea of one case in one domain: an edit of one the run proposed,
    or a new one (a case whose segments the judges moved into a domain)."""
    if not run.core_idea_writable(d.ident):
        case, _, dom = d.ident.rpartition(":")
        if not len(run.core_ideas):
            return [f"the run proposed no core idea of case {case!r} in domain {dom!r} (only "
                    "a CQR run proposes core ideas)"]
        what = (f"the run has no domain {dom!r}" if dom not in run.domain_ids
                else f"the run has no case {case!r}")
        return [f"no core idea of case {case!r} in domain {dom!r} can be written: {what}"]
    if d.ident not in run.core_idea_ids and d.decision != "edit":
        case, _, dom = d.ident.rpartition(":")
        return [f"the run proposed no core idea of case {case!r} in domain {dom!r}, so there "
                "is none to merge; write the case's core idea there instead (edit, with its "
                "text)"]
    if d.decision not in CORE_IDEA_DECISIONS:
        return [f"unknown decision {d.decision!r} for a core idea; use: edit (with the core "
                "idea's text) or merge (with the domain whose core idea of the case it "
                "goes into)"]
    errs = []
    if d.decision == "merge":
        case, _, dom = d.ident.rpartition(":")
        if not d.target:
            errs.append(f"merge needs {field_name(d, 'target')}: the id of the domain whose "
                        f"core idea of case {case!r} this one goes into")
        elif d.target == dom:
            errs.append(f"a core idea cannot merge into itself (domain {dom})")
        elif f"{case}:{d.target}" not in run.core_idea_ids:
            errs.append(f"{field_name(d, 'target')}: case {case!r} has no core idea in domain "
                        f"{d.target!r} to merge into")
        if d.core_idea.strip():
            errs.append("a merged core idea takes no text: write it on the core idea of "
                        f"domain {d.target or '(the target)'}, which stands for both")
    elif not d.core_idea.strip():
        errs.append("edit needs the core idea's text")
    for key in ("new_name", "domain") + (("target",) if d.decision == "edit" else ()):
        if getattr(d, key):
            errs.append(f"{field_name(d, key)} does not go with a core idea"
                        + (" edit" if key == "target" else ""))
    if d.segments:
        errs.append(f"{field_name(d, 'segments')} does not go with a core idea")
    return errs


def unknown_subcategory(ident: str, run: RunItems) -> str:
    """What a decision or an audit comment on a subcategory the run did not propose is
    told: the ids it did propose, to pick from."""
    known = ", ".join(sorted(run.subcategory_ids, key=int)[:20])
    return (f"unknown proposed subcategory id {ident!r} "
            + (f"(this run proposed subcategories {known})" if known
               else "(this run proposed none)"))


def _check_subcategory(d: Decision, run: RunItems) -> list[str]:
    """Keep or drop a subcategory the run proposed (a new name and a core idea go with
    keep; nothing else goes with either)."""
    if d.ident not in run.subcategory_ids:
        return [unknown_subcategory(d.ident, run)]
    if d.decision not in SUBCATEGORY_DECISIONS:
        return [f"unknown decision {d.decision!r} for a proposed subcategory; use: keep (with "
                "an optional new name) or drop (its segments stay in its category)"]
    errs = []
    if d.decision == "drop" and (d.new_name.strip() or d.core_idea.strip()):
        errs.append("a new name or a core idea note goes with 'keep', not with 'drop'")
    for key in ("target", "domain", "segments"):
        if getattr(d, key):
            errs.append(f"{field_name(d, key)} does not go with a proposed subcategory (it "
                        "stays under its category)")
    return errs


def _check_domain_split(d: Decision, run: RunItems) -> list[str]:
    """Split a domain: the ticked themes leave it for a new domain (id ``target``)."""
    if d.ident not in run.domain_ids:
        return [f"unknown domain id {d.ident!r}"]
    errs = []
    if not d.new_name.strip():
        errs.append(f"split needs the new domain's name ({field_name(d, 'new_name')})")
    if not d.target.isdigit():
        errs.append("split needs the id of the new domain (given when the split is made)")
    elif d.target in run.domain_ids and d.target not in run.created_domains:
        errs.append(f"domain {d.target} is one the run proposed; a split makes a new domain")
    if not d.segments:
        errs.append("split needs the themes that go to the new domain (tick them)")
    unknown = [t for t in d.segments if t not in run.theme_ids]
    if unknown:
        errs.append(f"unknown theme id(s): {', '.join(unknown[:5])}")
    if d.domain:
        errs.append("a domain of a domain does not go with 'split'")
    return errs


def merge_cycles(decisions: list[Decision]) -> list[list[Decision]]:
    """Merge cycles among one set of decisions (one judge's, or the consensus)."""
    merges = {d.item: d for d in decisions if d.decision == "merge"}
    cycles, seen = [], set()
    for start in merges:
        path, item = [], start
        while item in merges and item not in seen and merges[item] not in path:
            path.append(merges[item])
            item = f"{merges[item].kind}:{merges[item].target}"
        if item in merges and merges[item] in path:
            cycle = path[path.index(merges[item]):]
            if not any(d.item in seen for d in cycle):
                cycles.append(cycle)
        seen.update(d.item for d in path)
    return cycles


def nesting_problems(decisions: list[Decision]) -> list[str]:
    """Subcategories of subcategories among one set of decisions (one level only: a
    CQR table prints a category and its subcategories, no deeper)."""
    by_item = {d.item: d for d in decisions}
    errs = []
    for d in decisions:
        if d.decision != "subcategory":
            continue
        parent = by_item.get(f"theme:{d.target}")
        if parent is not None and parent.decision == "subcategory":
            errs.append(f"{d.source or d.item}: theme {d.ident} would be a subcategory of theme "
                        f"{d.target}, itself a subcategory of theme {parent.target}; "
                        "subcategories go one level deep")
    return errs


def end_of_merges(by_item: dict[str, Decision], target: str,
                   seen: set[str] | None = None, kind: str = "theme"
                   ) -> tuple[str, Decision | None]:
    """Where theme (or domain) ``target`` ends, following merges (a cycle stops at the
    first repeat): the last one's id and its decision (None: it has none)."""
    seen = set(seen or ())
    end = by_item.get(f"{kind}:{target}")
    while end is not None and end.decision == "merge" and end.item not in seen:
        seen.add(end.item)
        target = end.target
        end = by_item.get(f"{kind}:{target}")
    return target, end


def rejected_target_problems(decisions: list[Decision]) -> list[str]:
    """Themes merged, directly or through a chain of merges, into a theme the same set of
    decisions rejects. The merged theme's segments would end in no category without
    anyone having rejected them, so it is refused: reject it too, or merge it elsewhere."""
    by_item = {d.item: d for d in decisions}
    errs = []
    for d in decisions:
        if d.kind != "theme" or d.decision != "merge":
            continue
        target, end = end_of_merges(by_item, d.target, seen={d.item})
        if end is not None and end.decision == "reject":
            via = "" if target == d.target else f" (through theme {d.target})"
            errs.append(f"{d.source or d.item}: theme {d.ident} would merge into theme "
                        f"{target}{via}, which is rejected, so its segments would end in no "
                        "category; merge it into a theme that is kept, or reject it too")
    return errs


def moved_into_rejected_problems(decisions: list[Decision]) -> list[str]:
    """Segments moved into a theme the same set of decisions rejects (directly, or into a
    theme merged into a rejected one). The segment would end in no category although
    nobody moved it out: refused, like a merge into a rejected theme."""
    by_item = {d.item: d for d in decisions}
    errs = []
    for d in decisions:
        if d.kind != "segment" or d.decision != "move" or d.target in ("", "none"):
            continue
        target, end = end_of_merges(by_item, d.target)
        if end is not None and end.decision == "reject":
            via = "" if target == d.target else f" (merged into theme {target})"
            errs.append(f"{d.source or d.item}: segment {d.ident} would move into theme "
                        f"{d.target}{via}, which is rejected, so it would end in no "
                        "category; move it to a theme that is kept, or to 'none' to leave "
                        "it unassigned on purpose")
    return errs


def merges_across_domains(d: Decision, by_item: dict[str, Decision]) -> bool:
    """Whether ``d`` merges a case's core idea into its core idea in a domain that, as
    ``by_item`` (item -> Decision) has it, is not merged with the core idea's own."""
    if d.kind != "core_idea" or d.decision != "merge" or not d.target:
        return False
    dom = d.ident.rpartition(":")[2]
    return (end_of_merges(by_item, dom, kind="domain")[0]
            != end_of_merges(by_item, d.target, kind="domain")[0])


def core_idea_merge_problems(decisions: list[Decision], domains_too: bool = True) -> list[str]:
    """Core ideas merged into one that is itself merged on (merge into the one that
    stays), or, with ``domains_too`` (a consensus, checked against all that stands),
    into the core idea of a domain that is not merged with their own: the case would
    lose its core idea in a domain that is still there."""
    by_item = {d.item: d for d in decisions}
    errs = []
    for d in decisions:
        if d.kind != "core_idea" or d.decision != "merge" or not d.target:
            continue
        case, _, dom = d.ident.rpartition(":")
        into = by_item.get(core_idea_item(case, d.target)) if d.target.isdigit() else None
        if into is not None and into.decision == "merge":
            errs.append(f"{d.source or d.item}: the core idea of case {case!r} in domain {dom} "
                        f"would merge into the one in domain {d.target}, which merges into the "
                        f"one in domain {into.target} in turn; merge it into the one that stays")
        elif domains_too and merges_across_domains(d, by_item):
            errs.append(f"{d.source or d.item}: domains {dom} and {d.target} are not merged, "
                        f"so case {case!r} would be left without a core idea in domain {dom}; "
                        "merge the domains first (a domain's decision 'merge'), or keep a core "
                        "idea in each")
    return errs


def split_outside_problems(splits: list[Decision], consensus: dict[str, Decision],
                           run: RunItems) -> list[str]:
    """Themes a domain split lists that are not in that domain as the consensus stands
    (the run's proposal, or the domain the judges reassigned the theme to). A split moves
    only its own domain's categories, so such a theme would stay where it is and the new
    domain would be empty while the split reads as done: it is refused, naming where
    the theme is."""
    proposed = dict(zip(run.themes["theme_id"].astype(int).astype(str),
                        run.themes["domain_id"].astype(int).astype(str)))
    errs = []
    for d in splits:
        if d.kind != "domain" or d.decision != "split":
            continue
        for t in d.segments:
            dec = consensus.get(f"theme:{t}")
            now = dec.domain if dec is not None and dec.domain else proposed.get(t)
            if now is not None and now != d.ident:
                errs.append(f"{d.source or d.item}: theme {t} is in domain {now}, not in "
                            f"domain {d.ident}; a split moves categories of the domain it "
                            f"splits (reassign theme {t} with --theme {t} --decision "
                            "reassign --to-domain ID instead)")
    return errs


def overlap_problems(decisions: list[Decision]) -> list[str]:
    """Segments that two created categories in one set of decisions both take."""
    owner: dict[str, str] = {}
    errs = []
    for d in decisions:
        if d.kind == "theme" and d.decision == "create":
            for s in d.segments:
                if s in owner and owner[s] != d.ident:
                    errs.append(f"{d.source or d.item}: segment {s} is in new category "
                                f"{owner[s]} already")
                owner[s] = d.ident
    return errs


def check_set(decisions: list[Decision], run: RunItems) -> list[str]:
    """Problems of a set of decisions by one person: each row, then cycles and duplicates."""
    errs = []
    by_item: dict[str, Decision] = {}
    for d in decisions:
        errs += [f"{d.source}: {e}" for e in check_decision(d, run)]
        if d.item in by_item:
            errs.append(f"{d.source}: a second decision on {d.item.replace(':', ' ')} "
                        f"(the first is at {by_item[d.item].source})")
        by_item[d.item] = d
    for cycle in merge_cycles(decisions):
        chain = " -> ".join([cycle[0].ident] + [c.target for c in cycle])
        errs.append(f"{cycle[0].source}: merge cycle ({cycle[0].kind}s {chain}; "
                    f"rows: {'; '.join(c.source for c in cycle)})")
    return (errs + nesting_problems(decisions) + rejected_target_problems(decisions)
            + moved_into_rejected_problems(decisions)
            + core_idea_merge_problems(decisions, domains_too=False))


def with_source(d: Decision, source: str) -> Decision:
    return replace(d, source=source)
