"""The paper / camera pipelines, the crop and embedding caches, on a handful of real LFW faces."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from campro_bench.errors import CamproError
from campro_bench.faces import aligned_crops, face_embeddings
from campro_bench.faces.align import get_alignment
from campro_bench.faces.detection import build_face_detector, primary_face
from campro_bench.faces.detectors.mtcnn import MTCNNDetector
from campro_bench.faces.pipeline import CENTRE, DETECTED, NONE, protect_uint8
from campro_bench.protectors import build_protector
from campro_bench.io import load_image
from campro_bench.protectors.base import Protector
from campro_bench.registries import PROTECTORS

PEOPLE = {"Aaron_Eckhart": [1], "Aaron_Peirsol": [1, 2], "Abdullah_Gul": [1, 2]}

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def tiny(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five real LFW images of three people plus one blank frame (no face)."""
    root = tmp_path_factory.mktemp("faces")
    for name, numbers in PEOPLE.items():
        (root / name).mkdir()
        for n in numbers:
            shutil.copy(data_root / "lfw" / "images" / name / f"{name}_{n:04d}.jpg", root / name)
    (root / "Zz_Blank").mkdir()
    Image.fromarray(np.full((250, 250, 3), 128, np.uint8)).save(root / "Zz_Blank" / "blank.png")
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


class Blackout(Protector):
    """A protector that removes everything (no face can be found afterwards)."""

    name = "test-blackout"

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(images)


def spec(tiny: Path) -> str:
    return f"identity-folder:folder={tiny}"


def test_paper_pipeline_protects_the_aligned_crop(tiny: Path, cache: Path) -> None:
    raw = aligned_crops(spec(tiny), "arcface-112", cache_dir=cache)
    inv = aligned_crops(spec(tiny), "arcface-112", protector="invert", cache_dir=cache)
    assert raw.crops.shape == (6, 112, 112, 3) and raw.crops.dtype == np.uint8
    assert raw.image_ids[-1] == "Zz_Blank/blank.png"
    assert np.array_equal(inv.crops, 255 - raw.crops)  # the crop, not the frame, was protected
    assert raw.source.tolist() == [DETECTED] * 5 + [CENTRE]  # the blank frame used the centre fallback
    assert raw.found.all() and raw.provenance["fallback_centre"] == 1 and raw.provenance["detected"] == 5
    assert raw.labels.tolist() == [0, 1, 1, 2, 2, 3]
    assert raw.identity_names == ["Aaron_Eckhart", "Aaron_Peirsol", "Abdullah_Gul", "Zz_Blank"]


def test_camera_pipeline_detects_on_the_protected_frame(tiny: Path, cache: Path) -> None:
    prot = build_protector("lowres:factor=2")
    cam = aligned_crops(spec(tiny), "arcface-112", pipeline="camera", protector=prot, cache_dir=cache)
    paper = aligned_crops(spec(tiny), "arcface-112", pipeline="paper", protector=prot, cache_dir=cache)
    assert cam.found[:5].sum() >= 4
    for row, image_id in enumerate(cam.image_ids[:5]):
        if not cam.found[row]:
            continue
        frame = protect_uint8(prot, [load_image(tiny / image_id)])[0]  # the protected frame ...
        faces = MTCNNDetector().detect([frame])[0]  # ... is where the face is detected and aligned
        j = primary_face(faces, frame.shape)
        expected = get_alignment("arcface-112")(frame, faces.boxes[j], faces.landmarks[j])
        # (MTCNN in a batch and alone differ in the last float bits, hence not bit-exact)
        assert np.abs(cam.crops[row].astype(int) - expected).mean() < 0.5
        assert np.abs(cam.crops[row].astype(int) - paper.crops[row]).mean() > 2.0
    assert not cam.found[-1] and cam.source[-1] == NONE and not cam.crops[-1].any()
    assert cam.provenance["not_found"] >= 1 and cam.provenance["detection_rate"] < 1.0


def test_undetected_probes_are_flagged(tiny: Path, cache: Path) -> None:
    PROTECTORS.add("test-blackout", Blackout)
    try:
        emb = face_embeddings(spec(tiny), "sface", "test-blackout", pipeline="camera", cache_dir=cache)
    finally:
        PROTECTORS.remove("test-blackout")
    assert not emb.detected.any() and not emb.embeddings.any()
    assert emb.provenance["detection_rate"] == 0.0 and emb.provenance["not_found"] == 6


