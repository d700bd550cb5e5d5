"""E4's identity-leakage table: faces found on the raw image, the same box embedded from the raw
and the protected image, cosine of protected to raw and the share above a raw threshold.

A stand-in detector (one centre box per image), a stand-in recogniser whose embedding is the
crop's mean-subtracted 4 x 4 colour pattern (so a blank crop embeds to zero and an inverted crop
to the negated pattern), and a fixed threshold in place of the LFW calibration keep this
independent of model weights and face data; the calibration itself is
:func:`campro_bench.privacy.threats.raw_leakage_point`, tested with E1's threat models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from campro_bench.errors import CamproError
from campro_bench.experiments import e4, run_experiment
from campro_bench.privacy.threat_models import OperatingPoint
from campro_bench.protectors.base import Protector
from campro_bench.recognizers.base import FaceModelContract, FaceRecognizer
from campro_bench.registries import FACE_DETECTORS, FACE_RECOGNIZERS, PROTECTORS

from test_quality_e4 import CentreBox  # noqa: E402  (tests/ is on sys.path)

MODEL, BLANK = "test-pattern", "test-blank"
THRESHOLD = 0.5


class Pattern(FaceRecognizer):
    """Embedding: the crop's 4 x 4 average-pooled colours minus their mean (zero for a flat crop)."""

    def __init__(self) -> None:
        super().__init__(FaceModelContract(input_size=(160, 160), alignment="facenet-160", embedding_size=48), "pattern")

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(faces, 4).flatten(1)
        return x - x.mean(dim=1, keepdim=True)


class Blank(Protector):
    """Blanks the frame (every pixel 0)."""

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(images)


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    FACE_DETECTORS.add(CentreBox.name, CentreBox, origin="tests")
    FACE_RECOGNIZERS.add(MODEL, lambda models_dir, cache_dir, device: Pattern(), origin="tests",
                         contract=Pattern().contract)
    PROTECTORS.add(BLANK, Blank, origin="tests")
    point = OperatingPoint(rate=1e-3, threshold=THRESHOLD, tie_accept=0.0, impostors=10_000)
    info = {"dataset": "stand-in", "identities": 0, "repeats": 0, "seeds": [], "detector": "none"}
    monkeypatch.setattr(e4, "leakage_thresholds", lambda cfg, ctx: ({m: point for m in cfg.leakage_models}, info))
    yield
    FACE_DETECTORS.remove(CentreBox.name)
    FACE_RECOGNIZERS.remove(MODEL)
    PROTECTORS.remove(BLANK)


ROWS = f'[{{protector="raw", label="Raw"}}, {{protector="invert"}}, {{protector="{BLANK}"}}]'


def _run(tmp_path: Path, data_root: Path, name: str, models: str):
    return run_experiment("e4", overrides=["limit=2", f"rows={ROWS}", f"face_detector={CentreBox.name}",
                                           f"leakage_models={models}"],
                          out=tmp_path / name, data_root=str(data_root), device="cpu", quiet=True)


@pytest.mark.realdata
def test_e4_leakage_known_answers(tmp_path: Path, data_root: Path, stand_ins: None) -> None:
    out, result = _run(tmp_path, data_root, "on", f'["{MODEL}"]')
    values = result.tables["leakage_values"].set_index("image_type")
    share = "share_above_raw_threshold@FAR=1e-3"
    assert list(values.index) == ["Raw", "invert", BLANK] and (values["model"] == MODEL).all()
    assert (values["images"] == 2).all() and (values["faces"] == 2).all() and (values["images_without_face"] == 0).all()
    # raw: the very same crop, so cosine 1 and every face above the threshold
    assert values.loc["Raw", "cosine_mean"] == pytest.approx(1.0, abs=1e-6) and values.loc["Raw", share] == 1.0
    # invert: the negated pattern (up to 8-bit resampling), never accepted
    assert values.loc["invert", "cosine_mean"] < -0.99 and values.loc["invert", share] == 0.0
    # a blanked frame still has the raw image's face box, but a flat crop: cosine 0, below the threshold
    assert values.loc[BLANK, "cosine_mean"] == pytest.approx(0.0, abs=1e-6) and values.loc[BLANK, share] == 0.0
    assert (values["raw_threshold"] == THRESHOLD).all()
    assert (out / "leakage.csv").is_file() and (out / "leakage_values.csv").is_file()
    assert "Identity leakage" in result.notes and (out / "table4.md").read_text().count("Identity leakage") == 1


@pytest.mark.realdata
def test_e4_leakage_off_leaves_quality_tables_unchanged(tmp_path: Path, data_root: Path, stand_ins: None) -> None:
    on, _ = _run(tmp_path, data_root, "on", f'["{MODEL}"]')
    off, result = _run(tmp_path, data_root, "off", "[]")
    assert set(result.tables) == {"table4", "table4_values"} and not (off / "leakage.csv").exists()
    for name in ("table4.csv", "table4_values.csv", "per_image.csv"):
        assert (on / name).read_bytes() == (off / name).read_bytes(), name
    # and the same bytes as the committed Table IV for the rows it shares (raw and invert, first two images)
    committed = pd.read_csv(Path(__file__).parents[1] / "baselines" / "e4" / "per_image.csv", dtype=str)
    mine = pd.read_csv(off / "per_image.csv", dtype=str)
    mine = mine[mine["image_type"] == "invert"].reset_index(drop=True)
    theirs = committed[(committed["image_type"] == "invert") & committed["file"].isin(mine["file"])]
    pd.testing.assert_frame_equal(mine, theirs.reset_index(drop=True))
    manifest = json.loads((off / "manifest.json").read_text())
    assert "e4_leakage_calibration" not in manifest["notes"]


@pytest.mark.realdata
def test_e4_leakage_unknown_model(tmp_path: Path, data_root: Path) -> None:
    with pytest.raises(CamproError, match="unknown face recognizer 'no-such-model'") as error:
        run_experiment("e4", overrides=['leakage_models=["no-such-model"]'], out=tmp_path / "x",
                       data_root=str(data_root), quiet=True)
    assert "\n" not in str(error.value) and not (tmp_path / "x").exists()
