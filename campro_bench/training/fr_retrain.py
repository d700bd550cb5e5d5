"""White-box attack by re-training a face-feature extractor on protected faces (paper Sec. VII-C1).

The attacker knows the ISP parameters, so she can turn any labelled face dataset into protected
training data ("CelebA-P") and re-train a face recogniser on it, either starting from pretrained
weights (*finetune*) or from a random initialisation (*scratch*), with a Softmax or an ArcFace
(additive angular margin) classification loss over the training identities. The classification
head is thrown away afterwards; the extractor's embeddings are matched by cosine similarity on
disjoint evaluation identities (:mod:`campro_bench.experiments.e5`).

* :data:`EXTRACTORS`: re-trainable networks with their input contract (alignment, size,
  normalisation) as registry metadata: ``facenet-casia`` (the offline FaceNet, pretrained, batch
  norm folded into its convolutions), ``inception-resnet-v1`` (the same architecture *with* batch
  norm, random initialisation) and ``iresnet18`` (random initialisation, 112x112 ArcFace crops).
* :data:`HEADS`: ``softmax`` (a linear layer) and ``arcface`` (:func:`arcface_logits`).
* :func:`retrain`: SGD with momentum and weight decay, learning rate multiplied by
  ``decay_factor`` after ``decay_epoch`` epochs (the paper: 20 epochs, lr 1e-1, wd 5e-4, decay to
  1e-2 after epoch 15), seeded batches and flips (:class:`campro_bench.training.data.EpochSampler`).
* :func:`embed`: unit-length embeddings of uint8 crops.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..config import option, parse_config, validate_config
from ..errors import CamproError
from ..io import uint8_to_tensor
from ..registries import RETRAIN_EXTRACTORS, RETRAIN_HEADS
from .data import EpochSampler

SAMPLER_STREAM = 0xF2


# ----------------------------------------------------------------------------------------
# extractors
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExtractorContract:
    """How crops are prepared for a re-trainable network (RGB [0, 1] in, ``(x - mean) / std``)."""

    alignment: str
    input_size: tuple[int, int]
    mean: float
    std: float
    embedding_size: int
    pretrained: bool
    architecture: str


EXTRACTORS = RETRAIN_EXTRACTORS


class FaceExtractor(nn.Module):
    """A network plus its input normalisation: ``forward`` maps ``N x 3 x H x W`` RGB [0, 1] crops
    to *unnormalised* embeddings (heads and cosine matching normalise as they need)."""

    def __init__(self, name: str, network: nn.Module, contract: ExtractorContract) -> None:
        super().__init__()
        self.name = name
        self.network = network
        self.contract = contract

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.network((faces - self.contract.mean) / self.contract.std)


def _inception_unnormalised(network: nn.Module) -> nn.Module:
    """facenet-pytorch's InceptionResnetV1 returning the ``last_bn`` output (no L2 normalisation)."""
    network.classify = True
    network.logits = nn.Identity()
    return network


FACENET_CONTRACT = dict(alignment="facenet-160", input_size=(160, 160), mean=0.5, std=128.0 / 255.0, embedding_size=512)


@EXTRACTORS.register("facenet-casia", contract=ExtractorContract(**FACENET_CONTRACT, pretrained=True,
                     architecture="Inception-ResNet-v1, batch norm folded into the convolutions"),
                     recognizer="facenet-casia",
                     description="the offline FaceNet (CASIA-WebFace), pretrained: for finetune")
def facenet_casia_network(cache_dir: Path) -> nn.Module:
    from ..io.torchfile import load_torch_file
    from ..recognizers.facenet_casia import build_architecture, converted_weights

    path, _ = converted_weights(cache_dir)
    network = build_architecture()
    network.load_state_dict(load_torch_file(path, "cached conversion"))
    return _inception_unnormalised(network)


@EXTRACTORS.register("inception-resnet-v1", contract=ExtractorContract(**FACENET_CONTRACT, pretrained=False,
                     architecture="Inception-ResNet-v1 with batch norm (facenet-pytorch), random init"),
                     description="FaceNet's architecture, random initialisation: for scratch")
def inception_resnet_v1_network(cache_dir: Path) -> nn.Module:
    from facenet_pytorch import InceptionResnetV1

    return _inception_unnormalised(InceptionResnetV1(pretrained=None, classify=False))


@EXTRACTORS.register("iresnet18", contract=ExtractorContract(alignment="arcface-112", input_size=(112, 112), mean=0.5,
                     std=0.5, embedding_size=512, pretrained=False, architecture="IResNet-18 (insightface), random init"),
                     description="IResNet-18, random initialisation: for scratch (ArcFace-style backbone)")
