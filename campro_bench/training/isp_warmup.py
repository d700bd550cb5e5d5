"""The warm-ups of ``train isp``: Algorithm 1 lines 1-10 (the attacker's) and the restorer's.

Split out of :mod:`~campro_bench.training.isp`: the warm-up runs once before the adversarial
iterations and has concerns of its own. Line 1 initialises the proxy head H by a linear probe on the
attacker's raw embeddings (:func:`init_head`); lines 2-10 train F and H on raw crops epoch by epoch
until the running accuracy reaches the threshold (:func:`warmup_epoch`). Its result is a sealed
cache entry under ``<cache>/training/isp-warmup/`` named by a digest of everything that determines it
(:func:`warmup_key`), so that a second run with the same attacker, data, seed and warm-up settings
(e.g. the protector-only ablation) reuses it (:func:`run_warmup`). The key's fields and
``WARMUP_VERSION`` are part of the cache format: changing them orphans every existing entry.

With ``restorer = "unet"``, :func:`start_restorer` then freezes the warmed-up attackers as the
restorer's judges and gives R its steps on the initial ISP.

The functions take the :class:`~campro_bench.training.isp.ISPTrainer` and update it in place; its
methods of the same names delegate here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..io.hashing import sha256_json
from ..io.sealed import discard, verify_sealed
from .checkpoint import load_module_state, load_training_checkpoint, save_training_checkpoint
from .conditions import COLOUR
from .data import EpochSampler
from .isp_steps import mean_rows
from .report import write_csv

if TYPE_CHECKING:
    from .isp import ISPTrainer, ProgressCallback

WARMUP_VERSION = 2
"""Version of the warm-up cache entries (part of their key)."""

CACHE_TRAINER = "isp-warmup"
"""The trainer name inside a warm-up cache entry."""


def init_head(trainer: ISPTrainer, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Line 1 of Algorithm 1: initialise H by a linear probe on F's embeddings of the raw
    training crops (F fixed, no flips; ``head_init_epochs`` seeded epochs of SGD)."""
    c, start = trainer.config, time.perf_counter()
    n = len(trainer.face_data.train_labels)
    labels = torch.from_numpy(trainer.face_data.train_labels).to(trainer.device)
    accs = []
    for k, (model, head, data) in enumerate(zip(trainer.attackers, trainer.heads, trainer.face_sets)):
        parts = []
        with torch.no_grad():
            for s in range(0, n, 64):
                x, _ = data.batch(np.arange(s, min(s + 64, n)), device=trainer.device)
                parts.append(model(x))
                if progress is not None:
                    progress("head-init", k * n + min(s + 64, n), n * len(trainer.attackers))
        emb = torch.cat(parts)
        sampler = EpochSampler(n, c.batch_size, c.seed, 4, hflip=False)
        optimizer = torch.optim.SGD(head.parameters(), lr=c.lr_head, momentum=c.momentum)
        for _ in range(c.head_init_epochs * sampler.batches_per_epoch):
            idx, _ = sampler.next()
            loss = F.cross_entropy(head(emb[idx]), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            accs.append(float((head(emb).argmax(1) == labels).float().mean()))
    trainer.head_init = {"epochs": c.head_init_epochs, "train_acc": float(np.mean(accs)),
                         "seconds": time.perf_counter() - start}
    if len(accs) > 1:
        trainer.head_init["train_acc_per_model"] = dict(zip(trainer._names(), accs))
    return trainer.head_init


def warmup_epoch(trainer: ISPTrainer, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """One epoch of F + H on raw training crops; ends the warm-up at the threshold."""
    c, start = trainer.config, time.perf_counter()
    per_epoch = trainer.samplers["warmup"].batches_per_epoch
    steps = []
    for _ in range(per_epoch):
        steps.append(trainer.attacker_step(protected=False))
        if progress is not None:  # in steps, against the most the warm-up may take
            progress("warmup", len(trainer.warmup_rows) * per_epoch + len(steps), c.warmup_max_epochs * per_epoch)
    row = {"epoch": len(trainer.warmup_rows) + 1, "train_acc": mean_rows(steps)["acc"],
           "train_ce": mean_rows(steps)["ce"], "seconds": time.perf_counter() - start}
    trainer.warmup_rows.append(row)
    if row["train_acc"] >= c.warmup_threshold or row["epoch"] >= c.warmup_max_epochs:
        trainer.phase = "adversarial"
    return row


# the warm-up cache ------------------------------------------------------------------------
def warmup_key(trainer: ISPTrainer) -> dict[str, Any]:
    """Everything that determines the warm-up's result."""
    c = trainer.config
    return {
        "version": WARMUP_VERSION, **trainer._identity(),
        "classes": trainer.face_data.num_classes, "device": trainer.device.type,
        "torch": str(torch.__version__), "threads": torch.get_num_threads(),
        **{k: getattr(c, k) for k in ("seed", "batch_size", "hflip", "lr_attacker", "lr_head", "momentum",
                                      "head_scale", "head_init_epochs", "warmup_threshold",
                                      "warmup_max_epochs")},
    }


def warmup_file(cache: Path | None, key: dict[str, Any]) -> Path | None:
    """The cache entry of a warm-up key in the folder ``cache`` (None: no cache)."""
    if cache is None:
        return None
    digest = sha256_json(key)[:24]
    return cache / f"{digest}.pt"


def warmup_state(trainer: ISPTrainer) -> dict[str, Any]:
    """What a warm-up cache entry holds: F, H, their optimisers, the warm-up sampler and logs."""
    return {"attacker": trainer.attacker.state_dict(), "head": trainer.head.state_dict(),
            "optimizers": {k: trainer.optimizers[k].state_dict() for k in ("attacker", "head")},
            "sampler": trainer.samplers["warmup"].state_dict(), "rows": trainer.warmup_rows,
            "head_init": trainer.head_init}


def load_warmup(trainer: ISPTrainer, state: dict[str, Any], source: str) -> None:
    """Put a :func:`warmup_state` back into the trainer (``source`` names it in errors)."""
    load_module_state(trainer.attacker, state["attacker"], source)
    load_module_state(trainer.head, state["head"], source)
    for k in ("attacker", "head"):
        trainer.optimizers[k].load_state_dict(state["optimizers"][k])
    trainer.samplers["warmup"].load_state_dict(state["sampler"])
    trainer.warmup_rows, trainer.head_init = list(state["rows"]), dict(state["head_init"])


def run_warmup(trainer: ISPTrainer, progress: ProgressCallback | None = None) -> None:
    """Lines 1-10 of Algorithm 1, or load their cached result."""
    if trainer.phase != "warmup":
        return
    cached = warmup_file(trainer.warmup_cache, trainer.warmup_key())
    if cached is not None and verify_sealed(cached):
        _, state = load_training_checkpoint(cached, CACHE_TRAINER)
        load_warmup(trainer, state, str(cached))
        trainer.phase, trainer.warmup_source = "adversarial", f"cache {cached.name}"
        return
    if not trainer.warmup_rows and not trainer.head_init and trainer.config.head_init_epochs > 0:
        trainer.init_head(progress)
    while trainer.phase == "warmup":
        trainer.warmup_epoch(progress)
        trainer.save_checkpoint()
    if cached is not None:
        discard(cached)  # absent, or altered since it was written
        save_training_checkpoint(cached, CACHE_TRAINER, trainer.warmup_key(), warmup_state(trainer), sealed=True)


# the restorer's warm-up -------------------------------------------------------------------
def start_restorer(trainer: ISPTrainer, progress: ProgressCallback | None = None) -> None:
    """Freeze the warmed-up attackers as R's judges and train R on the initial ISP (once)."""
    adversary = trainer.restoration
    if adversary is None or trainer.iteration > 0:
        return
    if not adversary.ready:
        adversary.take_judges(trainer.attackers, trainer.heads)
    steps = trainer.config.restorer_warmup_steps
    trainer.draws = {"restore-warmup": [COLOUR] * len(adversary.warmup_rows)}  # step k draws with key k

    def batch(sampler: EpochSampler) -> list[torch.Tensor]:
        return trainer._restorer_batch(sampler, "restore-warmup")

    while len(adversary.warmup_rows) < steps:
        adversary.warmup(trainer.isp, batch, min(steps, len(adversary.warmup_rows) + 50))
        if progress is not None:
            progress("restorer-warmup", len(adversary.warmup_rows), steps)
    if trainer.conditions.active:  # the condition of each warm-up step, in restorer_warmup.csv
        for row, name in zip(adversary.warmup_rows, trainer.draws["restore-warmup"]):
            row.setdefault("condition", name)
    trainer.draws = {}
    if adversary.warmup_rows:
        write_csv(trainer.out / "restorer_warmup.csv", adversary.warmup_rows)
