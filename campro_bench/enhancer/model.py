"""The CamPro image enhancer: a U-Net that restores captured images for human viewers (Sec. V-D).

The paper trains "a U-Net [Ronneberger et al.] ... an encoder-decoder architecture with skip
connections" on pairs (captured image, original) with the face-masked L1 loss of Eq. 8, so that it
restores the scene but keeps faces obfuscated. This module is that network: ``depth`` levels of
two 3x3 conv + batch-norm + ReLU blocks, max-pool down, bilinear up, skip concatenation, and a
sigmoid output in [0, 1]. Any image size works (inputs are padded to a multiple of
``2**(depth-1)`` and cropped back).

Weights are stored as ``{"format": "campro-enhancer", "format_version": 1, "config": {...},
"state_dict": {...}, "metadata": {...}}`` with :func:`save_enhancer` / :func:`load_enhancer`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, InvalidFileError, MissingFileError
from ..io.atomic import atomic_path
from ..io.torchfile import load_torch_file

FORMAT_NAME = "campro-enhancer"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class UNetConfig:
    """Architecture hyper-parameters (stored with the weights)."""

    base_channels: int = 16
    depth: int = 4

    def channels(self) -> list[int]:
        return [self.base_channels * 2**i for i in range(self.depth)]


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder-decoder with skip connections; ``forward`` maps [0,1] RGB to [0,1] RGB."""

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        self.config = config
        chans = config.channels()
        self.down = nn.ModuleList()
        cin = 3
        for c in chans:
            self.down.append(_double_conv(cin, c))
            cin = c
        self.up = nn.ModuleList(
            _double_conv(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(len(chans) - 1))
        )
        self.head = nn.Conv2d(chans[0], 3, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        multiple = 2 ** (self.config.depth - 1)
        pad_h, pad_w = (-h) % multiple, (-w) % multiple
        x = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else images
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        out = torch.sigmoid(self.head(x))
        return out[..., :h, :w]


def masked_l1_loss(enhanced: torch.Tensor, original: torch.Tensor, keep_mask: torch.Tensor | None) -> torch.Tensor:
    """Eq. 8: ``s * |R(C(x)) - x| + (1 - s) * |R(C(x))|``, averaged over pixels and channels.

    ``keep_mask`` (``s``) is 1 outside faces and 0 on faces (``N x 1 x H x W``); ``None`` gives the
    plain L1 restoration loss of Eq. 7 (what an attacker's restoration network would use).
    """
    if keep_mask is None:
        return (enhanced - original).abs().mean()
    s = keep_mask.to(enhanced.dtype)
    return (s * (enhanced - original).abs() + (1 - s) * enhanced.abs()).mean()


def state_digest(model: nn.Module) -> str:
    """Hash of the weights (for cache keys and manifests)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_enhancer(model: UNet, path: str | os.PathLike[str], **metadata: Any) -> None:
    """Write weights + architecture + metadata atomically."""
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": metadata,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_enhancer(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> UNet:
    """Load a file written by :func:`save_enhancer`; errors name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"enhancer weights {path} do not exist")
    payload = load_torch_file(path, "enhancer weights")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise InvalidFileError(f"{path}: not a campro-enhancer file (format {payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r})")
    if payload.get("format_version") != FORMAT_VERSION:
        raise InvalidFileError(f"{path}: format_version {payload.get('format_version')} is not supported")
    try:
        model = UNet(UNetConfig(**payload["config"]))
    except TypeError as exc:
        raise CheckpointError(f"{path}: bad U-Net config {payload.get('config')!r} ({exc})") from exc
    expected = model.state_dict()
    given = payload.get("state_dict", {})
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    bad_shapes = [k for k in given if k in expected and tuple(expected[k].shape) != tuple(given[k].shape)]
    if missing or unexpected or bad_shapes:
        raise CheckpointError(
            f"{path}: weights do not match the U-Net config {payload['config']}: "
            f"missing {missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}), "
            f"misshaped {bad_shapes[:5]} ({len(bad_shapes)})"
        )
    model.load_state_dict(given)
    model = model.to(map_location)
    model.metadata = dict(payload.get("metadata", {}))  # type: ignore[attr-defined]
    return model.eval()
