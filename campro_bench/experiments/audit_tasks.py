"""Where the audit's independent work runs: two rounds of keyed tasks on the run's executor.

``campro-bench audit --executor local`` (the default) runs them one after another in this process,
``--executor ray`` as Ray tasks (:mod:`campro_bench.executors`); results come back in submission
order and the tables are built from them in that order, so both give the same tables.

1. **prepare** (:func:`prepare`): the *reference* task embeds the raw EVAL (and SELECT) faces with
   every model into the cache, once for the whole run: every rung, protector and capture condition
   reads the raw gallery from there (the embedding cache is per image, keyed by model, weights,
   pipeline and protector fingerprint, so nothing is embedded twice; doing it first keeps parallel
   protector tasks from each embedding the same raw faces). Beside it, the trainings of rungs 4-5
   (:func:`~campro_bench.experiments.audit.training_task`): one task per protector x training rung
   x budget (and each N of the leaked-pairs curve).
2. **protectors** (:func:`audit_protectors`): one task per protector x condition
   (:func:`~campro_bench.experiments.audit.audit_protector`): rungs 1-5 scored on the EVAL (and
   SELECT) identities with the trainings of round 1, and its image grid.

Seeds: each task's seeds come from the run's configuration (``seed``, ``restoration.seed``,
``retrain.seed``) and its key alone, and are recorded under the manifest's ``seeds["tasks"]``
(:mod:`campro_bench.experiments.tasks`). This module imports no experiment module: the audit hands
it its task functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..privacy import evaluate
from .base import RunContext
from .tasks import Task, run_tasks

if TYPE_CHECKING:
    from .audit import AuditConfig, AuditSplit, ProtectorAudit
    from .audit_select import SelectSplit

REFERENCE_KEY = "reference"


def reference_task(ctx: RunContext, cfg: "AuditConfig", id_sets: list[list[str]]) -> int:
    """Raw embeddings of each image set (EVAL, then SELECT) by every model into the cache; returns
    how many images were asked for. Deterministic: no seed. (Looked up per call: tests replace it.)"""
    for ids in id_sets:
        for model in cfg.models:
            evaluate.load_embeddings(cfg.dataset, model, "raw", pipeline="paper", detector=cfg.detector,
                                     data_root=ctx.data_root_option, cache_dir=ctx.cache_dir,
                                     models_dir=ctx.models_dir, device=str(ctx.device),
                                     min_images_per_identity=cfg.min_images, batch_size=cfg.batch_size,
                                     progress=ctx.progress, image_ids=ids)
    return sum(len(ids) for ids in id_sets)


def training_seeds(cfg: "AuditConfig", rung: str) -> dict[str, int]:
    """The seed a training task of ``rung`` draws from: its section's own seed, else the run's."""
    own = {"restoration": cfg.restoration.seed, "retrain": cfg.retrain.seed}.get(rung)
    return {rung: cfg.seed if own is None else own}


def prepare(cfg: "AuditConfig", jobs: Sequence[tuple[str, str, float]], train: Callable[..., Any],
            split: "AuditSplit", select: "SelectSplit | None", ctx: RunContext) -> list[Any]:
    """Round 1: the reference embeddings and ``train(ctx, rung, cfg, spec, split, amount)`` for each
    ``(spec, rung, amount)`` of ``jobs`` (amount: a budget multiple, or N leaked pairs); returns the
    trainings' results in ``jobs`` order."""
    id_sets = [split.eval_ids] + ([select.ids] if select is not None else [])
    tasks = [Task(REFERENCE_KEY, reference_task, (cfg, id_sets))]
    tasks += [Task(f"train {rung} {spec} {amount:g}x", train, (rung, cfg, spec, split, amount),
                   training_seeds(cfg, rung)) for spec, rung, amount in jobs]
    return run_tasks(tasks, "audit: reference embeddings and trainings", ctx)[1:]


def audit_protectors(audit_one: Callable[..., "ProtectorAudit"], cfg: "AuditConfig", specs: list[str],
                     split: "AuditSplit", select: "SelectSplit | None", fit_crops: np.ndarray | None,
                     trained: dict[tuple[str, str], Any], ctx: RunContext) -> list[tuple[str, "ProtectorAudit"]]:
    """Round 2: ``audit_one(ctx, cfg, spec, split, select, fit_crops, its trainings)`` per spec,
    as ``(spec, result)`` in the order of ``specs``."""
    seeds = {"splits": list(range(cfg.seed, cfg.seed + cfg.repeats))}
    tasks = [Task(f"audit {spec}", audit_one,
                  (cfg, spec, split, select, fit_crops, {k: v for k, v in trained.items() if k[0] == spec}), seeds)
             for spec in specs]
    return list(zip(specs, run_tasks(tasks, "audit: protectors", ctx)))
