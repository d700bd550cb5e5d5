"""dlib DNN files (``serialize(net)`` of a ``dlib::loss_*<...>`` network) read into PyTorch.

dlib writes a network as nested objects, outermost first, and every ``add_layer`` writes its
sub-network *before* its own layer. A file therefore holds:

1. the loss layer: ``int`` version, then the loss details (e.g. ``"loss_metric_2"``, margin,
   distance threshold);
2. one ``int`` version per layer from the output down to the input (``add_layer`` 1 or 2,
   ``add_tag_layer`` / ``add_skip_layer`` 1, the ``add_layer`` directly on the input 2 or 3);
3. the input layer (``"input_rgb_image_sized"``, the three channel means, rows, columns);
4. the layers' details from the input up to the output, each followed by the ``add_layer``
   book-keeping (three bools, ``x_grad`` and ``cached_output`` tensors, ``params_grad`` or
   ``grad_final``, and for version 3 the sample expansion factor).

Tags, skips and ``add_prev`` carry no tag number in the file, so the reader is driven by the
network's type, given as a :data:`Spec` (outermost first, as dlib's template nesting reads).

Encodings (dlib/serialize.h, dlib/float_details.h, dlib/dnn/tensor.h): integers are a control
byte (low nibble: byte count, 0x80: negative) then little-endian magnitude bytes; strings are a
size then the bytes; bools are the characters ``'1'``/``'0'``; scalar floats are dlib's portable
``float_details`` (an int64 mantissa and an int16 exponent, both as integers; value =
mantissa * 2**exponent; exponents 32000/32001/32002 mean inf/-inf/nan); tensors are a version
(1: every element as ``float_details``; 2: raw little-endian float32), then n, k, nr, nc.

Nothing here unpickles or executes file content: bytes are parsed with :mod:`struct`/numpy.
Any malformed file is one :class:`~campro_bench.errors.InvalidFileError` naming the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InvalidFileError, MissingFileError

Spec = list[tuple[str, int]]
"""Layer kinds, outermost (output) first: ("con"|"affine"|"relu"|"max_pool"|"avg_pool"|"fc", 0),
("tag", id), ("skip", id), ("add_prev", tag id)."""

STRUCTURAL = ("tag", "skip")
FLOAT_SPECIAL = {32000: math.inf, 32001: -math.inf, 32002: math.nan}


class _Corrupt(Exception):
    """Internal: the byte stream is not what the layer being read expects."""


@dataclass
class DlibLayer:
    """One computational layer (input-to-output order) with its hyper-parameters and parameters."""

    kind: str
    arg: int = 0  # the tag id of tag/skip/add_prev
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DlibNet:
    """A parsed network: input means (RGB), input size, loss details, layers input-to-output."""

    input_means: tuple[float, float, float]
    input_size: tuple[int, int]
    loss: dict[str, Any]
    layers: list[DlibLayer]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Corrupt(f"needs {n} more bytes at offset {self.pos}, the file ends at {len(self.data)}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        at = self.pos
        control = self.take(1)[0]
        size = control & 0x0F
        if control & 0x70 or not 1 <= size <= 8:
            raise _Corrupt(f"bad integer control byte 0x{control:02x} at offset {at}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def string(self) -> str:
        size = self.int()
        if size < 0 or size > 1 << 16:
            raise _Corrupt(f"implausible string length {size} at offset {self.pos}")
        try:
            return self.take(size).decode("ascii")
        except UnicodeDecodeError as exc:
            raise _Corrupt(f"non-ASCII string before offset {self.pos}") from exc

    def bool(self) -> bool:
        ch = self.take(1)
        if ch not in (b"0", b"1"):
            raise _Corrupt(f"bad bool byte {ch!r} at offset {self.pos - 1}")
        return ch == b"1"

    def float(self) -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise _Corrupt(f"old ASCII float format (unsupported) at offset {self.pos}")
        mantissa, exponent = self.int(), self.int()
        if exponent in FLOAT_SPECIAL:
            return FLOAT_SPECIAL[exponent]
        return math.ldexp(mantissa, exponent)

    def dims(self) -> tuple[int, int, int, int]:
        dims = (self.int(), self.int(), self.int(), self.int())
        if min(dims) < 0:
            raise _Corrupt(f"negative tensor dimension {dims} before offset {self.pos}")
        return dims

    def tensor(self) -> np.ndarray:
        version = self.int()
        shape = self.dims()
        count = int(np.prod(shape))
        if version == 2:
            return np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32).reshape(shape)
        if version == 1:
            return np.array([self.float() for _ in range(count)], dtype=np.float32).reshape(shape)
        raise _Corrupt(f"unknown tensor version {version} before offset {self.pos}")

    def alias(self) -> tuple[int, int, int, int]:
        self.expect_int(1, "alias_tensor version")
        return self.dims()

    def expect_int(self, allowed: int | tuple[int, ...], what: str) -> int:
        allowed = allowed if isinstance(allowed, tuple) else (allowed,)
        at = self.pos
        value = self.int()
        if value not in allowed:
            raise _Corrupt(f"{what} is {value} at offset {at}, expected {' or '.join(map(str, allowed))}")
        return value

    def expect_string(self, allowed: tuple[str, ...], what: str) -> str:
        at = self.pos
        value = self.string()
        if value not in allowed:
            raise _Corrupt(f"{what} is '{value}' at offset {at}, expected {' or '.join(allowed)}")
        return value


def _split(params: np.ndarray, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    flat = params.reshape(-1)
    sizes = [int(np.prod(s)) for s in shapes]
    if sum(sizes) != flat.size:
        raise _Corrupt(f"parameter tensor has {flat.size} values, the layer's shapes {list(shapes)} need {sum(sizes)}")
    out, start = [], 0
    for shape, size in zip(shapes, sizes):
        out.append(flat[start:start + size].reshape(shape))
        start += size
    return out


def _pool_attrs(r: _Reader) -> dict[str, Any]:
    return {"nr": r.int(), "nc": r.int(), "stride": (r.int(), r.int()), "padding": (r.int(), r.int())}


def _read_details(r: _Reader, layer: DlibLayer) -> None:
    """The layer's own serialization (dlib/dnn/layers.h), into ``layer.attrs``/``layer.params``."""
    kind = layer.kind
    if kind == "con":
        r.expect_string(("con_4",), "con_ version")
        params = r.tensor()
        layer.attrs = {"num_filters": r.int(), "nr": r.int(), "nc": r.int(), "stride": (r.int(), r.int()),
                       "padding": (r.int(), r.int())}
        filters, biases = r.alias(), r.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float()
        weight, bias = _split(params, filters, (int(np.prod(biases)),))
        layer.params = {"weight": weight, "bias": bias}
    elif kind == "affine":
        r.expect_string(("affine_",), "affine_ version")
        params = r.tensor()
        gamma, beta = r.alias(), r.alias()
        layer.attrs = {"mode": r.expect_int((0, 1), "affine_ mode")}  # 0: per channel, 1: per element
        g, b = _split(params, gamma, beta)
        layer.params = {"gamma": g, "beta": b}
    elif kind == "relu":
        r.expect_string(("relu_",), "relu_ version")
    elif kind in ("max_pool", "avg_pool"):
        r.expect_string((f"{kind}_2",), f"{kind}_ version")
        layer.attrs = _pool_attrs(r)
    elif kind == "add_prev":
        r.expect_string(("add_prev_",), "add_prev_ version")
    elif kind == "fc":
        r.expect_string(("fc_2",), "fc_ version")
        outputs, inputs = r.int(), r.int()
        params = r.tensor()
        weights, biases = r.alias(), r.alias()
        bias_mode = r.expect_int((0, 1), "fc_ bias mode")  # 0: has bias, 1: no bias
        for _ in range(4):
            r.float()
        shapes = [weights] + ([(int(np.prod(biases)),)] if bias_mode == 0 else [])
        parts = _split(params, *shapes)
        if parts[0].shape[:2] != (inputs, outputs) or parts[0].size != inputs * outputs:
            raise _Corrupt(f"fc_ weights {parts[0].shape} do not map {inputs} inputs to {outputs} outputs")
        layer.attrs = {"outputs": outputs, "inputs": inputs}
        layer.params = {"weight": parts[0].reshape(inputs, outputs)} | ({"bias": parts[1]} if bias_mode == 0 else {})
    else:
        raise _Corrupt(f"the spec names an unknown layer kind '{kind}'")


