"""Capture conditions: each transform does what docs/conditions.md says, on the side of the protector
it declares; parameters out of range and unknown names fail in one line; random ones are seeded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from kornia.color import linear_rgb_to_rgb, rgb_to_linear_rgb

from campro_bench.cli.main import main
from campro_bench.conditions import AFTER, BEFORE, Captured, build_condition
from campro_bench.errors import CamproError
from campro_bench.io.images import uint8_to_tensor
from campro_bench.protectors.base import build_protector
from campro_bench.registries import CONDITIONS


def faces(n: int = 4, size: int = 48, seed: int = 0) -> torch.Tensor:
    """8-bit-valued colour test images with edges and smooth parts."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, size // 8, size // 8, 3), dtype=np.uint8).repeat(8, 1).repeat(8, 2)
    return uint8_to_tensor(base)


def is_8bit(x: torch.Tensor) -> bool:
    return bool(torch.equal(x, (x * 255).round() / 255))


def test_builtins_are_registered_with_their_side() -> None:
    assert {"colour", "grey", "low-light", "jpeg", "distance"} <= set(CONDITIONS.names())
    sides = {name: build_condition(name).side for name in ("colour", "grey", "low-light", "jpeg", "distance")}
    assert sides == {"colour": BEFORE, "grey": BEFORE, "low-light": BEFORE, "jpeg": AFTER, "distance": BEFORE}


def test_grey_of_a_grey_image_is_a_no_op_and_of_a_colour_image_is_its_luma() -> None:
    grey = build_condition("grey")
    colour = faces()
    once = grey(colour)
    assert torch.equal(once[:, 0], once[:, 1]) and torch.equal(once[:, 1], once[:, 2])
    luma = 0.299 * colour[:, 0] + 0.587 * colour[:, 1] + 0.114 * colour[:, 2]
    assert torch.allclose(once[:, 0], luma, atol=0.5 / 255 + 1e-6) and is_8bit(once)
    assert torch.equal(grey(once), once)  # already grey: unchanged, bit for bit
    assert not torch.equal(once, colour)


def test_low_light_with_gain_0_is_a_pure_exposure_change() -> None:
    x = faces()
    dark = build_condition("low-light:exposure=0.3,gain=0")(x)
    expected = linear_rgb_to_rgb(rgb_to_linear_rgb(x) * 0.3)
    assert torch.equal(dark, (expected * 255).round() / 255)
    assert dark.mean() < x.mean()


def test_low_light_noise_is_seeded_per_image_and_has_the_stated_level() -> None:
    x = faces(6)
    cond = build_condition("low-light:exposure=0.5,gain=0.01,read_noise=2")
    a, b = cond(x), cond(x)
    assert torch.equal(a, b)  # same seed, same output
    assert torch.equal(cond(x[2:3]), a[2:3])  # an image's noise does not depend on its batch
    other = build_condition("low-light:exposure=0.5,gain=0.01,read_noise=2,seed=1")(x)
    assert not torch.equal(a, other)
    clean = build_condition("low-light:exposure=0.5,gain=0")(x)
    # Poisson-Gaussian in linear light: variance = gain * signal + (gain * read)^2
    flat = torch.full((1, 3, 64, 64), 0.5)
    noisy = rgb_to_linear_rgb(build_condition("low-light:exposure=0.5,gain=0.01,read_noise=2")(flat))
    signal = float(rgb_to_linear_rgb(flat).mean()) * 0.5
    assert abs(float(noisy.mean()) - signal) < 0.01
    assert float(noisy.var()) == pytest.approx(0.01 * signal + (0.01 * 2) ** 2, rel=0.25)
    assert (a - clean).abs().mean() > 0.01 and is_8bit(a)


def test_jpeg_acts_after_the_protector() -> None:
    x = faces()
    captured = build_protector("invert@jpeg:quality=30")
    assert isinstance(captured, Captured)
    jpeg = build_condition("jpeg:quality=30")
    assert torch.equal(captured(x), jpeg(1 - x))
    assert not torch.equal(captured(x), 1 - jpeg(x))
    assert (jpeg(x) - x).abs().mean() > (build_condition("jpeg:quality=95")(x) - x).abs().mean() > 0


