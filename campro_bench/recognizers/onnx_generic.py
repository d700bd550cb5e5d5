"""Any insightface-style ONNX recognition model dropped into ``<models_dir>/onnx/``.

Naming: ``<models_dir>/onnx/<stem>.onnx`` is registered as the face recognizer ``onnx-<stem>``
(characters other than letters, digits, ``.``, ``_`` and ``-`` become ``-``), e.g.
``onnx/w600k_r50.onnx`` -> ``onnx-w600k_r50``. The default models folder is scanned when the
registry loads; a command given another folder calls :func:`register_onnx_models` with it.

Contract: insightface's convention unless a sidecar ``<stem>.json`` beside the model says
otherwise: input ``1 x 3 x 112 x 112`` (any batch size), RGB, ``(x - 127.5) / 127.5``,
``arcface-112`` alignment, 512-d output, L2-normalised here. The sidecar may set
``channel_order`` (``"RGB"``/``"BGR"``), ``mean`` and ``std`` (on [0, 1] values, one number or
three), ``input_size`` (``[H, W]``), ``alignment``, ``embedding_size``, ``weights_source`` and
``description``; other keys are an error. The network's declared input and output shapes are
checked against the contract when the model is built.

The model runs in ONNX Runtime, so it is not differentiable (``differentiable = False``): it can
be evaluated against, not used as a white-box attacker.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import paths
from ..errors import CamproError, CheckpointError, InvalidFileError
from ..registries import FACE_RECOGNIZERS
from ..runtime import onnx_session
from .base import FaceModelContract, FaceRecognizer
from .packaged import files_sha256
from .weights import locate_weights

ONNX_FOLDER = "onnx"
NAME_PREFIX = "onnx-"
DEFAULTS: dict[str, Any] = {
    "channel_order": "RGB",
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "input_size": (112, 112),
    "alignment": "arcface-112",
    "embedding_size": 512,
    "weights_source": "user-supplied ONNX model (insightface convention)",
    "description": "",
}
"""The insightface recognition convention, overridden key by key by a sidecar JSON."""

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def onnx_model_name(path: Path) -> str:
    """Registry name of ``<models_dir>/onnx/<stem>.onnx``."""
    return NAME_PREFIX + re.sub(r"[^A-Za-z0-9._-]", "-", path.stem)


def sidecar_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".json")


def _triple(value: Any, key: str, where: Path) -> tuple[float, float, float]:
    values = [value] * 3 if isinstance(value, (int, float)) else value
    if not isinstance(values, (list, tuple)) or len(values) != 3 or not all(isinstance(v, (int, float)) for v in values):
        raise InvalidFileError(f"{where}: '{key}' must be a number or a list of 3 numbers, got {value!r}")
    return (float(values[0]), float(values[1]), float(values[2]))


def read_sidecar(onnx_path: Path) -> dict[str, Any]:
    """Settings of an ONNX model: :data:`DEFAULTS` updated by its sidecar JSON, validated."""
    settings = dict(DEFAULTS)
    side = sidecar_path(onnx_path)
    if not side.is_file():
        return settings
    try:
        given = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidFileError(f"cannot read {side}: {exc}") from exc
    if not isinstance(given, dict):
        raise InvalidFileError(f"{side} must hold a JSON object")
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise InvalidFileError(f"{side}: unknown keys {', '.join(unknown)}; allowed: {', '.join(DEFAULTS)}")
    settings.update(given)
    if settings["channel_order"] not in ("RGB", "BGR"):
        raise InvalidFileError(f"{side}: 'channel_order' must be \"RGB\" or \"BGR\", got {settings['channel_order']!r}")
    settings["mean"] = _triple(settings["mean"], "mean", side)
    settings["std"] = _triple(settings["std"], "std", side)
    if min(settings["std"]) <= 0:
        raise InvalidFileError(f"{side}: 'std' must be positive, got {list(settings['std'])}")
    size = settings["input_size"]
    size = [size, size] if isinstance(size, int) else size
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise InvalidFileError(f"{side}: 'input_size' must be [height, width], got {settings['input_size']!r}")
    settings["input_size"] = (size[0], size[1])
    if not isinstance(settings["embedding_size"], int) or settings["embedding_size"] <= 0:
        raise InvalidFileError(f"{side}: 'embedding_size' must be a positive integer")
    for key in ("alignment", "weights_source", "description"):
        if not isinstance(settings[key], str):
            raise InvalidFileError(f"{side}: '{key}' must be a string")
    return settings


def onnx_contract(onnx_path: Path, settings: dict[str, Any]) -> FaceModelContract:
    """The contract of ``<models_dir>/onnx/<file>`` with the given settings."""
    side = sidecar_path(onnx_path)
    return FaceModelContract(
        input_size=settings["input_size"],
        alignment=settings["alignment"],
        channel_order=settings["channel_order"],
        mean=settings["mean"],
        std=settings["std"],
        embedding_size=settings["embedding_size"],
        l2_normalize=True,
        weights_file=f"{ONNX_FOLDER}/{onnx_path.name}",
        weights_source=settings["weights_source"],
        extra={"sidecar": f"{ONNX_FOLDER}/{side.name}" if side.is_file() else None, "runtime": "onnxruntime"},
    )


class OnnxRecognizer(FaceRecognizer):
    """An ONNX Runtime session behind the FaceRecognizer interface (not differentiable)."""

    differentiable = False

    def __init__(self, session: Any, contract: FaceModelContract, weights_hash: str, path: Path) -> None:
        super().__init__(contract, weights_hash)
        self.session = session
        self.path = path
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = _ORT_TYPES[inp.type]
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else None
        self.output_name = session.get_outputs()[0].name

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        self.check_input(faces)
        x = self.normalize(faces.detach()).float().cpu().numpy().astype(self.input_dtype)
        step = self.fixed_batch or max(len(x), 1)
        outputs = []
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            if self.fixed_batch and len(chunk) < step:  # pad a fixed-batch model's last chunk
                chunk = np.concatenate([chunk, np.zeros((step - len(chunk), *chunk.shape[1:]), chunk.dtype)])
            out = self.session.run([self.output_name], {self.input_name: chunk})[0]
            outputs.append(np.asarray(out, dtype=np.float32).reshape(len(chunk), -1)[: len(x) - start])
        emb = torch.from_numpy(np.concatenate(outputs)) if outputs else torch.zeros(0, self.contract.embedding_size)
        return F.normalize(emb, p=2, dim=1).to(faces.device)


def _check_signature(session: Any, contract: FaceModelContract, path: Path) -> None:
    """The network's declared shapes must fit the contract (else: which sidecar key to set)."""
    side = sidecar_path(path).name
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or not outputs:
        raise CheckpointError(f"{path}: a recognition model takes one input and gives an embedding, "
                              f"this one has {len(inputs)} inputs and {len(outputs)} outputs")
    inp = inputs[0]
    if inp.type not in _ORT_TYPES:
        raise CheckpointError(f"{path}: input '{inp.name}' is {inp.type}; float or float16 images expected")
    channels = inp.shape[1] if len(inp.shape) == 4 else None
    if len(inp.shape) != 4 or (isinstance(channels, int) and channels != 3):
        raise CheckpointError(f"{path}: input '{inp.name}' has shape {inp.shape}; N x 3 x H x W expected")
    height, width = inp.shape[2], inp.shape[3]
    if isinstance(height, int) and isinstance(width, int) and (height, width) != tuple(contract.input_size):
        raise CheckpointError(f"{path}: the network takes {height}x{width} inputs but the contract says "
                              f"{contract.input_size[0]}x{contract.input_size[1]}; set \"input_size\" "
                              f"(and \"alignment\") in {side}")
    dim = outputs[0].shape[-1] if outputs[0].shape else None
    if isinstance(dim, int) and dim != contract.embedding_size:
        raise CheckpointError(f"{path}: the network gives {dim}-d embeddings but the contract says "
                              f"{contract.embedding_size}; set \"embedding_size\" in {side}")


