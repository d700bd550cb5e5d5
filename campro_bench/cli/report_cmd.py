"""``campro-bench report RUN_DIR [--out FILE]``: one self-contained HTML page for a run or an audit."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..html_report import write_report


def report(
    run_dir: Path = typer.Argument(..., help="a folder written by `campro-bench run` or `campro-bench audit`"),
    out: Optional[Path] = typer.Option(None, help="the HTML file to write (default RUN_DIR/report.html)"),
) -> None:
    """Write one HTML page with the run's tables, figures, manifest summary and the command to reproduce it."""
    path = write_report(run_dir, out)
    Console(highlight=False, soft_wrap=True).print(f"report written to {path}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
