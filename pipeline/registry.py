"""Registered, versioned stage implementations.

A config names a version ("consensa.UMAP.v2") and gives its parameters next to
the name. The parameters are validated against the implementation's ``__init__``
signature (its type hints), with unknown keys refused, so a config written today
keeps its meaning when the code moves on: a changed behaviour gets a new version
name, the old one stays registered.

A version is a *preset*: a class and the defaults the name pins, given where the
class is registered::

    @clusterers.register("consensa.HDBSCAN.v1", max_cluster_share=None)
    @clusterers.register("consensa.HDBSCAN.v2", max_cluster_share=0.25)
    class HDBSCANClusterer: ...

Where versions behave differently, the difference is a parameter of the one
class, and each version pins it. Versions are not subclasses of each other, so
editing one version never changes another. A version's parameter model is the
class's signature with the version's defaults laid over it: ``consensa
validate``, the run folder's config.yaml and the contract suite all show each
version's own defaults.

Consensa's own stages live in the modules :data:`BUILTIN_MODULES` names; they
are imported on the first lookup of a name, not when this module is imported (the
stage modules import this one to register). Stages from other packages are found
the same way, through entry points in the group ``consensa.stages``: each names a
module whose import registers its stages. In the other package's
``pyproject.toml``::

    [project.entry-points."consensa.stages"]
    my_stages = "my_package.stages"

Implementations follow the scikit-learn contract: ``__init__`` takes keyword
arguments and stores them unchanged; the work and the validation happen in the
stage method (``fit``, ``encode``, ``segment``); what is learned ends in ``_``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import reprlib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Annotated, Any, TypeVar

import pydantic
from pydantic import Field

from .errors import ConfigError

T = TypeVar("T")
log = logging.getLogger("consensa.registry")

#: Consensa's own stage modules, imported on the first lookup (:func:`load_stages`)
BUILTIN_MODULES = (".stages.segment", ".stages.embed", ".stages.reduce", ".stages.cluster",
                   ".stages.llm")
#: the entry-point group through which other packages add stages
ENTRY_POINT_GROUP = "consensa.stages"


@dataclass(frozen=True)
class LocalPath:
    """Marks a stage parameter that names a file or folder on this machine, e.g.
    ``Annotated[str, LocalPath(names=("all-MiniLM-L6-v2",))]``: a relative value is
    read from the config's folder (:func:`pipeline.config.resolve_paths`), like
    every other path in a config. ``names``: values that name something packaged,
    not a path, and are kept as they are."""

    names: tuple[str, ...] = ()


KINDS = ("segmenter", "embedder", "reducer", "clusterer", "namer")

#: ``random_state`` of a stage; numpy's and scikit-learn's generators take seeds
#: from 0 to 2**32 - 1 and raise deep inside the library for any other
MAX_SEED = 2**32 - 1
RandomState = Annotated[int | None, Field(ge=0, le=MAX_SEED, description=(
    "the seed of this stage; null (or left out) takes the config's seed"))]


@dataclass(frozen=True)
class Version:
    """A registered name: the class that implements it and the defaults it pins."""

    name: str
    cls: type
    defaults: Mapping[str, Any]


class Registry:
    """Name -> version (an implementation and its defaults), for one kind of stage."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Version] = {}
        self._models: dict[str, type[pydantic.BaseModel]] = {}

    def register(self, name: str, **defaults: Any) -> Callable[[type[T]], type[T]]:
        """Register ``cls`` under ``name`` with ``defaults`` laid over its signature's.

        Stack the decorator to register several versions of one class; each should
        pin every parameter in which the versions differ. A default for a parameter
        the class does not take is refused here, at import, not in a user's run.
        """
        def add(cls: type[T]) -> type[T]:
            unknown = set(defaults) - set(params_model_for(cls).model_fields)
            if unknown:
                raise ValueError(f"{self.kind} {name!r}: {cls.__name__} takes no "
                                 f"parameter {', '.join(sorted(unknown))}")
            version = Version(name, cls, MappingProxyType(dict(defaults)))
            known = self._items.get(name)
            if known is not None and (known.cls is not cls or known.defaults != version.defaults):
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = version
            return cls
        return add

    def names(self) -> list[str]:
        load_stages()
        return sorted(self._items)

    def version(self, name: str) -> Version:
        """The version registered as ``name``; a ConfigError listing the names if none."""
        if name not in self._items:
            load_stages()
        try:
            return self._items[name]
        except KeyError:
            hint = f"use one of: {', '.join(self.names())}"
            if _broken:
                hint += ("; these packages of stages could not be loaded: "
                         + "; ".join(f"{k} ({v})" for k, v in _broken.items()))
            raise ConfigError(f"unknown {self.kind} {name!r}", hint=hint) from None

    def get(self, name: str) -> type:
        """The class that implements ``name``."""
        return self.version(name).cls

    def defaults(self, name: str) -> dict[str, Any]:
        """Every parameter's default under ``name``: the class's, with the version's
        laid over them (a required parameter is left out)."""
        model = self.params_model(name)
        return {k: f.default for k, f in model.model_fields.items() if not f.is_required()}

    def preset(self, name: str) -> Callable[..., Any]:
        """A constructor of ``name``: its class with the version's defaults, which
        keyword arguments override (for code that builds a stage without a config)."""
        version = self.version(name)

        def make(**params: Any) -> Any:
            return version.cls(**{**version.defaults, **params})
        make.__name__ = make.__qualname__ = name
        make.__doc__ = f"{version.cls.__name__} with the defaults of {name}."
        return make

    def params_model(self, name: str) -> type[pydantic.BaseModel]:
        """A pydantic model of the version's keyword arguments and their defaults."""
        version = self.version(name)
        model = self._models.get(name)
        if model is None:
            model = self._models[name] = params_model_for(version.cls, version.defaults)
        return model

    def path_params(self, name: str) -> dict[str, LocalPath]:
        """The version's parameters that name local files (:class:`LocalPath`)."""
        out = {}
        for key, field in self.params_model(name).model_fields.items():
            marker = next((m for m in field.metadata if isinstance(m, LocalPath)), None)
            if marker is not None:
                out[key] = marker
        return out

    def build(self, name: str, params: dict[str, Any], *, seed: int | None = None,
              where: str = "") -> Any:
        """Validate ``params`` and construct the implementation.

        Every parameter is passed, the version's defaults included, so the object
        says what it was built with (:func:`get_params`) whatever its class's own
        defaults. ``seed`` fills ``random_state`` when the implementation takes one
        and the config does not set it, so one seed in the config makes the run
        repeatable.
        """
        cls = self.get(name)
        model = self.params_model(name)
        try:
            checked = model.model_validate(params)
        except pydantic.ValidationError as exc:
            raise config_error_from(exc, where=where, model=model) from None
        kwargs = {k: getattr(checked, k) for k in model.model_fields}
        if seed is not None and "random_state" in kwargs and kwargs["random_state"] is None:
            kwargs["random_state"] = seed
        return cls(**kwargs)


