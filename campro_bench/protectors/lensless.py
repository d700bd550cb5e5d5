"""The lensless (FlatCam-style coded-mask) camera as a protector.

A lensless camera replaces the lens by a thin amplitude mask in front of the sensor. For a scene
far from the mask each scene point casts a shadow of the mask on the sensor, so the measurement is
the convolution of the scene with the mask's point-spread function (PSF = the mask pattern at the
sensor scale; Nguyen Canh, Ngo and Nagahara, IEEE Access 2023: "modeling lensless imaging to
convolution"; FlatCam: Asif et al. 2017, Tan et al. 2019)::

    y = Q( conv_same(x, H) / sum(H) + sigma * n )

* ``x``: the scene, the input brought to ``image_size`` x ``image_size`` (area resampling);
  the three colour channels share the PSF (a monochrome amplitude mask).
* ``H``: the mask, ``mask_size`` x ``mask_size`` with transmissions in [0, 1].
* ``conv_same``: linear (zero-padded) convolution computed by FFT, cropped to the scene size as
  ``scipy.signal.convolve2d(..., mode="same")`` does (the sensor sees the central window).
* ``/ sum(H)``: exposure normalisation (auto-exposure): a uniform scene of value ``v`` measures
  ``v`` where the whole mask is inside the scene, so every mask uses the sensor's full range and
  the pinhole (one open cell at the centre) reproduces the scene exactly.
* ``n``: Gaussian read noise with standard deviation ``noise`` (fraction of full scale). In
  :meth:`Lensless.protect` each image's noise is drawn from a generator seeded by ``seed`` and a
  hash of the image's 8-bit content, so the output does not depend on how images are batched.
* ``Q``: 8-bit quantisation (clip to [0, 1], round to 1/255), straight-through for gradients.

The separable variant (``model=separable``) is FlatCam's ``Y = PhiL X PhiR^T``: with a rank-1
mask ``H = a b^T`` the convolution factors into a column operator ``PhiL`` (Toeplitz of ``a``)
and a row operator ``PhiR`` (Toeplitz of ``b``); it equals the convolution model for such masks.

Output contract: the 8-bit measurement (``image_size`` square) is resized back to the input's
``H x W`` with bilinear interpolation, so the protector returns ``N x 3 x H x W`` in [0, 1] like
every other one. The measurement itself is :meth:`Lensless.capture`.

Masks (``mask=``): ``pinhole`` (one open cell), ``open`` (fully open), ``random`` (seeded
Bernoulli(1/2) binary), ``mseq`` (outer product of two maximal-length sequences,
``scipy.signal.max_len_seq``, zero-padded to ``mask_size``), or a learned mask from ``file=``
(JSON or ``.npy``) or ``preset=`` (shipped under ``campro_bench/presets/lensless/``).
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..errors import InvalidFileError, MissingFileError, UnknownNameError
from ..io.atomic import atomic_write_json
from ..io.jsonfile import read_json
from ..registries import PROTECTORS
from .base import Protector

FORMAT_NAME = "campro-lensless-mask"
FORMAT_VERSION = 1
MASKS = ("pinhole", "open", "random", "mseq", "learned")
MODELS = ("conv", "separable")
RESTORE = ("none", "wiener")
IMAGE_SIZES = (63, 127)
MASK_SIZES = (32, 64)

# option ranges, checked where specs are built (campro_bench.specs)
ImageSize = Annotated[int, Field(ge=3, le=1024, description="sensor side (pixels)")]
MaskSize = Annotated[int, Field(ge=1, le=1024, description="mask side (pixels)")]
Noise = Annotated[float, Field(ge=0.0, le=1.0, description="read-noise std (fraction of full scale)")]
Bits = Annotated[int, Field(ge=0, le=16, description="quantisation bits (0: none)")]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1, description="mask and noise seed")]
Lam = Annotated[float, Field(ge=0.0, le=1.0, description="Tikhonov weight (operator norm 1; 1 halves brightness)")]
Iters = Annotated[int, Field(ge=1, le=10_000, description="conjugate-gradient steps")]


# ----------------------------------------------------------------------------------------
# functional form
# ----------------------------------------------------------------------------------------
def fft_convolve_same(scene: torch.Tensor, psf: torch.Tensor) -> torch.Tensor:
    """Linear 2-D convolution of ``... x h x w`` scenes with an ``m x n`` PSF, cropped like
    ``scipy.signal.convolve2d(scene, psf, mode="same")``; FFT-based and differentiable in both."""
    h, w = scene.shape[-2:]
    m, n = psf.shape[-2:]
    size = (h + m - 1, w + n - 1)
    spectrum = torch.fft.rfft2(scene, s=size) * torch.fft.rfft2(psf.to(scene.dtype), s=size)
    full = torch.fft.irfft2(spectrum, s=size)
    top, left = (m - 1) // 2, (n - 1) // 2
    return full[..., top : top + h, left : left + w]


def toeplitz_same(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """``size x size`` matrix ``T`` with ``T @ v == convolve(v, kernel, mode="same")`` (1-D)."""
    m = kernel.shape[0]
    offset = (m - 1) // 2
    rows = torch.arange(size).view(-1, 1)
    cols = torch.arange(size).view(1, -1)
    index = rows - cols + offset  # kernel tap that links output row to input col
    valid = (index >= 0) & (index < m)
    return torch.where(valid, kernel[index.clamp(0, m - 1)], torch.zeros((), dtype=kernel.dtype))


def separable_capture_linear(scene: torch.Tensor, col: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """FlatCam's ``PhiL X PhiR^T`` for the rank-1 mask ``col row^T`` (not normalised)."""
    h, w = scene.shape[-2:]
    phi_l = toeplitz_same(col.to(scene.dtype), h)
    phi_r = toeplitz_same(row.to(scene.dtype), w)
    return phi_l @ scene @ phi_r.T


