from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from campro_bench.cli.main import main
from campro_bench.export import (
    CalibratedCCM,
    export_android,
    export_dynamic_ccm,
    interpolate_ccm,
    lut_resampling_error,
    resample_lut,
)
from campro_bench.protectors.isp import ISPParams, campro_isp


@pytest.fixture
def isp() -> ISPParams:
    rng = np.random.default_rng(0)
    ccm = np.eye(3) + 0.3 * rng.standard_normal((3, 3))
    lut = np.sort(rng.random(32))
    return ISPParams(ccm.tolist(), lut.tolist())


def test_android_export_reproduces_the_virtual_pipeline(isp: ISPParams) -> None:
    exported = export_android(isp, denominator=1_000_000)
    matrix = np.array([n / d for n, d in exported.color_correction_transform]).reshape(3, 3)
    curve = np.array(exported.tonemap_curve["green"]).reshape(-1, 2)
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    linear = x.numpy() ** 2.2  # what the camera holds before its CCM
    camera = np.interp(np.clip(np.einsum("ij,njhw->nihw", matrix, linear), 0, 1), curve[:, 0], curve[:, 1])
    virtual = campro_isp(x, isp.ccm_tensor(torch.float64), isp.lut_tensor(torch.float64)).numpy()
    np.testing.assert_allclose(camera, virtual, atol=1e-5)


def test_rational_quantisation_is_bounded(isp: ISPParams) -> None:
    exported = export_android(isp, denominator=10_000)
    assert all(d == 10_000 for _, d in exported.color_correction_transform)
    assert 0 <= exported.max_quantisation_error <= 0.5 / 10_000 + 1e-12
    assert "ColorSpaceTransform" in exported.kotlin() and "TonemapCurve" in exported.kotlin()


def test_camera_ccm_is_composed_on_the_right(isp: ISPParams) -> None:
    camera = np.array([[1.6, -0.4, -0.2], [-0.3, 1.5, -0.2], [0.0, -0.5, 1.5]])
    exported = export_android(isp, camera, denominator=10**9)
    matrix = np.array([n / d for n, d in exported.color_correction_transform]).reshape(3, 3)
    raw = np.random.default_rng(2).random(3)
    np.testing.assert_allclose(matrix @ raw, np.asarray(isp.ccm) @ (camera @ raw), atol=1e-8)


def test_dynamic_ccm_interpolation_commutes_with_the_optimised_ccm(isp: ISPParams) -> None:
    rng = np.random.default_rng(3)
    calibrated = [CalibratedCCM(t, tuple(map(tuple, np.eye(3) + 0.2 * rng.standard_normal((3, 3))))) for t in (5000, 2800, 6500)]
    composed = export_dynamic_ccm(isp, calibrated)
    assert [c.temperature for c in composed] == [2800, 5000, 6500]
    for temperature in (2000, 2800, 3500, 5000, 6100, 9000):
        np.testing.assert_allclose(
            interpolate_ccm(composed, temperature),
            np.asarray(isp.ccm) @ interpolate_ccm(calibrated, temperature),
            atol=1e-12,
        )


def test_lut_resampling(isp: ISPParams) -> None:
    uniform = np.linspace(0, 1, 32)
    np.testing.assert_allclose(resample_lut(isp.lut, uniform), isp.lut)
    assert lut_resampling_error(isp.lut, np.linspace(0, 1, 63)) < 1e-12  # contains every breakpoint
    assert lut_resampling_error(isp.lut, np.linspace(0, 1, 9)) > 1e-3
    with pytest.raises(Exception, match="strictly increasing"):
        resample_lut(isp.lut, [0.0, 0.5, 0.4, 1.0])


