"""Bootstrap intervals for COCO AP: resample the evaluated images, re-accumulate, read percentiles.

COCO AP is a statistic of a set of images, so its sampling error is estimated by the bootstrap
over images (Efron's percentile interval): draw ``len(images)`` images with replacement, compute
AP on the draw, repeat ``B`` times and take the 2.5 and 97.5 percentiles of the ``B`` values.

Matching detections to ground truth is the costly part of ``COCOeval`` and does not depend on
which images are drawn, so it runs once (``COCOeval.evaluate()``). :func:`per_image_matches`
keeps, for the area range "all" and the largest ``maxDet``, every detection's score, its match
flag and ignore flag at each IoU (or OKS) threshold, and each image's count of non-ignored ground
truth. :func:`accumulate_ap` then re-does ``COCOeval.accumulate()`` for one category with a
*weight* per image (how often the draw holds it): a detection counts ``weight`` times in the
cumulative true / false positives, an image's ground truth ``weight`` times in the recall
denominator. With all weights 1 it is ``COCOeval``'s own AP (detections sorted by score with a
stable sort over the images in id order, precision made monotone from the right, read at the 101
recall thresholds, zero past the largest recall; a test checks it against ``COCOeval.stats``).
Counting a detection twice at once, instead of as two neighbours of equal score, gives the same
interpolated precision, so the weighted sum is the AP of the resampled image list.

One bootstrap draw costs a cumulative sum over the pooled detections (a few milliseconds for 500
images), against a full ``COCOeval`` run (about a second) per draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_BOOTSTRAP = 1000
"""Bootstrap draws per interval: the percentile error of a 95 % interval at B = 1000 is about
0.1 of its half-width (Efron & Tibshirani, ch. 13), small beside the interval itself."""

CONFIDENCE = 0.95
AP_KEYS = ("AP", "AP@0.5", "AP@0.75")


@dataclass(frozen=True)
class PerImageMatches:
    """Detections pooled over the evaluated images, in ``COCOeval``'s order (image id, then the
    image's detections by score), with what ``accumulate`` needs of each.

    ``scores`` (N), ``image`` (N, index into the image list), ``tp`` / ``fp`` (T x N bool: matched
    / unmatched and not ignored at each threshold), ``num_gt`` (images: non-ignored ground truth),
    ``iou_thresholds`` (T) and ``recall_thresholds`` (R) from the evaluator's parameters.
    """

    scores: np.ndarray
    image: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    num_gt: np.ndarray
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray

    @property
    def num_images(self) -> int:
        return len(self.num_gt)


def per_image_matches(evaluator: Any) -> PerImageMatches:
    """The matches of an evaluated ``COCOeval`` (after ``evaluate()``; one category), area "all"."""
    params = evaluator.params
    num_images = len(params.imgIds)
    max_det = params.maxDets[-1]
    records = evaluator.evalImgs[:num_images]  # category 0, area range 0 ("all"), every image
    thresholds = np.asarray(params.iouThrs, dtype=np.float64)
    scores, image, tp, fp = [], [], [], []
    num_gt = np.zeros(num_images, dtype=np.int64)
    for index, record in enumerate(records):
        if record is None:
            continue
        assert record["aRng"] == params.areaRng[0] and record["maxDet"] == max_det
        matched = np.asarray(record["dtMatches"], dtype=np.float64)[:, :max_det].reshape(len(thresholds), -1)
        ignored = np.asarray(record["dtIgnore"], dtype=bool)[:, :max_det].reshape(len(thresholds), -1)
        scores.append(np.asarray(record["dtScores"], dtype=np.float64)[:max_det])
        image.append(np.full(matched.shape[1], index, dtype=np.int64))
        tp.append((matched > 0) & ~ignored)
        fp.append((matched == 0) & ~ignored)
        num_gt[index] = int((~np.asarray(record["gtIgnore"], dtype=bool)).sum())
    width = len(thresholds)
    return PerImageMatches(
        scores=np.concatenate(scores) if scores else np.zeros(0),
        image=np.concatenate(image) if image else np.zeros(0, dtype=np.int64),
        tp=np.concatenate(tp, axis=1) if tp else np.zeros((width, 0), dtype=bool),
        fp=np.concatenate(fp, axis=1) if fp else np.zeros((width, 0), dtype=bool),
        num_gt=num_gt,
        iou_thresholds=thresholds,
        recall_thresholds=np.asarray(params.recThrs, dtype=np.float64),
    )


def _sorted(matches: PerImageMatches) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-matches.scores, kind="mergesort")
    return matches.image[order], matches.tp[:, order], matches.fp[:, order]


def _ap_per_threshold(image: np.ndarray, tp: np.ndarray, fp: np.ndarray, num_gt: np.ndarray,
                      recall_thresholds: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AP at each threshold (T) of detections already sorted by score, images weighted; -1 when
    the weighted ground truth is empty (``COCOeval``'s "no value")."""
    total_gt = float(np.dot(weights, num_gt))
    if total_gt <= 0:
        return np.full(tp.shape[0], -1.0)
    if tp.shape[1] == 0:
        return np.zeros(tp.shape[0])
    w = weights[image].astype(np.float64)
    tp_sum = np.cumsum(tp * w, axis=1)
    fp_sum = np.cumsum(fp * w, axis=1)
    recall = tp_sum / total_gt
    precision = tp_sum / (tp_sum + fp_sum + np.spacing(1))
    precision = np.flip(np.maximum.accumulate(np.flip(precision, axis=1), axis=1), axis=1)
    out = np.empty(tp.shape[0])
    for t in range(tp.shape[0]):
        at = np.searchsorted(recall[t], recall_thresholds, side="left")
        q = np.zeros(len(recall_thresholds))
        inside = at < recall.shape[1]
        q[inside] = precision[t, at[inside]]
        out[t] = q.mean()
    return out


