"""``campro-bench regress RESULT.csv BASELINE.csv [--tol 0.01] [--key COL]... [--ignore COL]...``.

Exit status: 0 when every cell is within the tolerance and no row or column is missing on either
side; 1 when something moved (each finding is printed on its own line); 2 for unusable input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..regress import regress_files


def regress(
    result: Path = typer.Argument(..., help="the new table (CSV), e.g. results/e1-.../e1.csv"),
    baseline: Path = typer.Argument(..., help="the reference table (CSV), e.g. baselines/e1_ci.csv"),
    tol: float = typer.Option(0.01, help="largest allowed absolute difference per numeric cell"),
    key: Optional[list[str]] = typer.Option(
        None, "--key", "-k", help="key column identifying a row (repeatable; default: non-numeric columns)"
    ),
    ignore: Optional[list[str]] = typer.Option(None, "--ignore", help="column to leave out (repeatable)"),
) -> None:
    """Compare a result CSV with a baseline CSV; exit 1 naming every cell that moved beyond --tol."""
    report = regress_files(result, baseline, tol=tol, keys=key or None, ignore=ignore or ())
    console = Console(highlight=False, soft_wrap=True)
    for line in report.lines():
        console.print(line, markup=False)
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("regress")(regress)
