"""The ``consensa review ...`` commands, as functions that return what happened.

pipeline/cli.py parses the arguments and prints; nothing here prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..fsutil import atomic_write_text
from .agreement import current_label, review_status, status_text
from .apply import (
    build_codebook,
    cases_text,
    left_out_subcategories,
    live_codebook,
    name_clashes,
    unproposed_core_ideas,
    write_codebook,
)
from .html import render_packet
from .model import Decision, ReviewError, check_set, load_run
from .signing import WorkbookCheck, ensure_key, export_command, load_key
from .store import ReviewStore, db_path, listing
from .workbook import build_workbook, exported_time, read_workbook, write_workbook


def export(run_folder: Path, judges: list[str], auditors: list[str] = (), force: bool = False,
           consensus: bool = False, by: str = "") -> list[Path]:
    run = load_run(run_folder)
    if not consensus and not db_path(run.folder).is_file() and len(set(judges)) < 2:
        # refused before the store exists: a refused command leaves no review behind
        # (a store with a panel of one would stop the proposal's exports as "open")
        raise ReviewError("a CQR review needs at least two judges (three or more is usual)",
                          hint="give them with --judges ana,ben,caro; nothing was written")
    with ReviewStore(run, create=True) as store:
        if judges or auditors:
            store.set_panel(judges, auditors)
        if consensus and by:
            store.check_person(by)
        judges_all, auditors_all = store.judges(), store.auditors()
        if len(judges_all) < 2 and not consensus:
            raise ReviewError("a CQR review needs at least two judges (three or more is usual)",
                              hint="give them with --judges ana,ben,caro")
        folder = run.folder / "review" / f"round-{store.round}"
        people = [(j, "judge") for j in judges] + [(a, "auditor") for a in auditors]
        st = review_status(store)
        shown = st.effective_consensus()
        baseline = {i.item: i.baseline for i in st.items if i.baseline is not None}
        start = starting_point(st)
        worked = bool(store.positions() or store.consensus())
        # an item carried from the round before is where this round starts, not its
        # consensus: a round-2 workbook starts from it, and so does the judges' round
        decided = all(i.state in ("agreed", "resolved") for i in st.items)
        if judges and decided and worked and not consensus:
            origin = ("the proposal" if store.round == 1
                      else f"round {store.round - 1}'s consensus")
            raise ReviewError(
                f"every item of round {store.round} has its consensus of this round, so a "
                f"judge's workbook of round {store.round} would only start the round again "
                f"from {origin}; nothing was written",
                hint="open the next round, which starts from this consensus: `consensa review "
                f"next-round {run.folder}`, then export its workbooks (auditors' workbooks of "
                "this round can still be exported: they show the consensus)")
        prefill: dict[str, Decision] = {}
        if consensus:
            people = [(by or "consensus", "consensus")]
            prefill = shown
        paths = [folder / f"{p}.xlsx" for p, _ in people]
        existing = [p for p in paths if p.exists()]
        if existing and not force:
            raise ReviewError(f"the workbook exists already (it may hold decisions): {existing[0]}",
                              hint="import it first, or pass --force to write it again")
        key = ensure_key(run.folder)
        more = []
        if shown and len(run.core_ideas):
            # a case whose segments the judges moved into a domain needs its core idea there
            more = [c for cs in unproposed_core_ideas(
                run, build_codebook(run, st, draft=True).data).values() for c in cs]
        for (person, role), path in zip(people, paths):
            fill = prefill if role == "consensus" else start if role == "judge" else {}
            write_workbook(path, build_workbook(run, person, role, store.round, fill, key=key,
                                                shown=shown, baseline=baseline,
                                                more_core_ideas=more))
        packet = folder / "packet.html"
        atomic_write_text(packet, render_packet(run, store.round, judges_all, auditors_all,
                                                    standing=baseline))
    return paths + [packet]


def starting_point(st) -> dict[str, Decision]:
    """What a judge's workbook is prefilled with: from round 2 on, the round before's
    consensus (their own comments start empty: the old ones are in the store and the
    log); nothing in round 1."""
    return {i.item: replace(i.baseline, comment="") for i in st.items if i.baseline is not None}


#: What to do about the problems an import lists: rows, or whole files (a file that
#: is not a workbook, one of another run or round, two of one judge).
FIX_HINT = ("fix what is listed (the rows named, or the files) and import again; nothing "
            "was imported")


def import_workbooks(run_folder: Path, files: list[Path], consensus: bool = False,
                     by: str = "", workbook_wins: bool = False) -> str:
    """Read and check every file, then record all of it in one transaction.

    A judge's row left as the workbook was exported (prefilled with the round before's
    consensus) takes no position against one the judge recorded elsewhere (the web app,
    another workbook): that one is kept, and said. A row the judge changed, where the
    judge also recorded another position after the workbook was exported (not by
    importing a copy of this workbook), refuses the import, unless ``workbook_wins``.
    A row that is the position recorded already is not recorded again."""
    run = load_run(run_folder)
    check = _workbook_check(run)
    read, errors = [], []
    for f in files:
        if Path(f).is_dir():
            # a folder of the round's workbooks: its .xlsx files are what was meant
            errors.append(f"{f}: a folder, not a workbook; give the workbooks themselves "
                          f"(e.g. {Path(f) / '*.xlsx'})")
            continue
        if not Path(f).is_file():
            errors.append(f"{f}: no such file" + _exported_as(run.folder, Path(f)))
            continue
        wb, errs = read_workbook(Path(f), run, check)
        errors += errs
        if wb is not None:
            read.append(wb)
    with ReviewStore(run) as store:
        for wb in read:
            if wb.round != store.round:
                errors.append(f"{wb.path.name}, sheet '_meta': the workbook is for round {wb.round}, "
                              f"the review is in round {store.round}")
            if not consensus and wb.role == "consensus":
                errors.append(f"{wb.path.name}: a consensus workbook; import it with --consensus")
            if consensus and wb.role != "consensus":
                # one judge's positions are not the panel's consensus
                errors.append(f"{wb.path.name}: {wb.person}'s {wb.role} workbook, not a "
                              "consensus workbook; import it without --consensus, or export "
                              "one with `consensa review export RUN --consensus --by NAME`")
        people = [wb.person for wb in read if wb.role == "judge"]
        dupes = {p for p in people if people.count(p) > 1}
        errors += [f"two workbooks of judge {p!r} in one import" for p in sorted(dupes)]
        if consensus:
            decisions = [d for wb in read for d in wb.decisions]
            errors += check_set(decisions, run)
            if errors:
                raise ReviewError(listing(errors), hint=FIX_HINT)
            if by:
                store.check_person(by)
            decisions, same = _changed_from_standing(decisions, store.standing())
            n = store.resolve(decisions, by=by or ",".join(wb.person for wb in read)) \
                if decisions else 0
            unchanged = f"; {same} row(s) as the consensus stands, left as recorded" if same \
                else ""
            return f"imported {n} consensus decision(s) from {len(read)} workbook(s){unchanged}"
        # each row's own problems too (an unknown decision, a merge into itself), listed
        # with the files', so that one import names everything to fix, not one kind per
        # attempt; and every row of a workbook together, though the rows that are the
        # position already or stay behind a later one are not recorded (a merge cycle
        # with one of them is still one)
        for wb in read:
            if wb.role == "judge":
                errors += check_set(wb.decisions, store.run)
        if errors:
            raise ReviewError(listing(errors), hint=FIX_HINT)
        judged = [wb for wb in read if wb.role == "judge"]
        comments = [(wb.person, item, comment, where) for wb in read if wb.role == "auditor"
                    for item, comment, where in wb.comments]
        stored = store.positions()
        # a workbook exported before the exported values were written in it: its
        # prefilled rows are the round's starting point, as the export gave it
        start = starting_point(review_status(store)) \
            if any(wb.exported is None for wb in judged) else {}
        agreed: list[dict[str, Decision]] = []

        def label(item: str) -> str:
            # by the names agreed so far, as `review status` names them; looked up only
            # for an import that has something to say
            if not agreed:
                agreed.append(store.standing())
            return store.run.label(item, agreed[0])

        plan = _plan_positions(judged, stored, store.position_origins(), start, label,
                               workbook_wins)
        if plan.conflicts:
            raise ReviewError(listing(plan.conflicts), hint=_conflict_hint(run, judged,
                                                                           plan.conflicts))
        batches = plan.batches
        replaced = _replaced_positions(batches, stored)
        kept = _kept_positions(read, stored)
        # read above outside the write: a position saved in the web app meanwhile
        # refuses the import rather than being replaced unseen
        versions = {wb.person: store.item_versions(wb.person) for wb in judged}
        n = store.record_positions(
            batches, what="; ".join(str(f) for f in files), comments=comments,
            expect={(j, d.item): versions[j].get(d.item, 0) for j, ds in batches for d in ds},
            workbooks=[(wb.person, wb.path.name, wb.exported_at) for wb in judged])
    # whose each workbook is, from its signed _meta sheet, not its file name: a copy of
    # one judge's workbook saved under another's name records the first judge's positions
    whose = ", ".join(f"{wb.person}'s ({wb.path.name})" if wb.path.stem != wb.person
                      else wb.path.name for wb in read)
    out = f"imported {n} decision(s) and comment(s) from {len(read)} workbook(s): {whose}"
    if plan.as_exported:
        # a later round's workbook is prefilled: "imported 29" for one row changed hid
        # which rows were the judge's doing
        out += (f"\nof the judges' rows recorded: {plan.changed} changed in the workbook, "
                f"{plan.as_exported} left as exported (the round before's consensus, "
                "recorded as the judge's position: it keeps that consensus)")
    if replaced:
        # an older copy of a workbook imported after a newer one puts its positions back:
        # never without a word (the earlier ones stay in the audit log)
        shown = "; ".join(replaced[:10]) + (f"; ... and {len(replaced) - 10} more"
                                            if len(replaced) > 10 else "")
        out += (f"\n{len(replaced)} position(s) replace a different one the same judge "
                f"recorded before (kept in the audit log): {shown}")
    if plan.same:
        out += (f"\n{plan.same} row(s) hold the position recorded already and were not "
                "recorded again")
    if plan.kept:
        # a row left as exported takes no position: the judge's own, recorded elsewhere,
        # stands, and the import says so rather than putting the starting point back
        shown = "; ".join(plan.kept[:10]) + (f"; ... and {len(plan.kept) - 10} more"
                                             if len(plan.kept) > 10 else "")
        out += (f"\n{len(plan.kept)} row(s) left as the workbook was exported did not replace "
                "a position recorded elsewhere (a row left as it was takes no position; to "
                f"change one, write the new decision in its row or in the browser): {shown}")
    if kept:
        # a row cleared in the workbook takes nothing back: the judge must not think it did
        shown = "; ".join(kept[:10]) + (f"; ... and {len(kept) - 10} more"
                                        if len(kept) > 10 else "")
        out += (f"\n{len(kept)} position(s) recorded before are blank in the workbook and "
                f"stay as recorded (a blank row takes no position back; to change one, "
                f"write the new decision in its row and import again): {shown}")
    return out


@dataclass
class _Plan:
    """What an import of judges' workbooks records (:func:`_plan_positions`)."""

    batches: list[tuple[str, list[Decision]]] = field(default_factory=list)
    #: rows that are the judge's position already: not recorded again
    same: int = 0
    #: rows left as exported whose judge's position recorded elsewhere stands, in words
    kept: list[str] = field(default_factory=list)
    #: rows the judge changed, against a position the judge recorded after the export
    conflicts: list[str] = field(default_factory=list)
    #: rows recorded as the workbook was exported (a later round's: the round before's
    #: consensus, which the judge then keeps), and rows the judge changed
    as_exported: int = 0
    changed: int = 0


