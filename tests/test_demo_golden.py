"""The demo run, compared with a stored run of it.

``tests/fixtures/demo_golden/`` holds what ``consensa run configs/demo.yaml``
produced before the package was reorganised (with ``analysis: consensa.Themes.v1``,
the whole-corpus themes, which configs name to keep that meaning): every segment's place in its
transcript and its theme and domain, the themes' names, keywords, sizes and
frequency labels, and the CQR table. A refactor must reproduce it exactly; a
change of behaviour must change these files in the same commit, on purpose.
"""

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "fixtures" / "demo_golden"


@pytest.mark.slow
def test_demo_run_reproduces_the_stored_run(tmp_path):
    out = tmp_path / "demo"
    assert main(["run", str(ROOT / "configs" / "demo.yaml"), "--out", str(out),
                 "--set", "analysis=consensa.Themes.v1"]) == 0

    want = pd.read_csv(GOLDEN / "segments.csv", keep_default_na=False)
    got = pd.read_parquet(out / "segments.parquet")[list(want.columns)]
    got = got.astype({c: want[c].dtype for c in want.columns})
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False)

    for name in ("themes.csv", "cqr_table.csv"):
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
