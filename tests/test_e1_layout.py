"""E1/E2 end to end on a fake face pipeline: Table I/II layout, manifest, paper comparison."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from campro_bench.errors import CamproError, UnknownNameError
from campro_bench.experiments.runner import run_experiment
from campro_bench.privacy import evaluate
from campro_bench.privacy.evaluate import ProtocolConfig, subset_image_ids
from campro_bench.privacy.tables import blackbox_summary, table2_long, table2_wide

# 12 identities: 10 with 2-4 images, two with a single image (dropped by the protocol)
NAMES = [f"person_{i:02d}" for i in range(12)]
COUNTS = [2, 3, 4, 2, 3, 4, 2, 3, 4, 2, 1, 1]
IDS = [(f"{n}/{n}_{k:04d}.jpg", n) for n, c in zip(NAMES, COUNTS) for k in range(1, c + 1)]
QUALITY = {"raw": 0.05, "invert": 10.0, "lowres:factor=16": 0.3}  # embedding noise per image type


def fake_embeddings(dataset: str, model: str, protector: str, **options: Any) -> SimpleNamespace:
    """Deterministic synthetic embeddings: identity centre + protector-dependent noise."""
    calls.append((dataset, model, protector, options.get("image_ids")))
    items = [it for it in IDS if options.get("image_ids") is None or it[0] in options["image_ids"]]
    names = sorted({n for _, n in items})
    labels = np.array([names.index(n) for _, n in items], np.int64)
    rng = np.random.default_rng(zlib.crc32(f"{dataset}{model}".encode()))
    centres = rng.normal(size=(len(NAMES), 16))
    noise = np.random.default_rng(zlib.crc32(f"{dataset}{model}{protector}".encode()))
    x = centres[[NAMES.index(n) for _, n in items]] + QUALITY[protector] * noise.normal(size=(len(items), 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    detected = np.ones(len(items), bool)
    if protector == "lowres:factor=16":
        detected[0] = False  # one face not found
        x[0] = 0
    return SimpleNamespace(image_ids=[i for i, _ in items], labels=labels, identity_names=names,
                           embeddings=x.astype(np.float32), detected=detected,
                           provenance={"dataset_fingerprint": {"sha256": "f" * 8}, "model": model,
                                       "weights_id": f"w-{model}", "detection_rate": float(detected.mean())})


calls: list[tuple[Any, ...]] = []


@pytest.fixture(autouse=True)
def fake_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    calls.clear()
    monkeypatch.setattr(evaluate, "load_embeddings", fake_embeddings)
    monkeypatch.setattr(evaluate, "dataset_index", lambda dataset, root: list(IDS))


def run(tmp_path: Path, name: str, overrides: list[str], **kwargs: Any) -> tuple[Path, Any]:
    return run_experiment(name, overrides=overrides, out=tmp_path / "out", cache_dir=str(tmp_path / "cache"),
                          device="cpu", quiet=True, **kwargs)


BASE = [
    'datasets=["lfw", "celeba-subset"]',
    'models=["m-a", "m-b"]',
    'protectors=["raw", "invert", "lowres:factor=16"]',
    "repeats=3",
    "linear.max_iter=30",
]


@pytest.fixture(autouse=True)
def fake_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """m-a / m-b have packaged weights; m-user needs a file nobody supplied."""
    contracts = {"m-a": SimpleNamespace(weights_file=None), "m-b": SimpleNamespace(weights_file=None),
                 "m-user": SimpleNamespace(weights_file="user.pt")}

    def contract_of(name: str) -> Any:
        if name not in contracts:
            raise UnknownNameError(f"unknown face recognizer '{name}'")
        return contracts[name]

    monkeypatch.setattr(evaluate, "contract_of", contract_of)
    monkeypatch.setattr(evaluate, "carrier_missing", lambda model, contract, ctx: None)  # no package to look for


def test_table1_layout_and_long_csv(tmp_path: Path) -> None:
    out, result = run(tmp_path, "e1", BASE)
    long, wide = result.tables["e1"], result.tables["table1"]
    # rows: 2 datasets x (raw gallery: 3 image types + protected gallery: 2) x 2 classifiers, per model
    assert len(long) == 2 * 5 * 2 * 2
    assert list(long.columns[:5]) == ["dataset", "image_type", "classifier", "gallery", "model"]
    assert long[["accuracy_mean", "chance", "identities", "repeats"]].notna().all().all()
    lfw_raw = long[(long.dataset == "lfw") & (long.image_type == "raw") & (long.gallery == "raw")]
    assert (lfw_raw.accuracy_mean == 1.0).all() and (lfw_raw.identities == 10).all()
    np.testing.assert_allclose(long.chance, 0.1)
    inverted = long[(long.image_type == "invert") & (long.gallery == "raw")]
    assert inverted.accuracy_mean.max() < 0.7  # noise 10x the centre spread
    assert (long.ci_low <= long.accuracy_mean).all() and (long.accuracy_mean <= long.ci_high + 1e-12).all()
    lowres = long[long.image_type == "lowres:factor=16"]
    assert (lowres.probe_detect_rate <= 1.0).all() and (long[long.image_type == "raw"].probe_detect_rate == 1).all()
    # wide Table I: one row per dataset x image type x classifier x gallery, models + Average, in %
    assert list(wide.columns) == ["dataset", "image_type", "classifier", "gallery", "m-a", "m-b", "Average"]
    assert len(wide) == 2 * 5 * 2
    # Table I order: dataset, classifier, gallery kind, image type (spec order)
    first = wide[wide.dataset == "lfw"][["image_type", "classifier", "gallery"]].head(6).values.tolist()
    # every row labelled by its protector spec, raw included (the long table's image_type)
    assert first == [["raw", "nearest", "raw"], ["invert", "nearest", "raw"], ["lowres:factor=16", "nearest", "raw"],
                     ["invert", "nearest", "protected"], ["lowres:factor=16", "nearest", "protected"],
                     ["raw", "linear", "raw"]]
    assert set(wide.image_type) == set(long.image_type)
    np.testing.assert_allclose(wide["Average"], wide[["m-a", "m-b"]].mean(axis=1))
    assert wide["m-a"].max() == pytest.approx(100.0)
    assert not ((wide.image_type == "raw") & (wide.gallery == "protected")).any()
    for name in ("e1.csv", "e1.md", "table1.csv", "table1.md", "manifest.json"):
        assert (out / name).is_file()
    pd.testing.assert_frame_equal(pd.read_csv(out / "e1.csv"), long, check_exact=False, rtol=1e-5)


def test_only_the_images_some_draw_uses_are_embedded(tmp_path: Path) -> None:
    """10 eligible identities with 2-4 images, 1 repeat: each draw uses one gallery and
    one probe image per identity, so exactly those 20 of the 29 images reach the face pipeline."""
    out, _ = run(tmp_path, "e1", [*BASE[:3], "repeats=1", 'classifiers=["nearest"]'])
    asked = {tuple(c[3]) for c in calls}
    assert len(asked) == 1  # the same images for every model and protector
    ids = next(iter(asked))
    per_identity: dict[str, int] = {}
    for image_id in ids:
        per_identity[dict(IDS)[image_id]] = per_identity.get(dict(IDS)[image_id], 0) + 1
    assert len(ids) == 20 and set(per_identity.values()) == {2} and len(per_identity) == 10
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["datasets"]["lfw"]["images"] == 29
    assert manifest["data"]["datasets"]["lfw"]["images_used_by_draws"] == 20


def test_manifest_records_seeds_fingerprints_rates_and_timings(tmp_path: Path) -> None:
    out, _ = run(tmp_path, "e1", BASE)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seeds"]["splits/lfw"]["repeat_seeds"] == [0, 1, 2]
    assert manifest["data"]["datasets"]["lfw"]["provenance"]["dataset_fingerprint"] == {"sha256": "ffffffff"}
    assert manifest["models"]["m-b"]["weights_id"] == "w-m-b"
    rates = manifest["notes"]["embeddings"]
    embedded = rates["lfw|m-a|lowres:factor=16"]["images_embedded"]
    assert embedded == manifest["data"]["datasets"]["lfw"]["images_used_by_draws"]
    assert rates["lfw|m-a|lowres:factor=16"]["detection_rate"] == pytest.approx((embedded - 1) / embedded)
    assert {"embedding", "protocol/nearest", "protocol/linear", "total"} <= set(manifest["timings_s"])
    assert manifest["notes"]["classifiers"]["linear"]["max_iter"] == 30


def test_each_image_is_embedded_once_per_model_and_protector(tmp_path: Path) -> None:
    run(tmp_path, "e1", BASE)
    keys = [c[:3] for c in calls]
    assert len(keys) == len(set(keys)) == 2 * 2 * 3


def test_max_identities_selects_first_names_before_embedding(tmp_path: Path) -> None:
    _, result = run(tmp_path, "e1", BASE + ["max_identities=4", 'datasets=["lfw"]'])
    assert (result.tables["e1"].identities == 4).all()
    wanted = {i for i, n in IDS if n in NAMES[:4]}
    assert all(set(c[3]) == wanted for c in calls)


def test_skip_missing_models_notes_the_model(tmp_path: Path) -> None:
    overrides = BASE + ['models=["m-a", "m-user"]', "skip_missing_models=true", 'classifiers=["nearest"]']
    out, result = run(tmp_path, "e1", overrides, models_dir=str(tmp_path / "weights"))
    assert set(result.tables["e1"].model) == {"m-a"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert "user.pt not found" in manifest["notes"]["skipped_models"]["m-user"]
    assert "Skipped models (weights missing): m-user" in (out / "table1.md").read_text()


def test_compare_paper_only_matches_exact_models(tmp_path: Path) -> None:
    _, result = run(tmp_path, "e1", BASE, compare="paper")
    long, wide = result.tables["e1"], result.tables["table1"]
    assert long["paper_accuracy"].isna().all()  # m-a / m-b are not the paper's models
    raw_lfw = wide[(wide.dataset == "lfw") & (wide.image_type == "raw") & (wide.classifier == "nearest")]
    assert raw_lfw["Paper Average (reference)"].tolist() == [pytest.approx(97.3)]
    assert "LFW/Raw/nearest" in raw_lfw["Paper reference row"].iloc[0]
    subset = wide[(wide.dataset == "celeba-subset") & (wide.image_type == "raw") & (wide.classifier == "linear")]
    assert subset["Paper Average (reference)"].tolist() == [pytest.approx(80.7)]
    invert = wide[wide.image_type == "invert"]
    assert invert["Paper Average (reference)"].isna().all()  # not a paper image type


def test_compare_paper_exact_match(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from campro_bench.privacy.paper import load_paper_table
    from campro_bench.privacy.tables import add_paper_columns, table1_wide

    long = pd.DataFrame([
        {"dataset": "lfw", "image_type": "raw", "classifier": "nearest", "gallery": "raw", "model": "arc50",
         "accuracy_mean": 0.95},
        {"dataset": "celeba-subset", "image_type": "raw", "classifier": "nearest", "gallery": "raw",
         "model": "arc50", "accuracy_mean": 0.8},
    ])
    long2, wide = add_paper_columns(long, table1_wide(long, ["arc50"]), load_paper_table("table1_identification"),
                                    {"raw": "Raw"})
    assert long2["paper_accuracy"].iloc[0] == pytest.approx(0.979)
    assert math.isnan(long2["paper_accuracy"].iloc[1])  # the subset is not the paper's CelebA protocol
    assert wide["arc50 (paper)"].iloc[0] == pytest.approx(97.9)


def test_bad_spec_values_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(CamproError, match="unknown gallery kind"):
        run(tmp_path, "e1", BASE + ['galleries=["raw", "stolen"]'])
    with pytest.raises(UnknownNameError, match="unknown identification classifier 'knn'"):
        run(tmp_path, "e1", BASE + ['classifiers=["knn"]'])
    with pytest.raises(UnknownNameError, match="unknown protector 'blur'"):
        run(tmp_path, "e1", BASE + ['protectors=["raw", "blur"]'])
    with pytest.raises(CamproError, match="unknown --compare 'authors'"):
        run(tmp_path, "e1", BASE, compare="authors")
    assert not (tmp_path / "out").exists()


# E2 ---------------------------------------------------------------------------------------
def test_blackbox_summary_arithmetic() -> None:
    average, ratio = blackbox_summary({"wb": 0.015, "a": 0.01, "b": 0.023, "c": 0.027}, "wb")
    assert average == pytest.approx(0.02) and ratio == pytest.approx(0.02 / 0.015)
    assert math.isnan(blackbox_summary({"wb": 0.0, "a": 0.1}, "wb")[1])  # undefined, not infinite
    assert math.isnan(blackbox_summary({"wb": 0.2}, "wb")[0])
    with pytest.raises(KeyError):
        blackbox_summary({"a": 0.1}, "wb")


def test_table2_layout_orders_rows_like_the_paper() -> None:
    acc = {"Only": {"wb": 0.015, "x": 0.3, "y": 0.01}, "Both": {"wb": 0.004, "x": 0.0, "y": 0.001}}
    std = {k: {m: 0.0 for m in v} for k, v in acc.items()}
    wide = table2_wide(table2_long(acc, std, "wb"), ["Only", "Both"])
    assert wide["model"].tolist() == ["wb", "y", "x", "Average Black-box Accuracy",
                                      "Accuracy Ratio (Black-box/White-box)"]
    assert wide["role"].tolist() == ["white-box", "black-box", "black-box", "summary", "summary"]
    assert wide["Only"].iloc[3] == pytest.approx(15.5) and wide["Only"].iloc[4] == pytest.approx(100 * 0.155 / 0.015)
    assert wide["Both"].iloc[4] == pytest.approx(100 * 0.0005 / 0.004)


def test_e2_end_to_end(tmp_path: Path) -> None:
    overrides = ['models=["m-a", "m-b"]', 'white_box="m-b"', "repeats=2", 'dataset="lfw"',
                 'sources={"Protector-Only" = "lowres:factor=16", "Protector+Attacker" = "invert"}']
    out, result = run(tmp_path, "e2", overrides, compare="paper")
    long, wide = result.tables["e2"], result.tables["table2"]
    assert list(wide.columns) == ["model", "role", "Protector-Only", "Protector+Attacker"]
    assert wide["model"].iloc[0] == "m-b" and wide["role"].iloc[0] == "white-box"
    only = long[long.source == "Protector-Only"].set_index("row")["value"]
    assert only["Average Black-box Accuracy"] == pytest.approx(only["m-a"])
    assert set(long.protector) == {"lowres:factor=16", "invert"}
    assert "table2_paper" in result.tables and (out / "table2.md").is_file()
    assert result.tables["table2_paper"]["Protector-Only"].iloc[0] == pytest.approx(1.5)
    with pytest.raises(CamproError, match="different protectors"):
        run(tmp_path / "again", "e2", overrides[:-1] + ['sources={"A" = "invert", "B" = "invert"}'])


def test_max_images_per_identity_caps_each_identity_with_a_stable_subset(tmp_path: Path) -> None:
    index = [(f"p{p}_{i}", f"p{p}") for p in range(6) for i in range(2 + p)] + [("solo_0", "solo")]
    capped = subset_image_ids(index, 2, 0, max_images_per_identity=3, seed=0)
    per_name: dict[str, list[str]] = {}
    for image_id in capped:
        per_name.setdefault(image_id.split("_")[0], []).append(image_id)
    assert sorted(per_name) == [f"p{p}" for p in range(6)]  # "solo" has one image: dropped
    assert {n: len(v) for n, v in per_name.items()} == {"p0": 2, "p1": 3, "p2": 3, "p3": 3, "p4": 3, "p5": 3}
    assert capped == [i for i, _ in index if i in set(capped)]  # dataset order kept
    first_two = subset_image_ids(index, 2, 2, max_images_per_identity=3, seed=0)
    assert set(first_two) <= set(capped)  # the same images whatever else is kept
    other_seed = subset_image_ids(index, 2, 0, max_images_per_identity=3, seed=1)
    assert other_seed != capped and len(other_seed) == len(capped)


def test_max_images_per_identity_reaches_the_embedder_and_the_notes(tmp_path: Path) -> None:
    _, result = run(tmp_path, "e1", BASE + ["max_images_per_identity=2", 'datasets=["lfw"]'])
    counts: dict[str, int] = {}
    names = dict(IDS)
    for image_id in calls[0][3]:
        counts[names[image_id]] = counts.get(names[image_id], 0) + 1
    assert set(counts.values()) == {2}
    assert "at most 2 images per identity" in result.notes


def test_max_images_per_identity_below_min_images_is_refused() -> None:
    with pytest.raises(CamproError, match="max_images_per_identity"):
        ProtocolConfig.from_spec({"datasets": ["lfw"], "models": ["m"], "protectors": ["raw"],
                                  "min_images": 3, "max_images_per_identity": 2})
