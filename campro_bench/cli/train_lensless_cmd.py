"""``campro-bench train lensless``: learn a lensless camera's mask with the owner's ResNet.

Attaches to the ``train`` sub-app of :mod:`campro_bench.cli.train_cmd`; see
:mod:`campro_bench.training.lensless` and docs/lensless.md.
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


@train_app.command("lensless")
def train_lensless_command(
    ctx: typer.Context,
    mask: str = typer.Option("learned", help="learned (sigmoid-parameterised), or fixed: pinhole, open, random, mseq"),
    w_sim: float = typer.Option(0.0, help="weight of the similarity loss to a Gaussian reference blur"),
    w_tv: float = typer.Option(0.0, help="weight of the total-variation loss -(|dx H| + |dy H|)"),
    w_inv: float = typer.Option(0.0, help="weight of the invertibility loss -|H|_1"),
    w_rip: float = typer.Option(0.0, help="weight of the RIP loss -|H*x|^2 / |x|^2"),
    image_size: int = typer.Option(63, help="sensor / scene side in pixels (talk: 63 or 127)"),
    mask_size: int = typer.Option(32, help="mask side in pixels (talk: 32 or 64)"),
    identities: int = typer.Option(60, help="training identities (first N with >= min-images images)"),
    heldout_identities: int = typer.Option(40, help="next N identities: the owner's open-set test, never trained on"),
    epochs: int = typer.Option(30, help="passes over the training images"),
    seed: int = typer.Option(0, help="seed of the split, mask init, batches, flips and noise"),
    out: Path = typer.Option(Path("results/train-lensless"), help="output folder"),
    resume: bool = typer.Option(False, "--resume", help="continue from <out>/checkpoint.pt"),
    data_root: Optional[str] = typer.Option(None, help="data root (default $CAMPRO_BENCH_DATA)"),
    cache_dir: Optional[str] = typer.Option(None, help="cache folder (default $CAMPRO_BENCH_CACHE)"),
    config_file: Optional[Path] = config_file_option(),
    set_: list[str] = set_option(),
) -> None:
    """Jointly train a lensless mask and an identification ResNet; writes mask.json + manifest."""
    from ..training.lensless import LenslessTrainConfig, train_lensless

    cfg = resolve_config(ctx, LenslessTrainConfig, "train lensless", config_file, set_)
    console = Console(stderr=True)
    report = train_lensless(cfg, out, resume=resume, data_root=paths.data_root(data_root),
                            cache_dir=paths.cache_dir(cache_dir), log=lambda m: console.print(m, highlight=False))
    Console().print_json(json.dumps({"out": str(out), "mask": str(out / "mask.json"), **report["final"]}))


def register(app: typer.Typer) -> None:
    """The command attaches to ``train`` on import; nothing else to register."""
