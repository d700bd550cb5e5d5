"""``campro-enhanced``: the CamPro camera followed by its image enhancer (the "Enhanced" rows).

Spec forms:

* ``campro-enhanced:preset=NAME``: the shipped ISP preset ``NAME`` and the enhancer trained for it
  (``presets/enhancer/NAME.pt``);
* ``campro-enhanced:params=isp.json,enhancer=enhancer.pt``: files of your own.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import torch

from ..errors import UnknownNameError
from ..protectors.base import Protector
from ..protectors.isp import CamproISP, list_presets
from ..registries import PROTECTORS
from .model import load_enhancer, state_digest


def enhancer_preset_path(name: str) -> Path:
    path = Path(str(resources.files("campro_bench") / "presets" / "enhancer" / f"{name}.pt"))
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.pt")) if path.parent.is_dir() else []
        raise UnknownNameError(
            f"no enhancer preset '{name}'; presets with an enhancer: {', '.join(known) or '(none)'}"
        )
    return path


@PROTECTORS.register("campro-enhanced", description="CamPro ISP followed by the U-Net image enhancer")
class CamproEnhanced(Protector):
    """ISP (captured image) then U-Net (enhanced image); differentiable end to end."""

    differentiable = True

    def __init__(
        self, preset: str | None = None, params: Path | None = None, enhancer: Path | None = None
    ) -> None:
        super().__init__()
        if preset is not None and (params is not None or enhancer is not None):
            raise ValueError("give either preset= or params= with enhancer=, not both")
        if preset is None and (params is None or enhancer is None):
            raise ValueError(
                "campro-enhanced needs preset=NAME or both params=ISP.json and enhancer=WEIGHTS.pt "
                f"(ISP presets: {', '.join(list_presets())})"
            )
        self._source: dict[str, Any] = (
            {"preset": preset} if preset is not None else {"params": str(params), "enhancer": str(enhancer)}
        )
        self.isp = CamproISP(preset=preset) if preset is not None else CamproISP(params=params)
        self.enhancer = load_enhancer(enhancer_preset_path(preset) if preset is not None else enhancer)  # type: ignore[arg-type]

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        return self.enhancer(self.isp(images))

    def working_memory_factor(self) -> float:
        """The U-Net's feature maps dominate: 51 input sizes measured at 12 base channels, about 4.3 a channel."""
        return 4.3 * self.enhancer.config.base_channels

    def params(self) -> dict[str, Any]:
        return dict(self._source)

    def fingerprint_payload(self) -> dict[str, Any]:
        return {"isp": self.isp.fingerprint_payload(), "enhancer": state_digest(self.enhancer), "name": self.name}
