"""The person-detector contract.

A person detector takes batches of RGB images ``N x 3 x H x W`` in [0, 1] of any size and finds
the people in them. Three calls make up the contract that the rest of campro-bench codes against:

* ``forward(images) -> DetectorOutput``: the raw head outputs, differentiable end to end for
  torch detectors (the CamPro ISP training back-propagates a detection loss through them);
* ``detect(images, score_threshold) -> list[Detections]``: post-processed boxes (``xyxy`` in input
  pixels), scores and COCO category ids, one :class:`Detections` per image, person class only;
* ``loss(images, targets) -> Tensor``: the detection loss ``L_cls + L_box`` of the paper's Eq. 5.

How an image must be prepared for a model (network input size, resize rule, value range, whether
gradients flow) is *data* in its :class:`DetectorContract`, kept in the registry entry, so callers
never guess. ``create_person_detector(name, ...)`` is the one way to build any registered detector.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from .. import paths
from ..errors import CamproError
from ..registries import PERSON_DETECTORS

PERSON_LABEL = 1
"""COCO category id of "person"; detections and targets use COCO category ids as labels."""


class NotDifferentiableError(CamproError):
    """A detector that runs outside torch (ONNX runtime) was asked for a loss or gradients."""


@dataclass(frozen=True)
class DetectorContract:
    """How images must be prepared for one detector, and what it can do.

    Attributes:
        input_size: (height, width) of the network input.
        resize: how an image of any size becomes the network input: ``"stretch-tf-bilinear"``
            (TensorFlow's legacy bilinear resize to ``input_size``, aspect ratio not kept) or
            ``"letterbox"`` (aspect kept, grey padding, as ultralytics YOLO).
        value_range: what the network sees: ``"[-1,1]"`` (``2x - 1``) or ``"[0,1]"``.
        channel_order: channel order of the network input.
        num_classes: classes the head predicts, background excluded.
        differentiable: whether gradients flow from :meth:`PersonDetector.loss` to the input.
        weights_file: file looked for in the models folder (user-supplied), or ``None`` when the
            weights ship inside an installed package.
        weights_source: where the weights come from, for humans.
    """

    input_size: tuple[int, int]
    resize: str
    value_range: str
    channel_order: str = "RGB"
    num_classes: int = 1
    differentiable: bool = True
    weights_file: str | None = None
    weights_source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DetectorOutput:
    """Raw, differentiable head outputs of one batch.

    Attributes:
        box_encodings: ``N x A x 4`` box regressions in the model's own encoding (SSD: TensorFlow
            ``[ty, tx, th, tw]`` relative to anchors; YOLO: ``cx, cy, w, h`` in network pixels).
        class_logits: ``N x A x K`` class scores in the model's own form (SSD: logits with the
            background in column 0; YOLO: probabilities).
        image_size: (height, width) of the images given to ``forward``.
    """

    box_encodings: torch.Tensor
    class_logits: torch.Tensor
    image_size: tuple[int, int]


@dataclass
class Detections:
    """Detections in one image: ``boxes`` ``K x 4`` (x1, y1, x2, y2 in input pixels), ``scores``
    ``K`` in [0, 1] sorted high to low, ``labels`` ``K`` COCO category ids."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to_coco(self, image_id: int) -> list[dict[str, Any]]:
        """COCO result records (``bbox`` as ``[x, y, w, h]``) for pycocotools."""
        records = []
        for box, score, label in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist()):
            x1, y1, x2, y2 = box
            records.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(label),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
            )
        return records


