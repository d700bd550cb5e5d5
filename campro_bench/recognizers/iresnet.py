"""IResNet ("improved ResNet") backbones of insightface ``arcface_torch`` and of MagFace.

Both projects define the same network (``recognition/arcface_torch/backbones/iresnet.py`` in
deepinsight/insightface, ``models/iresnet.py`` in IrvingMeng/MagFace), so their checkpoints share
every parameter name and shape: ``conv1``, ``bn1``, ``prelu``, ``layer1..4.<i>.{bn1, conv1, bn2,
prelu, conv2, bn3, downsample.0, downsample.1}``, ``bn2``, ``fc`` and the embedding batch-norm
``features``. They differ only in details that carry no weights, captured by
:class:`IResNetVariant`: batch-norm epsilon (1e-5 vs 2e-5) and momentum, the dropout before the
embedding layer, and whether the scale of ``features`` is frozen during training. The module
names here are exactly the upstream ones so that upstream state dicts load without renaming.

Input: ``N x 3 x 112 x 112`` (already normalised by the caller); output ``N x embedding_size``,
not normalised (MagFace encodes face quality in the norm).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

IRESNET_UNITS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    200: (6, 26, 60, 6),
}
"""Residual units per stage for each depth (insightface ``iresnet18 .. iresnet200``)."""

STAGE_WIDTHS = (64, 128, 256, 512)


@dataclass(frozen=True)
class IResNetVariant:
    """Weight-free differences between the codebases that publish IResNet checkpoints.

    Attributes:
        name: short name used in descriptions.
        bn_eps: epsilon of every batch-norm layer.
        bn_momentum: torch momentum of every batch-norm layer (matters only when fine-tuning).
        dropout: dropout probability before the embedding layer (training only).
        spatial_dropout: ``True``: channel dropout on the 7x7 maps (MagFace ``Dropout2d``);
            ``False``: element dropout on the flattened vector (insightface).
        freeze_embedding_scale: insightface keeps the scale of ``features`` fixed at 1.
    """

    name: str
    bn_eps: float
    bn_momentum: float
    dropout: float
    spatial_dropout: bool
    freeze_embedding_scale: bool


INSIGHTFACE = IResNetVariant("insightface", 1e-5, 0.1, 0.0, False, True)
MAGFACE = IResNetVariant("magface", 2e-5, 0.9, 0.4, True, False)
VARIANTS = {v.name: v for v in (INSIGHTFACE, MAGFACE)}


def _bn2d(channels: int, variant: IResNetVariant) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=variant.bn_eps, momentum=variant.bn_momentum)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """Pre-activation unit BN-conv-BN-PReLU-conv(stride)-BN plus a shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int, variant: IResNetVariant) -> None:
        super().__init__()
        self.bn1 = _bn2d(inplanes, variant)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = _bn2d(planes, variant)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = _bn2d(planes, variant)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                _bn2d(planes, variant),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """IResNet-``depth`` for 112x112 faces, producing an ``embedding_size`` vector."""

    def __init__(self, depth: int, variant: IResNetVariant = INSIGHTFACE, embedding_size: int = 512) -> None:
        super().__init__()
        if depth not in IRESNET_UNITS:
            raise ValueError(f"IResNet depth must be one of {sorted(IRESNET_UNITS)}, got {depth}")
        self.depth = depth
        self.variant = variant
        self.conv1 = _conv3x3(3, 64)
        self.bn1 = _bn2d(64, variant)
        self.prelu = nn.PReLU(64)
        inplanes = 64
        for index, (units, planes) in enumerate(zip(IRESNET_UNITS[depth], STAGE_WIDTHS), start=1):
            blocks = [IBasicBlock(inplanes, planes, 2, variant)]
            blocks += [IBasicBlock(planes, planes, 1, variant) for _ in range(units - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
            inplanes = planes
        self.bn2 = _bn2d(512, variant)
        self.dropout: nn.Module = (
            nn.Dropout2d(variant.dropout) if variant.spatial_dropout else nn.Dropout(variant.dropout)
        )
        self.fc = nn.Linear(512 * 7 * 7, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=variant.bn_eps, momentum=variant.bn_momentum)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = not variant.freeze_embedding_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.bn2(x)
        if self.variant.spatial_dropout:
            x = torch.flatten(self.dropout(x), 1)
        else:
            x = self.dropout(torch.flatten(x, 1))
        return self.features(self.fc(x))


def iresnet(depth: int, variant: str = "insightface", embedding_size: int = 512) -> IResNet:
    """IResNet-``depth`` in the layout of ``variant`` (``"insightface"`` or ``"magface"``)."""
    if variant not in VARIANTS:
        raise ValueError(f"IResNet variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    return IResNet(depth, VARIANTS[variant], embedding_size)
