"""The SSD detection loss ``L_det = L_cls + L_box`` (paper Eq. 5).

As the TensorFlow SSDLite configuration trains it:

* matching: an anchor is positive for the ground-truth box it overlaps most when that IoU is at
  least ``match_iou`` (0.5); every ground-truth box is also given its best anchor (force match);
* ``L_cls``: sigmoid cross-entropy over all classes (background column included) of the
  positives plus hard negatives, at most ``neg_pos_ratio`` (3) negatives per positive and at least
  ``min_negatives`` (3) per image, the negatives with the highest classification loss;
* ``L_box``: smooth L1 (Huber, delta 1) of the encoded ``[ty, tx, th, tw]`` of the positives;
* both normalised by the number of positives in the batch (at least 1).

Everything is differentiable in the head outputs, hence in the network weights and in the input
images (the selection of anchors is a constant with respect to them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from .boxes import BoxCoder


@dataclass(frozen=True)
class SSDLossConfig:
    match_iou: float = 0.5
    neg_pos_ratio: float = 3.0
    min_negatives: int = 3
    huber_delta: float = 1.0


def match_anchors(gt_boxes: torch.Tensor, anchors: torch.Tensor, match_iou: float) -> torch.Tensor:
    """Index of the matched ground-truth box per anchor, ``-1`` for background (boxes yxyx)."""
    matches = torch.full((anchors.shape[0],), -1, dtype=torch.long, device=anchors.device)
    if gt_boxes.numel() == 0:
        return matches
    iou = box_iou(gt_boxes, anchors)  # G x A (IoU does not care whether boxes are xyxy or yxyx)
    best_iou, best_gt = iou.max(dim=0)
    matches = torch.where(best_iou >= match_iou, best_gt, matches)
    best_anchor = iou.argmax(dim=1)  # force match: each box gets its best anchor
    matches[best_anchor] = torch.arange(gt_boxes.shape[0], device=anchors.device)
    return matches


def ssd_loss(
    box_encodings: torch.Tensor,
    class_logits: torch.Tensor,
    anchors: torch.Tensor,
    gt_boxes: list[torch.Tensor],
    gt_classes: list[torch.Tensor],
    coder: BoxCoder = BoxCoder(),
    config: SSDLossConfig = SSDLossConfig(),
) -> dict[str, torch.Tensor]:
    """``{"cls", "box", "total"}`` for a batch.

    Args:
        box_encodings: ``N x A x 4`` raw regressions; class_logits: ``N x A x (C + 1)``, column 0
            the background.
        anchors: ``A x 4`` normalised yxyx.
        gt_boxes: per image ``G x 4`` normalised yxyx boxes; gt_classes: per image ``G`` class
            indices in ``1..C`` (0 is the background).
    """
    n, num_anchors, width = class_logits.shape
    cls_losses = []
    box_losses = []
    num_pos = 0
    for i in range(n):
        boxes = gt_boxes[i].to(anchors)
        matches = match_anchors(boxes, anchors, config.match_iou)
        positive = matches >= 0
        target_class = torch.zeros(num_anchors, dtype=torch.long, device=anchors.device)
        if boxes.numel():
            target_class[positive] = gt_classes[i].to(anchors.device)[matches[positive]]
        one_hot = F.one_hot(target_class, width).to(class_logits.dtype)
        per_anchor = F.binary_cross_entropy_with_logits(
            class_logits[i], one_hot, reduction="none"
        ).sum(-1)
        n_pos = int(positive.sum())
        n_neg = min(max(int(config.neg_pos_ratio * n_pos), config.min_negatives), num_anchors - n_pos)
        neg_loss = per_anchor.detach().masked_fill(positive, float("-inf"))
        hard_negatives = neg_loss.topk(n_neg).indices
        cls_losses.append(per_anchor[positive].sum() + per_anchor[hard_negatives].sum())
        if n_pos:
            target = coder.encode(boxes[matches[positive]], anchors[positive])
            box_losses.append(
                F.huber_loss(box_encodings[i][positive], target, delta=config.huber_delta, reduction="sum")
            )
        num_pos += n_pos
    normalizer = float(max(num_pos, 1))
    cls = torch.stack(cls_losses).sum() / normalizer
    box = torch.stack(box_losses).sum() / normalizer if box_losses else box_encodings.sum() * 0.0
    return {"cls": cls, "box": box, "total": cls + box}
