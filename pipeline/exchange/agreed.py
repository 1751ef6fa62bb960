"""What an export holds: the judges' agreed codebook, or Consensa's proposal.

A CQR team exports to NVivo, MAXQDA, ATLAS.ti, Taguette or R what it *agreed*, not
what the machine proposed. So every export (``consensa export qdc|qdpx|csv``) starts
from one :class:`ExportContent`:

* **agreed**: the run has a review (``RUN/review/decisions.sqlite``) and every item
  of its current round has a consensus. The codebook is the one ``consensa review apply`` writes
  (:func:`pipeline.review.apply.build_codebook`, computed again from the store so it
  is never stale): consensus names, rejected themes left out, merges, splits,
  reassignments and segment moves applied, counts and frequency labels recomputed.
* **draft**: the team asked for a draft (``--draft``). Open items keep what Consensa
  proposed, and every file says it is a draft and names the open items. With none
  open it is still a draft, as ``consensa review apply --preview`` is: the team asks
  for one before the audit and any later round, which may still change it, so it is
  never labelled as agreed.
* **refused**: the round has open items and no ``--draft``. A CQR codebook is the
  team's consensus; a file that looks final but is not is the mistake most worth
  preventing, so the export stops and lists the open items (with what to do).
* **proposal**: the run has no review (or ``--proposal`` asks for it). Every file
  says that the names are Consensa's proposals.
* **agreed (from file)**: ``RUN/review/codebook.yaml`` (with ``assignments.csv``
  beside it): exactly what ``apply`` wrote then.

Besides the codebook (:attr:`ExportContent.data`, shaped like ``codebook.yaml``)
and the segment of each category (:attr:`ExportContent.assignments`), it carries
the notes worth keeping in a QDA project (core ideas, the changes agreed, the
judges' consensus comments, the auditor's comments, why a theme was rejected) and
the case attributes (:func:`pipeline.exchange.codes.case_attributes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..runfolder import RunFolder
from .codes import RunData, case_attributes, load_run

PROPOSAL, AGREED, DRAFT = "proposal", "agreed", "draft"
DB = "decisions.sqlite"


@dataclass
class ExportNote:
    """A note for the project: its text, who wrote it, and what it is about.

    ``about`` is ``("category", id)``, ``("domain", id)`` or ``("project", "")``
    (a note on no code: a rejected theme, the open items of a draft).
    """

    key: str               # stable identity (the note's GUID is made from it)
    title: str
    text: str
    author: str            # a user name (Consensa, Consensus, an auditor)
    about: tuple[str, object]
    guid: str = ""         # given by the writer
    case: str = ""         # the case a note is about too (a case's core idea), or ""
    #: when it was written (the review store's time of the comment, answer or decision
    #: it holds), "" where there is none: the project dates it at the run's time
    at: str = ""
    modified: str = ""     # when it last changed (the latest answer to an audit comment)


@dataclass
class ExportContent:
    kind: str                              # proposal / agreed / draft
    run: RunData
    data: dict                             # codebook.yaml's shape: domains -> categories
    assignments: pd.DataFrame              # segment_id, case_id, category_id (-1: none)
    notes: list[ExportNote] = field(default_factory=list)
    judges: list[str] = field(default_factory=list)
    auditors: list[str] = field(default_factory=list)
    audited: list[str] = field(default_factory=list)   # the auditors with a recorded comment
    #: the decisions recorded after the audit, in words: not audited
    not_audited: list[str] = field(default_factory=list)
    open_items: list[str] = field(default_factory=list)
    round: int = 0
    origin: str = ""                       # where it came from, in words
    cases: pd.DataFrame | None = None      # case_id + attributes (text)
    case_notes: list[str] = field(default_factory=list)
    #: per category, the cases its frequency label counts (a CQR run: a reassigned
    #: outlier below ``cqr.count_reassigned_above`` does not make its case count); None
    #: for a themes run, whose labels count every case with a segment
    counted: dict[int, set[str]] | None = None
    #: what the project export says of the team's project it carried over (or why not)
    project_notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line saying what the export holds (the CLI prints it; files carry it)."""
        people = ", ".join(self.judges) or "the judges"
        if self.kind == AGREED:
            from ..review.agreement import audit_words

            audited = audit_words(self.auditors, self.audited, self.not_audited)
            return (f"the codebook agreed by {people} in round {self.round}{audited} "
                    f"({self.origin})")
        if self.kind == DRAFT and self.open_items:
            return (f"a DRAFT of the codebook of round {self.round}: {len(self.open_items)} "
                    f"item(s) still open keep Consensa's proposal ({self.origin})")
        if self.kind == DRAFT:
            from ..review.agreement import audit_words

            return (f"a DRAFT of the codebook of round {self.round} by {people}"
                    f"{audit_words(self.auditors, self.audited, self.not_audited)}: no item "
                    "is open, but "
                    f"the audit and any later round may still change it ({self.origin})")
        return f"Consensa's proposal: {self.origin}"

    def categories(self):
        """(domain entry, category entry) for every category, in codebook order."""
        for d in self.data["domains"]:
            for c in d.get("categories") or []:
                yield d, c


