"""The audit as a newcomer runs it: from any folder, with empty panels and weak rungs said in words."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from campro_bench.experiments import audit_report
from campro_bench.experiments.common import CHECKOUT, find_protector_row, resolve_table_path


def test_committed_utility_tables_are_found_from_another_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # outside the repository, as after `cd ~/experiments`
    assert resolve_table_path("baselines/e3/table3.csv") == CHECKOUT / "baselines/e3/table3.csv"
    row, source = find_protector_row(["baselines/e3/table3.csv"], "lowres:factor=16", ["AP"])
    assert row is not None and source == "baselines/e3/table3.csv" and 0 < float(row["AP"]) < 1
    row, _ = find_protector_row(["baselines/e4/table4_values.csv"], "campro-isp:preset=casia-restore32-w1",
                                ["psnr_mean"], reference_raw=True)
    assert row is not None and float(row["psnr_mean"]) == pytest.approx(10.26, abs=0.005)


def test_a_run_of_ones_own_is_found_under_the_results_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    (results / "e3-mine").mkdir(parents=True)
    pd.DataFrame({"protector": ["mine:x=1"], "AP": [0.25]}).to_csv(results / "e3-mine" / "table3.csv", index=False)
    monkeypatch.chdir(tmp_path / "results" / "e3-mine")  # neither the checkout nor the results root
    assert resolve_table_path("e3-mine/table3.csv") is None
    row, source = find_protector_row(["e3-mine/table3.csv"], "mine:x=1", ["AP"], results_root=results)
    assert float(row["AP"]) == 0.25 and source == "e3-mine/table3.csv"
    assert resolve_table_path(str(results / "e3-mine" / "table3.csv")) == results / "e3-mine" / "table3.csv"
    assert resolve_table_path("no/such/table.csv", results) is None


def summary(ap: float) -> pd.DataFrame:
    return pd.DataFrame([{"protector": "invert", "worst_case_top1": 0.9, "ci_low": 0.85, "ci_high": 0.95,
                          "PSNR_dB": 5.2, "person_AP": ap}])


def panel_texts(figure) -> list[list[str]]:
    return [[t.get_text() for t in ax.texts] for ax in figure.axes]


def test_an_empty_plane_panel_says_no_data() -> None:
    empty = panel_texts(audit_report.plane_figure(summary(np.nan)))
    assert not any("no data" in t for t in empty[0])  # PSNR panel has its point
    assert any("no data" in t for t in empty[1])      # person AP panel is empty and says so
    full = panel_texts(audit_report.plane_figure(summary(0.09)))
    assert not any("no data" in t for texts in full for t in texts)


def test_training_rungs_that_failed_or_did_not_converge_are_named() -> None:
    falling = [{"epoch": 1, "loss": 0.18}, {"epoch": 2, "loss": 0.15}, {"epoch": 3, "loss": 0.14}]
    flat = [{"epoch": 1, "loss": 0.180}, {"epoch": 2, "loss": 0.181}]
    assert audit_report.training_warning(falling, "loss") is None
    assert "did not converge" in audit_report.training_warning(flat, "loss")
    assert "failed" in audit_report.training_warning([{"loss": 0.2}, {"loss": float("nan")}], "loss")
    assert audit_report.training_warning([{"loss": 0.2}], "loss") is None  # one epoch: no trend to judge
    info = {"restoration": {"history": flat}, "retrain": {"history": [{"train_loss": 4.0}, {"train_loss": 3.7}]}}
    warnings = audit_report.rung_warnings(info)
    assert set(warnings) == {"restoration"}
    rows = pd.DataFrame([{"rung": "restoration", "attack": "restored probes", "model": "sface", "classifier": "nearest",
                          "gallery": "raw", "accuracy_mean": 0.05, "ci_low": 0.0, "ci_high": 0.1, "accuracy_std": 0.02,
                          "x_chance": 1.0, "probe_detect_rate": 1.0}])
    verdict = pd.Series({"worst_case_top1": 0.05, "ci_low": 0.0, "ci_high": 0.1, "x_chance": 1.0,
                         "rung": "restoration", "attack": "restored probes", "model": "sface", "classifier": "nearest",
                         "gallery": "raw", "black_box_best": 0.05, "raw_best": 0.9})
    report = audit_report.protector_report("invert", rows, verdict, "invert", warnings)
    assert "the restoration rung did not converge" in report and "restoration.steps" in report


def test_the_rule_on_the_committed_audits() -> None:
    """Two committed audits' 2-epoch re-training rungs did not learn (loss 3.956 -> 3.970, 4.004 -> 4.000):
    their reports now say so; every restoration rung trained."""
    import json

    warned = {}
    for manifest in sorted((CHECKOUT / "baselines/audit").glob("*/manifest.json")):
        for spec, info in json.loads(manifest.read_text())["notes"]["audit"].items():
            if audit_report.rung_warnings(info):
                warned[spec] = set(audit_report.rung_warnings(info))
    assert warned == {"defocus:kernel=25,sigma=7": {"retrain"}, "lowres:factor=16": {"retrain"}}
