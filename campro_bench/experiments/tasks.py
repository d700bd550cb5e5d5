"""Keyed tasks of an experiment, each with a manifest of its own, through the run's executor.

:meth:`RunContext.map_tasks <campro_bench.context.RunContext.map_tasks>` runs ``fn(ctx, *args)``
calls on the run's executor (in this process, or Ray tasks) and returns their results in
submission order. :func:`run_tasks` adds what an experiment needs to give the same run with every
executor:

* every :class:`Task` has a **key** (unique in the run) and the **seeds** it draws from, derived
  from the run's seed and that key alone (never from the order in which tasks start or finish);
  they are recorded under the manifest's ``seeds["tasks"][key]``;
* every task records into a **manifest of its own** (seeds, data, models, notes, timers), merged
  into the run's manifest in submission order once all are back. With the local executor the tasks
  run one after another in the run's own context, so a manifest is the same, apart from wall
  times, whatever executor ran it (a task on a worker cannot write into the driver's manifest).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..context import RunContext
from ..errors import CamproError
from ..manifest import Manifest

TASK_SEEDS = "tasks"
"""The manifest ``seeds`` key under which every task's seeds are recorded by its key."""

PARTS = ("seeds", "data", "models", "notes")
"""The manifest fields a task's own manifest hands back to the run's (timers are summed apart)."""


@dataclass(frozen=True)
class Task:
    """One independent unit of work: ``fn(ctx, *args)``, ``fn`` a module-level function and ``args``
    picklable (specs as strings, configurations as dataclasses, arrays; never a torch module)."""

    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    seeds: dict[str, Any] = field(default_factory=dict)


def _isolated(ctx: RunContext, fn: Callable[..., Any], *args: Any) -> tuple[Any, dict[str, Any]]:
    """``fn`` in ``ctx`` with a fresh manifest; returns its result and what it recorded."""
    own = Manifest(experiment=ctx.manifest.experiment, spec={}, command=[])
    result = fn(dataclasses.replace(ctx, manifest=own), *args)
    return result, {**{name: getattr(own, name) for name in PARTS}, "timings": own.timings}


def merge_into(target: dict[str, Any], part: dict[str, Any]) -> None:
    """Deep merge: nested mappings key by key, any other value replaced (as a later write would)."""
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_into(target[key], value)
        else:
            target[key] = value


def record(manifest: Manifest, part: dict[str, Any]) -> None:
    """Add a task's manifest ``part`` (from :func:`_isolated`) to the run's ``manifest``."""
    for name in PARTS:
        merge_into(getattr(manifest, name), part[name])
    for stage, seconds in part["timings"].items():
        manifest.timings[stage] = manifest.timings.get(stage, 0.0) + seconds


def run_tasks(tasks: Sequence[Task], description: str, ctx: RunContext, cpus: float = 1.0) -> list[Any]:
    """Every task through the run's executor; results in the order of ``tasks``."""
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise CamproError(f"task keys must be unique: {sorted({k for k in keys if keys.count(k) > 1})}")
    done = ctx.map_tasks(_isolated, [(t.fn, *t.args) for t in tasks], description, cpus=cpus)
    seeds = ctx.manifest.seeds.setdefault(TASK_SEEDS, {})
    results = []
    for task, (result, part) in zip(tasks, done):
        record(ctx.manifest, part)
        seeds[task.key] = dict(task.seeds)
        results.append(result)
    return results
