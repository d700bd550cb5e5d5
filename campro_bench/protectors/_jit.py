"""Compile the protectors' fused 8-bit / CPU loops with numba, once each, on first use.

Kernels use ``numba.prange`` from this module's ``numba`` (``from ._jit import numba``).

numba is a dependency; the guarded import keeps the package importable while it is being
installed, and a path that needs it then says so in one :class:`CamproError` line.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import CamproError

try:
    import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

_compiled: dict[Callable[..., Any], Any] = {}


def parallel_jit(function: Callable[..., Any], what: str) -> Any:
    """``function`` compiled by numba (parallel over its ``prange``, no fastmath), cached per function."""
    if function not in _compiled:
        if numba is None:
            raise CamproError(f"{what} needs numba: pip install numba")
        _compiled[function] = numba.njit(parallel=True, fastmath=False, cache=False)(function)
    return _compiled[function]

