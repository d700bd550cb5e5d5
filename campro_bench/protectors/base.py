"""The protector contract and how protectors are named on the command line.

A protector is what a camera-side anti-facial-recognition method does to the camera's output:
a function of a batch of sRGB images ``N x 3 x H x W`` (float, [0, 1]) that returns a batch of the
same shape, range and device. It declares its registered name, its parameters (a JSON-serialisable
config that fully reproduces it) and whether gradients flow through it.

Protectors are named by *spec strings*: ``name`` or ``name:key=value,key=value``, for example
``lowres:factor=16`` or ``defocus:kernel=25,sigma=7``. Option values are converted to the types
annotated on the protector's ``__init__``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import CamproError
from ..registries import PROTECTORS


class Protector(nn.Module):
    """Base class of every protector.

    Subclasses set ``name`` (the registry name) and ``differentiable``, implement
    :meth:`protect`, and return their constructor arguments from :meth:`params`.
    """

    name: ClassVar[str] = "protector"
    differentiable: ClassVar[bool] = False

    def protect(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this protector (JSON-serialisable)."""
        return {}

    # ------------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_image_batch(images)
        return self.protect(images)

    def config(self) -> dict[str, Any]:
        """Name + parameters: what a manifest records and :func:`build_protector` accepts."""
        return {"name": self.name, **self.params()}

    def spec(self) -> str:
        """The spec string that rebuilds this protector."""
        params = self.params()
        if not params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_format_value(v)}" for k, v in params.items())

    def fingerprint(self) -> str:
        """A short hash identifying this exact transform (used as a cache key)."""
        payload = json.dumps(self.fingerprint_payload(), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def fingerprint_payload(self) -> dict[str, Any]:
        """What the fingerprint hashes; protectors with file-backed weights add their content."""
        return self.config()

    def extra_repr(self) -> str:
        return self.spec()


def check_image_batch(images: torch.Tensor) -> None:
    """Reject anything that is not a float ``N x 3 x H x W`` batch."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"protectors take torch tensors, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"protectors take N x 3 x H x W batches, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"protectors take float images in [0, 1], got dtype {images.dtype}")


def _format_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``name:key=value,key=value`` into the name and a dict of string options."""
    name, _, rest = spec.strip().partition(":")
    options: dict[str, str] = {}
    if rest:
        for item in rest.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise CamproError(
                    f"bad protector option '{item}' in '{spec}': expected key=value, "
                    "e.g. lowres:factor=16"
                )
            options[key.strip()] = value.strip()
    if not name:
        raise CamproError(f"empty protector name in '{spec}'")
    return name, options


def _convert(value: Any, annotation: Any, key: str, spec: str) -> Any:
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
    raise CamproError(f"protector option {key}={value!r} in '{spec}' is not a valid {expected}")


def build_protector(spec: str | dict[str, Any] | Protector) -> Protector:
    """Build a protector from a spec string, a config dict (``{"name": ..., **params}``) or as-is.

    Unknown names and options fail with one line that lists what is known.
    """
    if isinstance(spec, Protector):
        return spec
    if isinstance(spec, dict):
        options = dict(spec)
        name = str(options.pop("name", ""))
        text = json.dumps(spec)
    else:
        name, options = parse_spec(spec)
        text = spec
    factory = PROTECTORS.get(name)
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: pass option values through as strings
        hints = {}
    signature = inspect.signature(target)
    accepted = [p for p in signature.parameters if p not in ("self", "args", "kwargs")]
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if key not in accepted and not has_var_kw:
            known = ", ".join(accepted) or "(none)"
            raise CamproError(f"protector '{name}' has no option '{key}'; its options: {known}")
        kwargs[key] = _convert(value, hints.get(key, inspect.Parameter.empty), key, text)
    try:
        protector = factory(**kwargs)
    except CamproError:
        raise
    except (TypeError, ValueError) as exc:
        raise CamproError(f"cannot build protector '{text}': {exc}") from exc
    if not isinstance(protector, Protector):
        raise CamproError(f"'{name}' ({PROTECTORS.origin(name)}) did not build a Protector")
    return protector
