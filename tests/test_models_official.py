"""The paper's ten recognisers load synthetic checkpoints saved exactly as the official ones are.

Each synthetic checkpoint has the official keys and shapes (verified against the upstream code in
test_models_architectures.py) with random values, wrapped as its project saves it: a raw state
dict (insightface ``backbone.pth``, TreB1eN ``model_ir_se50.pth`` from PyTorch 0.4 without
``num_batches_tracked``, facenet-pytorch's ``.pt`` with its VGGFace2 classifier), MagFace's
``{"state_dict": {"features.module.<key>": ...}, "optimizer": ...}`` with its margin head, and
AdaFace's PyTorch Lightning ``.ckpt`` (``model.<key>``, ``head.kernel``, a scheduler whose
milestones are a ``Counter``). Every deep network is built, loaded and run once, on two faces.
"""

from __future__ import annotations

import collections
import pathlib
import warnings
from pathlib import Path
from typing import Callable

import pytest
import torch
import torch.nn.functional as F

from campro_bench.errors import CheckpointError, MissingFileError
from campro_bench.faces.align import ALIGNMENTS
from campro_bench.recognizers.base import contract_of, create_face_recognizer
from campro_bench.recognizers.official import PAPER_MODELS, official_model
from campro_bench.recognizers.weights import SHOWN_KEYS, load_official_checkpoint
from campro_bench.registries import FACE_RECOGNIZERS

State = dict[str, torch.Tensor]


def synthetic_state(name: str, seed: int = 0) -> State:
    """Random tensors with the official keys and shapes of ``name``'s network."""
    with torch.device("meta"):
        layout = official_model(name).build().state_dict()
    gen = torch.Generator().manual_seed(seed)
    state: State = {}
    for key, meta in layout.items():
        shape = meta.shape
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=gen)
        elif len(shape) >= 2:  # conv / linear: fan-in scaled so 150 layers stay finite
            state[key] = torch.randn(shape, generator=gen) / shape[1:].numel() ** 0.5
        elif key.endswith("weight"):
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            state[key] = 0.1 * torch.randn(shape, generator=gen)
    return state


def save_raw(state: State, path: Path) -> None:
    torch.save(state, path)


def save_raw_pytorch04(state: State, path: Path) -> None:
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)


def save_facenet_pytorch(state: State, path: Path) -> None:
    torch.save({**state, "logits.weight": torch.randn(8631, 512), "logits.bias": torch.zeros(8631)}, path)


