"""Joint training of a lensless camera's mask and the owner's identification network.

Nguyen Canh, Ngo and Nagahara ("Human-Imperceptible Identification with Learnable Lensless
Imaging", IEEE Access 2023) learn the coded mask ``H`` of a FlatCam-style camera together with a
ResNet ``R`` that identifies people from the captured (blurred, unrecognisable to humans) images.
Here, at a CPU scale:

* data: raw aligned face crops (the face pipeline and its cache) of the first ``identities``
  identities that have at least ``min_images`` images, split by image (``val_per_identity``
  held-out images each, the closed-set test of the talk's "Recognition results"); the next
  ``heldout_identities`` identities are never trained on and measure the owner's open-set
  identification with ``R``'s features (nearest neighbour, 1 gallery + 1 probe image, 10 seeded
  repeats through :mod:`campro_bench.privacy`);
* camera: :func:`campro_bench.protectors.lensless.lensless_measure` (FFT convolution,
  exposure normalisation, Gaussian read noise from a seeded generator, 8-bit straight-through
  quantisation); the mask is ``sigmoid(logits)`` when learned, or a fixed built-in mask;
* network: a ResNet of torchvision ``BasicBlock`` s, sized down for CPU (``width`` channels in
  the first of four stages), trained from scratch;
* loss: cross-entropy plus the talk's regularisers, each weighted (0 = off):
  ``sim``: ``mean (H*x - G*x)^2`` towards a Gaussian reference blur ``G`` (sigma
  ``reference_sigma`` px); ``tv``: ``-(mean|dx H| + mean|dy H|)``; ``inv``: ``-mean H``;
  ``rip``: ``-mean_i ||H*x_i||^2 / (||x_i||^2 + eps)`` (captures before noise).

Outputs in the run folder: ``mask.json`` (the learned or fixed mask, loadable by
``lensless:file=...``), ``classifier.pt`` (state dict), ``log.csv`` (per epoch), ``report.json``
and ``manifest.json``; ``checkpoint.pt`` (tensors and plain containers only, loaded with
``weights_only=True``) lets ``--resume`` continue the exact run. Reported: the last epoch, never
the best.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from .. import paths
from ..config import option, validate_config
from ..errors import CamproError, CheckpointError, EmptyDatasetError, MissingFileError
from ..io import uint8_to_tensor
from ..io.atomic import atomic_path, atomic_write_json
from ..io.hashing import ids_digest
from ..io.outfolder import check_new_run, check_output_location
from ..io.torchfile import load_torch_file
from ..protectors.lensless import (
    MASKS,
    aperture_ratio,
    blurriness,
    builtin_mask,
    fft_convolve_same,
    lensless_measure,
    save_mask_file,
)
from .checkpoint import require_state
from .data import EpochSampler, split_by_image, strip_roots
from .report import cli_command, training_manifest, write_csv

TRAINER = "lensless"
CHECKPOINT_FORMAT = "campro-lensless-checkpoint"
REGULARISERS = ("sim", "tv", "inv", "rip")


@dataclass
class LenslessTrainConfig:
    """Everything that defines a lensless training run (recorded in its manifest)."""

    dataset: str = option("celeba-subset", help="face dataset (identities split into train and held-out)")
    alignment: str = option("arcface-112")
    detector: str = option("mtcnn")
    min_images: int = option(10, ge=2, le=10_000)
    identities: int = option(60, ge=1, le=100_000)
    heldout_identities: int = option(40, ge=0, le=100_000)
    val_per_identity: int = option(2, ge=1, le=1000)
    image_size: int = option(63, ge=8, le=1024, help="sensor side in pixels")
    mask_size: int = option(32, ge=1, le=1024, help="mask side in pixels (<= image_size)")
    mask: str = option("learned")
    noise: float = option(0.01, ge=0.0, le=1.0, help="sensor noise std (images in [0, 1])")
    bits: int = option(8, ge=1, le=16)
    w_sim: float = option(0.0, ge=0.0, le=1e6)
    w_tv: float = option(0.0, ge=0.0, le=1e6)
    w_inv: float = option(0.0, ge=0.0, le=1e6)
    w_rip: float = option(0.0, ge=0.0, le=1e6)
    reference_sigma: float = option(4.0, gt=0.0, le=100.0)
    epochs: int = option(30, ge=1, le=100_000)
    batch_size: int = option(32, ge=1, le=4096)
    lr: float = option(2e-3, gt=0.0, le=10.0)
    lr_mask: float = option(5e-2, gt=0.0, le=10.0)
    weight_decay: float = option(5e-4, ge=0.0, le=1.0)
    width: int = option(16, ge=1, le=1024)
    seed: int = option(0, ge=0)
    heldout_repeats: int = option(10, ge=1, le=1000)

    def __post_init__(self) -> None:
        validate_config(self, "lensless training")
        self.check()

    def check(self) -> None:
        if self.mask not in MASKS:
            raise CamproError(f"unknown lensless mask '{self.mask}'; known masks: {', '.join(MASKS)}")
        if self.mask_size > self.image_size:
            raise CamproError(f"mask_size {self.mask_size} must not exceed image_size {self.image_size}")
        if self.min_images <= self.val_per_identity:
            raise CamproError(f"val_per_identity {self.val_per_identity} must be smaller than min_images {self.min_images}")

    @property
    def learned(self) -> bool:
        return self.mask == "learned"


# ----------------------------------------------------------------------------------------
# network
# ----------------------------------------------------------------------------------------
class SmallResNet(nn.Module):
    """A four-stage ResNet of torchvision ``BasicBlock`` s (one block per stage), widths
    ``width * (1, 2, 4, 8)``, after a stride-2 3x3 stem and a max-pool (a 63-pixel capture is
    16 x 16 in the first stage); ``features`` is the pooled penultimate layer."""

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        widths = [width, width * 2, width * 4, width * 8]
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        layers, inplanes = [], width
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or inplanes != planes:
                down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
            layers.append(BasicBlock(inplanes, planes, stride, down))
            inplanes = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(inplanes, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem((x - 0.5) / 0.25))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


# ----------------------------------------------------------------------------------------
# camera
# ----------------------------------------------------------------------------------------
class MaskModel(nn.Module):
    """The camera's mask: ``sigmoid(logits)`` when learned (seeded N(0, 1) start), else fixed."""

    def __init__(self, config: LenslessTrainConfig) -> None:
        super().__init__()
        size = config.mask_size
        if config.learned:
            gen = torch.Generator().manual_seed(config.seed * 7919 + 17)
            self.logits = nn.Parameter(torch.randn(size, size, generator=gen))
        else:
            fixed = torch.tensor(builtin_mask(config.mask, size, config.seed), dtype=torch.float32)
            self.register_buffer("fixed", fixed)

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.logits) if hasattr(self, "logits") else self.fixed


