"""Levers of ``train isp`` beyond the paper: a restorer re-initialised every K iterations, restorer steps
annealed upward, and a slope bound that flattens the LUT.

Each lever is one key of :class:`~campro_bench.training.isp.ISPTrainConfig`, off by default (a run
without them is today's run, bit for bit), and each is a pure function of the configuration and the
iteration, so a resumed run follows the same schedule as an uninterrupted one:

* ``restorer_reinit_every = K`` (with ``restorer = "unet"``): after every K-th iteration the
  restorer R gets fresh weights (a seeded initialisation, :func:`restorer_init_seed`, different for
  each reset) and a fresh Adam state, then ``restorer_warmup_steps`` steps on the *current* ISP
  before the next iteration's steps. The ISP is then trained against a restorer made from scratch
  for it, as E5's white-box attacker is made, rather than against one network that it may learn to
  fool in a way a fresh network is not fooled.
* ``restorer_steps_final = R1`` (with ``restorer_steps = R0``): R's steps per iteration grow
  linearly from R0 at the first iteration to R1 at iteration ``restorer_steps_ramp`` (0: the last
  iteration, ``iterations``), rounded half up, then stay at R1 (:func:`restorer_steps_at`). A
  strong restorer from the start leaves the ISP no gradient to work with (its restored faces are
  recognised whatever small move C makes); the ramp lets C move first and makes the inverse harder
  as training goes on. R1 below R0 is refused: the lever anneals upward.
* ``lut_max_slope = s``: every step of the 32-point LUT is kept within ``s / 31`` in absolute value,
  i.e. the tone curve's slope (output per input, both on [0, 1]) stays within ``[-s, s]``
  (:func:`limit_lut_slope_`, applied after every ISP step and to the initial ISP). A hard bound
  rather than a total-variation penalty: it holds on every trained LUT whatever the other losses
  do, and it bounds what a restorer can recover. The LUT's outputs then span at most ``s``, so an
  8-bit capture holds at most ``floor(255 s) + 2`` levels per channel after the LUT: below ``s = 1`` the
  camera discards tonal information that no inverse can restore, while a penalty only trades
  flatness against the other losses at a weight with no such guarantee.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import CamproError

if TYPE_CHECKING:
    from .isp import ISPTrainConfig

LEVER_DEFAULTS: dict[str, Any] = {"restorer_reinit_every": 0, "restorer_steps_final": 0, "restorer_steps_ramp": 0,
                                  "lut_max_slope": 0.0}
"""The lever keys and their off values; a configuration records a key only when it is on."""

RESET_STREAM = 7
"""Seed stream of R's re-initialisations (:func:`restorer_init_seed`)."""


def check_levers(config: ISPTrainConfig) -> None:
    """One-line :class:`CamproError` for lever values that contradict each other."""
    c = config
    if c.restorer_steps_final and c.restorer_steps_final < c.restorer_steps:
        raise CamproError(f"restorer_steps_final ({c.restorer_steps_final}) must be at least restorer_steps "
                          f"({c.restorer_steps}): the restorer's steps anneal upward (0: constant)")
    if c.restorer == "none":
        used = [k for k in ("restorer_reinit_every", "restorer_steps_final", "restorer_steps_ramp")
                if getattr(c, k) != LEVER_DEFAULTS[k]]
        if used:
            raise CamproError(f"{', '.join(used)} need a restorer: set restorer = \"unet\"")
    if c.restorer_steps_ramp and not c.restorer_steps_final:
        raise CamproError("restorer_steps_ramp needs restorer_steps_final (the step count the ramp ends at)")


def annealed(config: ISPTrainConfig) -> bool:
    """Whether R's steps per iteration follow a ramp (``restorer_steps_final`` set above ``restorer_steps``)."""
    return config.restorer_steps_final > config.restorer_steps


