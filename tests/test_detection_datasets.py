"""coco-mini and coco128 as COCO-style person ground truth (real data), and label parsing errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from campro_bench.datasets.coco import load_coco128, load_coco_mini, load_person_dataset, parse_yolo_labels
from campro_bench.errors import InvalidFileError, MissingFileError, UnknownNameError
from campro_bench.registries import DATASETS


def test_yolo_label_rows_become_pixel_boxes() -> None:
    text = "0 0.5 0.5 0.2 0.4\n3 0.1 0.1 0.1 0.1\n\n0 0.25 0.75 0.5 0.5\n"
    boxes = parse_yolo_labels(text, 200, 100, "x.txt")
    assert len(boxes) == 2  # the class-3 row is not a person
    assert boxes[0] == pytest.approx([80.0, 30.0, 40.0, 40.0])
    assert boxes[1] == pytest.approx([0.0, 50.0, 100.0, 50.0])
    with pytest.raises(InvalidFileError, match=r"x.txt:1"):
        parse_yolo_labels("0 0.5 oops 0.2 0.4", 10, 10, "x.txt")
    with pytest.raises(InvalidFileError, match=r"x.txt:2"):
        parse_yolo_labels("0 0.5 0.5 0.2 0.4\n0 0.5", 10, 10, "x.txt")


def test_missing_dataset_folder_says_where(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="coco128"):
        load_coco128(tmp_path, "val")
    with pytest.raises(UnknownNameError, match="coco-mini"):
        DATASETS.get("coco-nope")


@pytest.mark.realdata
@pytest.mark.parametrize("split,images,persons", [("train", 61, 254), ("val", 73, 350)])
def test_coco128_counts_and_boxes(data_root: Path, split: str, images: int, persons: int) -> None:
    ds = load_coco128(data_root, split)
    assert len(ds) == images and ds.num_persons == persons
    assert len(ds.coco["annotations"]) == persons
    assert ds.coco["categories"] == [{"id": 1, "name": "person", "supercategory": "person"}]
    boxes = torch.cat([ds.boxes(i) for i in range(len(ds))])
    assert boxes.shape == (persons, 4)
    widths = torch.tensor([ds.images[i].width for i in range(len(ds)) for _ in range(len(ds.boxes(i)))])
    assert bool((boxes[:, 2] > boxes[:, 0]).all()) and bool((boxes[:, 2] <= widths + 1e-3).all())
    assert ds.load_image(0).shape == (3, ds.images[0].height, ds.images[0].width)
    fp = ds.fingerprint()
    assert fp["images"] == images and fp["files"] == images and len(fp["sha256"]) == 64


@pytest.mark.realdata
def test_coco_mini_keeps_every_image_and_person_annotations_only(data_root: Path) -> None:
    ds = load_person_dataset("coco-mini", data_root, "val")
    assert len(ds) == 79
    assert len(ds.coco["annotations"]) == 118  # one of them a crowd box
    assert ds.num_persons == 117
    assert {a["category_id"] for a in ds.coco["annotations"]} == {1}
    with_people = {a["image_id"] for a in ds.coco["annotations"]}
    assert len(with_people) == 39
    # boxes() leaves out crowd boxes; totals agree with num_persons
    assert sum(len(ds.boxes(i)) for i in range(len(ds))) == 117
    assert len(load_coco_mini(data_root, "train").coco["annotations"]) == 172


@pytest.mark.realdata
def test_subset_is_seeded_and_consistent(data_root: Path) -> None:
    ds = load_coco128(data_root, "val")
    a, b, c = ds.subset(5, seed=1), ds.subset(5, seed=1), ds.subset(5, seed=2)
    assert [r.id for r in a.images] == [r.id for r in b.images] != [r.id for r in c.images]
    ids = {r.id for r in a.images}
    assert {im["id"] for im in a.coco["images"]} == ids
    assert all(x["image_id"] in ids for x in a.coco["annotations"])
    assert ds.subset(0) is ds


@pytest.mark.realdata
def test_nested_subsets_grow_by_adding_images(data_root: Path) -> None:
    ds = load_coco128(data_root, "val")
    ids = {n: [r.id for r in ds.nested_subset(n, seed=3).images] for n in (5, 15, 30)}
    assert [len(v) for v in ids.values()] == [5, 15, 30]
    assert set(ids[5]) < set(ids[15]) < set(ids[30])  # the smaller subset is part of the larger
    assert ids[15] == [r.id for r in ds.nested_subset(15, seed=3).images]  # seeded
    assert ids[15] != [r.id for r in ds.nested_subset(15, seed=4).images]
    small = ds.nested_subset(5, seed=3)
    assert {im["id"] for im in small.coco["images"]} == set(ids[5])
    assert {a["image_id"] for a in small.coco["annotations"]} <= set(ids[5])
    assert ds.nested_subset(0) is ds
