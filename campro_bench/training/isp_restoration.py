"""The restoration adversary of ``train isp --restorer unet`` (beyond the paper's Algorithm 1).

The paper trains the ISP C against an attacker F that *re-trains* on captured faces. Its white-box
restoration attack (Sec. VII-C2) is a different attacker: it simulates (raw, captured) pairs with the
known ISP, trains a U-Net R to invert it, and feeds restored faces to an ordinary recogniser enrolled
with raw faces. An ISP that only *disguises* identity (an invertible tone curve and colour matrix)
loses to it: measured in this project, restoration recovers about half of the identities from the
shipped presets (``baselines/e5_small``) and an analytic inverse even more (``baselines/audit``).

This module puts that attacker inside the training loop:

* **R**, a small U-Net (:class:`~campro_bench.enhancer.UNet`, sigmoid output), trained by Adam on
  the plain L1 of Eq. 7, ``|R(q(C(x))) - x|``, on training face crops ``x`` with C fixed; ``q``
  rounds to 8 bits, as the camera writes its images and as the E5 attacker trains;
* **J**, the *judges*: a frozen copy of each attacker F and its head H as the warm-up left them
  (fitted to raw faces). They play E5's recogniser, which matches restored probes against a raw
  gallery. The adaptive F of Algorithm 1 drifts into the captured domain, so it is the wrong model
  to score restored, raw-looking faces;
* the protector term ``L_rs = L_ns(J(R(q(C(x)))))`` with R and J fixed, the paper's non-saturating
  loss on restored faces; the gradient reaches C through R, with the 8-bit rounding passed straight
  through. C's step uses ``grad(L_ns + lambda_R * L_rs + omega * L_det)``.

Order inside one iteration: m attacker steps, then ``restorer_steps`` R steps on the current C, then
n protector steps; R first gets ``restorer_warmup_steps`` steps on the initial ISP, so the protector
term starts against a working inverse rather than a random network. R's batch-norm layers use batch
statistics while R trains and their running statistics in the protector term and in validation.
With an ensemble of attackers one R inverts every model's crops (the ISP is the same per-pixel map
for all of them) and ``L_rs`` is the mean over the judges.

Validation logs the judges' top-1 on restored held-out faces (``val_acc_restored``): a training-time
view of the white-box number that E5's restoration attack measures on unseen identities.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..enhancer.model import UNet, UNetConfig, masked_l1_loss
from .checkpoint import load_module_state
from .data import EpochSampler
from .losses import distinct, frozen, non_saturating_loss, per_distinct, quantize8, quantize8_straight_through

RESTORERS = ("none", "unet")
"""Values of ``ISPTrainConfig.restorer``: none (the paper's Algorithm 1) or a U-Net in the loop."""

SAMPLER_STREAM = 5
"""Seed stream of R's face batches (0-4 are the trainer's warm-up, attacker, protector, person, probe)."""


class RestorationAdversary:
    """R (a U-Net), its optimiser and batch sampler, and the frozen judges J (see the module docstring).

    Args:
        channels, depth: the U-Net's size.
        lr: Adam learning rate of R.
        train_images: how many training crops the sampler draws from.
        batch_size, seed, hflip: R's batches (a seeded stream of its own).
        device: where R lives.
    """

    def __init__(self, channels: int, depth: int, lr: float, train_images: int, batch_size: int, seed: int,
                 hflip: bool, device: torch.device) -> None:
        self.size, self.lr, self.device = UNetConfig(channels, depth), lr, device
        self.reinitialise(seed)
        self.sampler = EpochSampler(train_images, batch_size, seed, SAMPLER_STREAM, hflip)
        self.judges: list[nn.Module] = []
        self.judge_heads: list[nn.Module] = []
        self.warmup_rows: list[dict[str, Any]] = []

    def reinitialise(self, init_seed: int) -> None:
        """Fresh weights for R, drawn with torch seed ``init_seed`` (they depend on it only, not on the
        global RNG's history, which is left as it was), and a fresh Adam state. Called at the start and,
        with ``restorer_reinit_every``, after every K-th iteration (:mod:`~campro_bench.training.isp_levers`)."""
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(init_seed)
        self.net = UNet(self.size).to(self.device)
        torch.random.set_rng_state(generator_state)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr)

    @property
    def ready(self) -> bool:
        """Whether the judges exist (they are taken once, when the attacker's warm-up ends)."""
        return bool(self.judges)

    def take_judges(self, attackers: Sequence[nn.Module], heads: Sequence[nn.Module]) -> None:
        """Freeze copies of the warmed-up attackers and heads as the judges."""
        self.judges = [self._frozen_copy(m) for m in attackers]
        self.judge_heads = [self._frozen_copy(h) for h in heads]

    @staticmethod
    def _frozen_copy(module: nn.Module) -> nn.Module:
        clone = copy.deepcopy(module).eval()
        for p in clone.parameters():
            p.requires_grad_(False)
        return clone

    # steps ------------------------------------------------------------------------------
    def restorer_step(self, isp: nn.Module, crops: Sequence[torch.Tensor]) -> dict[str, float]:
        """One Adam step of R on ``|R(q(C(x))) - x|`` (C fixed), averaged over the distinct crop sets."""
        self.net.train()
        losses = []
        for x in distinct(crops):
            with torch.no_grad():
                captured = quantize8(isp(x))
            losses.append(masked_l1_loss(self.net(captured), x, None))
        loss = torch.stack(losses).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"r_l1": float(loss.detach())}

    def warmup(self, isp: nn.Module, batches: Any, steps: int) -> None:
        """``steps`` R steps on the initial ISP before the adversarial iterations (logged as rows)."""
        start = time.perf_counter()
        for step in range(len(self.warmup_rows), steps):
            row = self.restorer_step(isp, batches(self.sampler))
            self.warmup_rows.append({"step": step + 1, **row, "seconds": time.perf_counter() - start})
            start = time.perf_counter()

    def restored(self, isp_outputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """R applied to the 8-bit captures (rounding straight-through), R in eval mode, its weights fixed."""
        self.net.eval()
        with frozen(self.net):
            return per_distinct(lambda t: self.net(quantize8_straight_through(t)), isp_outputs)

    def judge_logits(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Each judge's logits on its own (restored) crops."""
        return [head(model(x)) for model, head, x in zip(self.judges, self.judge_heads, images)]

    # state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(), "warmup_rows": self.warmup_rows,
            "judges": [m.state_dict() for m in self.judges], "judge_heads": [h.state_dict() for h in self.judge_heads],
        }

    def load_state_dict(self, state: dict[str, Any], attackers: Sequence[nn.Module], heads: Sequence[nn.Module],
                        source: str) -> None:
        """Restore from :meth:`state_dict` (``attackers``/``heads`` give the judges' architectures)."""
        load_module_state(self.net, state["net"], f"{source} (restorer)")
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.warmup_rows = list(state["warmup_rows"])
        if state["judges"]:
            self.take_judges(attackers, heads)
            for module, saved in zip(self.judges + self.judge_heads, state["judges"] + state["judge_heads"]):
                load_module_state(module, saved, f"{source} (restoration judge)")

    def summary(self) -> dict[str, Any]:
        rows = self.warmup_rows
        return {"restorer_warmup_steps": len(rows),
                "restorer_warmup_final_l1": float(np.mean([r["r_l1"] for r in rows[-10:]])) if rows else None}


def restoration_privacy_loss(adversary: RestorationAdversary, isp_outputs: Sequence[torch.Tensor],
                             labels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``L_rs``: the judges' mean non-saturating loss on restored faces, and their logits."""
    logits = adversary.judge_logits(adversary.restored(isp_outputs))
    loss = torch.stack([non_saturating_loss(z, labels).mean() for z in logits]).mean()
    return loss, logits


def restored_accuracy(adversary: RestorationAdversary, isp_outputs: Sequence[torch.Tensor],
                      labels: torch.Tensor) -> list[int]:
    """Correct top-1 decisions of each judge on restored faces (no gradient)."""
    with torch.no_grad():
        logits = adversary.judge_logits(adversary.restored(isp_outputs))
    return [int((z.argmax(1) == labels).sum()) for z in logits]
