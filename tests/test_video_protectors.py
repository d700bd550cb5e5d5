"""Video protectors: the BDQ modules behave as the talk's formulas say, and register like plugins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from campro_bench.errors import CamproError
from campro_bench.registries import VIDEO_PROTECTORS
from campro_bench.video.protectors import (BDQ, blur_clips, build_video_protector, frame_difference,
                                           hard_quantise, soft_quantise)


def test_soft_quantiser_approaches_the_hard_one() -> None:
    centres = torch.arange(15) + 0.5
    d = torch.linspace(-3, 18, 2001)
    d = d[((d.unsqueeze(-1) - centres).abs() > 0.01).all(-1)]  # away from the steps themselves
    hard = hard_quantise(d, centres)
    errors = [float((soft_quantise(d, centres, f) - hard).abs().max()) for f in (1.0, 5.0, 50.0, 500.0, 5000.0)]
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-6 and errors[0] > 0.1
    assert float(hard.min()) == 0 and float(hard.max()) == 15


def test_blur_with_vanishing_sigma_is_the_identity() -> None:
    clips = torch.rand(2, 3, 4, 16, 16)
    out = blur_clips(clips, torch.tensor(1e-3), radius=3)
    torch.testing.assert_close(out, clips)
    assert not torch.allclose(blur_clips(clips, torch.tensor(2.0), radius=3), clips, atol=1e-2)


def test_difference_of_a_static_clip_is_zero() -> None:
    frame = torch.rand(1, 3, 1, 16, 16)
    static = frame.expand(1, 3, 6, 16, 16)
    assert frame_difference(static).abs().max() == 0
    bdq = BDQ().eval()
    assert bdq(static).abs().max() == 0  # no motion: every difference is below the first bin centre


def test_bdq_is_differentiable_in_its_parameters_when_training() -> None:
    clips = torch.rand(2, 3, 5, 16, 16)
    bdq = BDQ().train()
    bdq(clips).mean().backward()
    assert bdq.sigma.grad is not None and bdq.sigma.grad.abs() > 0
    assert bdq.centres.grad is not None and bdq.centres.grad.abs().sum() > 0
    assert bdq(clips).shape == (2, 3, 4, 16, 16)


def test_bdq_output_is_quantised_at_inference() -> None:
    out = BDQ(levels=16).eval()(torch.rand(1, 3, 5, 16, 16))
    levels = torch.unique(out * 15)
    torch.testing.assert_close(levels, levels.round())


def test_registry_and_specs(tmp_path: Path) -> None:
    assert {"raw", "lowres", "blur", "diff", "bdq"} <= set(VIDEO_PROTECTORS.names())
    assert build_video_protector("lowres:factor=4").factor == 4
    with pytest.raises(CamproError):
        build_video_protector("bdq:sigmaa=1")
    preset = BDQ(sigma=1.7).preset_dict()
    preset["centres"] = [c + 1 for c in preset["centres"]]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(preset))
    loaded = build_video_protector(f"bdq:preset={path}")
    assert abs(float(loaded.sigma.detach()) - 1.7) < 1e-6 and float(loaded.centres[0].detach()) == pytest.approx(1.5)
    path.write_text("{}")
    with pytest.raises(CamproError) as exc:
        build_video_protector(f"bdq:preset={path}")
    assert str(path) in str(exc.value)


def test_lowres_keeps_size_and_removes_detail() -> None:
    clips = torch.rand(1, 3, 2, 16, 16)
    out = build_video_protector("lowres:factor=4")(clips)
    assert out.shape == clips.shape and torch.unique(out[0, 0, 0]).numel() <= 16


def test_shipped_preset_is_the_one_its_manifest_records() -> None:
    from campro_bench.video.protectors import load_bdq_preset, presets_dir

    preset = load_bdq_preset("weizmann-adv")
    manifest = json.loads((presets_dir() / "weizmann-adv.manifest.json").read_text())
    assert manifest["trainer"] == "bdq" and manifest["outputs"]["encoder"] == preset
    encoder = build_video_protector("bdq:preset=weizmann-adv")
    assert encoder.levels == len(preset["centres"]) + 1 == 16
