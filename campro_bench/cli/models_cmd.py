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


def models(
    pattern: str = typer.Argument("*", help="shell-style name filter, e.g. 'mag*'"),
    models_dir: Optional[str] = typer.Option(
        None, "--models-dir", help=f"folder of user-supplied weights (default ${paths.MODELS_ENV})"
    ),
) -> None:
    """List face recognisers, their input contract and whether their weights are installed."""
    rows = model_rows(pattern, models_dir)
    console = Console()
    wide = console.width >= WIDE_TABLE
    table = Table(title=f"face recognizers (models folder {paths.models_dir(models_dir)})", title_justify="left")
    columns = list(COLUMNS[:-1])
    for column in columns:
        table.add_column(column, style="bold" if column == "name" else None, no_wrap=True)
    if wide:
        table.add_column("location", style="dim", overflow="fold")
    colours = {"found": "green", "missing": "red", "invalid": "yellow"}
    for row in rows:  # Text cells: paths and messages are never parsed as markup
        cells = [Text(row[c], style=colours[row[c]] if c == "weights" else "") for c in columns]
        table.add_row(*cells, *([Text(row["location"])] if wide else []))
    console.print(table)
    if not wide:  # a narrow terminal would squeeze the paths out of the table: list them below it
        for row in rows:
            console.print(Text(f"{row['name']} ({row['weights']}): {row['location']}"), soft_wrap=True)
    found = sum(row["weights"] == "found" for row in rows)
    console.print(f"{found} of {len(rows)} face recognizers have their weights", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
