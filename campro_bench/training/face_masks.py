"""Face boxes and keep-masks of scene images, for the enhancer's face-masked loss (paper Eq. 8).

The paper detects the faces in the *original* images (RetinaFace) and builds a binary mask ``s`` per
image: 0 on faces, 1 elsewhere. Here any registered face detector does it
(:func:`campro_bench.faces.detection.build_face_detector`, default ``mtcnn``) on the raw images.

* :func:`detect_face_boxes`: boxes per image, cached in
  ``<cache>/enhancer/face-boxes/<detector digest>.json`` keyed by the SHA-256 of each file's bytes
  (a re-run, or another trainer on the same images, detects nothing again);
* :func:`enlarge_boxes`: boxes grown by a fraction of their size on every side (the detector's box
  is tight around the eyes-mouth region; hair, forehead and chin identify too);
* :func:`keep_mask`: the ``H x W`` float mask (0 inside any box, 1 elsewhere), built with
  :func:`campro_bench.utility.quality.boxes_to_mask`, the same rule E4's face-masked reference uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..io import atomic_write_json, load_image
from ..io.hashing import sha256_file, sha256_json

CACHE_VERSION = 1


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (the cache key of its boxes)."""
    return sha256_file(path)


def _cache_file(cache_dir: Path, detector_config: dict[str, Any]) -> Path:
    key = sha256_json({"version": CACHE_VERSION, "detector": detector_config})[:20]
    return Path(cache_dir) / "enhancer" / "face-boxes" / f"{key}.json"


def detect_face_boxes(
    paths: Sequence[Path],
    detector: str,
    cache_dir: Path,
    *,
    device: str = "cpu",
    chunk: int = 16,
    on_progress: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Face boxes (``K x 4`` float32, x1 y1 x2 y2 pixels) of every image, detected on the raw image.

    Only images whose content hash is not in the cache are decoded and detected; the cache file is
    rewritten atomically after every chunk, so an interrupted run keeps what it found.
    """
    from ..faces.detection import build_face_detector

    det = build_face_detector(detector).to(device)
    cache_file = _cache_file(cache_dir, det.config())
    cached: dict[str, Any] = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    boxes_by_key: dict[str, list[list[float]]] = cached.get("boxes", {})
    keys = [file_digest(p) for p in paths]
    todo = [i for i, k in enumerate(keys) if k not in boxes_by_key]
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        found = det.detect([load_image(paths[i]) for i in part])
        for i, faces in zip(part, found):
            boxes_by_key[keys[i]] = np.asarray(faces.boxes, np.float32).reshape(-1, 4).tolist()
        atomic_write_json(cache_file, {"version": CACHE_VERSION, "detector": det.config(), "boxes": boxes_by_key}, indent=0)
        if on_progress is not None:
            on_progress(len(part))
    if on_progress is not None and len(todo) < len(paths):
        on_progress(len(paths) - len(todo))
    return [np.asarray(boxes_by_key[k], np.float32).reshape(-1, 4) for k in keys]


def enlarge_boxes(boxes: np.ndarray, margin: float, height: int, width: int) -> np.ndarray:
    """Grow each box by ``margin`` times its width (height) on the left and right (top and bottom),
    clipped to the image."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    if margin < 0:
        raise ValueError(f"box margin must be >= 0, got {margin}")
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    boxes[:, 0] -= margin * w
    boxes[:, 2] += margin * w
    boxes[:, 1] -= margin * h
    boxes[:, 3] += margin * h
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes


def keep_mask(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """``H x W`` float32 mask ``s`` of Eq. 8: 0 inside any box, 1 elsewhere."""
    import torch

    from ..utility.quality import boxes_to_mask

    return boxes_to_mask([torch.as_tensor(boxes)], height, width)[0, 0].numpy().astype(np.float32)
