"""The demo run, compared with a stored run of it.

``tests/fixtures/demo_golden/`` holds what ``consensa run configs/demo.yaml``
produced (with ``analysis: consensa.Themes.v1``, the whole-corpus themes, which
configs name to keep that meaning): every segment's place in its transcript and
its theme and domain, the themes' names, keywords, sizes and frequency labels,
and the CQR table. A refactor must reproduce it exactly; a change of behaviour
must change these files in the same commit, on purpose
(``python tests/test_demo_golden.py --write`` writes them from the code as it is).

The run is given the segments' vectors stored beside it (``vectors.npz``, by
each text's SHA-256), not the ones this machine's embedder makes: the default
int8 embedder's kernels differ from one CPU to another (an AVX2 machine and an
AVX-512 one give slightly different vectors), and slightly different vectors
give different themes. What is compared is everything Consensa does with the
vectors, which must not depend on the machine.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "fixtures" / "demo_golden"
TABLES = ("themes.csv", "cqr_table.csv")


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
        assert not missing, (f"{len(missing)} demo segment(s) have no stored vector, e.g. "
                             f"{missing[0]!r}: the segmentation changed (write the fixture again "
                             "if that was meant)")
        return np.stack([by_key[k] for k in keys]), {"embedded": 0, "from_cache": len(set(keys))}

    monkeypatch.setattr(pipeline.run, "embed_texts", embed_texts)


def _run(out: Path) -> None:
    from pipeline.cli import main

    assert main(["run", str(ROOT / "configs" / "demo.yaml"), "--out", str(out),
                 "--set", "analysis=consensa.Themes.v1"]) == 0


@pytest.mark.slow
def test_demo_run_reproduces_the_stored_run(tmp_path, monkeypatch):
    _stored_embedding(monkeypatch)
    out = tmp_path / "demo"
    _run(out)

    want = pd.read_csv(GOLDEN / "segments.csv", keep_default_na=False)
    got = pd.read_parquet(out / "segments.parquet")[list(want.columns)]
    got = got.astype({c: want[c].dtype for c in want.columns})
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False)

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


def write_fixture() -> None:
    """Write the fixture from the code as it is: the vectors this machine's embedder
    makes for every text the demo run embeds (its segments and its concepts; kept as
    float16, and the run made again from those), then that run's tables. Run it only
    for a change of behaviour meant to be one."""
    import tempfile

    import pipeline.run
    from pipeline.cache import text_keys

    made: dict[str, np.ndarray] = {}
    real = pipeline.run.embed_texts

    def recording(embedder, texts, cache, scale=None):
        vectors, counts = real(embedder, texts, cache, scale)
        made.update(zip(text_keys(list(texts)), vectors))
        return vectors, counts

    with tempfile.TemporaryDirectory() as tmp:
        mp = pytest.MonkeyPatch()
        try:
            mp.setattr(pipeline.run, "embed_texts", recording)
            _run(Path(tmp) / "embedded")
        finally:
            mp.undo()
        keys = sorted(made)
        GOLDEN.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(GOLDEN / "vectors.npz", sha256=np.array(keys),
                            vectors=np.stack([made[k] for k in keys]).astype(np.float16))
        mp = pytest.MonkeyPatch()
        try:
            _stored_embedding(mp)
            out = Path(tmp) / "stored"
            _run(out)
        finally:
            mp.undo()
        want = pd.read_csv(GOLDEN / "segments.csv", keep_default_na=False, nrows=0)
        pd.read_parquet(out / "segments.parquet")[list(want.columns)].to_csv(
            GOLDEN / "segments.csv", index=False)
        for name in TABLES:
            cols = pd.read_csv(GOLDEN / name, keep_default_na=False, nrows=0).columns
            pd.read_csv(out / name, keep_default_na=False)[list(cols)].to_csv(GOLDEN / name, index=False)
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        kept = json.loads((GOLDEN / "counts.json").read_text(encoding="utf-8"))["counts"]
        (GOLDEN / "counts.json").write_text(json.dumps(
            {"counts": {k: manifest["counts"][k] for k in kept}}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_demo_golden.py --write")
    write_fixture()
