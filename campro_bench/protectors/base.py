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

from typing import Any, ClassVar

import torch
from torch import nn

from ..io.hashing import sha256_json
from ..registries import PROTECTORS
from ..specs import parse_spec

__all__ = ["CONDITION_SEPARATOR", "Protector", "build_protector", "check_image_batch", "parse_spec"]

CONDITION_SEPARATOR = "@"
"""``PROTECTOR@CONDITION`` names a protector under a capture condition (:mod:`campro_bench.conditions`)."""


class Protector(nn.Module):
    """Base class of every protector.

    Subclasses set ``name`` (the registry name) and ``differentiable``, implement
    :meth:`protect`, and return their constructor arguments from :meth:`params`.
    """

    name: ClassVar[str] = "protector"
    differentiable: ClassVar[bool] = False
    working_factor: ClassVar[float] = 16.0
    """Peak memory of one :meth:`protect` call beyond its input, in units of the input batch's float32
    bytes (the output included), so that ``protect`` can size batches before any work. Built-ins give
    the value ``bench/protect_memory.py`` measured (rounded up); 16 is a cautious guess for others."""

    def working_memory_factor(self) -> float:
        """:attr:`working_factor`, or a value computed from this instance's size (a U-Net's width)."""
        return float(self.working_factor)

    def protect(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this protector (JSON-serialisable)."""
        return {}

    # ------------------------------------------------------------------------------------
    def check_image_size(self, height: int, width: int) -> None:
        """Refuse, with a :class:`CamproError`, an image size this protector's options do not fit
        (a defocus kernel far larger than the image); called by :meth:`forward` before any work."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_image_batch(images)
        self.check_image_size(int(images.shape[-2]), int(images.shape[-1]))
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
        return sha256_json(self.fingerprint_payload())[:16]

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


def build_protector(spec: str | dict[str, Any] | Protector) -> Protector:
    """Build a protector from a spec string, a config dict (``{"name": ..., **params}``) or as-is.

    Unknown names and options fail with one line that lists what is known. ``PROTECTOR@CONDITION``
    is the protector under a capture condition (:func:`campro_bench.conditions.captured_protector`).
    """
    if isinstance(spec, Protector):
        return spec
    if isinstance(spec, str) and CONDITION_SEPARATOR in spec:
        from ..conditions.base import captured_protector

        return captured_protector(spec)
    return PROTECTORS.build(spec, Protector)
