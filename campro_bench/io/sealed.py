"""Cache entries that carry a content digest, so a truncated or altered entry is never trusted.

A sealed file ``X`` has a sidecar ``X.sha256`` holding the SHA-256 of its bytes. The sidecar is
written (atomically) before the file itself is renamed into place, so a reader that finds ``X``
finds its digest too. :func:`verify_sealed` answers whether an entry is intact; the caller then
recomputes the entry (caches) or names it in one error line.

Entries written by older versions have no sidecar. They are not trusted by default: an entry
without a digest could have been edited (an edited ``.npz`` rewritten by numpy passes its own zip
CRCs), so the caches recompute it. A user who knows an old cache is intact opts in with
``CAMPRO_BENCH_ACCEPT_UNSEALED=1`` (:func:`accept_unsealed`); such entries are then read (their
format's own check still applies) and each one is named in a warning.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

from .atomic import atomic_path, atomic_write_text
from .hashing import sha256_file

SUFFIX = ".sha256"
LEGACY_ENV = "CAMPRO_BENCH_ACCEPT_UNSEALED"
"""Set to ``1`` to accept cache entries that have no digest sidecar (written by older versions)."""


def accept_unsealed() -> bool:
    """Whether the user opted into reading cache entries without a digest (``CAMPRO_BENCH_ACCEPT_UNSEALED=1``)."""
    return os.environ.get(LEGACY_ENV, "").strip().lower() in {"1", "true", "yes"}


def is_unsealed(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` exists without a digest sidecar (an entry of an older version, or a stripped one)."""
    return Path(path).is_file() and not sidecar(path).exists()


def sidecar(path: str | os.PathLike[str]) -> Path:
    """The digest file of ``path``."""
    path = Path(path)
    return path.with_name(path.name + SUFFIX)


@contextlib.contextmanager
def sealed_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Like :func:`~campro_bench.io.atomic.atomic_path`, and seal the file once written."""
    target = Path(target)
    with atomic_path(target, suffix) as tmp:
        yield tmp
        atomic_write_text(sidecar(target), sha256_file(tmp) + "\n")


def verify_sealed(path: str | os.PathLike[str], legacy: bool = False) -> bool:
    """Whether ``path`` exists and matches its digest (``legacy``: a missing sidecar is accepted)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        expected = sidecar(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return legacy
    except OSError:
        return False
    return expected == sha256_file(path)


def discard(path: str | os.PathLike[str]) -> None:
    """Remove an entry and its sidecar (a damaged cache entry, about to be recomputed)."""
    for p in (Path(path), sidecar(path)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def seal(path: str | os.PathLike[str]) -> None:
    """Write the digest of a file already in place (written atomically by its own writer)."""
    atomic_write_text(sidecar(path), sha256_file(path) + "\n")


def write_sealed_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as JSON, atomically and with its digest."""
    with sealed_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def trusted_entry(*paths: str | os.PathLike[str]) -> bool | None:
    """Whether a cache entry made of ``paths`` can be read: ``None`` when any file is absent (a miss),
    ``True`` when all match their digests (or have none and the user opted in, with a warning),
    ``False`` otherwise: the entry was altered, truncated or carries no digest. The caller then
    discards it (:func:`discard`) and recomputes it."""
    if not all(Path(p).is_file() for p in paths):
        return None
    unsealed = [Path(p) for p in paths if is_unsealed(p)]
    if unsealed and not accept_unsealed():
        warnings.warn(f"cache entry {unsealed[0]} has no content digest; it is recomputed "
                      f"(set {LEGACY_ENV}=1 to accept entries of older versions)", stacklevel=2)
        return False
    if unsealed:
        warnings.warn(f"cache entry {unsealed[0]} has no content digest; read as written by an older version "
                      f"({LEGACY_ENV}=1)", stacklevel=2)
    if not all(verify_sealed(p, legacy=True) for p in paths):
        warnings.warn(f"cache entry {Path(paths[0])} does not match its digest; it is recomputed", stacklevel=2)
        return False
    return True
