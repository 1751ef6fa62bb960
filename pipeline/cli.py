"""The ``consensa`` command: every subcommand's arguments, and everything it prints.

This is the one module that prints. The library functions it calls return their
results; what they say while they work goes through :mod:`logging` (loggers under
``"consensa."``), which :func:`main` sends to stderr as plain indented lines
(``  ingest ...``), or not at all with ``--quiet``. Where work is long a progress
bar is drawn, on a terminal only (:mod:`pipeline.progress`).

Errors the user can fix are printed as one clear message with exit status 2,
never as a traceback.
"""

from __future__ import annotations

import argparse
import builtins
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from . import __version__
from .errors import ConsensaError, left_out_and_kept
from .progress import ROOT_LOGGER, bars_wanted
from .textio import escaped


def print(*values: object, sep: str = " ", end: str = "\n", file=None,
          flush: bool = False) -> None:
    """``builtins.print`` for every line the command prints, with what a terminal would
    act on written as escapes (:func:`pipeline.textio.escaped`): a file name may hold
    an escape sequence, and a message naming the file recoloured or retitled the
    terminal it was printed on."""
    builtins.print(escaped(sep.join(map(str, values))), end=end, file=file, flush=flush)


class _PlainFormatter(logging.Formatter):
    """Progress as indented lines under the command (``  ingest ...``); a warning says so."""

    def format(self, record: logging.LogRecord) -> str:
        msg = escaped(record.getMessage())          # as print() does
        if record.levelno >= logging.WARNING:
            msg = f"{record.levelname.lower()}: {msg}"
        text = f"  {msg}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


@contextmanager
def _logging_to_stderr(quiet: bool) -> Iterator[None]:
    """Send the ``consensa`` loggers to stderr for one command, then put things back.

    The handler is made per call, on the ``sys.stderr`` of that moment, so a caller
    that redirects stderr (a test, an embedding script) gets the lines; and it is
    removed after, so calling :func:`main` twice never prints a line twice.
    """
    logger = logging.getLogger(ROOT_LOGGER)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PlainFormatter())
    level = logger.level
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.addHandler(handler)
    try:
        if bars_wanted():
            # log lines are written above a progress bar instead of through it
            from tqdm.contrib.logging import logging_redirect_tqdm

            redirect = logging_redirect_tqdm(loggers=[logger])
        else:
            redirect = nullcontext()
        with redirect:
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _skipped_line(notes: list, word: str = "skipped") -> str:
    """The summary's count of the manifest's notes: what was left out, and apart from
    it the notes on text that was read and kept (a cue kept without its times)."""
    left, kept = left_out_and_kept(notes)
    parts = [f"{word}: {left} item(s)"] if left else []
    if kept:
        parts.append(f"notes on text that was kept: {kept}")
    return "; ".join(parts)


def _roles_warnings(notes: list, shown: int = 5) -> list[str]:
    """The notes on cases whose turns say their speakers' roles are swapped
    (:data:`pipeline.stages.ingest.ROLES_CONTRADICTED`), and on transcripts that are
    byte-identical files (:data:`~pipeline.stages.ingest.DUPLICATE_FILES`), the first
    ``shown`` of them in full: among the notes they are counted only, and such a
    case's interviewer's questions were analysed as its participant's answers, or
    one interview counted as two participants."""
    from .stages.ingest import DUPLICATE_FILES, ROLES_CONTRADICTED

    found = [n["reason"] for n in notes if isinstance(n, dict) and any(
        w in str(n.get("reason", "")) for w in (ROLES_CONTRADICTED, DUPLICATE_FILES))]
    more = [f"and {len(found) - shown} more case(s) like these"] if len(found) > shown else []
    return found[:shown] + more


def _categories_with_subcategories(folder) -> int:
    """How many categories of a CQR run folder have subcategories (of either kind)."""
    cats = folder.table("categories")
    if cats.empty or "parent_id" not in cats.columns:
        return 0
    return len({int(p) for p in cats["parent_id"] if int(p) >= 0})


def _flagged_categories(cats, flag: str) -> int:
    """How many top-level categories of a CQR run's categories table carry ``flag``."""
    if cats.empty or "flags" not in cats.columns:
        return 0
    return sum(1 for p, f in zip(cats["parent_id"], cats["flags"])
               if int(p) < 0 and f is not None and flag in list(f))


