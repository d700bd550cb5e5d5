"""The audit columns of a trade-off point, read from an audit summary (``campro-bench audit``).

An audit summary has one row per protector, or, for an audit under capture conditions
(``conditions = ["colour", "grey", ...]``), one row per condition plus a ``worst over conditions``
row, each with the max-over-rows upper bound (``worst_case_top1``, ``rung``, ``attack``, ``model``)
and, when the audit had SELECT identities, the unbiased verdict (``verdict_top1`` with its interval
and the attack chosen on SELECT, ``chosen_*``). :func:`read_audit` turns the rows of one protector
into the trade-off's ``audit_*`` columns and into the two candidates of its worst cases:

* the colour candidate (the protector as it is; the only row of a summary without conditions):
  ``audit_worst_case`` / ``audit_attack``, which join ``worst_case_colour``;
* the candidate over conditions (the ``worst over conditions`` upper bound; the colour one for a
  summary without conditions), which joins ``worst_case``, the trade-off's worst-case axis: a camera
  deployed in grey (night, infrared) faces its grey attacker too.

A summary without ``condition`` or verdict columns gives exactly the columns it gave before
(``audit_worst_case``, ``audit_attack``), and the new ones empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .audit_select import WORST
from .common import find_protector_rows

COLOUR, GREY = "colour", "grey"
NOT_AUDITED = "not audited"
NO_CONDITIONS = "no condition audit"
NO_VERDICT = "no unbiased verdict"
UPPER_COLUMNS = ["worst_case_top1", "rung", "attack", "model"]
"""The columns an audit summary must have to count (the upper bound and its attack)."""

VERDICT = ("verdict_top1", "verdict_ci_low", "verdict_ci_high")


def empty_columns() -> dict[str, Any]:
    """The ``audit_*`` columns of a point no audit summary lists."""
    return {
        "audit_worst_case": np.nan, "audit_attack": NOT_AUDITED, "audit_conditions": NOT_AUDITED,
        "audit_verdict": np.nan, "audit_verdict_ci_low": np.nan, "audit_verdict_ci_high": np.nan,
        "audit_verdict_attack": NOT_AUDITED,
        "audit_grey_worst_case": np.nan, "audit_grey_verdict": np.nan, "audit_grey_verdict_ci_low": np.nan,
        "audit_grey_verdict_ci_high": np.nan,
        "audit_worst_over_conditions": np.nan, "audit_worst_over_conditions_attack": NOT_AUDITED,
        "audit_worst_over_conditions_verdict": np.nan, "audit_worst_over_conditions_verdict_ci_low": np.nan,
        "audit_worst_over_conditions_verdict_ci_high": np.nan, "audit_worst_over_conditions_chosen": NOT_AUDITED,
    }


AUDIT_COLUMNS = tuple(empty_columns())
"""Every ``audit_*`` column of ``tradeoff.csv``, in order."""


@dataclass(frozen=True)
class AuditReading:
    """One protector's audit columns and its two worst-case candidates (label -> upper bound)."""

    columns: dict[str, Any] = field(default_factory=empty_columns)
    colour: dict[str, float] = field(default_factory=dict)
    over_conditions: dict[str, float] = field(default_factory=dict)


def number(row: pd.Series, column: str) -> float:
    """``row[column]`` as a float; NaN where the column is missing or empty."""
    value = row.get(column, np.nan)
    return float(value) if pd.notna(value) else np.nan


def _attack(row: pd.Series, prefix: str = "") -> str:
    """``rung / attack / model`` of a row (``prefix="chosen_"``: of the attack chosen on SELECT)."""
    return " / ".join(str(row.get(f"{prefix}{k}", "")) for k in ("rung", "attack", "model"))


def _verdict(row: pd.Series, name: str) -> dict[str, Any]:
    """``{name: verdict, name_ci_low: ..., name_ci_high: ...}`` of a row (NaN without SELECT)."""
    value, low, high = (number(row, c) for c in VERDICT)
    return {name: value, f"{name}_ci_low": low, f"{name}_ci_high": high}


