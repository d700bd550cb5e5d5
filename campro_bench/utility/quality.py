"""Full-reference image quality of protected (or enhanced) images: RMSE, PSNR, SSIM, MS-SSIM.

The paper's Table IV scores the CamPro images against the raw images with four full-reference
metrics. Everything here is a pure function of float tensors ``N x 3 x H x W`` in [0, 1]
(``data_range = 1``) that returns one value per image, plus :class:`ImageQuality`, a small
torchmetrics-style accumulator (``update`` / ``compute`` / ``reset``) that averages per-image
values over batches of any image size and reports mean and standard deviation.

Conventions (documented in ``docs/quality_pose_caption.md``):

* **RMSE** is ``sqrt(mean((x - y)^2))`` over all pixels and channels of one image.
* **PSNR** is torchmetrics' ``peak_signal_noise_ratio`` per image, capped at
  :data:`PSNR_CAP_DB` (100 dB, i.e. RMSE below 1e-5), so that identical images give a finite
  value and averages stay finite. 8-bit quantisation alone limits real pairs to about 59 dB, so
  the cap only ever applies to numerically identical images.
* **SSIM** is torchmetrics' ``structural_similarity_index_measure`` (11 x 11 Gaussian, sigma 1.5,
  k1 0.01, k2 0.03), averaged over the three channels.
* **MS-SSIM** is torchmetrics' ``multiscale_structural_similarity_index_measure`` with the
  standard 5 scales and weights of Wang et al. (2003) when the image is large enough (shorter
  side > 160 px, torchmetrics' condition for an 11 x 11 kernel); smaller images use the largest
  number of scales for which it is defined, with the first weights renormalised to sum to 1
  (:func:`ms_ssim_settings`). Negative per-scale terms (anti-correlated images, such as a colour
  inversion) are clamped to 0 (torchmetrics ``normalize="relu"``), so MS-SSIM is 0 there
  instead of NaN.
* A **face-masked reference** (paper Eq. 8) replaces the reference by ``reference * mask`` where
  ``mask`` is ``N x 1 x H x W`` in {0, 1} with faces = 0; masks come either as a tensor or from
  a ``mask_fn(reference_images) -> mask`` callable (e.g. a face detector).
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

MaskFn = Callable[[torch.Tensor], torch.Tensor]
"""``mask_fn(images N x 3 x H x W) -> N x 1 x H x W`` in {0, 1}; 0 marks face pixels."""

PSNR_CAP_DB = 100.0
"""PSNR of identical images (MSE = 0) is reported as this value instead of infinity."""

SSIM_KERNEL = 11
SSIM_SIGMA = 1.5
MS_SSIM_BETAS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Per-scale weights of Wang, Simoncelli and Bovik (2003), finest scale first."""

METRICS: dict[str, bool] = {"rmse": False, "psnr": True, "ssim": True, "ms_ssim": True}
"""Metric name -> ``higher_is_better`` (the arrows of Table IV)."""


# ----------------------------------------------------------------------------------------
# input checks and the masked reference
# ----------------------------------------------------------------------------------------
def _check_pair(preds: torch.Tensor, target: torch.Tensor) -> None:
    if preds.shape != target.shape:
        raise ValueError(f"preds and target differ in shape: {tuple(preds.shape)} vs {tuple(target.shape)}")
    if preds.ndim != 4 or preds.shape[1] != 3:
        raise ValueError(f"image quality takes N x 3 x H x W batches, got shape {tuple(preds.shape)}")
    if not (preds.is_floating_point() and target.is_floating_point()):
        raise TypeError("image quality takes float images in [0, 1]")
    if min(preds.shape[-2:]) < SSIM_KERNEL:
        raise ValueError(
            f"images of {tuple(preds.shape[-2:])} px are too small: SSIM needs at least "
            f"{SSIM_KERNEL} px per side"
        )


