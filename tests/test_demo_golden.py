"""The demo run, compared with stored runs of it.

``tests/fixtures/demo_golden/`` holds what ``consensa run configs/demo.yaml``
produced with ``analysis: consensa.Themes.v1`` (the whole-corpus themes, which
configs name to keep that meaning): every segment's place in its transcript and
its theme and domain, the themes' names, keywords, sizes and frequency labels,
and the CQR table. ``demo_golden/cqr/`` holds the demo as it is run by default
(``consensa.CQR.v1``): the inferred protocol, the domains, the categories with
their names, frequency labels and flags, the core ideas per case and domain, and
the CQR table as the README prints it. A refactor must reproduce both exactly; a
change of behaviour must change these files in the same commit, on purpose
(``python tests/test_demo_golden.py --write`` writes them from the code as it is).

The runs are given the vectors stored beside them (``vectors.npz``, by each
text's SHA-256: the segments, the concepts, and what the CQR analysis embeds, its
protocol questions, frame anchors and candidate names), not the ones this
machine's embedder makes: the default
int8 embedder's kernels differ from one CPU to another (an AVX2 machine and an
AVX-512 one give slightly different vectors), and slightly different vectors
give different themes. What is compared is everything Consensa does with the
vectors.

numpy, too, picks some of its kernels by CPU when it is imported, and its AVX-512
ones round some results differently from its AVX2 ones: on an AVX-512 machine the
same stored vectors moved 5 of the 439 segments to another theme, and the themes'
numbers with them. So the stored runs are made and compared in a separate Python
process with numpy's AVX-512 kernels turned off (``NPY_DISABLE_CPU_FEATURES``,
:data:`NUMPY_KERNELS`): an AVX-512 machine then gives what an AVX2 one gives (the
themes run was checked against an emulated AVX2 CPU, ``qemu-x86_64 -cpu EPYC-Rome``).
The BLAS that numpy ships (OpenBLAS) picks its kernels by CPU as well, apart from
numpy's own: OpenBLAS 0.3.31 runs its AVX-512 ("SkylakeX") kernels on an AMD EPYC
with AVX-512, and their sums, rounded otherwise, chose another sentence for one
illustrative core idea of the demo. The same process pins them to the AVX2 ones
(``OPENBLAS_CORETYPE=Haswell``) on a CPU that has AVX2.
"""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "fixtures" / "demo_golden"
TABLES = ("themes.csv", "cqr_table.csv")
GOLDEN_CQR = GOLDEN / "cqr"
#: the CQR run's tables (compared as read back) and files (compared byte for byte)
CQR_TABLES = ("domains.csv", "categories.csv", "core_ideas.csv", "cqr_table.csv")
CQR_FILES = ("cqr_table.md", "protocol.yaml")
#: the columns of segments.parquet that place a segment in the CQR run
CQR_SEGMENT_COLUMNS = ("segment_id", "case_id", "theme", "theme_name", "domain_id",
                       "domain_name", "reassigned")
