"""The run folder: the one place that writes a run's files and reads them back.

Everything after a run (review, compare, export, stability, batch, the web app, the
command line) reads the run through :class:`RunFolder`, so what a run knew is saved
once, in one layout, and read back with its types:

=========================  ==========================================================
segments.parquet           the analysed segments (ASSIGNED_SEGMENT_COLUMNS), exact text
themes.parquet,            the run's tables (pipeline/types.py), typed: numbers as
domains.parquet,           numbers, list columns (keywords, cases, quote ids, theme
cqr_table.parquet,         ids) as lists
concepts.parquet
vectors.npy                the segments' embeddings (float32, segment order): the
                           stability check and the theme tree need no re-embedding
turns.parquet              every turn ingest read, interviewer turns included
                           (TURN_COLUMNS): the review app shows what was said around
                           a segment without reading the transcripts again
manifest.json              provenance; ``cache_dir`` is the cache's absolute location
cases.csv                  the case attributes the run read (a cases table, a QDA
                           project's case variables), when it read any
config.yaml                the run's resolved config
segments.csv, themes.csv,  for people: lists joined with "; ", text that would start a
domains.csv, cqr_table.csv spreadsheet formula quoted (pipeline/sheets.py)
concepts.csv, cqr_table.md
report.html                the report
sources/                   a de-identified run's case texts (what it analysed)
=========================  ==========================================================

A folder written before the typed tables, vectors and turns were saved holds only
the CSVs: its tables are read from them (the formula quote undone, list cells split
again). What it never saved is None here (:meth:`RunFolder.vectors`,
:meth:`RunFolder.turns`), and each reader says what it does without.

Steps that add to a finished folder (``consensa stability``) write through
:meth:`RunFolder.add_theme_column` and :meth:`RunFolder.write_report`, atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import ConsensaError, InputError
from .fsutil import atomic_write_bytes, atomic_write_text, text_sha256
from .sheets import restore_frame, split_list, to_csv
from .types import (
    CATEGORY_TABLE_COLUMNS,
    CONCEPT_COLUMNS,
    CORE_IDEA_TABLE_COLUMNS,
    CQR_COLUMNS,
    DOMAIN_COLUMNS,
    LIST_COLUMNS,
    SKIPPED_CSV,
    THEME_COLUMNS,
    TURN_COLUMNS,
    RunResult,
)

#: table -> (the typed file, the file for people, the documented columns)
TABLES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "themes": ("themes.parquet", "themes.csv", THEME_COLUMNS),
    "domains": ("domains.parquet", "domains.csv", DOMAIN_COLUMNS),
    "cqr": ("cqr_table.parquet", "cqr_table.csv", CQR_COLUMNS),
    "concepts": ("concepts.parquet", "concepts.csv", CONCEPT_COLUMNS),
    # a CQR run only (pipeline/analysis.py)
    "categories": ("categories.parquet", "categories.csv", CATEGORY_TABLE_COLUMNS),
    "core_ideas": ("core_ideas.parquet", "core_ideas.csv", CORE_IDEA_TABLE_COLUMNS),
}

#: the parts of a run folder, each with the files that hold it (the first found is read)
PARTS: dict[str, tuple[str, ...]] = {
    "manifest": ("manifest.json",),
    "config": ("config.yaml",),
    "segments": ("segments.parquet",),
    **{name: files[:2] for name, files in TABLES.items()},
}

#: what every finished run folder holds
REQUIRED = ("segments", "themes", "manifest", "config")

_HINT = "give the folder `consensa run` printed (it holds report.html)"

# Columns of the run's CSV tables that hold numbers or booleans (the rest are text):
# how a folder written before the typed tables is read back.
_INT_COLUMNS = {"theme_id", "domain_id", "n_segments", "n_cases", "n_reassigned", "n_themes",
                "cases_total"}
_FLOAT_COLUMNS = {"mean_strength", "similarity"}
_BOOL_COLUMNS = {"is_miscellaneous"}


def run_id_of(manifest: dict) -> str:
    """A run's identity: its config hash and start time (two runs of one config differ).

    Review workbooks and REFI-QDA GUIDs are keyed by it, so both must use this one.
    """
    return f"{manifest.get('config_sha256', '')}@{manifest.get('started_at', '')}"


def check_run_folder(folder: str | Path) -> Path:
    """The folder, if it is a finished Consensa run folder; else a clear InputError."""
    return RunFolder.open(folder).path


@dataclass
class Sources:
    """The case texts a run read, read again from their files (the REFI-QDA export and
    the placing of human codes need the whole texts: the run saved only its turns).

    A case's text is given only when its file is unchanged (sha256) and every segment
    of the run is found at its offsets in it; otherwise ``problems`` says why not.
    """

    texts: dict[str, str] = field(default_factory=dict)        # case id -> exact text
    problems: dict[str, str] = field(default_factory=dict)     # case id -> why not
    #: the turns of the texts read again (TURN_COLUMNS; for folders that saved none)
    turns: pd.DataFrame | None = None


class RunFolder:
    """One run folder on disk (see the module docstring for its files)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @classmethod
    def open(cls, path: str | Path, *, need: tuple[str, ...] = REQUIRED) -> RunFolder:
        """The run folder at ``path``; a clear InputError if it is none (or lacks a part
        named in ``need``, see :data:`PARTS`)."""
        folder = cls(path)
        if not folder.path.is_dir():
            raise InputError("no such run folder", path=folder.path, hint=_HINT)
        missing = [PARTS[p][-1] for p in need if not folder.has(p)]
        if missing:
            raise InputError(f"not a Consensa run folder (missing {', '.join(missing)})",
                             path=folder.path, hint=_HINT)
        return folder

    def has(self, part: str) -> bool:
        return any((self.path / f).is_file() for f in PARTS[part])

    @property
    def typed(self) -> bool:
        """Whether the folder keeps its tables typed (else: written before they were)."""
        return (self.path / TABLES["themes"][0]).is_file()

    # --- writing ---------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, result: RunResult, *,
               cache_dir: Path | None = None) -> RunFolder:
        """Write every output of a run into ``path``, which must not exist yet.

        The caller (``run``) builds the folder under a temporary name and renames it
        when complete, so the files here are written plainly, not one by one atomically.
        ``cache_dir`` (absolute) is recorded in the manifest as the run's cache.
        """
        from .config import REDACTED_CONFIG_HEADER, dump_yaml
        from .report.render import render_report
        from .stages.cqr import cqr_markdown

        folder = cls(path)
        folder.path.mkdir(parents=True)
        out = folder.path
        result.manifest["cache_dir"] = str(cache_dir) if cache_dir is not None else None
        seg = result.segments
        seg.to_parquet(out / "segments.parquet", index=False)      # the exact text
        to_csv(seg, out / "segments.csv", index=False)
        for name in TABLES:
            df = getattr(result, name)
            if df is None or (name == "concepts" and df.empty):
                continue          # a run without sensitizing concepts; a themes run's CQR tables
            (out / TABLES[name][0]).write_bytes(_parquet_bytes(df, LIST_COLUMNS[name]))
            to_csv(df, out / TABLES[name][1], index=False)
        (out / "cqr_table.md").write_text(cqr_markdown(result.cqr), encoding="utf-8")
        if result.vectors is not None:
            (out / "vectors.npy").write_bytes(_npy_bytes(result.vectors))
        if result.turns is not None:
            result.turns[list(TURN_COLUMNS)].to_parquet(out / "turns.parquet", index=False)
        if result.protocol is not None:      # the team edits it and passes it back
            (out / "protocol.yaml").write_text(result.protocol, encoding="utf-8")
        if result.prompts is not None:
            to_csv(result.prompts, out / "protocol_prompts.csv", index=False)
        if result.left_out is not None and len(result.left_out):
            # every turn and unit set aside, with its words: the notes count them and
            # name the first few places
            to_csv(result.left_out, out / SKIPPED_CSV, index=False)
        if result.cases is not None and len(result.cases.columns) > 1:
            to_csv(result.cases, out / "cases.csv", index=False)
        if result.llm_log is not None:       # every prompt and answer the run depends on
            (out / "llm_log.jsonl").write_text(result.llm_log, encoding="utf-8")
        removed = (result.manifest.get("deidentify") or {}).get("config_names_removed")
        header = REDACTED_CONFIG_HEADER if removed else ""
        (out / "config.yaml").write_text(header + dump_yaml(dict(result.config)), encoding="utf-8")
        (out / "report.html").write_text(render_report(result), encoding="utf-8")
        for rel, text in getattr(result, "files", {}).items():     # de-identified sources
            p = out / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(text.encode("utf-8"))
        folder.write_manifest(result.manifest)
        return folder

    def write_manifest(self, manifest: dict) -> None:
        """``manifest.json``, atomically."""
        atomic_write_text(self.path / "manifest.json",
                          json.dumps(manifest, indent=2, default=_json))
        self.__dict__["manifest"] = json.loads(json.dumps(manifest, default=_json))

    def write_report(self, result: RunResult) -> None:
        """``report.html`` again from ``result``, atomically."""
        from .report.render import render_report

        atomic_write_text(self.path / "report.html", render_report(result))

    def write_table(self, name: str, df: pd.DataFrame) -> None:
        """Replace one of the run's tables (:data:`TABLES`): the typed file and the CSV
        for people, each atomically."""
        typed_name, csv_name, _ = TABLES[name]
        atomic_write_bytes(self.path / typed_name, _parquet_bytes(df, LIST_COLUMNS[name]))
        atomic_write_text(self.path / csv_name, raw_to_csv(df))

    def add_theme_column(self, column: str, values: dict[int, str], default: str = "") -> None:
        """Add (or replace) one text column of the themes, atomically: in ``themes.csv``
        every other cell keeps its bytes; the typed table gains the column too."""
        path = self.path / "themes.csv"
        raw = read_raw_csv(path)
        ids = pd.to_numeric(raw["theme_id"], errors="coerce")
        raw[column] = [values.get(int(t), default) if pd.notna(t) else default for t in ids]
        typed_path = self.path / TABLES["themes"][0]
        if typed_path.is_file():
            themes = self.themes()
            themes[column] = [values.get(int(t), default) for t in themes["theme_id"]]
            atomic_write_bytes(typed_path, _parquet_bytes(themes, LIST_COLUMNS["themes"]))
        atomic_write_text(path, raw_to_csv(raw))

    # --- reading ---------------------------------------------------------------

    @cached_property
    def manifest(self) -> dict[str, Any]:
        return _read_json(self.path / "manifest.json")

    @cached_property
    def config(self) -> dict[str, Any]:
        """The run's resolved config as written ({} for a folder without config.yaml)."""
        import yaml

        from . import safeyaml

        path = self.path / "config.yaml"
        if not path.is_file():
            return {}
        try:
            data = safeyaml.load_file(path, what="run config") or {}
        except yaml.YAMLError as exc:
            raise InputError(f"could not be read ({type(exc).__name__})", path=path,
                             hint="run `consensa run` again to make a complete run folder") from exc
        if not isinstance(data, dict):
            raise InputError("is not a run config (not a mapping)", path=path,
                             hint="run `consensa run` again to make a complete run folder")
        return data

    @property
    def run_id(self) -> str:
        return run_id_of(self.manifest)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.path.name)

    @property
    def cache_dir(self) -> Path | None:
        """The run's cache folder, absolute; None when the run used none.

        Recorded in the manifest by the run. A folder written before that is read the
        way its run resolved it: the config's ``cache_dir`` against the manifest's
        ``base_dir`` (None when the folder records neither)."""
        if "cache_dir" in self.manifest:
            given = self.manifest["cache_dir"]
            return Path(given) if given else None
        raw = self.config.get("cache_dir")
        if not raw:
            return None
        rel = Path(str(raw)).expanduser()
        if rel.is_absolute():
            return rel
        base = self.manifest.get("base_dir")
        return Path(os.path.normpath(Path(str(base)) / rel)) if base else None

    def segments(self) -> pd.DataFrame:
        path = self.path / "segments.parquet"
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"could not be read ({type(exc).__name__}: {exc})", path=path,
                             hint="run `consensa run` again to make a complete run folder") from exc

    def table(self, name: str) -> pd.DataFrame:
        """One of the run's tables (:data:`TABLES`), typed, list columns as lists; an
        empty table with the documented columns when the folder has none."""
        typed_name, csv_name, columns = TABLES[name]
        lists = LIST_COLUMNS[name]
        if (self.path / typed_name).is_file():
            try:
                df = pd.read_parquet(self.path / typed_name)
            except (OSError, ValueError) as exc:
                raise InputError(f"could not be read ({type(exc).__name__}: {exc})",
                                 path=self.path / typed_name,
                                 hint="run `consensa run` again to make a complete run "
                                 "folder") from exc
            for col, kind in lists.items():
                if col in df.columns:
                    df[col] = [[kind(v) for v in cell] if cell is not None else []
                               for cell in df[col]]
            return df
        if not (self.path / csv_name).is_file():
            return pd.DataFrame(columns=list(columns))
        return read_csv_table(self.path / csv_name, name)

    def themes(self) -> pd.DataFrame:
        return self.table("themes")

    def domains(self) -> pd.DataFrame:
        return self.table("domains")

    def cqr(self) -> pd.DataFrame:
        return self.table("cqr")

    def concepts(self) -> pd.DataFrame:
        df = self.table("concepts")
        if "segment_ids" not in df.columns:     # a folder written before the column was
            df = df.assign(segment_ids=[[] for _ in range(len(df))])
        return df

    def vectors(self, n_segments: int | None = None) -> np.ndarray | None:
        """The segments' embeddings (float32, segment order); None for a folder written
        before they were saved. ``n_segments``: the rows they must have."""
        path = self.path / "vectors.npy"
        if not path.is_file():
            return None
        try:
            vectors = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"could not be read ({type(exc).__name__}: {exc})", path=path,
                             hint="run `consensa run` again to make a complete run folder") from exc
        if vectors.ndim != 2 or (n_segments is not None and len(vectors) != n_segments):
            raise InputError(f"holds {vectors.shape} vectors, not one per segment "
                             f"({n_segments} in segments.parquet)", path=path,
                             hint="run `consensa run` again to make a complete run folder")
        return vectors

    def turns(self) -> pd.DataFrame | None:
        """Every turn the run read (TURN_COLUMNS); None for a folder written before they
        were saved."""
        path = self.path / "turns.parquet"
        if not path.is_file():
            return None
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"could not be read ({type(exc).__name__}: {exc})", path=path,
                             hint="run `consensa run` again to make a complete run folder") from exc

    def result(self, vectors: np.ndarray | None = None,
               extra_theme_columns: pd.DataFrame | None = None) -> RunResult:
        """The folder as the :class:`RunResult` the report is rendered from.

        ``vectors`` (default: the saved ones) let the theme tree be drawn again; without
        them the report has no dendrogram. The manifest's ``write`` timing is left out:
        the run rendered its report before it was written, so the report shows the same
        stage times as the one the run wrote. ``extra_theme_columns`` (indexed by
        theme_id) are joined onto the themes for the report only.
        """
        segments = self.segments()
        if vectors is None:
            vectors = self.vectors(len(segments))
        themes = self.themes()
        if extra_theme_columns is not None and len(themes):
            extra = extra_theme_columns.drop(columns=[c for c in extra_theme_columns.columns
                                                      if c in themes.columns])
            themes = themes.join(extra, on="theme_id")
        manifest = dict(self.manifest)
        timings = manifest.get("timings")
        if isinstance(timings, dict):
            manifest["timings"] = {k: v for k, v in timings.items() if k != "write"}
        link = None
        if vectors is not None and "theme" in segments.columns:
            link = theme_linkage(vectors, segments["theme"].to_numpy())
        skipped = self.path / SKIPPED_CSV
        return RunResult(segments=segments, themes=themes, domains=self.domains(),
                         cqr=self.cqr(), concepts=self.concepts(), theme_linkage=link,
                         manifest=manifest, config=self.config, vectors=vectors,
                         turns=self.turns(), **self.cqr_parts(),
                         left_out=read_raw_csv(skipped) if skipped.is_file() else None)

    def cqr_parts(self) -> dict[str, Any]:
        """A CQR run's own parts (categories, core ideas, protocol), None where the
        folder has none (a themes run, or one written before them)."""
        parts: dict[str, Any] = {}
        for name in ("categories", "core_ideas"):
            have = any((self.path / f).is_file() for f in TABLES[name][:2])
            parts[name] = self.table(name) if have else None
        protocol = self.path / "protocol.yaml"
        parts["protocol"] = protocol.read_text(encoding="utf-8") if protocol.is_file() else None
        return parts

    def proposed_subcategories(self, detail: bool = False) -> list[dict]:
        """The subcategories a CQR run proposed ([] for a themes run): id, name, parent
        theme id and parent name, size and pole ("" but for a stance subcategory). The
        judges keep or drop each (an item of the review, ``subcategory:<id>``); a
        codebook or an export that leaves one out says so with this list. ``detail``
        adds what the review needs to make a kept one a category of the codebook: its
        segment ids, keywords, quotes and proposed definition."""
        have = any((self.path / f).is_file() for f in TABLES["categories"][:2])
        if not have:
            return []
        cats = self.table("categories")
        name_of = {int(c): str(n) for c, n, p in zip(cats["category_id"], cats["name"],
                                                       cats["parent_id"]) if int(p) < 0}
        theme_of = {int(c): int(t) for c, t in zip(cats["category_id"], cats["theme_id"])}
        out = []
        for r in cats[cats["parent_id"].astype(int) >= 0].to_dict("records"):
            p = int(r["parent_id"])
            pole = r.get("pole")
            entry = {"id": int(r["category_id"]), "name": str(r["name"]),
                     "parent_theme": theme_of.get(p, -1), "parent_name": name_of.get(p, ""),
                     "n_segments": int(r["n_segments"]), "n_cases": int(r["n_cases"]),
                     # a stance subcategory's pole ("helpful"): what its half of the
                     # category shares, which its phrase name seldom says
                     "pole": "" if pole is None or pd.isna(pole) else str(pole),
                     # the evidence the judges keep or drop it on, as the CQR table
                     # gives a category's: its label, the cases it counts, its flags
                     # and the label if reassigned outliers counted
                     **_sub_evidence(r)}
            if detail:
                definition = r.get("definition")
                entry.update(segment_ids=[str(s) for s in _listed(r.get("segment_ids"))],
                             keywords=[str(k) for k in _listed(r.get("keywords"))],
                             quote_ids=[str(q) for q in _listed(r.get("quote_ids"))],
                             definition="" if definition is None or pd.isna(definition)
                             else str(definition))
            out.append(entry)
        return out

    # --- the transcripts --------------------------------------------------------

    def input_path(self, item: dict) -> Path | None:
        """Where the run read one input (an entry of the manifest's ``inputs``), if it is
        still there: a de-identified case's text in the folder's ``sources/``, else the
        path as the run wrote it (relative paths against the run's ``base_dir``)."""
        given = str(item.get("path") or "")
        if not given:
            return None
        p = Path(given)
        if item.get("deidentified"):
            candidates = [self.path / p]
        elif p.is_absolute():
            candidates = [p]
        else:
            base = self.manifest.get("base_dir")
            # before base_dir was recorded: beside the folder, or the current folder
            candidates = [Path(str(base)) / p] if base else [self.path.parent / p, p]
        return next((c.resolve() for c in candidates if c.is_file()), None)

    def read_sources(self, segments: pd.DataFrame | None = None) -> Sources:
        """Each case's text, read again from its file the way the run read it (see
        :class:`Sources`).

        A de-identified run's sources (``sources/<case>.txt``) are the case texts
        themselves, written as UTF-8: they are read as they are, not parsed again as
        transcripts (the text of a .vtt or .srt has no speaker labels left to parse,
        and one file that fails to parse must not cost the others their exact text).
        """
        from .stages.ingest import IngestConfig, ingest

        seg = self.segments() if segments is None else segments
        inputs = [i for i in self.manifest.get("inputs") or [] if isinstance(i, dict)]
        section = dict(self.config.get("ingest") or {})

        why: dict[str, str] = {}                        # file -> why it was not read

        def read(files: list[Path]):
            """The corpus of ``files`` as the run read them, or None; each file not read
            is named in ``why`` with the reason (the problems below repeat it: "could not
            be read again" alone sent a team looking for a file that was there)."""
            try:
                cfg = IngestConfig.model_validate({**section, "paths": [str(f) for f in files],
                                                   "cases_table": None, "recursive": False})
                corpus = ingest(cfg, Path("/"))
            except ConsensaError as exc:
                notes = getattr(exc, "skipped", None) or []
                why.update({n.what: n.reason for n in notes if not n.kept})
                why.update({str(f): exc.reason for f in files if str(f) not in why})
                return None
            except ValueError as exc:               # the run's ingest section, refused now
                why.update({str(f): f"the run's ingest settings are not valid now ({exc})"
                            for f in files})
                return None
            why.update({n.what: n.reason for n in corpus.skipped if not n.kept})
            return corpus

        paths = {str(i.get("case_id")): self.input_path(i) for i in inputs}
        texts: dict[str, tuple[str, str]] = {}          # case id -> (text, sha256)
        turns = []
        plain = []
        for item in inputs:
            case_id, path = str(item.get("case_id")), paths[str(item.get("case_id"))]
            if path is None:
                continue
            if not item.get("deidentified"):
                plain.append(path)
                continue
            try:
                data = path.read_bytes()
                texts[case_id] = (data.decode("utf-8"), hashlib.sha256(data).hexdigest())
            except (OSError, UnicodeDecodeError):
                continue
            one = read([path])                # the turns' starts, where the text still parses
            if one is not None and len(one.sources) == 1 and \
                    next(iter(one.sources.values())).text == texts[case_id][0]:
                turns.append(one.turns.assign(case_id=case_id))
        corpus = read(sorted(set(plain))) if plain else None
        if corpus is not None:
            texts.update({c: (s.text, s.sha256) for c, s in corpus.sources.items()
                          if c not in texts})
            turns.append(corpus.turns)
        out = Sources(turns=pd.concat(turns, ignore_index=True) if turns else None)
        by_case = {str(i.get("case_id")): i for i in inputs}
        for case_id in sorted(set(seg["case_id"]) | set(by_case)):
            item = by_case.get(case_id, {})
            text, sha = texts.get(case_id, (None, None))
            rows = seg[seg["case_id"] == case_id]
            if text is None and paths.get(case_id) is None:
                out.problems[case_id] = "its file was not found"
            elif text is None:
                reason = why.get(str(paths[case_id]))
                out.problems[case_id] = (f"its file could not be read again: {reason}" if reason
                                         else "its file could not be read again")
            elif item.get("text_sha256") and text_sha256(text) != item["text_sha256"]:
                out.problems[case_id] = "its text has changed since the run (sha256 differs)"
            elif item.get("sha256") and sha != item.get("sha256") \
                    and not item.get("text_sha256"):
                # (a project's source: its own text is checked above, so a project the
                # team saved again after more coding still exports)
                out.problems[case_id] = "its file has changed since the run (sha256 differs)"
            elif any(text[int(s):int(e)] != t for s, e, t in
                     zip(rows["start_char"], rows["end_char"], rows["text"], strict=True)):
                out.problems[case_id] = "the text read again does not match the run's segments"
            else:
                out.texts[case_id] = text
        return out


