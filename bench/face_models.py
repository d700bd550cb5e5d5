"""Size, checkpoint load time and CPU throughput of the official-checkpoint face recognisers.

Usage::

    python bench/face_models.py [--models facenet,arc18,...] [--batch 8] [--repeats 3] [--threads N]

For each model the network is built with random weights, its state dict is saved as a raw
checkpoint in a temporary folder and loaded back through the same strict loader the factories use
(``load_official_checkpoint``); then embeddings of ``batch`` random aligned crops are computed
``repeats`` times after one warm-up (``torch.inference_mode``), and once more with gradients to the
input (the white-box attacker's cost). Medians are reported. No real weights are needed: speed does
not depend on the values.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from campro_bench.recognizers.official import PAPER_MODELS, OfficialRecognizer, official_model
from campro_bench.recognizers.weights import load_official_checkpoint


def bench_model(name: str, batch: int, repeats: int, folder: Path) -> dict[str, float]:
    spec = official_model(name)
    network = spec.build().eval()
    path = folder / f"{name}.pth"
    torch.save(network.state_dict(), path)
    start = time.perf_counter()
    loaded = load_official_checkpoint(spec.build(), path, spec.architecture, spec.prefixes, spec.ignore)
    load_s = time.perf_counter() - start
    model = OfficialRecognizer(loaded, spec.contract, "bench", path).eval()
    faces = torch.rand(batch, 3, *spec.contract.input_size)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            start = time.perf_counter()
            model(faces)
            if i:
                times.append(time.perf_counter() - start)
    grad_faces = faces.clone().requires_grad_(True)
    start = time.perf_counter()
    model(grad_faces).sum().backward()
    grad_s = time.perf_counter() - start
    forward_s = statistics.median(times)
    return {
        "params_m": sum(p.numel() for p in loaded.parameters()) / 1e6,
        "file_mb": path.stat().st_size / 2**20,
        "load_s": load_s,
        "faces_per_s": batch / forward_s,
        "grad_faces_per_s": batch / grad_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(PAPER_MODELS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, CPU")
    print(f"{'model':<16}{'params (M)':>11}{'file (MB)':>10}{'load (s)':>9}{'faces/s':>9}{'faces/s +grad':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            r = bench_model(name, args.batch, args.repeats, Path(tmp))
            print(f"{name:<16}{r['params_m']:>11.1f}{r['file_mb']:>10.0f}{r['load_s']:>9.2f}"
                  f"{r['faces_per_s']:>9.1f}{r['grad_faces_per_s']:>14.1f}", flush=True)
            (Path(tmp) / f"{name}.pth").unlink()


if __name__ == "__main__":
    main()
