"""GPU throughput in one command: the full E1 (``protocols/e1.toml``) and one ISP training job.

Usage (on a machine with a CUDA GPU and the data root)::

    python bench/gpu.py --data-root DIR [--device cuda] [--iterations 100] [--keep DIR]

1. ``campro-bench run e1 --device cuda`` from an empty cache (converted model files are copied from
   the default cache when present, so the run does not time model conversion), then again warm;
   reports wall time and face embeddings per second (images embedded x image types x models over
   the embedding stage's time, from the run manifest). The goal stated in issue 13: the cold full
   E1 in under 5 minutes on one H100-class GPU.
2. ``campro-bench train isp --device cuda`` for ``--iterations`` iterations (Algorithm 1 against
   facenet-casia) into a fresh folder; reports wall time and seconds per iteration.

Everything runs through the command line, exactly as a user would run it, and the printed table is
what to paste into the README with the machine it was measured on. Without CUDA it stops with one
line (use ``--device cpu`` to time the same steps on the CPU).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from campro_bench import paths


def campro(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "campro_bench.cli.main", *args], check=True)
    return time.perf_counter() - start


def embedding_rate(manifest: dict) -> tuple[int, float]:
    embedded = sum(v.get("images_embedded", 0) for v in manifest["notes"]["embeddings"].values())
    return embedded, embedded / max(manifest["timings_s"].get("embedding", 0.0), 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--keep", type=Path, default=None, help="keep outputs here instead of a temporary folder")
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            sys.exit("error: no CUDA GPU here; pass --device cpu to time the same steps on the CPU")
    root = ["--data-root", args.data_root] if args.data_root else []
    work = args.keep or Path(tempfile.mkdtemp(prefix="campro-gpu-"))
    cache = work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    if (paths.cache_dir() / "models").is_dir() and not (cache / "models").exists():
        shutil.copytree(paths.cache_dir() / "models", cache / "models")
    rows = []
    for label in ("cold", "warm"):
        out = work / f"e1-{label}"
        seconds = campro("run", "e1", "--device", args.device, "--cache-dir", str(cache), "--out", str(out),
                         "--quiet", *root)
        manifest = json.loads((out / "manifest.json").read_text())
        embedded, rate = embedding_rate(manifest)
        rows.append((f"full E1 ({label})", seconds, f"{embedded} face embeddings, {rate:.0f}/s in the embedding stage"))
    seconds = campro("train", "isp", "--device", args.device, "--iterations", str(args.iterations),
                     "--cache-dir", str(cache), "--out", str(work / "isp"), *root)
    rows.append((f"train isp, {args.iterations} iterations", seconds, f"{seconds / args.iterations:.2f} s per iteration "
                 "(including data preparation and warm-up)"))
    print(f"\n| job ({args.device}) | wall s | throughput |")
    print("|---|---:|---|")
    for label, secs, note in rows:
        print(f"| {label} | {secs:.1f} | {note} |")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
