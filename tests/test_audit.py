"""The privacy audit (``campro-bench audit``): attacks, analytic inverses, split, bad input, sanity rungs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from campro_bench.attacks.base import Attacked, Restored, build_attack, inverses_for, quantize, save_protector_config
from campro_bench.attacks.cheap import CHANNEL_ORDERS, default_sweep
from campro_bench.attacks.inverses import build_inverses, lut_preimages
from campro_bench.cli.main import main
from campro_bench.enhancer.model import UNet, UNetConfig, save_enhancer
from campro_bench.errors import CamproError, UnknownNameError
from campro_bench.experiments.audit import (
    AuditConfig,
    AuditRetrainSection,
    IdentityLeakError,
    check_disjoint,
    check_protector,
    check_retrain,
    split_identities,
    verdict,
)
from campro_bench.protectors import Protector, build_protector
from campro_bench.registries import ATTACKS, PROTECTORS


def smooth_images(n: int, side: int = 48, seed: int = 0) -> np.ndarray:
    """Face-like smooth colour fields (uint8 N x H x W x 3): low-frequency, varied tones."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 6, 6, generator=g)
    fine = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False)
    return (fine.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


class ChannelPermutation(Protector):
    """A synthetic invertible protector: a fixed signed channel permutation (rgb -> brg, the new first
    channel inverted; a plain permutation barely moves sface's accuracy, so it would test nothing)."""

    name = "test-signed-permutation"
    differentiable = True

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        out = images[:, [2, 0, 1]].clone()
        out[:, 0] = 1.0 - out[:, 0]
        return out


class Shrinks(Protector):
    """Cannot run on faces: returns a smaller image."""

    name = "test-shrinks"

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        return images[..., ::2, ::2]


@pytest.fixture
def test_protectors():
    PROTECTORS.add("test-signed-permutation", ChannelPermutation, origin="tests")
    PROTECTORS.add("test-shrinks", Shrinks, origin="tests")
    yield
    PROTECTORS.remove("test-signed-permutation")
    PROTECTORS.remove("test-shrinks")


# attacks ---------------------------------------------------------------------------------------
def test_blind_attacks_keep_the_contract_and_do_what_they_say() -> None:
    x = as_tensor(smooth_images(2))
    for spec in default_sweep([0.5, 2.0]):
        out = build_attack(spec)(x)
        assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1, spec
    gray = build_attack("grayscale")(x)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    assert torch.allclose(build_attack("gamma:value=2")(x), x**2)
    assert len(CHANNEL_ORDERS) == 5 and torch.equal(build_attack("permute:order=gbr")(x), x[:, [1, 2, 0]])
    with pytest.raises(UnknownNameError, match="grayscale"):
        build_attack("sharpen")
    with pytest.raises(CamproError, match="analytic inverse"):
        build_attack("invert-inverse")
    with pytest.raises(CamproError, match="permutation"):
        build_attack("permute:order=rrg")


def test_inverse_registry_is_keyed_by_protector_name_and_open_to_plugins(test_protectors) -> None:
    assert inverses_for(build_protector("invert")) == ["invert-inverse"]
    assert inverses_for(build_protector("campro-isp:preset=casia-adv")) == ["campro-isp-inverse"]
    assert inverses_for(build_protector("test-signed-permutation")) == []

    def undo(protector: Protector, train_images: Any) -> Any:
        return build_attack("permute:order=gbr")  # undoes the permutation (not the inversion)

    ATTACKS.add("test-signed-permutation-inverse", undo, kind="inverse", protector="test-signed-permutation")
    try:
        prot = build_protector("test-signed-permutation")
        (inverse,) = build_inverses(prot, None)
        x = as_tensor(smooth_images(2))
        restored = Attacked(prot, inverse, "inv")(x)
        assert torch.allclose(restored[:, :2], x[:, :2], atol=1 / 255)
        assert torch.allclose(restored[:, 2], 1 - x[:, 2], atol=1 / 255)
    finally:
        ATTACKS.remove("test-signed-permutation-inverse")


def detailed_images(n: int, seed: int) -> np.ndarray:
    """Images with detail a blur removes (bilinear upsampling of 16 x 16 noise)."""
    coarse = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    fine = torch.nn.functional.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False)
    return (fine.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def test_simple_inverses_undo_their_protector() -> None:
    train, x = detailed_images(6, seed=1), as_tensor(detailed_images(4, seed=2))
    for spec, tolerance in (("invert", 1e-6), ("defocus:kernel=9,sigma=3", None)):
        protector = build_protector(spec)
        (inverse,) = build_inverses(protector, train)  # the Wiener NSR is chosen on other images
        protected = quantize(protector(x))
        before = float((protected - x).abs().mean())
        after = float((Attacked(protector, inverse, "inv")(x) - x).abs().mean())
        if tolerance is not None:
            assert after <= tolerance
        else:
            assert after < 0.7 * before, (spec, before, after)


def test_lowres_inverse_is_bicubic_upsampling_of_the_sensor_grid() -> None:
    x = as_tensor(smooth_images(3, side=64))
    protector = build_protector("lowres:factor=4")
    (inverse,) = build_inverses(protector, None)
    small = torch.nn.functional.interpolate(x, size=(16, 16), mode="area")
    expected = torch.nn.functional.interpolate(small, size=(64, 64), mode="bicubic", align_corners=False).clamp(0, 1)
    # area of the bilinear upsampling is a slightly blurred sensor grid: close, not exact
    assert float((Attacked(protector, inverse, "inv")(x) - expected).abs().mean()) < 0.025


def test_lut_preimages_map_back_to_their_level() -> None:
    lut = np.array(build_protector("campro-isp:preset=casia-adv").to_params().lut)
    knots = np.linspace(0, 1, len(lut))
    pre = lut_preimages(lut)
    assert max(len(p) for p in pre) > 1  # the preset's LUT folds: several branches
    for level in range(0, 256, 5):
        produced = np.interp(pre[level], knots, lut)
        assert np.all(np.abs(produced - level / 255) <= 0.5 / 255 + 1e-9) or len(pre[level]) == 1


@pytest.mark.parametrize(("preset", "ratio"), [("standard", 0.1), ("casia-adv", 0.6)])
def test_isp_inverse_fitted_on_train_images_restores_other_images(preset: str, ratio: float) -> None:
    protector = build_protector(f"campro-isp:preset={preset}")
    train, test = smooth_images(24, seed=1), as_tensor(smooth_images(8, seed=2))  # disjoint images
    (inverse,) = build_inverses(protector, train)
    with torch.no_grad():
        before = float((quantize(protector(test)) - test).abs().mean())
        after = float((Attacked(protector, inverse, "inv")(test) - test).abs().mean())
    assert after < ratio * before, (before, after)


def test_attacked_and_restored_fingerprints_follow_both_parts(tmp_path: Path) -> None:
    prot = build_protector("invert")
    a = Attacked(prot, build_attack("gamma:value=0.5"), "g")
    assert a.fingerprint() != Attacked(prot, build_attack("gamma:value=2"), "g").fingerprint()
    assert a.fingerprint() != Attacked(build_protector("raw"), build_attack("gamma:value=0.5"), "g").fingerprint()
    torch.manual_seed(0)
    weights = tmp_path / "unet.pt"
    save_enhancer(UNet(UNetConfig(4, 2)), weights)
    base = save_protector_config(prot, tmp_path)
    restored = build_protector(f"restored:base={base},weights={weights}")
    assert isinstance(restored, Restored) and restored(as_tensor(smooth_images(1))).shape == (1, 3, 48, 48)
    assert build_protector(restored.spec()).fingerprint() == restored.fingerprint()
    with pytest.raises(CamproError, match="does not exist"):
        build_protector(f"restored:base={tmp_path / 'nope.json'},weights={weights}")


# split, checks, verdict ---------------------------------------------------------------------------
def test_split_is_identity_disjoint_and_a_leak_is_refused() -> None:
    index = [(f"{name}/{k}", name) for name in (f"id{i:02d}" for i in range(12)) for k in range(3 + len(name) % 2)]
    cfg = AuditConfig(protectors=["invert"], eval_identities=4, train_identities=5, max_images_per_identity=2)
    split = split_identities(cfg, index)
    assert split.eval_names == ["id00", "id01", "id02", "id03"] and len(split.train_names) == 5
    assert not set(split.eval_names) & set(split.train_names)
    assert all(sum(i.startswith(n + "/") for i in split.eval_ids) == 2 for n in split.eval_names)
    with pytest.raises(IdentityLeakError, match="disjoint"):
        check_disjoint(index, split.eval_ids, split.train_ids + [split.eval_ids[0]])


def test_bad_protectors_and_rungs_fail_with_one_clear_error(test_protectors) -> None:
    with pytest.raises(UnknownNameError, match="known protectors: .*invert"):
        check_protector("no-such-protector")
    with pytest.raises(CamproError, match="cannot run on face crops"):
        check_protector("test-shrinks")
    assert isinstance(check_protector("test-signed-permutation"), ChannelPermutation)
    with pytest.raises(CamproError, match="differentiable face extractor"):
        check_retrain(AuditConfig(protectors=["invert"], retrain=AuditRetrainSection(extractor="")))
    with pytest.raises(CamproError, match="'dlib-resnet' is not one"):
        check_retrain(AuditConfig(protectors=["invert"], retrain=AuditRetrainSection(extractor="dlib-resnet")))
    check_retrain(AuditConfig(protectors=["invert"], rungs=["cheap"], retrain=AuditRetrainSection()))  # rung off: nothing needed
    with pytest.raises(UnknownNameError, match="known rungs"):
        AuditConfig.from_spec({"protectors": ["invert"], "rungs": ["psychic"]})
    with pytest.raises(CamproError, match="unknown audit protocol key"):
        AuditConfig.from_spec({"protectors": ["invert"], "eval_identites": 3})
    with pytest.raises(CamproError, match="not among the audit's models"):
        AuditConfig.from_spec({"protectors": ["invert"], "models": ["sface"], "cheap": {"models": ["dlib-resnet"]}})


@pytest.mark.parametrize("args", [["no-such-protector"], ["test-shrinks"],
                                  ["invert", "--set", "retrain.extractor=dlib-resnet"]])
def test_cli_bad_input_is_one_error_line_and_writes_nothing(test_protectors, tmp_path: Path, capsys, args) -> None:
    out = tmp_path / "run"
    assert main(["audit", *args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]


def test_verdict_is_the_highest_row_with_its_rung() -> None:
    def row(rung: str, acc: float) -> dict[str, Any]:
        return {"protector": "p", "rung": rung, "attack": rung, "model": "m", "classifier": "nearest", "gallery": "raw",
                "accuracy_mean": acc, "ci_low": acc - 0.1, "ci_high": acc + 0.1, "chance": 0.1, "x_chance": acc / 0.1}

    long = pd.DataFrame([row("reference", 0.9), row("black-box", 0.1), row("cheap", 0.5), row("restoration", 0.3)])
    v = verdict(long).iloc[0]
    assert (v["rung"], v["worst_case_top1"], v["raw_best"], v["black_box_best"]) == ("cheap", 0.5, 0.9, 0.1)


def test_list_shows_the_attacks(capsys) -> None:
    assert main(["list", "attacks"]) == 0
    out = capsys.readouterr().out
    assert "campro_bench.attacks" in out and "campro-isp-inverse" in out and "clahe" in out


# sanity rungs on small real data -----------------------------------------------------------------
SMALL = ["--set", "eval_identities=10", "--set", "train_identities=12", "--set", "max_images_per_identity=3",
         "--set", "repeats=3", "--set", 'models=["sface"]', "--set", 'classifiers=["nearest"]',
         "--set", "utility.psnr_images=0", "--set", "grid_faces=2", "--quiet"]


@pytest.mark.realdata
@pytest.mark.slow
def test_invert_sanity_rung_recovers_raw_accuracy(data_root: Path, cache_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "audit"
    assert main(["audit", "invert", *SMALL, "--set", 'rungs=["black-box","cheap"]', "--set",
                 'cheap.attacks=["grayscale"]', "--out", str(out)]) == 0
    long = pd.read_csv(out / "audit.csv")
    raw = long[long["rung"] == "reference"]["accuracy_mean"].iloc[0]
    inverse = long[long["attack"] == "invert-inverse"]["accuracy_mean"].iloc[0]
    assert raw > 0.5 and inverse >= 0.95 * raw
    summary = pd.read_csv(out / "summary.csv")
    assert summary["rung"].iloc[0] == "cheap" and summary["worst_case_top1"].iloc[0] == inverse
    for name in ("summary.md", "report-invert.md", "accuracy-invert.png", "plane.png", "manifest.json"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["identity_split"]["disjoint"] is True


@pytest.mark.realdata
@pytest.mark.slow
def test_restoration_rung_breaks_a_synthetic_invertible_protector(test_protectors, data_root: Path, cache_dir: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "audit"
    assert main(["audit", "test-signed-permutation", *SMALL, "--set", 'rungs=["black-box","restoration"]',
                 "--set", "restoration.steps=40", "--set", "restoration.budgets=[1]", "--set", "restoration.batch_size=8",
                 "--set", "restoration.lr=3e-3",
                 "--set", "restoration.depth=2", "--set", "restoration.base_channels=8", "--set", "grid_faces=0",
                 "--out", str(out)]) == 0
    long = pd.read_csv(out / "audit.csv")
    raw = long[long["rung"] == "reference"]["accuracy_mean"].iloc[0]
    blind = long[long["rung"] == "black-box"]["accuracy_mean"].iloc[0]
    restored = long[(long["rung"] == "restoration") & (long["gallery"] == "raw")]["accuracy_mean"].iloc[0]
    assert blind < 0.7 * raw, (raw, blind)  # the protector does protect against the black-box attacker
    assert restored >= 0.85 * raw, (raw, blind, restored)  # ... and restoration undoes it
    budget = json.loads((out / "manifest.json").read_text())["notes"]["audit"]["test-signed-permutation"]["restoration"]["budget"]
    assert budget["steps_asked"] == 40 and budget["steps"] % (budget["crops"] // 8) == 0  # whole passes
    words = "asked" if budget["steps"] == 40 else f"40 AdamW steps asked, {budget['steps']} trained"
    assert "Restoration U-Net: " in (out / "summary.md").read_text() and words in (out / "summary.md").read_text()
    leak = pd.read_csv(out / "leakage.csv").set_index("faces")  # identity leakage: the restored faces are closer
    assert leak.loc["restored", "cosine_mean"] > leak.loc["protected", "cosine_mean"] + 0.2, leak
    assert leak["note"].str.contains("needs >= 10,000 impostor scores").all()  # 10 x 9 x 3 pairs cannot measure 1e-3


@pytest.mark.realdata
@pytest.mark.slow
def test_e5_restoration_accepts_any_protector_spec(data_root: Path, cache_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "e5"
    assert main(["run", "e5", "--out", str(out), "--quiet", "--set", "protector=lowres:factor=8",
                 "--set", "eval_identities=5", "--set", "max_train_identities=4", "--set", "repeats=2",
                 "--set", "retrain.columns=[]", "--set", 'restoration.models=["sface"]',
                 "--set", "restoration.steps=1", "--set", "restoration.batch_size=8"]) == 0
    table = pd.read_csv(out / "e5.csv")
    assert {"Raw", "Captured", "Restoration"} <= set(table["attack"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["isp"]["spec"] == "lowres:factor=8"
    assert any(k.split("|")[2].startswith("restored:") for k in manifest["notes"]["embeddings"])


def test_lensless_inverse_deconvolves_with_the_known_mask() -> None:
    """The registered inverse of a coded-mask capture brings it closer to the scene than the capture
    itself (the weight is chosen on other images), and a plugin-free lookup finds it by name."""
    train, x = smooth_images(4, side=63), as_tensor(smooth_images(3, side=63))
    protector = build_protector("lensless:mask=random,noise=0")
    inverse = next(a for a in build_inverses(protector, train) if a.name == "lensless-inverse")
    assert inverse.name == "lensless-inverse" and inverse.selection["rule"].startswith("lowest L1")
    with torch.no_grad():
        before = float((quantize(protector(x)) - x).abs().mean())
        after = float((Attacked(protector, inverse, "inv")(x) - x).abs().mean())
    assert after < 0.8 * before, (before, after)