def test_embedding_cache_hit_builds_nothing(tiny: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cold = face_embeddings(spec(tiny), "sface", cache_dir=cache)
    assert cold.embeddings.shape == (6, 128) and cold.embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(cold.embeddings, axis=1), 1.0, atol=1e-5)
    same = cold.embeddings[1] @ cold.embeddings[2]  # Aaron_Peirsol twice
    other = cold.embeddings[0] @ cold.embeddings[3]
    assert same > 0.5 > other

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("cache hit must not build a model or run a detector")

    monkeypatch.setattr("campro_bench.faces.embeddings.create_face_recognizer", refuse)
    monkeypatch.setattr(MTCNNDetector, "detect", refuse)
    warm = face_embeddings(spec(tiny), "sface", cache_dir=cache)
    assert np.array_equal(warm.embeddings, cold.embeddings) and np.array_equal(warm.detected, cold.detected)
    assert warm.image_ids == cold.image_ids and warm.provenance == cold.provenance
    subset = face_embeddings(spec(tiny), "sface", cache_dir=cache, min_images_per_identity=2)
    assert subset.image_ids == cold.image_ids[1:5] and np.array_equal(subset.embeddings, cold.embeddings[1:5])
    monkeypatch.undo()
    # a new protector in the paper pipeline reuses the cached detections (no detector run)
    monkeypatch.setattr(MTCNNDetector, "detect", refuse)
    inv = face_embeddings(spec(tiny), "sface", "invert", cache_dir=cache)
    assert inv.embeddings.shape == (6, 128) and not np.allclose(inv.embeddings, cold.embeddings)


def test_bad_pipeline_and_detector_names(tiny: Path, cache: Path) -> None:
    with pytest.raises(CamproError, match="unknown pipeline 'phone'"):
        aligned_crops(spec(tiny), pipeline="phone", cache_dir=cache)
    with pytest.raises(CamproError, match="unknown face detector 'haar'; known face detectors: centerface, dlib, mtcnn, retinaface, yunet"):
        build_face_detector("haar")
    with pytest.raises(CamproError, match="face detector 'mtcnn' has no option 'size'"):
        build_face_detector("mtcnn:size=3")


@pytest.mark.parametrize("shapes", [[(20, 30, 3)] * 5, [(20, 30, 3), (10, 12, 3), (20, 30, 3)]])
def test_protect_uint8_keeps_order_and_quantises(shapes: list[tuple[int, int, int]]) -> None:
    from campro_bench.faces.verification import HorizontalFlip

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, s, dtype=np.uint8) for s in shapes]
    flipped = protect_uint8(HorizontalFlip(), images, batch_size=2)
    assert all(np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images))
    inverted = protect_uint8(build_protector("invert"), images, batch_size=2)
    assert all(v.dtype == np.uint8 and np.array_equal(v, 255 - i) for v, i in zip(inverted, images))
    assert protect_uint8(build_protector("raw"), images) is images


def test_protected_crops_are_computed_once_for_models_sharing_an_alignment(
        tiny: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two consecutive requests for the same protected crops (two models with one alignment)
    protect once and get identical crops; another protector, alignment or id set protects again."""
    from campro_bench.faces import pipeline

    calls: list[int] = []

    def counting(prot: Protector, images: list[np.ndarray], device: str = "cpu", batch_size: int = 32) -> list[np.ndarray]:
        calls.append(len(images))
        return protect_uint8(prot, images, device, batch_size)

    monkeypatch.setattr(pipeline, "protect_uint8", counting)
    monkeypatch.setattr(pipeline, "_LAST_PROTECTED", [])
    first = aligned_crops(spec(tiny), "arcface-112", protector="lowres:factor=4", cache_dir=cache)
    again = aligned_crops(spec(tiny), "arcface-112", protector="lowres:factor=4", cache_dir=cache)
    assert calls == [6] and np.array_equal(first.crops, again.crops)
    raw = aligned_crops(spec(tiny), "arcface-112", cache_dir=cache)
    assert np.array_equal(first.crops, protect_uint8(build_protector("lowres:factor=4"), list(raw.crops)))
    aligned_crops(spec(tiny), "arcface-112", protector="lowres:factor=8", cache_dir=cache)
    aligned_crops(spec(tiny), "facenet-160", protector="lowres:factor=8", cache_dir=cache)
    some = aligned_crops(spec(tiny), "facenet-160", protector="lowres:factor=8", cache_dir=cache,
                         image_ids=first.image_ids[:2])
    assert calls == [6, 6, 6, 2] and len(some.crops) == 2


def test_cells_group_models_by_alignment_then_image_type() -> None:
    """Models that share a crop alignment are embedded one after the other for each image type,
    so the protected crops are made once per alignment; every (model, image type) cell stays."""
    from campro_bench.privacy.evaluate import _cell_order

    models = ["facenet-casia", "sface", "facenet-msceleb", "not-registered"]
    cells = _cell_order(models, ["raw", "invert"])
    assert cells == [("facenet-casia", "raw"), ("facenet-msceleb", "raw"), ("facenet-casia", "invert"),
                     ("facenet-msceleb", "invert"), ("sface", "raw"), ("sface", "invert"),
                     ("not-registered", "raw"), ("not-registered", "invert")]
