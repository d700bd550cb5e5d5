"""Printing results: the same text on a terminal and in a log file.

Off a terminal (a pipe, ``> log.txt``, CI) rich would fall back to 80 columns and hard-wrap every
long line, so a Markdown table row became three lines that no Markdown reader or ``grep`` can use.
:func:`results_console` never wraps printed text (soft wrap: the terminal, if any, folds long lines
for display only), and :func:`print_table` prints a table as Markdown without rounding noise
(:mod:`campro_bench.io.display`).
"""

from __future__ import annotations

import pandas as pd
from rich.console import Console

from ..io.display import markdown


def results_console() -> Console:
    """A stdout console whose printed lines are never broken: one table row is one line."""
    return Console(highlight=False, soft_wrap=True)


def print_table(console: Console, table: pd.DataFrame, title: str | None = None) -> None:
    """``table`` as Markdown (rounding noise shown as 0), under a bold ``title`` when given."""
    if title is not None:
        console.print(f"[bold]{title}[/]") if console.is_terminal else console.print(title, markup=False)
    console.print(markdown(table), markup=False)
