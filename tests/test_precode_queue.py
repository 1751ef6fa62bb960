"""Pre-coding: "none" is an answer, the CQR table has no empty rows, and the queue is a review.

The codebook comes from the small invented study (tests/study.py): its judges reject
the theme of one topic, so a segment on that topic fits no category of the codebook.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import yaml

from pipeline.cli import main
from pipeline.precode import (
    BY_PEOPLE,
    CHOICE_ACTION,
    GONE,
    NONE,
    QUEUE_HEAD,
    UNKNOWN,
    ChoiceReader,
    batch_folders,
    codebook_categories,
    latest_choices,
    stored_choices,
)
from pipeline.review.model import Decision, load_run
from pipeline.review.store import ReviewStore, db_path
from tests.review_helpers import sort_apart_from_ids
from tests.study import TOPICS, write_study

TOPIC_OF = {s: t for t, ss in TOPICS.items() for s in ss}
REJECTED = "client"


def _topic(text: str) -> str | None:
    found = {t for s, t in TOPIC_OF.items() if s in text}
    return found.pop() if len(found) == 1 else None


@pytest.fixture(scope="module")
def rejecting_codebook(study_run, tmp_path_factory):
    """A codebook whose judges rejected the theme of the 'client' topic."""
    run = Path(shutil.copytree(study_run(), tmp_path_factory.mktemp("precode-none") / "run"))
    items = load_run(run)
    seg = items.segments
    topic = seg["text"].map(_topic)
    share = (seg.assign(topic=topic)[seg["theme"] >= 0].groupby("theme")["topic"]
             .agg(lambda t: (t == REJECTED).mean()))
    rejected = {int(t) for t, v in share.items() if v > 0.5}
    assert rejected, "the study run should have a theme of the client topic"
    with ReviewStore(items, create=True) as store:
        store.set_panel(["ana", "ben"])
        store.resolve([Decision(i, "reject" if i in {f"theme:{t}" for t in rejected} else "accept")
                       for i in items.items()], by="ana")
    assert main(["review", "apply", str(run)]) == 0
    return run / "review" / "codebook.yaml"


@pytest.fixture(scope="module")
def batch(rejecting_codebook, tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    new = write_study(root / "new", n_cases=3)
    out = root / "pre"
    assert main(["precode", str(rejecting_codebook), "--transcripts", str(new), "--threshold",
                 "0.5", "--out", str(out), "-q"]) == 0
    return out


def test_a_rejected_categorys_segments_are_never_forced_into_a_category(batch):
    m = json.loads((batch / "manifest.json").read_text())
    assert m["none_class"]["trained"] and m["none_class"]["n_segments"] >= 5
    seg = pd.read_parquet(batch / "segments.parquet")
    about = seg["text"].map(_topic)
    off = seg[about == REJECTED]
    assert len(off) >= 6
    # each goes to "none" or to a person: not one is coded with a category
    assert set(off["status"]) <= {"none", "needs_human"}
    assert (off["category_id"] == NONE).all()
    assert (off["status"] == "none").mean() >= 0.5
    # the kept topics are still coded
    kept = seg[about.isin(["training", "supervision"])]
    assert (kept["status"] == "coded").mean() >= 0.8


def test_the_cqr_table_has_no_empty_rows(batch):
    table = pd.read_csv(batch / "cqr_table.csv", keep_default_na=False)
    assert len(table) >= 1
    assert (table["n_cases"] >= 1).all() and (table["quote"].str.strip() != "").all()
    md = (batch / "cqr_table.md").read_text()
    assert '""' not in md and " 0/" not in md and "| none |" not in md


def test_the_cqr_tables_quotes_are_cited_by_segment(batch):
    """The pre-coding's table cited a quote by its case alone ("(case01)"), where the
    run's table cites the segment ("(T01:5:2)"), so the quote could not be found."""
    table = pd.read_csv(batch / "cqr_table.csv", keep_default_na=False)
    seg = pd.read_parquet(batch / "segments.parquet").set_index("segment_id")
    md = (batch / "cqr_table.md").read_text()
    for r in table.itertuples():
        assert seg.at[r.quote_segment_id, "text"] == r.quote
        assert f'({r.quote_segment_id}) |' in md and f'({r.quote_case}) |' not in md


def test_the_cqr_table_says_its_labels_wait_for_the_queue(queued, batch):
    """The table's labels counted the coded segments alone ("variant, 2/7" where the
    queue held most of the category) and said so nowhere."""
    _, out = queued
    seg = pd.read_parquet(out / "segments.parquet")
    md = (out / "cqr_table.md").read_text()
    n = int(seg["needs_human"].sum())
    assert n and f"the {n} segment(s) in the queue are not counted" in md
    # the table is not written again by the import: the next pre-coding counts them
    assert "the next `consensa precode` of these transcripts counts the people's codes" in md
    # a batch with nothing queued has nothing to wait for
    assert not pd.read_parquet(batch / "segments.parquet")["needs_human"].any()
    assert "in the queue" not in (batch / "cqr_table.md").read_text()




def test_queue_workbook_shows_three_suggestions_with_confidences(batch):
    seg = pd.read_parquet(batch / "segments.parquet")
    ws = openpyxl.load_workbook(batch / "queue.xlsx")["queue"]
    rows = list(ws.iter_rows(values_only=True))
    assert list(rows[0]) == QUEUE_HEAD
    assert len(rows) - 1 == int(seg["needs_human"].sum())
    for r in rows[1:]:
        confs = [r[6], r[9], r[12]]
        assert confs == sorted(confs, reverse=True) and 0 < sum(confs) <= 1.0001


def _fill(queue: Path, out: Path, picks: dict[int, object]) -> Path:
    wb = openpyxl.load_workbook(queue)
    ws = wb["queue"]
    col = QUEUE_HEAD.index("code as category") + 1
    for row, value in picks.items():
        ws.cell(row=row, column=col).value = value     # None empties the cell
    wb.save(out)
    return out


@pytest.fixture
def queued(rejecting_codebook, tmp_path):
    """A batch where every segment is queued (threshold 1), on a fresh copy of the run."""
    root = tmp_path / "study"
    shutil.copytree(rejecting_codebook.parent.parent, root / "run")
    codebook = root / "run" / "review" / "codebook.yaml"
    cb = codebook.read_text()
    codebook.write_text(cb.replace(str(rejecting_codebook.parent.parent.resolve()),
                                   str((root / "run").resolve())))
    new = write_study(tmp_path / "new", n_cases=2)
    out = tmp_path / "pre"
    assert main(["precode", str(codebook), "--transcripts", str(new), "--threshold", "1",
                 "--out", str(out), "-q"]) == 0
    return codebook, out