def magface_saver(prefix: str) -> Callable[[State, Path], None]:
    def save(state: State, path: Path) -> None:
        wrapped = {prefix + k: v for k, v in state.items()}
        wrapped["module.fc.weight" if prefix.startswith("module.") else "fc.weight"] = torch.randn(512, 16)
        torch.save({"epoch": 25, "arch": "iresnet", "state_dict": wrapped,
                    "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0, 1]}]}}, path)
    return save


def save_lightning(state: State, path: Path) -> None:
    torch.save({
        "epoch": 25, "global_step": 1000, "pytorch-lightning_version": "1.8.6",
        "state_dict": {**{"model." + k: v for k, v in state.items()}, "head.kernel": torch.randn(512, 16)},
        "lr_schedulers": [{"milestones": collections.Counter({12: 1, 20: 1, 24: 1}), "gamma": 0.1, "last_epoch": 25}],
        "hyper_parameters": {"arch": "ir_18", "head": "adaface", "m": 0.4, "h": 0.333},
    }, path)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two faces per batch gain nothing from threads; on a busy shared runner they only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def bgr(x: torch.Tensor) -> torch.Tensor:
    return x[:, [2, 1, 0]]


# model, file written (CamPro artifact name or an upstream alternate), writer, the codebase's own
# preprocessing of RGB [0, 1] crops, written independently of the contracts
CASES = [
    ("facenet", "20180402-114759-vggface2.pt", save_facenet_pytorch, lambda x: (x * 255 - 127.5) / 128),
    ("arc18", "arcface_ir18.pth", magface_saver("features.module."), bgr),
    ("arc50", "model_ir_se50.pth", save_raw_pytorch04, lambda x: (x - 0.5) / 0.5),
    ("arc152", "arcface_ir152.pth", save_raw, lambda x: (x - 0.5) / 0.5),
    ("mag18", "magface_ir18.pth", magface_saver("module.features."), bgr),
    ("mag50", "magface_ir50.pth", magface_saver("features.module."), bgr),
    ("mag100", "magface_epoch_00025.pth", magface_saver("features.module."), bgr),
    ("ada18", "adaface_ir18_webface4m.ckpt", save_lightning, lambda x: (bgr(x) - 0.5) / 0.5),
    ("ada50", "adaface_ir50.pth", save_raw, lambda x: (bgr(x) - 0.5) / 0.5),
    ("ada100", "adaface_ir101_webface12m.ckpt", save_lightning, lambda x: (bgr(x) - 0.5) / 0.5),
    ("insightface-r18", "ms1mv3_arcface_r18_fp16/backbone.pth", save_raw, lambda x: (x - 0.5) / 0.5),
]


def test_the_papers_ten_models_are_registered_in_table_order_with_full_contracts() -> None:
    assert PAPER_MODELS == ("facenet", "arc18", "arc50", "arc152", "mag18", "mag50", "mag100", "ada18", "ada50", "ada100")
    assert [FACE_RECOGNIZERS.entry(n).metadata["paper_name"] for n in PAPER_MODELS] == [
        "FaceNet", "Arc18", "Arc50", "Arc152", "Mag18", "Mag50", "Mag100", "Ada18", "Ada50", "Ada100"]
    for name in PAPER_MODELS:
        contract = contract_of(name)
        assert contract.alignment in ALIGNMENTS.names()  # the face pipeline can produce its crops
        assert contract.embedding_size == 512 and contract.l2_normalize
        assert contract.input_size == ((160, 160) if name == "facenet" else (112, 112))
        assert contract.alignment == ("facenet-160" if name == "facenet" else "arcface-112")
        assert contract.weights_file and contract.weights_file.endswith(".pth")
        assert "https://" in contract.weights_source
    assert {contract_of(n).channel_order for n in ("arc18", "mag50", "ada100")} == {"BGR"}
    assert {contract_of(n).channel_order for n in ("facenet", "arc50", "arc152")} == {"RGB"}


@pytest.mark.parametrize("name, file, save, preprocess", CASES, ids=[c[0] for c in CASES])
def test_official_checkpoint_loads_and_gives_unit_embeddings_with_gradients(
    name: str, file: str, save: Callable[[State, Path], None], preprocess: Callable, tmp_path: Path, cache_dir: Path
) -> None:
    state = synthetic_state(name)
    (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
    save(state, tmp_path / file)
    model = create_face_recognizer(name, models_dir=tmp_path, cache_dir=cache_dir)
    assert model.weights_path == tmp_path / file and model.differentiable
    loaded = model.network.state_dict()  # every saved tensor arrived (PyTorch 0.4 files lack the counters)
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.endswith("num_batches_tracked"))

    size = model.contract.input_size
    faces = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1), requires_grad=True)
    emb = model(faces)
    assert emb.shape == (2, 512) and torch.isfinite(emb).all()
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    (emb[0] * emb[1]).sum().backward()  # cosine similarity, as an attacker's loss would use it
    assert faces.grad is not None and torch.isfinite(faces.grad).all() and faces.grad.abs().sum() > 0

    with torch.no_grad():  # the contract reproduces the codebase's own channel order and scaling
        expected = F.normalize(model.network(preprocess(faces)), dim=1)
        assert torch.allclose(model(faces), expected, atol=1e-5)
    with pytest.raises(ValueError, match="crops"):
        model(torch.rand(1, 3, 96, 96))


# errors --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ir18_states() -> dict[str, State]:
    return {name: synthetic_state(name) for name in ("insightface-r18", "arc18", "ada18")}


