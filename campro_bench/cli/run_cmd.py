"""``campro-bench run EXPERIMENT``: run e1..e5 (or any registered experiment) from its protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from ..experiments.runner import run_experiment
from .output import print_table, results_console


def run(
    experiment: str = typer.Argument(..., help="experiment name (see `campro-bench list experiments`)"),
    protocol: Optional[str] = typer.Option(
        None, "--protocol", "-p", help="protocol name or TOML path (default: the experiment's own)"
    ),
    set_: list[str] = typer.Option(
        [], "--set", "-s", help="override a protocol key, e.g. --set repeats=3 (repeatable)"
    ),
    out: Optional[Path] = typer.Option(None, help="output folder (default results/<exp>-<time>)"),
    results_root: Path = typer.Option(Path("results"), help="where default output folders go"),
    data_root: Optional[str] = typer.Option(None, help="data root (default $CAMPRO_BENCH_DATA)"),
    cache_dir: Optional[str] = typer.Option(None, help="cache folder (default $CAMPRO_BENCH_CACHE)"),
    models_dir: Optional[str] = typer.Option(None, help="user weights (default $CAMPRO_BENCH_MODELS)"),
    device: str = typer.Option("auto", help="cpu, cuda or auto"),
    compare: Optional[str] = typer.Option(None, help="'paper': add the paper's numbers beside ours"),
    overwrite: bool = typer.Option(
        False, help="replace the files an earlier run wrote in the output folder (those its manifest lists); "
        "files you added there are kept"),
    quiet: bool = typer.Option(False, help="no progress bars"),
    executor: str = typer.Option(
        "local", help="local (in this process) or ray (independent cells as Ray tasks; pip install -e '.\\[ray]')"),
    address: Optional[str] = typer.Option(
        None, help="with --executor ray: auto (a running cluster), local (start a private one), or HOST:PORT"),
) -> None:
    """Run an experiment and write its tables, figures and manifest."""
    folder, result = run_experiment(
        experiment,
        protocol=protocol,
        overrides=set_,
        out=out,
        results_root=results_root,
        data_root=data_root,
        cache_dir=cache_dir,
        models_dir=models_dir,
        device=device,
        compare=compare,
        quiet=quiet,
        overwrite=overwrite,
        executor=executor,
        address=address,
    )
    console = results_console()
    for name, table in result.tables.items():
        print_table(console, table, name)
    console.print(f"results written to {folder}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