def test_queue_import_stores_every_choice_durably(queued, tmp_path, capsys):
    codebook, out = queued
    run = codebook.parent.parent
    cats = [int(c["id"]) for d in __import__("yaml").safe_load(codebook.read_text())["domains"]
            for c in d["categories"]]
    ws = openpyxl.load_workbook(out / "queue.xlsx")["queue"]
    n = ws.max_row - 1
    assert n >= 6
    picks = {r: (cats[r % len(cats)] if r % 3 else "none") for r in range(2, 2 + n, 2)}
    filled = _fill(out / "queue.xlsx", tmp_path / "ana.xlsx", picks)
    assert main(["precode", "import", str(filled), "--by", "ana"]) == 0
    assert f"stored {len(picks)} choice(s) by ana" in capsys.readouterr().out

    ids = {r: ws.cell(row=r, column=1).value for r in picks}
    got = stored_choices(run)
    assert len(got) == len(picks)
    want = {ids[r]: (NONE if v == "none" else int(v)) for r, v in picks.items()}
    assert dict(zip(got["segment_id"], got["label"], strict=True)) == want
    seg = pd.read_parquet(out / "segments.parquet").set_index("segment_id")
    assert all(seg.at[s, "text"] == t for s, t in zip(got["segment_id"], got["text"], strict=True))

    # the store is the review's own, append-only: the rows cannot be changed afterwards
    con = sqlite3.connect(db_path(run))
    assert con.execute("SELECT COUNT(*) FROM audit_log WHERE action=? AND who='ana'",
                       (CHOICE_ACTION,)).fetchone()[0] == len(picks)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM audit_log WHERE action=?", (CHOICE_ACTION,))
    con.close()

    # a second person's choices are kept beside the first one's; a re-import replaces none
    assert main(["precode", "import", str(_fill(out / "queue.xlsx", tmp_path / "ben.xlsx",
                                                {2: "none"})), "--by", "ben"]) == 0
    assert main(["precode", "import", str(filled), "--by", "ana"]) == 0
    assert len(latest_choices(run)) == len(picks) + 1
    # ana and ben split on row 2's segment: training leaves it out, and counts it
    got = stored_choices(run)
    assert len(got) == len(picks) - 1 and got.attrs["n_disagreed"] == 1


def test_a_bad_queue_row_imports_nothing_and_names_the_row(queued, tmp_path, capsys):
    codebook, out = queued
    filled = _fill(out / "queue.xlsx", tmp_path / "bad.xlsx", {2: "none", 3: 9999})
    assert main(["precode", "import", str(filled), "--by", "ana"]) == 2
    err = capsys.readouterr().err
    assert "row 3" in err and "9999" in err and "code as category" in err
    assert stored_choices(codebook.parent.parent).empty


def test_a_queue_row_may_name_its_category_and_the_dropdown_shows_names(queued, tmp_path,
                                                                       capsys):
    """The dropdown offered bare ids, and a category's exact name typed in was refused
    ("is not a category id or 'none'"), with a hint about the segment id column. The
    dropdown offers "id – name"; an id, that form, or a name (case and spacing aside)
    is read; an unknown name or id says to choose from the categories sheet."""
    codebook, out = queued
    cb = __import__("yaml").safe_load(codebook.read_text())
    cats = codebook_categories(cb)
    first, second = sorted(cats)[:2]
    name = cats[second][0]
    wb = openpyxl.load_workbook(out / "queue.xlsx")
    offered = [r[3] for r in wb["categories"].iter_rows(min_row=2, values_only=True)]
    assert f"{first} – {cats[first][0]}" in offered and offered[-1] == "none"
    assert "$D$2" in wb["queue"].data_validations.dataValidation[0].formula1
    filled = _fill(out / "queue.xlsx", tmp_path / "names.xlsx",
                   {2: f"  {name.upper()} ", 3: f"{first} – {cats[first][0]}"})
    assert main(["precode", "import", str(filled), "--by", "ana"]) == 0
    assert sorted(stored_choices(codebook.parent.parent)["label"]) == sorted([second, first])
    bad = _fill(out / "queue.xlsx", tmp_path / "typo.xlsx", {2: name + "x", 3: 9999})
    assert main(["precode", "import", str(bad), "--by", "ben"]) == 2
    err = capsys.readouterr().err
    assert f"{name + 'x'!r} is not the id nor the name" in err and "9999" in err
    assert "'categories' sheet" in err and "segment id column" not in err


def test_an_id_with_another_categorys_name_is_refused(queued, tmp_path, capsys):
    """"6 – Took a breath", where 6 is "Teared up" (a dropdown value edited, a cell
    pasted from another row): the id was stored and the name thrown away, so the
    person's choice could silently become another category. Which one they meant
    cannot be told: the row is named and nothing is imported. "none of these", the
    label the queue page and summary use, is read as "none"."""
    codebook, out = queued
    cats = codebook_categories(__import__("yaml").safe_load(codebook.read_text()))
    first, second = sorted(cats)[:2]
    filled = _fill(out / "queue.xlsx", tmp_path / "mixed.xlsx",
                   {2: f"{first} – {cats[second][0]}", 3: "None of these"})
    assert main(["precode", "import", str(filled), "--by", "ana"]) == 2
    err = capsys.readouterr().err
    assert f"row 2, column 'code as category': category {first} is {cats[first][0]!r}, " \
           f"not {cats[second][0]!r} (that is category {second})" in err
    assert "row 3" not in err and stored_choices(codebook.parent.parent).empty
    right = _fill(filled, tmp_path / "right.xlsx", {2: f"{first}: {cats[first][0].upper()}"})
    assert main(["precode", "import", str(right), "--by", "ana"]) == 0
    assert sorted(stored_choices(codebook.parent.parent)["label"]) == sorted([first, NONE])


def test_an_emptied_row_says_its_choice_stays(queued, tmp_path, capsys):
    """A code cleared in the workbook and imported again printed "nothing to store"
    while the choice stayed stored, and --retrain learned from it. The rows whose
    earlier choice stands are named, with how to change one."""
    codebook, out = queued
    first = sorted(codebook_categories(__import__("yaml").safe_load(codebook.read_text())))[0]
    filled = _fill(out / "queue.xlsx", tmp_path / "q.xlsx", {2: first, 3: first})
    assert main(["precode", "import", str(filled), "--by", "ana"]) == 0
    capsys.readouterr()
    cleared = _fill(filled, tmp_path / "cleared.xlsx", {2: None})
    assert main(["precode", "import", str(cleared), "--by", "ana"]) == 0
    err = capsys.readouterr().err
    assert "still stored: 1 row(s) with no code now (row 2) keep the choice ana stored" in err
    assert len(stored_choices(codebook.parent.parent)) == 2
    assert main(["precode", "import", str(cleared), "--by", "ben"]) == 0   # none by ben
    assert "still stored" not in capsys.readouterr().err
    assert main(["precode", "import", str(cleared)]) == 2
    assert "say who made these choices: --by NAME" in capsys.readouterr().err


def test_a_queue_imported_again_or_left_empty_says_so(queued, tmp_path, capsys):
    """The same filled-in queue imported twice printed "stored 16 choice(s)" twice and
    stored them twice; an unfilled one printed "stored 0 choice(s) ... the next
    --retrain learns from them"."""
    codebook, out = queued
    first = sorted(codebook_categories(__import__("yaml").safe_load(codebook.read_text())))[0]
    filled = _fill(out / "queue.xlsx", tmp_path / "q.xlsx", {2: first, 3: "none"})
    assert main(["precode", "import", str(filled), "--by", "ana"]) == 0
    assert "stored 2 choice(s)" in capsys.readouterr().out
    assert main(["precode", "import", str(filled), "--by", "ana"]) == 0
    printed = capsys.readouterr().out
    assert "stored 0 choice(s) by ana from" in printed and "(2 as already stored" in printed
    assert len(stored_choices(codebook.parent.parent)) == 2
    # one row changed: only it is stored
    again = _fill(filled, tmp_path / "q2.xlsx", {3: first})
    assert main(["precode", "import", str(again), "--by", "ana"]) == 0
    printed = capsys.readouterr().out
    assert "stored 1 choice(s) by ana from" in printed
    assert "(1 as already stored, not stored again)" in printed
    assert main(["precode", "import", str(out / "queue.xlsx"), "--by", "ana"]) == 0
    captured = capsys.readouterr()
    assert "nothing to store" in captured.err and "--retrain" not in captured.out


