"""The paper's ten face recognisers (Table I) and insightface's, from official checkpoints.

No weights of these models can be downloaded at run time; the user puts the official files in the
models folder (``--models-dir`` / ``CAMPRO_BENCH_MODELS``). Each model is one :class:`OfficialModel`
entry: its architecture, the wrappers its checkpoints come in, and its contract (file names,
source, input size, alignment, channel order, normalisation). Registration turns every entry into a
``FACE_RECOGNIZERS`` factory with the contract and a ``weights_id`` hook in the registry metadata.

File names: the CamPro artifact's ``weights/<name>.pth`` names come first (so the artifact's folder
works as the models folder as it is); the upstream release names are accepted as alternates. The
paper's models and how each codebase feeds its network:

===========  ==========================================  ==========  =====================
name         architecture (codebase)                      channels    normalisation
===========  ==========================================  ==========  =====================
facenet      InceptionResnetV1, 160x160 (facenet-pytorch)  RGB         (x - 127.5) / 128
arc18        IResNet-18 (MagFace codebase, ArcFace loss)   BGR         x / 255
arc50        IR-SE-50 (TreB1eN InsightFace_Pytorch)         RGB         (x - 127.5) / 127.5
arc152       IR-152 (face.evoLVe layout)                    RGB         (x - 127.5) / 127.5
mag18/50/100 IResNet-18/50/100 (MagFace)                    BGR         x / 255
ada18/50/100 IR-18/50/101 (AdaFace net.py)                  BGR         (x - 127.5) / 127.5
===========  ==========================================  ==========  =====================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..registries import FACE_RECOGNIZERS
from .base import FaceModelContract, FaceRecognizer
from .iresnet import iresnet
from .irse import ir_backbone
from .packaged import file_sha256
from .weights import load_official_checkpoint, locate_weights

WEIGHTS_ID_VERSION = 1
"""Bumped when the preprocessing or the network code changes outputs for the same file."""

MAGFACE_PREFIXES = ("features.module.", "module.features.", "module.")
"""MagFace saves ``{"state_dict": ...}`` of its training model, backbone under ``features``."""
LIGHTNING_PREFIXES = ("model.", "module.")
"""AdaFace's PyTorch Lightning ``.ckpt``: backbone under ``model.``, margin head ``head.kernel``."""
PLAIN_PREFIXES = ("module.",)
"""Raw state dicts, possibly saved from ``nn.DataParallel``."""

CAMPRO_ARTIFACT = "CamPro artifact weights/ folder, https://github.com/forget2save/CamPro"


@dataclass(frozen=True)
class Preprocessing:
    """Channel order and normalisation of a codebase, on [0, 1] inputs."""

    channel_order: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    formula: str


RGB_HALF = Preprocessing("RGB", (0.5,) * 3, (0.5,) * 3, "(x - 127.5) / 127.5")
BGR_HALF = Preprocessing("BGR", (0.5,) * 3, (0.5,) * 3, "(x - 127.5) / 127.5")
BGR_UNIT = Preprocessing("BGR", (0.0,) * 3, (1.0,) * 3, "x / 255")
FACENET_FIXED = Preprocessing("RGB", (0.5,) * 3, (128.0 / 255.0,) * 3, "(x - 127.5) / 128")


def official_contract(
    weights_file: str,
    source: str,
    preprocessing: Preprocessing,
    *,
    alternates: tuple[str, ...] = (),
    input_size: tuple[int, int] = (112, 112),
    alignment: str = "arcface-112",
    **extra: Any,
) -> FaceModelContract:
    """A 512-d, L2-normalised contract for a user-supplied checkpoint."""
    return FaceModelContract(
        input_size=input_size,
        alignment=alignment,
        channel_order=preprocessing.channel_order,  # type: ignore[arg-type]
        mean=preprocessing.mean,
        std=preprocessing.std,
        embedding_size=512,
        l2_normalize=True,
        weights_file=weights_file,
        weights_source=source,
        extra={"alternate_files": alternates, "normalisation": preprocessing.formula, **extra},
    )


@dataclass(frozen=True)
class OfficialModel:
    """A registered recogniser built from an official checkpoint.

    Attributes:
        name: registry name.
        architecture: human name of the network and its codebase, used in messages.
        build: the untrained network (module names as upstream).
        contract: preprocessing and files.
        prefixes: wrapper prefixes stripped from checkpoint keys (see
            :func:`~campro_bench.recognizers.weights.unwrap_state_dict`).
        ignore: key prefixes dropped (classifier layers saved with the backbone).
        paper_name: the model's name in the paper's Table I, if it is one of them.
        description: one line for ``campro-bench list``.
    """

    name: str
    architecture: str
    build: Callable[[], nn.Module]
    contract: FaceModelContract
    prefixes: tuple[str, ...] = PLAIN_PREFIXES
    ignore: tuple[str, ...] = ()
    paper_name: str | None = None
    description: str = ""


