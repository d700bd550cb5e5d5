"""Helpers shared by several experiments, so that no experiment imports another.

* ``--compare`` checking (:func:`check_compare`) and the paper's transcribed tables
  (:func:`paper_table`);
* the notes that describe an E1-protocol run (:func:`protocol_notes`, used by E1 and E2);
* protector specs: ``campro-isp:preset=*`` expansion (:func:`expand_protector_specs`), the 8-bit
  camera output of a protector (:func:`camera_output`, E4 and Table V) and the check that a
  protector runs on face crops (:func:`check_protector`, E5 and the audit);
* rows of earlier result tables by protector (:func:`find_protector_rows`, the audit and the trade-off).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd
import torch

from ..errors import CamproError, MissingFileError
from ..io import tensor_to_uint8, uint8_to_tensor
from ..protectors import Protector, build_protector
from .base import RunContext

if TYPE_CHECKING:
    from ..privacy.evaluate import ProtocolConfig, ProtocolOutcome

COMPARE_CHOICES = ("paper",)

PAPER_DIR = Path(__file__).resolve().parents[2] / "baselines" / "paper"
"""The paper's tables, transcribed (in a source checkout; not part of an installed wheel)."""


def check_compare(ctx: RunContext) -> None:
    """Refuse a ``--compare`` value other than ``paper``."""
    if ctx.compare is not None and ctx.compare not in COMPARE_CHOICES:
        raise CamproError(f"unknown --compare '{ctx.compare}'; known: {', '.join(COMPARE_CHOICES)}")


def paper_table(filename: str) -> pd.DataFrame:
    """A table of the paper, transcribed in ``baselines/paper/<filename>`` (with a source column)."""
    path = PAPER_DIR / filename
    if not path.is_file():
        raise MissingFileError(
            f"{path} does not exist: --compare paper reads the transcribed tables of a source checkout"
        )
    return pd.read_csv(path)


# ----------------------------------------------------------------------------------------
# notes of an E1-protocol run
# ----------------------------------------------------------------------------------------
def protocol_notes(cfg: "ProtocolConfig", ctx: RunContext, outcome: "ProtocolOutcome") -> list[str]:
    """How the rows were produced, and which models were skipped (for the Markdown tables)."""
    notes = [describe_protocol(cfg, ctx.manifest.notes.get("classifiers", {}))]
    if outcome.skipped_models:
        notes.append("Skipped models (weights missing): "
                     + "; ".join(f"{m}: {why}" for m, why in outcome.skipped_models.items()))
    return notes


def describe_protocol(cfg: "ProtocolConfig", clf_configs: dict[str, Any]) -> str:
    lines = [
        f"Closed-set identification (paper Sec. VI-A): per identity with >= {cfg.min_images} images, one gallery "
        f"and one different probe image; {cfg.repeats} repeats, seeds {cfg.seed}..{cfg.seed + cfg.repeats - 1}; "
        f"pipeline '{cfg.pipeline}', detector '{cfg.detector}'"
        + (f"; first {cfg.max_identities} identities by name" if cfg.max_identities else "")
        + (f"; at most {cfg.max_images_per_identity} images per identity (a seeded uniform subset, drawn "
           "before the repeats)" if cfg.max_images_per_identity else "") + ".",
        "Gallery 'raw': enrolled with unprotected images (Table I); 'protected': gray-box re-enrolment with "
        "protected images (Sec. VII-B). Probes are always protected by the row's image type.",
        "Probes with no detected face count as wrong; identities whose gallery image has no face keep their "
        "gallery slot but can never be predicted.",
    ]
    if "linear" in clf_configs:
        lines.append(f"Linear classifier: {clf_configs['linear']}; the accuracy at the returned weights is reported "
                     "(no model selection on probes).")
    return "\n".join(f"- {line}" for line in lines)


# ----------------------------------------------------------------------------------------
# protectors
# ----------------------------------------------------------------------------------------
def _shipped_presets(kind: str) -> list[str]:
    if kind == "campro-isp":
        from ..protectors.isp import list_presets

        return list_presets()
    # enhancers ship as presets/enhancer/NAME.pt beside the ISP preset NAME
    folder = Path(str(resources.files("campro_bench") / "presets" / "enhancer"))
    return sorted(p.stem for p in folder.glob("*.pt")) if folder.is_dir() else []


