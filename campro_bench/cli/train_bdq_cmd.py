"""``campro-bench train bdq``: adversarially train the BDQ video encoder (see docs/video.md).

Attaches to the ``train`` sub-app of :mod:`campro_bench.cli.train_cmd`; see :mod:`campro_bench.video.training`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from .. import paths
from .config_options import config_file_option, resolve_config, set_option
from .train_cmd import train_app


@train_app.command("bdq")
def train_bdq_command(
    ctx: typer.Context,
    out: Path = typer.Option(Path("results/train-bdq"), help="output folder"),
    resume: bool = typer.Option(False, "--resume", help="continue from <out>/checkpoint.pt"),
    data_root: Optional[str] = typer.Option(None, help="data root (default $CAMPRO_BENCH_DATA)"),
    config_file: Optional[Path] = config_file_option(),
    set_: list[str] = set_option(),
) -> None:
    """Train the BDQ encoder (blur sigma, bin centres) against an actor classifier; writes bdq.json + manifest.
    Options of the run (iterations, alpha, dataset, ...) are set with --set KEY=VALUE or --config."""
    import torch

    from ..video.training import BDQTrainConfig, train_bdq

    config = resolve_config(ctx, BDQTrainConfig, "train bdq", config_file, set_)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    console = Console(stderr=True)
    root = paths.data_root(data_root) if not Path(config.dataset).is_dir() else None
    manifest = train_bdq(config, out, data_root=root, resume=resume, log=lambda m: console.print(m, highlight=False))
    Console().print_json(json.dumps({"out": str(out), "preset": str(out / "bdq.json"),
                                     "encoder": manifest["outputs"]["encoder"],
                                     "wall_seconds": manifest["timings_s"]["wall"]}))


def register(app: typer.Typer) -> None:
    """The command attaches to ``train`` on import; nothing else to register."""
