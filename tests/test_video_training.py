"""BDQ training: seeded, resumable to the same result, every loss logged; attacks run end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from campro_bench.errors import CamproError
from campro_bench.video.attacks import AttackConfig, actor_attack
from campro_bench.video.training import BDQTrainConfig, train_bdq

from campro_bench.video.synthetic import write_kth_tree as _kth_tree


def _config(root: Path) -> BDQTrainConfig:
    return BDQTrainConfig(dataset=str(root), size=16, frames=4, stride=1, step=4, test_actors=1, iterations=4,
                          batch_size=4, width=2, checkpoint_every=2)


def test_training_is_seeded_and_resumable(tmp_path: Path) -> None:
    _kth_tree(tmp_path / "data", actors=3, frames=20)
    config = _config(tmp_path / "data")
    straight = train_bdq(config, tmp_path / "a", data_root=None)
    train_bdq(config, tmp_path / "b", data_root=None, stop_after=2)
    assert not (tmp_path / "b" / "bdq.json").exists()
    resumed = train_bdq(config, tmp_path / "b", data_root=None, resume=True)
    a = json.loads((tmp_path / "a" / "bdq.json").read_text())
    b = json.loads((tmp_path / "b" / "bdq.json").read_text())
    assert a == b and a["sigma"] != 1.0  # the encoder moved, identically with and without the interruption
    assert straight["outputs"]["encoder"] == resumed["outputs"]["encoder"]
    rows = list(csv.DictReader((tmp_path / "a" / "log.csv").open()))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    assert {"loss_encoder", "loss_action", "actor_entropy", "loss_actor"} <= set(rows[0])
    with pytest.raises(CamproError):
        train_bdq(config, tmp_path / "a", data_root=None)  # a finished run is not overwritten


def test_actor_attack_learns_a_separable_task() -> None:
    torch.manual_seed(0)
    y = torch.arange(2).repeat(16)
    x = torch.rand(32, 3, 4, 16, 16) * 0.2 + y.view(-1, 1, 1, 1, 1) * 0.8  # actor 1 is bright, actor 0 dark
    result = actor_attack(x, y, x, y, 2, AttackConfig(members=2, steps=30, batch_size=8, lr=1e-2, width=2), seed=0)
    assert result["single"] == 100.0 and result["ensemble"] == 100.0


def test_run_bdq_writes_tables_figure_and_manifest(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from campro_bench.cli.main import app

    _kth_tree(tmp_path / "data", actors=3, frames=20)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "run", "bdq", "--out", str(out), "--quiet", "--set", f"dataset={tmp_path / 'data'}", "--set", "size=16",
        "--set", "frames=4", "--set", "stride=1", "--set", "test_actors=1", "--set", "steps=2", "--set", "ensemble=2",
        "--set", "seeds=[0, 1]", "--set", "train_step=4", "--set", "test_step=4", "--set", "restore_steps=0",
        "--set", "restore_only=[]", "--set", 'protectors={raw="raw", bdq="bdq:sigma=2"}'])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "bdq.csv").open()))
    assert [r["protector"] for r in rows] == ["raw", "bdq"]
    assert float(rows[0]["actor_chance"]) == pytest.approx(100 / 3, abs=0.01) and float(rows[0]["action_chance"]) == 50
    assert (out / "bdq_tradeoff.png").stat().st_size > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seeds"]["seeds"] == [0, 1] and set(manifest["notes"]["action_splits"]) == {"0", "1"}
    seeds = list(csv.DictReader((out / "bdq_seeds.csv").open()))
    assert len(seeds) == 4
    # a 0-step restorer is failed: counted, its accuracies empty, and the strongest attacker is another one
    assert [r["restore_failed"] for r in rows] == ["2", "2"] and rows[0]["actor_acc_restored_raw_mean"] == ""
    assert all(r["actor_acc_restored_retrained"] == "" for r in seeds)
    assert all(float(r["actor_acc"]) == max(float(r["actor_acc_single"]), float(r["actor_acc_ensemble"]))
               for r in seeds)
