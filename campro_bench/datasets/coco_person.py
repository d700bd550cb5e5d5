"""``coco-person-val``: COCO val2017 images with exactly one annotated person, split into
fine-tuning and test images by a seeded, recorded draw.

The folder (``<data root>/coco-person-val``) holds ``images/<COCO name>.jpg`` and
``annotations/person_keypoints_val2017.json`` (official box, polygon and 17 keypoints of each
image's one person, scaled with the images to 320 px longest side). There is one file of images,
so the two splits are drawn here:

* ``val`` (the *test* images): ``test_images`` image ids drawn with ``random.Random(split_seed)``
  from the ids in ascending order; the detector, pose and trade-off utilities are scored on them;
* ``train`` (the *fine-tune* images): every other image; detectors (E3), the ISP's person term
  (``train isp --person-dataset coco-person-val``) and the enhancer train on them.

The split names are those of the other person datasets, so every consumer of ``train`` / ``val``
works unchanged, and a test image can never reach training. The split is part of the dataset's
fingerprint (``split`` block: seed, sizes and a SHA-256 of each id list), which every manifest
records. Options are given as a spec: ``coco-person-val:split_seed=1,test_images=400``.

The ground truth keeps each person's ``keypoints`` / ``num_keypoints`` beside the box, so the same
:class:`~campro_bench.datasets.coco.PersonDataset` serves person AP and keypoint (OKS) AP.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from ..errors import EmptyDatasetError, InvalidFileError, MissingFileError
from ..io.hashing import sha256_json
from ..registries import DATASETS
from .coco import PERSON_CATEGORY, SPLITS, ImageRecord, PersonDataset, _check_split, _require_dir, coco_dict

NAME = "coco-person-val"
ANNOTATION_FILE = Path("annotations") / "person_keypoints_val2017.json"
KEPT_KEYS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd", "keypoints", "num_keypoints")
DEFAULT_TEST_IMAGES = 500


def split_ids(image_ids: list[int], test_images: int, seed: int) -> tuple[list[int], list[int]]:
    """``(fine-tune ids, test ids)``, both ascending: ``test_images`` ids drawn with ``seed``.

    The draw is over the ids in ascending order, so it depends on the set of ids only, never on
    the order of the annotation file.
    """
    ordered = sorted(set(image_ids))
    if not 0 < test_images < len(ordered):
        raise InvalidFileError(f"{NAME}: test_images must be between 1 and {len(ordered) - 1}, got {test_images}")
    test = set(random.Random(seed).sample(ordered, test_images))
    return [i for i in ordered if i not in test], sorted(test)


def _read_annotations(ann_file: Path) -> dict[str, Any]:
    if not ann_file.is_file():
        raise MissingFileError(f"COCO annotation file {ann_file} does not exist; put it in {ann_file.parent}")
    try:
        raw = json.loads(ann_file.read_text(encoding="utf-8"))
        for image in raw["images"]:
            int(image["id"]), str(image["file_name"]), int(image["width"]), int(image["height"])
        for ann in raw["annotations"]:
            int(ann["image_id"]), int(ann["category_id"]), [float(v) for v in ann["bbox"]]
        return raw
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise InvalidFileError(f"{ann_file}: not a COCO person_keypoints file ({type(exc).__name__}: {exc})") from None


@DATASETS.register(
    NAME, kind="person-detection", splits=SPLITS,
    description="COCO val2017 images with one person (box + keypoints), 320 px; seeded split: "
                "train = fine-tune images, val = test images",
)
def load_coco_person_val(
    data_root: Path, split: str = "val", split_seed: Annotated[int, Field(ge=0)] = 0,
    test_images: Annotated[int, Field(ge=1)] = DEFAULT_TEST_IMAGES,
) -> PersonDataset:
    """The ``split`` of ``coco-person-val`` (``train``: fine-tune images, ``val``: test images)."""
    _check_split(NAME, split)
    root = _require_dir(Path(data_root) / NAME, NAME)
    ann_file = root / ANNOTATION_FILE
    raw = _read_annotations(ann_file)
    image_dir = _require_dir(root / "images", f"{NAME} images")
    by_id = {int(im["id"]): im for im in raw["images"]}
    if not by_id:
        raise EmptyDatasetError(f"{ann_file} lists no images")
    finetune, test = split_ids(list(by_id), test_images, split_seed)
    chosen = test if split == "val" else finetune
    images = [
        ImageRecord(i, image_dir / by_id[i]["file_name"], int(by_id[i]["width"]), int(by_id[i]["height"]))
        for i in chosen
    ]
    missing = [r.path for r in images if not r.path.is_file()]
    if missing:
        raise MissingFileError(f"image {missing[0]} listed in {ann_file} is missing ({len(missing)} missing in all)")
    ids = set(chosen)
    annotations = [
        {k: a[k] for k in KEPT_KEYS if k in a}
        for a in raw["annotations"]
        if a["category_id"] == PERSON_CATEGORY["id"] and int(a["image_id"]) in ids
    ]
    split_info = {
        "split_seed": split_seed, "test_images": len(test), "finetune_images": len(finetune),
        "role": "test" if split == "val" else "fine-tune",
        "test_ids_sha256": sha256_json(test), "finetune_ids_sha256": sha256_json(finetune),
    }
    return PersonDataset(NAME, split, root, images, coco_dict(images, annotations), [ann_file], split_info)
