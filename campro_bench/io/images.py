"""Image decoding and encoding between files, uint8 arrays and float tensors in [0, 1].

Protectors work on float tensors ``N x 3 x H x W`` in [0, 1] (sRGB); files are 8-bit RGB.
Decoding failures raise :class:`~campro_bench.errors.InvalidFileError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import InvalidFileError, MissingFileError
from .atomic import atomic_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
"""File suffixes treated as images when a folder is scanned (case-insensitive)."""


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
    """Decode an image file to an ``H x W x 3`` uint8 RGB array."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"image {path} does not exist")
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidFileError(f"cannot decode image {path}: {exc}") from exc


def uint8_to_tensor(array: np.ndarray) -> torch.Tensor:
    """``H x W x 3`` (or ``N x H x W x 3``) uint8 -> ``3 x H x W`` (``N x 3 x H x W``) float in [0,1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    tensor = tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2)
    return tensor.float().div_(255.0)


def tensor_to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`uint8_to_tensor`, rounding to the nearest level and clipping to [0,255]."""
    t = tensor.detach().float().clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8).cpu()
    t = t.permute(1, 2, 0) if t.ndim == 3 else t.permute(0, 2, 3, 1)
    return t.numpy()


def load_image_tensor(path: str | os.PathLike[str]) -> torch.Tensor:
    """Decode an image file to a ``3 x H x W`` float tensor in [0, 1]."""
    return uint8_to_tensor(load_image(path))


def save_image_tensor(
    tensor: torch.Tensor, path: str | os.PathLike[str], jpeg_quality: int = 95
) -> None:
    """Encode a ``3 x H x W`` tensor in [0,1] to ``path`` atomically; format from the suffix."""
    img = Image.fromarray(tensor_to_uint8(tensor))
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() in (".jpg", ".jpeg"):
            img.save(tmp, format="JPEG", quality=jpeg_quality)
        else:
            img.save(tmp, format="PNG")