def build_onnx(
    name: str, registered: FaceModelContract, models_dir: Path, cache_dir: Path, device: torch.device
) -> OnnxRecognizer:
    """Open the model file of ``registered`` in ``models_dir`` under the contract of its sidecar."""
    path = locate_weights(name, models_dir, registered)
    contract = onnx_contract(path, read_sidecar(path))
    try:
        session = onnx_session(path, device)
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise CheckpointError(f"cannot load ONNX model {path}: {str(exc).strip().splitlines()[0]}") from exc
    _check_signature(session, contract, path)
    side = sidecar_path(path)
    weights_hash = files_sha256([path, side] if side.is_file() else [path], cache_dir)
    return OnnxRecognizer(session, contract, weights_hash, path)


def register_onnx_models(models_dir: Path | None = None) -> list[str]:
    """Register every ``<models_dir>/onnx/*.onnx`` (default folder: see :mod:`campro_bench.paths`).

    Returns the registered names. A model whose sidecar is invalid is still registered; building
    it raises the sidecar's error (and ``campro-bench models`` shows it).
    """
    root = (models_dir if models_dir is not None else paths.models_dir()) / ONNX_FOLDER
    names = []
    for path in sorted(root.glob("*.onnx")) if root.is_dir() else []:
        name = onnx_model_name(path)
        error: CamproError | None = None
        try:
            settings = read_sidecar(path)
        except CamproError as exc:
            error, settings = exc, dict(DEFAULTS)
        _register(name, path, onnx_contract(path, settings), settings["description"], error)
        names.append(name)
    return names


def _register(name: str, path: Path, contract: FaceModelContract, description: str, error: CamproError | None) -> None:
    def factory(models_dir: Path, cache_dir: Path, device: torch.device) -> OnnxRecognizer:
        if error is not None:
            raise error
        return build_onnx(name, contract, models_dir, cache_dir, device)

    def weights_id(models_dir: Path, cache_dir: Path | None = None) -> str:
        found = locate_weights(name, models_dir, contract)
        side = sidecar_path(found)
        return files_sha256([found, side] if side.is_file() else [found], cache_dir)

    FACE_RECOGNIZERS.add(
        name,
        factory,
        replace=True,  # a rescan of the models folder (another --models-dir) re-registers its files
        origin=f"{__name__} ({path})",
        contract=contract,
        weights_id=weights_id,
        error=str(error) if error is not None else None,
        description=description or f"ONNX model {ONNX_FOLDER}/{path.name} (onnxruntime, not differentiable)",
    )


register_onnx_models()
