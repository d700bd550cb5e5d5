"""Dataset fingerprints: a cheap, content-sensitive identity of a set of files.

The fingerprint hashes the sorted list of (relative path, size) of every file plus the full
content of the small label files (people lists, identity files, annotations). It changes when a
file is added, removed, resized or relabelled, and costs one ``stat`` per file.

Fingerprints key the embedding and crop caches, so the digest of a given file set must never
change: files are ordered as ``pathlib`` orders them (component by component, not character by
character: ``a/b`` before ``a-c``) and named by their path relative to ``root``. The per-file loop
works on strings rather than ``Path`` objects (on full LFW, 13,233 files: about 0.1 s instead of
0.6 s); anything that is not a plain path under ``root`` takes the ``pathlib`` route.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable


def _relative_name(path: str, root: str) -> str:
    """``Path(path).relative_to(root).as_posix()`` for absolute paths, else ``path`` as posix."""
    if not os.path.isabs(path):
        return Path(path).as_posix()
    prefix = root.rstrip(os.sep) + os.sep
    if os.sep == "/" and path.startswith(prefix):  # names are Path-normalised; anything else: pathlib
        return path[len(prefix):]
    return Path(path).relative_to(root).as_posix()  # raises for a file outside root, as before


def fingerprint(root: Path, files: Iterable[Path], label_files: Iterable[Path] = ()) -> dict[str, object]:
    """``{"root", "files", "bytes", "sha256"}`` for ``files`` (relative to ``root``) and labels."""
    digest = hashlib.sha256()
    count = 0
    total = 0
    names = [os.fspath(f) if isinstance(f, Path) else str(Path(f)) for f in files]  # Path-normalised
    names.sort(key=lambda name: name.split(os.sep))  # pathlib's order: by components
    base = str(root)
    for name in names:
        size = os.stat(name).st_size
        digest.update(f"{_relative_name(name, base)}\t{size}\n".encode())
        count += 1
        total += size
    for label in sorted(Path(f) for f in label_files):
        rel = label.relative_to(root).as_posix() if label.is_absolute() else label.as_posix()
        digest.update(f"#label {rel}\n".encode())
        digest.update(label.read_bytes())
    return {"root": str(root), "files": count, "bytes": total, "sha256": digest.hexdigest()}
