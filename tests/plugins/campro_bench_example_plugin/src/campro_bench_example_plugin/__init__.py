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
