"""scripts/audit_training_history.py prints each re-training budget's own history from audit manifests."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("audit_training_history", ROOT / "scripts/audit_training_history.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _manifest(retrain: dict) -> dict:
    return {"spec": {"retrain": {"budgets": [1.0, 2.0]}},
            "data": {"identity_split": {"train_images": 90, "train_identities": 30}},
            "notes": {"audit": {"invert@grey": {"retrain": {"config": {"batch_size": 32}, **retrain}}}}}


def test_every_budget_s_history_is_a_row_with_its_steps_and_status() -> None:
    history = [{"epoch": 1, "lr": 0.01, "train_loss": 3.5, "train_accuracy": 0.05},
               {"epoch": 2, "lr": 0.001, "train_loss": 3.6, "train_accuracy": 0.0}]
    rows = _script().history_rows(_manifest({"budgets": {"1x": {"status": "ok", "history": history[:1]},
                                                         "2x": {"status": "failed", "history": history}}}))
    assert [r[:5] for r in rows] == [["`invert`", "grey", "1x", "ok", "2"], ["`invert`", "grey", "2x", "failed", "4"]]
    assert rows[1][5:] == ["0.01, 0.001", "3.50, 3.60", "5, 0"]


def test_a_manifest_with_only_the_last_budget_says_so(tmp_path: Path, capsys) -> None:
    history = [{"epoch": 1, "lr": 0.01, "train_loss": 3.4, "train_accuracy": 0.1}]
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest({"status": "ok", "history": history})))
    assert _script().main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ln(30) = 3.40" in out and "| `invert` | grey | 2x (only the last budget recorded) | ok | 2 |" in out
    assert _script().main([str(tmp_path / "missing")]) == 2
