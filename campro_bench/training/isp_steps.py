"""The steps of Algorithm 1 (``train isp``): attacker step, protector step, one iteration, validation.

Split out of :mod:`~campro_bench.training.isp` so that the optimisation itself (what each player
minimises, in which order, on which batches) reads in one place, apart from the warm-up, the
checkpoints and the reports. Each function takes the :class:`~campro_bench.training.isp.ISPTrainer`
whose players, optimisers and samplers it steps, and updates it in place exactly as the trainer's
methods of the same names do (they delegate here); the losses and their order are those of the
module docstring of :mod:`~campro_bench.training.isp`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import isp_levers
from .isp_restoration import restoration_privacy_loss, restored_accuracy
from .losses import frozen, non_saturating_loss, per_distinct, quantize8

if TYPE_CHECKING:
    from .isp import ISPTrainer


def top1_accuracy(logits: list[torch.Tensor], labels: torch.Tensor) -> float:
    """Top-1 accuracy, averaged over the models of an ensemble."""
    return float(np.mean([float((z.argmax(1) == labels).float().mean()) for z in logits]))


def mean_rows(rows: list[dict[str, float]]) -> dict[str, float]:
    """Key by key mean of log rows (of several steps); ``{}`` for none."""
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}


def attacker_step(trainer: ISPTrainer, protected: bool = True) -> dict[str, float]:
    """One SGD step of F and H on a face batch (protected by the current, fixed C, or raw);
    with an ensemble, on the mean of the models' cross-entropies."""
    sampler = trainer.samplers["attack" if protected else "warmup"]
    xs, y = trainer._faces(*sampler.next())
    if protected:
        with torch.no_grad():
            xs = trainer._protect(trainer._sensor(xs, "attack"))
    logits = trainer._logits(xs)
    loss = torch.stack([F.cross_entropy(z, y) for z in logits]).mean()
    for name in ("attacker", "head"):
        trainer.optimizers[name].zero_grad(set_to_none=True)
    loss.backward()
    trainer.optimizers["attacker"].step()
    trainer.optimizers["head"].step()
    return {"ce": float(loss.detach()), "acc": top1_accuracy(logits, y)}


def protector_step(trainer: ISPTrainer) -> dict[str, float]:
    """One step of C (on L_ns + omega L_det) and P (on L_det), F and H fixed; with an
    ensemble, L_ns is the mean of the models' L_ns."""
    c, isp = trainer.config, trainer.isp
    xs, y = trainer._faces(*trainer.samplers["protect"].next())
    captured = trainer._protect(trainer._sensor(xs, "protect"))
    with frozen(trainer.attacker, trainer.head):
        logits = trainer._logits(captured)
    l_ns = torch.stack([non_saturating_loss(z, y).mean() for z in logits]).mean()
    restored: dict[str, float] = {}
    g_rs: Sequence[torch.Tensor | None] = (None, None)
    isp_params = [isp.ccm, isp.lut]
    if trainer.restoration is not None:
        l_rs, judged = restoration_privacy_loss(trainer.restoration, captured, y)
        g_rs = torch.autograd.grad(l_rs, isp_params, retain_graph=True)
        restored = {"l_rs": float(l_rs.detach()), "acc_restored": top1_accuracy(judged, y)}
    images, boxes = trainer.person_data.batch(*trainer.samplers["person"].next(), device=trainer.device)
    images = trainer._sensor([images], "person")[0]
    from ..detection import person_targets

    det = trainer.detector.loss_components(isp(images), person_targets(boxes))
    g_ns = torch.autograd.grad(l_ns, isp_params)
    g_det = torch.autograd.grad(det["total"], isp_params + trainer.det_params, allow_unused=True)
    for p, a, r, b in zip(isp_params, g_ns, g_rs, g_det[:2]):
        p.grad = a + c.omega * b if r is None else a + c.restoration_weight * r + c.omega * b
    for p, g in zip(trainer.det_params, g_det[2:]):
        p.grad = torch.zeros_like(p) if g is None else g
    trainer.optimizers["isp"].step()
    isp.project_(c.ccm_bound)
    isp_levers.limit_lut_slope_(isp.lut, c.lut_max_slope)
    trainer.optimizers["detector"].step()
    with torch.no_grad():
        ce = float(np.mean([float(F.cross_entropy(z, y)) for z in logits]))
        p_y = float(np.mean([float(torch.softmax(z, 1).gather(1, y[:, None]).mean()) for z in logits]))
    return {
        "l_ns": float(l_ns.detach()), "ce_protected": ce, "p_y": p_y,
        "acc_protected": top1_accuracy(logits, y),
        "l_det": float(det["total"].detach()), "l_cls": float(det["cls"].detach()),
        "l_box": float(det["box"].detach()),
        **restored,
        "objective": (float(l_ns.detach()) + c.restoration_weight * restored.get("l_rs", 0.0)
                      + c.omega * float(det["total"].detach())),
    }


