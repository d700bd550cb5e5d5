"""Training sweeps: one trainer, several runs (seeds, presets, loss weights), each an independent task.

``campro-bench train sweep CONFIG.toml --out DIR`` reads a :class:`SweepConfig`: the trainer (one of
:data:`TRAINERS`, the ``campro-bench train ...`` commands ``isp``, ``enhancer``, ``bdq``, ``lensless``),
options shared by every run, and the runs, given one by one (``[[runs]]``: a name and the options it
changes) or as a grid (``grid = { seed = [0, 1], omega = [0.2, 1.0] }``: the cartesian product, the
first key varying slowest, each run named ``seed=0,omega=0.2``). Every run's options are checked
against its trainer's configuration before any training starts (unknown keys with a "did you mean",
types, ranges), as its single ``train`` command would check them.

Each run trains into ``DIR/<name>/`` exactly as its single command would (same files, same
manifest; the manifest's ``command`` is that single command, so the run replays alone). It is written
into a hidden work folder beside it and renamed into place when the run has finished, so ``DIR``
never holds half a run. ``DIR/sweep.json`` records the sweep: its configuration, and per run its
options, single command, status (``pending``, ``done``, ``failed``), wall time, the files it wrote
and its final metrics; it is written when the sweep starts and again when it ends.

Runs are independent tasks of an :class:`~campro_bench.executors.Executor` (``--executor local``:
one after another in this process; ``ray``: one Ray task per run), through
:meth:`~campro_bench.context.RunContext.map_tasks`. Each task trains with ``threads`` torch threads
(and asks a Ray cluster for as many CPUs), so a run gives the same files whatever executor ran it.
A run that fails is recorded with its error line and the others go on.

The overwrite rule of the package holds: without ``--overwrite`` a folder that holds ``sweep.json``
or a folder under a run's name is refused; with it, ``DIR/sweep.json`` must be a sweep record, and a
run folder is replaced only when that record lists the files it wrote there (those files are
replaced, anything else in the folder is kept, :func:`~campro_bench.io.outfolder.install_outputs`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import paths
from ..config import (config_keys, did_you_mean, option, parse_config, read_toml, unknown_keys_error,
                      validate_config)
from ..context import RunContext, resolve_device
from ..errors import CamproError
from ..executors import build_executor
from ..io.atomic import atomic_write_json
from ..io.outfolder import (PARTIAL, check_output_location, clean_relative, files_under, install_outputs, names_list,
                            partial_folder, remove_stale_partials)
from ..manifest import Manifest
from ..provenance import default_roots, environment, input_roots, portable_paths
from ..runtime import torch_threads

SWEEP_FILE = "sweep.json"
"""The sweep's own record in its folder."""

SWEEP_KIND = "campro-bench training sweep"
"""The ``kind`` of a sweep record: ``--overwrite`` replaces only what a record of this kind lists."""

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=,+-]{0,127}")
"""A run name: one folder name, not hidden (work folders are), of at most 128 characters."""


# ----------------------------------------------------------------------------------------
# the configuration
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepRun:
    """One run given by name: the options it sets on top of the sweep's shared ``options``."""

    name: str = option(help="the run's folder name in the sweep folder")
    set: dict[str, Any] = option(dict, help="options of this run (the trainer's keys), over the shared options")


@dataclass(frozen=True)
class SweepConfig:
    """A sweep file: the trainer, the options every run shares, and the runs (``runs`` and/or ``grid``)."""

    trainer: str = option(help="the `campro-bench train` command every run is: isp, enhancer, bdq or lensless")
    description: str = option("", help="what the sweep is for (recorded, not used)")
    options: dict[str, Any] = option(dict, help="options of every run (the trainer's keys, as its --set takes them)")
    runs: list[SweepRun] = option(list, help="runs given one by one: [[runs]] name = ..., set = { key = value }")
    grid: dict[str, list[Any]] = option(dict, help="key -> values: one run per combination, after `runs`")
    threads: int = option(1, ge=1, le=256, help="torch CPU threads of each run (and the CPUs a Ray task asks for)")

    def __post_init__(self) -> None:
        validate_config(self, "sweep")
        if self.trainer not in TRAINERS:
            raise CamproError(f"unknown trainer '{self.trainer}'{did_you_mean(self.trainer, TRAINERS)}; "
                              f"known trainers: {', '.join(sorted(TRAINERS))}")