def test_cli_exports(isp: ISPParams, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "isp.json"
    isp.lut = [float(v) for v in isp.lut]
    isp.save(params)
    out = tmp_path / "android.json"
    assert main(["export-isp", str(params), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["TONEMAP_MODE"] == "CONTRAST_CURVE" and len(doc["COLOR_CORRECTION_TRANSFORM"]) == 9
    assert doc["source"]["digest"] == isp.digest()

    calib = tmp_path / "calib.json"
    calib.write_text(json.dumps([{"temperature": 2800, "ccm": np.eye(3).tolist()}, {"temperature": 6500, "ccm": (2 * np.eye(3)).tolist()}]))
    out2 = tmp_path / "rv1126.json"
    assert main(["export-isp", str(params), "--target", "dynamic-ccm", "--calibration", str(calib), "--out", str(out2)]) == 0
    doc2 = json.loads(out2.read_text())
    np.testing.assert_allclose(doc2["calibrated_ccms"][1]["ccm"], 2 * np.asarray(isp.ccm))

    assert main(["export-isp", str(params), "--target", "ios", "--out", str(out)]) == 2
    assert "unknown export target 'ios'" in capsys.readouterr().err
    assert main(["export-isp", "preset:identity", "--out", str(tmp_path / "id.json")]) == 0


def test_export_refuses_what_android_cannot_represent(isp: ISPParams) -> None:
    from campro_bench.errors import CamproError

    isp.ccm[2][0] = 3.0
    with pytest.raises(CamproError, match=r"CCM entry \[2\]\[0\] = 3 times denominator 1000000000 leaves the signed "
                                          r"32-bit range.*--denominator 715827882 or less"):
        export_android(isp, denominator=10**9)
    assert export_android(isp, denominator=715827882).color_correction_transform[6] == (2147483646, 715827882)
    with pytest.raises(CamproError, match="camera CCM must be finite"):
        export_android(isp, np.full((3, 3), np.nan))
    isp.degamma = 2.4
    with pytest.raises(CamproError, match="cannot export a de-gamma of 2.4"):
        export_android(isp)
    isp.degamma = 2.2
    isp.lut = [i / 99 for i in range(100)]  # not a valid file: never a 100-point tone curve
    with pytest.raises(CamproError, match="exactly 32"):
        export_android(isp)


def test_export_notes_what_it_approximates(isp: ISPParams, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exported = export_android(isp, denominator=10_000)
    assert any("assumes the camera's own colour correction is the identity" in n for n in exported.notes)
    assert any("rounded to multiples of 1/10000" in n for n in exported.notes)
    exact = ISPParams.identity()
    assert not any("rounded" in n for n in export_android(exact, np.eye(3), denominator=4).notes)

    params, calib, positions = tmp_path / "isp.json", tmp_path / "calib.json", tmp_path / "positions.json"
    isp.save(params)
    calib.write_text(json.dumps([{"temperature": 2800, "ccm": np.eye(3).tolist()}]))
    positions.write_text(json.dumps(np.linspace(0, 1, 45).tolist()))
    out = tmp_path / "rv.json"
    assert main(["export-isp", str(params), "--target", "dynamic-ccm", "--calibration", str(calib),
                 "--lut-positions", str(positions), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    error = doc["gamma_lut"]["max_abs_error_vs_learned_curve"]
    assert doc["notes"] == [f"gamma curve resampled at the device's 45 positions (largest deviation from the "
                            f"learned curve {error:.3g})"]
    assert f"note: {doc['notes'][0]}" in capsys.readouterr().err


@pytest.mark.parametrize("calibration, message", [
    ([{"temperature": float("nan"), "ccm": np.eye(3).tolist()}], "'temperature' must be a colour temperature"),
    ([{"temperature": 1e9, "ccm": np.eye(3).tolist()}], "within \\[1000, 25000\\] K"),
    ([{"temperature": 2800, "ccm": [[1e39, 0, 0], [0, 1, 0], [0, 0, 1]]}], "entries must lie within \\[-1000, 1000\\]"),
    ([{"temperature": 2800, "ccm": np.eye(3).tolist()}] * 2, "2800 K is calibrated twice"),
])
def test_bad_calibrations_fail_in_one_line(calibration: list, message: str) -> None:
    from campro_bench.errors import CamproError
    from campro_bench.export import parse_calibration

    with pytest.raises(CamproError, match=message):
        parse_calibration(calibration)


def test_non_finite_lut_positions_are_refused(isp: ISPParams) -> None:
    from campro_bench.errors import CamproError

    with pytest.raises(CamproError, match="finite"):
        resample_lut(isp.lut, [0.0, 0.5, float("nan"), 1.0])


def test_both_preset_forms_export_the_same(tmp_path: Path) -> None:
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    assert main(["export-isp", "preset:casia-adv", "--out", str(outs[0])]) == 0
    assert main(["export-isp", "campro-isp:preset=casia-adv", "--out", str(outs[1])]) == 0
    a, b = (json.loads(p.read_text()) for p in outs)
    assert a["source"].pop("params") == "preset:casia-adv" and b["source"].pop("params") == "campro-isp:preset=casia-adv"
    assert a == b
