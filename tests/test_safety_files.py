"""Bad files: a pickle payload in any loader runs no code; damaged cache entries are not trusted.

Each loader of a torch file is given a file whose unpickling would call ``exec`` (a class with a
``__reduce__``) and write a marker file; the marker must not appear and the loader must raise one
:class:`CheckpointError` line naming the file. Cache entries (embedding/crop shards, identification
outcomes, converted models) carry a content digest: a truncated or altered entry is recomputed.
"""

from __future__ import annotations

import json
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
    with pytest.warns(UserWarning, match=f"cache shard {shard} not trusted"):
        rows, found = store.get(["a", "b"], ("emb",))
    assert not found.any() and not shard.exists()


def _edit_and_strip(shard: Path, **arrays: np.ndarray) -> None:
    """Rewrite an npz shard with other values (a valid file: its zip CRCs match) and strip its digest."""
    np.savez(shard, **arrays)
    sidecar(shard).unlink()


def test_edited_shard_without_digest_is_recomputed_unless_legacy_is_opted_into(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from campro_bench.faces.store import ShardStore
    from campro_bench.io.sealed import LEGACY_ENV

    monkeypatch.delenv(LEGACY_ENV, raising=False)
    store = ShardStore(tmp_path, "crops", {"k": 1})
    shard = store.put(["x"], {"crop": np.ones((1, 2), np.uint8)})
    _edit_and_strip(shard, ids=np.array(["x"]), crop=np.full((1, 2), 9, np.uint8))
    with pytest.warns(UserWarning, match=f"cache shard {shard} not trusted \\(no content digest; set {LEGACY_ENV}"):
        assert not store.get(["x"], ("crop",))[1].any()
    assert not shard.exists()  # removed: its rows are computed again
    # the explicit opt-in reads such a shard, and says so
    shard = store.put(["x"], {"crop": np.ones((1, 2), np.uint8)})
    _edit_and_strip(shard, ids=np.array(["x"]), crop=np.full((1, 2), 9, np.uint8))
    monkeypatch.setenv(LEGACY_ENV, "1")
    with pytest.warns(UserWarning, match="has no content digest; read as written by an older version"):
        rows, found = store.get(["x"], ("crop",))
    assert found.all() and rows["crop"].tolist() == [[9, 9]]


def test_identification_outcome_without_digest_is_recomputed_unless_opted_into(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from campro_bench.io.sealed import LEGACY_ENV
    from campro_bench.privacy.cache import OutcomeCache

    monkeypatch.delenv(LEGACY_ENV, raising=False)
    cache = OutcomeCache(tmp_path)
    cache.put("cd" * 16, np.array([[True, False]]), {"n": 1})
    path = next(tmp_path.rglob("*.npz"))
    _edit_and_strip(path, correct=np.array([[True, True]]), info=np.array('{"n": 1}'))
    assert cache.get("cd" * 16) is None
    monkeypatch.setenv(LEGACY_ENV, "1")
    assert cache.get("cd" * 16)[0].tolist() == [[True, True]]


def test_weight_file_rewritten_with_its_old_mtime_is_hashed_again(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The weight pin is memoised by (path, size, mtime, ctime, inode): restoring the mtime with
    ``os.utime`` after an edit moves the ctime, so the edit is seen, in this process and in a new one
    (the on-disk index). The racy window is set to zero so that the memo is really consulted."""
    import hashlib
    import os

    from campro_bench.recognizers import packaged

    monkeypatch.setattr(packaged, "_RACY_NS", 0)
    weights, cache = tmp_path / "w.bin", tmp_path / "cache"
    cache.mkdir()
    weights.write_bytes(b"A" * 4096)
    before = weights.stat()
    assert packaged.file_sha256(weights, cache) == hashlib.sha256(b"A" * 4096).hexdigest()
    # the memo is used: a planted digest for the unchanged file is returned as is
    index = json.loads((cache / packaged._HASH_INDEX).read_text())
    (key, entry), = index.items()
    (cache / packaged._HASH_INDEX).write_text(json.dumps({key: {**entry, "sha256": "planted"}}))
    monkeypatch.setattr(packaged, "_MEMO", {})
    assert packaged.file_sha256(weights, cache) == "planted"
    # same size, old mtime restored: a different file, hashed again
    weights.write_bytes(b"B" * 4096)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert weights.stat().st_mtime_ns == before.st_mtime_ns and weights.stat().st_size == before.st_size
    expected = hashlib.sha256(b"B" * 4096).hexdigest()
    assert packaged.file_sha256(weights, cache) == expected
    monkeypatch.setattr(packaged, "_MEMO", {})
    assert packaged.file_sha256(weights, cache) == expected


def test_weight_digest_taken_just_after_a_change_is_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file changed within the racy window before it was hashed may change again in the same coarse
    ctime tick: its memo is not trusted (a planted digest is not returned)."""
    from campro_bench.recognizers import packaged

    weights, cache = tmp_path / "w.bin", tmp_path / "cache"
    cache.mkdir()
    weights.write_bytes(b"C" * 100)
    real = packaged.file_sha256(weights, cache)  # hashed within 2 s of the write
    index = json.loads((cache / packaged._HASH_INDEX).read_text())
    (key, entry), = index.items()
    (cache / packaged._HASH_INDEX).write_text(json.dumps({key: {**entry, "sha256": "planted"}}))
    monkeypatch.setattr(packaged, "_MEMO", {})
    assert packaged.file_sha256(weights, cache) == real


@pytest.mark.parametrize("damage", ["edit", "strip digest"])
def test_tampered_e5_retraining_entry_is_trained_again(damage: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from campro_bench.experiments.whitebox import load_outcome, save_outcome
    from campro_bench.io.sealed import LEGACY_ENV

    monkeypatch.delenv(LEGACY_ENV, raising=False)
    cache = tmp_path / "e5" / "retrain-x-0123"
    save_outcome(cache, np.ones((3, 4), np.float32), {"history": [1]})
    embeddings, info = load_outcome(cache)
    assert embeddings.tolist() == np.ones((3, 4)).tolist() and info == {"history": [1]}
    if damage == "edit":  # a valid npz with other values; the sidecar still holds the old digest
        np.savez(cache.with_suffix(".npz"), embeddings=np.zeros((3, 4), np.float32))
    else:
        sidecar(cache.with_suffix(".json")).unlink()
    with pytest.warns(UserWarning, match="recomputed"):
        assert load_outcome(cache) is None
    assert not cache.with_suffix(".npz").exists() and not cache.with_suffix(".json").exists()


def test_tampered_e5_restoration_network_is_trained_again(tmp_path: Path) -> None:
    from campro_bench.protectors.baselines import Raw
    from campro_bench.training.restoration import restoration_network
    from campro_bench.training.unet import TrainingImages, UNetTrainConfig

    rng = np.random.default_rng(0)
    data = TrainingImages([rng.integers(0, 255, (24, 24, 3), dtype=np.uint8) for _ in range(4)])
    config = UNetTrainConfig(epochs=1, batch_size=2, crop=16, base_channels=2, depth=2, face_penalty=False,
                             face_crop_fraction=0.0)
    weights, report = restoration_network(data, Raw(), config, tmp_path, {"kind": "test"})
    assert not report["cached"] and restoration_network(data, Raw(), config, tmp_path, {"kind": "test"})[1]["cached"]
    data_bytes = bytearray(weights.read_bytes())
    data_bytes[-1] ^= 0xFF  # one byte flipped
    weights.write_bytes(bytes(data_bytes))
    with pytest.warns(UserWarning, match="does not match its digest"):
        again, report = restoration_network(data, Raw(), config, tmp_path, {"kind": "test"})
    assert again == weights and not report["cached"] and verify_sealed(weights)


def test_altered_identification_outcome_is_recomputed(tmp_path: Path) -> None:
    from campro_bench.privacy.cache import OutcomeCache

    cache = OutcomeCache(tmp_path)
    cache.put("ab" * 16, np.array([[True, False]]), {"n": 1})
    assert cache.get("ab" * 16)[0].tolist() == [[True, False]]
    path = next(tmp_path.rglob("*.npz"))
    path.write_bytes(path.read_bytes()[:-10])
    assert cache.get("ab" * 16) is None
