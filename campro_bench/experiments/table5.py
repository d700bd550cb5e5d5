"""Table V: utility of protected images for pose estimation (keypoint AP) and captioning (CIDEr).

For every protector of the protocol (``raw`` first), each COCO image is protected at full
resolution and rounded to 8 bits, then

* pose: the pose estimator runs top-down on every ground-truth person box with labelled
  keypoints (``person_keypoints_<split>.json``) and COCO's OKS keypoint AP is computed;
* captions: the captioner writes one caption per image of ``captions_<split>.json`` and CIDEr-D
  is computed against the reference captions. When no captioner can be built (BLIP weights are
  not available offline) the caption rows say ``unavailable: <reason>`` instead of a number.

The paper used HRNet (MMPose) and BLIP (LAVIS); the built-in pose estimator is MediaPipe Pose,
so absolute numbers differ from the paper's, and the comparison that carries over is raw vs
protected with the same model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..config import option
from ..datasets.coco import load_person_dataset
from ..datasets.fingerprint import fingerprint
from ..errors import CamproError
from ..protectors import build_protector
from ..registries import EXPERIMENTS
from ..utility.caption import build_captioner, caption_dataset, cider_d, load_coco_captions
from ..utility.pose import (
    build_pose_estimator,
    keypoint_ap,
    keypoints_of_person_dataset,
    load_person_keypoints,
    predict_keypoints,
)
from .base import ExperimentResult, RunContext
from .common import camera_transform, check_compare, expand_protector_specs, paper_table
from .spec import parse_protocol


@dataclass(frozen=True)
class PoseConfig:
    """``[pose]``: top-down pose estimation on the ground-truth person boxes."""

    enabled: bool = option(True, help="false: no pose rows")
    estimator: str = option("mediapipe-pose", help="a POSE_ESTIMATORS entry")
    dataset: str = option("coco-person-val", help="a person dataset (or spec) with keypoints whose val (test) "
                                                  "split is scored; '' = the table's dataset and split folders")
    bootstrap: int = option(1000, ge=0, le=100_000, help="bootstrap draws over the images for the AP's 95 % "
                                                         "interval (seeded by seed); 0 = none")
    options: dict[str, Any] = option(dict, help="the estimator's own options (checked by its factory)")


@dataclass(frozen=True)
class CaptionConfig:
    """``[caption]``: one caption per image, scored with CIDEr-D."""

    enabled: bool = option(True, help="false: caption rows say 'unavailable: disabled in the spec'")
    captioner: str = option("blip", help="a CAPTIONERS entry")
    path: str = option("", help="BLIP folder; '' = <models-dir>/blip")
    tokenizer: str = option("auto", help="auto: PTB (Java) when available, else the simple tokenizer")
    batch_size: int = option(8, ge=1, le=4096, help="images per captioning batch")
    options: dict[str, Any] = option(dict, help="the captioner's own options (checked by its factory)")


@dataclass(frozen=True)
class Table5Config:
    """The Table V protocol (``protocols/table5.toml``)."""

    seed: int = option(0, ge=0, help="seed of the bootstrap intervals (nothing else is random)")
    dataset: str = option("coco-mini", help="folder under the data root holding annotations/ and <split>/")
    split: str = option("val2017", help="COCO split")
    limit: int = option(0, ge=0, le=10_000_000, help="0 = every image, else the first N image ids (per task)")
    protectors: list[str] = option(lambda: ["raw"], help="protector specs; preset=* expands")
    pose: PoseConfig = option(PoseConfig, help="pose estimation")
    caption: CaptionConfig = option(CaptionConfig, help="captioning")


def _pose_rows(cfg: Table5Config, ctx: RunContext, protectors: list[str]) -> tuple[list[dict], pd.DataFrame]:
    name = cfg.pose.estimator
    if cfg.pose.dataset:  # a registered person dataset with keypoints: its test (val) persons
        persons = load_person_dataset(cfg.pose.dataset, ctx.data_root, "val")
        gt = keypoints_of_person_dataset(persons, cfg.limit)
        split_info = {"split_info": persons.split_info} if persons.split_info else {}
        ctx.manifest.data["pose"] = {"dataset": persons.name, "split": persons.split, "persons": gt.num_persons,
                                     **fingerprint(ctx.data_root, [gt.image_path(i) for i in gt.image_ids],
                                                   [gt.annotation_file]), **split_info}
    else:
        gt = load_person_keypoints(ctx.data_root / cfg.dataset, cfg.split, cfg.limit)
        ctx.manifest.data["pose"] = fingerprint(
            ctx.data_root, [gt.image_path(i) for i in gt.image_ids], [gt.annotation_file]
        )
    estimator = build_pose_estimator(name, **dict(cfg.pose.options))
    config = getattr(estimator, "config", lambda: {"name": name})()
    ctx.manifest.models["pose_estimator"] = config
    raw = {i: gt.load(i) for i in gt.image_ids}
    rows, details = [], []
    try:
        with ctx.progress("Table V pose", total=len(protectors) * len(gt.image_ids)) as advance:
            for spec_text in protectors:
                protector = build_protector(spec_text)
                ctx.manifest.models.setdefault("protectors", {})[spec_text] = protector.fingerprint()
                with ctx.manifest.timer(f"pose:{spec_text}"):
                    results = predict_keypoints(
                        estimator, gt, camera_transform(protector, ctx.device), raw, advance
                    )
                    stats = keypoint_ap(gt.coco, results, gt.image_ids, cfg.pose.bootstrap, cfg.seed)
                rows.append(_row("Human Pose Estimation", "AP (OKS)", name, spec_text, stats["AP"], "ok",
                                 stats.get("AP_lo", np.nan), stats.get("AP_hi", np.nan)))
                details.append({"protector": spec_text, "persons": gt.num_persons,
                                "poses_found": len(results), **stats})
    finally:
        close = getattr(estimator, "close", None)
        if callable(close):
            close()
    return rows, pd.DataFrame(details)


def _caption_rows(cfg: Table5Config, ctx: RunContext, protectors: list[str]) -> list[dict]:
    name = cfg.caption.captioner
    if not cfg.caption.enabled:
        return [_row("Image Caption", "CIDEr-D", name, p, np.nan, "unavailable: disabled in the spec")
                for p in protectors]
    data = load_coco_captions(ctx.data_root / cfg.dataset, cfg.split, cfg.limit)
    ctx.manifest.data["captions"] = fingerprint(
        ctx.data_root, [data.images_dir / data.files[i] for i in data.image_ids], [data.annotation_file]
    )
    options = dict(cfg.caption.options)
    if name == "blip":
        options.setdefault("path", cfg.caption.path or None)
        options.setdefault("models_dir", ctx.models_dir)
        options.setdefault("device", ctx.device)
    try:
        captioner = build_captioner(name, **options)
    except CamproError as exc:
        reason = f"unavailable: {exc}"
        ctx.manifest.notes["captioner"] = reason
        return [_row("Image Caption", "CIDEr-D", name, p, np.nan, reason) for p in protectors]
    ctx.manifest.models["captioner"] = getattr(captioner, "config", lambda: {"name": name})()
    raw = {i: data.load(i) for i in data.image_ids}
    rows, tokenizers = [], set()
    with ctx.progress("Table V captions", total=len(protectors) * len(data.image_ids)) as advance:
        for spec_text in protectors:
            transform = camera_transform(build_protector(spec_text), ctx.device)
            with ctx.manifest.timer(f"caption:{spec_text}"):
                captions = caption_dataset(captioner, data, transform, raw, cfg.caption.batch_size, advance)
                result = cider_d(data.references, captions, cfg.caption.tokenizer)
            tokenizers.add(result.tokenizer)
            rows.append(_row("Image Caption", "CIDEr-D", name, spec_text, result.score,
                             f"ok (tokenizer: {result.tokenizer})"))
            ctx.manifest.notes.setdefault("example_captions", {})[spec_text] = {
                str(i): captions[i] for i in data.image_ids[:3]
            }
    ctx.manifest.notes["caption_tokenizer"] = sorted(tokenizers)
    return rows


def _row(application: str, metric: str, model: str, protector: str, value: float, status: str,
         low: float = np.nan, high: float = np.nan) -> dict:
    """One Table V row; ``value_lo`` / ``value_hi``: its 95 % bootstrap interval where there is one."""
    return {"application": application, "metric": metric, "model": model, "image_type": protector,
            "value": value, "value_lo": low, "value_hi": high, "status": status}


@EXPERIMENTS.register(
    "table5", protocol="table5", free_tables=("pose.options", "caption.options"),
    description="Table V: pose keypoint AP and caption CIDEr-D on raw vs protected COCO images",
)
def run_table5(spec: dict[str, Any], ctx: RunContext) -> ExperimentResult:
    check_compare(ctx)
    cfg = parse_protocol(Table5Config, spec, "table5")
    protectors = expand_protector_specs(cfg.protectors)
    if not protectors:
        raise CamproError("the table5 spec needs 'protectors': a list of protector specs")
    ctx.manifest.notes["table5"] = {
        "image_selection": "every evaluated image in id order (limit > 0: the first N); no random choice",
        "camera_output": "protector applied to the full image, rounded to 8 bits",
    }
    tables: dict[str, pd.DataFrame] = {}
    rows: list[dict] = []
    if cfg.pose.enabled:
        pose_rows, tables["table5_pose"] = _pose_rows(cfg, ctx, protectors)
        rows += pose_rows
    rows += _caption_rows(cfg, ctx, protectors)
    tables = {"table5": pd.DataFrame(rows), **tables}
    if ctx.compare == "paper":
        tables["paper_table5"] = paper_table("table5_vision_apps.csv")
    notes = (
        "Pose: keypoint AP (COCO OKS, AP@[.5:.95]) of top-down estimation on ground-truth person "
        + (f"boxes of {cfg.pose.dataset}'s test images"
           + (f", value_lo / value_hi its 95 % bootstrap interval over the images ({cfg.pose.bootstrap} draws, "
              f"seed {cfg.seed})" if cfg.pose.bootstrap else "") if cfg.pose.dataset else "boxes")
        + ". Captions: CIDEr-D (pycocoevalcap) against the COCO reference captions. The paper "
        "used HRNet (MMPose) and BLIP (LAVIS); compare raw vs protected rows of the same model."
    )
    return ExperimentResult(tables=tables, notes=notes)
