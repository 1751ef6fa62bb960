"""Who prints: only the command line. Progress goes through logging, bars only on a terminal."""

import ast
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.cli import _logging_to_stderr, main
from pipeline.config import validate_config
from pipeline.progress import ROOT_LOGGER, bars_wanted, progress
from pipeline.stability import StabilityConfig, compute_stability
from pipeline.stages.embed import SentenceTransformerEmbedder
from tests.study import study_config, write_study

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline"


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).as_posix() != "cli.py":
            yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_no_module_but_the_command_line_prints():
    """print() (called, or passed on as a callback), traceback printing and writes to
    sys.stdout/sys.stderr belong to pipeline/cli.py alone."""
    found = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            where = f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Name) and node.id == "print":
                found.append(f"{where} print")
            elif isinstance(node, ast.Attribute) and node.attr in (
                    "print_exc", "print_exception", "print_stack"):
                found.append(f"{where} traceback.{node.attr}")
            elif (isinstance(node, ast.Attribute) and node.attr == "write"
                  and isinstance(node.value, ast.Attribute)
                  and node.value.attr in ("stdout", "stderr")):
                found.append(f"{where} sys.{node.value.attr}.write")
    assert not found, "printing outside pipeline/cli.py:\n" + "\n".join(found)


def test_no_function_takes_a_report_callback():
    """Progress goes through logging, not through a callback handed down the calls."""
    found = [f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}"
             for path, tree in _modules() for node in ast.walk(tree)
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
             and any(a.arg in ("report", "say") for a in
                     node.args.args + node.args.kwonlyargs + node.args.posonlyargs)]
    assert not found, found


@pytest.fixture()
def watched(monkeypatch):
    """The consensa logger showing INFO, as the command line sets it, and no CI."""
    monkeypatch.delenv("CI", raising=False)
    logger = logging.getLogger(ROOT_LOGGER)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(level)


def _stability(monkeypatch, stream) -> None:
    """compute_stability on two well-separated groups, with ``stream`` as stderr."""
    monkeypatch.setattr("sys.stderr", stream)
    rng = np.random.default_rng(0)
    vectors = np.vstack([rng.normal(c, 0.05, size=(12, 4)) for c in (0.0, 3.0)]).astype(np.float32)
    seg = pd.DataFrame({"case_id": [f"P{i % 4}" for i in range(24)],
                        "theme": [0] * 12 + [1] * 12})
    themes = pd.DataFrame({"theme_id": [0, 1], "name": ["a", "b"],
                           "frequency_label": ["general", "general"]})
    cfg = validate_config({"reduce": {"name": "consensa.Identity.v1"},
                           "cluster": {"name": "consensa.KMeans.v1", "n_clusters": 2}})
    compute_stability(seg, themes, vectors, cfg, StabilityConfig(resamples=4, bootstrap=False),
                      check_reproduction=False)


def test_the_bar_is_not_shown_when_stderr_is_not_a_terminal(watched, monkeypatch):
    piped = io.StringIO()
    _stability(monkeypatch, piped)
    assert piped.getvalue() == ""                     # no bar, no carriage returns
    assert not bars_wanted()
    items = [1, 2, 3]
    assert progress(items, "x") is items
    # the embedder's own bar follows the same rule, even when asked for
    assert not SentenceTransformerEmbedder(show_progress_bar=True)._show_bar(10_000)


def test_the_bar_is_shown_on_a_terminal_but_never_in_ci_or_quiet(watched, monkeypatch):
    tty = Terminal()
    _stability(monkeypatch, tty)
    assert "stability" in tty.getvalue() and "resample" in tty.getvalue()
    assert SentenceTransformerEmbedder()._show_bar(256)
    assert not SentenceTransformerEmbedder()._show_bar(10)          # too short to need one
    assert not SentenceTransformerEmbedder(show_progress_bar=False)._show_bar(10_000)
    monkeypatch.setenv("CI", "true")
    assert not bars_wanted()
    monkeypatch.delenv("CI")
    logging.getLogger(ROOT_LOGGER).setLevel(logging.WARNING)        # --quiet
    assert not bars_wanted()