def _content(d: Decision) -> tuple:
    """All a position says, not where it came from: two alike are one position."""
    return (d.decision, d.new_name, d.target, d.domain, tuple(sorted(d.segments)),
            d.core_idea, d.comment)


def _made(origin: dict) -> str:
    """Where and when a stored position was recorded, in words: ``made 2026-05-04
    10:12 UTC in the browser``."""
    at = str(origin.get("at", "?"))[:16].replace("T", " ") + " UTC"
    source = origin.get("source", "")
    if source.startswith("web form"):
        how = "in the browser"
    elif ", sheet '" in source:
        how = f"by importing {source.split(', sheet')[0]}"
    else:
        how = f"from {source}" if source else "elsewhere"
    return f"made {at} {how}"


def _plan_positions(judged: list, stored: dict[str, dict[str, Decision]],
                    origins: dict[tuple[str, str], dict], start: dict[str, Decision],
                    label, workbook_wins: bool) -> _Plan:
    """Which rows of the judges' workbooks are recorded.

    A round-2 workbook is prefilled with the round before's consensus: a row the judge
    left as it was exported holds no decision of theirs, and imported again it put the
    starting point back over the renames the judge had made since in the web app or in
    another copy of the workbook (the items went from agreed to disputed). Such a row
    never replaces a position of the judge recorded elsewhere. A row the judge changed
    replaces the position, but for one the judge recorded after this workbook was
    exported, other than by importing a copy of it: both are the judge's later word,
    and which one stands is the judge's to say (``workbook_wins``, or a fresh workbook).
    A row that is the position already is not recorded again (the log would show a
    change that was none, and the position's time would move). ``label`` names an item."""
    plan = _Plan()
    for wb in judged:
        exported_at = exported_time(wb.exported_at)
        untouched = wb.untouched_items(start)
        write = []
        for d in wb.decisions:
            old = stored.get(d.item, {}).get(wb.person)
            if old is None:
                write.append(d)
                continue
            if _content(old) == _content(d):
                plan.same += 1
                continue
            origin = origins.get((d.item, wb.person), {})
            made = exported_time(origin.get("at", ""))
            later = made is None or exported_at is None or made > exported_at
            if d.item in untouched:
                plan.kept.append(
                    f"kept {wb.person}'s {'later ' if later else ''}position on "
                    f"{label(d.item)}: {old.describe()} ({_made(origin)}"
                    f"{'' if later else ', before the workbook was exported'}), not the "
                    f"workbook's unchanged row ({d.source}: {d.describe()})")
                continue
            if later and origin.get("exported_at") != wb.exported_at and not workbook_wins:
                plan.conflicts.append(
                    f"{d.source}: {wb.person} changed {label(d.item)} to "
                    f"'{d.describe()}' in the workbook, and recorded '{old.describe()}' on "
                    f"it after the workbook was exported ({_made(origin)}; the workbook "
                    f"was exported {wb.exported_at[:16].replace('T', ' ')} UTC)")
                continue
            write.append(d)
        plan.batches.append((wb.person, write))
        left = sum(1 for d in write if d.item in untouched)
        plan.as_exported += left
        plan.changed += len(write) - left
    return plan


