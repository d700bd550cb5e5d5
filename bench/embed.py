"""Embedding throughput of the offline face recognisers: cold, warm and bare forward.

For each model, on the first ``--images`` LFW images (dataset order) and a fresh cache folder:

* ``first use``: building the model the first time (FaceNet-CASIA: graph conversion + the
  TensorFlow reference check), reported in seconds;
* ``detect+align``: MTCNN detection and ``arcface-112`` alignment (``aligned_crops``, cold cache);
* ``cold``: ``face_embeddings`` with detections cached: model load, alignment and embedding;
* ``warm``: the same call again (a cache hit: dataset scan + file reads only);
* ``forward``: the model's bare batched forward on random crops of its input size.

``--forward-only`` measures just the bare forward (no dataset, no cache), e.g. the PyTorch port
of dlib's ResNet against dlib itself.

``--paths`` compares, for the depthwise models (SFace, the two MobileFaceNets), the inference path
each ran before (``PREVIOUS_PATHS``) with the one it runs now, on real aligned LFW crops (the first
``--images`` LFW images of identities with two or more, through the cache of ``--cache-dir``), in
batches of ``--batch-size`` as the embedding pipeline calls them: the largest difference of their
unit embeddings, then images/s and GFLOP/s of each path, timed in alternation (``--rounds`` rounds,
medians) so that both see the same load on a shared machine.

Run::

    python bench/embed.py --images 256            # CPU, or the GPU when one is available
    python bench/embed.py --forward-only --models dlib-resnet dlib-resnet-native --threads 2
    python bench/embed.py --paths --threads 2 --cache-dir CACHE
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Callable

import pandas as pd
import torch

from campro_bench.datasets.faces import load_face_dataset
from campro_bench.faces import aligned_crops, face_embeddings
from campro_bench.recognizers.base import contract_of, create_face_recognizer

MODELS = ("facenet-casia", "dlib-resnet", "sface")
DEPTHWISE = ("sface", "mobilefacenet", "mobilefacenet-fp")


def _unfolded(net: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """MobileFaceNet as before: the network as built, batch norms run after their convolutions."""
    return lambda faces: torch.nn.functional.normalize(net.network(net.normalize(faces)), dim=1)


def _crop_by_crop(net: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """mobilefacenet-fp as before: the file's batch-1 graph, one ONNX Runtime call per crop."""
    from campro_bench.recognizers.onnx_generic import OnnxRecognizer
    from campro_bench.runtime import onnx_session

    return OnnxRecognizer(onnx_session(net.path), net.contract, net.weights_hash, net.path)


PREVIOUS_PATHS: dict[str, Callable[[torch.nn.Module], Callable[[torch.Tensor], torch.Tensor]]] = {
    "sface": lambda net: net,  # unchanged: ONNX Runtime, full graph optimisation, batch norms folded
    "mobilefacenet": _unfolded,
    "mobilefacenet-fp": _crop_by_crop,
}
"""model -> the path it ran before, built from the recogniser as it is built now."""


def compare_paths(model: str, crops: torch.Tensor, batch: int, rounds: int, cache: str) -> dict[str, object]:
    """Largest embedding difference and alternating-timed images/s of the previous and current path."""
    from floor import forward_flops  # bench/floor.py (it imports this module too)

    net = create_face_recognizer(model, cache_dir=cache)
    paths = {"before": PREVIOUS_PATHS[model](net), "after": net}
    chunks = [crops[k : k + batch] for k in range(0, len(crops), batch)]
    with torch.inference_mode():
        out = {name: torch.cat([fn(c) for c in chunks]) for name, fn in paths.items()}
        seconds: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(rounds):
            for name, fn in paths.items():
                start = time.perf_counter()
                for c in chunks:
                    fn(c)
                seconds[name].append(time.perf_counter() - start)
    gflop = forward_flops(model, net) / 1e9
    rate = {name: len(crops) / statistics.median(s) for name, s in seconds.items()}
    return {"model": model, "max abs diff": f"{(out['after'] - out['before']).abs().max().item():.1e}",
            "GFLOP / image": f"{gflop:.2f}", "before img/s": f"{rate['before']:.1f}",
            "after img/s": f"{rate['after']:.1f}", "before GFLOP/s": f"{rate['before'] * gflop:.1f}",
            "after GFLOP/s": f"{rate['after'] * gflop:.1f}", "speed-up": f"{rate['after'] / rate['before']:.2f}"}


