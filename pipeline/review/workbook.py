"""Review workbooks: one .xlsx per judge out, their decisions back in.

Sheets: ``instructions``, ``domains``, ``themes``, ``segments`` (assigned ones),
``unassigned`` (segments no theme took), ``core ideas`` (a CQR run only: one per
case and domain, the judge's edit beside the proposed one), ``subcategories`` (a CQR
run that proposed some: keep or drop each), and the hidden ``_meta`` (run id, judge,
role, round, and their signature: :mod:`pipeline.review.signing`), ``_lists``
(the dropdown choices) and the hidden ``_exported`` (what the export wrote in the
person's columns of each prefilled row: an import tells a row left as it was from one
the person changed). Columns with a yellow header
are the judge's to fill in; the rest describe what the run proposed.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from ..fsutil import atomic_write_bytes
from ..report.templating import counted
from ..sheets import append_row, cell_text, formula_problem, is_formula, set_cell
from ..types import frame_domain_ids
from .evidence import attribute_text, counted_cases, is_cqr, subgroups, theme_evidence
from .model import (
    DECISION_FIELDS,
    DOMAIN_DECISIONS,
    MOVED_IN,
    ROLES,
    SUBCATEGORY_DECISIONS,
    THEME_DECISIONS,
    Decision,
    ReviewError,
    RunItems,
    core_idea_item,
    domain_item,
    is_change,
    norm_id,
    say,
    segment_item,
    theme_item,
)
from .signing import WorkbookCheck, ensure_key, export_command, signature
from .store import now_utc

#: -2: ``_meta`` holds the signature of the workbook's identity
FORMAT = "consensa-review-2"
#: formats this version no longer imports: their _meta is not signed
UNSIGNED_FORMATS = ("consensa-review-1",)

# (header, key, width); keys in EDITABLE are the judge's columns
DOMAIN_COLS = [("domain id", "id", 10), ("name", "name", 30), ("keywords", "keywords", 40),
               ("themes", "themes", 50), ("cases", "n_cases", 8), ("frequency", "freq", 12),
               ("decision", "decision", 12), ("new name", "new_name", 28),
               ("merge into", "target", 12), ("comment", "comment", 40)]
THEME_COLS = [("theme id", "id", 9), ("name", "name", 30), ("domain id", "domain_id", 10),
              ("domain", "domain_name", 24), ("keywords", "keywords", 40),
              ("core idea (proposed)", "core", 50), ("example quotes", "quotes", 70),
              ("cases", "cases", 30), ("n cases", "n_cases", 8), ("frequency", "freq", 12),
              ("decision", "decision", 12), ("new name", "new_name", 28),
              ("merge into", "target", 12), ("new domain", "domain", 12),
              ("split off segments", "segments", 30), ("core idea note", "core_idea", 40),
              ("comment", "comment", 40)]
SEGMENT_COLS = [("segment id", "id", 16), ("case", "case", 12), ("theme id", "theme", 9),
                ("theme", "theme_name", 28), ("text", "text", 90),
                ("move to theme", "target", 14), ("comment", "comment", 40)]
# after the person's columns, so that those keep their place in every round: the
# consensus so far on the item and how it changes the proposal
for _cols in (DOMAIN_COLS, THEME_COLS, SEGMENT_COLS):
    _cols += [("consensus so far", "consensus", 34), ("changed", "changed", 30)]
# the evidence a CQR run has (pipeline/review/evidence.py), after everything else; a
# themes run's workbook has none of these columns
EVIDENCE_COLS = [("flags", "flags", 24), ("label if reassigned counted", "label_if", 16),
                 ("counted cases", "n_counted", 9), ("definition (proposed)", "definition", 40),
                 ("proposed subcategories", "subcategories", 40)]
SUBGROUP_COL = [("subgroups", "subgroups", 50)]
ATTRIBUTE_COL = [("case attributes", "attributes", 40)]
NOT_COUNTED = "an outlier reassigned with a similarity below {} (cqr.count_reassigned_above)"
#: a CQR run's segments sheet: whether the segment counts toward its category's label
#: (the theme's "counted cases" are the cases with a "yes" here)
COUNTS_COL = [("counts toward the label", "counts", 22)]
CORE_COLS = [("core idea id", "id", 16), ("case", "case", 12), ("domain id", "domain_id", 10),
             ("domain", "domain_name", 30), ("proposed core idea", "core", 60),
             ("segment ids", "segment_ids", 30), ("your core idea", "core_idea", 60),
             ("merge into", "target", 12), ("comment", "comment", 40), ("consensus so far", "consensus", 34),
             ("changed", "changed", 30)]
#: the sheet of the core ideas (a workbook of a themes run has none)
CORE_SHEET = "core ideas"
#: the subcategories the run proposed, each kept or dropped (a run that proposed none,
#: a themes run among them, has no such sheet)
SUB_COLS = [("subcategory id", "id", 14), ("name", "name", 30), ("stance", "pole", 12),
            ("theme id", "parent", 9),
            ("theme", "parent_name", 28), ("n segments", "n_segments", 10),
            ("n cases", "n_cases", 8),
            # the evidence a category's row gives (its label counted from the cases
            # the label counts, flags, the label if reassigned outliers counted): a
            # judge keeps or drops a subcategory on it as on a category
            ("frequency", "freq", 12), ("flags", "flags", 24),
            ("label if reassigned counted", "label_if", 16),
            ("definition (proposed)", "definition", 40),
            ("example quotes", "quotes", 70), ("decision", "decision", 12),
            ("new name", "new_name", 28), ("core idea note", "core_idea", 40),
            ("comment", "comment", 40), ("consensus so far", "consensus", 34),
            ("changed", "changed", 30)]
SUB_SHEET = "subcategories"
#: how the instructions of a workbook with that sheet begin to speak of it: a workbook
#: exported before proposed subcategories were reviewed does not
SUB_INSTRUCTIONS = "subcategories sheet"
EDITABLE = {"decision", "new_name", "target", "domain", "segments", "core_idea", "comment"}
#: the columns a workbook must have to be read back: the id and the person's own;
#: the others only describe, and a workbook of an earlier version may lack some
REQUIRED = EDITABLE | {"id"}

_HEAD = Font(bold=True)
_EDIT = PatternFill("solid", fgColor="FFF2CC")
_WRAP = Alignment(wrap_text=True, vertical="top")

INSTRUCTIONS = """Consensa review workbook: {name} (round {round}), {role} {person}

