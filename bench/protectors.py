"""Protector throughput on 1920x1080 frames, beside the memory floor of a plain tensor copy.

Usage::

    python bench/protectors.py [--frames 4] [--repeats 5] [--device cpu] [--threads N]

For each protector the batch is processed ``repeats`` times after one warm-up; the median wall
time gives megapixels per second. The same batch is copied (``torch.clone``) in the same run:
a protector cannot beat that rate, so ``copy / protector`` says how far each one is from the
memory floor.
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


if __name__ == "__main__":
    main()