def export_content(source: str | Path, *, draft: bool = False, proposal: bool = False,
                   sources: bool = True) -> ExportContent:
    """What to export from a run folder or a ``codebook.yaml`` (see the module docstring)."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() in (".yaml", ".yml"):
        return content_from_yaml(source, sources=sources)
    if not source.is_dir():
        raise InputError("no such run folder or codebook file", path=source,
                         hint="give a run folder made by `consensa run`, or its "
                              "review/codebook.yaml")
    run = load_run(source, sources=sources)
    if proposal or not has_review(run):
        content = content_from_proposal(run, proposal_reason(run))
    else:
        content = content_from_review(run, draft=draft)
    content.cases, notes = case_attributes(run)
    content.case_notes = [*content.case_notes, *notes]
    content.counted = counted_cases(content.data, content.assignments, run.segments)
    return content


def counted_cases(data: dict, assignments: pd.DataFrame,
                  segments: pd.DataFrame) -> dict[int, set[str]] | None:
    """Per category, the cases its frequency label counts; None for a themes run.

    A CQR label counts a case only through a segment the clustering placed in the
    category, a reassigned outlier above ``cqr.count_reassigned_above``, or a segment
    the judges placed: the codebook's ``counted_cases`` (the proposal's from the
    run, the agreed ones from the review's recount). A codebook.yaml written before
    it kept that list falls back on the run's own ``counted`` flag of the segments
    it holds, which misses only the segments the judges placed.
    """
    if "counted" not in segments.columns:
        return None
    flagged = set(segments.loc[segments["counted"].astype(bool), "segment_id"].astype(str))
    out = {}
    for _, c in _categories(data):
        cid = int(c["id"])
        if c.get("counted_cases") is not None:
            out[cid] = {str(x) for x in c["counted_cases"]}
            continue
        mine = assignments[(assignments["category_id"] == cid)
                           & assignments["segment_id"].astype(str).isin(flagged)]
        out[cid] = set(mine["case_id"].astype(str))
    return out


def has_review(run: RunData) -> bool:
    return (run.folder / "review" / DB).is_file()


def proposal_reason(run: RunData) -> str:
    """Why an export holds the proposal, in the words its files and the CLI show."""
    if has_review(run):
        return ("asked for with --proposal; the run has a review, whose agreed codebook "
                "this is not")
    return "this run has no review yet, so the names are Consensa's, not the judges'"


def subcategory_note(data: dict) -> list[ExportNote]:
    """A project note listing the proposal's subcategories that the export leaves out
    (not reviewed, or dropped by the judges: :func:`left_out_subcategories`), so their
    absence is said in the file; a kept one is a code under its category."""
    from ..review.apply import SUBCATEGORIES_NOT_REVIEWED, left_out_subcategories

    subs = left_out_subcategories(data)
    if not subs:
        return []
    return [ExportNote("subcategories", f"Proposed subcategories left out: {len(subs)}",
                       SUBCATEGORIES_NOT_REVIEWED + "\n" + "\n".join(
                           f"- {s['name']} (under {s['parent_name']}): {s['why']}"
                           for s in subs),
                       "Consensa", ("project", ""))]


def content_from_proposal(run: RunData, why: str) -> ExportContent:
    """The run's own themes and domains, shaped like ``codebook.yaml``, as the agreed
    export has them: each case's proposed core idea in each domain (a note on the
    domain's code, linked to the case), and no code for the interview frame, which is
    set apart from the cross-analysis and holds no category (:func:`proposal_domains`)."""
    n_cases = run.manifest.get("counts", {}).get("cases_analysed") or \
        run.segments["case_id"].nunique()
    domains = []
    by_id: dict[int, dict] = {}
    for d in proposal_domains(run).itertuples():
        entry = {"id": int(d.domain_id), "name": str(d.name),
                 "frequency_label": str(d.frequency_label), "n_cases": int(d.n_cases),
                 "n_segments": int(d.n_segments), "keywords": list(d.keywords),
                 "changes": [], "categories": []}
        by_id[int(d.domain_id)] = entry
        domains.append(entry)
    loose = []
    notes = []
    counted = _counted_by_theme(run.segments)
    for t in run.themes.sort_values("theme_id").itertuples():
        cat = {"id": int(t.theme_id), "name": str(t.name), "core_idea": _s(t.core_idea),
               "core_idea_source": "proposed", "keywords": list(t.keywords),
               "key_phrases": list(getattr(t, "key_phrases", []) or []),
               "frequency_label": str(t.frequency_label), "n_cases": int(t.n_cases),
               "n_segments": int(t.n_segments), "changes": [],
               "definition": _s(getattr(t, "definition", ""))}
        if counted is not None:
            mine = counted.get(int(t.theme_id), [])
            cat.update({"n_counted_cases": len(mine), "counted_cases": mine})
        did = int(t.domain_id)
        if did >= 0 and did not in by_id:
            by_id[did] = {"id": did, "name": f"Domain {did}", "frequency_label": "",
                          "n_cases": 0, "changes": [], "categories": []}
            domains.append(by_id[did])
        (by_id[did]["categories"] if did >= 0 else loose).append(cat)
        if cat["core_idea"]:
            notes.append(ExportNote(f"core-idea/{t.theme_id}", f"Core idea (proposed): {t.name}",
                                    cat["core_idea"], "Consensa", ("category", int(t.theme_id))))
    folder = RunFolder.open(run.folder)
    ideas = folder.cqr_parts()["core_ideas"]
    for r in ideas.sort_values(["case_id", "domain_id"]).itertuples() \
            if ideas is not None and len(ideas) else []:
        if int(r.domain_id) in by_id and _s(r.core_idea).strip():
            by_id[int(r.domain_id)].setdefault("core_ideas", []).append(
                {"case": str(r.case_id), "core_idea": str(r.core_idea), "source": "proposed",
                 "segment_ids": [str(x) for x in r.segment_ids]})
    data = {"consensa_codebook": 1, "run": {"name": run.name, "id": run.run_id},
            "cases_total": int(n_cases), "domains": domains, "loose_categories": loose,
            "rejected_themes": [],
            "subcategories_not_reviewed": folder.proposed_subcategories()}
    notes += case_core_idea_notes(data) + subcategory_note(data)
    seg = run.segments
    assignments = pd.DataFrame({"segment_id": seg["segment_id"], "case_id": seg["case_id"],
                                "category_id": seg["theme"].astype("int64")})
    return ExportContent(PROPOSAL, run, data, assignments, notes, origin=why)


def proposal_domains(run: RunData) -> pd.DataFrame:
    """The run's domains that a proposal's codebook lists: not the interview frame
    (greetings, background, closing), which holds no category, so that its code would
    be an empty one to code with; the agreed codebook leaves it out too."""
    from ..types import frame_domain_ids

    domains = run.domains
    if not len(domains):
        return domains
    held = {int(x) for x in run.themes["domain_id"]} if len(run.themes) else set()
    empty_frame = frame_domain_ids(domains) - held
    return domains[~domains["domain_id"].astype(int).isin(empty_frame)].sort_values(
        "domain_id")


def _counted_by_theme(segments: pd.DataFrame) -> dict[int, list[str]] | None:
    """Per proposed theme, the cases its label counts (the segments' ``counted``
    flag); None for a themes run, which has no such flag."""
    if "counted" not in segments.columns:
        return None
    seg = segments[segments["counted"].astype(bool) & (segments["theme"] >= 0)]
    return {int(t): sorted(set(g["case_id"].astype(str))) for t, g in seg.groupby("theme")}


def content_from_review(run: RunData, *, draft: bool) -> ExportContent:
    """The consensus of the review's current round, through the review's own code."""
    from ..review.agreement import review_status
    from ..review.apply import build_codebook
    from ..review.model import ReviewError
    from ..review.model import load_run as review_run
    from ..review.store import ReviewStore

    items = review_run(run.folder)
    with ReviewStore(items) as store:
        status = review_status(store)
        decided = store.consensus_times()
    # every round's comments, each with the judges' answers: the audit trail of the
    # whole process, not only of the round that is open now
    audits: dict[str, list[dict]] = {}
    for c in status.audit_trail:
        audits.setdefault(c["item"], []).append(c)
    pending = status.pending()
    open_labels = [f"{i.label} ({i.state})" for i in pending]
    if pending and not draft:
        listed = "; ".join(open_labels[:15]) + (" ..." if len(pending) > 15 else "")
        raise InputError(
            f"the review is in round {status.round} and {len(pending)} item(s) have no "
            f"consensus yet, so there is no agreed codebook to export: {listed}",
            path=run.folder,
            hint="resolve them (`consensa review status RUN` lists them; `consensa review "
                 "resolve ...`), or export what stands now marked as a draft with --draft, "
                 "or Consensa's proposal with --proposal")
    if pending:
        # an open item keeps the proposal: no consensus decision is the same as accept
        waiting = {id(i) for i in pending}
        status = replace(status, items=[replace(i, state="resolved") if id(i) in waiting
                                        else i for i in status.items])
    try:
        book = build_codebook(items, status)
    except ReviewError as exc:
        raise InputError(exc.reason, path=run.folder, hint=exc.hint) from exc
    data = book.data
    final_of = _final_category(book.assignments, run.segments)
    notes = []
    from ..review.model import core_idea_item

    for _, c in _categories(data):
        cid = int(c["id"])
        if c.get("core_idea"):
            notes.append(_core_idea_note(c))
            if c.get("core_idea_source") == "judges":      # written with their decision
                notes[-1].at = decided.get(f"theme:{cid}", "")
        if c.get("changes"):
            notes.append(ExportNote(f"changes/{cid}", f"Agreed changes: {c['name']}",
                                    "\n".join(f"- {x}" for x in c["changes"]), "Consensus",
                                    ("category", cid), at=decided.get(f"theme:{cid}", "")))
    for note in domain_notes(data):
        note.at = decided.get(f"domain:{note.about[1]}", "")
        notes.append(note)
    # a case's core idea the judges wrote: when they recorded it (the notes come in the
    # order of the codebook's core ideas, then those of domains no longer listed)
    written = [(idea["case"], int(idea.get("from_domain", d["id"])))
               if idea.get("source") == "judges" else None
               for d, idea in case_core_ideas_of(data)]
    written += [(c["case"], int(c["domain"])) for c in data.get("core_ideas_without_domain")
                or []]
    for note, item in zip(case_core_idea_notes(data), written, strict=True):
        if item is not None:
            note.at = decided.get(core_idea_item(*item), "")
        notes.append(note)
    rejected = {int(t["id"]) for t in data.get("rejected_themes") or []}
    for st in status.items:
        kind, ident = st.item.split(":", 1)
        about = _about(kind, ident, final_of, rejected, data)
        for c in audits.get(st.item, []):
            notes.append(_audit_note(c["round"], st.item, st.label, c["id"], c["by"],
                                     c["comment"], [(judge, a["answer"], a.get("text"))
                                                    for judge, a in c["answers"].items()],
                                     about, at=c.get("at") or "",
                                     answered=[a.get("at") or "" for a in c["answers"].values()]))
    # every round's comments written with the decisions, each said to be whose
    for c in status.comment_trail:
        kind, ident = c["item"].split(":", 1)
        notes.append(_comment_note(c["round"], c["item"], c["label"], c["comment"],
                                   _about(kind, ident, final_of, rejected, data), by=c["by"],
                                   judge=not c["consensus"], position=c["position"],
                                   at=c.get("at") or ""))
    for t in data.get("rejected_themes") or []:
        notes.append(_rejected_note(t))
        notes[-1].at = decided.get(f"theme:{t['id']}", "")
    notes += subcategory_note(data)
    if pending:
        notes.append(ExportNote("draft", f"DRAFT: {len(pending)} open item(s)",
                                "These items have no consensus yet and keep Consensa's "
                                "proposal:\n" + "\n".join(f"- {x}" for x in open_labels),
                                "Consensus", ("project", "")))
    elif draft:
        notes.append(ExportNote("draft", "DRAFT: a preview, no item open",
                                f"This is a draft of round {status.round}, exported with "
                                "--draft: no item was open, but the audit and any later "
                                "round may still change it. `consensa export` without "
                                "--draft exports the agreed codebook.",
                                "Consensus", ("project", "")))
    assignments = book.assignments[["segment_id", "case_id", "category_id"]].copy()
    assignments["category_id"] = assignments["category_id"].astype("int64")
    # a draft asked for is a draft even with nothing open (see the module docstring)
    return ExportContent(DRAFT if pending or draft else AGREED, run, data, assignments, notes,
                         judges=list(status.judges), auditors=list(status.auditors),
                         audited=list(status.audited),
                         not_audited=[d["label"] for d in status.not_audited],
                         open_items=open_labels, round=status.round,
                         origin=f"from the review store {run.folder / 'review' / DB}",
                         case_notes=[n for n in [stale_codebook(run.folder)] if n])


def stale_codebook(run_folder: Path, path: Path | None = None) -> str:
    """Why the codebook ``consensa review apply`` wrote (``path``, default
    ``RUN/review/codebook.yaml``) is not the review as it stands, or "": the review
    store has decisions, positions or audit comments recorded after it was written (its
    ``review.applied_at``). It still reads "agreed by ... audited by ...", as an export
    of the run folder computed from the store does: two files calling themselves the
    agreed codebook, one of them older, must say which."""
    import sqlite3
    from datetime import datetime

    from .. import safeyaml
    from ..review.store import CHOICE_ACTION

    path = Path(path) if path is not None else Path(run_folder) / "review" / "codebook.yaml"
    db = Path(run_folder) / "review" / DB
    if not path.is_file() or not db.is_file():
        return ""
    try:
        data = safeyaml.load_file(path, what="codebook") or {}
        applied = datetime.fromisoformat(str((data.get("review") or {})["applied_at"]))
    except (InputError, KeyError, TypeError, ValueError, AttributeError):
        return ""       # a codebook that does not say when it was written: nothing to tell
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        # a person's pre-coding choice is stored there too, and is no review decision
        last = con.execute("SELECT MAX(at) FROM audit_log WHERE action != ?",
                           (CHOICE_ACTION,)).fetchone()[0]
    except sqlite3.DatabaseError:
        return ""
    finally:
        con.close()
    # applied_at is to the second: what the same second holds is not counted
    if last is None or datetime.fromisoformat(last).replace(microsecond=0) <= applied:
        return ""
    return (f"{path} is stale: `consensa review apply` wrote it at {applied.isoformat()}, and "
            f"the review store {db} has decisions recorded since (the last at {last}); it is "
            f"not the codebook as the review stands: run `consensa review apply "
            f"{Path(run_folder)}` to write it again")


def stale_codebook_file(path: Path) -> str:
    """:func:`stale_codebook` of a codebook.yaml given alone: its run folder is the one
    it names (``run.folder``), or the folder above it."""
    from .. import safeyaml

    try:
        data = safeyaml.load_file(path, what="codebook") or {}
    except InputError:
        return ""
    folder = Path(str(((data.get("run") or {}) if isinstance(data, dict) else {}).get("folder")
                      or path.parent.parent))
    if not (folder / "review" / DB).is_file():
        folder = path.parent.parent
    return stale_codebook(folder, path)


#: the codebook.yaml format this version writes and reads (``consensa_codebook:``)
CODEBOOK_FORMAT = 1


def check_codebook(data: object, path: Path) -> dict:
    """``data``, a codebook read from ``path``, when its shape is the one every reader
    relies on: a list of domains, each with a whole-number ``id``, a ``name`` and a list
    of categories, each with a whole-number ``id`` (unique in the codebook) and a
    ``name``. A codebook is a file people open and edit by hand; a slip there must be
    an error naming the key, not a traceback in an export or a pre-coding, and two
    categories with one id would silently become one."""
    hint = ("fix the key in the file, or write the codebook again with "
            "`consensa review apply RUN`")
    if not isinstance(data, dict) or not isinstance(data.get("domains"), list):
        raise InputError("is not a Consensa codebook (no domains: list)", path=path,
                         field="domains", hint="give RUN/review/codebook.yaml from "
                                               "`consensa review apply`")
    version = data.get("consensa_codebook", CODEBOOK_FORMAT)
    if version != CODEBOOK_FORMAT:
        raise InputError(f"is a codebook of format {version!r}; this version of Consensa "
                         f"reads format {CODEBOOK_FORMAT}", path=path, field="consensa_codebook",
                         hint="use the Consensa version that wrote it, or write it again "
                              "with `consensa review apply RUN`")

    def whole(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    seen: dict[str, dict[int, str]] = {"domain": {}, "category": {}}

    def check(item: object, where: str, kind: str) -> None:
        if not isinstance(item, dict):
            raise InputError(f"is not a {kind} (a mapping with id: and name:)", path=path,
                             field=where, hint=hint)
        if not whole(item.get("id")):
            raise InputError(f"the {kind}'s id must be a whole number, not "
                             f"{item.get('id')!r}", path=path, field=f"{where}.id", hint=hint)
        if not isinstance(item.get("name"), str) or not item["name"].strip():
            raise InputError(f"the {kind} has no name", path=path, field=f"{where}.name",
                             hint=hint)
        if item["id"] in seen[kind]:
            raise InputError(f"{kind} id {item['id']} is also the id of "
                             f"{seen[kind][item['id']]}; each {kind} has its own id", path=path,
                             field=f"{where}.id", hint=hint)
        seen[kind][item["id"]] = where

    for i, domain in enumerate(data["domains"]):
        where = f"domains[{i}]"
        check(domain, where, "domain")
        categories = domain.get("categories", [])
        if not isinstance(categories, list):
            raise InputError("must be a list of categories", path=path,
                             field=f"{where}.categories", hint=hint)
        for j, category in enumerate(categories):
            check(category, f"{where}.categories[{j}]", "category")
    if not seen["category"]:
        raise InputError("has no categories: there is nothing to export or pre-code with",
                         path=path, field="domains",
                         hint="agree at least one category in the review, then `consensa "
                              "review apply RUN`")
    training = data.get("training")
    if training is not None and not (isinstance(training, dict) and all(
            isinstance(training.get(k), str) for k in ("run_folder", "assignments"))):
        raise InputError("must be a mapping with run_folder: and assignments: paths",
                         path=path, field="training", hint=hint)
    return data


def read_codebook_yaml(path: Path) -> dict:
    """``RUN/review/codebook.yaml`` as ``consensa review apply`` wrote it; a file that is
    not one is an InputError naming it and the key (:func:`check_codebook`)."""
    import yaml

    from .. import safeyaml

    try:
        data = safeyaml.load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"could not be read as a codebook ({type(exc).__name__})", path=path,
                         hint="give RUN/review/codebook.yaml as `consensa review apply` wrote "
                              "it") from exc
    return check_codebook(data, path)


def _core_idea_note(c: dict) -> ExportNote:
    """A category's core idea as a note, the same whether exported from the review or
    from the codebook.yaml it wrote: who wrote it, in its title and as its author."""
    judges = c.get("core_idea_source") == "judges"
    return ExportNote(f"core-idea/{int(c['id'])}",
                      f"Core idea ({'the judges' if judges else 'proposed'}): {c['name']}",
                      str(c["core_idea"]), "Consensus" if judges else "Consensa",
                      ("category", int(c["id"])))


def _comment_note(rnd: int, item: str, label: str, comment: str, about, *, by: str = "",
                  judge: bool = False, position: str = "", at: str = "") -> ExportNote:
    """A comment written with a decision in round ``rnd``, the same from the review or
    its codebook.yaml: the panel's with its consensus (by Consensus), or (``judge``) one
    judge's ``by`` with their own ``position``, by the judge and titled so: what one
    judge wrote ("@ben is this too broad?") is not the consensus's."""
    if judge:
        return ExportNote(f"position/{rnd}/{item}/{by}",
                          f"Comment of {by} on their position (round {rnd}): {label}",
                          f"{comment}\n\n({by}'s position: {position})", by, about, at=at)
    return ExportNote(f"consensus/{rnd}/{item}", f"Consensus comment (round {rnd}): {label}",
                      comment, "Consensus", about, at=at)


