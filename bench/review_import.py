"""Importing a large review workbook: time per 1,000 rows at two sizes.

    .venv/bin/python bench/review_import.py [--sizes 5000,75000] [--themes 40]

Each size builds its own synthetic run folder (segments, themes, domains; no
shared data), exports the review, writes one judge's workbook with a decision on
every assigned segment ("move to theme": the row kind a large review has most of)
and imports it with ``consensa review import``'s code path (building the workbook is
not timed). The import is timed
in phases: reading the workbook, checking every decision against the run, and
recording them in the review database. An import that grows linearly with the rows
shows the same time per 1,000 rows at every size.

Results: ``bench/results/review_import.csv``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import ROOT, print_table, save, wait_for_quiet  # noqa: E402

from pipeline.review import commands  # noqa: E402
from pipeline.review.model import Decision, check_set, load_run, segment_item  # noqa: E402
from pipeline.review.signing import WorkbookCheck, ensure_key, load_key  # noqa: E402
from pipeline.review.store import ReviewStore  # noqa: E402
from pipeline.review.workbook import build_workbook, read_workbook, write_workbook  # noqa: E402

WORK = ROOT / ".cache" / "bench" / "review_import"
WORDS = ("supervision", "tears", "client", "rupture", "repair", "training", "doubt",
         "hope", "session", "silence", "anger", "trust")


def make_run(folder: Path, n_segments: int, n_themes: int = 40, n_domains: int = 5) -> Path:
    """A run folder as ``consensa run`` leaves it, as far as the review reads it."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rows = []
    for i in range(n_segments):
        case = f"case{i // 500:03d}"
        theme = -1 if i % 23 == 22 else i % n_themes
        text = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(12))
        rows.append({"segment_id": f"{case}:{(i % 500) // 2}:{i % 2}", "case_id": case,
                     "text": text, "theme": theme,
                     "theme_name": f"theme {theme}" if theme >= 0 else "",
                     "domain_id": theme % n_domains if theme >= 0 else -1})
    seg = pd.DataFrame(rows)
    seg.to_parquet(folder / "segments.parquet", index=False)
    n_cases = seg["case_id"].nunique()
    themes = []
    for t in range(n_themes):
        mine = seg[seg["theme"] == t]
        themes.append({"theme_id": t, "name": f"theme {t}", "domain_id": t % n_domains,
                       "keywords": "; ".join(WORDS[t % 12:t % 12 + 3]), "key_phrases": "",
                       "n_segments": len(mine), "n_cases": mine["case_id"].nunique(),
                       "cases": "; ".join(sorted(mine["case_id"].unique())[:5]),
                       "frequency_label": "typical",
                       "quote_ids": "; ".join(mine["segment_id"].head(3)),
                       "core_idea": str(mine["text"].iloc[0]), "mean_strength": 0.5,
                       "n_reassigned": 0})
    pd.DataFrame(themes).to_csv(folder / "themes.csv", index=False)
    domains = [{"domain_id": d, "name": f"domain {d}", "keywords": WORDS[d],
                "theme_ids": "; ".join(str(t) for t in range(d, n_themes, n_domains)),
                "n_themes": len(range(d, n_themes, n_domains)),
                "n_segments": int((seg["domain_id"] == d).sum()), "n_cases": n_cases,
                "frequency_label": "general", "is_miscellaneous": False}
               for d in range(n_domains)]
    pd.DataFrame(domains).to_csv(folder / "domains.csv", index=False)
    (folder / "manifest.json").write_text(json.dumps(
        {"name": f"synthetic-{n_segments}", "config_sha256": f"{n_segments:064x}",
         "started_at": "2026-01-01T00:00:00+00:00"}))
    return folder


def filled_workbook(run_folder: Path, n_themes: int) -> tuple[Path, int]:
    """Start the review with two judges; write ana's workbook with a move on every
    assigned segment (as ``export`` writes it, prefilled; only the one workbook the
    import needs is built)."""
    run = load_run(run_folder)
    with ReviewStore(run, create=True) as store:
        store.set_panel(["ana", "ben"])
    seg = run.segments[run.segments["theme"] >= 0]
    prefill = {segment_item(s): Decision(segment_item(s), "move", target=str((t + 1) % n_themes))
               for s, t in zip(seg["segment_id"], seg["theme"])}
    path = run_folder / "review" / "round-1" / "ana.xlsx"
    key = ensure_key(run_folder)
    write_workbook(path, build_workbook(run, "ana", "judge", 1, prefill, key=key))
    return path, len(prefill)


def measure(n_segments: int, n_themes: int) -> dict:
    run_folder = make_run(WORK / f"run-{n_segments}", n_segments, n_themes)
    path, n_rows = filled_workbook(run_folder, n_themes)
    wait_for_quiet()
    run = load_run(run_folder)
    t0 = time.perf_counter()
    wb, errors = read_workbook(path, run, WorkbookCheck(load_key(run_folder), run_folder))
    t1 = time.perf_counter()
    problems = check_set(wb.decisions, run)
    t2 = time.perf_counter()
    assert not errors and not problems, (errors + problems)[:3]
    # the whole command, as `consensa review import` runs it (reads and checks again)
    message = commands.import_workbooks(run_folder, [path])
    t3 = time.perf_counter()
    assert message.startswith(f"imported {n_rows} "), message
    shutil.rmtree(run_folder)
    per_k = 1000 / n_rows
    return {"rows": n_rows, "read_s": round(t1 - t0, 2), "check_s": round(t2 - t1, 3),
            "import_s": round(t3 - t2, 2),
            "read_s_per_1k": round((t1 - t0) * per_k, 3),
            "check_ms_per_1k": round((t2 - t1) * 1000 * per_k, 2),
            "import_s_per_1k": round((t3 - t2) * per_k, 3),
            "rows_per_s": round(n_rows / (t3 - t2))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="5000,75000",
                    help="segments per synthetic run, comma-separated (1 in 23 is unassigned)")
    ap.add_argument("--themes", type=int, default=40)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows = []
    for n in sizes:
        print(f"  {n} segments ...", file=sys.stderr, flush=True)
        rows.append({"segments": n, **measure(n, args.themes)})
    table = pd.DataFrame(rows)
    print_table(table, "review import of one judge's workbook (import_s: the whole command)")
    if len(table) > 1:
        first, last = table.iloc[0], table.iloc[-1]
        print(f"\nper 1k rows, {int(last['rows'])} vs {int(first['rows'])} rows: import "
              f"x{last['import_s_per_1k'] / first['import_s_per_1k']:.2f}, check "
              f"x{last['check_ms_per_1k'] / max(first['check_ms_per_1k'], 1e-9):.2f} "
              "(about 1 when linear)")
    print(f"\nwritten: {save(table, 'review_import.csv')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
