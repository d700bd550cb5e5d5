"""Person detectors fine-tuned on a protector's images, cached (shared by E3 and the trade-off sweep).

A fine-tuned detector is stored in ``<cache>/detectors/<detector>-<key>.pt`` with a JSON report
beside it; the key covers everything that determines it (detector weights, protector
fingerprint, training data fingerprint, hyper-parameters, seed), and the report holds the
checkpoint's digest, so an altered or truncated entry is fine-tuned again.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ..config import parse_config
from ..datasets.coco import PersonDataset
from ..detection import PersonDetector
from ..detection.checkpoint import load_checkpoint
from ..detection.finetune import FinetuneConfig, train_detector
from ..io.hashing import sha256_file, sha256_json
from .base import RunContext


def finetune_config(spec: dict[str, Any]) -> FinetuneConfig:
    """The fine-tuning keys of a protocol section (``finetune_epochs`` is the config's ``epochs``)."""
    names = {"finetune_epochs": "epochs", **{k: k for k in ("batch_size", "lr", "momentum", "weight_decay", "hflip",
                                                             "seed")}}
    return parse_config(FinetuneConfig, {names[k]: v for k, v in spec.items() if k in names}, "fine-tuning")


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
