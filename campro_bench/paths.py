"""Where campro-bench finds data, model weights and its cache.

Nothing here knows a path of any particular machine: every location comes from a command-line
option or an environment variable, with a per-user default only for the cache.

* data root: ``--data-root`` or ``CAMPRO_BENCH_DATA`` (holds ``lfw/``, ``celeba-subset/``, ...);
* models folder: ``--models-dir`` or ``CAMPRO_BENCH_MODELS`` (user-supplied checkpoints);
* cache: ``--cache-dir`` or ``CAMPRO_BENCH_CACHE`` (default ``~/.cache/campro-bench``): converted
  models, aligned crops and embeddings, all safe to delete.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CamproError, MissingFileError

DATA_ENV = "CAMPRO_BENCH_DATA"
MODELS_ENV = "CAMPRO_BENCH_MODELS"
CACHE_ENV = "CAMPRO_BENCH_CACHE"


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data root, from the argument or ``CAMPRO_BENCH_DATA``; it must exist."""
    value = explicit if explicit is not None else os.environ.get(DATA_ENV)
    if not value:
        raise CamproError(
            f"no data root given: pass --data-root DIR or set {DATA_ENV} to the folder that holds "
            "the datasets (lfw/, celeba-subset/, coco-mini/, coco128/)"
        )
    root = Path(value).expanduser()
    if not root.is_dir():
        raise MissingFileError(f"data root {root} does not exist or is not a folder")
    return root


def models_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The folder of user-supplied model weights (need not exist yet)."""
    value = explicit if explicit is not None else os.environ.get(MODELS_ENV)
    if value:
        return Path(value).expanduser()
    return cache_dir() / "models"


def cache_dir(explicit: str | os.PathLike[str] | None = None, create: bool = True) -> Path:
    """The cache folder, created on demand (``create=False``: only named)."""
    value = explicit if explicit is not None else os.environ.get(CACHE_ENV)
    root = Path(value).expanduser() if value else Path.home() / ".cache" / "campro-bench"
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root