def _audit_note(rnd: int, item: str, label: str, comment_id: int, by: str, comment: str,
                answers: list[tuple[str, str, str | None]], about, *, at: str = "",
                answered: list[str] = ()) -> ExportNote:
    """An auditor's comment with the judges' answers, the same whether exported from the
    review or from the codebook.yaml it wrote: dated when the auditor wrote it
    (``at``), and changed when the last judge answered (the latest of ``answered``)."""
    lines = [f"- {judge}: {answer}" + (f" ({text})" if text else "")
             for judge, answer, text in sorted(answers)]
    body = comment + ("\n\nThe judges' answers:\n" + "\n".join(lines) if lines else "")
    return ExportNote(f"audit/{rnd}/{item}/{comment_id}", f"Auditor {by} (round {rnd}): {label}",
                      body, by, about, at=at, modified=max((a for a in answered if a),
                                                           default=""))


def _rejected_note(t: dict) -> ExportNote:
    """A rejected theme as a note, with the reason the judges recorded where there is one."""
    size = f" ({int(t['n_segments'])} segments)" if t.get("n_segments") is not None else ""
    reason = _s(t.get("comment"))
    return ExportNote(f"rejected/{t['id']}", f"Rejected: theme {t['id']} \"{t['name']}\"",
                      f"The judges rejected theme {t['id']} \"{t['name']}\"{size}"
                      + (f": {reason}" if reason else "."), "Consensus", ("project", ""))


