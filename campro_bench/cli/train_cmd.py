"""``campro-bench train ...``: training commands, one sub-command per thing that can be trained.

:data:`train_app` is a typer sub-app; other modules attach their commands to it with
``@train_app.command("isp")`` (the ISP and the enhancer trainers) and nothing else changes.

``campro-bench train detector --protector P``: fine-tune a person detector on protected training
images, as the paper does once per protection method before Table III.

``campro-bench train enhancer --isp PRESET``: train the CamPro image enhancer (Eq. 8) for an ISP.

``campro-bench train isp``: adversarially train the CamPro ISP parameters (Algorithm 1).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from .. import paths
from ..context import resolve_device
from ..io.outfolder import check_new_file, check_output_location
from ..progress import stage_progress
from .config_options import config_file_option, resolve_config, set_option

train_app = typer.Typer(
    name="train",
    help="Train things: a person detector on protected images (more trainers attach here).",
    no_args_is_help=True,
    add_completion=False,
)


@train_app.command("detector")
def train_detector_command(
    ctx: typer.Context,
    protector: str = typer.Option(..., "--protector", "-p", help="protector spec, e.g. lowres:factor=16"),
    dataset: str = typer.Option("coco128", help="person-detection dataset; its 'train' split is used"),
    detector: str = typer.Option("ssdlite-mobilenetv2-coco", help="registered person detector to start from"),
    epochs: int = typer.Option(5, min=1, help="passes over the training images"),
    batch_size: int = typer.Option(8, min=1, help="images per SGD step"),
    lr: float = typer.Option(1e-3, help="SGD learning rate"),
    momentum: float = typer.Option(0.9, help="SGD momentum"),
    weight_decay: float = typer.Option(4e-5, help="SGD weight decay"),
    hflip: bool = typer.Option(True, help="random horizontal flips"),
    seed: int = typer.Option(0, help="seed of shuffling and flips"),
    max_images: int = typer.Option(0, min=0, help="> 0: seeded random subset of the training images"),
    out: Optional[Path] = typer.Option(None, help="checkpoint path (default results/detector-<protector>.pt)"),
    evaluate: bool = typer.Option(True, help="report AP on the protected val split before and after"),
    overwrite: bool = typer.Option(False, help="replace an existing checkpoint (and its report) at --out"),
    data_root: Optional[str] = typer.Option(None, help="data root (default $CAMPRO_BENCH_DATA)"),
    cache_dir: Optional[str] = typer.Option(None, help="cache folder (default $CAMPRO_BENCH_CACHE)"),
    models_dir: Optional[str] = typer.Option(None, help="user weights (default $CAMPRO_BENCH_MODELS)"),
    device: str = typer.Option("auto", help="cpu, cuda or auto"),
    config_file: Optional[Path] = config_file_option(),
    set_: list[str] = set_option(),
) -> None:
    """Fine-tune a person detector on protected images; writes a checkpoint and a JSON report."""
    from ..datasets.coco import load_person_dataset
    from ..detection import create_person_detector
    from ..detection.finetune import FinetuneConfig, train_detector
    from ..io.atomic import atomic_write_json
    from ..protectors import build_protector
    from ..utility.detection_eval import evaluate_detector

    config = resolve_config(ctx, FinetuneConfig, "train detector", config_file, set_)
    epochs, batch_size, seed = config.epochs, config.batch_size, config.seed
    torch_device = resolve_device(device)
    prot = build_protector(protector).to(torch_device).eval()
    root = paths.data_root(data_root)
    train_set = load_person_dataset(dataset, root, "train").subset(max_images, seed)
    model = create_person_detector(detector, models_dir, cache_dir, torch_device)
    out = out or Path("results") / f"detector-{prot.fingerprint()}.pt"
    check_output_location(out.parent, "--out folder", replaces=False)
    if not overwrite:
        check_new_file(out, out.with_suffix(".json"))
    console = Console(stderr=True)
    val_set = load_person_dataset(dataset, root, "val") if evaluate else None
    before = evaluate_detector(model, val_set, prot, batch_size, torch_device) if val_set else None
    with stage_progress(console, f"train detector {prot.spec()}", epochs * len(train_set)) as advance:
        report = train_detector(model, train_set, prot, config, out=out, device=torch_device, on_step=advance)
    if val_set is not None:
        report["val_before"] = before
        report["val_after"] = evaluate_detector(model, val_set, prot, batch_size, torch_device)
        report["val_dataset"] = val_set.fingerprint()
        atomic_write_json(out.with_suffix(".json"), report)
    summary = {k: report[k] for k in ("checkpoint", "checkpoint_sha256", "epoch_loss") if k in report}
    if val_set is not None:
        summary["AP before -> after"] = f"{report['val_before']['AP']:.4f} -> {report['val_after']['AP']:.4f}"
    Console().print_json(json.dumps(summary))


@train_app.command("enhancer")
def train_enhancer_command(
    ctx: typer.Context,
    isp: str = typer.Option(..., "--isp", help="ISP preset name (e.g. casia-adv) or ISP parameter file"),
    images: str = typer.Option("coco128,coco-mini", help="person datasets (all splits, or NAME:train / NAME:val)"),
    holdout: str = typer.Option("coco-mini:val", help="images never trained on (E4 scores coco-mini val); '' = none"),
    mask_detector: str = typer.Option("mtcnn", help="face detector for the Eq. 8 masks (run on the raw images)"),
    box_margin: float = typer.Option(0.2, help="face boxes grown by this fraction of their size on each side"),
    epochs: int = typer.Option(150, min=1, help="passes over the training images (one crop per image and pass)"),
    crop: int = typer.Option(128, min=8, help="side of the random training crops (pixels)"),
    batch_size: int = typer.Option(8, min=1, help="crops per AdamW step"),
    lr: float = typer.Option(3e-4, help="AdamW learning rate (paper: 3e-4)"),
    weight_decay: float = typer.Option(1e-2, help="AdamW weight decay (paper: 1e-2)"),
    face_crop_fraction: float = typer.Option(0.5, help="share of crops centred near a face"),
    base_channels: int = typer.Option(12, min=1, help="U-Net width of the first level"),
    depth: int = typer.Option(4, min=2, help="U-Net levels"),
    max_images: int = typer.Option(0, min=0, help="> 0: seeded random subset of the training images"),
    seed: int = typer.Option(0, help="seed of initialisation, batch order, crops and flips"),
    out: Optional[Path] = typer.Option(None, help="output folder (default results/enhancer-<isp>)"),
    resume: bool = typer.Option(False, help="continue from <out>/checkpoint.pt"),
    data_root: Optional[str] = typer.Option(None, help="data root (default $CAMPRO_BENCH_DATA)"),
    cache_dir: Optional[str] = typer.Option(None, help="cache folder (default $CAMPRO_BENCH_CACHE)"),
    device: str = typer.Option("auto", help="cpu, cuda or auto"),
    config_file: Optional[Path] = config_file_option(),
    set_: list[str] = set_option(),
) -> None:
    """Train the CamPro image enhancer (U-Net, face-masked L1 of Eq. 8) for an ISP; see
    campro_bench/training/enhancer.py for the outputs."""
    from ..context import RunContext
    from ..manifest import Manifest
    from ..training.enhancer import EnhancerJob, train_enhancer
    from ..training.unet import UNetTrainConfig

    config = resolve_config(ctx, UNetTrainConfig, "train enhancer", config_file, set_)
    job = EnhancerJob(isp=isp, images=images, holdout=holdout, mask_detector=mask_detector, box_margin=box_margin,
                      max_images=max_images)
    out = out or Path("results") / f"enhancer-{Path(isp).stem}"
    ctx = RunContext(manifest=Manifest("train-enhancer", {}))
    report = train_enhancer(job, config, out, data_root=paths.data_root(data_root), cache_dir=paths.cache_dir(cache_dir),
                            device=str(resolve_device(device)), resume=resume, progress=ctx.progress, log=ctx.log)
    Console().print_json(json.dumps({"out": str(out), "held_out": report["held_out"], "final_epoch": report["final_epoch"]}))


@train_app.command("isp")
def train_isp_command(
    ctx: typer.Context,
    attacker: str = typer.Option(
        "facenet-casia", help="white-box attacker F: a differentiable face recogniser; several separated by "
        "commas (e.g. facenet-casia,mobilefacenet) for an ensemble, whose losses are averaged over the models"),
    face_dataset: str = typer.Option("celeba-subset", help="face identity dataset D_F (proxy identities)"),
    person_dataset: str = typer.Option("coco128", help="person-detection dataset D_P (its 'train' split)"),
    person_detector: str = typer.Option("ssdlite-mobilenetv2-coco", help="differentiable person detector P"),
    omega: float = typer.Option(0.2, help="weight of the utility loss L_det (Eq. 6; paper 0.2)"),
    m: int = typer.Option(1, "--m", help="attacker steps per iteration"),
    n: int = typer.Option(1, "--n", help="protector steps per iteration"),
    iterations: int = typer.Option(300, help="adversarial iterations after the warm-up"),
    batch_size: int = typer.Option(16, help="face crops per step"),
    person_batch_size: int = typer.Option(4, help="person images per protector step"),
    protector_only: bool = typer.Option(False, "--protector-only", help="no attacker steps (Table II ablation)"),
    init: str = typer.Option("standard", help="starting ISP: preset name or parameter JSON file"),
    seed: int = typer.Option(0, help="seed of the split, batch order and flips"),
    lr_isp: float = typer.Option(1e-3, help="Adam learning rate of the 41 ISP parameters (paper 1e-3)"),
    lr_attacker: float = typer.Option(1e-4, help="SGD learning rate of F (paper 1e-1 diverges here; see docs)"),
    lr_head: float = typer.Option(1e-1, help="SGD learning rate of the proxy head H"),
    lr_detector: float = typer.Option(1e-4, help="SGD learning rate of P (paper 1e-4)"),
    momentum: float = typer.Option(0.9, help="SGD momentum of F and H"),
    warmup_threshold: float = typer.Option(0.9, help="warm-up ends at this running training accuracy (raw)"),
    warmup_max_epochs: int = typer.Option(6, help="warm-up epochs at most (0: no warm-up)"),
    head_init_epochs: int = typer.Option(20, help="epochs of the linear probe that initialises H (0: zero H)"),
    ccm_bound: float = typer.Option(8.0, help="every CCM entry is kept within [-bound, bound]"),
    max_identities: int = typer.Option(0, help="> 0: first N identities of the face dataset"),
    max_person_images: int = typer.Option(0, help="> 0: seeded subset of the person images"),
    checkpoint_every: int = typer.Option(50, help="iterations between checkpoints"),
    val_every: int = typer.Option(50, help="iterations between validations (0: start and end only)"),
    restorer: str = typer.Option("none", help="restoration adversary in the loop: none (the paper) or unet "
                                 "(a U-Net inverts the ISP; the ISP is also trained against its restored faces)"),
    restoration_weight: float = typer.Option(1.0, help="weight of L_rs, the privacy loss on restored faces"),
    out: Path = typer.Option(Path("results/train-isp"), help="output folder"),
    resume: bool = typer.Option(False, "--resume", help="continue from <out>/checkpoint.pt"),
    data_root: Optional[str] = typer.Option(None, help="data root (default $CAMPRO_BENCH_DATA)"),
    cache_dir: Optional[str] = typer.Option(None, help="cache folder (default $CAMPRO_BENCH_CACHE)"),
    models_dir: Optional[str] = typer.Option(None, help="user weights (default $CAMPRO_BENCH_MODELS)"),
    device: str = typer.Option("auto", help="cpu, cuda or auto"),
    config_file: Optional[Path] = config_file_option(),
    set_: list[str] = set_option(),
) -> None:
    """Adversarially train the CamPro ISP parameters (Algorithm 1); see docs/training.md."""
    from ..training.isp import ISPTrainConfig, train_isp

    config = resolve_config(ctx, ISPTrainConfig, "train isp", config_file, set_)
    console = Console(stderr=True)
    labels = {"head-init": "head init: embed raw crops", "warmup": "warm-up steps (at most)",
              "restorer-warmup": "restorer warm-up steps"}
    with contextlib.ExitStack() as stages:
        current: dict[str, object] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if current.get("phase") != phase:  # a new phase closes the previous one's bar or log
                stages.close()
                advance = stages.enter_context(
                    stage_progress(console, f"train isp {labels.get(phase, 'iterations')}", total))
                current.update(phase=phase, advance=advance, done=0)
            current["advance"](done - current["done"])  # type: ignore[operator]
            current["done"] = done

        manifest = train_isp(config, out, resume=resume, data_root=data_root, cache_dir=cache_dir,
                             models_dir=models_dir, device=resolve_device(device), progress=progress)
    metrics = manifest["metrics"]
    summary = {"out": str(out), "isp": str(out / "isp.json"), "iterations": metrics["iterations"],
               "final_val": metrics["final_val"], "wall_seconds": round(metrics["wall_seconds"], 1)}
    Console().print_json(json.dumps(summary))


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
