"""``campro-bench protect SPEC INPUT OUTPUT``: protect an image or a folder of images."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ..context import resolve_device
from ..errors import CamproError
from ..protect_files import check_outputs, check_sizes, collect_inputs, protect_files, resolve_budget, same_folder
from ..progress import stage_progress
from ..protectors import build_protector


def protect(
    spec: str = typer.Argument(..., help="protector spec, e.g. lowres:factor=16 or campro-isp:preset=NAME"),
    source: Path = typer.Argument(..., help="an image file or a folder of images (JPEG, PNG, BMP, TIFF, WebP, PGM, ...)"),
    output: Path = typer.Argument(..., help="output folder (created); files keep their names"),
    device: str = typer.Option("cpu", help="torch device, e.g. cpu or cuda"),
    batch_size: int = typer.Option(8, min=1, help="images per batch (equal sizes are batched)"),
    jpeg_quality: int = typer.Option(95, min=1, max=100, help="quality of JPEG outputs"),
    memory_budget: str = typer.Option(
        "auto", help="peak memory of one batch, e.g. 6GB (auto: 3/4 of the memory available at start); "
                     "batches shrink to fit it and an image that alone exceeds it is skipped, not decoded"),
    overwrite: bool = typer.Option(False, help="replace files of the same names already in OUTPUT (never an input)"),
) -> None:
    """Apply a registered protector to images, writing protected copies with the same names.

    A file already in OUTPUT under an output's name is refused (with the names) unless --overwrite."""
    budget = resolve_budget(memory_budget)
    protector = build_protector(spec)
    torch_device = resolve_device(device)
    files = collect_inputs(source)
    if source.is_dir() and same_folder(source, output):
        raise CamproError("output folder must differ from the input folder (inputs would be overwritten)")
    check_outputs(files, output, overwrite)  # before the progress bar: the refusal is the only line printed
    sizes = check_sizes(protector, files)
    console = Console(stderr=True)
    with stage_progress(console, "protect " + protector.spec(), len(files)) as advance:
        report = protect_files(
            protector,
            files,
            output,
            device=torch_device,
            batch_size=batch_size,
            jpeg_quality=jpeg_quality,
            on_progress=advance,
            memory_budget=budget,
            overwrite=overwrite,
            sizes=sizes,
        )
    for path, reason in report.failed.items():
        console.print(f"[yellow]skipped[/] {path.name}: {reason}", highlight=False, soft_wrap=True)
    console.print(
        f"{len(report.written)} written to {output}, {len(report.failed)} failed", highlight=False, soft_wrap=True
    )
    if report.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("protect")(protect)
