"""Checkpoints and logs of ``train isp``: save, resume, and the CSV logs beside them.

Split out of :mod:`~campro_bench.training.isp` because what a checkpoint holds is a format of its
own: ``out/checkpoint.pt`` (written atomically every ``checkpoint_every`` iterations, after every
warm-up epoch and at the end) holds C, F, H, P, every optimiser and sampler state, the restoration
adversary, the RNG states, the counters and the logs, so that a resumed run continues bit-identically
to an uninterrupted one (same device and threads). Its keys are read back by :func:`resume`; a run
with a different configuration (beyond ``RESUME_MAY_CHANGE``) is refused in one line.

The functions take the :class:`~campro_bench.training.isp.ISPTrainer` (whose methods of the same
names delegate here); :func:`write_logs` takes only the folder and the rows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CamproError
from . import isp_levers
from .checkpoint import (
    config_mismatch,
    load_module_state,
    load_training_checkpoint,
    rng_state,
    save_training_checkpoint,
    set_rng_state,
)
from .report import write_csv

if TYPE_CHECKING:
    from .isp import ISPTrainConfig, ISPTrainer

TRAINER = "isp"
"""The trainer name inside ``checkpoint.pt``."""
CHECKPOINT_NAME = "checkpoint.pt"
RESUME_MAY_CHANGE = ("iterations", "checkpoint_every", "val_every", "log_every")
"""Configuration keys a resumed run may change; any other difference refuses to resume."""
STATE_KEYS = ("phase", "iteration", "warmup_source", "isp", "attacker", "head", "detector", "optimizers", "samplers",
              "restoration", "rng", "rows", "val_rows", "warmup_rows", "head_init", "elapsed")
"""What :func:`save_checkpoint` writes and :func:`resume` reads."""
LEVERS_KEY = "levers"
"""The schedule state of the levers (plain data; checkpoints written before the levers lack it)."""


def may_change(config: ISPTrainConfig) -> tuple[str, ...]:
    """The keys a resumed run may change: RESUME_MAY_CHANGE, less ``iterations`` when the restorer's
    step ramp ends at the last iteration (a new length would change the steps already taken)."""
    if isp_levers.ramp_depends_on_length(config):
        return tuple(k for k in RESUME_MAY_CHANGE if k != "iterations")
    return RESUME_MAY_CHANGE


def lever_state(config: ISPTrainConfig, iteration: int) -> dict[str, Any]:
    """Where the lever schedules stand after ``iteration`` iterations (what the checkpoint records)."""
    resets = isp_levers.resets_before(config, iteration)
    return {"iteration": iteration, "restorer_resets": resets,
            "restorer_init_seed": isp_levers.restorer_init_seed(config.seed, resets),
            "restorer_steps_next": isp_levers.restorer_steps_at(config, iteration + 1)}


def save_checkpoint(trainer: ISPTrainer) -> None:
    """Write ``out/checkpoint.pt`` (atomically), then the logs."""
    state = {
        "phase": trainer.phase, "iteration": trainer.iteration, "warmup_source": trainer.warmup_source,
        "isp": trainer.isp.state_dict(), "attacker": trainer.attacker.state_dict(),
        "head": trainer.head.state_dict(),
        "detector": trainer.detector.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in trainer.optimizers.items()},
        "samplers": {k: s.state_dict() for k, s in trainer.samplers.items()},
        "restoration": trainer.restoration.state_dict() if trainer.restoration is not None else None,
        "rng": rng_state(), "rows": trainer.rows, "val_rows": trainer.val_rows, "warmup_rows": trainer.warmup_rows,
        "head_init": trainer.head_init, LEVERS_KEY: lever_state(trainer.config, trainer.iteration),
        "elapsed": trainer.elapsed + time.perf_counter() - trainer._started,
    }
    save_training_checkpoint(trainer.checkpoint_path, TRAINER, trainer.config.to_dict(), state)
    trainer.write_logs()


def resumable_state(path: Path, config: ISPTrainConfig) -> dict[str, Any]:
    """The state of the checkpoint at ``path``, refused in one line when it lacks an entry that
    :func:`resume` reads, was written with another configuration (beyond :func:`may_change`) or its
    lever schedule is not where this configuration puts it.
    ``train isp --resume`` calls it before loading models and data, so a bad checkpoint costs nothing."""
    saved, state = load_training_checkpoint(path, TRAINER, required=STATE_KEYS)
    diff = config_mismatch(saved, config.to_dict(), may_change(config))
    if diff:
        hint = (" (iterations is fixed when restorer_steps_final ramps over the whole run; set restorer_steps_ramp "
                "to extend a run)" if any(d.startswith("iterations:") for d in diff) else "")
        raise CamproError(f"cannot resume {path}: configuration differs ({'; '.join(diff)}){hint}")
    levers = state.get(LEVERS_KEY)
    if levers is not None and levers != lever_state(config, int(state["iteration"])):
        raise CamproError(f"cannot resume {path}: its lever schedule {levers} is not {lever_state(config, int(state['iteration']))}")
    return state


def resume(trainer: ISPTrainer) -> None:
    """Continue from ``out/checkpoint.pt`` (its configuration must match, see RESUME_MAY_CHANGE)."""
    path = trainer.checkpoint_path
    state = resumable_state(path, trainer.config)
    for name, module in (("isp", trainer.isp), ("attacker", trainer.attacker), ("head", trainer.head),
                         ("detector", trainer.detector)):
        load_module_state(module, state[name], f"{path} ({name})")
    for k, opt in trainer.optimizers.items():
        opt.load_state_dict(state["optimizers"][k])
    for k, sampler in trainer.samplers.items():
        sampler.load_state_dict(state["samplers"][k])
    if trainer.restoration is not None:
        trainer.restoration.load_state_dict(state["restoration"], trainer.attackers, trainer.heads, str(path))
    set_rng_state(state["rng"])
    trainer.phase, trainer.iteration = state["phase"], int(state["iteration"])
    trainer.rows = list(state["rows"])
    # the end-of-run validation of a stopped run is off the schedule: drop it, as a run that
    # had not stopped there would not have it (it is made again when this run ends)
    every = trainer.config.val_every
    trainer.val_rows = [r for r in state["val_rows"]
                        if r["iteration"] == 0 or (every and r["iteration"] % every == 0)]
    trainer.warmup_rows, trainer.warmup_source = list(state["warmup_rows"]), state["warmup_source"]
    trainer.head_init = dict(state["head_init"])
    trainer.elapsed, trainer._started = float(state["elapsed"]), time.perf_counter()


def write_logs(out: Path, rows: list[dict[str, Any]], val_rows: list[dict[str, Any]],
               warmup_rows: list[dict[str, Any]]) -> None:
    """``log.csv`` (iterations), ``val.csv`` (validations), ``warmup.csv`` (warm-up epochs): those with rows."""
    if rows:
        write_csv(out / "log.csv", rows)
    if val_rows:
        write_csv(out / "val.csv", val_rows)
    if warmup_rows:
        write_csv(out / "warmup.csv", warmup_rows)