# --- files --------------------------------------------------------------------------

def read_raw_csv(path: Path) -> pd.DataFrame:
    """A CSV as written, every cell a string ("" where empty): safe to write back unchanged.

    The run's CSVs carry a leading "'" on text that would start a spreadsheet formula
    (pipeline/sheets.py); it is taken off here, so the cells hold the exact text.
    """
    return restore_frame(pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False))


def raw_to_csv(df: pd.DataFrame) -> str:
    """``df`` as CSV text, text that would start a formula neutralised (the inverse of
    :func:`read_raw_csv`: the cells it did not change come out as they were read)."""
    buf = io.StringIO()
    to_csv(df, buf, index=False)
    return buf.getvalue()


def read_csv_table(path: Path, name: str) -> pd.DataFrame:
    """One of the run's tables (:data:`TABLES`) read from its CSV, as a folder written
    before the typed tables holds it (or a ``themes.csv`` given on its own): the
    formula quote undone, numbers and booleans typed, list cells split again."""
    df = _typed(read_raw_csv(path))
    for col, kind in LIST_COLUMNS[name].items():
        if col in df.columns:
            df[col] = [_items(cell, kind, path, col, i) for i, cell in enumerate(df[col])]
    return df


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Raw string cells of a run's CSV converted back to the types the run wrote."""
    df = df.copy()
    for col in df.columns:
        if col in _INT_COLUMNS:
            num = pd.to_numeric(df[col], errors="coerce")
            whole = num.notna().all() and bool((num % 1 == 0).all())
            df[col] = num.astype(np.int64) if whole else num
        elif col in _FLOAT_COLUMNS:
            df[col] = pd.to_numeric(df[col], errors="coerce")
        elif col in _BOOL_COLUMNS:
            df[col] = df[col].map(lambda v: {"true": True, "false": False}.get(str(v).lower()))
    return df