def content_from_yaml(path: Path, *, sources: bool = True) -> ExportContent:
    """The codebook ``consensa review apply`` wrote, with its ``assignments.csv``."""
    from ..sheets import restore_frame

    data = read_codebook_yaml(path)
    folder = Path(str((data.get("run") or {}).get("folder") or path.parent.parent))
    if not (folder / "manifest.json").is_file():
        folder = path.parent.parent
    if not (folder / "manifest.json").is_file():
        raise InputError("the run this codebook was agreed on cannot be found (its run.folder "
                         f"{(data.get('run') or {}).get('folder')!r} and the folder above the "
                         "codebook are not run folders)", path=path, field="run.folder",
                         hint="keep codebook.yaml in RUN/review/, or export the run folder "
                              "itself")
    table = path.parent / str((data.get("training") or {}).get("assignments") or
                              "assignments.csv")
    if not table.is_file():
        raise InputError("has no assignments.csv beside it: the codings of the agreed "
                         "categories are there", path=path,
                         hint="run `consensa review apply RUN` again, or export the run folder")
    frame = restore_frame(pd.read_csv(table, dtype={"segment_id": str, "case_id": str},
                                      keep_default_na=False))
    missing = {"segment_id", "case_id", "category_id"} - set(frame.columns)
    if missing:
        raise InputError(f"lacks the column(s) {', '.join(sorted(missing))}", path=table,
                         hint="run `consensa review apply RUN` again")
    run = load_run(folder, sources=sources)
    review = data.get("review") or {}
    notes = []
    for _, c in _categories(data):
        if c.get("core_idea"):
            notes.append(_core_idea_note(c))
        if c.get("changes"):
            notes.append(ExportNote(f"changes/{c['id']}", f"Agreed changes: {c['name']}",
                                    "\n".join(f"- {x}" for x in c["changes"]), "Consensus",
                                    ("category", int(c["id"]))))
    notes += domain_notes(data) + case_core_idea_notes(data)
    assignments = frame[["segment_id", "case_id", "category_id"]].copy()
    assignments["category_id"] = pd.to_numeric(assignments["category_id"],
                                               errors="coerce").fillna(-1).astype("int64")
    # the auditors' comments and the judges' answers, as the review's export gives them
    # (a codebook written before it named each comment's item: on the project)
    final_of = _final_category(assignments, run.segments)
    rejected = {int(t["id"]) for t in data.get("rejected_themes") or []}

    def about_item(item: str):
        kind, _, ident = item.partition(":")
        return _about(kind, ident, final_of, rejected, data) if ident.lstrip("-").isdigit() \
            else ("project", "")

    # (a codebook written before comments were kept per round has only the last
    # round's consensus comments: no round and no written_with)
    for c in review.get("comments") or []:
        item = str(c.get("item_id") or "")
        notes.append(_comment_note(int(c.get("round") or review.get("round") or 0), item,
                                   str(c.get("item") or item), str(c.get("comment") or ""),
                                   about_item(item), by=str(c.get("by") or ""),
                                   judge=c.get("written_with") == "position",
                                   position=str(c.get("position") or ""),
                                   at=str(c.get("at") or "")))
    for c in review.get("audit") or []:
        item = str(c.get("item_id") or c.get("item") or "")
        about = about_item(item)
        notes.append(_audit_note(int(c.get("round") or 0), item, str(c.get("item") or item),
                                 c.get("comment_id", 0), str(c.get("by") or ""),
                                 str(c.get("comment") or ""),
                                 [(str(a.get("judge")), str(a.get("answer")), a.get("text"))
                                  for a in c.get("answers") or []], about,
                                 at=str(c.get("at") or ""),
                                 answered=[str(a.get("at") or "") for a in
                                           c.get("answers") or []]))
    notes += [_rejected_note(t) for t in data.get("rejected_themes") or []]
    notes += subcategory_note(data)
    content = ExportContent(AGREED, run, data, assignments, notes,
                            judges=list(review.get("judges") or []),
                            # a codebook written before audits were counted says
                            # nothing of its audit rather than claim one
                            auditors=list(review.get("auditors") or []) if "audited_by" in review
                            else [],
                            audited=list(review.get("audited_by") or []),
                            not_audited=[str(x.get("item") or x.get("item_id"))
                                         for x in review.get("not_audited") or []],
                            round=int(review.get("round") or 0),
                            origin=f"as written to {path} by `consensa review apply`")
    content.cases, content.case_notes = case_attributes(run)
    stale = stale_codebook(folder, path)
    if stale:
        # both call themselves the agreed codebook: the older one must say it is older
        content.origin += f"; STALE: {stale}"
    content.counted = counted_cases(data, assignments, run.segments)
    stale = [c["name"] for _, c in _categories(data) if content.counted is not None
             and c.get("counted_cases") is None and c.get("n_counted_cases") is not None
             and len(content.counted[int(c["id"])]) != int(c["n_counted_cases"])]
    if stale:
        # a file that disagrees with the label it sits beside is worth a word
        content.case_notes.append(
            f"{path} was written before it listed each category's counted cases: for "
            f"{len(stale)} categor{'y' if len(stale) == 1 else 'ies'} ("
            + "; ".join(stale[:5]) + (" ..." if len(stale) > 5 else "")
            + ") the presence matrix marks the cases the run counted, not the segments "
            "the judges placed; run `consensa review apply RUN` again for the agreed ones")
    return content


