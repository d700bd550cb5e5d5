"""Hashing in one place: files, bytes, JSON-able keys and arrays (SHA-256, hex).

Cache keys, weight ids and cache-entry digests all come from these functions, so that a key
means the same thing wherever it is computed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
"""Bytes read at a time when hashing a file."""


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex SHA-256 of the canonical JSON text of ``obj`` (sorted keys; unknown types as ``str``).

    The one way to turn a key (a dict or list of plain values) into a cache key or fingerprint;
    callers keep a prefix of it (``sha256_json(key)[:16]``).
    """
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())


def ids_digest(ids: list[str]) -> str:
    """Short hash of a list of image ids (records which images a split or a shard holds)."""
    return sha256_bytes("\n".join(ids).encode())[:16]
