"""E3 (paper Table III): utility of person detection on protected images.

For each protector of the spec: the detector fine-tuned on protected training images (one per
method, as the paper does for a fair comparison; the pretrained detector when
``finetune_epochs = 0``), evaluated on protected validation images. Columns AP, AP@0.5, AP@0.75,
Precision, Recall, F1 (see :mod:`campro_bench.utility.detection_eval`).

Fine-tuned detectors are cached in ``<cache>/detectors/``, keyed by everything that determines
them (detector weights, protector, training data fingerprint, hyper-parameters, seed), so a
re-run evaluates without training again. ``--compare paper`` appends the paper's Table III rows
from ``baselines/paper/table3_person_detection.csv``, labelled as the paper's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..datasets.coco import PersonDataset, load_person_dataset
from ..detection import create_person_detector
from ..errors import CamproError, MissingFileError
from ..protectors import build_protector
from ..registries import EXPERIMENTS
from ..utility.detection_eval import METRICS, evaluate_detector
from .base import ExperimentResult, RunContext
from .common import PAPER_DIR
from .finetuned import detector_from_checkpoint, finetune_config, finetuned_detector

PAPER_TABLE = PAPER_DIR / "table3_person_detection.csv"
PAPER_LABEL = "paper (YOLOv5m, full COCO)"


def _weights_label(checkpoint: Any, train_set: PersonDataset | None, epochs: int) -> str:
    if checkpoint:
        return f"weights {Path(str(checkpoint)).name}, not fine-tuned"
    return f"fine-tuned {epochs} ep" if train_set is not None else "pretrained"


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
    protectors = spec.get("protectors") or []
    if not protectors:
        raise CamproError("the e3 spec lists no protectors")
    seed = int(spec.get("seed", 0))
    torch.manual_seed(seed)
    config = finetune_config(spec)
    ctx.manifest.seeds.update({"seed": seed, "finetune": config.seed, "subset": seed, "torch": seed})

    eval_set = load_person_dataset(spec.get("dataset", "coco128"), ctx.data_root, "val").subset(
        int(spec.get("max_images", 0)), seed
    )
    ctx.manifest.data["eval"] = eval_set.fingerprint()
    train_set = None
    if config.epochs > 0:
        train_set = load_person_dataset(spec.get("train_dataset", "coco128"), ctx.data_root, "train").subset(
            int(spec.get("max_train_images", 0)), seed
        )
        ctx.manifest.data["train"] = train_set.fingerprint()

    name = spec.get("detector", "ssdlite-mobilenetv2-coco")
    base = create_person_detector(name, ctx.models_dir, ctx.cache_dir, ctx.device)
    ctx.manifest.models[name] = {"weights_sha256": base.weights_hash, "contract": base.contract.to_dict()}
    batch_size = int(spec.get("batch_size", 8))

    rows, reports = [], {}
    for item in protectors:
        label, protector_spec = str(item["label"]), str(item["spec"])
        protector = build_protector(protector_spec).to(ctx.device).eval()
        detector = base
        checkpoint = item.get("checkpoint")
        if checkpoint:  # a given detector, e.g. the P that `train isp` trained jointly: evaluated as is
            detector = detector_from_checkpoint(base, Path(str(checkpoint)))
            ctx.manifest.models[f"{name} from {checkpoint}"] = {"weights_sha256": detector.weights_hash}
        elif train_set is not None:
            with ctx.manifest.timer(f"finetune {label}"):
                detector, report = finetuned_detector(base, protector, train_set, config, ctx)
            reports[label] = report
            ctx.manifest.models[f"{name} fine-tuned on {label}"] = {
                "weights_sha256": detector.weights_hash, "checkpoint": report.get("checkpoint"), "cached": report["cached"]
            }
        with ctx.manifest.timer(f"evaluate {label}"), ctx.progress(f"evaluate {label}", len(eval_set)) as advance:
            metrics = evaluate_detector(detector, eval_set, protector, batch_size, ctx.device, on_progress=advance)
        ctx.log(f"{label}: AP {metrics['AP']:.3f}  AP@0.5 {metrics['AP@0.5']:.3f}  F1 {metrics['F1']:.3f}")
        rows.append(
            {
                "Method": label,
                **{m: metrics[m] for m in METRICS},
                "threshold": metrics["threshold"],
                "protector": protector.spec(),
                "source": f"ours ({name}, {_weights_label(checkpoint, train_set, config.epochs)}, "
                f"{eval_set.name} val {len(eval_set)} img)",
            }
        )
    table = pd.DataFrame(rows)
    if ctx.compare == "paper":
        table = pd.concat([table, paper_rows()], ignore_index=True)
    notes = (
        f"Person detection on protected {eval_set.name} val images ({len(eval_set)} images, "
        f"{eval_set.num_persons} persons) with {name}"
        + (f", fine-tuned per protector for {config.epochs} epochs on {train_set.name} train "
           f"({len(train_set)} images, {train_set.num_persons} persons)" if train_set else " (pretrained, not fine-tuned)")
        + ". AP: COCOeval; Precision/Recall/F1 at IoU 0.5 at the F1-best threshold."
    )
    extra = {"finetune_reports.json": (json.dumps(reports, indent=2, default=str) + "\n").encode()} if reports else {}
    return ExperimentResult(tables={"table3": table}, notes=notes, extra_files=extra)