def cmd_run(args: argparse.Namespace) -> int:
    from .batch import (
        load_single,  # load_config, also refusing sweep: and reading stability:
    )
    from .run import config_given, run

    cfg, base, stability = load_single(args.config, args.set or [])
    start = time.perf_counter()
    folder = run(cfg, base, Path(args.out) if args.out else None,
                 given=config_given(Path(args.config), args.set or []))
    stab = None
    if stability is not None:
        from .stability import stability_for_run

        stab = stability_for_run(folder, stability)
    from .config import CQR_ANALYSIS
    from .report.templating import counted
    from .runfolder import RunFolder
    from .types import SKIPPED_CSV, domains_in_words, frame_domain_ids

    manifest = RunFolder(folder).manifest
    c = manifest["counts"]
    print(f"Consensa run '{cfg.name}' finished in {time.perf_counter() - start:.1f} s")
    n_seg = max(int(c["segment_segments"]), 1)
    reassigned = f"reassigned outliers: {c['reassigned']} ({c['reassigned'] / n_seg:.1%})"
    n_fit = int(c.get("fitted_on_sample") or 0)
    if n_fit:  # themes fitted on a sample: its outliers are the sample's, and so the share
        reassigned = (f"reassigned outliers: {c['reassigned']} of the {n_fit} fitted "
                      f"({c['reassigned'] / n_fit:.1%})")
    if manifest.get("analysis") == CQR_ANALYSIS:
        # every category the CQR table shows with subcategories under it: those split by
        # size and those split by the participants' judgement (stance)
        from .stages.crossanalysis import ANSWERED_NO, MINIMAL

        run_folder = RunFolder(folder)
        n_sub = _categories_with_subcategories(run_folder)
        cats = run_folder.table("categories")
        n_min = _flagged_categories(cats, MINIMAL)
        n_no = _flagged_categories(cats, ANSWERED_NO)
        about = [f"{n_sub} with subcategories"] if n_sub else []
        about += [f"{n_no} of 'no' answers"] if n_no else []
        about += [f"{n_min} of minimal responses, listed last"] if n_min else []
        # the frame is listed as a domain but is not one of the cross-analysis's
        n_frame = len(frame_domain_ids(run_folder.table("domains")))
        domains = domains_in_words(c["domains"] - n_frame, n_frame)
        print(f"  cases: {c['cases_analysed']}   segments: {c['segment_segments']}   "
              f"domains: {domains}   categories: {c['themes']}"
              + (f" ({'; '.join(about)})" if about else ""))
        no_domain = int(c.get("crossanalysis_no_domain", 0))
        print(f"  in no category: {c['unassigned']} ({manifest['outlier_share']:.1%}"
              + (f"; {no_domain} in no domain" if no_domain else "")
              + f")   {reassigned}   interview frame: {c.get('frame_segments', 0)} (set apart)")
        from .stages.protocol import placed_summary, scattered_protocol

        placed = int(c.get("segments_placed_by_content", 0))
        if placed:
            print(f"  note: {placed_summary(c)} (segments.csv: question_domain_id -1)")
        kept = int(c.get("protocol_prompts_not_in_protocol_in_frame", 0))
        if kept:
            print(f"  note: {kept} interviewer question(s) the protocol file lacks were asked "
                  "in the interview frame and read as it (small talk, background, consent), "
                  "so they and their answers stay in the frame; protocol.yaml lists them "
                  "under their frame area's follow_ups")
        off = int(c.get("protocol_prompts_not_in_protocol_after_frame", 0))
        if off:
            print(f"  note: {off} interviewer question(s) match no area of the protocol file "
                  "and were asked after a question of the interview frame, so their answers "
                  "went to the domain nearest in content, or to none; "
                  "protocol_prompts.csv lists them (area_id -1): add them to the file (a "
                  "follow-up of the frame under its area's follow_ups)")
        given = bool(cfg.protocol.file or cfg.protocol.areas)
        scattered = scattered_protocol(RunFolder(folder).domains(), int(c["cases_analysed"]),
                                       given)
        if scattered:
            print(f"  note: {scattered}")
        from .config import unread_note, unread_sections

        unread = unread_sections(cfg)
        if unread:
            print(f"  note: {unread_note(unread)}")
        empty = _empty_protocol_domains(RunFolder(folder))
        shown = "; ".join(f"'{n}'" for n in empty[:5]) + ("; ..." if len(empty) > 5 else "")
        its = "it proposes no domain" if len(empty) == 1 else "they propose no domain"
        if empty and given and placed and not int(c.get("protocol_prompts", 0)):
            # no interviewer turn at all: the answers were placed by content alone
            print(f"  note: {counted(len(empty), 'area')} of the protocol "
                  f"{'is' if len(empty) == 1 else 'are'} nearest in content to no answer, so "
                  f"{its}: {shown}; the transcripts hold no "
                  "interviewer questions, so the answers went to the domains nearest in "
                  "content (move them in the review if they belong there)")
        elif empty and given:
            print(f"  note: {counted(len(empty), 'area')} of the protocol matched no question "
                  f"in any interview, so {its}: {shown}; add the interviewer's "
                  "own wordings to its questions in the protocol file (protocol_prompts.csv "
                  "lists every question and the area it went to)")
        elif empty:
            # an inferred area is made of questions that were asked: no wording is missing,
            # but no answer segment was left in it (small talk, the frame, moved by content)
            print(f"  note: {counted(len(empty), 'inferred area')} kept no answer segment, so "
                  f"{its}: {shown} (protocol_prompts.csv lists their questions)")
        if c.get("crossanalysis_laid_out_domains"):
            n_dom = int(c["crossanalysis_laid_out_domains"])
            print(f"  {counted(n_dom, 'large domain')} ({c['crossanalysis_laid_out_segments']} "
                  "segments) clustered on a UMAP layout of the vectors "
                  "(crossanalysis.layout_above)")
        if c.get("crossanalysis_fitted_on_sample"):
            print(f"  categories found on a case-stratified sample of "
                  f"{c['crossanalysis_fitted_on_sample']} segments; the other "
                  f"{c['crossanalysis_joined_after_sample']} joined their nearest category")
    else:
        from .stages.cluster import sample_summary

        print(f"  cases: {c['cases_analysed']}   segments: {c['segment_segments']}   "
              f"themes: {c['themes']}   domains: {c['domains']}   "
              f"unassigned: {c['unassigned']} ({manifest['outlier_share']:.1%})   {reassigned}")
        sampled = sample_summary(c)
        if sampled:
            print(f"  {sampled}")
    if isinstance(manifest.get("llm"), dict):
        # as visible as the counts above: a model that never answered must not pass
        # for one that named every category
        from .stages.llm import stats_summary

        print(f"  {stats_summary(manifest['llm'])} ({folder / 'llm_log.jsonl'})")
    if manifest["skipped"]:
        where = "the report and manifest.json"
        if (folder / SKIPPED_CSV).is_file():
            where = f"the report and manifest.json; every turn and unit in {SKIPPED_CSV}"
        print(f"  {_skipped_line(manifest['skipped'])}, listed in {where}")
    for warning in _roles_warnings(manifest["skipped"]):
        print(f"  warning: {warning}")
    repeat = _repeat_note(Path(args.config), manifest)
    if repeat:
        print(f"  note: {repeat}")
    reviewed = _earlier_review_note(cfg.name, Path(args.config), folder, cfg.output_dir)
    if reviewed:
        print(f"  note: {reviewed}")
    print(f"  run folder: {folder}")
    print(f"  report:     {folder / 'report.html'}")
    if (folder / "protocol.yaml").is_file():
        print(f"  CQR table:  {folder / 'cqr_table.md'}")
        what = ("no interviewer question was found: write the interviews' topic areas there "
                "and pass it as protocol.file" if not int(c.get("protocol_areas", 0))
                and not int(c.get("protocol_frame_areas", 0))
                else "edit it and pass it back as protocol.file")
        print(f"  protocol:   {folder / 'protocol.yaml'} ({what})")
    if stab is not None:
        print(f"  stability:  {stab.summary()['overall']} overall; {stab.n_unstable} of "
              f"{len(stab.table)} themes unstable ({folder / 'stability.md'})")
    return 0


#: the files beside the transcripts a run's manifest records (pipeline.run.read_files)
READ_FILES = (("protocol_file", "protocol file"), ("cases_table", "cases table"))


def _earlier_review_note(name: str, config: Path, folder: Path, output_dir: Path) -> str:
    """One line for a run of a study whose earlier run has a review: this run is a new
    proposal that no decision of that review reaches, and what the study usually
    wants when it grows is the agreed codebook applied to the new transcripts
    (``consensa precode``). The earlier run is the one whose config.yaml this is, or a
    run of the same name beside the new one or in ``output_dir``; the latest review
    is named ("" when there is none)."""
    import json

    places = {config.resolve().parent}
    for parent in {Path(folder).resolve().parent, Path(output_dir).resolve()}:
        if parent.is_dir():
            places.update(p for p in parent.iterdir() if p.is_dir())
    found = []
    for run in places:
        store = run / "review" / "decisions.sqlite"
        if run == Path(folder).resolve() or not store.is_file():
            continue
        try:
            same = json.loads((run / "manifest.json").read_text(encoding="utf-8")).get(
                "name") == name
        except (OSError, ValueError, AttributeError):
            continue
        if same:
            found.append((store.stat().st_mtime, run))
    if not found:
        return ""
    run = max(found)[1]
    codebook = run / "review" / "codebook.yaml"
    if codebook.is_file():
        return (f"the earlier run {run} has a review; this run is a new proposal, which "
                "none of its decisions reaches. To code new transcripts with the codebook "
                f"the judges agreed: consensa precode {codebook} --transcripts NEW_DIR --out "
                "NEW_RUN (README: \"When the study grows\")")
    return (f"the earlier run {run} has a review in progress; this run is a new proposal, "
            "which none of its decisions reaches (README: \"When the study grows\")")


