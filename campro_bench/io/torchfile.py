"""Reading torch files without running code from them.

Every ``torch.load`` of the project goes through :func:`load_torch_file`: ``weights_only=True``
(tensors, numbers, strings, lists, tuples, dicts), plus an explicit allow-list of harmless
classes that official checkpoints carry besides their weights (saved arguments, counters,
paths). There is no fallback to full unpickling: a file that needs any other class is refused
with one line naming the class, whoever supplied the file. A pickled object's ``__reduce__`` is
therefore never called.
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import pathlib
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

SAFE_GLOBALS: tuple[type, ...] = (
    collections.Counter, collections.OrderedDict, argparse.Namespace,
    pathlib.PurePosixPath, pathlib.PureWindowsPath, pathlib.PosixPath,
)
"""Harmless classes found in official and Lightning checkpoints (scheduler milestones, saved
arguments, checkpoint folders). Constructing them runs no user code."""

_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def load_torch_file(source: str | os.PathLike[str] | bytes, what: str = "torch file",
                    name: str | None = None) -> Any:
    """The content of a torch file on the CPU; a :class:`CheckpointError` names any problem.

    Args:
        source: a path, or the file's bytes.
        what: what the file should be, for the message (``"checkpoint"``, ``"cached conversion"``).
        name: how to name the file in messages when ``source`` is bytes.
    """
    label = name if name is not None else (str(source) if not isinstance(source, bytes) else "<bytes>")
    handle = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"cannot read {what} {label}: {unpickling_reason(exc)}") from exc
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as exc:
        raise CheckpointError(f"cannot read {what} {label}: {first_line(exc)}") from exc


def unpickling_reason(exc: BaseException) -> str:
    """Why the safe unpickler refused a file, in one line."""
    text = " ".join(str(exc).split())
    found = _GLOBAL.search(text)
    if found:
        return (f"it holds the Python global {found.group(1)}, which is not read (only tensors and plain "
                "data are; save the model's state_dict instead)")
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = text.split(marker, 1)[1].split("Check the documentation", 1)[0].strip(" .")
        return f"not a PyTorch checkpoint ({detail})"
    return first_line(exc)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
