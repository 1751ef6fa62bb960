"""A review import grows linearly with the workbook's rows: the run's id lookups are
built once per import, not once per row (that made 75,000 rows take over an hour)."""

from __future__ import annotations

import pandas as pd

from pipeline.review import commands, model
from pipeline.review.model import Decision, load_run, segment_item, theme_item
from pipeline.review.signing import ensure_key
from pipeline.review.store import ReviewStore
from pipeline.review.workbook import build_workbook
from tests.review_helpers import synthetic_run

BUILDERS = ("_segment_id_set", "_segments_by_theme", "_theme_id_set", "_domain_id_set")


def _count_builds(monkeypatch) -> dict[str, int]:
    calls = dict.fromkeys(BUILDERS, 0)
    for name in BUILDERS:
        real = getattr(model, name)

        def spy(table, name=name, real=real):
            calls[name] += 1
            return real(table)
        monkeypatch.setattr(model, name, spy)
    return calls


def test_import_builds_each_lookup_a_constant_number_of_times(tmp_path, monkeypatch):
    run_folder = synthetic_run(tmp_path / "run", 1300)
    commands.export(run_folder, ["ana", "ben"])
    run = load_run(run_folder)
    key = ensure_key(run_folder)
    assigned = run.segments[run.segments["theme"] >= 0]
    theme0 = sorted(run.segments_of(0))
    builds, recorded = {}, 0
    for n in (10, 1000):
        # n segment moves, plus a split and a rename so every lookup is asked
        prefill = {segment_item(s): Decision(segment_item(s), "move", target=str((t + 1) % 5))
                   for s, t in zip(assigned["segment_id"][:n], assigned["theme"][:n])}
        prefill[theme_item(0)] = Decision(theme_item(0), "split", new_name="part",
                                          segments=tuple(theme0[:3]))
        prefill[theme_item(1)] = Decision(theme_item(1), "rename", new_name="other", domain="0")
        path = tmp_path / f"ana-{n}.xlsx"
        path.write_bytes(build_workbook(run, "ana", "judge", 1, prefill, key=key))
        calls = _count_builds(monkeypatch)
        message = commands.import_workbooks(run_folder, [path])
        # the rows of the workbook before, recorded already, are not recorded again
        assert message.startswith(f"imported {n + 2 - recorded} decision"), message
        recorded = n + 2
        builds[n] = dict(calls)
        monkeypatch.undo()
    assert builds[10] == builds[1000], builds
    assert all(builds[1000][name] >= 1 for name in BUILDERS), builds  # the spies were used
    with ReviewStore(load_run(run_folder)) as store:
        pos = store.positions()
    assert sum(1 for p in pos.values() if "ana" in p) == 1002


def test_lookups_follow_a_replaced_table(tmp_path):
    """A lookup is kept per table object: a RunItems given a new table answers from it."""
    run = load_run(synthetic_run(tmp_path / "run", 30))
    first = run.segments["segment_id"].iloc[0]
    assert first in run.segment_ids and run.segment_ids is run.segment_ids
    assert run.segments_of(0) == set(run.segments.loc[run.segments["theme"] == 0, "segment_id"])
    run.segments = pd.concat([run.segments.iloc[1:],
                              run.segments.iloc[[0]].assign(segment_id="new:1:0", theme=1)])
    assert first not in run.segment_ids and "new:1:0" in run.segment_ids
    assert "new:1:0" in run.segments_of(1) and first not in run.segments_of(0)
    assert run.segments_of(99) == frozenset()
