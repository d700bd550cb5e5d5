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

Run::

    python bench/embed.py --images 256            # CPU, or the GPU when one is available
    python bench/embed.py --forward-only --models dlib-resnet dlib-resnet-native --threads 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import pandas as pd
import torch

from campro_bench.datasets.faces import load_face_dataset
from campro_bench.faces import aligned_crops, face_embeddings
from campro_bench.recognizers.base import contract_of, create_face_recognizer

MODELS = ("facenet-casia", "dlib-resnet", "sface")


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
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