#: the environment of the stored runs (the module docstring): numpy's AVX-512 kernel
#: groups off, on x86-64 only (elsewhere the names mean nothing to numpy). Turning
#: off a group the CPU lacks is allowed, so an AVX2 machine runs as it always does.
NUMPY_KERNELS = ({"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
                 if platform.machine().lower() in ("x86_64", "amd64") else {})


def _has_avx2() -> bool:
    """numpy's SIMD groups as the run's manifest records them: X86_V3 (numpy 2) or
    AVX2 (numpy 1.26) is there on a CPU with AVX2."""
    from pipeline.run import kernels

    return bool({"X86_V3", "AVX2"} & set(kernels()["numpy"]))


#: OpenBLAS's kernels, pinned to its AVX2 ones where the CPU has AVX2 (a CPU without
#: it would stop on the first AVX2 instruction; it runs its own kernels, as before)
if NUMPY_KERNELS and _has_avx2():
    NUMPY_KERNELS["OPENBLAS_CORETYPE"] = "Haswell"


def _stored_embedding(monkeypatch) -> None:
    """Make the run embed through the stored vectors (see the module docstring); a
    text without one fails the test, naming it: the demo's segments have changed."""
    import pipeline.run
    from pipeline.cache import text_keys

    stored = np.load(GOLDEN / "vectors.npz")
    by_key = dict(zip(stored["sha256"].tolist(), stored["vectors"].astype(np.float32)))

    def embed_texts(embedder, texts, cache, scale=None):
        keys = text_keys(list(texts))
        missing = [t for t, k in zip(texts, keys) if k not in by_key]
        assert not missing, (f"{len(missing)} demo text(s) have no stored vector, e.g. "
                             f"{missing[0]!r}: the segmentation or the texts the run embeds "
                             "changed (write the fixture again if that was meant)")
        return np.stack([by_key[k] for k in keys]), {"embedded": 0, "from_cache": len(set(keys))}

    monkeypatch.setattr(pipeline.run, "embed_texts", embed_texts)


def _run(out: Path, analysis: str = "consensa.Themes.v1", *, cache: Path) -> None:
    """The demo run into ``out``, with its own cache folder: every step runs (none is
    read from an earlier run's cache), as on a new machine."""
    from pipeline.cli import main

    assert main(["run", str(ROOT / "configs" / "demo.yaml"), "--out", str(out),
                 "--set", f"analysis={analysis}", "--set", f"cache_dir={cache}"]) == 0


def _cqr_run(out: Path, *, cache: Path) -> None:
    """The demo as configs/demo.yaml runs it (the CQR analysis)."""
    _run(out, "consensa.CQR.v1", cache=cache)


def _stored_run(out: Path, analysis: str, *, cache: Path) -> None:
    """The demo run from the stored vectors, in a new Python process with
    :data:`NUMPY_KERNELS` (numpy reads it only when it is imported)."""
    proc = subprocess.run(
        [sys.executable, __file__, "--run", str(out), analysis, str(cache)],
        env={**os.environ, **NUMPY_KERNELS}, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"the stored {analysis} run failed:\n{proc.stderr[-4000:]}"


def _assert_same_segments(out: Path, golden: Path) -> None:
    """The run's segments.parquet holds the stored segments.csv, in the stored columns."""
    want = pd.read_csv(golden / "segments.csv", keep_default_na=False)
    got = pd.read_parquet(out / "segments.parquet")[list(want.columns)]
    got = got.astype({c: want[c].dtype for c in want.columns})
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False)


@pytest.mark.slow
def test_demo_run_reproduces_the_stored_run(tmp_path):
    out = tmp_path / "demo"
    _stored_run(out, "consensa.Themes.v1", cache=tmp_path / "cache")

    _assert_same_segments(out, GOLDEN)

    for name in TABLES:
        want = pd.read_csv(GOLDEN / name, keep_default_na=False)
        got = pd.read_csv(out / name, keep_default_na=False)[list(want.columns)]
        pd.testing.assert_frame_equal(got, want, check_dtype=False, obj=name)

    counts = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["counts"]
    want_counts = json.loads((GOLDEN / "counts.json").read_text(encoding="utf-8"))["counts"]
    for key in ("embedded", "embeddings_from_cache"):      # depend on the cache, not the run
        counts.pop(key, None)
        want_counts.pop(key, None)
    # counts added since the stored run (new checks of the input) must be zero here
    assert {k: counts[k] for k in want_counts} == want_counts
    assert not any(counts[k] for k in set(counts) - set(want_counts) - {'embedded', 'embeddings_from_cache'})


@pytest.mark.slow
def test_demo_cqr_run_reproduces_the_stored_run(tmp_path):
    out = tmp_path / "demo"
    _stored_run(out, "consensa.CQR.v1", cache=tmp_path / "cache")

    _assert_same_segments(out, GOLDEN_CQR)
    for name in CQR_TABLES:
        want = pd.read_csv(GOLDEN_CQR / name, keep_default_na=False)
        got = pd.read_csv(out / name, keep_default_na=False)
        assert list(got.columns) == list(want.columns), name
        pd.testing.assert_frame_equal(got, want, check_dtype=False, obj=name)
    for name in CQR_FILES:
        assert (out / name).read_text(encoding="utf-8") == \
            (GOLDEN_CQR / name).read_text(encoding="utf-8"), name
    # and every count in its tables is a count of rows of its segments table
    from tests.test_analysis import assert_counts_trace_to_segments
    assert_counts_trace_to_segments(out)


def _readme_block(after: str) -> list[str]:
    """The lines of the README's block that starts with the line ``after``."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after))
    end = next((i for i in range(start, len(lines)) if lines[i].strip() in ("", "```")),
               len(lines))
    return lines[start:end]


def test_the_readme_walkthrough_shows_the_stored_cqr_run():
    """The README's walkthrough prints the demo's summary and an excerpt of its CQR
    table: every number and row there is the stored run's, so a reader who runs the
    demo can check it (they were a run of months before, and matched no run since)."""
    seg = pd.read_csv(GOLDEN_CQR / "segments.csv", keep_default_na=False)
    domains = pd.read_csv(GOLDEN_CQR / "domains.csv", keep_default_na=False)
    cats = pd.read_csv(GOLDEN_CQR / "categories.csv", keep_default_na=False)
    frame = seg["domain_id"].isin(domains.loc[domains["kind"] == "frame", "domain_id"])
    n = len(seg)
    unassigned = int(((seg["theme"] < 0) & ~frame).sum())
    reassigned = int(seg["reassigned"].astype(str).eq("True").sum())
    n_sub = len({int(p) for p in cats["parent_id"] if int(p) >= 0})
    summary = "\n".join(_readme_block("Consensa run 'demo-therapist-tears' finished in"))
    n_frame = int((domains["kind"] == "frame").sum())
    assert n_frame == 1
    # the summary says how many categories have subcategories, and how many hold the
    # cases that answered a domain's question "No", only when some do
    n_no = int(sum(p < 0 and "answered no" in str(f) for p, f in zip(cats["parent_id"], cats["flags"])))
    about = ([f"{n_sub} with subcategories"] if n_sub else []) + \
        ([f"{n_no} of 'no' answers"] if n_no else [])
    subs = f" ({'; '.join(about)})" if about else ""
    assert (f"cases: {seg['case_id'].nunique()}   segments: {n}   "
            f"domains: {len(domains) - n_frame} and the interview frame   "
            f"categories: {int((cats['kind'] == 'category').sum())}{subs}\n") in summary + "\n", \
        summary
    assert (f"in no category: {unassigned} ({unassigned / n:.1%})   reassigned outliers: "
            f"{reassigned} ({reassigned / n:.1%})   interview frame: {int(frame.sum())} "
            "(set apart)") in summary, summary

    stored = (GOLDEN_CQR / "cqr_table.md").read_text(encoding="utf-8").splitlines()
    domain_of, last = {}, ""
    for line in stored[2:]:
        cell = line.split(" | ", 1)[0].removeprefix("| ").strip()
        last = cell or last
        domain_of[line.split(" | ", 1)[1]] = last
    excerpt = _readme_block("| Domain | Category | Frequency | Cases |")
    assert excerpt[0] == stored[0] and len(excerpt) > 4
    for line in excerpt[2:]:
        cell, rest = line.split(" | ", 1)
        assert rest in domain_of, f"README row not in the stored CQR table: {line[:120]}"
        assert cell.removeprefix("| ").strip() in ("", domain_of[rest]), line[:120]


def _write_cqr(out: Path) -> None:
    GOLDEN_CQR.mkdir(parents=True, exist_ok=True)
    pd.read_parquet(out / "segments.parquet")[list(CQR_SEGMENT_COLUMNS)].to_csv(
        GOLDEN_CQR / "segments.csv", index=False)
    for name in CQR_TABLES + CQR_FILES:
        (GOLDEN_CQR / name).write_bytes((out / name).read_bytes())


def write_fixture() -> None:
    """Write the fixture from the code as it is. Run it only for a change of
    behaviour meant to be one.

    The two runs embed through the stored vectors where a text has one, so that a
    stored vector never changes, and through this machine's embedder where it has
    none, rounded to float16 as it is kept. Each run gets a new, empty cache: a step
    read from the cache embeds nothing, and the fixture must hold every text a run
    on a new machine embeds. Only the texts these runs embed are kept. The runs are
    then made again from the stored vectors alone, and their tables written. All of
    it runs with :data:`NUMPY_KERNELS` (``--write`` starts a process with it).
    """
    import tempfile

    import pipeline.run
    from pipeline.cache import text_keys

    old: dict[str, np.ndarray] = {}
    if (GOLDEN / "vectors.npz").is_file():
        stored = np.load(GOLDEN / "vectors.npz")
        old = dict(zip(stored["sha256"].tolist(), stored["vectors"]))
    made: dict[str, np.ndarray] = {}
    real = pipeline.run.embed_texts

    def recording(embedder, texts, cache, scale=None):
        keys = text_keys(list(texts))
        made.update({k: old[k] for k in keys if k in old})
        todo = sorted({k: t for k, t in zip(keys, texts) if k not in made}.items())
        if todo:
            vectors, _ = real(embedder, [t for _, t in todo], cache, scale)
            made.update({k: v.astype(np.float16) for (k, _), v in zip(todo, vectors)})
        return (np.stack([made[k] for k in keys]).astype(np.float32),
                {"embedded": len(todo), "from_cache": len(set(keys)) - len(todo)})

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mp = pytest.MonkeyPatch()
        try:
            mp.setattr(pipeline.run, "embed_texts", recording)
            _run(tmp / "embedded", cache=tmp / "cache-1")
            _cqr_run(tmp / "embedded-cqr", cache=tmp / "cache-2")
        finally:
            mp.undo()
        keys = sorted(made)
        GOLDEN.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(GOLDEN / "vectors.npz", sha256=np.array(keys),
                            vectors=np.stack([made[k] for k in keys]).astype(np.float16))
        mp = pytest.MonkeyPatch()
        try:
            _stored_embedding(mp)
            out = tmp / "stored"
            _run(out, cache=tmp / "cache-3")
            _cqr_run(tmp / "stored-cqr", cache=tmp / "cache-4")
        finally:
            mp.undo()
        want = pd.read_csv(GOLDEN / "segments.csv", keep_default_na=False, nrows=0)
        pd.read_parquet(out / "segments.parquet")[list(want.columns)].to_csv(
            GOLDEN / "segments.csv", index=False)
        for name in TABLES:
            cols = pd.read_csv(GOLDEN / name, keep_default_na=False, nrows=0).columns
            pd.read_csv(out / name, keep_default_na=False)[list(cols)].to_csv(GOLDEN / name, index=False)
        _write_cqr(tmp / "stored-cqr")
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        kept = json.loads((GOLDEN / "counts.json").read_text(encoding="utf-8"))["counts"]
        (GOLDEN / "counts.json").write_text(json.dumps(
            {"counts": {k: manifest["counts"][k] for k in kept}}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--run"] and len(sys.argv) == 5:      # _stored_run's process
        _stored_embedding(pytest.MonkeyPatch())
        _run(Path(sys.argv[2]), sys.argv[3], cache=Path(sys.argv[4]))
    elif sys.argv[1:] == ["--write"]:
        if any(os.environ.get(k) != v for k, v in NUMPY_KERNELS.items()):
            os.execve(sys.executable, [sys.executable, __file__, "--write"],
                      {**os.environ, **NUMPY_KERNELS})
        write_fixture()
    else:
        sys.exit("usage: python tests/test_demo_golden.py --write")
