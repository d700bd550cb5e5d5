"""Anchors, box coding, NMS and the TensorFlow-compatible resize/padding of the SSD detector."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from campro_bench.detection.boxes import BoxCoder, SSDAnchorConfig, center_size, ssd_anchors, xyxy_to_yxyx, yxyx_to_xyxy
from campro_bench.detection.postprocess import multiclass_nms
from campro_bench.detection.ssdlite import same_padding, tf_resize_bilinear

FEATURE_MAPS = [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]


def test_anchor_count_shape_and_layout() -> None:
    anchors = ssd_anchors(FEATURE_MAPS)
    assert anchors.shape == (1917, 4)
    assert SSDAnchorConfig().anchors_per_location(6) == [3, 6, 6, 6, 6, 6]
    yc, xc, h, w = center_size(anchors)
    # first layer: 3 anchors per cell of the 19x19 grid, centre of cell (0, 0) at 0.5/19
    assert torch.allclose(yc[:3], torch.full((3,), 0.5 / 19))
    assert torch.allclose(xc[3:6], torch.full((3,), 1.5 / 19))  # next column, same row
    assert torch.allclose(h[:3] * w[:3], torch.tensor([0.01, 0.04, 0.04]), atol=1e-6)  # scale^2
    assert torch.allclose(w[1] / h[1], torch.tensor(2.0), atol=1e-5)  # aspect ratio 2
    # last layer: one cell at the centre, 6 anchors, interpolated scale sqrt(0.95 * 1)
    assert torch.allclose(yc[-6:], torch.full((6,), 0.5))
    assert math.isclose(float(h[-1]), math.sqrt(0.95), rel_tol=1e-6)
    # all centres inside the image
    assert bool(((yc > 0) & (yc < 1) & (xc > 0) & (xc < 1)).all())


def test_box_encode_decode_round_trip() -> None:
    g = torch.Generator().manual_seed(0)
    anchors = ssd_anchors(FEATURE_MAPS)
    centers = torch.rand(1917, 2, generator=g) * 0.8 + 0.1
    sizes = torch.rand(1917, 2, generator=g) * 0.5 + 0.01
    boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], 1)
    coder = BoxCoder()
    codes = coder.encode(boxes, anchors)
    assert torch.allclose(coder.decode(codes, anchors), boxes, atol=1e-5)
    # an anchor encodes to ~zero and a zero code decodes to the anchor
    assert torch.allclose(coder.encode(anchors, anchors), torch.zeros(1917, 4), atol=1e-4)
    assert torch.allclose(coder.decode(torch.zeros(1917, 4), anchors), anchors, atol=1e-6)
    # scale factors: a box shifted by half an anchor height has ty = 0.5 * 10
    shifted = anchors[:1].clone()
    h = shifted[0, 2] - shifted[0, 0]
    shifted[0, [0, 2]] += h / 2
    assert math.isclose(float(coder.encode(shifted, anchors[:1])[0, 0]), 5.0, rel_tol=1e-4)


def test_box_order_conversions_are_inverse() -> None:
    b = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert torch.equal(yxyx_to_xyxy(b), torch.tensor([[2.0, 1.0, 4.0, 3.0]]))
    assert torch.equal(xyxy_to_yxyx(yxyx_to_xyxy(b)), b)


def test_nms_suppresses_overlaps_per_class_and_clips() -> None:
    boxes = torch.tensor(
        [
            [0.10, 0.10, 0.50, 0.50],  # best
            [0.11, 0.11, 0.51, 0.51],  # IoU ~0.9 with the first: suppressed in its class
            [0.60, 0.60, 0.90, 0.90],  # separate
            [0.50, 0.90, 0.80, 1.20],  # sticks out: clipped to x <= 1
            [1.10, 1.10, 1.30, 1.30],  # fully outside: zero area after clipping, dropped
        ]
    )
    scores = torch.tensor(
        [[0.9, 0.0], [0.8, 0.7], [0.3, 0.0], [0.5, 0.0], [0.95, 0.0]]
    )
    out_boxes, out_scores, classes = multiclass_nms(boxes, scores, iou_threshold=0.6)
    assert out_scores.tolist() == pytest.approx([0.9, 0.7, 0.5, 0.3])
    assert classes.tolist() == [0, 1, 0, 0]  # box 1 survives in class 1 only
    assert float(out_boxes[:, 3].max()) == 1.0
    assert torch.allclose(out_boxes[0], boxes[0])
    # caps: per class and in total
    many = torch.rand(50, 2) * 0.01 + torch.arange(50).view(-1, 1) * 0.02
    many = torch.cat([many, many + 0.015], 1)
    s = torch.linspace(1, 0.5, 50).view(-1, 1)
    assert multiclass_nms(many, s, max_per_class=7)[1].shape[0] == 7
    assert multiclass_nms(many, s.repeat(1, 2), max_per_class=100, max_total=10)[1].shape[0] == 10


def _tf_legacy_resize(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Reference: TF1 resize_bilinear (align_corners=False, no half-pixel centres), loops."""
    in_h, in_w = image.shape[:2]
    out = np.zeros((out_h, out_w) + image.shape[2:])
    for y in range(out_h):
        sy = y * in_h / out_h
        y0 = int(math.floor(sy)); y1 = min(y0 + 1, in_h - 1); fy = sy - y0
        for x in range(out_w):
            sx = x * in_w / out_w
            x0 = int(math.floor(sx)); x1 = min(x0 + 1, in_w - 1); fx = sx - x0
            top = image[y0, x0] + (image[y0, x1] - image[y0, x0]) * fx
            bottom = image[y1, x0] + (image[y1, x1] - image[y1, x0]) * fx
            out[y, x] = top + (bottom - top) * fy
    return out


def test_tf_resize_matches_legacy_tensorflow_rule_and_is_differentiable() -> None:
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, 13, 29, generator=g, dtype=torch.float64, requires_grad=True)
    ours = tf_resize_bilinear(image, (7, 11))
    ref = _tf_legacy_resize(image.detach()[0].permute(1, 2, 0).numpy(), 7, 11)
    np.testing.assert_allclose(ours[0].detach().permute(1, 2, 0).numpy(), ref, atol=1e-12)
    ours.sum().backward()
    assert image.grad is not None and float(image.grad.abs().sum()) > 0
    # upsampling too, and the identity when the size already matches
    small = torch.rand(1, 3, 4, 5, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(
        tf_resize_bilinear(small, (9, 8))[0].permute(1, 2, 0).numpy(),
        _tf_legacy_resize(small[0].permute(1, 2, 0).numpy(), 9, 8),
        atol=1e-12,
    )
    assert tf_resize_bilinear(small, (4, 5)) is small


@pytest.mark.parametrize(
    "size,kernel,stride,expected",
    [(300, 3, 2, (0, 1)), (75, 3, 2, (1, 1)), (10, 3, 2, (0, 1)), (19, 3, 1, (1, 1)), (19, 1, 1, (0, 0))],
)
def test_same_padding_puts_the_extra_pixel_after(size: int, kernel: int, stride: int, expected: tuple[int, int]) -> None:
    assert same_padding(size, kernel, stride) == expected