def iresnet18_network(cache_dir: Path) -> nn.Module:
    from ..recognizers.iresnet import iresnet

    return iresnet(18)


def build_extractor(name: str, cache_dir: Path, seed: int) -> FaceExtractor:
    """A registered extractor; random initialisations are drawn after ``torch.manual_seed(seed)``."""
    entry = EXTRACTORS.entry(name)
    torch.manual_seed(seed)
    return FaceExtractor(name, entry.load()(cache_dir), entry.metadata["contract"])


# ----------------------------------------------------------------------------------------
# heads
# ----------------------------------------------------------------------------------------
def arcface_logits(cosine: torch.Tensor, labels: torch.Tensor, scale: float = 64.0, margin: float = 0.5) -> torch.Tensor:
    """ArcFace (Deng et al.): ``s * cos(theta_y + m)`` for the true class, ``s * cos(theta_j)`` otherwise.

    Where ``theta_y + m`` would pass pi (``cos(theta_y) <= cos(pi - m)``) the target logit is
    ``s * (cos(theta_y) - m * sin(m))``, insightface's monotone continuation.
    """
    cosine = cosine.clamp(-1.0, 1.0)
    sine = (1.0 - cosine.square()).clamp_min(0.0).sqrt()
    phi = cosine * math.cos(margin) - sine * math.sin(margin)
    phi = torch.where(cosine > math.cos(math.pi - margin), phi, cosine - math.sin(math.pi - margin) * margin)
    target = F.one_hot(labels, cosine.shape[-1]).bool()
    return scale * torch.where(target, phi, cosine)


class SoftmaxHead(nn.Module):
    """A linear layer over the training identities (plain softmax cross-entropy)."""

    def __init__(self, embedding_size: int, classes: int, **_: Any) -> None:
        super().__init__()
        self.fc = nn.Linear(embedding_size, classes)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(embeddings)


