"""Spec strings: how anything registered is named, with options, on the command line.

A spec is ``name`` or ``name:key=value,key=value`` (``lowres:factor=16``, ``mtcnn:onet=0.8``).
:func:`build_from_spec` looks the name up in a registry and calls the factory with the options
converted to the types annotated on its signature; unknown names, unknown options, an option
given twice and values of the wrong type each fail with one line.

Numbers: every numeric option must be finite, and within the range declared beside it on the
factory's signature as pydantic constraints, e.g. ``sigma: Annotated[float, Field(gt=0, le=1000)]``
(:func:`declared_range` reads them; a refusal names the range). This is checked here, at the one
door every spec goes through, before anything is built, so ``protect``, ``run``, ``audit`` and
the training commands apply the same rule.
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import CamproError
from .registry import Registry

T = TypeVar("T")


def parse_spec(spec: str, kind: str = "protector") -> tuple[str, dict[str, str]]:
    """Split ``name:key=value,key=value`` into the name and a dict of string options."""
    name, _, rest = spec.strip().partition(":")
    options: dict[str, str] = {}
    if rest:
        for item in rest.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise CamproError(
                    f"bad {kind} option '{item}' in '{spec}': expected key=value, e.g. lowres:factor=16"
                )
            key = key.strip()
            if key in options:
                raise CamproError(f"{kind} option '{key}' is given twice in '{spec}'; give each option once")
            options[key] = value.strip()
    if not name:
        raise CamproError(f"empty {kind} name in '{spec}'")
    return name, options


def convert_option(value: Any, annotation: Any, key: str, spec: str, kind: str = "protector") -> Any:
    """Convert one string option to the annotated type (int, float, bool, str, Path, unions)."""
    annotation = _strip_annotated(annotation)
    if not isinstance(value, str) or annotation in (inspect.Parameter.empty, Any, str):
        return value
    candidates = tuple(_strip_annotated(c) for c in _union_members(annotation) if c is not type(None))
    for cand in candidates:
        try:
            if cand is bool:
                low = value.lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if cand in (int, float, str):
                return cand(value)
            if cand is Path:
                return Path(value)
        except ValueError:
            continue
    expected = " or ".join(getattr(c, "__name__", str(c)) for c in candidates)
    raise CamproError(f"{kind} option {key}={value!r} in '{spec}' has the wrong type (expected {expected})")


def _union_members(annotation: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(annotation)
    return typing.get_args(annotation) if origin in (typing.Union, types.UnionType) else (annotation,)


def _strip_annotated(annotation: Any) -> Any:
    """``int`` for ``Annotated[int, ...]``; anything else as it is."""
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation


def declared_range(annotation: Any) -> dict[str, float]:
    """The bounds (``gt``, ``ge``, ``lt``, ``le``) declared on an option's annotation.

    Read from ``Annotated[T, Field(ge=...)]`` or ``Annotated[T, annotated_types.Interval(...)]``,
    also inside ``Optional``; an option without one has no range beyond finiteness.
    """
    bounds: dict[str, float] = {}
    for member in _union_members(annotation):
        if typing.get_origin(member) is not typing.Annotated:
            continue
        for meta in member.__metadata__:
            for item in getattr(meta, "metadata", None) or [meta]:  # pydantic's FieldInfo keeps them in .metadata
                for bound in ("gt", "ge", "lt", "le"):
                    if getattr(item, bound, None) is not None:
                        bounds[bound] = getattr(item, bound)
    return bounds


def range_text(bounds: dict[str, float]) -> str:
    """``[1, 1001]``, ``(0, 1000]``, ``>= 0``: a declared range as people write it."""
    low = ("(", bounds["gt"]) if "gt" in bounds else ("[", bounds["ge"]) if "ge" in bounds else None
    high = (")", bounds["lt"]) if "lt" in bounds else ("]", bounds["le"]) if "le" in bounds else None
    if low and high:
        return f"{low[0]}{_number(low[1])}, {_number(high[1])}{high[0]}"
    if low:
        return f"{'>' if low[0] == '(' else '>='} {_number(low[1])}"
    if high:
        return f"{'<' if high[0] == ')' else '<='} {_number(high[1])}"
    return "any finite number"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def is_numeric(annotation: Any) -> bool:
    """Whether an option annotated so takes an int or a float (``Optional`` and constraints aside)."""
    return any(_strip_annotated(m) in (int, float) for m in _union_members(annotation))


def check_number(value: Any, annotation: Any) -> str | None:
    """Why ``value`` breaks the numeric rule for an option annotated ``annotation``, or ``None``.

    The rule: a number (not a bool) must be finite and inside the declared range; other values
    are not numbers and are left to the type conversion.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    bounds = declared_range(annotation)
    where = f"; allowed: {range_text(bounds)}" if bounds else ""
    if not math.isfinite(float(value)):
        return f"must be a finite number{where}"
    v = float(value)
    inside = (v > bounds.get("gt", -math.inf) and v >= bounds.get("ge", -math.inf)
              and v < bounds.get("lt", math.inf) and v <= bounds.get("le", math.inf))
    return None if inside else f"is out of range; allowed: {range_text(bounds)}"


