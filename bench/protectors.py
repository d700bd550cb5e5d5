"""Protector throughput on 1920x1080 frames, beside the memory floor of a plain tensor copy.

Usage::

    python bench/protectors.py [--frames 4] [--repeats 5] [--device cpu] [--threads N]

For each protector the batch is processed ``repeats`` times after one warm-up; the median wall
time gives megapixels per second. The same batch is copied (``torch.clone``) in the same run:
a protector cannot beat that rate, so ``copy / protector`` says how far each one is from the
memory floor.

Then the CamPro ISP on 8-bit frames (``uint8 [N, 1080, 1920, 3]``, what a camera delivers) through
the fused 8-bit path (:mod:`campro_bench.protectors.isp_uint8`), beside a copy of the same 8-bit
frames and beside the float path on the same frames (convert to float, protect, round to 8 bits).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from campro_bench.protectors import build_protector

SPECS = (
    "raw",
    "invert",
    "lowres:factor=4",
    "lowres:factor=16",
    "defocus:kernel=9,sigma=3",
    "defocus:kernel=25,sigma=7",
    "campro-isp:preset=standard",
)


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()  # warm-up (allocations, kernel selection)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    frames = torch.rand(args.frames, 3, 1080, 1920, generator=torch.Generator().manual_seed(0)).to(device)
    megapixels = args.frames * 1080 * 1920 / 1e6

    copy_s = median_seconds(lambda: frames.clone(), args.repeats, device)
    copy_rate = megapixels / copy_s
    print(f"device={device} threads={torch.get_num_threads()} batch={args.frames}x3x1080x1920 float32")
    print(f"{'protector':32s} {'ms/batch':>10s} {'MP/s':>10s} {'x copy time':>15s}")
    print(f"{'(tensor copy: memory floor)':32s} {copy_s * 1e3:10.1f} {copy_rate:10.1f} {1.0:15.2f}")
    for spec in SPECS:
        protector = build_protector(spec).to(device).eval()

        def run() -> torch.Tensor:
            with torch.inference_mode():
                return protector(frames)

        seconds = median_seconds(run, args.repeats, device)
        rate = megapixels / seconds
        print(f"{spec:32s} {seconds * 1e3:10.1f} {rate:10.1f} {copy_rate / rate:15.2f}")
    if device.type == "cpu":
        eight_bit(args.frames, args.repeats, megapixels)


def eight_bit(count: int, repeats: int, megapixels: float) -> None:
    """The CamPro ISP on uint8 HWC frames: fused 8-bit path vs float path, against a uint8 copy."""
    import numpy as np

    from campro_bench.protectors.isp import campro_isp, load_preset
    from campro_bench.protectors.isp_uint8 import campro_isp_uint8

    params = load_preset("casia-adv")
    frames = np.random.default_rng(0).integers(0, 256, (count, 1080, 1920, 3), dtype=np.uint8)
    cpu = torch.device("cpu")
    copy_s = median_seconds(lambda: frames.copy(), repeats, cpu)
    ccm, lut = params.ccm_tensor(), params.lut_tensor()

    def float_path() -> np.ndarray:
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0)
        y = campro_isp(x, ccm, lut, params.degamma)
        return y.mul(255.0).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()

    print(f"\n8-bit frames: {count}x1080x1920x3 uint8, campro-isp:preset=casia-adv")
    print(f"{'path':32s} {'ms/batch':>10s} {'MP/s':>10s} {'x copy time':>15s}")
    print(f"{'(uint8 copy: memory floor)':32s} {copy_s * 1e3:10.1f} {megapixels / copy_s:10.1f} {1.0:15.2f}")
    for name, fn in (("float path (to float and back)", float_path),
                     ("fused 8-bit path", lambda: campro_isp_uint8(frames, params))):
        seconds = median_seconds(fn, repeats, cpu)
        print(f"{name:32s} {seconds * 1e3:10.1f} {megapixels / seconds:10.1f} {seconds / copy_s:15.2f}")


if __name__ == "__main__":
    main()
