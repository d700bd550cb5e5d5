"""Typed configurations: one idiom for protocol sections and training commands.

A configuration is a frozen dataclass whose fields carry their type, default, range and help in
one place (:func:`option`); :func:`parse_config` turns a mapping (a protocol section, a TOML file,
``--set`` overrides) into it. Validation is done by `pydantic <https://docs.pydantic.dev>`_ in
strict mode (no silent ``"3"`` -> 3, no bool for an int); the first problem becomes one
:class:`~campro_bench.errors.CamproError` line naming the key. Unknown keys are refused with the
known keys and a "did you mean" (``difflib``), because a misspelt key that is ignored runs the
wrong experiment silently. Example::

    @dataclass(frozen=True)
    class LinearConfig:
        steps: int = option(100, ge=1, le=100_000, help="SGD steps on the gallery features")
        lr: float = option(1.0, gt=0, le=100, help="learning rate")

    parse_config(LinearConfig, {"steps": 200}, "linear")       # LinearConfig(steps=200, lr=1.0)
    parse_config(LinearConfig, {"step": 200}, "linear")        # error: unknown linear key 'step'
    #   (did you mean 'steps'?); known keys: lr, steps
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

import pydantic
from pydantic import Field, TypeAdapter

from .errors import CamproError, InvalidFileError, MissingFileError

C = TypeVar("C")

# allow_inf_nan=False: every float is finite (NaN and infinity pass some range checks, or have none)
_STRICT = pydantic.ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True, allow_inf_nan=False)


def option(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None, help: str = "", **kwargs: Any) -> Any:
    """A dataclass field with its default, range (``ge``/``gt``/``le``/``lt``) and help text."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    metadata = {"bounds": bounds, "help": help}
    if callable(default) and not isinstance(default, (int, float, str, bool)):
        return dataclasses.field(default_factory=default, metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def option_like(cls: type, name: str, default: Any = dataclasses.MISSING) -> Any:
    """A field with the default, range and help of ``cls``'s field ``name``.

    For a key that one configuration exposes on behalf of another (a protocol's ``lr`` that is
    passed on to the fine-tuning config), so that its default and range are written once. ``default``
    replaces the source's default where the exposing protocol has its own (the range stays).
    """
    source = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if source is None:
        raise KeyError(f"{cls.__name__} has no field '{name}'")
    if default is dataclasses.MISSING:
        default = source.default if source.default is not dataclasses.MISSING else source.default_factory  # type: ignore[misc]
    return option(default, help=source.metadata.get("help", ""), **source.metadata.get("bounds", {}))


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known key, or an empty string."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_keys_error(unknown: Iterable[str], known: Iterable[str], what: str) -> CamproError:
    """One line: which keys are unknown, the closest known key, and every known key."""
    known = sorted(k for k in known if not k.startswith("_"))  # _source and such are internal
    parts = [f"'{k}'{did_you_mean(k, known)}" for k in sorted(unknown)]
    return CamproError(f"unknown {what} key {', '.join(parts)}; known keys: {', '.join(known)}")


def config_keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _validator(cls: type) -> TypeAdapter:
    cached = _VALIDATORS.get(cls)
    if cached is None:
        fields_spec: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            annotation = _resolved_types(cls)[f.name]
            default = (f.default if f.default is not dataclasses.MISSING
                       else f.default_factory() if f.default_factory is not dataclasses.MISSING  # type: ignore[misc]
                       else ...)
            fields_spec[f.name] = (annotation, Field(default, **f.metadata.get("bounds", {})))
        model = pydantic.create_model(f"{cls.__name__}Check", __config__=_STRICT, **fields_spec)
        cached = _VALIDATORS[cls] = TypeAdapter(model)
    return cached


_VALIDATORS: dict[type, TypeAdapter] = {}


def _resolved_types(cls: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def parse_config(cls: type[C], data: Mapping[str, Any] | None, what: str) -> C:
    """Build ``cls`` from ``data``; one :class:`CamproError` line for unknown keys, wrong types and ranges.

    A field whose type is a dataclass (a nested table, e.g. ``[pose]``) or a list of one (an array
    of tables, e.g. ``rows = [{...}, ...]``) is built from its mappings the same way; its keys are
    named dotted in messages (``pose.estimator``, ``rows[2].reference``).

    Args:
        cls: a dataclass whose fields are made with :func:`option` (plain fields work too).
        data: the keys given (missing keys take their defaults).
        what: what the keys configure, for messages (``"protocol"``, ``"train isp"``).
    """
    return _parse(cls, data, what, "")


def _parse(cls: type[C], data: Mapping[str, Any] | None, what: str, prefix: str) -> C:
    data = dict(data or {})
    known = config_keys(cls)
    unknown = [k for k in data if k not in known]
    if unknown:
        raise unknown_keys_error([prefix + k for k in unknown], [prefix + k for k in known], what)
    types = _resolved_types(cls)
    for key, value in data.items():
        data[key] = _parse_nested(types[key], value, what, prefix + key)
    try:
        checked = _validator(cls).validate_python(data)
    except pydantic.ValidationError as exc:
        raise CamproError(_first_error(exc, what, prefix)) from None
    values = {k: getattr(checked, k) for k in known}
    try:
        return cls(**values)
    except CamproError:
        raise
    except (TypeError, ValueError) as exc:
        raise CamproError(f"invalid {what} configuration: {exc}") from exc


def _parse_nested(annotation: Any, value: Any, what: str, key: str) -> Any:
    """``value`` built into ``annotation`` when that is a dataclass (or a list of one) and ``value`` a mapping."""
    import typing

    if dataclasses.is_dataclass(annotation) and isinstance(value, Mapping):
        return _parse(annotation, value, what, key + ".")
    item = typing.get_args(annotation)
    if typing.get_origin(annotation) is list and item and dataclasses.is_dataclass(item[0]) and isinstance(value, list):
        return [_parse(item[0], v, what, f"{key}[{i}].") if isinstance(v, Mapping) else v for i, v in enumerate(value)]
    return value


def _first_error(exc: pydantic.ValidationError, what: str, prefix: str = "") -> str:
    error = exc.errors()[0]
    key = prefix + ".".join(str(p) for p in error["loc"])
    given = error.get("input")
    return f"{what} key '{key}': {error['msg'].rstrip('.').lower()}, got {given!r}"


# ----------------------------------------------------------------------------------------
# TOML files and --set overrides (shared by `run` and the training commands)
# ----------------------------------------------------------------------------------------
def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A TOML file as a dict; a missing or invalid file is one error line."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"configuration file {path} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidFileError(f"{path}: invalid TOML ({exc})") from exc


def parse_value(text: str) -> Any:
    """Parse one override value as TOML; fall back to the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``data`` with ``dotted.key=value`` overrides applied (values parsed as TOML)."""
    import copy

    result = copy.deepcopy(dict(data))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CamproError(f"bad override '{item}': expected key=value, e.g. repeats=3")
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise CamproError(f"bad override '{item}': '{part}' is not a table")
            node = child
        node[parts[-1]] = parse_value(value.strip())
    return result


def validate_config(config: Any, what: str) -> None:
    """Check the values of an already built configuration (types and ranges), as :func:`parse_config` does.

    Called from ``__post_init__``, so a configuration built directly in code is held to the same rules.
    """
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    try:
        _validator(type(config)).validate_python(values)
    except pydantic.ValidationError as exc:
        raise CamproError(_first_error(exc, what)) from None
