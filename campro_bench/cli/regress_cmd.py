"""``campro-bench regress RESULT.csv BASELINE.csv [--flips K | --tol X] [--key COL]... [--ignore COL]...``.

Exit status: 0 when every cell is within its tolerance and no row or column is missing on either
side; 1 when something moved or the two tables come from different protocols (said first, in one
line; then the summary line and at most ``--show`` findings); 2 for unusable input.
The tolerance rules are described in :mod:`campro_bench.regress` and ``docs/privacy.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..regress import check_comparable, read_table, regress_files


def regress(
    result: Path = typer.Argument(..., help="the new table (CSV), e.g. results/e1-.../e1.csv"),
    baseline: Path = typer.Argument(..., help="the reference table (CSV), e.g. baselines/e1_ci.csv"),
    tol: Optional[float] = typer.Option(
        None, help="absolute tolerance per numeric cell. Alone, it applies to every column (--tol 0: "
        "bit-identical rerun on the same machine); with --flips, only to columns the flip rule does not know. "
        "Default 0.01"),
    flips: Optional[float] = typer.Option(
        None, help="identification tables (accuracy_mean, identities, repeats columns, e.g. e1.csv): flipped "
        "probe decisions allowed per repeat. accuracy_mean and *_detect_rate may move by K/identities, "
        "accuracy_std by K*R/(identities*sqrt(R-1)), ci_low/ci_high by the mean's tolerance plus t times "
        "the std's over sqrt(R); identities, repeats and chance must match exactly. This rule, with K = 1, "
        "is the default for identification tables when --tol is not given"),
    key: Optional[list[str]] = typer.Option(
        None, "--key", "-k", help="key column identifying a row (repeatable; default: non-numeric columns)"
    ),
    ignore: Optional[list[str]] = typer.Option(None, "--ignore", help="column to leave out (repeatable)"),
    show: int = typer.Option(20, "--show", min=0, help="list at most N moved cells (and rows, columns) after the summary"),
) -> None:
    """Compare a result CSV with a baseline CSV; exit 1 naming every cell that moved beyond its tolerance.

    Identification tables (e1.csv) are compared in flipped probe decisions (default 1 per repeat), so
    that floating-point differences between CPUs, which flip a single nearest-neighbour decision,
    pass, while a changed protector, model, alignment or classifier fails. --tol alone compares every
    cell with one absolute tolerance (--tol 0: bit-identical).
    """
    console = Console(highlight=False, soft_wrap=True)
    comparable = check_comparable(read_table(result), read_table(baseline), key or None, ignore or ())
    if not comparable.ok:  # said first, in one line: the cells below are then not a regression
        console.print(comparable.line(), markup=False)
    report = regress_files(result, baseline, tol=tol, flips=flips, keys=key or None, ignore=ignore or ())
    for line in report.lines(show):
        console.print(line, markup=False)
    if not (report.ok and comparable.ok):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("regress")(regress)
