"""The ``consensa`` command. Thin: parse arguments, load the config, call ``run``.

Errors the user can fix are printed as one clear message with exit status 2,
never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import __version__
from .errors import ConsensaError


def _say(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from .batch import (
        load_single,  # load_config, also refusing sweep: and reading stability:
    )
    from .run import run

    cfg, base, stability = load_single(args.config, args.set or [])
    start = time.perf_counter()
    folder = run(cfg, base, Path(args.out) if args.out else None, report=_say)
    stab = None
    if stability is not None:
        from .stability import stability_for_run

        stab = stability_for_run(folder, stability, base_dir=base, report=_say)
    import json

    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    c = manifest["counts"]
    print(f"Consensa run '{cfg.name}' finished in {time.perf_counter() - start:.1f} s")
    print(f"  cases: {c['cases_analysed']}   segments: {c['segment_segments']}   "
          f"themes: {c['themes']}   domains: {c['domains']}   "
          f"unassigned: {c['unassigned']} ({manifest['outlier_share']:.1%})")
    if manifest["skipped"]:
        print(f"  skipped: {len(manifest['skipped'])} item(s), listed in the report and manifest.json")
    print(f"  run folder: {folder}")
    print(f"  report:     {folder / 'report.html'}")
    if stab is not None:
        print(f"  stability:  {stab.summary()['overall']} overall; {stab.n_unstable} of "
              f"{len(stab.table)} themes unstable ({folder / 'stability.md'})")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .batch import load_plans  # validates sweep: and stability: sections too

    plans = load_plans(args.config, args.set or [])
    runs = f"{len(plans)} runs in its sweep" if len(plans) > 1 else f"run name '{plans[0].cfg.name}'"
    print(f"{args.config}: valid ({runs})")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from .batch import cli

    return cli(args.configs, jobs=args.jobs, out=args.out, overrides=args.set or [], report=_say)


def cmd_stability(args: argparse.Namespace) -> int:
    from .stability import cli

    return cli(args.run, resamples=args.resamples, leave_out=args.leave_out,
               bootstrap=args.bootstrap, threshold=args.threshold,
               unstable_below=args.unstable_below, seed=args.seed, cache_dir=args.cache_dir,
               report=_say)


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import cli

    return cli(args.run, args.codes, level=args.level, out=args.out,
               min_coverage=args.min_coverage, min_match=args.min_match, depth=args.depth,
               separator=args.separator, columns=args.column, report=_say)


def cmd_export(args: argparse.Namespace) -> int:
    from .exchange.refi import cli

    return cli(args.kind, args.source, args.out)


def cmd_serve(args: argparse.Namespace) -> int:
    from .review.commands import _names
    from .web.server import serve

    return serve(args.run, host=args.host, port=args.port, judges=_names(args.judges),
                 auditors=_names(args.auditor))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="consensa", description=(
        "NLP-assisted theme discovery for Consensual Qualitative Research. "
        "It proposes; the judges decide."))
    parser.add_argument("--version", action="version", version=f"consensa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the pipeline from a config file")
    p.add_argument("config", help="a YAML run config, e.g. configs/demo.yaml")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a setting, e.g. --set cluster.min_cluster_size=10 (repeatable)")
    p.add_argument("--out", help="the run folder to create (default: <output_dir>/<name>-<time>)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check a config without running it")
    p.add_argument("config")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("batch", help="run several configs, or a config's sweep: of settings",
                       description="Run every config given (a folder stands for its .yaml "
                       "files), one run folder each inside one batch folder, with "
                       "batch_summary.csv and index.html. A config's sweep: section expands "
                       "into one run per combination; its stability: section checks each run. "
                       "Exit status 1 if any run failed.")
    p.add_argument("configs", nargs="+", metavar="CONFIG_OR_DIR")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="runs at a time, each in its own process (default 1)")
    p.add_argument("--out", help="the batch folder (default: <output_dir>/batch-<time>)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a setting in every config (repeatable)")
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("stability", help="check how stable a run's themes are under resampling",
                       description="Re-cluster a run on resamples (leave-k-cases-out and "
                       "bootstrap) and report per theme how often it reappears. Adds "
                       "stability.csv, stability.md and a stability column in themes.csv to "
                       "the run folder and renders report.html again.")
    p.add_argument("run", help="a run folder made by `consensa run`")
    p.add_argument("--resamples", type=int, help="re-clusterings in all (default 20)")
    p.add_argument("--leave-out", type=int, metavar="K",
                   help="cases withheld per leave-out resample (default 1; 0 = bootstrap only)")
    p.add_argument("--no-bootstrap", dest="bootstrap", action="store_false", default=None,
                   help="leave-out resamples only")
    p.add_argument("--threshold", type=float,
                   help="best Jaccard overlap for a theme to count as reappearing (default 0.5)")
    p.add_argument("--unstable-below", type=float, metavar="SHARE",
                   help="themes reappearing in fewer resamples than this are unstable (default 0.6)")
    p.add_argument("--seed", type=int, help="seed of the resampling (default: the run's seed)")
    p.add_argument("--cache-dir", type=Path,
                   help="the embedding cache folder, if it cannot be found from the run")
    p.set_defaults(func=cmd_stability)

    p = sub.add_parser("compare", help="compare a run's themes with human codes",
                       description="Place human codes (a .csv/.xlsx table, one row per coded "
                       "passage, or a REFI-QDA .qdpx project) on a run's segments and report "
                       "the agreement between themes and codes (ARI, NMI/AMI, homogeneity, "
                       "completeness, Cohen's kappa after matching), per code and per theme, a "
                       "disagreement queue for review, and the agreement between human coders. "
                       "Writes RUN/compare/ (compare.html, CSV tables, disagreements.xlsx).")
    p.add_argument("run", help="a run folder made by `consensa run`")
    p.add_argument("codes", help="the human codes: .csv/.tsv/.xlsx table or .qdpx project")
    p.add_argument("--level", choices=("category", "domain"), default="category",
                   help="the level of the per-code tables and the disagreement queue: themes "
                   "vs codes (category) or domains vs top-level codes (domain)")
    p.add_argument("--out", help="the folder to write (default: RUN/compare)")
    p.add_argument("--min-coverage", type=float, default=0.5, metavar="SHARE",
                   help="a segment carries a code covering at least this share of its "
                   "characters (default 0.5)")
    p.add_argument("--min-match", type=float, default=0.6, metavar="SHARE",
                   help="a quote without offsets is placed where at least this share of its "
                   "characters match (default 0.6)")
    p.add_argument("--depth", type=int, metavar="N",
                   help="cut code paths to their first N levels for the category level")
    p.add_argument("--separator", default=">",
                   help="the separator of levels in code paths of a table (default '>')")
    p.add_argument("--column", action="append", metavar="KEY=NAME",
                   help="the table's column for case, code, text, start, end, coder or "
                   "turn_index when it is not found by name (repeatable)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("export", help="export a codebook (.qdc) or a project (.qdpx) for "
                       "QDA software (REFI-QDA)",
                       description="qdc: the codebook of a run (domains as parent codes, "
                       "themes as child codes), or of a themes.csv / a table of code paths / "
                       "a .qdpx. qdpx: the run as a project, its transcripts as text sources "
                       "and every assigned segment coded with its theme.")
    p.add_argument("kind", choices=("qdc", "qdpx"))
    p.add_argument("source", metavar="RUN_OR_CODEBOOK",
                   help="a run folder (qdc also: themes.csv, a table with a 'code' column, "
                   "or a .qdpx)")
    p.add_argument("--out", help="the file to write (default: RUN/export/<name>.qdc|.qdpx)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="the judges' review in the browser (a local web app)",
                       description="Open the review of a run in the browser: overview, themes "
                       "with their quotes in context, the judges' positions side by side, "
                       "consensus decisions, search, export. It reads and writes the same store "
                       "as the workbooks (RUN/review/decisions.sqlite). Prints an address with "
                       "a random access token; only that address opens the app.")
    p.add_argument("run", help="a run folder made by `consensa run`")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default 127.0.0.1: this computer only); "
                   "0.0.0.0 shares it on the local network")
    p.add_argument("--port", type=int, default=0, help="the port (default: a free one)")
    p.add_argument("--judges", default="",
                   help="comma-separated judges to add to the panel (starts the review)")
    p.add_argument("--auditor", default="", help="comma-separated auditor(s) to add")
    p.set_defaults(func=cmd_serve)

    from .review.commands import add_parser as add_review_parser

    add_review_parser(sub)
    from .precode import add_parser as add_precode_parser

    add_precode_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConsensaError as exc:
        print(f"consensa: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except OSError as exc:      # a folder that is a file, a full disk, no permission
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"consensa: error: {where}{exc.strerror or exc}\n  What to do: check that this "
              "path is a folder you can write to (or a file you can read), and that the disk "
              "is not full", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("consensa: interrupted; a run folder that was not finished was not written "
              "(embeddings computed so far are kept in the cache)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
