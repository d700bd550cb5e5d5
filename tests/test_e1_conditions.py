"""E1's ``conditions`` axis on a fake face pipeline: the default adds nothing (same specs, same
tables), listed conditions add a ``condition`` column, keep raw galleries unconditioned, and bad
conditions fail in one line before any embedding."""

from __future__ import annotations

import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from campro_bench.errors import CamproError
from campro_bench.experiments.runner import run_experiment
from campro_bench.privacy import evaluate

NAMES = [f"person_{i:02d}" for i in range(8)]
IDS = [(f"{n}/{n}_{k:04d}.jpg", n) for n in NAMES for k in range(1, 4)]
asked: list[str] = []


def fake_embeddings(dataset: str, model: str, protector: str, **options: Any) -> SimpleNamespace:
    """Identity centres plus noise; a grey camera adds a little noise, the inverter a lot."""
    asked.append(protector)
    level = (5.0 if protector.startswith("invert") else 0.05) + (0.3 if "@grey" in protector else 0.0)
    return noisy_embeddings(model, f"{model}{protector}", level, options.get("image_ids"))


def noisy_embeddings(model: str, noise_key: str, level: float, image_ids: Any = None) -> SimpleNamespace:
    """What the face pipeline returns for IDS: each identity's centre (per model) plus ``level`` times
    noise drawn with ``noise_key``, unit length."""
    items = [it for it in IDS if image_ids is None or it[0] in image_ids]
    names = sorted({n for _, n in items})
    centres = np.random.default_rng(zlib.crc32(model.encode())).normal(size=(len(NAMES), 16))
    noise = np.random.default_rng(zlib.crc32(noise_key.encode())).normal(size=(len(items), 16))
    x = centres[[NAMES.index(n) for _, n in items]] + level * noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return SimpleNamespace(image_ids=[i for i, _ in items], labels=np.array([names.index(n) for _, n in items]),
                           identity_names=names, embeddings=x.astype(np.float32), detected=np.ones(len(items), bool),
                           provenance={"model": model})


@pytest.fixture(autouse=True)
def fake_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    asked.clear()
    monkeypatch.setattr(evaluate, "load_embeddings", fake_embeddings)
    monkeypatch.setattr(evaluate, "dataset_index", lambda dataset, root: list(IDS))
    monkeypatch.setattr(evaluate, "contract_of", lambda name: SimpleNamespace(weights_file=None, alignment="a"))


BASE = ['datasets=["lfw"]', 'models=["m"]', 'protectors=["raw", "invert"]', "repeats=3", 'classifiers=["nearest"]']


def run(tmp_path: Path, name: str, overrides: list[str]) -> tuple[Path, Any]:
    return run_experiment("e1", overrides=overrides, out=tmp_path / name, cache_dir=str(tmp_path / "cache"),
                          device="cpu", quiet=True)


def test_the_default_condition_changes_nothing(tmp_path: Path) -> None:
    out, result = run(tmp_path, "default", BASE)
    assert sorted(set(asked)) == ["invert", "raw"]  # bare specs: today's cache keys
    assert "condition" not in result.tables["e1"].columns and "condition" not in result.tables["table1"].columns
    out2, _ = run(tmp_path, "explicit", [*BASE, 'conditions=["colour"]'])
    for name in ("e1.csv", "table1.csv", "table1.md"):
        assert (out / name).read_bytes() == (out2 / name).read_bytes()


def test_listed_conditions_become_a_column_and_raw_galleries_stay_unconditioned(tmp_path: Path) -> None:
    out, result = run(tmp_path, "grey", [*BASE, 'conditions=["colour", "grey"]'])
    assert set(asked) == {"raw", "invert", "raw@grey", "invert@grey"}
    long, wide = result.tables["e1"], result.tables["table1"]
    assert list(long.columns[:6]) == ["dataset", "image_type", "condition", "classifier", "gallery", "model"]
    assert set(zip(long.image_type, long.condition, long.gallery)) == {
        ("raw", "colour", "raw"), ("invert", "colour", "raw"), ("invert", "colour", "protected"),
        ("raw", "grey", "raw"), ("invert", "grey", "raw"), ("raw", "grey", "protected"), ("invert", "grey", "protected")}
    assert list(wide.columns[:3]) == ["dataset", "image_type", "condition"]
    assert set(wide.image_type) == {"raw", "invert"} and set(wide.condition) == {"colour", "grey"}
    # the colour rows are exactly the default run's rows
    _, default = run(tmp_path, "default", BASE)
    colour = long[long.condition == "colour"].drop(columns="condition").reset_index(drop=True)
    pd.testing.assert_frame_equal(colour, default.tables["e1"].reset_index(drop=True))
    manifest = (out / "manifest.json").read_text()
    assert '"grey"' in manifest and '"side": "before"' in manifest


def test_a_raw_gallery_under_a_condition_is_the_colour_raw_gallery(tmp_path: Path) -> None:
    _, result = run(tmp_path, "only-grey", [*BASE, 'conditions=["grey"]'])
    assert "raw" in asked  # the raw (colour) gallery is embedded though colour is not listed
    long = result.tables["e1"]
    assert set(long.condition) == {"grey"}
    grey_raw = long[(long.image_type == "raw") & (long.gallery == "raw")]
    assert len(grey_raw) == 1 and grey_raw.accuracy_mean.iloc[0] == 1.0


@pytest.mark.parametrize("conditions, message", [
    ('["colour", "fog"]', "unknown capture condition 'fog'"),
    ('["jpeg:quality=101"]', "option quality=101 in 'jpeg:quality=101' is out of range; allowed: [1, 100]"),
    ('["grey", "grey"]', "lists a condition twice"),
    ("[]", "must be a non-empty list"),
])
def test_bad_conditions_fail_before_any_embedding(tmp_path: Path, conditions: str, message: str) -> None:
    with pytest.raises(CamproError) as info:
        run(tmp_path, "bad", [*BASE, f"conditions={conditions}"])
    assert message in str(info.value) and len(str(info.value).splitlines()) == 1
    assert not asked
