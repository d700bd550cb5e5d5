"""Wall time of each audit rung on a fixed small set, and local vs Ray executors (not a timed test).

Usage::

    python bench/audit.py [--protector invert] [--eval-identities 10] [--train-identities 12] \
        [--images 3] [--model sface] [--fresh] [--out bench_audit.json]
    python bench/audit.py --executors [--protectors invert lowres:factor=8] [--workers 2] [--set KEY=VALUE ...]

Each rung runs alone (``rungs = [RUNG]``), in order, through the same runner as ``campro-bench audit``,
on the first ``--eval-identities`` identities of celeba-subset (``--images`` per identity) with one
model, 3 draws and the nearest classifier; restoration 4 steps (2 passes over 36 crops) and re-training 1 epoch on the
next ``--train-identities`` identities. Every rung also runs the raw reference (E1), so its time
includes that step. Caches are ``CAMPRO_BENCH_CACHE``'s (converted model weights, detections, crops;
a rung's own embeddings, restoration and re-training are cached too, so a second run is warm); with
``--fresh`` a new temporary cache is used (only the converted model weights, ``<cache>/models``, are
linked from ``CAMPRO_BENCH_CACHE``), so face detection, embedding and training are all timed cold.

``--executors`` instead runs the whole audit (every rung) of ``--protectors`` twice, back to back,
each from a fresh cache as above: ``--executor local``, then ``--executor ray`` on a private head on
127.0.0.1 with ``--workers`` CPUs (one task per CPU, one torch thread each; the head is started
before the clock). It prints both wall times with the load average before each, the ratio, and
whether the two ``audit.csv`` are equal at ``--tol 0`` (with the cells that differ). The local run
keeps torch's thread count (2 on the 2-core machine) while each Ray task has one thread, and the
float sums of the trainings follow the thread count, so the trained rungs may differ in the last
digits; ``--threads 1`` runs the local audit with one thread, as the Ray tasks. On a shared machine
only the ratio of the two runs means much.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from campro_bench import paths
from campro_bench.experiments.audit import RUNGS
from campro_bench.experiments.runner import run_experiment
from campro_bench.regress import regress_files


def fresh_cache(parent: str | None = None) -> str:
    """A new temporary cache (in ``parent``) sharing only the converted model weights of ``CAMPRO_BENCH_CACHE``."""
    cache = tempfile.mkdtemp(prefix="bench-audit-cache-", dir=parent)
    (Path(cache) / "models").symlink_to(paths.cache_dir() / "models", target_is_directory=True)
    return cache


def compare_executors(common: list[str], protectors: list[str], workers: int, threads: int = 0) -> dict:
    """The whole audit locally, then on Ray with ``workers`` CPUs, each cold; wall times, load, equality."""
    from campro_bench.executors import LOOPBACK_ENV, local_ray_head

    os.environ.update(LOOPBACK_ENV)  # before Ray is imported
    overrides = [*common, f"protectors={json.dumps(protectors)}"]
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        def timed(label: str, **executor: str) -> None:
            load = os.getloadavg()[0]
            start = time.perf_counter()
            run_experiment("audit", overrides=overrides, out=Path(tmp) / label, cache_dir=fresh_cache(tmp), quiet=True,
                           **executor)
            runs[label] = {"seconds": round(time.perf_counter() - start, 1), "load_before": round(load, 2)}
            print(f"{label:8s} {runs[label]['seconds']:8.1f} s (load average before: {load:.2f})", flush=True)

        if threads:
            torch.set_num_threads(threads)
        timed("local")
        with local_ray_head(num_cpus=workers) as address:
            timed("ray", executor="ray", address=address)
        report = regress_files(Path(tmp) / "ray" / "audit.csv", Path(tmp) / "local" / "audit.csv", tol=0.0)
    print("\n".join(report.lines()))
    return {"protectors": protectors, "workers": workers, "runs": runs, "audit_csv_equal_at_tol_0": report.ok,
            "audit_csv_regress": report.lines(), "speed_up": round(runs["local"]["seconds"] / runs["ray"]["seconds"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protector", default="invert")
    parser.add_argument("--eval-identities", type=int, default=10)
    parser.add_argument("--train-identities", type=int, default=12)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--model", default="sface")
    parser.add_argument("--fresh", action="store_true", help="a new temporary cache (cold start)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--executors", action="store_true", help="local vs Ray on the whole audit, both cold")
    parser.add_argument("--protectors", nargs="+", default=["invert", "lowres:factor=8"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads of the local run (0: torch's default)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="more protocol overrides")
    args = parser.parse_args()
    cache = fresh_cache() if args.fresh else None
    common = [f"eval_identities={args.eval_identities}",
              f"train_identities={args.train_identities}", f"max_images_per_identity={args.images}",
              f'models=["{args.model}"]', 'classifiers=["nearest"]', "repeats=3", "utility.psnr_images=0",
              "grid_faces=0", "restoration.steps=4", "retrain.epochs=1", "retrain.batch_size=8",
              # one schedule per rung, no SELECT scoring and no extra threat models: the rung's own cost
              "select_identities=0", "restoration.budgets=[1]", "retrain.budgets=[1]", 'threat_models=["closed-set"]',
              *args.overrides]
    if args.executors:
        report = {"eval_identities": args.eval_identities, "train_identities": args.train_identities,
                  "images_per_identity": args.images, "model": args.model,
                  **compare_executors(common, args.protectors, args.workers, args.threads),
                  "local_threads": args.threads or torch.get_num_threads()}
        if args.out:
            args.out.write_text(json.dumps(report, indent=2))
        print(json.dumps(report))
        return
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rung in RUNGS:
            start = time.perf_counter()
            run_experiment("audit", overrides=[*common, f"protectors={json.dumps([args.protector])}", f'rungs=["{rung}"]'],
                           out=Path(tmp) / rung,
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
