"""Where a run happens and what it records: :class:`RunContext` and device resolution.

Handed to every experiment and to the protocols they call (:mod:`campro_bench.privacy`), so it
sits below both: folders (data root, cache, models), the torch device, the manifest to record
into, the executor of independent cells, and progress/log output.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from rich.console import Console

from . import paths
from .errors import CamproError
from .executors import Executor, LocalExecutor
from .manifest import Manifest
from .progress import stage_progress


def resolve_device(name: str | None) -> torch.device:
    """``auto`` (or nothing): CUDA when available, else CPU; otherwise the named torch device,
    refused in one line when it is malformed or asks for a GPU that is not there."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise CamproError(f"bad device '{name}': {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CamproError("device 'cuda' requested but no CUDA GPU is available")
    return device


@dataclass
class RunContext:
    """Where things are and what to record, handed to every experiment."""

    manifest: Manifest
    data_root_option: str | None = None
    cache_dir: Path = field(default_factory=paths.cache_dir)
    models_dir: Path = field(default_factory=paths.models_dir)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    compare: str | None = None
    work_dir: Path | None = None
    console: Console = field(default_factory=lambda: Console(stderr=True))
    quiet: bool = False
    executor: Executor = field(default_factory=LocalExecutor)

    @property
    def data_root(self) -> Path:
        """The data root (``--data-root`` or ``CAMPRO_BENCH_DATA``); errors clearly if unset."""
        return paths.data_root(self.data_root_option)

    @contextlib.contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A progress bar on a terminal, log lines otherwise (:mod:`campro_bench.progress`);
        yields ``advance(n)``."""
        with stage_progress(self.console, description, total, quiet=self.quiet) as advance:
            yield advance

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False)
