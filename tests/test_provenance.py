"""A run's manifest says what it was computed from, and the cache never serves a
result of other inputs than the run's: a model's weights, the protocol and cases
table a config names, Consensa's own code, a batch's settings, the transcripts."""

from __future__ import annotations

import json

import numpy as np

from pipeline.cache import Cache
from pipeline.compose import embed_texts
from pipeline.stages import embed as embed_mod
from pipeline.stages.embed import SentenceTransformerEmbedder

TEXTS = ["a tear ran down", "she passed me the tissues", "my supervisor listened"]


def _model(folder, weights: bytes):
    """A model folder as a SentenceTransformer saves it (the weights are made up)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / "modules.json").write_text("[]")
    (folder / "model.safetensors").write_bytes(weights)
    return folder


class WeightsModel(SentenceTransformerEmbedder):
    """Vectors that depend on the weights file's bytes, as a real model's do."""

    def encode(self, texts):
        from pathlib import Path

        seed = sum(Path(self.model, "model.safetensors").read_bytes())
        return np.array([[len(t), t.count("e"), seed % 97, 1.0] for t in texts], np.float32)


def test_a_model_saved_again_in_place_with_the_same_size_is_embedded_again(tmp_path):
    """A model fine-tuned again and saved in place keeps its file names and size;
    the cache must not serve the old model's vectors."""
    model = _model(tmp_path / "mymodel", b"A" * 4096)
    cache = Cache(tmp_path / "cache")
    first, counts = embed_texts(WeightsModel(model=str(model)), TEXTS, cache)
    assert counts["embedded"] == 3
    (model / "model.safetensors").write_bytes(b"B" * 4096)       # same name, same size
    second, counts = embed_texts(WeightsModel(model=str(model)), TEXTS, cache)
    assert counts == {"embedded": 3, "from_cache": 0}
    assert not np.array_equal(first, second)
    # the same weights again (a new mtime, the same bytes) are the same model
    (model / "model.safetensors").write_bytes(b"A" * 4096)
    again, counts = embed_texts(WeightsModel(model=str(model)), TEXTS, cache)
    assert counts == {"embedded": 0, "from_cache": 3} and np.array_equal(again, first)


def test_the_weights_digest_is_remembered_in_the_cache(tmp_path, monkeypatch):
    """The weights are read once per (file, size, mtime): the next process finds
    their digest in the run's cache."""
    import hashlib

    model = _model(tmp_path / "m", b"W" * 1000)
    cache = Cache(tmp_path / "cache")
    embedder = SentenceTransformerEmbedder(model=str(model))
    want = {"model.safetensors": hashlib.sha256(b"W" * 1000).hexdigest()}
    assert embedder.weights_sha256(cache) == want
    monkeypatch.setattr(embed_mod, "_WEIGHTS_SHA256", {})        # another process
    real_open = open

    def no_weights(path, *a, **k):
        assert not str(path).endswith(".safetensors"), "the weights were read again"
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", no_weights)
    assert embedder.weights_sha256(cache) == want
    assert embedder.model_id_with(cache) == embedder.model_id


def test_the_manifest_records_the_weights_digest(tmp_path, monkeypatch):
    import hashlib

    from tests.study import run_study_cli

    model = _model(tmp_path / "mymodel", b"C" * 512)
    monkeypatch.setattr(SentenceTransformerEmbedder, "encode", WeightsModel.encode)
    run = run_study_cli(tmp_path, embed={"name": "consensa.SentenceTransformer.v1",
                                         "model": str(model)})
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stage_params"]["embed"]["weights_sha256"] == {
        "model.safetensors": hashlib.sha256(b"C" * 512).hexdigest()}


def _protocol_study(root):
    """The test study with a protocol file and a cases table, run by CQR."""
    import yaml

    from tests.study import QUESTIONS, study_config, write_study

    folder = write_study(root / "study")
    protocol = root / "protocol.yaml"
    protocol.write_text(yaml.safe_dump({"areas": [
        {"name": topic.title(), "questions": [question]} for topic, question in QUESTIONS.items()]}))
    cases = root / "cases.csv"
    cases.write_text("case_id,orientation\n" + "".join(
        f"case{c:02d},{'CBT' if c % 2 else 'integrative'}\n" for c in range(1, 7)))
    cfg = study_config(folder, analysis="consensa.CQR.v1", protocol={"file": str(protocol)},
                       ingest={"paths": [str(folder)], "cases_table": str(cases)})
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, protocol, cases