def real_crops(images: int, data_root: str | None, cache: str | None) -> torch.Tensor:
    """``arcface-112`` crops (as the pipeline lays them out) of the first LFW images of identities
    with at least two images, where a face was found."""
    from campro_bench.faces.pipeline import select_items
    from campro_bench.io import uint8_to_tensor

    ds = load_face_dataset("lfw", data_root)
    items, _, _ = select_items(ds, 2, None)
    crops = aligned_crops(ds, "arcface-112", data_root=data_root, cache_dir=cache,
                          image_ids=[it.image_id for it in items[:images]])
    return uint8_to_tensor(crops.crops[crops.found])


def bare_forward(model: str, device: str, batch: int, repeats: int, cache: str) -> float:
    """Bare forward images/s of a freshly built ``model``."""
    net = create_face_recognizer(model, cache_dir=cache, device=device)
    return forward_rate(net, contract_of(model).input_size, device, batch, repeats)


def forward_rate(net: torch.nn.Module, size: tuple[int, int], device: str, batch: int, repeats: int) -> float:
    """Images/s of ``net`` on a random batch of ``size`` crops (after one warm-up call)."""
    h, w = size
    # laid out as the pipeline's crops are (uint8_to_tensor permutes H x W x 3 arrays): channels-last
    # strides, which oneDNN's CPU convolutions run up to 2x faster than contiguous N x 3 x H x W
    x = torch.rand(batch, h, w, 3, generator=torch.Generator().manual_seed(0)).permute(0, 3, 1, 2).to(device)
    with torch.inference_mode():
        net(x)  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            net(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - start)


def machine_line(args: argparse.Namespace, inputs: str) -> str:
    return (f"device {args.device}, {inputs}, batch {args.batch_size}, torch threads {torch.get_num_threads()}, "
            f"CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} "
            "(other processes share the CPUs when it exceeds their count)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--forward-only", action="store_true", help="only the bare forward rate of each model")
    parser.add_argument("--paths", action="store_true", help="previous vs current path of the depthwise models")
    parser.add_argument("--rounds", type=int, default=5, help="--paths: alternating timing rounds")
    parser.add_argument("--cache-dir", default=None, help="--paths: cache with (or for) the LFW crops")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.paths:
        crops = real_crops(args.images, args.data_root, args.cache_dir)
        load_before = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="campro-bench-embed-") as cache:
            rows = [compare_paths(m, crops, args.batch_size, args.rounds, args.cache_dir or cache)
                    for m in (args.models if args.models != list(MODELS) else DEPTHWISE)]
        print(machine_line(args, f"{len(crops)} real LFW crops, {args.rounds} alternating rounds")
              + f"; load average {load_before:.1f} at the start")
        print(pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True))  # formatted above
        return
    if args.forward_only:
        with tempfile.TemporaryDirectory(prefix="campro-bench-embed-") as cache:
            rows = [{"model": m, "forward img/s": bare_forward(m, args.device, args.batch_size, args.repeats, cache)}
                    for m in args.models]
        print(machine_line(args, "random crops"))
        print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f"))
        return

    ds = load_face_dataset("lfw", args.data_root)
    ids = [it.image_id for it in ds.items()[: args.images]]
    rows = []
    with tempfile.TemporaryDirectory(prefix="campro-bench-embed-") as cache:
        common = dict(data_root=args.data_root, cache_dir=cache, device=args.device, image_ids=ids)
        start = time.perf_counter()
        aligned_crops(ds, "arcface-112", **common)
        detect_rate = len(ids) / (time.perf_counter() - start)
        for model in args.models:
            start = time.perf_counter()
            create_face_recognizer(model, cache_dir=cache, device=args.device)
            first_use = time.perf_counter() - start
            start = time.perf_counter()
            face_embeddings(ds, model, batch_size=args.batch_size, **common)
            cold = len(ids) / (time.perf_counter() - start)
            start = time.perf_counter()
            face_embeddings(ds, model, batch_size=args.batch_size, **common)
            warm = len(ids) / (time.perf_counter() - start)
            forward = bare_forward(model, args.device, args.batch_size, args.repeats, cache)
            rows.append({"model": model, "alignment": contract_of(model).alignment, "first use s": first_use,
                         "forward img/s": forward,
                         "cold align+embed img/s": cold, "warm (cache hit) img/s": warm})
    print(machine_line(args, f"{len(ids)} LFW images"))
    print(f"MTCNN detect + arcface-112 align (cold cache): {detect_rate:.1f} img/s")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f"))


if __name__ == "__main__":
    main()
