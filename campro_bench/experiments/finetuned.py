"""Person detectors fine-tuned on a protector's images, cached (shared by E3 and the trade-off sweep).

Each row of E3 and each point of the trade-off is one :class:`DetectionJob` (picklable: specs,
dataset names, configs), run as a task of the run's executor by :func:`detection_results`: the
task builds the detector and the protector itself, fine-tunes (or loads) the detector and
evaluates it on the protected val images.

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
from ..datasets.coco import PersonDataset, load_person_dataset
from ..detection import PersonDetector, create_person_detector
from ..detection.checkpoint import load_checkpoint
from ..detection.finetune import FinetuneConfig, train_detector
from ..io.hashing import sha256_file, sha256_json
from ..protectors import build_protector
from ..utility.bootstrap import DEFAULT_BOOTSTRAP
from ..utility.detection_eval import evaluate_detector
from ..errors import CamproError
from .base import RunContext
from .spec import parse_protocol


@dataclass(frozen=True)
class DetectionUtilityConfig:
    """Person detection on protected images (E3's protocol, the trade-off's ``[utility]``).

    ``batch_size`` is both the evaluation and the fine-tuning batch; the fine-tuning keys take
    their defaults and ranges from :class:`FinetuneConfig` (``finetune_epochs`` is its ``epochs``).
    """

    detector: str = option("ssdlite-mobilenetv2-coco", help="person detector (PERSON_DETECTORS)")
    dataset: str = option("coco-person-val", help="person dataset (or spec) whose val (test) split is evaluated")
    train_dataset: str = option("coco-person-val", help="person dataset (or spec) whose train (fine-tune) split "
                                                        "fine-tunes the detector")
    max_images: int = option(0, ge=0, le=1_000_000, help="0 = every val image; N = a seeded subset")
    max_train_images: int = option(0, ge=0, le=1_000_000, help="0 = every train image; N = a seeded subset")
    finetune_epochs: int = option_like(FinetuneConfig, "epochs", 1)
    batch_size: int = option_like(FinetuneConfig, "batch_size")
    lr: float = option_like(FinetuneConfig, "lr")
    momentum: float = option_like(FinetuneConfig, "momentum")
    weight_decay: float = option_like(FinetuneConfig, "weight_decay")
    hflip: bool = option_like(FinetuneConfig, "hflip")
    bootstrap: int = option(DEFAULT_BOOTSTRAP, ge=0, le=100_000,
                            help="bootstrap draws over the evaluated images for each AP's 95 % interval; 0 = none")

    def finetune(self, seed: int) -> FinetuneConfig:
        """The fine-tuning hyper-parameters (they key the cached detectors, see :func:`cache_key`)."""
        return FinetuneConfig(epochs=self.finetune_epochs, batch_size=self.batch_size, lr=self.lr,
                              momentum=self.momentum, weight_decay=self.weight_decay, hflip=self.hflip, seed=seed)


@dataclass(frozen=True)
class ProtectorRow:
    """One row of Table III / the utility curve: a protector spec, its row name, optionally a
    detector checkpoint."""

    label: str = option(help="the table's row name")
    spec: str = option(help="protector spec (campro-bench list protectors)")
    checkpoint: str = option("", help="a detector checkpoint evaluated as is (no fine-tuning); '' = none")


@dataclass(frozen=True)
class PersonUtilityProtocol(DetectionUtilityConfig):
    """E3's and the utility curve's keys: the detection keys, the seed and the rows.

    The detection keys' defaults (shared with the trade-off's ``[utility]``) are ``coco-person-val``
    and one fine-tuning epoch: 545 images once is 69 batches, more updates than five epochs of
    coco128's 61 images (40), at a cost a shared CPU can carry (docs/detection.md, "Cost").
    """

    seed: int = option(0, ge=0, help="seed of the subsets, the fine-tuning, the bootstrap and torch")
    protectors: list[ProtectorRow] = option(list, help="rows: {label, spec[, checkpoint]} or a protector spec")

    @classmethod
    def parse(cls, spec: dict[str, Any], name: str) -> Any:
        """The protocol ``name`` from ``spec``; a row given as a bare spec string is labelled with it."""
        given = dict(spec)
        if isinstance(given.get("protectors"), list):
            given["protectors"] = [{"label": p, "spec": p} if isinstance(p, str) else p for p in given["protectors"]]
        cfg = parse_protocol(cls, given, name)
        if not cfg.protectors:
            raise CamproError(f"the {name} spec lists no protectors")
        return cfg


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


@dataclass(frozen=True)
class PersonSubset:
    """A seeded subset of a person dataset's split, by name (a task loads it under its data root).

    ``nested``: the first ``max_images`` of one seeded permutation (:meth:`PersonDataset.nested_subset`,
    the subsets of a learning curve), else an independent seeded sample (:meth:`PersonDataset.subset`).
    """

    dataset: str
    split: str
    max_images: int
    seed: int
    nested: bool = False

    def load(self, ctx: RunContext) -> PersonDataset:
        split = load_person_dataset(self.dataset, ctx.data_root, self.split)
        if self.nested:
            return split.nested_subset(self.max_images, self.seed)
        return split.subset(self.max_images, self.seed)


@dataclass(frozen=True)
class DetectionJob:
    """One row of E3 / one point of the trade-off: the detector for ``protector`` (a given
    ``checkpoint``, else fine-tuned on ``train`` unless it is None, else the pretrained one)
    evaluated on ``eval`` protected by ``protector``, each AP with a ``bootstrap``-draw interval
    seeded by ``config.seed``. ``stage`` prefixes the manifest timers."""

    label: str
    protector: str
    detector: str
    eval: PersonSubset
    train: PersonSubset | None
    config: FinetuneConfig
    batch_size: int
    checkpoint: str = ""
    stage: str = ""
    bootstrap: int = 0


def detection_task(ctx: RunContext, job: DetectionJob) -> dict[str, Any]:
    """One executor task: build, fine-tune (or load) and evaluate the detector of ``job``."""
    base = create_person_detector(job.detector, ctx.models_dir, ctx.cache_dir, ctx.device)
    protector = build_protector(job.protector).to(ctx.device).eval()
    detector, report = base, None
    if job.checkpoint:  # a given detector, e.g. the P that `train isp` trained jointly: evaluated as is
        detector = detector_from_checkpoint(base, Path(job.checkpoint))
    elif job.train is not None:
        with ctx.manifest.timer(f"{job.stage}finetune {job.label}"):
            detector, report = finetuned_detector(base, protector, job.train.load(ctx), job.config, ctx)
    eval_set = job.eval.load(ctx)
    with ctx.manifest.timer(f"{job.stage}evaluate {job.label}"), \
            ctx.progress(f"evaluate {job.label}", len(eval_set)) as advance:
        metrics = evaluate_detector(detector, eval_set, protector, job.batch_size, ctx.device, on_progress=advance,
                                    bootstrap=job.bootstrap, seed=job.config.seed)
    return {"metrics": metrics, "report": report, "weights_sha256": detector.weights_hash,
            "base": {"weights_sha256": base.weights_hash, "contract": base.contract.to_dict()},
            "protector": protector.spec()}


def detection_results(jobs: list[DetectionJob], ctx: RunContext) -> list[dict[str, Any]]:
    """:func:`detection_task` of every job through the run's executor, in the jobs' order."""
    return ctx.map_tasks(detection_task, [(job,) for job in jobs], "fine-tune and evaluate detectors")
