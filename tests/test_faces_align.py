"""Alignment: the similarity fit, the warp direction, and real crops for every alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from campro_bench.faces.align import ARCFACE_TEMPLATE, ALIGNMENTS, centre_face, get_alignment, similarity_transform
from campro_bench.faces.detectors.mtcnn import MTCNNDetector
from campro_bench.faces.detection import primary_face
from campro_bench.io import load_image


def test_similarity_transform_recovers_a_known_transform() -> None:
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = ARCFACE_TEMPLATE * 1.3 + 40
    dst = src @ rot.T + shift
    matrix = similarity_transform(src, dst)
    assert np.allclose(matrix[:, :2], rot, atol=1e-9) and np.allclose(matrix[:, 2], shift, atol=1e-9)


def test_warp_moves_landmarks_onto_the_template() -> None:
    """Paint five dots at rotated, scaled landmark positions; after alignment each dot must sit on
    its template point (checks the direction and convention of the warp, not only the fit)."""
    image = np.zeros((300, 300, 3), np.uint8)
    angle = 0.25
    rot = 2.0 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (ARCFACE_TEMPLATE - 56) @ rot.T + [150, 140]
    crops = []
    for k, (x, y) in enumerate(landmarks):
        img = image.copy()
        xi, yi = int(round(x)), int(round(y))
        img[yi - 3 : yi + 4, xi - 3 : xi + 4] = 255
        crops.append(get_alignment("arcface-112")(img, np.zeros(4), landmarks)[..., 0].astype(float))
    for (tx, ty), crop in zip(ARCFACE_TEMPLATE, crops):
        ys, xs = np.nonzero(crop > 60)
        w = crop[ys, xs]
        assert abs((xs * w).sum() / w.sum() - tx) < 1.0 and abs((ys * w).sum() / w.sum() - ty) < 1.0


@pytest.mark.realdata
def test_real_alignments(data_root: Path) -> None:
    image = load_image(data_root / "lfw" / "images" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    faces = MTCNNDetector().detect([image])[0]
    j = primary_face(faces, image.shape)
    box, marks = faces.boxes[j], faces.landmarks[j]
    # the least-squares fit leaves a small residual: real faces are close to the template's shape
    matrix = similarity_transform(marks, ARCFACE_TEMPLATE)
    mapped = marks @ matrix[:, :2].T + matrix[:, 2]
    residual = np.linalg.norm(mapped - ARCFACE_TEMPLATE, axis=1)
    assert residual.mean() < 3.0 and residual.max() < 8.0 and residual[:2].max() < 2.0  # eyes fit best
    assert set(ALIGNMENTS.names()) >= {"arcface-112", "facenet-160", "dlib-150"}
    for name in ("arcface-112", "facenet-160", "dlib-150"):
        alignment = get_alignment(name)
        crop = alignment(image, box, marks)
        assert crop.shape == (*alignment.size, 3) and crop.dtype == np.uint8
        assert 40 < crop.mean() < 220  # a face, not a border
    # facenet-160 is the MTCNN box grown by 16 px per side, resized: the box centre stays central
    crop = get_alignment("facenet-160")(image, box, marks)
    assert crop.shape == (160, 160, 3)


def test_centre_face_is_central_and_template_shaped() -> None:
    box, marks = centre_face((250, 200, 3))
    assert np.allclose(box, [50, 75, 150, 175])
    matrix = similarity_transform(marks, ARCFACE_TEMPLATE)
    assert np.allclose(marks @ matrix[:, :2].T + matrix[:, 2], ARCFACE_TEMPLATE, atol=1e-4)
