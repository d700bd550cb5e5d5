"""``campro-bench train sweep CONFIG.toml``: several runs of one trainer (seeds, presets, loss weights).

Attaches to the ``train`` sub-app of :mod:`campro_bench.cli.train_cmd`; see
:mod:`campro_bench.training.sweep` and docs/training.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..errors import CamproError
from .train_cmd import train_app


@train_app.command("sweep")
def train_sweep_command(
    config_file: Path = typer.Argument(..., help="sweep file (TOML): trainer, shared options, runs and/or grid"),
    out: Optional[Path] = typer.Option(None, help="sweep folder: one folder per run and sweep.json "
                                       "(default results/sweep-<file name>)"),
    overwrite: bool = typer.Option(False, help="replace the runs (and sweep.json) an earlier sweep wrote in --out; "
                                   "files you added there are kept"),
    executor: str = typer.Option("local", help="local (runs one after another here) or ray (one Ray task per run; "
                                 "pip install -e '.\\[ray]')"),
    address: Optional[str] = typer.Option(
        None, help="with --executor ray: auto (a running cluster), local (start a private one), or HOST:PORT"),
    data_root: Optional[str] = typer.Option(None, help="data root (default $CAMPRO_BENCH_DATA)"),
    cache_dir: Optional[str] = typer.Option(None, help="cache folder (default $CAMPRO_BENCH_CACHE)"),
    models_dir: Optional[str] = typer.Option(None, help="user weights (default $CAMPRO_BENCH_MODELS)"),
    device: str = typer.Option("auto", help="cpu, cuda or auto"),
    quiet: bool = typer.Option(False, help="no progress output"),
) -> None:
    """Train every run of a sweep file, each into <out>/<run name>/ as its single `train` command would."""
    from ..training.report import cli_command
    from ..training.sweep import failures, load_sweep, run_sweep

    config = load_sweep(config_file)
    out = out or Path("results") / f"sweep-{config_file.stem}"
    record = run_sweep(config, out, executor=executor, address=address, data_root=data_root, cache_dir=cache_dir,
                       models_dir=models_dir, device=device, overwrite=overwrite, command=cli_command(),
                       source=str(config_file), quiet=quiet)
    Console().print_json(json.dumps({"out": str(out), "record": str(out / "sweep.json"), "runs": [
        {"name": e["name"], "status": e["status"], "wall_s": e.get("wall_s")} for e in record["runs"]]}))
    failed = failures(record)
    if failed:
        raise CamproError(f"{len(failed)} of {len(record['runs'])} runs failed ({'; '.join(failed)}); "
                          f"the others are in place, see {out / 'sweep.json'}")


def register(app: typer.Typer) -> None:
    """The command attaches to ``train`` on import; nothing else to register."""