def _conflict_hint(run, judged: list, conflicts: list[str]) -> str:
    """What to do about rows changed in a workbook that is behind the judge's later
    positions."""
    whose = sorted({wb.person for wb in judged if any(c.startswith(wb.path.name + ",")
                                                      for c in conflicts)})
    exports = " or ".join(export_command(run.folder, {"person": p, "role": "judge"})
                          for p in whose)
    return ("nothing was imported. The workbook is older than these positions: to keep "
            "them, export a fresh workbook (" + exports + "; move this one out of the round "
            "folder first, as it is written over), copy the changes you still want into it "
            "and import that one (its rows left as exported replace no position); to let "
            "this workbook's changed rows replace them, import it again with "
            "--workbook-wins (its unchanged rows still replace none)")


def _kept_positions(read: list, stored: dict[str, dict[str, Decision]]) -> list[str]:
    """``judge on item (place): position`` for each position a judge recorded before
    (from an earlier workbook or the browser) whose row this import's workbook of that
    judge leaves blank."""
    out = []
    for wb in read:
        if wb.role != "judge":
            continue
        decided = {d.item for d in wb.decisions}          # (an item on two sheets)
        for item, where in wb.blank.items():
            old = stored.get(item, {}).get(wb.person)
            if old is not None and item not in decided:
                out.append(f"{wb.person} on {item} ({where}): {old.describe()}")
    return out


