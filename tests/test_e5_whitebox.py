"""E5 (Table VII): ArcFace margin, the re-training loop, the identity split and an end-to-end run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from campro_bench.errors import CamproError, UnknownNameError
from campro_bench.privacy.classifiers import build_classifier
from campro_bench.privacy.identification import FeatureSet, identify
from campro_bench.privacy.splits import sample_splits
from campro_bench.training.fr_retrain import (
    EXTRACTORS,
    ArcFaceHead,
    ExtractorContract,
    RetrainConfig,
    arcface_logits,
    build_extractor,
    embed,
    retrain,
)


# ArcFace ------------------------------------------------------------------------------------
def test_arcface_logits_on_known_cosines() -> None:
    cosine = torch.tensor([[0.5, 0.2, -0.1], [-0.95, 0.3, 0.0]])
    labels = torch.tensor([0, 0])
    logits = arcface_logits(cosine, labels, scale=64.0, margin=0.5)
    # row 0: target angle acos(0.5) + 0.5 -> cos = cos(1.5472)
    assert float(logits[0, 0]) == pytest.approx(64 * math.cos(math.acos(0.5) + 0.5), rel=1e-5)
    assert torch.allclose(logits[0, 1:], 64 * cosine[0, 1:])  # other classes: plain scaled cosine
    # row 1: theta = acos(-0.95) > pi - m, so the continuation cos - m sin(m) applies
    assert float(logits[1, 0]) == pytest.approx(64 * (-0.95 - 0.5 * math.sin(0.5)), rel=1e-5)
    assert torch.allclose(logits[1, 1:], 64 * cosine[1, 1:])
    # a margin of zero is plain scaled cosine, and the margin always lowers the target logit
    assert torch.allclose(arcface_logits(cosine, labels, 64.0, 0.0), 64 * cosine, atol=1e-5)
    grid = torch.linspace(-1, 1, 41)[:, None].repeat(1, 2)
    target = arcface_logits(grid, torch.zeros(41, dtype=torch.long), 1.0, 0.5)[:, 0]
    assert (target <= grid[:, 0] + 1e-6).all() and (target[1:] >= target[:-1] - 1e-6).all()  # monotone


def test_arcface_head_without_labels_gives_scaled_cosine() -> None:
    torch.manual_seed(0)
    head = ArcFaceHead(4, 3, scale=10.0, margin=0.3)
    emb = torch.randn(5, 4)
    plain = head(emb)
    assert plain.abs().max() <= 10.0 + 1e-5
    margin = head(emb, torch.zeros(5, dtype=torch.long))
    assert (margin[:, 0] < plain[:, 0]).all() and torch.allclose(margin[:, 1:], plain[:, 1:])


def test_schedule_decays_at_three_quarters() -> None:
    config = RetrainConfig(epochs=20, lr=0.1)
    assert config.decay_after == 15
    assert [config.lr_at(e) for e in (0, 14, 15, 19)] == pytest.approx([0.1, 0.1, 0.01, 0.01])
    assert RetrainConfig(epochs=4).decay_after == 3 and RetrainConfig(epochs=1).decay_after == 1
    assert RetrainConfig(epochs=4, decay_epoch=2).decay_after == 2
    with pytest.raises(UnknownNameError, match="softmax"):
        RetrainConfig(loss="cosface")
    with pytest.raises(CamproError, match="unknown re-training key .momentun. \\(did you mean .momentum.\\?\\)"):
        RetrainConfig.from_dict({"epochs": 1, "momentun": 0.9})


# re-training on separable toy data ------------------------------------------------------------
TOY = ExtractorContract(alignment="facenet-160", input_size=(16, 16), mean=0.5, std=0.5, embedding_size=16,
                        pretrained=False, architecture="toy CNN")


class ToyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture
def toy_extractor():
    EXTRACTORS.add("toy-test", lambda cache_dir: ToyNet(), origin="tests", contract=TOY)
    yield "toy-test"
    EXTRACTORS.remove("toy-test")


def stripes(classes: int, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class = stripe orientation and period; random phase and a random background colour, which
    dominates random features (so an untrained network identifies poorly)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:16, :16].astype(np.float32)
    images, labels = [], []
    for k in range(classes):
        angle, period = np.pi * (k % 4) / 4, 4 + 2 * (k // 4)
        for _ in range(per_class):
            wave = np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period + rng.uniform(0, 2 * np.pi))
            img = rng.uniform(0.2, 0.8, 3) + 0.15 * wave[..., None] + rng.normal(0, 0.03, (16, 16, 3))
            images.append((255 * np.clip(img, 0, 1)).astype(np.uint8))
            labels.append(k)
    return np.stack(images), np.array(labels, np.int64)


def identification_accuracy(extractor, crops: np.ndarray, labels: np.ndarray) -> float:
    feats = FeatureSet(embed(extractor, crops), np.ones(len(crops), bool))
    splits = sample_splits(labels, repeats=5, seed=0)
    return float(identify(build_classifier("nearest"), feats, feats, splits).accuracies.mean())


@pytest.mark.parametrize(("loss", "gain"), [("softmax", 0.3), ("arcface", 0.1)])
def test_retraining_on_separable_toy_data_raises_identification_accuracy(toy_extractor: str, tmp_path: Path,
                                                                         loss: str, gain: float) -> None:
    train_x, train_y = stripes(8, 24, seed=1)
    test_x, test_y = stripes(8, 6, seed=2)  # new images of the same kind (the classes stand for identities)
    extractor = build_extractor(toy_extractor, tmp_path, seed=0)
    before = identification_accuracy(extractor, test_x, test_y)
    config = RetrainConfig(loss=loss, epochs=15, batch_size=16, lr=0.05, arcface_scale=16.0, arcface_margin=0.2)
    result = retrain(extractor, train_x, train_y, config)
    after = identification_accuracy(extractor, test_x, test_y)
    assert not result.diverged and len(result.history) == 15
    assert result.history[-1]["train_loss"] < 0.8 * result.history[0]["train_loss"]
    assert result.history[-1]["lr"] == pytest.approx(0.005)  # decayed after epoch 11 (floor of 0.75 * 15)
    assert after >= before + gain, (before, after)


def test_retraining_is_deterministic_and_flags_divergence(toy_extractor: str, tmp_path: Path) -> None:
    x, y = stripes(4, 8, seed=3)
    runs = []
    for _ in range(2):
        extractor = build_extractor(toy_extractor, tmp_path, seed=5)
        retrain(extractor, x, y, RetrainConfig(epochs=2, batch_size=8, lr=0.05, seed=5))
        runs.append(embed(extractor, x))
    assert np.array_equal(runs[0], runs[1])
    extractor = build_extractor(toy_extractor, tmp_path, seed=5)
    result = retrain(extractor, x, y, RetrainConfig(epochs=3, batch_size=8, lr=1000.0, seed=5))
    assert result.diverged and result.history[-1].get("diverged") == 1.0
    assert np.isfinite(embed(extractor, x)).all()  # non-finite rows are zeroed
    with pytest.raises(CamproError, match="takes"):
        retrain(extractor, np.zeros((8, 20, 20, 3), np.uint8), y[:8], RetrainConfig(epochs=1, batch_size=4))


# the experiment ------------------------------------------------------------------------------
def test_e5_config_rejects_bad_columns() -> None:
    from campro_bench.experiments.e5 import E5Config

    with pytest.raises(CamproError, match="need label"):
        E5Config.from_spec({"retrain": {"columns": [{"label": "x", "loss": "softmax"}]}})
    with pytest.raises(UnknownNameError, match="re-trainable face extractor"):
        E5Config.from_spec({"retrain": {"columns": [{"label": "x", "extractor": "nope", "loss": "softmax"}]}})
    with pytest.raises(CamproError, match="restoration.data"):
        E5Config.from_spec({"restoration": {"data": "videos"}})


@pytest.mark.realdata
def test_e5_runs_end_to_end_at_tiny_scale(toy_extractor: str, tmp_path: Path, data_root: Path, cache_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Real path: celeba-subset crops, the E1 protocol with facenet-casia, a restoration U-Net.
    Only the re-trained network is a toy (a 160x160 input is pooled by the toy CNN)."""
    from campro_bench.experiments.runner import run_experiment

    monkeypatch.setitem(EXTRACTORS.entry(toy_extractor).metadata, "contract",
                        ExtractorContract(**{**TOY.__dict__, "input_size": (160, 160)}))
    overrides = [
        "isp=standard", "eval_identities=5", "max_train_identities=4", "repeats=3",
        "retrain.epochs=2", "retrain.batch_size=8", "retrain.eval_every_epoch=true",
        f'retrain.columns=[{{label="Toy-Softmax", extractor="{toy_extractor}", loss="softmax", lr=0.01}}]',
        "restoration.steps=1", "restoration.base_channels=4", "restoration.depth=2", "restoration.batch_size=8",
        'restoration.models=["facenet-casia"]',
    ]
    out, result = run_experiment("e5", overrides=overrides, out=tmp_path / "e5", cache_dir=str(cache_dir),
                                 device="cpu", quiet=True, compare="paper")
    long = result.tables["e5"]
    assert set(long["attack"]) == {"Toy-Softmax", "Restoration", "Raw", "Captured", "Captured, re-enrolled",
                                   "Restoration, restored gallery"}
    assert ((long["accuracy_mean"] >= 0) & (long["accuracy_mean"] <= 1)).all()
    assert (long["identities"] == 5).all() and np.allclose(long["chance"], 0.2)
    raw = long[(long["attack"] == "Raw")]["accuracy_mean"].item()
    assert raw >= 0.6  # facenet identifies raw celeba faces of 5 identities far above chance
    wide = result.tables["table7"]
    assert list(wide.columns[:3]) == ["model", "Toy-Softmax", "Restoration"]
    assert wide.loc[wide["model"] == "facenet-casia", "Toy-Softmax"].item() != "—"
    epochs = result.tables["e5_epochs"]
    assert list(epochs["epoch"]) == [1, 2] and "eval_accuracy_diagnostic" in epochs
    assert "table7_paper" in result.tables and (out / "e5_epochs.png").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    split = manifest["data"]["identity_split"]
    assert split["train_identities"] == 4 and 10 <= split["eval_images"] <= 50  # 5 identities, 2..10 images each
    assert manifest["seeds"]["splits"] == [0, 1, 2] and manifest["seeds"]["train_seeds"] == [0]
    # a second run reuses the cached re-training and restoration outcome
    _, again = run_experiment("e5", overrides=overrides, out=tmp_path / "e5b", cache_dir=str(cache_dir),
                              device="cpu", quiet=True)
    assert np.allclose(again.tables["e5"]["accuracy_mean"], long["accuracy_mean"])


def test_shipped_e5_protocol_parses() -> None:
    from campro_bench.experiments.e5 import E5Config
    from campro_bench.experiments.spec import load_spec

    cfg = E5Config.from_spec(load_spec("e5"))
    assert [c.label for c in cfg.columns] == ["Finetune-Softmax", "Finetune-ArcFace", "Scratch-Softmax", "Scratch-ArcFace"]
    assert {c.extractor for c in cfg.columns} == {"facenet-casia", "inception-resnet-v1"}
    assert all(c.config.weight_decay == 5e-4 and c.config.decay_factor == 0.1 for c in cfg.columns)
    assert all(c.config.arcface_scale == 64 and c.config.arcface_margin == 0.5 for c in cfg.columns)
    assert cfg.restoration.models == ["facenet-casia", "dlib-resnet", "sface", "facenet-msceleb", "mobilefacenet",
                                      "mobilefacenet-fp"] and cfg.restoration.data == "faces"
