"""The condition contract, how conditions are built from specs, and the captured protector.

:class:`Condition` maps a float batch ``N x 3 x H x W`` in [0, 1] to one of the same shape, range and
device, and declares its ``side``: :data:`BEFORE` (what the sensor records: the protector sees the
conditioned image) or :data:`AFTER` (what the camera sends: the protector's 8-bit output is
conditioned). :class:`Captured` is the protector a camera under a condition is: condition then
protector, or protector then condition. It is named ``PROTECTOR@CONDITION``
(:data:`~campro_bench.protectors.base.CONDITION_SEPARATOR`); a ``colour`` condition builds the bare
protector, so today's specs, fingerprints and caches are unchanged.

Random conditions (``low-light``) draw their noise per image from ``(seed, image content)``
(:func:`image_seed`): the same image gets the same noise whatever batch it is in, so results do not
depend on batch size, order or worker.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import torch

from ..errors import CamproError
from ..protectors.base import CONDITION_SEPARATOR, Protector, build_protector, check_image_batch
from ..protectors.base import _format_value as format_value
from ..registries import CONDITIONS, PROTECTORS
from ..specs import check_number, factory_options

BEFORE, AFTER = "before", "after"
"""The sides of the protector a condition acts on."""


class Condition:
    """Base class of every capture condition (see the module docstring).

    Subclasses set ``side``, implement :meth:`apply` and return their constructor arguments from
    :meth:`params`; the registry sets ``name``. ``identity`` conditions (``colour``) change nothing.
    """

    name: ClassVar[str] = "condition"
    side: ClassVar[str] = BEFORE
    identity: ClassVar[bool] = False

    def __init__(self) -> None:  # a condition without options refuses any (spec options are checked against this)
        pass

    def apply(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this condition (JSON-serialisable)."""
        return {}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        check_image_batch(images)
        return self.apply(images)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **self.params()}

    def spec(self) -> str:
        """The spec string that rebuilds this condition (``jpeg:quality=50``)."""
        params = self.params()
        return self.name + (":" + ",".join(f"{k}={format_value(v)}" for k, v in params.items()) if params else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec()!r}, side={self.side!r})"


def check_option(condition: str, factory: type, key: str, value: float) -> float:
    """``value`` of option ``key`` of a condition built in code, checked against the range declared
    on ``factory``'s signature by the build door's one rule (:func:`~campro_bench.specs.check_number`):
    the bounds live in the annotation alone; one clear error line when it breaks them."""
    problem = check_number(value, factory_options(factory)[key][0])
    if problem:
        raise CamproError(f"capture condition '{condition}': {key}={value!r} {problem}")
    return value


def build_condition(spec: str | dict[str, Any] | Condition) -> Condition:
    """Build a condition from ``name`` / ``name:key=value,...`` (or a config dict); unknown names and
    options, and values out of range, fail with one line."""
    if isinstance(spec, Condition):
        return spec
    return CONDITIONS.build(spec, Condition)


def check_conditions(specs: list[str], where: str = "conditions") -> list[Condition]:
    """The conditions of a protocol's ``conditions`` list, built (bad ones fail here, before any work)."""
    if not specs or not all(isinstance(s, str) and s.strip() for s in specs):
        raise CamproError(f"protocol key '{where}' must be a non-empty list of condition specs, got {specs!r}")
    built = [build_condition(s) for s in specs]
    canonical = [c.spec() for c in built]
    if len(set(canonical)) != len(canonical):
        raise CamproError(f"protocol key '{where}' lists a condition twice: {canonical}")
    return built


def image_seed(seed: int, image: torch.Tensor) -> int:
    """A 63-bit seed from ``seed`` and the 8-bit content of one ``3 x H x W`` image."""
    levels = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    digest = hashlib.blake2b(levels.tobytes(), digest_size=8, key=str(int(seed)).encode()).digest()
    return int.from_bytes(digest, "little") >> 1


def quantize8(images: torch.Tensor) -> torch.Tensor:
    """Round to the 256 levels of an 8-bit image (as a camera writes it), staying float."""
    return images.clamp(0.0, 1.0).mul(255.0).round().div(255.0)


@PROTECTORS.register("captured", description="a protector under a capture condition; written PROTECTOR@CONDITION "
                     "(campro-bench list conditions)")
class Captured(Protector):
    """A protector under a capture condition: ``condition -> protector`` for a :data:`BEFORE`
    condition, ``protector -> 8 bits -> condition`` for an :data:`AFTER` one. Its config
    (``{"name": "captured", "protector": SPEC, "condition": SPEC}``) rebuilds it, so restoration
    attacks and saved protector files work under conditions too."""

    def __init__(self, protector: str | Protector, condition: str | Condition) -> None:
        super().__init__()
        protector, condition = build_protector(protector), build_condition(condition)
        if condition.side not in (BEFORE, AFTER):
            raise CamproError(f"capture condition '{condition.name}' declares side {condition.side!r}; "
                              f"expected '{BEFORE}' or '{AFTER}'")
        self.base = protector
        self.condition = condition

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        if self.condition.side == BEFORE:
            return self.base(self.condition(images))
        return self.condition(quantize8(self.base(images)))

    def working_memory_factor(self) -> float:
        """The protector's own factor plus 3 batch-sized copies for the condition (its output, and at
        most a float64 working copy: an upper estimate from the built-in conditions' code, not measured)."""
        return self.base.working_memory_factor() + 3.0

    def params(self) -> dict[str, Any]:
        return {"protector": self.base.spec(), "condition": self.condition.spec()}

    def spec(self) -> str:
        return f"{self.base.spec()}{CONDITION_SEPARATOR}{self.condition.spec()}"

    def fingerprint_payload(self) -> dict[str, Any]:
        return {"name": self.name, "protector": self.base.fingerprint_payload(), "condition": self.condition.config()}


def captured_protector(spec: str) -> Protector:
    """``PROTECTOR@CONDITION`` built: the protector under that condition (the last ``@`` splits, so
    ``X@grey@jpeg:quality=50`` is a grey camera whose stream is then compressed). A ``colour``
    (identity) condition gives the bare protector."""
    base, _, condition = spec.rpartition(CONDITION_SEPARATOR)
    if not base.strip() or not condition.strip():
        raise CamproError(f"bad captured protector spec '{spec}': expected PROTECTOR{CONDITION_SEPARATOR}CONDITION, "
                          "e.g. campro-isp:preset=casia-adv@grey")
    protector, cond = build_protector(base.strip()), build_condition(condition.strip())
    return protector if cond.identity else Captured(protector, cond)