def case_core_ideas_of(data: dict):
    """(domain entry, core idea entry) for every case's core idea in the codebook (a CQR
    run's review: ``core_ideas`` of each domain, the judges' where they wrote one)."""
    for d in data.get("domains") or []:
        for c in d.get("core_ideas") or []:
            yield d, c


def domain_notes(data: dict) -> list[ExportNote]:
    """What the judges changed in each domain (renamed, merged in, split, created), as
    notes on the domain's code: the categories' changes reached the project, the
    domains' left no trace. (A definition the judges wrote is the code's description.)"""
    out = []
    for d in data.get("domains") or []:
        did = int(d["id"])
        if d.get("no_category"):
            # kept by the judges with no category in it: the code is empty, and says why
            out.append(ExportNote(f"domain-no-category/{did}", f"No category: {d['name']}",
                                  "The judges kept this domain, and no category of the "
                                  f"codebook is in it: {d['no_category']}. Its core ideas "
                                  "are notes on it.", "Consensus", ("domain", did)))
        if d.get("changes"):
            out.append(ExportNote(f"domain-changes/{did}", f"Agreed changes: {d['name']}",
                                  "\n".join(f"- {x}" for x in d["changes"]), "Consensus",
                                  ("domain", did)))
    return out


def case_core_idea_notes(data: dict) -> list[ExportNote]:
    """The core idea of each case in each domain as a note on the domain's code, by the
    judges (Consensus) where they wrote it, else proposed (Consensa); a core idea the
    judges wrote for a domain the codebook no longer lists (``core_ideas_without_domain``)
    as a note on the project."""
    out = []
    for d, c in case_core_ideas_of(data):
        judges = c.get("source") == "judges"
        origin = int(c.get("from_domain", d["id"]))
        # a domain merged into this one keeps its core ideas: a case can have one from
        # each, and the title says which is which
        merged = (f" (from domain {origin}"
                  + (f" \"{c['from_domain_name']}\"" if c.get("from_domain_name") else "")
                  + ", merged in)") if origin != int(d["id"]) else ""
        # ... unless the judges merged the case's core ideas into one, for the domains it names
        folded = [int(m["domain"]) for m in c.get("merged_from") or () if m.get("domain") is not None]
        if folded:
            merged += f" (one core idea for domains {', '.join(str(x) for x in [origin] + folded)})"
        moved = ""
        if c.get("moved_from") is not None:
            # the sentences of segments the judges moved here: a core idea of its own
            merged += f" (from domain {int(c['moved_from'])}: its segments moved here)"
            moved = f"/moved-from-{int(c['moved_from'])}"
        out.append(ExportNote(
            f"case-core-idea/{d['id']}/{origin}/{c['case']}{moved}",
            f"Core idea of {c['case']} ({'the judges' if judges else 'proposed'}): "
            f"{d['name']}{merged}",
            _core_idea_text(c), "Consensus" if judges else "Consensa", ("domain", int(d["id"])),
            case=str(c["case"])))
    for c in data.get("core_ideas_without_domain") or []:
        # a judges' core idea whose segments are in no category of the codebook: a note
        # on the project, linked to its case, so that no decision stays behind
        out.append(ExportNote(
            f"case-core-idea/without-domain/{c['domain']}/{c['case']}",
            f"Core idea of {c['case']} (the judges): domain {c['domain']} "
            f"\"{c.get('domain_name') or ''}\", no longer in the codebook",
            _core_idea_text(c), "Consensus", ("project", ""), case=str(c["case"])))
    return out


