"""The ``defocus`` Gaussian blur as one fused, separable pass on the CPU (numba).

Two entry points, both computing what :class:`campro_bench.protectors.baselines.Defocus` computes
(kornia's separable ``gaussian_blur2d``: the same float32 taps, rows first and then columns, each
tap added in kornia's order with one fused multiply-add, reflect borders, replicate when the image
is not larger than half the kernel):

* :func:`defocus_planes`: float32 ``N x 3 x H x W`` tensors; ``Defocus`` uses it on the CPU
  whenever no gradient is asked for. Tests hold it to kornia within 1e-5; on the development CPU
  (AVX2, torch 2.14) it is bit-identical to kornia's output at every paper setting, image sizes
  from 1x1 to 1080p, both borders. With a gradient, ``Defocus`` keeps kornia's differentiable
  convolution.
* :func:`defocus_uint8`: 8-bit frames ``uint8 [N, H, W, 3]`` or ``[H, W, 3]`` as a camera
  delivers them, blurred in float32 and rounded: equal to ``round(255 * Defocus(frames / 255))``
  within one level (the blur is linear; only float32 rounding order differs).

Each parallel job (numba ``prange``) takes one image plane and a band of rows; it blurs each
needed source row horizontally into a ring of ``kernel`` rows and sums the ring vertically into
the output row, so the intermediate stays in cache instead of a full-frame pass per tap.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
import torch
from pydantic import Field

from ..errors import CamproError
from ..specs import check_number
from ._jit import helper_jit, numba, parallel_jit

DEFOCUS_MAX_KERNEL = 1001
"""The largest defocus kernel side (the paper's largest is 25): a bound on the work per pixel."""
DEFOCUS_ANY_IMAGE_KERNEL = 25
"""Kernels up to this side (the paper's largest) are taken on images of any size."""

DefocusKernel = Annotated[int, Field(ge=1, le=DEFOCUS_MAX_KERNEL, description="odd kernel side (pixels)")]
DefocusSigma = Annotated[float, Field(ge=0.01, le=1000.0, description="Gaussian sigma (pixels)")]

if numba is not None:
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    # plain functions the parallel kernel calls: compiled (serially) at first use, cached on disk
    _jit_helper = helper_jit

    @intrinsic
    def fma32(typingctx, a, b, c):  # type: ignore[no-untyped-def]
        """``a * b + c`` rounded once (LLVM's fma), as torch's vectorised ``addcmul`` and oneDNN's
        convolution accumulate kornia's taps on this CPU."""
        signature = types.float32(types.float32, types.float32, types.float32)

        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            f32 = ir.FloatType()
            fma = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
            return builder.call(fma, args)

        return signature, codegen
else:  # pragma: no cover - exercised only without numba
    def _jit_helper(function):  # type: ignore[no-untyped-def]
        return function

    def fma32(a, b, c):  # type: ignore[no-untyped-def]
        return a * b + c


@_jit_helper
def _scale(acc: np.ndarray, a: np.ndarray, wa: np.float32) -> None:
    for j in range(acc.shape[0]):
        acc[j] = a[j] * wa


@_jit_helper
def _add1(acc: np.ndarray, a: np.ndarray, wa: np.float32) -> None:
    for j in range(acc.shape[0]):
        acc[j] = fma32(a[j], wa, acc[j])


@_jit_helper
def _add4(acc: np.ndarray, a: np.ndarray, wa: np.float32, b: np.ndarray, wb: np.float32, c: np.ndarray,
          wc: np.float32, d: np.ndarray, wd: np.float32) -> None:
    """Four taps per sweep, added left to right: the sums of four :func:`_add1` calls, to the bit."""
    for j in range(acc.shape[0]):
        acc[j] = fma32(d[j], wd, fma32(c[j], wc, fma32(b[j], wb, fma32(a[j], wa, acc[j]))))


@_jit_helper
def _correlate_row(padded: np.ndarray, taps: np.ndarray, channels: int, line: np.ndarray) -> None:
    """``line[j] = sum_t taps[t] * padded[j + t * channels]``, taps added in order."""
    count = line.shape[0]
    _scale(line, padded[:count], taps[0])
    t = 1
    while t + 4 <= taps.shape[0]:
        o = t * channels
        _add4(line, padded[o:o + count], taps[t], padded[o + channels:o + channels + count], taps[t + 1],
              padded[o + 2 * channels:o + 2 * channels + count], taps[t + 2],
              padded[o + 3 * channels:o + 3 * channels + count], taps[t + 3])
        t += 4
    while t < taps.shape[0]:
        _add1(line, padded[t * channels:t * channels + count], taps[t])
        t += 1


@_jit_helper
def _sum_rows(ring: np.ndarray, first: int, taps: np.ndarray, acc: np.ndarray) -> None:
    """``acc = sum_t taps[t] * ring[(first + t) % len(ring)]``, taps added in order."""
    size = ring.shape[0]
    _scale(acc, ring[first], taps[0])
    t = 1
    while t + 4 <= taps.shape[0]:
        _add4(acc, ring[(first + t) % size], taps[t], ring[(first + t + 1) % size], taps[t + 1],
              ring[(first + t + 2) % size], taps[t + 2], ring[(first + t + 3) % size], taps[t + 3])
        t += 4
    while t < taps.shape[0]:
        _add1(acc, ring[(first + t) % size], taps[t])
        t += 1


def _separable(src: np.ndarray, taps: np.ndarray, channels: int, reflect: bool, band: int, rounding: bool,
               dst: np.ndarray) -> None:
    """Blur ``src [planes, H, W * channels]`` (interleaved channels) into ``dst`` of the same shape."""
    planes, height, row_len = src.shape
    width = row_len // channels
    size = taps.shape[0]
    radius = size // 2
    bands = (height + band - 1) // band
    for job in numba.prange(planes * bands):  # type: ignore[union-attr]
        plane = job // bands
        start = (job % bands) * band
        stop = min(height, start + band)
        padded = np.empty((width + 2 * radius) * channels, np.float32)
        ring = np.empty((size, row_len), np.float32)
        acc = np.empty(row_len, np.float32)
        for y in range(start - radius, stop + radius):
            # source row of y (reflect: mirror about the edge row; replicate: clamp)
            source = y
            if reflect:
                if source < 0:
                    source = -source
                if source >= height:
                    source = 2 * (height - 1) - source
            source = min(max(source, 0), height - 1)
            row = src[plane, source]
            for j in range(row_len):
                padded[radius * channels + j] = row[j]
            for x in range(radius):
                left = x - radius
                right = width + x
                if reflect:
                    left = -left
                    right = 2 * (width - 1) - right
                left = min(max(left, 0), width - 1)
                right = min(max(right, 0), width - 1)
                for c in range(channels):
                    padded[x * channels + c] = row[left * channels + c]
                    padded[(radius + width + x) * channels + c] = row[right * channels + c]
            _correlate_row(padded, taps, channels, ring[(y - start + radius) % size])
            out = y - radius
            if out < start:
                continue
            _sum_rows(ring, (out - start) % size, taps, acc)
            target = dst[plane, out]
            if rounding:
                for j in range(row_len):
                    target[j] = min(max(np.rint(acc[j]), 0.0), 255.0)
            else:
                for j in range(row_len):
                    target[j] = acc[j]


def gaussian_taps(kernel: int, sigma: float) -> np.ndarray:
    """The float32 1-D taps kornia's ``gaussian_blur2d`` uses for ``kernel`` and ``sigma``."""
    import kornia

    sigmas = torch.tensor([[float(sigma)]], dtype=torch.float32)
    return kornia.filters.get_gaussian_kernel1d(int(kernel), sigmas)[0].numpy().astype(np.float32)


def check_kernel_fits(kernel: int, height: int, width: int) -> None:
    """Refuse, before any work, a kernel larger than the image calls for.

    A kernel whose radius exceeds the image's longer side only adds taps that read replicated
    border pixels, at a cost that grows with the kernel rather than the image. Such kernels are
    refused, except those up to :data:`DEFOCUS_ANY_IMAGE_KERNEL` (the paper's largest setting),
    which every image takes, as every protector takes images of any size.
    """
    largest = max(2 * max(height, width) + 1, DEFOCUS_ANY_IMAGE_KERNEL)
    if kernel > largest:
        raise CamproError(f"defocus kernel {kernel} is too large for a {width}x{height} image: its radius "
                          f"{kernel // 2} exceeds the longer side; use a kernel of at most {largest}")


def reflects(height: int, width: int, kernel: int) -> bool:
    """``Defocus``'s border rule: reflect when the image is larger than half the kernel, else replicate."""
    return min(height, width) > kernel // 2


def _blur(src: np.ndarray, kernel: int, sigma: float, channels: int, rounding: bool, dst: np.ndarray) -> None:
    planes, height, row_len = src.shape
    jobs_wanted = 4 * (numba.get_num_threads() if numba is not None else 1)
    band = max(kernel, math.ceil(height / max(1, math.ceil(jobs_wanted / planes))))
    compiled = parallel_jit(_separable, "the fast defocus path")
    compiled(src, gaussian_taps(kernel, sigma), channels, reflects(height, row_len // channels, kernel), band,
             rounding, dst)


def defocus_planes(images: torch.Tensor, kernel: int, sigma: float) -> torch.Tensor:
    """Gaussian blur of a float32 CPU batch ``N x C x H x W`` (no gradient), as ``Defocus`` computes it."""
    if images.dtype != torch.float32 or images.ndim != 4 or images.device.type != "cpu":
        raise CamproError(f"the fast defocus path takes float32 CPU N x C x H x W tensors, got {images.dtype} "
                          f"{list(images.shape)} on {images.device}")
    n, c, h, w = images.shape
    src = images.detach().contiguous().reshape(n * c, h, w).numpy()
    out = torch.empty((n, c, h, w), dtype=torch.float32)
    if out.numel():
        _blur(src, kernel, sigma, 1, False, out.view(n * c, h, w).numpy())
    return out


def defocus_uint8(frames: np.ndarray, kernel: int = 25, sigma: float = 7.0) -> np.ndarray:
    """``defocus:kernel=K,sigma=S`` on 8-bit RGB frames ``[N, H, W, 3]`` or ``[H, W, 3]`` (same shape out)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or frames.shape[-1] != 3:
        raise CamproError(f"8-bit defocus frames must be uint8 [N, H, W, 3] or [H, W, 3], got {frames.dtype} "
                          f"{list(frames.shape)}")
    problems = [f"{key}={value} {problem}" for key, value, annotation in
                (("kernel", kernel, DefocusKernel), ("sigma", sigma, DefocusSigma))
                if (problem := check_number(value, annotation))]
    if kernel % 2 == 0:
        problems.append(f"kernel={kernel} is even")
    if problems:  # the declared ranges, as the spec door checks them (this path takes no spec)
        raise CamproError(f"defocus needs an odd kernel and sigma in their ranges: {'; '.join(problems)}")
    height, width = frames.shape[-3], frames.shape[-2]
    check_kernel_fits(kernel, height, width)
    flat = np.ascontiguousarray(frames).reshape(-1, height, width * 3)
    out = np.empty_like(flat)
    if out.size:
        _blur(flat, kernel, sigma, 3, True, out)
    return out.reshape(frames.shape)
