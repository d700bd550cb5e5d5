"""Loss, rounding, gradient-freezing and batch-sharing pieces shared by the ISP trainer and its
restoration adversary."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

Item = TypeVar("Item")
Result = TypeVar("Result")


def non_saturating_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``L_ns = -log(1 - p_y)`` per example (paper Eq. 4), computed stably as
    ``logsumexp(z) - logsumexp(z without z_y)``."""
    mask = F.one_hot(labels, logits.shape[1]).bool()
    return torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(mask, float("-inf")), 1)


def quantize8(images: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels, as a camera outputs its images."""
    return images.clamp(0.0, 1.0).mul(255.0).round().div(255.0)


def quantize8_straight_through(images: torch.Tensor) -> torch.Tensor:
    """8-bit rounding in the forward pass, identity (inside [0, 1]) in the backward pass, so that a
    loss on the camera's 8-bit output still gives the ISP a gradient."""
    clamped = images.clamp(0.0, 1.0)
    return clamped + (quantize8(clamped) - clamped).detach()


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Parameters of ``modules`` do not require grad inside the block (input gradients still flow)."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def distinct(items: Sequence[Item]) -> list[Item]:
    """One of each object in ``items``, in first-seen order (attackers that share an alignment share
    one crop tensor, and the ISP, the restorer and their losses should see it once)."""
    return list({id(item): item for item in items}.values())


def per_distinct(fn: Callable[[Item], Result], items: Sequence[Item]) -> list[Result]:
    """``[fn(item) for item in items]``, calling ``fn`` once per distinct object and sharing the result."""
    made = {id(item): fn(item) for item in distinct(items)}
    return [made[id(item)] for item in items]
