"""IR / IR-SE backbones of the ``input_layer / body / output_layer`` family.

Three projects publish checkpoints of this family, each with its own small twist:

* TreB1eN/InsightFace_Pytorch ``model.py`` (``model_ir_se50.pth``: IR-SE-50) and ZhaoJ9014/face.evoLVe
  ``backbone/model_irse.py`` (IR-50/101/152, IR-SE-50/101/152; the IR-152 used by the CamPro
  artifact): unit ``res_layer`` = BN, conv3x3, PReLU, conv3x3(stride), BN [, SE]; the embedding
  batch-norm has a learnt scale and shift.
* mk-minchul/AdaFace ``net.py`` (IR-18/34/50/101, where "IR-101" has 100 layers): one more BN after
  the first convolution (BN, conv3x3, BN, PReLU, conv3x3(stride), BN) and an embedding batch-norm
  without scale and shift (``affine=False``).

Parameter names follow the upstream modules exactly: ``input_layer.{0,1,2}``,
``body.<i>.shortcut_layer.{0,1}`` (only where the width changes; otherwise the shortcut is a 1x1
max-pool with the unit's stride and has no weights), ``body.<i>.res_layer.<j>`` (the SE block, when
present, is ``res_layer.5.fc1`` / ``res_layer.5.fc2`` in TreB1eN layout), and
``output_layer.{0: BN2d, 3: Linear, 4: BN1d}`` (1 and 2 are dropout and flatten).

Only the 112x112 input and the basic (non-bottleneck) units are implemented: every published
checkpoint of the models above uses them. Output: ``N x embedding_size``, not normalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .iresnet import STAGE_WIDTHS


@dataclass(frozen=True)
class IRStyle:
    """What distinguishes the codebases of this family (no effect on the depth tables).

    Attributes:
        name: short name used in descriptions.
        bn_after_first_conv: AdaFace adds a BN between the first convolution and the PReLU.
        embedding_bn_affine: whether the last BatchNorm1d has weight and bias.
        dropout: dropout probability in ``output_layer`` (training only).
        units: residual units per stage for each supported depth.
    """

    name: str
    bn_after_first_conv: bool
    embedding_bn_affine: bool
    dropout: float
    units: dict[int, tuple[int, int, int, int]]


INSIGHTFACE_PYTORCH = IRStyle(
    "insightface_pytorch",
    bn_after_first_conv=False,
    embedding_bn_affine=True,
    dropout=0.5,
    units={50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)},
)
ADAFACE = IRStyle(
    "adaface",
    bn_after_first_conv=True,
    embedding_bn_affine=False,
    dropout=0.4,
    units={18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)},
)
STYLES = {s.name: s for s in (INSIGHTFACE_PYTORCH, ADAFACE)}


class SEModule(nn.Module):
    """Squeeze-and-excitation gate with 1x1 convolutions ``fc1`` / ``fc2`` (no biases)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class IRUnit(nn.Module):
    """One residual unit: ``res_layer(x) + shortcut_layer(x)``."""

    def __init__(self, cin: int, cout: int, stride: int, style: IRStyle, se: bool) -> None:
        super().__init__()
        self.shortcut_layer: nn.Module
        if cin == cout:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )
        layers: list[nn.Module] = [nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False)]
        if style.bn_after_first_conv:
            layers.append(nn.BatchNorm2d(cout))
        layers += [nn.PReLU(cout), nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)]
        if se:
            layers.append(SEModule(cout, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRBackbone(nn.Module):
    """IR-``depth`` (or IR-SE-``depth`` with ``se=True``) for 112x112 faces in ``style`` layout."""

    def __init__(self, depth: int, style: IRStyle, se: bool = False, embedding_size: int = 512) -> None:
        super().__init__()
        if depth not in style.units:
            raise ValueError(f"{style.name} IR depth must be one of {sorted(style.units)}, got {depth}")
        self.depth, self.style, self.se = depth, style, se
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units: list[nn.Module] = []
        cin = 64
        for count, width in zip(style.units[depth], STAGE_WIDTHS):
            for i in range(count):
                units.append(IRUnit(cin, width, 2 if i == 0 else 1, style, se))
                cin = width
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(style.dropout),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, embedding_size),
            nn.BatchNorm1d(embedding_size, affine=style.embedding_bn_affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(x)))


def ir_backbone(depth: int, style: str, se: bool = False, embedding_size: int = 512) -> IRBackbone:
    """IR / IR-SE backbone in the layout of ``style`` (``"insightface_pytorch"`` or ``"adaface"``)."""
    if style not in STYLES:
        raise ValueError(f"IR style must be one of {sorted(STYLES)}, got {style!r}")
    return IRBackbone(depth, STYLES[style], se, embedding_size)