@pytest.mark.parametrize("edit", ["note", "rename", "delete"])
def test_the_categories_sheet_as_people_edit_it_does_not_decide_what_a_category_is(
        queued, tmp_path, edit):
    codebook, out = queued
    cat = next(int(c["id"]) for d in __import__("yaml").safe_load(codebook.read_text())["domains"]
               for c in d["categories"])
    filled = _fill(out / "queue.xlsx", tmp_path / "ana.xlsx", {2: cat})
    wb = openpyxl.load_workbook(filled)
    sheet = wb["categories"]
    if edit == "note":
        sheet.append([f"note: {cat} is the one we mean"])
    elif edit == "rename":
        sheet.title = "Categories (do not edit)"
    else:
        wb.remove(sheet)
    wb.save(filled)
    assert main(["precode", "import", str(filled), "--by", "ana"]) == 0
    assert list(stored_choices(codebook.parent.parent)["label"]) == [cat]


def test_the_queue_import_takes_the_segment_from_the_batch_not_the_workbook(queued, tmp_path,
                                                                          capsys):
    codebook, out = queued
    run = codebook.parent.parent
    cats = sorted({int(c["id"]) for d in __import__("yaml").safe_load(codebook.read_text())[
        "domains"] for c in d["categories"]})
    head = {h: QUEUE_HEAD.index(h) + 1 for h in QUEUE_HEAD}

    def edited(name: str, edits: dict[tuple[int, str], object]) -> Path:
        wb = openpyxl.load_workbook(out / "queue.xlsx")
        for (row, column), value in edits.items():
            wb["queue"].cell(row=row, column=head[column], value=value)
        wb.save(tmp_path / name)
        return tmp_path / name

    # a segment id that is not in the batch, or a code that is not a whole id: nothing stored
    bad = edited("bad.xlsx", {(2, "segment id"): "ZZZ:99:0", (2, "code as category"): "none",
                              (3, "code as category"): f"{cats[0]}.5"})
    assert main(["precode", "import", str(bad), "--by", "ana"]) == 2
    err = capsys.readouterr().err
    assert "row 3" in err and "not a whole category id" in err
    bad = edited("bad2.xlsx", {(2, "segment id"): "ZZZ:99:0", (2, "code as category"): "none"})
    assert main(["precode", "import", str(bad), "--by", "ana"]) == 2
    assert "'ZZZ:99:0' is not a queued segment" in capsys.readouterr().err
    # row 3's id typed over with row 2's: one segment coded twice, another not at all
    twice = edited("twice.xlsx", {(3, "segment id"): ws_id(out, 2),
                                  (2, "code as category"): cats[0],
                                  (3, "code as category"): cats[-1]})
    assert main(["precode", "import", str(twice), "--by", "ana"]) == 2
    err = capsys.readouterr().err
    assert f"row 3: segment '{ws_id(out, 2)}' is also on row 2" in err and "nothing" in err
    assert stored_choices(run).empty
    # a comment on a row with no code, and no row coded: nothing stored, and the comment
    # that was not kept is named
    alone = edited("alone.xlsx", {(3, "comment"): "ask the panel about this one"})
    assert main(["precode", "import", str(alone), "--by", "ana"]) == 0
    err = capsys.readouterr().err
    assert "nothing to store" in err and "the comment of 1 row(s) with no code (row 3)" in err
    assert stored_choices(run).empty
    # the other cells are the classifier's and the segment's: edits to them are not read
    seg = pd.read_parquet(out / "segments.parquet").set_index("segment_id")
    ws = openpyxl.load_workbook(out / "queue.xlsx")["queue"]
    sid = ws.cell(row=2, column=1).value
    good = edited("good.xlsx", {(2, "text"): "a text the judge typed over",
                                (2, "1st category id"): "two", (2, "1st confidence"): "high",
                                (2, "code as category"): cats[0], (3, "comment"): "later"})
    assert main(["precode", "import", str(good), "--by", "ana"]) == 0
    captured = capsys.readouterr()
    assert "stored 1 choice(s)" in captured.out
    assert "the comment of 1 row(s) with no code (row 3)" in captured.err
    got = stored_choices(run)
    assert list(got["segment_id"]) == [sid] and list(got["text"]) == [seg.at[sid, "text"]]


def ws_id(out: Path, row: int) -> str:
    """The segment id on ``row`` of the queue sheet a pre-coding wrote."""
    return openpyxl.load_workbook(out / "queue.xlsx")["queue"].cell(row=row, column=1).value


def _applied_again(codebook: Path, change) -> dict:
    """The codebook as a later ``review apply`` writes it: ``change(cb)`` edits it in
    place; returns it. Its bytes differ, so its sha256 is another."""
    import yaml

    cb = yaml.safe_load(codebook.read_text())
    change(cb)
    cb.setdefault("review", {})["applied_at"] = "2999-01-01T00:00:00+00:00"
    codebook.write_text(yaml.safe_dump(cb, allow_unicode=True, sort_keys=False))
    return cb


def _category(cb: dict, cid: int) -> dict:
    return next(c for d in cb["domains"] for c in d["categories"] if int(c["id"]) == cid)


def test_a_choice_of_a_category_merged_since_counts_for_the_one_it_joined(queued, tmp_path):
    codebook, out = queued
    run = codebook.parent.parent
    cats = codebook_categories(__import__("yaml").safe_load(codebook.read_text()))
    first, second = sorted(cats)[:2]
    assert main(["precode", "import", str(_fill(out / "queue.xlsx", tmp_path / "q.xlsx",
                                                {2: first, 3: second})), "--by", "ana"]) == 0

    def merge(cb):        # ``first`` merged into ``second``, and renamed
        _category(cb, second)["from_themes"] += _category(cb, first)["from_themes"]
        _category(cb, second)["name"] = "Both, renamed"
        for d in cb["domains"]:
            d["categories"] = [c for c in d["categories"] if int(c["id"]) != first]
    later = _applied_again(codebook, merge)
    got = stored_choices(run, ChoiceReader.of(later, codebook, run))
    assert sorted(got["label"]) == [second, second] and got.attrs["n_not_in_codebook"] == 0
    assert got.attrs["n_followed"] == 1

    def reject(cb):        # and then ``second`` rejected: neither choice names a category
        for d in cb["domains"]:
            d["categories"] = [c for c in d["categories"] if int(c["id"]) != second]
    gone = _applied_again(codebook, reject)
    got = stored_choices(run, ChoiceReader.of(gone, codebook, run))
    assert got.empty and got.attrs["n_not_in_codebook"] == 2 and got.attrs["unread"] == {GONE: 2}


def _swap_ids(a: int, b: int):
    """A later apply that gave category ``a``'s id to ``b`` and ``b``'s to ``a`` (a
    category created before them renumbers those after it): names and themes stay."""
    def change(cb):
        ca, cb_ = _category(cb, a), _category(cb, b)
        ca["id"], cb_["id"] = b, a
    return change