def factory_options(factory: Any) -> dict[str, tuple[Any, Any]]:
    """A factory's options as ``{name: (annotation with its constraints, default)}``."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # unresolvable annotations: pass option values through as strings
        hints = {}
    return {name: (hints.get(name, inspect.Parameter.empty), p.default)
            for name, p in inspect.signature(target).parameters.items()
            if name not in ("self", "args", "kwargs") and p.kind is not inspect.Parameter.VAR_KEYWORD}


def build_from_spec(registry: Registry[Any], spec: str | dict[str, Any], base: type[T] | None, kind: str,
                    **context: Any) -> T:
    """Build the registered object a spec names (string, or ``{"name": ..., **options}``).

    ``context`` (e.g. ``models_dir``, ``cache_dir``, ``device``) is passed to the factory as it is;
    spec options are converted to the factory's annotated types. With ``base``, the result must
    be an instance of it. The object gets the registry name as its ``name``.
    """
    if isinstance(spec, dict):
        options = dict(spec)
        name = str(options.pop("name", ""))
        text = json.dumps(spec, default=str)
    else:
        name, options = parse_spec(spec, kind)
        text = spec
    factory = registry.get(name)
    target = factory.__init__ if inspect.isclass(factory) else factory
    declared = factory_options(factory)
    accepted = list(declared)
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(target).parameters.values())
    kwargs: dict[str, Any] = dict(context)
    for key, value in options.items():
        if key in context:
            raise CamproError(f"{kind} '{name}': option '{key}' cannot be given in a spec")
        if key not in accepted and not has_var_kw:
            raise CamproError(f"{kind} '{name}' has no option '{key}'; its options: {', '.join(accepted) or '(none)'}")
        annotation = declared.get(key, (inspect.Parameter.empty, None))[0]
        kwargs[key] = convert_option(value, annotation, key, text, kind)
        problem = check_number(kwargs[key], annotation)
        if problem:
            raise CamproError(f"{kind} '{name}' option {key}={value} in '{text}' {problem}")
    try:
        obj = factory(**kwargs)
    except CamproError:
        raise
    except (TypeError, ValueError) as exc:
        raise CamproError(f"cannot build {kind} '{text}': {exc}") from exc
    if base is not None and not isinstance(obj, base):
        raise CamproError(f"{kind} '{name}' ({registry.origin(name)}) did not build a {base.__name__}")
    canonical = registry.entry(name).name
    if base is not None and getattr(obj, "name", None) != canonical:
        obj.name = canonical  # an object built by a shared factory (ONNX files, official checkpoints)
    return obj