def check_mask(mask: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Validate a face mask for ``images`` and return it as a float tensor of the images' dtype."""
    n, _, h, w = images.shape
    if mask.ndim != 4 or tuple(mask.shape) != (n, 1, h, w):
        raise ValueError(f"face mask must be {n} x 1 x {h} x {w}, got shape {tuple(mask.shape)}")
    mask = mask.to(device=images.device, dtype=images.dtype)
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("face mask values must be 0 (face) or 1 (elsewhere)")
    return mask


def face_masked_reference(reference: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 8's target for the face region: the reference with face pixels (mask 0) set to 0."""
    return reference * check_mask(mask, reference)


def resolve_reference(
    target: torch.Tensor, mask: torch.Tensor | None = None, mask_fn: MaskFn | None = None
) -> torch.Tensor:
    """The reference actually compared against: ``target``, or it face-masked by a mask/mask_fn."""
    if mask is not None and mask_fn is not None:
        raise ValueError("give either mask or mask_fn, not both")
    if mask_fn is not None:
        mask = mask_fn(target)
    return target if mask is None else face_masked_reference(target, mask)


# ----------------------------------------------------------------------------------------
# per-image metrics
# ----------------------------------------------------------------------------------------
def rmse(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Root mean square error per image (``N``), over all pixels and channels."""
    _check_pair(preds, target)
    return (preds - target).pow(2).flatten(1).mean(dim=1).sqrt()


def psnr(
    preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, cap: float = PSNR_CAP_DB
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image (``N``), capped at ``cap`` for identical images."""
    _check_pair(preds, target)
    value = peak_signal_noise_ratio(
        preds, target, data_range=data_range, reduction="none", dim=(1, 2, 3)
    )
    return value.clamp(max=cap)


def ssim(preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity per image (``N``): 11 x 11 Gaussian window, sigma 1.5."""
    _check_pair(preds, target)
    return structural_similarity_index_measure(
        preds, target, kernel_size=SSIM_KERNEL, sigma=SSIM_SIGMA, data_range=data_range,
        reduction="none",
    )


def _ms_ssim_defined(side: int, scales: int, kernel: int) -> bool:
    """torchmetrics' size conditions for MS-SSIM, plus reflect padding at the coarsest scale."""
    return (
        side >= 2**scales
        and side // max(1, scales - 1) ** 2 > kernel - 1
        and side // 2 ** (scales - 1) > kernel // 2
    )


def ms_ssim_settings(height: int, width: int) -> tuple[int, tuple[float, ...]]:
    """``(kernel_size, betas)`` used for MS-SSIM on an image of this size.

    The standard 5 scales for images whose shorter side exceeds 160 px; otherwise the largest
    number of scales that torchmetrics can compute, weights renormalised to sum to 1.
    """
    side = min(height, width)
    for scales in range(len(MS_SSIM_BETAS), 0, -1):
        if _ms_ssim_defined(side, scales, SSIM_KERNEL):
            if scales == len(MS_SSIM_BETAS):
                return SSIM_KERNEL, MS_SSIM_BETAS  # the standard weights, as published
            betas = MS_SSIM_BETAS[:scales]
            total = sum(betas)
            return SSIM_KERNEL, tuple(b / total for b in betas)
    raise ValueError(f"images with a {side} px side are too small for MS-SSIM")


def ms_ssim(preds: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Multi-scale SSIM per image (``N``), scales chosen by :func:`ms_ssim_settings`."""
    _check_pair(preds, target)
    kernel, betas = ms_ssim_settings(*preds.shape[-2:])
    return multiscale_structural_similarity_index_measure(
        preds, target, kernel_size=kernel, sigma=SSIM_SIGMA, betas=betas,
        data_range=data_range, reduction="none", normalize="relu",
    )


def image_quality(
    preds: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    mask_fn: MaskFn | None = None,
) -> dict[str, torch.Tensor]:
    """All four metrics per image (``{"rmse", "psnr", "ssim", "ms_ssim"}`` -> ``N``).

    With ``mask`` (or ``mask_fn``) the reference is the face-masked ``target`` (Eq. 8).
    Computed in float32 under ``torch.inference_mode``.
    """
    with torch.inference_mode():
        reference = resolve_reference(target.float(), mask, mask_fn)
        preds = preds.float()
        return {
            "rmse": rmse(preds, reference),
            "psnr": psnr(preds, reference),
            "ssim": ssim(preds, reference),
            "ms_ssim": ms_ssim(preds, reference),
        }


# ----------------------------------------------------------------------------------------
# accumulator
# ----------------------------------------------------------------------------------------
class ImageQuality:
    """Accumulates per-image metrics over batches; :meth:`compute` gives mean, std and count.

    Batches may differ in image size (COCO images do). The standard deviation is the sample
    standard deviation (``ddof = 1``; 0 for a single image). ``mask_fn``, if given, face-masks
    every reference passed to :meth:`update` that comes without an explicit mask.
    """

    higher_is_better = METRICS

    def __init__(self, mask_fn: MaskFn | None = None) -> None:
        self.mask_fn = mask_fn
        self.values: dict[str, list[float]] = {}
        self.reset()

    def reset(self) -> None:
        self.values = {name: [] for name in METRICS}

    def update(
        self, preds: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Score one batch, remember its per-image values and return them."""
        batch = image_quality(preds, target, mask, None if mask is not None else self.mask_fn)
        for name, value in batch.items():
            self.values[name].extend(float(v) for v in value.detach().cpu())
        return batch

    @property
    def count(self) -> int:
        return len(self.values["rmse"])

    def compute(self) -> dict[str, dict[str, float]]:
        """``{metric: {"mean", "std", "n"}}`` over every image seen since the last reset."""
        if self.count == 0:
            raise ValueError("ImageQuality.compute() called before any update()")
        return {name: summarize(values) for name, values in self.values.items()}


def summarize(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value) and count of a list of numbers."""
    n = len(values)
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return {"mean": mean, "std": math.sqrt(var), "n": float(n)}


def format_mean_std(stats: Mapping[str, float], digits: int = 3) -> str:
    """``"0.299 ± 0.051"``: how Table IV cells are written."""
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


# ----------------------------------------------------------------------------------------
# face masks from a face detector
# ----------------------------------------------------------------------------------------
def boxes_to_mask(boxes: list[torch.Tensor] | list[object], height: int, width: int) -> torch.Tensor:
    """``N x 1 x H x W`` mask: 0 inside any face box (``x1, y1, x2, y2`` pixels), 1 elsewhere."""
    mask = torch.ones(len(boxes), 1, height, width)
    for i, image_boxes in enumerate(boxes):
        for x1, y1, x2, y2 in torch.as_tensor(image_boxes, dtype=torch.float64).reshape(-1, 4).tolist():
            c0, r0 = max(int(math.floor(x1)), 0), max(int(math.floor(y1)), 0)
            c1, r1 = min(int(math.ceil(x2)), width), min(int(math.ceil(y2)), height)
            if c1 > c0 and r1 > r0:
                mask[i, 0, r0:r1, c0:c1] = 0.0
    return mask


def detector_mask_fn(spec: str) -> MaskFn:
    """A ``mask_fn`` that masks the boxes found by the face detector ``spec`` (e.g. ``centerface``).

    Uses :func:`campro_bench.faces.detection.build_face_detector` (``detect(list of uint8 images)
    -> [Faces with .boxes]``); the paper made its masks with RetinaFace.
    """
    from ..faces.detection import build_face_detector
    from ..io import tensor_to_uint8

    detector = build_face_detector(spec)

    def mask_fn(images: torch.Tensor) -> torch.Tensor:
        arrays = [tensor_to_uint8(image) for image in images]
        faces = detector.detect(arrays)
        return boxes_to_mask([f.boxes for f in faces], *images.shape[-2:]).to(images.device)

    return mask_fn
