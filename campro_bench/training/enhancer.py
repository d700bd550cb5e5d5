"""``campro-bench train enhancer``: train the CamPro image enhancer for one ISP (paper Sec. V-D, VI-A).

What it does, in order:

1. collects the scene images of the chosen person datasets (``coco128``, ``coco-mini``; both
   splits unless one is named, e.g. ``coco128:train``), minus the *held-out* images
   (default ``coco-mini:val``, the images E4 scores), de-duplicated by file name;
2. detects faces on the raw images with a registered face detector (cached;
   :mod:`campro_bench.training.face_masks`), enlarges the boxes by ``box_margin`` and builds the
   keep-masks ``s`` of Eq. 8;
3. trains the U-Net with :func:`campro_bench.training.unet.train_unet` (AdamW 3e-4, wd 1e-2,
   random crops and flips, seeded, resumable);
4. writes into ``out``: ``enhancer.pt`` (the weights, loadable by
   :func:`campro_bench.enhancer.load_enhancer` and by ``campro-enhanced:params=ISP,enhancer=...``),
   ``checkpoint.pt`` (training state for ``--resume``), ``history.csv``, ``loss.png``,
   ``samples.png`` (raw / face-masked target / captured / enhanced held-out images),
   ``report.json`` (held-out scores before/after) and ``manifest.json``.

To ship the result as ``campro-enhanced:preset=NAME``, copy ``enhancer.pt`` to
``campro_bench/presets/enhancer/NAME.pt`` and ``manifest.json`` beside it as ``NAME.manifest.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..datasets.coco import SPLITS, load_person_dataset
from ..datasets.fingerprint import fingerprint
from ..errors import CamproError, EmptyDatasetError
from ..faces.pipeline import ProgressFactory, progress_bar
from ..io import atomic_write_json, load_image
from ..io.hashing import ids_digest
from ..io.outfolder import check_new_run, check_output_location
from ..protectors import build_protector
from ..protectors.isp import CamproISP
from .conditions import TrainingConditions
from .face_masks import detect_face_boxes, enlarge_boxes, keep_mask
from .report import Panel, plot_panels, save_image_grid, training_manifest, write_csv
from .unet import TrainingImages, UNetTrainConfig, evaluate_unet, sample_rows, save_unet, train_unet

TRAINER = "enhancer"


def resolve_isp(spec: str) -> CamproISP:
    """The ISP from a preset name (``casia-adv``), a parameter file (``isp.json``) or a
    ``campro-isp:...`` protector spec."""
    if spec.startswith("campro-isp"):
        isp = build_protector(spec)
    elif spec.endswith(".json") or Path(spec).is_file():
        isp = CamproISP(params=Path(spec))
    else:
        isp = CamproISP(preset=spec)
    if not isinstance(isp, CamproISP):
        raise CamproError(f"'{spec}' is not a CamPro ISP (campro-isp) spec")
    return isp


def parse_sources(text: str | list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """``"coco128,coco-mini:train"`` -> ``[("coco128", ("train", "val")), ("coco-mini", ("train",))]``."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        name, _, split = item.partition(":")
        if split and split not in SPLITS:
            raise CamproError(f"bad image source '{item}': split must be one of {', '.join(SPLITS)}")
        out.append((name, (split,) if split else SPLITS))
    return out


TEST_ONLY = {"coco-person-val": "val"}
"""Person datasets whose split is their test set (E3, pose and the trade-off score on it): never trained on."""


