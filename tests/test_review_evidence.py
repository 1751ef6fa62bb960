"""Core ideas the judges edit, the evidence in front of them (flags, honest labels,
case attributes, subgroups) and domains they split and merge: on a CQR run of the
invented study, through the store, the command line, the workbooks, the packet and
the web app (in process). A themes run shows none of it."""

from __future__ import annotations

import html
import re
import shutil
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import yaml
from lxml import etree

from pipeline.cli import main
from pipeline.review.agreement import review_status
from pipeline.review.apply import build_codebook, live_codebook
from pipeline.review.model import Decision, ReviewError, core_idea_item, load_run, theme_item
from pipeline.review.store import ReviewStore
from pipeline.stages.cqr import frequency_label
from tests.refi_schema import schema_errors
from tests.review_helpers import fill, sort_apart_from_ids
from tests.study import run_study_cli
from tests.test_review_rounds import Web

QDA = "{urn:QDA-XML:project:1.0}"

CASES = {"case01": ("CBT", "yes"), "case02": ("CBT", "yes"), "case03": ("psychodynamic", "yes"),
         "case04": ("CBT", "no"), "case05": ("psychodynamic", "no"),
         "case06": ("psychodynamic", "no")}
CORE = "Her training never spoke of tears; she learned about them on the job."


@pytest.fixture(scope="module")
def cqr_source(tmp_path_factory) -> Path:
    return run_study_cli(tmp_path_factory.mktemp("cqr-review"), analysis="consensa.CQR.v1")


@pytest.fixture()
def cqr(cqr_source, tmp_path) -> Path:
    """A fresh copy of the CQR run with a cases table, and a panel (ana, ben; dee audits)."""
    run = Path(shutil.copytree(cqr_source, tmp_path / "run"))
    rows = ["case_id,orientation,cried"] + [f"{c},{o},{y}" for c, (o, y) in CASES.items()]
    (run / "cases.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with ReviewStore(load_run(run), create=True) as s:
        s.set_panel(["ana", "ben"], ["dee"])
    return run


def _flag(run: Path, theme: int, flag: str) -> None:
    """Mark a theme as `consensa stability` marks an unstable one."""
    themes = pd.read_parquet(run / "themes.parquet")
    themes["flags"] = [list(f) + ([flag] if t == theme else [])
                       for t, f in zip(themes["theme_id"], themes["flags"])]
    themes.to_parquet(run / "themes.parquet", index=False)


def _first_core(run: Path) -> tuple[str, int]:
    ci = pd.read_parquet(run / "core_ideas.parquet")
    return str(ci["case_id"].iat[0]), int(ci["domain_id"].iat[0])


def _settle(store: ReviewStore) -> None:
    """Accept every item still open, so that the round closes."""
    st = review_status(store)
    store.resolve([Decision(i.item, "accept") for i in st.pending()], by="team")


# --- 1. core ideas --------------------------------------------------------------------------

def test_a_core_idea_the_judges_agree_on_reaches_the_codebook_and_undo_takes_it_back(cqr):
    case, dom = _first_core(cqr)
    item = core_idea_item(case, dom)
    run = load_run(cqr)
    with ReviewStore(run) as store:
        # one judge's edit alone opens the item; the same text from both agrees it
        store.record_positions([("ana", [Decision(item, "edit", core_idea=CORE)])])
        assert next(i for i in review_status(store).items if i.item == item).state == "open"
        store.record_positions([("ben", [Decision(item, "edit", core_idea=" " + CORE)])])
        st = review_status(store)
        got = next(i for i in st.items if i.item == item)
        assert got.state == "agreed" and got.consensus.core_idea.strip() == CORE
        # a different text from one of them is a dispute
        store.record_positions([("ben", [Decision(item, "edit", core_idea="Something else.")])])
        assert next(i for i in review_status(store).items if i.item == item).state == "disputed"
        store.resolve([Decision(item, "edit", core_idea=CORE)], by="ana")
        _settle(store)
        book = build_codebook(run, review_status(store)).data
    entry = next(c for d in book["domains"] for c in d.get("core_ideas", [])
                 if c["case"] == case and c.get("from_domain", dom) == dom)
    assert entry["core_idea"] == CORE and entry["source"] == "judges"
    assert entry["proposed"] and entry["proposed"] != CORE and entry["segment_ids"]
    others = [c for d in book["domains"] for c in d.get("core_ideas", []) if c["case"] != case]
    assert others and all(c["source"] == "proposed" for c in others)
    # written by apply (yaml and md), and undone: the proposed one is back
    assert main(["review", "apply", str(cqr)]) == 0
    data = yaml.safe_load((cqr / "review" / "codebook.yaml").read_text())
    assert any(c["core_idea"] == CORE for d in data["domains"] for c in d.get("core_ideas", []))
    assert f"- {case} (judges): {CORE}" in (cqr / "review" / "codebook.md").read_text()
    with ReviewStore(load_run(cqr)) as store:
        while store.undo_target()["item"] != item:
            store.undo_consensus("ana")
        store.undo_consensus("ana")
        st = review_status(store)
        assert next(i for i in st.items if i.item == item).state == "disputed"


def test_core_ideas_refuse_what_is_not_one(cqr):
    case, dom = _first_core(cqr)
    with ReviewStore(load_run(cqr)) as store:
        with pytest.raises(ReviewError, match="edit needs the core idea's text"):
            store.resolve([Decision(core_idea_item(case, dom), "edit")], by="ana")
        with pytest.raises(ReviewError, match="the run has no case 'case99'"):
            store.resolve([Decision(core_idea_item("case99", dom), "edit", core_idea="x")],
                          by="ana")
        with pytest.raises(ReviewError, match="unknown decision 'rename' for a core idea"):
            store.resolve([Decision(core_idea_item(case, dom), "rename", new_name="x")],
                          by="ana")


def test_core_ideas_on_the_command_line(cqr, capsys):
    case, dom = _first_core(cqr)
    assert main(["review", "resolve", str(cqr), "--core-idea-of", f"{case}:{dom}",
                 "--decision", "edit", "--core-idea", CORE, "--by", "ana"]) == 0
    assert "core idea of case" in capsys.readouterr().out
    assert main(["review", "audit", str(cqr), "--core-idea-of", f"{case}:{dom}", "--by", "dee",
                 "--comment", "too long"]) == 0
    with ReviewStore(load_run(cqr)) as store:
        assert store.consensus()[core_idea_item(case, dom)].core_idea == CORE
        assert store.audit_comments()[core_idea_item(case, dom)] == [("dee", "too long")]
    assert main(["review", "status", str(cqr)]) == 0
    assert "Core ideas a judge edited" in capsys.readouterr().out


def test_the_workbook_has_a_core_ideas_sheet_that_imports_as_positions(cqr, capsys):
    case, dom = _first_core(cqr)
    # a proposed core idea that looks like a formula is written as text
    ci = pd.read_parquet(cqr / "core_ideas.parquet")
    ci.loc[1, "core_idea"] = "=1+1 she said"
    ci.to_parquet(cqr / "core_ideas.parquet", index=False)
    assert main(["review", "export", str(cqr), "--judges", "ana,ben", "--auditor", "dee",
                 "-q"]) == 0
    book = cqr / "review" / "round-1" / "ana.xlsx"
    ws = openpyxl.load_workbook(book)["core ideas"]
    header = [c.value for c in ws[1]]
    assert header[:7] == ["core idea id", "case", "domain id", "domain", "proposed core idea",
                          "segment ids", "your core idea"]
    assert ws.max_row - 1 == len(ci)
    cells = [r[4] for r in ws.iter_rows(min_row=2) if r[4].value == "=1+1 she said"]
    assert len(cells) == 1 and cells[0].data_type == "s"
    fill(book, "core ideas", f"{case}:{dom}", your_core_idea=CORE)
    assert main(["review", "import", str(cqr), str(book)]) == 0
    with ReviewStore(load_run(cqr)) as store:
        assert store.positions()[core_idea_item(case, dom)]["ana"].core_idea == CORE
    # a comment without the core idea is refused with the sheet and row
    other = ci.iloc[1]
    row = fill(book, "core ideas", f"{other.case_id}:{int(other.domain_id)}", comment="hm")
    assert main(["review", "import", str(cqr), str(book)]) != 0
    err = capsys.readouterr().err
    assert f"sheet 'core ideas', row {row}" in err and "'your core idea' and 'merge into' are blank" in err
    # the sheet renamed or deleted: refused, not imported without the judge's core ideas
    for edit in ("rename", "delete"):
        wb = openpyxl.load_workbook(book)
        if edit == "rename":
            wb["core ideas"].title = "Core ideas"
        else:
            wb.remove(wb["core ideas"])
        changed = book.with_name(f"ana-{edit}.xlsx")
        wb.save(changed)
        assert main(["review", "import", str(cqr), str(changed)]) == 2
        assert "the sheet 'core ideas' is missing" in capsys.readouterr().err


def test_a_core_ideas_sheet_sorted_apart_from_its_ids_is_refused(cqr, capsys):
    """Sorted on the proposed core idea, the id column left behind: each judge's core
    idea would be recorded for another case and domain. Refused, nothing stored."""
    case, dom = _first_core(cqr)
    assert main(["review", "export", str(cqr), "--judges", "ana,ben", "-q"]) == 0
    book = cqr / "review" / "round-1" / "ana.xlsx"
    fill(book, "core ideas", f"{case}:{dom}", your_core_idea=CORE)
    sort_apart_from_ids(book, "core ideas", "proposed core idea")
    assert main(["review", "import", str(cqr), str(book)]) == 2
    err = capsys.readouterr().err
    assert "ana.xlsx, sheet 'core ideas': " in err and "do not match the id" in err, err
    with ReviewStore(load_run(cqr)) as store:
        assert store.positions() == {}


def test_the_auditor_reads_the_agreed_core_ideas_in_full(cqr):
    """The auditor's workbook cut the consensus core idea at 80 characters ("...a
    self-funded course o...") and showed a category's core idea note only as "(+ core
    idea)": what the auditor audits must be there whole."""
    case, dom = _first_core(cqr)
    long_text = ("Twenty years of procedural updates and not one word on what it does to "
                 "you; the best training was a self-funded course on grief at the end.")
    note = "Tears the therapist did not hide, and what the client made of them afterwards."
    assert len(long_text) > 100
    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision(core_idea_item(case, dom), "edit", core_idea=long_text),
                       Decision("theme:0", "accept", core_idea=note)], by="team")
    assert main(["review", "export", str(cqr), "--auditor", "dee", "-q"]) == 0
    wb = openpyxl.load_workbook(cqr / "review" / "round-1" / "dee.xlsx")

    def rows(sheet: str) -> dict:
        ws = wb[sheet]
        header = [c.value for c in ws[1]]
        return {str(r[0]): dict(zip(header, r)) for r in ws.iter_rows(min_row=2,
                                                                      values_only=True)}

    assert rows("core ideas")[f"{case}:{dom}"]["consensus so far"] == f'core idea: "{long_text}"'
    assert f'core idea: "{note}"' in rows("themes")["0"]["consensus so far"]
    # the terminal's status table still cuts it
    with ReviewStore(load_run(cqr)) as store:
        d = store.consensus()[core_idea_item(case, dom)]
    assert d.describe().endswith('..."') and len(d.describe()) < len(long_text)


# --- 2. evidence ----------------------------------------------------------------------------

def test_flags_honest_labels_and_case_attributes_are_in_the_workbook_and_packet(cqr):
    _flag(cqr, 3, "unstable")
    assert main(["review", "export", str(cqr), "--judges", "ana,ben", "--auditor", "dee",
                 "-q"]) == 0
    wb = openpyxl.load_workbook(cqr / "review" / "round-1" / "ana.xlsx")
    # the frame is a domain the judges decide too, and the instructions say so
    said = " ".join(str(r[0]) for r in wb["instructions"].iter_rows(values_only=True))
    assert "'Interview frame' row" in said and "decided like any domain" in said
    ws = wb["themes"]
    header = [c.value for c in ws[1]]
    rows = {r[0]: dict(zip(header, r)) for r in ws.iter_rows(min_row=2, values_only=True)}
    assert rows[3]["flags"] == "unstable" and rows[2]["flags"] in (None, "")
    assert "counted cases" in header and "label if reassigned counted" in header
    # subgroups: the label within each group, from the cases the theme's label counts
    seg = pd.read_parquet(cqr / "segments.parquet")
    counting = set(seg.loc[(seg["theme"] == 3) & seg["counted"], "case_id"])
    yes = [c for c in counting if CASES[c][1] == "yes"]
    assert f"yes {frequency_label(len(yes), 3)} {len(yes)}/3" in rows[3]["subgroups"]
    seg = wb["segments"]
    sh = [c.value for c in seg[1]]
    first = dict(zip(sh, next(seg.iter_rows(min_row=2, values_only=True))))
    o, y = CASES[first["case"]]
    assert first["case attributes"] == f"orientation: {o}; cried: {y}"
    packet = (cqr / "review" / "round-1" / "packet.html").read_text()
    assert "<b>Evidence:</b> unstable" in packet
    assert "Core ideas (one per case and domain" in packet


