"""MediaPipe Pose on real COCO persons, its determinism and its minimal dependency set."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from campro_bench.utility.pose import MediaPipePose, build_pose_estimator, load_person_keypoints

# well-visible persons of coco-mini val (>= 15 labelled keypoints): (image id, annotation id)
PERSONS = ((109313, 201384), (153797, 1710500), (368212, 1221298))


@pytest.fixture(scope="module")
def estimator() -> MediaPipePose:
    est = build_pose_estimator("mediapipe-pose")
    yield est
    est.close()


def _persons(data_root: Path) -> list[tuple[np.ndarray, dict]]:
    gt = load_person_keypoints(data_root / "coco-mini")
    out = []
    for image_id, ann_id in PERSONS:
        (ann,) = [a for a in gt.persons[image_id] if a["id"] == ann_id]
        out.append((gt.load(image_id), ann))
    return out


@pytest.mark.realdata
def test_keypoints_inside_boxes_and_close_to_truth(data_root: Path, estimator: MediaPipePose) -> None:
    for image, ann in _persons(data_root):
        kp = estimator.estimate(image, np.array([ann["bbox"]]))
        assert kp.shape == (1, 17, 3) and kp.dtype == np.float32
        kp = kp[0]
        x, y, w, h = ann["bbox"]
        pad_x, pad_y = 0.1 * w, 0.1 * h
        assert (kp[:, 0] >= x - pad_x).all() and (kp[:, 0] <= x + w + pad_x).all(), ann["id"]
        assert (kp[:, 1] >= y - pad_y).all() and (kp[:, 1] <= y + h + pad_y).all(), ann["id"]
        assert ((kp[:, 2] >= 0) & (kp[:, 2] <= 1)).all() and kp[:, 2].mean() > 0.5
        truth = np.array(ann["keypoints"], np.float32).reshape(17, 3)
        labelled = truth[:, 2] > 0
        error = np.linalg.norm(kp[labelled, :2] - truth[labelled, :2], axis=1) / np.hypot(w, h)
        assert error.mean() < 0.1, (ann["id"], error.mean())


@pytest.mark.realdata
def test_deterministic_and_order_independent(data_root: Path, estimator: MediaPipePose) -> None:
    (a_img, a), (b_img, b), _ = _persons(data_root)
    first = estimator.estimate(a_img, np.array([a["bbox"]]))
    estimator.estimate(b_img, np.array([b["bbox"]]))  # static mode: no state carried over
    again = estimator.estimate(a_img, np.array([a["bbox"]]))
    assert np.array_equal(first, again)
    # a float tensor input gives the same answer as the uint8 array
    import torch

    tensor = torch.from_numpy(a_img).permute(2, 0, 1).float() / 255.0
    assert np.array_equal(estimator.estimate(tensor, np.array([a["bbox"]])), first)


def test_blank_image_finds_nothing(estimator: MediaPipePose) -> None:
    kp = estimator.estimate(np.zeros((120, 100, 3), np.uint8), np.array([[10, 10, 50, 80], [0, 0, 20, 20]]))
    assert kp.shape == (2, 17, 3) and not kp.any()


@pytest.mark.realdata
def test_runs_with_only_the_declared_runtime_dependencies(data_root: Path) -> None:
    """mediapipe is installed --no-deps: pose must work without jax, sounddevice, TensorFlow."""
    image_id, ann_id = PERSONS[0]
    script = textwrap.dedent(
        f"""
        import sys
        for name in ("jax", "jaxlib", "sounddevice", "tensorflow", "sentencepiece", "keras"):
            sys.modules[name] = None  # any import of these now fails
        from pathlib import Path
        import numpy as np
        from campro_bench.utility.pose import MediaPipePose, load_person_keypoints
        gt = load_person_keypoints(Path({str(data_root / "coco-mini")!r}))
        (ann,) = [a for a in gt.persons[{image_id}] if a["id"] == {ann_id}]
        with MediaPipePose() as est:
            kp = est.estimate(gt.load({image_id}), np.array([ann["bbox"]]))
        assert kp[0, :, 2].max() > 0, "no pose found"
        print("OK", sorted(m for m in ("jax", "sounddevice", "tensorflow") if sys.modules.get(m)))
        """
    )
    env = {**os.environ, "GLOG_minloglevel": "2"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OK []" in proc.stdout


def test_importing_pose_does_not_load_mediapipe() -> None:
    code = "import sys, campro_bench.utility.pose; print('mediapipe' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-1000:]