def _drop(state: State, *keys: str) -> State:
    return {k: v for k, v in state.items() if k not in keys}


@pytest.mark.parametrize(
    "name, file, save, mutate, expected",
    [
        ("insightface-r18", "ms1mv3_arcface_r18_fp16/backbone.pth", save_raw,
         lambda s: _drop(s, "layer2.1.conv1.weight"), ["1 missing key: layer2.1.conv1.weight"]),
        ("arc18", "arcface_ir18.pth", magface_saver("features.module."),
         lambda s: {**s, "fc.weight": torch.zeros(512, 100)},
         ["after removing the prefix 'features.module.'",
          "1 key with a wrong shape: fc.weight (file [512, 100], network [512, 25088])"]),
        ("ada18", "adaface_ir18_webface4m.ckpt", save_lightning,
         lambda s: {**s, "output_layer.5.weight": torch.zeros(3)},
         ["after removing the prefix 'model.'", "1 unexpected key: output_layer.5.weight"]),
    ],
    ids=["raw-missing", "magface-shape", "lightning-extra"],
)
def test_mismatched_checkpoint_names_file_and_keys(
    name: str, file: str, save, mutate, expected: list[str], ir18_states, tmp_path: Path, cache_dir: Path
) -> None:
    path = tmp_path / file
    path.parent.mkdir(parents=True, exist_ok=True)
    save(mutate(ir18_states[name]), path)
    with pytest.raises(CheckpointError) as info:
        create_face_recognizer(name, models_dir=tmp_path, cache_dir=cache_dir)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for part in expected:
        assert part in message


def test_many_missing_keys_are_listed_first_few_then_counted(ir18_states, tmp_path: Path, cache_dir: Path) -> None:
    state = ir18_states["insightface-r18"]
    dropped = [k for k in state if k.startswith("layer3.") and not k.endswith("num_batches_tracked")]
    save_raw(_drop(state, *dropped), tmp_path / "backbone.pth")
    with pytest.raises(CheckpointError) as info:
        load_official_checkpoint(official_model("insightface-r18").build(), tmp_path / "backbone.pth", "IResNet-18")
    message = str(info.value)
    assert f"{len(dropped)} missing keys: " + ", ".join(dropped[:SHOWN_KEYS]) in message
    assert f"({len(dropped) - SHOWN_KEYS} more)" in message
    assert dropped[SHOWN_KEYS] not in message


def test_checkpoint_of_another_model_is_refused(ir18_states, tmp_path: Path, cache_dir: Path) -> None:
    save_raw(ir18_states["ada18"], tmp_path / "arcface_ir18.pth")  # AdaFace weights under the Arc18 name
    with pytest.raises(CheckpointError, match=r"arcface_ir18\.pth does not fit IResNet-18 \(MagFace codebase\): "
                                              r"\d+ missing keys: conv1\.weight.*unexpected keys: input_layer"):
        create_face_recognizer("arc18", models_dir=tmp_path, cache_dir=cache_dir)


