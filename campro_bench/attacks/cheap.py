"""Blind attacks: image transforms that need no knowledge of the protector and no training.

They answer "does a trivial post-processing undo the protection?": colour removal (grayscale),
contrast normalisation (global histogram equalisation, CLAHE), a gamma sweep and the colour-channel
permutations. Each is registered in :data:`~campro_bench.registries.ATTACKS` with
``kind="blind"`` and built from a spec string (``gamma:value=0.5``, ``permute:order=bgr``).
"""

from __future__ import annotations

from itertools import permutations
from typing import Annotated, Any

import kornia
import torch
from pydantic import Field

from ..errors import CamproError
from ..registries import ATTACKS
from .base import ImageAttack

CHANNEL_ORDERS = tuple("".join(p) for p in permutations("rgb") if "".join(p) != "rgb")


@ATTACKS.register("grayscale", kind="blind", description="luma (ITU-R 601) copied to the three channels")
class Grayscale(ImageAttack):
    """Drop colour: a protector that hides identity in colour mixing loses its effect."""

    def attack(self, images: torch.Tensor) -> torch.Tensor:
        return kornia.color.rgb_to_grayscale(images).expand_as(images)


@ATTACKS.register("histeq", kind="blind", description="global histogram equalisation per channel (kornia)")
class HistogramEqualisation(ImageAttack):
    """Per-channel global histogram equalisation: undoes monotone tone curves up to quantisation."""

    def attack(self, images: torch.Tensor) -> torch.Tensor:
        return kornia.enhance.equalize(images)


@ATTACKS.register("clahe", kind="blind", description="contrast-limited adaptive histogram equalisation (kornia)")
class Clahe(ImageAttack):
    """CLAHE per channel (``clip`` limit, ``grid`` x ``grid`` tiles)."""

    def __init__(self, clip: Annotated[float, Field(gt=0.0, le=100.0, description="contrast clip limit")] = 2.0,
                 grid: Annotated[int, Field(ge=1, le=64, description="tiles per side")] = 4) -> None:
        super().__init__()
        self.clip, self.grid = float(clip), int(grid)

    def params(self) -> dict[str, Any]:
        return {"clip": self.clip, "grid": self.grid}

    def attack(self, images: torch.Tensor) -> torch.Tensor:
        return kornia.enhance.equalize_clahe(images, clip_limit=self.clip, grid_size=(self.grid, self.grid))


@ATTACKS.register("gamma", kind="blind", description="power curve x^value (the sweep: several values)")
class Gamma(ImageAttack):
    """``x ** value``: brightens (< 1) or darkens (> 1) a protector's tone curve."""

    def __init__(self, value: Annotated[float, Field(ge=0.01, le=100.0, description="exponent")] = 0.5) -> None:
        super().__init__()
        self.value = float(value)

    def params(self) -> dict[str, Any]:
        return {"value": self.value}

    def attack(self, images: torch.Tensor) -> torch.Tensor:
        return images.clamp(0.0, 1.0).pow(self.value)


@ATTACKS.register("permute", kind="blind", description="colour-channel permutation (order=bgr, gbr, ...)")
class ChannelPermutation(ImageAttack):
    """Reorder the colour channels: ``order`` names the output channels from the input ``rgb``."""

    def __init__(self, order: str = "bgr") -> None:
        super().__init__()
        if sorted(order) != ["b", "g", "r"]:
            raise CamproError(f"permute order must be a permutation of 'rgb', got {order!r}")
        self.order = order

    def params(self) -> dict[str, Any]:
        return {"order": self.order}

    def attack(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, ["rgb".index(c) for c in self.order]]


def default_sweep(gammas: list[float]) -> list[str]:
    """The blind rung's spec list: grayscale, histeq, CLAHE, each gamma, every channel permutation."""
    return (["grayscale", "histeq", "clahe"] + [f"gamma:value={g:g}" for g in gammas]
            + [f"permute:order={o}" for o in CHANNEL_ORDERS])
