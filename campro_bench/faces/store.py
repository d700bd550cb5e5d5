"""An on-disk cache of per-image arrays, keyed by everything that produced them.

A :class:`ShardStore` is a folder named by a hash of its key (dataset fingerprint, detector,
alignment, model + weights, protector, pipeline, ...). It holds ``meta.json`` (the key, for
provenance) and shards ``part-*.npz``: uncompressed npz files with an ``ids`` array and one array
per field, one row per image id. A call that needs ids the store lacks computes only those and
adds one shard, so subsets (LFW pair images, identities with >= 2 images) and later supersets
share the work. Shards are written atomically and never rewritten, so concurrent writers can at
worst compute the same rows twice.

Each shard carries a content digest (``part-*.npz.sha256``, :mod:`campro_bench.io.sealed`). A shard
that does not match its digest, has none, or cannot be read (truncated, altered) is removed with a
warning naming it, and its rows are computed again. Shards written before digests existed are read
only when the user opts in (``CAMPRO_BENCH_ACCEPT_UNSEALED=1``), with a warning naming each one, and
only when they read completely (every array's zip CRC-32 is checked on reading).
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write_json
from ..io.hashing import ids_digest, sha256_json
from ..io.sealed import LEGACY_ENV, accept_unsealed, discard, is_unsealed, sealed_path, verify_sealed

STORE_VERSION = 1


def key_digest(key: dict[str, Any]) -> str:
    return sha256_json({"store_version": STORE_VERSION, **key})[:24]


class ShardStore:
    """Arrays per image id under ``cache_dir/faces/<kind>/<digest of key>/``."""

    def __init__(self, cache_dir: Path, kind: str, key: dict[str, Any]) -> None:
        self.key = key
        self.folder = Path(cache_dir) / "faces" / kind / key_digest(key)

    def _shards(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.npz")) if self.folder.is_dir() else []

    def get(self, ids: list[str], fields: tuple[str, ...]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Rows for ``ids`` (zeros where absent) and a bool mask of the ids found."""
        where = {i: n for n, i in enumerate(ids)}
        found = np.zeros(len(ids), bool)
        out: dict[str, np.ndarray] = {}
        for shard in self._shards():
            try:
                unsealed = is_unsealed(shard)
                if unsealed and not accept_unsealed():
                    raise ValueError(f"no content digest; set {LEGACY_ENV}=1 to accept entries of older versions")
                if unsealed:
                    warnings.warn(f"cache shard {shard} has no content digest; read as written by an older "
                                  f"version ({LEGACY_ENV}=1)", stacklevel=2)
                elif not verify_sealed(shard):
                    raise ValueError("content does not match its digest")
                with np.load(shard, allow_pickle=False) as data:
                    shard_ids = data["ids"]
                    rows = [(n, where[i]) for n, i in enumerate(shard_ids.tolist())
                            if i in where and not found[where[i]]]
                    if not rows:
                        continue
                    src, dst = (np.array(x, np.int64) for x in zip(*rows))
                    columns = {f: data[f] for f in fields}
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                warnings.warn(f"cache shard {shard} not trusted ({exc}); removed, its rows are computed again",
                              stacklevel=2)
                discard(shard)
                continue
            for f, column in columns.items():
                if f not in out:
                    out[f] = np.zeros((len(ids),) + column.shape[1:], column.dtype)
                out[f][dst] = column[src]
            found[dst] = True
        return out, found

    def put(self, ids: list[str], arrays: dict[str, np.ndarray]) -> Path:
        """Add one shard with rows for ``ids``."""
        if not (self.folder / "meta.json").is_file():
            atomic_write_json(self.folder / "meta.json", self.key)
        digest = ids_digest(ids)
        target = self.folder / f"part-{digest}.npz"
        with sealed_path(target) as tmp:
            np.savez(tmp, ids=np.asarray(ids, dtype=str), **arrays)
        return target
