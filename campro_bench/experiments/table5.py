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

from typing import Any

import numpy as np
import pandas as pd

from ..datasets.fingerprint import fingerprint
from ..errors import CamproError
from ..protectors import build_protector
from ..registries import EXPERIMENTS
from ..utility.caption import build_captioner, caption_dataset, cider_d, load_coco_captions
from ..utility.pose import build_pose_estimator, keypoint_ap, load_person_keypoints, predict_keypoints
from .base import ExperimentResult, RunContext
from .common import camera_transform, check_compare, expand_protector_specs, paper_table


def _pose_rows(spec: dict[str, Any], ctx: RunContext, protectors: list[str]) -> tuple[list[dict], pd.DataFrame]:
    cfg = dict(spec.get("pose", {}))
    name = str(cfg.get("estimator", "mediapipe-pose"))
    gt = load_person_keypoints(ctx.data_root / str(spec.get("dataset", "coco-mini")),
                               str(spec.get("split", "val2017")), int(spec.get("limit", 0)))
    ctx.manifest.data["pose"] = fingerprint(
        ctx.data_root, [gt.image_path(i) for i in gt.image_ids], [gt.annotation_file]
    )
    estimator = build_pose_estimator(name, **dict(cfg.get("options", {})))
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
                    stats = keypoint_ap(gt.coco, results, gt.image_ids)
                rows.append(_row("Human Pose Estimation", "AP (OKS)", name, spec_text, stats["AP"], "ok"))
                details.append({"protector": spec_text, "persons": gt.num_persons,
                                "poses_found": len(results), **stats})
    finally:
        close = getattr(estimator, "close", None)
        if callable(close):
            close()
    return rows, pd.DataFrame(details)


def _caption_rows(spec: dict[str, Any], ctx: RunContext, protectors: list[str]) -> list[dict]:
    cfg = dict(spec.get("caption", {}))
    name = str(cfg.get("captioner", "blip"))
    if not cfg.get("enabled", True):
        return [_row("Image Caption", "CIDEr-D", name, p, np.nan, "unavailable: disabled in the spec")
                for p in protectors]
    data = load_coco_captions(ctx.data_root / str(spec.get("dataset", "coco-mini")),
                              str(spec.get("split", "val2017")), int(spec.get("limit", 0)))
    ctx.manifest.data["captions"] = fingerprint(
        ctx.data_root, [data.images_dir / data.files[i] for i in data.image_ids], [data.annotation_file]
    )
    options = dict(cfg.get("options", {}))
    if name == "blip":
        options.setdefault("path", str(cfg.get("path", "")) or None)
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
                captions = caption_dataset(captioner, data, transform, raw,
                                           int(cfg.get("batch_size", 8)), advance)
                result = cider_d(data.references, captions, str(cfg.get("tokenizer", "auto")))
            tokenizers.add(result.tokenizer)
            rows.append(_row("Image Caption", "CIDEr-D", name, spec_text, result.score,
                             f"ok (tokenizer: {result.tokenizer})"))
            ctx.manifest.notes.setdefault("example_captions", {})[spec_text] = {
                str(i): captions[i] for i in data.image_ids[:3]
            }
    ctx.manifest.notes["caption_tokenizer"] = sorted(tokenizers)
    return rows


def _row(application: str, metric: str, model: str, protector: str, value: float, status: str) -> dict:
    return {"application": application, "metric": metric, "model": model, "image_type": protector,
            "value": value, "status": status}


@EXPERIMENTS.register(
    "table5", protocol="table5", free_tables=("pose.options", "caption.options"),
    description="Table V: pose keypoint AP and caption CIDEr-D on raw vs protected COCO images",
)
def run_table5(spec: dict[str, Any], ctx: RunContext) -> ExperimentResult:
    check_compare(ctx)
    protectors = expand_protector_specs([str(p) for p in spec.get("protectors", ["raw"])])
    if not protectors:
        raise CamproError("the table5 spec needs 'protectors': a list of protector specs")
    ctx.manifest.notes["table5"] = {
        "image_selection": "every evaluated image in id order (limit > 0: the first N); no random choice",
        "camera_output": "protector applied to the full image, rounded to 8 bits",
    }
    tables: dict[str, pd.DataFrame] = {}
    rows: list[dict] = []
    if spec.get("pose", {}).get("enabled", True):
        pose_rows, tables["table5_pose"] = _pose_rows(spec, ctx, protectors)
        rows += pose_rows
    rows += _caption_rows(spec, ctx, protectors)
    tables = {"table5": pd.DataFrame(rows), **tables}
    if ctx.compare == "paper":
        tables["paper_table5"] = paper_table("table5_vision_apps.csv")
    notes = (
        "Pose: keypoint AP (COCO OKS, AP@[.5:.95]) of top-down estimation on ground-truth person "
        "boxes. Captions: CIDEr-D (pycocoevalcap) against the COCO reference captions. The paper "
        "used HRNet (MMPose) and BLIP (LAVIS); compare raw vs protected rows of the same model."
    )
    return ExperimentResult(tables=tables, notes=notes)
