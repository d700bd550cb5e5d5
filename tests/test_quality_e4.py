"""E4 (Table IV) end to end at tiny scale through the experiment runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pytest

from campro_bench.errors import CamproError
from campro_bench.experiments import run_experiment
from campro_bench.experiments.e4 import expand_protector_specs
from campro_bench.faces.detection import Faces, FaceDetector
from campro_bench.io import list_images, load_image_tensor
from campro_bench.registries import FACE_DETECTORS
from campro_bench.utility.quality import boxes_to_mask, image_quality


class CentreBox(FaceDetector):
    """A stand-in face detector: one 'face' box in the middle of every image."""

    name = "test-centre-box"

    def detect(self, images: list[np.ndarray]) -> list[Faces]:
        out = []
        for image in images:
            h, w = image.shape[:2]
            out.append(Faces.of([[w / 4, h / 4, w / 2, h / 2]], [0.99], np.zeros((5, 2))))
        return out


@pytest.fixture
def centre_box_detector() -> Iterator[str]:
    FACE_DETECTORS.add(CentreBox.name, CentreBox, origin="tests")
    yield CentreBox.name
    FACE_DETECTORS.remove(CentreBox.name)


def test_expand_presets() -> None:
    specs = expand_protector_specs(["raw", "campro-isp:preset=*", "lowres:factor=4"])
    assert specs[0] == "raw" and specs[-1] == "lowres:factor=4"
    assert {"campro-isp:preset=identity", "campro-isp:preset=standard"} <= set(specs)


@pytest.mark.realdata
def test_e4_tiny(tmp_path: Path, data_root: Path, centre_box_detector: str) -> None:
    rows = (
        '[{protector="raw", label="Raw"}, {protector="lowres:factor=8"}, {protector="invert"}, '
        '{protector="raw", reference="face-masked", label="Raw vs masked"}]'
    )
    out, result = run_experiment(
        "e4", overrides=["limit=2", f"rows={rows}", f"face_detector={centre_box_detector}", "leakage_models=[]"],
        out=tmp_path / "run", data_root=str(data_root), device="cpu", compare="paper", quiet=True,
    )
    values = result.tables["table4_values"].set_index("image_type")
    assert list(values.index) == ["Raw", "lowres:factor=8", "invert", "Raw vs masked"]
    assert (values["images"] == 2).all()
    raw = values.loc["Raw"]
    assert raw["rmse_mean"] == 0 and raw["psnr_mean"] == 100 and raw["ssim_mean"] == pytest.approx(1, abs=1e-5)
    low = values.loc["lowres:factor=8"]
    assert 0 < low["rmse_mean"] < values.loc["invert", "rmse_mean"]
    assert 0 < low["ms_ssim_mean"] < 1 and values.loc["invert", "ms_ssim_mean"] == 0
    # the face-masked reference: the raw image against itself with the centre box blacked out
    files = list_images(data_root / "coco-mini" / "val2017")[:2]
    expected = []
    for path in files:
        x = load_image_tensor(path)[None]
        h, w = x.shape[-2:]
        mask = boxes_to_mask([[[w / 4, h / 4, w / 2, h / 2]]], h, w)
        expected.append(float(image_quality(x, x, mask=mask)["rmse"][0]))
    assert values.loc["Raw vs masked", "rmse_mean"] == pytest.approx(np.mean(expected), rel=1e-5)

    table = result.tables["table4"]
    assert table.loc[0, "RMSE"] == "0.000 ± 0.000" and table.loc[3, "reference"] == "face-masked"
    paper = result.tables["paper_table4"]
    assert paper["source"].str.contains("paper").all() and len(paper) == 2
    for name in ("table4.csv", "table4.md", "table4_values.csv", "paper_table4.csv", "per_image.csv"):
        assert (out / name).is_file(), name
    per_image = pd.read_csv(out / "per_image.csv")
    assert len(per_image) == 8 and set(per_image["file"]) == {p.name for p in files}
    assert "leakage" not in result.tables and not (out / "leakage.csv").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["images"]["files"] == 2 and len(manifest["data"]["images"]["sha256"]) == 64
    assert manifest["seeds"]["seed"] == 0 and manifest["models"]["face_detector"] == centre_box_detector
    assert set(manifest["models"]["protectors"]) == {"raw", "lowres:factor=8", "invert"}


@pytest.mark.realdata
def test_e4_errors(tmp_path: Path, data_root: Path) -> None:
    with pytest.raises(CamproError, match="need 'face_detector'"):
        run_experiment("e4", overrides=['rows=[{protector="raw", reference="face-masked"}]', 'face_detector=""',
                                        "leakage_models=[]"],
                       out=tmp_path / "a", data_root=str(data_root), quiet=True)
    with pytest.raises(CamproError, match="'leakage_models' need 'face_detector'"):
        run_experiment("e4", overrides=['face_detector=""'], out=tmp_path / "a", data_root=str(data_root), quiet=True)
    with pytest.raises(CamproError, match="reference must be one of"):
        run_experiment("e4", overrides=['rows=[{protector="raw", reference="blurred"}]'],
                       out=tmp_path / "b", data_root=str(data_root), quiet=True)
    with pytest.raises(CamproError, match="does not exist"):
        run_experiment("e4", overrides=["images=no-such-folder"], out=tmp_path / "c",
                       data_root=str(data_root), quiet=True)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