def _replaced_positions(batches: list[tuple[str, list[Decision]]],
                        stored: dict[str, dict[str, Decision]]) -> list[str]:
    """``judge on item: old -> new`` for each position that replaces a different one."""
    out = []
    for judge, decisions in batches:
        for d in decisions:
            old = stored.get(d.item, {}).get(judge)
            if old is not None and (old.key(), old.core_idea, old.comment) != \
                    (d.key(), d.core_idea, d.comment):
                out.append(f"{judge} on {d.item}: {old.describe()} -> {d.describe()}")
    return out


def _changed_from_standing(decisions: list[Decision],
                           standing: dict[str, Decision]) -> tuple[list[Decision], int]:
    """The consensus workbook's decisions that change what stands, and how many do not.

    A consensus workbook is exported prefilled with the consensus as it stands, but its
    sheets carry no column for some of what a decision holds (a new domain's
    definition, the reason recorded with a rejection): imported untouched, every row was
    recorded again without them, and they were lost. A row that decides what stands
    decides is left as recorded; one whose decision is the same but whose text columns
    the sheet left empty keeps the recorded text."""
    changed, same = [], 0
    for d in decisions:
        s = standing.get(d.item)
        if s is not None and d.key() == s.key():
            d = replace(d, core_idea=d.core_idea or s.core_idea, comment=d.comment or s.comment)
            if (d.new_name, d.core_idea, d.comment) == (s.new_name, s.core_idea, s.comment):
                same += 1
                continue
        changed.append(d)
    return changed, same


