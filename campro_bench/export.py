"""Export learned CamPro ISP parameters to real cameras (paper Sec. V-B2, Appendix B, Sec. VIII).

The virtual imaging pipeline of training is ``LUT(clip(CCM_opt @ degamma(x)))`` where
``degamma(x)`` stands for the camera's own linear colour ``CCM_ori @ raw``. On a camera the
optimised matrix is therefore composed with the camera's own colour-correction matrix and the
gamma stage is replaced by the learned look-up table:

* deployed CCM (column-vector convention, ``y = M @ x``): ``CCM_opt @ CCM_ori``. The paper writes
  ``CCM_ori . CCM_opt``, the same composition in the row-vector convention of ISP tuning tools.
* gamma: the learned 32-point LUT, resampled at the input positions the device uses.

Targets:

* ``android``: Camera2 API ``COLOR_CORRECTION_TRANSFORM`` (a 3x3 ``ColorSpaceTransform`` of
  rationals, row-major, with ``COLOR_CORRECTION_MODE_TRANSFORM_MATRIX``) and ``TONEMAP_CURVE``
  (``TonemapCurve`` with (Pin, Pout) pairs per channel, ``TONEMAP_MODE_CONTRAST_CURVE``), as the
  paper did on 8 phones. The device's own CCM is not readable through Camera2 for arbitrary
  illuminants, so the exported transform assumes the identity unless ``--camera-ccm`` is given.
* ``dynamic-ccm``: ISPs such as the RV1126 interpolate the CCM between calibrated illuminants by
  colour temperature (Appendix B); every calibrated matrix is multiplied by ``CCM_opt`` so that the
  interpolated matrix is the composed one at every colour temperature.

What a target cannot represent is refused with one line, never written: a de-gamma other than
the standard 2.2 (neither target has a de-gamma stage: the camera's CCM acts on its own linear
data, which the virtual pipeline models as ``x^2.2``), a rational CCM entry whose numerator or
denominator leaves Java's signed 32-bit ``int`` (Camera2 ``Rational``), a tone curve longer than
the 64 points every Camera2 device accepts (``TONEMAP_MAX_CURVE_POINTS`` is at least 64; the
format's 32-point LUT always fits, so it is never resampled for Android), non-finite or
out-of-range inputs (camera CCMs, calibrations and LUT positions, as for ISP files). What is
approximated legitimately (rational rounding, a resampled device LUT, an assumed identity camera
CCM) is listed in the document's ``notes`` and printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import CamproError
from .protectors.isp import CCM_LIMIT, DEFAULT_DEGAMMA, ISPParams

INT32_MAX = 2**31 - 1
"""Largest numerator or denominator of a Camera2 ``Rational`` (Java ``int``)."""
ANDROID_TONEMAP_POINTS = 64
"""Tone-curve points every Camera2 device accepts (``TONEMAP_MAX_CURVE_POINTS`` >= 64)."""
TEMPERATURE_RANGE = (1000.0, 25000.0)
"""Colour temperatures (K) a calibration entry may name."""


def check_exportable(params: ISPParams) -> None:
    """Refuse parameters a camera target cannot express (one line): they must be a valid ISP file's
    values, with the standard de-gamma, since no target has a de-gamma stage to change."""
    params.validate("ISP parameters")
    if float(params.degamma) != DEFAULT_DEGAMMA:
        raise CamproError(f"cannot export a de-gamma of {params.degamma:g}: camera targets have no de-gamma stage "
                          f"(their CCM acts on the camera's linear data, modelled as x^{DEFAULT_DEGAMMA}); "
                          f"only degamma = {DEFAULT_DEGAMMA} can be exported")


def check_ccm(matrix: Any, what: str) -> np.ndarray:
    """A finite 3x3 matrix with entries within the ISP files' CCM range, as float64; else one line."""
    try:
        array = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CamproError(f"{what} must be a 3x3 matrix of numbers ({exc})") from exc
    if array.shape != (3, 3):
        raise CamproError(f"{what} must be a 3x3 matrix, got shape {list(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise CamproError(f"{what} must be finite (found NaN or infinity)")
    if np.max(np.abs(array)) > CCM_LIMIT:
        raise CamproError(f"{what} entries must lie within [-{CCM_LIMIT:g}, {CCM_LIMIT:g}], "
                          f"got {float(np.max(np.abs(array))):g}")
    return array


def compose_ccm(ccm_opt: np.ndarray, ccm_camera: np.ndarray | None = None) -> np.ndarray:
    """The matrix a camera must apply so that its output equals the virtual pipeline's CCM stage."""
    ccm_opt = np.asarray(ccm_opt, dtype=np.float64)
    if ccm_camera is None:
        return ccm_opt.copy()
    return ccm_opt @ np.asarray(ccm_camera, dtype=np.float64)


def resample_lut(lut: Sequence[float], positions: Sequence[float]) -> np.ndarray:
    """The learned piecewise-linear gamma evaluated at a device's LUT input positions in [0, 1]."""
    lut = np.asarray(lut, dtype=np.float64)
    try:
        positions = np.asarray(positions, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CamproError(f"device LUT positions must be a list of numbers ({exc})") from exc
    if positions.ndim != 1 or not np.all(np.isfinite(positions)):
        raise CamproError("device LUT positions must be a flat list of finite numbers")
    if positions.size < 2 or np.any(np.diff(positions) <= 0):
        raise CamproError("device LUT positions must be a strictly increasing list of at least 2 values")
    if positions[0] < 0 or positions[-1] > 1:
        raise CamproError("device LUT positions must lie within [0, 1]")
    return np.interp(positions, np.linspace(0.0, 1.0, lut.size), lut)


def lut_resampling_error(lut: Sequence[float], positions: Sequence[float], samples: int = 4097) -> float:
    """Largest difference between the learned curve and the device's interpolation of it."""
    grid = np.linspace(float(positions[0]), float(positions[-1]), samples)
    learned = np.interp(grid, np.linspace(0.0, 1.0, len(lut)), np.asarray(lut, dtype=np.float64))
    device = np.interp(grid, np.asarray(positions, dtype=np.float64), resample_lut(lut, positions))
    return float(np.max(np.abs(learned - device)))


def to_rationals(matrix: np.ndarray, denominator: int) -> list[tuple[int, int]]:
    """Row-major (numerator, denominator) pairs, each the nearest multiple of 1/denominator.

    Every numerator and the denominator must fit Java's signed 32-bit ``int`` (Camera2
    ``Rational``); otherwise one error line says which entry and the largest denominator that fits.
    """
    if not 1 <= denominator <= INT32_MAX:
        raise CamproError(f"the rational denominator must be within [1, {INT32_MAX}], got {denominator}")
    values = np.asarray(matrix, dtype=np.float64).reshape(-1)
    pairs = [(int(round(float(v) * denominator)), denominator) for v in values]
    too_big = [i for i, (n, _) in enumerate(pairs) if not -INT32_MAX - 1 <= n <= INT32_MAX]
    if too_big:
        i = too_big[0]
        fits = int(INT32_MAX // max(1.0, float(np.max(np.abs(values)))))
        raise CamproError(f"CCM entry [{i // 3}][{i % 3}] = {values[i]:g} times denominator {denominator} leaves the "
                          f"signed 32-bit range of a Camera2 Rational; use --denominator {fits} or less")
    return pairs


@dataclass
class AndroidExport:
    """Camera2 capture-request values for one ISP parameter set."""

    color_correction_transform: list[tuple[int, int]]
    tonemap_curve: dict[str, list[float]]
    max_quantisation_error: float
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": "android-camera2",
            "COLOR_CORRECTION_MODE": "TRANSFORM_MATRIX",
            "COLOR_CORRECTION_TRANSFORM": [list(r) for r in self.color_correction_transform],
            "TONEMAP_MODE": "CONTRAST_CURVE",
            "TONEMAP_CURVE": self.tonemap_curve,
            "ccm_max_quantisation_error": self.max_quantisation_error,
            "notes": list(self.notes),
            "kotlin": self.kotlin(),
        }

    def kotlin(self) -> str:
        """A snippet setting both keys on a ``CaptureRequest.Builder`` named ``builder``."""
        rationals = ", ".join(f"Rational({n}, {d})" for n, d in self.color_correction_transform)
        curve = ", ".join(f"{v:.6f}f" for v in self.tonemap_curve["red"])
        return (
            "builder.set(CaptureRequest.COLOR_CORRECTION_MODE, CameraMetadata.COLOR_CORRECTION_MODE_TRANSFORM_MATRIX)\n"
            f"builder.set(CaptureRequest.COLOR_CORRECTION_TRANSFORM, ColorSpaceTransform(arrayOf({rationals})))\n"
            f"val curve = floatArrayOf({curve})\n"
            "builder.set(CaptureRequest.TONEMAP_MODE, CameraMetadata.TONEMAP_MODE_CONTRAST_CURVE)\n"
            "builder.set(CaptureRequest.TONEMAP_CURVE, TonemapCurve(curve, curve, curve))"
        )


def export_android(
    params: ISPParams, camera_ccm: np.ndarray | None = None, denominator: int = 10_000
) -> AndroidExport:
    """Camera2 values: rational CCM (composed with ``camera_ccm`` if given) and the tonemap curve.

    The 32 LUT points become (Pin, Pout) pairs; Camera2 guarantees at least 64 curve points
    (``TONEMAP_MAX_CURVE_POINTS``), so no resampling is needed (a longer curve is refused).
    What cannot be represented is refused (:func:`check_exportable`, :func:`to_rationals`); the
    rounding of the CCM and an assumed identity camera CCM are listed in ``notes``.
    """
    check_exportable(params)
    notes = []
    if camera_ccm is None:
        notes.append("no camera CCM given: the transform assumes the camera's own colour correction is the identity")
    else:
        camera_ccm = check_ccm(camera_ccm, "the camera CCM")
    matrix = compose_ccm(np.asarray(params.ccm), camera_ccm)
    rationals = to_rationals(matrix, denominator)
    restored = np.array([n / d for n, d in rationals]).reshape(3, 3)
    error = float(np.max(np.abs(restored - matrix)))
    if error > 0:
        notes.append(f"CCM entries rounded to multiples of 1/{denominator} (largest change {error:.3g})")
    if len(params.lut) > ANDROID_TONEMAP_POINTS:
        raise CamproError(f"a {len(params.lut)}-point tone curve exceeds the {ANDROID_TONEMAP_POINTS} points every "
                          "Camera2 device accepts")
    positions = np.linspace(0.0, 1.0, len(params.lut))
    pairs = [float(v) for p, y in zip(positions, params.lut) for v in (p, y)]
    return AndroidExport(
        color_correction_transform=rationals,
        tonemap_curve={"red": pairs, "green": list(pairs), "blue": list(pairs)},
        max_quantisation_error=error,
        notes=notes,
    )


@dataclass(frozen=True)
class CalibratedCCM:
    """One calibrated illuminant of a dynamic-CCM ISP: colour temperature (K) and its matrix."""

    temperature: float
    ccm: tuple[tuple[float, float, float], ...]


def interpolate_ccm(calibrated: Sequence[CalibratedCCM], temperature: float) -> np.ndarray:
    """The ISP's dynamic CCM at ``temperature``: linear between the two nearest calibrations
    (clamped outside the calibrated range), as in Appendix B."""
    points = sorted(calibrated, key=lambda c: c.temperature)
    if not points:
        raise CamproError("no calibrated CCMs given")
    temps = [c.temperature for c in points]
    if temperature <= temps[0]:
        return np.asarray(points[0].ccm, dtype=np.float64)
    if temperature >= temps[-1]:
        return np.asarray(points[-1].ccm, dtype=np.float64)
    i = int(np.searchsorted(temps, temperature)) - 1
    t0, t1 = temps[i], temps[i + 1]
    w = (temperature - t0) / (t1 - t0)
    return (1 - w) * np.asarray(points[i].ccm) + w * np.asarray(points[i + 1].ccm)


def export_dynamic_ccm(params: ISPParams, calibrated: Sequence[CalibratedCCM]) -> list[CalibratedCCM]:
    """Every calibrated matrix composed with ``CCM_opt``; interpolation commutes with it."""
    check_exportable(params)
    opt = np.asarray(params.ccm, dtype=np.float64)
    return [
        CalibratedCCM(c.temperature, tuple(tuple(float(v) for v in row) for row in compose_ccm(opt, np.asarray(c.ccm))))
        for c in sorted(calibrated, key=lambda c: c.temperature)
    ]


def parse_calibration(data: Any) -> list[CalibratedCCM]:
    """``[{"temperature": 2800, "ccm": [[...], [...], [...]]}, ...]`` from a JSON document."""
    if not isinstance(data, list) or not data:
        raise CamproError("calibration file must hold a non-empty list of {temperature, ccm} objects")
    result = []
    low, high = TEMPERATURE_RANGE
    for i, item in enumerate(data):
        try:
            temperature = float(item["temperature"])
            raw_ccm = item["ccm"]
        except (KeyError, TypeError, ValueError) as exc:
            raise CamproError(f"calibration entry {i} needs 'temperature' and a 3x3 'ccm' ({exc})") from exc
        if isinstance(item["temperature"], bool) or not low <= temperature <= high:  # NaN fails this too
            raise CamproError(f"calibration entry {i}: 'temperature' must be a colour temperature within "
                              f"[{low:g}, {high:g}] K, got {item['temperature']!r}")
        if any(c.temperature == temperature for c in result):
            raise CamproError(f"calibration entry {i}: temperature {temperature:g} K is calibrated twice")
        ccm = check_ccm(raw_ccm, f"calibration entry {i}: 'ccm'")
        result.append(CalibratedCCM(temperature, tuple(tuple(float(v) for v in row) for row in ccm)))
    return result
