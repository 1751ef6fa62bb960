"""Pre-coding new transcripts with an agreed codebook; doubtful segments go to humans."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import yaml

from pipeline.cli import main
from pipeline.precode import fit_classifier
from tests.review_helpers import agree_and_apply
from tests.study import TOPICS, write_study


@pytest.fixture(scope="module")
def codebook(study_run, tmp_path_factory):
    run = Path(shutil.copytree(study_run(), tmp_path_factory.mktemp("precode") / "run"))
    return agree_and_apply(run)


def test_fit_classifier_reports_held_out_calibration():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8))
    X = np.vstack([c + 0.1 * rng.normal(size=(20, 8)) for c in centers])
    y = np.repeat([0, 1, 2], 20)
    clf = fit_classifier(X, y, groups=np.tile(np.arange(5), 12), seed=0)
    assert clf.name == "logistic_regression"
    cal = clf.calibration
    assert cal["accuracy"] > 0.9 and cal["folds"].startswith("GroupKFold")
    assert 0 <= cal["ece"] < 0.1 and cal["reliability"]
    labels, conf = clf.predict(X)
    assert (labels == y).mean() > 0.9 and ((conf > 0) & (conf <= 1)).all()


def test_precode_codes_new_transcripts_and_queues_doubtful_ones(codebook, tmp_path, capsys):
    new = write_study(tmp_path / "new", n_cases=3)
    out = tmp_path / "pre"
    assert main(["precode", str(codebook), "--transcripts", str(new), "--threshold", "0",
                 "--out", str(out)]) == 0
    assert "pre-coded" in capsys.readouterr().out
    seg = pd.read_parquet(out / "segments.parquet")
    assert not seg["needs_human"].any()
    # each new segment lands in the category of its topic
    cb = yaml.safe_load(codebook.read_text())
    assignments = pd.read_csv(codebook.parent / "assignments.csv")
    train = pd.read_parquet(codebook.parent.parent / "segments.parquet").merge(assignments,
                                                                               on="segment_id")
    topic_of = {s: t for t, ss in TOPICS.items() for s in ss}
    cat_of_topic = {topic_of[t]: c for t, c in zip(train["text"], train["category_id"], strict=True)
                    if t in topic_of}
    known = seg[seg["text"].isin(topic_of)]
    assert len(known) > 10
    hits = [cat_of_topic[topic_of[t]] == c
            for t, c in zip(known["text"], known["category_id"], strict=True)]
    assert np.mean(hits) >= 0.9
    m = json.loads((out / "manifest.json").read_text())
    assert m["classifier"] == "logistic_regression" and m["n_needs_human"] == 0
    cal = m["calibration"]
    assert {"ece", "reliability", "temperature", "accuracy", "macro_f1"} <= set(cal)
    assert sum(r["n"] for r in cal["reliability"]) == cal["n_scored"] > 0
    # never the certainty held-out cases cannot show: at most (k + 1) / (n + 2)
    assert (seg["confidence"] <= cal["max_confidence"] + 1e-9).all()
    assert cal["max_confidence"] < 1.0 and (seg["confidence"] < 1.0).all()
    table = (out / "cqr_table.md").read_text()
    assert all(c["name"] in table for d in cb["domains"] for c in d["categories"])

    # a threshold above every confidence sends them all to the queue instead of coding them
    cut = 1.0
    out2 = tmp_path / "pre2"
    assert main(["precode", str(codebook), "--transcripts", str(new), "--threshold", str(cut),
                 "--out", str(out2)]) == 0
    seg2 = pd.read_parquet(out2 / "segments.parquet")
    low = seg2["confidence"] < cut
    assert low.any() and (seg2["needs_human"] == low).all()
    assert (seg2.loc[low, "category_id"] == -1).all()
    assert (seg2.loc[~low, "status"].isin(["coded", "none"])).all()
    assert (seg2.loc[seg2["status"] == "coded", "category_id"] >= 0).all()
    ws = openpyxl.load_workbook(out2 / "queue.xlsx")["queue"]
    assert ws.max_row - 1 == int(low.sum())
    assert json.loads((out2 / "manifest.json").read_text())["n_needs_human"] == int(low.sum())


def test_precode_refuses_a_missing_codebook(tmp_path, capsys):
    assert main(["precode", str(tmp_path / "nope.yaml"), "--transcripts", str(tmp_path)]) == 2
    assert "no such codebook" in capsys.readouterr().err
    # codebook.md, which apply writes beside it for people, is named for what it is
    # (its Markdown was read as YAML: "line 7: ..." said nothing of the file to give)
    (tmp_path / "codebook.md").write_text("# Codebook\n\n- a: b\n  c\n", encoding="utf-8")
    (tmp_path / "codebook.yaml").write_text("{}\n", encoding="utf-8")
    assert main(["precode", str(tmp_path / "codebook.md"), "--transcripts", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a codebook.yaml" in err and f"give {tmp_path / 'codebook.yaml'}" in err


def _deidentified_precoding(codebook: Path, new: Path, tmp_path: Path,
                            roles: dict[str, str] | None = None) -> Path:
    """``new`` pre-coded with the codebook's run config and de-identification on
    (Zelda Quist a known name; ``roles`` added to the roles map); the output folder."""
    run_cfg = yaml.safe_load((codebook.parent.parent / "config.yaml").read_text())
    run_cfg["deidentify"] = {"enabled": True, "known_names": ["Zelda Quist"], "ner": False}
    if roles:
        run_cfg["ingest"]["roles"] = {**(run_cfg["ingest"].get("roles") or {}), **roles}
    run_cfg["cache_dir"] = str(tmp_path / "cache")
    cfg = tmp_path / "team.yaml"
    cfg.write_text(yaml.safe_dump(run_cfg))
    out = tmp_path / "pre"
    assert main(["precode", str(codebook), "--transcripts", str(new), "--config", str(cfg),
                 "--threshold", "0", "--out", str(out)]) == 0
    return out


def test_precode_de_identifies_new_transcripts_when_the_config_says_so(codebook, tmp_path):
    new = write_study(tmp_path / "new", n_cases=2)
    case = new / "case01.txt"
    case.write_text(case.read_text(encoding="utf-8") +
                    "\nTherapist: I told Zelda Quist about it, she rang me on 020 7946 0958 "
                    "and we cried together about the training.\n", encoding="utf-8")
    # a speaker's name in the roles map, as Zoom and Teams exports need: the pre-coding's
    # manifest kept it in its ingest section
    out = _deidentified_precoding(codebook, new, tmp_path, roles={"Zelda Quist": "interviewer"})
    seg = pd.read_parquet(out / "segments.parquet")
    written = " ".join(p.read_text(encoding="utf-8") for p in out.rglob("*")
                       if p.is_file() and p.suffix in (".csv", ".md", ".json", ".txt"))
    for secret in ("Zelda", "Quist", "7946"):
        assert secret not in written and not seg["text"].str.contains(secret).any()
    m = json.loads((out / "manifest.json").read_text())
    assert m["deidentify"]["enabled"] and m["deidentify"]["replacements"]["PERSON"] >= 1
    assert m["deidentify"]["mapping_file"] is None
    assert m["ingest"]["roles"] == {} and m["ingest_roles_left_out"] >= 1
    # quotes still index the texts written beside them
    src = {p.stem: p.read_text(encoding="utf-8") for p in (out / "sources").glob("*.txt")}
    row = seg[seg["text"].str.contains("PERSON")].iloc[0]
    assert src[row["case_id"]][row["start_char"]:row["end_char"]] == row["text"]


def test_a_de_identified_precoding_keeps_the_sha256_its_export_checks(codebook, tmp_path, capsys):
    """A de-identified pre-coding recorded no sha256 of what it read, so a transcript
    edited after pre-coding reached its export unnoticed, where the pre-coding of the
    same transcripts without de-identification stopped and named the file. It records
    them as a de-identified run does (``inputs``: each kept text's sha256 and its original
    file's, no original path), and the export checks both."""
    import hashlib

    new = write_study(tmp_path / "new", n_cases=2)
    out = _deidentified_precoding(codebook, new, tmp_path)
    m = json.loads((out / "manifest.json").read_text())
    sha = {f.stem: hashlib.sha256(f.read_bytes()).hexdigest() for f in new.glob("*.txt")}
    assert {i["case_id"]: i["original_sha256"] for i in m["inputs"]} == sha
    for item in m["inputs"]:
        assert item["deidentified"] and item["path"].startswith("sources/")
        assert item["sha256"] == hashlib.sha256((out / item["path"]).read_bytes()).hexdigest()
    assert str(new) not in json.dumps(m["inputs"])
    capsys.readouterr()
    assert main(["export", "qdpx", str(out)]) == 0
    # a turn added to an original after pre-coding stops the export, naming the file
    first = sorted(new.glob("*.txt"))[0]
    was = first.read_bytes()
    first.write_bytes(was + b"\nTherapist: added later, about Zelda Quist.\n")
    assert main(["export", "qdpx", str(out), "--out", str(tmp_path / "x.qdpx")]) == 2
    err = capsys.readouterr().err
    assert f"changed since the pre-coding read them, or were not there when it pre-coded: " \
           f"{first.name} (case {first.stem})" in err and "Traceback" not in err
    assert not (tmp_path / "x.qdpx").exists()
    first.write_bytes(was)
    # and so does a kept text edited since
    kept = out / m["inputs"][0]["path"]
    kept.write_text(kept.read_text(encoding="utf-8") + "\nadded", encoding="utf-8")
    assert main(["export", "qdpx", str(out), "--out", str(tmp_path / "x.qdpx")]) == 2
    assert "changed since the pre-coding wrote it" in capsys.readouterr().err


def test_a_precodings_manifest_pins_what_produced_its_codes(codebook, tmp_path):
    """The pre-coding's manifest named the codebook by path alone, and said nothing of the
    seed, the package versions or the CPU kernels a run's manifest records: a codebook
    applied again since, or another machine, could not be told apart."""
    import hashlib

    from pipeline.run import kernels, versions

    out = tmp_path / "pre"
    assert main(["precode", str(codebook), "--transcripts",
                 str(write_study(tmp_path / "new", n_cases=2)), "--threshold", "0",
                 "--out", str(out), "-q"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    cb = yaml.safe_load(codebook.read_text())
    assert m["codebook_sha256"] == hashlib.sha256(codebook.read_bytes()).hexdigest()
    assert m["codebook_round"] == cb["review"]["round"]
    assert m["codebook_applied_at"] == cb["review"]["applied_at"]
    run_cfg = yaml.safe_load((codebook.parent.parent / "config.yaml").read_text())
    assert m["seed"] == run_cfg.get("seed", 0)
    assert m["versions"] == versions() and m["versions"]["scikit-learn"]
    assert m["kernels"]["machine"] == kernels()["machine"] and "numpy" in m["kernels"]
