"""The restoration rung's budget schedule: increasing budgets or one error line, a failed training is
flagged and not scored, and the last budget is flagged when it still gains."""

from __future__ import annotations

import math

import pytest

from campro_bench.errors import CamproError
from campro_bench.experiments.audit import AuditConfig, budget_config
from campro_bench.experiments.audit_budget import FAILED, OK, check_budgets, curve, steps_for, training_status


@pytest.mark.parametrize("budgets, message", [
    ([4, 1], "must be strictly increasing (e.g. [1, 4, 16]), got [4, 1]"),
    ([1, 1], "must be strictly increasing"),
    ([0, 1], "finite multiples > 0"),
    ([1, math.inf], "finite multiples > 0"),
    ([], "non-empty list"),
])
def test_budgets_that_do_not_increase_fail_in_one_line(budgets: list[float], message: str) -> None:
    with pytest.raises(CamproError) as info:
        check_budgets(budgets)
    assert message in str(info.value) and len(str(info.value).splitlines()) == 1
    with pytest.raises(CamproError, match="restoration.budgets"):
        AuditConfig.from_spec({"protectors": ["invert"], "restoration": {"budgets": budgets}})


def test_budgets_multiply_the_base_steps_and_the_default_is_todays_schedule() -> None:
    cfg = AuditConfig.from_spec({"protectors": ["invert"], "restoration": {"budgets": [1, 4, 16]}})
    assert [steps_for(cfg.restoration.steps, b) for b in cfg.restoration.budgets] == [84, 336, 1344]
    assert budget_config(cfg, 4.0).restoration.steps == 336 and budget_config(cfg, 1.0) is cfg
    assert AuditConfig.from_spec({"protectors": ["invert"]}).restoration.budgets == [1.0]


def test_a_training_whose_loss_did_not_fall_is_failed() -> None:
    assert training_status([]) == FAILED  # a restorer forced to 0 steps
    assert training_status([{"loss": 0.3}, {"loss": 0.3}]) == FAILED
    assert training_status([{"loss": 0.2}, {"loss": 0.3}]) == FAILED
    assert training_status([{"loss": float("nan")}]) == FAILED
    assert training_status([{"loss": 0.3}, {"loss": 0.1}]) == OK


def entry(budget: float, acc: float, status: str = OK, half: float = 0.05) -> dict[str, object]:
    return {"protector": "p", "model": "m", "classifier": "nearest", "gallery": "raw", "budget": budget,
            "steps": int(84 * budget), "status": status, "final_loss": 0.1, "accuracy_mean": acc,
            "ci_low": acc - half, "ci_high": acc + half}


def test_the_last_budget_is_flagged_when_it_still_gains_more_than_its_interval() -> None:
    still = curve([entry(1, 0.10), entry(4, 0.20), entry(16, 0.40)])
    assert list(still["converged"]) == ["", "", "no"]
    flat = curve([entry(1, 0.10), entry(4, 0.30), entry(16, 0.32)])
    assert flat["converged"].iloc[-1] == "yes"
    failed_last = curve([entry(1, 0.10), entry(4, math.nan, FAILED)])
    assert failed_last["converged"].iloc[0] == "last budget failed"
    assert curve([entry(1, 0.10)])["converged"].iloc[0] == "one budget"
