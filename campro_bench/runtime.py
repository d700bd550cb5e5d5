"""Inference runtimes in one place: CPU thread counts, torch thread limits and ONNX Runtime sessions.

Every ONNX model (face detectors, recognisers, person detectors) is opened by :func:`onnx_session`,
so providers, threads and log level are set the same way everywhere."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch


def cpu_threads() -> int:
    """Threads for CPU inference runtimes (ONNX Runtime, dlib): the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads (``None``: leave as is), then restore."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def onnx_session(model: Path | bytes, device: str | torch.device = "cpu") -> Any:
    """An ONNX Runtime session (CUDA provider first when ``device`` is cuda and it is available)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # the shipped models carry harmless initializer warnings
    options.intra_op_num_threads = cpu_threads()
    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=providers)


def _dequantize_constants(model: Any) -> None:
    """Replace ``DequantizeLinear`` nodes of constant weights by their float32 values, in place.

    The OpenCV-zoo int8 "block-quantised" models declare a ``block_size`` even where the scale is
    per-tensor, which ONNX Runtime refuses; OpenCV dequantises the weights at load time, and so
    does this: ``(q - zero_point) * scale`` with each scale repeated over its block.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    for node in list(model.graph.node):
        if node.op_type != "DequantizeLinear" or not all(n in inits for n in node.input if n):
            continue
        attrs = {a.name: a.i for a in node.attribute}
        q = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        zero = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32) if len(node.input) > 2 and node.input[2] else np.zeros_like(scale)
        axis = attrs.get("axis", 1) % max(q.ndim, 1)
        if scale.size > 1 and scale.ndim == q.ndim:  # blocked: repeat each scale over its block
            block = attrs.get("block_size", 0) or 1
            scale = np.repeat(scale, block, axis=axis).take(range(q.shape[axis]), axis=axis)
            zero = np.repeat(zero, block, axis=axis).take(range(q.shape[axis]), axis=axis)
        elif scale.size > 1:  # per-axis
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        model.graph.initializer.append(numpy_helper.from_array(((q - zero) * scale).astype(np.float32), node.output[0]))
        model.graph.node.remove(node)


def prepare_onnx(path: Path, input_dims: dict[str, list[Any]] | None = None,
                 output_dims: dict[str, list[Any]] | None = None) -> bytes:
    """The ONNX model at ``path`` made runnable by ONNX Runtime; the network is unchanged.

    * constant block-quantised weights are dequantised (:func:`_dequantize_constants`);
    * graph inputs that no node reads (left over from quantisation) are removed, and so are graph
      inputs that merely re-declare an initializer (old exporters list every weight as an input):
      ONNX Runtime treats those as overridable and cannot fold them, e.g. a batch norm into its
      convolution (SFace: 56 -> 63 images/s on 2 cores, embeddings within 5e-7);
    * the given inputs / outputs get symbolic dimensions (some shipped models fix the batch or
      image size in their declared shapes).
    """
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    model = onnx.load(str(path))
    _dequantize_constants(model)
    used = {name for node in model.graph.node for name in node.input}
    constants = {init.name for init in model.graph.initializer}
    for graph_input in list(model.graph.input):
        if graph_input.name not in used or graph_input.name in constants:
            model.graph.input.remove(graph_input)
    dims_in = {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    dims_out = {o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    if input_dims or output_dims:
        dims_in.update(input_dims or {})
        dims_out.update(output_dims or {})
        model = update_inputs_outputs_dims(model, dims_in, dims_out)
    return model.SerializeToString()