def _by_condition(rows: pd.DataFrame) -> tuple[dict[str, pd.Series], pd.Series | None]:
    """A protector's summary rows by condition (a summary without conditions: its first row is
    colour, the protector as it is) and its ``worst over conditions`` row, if any."""
    if "condition" not in rows:
        return {COLOUR: rows.iloc[0]}, None
    conditions = {str(c): part.iloc[0] for c, part in rows.groupby("condition", sort=False) if c != WORST}
    worst = rows[rows["condition"] == WORST]
    return conditions, (worst.iloc[0] if len(worst) else None)


def _over_conditions(conditions: dict[str, pd.Series], worst: pd.Series | None, source: str
                     ) -> tuple[dict[str, Any], dict[str, float]]:
    """The ``audit_worst_over_conditions*`` columns and the candidate of the worst-case axis: the
    ``worst over conditions`` row's upper bound, named by the condition row that reached it (the
    audit's own rule: the first highest), and its unbiased verdict; an audit under one condition has
    no such row, and its one row is the worst."""
    table = pd.DataFrame(list(conditions.values()))
    strongest = table.loc[table["worst_case_top1"].astype(float).idxmax()]
    label = f"audit {source}: {_attack(strongest)} ({strongest['condition']})"
    chosen = strongest if worst is None else worst
    upper = number(chosen, "worst_case_top1")
    condition = strongest["condition"] if worst is None else chosen.get("chosen_condition")
    named = f"{condition}: {_attack(chosen, 'chosen_')}" if pd.notna(chosen.get("verdict_top1", np.nan)) else NO_VERDICT
    columns = {"audit_worst_over_conditions": upper, "audit_worst_over_conditions_attack": label,
               "audit_worst_over_conditions_chosen": named, **_verdict(chosen, "audit_worst_over_conditions_verdict")}
    return columns, {label: upper}


def read_audit(paths: list[str], spec: str, results_root: Path | None = None) -> AuditReading:
    """The audit columns of protector ``spec`` from the first summary of ``paths`` that has it
    (:func:`~campro_bench.experiments.common.find_protector_rows`: missing files are passed over);
    an empty reading when none has it."""
    rows, source = find_protector_rows(paths, spec, UPPER_COLUMNS, results_root=results_root)
    if rows is None:
        return AuditReading()
    conditions, worst = _by_condition(rows)
    columns = {**empty_columns(), "audit_conditions": ", ".join(conditions),
               "audit_worst_over_conditions_attack": NO_CONDITIONS, "audit_worst_over_conditions_chosen": NO_CONDITIONS}
    colour: dict[str, float] = {}
    if COLOUR in conditions:
        row = conditions[COLOUR]
        label = f"audit {source}: {_attack(row)}"
        colour[label] = float(row["worst_case_top1"])
        chosen = _attack(row, "chosen_") if pd.notna(row.get("verdict_top1", np.nan)) else NO_VERDICT
        columns.update(audit_worst_case=colour[label], audit_attack=label, audit_verdict_attack=chosen,
                       **_verdict(row, "audit_verdict"))
    if GREY in conditions:
        row = conditions[GREY]
        columns.update(audit_grey_worst_case=float(row["worst_case_top1"]), **_verdict(row, "audit_grey_verdict"))
    if "condition" not in rows:  # the protector as it is is its only condition
        return AuditReading(columns, colour, dict(colour))
    over, candidate = _over_conditions(conditions, worst, source)
    return AuditReading({**columns, **over}, colour, candidate)


def audited(table: pd.DataFrame) -> pd.Series:
    """Whether an audit attacked each point (under any condition): a point no audit attacked has
    only a lower bound as its worst case (hollow on the figure, off the worst-case front)."""
    mask = table["audit_worst_case"].notna()
    if "audit_worst_over_conditions" in table:
        mask |= table["audit_worst_over_conditions"].notna()
    return mask