@dataclass(frozen=True)
class PlannedRun:
    """A run of the sweep with its options resolved (shared options, then its own)."""

    name: str
    options: dict[str, Any]


def load_sweep(path: Path) -> SweepConfig:
    """A sweep file, checked key by key (one error line for the first problem)."""
    return parse_config(SweepConfig, read_toml(path), "sweep")


def grid_runs(grid: dict[str, list[Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The cartesian product of ``grid`` in its key order (the first key varies slowest), each named
    ``key=value,key=value``."""
    for key, values in grid.items():
        if not values:
            raise CamproError(f"sweep key 'grid.{key}' has no values; give at least one")
    keys = list(grid)
    if not keys:
        return []
    return [(",".join(f"{k}={name_part(v)}" for k, v in zip(keys, combo)), dict(zip(keys, combo)))
            for combo in itertools.product(*(grid[k] for k in keys))]


def name_part(value: Any) -> str:
    """A value as it appears in a grid run's name: TOML-like, anything but ``[A-Za-z0-9._+-]`` as ``_``."""
    text = toml_value(value) if not isinstance(value, str) else value
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def plan(config: SweepConfig) -> list[PlannedRun]:
    """The runs of ``config`` (``runs`` first, then the grid), every name and option checked."""
    named = [(r.name, r.set, f"runs[{i}]") for i, r in enumerate(config.runs)]
    named += [(name, values, "grid") for name, values in grid_runs(config.grid)]
    if not named:
        raise CamproError("the sweep names no runs; give [[runs]] (a name and its options) or a grid")
    seen: dict[str, str] = {}
    planned = []
    for name, own, where in named:
        if not NAME.fullmatch(name):
            raise CamproError(f"sweep run name '{name}' ({where}) is not a folder name: letters, digits and . _ = , + - "
                              "only, not starting with . _ = , + -, at most 128 characters")
        if name in seen:
            raise CamproError(f"sweep run name '{name}' repeats ({seen[name]} and {where}); give every run a name of "
                              "its own")
        seen[name] = where
        options = {**config.options, **own}
        TRAINERS[config.trainer].parse(options, f"sweep run '{name}' (train {config.trainer})")
        planned.append(PlannedRun(name, options))
    return planned


# ----------------------------------------------------------------------------------------
# the trainers: how each `campro-bench train KIND` command is parsed and run
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepTrainer:
    """What a sweep needs of one ``campro-bench train`` command.

    ``parse(options, what)`` builds its typed configuration (one error line for a bad key);
    ``train(ctx, options, out, command)`` runs it into ``out`` as the command does; ``flags`` are
    the option keys its command takes as ``--key VALUE`` (the others go through ``--set``);
    ``folders`` the folder and device options the command takes, in the sweep command's words."""

    parse: Callable[[dict[str, Any], str], Any]
    train: Callable[[RunContext, dict[str, Any], Path, list[str]], Any]
    flags: tuple[str, ...] = ()
    folders: tuple[str, ...] = ("data_root",)


def _parse_bdq(options: dict[str, Any], what: str) -> Any:
    from ..video.training import BDQTrainConfig

    return parse_config(BDQTrainConfig, options, what)


def _train_bdq(ctx: RunContext, options: dict[str, Any], out: Path, command: list[str]) -> Any:
    from ..video.training import train_bdq

    config = _parse_bdq(options, "train bdq")
    root = ctx.data_root if not Path(config.dataset).is_dir() else None  # as `train bdq` resolves it
    return train_bdq(config, out, data_root=root, log=ctx.log, command=command)


def _parse_lensless(options: dict[str, Any], what: str) -> Any:
    from .lensless import LenslessTrainConfig

    return parse_config(LenslessTrainConfig, options, what)


def _train_lensless(ctx: RunContext, options: dict[str, Any], out: Path, command: list[str]) -> Any:
    from .lensless import train_lensless

    return train_lensless(_parse_lensless(options, "train lensless"), out, data_root=ctx.data_root,
                          cache_dir=ctx.cache_dir, log=ctx.log, command=command)


def _parse_isp(options: dict[str, Any], what: str) -> Any:
    from .isp import ISPTrainConfig

    config = parse_config(ISPTrainConfig, options, what)
    config.check()
    return config


def _train_isp(ctx: RunContext, options: dict[str, Any], out: Path, command: list[str]) -> Any:
    from .isp import train_isp

    return train_isp(_parse_isp(options, "train isp"), out, data_root=ctx.data_root_option,
                     cache_dir=str(ctx.cache_dir), models_dir=str(ctx.models_dir), device=ctx.device, command=command)


ENHANCER_JOB_KEYS = ("isp", "images", "holdout", "mask_detector", "box_margin", "max_images")
"""The keys of ``train enhancer`` that are options of its command (``--isp``, ...) rather than
``--set`` keys of its U-Net configuration."""


def _parse_enhancer(options: dict[str, Any], what: str) -> tuple[Any, Any]:
    from .enhancer import EnhancerJob
    from .unet import UNetTrainConfig

    known = [*ENHANCER_JOB_KEYS, *config_keys(UNetTrainConfig)]
    unknown = [k for k in options if k not in known]
    if unknown:
        raise unknown_keys_error(unknown, known, what)
    if "isp" not in options:
        raise CamproError(f"{what}: key 'isp' is required (an ISP preset name or parameter file)")
    job = parse_config(EnhancerJob, {k: v for k, v in options.items() if k in ENHANCER_JOB_KEYS}, what)
    return job, parse_config(UNetTrainConfig, {k: v for k, v in options.items() if k not in ENHANCER_JOB_KEYS}, what)


def _train_enhancer(ctx: RunContext, options: dict[str, Any], out: Path, command: list[str]) -> Any:
    from .enhancer import train_enhancer

    job, config = _parse_enhancer(options, "train enhancer")
    return train_enhancer(job, config, out, data_root=ctx.data_root, cache_dir=ctx.cache_dir, device=str(ctx.device),
                          progress=ctx.progress, log=ctx.log, command=command)


TRAINERS: dict[str, SweepTrainer] = {
    "bdq": SweepTrainer(_parse_bdq, _train_bdq),
    "enhancer": SweepTrainer(_parse_enhancer, _train_enhancer, flags=ENHANCER_JOB_KEYS,
                             folders=("data_root", "cache_dir", "device")),
    "isp": SweepTrainer(_parse_isp, _train_isp, folders=("data_root", "cache_dir", "models_dir", "device")),
    "lensless": SweepTrainer(_parse_lensless, _train_lensless, folders=("data_root", "cache_dir")),
}
"""The trainers a sweep can run, by the name of their ``campro-bench train`` command."""


def toml_value(value: Any) -> str:
    """``value`` written as TOML (as ``--set key=VALUE`` reads it back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def single_command(trainer: str, out: Path, options: dict[str, Any], folders: dict[str, str | None]) -> list[str]:
    """The ``campro-bench train TRAINER`` command that trains one run alone, as a run's manifest records it."""
    spec = TRAINERS[trainer]
    words = ["campro-bench", "train", trainer, "--out", str(out)]
    for key, value in options.items():
        if key in spec.flags:
            text = ",".join(value) if isinstance(value, list) else str(value)
            words += [f"--{key.replace('_', '-')}", text]
        else:
            words += ["--set", f"{key}={toml_value(value)}"]
    for key in spec.folders:
        if folders.get(key):
            words += [f"--{key.replace('_', '-')}", str(folders[key])]
    return words


# ----------------------------------------------------------------------------------------
# one run: a task
# ----------------------------------------------------------------------------------------
def run_task(ctx: RunContext, trainer: str, name: str, options: dict[str, Any], folder: str,
             earlier: list[str] | None, command: list[str], threads: int) -> dict[str, Any]:
    """Train run ``name`` into ``folder/name`` with ``threads`` torch threads; its record for ``sweep.json``.

    The run is trained into a hidden work folder and put in place at the end: renamed to
    ``folder/name``, or, where an earlier run of the sweep is (``earlier``: the files it wrote),
    installed over those files only. An error of the run is recorded (``failed``, its error line),
    not raised, so the other runs go on; an interrupt is raised."""
    out = Path(folder) / name
    start = time.perf_counter()
    work = partial_folder(out, remove_stale=False)  # the driver removed stale ones; pids are per machine
    record: dict[str, Any] = {"files": earlier}
    try:
        with torch_threads(threads):
            TRAINERS[trainer].train(ctx, options, work, command)
        files = files_under(work)
        metrics = json.loads((work / "manifest.json").read_text())["metrics"]
        put_in_place(work, out, earlier)
        record = {"status": "done", "files": files, "metrics": metrics}
    except Exception as exc:  # the run's failure is recorded; the sweep goes on
        shutil.rmtree(work, ignore_errors=True)
        record.update(status="failed", error=str(exc) if isinstance(exc, CamproError) else f"{type(exc).__name__}: {exc}")
        if not isinstance(exc, CamproError):
            record["traceback"] = traceback.format_exc()
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    record["wall_s"] = round(time.perf_counter() - start, 3)
    return record


def put_in_place(work: Path, out: Path, earlier: list[str] | None) -> None:
    """The finished ``work`` folder at ``out``: renamed there, or installed over the ``earlier`` files
    of the sweep's previous run there (a user's file where a new output goes: nothing in ``out`` is
    touched, the new run is kept in ``<out>-new-<random>`` and the error names both)."""
    if earlier is None and not out.exists():
        work.rename(out)
        return
    try:
        install_outputs(work, out, earlier or [], f".{out.name}{PARTIAL}{os.getpid()}-old-")
    except CamproError as exc:
        kept = Path(tempfile.mkdtemp(prefix=f"{out.name}-new-", dir=out.parent))
        work.rename(kept)
        raise CamproError(f"{exc}; the new run is in {kept.name}") from exc


# ----------------------------------------------------------------------------------------
# the sweep
# ----------------------------------------------------------------------------------------
def check_sweep_folder(out: Path, names: Sequence[str], overwrite: bool) -> dict[str, dict[str, Any]]:
    """Refuse (one line, before any work) a sweep folder whose runs or record would replace what this
    tool did not write; returns the earlier record's entries by run name (empty without one)."""
    check_output_location(out, "--out")
    record_file = out / SWEEP_FILE
    present = [n for n in names if (out / n).exists() or (out / n).is_symlink()]
    has_record = record_file.exists() or record_file.is_symlink()
    if not overwrite:
        taken = [SWEEP_FILE] * has_record + present
        if taken:
            raise CamproError(f"output folder {out} already holds {names_list(taken)}; pass --overwrite to replace "
                              "what an earlier sweep wrote there, or give another --out")
        return {}
    if not has_record:
        if present:
            raise CamproError(f"--overwrite refused: {out} holds {names_list(present)} but no {SWEEP_FILE} of a sweep "
                              "that wrote them; remove them or give another --out")
        return {}
    earlier = read_sweep_record(record_file)
    for name in present:
        files = earlier.get(name, {}).get("files")
        if (out / name).is_symlink() or not (out / name).is_dir() or not isinstance(files, list):
            raise CamproError(f"--overwrite refused: {out / name} is not a run folder that {record_file} lists with "
                              "its files; remove it or give another --out")
    return earlier


def read_sweep_record(path: Path) -> dict[str, dict[str, Any]]:
    """The runs of an earlier sweep record by name, their ``files`` made clean relative names; a
    file that is not a sweep record is refused (one line)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if not path.is_symlink() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        record = None
    if not isinstance(record, dict) or record.get("kind") != SWEEP_KIND or not isinstance(record.get("runs"), list):
        raise CamproError(f"--overwrite refused: {path} is not the record of a campro-bench sweep; give another --out")
    runs: dict[str, dict[str, Any]] = {}
    kept = record.get("earlier_runs")
    for entry in [*(kept if isinstance(kept, list) else []), *record["runs"]]:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            files = entry.get("files")
            clean = [clean_relative(f) for f in files] if isinstance(files, list) else None
            runs[entry["name"]] = {**entry, "files": clean if clean is not None and None not in clean else None}
    return runs


def run_sweep(config: SweepConfig, out: Path, *, executor: str = "local", address: str | None = None,
              data_root: str | None = None, cache_dir: str | None = None, models_dir: str | None = None,
              device: str | None = "cpu", overwrite: bool = False, command: Sequence[str] | None = None,
              source: str | None = None, quiet: bool = False) -> dict[str, Any]:
    """Run every run of ``config`` into ``out/<name>/`` through the executor ``executor`` (``local``:
    one after another in this process; ``ray``: a Ray task per run on the cluster at ``address``);
    returns the sweep record written to ``out/sweep.json``. Bad input and a folder that must not be
    written are refused (one line) before the executor starts."""
    runs = plan(config)
    earlier = check_sweep_folder(out, [r.name for r in runs], overwrite)
    ctx = RunContext(manifest=Manifest("train-sweep", {}), data_root_option=data_root,
                     cache_dir=paths.cache_dir(cache_dir), models_dir=paths.models_dir(models_dir),
                     device=resolve_device(device), quiet=quiet)
    ctx.executor = build_executor(executor, address)
    try:
        return _run(config, runs, earlier, out, ctx, command, source,
                    {"data_root": data_root, "cache_dir": cache_dir, "models_dir": models_dir,
                     "device": None if device in (None, "", "auto") else device})
    finally:
        ctx.executor.close()


def _run(config: SweepConfig, runs: list[PlannedRun], earlier: dict[str, dict[str, Any]], out: Path,
         ctx: RunContext, command: Sequence[str] | None, source: str | None,
         folders: dict[str, str | None]) -> dict[str, Any]:
    """The sweep's tasks through ``ctx``'s executor, its record written before and after."""
    entries = [{"name": r.name, "options": r.options, "command": single_command(config.trainer, out / r.name,
                                                                                r.options, folders),
                "status": "pending", "files": earlier[r.name]["files"] if (out / r.name).is_dir() else None}
               for r in runs]
    kept = [e for name, e in earlier.items() if name not in {r.name for r in runs} and (out / name).is_dir()]
    record: dict[str, Any] = {
        "kind": SWEEP_KIND, "trainer": config.trainer, "config": dataclasses.asdict(config), "source": source,
        "command": list(command) if command is not None else None,
        "started": datetime.now(timezone.utc).isoformat(), "executor": ctx.executor.describe(),
        "device": str(ctx.device), "threads": config.threads, "runs": entries, "earlier_runs": kept,
        "environment": environment()}
    write_record(out, record)
    remove_stale_partials(out)  # work folders of runs killed outright (their tasks do not look: other machines)
    start = time.perf_counter()
    calls = [(config.trainer, r.name, r.options, str(out.absolute()), e["files"], e["command"], config.threads)
             for r, e in zip(runs, entries)]
    results = ctx.map_tasks(run_task, calls, f"train sweep {config.trainer}", cpus=config.threads)
    for entry, result in zip(entries, results):
        entry.update(result)
    record.update(finished=datetime.now(timezone.utc).isoformat(), wall_s=round(time.perf_counter() - start, 3))
    write_record(out, record)
    return record


def write_record(out: Path, record: dict[str, Any]) -> None:
    """``out/sweep.json``, atomically, without needless absolute paths (as training manifests)."""
    atomic_write_json(out / SWEEP_FILE, portable_paths(record, default_roots(), input_roots()))


def failures(record: dict[str, Any]) -> list[str]:
    """``name: error`` of every failed run of a sweep record."""
    return [f"{e['name']}: {e.get('error', '')}" for e in record["runs"] if e.get("status") == "failed"]