def test_the_theme_page_shows_flags_cases_and_subgroups(cqr):
    _flag(cqr, 3, "unstable")
    web = Web(cqr, "ana")
    page = web.get("/theme/3")
    assert 'class="flag unstable">unstable<' in page
    assert "(orientation: CBT; cried: yes)" in page           # on the case list and quotes
    assert 'id="subgroups-h"' in page and 'data-attribute="cried" data-group="no"' in page
    plain = web.get("/theme/2")
    assert 'class="flags"' not in plain


def test_a_final_category_of_minimal_responses_is_flagged_when_counted_again(cqr):
    """The codebook counts each final category again from its segments; a category the
    judges made of replies such as "Yeah, I guess so." keeps the run's flag for it."""
    from pipeline.review.evidence import recount

    run = load_run(cqr)
    seg = run.segments[run.segments["theme"] >= 0]
    members = seg.groupby("case_id").head(1).head(4).copy()
    assert "minimal responses" not in recount(run, members, set())["flags"]
    members["text"] = ["Yeah, I guess so.", "I don't know, really.", "Yes, I have.",
                       members["text"].iat[3]]
    assert "minimal responses" in recount(run, members, set())["flags"]


def test_apply_counts_again_and_flags_a_single_story_and_writes_the_subgroups(cqr):
    run = load_run(cqr)
    seg = run.segments[run.segments["theme"] >= 0]
    one = seg[seg["case_id"] == "case01"]["segment_id"].tolist()[:3]
    two = seg[seg["case_id"] == "case02"]["segment_id"].tolist()[:1]
    _flag(cqr, 4, "unstable")
    with ReviewStore(load_run(cqr)) as store:
        item = store.create_category("Her own story", one + two, "0", "ana")
        store.resolve([Decision("theme:0", "rename", new_name="Crying in session",
                                core_idea="Therapists cried and were not prepared for it.")],
                      by="ana")
        _settle(store)
    assert main(["review", "apply", str(cqr)]) == 0
    data = yaml.safe_load((cqr / "review" / "codebook.yaml").read_text())
    cats = {c["id"]: c for d in data["domains"] for c in d["categories"]}
    new = cats[int(item.split(":")[1])]
    assert new["flags"] == ["single story"]            # 3 of its 4 segments from case01
    assert new["n_counted_cases"] == 2                 # placed by the judges: they count
    assert "unstable" in cats[4]["flags"]
    table = (cqr / "review" / "cqr_table.md").read_text()
    assert "| Evidence |" in table
    assert "Her own story | single case" not in table
    line = next(x for x in table.splitlines() if "Her own story" in x)
    assert line.rstrip().endswith("single story |")
    # the judges' core idea, not a quote (issue 16: the smaller fault)
    line = next(x for x in table.splitlines() if "Crying in session" in x)
    assert "Therapists cried and were not prepared for it. (judges)" in line
    sub = pd.read_csv(cqr / "review" / "cqr_subgroups.csv")
    mine = sub[(sub["category_id"] == new["id"]) & (sub["attribute"] == "cried")]
    assert dict(zip(mine["group"], mine["n_cases"])) == {"yes": 2, "no": 0}
    assert dict(zip(mine["group"], mine["frequency_label"])) == {
        "yes": frequency_label(2, 3), "no": "none"}


def _uncount(run: Path, fits) -> tuple[int, str, set[str]]:
    """Make one counted case of a theme (the first whose number of counted cases then
    ``fits``) count no more, as a case does whose only segments there are outliers reassigned
    below cqr.count_reassigned_above; the theme's row says so, as a run writes it.
    Returns the theme, that case and the cases still counted."""
    seg = pd.read_parquet(run / "segments.parquet")
    themes = pd.read_parquet(run / "themes.parquet").set_index("theme_id")
    tid = next(int(t) for t in themes.index
               if fits(len(set(seg.loc[(seg["theme"] == t) & seg["counted"], "case_id"])) - 1))
    counted = seg.loc[(seg["theme"] == tid) & seg["counted"], "case_id"]
    gone = str(counted.iloc[0])
    mine = (seg["theme"] == tid) & (seg["case_id"] == gone)
    seg.loc[mine, "reassigned"] = True
    seg.loc[mine, "counted"] = False
    seg.to_parquet(run / "segments.parquet", index=False)
    counting = set(counted) - {gone}
    themes.at[tid, "n_counted_cases"] = len(counting)
    themes.at[tid, "frequency_label"] = frequency_label(len(counting), len(CASES))
    themes.at[tid, "label_if_reassigned_counted"] = frequency_label(
        len(themes.at[tid, "cases"]), len(CASES))
    themes.reset_index().to_parquet(run / "themes.parquet", index=False)
    return tid, gone, counting


def test_subgroups_count_only_the_cases_the_label_counts(cqr):
    """A case whose only segments in a category are outliers reassigned below
    cqr.count_reassigned_above is not counted by the label: the subgroups (workbook,
    packet, theme page, cqr_subgroups.csv) must not count it either, and the theme page
    says which case it is."""
    tid, gone, counting = _uncount(cqr, lambda n: n >= 1)
    themes = pd.read_parquet(cqr / "themes.parquet").set_index("theme_id")
    group = CASES[gone][1]
    n_group = sum(1 for o, y in CASES.values() if y == group)
    n = sum(1 for c in counting if CASES[c][1] == group)
    want = f"{group} {frequency_label(n, n_group)} {n}/{n_group}"
    assert gone in themes.at[tid, "cases"]      # it still has the case, uncounted

    assert main(["review", "export", str(cqr), "--judges", "ana,ben", "-q"]) == 0
    ws = openpyxl.load_workbook(cqr / "review" / "round-1" / "ana.xlsx")["themes"]
    header = [c.value for c in ws[1]]
    rows = {r[0]: dict(zip(header, r)) for r in ws.iter_rows(min_row=2, values_only=True)}
    assert want in rows[tid]["subgroups"], rows[tid]["subgroups"]
    # the segments sheet says which segments count: the counted cases are those of a "yes"
    seg_ws = openpyxl.load_workbook(cqr / "review" / "round-1" / "ana.xlsx")["segments"]
    sh = [c.value for c in seg_ws[1]]
    mine = [dict(zip(sh, r)) for r in seg_ws.iter_rows(min_row=2, values_only=True)
            if r[sh.index("theme id")] == tid]
    said = {r["case"] for r in mine if r["counts toward the label"] == "yes"}
    assert said == counting and rows[tid]["counted cases"] == len(said)
    # beside 'n cases', the label says what it counted: n cases alone read as another label
    n_all = len(themes.at[tid, "cases"])
    assert rows[tid]["frequency"] == (f"{themes.at[tid, 'frequency_label']} ({len(counting)} "
                                      f"counted of {n_all} case{'s' if n_all != 1 else ''})")
    assert all(r["counts toward the label"].startswith("no: an outlier reassigned")
               for r in mine if r["case"] == gone)
    packet = (cqr / "review" / "round-1" / "packet.html").read_text()
    part = packet.split(f"<h3>Theme {tid}: ")[1].split("<h3>")[0]
    assert f"<td>cried</td><td>{group}</td><td>{n}/{n_group}</td>" in part
    assert f"{len(counting)} of {len(themes.at[tid, 'cases'])} cases counted" in part

    web = Web(cqr, "ana")
    # the overview and the domain's page give the counted cases beside the label
    n_all = len(themes.at[tid, "cases"])
    row = re.search(rf'<tr data-item="theme:{tid}".*?</tr>', web.get("/"), re.S).group(0)
    assert f">{len(counting)} of {n_all}</span>" in row
    dom = web.get(f"/domain/{int(themes.at[tid, 'domain_id'])}")
    item = re.search(rf'<li data-category="{tid}">.*?</li>', dom, re.S).group(0)
    assert f"{len(counting)} of {n_all} cases counted" in item
    page = web.get(f"/theme/{tid}")
    row = re.search(rf'<tr data-attribute="cried" data-group="{group}">(.*?)</tr>', page).group(1)
    assert f"<td>{n}/{n_group}</td>" in row
    item = re.search(rf"<li>{gone}\b.*?</li>", page).group(0)
    assert "not counted" in item
    assert all("not counted" not in re.search(rf"<li>{c}\b.*?</li>", page).group(0)
               for c in counting)

    with ReviewStore(load_run(cqr)) as store:
        _settle(store)
    assert main(["review", "apply", str(cqr)]) == 0
    sub = pd.read_csv(cqr / "review" / "cqr_subgroups.csv")
    got = sub[(sub["category_id"] == tid) & (sub["attribute"] == "cried") &
              (sub["group"] == group)].iloc[0]
    assert (int(got["n_cases"]), got["frequency_label"]) == (n, frequency_label(n, n_group))


def test_the_codebook_gives_the_counted_cases_beside_each_label(cqr):
    """codebook.md gives beside a CQR label the number it was counted from (and every
    case beside it), a label the judges' decisions changed is explained by the counted
    cases before and after, and the agreed CQR table cites the quote's segment."""
    tid, gone, counting = _uncount(cqr, lambda n: n >= 2 and frequency_label(n, len(CASES))
                                   != frequency_label(1, len(CASES)))
    themes = pd.read_parquet(cqr / "themes.parquet").set_index("theme_id")
    n_all = len(themes.at[tid, "cases"])
    seg = pd.read_parquet(cqr / "segments.parquet")
    # the judges split off every segment of the counted cases but one: its label changes
    left = sorted(counting)[1:]
    off = seg.loc[(seg["theme"] == tid) & seg["case_id"].isin(left), "segment_id"].tolist()
    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision(theme_item(tid), "split", new_name="Split off",
                                segments=tuple(off))], by="ana")
        _settle(store)
    assert main(["review", "apply", str(cqr)]) == 0
    data = yaml.safe_load((cqr / "review" / "codebook.yaml").read_text())
    cat = next(c for d in data["domains"] for c in d["categories"] if c["id"] == tid)
    k, n_now = 1, n_all - len(left)
    assert cat["n_counted_cases"] == k and cat["n_cases"] == n_now
    md = (cqr / "review" / "codebook.md").read_text()
    block = md.split(f"### {cat['name']}")[1]
    assert block.split("\n\n")[1].startswith(
        f"*{cat['frequency_label']}*, {k}/{len(CASES)} cases counted, {n_now} with "
        "reassigned outliers,")
    before, after = frequency_label(len(counting), len(CASES)), cat["frequency_label"]
    assert before != after, (before, after)
    assert f"frequency {before} -> {after} ({len(counting)} -> {k} cases)" in cat["changes"]
    table = (cqr / "review" / "cqr_table.md").read_text()
    rows = pd.read_csv(cqr / "review" / "cqr_table.csv")
    for r in rows.itertuples():
        if r.core_idea_source == "quote":
            assert f'({r.quote_segment_id}) |' in table


# --- 3. domains -----------------------------------------------------------------------------

def test_a_domain_split_is_one_decision_shown_live_applied_and_undone(cqr, capsys):
    run = load_run(cqr)
    dom0 = run.themes[run.themes["domain_id"] == 0]["theme_id"].tolist()
    moved = [str(t) for t in dom0[-2:]]
    assert main(["review", "resolve", str(cqr), "--domain", "0", "--decision", "split",
                 "--themes", ";".join(moved), "--name", "Supervision", "--core-idea",
                 "Bringing the session to a supervisor", "--by", "ana"]) == 0
    new = int(run.domains["domain_id"].max()) + 1
    run = load_run(cqr)
    with ReviewStore(run) as store:
        st = review_status(store)
        created = next(i for i in st.items if i.item == f"domain:{new}")
        assert created.state == "resolved"               # made by the split: nothing open
        live = live_codebook(run, st)
        assert live["domains"][new]["name"] == "Supervision"
        assert {c["id"] for c in live["domains"][new]["categories"]} == {int(t) for t in moved}
        assert not {int(t) for t in moved} & {c["id"] for c in live["domains"][0]["categories"]}
        _settle(store)
        book = build_codebook(run, review_status(store)).data
    d = next(x for x in book["domains"] if x["id"] == new)
    assert d["definition"] == "Bringing the session to a supervisor"
    assert any("split" in ch for ch in next(x for x in book["domains"] if x["id"] == 0)["changes"])
    # one undo takes the whole split back (after the accepts recorded after it)
    with ReviewStore(load_run(cqr)) as store:
        while store.undo_target()["item"] != "domain:0":
            store.undo_consensus("ana")
        store.undo_consensus("ana")
        assert str(new) not in store.run.domain_ids
        live = live_codebook(store.run, review_status(store))
        assert {int(t) for t in moved} <= {c["id"] for c in live["domains"][0]["categories"]}


