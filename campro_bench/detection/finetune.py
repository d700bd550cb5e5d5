"""Fine-tuning a person detector on protected images (the paper fine-tunes one per method).

The training set is prepared once: every image is protected at full resolution (as the camera
would), then brought to the detector's input size by the detector's own resize, and its person
boxes scaled alike. Training then runs over these tensors with seeded shuffling and horizontal
flips, SGD with momentum, and the detector's differentiable loss (``L_cls + L_box``). Batch-norm
statistics stay frozen (the batches are small).

Every random choice comes from ``FinetuneConfig.seed``; the returned :class:`FinetuneReport` is
plain data for a JSON report or a manifest.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import option, validate_config
from ..errors import CamproError
from ..io.atomic import atomic_write_json
from .base import PersonDetector, person_targets


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of :func:`finetune` (all recorded in reports)."""

    epochs: int = option(5, ge=0, le=100_000, help="passes over the training images (0: no fine-tuning)")
    batch_size: int = option(8, ge=1, le=4096, help="images per SGD step")
    lr: float = option(1e-3, gt=0.0, le=10.0, help="SGD learning rate")
    momentum: float = option(0.9, ge=0.0, lt=1.0, help="SGD momentum")
    weight_decay: float = option(4e-5, ge=0.0, le=10.0, help="SGD weight decay")
    hflip: bool = option(True, help="random horizontal flips")
    seed: int = option(0, ge=0, help="seed of shuffling and flips")

    def __post_init__(self) -> None:
        validate_config(self, "detector fine-tuning")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FinetuneReport:
    config: dict[str, Any]
    images: int
    persons: int
    epoch_loss: list[float] = field(default_factory=list)
    epoch_cls: list[float] = field(default_factory=list)
    epoch_box: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    prepare_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prepare_training_set(
    detector: PersonDetector,
    dataset,  # campro_bench.datasets.coco.PersonDataset
    protector: torch.nn.Module | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Protected images at the detector's input size (``N x 3 x h x w``) and their person boxes.

    Only detectors that resize by stretching (SSD) can be trained on pre-resized images; the box
    coordinates are scaled with the image.
    """
    if not detector.differentiable or not hasattr(detector, "preprocess"):
        raise CamproError(f"person detector '{detector.name}' cannot be fine-tuned (not a torch detector)")
    height, width = detector.contract.input_size
    images, boxes = [], []
    with torch.inference_mode():
        for i in range(len(dataset)):
            image = dataset.load_image(i).to(device)[None]
            if protector is not None:
                image = protector(image)
            h, w = image.shape[-2:]
            # the detector's own resize of the full image; a second resize is then the identity
            images.append(resize_like_detector(detector, image)[0])
            scale = torch.tensor([width / w, height / h, width / w, height / h])
            boxes.append(dataset.boxes(i) * scale)
    return torch.stack(images).clone(), boxes


def resize_like_detector(detector: PersonDetector, images: torch.Tensor) -> torch.Tensor:
    """What the detector's preprocessing does to the geometry, values left in [0, 1]."""
    from .ssdlite import tf_resize_bilinear

    if detector.contract.resize != "stretch-tf-bilinear":
        raise CamproError(f"fine-tuning supports stretch-resize detectors, not '{detector.contract.resize}'")
    return tf_resize_bilinear(images, detector.contract.input_size)


def hflip(images: torch.Tensor, boxes: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Mirror images and their xyxy boxes left-right."""
    width = images.shape[-1]
    flipped = []
    for b in boxes:
        b = b.clone()
        b[:, [0, 2]] = width - b[:, [2, 0]]
        flipped.append(b)
    return images.flip(-1), flipped


def finetune(
    detector: PersonDetector,
    images: torch.Tensor,
    boxes: list[torch.Tensor],
    config: FinetuneConfig = FinetuneConfig(),
    on_step: Callable[[int], None] | None = None,
) -> FinetuneReport:
    """Train ``detector`` in place on prepared ``images`` / ``boxes``; returns per-epoch losses."""
    if images.shape[0] == 0:
        raise CamproError("no training images to fine-tune on")
    report = FinetuneReport(config.to_dict(), int(images.shape[0]), int(sum(b.shape[0] for b in boxes)))
    generator = torch.Generator().manual_seed(config.seed)
    params = [p for p in detector.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    device = next(detector.parameters()).device
    detector.train()
    for _ in range(config.epochs):
        start = time.perf_counter()
        order = torch.randperm(images.shape[0], generator=generator)
        flips = torch.rand(images.shape[0], generator=generator) < 0.5
        totals = {"total": 0.0, "cls": 0.0, "box": 0.0}
        for s in range(0, len(order), config.batch_size):
            idx = order[s : s + config.batch_size]
            batch = images[idx].to(device)
            batch_boxes = [boxes[int(i)] for i in idx]
            if config.hflip:
                flip = flips[idx].to(device)
                flipped, flipped_boxes = hflip(batch, batch_boxes)
                batch = torch.where(flip.view(-1, 1, 1, 1), flipped, batch)
                batch_boxes = [fb if f else b for f, b, fb in zip(flip.tolist(), batch_boxes, flipped_boxes)]
            losses = detector.loss_components(batch, person_targets(batch_boxes))
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            for key in totals:
                totals[key] += float(losses[key].detach()) * len(idx)
            if on_step is not None:
                on_step(len(idx))
        n = float(images.shape[0])
        report.epoch_loss.append(totals["total"] / n)
        report.epoch_cls.append(totals["cls"] / n)
        report.epoch_box.append(totals["box"] / n)
        report.epoch_seconds.append(time.perf_counter() - start)
    detector.eval()
    return report


def train_detector(
    detector: PersonDetector,
    dataset,  # campro_bench.datasets.coco.PersonDataset (train split)
    protector=None,  # campro_bench.protectors.Protector | None
    config: FinetuneConfig = FinetuneConfig(),
    out: Path | None = None,
    device: torch.device | str = "cpu",
    on_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Prepare, fine-tune and (with ``out``) save a checkpoint plus ``out.json``; returns the report.

    The report records the detector and its starting weights, the protector's config, the
    dataset's fingerprint, the hyper-parameters and seed, per-epoch losses and timings.
    """
    from .checkpoint import save_checkpoint

    torch.manual_seed(config.seed)
    start = time.perf_counter()
    images, boxes = prepare_training_set(detector, dataset, protector, device)
    prepare_seconds = time.perf_counter() - start
    base_weights = detector.weights_hash
    report = finetune(detector, images, boxes, config, on_step=on_step)
    report.prepare_seconds = prepare_seconds
    result: dict[str, Any] = {
        "detector": detector.name,
        "base_weights": base_weights,
        "protector": protector.config() if protector is not None else {"name": "raw"},
        "dataset": dataset.fingerprint(),
        **report.to_dict(),
    }
    if out is not None:
        result["checkpoint"] = str(out)
        result["checkpoint_sha256"] = save_checkpoint(detector, out, {k: v for k, v in result.items() if k != "checkpoint"})
        atomic_write_json(out.with_suffix(".json"), result)
    return result
