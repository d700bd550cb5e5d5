"""``campro-bench export-isp``: learned ISP parameters -> values a real camera accepts.

What the target cannot represent is refused with one error line (see :mod:`campro_bench.export`);
what is approximated is written to the document's ``notes`` and printed, one ``note:`` line each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer
from rich.console import Console

from ..errors import CamproError
from ..export import (
    INT32_MAX,
    check_ccm,
    export_android,
    export_dynamic_ccm,
    lut_resampling_error,
    parse_calibration,
    resample_lut,
)
from ..io.atomic import atomic_write_json
from ..io.jsonfile import read_json
from ..protectors.isp import ISPParams, load_preset
from ..specs import parse_spec


def _read_json(path: Path, what: str) -> object:
    return read_json(path, f"{what} file")


def load_isp(source: str) -> ISPParams:
    """A parameter file path, or a shipped preset as ``preset:NAME`` or in the protector's spec form
    ``campro-isp:preset=NAME`` (also ``campro-isp:params=FILE``, and ``campro-isp`` alone: identity)."""
    if source.startswith("preset:"):
        return load_preset(source.split(":", 1)[1])
    if source == "campro-isp" or source.startswith("campro-isp:"):
        _, options = parse_spec(source, "ISP")
        unknown = sorted(set(options) - {"preset", "params"})
        if unknown or len(options) > 1:
            raise CamproError(f"'{source}': give one of preset=NAME or params=FILE (the ISP options export-isp reads)")
        if "params" in options:
            return ISPParams.load(options["params"])
        return load_preset(options.get("preset", "identity"))
    return ISPParams.load(source)


def export_isp(
    params: str = typer.Argument(..., help="ISP parameter JSON file, or preset:NAME (or campro-isp:preset=NAME)"),
    target: str = typer.Option("android", help="android (Camera2) or dynamic-ccm (e.g. Rockchip RV1126)"),
    out: Path = typer.Option(..., help="output JSON file"),
    camera_ccm: Optional[Path] = typer.Option(None, help="android: JSON 3x3 CCM of the camera to compose with"),
    calibration: Optional[Path] = typer.Option(
        None, help="dynamic-ccm: JSON list of {temperature, ccm} calibrated matrices"
    ),
    lut_positions: Optional[Path] = typer.Option(
        None, help="dynamic-ccm: JSON list of the device's gamma-curve input positions in [0,1]"
    ),
    denominator: int = typer.Option(10_000, min=1, max=INT32_MAX,
                                    help="android: denominator of the rational CCM entries"),
) -> None:
    """Export learned CamPro ISP parameters for deployment on a camera (paper Appendix B).

    Refuses what the target cannot represent (a non-standard de-gamma, CCM rationals beyond 32 bits);
    prints a note for each approximation it makes (CCM rounding, a resampled device gamma curve).
    """
    isp = load_isp(params)
    document: dict[str, Any]
    if target == "android":
        matrix = None
        if camera_ccm is not None:
            matrix = check_ccm(_read_json(camera_ccm, "camera CCM"), f"{camera_ccm}: the camera CCM")
        document = export_android(isp, matrix, denominator).to_dict()
    elif target == "dynamic-ccm":
        if calibration is None:
            raise CamproError("--target dynamic-ccm needs --calibration FILE with the calibrated CCMs")
        composed = export_dynamic_ccm(isp, parse_calibration(_read_json(calibration, "calibration")))
        document = {
            "target": "dynamic-ccm",
            "calibrated_ccms": [{"temperature": c.temperature, "ccm": [list(r) for r in c.ccm]} for c in composed],
            "gamma_lut": {"positions": np.linspace(0, 1, len(isp.lut)).tolist(), "values": list(isp.lut)},
            "notes": [],
        }
        if lut_positions is not None:
            positions = _read_json(lut_positions, "LUT positions")
            values = resample_lut(isp.lut, positions)  # type: ignore[arg-type]
            error = lut_resampling_error(isp.lut, positions)  # type: ignore[arg-type]
            document["gamma_lut"] = {"positions": np.asarray(positions, dtype=np.float64).tolist(),
                                     "values": values.tolist(), "max_abs_error_vs_learned_curve": error}
            document["notes"].append(f"gamma curve resampled at the device's {len(values)} positions "
                                     f"(largest deviation from the learned curve {error:.3g})")
    else:
        raise CamproError(f"unknown export target '{target}'; known targets: android, dynamic-ccm")
    document["source"] = {"params": params, "digest": isp.digest(), "metadata": isp.metadata}
    atomic_write_json(out, document)
    console = Console(stderr=True)
    for note in document["notes"]:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    console.print(f"wrote {target} export to {out}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("export-isp")(export_isp)