def test_the_judges_core_idea_follows_a_split_that_empties_its_domain(cqr):
    """A judges' core idea is listed in its own domain; a split that took every category
    of that domain to a new one left the domain out of the codebook, and the core idea
    with it: the codebook said "one per case" and had no line for that case. It goes,
    as written, to the domain that now holds its segments."""
    run = load_run(cqr)
    ci = run.core_ideas
    dom = int(ci["domain_id"].iat[0])
    case = str(ci[ci["domain_id"] == dom]["case_id"].iat[0])
    every = [str(t) for t in run.themes[run.themes["domain_id"] == dom]["theme_id"]]
    with ReviewStore(run) as store:
        store.resolve([Decision(core_idea_item(case, dom), "edit", core_idea=CORE)], by="ana")
    assert main(["review", "resolve", str(cqr), "--domain", str(dom), "--decision", "split",
                 "--themes", ";".join(every), "--name", "All of it", "--by", "ana"]) == 0
    new = int(run.domains["domain_id"].max()) + 1
    with ReviewStore(load_run(cqr)) as store:
        _settle(store)
        book = build_codebook(store.run, review_status(store)).data
    assert dom not in {d["id"] for d in book["domains"]}
    got = [c for c in next(d for d in book["domains"] if d["id"] == new)["core_ideas"]
           if c["case"] == case]
    assert [(c["core_idea"], c["source"], c["moved_from"]) for c in got] == [(CORE, "judges", dom)]
    assert main(["review", "apply", str(cqr)]) == 0
    assert CORE in (cqr / "review" / "codebook.md").read_text()


def test_a_domain_kept_with_no_category_keeps_its_core_ideas_and_says_why(cqr, capsys):
    """Every judge accepted the domain and its only categories were rejected: the
    domain left the codebook, its core ideas with it, and the export said only "left
    out: rejected theme(s)". It stays, with its core ideas (the judges' among them)
    and a line saying it has no category and why, in every file and message."""
    run = load_run(cqr)
    dom = int(run.core_ideas["domain_id"].iat[0])
    mine = run.core_ideas[run.core_ideas["domain_id"] == dom]
    case = str(mine["case_id"].iat[0])
    rejected = [int(t) for t in run.themes[run.themes["domain_id"] == dom]["theme_id"]]
    with ReviewStore(run) as store:
        store.resolve([Decision(core_idea_item(case, dom), "edit", core_idea=CORE)]
                      + [Decision(theme_item(t), "reject") for t in rejected], by="ana")
        _settle(store)
        book = build_codebook(store.run, review_status(store)).data
    entry = next(d for d in book["domains"] if d["id"] == dom)
    assert entry["categories"] == [] and "core_ideas_without_domain" not in book
    assert all(f"theme {t} " in entry["no_category"] for t in rejected)
    assert "was rejected" in entry["no_category"]
    ideas = {c["case"]: (c["core_idea"], c["source"]) for c in entry["core_ideas"]}
    assert ideas[case] == (CORE, "judges")
    assert set(ideas) == {str(c) for c in mine["case_id"]}
    assert main(["review", "apply", str(cqr)]) == 0
    md = (cqr / "review" / "codebook.md").read_text()
    section = md.split(f"## {entry['name']}")[1].split("\n## ")[0]
    assert "**No category**" in section and "was rejected" in section and CORE in section
    # ... and in the team's other tools, from the store and from codebook.yaml
    for source in (cqr, cqr / "review" / "codebook.yaml"):
        capsys.readouterr()
        out = cqr / "export" / "bare.qdpx"
        assert main(["export", "qdpx", str(source), "--out", str(out)]) == 0
        said = capsys.readouterr().out
        assert f"kept without a category: domain {dom} " in said and "was rejected" in said
        project = etree.fromstring(zipfile.ZipFile(out).read("project.qde"))
        code = next(c for c in project.iter(f"{QDA}Code") if c.get("name") == entry["name"])
        assert "No category: " in code.findtext(f"{QDA}Description")
        notes = {n.get("name"): n.findtext(f"{QDA}PlainTextContent")
                 for n in project.iter(f"{QDA}Note")}
        title = f"Core idea of {case} (the judges): {entry['name']}"
        assert notes[title].startswith(CORE)
        assert f"No category: {entry['name']}" in notes
        assert schema_errors(out) == []


def test_the_judges_core_idea_of_a_domain_no_longer_in_the_codebook_is_listed_apart(cqr):
    """A split took every category of the domain to a new one, and those were rejected:
    no domain of the codebook holds the segments of the core idea the judges wrote
    there. It is listed apart, never lost."""
    run = load_run(cqr)
    dom = int(run.core_ideas["domain_id"].iat[0])
    case = str(run.core_ideas[run.core_ideas["domain_id"] == dom]["case_id"].iat[0])
    every = [str(t) for t in run.themes[run.themes["domain_id"] == dom]["theme_id"]]
    with ReviewStore(run) as store:
        store.resolve([Decision(core_idea_item(case, dom), "edit", core_idea=CORE)]
                      + [Decision(theme_item(int(t)), "reject") for t in every], by="ana")
    assert main(["review", "resolve", str(cqr), "--domain", str(dom), "--decision", "split",
                 "--themes", ";".join(every), "--name", "All of it", "--by", "ana"]) == 0
    with ReviewStore(load_run(cqr)) as store:
        _settle(store)
        book = build_codebook(store.run, review_status(store)).data
    assert dom not in {d["id"] for d in book["domains"]}
    assert [(c["case"], c["domain"], c["core_idea"]) for c in book["core_ideas_without_domain"]] \
        == [(case, dom, CORE)]
    assert main(["review", "apply", str(cqr)]) == 0
    assert CORE in (cqr / "review" / "codebook.md").read_text()
    # ... and it reaches the team's other tools, from the store and from codebook.yaml
    for source in (cqr, cqr / "review" / "codebook.yaml"):
        out = cqr / "export" / "apart.qdpx"
        assert main(["export", "qdpx", str(source), "--out", str(out)]) == 0
        project = etree.fromstring(zipfile.ZipFile(out).read("project.qde"))
        notes = {n.get("name"): n.findtext(f"{QDA}PlainTextContent")
                 for n in project.iter(f"{QDA}Note")}
        title = next(t for t in notes if t.startswith(f"Core idea of {case} (the judges)"))
        assert "no longer in the codebook" in title and notes[title].startswith(CORE)
        assert any(link.get("name") == title for link in project.iter(f"{QDA}Link"))
        assert schema_errors(out) == []


def test_a_core_idea_whose_segments_moved_here_is_not_said_to_be_a_merged_domains():
    """A theme merged into a category of another domain brings its case's sentences
    with it: the case has two core ideas in that domain although no domain was
    merged. codebook.md said "one from each merged domain" and marked both with this
    domain."""
    from pipeline.review.apply import _core_idea_lines

    dom = {"id": 1, "core_ideas": [
        {"case": "T01", "core_idea": "Tears came.", "source": "proposed", "segment_ids": ["a"]},
        {"case": "T01", "core_idea": "I held them.", "source": "proposed", "segment_ids": ["b"],
         "moved_from": 2, "moved_from_name": "Holding back"}]}
    lines = _core_idea_lines(dom)
    assert lines[0] == "**Core ideas** (one per case)"
    assert "- T01: 2 core ideas, one from each domain its segments here come from" in lines
    assert "merged domain" not in "\n".join(lines)
    assert lines[-2].strip().startswith("- moved here (proposed): I held them.")
    assert 'from the core idea proposed in domain 2 "Holding back"' in lines[-2]


def test_a_domain_merge_is_one_decision_with_undo(cqr):
    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision("domain:3", "merge", target="0")], by="ana")
        live = live_codebook(store.run, review_status(store))
        assert live["domains"][3]["into"] == 0
        themes3 = store.run.themes[store.run.themes["domain_id"] == 3]["theme_id"].tolist()
        assert set(themes3) <= {c["id"] for c in live["domains"][0]["categories"]}
        store.undo_consensus("ana")
        live = live_codebook(store.run, review_status(store))
        assert live["domains"][3]["into"] == 3


def test_a_merged_domain_lists_each_case_once_with_the_core_idea_of_each_domain(cqr):
    """A core idea is one per case and domain: after a domain merge the codebook lists
    each case once, the core ideas of the two proposed domains together under it and
    marked with their domain, the judges' edit of the merged one kept."""
    ci = pd.read_parquet(cqr / "core_ideas.parquet")
    into, merged = 0, 1
    both = sorted(set(ci[ci["domain_id"] == into]["case_id"])
                  & set(ci[ci["domain_id"] == merged]["case_id"]))
    assert both, "the fixture has a case with a core idea in both domains"
    case = both[0]
    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision(f"domain:{merged}", "merge", target=str(into)),
                       Decision(core_idea_item(case, merged), "edit", core_idea=CORE)],
                      by="ana")
        _settle(store)
    assert main(["review", "apply", str(cqr)]) == 0
    md = (cqr / "review" / "codebook.md").read_text(encoding="utf-8")
    section = md.split("**Core ideas**", 1)[1].split("\n### ", 1)[0]
    cases = re.findall(r"^- (\S+?)[: ]", section, flags=re.M)
    assert len(cases) == len(set(cases)), cases               # each case once
    assert set(both) <= set(cases)
    assert f"domain {merged} was merged in" in section.splitlines()[0]
    block = section.split(f"- {case}: 2 core ideas, one from each domain its segments here "
                          "come from\n", 1)[1]
    lines = [x.strip() for x in block.split("\n- ", 1)[0].strip().splitlines()]
    assert lines[0].startswith(f"- domain {into} ")
    assert lines[1].startswith(f"- domain {merged} ") and ", merged in (judges): " + CORE in lines[1]
    # the export's notes say which domain each of the case's two core ideas came from
    assert main(["export", "qdpx", str(cqr)]) == 0
    from pipeline.exchange.agreed import export_content
    titles = [n.title for n in export_content(cqr).notes
              if n.title.startswith(f"Core idea of {case} ") and n.about == ("domain", into)]
    assert len(titles) == len(set(titles)) == 2
    assert any(f"(from domain {merged} " in t for t in titles)


def test_a_core_idea_quotes_only_its_domain_and_moved_sentences_follow_their_segments(cqr):
    """A segment the judges moved to a category of another domain stayed quoted by the
    core idea of its first domain, and a domain made of moved segments had no core
    ideas. A proposed core idea keeps the sentences of segments still in its domain; the
    others go, with their segment, to the case's core ideas in the domain they joined."""
    import yaml

    ci = pd.read_parquet(cqr / "core_ideas.parquet")
    seg = pd.read_parquet(cqr / "segments.parquet")
    themes = pd.read_parquet(cqr / "themes.parquet")
    row = next(r for r in ci.itertuples() if len(set(r.segment_ids)) >= 2)
    case, dom = str(row.case_id), int(row.domain_id)
    moved = str(row.segment_ids[-1])
    other = themes[(themes["domain_id"] != dom) & (themes["domain_id"] >= 0)]
    target = int(other["theme_id"].iat[0])
    to_dom = int(other["domain_id"].iat[0])
    assert moved in set(seg["segment_id"])
    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision(f"segment:{moved}", "move", target=str(target))], by="ana")
        _settle(store)
    assert main(["review", "apply", str(cqr)]) == 0
    cb = yaml.safe_load((cqr / "review" / "codebook.yaml").read_text(encoding="utf-8"))
    ideas = {d["id"]: d.get("core_ideas", []) for d in cb["domains"]}
    home = [c for c in ideas[dom] if c["case"] == case and "moved_from" not in c]
    assert home and moved not in home[0]["segment_ids"]
    kept = [str(x) for x in row.segment_ids if str(x) != moved]
    assert set(home[0]["segment_ids"]) == set(kept)
    away = [c for c in ideas[to_dom] if c["case"] == case and c.get("moved_from") == dom]
    assert away and away[0]["segment_ids"] == [moved] and away[0]["core_idea"]
    text = seg.set_index("segment_id").at[moved, "text"]
    assert set(re.findall(r"\w+", away[0]["core_idea"])) <= set(re.findall(r"\w+", text))
    md = (cqr / "review" / "codebook.md").read_text(encoding="utf-8")
    assert f"from the core idea proposed in domain {dom}" in md
    # in the project, a note of its own on the domain it joined
    from pipeline.exchange.agreed import export_content

    notes = [n for n in export_content(cqr).notes if n.key.startswith("case-core-idea/")]
    assert len({n.key for n in notes}) == len(notes)
    assert any(n.about == ("domain", to_dom) and f"(from domain {dom}: its segments moved "
               "here)" in n.title and n.case == case for n in notes)
    assert main(["export", "qdpx", str(cqr)]) == 0


