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
    from .config import load_config
    from .run import run

    cfg, base = load_config(args.config, args.set or [])
    start = time.perf_counter()
    folder = run(cfg, base, Path(args.out) if args.out else None, report=_say)
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
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .config import load_config

    cfg, _ = load_config(args.config, args.set or [])
    print(f"{args.config}: valid (run name '{cfg.name}')")
    return 0


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConsensaError as exc:
        print(f"consensa: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("consensa: interrupted; no run folder was written "
              "(embeddings computed so far are kept in the cache)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
