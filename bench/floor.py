"""How close the main job's heavy stages run to this CPU's arithmetic floor.

The cold main job (``bash run.sh``: E1 of ``protocols/e1.toml``) is dominated by two kinds of
arithmetic: the recognisers' forward passes and the linear classifier's 100 full-batch steps. This
script measures, on the machine it runs on:

* the float32 matrix-multiply rate (``torch.mm`` of 2048 x 2048 matrices, median of the repeats);
  oneDNN's convolutions can exceed it, so the reference ceiling is the best rate any row reached;
* per model: the convolution + matrix FLOPs of one forward pass (torch's ``FlopCounterMode`` for
  torch models, the ONNX graph's Conv/Gemm/MatMul shapes for ONNX Runtime models), the bare
  forward rate on crops laid out as the pipeline lays them out, and the share of that ceiling;
* the linear classifier: FLOPs of one step (``4 R C^2 D``) and its measured time, for LFW's gallery
  size (``C`` = 1,680 identities, ``R`` = 10 draws) at 512 and 128 dimensions.

From the per-image FLOPs and the counts the main job prints (images x image types x models), the
floor of the main job is its FLOPs divided by that ceiling: what no float32 implementation on this
CPU is seen to beat. ``docs/scaling.md`` has the worked numbers.

Run::

    python bench/floor.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import onnx
import pandas as pd
import torch
from onnx import numpy_helper, shape_inference
from torch.utils.flop_counter import FlopCounterMode

from campro_bench.privacy.classifiers import LinearConfig, train_linear
from campro_bench.recognizers import sface
from campro_bench.recognizers.base import contract_of, create_face_recognizer
from campro_bench.runtime import prepare_onnx
from embed import forward_rate  # bench/embed.py: the same bare-forward measurement

MODELS = ("facenet-casia", "facenet-msceleb", "dlib-resnet", "sface", "mobilefacenet", "mobilefacenet-fp")


def matmul_peak(repeats: int, size: int = 2048) -> float:
    """Median float32 GFLOP/s of ``torch.mm`` on two ``size`` x ``size`` matrices."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(size, size, generator=gen), torch.rand(size, size, generator=gen)
    torch.mm(a, b)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def _onnx_flops(model: Any, height: int, width: int) -> float:
    """Conv + Gemm + MatMul FLOPs of one image through an ONNX graph (shapes by ONNX inference)."""
    graph_input = next(i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer})
    dims = graph_input.type.tensor_type.shape.dim
    for dim, value in zip(dims, (1, 3, height, width)):
        dim.ClearField("dim_param")
        dim.dim_value = value
    inferred = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    weights = {t.name: list(numpy_helper.to_array(t).shape) for t in model.graph.initializer}
    flops = 0.0
    for node in inferred.graph.node:
        out = shapes.get(node.output[0])
        kernel_shape = weights.get(node.input[1]) or shapes.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type == "Conv" and out and kernel_shape:  # weights: initializers or reshaped ones
            _, cin_per_group, *kernel = kernel_shape
            flops += 2 * float(np.prod(out)) * cin_per_group * float(np.prod(kernel))
        elif node.op_type in ("Gemm", "MatMul") and out:
            k = shapes.get(node.input[0], weights.get(node.input[0], [0]))[-1]
            flops += 2 * float(np.prod(out)) * k
    return flops


def forward_flops(name: str, net: torch.nn.Module) -> float:
    """FLOPs of one forward pass of one crop."""
    h, w = contract_of(name).input_size
    if next(net.parameters(), None) is not None:
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            net(torch.rand(1, 3, h, w))
        return float(counter.get_total_flops())
    if name == "sface":
        model = onnx.load_from_string(prepare_onnx(sface.WEIGHTS.path()))
    else:
        model = onnx.load(str(net.path))  # an OnnxRecognizer
    return _onnx_flops(model, h, w)


def linear_step(classes: int, dim: int, reps: int) -> float:
    """Seconds per full-batch step of the linear classifier's former schedule (``sgd-100``: 100 steps;
    ``reps`` draws, ``classes`` identities); bench/linear.py times the converged solver against it."""
    gen = torch.Generator().manual_seed(0)
    gallery = torch.randn(reps, classes, dim, generator=gen)
    valid = torch.ones(reps, classes, dtype=torch.bool)
    start = time.perf_counter()
    train_linear(gallery, valid, LinearConfig(solver="sgd-100"))
    return (time.perf_counter() - start) / 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    mm_rate = matmul_peak(max(5, args.repeats))
    rows = []
    with tempfile.TemporaryDirectory(prefix="campro-bench-floor-") as cache:
        for name in args.models:
            net = create_face_recognizer(name, cache_dir=cache)
            flops = forward_flops(name, net)
            rate = forward_rate(net, contract_of(name).input_size, "cpu", args.batch_size, args.repeats)
            rows.append({"model": name, "GFLOP / image": flops / 1e9, "forward img/s": rate, "GFLOP/s": rate * flops / 1e9})
    lin = []
    for dim in (512, 128):
        seconds = linear_step(1680, dim, 10)
        flops = 4 * 10 * 1680**2 * dim
        lin.append({"linear classifier (LFW: C 1680, R 10)": f"D = {dim}", "s / step": seconds,
                    "GFLOP / step": flops / 1e9, "GFLOP/s": flops / 1e9 / seconds})
    # oneDNN's convolutions can beat torch.mm here, so the ceiling is the best rate anything reached
    best = max([mm_rate] + [r["GFLOP/s"] for r in rows + lin])
    for row in rows:
        row["% of best"] = 100 * row["GFLOP/s"] / best
        row["img/s at best"] = best / row["GFLOP / image"]
    for row in lin:
        row["% of best"] = 100 * row["GFLOP/s"] / best
    print(f"CPU, torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}, load average "
          f"{os.getloadavg()[0]:.1f}; float32 torch.mm 2048^2: {mm_rate:.0f} GFLOP/s; best rate reached "
          f"(the reference below): {best:.0f} GFLOP/s")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f"))
    print(pd.DataFrame(lin).to_markdown(index=False, floatfmt=".3f"))

if __name__ == "__main__":
    main()
