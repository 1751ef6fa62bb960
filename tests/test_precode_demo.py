"""The demo's agreed codebook pre-codes three new interviews written for Consensa
(data/demo_new): a calibrated confidence, and a queue a person has to look at."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_demo_codebook_pre_codes_new_interviews_and_queues_the_doubtful(applied_demo,
                                                                             tmp_path, capsys):
    run = applied_demo
    out = tmp_path / "new"
    capsys.readouterr()
    assert main(["precode", str(run / "review" / "codebook.yaml"),
                 "--transcripts", str(ROOT / "data" / "demo_new"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    seg = pd.read_parquet(out / "segments.parquet")
    assert m["threshold"] == 0.7 and m["cases"] == 3
    assert set(seg["status"]) <= {"coded", "none", "needs_human"}
    assert m["n_needs_human"] > 0                              # a person has work to do
    cal = m["calibration"]
    assert 0 <= cal["ece"] < 0.2 and cal["reliability"] and cal["temperature"] > 0
    assert (seg["confidence"] <= cal["max_confidence"] + 1e-9).all()
    queue = openpyxl.load_workbook(out / "queue.xlsx")["queue"]
    assert queue.max_row - 1 == m["n_needs_human"]
    assert f"needs a human (confidence < 0.7): {m['n_needs_human']}" in printed
    coded = seg[seg["status"] == "coded"]
    assert (coded["confidence"] >= 0.7).all() and (coded["category_id"] >= 0).all()
    # courtesy is the interview frame, set apart as the run sets it apart: "Not at all,
    # it was good to talk about it." had gone to the queue under a content category
    talk = seg[seg["text"].str.contains("good to talk about it")]
    assert len(talk) == 1 and talk["small_talk"].all()
    assert (talk["status"] == "none").all() and not talk["needs_human"].any()
    assert (seg.loc[seg["small_talk"], "category_id"] < 0).all()
    assert m["n_small_talk"] == int(seg["small_talk"].sum()) >= 1
    assert f"({m['n_small_talk']} of them small talk)" in printed
    # few segments are courtesy alone: the rule takes no content
    assert seg["small_talk"].sum() <= 3
