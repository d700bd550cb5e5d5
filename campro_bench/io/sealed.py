"""Cache entries that carry a content digest, so a truncated or altered entry is never trusted.

A sealed file ``X`` has a sidecar ``X.sha256`` holding the SHA-256 of its bytes. The sidecar is
written (atomically) before the file itself is renamed into place, so a reader that finds ``X``
finds its digest too. :func:`verify_sealed` answers whether an entry is intact; the caller then
recomputes the entry (caches) or names it in one error line. Entries written by older versions
have no sidecar; a caller decides whether it accepts them (:func:`verify_sealed`'s ``legacy``),
e.g. because the format has its own check (zip CRCs in ``.npz`` files).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from .atomic import atomic_path, atomic_write_text
from .hashing import sha256_file

SUFFIX = ".sha256"


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