def test_a_choice_is_read_by_its_category_not_its_id_once_the_codebook_changed(
        queued, tmp_path, capsys):
    codebook, out = queued
    run = codebook.parent.parent
    cats = codebook_categories(__import__("yaml").safe_load(codebook.read_text()))
    first, second = sorted(cats)[:2]
    ids = [ws_id(out, r) for r in (2, 3)]
    assert main(["precode", "import", str(_fill(out / "queue.xlsx", tmp_path / "q.xlsx",
                                                {2: first, 3: second})), "--by", "ana"]) == 0
    stored = {v["segment_id"]: v for v in latest_choices(run).values()}
    assert stored[ids[0]]["category"] == cats[first][0] and stored[ids[0]]["codebook_sha256"]

    _applied_again(codebook, _swap_ids(first, second))
    again = tmp_path / "again"
    assert main(["precode", str(codebook), "--transcripts", str(tmp_path / "new"),
                 "--threshold", "0", "--retrain", "--out", str(again), "-q"]) == 0
    seg = pd.read_parquet(again / "segments.parquet").set_index("segment_id")
    # each keeps the category ana chose, under its new id; none takes the one now at its id
    for sid, cid in ((ids[0], first), (ids[1], second)):
        assert (seg.at[sid, "status"], seg.at[sid, "category"]) == (BY_PEOPLE, cats[cid][0])
    assert seg.at[ids[0], "category_id"] == second and seg.at[ids[1], "category_id"] == first
    m = json.loads((again / "manifest.json").read_text())
    assert m["retrain"]["n_followed"] == 2 and m["retrain"]["n_unread"] == 0
    assert m["n_choices_unread"] == 0 and m["n_coded_by_people"] == 2

    # a category rejected since: its segment goes back to a person, saying why, counted
    from pipeline.precode import apply_people_choices

    def reject(cb):
        for d in cb["domains"]:
            d["categories"] = [c for c in d["categories"] if c["name"] != cats[second][0]]
    gone = _applied_again(codebook, reject)
    seg = apply_people_choices(pd.read_parquet(again / "segments.parquet"), run,
                               codebook_categories(gone), ChoiceReader.of(gone, codebook, run))
    assert seg.attrs["n_unread"] == 1
    row = seg.set_index("segment_id").loc[ids[1]]
    assert (row["status"], bool(row["needs_human"]), row["category_id"]) == \
        ("needs_human", True, NONE)
    said = json.loads(row["people_choices"])[0]
    assert said["unread"] == GONE and cats[second][0] in said["category"]
    assert seg.set_index("segment_id").at[ids[0], "status"] == BY_PEOPLE


def test_a_choice_stored_without_its_codebook_is_read_against_its_batchs(queued, tmp_path):
    """A choice stored before choices carried their codebook: its batch's manifest says
    which codebook it was made against; kept beside the batch, that codebook says which
    category its id was; not kept, only an id of one of the run's own themes does."""
    codebook, out = queued
    run = codebook.parent.parent
    cats = codebook_categories(__import__("yaml").safe_load(codebook.read_text()))
    first, second = sorted(cats)[:2]
    batch = json.loads((out / "manifest.json").read_text())["batch"]
    seg = pd.read_parquet(out / "segments.parquet").set_index("segment_id")
    with ReviewStore(load_run(run)) as store, store.transaction() as con:
        for n, (sid, cid) in enumerate(((ws_id(out, 2), first), (ws_id(out, 3), second),
                                        (ws_id(out, 4), 900))):
            value = {"segment_id": sid, "case_id": str(seg.at[sid, "case_id"]),
                     "text": str(seg.at[sid, "text"]), "category_id": cid,
                     "suggested_category_id": -1, "confidence": 0.5, "comment": "",
                     "source": f"queue.xlsx, row {n + 2}", "batch": batch}
            con.execute("INSERT INTO audit_log (at, who, action, round, item, value) "
                        "VALUES (?, 'ana', ?, NULL, ?, ?)",
                        (f"2020-01-01T00:00:0{n}", CHOICE_ACTION, f"precode:{batch}/{sid}",
                         json.dumps(value)))
    themes = set(pd.read_parquet(run / "themes.parquet")["theme_id"])
    assert {first, second} <= themes and 900 not in themes

    def renumber(cb):
        _swap_ids(first, second)(cb)
        cb["domains"][0]["categories"].append({"id": first + 900, "name": "Made later",
                                               "from_themes": [first + 900]})
    later = _applied_again(codebook, renumber)
    found = batch_folders([batch], [tmp_path])
    assert found == [out]
    got = stored_choices(run, ChoiceReader.of(later, codebook, run, found))
    # the batch kept its codebook: both read by what they were; 900 was none of its ids
    assert got.set_index("segment_id")["label"].to_dict() == {ws_id(out, 2): second,
                                                              ws_id(out, 3): first}
    assert got.attrs["unread"] == {UNKNOWN: 1}
    # without the kept copy, a theme's id still says which category it was
    (out / "codebook.yaml").unlink()
    got = stored_choices(run, ChoiceReader.of(later, codebook, run, found))
    assert sorted(got["label"]) == sorted([first, second]) and got.attrs["n_unread"] == 1
    # no batch folder found, and the codebook applied after the batch: its id is no
    # longer read as it is, but a theme's id still says which category it was
    got = stored_choices(run, ChoiceReader.of(later, codebook, run))
    assert got.attrs["n_followed"] == 2


def test_a_code_naming_a_category_merged_since_says_which_it_joined(queued, tmp_path,
                                                                     capsys):
    """A queue written before a merge offers the merged category ("Drove home thinking").
    A batch that keeps its own codebook reads the code there; one pre-coded before
    batches kept it reads the review's codebook, which lacks that category: its name
    or id was refused as "not the id nor the name of a category", which says nothing
    of where it went. The refusal names the category it was merged into."""
    codebook, out = queued
    (out / "codebook.yaml").unlink()           # a batch from before the copy was kept
    cb = yaml.safe_load(codebook.read_text())
    cats = codebook_categories(cb)
    first, second = sorted(cats)[:2]
    old_name = cats[first][0]
    # the codebook of a later round: ``first`` merged into ``second``
    for d in cb["domains"]:
        for c in list(d["categories"]):
            if int(c["id"]) == first:
                d["categories"].remove(c)
            elif int(c["id"]) == second:
                c["from_themes"] = [second, first]
    codebook.write_text(yaml.safe_dump(cb, sort_keys=False))
    filled = _fill(out / "queue.xlsx", tmp_path / "merged.xlsx", {2: old_name, 3: first})
    assert main(["precode", "import", str(filled), "--by", "ana"]) == 2
    err = capsys.readouterr().err
    joined = f"was merged into category {second} {cats[second][0]!r}"
    assert f"row 2, column 'code as category': {old_name!r} is not" in err and joined in err
    assert f"row 3, column 'code as category': {first} is not" in err
    assert err.count(joined) == 2, err
    assert stored_choices(codebook.parent.parent).empty


def test_a_formula_typed_into_the_queue_imports_nothing_and_names_the_cell(queued, tmp_path,
                                                                          capsys):
    codebook, out = queued
    filled = _fill(out / "queue.xlsx", tmp_path / "f.xlsx", {2: "none", 3: "=_lists!A1"})
    assert openpyxl.load_workbook(filled)["queue"].cell(
        row=3, column=QUEUE_HEAD.index("code as category") + 1).data_type == "f"
    assert main(["precode", "import", str(filled), "--by", "ana"]) == 2
    err = capsys.readouterr().err
    assert "sheet 'queue', row 3, column 'code as category': the cell holds a formula" in err
    assert stored_choices(codebook.parent.parent).empty


def test_a_queue_sorted_apart_from_its_segment_ids_imports_nothing(queued, tmp_path, capsys):
    """Sorted on the text with the segment id column left behind (Excel's "continue
    with the current selection"), every code stood beside the text it was chosen for
    but was stored for the segment of the row's id: "stored 7 choice(s)", for the wrong
    segments. The row's text tells: the sheet is refused, its rows named."""
    codebook, out = queued
    first = sorted(codebook_categories(__import__("yaml").safe_load(codebook.read_text())))[0]
    ws = openpyxl.load_workbook(out / "queue.xlsx")["queue"]
    filled = _fill(out / "queue.xlsx", tmp_path / "sorted.xlsx",
                   {r: first for r in range(2, ws.max_row + 1)})
    sort_apart_from_ids(filled, "queue", "text")
    assert main(["precode", "import", str(filled), "--by", "ana"]) == 2
    err = capsys.readouterr().err
    assert "sheet 'queue': " in err and "do not show the segment their 'segment id' names" in err
    assert "select all of its columns" in err and "nothing was imported" in err, err
    assert stored_choices(codebook.parent.parent).empty