def test_distance_keeps_the_size_and_loses_the_detail() -> None:
    x = torch.zeros(1, 3, 64, 64)
    x[..., ::2, :] = 1.0  # one-pixel stripes
    far = build_condition("distance:scale=0.25")(x)
    assert far.shape == x.shape and is_8bit(far)
    assert float(far.std()) < 0.01  # the stripes are gone
    assert torch.equal(build_condition("distance:scale=1")(x), x)
    # before the protector: the protector sees the distant face
    assert torch.equal(build_protector("invert@distance:scale=0.25")(x), 1 - far)


def test_colour_is_the_bare_protector_so_caches_are_unchanged() -> None:
    for spec in ("raw", "lowres:factor=16", "defocus:kernel=25,sigma=7"):
        bare, same = build_protector(spec), build_protector(f"{spec}@colour")
        assert type(same) is type(bare) and same.fingerprint() == bare.fingerprint()


def test_captured_specs_round_trip_and_fingerprint_the_condition() -> None:
    spec = "defocus:kernel=25,sigma=7@low-light:exposure=0.1,gain=0.01"
    p = build_protector(spec)
    again = build_protector(p.spec())
    assert again.fingerprint() == p.fingerprint()
    x = faces(2)
    assert torch.equal(again(x), p(x))
    assert p.fingerprint() != build_protector("defocus:kernel=25,sigma=7@low-light:exposure=0.1,gain=0.02").fingerprint()
    chained = build_protector("raw@grey@jpeg:quality=50")  # a grey camera streaming JPEG
    assert torch.equal(chained(x), build_condition("jpeg:quality=50")(build_condition("grey")(x)))


@pytest.mark.parametrize("spec, message", [
    ("fog", "unknown capture condition 'fog'; known capture conditions: colour, distance, grey, jpeg, low-light"),
    ("jpeg:quality=0", "option quality=0 in 'jpeg:quality=0' is out of range; allowed: [1, 100]"),
    ("jpeg:quality=high", "has the wrong type"),
    ("distance:scale=2", "option scale=2 in 'distance:scale=2' is out of range; allowed: [0.05, 1]"),
    ("distance:scale=nan", "option scale=nan in 'distance:scale=nan' must be a finite number; allowed: [0.05, 1]"),
    ("low-light:exposure=0", "option exposure=0 in 'low-light:exposure=0' is out of range; allowed: (0, 1]"),
    ("low-light:gain=inf", "option gain=inf in 'low-light:gain=inf' must be a finite number; allowed: [0, 1]"),
    ("low-light:read_noise=-1", "option read_noise=-1 in 'low-light:read_noise=-1' is out of range; allowed: [0, 100]"),
    ("grey:strength=1", "capture condition 'grey' has no option 'strength'"),
])
def test_bad_conditions_fail_in_one_line(spec: str, message: str) -> None:
    with pytest.raises(CamproError) as info:
        build_condition(spec)
    assert message in str(info.value) and len(str(info.value).splitlines()) == 1
    with pytest.raises(CamproError, match="capture condition"):
        build_protector(f"raw@{spec}")


def test_cli_protect_under_a_condition_and_its_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray((faces(1)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(src / "a.png")
    assert main(["protect", "invert@grey", str(src), str(tmp_path / "out")]) == 0
    out = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    capsys.readouterr()
    assert main(["protect", "invert@distance:scale=0", str(src), str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "option scale=0 in 'distance:scale=0' is out of range; allowed: [0.05, 1]" in err and len(err.splitlines()) == 1
    assert main(["list", "conditions"]) == 0
    assert "low-light" in capsys.readouterr().out


def test_a_captured_protector_rebuilds_from_its_config() -> None:
    p = build_protector("defocus:kernel=25,sigma=7@grey")
    again = build_protector(p.config())  # what saved protector files (restoration attacks) hold
    assert isinstance(again, Captured) and again.fingerprint() == p.fingerprint()
    x = faces(2)
    assert torch.equal(again(x), p(x))


def test_e5_attacks_a_protector_under_a_condition(tmp_path: Path) -> None:
    """E5's ``protector`` takes PROTECTOR@CONDITION; its restoration column saves and rebuilds it."""
    from campro_bench.attacks.base import save_protector_config
    from campro_bench.experiments.whitebox import E5Config, attacked_protector

    cfg = E5Config.from_spec({"protector": "lowres:factor=8@grey"})
    attacked = attacked_protector(cfg)
    assert isinstance(attacked, Captured) and attacked.spec() == "lowres:factor=8@grey"
    saved = build_protector(json.loads(save_protector_config(attacked, tmp_path).read_text()))
    assert saved.fingerprint() == attacked.fingerprint()
