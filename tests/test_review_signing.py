"""A review workbook's identity (run, person, role, round) is signed with the review's
private key: a workbook whose hidden _meta sheet was edited to another judge, role or
round is refused, not imported as someone else's decisions."""

from __future__ import annotations

import base64
import io
import os
import stat
import zipfile
from dataclasses import replace
from pathlib import Path

import openpyxl
import pytest

from pipeline.cli import main
from pipeline.review.model import load_run
from pipeline.review.signing import KEY_BYTES, key_path
from pipeline.review.store import ReviewStore
from tests.review_helpers import fill, set_meta, synthetic_run


@pytest.fixture()
def exported(tmp_path, capsys):
    run = synthetic_run(tmp_path / "run", 40)
    assert main(["review", "export", str(run), "--judges", "ana,ben,caro", "--auditor", "dee"]) == 0
    capsys.readouterr()
    return run, run / "review" / "round-1"


def _state(run):
    with ReviewStore(load_run(run)) as store:
        return store.positions(), store.consensus(), store.audit_comments()


def _drop_meta_row(path, key):
    wb = openpyxl.load_workbook(path)
    ws = wb["_meta"]
    for row in ws.iter_rows():
        if row[0].value == key:
            ws.delete_rows(row[0].row)
            break
    else:
        raise KeyError(key)
    wb.save(path)


def test_untouched_workbooks_import(exported, capsys):
    run, rdir = exported
    fill(rdir / "ana.xlsx", "themes", 0, decision="accept")
    fill(rdir / "ben.xlsx", "themes", 0, decision="reject")
    fill(rdir / "dee.xlsx", "themes", 1, comment="look again")
    assert main(["review", "import", str(run), *(str(rdir / f"{p}.xlsx")
                                                  for p in ("ana", "ben", "dee"))]) == 0
    assert "imported 3" in capsys.readouterr().out
    positions, _, comments = _state(run)
    assert {j: d.decision for j, d in positions["theme:0"].items()} == {"ana": "accept",
                                                                        "ben": "reject"}
    assert comments == {"theme:1": [("dee", "look again")]}


def test_workbook_edited_to_another_judge_is_refused(exported, capsys):
    run, rdir = exported
    ana = rdir / "ana.xlsx"
    fill(ana, "themes", 0, decision="merge", merge_into=1)
    set_meta(ana, "person", "ben")
    assert main(["review", "import", str(run), str(ana)]) == 2
    err = capsys.readouterr().err
    assert "ana.xlsx, sheet '_meta', field 'person': edited ('person' was 'ana'" in err, err
    assert "not imported as the decisions of 'ben'" in err
    assert "Import it under its own judge, as ana's" in err
    assert "consensa review export" in err and "--judges ben --force" in err
    assert "Traceback" not in err and "nothing was imported" in err
    assert _state(run) == ({}, {}, {})


def test_workbook_edited_to_consensus_role_is_refused(exported, capsys):
    """A judge's workbook relabelled as the consensus workbook would record one
    judge's positions as the panel's consensus."""
    run, rdir = exported
    ana = rdir / "ana.xlsx"
    fill(ana, "themes", 0, decision="reject")
    set_meta(ana, "role", "consensus")
    assert main(["review", "import", str(run), str(ana), "--consensus", "--by", "ana"]) == 2
    err = capsys.readouterr().err
    assert "ana.xlsx, sheet '_meta', field 'role': edited ('role' was 'judge'" in err, err
    assert "now 'consensus'" in err
    assert _state(run) == ({}, {}, {})


def test_auditor_workbook_edited_to_a_judge_names_both_fields(exported, capsys):
    run, rdir = exported
    dee = rdir / "dee.xlsx"
    fill(dee, "themes", 0, decision="reject")
    set_meta(dee, "person", "caro")
    set_meta(dee, "role", "judge")
    assert main(["review", "import", str(run), str(dee)]) == 2
    err = capsys.readouterr().err
    assert "dee.xlsx, sheet '_meta', fields 'person', 'role': edited" in err, err
    assert "auditor dee's workbook" in err
    assert _state(run) == ({}, {}, {})


