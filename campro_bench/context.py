"""Where a run happens and what it records: :class:`RunContext` and device resolution.

Handed to every experiment and to the protocols they call (:mod:`campro_bench.privacy`), so it
sits below both: folders (data root, cache, models), the torch device, the manifest to record
into, the executor of independent cells, and progress/log output.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from rich.console import Console

from . import paths
from .errors import CamproError
from .executors import Executor, LocalExecutor, Resources
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
    results_root: Path | None = None  # --results-root: relative table paths of a protocol are looked up here too
    console: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))  # log lines never hard-wrapped
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

    def task_resources(self, cpus: float = 1.0) -> Resources:
        """What one task asks for: ``cpus`` CPUs, and one GPU when the run's device is CUDA."""
        return Resources(cpus=cpus, gpus=1 if self.device.type == "cuda" else 0)

    def map_tasks(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], description: str,
                  cpus: float = 1.0) -> list[Any]:
        """``fn(task_ctx, *args)`` for each ``args`` of ``calls`` through the run's executor, results
        in submission order.

        ``fn`` must be a module-level function and ``args`` picklable (specs as strings, configs as
        dataclasses, no torch modules). With the local executor ``task_ctx`` is this context itself
        (progress bars, logs and manifest timers as before); elsewhere it is a quiet context of the
        same folders and device built in the worker (:class:`TaskEnv`), the driver shows one
        progress bar over the tasks, and each task's manifest timers are added to this manifest
        (summed over tasks)."""
        if self.executor.name == "local":
            return [result for result, _ in self.executor.map(
                call_with_context, [(fn, self, *args) for args in calls], resources=self.task_resources(cpus))]
        env = TaskEnv.of(self)
        with self.progress(f"{description}: {len(calls)} tasks on {self.executor.name}", len(calls)) as advance:
            out = self.executor.map(call_with_context, [(fn, env, *args) for args in calls],
                                    resources=self.task_resources(cpus), on_done=advance)
        for _, timings in out:
            for stage, seconds in timings.items():
                self.manifest.timings[stage] = self.manifest.timings.get(stage, 0.0) + seconds
        return [result for result, _ in out]


@dataclass(frozen=True)
class TaskEnv:
    """The picklable part of a :class:`RunContext` that a task on another process needs: the
    folders (absolute, so a worker's working folder does not matter) and the device."""

    data_root_option: str | None
    cache_dir: str
    models_dir: str
    device: str

    @classmethod
    def of(cls, ctx: RunContext) -> "TaskEnv":
        root = ctx.data_root_option
        return cls(None if root is None else str(Path(root).expanduser().absolute()), str(ctx.cache_dir.absolute()),
                   str(ctx.models_dir.absolute()), str(ctx.device))

    def context(self) -> RunContext:
        """A quiet context of these folders and device with a manifest of its own (in-process executor)."""
        return RunContext(manifest=Manifest(experiment="task", spec={}, command=[]),
                          data_root_option=self.data_root_option, cache_dir=Path(self.cache_dir),
                          models_dir=Path(self.models_dir), device=torch.device(self.device), quiet=True)


def call_with_context(fn: Callable[..., Any], where: RunContext | TaskEnv, *args: Any) -> tuple[Any, dict[str, float]]:
    """One task of :meth:`RunContext.map_tasks`: ``fn(ctx, *args)`` and the timers it recorded
    (none when ``where`` is the run's own context, which recorded them already)."""
    if isinstance(where, RunContext):
        return fn(where, *args), {}
    ctx = where.context()
    return fn(ctx, *args), ctx.manifest.timings
