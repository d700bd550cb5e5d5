"""Fine-tuned detector checkpoints: one torch file with the weights and how they were made.

Layout (``torch.save`` of a dict)::

    {"format": "campro-person-detector", "format_version": 1,
     "detector": "ssdlite-mobilenetv2-coco", "base_weights": "<hash of the pretrained weights>",
     "state_dict": {...}, "metadata": {...}}

Loading checks the format, the detector name and every key and shape, and says which file and
which keys are wrong.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import CheckpointError, MissingFileError
from ..io.atomic import atomic_write_bytes
from ..io.hashing import sha256_bytes, sha256_file
from ..io.torchfile import load_torch_file

if TYPE_CHECKING:  # annotations only: base.py imports this module (no import cycle at run time)
    from .base import PersonDetector

FORMAT = "campro-person-detector"
FORMAT_VERSION = 1


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Same keys and shapes as ``model``, or a :class:`CheckpointError` naming the offenders."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    parts = [
        f"{label} {keys[:4]}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes for", shapes))
        if keys
    ]
    if parts:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + "; ".join(parts))


file_sha256 = sha256_file
"""SHA-256 of a file, read in chunks (hex); kept under this name for its importers."""


def save_checkpoint(detector: PersonDetector, path: Path, metadata: dict[str, Any] | None = None) -> str:
    """Write ``detector``'s weights atomically; returns the SHA-256 (16 hex) of the file."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "detector": detector.name,
        "base_weights": detector.weights_hash,
        "state_dict": {k: v.detach().cpu() for k, v in detector.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return sha256_bytes(data)[:16]


def load_checkpoint(detector: PersonDetector, path: Path) -> dict[str, Any]:
    """Load a checkpoint into ``detector``; returns its metadata. Sets ``detector.weights_hash``."""
    if not path.is_file():
        raise MissingFileError(f"detector checkpoint {path} does not exist")
    data = path.read_bytes()
    payload = load_torch_file(data, "detector checkpoint", name=str(path))
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a campro-bench detector checkpoint (no format '{FORMAT}')")
    if payload.get("detector") != detector.name:
        raise CheckpointError(
            f"{path} holds weights of '{payload.get('detector')}', not of '{detector.name}'"
        )
    state = payload.get("state_dict", {})
    check_state_dict(detector, state, f"{path} (for '{detector.name}')")
    detector.load_state_dict(state)
    detector.weights_hash = sha256_bytes(data)[:16]
    return dict(payload.get("metadata", {}))
