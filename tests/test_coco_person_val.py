"""coco-person-val: the seeded fine-tune / test split and its errors (real data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from campro_bench.datasets.coco import load_person_dataset
from campro_bench.datasets.coco_person import load_coco_person_val, split_ids
from campro_bench.errors import CamproError, InvalidFileError, MissingFileError
from campro_bench.utility.detection_eval import evaluate_person_detections


def test_split_is_disjoint_complete_and_seeded() -> None:
    ids = list(range(100, 1145))
    finetune, test = split_ids(ids, 500, seed=0)
    assert len(test) == 500 and len(finetune) == 545
    assert not set(finetune) & set(test) and set(finetune) | set(test) == set(ids)
    assert split_ids(list(reversed(ids)), 500, seed=0) == (finetune, test)  # file order does not matter
    assert split_ids(ids, 500, seed=1)[1] != test
    with pytest.raises(InvalidFileError, match="test_images"):
        split_ids(ids, len(ids), seed=0)


@pytest.mark.realdata
def test_real_split_counts_and_record(data_root: Path) -> None:
    train = load_person_dataset("coco-person-val", data_root, "train")
    val = load_person_dataset("coco-person-val", data_root, "val")
    assert (len(train), len(val)) == (545, 500)
    assert train.num_persons == 545 and val.num_persons == 500
    train_ids, val_ids = {r.id for r in train.images}, {r.id for r in val.images}
    assert not train_ids & val_ids
    record = val.fingerprint()["split_info"]
    assert record["split_seed"] == 0 and record["role"] == "test"
    assert record == {**train.fingerprint()["split_info"], "role": "test"}
    other = load_person_dataset("coco-person-val:split_seed=1,test_images=300", data_root, "val")
    assert len(other) == 300 and other.fingerprint()["split_info"]["test_ids_sha256"] != record["test_ids_sha256"]
    assert all("keypoints" in a for a in val.coco["annotations"])
    # the ground truth scored against itself
    perfect = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0}
               for a in val.coco["annotations"]]
    assert evaluate_person_detections(val.coco, perfect)["AP"] == pytest.approx(1.0)


def _copy(data_root: Path, tmp_path: Path) -> Path:
    source = data_root / "coco-person-val"
    target = tmp_path / "coco-person-val"
    (target / "annotations").mkdir(parents=True)
    shutil.copy(source / "annotations" / "person_keypoints_val2017.json", target / "annotations")
    (target / "images").symlink_to(source / "images")
    return target


@pytest.mark.realdata
def test_malformed_annotation_file_is_one_line_naming_it(data_root: Path, tmp_path: Path) -> None:
    target = _copy(data_root, tmp_path)
    ann = target / "annotations" / "person_keypoints_val2017.json"
    ann.write_text(ann.read_text()[:5000])  # truncated
    with pytest.raises(InvalidFileError) as info:
        load_coco_person_val(tmp_path, "val")
    assert str(ann) in str(info.value) and "\n" not in str(info.value)
    ann.write_text(json.dumps({"images": [{"id": 1}], "annotations": []}))  # no file_name
    with pytest.raises(InvalidFileError, match="person_keypoints_val2017.json"):
        load_coco_person_val(tmp_path, "train")


@pytest.mark.realdata
def test_missing_image_is_one_line_naming_it(data_root: Path, tmp_path: Path) -> None:
    target = _copy(data_root, tmp_path)
    ann = target / "annotations" / "person_keypoints_val2017.json"
    raw = json.loads(ann.read_text())
    test_ids = {r.id for r in load_coco_person_val(data_root, "val").images}
    victim = next(im for im in raw["images"] if im["id"] in test_ids)
    victim["file_name"] = "000000000000.jpg"
    ann.write_text(json.dumps(raw))
    with pytest.raises(MissingFileError) as info:
        load_coco_person_val(tmp_path, "val")
    assert "000000000000.jpg" in str(info.value) and "\n" not in str(info.value)


def test_not_a_person_dataset_and_unknown_option(data_root: Path) -> None:
    with pytest.raises(InvalidFileError, match="not a person-detection dataset"):
        load_person_dataset("lfw", data_root, "val")
    with pytest.raises(CamproError, match="split_sed"):
        load_person_dataset("coco-person-val:split_sed=1", data_root, "val")
