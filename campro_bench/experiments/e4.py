"""E4 / Table IV: full-reference image quality of protected images (RMSE, PSNR, SSIM, MS-SSIM).

Each row of the protocol is one image type: a protector spec (the raw sanity row, CamPro ISP
presets, low resolution, defocus, inversion; an enhancer that composes ISP + U-Net is just
another protector spec) and the reference it is compared with: ``raw`` (the decoded original)
or ``face-masked`` (the original with detected faces set to 0, paper Eq. 8). Every image of the
chosen folder is protected at full resolution, rounded to 8 bits as a camera writes it
(``quantize``), and scored against its reference; the table gives mean ± standard deviation.

Protector-spec expansion (``campro-isp:preset=*``) and the paper's transcribed tables are shared
with Table V through :mod:`campro_bench.experiments.common`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..config import option
from ..datasets.fingerprint import fingerprint
from ..errors import CamproError, EmptyDatasetError, MissingFileError
from ..io import list_images, load_image, tensor_to_uint8, uint8_to_tensor
from ..protectors import build_protector
from ..registries import EXPERIMENTS
from ..utility.quality import (
    MS_SSIM_BETAS,
    PSNR_CAP_DB,
    SSIM_KERNEL,
    SSIM_SIGMA,
    ImageQuality,
    MaskFn,
    detector_mask_fn,
    format_mean_std,
)
from .base import ExperimentResult, RunContext
from .common import check_compare, expand_protector_specs, paper_table
from .spec import parse_protocol

REFERENCES = ("raw", "face-masked")


def image_folder(ctx: RunContext, relative: str) -> tuple[Path, list[Path]]:
    """The images of ``<data root>/<relative>``, sorted; errors name the folder."""
    folder = ctx.data_root / relative
    if not folder.is_dir():
        raise MissingFileError(f"image folder {folder} does not exist (spec key 'images' = {relative!r})")
    files = list_images(folder)
    if not files:
        raise EmptyDatasetError(f"image folder {folder} holds no JPEG or PNG image")
    return folder, files


# ----------------------------------------------------------------------------------------
# E4
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class E4Row:
    """One image type of Table IV: a protector spec (``preset=*`` expands) and its reference."""

    protector: str = option(help="protector spec; campro-isp:preset=* / campro-enhanced:preset=* expand")
    reference: str = option("raw", help="raw: the original image; face-masked: its faces set to 0 (Eq. 8)")
    label: str = option("", help="the row name; '' = the protector spec")

    def __post_init__(self) -> None:
        if self.reference not in REFERENCES:
            raise CamproError(f"e4 row {self!r}: reference must be one of {', '.join(REFERENCES)}")


@dataclass(frozen=True)
class E4Config:
    """The E4 protocol (``protocols/e4.toml``)."""

    seed: int = option(0, ge=0, help="nothing is random; recorded for uniformity")
    images: str = option("coco-mini/val2017", help="image folder, relative to the data root")
    limit: int = option(0, ge=0, le=10_000_000, help="0 = every image (sorted by name), else the first N")
    quantize: bool = option(True, help="round protected images to 8 bits, as a camera writes them")
    face_detector: str = option("centerface", help="face detector of the face-masked rows")
    rows: list[E4Row] = option(list, help="image types: {protector[, reference][, label]} or a protector spec")

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "E4Config":
        """A row given as a bare string is that protector against the raw image."""
        given = dict(spec)
        if isinstance(given.get("rows"), list):
            given["rows"] = [{"protector": r} if isinstance(r, str) else r for r in given["rows"]]
        cfg = parse_protocol(cls, given, "e4")
        if not cfg.rows:
            raise CamproError("the e4 spec needs 'rows': a list of {protector = '...', reference = 'raw'}")
        return cfg


def _rows(cfg: E4Config) -> list[dict[str, str]]:
    """The rows with ``preset=*`` expanded."""
    return [{"protector": protector, "reference": row.reference, "label": row.label or protector}
            for row in cfg.rows for protector in expand_protector_specs([row.protector])]


def _mask_fn(cfg: E4Config, rows: list[dict[str, str]]) -> MaskFn | None:
    if not any(r["reference"] == "face-masked" for r in rows):
        return None
    if not cfg.face_detector:
        raise CamproError("rows with reference = 'face-masked' need 'face_detector' in the e4 spec")
    return detector_mask_fn(cfg.face_detector)


@EXPERIMENTS.register(
    "e4", protocol="e4", description="Table IV: RMSE / PSNR / SSIM / MS-SSIM of protected images"
)
def run_e4(spec: dict[str, Any], ctx: RunContext) -> ExperimentResult:
    check_compare(ctx)
    cfg = E4Config.from_spec(spec)
    rows = _rows(cfg)
    folder, files = image_folder(ctx, cfg.images)
    files = files[:cfg.limit] if cfg.limit > 0 else files
    quantize = cfg.quantize
    ctx.manifest.data["images"] = fingerprint(ctx.data_root, files)
    ctx.manifest.notes["e4"] = {
        "images_folder": str(folder.relative_to(ctx.data_root)),
        "image_selection": f"first {len(files)} files in sorted order (no random choice)",
        "quantize_8bit": quantize,
        "psnr_cap_db": PSNR_CAP_DB,
        "ssim": {"kernel": SSIM_KERNEL, "sigma": SSIM_SIGMA, "data_range": 1.0},
        "ms_ssim": {"betas": MS_SSIM_BETAS, "negative_terms": "clamped to 0 (relu)"},
    }
    mask_fn = _mask_fn(cfg, rows)
    if mask_fn is not None:
        ctx.manifest.models["face_detector"] = cfg.face_detector

    raw: dict[Path, np.ndarray] = {}
    masks: dict[Path, torch.Tensor] = {}
    summary, per_image = [], []
    with ctx.progress("E4 image quality", total=len(rows) * len(files)) as advance:
        for row in rows:
            protector = build_protector(row["protector"]).to(ctx.device).eval()
            ctx.manifest.models.setdefault("protectors", {})[row["protector"]] = protector.fingerprint()
            meter = ImageQuality()
            with ctx.manifest.timer(f"row:{row['label']}"):
                for path in files:
                    if path not in raw:
                        raw[path] = load_image(path)
                    image = raw[path]
                    reference = uint8_to_tensor(image).unsqueeze(0).to(ctx.device)
                    with torch.inference_mode():
                        out = protector(reference)
                    if quantize:
                        out = uint8_to_tensor(tensor_to_uint8(out[0])).unsqueeze(0).to(ctx.device)
                    mask = None
                    if row["reference"] == "face-masked":
                        assert mask_fn is not None
                        if path not in masks:
                            masks[path] = mask_fn(reference).cpu()
                        mask = masks[path].to(ctx.device)
                    values = meter.update(out, reference, mask)
                    per_image.append(
                        {"image_type": row["label"], "file": path.name, "reference": row["reference"],
                         **{k: float(v[0]) for k, v in values.items()}}
                    )
                    advance(1)
            stats = meter.compute()
            summary.append((row, stats))

    table = pd.DataFrame(
        [
            {
                "image_type": row["label"],
                "protector": row["protector"],
                "reference": row["reference"],
                "images": int(stats["rmse"]["n"]),
                "RMSE": format_mean_std(stats["rmse"]),
                "PSNR (dB)": format_mean_std(stats["psnr"], 2),
                "SSIM": format_mean_std(stats["ssim"]),
                "MS-SSIM": format_mean_std(stats["ms_ssim"]),
            }
            for row, stats in summary
        ]
    )
    values = pd.DataFrame(
        [
            {
                "image_type": row["label"], "protector": row["protector"], "reference": row["reference"],
                "images": int(stats["rmse"]["n"]),
                **{f"{metric}_{stat}": stats[metric][stat] for metric in stats for stat in ("mean", "std")},
            }
            for row, stats in summary
        ]
    )
    tables = {"table4": table, "table4_values": values}
    if ctx.compare == "paper":
        tables["paper_table4"] = paper_table("table4_image_quality.csv")
    buffer = io.StringIO()
    pd.DataFrame(per_image).to_csv(buffer, index=False, float_format="%.6g")
    notes = (
        f"{len(files)} images from {folder.relative_to(ctx.data_root)}; protected images "
        f"{'rounded to 8 bits' if quantize else 'kept in float'}; mean ± sample std over images. "
        f"PSNR capped at {PSNR_CAP_DB:g} dB (identical images). MS-SSIM: 5 scales, 11x11 Gaussian "
        "(fewer scales on images with a side <= 160 px); negative terms clamped to 0."
    )
    return ExperimentResult(tables=tables, notes=notes, extra_files={"per_image.csv": buffer.getvalue().encode()})
