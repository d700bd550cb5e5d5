"""Reading TensorFlow frozen graphs without TensorFlow (the one reader of the package).

A frozen graph (``.pb``) is a ``GraphDef`` protobuf whose weights are ``Const`` nodes. The
compiled protos ship in the ``tensorboard`` wheel, so ``GraphDef.ParseFromString`` reads the file
with ``protobuf`` alone; this module turns its constants into numpy arrays (convolution kernels keep
TensorFlow's ``HWIO`` layout) for the converters that rebuild a network in torch
(:mod:`campro_bench.recognizers.facenet_casia`, :mod:`campro_bench.detection.ssdlite`).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidFileError, MissingFileError

# tensorflow/core/framework/types.proto: DataType enum -> numpy dtype (the ones weights use)
_DTYPES: dict[int, Any] = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 6: np.int8, 9: np.int64, 10: np.bool_}
_VALUE_FIELDS = {1: "float_val", 2: "double_val", 3: "int_val", 4: "int_val", 6: "int_val", 9: "int64_val", 10: "bool_val"}


@dataclass
class FrozenGraph:
    """The nodes of a frozen graph by name, with helpers to read constants and attributes."""

    path: Path
    nodes: dict[str, Any]

    def ops(self, op: str) -> list[Any]:
        """Nodes of one op type, in graph order."""
        return [n for n in self.nodes.values() if n.op == op]

    def const(self, name: str) -> np.ndarray:
        """The value of a ``Const`` node (``name`` may carry a ``:0`` output suffix)."""
        node = self.nodes.get(name.split(":")[0].lstrip("^"))
        if node is None or node.op != "Const":
            raise InvalidFileError(f"{self.path.name}: no Const node '{name}'")
        return tensor_to_numpy(node.attr["value"].tensor, f"{self.path.name}:{name}")

    def input_const(self, node: Any, index: int) -> np.ndarray:
        """The constant feeding input ``index`` of ``node``."""
        return self.const(node.input[index])

    def constants(self) -> dict[str, np.ndarray]:
        """Every ``Const`` node of a supported dtype as a numpy array, by node name."""
        return {name: tensor_to_numpy(node.attr["value"].tensor, f"{self.path.name}:{name}")
                for name, node in self.nodes.items()
                if node.op == "Const" and node.attr["value"].tensor.dtype in _DTYPES}

    def op_counts(self) -> collections.Counter[str]:
        """How many nodes of each op type the graph holds."""
        return collections.Counter(node.op for node in self.nodes.values())


def tensor_to_numpy(tensor: Any, what: str = "tensor") -> np.ndarray:
    """A ``TensorProto`` to a numpy array (packed ``tensor_content`` or the typed value lists)."""
    dtype = _DTYPES.get(tensor.dtype)
    if dtype is None:
        raise InvalidFileError(f"{what}: unsupported TensorFlow dtype {tensor.dtype}")
    shape = tuple(d.size for d in tensor.tensor_shape.dim)
    count = int(np.prod(shape)) if shape else 1
    if tensor.tensor_content:
        array = np.frombuffer(tensor.tensor_content, dtype=dtype).copy()
    else:
        values = np.asarray(getattr(tensor, _VALUE_FIELDS[tensor.dtype]), dtype=dtype)
        if values.size == count:
            array = values
        elif values.size == 1:  # TensorFlow stores a splat as a single value
            array = np.full(count, values[0], dtype=dtype)
        elif values.size == 0:  # and an all-default (zero) tensor as no value at all
            array = np.zeros(count, dtype=dtype)
        else:
            raise InvalidFileError(f"{what}: {values.size} values for shape {shape}")
    if array.size != count:
        raise InvalidFileError(f"{what}: {array.size} values for shape {shape}")
    return array.reshape(shape)


def read_frozen_graph(path: str | Path) -> FrozenGraph:
    """Parse a frozen ``GraphDef`` file; a clear error when it is missing or not a graph."""
    from tensorboard.compat.proto import graph_pb2  # the compiled TensorFlow protos

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"TensorFlow graph {path} does not exist")
    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(path.read_bytes())
    except Exception as exc:  # protobuf raises DecodeError (a plain Exception subclass)
        raise InvalidFileError(f"{path} is not a TensorFlow GraphDef: {exc}") from exc
    if not graph.node:
        raise InvalidFileError(f"{path} holds an empty TensorFlow graph")
    return FrozenGraph(path, {n.name: n for n in graph.node})