def test_a_queue_import_names_every_problem_at_once(queued, tmp_path, capsys):
    """A formula in one row and a name that is no category's in another: the first
    import named the formula only, the name came up on the next attempt."""
    codebook, out = queued
    filled = _fill(out / "queue.xlsx", tmp_path / "two.xlsx",
                   {2: "none", 3: "=_lists!A1", 4: "Teared upp", 5: 9999})
    assert main(["precode", "import", str(filled), "--by", "ana"]) == 2
    err = capsys.readouterr().err
    assert "sheet 'queue', row 3, column 'code as category': the cell holds a formula" in err
    assert "row 4, column 'code as category': 'Teared upp' is not the id nor the name" in err
    assert "row 5, column 'code as category': 9999 is not a category" in err, err
    assert stored_choices(codebook.parent.parent).empty


def test_only_a_judge_of_the_panel_can_import_queue_choices(queued, tmp_path, capsys):
    from pipeline.review.model import load_run
    from pipeline.review.store import ReviewStore

    codebook, out = queued
    run = codebook.parent.parent
    with ReviewStore(load_run(run)) as store:
        judges, auditors = store.judges(), store.auditors()
        if not auditors:
            store.set_panel(judges, ["dee"])
            auditors = ["dee"]
    filled = _fill(out / "queue.xlsx", tmp_path / "q.xlsx", {2: "none"})
    capsys.readouterr()
    for who, says in (("zed", "not on the review's panel"), (auditors[0], "an auditor")):
        assert main(["precode", "import", str(filled), "--by", who]) == 2
        err = capsys.readouterr().err
        assert says in err and ", ".join(judges) in err and "nothing was stored" in err
    assert stored_choices(run).empty
    assert main(["precode", "import", str(filled), "--by", judges[0]]) == 0
    assert len(stored_choices(run)) == 1


def test_retrain_learns_from_the_stored_choices(queued, tmp_path):
    codebook, out = queued
    ws = openpyxl.load_workbook(out / "queue.xlsx")["queue"]
    picks = {r: "none" for r in range(2, ws.max_row + 1)
             if _topic(str(ws.cell(row=r, column=4).value)) == "training"}
    assert len(picks) >= 4
    assert main(["precode", "import", str(_fill(out / "queue.xlsx", tmp_path / "q.xlsx", picks)),
                 "--by", "ana"]) == 0
    new = write_study(tmp_path / "next", n_cases=2)
    plain, again = tmp_path / "plain", tmp_path / "again"
    assert main(["precode", str(codebook), "--transcripts", str(new), "--threshold", "0",
                 "--out", str(plain), "-q"]) == 0
    assert main(["precode", str(codebook), "--transcripts", str(new), "--threshold", "0",
                 "--retrain", "--out", str(again), "-q"]) == 0
    m0 = json.loads((plain / "manifest.json").read_text())
    m1 = json.loads((again / "manifest.json").read_text())
    assert m1["retrain"] == {"enabled": True, "n_choices": len(picks), "n_disagreed": 0,
                            "n_not_in_codebook": 0, "n_followed": 0, "n_unread": 0}
    assert m1["n_training_segments"] == m0["n_training_segments"] + len(picks)
    # the people said segments of the training topic are "none of these" here: the next
    # batch gives "none" more weight on that topic, and its category less confidence
    s0, s1 = (pd.read_parquet(p / "segments.parquet") for p in (plain, again))

    def p_none(s):
        t = s[s["text"].map(_topic) == "training"]
        return sum(((t[f"top{k}_category_id"] == NONE) * t[f"top{k}_confidence"]).mean()
                   for k in (1, 2, 3))

    t0, t1 = (s[s["text"].map(_topic) == "training"] for s in (s0, s1))
    assert p_none(s1) > p_none(s0) + 0.05
    assert t1["confidence"].mean() < t0["confidence"].mean()


