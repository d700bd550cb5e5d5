"""Parameter-aware analytic inverses: the attacker knows the protector and its parameters.

Registered in :data:`~campro_bench.registries.ATTACKS` with ``kind="inverse"`` and
``protector=NAME``; the audit applies every inverse registered for a protector's name. A plugin
adds the inverse of its own protector the same way (a function in the entry-point group
``campro_bench.attacks``, declared with that metadata, or ``ATTACKS.add(...)``)::

    @ATTACKS.register("my-inverse", kind="inverse", protector="my-protector")
    def my_inverse(protector, train_images):  # -> ImageAttack
        ...

``train_images`` (``N x H x W x 3`` uint8) are raw face crops of the attacker's TRAIN identities.
Where an inverse has a choice to make (a pre-image branch of a folded tone curve, a Wiener
noise-to-signal ratio), it is made on them, by the L1 distance to the raw crops after protecting
and inverting: never on an evaluated identity.

* ``invert``: ``1 - x`` (exact up to 8-bit rounding);
* ``lowres``: area-downsample back to the sensor grid, then bicubic upsampling;
* ``defocus``: Wiener deconvolution with the known Gaussian kernel;
* ``campro-isp``: the gamma LUT inverted per channel on its monotone segments (one candidate
  pre-image per segment an 8-bit level falls in; per level and channel the candidate closest in L1
  to the TRAIN crops' true pre-images is kept), then the inverse CCM and the display gamma;
* ``lensless``: back to the sensor grid, Tikhonov/Wiener deconvolution with the known mask
  (:func:`campro_bench.protectors.lensless.tikhonov_deconvolve`; the regularisation weight chosen on
  TRAIN crops), then up to the crop size.
"""

from __future__ import annotations

from typing import Annotated, Any, Sequence

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from ..errors import CamproError
from ..io import uint8_to_tensor
from ..protectors.base import Protector
from ..registries import ATTACKS
from .base import ImageAttack, payload_digest, quantize

LEVELS = 256
MAX_FIT_PIXELS = 400_000


def _train_tensor(train_images: np.ndarray | None, what: str) -> torch.Tensor:
    if train_images is None or len(train_images) == 0:
        raise CamproError(f"the {what} inverse chooses its parameters on TRAIN crops; none were given")
    return uint8_to_tensor(np.asarray(train_images))


def _l1_after(protector: Protector, attack: ImageAttack, raw: torch.Tensor) -> float:
    with torch.no_grad():
        return float((attack(quantize(protector(raw))) - raw).abs().mean())


def select_on_train(protector: Protector, candidates: Sequence[ImageAttack], train_images: np.ndarray | None,
                    what: str) -> ImageAttack:
    """The candidate with the lowest L1 to the raw TRAIN crops (recorded on it as ``selection``)."""
    raw = _train_tensor(train_images, what)
    scores = [_l1_after(protector, c, raw) for c in candidates]
    best = candidates[int(np.argmin(scores))]
    best.selection = {"rule": "lowest L1 to raw TRAIN crops", "scores": {c.spec(): s for c, s in zip(candidates, scores)}}
    return best


# ----------------------------------------------------------------------------------------
# invert
# ----------------------------------------------------------------------------------------
class InverseInvert(ImageAttack):
    name = "invert-inverse"

    def attack(self, images: torch.Tensor) -> torch.Tensor:
        return 1.0 - images


@ATTACKS.register("invert-inverse", kind="inverse", protector="invert", description="1 - x undone by 1 - x")
def invert_inverse(protector: Protector, train_images: np.ndarray | None = None) -> ImageAttack:
    return InverseInvert()


