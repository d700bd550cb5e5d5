"""User-supplied YOLOv5 / YOLOv8 detectors exported to ONNX (ultralytics format), run by onnxruntime.

The paper's detector is YOLOv5m; its weights cannot be downloaded here, so campro-bench loads an
ONNX export the user puts in the models folder (``--models-dir`` / ``CAMPRO_BENCH_MODELS``):

* ``yolov5m-onnx`` reads ``yolov5m.onnx``, ``yolov8m-onnx`` reads ``yolov8m.onnx``;
  :func:`load_yolo_onnx` reads any file.
* Interface (ultralytics export): input ``1 x 3 x 640 x 640`` RGB in [0, 1] (letterboxed: aspect
  kept, grey 114 padding, centred); output ``[1, N, 85]`` for v5 (``cx, cy, w, h, objectness, 80
  class scores``) or ``[1, 84, N]`` for v8 (``cx, cy, w, h, 80 class scores``), in input pixels.
* Post-processing: person score (v5: objectness x class score; v8: class score), NMS at IoU 0.6,
  at most 100 boxes (COCO's ``maxDets``), boxes mapped back to the original image.

These run outside torch: :meth:`~PersonDetector.detect` works, :meth:`~PersonDetector.loss` raises
:class:`~campro_bench.detection.base.NotDifferentiableError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import nms

from ..errors import InvalidFileError, MissingFileError
from ..registries import PERSON_DETECTORS
from ..runtime import onnx_session
from .base import PERSON_LABEL, DetectorContract, DetectorOutput, Detections, PersonDetector
from .checkpoint import file_sha256

LETTERBOX_FILL = 114 / 255.0
PERSON_CLASS_INDEX = 0  # ultralytics COCO class order: 0 = person


def yolo_contract(weights_file: str, version: str) -> DetectorContract:
    return DetectorContract(
        input_size=(640, 640),
        resize="letterbox",
        value_range="[0,1]",
        num_classes=80,
        differentiable=False,
        weights_file=weights_file,
        weights_source=f"user-supplied ultralytics YOLO{version} ONNX export",
        extra={"iou_threshold": 0.6, "max_detections": 100, "format": version},
    )


def letterbox_params(height: int, width: int, size: tuple[int, int]) -> tuple[float, int, int, int, int]:
    """(scale, new height, new width, top pad, left pad) of ultralytics' letterbox."""
    ratio = min(size[0] / height, size[1] / width)
    new_h, new_w = int(round(height * ratio)), int(round(width * ratio))
    top = int(round((size[0] - new_h) / 2 - 0.1))
    left = int(round((size[1] - new_w) / 2 - 0.1))
    return ratio, new_h, new_w, top, left


