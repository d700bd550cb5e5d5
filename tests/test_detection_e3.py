"""E3 end to end at tiny scale through ``run_experiment``, and ``campro-bench train detector``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from campro_bench.cli.main import main
from campro_bench.experiments import run_experiment
from campro_bench.experiments.e3 import PAPER_LABEL, paper_rows
from campro_bench.utility.detection_eval import METRICS

pytestmark = pytest.mark.realdata

TINY = [
    "max_images=4",
    "max_train_images=4",
    "finetune_epochs=1",
    "batch_size=4",
    'protectors=[{label="Raw", spec="raw"}, {label="Low-Resolution", spec="lowres:factor=16"}]',
]


@pytest.fixture()
def cache(tmp_path: Path, cache_dir: Path) -> Path:
    """A fresh cache that already holds the converted SSDLite weights (conversion is tested elsewhere)."""
    fresh = tmp_path / "cache"
    (fresh / "models").mkdir(parents=True)
    for f in (cache_dir / "models").glob("ssdlite-mobilenetv2-coco-*.pt"):
        shutil.copy(f, fresh / "models" / f.name)
    return fresh


def test_paper_table_is_transcribed_and_labelled() -> None:
    table = paper_rows()
    assert table["Method"].tolist() == ["Raw Images", "Low-Resolution", "Defocused", "CamPro"]
    assert set(table["source"]) == {PAPER_LABEL}
    assert float(table.loc[table["Method"] == "CamPro", "AP"].iloc[0]) == pytest.approx(0.475)


def test_e3_runs_end_to_end_and_reuses_finetuned_detectors(tmp_path: Path, cache: Path, data_root: Path) -> None:
    folder, result = run_experiment(
        "e3", overrides=TINY, out=tmp_path / "run1", data_root=str(data_root), cache_dir=str(cache),
        device="cpu", compare="paper", quiet=True,
    )
    table = result.tables["table3"]
    ours = table[~table["source"].eq(PAPER_LABEL)]
    assert ours["Method"].tolist() == ["Raw", "Low-Resolution"]
    assert len(table) == 2 + 4  # with the paper's rows
    for metric in METRICS:
        assert ours[metric].between(0, 1).all(), metric
    for key in ("AP", "AP@0.5", "AP@0.75"):  # every AP with its bootstrap interval around it
        assert ((ours[f"{key}_lo"] <= ours[key]) & (ours[key] <= ours[f"{key}_hi"])).all(), key
    assert "coco-person-val test 4 img" in ours["source"].iloc[0]
    assert (folder / "table3.csv").is_file() and (folder / "table3.md").is_file()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["seeds"]["seed"] == 0 and manifest["seeds"]["finetune"] == 0
    assert manifest["data"]["eval"]["images"] == 4 and manifest["data"]["train"]["images"] == 4
    assert manifest["data"]["eval"]["split_info"]["split_seed"] == 0
    assert manifest["notes"]["bootstrap"]["draws"] == 1000
    assert len(manifest["models"]["ssdlite-mobilenetv2-coco"]["weights_sha256"]) == 16
    assert manifest["models"]["ssdlite-mobilenetv2-coco fine-tuned on Raw"]["cached"] is False
    reports = json.loads((folder / "finetune_reports.json").read_text())
    assert set(reports) == {"Raw", "Low-Resolution"} and len(reports["Raw"]["epoch_loss"]) == 1
    assert len(list((cache / "detectors").glob("*.pt"))) == 2

    # the same spec again: fine-tuned detectors come from the cache, numbers are identical
    folder2, result2 = run_experiment(
        "e3", overrides=TINY, out=tmp_path / "run2", data_root=str(data_root), cache_dir=str(cache),
        device="cpu", quiet=True,
    )
    again = result2.tables["table3"]
    assert len(again) == 2
    pd.testing.assert_frame_equal(again[list(METRICS)], ours[list(METRICS)].reset_index(drop=True))
    manifest2 = json.loads((folder2 / "manifest.json").read_text())
    assert manifest2["models"]["ssdlite-mobilenetv2-coco fine-tuned on Raw"]["cached"] is True


def test_e3_without_finetuning_uses_the_pretrained_detector(tmp_path: Path, cache: Path, data_root: Path) -> None:
    overrides = ["max_images=3", "finetune_epochs=0", 'protectors=[{label="Raw", spec="raw"}]']
    folder, result = run_experiment(
        "e3", overrides=overrides, out=tmp_path / "run", data_root=str(data_root), cache_dir=str(cache),
        device="cpu", quiet=True,
    )
    assert "pretrained" in result.tables["table3"]["source"].iloc[0]
    assert not (folder / "finetune_reports.json").exists()
    assert not (cache / "detectors").exists()


def test_train_detector_command(tmp_path: Path, cache: Path, data_root: Path) -> None:
    out = tmp_path / "ckpt" / "lowres.pt"
    status = main([
        "train", "detector", "--protector", "lowres:factor=8", "--epochs", "1", "--max-images", "3",
        "--batch-size", "3", "--no-evaluate", "--out", str(out), "--data-root", str(data_root),
        "--cache-dir", str(cache), "--device", "cpu",
    ])
    assert status == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["protector"] == {"name": "lowres", "factor": 8}
    assert report["dataset"]["images"] == 3 and report["config"]["seed"] == 0
    assert len(report["checkpoint_sha256"]) == 16 and out.is_file()
    # the checkpoint loads back into the registered detector
    from campro_bench.detection import create_person_detector

    detector = create_person_detector("ssdlite-mobilenetv2-coco", cache_dir=cache, checkpoint=out)
    assert detector.weights_hash == report["checkpoint_sha256"]
    # bad input: one error line, status 2
    assert main(["train", "detector", "--protector", "no-such-protector", "--data-root", str(data_root)]) == 2
    # an existing checkpoint is not replaced without --overwrite, and stays byte for byte
    before = out.read_bytes()
    again = ["train", "detector", "--protector", "lowres:factor=8", "--epochs", "1", "--max-images", "3",
             "--batch-size", "3", "--no-evaluate", "--out", str(out), "--data-root", str(data_root),
             "--cache-dir", str(cache), "--device", "cpu", "--seed", "1"]
    assert main(again) == 2
    assert out.read_bytes() == before
    assert main([*again, "--overwrite"]) == 0
    assert out.read_bytes() != before


def test_e3_row_with_a_checkpoint_is_evaluated_without_finetuning(tmp_path: Path, cache: Path, data_root: Path) -> None:
    ckpt = tmp_path / "ckpt" / "joint.pt"
    assert main([
        "train", "detector", "--protector", "lowres:factor=8", "--epochs", "1", "--max-images", "3",
        "--batch-size", "3", "--no-evaluate", "--out", str(ckpt), "--data-root", str(data_root),
        "--cache-dir", str(cache), "--device", "cpu",
    ]) == 0
    sha = json.loads(ckpt.with_suffix(".json").read_text())["checkpoint_sha256"]
    overrides = ["max_images=3", "max_train_images=3", "finetune_epochs=1", "batch_size=3",
                 f'protectors=[{{label="Given P", spec="lowres:factor=8", checkpoint="{ckpt}"}}]']
    folder, result = run_experiment(
        "e3", overrides=overrides, out=tmp_path / "run", data_root=str(data_root), cache_dir=str(cache),
        device="cpu", quiet=True,
    )
    row = result.tables["table3"].iloc[0]
    assert "joint.pt, not fine-tuned" in row["source"]
    assert not (cache / "detectors").exists()  # nothing was fine-tuned
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["models"][f"ssdlite-mobilenetv2-coco from {ckpt.name}"]["weights_sha256"] == sha


def test_utility_curve_scales_epochs_to_the_image_budget(tmp_path: Path, cache: Path, data_root: Path) -> None:
    from campro_bench.experiments.utility_curve import epochs_for

    assert [epochs_for(n, 545, 545) for n in (50, 150, 0)] == [11, 4, 1]
    overrides = ["max_images=4", "batch_size=4", "train_sizes=[2, 4]", "image_budget=4", "bootstrap=50",
                 'protectors=[{label="Raw", spec="raw"}, {label="Inverted", spec="invert"}]']
    folder, result = run_experiment(
        "utility-curve", overrides=overrides, out=tmp_path / "run", data_root=str(data_root),
        cache_dir=str(cache), device="cpu", quiet=True,
    )
    table = result.tables["utility_curve"]
    assert table[["finetune_images", "epochs"]].values.tolist() == [[0, 0]] * 2 + [[2, 2]] * 2 + [[4, 1]] * 2
    assert (table["images_seen"].iloc[2:] == 4).all()
    assert ((table["AP_lo"] <= table["AP"]) & (table["AP"] <= table["AP_hi"])).all()
    raw = table[table["Method"] == "Raw"]
    assert (raw["share_of_first"].dropna() == 1.0).all()
    assert (folder / "utility_curve.png").is_file()
    data = json.loads((folder / "manifest.json").read_text())["data"]
    two, four = data["finetune 2 images"]["image_ids"], data["finetune 4 images"]["image_ids"]
    assert len(two) == 2 and len(four) == 4 and set(two) < set(four)  # nested subsets, recorded
    assert (table["measured_in"] == "this run").all()
    # an earlier run's points are read, not re-measured, when its protocol and data agree
    detectors = sorted((cache / "detectors").glob("*.pt"))
    for f in detectors:
        f.unlink()  # a re-measured fine-tuned point would have to fine-tune again
    again = run_experiment(
        "utility-curve", overrides=[*overrides, f'reuse=["{folder}"]'], out=tmp_path / "again",
        data_root=str(data_root), cache_dir=str(cache), device="cpu", quiet=True,
    )[1].tables["utility_curve"]
    assert (again["measured_in"] == str(folder)).all()
    assert again["AP"].tolist() == pytest.approx(table["AP"].tolist(), rel=1e-5)  # CSV: 6 digits
    assert not list((cache / "detectors").glob("*.pt"))
    with pytest.raises(Exception, match="bootstrap = 50, this run's is 20"):
        run_experiment("utility-curve", overrides=[*overrides, "bootstrap=20", f'reuse=["{folder}"]'],
                       out=tmp_path / "other", data_root=str(data_root), cache_dir=str(cache), quiet=True)
    with pytest.raises(Exception, match="train_sizes"):
        run_experiment("utility-curve", overrides=["max_train_images=3"], out=tmp_path / "bad",
                       data_root=str(data_root), cache_dir=str(cache), quiet=True)
