"""On-disk cache of identification outcomes, keyed by content.

A cache entry holds the per-repeat, per-identity correctness of one (classifier configuration,
gallery features, probe features, splits) combination. The key hashes the bytes of everything
that determines the outcome, so a hit is exactly what recomputation would give; it makes a warm
rerun of E1 (embeddings already cached by the face pipeline) independent of linear-classifier
training time. Entries are small ``.npz`` files written atomically with a content digest
(:mod:`campro_bench.io.sealed`); a damaged or altered entry, or one without a digest (unless the user
opts in with ``CAMPRO_BENCH_ACCEPT_UNSEALED=1``), is recomputed. Deleting the folder is safe.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..io.hashing import sha256_json
from ..io.sealed import accept_unsealed, sealed_path, verify_sealed

CACHE_VERSION = 1
"""Bump when the meaning of a cached outcome changes (protocol or classifier semantics)."""


def array_digest(*arrays: np.ndarray) -> str:
    """SHA-256 over dtype, shape and bytes of each array."""
    digest = hashlib.sha256()
    for array in arrays:
        a = np.ascontiguousarray(array)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(memoryview(a).cast("B"))
    return digest.hexdigest()


def outcome_key(classifier: dict[str, Any], gallery: str, probe: str, splits: str) -> str:
    return sha256_json(
        {"v": CACHE_VERSION, "classifier": classifier, "gallery": gallery, "probe": probe, "splits": splits}
    )[:32]


class OutcomeCache:
    """``get(key)`` / ``put(key, correct, info)`` for boolean ``[R, C]`` correctness arrays."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            if not verify_sealed(path, legacy=accept_unsealed()):
                return None  # altered entry: recompute and overwrite
            with np.load(path, allow_pickle=False) as data:
                return data["correct"].astype(bool), json.loads(str(data["info"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None  # unreadable entry: recompute and overwrite

    def put(self, key: str, correct: np.ndarray, info: dict[str, Any]) -> None:
        with sealed_path(self._path(key)) as tmp:
            np.savez(tmp, correct=np.asarray(correct, dtype=bool), info=np.array(json.dumps(info)))