def _parse(data: bytes, spec: Spec) -> DlibNet:
    r = _Reader(data)
    r.expect_int(1, "add_loss_layer version")
    loss_version = r.expect_string(("loss_metric_2",), "loss layer version")
    loss = {"version": loss_version, "margin": r.float(), "distance_threshold": r.float()}
    computational = [n for n, (kind, _) in enumerate(spec) if kind not in STRUCTURAL]
    if not computational or computational[-1] != len(spec) - 1:
        raise _Corrupt("the spec must end (at the input) with a computational layer")
    versions = {}
    for n, (kind, _) in enumerate(spec):
        if kind in STRUCTURAL:
            r.expect_int(1, f"{kind} layer version (layer {n} from the output)")
        elif n == len(spec) - 1:
            versions[n] = r.expect_int((2, 3), f"input add_layer version (layer {n} from the output)")
        else:
            versions[n] = r.expect_int((1, 2), f"add_layer version (layer {n} from the output, {kind})")
    r.expect_string(("input_rgb_image_sized",), "input layer version")
    means = (r.float(), r.float(), r.float())
    size = (r.int(), r.int())
    layers = []
    for n in reversed(range(len(spec))):
        kind, arg = spec[n]
        layer = DlibLayer(kind, arg)
        layers.append(layer)
        if kind in STRUCTURAL:
            continue
        _read_details(r, layer)
        r.bool(), r.bool(), r.bool()  # setup called, gradient stale, output getters disabled
        r.tensor(), r.tensor()  # x_grad, cached_output
        if versions[n] >= 2 or n == len(spec) - 1:
            r.tensor()  # params_grad, or grad_final for the layer on the input
        if n == len(spec) - 1 and versions[n] == 3:
            r.int()  # sample expansion factor
    if r.pos != len(data):
        raise _Corrupt(f"{len(data) - r.pos} bytes left after the network (another network type?)")
    return DlibNet(means, size, loss, layers)