def gaussian_psf(size: int, sigma: float) -> torch.Tensor:
    """A normalised ``size x size`` Gaussian PSF centred like the pinhole (the reference blur)."""
    centre = (size - 1) // 2
    axis = torch.arange(size, dtype=torch.float32) - centre
    g = torch.exp(-(axis**2) / (2 * sigma**2))
    psf = torch.outer(g, g)
    return psf / psf.sum()


def regularisers(mask: torch.Tensor, scene: torch.Tensor, reference: torch.Tensor) -> dict[str, torch.Tensor]:
    """The talk's four "human imperceptible" losses (to be minimised) for one batch."""
    linear = fft_convolve_same(scene, mask) / mask.sum().clamp_min(1e-8)
    target = fft_convolve_same(scene, reference)
    energy = linear.pow(2).flatten(1).sum(1) / (scene.pow(2).flatten(1).sum(1) + 1e-6)
    return {
        "sim": (linear - target).pow(2).mean(),
        "tv": -((mask[:, 1:] - mask[:, :-1]).abs().mean() + (mask[1:] - mask[:-1]).abs().mean()),
        "inv": -mask.mean(),
        "rip": -energy.mean(),
    }


# ----------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------
@dataclass
class LenslessData:
    """Scenes at the sensor size (float ``N x 3 x s x s``) for training, closed-set test and the
    held-out identities, with labels."""

    train: torch.Tensor
    train_labels: np.ndarray
    val: torch.Tensor
    val_labels: np.ndarray
    heldout: torch.Tensor
    heldout_labels: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def _to_scenes(crops: np.ndarray, size: int) -> torch.Tensor:
    images = uint8_to_tensor(crops).contiguous()
    return F.interpolate(images, size=(size, size), mode="area") if len(images) else images.new_zeros(0, 3, size, size)