def _repeat_note(config: Path, manifest: dict) -> str:
    """For a run of the config.yaml an earlier run folder holds (``consensa run
    RUN/config.yaml``, repeating that run): whether it read the same transcripts, by
    the sha256 of each file both manifests record, and the same protocol file and
    cases table. A repeat that read edited or other transcripts, or an edited
    protocol or cases table, is not the run it repeats, and nothing else would say so."""
    import json

    earlier = config.parent / "manifest.json"
    if config.name != "config.yaml" or not earlier.is_file():
        return ""
    try:
        then = json.loads(earlier.read_text(encoding="utf-8"))
        old = {str(i["case_id"]): i.get("original_sha256") or i["sha256"]
               for i in then["inputs"]}
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    new = {str(i["case_id"]): i.get("original_sha256") or i["sha256"]
           for i in manifest.get("inputs", [])}
    changed = sorted(c for c in old.keys() & new.keys() if old[c] != new[c])
    gone, added = sorted(old.keys() - new.keys()), sorted(new.keys() - old.keys())
    differ, same, unknown = _read_files_compared(then, manifest)
    code = _code_compared(then, manifest)
    if not (changed or gone or added or differ):
        also = f", and of its {' and '.join(same)}" if same else ""
        note = (f"the same transcripts as the run in {config.parent} read (the sha256 of "
                f"each of the {len(new)} files{also})")
        if unknown:
            note += (f"; that run's manifest records no sha256 of its {' or '.join(unknown)}, "
                     f"so whether {'it' if len(unknown) == 1 else 'they'} changed since is "
                     "not known")
        return note + (f"; {code}" if code else "")

    def listed(cases: list[str], what: str) -> str:
        return (f"{len(cases)} {what} ({', '.join(cases[:5])}{' ...' if len(cases) > 5 else ''})"
                if cases else "")

    parts = [p for p in (listed(changed, "changed since"), listed(gone, "not read now"),
                         listed(added, "new")) if p]
    reasons = ([f"its transcripts differ from those that run read: {'; '.join(parts)}"]
               if parts else []) + differ
    return (f"this is not a repeat of the run in {config.parent}: {'; '.join(reasons)} (by "
            "each file's sha256 in the two manifests)" + (f"; {code}" if code else ""))


def _code_compared(then: dict, now: dict) -> str:
    """Whether two runs' manifests name the same code of Consensa (``code``: the
    sha256 of the package's files, the git commit): "" when they do, else what
    differs. The version alone says nothing of an editable install."""
    old, new = then.get("code"), now.get("code")
    if not isinstance(new, dict):
        return ""
    if not isinstance(old, dict):
        return (f"that run's manifest does not identify Consensa's code (only its version, "
                f"{then.get('consensa_version', 'unknown')}), so whether the code changed "
                "since is not known")
    if old.get("package_sha256") == new.get("package_sha256"):
        return ""
    commits = ""
    if old.get("git_commit") and new.get("git_commit"):
        def at(c: dict) -> str:
            return f"{str(c['git_commit'])[:12]}{' with changes' if c.get('git_dirty') else ''}"

        commits = f"; that run's at {at(old)}, this one's at {at(new)}"
    return ("Consensa's code differs from that run's, so its results may differ for that "
            f"reason alone (the sha256 of the pipeline package's files{commits})")


def _read_files_compared(then: dict, now: dict) -> tuple[list[str], list[str], list[str]]:
    """The protocol file and cases table of two runs' manifests: (what differs, in
    words; the labels of those both read the same; the labels of those only the
    repeat records, its earlier run's manifest written before they were recorded)."""
    differ, same, unknown = [], [], []
    for key, label in READ_FILES:
        old, new = then.get(key), now.get(key)
        if not isinstance(new, dict):
            if isinstance(old, dict):
                differ.append(f"that run read the {label} {old.get('path')}, this one none")
        elif not isinstance(old, dict):
            unknown.append(f"{label} ({new.get('path')})")
        elif old.get("sha256") != new.get("sha256"):
            moved = "" if old.get("path") == new.get("path") else f" (that run read {old.get('path')})"
            differ.append(f"its {label} {new.get('path')} changed since that run read it{moved}")
        else:
            same.append(label)
    return differ, same, unknown


def _empty_protocol_domains(run) -> list[str]:
    """The content areas of the run's protocol.yaml (a team's protocol file may list
    one that no interviewer asked in the words given) that hold no segment, and so
    propose no domain (an older run folder lists such a domain with no segment)."""
    import yaml

    domains = run.domains()
    if "kind" not in domains.columns:
        return []
    areas = domains[domains["kind"] == "area"]
    empty = [str(n) for n in areas.loc[areas["n_segments"] == 0, "name"]]
    path = Path(run.path) / "protocol.yaml"
    if path.is_file():
        listed = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("areas") or []
        proposed = set(areas["name"].astype(str))
        empty += [str(a["name"]) for a in listed
                  if isinstance(a, dict) and not a.get("frame") and str(a.get("name")) not in
                  proposed and str(a.get("name")) not in empty]
    return empty


def cmd_validate(args: argparse.Namespace) -> int:
    from .batch import load_plans  # validates sweep: and stability: sections too
    from .config import unread_note, unread_sections

    plans = load_plans(args.config, args.set or [])
    runs = f"{len(plans)} runs in its sweep" if len(plans) > 1 else f"run name '{plans[0].cfg.name}'"
    print(f"{args.config}: valid ({runs})")
    unread = unread_sections(plans[0].cfg)
    if unread:
        print(f"  note: {unread_note(unread)}")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    """``consensa batch``: 0 when every run succeeded, 1 when any failed."""
    from .batch import plan_batch, run_batch
    from .errors import ConfigError

    if args.jobs < 1:
        raise ConfigError("--jobs must be 1 or more")
    start = time.perf_counter()
    notes: list[str] = []
    plans = plan_batch(args.configs, list(args.set or []), notes)
    result = run_batch(plans, args.out, args.jobs)
    rows = result.rows
    print(f"Consensa batch: {len(rows) - len(result.failed)} of {len(rows)} runs succeeded "
          f"in {time.perf_counter() - start:.1f} s")
    for note in notes:
        print(f"  skipped {note}")
    for r in rows:
        stab = "" if r["stability"] is None else f"  stability {r['stability']:.2f}"
        if r["status"] == "ok":
            # the frame named, not counted, as in a single run's summary
            frame = " and the interview frame" if r.get("interview_frame") else ""
            print(f"  ok      {r['run']}: {r['themes']} {r.get('unit') or 'themes'}, "
                  f"{r['domains']} domains{frame}, "
                  f"outliers {100 * (r['outlier_share'] or 0):.1f} %{stab}")
        else:
            reason = r["error"].replace("\n", "\n          ")
            print(f"  {r['status']:<7} {r['run']} ({r['config']}):\n          {reason}")
    print(f"  summary: {result.folder / 'batch_summary.csv'}")
    print(f"  index:   {result.folder / 'index.html'}")
    sys.stdout.flush()
    return 1 if result.failed else 0


def cmd_stability(args: argparse.Namespace) -> int:
    """``consensa stability RUN``: check, write, print the table."""
    from .runfolder import RunFolder, check_run_folder
    from .stability import (
        fmt_number,
        fmt_share,
        parse_stability,
        stability_for_run,
        written_files,
    )

    given = {"resamples": args.resamples, "leave_out": args.leave_out,
             "bootstrap": args.bootstrap, "threshold": args.threshold,
             "unstable_below": args.unstable_below, "seed": args.seed}
    settings = parse_stability({k: v for k, v in given.items() if v is not None})
    folder = check_run_folder(Path(args.run))
    result = stability_for_run(folder, settings, cache_dir=args.cache_dir)
    print(f"Consensa stability of '{folder.name}': {result.n_leave_out} leave-"
          f"{result.settings.leave_out}-out + {result.n_bootstrap} bootstrap resamples "
          f"in {result.seconds:.1f} s")
    print(f"  overall stability (reappearance weighted by theme size): "
          f"{fmt_number(result.overall)}; unstable themes: {result.n_unstable} of "
          f"{len(result.table)}")
    if result.reproduced is not None and result.reproduced < 0.999:
        print(f"  note: re-clustering all segments with the run's seed gives a mean Jaccard of "
              f"{result.reproduced:.3f} with the run's themes (embeddings changed since the run?)")
    print(f"  {'theme':>5}  {'reappear':>8}  {'(lo/bs)':>11}  {'jaccard':>7}  {'label chg':>9}  "
          "stable  name")
    for r in result.table.itertuples():
        split = f"{fmt_share(r.reappearance_leave_out)}/{fmt_share(r.reappearance_bootstrap)}"
        print(f"  {r.theme_id:>5}  {fmt_share(r.reappearance):>8}  {split:>11}  "
              f"{fmt_number(r.mean_jaccard):>7}  {fmt_share(r.label_change_rate):>9}  "
              f"{'yes' if r.stable else 'NO ':<6}  {r.name}")
    files = written_files(RunFolder(folder))
    print(f"  written: {folder / files[0]}, {', '.join(files[1:])}")
    return 0