def test_a_core_idea_whose_segments_all_moved_goes_whole_with_them(cqr):
    import yaml

    ci = pd.read_parquet(cqr / "core_ideas.parquet")
    themes = pd.read_parquet(cqr / "themes.parquet")
    row = ci.iloc[0]
    case, dom = str(row["case_id"]), int(row["domain_id"])
    other = themes[(themes["domain_id"] != dom) & (themes["domain_id"] >= 0)]
    target, to_dom = int(other["theme_id"].iat[0]), int(other["domain_id"].iat[0])
    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision(f"segment:{s}", "move", target=str(target))
                       for s in dict.fromkeys(str(x) for x in row["segment_ids"])], by="ana")
        _settle(store)
    assert main(["review", "apply", str(cqr)]) == 0
    cb = yaml.safe_load((cqr / "review" / "codebook.yaml").read_text(encoding="utf-8"))
    ideas = {d["id"]: d.get("core_ideas", []) for d in cb["domains"]}
    assert not [c for c in ideas.get(dom, []) if c["case"] == case and "moved_from" not in c]
    (away,) = [c for c in ideas[to_dom] if c["case"] == case and c.get("moved_from") == dom]
    assert away["core_idea"] == row["core_idea"]
    # the home domain's page offered its form still, and a core idea written there
    # reached the codebook with no segment under it
    from pipeline.web.pages import domain_page

    run = load_run(cqr)
    with ReviewStore(run) as store:
        page = domain_page(run, store, str(dom), "ana")
    (home,) = [c for c in page["core_ideas"] if c["case"] == case]
    assert home["gone"] and home["segment_ids"] == [] and home["moved_out"]
    with ReviewStore(run) as store:
        store.set_panel(["ana", "ben"], ["dee"])
    html = Web(cqr, "ana").get(f"/domain/{dom}")
    article = html.split(f'id="core-{case}"', 1)[1].split("</article>", 1)[0]
    assert "No segment of case" in article and "core-idea-form" not in article


def _moved_where_none_was_proposed(run: Path) -> tuple[str, int, str, int, int]:
    """(case, its domain, a segment of its core idea there, a theme of another domain,
    that domain) where the run proposed the case no core idea."""
    ci = pd.read_parquet(run / "core_ideas.parquet")
    themes = pd.read_parquet(run / "themes.parquet")
    have = set(zip(ci["case_id"].astype(str), ci["domain_id"].astype(int)))
    for r in ci.itertuples():
        if len(set(r.segment_ids)) < 2:
            continue
        for t in themes[(themes["domain_id"] != r.domain_id)
                        & (themes["domain_id"] >= 0)].itertuples():
            if (str(r.case_id), int(t.domain_id)) not in have:
                return (str(r.case_id), int(r.domain_id), str(r.segment_ids[-1]),
                        int(t.theme_id), int(t.domain_id))
    raise AssertionError("the fixture has a case with no core idea in some domain")


@pytest.fixture()
def cqr_gap(tmp_path) -> Path:
    """The CQR run of the study where the last interview leaves out the supervision
    question: the run proposes that case no core idea there. A panel (ana, ben)."""
    run = run_study_cli(tmp_path / "gap", skip={5: "supervision"}, analysis="consensa.CQR.v1")
    with ReviewStore(load_run(run), create=True) as s:
        s.set_panel(["ana", "ben"], ["dee"])
    return run


def test_the_judges_write_the_core_idea_of_a_case_whose_segments_they_moved(cqr_gap):
    """The judges moved a case's segment into a domain where the run proposed the case
    no core idea, and rewrote its core idea at home. The judges' text at home still
    cited the moved segment, the moved sentences were lost (the judges' edit at home
    kept them there), and no core idea could be written for the case in its new
    domain: "the run proposed no core idea"."""
    cqr = cqr_gap
    case, dom, moved, target, to_dom = _moved_where_none_was_proposed(cqr)
    home_text = "Came close to tears, and said so to the client."
    new_text = "Told the story to the client's family, later."
    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision(f"segment:{moved}", "move", target=str(target)),
                       Decision(core_idea_item(case, dom), "edit", core_idea=home_text)],
                      by="ana")
        _settle(store)
    assert main(["review", "apply", str(cqr)]) == 0
    cb = yaml.safe_load((cqr / "review" / "codebook.yaml").read_text(encoding="utf-8"))
    ideas = {d["id"]: d.get("core_ideas", []) for d in cb["domains"]}
    (home,) = [c for c in ideas[dom] if c["case"] == case]
    assert home["core_idea"] == home_text and moved not in home["segment_ids"]
    (away,) = [c for c in ideas[to_dom] if c["case"] == case]
    assert away["source"] == "proposed" and away["segment_ids"] == [moved]
    assert away["moved_from"] == dom and away["core_idea"]

    # the next round's workbook gives the case a row in its new domain
    assert main(["review", "next-round", str(cqr), "--by", "team"]) == 0
    assert main(["review", "export", str(cqr), "--judges", "ana,ben"]) == 0
    wb = openpyxl.load_workbook(cqr / "review" / "round-2" / "ana.xlsx")
    ids = [r[0] for r in wb["core ideas"].iter_rows(min_row=2, values_only=True)]
    assert f"{case}:{to_dom}" in ids
    # and the web's domain page a form
    from pipeline.web.pages import domain_page

    run = load_run(cqr)
    with ReviewStore(run) as store:
        page = domain_page(run, store, str(to_dom), "ana")
        assert core_idea_item(case, to_dom) in [c["item"] for c in page["core_ideas"]]
        # the home domain's page cites what stayed, and names what moved out
        (row,) = [c for c in domain_page(run, store, str(dom), "ana")["core_ideas"]
                  if c["case"] == case]
        assert moved not in row["segment_ids"] and row["moved_out"] == [moved]
        assert row["segment_ids"] and not row["gone"]
        store.resolve([Decision(core_idea_item(case, to_dom), "edit", core_idea=new_text)],
                      by="team")
        _settle(store)
    assert main(["review", "apply", str(cqr)]) == 0
    cb = yaml.safe_load((cqr / "review" / "codebook.yaml").read_text(encoding="utf-8"))
    (away,) = [c for c in next(d for d in cb["domains"] if d["id"] == to_dom)["core_ideas"]
               if c["case"] == case]
    assert away["source"] == "judges" and away["core_idea"] == new_text
    assert away["segment_ids"] == [moved] and away["proposed"]
    # a case or domain the run does not have is still refused, naming it
    with ReviewStore(load_run(cqr)) as store, pytest.raises(ReviewError, match="no case 'X9'"):
        store.resolve([Decision(core_idea_item("X9", to_dom), "edit", core_idea="x")], by="team")


def test_a_merged_in_domains_core_idea_is_its_own_item_not_a_new_row():
    """A case whose only core idea came from a domain merged into another was listed as
    a core idea the run never proposed in the domain it joined: a second row, in the
    next round's workbooks, for what is the merged-in domain's own item."""
    from types import SimpleNamespace

    from pipeline.review.apply import unproposed_core_ideas

    run = SimpleNamespace(core_idea_ids=frozenset({"A:3", "B:0"}))
    book = {"domains": [{"id": 0, "name": "Crying in session", "core_ideas": [
        {"case": "A", "from_domain": 3, "source": "proposed", "core_idea": "x",
         "segment_ids": ["A:1:0"]},
        {"case": "B", "from_domain": 0, "source": "proposed", "core_idea": "y",
         "segment_ids": ["B:1:0"]},
        {"case": "C", "source": "proposed", "core_idea": "z", "segment_ids": ["C:4:0"],
         "moved_from": 2}]}]}
    assert unproposed_core_ideas(run, book) == {0: [
        {"case": "C", "domain_id": 0, "domain_name": "Crying in session", "core_idea": "z",
         "segment_ids": ["C:4:0"]}]}


def test_the_judges_domain_changes_and_definition_reach_the_project(cqr):
    """Renaming a domain, merging one in or creating one left no trace in the exported
    project, where every category change is a note; and the definition the judges
    wrote was not where a coder reads a code."""
    import xml.etree.ElementTree as ET
    import zipfile

    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision("domain:0", "rename", new_name="Crying in the room",
                                core_idea="When the therapist's tears came in session.")],
                      by="ana")
        _settle(store)
    assert main(["review", "apply", str(cqr)]) == 0
    from pipeline.exchange.agreed import export_content

    (note,) = [n for n in export_content(cqr).notes if n.key == "domain-changes/0"]
    assert note.about == ("domain", 0) and "renamed" in note.text
    assert main(["export", "qdpx", str(cqr)]) == 0
    (project,) = (cqr / "export").glob("*.qdpx")
    with zipfile.ZipFile(project) as z:
        root = ET.fromstring(z.read("project.qde"))
    ns = "{urn:QDA-XML:project:1.0}"
    code = next(c for c in root.iter(f"{ns}Code") if c.get("name") == "Crying in the room")
    assert code.find(f"{ns}Description").text.startswith(
        "When the therapist's tears came in session. Domain (")
    titles = [n.get("name") for n in root.iter(f"{ns}Note")]
    assert "Agreed changes: Crying in the room" in titles


def _case_in_both(run: Path, into: int = 0, merged: int = 3) -> str:
    ci = pd.read_parquet(run / "core_ideas.parquet")
    both = sorted(set(ci[ci["domain_id"] == into]["case_id"])
                  & set(ci[ci["domain_id"] == merged]["case_id"]))
    assert both, "the fixture has a case with a core idea in both domains"
    return str(both[0])


def test_the_judges_make_one_core_idea_of_a_case_for_merged_domains(cqr, capsys):
    """After a domain merge a case has a core idea from each domain; CQR writes one per
    case and domain. The judges write it on one and merge the other into it: the
    codebook and the exports then hold one core idea of the case, with the segments of
    both, saying which domains it stands for. A merge whose domains are not merged, into
    itself, or into one that merges on is refused, nothing recorded."""
    into, merged = 0, 1
    case = _case_in_both(cqr, into, merged)
    ci = pd.read_parquet(cqr / "core_ideas.parquet")
    segs = {d: [str(x) for x in ci[(ci["case_id"] == case) & (ci["domain_id"] == d)]
                ["segment_ids"].iat[0]] for d in (into, merged)}
    fold = Decision(core_idea_item(case, merged), "merge", target=str(into))
    with ReviewStore(load_run(cqr)) as store:
        with pytest.raises(ReviewError, match=f"domains {merged} and {into} are not merged"):
            store.resolve([fold], by="ana")
        with pytest.raises(ReviewError, match="cannot merge into itself"):
            store.resolve([Decision(core_idea_item(case, merged), "merge",
                                    target=str(merged))], by="ana")
        with pytest.raises(ReviewError, match="takes no text"):
            store.resolve([Decision(core_idea_item(case, merged), "merge", target=str(into),
                                    core_idea=CORE)], by="ana")
        with pytest.raises(ReviewError, match="merges into the one in domain"):
            store.resolve([Decision(f"domain:{merged}", "merge", target=str(into)), fold,
                           Decision(core_idea_item(case, into), "merge",
                                    target=str(merged))], by="ana")
        assert store.consensus() == {}
        store.resolve([Decision(f"domain:{merged}", "merge", target=str(into)),
                       Decision(core_idea_item(case, into), "edit", core_idea=CORE), fold],
                      by="ana")
        _settle(store)
    assert main(["review", "apply", str(cqr)]) == 0
    md = (cqr / "review" / "codebook.md").read_text(encoding="utf-8")
    section = md.split("**Core ideas**", 1)[1].split("\n### ", 1)[0]
    (line,) = [x for x in section.splitlines() if x.startswith(f"- {case}")]
    assert f"(judges): {CORE}" in line and f"(one core idea for domains {into} and {merged})" \
        in line and "2 core ideas" not in line
    for s in segs[into] + segs[merged]:
        assert s in line
    data = yaml.safe_load((cqr / "review" / "codebook.yaml").read_text(encoding="utf-8"))
    dom = next(d for d in data["domains"] if d["id"] == into)
    (mine,) = [c for c in dom["core_ideas"] if c["case"] == case]
    assert mine["core_idea"] == CORE and mine["merged_from"][0]["domain"] == merged
    # one note in the exports for the case, naming both domains
    assert main(["export", "qdpx", str(cqr)]) == 0
    from pipeline.exchange.agreed import export_content
    titles = [n.title for n in export_content(cqr).notes
              if n.title.startswith(f"Core idea of {case} ") and n.about == ("domain", into)]
    assert len(titles) == 1 and f"one core idea for domains {into}, {merged}" in titles[0]


