from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from campro_bench.errors import InvalidFileError, MissingFileError, UnknownNameError
from campro_bench.protectors import build_protector
from campro_bench.protectors.isp import (
    CamproISP,
    ISPParams,
    apply_ccm,
    campro_isp,
    degamma,
    list_presets,
    piecewise_linear,
)


def random_params(seed: int = 0, points: int = 32) -> ISPParams:
    g = torch.Generator().manual_seed(seed)
    ccm = torch.randn(3, 3, generator=g, dtype=torch.float64)
    lut = torch.rand(points, generator=g, dtype=torch.float64)
    return ISPParams.from_tensors(ccm, lut)


def test_identity_parameters_give_the_degammed_input() -> None:
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    isp = CamproISP()
    assert isp.lut_points == 32
    assert sum(p.numel() for p in isp.parameters()) == 41
    isp = isp.double()
    assert torch.allclose(isp(x), x.pow(2.2), atol=1e-12)


def test_standard_preset_approximately_reproduces_the_input() -> None:
    x = torch.rand(1, 3, 32, 32)
    out = build_protector("campro-isp:preset=standard")(x).detach()
    # piecewise-linear approximation of x^(1/2.2) after x^2.2; largest error near 0
    assert float((out - x).abs().mean()) < 0.01


def test_lut_interpolation_equals_numpy_interp() -> None:
    rng = np.random.default_rng(1)
    lut = np.sort(rng.random(32))
    values = rng.random(10_000)
    values[:3] = [0.0, 1.0, 0.5]
    ours = piecewise_linear(torch.from_numpy(values), torch.from_numpy(lut)).numpy()
    expected = np.interp(values, np.linspace(0, 1, 32), lut)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    # a non-monotone LUT too, and another number of points
    lut7 = rng.random(7)
    np.testing.assert_allclose(
        piecewise_linear(torch.from_numpy(values), torch.from_numpy(lut7)).numpy(),
        np.interp(values, np.linspace(0, 1, 7), lut7),
        atol=1e-12,
    )


def test_ccm_is_clipped_and_outputs_stay_in_unit_range() -> None:
    x = torch.rand(4, 3, 8, 8)
    ccm = torch.tensor([[3.0, -2.0, 0.5], [-1.0, 4.0, 0.0], [0.2, 0.2, -5.0]])
    mixed = apply_ccm(x, ccm)
    assert float(mixed.min()) == 0.0 and float(mixed.max()) == 1.0
    expected = torch.einsum("ij,njhw->nihw", ccm, x).clamp(0, 1)
    assert torch.allclose(mixed, expected)
    for seed in range(5):
        p = random_params(seed)
        out = campro_isp(x, p.ccm_tensor(), p.lut_tensor())
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_pipeline_order_is_degamma_ccm_lut() -> None:
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    p = random_params(3)
    ccm, lut = p.ccm_tensor(torch.float64), p.lut_tensor(torch.float64)
    manual = np.interp(
        np.clip(np.einsum("ij,njhw->nihw", ccm.numpy(), x.numpy() ** 2.2), 0, 1),
        np.linspace(0, 1, 32),
        lut.numpy(),
    )
    np.testing.assert_allclose(campro_isp(x, ccm, lut).numpy(), manual, atol=1e-12)
    assert torch.allclose(degamma(x), x**2.2)


