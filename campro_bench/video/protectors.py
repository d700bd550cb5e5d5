"""Video protectors: what a privacy camera does to a clip before anything leaves it.

A video protector maps clips ``(B, 3, T, H, W)`` in [0, 1] to encoded clips ``(B, 3, T', H, W)``
(``T' = T - 1`` for the difference-based ones). Registered in
:data:`~campro_bench.registries.VIDEO_PROTECTORS`; build one with :func:`build_video_protector`
(``"bdq:sigma=1.5"``, ``"bdq:preset=weizmann-adv"``, ``"lowres:factor=8"``).

BDQ (Kumawat and Nagahara, ECCV 2022, as written in the Nagahara talk):

* **B**lur: a Gaussian ``G_x = exp(-x^2 / sigma^2) / sum_x exp(-x^2 / sigma^2)`` (separable, per
  frame) with a learnable ``sigma``;
* **D**ifference of consecutive blurred frames ``D_t = B_{t+1} - B_t``;
* **Q**uantisation ``Q(D) = sum_{k=1}^{N-1} sigmoid(F (D - b_k))`` with learnable bin centres ``b_k``
  (initialised to 0.5, 1.5, ..., N - 1.5; N = 16) and temperature ``F``; at inference (``eval()``)
  the hard form ``sum_k [D > b_k]``, its limit as ``F`` grows.

The talk writes ``D`` in the bins' units; here the difference is taken on 8-bit intensities
(``scale = 255`` times the [0, 1] difference), so the encoder counts positive grey-level steps up
to N - 1 and, as the formula does, maps every negative difference to 0. The output is ``Q / (N - 1)``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..errors import CamproError, InvalidFileError, MissingFileError
from ..registries import VIDEO_PROTECTORS


def check_clips(clips: torch.Tensor) -> None:
    if clips.ndim != 5 or clips.shape[1] != 3:
        raise CamproError(f"video protectors take clips (B, 3, T, H, W); got shape {tuple(clips.shape)}")


class VideoProtector(nn.Module):
    """Base of video protectors: ``forward(clips) -> encoded clips``; ``params()`` for the manifest."""

    name = "video-protector"

    def params(self) -> dict[str, Any]:
        return {}

    def spec(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.params().items() if not isinstance(v, list))
        return f"{self.name}:{opts}" if opts else self.name


def gaussian_kernel(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """1-D kernel ``exp(-x^2 / sigma^2)`` over ``x = -radius..radius``, normalised (the talk's ``G_x``)."""
    x = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    weights = torch.exp(-(x ** 2) / sigma.clamp_min(1e-3) ** 2)
    return weights / weights.sum()


def blur_clips(clips: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable Gaussian blur of every frame (replicate padding), differentiable in ``sigma``."""
    b, c, t, h, w = clips.shape
    kernel = gaussian_kernel(sigma, radius)
    frames = clips.permute(0, 2, 1, 3, 4).reshape(b * t * c, 1, h, w)
    frames = F.pad(frames, (radius, radius, radius, radius), mode="replicate")
    frames = F.conv2d(frames, kernel.view(1, 1, 1, -1))
    frames = F.conv2d(frames, kernel.view(1, 1, -1, 1))
    return frames.view(b, t, c, h, w).permute(0, 2, 1, 3, 4)


def frame_difference(clips: torch.Tensor) -> torch.Tensor:
    """``D_t = v_{t+1} - v_t`` along time: ``(B, C, T, H, W) -> (B, C, T-1, H, W)``."""
    return clips[:, :, 1:] - clips[:, :, :-1]


def soft_quantise(d: torch.Tensor, centres: torch.Tensor, temperature: float) -> torch.Tensor:
    """The talk's differentiable quantiser ``sum_k sigmoid(F (d - b_k))``."""
    return torch.sigmoid(temperature * (d.unsqueeze(-1) - centres)).sum(-1)


def hard_quantise(d: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Hard rounding: the number of bin centres below ``d`` (the soft form's limit as ``F`` grows)."""
    return torch.bucketize(d.contiguous(), centres.detach().sort().values, right=False).to(d.dtype)


@VIDEO_PROTECTORS.register("raw", description="the clip unchanged (no privacy)")
class RawVideo(VideoProtector):
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        check_clips(clips)
        return clips


@VIDEO_PROTECTORS.register("lowres", description="per-frame down-sampling by `factor` (area), shown back at full size")
class LowResVideo(VideoProtector):
    def __init__(self, factor: Annotated[int, Field(ge=1, le=64)] = 8) -> None:
        super().__init__()
        if factor < 1:
            raise CamproError(f"lowres factor must be >= 1, got {factor}")
        self.factor = factor

    def params(self) -> dict[str, Any]:
        return {"factor": self.factor}

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        check_clips(clips)
        b, c, t, h, w = clips.shape
        frames = clips.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        small = F.avg_pool2d(frames, self.factor)
        big = F.interpolate(small, size=(h, w), mode="nearest")
        return big.view(b, t, c, h, w).permute(0, 2, 1, 3, 4)


@VIDEO_PROTECTORS.register("blur", description="per-frame Gaussian blur exp(-x^2/sigma^2), fixed sigma")
class BlurVideo(VideoProtector):
    def __init__(self, sigma: Annotated[float, Field(gt=0.0, le=100.0)] = 2.0,
                 radius: Annotated[int, Field(ge=0, le=64)] = 4) -> None:
        super().__init__()
        self.sigma, self.radius = sigma, radius

    def params(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "radius": self.radius}

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        check_clips(clips)
        return blur_clips(clips, torch.tensor(self.sigma, dtype=clips.dtype, device=clips.device), self.radius)


@VIDEO_PROTECTORS.register("diff", description="difference of consecutive frames, no blur, no quantisation")
class DiffVideo(VideoProtector):
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        check_clips(clips)
        return (frame_difference(clips) + 1.0) / 2.0  # [-1, 1] shown in [0, 1]


@VIDEO_PROTECTORS.register("bdq", description="BDQ: learnable blur, frame difference, learnable quantiser")
class BDQ(VideoProtector):
    """BDQ encoder; ``preset`` (a shipped name or a JSON file) gives sigma and the bin centres."""

    def __init__(self, sigma: Annotated[float, Field(gt=0.0, le=100.0)] = 1.0,
                 levels: Annotated[int, Field(ge=2, le=256)] = 16,
                 temperature: Annotated[float, Field(gt=0.0, le=1e4)] = 5.0,
                 radius: Annotated[int, Field(ge=0, le=64)] = 2,
                 scale: Annotated[float, Field(gt=0.0, le=1e4)] = 255.0, preset: str = "") -> None:
        super().__init__()
        if levels < 2:
            raise CamproError(f"bdq levels must be >= 2, got {levels}")
        centres = [k + 0.5 for k in range(levels - 1)]
        self.preset = preset
        if preset:
            values = load_bdq_preset(preset)
            sigma, centres = float(values["sigma"]), [float(c) for c in values["centres"]]
            levels, radius, scale = len(centres) + 1, int(values["radius"]), float(values["scale"])
        if sigma <= 0:
            raise CamproError(f"bdq sigma must be > 0, got {sigma}")
        self.sigma = nn.Parameter(torch.tensor(float(sigma)))
        self.centres = nn.Parameter(torch.tensor(centres))
        self.levels, self.temperature, self.radius, self.scale = levels, temperature, radius, scale

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sigma": round(float(self.sigma.detach()), 6), "levels": self.levels,
                               "temperature": self.temperature, "radius": self.radius, "scale": self.scale}
        if self.preset:
            out["preset"] = self.preset
        out["centres"] = [round(float(c), 6) for c in self.centres.detach()]
        return out

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        check_clips(clips)
        d = frame_difference(blur_clips(clips, self.sigma, self.radius)) * self.scale
        q = soft_quantise(d, self.centres, self.temperature) if self.training else hard_quantise(d, self.centres)
        return q / (self.levels - 1)

    def preset_dict(self) -> dict[str, Any]:
        """The few parameters that define a trained encoder (what a preset file holds)."""
        return {"format": "campro-bdq-preset", "sigma": float(self.sigma.detach()), "centres": [float(c) for c in self.centres.detach()],
                "radius": self.radius, "scale": self.scale}


def presets_dir() -> Path:
    return Path(str(resources.files("campro_bench") / "presets" / "bdq"))


def load_bdq_preset(name_or_path: str) -> dict[str, Any]:
    """A BDQ preset by shipped name (``presets/bdq/NAME.json``) or JSON path; checked, one error line."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = presets_dir() / f"{name_or_path}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in presets_dir().glob("*.json"))) or "(none)"
        raise MissingFileError(f"no BDQ preset {name_or_path} ({path}); shipped presets: {known}")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidFileError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(values, dict) or values.get("format") != "campro-bdq-preset":
        raise InvalidFileError(f"{path}: not a BDQ preset (format campro-bdq-preset)")
    for key in ("sigma", "centres", "radius", "scale"):
        if key not in values:
            raise InvalidFileError(f"{path}: BDQ preset lacks '{key}'")
    return values


def build_video_protector(spec: str | dict[str, Any]) -> VideoProtector:
    """The one way to build a video protector from a spec string or dict."""
    return VIDEO_PROTECTORS.build(spec, VideoProtector)