def quantize_ste(values: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Clip to [0, 1] and round to ``2**bits - 1`` levels; the gradient passes straight through
    (the clip keeps its gradient of zero outside [0, 1])."""
    clipped = values.clamp(0.0, 1.0)
    if bits <= 0:
        return clipped
    levels = float(2**bits - 1)
    return clipped + (torch.round(clipped * levels) / levels - clipped).detach()


def lensless_measure(
    scene: torch.Tensor,
    mask: torch.Tensor,
    *,
    noise: torch.Tensor | float = 0.0,
    bits: int = 8,
    separable: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The sensor image of ``scene`` (``N x C x h x w`` in [0, 1]) through ``mask``.

    ``noise`` is either a standard normal tensor already scaled (same shape as the scene) or 0.
    ``separable = (col, row)`` uses the separable operator instead of the FFT convolution
    (``mask`` must then equal ``outer(col, row)``; it is used for the exposure normalisation).
    """
    total = mask.sum().clamp_min(1e-8)
    if separable is not None:
        linear = separable_capture_linear(scene, *separable)
    else:
        linear = fft_convolve_same(scene, mask)
    return quantize_ste(linear / total + noise, bits)


def aperture_ratio(mask: torch.Tensor | np.ndarray) -> float:
    """Mean transmission of the mask (the talk's "aperture ratio": 1 open, 1/m^2 a pinhole)."""
    return float(np.asarray(mask, dtype=np.float64).mean())


def blurriness(images: torch.Tensor) -> list[float]:
    """Per-image blur of Crete et al. (2007) on the luminance, 0 (sharp) to 1 (blurry), via
    ``skimage.measure.blur_effect``: the "Blurriness" of the talk's tables, as we read it."""
    from skimage.measure import blur_effect

    gray = images.detach().float().cpu().mean(dim=1).numpy()
    return [float(blur_effect(g)) for g in gray]


# ----------------------------------------------------------------------------------------
# masks
# ----------------------------------------------------------------------------------------
def mls_vector(size: int) -> np.ndarray:
    """A maximal-length sequence of length ``2^k - 1 <= size`` (0/1), zero-padded to ``size``."""
    from scipy.signal import max_len_seq

    bits = int(np.floor(np.log2(size + 1)))
    if bits < 2:
        raise ValueError(f"mask size {size} is too small for an M-sequence")
    seq = max_len_seq(bits)[0].astype(np.float64)
    out = np.zeros(size)
    start = (size - len(seq)) // 2
    out[start : start + len(seq)] = seq
    return out


def mask_factors(kind: str, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """``(col, row)`` vectors of the built-in separable masks (``None`` for ``random``: not rank 1)."""
    if kind == "pinhole":
        delta = np.zeros(size)
        delta[(size - 1) // 2] = 1.0
        return delta, delta.copy()
    if kind == "open":
        return np.ones(size), np.ones(size)
    if kind == "mseq":
        return mls_vector(size), mls_vector(size)
    if kind == "random":
        rng = np.random.default_rng([seed, 0x1E25])
        col, row = (rng.random(size) < 0.5).astype(np.float64), (rng.random(size) < 0.5).astype(np.float64)
        col[(size - 1) // 2] = row[(size - 1) // 2] = 1.0  # never an all-closed mask
        return col, row
    return None


def builtin_mask(kind: str, size: int, seed: int = 0, separable: bool = False) -> np.ndarray:
    """The ``size x size`` mask of a built-in kind (``random`` is full-rank unless ``separable``)."""
    if kind == "random" and not separable:
        rng = np.random.default_rng([seed, 0x1E25])
        mask = (rng.random((size, size)) < 0.5).astype(np.float64)
        mask[(size - 1) // 2, (size - 1) // 2] = 1.0
        return mask
    factors = mask_factors(kind, size, seed)
    if factors is None:
        raise UnknownNameError(f"unknown lensless mask '{kind}'; known masks: {', '.join(MASKS)}")
    return np.outer(*factors)


def rank1_factors(mask: np.ndarray, source: str, tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """``(col, row)`` with ``outer(col, row) == mask``, or an error if the mask is not rank 1."""
    u, s, vt = np.linalg.svd(mask)
    if s[0] <= 0 or (len(s) > 1 and s[1] > tol * s[0]):
        raise InvalidFileError(f"{source}: the separable model needs a rank-1 mask (outer product of two vectors)")
    col, row = u[:, 0] * np.sqrt(s[0]), vt[0] * np.sqrt(s[0])
    if col.sum() < 0:
        col, row = -col, -row
    return col, row


def validate_mask(data: Any, source: str) -> np.ndarray:
    """A square 2-D array of finite values in [0, 1] with some light through it, as float64."""
    try:
        mask = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidFileError(f"{source}: the mask must be a 2-D array of numbers ({exc})") from exc
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1] or mask.shape[0] < 1:
        raise InvalidFileError(f"{source}: the mask must be a square 2-D array, got shape {list(mask.shape)}")
    if not np.isfinite(mask).all():
        raise InvalidFileError(f"{source}: the mask must be finite (found NaN or infinity)")
    if mask.min() < 0.0 or mask.max() > 1.0:
        raise InvalidFileError(f"{source}: mask values must lie within [0, 1] (found {mask.min():.4g} .. {mask.max():.4g})")
    if mask.sum() <= 0:
        raise InvalidFileError(f"{source}: the mask is fully closed (all zeros)")
    return mask


def load_mask_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """A learned mask from JSON (``{"format": "campro-lensless-mask", "mask": [[...]], ...}``) or
    ``.npy`` (loaded without pickle), validated; returns the mask and the JSON metadata."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"lensless mask file {path} does not exist")
    if path.suffix.lower() == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InvalidFileError(f"{path}: not a readable .npy array ({exc})") from exc
        return validate_mask(data, str(path)), {}
    payload = read_json(path, "lensless mask file")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise InvalidFileError(f"{path}: not a lensless mask file (expected a JSON object with format {FORMAT_NAME!r})")
    if payload.get("format_version") != FORMAT_VERSION:
        raise InvalidFileError(f"{path}: format_version {payload.get('format_version')} is not {FORMAT_VERSION}")
    if "mask" not in payload:
        raise InvalidFileError(f"{path}: missing key 'mask'")
    metadata = payload.get("metadata", {})
    return validate_mask(payload["mask"], str(path)), dict(metadata) if isinstance(metadata, dict) else {}


def save_mask_file(path: str | os.PathLike[str], mask: np.ndarray, **metadata: Any) -> None:
    """Write a mask as JSON atomically (full float precision: a round trip is exact)."""
    mask = validate_mask(mask, str(path))
    atomic_write_json(path, {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                             "mask": mask.tolist(), "metadata": metadata})


def _preset_root() -> Path:
    return Path(str(resources.files("campro_bench") / "presets" / "lensless"))


def list_presets() -> list[str]:
    """Names of the learned masks shipped in the package."""
    root = _preset_root()
    if not root.is_dir():
        return []
    return sorted(p.stem for p in root.glob("*.json") if not p.name.endswith(".manifest.json"))


def preset_path(name: str) -> Path:
    path = _preset_root() / f"{name}.json"
    if not path.is_file():
        raise UnknownNameError(f"unknown lensless preset '{name}'; known presets: {', '.join(list_presets()) or '(none)'}")
    return path


# ----------------------------------------------------------------------------------------
# the protector
# ----------------------------------------------------------------------------------------
@PROTECTORS.register(
    "lensless",
    description="lensless coded-mask camera: scene * mask PSF, read noise, 8-bit (FlatCam / Nguyen Canh et al.)",
)
class Lensless(Protector):
    """A lensless camera with a coded amplitude mask (see the module docstring).

    Spec examples: ``lensless:mask=random,seed=3``, ``lensless:mask=mseq,model=separable``,
    ``lensless:preset=celeba-lwoc-63``, ``lensless:file=runs/mask.json,noise=0``.
    """

    differentiable = True
    working_factor = 3.0
    default_restore = "none"

    def __init__(
        self,
        mask: str = "random",
        image_size: ImageSize | None = None,
        mask_size: MaskSize = 32,
        model: str = "conv",
        noise: Noise = 0.01,
        bits: Bits = 8,
        seed: Seed = 0,
        file: Path | None = None,
        preset: str | None = None,
        restore: str | None = None,
        lam: Lam = 1e-3,
        iters: Iters = 50,
    ) -> None:
        super().__init__()
        restore = restore or self.default_restore
        if restore not in RESTORE:
            raise UnknownNameError(f"unknown lensless restore '{restore}'; known: {', '.join(RESTORE)}")
        self.restore, self.lam, self.iters = restore, float(lam), int(iters)
        if model not in MODELS:
            raise UnknownNameError(f"unknown lensless model '{model}'; known models: {', '.join(MODELS)}")
        if image_size is None:  # a preset's own sensor size, else the talk's 63
            image_size = int(load_mask_file(preset_path(preset))[1].get("image_size", 63)) if preset else 63
        if file is not None and preset is not None:
            raise ValueError("give only one of file= or preset=")
        self.metadata: dict[str, Any] = {}
        if file is not None or preset is not None:
            values, self.metadata = load_mask_file(file if file is not None else preset_path(str(preset)))
            kind = "learned"
            mask_size = values.shape[0]
        elif mask in MASKS and mask != "learned":
            kind = mask
            values = builtin_mask(mask, mask_size, seed, separable=model == "separable")
        else:
            raise UnknownNameError(
                f"unknown lensless mask '{mask}'; known masks: pinhole, open, random, mseq (or file=/preset=)"
            )
        self.kind, self.image_size, self.model = kind, int(image_size), model
        self.noise, self.bits, self.seed = float(noise), int(bits), int(seed)
        self._source = {"file": str(file)} if file is not None else {"preset": preset} if preset else {"mask": kind}
        self.mask = nn.Parameter(torch.tensor(values, dtype=torch.float32))
        self._factors: tuple[np.ndarray, np.ndarray] | None = None
        if model == "separable":
            built = mask_factors(kind, values.shape[0], seed) if kind != "learned" else None
            self._factors = built or rank1_factors(values, str(file or preset))

    @property
    def mask_size(self) -> int:
        return int(self.mask.shape[0])

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self._source)
        if "mask" in out:
            out["mask_size"] = self.mask_size
        out["image_size"] = self.image_size
        out.update(model=self.model, noise=self.noise, bits=self.bits, seed=self.seed)
        if self.restore != self.default_restore:
            out["restore"] = self.restore
        if self.restore != "none":
            out.update(lam=self.lam, iters=self.iters)
        return out

    def fingerprint_payload(self) -> dict[str, Any]:
        digest = hashlib.sha256(self.mask.detach().cpu().double().numpy().tobytes()).hexdigest()[:16]
        return {**self.config(), "mask_sha": digest, "image_size": self.image_size}

    # ------------------------------------------------------------------------------------
    def scene(self, images: torch.Tensor) -> torch.Tensor:
        """The input at the sensor resolution (area resampling; bilinear when enlarging)."""
        size = (self.image_size, self.image_size)
        if tuple(images.shape[-2:]) == size:
            return images
        smaller = images.shape[-2] >= size[0] and images.shape[-1] >= size[1]
        return F.interpolate(images, size=size, mode="area") if smaller else F.interpolate(
            images, size=size, mode="bilinear", align_corners=False)

    def read_noise(self, images: torch.Tensor) -> torch.Tensor | float:
        """Gaussian read noise per image, seeded by ``seed`` and the image's 8-bit content."""
        if self.noise == 0:
            return 0.0
        out = torch.empty((images.shape[0], 3, self.image_size, self.image_size), dtype=torch.float32)
        content = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        for i, image in enumerate(content):
            digest = hashlib.sha256(image.tobytes()).digest()
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int.from_bytes(digest[:6], "little"))
            out[i] = torch.randn(out.shape[1:], generator=gen)
        return (out * self.noise).to(images.device, images.dtype)

    def capture(self, images: torch.Tensor, noise: torch.Tensor | float | None = None) -> torch.Tensor:
        """The 8-bit sensor measurement ``N x 3 x image_size x image_size`` (the camera's output)."""
        scene = self.scene(images)
        separable = None
        if self._factors is not None:
            separable = tuple(torch.tensor(f, dtype=scene.dtype, device=scene.device) for f in self._factors)
        noise = self.read_noise(images) if noise is None else noise
        return lensless_measure(scene, self.mask, noise=noise, bits=self.bits, separable=separable)

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        measured = self.capture(images)
        if self.restore == "wiener":
            with torch.no_grad():
                measured = tikhonov_deconvolve(measured, self.mask, self.lam, self.iters)
        if tuple(measured.shape[-2:]) == tuple(images.shape[-2:]):
            return measured
        return F.interpolate(measured, size=images.shape[-2:], mode="bilinear", align_corners=False).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------------
# white-box attack: Tikhonov deconvolution with the known mask
# ----------------------------------------------------------------------------------------
def _fast_size(h: int, w: int, m: int, n: int) -> tuple[int, int]:
    from scipy.fft import next_fast_len

    return next_fast_len(h + m - 1, real=True), next_fast_len(w + n - 1, real=True)


def lensless_adjoint(measured: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The adjoint of ``x -> conv_same(x, mask)``: correlation with the mask, cropped to match."""
    h, w = measured.shape[-2:]
    m, n = mask.shape[-2:]
    size = _fast_size(h, w, m, n)
    flipped = mask.flip(-1).flip(-2).to(measured.dtype)
    full = torch.fft.irfft2(torch.fft.rfft2(measured, s=size) * torch.fft.rfft2(flipped, s=size), s=size)
    top, left = m - 1 - (m - 1) // 2, n - 1 - (n - 1) // 2
    return full[..., top : top + h, left : left + w]


def tikhonov_deconvolve(measured: torch.Tensor, mask: torch.Tensor, lam: float = 1e-3, iters: int = 100) -> torch.Tensor:
    """``argmin_x ||A x - y||^2 + lam ||x||^2`` for the exact (non-circular) lensless operator
    ``A x = conv_same(x, mask) / sum(mask)``, by conjugate gradients on the normal equations
    (``iters`` steps from ``x = 0``), clipped to [0, 1]. With white noise and a flat prior this
    is the Wiener filter of the bordered operator; the attacker knows the mask exactly."""
    mask = mask.detach().to(measured.dtype)
    mask = mask / mask.sum().clamp_min(1e-8)
    h, w = measured.shape[-2:]
    m, n = mask.shape[-2:]
    size = _fast_size(h, w, m, n)
    forward_f = torch.fft.rfft2(mask, s=size)
    adjoint_f = torch.fft.rfft2(mask.flip(-1).flip(-2), s=size)
    ft, fl = (m - 1) // 2, (n - 1) // 2
    at, al = m - 1 - ft, n - 1 - fl

    def apply(x: torch.Tensor, spectrum: torch.Tensor, top: int, left: int) -> torch.Tensor:
        full = torch.fft.irfft2(torch.fft.rfft2(x, s=size) * spectrum, s=size)
        return full[..., top : top + h, left : left + w]

    def normal(x: torch.Tensor) -> torch.Tensor:
        return apply(apply(x, forward_f, ft, fl), adjoint_f, at, al) + lam * x

    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).flatten(-2).sum(-1)[..., None, None]

    b = apply(measured, adjoint_f, at, al)
    x = torch.zeros_like(measured)
    r = b.clone()
    p = r.clone()
    rs = dot(r, r)
    for _ in range(iters):
        ap = normal(p)
        alpha = rs / dot(p, ap).clamp_min(1e-30)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = dot(r, r)
        p = r + (rs_new / rs.clamp_min(1e-30)) * p
        rs = rs_new
    return x.clamp(0.0, 1.0)


@PROTECTORS.register(
    "lensless-wiener",
    description="attacker's view of a lensless capture: Tikhonov/Wiener deconvolution with the known mask",
)
class LenslessWiener(Lensless):
    """A lensless capture (same options as ``lensless``) restored by :func:`tikhonov_deconvolve`
    with the known mask (``lam``, ``iters``): the white-box attacker's image, for the privacy
    tables. ``lensless-wiener:...`` is ``lensless:...,restore=wiener``."""

    differentiable = False
    default_restore = "wiener"
