"""scripts/audit_cg_table.py only selects and formats a condition audit's own numbers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
AUDITS = sorted(p for p in (ROOT / "baselines/audit_cg").iterdir() if (p / "summary.csv").is_file())


def _script():
    spec = importlib.util.spec_from_file_location("audit_cg_table", ROOT / "scripts/audit_cg_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("folder", AUDITS, ids=[p.name for p in AUDITS])
def test_each_row_carries_the_audit_s_worst_over_conditions_and_its_flags(folder: Path) -> None:
    row = _script().audit_row(folder)
    summary = pd.read_csv(folder / "summary.csv").set_index("condition")
    worst = summary.loc["worst over conditions"]
    assert row["worst over conditions, unbiased %"].startswith(f"{100 * worst.verdict_top1:.0f} [")
    assert row["upper bound %"] == f"{100 * worst.worst_case_top1:.0f}"
    assert f"({worst.chosen_condition})" in row["worst over conditions, unbiased %"]
    budget = pd.read_csv(folder / "budget.csv")
    assert (row["not converged"] == "none") == (not (budget["converged"].astype(str) == "no").any())
    total = json.loads((folder / "manifest.json").read_text())["timings_s"]["total"]
    assert row["wall time s"] == f"{total:,.0f}"


def test_an_audit_with_one_condition_is_refused(tmp_path: Path) -> None:
    pd.DataFrame([{"protector": "raw", "condition": "colour", "verdict_top1": 0.5}]).to_csv(tmp_path / "summary.csv")
    with pytest.raises(SystemExit, match="not an audit under several conditions"):
        _script().audit_row(tmp_path)


def test_a_missing_manifest_gives_no_wall_time(tmp_path: Path) -> None:
    assert _script().wall_time(tmp_path) == "–"
