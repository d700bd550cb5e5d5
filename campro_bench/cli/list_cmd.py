"""``campro-bench list [KIND] [PATTERN]``: what is registered, and where it came from.

KIND is a registry's name (``protectors``, ``face-recognizers``, ...), one of :data:`ALIASES`
(``models`` for face recognisers, singular forms, underscores) or ``plugins``: every entry that an
installed third-party package registered, in every registry, with the entry-point group to declare
one in.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from ..errors import UnknownNameError
from ..registries import ALL

PLUGINS = "plugins"
ALIASES: dict[str, str] = {
    "models": "face-recognizers",
    "recognizers": "face-recognizers",
    "recognisers": "face-recognizers",
    "face-recognisers": "face-recognizers",
}
"""Other names accepted for a kind (besides singular forms and underscores for hyphens)."""


def known_kinds() -> list[str]:
    return [*ALL, PLUGINS, *ALIASES]


def resolve_kind(kind: str) -> str:
    """The registry name (or ``plugins``) that ``kind`` means; one error line listing the kinds otherwise."""
    name = kind.strip().lower().replace("_", "-")
    for candidate in (name, f"{name}s"):
        if candidate in ALL or candidate == PLUGINS:
            return candidate
        if candidate in ALIASES:
            return ALIASES[candidate]
    raise UnknownNameError(f"unknown kind '{kind}'; known kinds: {', '.join(known_kinds())}")


def list_registered(
    kind: str = typer.Argument(
        None, help=f"one of: {', '.join(ALL)}, {PLUGINS} (also: {', '.join(ALIASES)}; default: all)",
        show_default=False,
    ),
    pattern: str = typer.Argument("*", help="shell-style name filter, e.g. 'arc*'"),
) -> None:
    """List registered protectors, models, datasets, experiments and plugins."""
    resolved = resolve_kind(kind) if kind is not None else None
    console = Console()
    if resolved == PLUGINS:
        _print_plugins(console, pattern)
        return
    for k in [resolved] if resolved else list(ALL):
        registry = ALL[k]
        table = Table(title=f"{k} (entry-point group {registry.group})", title_justify="left")
        table.add_column("name", style="bold", no_wrap=True)
        table.add_column("description")
        table.add_column("origin", style="dim", overflow="fold")
        for entry in registry.entries(pattern):
            table.add_row(entry.name, str(entry.metadata.get("description", "")), entry.origin)
        console.print(table)


def _print_plugins(console: Console, pattern: str) -> None:
    """Entries registered by installed packages, per registry, and where to declare new ones."""
    table = Table(title="plugins (entries from installed packages)", title_justify="left")
    table.add_column("kind", no_wrap=True)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("entry-point group", no_wrap=True)
    table.add_column("origin", style="dim", overflow="fold")
    found = 0
    for kind, registry in ALL.items():
        for entry in registry.entries(pattern):
            if entry.metadata.get("plugin"):
                table.add_row(kind, entry.name, registry.group, entry.origin)
                found += 1
    if found:
        console.print(table)
    else:
        console.print("no plugin installed; a package declares one under an entry-point group, e.g. "
                      f"[project.entry-points.\"{ALL['protectors'].group}\"]", markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("list")(list_registered)
