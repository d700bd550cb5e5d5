"""Training checkpoints: one torch file holding everything needed to continue a run exactly.

A training checkpoint is ``torch.save`` of a dict::

    {"format": "campro-training-checkpoint", "format_version": 1, "trainer": "isp",
     "config": {...},          # the run's configuration (compared on resume)
     "state": {...}}           # model / optimiser / sampler / RNG states, step counters, logs

Only tensors and plain data (numbers, strings, lists, tuples, dicts) are stored: random states
are converted to tensors and plain values (:func:`rng_state`), so the file is read with
``weights_only=True`` and reading a checkpoint never runs code from it. It is written atomically
(write then rename), so an interrupted run leaves the previous checkpoint intact. Loading checks the format and the trainer and names the file in every error;
:func:`config_mismatch` lists the configuration keys that differ between a checkpoint and a new
run, for a one-line refusal to resume an incompatible run.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..detection.checkpoint import check_state_dict
from ..errors import CheckpointError, MissingFileError
from ..io.atomic import atomic_path
from ..io.sealed import sealed_path
from ..io.torchfile import load_torch_file

FORMAT = "campro-training-checkpoint"
FORMAT_VERSION = 1


def save_training_checkpoint(path: str | os.PathLike[str], trainer: str, config: dict[str, Any],
                             state: dict[str, Any], sealed: bool = False) -> None:
    """Write a checkpoint atomically (``sealed``: with a content digest, for cache entries)."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "trainer": trainer,
               "config": config, "state": state}
    with (sealed_path if sealed else atomic_path)(path) as tmp:
        torch.save(payload, tmp)


def load_training_checkpoint(path: str | os.PathLike[str], trainer: str,
                             required: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config, state)`` of a checkpoint written by :func:`save_training_checkpoint`; the
    ``required`` state entries (what the trainer reads to resume) must all be there."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no training checkpoint at {path}; start a new run without --resume")
    payload = load_torch_file(path, "training checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a campro-bench training checkpoint (format {FORMAT!r} expected)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format_version {payload.get('format_version')} is not {FORMAT_VERSION}")
    if payload.get("trainer") != trainer:
        raise CheckpointError(f"{path} is a checkpoint of the '{payload.get('trainer')}' trainer, not '{trainer}'")
    missing = [k for k in ("config", "state") if not isinstance(payload.get(k), dict)]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    require_state(payload["state"], required, path)
    return payload["config"], payload["state"]


def require_state(state: dict[str, Any], required: Iterable[str], path: str | os.PathLike[str]) -> None:
    """Refuse, in one line, a checkpoint whose state lacks entries that resuming reads."""
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint state lacks {', '.join(missing)} (not a complete training state); "
                              "start a new run without --resume")


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
    """The global random states (torch CPU, numpy, python) as tensors and plain data, for a checkpoint."""
    np_state = np.random.get_state(legacy=False)
    version, words, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "python": {"version": version, "state": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states returned by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    p = state["python"]
    random.setstate((p["version"], tuple(int(w) for w in p["state"].tolist()), p["gauss"]))
