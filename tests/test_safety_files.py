"""Bad files: a pickle payload in any loader runs no code; damaged cache entries are not trusted.

Each loader of a torch file is given a file whose unpickling would call ``exec`` (a class with a
``__reduce__``) and write a marker file; the marker must not appear and the loader must raise one
:class:`CheckpointError` line naming the file. Cache entries (embedding/crop shards, identification
outcomes, converted models) carry a content digest: a truncated or altered entry is recomputed.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from campro_bench.errors import CheckpointError
from campro_bench.io.sealed import sealed_path, sidecar, verify_sealed
from campro_bench.io.torchfile import load_torch_file


class Payload:
    """Unpickling this object runs ``exec`` (what a hostile checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def hostile_file(path: Path, marker: Path, wrap: Callable[[Any], Any] = lambda p: p) -> Path:
    torch.save(wrap({"state_dict": {"w": torch.zeros(1)}, "extra": Payload(marker)}), path)
    return path


def _recognizer(path: Path, tmp: Path) -> None:
    from campro_bench.recognizers.weights import read_checkpoint
    read_checkpoint(path)


def _training(path: Path, tmp: Path) -> None:
    from campro_bench.training.checkpoint import load_training_checkpoint
    load_training_checkpoint(path, "isp")


def _enhancer(path: Path, tmp: Path) -> None:
    from campro_bench.enhancer.model import load_enhancer
    load_enhancer(path)


def _detector(path: Path, tmp: Path) -> None:
    from campro_bench.detection.checkpoint import load_checkpoint
    from campro_bench.detection.ssdlite import SSDLiteDetector
    load_checkpoint(SSDLiteDetector(), path)


def _generic(path: Path, tmp: Path) -> None:
    load_torch_file(path)


LOADERS = {"recognizer weights": _recognizer, "training checkpoint": _training, "enhancer": _enhancer,
           "detector checkpoint": _detector, "any torch file": _generic}


@pytest.mark.parametrize("loader", list(LOADERS))
def test_pickle_payload_does_not_run_in_any_loader(loader: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = hostile_file(tmp_path / "weights.pt", marker)
    with pytest.raises(CheckpointError) as info:
        LOADERS[loader](path, tmp_path)
    message = str(info.value)
    assert not marker.exists(), "the payload ran"
    assert "\n" not in message and str(path) in message and "global exec," in message


def test_the_payload_does_run_when_unpickled_in_full(tmp_path: Path) -> None:
    """The check above can fail: the same file does run code under a full unpickler."""
    marker = tmp_path / "marker"
    path = hostile_file(tmp_path / "weights.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.read_text() == "ran"


def test_training_checkpoint_round_trips_random_states_as_plain_data(tmp_path: Path) -> None:
    import random

    from campro_bench.training.checkpoint import (
        load_training_checkpoint,
        rng_state,
        save_training_checkpoint,
        set_rng_state,
    )

    save_training_checkpoint(tmp_path / "c.pt", "isp", {"seed": 1}, {"rng": rng_state()})
    expected = (random.random(), float(np.random.rand()), float(np.random.randn()), float(torch.rand(1)))
    _, state = load_training_checkpoint(tmp_path / "c.pt", "isp")  # weights_only: no pickled objects
    set_rng_state(state["rng"])
    assert (random.random(), float(np.random.rand()), float(np.random.randn()), float(torch.rand(1))) == expected


def test_sealed_file_detects_truncation_and_alteration(tmp_path: Path) -> None:
    target = tmp_path / "entry.bin"
    with sealed_path(target) as tmp:
        tmp.write_bytes(b"0123456789")
    assert verify_sealed(target) and sidecar(target).is_file()
    target.write_bytes(b"01234")
    assert not verify_sealed(target)
    target.write_bytes(b"0123456788")
    assert not verify_sealed(target)
    sidecar(target).unlink()
    assert not verify_sealed(target) and verify_sealed(target, legacy=True)


@pytest.mark.parametrize("damage", ["truncate", "alter"])
def test_damaged_embedding_shard_is_removed_and_recomputed(damage: str, tmp_path: Path) -> None:
    from campro_bench.faces.store import ShardStore

    store = ShardStore(tmp_path, "embeddings", {"model": "m"})
    shard = store.put(["a", "b"], {"emb": np.arange(6, dtype=np.float32).reshape(2, 3)})
    rows, found = store.get(["a", "b"], ("emb",))
    assert found.all() and rows["emb"][1].tolist() == [3, 4, 5]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2] if damage == "truncate" else data.replace(b"\x00\x00@@", b"\x00\x00@A", 1))
    with pytest.warns(UserWarning, match=f"damaged cache shard {shard}"):
        rows, found = store.get(["a", "b"], ("emb",))
    assert not found.any() and not shard.exists()


def test_legacy_shard_without_digest_is_read_when_intact(tmp_path: Path) -> None:
    from campro_bench.faces.store import ShardStore

    store = ShardStore(tmp_path, "crops", {"k": 1})
    shard = store.put(["x"], {"crop": np.ones((1, 2), np.uint8)})
    sidecar(shard).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.get(["x"], ("crop",))[1].all()


def test_altered_identification_outcome_is_recomputed(tmp_path: Path) -> None:
    from campro_bench.privacy.cache import OutcomeCache

    cache = OutcomeCache(tmp_path)
    cache.put("ab" * 16, np.array([[True, False]]), {"n": 1})
    assert cache.get("ab" * 16)[0].tolist() == [[True, False]]
    path = next(tmp_path.rglob("*.npz"))
    path.write_bytes(path.read_bytes()[:-10])
    assert cache.get("ab" * 16) is None