def test_merged_proposed_core_ideas_are_joined_and_a_stale_merge_keeps_both(cqr):
    """A merge into a core idea the judges did not write joins the two proposed texts
    (nothing proposed is lost); when the domain merge is taken back, the core idea
    merge is not applied and each domain keeps its own."""
    into, merged = 0, 1
    case = _case_in_both(cqr, into, merged)
    ci = pd.read_parquet(cqr / "core_ideas.parquet")
    text = {d: str(ci[(ci["case_id"] == case) & (ci["domain_id"] == d)]["core_idea"].iat[0])
            for d in (into, merged)}
    run = load_run(cqr)
    with ReviewStore(run) as store:
        store.resolve([Decision(f"domain:{merged}", "merge", target=str(into))], by="ana")
        store.resolve([Decision(core_idea_item(case, merged), "merge", target=str(into))],
                      by="ana")
        cb = build_codebook(run, review_status(store), draft=True)
        dom = next(d for d in cb.data["domains"] if d["id"] == into)
        (mine,) = [c for c in dom["core_ideas"] if c["case"] == case]
        assert mine["source"] == "proposed"
        assert mine["core_idea"] == f"{text[into].rstrip()} {text[merged].strip()}"
        # the domain merge cannot be taken back while a core idea merge depends on it
        with pytest.raises(ReviewError, match=f"domains {merged} and {into} are not merged"):
            store.resolve([Decision(f"domain:{merged}", "accept")], by="ana")
        cons = store.consensus()
    # where it no longer stands all the same (the judges' agreed positions changed), the
    # core idea merge is not applied, and each domain keeps its own
    from pipeline.review.apply import agreed_core_ideas
    cons[f"domain:{merged}"] = Decision(f"domain:{merged}", "accept")
    for d in (into, merged):
        (own,) = [c for c in agreed_core_ideas(run, cons, [d]) if c["case"] == case]
        assert own["core_idea"] == text[d] and "merged_from" not in own


def test_a_core_idea_merge_the_judges_agree_on_is_blocked_until_the_domains_merge(cqr, capsys):
    """Both judges merge a case's core idea into another domain's while the domains are
    not merged: the positions agree, but the merge cannot stand. It is *blocked*, saying
    why, the round stays open and the codebook keeps each core idea; once the domains
    are merged it is agreed and applied. Other decisions can be resolved meanwhile."""
    into, merged = 0, 1
    case = _case_in_both(cqr, into, merged)
    item = core_idea_item(case, merged)
    fold = Decision(item, "merge", target=str(into))
    run = load_run(cqr)
    with ReviewStore(run) as store:
        store.record_positions([("ana", [fold]), ("ben", [fold])])
        st = review_status(store)
        (mine,) = [i for i in st.items if i.item == item]
        assert mine.state == "blocked" and mine.consensus is None
        assert f"domains {merged} and {into} are not merged" in mine.note
        assert mine in st.pending() and not st.closed
        assert item not in store.standing()
        # the dangling merge does not stop the panel from resolving something else
        store.resolve([Decision("theme:0", "accept")], by="team")
        cb = build_codebook(run, st, draft=True)
        dom = next(d for d in cb.data["domains"] if d["id"] == merged)
        assert [c for c in dom["core_ideas"] if c["case"] == case]     # still its own
    assert main(["review", "status", str(cqr)]) == 0
    out = capsys.readouterr().out
    assert "Round 1 is open" in out
    assert f"BLOCKED: merged into the core idea of case {case!r} in domain {into}" in out
    assert "are not merged; merge the domains, or keep a core idea in each" in out
    page = Web(cqr, "ana").get(f"/domain/{merged}")
    block = page.split(f'id="core-{case}"', 1)[1].split("</article>", 1)[0]
    assert 'class="badge blocked"' in block and "Blocked: merged into" in block
    with ReviewStore(run) as store:
        store.resolve([Decision(f"domain:{merged}", "merge", target=str(into))], by="team")
        (mine,) = [i for i in review_status(store).items if i.item == item]
        assert mine.state == "agreed" and mine.consensus.target == str(into)
        assert store.standing()[item].decision == "merge"


def test_the_workbook_and_the_domain_page_merge_core_ideas(cqr, capsys):
    into, merged = 0, 1
    case = _case_in_both(cqr, into, merged)
    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision(f"domain:{merged}", "merge", target=str(into))], by="team")
    # the workbook: 'merge into' on the core ideas sheet is a merge position
    assert main(["review", "export", str(cqr), "--judges", "ana,ben", "--auditor", "dee",
                 "-q"]) == 0
    book = cqr / "review" / "round-1" / "ana.xlsx"
    wb = openpyxl.load_workbook(book)
    assert "merge into" in [c.value for c in wb["core ideas"][1]]
    fill(book, "core ideas", f"{case}:{merged}", merge_into=into)
    assert main(["review", "import", str(cqr), str(book)]) == 0, capsys.readouterr().err
    with ReviewStore(load_run(cqr)) as store:
        got = store.positions()[core_idea_item(case, merged)]["ana"]
    assert (got.decision, got.target) == ("merge", str(into))
    # the domain page offers the merge where the domains are merged, and records it
    web = Web(cqr, "ben")
    page = web.get(f"/domain/{merged}")
    block = page.split(f'id="core-{case}"', 1)[1].split("</article>", 1)[0]
    assert 'class="core-idea-merge"' in block and f'<option value="{into}">' in block
    form = block.split('class="core-idea-merge"', 1)[1]
    v_item, v_mine = (re.search(rf'name="{k}" value="(\d+)"', form).group(1)
                      for k in ("v_item", "v_mine"))
    r = web.post("/decide", _page=page, item=core_idea_item(case, merged), decision="merge",
                 target=str(into), v_item=v_item, v_mine=v_mine, **{"as": "consensus"})
    assert r.status_code == 303, r.text[:400]
    block = web.get(f"/domain/{merged}").split(f'id="core-{case}"', 1)[1]
    assert "Merged into" in block.split("</article>", 1)[0]
    block = web.get(f"/domain/{into}").split(f'id="core-{case}"', 1)[1].split("</article>")[0]
    assert f"Stands also for the core idea of this case in domain {merged}" in block
    # ... and shows the merged one's text, where the judge writes the one for both
    ci = pd.read_parquet(cqr / "core_ideas.parquet")
    text = str(ci[(ci["case_id"] == case) & (ci["domain_id"] == merged)]["core_idea"].iat[0])
    fellow = block.split(f'data-domain="{merged}"', 1)[1].split("</li>", 1)[0]
    assert "(merged into this one), proposed: " in fellow
    assert text[:60] in html.unescape(fellow)


def test_the_domain_page_edits_core_ideas_and_splits_the_domain(cqr):
    case, dom = _first_core(cqr)
    web = Web(cqr, "ana")
    page = web.get(f"/domain/{dom}")
    assert f'id="core-{case}"' in page and 'id="split-h"' in page
    r = web.post("/decide", _page=page, item=core_idea_item(case, dom), decision="edit",
                 core_idea=CORE, v_item="0", v_mine="0", **{"as": "consensus"})
    assert r.status_code == 303, r.text[:400]
    with ReviewStore(load_run(cqr)) as store:
        assert store.consensus()[core_idea_item(case, dom)].core_idea == CORE
    assert CORE in web.get(f"/domain/{dom}")
    # an empty core idea is refused on the domain page, nothing saved
    r = web.post("/decide", _page=page, item=core_idea_item(case, dom), decision="edit",
                 core_idea="", v_item="0", v_mine="0", **{"as": "position"})
    assert r.status_code == 400 and "edit needs the core idea" in r.text
    # the split form: no ticks is refused; ticks make the new domain
    r = web.post("/split-domain", _page=page, domain=str(dom), new_name="Supervision",
                 v_item="0")
    assert r.status_code == 400
    run = load_run(cqr)
    ticks = [str(t) for t in run.themes[run.themes["domain_id"] == dom]["theme_id"][:1]]
    with ReviewStore(load_run(cqr)) as store:   # someone decides on the domain meanwhile
        store.resolve([Decision(f"domain:{dom}", "accept")], by="ben")
        v = store.item_version(f"domain:{dom}")
    r = web.post("/split-domain", _page=web.get(f"/domain/{dom}"), domain=str(dom),
                 new_name="Supervision", v_item="0", _pairs=[("themes", t) for t in ticks])
    assert r.status_code == 409                         # the form saw version 0: refused
    r = web.post("/split-domain", _page=web.get(f"/domain/{dom}"), domain=str(dom),
                 new_name="Supervision", v_item=str(v), _pairs=[("themes", t) for t in ticks])
    assert r.status_code == 303, r.text[:400]
    assert "Supervision" in web.get(r.headers["location"])


# --- a themes run: nothing extra -------------------------------------------------------------

def test_a_themes_run_shows_nothing_extra(review_run):
    with ReviewStore(load_run(review_run), create=True) as s:
        s.set_panel(["ana", "ben"])
    assert main(["review", "export", str(review_run), "--judges", "ana,ben", "-q"]) == 0
    wb = openpyxl.load_workbook(review_run / "review" / "round-1" / "ana.xlsx")
    assert "core ideas" not in wb.sheetnames
    header = [c.value for c in wb["themes"][1]]
    assert "flags" not in header and "subgroups" not in header
    assert "case attributes" not in [c.value for c in wb["segments"][1]]
    web = Web(review_run, "ana")
    assert 'id="core-h"' not in web.get("/domain/0")
    page = web.get("/theme/0")
    assert 'class="flags"' not in page and 'id="subgroups-h"' not in page
    with ReviewStore(load_run(review_run)) as store:
        _settle(store)
    assert main(["review", "apply", str(review_run)]) == 0
    assert "| Evidence |" not in (review_run / "review" / "cqr_table.md").read_text()
    assert not (review_run / "review" / "cqr_subgroups.csv").exists()


def test_a_domains_rename_and_its_split_never_wipe_each_other_out(cqr):
    """A domain holds one consensus: recording a split over the agreed rename dropped
    the name, and recording the rename again undid the split (its domain gone, its
    categories back), each without a word. Each is refused, saying how to have both;
    creating the new domain and reassigning the category does it."""
    themes = pd.read_parquet(cqr / "themes.parquet")
    theme = int(themes.loc[themes["domain_id"] == 0, "theme_id"].iat[0])
    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision("domain:0", "rename", new_name="Tears in the room")], by="ana")
        with pytest.raises(ReviewError, match="a split recorded in its place would drop it"):
            store.split_domain("0", [str(theme)], "Holding back", "ana")
        assert store.consensus()["domain:0"].new_name == "Tears in the room"
        # what the refusal says to do instead
        new = store.create_domain("Holding back", "ana")
        store.resolve([Decision(f"theme:{theme}", "accept", domain=new.split(":")[1])],
                      by="ana")
        assert store.consensus()["domain:0"].new_name == "Tears in the room"
        # the other way round: a split, then a rename in its place
        other = int(themes.loc[themes["domain_id"] == 1, "theme_id"].iat[0])
        made = store.split_domain("1", [str(other)], "Afterwards", "ana")
        with pytest.raises(ReviewError, match="would undo the split"):
            store.resolve([Decision("domain:1", "rename", new_name="Later")], by="ana")
        assert store.consensus()["domain:1"].decision == "split"
        assert made.split(":")[1] == store.consensus()["domain:1"].target


def test_round_two_workbooks_carry_a_split_and_a_core_idea_and_import_unchanged(cqr):
    """The round-2 workbooks start from round 1's consensus (a split domain, the domain
    it made, a judge's core idea); given back unchanged they keep it all."""
    case, dom = _first_core(cqr)
    with ReviewStore(load_run(cqr)) as store:
        new = store.split_domain("0", ["3"], "Supervision", "ana", "Bringing it to a supervisor")
        store.resolve([Decision(core_idea_item(case, dom), "edit", core_idea=CORE)], by="ana")
        _settle(store)
        store.next_round("team", closed=review_status(store).closed)
    assert main(["review", "export", str(cqr), "--judges", "ana,ben", "-q"]) == 0
    books = [cqr / "review" / "round-2" / f"{j}.xlsx" for j in ("ana", "ben")]
    core = openpyxl.load_workbook(books[0])["core ideas"]
    row = next(r for r in core.iter_rows(min_row=2, values_only=True) if r[0] == f"{case}:{dom}")
    assert row[6] == CORE                                    # starts from the consensus
    assert main(["review", "import", str(cqr), *map(str, books)]) == 0
    with ReviewStore(load_run(cqr)) as store:
        st = review_status(store)
        assert st.closed, [i.label for i in st.pending()]
        assert {i.item: i.state for i in st.items}[new] in ("agreed", "carried")
        book = build_codebook(store.run, st).data
    assert any(c["source"] == "judges" for d in book["domains"] for c in d.get("core_ideas", []))
    assert any(d["name"] == "Supervision" for d in book["domains"])
    # the agreed .qdpx carries each case's core idea as a note on its domain's code
    assert main(["export", "qdpx", str(cqr)]) == 0

    (project,) = (cqr / "export").glob("*.qdpx")
    assert schema_errors(project) == []
    import zipfile
    from xml.etree import ElementTree as ET

    from pipeline.exchange.refi import NS_PROJECT
    P = f"{{{NS_PROJECT}}}"
    with zipfile.ZipFile(cqr / "export" / "mini-agreed.qdpx") as zf:
        root = ET.fromstring(zf.read("project.qde"))
    notes = {n.get("guid"): n.get("name") for n in root.iter(f"{P}Note")}
    judged = [g for g, name in notes.items()
              if name.startswith(f"Core idea of {case} (the judges)")]
    assert len(judged) == 1
    refs = {r.get("targetGUID") for c in root.iter(f"{P}Code") for r in c.findall(f"{P}NoteRef")}
    assert judged[0] in refs


