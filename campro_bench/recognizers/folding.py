"""Inference copies of torch recognisers with every batch norm folded into the convolution before it.

A recogniser's network stays the module it was built as (gradients to the input, white-box
attacks and its state dict are unchanged); when no gradient is asked for, :class:`FoldedInference`
runs a copy in which each ``Conv2d -> BatchNorm2d`` pair is one convolution
(``torch.fx.experimental.optimization.fuse``: ``w' = w * g / sqrt(v + eps)``,
``b' = (b - m) * g / sqrt(v + eps) + beta``). For the depthwise networks that is one memory pass
less per batch norm, and they are memory-bound on a CPU (``docs/scaling.md``). The copy is made
from the network's current tensors and made again when any of them changed (their version
counters), moved or changed type; outputs equal the unfolded network's to float32 rounding
(``tests/test_faces_new_models.py`` holds them to 1e-5 on real crops).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def _signature(network: nn.Module) -> tuple[Any, ...]:
    """What the folded copy depends on: every tensor's identity, version, device and dtype."""
    return tuple((id(t), t.data_ptr(), _version(t), t.device, t.dtype) for t in [*network.parameters(), *network.buffers()])


def _version(tensor: torch.Tensor) -> int:
    """The in-place version counter (-1 for tensors made in inference mode, which keep none)."""
    try:
        return tensor._version
    except RuntimeError:
        return -1


def fold_batch_norms(network: nn.Module) -> nn.Module:
    """An eval-mode copy of ``network`` with each batch norm that follows a convolution folded into it."""
    from torch.fx.experimental.optimization import fuse

    with torch.inference_mode(False), torch.no_grad():
        folded = fuse(copy.deepcopy(network).eval())
    return folded.requires_grad_(False)


class FoldedInference:
    """The network to run now: ``network`` itself when a gradient may be needed (training mode or
    grad enabled), else its batch-norm-folded copy, kept until the network's tensors change.

    Not an ``nn.Module`` on purpose: the copy must stay out of the recogniser's state dict,
    parameters and ``.to()``; it follows the network by its :func:`_signature` instead.
    """

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self._folded: tuple[tuple[Any, ...], nn.Module] | None = None

    def __call__(self) -> nn.Module:
        if self.network.training or torch.is_grad_enabled():
            return self.network
        signature = _signature(self.network)
        if self._folded is None or self._folded[0] != signature:
            self._folded = (signature, fold_batch_norms(self.network))
        return self._folded[1]
