"""MTCNN (Zhang et al. 2016), the paper's face detector, as implemented by facenet-pytorch.

The P/R/O-Net weights ship inside the ``facenet-pytorch`` wheel. Images are detected one at a time:
facenet-pytorch's batched mode gives results that depend (in the last float bits, enough to move a
rounded crop pixel) on which images share a batch, which would make cached crops depend on the order
in which datasets were first processed; one image per call costs ~10% more time and is exactly
reproducible. Thresholds are the three cascade stages' (defaults 0.6, 0.7, 0.7, as in Sandberg's
``align_dataset_mtcnn.py``); the lenient variant lowers them to 0.5, 0.5, 0.5.

On CPU, detection runs with one torch thread: MTCNN spends most of its time in thousands of tiny
per-candidate resizes whose cost is dominated by thread-pool overhead (measured on a 2-core
machine: ~90 ms per 250x250 LFW image with one thread, 100-400 ms with two under load). The cores
are used instead by detecting that many images at once, one per Python thread (torch releases the
GIL in its kernels): each image still goes through exactly the same single-threaded computation, so
the detections are bit-identical to one-at-a-time, and 2 cores detect 2.0x as many LFW images per
second (23.1 -> 46.0 img/s, idle 2-core machine, ``tests/test_faces_detectors.py`` checks equality).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ...registries import FACE_DETECTORS
from ...runtime import cpu_threads, torch_threads
from ..detection import FaceDetector, Faces, FaceSize, Score

LENIENT = (0.5, 0.5, 0.5)


@FACE_DETECTORS.register("mtcnn", description="MTCNN (facenet-pytorch weights); the default, as in the paper")
class MTCNNDetector(FaceDetector):
    def __init__(self, pnet: Score = 0.6, rnet: Score = 0.7, onet: Score = 0.7, min_face_size: FaceSize = 20,
                 device: str = "cpu") -> None:
        self.thresholds = (float(pnet), float(rnet), float(onet))
        self.min_face_size = int(min_face_size)
        self.device = device
        self._model: Any = None

    def params(self) -> dict[str, Any]:
        return {"pnet": self.thresholds[0], "rnet": self.thresholds[1], "onet": self.thresholds[2],
                "min_face_size": self.min_face_size}

    def lenient(self) -> "MTCNNDetector":
        return MTCNNDetector(*LENIENT, min_face_size=self.min_face_size, device=self.device)

    def to(self, device: str) -> "MTCNNDetector":
        if str(device) != str(self.device):
            self.device, self._model = str(device), None
        return self

    def _net(self) -> Any:
        if self._model is None:
            from facenet_pytorch import MTCNN

            self._model = MTCNN(keep_all=True, thresholds=list(self.thresholds), min_face_size=self.min_face_size,
                                factor=0.709, post_process=False, device=self.device)
        return self._model

    def detect(self, images: list[np.ndarray], workers: int | None = None) -> list[Faces]:
        """Faces of each image; on CPU ``workers`` images (default: the usable cores) at a time."""
        net = self._net()

        def one(image: np.ndarray) -> Faces:
            boxes, probs, points = net.detect(image[None], landmarks=True)
            return Faces.empty() if boxes[0] is None else Faces.of(boxes[0], probs[0], points[0])

        if str(self.device) != "cpu":
            return [one(image) for image in images]
        workers = max(1, min(workers or cpu_threads(), len(images)))
        with torch_threads(1):
            if workers == 1:
                return [one(image) for image in images]
            with ThreadPoolExecutor(workers, thread_name_prefix="mtcnn") as pool:
                return list(pool.map(one, images))
