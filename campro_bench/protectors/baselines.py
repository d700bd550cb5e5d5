"""Baseline protectors of the paper's Appendix A and Sec. IV.

* ``raw``: the unprotected camera output (identity);
* ``invert``: colour inversion ``1 - x`` (Sec. IV, preliminary analysis);
* ``lowres``: a low-resolution camera, simulated by area downsampling by ``factor`` and bilinear
  upsampling back to the input size (paper factors 4 / 8 / 16);
* ``defocus``: a defocused lens, simulated by a Gaussian blur with ``kernel`` size and ``sigma``
  (paper settings 9/3, 13/5, 15/7 and 25/7); kornia's separable blur, computed on the CPU without
  gradients by the fused pass of :mod:`.fast_blur` (equal within float32 rounding).

Option ranges are declared on the signatures (``Annotated[..., Field(...)]``) and checked where
specs are built (:mod:`campro_bench.specs`); the defocus kernel is also bounded by the image
(:func:`.fast_blur.check_kernel_fits`), checked before any blurring.
"""

from __future__ import annotations

from typing import Annotated, Any

import kornia
import torch
import torch.nn.functional as F
from pydantic import Field

from ..registries import PROTECTORS
from . import _jit
from .base import Protector
from .fast_blur import DefocusKernel, DefocusSigma, check_kernel_fits, defocus_planes, reflects

LOWRES_PAPER_FACTORS = (4, 8, 16)
DEFOCUS_PAPER_SETTINGS = ((9, 3.0), (13, 5.0), (15, 7.0), (25, 7.0))

LowresFactor = Annotated[int, Field(ge=1, le=1024, description="downsampling factor")]


@PROTECTORS.register("raw", description="identity: the unprotected image")
class Raw(Protector):
    """The unprotected image, for baselines rows."""

    differentiable = True
    working_factor = 0.0

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        return images


@PROTECTORS.register("invert", description="colour inversion 1 - x (paper Sec. IV)")
class Invert(Protector):
    """Colour inversion; fully invertible, so only a weak protector (Sec. IV remarks)."""

    differentiable = True
    working_factor = 1.0

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        return 1.0 - images


@PROTECTORS.register("lowres", description="area downsample by factor, bilinear upsample back")
class LowResolution(Protector):
    """A low-resolution camera [Ryoo et al.]: downsample by ``factor``, upsample to the input size."""

    differentiable = True
    working_factor = 3.0

    def __init__(self, factor: LowresFactor = 16) -> None:
        super().__init__()
        self.factor = int(factor)

    def params(self) -> dict[str, Any]:
        return {"factor": self.factor}

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        if self.factor == 1:
            return images
        h, w = images.shape[-2:]
        small = (max(1, h // self.factor), max(1, w // self.factor))
        down = F.interpolate(images, size=small, mode="area")
        up = F.interpolate(down, size=(h, w), mode="bilinear", align_corners=False)
        return up.clamp(0.0, 1.0)


@PROTECTORS.register("defocus", description="Gaussian blur with kernel size and sigma")
class Defocus(Protector):
    """A defocused lens [Pittaluga and Koppal]: Gaussian blur, reflect-padded at the borders."""

    differentiable = True
    working_factor = 2.0

    def __init__(self, kernel: DefocusKernel = 25, sigma: DefocusSigma = 7.0) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"defocus kernel must be a positive odd integer, got {kernel}")
        self.kernel = int(kernel)
        self.sigma = float(sigma)

    def params(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "sigma": self.sigma}

    def check_image_size(self, height: int, width: int) -> None:
        check_kernel_fits(self.kernel, height, width)

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        if _fast_blur_applies(images):
            return defocus_planes(images, self.kernel, self.sigma)
        h, w = images.shape[-2:]
        # reflect padding needs the image to be larger than half the kernel
        border = "reflect" if reflects(h, w, self.kernel) else "replicate"
        sigma = torch.tensor([[self.sigma, self.sigma]], dtype=images.dtype, device=images.device)
        return kornia.filters.gaussian_blur2d(
            images, (self.kernel, self.kernel), sigma, border_type=border, separable=True
        )


def _fast_blur_applies(images: torch.Tensor) -> bool:
    """The fused CPU blur (:mod:`.fast_blur`) serves float32 CPU batches that need no gradient;
    kornia's differentiable convolution serves the rest (training, GPU, float64)."""
    return (_jit.numba is not None and images.device.type == "cpu" and images.dtype == torch.float32
            and not (torch.is_grad_enabled() and images.requires_grad))
