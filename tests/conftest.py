"""Fixtures shared by the test modules: the study run, once per session, and copies of it.

The helpers that are plain functions (the invented study, workbook filling, code
tables) are imported from the ``tests`` package: ``from tests.study import ...``.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.compare_helpers import VARIANTS, make_study_run


@pytest.fixture(scope="session")
def study_run(tmp_path_factory) -> Callable[..., Path]:
    """``study_run(variant="plain")``: the folder of the study run, made once per session.

    Its transcripts are beside it, in ``study-VARIANT/``. Tests read it; a test that
    writes into a run works on a copy (``review_run``, or its own ``shutil.copytree``).
    """
    root = tmp_path_factory.mktemp("study-runs")
    runs: dict[str, Path] = {}

    def get(variant: str = "plain") -> Path:
        if variant not in VARIANTS:
            raise ValueError(f"unknown study variant {variant!r}; one of {VARIANTS}")
        if variant not in runs:
            runs[variant] = make_study_run(root, variant)
        return runs[variant]

    return get


@pytest.fixture
def review_run(study_run, tmp_path) -> Path:
    """A fresh copy of the study run, at ``tmp_path/run``, for a test that reviews it."""
    return Path(shutil.copytree(study_run(), tmp_path / "run"))


@pytest.fixture(scope="session")
def applied_demo(tmp_path_factory) -> Path:
    """The demo run (configs/demo.yaml, the real model), every item accepted and applied,
    made once per session: its review/codebook.yaml is the demo's agreed codebook. Tests
    write only beside it (exports, pre-coding output), never into its review.

    The stance splits are proposed without the check of their words
    (``crossanalysis.stance_valence_margin: null``): by default the demo proposes no
    stance subcategory (both splits the embedding finds fail the check), and the review
    of stance subcategories, their exports and pre-coding with them need some."""
    from pipeline.cli import main
    from tests.review_helpers import agree_and_apply

    run = tmp_path_factory.mktemp("demo") / "run"
    root = Path(__file__).resolve().parent.parent
    assert main(["run", str(root / "configs" / "demo.yaml"), "--out", str(run),
                 "--set", "crossanalysis.stance_valence_margin=null"]) == 0
    agree_and_apply(run)
    return run


def pytest_collection_modifyitems(session, config, items):
    """Test files with more slow tests first, each file's tests in their own order.

    Why: ``make test`` hands whole files to its worker processes (``--dist
    loadfile``) in collection order. In alphabetical order a long file collected
    late leaves the other worker idle at the end; started first, the long files
    run beside the many short ones. The order is the same in every worker, as
    pytest-xdist requires."""
    def file(item) -> str:
        return item.nodeid.split("::")[0]

    slow = Counter(file(i) for i in items if i.get_closest_marker("slow") is not None)
    first = {f: n for n, f in enumerate(dict.fromkeys(map(file, items)))}
    items.sort(key=lambda i: (-slow[file(i)], first[file(i)]))