def test_progress_lines_go_to_stderr_and_quiet_keeps_only_the_error(tmp_path, capsys):
    # settings the study cannot hold stop the run after segmenting, before any embedding
    study = write_study(tmp_path / "study")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(study_config(
        study, cluster={"name": "consensa.HDBSCAN.v1", "min_cluster_size": 1000})))
    handlers = list(logging.getLogger(ROOT_LOGGER).handlers)
    assert main(["run", str(cfg), "--out", str(tmp_path / "a")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[:2] == ["  ingest ...", "  segment ..."]
    assert lines[2].startswith("consensa: error: ") and "Traceback" not in err
    assert main(["run", str(cfg), "--out", str(tmp_path / "b"), "--quiet"]) == 2
    quiet = capsys.readouterr().err
    assert quiet.splitlines() == lines[2:]            # the same error, no progress lines
    # each call removes its handler: the next call does not print its lines twice
    assert logging.getLogger(ROOT_LOGGER).handlers == handlers


def test_a_file_name_is_printed_with_its_control_characters_escaped(tmp_path, capsys):
    """A transcript named with an escape sequence recoloured (or retitled) the terminal
    each message naming it was printed on: what a terminal acts on is printed as its
    escape, in what the command prints and in what it logs."""
    config = tmp_path / "study.yaml"
    config.write_text('name: x\ningest:\n  paths: ["\\e]0;PWNED\\a\\e[31mgone\\u202e"]\n')
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert "\\x1b]0;PWNED\\x07\\x1b[31mgone\\u202e" in err
    assert not any(ch in err for ch in "\x1b\x07\u202e")
    logging.getLogger(f"{ROOT_LOGGER}.test").warning("read \x1b[2J%s", "T\rX")
    with _logging_to_stderr(quiet=False):
        logging.getLogger(f"{ROOT_LOGGER}.test").warning("read \x1b[2J%s", "T\rX")
    assert capsys.readouterr().err == "  warning: read \\x1b[2JT\\rX\n"


def test_a_stage_entered_again_says_it_goes_on_and_its_times_add_up(caplog):
    """The CQR run begins its map apart and waits for it after the cross-analysis: the
    second entry is logged as the map going on, not as a second map."""
    from pipeline.run import Timer

    timer = Timer()
    with caplog.at_level(logging.INFO, logger="consensa.run"):
        for name in ("map", "cross-analysis", "map"):
            with timer.stage(name):
                pass
    said = [r.getMessage() for r in caplog.records if r.name == "consensa.run"]
    assert said == ["map ...", "cross-analysis ...", "map, continued ..."]
    assert list(timer.timings) == ["map", "cross-analysis"]


def test_a_repeat_from_a_run_folders_config_says_whether_it_read_the_same_transcripts(
        tmp_path):
    """`consensa run RUN/config.yaml` repeats a run, but after a transcript was edited
    (or the project moved and another copy sat at the recorded paths) it read other
    transcripts without a word. It now compares each file's sha256 with the earlier
    run's manifest."""
    import json

    from pipeline.cli import _repeat_note

    run = tmp_path / "runs" / "study-20261207-204235"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("name: study\n")
    inputs = [{"case_id": "R01", "sha256": "a"}, {"case_id": "R02", "sha256": "b"}]
    (run / "manifest.json").write_text(json.dumps({"inputs": inputs}))
    same = _repeat_note(run / "config.yaml", {"inputs": inputs})
    assert same.startswith("the same transcripts as the run in") and "2 files" in same
    edited = _repeat_note(run / "config.yaml", {"inputs": [
        {"case_id": "R01", "sha256": "a"}, {"case_id": "R02", "sha256": "c"},
        {"case_id": "R03", "sha256": "d"}]})
    assert edited.startswith(f"this is not a repeat of the run in {run}")
    assert "1 changed since (R02)" in edited and "1 new (R03)" in edited
    # a study's own config is no repeat of anything
    assert _repeat_note(tmp_path / "study.yaml", {"inputs": inputs}) == ""


def test_a_run_folders_config_whose_transcripts_moved_says_what_to_do(tmp_path, capsys):
    """The hint said relative paths are read from the config's folder, but a run folder's
    config records absolute paths: after the project moved, that hint did not apply."""
    run = tmp_path / "runs" / "study-20261207-204235"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text("{}")
    (run / "config.yaml").write_text(
        f"name: study\ningest:\n  paths: [{tmp_path / 'gone' / 'transcripts'}]\n")
    assert main(["validate", str(run / "config.yaml")]) == 2
    err = capsys.readouterr().err
    assert "no transcript file or folder at" in err
    assert "the record an earlier run folder keeps" in err and "Traceback" not in err


def test_a_reader_that_stops_reading_is_no_disk_error(tmp_path, monkeypatch, capsys):
    """`consensa ... | head` printed "Broken pipe ... check that this path is a folder
    you can write to ... the disk is not full": nothing of the kind was wrong."""
    import pipeline.cli as cli

    def stopped(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "cmd_validate", stopped)
    assert main(["validate", str(tmp_path / "c.yaml")]) == 141
    assert capsys.readouterr().err == ""


def test_the_manifest_names_the_config_file_and_the_settings_set_on_the_command_line(
        tmp_path):
    """Which values came from `--set` was recorded nowhere: config.yaml holds the
    settings resolved, and the manifest neither the config file read nor its sha256."""
    import hashlib
    import json

    from tests.study import study_config, write_study

    write_study(tmp_path / "study")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(study_config(tmp_path / "study")), encoding="utf-8")
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "-q",
                 "--set", "seed=3"]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config_given"] == {
        "path": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "set": ["seed=3"]}
    assert manifest["seed"] == 3


