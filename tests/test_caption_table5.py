"""Table V end to end at tiny scale: real MediaPipe pose AP and tiny-BLIP CIDEr-D."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from campro_bench.experiments import run_experiment
from campro_bench.utility.caption import make_tiny_blip

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.mark.realdata
def test_table5_tiny(tmp_path: Path, data_root: Path) -> None:
    blip = make_tiny_blip(tmp_path / "blip")
    out, result = run_experiment(
        "table5",
        overrides=["limit=2", 'protectors=["raw", "lowres:factor=16"]', f"caption.path={blip}",
                   "caption.options={num_beams=1, max_new_tokens=6}", 'pose.dataset=""', "pose.bootstrap=0"],
        out=tmp_path / "run", data_root=str(data_root), device="cpu", compare="paper", quiet=True,
    )
    table = result.tables["table5"]
    assert list(table["application"]) == ["Human Pose Estimation"] * 2 + ["Image Caption"] * 2
    assert list(table["image_type"]) == ["raw", "lowres:factor=16"] * 2
    assert table["value"].between(0, 10).all()
    pose = result.tables["table5_pose"].set_index("protector")
    assert (pose["persons"] == 3).all()  # the first two images hold three labelled persons
    assert pose.loc["raw", "poses_found"] >= 1 and 0 < pose.loc["raw", "AP"] <= 1
    captions = table[table["application"] == "Image Caption"]
    assert captions["status"].str.startswith("ok (tokenizer: ").all()
    paper = result.tables["paper_table5"]
    assert paper["source"].str.contains("paper").all() and set(paper["metric"]) == {"AP", "CIDEr"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["pose_estimator"]["name"] == "mediapipe-pose"
    assert manifest["models"]["captioner"]["path"] == blip.name  # manifests hold no absolute path
    assert manifest["data"]["pose"]["files"] == 2 and manifest["data"]["captions"]["files"] == 2
    assert manifest["notes"]["caption_tokenizer"][0] in ("ptb", "simple")


@pytest.mark.realdata
def test_table5_pose_on_coco_person_val_test_persons_with_intervals(tmp_path: Path, data_root: Path) -> None:
    """The default pose data: coco-person-val's test images, each AP with its bootstrap interval."""
    from campro_bench.datasets.coco import load_person_dataset
    from campro_bench.utility.pose import keypoints_of_person_dataset

    out, result = run_experiment(
        "table5", overrides=["limit=6", 'protectors=["raw", "defocus:kernel=25,sigma=7"]', "caption.enabled=false",
                             "pose.bootstrap=200"],
        out=tmp_path / "run", data_root=str(data_root), quiet=True,
    )
    pose = result.tables["table5_pose"].set_index("protector")
    assert (pose["persons"] == 6).all()  # one person per image
    for spec in pose.index:
        assert pose.loc[spec, "AP_lo"] <= pose.loc[spec, "AP"] <= pose.loc[spec, "AP_hi"]
    rows = result.tables["table5"].iloc[:2]
    assert (rows["value_lo"] <= rows["value"]).all() and (rows["value"] <= rows["value_hi"]).all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["pose"]["split_info"]["role"] == "test" and manifest["data"]["pose"]["files"] == 6
    test = load_person_dataset("coco-person-val", data_root, "val")
    finetune_ids = {r.id for r in load_person_dataset("coco-person-val", data_root, "train").images}
    scored = keypoints_of_person_dataset(test, 6).image_ids
    assert len(scored) == 6 and set(scored) <= {r.id for r in test.images} and not set(scored) & finetune_ids


@pytest.mark.realdata
def test_table5_without_captioner_says_unavailable(tmp_path: Path, data_root: Path) -> None:
    _, result = run_experiment(
        "table5", overrides=["limit=2", 'protectors=["raw"]', "pose.enabled=false"],
        out=tmp_path / "run", data_root=str(data_root), models_dir=str(tmp_path / "models"), quiet=True,
    )
    (row,) = result.tables["table5"].to_dict("records")
    assert row["application"] == "Image Caption" and math.isnan(row["value"])
    assert row["status"].startswith("unavailable: BLIP model folder")
    assert str(tmp_path / "models" / "blip") in row["status"]
