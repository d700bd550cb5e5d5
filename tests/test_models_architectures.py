"""The re-implemented face networks have exactly the upstream parameter names and shapes.

The reference fingerprints below were computed from the upstream module definitions
(deepinsight/insightface ``recognition/arcface_torch/backbones/iresnet.py`` at d9cb10e,
IrvingMeng/MagFace ``models/iresnet.py`` at 719001a, TreB1eN/InsightFace_Pytorch ``model.py`` at
016916f, ZhaoJ9014/face.evoLVe ``backbone/model_irse.py``, mk-minchul/AdaFace ``net.py``) by
instantiating them and hashing their state-dict layout with :func:`layout`. The same upstream
definitions, loaded with identical random weights, gave outputs identical to these modules
(max abs difference 0.0 for IResNet-18 in both variants, IR-SE-50 and AdaFace IR-18).
A checkpoint loads strictly only if every name and shape agrees, so these fingerprints are what
"loads the official checkpoints" rests on.
"""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from campro_bench.recognizers.iresnet import IResNet, iresnet
from campro_bench.recognizers.irse import STYLES, IRBackbone, ir_backbone


def layout(network: nn.Module) -> tuple[int, int, str]:
    """(number of state-dict entries, number of weights, hash of the sorted ``name:shape`` lines)."""
    state = network.state_dict()
    lines = sorted(f"{k}:{tuple(v.shape)}" for k, v in state.items())
    weights = sum(v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))
    return len(lines), weights, hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


UPSTREAM = {
    "insightface iresnet18": (187, 24040320, "31bf675e59f4fda4"),
    "insightface iresnet34": (331, 34165184, "840640ff0e76e0c9"),
    "insightface iresnet50": (475, 43628992, "2771a5e3db26a3fe"),
    "insightface iresnet100": (925, 65225792, "957bd9830adf8fc8"),
    "insightface iresnet200": (1807, 118969984, "c92e8f106bb593ca"),
    "magface iresnet18": (187, 24040320, "31bf675e59f4fda4"),
    "treb1en ir_se50": (397, 43824064, "078998bb640d1915"),
    "evolve ir152": (687, 70788544, "8fd2d5a721d0ac68"),
    "adaface ir18": (179, 24034944, "ab3cda4f8e29d6ab"),
    "adaface ir50": (467, 43623616, "a63b28f100a934e8"),
    "adaface ir101": (917, 65220416, "8e8d2eec7e3fae8e"),
    "facenet-pytorch InceptionResnetV1": (714, 23512224, "ffd90a8243a82ca6"),
}


def _facenet() -> nn.Module:
    from facenet_pytorch import InceptionResnetV1

    return InceptionResnetV1()


BUILDERS = {
    "insightface iresnet18": lambda: iresnet(18),
    "insightface iresnet34": lambda: iresnet(34),
    "insightface iresnet50": lambda: iresnet(50),
    "insightface iresnet100": lambda: iresnet(100),
    "insightface iresnet200": lambda: iresnet(200),
    "magface iresnet18": lambda: iresnet(18, "magface"),
    "treb1en ir_se50": lambda: ir_backbone(50, "insightface_pytorch", se=True),
    "evolve ir152": lambda: ir_backbone(152, "insightface_pytorch"),
    "adaface ir18": lambda: ir_backbone(18, "adaface"),
    "adaface ir50": lambda: ir_backbone(50, "adaface"),
    "adaface ir101": lambda: ir_backbone(100, "adaface"),
    "facenet-pytorch InceptionResnetV1": _facenet,
}


@pytest.mark.parametrize("name", list(UPSTREAM))
def test_state_dict_layout_matches_upstream(name: str) -> None:
    with torch.device("meta"):  # shapes only: even IResNet-200 costs nothing
        network = BUILDERS[name]()
    assert layout(network) == UPSTREAM[name]


def test_variants_differ_only_in_weight_free_settings() -> None:
    with torch.device("meta"):
        insight, mag = iresnet(50), iresnet(50, "magface")
    assert layout(insight) == layout(mag)
    assert {m.eps for m in insight.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)} == {1e-5}
    assert {m.eps for m in mag.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)} == {2e-5}
    assert not insight.features.weight.requires_grad and mag.features.weight.requires_grad
    assert isinstance(mag.dropout, nn.Dropout2d) and isinstance(insight.dropout, nn.Dropout)


def test_adaface_embedding_norm_has_no_scale_and_treb1en_has_one() -> None:
    with torch.device("meta"):
        ada, treb = ir_backbone(18, "adaface"), ir_backbone(50, "insightface_pytorch")
    assert ada.output_layer[4].weight is None and treb.output_layer[4].weight is not None
    # AdaFace puts a BN between the first convolution and the PReLU of every unit
    assert [type(m).__name__ for m in ada.body[0].res_layer] == [
        "BatchNorm2d", "Conv2d", "BatchNorm2d", "PReLU", "Conv2d", "BatchNorm2d"]
    assert [type(m).__name__ for m in treb.body[0].res_layer] == [
        "BatchNorm2d", "Conv2d", "PReLU", "Conv2d", "BatchNorm2d"]


@pytest.mark.parametrize(
    "build",
    [lambda: IResNet(18), lambda: IRBackbone(18, STYLES["adaface"])],
    ids=["iresnet18", "adaface-ir18"],
)
def test_forward_gives_one_embedding_per_face_and_downsamples_16x(build) -> None:
    network = build().eval()
    with torch.inference_mode():
        out = network(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 512) and torch.isfinite(out).all()
    with pytest.raises(RuntimeError):  # the 7x7x512 -> 512 layer fixes the input at 112x112
        network(torch.randn(1, 3, 96, 96))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: iresnet(20), "depth must be one of"),
        (lambda: iresnet(18, "arcface"), "variant must be one of"),
        (lambda: ir_backbone(152, "adaface"), "depth must be one of"),
        (lambda: ir_backbone(18, "insightface_pytorch"), "depth must be one of"),
        (lambda: ir_backbone(50, "evolve"), "style must be one of"),
    ],
)
def test_unsupported_configurations_are_refused(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()
