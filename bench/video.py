"""CPU cost of the video pieces: video protectors on 64x64 clips and one classifier training step.

Usage::

    python bench/video.py [--clips 64] [--frames 8] [--size 64] [--repeats 3] [--threads 2]

Prints, after the load average, the median wall time of encoding ``clips`` clips with every video
protector (BDQ both with its soft quantiser, as in training, and with hard rounding, as at inference),
of one Adam step of the 3D CNN on a batch of 16 clips, and of the restoration attack's 3D U-Net
(default :class:`~campro_bench.video.restore.RestoreConfig`): one Adam step on 8 clip pairs and the
restoration of ``clips`` clips. Figures depend on the machine's load:
quote the load line with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable


def _median(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    from campro_bench.video.models import ClipNet
    from campro_bench.video.protectors import build_video_protector
    from campro_bench.video.restore import RestoreConfig, UNet3D, restore

    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()}; {args.threads} threads; {args.clips} clips of "
          f"{args.frames}x{args.size}x{args.size}")
    clips = torch.rand(args.clips, 3, args.frames, args.size, args.size)
    for spec in ("raw", "lowres:factor=8", "blur:sigma=2", "diff", "bdq"):
        protector = build_video_protector(spec)
        modes = [("eval", False)] + ([("train (soft)", True)] if spec == "bdq" else [])
        for mode, training in modes:
            protector.train(training)
            with torch.no_grad():
                seconds = _median(lambda: protector(clips), args.repeats)
            print(f"{spec:18s} {mode:13s} {seconds * 1000:9.1f} ms  ({args.clips / seconds:8.1f} clips/s)")
    model = ClipNet(9)
    optimiser = torch.optim.Adam(model.parameters())
    batch, labels = clips[:16], torch.zeros(16, dtype=torch.long)

    def step() -> None:
        loss = F.cross_entropy(model(batch), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    print(f"ClipNet Adam step (16 clips) {_median(step, args.repeats) * 1000:9.1f} ms")
    config = RestoreConfig()
    unet = UNet3D(3, 3, config.width, config.depth, config.fold)
    unet_optimiser = torch.optim.Adam(unet.parameters(), lr=config.lr)
    pairs = clips[:config.batch_size]

    def unet_step() -> None:
        loss = (unet(pairs) - pairs).abs().mean()
        unet_optimiser.zero_grad()
        loss.backward()
        unet_optimiser.step()

    print(f"3D U-Net Adam step ({config.batch_size} clips) {_median(unet_step, args.repeats) * 1000:9.1f} ms")
    print(f"3D U-Net restore ({args.clips} clips) {_median(lambda: restore(unet, clips), args.repeats) * 1000:9.1f} ms")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