def read_dlib_net(path: str | Path, spec: Spec) -> DlibNet:
    """Parse a dlib ``serialize(net)`` file of the network type ``spec``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"dlib network file {path} does not exist")
    try:
        return _parse(path.read_bytes(), spec)
    except _Corrupt as exc:
        raise InvalidFileError(f"{path} is not a dlib network of the expected type (truncated or corrupt?): {exc}") from None


# ----------------------------------------------------------------------------------------
# dlib's face recognition ResNet (tools/python/src/face_recognition.cpp, anet_type)
# ----------------------------------------------------------------------------------------
def _ares(down: bool) -> Spec:
    """relu<residual<block,N,affine,SUBNET>> (or residual_down), outermost first, without SUBNET."""
    block = [("affine", 0), ("con", 0), ("relu", 0), ("affine", 0), ("con", 0), ("tag", 1)]
    if down:  # add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,BN,2,tag1<SUBNET>>>>>>
        return [("relu", 0), ("add_prev", 2), ("avg_pool", 0), ("skip", 1), ("tag", 2)] + block
    return [("relu", 0), ("add_prev", 1)] + block  # add_prev1<block<N,BN,1,tag1<SUBNET>>>


def face_resnet_spec() -> Spec:
    """``anet_type`` of dlib's ``dlib_face_recognition_resnet_model_v1`` (loss_metric excluded)."""
    levels = [[True],                      # alevel0: ares_down<256>
              [False, False, True],        # alevel1: ares<256,ares<256,ares_down<256>>>
              [False, False, True],        # alevel2: 128
              [False, False, False, True],  # alevel3: 64
              [False, False, False]]       # alevel4: 32
    spec: Spec = [("fc", 0), ("avg_pool", 0)]
    for level in levels:
        for down in level:
            spec += _ares(down)
    return spec + [("max_pool", 0), ("relu", 0), ("affine", 0), ("con", 0)]


