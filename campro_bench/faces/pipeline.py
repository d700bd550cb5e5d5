"""The two face pipelines and the aligned-crop cache.

``paper`` (the paper's simulation, Sec. VI-A): detect and align on the *raw* image, then apply the
protector to the aligned crop. An image where the detector finds no face falls back to the
detector's lenient variant (lower thresholds), then to a fixed centre guess
(:func:`campro_bench.faces.align.centre_face`); both are counted in the provenance
(``fallback_lenient``, ``fallback_centre``) and every image yields a crop.

``camera`` (what a deployed camera does): protect the full frame, then detect and align on the
protected frame. A frame where no face is found yields no crop (``found`` is False, the embedding
row is zero and an identification counts it as wrong); the provenance reports the detection rate.

Protected images are quantised to 8 bits, as a camera outputs them. Detections and crops are
cached (:class:`~campro_bench.faces.store.ShardStore`): detections per (dataset, detector,
pipeline, and protector for ``camera``), crops additionally per alignment. ``paper`` crops are
cached unprotected and protected on the fly, so every protector shares one detection pass.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterator, Sequence

import numpy as np
import torch

from .. import paths
from ..datasets.faces import FaceDataset, FaceItem, load_face_dataset
from ..errors import CamproError, EmptyDatasetError, InvalidFileError
from ..io import load_image, tensor_to_uint8, uint8_to_tensor
from ..protectors import build_protector
from ..protectors.base import Protector
from .align import centre_face, get_alignment
from .detection import FaceDetector, build_face_detector, primary_face
from .store import ShardStore

PIPELINES = ("paper", "camera")
DETECTED, LENIENT, CENTRE, NONE = 0, 1, 2, -1
"""Where a face came from: the detector, its lenient variant, the centre guess, nowhere."""

ProgressFactory = Callable[[str, int], ContextManager[Callable[[int], None]]]
CHUNK = 64


@dataclass
class AlignedCrops:
    """Aligned face crops of a dataset, in dataset order."""

    image_ids: list[str]
    labels: np.ndarray  # int64 [N]
    identity_names: list[str]
    crops: np.ndarray  # uint8 [N, H, W, 3]
    found: np.ndarray  # bool [N]
    provenance: dict[str, Any]
    source: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))  # DETECTED / LENIENT / CENTRE / NONE


@contextlib.contextmanager
def progress_bar(progress: ProgressFactory | None, description: str, total: int) -> Iterator[Callable[[int], None]]:
    """``progress(description, total)`` or a silent stand-in when ``progress`` is None."""
    if progress is None or total == 0:
        yield lambda n=1: None
    else:
        with progress(description, total) as advance:
            yield advance


def select_items(ds: FaceDataset, min_images_per_identity: int = 1,
                 image_ids: Sequence[str] | None = None) -> tuple[list[FaceItem], np.ndarray, list[str]]:
    """Items of identities with at least ``min_images_per_identity`` images (optionally only
    ``image_ids``), their labels and the label -> identity name list."""
    items = ds.items()
    kept, labels, names = select_layout([(it.image_id, it.identity) for it in items], min_images_per_identity,
                                        image_ids)
    if image_ids is not None:  # kept = eligible ids among the wanted ones; the rest are unknown
        unknown = set(image_ids) - {items[n].image_id for n in kept}
        if unknown:
            raise CamproError(f"{len(unknown)} image ids are not in dataset {ds.spec()}, e.g. {sorted(unknown)[0]}")
    if not kept:
        raise EmptyDatasetError(
            f"dataset {ds.spec()} has no identity with >= {min_images_per_identity} images"
        )
    return [items[n] for n in kept], labels, names


def select_layout(index: Sequence[tuple[str, str]], min_images: int = 1,
                  image_ids: Sequence[str] | None = None) -> tuple[list[int], np.ndarray, list[str]]:
    """Positions in ``index`` (``(image id, identity)`` pairs, dataset order) of the images of
    identities with at least ``min_images`` images (counted over the whole index), optionally only
    ``image_ids``; their labels (identities numbered by first appearance) and the label -> name list.
    The one labelling rule of the face pipeline and of the protocols that draw splits before embedding."""
    counts: dict[str, int] = {}
    for _, name in index:
        counts[name] = counts.get(name, 0) + 1
    wanted = None if image_ids is None else set(image_ids)
    kept = [n for n, (image_id, name) in enumerate(index)
            if counts[name] >= min_images and (wanted is None or image_id in wanted)]
    slots: dict[str, int] = {}
    for n in kept:
        slots.setdefault(index[n][1], len(slots))
    return kept, np.array([slots[index[n][1]] for n in kept], np.int64), list(slots)


def is_identity(protector: Protector) -> bool:
    return protector.name == "raw" and not protector.params()


def protect_uint8(protector: Protector, images: list[np.ndarray], device: str | torch.device = "cpu",
                  batch_size: int = 32) -> list[np.ndarray]:
    """Apply a protector to uint8 RGB images (batched by equal shape); 8-bit outputs.

    Outputs are written into one preallocated array per image shape: keeping per-batch results
    alive instead fragments the heap (measured: ~7x the output size retained).
    """
    if is_identity(protector):
        return images
    out: list[np.ndarray | None] = [None] * len(images)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(img.shape, []).append(i)
    protector = protector.to(device)
    with torch.inference_mode():
        for shape, indices in groups.items():
            result = np.empty((len(indices),) + shape, np.uint8)
            for k in range(0, len(indices), batch_size):
                part = indices[k : k + batch_size]
                x = uint8_to_tensor(np.stack([images[i] for i in part])).to(device)
                result[k : k + len(part)] = tensor_to_uint8(protector(x))
            for n, i in enumerate(indices):
                out[i] = result[n]
    return [o for o in out if o is not None]


def _detect_primary(detector: FaceDetector, frames: list[np.ndarray], pipeline: str) -> dict[str, np.ndarray]:
    """Primary face per frame with its source; the paper pipeline's fallbacks applied."""
    n = len(frames)
    boxes, marks = np.zeros((n, 4), np.float32), np.zeros((n, 5, 2), np.float32)
    scores, source, count = np.zeros(n, np.float32), np.full(n, NONE, np.int8), np.zeros(n, np.int16)
    for i, (img, faces) in enumerate(zip(frames, detector.detect(frames))):
        count[i] = len(faces)
        j = primary_face(faces, img.shape)
        if j is not None:
            boxes[i], marks[i], scores[i], source[i] = faces.boxes[j], faces.landmarks[j], faces.scores[j], DETECTED
    if pipeline == "paper":
        retry = [i for i in range(n) if source[i] == NONE]
        lenient = detector.lenient() if retry else None
        if lenient is not None:
            for i, faces in zip(retry, lenient.detect([frames[i] for i in retry])):
                j = primary_face(faces, frames[i].shape)
                if j is not None:
                    boxes[i], marks[i], scores[i], source[i] = faces.boxes[j], faces.landmarks[j], faces.scores[j], LENIENT
        for i in range(n):
            if source[i] == NONE:
                boxes[i], marks[i] = centre_face(frames[i].shape)
                source[i] = CENTRE
    return {"box": boxes, "landmarks": marks, "score": scores, "source": source, "count": count}


