"""Training checkpoints: one torch file holding everything needed to continue a run exactly.

A training checkpoint is ``torch.save`` of a dict::

    {"format": "campro-training-checkpoint", "format_version": 1, "trainer": "isp",
     "config": {...},          # the run's configuration (compared on resume)
     "state": {...}}           # model / optimiser / sampler / RNG states, step counters, logs

It is written atomically (write then rename), so an interrupted run leaves the previous checkpoint
intact. Loading checks the format and the trainer and names the file in every error;
:func:`config_mismatch` lists the configuration keys that differ between a checkpoint and a new
run, for a one-line refusal to resume an incompatible run.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..detection.checkpoint import check_state_dict
from ..errors import CheckpointError, MissingFileError
from ..io.atomic import atomic_path

FORMAT = "campro-training-checkpoint"
FORMAT_VERSION = 1


def save_training_checkpoint(path: str | os.PathLike[str], trainer: str, config: dict[str, Any],
                             state: dict[str, Any]) -> None:
    """Write a checkpoint atomically."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "trainer": trainer,
               "config": config, "state": state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_training_checkpoint(path: str | os.PathLike[str], trainer: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config, state)`` of a checkpoint written by :func:`save_training_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no training checkpoint at {path}; start a new run without --resume")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable training checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a campro-bench training checkpoint (format {FORMAT!r} expected)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format_version {payload.get('format_version')} is not {FORMAT_VERSION}")
    if payload.get("trainer") != trainer:
        raise CheckpointError(f"{path} is a checkpoint of the '{payload.get('trainer')}' trainer, not '{trainer}'")
    missing = [k for k in ("config", "state") if not isinstance(payload.get(k), dict)]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return payload["config"], payload["state"]


def load_module_state(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict after checking keys and shapes (a :class:`CheckpointError` names them)."""
    check_state_dict(module, state, source)
    module.load_state_dict(state)


def config_mismatch(saved: dict[str, Any], current: dict[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """``key: saved -> current`` for every configuration key that differs (``ignore`` excepted)."""
    skip = set(ignore)
    keys = sorted((set(saved) | set(current)) - skip)
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]


def rng_state() -> dict[str, Any]:
    """The global random states (torch CPU, numpy, python), for a checkpoint."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
