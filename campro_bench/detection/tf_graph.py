"""Reading TensorFlow frozen graphs without TensorFlow.

A frozen graph is a ``GraphDef`` protocol buffer whose weights are ``Const`` nodes. The compiled
protos ship in the ``tensorboard`` wheel, so reading one needs only ``tensorboard`` and
``protobuf``: :func:`read_graph` parses the file and :func:`graph_constants` turns every constant
into a numpy array (convolution kernels keep TensorFlow's ``HWIO`` layout).
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from ..errors import InvalidFileError, MissingFileError

# tensorflow/core/framework/types.proto
_DTYPES: dict[int, tuple[type[np.generic], str]] = {
    1: (np.float32, "float_val"),
    2: (np.float64, "double_val"),
    3: (np.int32, "int_val"),
    9: (np.int64, "int64_val"),
}


def read_graph(path: Path):  # -> tensorboard.compat.proto.graph_pb2.GraphDef
    """Parse a frozen ``GraphDef`` file; errors name the file."""
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import graph_pb2

    if not path.is_file():
        raise MissingFileError(f"TensorFlow graph {path} does not exist")
    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(path.read_bytes())
    except DecodeError as exc:
        raise InvalidFileError(f"{path} is not a TensorFlow GraphDef ({exc})") from exc
    if not graph.node:
        raise InvalidFileError(f"{path} holds an empty TensorFlow graph")
    return graph


def graph_constants(graph) -> dict[str, np.ndarray]:  # graph: GraphDef
    """Every numeric ``Const`` node as a numpy array, by node name."""
    consts: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op != "Const":
            continue
        tensor = node.attr["value"].tensor
        if tensor.dtype not in _DTYPES:
            continue
        dtype, field_name = _DTYPES[tensor.dtype]
        shape = tuple(d.size for d in tensor.tensor_shape.dim)
        if tensor.tensor_content:
            array = np.frombuffer(tensor.tensor_content, dtype=dtype).reshape(shape)
        else:
            values = np.asarray(getattr(tensor, field_name), dtype=dtype).reshape(-1)
            size = int(np.prod(shape))
            if values.size == size:
                array = values.reshape(shape)
            elif values.size == 1:  # TF's compact encoding: one value repeated over the shape
                array = np.full(shape, values[0], dtype=dtype)
            elif values.size == 0:
                array = np.zeros(shape, dtype=dtype)
            else:
                raise InvalidFileError(f"constant '{node.name}' holds {values.size} values for shape {shape}")
        consts[node.name] = np.array(array, copy=True)
    return consts


def op_counts(graph) -> collections.Counter[str]:
    """How many nodes of each op type the graph holds."""
    return collections.Counter(node.op for node in graph.node)
