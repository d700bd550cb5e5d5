"""The shipped CamPro presets are outputs of this repository's training code, with their manifests."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import torch

from campro_bench.protectors import build_protector
from campro_bench.protectors.isp import ISPParams, list_presets

PRESETS = Path(str(resources.files("campro_bench") / "presets"))
TRAINED_ISP = ["casia-adv", "casia-protector-only", "casia-adv-w1", "casia-restore-w1", "casia-restore4-w1",
               "casia-restore16-w1", "casia-restore32-w1", "casia-restore16-w1-r3"]
ABLATION_PAIR = ["casia-adv", "casia-protector-only"]


def _training_config(name: str) -> dict:
    """The training configuration recorded in an ISP preset's manifest."""
    return json.loads((PRESETS / "isp" / f"{name}.manifest.json").read_text())["config"]


@pytest.mark.parametrize("name", TRAINED_ISP)
def test_trained_isp_preset_matches_its_training_manifest(name: str) -> None:
    assert name in list_presets()
    params = ISPParams.load(PRESETS / "isp" / f"{name}.json")
    manifest = json.loads((PRESETS / "isp" / f"{name}.manifest.json").read_text())
    assert manifest["trainer"] == "isp"
    assert manifest["outputs"]["isp_digest"] == params.digest()  # the file is the run's output, unedited
    config = manifest["config"]
    assert config["protector_only"] is (name == "casia-protector-only")
    assert config["attacker"] == params.metadata["attacker"] == "facenet-casia"
    assert params.metadata["iterations"] == config["iterations"] == manifest["metrics"]["iterations"]
    assert params.metadata["selection"] == "last iterate"
    assert all(0.0 <= v <= 1.0 for v in params.lut)
    assert all(abs(v) <= config["ccm_bound"] for row in params.ccm for v in row)


def test_the_ablation_pair_differs_only_in_the_attacker_step() -> None:
    configs = [_training_config(n) for n in ABLATION_PAIR]
    differing = {k for k in configs[0] if configs[0][k] != configs[1][k]}
    assert differing == {"protector_only"}


def test_omega_preset_differs_from_the_main_one_only_in_omega() -> None:
    configs = [_training_config(n) for n in ("casia-adv", "casia-adv-w1")]
    assert {k for k in configs[0] if configs[0][k] != configs[1][k]} == {"omega"}
    assert configs[1]["omega"] == 1.0


def test_restoration_preset_differs_from_the_omega_preset_only_in_the_restorer() -> None:
    old, new = [_training_config(n) for n in ("casia-adv-w1", "casia-restore-w1")]
    restorer_keys = {k for k in new if k.startswith("restor") or k == "lr_restorer"}
    assert new["restorer"] == "unet" and new["restoration_weight"] == 1.0
    assert {k for k in new if k not in restorer_keys and new[k] != old[k]} == set()
    assert set(new) - set(old) == restorer_keys  # the older manifest predates the restorer
    params = ISPParams.load(PRESETS / "isp" / "casia-restore-w1.json")
    assert params.metadata["restorer"] == "unet"


def test_stronger_restorer_preset_differs_only_in_its_restorer_schedule_and_length() -> None:
    one, four = [_training_config(n) for n in ("casia-restore-w1", "casia-restore4-w1")]
    assert {k for k in one if one[k] != four[k]} == {"restorer_steps", "restorer_warmup_steps", "iterations"}
    assert (four["restorer_steps"], four["restorer_warmup_steps"], four["iterations"]) == (4, 400, 200)


def test_sixteen_step_restorer_preset_differs_from_the_four_step_one_only_in_the_restorer_schedule() -> None:
    four, sixteen = [_training_config(n) for n in ("casia-restore4-w1", "casia-restore16-w1")]
    assert {k for k in four if four[k] != sixteen[k]} == {"restorer_steps", "restorer_warmup_steps"}
    assert (sixteen["restorer_steps"], sixteen["restorer_warmup_steps"], sixteen["iterations"]) == (16, 800, 200)


def test_thirty_two_step_restorer_preset_differs_from_the_sixteen_step_one_only_in_restorer_steps() -> None:
    sixteen, thirty_two = [_training_config(n) for n in ("casia-restore16-w1", "casia-restore32-w1")]
    assert {k for k in sixteen if sixteen[k] != thirty_two[k]} == {"restorer_steps"}
    assert (thirty_two["restorer_steps"], thirty_two["restorer_warmup_steps"]) == (32, 800)


def test_restoration_weight_preset_differs_from_the_sixteen_step_one_only_in_the_restoration_weight() -> None:
    weight_one, weight_three = [_training_config(n) for n in ("casia-restore16-w1", "casia-restore16-w1-r3")]
    assert {k for k in weight_one if weight_one[k] != weight_three[k]} == {"restoration_weight"}
    assert (weight_one["restoration_weight"], weight_three["restoration_weight"]) == (1.0, 3.0)


def test_trained_presets_protect_and_destroy_the_image_structure() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 48)
    for name in TRAINED_ISP:
        with torch.no_grad():
            y = build_protector(f"campro-isp:preset={name}")(x)
        assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
        assert float((y - x).abs().mean()) > 0.05  # a trained ISP is far from the identity


SHIPPED_ENHANCERS = ["casia-adv", "casia-restore4-w1", "casia-restore16-w1"]


@pytest.mark.parametrize("name", SHIPPED_ENHANCERS)
def test_enhancer_preset_pairs_with_its_isp(name: str) -> None:
    path = PRESETS / "enhancer" / f"{name}.pt"
    if not path.is_file():
        pytest.fail(f"{path} is not shipped")
    manifest = json.loads((PRESETS / "enhancer" / f"{name}.manifest.json").read_text())
    assert manifest["config"]["isp"] == name and manifest["config"]["face_penalty"]  # Eq. 8, as in the paper
    protector = build_protector(f"campro-enhanced:preset={name}")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y = protector(x)
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    isp_digest = ISPParams.load(PRESETS / "isp" / f"{name}.json").digest()
    assert isp_digest in json.dumps(manifest)


def test_every_shipped_enhancer_is_tested() -> None:
    assert sorted(p.stem for p in (PRESETS / "enhancer").glob("*.pt")) == sorted(SHIPPED_ENHANCERS)
