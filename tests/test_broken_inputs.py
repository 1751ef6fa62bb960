"""Broken inputs (tests/broken/make_corpus.py): each gets one clear message naming the
file (and line, field or key) and what to do, exit status 2 and no traceback; where
other files are fine the run goes on and the manifest says what was skipped and why;
nothing is half-written. ``python -m tests.broken.make_corpus`` prints the table."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import docx
import docx.oxml.parser
import pytest

from tests.broken import make_corpus as corpus

ROOT = Path(__file__).resolve().parent.parent
BY_NAME = {c.name: c for c in corpus.cases()}


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    return corpus.make_run(tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory):
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="module")
def ran(corpus_root, good_run):
    """Every broken input run once, by name: what the table script prints is what the
    tests check."""
    return {case.name: (case, code, out, err)
            for case, code, out, err in corpus.outcomes(corpus_root, good_run)}


@pytest.fixture(scope="module")
def joint(corpus_root):
    return corpus.together(corpus_root)


def test_the_corpus_has_at_least_thirty_broken_inputs():
    assert len(BY_NAME) >= 30
    assert sum(c.transcript for c in BY_NAME.values()) >= 20


@pytest.mark.parametrize("name", corpus.CASE_NAMES)
def test_each_broken_input_gets_a_clear_message(name, ran, corpus_root):
    case, code, out, err = ran[name]
    folder = corpus_root / name
    assert "Traceback" not in err + out
    if case.kind == "note":
        assert code == 0, err
        manifest = json.loads((folder / "out" / "manifest.json").read_text())
        notes = [s for s in manifest["skipped"] if case.expect in s["reason"]]
        assert notes and case.names in notes[0]["what"] + notes[0]["reason"]
        return
    assert code == 2, err
    text = " ".join(err.split())
    assert text.count("consensa: error:") == 1
    assert case.expect in text, text
    assert case.names in text, text                        # the file, key or field
    assert "What to do:" in err, text
    # nothing half-written: no run folder, no partial folder, no compare output
    assert not (folder / "out").exists()
    assert not list(folder.glob(".out.partial*"))
    assert not (folder / "compare").exists()
    assert not (folder / "runs").exists() or not any((folder / "runs").iterdir())


def test_broken_transcripts_beside_good_ones_are_skipped_and_the_run_goes_on(joint):
    code, manifest, folder = joint
    assert code == 0
    # the six good ones, and each "note" transcript that is a file (not a link or folder)
    kept = [c for c in BY_NAME.values() if c.transcript and c.kind == "note" and not any(
        isinstance(f, (corpus.Symlink, corpus.Folder)) for f in c.files.values())]
    assert manifest["counts"]["cases_analysed"] == 6 + len(kept)
    # what was changed or left out inside the files read is counted as well
    counts = manifest["counts"]
    assert counts["xlsx_formula_cells_not_read"] == 2          # formulas.xlsx: D4, D6
    assert counts["lines_decoded_as_cp1252"] == 1              # mixed.txt, line 2
    assert counts["cue_times_dropped"] == 1                    # backwards.srt, line 6
    not_files = sum(isinstance(f, (corpus.Symlink, corpus.Folder)) for c in BY_NAME.values()
                    if c.transcript for f in c.files.values())
    assert counts["paths_not_read"] >= not_files + 1           # and scan.pdf
    skipped = manifest["skipped"]
    for case in BY_NAME.values():
        if not case.transcript:
            continue
        for name in case.files:
            hits = [s for s in skipped if Path(s["what"].split(":")[0]).name.endswith(name)]
            assert hits, f"{name} is not in the manifest's skipped list"
            if case.expect:
                assert any(case.expect in s["reason"] for s in hits), (name, hits)
            for s in hits:                 # each says what to do
                assert any(verb in s["reason"] for verb in (
                    "what to do", "convert it", "check the", "add them", "rename", "correct")), s


def test_zip_slip_writes_nothing_outside(tmp_path, good_run):
    target = Path("/tmp/consensa-zip-slip.txt")
    target.unlink(missing_ok=True)
    case = corpus.write_case(BY_NAME["qdpx-zip-slip"], tmp_path, good_run)
    assert corpus.run_cli(case.args)[0] == 2
    assert not target.exists()


def test_python_docx_itself_resolves_no_entities():
    """Beside Consensa's own refusal: python-docx parses with resolve_entities=False
    (lxml, no network by default), so an external entity is never read."""
    import inspect

    assert "resolve_entities=False" in inspect.getsource(docx.oxml.parser)
    document = docx.Document(io.BytesIO(corpus.docx_xxe()))
    text = "\n".join(p.text for p in document.paragraphs)
    assert "root:" not in text
    # libxml2 refuses the expansion itself ("Maximum entity amplification factor exceeded")
    with pytest.raises(Exception, match="amplification"):
        docx.Document(io.BytesIO(corpus.docx_billion_laughs()))


def test_the_command_line_program_exits_2_without_a_traceback(tmp_path):
    case = corpus.write_case(BY_NAME["config-typo-key"], tmp_path)
    exe = Path(sys.executable).parent / "consensa"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pipeline.cli"]
    proc = subprocess.run(cmd + case.args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "'clustr' is not a known setting" in proc.stderr and "Traceback" not in proc.stderr


def test_the_table_script_prints_every_case(corpus_root, ran, joint):
    table = corpus.table(corpus_root, list(ran.values()), joint)
    for case in BY_NAME.values():
        assert case.what.replace("|", "/") in table
    assert "Traceback" not in table