def _exported_as(run_folder: Path, missing: Path) -> str:
    """Where `review export` wrote a workbook of that name, when it did: a workbook is
    given by its path, and a bare name is looked for in the current folder only."""
    rounds = sorted(run_folder.glob(f"review/round-*/{missing.name}"),
                    key=lambda p: int(p.parent.name.split("-")[1])
                    if p.parent.name.split("-")[1].isdigit() else 0)
    return f" (the exported one is {rounds[-1]}: give its path)" if rounds else ""


def _workbook_check(run) -> WorkbookCheck:
    """The signature check for this review's workbooks; its panel and rounds let a
    refusal say whose a workbook was when it was exported."""
    with ReviewStore(run) as store:
        return WorkbookCheck(load_key(run.folder), run.folder, tuple(store.panel().items()),
                             store.round)


def status(run_folder: Path) -> tuple[str, bool]:
    run = load_run(run_folder)
    with ReviewStore(run) as store:
        st = review_status(store)
    return status_text(st, run) + codebook_text(live_codebook(run, st)), st.closed


def codebook_text(live: dict) -> str:
    """The codebook as it stands, in short: domains, their categories, what changed."""
    cb = live["codebook"]
    head = ("Codebook as it stands (a draft: open items stand as proposed, or as the "
            "round before left them)" if live["draft"]
            else "Codebook as it stands (every item has its consensus)")
    lines = ["", head]
    for d in cb["domains"]:
        lines.append(f"  {d['name']}  [{d['frequency_label']}, {d['n_cases']}/"
                     f"{cb['cases_total']} cases]" + ("  (changed)" if d["changed"] else ""))
        if d.get("definition"):
            lines.append(f"      definition: {d['definition']}")
        if d.get("no_category"):
            lines.append(f"      no category: {d['no_category']}")
        for c in d["categories"]:
            # the cases the label was counted from, beside every case it has; a
            # subcategory the judges made sits under its category (the codebook lists
            # it right after it), one level in
            lead = "        - " if "parent" in c else "    - "
            lines.append(f"{lead}{c['name']}  [{c['frequency_label']}, "
                         f"{cases_text(c, cb['cases_total'])}]"
                         + (f"  ({'; '.join(c['changes'])})" if c["changes"] else ""))
    for t in cb["rejected_themes"]:
        lines.append(f"  rejected: theme {t['id']} \"{t['name']}\"")
    return "\n".join(lines) + "\n"


