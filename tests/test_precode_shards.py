"""Pre-coding in shards (pipeline/shards.py): the same codes as in one process, a
stopped job resumed where it stopped, and what cannot be sharded refused."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

import pipeline.precode as precode_mod
from pipeline.cli import main
from tests.refi_schema import schema_errors
from tests.review_helpers import agree_and_apply
from tests.study import study_config, write_study

MODEL = {"name": "consensa.SentenceTransformer.v1"}     # float32: the same vector in any batch


@pytest.fixture(scope="module")
def codebook(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    study = write_study(root / "study")
    cfg = study_config(study, embed=MODEL)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["run", str(path), "--out", str(root / "run")]) == 0
    return agree_and_apply(root / "run")


def _codes(out: Path) -> pd.DataFrame:
    seg = pd.read_parquet(out / "segments.parquet")
    return seg.set_index("segment_id")[["status", "category_id"]].sort_index()


@pytest.mark.slow
def _stopped_before_output(monkeypatch, *args, out: Path, **kwargs) -> None:
    """``precode(*args, out=out, **kwargs)`` stopped once its shards are done, just
    before the output folder is moved into place; ``os.replace`` is itself again after."""
    real = precode_mod.os.replace

    def stop(src, dst):
        if Path(dst) == out:
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(precode_mod.os, "replace", stop)
    try:
        with pytest.raises(KeyboardInterrupt):
            precode_mod.precode(*args, out=out, **kwargs)
    finally:
        monkeypatch.setattr(precode_mod.os, "replace", real)


def test_shards_code_as_one_process_does_and_a_stopped_job_goes_on(codebook, tmp_path,
                                                                   monkeypatch, capsys):
    new = write_study(tmp_path / "new", n_cases=5)
    one = tmp_path / "one"
    assert main(["precode", str(codebook), "--transcripts", str(new), "--out", str(one)]) == 0
    sharded = tmp_path / "sharded"
    # the job stops after its shards are done, before the output is written
    _stopped_before_output(monkeypatch, codebook, new, out=sharded, engine="local", shard_size=2)
    assert not sharded.exists()
    parts = sorted((sharded.parent / ".sharded.shards" / "parts").glob("part=*.parquet"))
    assert len(parts) == 3                                  # 5 files in shards of 2
    capsys.readouterr()
    assert main(["precode", str(codebook), "--transcripts", str(new), "--out", str(sharded),
                 "--engine", "local", "--shard-size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "shards: 3 on local (0 run now, 3 finished by an earlier job)" in printed
    shards = json.loads((sharded / "manifest.json").read_text())["shards"]
    assert shards["computed"] == 0 and shards["skipped"] == 3 and not shards["failed"]
    assert not (sharded.parent / ".sharded.shards").exists()
    got, want = _codes(sharded), _codes(one)
    assert list(got.index) == list(want.index)              # every segment once, none lost
    assert (got["category_id"] == want["category_id"]).mean() >= 0.95


def test_the_manifest_names_the_kernels_the_workers_computed_with(codebook, tmp_path):
    """The shards' workers embed and code the new segments: the manifest said of
    PyTorch only that this process had not loaded it, as if no vector had been
    computed with it, while the workers had computed every one."""
    from pipeline.run import kernels

    new = write_study(tmp_path / "new", n_cases=3)
    out = tmp_path / "sharded"
    assert main(["precode", str(codebook), "--transcripts", str(new), "--out", str(out),
                 "--engine", "local", "--shard-size", "2"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    workers = m["kernels"]["workers"]
    assert sum(w["shards"] for w in workers) == 2 == m["shards"]["computed"]
    here = kernels()
    for worker in workers:
        assert worker["machine"] == here["machine"] and worker["numpy"]
        # the embedder computed with PyTorch there: its CPU capability, not "not loaded"
        assert worker["torch"] == str(__import__("torch").backends.cpu.get_cpu_capability())
    assert "not loaded" not in m["kernels"]["torch"] or "workers" in m["kernels"]["torch"]


def _as_one_table(folder: Path, table: Path) -> Path:
    """The interviews of ``folder`` as one transcript table (case_id, speaker, text,
    turn_index), with a last case that gives one turn number twice: ingest leaves it out."""
    from pipeline.stages.ingest import IngestConfig, ingest

    turns = ingest(IngestConfig(paths=[folder])).turns
    frame = turns[["case_id", "speaker", "text", "turn_index"]].astype(str)
    bad = pd.DataFrame([["zz-bad", "Therapist", "Some words.", "1"],
                        ["zz-bad", "Client", "Other words.", "1"]], columns=frame.columns)
    table.parent.mkdir(parents=True, exist_ok=True)
    pd.concat([frame, bad]).to_csv(table, index=False)
    return table


def test_a_table_of_many_cases_is_cut_into_parts_each_coded_once(codebook, tmp_path,
                                                                 monkeypatch, capsys):
    table = _as_one_table(write_study(tmp_path / "txt", n_cases=5), tmp_path / "new" / "all.csv")
    one = tmp_path / "one"
    assert main(["precode", str(codebook), "--transcripts", str(table.parent), "--out",
                 str(one)]) == 0
    sharded = tmp_path / "sharded"
    _stopped_before_output(monkeypatch, codebook, table.parent, out=sharded, engine="local",
                           shard_size=2)
    ledger = sharded.parent / ".sharded.shards" / "parts" / "_done.jsonl"
    done = [json.loads(line) for line in ledger.read_text().splitlines()]
    # one file of 5 cases, in parts of 2: cases 1-2, 3-4 and 5, one shard each
    assert sorted(e["files"][0]["path"].rpartition("#")[2] for e in done) == [
        "cases=1-2", "cases=3-4", "cases=5-5"]
    capsys.readouterr()
    assert main(["precode", str(codebook), "--transcripts", str(table.parent), "--out",
                 str(sharded), "--engine", "local", "--shard-size", "2"]) == 0
    assert "shards: 3 on local (0 run now, 3 finished by an earlier job)" in capsys.readouterr().out
    got, want = _codes(sharded), _codes(one)
    assert list(got.index) == list(want.index) and got.index.is_unique
    assert (got["category_id"] == want["category_id"]).mean() >= 0.95
    assert sorted(pd.read_parquet(sharded / "segments.parquet")["case_id"].unique()) == [
        f"case{i:02d}" for i in range(1, 6)]
    # what the file left out is named once, as one process names it, not once per part
    notes = {name: [n for n in json.loads((out / "manifest.json").read_text())["skipped"]
                    if "zz-bad" in n["what"] + n["reason"]] for name, out in
             (("one", one), ("sharded", sharded))}
    assert len(notes["one"]) == 1 and notes["sharded"] == notes["one"]


def test_a_qda_project_of_many_interviews_is_cut_into_parts(codebook, tmp_path):
    project = tmp_path / "new" / "study.qdpx"
    project.parent.mkdir()
    assert main(["export", "qdpx", str(codebook.parent.parent), "--out", str(project)]) == 0
    outs = {}
    for name, extra in (("one", []), ("sharded", ["--engine", "local", "--shard-size", "4"])):
        outs[name] = tmp_path / name
        assert main(["precode", str(codebook), "--transcripts", str(project.parent),
                     "--out", str(outs[name]), *extra]) == 0
    shards = json.loads((outs["sharded"] / "manifest.json").read_text())["shards"]
    assert shards["computed"] == 2                      # 6 interviews: cases 1-4 and 5-6
    got, want = _codes(outs["sharded"]), _codes(outs["one"])
    assert list(got.index) == list(want.index) and len(got) > 30
    assert (got["category_id"] == want["category_id"]).mean() >= 0.95


@pytest.mark.slow
def test_shards_run_on_a_dask_local_cluster_the_cluster_file_describes(codebook, tmp_path):
    new = write_study(tmp_path / "new", n_cases=4)
    one, dask = tmp_path / "one", tmp_path / "dask"
    cluster = tmp_path / "engine.yaml"
    cluster.write_text("engine:\n  kind: localcluster\n  n_workers: 2\n", encoding="utf-8")
    assert main(["precode", str(codebook), "--transcripts", str(new), "--out", str(one)]) == 0
    assert main(["precode", str(codebook), "--transcripts", str(new), "--out", str(dask),
                 "--engine", "dask", "--shard-size", "2", "--cluster", str(cluster)]) == 0
    m = json.loads((dask / "manifest.json").read_text())
    assert m["shards"]["engine"].startswith("dask") and m["shards"]["computed"] == 2
    # the workers' own processes embedded with PyTorch, and say so
    workers = m["kernels"]["workers"]
    assert sum(w["shards"] for w in workers) == 2
    assert all(not w["torch"].startswith("not loaded") for w in workers)
    got, want = _codes(dask), _codes(one)
    assert list(got.index) == list(want.index)
    assert (got["category_id"] == want["category_id"]).mean() >= 0.95


SECRETS = ("Mara", "Reyes", "7946")


def _holding(folder: Path, words) -> list[Path]:
    """The files under ``folder`` that hold any of ``words``: parquet files read as rows,
    workbooks unzipped, every other file as its bytes."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            text = pd.read_parquet(path).to_csv()
        elif path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as z:
                text = " ".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())
        else:
            text = path.read_bytes().decode("utf-8", "replace")
        if any(w in text for w in words):
            found.append(path)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["local", "dask"])
