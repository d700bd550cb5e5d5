"""Training data for the CamPro trainers: face crops split by image, person images, seeded batches.

Reusable by every trainer in :mod:`campro_bench.training` (the ISP trainer, the enhancer):

* :class:`FaceTrainingData` / :func:`load_face_training_data`: raw aligned face crops of a face
  identity dataset (the paper pipeline: detect and align on the raw image; the protector is applied
  to the crop later, during training), split *by image* into a training part and a validation part
  of the same identities (:func:`split_by_image`: ``val_per_identity`` held-out images per identity,
  seeded). Identities with fewer than ``val_per_identity + 1`` images are dropped.
* :class:`PersonTrainingData` / :func:`load_person_training_data`: raw person-detection images
  brought to a detector's input size by the detector's own resize, with their person boxes scaled
  alike (protecting the resized image instead of the full frame is exact for a per-pixel protector
  up to the resize's interpolation).
* :class:`EpochSampler`: batches of indices (plus horizontal-flip flags) from a seeded
  permutation per epoch. Its whole state is ``(epoch, cursor)``, so a checkpoint that stores it
  resumes the exact same batch sequence.

Everything here is deterministic given its seed; fingerprints of what was loaded go into
manifests (without machine-specific paths).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..errors import CamproError, EmptyDatasetError
from ..io import uint8_to_tensor
from ..io.hashing import ids_digest


# ----------------------------------------------------------------------------------------
# faces
# ----------------------------------------------------------------------------------------
@dataclass
class FaceTrainingData:
    """Raw aligned face crops with integer identity labels, split into train and validation.

    ``train_crops`` / ``val_crops`` are uint8 ``N x H x W x 3`` RGB; labels index
    ``identity_names`` (the proxy classes). ``info`` describes where the crops came from.
    """

    train_crops: np.ndarray
    train_labels: np.ndarray
    val_crops: np.ndarray
    val_labels: np.ndarray
    identity_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.identity_names)

    @property
    def crop_size(self) -> tuple[int, int]:
        return int(self.train_crops.shape[1]), int(self.train_crops.shape[2])

    def batch(self, indices: np.ndarray, flips: np.ndarray | None = None, split: str = "train",
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Float ``B x 3 x H x W`` crops in [0, 1] (mirrored where ``flips``) and their labels."""
        crops, labels = (self.train_crops, self.train_labels) if split == "train" else (self.val_crops, self.val_labels)
        images = uint8_to_tensor(crops[indices]).contiguous()
        if flips is not None and flips.any():
            mask = torch.from_numpy(np.asarray(flips, bool)).view(-1, 1, 1, 1)
            images = torch.where(mask, images.flip(-1), images)
        return images.to(device), torch.from_numpy(labels[indices]).to(device)


def split_by_image(labels: np.ndarray, val_per_identity: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)``: ``val_per_identity`` images of every identity held out (seeded).

    Identities with ``val_per_identity`` images or fewer are left out of both parts. Both index
    arrays are sorted, so the split does not depend on the order of identities.
    """
    if val_per_identity < 0:
        raise CamproError(f"val_per_identity must be >= 0, got {val_per_identity}")
    rng = np.random.default_rng([seed, 0x5A11])
    train, val = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) <= val_per_identity:
            continue
        held = rng.choice(members, size=val_per_identity, replace=False) if val_per_identity else np.zeros(0, np.int64)
        val.extend(held.tolist())
        train.extend(sorted(set(members.tolist()) - set(held.tolist())))
    return np.array(sorted(train), np.int64), np.array(sorted(val), np.int64)




def strip_roots(info: Any) -> Any:
    """A copy of a fingerprint / provenance dict without machine-specific ``root`` entries."""
    if isinstance(info, dict):
        return {k: strip_roots(v) for k, v in info.items() if k not in ("root", "crop_cache")}
    if isinstance(info, list):
        return [strip_roots(v) for v in info]
    return info


def load_face_training_data(
    dataset: str,
    alignment: str,
    *,
    val_per_identity: int = 1,
    seed: int = 0,
    max_identities: int = 0,
    detector: str = "mtcnn",
    data_root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Callable[..., Any] | None = None,
    device: str | torch.device = "cpu",
) -> FaceTrainingData:
    """Raw aligned crops of ``dataset`` (cached by :func:`campro_bench.faces.pipeline.aligned_crops`)
    split by image. ``max_identities > 0`` keeps the first N identities (dataset order)."""
    from ..faces.pipeline import aligned_crops

    crops = aligned_crops(dataset, alignment, pipeline="paper", protector="raw", detector=detector,
                          data_root=data_root, cache_dir=cache_dir,
                          min_images_per_identity=val_per_identity + 1, progress=progress, device=device)
    labels = crops.labels
    if max_identities > 0:
        keep = labels < max_identities
        labels = labels[keep]
        images, ids = crops.crops[keep], [i for i, k in zip(crops.image_ids, keep) if k]
        names = crops.identity_names[:max_identities]
    else:
        images, ids, names = crops.crops, crops.image_ids, crops.identity_names
    train, val = split_by_image(labels, val_per_identity, seed)
    if len(train) == 0:
        raise EmptyDatasetError(f"face dataset {dataset} leaves no training images after the split")
    info = {
        "dataset": dataset,
        "alignment": alignment,
        "detector": detector,
        "pipeline": "paper (detect + align on the raw image; protect the crop)",
        "identities": len(names),
        "train_images": int(len(train)),
        "val_images": int(len(val)),
        "val_per_identity": val_per_identity,
        "split_seed": seed,
        "max_identities": max_identities,
        "train_ids_sha": ids_digest([ids[i] for i in train]),
        "val_ids_sha": ids_digest([ids[i] for i in val]),
        "crops": strip_roots(crops.provenance),
    }
    return FaceTrainingData(images[train], labels[train], images[val], labels[val], list(names), info)


# ----------------------------------------------------------------------------------------
# persons
# ----------------------------------------------------------------------------------------
@dataclass
class PersonTrainingData:
    """Raw images at a detector's input size (float ``N x 3 x h x w`` in [0, 1]) and their person
    boxes (``K x 4`` xyxy pixels of the resized image, one tensor per image)."""

    images: torch.Tensor
    boxes: list[torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, indices: np.ndarray, flips: np.ndarray | None = None,
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Images (mirrored where ``flips``, boxes alike) and their boxes."""
        from ..detection.finetune import hflip

        idx = torch.from_numpy(np.asarray(indices, np.int64))
        images = self.images[idx]
        boxes = [self.boxes[int(i)] for i in indices]
        if flips is not None and flips.any():
            flipped, flipped_boxes = hflip(images, boxes)
            mask = torch.from_numpy(np.asarray(flips, bool))
            images = torch.where(mask.view(-1, 1, 1, 1), flipped, images)
            boxes = [fb if f else b for f, b, fb in zip(mask.tolist(), boxes, flipped_boxes)]
        return images.to(device), [b.to(device) for b in boxes]


