"""The face-recogniser contract.

A face recogniser maps aligned face crops to identity embeddings. Everything a caller must do
to the crop before the network sees it is *data* in its :class:`FaceModelContract` (input size,
alignment template, channel order, normalisation), kept in the registry entry, so that the
alignment code, the embedding cache and the adversarial training all prepare faces the same way.

Registration (timm-style: a small factory per model, its contract beside it)::

    @FACE_RECOGNIZERS.register("sface", contract=FaceModelContract(...), description="...")
    def build_sface(models_dir: Path, cache_dir: Path, device: torch.device) -> FaceRecognizer: ...

``create_face_recognizer(name, ...)`` is the one way to build any of them.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .. import paths
from ..errors import CamproError
from ..registries import FACE_RECOGNIZERS


@dataclass(frozen=True)
class FaceModelContract:
    """How a face crop must be prepared for one model.

    Attributes:
        input_size: (height, width) of the crop the network takes.
        alignment: name of the alignment (see :mod:`campro_bench.faces.align`) that produces
            crops for this model, e.g. ``"arcface-112"`` (5-point similarity transform to the
            standard 112x112 ArcFace template).
        channel_order: ``"RGB"`` or ``"BGR"``: order of channels the network expects.
        mean, std: per-channel normalisation applied to [0, 1] values, in ``channel_order``:
            ``(x - mean) / std``.
        embedding_size: length of the output embedding.
        l2_normalize: whether :meth:`FaceRecognizer.forward` returns unit-length embeddings.
        weights_file: file name looked for in the models folder (user-supplied weights), or
            ``None`` when the weights ship inside an installed package.
        weights_source: where the weights come from, for ``campro-bench models``.
    """

    input_size: tuple[int, int]
    alignment: str
    channel_order: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    embedding_size: int = 512
    l2_normalize: bool = True
    weights_file: str | None = None
    weights_source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaceRecognizer(nn.Module):
    """Base class: ``forward(faces)`` with faces ``N x 3 x H x W``, RGB in [0, 1], already aligned
    with ``contract.alignment`` at ``contract.input_size``; returns ``N x embedding_size``.

    The recogniser applies its own channel order and normalisation (from the contract), so
    callers always pass RGB [0, 1] crops. ``differentiable`` says whether gradients flow to the
    input (torch models) or not (dlib, ONNX runtime models). ``weights_hash`` identifies the
    weights for cache keys.
    """

    name: str = "face-recognizer"
    differentiable: bool = True

    def __init__(self, contract: FaceModelContract, weights_hash: str) -> None:
        super().__init__()
        self.contract = contract
        self.weights_hash = weights_hash

    def normalize(self, faces: torch.Tensor) -> torch.Tensor:
        """RGB [0, 1] -> the network's channel order and normalisation."""
        if self.contract.channel_order == "BGR":
            faces = faces.flip(1)
        mean = torch.tensor(self.contract.mean, dtype=faces.dtype, device=faces.device).view(1, 3, 1, 1)
        std = torch.tensor(self.contract.std, dtype=faces.dtype, device=faces.device).view(1, 3, 1, 1)
        return (faces - mean) / std

    def check_input(self, faces: torch.Tensor) -> None:
        if faces.ndim != 4 or faces.shape[1] != 3 or tuple(faces.shape[-2:]) != tuple(self.contract.input_size):
            raise ValueError(
                f"{self.name} takes N x 3 x {self.contract.input_size[0]} x {self.contract.input_size[1]} "
                f"crops, got {tuple(faces.shape)}"
            )


def create_face_recognizer(
    name: str,
    models_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> FaceRecognizer:
    """Build a registered face recogniser in eval mode on ``device``.

    Missing user-supplied weights raise a :class:`~campro_bench.errors.MissingFileError` that
    names the file and the folder to put it in.
    """
    model = FACE_RECOGNIZERS.build(name, FaceRecognizer, models_dir=paths.models_dir(models_dir),
                                   cache_dir=paths.cache_dir(cache_dir), device=torch.device(device))
    return model.eval().to(device)


def contract_of(name: str) -> FaceModelContract:
    """The contract of a registered model, without building it."""
    contract = FACE_RECOGNIZERS.entry(name).metadata.get("contract")
    if not isinstance(contract, FaceModelContract):
        raise CamproError(f"face recognizer '{name}' declares no FaceModelContract")
    return contract


def weights_path(models_dir: Path, contract: FaceModelContract) -> Path:
    """Where a user-supplied weights file is expected."""
    assert contract.weights_file is not None
    return models_dir / contract.weights_file