def test_gradcheck_in_ccm_and_lut() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 5, 5, generator=g, dtype=torch.float64) * 0.9 + 0.05
    ccm = (torch.eye(3, dtype=torch.float64) * 0.6 + 0.1 * torch.rand(3, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    lut = torch.rand(32, generator=g, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c, l: campro_isp(x, c, l), (ccm, lut), eps=1e-7, atol=1e-6)


def test_all_41_parameters_receive_gradient() -> None:
    isp = CamproISP(isp=ISPParams.standard())
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    isp(x).square().sum().backward()
    assert isp.ccm.grad is not None and isp.lut.grad is not None
    assert bool((isp.ccm.grad != 0).all())
    assert bool((isp.lut.grad != 0).all())


def test_json_round_trip_is_exact(tmp_path: Path) -> None:
    p = random_params(7)
    p.lut = [min(1.0, max(0.0, v)) for v in p.lut]
    p.metadata = {"trained_against": "facenet-casia", "steps": 10}
    path = tmp_path / "params.json"
    p.save(path)
    q = ISPParams.load(path)
    assert q.ccm == p.ccm and q.lut == p.lut and q.degamma == p.degamma
    assert q.metadata == p.metadata
    data = json.loads(path.read_text())
    assert data["format"] == "campro-isp" and data["format_version"] == 1
    isp = build_protector(f"campro-isp:params={path}")
    assert isp.to_params().digest() == ISPParams.from_tensors(
        torch.tensor(p.ccm, dtype=torch.float32), torch.tensor(p.lut, dtype=torch.float32)
    ).digest()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(ccm=[[1, 0], [0, 1]]), "3x3"),
        (lambda d: d.update(lut=[0.5]), "exactly 32 numbers .*got 1 entries"),
        (lambda d: d.update(lut=[0.0, 1.0]), "exactly 32 numbers .*got 2 entries"),
        (lambda d: d.update(lut=d["lut"][:31]), "got 31 entries"),
        (lambda d: d.update(lut=d["lut"] + [1.0]), "got 33 entries"),
        (lambda d: d.update(lut=[i / 99 for i in range(100)]), "got 100 entries"),
        (lambda d: d["lut"].__setitem__(3, 1.5), "'lut\\[3\\]' must lie within \\[0, 1\\]"),
        (lambda d: d["ccm"][0].__setitem__(0, float("nan")), "'ccm\\[0\\]\\[0\\]' must be finite"),
        (lambda d: d["ccm"][1].__setitem__(2, 1e39), "'ccm\\[1\\]\\[2\\]' must lie within \\[-1000, 1000\\]"),
        (lambda d: d.update(degamma=1e308), "'degamma' must lie within \\[0.1, 10\\]"),
        (lambda d: d.update(degamma=0.0), "'degamma' must lie within"),
        (lambda d: d.update(degamma=float("inf")), "'degamma' must be finite"),
        (lambda d: d.update(degamma=True), "numbers"),
        (lambda d: d.update(format_version=99), "format_version 99"),
        (lambda d: d.pop("lut"), "missing key"),
        (lambda d: d["ccm"][1].__setitem__(1, "one"), "numbers"),
        (lambda d: d.update(degama=2.0), "unknown key\\(s\\) degama"),
        (lambda d: d.update(metadata=[1]), "'metadata' must be a JSON object"),
    ],
)
def test_invalid_files_fail_clearly(tmp_path: Path, mutate, message: str) -> None:
    data = ISPParams.standard().to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidFileError, match=message) as info:
        ISPParams.load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_edge_values_of_the_declared_ranges_load_and_run(tmp_path: Path) -> None:
    """The ends of each range are valid: a file at them loads and gives finite output in [0, 1]."""
    for degamma, entry in ((0.1, 1000.0), (10.0, -1000.0)):
        data = ISPParams.standard().to_dict()
        data.update(degamma=degamma)
        data["ccm"][0][1] = entry
        path = tmp_path / f"edge{degamma}.json"
        path.write_text(json.dumps(data))
        with torch.no_grad():
            out = build_protector(f"campro-isp:params={path}")(torch.rand(2, 3, 16, 16))
        assert torch.isfinite(out).all() and 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_missing_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="does not exist"):
        ISPParams.load(tmp_path / "nope.json")
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidFileError, match="not valid JSON"):
        ISPParams.load(bad)
    with pytest.raises(UnknownNameError, match="known presets: identity, standard"):
        build_protector("campro-isp:preset=nope")


def test_projection_restores_valid_ranges() -> None:
    isp = CamproISP()
    with torch.no_grad():
        isp.lut.add_(torch.linspace(-2, 2, 32))
        isp.ccm.mul_(100)
    isp.project_(ccm_bound=8.0)
    assert float(isp.lut.detach().min()) >= 0 and float(isp.lut.detach().max()) <= 1
    assert float(isp.ccm.detach().abs().max()) <= 8.0
    isp.to_params().validate()


def test_presets_are_listed() -> None:
    assert {"identity", "standard"} <= set(list_presets())


def _test_frames(kind: str):  # type: ignore[no-untyped-def]
    import numpy as np

    if kind == "cube":  # 65^3 colours (every 4th level of each channel and 255): all clip cases of a CCM
        levels = np.append(np.arange(0, 256, 4), 255).astype(np.uint8)
        return np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(1, 65 * 65, 65, 3)
    frames = np.random.default_rng(1).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    frames[0, 0, :, :] = np.arange(64)[:, None] * 4  # grey ramp: every LUT segment, both clip ends
    return frames


@pytest.mark.parametrize("kind", ["random", "cube"])
@pytest.mark.parametrize("preset", ["identity", "standard", "casia-adv", "casia-adv-w1", "casia-restore4-w1"])
def test_fused_8bit_path_equals_the_float_path_rounded(preset: str, kind: str) -> None:
    """The camera path on uint8 frames gives the float path's output rounded to 8 bits."""
    import numpy as np

    from campro_bench.protectors.isp import campro_isp, load_preset
    from campro_bench.protectors.isp_uint8 import campro_isp_uint8

    params = load_preset(preset)
    frames = _test_frames(kind)
    ours = campro_isp_uint8(frames, params)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    ref = campro_isp(x, params.ccm_tensor(), params.lut_tensor(), params.degamma)
    ref = (ref * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    difference = np.abs(ours.astype(int) - ref.astype(int))
    assert difference.max() <= 1 and (difference == 0).mean() > 0.999
    assert campro_isp_uint8(frames[0], params).shape == frames.shape[1:]


def test_fused_8bit_path_rejects_float_frames() -> None:
    import numpy as np

    from campro_bench.errors import CamproError
    from campro_bench.protectors.isp import load_preset
    from campro_bench.protectors.isp_uint8 import campro_isp_uint8

    with pytest.raises(CamproError, match="uint8"):
        campro_isp_uint8(np.zeros((4, 4, 3), np.float32), load_preset("standard"))
