"""The bootstrap AP helper: equal to COCOeval at weight 1, intervals that cover and shrink."""

from __future__ import annotations

import numpy as np
import pytest

from campro_bench.utility.bootstrap import accumulate_ap, bootstrap_ap, per_image_matches
from campro_bench.utility.detection_eval import _coco_eval, evaluate_person_detections


def synthetic(n: int, seed: int) -> tuple[dict, list[dict]]:
    """``n`` 200x200 images with one person each; per image a jittered detection (score higher
    when it is closer) and a false positive, so AP is well inside (0, 1)."""
    rng = np.random.default_rng(seed)
    images, annotations, predictions = [], [], []
    for i in range(1, n + 1):
        x, y, w, h = rng.uniform(10, 60), rng.uniform(10, 60), rng.uniform(40, 120), rng.uniform(60, 130)
        images.append({"id": i, "width": 200, "height": 200, "file_name": f"{i}.jpg"})
        annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": [x, y, w, h],
                            "area": w * h, "iscrowd": 0})
        shift = rng.uniform(0, 0.5)
        predictions.append({"image_id": i, "category_id": 1, "bbox": [x + shift * w, y, w, h],
                            "score": float(np.clip(1 - shift + rng.normal(0, 0.2), 0.01, 1))})
        predictions.append({"image_id": i, "category_id": 1, "bbox": [150, 150, 40, 40],
                            "score": float(rng.uniform(0.01, 0.9))})
    gt = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}
    return gt, predictions


def test_weight_one_accumulation_is_cocoeval() -> None:
    gt, predictions = synthetic(120, seed=3)
    evaluator = _coco_eval(gt, predictions)
    ours = accumulate_ap(per_image_matches(evaluator))
    assert 0.05 < evaluator.stats[0] < 0.95
    assert ours["AP"] == pytest.approx(evaluator.stats[0], abs=1e-12)
    assert ours["AP@0.5"] == pytest.approx(evaluator.stats[1], abs=1e-12)
    assert ours["AP@0.75"] == pytest.approx(evaluator.stats[2], abs=1e-12)


def test_weights_equal_a_resampled_image_list() -> None:
    """Weight 2 on an image is the AP of the ground truth with that image listed twice."""
    gt, predictions = synthetic(40, seed=5)
    matches = per_image_matches(_coco_eval(gt, predictions))
    rng = np.random.default_rng(0)
    counts = np.bincount(rng.integers(0, 40, size=40), minlength=40)
    # the same draw as a COCO evaluation of copied images (new ids, copied detections)
    images, annotations, preds = [], [], []
    for index, count in enumerate(counts):
        for copy in range(count):
            new_id = 1000 * (copy + 1) + index + 1
            images.append({**gt["images"][index], "id": new_id})
            annotations.append({**gt["annotations"][index], "id": new_id, "image_id": new_id})
            preds += [{**p, "image_id": new_id} for p in predictions if p["image_id"] == index + 1]
    copied = _coco_eval({**gt, "images": images, "annotations": annotations}, preds)
    assert accumulate_ap(matches, counts)["AP"] == pytest.approx(copied.stats[0], abs=1e-9)


def test_interval_covers_the_estimate_and_shrinks_with_more_images() -> None:
    widths = []
    for n in (60, 600):
        gt, predictions = synthetic(n, seed=11)
        m = evaluate_person_detections(gt, predictions, bootstrap=300, seed=0)
        for key in ("AP", "AP@0.5", "AP@0.75"):
            assert m[f"{key}_lo"] <= m[key] <= m[f"{key}_hi"], (n, key)
        widths.append(m["AP_hi"] - m["AP_lo"])
    assert widths[1] < 0.6 * widths[0]  # ~ 1 / sqrt(10) in expectation


def test_bootstrap_is_seeded() -> None:
    gt, predictions = synthetic(50, seed=1)
    matches = per_image_matches(_coco_eval(gt, predictions))
    assert bootstrap_ap(matches, 100, seed=4) == bootstrap_ap(matches, 100, seed=4)
    assert bootstrap_ap(matches, 100, seed=4) != bootstrap_ap(matches, 100, seed=5)
    assert all(np.isnan(v) for v in bootstrap_ap(matches, 0).values())


def test_ground_truth_against_itself_is_one_with_a_degenerate_interval() -> None:
    gt, _ = synthetic(30, seed=2)
    perfect = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0}
               for a in gt["annotations"]]
    m = evaluate_person_detections(gt, perfect, bootstrap=50)
    assert m["AP"] == pytest.approx(1.0) and m["AP_lo"] == pytest.approx(1.0) and m["AP_hi"] == pytest.approx(1.0)
