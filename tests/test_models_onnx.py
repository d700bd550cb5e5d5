"""Any ONNX recogniser dropped into <models_dir>/onnx/ is usable by name, under a declared contract."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from campro_bench.errors import CheckpointError, InvalidFileError, MissingFileError
from campro_bench.recognizers.base import contract_of, create_face_recognizer
from campro_bench.recognizers.onnx_generic import onnx_model_name, register_onnx_models
from campro_bench.registries import FACE_RECOGNIZERS


class TinyRecognizer(nn.Module):
    """Stands in for an insightface model: N x 3 x 112 x 112 in, N x dim out."""

    def __init__(self, dim: int = 512) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 5, stride=4, padding=2)
        self.fc = nn.Linear(8 * 4 * 4, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 4), 1))


def export(module: nn.Module, path: Path, dynamic_batch: bool = True, size: int = 112) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but needs no onnxscript
        torch.onnx.export(
            module.eval(), (torch.zeros(1, 3, size, size),), str(path), dynamo=False,
            input_names=["input.1"], output_names=["fc1"],
            dynamic_axes={"input.1": {0: "None"}, "fc1": {0: "None"}} if dynamic_batch else None,
        )


@pytest.fixture()
def models_dir(tmp_path: Path):
    """A models folder; the ONNX entries registered from it are forgotten afterwards."""
    yield tmp_path
    for path in (tmp_path / "onnx").glob("*.onnx"):
        FACE_RECOGNIZERS.remove(onnx_model_name(path))


def faces(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, 112, 112, generator=torch.Generator().manual_seed(2))


def test_dropped_model_is_registered_by_name_with_the_insightface_contract(models_dir: Path, cache_dir: Path) -> None:
    net = TinyRecognizer()
    export(net, models_dir / "onnx" / "w600k_r50.onnx")
    assert register_onnx_models(models_dir) == ["onnx-w600k_r50"]
    contract = contract_of("onnx-w600k_r50")
    assert (contract.input_size, contract.channel_order, contract.mean, contract.std) == (
        (112, 112), "RGB", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert contract.weights_file == "onnx/w600k_r50.onnx" and contract.alignment == "arcface-112"

    model = create_face_recognizer("onnx-w600k_r50", models_dir=models_dir, cache_dir=cache_dir)
    assert not model.differentiable
    emb = model(faces())
    assert emb.shape == (3, 512)
    with torch.no_grad():
        expected = F.normalize(net((faces() - 0.5) / 0.5), dim=1)  # (x - 127.5) / 127.5, RGB
    assert torch.allclose(emb, expected, atol=1e-5)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)


def test_sidecar_declares_channel_order_and_normalisation(models_dir: Path, cache_dir: Path) -> None:
    net = TinyRecognizer()
    export(net, models_dir / "onnx" / "bgr_model.onnx")
    (models_dir / "onnx" / "bgr_model.json").write_text(
        json.dumps({"channel_order": "BGR", "mean": 0, "std": [1, 1, 1], "description": "a BGR model"}))
    register_onnx_models(models_dir)
    assert FACE_RECOGNIZERS.entry("onnx-bgr_model").metadata["description"] == "a BGR model"
    model = create_face_recognizer("onnx-bgr_model", models_dir=models_dir, cache_dir=cache_dir)
    assert model.contract.channel_order == "BGR" and model.contract.extra["sidecar"] == "onnx/bgr_model.json"
    with torch.no_grad():
        expected = F.normalize(net(faces()[:, [2, 1, 0]]), dim=1)
    assert torch.allclose(model(faces()), expected, atol=1e-5)


def test_fixed_batch_model_runs_any_number_of_faces(models_dir: Path, cache_dir: Path) -> None:
    net = TinyRecognizer()
    export(net, models_dir / "onnx" / "batch1.onnx", dynamic_batch=False)
    register_onnx_models(models_dir)
    model = create_face_recognizer("onnx-batch1", models_dir=models_dir, cache_dir=cache_dir)
    assert model.fixed_batch == 1
    with torch.no_grad():
        expected = F.normalize(net((faces(5) - 0.5) / 0.5), dim=1)
    assert torch.allclose(model(faces(5)), expected, atol=1e-5)


def test_shapes_that_contradict_the_contract_name_the_sidecar_key(models_dir: Path, cache_dir: Path) -> None:
    export(TinyRecognizer(dim=128), models_dir / "onnx" / "small.onnx")
    register_onnx_models(models_dir)
    with pytest.raises(CheckpointError, match=r"gives 128-d embeddings .* set \"embedding_size\" in small\.json"):
        create_face_recognizer("onnx-small", models_dir=models_dir, cache_dir=cache_dir)
    (models_dir / "onnx" / "small.json").write_text('{"embedding_size": 128}')
    register_onnx_models(models_dir)
    assert create_face_recognizer("onnx-small", models_dir=models_dir, cache_dir=cache_dir)(faces(2)).shape == (2, 128)

    export(TinyRecognizer(), models_dir / "onnx" / "big.onnx", dynamic_batch=False, size=128)
    register_onnx_models(models_dir)
    with pytest.raises(CheckpointError, match=r"takes 128x128 inputs .* \"input_size\" \(and \"alignment\"\) in big\.json"):
        create_face_recognizer("onnx-big", models_dir=models_dir, cache_dir=cache_dir)


def test_invalid_sidecar_or_model_fails_when_built_and_names_the_file(models_dir: Path, cache_dir: Path) -> None:
    export(TinyRecognizer(), models_dir / "onnx" / "odd name+v2.onnx")
    (models_dir / "onnx" / "odd name+v2.json").write_text('{"channels": "BGR"}')
    (models_dir / "onnx" / "broken.onnx").write_bytes(b"not an onnx file")
    assert register_onnx_models(models_dir) == ["onnx-broken", "onnx-odd-name-v2"]
    assert "unknown keys channels" in FACE_RECOGNIZERS.entry("onnx-odd-name-v2").metadata["error"]
    with pytest.raises(InvalidFileError, match=r"odd name\+v2\.json: unknown keys channels; allowed: channel_order"):
        create_face_recognizer("onnx-odd-name-v2", models_dir=models_dir, cache_dir=cache_dir)
    with pytest.raises(CheckpointError, match=r"cannot load ONNX model .*broken\.onnx"):
        create_face_recognizer("onnx-broken", models_dir=models_dir, cache_dir=cache_dir)


def test_model_removed_after_registration_is_a_missing_file(models_dir: Path, cache_dir: Path) -> None:
    export(TinyRecognizer(), models_dir / "onnx" / "gone.onnx")
    register_onnx_models(models_dir)
    (models_dir / "onnx" / "gone.onnx").unlink()
    with pytest.raises(MissingFileError, match=r"put onnx/gone\.onnx into the models folder"):
        create_face_recognizer("onnx-gone", models_dir=models_dir, cache_dir=cache_dir)
    FACE_RECOGNIZERS.remove("onnx-gone")