def test_shards_de_identify_with_the_names_of_every_shard(codebook, tmp_path, monkeypatch, engine):
    new = write_study(tmp_path / "new", n_cases=3)
    # the participant of case01 is labelled by name; case03, another shard, mentions her
    a, b = new / "case01.txt", new / "case03.txt"
    a.write_text(a.read_text(encoding="utf-8").replace("Therapist:", "Mara Reyes:"), encoding="utf-8")
    b.write_text(b.read_text(encoding="utf-8") + "\nTherapist: The training with Mara Reyes was "
                 "good, and I rang her on 020 7946 0958 after.\n", encoding="utf-8")
    run_cfg = yaml.safe_load((codebook.parent.parent / "config.yaml").read_text())
    run_cfg["deidentify"] = {"enabled": True, "ner": False}
    run_cfg["cache_dir"] = str(tmp_path / "cache")
    team = tmp_path / "team.yaml"
    team.write_text(yaml.safe_dump(run_cfg), encoding="utf-8")
    one = tmp_path / "one"
    precode_mod.precode(codebook, new, team, out=one)
    sharded = tmp_path / "sharded"
    cluster = {"kind": "localcluster", "n_workers": 2, "processes": False} if engine == "dask" else None
    # stopped after its shards are done: what they keep beside their parts is de-identified
    _stopped_before_output(monkeypatch, codebook, new, team, out=sharded, engine=engine,
                           shard_size=1, cluster=cluster)
    work = tmp_path / ".sharded.shards"
    assert len(list((work / "parts").glob("_extra=*"))) == 3
    assert _holding(work, SECRETS) == []
    precode_mod.precode(codebook, new, team, out=sharded, engine=engine, shard_size=1,
                        cluster=cluster)
    m = json.loads((sharded / "manifest.json").read_text())
    assert m["shards"]["skipped"] == 3 and m["shards"]["computed"] == 0
    assert m["shards"]["engine"].startswith(engine)
    assert _holding(sharded, SECRETS) == [] and not work.exists()
    seg = pd.read_parquet(sharded / "segments.parquet")
    mention = seg[(seg["case_id"] == "case03") & seg["text"].str.contains("rang")]
    assert len(mention) == 1 and "The training with PERSON_" in mention["text"].iloc[0]
    # as in one process: the same counts, placeholders, texts and offsets, and the same
    # sha256 of each kept text and of the original file it came from
    assert m["deidentify"] == json.loads((one / "manifest.json").read_text())["deidentify"]
    assert m["inputs"] == json.loads((one / "manifest.json").read_text())["inputs"]
    assert {i["original_sha256"] for i in m["inputs"]} == \
        {hashlib.sha256(f.read_bytes()).hexdigest() for f in new.glob("*.txt")}
    assert m["deidentify"]["replacements"]["PERSON"] >= 1 and m["deidentify"]["replacements"]["PHONE"] == 1
    want = pd.read_parquet(one / "segments.parquet")
    cols = ["segment_id", "speaker", "text", "start_char", "end_char", "source_file"]
    pd.testing.assert_frame_equal(seg[cols], want[cols])
    texts = {p.name: p.read_text(encoding="utf-8") for p in (sharded / "sources").glob("*.txt")}
    assert texts == {p.name: p.read_text(encoding="utf-8") for p in (one / "sources").glob("*.txt")}
    for row in seg.itertuples():
        assert texts[Path(row.source_file).name][row.start_char:row.end_char] == row.text
    # its project for QDA software holds the de-identified texts, and only those
    assert main(["export", "qdpx", str(sharded)]) == 0
    assert schema_errors(sharded / "export" / "precoded.qdpx") == []
    assert _holding(sharded, SECRETS) == []


