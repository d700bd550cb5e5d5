"""Non-maximum suppression as the TensorFlow Object Detection API's post-processing does it.

``BatchMultiClassNonMaxSuppression`` in the SSD graph runs, per image: greedy NMS per class on the
decoded (unclipped) boxes with scores above ``score_threshold``, at most ``max_per_class`` boxes
per class; all classes merged and sorted by score; boxes clipped to the window [0, 1] and boxes
left with zero area dropped; the best ``max_total`` kept. :func:`multiclass_nms` does the same
with :func:`torchvision.ops.batched_nms`.
"""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms


def multiclass_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    score_threshold: float = 1e-8,
    iou_threshold: float = 0.6,
    max_per_class: int = 100,
    max_total: int = 100,
    clip: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """NMS over ``boxes`` ``A x 4`` (normalised yxyx) and ``scores`` ``A x C`` (no background).

    Returns (boxes ``K x 4`` yxyx, scores ``K``, class indices ``K`` in ``0..C-1``), sorted by score.
    """
    num_classes = scores.shape[1]
    anchor_idx, class_idx = torch.nonzero(scores > score_threshold, as_tuple=True)
    cand_boxes = boxes[anchor_idx]
    cand_scores = scores[anchor_idx, class_idx]
    # IoU is symmetric in x and y, so yxyx boxes can be passed as xyxy
    keep = batched_nms(cand_boxes.float(), cand_scores.float(), class_idx, iou_threshold)
    if num_classes > 1 or keep.numel() > max_per_class:
        # keep is sorted by score, so the first max_per_class of each class are its best
        kept_classes = class_idx[keep]
        rank = torch.zeros_like(keep)
        for c in kept_classes.unique():
            members = kept_classes == c
            rank[members] = torch.arange(int(members.sum()), device=keep.device)
        keep = keep[rank < max_per_class]
    out_boxes = cand_boxes[keep]
    out_scores = cand_scores[keep]
    out_classes = class_idx[keep]
    if clip:
        out_boxes = out_boxes.clamp(0.0, 1.0)
        area = (out_boxes[:, 2] - out_boxes[:, 0]) * (out_boxes[:, 3] - out_boxes[:, 1])
        nonempty = area > 0
        out_boxes, out_scores, out_classes = out_boxes[nonempty], out_scores[nonempty], out_classes[nonempty]
    return out_boxes[:max_total], out_scores[:max_total], out_classes[:max_total]
