"""The judges' review, end to end: export, fill in, import, disagree, resolve, apply."""

from __future__ import annotations

import re
import sqlite3

import openpyxl
import pytest
import yaml

from pipeline.cli import main
from pipeline.review.model import Decision, ReviewError, load_run
from pipeline.review.store import ReviewStore, db_path
from tests.review_helpers import fill, segments


def test_review_round_end_to_end(review_run, capsys):
    run = review_run
    original_table = (run / "cqr_table.md").read_bytes()
    assert main(["review", "export", str(run), "--judges", "ana,ben,caro", "--auditor", "dee"]) == 0
    rdir = run / "review" / "round-1"
    for name in ("ana", "ben", "caro", "dee"):
        wb = openpyxl.load_workbook(rdir / f"{name}.xlsx")
        assert {"domains", "themes", "segments", "unassigned", "_meta"} <= set(wb.sheetnames)
        assert wb["_meta"].sheet_state == "hidden"
        assert any(dv.formula1 for dv in wb["themes"].data_validations.dataValidation)
    packet = (rdir / "packet.html").read_text()
    assert "<script" not in packet and "http" not in packet.split("</head>")[1]

    seg = segments(run)
    t0 = seg[seg["theme"] == 0]
    split_ids = t0[t0["case_id"].isin(["case01", "case02"])]["segment_id"].tolist()
    mover = t0[t0["case_id"] == "case06"]["segment_id"].iloc[0]
    for judge in ("ana", "ben", "caro"):
        for d in (0, 1):
            fill(rdir / f"{judge}.xlsx", "domains", d, decision="accept")
    ana, ben, caro = (rdir / f"{j}.xlsx" for j in ("ana", "ben", "caro"))
    fill(ana, "themes", 0, decision="split", new_name="Learning on the job",
         split_off_segments="; ".join(split_ids))
    fill(ana, "themes", 1, decision="rename", new_name="Supervision as support")
    fill(ana, "themes", 2, decision="merge", merge_into=1, comment="same support story")
    fill(ana, "segments", mover, move_to_theme=1)
    fill(ben, "themes", 0, decision="accept")
    fill(ben, "themes", 1, decision="rename", new_name="Supervision as support",
         core_idea_note="Supervisors helped therapists make sense of their tears.")
    fill(ben, "themes", 2, decision="accept")
    fill(caro, "themes", 0, decision="split", new_name="learning on the job",
         split_off_segments=", ".join(reversed(split_ids)))
    fill(caro, "themes", 1, decision="accept", new_name="supervision as  support")
    fill(caro, "themes", 2, decision="merge", merge_into="1")
    fill(rdir / "dee.xlsx", "themes", 2, comment="Check that client reactions are not support.")

    assert main(["review", "import", str(run), str(ana), str(ben), str(caro),
                 str(rdir / "dee.xlsx")]) == 0
    assert "imported" in capsys.readouterr().out

    assert main(["review", "status", str(run)]) == 0
    out = capsys.readouterr().out
    # by its agreed name, the proposed one beside it
    assert re.search(r'theme 1 "Supervision as support" \(proposed: "[^"]*"\): agreed, '
                     r'rename to "Supervision as support"', out)
    assert 'theme 0 "' in out and re.search(r'theme 0 "[^"]*": DISPUTED', out)
    assert re.search(r"ana\s+split off 4 segment\(s\)", out) or "ana   split off" in out
    assert re.search(r"ben\s+accept", out) and re.search(r"caro\s+merge into theme 1", out)
    assert re.search(r"auditor dee \(comment \d+\): Check that client reactions are not "
                     r"support\.", out)
    # moved by ana, left blank by ben and caro: open (waiting for them), not disputed
    assert f"segment {mover}: OPEN" in out
    assert re.search(r"ben\s+\(no decision yet\)", out.split(f"segment {mover}: OPEN")[1])
    assert "Fleiss' kappa" in out and "Round 1 is open: 3 item(s)" in out

    # apply refuses an open round
    assert main(["review", "apply", str(run)]) == 2
    assert "still open" in capsys.readouterr().err

    assert main(["review", "resolve", str(run), "--theme", "0", "--decision", "split",
                 "--name", "Learning on the job", "--segments", ";".join(split_ids),
                 "--by", "ana"]) == 0
    assert main(["review", "resolve", str(run), "--theme", "2", "--decision", "merge",
                 "--target", "1", "--by", "ana"]) == 0
    assert main(["review", "audit", str(run), "--by", "dee", "--theme", "0",
                 "--comment", "Split looks right."]) == 0
    assert main(["review", "resolve", str(run), "--segment", mover, "--decision", "move",
                 "--target", "1", "--by", "ben"]) == 0
    assert "every item of round 1 has its consensus" in capsys.readouterr().out
    assert main(["review", "status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "Every item of round 1 has a consensus decision" in out
    assert "resolved by ana, merge into theme 2" not in out
    assert re.search(r"auditor dee \(comment \d+\): Split looks right\.", out)

    assert main(["review", "apply", str(run)]) == 0
    cb = yaml.safe_load((run / "review" / "codebook.yaml").read_text())
    cats = {c["name"]: c for d in cb["domains"] for c in d["categories"]}
    assert set(cats) == {"Supervision as support", "Learning on the job",
                         "training / emotion / therapist"}
    sup = cats["Supervision as support"]
    assert sorted(sup["from_themes"]) == [1, 2] and sup["changed"]
    assert sup["n_segments"] == 24 + 24 + 1 and sup["frequency_label"] == "general"
    assert sup["core_idea_source"] == "judges" and sup["proposed_name"]
    assert any("merged in" in ch for ch in sup["changes"])
    new = cats["Learning on the job"]
    assert new["n_cases"] == 2 and new["frequency_label"] == "variant"
    assert new["n_segments"] == len(split_ids)
    rest = cats["training / emotion / therapist"]
    assert rest["n_cases"] == 4 and rest["frequency_label"] == "typical"
    assert any("general -> typical" in ch for ch in rest["changes"])
    assert not any(c["name"].startswith("client") for c in cats.values())
    table = (run / "review" / "cqr_table.md").read_text()
    assert "Supervision as support" in table and "| variant | 2/6 |" in table
    assert "| typical | 4/6 |" in table
    assert (run / "cqr_table.md").read_bytes() == original_table  # the run's own table untouched
    md = (run / "review" / "codebook.md").read_text()
    assert "**changed**" in md and "theme 2" in md

    with ReviewStore(load_run(run)) as store:
        log = store.audit_log()
    assert {r["action"] for r in log} >= {"panel", "position", "consensus", "audit comment"}
    assert all(r["who"] and r["at"] for r in log)


def test_a_split_every_judge_chose_is_said_once(review_run, capsys):
    """Two judges chose the same split and no one recorded it: the new category's
    "split off from theme 0" was listed twice, in codebook.md, in `review status` and
    in the .qdpx's "Agreed changes" note (given when the category was made, and again
    as to every category a split made)."""
    from pipeline.exchange.agreed import export_content

    run = review_run
    seg = segments(run)
    t0 = seg[seg["theme"] == 0]
    ids = tuple(t0[t0["case_id"].isin(["case01", "case02"])]["segment_id"])
    items = load_run(run)
    with ReviewStore(items, create=True) as store:
        store.set_panel(["ana", "ben"])
        split = Decision("theme:0", "split", new_name="Learning on the job", segments=ids)
        store.record_positions([("ana", [split]), ("ben", [split])])
        store.resolve([Decision(i, "accept") for i in items.items() if i != "theme:0"],
                      by="ana")
    once = 'split off from theme 0 "'
    assert main(["review", "status", str(run)]) == 0
    assert capsys.readouterr().out.count(once) == 1
    assert main(["review", "apply", str(run)]) == 0
    cb = yaml.safe_load((run / "review" / "codebook.yaml").read_text())
    new = next(c for d in cb["domains"] for c in d["categories"]
               if c["name"] == "Learning on the job")
    assert [ch for ch in new["changes"] if ch.startswith(once)] == [
        f'split off from theme 0 "{items.themes.set_index("theme_id").at[0, "name"]}"']
    assert (run / "review" / "codebook.md").read_text().count(once) == 1
    note = next(n for n in export_content(run).notes
                if n.title == "Agreed changes: Learning on the job")
    assert note.text.count(once) == 1


def test_a_split_category_keeps_no_keyword_of_the_part_split_off(review_run):
    """A split's category kept its proposed keywords ("rupture; repair") although the
    segments that said them went to the new category; the .qdc/.qdpx wrote them into
    its code's description. Its keywords are now those of the segments it holds, and
    the new category has its own."""
    from pipeline.exchange.refi import codebook_from_yaml

    run = review_run
    seg = segments(run)
    items = load_run(run)
    themes = items.themes.set_index("theme_id")
    t0 = seg[seg["theme"] == 0]
    # split off every segment of theme 0 that says one of its proposed keywords (the
    # first said in some of its segments, not all)
    for word in themes.at[0, "keywords"]:
        says = t0["text"].str.contains(rf"\b{re.escape(word)}\b", case=False, regex=True)
        if says.any() and not says.all():
            break
    ids = tuple(t0.loc[says, "segment_id"])
    assert ids and (~says).any()
    with ReviewStore(items, create=True) as store:
        store.set_panel(["ana", "ben"])
        split = Decision("theme:0", "split", new_name="Split part", segments=ids)
        store.record_positions([("ana", [split]), ("ben", [split])])
        store.resolve([Decision(i, "accept") for i in items.items() if i != "theme:0"],
                      by="ana")
    assert main(["review", "apply", str(run)]) == 0
    book = run / "review" / "codebook.yaml"
    cb = yaml.safe_load(book.read_text())
    cats = {c["id"]: c for d in cb["domains"] for c in d["categories"]}
    rest = cats[0]
    assert word.lower() not in [k.lower() for k in rest["keywords"]]
    assert rest["keywords"]
    new = next(c for c in cats.values() if c["name"] == "Split part")
    assert word.lower() in [k.lower() for k in new["keywords"]]
    # a category the judges left as proposed keeps the run's keywords
    untouched = next(c for c in cats.values() if c["id"] != 0 and c["name"] != "Split part")
    assert untouched["keywords"] == list(themes.at[untouched["id"], "keywords"])
    codes = list(codebook_from_yaml(book))
    while not any(c.theme_id == 0 for c in codes):     # under its domain's code
        codes = [ch for c in codes for ch in c.children]
    code = next(c for c in codes if c.theme_id == 0)
    listed = re.search(r"Keywords: ([^.]*)\.", code.description).group(1).split("; ")
    assert [k.lower() for k in listed] == [k.lower() for k in rest["keywords"]]


def test_a_review_refused_for_one_judge_leaves_no_review_behind(review_run, capsys):
    """`review export RUN --judges ana` was refused ("needs at least two judges") but
    had already created the store with ana as its panel: the proposal's exports then
    stopped ("round 1 ... have no consensus") until someone deleted review/."""
    from pipeline.review.store import db_path

    assert main(["review", "export", str(review_run), "--judges", "ana"]) == 2
    assert "at least two judges" in capsys.readouterr().err
    assert not db_path(review_run).exists()
    assert main(["export", "qdpx", str(review_run)]) == 0


def test_reimport_keeps_previous_value_in_audit_log(review_run, capsys):
    run = review_run
    assert main(["review", "export", str(run), "--judges", "ana,ben"]) == 0
    wb = run / "review" / "round-1" / "ana.xlsx"
    fill(wb, "themes", 1, decision="accept")
    assert main(["review", "import", str(run), str(wb)]) == 0
    fill(wb, "themes", 1, decision="reject")
    assert main(["review", "import", str(run), str(wb)]) == 0
    with ReviewStore(load_run(run)) as store:
        assert store.positions()["theme:1"]["ana"].decision == "reject"
        rows = [r for r in store.audit_log() if r["item"] == "theme:1"]
    assert len(rows) == 2 and rows[0]["previous"] is None
    assert '"decision": "accept"' in rows[1]["previous"]


def test_an_auditors_workbook_imported_twice_gives_each_comment_once(review_run, capsys):
    run = review_run
    assert main(["review", "export", str(run), "--judges", "ana,ben", "--auditor", "dee"]) == 0
    wb = run / "review" / "round-1" / "dee.xlsx"
    fill(wb, "themes", 1, comment="Check the quotes of case 3.")
    fill(wb, "themes", 2, comment="Too broad?")
    for _ in range(2):
        assert main(["review", "import", str(run), str(wb)]) == 0
    fill(wb, "themes", 2, comment="Too broad, and too few cases?")      # a new comment
    assert main(["review", "import", str(run), str(wb)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "imported 1 decision(s) and comment(s) from 1 workbook(s): dee.xlsx")
    # a copy of one person's workbook under another's name says whose it is
    copy = wb.with_name("ben.xlsx")
    copy.write_bytes(wb.read_bytes())
    assert main(["review", "import", str(run), str(copy)]) == 0
    assert capsys.readouterr().out.strip().endswith("workbook(s): dee's (ben.xlsx)")
    with ReviewStore(load_run(run)) as store:
        comments = store.audit_comments()
    assert comments == {"theme:1": [("dee", "Check the quotes of case 3.")],
                        "theme:2": [("dee", "Too broad?"),
                                    ("dee", "Too broad, and too few cases?")]}


def test_a_workbook_given_by_its_bare_name_is_pointed_to_where_export_wrote_it(
        review_run, capsys, tmp_path, monkeypatch):
    run = review_run
    assert main(["review", "export", str(run), "--judges", "ana,ben"]) == 0
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)  # not the workbooks' folder
    assert main(["review", "import", str(run), "ana.xlsx", "nobody.xlsx"]) == 2
    err = capsys.readouterr().err
    where = run / "review" / "round-1" / "ana.xlsx"
    assert f"ana.xlsx: no such file (the exported one is {where}: give its path)" in err
    assert "nobody.xlsx: no such file\n" in err
    # the round's folder given for its workbooks is named as a folder
    folder = run / "review" / "round-1"
    assert main(["review", "import", str(run), str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"{folder}: a folder, not a workbook" in err and "no such file" not in err


def test_audit_log_is_append_only(review_run):
    run = review_run
    assert main(["review", "export", str(run), "--judges", "ana,ben", "--auditor", "dee"]) == 0
    assert main(["review", "audit", str(run), "--by", "dee", "--theme", "1", "--comment", "ok"]) == 0
    con = sqlite3.connect(db_path(run))
    n = con.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0]
    assert n >= 4
    for sql in ("UPDATE audit_log SET who = 'mallory'", "DELETE FROM audit_log",
                "UPDATE audit_comments SET comment = 'x'", "DELETE FROM audit_comments"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute(sql)
    con.close()
    con = sqlite3.connect(db_path(run))
    assert con.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == n
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_only_auditors_comment_and_only_judges_decide(review_run, capsys):
    run = review_run
    assert main(["review", "export", str(run), "--judges", "ana,ben", "--auditor", "dee"]) == 0
    assert main(["review", "audit", str(run), "--by", "ana", "--theme", "1", "--comment", "x"]) == 2
    assert "not an auditor" in capsys.readouterr().err
    wb = run / "review" / "round-1" / "dee.xlsx"
    row = fill(wb, "themes", 1, decision="accept")
    assert main(["review", "import", str(run), str(wb)]) == 2
    err = capsys.readouterr().err
    assert f"dee.xlsx, sheet 'themes', row {row}" in err and "comments only" in err


@pytest.mark.parametrize("verb", ["resolve", "audit"])
@pytest.mark.parametrize("option, value", [
    ("--theme", "abc"), ("--domain", "1.5"), ("--core-idea-of", "case01"),
    ("--core-idea-of", "case01:x"), ("--core-idea-of", ":0"), ("--core-idea-of", "0"),
])
def test_an_item_id_of_the_wrong_form_is_refused_by_its_option(review_run, capsys, verb,
                                                                option, value):
    run = review_run
    assert main(["review", "export", str(run), "--judges", "ana,ben", "--auditor", "dee"]) == 0
    before = db_path(run).read_bytes()
    extra = (["--decision", "accept", "--by", "ana"] if verb == "resolve"
             else ["--comment", "x", "--by", "dee"])
    assert main(["review", verb, str(run), option, value, *extra]) == 2
    err = capsys.readouterr().err
    assert f"{option} {value!r}: expected {option} " in err and "Traceback" not in err
    assert db_path(run).read_bytes() == before


def test_a_missing_field_is_named_as_the_way_in_names_it(review_run, capsys):
    """`review resolve --decision rename` without --name said "rename needs a new name"
    and left the option to be guessed; the workbook names its column."""
    run = review_run
    assert main(["review", "export", str(run), "--judges", "ana,ben"]) == 0
    for decision, option in (("rename", "--name"), ("reassign", "--to-domain")):
        assert main(["review", "resolve", str(run), "--theme", "0", "--decision", decision,
                     "--by", "team"]) == 2
        assert f"{decision} needs " in (err := capsys.readouterr().err) and f"({option})" in err
    wb = run / "review" / "round-1" / "ana.xlsx"
    row = fill(wb, "themes", 0, decision="rename")
    assert main(["review", "import", str(run), str(wb)]) == 2
    assert (f"sheet 'themes', row {row}: rename needs a new name (column 'new name')"
            in capsys.readouterr().err)


def test_two_names_that_differ_only_in_case_are_refused_before_a_workbook_is_written(
        review_run, capsys):
    run = review_run
    rdir = run / "review" / "round-1"
    assert main(["review", "export", str(run), "--judges", "ana,ANA"]) == 2
    assert "'ANA' and 'ana' differ only in upper and lower case" in capsys.readouterr().err
    assert not list(rdir.glob("*.xlsx"))
    assert main(["review", "export", str(run), "--judges", "ana,ben"]) == 0
    capsys.readouterr()
    # a later export adding someone already on the panel in another spelling
    assert main(["review", "export", str(run), "--auditor", "Ben"]) == 2
    assert "'Ben' and 'ben'" in capsys.readouterr().err
    assert sorted(p.name for p in rdir.glob("*.xlsx")) == ["ana.xlsx", "ben.xlsx"]
    with ReviewStore(load_run(run)) as store:
        assert store.panel() == {"ana": "judge", "ben": "judge"}


def test_a_consensus_is_checked_against_what_the_judges_agreed_not_only_resolved(
        review_run, capsys):
    run = review_run
    assert main(["review", "export", str(run), "--judges", "ana,ben"]) == 0
    rdir = run / "review" / "round-1"
    for j in ("ana", "ben"):
        fill(rdir / f"{j}.xlsx", "themes", 2, decision="reject")
        fill(rdir / f"{j}.xlsx", "themes", 0, decision="merge", merge_into=1)
    assert main(["review", "import", str(run), str(rdir / "ana.xlsx"),
                 str(rdir / "ben.xlsx")]) == 0
    capsys.readouterr()
    seg = segments(run)
    mover = seg[seg["theme"] == 1]["segment_id"].iloc[0]
    # the judges rejected theme 2 in their workbooks; nobody resolved anything
    for args, said in (
            (["--theme", "1", "--decision", "merge", "--target", "2"],
             "theme 1 would merge into theme 2, which is rejected"),
            (["--segment", mover, "--decision", "move", "--target", "2"],
             f"segment {mover} would move into theme 2, which is rejected"),
    ):
        assert main(["review", "resolve", str(run), *args, "--by", "ana"]) == 2
        assert said in capsys.readouterr().err
    with ReviewStore(load_run(run)) as store:
        with pytest.raises(ReviewError, match="cycle"):            # 0 -> 1 agreed, 1 -> 0
            store.resolve([Decision("theme:1", "merge", target="0")], by="ana")
        before = store.consensus()
    assert before == {}


def test_a_segment_moved_into_a_theme_merged_into_a_rejected_one_is_refused():
    from pipeline.review.model import moved_into_rejected_problems

    ds = [Decision("theme:3", "reject"), Decision("theme:1", "merge", target="3"),
          Decision("segment:a:1:0", "move", target="1"), Decision("segment:a:2:0", "move",
                                                                   target="none")]
    problems = moved_into_rejected_problems(ds)
    assert len(problems) == 1
    assert "segment a:1:0 would move into theme 1 (merged into theme 3)" in problems[0]
    assert moved_into_rejected_problems(ds[1:]) == []


def test_two_different_core_idea_notes_on_a_category_are_a_dispute(review_run, capsys):
    run = review_run
    assert main(["review", "export", str(run), "--judges", "ana,ben,caro"]) == 0
    rdir = run / "review" / "round-1"
    fill(rdir / "ana.xlsx", "themes", 1, decision="accept", core_idea_note="Grief as her own")
    fill(rdir / "ben.xlsx", "themes", 1, decision="accept", core_idea_note="Family deaths")
    fill(rdir / "caro.xlsx", "themes", 1, decision="accept")
    for j in ("ana", "ben", "caro"):         # one note and two blanks: agreed, with the note
        fill(rdir / f"{j}.xlsx", "themes", 2, decision="accept",
             core_idea_note="Supervision helped" if j == "ana" else None)
    assert main(["review", "import", str(run), *(str(rdir / f"{j}.xlsx")
                                                  for j in ("ana", "ben", "caro"))]) == 0
    assert main(["review", "status", str(run)]) == 0
    out = capsys.readouterr().out
    assert re.search(r'theme 1 "[^"]*": DISPUTED', out)
    assert re.search(r'theme 2 "[^"]*": agreed, accept \(\+ core idea\)', out)


def test_two_categories_of_one_domain_named_alike_are_written_with_a_warning(review_run,
                                                                           capsys):
    run = review_run
    items = load_run(run)
    themes = items.themes
    dom = themes["domain_id"].value_counts().idxmax()
    a, b = (int(t) for t in themes[themes["domain_id"] == dom]["theme_id"][:2])
    with ReviewStore(items, create=True) as store:
        store.set_panel(["ana", "ben"])
        store.resolve([Decision(i, "accept") for i in items.items()], by="ana")
        store.resolve([Decision(f"theme:{a}", "rename", new_name="Crying")], by="ana")
    assert main(["review", "resolve", str(run), "--theme", str(b), "--decision", "rename",
                 "--name", " crying ", "--by", "ana"]) == 0
    assert main(["review", "apply", str(run)]) == 0
    err = capsys.readouterr().err
    assert f'holds categories {a} "Crying" and {b} "crying", named alike' in err
    assert f"--theme {b} --decision rename" in err
    assert (run / "review" / "codebook.yaml").is_file()


def test_reject_and_domain_merge_apply(review_run, capsys):
    run = review_run
    assert main(["review", "export", str(run), "--judges", "ana,ben"]) == 0
    rdir = run / "review" / "round-1"
    for j in ("ana", "ben"):
        fill(rdir / f"{j}.xlsx", "domains", 0, decision="accept")
        fill(rdir / f"{j}.xlsx", "domains", 1, decision="merge", merge_into=0)
        fill(rdir / f"{j}.xlsx", "themes", 0, decision="reject", comment="not a theme")
        fill(rdir / f"{j}.xlsx", "themes", 1, decision="accept")
        fill(rdir / f"{j}.xlsx", "themes", 2, decision="reassign", new_domain=1)
    assert main(["review", "import", str(run), str(rdir / "ana.xlsx"), str(rdir / "ben.xlsx")]) == 0
    assert main(["review", "status", str(run)]) == 0
    out = capsys.readouterr().out
    assert "Every item of round 1 has a consensus decision" in out
    assert "identical decisions 100%" in out
    assert main(["review", "apply", str(run)]) == 0
    cb = yaml.safe_load((run / "review" / "codebook.yaml").read_text())
    assert len(cb["domains"]) == 1 and cb["domains"][0]["changed"]
    assert [t["id"] for t in cb["rejected_themes"]] == [0]
    assert cb["unassigned_segments"] == 24


def test_a_merge_into_a_rejected_theme_is_refused(review_run, capsys):
    run = review_run
    assert main(["review", "export", str(run), "--judges", "ana,ben"]) == 0
    with ReviewStore(load_run(run)) as store:
        store.resolve([Decision("theme:0", "reject")], by="ana")
        with pytest.raises(ReviewError, match="theme 1 would merge into theme 0, which is "
                                               "rejected") as e:
            store.resolve([Decision("theme:1", "merge", target="0")], by="ana")
        assert "reject it too" in str(e.value)
        # through a chain of merges too, whichever decision comes last
        store.resolve([Decision("theme:2", "merge", target="1")], by="ana")
        with pytest.raises(ReviewError, match=r"theme 2 would merge into theme 0 \(through "
                                               r"theme 1\)"):
            store.resolve([Decision("theme:1", "merge", target="0")], by="ana")
        assert "theme:1" not in store.consensus()
    # one judge's workbook that does both is refused as a whole, naming the row
    wb = run / "review" / "round-1" / "ben.xlsx"
    fill(wb, "themes", 0, decision="reject")
    row = fill(wb, "themes", 1, decision="merge", merge_into=0)
    assert main(["review", "import", str(run), str(wb)]) == 2
    err = capsys.readouterr().err
    assert f"row {row}" in err and "which is rejected" in err
