"""E1's threat-model tables on the fake face pipeline of test_e1_layout: closed-set numbers unchanged,
rank-k / verification / open-set / leakage rows, k-image enrolment and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from campro_bench.errors import CamproError, UnknownNameError
from test_e1_layout import BASE, fake_models, fake_pipeline, run  # noqa: F401  (tests/ is on sys.path; fixtures)

ONE = ['datasets=["lfw"]', *BASE[1:]]


def test_threat_tables_sit_beside_an_unchanged_e1_csv(tmp_path: Path) -> None:
    out, result = run(tmp_path / "all", "e1", [*ONE, "threats.min_false_accepts=1"])
    _, closed = run(tmp_path / "closed", "e1", [*ONE, 'threat_models=["closed-set"]'])
    pd.testing.assert_frame_equal(result.tables["e1"], closed.tables["e1"], check_exact=True)
    assert "e1_threats" not in closed.tables and "gallery_images" not in result.tables["e1"]
    for name in ("e1_threats.csv", "e1_threats_wide.md", "e1_leakage.csv"):
        assert (out / name).is_file()
    threats = result.tables["e1_threats"]
    # closed-set rows are e1.csv's numbers
    top1 = threats[threats.threat_model == "closed-set"].set_index(["image_type", "classifier", "gallery", "model"])
    e1 = result.tables["e1"].set_index(["image_type", "classifier", "gallery", "model"])
    np.testing.assert_array_equal(top1.loc[e1.index, "value_mean"], e1["accuracy_mean"])
    # rank-k: never below top-1, rank-10 over 10 identities is everything a found face can reach
    rank = threats[threats.threat_model == "rank-k"].pivot_table(
        index=["image_type", "classifier", "gallery", "model"], columns="metric", values="value_mean")
    assert (rank["rank-5"] >= top1.loc[rank.index, "value_mean"] - 1e-12).all()
    assert (rank["rank-10"] >= rank["rank-5"]).all()
    raw_rank = rank.xs("raw", level="image_type")
    np.testing.assert_allclose(raw_rank["rank-10"], 1.0)
    # verification: raw is separable (TAR 1), the raw threshold is not re-fitted on invert (TAR collapses)
    tar = threats[threats.metric == "TAR@FAR=1e-2"].set_index(["image_type", "gallery", "model"])["value_mean"]
    np.testing.assert_allclose(tar.xs("raw", level="image_type"), 1.0)
    assert (tar.xs("invert", level="image_type") < 0.7).all()
    # 10 identities x 9 impostors x 3 draws = 270 calibration pairs: FAR 1e-3 is reported as not measurable
    low = threats[threats.metric == "TAR@FAR=1e-3"]
    assert low.value_mean.isna().all() and low.note.str.contains("needs >= 1,000 impostor scores").all()
    assert (low.calibration_scores == 270).all()
    own = threats[threats.metric.str.endswith("(own calibration)")]  # the re-enrolling attacker's own threshold
    assert set(own.gallery) == {"protected"} and set(own.threat_model) == {"verification", "open-set"}
    seen = threats[threats.metric == "FAR seen@FAR=1e-2"].set_index(["image_type", "gallery", "model"])["value_mean"]
    np.testing.assert_allclose(seen.xs("raw", level="image_type"), 0.01, atol=0.004)  # raw: the calibrated rate
    dir_ = threats[threats.metric == "DIR@FPIR=1e-1"]
    raw_dir = dir_[dir_.image_type == "raw"]
    assert (raw_dir.identities == 5).all() and (raw_dir.value_mean > 0.5).all()
    leak = result.tables["e1_leakage"].set_index(["image_type", "model"])
    assert "raw" not in leak.index.get_level_values(0)
    assert (leak.loc["invert", "cosine_mean"] < leak.loc["lowres:factor=16", "cosine_mean"]).all()
    assert leak.loc["lowres:factor=16", "faces_on_both"].lt(leak.loc["lowres:factor=16", "images"]).all()


def test_k_image_enrolment_runs_every_threat_model_and_marks_e1_csv(tmp_path: Path) -> None:
    _, result = run(tmp_path, "e1", [*ONE, "gallery_images=2", "min_images=3"])
    e1, threats = result.tables["e1"], result.tables["e1_threats"]
    assert (e1.gallery_images == 2).all() and (threats.gallery_images == 2).all()
    assert (e1.identities == 6).all()  # identities with >= 3 images
    assert set(threats.threat_model) == {"closed-set", "rank-k", "verification", "open-set"}


def test_gallery_images_one_is_todays_protocol(tmp_path: Path) -> None:
    _, default = run(tmp_path / "a", "e1", [*ONE, 'threat_models=["closed-set"]'])
    _, one = run(tmp_path / "b", "e1", [*ONE, 'threat_models=["closed-set"]', "gallery_images=1"])
    pd.testing.assert_frame_equal(default.tables["e1"], one.tables["e1"], check_exact=True)


@pytest.mark.parametrize("override, error, message", [
    ("gallery_images=3", CamproError, "gallery_images = 3 needs min_images >= 4"),
    ('threat_models=["closed-set", "rank-5"]', UnknownNameError, "unknown threat model(s) ['rank-5']; known: closed"),
    ("threats.fars=[0.0]", CamproError, "threats.fars must be a non-empty list of rates in (0, 1)"),
    ("threats.ranks=[0]", CamproError, "threats.ranks must be a non-empty list of integers >= 1"),
    ("threats.far=[0.1]", CamproError, "unknown e1 protocol key 'threats.far' (did you mean 'threats.fars'?)"),
])
def test_bad_threat_settings_fail_in_one_line(tmp_path: Path, override: str, error: type, message: str) -> None:
    with pytest.raises(error) as info:
        run(tmp_path, "e1", [*ONE, override])
    assert message in str(info.value) and len(str(info.value).splitlines()) == 1, str(info.value)
