"""E4 / Table IV: full-reference image quality of protected images (RMSE, PSNR, SSIM, MS-SSIM).

Each row of the protocol is one image type: a protector spec (the raw sanity row, CamPro ISP
presets, low resolution, defocus, inversion; an enhancer that composes ISP + U-Net is just
another protector spec) and the reference it is compared with: ``raw`` (the decoded original)
or ``face-masked`` (the original with detected faces set to 0, paper Eq. 8). Every image of the
chosen folder is protected at full resolution, rounded to 8 bits as a camera writes it
(``quantize``), and scored against its reference; the table gives mean ± standard deviation.

Identity leakage (``leakage_models``, off when empty): PSNR/SSIM say little about whether a
face stays recognisable. Each face the ``face_detector`` finds on the *raw* image is aligned from
the raw and from the protected image with the same box and landmarks, embedded by each model, and
scored by the cosine of protected to raw (:func:`campro_bench.privacy.threats.leakage_summary`)
and by the share above the model's raw image-to-image verification threshold at ``leakage_far``.
COCO images carry no identities, so that threshold is calibrated on raw-vs-raw impostor pairs of
a face dataset with identities (``leakage_dataset``, seeded draws of the E1 protocol machinery,
:func:`campro_bench.privacy.threats.raw_leakage_point`). Images without a detected face are
counted in the table, never dropped silently.

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
from ..faces.align import get_alignment
from ..faces.detection import Faces, build_face_detector
from ..io import list_images, load_image, tensor_to_uint8, uint8_to_tensor
from ..privacy.evaluate import ProtocolConfig, run_protocol
from ..privacy.identification import FeatureSet
from ..privacy.threat_models import OperatingPoint
from ..privacy.threats import leakage_summary, rate_label, raw_leakage_point
from ..protectors import build_protector
from ..recognizers.base import contract_of, create_face_recognizer
from ..registries import EXPERIMENTS, FACE_RECOGNIZERS
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
    leakage_models: list[str] = option(lambda: ["sface", "mobilefacenet"],
                                       help="face recognisers of the identity-leakage table; [] = no leakage")
    leakage_dataset: str = option("lfw", help="face dataset with identities whose raw pairs calibrate the threshold")
    leakage_identities: int = option(500, ge=0, le=1_000_000,
                                     help="identities of leakage_dataset (first N by name; 0 = all)")
    leakage_repeats: int = option(2, ge=1, le=100, help="seeded gallery/probe draws of the calibration")
    leakage_far: float = option(1e-3, gt=0.0, lt=1.0, help="FAR of the raw verification threshold")
    leakage_min_false_accepts: int = option(10, ge=1, le=1_000_000,
                                            help="the threshold needs this many false accepts, else NaN + note")

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "E4Config":
        """A row given as a bare string is that protector against the raw image."""
        given = dict(spec)
        if isinstance(given.get("rows"), list):
            given["rows"] = [{"protector": r} if isinstance(r, str) else r for r in given["rows"]]
        cfg = parse_protocol(cls, given, "e4")
        if not cfg.rows:
            raise CamproError("the e4 spec needs 'rows': a list of {protector = '...', reference = 'raw'}")
        for model in cfg.leakage_models:
            FACE_RECOGNIZERS.entry(model)  # an unknown name fails here, listing the known ones
        if cfg.leakage_models and not cfg.face_detector:
            raise CamproError("'leakage_models' need 'face_detector' in the e4 spec (faces are found on the raw image)")
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


# ----------------------------------------------------------------------------------------
# identity leakage
# ----------------------------------------------------------------------------------------
def leakage_thresholds(cfg: E4Config, ctx: RunContext) -> tuple[dict[str, OperatingPoint | str], dict[str, Any]]:
    """Each leakage model's raw image-to-image verification threshold at ``leakage_far`` (or why
    not), calibrated on seeded raw draws of ``leakage_dataset`` by the E1 protocol machinery; and
    what the calibration used (for the manifest and the notes)."""
    proto = ProtocolConfig.from_spec({
        "datasets": [cfg.leakage_dataset], "models": list(cfg.leakage_models), "protectors": ["raw"],
        "classifiers": ["nearest"], "galleries": ["raw"], "repeats": cfg.leakage_repeats, "seed": cfg.seed,
        "max_identities": cfg.leakage_identities, "threat_models": ["closed-set"]})
    outcome = run_protocol(proto, ctx)
    splits = outcome.splits[cfg.leakage_dataset]
    features = outcome.features[cfg.leakage_dataset]
    points = {m: raw_leakage_point(features[m][outcome.raw_spec], splits, cfg.leakage_far,
                                   cfg.leakage_min_false_accepts) for m in cfg.leakage_models}
    info = {
        "dataset": cfg.leakage_dataset, "identities": splits.n_identities, "repeats": splits.repeats,
        "seeds": list(range(cfg.seed, cfg.seed + splits.repeats)), "detector": proto.detector,
        "pipeline": proto.pipeline, "far": cfg.leakage_far,
        "pairs": "each draw's raw probe against the first enrolled raw image of every other identity",
        "thresholds": {m: ({"threshold": p.threshold, "impostor_scores": p.impostors}
                           if isinstance(p, OperatingPoint) else p) for m, p in points.items()},
    }
    return points, info


class FaceLeakage:
    """Embeddings of the faces found on the raw images, and of the same boxes in protected images.

    Faces are detected once per image on the raw image; each model aligns them with its own
    alignment from whichever image it is given, so raw and protected crops share box and landmarks.
    """

    def __init__(self, cfg: E4Config, ctx: RunContext) -> None:
        self.models = list(cfg.leakage_models)
        self.device = ctx.device
        self.detector = build_face_detector(cfg.face_detector)
        self.nets = {m: create_face_recognizer(m, ctx.models_dir, ctx.cache_dir, ctx.device) for m in self.models}
        self.align = {m: get_alignment(contract_of(m).alignment) for m in self.models}
        self.faces: dict[Path, Faces] = {}
        self.raw: dict[tuple[str, Path], np.ndarray] = {}

    def embed(self, model: str, image: np.ndarray, faces: Faces) -> np.ndarray:
        """Unit embeddings ``[K, D]`` of the ``faces`` of ``image`` (uint8 H x W x 3)."""
        size = contract_of(model).embedding_size
        if len(faces) == 0:
            return np.zeros((0, size), np.float32)
        crops = np.stack([self.align[model](image, b, lm) for b, lm in zip(faces.boxes, faces.landmarks)])
        with torch.inference_mode():
            out = self.nets[model](uint8_to_tensor(crops).to(self.device)).float()
        return torch.nn.functional.normalize(out, dim=1).cpu().numpy()

    def protected(self, path: Path, raw: np.ndarray, protected: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per model, (raw, protected) embeddings of the raw image's faces."""
        if path not in self.faces:
            self.faces[path] = self.detector.detect([raw])[0]
        out = {}
        for model in self.models:
            if (model, path) not in self.raw:
                self.raw[(model, path)] = self.embed(model, raw, self.faces[path])
            out[model] = (self.raw[(model, path)], self.embed(model, protected, self.faces[path]))
        return out