def test_a_domain_split_refuses_a_theme_of_another_domain(cqr, capsys):
    # a split moves only its own domain's categories: a theme from elsewhere would stay
    # where it is and leave the new domain empty, while the split read as done
    run = load_run(cqr)
    other = run.themes[run.themes["domain_id"] != 0].iloc[0]
    tid, dom = int(other["theme_id"]), int(other["domain_id"])
    assert main(["review", "resolve", str(cqr), "--domain", "0", "--decision", "split",
                 "--themes", str(tid), "--name", "Supervision", "--by", "ana"]) == 2
    err = capsys.readouterr().err
    assert f"theme {tid} is in domain {dom}, not in domain 0" in err
    assert "nothing was recorded" in err
    with ReviewStore(load_run(cqr)) as store:
        assert "domain:0" not in store.consensus()
        # reassigned to domain 0 by the consensus, it is in domain 0 and the split takes it
        store.resolve([Decision(theme_item(tid), "reassign", domain="0")], by="ana")
    assert main(["review", "resolve", str(cqr), "--domain", "0", "--decision", "split",
                 "--themes", str(tid), "--name", "Supervision", "--by", "ana"]) == 0
    run = load_run(cqr)
    with ReviewStore(run) as store:
        live = live_codebook(run, review_status(store))
    new = int(run.domains["domain_id"].max())
    assert {c["id"] for c in live["domains"][new]["categories"]} == {tid}


def test_status_gives_a_label_the_cases_it_was_counted_from(cqr, capsys):
    # "typical, 10 cases" read as a contradiction (typical is fewer than all but one):
    # the codebook in `review status` gives the counted cases beside every case
    from pipeline.review.commands import codebook_text

    cat = {"name": "Came close to crying", "frequency_label": "typical", "n_cases": 10,
           "n_counted_cases": 6, "changes": []}
    live = {"draft": False, "codebook": {"cases_total": 10, "rejected_themes": [], "domains": [
        {"name": "A time you cried", "frequency_label": "general", "n_cases": 10,
         "changed": False, "categories": [cat, {**cat, "name": "Plain", "n_counted_cases": 10}]}]}}
    text = codebook_text(live)
    assert "- Came close to crying  [typical, 6/10 cases counted, 10 with reassigned outliers]" in text
    assert "- Plain  [typical, 10/10 cases]" in text
    assert main(["review", "status", str(cqr)]) == 0
    tail = capsys.readouterr().out.split("Codebook as it stands")[1]
    assert re.search(r"- .+  \[(general|typical|variant|rare), \d+/\d+ cases", tail)


# --- 5. the subcategories the run proposed --------------------------------------------------

def _proposed(run: Path, theme: int = 3) -> tuple[int, list[str]]:
    """A subcategory the run proposes within ``theme`` (tests/review_helpers.py), its
    id and segment ids, after the panel was set up: the review reads it as it reads a
    large category's."""
    from tests.review_helpers import propose_subcategory

    return propose_subcategory(run, theme)


def _category(book: dict, **where) -> dict:
    return next(c for d in book["domains"] for c in d["categories"]
                if all(c.get(k) == v for k, v in where.items()))


def test_a_proposed_subcategory_kept_on_the_command_line_is_counted_under_its_category(
        cqr, capsys):
    """The judges keep a proposed subcategory with `review resolve --subcategory`: the
    codebook, its CQR table and the assignments carry it under its category, counted
    again from its segments; one nobody reviewed is still listed as left out, and the
    decision carries into the next round."""
    sub, ids = _proposed(cqr)
    run = load_run(cqr)
    cases = sorted(run.segments.set_index("segment_id").loc[ids, "case_id"].unique())
    with ReviewStore(run) as store:
        _settle(store)
    assert main(["review", "apply", str(cqr)]) == 0
    book = yaml.safe_load((cqr / "review" / "codebook.yaml").read_text(encoding="utf-8"))
    assert [s["id"] for s in book["subcategories_not_reviewed"]] == [sub]  # not kept: left out
    assert "## Proposed subcategories not in this codebook" in \
        (cqr / "review" / "codebook.md").read_text(encoding="utf-8")

    assert main(["review", "resolve", str(cqr), "--subcategory", str(sub), "--decision",
                 "keep", "--name", "Crying in front of a client", "--by", "ana"]) == 0
    assert "keep as a subcategory" in capsys.readouterr().out
    assert main(["review", "apply", str(cqr)]) == 0
    book = yaml.safe_load((cqr / "review" / "codebook.yaml").read_text(encoding="utf-8"))
    kept = _category(book, name="Crying in front of a client")
    assert kept["parent"] == 3 and kept["proposed_subcategory"] == sub
    assert kept["n_segments"] == len(ids) and kept["cases"] == cases
    assert kept["counted_cases"] == cases and kept["n_counted_cases"] == len(cases)
    assert kept["frequency_label"] == frequency_label(len(cases), run.n_cases)
    assert any("kept by the judges" in ch for ch in kept["changes"])
    parent = _category(book, id=3)
    assert parent["n_segments"] == 4 and set(cases) <= set(parent["cases"])  # CQR nests
    assert book["subcategories_not_reviewed"] == []
    assert "subcategories_dropped" not in book
    md = (cqr / "review" / "codebook.md").read_text(encoding="utf-8")
    assert "#### Crying in front of a client (subcategory of" in md
    assert "Proposed subcategories not in this codebook" not in md
    table = (cqr / "review" / "cqr_table.md").read_text(encoding="utf-8")
    assert f"↳ Crying in front of a client | {kept['frequency_label']} | " \
           f"{len(cases)}/{run.n_cases}" in table
    assigned = pd.read_csv(cqr / "review" / "assignments.csv")
    assert set(assigned.loc[assigned["category_id"] == kept["id"], "segment_id"]) == set(ids)
    # round 2 starts from it
    assert main(["review", "next-round", str(cqr), "--by", "ana"]) == 0
    assert main(["review", "apply", str(cqr)]) == 0
    again = yaml.safe_load((cqr / "review" / "codebook.yaml").read_text(encoding="utf-8"))
    assert _category(again, proposed_subcategory=sub)["name"] == "Crying in front of a client"


def test_a_proposed_subcategory_dropped_stays_left_out_and_says_so(cqr):
    sub, ids = _proposed(cqr)
    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision(f"subcategory:{sub}", "drop"),
                       Decision("theme:3", "rename", new_name="Crying as care")], by="ana")
        _settle(store)
        # it stays under its category: a target is refused, and so is an unknown id
        with pytest.raises(ReviewError, match="does not go with a proposed subcategory"):
            store.resolve([Decision(f"subcategory:{sub}", "keep", target="4")], by="ana")
        with pytest.raises(ReviewError, match="unknown proposed subcategory id '999'"):
            store.resolve([Decision("subcategory:999", "keep")], by="ana")
        book = build_codebook(store.run, review_status(store)).data
    assert book["subcategories_not_reviewed"] == []
    assert [(s["id"], s["why"]) for s in book["subcategories_dropped"]] == [
        (sub, "dropped by the judges: its segments stay in its category")]
    # listed under its category's agreed name, which the codebook has, not the proposed
    assert book["subcategories_dropped"][0]["parent_name"] == "Crying as care"
    assert _category(book, id=3)["n_segments"] == 4                 # still in the category
    assert not any(c.get("proposed_subcategory") == sub
                   for d in book["domains"] for c in d["categories"])


def test_a_proposed_subcategory_kept_in_the_workbooks_reaches_the_codebook(cqr, capsys):
    """Each judge keeps or drops it on the workbook's sheet 'subcategories'; the same
    position from both is agreed, and the codebook has it."""
    sub, ids = _proposed(cqr)
    assert main(["review", "export", str(cqr), "--judges", "ana,ben"]) == 0
    books = [cqr / "review" / "round-1" / f"{j}.xlsx" for j in ("ana", "ben")]
    ws = openpyxl.load_workbook(books[0])["subcategories"]
    header = [c.value for c in ws[1]]
    row = next(r for r in ws.iter_rows(min_row=2, values_only=True) if r[0] == sub)
    assert row[header.index("theme id")] == 3 and row[header.index("n segments")] == len(ids)
    for path in books:
        fill(path, "subcategories", sub, decision="keep", new_name="Tears with a client")
    assert main(["review", "import", str(cqr), *map(str, books)]) == 0
    with ReviewStore(load_run(cqr)) as store:
        st = review_status(store)
        item = next(i for i in st.items if i.item == f"subcategory:{sub}")
        assert item.state == "agreed" and item.consensus.decision == "keep"
        _settle(store)
    assert main(["review", "status", str(cqr)]) == 0
    assert "Tears with a client" in capsys.readouterr().out
    assert main(["review", "apply", str(cqr)]) == 0
    book = yaml.safe_load((cqr / "review" / "codebook.yaml").read_text(encoding="utf-8"))
    assert _category(book, proposed_subcategory=sub)["name"] == "Tears with a client"
    assert "↳ Tears with a client" in (cqr / "review" / "cqr_table.md").read_text(encoding="utf-8")
    # a round-2 workbook starts from it
    assert main(["review", "next-round", str(cqr), "--by", "ana"]) == 0
    assert main(["review", "export", str(cqr), "--judges", "ana"]) == 0
    ws = openpyxl.load_workbook(cqr / "review" / "round-2" / "ana.xlsx")["subcategories"]
    row = next(r for r in ws.iter_rows(min_row=2, values_only=True) if r[0] == sub)
    assert row[header.index("decision")] == "keep"
    assert row[header.index("new name")] == "Tears with a client"


def test_the_parent_category_s_page_keeps_a_proposed_subcategory(cqr):
    sub, ids = _proposed(cqr)
    web = Web(cqr, "ana")
    page = web.get("/theme/3")
    li = re.search(rf'<li class="proposed-sub" id="sub-{sub}".*?</li>', page, re.S).group(0)
    assert "Tears in session" in li and 'value="keep"' in li and 'value="drop"' in li
    assert "create a category of its segments" not in page
    r = web.post("/decide", _page=page, item=f"subcategory:{sub}", decision="", v_item="0",
                 v_mine="0", **{"as": "consensus"})
    assert r.status_code == 400 and "Choose a decision" in r.text     # nothing chosen
    r = web.post("/decide", _page=page, item=f"subcategory:{sub}", decision="keep",
                 new_name="Crying with a client", v_item="0", v_mine="0",
                 back=f"/theme/3#sub-{sub}", **{"as": "consensus"})
    assert r.status_code == 303 and r.headers["location"] == f"/theme/3#sub-{sub}"
    with ReviewStore(load_run(cqr)) as store:
        assert store.consensus()[f"subcategory:{sub}"].new_name == "Crying with a client"
    li = re.search(rf'<li class="proposed-sub" id="sub-{sub}".*?</li>', web.get("/theme/3"),
                   re.S).group(0)
    assert "in the codebook as it stands: category" in li and "Crying with a client" in li
    assert web.client.get(f"/subcategory/{sub}").headers["location"] == f"/theme/3#sub-{sub}"


def test_a_proposed_stance_subcategory_shows_its_pole_to_the_judges(cqr):
    """Its phrase name seldom says which judgement its half of the category shares:
    the workbook's sheet and the category's page say it."""
    from tests.review_helpers import propose_subcategory

    sub, _ = propose_subcategory(cqr, 3, pole="not helpful")
    assert main(["review", "export", str(cqr), "--judges", "ana,ben"]) == 0
    ws = openpyxl.load_workbook(cqr / "review" / "round-1" / "ana.xlsx")["subcategories"]
    header = [c.value for c in ws[1]]
    row = next(r for r in ws.iter_rows(min_row=2, values_only=True) if r[0] == sub)
    assert row[header.index("stance")] == "not helpful"
    themes = openpyxl.load_workbook(cqr / "review" / "round-1" / "ana.xlsx")["themes"]
    head = [c.value for c in themes[1]]
    parent = next(r for r in themes.iter_rows(min_row=2, values_only=True) if r[0] == 3)
    assert "Tears in session (stance: not helpful)" in parent[head.index("proposed subcategories")]
    page = Web(cqr, "ana").get("/theme/3")
    li = re.search(rf'<li class="proposed-sub" id="sub-{sub}".*?</li>', page, re.S).group(0)
    assert "(stance: not helpful)" in li
    # and so do `review status` and every label of the item
    assert f'proposed subcategory {sub} "Tears in session" (stance: not helpful) of theme 3' \
        in load_run(cqr).label(f"subcategory:{sub}")
    # the packet, the panel's whole proposal, lists it under its category with its quotes
    packet = (cqr / "review" / "round-1" / "packet.html").read_text()
    theme_3 = packet.split("<h3>Theme 3: ")[1].split("<h3>")[0]
    assert f"Proposed subcategory {sub}: Tears in session (stance: not helpful)</h4>" in theme_3
    assert "<blockquote>" in theme_3.split("</h4>", 1)[1]