def aligned_crops(
    dataset: str | FaceDataset,
    alignment: str = "arcface-112",
    *,
    pipeline: str = "paper",
    protector: str | Protector = "raw",
    detector: str | FaceDetector = "mtcnn",
    data_root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    min_images_per_identity: int = 1,
    progress: ProgressFactory | None = None,
    image_ids: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
) -> AlignedCrops:
    """Aligned crops of a dataset through one pipeline (see the module docstring), cached.

    ``image_ids`` restricts the result to those dataset ids (kept in dataset order).
    """
    if pipeline not in PIPELINES:
        raise CamproError(f"unknown pipeline '{pipeline}'; known pipelines: {', '.join(PIPELINES)}")
    ds = load_face_dataset(dataset, data_root)
    prot, det, align = build_protector(protector), build_face_detector(detector), get_alignment(alignment)
    det.to(str(device))
    cache = paths.cache_dir(cache_dir)
    items, labels, names = select_items(ds, min_images_per_identity, image_ids)
    ids = [it.image_id for it in items]
    fp = ds.fingerprint()
    det_key = {"dataset": fp["sha256"], "detector": det.config(), "pipeline": pipeline,
               "protector": prot.fingerprint() if pipeline == "camera" else None}
    det_store = ShardStore(cache, "detections", det_key)
    crop_store = ShardStore(cache, "crops", {**det_key, "alignment": alignment, "size": list(align.size)})
    fields = ("crop", "source")
    cached, have = crop_store.get(ids, fields)
    missing = [n for n in range(len(ids)) if not have[n]]
    if missing:
        _fill_crops(ds, [items[n] for n in missing], det, prot, align, pipeline, det_store, crop_store, progress, device)
        cached, have = crop_store.get(ids, fields)
    crops, source = cached["crop"], cached["source"]
    found = source != NONE
    if pipeline == "paper" and not is_identity(prot):
        key = (str(crop_store.folder), prot.fingerprint(), str(device), tuple(ids))
        crops = _protected_crops(prot, crops, key, device)
    return AlignedCrops(ids, labels, names, crops, found, crop_provenance(ds, fp, prot, det, alignment, pipeline, source, crop_store), source)