class OfficialRecognizer(FaceRecognizer):
    """A network with official weights: RGB [0, 1] crops in, unit-length embeddings out."""

    def __init__(self, network: nn.Module, contract: FaceModelContract, weights_hash: str, weights_path: Path) -> None:
        super().__init__(contract, weights_hash)
        self.network = network
        self.weights_path = weights_path

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        self.check_input(faces)
        return F.normalize(self.network(self.normalize(faces)), p=2, dim=1)


def _inception_resnet_v1() -> nn.Module:
    from facenet_pytorch import InceptionResnetV1  # imports OpenCV: only when FaceNet is built

    return InceptionResnetV1(pretrained=None, classify=False)


def _magface(name: str, depth: int, file: str, source: str, paper: str, alternates: tuple[str, ...] = (), **extra: Any) -> OfficialModel:
    return OfficialModel(
        name,
        f"IResNet-{depth} (MagFace codebase)",
        lambda: iresnet(depth, "magface"),
        official_contract(file, source, BGR_UNIT, alternates=alternates, **extra),
        MAGFACE_PREFIXES,
        paper_name=paper,
        description=f"{paper}: {extra.get('loss', 'MagFace')} iResNet{depth} ({extra['training_data']}), MagFace checkpoint",
    )


def _adaface(depth: int, alternates: tuple[str, ...]) -> OfficialModel:
    label = "101" if depth == 100 else str(depth)  # AdaFace calls its 100-layer net "IR-101"
    return OfficialModel(
        f"ada{depth}",
        f"IR-{label} (AdaFace net.py)",
        lambda: ir_backbone(depth, "adaface"),
        official_contract(
            f"adaface_ir{depth}.pth",
            f"AdaFace release adaface_ir{label}_<dataset>.ckpt, https://github.com/mk-minchul/AdaFace; "
            + CAMPRO_ARTIFACT,
            BGR_HALF,
            alternates=alternates,
        ),
        LIGHTNING_PREFIXES,
        paper_name=f"Ada{depth}",
        description=f"Ada{depth}: AdaFace IR-{label}, Lightning .ckpt or raw state dict",
    )


def _insightface(depth: int) -> OfficialModel:
    folder = f"ms1mv3_arcface_r{depth}_fp16"
    return OfficialModel(
        f"insightface-r{depth}",
        f"IResNet-{depth} (insightface arcface_torch)",
        lambda: iresnet(depth, "insightface"),
        official_contract(
            f"{folder}/backbone.pth",
            f"insightface arcface_torch model zoo ({folder}, MS1MV3, ArcFace), "
            "https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch",
            RGB_HALF,
            training_data="MS1MV3",
        ),
        description=f"insightface arcface_torch IResNet-{depth} (MS1MV3, ArcFace), backbone.pth",
    )


