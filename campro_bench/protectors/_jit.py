"""Compile the protectors' fused 8-bit / CPU loops with numba, once, and keep them across processes.

Kernels use ``numba.prange`` from this module's ``numba`` (``from ._jit import numba``).

Compiling the fused ``defocus`` kernels takes several seconds, which every ``campro-bench protect``
call (a new process each time) used to pay again, silently. Kernels are therefore compiled with
numba's on-disk cache (``cache=True``): the first process compiles and writes the machine code,
later processes load it (numba checks the source file's timestamp and the CPU, and recompiles when
either changed). The cache lives in ``<campro-bench cache>/numba`` (``--cache-dir`` /
``CAMPRO_BENCH_CACHE``, like every other cache), unless ``NUMBA_CACHE_DIR`` names another folder;
it is safe to delete.

numba is a dependency; the guarded import keeps the package importable while it is being
installed, and a path that needs it then says so in one :class:`CamproError` line.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from .. import paths
from ..errors import CamproError

try:
    import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

_compiled: dict[Callable[..., Any], Any] = {}


def use_cache_dir() -> str | None:
    """Point numba's on-disk cache at the campro-bench cache (unless ``NUMBA_CACHE_DIR`` is set); the folder."""
    if numba is None:
        return None
    if not os.environ.get("NUMBA_CACHE_DIR"):
        numba.config.CACHE_DIR = str(paths.cache_dir(None, create=False) / "numba")
    return str(numba.config.CACHE_DIR)


def helper_jit(function: Callable[..., Any]) -> Any:
    """A serial helper the parallel kernels call, compiled at first use and cached on disk."""
    use_cache_dir()
    return numba.njit(fastmath=False, cache=True)(function)


def parallel_jit(function: Callable[..., Any], what: str) -> Any:
    """``function`` compiled by numba (parallel over its ``prange``, no fastmath), once per process, cached on disk."""
    if function not in _compiled:
        if numba is None:
            raise CamproError(f"{what} needs numba: pip install numba")
        use_cache_dir()
        _compiled[function] = numba.njit(parallel=True, fastmath=False, cache=True)(function)
    return _compiled[function]