def _columns(items: list[str] | None) -> dict[str, str]:
    """``--column KEY=NAME`` options as {key: column name}."""
    from .errors import InputError

    given = {}
    for item in items or []:
        key, sep, name = item.partition("=")
        if not sep or key.strip() not in ("case", "code", "text", "start", "end", "coder",
                                          "turn_index"):
            raise InputError(f"--column {item!r} is not KEY=NAME with KEY one of case, code, "
                             "text, start, end, coder, turn_index", field="--column",
                             hint="e.g. --column case=Document --column code=Codes")
        given[key.strip()] = name.strip()
    return given


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare, summary_text, write_compare

    _no_codes_text_in_a_deidentified_run(Path(args.run), args.out)
    res = compare(args.run, args.codes, level=args.level, min_coverage=args.min_coverage,
                  min_match=args.min_match, depth=args.depth, separator=args.separator,
                  columns=_columns(args.column))
    target = Path(args.out) if args.out else res.run.folder / "compare"
    earlier = _earlier_comparison(target)
    folder = write_compare(res, args.out)
    print(summary_text(res, folder))
    if earlier:
        # a comparison with another coder's codes is replaced, never kept beside: say so
        print(f"note: this replaced the earlier comparison in {folder} (with {earlier}); "
              "give --out to keep comparisons side by side")
    from .review.store import db_path

    if db_path(Path(args.run)).is_file():
        print("note: this compares the run's proposed themes with the codes; the judges' "
              "review of the run (its renames, merges and moves) is not part of it")
    return 0


def _no_codes_text_in_a_deidentified_run(run: Path, out: str | None) -> None:
    """Refuse to write a comparison into a de-identified run's folder.

    A run made to be shared holds placeholders only; a comparison writes the codes'
    own quotes, case names and code names (coding_spans.csv, the summary, the page),
    and codes made on the original transcripts hold the very names the run replaced.
    Written beside the run, they would travel with it. Given --out outside the run's
    folder, the comparison is the team's own, kept where they keep the originals."""
    import yaml

    from .errors import InputError

    try:
        cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return                                  # compare names what is wrong with the run
    if not (isinstance(cfg, dict) and (cfg.get("deidentify") or {}).get("enabled")):
        return
    target = Path(out).resolve() if out else run.resolve() / "compare"
    if target == run.resolve() or run.resolve() in target.parents:
        raise InputError(
            "the run was de-identified, and a comparison writes the codes' own quotes, case "
            "names and code names, which codes made on the original transcripts hold: "
            "written in the run's folder, they would be shared with it", path=run,
            field="--out",
            hint="give --out a folder outside the run's folder, kept with the original "
                 "transcripts; or code the run's de-identified texts (`consensa export "
                 "qdpx RUN`) and compare those codes with --out")