def _items(cell: str, kind: type, path: Path, column: str, row: int) -> list:
    """A list cell of an old CSV as the list the run joined into it."""
    parts = split_list(cell)
    if kind is str:
        return parts
    try:
        return [kind(p) for p in parts]
    except ValueError:
        raise InputError(f"row {row + 2}, column '{column}': {cell!r} is not a list of numbers "
                         "joined with ';'", path=path,
                         hint="restore the file as `consensa run` wrote it, or run again") from None


def _parquet_bytes(df: pd.DataFrame, lists: dict[str, type]) -> bytes:
    """``df`` as parquet, its list columns typed as lists of ``str``/``int`` (an empty
    table, or one whose lists are all empty, keeps the type too)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    for col, kind in lists.items():
        if col in table.column_names:
            item = pa.int64() if kind is int else pa.string()
            table = table.set_column(table.column_names.index(col), col,
                                     table.column(col).cast(pa.list_(item)))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _npy_bytes(vectors: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("not a Consensa run folder (missing manifest.json)", path=path.parent,
                         hint=_HINT) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"could not be read ({type(exc).__name__}: {exc})", path=path,
                         hint="run `consensa run` again to make a complete run folder") from exc
    if not isinstance(data, dict):
        raise InputError("is not a run manifest (not a JSON object)", path=path,
                         hint="run `consensa run` again to make a complete run folder")
    return data


def _json(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def theme_linkage(vectors: np.ndarray, theme: np.ndarray) -> np.ndarray | None:
    """The theme tree the run drew, computed again from the embeddings.

    Same computation as the domains stage (pipeline/stages/domains.py): average linkage,
    cosine distance, over the unit-length centroids of themes 0..k-1.
    """
    from scipy.cluster.hierarchy import linkage

    from .stages.cluster import centroids

    theme = np.asarray(theme, dtype=np.int64)
    k = int(theme.max()) + 1 if len(theme) and theme.max() >= 0 else 0
    if k < 2:
        return None
    link = linkage(centroids(vectors, theme, k).astype(np.float64), method="average",
                   metric="cosine")
    link[:, 2] = np.maximum(link[:, 2], 0.0)
    return link


def _sub_evidence(r: dict) -> dict:
    """A proposed subcategory's frequency evidence from its row of ``categories``:
    ``frequency_label``, ``n_counted_cases`` (None where the table has no counted
    cases), ``flags`` (list) and ``label_if`` (the label if reassigned outliers
    counted, "" where it is the same or the table does not say)."""
    def items(value) -> list[str]:
        if isinstance(value, str):    # a CSV cell: "T01; T02"
            return [v.strip() for v in value.split(";") if v.strip()]
        return [str(v) for v in _listed(value)]

    def text(value) -> str:
        return "" if value is None or (not isinstance(value, str) and pd.isna(value)) \
            else str(value)

    label = text(r.get("frequency_label"))
    other = text(r.get("label_if_reassigned_counted"))
    counted = r.get("counted_cases")
    return {"frequency_label": label,
            "n_counted_cases": None if counted is None or (
                not isinstance(counted, (str, list, tuple, np.ndarray)) and pd.isna(counted))
            else len(items(counted)),
            "flags": items(r.get("flags")),
            "label_if": other if other and other != label else ""}


def _listed(value) -> list:
    """A list cell of a table as a list: a list or an array as it is, nothing (None, a
    missing value) as []; the typed tables hold lists, so text is one item."""
    if value is None:
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    return [] if pd.isna(value) else [value]
