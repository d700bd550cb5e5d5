"""Image decoding and encoding between files, uint8 arrays and float tensors in [0, 1].

Protectors work on float tensors ``N x 3 x H x W`` in [0, 1] (sRGB); files are 8-bit RGB.
Decoding failures raise :class:`~campro_bench.errors.InvalidFileError` naming the file.

What :func:`load_image` does with each kind of file (any format Pillow opens: JPEG, PNG, BMP,
GIF, TIFF, WebP, PGM/PPM/PBM, ...; :data:`IMAGE_SUFFIXES` are the suffixes a folder scan takes):

* 8-bit RGB: as stored (an embedded colour profile is not applied; values are taken as sRGB).
* Greyscale (``L``), 1-bit (``1``): the grey level copied to the three channels.
* 16-bit greyscale (``I;16``, ``I`` from 16-bit PNG/TIFF/PGM): scaled to 8 bits
  (``round(v / 257)``), not clipped. 16-bit RGB is reduced to 8 bits by Pillow itself.
* Palette (``P``): the palette's colours.
* Alpha (``RGBA``, ``LA``, ``PA``, palette transparency): composited onto white
  (:data:`ALPHA_BACKGROUND`), as a viewer shows it; the colour stored under transparent pixels
  is never shown.
* CMYK (JPEG/TIFF): through the embedded ICC profile to sRGB when there is one, else Pillow's
  conversion. YCbCr, LAB, HSV: Pillow's conversion to RGB.
* EXIF orientation: applied (a phone's rotated JPEG comes out upright).
* Animated/multi-page files (GIF, TIFF): the first frame.
* Refused with one named :class:`~campro_bench.errors.InvalidFileError`: files Pillow cannot
  identify or decode (truncated, corrupt), floating-point images (``F``: no defined 8-bit
  scale), and images of more than :data:`MAX_PIXELS` pixels (a bounded size per image; decompression
  bombs are refused before their pixels are decoded).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from ..errors import InvalidFileError, MissingFileError
from .atomic import atomic_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm",
                  ".pnm")
"""File suffixes treated as images when a folder is scanned (case-insensitive)."""

MAX_PIXELS = 64_000_000
"""Largest image decoded (width x height); larger ones are refused. Its 8-bit pixels are 192 MB, but
protecting it costs far more: ``protect`` peaked at 2.7 GB (raw) to 8.5 GB (CamPro ISP) for an
8000 x 8000 JPEG, so ``protect`` sizes batches to a memory budget
(:func:`campro_bench.protect_files.image_bytes`)."""

ALPHA_BACKGROUND = (255, 255, 255)
"""Colour that transparent pixels are composited onto."""

_SRGB = ImageCms.createProfile("sRGB")


def list_images(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` by suffix, sorted by relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"{folder} is not a folder")
    pattern = "**/*" if recursive else "*"
    return sorted(
        p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to an ``H x W x 3`` uint8 RGB array (see the module notes per mode)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"image {path} does not exist")
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise InvalidFileError(f"image {path} is {width} x {height} pixels, more than the limit of "
                                       f"{MAX_PIXELS:,} (campro_bench.io.images.MAX_PIXELS); not decoded")
            img.load()
            return to_rgb(img, path)
    except InvalidFileError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidFileError(f"cannot decode image {path}: {exc}") from exc


def unreadable_reason(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be an image here (reading its header only), or None when it can.

    Cheap enough for a folder scan: the pixels are not decoded, so a file whose data is truncated
    after a valid header passes here and fails later in :func:`load_image`, by name.
    """
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                return f"{width} x {height} pixels, more than the limit of {MAX_PIXELS:,}"
            if img.mode == "F":
                return "floating-point pixels (mode F)"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return str(exc) or type(exc).__name__
    return None


def to_rgb(img: Image.Image, path: Path | str = "<image>") -> np.ndarray:
    """An opened image as ``H x W x 3`` uint8 RGB (orientation, bit depth, alpha and CMYK handled)."""
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode == "F":
        raise InvalidFileError(f"cannot decode image {path}: floating-point pixels (mode F) have no defined "
                               "8-bit scale; convert it to 8 or 16 bits")
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        grey = np.asarray(img, dtype=np.float64)
        grey = np.clip(np.rint(grey / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "CMYK" and img.info.get("icc_profile"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(img.info["icc_profile"]))
            img = ImageCms.profileToProfile(img, source, _SRGB, outputMode="RGB")
            mode = img.mode
        except (ImageCms.PyCMSError, OSError):
            pass  # a broken profile: Pillow's own conversion below
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def uint8_to_tensor(array: np.ndarray) -> torch.Tensor:
    """``H x W x 3`` (or ``N x H x W x 3``) uint8 -> ``3 x H x W`` (``N x 3 x H x W``) float in [0,1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    tensor = tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2)
    return tensor.float().div_(255.0)


def tensor_to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`uint8_to_tensor`, rounding to the nearest level and clipping to [0,255]."""
    t = tensor.detach().float().clamp(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).cpu()  # one float copy
    t = t.permute(1, 2, 0) if t.ndim == 3 else t.permute(0, 2, 3, 1)
    return t.numpy()


def load_image_tensor(path: str | os.PathLike[str]) -> torch.Tensor:
    """Decode an image file to a ``3 x H x W`` float tensor in [0, 1]."""
    return uint8_to_tensor(load_image(path))


def save_image_tensor(
    tensor: torch.Tensor, path: str | os.PathLike[str], jpeg_quality: int = 95
) -> None:
    """Encode a ``3 x H x W`` tensor in [0,1] to ``path`` atomically; format from the suffix.

    JPEG and WebP use ``jpeg_quality``; other suffixes Pillow knows (BMP, TIFF, PPM/PGM, GIF) are
    written in their format (PGM/PBM/PNM suffixes hold an RGB PPM); anything else as PNG.
    """
    img = Image.fromarray(tensor_to_uint8(tensor))
    path = Path(path)
    suffix = path.suffix.lower()
    fmt = {".pgm": "PPM", ".pbm": "PPM", ".pnm": "PPM"}.get(suffix) or Image.registered_extensions().get(suffix, "PNG")
    options = {"quality": jpeg_quality} if fmt in ("JPEG", "WEBP") else {}
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt, **options)