def _earlier_comparison(folder: Path) -> str:
    """The codes file of the comparison a `consensa compare` wrote in ``folder`` ("" when
    there is none)."""
    import json

    try:
        manifest = json.loads((folder / "compare_manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    codes = manifest.get("codes") if isinstance(manifest, dict) else None
    path = codes.get("path") if isinstance(codes, dict) else None
    return str(path) if path else "codes"


def cmd_export(args: argparse.Namespace) -> int:
    """``consensa export qdc|qdpx|csv``: write the file(s) and say what they hold (the
    agreed codebook, a draft, or Consensa's proposal)."""
    from .exchange.refi import CONSENSUS_USER, export_qdc, export_qdpx, is_precode_folder, iter_codes

    if args.draft and args.proposal:
        from .errors import InputError

        raise InputError("--draft and --proposal exclude each other", field="--draft",
                         hint="--draft: the review as it stands; --proposal: Consensa's themes")
    how = {"draft": args.draft, "proposal": args.proposal}
    if args.kind in ("csv", "qdc") and is_precode_folder(args.source):
        from .errors import InputError

        # a pre-coding applies a codebook; its tables are its own files
        raise InputError(f"a pre-coding folder: `consensa export {args.kind}` exports a run "
                         "folder or its review's codebook", path=args.source,
                         hint="`consensa export qdpx` exports the pre-coded transcripts with "
                         "their codes; its segments.csv and cqr_table.csv are the tables, and "
                         "the codebook it applied is the one to give `export qdc`")
    if args.kind == "csv":
        from .exchange.tables import export_tables

        paths, content = export_tables(args.source, args.out, **how)
        print(f"Consensa tables written: {content.describe()}")
        print(f"  codebook (Taguette: Import codebook; columns tag, description): "
              f"{paths['codebook']}")
        print(f"  case x category matrix for R/SPSS, segment counts (every segment, "
              f"reassigned outliers included): {paths['counts']}")
        counts_what = ("the case counts toward the category's frequency label"
                       if content.counted is not None else "the category occurs in the case")
        print(f"  case x category matrix, 0/1 ({counts_what}): {paths['presence']}")
        _export_notes(content)
        return 0
    if args.kind == "qdc":
        target, codes, content = export_qdc(args.source, args.out, **how)
        n = sum(1 for _ in iter_codes(codes))
        print(f"Consensa codebook written: {target}")
        if content is not None:
            print(f"  it holds {content.describe()}")
        elif Path(args.source).suffix.lower() in (".yaml", ".yml"):
            from .exchange.agreed import stale_codebook_file

            print("  it holds the agreed codebook as `consensa review apply` wrote it")
            stale = stale_codebook_file(Path(args.source))
            if stale:
                print(f"  STALE: {stale}")
        print(f"  {n} codes ({len(codes)} at the top level); import it in your QDA software "
              "as a REFI-QDA codebook (.qdc)")
        if content is not None:
            _export_notes(content)
        return 0
    if args.kind == "qdpx" and is_precode_folder(args.source):
        return _export_precoded(args)
    target, content = export_qdpx(args.source, args.out, **how)
    coded = content.assignments[content.assignments["category_id"] >= 0]
    n_cat = sum(1 for _ in content.categories()) + len(
        content.data.get("loose_categories") or [])
    coder = "Consensa" if content.kind == "proposal" else CONSENSUS_USER
    variables = [c for c in content.cases.columns if c != "case_id"] \
        if content.cases is not None else []
    print(f"Consensa project written: {target}")
    print(f"  it holds {content.describe()}")
    print(f"  {coded['case_id'].nunique()} text sources, {len(coded)} coded segments (by the "
          f"user '{coder}'), {n_cat} categories in {len(content.data['domains'])} domains, "
          f"{len(content.notes)} notes, case variables: {', '.join(variables) or 'none'}")
    users = ["Consensa"] + ([CONSENSUS_USER] if content.kind != "proposal" else []) + [
        p for p in [*content.judges, *content.auditors] if p not in ("Consensa", CONSENSUS_USER)]
    print(f"  users: {', '.join(dict.fromkeys(users))}")
    for note in content.project_notes:       # the team's project the run read, if any
        print(f"  team's project: {note}")
    print("  import it in your QDA software as a REFI-QDA project (.qdpx)")
    _export_notes(content)
    return 0


def _export_precoded(args: argparse.Namespace) -> int:
    """``consensa export qdpx PRECODE_OUT``: the pre-coded transcripts as a project."""
    from .errors import InputError
    from .exchange.refi import QUEUE_CODE, precoded_project
    from .fsutil import atomic_write_bytes

    if args.draft or args.proposal:
        raise InputError("a pre-coding has no review: --draft and --proposal are for run "
                         "folders", field="--draft" if args.draft else "--proposal",
                         hint="leave the option out")
    target = Path(args.out) if args.out else Path(args.source) / "export" / "precoded.qdpx"
    data, held = precoded_project(args.source)
    atomic_write_bytes(target, data)
    print(f"Consensa project written: {target}")
    print(f"  it holds the pre-coded transcripts of {args.source}: {held['sources']} text "
          f"sources, {held['coded']} segments coded with the agreed codebook (user "
          f"'Consensa'), {held['chosen']} of the queue coded by people since"
          + (f", {held['by_people']} coded by people in an earlier queue" if held.get("by_people")
             else "") + " and "
          f"{held['queue']} still under '{QUEUE_CODE}'")
    print("  import it in your QDA software as a REFI-QDA project (.qdpx)")
    return 0


def _export_notes(content) -> None:
    if content.kind == "draft" and content.open_items:
        print(f"  DRAFT: {len(content.open_items)} item(s) have no consensus yet and keep the "
              "proposal: " + "; ".join(content.open_items[:8])
              + (" ..." if len(content.open_items) > 8 else ""))
    elif content.kind == "draft":
        print("  DRAFT: no item is open; export without --draft for the agreed codebook "
              "once the audit and the last round are done")
    rejected = content.data.get("rejected_themes") or []
    if rejected:
        print(f"  left out: {len(rejected)} rejected theme(s): "
              + ", ".join(f"{t['id']} \"{t['name']}\"" for t in rejected))
    for d in content.data.get("domains") or []:
        if d.get("no_category"):
            # in the export, its core ideas too: an empty code is not a mistake
            print(f"  kept without a category: domain {d['id']} \"{d['name']}\" "
                  f"({d['no_category']}); its core ideas are in the export")
    from .review.apply import left_out_subcategories

    subs = left_out_subcategories(content.data)
    if subs:
        # each with its own reason: one whose category was rejected is not "coded with
        # its category" as a dropped or unreviewed one is
        print(f"  left out: {len(subs)} proposed subcategories (see the codebook):")
        for s in subs[:8]:
            print(f"    - \"{s['name']}\" (under \"{s['parent_name']}\"): {s['why']}")
        if len(subs) > 8:
            print(f"    ... and {len(subs) - 8} more")
    for note in content.case_notes:
        print(f"  note: {note}")


def cmd_serve(args: argparse.Namespace) -> int:
    from .web.server import listen

    app = listen(args.run, host=args.host, port=args.port, judges=_names(args.judges),
                 auditors=_names(args.auditor))
    print(f"Consensa review of '{app.review.run.name}' ({app.store_path})")
    batch = app.review.queue
    if batch is not None:
        left = len(batch.queue) - batch.n_done()
        print(f"  pre-coding queue of batch {batch.batch} ({batch.folder}): {left} of "
              f"{len(batch.queue)} queued segment(s) left to code, on the Queue page (/queue)")
    if not app.panel:
        print("  the panel is empty: add people with --judges a,b,c --auditor d")
    else:
        print(f"  panel: {', '.join(f'{n} ({r})' for n, r in app.panel.items())}")
    print(f"  open: {app.url}")
    if app.open_to_network:
        print("  WARNING: the review is open to the network on "
              f"{app.host}:{app.port}. Anyone who has this address (it holds the access token) "
              "can read the interviews and change the review, and the traffic is not encrypted "
              "(plain http): share it only on a network you trust, and stop the server "
              "(Ctrl+C) after the meeting.")
    print("  the address is valid until the server stops; Ctrl+C stops it", flush=True)
    app.run()
    return 0


def cmd_precode(args: argparse.Namespace) -> int:
    import json

    from .errors import InputError
    from .precode import DEFAULT_THRESHOLD, QUEUE_ROWS_PER_WORKBOOK, import_queue, precode

    if str(args.codebook) == "export" and not Path("export").is_file():
        from .precode import export_queue

        if args.queue is None:
            raise InputError("give the pre-coding's folder: `consensa precode export NEW_RUN "
                             "--judges ana,ben`")
        print("queue workbooks written:")
        for path in export_queue(args.queue, _names(args.judges), force=args.force):
            print(f"  {path}")
        return 0
    if str(args.codebook) == "import" and not Path("import").is_file():
        if args.queue is None:
            raise InputError("give the filled-in queue: `consensa precode import QUEUE.xlsx "
                             "--by NAME`")
        from .review.store import now_utc

        started = now_utc()

        def store_of() -> Path | None:
            from .precode import batch_of_queue, read_queue
            try:
                return batch_of_queue(read_queue(args.queue)[0], args.queue).run_folder
            except InputError:      # no batch found: the import had not reached its store
                return None

        args.on_interrupt = lambda: _import_stopped(
            store_of, started, f"precode queue {Path(args.queue).name} (",
            f"`consensa serve {Path(args.queue).parent}` (the Queue page)")
        done = import_queue(args.queue, args.by or "", workbook_wins=args.workbook_wins,
                            not_own_file=args.not_own_file)
        again = f" ({done.repeated} as already stored, not stored again)" if done.repeated \
            else ""
        print(f"stored {done.stored} choice(s) by {args.by} from {args.queue}{again}")
        print(f"  in: {done.run_folder / 'review' / 'decisions.sqlite'}")
        if done.replaced:
            # a choice put over another of the same person's is said, never done unseen
            shown = "; ".join(done.replaced[:20]) + (" ..." if len(done.replaced) > 20 else "")
            print(f"  replaced: {len(done.replaced)} choice(s) {args.by} had stored before "
                  f"(the earlier ones stay in the store's log): {shown}")
        # said whether or not anything was stored: a comment typed on a row with no
        # code is not kept, and must not go without a word
        if done.comment_only:
            rows = ", ".join(done.comment_only[:20]) + (" ..." if len(done.comment_only) > 20
                                                        else "")
            print(f"  not stored: the comment of {len(done.comment_only)} row(s) with no code "
                  f"({rows}); a comment is stored with a choice: code the row, then import "
                  "again", file=sys.stderr)
        if done.still_stored:
            rows = ", ".join(done.still_stored[:20]) + (" ..." if len(done.still_stored) > 20
                                                        else "")
            print(f"  still stored: {len(done.still_stored)} row(s) with no code now ({rows}) "
                  f"keep the choice {args.by} stored for them before; an empty cell takes "
                  "no choice back: to change one, choose another code (or 'none') and "
                  "import again", file=sys.stderr)
        if not done.stored and not done.repeated:
            print("  nothing to store: no row of the queue has a code in 'code as category'",
                  file=sys.stderr)
            return 0
        print("  the next `consensa precode ... --retrain` learns from them")
        return 0
    if args.transcripts is None:
        raise InputError("give the folder of new transcripts with --transcripts")
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    if args.shard_size < 1:
        raise InputError("--shard-size must be 1 or more", field="--shard-size")
    if args.scheduler and args.engine != "dask":
        raise InputError("--scheduler needs --engine dask", field="--scheduler")
    cluster = None
    if args.cluster is not None:
        from . import safeyaml
        from .shards import cluster_config

        if args.engine != "dask":
            raise InputError("--cluster needs --engine dask", field="--cluster")
        data = safeyaml.load_file(args.cluster, what="cluster config") or {}
        section = data.get("engine", data) if isinstance(data, dict) else data
        cluster = cluster_config(section, path=args.cluster)    # errors name engine.<key>
    try:
        out = precode(args.codebook, args.transcripts, args.config, threshold, args.out,
                      retrain=args.retrain, engine=args.engine, scheduler=args.scheduler,
                      shard_size=args.shard_size, retries=args.retries, cluster=cluster)
    except InputError as exc:
        if exc.field != "ingest.paths" or args.config is not None:
            raise
        # the transcripts came from --transcripts, not from a config the user wrote
        raise InputError(exc.reason.replace("set ingest.speaker_pattern",
                                            "set ingest.speaker_pattern in a config given "
                                            "with --config"),
                         path=exc.path, line=exc.line, field="--transcripts",
                         hint=(exc.hint or "").replace("check ingest.paths in the config",
                                                       "check the folder --transcripts names")
                         ) from None
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    cal = m["calibration"]
    print(f"pre-coded {m['n_segments']} segments of {m['cases']} case(s) with {m['classifier']} "
          f"(on held-out cases: accuracy {cal.get('accuracy', float('nan')):.2f}, macro F1 "
          f"{cal.get('macro_f1', float('nan')):.2f}, calibration error "
          f"{cal.get('ece', float('nan')):.3f}; {cal['folds']})")
    talk = f" ({m['n_small_talk']} of them small talk)" if m.get("n_small_talk") else ""
    print(f"  coded: {m['n_coded']}   none of these: {m['n_none']}{talk}   needs a human "
          f"(confidence < {m['threshold']}): {m['n_needs_human']}")
    if m.get("n_coded_by_people"):
        print(f"  coded by people: {m['n_coded_by_people']} (the code most of them chose in an "
              "earlier queue; not queued again)")
    if m.get("n_split_by_people"):
        print(f"  queued again: {m['n_split_by_people']} the people who coded them in an earlier "
              "queue split evenly on (see the queue's last column)")
    if m["n_needs_human"]:
        print("  the CQR table's frequency labels count the coded segments only: those in "
              "the queue count in the next pre-coding of these transcripts, once people "
              "have coded them")
    none = m.get("none_class") or {}
    if none and not none.get("trained", True):
        # without it, only the threshold keeps an off-topic segment out of a category
        print(f"  note: no 'none of these' class: the codebook's run has "
              f"{none.get('n_segments', 0)} segment(s) of rejected categories, no category "
              "or the interview frame to train it from; a segment that fits no category is "
              "queued only when its confidence is below the threshold")
    if "shards" in m:
        sh = m["shards"]
        print(f"  shards: {sh['shards']} on {sh['engine']} ({sh['computed']} run now, "
              f"{sh['skipped']} finished by an earlier job)")
    if m.get("skipped"):
        print(f"  {_skipped_line(m['skipped'], 'left out')}, listed in manifest.json:")
        for note in m["skipped"][:10]:
            kept = " (kept)" if note.get("kept") is True else ""
            print(f"    - {note['what']}{kept}: {note['reason']}")
        if len(m["skipped"]) > 10:
            print(f"    ... and {len(m['skipped']) - 10} more")
    print(f"  output: {out}")
    files = m.get("queue_workbooks") or ["queue.xlsx"]
    shown = out / files[0] if len(files) == 1 else out / "queue-*.xlsx"
    more = "" if len(files) == 1 else f" ({len(files)} workbooks of at most {QUEUE_ROWS_PER_WORKBOOK:,} rows)"
    print(f"  queue:  {shown}{more}  (fill in, then `consensa precode import` each)")
    return 0


# --- consensa review ... ------------------------------------------------------------

def _names(text: str | None) -> list[str]:
    """``--judges ana,ben,caro`` as a list; a name is used in file names, so it is
    letters, digits, '-', '_' and '.' only."""
    from .review.model import ReviewError

    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    bad = [n for n in names if not all(ch.isalnum() or ch in "-_." for ch in n)]
    if bad:
        raise ReviewError(f"names may hold letters, digits, '-', '_' and '.' only: {bad}")
    return names


def cmd_review_export(args: argparse.Namespace) -> int:
    from .review.commands import export

    paths = export(Path(args.run), _names(args.judges), _names(args.auditor), force=args.force,
                   consensus=args.consensus, by=args.by)
    print("review workbooks written:")
    for p in paths:
        print(f"  {p}")
    return 0


def cmd_review_import(args: argparse.Namespace) -> int:
    from .review.commands import import_workbooks
    from .review.store import now_utc

    run, started = Path(args.run), now_utc()
    args.on_interrupt = lambda: _import_stopped(
        run, started, None if args.consensus else "; ".join(str(f) for f in args.files),
        f"`consensa review status {run}`")
    print(import_workbooks(Path(args.run), args.files, consensus=args.consensus, by=args.by,
                           workbook_wins=args.workbook_wins))
    return 0


def cmd_review_status(args: argparse.Namespace) -> int:
    from .review.commands import status

    text, _ = status(Path(args.run))
    print(text, end="")
    return 0


def cmd_review_resolve(args: argparse.Namespace) -> int:
    from .review.commands import resolve

    print(resolve(Path(args.run), theme=args.theme, domain=args.domain, segment=args.segment,
                  decision=args.decision, by=args.by, name=args.name, target=args.target,
                  to_domain=args.to_domain, segments=args.segments, core_idea=args.core_idea,
                  comment=args.comment, core_idea_of=args.core_idea_of, themes=args.themes,
                  subcategory=args.subcategory))
    return 0


def cmd_review_audit(args: argparse.Namespace) -> int:
    from .review.commands import audit

    print(audit(Path(args.run), by=args.by, comment=args.comment, theme=args.theme,
                domain=args.domain, segment=args.segment, core_idea_of=args.core_idea_of,
                subcategory=args.subcategory))
    return 0


def cmd_review_answer(args: argparse.Namespace) -> int:
    from .review.commands import answer

    word = "accept" if args.accept else "argue" if args.argue is not None else ""
    print(answer(Path(args.run), comment=args.comment, by=args.by, answer=word,
                 text=args.argue or args.why, undo=args.undo))
    return 0


def cmd_review_next_round(args: argparse.Namespace) -> int:
    from .review.commands import next_round

    print(next_round(Path(args.run), by=args.by, undo=args.undo, force=args.force))
    return 0


def cmd_review_apply(args: argparse.Namespace) -> int:
    from .review.commands import apply

    paths, unanswered, alike, subs = apply(Path(args.run), preview=args.preview)
    print("draft codebook written:" if args.preview else "final codebook written:")
    for p in paths.values():
        print(f"  {p}")
    if subs:
        print(f"  left out: {len(subs)} proposed subcategories (listed in codebook.md, each "
              "with why; keeping one is optional: consensa review resolve RUN --subcategory "
              "ID --decision keep --by NAME)")
    if unanswered:
        print(f"warning: {len(unanswered)} auditor's comment(s) still wait for a judge's answer "
              "(the codebook says so): " + "; ".join(unanswered[:10])
              + (" ..." if len(unanswered) > 10 else ""), file=sys.stderr)
    for clash in alike:
        print(f"warning: {clash}", file=sys.stderr)
    return 0


def _quiet_option() -> argparse.ArgumentParser:
    """``-q/--quiet``, accepted before the subcommand and after it. After it, its default
    is "not given" (SUPPRESS), so a subcommand never resets a ``-q`` given before it."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="print only the results, warnings and errors: no progress lines "
                        "or bars")
    return parent


_QUIET = _quiet_option()


def _add_review_parser(sub) -> None:
    p = sub.add_parser("review", parents=[_QUIET],
                       help="the judges' review of a run: workbooks, decisions, "
                       "agreement, consensus, final codebook",
                       description="CQR review: export a workbook per judge, import their "
                       "decisions, see where they disagree, record the consensus, apply it.")
    rs = p.add_subparsers(dest="review_command", required=True)

    q = rs.add_parser("export", parents=[_QUIET],
                      help="write one review workbook per judge (and the auditor)")
    q.add_argument("run")
    q.add_argument("--judges", default="", help="comma-separated names, e.g. ana,ben,caro")
    q.add_argument("--auditor", default="", help="comma-separated auditor name(s)")
    q.add_argument("--consensus", action="store_true",
                   help="write a consensus workbook prefilled with the agreed decisions")
    q.add_argument("--by", default="", help="with --consensus: whose workbook it is")
    q.add_argument("--force", action="store_true", help="write over existing workbooks")
    q.set_defaults(func=cmd_review_export)

    q = rs.add_parser("import", parents=[_QUIET],
                      help="import filled-in workbooks (all or nothing)")
    q.add_argument("run")
    q.add_argument("files", nargs="+", type=Path)
    q.add_argument("--consensus", action="store_true",
                   help="the workbook(s) hold consensus decisions, not one judge's positions")
    q.add_argument("--by", default="", help="with --consensus: who recorded them")
    q.add_argument("--workbook-wins", action="store_true",
                   help="a row the judge changed in the workbook replaces the judge's "
                   "position recorded after the workbook was exported (in the browser or "
                   "another workbook); a row left as exported never does")
    q.set_defaults(func=cmd_review_import)

    q = rs.add_parser("status", parents=[_QUIET], help="agreement per item and across judges")
    q.add_argument("run")
    q.set_defaults(func=cmd_review_status)

    for name, helptext in (("resolve", "record the consensus decision on one item"),
                           ("audit", "record an auditor's comment on one item")):
        q = rs.add_parser(name, parents=[_QUIET], help=helptext)
        q.add_argument("run")
        g = q.add_mutually_exclusive_group(required=True)
        g.add_argument("--theme")
        g.add_argument("--domain")
        g.add_argument("--segment")
        g.add_argument("--core-idea-of", metavar="CASE:DOMAIN_ID",
                       help="the core idea of one case in one domain (a CQR run)")
        g.add_argument("--subcategory", metavar="ID",
                       help="a subcategory the run proposed (a CQR run; its id is in `consensa "
                       "review status` and the workbook's sheet 'subcategories')")
        q.add_argument("--by", required=True)
        if name == "resolve":
            q.add_argument("--decision", required=True,
                           help="accept, rename, reassign, merge, split, reject, subcategory "
                           "(themes); accept, rename, merge, split (domains); move, keep "
                           "(segments); edit (core ideas, with --core-idea), merge (core ideas, with "
                           "--target DOMAIN_ID: one core idea of the case for merged domains); "
                           "keep, drop (proposed subcategories)")
            q.add_argument("--name", default="", help="the new name (rename, split, keep)")
            q.add_argument("--target", default="", help="merge into / move to this id")
            q.add_argument("--to-domain", default="", help="reassign to this domain id")
            q.add_argument("--segments", default="", help="split: segment ids, ';'-separated")
            q.add_argument("--themes", default="", help="split a domain: the theme ids that go "
                           "to the new domain (named with --name), ';'-separated")
            q.add_argument("--core-idea", default="", help="the core idea note; with "
                           "--core-idea-of, the judges' core idea of that case and domain")
            q.add_argument("--comment", default="")
            q.set_defaults(func=cmd_review_resolve)
        else:
            q.add_argument("--comment", required=True)
            q.set_defaults(func=cmd_review_audit)

    q = rs.add_parser("answer", parents=[_QUIET],
                      help="a judge's answer to an auditor's comment: accept or argue")
    q.add_argument("run")
    q.add_argument("--comment", type=int, required=True,
                   help="the comment's number (shown by `consensa review status`)")
    q.add_argument("--by", required=True, help="the judge who answers")
    g = q.add_mutually_exclusive_group(required=True)
    g.add_argument("--accept", action="store_true", help="the judges take the comment up")
    g.add_argument("--argue", metavar="WHY", help="the judges keep their decision, because WHY")
    g.add_argument("--undo", action="store_true", help="take this judge's answer back")
    q.add_argument("--why", default="", help="with --accept: an optional note")
    q.set_defaults(func=cmd_review_answer)

    q = rs.add_parser("next-round", parents=[_QUIET],
                      help="close this round and open the next, starting from its consensus")
    q.add_argument("run")
    q.add_argument("--by", default="panel", help="who closes the round (default: panel)")
    q.add_argument("--undo", action="store_true",
                   help="go back to the round before (only while the new round is empty)")
    q.add_argument("--force", action="store_true",
                   help="close the round although a judge has not answered an auditor's comment, "
                   "or nothing was decided in it (a round after the first)")
    q.set_defaults(func=cmd_review_next_round)

    q = rs.add_parser("apply", parents=[_QUIET], help="write the final codebook from the consensus")
    q.add_argument("run")
    q.add_argument("--preview", action="store_true",
                   help="write the codebook as it stands while items are open, marked as a "
                   "draft, into RUN/review/draft/")
    q.set_defaults(func=cmd_review_apply)


def _add_precode_parser(sub) -> None:
    p = sub.add_parser("precode", parents=[_QUIET],
                       help="code new transcripts with an agreed codebook",
                       description="Segment and embed new transcripts and assign each segment "
                       "to a category of the codebook, or to none of them, with a confidence "
                       "calibrated on held-out cases; segments below --threshold go to a "
                       "'needs a human' queue (queue.xlsx) instead of being coded. "
                       "`consensa precode import QUEUE.xlsx --by NAME` stores a person's "
                       "choices from a filled-in queue; --retrain learns from them.")
    p.add_argument("codebook", type=Path, help="codebook.yaml from `consensa review apply` "
                   "(or the word 'import', then the queue workbook; or 'export', then the "
                   "pre-coding's folder)")
    p.add_argument("queue", type=Path, nargs="?", help="with 'import': the filled-in queue.xlsx; "
                   "with 'export': the output folder of `consensa precode`")
    p.add_argument("--transcripts", type=Path, help="folder of new transcripts")
    p.add_argument("--config", type=Path, help="a run config for ingest/segment/embed "
                   "(default: the codebook's run config)")
    p.add_argument("--threshold", type=float, default=None,
                   help="least calibrated confidence to code a segment automatically "
                   "(default 0.7)")
    p.add_argument("--retrain", action="store_true",
                   help="also learn from the queue choices imported so far")
    p.add_argument("--by", help="with 'import': who made the choices")
    p.add_argument("--judges", default="", help="with 'export' (then the pre-coding's "
                   "folder): the judges to write a queue workbook each for, e.g. ana,ben")
    p.add_argument("--force", action="store_true",
                   help="with 'export': write over a judge's queue workbook")
    p.add_argument("--workbook-wins", action="store_true",
                   help="with 'import': a row of the queue workbook replaces the choice the "
                   "person made after the workbook was written (in the browser or another "
                   "workbook); without it, such rows refuse the import")
    p.add_argument("--not-own-file", action="store_true",
                   help="with 'import': store the choices of a queue workbook exported for "
                   "another person as --by's")
    p.add_argument("--out", type=Path, help="output folder (default: beside the codebook; "
                   "required with --engine, so a stopped job can be resumed)")
    p.add_argument("--engine", choices=("local", "dask"), default=None,
                   help="read, segment, embed and code the transcripts in shards of files: "
                   "'local' in this process, 'dask' on a Dask LocalCluster (or --scheduler); "
                   "finished shards are kept, so the same command goes on after a stop")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="with --engine dask: the address of a running Dask scheduler "
                   "(e.g. one started by dask-jobqueue on a SLURM or PBS cluster)")
    p.add_argument("--cluster", type=Path, metavar="ENGINE.yaml",
                   help="with --engine dask: a YAML file whose 'engine:' section describes the "
                   "cluster, e.g. {kind: slurm, cores: 8, memory: 16GB, walltime: '02:00:00', "
                   "jobs: 4, job_script_prologue: ['source ~/consensa/.venv/bin/activate']}; "
                   "the workers then run as SLURM or PBS jobs (dask-jobqueue)")
    p.add_argument("--shard-size", type=int, default=20, metavar="FILES",
                   help="transcript files per shard (default 20); a table or .qdpx of "
                   "more cases is cut into parts of this many cases, a shard each")
    p.add_argument("--retries", type=int, default=2,
                   help="times a failed shard is tried again (default 2)")
    p.set_defaults(func=cmd_precode)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="consensa", description=(
        "NLP-assisted theme discovery for Consensual Qualitative Research. "
        "It proposes; the judges decide."))
    parser.add_argument("--version", action="version", version=f"consensa {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only the results, warnings and errors: no progress lines "
                        "or bars")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", parents=[_QUIET], help="run the pipeline from a config file")
    p.add_argument("config", help="a YAML run config, e.g. configs/demo.yaml")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a setting, e.g. --set cluster.min_cluster_size=10 (repeatable)")
    p.add_argument("--out", help="the run folder to create (default: <output_dir>/<name>-<time>)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", parents=[_QUIET], help="check a config without running it")
    p.add_argument("config")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("batch", parents=[_QUIET],
                       help="run several configs, or a config's sweep: of settings",
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

    p = sub.add_parser("stability", parents=[_QUIET],
                       help="check how stable a run's themes are under resampling",
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

    p = sub.add_parser("compare", parents=[_QUIET], help="compare a run's themes with human codes",
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

    p = sub.add_parser("export", parents=[_QUIET],
                       help="export the codebook (.qdc), a project (.qdpx) for QDA software "
                       "(REFI-QDA), or tables (csv) for Taguette, R and SPSS",
                       description="From a run with a review: the codebook the judges agreed "
                       "(consensus names, rejected themes left out, merges, splits and moved "
                       "segments applied); while items are open it refuses and lists them "
                       "(--draft exports what stands, marked as a draft). From a run without "
                       "a review: Consensa's proposal, said so in the output. qdc: the "
                       "codebook. qdpx: the project, transcripts as text sources, every "
                       "segment of a category coded, notes, case variables and sets. csv: a "
                       "codebook Taguette imports (tag, description) and a case x category "
                       "matrix (counts and 0/1) for R and SPSS.")
    p.add_argument("kind", choices=("qdc", "qdpx", "csv"))
    p.add_argument("source", metavar="RUN_OR_CODEBOOK",
                   help="a run folder or its review/codebook.yaml (qdc also: themes.csv, a "
                   "table with a 'code' column, or a .qdpx)")
    p.add_argument("--out", help="the file to write (csv: the folder; default: "
                   "RUN/export/<name>-<agreed|draft|proposal>.qdc|.qdpx)")
    p.add_argument("--draft", action="store_true",
                   help="while the review has open items: export the consensus so far, open "
                   "items as proposed, marked as a draft")
    p.add_argument("--proposal", action="store_true",
                   help="export Consensa's proposal even though the run has a review")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", parents=[_QUIET],
                       help="the judges' review in the browser (a local web app)",
                       description="Open the review of a run in the browser: overview, themes "
                       "with their quotes in context, the judges' positions side by side, "
                       "consensus decisions, search, export. It reads and writes the same store "
                       "as the workbooks (RUN/review/decisions.sqlite). Prints an address with "
                       "a random access token; only that address opens the app.")
    p.add_argument("run", help="a run folder made by `consensa run`, or the output folder of "
                   "`consensa precode`: the review of its codebook's run, with a Queue page "
                   "to code the segments it queued")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default 127.0.0.1: this computer only); "
                   "0.0.0.0 shares it on the local network")
    p.add_argument("--port", type=int, default=0, help="the port (default: a free one)")
    p.add_argument("--judges", default="",
                   help="comma-separated judges to add to the panel (starts the review)")
    p.add_argument("--auditor", default="", help="comma-separated auditor(s) to add")
    p.set_defaults(func=cmd_serve)

    _add_review_parser(sub)
    _add_precode_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _logging_to_stderr(quiet=getattr(args, "quiet", False)):
            return args.func(args)
    except ConsensaError as exc:
        print(f"consensa: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except BrokenPipeError:
        # the output went into a pipe whose reader stopped (`... | head`): nothing to say
        # about a path or a disk; as Python's documentation does, stdout goes to devnull
        # so that the interpreter's own flush at exit does not fail in turn
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):       # a stdout that is no file (captured)
            pass
        return 141
    except OSError as exc:      # a folder that is a file, a full disk, no permission
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"consensa: error: {where}{exc.strerror or exc}\n  What to do: check that this "
              "path is a folder you can write to (or a file you can read), and that the disk "
              "is not full", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"consensa: interrupted{_interrupted(args)}", file=sys.stderr)
        return 130


#: what an interrupted command left, by command (``args.func``'s name), where it says
#: more than "interrupted"; an import says it from its store (:func:`_import_stopped`)
_INTERRUPTED = {
    "cmd_run": "; a run folder that was not finished was not written (embeddings computed "
               "so far are kept in the cache)",
    "cmd_batch": "; a run folder that was not finished was not written (embeddings computed "
                 "so far are kept in the cache)",
    # stopped before it set its own words (args.on_interrupt): nothing read, nothing stored
    "cmd_review_import": "; nothing of this import was stored",
}


def _interrupted(args: argparse.Namespace) -> str:
    """What an interrupted command left behind, after "interrupted" ("" when there is
    nothing to say): each command's own words, never another's (an import stores
    nothing of a run folder, nor computes embeddings)."""
    said = getattr(args, "on_interrupt", None)
    if said is not None:
        try:
            return f"; {said()}"
        except Exception:       # the store cannot be read now: say so rather than guess
            return "; whether it was stored cannot be told: see `consensa review status RUN`"
    return _INTERRUPTED.get(getattr(getattr(args, "func", None), "__name__", ""), "")


def _import_stopped(run_folder, started: str, what: str | None, check: str) -> str:
    """Whether an import stopped by Ctrl+C was stored, read from the review store: an
    import is one transaction, which a stop before its COMMIT rolls back and a stop
    after it leaves whole; its row in ``imports`` (``what``, at or after ``started``)
    tells which (``what`` None: a consensus workbook's, whose decisions the log has).
    ``run_folder`` is the store's run folder, or a callable giving it (None: the import
    stopped before it knew its store, and wrote nothing)."""
    import sqlite3

    from .review.store import db_path

    folder = run_folder() if callable(run_folder) else run_folder
    path = db_path(folder) if folder is not None else None
    if path is None or not path.is_file():
        return "nothing of this import was stored"
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT at, what FROM imports WHERE at >= ? ORDER BY import_id",
                           (started,)).fetchall()
        if what is None:    # a consensus workbook's decisions are logged, not an import
            rows = [(at, "") for (at,) in con.execute(
                "SELECT at FROM audit_log WHERE action='consensus' AND at >= ?", (started,))]
    finally:
        con.close()
    at = next((at for at, w in rows if str(w).startswith(what or "")), None)
    if at is None:
        return "nothing of this import was stored"
    return (f"the import had been stored whole (at {at[:19].replace('T', ' ')} UTC) "
            f"before the stop: {check} shows it")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
