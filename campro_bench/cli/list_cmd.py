"""``campro-bench list [KIND] [PATTERN]``: what is registered, and where it came from."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from ..errors import UnknownNameError
from ..registries import ALL


def list_registered(
    kind: str = typer.Argument(
        None, help=f"one of: {', '.join(ALL)} (default: all)", show_default=False
    ),
    pattern: str = typer.Argument("*", help="shell-style name filter, e.g. 'arc*'"),
) -> None:
    """List registered protectors, models, datasets, experiments and plugins."""
    if kind is not None and kind not in ALL:
        raise UnknownNameError(f"unknown kind '{kind}'; known kinds: {', '.join(ALL)}")
    kinds = [kind] if kind else list(ALL)
    console = Console()
    for k in kinds:
        registry = ALL[k]
        table = Table(title=f"{k} (entry-point group {registry.group})", title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("description")
        table.add_column("origin", style="dim")
        for entry in registry.entries(pattern):
            table.add_row(entry.name, str(entry.metadata.get("description", "")), entry.origin)
        console.print(table)


def register(app: typer.Typer) -> None:
    app.command("list")(list_registered)
