"""``campro-bench train ...``: training commands, one sub-command per thing that can be trained.

:data:`train_app` is a typer sub-app; other modules attach their commands to it with
``@train_app.command("isp")`` (the ISP and the enhancer trainers) and nothing else changes.

``campro-bench train detector --protector P``: fine-tune a person detector on protected training
images, as the paper does once per protection method before Table III.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .. import paths
from ..experiments.runner import resolve_device

train_app = typer.Typer(
    name="train",
    help="Train things: a person detector on protected images (more trainers attach here).",
    no_args_is_help=True,
    add_completion=False,
)


@train_app.command("detector")
def train_detector_command(
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
    data_root: Optional[str] = typer.Option(None, help="data root (default $CAMPRO_BENCH_DATA)"),
    cache_dir: Optional[str] = typer.Option(None, help="cache folder (default $CAMPRO_BENCH_CACHE)"),
    models_dir: Optional[str] = typer.Option(None, help="user weights (default $CAMPRO_BENCH_MODELS)"),
    device: str = typer.Option("auto", help="cpu, cuda or auto"),
) -> None:
    """Fine-tune a person detector on protected images; writes a checkpoint and a JSON report."""
    from ..datasets.coco import load_person_dataset
    from ..detection import create_person_detector
    from ..detection.finetune import FinetuneConfig, train_detector
    from ..io.atomic import atomic_write_json
    from ..protectors import build_protector
    from ..utility.detection_eval import evaluate_detector

    torch_device = resolve_device(device)
    prot = build_protector(protector).to(torch_device).eval()
    root = paths.data_root(data_root)
    train_set = load_person_dataset(dataset, root, "train").subset(max_images, seed)
    model = create_person_detector(detector, models_dir, cache_dir, torch_device)
    config = FinetuneConfig(epochs, batch_size, lr, momentum, weight_decay, hflip, seed)
    out = out or Path("results") / f"detector-{prot.fingerprint()}.pt"
    console = Console(stderr=True)
    val_set = load_person_dataset(dataset, root, "val") if evaluate else None
    before = evaluate_detector(model, val_set, prot, batch_size, torch_device) if val_set else None
    with Progress(
        TextColumn(f"[bold]train detector[/] {prot.spec()}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=console,
    ) as progress:
        task = progress.add_task("train", total=epochs * len(train_set))
        report = train_detector(
            model, train_set, prot, config, out=out, device=torch_device,
            on_step=lambda n: progress.advance(task, n),
        )
    if val_set is not None:
        report["val_before"] = before
        report["val_after"] = evaluate_detector(model, val_set, prot, batch_size, torch_device)
        report["val_dataset"] = val_set.fingerprint()
        atomic_write_json(out.with_suffix(".json"), report)
    summary = {k: report[k] for k in ("checkpoint", "checkpoint_sha256", "epoch_loss") if k in report}
    if val_set is not None:
        summary["AP before -> after"] = f"{report['val_before']['AP']:.4f} -> {report['val_after']['AP']:.4f}"
    Console().print_json(json.dumps(summary))


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