def training_sources(text: str | list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """:func:`parse_sources` for training images: a dataset's test split is refused in one line, and a
    dataset named without a split gives only its other splits (``coco-person-val``: the fine-tune images)."""
    sources = []
    for name, splits in parse_sources(text):
        test = TEST_ONLY.get(name)
        if test is not None and splits == (test,):
            raise CamproError(f"'{name}:{test}' is the test split that utility is scored on; train on "
                              f"'{name}' (its fine-tune images) instead")
        sources.append((name, tuple(s for s in splits if s != test)))
    return sources


def scene_paths(data_root: Path, sources: list[tuple[str, tuple[str, ...]]]) -> list[Path]:
    """Image files of the person datasets' splits, sorted and unique by file name (COCO ids)."""
    seen: dict[str, Path] = {}
    for name, splits in sources:
        for split in splits:
            for record in load_person_dataset(name, data_root, split).images:
                seen.setdefault(record.path.name, record.path)
    return [seen[k] for k in sorted(seen)]


@dataclass
class EnhancerJob:
    """What to train on (the U-Net hyper-parameters are a :class:`UNetTrainConfig`)."""

    isp: str
    images: str | list[str] = "coco128,coco-mini"
    holdout: str | list[str] = "coco-mini:val"
    mask_detector: str = "mtcnn"
    box_margin: float = 0.2
    max_images: int = 0
    grid_images: int = 6
    notes: list[str] = field(default_factory=list)


def masked_images(paths: list[Path], job: EnhancerJob, cache_dir: Path, device: str,
                  progress: ProgressFactory | None) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Raw images, keep-masks and enlarged face boxes (faces detected on the raw images)."""
    with progress_bar(progress, f"face boxes ({job.mask_detector})", len(paths)) as advance:
        raw_boxes = detect_face_boxes(paths, job.mask_detector, cache_dir, device=device, on_progress=advance)
    images, masks, boxes = [], [], []
    for path, found in zip(paths, raw_boxes):
        image = load_image(path)
        h, w = image.shape[:2]
        grown = enlarge_boxes(found, job.box_margin, h, w)
        images.append(image)
        masks.append(keep_mask(grown, h, w))
        boxes.append(grown)
    return images, masks, boxes


def _data_info(root: Path, paths: list[Path]) -> dict[str, Any]:
    info = fingerprint(root, paths)
    info.pop("root", None)
    info["ids_sha"] = ids_digest([p.relative_to(root).as_posix() for p in paths])
    return info


OUTPUTS = ("checkpoint.pt", "enhancer.pt", "history.csv", "loss.png", "samples.png", "report.json", "manifest.json")
"""Every file a ``train enhancer`` run writes into its folder (a new run refuses a folder holding one)."""


def train_enhancer(
    job: EnhancerJob,
    config: UNetTrainConfig,
    out: Path,
    *,
    data_root: Path,
    cache_dir: Path,
    device: str = "cpu",
    resume: bool = False,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] | None = None,
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Train the enhancer for ``job.isp`` and write the outputs listed in the module docstring.

    ``command``: what the manifest records as the command (default: this process's arguments)."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    check_output_location(out, replaces=False)
    if not resume:
        check_new_run(out, OUTPUTS)
    isp = resolve_isp(job.isp)
    held = scene_paths(data_root, parse_sources(job.holdout)) if job.holdout else []
    held_names = {p.name for p in held}
    train_paths = [p for p in scene_paths(data_root, training_sources(job.images)) if p.name not in held_names]
    if job.max_images > 0 and len(train_paths) > job.max_images:
        chosen = np.random.default_rng([config.seed, 0x1A6E]).choice(len(train_paths), job.max_images, replace=False)
        train_paths = [train_paths[i] for i in sorted(chosen.tolist())]
    if not train_paths:
        raise EmptyDatasetError(f"no training images left in '{job.images}' after holding out '{job.holdout}'")
    images, masks, boxes = masked_images(train_paths, job, cache_dir, device, progress)
    held_images, held_masks, _ = masked_images(held, job, cache_dir, device, progress) if held else ([], [], [])
    faces = int(sum(len(b) for b in boxes))
    data = TrainingImages(images, masks, boxes, {"images": len(images), "faces": faces})
    timings["data"] = time.perf_counter() - start
    if log:
        log(f"training on {len(images)} images ({faces} faces, {sum(1 for b in boxes if len(b))} images with faces); "
            f"{len(held)} held out")

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    steps = config.epochs * (len(data) // config.batch_size)
    with progress_bar(progress, f"train enhancer for {isp.spec()}", steps) as advance:
        result = train_unet(data, isp, config, trainer=TRAINER, checkpoint=out / "checkpoint.pt", resume=resume,
                            device=device, on_step=advance, log=log)
    timings["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    metrics = evaluate_unet(result.model, isp, held_images, held_masks, config.quantize, device) if held else {}
    timings["evaluate"] = time.perf_counter() - t0
    isp_info = {"spec": isp.spec(), "fingerprint": isp.fingerprint(), "params_digest": isp.to_params().digest()}
    digest = save_unet(result, out / "enhancer.pt", trainer=TRAINER, isp=isp_info, mask_detector=job.mask_detector,
                       box_margin=job.box_margin)
    write_csv(out / "history.csv", result.history)
    epochs = [r["epoch"] for r in result.history]
    panels = [Panel("training loss (Eq. 8) per epoch", {"loss": (epochs, [r["loss"] for r in result.history])},
                    xlabel="epoch", ylabel="L1", logy=True)]
    if result.history and "l1_background" in result.history[0]:
        panels.append(Panel("parts of the loss", {
            "L1 to raw outside faces": (epochs, [r["l1_background"] for r in result.history]),
            "mean output on faces": (epochs, [r.get("face_mean_output", float("nan")) for r in result.history]),
        }, xlabel="epoch"))
    plot_panels(out / "loss.png", panels, title=f"enhancer for {isp.spec()}")
    if held:
        pick = [i for i, m in enumerate(held_masks) if float(m.min()) < 1][: job.grid_images]
        save_image_grid(out / "samples.png", sample_rows(result.model, isp, [held_images[i] for i in pick],
                                                         [held_masks[i] for i in pick], config.quantize, device),
                        cell=160, label_width=120)
    report = {
        "isp": isp_info,
        "weights": {"file": "enhancer.pt", "state_digest": digest, "config": result.model.config.__dict__},
        "train_images": data.info,
        "held_out": {"sources": job.holdout, "images": len(held), "metrics": metrics},
        "final_epoch": result.history[-1] if result.history else {},
        "resumed_from_epoch": result.resumed_from_epoch,
    }
    atomic_write_json(out / "report.json", report)
    seeds: dict[str, Any] = {"seed": config.seed, "init": "torch.manual_seed(seed)",
                             "sampler": f"EpochSampler(seed, stream={0xE7}), crops: default_rng([seed, 0xC7, epoch, cursor])"}
    if config.conditions:
        counts: dict[str, int] = {}
        for row in result.history:
            for key, value in row.items():
                if key.startswith("batches@"):
                    counts[key.partition("@")[2]] = counts.get(key.partition("@")[2], 0) + int(value)
        seeds["conditions"] = TrainingConditions.parse(config.conditions, config.seed).manifest({"enhancer": counts})
    manifest = training_manifest(
        TRAINER,
        command=command,
        config={**config.to_dict(), "isp": job.isp, "images": job.images, "holdout": job.holdout,
                "mask_detector": job.mask_detector, "box_margin": job.box_margin, "max_images": job.max_images},
        seeds=seeds,
        data={"train": _data_info(data_root, train_paths), "held_out": _data_info(data_root, held) if held else {},
              "faces_in_train": faces},
        models={"isp": isp_info, "mask_detector": job.mask_detector, "enhancer_state_digest": digest},
        timings=timings,
        metrics={"held_out": metrics, "final_epoch": report["final_epoch"]},
        outputs={k: k for k in ("enhancer.pt", "checkpoint.pt", "history.csv", "loss.png", "samples.png", "report.json")},
        notes=[f"paper: 5,000 COCO images, 1,000 epochs, RetinaFace masks; here {len(images)} images, "
               f"{config.epochs} epochs, {job.mask_detector} masks", *job.notes],
    )
    atomic_write_json(out / "manifest.json", manifest)
    return report