def load_person_training_data(
    dataset: str,
    detector: Any,  # campro_bench.detection.PersonDetector
    data_root: str | os.PathLike[str] | None = None,
    split: str = "train",
    max_images: int = 0,
    seed: int = 0,
) -> PersonTrainingData:
    """The ``split`` of a person-detection dataset, raw, at ``detector``'s input size.

    Only images with at least one person box are kept (the utility loss needs positives).
    """
    from .. import paths
    from ..datasets.coco import load_person_dataset
    from ..detection.finetune import prepare_training_set

    source = load_person_dataset(dataset, paths.data_root(data_root), split).subset(max_images, seed)
    images, boxes = prepare_training_set(detector, source, protector=None)
    keep = [i for i, b in enumerate(boxes) if b.shape[0] > 0]
    if not keep:
        raise EmptyDatasetError(f"person dataset {dataset} ({split}) has no image with a person box")
    info = {**strip_roots(source.fingerprint()), "images_with_persons": len(keep),
            "input_size": list(images.shape[-2:]), "max_images": max_images, "subset_seed": seed}
    return PersonTrainingData(images[keep].contiguous(), [boxes[i] for i in keep], info)


# ----------------------------------------------------------------------------------------
# batches
# ----------------------------------------------------------------------------------------
class EpochSampler:
    """Full batches of a seeded permutation per epoch, with horizontal-flip flags.

    Epoch ``e`` uses ``numpy.random.default_rng([seed, stream, e])``: its permutation of
    ``range(size)`` and one flip flag per position. The last incomplete batch of an epoch is
    dropped. ``state_dict`` / ``load_state_dict`` hold ``(epoch, cursor)``, all that is needed to
    continue the same sequence. Independent streams (different ``stream``) never share draws.
    """

    def __init__(self, size: int, batch_size: int, seed: int, stream: int, hflip: bool = True) -> None:
        if batch_size < 1:
            raise CamproError(f"batch size must be >= 1, got {batch_size}")
        if size < batch_size:
            raise CamproError(f"{size} training examples are fewer than one batch of {batch_size}")
        self.size, self.batch_size, self.seed, self.stream, self.hflip = size, batch_size, seed, stream, hflip
        self.epoch, self.cursor = 0, 0
        self._order, self._flips = self._draw(0)

    def _draw(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.stream, epoch])
        order = rng.permutation(self.size)
        flips = rng.random(self.size) < 0.5 if self.hflip else np.zeros(self.size, bool)
        return order, flips

    @property
    def batches_per_epoch(self) -> int:
        return self.size // self.batch_size

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices and flip flags of the next batch (moving to a new epoch when needed)."""
        if self.cursor + self.batch_size > self.size:
            self.epoch, self.cursor = self.epoch + 1, 0
            self._order, self._flips = self._draw(self.epoch)
        part = slice(self.cursor, self.cursor + self.batch_size)
        self.cursor += self.batch_size
        return self._order[part], self._flips[part]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor, "size": self.size, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("size") != self.size or state.get("batch_size") != self.batch_size:
            raise CamproError(
                f"sampler state is for {state.get('size')} examples in batches of {state.get('batch_size')}, "
                f"not {self.size} in batches of {self.batch_size}"
            )
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order, self._flips = self._draw(self.epoch)
