"""COCO person-detection metrics: AP, AP@0.5, AP@0.75 and P / R / F1 at the F1-best threshold.

Ground truth, predictions and evaluation are separate, as in pycocotools:

* ground truth: a COCO annotation dict (``{"images", "annotations", "categories"}``), e.g.
  :attr:`campro_bench.datasets.coco.PersonDataset.coco`;
* predictions: COCO result records ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``
  (:meth:`~campro_bench.detection.base.Detections.to_coco`), from :func:`predict_person_boxes`;
* evaluation: :func:`evaluate_person_detections` (a plain function) or the accumulating
  :class:`PersonAPEvaluator`.

AP, AP@0.5 and AP@0.75 are pycocotools' ``COCOeval`` (bbox, person category, 101-point
interpolation, at most 100 detections per image, crowd boxes ignored). Precision, recall and F1
are the paper's Table III columns: detections matched at IoU 0.5 by COCOeval's own matching, all
images pooled, taken at the confidence threshold that maximises F1 (:func:`f1_optimal`).

With ``bootstrap = B > 0`` each AP also gets a 95 % percentile bootstrap interval over the
evaluated images (``AP_lo`` / ``AP_hi``, ...; :mod:`campro_bench.utility.bootstrap`), from the
one ``COCOeval`` matching re-accumulated per draw.
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..detection.base import PERSON_LABEL, Detections, PersonDetector, detect_images
from .bootstrap import AP_KEYS, bootstrap_ap, per_image_matches

METRICS = ("AP", "AP@0.5", "AP@0.75", "Precision", "Recall", "F1")
HIGHER_IS_BETTER = {m: True for m in METRICS}


def f1_optimal(scores: Sequence[float], is_tp: Sequence[bool], num_gt: int) -> dict[str, float]:
    """Precision, recall and F1 at the score threshold that maximises F1.

    Detections are sorted by score; keeping those with ``score >= t`` gives
    ``P = TP / (TP + FP)`` and ``R = TP / num_gt``. Returns the best ``{"threshold", "precision",
    "recall", "f1"}`` (all 0 when there is nothing to find or nothing found).
    """
    scores_arr = np.asarray(scores, dtype=np.float64)
    tp_arr = np.asarray(is_tp, dtype=bool)
    if num_gt <= 0 or scores_arr.size == 0:
        return {"threshold": 1.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    order = np.argsort(-scores_arr, kind="mergesort")
    scores_arr, tp_arr = scores_arr[order], tp_arr[order]
    tp = np.cumsum(tp_arr)
    fp = np.cumsum(~tp_arr)
    # only cut between different scores: a threshold keeps all detections of equal score
    last_of_score = np.r_[scores_arr[1:] != scores_arr[:-1], True]
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / num_gt
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    f1 = np.where(last_of_score, f1, -1.0)
    best = int(np.argmax(f1))
    return {
        "threshold": float(scores_arr[best]),
        "precision": float(precision[best]),
        "recall": float(recall[best]),
        "f1": float(max(f1[best], 0.0)),
    }


def _coco_eval(ground_truth: dict[str, Any], predictions: list[dict[str, Any]]):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(ground_truth)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(predictions))
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.params.catIds = [PERSON_LABEL]
        evaluator.params.imgIds = sorted(im["id"] for im in ground_truth["images"])
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def evaluate_person_detections(
    ground_truth: dict[str, Any], predictions: list[dict[str, Any]], f1_iou: float = 0.5,
    bootstrap: int = 0, seed: int = 0,
) -> dict[str, float]:
    """``{"AP", "AP@0.5", "AP@0.75", "Precision", "Recall", "F1", "threshold"}`` for person boxes,
    plus ``AP_lo`` / ``AP_hi`` (and for AP@0.5, AP@0.75) from ``bootstrap`` draws seeded by ``seed``
    when ``bootstrap > 0``.

    Predictions of other categories are ignored. With no predictions every metric is 0.
    """
    predictions = [p for p in predictions if p["category_id"] == PERSON_LABEL]
    num_gt = sum(
        1 for a in ground_truth["annotations"] if a["category_id"] == PERSON_LABEL and not a.get("iscrowd", 0)
    )
    if not predictions:
        empty = {f"{k}_{end}": 0.0 for k in AP_KEYS for end in ("lo", "hi")} if bootstrap > 0 else {}
        return {**{m: 0.0 for m in METRICS}, "threshold": 1.0, "num_gt": float(num_gt), "num_detections": 0.0,
                **empty}
    evaluator = _coco_eval(ground_truth, predictions)
    intervals = bootstrap_ap(per_image_matches(evaluator), bootstrap, seed) if bootstrap > 0 else {}
    stats = evaluator.stats
    t = int(np.argmin(np.abs(evaluator.params.iouThrs - f1_iou)))
    max_dets = evaluator.params.maxDets[-1]
    scores: list[float] = []
    is_tp: list[bool] = []
    num_gt_eval = 0
    for record in evaluator.evalImgs:
        # one record per (category, area range, image); area range "all" is the first
        if record is None or record["aRng"] != evaluator.params.areaRng[0] or record["maxDet"] != max_dets:
            continue
        dt_ignore = np.asarray(record["dtIgnore"][t], dtype=bool)
        matched = np.asarray(record["dtMatches"][t]) > 0
        scores.extend(np.asarray(record["dtScores"])[~dt_ignore].tolist())
        is_tp.extend(matched[~dt_ignore].tolist())
        num_gt_eval += int((~np.asarray(record["gtIgnore"], dtype=bool)).sum())
    best = f1_optimal(scores, is_tp, num_gt_eval)
    return {
        "AP": float(max(stats[0], 0.0)),
        "AP@0.5": float(max(stats[1], 0.0)),
        "AP@0.75": float(max(stats[2], 0.0)),
        "Precision": best["precision"],
        "Recall": best["recall"],
        "F1": best["f1"],
        "threshold": best["threshold"],
        "num_gt": float(num_gt),
        "num_detections": float(len(predictions)),
        **intervals,
    }


class PersonAPEvaluator:
    """Accumulates detections image by image (torchmetrics style): ``update`` then ``compute``."""

    higher_is_better = HIGHER_IS_BETTER

    def __init__(self, ground_truth: dict[str, Any]) -> None:
        self.ground_truth = ground_truth
        self.predictions: list[dict[str, Any]] = []

    def update(self, image_ids: Sequence[int], detections: Sequence[Detections]) -> None:
        for image_id, det in zip(image_ids, detections):
            self.predictions.extend(det.to_coco(image_id))

    def compute(self) -> dict[str, float]:
        return evaluate_person_detections(self.ground_truth, self.predictions)

    def reset(self) -> None:
        self.predictions = []


def predict_person_boxes(
    detector: PersonDetector,
    dataset,  # campro_bench.datasets.coco.PersonDataset
    protector: torch.nn.Module | None = None,
    score_threshold: float = 0.001,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    on_progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """COCO result records of ``detector`` on every image of ``dataset``.

    The protector (if any) is applied to the *full* image first, as a protecting camera would,
    then the detector sees the protected image. Images are processed in chunks of ``batch_size``.
    """
    records: list[dict[str, Any]] = []
    for start in range(0, len(dataset), batch_size):
        indices = range(start, min(start + batch_size, len(dataset)))
        images = []
        with torch.inference_mode():
            for i in indices:
                image = dataset.load_image(i).to(device)
                images.append(protector(image[None])[0] if protector is not None else image)
        for i, det in zip(indices, detect_images(detector, images, score_threshold, batch_size)):
            records.extend(det.to_coco(dataset.images[i].id))
        if on_progress is not None:
            on_progress(len(indices))
    return records


def evaluate_detector(
    detector: PersonDetector,
    dataset,
    protector: torch.nn.Module | None = None,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    on_progress: Callable[[int], None] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, float]:
    """Table III metrics of ``detector`` on ``dataset`` protected by ``protector`` (with
    ``bootstrap`` > 0: the AP intervals, see :func:`evaluate_person_detections`)."""
    predictions = predict_person_boxes(
        detector, dataset, protector, batch_size=batch_size, device=device, on_progress=on_progress
    )
    return evaluate_person_detections(dataset.coco, predictions, bootstrap=bootstrap, seed=seed)