def load_lensless_data(config: LenslessTrainConfig, data_root: str | os.PathLike[str] | None,
                       cache_dir: str | os.PathLike[str] | None, progress: Callable[..., Any] | None = None) -> LenslessData:
    """Aligned raw crops (cached by the face pipeline) of the selected identities, split as the
    module docstring says, brought to ``image_size`` by area resampling."""
    from ..faces.pipeline import aligned_crops

    crops = aligned_crops(config.dataset, config.alignment, pipeline="paper", protector="raw", detector=config.detector,
                          data_root=data_root, cache_dir=cache_dir, min_images_per_identity=config.min_images,
                          progress=progress)
    labels = crops.labels
    n_train, n_held = config.identities, config.heldout_identities
    if labels.max(initial=-1) + 1 < n_train + n_held:
        raise EmptyDatasetError(f"{config.dataset} has {labels.max(initial=-1) + 1} identities with >= {config.min_images} "
                                f"images; {n_train} training + {n_held} held-out requested")
    train_part = np.flatnonzero(labels < n_train)
    held_part = np.flatnonzero((labels >= n_train) & (labels < n_train + n_held))
    tr, va = split_by_image(labels[train_part], config.val_per_identity, config.seed)
    tr, va = train_part[tr], train_part[va]
    ids = crops.image_ids
    info = {
        "dataset": config.dataset, "alignment": config.alignment, "detector": config.detector,
        "training_identities": n_train, "heldout_identities": n_held, "train_images": len(tr), "val_images": len(va),
        "heldout_images": len(held_part), "train_ids_sha": ids_digest([ids[i] for i in tr]),
        "val_ids_sha": ids_digest([ids[i] for i in va]), "heldout_ids_sha": ids_digest([ids[i] for i in held_part]),
        "heldout_identity_names_sha": ids_digest(crops.identity_names[n_train:n_train + n_held]),
        "crops": strip_roots(crops.provenance),
    }
    s = config.image_size
    return LenslessData(_to_scenes(crops.crops[tr], s), labels[tr], _to_scenes(crops.crops[va], s), labels[va],
                        _to_scenes(crops.crops[held_part], s), labels[held_part] - n_train, info)


# ----------------------------------------------------------------------------------------
# checkpoints (tensors and plain containers only: loaded with weights_only=True)
# ----------------------------------------------------------------------------------------
OUTPUTS = ("checkpoint.pt", "mask.json", "classifier.pt", "log.csv", "report.json", "manifest.json")
"""Every file a ``train lensless`` run writes into its folder (a new run refuses a folder holding one)."""
STATE_KEYS = ("net", "camera", "optim", "sched", "sampler", "noise_gen", "torch_rng", "rows", "epoch")
"""What a lensless checkpoint's state holds and ``--resume`` reads."""


def save_checkpoint(path: Path, config: LenslessTrainConfig, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, "config": asdict(config), "state": state}, tmp)


def load_checkpoint(path: Path, config: LenslessTrainConfig) -> dict[str, Any]:
    """The state of a checkpoint of the same configuration (one error line otherwise)."""
    if not path.is_file():
        raise MissingFileError(f"no lensless checkpoint at {path}; start a new run without --resume")
    payload = load_torch_file(path, "lensless checkpoint")  # tensors and plain data only
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a lensless training checkpoint")
    saved = payload.get("config", {})
    diff = [f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in asdict(config).items() if saved.get(k) != v]
    if diff:
        raise CheckpointError(f"{path} was written with another configuration ({'; '.join(diff)})")
    if not isinstance(payload.get("state"), dict):
        raise CheckpointError(f"{path}: checkpoint lacks state; start a new run without --resume")
    require_state(payload["state"], STATE_KEYS, path)
    return payload["state"]


# ----------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------
@torch.no_grad()
def capture_eval(mask: torch.Tensor, scenes: torch.Tensor, config: LenslessTrainConfig, stream: int) -> torch.Tensor:
    """Captures of evaluation scenes with noise from a fixed seeded generator (same every call)."""
    gen = torch.Generator().manual_seed(config.seed * 1000 + stream)
    noise = torch.randn(scenes.shape, generator=gen) * config.noise
    out = [lensless_measure(scenes[i:i + 256], mask, noise=noise[i:i + 256], bits=config.bits)
           for i in range(0, len(scenes), 256)]
    return torch.cat(out) if out else scenes


