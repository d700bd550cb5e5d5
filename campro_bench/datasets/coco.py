"""COCO person-detection data: ``coco-mini`` (official JSON) and ``coco128`` (YOLO labels).

Both become the same thing: a :class:`PersonDataset`, i.e. a list of images plus COCO-style ground
truth *in memory* (``{"images", "annotations", "categories"}``, person category only, id 1), which
pycocotools evaluates directly. Nothing is written next to the data.

* ``coco-mini``: ``coco-mini/annotations/instances_{split}2017.json`` and ``{split}2017/*.jpg``;
  every image listed in the JSON counts (images without people test false positives); only
  ``category_id == 1`` annotations are kept, ``iscrowd`` flags unchanged.
* ``coco128``: ``coco128/images/{split}2017/*.jpg`` with ``labels/{split}2017/*.txt`` rows
  ``class cx cy w h`` (normalised, class 0 = person); person rows become ``[x, y, w, h]`` pixel
  boxes with ``area = w * h`` and ``iscrowd = 0``. The image id is the number in the file name.

Datasets are found under the data root (``--data-root`` / ``CAMPRO_BENCH_DATA``).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..errors import EmptyDatasetError, InvalidFileError, MissingFileError
from ..io import list_images, load_image_tensor
from ..registries import DATASETS
from .fingerprint import fingerprint

PERSON_CATEGORY = {"id": 1, "name": "person", "supercategory": "person"}
SPLITS = ("train", "val")


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: Path
    width: int
    height: int


@dataclass
class PersonDataset:
    """Images and their person ground truth, COCO style.

    ``coco`` is a COCO annotation dict restricted to the person category; ``images`` follow
    ``coco["images"]`` order. :meth:`boxes` gives the non-crowd person boxes of one image as
    ``K x 4`` xyxy pixels, the targets for training.
    """

    name: str
    split: str
    root: Path
    images: list[ImageRecord]
    coco: dict[str, Any]
    label_files: list[Path] = field(default_factory=list)
    split_info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_persons(self) -> int:
        return sum(1 for a in self.coco["annotations"] if not a.get("iscrowd", 0))

    def load_image(self, index: int) -> torch.Tensor:
        """Image ``index`` as ``3 x H x W`` float in [0, 1]."""
        return load_image_tensor(self.images[index].path)

    def boxes(self, index: int) -> torch.Tensor:
        """Non-crowd person boxes of image ``index``, ``K x 4`` xyxy pixels."""
        image_id = self.images[index].id
        rows = [
            a["bbox"] for a in self.coco["annotations"]
            if a["image_id"] == image_id and not a.get("iscrowd", 0)
        ]
        boxes = torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        return boxes

    def subset(self, max_images: int, seed: int = 0) -> "PersonDataset":
        """A seeded random subset of ``max_images`` images (all when ``max_images <= 0``)."""
        if max_images <= 0 or max_images >= len(self.images):
            return self
        return self._restricted(random.Random(seed).sample(range(len(self.images)), max_images))

    def nested_subset(self, size: int, seed: int = 0) -> "PersonDataset":
        """The first ``size`` images of one seeded permutation (all when ``size <= 0``).

        Unlike :meth:`subset`, the subsets of one seed are nested: the 50-image subset is part
        of the 150-image one, so a learning curve adds data instead of drawing a new sample.
        """
        if size <= 0 or size >= len(self.images):
            return self
        order = list(range(len(self.images)))
        random.Random(seed).shuffle(order)
        return self._restricted(order[:size])

    def _restricted(self, indices: list[int]) -> "PersonDataset":
        """The images at ``indices`` (kept in dataset order) with their annotations."""
        chosen = sorted(indices)
        images = [self.images[i] for i in chosen]
        ids = {r.id for r in images}
        coco = {
            **self.coco,
            "images": [im for im in self.coco["images"] if im["id"] in ids],
            "annotations": [a for a in self.coco["annotations"] if a["image_id"] in ids],
        }
        return replace(self, images=images, coco=coco)

    def fingerprint(self) -> dict[str, Any]:
        """Content identity of the images and labels used (for manifests)."""
        info = fingerprint(self.root, [r.path for r in self.images], self.label_files)
        extra = {"split_info": self.split_info} if self.split_info else {}
        return {"dataset": self.name, "split": self.split, "images": len(self), "persons": self.num_persons,
                **info, **extra}


def coco_dict(images: list[ImageRecord], annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """COCO ground truth (person category only) as pycocotools reads it."""
    return {
        "images": [{"id": r.id, "file_name": r.path.name, "width": r.width, "height": r.height} for r in images],
        "annotations": annotations,
        "categories": [PERSON_CATEGORY],
    }


def _check_split(name: str, split: str) -> None:
    if split not in SPLITS:
        raise InvalidFileError(f"dataset '{name}' has splits {', '.join(SPLITS)}, not '{split}'")


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise MissingFileError(f"{what} folder {path} does not exist; put the dataset under the data root")
    return path


@DATASETS.register(
    "coco-mini", kind="person-detection", splits=SPLITS,
    description="COCO 2017 official annotations, few images per split; person boxes",
)
def load_coco_mini(data_root: Path, split: str = "val") -> PersonDataset:
    """``coco-mini`` from the official COCO JSON (person category only)."""
    _check_split("coco-mini", split)
    root = _require_dir(Path(data_root) / "coco-mini", "coco-mini")
    ann_file = root / "annotations" / f"instances_{split}2017.json"
    if not ann_file.is_file():
        raise MissingFileError(f"COCO annotation file {ann_file} does not exist; put it in {ann_file.parent}")
    try:
        raw = json.loads(ann_file.read_text(encoding="utf-8"))
        image_dir = _require_dir(root / f"{split}2017", "coco-mini images")
        images = [
            ImageRecord(int(im["id"]), image_dir / im["file_name"], int(im["width"]), int(im["height"]))
            for im in raw["images"]
        ]
        annotations = [
            {k: a[k] for k in ("id", "image_id", "category_id", "bbox", "area", "iscrowd")}
            for a in raw["annotations"] if a["category_id"] == PERSON_CATEGORY["id"]
        ]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidFileError(f"{ann_file}: not a COCO instances file ({exc})") from exc
    missing = [r.path.name for r in images if not r.path.is_file()]
    if missing:
        raise MissingFileError(f"{len(missing)} image(s) listed in {ann_file.name} are missing from {image_dir}, e.g. {missing[0]}")
    if not images:
        raise EmptyDatasetError(f"{ann_file} lists no images")
    return PersonDataset("coco-mini", split, root, images, coco_dict(images, annotations), [ann_file])


def parse_yolo_labels(text: str, width: int, height: int, source: str) -> list[list[float]]:
    """Person rows (class 0) of a YOLO label file as ``[x, y, w, h]`` pixel boxes."""
    boxes = []
    for line_no, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) < 5:
                raise ValueError("too few values")
            cls = int(parts[0])
            cx, cy, w, h = (float(v) for v in parts[1:5])
        except ValueError as exc:
            raise InvalidFileError(f"{source}:{line_no}: expected 'class cx cy w h', got {line!r}") from exc
        if cls == 0:
            boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height])
    return boxes


@DATASETS.register(
    "coco128", kind="person-detection", splits=SPLITS,
    description="COCO images with people, YOLO-format labels converted to COCO ground truth",
)
def load_coco128(data_root: Path, split: str = "val") -> PersonDataset:
    """``coco128``: YOLO labels converted to COCO-style person ground truth in memory."""
    _check_split("coco128", split)
    root = _require_dir(Path(data_root) / "coco128", "coco128")
    image_dir = _require_dir(root / "images" / f"{split}2017", "coco128 images")
    label_dir = _require_dir(root / "labels" / f"{split}2017", "coco128 labels")
    files = list_images(image_dir)
    if not files:
        raise EmptyDatasetError(f"no images in {image_dir}")
    images, annotations, label_files = [], [], []
    for path in files:
        try:
            with Image.open(path) as img:
                width, height = img.size
        except OSError as exc:
            raise InvalidFileError(f"cannot read image {path}: {exc}") from exc
        try:
            image_id = int(path.stem)
        except ValueError as exc:
            raise InvalidFileError(f"{path.name}: coco128 image names must be COCO ids (digits)") from exc
        images.append(ImageRecord(image_id, path, width, height))
        label = label_dir / f"{path.stem}.txt"
        if not label.is_file():
            continue  # an image without a label file has no objects (YOLO convention)
        label_files.append(label)
        for bbox in parse_yolo_labels(label.read_text(encoding="utf-8"), width, height, str(label)):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                 "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0}
            )
    return PersonDataset("coco128", split, root, images, coco_dict(images, annotations), label_files)


def load_person_dataset(name: str, data_root: Path, split: str = "val") -> PersonDataset:
    """Any registered person-detection dataset by name or spec (``coco-person-val:split_seed=1``)."""
    from ..specs import parse_spec

    if DATASETS.entry(parse_spec(name, "dataset")[0]).metadata.get("kind", "person-detection") != "person-detection":
        raise InvalidFileError(f"dataset '{name}' is not a person-detection dataset")
    return DATASETS.build(name, PersonDataset, data_root=Path(data_root), split=split)