def test_the_agreement_counts_the_judges_positions_on_proposed_subcategories(cqr, capsys):
    """The judges keep or drop each proposed subcategory, and disagree on some: the
    agreement figures left them out, so a disputed one was in no figure."""
    sub, _ = _proposed(cqr)
    with ReviewStore(load_run(cqr)) as store:
        store.record_positions([("ana", [Decision(f"subcategory:{sub}", "keep")]),
                                ("ben", [Decision(f"subcategory:{sub}", "drop")])])
        st = review_status(store)
    subs = next(a for a in st.agreement if a.kind == "subcategory")
    assert subs.n_items == 1 and subs.percent == 0.0 and subs.categories == ["keep", "drop"]
    assert main(["review", "status", str(cqr)]) == 0
    assert "proposed subcategories: 1 items x 2 judges; identical decisions 0%" in \
        capsys.readouterr().out


def test_an_export_names_only_the_proposed_subcategories_not_kept(cqr, capsys):
    """The .qdpx has a kept subcategory as a code under its category's; the message and
    the project's note list as left out only the one that was not kept."""
    import xml.etree.ElementTree as ET

    sub, _ = _proposed(cqr, 3)
    other, _ = _proposed(cqr, 4)
    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision(f"subcategory:{sub}", "keep")], by="ana")
        _settle(store)
    assert main(["review", "apply", str(cqr)]) == 0
    capsys.readouterr()
    assert main(["export", "qdpx", str(cqr)]) == 0
    out = capsys.readouterr().out
    assert "left out: 1 proposed subcategories" in out
    (project,) = (cqr / "export").glob("*-agreed.qdpx")
    assert schema_errors(project) == []
    with zipfile.ZipFile(project) as z:
        root = ET.fromstring(z.read("project.qde"))
    name = pd.read_parquet(cqr / "themes.parquet").set_index("theme_id").at[3, "name"]
    parent = next(c for c in root.iter(f"{QDA}Code") if c.get("name") == name)
    assert "Tears in session" in [c.get("name") for c in parent.findall(f"{QDA}Code")]
    # its description says what it is, as its category's does
    kept = next(c for c in parent.findall(f"{QDA}Code") if c.get("name") == "Tears in session")
    assert kept.find(f"{QDA}Description").text.startswith("Subcategory (")
    assert parent.find(f"{QDA}Description").text.startswith("Category (")
    (note,) = [n for n in root.iter(f"{QDA}Note")
               if n.get("name") == "Proposed subcategories left out: 1"]
    text = note.find(f"{QDA}PlainTextContent").text
    assert "Tears in session" in text and "(under" in text and "not reviewed" in text
    assert text.count("- ") == 1


def test_a_kept_subcategory_follows_its_category_merged_nested_split_or_rejected(cqr):
    """Where a kept subcategory goes when its category does not stay as proposed: merged
    into another, under that one; made a subcategory itself, under its parent (one
    level deep); split, with the segments of it left in the category; rejected, nowhere,
    and the codebook says why."""
    sub, ids = _proposed(cqr)
    item = f"subcategory:{sub}"

    def book(*decisions: Decision) -> dict:
        with ReviewStore(load_run(cqr)) as store:
            while store.undo_target() is not None:
                store.undo_consensus("ana")
            store.resolve([Decision(item, "keep"), *decisions], by="ana")
            _settle(store)
            return build_codebook(store.run, review_status(store)).data

    merged = book(Decision("theme:3", "merge", target="2"))
    kept = _category(merged, proposed_subcategory=sub)
    assert kept["parent"] == 2 and kept["n_segments"] == len(ids)
    nested = book(Decision("theme:3", "subcategory", target="2"))
    assert _category(nested, proposed_subcategory=sub)["parent"] == 2
    split = book(Decision("theme:3", "split", segments=(ids[0],), new_name="Apart"))
    kept = _category(split, proposed_subcategory=sub)
    assert kept["parent"] == 3 and kept["n_segments"] == len(ids) - 1
    assert f"1 of its {len(ids)} segment(s) placed elsewhere by the judges" in kept["changes"]
    rejected = book(Decision("theme:3", "reject"))
    assert not any(c.get("proposed_subcategory") == sub
                   for d in rejected["domains"] for c in d["categories"])
    (left,) = rejected["subcategories_dropped"]
    assert left["id"] == sub and "its category was rejected" in left["why"]


def test_a_category_keeps_its_id_and_guid_whatever_other_decisions_are_added(cqr):
    """A kept subcategory, and a category split off a theme by the judges' agreed
    positions, got their ids at apply from a running counter: a category created, or a
    split agreed elsewhere, gave the kept subcategory the next id, and the codebook a
    judge had exported to a QDA tool (its GUIDs made of the ids) or pre-coded with
    named other categories. Each id now comes from what the category is made of, so
    every category of one apply has the same id and GUID in the next."""
    sub, ids = _proposed(cqr)
    run = load_run(cqr)
    seg_of = {t: sorted(run.segments_of(t)) for t in (5, 8, 10)}
    with ReviewStore(run) as store:
        store.resolve([Decision(f"subcategory:{sub}", "keep", new_name="Tears with a client")],
                      by="ana")
        # themes 5 and 8 agreed, not resolved: a split agreed later is no recorded one
        store.record_positions([(j, [Decision(f"theme:{t}", "accept") for t in (5, 8)])
                                for j in ("ana", "ben")])
        _settle(store)

    def applied() -> dict[str, tuple[int, str, frozenset]]:
        """name -> (id, the GUID of its code in the exported .qdc, its segments)."""
        assert main(["review", "apply", str(cqr)]) == 0
        assert main(["export", "qdc", str(cqr)]) == 0
        book = yaml.safe_load((cqr / "review" / "codebook.yaml").read_text(encoding="utf-8"))
        qdc = etree.parse(next((cqr / "export").glob("*-agreed.qdc"))).getroot()
        guid = {c.get("name"): c.get("guid") for c in qdc.iter("{*}Code")}
        placed = pd.read_csv(cqr / "review" / "assignments.csv", dtype={"segment_id": str})
        return {c["name"]: (c["id"], guid[c["name"]], frozenset(
            placed.loc[placed["category_id"] == c["id"], "segment_id"]))
            for d in book["domains"] for c in d["categories"]}

    def split(t: int, name: str) -> None:
        with ReviewStore(load_run(cqr)) as store:
            store.record_positions([(j, [Decision(f"theme:{t}", "split", new_name=name,
                                                  segments=(seg_of[t][0],))])
                                    for j in ("ana", "ben")])
            assert next(i for i in review_status(store).items
                        if i.item == f"theme:{t}").consensus.target == ""

    steps = [applied()]
    assert steps[0]["Tears with a client"][2] == frozenset(ids)
    with ReviewStore(load_run(cqr)) as store:
        store.create_category("Made by the panel", seg_of[10][:1], "1", by="ben")
    steps.append(applied())
    split(8, "Split off eight")
    steps.append(applied())
    split(5, "Split off five")      # a lower theme's split: it came first at apply
    steps.append(applied())
    assert {"Tears with a client", "Made by the panel", "Split off eight",
            "Split off five"} <= set(steps[-1])
    for before, after in zip(steps, steps[1:]):
        for name, was in before.items():     # every category: its id and its code
            assert after[name][:2] == was[:2], f"{name!r} changed its id between two applies"
    for name in ("Tears with a client", "Made by the panel", "Split off eight"):
        assert len({step[name] for step in steps if name in step}) == 1  # and its segments
    # unique, and none the id of a theme the run proposed or the judges created
    last = steps[-1]
    assert len({v[0] for v in last.values()}) == len(last)
    themes = {int(t) for t in load_run(cqr).themes["theme_id"]} - {
        last["Made by the panel"][0]}
    for name in ("Tears with a client", "Split off eight", "Split off five"):
        assert last[name][0] not in themes


def test_a_workbook_exported_before_subcategories_were_reviewed_still_imports(cqr, capsys):
    """A workbook of a run that proposes subcategories, exported before the judges kept
    or dropped them, has no sheet 'subcategories' (nor instructions for one): its other
    sheets import as they did. One whose sheet was deleted is refused, naming it."""
    from pipeline.review.workbook import SUB_INSTRUCTIONS, SUB_SHEET

    _proposed(cqr)
    assert main(["review", "export", str(cqr), "--judges", "ana"]) == 0
    path = cqr / "review" / "round-1" / "ana.xlsx"
    fill(path, "themes", 1, decision="reject")
    wb = openpyxl.load_workbook(path)
    del wb[SUB_SHEET]
    wb.save(path)
    assert main(["review", "import", str(cqr), str(path)]) == 2
    assert "the sheet 'subcategories' is missing" in capsys.readouterr().err
    ws = wb["instructions"]
    for row in list(ws.iter_rows()):
        if str(row[0].value or "").startswith(SUB_INSTRUCTIONS):
            row[0].value = None
    wb.save(path)
    assert main(["review", "import", str(cqr), str(path)]) == 0
    with ReviewStore(load_run(cqr)) as store:
        assert store.positions()["theme:1"]["ana"].decision == "reject"


def _sub_li(page: str, sub: int) -> str:
    """The list entry of proposed subcategory ``sub`` on its category's page (the only
    one proposed: up to the category's own positions)."""
    return page.split(f'id="sub-{sub}"')[1].split('aria-labelledby="positions-h"')[0]


def test_an_auditor_s_comment_on_a_proposed_subcategory_is_shown_and_answered_in_the_browser(
        cqr):
    """A comment on `subcategory:ID` (from `review audit --subcategory` or the auditor's
    form) is on its category's page with each judge's answer form: unanswered, it
    keeps the round open, so the judges must be able to answer it there. The judges'
    comments on their keep/drop positions are shown too, and the form takes one."""
    sub, _ = _proposed(cqr)
    item = f"subcategory:{sub}"
    assert main(["review", "audit", str(cqr), "--subcategory", str(sub), "--by", "dee",
                 "--comment", "Crying is <b>care</b> here, not a part of it"]) == 0
    ana = Web(cqr, "ana")
    page = ana.get("/theme/3")
    li = _sub_li(page, sub)
    assert "Crying is &lt;b&gt;care&lt;/b&gt; here, not a part of it" in li
    cid = re.search(r'name="comment_id" value="(\d+)"', li).group(1)
    assert 'name="comment"' in re.search(r'<form method="post" action="/decide".*?</form>',
                                         li, re.S).group(0)
    r = ana.post("/answer", _page=page, comment_id=cid, answer="argue",
                 text="it is a part", back=f"/theme/3#sub-{sub}")
    assert r.status_code == 303 and r.headers["location"] == f"/theme/3#sub-{sub}"
    r = ana.post("/decide", _page=page, item=item, decision="drop", comment="one case only",
                 v_item="0", v_mine="0", back=f"/theme/3#sub-{sub}", **{"as": "position"})
    assert r.status_code == 303
    li = _sub_li(ana.get("/theme/3"), sub)
    assert "argue" in li and "it is a part" in li and "one case only" in li
    # the auditor's own form is there too, and a comment sent from it is shown there
    dee = Web(cqr, "dee")
    page = dee.get("/theme/3")
    li = _sub_li(page, sub)
    assert f'name="item" value="{item}"' in li and 'action="/comment"' in li
    r = dee.post("/comment", _page=page, item=item, comment="Second thought",
                 back=f"/theme/3#sub-{sub}")
    assert r.status_code == 303
    assert "Second thought" in _sub_li(dee.get("/theme/3"), sub)
    # the category's own comment section has none of them
    own = page.split('aria-labelledby="comments-h"')[1]
    assert "Crying is" not in own