def ramp_depends_on_length(config: ISPTrainConfig) -> bool:
    """Whether the R-step ramp ends at the last iteration (so ``iterations`` may not change on resume)."""
    return annealed(config) and config.restorer_steps_ramp == 0


def restorer_steps_at(config: ISPTrainConfig, iteration: int) -> int:
    """R's steps in iteration ``iteration`` (1-based): ``restorer_steps`` without a ramp, else linear
    from R0 at iteration 1 to R1 at the ramp's last iteration, rounded half up, then R1."""
    r0, r1 = config.restorer_steps, config.restorer_steps_final
    if not annealed(config):
        return r0
    length = config.restorer_steps_ramp or config.iterations
    if length <= 1 or iteration >= length:
        return r1
    return int(math.floor(r0 + (r1 - r0) * (iteration - 1) / (length - 1) + 0.5))


def reset_due(config: ISPTrainConfig, iteration: int) -> bool:
    """Whether R is re-initialised before iteration ``iteration`` (1-based): after every K-th iteration."""
    k = config.restorer_reinit_every
    return k > 0 and iteration > 1 and (iteration - 1) % k == 0


def resets_before(config: ISPTrainConfig, iteration: int) -> int:
    """How many re-initialisations happen up to and including the one before iteration ``iteration``."""
    k = config.restorer_reinit_every
    return (iteration - 1) // k if k > 0 and iteration > 1 else 0


def restorer_init_seed(seed: int, resets: int) -> int:
    """The torch seed of R's initial weights: the run's seed at the start (as without the lever), a
    seed drawn from ``(seed, stream, resets)`` for the ``resets``-th re-initialisation."""
    if resets == 0:
        return seed
    return int(np.random.SeedSequence([seed, RESET_STREAM, resets]).generate_state(1, dtype=np.uint32)[0])


@torch.no_grad()
def limit_lut_slope_(lut: torch.Tensor, max_slope: float) -> torch.Tensor:
    """Keep every step of ``lut`` (values on [0, 1] at evenly spaced inputs) within ``max_slope /
    (points - 1)``, in place; ``max_slope = 0`` leaves it alone.

    A LUT that meets the bound is left unchanged. Otherwise its steps are clipped, the curve is rebuilt
    from them with its mean kept, then clamped to [0, 1] (a clamp is 1-Lipschitz, so the steps stay
    within the bound). The rebuild runs in float64 against a bound ``1e-7`` tighter, so that rounding
    back to the LUT's float32 (at most ``6e-8`` per step on [0, 1]) cannot take a step over the bound."""
    if max_slope <= 0:
        return lut
    bound = max_slope / (lut.shape[-1] - 1)
    if float(torch.diff(lut).abs().max()) <= bound:
        return lut
    values = lut.double()
    steps = torch.diff(values).clamp(-(bound - 1e-7), bound - 1e-7)
    rebuilt = torch.cat([torch.zeros_like(values[:1]), torch.cumsum(steps, 0)])
    rebuilt += values.mean() - rebuilt.mean()
    lut.copy_(rebuilt.clamp(0.0, 1.0).to(lut.dtype))
    return lut


def lut_slope(lut: torch.Tensor) -> float:
    """The largest absolute slope of a LUT (its steepest step times ``points - 1``)."""
    return float(torch.diff(lut.detach()).abs().max()) * (lut.shape[-1] - 1)


def summary(config: ISPTrainConfig, iterations: int) -> dict[str, Any]:
    """What the manifest records of the levers: every key's value, the R steps and resets of the run."""
    c = config
    record: dict[str, Any] = {k: getattr(c, k) for k in LEVER_DEFAULTS}
    record["isp_steps_per_iteration"] = c.n
    if c.restorer != "none":
        record["restorer_size"] = {"channels": c.restorer_channels, "depth": c.restorer_depth}
        record["restorer_steps_total"] = sum(restorer_steps_at(c, i) for i in range(1, iterations + 1))
        record["restorer_resets"] = resets_before(c, iterations)
    return record
