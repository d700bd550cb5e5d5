"""COCO person AP and the F1-optimal operating point on toy ground truth with known answers."""

from __future__ import annotations

import pytest
import torch

from campro_bench.detection import Detections
from campro_bench.utility.detection_eval import PersonAPEvaluator, evaluate_person_detections, f1_optimal


def toy_ground_truth() -> dict:
    """Two 100x100 images: 2 persons in image 1, 1 person in image 2, one crowd box in image 2."""
    boxes = {1: [[10, 10, 40, 80], [60, 10, 30, 60]], 2: [[20, 20, 50, 50]]}
    annotations = []
    for image_id, rows in boxes.items():
        for b in rows:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "bbox": b, "area": b[2] * b[3], "iscrowd": 0})
    annotations.append({"id": 99, "image_id": 2, "category_id": 1, "bbox": [0, 80, 100, 20],
                        "area": 2000, "iscrowd": 1})
    return {
        "images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in (1, 2)],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person"}],
    }


def perfect_predictions(gt: dict, dx: float = 0.0, score: float = 0.9) -> list[dict]:
    return [
        {"image_id": a["image_id"], "category_id": 1, "bbox": [a["bbox"][0] + dx, *a["bbox"][1:]], "score": score}
        for a in gt["annotations"] if not a["iscrowd"]
    ]


def test_perfect_detections_score_one() -> None:
    gt = toy_ground_truth()
    m = evaluate_person_detections(gt, perfect_predictions(gt))
    for key in ("AP", "AP@0.5", "AP@0.75", "Precision", "Recall", "F1"):
        assert m[key] == pytest.approx(1.0), key
    assert m["num_gt"] == 3


def test_shifted_boxes_score_lower_and_by_iou_threshold() -> None:
    gt = toy_ground_truth()
    perfect = evaluate_person_detections(gt, perfect_predictions(gt))
    # a 6 px shift of a 30..50 px wide box: IoU 0.67-0.79, above 0.5, below 0.8 for all
    shifted = evaluate_person_detections(gt, perfect_predictions(gt, dx=6))
    assert shifted["AP@0.5"] == pytest.approx(1.0)
    assert shifted["AP@0.75"] < 1.0
    assert shifted["AP"] < perfect["AP"]
    assert shifted["F1"] == pytest.approx(1.0)  # P/R/F1 are taken at IoU 0.5
    far = evaluate_person_detections(gt, perfect_predictions(gt, dx=200))  # no overlap at all
    assert far["AP"] == pytest.approx(0.0) and far["F1"] == pytest.approx(0.0)


def test_false_positives_and_misses_lower_precision_and_recall() -> None:
    gt = toy_ground_truth()
    preds = perfect_predictions(gt)[:2]  # image 2's person missed
    preds.append({"image_id": 2, "category_id": 1, "bbox": [70, 0, 10, 10], "score": 0.95})  # false positive
    preds.append({"image_id": 2, "category_id": 1, "bbox": [0, 80, 100, 20], "score": 0.99})  # on the crowd: ignored
    preds.append({"image_id": 1, "category_id": 3, "bbox": [10, 10, 40, 80], "score": 0.99})  # a car: ignored
    m = evaluate_person_detections(gt, preds)
    # best F1: all kept -> P = 2/3, R = 2/3 (vs. threshold above 0.95 -> P = 0, R = 0)
    assert m["Precision"] == pytest.approx(2 / 3)
    assert m["Recall"] == pytest.approx(2 / 3)
    assert m["F1"] == pytest.approx(2 / 3)
    assert 0.0 < m["AP@0.5"] < 1.0
    assert evaluate_person_detections(gt, [])["AP"] == 0.0


def test_f1_optimal_threshold_on_a_hand_computed_case() -> None:
    # sorted scores: TP, FP, TP, TP, FP, TP with 5 objects
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    is_tp = [True, False, True, True, False, True]
    # threshold 0.9: P 1, R .2, F1 .333; 0.8: .5/.2/.286; 0.7: .667/.4/.5; 0.6: .75/.6/.667;
    # 0.5: .6/.6/.6; 0.4: .667/.8/.727  -> the best is the last
    best = f1_optimal(scores, is_tp, num_gt=5)
    assert best["threshold"] == pytest.approx(0.4)
    assert best["precision"] == pytest.approx(4 / 6)
    assert best["recall"] == pytest.approx(0.8)
    assert best["f1"] == pytest.approx(2 * (4 / 6) * 0.8 / (4 / 6 + 0.8))
    # with 10 objects the missing ones do not change the arg-max but lower recall
    assert f1_optimal(scores, is_tp, num_gt=10)["recall"] == pytest.approx(0.4)
    # equal scores are kept or dropped together
    tied = f1_optimal([0.9, 0.5, 0.5], [True, False, True], num_gt=2)
    assert tied["threshold"] == 0.5 and tied["recall"] == pytest.approx(1.0)
    assert f1_optimal([], [], 3)["f1"] == 0.0


def test_evaluator_accumulates_detections_objects() -> None:
    gt = toy_ground_truth()
    evaluator = PersonAPEvaluator(gt)
    for image_id in (1, 2):
        rows = [a["bbox"] for a in gt["annotations"] if a["image_id"] == image_id and not a["iscrowd"]]
        boxes = torch.tensor(rows, dtype=torch.float32)
        boxes[:, 2:] += boxes[:, :2]
        det = Detections(boxes, torch.full((len(rows),), 0.8), torch.ones(len(rows), dtype=torch.int64))
        evaluator.update([image_id], [det])
    assert evaluator.compute()["AP"] == pytest.approx(1.0)
    evaluator.reset()
    assert evaluator.compute()["AP"] == 0.0