# ----------------------------------------------------------------------------------------
# lowres
# ----------------------------------------------------------------------------------------
class BicubicUpsampling(ImageAttack):
    """Back to the low-resolution grid (area), then bicubic upsampling to the crop size."""

    name = "lowres-inverse"

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = int(factor)

    def params(self) -> dict[str, Any]:
        return {"factor": self.factor}

    def attack(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        small = F.interpolate(images, size=(max(1, h // self.factor), max(1, w // self.factor)), mode="area")
        return F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)


@ATTACKS.register("lowres-inverse", kind="inverse", protector="lowres", description="bicubic upsampling")
def lowres_inverse(protector: Protector, train_images: np.ndarray | None = None) -> ImageAttack:
    return BicubicUpsampling(int(protector.params()["factor"]))


# ----------------------------------------------------------------------------------------
# defocus
# ----------------------------------------------------------------------------------------
class WienerDeconvolution(ImageAttack):
    """Wiener deconvolution with a known Gaussian kernel (reflect-padded, FFT)."""

    name = "defocus-inverse"

    def __init__(self, kernel: int, sigma: float, nsr: float) -> None:
        super().__init__()
        self.kernel, self.sigma, self.nsr = int(kernel), float(sigma), float(nsr)

    def params(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "sigma": self.sigma, "nsr": self.nsr}

    def attack(self, images: torch.Tensor) -> torch.Tensor:
        pad = self.kernel
        h, w = images.shape[-2:]
        mode = "reflect" if min(h, w) > pad else "replicate"
        x = F.pad(images.double(), (pad, pad, pad, pad), mode=mode)
        psf = kornia.filters.get_gaussian_kernel2d((self.kernel, self.kernel),
                                                   torch.tensor([[self.sigma, self.sigma]]))[0].double()
        full = torch.zeros(x.shape[-2:], dtype=torch.float64)
        full[: self.kernel, : self.kernel] = psf
        full = torch.roll(full, shifts=(-(self.kernel // 2), -(self.kernel // 2)), dims=(0, 1))
        otf = torch.fft.rfft2(full)
        wiener = otf.conj() / (otf.abs() ** 2 + self.nsr)
        out = torch.fft.irfft2(torch.fft.rfft2(x) * wiener, s=x.shape[-2:])
        return out[..., pad : pad + h, pad : pad + w].to(images.dtype)


@ATTACKS.register("defocus-inverse", kind="inverse", protector="defocus",
                  description="Wiener deconvolution with the known kernel (NSR chosen on TRAIN crops)")
def defocus_inverse(protector: Protector, train_images: np.ndarray | None = None) -> ImageAttack:
    p = protector.params()
    candidates = [WienerDeconvolution(p["kernel"], p["sigma"], nsr) for nsr in (1e-4, 1e-3, 1e-2, 1e-1)]
    return select_on_train(protector, candidates, train_images, "defocus")


# ----------------------------------------------------------------------------------------
# lensless
# ----------------------------------------------------------------------------------------
class LenslessDeconvolution(ImageAttack):
    """The known-mask deconvolution of a lensless capture, at the sensor's resolution."""

    name = "lensless-inverse"

    def __init__(self, mask: torch.Tensor, image_size: int, lam: float, iters: int = 100) -> None:
        super().__init__()
        self.register_buffer("mask", mask.detach().float().clone())
        self.image_size, self.lam, self.iters = int(image_size), float(lam), int(iters)

    def params(self) -> dict[str, Any]:
        return {"lam": self.lam, "iters": self.iters}

    def fingerprint_payload(self) -> dict[str, Any]:
        return {**super().fingerprint_payload(), "image_size": self.image_size,
                "mask": payload_digest(self.mask.cpu().double().numpy().tobytes().hex())}

    def attack(self, images: torch.Tensor) -> torch.Tensor:
        from ..protectors.lensless import tikhonov_deconvolve

        h, w = images.shape[-2:]
        sensor = F.interpolate(images, size=(self.image_size, self.image_size), mode="area")
        restored = tikhonov_deconvolve(sensor, self.mask.to(images.device), self.lam, self.iters)
        return F.interpolate(restored, size=(h, w), mode="bilinear", align_corners=False)


@ATTACKS.register("lensless-inverse", kind="inverse", protector="lensless",
                  description="Tikhonov/Wiener deconvolution with the known mask (weight chosen on TRAIN crops)")
def lensless_inverse(protector: Protector, train_images: np.ndarray | None = None) -> ImageAttack:
    mask, size = protector.mask, int(protector.image_size)  # type: ignore[attr-defined]
    candidates = [LenslessDeconvolution(mask, size, lam) for lam in (1e-4, 1e-3, 1e-2)]
    return select_on_train(protector, candidates, train_images, "lensless")


# ----------------------------------------------------------------------------------------
# CamPro ISP
# ----------------------------------------------------------------------------------------
def lut_preimages(lut: np.ndarray, levels: int = LEVELS) -> list[np.ndarray]:
    """For each 8-bit output level, one candidate input per LUT segment whose output range holds
    the level (within half a quantisation step): the pre-image branches of a folded tone curve."""
    k = len(lut)
    knots = np.linspace(0.0, 1.0, k)
    half = 0.5 / (levels - 1)
    out = []
    for level in range(levels):
        y = level / (levels - 1)
        cands = []
        for i in range(k - 1):
            a, b = float(lut[i]), float(lut[i + 1])
            if min(a, b) - half <= y <= max(a, b) + half:
                frac = 0.5 if a == b else float(np.clip((y - a) / (b - a), 0.0, 1.0))
                cands.append(knots[i] + frac * (knots[i + 1] - knots[i]))
        if not cands:  # the level is never produced: the input whose output is closest
            dense = np.linspace(0.0, 1.0, 4096)
            cands = [float(dense[np.argmin(np.abs(np.interp(dense, knots, lut) - y))])]
        out.append(np.unique(np.round(np.asarray(cands), 6)))
    return out


def choose_branches(preimages: list[np.ndarray], levels: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, int]:
    """Per output level, the candidate pre-image with the lowest summed L1 to the true inputs of
    the TRAIN pixels at that level (levels never seen: the candidate nearest the median input).
    Returns the table and how many levels had more than one branch."""
    table = np.zeros(len(preimages))
    fallback = float(np.median(truth)) if truth.size else 0.5
    order = np.argsort(levels, kind="stable")
    bounds = np.searchsorted(levels[order], np.arange(len(preimages) + 1))
    folded = 0
    for level, cands in enumerate(preimages):
        folded += int(len(cands) > 1)
        values = truth[order[bounds[level] : bounds[level + 1]]]
        if values.size:
            costs = np.abs(cands[:, None] - values[None, :]).sum(axis=1)
        else:
            costs = np.abs(cands - fallback)
        table[level] = cands[int(np.argmin(costs))]
    return table, folded


class ISPInverse(ImageAttack):
    """Per-channel LUT inverse (a 256-entry table per channel), inverse CCM, display gamma."""

    name = "campro-isp-inverse"

    def __init__(self, tables: np.ndarray, ccm: np.ndarray, degamma: float, info: dict[str, Any]) -> None:
        super().__init__()
        self.register_buffer("tables", torch.as_tensor(tables, dtype=torch.float32))
        self.register_buffer("ccm_inverse", torch.as_tensor(np.linalg.pinv(ccm), dtype=torch.float32))
        self.degamma = float(degamma)
        self.selection = info

    def fingerprint_payload(self) -> dict[str, Any]:
        return {"name": self.name, "tables": payload_digest(self.tables.tolist()),
                "ccm_inverse": self.ccm_inverse.tolist(), "degamma": self.degamma}

    def attack(self, images: torch.Tensor) -> torch.Tensor:
        index = images.clamp(0, 1).mul(LEVELS - 1).round().long()
        z = torch.stack([self.tables[c][index[:, c]] for c in range(3)], dim=1)
        linear = torch.einsum("ij,njhw->nihw", self.ccm_inverse, z).clamp(0.0, 1.0)
        return linear.pow(1.0 / self.degamma)


@ATTACKS.register("campro-isp-inverse", kind="inverse", protector="campro-isp",
                  description="inverse LUT on its monotone segments (branch per level chosen on TRAIN), "
                              "inverse CCM, re-gamma")
def campro_isp_inverse(protector: Protector, train_images: np.ndarray | None = None,
                       seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0) -> ImageAttack:
    from ..protectors.isp import apply_ccm, degamma, piecewise_linear

    isp = protector.to_params()  # type: ignore[attr-defined]
    ccm, lut = isp.ccm_tensor(), isp.lut_tensor()
    raw = _train_tensor(train_images, "campro-isp")
    with torch.no_grad():
        z = apply_ccm(degamma(raw, isp.degamma), ccm)  # the LUT's true inputs
        y = quantize(piecewise_linear(z, lut))
    levels = y.mul(LEVELS - 1).round().long().permute(1, 0, 2, 3).reshape(3, -1).numpy()
    truth = z.permute(1, 0, 2, 3).reshape(3, -1).numpy()
    rng = np.random.default_rng(seed)
    keep = rng.choice(levels.shape[1], min(MAX_FIT_PIXELS, levels.shape[1]), replace=False)
    preimages = lut_preimages(np.asarray(isp.lut))
    tables, folded = [], 0
    for c in range(3):
        table, folded = choose_branches(preimages, levels[c, keep], truth[c, keep])
        tables.append(table)
    info = {"rule": "per level and channel, the pre-image branch with the lowest L1 to TRAIN crops' true LUT inputs",
            "levels_with_several_branches": folded, "max_branches": int(max(len(p) for p in preimages)),
            "fit_pixels": int(len(keep)), "seed": seed}
    return ISPInverse(np.stack(tables), np.asarray(isp.ccm), isp.degamma, info)


def build_inverses(protector: Protector, train_images: np.ndarray | None) -> list[ImageAttack]:
    """Every registered analytic inverse of ``protector``, fitted on the TRAIN crops."""
    from .base import inverses_for

    attacks = []
    for name in inverses_for(protector):
        attack = ATTACKS.get(name)(protector, train_images)
        if not isinstance(attack, ImageAttack):
            raise CamproError(f"inverse '{name}' ({ATTACKS.origin(name)}) did not return an ImageAttack")
        attacks.append(attack)
    return attacks
