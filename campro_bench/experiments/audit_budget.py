"""Training budgets of the audit's trained rungs: a schedule, a curve, and honest flags.

A trained attack reported after one short schedule may be far from what the same attacker reaches
with more compute. ``restoration.budgets`` (multiples of ``restoration.steps``) and
``retrain.budgets`` (multiples of ``retrain.epochs``), each strictly increasing, train the rung once
per budget from the same TRAIN data and seed, and every budget's outcome becomes attack rows. The
curve table (:func:`curve`) lists accuracy against budget for every (protector, rung, series,
classifier, gallery) (the series: the scoring model for restoration, the re-trained extractor for
re-training), with

* ``status = failed`` for a training whose loss did not fall (no step ran, a non-finite loss, or
  the last epoch's mean loss not below the first's): its rows are not scored, never reported as a
  low accuracy;
* ``converged = no`` at the last budget when its gain over the previous budget is larger than the
  half-width of its own 95 % interval (the attack still improves: the verdict may understate it);
  ``yes`` otherwise; ``one budget`` when there is nothing to compare. The gain is judged on the
  SELECT identities when the audit has them (``judged_on``), so that the flag, like every other
  choice of the audit, never looks at EVAL.
"""

from __future__ import annotations

import dataclasses

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
    """AdamW steps (restoration) or epochs (re-training) of one budget (at least one)."""
    return max(1, round(base_steps * budget))


def budget_config(cfg: Any, budget: float, rung: str = "restoration") -> Any:
    """The audit configuration ``cfg`` with a trained rung's base (restoration: steps; retrain:
    epochs) multiplied by ``budget`` (:func:`steps_for`); unchanged: ``cfg`` itself."""
    section = getattr(cfg, rung)
    unit = "steps" if rung == "restoration" else "epochs"
    amount = steps_for(getattr(section, unit), budget)
    return cfg if amount == getattr(section, unit) else dataclasses.replace(
        cfg, **{rung: dataclasses.replace(section, **{unit: amount})})


def training_status(history: Sequence[dict[str, Any]], key: str = "loss") -> str:
    """``failed`` when the training loss ``key`` of each history row did not fall (see the module
    docstring), else ``ok``."""
    losses = [float(h.get(key, math.nan)) for h in history]
    if not losses or not all(math.isfinite(v) for v in losses):
        return FAILED
    if len(losses) >= 2 and losses[-1] >= losses[0]:
        return FAILED
    return OK


ROW_KEY = ["protector", "rung", "attack", "model", "classifier", "gallery"]
"""The columns that name an attack row (the same on EVAL and on SELECT)."""


def curve(entries: list[dict[str, Any]], select: pd.DataFrame | None = None) -> pd.DataFrame:
    """The accuracy-versus-budget table from entries ``{protector, model, classifier, gallery, budget,
    steps, status, final_loss, accuracy_mean, ci_low, ci_high}`` (accuracies NaN where failed;
    optional ``rung``, ``series`` and ``attack``), with ``converged`` set on each group's last budget.

    ``select``: the same attack rows scored on SELECT (``ROW_KEY`` columns and accuracies); when
    given, their accuracies join as ``select_mean`` / ``select_ci_low`` / ``select_ci_high`` and the
    convergence is judged on them."""
    table = pd.DataFrame(entries)
    if table.empty:
        return table
    table = table.assign(**{c: table[c] if c in table else d for c, d in
                            (("rung", "restoration"), ("attack", ""), ("series", table["model"]))})
    judge = {"mean": "accuracy_mean", "low": "ci_low", "high": "ci_high"}
    table["judged_on"] = "EVAL"
    if select is not None and len(select):
        found = select[ROW_KEY + ["accuracy_mean", "ci_low", "ci_high"]].rename(
            columns={"accuracy_mean": "select_mean", "ci_low": "select_ci_low", "ci_high": "select_ci_high"})
        table = table.merge(found.drop_duplicates(ROW_KEY), on=ROW_KEY, how="left")
        judge = {"mean": "select_mean", "low": "select_ci_low", "high": "select_ci_high"}
        table["judged_on"] = "SELECT"
    table["converged"] = ""
    for _, rows in table.groupby(["protector", "rung", "series", "classifier", "gallery"], sort=False):
        scored = rows[rows["status"] == OK]
        if not len(scored):
            continue
        last = scored.index[-1]
        if scored.index[-1] != rows.index[-1] or len(scored) < 2:
            table.loc[last, "converged"] = "last budget failed" if scored.index[-1] != rows.index[-1] else "one budget"
            continue
        gain = scored[judge["mean"]].iloc[-1] - scored[judge["mean"]].iloc[-2]
        half_width = (scored[judge["high"]].iloc[-1] - scored[judge["low"]].iloc[-1]) / 2
        table.loc[last, "converged"] = "no" if gain > half_width else "yes"
    return table
