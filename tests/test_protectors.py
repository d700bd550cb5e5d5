from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from campro_bench.errors import CamproError, UnknownNameError
from campro_bench.protectors import Protector, build_protector, parse_spec

ALL_SPECS = [
    "raw",
    "invert",
    "lowres:factor=4",
    "lowres:factor=16",
    "defocus:kernel=9,sigma=3",
    "defocus:kernel=25,sigma=7",
    "campro-isp",
    "campro-isp:preset=standard",
]


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(3, 3, 48, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_shape_range_dtype_preserved(spec: str, images: torch.Tensor) -> None:
    protector = build_protector(spec)
    with torch.no_grad():
        out = protector(images)
    assert out.shape == images.shape
    assert out.dtype == images.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("spec", ALL_SPECS)
@pytest.mark.parametrize("size", [(1, 17, 23), (5, 32, 32), (2, 5, 7)])
def test_any_batch_and_image_size(spec: str, size: tuple[int, int, int]) -> None:
    n, h, w = size
    out = build_protector(spec)(torch.rand(n, 3, h, w)).detach()
    assert out.shape == (n, 3, h, w)


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_spec_round_trip(spec: str, images: torch.Tensor) -> None:
    protector = build_protector(spec)
    rebuilt = build_protector(protector.spec())
    assert rebuilt.fingerprint() == protector.fingerprint()
    assert torch.equal(rebuilt(images).detach(), protector(images).detach())
    rebuilt_from_config = build_protector(protector.config() | {"name": protector.name})
    assert rebuilt_from_config.spec() == protector.spec()


def test_differentiable_protectors_pass_gradients(images: torch.Tensor) -> None:
    for spec in ALL_SPECS:
        protector = build_protector(spec)
        if not protector.differentiable or spec == "raw":
            continue
        x = images.clone().requires_grad_(True)
        protector(x).sum().backward()
        assert x.grad is not None and float(x.grad.abs().sum()) > 0, spec


def test_invert_and_raw_values(images: torch.Tensor) -> None:
    assert torch.equal(build_protector("raw")(images), images)
    assert torch.allclose(build_protector("invert")(images), 1 - images)


def test_lowres_is_area_down_then_bilinear_up(images: torch.Tensor) -> None:
    out = build_protector("lowres:factor=8")(images)
    down = F.interpolate(images, size=(6, 8), mode="area")
    expected = F.interpolate(down, size=(48, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(out, expected)


def test_defocus_matches_a_normalised_gaussian() -> None:
    impulse = torch.zeros(1, 3, 41, 41)
    impulse[..., 20, 20] = 1.0
    out = build_protector("defocus:kernel=9,sigma=3")(impulse)[0, 0]
    assert out.sum().item() == pytest.approx(1.0, abs=1e-5)
    ax = np.arange(9) - 4
    g = np.exp(-(ax**2) / (2 * 3.0**2))
    g /= g.sum()
    expected = np.outer(g, g)
    np.testing.assert_allclose(out[16:25, 16:25].numpy(), expected, atol=1e-6)
    # stronger defocus flattens the response more
    strong = build_protector("defocus:kernel=25,sigma=7")(impulse)[0, 0]
    assert strong.max() < out.max()


def test_lowres_and_defocus_are_spatially_smoothing(images: torch.Tensor) -> None:
    def tv(x: torch.Tensor) -> float:
        return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean())

    assert tv(build_protector("lowres:factor=16")(images)) < 0.2 * tv(images)
    assert tv(build_protector("defocus:kernel=25,sigma=7")(images)) < 0.2 * tv(images)


def test_parse_spec() -> None:
    assert parse_spec("defocus:kernel=25,sigma=7") == ("defocus", {"kernel": "25", "sigma": "7"})
    assert parse_spec("raw") == ("raw", {})
    with pytest.raises(CamproError, match="expected key=value"):
        parse_spec("lowres:16")
    with pytest.raises(CamproError, match="option 'factor' is given twice in 'lowres:factor=4,factor=8'"):
        parse_spec("lowres:factor=4,factor=8")


def test_bad_specs_fail_with_one_clear_line() -> None:
    with pytest.raises(UnknownNameError, match="known protectors: .*lowres"):
        build_protector("blur")
    with pytest.raises(CamproError, match="has no option 'fac'; its options: factor"):
        build_protector("lowres:fac=3")
    with pytest.raises(CamproError, match="has the wrong type \\(expected int\\)"):
        build_protector("lowres:factor=big")
    with pytest.raises(CamproError, match="positive odd"):
        build_protector("defocus:kernel=10,sigma=3")


@pytest.mark.parametrize("spec, message", [
    ("defocus:sigma=nan", "sigma=nan .* must be a finite number; allowed: \\[0.01, 1000\\]"),
    ("defocus:sigma=inf", "must be a finite number"),
    ("defocus:sigma=-inf", "must be a finite number"),
    ("defocus:sigma=0", "is out of range; allowed: \\[0.01, 1000\\]"),
    ("defocus:kernel=1000001", "kernel=1000001 .* is out of range; allowed: \\[1, 1001\\]"),
    ("lowres:factor=0", "is out of range; allowed: \\[1, 1024\\]"),
    ("lensless:noise=nan", "noise=nan .* must be a finite number; allowed: \\[0, 1\\]"),
    ("lensless:noise=-0.1", "is out of range"),
    ("lensless:image_size=2", "is out of range; allowed: \\[3, 1024\\]"),
    ("lensless-wiener:lam=nan", "lam=nan .* must be a finite number"),
    ("lensless-wiener:iters=0", "is out of range; allowed: \\[1, 10000\\]"),
    ({"name": "defocus", "kernel": 9, "sigma": float("nan")}, "must be a finite number"),  # a protocol's table form
])
def test_numbers_outside_their_declared_range_fail_in_one_line(spec, message: str) -> None:
    with pytest.raises(CamproError, match=message) as info:
        build_protector(spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("spec", ["defocus:kernel=1001,sigma=0.01", "defocus:kernel=1,sigma=1000", "lowres:factor=1024",
                                  "lensless:noise=0,bits=0,seed=4294967295", "lensless:noise=1,image_size=3",
                                  "lensless-wiener:lam=0,iters=1"])
def test_the_ends_of_the_declared_ranges_are_valid(spec: str) -> None:
    protector = build_protector(spec)
    images = torch.rand(1, 3, 600, 520) if "1001" in spec else torch.rand(2, 3, 24, 20)
    with torch.no_grad():
        out = protector(images)
    assert out.shape == images.shape and torch.isfinite(out).all()
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_defocus_kernel_is_bounded_by_the_image_beyond_the_paper_settings() -> None:
    small = torch.rand(1, 3, 5, 7)
    assert build_protector("defocus:kernel=25,sigma=7")(small).shape == small.shape  # paper settings: any size
    with pytest.raises(CamproError, match="defocus kernel 27 is too large for a 7x5 image.*at most 25"):
        build_protector("defocus:kernel=27,sigma=7")(small)
    wide = torch.rand(1, 3, 3, 20)
    assert build_protector("defocus:kernel=41,sigma=7")(wide).shape == wide.shape  # radius 20 = the longer side
    with pytest.raises(CamproError, match="defocus kernel 43 is too large for a 20x3 image.*at most 41"):
        build_protector("defocus:kernel=43,sigma=7")(wide)


def test_rejects_non_batches() -> None:
    p = build_protector("invert")
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        p(torch.rand(3, 8, 8))
    with pytest.raises(TypeError, match="float"):
        p(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def test_protectors_declare_contract() -> None:
    for spec in ALL_SPECS:
        p = build_protector(spec)
        assert isinstance(p, Protector)
        assert isinstance(p.differentiable, bool)
        assert p.config()["name"] == p.name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("spec", ALL_SPECS)
def test_gpu_matches_cpu(spec: str, images: torch.Tensor) -> None:
    p = build_protector(spec)
    cpu = p(images).detach()
    gpu = p.to("cuda")(images.cuda()).detach().cpu()
    assert torch.allclose(cpu, gpu, atol=1e-5)
