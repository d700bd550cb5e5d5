"""E1 wall time, cold (empty cache) and warm (everything cached), and where the cold time goes.

Usage::

    python bench/e1.py --data-root DIR [--cache-dir DIR] [--device cpu] [--set KEY=VALUE ...]

Runs ``campro-bench run e1`` on full LFW (``datasets=["lfw"]`` plus any ``--set`` overrides, e.g.
``--set max_identities=100`` for a quick look) twice against the same cache folder: the first run
("cold", the folder must be empty unless ``--allow-warm-cache``) detects, aligns, protects and
embeds every image and trains the linear classifiers; the second ("warm") only reads caches. From
the cold run's manifest it prints the stage timings (embedding vs protocol) and the share of time
spent in model forward passes, estimated as (images embedded x the model's bare batched forward
time per image, measured in this run on random crops of its input size).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from campro_bench.experiments.runner import run_experiment
from campro_bench.recognizers.base import contract_of, create_face_recognizer


def forward_seconds_per_image(model: str, device: torch.device, cache_dir: Path, batch: int = 64,
                              repeats: int = 3) -> float:
    """Median seconds per image of a bare batched forward pass (no detection, alignment, I/O)."""
    contract = contract_of(model)
    net = create_face_recognizer(model, None, cache_dir, device).eval()
    x = torch.rand(batch, 3, *contract.input_size, generator=torch.Generator().manual_seed(0)).to(device)
    times = []
    with torch.inference_mode():
        net(x)  # warm-up
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            net(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] / batch


def timed_run(overrides: list[str], out: Path, args: argparse.Namespace, cache: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    folder, _ = run_experiment("e1", overrides=overrides, out=out, data_root=args.data_root,
                               cache_dir=str(cache), device=args.device, quiet=True, overwrite=True)
    seconds = time.perf_counter() - start
    return seconds, json.loads((folder / "manifest.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="default $CAMPRO_BENCH_DATA")
    parser.add_argument("--cache-dir", default=None, help="default: a new temporary folder (a true cold run)")
    parser.add_argument("--allow-warm-cache", action="store_true", help="accept a non-empty --cache-dir")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra protocol override")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "campro-bench-e1")
    args = parser.parse_args()
    cache = Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="campro-bench-e1-cache-"))
    if cache.exists() and any(cache.iterdir()) and not args.allow_warm_cache:
        parser.error(f"{cache} is not empty: a cold run needs an empty cache (or pass --allow-warm-cache)")
    overrides = ['datasets=["lfw"]', *args.overrides]
    device = torch.device(args.device)

    cold_s, cold = timed_run(overrides, args.out / "cold", args, cache)
    warm_s, warm = timed_run(overrides, args.out / "warm", args, cache)

    spec = cold["spec"]
    embedded: dict[str, int] = {}
    for key, info in cold["notes"]["embeddings"].items():
        model = key.split("|")[1]
        embedded[model] = embedded.get(model, 0) + int(info["provenance"].get("images", 0))
    forward = {m: n * forward_seconds_per_image(m, device, cache) for m, n in embedded.items()}

    print(f"device={device} threads={torch.get_num_threads()} models={spec['models']} "
          f"protectors={spec['protectors']} galleries={spec['galleries']} repeats={spec['repeats']} "
          f"identities={cold['seeds']['splits/lfw']['identities']}")
    print(f"{'run':6s} {'wall s':>9s} " + " ".join(f"{k:>18s}" for k in cold["timings_s"]))
    for name, seconds, manifest in (("cold", cold_s, cold), ("warm", warm_s, warm)):
        timings = manifest["timings_s"]
        print(f"{name:6s} {seconds:9.1f} " + " ".join(f"{timings.get(k, 0.0):18.2f}" for k in cold["timings_s"]))
    total_forward = sum(forward.values())
    print("model forward passes in the cold run (estimated: images x bare forward s/image):")
    for model, seconds in forward.items():
        print(f"  {model:16s} {embedded[model]:7d} images  {seconds:8.1f} s")
    print(f"  share of cold wall time in forward passes: {total_forward / cold_s:.1%}; "
          f"embedding stage share: {cold['timings_s'].get('embedding', 0.0) / cold_s:.1%}")


if __name__ == "__main__":
    main()
