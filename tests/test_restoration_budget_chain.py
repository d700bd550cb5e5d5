"""A longer restoration budget continues the cached shorter run, with the weights of a run from scratch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from campro_bench.io.sealed import sidecar
from campro_bench.protectors.baselines import Invert
from campro_bench.training.restoration import restoration_network
from campro_bench.training.unet import TrainingImages, UNetTrainConfig


def tiny(epochs: int) -> UNetTrainConfig:
    return UNetTrainConfig(epochs=epochs, batch_size=2, crop=16, base_channels=2, depth=2, face_penalty=False,
                           face_crop_fraction=0.0, lr=1e-2, seed=5)


def data() -> TrainingImages:
    rng = np.random.default_rng(0)
    return TrainingImages([rng.integers(0, 255, (24, 24, 3), dtype=np.uint8) for _ in range(6)])


def weights_of(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (its metadata left out)."""
    state = torch.load(path, weights_only=True)
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    for nested in (v for v in state.values() if isinstance(v, dict)):
        tensors.update({k: v for k, v in nested.items() if isinstance(v, torch.Tensor)})
    assert tensors, f"no tensors in {path}"
    return tensors


def test_longer_budget_continues_the_shorter_run_with_identical_weights(tmp_path: Path) -> None:
    key = {"kind": "test"}
    short, report = restoration_network(data(), Invert(), tiny(2), tmp_path / "chain", key)
    assert report["resumed_from"] is None and short.with_suffix(".state.pt").is_file()
    chained, report = restoration_network(data(), Invert(), tiny(5), tmp_path / "chain", key, shorter_epochs=[2, 9])
    assert report["resumed_from"]["epochs"] == 2 and [h["epoch"] for h in report["history"]] == [1, 2, 3, 4, 5]
    scratch, alone = restoration_network(data(), Invert(), tiny(5), tmp_path / "scratch", key, shorter_epochs=[2])
    assert alone["resumed_from"] is None  # nothing cached to continue: trained from scratch
    assert report["weights_digest"] == alone["weights_digest"]
    assert [h["loss"] for h in report["history"]] == [h["loss"] for h in alone["history"]]
    a, b = weights_of(chained), weights_of(scratch)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_unsealed_shorter_state_is_not_continued(tmp_path: Path) -> None:
    key = {"kind": "test"}
    short, _ = restoration_network(data(), Invert(), tiny(1), tmp_path, key)
    sidecar(short.with_suffix(".state.pt")).unlink()  # e.g. left by an interrupted run
    _, report = restoration_network(data(), Invert(), tiny(3), tmp_path, key, shorter_epochs=[1])
    assert report["resumed_from"] is None