def resolve(run_folder: Path, *, theme: str | None = None, domain: str | None = None,
            segment: str | None = None, decision: str, by: str, name: str = "",
            target: str = "", to_domain: str = "", segments: str = "", core_idea: str = "",
            comment: str = "", core_idea_of: str | None = None, themes: str = "",
            subcategory: str | None = None) -> str:
    """Record one consensus decision. ``core_idea_of`` (``CASE:DOMAIN_ID``) names a core
    idea (decision ``edit``, its text in ``core_idea``; or ``merge`` into the case's core
    idea in domain ``target``, once the domains are merged); ``themes`` are the theme ids a
    domain split moves to the new domain, whose id the store gives; ``subcategory`` a
    subcategory the run proposed (decision ``keep``, with an optional new ``name``, or
    ``drop``)."""
    kind, ident = _one_item(theme, domain, segment, core_idea_of, subcategory)
    if not by.strip():
        raise ReviewError("say who records the consensus with --by NAME")
    split = kind == "domain" and decision.strip().lower() == "split"
    if themes and not split:
        raise ReviewError("--themes goes with --domain ID --decision split only")
    run = load_run(run_folder)
    with ReviewStore(run) as store:
        store.check_person(by)
        if split and not target:
            target = str(store.unused_id("domain"))
        # named as it stands before this decision: a rename reads "theme 1 "old":
        # rename to "new""
        label = current_label(store, f"{kind}:{ident}")
        d = Decision.parse(f"{kind}:{ident}", {
            "decision": decision, "new_name": name, "target": target, "domain": to_domain,
            "segments": themes if split else segments, "core_idea": core_idea,
            "comment": comment}, source="command line")
        store.resolve([d], by=by)
        st = review_status(store)
    left = len(st.pending())
    return (f"consensus on {label}: {d.describe()} (recorded by {by}); "
            + (f"every item of round {st.round} has its consensus (the round stays open "
               "until `consensa review next-round`)" if not left
               else f"{left} item(s) still open"))


def audit(run_folder: Path, *, by: str, comment: str, theme: str | None = None,
          domain: str | None = None, segment: str | None = None,
          core_idea_of: str | None = None, subcategory: str | None = None) -> str:
    kind, ident = _one_item(theme, domain, segment, core_idea_of, subcategory)
    run = load_run(run_folder)
    with ReviewStore(run) as store:
        store.add_audit_comment(f"{kind}:{ident}", by, comment)
        label = current_label(store, f"{kind}:{ident}")
    return f"auditor comment on {label} recorded"


def _one_item(theme, domain, segment, core_idea_of, subcategory=None) -> tuple[str, str]:
    given = [(k, v) for k, v in (("theme", theme), ("domain", domain), ("segment", segment),
                                 ("core_idea", core_idea_of), ("subcategory", subcategory))
             if v is not None]
    if len(given) != 1:
        raise ReviewError("name exactly one item: --theme ID, --domain ID, --segment ID, "
                          "--core-idea-of CASE:DOMAIN_ID or --subcategory ID")
    kind, ident = given[0]
    ident = ident.strip()
    # theme and domain ids are whole numbers; a core idea is named by its case and its
    # domain's number (the case id may hold a colon, so the domain is after the last)
    case, colon, number = ident.rpartition(":") if kind == "core_idea" else ("-", ":", ident)
    if kind != "segment" and not (case.strip() and colon and number.isascii()
                                  and number.isdigit()):
        option = "--" + kind.replace("_", "-") + ("-of" if kind == "core_idea" else "")
        form = "CASE:DOMAIN_ID, e.g. P01:2" if kind == "core_idea" else "ID, a whole number"
        raise ReviewError(f"{option} {ident!r}: expected {option} {form}",
                          hint="the ids are in the workbook and in `consensa review status RUN`")
    return kind, ident


