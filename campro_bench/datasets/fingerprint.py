"""Dataset fingerprints: a cheap, content-sensitive identity of a set of files.

The fingerprint hashes the sorted list of (relative path, size) of every file plus the full
content of the small label files (people lists, identity files, annotations). It changes when a
file is added, removed, resized or relabelled, and costs one ``stat`` per file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable


def fingerprint(root: Path, files: Iterable[Path], label_files: Iterable[Path] = ()) -> dict[str, object]:
    """``{"root", "files", "bytes", "sha256"}`` for ``files`` (relative to ``root``) and labels."""
    digest = hashlib.sha256()
    count = 0
    total = 0
    for path in sorted(Path(f) for f in files):
        size = path.stat().st_size
        rel = path.relative_to(root).as_posix() if path.is_absolute() else path.as_posix()
        digest.update(f"{rel}\t{size}\n".encode())
        count += 1
        total += size
    for label in sorted(Path(f) for f in label_files):
        rel = label.relative_to(root).as_posix() if label.is_absolute() else label.as_posix()
        digest.update(f"#label {rel}\n".encode())
        digest.update(label.read_bytes())
    return {"root": str(root), "files": count, "bytes": total, "sha256": digest.hexdigest()}
