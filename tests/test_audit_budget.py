"""The trained rungs' budget schedules: increasing budgets or one error line, a failed training is
flagged and not scored, and the last budget is flagged when it still gains (on SELECT when there is one)."""

from __future__ import annotations

import math

import pytest

from campro_bench.errors import CamproError
import pandas as pd

from campro_bench.experiments.audit import AuditConfig, retrain_rows, training_jobs
from campro_bench.experiments.audit_budget import (FAILED, OK, budget_config, check_budgets, curve, steps_for,
                                                   training_status)
from campro_bench.experiments.whitebox import E5Config


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
    for rung in ("restoration", "retrain"):
        with pytest.raises(CamproError) as info:
            AuditConfig.from_spec({"protectors": ["invert"], rung: {"budgets": budgets}})
        assert f"{rung}.budgets" in str(info.value) and len(str(info.value).splitlines()) == 1


def test_budgets_multiply_the_base_and_the_defaults_reach_e5s_schedule() -> None:
    cfg = AuditConfig.from_spec({"protectors": ["invert"], "restoration": {"budgets": [1, 4, 16]}})
    assert [steps_for(cfg.restoration.steps, b) for b in cfg.restoration.budgets] == [84, 336, 1344]
    assert budget_config(cfg, 4.0).restoration.steps == 336 and budget_config(cfg, 1.0) is cfg
    assert budget_config(cfg, 2.0, "retrain").retrain.epochs == 2 * cfg.retrain.epochs
    default = AuditConfig.from_spec({"protectors": ["invert"]})
    e5 = E5Config.from_spec({})
    assert steps_for(default.restoration.steps, default.restoration.budgets[-1]) >= e5.restoration.steps
    assert steps_for(default.retrain.epochs, default.retrain.budgets[-1]) >= e5.retrain.epochs
    jobs = training_jobs(default, ["invert"])
    assert [(r, a) for _, r, a in jobs] == [("restoration", 1.0), ("restoration", 3.0), ("restoration", 7.0),
                                           ("retrain", 1.0), ("retrain", 2.0)]


def outcome(losses: list[float], accuracy: float) -> dict[str, object]:
    return {"accuracies": [accuracy - 0.02, accuracy, accuracy + 0.02], "chance": 0.1, "config": {}, "cached": False,
            "info": {"history": [{"epoch": n + 1, "train_loss": v} for n, v in enumerate(losses)]}}


def test_a_retraining_whose_loss_did_not_fall_is_failed_not_a_low_accuracy() -> None:
    cfg = AuditConfig.from_spec({"protectors": ["invert"], "retrain": {"budgets": [1, 2]}})
    split = type("S", (), {"eval_ids": ["a/1"], "train_ids": ["b/1"], "eval_names": ["a"], "train_names": ["b"]})()
    rows, info = retrain_rows(cfg, "invert", [(1.0, outcome([2.0, 1.0], 0.3)), (2.0, outcome([], 0.0))], split)
    assert len(rows) == 1 and rows[0]["model"] == "facenet-casia re-trained (softmax, 2 ep)"
    table = curve(info["curve"])
    assert list(table["status"]) == [OK, FAILED] and list(table["steps"]) == [2, 4]
    assert table["accuracy_mean"].isna().tolist() == [False, True]
    assert list(table["unit"]) == ["epochs", "epochs"] and table["converged"].iloc[0] == "last budget failed"
    # the manifest keeps every budget's status and loss history, not only the last budget's
    assert {k: v["status"] for k, v in info["budgets"].items()} == {"1x": OK, "2x": FAILED}
    assert [h["train_loss"] for h in info["budgets"]["1x"]["history"]] == [2.0, 1.0]
    no_batch = outcome([2.0, 1.0], 0.3)
    no_batch["info"]["train_images"] = cfg.retrain.batch_size - 1  # fewer crops than one batch: no step ran
    assert retrain_rows(cfg, "invert", [(1.0, no_batch)], split)[0] == []


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


def test_convergence_is_judged_on_select_when_there_is_one() -> None:
    entries = [{**entry(b, a), "rung": "restoration", "attack": f"restored {b}x"} for b, a in ((1, 0.1), (4, 0.3))]
    select = pd.DataFrame([{"protector": "p", "rung": "restoration", "attack": f"restored {b}x", "model": "m",
                            "classifier": "nearest", "gallery": "raw", "accuracy_mean": a, "ci_low": a - 0.05,
                            "ci_high": a + 0.05} for b, a in ((1, 0.29), (4, 0.30))])
    on_eval, on_select = curve(entries), curve(entries, select)
    assert on_eval["converged"].iloc[-1] == "no" and on_eval["judged_on"].iloc[-1] == "EVAL"  # EVAL gains 0.2
    assert on_select["converged"].iloc[-1] == "yes" and on_select["judged_on"].iloc[-1] == "SELECT"  # SELECT: 0.01
    assert list(on_select["select_mean"]) == [0.29, 0.30]
