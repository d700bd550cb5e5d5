"""What an experiment is: a function of (spec, context) that returns tables and figures.

Experiments are registered in :data:`~campro_bench.registries.EXPERIMENTS` with the name of their
default protocol::

    @EXPERIMENTS.register("e1", protocol="e1", description="Table I: ...")
    def run_e1(spec: dict, ctx: RunContext) -> ExperimentResult: ...

They never write files themselves: the runner writes the returned tables (CSV + Markdown),
figures (PNG) and the manifest, atomically, into the run folder.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import pandas as pd
import torch
from rich.console import Console

from .. import paths
from ..executors import Executor, LocalExecutor
from ..progress import stage_progress
from .manifest import Manifest


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


@dataclass
class ExperimentResult:
    """Tables (written as ``NAME.csv`` and ``NAME.md``), figures (``NAME.png``) and notes."""

    tables: dict[str, pd.DataFrame]
    figures: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    extra_files: dict[str, bytes] = field(default_factory=dict)


class Experiment(Protocol):
    def __call__(self, spec: dict[str, Any], ctx: RunContext) -> ExperimentResult: ...
