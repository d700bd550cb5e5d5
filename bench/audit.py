"""Wall time of each audit rung on a fixed small set (not a timed test).

Usage::

    python bench/audit.py [--protector invert] [--eval-identities 10] [--train-identities 12] \
        [--images 3] [--model sface] [--cache DIR] [--out bench_audit.json]

Each rung runs alone (``rungs = [RUNG]``), in order, through the same runner as ``campro-bench audit``,
on the first ``--eval-identities`` identities of celeba-subset (``--images`` per identity) with one
model, 3 draws and the nearest classifier; restoration 2 epochs and re-training 1 epoch on the
next ``--train-identities`` identities. Every rung also runs the raw reference (E1), so its time
includes that cached step. Caches are those of ``--cache`` (default: a fresh temporary folder, so
face detection and embedding are timed too; pass the shared cache to time warm reruns).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from campro_bench.experiments.audit import RUNGS
from campro_bench.experiments.runner import run_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protector", default="invert")
    parser.add_argument("--eval-identities", type=int, default=10)
    parser.add_argument("--train-identities", type=int, default=12)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--model", default="sface")
    parser.add_argument("--cache", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cache = args.cache or tempfile.mkdtemp(prefix="bench-audit-cache-")
    common = [f"protectors={json.dumps([args.protector])}", f"eval_identities={args.eval_identities}",
              f"train_identities={args.train_identities}", f"max_images_per_identity={args.images}",
              f'models=["{args.model}"]', 'classifiers=["nearest"]', "repeats=3", "utility.psnr_images=0",
              "grid_faces=0", "restoration.epochs=2", "retrain.epochs=1", "retrain.batch_size=8"]
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
              "cache": "fresh" if args.cache is None else args.cache, "seconds": timings}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
