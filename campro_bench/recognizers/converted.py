"""Weights converted once from another framework's file and cached as a plain PyTorch state dict.

Several offline recognisers ship in formats torch cannot read directly (a TensorFlow frozen graph,
a Keras HDF5 file). Each is converted at first use into its PyTorch architecture; the state dict
(tensors only, read back with ``weights_only=True``) and a JSON record of the conversion (source
hash, converter version, reference check) are written atomically into ``<cache>/models/`` under a
name that includes the source hash and the converter version, so a new source or converter never
reads a stale conversion. The state dict is a sealed cache entry (:mod:`campro_bench.io.sealed`): a
truncated or altered file fails its digest and is converted again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import CheckpointError
from ..io import atomic_write_json
from ..io.sealed import discard, sealed_path, verify_sealed
from ..io.torchfile import load_torch_file

Converter = Callable[[], tuple[dict[str, torch.Tensor], dict[str, Any]]]
"""Builds the state dict and the conversion record (called only on a cache miss)."""


def cached_conversion(cache_dir: Path, stem: str, weights_id: str, convert: Converter) -> tuple[Path, dict[str, Any]]:
    """``<cache>/models/<stem>-<weights_id>.pt`` and its record, converting first when absent."""
    target = cache_dir / "models" / f"{stem}-{weights_id}.pt"
    meta_file = target.with_suffix(".json")
    if verify_sealed(target) and meta_file.is_file():
        return target, json.loads(meta_file.read_text())
    discard(target)  # absent, or altered since it was written: convert again
    state, meta = convert()
    meta = {**meta, "weights_id": weights_id}
    with sealed_path(target) as tmp:
        torch.save(state, tmp)
    atomic_write_json(meta_file, meta)
    return target, meta


def load_converted(network: nn.Module, path: Path) -> nn.Module:
    """Load a cached conversion into ``network`` (tensors only); unreadable -> delete and convert again."""
    try:
        network.load_state_dict(load_torch_file(path, "cached conversion"))
    except (RuntimeError, OSError, ValueError, EOFError, CheckpointError) as exc:
        raise CheckpointError(f"cached conversion {path} is unreadable ({exc}); delete it to convert again") from exc
    return network