def params_model_for(cls: type, defaults: Mapping[str, Any] | None = None
                     ) -> type[pydantic.BaseModel]:
    """A pydantic model of ``cls.__init__``'s keyword arguments, from its signature;
    ``defaults`` (a version's) replace the signature's defaults."""
    cached = cls.__dict__.get("_params_model")
    if cached is not None and not defaults:
        return cached
    # include_extras keeps Annotated[..., Field(ge=...)]: the bounds a stage declares
    # in its signature are checked here, with errors that name the config key
    hints = typing.get_type_hints(cls.__init__, include_extras=True)
    fields: dict[str, Any] = {}
    for pname, p in inspect.signature(cls.__init__).parameters.items():
        if pname == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = ... if p.default is inspect.Parameter.empty else p.default
        if defaults and pname in defaults:
            default = defaults[pname]
        fields[pname] = (hints.get(pname, Any), default)
    validators = {}
    check = getattr(cls, "params_problem", None)
    if check is not None:
        # a rule between parameters (min <= target <= max) that no single field's bounds
        # can state: checked with the rest, so `consensa validate` refuses what the
        # stage would refuse at run time, naming the keys
        def _between(self):
            problem = check({k: getattr(self, k) for k in type(self).model_fields})
            if problem:
                raise ValueError(problem)
            return self

        validators["params_between"] = pydantic.model_validator(mode="after")(_between)
    model = pydantic.create_model(
        f"{cls.__name__}Params",
        __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        __validators__=validators or None,
        **fields)
    if not defaults:
        cls._params_model = model  # type: ignore[attr-defined]
    return model