def test_a_repeat_names_an_edited_protocol_file_and_cases_table(tmp_path, capsys):
    """`consensa run RUN/config.yaml` read the protocol file and the cases table as
    they were then, and said "the same transcripts as the run in ... read": the
    manifest now records both files' sha256, and the repeat names what changed."""
    import hashlib

    from pipeline.cli import main

    config, protocol, cases = _protocol_study(tmp_path)
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "-q"]) == 0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    for key, path in (("protocol_file", protocol), ("cases_table", cases)):
        assert manifest[key] == {"path": str(path.resolve()),
                                 "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    capsys.readouterr()
    assert main(["run", str(tmp_path / "run" / "config.yaml"), "--out",
                 str(tmp_path / "same")]) == 0
    said = capsys.readouterr().out
    assert "the same transcripts as the run in" in said
    assert "and of its protocol file and cases table" in said
    protocol.write_text(protocol.read_text().replace("Training", "Preparation"))
    cases.write_text(cases.read_text().replace("CBT", "psychodynamic"))
    assert main(["run", str(tmp_path / "run" / "config.yaml"), "--out",
                 str(tmp_path / "again")]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "this is not a repeat of the run in" in said, said
    assert f"its protocol file {protocol.resolve()} changed since that run read it" in said
    assert f"its cases table {cases.resolve()} changed since that run read it" in said
    assert "the same transcripts" not in said


def test_a_repeat_of_a_run_that_recorded_no_protocol_digest_says_it_cannot_tell(tmp_path):
    from pipeline.cli import _repeat_note

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: study\n")
    inputs = [{"case_id": "R01", "sha256": "a"}]
    (run / "manifest.json").write_text(json.dumps({"inputs": inputs}))
    note = _repeat_note(run / "config.yaml", {
        "inputs": inputs, "protocol_file": {"path": "/p/protocol.yaml", "sha256": "b"}})
    assert note.startswith("the same transcripts as the run in")
    assert ("records no sha256 of its protocol file (/p/protocol.yaml), so whether it "
            "changed since is not known") in note


def test_the_manifest_identifies_the_code_and_a_repeat_says_when_it_differs(tmp_path):
    """An editable install always says version 0.1.0: a naming change between two
    runs of the same config and transcripts left nothing in the manifests to show
    why. The manifest records the sha256 of the package's files (and the git commit
    of a checkout); a repeat says when the code differs."""
    import shutil
    from pathlib import Path

    import pipeline
    from pipeline.cli import _repeat_note
    from pipeline.run import code_identity, package_digest
    from tests.study import run_study_cli

    run = run_study_cli(tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    here = Path(pipeline.__file__).parent
    assert manifest["code"]["package_sha256"] == package_digest(here)[0] == \
        code_identity()["package_sha256"]
    copy = tmp_path / "copy"
    shutil.copytree(here, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert package_digest(copy)[0] == package_digest(here)[0]
    naming = copy / "stages" / "naming.py"
    naming.write_text(naming.read_text() + "\n# edited\n")
    edited = package_digest(copy)[0]
    assert edited != package_digest(here)[0]

    then = dict(manifest, code={"package_sha256": edited, "git_commit": "a" * 40})
    (run / "manifest.json").write_text(json.dumps(then))
    note = _repeat_note(run / "config.yaml", manifest)
    assert note.startswith("the same transcripts as the run in"), note
    assert "Consensa's code differs from that run's" in note
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert "code" not in _repeat_note(run / "config.yaml", manifest)
    old = {k: v for k, v in manifest.items() if k != "code"}
    (run / "manifest.json").write_text(json.dumps(old))
    assert "does not identify Consensa's code (only its version, 0.1.0)" in \
        _repeat_note(run / "config.yaml", manifest)


def test_a_byte_identical_copy_of_a_transcript_is_named_in_a_note(tmp_path, capsys):
    """T10.txt copied to T11.txt counted one participant twice without a word. Both
    are still read (the copy may be on purpose); the summary warns, and the manifest
    and the report's notes name the two files."""
    import html
    import shutil

    import yaml

    from pipeline.cli import main
    from tests.study import study_config, write_study

    folder = write_study(tmp_path / "study")
    shutil.copyfile(folder / "case03.txt", folder / "case07.txt")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(study_config(folder)))
    assert main(["run", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "run")]) == 0
    said = " ".join(capsys.readouterr().out.split())
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["counts"]["cases"] == 7                         # neither was dropped
    notes = [n for n in manifest["skipped"] if "byte-identical files" in n["reason"]]
    assert len(notes) == 1 and notes[0]["kept"] is True
    assert notes[0]["what"] == f"{folder / 'case03.txt'}, {folder / 'case07.txt'}"
    assert "'case03', 'case07'" in notes[0]["reason"]
    assert "warning: byte-identical files" in said and "case03.txt, case07.txt hold the same" in said
    report = html.unescape((tmp_path / "run" / "report.html").read_text())
    assert "byte-identical files" in report and "case07.txt" in report
    # distinct transcripts give no such note
    capsys.readouterr()
    (folder / "case07.txt").unlink()
    assert main(["run", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "run2")]) == 0
    assert "byte-identical" not in (tmp_path / "run2" / "manifest.json").read_text()
