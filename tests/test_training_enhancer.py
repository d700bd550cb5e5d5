"""The enhancer / restoration U-Net trainer: masks, loss, determinism, resume, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from campro_bench.enhancer import load_enhancer, masked_l1_loss
from campro_bench.errors import CamproError
from campro_bench.protectors.isp import CamproISP, ISPParams
from campro_bench.training import face_masks
from campro_bench.training.checkpoint import load_training_checkpoint
from campro_bench.training.enhancer import parse_sources, resolve_isp, scene_paths
from campro_bench.training.unet import TrainingImages, UNetTrainConfig, capture, evaluate_unet, sample_crops, train_unet


def toy_isp() -> CamproISP:
    """A non-trivial colour transform: swapped channels and a darkening LUT."""
    lut = [(i / 31) ** 1.5 for i in range(32)]
    return CamproISP(isp=ISPParams([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], lut))


def toy_data(n: int = 4, size: int = 32, seed: int = 0) -> TrainingImages:
    rng = np.random.default_rng(seed)
    images, masks, boxes = [], [], []
    for _ in range(n):
        yy, xx = np.mgrid[:size, :size] / size
        base = np.stack([yy, xx, 1 - yy], -1) * rng.uniform(0.5, 1.0, 3)
        image = (255 * np.clip(base + rng.normal(0, 0.02, base.shape), 0, 1)).astype(np.uint8)
        box = np.array([[8, 8, 16, 18]], np.float32)
        images.append(image)
        masks.append(face_masks.keep_mask(box, size, size))
        boxes.append(box)
    return TrainingImages(images, masks, boxes)


TINY = dict(batch_size=2, crop=16, base_channels=4, depth=2, lr=1e-2)


# masks --------------------------------------------------------------------------------------
def test_keep_mask_is_zero_inside_boxes_and_one_outside() -> None:
    boxes = np.array([[2.0, 3.0, 6.0, 8.0], [10.0, 0.0, 12.0, 2.0]], np.float32)
    mask = face_masks.keep_mask(boxes, 10, 12)
    assert mask.shape == (10, 12) and mask.dtype == np.float32
    assert (mask[3:8, 2:6] == 0).all() and (mask[0:2, 10:12] == 0).all()
    assert mask.sum() == 10 * 12 - 5 * 4 - 2 * 2
    assert mask[0, 0] == 1 and mask[9, 11] == 1


def test_enlarge_boxes_grows_each_side_and_clips() -> None:
    grown = face_masks.enlarge_boxes(np.array([[10, 20, 30, 60]], np.float32), 0.25, 100, 35)
    assert grown.tolist() == [[5.0, 10.0, 35.0, 70.0]]  # x2 = 30 + 5 clipped to the width 35
    assert face_masks.enlarge_boxes(np.zeros((0, 4)), 0.2, 5, 5).shape == (0, 4)
    with pytest.raises(ValueError):
        face_masks.enlarge_boxes(np.zeros((1, 4)), -0.1, 5, 5)


def test_face_boxes_are_cached_by_file_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from campro_bench.faces.detection import FaceDetector, Faces

    calls: list[int] = []

    class Fixed(FaceDetector):
        name = "fixed"

        def detect(self, images: list[np.ndarray]) -> list[Faces]:
            calls.append(len(images))
            return [Faces.of([[1, 2, 5, 6]], [0.9], np.zeros((5, 2))) for _ in images]

    paths = []
    for k in range(3):
        path = tmp_path / f"{k}.png"
        Image.fromarray(np.full((8, 8, 3), 40 * k, np.uint8)).save(path)
        paths.append(path)
    boxes = face_masks.detect_face_boxes(paths, Fixed(), tmp_path / "cache")
    assert [b.tolist() for b in boxes] == [[[1, 2, 5, 6]]] * 3 and calls == [3]
    again = face_masks.detect_face_boxes(paths, Fixed(), tmp_path / "cache")
    assert calls == [3] and [b.tolist() for b in again] == [b.tolist() for b in boxes]


@pytest.mark.realdata
def test_mtcnn_masks_cover_the_lfw_face(data_root: Path, cache_dir: Path) -> None:
    path = data_root / "lfw" / "images" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"
    (boxes,) = face_masks.detect_face_boxes([path], "mtcnn", cache_dir)
    assert len(boxes) >= 1
    mask = face_masks.keep_mask(face_masks.enlarge_boxes(boxes, 0.2, 250, 250), 250, 250)
    assert mask[125, 125] == 0  # LFW images are centred on the face
    assert mask[0, 0] == 1 and mask[249, 249] == 1


# the training loop ---------------------------------------------------------------------------
def test_crops_carry_their_masks_and_flips() -> None:
    data = toy_data(2)
    config = UNetTrainConfig(**TINY, face_crop_fraction=1.0, hflip=True)
    x, keep = sample_crops(data, np.array([0, 1]), np.array([False, True]), config, np.random.default_rng(0))
    assert x.shape == (2, 3, 16, 16) and keep is not None and keep.shape == (2, 1, 16, 16)
    assert float(keep.min()) == 0.0  # face-centred crops contain the face
    # the mask moves with the image: masked pixels in a crop are exactly the box pixels
    assert 0 < int((keep == 0).sum()) <= 2 * 8 * 10


def test_training_reduces_the_masked_loss_and_stays_in_range() -> None:
    data, isp = toy_data(4), toy_isp()
    result = train_unet(data, isp, UNetTrainConfig(**TINY, epochs=30, seed=1))
    losses = [row["loss"] for row in result.history]
    assert len(losses) == 30
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3])
    x = uint8 = torch.from_numpy(np.stack(data.images)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        out = result.model(capture(isp, x))
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    keep = torch.from_numpy(np.stack(data.masks))[:, None]
    trained = float(masked_l1_loss(out, uint8, keep))
    assert trained < float(masked_l1_loss(capture(isp, x), x, keep))  # better than the captured image
    scores = evaluate_unet(result.model, isp, data.images, data.masks)
    assert scores["enhanced/eq8"] < scores["captured/eq8"]
    assert scores["enhanced/l1_background"] < scores["captured/l1_background"]  # scene restored
    raw_face_mean = float((x * (1 - keep)).sum() / (3 * (1 - keep).sum()))
    assert scores["enhanced/face_mean"] < 0.5 * raw_face_mean  # faces pushed towards black, not restored


def test_plain_l1_restoration_needs_no_masks() -> None:
    data = toy_data(4)
    data = TrainingImages(data.images, None)
    with pytest.raises(CamproError, match="keep-masks"):
        train_unet(data, toy_isp(), UNetTrainConfig(**TINY, epochs=1))
    result = train_unet(data, toy_isp(), UNetTrainConfig(**TINY, epochs=2, face_penalty=False))
    assert len(result.history) == 2 and "l1_background" not in result.history[0]


def test_same_seed_same_weights_and_resume_is_identical(tmp_path: Path) -> None:
    data, isp = toy_data(4), toy_isp()
    first = train_unet(data, isp, UNetTrainConfig(**TINY, epochs=4, seed=3))
    second = train_unet(data, isp, UNetTrainConfig(**TINY, epochs=4, seed=3))
    for (k, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), k
    other = train_unet(data, isp, UNetTrainConfig(**TINY, epochs=4, seed=4))
    assert not torch.equal(other.model.head.weight, first.model.head.weight)

    ckpt = tmp_path / "checkpoint.pt"
    train_unet(data, isp, UNetTrainConfig(**TINY, epochs=2, seed=3), checkpoint=ckpt)
    assert load_training_checkpoint(ckpt, "enhancer")[1]["epoch"] == 2
    resumed = train_unet(data, isp, UNetTrainConfig(**TINY, epochs=4, seed=3), checkpoint=ckpt, resume=True)
    assert resumed.resumed_from_epoch == 2 and [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    for (k, a), b in zip(first.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(CamproError, match="configuration differs"):
        train_unet(data, isp, UNetTrainConfig(**{**TINY, "lr": 1e-3}, epochs=5, seed=3), checkpoint=ckpt, resume=True)


def test_config_and_source_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(CamproError, match="crop"):
        train_unet(toy_data(2, size=12), toy_isp(), UNetTrainConfig(**TINY, epochs=1))
    with pytest.raises(CamproError, match="unknown U-Net training key .learning_rate.; known keys: base_channels"):
        UNetTrainConfig.from_dict({"epochs": 1, "learning_rate": 1.0})
    with pytest.raises(CamproError, match="split"):
        parse_sources("coco128:test")
    assert parse_sources("coco128, coco-mini:val") == [("coco128", ("train", "val")), ("coco-mini", ("val",))]
    with pytest.raises(CamproError, match="unknown ISP preset"):
        resolve_isp("no-such-preset")
    params = tmp_path / "isp.json"
    ISPParams.standard().save(params)
    loaded = resolve_isp(str(params))
    assert loaded.params() == {"params": str(params)}
    assert np.allclose(loaded.lut.detach().numpy(), ISPParams.standard().lut)


# real data: image selection and the CLI --------------------------------------------------------
@pytest.mark.realdata
def test_training_images_exclude_the_held_out_split(data_root: Path) -> None:
    held = {p.name for p in scene_paths(data_root, parse_sources("coco-mini:val"))}
    train = scene_paths(data_root, parse_sources("coco128,coco-mini"))
    assert len(held) == 79 and len({p.name for p in train}) == len(train)  # unique by file name
    assert len([p for p in train if p.name not in held]) == len(train) - 79


@pytest.mark.realdata
def test_train_enhancer_cli_writes_weights_report_and_grid(tmp_path: Path, data_root: Path, cache_dir: Path) -> None:
    from campro_bench.cli.main import main

    out = tmp_path / "enh"
    status = main(["train", "enhancer", "--isp", "standard", "--images", "coco-mini:train", "--max-images", "4",
                   "--epochs", "1", "--crop", "32", "--batch-size", "2", "--base-channels", "4", "--depth", "2",
                   "--out", str(out), "--device", "cpu"])
    assert status == 0
    for name in ("enhancer.pt", "checkpoint.pt", "history.csv", "loss.png", "samples.png", "report.json", "manifest.json"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert report["held_out"]["images"] == 79 and report["train_images"]["images"] == 4
    assert 0 <= report["held_out"]["metrics"]["enhanced/l1_raw"] <= 1
    model = load_enhancer(out / "enhancer.pt")
    assert model.metadata["isp"]["spec"] == "campro-isp:preset=standard"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["holdout"] == "coco-mini:val" and manifest["seeds"]["seed"] == 0
    assert "root" not in manifest["data"]["train"]
