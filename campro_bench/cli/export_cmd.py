"""``campro-bench export-isp``: learned ISP parameters -> values a real camera accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console

from ..errors import CamproError
from ..export import (
    export_android,
    export_dynamic_ccm,
    lut_resampling_error,
    parse_calibration,
    resample_lut,
)
from ..io.atomic import atomic_write_json
from ..io.jsonfile import read_json
from ..protectors.isp import ISPParams, load_preset


def _read_json(path: Path, what: str) -> object:
    return read_json(path, f"{what} file")


def load_isp(source: str) -> ISPParams:
    """A parameter file path, or ``preset:NAME`` for a shipped preset."""
    if source.startswith("preset:"):
        return load_preset(source.split(":", 1)[1])
    return ISPParams.load(source)


def export_isp(
    params: str = typer.Argument(..., help="ISP parameter JSON file, or preset:NAME"),
    target: str = typer.Option("android", help="android (Camera2) or dynamic-ccm (e.g. Rockchip RV1126)"),
    out: Path = typer.Option(..., help="output JSON file"),
    camera_ccm: Optional[Path] = typer.Option(None, help="android: JSON 3x3 CCM of the camera to compose with"),
    calibration: Optional[Path] = typer.Option(
        None, help="dynamic-ccm: JSON list of {temperature, ccm} calibrated matrices"
    ),
    lut_positions: Optional[Path] = typer.Option(
        None, help="dynamic-ccm: JSON list of the device's gamma-curve input positions in [0,1]"
    ),
    denominator: int = typer.Option(10_000, help="android: denominator of the rational CCM entries"),
) -> None:
    """Export learned CamPro ISP parameters for deployment on a camera (paper Appendix B)."""
    isp = load_isp(params)
    if target == "android":
        matrix = None
        if camera_ccm is not None:
            matrix = np.asarray(_read_json(camera_ccm, "camera CCM"), dtype=np.float64)
            if matrix.shape != (3, 3):
                raise CamproError(f"{camera_ccm}: the camera CCM must be a 3x3 matrix")
        document = export_android(isp, matrix, denominator).to_dict()
    elif target == "dynamic-ccm":
        if calibration is None:
            raise CamproError("--target dynamic-ccm needs --calibration FILE with the calibrated CCMs")
        composed = export_dynamic_ccm(isp, parse_calibration(_read_json(calibration, "calibration")))
        document = {
            "target": "dynamic-ccm",
            "calibrated_ccms": [{"temperature": c.temperature, "ccm": [list(r) for r in c.ccm]} for c in composed],
            "gamma_lut": {"positions": np.linspace(0, 1, len(isp.lut)).tolist(), "values": list(isp.lut)},
        }
        if lut_positions is not None:
            positions = np.asarray(_read_json(lut_positions, "LUT positions"), dtype=np.float64)
            document["gamma_lut"] = {
                "positions": positions.tolist(),
                "values": resample_lut(isp.lut, positions).tolist(),
                "max_abs_error_vs_learned_curve": lut_resampling_error(isp.lut, positions),
            }
    else:
        raise CamproError(f"unknown export target '{target}'; known targets: android, dynamic-ccm")
    document["source"] = {"params": params, "digest": isp.digest(), "metadata": isp.metadata}
    atomic_write_json(out, document)
    Console(stderr=True).print(f"wrote {target} export to {out}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("export-isp")(export_isp)
