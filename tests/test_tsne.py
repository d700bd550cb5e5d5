"""Fig. 9 (run tsne) on synthetic features: panels, numbers that mean something, bad input."""

from __future__ import annotations

import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from campro_bench.errors import CamproError
from campro_bench.experiments import tsne
from campro_bench.experiments.runner import run_experiment

NAMES = [f"p{i:02d}" for i in range(6)]
INDEX = [(f"{n}/{n}_{k:04d}.jpg", n) for n in NAMES for k in range(12)]
NOISE = {"raw": 0.1, "invert": 3.0}


def fake_embeddings(dataset: str, model: str, protector: str, **options: Any) -> SimpleNamespace:
    items = [it for it in INDEX if it[0] in options["image_ids"]]
    names = sorted({n for _, n in items})
    centres = np.random.default_rng(0).normal(size=(len(NAMES), 24))
    rng = np.random.default_rng(zlib.crc32(protector.encode()))
    x = centres[[NAMES.index(n) for _, n in items]] + NOISE[protector] * rng.normal(size=(len(items), 24))
    return SimpleNamespace(embeddings=x / np.linalg.norm(x, axis=1, keepdims=True),
                           labels=np.array([names.index(n) for _, n in items]), identity_names=names,
                           detected=np.ones(len(items), bool), provenance={"model": model})


@pytest.fixture(autouse=True)
def fake_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tsne, "load_embeddings", fake_embeddings)
    monkeypatch.setattr(tsne, "dataset_index", lambda dataset, root: list(INDEX))


def run(tmp_path: Path, overrides: list[str]) -> Any:
    return run_experiment("tsne", overrides=["identities=5", "min_images=10", "max_images_per_identity=10",
                                             "perplexity=5.0", "grid=40", *overrides],
                          out=tmp_path / "out", cache_dir=str(tmp_path / "cache"), device="cpu", quiet=True)


def test_raw_clusters_and_a_scrambling_protector_does_not(tmp_path: Path) -> None:
    out, result = run(tmp_path, ['protectors=["invert"]'])
    row = result.tables["tsne"].iloc[0]
    assert row["points"] == 50 and row["identities"] == 5
    assert row["raw_map_1nn"] > 0.95 and row["raw_features_1nn"] == 1.0  # separable raw identities
    assert row["protected_features_1nn"] < 0.6 and row["placed_in_raw_map_1nn"] < 0.6  # noise 30x: near chance
    assert (out / "tsne-0.png").stat().st_size > 10_000 and (out / "tsne.md").is_file()


def test_a_missing_identity_count_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CamproError, match="only 6 identities with >= 10 images"):
        run(tmp_path, ["identities=8"])
    with pytest.raises(CamproError, match="unknown tsne protocol key 'perplexty'"):
        run(tmp_path, ["perplexty=3.0"])
