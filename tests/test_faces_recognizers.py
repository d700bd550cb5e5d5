"""The offline recognisers: FaceNet-CASIA conversion against TensorFlow, SFace against OpenCV,
dlib-resnet against dlib's own chip pipeline, and the contracts."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from campro_bench.errors import CheckpointError
from campro_bench.faces.align import get_alignment
from campro_bench.faces.detection import primary_face
from campro_bench.faces.detectors.mtcnn import MTCNNDetector
from campro_bench.faces.embeddings import weights_identity
from campro_bench.io import load_image, uint8_to_tensor
from campro_bench.recognizers import facenet_casia
from campro_bench.recognizers.base import contract_of, create_face_recognizer
from campro_bench.io.tf_graph import read_frozen_graph
from campro_bench.recognizers.tf_reference import ReferenceResult, available_runners, run_reference

TOLERANCE = 1e-5  # unit-length 512-d embeddings; the float32 conversion is exact to ~2e-7


@pytest.fixture(scope="module")
def face(data_root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = load_image(data_root / "lfw" / "images" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    faces = MTCNNDetector().detect([image])[0]
    j = primary_face(faces, image.shape)
    return image, faces.boxes[j], faces.landmarks[j]


@pytest.mark.skipif("tensorflow" not in available_runners(), reason="needs the dev extra tensorflow-cpu")
@pytest.mark.realdata
def test_facenet_conversion_matches_tensorflow(cache_dir: Path, face: tuple) -> None:
    """The converted model reproduces the original frozen graph on a real aligned face."""
    path, meta = facenet_casia.converted_weights(cache_dir)
    check = meta["reference_check"]
    assert check["status"] == "passed" and check["max_abs_diff"] < TOLERANCE, check
    model = create_face_recognizer("facenet-casia", cache_dir=cache_dir)
    crop = get_alignment("facenet-160")(*face)
    x = uint8_to_tensor(crop[None])
    with torch.inference_mode():
        ours = model(x).numpy()
    standardised = (crop[None].astype(np.float32) - 127.5) / 128.0  # the graph takes standardised NHWC
    reference = run_reference(facenet_casia.graph_path(), standardised, "input:0", "embeddings:0")
    assert reference.output is not None, reference.detail
    assert np.abs(ours - reference.output).max() < TOLERANCE


def test_conversion_without_a_runner_is_recorded_unchecked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(facenet_casia, "run_reference", lambda *a, **k: ReferenceResult(None, None, "no runner"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path, meta = facenet_casia.converted_weights(tmp_path)
    assert path.is_file() and meta["reference_check"] == {"status": "unchecked", "reason": "no runner"}
    assert any("without a reference check" in str(w.message) for w in caught)


def test_converter_names_missing_weights() -> None:
    graph = read_frozen_graph(facenet_casia.graph_path())
    del graph.nodes["InceptionResnetV1/Block8/Conv2d_1x1/Conv2D"]
    with pytest.raises(CheckpointError, match=r"graph_final.pb does not match InceptionResnetV1: missing \['block8.conv2d.weight'"):
        facenet_casia.convert_graph(graph)


def test_facenet_is_differentiable(cache_dir: Path) -> None:
    model = create_face_recognizer("facenet-casia", cache_dir=cache_dir)
    x = torch.rand(2, 3, 160, 160, requires_grad=True)
    model(x)[:, 0].sum().backward()
    assert model.differentiable and x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.realdata
def test_sface_matches_opencv(face: tuple) -> None:
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "FaceRecognizerSF"):
        pytest.skip("this OpenCV has no FaceRecognizerSF")
    from campro_bench.recognizers import sface

    crop = get_alignment("arcface-112")(*face)
    reference = cv2.FaceRecognizerSF.create(str(sface.WEIGHTS.path()), "").feature(np.ascontiguousarray(crop[:, :, ::-1]))
    reference = reference.reshape(-1) / np.linalg.norm(reference)
    with torch.inference_mode():
        ours = create_face_recognizer("sface")(uint8_to_tensor(crop[None]))[0].numpy()
    assert np.abs(ours - reference).max() < 1e-5  # OpenCV's BGR input = our RGB contract


@pytest.mark.realdata
def test_dlib_chip_matches_dlib_pipeline(face: tuple) -> None:
    import dlib

    from campro_bench.faces.detectors.dlib_hog import dlib_model

    image, box, marks = face
    crop = get_alignment("dlib-150")(image, box, marks)
    with torch.inference_mode():
        ours = create_face_recognizer("dlib-resnet")(uint8_to_tensor(crop[None]))[0].numpy()
    rect = dlib.rectangle(*(int(round(v)) for v in box[:2]), int(round(box[2])) - 1, int(round(box[3])) - 1)
    shape = dlib_model("shape", "shape_predictor_5_face_landmarks.dat")(image, rect)
    theirs = np.asarray(dlib_model("recognition", "dlib_face_recognition_resnet_model_v1.dat").compute_face_descriptor(image, shape))
    assert np.abs(ours - theirs / np.linalg.norm(theirs)).max() < 1e-4


@pytest.mark.parametrize("name,size,dim", [("facenet-casia", (160, 160), 512), ("dlib-resnet", (150, 150), 128), ("sface", (112, 112), 128)])
def test_contracts(name: str, size: tuple[int, int], dim: int) -> None:
    contract = contract_of(name)
    assert contract.input_size == size and contract.embedding_size == dim and contract.weights_file is None
    assert contract.alignment in ("facenet-160", "dlib-150", "arcface-112")
    assert len(weights_identity(name)) >= 16  # identified from the weight files, without building