def get_params(obj: Any) -> dict[str, Any]:
    """The constructor parameters of a stage object, as stored by ``__init__``."""
    return {k: getattr(obj, k) for k in params_model_for(type(obj)).model_fields}


def clone(obj: Any) -> Any:
    """A new, unfitted stage with the same parameters (deep copies), as scikit-learn's
    ``clone``: for code handed a stage that needs a fresh one like it, without the
    state the original learned (the attributes ending in ``_``). The contract suite
    checks that every registered stage clones this way."""
    import copy

    return type(obj)(**copy.deepcopy(get_params(obj)))


def config_error_from(exc: pydantic.ValidationError, *, where: str = "",
                      model: type[pydantic.BaseModel] | None = None,
                      path: str | None = None) -> ConfigError:
    """Turn pydantic's error list into one message naming each key and the fix."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        key = f"{where}.{loc}" if where and loc else (where or loc)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, err["loc"][:-1]) if model else []
            msg = f"'{key}' is not a known setting"
            if allowed:
                msg += f" (allowed here: {', '.join(allowed)})"
        elif err["type"] == "missing":
            msg = f"'{key}' is required"
        elif err["type"] == "value_error" and not err["loc"]:
            # a rule between a section's keys (params_problem): its message names them
            msg = f"'{key}': {err['msg'].removeprefix('Value error, ')}"
        else:
            said = err["msg"]
            if err["type"] in _LIST_TYPES and isinstance(err.get("input"), str):
                # "a valid tuple" says nothing to a researcher: one value wants brackets
                said = f"a list is wanted here, such as [{err['input']}]"
            msg = f"'{key}': {said} (got {_SHORT.repr(err.get('input'))})"
            about = _field_description(model, err["loc"]) if model else None
            if about:
                msg += f"; {about}"
        lines.append(msg)
    error = ConfigError("; ".join(lines), path=path,
                        hint="fix the key(s) above; `consensa validate CONFIG` checks a config without running it")
    error.problems = lines  # one a key, for a caller that lists several sections' problems
    return error


#: pydantic's error types for a value that should have been a list
_LIST_TYPES = ("list_type", "tuple_type", "set_type", "frozen_set_type")

#: the refused value as the message shows it: a few items and characters, never a
#: whole list of thousands of names
_SHORT = reprlib.Repr()
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 5
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlevel = 3


def _field_description(model: type[pydantic.BaseModel], loc: tuple) -> str | None:
    """The description of the setting at ``loc`` (what it means, what null means),
    added to the error so the fix is in the message."""
    current: Any = model
    field = None
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        field = fields.get(part) if fields else None
        if field is None:
            return None
        current = _unwrap_model(field.annotation)
    return field.description if field is not None else None


def _allowed_keys(model: type[pydantic.BaseModel], loc: tuple) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _unwrap_model(field.annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else []


def _unwrap_model(annotation: Any) -> Any:
    if inspect.isclass(annotation) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


_loaded = False
_loading = False
#: entry points whose import failed -> why; named when a config asks for a missing name
_broken: dict[str, str] = {}


def load_stages() -> None:
    """Import the modules that register stages, once: Consensa's own
    (:data:`BUILTIN_MODULES`), then those that other packages declare as entry
    points in the group :data:`ENTRY_POINT_GROUP`.

    An outside package that fails to import is logged and left out, so a broken
    plugin does not stop runs that do not use it; a config naming one of its
    stages gets an error that names the package and why it failed.
    """
    global _loaded, _loading
    if _loaded or _loading:        # a stage module looking a name up while it is imported
        return
    _loading = True
    try:
        for module in BUILTIN_MODULES:
            importlib.import_module(module, __package__)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()
            except Exception as exc:  # any error of another package's code
                _broken[f"{ep.name} = {ep.value}"] = f"{type(exc).__name__}: {exc}"
                log.warning("the stages of %s = %s were not loaded (%s: %s)",
                            ep.name, ep.value, type(exc).__name__, exc)
        _loaded = True
    finally:
        _loading = False


segmenters = Registry("segmenter")
embedders = Registry("embedder")
reducers = Registry("reducer")
clusterers = Registry("clusterer")
namers = Registry("namer")

REGISTRIES: dict[str, Registry] = {
    "segmenter": segmenters, "embedder": embedders,
    "reducer": reducers, "clusterer": clusterers, "namer": namers,
}