def test_a_large_queue_is_split_into_workbooks_each_importable(rejecting_codebook, tmp_path,
                                                               monkeypatch, capsys):
    """Excel opens at most 1,048,576 rows, and one workbook is built in memory: a large
    queue goes into numbered workbooks, least confident first throughout."""
    import pipeline.precode as precode_mod

    monkeypatch.setattr(precode_mod, "QUEUE_ROWS_PER_WORKBOOK", 4)
    root = tmp_path / "study"
    shutil.copytree(rejecting_codebook.parent.parent, root / "run")
    codebook = root / "run" / "review" / "codebook.yaml"
    codebook.write_text(codebook.read_text().replace(
        str(rejecting_codebook.parent.parent.resolve()), str((root / "run").resolve())))
    out = tmp_path / "pre"
    assert main(["precode", str(codebook), "--transcripts", str(write_study(tmp_path / "new", n_cases=2)),
                 "--threshold", "1", "--out", str(out), "-q"]) == 0
    assert "queue-*.xlsx" in capsys.readouterr().out
    seg = pd.read_parquet(out / "segments.parquet")
    queued = seg[seg["needs_human"]]
    files = json.loads((out / "manifest.json").read_text())["queue_workbooks"]
    assert not (out / "queue.xlsx").exists() and len(files) == -(-len(queued) // 4) >= 2
    ids, confs = [], []
    for name in files:
        rows = list(openpyxl.load_workbook(out / name)["queue"].iter_rows(min_row=2, values_only=True))
        assert 1 <= len(rows) <= 4
        ids += [r[0] for r in rows]
        confs += [float(seg.set_index("segment_id").at[r[0], "confidence"]) for r in rows]
    assert sorted(ids) == sorted(queued["segment_id"]) and len(set(ids)) == len(ids)
    assert confs == sorted(confs)                       # least confident first, across the files
    cats = [int(c["id"]) for d in __import__("yaml").safe_load(codebook.read_text())["domains"]
            for c in d["categories"]]
    last = _fill(out / files[-1], tmp_path / "last.xlsx", {2: cats[0]})
    assert main(["precode", "import", str(last), "--by", "ana"]) == 0
    assert len(stored_choices(root / "run")) == 1


def test_a_precoding_opens_in_qda_software_with_the_peoples_choices(queued, tmp_path, capsys):
    """`consensa export qdpx PRECODE_OUT`: the pre-coded transcripts as a REFI-QDA project
    that validates against the schema, each segment at its exact offsets, coded by
    Consensa, or by each person who coded it from the queue, or still under the queue's
    code with the classifier's suggestions."""
    from pipeline.exchange.refi import QUEUE_CODE, read_project
    from tests.refi_schema import schema_errors

    codebook, out = queued
    cats = {int(c["id"]): c["name"] for d in __import__("yaml").safe_load(
        codebook.read_text())["domains"] for c in d["categories"]}
    first = sorted(cats)[0]
    ws = openpyxl.load_workbook(out / "queue.xlsx")["queue"]
    picked = {ws.cell(row=2, column=1).value: first, ws.cell(row=3, column=1).value: NONE}
    assert main(["precode", "import", str(_fill(out / "queue.xlsx", tmp_path / "ana.xlsx",
                                                {2: first, 3: "none"})), "--by", "ana"]) == 0
    capsys.readouterr()
    # the tables and the codebook are not what a pre-coding exports: it says which is
    for kind in ("csv", "qdc"):
        assert main(["export", kind, str(out)]) == 2
        err = capsys.readouterr().err
        assert "a pre-coding folder" in err and "`consensa export qdpx`" in err
        assert "Traceback" not in err
    assert main(["export", "qdpx", str(out)]) == 0
    said = capsys.readouterr().out
    path = out / "export" / "precoded.qdpx"
    seg = pd.read_parquet(out / "segments.parquet")
    n = len(seg)
    assert f"2 text sources, 0 segments coded with the agreed codebook (user 'Consensa'), " \
           f"2 of the queue coded by people since and {n - 2} still under" in said
    assert schema_errors(path) == []
    project = read_project(path)
    rows = project.codings
    assert sorted(set(rows["coder"])) == ["Consensa", "ana"]
    by_ana = rows[rows["coder"] == "ana"]
    assert by_ana["code"].str.endswith(f"> {cats[first]}").all() and len(by_ana) == 1
    queue = rows[rows["code"] == QUEUE_CODE]
    assert len(queue) == n - 2                      # 'none of these' takes the queue code away
    # every coding is a segment, at its exact place in the text the pre-coding read
    placed = {(c, s, e): t for c, s, e, t in zip(seg["case_id"], seg["start_char"],
                                                 seg["end_char"], seg["text"], strict=True)}
    for r in rows.itertuples():
        assert project.texts[r.case][r.start:r.end] == placed[(r.case, r.start, r.end)]
    assert set(picked) <= set(seg["segment_id"])


def test_a_persons_comment_and_time_travel_with_their_coding_to_the_qdpx(queued, tmp_path,
                                                                          capsys):
    """A comment written in the queue ("agree, but borderline") is often the reason for
    the choice; the project dropped it, so the team saw it on the queue page only. It
    now goes with the person's coding (in the selection's description and as a note by
    them the selection refers to, "none of these" included), and their coding is dated
    when they chose, not when the machine pre-coded."""
    from xml.etree import ElementTree as ET

    from tests.refi_schema import schema_errors

    codebook, out = queued
    first = sorted(codebook_categories(__import__("yaml").safe_load(codebook.read_text())))[0]
    filled = _fill(out / "queue.xlsx", tmp_path / "ana.xlsx", {2: first, 3: "none"})
    wb = openpyxl.load_workbook(filled)
    ws = wb["queue"]
    col = QUEUE_HEAD.index("comment") + 1
    ws.cell(row=2, column=col).value = "agree, but <b>borderline</b> & late"
    ws.cell(row=3, column=col).value = "small talk, cat"
    ids = [ws.cell(row=r, column=1).value for r in (2, 3)]
    wb.save(filled)
    assert main(["precode", "import", str(filled), "--by", "ana"]) == 0
    assert main(["export", "qdpx", str(out)]) == 0
    capsys.readouterr()
    path = out / "export" / "precoded.qdpx"
    assert schema_errors(path) == []
    with __import__("zipfile").ZipFile(path) as zf:
        root = ET.fromstring(zf.read("project.qde"))
    ns = {"q": "urn:QDA-XML:project:1.0"}
    users = {u.get("name"): u.get("guid") for u in root.iterfind(".//q:User", ns)}
    notes = {n.get("guid"): n for n in root.iterfind("q:Notes/q:Note", ns)}
    with sqlite3.connect(db_path(codebook.parent.parent)) as con:
        at = con.execute("SELECT max(at) FROM audit_log WHERE action=?",
                         (CHOICE_ACTION,)).fetchone()[0].replace("+00:00", "Z")
    sels = {s.get("name"): s for s in root.iterfind(".//q:PlainTextSelection", ns)}
    for sid, said in zip(ids, ["agree, but <b>borderline</b> & late", "small talk, cat"],
                         strict=True):
        sel = sels[sid]
        assert f'(comment: "{said}")' in sel.find("q:Description", ns).text
        (ref,) = sel.findall("q:NoteRef", ns)
        note = notes[ref.get("targetGUID")]
        assert note.find("q:PlainTextContent", ns).text == said      # as text, not markup
        assert note.get("creatingUser") == users["ana"] and note.get("creationDateTime") == at
    (coding,) = [c for c in sels[ids[0]].iterfind("q:Coding", ns)
                 if c.get("creatingUser") == users["ana"]]
    assert coding.get("creationDateTime") == at
    assert sels[ids[0]].get("creationDateTime") != at               # the pre-coding's time
    assert not sels[ids[1]].findall("q:Coding", ns)                  # none of these


def test_a_precoding_whose_transcripts_changed_is_not_exported(queued, tmp_path, capsys):
    """Codings at offsets into a text that is no longer the one coded would land in the
    wrong place in a QDA program: the export stops and names the case."""
    _, out = queued
    first = sorted((tmp_path / "new").glob("*.txt"))[0]
    first.write_text("Interviewer: Something else entirely?\nP1: Yes, all new.\n",
                     encoding="utf-8")
    capsys.readouterr()
    assert main(["export", "qdpx", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"changed since the pre-coding read them: {first.name} (case {first.stem})" in err
    assert not (out / "export" / "precoded.qdpx").exists()
    # a pre-coding made before the files' sha256 were recorded: the segments' texts tell
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    del manifest["transcript_sha256"]
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert main(["export", "qdpx", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"could not be read again exactly as the pre-coding read them ({first.stem})" in err
    assert not (out / "export" / "precoded.qdpx").exists()


def test_a_transcript_changed_after_its_coded_turns_stops_the_export(queued, tmp_path,
                                                                      capsys):
    """A turn added after the coded ones leaves every segment where it was, so the check
    of the segments' texts passed, and the added turn reached the QDA program never
    coded nor queued. The pre-coding records each file's sha256, and a file whose bytes
    changed, or one it never read, stops the export, naming the case and the file."""
    _, out = queued
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    files = sorted((tmp_path / "new").glob("*.txt"))
    assert set(manifest["transcript_sha256"]) == {str(f) for f in files}
    first = files[0]
    first.write_text(first.read_text(encoding="utf-8") + "\nTherapist: added later.\n",
                     encoding="utf-8")
    capsys.readouterr()
    assert main(["export", "qdpx", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"1 transcript file(s) changed since the pre-coding read them: {first.name} " \
           f"(case {first.stem})" in err
    assert "pre-code the folder again with a new --out" in err and "Traceback" not in err
    assert not (out / "export" / "precoded.qdpx").exists()
    # a transcript put into the folder since is named too
    first.write_bytes(first.read_bytes().replace(b"\nTherapist: added later.\n", b""))
    shutil.copy(files[1], tmp_path / "new" / "case99.txt")
    assert main(["export", "qdpx", str(out)]) == 2
    assert "were not there when it pre-coded: case99.txt (case case99)" in \
        capsys.readouterr().err
    (tmp_path / "new" / "case99.txt").unlink()
    assert main(["export", "qdpx", str(out)]) == 0


def test_a_precoded_subtitle_transcript_opens_with_its_speakers_named(rejecting_codebook,
                                                                       tmp_path, capsys):
    """A .vtt's text, as Consensa reads it, is its cues' words; who spoke is in the voice
    tags. The pre-coding's project now writes each speaker's name before their turn, as
    the run's own export does (a QDA program showed an interview without speakers),
    and every coding still covers exactly its segment's words."""
    from pipeline.exchange.refi import read_project

    root = tmp_path / "study"
    shutil.copytree(rejecting_codebook.parent.parent, root / "run")
    codebook = root / "run" / "review" / "codebook.yaml"
    codebook.write_text(codebook.read_text().replace(
        str(rejecting_codebook.parent.parent.resolve()), str((root / "run").resolve())))
    new = write_study(tmp_path / "new", n_cases=2)
    spoken = [p.split(": ", 1) for p in (new / "case02.txt").read_text().split("\n\n") if p.strip()]
    (new / "case02.txt").unlink()
    (new / "case02.vtt").write_text("WEBVTT\n\n" + "".join(
        f"00:{i // 60:02d}:{i % 60:02d}.000 --> 00:{i // 60:02d}:{i % 60:02d}.900\n"
        f"<v {who}>{words.strip()}</v>\n\n" for i, (who, words) in enumerate(spoken)),
        encoding="utf-8")
    out = tmp_path / "pre"
    assert main(["precode", str(codebook), "--transcripts", str(new), "--threshold", "1",
                 "--out", str(out), "-q"]) == 0
    capsys.readouterr()
    assert main(["export", "qdpx", str(out)]) == 0
    project = read_project(out / "export" / "precoded.qdpx")
    vtt = project.texts["case02"]
    assert vtt.startswith(f"Interviewer: {spoken[0][1].strip()}\nTherapist: ")
    assert vtt.count("Interviewer: ") == sum(who == "Interviewer" for who, _ in spoken)
    assert project.texts["case01"] == (new / "case01.txt").read_text()     # labelled already
    seg = pd.read_parquet(out / "segments.parquet")
    words = dict(zip(zip(seg["case_id"], seg["text"]), seg["segment_id"]))
    rows = project.codings
    assert set(rows["case"]) == {"case01", "case02"}
    for r in rows.itertuples():
        assert (r.case, project.texts[r.case][r.start:r.end]) in words
    assert len(rows) == len(seg)


def test_transcripts_that_cannot_be_read_are_named_by_the_option_that_gave_them(
        rejecting_codebook, tmp_path, capsys):
    """A pre-coding without --config was told to "check ingest.paths in the config", a
    key it never wrote: the folder came from --transcripts."""
    empty = tmp_path / "empty"
    empty.mkdir()
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    (unlabelled / "a.txt").write_text("We talked about the tears for a long while.\n",
                                      encoding="utf-8")
    for folder in (empty, unlabelled):
        assert main(["precode", str(rejecting_codebook), "--transcripts", str(folder),
                     "--out", str(tmp_path / f"out-{folder.name}")]) == 2
        err = capsys.readouterr().err
        assert "'--transcripts'" in err and "ingest.paths" not in err, err
        assert "Traceback" not in err
    assert "in a config given with --config" in err


def test_a_pre_coding_without_a_none_class_says_so(rejecting_codebook, tmp_path, capsys,
                                                    monkeypatch):
    """A codebook whose run has too few segments outside its categories trains no "none
    of these" class; only the manifest said so, and the summary read "none of these: 0"
    as if the answer had been possible."""
    import pipeline.precode as precode_module

    monkeypatch.setattr(precode_module, "NONE_MIN_SEGMENTS", 10 ** 6)
    new = write_study(tmp_path / "new", n_cases=2)
    assert main(["precode", str(rejecting_codebook), "--transcripts", str(new), "--threshold",
                 "1", "--out", str(tmp_path / "pre")]) == 0
    out = capsys.readouterr().out
    assert "note: no 'none of these' class" in out and "below the threshold" in out
    # and with a queue, the labels of the CQR table wait for it
    assert "frequency labels count the coded segments only" in out
    m = json.loads((tmp_path / "pre" / "manifest.json").read_text())
    assert not m["none_class"]["trained"]
    # with the class, no such note
    monkeypatch.setattr(precode_module, "NONE_MIN_SEGMENTS", 5)
    assert main(["precode", str(rejecting_codebook), "--transcripts", str(new),
                 "--threshold", "0", "--out", str(tmp_path / "pre2")]) == 0
    out = capsys.readouterr().out
    assert "none of these' class" not in out and "coded segments only" not in out


def test_segments_people_coded_keep_their_code_in_the_next_pre_coding(queued, tmp_path,
                                                                       capsys):
    """Pre-coding the same transcripts again after the queue was coded queued a segment
    three judges had coded once more, with the classifier's suggestions, and coded the
    others by the classifier (which had just learned them) with nothing saying a person
    chose the code. A segment of the same id and the same text keeps the code most of
    the people chose, says who, and is not queued again, with --retrain or without; one
    they split evenly on is queued again and says who chose what; one whose text
    changed since is a new segment to code. The CQR table and the .qdpx count it as
    coded, once, by the people who chose its code."""
    from xml.etree import ElementTree as ET

    from pipeline.precode import BY_PEOPLE, EARLIER_HEAD
    from pipeline.review.model import load_run
    from pipeline.review.store import ReviewStore

    codebook, out = queued
    run = codebook.parent.parent
    with ReviewStore(load_run(run)) as store:
        # a judge joins a round that has no consensus yet: the one after the agreed round
        store.next_round("team", closed=True)
        store.set_panel(["ana", "ben", "caro"])
    cats = codebook_categories(__import__("yaml").safe_load(codebook.read_text()))
    x, y = sorted(cats)[:2]
    ids = {r: ws_id(out, r) for r in (2, 3, 4, 5)}
    for who, picks in (("ana", {2: x, 3: x, 4: x, 5: "none"}), ("ben", {2: y, 4: y}),
                       ("caro", {2: y})):
        assert main(["precode", "import", str(_fill(out / "queue.xlsx", tmp_path / f"{who}.xlsx",
                                                    picks)), "--by", who]) == 0
    new = tmp_path / "new"
    for flags, name in (([], "plain"), (["--retrain"], "again")):
        again = tmp_path / name
        capsys.readouterr()
        assert main(["precode", str(codebook), "--transcripts", str(new), "--threshold", "0",
                     "--out", str(again), "-q", *flags]) == 0
        printed = capsys.readouterr().out
        assert "coded by people: 3" in printed and "queued again: 1" in printed
        seg = pd.read_parquet(again / "segments.parquet").set_index("segment_id")
        majority, alone, split, none = (seg.loc[ids[r]] for r in (2, 3, 4, 5))
        assert (majority["status"], majority["category_id"], majority["coded_by"]) == \
            (BY_PEOPLE, y, "ben, caro")
        assert [(c["who"], c["category_id"]) for c in json.loads(majority["people_choices"])] \
            == [("ana", x), ("ben", y), ("caro", y)]
        assert (alone["status"], alone["category_id"], alone["coded_by"]) == (BY_PEOPLE, x, "ana")
        assert (none["status"], none["category_id"]) == (BY_PEOPLE, NONE)
        assert not seg.loc[[ids[r] for r in (2, 3, 5)], "needs_human"].any()
        # threshold 0 codes every other segment: the split one alone is queued, and says so
        assert split["needs_human"] and split["status"] == "needs_human"
        assert list(seg.index[seg["needs_human"]]) == [ids[4]]
        rows = list(openpyxl.load_workbook(again / "queue.xlsx")["queue"].iter_rows(
            values_only=True))
        assert list(rows[0]) == [*QUEUE_HEAD, EARLIER_HEAD] and rows[1][0] == ids[4]
        assert rows[1][-1] == f"ana: {cats[x][0]}; ben: {cats[y][0]}"
        m = json.loads((again / "manifest.json").read_text())
        assert (m["n_coded_by_people"], m["n_split_by_people"], m["n_needs_human"]) == (3, 1, 1)
        assert m["n_coded"] == len(seg) - 4 - m["n_none"]
        assert "2 by people in an earlier queue" in (again / "cqr_table.md").read_text()
        table = pd.read_csv(again / "cqr_table.csv", keep_default_na=False)
        assert cats[y][0] in set(table["category"])

    # the .qdpx: the majority's code by each person who chose it, no machine coding nor queue
    assert main(["export", "qdpx", str(tmp_path / "plain")]) == 0
    assert "3 coded by people in an earlier queue" in capsys.readouterr().out
    with __import__("zipfile").ZipFile(tmp_path / "plain" / "export" / "precoded.qdpx") as zf:
        root = ET.fromstring(zf.read("project.qde"))
    ns = {"q": "urn:QDA-XML:project:1.0"}
    users = {u.get("guid"): u.get("name") for u in root.iterfind(".//q:User", ns)}
    codes = {c.get("guid"): c.get("name") for c in root.iterfind(".//q:Code", ns)}
    sels = {s.get("name"): s for s in root.iterfind(".//q:PlainTextSelection", ns)}

    def codings(sid):
        return sorted((users[c.get("creatingUser")], codes[c.find("q:CodeRef", ns).get(
            "targetGUID")]) for c in sels[sid].iterfind("q:Coding", ns))

    assert codings(ids[2]) == [("ben", cats[y][0]), ("caro", cats[y][0])]
    assert "ana: " in sels[ids[2]].find("q:Description", ns).text
    assert codings(ids[3]) == [("ana", cats[x][0])] and codings(ids[5]) == []

    # a transcript edited since: its segment is not the one people coded
    text = str(seg.loc[ids[3], "text"])
    path = new / f"{seg.loc[ids[3], 'case_id']}.txt"
    path.write_text(path.read_text(encoding="utf-8").replace(text, text.replace(" ", " really ", 1)),
                    encoding="utf-8")
    assert main(["precode", str(codebook), "--transcripts", str(new), "--threshold", "0",
                 "--out", str(tmp_path / "edited"), "-q"]) == 0
    seg = pd.read_parquet(tmp_path / "edited" / "segments.parquet").set_index("segment_id")
    assert seg.loc[ids[3], "status"] != BY_PEOPLE and seg.loc[ids[3], "coded_by"] == ""
    assert seg.loc[ids[2], "status"] == BY_PEOPLE


def test_a_precoding_exports_with_the_codebook_it_was_made_with(queued, tmp_path, capsys):
    """``review apply`` rewrites codebook.yaml: a pre-coding's export reads the copy it
    kept of the codebook it coded with, and without one refuses a codebook written
    since, naming both files, rather than give its codes to other categories."""
    import zipfile
    from xml.etree import ElementTree as ET

    codebook, out = queued
    cats = codebook_categories(__import__("yaml").safe_load(codebook.read_text()))
    first, second = sorted(cats)[:2]
    sid = ws_id(out, 2)
    assert main(["precode", "import", str(_fill(out / "queue.xlsx", tmp_path / "q.xlsx",
                                                {2: first})), "--by", "ana"]) == 0
    _applied_again(codebook, _swap_ids(first, second))
    assert main(["export", "qdpx", str(out)]) == 0
    ns = {"q": "urn:QDA-XML:project:1.0"}
    with zipfile.ZipFile(out / "export" / "precoded.qdpx") as zf:
        root = ET.fromstring(zf.read("project.qde"))
    codes = {c.get("guid"): c.get("name") for c in root.iterfind(".//q:Code", ns)}
    sel = next(s for s in root.iterfind(".//q:PlainTextSelection", ns) if s.get("name") == sid)
    assert [codes[c.find("q:CodeRef", ns).get("targetGUID")]
            for c in sel.iterfind("q:Coding", ns)] == [cats[first][0]]
    assert f"ana: '{cats[first][0]}'" in sel.findtext("q:Description", namespaces=ns)
    # a pre-coding that kept no copy: the codebook written since is refused, both named
    (out / "codebook.yaml").unlink()
    capsys.readouterr()
    assert main(["export", "qdpx", str(out), "--out", str(tmp_path / "x.qdpx")]) == 2
    err = capsys.readouterr().err
    assert str(codebook) in err and str(out / "manifest.json") in err
    assert "is not the codebook this pre-coding was made with" in err
    assert not (tmp_path / "x.qdpx").exists()


def test_a_queue_import_stopped_with_ctrl_c_says_what_it_stored(queued, tmp_path, capsys,
                                                                monkeypatch):
    """Ctrl+C during `precode import` printed `consensa run`'s words; it says whether the
    choices were stored, as the store holds them."""
    import pipeline.precode as precode
    from pipeline.precode import latest_choices

    codebook, out = queued
    filled = _fill(out / "queue.xlsx", tmp_path / "q.xlsx", {2: "none", 3: "none"})
    record = precode.record_choices

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(precode, "record_choices", interrupt)
    assert main(["precode", "import", str(filled), "--by", "ana"]) == 130
    err = capsys.readouterr().err
    assert "interrupted; nothing of this import was stored" in err and "run folder" not in err
    assert not latest_choices(codebook.parent.parent)

    def then_interrupt(*a, **k):
        record(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(precode, "record_choices", then_interrupt)
    assert main(["precode", "import", str(filled), "--by", "ana"]) == 130
    assert "interrupted; the import had been stored whole" in capsys.readouterr().err
    assert len(latest_choices(codebook.parent.parent)) == 2


def test_a_queue_import_never_replaces_a_later_choice_unseen(queued, tmp_path, capsys):
    """ben coded a segment in the browser, then `precode import` of ana's filled queue
    --by ben stored the file's "none" over it, saying only "stored 26 choice(s) by ben";
    the next --retrain saw no disagreement. A row that would replace a choice made after
    the workbook was written refuses the import, named; a workbook exported for another
    person is refused under --by; a replaced choice is said."""
    from pipeline.precode import latest_choices, open_batch, queue_item, record_choices
    from pipeline.review.model import load_run
    from pipeline.review.store import ReviewStore

    codebook, out = queued
    run = codebook.parent.parent
    batch = open_batch(out)
    x = sorted(batch.categories)[0]
    sid = ws_id(out, 2)
    with ReviewStore(load_run(run)) as store:        # ben, in the browser
        record_choices(store, batch.batch, [batch.choice(sid, x, "", "ben")], "ben",
                       f"web: ben, precode queue ({batch.batch})", batch.categories)
    anas = _fill(out / "queue.xlsx", tmp_path / "queue_ana.xlsx", {2: "none", 3: "none"})

    def bens() -> int:
        return latest_choices(run)[("ben", queue_item(batch.batch, sid))]["category_id"]

    capsys.readouterr()
    assert main(["precode", "import", str(anas), "--by", "ben"]) == 2
    err = capsys.readouterr().err
    assert f"queue_ana.xlsx, row 2 (segment {sid}): the workbook codes it none; ben chose " \
           f"{x} – " in err and "in the browser" in err and "after the workbook was written" in err
    assert "--workbook-wins" in err and "nothing was imported" in err
    assert bens() == x and ("ben", queue_item(batch.batch, ws_id(out, 3))) not in \
        latest_choices(run)
    assert main(["precode", "import", str(anas), "--by", "ben", "--workbook-wins"]) == 0
    said = capsys.readouterr().out
    assert "replaced: 1 choice(s) ben had stored before" in said
    assert f"(segment {sid}): {x} – " in said and "-> none" in said
    assert bens() == -1

    # a queue workbook written for ana: hers, whoever imports it
    assert main(["precode", "export", str(out), "--judges", "ana"]) == 0
    own = out / "queue-ana.xlsx"
    assert own.is_file() and "queue-ana.xlsx" in capsys.readouterr().out
    _fill(own, own, {4: "none"})
    assert main(["precode", "import", str(own), "--by", "ben"]) == 2
    assert "exported for 'ana', and --by is 'ben'" in capsys.readouterr().err
    assert main(["precode", "import", str(own), "--by", "ana"]) == 0
    # her copy edited further and imported again: its own earlier rows, not a later word
    _fill(own, own, {4: x})
    assert main(["precode", "import", str(own), "--by", "ana"]) == 0
    said = capsys.readouterr().out
    assert "stored 1 choice(s) by ana" in said and "replaced: 1 choice(s)" in said
    assert main(["precode", "export", str(out), "--judges", "Ana", "--force"]) == 2
    assert "did you mean 'ana'" in capsys.readouterr().err
