"""Person detectors fine-tuned on a protector's images, cached (shared by E3 and the trade-off sweep).

A fine-tuned detector is stored in ``<cache>/detectors/<detector>-<key>.pt`` with a JSON report
beside it; the key covers everything that determines it (detector weights, protector
fingerprint, training data fingerprint, hyper-parameters, seed), and the report holds the
checkpoint's digest, so an altered or truncated entry is fine-tuned again.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import option, option_like
from ..datasets.coco import PersonDataset
from ..detection import PersonDetector
from ..detection.checkpoint import load_checkpoint
from ..detection.finetune import FinetuneConfig, train_detector
from ..io.hashing import sha256_file, sha256_json
from .base import RunContext


@dataclass(frozen=True)
class DetectionUtilityConfig:
    """Person detection on protected images (E3's protocol, the trade-off's ``[utility]``).

    ``batch_size`` is both the evaluation and the fine-tuning batch; the fine-tuning keys take
    their defaults and ranges from :class:`FinetuneConfig` (``finetune_epochs`` is its ``epochs``).
    """

    detector: str = option("ssdlite-mobilenetv2-coco", help="person detector (PERSON_DETECTORS)")
    dataset: str = option("coco128", help="person dataset whose val split is evaluated")
    train_dataset: str = option("coco128", help="person dataset whose train split fine-tunes the detector")
    max_images: int = option(0, ge=0, le=1_000_000, help="0 = every val image; N = a seeded subset")
    max_train_images: int = option(0, ge=0, le=1_000_000, help="0 = every train image; N = a seeded subset")
    finetune_epochs: int = option_like(FinetuneConfig, "epochs")
    batch_size: int = option_like(FinetuneConfig, "batch_size")
    lr: float = option_like(FinetuneConfig, "lr")
    momentum: float = option_like(FinetuneConfig, "momentum")
    weight_decay: float = option_like(FinetuneConfig, "weight_decay")
    hflip: bool = option_like(FinetuneConfig, "hflip")

    def finetune(self, seed: int) -> FinetuneConfig:
        """The fine-tuning hyper-parameters (they key the cached detectors, see :func:`cache_key`)."""
        return FinetuneConfig(epochs=self.finetune_epochs, batch_size=self.batch_size, lr=self.lr,
                              momentum=self.momentum, weight_decay=self.weight_decay, hflip=self.hflip, seed=seed)


def cache_key(detector: PersonDetector, protector_fingerprint: str, data: dict[str, Any], config: FinetuneConfig) -> str:
    return sha256_json(
        [detector.name, detector.weights_hash, protector_fingerprint, data["sha256"], data["images"], config.to_dict()]
    )[:16]


def detector_from_checkpoint(base: PersonDetector, path: Path) -> PersonDetector:
    """A copy of ``base`` (already built on its device) with the weights of a detector checkpoint."""
    detector = copy.deepcopy(base)
    load_checkpoint(detector, path)
    return detector.eval()


def finetuned_detector(
    base: PersonDetector,
    protector,
    train_set: PersonDataset,
    config: FinetuneConfig,
    ctx: RunContext,
) -> tuple[PersonDetector, dict[str, Any]]:
    """The base detector fine-tuned on ``protector``'s images, from the cache when possible."""
    data = train_set.fingerprint()
    key = cache_key(base, protector.fingerprint(), data, config)
    path = ctx.cache_dir / "detectors" / f"{base.name}-{key}.pt"
    if path.is_file() and path.with_suffix(".json").is_file():
        report = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        # the report holds the checkpoint's digest: an altered or truncated entry is fine-tuned again
        if sha256_file(path)[:16] == report.get("checkpoint_sha256"):
            return detector_from_checkpoint(base, path), {**report, "cached": True}
    detector = copy.deepcopy(base)
    steps = config.epochs * len(train_set)
    with ctx.progress(f"fine-tune {protector.spec()}", steps) as advance:
        report = train_detector(detector, train_set, protector, config, out=path, device=ctx.device, on_step=advance)
    detector.weights_hash = report["checkpoint_sha256"]
    return detector.eval(), {**report, "cached": False}
