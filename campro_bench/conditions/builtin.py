"""The built-in capture conditions (``campro-bench list conditions``); docs/conditions.md.

Every condition that acts before the protector returns an 8-bit image (what a sensor's pipeline
hands on); ``jpeg`` acts after it, on the protector's 8-bit output. Parameters are checked when
built: finite and within the range declared on each option (the build door's one numeric rule,
``specs.check_number``), or one error line; a condition built in code checks the same ranges itself.
"""

from __future__ import annotations

import io
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from kornia.color import linear_rgb_to_rgb, rgb_to_linear_rgb
from PIL import Image
from pydantic import Field

from ..io.images import tensor_to_uint8, uint8_to_tensor
from ..registries import CONDITIONS
from .base import AFTER, BEFORE, Condition, check_option, image_seed, quantize8

LUMA = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights on the sRGB values (what Pillow's ``L`` mode computes)."""


@CONDITIONS.register("colour", description="the camera as evaluated so far: colour, daylight, full resolution, "
                     "lossless (the identity; today's numbers)")
class Colour(Condition):
    side = BEFORE
    identity = True

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        return images


@CONDITIONS.register("grey", description="a monochrome (e.g. night, near-infrared) camera: BT.601 luma replicated "
                     "to three channels before the protector, 8-bit")
class Grey(Condition):
    """What a monochrome sensor records of the scene, as the protector receives it. A luma model of
    the sensor's spectral response, not a near-infrared reflectance model of skin."""

    side = BEFORE

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        weights = torch.tensor(LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        luma = (images * weights).sum(dim=1, keepdim=True)
        return quantize8(luma.expand(-1, 3, -1, -1))


@CONDITIONS.register("low-light", description="dim light: linear exposure scaled by `exposure`, Poisson shot noise "
                     "and Gaussian read noise at conversion gain `gain` (0 = noiseless), 8-bit; before the protector")
class LowLight(Condition):
    """A sensor under ``exposure`` times the usual light, without digital brightening.

    In linear light (the sRGB transfer undone) the signal is ``s = exposure * x``. With a
    conversion gain ``gain`` (full scale per electron: full scale = ``1 / gain`` electrons) the
    sensor counts ``Poisson(s / gain)`` electrons plus ``N(0, read_noise)`` read-out electrons;
    the normalised value ``gain * electrons`` is clipped to [0, 1], sRGB-encoded and written in 8
    bits. ``gain = 0`` is a noiseless sensor: a pure exposure change. Noise is drawn per image from
    ``(seed, image content)``. Defaults: a quarter of the light, 500 electrons full scale, 2
    electrons read noise (a small sensor at a raised ISO).
    """

    side = BEFORE

    def __init__(self, exposure: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25,
                 gain: Annotated[float, Field(ge=0.0, le=1.0)] = 0.002,
                 read_noise: Annotated[float, Field(ge=0.0, le=100.0)] = 2.0,
                 seed: Annotated[int, Field(ge=0)] = 0) -> None:
        self.exposure = float(check_option("low-light", type(self), "exposure", exposure))
        self.gain = float(check_option("low-light", type(self), "gain", gain))
        self.read_noise = float(check_option("low-light", type(self), "read_noise", read_noise))
        self.seed = int(check_option("low-light", type(self), "seed", seed))

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        signal = rgb_to_linear_rgb(images.float()) * self.exposure
        if self.gain > 0:
            noisy = torch.empty_like(signal)
            for n in range(signal.shape[0]):
                rng = np.random.default_rng(image_seed(self.seed, images[n]))
                electrons = signal[n].cpu().double().numpy() / self.gain
                counts = rng.poisson(electrons) + rng.normal(0.0, self.read_noise, electrons.shape)
                noisy[n] = torch.from_numpy(counts * self.gain).to(signal)
            signal = noisy
        return quantize8(linear_rgb_to_rgb(signal.clamp(0.0, 1.0))).to(images.dtype)

    def params(self) -> dict[str, float | int]:
        return {"exposure": self.exposure, "gain": self.gain, "read_noise": self.read_noise, "seed": self.seed}


@CONDITIONS.register("jpeg", description="the camera streams JPEG at `quality` (1-100, Pillow, 4:2:0): applied "
                     "after the protector, to its 8-bit output")
class Jpeg(Condition):
    side = AFTER

    def __init__(self, quality: Annotated[int, Field(ge=1, le=100)] = 75) -> None:
        self.quality = int(check_option("jpeg", type(self), "quality", quality))

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for frame in tensor_to_uint8(images):
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format="JPEG", quality=self.quality)
            buffer.seek(0)
            with Image.open(buffer) as decoded:
                out.append(np.asarray(decoded.convert("RGB")))
        return uint8_to_tensor(np.stack(out)).to(device=images.device, dtype=images.dtype)

    def params(self) -> dict[str, int]:
        return {"quality": self.quality}


@CONDITIONS.register("distance", description="the face captured at `scale` (0.05-1) of its resolution (area "
                     "downsampling, bilinear back to the crop size), 8-bit; before the protector")
class Distance(Condition):
    """A face farther away: the sensor samples it with ``scale`` times as many pixels per side. The
    crop the protector receives keeps its size (the aligner upsamples), but holds only that detail.
    ``scale = 1`` changes nothing."""

    side = BEFORE

    def __init__(self, scale: Annotated[float, Field(ge=0.05, le=1.0)] = 0.5) -> None:
        self.scale = float(check_option("distance", type(self), "scale", scale))

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return images
        h, w = images.shape[-2:]
        small = F.interpolate(images, size=(max(1, round(h * self.scale)), max(1, round(w * self.scale))), mode="area")
        return quantize8(F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False))

    def params(self) -> dict[str, float]:
        return {"scale": self.scale}
