"""Mask estimation from leaked (scene, capture) pairs recovers a lensless camera's PSF."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from campro_bench.attacks.base import Attacked, quantize
from campro_bench.attacks.inverses import build_inverses
from campro_bench.attacks.mask_estimation import estimate_psf, mask_error
from campro_bench.errors import CamproError
from campro_bench.protectors import build_protector


def scenes(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((n, 3, 63, 63))).float()


def test_a_known_random_mask_is_recovered_from_enough_pairs() -> None:
    camera = build_protector("lensless:mask=random,mask_size=16,image_size=63,noise=0,seed=3")
    x = scenes(4)
    estimate = estimate_psf(camera.scene(x), camera.capture(x), 16)
    assert mask_error(estimate, camera.mask) < 0.05  # 8-bit rounding is the only error
    wrong = build_protector("lensless:mask=random,mask_size=16,image_size=63,noise=0,seed=4").mask
    assert mask_error(wrong, camera.mask) > 0.5  # ... and another random mask is far from it


def test_more_pairs_estimate_a_noisy_camera_better() -> None:
    camera = build_protector("lensless:mask=random,mask_size=16,image_size=63,noise=0.05,seed=3")
    x = scenes(16, seed=1)
    errors = [mask_error(estimate_psf(camera.scene(x[:n]), camera.capture(x[:n]), 16), camera.mask) for n in (1, 16)]
    assert errors[1] < 0.6 * errors[0], errors


def test_the_registered_attack_deconvolves_without_knowing_the_mask() -> None:
    camera = build_protector("lensless:mask=random,mask_size=16,image_size=63,noise=0")
    train = (np.random.default_rng(0).random((8, 63, 63, 3)) * 255).astype(np.uint8)
    attacks = {a.name: a for a in build_inverses(camera, train)}
    assert {"lensless-inverse", "lensless-mask-estimate"} <= set(attacks)
    x = torch.nn.functional.avg_pool2d(scenes(2, seed=5), 3, 1, 1)
    with torch.no_grad():
        before = float((quantize(camera(x)) - x).abs().mean())
        after = float((Attacked(camera, attacks["lensless-mask-estimate"], "est")(x) - x).abs().mean())
    assert after < 0.8 * before, (before, after)


def test_bad_pairs_fail_in_one_line() -> None:
    with pytest.raises(CamproError, match="one shape"):
        estimate_psf(scenes(2), scenes(3), 8)
    with pytest.raises(CamproError, match="PSF size within the image"):
        estimate_psf(scenes(1), scenes(1), 100)
