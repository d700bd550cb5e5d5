"""The face-detector contract: images in, boxes + scores + five landmarks out.

Every detector returns, per image, a :class:`Faces` record with ``boxes`` (``K x 4``, x1 y1 x2 y2 in
pixels), ``scores`` (``K``) and ``landmarks`` (``K x 5 x 2``) in the ArcFace order: eye on the image's
left, eye on the image's right, nose tip, left mouth corner, right mouth corner. Detectors are
registered in :data:`~campro_bench.registries.FACE_DETECTORS` and built from spec strings such as
``mtcnn`` or ``dlib:model=cnn`` by :func:`build_face_detector`.

A detector also declares a *lenient* variant (lower thresholds) that the ``paper`` pipeline
tries on images where the normal one finds nothing (see :mod:`campro_bench.faces.pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field

from ..registries import FACE_DETECTORS


@dataclass
class Faces:
    """The faces found in one image."""

    boxes: np.ndarray  # float32 K x 4 (x1, y1, x2, y2)
    scores: np.ndarray  # float32 K
    landmarks: np.ndarray  # float32 K x 5 x 2, ArcFace order

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls) -> "Faces":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))

    @classmethod
    def of(cls, boxes: Any, scores: Any, landmarks: Any) -> "Faces":
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        return cls(boxes, np.asarray(scores, np.float32).reshape(-1), np.asarray(landmarks, np.float32).reshape(-1, 5, 2))


class FaceDetector:
    """Base class: ``detect(images)`` on a list of ``H x W x 3`` uint8 RGB arrays.

    Subclasses set ``name``, implement :meth:`detect`, return their constructor arguments from
    :meth:`params` (they enter cache keys) and may return a lower-threshold copy from
    :meth:`lenient`.
    """

    name: ClassVar[str] = "face-detector"

    def detect(self, images: list[np.ndarray]) -> list[Faces]:  # pragma: no cover - abstract
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {}

    def lenient(self) -> "FaceDetector | None":
        """The same detector with lower thresholds, for the paper pipeline's fallback."""
        return None

    def to(self, device: str) -> "FaceDetector":
        """Run on ``device`` where the detector can (torch-based ones); others ignore it."""
        return self

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **self.params()}

    def spec(self) -> str:
        params = self.params()
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")


# option ranges of the registered detectors, checked where specs are built (campro_bench.specs)
Score = Annotated[float, Field(ge=0.0, le=1.0, description="score threshold")]
IoU = Annotated[float, Field(ge=0.0, le=1.0, description="NMS IoU threshold")]
FaceSize = Annotated[int, Field(ge=1, le=10_000, description="smallest face side (pixels)")]


class ThresholdDetector(FaceDetector):
    """A single-shot detector with a score threshold and an NMS IoU; its lenient variant lowers the
    threshold to ``lenient_threshold``."""

    lenient_threshold: ClassVar[float] = 0.5

    def __init__(self, threshold: float, nms_iou: float = 0.3) -> None:
        self.threshold = float(threshold)
        self.nms_iou = float(nms_iou)
        self._session: Any = None

    def params(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "nms_iou": self.nms_iou}

    def lenient(self) -> "ThresholdDetector":
        return type(self)(threshold=min(self.threshold, self.lenient_threshold), nms_iou=self.nms_iou)


def primary_face(faces: Faces, shape: tuple[int, ...]) -> int | None:
    """Index of the face an identity dataset is about: large and central.

    Sandberg's ``align_dataset_mtcnn`` criterion: box area minus twice the squared distance of the
    box centre from the image centre. ``None`` when there is no face.
    """
    if len(faces) == 0:
        return None
    b = faces.boxes
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    cx = (b[:, 0] + b[:, 2]) / 2 - shape[1] / 2
    cy = (b[:, 1] + b[:, 3]) / 2 - shape[0] / 2
    return int(np.argmax(area - 2.0 * (cx**2 + cy**2)))


def build_face_detector(spec: str | FaceDetector) -> FaceDetector:
    """Build a registered detector from ``name`` or ``name:key=value,...``."""
    if isinstance(spec, FaceDetector):
        return spec
    return FACE_DETECTORS.build(spec, FaceDetector)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best first."""
    import torch
    from torchvision.ops import nms as tv_nms

    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    return tv_nms(torch.from_numpy(boxes).float(), torch.from_numpy(scores).float(), iou).numpy()