class ArcFaceHead(nn.Module):
    """Normalised class centres; margin logits (:func:`arcface_logits`) when labels are given."""

    def __init__(self, embedding_size: int, classes: int, scale: Annotated[float, Field(gt=0.0, le=1024.0)] = 64.0,
                 margin: Annotated[float, Field(ge=0.0, le=3.14)] = 0.5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)
        self.scale, self.margin = float(scale), float(margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cosine = F.linear(F.normalize(embeddings), F.normalize(self.weight))
        if labels is None:
            return self.scale * cosine
        return arcface_logits(cosine, labels, self.scale, self.margin)


HEADS = RETRAIN_HEADS
HEADS.add("softmax", SoftmaxHead, origin=f"{__name__}:SoftmaxHead", description="linear layer + softmax cross-entropy")
HEADS.add("arcface", ArcFaceHead, origin=f"{__name__}:ArcFaceHead",
          description="additive angular margin (ArcFace), scale s and margin m")


# ----------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetrainConfig:
    """The re-training schedule (paper: 20 epochs, SGD lr 0.1, wd 5e-4, lr 0.01 after epoch 15).

    ``decay_epoch = 0`` puts the decay at three quarters of the epochs (``floor(0.75 * epochs)``,
    at least 1). ``grad_clip > 0`` clips the global gradient norm (0: off, as in the paper).
    """

    loss: str = option("softmax", help="classification head: softmax or arcface")
    epochs: int = option(4, ge=1, le=10_000)
    batch_size: int = option(32, ge=1, le=4096)
    lr: float = option(0.1, gt=0.0, le=1000.0)
    momentum: float = option(0.9, ge=0.0, lt=1.0)
    weight_decay: float = option(5e-4, ge=0.0, le=1.0)
    decay_epoch: int = option(0, ge=0, help="0 = floor(0.75 * epochs)")
    decay_factor: float = option(0.1, gt=0.0, le=1.0)
    arcface_scale: float = option(64.0, gt=0.0, le=1024.0)
    arcface_margin: float = option(0.5, ge=0.0, le=3.14)
    hflip: bool = True
    grad_clip: float = option(0.0, ge=0.0, help="global gradient-norm clip; 0 = off")
    seed: int = option(0, ge=0)

    def __post_init__(self) -> None:
        validate_config(self, "re-training")
        HEADS.entry(self.loss)

    @property
    def decay_after(self) -> int:
        return self.decay_epoch or max(1, int(0.75 * self.epochs))

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch``."""
        return self.lr * (self.decay_factor if epoch >= self.decay_after else 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "decay_after": self.decay_after}

    @classmethod
    def from_dict(cls, data: dict[str, Any], what: str = "re-training") -> "RetrainConfig":
        return parse_config(cls, data, what)


def build_head(config: RetrainConfig, embedding_size: int, classes: int) -> nn.Module:
    return HEADS.get(config.loss)(embedding_size, classes, scale=config.arcface_scale, margin=config.arcface_margin)


@dataclass
class RetrainResult:
    history: list[dict[str, float]]
    diverged: bool
    seconds: float


def retrain(
    extractor: FaceExtractor,
    crops: np.ndarray,
    labels: np.ndarray,
    config: RetrainConfig,
    *,
    device: torch.device | str = "cpu",
    on_step: Callable[[int], None] | None = None,
    on_epoch: Callable[[int, FaceExtractor], dict[str, float]] | None = None,
    log: Callable[[str], None] | None = None,
) -> RetrainResult:
    """Train ``extractor`` and a fresh head on uint8 ``crops`` ``N x H x W x 3`` with identity ``labels``.

    Stops early (``diverged``) if the loss becomes non-finite. ``on_epoch(epoch, extractor)`` may
    return extra numbers for the epoch's history row (e.g. a diagnostic test accuracy; nothing here
    uses them to choose a model).
    """
    device = torch.device(device)
    expected = tuple(extractor.contract.input_size)
    if tuple(crops.shape[1:3]) != expected:
        raise CamproError(f"{extractor.name} takes {expected} crops, got {tuple(crops.shape[1:3])}")
    classes = int(labels.max()) + 1
    torch.manual_seed(config.seed)
    head = build_head(config, extractor.contract.embedding_size, classes).to(device)
    extractor = extractor.to(device)
    params = list(extractor.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    sampler = EpochSampler(len(crops), config.batch_size, config.seed, SAMPLER_STREAM, config.hflip)
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    diverged = False
    for epoch in range(config.epochs):
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(epoch)
        extractor.train()
        head.train()
        loss_sum, hits, seen = 0.0, 0, 0
        t0 = time.perf_counter()
        for _ in range(sampler.batches_per_epoch):
            index, flips = sampler.next()
            x = uint8_to_tensor(crops[index])
            if flips.any():
                x = torch.where(torch.from_numpy(flips).view(-1, 1, 1, 1), x.flip(-1), x)
            y = torch.from_numpy(labels[index]).to(device)
            embeddings = extractor(x.to(device))
            logits = head(embeddings, y)
            loss = F.cross_entropy(logits, y)
            if not torch.isfinite(loss):
                diverged = True
                break
            with torch.no_grad():  # training accuracy of this batch before the step, without margin
                hits += int((head(embeddings.detach()).argmax(-1) == y).sum())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            loss_sum += float(loss.detach()) * len(index)
            seen += len(index)
            if on_step is not None:
                on_step(1)
        row = {"epoch": epoch + 1, "lr": config.lr_at(epoch), "train_loss": loss_sum / max(seen, 1),
               "train_accuracy": hits / max(seen, 1), "seconds": time.perf_counter() - t0}
        if diverged:
            row["diverged"] = 1.0
            history.append(row)
            if log:
                log(f"[red]{extractor.name} / {config.loss}: loss became non-finite in epoch {epoch + 1}; stopped[/]")
            break
        if on_epoch is not None:
            row.update(on_epoch(epoch + 1, extractor))
        history.append(row)
        if log:
            log(f"{extractor.name} / {config.loss} epoch {epoch + 1}/{config.epochs}: loss {row['train_loss']:.3f}, "
                f"train acc {row['train_accuracy']:.3f}")
    return RetrainResult(history, diverged, time.perf_counter() - started)


@torch.inference_mode()
def embed(extractor: FaceExtractor, crops: np.ndarray, batch_size: int = 64,
          device: torch.device | str = "cpu") -> np.ndarray:
    """Unit-length float32 embeddings ``N x D`` of uint8 crops; non-finite rows become zeros."""
    extractor = extractor.to(device).eval()
    out = np.zeros((len(crops), extractor.contract.embedding_size), np.float32)
    for start in range(0, len(crops), batch_size):
        x = uint8_to_tensor(crops[start : start + batch_size]).to(device)
        out[start : start + len(x)] = F.normalize(extractor(x).float(), dim=1).cpu().numpy()
    out[~np.isfinite(out).all(axis=1)] = 0.0
    return out
