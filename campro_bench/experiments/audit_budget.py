"""Training budgets of the audit's restoration rung: a schedule, a curve, and honest flags.

A trained attack reported after one short schedule may be far from what the same attacker reaches
with more compute. ``restoration.budgets`` (multiples of ``restoration.steps``, strictly increasing;
default ``[1]``: today's single schedule) trains the restoration U-Net once per budget from the same
TRAIN data and seed, and every budget's restored probes become attack rows. The curve table
(:func:`curve`) lists accuracy against budget for every (protector, model, classifier, gallery), with

* ``status = failed`` for a training whose loss did not fall (no step ran, a non-finite loss, or
  the last epoch's mean L1 not below the first's): its rows are not scored, never reported as a low
  accuracy;
* ``converged = no`` at the last budget when its gain over the previous budget is larger than the
  half-width of its own 95 % interval (the attack still improves: the verdict may understate it);
  ``yes`` otherwise; ``one budget`` when there is nothing to compare.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd

from ..errors import CamproError

OK, FAILED = "ok", "failed"


def check_budgets(budgets: Sequence[float], where: str = "restoration.budgets") -> list[float]:
    """The budgets if they are finite, positive and strictly increasing; else one error line."""
    values = [float(b) for b in budgets]
    if not values or not all(math.isfinite(b) and b > 0 for b in values):
        raise CamproError(f"{where} must be a non-empty list of finite multiples > 0 of the base steps, got {list(budgets)}")
    if any(b >= c for b, c in zip(values, values[1:])):
        raise CamproError(f"{where} must be strictly increasing (e.g. [1, 4, 16]), got {list(budgets)}")
    return values


def steps_for(base_steps: int, budget: float) -> int:
    """AdamW steps of one budget (at least one)."""
    return max(1, round(base_steps * budget))


def training_status(history: Sequence[dict[str, Any]]) -> str:
    """``failed`` when the training loss did not fall (see the module docstring), else ``ok``."""
    losses = [float(h.get("loss", math.nan)) for h in history]
    if not losses or not all(math.isfinite(v) for v in losses):
        return FAILED
    if len(losses) >= 2 and losses[-1] >= losses[0]:
        return FAILED
    return OK


def curve(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """The accuracy-versus-budget table from entries ``{protector, model, classifier, gallery, budget,
    steps, status, final_loss, accuracy_mean, ci_low, ci_high}`` (accuracies NaN where failed), with
    ``converged`` set on each group's last budget."""
    table = pd.DataFrame(entries)
    if table.empty:
        return table
    table["converged"] = ""
    for _, rows in table.groupby(["protector", "model", "classifier", "gallery"], sort=False):
        scored = rows[rows["status"] == OK]
        if not len(scored):
            continue
        last = scored.index[-1]
        if scored.index[-1] != rows.index[-1] or len(scored) < 2:
            table.loc[last, "converged"] = "last budget failed" if scored.index[-1] != rows.index[-1] else "one budget"
            continue
        gain = scored["accuracy_mean"].iloc[-1] - scored["accuracy_mean"].iloc[-2]
        half_width = (scored["ci_high"].iloc[-1] - scored["ci_low"].iloc[-1]) / 2
        table.loc[last, "converged"] = "no" if gain > half_width else "yes"
    return table