def test_the_run_summary_repeats_the_warnings_on_roles_the_turns_contradict():
    """A case whose turns say its speakers' roles are swapped had its questions analysed
    as answers: among the notes it was one more count of the summary; it is written out."""
    from pipeline.cli import _roles_warnings
    from pipeline.stages.ingest import ROLES_CONTRADICTED

    notes = [{"what": "a.txt", "reason": "2 lines before the first speaker label"},
             *({"what": f"C{i}.txt", "reason": f"case 'C{i}': {ROLES_CONTRADICTED}: ...",
                "kept": True} for i in range(7))]
    shown = _roles_warnings(notes)
    assert shown[0].startswith("case 'C0': the turns contradict") and len(shown) == 6
    assert shown[-1] == "and 2 more case(s) like these"
    assert _roles_warnings(notes[:1]) == []


def test_a_run_of_a_study_whose_earlier_run_has_a_review_points_to_pre_coding(
        tmp_path, capsys):
    """A study that grew after its review was run again: the new run is a new proposal
    that no decision of the review reaches, and nothing said so, nor that the agreed
    codebook pre-codes new transcripts."""
    from tests.review_helpers import agree_and_apply

    write_study(tmp_path / "study")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(study_config(tmp_path / "study")), encoding="utf-8")
    first, second = tmp_path / "runs" / "first", tmp_path / "runs" / "second"
    assert main(["run", str(path), "--out", str(first)]) == 0
    assert "has a review" not in capsys.readouterr().out
    codebook = agree_and_apply(first)
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(second)]) == 0
    out = capsys.readouterr().out
    assert (f"note: the earlier run {first.resolve()} has a review; this run is a new "
            "proposal, which none of its decisions reaches") in out
    assert f"consensa precode {codebook.resolve()} --transcripts NEW_DIR" in out
    assert "When the study grows" in out
