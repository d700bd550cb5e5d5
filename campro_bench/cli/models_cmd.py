"""``campro-bench models [PATTERN] [--models-dir DIR]``: every face recogniser and its weights.

For each registered face recogniser (built-in, ONNX files in ``<models_dir>/onnx/`` and plugins)
the table shows its contract (embedding size, input size, alignment, channel order and
normalisation) and whether its weights are here: the file found, or the full path where the
missing file must go. Nothing is loaded: files are checked by name, packaged weights through the
entry's ``weights_id`` hook.
"""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import paths
from ..errors import CamproError
from ..recognizers.base import contract_of
from ..recognizers.onnx_generic import register_onnx_models
from ..recognizers.weights import WeightsStatus, weights_status
from ..registries import FACE_RECOGNIZERS

COLUMNS = ("name", "paper", "embedding", "input", "alignment", "channels", "weights", "location")
WIDE_TABLE = 140
"""Terminal width from which weight locations are a table column rather than lines below it."""


def model_rows(pattern: str, models_dir: str | None) -> list[dict[str, str]]:
    """One dict per registered face recogniser matching ``pattern`` (the table's content)."""
    root = paths.models_dir(models_dir)
    register_onnx_models(root)
    rows = []
    for entry in FACE_RECOGNIZERS.entries(pattern):
        try:
            contract = contract_of(entry.name)
        except CamproError as exc:  # e.g. a plugin that declares no contract
            rows.append(dict.fromkeys(COLUMNS, "?") | {"name": entry.name, "weights": "invalid", "location": str(exc)})
            continue
        status: WeightsStatus = weights_status(entry.name, contract, entry.metadata, root, paths.cache_dir())
        error = entry.metadata.get("error")
        state = "invalid" if error else ("found" if status.found else "missing")
        mean = "/".join(f"{m:g}" for m in sorted(set(contract.mean)))
        std = "/".join(f"{s:.4g}" for s in sorted(set(contract.std)))
        rows.append({
            "name": entry.name,
            "paper": str(entry.metadata.get("paper_name") or ""),
            "embedding": str(contract.embedding_size),
            "input": f"{contract.input_size[0]}x{contract.input_size[1]}",
            "alignment": contract.alignment,
            "channels": f"{contract.channel_order} (x-{mean})/{std}"
            + (" per image" if str(contract.extra.get("standardization", "")).startswith("per image") else ""),
            "weights": state,
            "location": error or status.location,
        })
    return rows


DROP_ORDER = ("channels", "paper", "embedding", "alignment", "input")
"""Columns left out, in this order, until the table fits the console; name and weights always stay."""


def _table(rows: list[dict[str, str]], columns: list[str], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, style="bold" if column == "name" else ("dim" if column == "location" else None),
                         no_wrap=column != "location", overflow="fold")
    colours = {"found": "green", "missing": "red", "invalid": "yellow"}
    for row in rows:  # Text cells: paths and messages are never parsed as markup
        table.add_row(*[Text(row[c], style=colours.get(row[c], "") if c == "weights" else "") for c in columns])
    return table


def fitting_table(console: Console, rows: list[dict[str, str]], title: str) -> tuple[Table | None, list[str]]:
    """The widest table that fits ``console`` without squeezing a cell, and the columns left out.

    ``None`` when not even name and weights fit: then the lines below the table say it all.

    Every column but ``location`` is printed whole or not at all: rich would otherwise cut cells to
    "..." (the weights column became "…" on an 80-column log). Locations are a column only when the
    table still fits with them; otherwise they are listed below the table (see :func:`models`).
    """
    columns = list(COLUMNS[:-1])
    dropped: list[str] = []
    candidates = [[*columns, "location"]] if console.width >= WIDE_TABLE else []
    candidates.append(list(columns))
    for drop in DROP_ORDER:
        columns = [c for c in columns if c != drop]
        candidates.append(list(columns))
    for candidate in candidates:
        if _width(rows, candidate) <= console.width:
            dropped = [c for c in COLUMNS if c not in candidate and c != "location"]
            return _table(rows, candidate, title), dropped
    return None, [c for c in COLUMNS if c not in ("name", "weights", "location")]


def _width(rows: list[dict[str, str]], columns: list[str]) -> int:
    """Characters the table needs with every cell whole (a location column folds, at 40 at least)."""
    cells = [max([len(column), *(len(row[column]) for row in rows)]) for column in columns]
    if columns[-1] == "location":
        cells[-1] = min(cells[-1], 40)
    return sum(cells) + 3 * len(columns) + 1  # one space either side of each cell, one rule between


def models(
    pattern: str = typer.Argument("*", help="shell-style name filter, e.g. 'mag*'"),
    models_dir: Optional[str] = typer.Option(
        None, "--models-dir", help=f"folder of user-supplied weights (default ${paths.MODELS_ENV})"
    ),
) -> None:
    """List face recognisers, their input contract and whether their weights are installed."""
    rows = model_rows(pattern, models_dir)
    console = Console()
    table, dropped = fitting_table(console, rows, f"face recognizers (models folder {paths.models_dir(models_dir)})")
    if table is not None:
        console.print(table)
    else:
        console.print(f"face recognizers (models folder {paths.models_dir(models_dir)})", markup=False, soft_wrap=True)
    if dropped:
        console.print(f"(columns left out to fit {console.width} characters: {', '.join(dropped)}; "
                      "set COLUMNS wider to see them)", markup=False, soft_wrap=True)
    if table is None or "location" not in [column.header for column in table.columns]:
        for row in rows:  # the paths, whole, one line each
            console.print(Text(f"{row['name']} ({row['weights']}): {row['location']}"), soft_wrap=True)
    found = sum(row["weights"] == "found" for row in rows)
    console.print(f"{found} of {len(rows)} face recognizers have their weights", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