@pytest.mark.parametrize("signature, words", [
    (None, "field 'signature': missing"),
    ("é" * 64, "do not match the workbook's signature"),
    ("0" * 64, "do not match the workbook's signature"),
])
def test_missing_or_forged_signature_is_refused(exported, capsys, signature, words):
    run, rdir = exported
    ana = rdir / "ana.xlsx"
    fill(ana, "themes", 0, decision="accept")
    if signature is None:
        _drop_meta_row(ana, "signature")
    else:
        set_meta(ana, "signature", signature)
    assert main(["review", "import", str(run), str(ana)]) == 2
    err = capsys.readouterr().err
    assert "ana.xlsx, sheet '_meta'" in err and words in err, err
    assert "Traceback" not in err
    assert _state(run) == ({}, {}, {})


def test_workbook_of_the_earlier_unsigned_format_gets_a_message(exported, capsys):
    run, rdir = exported
    ana = rdir / "ana.xlsx"
    fill(ana, "themes", 0, decision="accept")
    _drop_meta_row(ana, "signature")
    set_meta(ana, "format", "consensa-review-1")
    assert main(["review", "import", str(run), str(ana)]) == 2
    err = capsys.readouterr().err
    assert "ana.xlsx, sheet '_meta', field 'format': exported by an earlier Consensa" in err, err
    assert "Keep this file" in err and "--judges ana --force" in err
    assert _state(run) == ({}, {}, {})


def test_key_is_private_made_once_and_in_no_exported_file(exported, capsys):
    run, rdir = exported
    path = key_path(run)
    key = path.read_bytes()
    assert len(key) == KEY_BYTES
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(path.parent.glob(".workbook.key.*"))  # no temporary file left behind
    # later exports (ben's workbook again, the consensus workbook) keep the key, so
    # ana's workbook from the first export still imports
    assert main(["review", "export", str(run), "--judges", "ben", "--force"]) == 0
    assert main(["review", "export", str(run), "--consensus", "--by", "lead"]) == 0
    assert path.read_bytes() == key
    fill(rdir / "ana.xlsx", "themes", 0, decision="accept")
    assert main(["review", "import", str(run), str(rdir / "ana.xlsx")]) == 0
    forms = [key, key.hex().encode(), key.hex().upper().encode(), base64.b64encode(key)]
    checked = 0
    for f in run.rglob("*"):
        if not f.is_file() or f == path:
            continue
        data = f.read_bytes()
        if zipfile.is_zipfile(f):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                data += b"".join(z.read(n) for n in z.namelist())
        assert not any(form in data for form in forms), f
        checked += 1
    assert checked >= 7  # five workbooks, the packet, the review database


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_key_readable_by_others_is_refused(exported, capsys):
    run, rdir = exported
    key_path(run).chmod(0o644)
    assert main(["review", "import", str(run), str(rdir / "ana.xlsx")]) == 2
    err = capsys.readouterr().err
    assert "workbook.key" in err and "chmod 600" in err


def test_missing_key_is_named(exported, capsys):
    run, rdir = exported
    fill(rdir / "ana.xlsx", "themes", 0, decision="accept")
    key_path(run).unlink()
    assert main(["review", "import", str(run), str(rdir / "ana.xlsx")]) == 2
    err = capsys.readouterr().err
    assert "ana.xlsx, sheet '_meta': cannot be checked: this review has no workbook key" in err
    assert "export fresh workbooks" in err
    assert _state(run) == ({}, {}, {})