def leakage_tables(cfg: E4Config, specs: list[tuple[str, str]], pairs: dict[tuple[str, str], list],
                   faces_per_image: dict[Path, int], points: dict[str, OperatingPoint | str]
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display table, values table) of leakage per (image type, model); ``pairs[(spec, model)]``
    holds one (raw, protected) embedding pair per image."""
    share_key = f"share_above_raw_threshold@FAR={rate_label(cfg.leakage_far)}"
    with_face = sum(1 for n in faces_per_image.values() if n)
    values = []
    for label, spec in specs:
        for model in cfg.leakage_models:
            raw = np.concatenate([r for r, _ in pairs[(spec, model)]])
            prot = np.concatenate([p for _, p in pairs[(spec, model)]])
            found = np.ones(raw.shape[0], bool)
            summary = leakage_summary(FeatureSet(raw, found), FeatureSet(prot, found), np.arange(raw.shape[0]),
                                      points[model], cfg.leakage_far)
            values.append({"image_type": label, "protector": spec, "model": model, "images": len(faces_per_image),
                           "images_with_face": with_face, "images_without_face": len(faces_per_image) - with_face,
                           "faces": summary["faces_on_both"], "cosine_mean": summary["cosine_mean"],
                           "cosine_std": summary["cosine_std"], share_key: summary[share_key],
                           "raw_threshold": summary["raw_threshold"], "note": summary["note"]})
    frame = pd.DataFrame(values)
    display = pd.DataFrame([
        {"image_type": v["image_type"], "model": v["model"], "images": v["images"],
         "without face": v["images_without_face"], "faces": v["faces"],
         "cosine to raw": (format_mean_std({"mean": v["cosine_mean"], "std": v["cosine_std"]})
                           if v["faces"] else "n/a (no face)"),
         f"above raw threshold (FAR {rate_label(cfg.leakage_far)})":
             f"{100 * v[share_key]:.1f} %" if v[share_key] == v[share_key] else "n/a"}
        for v in values])
    return display, frame



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
    if mask_fn is not None or cfg.leakage_models:
        ctx.manifest.models["face_detector"] = cfg.face_detector
    leak = FaceLeakage(cfg, ctx) if cfg.leakage_models else None
    points: dict[str, OperatingPoint | str] = {}
    if leak is not None:
        points, calib = leakage_thresholds(cfg, ctx)
        ctx.manifest.notes["e4_leakage_calibration"] = calib
    leak_specs: list[tuple[str, str]] = []  # (label, protector) of each protector's first row
    pairs: dict[tuple[str, str], list] = {}

    raw: dict[Path, np.ndarray] = {}
    masks: dict[Path, torch.Tensor] = {}
    summary, per_image = [], []
    with ctx.progress("E4 image quality", total=len(rows) * len(files)) as advance:
        for row in rows:
            protector = build_protector(row["protector"]).to(ctx.device).eval()
            ctx.manifest.models.setdefault("protectors", {})[row["protector"]] = protector.fingerprint()
            meter = ImageQuality()
            leaks_here = leak is not None and row["protector"] not in {spec for _, spec in leak_specs}
            if leaks_here:
                leak_specs.append((row["label"], row["protector"]))
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
                    if leaks_here:
                        assert leak is not None
                        for model, pair in leak.protected(path, image, tensor_to_uint8(out[0])).items():
                            pairs.setdefault((row["protector"], model), []).append(pair)
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
    notes_leak = ""
    if leak is not None:
        faces_per_image = {path: len(leak.faces[path]) for path in files}
        tables["leakage"], tables["leakage_values"] = leakage_tables(cfg, leak_specs, pairs, faces_per_image, points)
        notes_leak = (
            f" Identity leakage: faces found by {cfg.face_detector} on the raw image, the same box aligned from the "
            f"raw and the protected image; cosine of protected to raw embedding (mean ± sample std over faces) and "
            f"the share above each model's raw image-to-image verification threshold at FAR "
            f"{rate_label(cfg.leakage_far)}, calibrated on raw-vs-raw impostor pairs of {calib['dataset']} "
            f"({calib['identities']} identities, {calib['repeats']} seeded draws, seeds {calib['seeds']}, "
            f"{calib['detector']} detection): COCO images carry no identities. Images without a face are counted "
            "in 'without face'."
        )
    buffer = io.StringIO()
    pd.DataFrame(per_image).to_csv(buffer, index=False, float_format="%.6g")
    notes = (
        f"{len(files)} images from {folder.relative_to(ctx.data_root)}; protected images "
        f"{'rounded to 8 bits' if quantize else 'kept in float'}; mean ± sample std over images. "
        f"PSNR capped at {PSNR_CAP_DB:g} dB (identical images). MS-SSIM: 5 scales, 11x11 Gaussian "
        "(fewer scales on images with a side <= 160 px); negative terms clamped to 0."
    ) + notes_leak
    return ExperimentResult(tables=tables, notes=notes, extra_files={"per_image.csv": buffer.getvalue().encode()})
