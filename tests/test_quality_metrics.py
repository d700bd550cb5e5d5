"""Image-quality metrics of Table IV: known values, masks, the accumulator and size handling."""

from __future__ import annotations

import math

import pytest
import torch

from campro_bench.utility.quality import (
    MS_SSIM_BETAS,
    PSNR_CAP_DB,
    ImageQuality,
    boxes_to_mask,
    face_masked_reference,
    image_quality,
    ms_ssim,
    ms_ssim_settings,
    psnr,
    rmse,
    ssim,
    summarize,
)


def _images(n: int = 2, h: int = 64, w: int = 80, seed: int = 0, high: float = 0.9) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    # smooth-ish content so that SSIM is meaningful
    base = torch.rand(n, 3, h // 8, w // 8, generator=gen)
    return torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False) * high


def test_identical_images_are_perfect() -> None:
    x = _images()
    q = image_quality(x, x.clone())
    assert torch.equal(q["rmse"], torch.zeros(2))
    assert torch.equal(q["psnr"], torch.full((2,), PSNR_CAP_DB))  # capped instead of inf
    assert torch.allclose(q["ssim"], torch.ones(2), atol=1e-5)
    assert torch.allclose(q["ms_ssim"], torch.ones(2), atol=1e-5)


def test_constant_offset_gives_rmse_and_psnr() -> None:
    x = _images()
    q = image_quality(x + 0.1, x)
    assert torch.allclose(q["rmse"], torch.full((2,), 0.1), atol=1e-6)
    assert torch.allclose(q["psnr"], torch.full((2,), 20.0), atol=1e-4)
    # a brightness shift keeps structure: SSIM below 1 but high
    assert bool((q["ssim"] < 1).all() and (q["ssim"] > 0.8).all())


def test_psnr_matches_rmse_and_is_per_image() -> None:
    x = _images(3)
    noise = torch.stack([torch.full_like(x[0], s) for s in (0.01, 0.05, 0.2)])
    value = psnr(x + noise, x)
    expected = torch.tensor([-20 * math.log10(s) for s in (0.01, 0.05, 0.2)])
    assert torch.allclose(value, expected, atol=1e-3)
    assert torch.allclose(rmse(x + noise, x), torch.tensor([0.01, 0.05, 0.2]), atol=1e-6)


def test_ssim_orders_degradations() -> None:
    x = _images(1, 96, 96)
    mild = (x + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    strong = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert ssim(mild, x)[0] > ssim(strong, x)[0]
    assert ms_ssim(mild, x)[0] > ms_ssim(strong, x)[0]


def test_inverted_image_gives_zero_ms_ssim_not_nan() -> None:
    x = _images(1, 200, 200)
    value = ms_ssim(1 - x, x)
    assert torch.isfinite(value).all() and float(value[0]) == 0.0
    assert float(ssim(1 - x, x)[0]) < 0  # SSIM itself reports the anti-correlation


def test_ms_ssim_settings() -> None:
    kernel, betas = ms_ssim_settings(480, 640)
    assert kernel == 11 and betas == MS_SSIM_BETAS  # standard 5 scales on COCO-sized images
    assert len(ms_ssim_settings(176, 300)[1]) == 5
    assert len(ms_ssim_settings(160, 300)[1]) == 4  # torchmetrics needs side // 16 > 10 for 5
    for side in (11, 40, 100, 160):
        _, small = ms_ssim_settings(side, side)
        assert 1 <= len(small) < 5 and math.isclose(sum(small), 1.0)
    with pytest.raises(ValueError, match="too small"):
        ms_ssim_settings(8, 8)
    x = _images(1, 40, 64)
    assert torch.isfinite(ms_ssim(x * 0.9, x)).all()


def test_bad_inputs() -> None:
    x = _images()
    with pytest.raises(ValueError, match="differ in shape"):
        rmse(x, x[:1])
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        rmse(x[:, :1], x[:, :1])
    with pytest.raises(ValueError, match="too small"):
        ssim(x[..., :8, :8], x[..., :8, :8])


def test_face_masked_reference_eq8() -> None:
    x = _images(1, 32, 32) + 0.05
    mask = torch.ones(1, 1, 32, 32)
    mask[..., 8:16, 10:20] = 0
    masked = face_masked_reference(x, mask)
    assert torch.equal(masked[..., 8:16, 10:20], torch.zeros(1, 3, 8, 10))
    assert torch.equal(masked[..., 16:, :], x[..., 16:, :])
    # an "enhancer" that blacks out the face exactly matches the masked reference
    enhanced = x * mask
    assert float(image_quality(enhanced, x, mask=mask)["rmse"][0]) == 0.0
    assert float(image_quality(enhanced, x)["rmse"][0]) > 0.0
    with pytest.raises(ValueError, match="0 \\(face\\) or 1"):
        face_masked_reference(x, mask * 0.5)
    with pytest.raises(ValueError, match="1 x 1 x 32 x 32"):
        face_masked_reference(x, mask[..., :16])


def test_mask_fn_and_boxes_to_mask() -> None:
    mask = boxes_to_mask([torch.tensor([[2.2, 3.0, 5.0, 6.5]]), torch.zeros(0, 4)], 8, 10)
    assert mask.shape == (2, 1, 8, 10)
    assert float((1 - mask[0]).sum()) == (5 - 2) * (7 - 3)  # floor/ceil to whole pixels
    assert torch.equal(mask[1], torch.ones(1, 8, 10))
    x = _images(2, 32, 32)
    calls: list[int] = []

    def mask_fn(images: torch.Tensor) -> torch.Tensor:
        calls.append(images.shape[0])
        return boxes_to_mask([torch.tensor([[0, 0, 16, 16]])] * images.shape[0], 32, 32)

    meter = ImageQuality(mask_fn=mask_fn)
    out = meter.update(x, x)
    assert calls == [2] and bool((out["rmse"] > 0).all())


def test_accumulator_equals_functional_mean() -> None:
    a, b = _images(3, seed=1), _images(2, 48, 72, seed=2)
    ta, tb = (a * 0.8 + 0.05), (b.flip(-1))
    meter = ImageQuality()
    meter.update(ta, a)
    meter.update(tb, b)  # another image size in the same accumulator
    result = meter.compute()
    fa, fb = image_quality(ta, a), image_quality(tb, b)
    for name in ("rmse", "psnr", "ssim", "ms_ssim"):
        values = torch.cat([fa[name], fb[name]]).double()
        assert result[name]["n"] == 5
        assert math.isclose(result[name]["mean"], float(values.mean()), rel_tol=1e-6)
        assert math.isclose(result[name]["std"], float(values.std()), rel_tol=1e-5)
    meter.reset()
    with pytest.raises(ValueError, match="before any update"):
        meter.compute()


def test_summarize_single_value() -> None:
    assert summarize([0.5]) == {"mean": 0.5, "std": 0.0, "n": 1.0}
