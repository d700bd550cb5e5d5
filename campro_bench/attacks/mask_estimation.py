"""Mask estimation: the attack a learned (or secret) optic invites when (scene, capture) pairs leak.

A coded-mask lensless camera records ``y = conv_same(x, mask) / sum(mask) + noise`` (8-bit). The
capture is *linear in the mask*, so an attacker who holds N pairs (x_i, y_i) (photographs of known
scenes through the camera, leaked calibration data, or images the camera's owner published) can
estimate the point-spread function by least squares, without knowing the mask:

    k* = argmin_k  sum_i ||conv_same(x_i, k) - y_i||^2 + lam ||k||^2,

solved here by conjugate gradients on the normal equations (the adjoint of the linear map
``k -> conv_same(x, k)`` by automatic differentiation). The estimate then replaces the true mask in
the Tikhonov/Wiener deconvolution of the known-mask inverse. ``lensless-mask-estimate`` registers it
as an inverse of ``lensless`` whose pairs are the first ``PAIRS`` TRAIN crops.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import CamproError
from ..protectors.base import Protector
from ..registries import ATTACKS
from .base import ImageAttack
from .inverses import LenslessDeconvolution, _train_tensor, select_on_train

PAIRS = 8
"""How many (scene, capture) pairs the registered attack estimates the mask from."""


def estimate_psf(scenes: torch.Tensor, captures: torch.Tensor, size: int, lam: float = 1e-8,
                 iters: int = 300) -> torch.Tensor:
    """The ``size x size`` PSF that best maps ``scenes`` to ``captures`` (both ``N x C x h x w``, the
    scene at the sensor's resolution) in least squares with a small ridge ``lam``."""
    from ..protectors.lensless import fft_convolve_same

    if scenes.shape != captures.shape or scenes.ndim != 4:
        raise CamproError(f"mask estimation needs scene and capture batches of one shape, got {tuple(scenes.shape)} "
                          f"and {tuple(captures.shape)}")
    if len(scenes) < 1 or size < 1 or size > min(scenes.shape[-2:]):
        raise CamproError(f"mask estimation needs >= 1 pair and a PSF size within the image, got {len(scenes)} pairs "
                          f"and size {size}")
    x, y = scenes.detach().double(), captures.detach().double()

    def adjoint(residual: torch.Tensor) -> torch.Tensor:
        k = torch.zeros(size, size, dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad((fft_convolve_same(x, k) * residual).sum(), k)
        return grad

    def normal(k: torch.Tensor) -> torch.Tensor:
        return adjoint(fft_convolve_same(x, k)) + lam * k

    b = adjoint(y)
    k = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rs = float((r * r).sum())
    for _ in range(iters):
        ap = normal(p)
        alpha = rs / max(float((p * ap).sum()), 1e-300)
        k, r = k + alpha * p, r - alpha * ap
        rs_new = float((r * r).sum())
        if rs_new <= 1e-24 * float((b * b).sum()):
            break
        p, rs = r + (rs_new / rs) * p, rs_new
    return k.float()


def mask_error(estimate: torch.Tensor, mask: torch.Tensor) -> float:
    """Relative L2 error between two PSFs, each normalised to unit sum (the scale a capture
    normalises away)."""
    estimate, mask = estimate.detach().float(), mask.detach().float()
    a, b = estimate / estimate.sum(), mask / mask.sum()
    return float((a - b).norm() / b.norm())


@ATTACKS.register("lensless-mask-estimate", kind="inverse", protector="lensless",
                  description=f"least-squares PSF from {PAIRS} leaked (scene, capture) TRAIN pairs, then Wiener "
                              "deconvolution with the estimate (the mask is not known)")
def lensless_mask_estimate(protector: Protector, train_images: np.ndarray | None = None) -> ImageAttack:
    raw = _train_tensor(train_images, "lensless mask estimation")[:PAIRS]
    with torch.no_grad():
        scenes, captures = protector.scene(raw), protector.capture(raw)  # type: ignore[attr-defined]
    estimate = estimate_psf(scenes, captures, int(protector.mask_size)).clamp_min(0)  # type: ignore[attr-defined]
    size = int(protector.image_size)  # type: ignore[attr-defined]
    candidates = [LenslessDeconvolution(estimate, size, lam) for lam in (1e-4, 1e-3, 1e-2)]
    for c in candidates:
        c.name = "lensless-mask-estimate"
    return select_on_train(protector, candidates, train_images, "lensless mask estimation")