def _core_idea_text(c: dict) -> str:
    """A case's core idea as a note's text, with the segments it came from."""
    return str(c["core_idea"]) + (f"\n(from segments {', '.join(c['segment_ids'])})"
                                  if c.get("segment_ids") else "")


def _categories(data: dict):
    for d in data.get("domains") or []:
        for c in d.get("categories") or []:
            yield d, c
    for c in data.get("loose_categories") or []:
        yield None, c


def _final_category(assignments: pd.DataFrame, segments: pd.DataFrame) -> dict[int, int]:
    """Proposed theme -> the agreed category most of its segments ended in (-1: none)."""
    both = pd.DataFrame({"theme": segments["theme"].to_numpy(),
                         "category": assignments.set_index("segment_id").loc[
                             segments["segment_id"], "category_id"].to_numpy()})
    out = {}
    for theme, grp in both.groupby("theme"):
        kept = grp[grp["category"] >= 0]["category"]
        out[int(theme)] = int(kept.mode().iloc[0]) if len(kept) else -1
    return out


def _about(kind: str, ident: str, final_of: dict[int, int], rejected: set[int],
           data: dict) -> tuple[str, object]:
    """What a note on a review item is attached to in the agreed codebook."""
    if kind == "theme":
        tid = int(ident)
        ids = {int(c["id"]) for _, c in _categories(data)}
        if tid in ids:
            return ("category", tid)
        if tid not in rejected and final_of.get(tid, -1) in ids:
            return ("category", final_of[tid])
        return ("project", "")
    if kind == "domain":
        if int(ident) in {int(d["id"]) for d in data.get("domains") or []}:
            return ("domain", int(ident))
        return ("project", "")
    return ("project", "")


def _s(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(x)
