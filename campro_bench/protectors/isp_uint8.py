"""The CamPro ISP on 8-bit frames, as a camera delivers them: one fused pass per pixel.

The float path (:func:`campro_bench.protectors.isp.campro_isp`) stays the reference and the one
training differentiates; this path is for deployment and benchmarks. Per pixel it reads the three
8-bit values, takes the CCM products of their de-gammed values from 9 x 256-entry tables
(``ccm[i, j] * (v / 255) ** degamma``, computed in float32 like the float path), sums them, clips to
[0, 1], interpolates the LUT (its segment slopes tabled too) and rounds to 8 bits: the float path's
operations in float32, fused in one compiled loop (numba, parallel over rows, clamps as branch-free
min/max) instead of seven full-frame tensor passes. Equal to ``round(255 * campro_isp(frames /
255))`` up to float32 rounding order (tests: at most one level on any pixel, and on almost all
pixels exactly).

Frames are ``uint8 [N, H, W, 3]`` (interleaved RGB, the layout of camera buffers and decoded
images) or a single ``[H, W, 3]`` frame; the output has the same shape.
"""

from __future__ import annotations

import numpy as np

from ..errors import CamproError
from ._jit import numba, parallel_jit
from .isp import ISPParams


def _kernel(frames: np.ndarray, products: np.ndarray, lut: np.ndarray, slope: np.ndarray, out: np.ndarray) -> None:
    rows = frames.shape[0]
    width = frames.shape[1]
    last = lut.shape[0] - 1
    scale = np.float32(last)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    top = np.float32(255.0)
    for row in numba.prange(rows):  # type: ignore[union-attr]
        source = frames[row]
        target = out[row]
        for col in range(width):
            r = source[col, 0]
            g = source[col, 1]
            b = source[col, 2]
            for i in range(3):
                value = products[3 * i, r] + products[3 * i + 1, g] + products[3 * i + 2, b]
                # clamps as min/max (selects, no branches: random colours mispredict if/else)
                value = min(max(value, zero), one)
                position = value * scale
                index = min(np.int32(position), np.int32(last - 1))
                fraction = position - np.float32(index)
                level = top * (lut[index] + slope[index] * fraction)
                target[col, i] = np.uint8(min(max(np.rint(level), zero), top))


def degamma_table(exponent: float) -> np.ndarray:
    """``(v / 255) ** exponent`` for v = 0..255, in float32 as the float path computes it."""
    import torch

    values = torch.arange(256, dtype=torch.float32) / 255.0
    return values.clamp(0.0, 1.0).pow(float(exponent)).numpy()


def campro_isp_uint8(frames: np.ndarray, params: ISPParams) -> np.ndarray:
    """Apply the CamPro ISP with ``params`` to 8-bit RGB frames ``[N, H, W, 3]`` or ``[H, W, 3]``."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or frames.shape[-1] != 3:
        raise CamproError(f"8-bit ISP frames must be uint8 [N, H, W, 3] or [H, W, 3], got {frames.dtype} "
                          f"{list(frames.shape)}")
    flat = np.ascontiguousarray(frames).reshape(-1, frames.shape[-2], 3)
    out = np.empty_like(flat)
    # the float32 products ccm[i, j] * degamma(v) and LUT segment slopes the float path computes
    # per pixel, computed once per call (the same float32 operations, so the same values)
    products = (np.asarray(params.ccm, np.float32).reshape(9, 1) * degamma_table(params.degamma)[None, :])
    lut = np.asarray(params.lut, np.float32)
    kernel = parallel_jit(_kernel, "the 8-bit ISP path")
    kernel(flat, products.astype(np.float32), lut, (lut[1:] - lut[:-1]).astype(np.float32), out)
    return out.reshape(frames.shape)