def test_a_kept_subcategory_is_shown_and_decided_under_the_category_it_is_in_now(cqr):
    """Kept, with its category merged into another: the domain page lists it under that
    category, linked to its entry on that category's page (a proposed subcategory has
    no page of its own), and that page offers its keep/drop form."""
    sub, ids = _proposed(cqr)
    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision(f"subcategory:{sub}", "keep", new_name="Tears with a client"),
                       Decision("theme:3", "merge", target="2")], by="ana")
    run = load_run(cqr)
    dom = int(run.themes.loc[run.themes["theme_id"] == 2, "domain_id"].iat[0])
    web = Web(cqr, "ana")
    page = web.get(f"/domain/{dom}")
    li = re.search(r'<li data-category="(\d+)" class="subcategory">(.*?)</li>', page, re.S)
    assert li is not None and "Tears with a client" in li.group(2)
    assert f'href="/theme/2#sub-{sub}"' in li.group(2) and "split off" not in li.group(2)
    assert "subcategory of 2:" in li.group(2)
    # listed after its category
    assert page.index('data-category="2"') < page.index(f'data-category="{li.group(1)}"')
    here = web.get("/theme/2")
    entry = _sub_li(here, sub)
    assert 'value="keep"' in entry and "in the codebook as it stands" in entry
    assert 'href="/theme/3">theme 3</a>' in entry
    # its segments are among the category's
    assert all(f'id="q-{s}"' in here for s in ids)


def test_the_judges_see_a_proposed_subcategory_s_label_counted_cases_and_flags(cqr):
    """Keep or drop is weighed on what the CQR table gives a subcategory: its frequency
    label, the cases it counts (fewer than those it has where only reassigned outliers
    are there), its flags and the label if reassigned outliers counted; the workbook's
    sheet and the category's page give them, not only "2 segments, 2 cases"."""
    sub, ids = _proposed(cqr)
    cats = pd.read_parquet(cqr / "categories.parquet")
    at = cats.index[cats["category_id"] == sub][0]
    cases = list(cats.at[at, "cases"])
    assert len(cases) == 2
    cats.at[at, "counted_cases"] = cases[:1]
    cats.at[at, "frequency_label"] = "rare"
    cats.at[at, "label_if_reassigned_counted"] = "variant"
    cats.at[at, "flags"] = ["single story", "thin"]
    cats.to_parquet(cqr / "categories.parquet", index=False)
    assert main(["review", "export", str(cqr), "--judges", "ana"]) == 0
    ws = openpyxl.load_workbook(cqr / "review" / "round-1" / "ana.xlsx")["subcategories"]
    header = [c.value for c in ws[1]]
    row = dict(zip(header, next(r for r in ws.iter_rows(min_row=2, values_only=True)
                                if r[0] == sub)))
    assert row["frequency"] == "rare (1 counted of 2 cases)"
    assert row["flags"] == "single story; thin"
    assert row["label if reassigned counted"] == "variant"
    entry = _sub_li(Web(cqr, "ana").get("/theme/3"), sub)
    assert ">rare</span>" in entry and "(1 counted)" in entry
    assert "variant if reassigned outliers counted" in entry
    assert "single story</span>" in entry and "thin</span>" in entry


def test_each_left_out_subcategory_says_its_own_reason_and_its_agreed_name(cqr, capsys):
    """Kept (renamed) under a category the judges then rejected, one is left out for
    that reason, by the name they gave it; one nobody reviewed, for its own: neither is
    "not reviewed, or dropped" with "their segments are coded with their category",
    which is false of the first."""
    import xml.etree.ElementTree as ET

    sub, _ = _proposed(cqr, 3)
    other, _ = _proposed(cqr, 4)
    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision(f"subcategory:{sub}", "keep", new_name="Tears with a client"),
                       Decision("theme:3", "reject")], by="ana")
        _settle(store)
    assert main(["review", "apply", str(cqr)]) == 0
    capsys.readouterr()
    assert main(["export", "qdpx", str(cqr)]) == 0
    out = capsys.readouterr().out
    assert "left out: 2 proposed subcategories" in out
    assert "not reviewed, or dropped" not in out
    lines = [ln.strip() for ln in out.splitlines() if ln.strip().startswith('- "')]
    rejected = next(ln for ln in lines if "Tears with a client" in ln)
    assert "its category was rejected: its segments are in no category" in rejected
    assert any("not reviewed" in ln and "coded with its category" in ln for ln in lines
               if "Tears with a client" not in ln)
    (project,) = (cqr / "export").glob("*-agreed.qdpx")
    with zipfile.ZipFile(project) as z:
        root = ET.fromstring(z.read("project.qde"))
    (note,) = [n for n in root.iter(f"{QDA}Note")
               if n.get("name") == "Proposed subcategories left out: 2"]
    text = note.find(f"{QDA}PlainTextContent").text
    assert "their segments are coded with their category" not in text
    assert "- Tears with a client (under" in text and "its category was rejected" in text
    assert "Tears in session (under" in text   # the one nobody reviewed, as proposed


def test_status_lists_the_proposed_subcategories_nobody_kept_or_dropped(cqr, capsys):
    """Keeping a proposed subcategory is optional, so one nobody touched holds no round
    open; but status lists it (its id is what `resolve --subcategory` takes) and says,
    where the round is settled and the team decides to export, that it will be left
    out; apply says so too."""
    sub, _ = _proposed(cqr)
    with ReviewStore(load_run(cqr)) as store:
        _settle(store)
    capsys.readouterr()
    assert main(["review", "status", str(cqr)]) == 0
    out = capsys.readouterr().out.split("Codebook as it stands")[0]
    assert "Proposed subcategories nobody kept or dropped" in out
    assert re.search(rf'proposed subcategory {sub} "Tears in session" of theme 3 .*: not '
                     "reviewed: left out unless kept", out)
    assert "Every item of round 1 has a consensus decision" in out
    assert "1 proposed subcategory nobody kept or dropped (listed above) will be left out " \
           "of the codebook and of every export, an agreed one too" in out
    assert main(["review", "apply", str(cqr)]) == 0
    assert "left out: 1 proposed subcategories" in capsys.readouterr().out
    # decided, it is listed with the decided ones, not as left out
    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision(f"subcategory:{sub}", "drop")], by="ana")
    assert main(["review", "status", str(cqr)]) == 0
    out = capsys.readouterr().out
    assert "nobody kept or dropped" not in out and "will be left out" not in out


def test_a_subcategory_of_a_merged_theme_is_named_with_the_category_it_is_under_now(cqr,
                                                                                     capsys):
    sub, _ = _proposed(cqr)
    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision("theme:3", "merge", target="2"),
                       Decision(f"subcategory:{sub}", "keep")], by="ana")
        label = next(i.label for i in review_status(store).items
                     if i.item == f"subcategory:{sub}")
    name2 = load_run(cqr).theme_name(2)
    assert label.startswith(f'proposed subcategory {sub} "Tears in session" of theme 3 ')
    assert label.endswith(f', now under theme 2 "{name2}"')
    with ReviewStore(load_run(cqr)) as store:
        while store.undo_target() is not None:
            store.undo_consensus("ana")
        store.resolve([Decision("theme:3", "reject"), Decision(f"subcategory:{sub}", "keep")],
                      by="ana")
        label = next(i.label for i in review_status(store).items
                     if i.item == f"subcategory:{sub}")
    assert label.endswith(", its category rejected")


def test_an_audit_comment_on_an_unknown_subcategory_names_the_ones_proposed(cqr, capsys):
    """`review audit --subcategory` with an id the run did not propose says which it did,
    as `resolve` does, rather than only "unknown item"."""
    sub, _ = _proposed(cqr)
    capsys.readouterr()
    assert main(["review", "audit", str(cqr), "--subcategory", "999", "--by", "dee",
                 "--comment", "Too thin"]) == 2
    err = capsys.readouterr().err
    assert f"unknown proposed subcategory id '999' (this run proposed subcategories {sub})" \
        in err and "Traceback" not in err
    assert main(["review", "resolve", str(cqr), "--subcategory", "999", "--decision", "keep",
                 "--by", "ana"]) == 2
    assert f"(this run proposed subcategories {sub})" in capsys.readouterr().err


def test_assignments_say_the_category_a_subcategory_s_segment_is_under(cqr):
    sub, ids = _proposed(cqr)
    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision(f"subcategory:{sub}", "keep"),
                       Decision("theme:3", "rename", new_name="Crying as care")], by="ana")
        _settle(store)
    assert main(["review", "apply", str(cqr)]) == 0
    book = yaml.safe_load((cqr / "review" / "codebook.yaml").read_text(encoding="utf-8"))
    kept = _category(book, proposed_subcategory=sub)["id"]
    rows = pd.read_csv(cqr / "review" / "assignments.csv", keep_default_na=False)
    assert list(rows.columns) == ["segment_id", "case_id", "category_id", "category",
                                  "parent_category_id", "parent_category", "domain_id",
                                  "domain"]
    mine = rows[rows["category_id"] == kept]
    assert set(mine["segment_id"]) == set(ids)
    assert set(mine["parent_category_id"]) == {3} and set(mine["parent_category"]) == {
        "Crying as care"}
    top = rows[rows["category_id"] == 3]
    assert len(top) and set(top["parent_category_id"]) == {-1} and set(top["parent_category"]) == {""}


def test_the_export_page_says_which_proposed_subcategories_will_be_left_out(cqr):
    sub, _ = _proposed(cqr)
    with ReviewStore(load_run(cqr)) as store:
        _settle(store)
    web = Web(cqr, "ana")
    page = web.get("/export")
    note = re.search(r'<p class="warn" id="left-out-subs">(.*?)</p>', page, re.S).group(1)
    assert "1 proposed subcategory nobody kept or dropped will be left out" in note
    assert f'href="/subcategory/{sub}"' in note and "Tears in session" in note
    with ReviewStore(load_run(cqr)) as store:
        store.resolve([Decision(f"subcategory:{sub}", "drop")], by="ana")
    assert 'id="left-out-subs"' not in web.get("/export")


def test_a_proposed_subcategory_named_like_a_formula_is_text_in_the_workbook(cqr):
    """Its name is a phrase of the transcripts: on the subcategories sheet and in the
    themes sheet's list it is a string cell, never a formula."""
    from tests.review_helpers import propose_subcategory

    sub, _ = propose_subcategory(cqr, 3, name="=HYPERLINK(1)")
    assert main(["review", "export", str(cqr), "--judges", "ana,ben", "-q"]) == 0
    wb = openpyxl.load_workbook(cqr / "review" / "round-1" / "ana.xlsx")
    ws = wb["subcategories"]
    header = [c.value for c in ws[1]]
    row = next(r for r in ws.iter_rows(min_row=2) if r[0].value == sub)
    cell = row[header.index("name")]
    assert cell.value == "=HYPERLINK(1)" and cell.data_type == "s"
    themes = wb["themes"]
    head = [c.value for c in themes[1]]
    parent = next(r for r in themes.iter_rows(min_row=2) if r[0].value == 3)
    listed = parent[head.index("proposed subcategories")]
    assert listed.value.startswith("=HYPERLINK(1)") and listed.data_type == "s"


def test_a_core_idea_cut_at_apply_balances_a_quotation_it_cuts_into():
    """A proposed core idea cut to the sentences still in its domain (segments moved
    to another) is rebuilt at apply from those sentences: one taken from inside a
    quotation kept the closing mark and not the opening one ('And I'm sorry for how I
    said it."'), as the stage's core ideas did before they were balanced."""
    from types import SimpleNamespace

    from pipeline.review.apply import _spans_in

    texts = {"C1:1:0": 'She said, "I was hurt. And I\'m sorry for how I said it." We sat.',
             "C1:2:0": "Then we talked it through."}
    quoted = texts["C1:1:0"].index("And I'm")
    end = texts["C1:1:0"].index(" We sat")
    row = SimpleNamespace(spans=[f"C1:1:0:{quoted}-{end}", "C1:2:0:0-26"],
                          segment_ids=["C1:1:0", "C1:2:0"])
    text, ids = _spans_in(row, texts, lambda sid: sid == "C1:1:0")
    assert text == '"And I\'m sorry for how I said it."'
    assert ids == ["C1:1:0"]


def test_a_final_category_of_the_cases_that_answered_no_keeps_its_flag(cqr):
    """The codebook counts each final category again from its segments; the run found
    the cases that answered a domain's question "No" in the turns, which the recount
    cannot read again: a category made of the proposal's such category keeps its flag,
    one that holds other segments too does not."""
    from pipeline.review.evidence import recount

    run = load_run(cqr)
    seg = run.segments[run.segments["theme"] >= 0]
    tid = int(seg["theme"].iat[0])
    run.themes["flags"] = [["answered no"] if int(t) == tid else [] for t in run.themes["theme_id"]]
    run.proposed_themes = run.themes
    mine = seg[seg["theme"] == tid]
    assert "answered no" in recount(run, mine, set())["flags"]
    assert "answered no" in recount(run, mine.head(2), set())["flags"]
    other = seg[seg["theme"] != tid].head(1)
    assert "answered no" not in recount(run, pd.concat([mine, other]), set())["flags"]