_LAST_PROTECTED: list[tuple[tuple[Any, ...], np.ndarray]] = []
"""The most recent protected crop set of this process: (key, crops)."""
MEMO_LIMIT_BYTES = 1 << 30


def _protected_crops(prot: Protector, crops: np.ndarray, key: tuple[Any, ...], device: str | torch.device) -> np.ndarray:
    """``protect_uint8`` of the cached raw crops, remembered for the next call with the same key.

    Models that share an alignment (the two FaceNets; SFace and the MobileFaceNets) see the same
    protected crops; E1 embeds them one after the other (``_embed_all``), so the protector (the
    CamPro enhancer: ~24 ms per 160x160 crop on 2 cores) runs once per alignment, not once per
    model. The key holds the crop cache folder (dataset, detector, alignment), the protector's
    fingerprint, the device and the image ids; one set is kept, and none above
    ``MEMO_LIMIT_BYTES``. Callers only read the crops.
    """
    if _LAST_PROTECTED and _LAST_PROTECTED[0][0] == key:
        return _LAST_PROTECTED[0][1]
    _LAST_PROTECTED.clear()
    out = np.stack(protect_uint8(prot, list(crops), device)) if len(crops) else crops.copy()
    if out.nbytes <= MEMO_LIMIT_BYTES:
        _LAST_PROTECTED.append((key, out))
    return out


def crop_provenance(ds: FaceDataset, fp: dict[str, Any], prot: Protector, det: FaceDetector, alignment: str,
                    pipeline: str, source: np.ndarray, store: ShardStore | None = None) -> dict[str, Any]:
    """What produced a set of crops, with the pipeline's counts."""
    n = int(len(source))
    prov: dict[str, Any] = {
        "dataset": ds.spec(), "dataset_fingerprint": fp, "protector": prot.spec(),
        "protector_fingerprint": prot.fingerprint(), "pipeline": pipeline, "detector": det.spec(),
        "alignment": alignment, "images": n,
        "detected": int((source == DETECTED).sum()),
        "detection_rate": float((source == DETECTED).mean()) if n else 0.0,
    }
    if pipeline == "paper":
        prov["fallback_lenient"] = int((source == LENIENT).sum())
        prov["fallback_centre"] = int((source == CENTRE).sum())
    else:
        prov["not_found"] = int((source == NONE).sum())
    if store is not None:
        prov["crop_cache"] = str(store.folder)
    return prov


UNREADABLE_SIZE = 64
"""Side of the black frame that stands in for an image that cannot be decoded."""


def _load_or_blank(item: FaceItem) -> np.ndarray:
    """The image, or (with a warning naming it) a black frame: one bad file does not stop a run.

    A black frame holds no face, so the image counts as a failed detection (a wrong probe).
    """
    try:
        return load_image(item.path)
    except InvalidFileError as exc:
        warnings.warn(f"{exc}; it counts as an image without a face", stacklevel=2)
        return np.zeros((UNREADABLE_SIZE, UNREADABLE_SIZE, 3), np.uint8)


def _fill_crops(ds: FaceDataset, items: list[FaceItem], det: FaceDetector, prot: Protector, align: Any,
                pipeline: str, det_store: ShardStore, crop_store: ShardStore,
                progress: ProgressFactory | None, device: str | torch.device) -> None:
    """Detect (where not cached) and align ``items``, writing one crop shard per chunk."""
    h, w = align.size
    with progress_bar(progress, f"detect + align {ds.spec()} ({det.spec()}, {align.name}, {pipeline})", len(items)) as advance:
        for k in range(0, len(items), CHUNK):
            chunk = items[k : k + CHUNK]
            ids = [it.image_id for it in chunk]
            frames = [_load_or_blank(it) for it in chunk]
            if pipeline == "camera":
                frames = protect_uint8(prot, frames, device)
            dets, have = det_store.get(ids, ("box", "landmarks", "score", "source", "count"))
            if not have.all():
                todo = [n for n in range(len(chunk)) if not have[n]]
                new = _detect_primary(det, [frames[n] for n in todo], pipeline)
                det_store.put([ids[n] for n in todo], new)
                dets, have = det_store.get(ids, ("box", "landmarks", "score", "source", "count"))
            crops = np.zeros((len(chunk), h, w, 3), np.uint8)
            for n, frame in enumerate(frames):
                if dets["source"][n] != NONE:
                    crops[n] = align(frame, dets["box"][n], dets["landmarks"][n])
            crop_store.put(ids, {"crop": crops, "source": dets["source"]})
            advance(len(chunk))