def test_a_sharded_precoding_needs_out_and_a_shared_embedding_space(tmp_path, study_run, capsys):
    run = Path(shutil.copytree(study_run(), tmp_path / "run"))      # TF-IDF embeddings
    cb = agree_and_apply(run)
    new = write_study(tmp_path / "new", n_cases=2)
    assert main(["precode", str(cb), "--transcripts", str(new), "--engine", "local"]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["precode", str(cb), "--transcripts", str(new), "--engine", "local",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "embed.name" in err and "shards would not share one space" in err
    assert main(["precode", str(cb), "--transcripts", str(new), "--scheduler",
                 "tcp://127.0.0.1:1", "--out", str(tmp_path / "o")]) == 2
    assert "--engine dask" in capsys.readouterr().err
    # a cluster file with a fault is refused before anything runs, naming the key
    bad = tmp_path / "engine.yaml"
    bad.write_text("engine:\n  kind: slurm\n  cores: 0\n  memory: 16GB\n  walltime: '02:00:00'\n",
                   encoding="utf-8")
    assert main(["precode", str(cb), "--transcripts", str(new), "--engine", "dask",
                 "--cluster", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "engine.cores" in err and "engine.yaml" in err and "Traceback" not in err
    assert not (tmp_path / ".o.shards").exists()


def test_what_is_left_out_is_named_the_same_with_or_without_shards(codebook, tmp_path, capsys):
    new = write_study(tmp_path / "new", n_cases=3)
    # a second file of case02 (its copy is left out, never merged) and an empty file;
    # with shards of one file, each lands in a shard of its own
    shutil.copy(new / "case02.txt", new / "case02.md")
    (new / "zz-empty.txt").write_text("", encoding="utf-8")
    outs = {}
    for name, extra in (("one", []), ("sharded", ["--engine", "local", "--shard-size", "1"])):
        capsys.readouterr()
        outs[name] = tmp_path / name
        assert main(["precode", str(codebook), "--transcripts", str(new),
                     "--out", str(outs[name]), *extra]) == 0
        printed = capsys.readouterr().out
        notes = json.loads((outs[name] / "manifest.json").read_text())["skipped"]
        left = sum(n.get("count", 1) for n in notes)      # a note of 3 turns counts 3
        assert f"left out: {left} item(s), listed in manifest.json" in printed, name
        files = [n for n in notes if n["stage"] == "ingest"]
        assert sorted(Path(n["what"]).name for n in files) == ["case02.txt", "zz-empty.txt"]
        outs[name, "segment"] = [n for n in notes if n["stage"] == "segment"]
        assert any("case 'case02' is also in" in n["reason"] for n in notes), name
        seg = pd.read_parquet(outs[name] / "segments.parquet")
        assert seg["segment_id"].is_unique, name
    assert list(_codes(outs["sharded"]).index) == list(_codes(outs["one"]).index)
    # one note per reason, its count summed over the shards (a shard also counts the
    # backchannel turns of the copy that is left out afterwards)
    sharded, one = outs["sharded", "segment"], outs["one", "segment"]
    assert [n["reason"] for n in sharded] == [n["reason"] for n in one]
    assert all(int(a["what"].split()[0]) >= int(b["what"].split()[0])
               for a, b in zip(sharded, one, strict=True))
    # and each names the turns it counts (case:turn), those of every shard

    def places(note):
        return {x for x in note["what"].partition(": ")[2].removesuffix(" ...").split(", ") if x}

    assert all(places(b) and places(b) <= places(a) for a, b in zip(sharded, one, strict=True))
    # a shard whose only file cannot be read is named, not a failed job
    (tmp_path / "bad").mkdir()
    shutil.copy(new / "case01.txt", tmp_path / "bad" / "case01.txt")
    (tmp_path / "bad" / "zz-binary.txt").write_bytes(b"\x00\x01\x02" * 100)
    assert main(["precode", str(codebook), "--transcripts", str(tmp_path / "bad"), "--out",
                 str(tmp_path / "b"), "--engine", "local", "--shard-size", "1"]) == 0
    notes = json.loads((tmp_path / "b" / "manifest.json").read_text())["skipped"]
    assert [Path(n["what"]).name for n in notes if n["stage"] == "ingest"] == ["zz-binary.txt"]


def test_a_segments_code_does_not_depend_on_the_other_files_of_its_batch(codebook, tmp_path):
    """With the int8 embedder of the run's default, a text's vector depends on the texts
    embedded beside it; pre-coding embeds in float32 so a file added to the batch, or
    another shard size, changes no other segment's confidence."""
    whole = write_study(tmp_path / "whole", n_cases=3)
    part = tmp_path / "part"
    part.mkdir()
    for name in ("case01.txt", "case02.txt"):
        shutil.copy(whole / name, part / name)
    config = tmp_path / "int8.yaml"
    config.write_text(yaml.safe_dump(study_config(
        whole, embed={"name": "consensa.SentenceTransformer.v2"})), encoding="utf-8")
    got = {}
    for name, folder, extra in (("whole", whole, []), ("part", part, []),
                                ("shards", whole, ["--engine", "local", "--shard-size", "1"])):
        out = tmp_path / f"out-{name}"
        assert main(["precode", str(codebook), "--transcripts", str(folder), "--config",
                     str(config), "--out", str(out), *extra]) == 0
        seg = pd.read_parquet(out / "segments.parquet").set_index("segment_id")
        got[name] = seg.loc[seg["case_id"].isin(["case01", "case02"]), "confidence"].sort_index()
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["embed_params"]["quantize"] == "none" and "int8" in manifest["embed_note"]
    assert len(got["part"]) > 10
    for name in ("whole", "shards"):
        pd.testing.assert_series_equal(got[name], got["part"], atol=1e-5, check_exact=False)


def test_a_note_on_text_that_was_read_is_not_called_left_out(codebook, tmp_path, capsys):
    """Speakers labelled by name alone are read, the one who asks the questions taken
    as the interviewer: the run notes it and loses nothing. precode printed such notes
    as "left out", so a team went looking for text that had in fact been coded."""
    new = write_study(tmp_path / "new", n_cases=2)
    first = new / "case01.txt"
    text = first.read_text(encoding="utf-8")
    first.write_text(text.replace("Interviewer:", "Mara:").replace("Therapist:", "Nia:"),
                     encoding="utf-8")
    capsys.readouterr()
    assert main(["precode", str(codebook), "--transcripts", str(new),
                 "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "case01.txt" in line]
    assert said and all("note on" in line and "left out" not in line for line in said), err
    seg = pd.read_parquet(tmp_path / "o" / "segments.parquet")
    assert (seg["case_id"] == "case01").sum() == (seg["case_id"] == "case02").sum()
