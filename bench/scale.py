"""Speed-up of E1 cells on Ray workers: 1 worker vs 2 workers on this machine, against local.

Usage::

    python bench/scale.py --data-root DIR [--cache-dir DIR] [--identities 30] [--set KEY=VALUE ...]

Runs ``campro-bench run e1 --protocol e1_ci`` restricted to its first ``--identities`` identities
three times, each from an empty embedding cache (only converted model files are copied from
``--cache-dir``, so no run pays for model conversion): in this process (``--executor local``), and
through a private Ray head on 127.0.0.1 with 1 and with 2 CPUs (one CPU per task, one torch thread
per task). It prints wall times, the speed-up of 2 workers over 1, and whether every run's
``e1.csv`` equals the local one at ``--tol 0``. Measure on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from campro_bench import paths
from campro_bench.executors import local_ray_head
from campro_bench.experiments.runner import run_experiment
from campro_bench.regress import regress_files


def timed_run(label: str, work: Path, models_cache: Path, overrides: list[str], data_root: str | None,
              executor: str = "local", address: str | None = None) -> tuple[float, Path]:
    cache = work / f"cache-{label}"
    cache.mkdir()
    if models_cache.is_dir():
        shutil.copytree(models_cache, cache / "models")
    start = time.perf_counter()
    out, _ = run_experiment("e1", protocol="e1_ci", overrides=overrides, out=work / label, data_root=data_root,
                            cache_dir=str(cache), device="cpu", quiet=True, executor=executor, address=address)
    return time.perf_counter() - start, out / "e1.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--cache-dir", default=None, help="where converted models are cached (copied, not written)")
    parser.add_argument("--identities", type=int, default=30)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    overrides = [f"max_identities={args.identities}", *args.overrides]
    models_cache = paths.cache_dir(args.cache_dir) / "models"
    rows = []
    with tempfile.TemporaryDirectory(prefix="campro-scale-") as tmp:
        work = Path(tmp)
        local_s, local_csv = timed_run("local", work, models_cache, overrides, args.data_root)
        rows.append(("local (in process)", 1, local_s, True))
        for cpus in (1, 2):
            with local_ray_head(num_cpus=cpus) as address:
                seconds, csv = timed_run(f"ray{cpus}", work, models_cache, overrides, args.data_root, "ray", address)
            rows.append((f"ray, {cpus} worker(s)", cpus, seconds, regress_files(csv, local_csv, tol=0.0).ok))
    print("| executor | workers | wall s | e1.csv equal to local (--tol 0) |")
    print("|---|---:|---:|---|")
    for label, workers, seconds, equal in rows:
        print(f"| {label} | {workers} | {seconds:.1f} | {'yes' if equal else 'NO'} |")
    print(f"\nspeed-up of 2 Ray workers over 1: {rows[1][2] / rows[2][2]:.2f}x")


if __name__ == "__main__":
    main()