def test_missing_file_names_the_file_and_the_models_folder(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(MissingFileError) as info:
        create_face_recognizer("mag100", models_dir=tmp_path / "weights", cache_dir=cache_dir)
    message = str(info.value)
    assert "put magface_ir100.pth (or one of: magface_epoch_00025.pth) into the models folder" in message
    assert str(tmp_path / "weights") in message and "--models-dir" in message and "CAMPRO_BENCH_MODELS" in message


@pytest.mark.parametrize(
    "content, reason",
    [(b"\x00not a checkpoint" * 64, "not a PyTorch checkpoint"), (None, "PytorchStreamReader failed")],
    ids=["garbage", "truncated"],
)
def test_unreadable_file_is_a_checkpoint_error(content: bytes | None, reason: str, tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "magface_ir18.pth"
    if content is None:  # a download cut short
        torch.save({"state_dict": {"features.module.conv1.weight": torch.zeros(64, 3, 3, 3)}}, path)
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {path}: .*{reason}"):
        create_face_recognizer("mag18", models_dir=tmp_path, cache_dir=cache_dir)


def test_non_tensor_entries_and_empty_checkpoints_are_refused(tmp_path: Path, cache_dir: Path) -> None:
    torch.save({"conv1.weight": torch.zeros(1), "note": "hello"}, tmp_path / "arcface_ir152.pth")
    with pytest.raises(CheckpointError, match="entries that are not tensors: note"):
        create_face_recognizer("arc152", models_dir=tmp_path, cache_dir=cache_dir)
    torch.save({"epoch": 3}, tmp_path / "arcface_ir152.pth")
    with pytest.raises(CheckpointError, match="holds no state dict"):
        create_face_recognizer("arc152", models_dir=tmp_path, cache_dir=cache_dir)


class _Callback:
    """A class of the training script that wrote a checkpoint: not on the allow-list."""

    def __init__(self) -> None:
        self.dirpath = "/ckpt"


def test_allow_listed_extras_load_and_other_objects_are_refused(ir18_states, tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "adaface_ir18.pth"
    torch.save({"state_dict": {"model." + k: v for k, v in ir18_states["ada18"].items()},
                "callbacks": {"dirpath": pathlib.PurePosixPath("/ckpt")}}, path)
    with warnings.catch_warnings():  # paths, Counters, plain values: allow-listed, no warning
        warnings.simplefilter("error")
        model = create_face_recognizer("ada18", models_dir=tmp_path, cache_dir=cache_dir)
    assert torch.equal(model.network.body[0].res_layer[1].weight, ir18_states["ada18"]["body.0.res_layer.1.weight"])
    save_lightning(ir18_states["ada18"], path)
    create_face_recognizer("ada18", models_dir=tmp_path, cache_dir=cache_dir)
    torch.save({"state_dict": {"model." + k: v for k, v in ir18_states["ada18"].items()}, "callbacks": _Callback()},
               path)
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {path}: .*global .*_Callback, which is not read"):
        create_face_recognizer("ada18", models_dir=tmp_path, cache_dir=cache_dir)


def test_weights_id_follows_the_file_content(ir18_states, tmp_path: Path, cache_dir: Path) -> None:
    weights_id = FACE_RECOGNIZERS.entry("insightface-r18").metadata["weights_id"]
    with pytest.raises(MissingFileError):
        weights_id(tmp_path, cache_dir)
    path = tmp_path / "ms1mv3_arcface_r18_fp16" / "backbone.pth"
    path.parent.mkdir()
    save_raw(ir18_states["insightface-r18"], path)
    first = weights_id(tmp_path, cache_dir)
    model = create_face_recognizer("insightface-r18", models_dir=tmp_path, cache_dir=cache_dir)
    assert model.weights_hash == first
    save_raw(synthetic_state("insightface-r18", seed=5), path)
    assert weights_id(tmp_path, cache_dir) != first


def test_half_precision_checkpoint_loads_as_float32(ir18_states, tmp_path: Path, cache_dir: Path) -> None:
    half = {k: v.half() if v.is_floating_point() else v for k, v in ir18_states["insightface-r18"].items()}
    path = tmp_path / "ms1mv3_arcface_r18_fp16" / "backbone.pth"
    path.parent.mkdir()
    save_raw(half, path)
    model = create_face_recognizer("insightface-r18", models_dir=tmp_path, cache_dir=cache_dir)
    weight = model.network.layer1[0].conv1.weight
    assert weight.dtype == torch.float32 and torch.equal(weight, half["layer1.0.conv1.weight"].float())


def test_whole_pickled_module_is_refused_not_unpickled(tmp_path: Path, cache_dir: Path) -> None:
    network = official_model("ada18").build()
    torch.save(network, tmp_path / "adaface_ir18.pth")  # torch.save(model) rather than its state dict
    with pytest.raises(CheckpointError, match="which is not read .*save the model's state_dict instead"):
        create_face_recognizer("ada18", models_dir=tmp_path, cache_dir=cache_dir)
