"""E3 (paper Table III): utility of person detection on protected images.

For each protector of the spec (one task of the run's executor each): the detector fine-tuned on protected training images (one per
method, as the paper does for a fair comparison; the pretrained detector when
``finetune_epochs = 0``), evaluated on protected validation images. Columns AP, AP@0.5, AP@0.75,
Precision, Recall, F1 (see :mod:`campro_bench.utility.detection_eval`), each AP with its 95 %
bootstrap interval over the evaluated images (``AP_lo`` / ``AP_hi`` ...; ``bootstrap`` draws seeded
by ``seed``, :mod:`campro_bench.utility.bootstrap`).

The default data is ``coco-person-val`` (fine-tuned on its 545 fine-tune images, tested on its 500
test images, a seeded split recorded in the manifest); ``protocols/e3_coco128.toml`` is the
earlier setting (``coco128`` train / val).

Fine-tuned detectors are cached in ``<cache>/detectors/``, keyed by everything that determines
them (detector weights, protector, training data fingerprint, hyper-parameters, seed), so a
re-run evaluates without training again. ``--compare paper`` appends the paper's Table III rows
from ``baselines/paper/table3_person_detection.csv``, labelled as the paper's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..datasets.coco import PersonDataset
from ..errors import CamproError, MissingFileError
from ..registries import EXPERIMENTS
from ..utility.bootstrap import AP_KEYS
from ..utility.detection_eval import METRICS
from .base import ExperimentResult, RunContext
from .common import PAPER_DIR
from .finetuned import DetectionJob, PersonSubset, PersonUtilityProtocol, ProtectorRow, detection_results

PAPER_TABLE = PAPER_DIR / "table3_person_detection.csv"
PAPER_LABEL = "paper (YOLOv5m, full COCO)"


@dataclass(frozen=True)
class E3Config(PersonUtilityProtocol):
    """The E3 protocol (``protocols/e3.toml``): the detection keys, the seed and the rows
    (:class:`~campro_bench.experiments.finetuned.PersonUtilityProtocol`)."""

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "E3Config":
        """A row given as a bare spec string is labelled with that spec."""
        return cls.parse(spec, "e3")


def _weights_label(checkpoint: Any, train_set: PersonDataset | None, epochs: int) -> str:
    if checkpoint:
        return f"weights {Path(str(checkpoint)).name}, not fine-tuned"
    return f"fine-tuned {epochs} ep" if train_set is not None else "pretrained"


def _role(dataset: PersonDataset) -> str:
    """``test`` / ``fine-tune`` where the dataset records its split's role, else the split name."""
    return str(dataset.split_info.get("role", dataset.split))


def paper_rows() -> pd.DataFrame:
    """The paper's Table III, as transcribed in ``baselines/paper``."""
    if not PAPER_TABLE.is_file():
        raise MissingFileError(f"paper table {PAPER_TABLE} is missing (it ships in the repository's baselines/paper)")
    table = pd.read_csv(PAPER_TABLE)
    return pd.DataFrame(
        {"Method": table["method"], **{m: table[m] for m in METRICS}, "source": PAPER_LABEL}
    )


@EXPERIMENTS.register(
    "e3", protocol="e3", description="Table III: person detection (AP, P/R/F1) on protected images, detector fine-tuned per method"
)
def run_e3(spec: dict[str, Any], ctx: RunContext) -> ExperimentResult:
    if ctx.compare not in (None, "paper"):
        raise CamproError(f"e3 can compare with 'paper' only, not '{ctx.compare}'")
    cfg = E3Config.from_spec(spec)
    seed = cfg.seed
    torch.manual_seed(seed)
    config = cfg.finetune(seed)
    ctx.manifest.seeds.update({"seed": seed, "finetune": config.seed, "subset": seed, "torch": seed})

    evaluated = PersonSubset(cfg.dataset, "val", cfg.max_images, seed)
    eval_set = evaluated.load(ctx)
    ctx.manifest.data["eval"] = eval_set.fingerprint()
    train_set, trained = None, None
    if config.epochs > 0:
        trained = PersonSubset(cfg.train_dataset, "train", cfg.max_train_images, seed)
        train_set = trained.load(ctx)
        ctx.manifest.data["train"] = train_set.fingerprint()

    name = cfg.detector
    # a checkpoint path is resolved here: a task may run in another working folder
    jobs = [DetectionJob(item.label, item.spec, name, evaluated, trained, config, cfg.batch_size,
                         checkpoint=str(Path(item.checkpoint).absolute()) if item.checkpoint else "",
                         bootstrap=cfg.bootstrap)
            for item in cfg.protectors]
    results = detection_results(jobs, ctx)
    ctx.manifest.models[name] = results[0]["base"]

    rows, reports = [], {}
    for item, out in zip(cfg.protectors, results):
        label, checkpoint, metrics = item.label, item.checkpoint, out["metrics"]
        if checkpoint:
            ctx.manifest.models[f"{name} from {checkpoint}"] = {"weights_sha256": out["weights_sha256"]}
        elif out["report"] is not None:
            report = reports[label] = out["report"]
            ctx.manifest.models[f"{name} fine-tuned on {label}"] = {
                "weights_sha256": out["weights_sha256"], "checkpoint": report.get("checkpoint"), "cached": report["cached"]
            }
        ctx.log(f"{label}: AP {metrics['AP']:.3f}  AP@0.5 {metrics['AP@0.5']:.3f}  F1 {metrics['F1']:.3f}")
        rows.append(
            {
                "Method": label,
                **{m: metrics[m] for m in METRICS},
                **{f"{k}_{end}": metrics.get(f"{k}_{end}", float("nan")) for k in AP_KEYS for end in ("lo", "hi")},
                "threshold": metrics["threshold"],
                "protector": out["protector"],
                "source": f"ours ({name}, {_weights_label(checkpoint, train_set, config.epochs)}, "
                f"{eval_set.name} {_role(eval_set)} {len(eval_set)} img)",
            }
        )
    table = pd.DataFrame(rows)
    if cfg.bootstrap > 0:
        raw = table.iloc[0]
        table["AP_share_of_first"] = table["AP"] / raw["AP"] if raw["AP"] > 0 else float("nan")
        ctx.manifest.notes["bootstrap"] = {
            "draws": cfg.bootstrap, "seed": seed, "confidence": 0.95, "method": "percentile, images resampled "
            "with replacement, one COCOeval matching re-accumulated per draw"}
    if ctx.compare == "paper":
        table = pd.concat([table, paper_rows()], ignore_index=True)
    notes = (
        f"Person detection on protected {eval_set.name} val images ({len(eval_set)} images, "
        f"{eval_set.num_persons} persons) with {name}"
        + (f", fine-tuned per protector for {config.epochs} epochs on {train_set.name} train "
           f"({len(train_set)} images, {train_set.num_persons} persons)" if train_set else " (pretrained, not fine-tuned)")
        + ". AP: COCOeval; Precision/Recall/F1 at IoU 0.5 at the F1-best threshold."
        + (f" AP_lo / AP_hi: 95 % percentile bootstrap interval over the {len(eval_set)} evaluated images "
           f"({cfg.bootstrap} draws, seed {seed}); AP_share_of_first: AP / the first row's AP."
           if cfg.bootstrap > 0 else "")
    )
    extra = {"finetune_reports.json": (json.dumps(reports, indent=2, default=str) + "\n").encode()} if reports else {}
    return ExperimentResult(tables={"table3": table}, notes=notes, extra_files=extra)