@torch.no_grad()
def evaluate(net: SmallResNet, mask: torch.Tensor, data: LenslessData, config: LenslessTrainConfig,
             heldout: bool = False) -> dict[str, Any]:
    """Closed-set accuracy on the held-out images of the training identities, mean blurriness of
    those captures and (``heldout``) the owner's nearest-neighbour identification of unseen
    identities from ``net``'s features."""
    net.eval()
    captures = capture_eval(mask, data.val, config, stream=1)
    logits = torch.cat([net(captures[i:i + 256]) for i in range(0, len(captures), 256)])
    out: dict[str, Any] = {
        "val_accuracy": float((logits.argmax(1).numpy() == data.val_labels).mean()),
        "blurriness": float(np.mean(blurriness(captures))),
        "scene_blurriness": float(np.mean(blurriness(data.val))),
        "aperture_ratio": aperture_ratio(mask.detach().numpy()),
    }
    if heldout and len(data.heldout):
        out.update(heldout_identification(net, mask, data, config))
    net.train()
    return out


def heldout_identification(net: SmallResNet, mask: torch.Tensor, data: LenslessData,
                           config: LenslessTrainConfig) -> dict[str, Any]:
    """Nearest-neighbour identification of identities never trained on (privacy machinery)."""
    from ..privacy.classifiers import NearestNeighbour
    from ..privacy.identification import FeatureSet, identify
    from ..privacy.splits import sample_splits

    captures = capture_eval(mask, data.heldout, config, stream=2)
    feats = torch.cat([net.features(captures[i:i + 256]) for i in range(0, len(captures), 256)]).numpy()
    features = FeatureSet(feats.astype(np.float32), np.ones(len(feats), bool))
    splits = sample_splits(data.heldout_labels, repeats=config.heldout_repeats, seed=config.seed)
    result = identify(NearestNeighbour(), features, features, splits)
    acc = result.accuracies
    return {"heldout_accuracy_mean": float(acc.mean()), "heldout_accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            "heldout_chance": float(result.chance), "heldout_repeats": len(acc)}


# ----------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------
def train_lensless(
    config: LenslessTrainConfig,
    out: Path,
    *,
    resume: bool = False,
    data_root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = lambda _m: None,
    data: LenslessData | None = None,
    stop_after: int | None = None,
    command: Sequence[str] | None = None,
) -> dict[str, Any] | None:
    """Train (or continue) one run; returns and writes its report (see the module docstring).

    ``stop_after = k`` stops after epoch ``k`` with only the checkpoint written, as an
    interrupted run would (returns ``None``); ``resume`` continues it. ``command``: what the manifest
    records as the command (default: this process's; a sweep gives each run its single command)."""
    start = time.perf_counter()
    out = Path(out)
    check_output_location(out, replaces=False)
    checkpoint = out / "checkpoint.pt"
    state = load_checkpoint(checkpoint, config) if resume else None  # refused before the data load
    if not resume:
        check_new_run(out, OUTPUTS)
    out.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = load_lensless_data(config, paths.data_root(data_root), paths.cache_dir(cache_dir))
    torch.manual_seed(config.seed)
    num_classes = config.identities
    net = SmallResNet(num_classes, config.width)
    camera = MaskModel(config)
    groups = [{"params": net.parameters(), "lr": config.lr, "weight_decay": config.weight_decay}]
    if config.learned:
        groups.append({"params": camera.parameters(), "lr": config.lr_mask, "weight_decay": 0.0})
    optim = torch.optim.Adam(groups)
    sampler = EpochSampler(len(data.train), config.batch_size, config.seed, stream=0, hflip=True)
    steps_per_epoch = sampler.batches_per_epoch
    total_steps = steps_per_epoch * config.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))
    noise_gen = torch.Generator().manual_seed(config.seed * 31 + 5)
    reference = gaussian_psf(config.mask_size, config.reference_sigma)
    rows: list[dict[str, Any]] = []
    epoch0 = 0
    if state is not None:
        net.load_state_dict(state["net"])
        camera.load_state_dict(state["camera"])
        optim.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        sampler.load_state_dict(state["sampler"])
        noise_gen.set_state(state["noise_gen"])
        torch.set_rng_state(state["torch_rng"])
        rows, epoch0 = list(state["rows"]), int(state["epoch"])
        log(f"resumed at epoch {epoch0}")
    weights = {r: getattr(config, f"w_{r}") for r in REGULARISERS}
    net.train()
    for epoch in range(epoch0, config.epochs):
        sums: dict[str, float] = {"loss": 0.0, "ce": 0.0, "correct": 0.0, **{r: 0.0 for r in REGULARISERS}}
        for _ in range(steps_per_epoch):
            idx, flips = sampler.next()
            scenes = data.train[torch.from_numpy(idx)]
            flip = torch.from_numpy(flips).view(-1, 1, 1, 1)
            scenes = torch.where(flip, scenes.flip(-1), scenes)
            labels = torch.from_numpy(data.train_labels[idx])
            mask = camera()
            noise = torch.randn(scenes.shape, generator=noise_gen) * config.noise
            logits = net(lensless_measure(scenes, mask, noise=noise, bits=config.bits))
            ce = F.cross_entropy(logits, labels)
            regs = regularisers(mask, scenes, reference)
            loss = ce + sum(w * regs[r] for r, w in weights.items() if w)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            sums["loss"] += float(loss.detach())
            sums["ce"] += float(ce.detach())
            sums["correct"] += float((logits.argmax(1) == labels).float().mean())
            for r in REGULARISERS:
                sums[r] += float(regs[r].detach())
        row = {"epoch": epoch + 1, **{k: v / steps_per_epoch for k, v in sums.items() if k != "correct"},
               "train_accuracy": sums["correct"] / steps_per_epoch}
        row.update(evaluate(net, camera().detach(), data, config))
        rows.append(row)
        log(f"epoch {epoch + 1}/{config.epochs}: loss {row['loss']:.3f} train {row['train_accuracy']:.3f} "
            f"val {row['val_accuracy']:.3f} aperture {row['aperture_ratio']:.3f} blur {row['blurriness']:.3f}")
        save_checkpoint(checkpoint, config, {
            "net": net.state_dict(), "camera": camera.state_dict(), "optim": optim.state_dict(),
            "sched": sched.state_dict(), "sampler": sampler.state_dict(), "noise_gen": noise_gen.get_state(),
            "torch_rng": torch.get_rng_state(), "rows": rows, "epoch": epoch + 1})
        if stop_after is not None and epoch + 1 >= stop_after:
            return None
    mask = camera().detach()
    final = evaluate(net, mask, data, config, heldout=True)
    mask_np = mask.double().numpy()
    save_mask_file(out / "mask.json", mask_np, image_size=config.image_size, mask_size=config.mask_size,
                   mask_kind=config.mask, epochs=config.epochs, seed=config.seed, selection="last epoch",
                   regularisers={r: w for r, w in weights.items()})
    with atomic_path(out / "classifier.pt") as tmp:
        torch.save(net.state_dict(), tmp)
    write_csv(out / "log.csv", rows)
    report = {"config": asdict(config), "final": final, "epochs": len(rows),
              "mask_digest": mask_digest(mask_np), "data": data.info}
    atomic_write_json(out / "report.json", report)
    manifest = training_manifest(
        TRAINER, command=command if command is not None else cli_command(), config=asdict(config),
        seeds={"seed": config.seed, "split_seed": config.seed,
               "streams": "batches EpochSampler([seed, 0, epoch]); training noise torch.Generator(seed*31+5); "
                          "eval noise torch.Generator(seed*1000+1|2); mask init torch.Generator(seed*7919+17)"},
        data=data.info, models={"classifier": f"SmallResNet(width={config.width}) from scratch"},
        timings={"wall": time.perf_counter() - start}, metrics={**final, "epochs": len(rows)},
        outputs={"mask": "mask.json", "mask_digest": report["mask_digest"], "classifier": "classifier.pt",
                 "log": "log.csv", "report": "report.json"},
        notes=["Reported figures are the last epoch; validation is logged only, never used for selection.",
               "val_accuracy: closed-set, held-out images of the training identities (the talk's table).",
               "heldout_accuracy: nearest neighbour on the classifier's features, identities never trained on."],
    )
    atomic_write_json(out / "manifest.json", manifest)
    return report


def mask_digest(mask: np.ndarray) -> str:
    """Hash of a mask's values (float64), to tie a shipped preset to the run that produced it."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(mask, dtype=np.float64).tobytes()).hexdigest()[:16]
