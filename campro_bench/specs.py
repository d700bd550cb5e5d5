"""Spec strings: how anything registered is named, with options, on the command line.

A spec is ``name`` or ``name:key=value,key=value`` (``lowres:factor=16``, ``mtcnn:onet=0.8``).
:func:`build_from_spec` looks the name up in a registry and calls the factory with the options
converted to the types annotated on its signature; unknown names, unknown options and values of
the wrong type each fail with one line.
"""

from __future__ import annotations

import inspect
import json
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
            options[key.strip()] = value.strip()
    if not name:
        raise CamproError(f"empty {kind} name in '{spec}'")
    return name, options


def convert_option(value: Any, annotation: Any, key: str, spec: str, kind: str = "protector") -> Any:
    """Convert one string option to the annotated type (int, float, bool, str, Path, unions)."""
    if not isinstance(value, str) or annotation in (inspect.Parameter.empty, Any, str):
        return value
    origin = typing.get_origin(annotation)
    candidates = typing.get_args(annotation) if origin in (typing.Union, types.UnionType) else (annotation,)
    candidates = tuple(c for c in candidates if c is not type(None))
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
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: pass option values through as strings
        hints = {}
    signature = inspect.signature(target)
    accepted = [p for p in signature.parameters if p not in ("self", "args", "kwargs")]
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    kwargs: dict[str, Any] = dict(context)
    for key, value in options.items():
        if key in context:
            raise CamproError(f"{kind} '{name}': option '{key}' cannot be given in a spec")
        if key not in accepted and not has_var_kw:
            raise CamproError(f"{kind} '{name}' has no option '{key}'; its options: {', '.join(accepted) or '(none)'}")
        kwargs[key] = convert_option(value, hints.get(key, inspect.Parameter.empty), key, text, kind)
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