# ----------------------------------------------------------------------------------------
# the torch network
# ----------------------------------------------------------------------------------------
def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``tt::add`` of two tensors of different shapes: each is zero-extended at the end of
    every dimension (channels, rows, columns) to the larger size, then they are summed."""
    if a.shape == b.shape:
        return a + b
    shape = [max(x, y) for x, y in zip(a.shape, b.shape)]

    def grow(t: torch.Tensor) -> torch.Tensor:
        pad = []
        for dim in (3, 2, 1):
            pad += [0, shape[dim] - t.shape[dim]]
        return F.pad(t, pad)

    return grow(a) + grow(b)


class DlibNetModule(nn.Module):
    """A parsed :class:`DlibNet` as a batched, inference-only torch module.

    Input: ``N x 3 x H x W`` uint8-valued RGB (0..255, float); output: the last layer's output
    (``N x D`` for a net ending in ``fc``). Tags, skips and ``add_prev`` follow dlib's semantics;
    a per-channel ``affine`` right after a ``con`` is folded into the convolution.
    """

    def __init__(self, net: DlibNet) -> None:
        super().__init__()
        self.register_buffer("means", torch.tensor(net.input_means, dtype=torch.float32).view(1, 3, 1, 1))
        self.program: list[tuple[str, int, dict[str, Any]]] = []
        self.layers = nn.ModuleList()
        self.input_size = net.input_size
        for layer in net.layers:
            index = -1
            previous = self.program[-1] if self.program else None
            if layer.kind == "affine" and layer.attrs["mode"] == 0 and previous and previous[0] == "con":
                self._fold_affine(self.layers[previous[1]], layer)  # conv then affine: one conv
                continue
            if layer.kind == "con":
                w = torch.from_numpy(layer.params["weight"].copy())
                stride, padding = layer.attrs["stride"], layer.attrs["padding"]
                conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=stride, padding=padding)
                conv.weight.data.copy_(w)
                conv.bias.data.copy_(torch.from_numpy(layer.params["bias"].copy()))
                self.layers.append(conv)
                index = len(self.layers) - 1
            elif layer.kind in ("affine", "fc"):
                holder = nn.Module()
                for name, value in layer.params.items():
                    holder.register_buffer(name, torch.from_numpy(value.copy()))
                self.layers.append(holder)
                index = len(self.layers) - 1
            self.program.append((layer.kind, index, {"arg": layer.arg, **layer.attrs}))
        self.to(memory_format=torch.channels_last)  # one low-load CPU run: 243 -> 349 img/s

    @staticmethod
    def _fold_affine(conv: nn.Conv2d, affine: DlibLayer) -> None:
        """Per-channel ``y * gamma + beta`` after a convolution, folded into its weights and bias
        (about 1.4x faster on CPU; the descriptors move by ~4e-7)."""
        gamma = torch.from_numpy(affine.params["gamma"].reshape(-1).copy())
        beta = torch.from_numpy(affine.params["beta"].reshape(-1).copy())
        conv.weight.data.mul_(gamma.view(-1, 1, 1, 1))
        conv.bias.data.mul_(gamma).add_(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x.contiguous(memory_format=torch.channels_last)).contiguous()

    def run(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.means) / 256.0
        tags: dict[int, torch.Tensor] = {}
        for kind, index, attrs in self.program:
            if kind == "con":
                x = self.layers[index](x)
            elif kind == "affine":
                p = self.layers[index]
                x = x * p.gamma + p.beta
            elif kind == "relu":
                x = torch.relu(x)
            elif kind in ("max_pool", "avg_pool"):
                size = (attrs["nr"] or x.shape[2], attrs["nc"] or x.shape[3])
                if kind == "max_pool":
                    x = F.max_pool2d(x, size, attrs["stride"], attrs["padding"])
                else:
                    x = F.avg_pool2d(x, size, attrs["stride"], attrs["padding"], count_include_pad=False)
            elif kind == "tag":
                tags[attrs["arg"]] = x
            elif kind == "skip":
                x = tags[attrs["arg"]]
            elif kind == "add_prev":
                x = _add_padded(x, tags[attrs["arg"]])
            elif kind == "fc":
                p = self.layers[index]
                x = x.flatten(1) @ p.weight
                if hasattr(p, "bias"):
                    x = x + p.bias
        return x
