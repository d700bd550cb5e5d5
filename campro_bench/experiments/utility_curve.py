"""The utility diagnosis: person AP against the number of fine-tuning images (a learning curve).

Why CamPro keeps little person AP here: is the detector short of protected training data (the
AP share would climb towards the paper's with more images), or has the ISP removed the person
evidence (the share stays low however much data the detector sees)? For every protector of the
protocol the same detector is

* evaluated as it ships (``pretrained``, 0 fine-tuning images), and
* fine-tuned on nested seeded subsets of the fine-tune split (``train_sizes``; 0 = all of it:
  the first N images of one permutation seeded by ``seed``, so 50 are part of 150, and the
  manifest lists each subset's image ids under ``data``), each
  subset seeing the same number of images in all: ``epochs = round(image_budget / size)`` (50
  images: 11 epochs; 150: 4; 545: 1), so the curve varies the *variety* of data, not the
  length of training,

then scored on the same test images as E3, each AP with its 95 % bootstrap interval. The share
of raw AP (protected AP / raw AP at the same size) is the paper's comparison (Table III: CamPro
0.475 of raw 0.578, 82 %). Fine-tuned detectors are E3's cache entries: the full-split detector
of a protector is E3's own when the keys agree (same data, epochs 1, seed).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from ..config import option
from ..datasets.coco import PersonDataset
from ..errors import CamproError
from ..registries import EXPERIMENTS
from .base import ExperimentResult, RunContext
from .earlier_detection import PROTOCOL_KEYS, Wanted, earlier_points, lookup, run_record
from .finetuned import DetectionJob, PersonSubset, PersonUtilityProtocol, detection_results

PAPER_SHARE = 0.475 / 0.578
"""The paper's CamPro person AP as a share of raw (Table III: 0.475 / 0.578)."""


@dataclass(frozen=True)
class CurveConfig(PersonUtilityProtocol):
    """The learning-curve protocol (``protocols/utility-curve.toml``): E3's keys, plus the sizes.

    ``finetune_epochs`` is the full split's epoch count; ``max_train_images`` must stay 0 (the
    sizes are ``train_sizes``).
    """

    train_sizes: list[int] = option(lambda: [50, 150, 0], help="fine-tune subset sizes (0 = the whole split)")
    image_budget: int = option(0, ge=0, le=10_000_000, help="images seen per fine-tuning; 0 = finetune_epochs x "
                                                            "the whole fine-tune split")
    pretrained: bool = option(True, help="also evaluate the detector as it ships (0 fine-tuning images)")
    reuse: list[str] = option(list, help="earlier e3 / utility-curve run folders whose points (same test images, "
                                         "protocol and fine-tuning images, checked) are read, not re-measured")

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "CurveConfig":
        cfg = cls.parse(spec, "utility-curve")
        if cfg.max_train_images:
            raise CamproError("utility-curve: set train_sizes, not max_train_images")
        if any(size < 0 for size in cfg.train_sizes):
            raise CamproError(f"utility-curve: train_sizes must be >= 0, got {cfg.train_sizes}")
        return cfg


def subset_record(subset: PersonDataset) -> dict[str, Any]:
    """A fine-tuning subset for the manifest: its fingerprint and the COCO ids of its images."""
    return {**subset.fingerprint(), "image_ids": [record.id for record in subset.images]}


def epochs_for(size: int, full: int, budget: int) -> int:
    """Epochs that make ``size`` images (0 = ``full``) see about ``budget`` images, at least 1."""
    return max(1, int(round(budget / (size or full))))


