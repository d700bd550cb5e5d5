"""The fused defocus paths (:mod:`campro_bench.protectors.fast_blur`) against kornia's separable blur."""

from __future__ import annotations

import kornia
import numpy as np
import pytest
import torch

from campro_bench.errors import CamproError
from campro_bench.protectors import build_protector
from campro_bench.protectors.baselines import Defocus
from campro_bench.protectors.fast_blur import defocus_planes, defocus_uint8

# (kernel, sigma) x (height, width): the paper settings on ordinary crops, sizes either side of the
# reflect/replicate switch (min side > kernel // 2), and images smaller than the kernel
CASES = [
    (25, 7.0, 48, 64),
    (9, 3.0, 37, 29),
    (13, 5.0, 7, 40),  # 7 > 13 // 2 = 6: reflect with a band as thin as the radius + 1
    (13, 5.0, 6, 40),  # 6 == 13 // 2: replicate
    (25, 7.0, 5, 3),  # smaller than the kernel in both directions
    (25, 7.0, 1, 1),
    (1, 0.5, 4, 4),  # a one-tap kernel is the identity
]


def kornia_reference(images: torch.Tensor, kernel: int, sigma: float) -> torch.Tensor:
    """``Defocus``'s computation as it was before the fast path: kornia's separable blur."""
    border = "reflect" if min(images.shape[-2:]) > kernel // 2 else "replicate"
    sigmas = torch.tensor([[sigma, sigma]], dtype=images.dtype)
    return kornia.filters.gaussian_blur2d(images, (kernel, kernel), sigmas, border_type=border, separable=True)


@pytest.mark.parametrize(("kernel", "sigma", "height", "width"), CASES)
def test_float_path_equals_kornia(kernel: int, sigma: float, height: int, width: int) -> None:
    images = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(kernel + height))
    with torch.no_grad():
        expected = kornia_reference(images, kernel, sigma)
        ours = defocus_planes(images, kernel, sigma)
        via_protector = Defocus(kernel, sigma)(images)
    assert ours.shape == images.shape and ours.dtype == torch.float32
    assert (ours - expected).abs().max().item() <= 1e-5
    assert torch.equal(via_protector, ours)


def test_protector_uses_the_fast_path_only_without_gradients() -> None:
    images = torch.rand(2, 3, 40, 52, generator=torch.Generator().manual_seed(3))
    protector = build_protector("defocus:kernel=9,sigma=3")
    with torch.inference_mode():
        fast = protector(images)
    leaf = images.clone().requires_grad_(True)
    blurred = protector(leaf)
    assert blurred.requires_grad and blurred.grad_fn is not None
    assert (blurred.detach() - fast).abs().max().item() <= 1e-5
    weights = torch.rand(blurred.shape, generator=torch.Generator().manual_seed(4))
    (blurred * weights).sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0
    # the gradient is kornia's: the adjoint of the blur, reflect borders included
    reference_leaf = images.clone().requires_grad_(True)
    (kornia_reference(reference_leaf, 9, 3.0) * weights).sum().backward()
    assert torch.allclose(leaf.grad, reference_leaf.grad, atol=1e-6)


def test_float64_batches_keep_the_kornia_path() -> None:
    images = torch.rand(1, 3, 20, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    out = Defocus(9, 3.0)(images)
    assert out.dtype == torch.float64
    assert torch.allclose(out, kornia_reference(images, 9, 3.0))


@pytest.mark.parametrize(("kernel", "sigma", "height", "width"), CASES)
def test_uint8_path_equals_the_rounded_float_path(kernel: int, sigma: float, height: int, width: int) -> None:
    rng = np.random.default_rng(kernel * 100 + width)
    frames = rng.integers(0, 256, (3, height, width, 3), dtype=np.uint8)
    frames[0, :, : width // 2] = 255  # saturated and black regions: both ends of the range
    frames[1, : height // 2] = 0
    ours = defocus_uint8(frames, kernel, sigma)
    assert ours.shape == frames.shape and ours.dtype == np.uint8
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        ref = kornia_reference(x, kernel, sigma)
    ref = (ref * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    difference = np.abs(ours.astype(int) - ref.astype(int))
    assert difference.max() <= 1
    assert (difference == 0).mean() > 0.99
    single = defocus_uint8(frames[1], kernel, sigma)
    assert single.shape == (height, width, 3)
    assert np.array_equal(single, ours[1])


def test_uint8_path_on_a_frame_larger_than_one_band() -> None:
    # more rows than one parallel band: the bands' seams must not show
    frames = np.random.default_rng(7).integers(0, 256, (1, 300, 41, 3), dtype=np.uint8)
    ours = defocus_uint8(frames, 25, 7.0)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        ref = (kornia_reference(x, 25, 7.0) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1


@pytest.mark.parametrize("frames", [
    np.zeros((4, 4, 3), np.float32),  # wrong dtype
    np.zeros((2, 4, 4, 4), np.uint8),  # four channels
    np.zeros((4, 4), np.uint8),  # no channel axis
    np.zeros((1, 2, 4, 4, 3), np.uint8),  # five axes
])
def test_uint8_path_rejects_other_frames_in_one_line(frames: np.ndarray) -> None:
    with pytest.raises(CamproError, match="uint8") as raised:
        defocus_uint8(frames)
    assert "\n" not in str(raised.value)


def test_uint8_path_rejects_bad_kernels_and_float_path_other_tensors() -> None:
    with pytest.raises(CamproError, match="odd kernel"):
        defocus_uint8(np.zeros((4, 4, 3), np.uint8), kernel=4)
    for kernel, sigma, message in ((9, float("nan"), "sigma=nan must be a finite number"),
                                   (9, float("inf"), "sigma=inf must be a finite number"),
                                   (1000001, 3.0, "kernel=1000001 is out of range; allowed: \\[1, 1001\\]"),
                                   (27, 3.0, "defocus kernel 27 is too large for a 4x4 image")):
        with pytest.raises(CamproError, match=message) as raised:
            defocus_uint8(np.zeros((4, 4, 3), np.uint8), kernel=kernel, sigma=sigma)
        assert "\n" not in str(raised.value)
    with pytest.raises(CamproError, match="float32") as raised:
        defocus_planes(torch.zeros(1, 3, 4, 4, dtype=torch.float64), 9, 3.0)
    assert "\n" not in str(raised.value)