def test_an_untouched_consensus_workbook_changes_nothing_and_a_judges_is_not_one(exported,
                                                                                capsys):
    """A consensus workbook is exported with the consensus as it stands; imported back
    untouched it recorded every row again without what its sheets have no column for
    (a rejection's recorded reason, a split domain's definition), and they were lost.
    And one judge's own workbook imported with --consensus became the panel's consensus."""
    run, rdir = exported
    assert main(["review", "resolve", str(run), "--theme", "1", "--decision", "reject",
                 "--comment", "single story; not a category", "--by", "team"]) == 0
    assert main(["review", "resolve", str(run), "--theme", "2", "--decision", "rename",
                 "--name", "Peer consultation", "--core-idea", "colleagues who listened",
                 "--by", "team"]) == 0
    assert main(["review", "resolve", str(run), "--domain", "0", "--decision", "split",
                 "--themes", "4", "--name", "Shame", "--core-idea", "shame in supervision",
                 "--by", "team"]) == 0
    before = _standing(run)
    assert main(["review", "export", str(run), "--consensus", "--by", "team"]) == 0
    capsys.readouterr()
    assert main(["review", "import", str(run), str(rdir / "team.xlsx"), "--consensus",
                 "--by", "team"]) == 0
    assert "as the consensus stands, left as recorded" in capsys.readouterr().out
    after = _standing(run)
    made = next(k for k, d in before.items() if d.decision == "create")   # the split's domain
    assert before["domain:0"].core_idea == before[made].core_idea == "shame in supervision"
    for item in (made, "domain:0", "theme:1", "theme:2"):
        assert replace(after[item], source="") == replace(before[item], source=""), item
    assert after["theme:1"].comment == "single story; not a category"
    # a judge's workbook is not the consensus, whoever --by names
    state = _state(run)
    fill(rdir / "ana.xlsx", "themes", 0, decision="reject")
    assert main(["review", "import", str(run), str(rdir / "ana.xlsx"), "--consensus",
                 "--by", "team"]) == 2
    assert "not a consensus workbook" in capsys.readouterr().err
    assert _state(run) == state


def _standing(run):
    with ReviewStore(load_run(run)) as store:
        return store.standing()


def test_an_older_copy_imported_after_a_newer_one_says_which_positions_it_puts_back(
        exported, tmp_path, capsys):
    """A judge imported v1 (reject), then v2 (accept), then v1 again by mistake: the
    reject came back with no word. Each position that replaces a different one of the
    same judge is named in the import's message; the earlier stay in the audit log."""
    import shutil

    run, rdir = exported
    fill(rdir / "ana.xlsx", "themes", 0, decision="reject")
    v1 = Path(shutil.copy(rdir / "ana.xlsx", tmp_path / "ana-v1.xlsx"))
    assert main(["review", "import", str(run), str(v1)]) == 0
    assert "replace" not in capsys.readouterr().out
    fill(rdir / "ana.xlsx", "themes", 0, decision="accept")
    assert main(["review", "import", str(run), str(rdir / "ana.xlsx")]) == 0
    assert "1 position(s) replace a different one" in capsys.readouterr().out
    assert main(["review", "import", str(run), str(v1)]) == 0
    out = capsys.readouterr().out
    assert "1 position(s) replace a different one" in out and "ana on theme:0" in out
    assert _state(run)[0]["theme:0"]["ana"].decision == "reject"
    # the same workbook again replaces nothing
    assert main(["review", "import", str(run), str(v1)]) == 0
    assert "replace" not in capsys.readouterr().out


def test_a_row_cleared_in_the_workbook_is_named_and_its_position_stays(exported, capsys):
    """A judge cleared a row she had filled in and imported again, as if that took her
    position back: it did not, without a word. The import names each position that a
    blank row leaves as recorded, and says how to change it."""
    run, rdir = exported
    fill(rdir / "ana.xlsx", "themes", 0, decision="accept")
    fill(rdir / "ana.xlsx", "themes", 1, decision="rename", new_name="Support")
    assert main(["review", "import", str(run), str(rdir / "ana.xlsx")]) == 0
    assert "blank in the workbook" not in capsys.readouterr().out
    row = fill(rdir / "ana.xlsx", "themes", 1, decision=None, new_name=None)
    assert main(["review", "import", str(run), str(rdir / "ana.xlsx")]) == 0
    out = capsys.readouterr().out
    assert "1 position(s) recorded before are blank in the workbook and stay" in out
    assert f"ana on theme:1 (ana.xlsx, sheet 'themes', row {row}): rename" in out
    assert "write the new decision in its row" in out
    assert _state(run)[0]["theme:1"]["ana"].new_name == "Support"
    # another judge's blank rows say nothing of ana's positions
    fill(rdir / "ben.xlsx", "themes", 0, decision="accept")
    assert main(["review", "import", str(run), str(rdir / "ben.xlsx")]) == 0
    assert "blank in the workbook" not in capsys.readouterr().out