def answer(run_folder: Path, *, comment: int, by: str, answer: str, text: str = "",
           undo: bool = False) -> str:
    """A judge's answer to an auditor's comment (accept, or argue with a reason), or with
    ``undo`` the judge's answer taken back."""
    run = load_run(run_folder)
    with ReviewStore(run) as store:
        if undo:
            row = store.undo_answer(comment, by)
            return (f"{by}'s answer to audit comment {comment} on {current_label(store, row['item'])} "
                    "taken back")
        row = store.answer_audit(comment, by, answer, text)
        label = current_label(store, row["item"])
    return (f"{by} {'accepts' if answer == 'accept' else 'argues against'} audit comment "
            f"{comment} by {row['by']} on {label}")


def next_round(run_folder: Path, by: str, undo: bool = False, force: bool = False) -> str:
    """Close the current round (every item must have its consensus; unless ``force``,
    every judge must have answered each auditor's comment, and a round after the first
    must have a decision of its own, as the web app asks) and open the next, which
    starts from that consensus; with ``undo``, go back to the round before while
    nothing was recorded in the new one."""
    run = load_run(run_folder)
    with ReviewStore(run) as store:
        store.check_person(by)
        if undo:
            back = store.reopen_round(by)
            return f"round {back + 1} undone: round {back} is open again"
        st = review_status(store)
        if not st.closed:
            pending = "; ".join(f"{i.label} ({i.state})" for i in st.pending()[:10])
            raise ReviewError(f"round {st.round} is still open: {len(st.pending())} item(s) "
                              f"have no consensus decision: {pending}",
                              hint="resolve them with `consensa review resolve`, then open "
                              "the next round")
        unanswered = st.unanswered()
        if unanswered and not force:
            raise ReviewError(
                f"round {st.round}: {len(unanswered)} auditor's comment(s) still wait for a "
                "judge's answer: " + "; ".join(unanswered[:10])
                + (" ..." if len(unanswered) > 10 else ""),
                hint=f"answer with `consensa review answer {run_folder} --comment N --by JUDGE "
                "--accept` (or --argue WHY), or close the round without them with --force")
        # the web app's rule too (pipeline/web/pages.py next_round_refusal), in its words
        idle = st.nothing_decided()
        if idle and not force:
            raise ReviewError(
                f"round {st.round} cannot be closed: {idle}",
                hint=f"decide in round {st.round} (`consensa review resolve`, the workbooks "
                "or the web app), or close it as it is with --force")
        new = store.next_round(by, closed=True, round=st.round)
    left = (f" {len(unanswered)} auditor's comment(s) were left unanswered: "
            + "; ".join(unanswered[:10]) + "." if unanswered else "")
    if idle:
        left += f" Round {new - 1} was closed with no decision of its own."
    return (f"round {new - 1} closed; round {new} is open and starts from round {new - 1}'s "
            f"consensus.{left} Next: consensa review export {run_folder} --judges ... (the "
            "workbooks start from that consensus)")


def apply(run_folder: Path, preview: bool = False
          ) -> tuple[dict[str, Path], list[str], list[str], list[dict]]:
    """The final codebook into ``RUN/review/``; with ``preview``, the codebook as it
    stands, open items as proposed, into ``RUN/review/draft/`` and marked as a draft
    (the final one is written only from a round where nothing is open).

    Returns the files written, the auditors' comments a judge has not answered
    (:meth:`ReviewStatus.unanswered`) and the categories of one domain named alike
    (:func:`~pipeline.review.apply.name_clashes`): the codebook is written and the
    command prints both, since the team may have settled them in the room; and the
    proposed subcategories the codebook leaves out (:func:`left_out_subcategories`),
    which keeping is optional for, so the command says so rather than leave it to be
    found in the codebook."""
    run = load_run(run_folder)
    with ReviewStore(run) as store:
        st = review_status(store)
    cb = build_codebook(run, st, draft=preview)
    if preview and not cb.data.get("draft"):
        # nothing open now, but a preview is not the codebook: it is written before the
        # audit and the rounds to come, and pre-coding must not take it for the agreed one
        cb.data["draft"], cb.data["open_items"] = True, []
    return (write_codebook(cb, run.folder / "review" / ("draft" if preview else "")),
            st.unanswered(), name_clashes(cb.data), left_out_subcategories(cb.data))


__all__ = ["export", "import_workbooks", "status", "resolve", "audit", "answer", "next_round",
           "apply", "db_path"]
