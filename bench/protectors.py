"""Protector throughput on 1920x1080 frames, beside the memory floor of a plain tensor copy.

Usage::

    python bench/protectors.py [--frames 4] [--repeats 5] [--device cpu] [--threads N]

For each protector the batch is processed ``repeats`` times after one warm-up; the median wall
time gives megapixels per second. The same batch is copied (``torch.clone``) in the same run,
alternately with each protector's runs (so that a ratio sees one load on a shared machine): a
protector cannot beat that rate, so ``protector / copy`` (x copy time) says how far each one is
from the memory floor. The header lines give the load average.

``defocus`` runs the fused CPU blur (:mod:`campro_bench.protectors.fast_blur`, no gradient asked);
each defocus row is followed by kornia's separable blur on the same batch (the path ``Defocus``
keeps for gradients, and the one it used for everything before), for comparison.

Then 8-bit frames (``uint8 [N, 1080, 1920, 3]``, what a camera delivers): the CamPro ISP through the
fused 8-bit path (:mod:`campro_bench.protectors.isp_uint8`) and defocus through the 8-bit blur
(:func:`campro_bench.protectors.fast_blur.defocus_uint8`), beside a copy of the same 8-bit frames
and beside each float path on the same frames (convert to float, protect, round to 8 bits).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import torch

from campro_bench.protectors import build_protector
from campro_bench.protectors._jit import numba
from campro_bench.protectors.baselines import Defocus

SPECS = (
    "raw",
    "invert",
    "lowres:factor=4",
    "lowres:factor=16",
    "defocus:kernel=9,sigma=3",
    "defocus:kernel=25,sigma=7",
    "campro-isp:preset=standard",
)


def seconds_once(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()  # warm-up (allocations, kernel selection)
    return statistics.median(seconds_once(fn, device) for _ in range(repeats))


def beside_copy(fn: Callable[[], object], copy: Callable[[], object], repeats: int,
                device: torch.device) -> tuple[float, float]:
    """Median seconds of ``fn`` and its ratio to ``copy``, the two timed alternately.

    On a machine shared with other jobs the load changes during a run; timing the copy next to
    each protector (copy, protector, copy, protector, ...) keeps each ratio to one load.
    """
    fn()  # warm-up (allocations, compilation, kernel selection)
    copy()
    times, copies = [], []
    for _ in range(repeats):
        copies.append(seconds_once(copy, device))
        times.append(seconds_once(fn, device))
    seconds = statistics.median(times)
    return seconds, seconds / statistics.median(copies)


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def kornia_blur(protector: Defocus, frames: torch.Tensor) -> torch.Tensor:
    """``protector``'s blur through kornia's ``gaussian_blur2d`` (the path kept for gradients)."""
    import kornia

    sigma = torch.tensor([[protector.sigma, protector.sigma]], dtype=frames.dtype, device=frames.device)
    with torch.inference_mode():
        return kornia.filters.gaussian_blur2d(frames, (protector.kernel, protector.kernel), sigma,
                                              border_type="reflect", separable=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        if numba is not None:  # the fused paths' threads
            numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    device = torch.device(args.device)
    frames = torch.rand(args.frames, 3, 1080, 1920, generator=torch.Generator().manual_seed(0)).to(device)
    megapixels = args.frames * 1080 * 1920 / 1e6

    copy = frames.clone
    copy_s = median_seconds(copy, args.repeats, device)
    print(f"device={device} threads={torch.get_num_threads()} numba threads={numba.get_num_threads() if numba else 0} "
          f"batch={args.frames}x3x1080x1920 float32, load average {load_average()}")
    print(f"{'protector':32s} {'ms/batch':>10s} {'MP/s':>10s} {'x copy time':>15s}")
    print(f"{'(tensor copy: memory floor)':32s} {copy_s * 1e3:10.1f} {megapixels / copy_s:10.1f} {1.0:15.2f}")
    for spec in SPECS:
        protector = build_protector(spec).to(device).eval()

        def run() -> torch.Tensor:
            with torch.inference_mode():
                return protector(frames)

        rows = [(spec, run)]
        if isinstance(protector, Defocus):
            rows.append(("  kornia separable (old path)", lambda p=protector: kornia_blur(p, frames)))
        for name, fn in rows:
            seconds, ratio = beside_copy(fn, copy, args.repeats, device)
            print(f"{name:32s} {seconds * 1e3:10.1f} {megapixels / seconds:10.1f} {ratio:15.2f}")
    if device.type == "cpu":
        eight_bit(args.frames, args.repeats, megapixels)


def eight_bit(count: int, repeats: int, megapixels: float) -> None:
    """8-bit HWC frames: each fused 8-bit path vs its float path, against a uint8 copy."""
    import numpy as np

    from campro_bench.protectors.fast_blur import defocus_uint8
    from campro_bench.protectors.isp import campro_isp, load_preset
    from campro_bench.protectors.isp_uint8 import campro_isp_uint8

    params = load_preset("casia-adv")
    frames = np.random.default_rng(0).integers(0, 256, (count, 1080, 1920, 3), dtype=np.uint8)
    cpu = torch.device("cpu")
    copy = frames.copy
    copy_s = median_seconds(copy, repeats, cpu)
    ccm, lut = params.ccm_tensor(), params.lut_tensor()
    defocus = Defocus(25, 7.0)

    def via_float(protect: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0)
            y = protect(x)
            return y.mul(255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()

    print(f"\n8-bit frames: {count}x1080x1920x3 uint8, load average {load_average()}")
    print(f"{'path':48s} {'ms/batch':>10s} {'MP/s':>10s} {'x copy time':>15s}")
    print(f"{'(uint8 copy: memory floor)':48s} {copy_s * 1e3:10.1f} {megapixels / copy_s:10.1f} {1.0:15.2f}")
    paths = (
        ("campro-isp:preset=casia-adv float path",
         lambda: via_float(lambda x: campro_isp(x, ccm, lut, params.degamma))),
        ("campro-isp:preset=casia-adv fused 8-bit", lambda: campro_isp_uint8(frames, params)),
        ("defocus:kernel=25,sigma=7 float path", lambda: via_float(defocus)),
        ("defocus:kernel=25,sigma=7 fused 8-bit", lambda: defocus_uint8(frames, 25, 7.0)),
    )
    for name, fn in paths:
        seconds, ratio = beside_copy(fn, copy, repeats, cpu)
        print(f"{name:48s} {seconds * 1e3:10.1f} {megapixels / seconds:10.1f} {ratio:15.2f}")


if __name__ == "__main__":
    main()
