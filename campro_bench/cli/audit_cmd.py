"""``campro-bench audit SPEC [SPEC ...]``: the worst-case privacy audit of protectors.

A thin front door to ``campro-bench run audit``: the protector specs become the protocol's
``protectors`` key; everything else (``--set``, ``--out``, ``--executor``/``--address``, manifest, atomic output) is
the runner's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from ..experiments.runner import run_experiment
from .output import print_table, results_console


def audit(
    specs: list[str] = typer.Argument(..., help="protector specs, e.g. invert 'lowres:factor=16' campro-isp:preset=casia-adv"),
    protocol: Optional[str] = typer.Option(None, "--protocol", "-p", help="protocol name or TOML path (default: audit)"),
    set_: list[str] = typer.Option([], "--set", "-s", help="override a protocol key, e.g. --set eval_identities=20"),
    out: Optional[Path] = typer.Option(None, help="output folder (default results/audit-<time>)"),
    results_root: Path = typer.Option(Path("results"), help="where default output folders go"),
    data_root: Optional[str] = typer.Option(None, help="data root (default $CAMPRO_BENCH_DATA)"),
    cache_dir: Optional[str] = typer.Option(None, help="cache folder (default $CAMPRO_BENCH_CACHE)"),
    models_dir: Optional[str] = typer.Option(None, help="user weights (default $CAMPRO_BENCH_MODELS)"),
    device: str = typer.Option("auto", help="cpu, cuda or auto"),
    overwrite: bool = typer.Option(
        False, help="replace the files an earlier run wrote in the output folder (those its manifest lists); "
        "files you added there are kept"),
    quiet: bool = typer.Option(False, help="no progress bars"),
    executor: str = typer.Option(
        "local", help="local (in this process) or ray (embedding cells and the rungs' trainings as Ray tasks)"),
    address: Optional[str] = typer.Option(
        None, help="with --executor ray: auto (a running cluster), local (start a private one), or HOST:PORT"),
) -> None:
    """Run every attack rung against each protector; write audit.csv, summary.md and reports."""
    folder, result = run_experiment("audit", protocol=protocol, overrides=[*set_, f"protectors={json.dumps(specs)}"],
                                    out=out, results_root=results_root, data_root=data_root, cache_dir=cache_dir,
                                    models_dir=models_dir, device=device, quiet=quiet, overwrite=overwrite,
                                    executor=executor, address=address)
    console = results_console()
    print_table(console, result.tables["summary"])
    console.print(f"results written to {folder}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)
