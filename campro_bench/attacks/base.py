"""What an attack on a protector is, and how attacked images enter the face pipeline.

An *image attack* is a transform an attacker applies to the protected camera's 8-bit output
before recognition: a function of a batch ``N x 3 x H x W`` in [0, 1] returning the same shape
(the protector contract, :mod:`campro_bench.protectors.base`). Two kinds are registered in
:data:`~campro_bench.registries.ATTACKS` (entry-point group ``campro_bench.attacks``):

* ``blind`` attacks need nothing but the images (grayscale, histogram equalisation, gamma, ...);
  their registered object is an :class:`ImageAttack` class built from a spec string
  (``gamma:value=0.5``);
* ``inverse`` attacks are *parameter-aware* analytic inverses of one protector, registered with
  ``protector=NAME`` metadata; their registered object is a function
  ``(protector, train_images) -> ImageAttack`` (see :mod:`.inverses`). ``train_images`` are raw
  face crops of the attacker's own (TRAIN) identities: a fold or a free constant of the inverse is
  chosen on them, never on an evaluated identity.

:class:`Attacked` chains protector, 8-bit rounding and attack into one protector *instance*, so the
face pipeline crops, embeds and caches attacked probes like any other image type (its fingerprint
joins both parts). :class:`Restored` is the registered, file-backed form used for a trained
restoration network (``restored:base=PROTECTOR.json,weights=UNET.pt``), so E5 can name restored
probes by a spec string whatever the protector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from ..errors import CamproError, InvalidFileError
from ..io.atomic import atomic_write_json
from ..io.hashing import sha256_json
from ..io.jsonfile import read_json
from ..protectors.base import Protector, build_protector
from ..registries import ATTACKS, PROTECTORS
from ..specs import build_from_spec

ATTACK_KINDS = ("blind", "inverse")


class ImageAttack(torch.nn.Module):
    """Base class of an attacker's image transform (same contract as a protector's ``protect``)."""

    name: ClassVar[str] = "attack"

    def attack(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """JSON-serialisable parameters (recorded in manifests and cache keys)."""
        return {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.attack(images).clamp(0.0, 1.0)

    def spec(self) -> str:
        params = self.params()
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")

    def fingerprint_payload(self) -> dict[str, Any]:
        """What identifies the transform; fitted inverses add their fitted tables."""
        return {"name": self.name, **self.params()}


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round to 8 bits, as the protected camera writes its output (the attacker's input)."""
    return images.clamp(0.0, 1.0).mul(255.0).round().div(255.0)


class Attacked(Protector):
    """``attack(quantize(protector(x)))``: the attacked probe as one protector instance."""

    name = "attacked"
    differentiable = False

    def __init__(self, protector: Protector, attack: torch.nn.Module, label: str) -> None:
        super().__init__()
        self.base = protector
        self.transform = attack
        self.label = label

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.transform(quantize(self.base(images))).clamp(0.0, 1.0)

    def spec(self) -> str:
        return f"{self.base.spec()} | {self.label}"

    def fingerprint_payload(self) -> dict[str, Any]:
        payload = getattr(self.transform, "fingerprint_payload", None)
        if payload is None:  # a plain module (a restoration U-Net): hash its weights
            from ..enhancer.model import state_digest

            attack: Any = {"weights": state_digest(self.transform)}
        else:
            attack = payload()
        return {"name": self.name, "base": self.base.fingerprint_payload(), "attack": attack}


def build_attack(spec: str | dict[str, Any]) -> ImageAttack:
    """A blind attack from its spec string (``gamma:value=0.5``); unknown names list the known ones."""
    name = spec.get("name") if isinstance(spec, dict) else spec.partition(":")[0]
    entry = ATTACKS.entry(str(name))
    if entry.metadata.get("kind", "blind") != "blind":
        raise CamproError(f"attack '{name}' is an analytic inverse of '{entry.metadata.get('protector')}', "
                          "not a blind attack: it is applied automatically to that protector")
    return build_from_spec(ATTACKS, spec, ImageAttack, "attack")


def inverses_for(protector: Protector) -> list[str]:
    """Names of the registered analytic inverses of ``protector`` (by its registry name)."""
    return [e.name for e in ATTACKS.entries() if e.metadata.get("kind") == "inverse"
            and e.metadata.get("protector") == protector.name]


def save_protector_config(protector: Protector, folder: Path) -> Path:
    """The protector's config (``{"name": ..., **params}``) as a JSON file named by its fingerprint."""
    path = Path(folder) / f"protector-{protector.fingerprint()}.json"
    if not path.is_file():
        atomic_write_json(path, protector.config())
    return path


@PROTECTORS.register("restored", description="a protector followed by a restoration U-Net (white-box attack)")
class Restored(Protector):
    """``restored:base=PROTECTOR.json,weights=UNET.pt``: the protector of ``base`` (a JSON config
    ``{"name": ..., **params}``), 8-bit rounding, then the restoration U-Net of ``weights``."""

    differentiable = False

    def __init__(self, base: Path, weights: Path) -> None:
        super().__init__()
        from ..enhancer.model import load_enhancer, state_digest

        base, weights = Path(base), Path(weights)
        config = read_json(base, "protector config")
        if not isinstance(config, dict) or "name" not in config:
            raise InvalidFileError(f"{base}: a protector config is a JSON object with a 'name'")
        self._source = {"base": str(base), "weights": str(weights)}
        self.protector = build_protector(config)
        self.restorer = load_enhancer(weights)
        self._digest = state_digest(self.restorer)

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.restorer(quantize(self.protector(images))).clamp(0.0, 1.0)

    def working_memory_factor(self) -> float:
        """The restoration U-Net's (as :class:`~campro_bench.enhancer.protector.CamproEnhanced`'s), or the base's if larger."""
        return max(4.3 * self.restorer.config.base_channels, self.protector.working_memory_factor())

    def params(self) -> dict[str, Any]:
        return dict(self._source)

    def fingerprint_payload(self) -> dict[str, Any]:
        return {"name": self.name, "base": self.protector.fingerprint_payload(), "weights": self._digest}


def payload_digest(payload: Any) -> str:
    return sha256_json(payload)[:16]
