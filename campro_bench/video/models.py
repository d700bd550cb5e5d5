"""The small clip classifier used for both tasks, and the clip tensors it is trained on.

:class:`ClipNet` is a 3D CNN small enough to train on two shared CPU cores in a minute on 64x64 clips:
a ``pool`` x ``pool`` average pool (default 4: 64 -> 16 pixels), a strided 3x5x5 stem, two 3x3x3 blocks with pooling and a global average pool. The same
architecture is the action classifier (utility) and the actor classifier (the privacy attacker).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Segment, VideoClips, window_frames, window_span, windows


class ClipNet(nn.Module):
    """3D CNN over clips ``(B, C, T, H, W)`` -> class logits (any T >= 1, any H, W >= 8)."""

    def __init__(self, num_classes: int, width: int = 8, in_channels: int = 3, pool: int = 4) -> None:
        super().__init__()

        def block(cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> nn.Sequential:
            pad = tuple(k // 2 for k in kernel)
            return nn.Sequential(nn.Conv3d(cin, cout, kernel, stride, pad, bias=False), nn.BatchNorm3d(cout),
                                 nn.ReLU(inplace=True))

        self.features = nn.Sequential(
            nn.AvgPool3d((1, pool, pool)),
            block(in_channels, width, (3, 5, 5), (1, 2, 2)),
            nn.MaxPool3d((1, 2, 2)),
            block(width, 2 * width, (3, 3, 3), (1, 1, 1)),
            nn.MaxPool3d((2, 2, 2), ceil_mode=True),
            block(2 * width, 4 * width, (3, 3, 3), (1, 1, 1)),
            nn.AdaptiveAvgPool3d(1),
        )
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(clips - 0.5).flatten(1))


@dataclass
class ClipSet:
    """Windows of clips as one uint8 tensor ``(N, 3, T, H, W)`` with actor and action labels, and the
    ``(clip, frame)`` numbers every window spans (to prove that two sets share no frame)."""

    clips: torch.Tensor
    actor: torch.Tensor
    action: torch.Tensor
    frame_keys: frozenset[tuple[int, int]] | None = None

    def __len__(self) -> int:
        return int(self.clips.shape[0])

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """Float clips in [0, 1] of the given rows."""
        return self.clips[index].float() / 255.0


def clip_set(data: VideoClips, segments: list[Segment], frames: int, stride: int, step: int,
             actors: list[str] | None = None) -> ClipSet:
    """Every window of the segments; actor labels index ``actors`` (default: all actors)."""
    actors = actors if actors is not None else data.actors
    wins = windows(data, segments, frames, stride, step)
    array = np.stack([window_frames(data, c, s, frames, stride) for c, s in wins])  # N, T, H, W, 3
    clips = torch.from_numpy(array).permute(0, 4, 1, 2, 3).contiguous()
    actor = torch.tensor([actors.index(data.clips[c].actor) for c, _ in wins])
    action = torch.tensor([data.action_index(c) for c, _ in wins])
    span = window_span(frames, stride)
    keys = frozenset((c, f) for c, s in wins for f in range(s, s + span))
    return ClipSet(clips, actor, action, keys)


@torch.no_grad()
def encode_set(protector: nn.Module, clips: ClipSet, batch_size: int = 64) -> torch.Tensor:
    """Encoded float clips of a whole set (the protector in eval mode: BDQ rounds hard)."""
    protector.eval()
    out = [protector(clips.batch(torch.arange(i, min(i + batch_size, len(clips)))))
           for i in range(0, len(clips), batch_size)]
    return torch.cat(out)


def train_classifier(inputs: torch.Tensor, labels: torch.Tensor, num_classes: int, *, steps: int, batch_size: int,
                     lr: float, width: int, seed: int, pool: int = 4) -> ClipNet:
    """A fresh :class:`ClipNet` trained with Adam on (encoded clips, labels); seeded init and batches."""
    torch.manual_seed(seed)
    model = ClipNet(num_classes, width, inputs.shape[1], pool)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed + 1)
    model.train()
    for _ in range(steps):
        index = torch.randint(len(inputs), (min(batch_size, len(inputs)),), generator=generator)
        loss = F.cross_entropy(model(inputs[index]), labels[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


@torch.no_grad()
def predict_proba(model: nn.Module, inputs: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    model.eval()
    return torch.cat([F.softmax(model(inputs[i:i + batch_size]), -1) for i in range(0, len(inputs), batch_size)])


def accuracy(proba: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy (%) of window predictions."""
    return float((proba.argmax(-1) == labels).float().mean()) * 100.0
