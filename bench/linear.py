"""The linear classifier's stage of the main job: the former 100-step schedule vs the converged solver.

The main job (``protocols/e1.toml``) fits the linear classifier once per (dataset, model, gallery):
a raw gallery plus one re-enrolled gallery per protector, i.e. 6 fits per model, each over 10
draws at once. LFW has 1,680 identities, CelebA-subset 299; two models give 512-d features
(the FaceNets) and four 128-d ones. This script times one fit of each shape with both solvers, in
one run, on **synthetic** unit features of that shape (no dataset or model is involved):

* ``clean`` galleries: identities around random centres with a shared mean direction (like raw
  face embeddings: mean cosine between identities about 0.3, two images of one person about 0.7);
* ``noisy`` galleries: the same with more noise per image (like a protector's re-enrolled gallery,
  where two images of one person agree less).

It prints, per shape and solver, the seconds of one fit, the L-BFGS iterations per draw and whether
every draw converged, then the stage total projected to the main job's cells (6 fits per model,
every fit counted at the slower of the two geometries, so the converged solver's total is an upper
bound: its cost depends on the data, the former schedule's does not). Wall times on a shared
machine vary with its load, so the old/new ratio within this run is the figure to quote.

Run::

    python bench/linear.py [--threads 2] [--repeats 10]
"""

from __future__ import annotations

import argparse
import time

import torch

from campro_bench.privacy.classifiers import LinearConfig, l2_normalize, train_linear

MAIN_JOB = {"lfw": 1680, "celeba-subset": 299}  # identities with >= 2 images
MODELS_BY_DIM = {512: 2, 128: 4}  # facenet-casia, facenet-msceleb | dlib-resnet, sface, mobilefacenet(-fp)
FITS_PER_MODEL = 6  # raw gallery + 5 re-enrolled galleries (one per protector)
NOISE = {"clean": 0.9, "noisy": 1.4}


def gallery(identities: int, dim: int, repeats: int, noise: float, seed: int = 0) -> torch.Tensor:
    """``[R, C, D]`` unit features: a shared direction plus a centre per identity plus per-image noise."""
    gen = torch.Generator().manual_seed(seed)
    common, centres = torch.randn(dim, generator=gen), torch.randn(identities, dim, generator=gen)
    return l2_normalize(0.8 * common + centres + noise * torch.randn(repeats, identities, dim, generator=gen))


def timed_fit(g: torch.Tensor, config: LinearConfig) -> tuple[float, list[int], bool]:
    valid = torch.ones(g.shape[:2], dtype=torch.bool)
    start = time.perf_counter()
    fit = train_linear(g, valid, config)
    return time.perf_counter() - start, fit.iterations, all(fit.converged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10, help="draws per fit (the main job: 10)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    solvers = {"sgd-100": LinearConfig(solver="sgd-100"), "lbfgs": LinearConfig()}
    print(f"threads={torch.get_num_threads()} repeats={args.repeats}; synthetic unit features; "
          f"lbfgs tol={solvers['lbfgs'].tol}")
    print(f"{'dataset':>14s} {'dim':>4s} {'gallery':>8s} {'solver':>8s} {'fit s':>8s} {'converged':>9s}  iterations")
    worst: dict[tuple[str, int, str], float] = {}
    for dataset, identities in MAIN_JOB.items():
        for dim in MODELS_BY_DIM:
            for kind, noise in NOISE.items():
                g = gallery(identities, dim, args.repeats, noise)
                for name, config in solvers.items():
                    if name == "sgd-100" and kind == "noisy":
                        continue  # a fixed schedule: its cost does not depend on the data
                    seconds, iterations, converged = timed_fit(g, config)
                    key = (dataset, dim, name)
                    worst[key] = max(worst.get(key, 0.0), seconds)
                    print(f"{dataset:>14s} {dim:4d} {kind:>8s} {name:>8s} {seconds:8.2f} {str(converged):>9s}  "
                          f"{iterations}")
    print("projected linear stage of the main job (6 fits per model, each at the slower geometry):")
    totals = {}
    for name in solvers:
        totals[name] = sum(FITS_PER_MODEL * count * worst[(dataset, dim, name)]
                           for dataset in MAIN_JOB for dim, count in MODELS_BY_DIM.items())
        print(f"  {name:>8s}: {totals[name]:8.1f} s")
    print(f"  ratio sgd-100 / lbfgs: {totals['sgd-100'] / totals['lbfgs']:.2f}")


if __name__ == "__main__":
    main()