def letterbox(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize keeping the aspect ratio and pad with grey to ``size`` (ultralytics' letterbox)."""
    _, _, height, width = images.shape
    _, new_h, new_w, top, left = letterbox_params(height, width, size)
    resized = F.interpolate(images, size=(new_h, new_w), mode="bilinear", align_corners=False)
    bottom, right = size[0] - new_h - top, size[1] - new_w - left
    return F.pad(resized, (left, right, top, bottom), value=LETTERBOX_FILL)


def detect_format(shape: tuple[int, ...], num_classes: int = 80) -> str:
    """``"v5"`` for ``[N, boxes, 5 + classes]``, ``"v8"`` for ``[N, 4 + classes, boxes]``."""
    if shape[-1] == 5 + num_classes:
        return "v5"
    if shape[1] == 4 + num_classes:
        return "v8"
    return "v8" if shape[1] < shape[2] else "v5"  # other class counts: boxes outnumber channels


class YoloOnnxDetector(PersonDetector):
    """An ultralytics YOLO ONNX export as a (non-differentiable) :class:`PersonDetector`."""

    def __init__(self, path: Path, contract: DetectorContract, device: torch.device = torch.device("cpu")) -> None:
        super().__init__(contract, file_sha256(path)[:16])
        try:
            self.session = onnx_session(path, device)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise InvalidFileError(f"cannot load ONNX model {path}: {exc}") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise InvalidFileError(f"{path}: expected one N x 3 x H x W input, got {[i.shape for i in inputs]}")
        self.input_name = inputs[0].name
        batch, _, h, w = inputs[0].shape
        self.fixed_batch = batch if isinstance(batch, int) else None
        self.input_size = (h, w) if isinstance(h, int) and isinstance(w, int) else contract.input_size
        self.path = path

    def _run(self, batch: np.ndarray) -> np.ndarray:
        chunk = self.fixed_batch or batch.shape[0]
        outs = [self.session.run(None, {self.input_name: batch[i : i + chunk]})[0] for i in range(0, batch.shape[0], chunk)]
        return np.concatenate(outs)

    def forward(self, images: torch.Tensor) -> DetectorOutput:
        """Raw predictions: ``cx, cy, w, h`` (network pixels) and class probabilities (v5: x objectness)."""
        net_in = letterbox(images.detach().float().cpu(), self.input_size).numpy()
        raw = torch.from_numpy(self._run(np.ascontiguousarray(net_in)))
        if raw.ndim != 3:
            raise InvalidFileError(f"{self.path}: expected a 3-d output, got shape {tuple(raw.shape)}")
        fmt = self.contract.extra.get("format", "auto")
        if fmt == "auto":
            fmt = detect_format(tuple(raw.shape), self.contract.num_classes)
        if fmt == "v8":
            raw = raw.transpose(1, 2)
            boxes, scores = raw[..., :4], raw[..., 4:]
        else:
            boxes, scores = raw[..., :4], raw[..., 5:] * raw[..., 4:5]
        if scores.shape[-1] <= PERSON_CLASS_INDEX:
            raise InvalidFileError(f"{self.path}: output has no class scores (shape {tuple(raw.shape)})")
        return DetectorOutput(boxes, scores, (int(images.shape[-2]), int(images.shape[-1])))

    def postprocess(self, output: DetectorOutput, score_threshold: float = 0.01) -> list[Detections]:
        height, width = output.image_size
        ratio, _, _, top, left = letterbox_params(height, width, self.input_size)
        results = []
        for boxes, scores in zip(output.box_encodings, output.class_logits):
            person = scores[:, PERSON_CLASS_INDEX]
            keep = person >= max(score_threshold, 1e-8)
            cxcywh, person = boxes[keep], person[keep]
            xyxy = torch.cat([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)
            xyxy = (xyxy - torch.tensor([left, top, left, top], dtype=xyxy.dtype)) / ratio
            xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, width)
            xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, height)
            kept = nms(xyxy, person, self.contract.extra["iou_threshold"])[: self.contract.extra["max_detections"]]
            labels = torch.full((kept.numel(),), PERSON_LABEL, dtype=torch.int64)
            results.append(Detections(xyxy[kept], person[kept], labels))
        return results


def load_yolo_onnx(path: str | Path, output_format: str = "auto", device: str | torch.device = "cpu") -> YoloOnnxDetector:
    """Load any ultralytics YOLO ONNX export; ``output_format`` is ``"v5"``, ``"v8"`` or ``"auto"``."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"YOLO ONNX file {path} does not exist")
    contract = yolo_contract(path.name, output_format)
    detector = YoloOnnxDetector(path, contract, torch.device(device))
    detector.name = f"yolo-onnx:{path.name}"
    return detector


def _registered(weights_file: str, version: str):
    contract = yolo_contract(weights_file, version)

    def build(models_dir: Path, cache_dir: Path, device: torch.device) -> YoloOnnxDetector:
        path = models_dir / weights_file
        if not path.is_file():
            raise MissingFileError(
                f"{weights_file} not found in the models folder {models_dir}: export the model with "
                f"ultralytics (`yolo export model={Path(weights_file).stem}.pt format=onnx`) and put the "
                "file there, or point --models-dir / CAMPRO_BENCH_MODELS at its folder"
            )
        return YoloOnnxDetector(path, contract, device)

    build.__name__ = f"build_{Path(weights_file).stem}"
    return contract, build


for _file, _version in (("yolov5m.onnx", "v5"), ("yolov8m.onnx", "v8")):
    _contract, _build = _registered(_file, _version)
    PERSON_DETECTORS.register(
        f"{Path(_file).stem}-onnx",
        contract=_contract,
        description=f"user-supplied ultralytics YOLO{_version} ONNX export ({_file} in the models folder); "
        "inference only",
    )(_build)

__all__ = ["YoloOnnxDetector", "detect_format", "letterbox", "letterbox_params", "load_yolo_onnx"]
