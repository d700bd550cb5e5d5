"""The restoration attack on video protectors: a small 3D U-Net maps encoded clips back to raw ones,
then the actors are identified in the restored clips.

The attacker knows the encoder (white box) and holds raw, labelled footage of every actor: the
windows of the earlier frames of every clip (the training part of
:func:`~campro_bench.video.data.time_split`). It encodes that footage, trains :class:`UNet3D` on the
(encoded, raw) pairs, restores the encoded *later* frames (the test part, never used for training;
:func:`check_disjoint` asserts it from the windows' frame numbers) and identifies the actors in the
restored clips with two classifiers (:class:`~campro_bench.video.models.ClipNet`):

* ``raw_attacker`` — trained on the attacker's raw clips: a recogniser of ordinary video applied to
  the reconstructions;
* ``retrained`` — trained on the attacker's own restored clips, so it is matched to the restorer's
  artefacts.

A restorer that did not learn is **failed**, not private: its L1 loss on a fixed probe batch of its
training pairs must fall by at least ``min_drop`` of its value before training, otherwise both
identification accuracies are NaN and ``failed`` is set. A 0-step restorer is failed by construction.

Difference-based encoders (``diff``, BDQ) give T-1 frames for T raw ones (``D_t = B_{t+1} - B_t``);
the restoration target of an encoded clip of T' frames is the last T' raw frames of its window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..config import option
from ..errors import CamproError
from ..utility.quality import psnr
from .models import ClipSet, accuracy, predict_proba, train_classifier


def _block(cin: int, cout: int) -> nn.Sequential:
    """3x3x3 conv, batch norm, ReLU (time padded, so any T works)."""
    return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class UNet3D(nn.Module):
    """3D U-Net over clips ``(B, C_in, T, H, W)`` -> ``(B, C_out, T, H, W)`` in [0, 1].

    Every frame is first folded ``fold`` x ``fold`` pixels into channels (space to depth, lossless:
    the network sees every input pixel at a ``fold**2`` lower cost) and the output unfolded back;
    then ``depth`` levels of one 3x3x3 block each, spatial-only max-pool down and trilinear up (time
    is never pooled, so clips of any length keep their length), skip concatenation, and a 1x1x1
    head with a sigmoid that also sees the folded input (so that fine detail the narrow first level
    cannot carry still reaches the output). H and W are padded to a multiple of ``fold * 2**(depth-1)`` and cropped back.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, width: int = 8, depth: int = 3,
                 fold: int = 1) -> None:
        super().__init__()
        if depth < 1 or width < 1 or fold < 1:
            raise CamproError(f"3D U-Net needs depth, width and fold >= 1, got {depth}, {width}, {fold}")
        chans = [width * 2**i for i in range(depth)]
        self.depth, self.fold, self.out_channels = depth, fold, out_channels
        first = in_channels * fold * fold
        self.down = nn.ModuleList(_block(cin, cout) for cin, cout in zip([first, *chans[:-1]], chans))
        self.up = nn.ModuleList(_block(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth - 1)))
        self.head = nn.Conv3d(chans[0] + first, out_channels * fold * fold, 1)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        h, w = clips.shape[-2:]
        multiple = self.fold * 2 ** (self.depth - 1)
        pad_h, pad_w = (-h) % multiple, (-w) % multiple
        x = F.pad(clips, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else clips
        x = folded = _fold(x - 0.5, self.fold)
        skips = []
        for i, block in enumerate(self.down):
            x = block(F.max_pool3d(x, (1, 2, 2)) if i else x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-3:], mode="trilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return _unfold(torch.sigmoid(self.head(torch.cat([x, folded], dim=1))), self.fold)[..., :h, :w]


def _fold(clips: torch.Tensor, k: int) -> torch.Tensor:
    """``(B, C, T, H, W)`` -> ``(B, C*k*k, T, H/k, W/k)`` (each frame's k x k blocks into channels)."""
    b, c, t, h, w = clips.shape
    return (clips.reshape(b, c, t, h // k, k, w // k, k).permute(0, 1, 4, 6, 2, 3, 5)
            .reshape(b, c * k * k, t, h // k, w // k))


def _unfold(clips: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of :func:`_fold`."""
    b, ckk, t, h, w = clips.shape
    c = ckk // (k * k)
    return clips.reshape(b, c, k, k, t, h, w).permute(0, 1, 4, 5, 2, 6, 3).reshape(b, c, t, h * k, w * k)


@dataclass(frozen=True)
class RestoreConfig:
    """How the attacker's restorer and its actor classifiers train (the same for every protector)."""

    steps: int = option(60, ge=0, le=100_000, help="Adam steps of the restorer")
    batch_size: int = option(8, ge=1, le=1024, help="clip pairs per restorer step")
    lr: float = option(3e-3, gt=0, help="Adam learning rate of the restorer")
    width: int = option(8, ge=1, le=256, help="channels of the restorer's first level")
    depth: int = option(3, ge=1, le=6, help="levels of the restorer")
    fold: int = option(4, ge=1, le=16, help="pixels folded into channels per side before the restorer's first level")
    min_drop: float = option(0.1, ge=0, lt=1, help="fraction by which the restorer's probe loss must fall, else failed")
    probe: int = option(16, ge=1, help="training pairs of the fixed probe batch")
    classifier_steps: int = 100
    classifier_batch_size: int = 16
    classifier_lr: float = 1e-3
    classifier_width: int = 8
    pool: int = 4


@dataclass
class RestorerFit:
    """A trained restorer and the evidence that it learnt (or did not)."""

    model: UNet3D
    probe_loss_start: float
    probe_loss_end: float
    losses: list[float] = field(default_factory=list)
    failed: bool = False


def restoration_target(encoded: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """The raw frames an encoded clip is restored to: the last ``T'`` of its window (``T'`` = encoded length)."""
    t = encoded.shape[2]
    if t > raw.shape[2] or encoded.shape[0] != raw.shape[0]:
        raise CamproError(f"encoded clips {tuple(encoded.shape)} do not pair with raw clips {tuple(raw.shape)}")
    return raw[:, :, raw.shape[2] - t:]


@torch.no_grad()
def restore(model: nn.Module, encoded: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Restored clips of a whole tensor of encoded clips (eval mode)."""
    model.eval()
    return torch.cat([model(encoded[i:i + batch_size]) for i in range(0, len(encoded), batch_size)])


def train_restorer(encoded: torch.Tensor, raw: torch.Tensor, config: RestoreConfig, seed: int) -> RestorerFit:
    """A fresh :class:`UNet3D` trained with Adam and the L1 loss on (encoded, raw) training pairs.

    Seeded: init ``torch.manual_seed(seed)``, batches ``Generator(seed + 1)``, probe batch
    ``Generator(seed + 2)``. ``failed`` when the probe loss did not fall by ``config.min_drop`` of its
    start (always so for 0 steps) or is not finite.
    """
    target = restoration_target(encoded, raw)
    torch.manual_seed(seed)
    model = UNet3D(encoded.shape[1], target.shape[1], config.width, config.depth, config.fold)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(seed + 1)
    probe = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(seed + 2))[:config.probe]

    def probe_loss() -> float:
        return float((restore(model, encoded[probe]) - target[probe]).abs().mean())

    start = probe_loss()
    losses = []
    model.train()
    for _ in range(config.steps):
        index = torch.randint(len(encoded), (min(config.batch_size, len(encoded)),), generator=generator)
        loss = (model(encoded[index]) - target[index]).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    end = probe_loss()
    failed = not (end == end and end < start * (1.0 - config.min_drop))  # end == end: not NaN
    return RestorerFit(model.eval(), start, end, losses, failed)


def check_disjoint(train: ClipSet, test: ClipSet) -> None:
    """Raise when a frame of a test window is also in a training window (the restorer must never
    see the evaluated frames); sets without frame numbers are refused."""
    if train.frame_keys is None or test.frame_keys is None:
        raise CamproError("the restoration attack needs clip sets that record their frames (clip_set)")
    shared = train.frame_keys & test.frame_keys
    if shared:
        clip, frame = min(shared)
        raise CamproError(f"restoration attack: {len(shared)} test frames are also training frames "
                          f"(first: clip {clip}, frame {frame})")


def restoration_attack(train: ClipSet, test: ClipSet, encoded_train: torch.Tensor, encoded_test: torch.Tensor,
                       num_actors: int, config: RestoreConfig, seed: int,
                       raw_attackers: dict[int, nn.Module] | None = None) -> dict[str, float | bool]:
    """Train the restorer on (``encoded_train``, ``train``'s raw clips), restore ``encoded_test`` and
    identify its actors. The raw-clip attacker (trained on raw training clips cut to the encoded
    length) does not depend on the protector: ``raw_attackers`` (by clip length) shares it between
    the protectors of one seed.

    Returns ``restore_failed``, the probe losses, the PSNR (dB) of the restored test clips against
    their raw frames and of the mean training clip (a restorer that only learnt the average scene
    reaches the latter), and the accuracies (%) ``restored_raw_attacker`` and ``restored_retrained``
    (NaN when failed). Seeds: restorer ``seed*100 + 50``, classifiers ``seed*100 + 60`` and ``+ 70``.
    """
    check_disjoint(train, test)
    raw_train = train.batch(torch.arange(len(train)))
    raw_test = restoration_target(encoded_test, test.batch(torch.arange(len(test))))
    fit = train_restorer(encoded_train, raw_train, config, seed * 100 + 50)
    restored_test = restore(fit.model, encoded_test)
    mean_clip = restoration_target(encoded_train, raw_train).mean(0, keepdim=True).expand_as(raw_test)
    out: dict[str, float | bool] = {
        "restore_failed": fit.failed, "restore_probe_loss_start": fit.probe_loss_start,
        "restore_probe_loss_end": fit.probe_loss_end, "restore_psnr": clip_psnr(restored_test, raw_test),
        "restore_psnr_mean_clip": clip_psnr(mean_clip, raw_test),
        "restored_raw_attacker": float("nan"), "restored_retrained": float("nan")}
    if fit.failed:
        return out
    labels = train.actor
    raw_attackers = {} if raw_attackers is None else raw_attackers
    length = encoded_train.shape[2]
    if length not in raw_attackers:
        raw_attackers[length] = train_actor_classifier(restoration_target(encoded_train, raw_train), labels,
                                                       num_actors, config, seed * 100 + 60)
    raw_attacker = raw_attackers[length]
    out["restored_raw_attacker"] = accuracy(predict_proba(raw_attacker, restored_test), test.actor)
    retrained = train_actor_classifier(restore(fit.model, encoded_train), labels, num_actors, config, seed * 100 + 70)
    out["restored_retrained"] = accuracy(predict_proba(retrained, restored_test), test.actor)
    return out


def train_actor_classifier(clips: torch.Tensor, actors: torch.Tensor, num_actors: int, config: RestoreConfig,
                           seed: int) -> nn.Module:
    """An actor :class:`~campro_bench.video.models.ClipNet` with the attack's classifier settings."""
    return train_classifier(clips, actors, num_actors, steps=config.classifier_steps,
                            batch_size=config.classifier_batch_size, lr=config.classifier_lr,
                            width=config.classifier_width, seed=seed, pool=config.pool)


def clip_psnr(clips: torch.Tensor, target: torch.Tensor) -> float:
    """Mean per-frame PSNR (dB) of clips ``(B, 3, T, H, W)`` against their targets."""
    return float(psnr(clips.transpose(1, 2).flatten(0, 1), target.transpose(1, 2).flatten(0, 1)).mean())