def _summaries(per_threshold: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    """AP (mean over thresholds with a value), AP@0.5, AP@0.75; 0 where there is no value."""
    valid = per_threshold[per_threshold > -1]
    out = {"AP": float(valid.mean()) if valid.size else 0.0}
    for key, iou in (("AP@0.5", 0.5), ("AP@0.75", 0.75)):
        t = int(np.argmin(np.abs(thresholds - iou)))
        out[key] = float(max(per_threshold[t], 0.0))
    return out


def accumulate_ap(matches: PerImageMatches, weights: np.ndarray | None = None) -> dict[str, float]:
    """``{"AP", "AP@0.5", "AP@0.75"}`` of the images weighted by ``weights`` (default: all 1)."""
    weights = np.ones(matches.num_images) if weights is None else np.asarray(weights, dtype=np.float64)
    image, tp, fp = _sorted(matches)
    per_t = _ap_per_threshold(image, tp, fp, matches.num_gt, matches.recall_thresholds, weights)
    return _summaries(per_t, matches.iou_thresholds)


def bootstrap_ap(matches: PerImageMatches, draws: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                 confidence: float = CONFIDENCE) -> dict[str, float]:
    """Percentile bootstrap interval of each AP over the images: ``{"AP_lo", "AP_hi", ...}``.

    Each of ``draws`` samples draws ``num_images`` images with replacement
    (``numpy.random.default_rng(seed)``); the interval is the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles of the samples' AP. ``draws = 0`` gives no interval (NaN).
    """
    keys = [f"{k}_{end}" for k in AP_KEYS for end in ("lo", "hi")]
    n = matches.num_images
    if draws <= 0 or n == 0:
        return {k: float("nan") for k in keys}
    rng = np.random.default_rng(seed)
    image, tp, fp = _sorted(matches)
    samples = np.empty((draws, len(AP_KEYS)))
    for b in range(draws):
        weights = np.bincount(rng.integers(0, n, size=n), minlength=n).astype(np.float64)
        per_t = _ap_per_threshold(image, tp, fp, matches.num_gt, matches.recall_thresholds, weights)
        summary = _summaries(per_t, matches.iou_thresholds)
        samples[b] = [summary[k] for k in AP_KEYS]
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha], axis=0)
    out: dict[str, float] = {}
    for i, key in enumerate(AP_KEYS):
        out[f"{key}_lo"], out[f"{key}_hi"] = float(low[i]), float(high[i])
    return out
