"""The U-Net training loop shared by the CamPro image enhancer (Sec. V-D, Eq. 8) and a restoration U-Net.

The enhancer ``R`` is a U-Net (:class:`campro_bench.enhancer.UNet`) trained on pairs
``(C(x), x)``: ``C`` is the (fixed) CamPro ISP, ``x`` a raw scene image. Its loss is the face-masked
L1 of Eq. 8, ``s * |R(C(x)) - x| + (1 - s) * |R(C(x))|``, with ``s`` = 0 on the faces detected in
the *raw* image (:mod:`campro_bench.training.face_masks`), so the network restores the scene and
paints faces black. Without the mask (``face_penalty = False``) the same loop trains the plain-L1
restoration network of Eq. 7, the white-box attacker of Sec. VII-C2
(:mod:`campro_bench.training.restoration`).

Paper settings kept: AdamW, learning rate 3e-4, weight decay 1e-2, random crops. Paper settings
scaled down for a CPU: 5,000 COCO images and 1,000 epochs become the COCO images under the data
root (a few hundred) and as many epochs as the time allows; masks come from MTCNN (the paper used
RetinaFace, which is not available offline).

Sampling is seeded and resumable: batches come from
:class:`campro_bench.training.data.EpochSampler` (a permutation per epoch), and each batch's crop
positions from ``numpy.random.default_rng([seed, stream, epoch, cursor])``, so a run resumed from
its checkpoint (:mod:`campro_bench.training.checkpoint`) is identical to an uninterrupted one.
Captured images are rounded to 8 bits (``quantize``), as a camera writes them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..config import option, parse_config, validate_config
from ..enhancer.model import UNet, UNetConfig, masked_l1_loss, save_enhancer, state_digest
from ..errors import CamproError, EmptyDatasetError
from ..io import tensor_to_uint8, uint8_to_tensor
from ..protectors.base import Protector
from .checkpoint import config_mismatch, load_module_state, load_training_checkpoint, save_training_checkpoint
from .conditions import TrainingConditions, count_draws, without_empty
from .data import EpochSampler

SAMPLER_STREAM = 0xE7
CROP_STREAM = 0xC7


@dataclass(frozen=True)
class UNetTrainConfig:
    """Everything that determines a U-Net training run (stored in checkpoints and manifests).

    Attributes:
        epochs: passes over the training images (one random crop per image and pass).
        batch_size: crops per AdamW step; the last incomplete batch of an epoch is dropped.
        crop: side of the square training crops (pixels, at the images' own resolution).
        lr, weight_decay: AdamW (paper: 3e-4 and 1e-2).
        hflip: random horizontal flips.
        face_crop_fraction: share of crops centred near a face, for images that have one (faces
            are a tiny part of COCO pixels; without this the face term of Eq. 8 is rarely seen).
        close_up_fraction: share of the face-centred crops taken as *close-ups*: a square around
            the face of ``U[1, 2]`` times its (enlarged) box's longer side, resized to ``crop``, so
            the face fills half to all of the frame, as in a doorbell or a face set's crops (COCO
            faces are small; without this the enhancer never sees a face that fills its input).
            0 (default): none, and no extra random draw, so earlier runs are unchanged.
        quantize: round captured images to 8 bits, as a camera writes them.
        base_channels, depth: U-Net size (:class:`~campro_bench.enhancer.UNetConfig`).
        face_penalty: True: Eq. 8 (enhancer); False: plain L1 of Eq. 7 (restoration).
        seed: weight initialisation, batch order, flips, crop positions and condition draws.
        conditions: capture conditions drawn per batch (:mod:`~campro_bench.training.conditions`):
            the crop as the sensor records it goes through the ISP and is also the target (the
            scene the camera saw); the keep-mask is unchanged. Empty (default): none, and left out
            of :meth:`to_dict`, so earlier runs and caches keep their keys.
    """

    epochs: int = option(150, ge=1, le=100_000)
    batch_size: int = option(8, ge=1, le=4096)
    crop: int = option(128, ge=8, le=8192)
    lr: float = option(3e-4, gt=0.0, le=10.0)
    weight_decay: float = option(1e-2, ge=0.0, le=10.0)
    hflip: bool = True
    face_crop_fraction: float = option(0.5, ge=0.0, le=1.0)
    close_up_fraction: float = option(0.0, ge=0.0, le=1.0)
    quantize: bool = True
    base_channels: int = option(12, ge=1, le=1024)
    depth: int = option(4, ge=2, le=10)
    face_penalty: bool = True
    seed: int = option(0, ge=0)
    conditions: dict[str, float] = option(dict, help="capture conditions drawn per batch before the ISP, with their "
                                          "probabilities (e.g. {grey = 0.5}); training/conditions.py")

    def __post_init__(self) -> None:
        validate_config(self, "U-Net training")
        TrainingConditions.parse(self.conditions, self.seed, "U-Net training key 'conditions'")

    def to_dict(self) -> dict[str, Any]:
        """The fields, less the options that are off (no conditions, no close-ups): the dictionaries
        (checkpoints, cache keys, manifests) of runs made before those options existed are unchanged."""
        values = without_empty(asdict(self))
        return {k: v for k, v in values.items() if not (k == "close_up_fraction" and v == 0)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "UNetTrainConfig":
        return parse_config(cls, data, "U-Net training")


@dataclass
class TrainingImages:
    """Raw uint8 ``H x W x 3`` images, their keep-masks (Eq. 8's ``s``; None for plain L1) and
    the (enlarged) face boxes used to centre some crops."""

    images: list[np.ndarray]
    masks: list[np.ndarray] | None = None
    boxes: list[np.ndarray] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.images:
            raise EmptyDatasetError("no training images for the U-Net")
        if not self.boxes:
            self.boxes = [np.zeros((0, 4), np.float32) for _ in self.images]
        if self.masks is not None and len(self.masks) != len(self.images) or len(self.boxes) != len(self.images):
            raise ValueError("images, masks and boxes must have one entry per image")

    def __len__(self) -> int:
        return len(self.images)

    def min_side(self) -> int:
        return min(min(im.shape[:2]) for im in self.images)


@dataclass
class UNetTrainResult:
    model: UNet
    history: list[dict[str, float]]
    config: UNetTrainConfig
    resumed_from_epoch: int = 0


def capture(isp: Protector, images: torch.Tensor, quantize: bool = True) -> torch.Tensor:
    """What the protected camera outputs for raw ``images``: ``isp(images)``, rounded to 8 bits."""
    with torch.no_grad():
        out = isp(images)
        return out.mul(255.0).round_().div_(255.0) if quantize else out


def _crop_origin(size: int, crop: int, rng: np.random.Generator, centre: float | None) -> int:
    if centre is None:
        return int(rng.integers(0, size - crop + 1))
    return int(np.clip(int(centre) - int(rng.integers(crop // 4, 3 * crop // 4 + 1)), 0, size - crop))


def close_up(image: np.ndarray, mask: np.ndarray | None, box: np.ndarray, crop: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """A ``crop x crop`` close-up of the face in ``box``: the square of ``U[1, 2]`` times the box's
    longer side around its centre (kept inside the image), resized with area averaging (bilinear when
    enlarging); its keep-mask resized with nearest neighbours, so a face that fills the frame is
    penalised wherever it is."""
    from PIL import Image

    h, w = image.shape[:2]
    side = int(round(max(box[2] - box[0], box[3] - box[1]) * rng.uniform(1.0, 2.0)))
    side = int(np.clip(side, 1, min(h, w)))
    y0 = int(np.clip(round((box[1] + box[3]) / 2 - side / 2), 0, h - side))
    x0 = int(np.clip(round((box[0] + box[2]) / 2 - side / 2), 0, w - side))
    region = Image.fromarray(np.ascontiguousarray(image[y0 : y0 + side, x0 : x0 + side]))
    resample = Image.Resampling.BOX if side > crop else Image.Resampling.BILINEAR
    out = np.asarray(region.resize((crop, crop), resample))
    if mask is None:
        return out, None
    keep = Image.fromarray(np.ascontiguousarray(mask[y0 : y0 + side, x0 : x0 + side]))
    return out, np.asarray(keep.resize((crop, crop), Image.Resampling.NEAREST), np.float32)


def sample_crops(data: TrainingImages, indices: np.ndarray, flips: np.ndarray, config: UNetTrainConfig,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch of raw crops ``B x 3 x c x c`` in [0, 1] and their keep-masks ``B x 1 x c x c``."""
    c = config.crop
    crops, masks = [], []
    for i, flip in zip(indices.tolist(), flips.tolist()):
        image, boxes = data.images[i], data.boxes[i]
        h, w = image.shape[:2]
        centre, box = None, None
        if len(boxes) and rng.random() < config.face_crop_fraction:
            box = boxes[int(rng.integers(len(boxes)))]
            centre = ((box[1] + box[3]) / 2, (box[0] + box[2]) / 2)
        full_mask = data.masks[i] if data.masks is not None else None
        if box is not None and config.close_up_fraction > 0 and rng.random() < config.close_up_fraction:
            crop, mask = close_up(image, full_mask, box, c, rng)
        else:
            y0 = _crop_origin(h, c, rng, None if centre is None else centre[0])
            x0 = _crop_origin(w, c, rng, None if centre is None else centre[1])
            crop = image[y0 : y0 + c, x0 : x0 + c]
            mask = full_mask[y0 : y0 + c, x0 : x0 + c] if full_mask is not None else None
        if flip:
            crop = crop[:, ::-1]
            mask = mask[:, ::-1] if mask is not None else None
        crops.append(crop)
        masks.append(mask)
    x = uint8_to_tensor(np.stack(crops))
    keep = torch.from_numpy(np.stack(masks)[:, None].copy()) if data.masks is not None else None
    return x, keep


def _losses(out: torch.Tensor, x: torch.Tensor, keep: torch.Tensor | None, face_penalty: bool) -> dict[str, torch.Tensor]:
    terms = {"loss": masked_l1_loss(out, x, keep if face_penalty else None)}
    if keep is not None:
        with torch.no_grad():
            bg = keep.expand_as(out)
            terms["l1_background"] = ((out - x).abs() * bg).sum() / bg.sum().clamp_min(1)
            face = 1 - bg
            if float(face.sum()) > 0:
                terms["face_mean_output"] = (out * face).sum() / face.sum()
    return terms


def train_unet(
    data: TrainingImages,
    isp: Protector,
    config: UNetTrainConfig,
    *,
    trainer: str = "enhancer",
    checkpoint: Path | None = None,
    resume: bool = False,
    device: torch.device | str = "cpu",
    on_step: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> UNetTrainResult:
    """Train a U-Net to map ``capture(isp, x)`` back to ``x`` (Eq. 8, or Eq. 7 without face penalty).

    With ``checkpoint``, the full training state is written there after every epoch; ``resume``
    continues from it (the configuration must match except ``epochs``).
    """
    if config.face_penalty and data.masks is None:
        raise CamproError("the face-masked loss (Eq. 8) needs keep-masks; pass masks or set face_penalty=False")
    if data.min_side() < config.crop:
        raise CamproError(f"crop {config.crop} is larger than the smallest training image side ({data.min_side()} px); "
                          "lower --crop")
    device = torch.device(device)
    torch.manual_seed(config.seed)
    model = UNet(UNetConfig(config.base_channels, config.depth)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sampler = EpochSampler(len(data), config.batch_size, config.seed, SAMPLER_STREAM, config.hflip)
    history: list[dict[str, float]] = []
    start_epoch = 0
    if resume and checkpoint is not None and checkpoint.is_file():
        saved, state = load_training_checkpoint(checkpoint, trainer,
                                                required=("model", "optimizer", "sampler", "history", "epoch"))
        diff = config_mismatch(saved, config.to_dict(), ignore=("epochs",))
        if diff:
            raise CamproError(f"cannot resume {checkpoint}: configuration differs ({'; '.join(diff)})")
        load_module_state(model, state["model"], str(checkpoint))
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state_dict(state["sampler"])
        history, start_epoch = list(state["history"]), int(state["epoch"])
        if log:
            log(f"resumed {checkpoint} at epoch {start_epoch}")
    isp = isp.to(device).eval()
    per_epoch = sampler.batches_per_epoch
    conditions = TrainingConditions.parse(config.conditions, config.seed)
    drawn = [conditions.name(None), *(c.spec() for c in conditions.conditions)] if conditions.active else []
    for epoch in range(start_epoch, config.epochs):
        model.train()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        draws: dict[str, int] = {}
        started = time.perf_counter()
        for _ in range(per_epoch):
            indices, flips = sampler.next()
            rng = np.random.default_rng([config.seed, CROP_STREAM, sampler.epoch, sampler.cursor])
            x, keep = sample_crops(data, indices, flips, config, rng)
            condition = conditions.draw("enhancer", sampler.epoch, sampler.cursor)
            x = conditions.apply(condition, x.to(device))
            count_draws([conditions.name(condition)], draws)
            keep = keep.to(device) if keep is not None else None
            out = model(capture(isp, x, config.quantize))
            terms = _losses(out, x, keep, config.face_penalty)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
                counts[key] = counts.get(key, 0) + 1
            if on_step is not None:
                on_step(1)
        row = {"epoch": epoch + 1, **{k: sums[k] / counts[k] for k in sums},
               **{f"batches@{name}": draws.get(name, 0) for name in drawn},  # the epoch's condition draws
               "seconds": time.perf_counter() - started}
        history.append(row)
        if checkpoint is not None:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "sampler": sampler.state_dict(),
                     "history": history, "epoch": epoch + 1}
            save_training_checkpoint(checkpoint, trainer, config.to_dict(), state)
        if log and (epoch + 1 == config.epochs or (epoch + 1) % max(1, config.epochs // 10) == 0):
            log(f"epoch {epoch + 1}/{config.epochs}: loss {row['loss']:.4f}")
    return UNetTrainResult(model.eval(), history, config, start_epoch)


# ----------------------------------------------------------------------------------------
# evaluation on full images
# ----------------------------------------------------------------------------------------
@torch.inference_mode()
def evaluate_unet(model: UNet, isp: Protector, images: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None,
                  quantize: bool = True, device: torch.device | str = "cpu") -> dict[str, float]:
    """Full-resolution scores, averaged over images, of the captured and of the enhanced images.

    ``l1_raw``: plain L1 to the raw image (Eq. 7); with masks also ``eq8`` (the training loss),
    ``l1_background`` (L1 to raw outside faces) and, over face pixels of images with faces,
    ``face_l1_raw`` (how far faces are from the raw faces) and ``face_mean`` (mean output value:
    0 = painted black).
    """
    model = model.to(device).eval()
    isp = isp.to(device).eval()
    sums: dict[str, list[float]] = {}

    def add(key: str, value: torch.Tensor) -> None:
        sums.setdefault(key, []).append(float(value))

    for n, image in enumerate(images):
        x = uint8_to_tensor(image)[None].to(device)
        captured = capture(isp, x, quantize)
        outputs = {"captured": captured, "enhanced": model(captured).clamp(0, 1)}
        keep = torch.from_numpy(masks[n])[None, None].to(device) if masks is not None else None
        for name, out in outputs.items():
            add(f"{name}/l1_raw", (out - x).abs().mean())
            if keep is None:
                continue
            add(f"{name}/eq8", masked_l1_loss(out, x, keep))
            bg = keep.expand_as(out)
            add(f"{name}/l1_background", ((out - x).abs() * bg).sum() / bg.sum().clamp_min(1))
            face = 1 - bg
            if float(face.sum()) > 0:
                add(f"{name}/face_l1_raw", ((out - x).abs() * face).sum() / face.sum())
                add(f"{name}/face_mean", (out * face).sum() / face.sum())
    result = {key: float(np.mean(values)) for key, values in sums.items()}
    result["images"] = float(len(images))
    if masks is not None:
        result["images_with_faces"] = float(sum(1 for m in masks if float(m.min()) < 1))
    return result


@torch.inference_mode()
def sample_rows(model: UNet, isp: Protector, images: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None,
                quantize: bool = True, device: torch.device | str = "cpu") -> list[tuple[str, list[np.ndarray]]]:
    """Rows raw / face-masked target / captured / enhanced for an image grid (uint8 images)."""
    rows: dict[str, list[np.ndarray]] = {"raw": [], "target (Eq. 8)": [], "captured": [], "enhanced": []}
    for n, image in enumerate(images):
        x = uint8_to_tensor(image)[None].to(device)
        captured = capture(isp.to(device), x, quantize)
        rows["raw"].append(image)
        if masks is not None:
            rows["target (Eq. 8)"].append((image * masks[n][..., None]).astype(np.uint8))
        rows["captured"].append(tensor_to_uint8(captured[0]))
        rows["enhanced"].append(tensor_to_uint8(model.to(device).eval()(captured)[0]))
    return [(label, imgs) for label, imgs in rows.items() if imgs]


def save_unet(result: UNetTrainResult, path: Path, **metadata: Any) -> str:
    """Write the trained U-Net in the enhancer weights format; returns its weights digest."""
    save_enhancer(result.model, path, training=result.config.to_dict(), **metadata)
    return state_digest(result.model)
