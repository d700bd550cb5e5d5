"""Face alignments: from an image and one detected face to the crop a recogniser was trained on.

Each recogniser's contract names its alignment (``FaceModelContract.alignment``):

* ``arcface-112``: 5-point similarity transform (Umeyama least squares) of the detected
  landmarks onto the standard ArcFace 112x112 template, bilinear warp, black border. Used by
  ArcFace / MagFace / AdaFace / SFace (OpenCV's ``FaceRecognizerSF.alignCrop`` uses this template).
* ``facenet-160``: Sandberg's ``align_dataset_mtcnn.py --image_size 160 --margin 32``: the
  detector's box grown by 16 px on each side, clipped to the image, resized to 160x160
  (bilinear). No rotation: FaceNet-CASIA was trained on such crops.
* ``dlib-150``: dlib's own chip: the 5-point shape predictor run in the detected box, then
  ``dlib.get_face_chip(size=150, padding=0.25)``, as ``face_recognition`` and dlib's examples do.

Alignments are registered in :data:`ALIGNMENTS` (a registry of this module) with their output
size; :func:`align` applies one to a face given as box + landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
from PIL import Image

from ..registries import ALIGNMENTS

ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
"""Landmarks of the standard 112x112 ArcFace crop: eyes, nose tip, mouth corners."""

FACENET_MARGIN = 32


@dataclass(frozen=True)
class Alignment:
    """A registered alignment: its output size and the function that produces a crop."""

    name: str
    size: tuple[int, int]  # (height, width)
    fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    description: str = ""

    def __call__(self, image: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        crop = self.fn(image, np.asarray(box, np.float64), np.asarray(landmarks, np.float64))
        assert crop.shape[:2] == self.size and crop.dtype == np.uint8, (self.name, crop.shape, crop.dtype)
        return crop




def _register(name: str, size: tuple[int, int], description: str) -> Callable:
    def decorator(fn: Callable) -> Callable:
        ALIGNMENTS.add(name, Alignment(name, size, fn, description), origin=f"{__name__}:{fn.__name__}",
                       description=description, size=size)
        return fn

    return decorator


def get_alignment(name: str) -> Alignment:
    return ALIGNMENTS.get(name)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (rotation, uniform scale, translation) mapping src onto dst.

    Umeyama (1991), the estimator of ``skimage.transform.SimilarityTransform`` that insightface
    uses for its template alignment.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1
    rot = u @ np.diag(d) @ vt
    var = (s0**2).sum() / len(src)
    scale = (sigma * d).sum() / var if var > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


@_register("arcface-112", (112, 112), "5-point similarity warp to the ArcFace 112x112 template")
def align_arcface(image: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE)
    return cv2.warpAffine(np.ascontiguousarray(image), matrix, (112, 112), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@_register("facenet-160", (160, 160), "MTCNN box + 32 px margin, resized to 160x160 (Sandberg)")
def align_facenet(image: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    x1 = int(np.clip(box[0] - FACENET_MARGIN / 2, 0, w - 1))
    y1 = int(np.clip(box[1] - FACENET_MARGIN / 2, 0, h - 1))
    x2 = int(np.clip(box[2] + FACENET_MARGIN / 2, x1 + 1, w))
    y2 = int(np.clip(box[3] + FACENET_MARGIN / 2, y1 + 1, h))
    crop = Image.fromarray(np.ascontiguousarray(image[y1:y2, x1:x2]))
    return np.array(crop.resize((160, 160), Image.BILINEAR), dtype=np.uint8)


@_register("dlib-150", (150, 150), "dlib 5-point shape in the box, dlib.get_face_chip 150 px, padding 0.25")
def align_dlib(image: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    import dlib

    from .detectors.dlib_hog import dlib_model

    image = np.ascontiguousarray(image)
    rect = dlib.rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])) - 1, int(round(box[3])) - 1)
    shape = dlib_model("shape", "shape_predictor_5_face_landmarks.dat")(image, rect)
    return np.asarray(dlib.get_face_chip(image, shape, size=150, padding=0.25), dtype=np.uint8)


def centre_face(shape: tuple[int, ...], fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """A fixed face guess in the image centre: a square of ``fraction`` x the shorter side, with
    the ArcFace template landmarks scaled into it. The paper pipeline's last-resort fallback."""
    h, w = shape[:2]
    side = fraction * min(h, w)
    x1, y1 = (w - side) / 2, (h - side) / 2
    box = np.array([x1, y1, x1 + side, y1 + side], np.float32)
    landmarks = (ARCFACE_TEMPLATE / 112.0 * side + [x1, y1]).astype(np.float32)
    return box, landmarks