class PersonDetector(nn.Module):
    """Base class of every person detector (see the module docstring for the contract).

    Subclasses implement :meth:`forward` and :meth:`postprocess`; differentiable ones also
    :meth:`loss`. ``weights_hash`` identifies the weights (manifests, cache keys).
    """

    name: str = "person-detector"

    def __init__(self, contract: DetectorContract, weights_hash: str) -> None:
        super().__init__()
        self.contract = contract
        self.weights_hash = weights_hash

    @property
    def differentiable(self) -> bool:
        return self.contract.differentiable

    def forward(self, images: torch.Tensor) -> DetectorOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def postprocess(
        self, output: DetectorOutput, score_threshold: float = 0.01
    ) -> list[Detections]:  # pragma: no cover - abstract
        raise NotImplementedError

    def detect(self, images: torch.Tensor, score_threshold: float = 0.01) -> list[Detections]:
        """Person detections per image, boxes in the pixels of ``images``, scores >= threshold."""
        check_images(images)
        with torch.inference_mode():
            return self.postprocess(self(images), score_threshold)

    def loss(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """``L_cls + L_box`` (Eq. 5) for ``targets`` with ``"boxes"`` (xyxy pixels) and ``"labels"``
        (COCO category ids; only persons count), differentiable in the weights and the images."""
        return self.loss_components(images, targets)["total"]

    def loss_components(
        self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """``{"cls": L_cls, "box": L_box, "total": L_cls + L_box}``."""
        raise NotDifferentiableError(
            f"person detector '{self.name}' runs outside torch: it can detect but has no "
            "differentiable loss; use a torch detector such as ssdlite-mobilenetv2-coco"
        )

    def extra_repr(self) -> str:
        return f"name={self.name!r}, weights={self.weights_hash}"


def check_images(images: torch.Tensor) -> None:
    """Reject anything that is not a float ``N x 3 x H x W`` batch."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"person detectors take N x 3 x H x W RGB batches, got {shape}")
    if not images.is_floating_point():
        raise TypeError(f"person detectors take float images in [0, 1], got dtype {images.dtype}")


def detect_images(
    detector: PersonDetector,
    images: Sequence[torch.Tensor],
    score_threshold: float = 0.01,
    batch_size: int = 8,
) -> list[Detections]:
    """Detect in images of different sizes (``3 x H x W`` each), batching equal sizes together.

    Returns one :class:`Detections` per image, in input order, boxes in that image's pixels.
    """
    results: list[Detections | None] = [None] * len(images)
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        by_size.setdefault((int(image.shape[-2]), int(image.shape[-1])), []).append(index)
    for indices in by_size.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            batch = torch.stack([images[i] for i in chunk])
            for i, det in zip(chunk, detector.detect(batch, score_threshold)):
                results[i] = det
    return [r for r in results if r is not None]


def create_person_detector(
    name: str,
    models_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    checkpoint: str | os.PathLike[str] | None = None,
) -> PersonDetector:
    """Build a registered person detector in eval mode on ``device``.

    ``checkpoint`` loads fine-tuned weights written by :func:`~campro_bench.detection.finetune.
    save_checkpoint` (``campro-bench train detector``). Missing user-supplied weights raise a
    :class:`~campro_bench.errors.MissingFileError` naming the file and the folder to put it in.
    """
    model = PERSON_DETECTORS.build(name, PersonDetector, models_dir=paths.models_dir(models_dir),
                                   cache_dir=paths.cache_dir(cache_dir), device=torch.device(device))
    if checkpoint is not None:
        from .checkpoint import load_checkpoint

        load_checkpoint(model, Path(checkpoint))
    return model.eval().to(device)


def contract_of(name: str) -> DetectorContract:
    """The contract of a registered detector, without building it."""
    contract = PERSON_DETECTORS.entry(name).metadata.get("contract")
    if not isinstance(contract, DetectorContract):
        raise CamproError(f"person detector '{name}' declares no DetectorContract")
    return contract


def person_targets(boxes: Iterable[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Targets for :meth:`PersonDetector.loss` from per-image ``K x 4`` xyxy person boxes."""
    out = []
    for b in boxes:
        b = torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4)
        out.append({"boxes": b, "labels": torch.full((b.shape[0],), PERSON_LABEL, dtype=torch.int64)})
    return out
