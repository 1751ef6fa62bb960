"""Registered, versioned stage implementations.

A config names an implementation ("consensa.UMAP.v1") and gives its parameters
next to the name. The parameters are validated against the implementation's
``__init__`` signature (its type hints), with unknown keys refused, so a config
written today keeps its meaning when the code moves on: a changed behaviour gets
a new version name, the old one stays registered.

Implementations follow the scikit-learn contract: ``__init__`` takes keyword
arguments and stores them unchanged; the work and the validation happen in the
stage method (``fit``, ``encode``, ``segment``); what is learned ends in ``_``.
"""

from __future__ import annotations

import inspect
import reprlib
import typing
from typing import Annotated, Any, Callable, TypeVar

import pydantic
from pydantic import Field

from .errors import ConfigError

T = TypeVar("T")

KINDS = ("segmenter", "embedder", "reducer", "clusterer", "namer")

#: ``random_state`` of a stage; numpy's and scikit-learn's generators take seeds
#: from 0 to 2**32 - 1 and raise deep inside the library for any other
MAX_SEED = 2**32 - 1
RandomState = Annotated[int | None, Field(ge=0, le=MAX_SEED, description=(
    "the seed of this stage; null (or left out) takes the config's seed"))]


class Registry:
    """Name -> implementation, for one kind of stage."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, type] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def add(cls: type[T]) -> type[T]:
            if name in self._items and self._items[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = cls
            cls.registered_name = name  # type: ignore[attr-defined]
            return cls
        return add

    def names(self) -> list[str]:
        load_builtins()
        return sorted(self._items)

    def get(self, name: str) -> type:
        load_builtins()
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}",
                hint=f"use one of: {', '.join(self.names())}") from None

    def params_model(self, name: str) -> type[pydantic.BaseModel]:
        """A pydantic model of the implementation's keyword arguments."""
        return params_model_for(self.get(name))

    def build(self, name: str, params: dict[str, Any], *, seed: int | None = None,
              where: str = "") -> Any:
        """Validate ``params`` and construct the implementation.

        ``seed`` fills ``random_state`` when the implementation takes one and the
        config does not set it, so one seed in the config makes the run repeatable.
        """
        cls = self.get(name)
        model = params_model_for(cls)
        try:
            checked = model.model_validate(params)
        except pydantic.ValidationError as exc:
            raise config_error_from(exc, where=where, model=model) from None
        kwargs = {k: getattr(checked, k) for k in model.model_fields}
        if seed is not None and "random_state" in kwargs and kwargs["random_state"] is None:
            kwargs["random_state"] = seed
        return cls(**kwargs)


def params_model_for(cls: type) -> type[pydantic.BaseModel]:
    cached = cls.__dict__.get("_params_model")
    if cached is not None:
        return cached
    # include_extras keeps Annotated[..., Field(ge=...)]: the bounds a stage declares
    # in its signature are checked here, with errors that name the config key
    hints = typing.get_type_hints(cls.__init__, include_extras=True)
    fields: dict[str, Any] = {}
    for pname, p in inspect.signature(cls.__init__).parameters.items():
        if pname == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[pname] = (hints.get(pname, Any), default)
    model = pydantic.create_model(
        f"{cls.__name__}Params",
        __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields)
    cls._params_model = model  # type: ignore[attr-defined]
    return model


def get_params(obj: Any) -> dict[str, Any]:
    """The constructor parameters of a stage object, as stored by ``__init__``."""
    return {k: getattr(obj, k) for k in params_model_for(type(obj)).model_fields}


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
        else:
            msg = f"'{key}': {err['msg']} (got {_SHORT.repr(err.get('input'))})"
            about = _field_description(model, err["loc"]) if model else None
            if about:
                msg += f"; {about}"
        lines.append(msg)
    return ConfigError("; ".join(lines), path=path,
                       hint="fix the key(s) above; `consensa validate CONFIG` checks a config without running it")


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


def load_builtins() -> None:
    """Import the modules that register Consensa's own implementations."""
    from .stages import (  # noqa: F401
        cluster,
        embed,
        llm,  # noqa: F401
        reduce,
        segment,
    )


segmenters = Registry("segmenter")
embedders = Registry("embedder")
reducers = Registry("reducer")
clusterers = Registry("clusterer")
namers = Registry("namer")

REGISTRIES: dict[str, Registry] = {
    "segmenter": segmenters, "embedder": embedders,
    "reducer": reducers, "clusterer": clusterers, "namer": namers,
}