OFFICIAL_MODELS: tuple[OfficialModel, ...] = (
    OfficialModel(
        "facenet",
        "InceptionResnetV1 (facenet-pytorch)",
        _inception_resnet_v1,
        official_contract(
            "facenet.pth",
            "facenet-pytorch VGGFace2 weights (Sandberg 20180402-114759), "
            "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt; "
            + CAMPRO_ARTIFACT,
            FACENET_FIXED,
            alternates=("20180402-114759-vggface2.pt",),
            input_size=(160, 160),
            alignment="facenet-160",
            training_data="VGGFace2",
        ),
        ignore=("logits.",),
        paper_name="FaceNet",
        description="FaceNet: InceptionResnetV1 (VGGFace2), facenet-pytorch state dict",
    ),
    _magface(
        "arc18", 18, "arcface_ir18.pth",
        "MagFace model zoo, ArcFace iResNet18 CASIA-WebFace (DP), https://github.com/IrvingMeng/MagFace; " + CAMPRO_ARTIFACT,
        "Arc18", loss="ArcFace", training_data="CASIA-WebFace",
    ),
    OfficialModel(
        "arc50",
        "IR-SE-50 (TreB1eN InsightFace_Pytorch)",
        lambda: ir_backbone(50, "insightface_pytorch", se=True),
        official_contract(
            "arcface_irse50.pth",
            "TreB1eN/InsightFace_Pytorch model_ir_se50.pth (MS1M, ArcFace), "
            "https://github.com/TreB1eN/InsightFace_Pytorch; " + CAMPRO_ARTIFACT,
            RGB_HALF,
            alternates=("model_ir_se50.pth", "irse50.pth"),
            training_data="MS1M",
        ),
        paper_name="Arc50",
        description="Arc50: ArcFace IR-SE-50 (TreB1eN InsightFace_Pytorch), raw state dict",
    ),
    OfficialModel(
        "arc152",
        "IR-152 (face.evoLVe / InsightFace_Pytorch layout)",
        lambda: ir_backbone(152, "insightface_pytorch"),
        official_contract(
            "arcface_ir152.pth",
            "face.evoLVe IR-152 (MS1M, ArcFace), https://github.com/ZhaoJ9014/face.evoLVe, distributed as "
            "ir152.pth with TIP-IM/AMT-GAN; " + CAMPRO_ARTIFACT,
            RGB_HALF,
            alternates=("ir152.pth",),
            training_data="MS1M",
        ),
        paper_name="Arc152",
        description="Arc152: ArcFace IR-152 (face.evoLVe layout), raw state dict",
    ),
    _magface(
        "mag18", 18, "magface_ir18.pth",
        "MagFace model zoo, MagFace iResNet18 CASIA-WebFace (DP), https://github.com/IrvingMeng/MagFace; " + CAMPRO_ARTIFACT,
        "Mag18", training_data="CASIA-WebFace",
    ),
    _magface(
        "mag50", 50, "magface_ir50.pth",
        "MagFace model zoo, MagFace iResNet50 MS1MV2, https://github.com/IrvingMeng/MagFace; " + CAMPRO_ARTIFACT,
        "Mag50", training_data="MS1MV2",
    ),
    _magface(
        "mag100", 100, "magface_ir100.pth",
        "MagFace model zoo, MagFace iResNet100 MS1MV2 (magface_epoch_00025.pth), "
        "https://github.com/IrvingMeng/MagFace; " + CAMPRO_ARTIFACT,
        "Mag100", alternates=("magface_epoch_00025.pth",), training_data="MS1MV2",
    ),
    _adaface(18, ("adaface_ir18_webface4m.ckpt", "adaface_ir18_vgg2.ckpt", "adaface_ir18_casia.ckpt")),
    _adaface(50, ("adaface_ir50_ms1mv2.ckpt", "adaface_ir50_webface4m.ckpt", "adaface_ir50_casia.ckpt")),
    _adaface(100, ("adaface_ir101_webface12m.ckpt", "adaface_ir101_webface4m.ckpt", "adaface_ir101_ms1mv2.ckpt")),
    *(_insightface(depth) for depth in (18, 34, 50, 100)),
)
"""Every model of this module; the first ten are the paper's Table I, in its order."""

PAPER_MODELS: tuple[str, ...] = tuple(m.name for m in OFFICIAL_MODELS if m.paper_name)

_BY_NAME = {m.name: m for m in OFFICIAL_MODELS}


def official_model(name: str) -> OfficialModel:
    """The :class:`OfficialModel` entry registered as ``name``."""
    return _BY_NAME[name]


def weights_id(model: OfficialModel, models_dir: Path, cache_dir: Path | None = None) -> str:
    """Identity of the weights ``model`` would load from ``models_dir`` (for cache keys)."""
    return _hash_id(locate_weights(model.name, models_dir, model.contract), cache_dir)


def _hash_id(path: Path, cache_dir: Path | None) -> str:
    return f"{file_sha256(path, cache_dir)[:16]}-v{WEIGHTS_ID_VERSION}"


def build_official(model: OfficialModel, models_dir: Path, cache_dir: Path, device: torch.device) -> OfficialRecognizer:
    """Locate, read and strictly load ``model``'s checkpoint (moved to ``device`` by the caller)."""
    path = locate_weights(model.name, models_dir, model.contract)
    network = load_official_checkpoint(model.build(), path, model.architecture, model.prefixes, model.ignore)
    return OfficialRecognizer(network, model.contract, _hash_id(path, cache_dir), path)


def _register(model: OfficialModel) -> None:
    def factory(models_dir: Path, cache_dir: Path, device: torch.device) -> OfficialRecognizer:
        return build_official(model, models_dir, cache_dir, device)

    factory.__name__ = factory.__qualname__ = f"build_{model.name.replace('-', '_')}"
    FACE_RECOGNIZERS.register(
        model.name,
        contract=model.contract,
        weights_id=lambda models_dir, cache_dir=None: weights_id(model, models_dir, cache_dir),
        paper_name=model.paper_name,
        architecture=model.architecture,
        description=model.description,
    )(factory)


for _model in OFFICIAL_MODELS:
    _register(_model)
