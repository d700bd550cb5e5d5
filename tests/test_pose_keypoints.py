"""Pose utilities: the MediaPipe -> COCO keypoint mapping, top-down crops and OKS keypoint AP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from campro_bench.errors import EmptyDatasetError, MissingFileError
from campro_bench.registries import POSE_ESTIMATORS
from campro_bench.utility.pose import (
    COCO_KEYPOINTS,
    MEDIAPIPE_TO_COCO,
    coco_from_dict,
    crop_square,
    keypoint_ap,
    keypoint_results,
    landmarks_to_coco,
    load_person_keypoints,
    square_crop_window,
)


def test_mapping_indices() -> None:
    assert len(MEDIAPIPE_TO_COCO) == len(COCO_KEYPOINTS) == 17
    assert MEDIAPIPE_TO_COCO == (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
    assert len(set(MEDIAPIPE_TO_COCO)) == 17 and max(MEDIAPIPE_TO_COCO) < 33


def test_mapping_matches_mediapipe_names() -> None:
    """Each COCO keypoint maps to the MediaPipe landmark of the same name."""
    from campro_bench.utility.pose import _import_mediapipe_pose

    landmark = _import_mediapipe_pose().PoseLandmark
    for name, index in zip(COCO_KEYPOINTS, MEDIAPIPE_TO_COCO):
        assert landmark[name.upper()] == index, name


def test_square_crop_window_and_padding() -> None:
    x0, y0, side = square_crop_window([10, 20, 40, 80], margin=0.25)
    assert side == 100 and (x0 + side / 2, y0 + side / 2) == (30, 60)  # centred, 1.25 x longer side
    assert square_crop_window([0, 0, 4, 4], margin=0.25, min_side=32)[2] == 32
    image = np.full((50, 60, 3), 7, np.uint8)
    crop = crop_square(image, -10, -5, 30)
    assert crop.shape == (30, 30, 3)
    assert (crop[:5] == 0).all() and (crop[:, :10] == 0).all() and (crop[5:, 10:] == 7).all()
    assert (crop_square(image, 100, 100, 8) == 0).all()  # entirely outside: black


def test_landmarks_to_coco_maps_back_to_image() -> None:
    landmarks = np.zeros((33, 3), np.float32)
    landmarks[:, 0] = np.arange(33) / 33.0
    landmarks[:, 1] = 0.5
    landmarks[:, 2] = 1.5  # out-of-range visibility is clipped
    out = landmarks_to_coco(landmarks, x0=10, y0=-20, side=66)
    assert out.shape == (17, 3)
    assert np.allclose(out[:, 0], 10 + np.array(MEDIAPIPE_TO_COCO) * 2.0)
    assert np.allclose(out[:, 1], -20 + 33.0) and np.all(out[:, 2] == 1.0)


def _toy_gt() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    images, anns = [], []
    for image_id in (1, 2):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 200, "height": 200})
        for k in range(2):
            x, y, w, h = 20.0 + 80 * k, 30.0, 60.0, 120.0
            pts = np.stack([rng.uniform(x, x + w, 17), rng.uniform(y, y + h, 17), np.full(17, 2.0)], 1)
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                         "bbox": [x, y, w, h], "area": w * h, "num_keypoints": 17,
                         "keypoints": [float(v) for v in pts.reshape(-1)]})
    categories = [{"id": 1, "name": "person", "keypoints": list(COCO_KEYPOINTS), "skeleton": []}]
    return {"images": images, "annotations": anns, "categories": categories}


def _as_results(anns: list[dict[str, Any]], shift: float = 0.0) -> list[dict[str, Any]]:
    results = []
    for a in anns:
        kp = np.array(a["keypoints"], np.float32).reshape(17, 3)
        kp[:, :2] += shift
        kp[:, 2] = 0.9
        results += keypoint_results(a["image_id"], kp[None])
    return results


def test_oks_ap_perfect_prediction_is_one() -> None:
    gt = _toy_gt()
    coco = coco_from_dict(gt)
    stats = keypoint_ap(coco, _as_results(gt["annotations"]), [1, 2])
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)
    assert stats["AR"] == pytest.approx(1.0)


def test_oks_ap_drops_with_error_and_misses() -> None:
    gt = _toy_gt()
    coco = coco_from_dict(gt)
    shifted = keypoint_ap(coco, _as_results(gt["annotations"], shift=6.0), [1, 2])["AP"]
    missing = keypoint_ap(coco, _as_results(gt["annotations"][:2]), [1, 2])
    assert 0.0 < shifted < 1.0
    assert missing["AR"] == pytest.approx(0.5)  # half of the persons were never predicted
    assert keypoint_ap(coco, [], [1, 2])["AP"] == 0.0


def test_keypoint_results_skip_not_found() -> None:
    kp = np.zeros((2, 17, 3), np.float32)
    kp[1, :, 2] = 0.5
    results = keypoint_results(7, kp)
    assert len(results) == 1 and results[0]["image_id"] == 7 and results[0]["score"] == pytest.approx(0.5)
    assert len(results[0]["keypoints"]) == 51


def test_load_person_keypoints_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="person_keypoints_val2017.json"):
        load_person_keypoints(tmp_path)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2017").mkdir()
    gt = _toy_gt()
    for a in gt["annotations"]:
        a["num_keypoints"] = 0
    (tmp_path / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(gt))
    with pytest.raises(EmptyDatasetError, match="no person with labelled keypoints"):
        load_person_keypoints(tmp_path)


@pytest.mark.realdata
def test_coco_mini_persons(data_root: Path) -> None:
    gt = load_person_keypoints(data_root / "coco-mini")
    # 118 person boxes in 39 images; 68 non-crowd with labelled keypoints, in 32 images
    assert gt.num_persons == 68 and len(gt.image_ids) == 32
    assert all(a["num_keypoints"] > 0 and not a["iscrowd"] for v in gt.persons.values() for a in v)
    assert load_person_keypoints(data_root / "coco-mini", limit=3).image_ids == gt.image_ids[:3]


def test_registered() -> None:
    entry = POSE_ESTIMATORS.entry("mediapipe-pose")
    assert entry.metadata["keypoints"] == "coco17" and entry.metadata["boxes"] == "xywh pixels"