def reset_restorer(trainer: ISPTrainer, iteration: int) -> dict[str, Any]:
    """Re-initialise R before iteration ``iteration`` (``restorer_reinit_every``): fresh seeded weights
    and optimiser, then ``restorer_warmup_steps`` steps on the current ISP, on R's own batch stream.
    Returns the log entries: which reset this is and R's mean L1 over its last 10 warm-up steps."""
    adversary, c = trainer.restoration, trainer.config
    assert adversary is not None
    resets = isp_levers.resets_before(c, iteration)
    adversary.reinitialise(isp_levers.restorer_init_seed(c.seed, resets))
    rows = [adversary.restorer_step(trainer.isp, trainer._restorer_batch(adversary.sampler))
            for _ in range(c.restorer_warmup_steps)]
    return {"restorer_reset": resets, "r_l1_after_reset": mean_rows(rows[-10:]).get("r_l1", float("nan"))}


def iterate(trainer: ISPTrainer) -> dict[str, Any]:
    """One adversarial iteration: m attacker steps (unless protector-only), the restorer's steps
    (with a restorer), n protector steps; appends its log row to ``trainer.rows``."""
    c, adversary = trainer.config, trainer.restoration
    start = time.perf_counter()
    row: dict[str, Any] = {"iteration": trainer.iteration + 1}
    trainer.draws = {}
    if not c.protector_only:
        attack = mean_rows([trainer.attacker_step() for _ in range(c.m)])
        row.update(attacker_ce=attack["ce"], attacker_acc=attack["acc"])
    if adversary is not None:
        i = trainer.iteration + 1
        if isp_levers.reset_due(c, i):
            row.update(reset_restorer(trainer, i))
        steps = isp_levers.restorer_steps_at(c, i)
        if isp_levers.annealed(c):
            row["restorer_steps"] = steps
        row.update(mean_rows([adversary.restorer_step(trainer.isp, trainer._restorer_batch(adversary.sampler))
                              for _ in range(steps)]))
    row.update(mean_rows([trainer.protector_step() for _ in range(c.n)]))
    if trainer.conditions.active:  # every batch's condition, role by role
        row["conditions"] = " ".join(f"{role}:{'|'.join(names)}" for role, names in trainer.draws.items())
    trainer.draws = {}
    row["seconds"] = time.perf_counter() - start
    trainer.iteration += 1
    trainer.rows.append(row)
    return row


@torch.inference_mode()
def validate(trainer: ISPTrainer) -> dict[str, Any]:
    """Attacker (F + H) top-1 accuracy and CE on held-out faces (8-bit protected and raw), and
    the detection loss of the current P on all person images, 8-bit protected; appends the row
    to ``trainer.val_rows``."""
    from ..detection import person_targets

    data, result = trainer.face_data, {"iteration": trainer.iteration}
    persons, total, detector = trainer.person_data, 0.0, trainer.detector
    detector.eval()
    for s in range(0, len(persons), 8):
        images, boxes = persons.batch(np.arange(s, min(s + 8, len(persons))), device=trainer.device)
        total += float(detector.loss(quantize8(trainer.isp(images)), person_targets(boxes))) * len(boxes)
    detector.train()
    result["person_l_det"] = total / len(persons)
    names, count = trainer._names(), len(data.val_labels)
    adversary = trainer.restoration if trainer.restoration is not None and trainer.restoration.ready else None
    restored: dict[str, float] = {}  # filled by the protected pass, listed before it (as val.csv has it)
    measured: dict[str, float] = {}
    passes: list[tuple[str, bool, Any]] = [("protected", True, None), ("raw", False, None)]
    passes += [(f"protected@{c.spec()}", True, c)  # the camera under each condition trained for
               for c, p in zip(trainer.conditions.conditions, trainer.conditions.probabilities) if p > 0]
    for name, protect, condition in passes:
        if count == 0:
            break
        correct, ce, correct_r = np.zeros(len(names)), np.zeros(len(names)), np.zeros(len(names))
        suffix = name.partition("@")[1] + name.partition("@")[2]
        for s in range(0, count, 64):
            xs, y = trainer._faces(np.arange(s, min(s + 64, count)), split="val")
            if protect:
                xs = per_distinct(lambda x: trainer.conditions.apply(condition, x), xs)
                captured = trainer._protect(xs)
                xs = per_distinct(quantize8, captured)
                if adversary is not None:  # R rounds the same captures to 8 bits itself
                    correct_r += restored_accuracy(adversary, captured, y)
            logits = trainer._logits(xs)
            correct += [int((z.argmax(1) == y).sum()) for z in logits]
            ce += [float(F.cross_entropy(z, y, reduction="sum")) for z in logits]
        if protect and adversary is not None:
            restored[f"val_acc_restored{suffix}"] = float(correct_r.mean()) / count
            if len(names) > 1:
                restored.update({f"val_acc_restored{suffix}[{model}]": float(v) / count
                                 for model, v in zip(names, correct_r)})
        measured[f"val_acc_{name}"] = float(correct.mean()) / count
        measured[f"val_ce_{name}"] = float(ce.mean()) / count
        if len(names) > 1:  # each model of the ensemble
            measured.update({f"val_acc_{name}[{model}]": float(v) / count for model, v in zip(names, correct)})
    result.update(restored)
    result.update(measured)
    trainer.val_rows.append(result)
    return result
