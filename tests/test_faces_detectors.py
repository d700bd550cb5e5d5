"""The four face detectors on real LFW faces: one central face, landmarks in ArcFace order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from campro_bench.errors import CamproError
from campro_bench.faces.detection import Faces, build_face_detector, primary_face
from campro_bench.io import load_image

IMAGES = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Abdullah_Gul/Abdullah_Gul_0002.jpg"]


@pytest.fixture(scope="module")
def images(data_root: Path) -> list[np.ndarray]:
    return [load_image(data_root / "lfw" / "images" / name) for name in IMAGES]


@pytest.fixture(scope="module")
def mtcnn_faces(images: list[np.ndarray]) -> list[Faces]:
    return build_face_detector("mtcnn").detect(images)


@pytest.mark.realdata
@pytest.mark.parametrize("spec", ["mtcnn", "yunet", "centerface", "dlib", "retinaface"])
def test_detector_finds_the_face_in_arcface_order(spec: str, images: list[np.ndarray], mtcnn_faces: list[Faces]) -> None:
    detector = build_face_detector(spec)
    for image, found, reference in zip(images, detector.detect(images), mtcnn_faces):
        j = primary_face(found, image.shape)
        assert j is not None
        box, (le, re, nose, lm, rm), score = found.boxes[j], found.landmarks[j], found.scores[j]
        assert le[0] < nose[0] < re[0] and lm[0] < rm[0]  # image-left eye first, mouth corners left-right
        assert max(le[1], re[1]) < nose[1] < min(lm[1], rm[1])  # eyes above nose above mouth
        assert box[0] <= le[0] and re[0] <= box[2] and box[1] <= le[1] <= box[3]  # inside the box
        assert 60 < box[0] + (box[2] - box[0]) / 2 < 190  # the LFW subject is central
        assert score > 0
        ref = reference.landmarks[primary_face(reference, image.shape)]
        assert np.abs(found.landmarks[j][:2] - ref[:2]).max() < 10  # eyes agree with MTCNN's
    assert len(detector.detect([np.full((200, 200, 3), 128, np.uint8)])[0]) == 0  # nothing in a blank frame


def test_lenient_variants_and_specs() -> None:
    mtcnn = build_face_detector("mtcnn:onet=0.8")
    assert mtcnn.config() == {"name": "mtcnn", "pnet": 0.6, "rnet": 0.7, "onet": 0.8, "min_face_size": 20}
    assert max(mtcnn.lenient().params()["onet"], mtcnn.lenient().params()["rnet"]) < 0.7
    assert build_face_detector("yunet").lenient().params()["threshold"] == 0.5
    assert build_face_detector("centerface:threshold=0.6").lenient().params()["threshold"] == 0.2
    dlib = build_face_detector("dlib:model=cnn,upsample=0")
    assert dlib.params() == {"model": "cnn", "upsample": 0, "threshold": 0.0}
    assert dlib.lenient().params()["upsample"] == 1
    with pytest.raises(CamproError, match="dlib detector model must be 'hog' or 'cnn'"):
        build_face_detector("dlib:model=haar")
    with pytest.raises(CamproError, match=r"option threshold='high' in 'yunet:threshold=high' has the wrong type"):
        build_face_detector("yunet:threshold=high")


@pytest.mark.realdata
def test_mtcnn_threads_give_the_one_at_a_time_detections_bit_for_bit(data_root: Path) -> None:
    """Detecting images concurrently (one per thread) must not change a single bit of any box,
    score or landmark: cached crops must not depend on the machine's core count."""
    folder = data_root / "lfw" / "images"
    names = sorted(p.relative_to(folder).as_posix() for p in folder.glob("A[a-b]*/*.jpg"))[:8]
    images = [load_image(folder / name) for name in names]
    detector = build_face_detector("mtcnn")
    alone, threaded = detector.detect(images, workers=1), detector.detect(images, workers=3)
    assert len(threaded) == len(images)
    for one, many in zip(alone, threaded):
        assert len(one.boxes) > 0
        for field in ("boxes", "scores", "landmarks"):
            assert np.array_equal(getattr(one, field), getattr(many, field))