@EXPERIMENTS.register(
    "utility-curve", protocol="utility-curve",
    description="Utility diagnosis: person AP vs fine-tuning images (pretrained, 50, 150, all) per protector",
)
def run_utility_curve(spec: dict[str, Any], ctx: RunContext) -> ExperimentResult:
    if ctx.compare not in (None, "paper"):
        raise CamproError(f"utility-curve can compare with 'paper' only, not '{ctx.compare}'")
    cfg = CurveConfig.from_spec(spec)
    seed = cfg.seed
    evaluated = PersonSubset(cfg.dataset, "val", cfg.max_images, seed)
    eval_set = evaluated.load(ctx)
    full = len(PersonSubset(cfg.train_dataset, "train", 0, seed).load(ctx))
    budget = cfg.image_budget or cfg.finetune_epochs * full
    ctx.manifest.seeds.update({"seed": seed, "finetune": seed, "subset": seed, "bootstrap": seed})
    ctx.manifest.data["eval"] = eval_set.fingerprint()
    base = cfg.finetune(seed)
    trained = {}
    for size in dict.fromkeys(cfg.train_sizes):
        record = subset_record(PersonSubset(cfg.train_dataset, "train", size, seed, nested=True).load(ctx))
        ctx.manifest.data[f"finetune {size or full} images"] = record
        trained[size or full] = record["sha256"]
    protocol = {key: getattr(cfg, key) for key in PROTOCOL_KEYS}
    earlier = earlier_points(cfg.reuse, Wanted(ctx.manifest.data["eval"]["sha256"], protocol, trained),
                             ctx.results_root)
    sizes = ([None] if cfg.pretrained else []) + list(cfg.train_sizes)  # None: pretrained
    jobs, points = [], []
    for size in sizes:  # size-major: the cheap points first, the full split (E3's cache) last
        for item in cfg.protectors:
            if size is None:
                train, config, images, epochs = None, base, 0, 0
            else:
                train = PersonSubset(cfg.train_dataset, "train", size, seed, nested=True)
                epochs = epochs_for(size, full, budget)
                config, images = replace(base, epochs=epochs), size or full
            found = lookup(earlier, item.spec, images, epochs)
            if found is None:
                jobs.append(DetectionJob(f"{item.label} / {images} img", item.spec, cfg.detector, evaluated, train,
                                         config, cfg.batch_size, bootstrap=cfg.bootstrap))
            points.append((item.label, item.spec, images, epochs, found))
    results = iter(detection_results(jobs, ctx))
    rows = []
    for label, spec_text, images, epochs, found in points:
        m, source = (found, found["source_run"]) if found is not None else (next(results), "this run")
        if found is None:
            if m["report"] is not None:
                ctx.manifest.models[f"{cfg.detector} fine-tuned on {label}, {images} images"] = {
                    "weights_sha256": m["weights_sha256"], "cached": m["report"]["cached"]}
            m = m["metrics"]
        rows.append({"Method": label, "protector": spec_text, "finetune_images": images, "epochs": epochs,
                     "images_seen": images * epochs, "AP": m["AP"], "AP_lo": m.get("AP_lo", np.nan),
                     "AP_hi": m.get("AP_hi", np.nan), "AP@0.5": m["AP@0.5"], "AP@0.75": m["AP@0.75"],
                     "detector": "pretrained" if images == 0 else f"fine-tuned on {images} images",
                     "measured_in": source})
    if cfg.reuse:
        ctx.manifest.notes["reused_runs"] = [run_record(folder, ctx.results_root) for folder in cfg.reuse]
    table = pd.DataFrame(rows)
    first = cfg.protectors[0].label
    reference = table[table["Method"] == first].set_index("finetune_images")["AP"]
    table["share_of_first"] = [r.AP / reference[r.finetune_images] if reference[r.finetune_images] > 0 else np.nan
                               for r in table.itertuples()]
    ctx.manifest.notes["curve"] = {"image_budget": budget, "full_split": full, "reference_row": first,
                                   "bootstrap": {"draws": cfg.bootstrap, "seed": seed, "confidence": 0.95}}
    notes = (
        f"Person AP of {cfg.detector} on {len(eval_set)} protected {eval_set.name} test images, pretrained and "
        f"fine-tuned per protector on nested seeded subsets of the {full} fine-tune images (the first N of one "
        f"permutation, seed {seed}; ids in the manifest); every fine-tuning sees about "
        f"{budget} images (epochs = round({budget} / size)). AP_lo / AP_hi: 95 % bootstrap interval over the test "
        f"images ({cfg.bootstrap} draws, seed {seed}). share_of_first: AP / the {first} row's AP at the same size"
        f" (the paper's CamPro share: {PAPER_SHARE:.0%}). measured_in: 'this run', or the earlier run folder whose point "
        "(same test images, protocol and fine-tuning images, checked) was read instead of re-measured."
    )
    return ExperimentResult(tables={"utility_curve": table}, figures={"utility_curve": curve_figure(table, first)},
                            notes=notes)


def curve_figure(table: pd.DataFrame, first: str) -> Any:
    """AP (left) and AP share of the first row (right) against fine-tuning images, with intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    for method, part in table.groupby("Method", sort=False):
        part = part.sort_values("finetune_images")
        line = left.plot(part["finetune_images"], part["AP"], marker="o", label=method)[0]
        left.errorbar(part["finetune_images"], part["AP"], yerr=[part["AP"] - part["AP_lo"], part["AP_hi"] - part["AP"]],
                      fmt="none", ecolor=line.get_color(), capsize=3)
        if method != first:
            right.plot(part["finetune_images"], 100 * part["share_of_first"], marker="o", color=line.get_color(),
                       label=method)
    right.axhline(100 * PAPER_SHARE, color="grey", linestyle="--", label=f"paper: CamPro {PAPER_SHARE:.0%} of raw")
    right.axhline(50, color="grey", linestyle=":", label="50 % of raw")
    left.set(xlabel="fine-tuning images (0 = pretrained detector)", ylabel="person AP (test images, 95 % interval)",
             title="person AP vs fine-tuning data")
    right.set(xlabel="fine-tuning images (0 = pretrained detector)", ylabel=f"AP share of {first} (%)",
              title=f"share of {first} AP at the same data")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
