"""SSD anchors and the box coder of the TensorFlow Object Detection API, in torch.

Boxes here follow TensorFlow's convention: normalised ``[ymin, xmin, ymax, xmax]`` in [0, 1] of
the network input. :func:`yxyx_to_xyxy` converts at the boundary to the rest of campro-bench.

* :func:`ssd_anchors` re-implements ``MultipleGridAnchorGenerator`` as built by
  ``ssd_anchor_generator`` (``min_scale``, ``max_scale``, aspect ratios, an interpolated square
  anchor per cell, three anchors only in the lowest layer), anchors ordered
  (row, column, anchor) per feature map and feature maps concatenated, as the graph does.
* :class:`BoxCoder` is ``FasterRcnnBoxCoder``: ``[ty, tx, th, tw]`` scaled by ``(10, 10, 5, 5)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

EPSILON = 1e-8


@dataclass(frozen=True)
class SSDAnchorConfig:
    """Parameters of TensorFlow's ``ssd_anchor_generator`` (defaults: SSDLite MobileNetV2 COCO)."""

    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.3333)
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = True
    base_anchor_size: tuple[float, float] = (1.0, 1.0)

    def box_specs(self, num_layers: int) -> list[list[tuple[float, float]]]:
        """(scale, aspect ratio) of every anchor of every layer."""
        scales = [
            self.min_scale + (self.max_scale - self.min_scale) * i / (num_layers - 1)
            for i in range(num_layers)
        ] + [1.0]
        specs = []
        for layer, (scale, scale_next) in enumerate(zip(scales[:-1], scales[1:])):
            if layer == 0 and self.reduce_boxes_in_lowest_layer:
                specs.append([(0.1, 1.0), (scale, 2.0), (scale, 0.5)])
                continue
            layer_specs = [(scale, ar) for ar in self.aspect_ratios]
            if self.interpolated_scale_aspect_ratio > 0:
                layer_specs.append((math.sqrt(scale * scale_next), self.interpolated_scale_aspect_ratio))
            specs.append(layer_specs)
        return specs

    def anchors_per_location(self, num_layers: int) -> list[int]:
        return [len(s) for s in self.box_specs(num_layers)]


def ssd_anchors(
    feature_map_sizes: list[tuple[int, int]],
    config: SSDAnchorConfig = SSDAnchorConfig(),
    image_size: tuple[int, int] = (300, 300),
) -> torch.Tensor:
    """All anchors, ``A x 4`` normalised ``[ymin, xmin, ymax, xmax]`` (float32).

    ``feature_map_sizes`` are (height, width) per layer, e.g. 19, 10, 5, 3, 2, 1 for a 300x300
    input, giving 19*19*3 + (10*10 + 5*5 + 3*3 + 2*2 + 1) * 6 = 1917 anchors.
    """
    im_h, im_w = image_size
    min_side = min(im_h, im_w)
    base_h = min_side / im_h * config.base_anchor_size[0]
    base_w = min_side / im_w * config.base_anchor_size[1]
    all_anchors = []
    for (fm_h, fm_w), specs in zip(feature_map_sizes, config.box_specs(len(feature_map_sizes))):
        scales = torch.tensor([s for s, _ in specs], dtype=torch.float32)
        ratios = torch.tensor([a for _, a in specs], dtype=torch.float32).sqrt()
        heights = scales / ratios * base_h
        widths = scales * ratios * base_w
        stride_y, stride_x = 1.0 / fm_h, 1.0 / fm_w
        y_centers = torch.arange(fm_h, dtype=torch.float32) * stride_y + 0.5 * stride_y
        x_centers = torch.arange(fm_w, dtype=torch.float32) * stride_x + 0.5 * stride_x
        yc, xc = torch.meshgrid(y_centers, x_centers, indexing="ij")  # H x W
        yc = yc[..., None].expand(fm_h, fm_w, len(specs))
        xc = xc[..., None].expand(fm_h, fm_w, len(specs))
        h = heights.expand(fm_h, fm_w, len(specs))
        w = widths.expand(fm_h, fm_w, len(specs))
        boxes = torch.stack([yc - 0.5 * h, xc - 0.5 * w, yc + 0.5 * h, xc + 0.5 * w], dim=-1)
        all_anchors.append(boxes.reshape(-1, 4))
    return torch.cat(all_anchors)


def center_size(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[ymin, xmin, ymax, xmax]`` -> (ycenter, xcenter, height, width)."""
    ymin, xmin, ymax, xmax = boxes.unbind(-1)
    h = ymax - ymin
    w = xmax - xmin
    return ymin + h / 2.0, xmin + w / 2.0, h, w


@dataclass(frozen=True)
class BoxCoder:
    """TensorFlow's ``FasterRcnnBoxCoder``: boxes <-> ``[ty, tx, th, tw]`` relative to anchors."""

    scale_factors: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)

    def encode(self, boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Boxes ``... x 4`` (yxyx) matched to ``anchors`` (same shape) -> encodings ``... x 4``."""
        yca, xca, ha, wa = center_size(anchors)
        yc, xc, h, w = center_size(boxes)
        ha = ha + EPSILON
        wa = wa + EPSILON
        h = h + EPSILON
        w = w + EPSILON
        sy, sx, sh, sw = self.scale_factors
        return torch.stack(
            [(yc - yca) / ha * sy, (xc - xca) / wa * sx, torch.log(h / ha) * sh, torch.log(w / wa) * sw],
            dim=-1,
        )

    def decode(self, encodings: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Encodings ``... x A x 4`` and anchors ``A x 4`` -> boxes ``... x A x 4`` (yxyx)."""
        yca, xca, ha, wa = center_size(anchors)
        ty, tx, th, tw = encodings.unbind(-1)
        sy, sx, sh, sw = self.scale_factors
        w = torch.exp(tw / sw) * wa
        h = torch.exp(th / sh) * ha
        yc = ty / sy * ha + yca
        xc = tx / sx * wa + xca
        return torch.stack([yc - h / 2.0, xc - w / 2.0, yc + h / 2.0, xc + w / 2.0], dim=-1)


def yxyx_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    return boxes[..., [1, 0, 3, 2]]


def xyxy_to_yxyx(boxes: torch.Tensor) -> torch.Tensor:
    return boxes[..., [1, 0, 3, 2]]
