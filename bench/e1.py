"""E1 wall time, cold (empty cache) and warm (everything cached), and where the cold time goes.

Usage::

    python bench/e1.py --data-root DIR [--cache-dir DIR] [--device cpu] [--set KEY=VALUE ...]
    python bench/e1.py --synthetic [--device cpu]

Runs ``campro-bench run e1`` on full LFW (``datasets=["lfw"]`` plus any ``--set`` overrides, e.g.
``--set max_identities=100`` for a quick look) twice against the same cache folder: the first run
("cold", the folder must be empty unless ``--allow-warm-cache``) detects, aligns, protects and
embeds every image and trains the linear classifiers; the second ("warm") only reads caches. From
the cold run's manifest it prints the stage timings (embedding vs protocol) and the share of the
cold run spent in model forward passes, estimated as (images embedded x the model's bare batched
forward time per image, measured in this run on random crops of its input size). The share is
given in process CPU time, which other jobs on a shared machine disturb far less than wall time.

``--synthetic`` times only the protocol (splits, nearest, linear) at full-LFW scale -- 9,164
images of 1,680 identities, 10 repeats, 128-d and 512-d features -- on random clustered arrays,
with no dataset or model involved.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import numpy as np

from campro_bench.experiments.runner import run_experiment
from campro_bench.privacy import FeatureSet, build_classifier, identify_many, sample_splits
from campro_bench.recognizers.base import contract_of, create_face_recognizer


def forward_seconds_per_image(model: str, device: torch.device, cache_dir: Path, batch: int = 64,
                              repeats: int = 3) -> tuple[float, float]:
    """Median (wall, process CPU) seconds per image of a bare batched forward pass (no detection,
    alignment or I/O)."""
    contract = contract_of(model)
    net = create_face_recognizer(model, None, cache_dir, device).eval()
    x = torch.rand(batch, 3, *contract.input_size, generator=torch.Generator().manual_seed(0)).to(device)
    wall, cpu = [], []
    with torch.inference_mode():
        net(x)  # warm-up
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, start_cpu = time.perf_counter(), time.process_time()
            net(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return sorted(wall)[repeats // 2] / batch, sorted(cpu)[repeats // 2] / batch


def timed_run(overrides: list[str], out: Path, args: argparse.Namespace,
              cache: Path) -> tuple[float, float, dict]:
    """(wall s, process CPU s, manifest) of one ``run e1``."""
    start, start_cpu = time.perf_counter(), time.process_time()
    folder, _ = run_experiment("e1", overrides=overrides, out=out, data_root=args.data_root,
                               cache_dir=str(cache), device=args.device, quiet=True, overwrite=True)
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return wall, cpu, json.loads((folder / "manifest.json").read_text())


def synthetic_protocol(device: torch.device, repeats: int = 10) -> None:
    """Protocol-only timings on LFW-shaped random arrays (labels as in LFW's >= 2-image subset)."""
    rng = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, 1681) ** 1.2  # a few identities with many images, most with 2-3
    counts = 2 + rng.multinomial(9164 - 2 * 1680, weights / weights.sum())
    labels = np.repeat(np.arange(1680), counts)
    start = time.perf_counter()
    splits = sample_splits(labels, repeats=repeats, seed=0)
    split_s = time.perf_counter() - start
    print(f"device={device} threads={torch.get_num_threads()} images={labels.size} identities=1680 "
          f"repeats={repeats}; splits: {split_s * 1e3:.1f} ms")
    print(f"{'dim':>5s} {'classifier':>10s} {'1 probe set s':>14s} {'4 probe sets s':>15s}")
    for dim in (128, 512):
        centres = rng.normal(size=(1680, dim)).astype(np.float32)
        x = centres[labels] + 1.5 * rng.normal(size=(labels.size, dim)).astype(np.float32) / np.sqrt(dim)
        gallery = FeatureSet(x, np.ones(labels.size, bool))
        probes = {f"p{k}": FeatureSet(x + k * 0.1, np.ones(labels.size, bool)) for k in range(4)}
        for name in ("nearest", "linear"):
            row = []
            for subset in ({"p0": probes["p0"]}, probes):
                start = time.perf_counter()
                identify_many(build_classifier(name), gallery, subset, splits, device=device)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                row.append(time.perf_counter() - start)
            print(f"{dim:5d} {name:>10s} {row[0]:14.3f} {row[1]:15.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="default $CAMPRO_BENCH_DATA")
    parser.add_argument("--cache-dir", default=None, help="default: a new temporary folder (a true cold run)")
    parser.add_argument("--allow-warm-cache", action="store_true", help="accept a non-empty --cache-dir")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra protocol override")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "campro-bench-e1")
    parser.add_argument("--synthetic", action="store_true", help="time the protocol alone at full-LFW scale")
    args = parser.parse_args()
    if args.synthetic:
        synthetic_protocol(torch.device(args.device))
        return
    cache = Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="campro-bench-e1-cache-"))
    if cache.exists() and any(cache.iterdir()) and not args.allow_warm_cache:
        parser.error(f"{cache} is not empty: a cold run needs an empty cache (or pass --allow-warm-cache)")
    overrides = ['datasets=["lfw"]', *args.overrides]
    device = torch.device(args.device)

    cold_s, cold_cpu, cold = timed_run(overrides, args.out / "cold", args, cache)
    warm_s, warm_cpu, warm = timed_run(overrides, args.out / "warm", args, cache)

    spec = cold["spec"]
    embedded: dict[str, int] = {}
    for key, info in cold["notes"]["embeddings"].items():
        model = key.split("|")[1]
        embedded[model] = embedded.get(model, 0) + int(info["provenance"].get("images", 0))
    per_image = {m: forward_seconds_per_image(m, device, cache) for m in embedded}

    print(f"device={device} threads={torch.get_num_threads()} models={spec['models']} "
          f"protectors={spec['protectors']} galleries={spec['galleries']} repeats={spec['repeats']} "
          f"identities={cold['seeds']['splits/lfw']['identities']}")
    stages = list(cold["timings_s"])
    print(f"{'run':6s} {'wall s':>9s} {'cpu s':>9s} " + " ".join(f"{k:>17s}" for k in stages))
    for name, wall, cpu, manifest in (("cold", cold_s, cold_cpu, cold), ("warm", warm_s, warm_cpu, warm)):
        timings = manifest["timings_s"]
        print(f"{name:6s} {wall:9.1f} {cpu:9.1f} " + " ".join(f"{timings.get(k, 0.0):17.2f}" for k in stages))
    print("model forward passes in the cold run (images x bare batched forward time per image):")
    forward_cpu = 0.0
    for model, n in embedded.items():
        wall, cpu = per_image[model]
        forward_cpu += n * cpu
        print(f"  {model:16s} {n:7d} images  {1 / wall:7.1f} img/s wall  {n * cpu:8.1f} cpu s")
    print(f"  share of the cold run's CPU time in forward passes: {forward_cpu / cold_cpu:.1%}; "
          f"embedding stage share of its wall time: {cold['timings_s'].get('embedding', 0.0) / cold_s:.1%}")


if __name__ == "__main__":
    main()
