"""An example third-party protector: posterisation to a few grey levels per channel."""

from __future__ import annotations

from typing import Any

import torch

from campro_bench.protectors import Protector


class Posterize(Protector):
    """Quantise every channel to ``levels`` evenly spaced values."""

    name = "posterize"
    differentiable = False

    def __init__(self, levels: int = 4) -> None:
        super().__init__()
        if levels < 2:
            raise ValueError("levels must be >= 2")
        self.levels = levels

    def params(self) -> dict[str, Any]:
        return {"levels": self.levels}

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        steps = self.levels - 1
        return torch.round(images.clamp(0, 1) * steps) / steps


from campro_bench.conditions import BEFORE, Condition  # noqa: E402


class Vignette(Condition):
    """A capture condition: the image darkens towards its corners (a cheap lens), before the protector."""

    side = BEFORE

    def __init__(self, strength: float = 0.5) -> None:
        if not 0.0 <= strength <= 1.0:
            raise ValueError("strength must be within [0, 1]")
        self.strength = strength

    def params(self) -> dict[str, Any]:
        return {"strength": self.strength}

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        y, x = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        falloff = 1.0 - self.strength * (x**2 + y**2) / 2.0
        return images * falloff.to(images)