Fill in the yellow columns only; leave a row's decision blank if you have no position yet.
Then give the file back; it is imported with `consensa review import RUN FILE`.

themes sheet, decision:
  accept    keep the theme as it is (you may still give a new name, a new domain, a core idea note)
  rename    keep it under the name in 'new name'
  reassign  it belongs to the domain whose id is in 'new domain'
  merge     merge it into the theme whose id is in 'merge into'
  split     the segments listed in 'split off segments' (ids from the segments sheet,
            separated by ';') form a new category named 'new name'; the rest stays
  reject    not a theme: its segments become unassigned
  subcategory  a subcategory of the theme whose id is in 'merge into' (it keeps its
            segments and takes that theme's domain; optional 'new name')
  'core idea note' is the core idea (definition) of the category in your words.
domains sheet, decision: accept, rename ('new name'), merge ('merge into' another domain id).
  A CQR run's 'Interview frame' row is what was set apart from the cross-analysis
  (greetings, consent, background, thanks): it is decided like any domain (accept it;
  a segment that is not small talk is moved out on the unassigned sheet).
segments and unassigned sheets: to move a segment, write the target theme id in
  'move to theme' ('none' leaves it unassigned; 'keep' keeps it where it is). A blank
  row is no position.
core ideas sheet (a CQR run): to change the core idea of a case in a domain, write
  yours in 'your core idea' (one to three short sentences, close to the participant's
  words); a blank row takes no position, and the core idea stays as it stands (the
  proposed one in round 1; from round 2 on, the one the round before agreed, which the
  row then shows). To go back to the proposed one, copy 'proposed core idea' into it.
  Once two domains are merged, a case has a core idea from each: to make them one, write
  the case's core idea for both in one row and, in the other row, put that row's domain
  id in 'merge into' (and leave 'your core idea' blank).
'flags' (single story, thin, unstable, minimal responses, answered no) and 'label if reassigned counted' are the
  run's evidence on a theme; 'subgroups' its frequency in each group of a case attribute.
{sub_instructions} (a CQR run that proposed subcategories): the subcategories Consensa
  proposed within a theme ('proposed subcategories' on the themes sheet). decision:
  keep    it is a subcategory of its theme in the codebook (optional 'new name' and
          'core idea note'); it goes wherever its theme goes (merged, made a subcategory)
  drop    it is not kept: its segments stay in its theme
  A blank row is no position; one nobody keeps is not in the codebook. (A theme is made
  a subcategory of another with the themes sheet's 'subcategory' decision.)
'consensus so far' is what the panel has agreed on the item; 'changed' says how that
  differs from what Consensa proposed{round_note}.
'comment' is free text, shown next to the item.
"""

ROUND_NOTE = """, and whether round {prev} changed it.
Round {round} starts from round {prev}'s consensus: the yellow columns hold it. Change
  a row only where you would change the consensus; leave the rest as it is"""
AUDITOR_NOTE = """
As the auditor, write a comment on any item in its 'comment' column (leave the
  decision columns blank): the judges answer each comment (accept or argue).
"""


def _cell(value) -> str:
    if value is None:
        return ""
    return str(value).strip()


def _quotes(run: RunItems, quote_ids: list[str], n: int = 3) -> str:
    text = dict(zip(run.segments["segment_id"], run.segments["text"]))
    return "\n".join(f"[{q}] {text.get(q, '')}" for q in quote_ids[:n])


def _label_counted(label: str, n_counted: int | None, n_cases: int) -> str:
    """A CQR category's label as its row shows it: beside 'n cases' (every case with a
    segment in it), the cases it was counted from, where they are fewer ("typical (6
    counted of 7 cases)"): 7 of 8 cases read as general, and the counted figure was
    far to the right, so the label looked wrong."""
    if n_counted is None or n_counted == n_cases:
        return label
    return f"{label} ({n_counted} counted of {counted(n_cases, 'case')})"


def _sheet(wb, title: str, cols, rows, validations: dict[str, str]) -> None:
    ws = wb.create_sheet(title)
    # every str a string cell: a quote, a name or a comment is never a formula (sheets.py)
    append_row(ws, [h for h, _, _ in cols])
    for i, (_, key, width) in enumerate(cols, start=1):
        c = ws.cell(row=1, column=i)
        c.font = _HEAD
        if key in EDITABLE:
            c.fill = _EDIT
        ws.column_dimensions[get_column_letter(i)].width = width
    for row in rows:
        append_row(ws, [row.get(key, "") for _, key, _ in cols])
    for r in ws.iter_rows(min_row=2):
        for c in r:
            c.alignment = _WRAP
    ws.freeze_panes = "B2"
    last = max(ws.max_row, 2)
    keys = [k for _, k, _ in cols]
    for key, formula in validations.items():
        col = get_column_letter(keys.index(key) + 1)
        dv = DataValidation(type="list", formula1=formula, allow_blank=True, showDropDown=False)
        dv.error = "Choose a value from the list"
        dv.showErrorMessage = True
        ws.add_data_validation(dv)
        dv.add(f"{col}2:{col}{last}")


def _prefilled(row: dict, d: Decision | None) -> dict:
    if d is None:
        return row
    if d.kind == "domain" and d.decision == "split":
        # a split (its themes ticked on the domain's page, or `review resolve --themes`)
        # has no columns here: the row starts blank, which keeps it ('consensus so far'
        # shows it)
        return row
    # a segment's decision is its 'move to theme' cell ("keep" there); a proposed
    # subcategory's keep is its decision
    segment = d.kind == "segment"
    target = "keep" if d.decision == "keep" and segment else d.target
    return {**row, "decision": d.decision if not (segment and d.decision in ("move", "keep"))
            else "",
            "new_name": d.new_name, "target": target, "domain": d.domain,
            "segments": list(d.segments), "core_idea": d.core_idea, "comment": d.comment}


def _shown(run: RunItems, row: dict, item: str, shown: dict[str, Decision],
           baseline: dict[str, Decision]) -> dict:
    """``row`` with the consensus so far on ``item`` and how it changes the proposal
    (and, from round 2 on, whether it differs from the round before's)."""
    d, base = shown.get(item), baseline.get(item)
    # themes and domains by the names agreed so far (the proposed beside a renamed one)
    changed = say(run, d, shown, full=True) if is_change(d) else ""
    if base is not None and d is not None and d.key() != base.key():
        changed = (changed + "; " if changed else "") + "changed in this round"
    return {**row, "consensus": say(run, d, shown, full=True) if d else "", "changed": changed}


#: the hidden sheet of what the export wrote in the person's columns of each row
EXPORTED_SHEET = "_exported"


def row_values(row: dict) -> dict[str, str]:
    """The person's columns of a row as text to compare (:func:`cell_text`: 3.0 is "3",
    white space collapsed), the blank ones left out."""
    out = {}
    for key in EDITABLE:
        text = cell_text(row.get(key))
        if text:
            out[key] = text
    return out


def exported_values(prefill: dict[str, Decision]) -> dict[str, dict[str, str]]:
    """What :func:`build_workbook` writes in the person's columns of each item's row
    from ``prefill`` ({item: :func:`row_values`}; items whose row it leaves blank are
    left out)."""
    out = {}
    for item, d in prefill.items():
        values = row_values(_prefilled({}, d))
        if values:
            out[item] = values
    return out


#: what the theme column of the unassigned sheet says of an interview-frame segment
FRAME_NOTE = "(interview frame: set apart, not unassigned)"


def build_workbook(run: RunItems, person: str, role: str, round: int,
                   prefill: dict[str, Decision] | None = None, *,
                   key: bytes | None = None, shown: dict[str, Decision] | None = None,
                   baseline: dict[str, Decision] | None = None,
                   more_core_ideas: list[dict] = ()) -> bytes:
    """The workbook for one person, as .xlsx bytes, its ``_meta`` signed with ``key``
    (default: the review's, created on first use: :func:`pipeline.review.signing.ensure_key`).

    ``prefill`` fills the person's columns (a judge's from round 2 on: the round
    before's consensus, their starting point); ``shown`` is the consensus so far,
    shown beside each item with its change against the proposal (what an auditor
    comments on); ``baseline`` the round before's, to mark what this round changed.
    ``more_core_ideas``: rows of the core ideas sheet for cases the run proposed none
    in a domain, whose segments the judges moved there
    (:func:`~pipeline.review.apply.unproposed_core_ideas`).
    """
    prefill, shown, baseline = prefill or {}, shown or {}, baseline or {}
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "instructions"
    note = ROUND_NOTE.format(prev=round - 1, round=round) if round > 1 else ""
    text = INSTRUCTIONS.format(name=run.name, round=round, role=role, person=person,
                               round_note=note, sub_instructions=SUB_INSTRUCTIONS)
    if role == "auditor":
        text += AUDITOR_NOTE
    for line in text.splitlines():
        append_row(ws, [line])
    ws.column_dimensions["A"].width = 110

    theme_names = dict(zip(run.themes["theme_id"], run.themes["name"]))
    lists = wb.create_sheet("_lists")
    # a domain split is made on the domain's page or with `review resolve --themes`
    choices = {"A": list(THEME_DECISIONS), "B": [x for x in DOMAIN_DECISIONS if x != "split"],
               "C": [str(t) for t in run.themes["theme_id"]],
               "D": [str(d) for d in run.domains["domain_id"]],
               "E": [str(t) for t in run.themes["theme_id"]] + ["none", "keep"],
               "F": list(SUBCATEGORY_DECISIONS)}
    ref = {}
    for col, values in choices.items():
        for i, v in enumerate(values, start=1):
            set_cell(lists[f"{col}{i}"], v)
        ref[col] = f"'_lists'!${col}$1:${col}${max(len(values), 1)}"
    lists.sheet_state = "hidden"

    drows = []
    for d in run.domains.itertuples():
        drows.append(_prefilled({
            "id": int(d.domain_id), "name": d.name, "keywords": d.keywords,
            "themes": "\n".join(f"{t}: {theme_names.get(t, '')}" for t in d.theme_ids),
            "n_cases": int(d.n_cases), "freq": d.frequency_label}, prefill.get(domain_item(d.domain_id))))
        drows[-1] = _shown(run, drows[-1], domain_item(d.domain_id), shown, baseline)
    _sheet(wb, "domains", DOMAIN_COLS, drows, {"decision": ref["B"], "target": ref["D"]})

    dom_names = dict(zip(run.domains["domain_id"], run.domains["name"]))
    cqr, with_cases = is_cqr(run), run.cases is not None
    subs: dict[int, list[str]] = {}
    for s in run.subcategories if cqr else []:       # read once, by load_run
        subs.setdefault(s["parent_theme"], []).append(
            s["name"] + (f" (stance: {s['pole']})" if s["pole"] else "")
            + f" ({counted(s['n_segments'], 'segment')}, {counted(s['n_cases'], 'case')})")
    trows = []
    for t in run.themes.itertuples():
        ev = theme_evidence(run, t.theme_id)
        trows.append(_prefilled({
            "id": int(t.theme_id), "name": t.name, "domain_id": int(t.domain_id),
            "domain_name": dom_names.get(int(t.domain_id), ""), "keywords": t.keywords,
            "core": t.core_idea, "quotes": _quotes(run, t.quote_ids), "cases": t.cases,
            "n_cases": int(t.n_cases), "freq": _label_counted(t.frequency_label, ev["n_counted"],
                                                             int(t.n_cases)),
            "flags": "; ".join(ev["flags"]), "label_if": ev["label_if"],
            "n_counted": "" if ev["n_counted"] is None else ev["n_counted"],
            "definition": ev["definition"],
            "subcategories": "\n".join(subs.get(int(t.theme_id), [])),
            "subgroups": _subgroup_text(run, counted_cases(run, t.theme_id, t.cases))},
            prefill.get(theme_item(t.theme_id))))
        trows[-1] = _shown(run, trows[-1], theme_item(t.theme_id), shown, baseline)
    _sheet(wb, "themes", THEME_COLS + (EVIDENCE_COLS if cqr else [])
           + (SUBGROUP_COL if with_cases else []), trows,
           {"decision": ref["A"], "target": ref["C"], "domain": ref["D"]})

    # the interview frame's segments are set apart on purpose (a CQR run): listed with the
    # unassigned ones, where a judge can still move one into a category, but named so
    frame = frame_domain_ids(run.domains)
    for title, assigned in (("segments", True), ("unassigned", False)):
        seg = run.segments[(run.segments["theme"] >= 0) == assigned]
        srows = []
        for s in seg.itertuples():
            in_frame = not assigned and int(getattr(s, "domain_id", -1)) in frame
            srows.append(_prefilled({"id": s.segment_id, "case": s.case_id, "theme": int(s.theme),
                                     "theme_name": FRAME_NOTE if in_frame else s.theme_name,
                                     "text": s.text,
                                     "attributes": attribute_text(run.attributes(s.case_id)),
                                     "counts": ("yes" if bool(getattr(s, "counted", True))
                                                else "no: " + NOT_COUNTED.format(
                                                    run.cqr.count_reassigned_above))},
                                    prefill.get(segment_item(s.segment_id))))
            srows[-1] = _shown(run, srows[-1], segment_item(s.segment_id), shown, baseline)
        _sheet(wb, title, SEGMENT_COLS + (ATTRIBUTE_COL if with_cases else [])
               + (COUNTS_COL if cqr and assigned else []), srows, {"target": ref["E"]})

    if len(run.core_ideas):
        crows = []
        for c in run.core_ideas.sort_values(["domain_id", "case_id"]).itertuples():
            item = core_idea_item(c.case_id, c.domain_id)
            crows.append(_prefilled({
                "id": item.split(":", 1)[1], "case": c.case_id, "domain_id": int(c.domain_id),
                "domain_name": dom_names.get(int(c.domain_id), ""), "core": c.core_idea,
                "segment_ids": list(c.segment_ids)}, prefill.get(item)))
            crows[-1] = _shown(run, crows[-1], item, shown, baseline)
        for c in sorted(more_core_ideas, key=lambda c: (c["domain_id"], str(c["case"]))):
            item = core_idea_item(c["case"], c["domain_id"])
            crows.append(_prefilled({
                "id": item.split(":", 1)[1], "case": c["case"], "domain_id": c["domain_id"],
                "domain_name": c["domain_name"], "core": c["core_idea"] or MOVED_IN,
                "segment_ids": c["segment_ids"]}, prefill.get(item)))
            crows[-1] = _shown(run, crows[-1], item, shown, baseline)
        _sheet(wb, CORE_SHEET, CORE_COLS, crows, {})

    if run.subcategories:
        urows = []
        for s in run.subcategories:
            item = f"subcategory:{s['id']}"
            urows.append(_prefilled({
                "id": int(s["id"]), "name": s["name"], "pole": s["pole"],
                "parent": int(s["parent_theme"]),
                "parent_name": s["parent_name"], "n_segments": int(s["n_segments"]),
                "n_cases": int(s["n_cases"]),
                "freq": _label_counted(s["frequency_label"], s["n_counted_cases"],
                                       int(s["n_cases"])),
                "flags": "; ".join(s["flags"]), "label_if": s["label_if"],
                "definition": s["definition"],
                "quotes": _quotes(run, s["quote_ids"] or s["segment_ids"])}, prefill.get(item)))
            urows[-1] = _shown(run, urows[-1], item, shown, baseline)
        _sheet(wb, SUB_SHEET, SUB_COLS, urows, {"decision": ref["F"]})

    # what the export wrote in the person's columns, so that an import knows a row left
    # as it was (prefilled with the round before's consensus) from one the person changed
    exported = wb.create_sheet(EXPORTED_SHEET)
    append_row(exported, ["item", "values"])
    for item, values in exported_values(prefill).items():
        append_row(exported, [item, json.dumps(values, ensure_ascii=False, sort_keys=True)])
    exported.sheet_state = "hidden"

    meta = wb.create_sheet("_meta")
    fields = [("format", FORMAT), ("run_id", run.run_id), ("run_name", run.name),
              ("run_folder", str(run.folder)), ("person", person), ("role", role),
              ("round", str(round)),
              ("exported_at", now_utc())]
    fields.append(("signature", signature(key or ensure_key(run.folder), dict(fields))))
    for k, v in fields:
        append_row(meta, [k, v])
    meta.sheet_state = "hidden"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _subgroup_text(run: RunItems, cases) -> str:
    """A theme's frequency within each group of a case attribute, one attribute a line:
    ``cried: no variant 1/3; yes typical 2/3``, from the cases its label counts."""
    rows = subgroups(run, list(cases))
    out: dict[str, list[str]] = {}
    for g in rows:
        out.setdefault(g["attribute"], []).append(
            f"{g['group']} {g['frequency_label']} {g['n_cases']}/{g['n_group']}")
    return "\n".join(f"{a}: {'; '.join(v)}" for a, v in out.items())


def _offers_subcategories(wb) -> bool:
    """Whether a workbook was exported with the sheet of the proposed subcategories (its
    instructions explain it), so that a missing one was deleted, not never there."""
    if "instructions" not in wb.sheetnames:
        return True
    return any(str(row[0] or "").startswith(SUB_INSTRUCTIONS)
               for row in wb["instructions"].iter_rows(values_only=True) if row)


#: the read-only columns each sheet's row is checked against its id on import (see
#: :func:`_scrambled_rows`); a core idea's id names its case and domain itself
CHECKED = {"domain": ("name",), "theme": ("name", "domain_id"), "segment": ("case", "text"),
           "subcategory": ("name", "parent"), "core_idea": ("case", "domain_id")}


def _proposed(run: RunItems, kind: str) -> dict[str, dict]:
    """What the run wrote in the read-only columns of :data:`CHECKED` for each id of a
    sheet: the items it proposed (a category or domain the judges created is left out:
    its row is written from the store, which may have changed since)."""
    if kind == "domain":
        table = run.proposed_domains if run.proposed_domains is not None else run.domains
        return {norm_id(i): {"name": n} for i, n in zip(table["domain_id"], table["name"])}
    if kind == "theme":
        table = run.proposed_themes if run.proposed_themes is not None else run.themes
        return {norm_id(i): {"name": n, "domain_id": d}
                for i, n, d in zip(table["theme_id"], table["name"], table["domain_id"])}
    if kind == "segment":
        seg = run.segments
        return {str(i): {"case": c, "text": t}
                for i, c, t in zip(seg["segment_id"], seg["case_id"], seg["text"])}
    if kind == "subcategory":
        return {norm_id(s["id"]): {"name": s["name"], "parent": s["parent_theme"]}
                for s in run.subcategories}
    return {}


def _scrambled_rows(ws, index: dict[str, int], heading: dict[str, str], kind: str,
                    run: RunItems) -> list[tuple[int, str, str, str, str]]:
    """The rows of a sheet that show another item than their id: a read-only cell
    holds what the run wrote for another item of the sheet, not for the row's own
    (row, id, column, the row's value, the id's). A sheet sorted on all columns but the
    id (Excel's "continue with the current selection") keeps every decision in its row
    and gives it another item's id: imported, each decision would be recorded for the
    wrong item without a word. A read-only cell typed over with text of no item is not
    one (it is not read); nor is a blank one, or an id the run does not know (that
    row's decision is refused on its own)."""
    keys = [k for k in CHECKED.get(kind, ()) if k in index]
    if not keys or "id" not in index:
        return []
    if kind == "core_idea":
        proposed = None
        known = {"case": {cell_text(c) for c in run.segments["case_id"].unique()},
                 "domain_id": {cell_text(d) for d in run.domains["domain_id"]}}
    else:
        proposed = {i: {k: cell_text(v) for k, v in row.items()}
                    for i, row in _proposed(run, kind).items()}
        known = {k: {row[k] for row in proposed.values()} for k in keys}
    out = []
    for r, values in enumerate(ws.iter_rows(min_row=2, values_only=True), start=2):
        values = list(values) + [None] * (max(index.values()) + 1 - len(values))
        raw = values[index["id"]]
        ident = (str(raw).strip() if kind in ("segment", "core_idea") and raw is not None
                 else norm_id(raw))
        if kind == "core_idea":
            case, _, dom = ident.rpartition(":")
            want = {"case": cell_text(case), "domain_id": cell_text(dom)} if case else None
        else:
            want = proposed.get(ident)
        if want is None:
            continue
        for key in keys:
            got = cell_text(values[index[key]])
            if got and got != want[key] and got in known[key]:
                out.append((r, ident, heading[key], got, want[key]))
                break
    return out


def _scrambled_problem(name: str, sheet: str, kind: str,
                       rows: list[tuple[int, str, str, str, str]], meta: dict,
                       run: RunItems) -> str:
    """The error for a sheet whose rows do not match their ids (:func:`_scrambled_rows`)."""
    numbers = [str(r) for r, *_ in rows]
    shown = ", ".join(numbers[:15]) + (f" and {len(numbers) - 15} more" if len(numbers) > 15
                                       else "")
    r, ident, column, got, want = rows[0]

    def cut(text: str) -> str:
        return text if len(text) <= 60 else text[:60] + "…"

    word = kind.replace("_", " ")
    verb = "does" if len(rows) == 1 else "do"
    return (f"{name}, sheet '{sheet}': {counted(len(rows), 'row')} ({shown}) {verb} not match the "
            f"id in their first column (row {r}: {word} {ident}'s '{column}' is "
            f"\"{cut(want)}\", the row says \"{cut(got)}\", another's). The sheet was sorted, or "
            "its rows moved, apart from the id column, so its decisions would be recorded "
            "for other items; nothing from this workbook is "
            "imported. Undo the sort in the workbook (or export a fresh one: "
            f"{export_command(run.folder, meta)}, and fill it in again); to sort a sheet, "
            "select all of its columns, so that each row keeps its id")


def write_workbook(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data)


# --- import -------------------------------------------------------------------

@dataclass
class ReadWorkbook:
    path: Path
    person: str
    role: str
    round: int
    decisions: list[Decision] = field(default_factory=list)
    #: rows with only a comment (auditors): (item, comment, source)
    comments: list[tuple[str, str, str]] = field(default_factory=list)
    #: the items whose rows were left blank, by item: the row's place
    blank: dict[str, str] = field(default_factory=dict)
    #: ``exported_at`` of its ``_meta`` sheet: when the workbook was written
    exported_at: str = ""
    #: the person's columns of each row with a decision, as :func:`row_values`
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    #: what the export wrote in them (its ``_exported`` sheet); None for a workbook
    #: exported before the sheet was written (:func:`untouched_items` derives it)
    exported: dict[str, dict[str, str]] | None = None

    def untouched_items(self, start: dict[str, Decision] | None = None) -> set[str]:
        """The items whose row holds a decision as the export wrote it: prefilled and
        left as it was, which takes no position against one recorded elsewhere. A
        workbook without the ``_exported`` sheet is compared with ``start``, what its
        export prefilled (a judge's: the round before's consensus, as
        :func:`pipeline.review.commands.export` gives it)."""
        exported = self.exported if self.exported is not None else exported_values(start or {})
        return {item for item, values in self.values.items() if exported.get(item) == values}


def read_workbook(path: Path, run: RunItems,
                  check: WorkbookCheck) -> tuple[ReadWorkbook | None, list[str]]:
    """Read one filled-in workbook: its decisions, and the problems found (file, sheet, row).

    ``check`` verifies the ``_meta`` signature: a workbook whose person, role or round
    was edited is refused whole, as its rows would be recorded as someone else's.
    """
    path = Path(path)
    name = path.name
    try:
        # formulas as formulas: a judge's "=..." is refused, not read as blank (sheets.py)
        wb = openpyxl.load_workbook(path, data_only=False)
    except Exception as exc:  # openpyxl raises many kinds for a file that is not .xlsx
        return None, [f"{name}: cannot be read as an .xlsx workbook ({type(exc).__name__}: {exc})"]
    if "_meta" not in wb.sheetnames:
        return None, [f"{name}: not a Consensa review workbook (it has no _meta sheet); "
                      "export one with `consensa review export`"]
    meta = {_cell(r[0]): _cell(r[1]) for r in wb["_meta"].iter_rows(values_only=True) if r and r[0]}
    if meta.get("format") in UNSIGNED_FORMATS:
        return None, [f"{name}, sheet '_meta', field 'format': exported by an earlier Consensa "
                      f"({meta.get('format')}), whose workbooks do not sign whose they are, so "
                      "it is not imported. Keep this file (it holds the decisions), export a "
                      f"fresh workbook ({export_command(run.folder, meta)}; move this file "
                      "out of the round folder first if it is there), copy the decisions into "
                      "it and import that one"]
    if meta.get("format") != FORMAT:
        return None, [f"{name}, sheet '_meta': unknown workbook format {meta.get('format')!r}"]
    if meta.get("run_id") != run.run_id:
        return None, [f"{name}, sheet '_meta': this workbook belongs to another run "
                      f"({meta.get('run_name')!r}, id {meta.get('run_id')}); this run is "
                      f"{run.name!r}, id {run.run_id}"]
    refused = check.problem(name, meta)
    if refused:
        return None, [refused]
    role = meta.get("role", "")
    if role not in ROLES:
        return None, [f"{name}, sheet '_meta': unknown role {role!r}"]
    out = ReadWorkbook(path, meta.get("person", ""), role, int(norm_id(meta.get("round")) or 1),
                       exported_at=meta.get("exported_at", ""))
    errors: list[str] = []
    if role == "judge" and exported_time(out.exported_at) is None:
        # an import compares the judge's positions with it: one recorded after the
        # export is not replaced by a row left as it was
        errors.append(f"{name}, sheet '_meta', field 'exported_at': {out.exported_at!r} is "
                      "not the time the workbook was exported; export a fresh workbook "
                      f"({export_command(run.folder, meta)}) and copy the decisions into it")
    if EXPORTED_SHEET in wb.sheetnames:
        exported_rows = wb[EXPORTED_SHEET].iter_rows(min_row=2, values_only=True)
        try:
            out.exported = {str(r[0]): {str(k): str(v) for k, v in json.loads(r[1]).items()}
                            for r in exported_rows if r and r[0] and r[1]}
        except (ValueError, TypeError, AttributeError, IndexError):
            errors.append(f"{name}, sheet '{EXPORTED_SHEET}': not as the export wrote it (the "
                          "hidden sheet of the values each row was exported with); export a "
                          f"fresh workbook ({export_command(run.folder, meta)}) and copy the "
                          "decisions into it")
    sheets = [("domains", DOMAIN_COLS, "domain"), ("themes", THEME_COLS, "theme"),
              ("segments", SEGMENT_COLS, "segment"), ("unassigned", SEGMENT_COLS, "segment")]
    # a CQR run's workbook (a themes run's has none); renamed or deleted, it is missing,
    # not skipped: the core ideas a judge wrote on it would be lost without a word
    if CORE_SHEET in wb.sheetnames or len(run.core_ideas):
        sheets.append((CORE_SHEET, CORE_COLS, "core_idea"))
    # likewise the proposed subcategories', but for a workbook exported before they
    # were reviewed: it never had the sheet (its instructions do not speak of it), so
    # no judge wrote a decision there, and its other sheets import as they always did
    if SUB_SHEET in wb.sheetnames or (run.subcategories and _offers_subcategories(wb)):
        sheets.append((SUB_SHEET, SUB_COLS, "subcategory"))
    for sheet, cols, kind in sheets:
        if sheet not in wb.sheetnames:
            errors.append(f"{name}: the sheet '{sheet}' is missing")
            continue
        ws = wb[sheet]
        header = [_cell(c) for c in next(ws.iter_rows(min_row=1, max_row=1, values_only=True), ())]
        index = {}
        missing = False
        for h, key, _ in cols:
            if h in header:
                index[key] = header.index(h)
            elif key in REQUIRED and not (kind == "core_idea" and key == "target"):
                # (a core ideas sheet written before core ideas could merge has no
                # 'merge into', and its judge's core ideas still count)
                errors.append(f"{name}, sheet '{sheet}', row 1: the column '{h}' is missing")
                missing = True
        if missing:
            continue
        heading = {key: h for h, key, _ in cols}
        scrambled = _scrambled_rows(ws, index, heading, kind, run)
        if scrambled:
            errors.append(_scrambled_problem(name, sheet, kind, scrambled, meta, run))
            continue
        for r, cells in enumerate(ws.iter_rows(min_row=2), start=2):
            values = [c.value for c in cells] + [None] * (len(header) - len(cells))
            get = {k: values[i] for k, i in index.items()}
            where = f"{name}, sheet '{sheet}', row {r}"
            formulas = [k for k, i in index.items() if i < len(cells) and is_formula(cells[i])]
            if formulas:
                errors.extend(formula_problem(where, heading[k], get[k]) for k in formulas)
                continue
            edits = {k: get[k] for k in EDITABLE if k in get and _cell(get[k])}
            ident = norm_id(get["id"])
            item = f"{kind}:{ident}"
            values = row_values(edits)
            if not edits:
                if ident:
                    out.blank[item] = where
                continue
            comment = _cell(get.get("comment"))
            if kind == "core_idea":
                word = ("merge" if _cell(get.get("target")) else
                        "edit" if _cell(get.get("core_idea")) else "")
            elif kind == "segment":
                target = _cell(get.get("target"))
                word = "keep" if target.lower() == "keep" else "move" if target else ""
                if word == "keep":
                    get["target"] = ""
            else:
                word = _cell(get.get("decision")).lower()
            if not word:
                if role == "auditor" and set(edits) == {"comment"}:
                    out.comments.append((item, comment, where))
                    continue
                if kind == "core_idea":
                    errors.append(f"{where}: 'your core idea' and 'merge into' are blank but "
                                  "the comment is filled in; write the core idea (or leave "
                                  "the row blank to keep the proposed one)")
                    continue
                errors.append(f"{where}: {'move to theme' if kind == 'segment' else 'decision'} "
                              "is blank but other columns are filled in; choose a decision "
                              "(accept if you keep it)")
                continue
            if role == "auditor":
                errors.append(f"{where}: an auditor's workbook holds comments only, not decisions")
                continue
            fields = {k: get[k] for k in DECISION_FIELDS if k in get}
            try:
                d = Decision.parse(item, {**fields, "decision": word}, source=where)
            except ReviewError as exc:
                errors.append(f"{where}: {exc.reason}")
                continue
            out.decisions.append(d)
            out.values[item] = values
    return out, errors


def exported_time(text: str) -> datetime | None:
    """``exported_at`` of a workbook as a time (None: not one)."""
    try:
        at = datetime.fromisoformat(str(text).strip())
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
