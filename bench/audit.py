"""Wall time of each audit rung on a fixed small set (not a timed test).

Usage::

    python bench/audit.py [--protector invert] [--eval-identities 10] [--train-identities 12] \
        [--images 3] [--model sface] [--fresh] [--out bench_audit.json]

Each rung runs alone (``rungs = [RUNG]``), in order, through the same runner as ``campro-bench audit``,
on the first ``--eval-identities`` identities of celeba-subset (``--images`` per identity) with one
model, 3 draws and the nearest classifier; restoration 4 steps (2 passes over 36 crops) and re-training 1 epoch on the
next ``--train-identities`` identities. Every rung also runs the raw reference (E1), so its time
includes that step. Caches are ``CAMPRO_BENCH_CACHE``'s (converted model weights, detections, crops;
a rung's own embeddings, restoration and re-training are cached too, so a second run is warm); with
``--fresh`` a new temporary cache is used (only the converted model weights, ``<cache>/models``, are
linked from ``CAMPRO_BENCH_CACHE``), so face detection, embedding and training are all timed cold.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from campro_bench import paths
from campro_bench.experiments.audit import RUNGS
from campro_bench.experiments.runner import run_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protector", default="invert")
    parser.add_argument("--eval-identities", type=int, default=10)
    parser.add_argument("--train-identities", type=int, default=12)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--model", default="sface")
    parser.add_argument("--fresh", action="store_true", help="a new temporary cache (cold start)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cache = None
    if args.fresh:
        cache = tempfile.mkdtemp(prefix="bench-audit-cache-")
        (Path(cache) / "models").symlink_to(paths.cache_dir() / "models", target_is_directory=True)
    common = [f"protectors={json.dumps([args.protector])}", f"eval_identities={args.eval_identities}",
              f"train_identities={args.train_identities}", f"max_images_per_identity={args.images}",
              f'models=["{args.model}"]', 'classifiers=["nearest"]', "repeats=3", "utility.psnr_images=0",
              "grid_faces=0", "restoration.steps=4", "retrain.epochs=1", "retrain.batch_size=8",
              # one schedule per rung, no SELECT scoring and no extra threat models: the rung's own cost
              "select_identities=0", "restoration.budgets=[1]", "retrain.budgets=[1]", 'threat_models=["closed-set"]']
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rung in RUNGS:
            start = time.perf_counter()
            run_experiment("audit", overrides=[*common, f'rungs=["{rung}"]'], out=Path(tmp) / rung,
                           cache_dir=cache, quiet=True)
            timings[rung] = round(time.perf_counter() - start, 2)
            print(f"{rung:12s} {timings[rung]:8.1f} s", flush=True)
    report = {"protector": args.protector, "eval_identities": args.eval_identities,
              "train_identities": args.train_identities, "images_per_identity": args.images, "model": args.model,
              "cache": "fresh" if args.fresh else "CAMPRO_BENCH_CACHE", "seconds": timings}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