def expand_protector_specs(specs: list[str]) -> list[str]:
    """Expand ``campro-isp:preset=*`` / ``campro-enhanced:preset=*`` to every shipped preset.

    Other specs are kept as they are. A wildcard with no shipped preset expands to nothing.
    """
    out: list[str] = []
    for spec in specs:
        compact = spec.replace(" ", "")
        kind = compact.partition(":")[0]
        if compact.endswith(":preset=*") and kind in ("campro-isp", "campro-enhanced"):
            out.extend(f"{kind}:preset={name}" for name in _shipped_presets(kind))
        else:
            out.append(spec)
    return out


def camera_output(protector: Protector, image: np.ndarray, device: torch.device) -> np.ndarray:
    """What a camera with ``protector`` writes for the raw ``H x W x 3`` uint8 image: 8-bit RGB."""
    with torch.inference_mode():
        batch = uint8_to_tensor(image).unsqueeze(0).to(device)
        return tensor_to_uint8(protector(batch)[0])


def camera_transform(protector: Protector, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """:func:`camera_output` bound to one protector (uint8 image -> uint8 image)."""
    protector = protector.to(device).eval()
    return lambda image: camera_output(protector, image, device)


def check_protector(spec: str) -> Protector:
    """Build ``spec`` and check it runs on face crops (shape, range, finiteness), in one error line."""
    protector = build_protector(spec)
    for side in (112, 160):
        x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(side))
        try:
            with torch.no_grad():
                y = protector(x)
        except Exception as exc:  # a plugin may raise anything: report it as bad input
            raise CamproError(f"protector '{spec}' cannot run on {side}x{side} face crops: "
                              f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(y, torch.Tensor) or y.shape != x.shape or not y.is_floating_point():
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise CamproError(f"protector '{spec}' cannot run on face crops: {tuple(x.shape)} in gave {got} out "
                              "(a protector returns a float batch of the input's shape)")
        if not bool(torch.isfinite(y).all()) or float(y.min()) < -1e-3 or float(y.max()) > 1 + 1e-3:
            raise CamproError(f"protector '{spec}' cannot run on face crops: its output leaves [0, 1] or is not finite")
    return protector


CHECKOUT = Path(__file__).resolve().parents[2]
"""The campro-bench checkout: protocols name committed tables relative to it (``baselines/e3/table3.csv``)."""


def resolve_table_path(text: str, results_root: Path | None = None) -> Path | None:
    """Where a table (or run folder) that a protocol names lives, or ``None`` when nowhere.

    An absolute path is taken as it is. A relative one is looked up, in this order, under the
    campro-bench checkout (``baselines/...``), under the results root (``--results-root``: a run of
    one's own, ``e3-20250101-120000/table3.csv``) and under the working folder; so an audit or trade-off
    started from another folder finds the committed tables instead of reporting them missing.
    """
    path = Path(text).expanduser()
    if path.is_absolute():
        return path if path.exists() else None
    for root in (CHECKOUT, results_root, Path.cwd()):
        if root is not None and (root / path).exists():
            return root / path
    return None


def find_protector_rows(paths: list[str], spec: str, columns: list[str], reference_raw: bool = False,
                        results_root: Path | None = None) -> tuple[pd.DataFrame | None, str]:
    """Every row for protector ``spec`` in the first of the earlier result tables (CSV ``paths``,
    found by :func:`resolve_table_path`) that has it, and the path it came from as written;
    ``(None, "")`` when no table has it (a missing file is passed over).

    Tables without a ``protector`` column or without ``columns`` are passed over; with
    ``reference_raw`` only rows whose ``reference`` is ``raw`` count (E4's values). An audit under
    several capture conditions has several rows per protector (one per condition and a ``worst
    over conditions`` row): the trade-off reads them all.
    """
    for text in paths:
        path = resolve_table_path(text, results_root)
        if path is None or not path.is_file():
            continue
        table = pd.read_csv(path)
        if "protector" not in table or any(c not in table for c in columns):
            continue
        rows = table[table["protector"] == spec]
        if reference_raw and "reference" in rows:
            rows = rows[rows["reference"] == "raw"]
        if len(rows):
            return rows, str(text)
    return None, ""


def find_protector_row(paths: list[str], spec: str, columns: list[str],
                       reference_raw: bool = False, results_root: Path | None = None) -> tuple[pd.Series | None, str]:
    """The first row for protector ``spec`` of :func:`find_protector_rows`, and the path it came
    from as written; ``(None, "")`` when no table has it."""
    rows, source = find_protector_rows(paths, spec, columns, reference_raw, results_root)
    return (None, "") if rows is None else (rows.iloc[0], source)
