"""``campro-bench train screen SWEEP_DIR``: rank a ``train isp`` sweep's runs by held-out judges (one E1).

Attaches to the ``train`` sub-app of :mod:`campro_bench.cli.train_cmd`; see
:mod:`campro_bench.experiments.screen_sweep` and docs/training.md ("Levers").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from .config_options import config_file_option, resolve_config, set_option
from .train_cmd import train_app


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@train_app.command("screen")
def train_screen_command(
    ctx: typer.Context,
    sweep_dir: Path = typer.Argument(..., help="sweep folder: one run folder (with isp.json) per run"),
    out: Optional[Path] = typer.Option(None, help="screen folder (default <SWEEP_DIR>-screen)"),
    judges: str = typer.Option("sface,mobilefacenet", help="held-out face recognisers, separated by commas "
                               "(none of them an attacker of any run)"),
    conditions: str = typer.Option("colour,grey", help="capture conditions of the probes, separated by commas"),
    reference: str = typer.Option("campro-isp:preset=casia-adv", help="protector spec a survivor is not worse than"),
    margin: float = typer.Option(0.0, help="a run survives when its worst top-1 <= the reference's + margin"),
    overwrite: bool = typer.Option(False, help="replace an earlier screen in --out"),
    data_root: Optional[str] = typer.Option(None, help="data root (default $CAMPRO_BENCH_DATA)"),
    cache_dir: Optional[str] = typer.Option(None, help="cache folder (default $CAMPRO_BENCH_CACHE)"),
    models_dir: Optional[str] = typer.Option(None, help="user weights (default $CAMPRO_BENCH_MODELS)"),
    device: str = typer.Option("auto", help="cpu, cuda or auto"),
    quiet: bool = typer.Option(False, help="no progress output"),
    config_file: Optional[Path] = config_file_option(),
    set_: list[str] = set_option(),
) -> None:
    """Rank a sweep's ISP runs by their worst held-out top-1 (one quick E1) and name the survivors."""
    from ..training.report import cli_command
    from ..experiments.screen_sweep import ScreenConfig, screen_sweep

    ctx.params.update(judges=_names(judges), conditions=_names(conditions))  # lists, as the configuration keys
    config = resolve_config(ctx, ScreenConfig, "train screen", config_file, set_)
    out = out or sweep_dir.with_name(f"{sweep_dir.name}-screen")
    table = screen_sweep(sweep_dir, out, config, data_root=data_root, cache_dir=cache_dir, models_dir=models_dir,
                         device=device, overwrite=overwrite, quiet=quiet, command=cli_command())
    Console().print_json(json.dumps({
        "out": str(out), "ranking": str(out / "screen.csv"),
        "runs": [{"rank": int(r["rank"]), "run": r["run"], "worst_top1": r["worst_top1"], "survivor": r["survivor"]}
                 for r in table.to_dict("records")]}))


def register(app: typer.Typer) -> None:
    """The command attaches to ``train`` on import; nothing else to register."""
