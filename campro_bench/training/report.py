"""Outputs of a training run: CSV logs, curve plots, image grids and the run manifest.

Shared by the trainers of :mod:`campro_bench.training`. Every file is written atomically.

* :func:`write_csv`: rows (dicts) as a CSV with the union of their keys as header;
* :func:`plot_panels`: one PNG of line plots, a panel per :class:`Panel` (matplotlib, Agg);
* :func:`save_image_grid`: uint8 images in labelled rows, one PNG (for a quick look at what a
  protector does);
* :func:`training_manifest`: how a result was made: command, configuration, seeds, data
  fingerprints, models, package versions, git commit, timings and final metrics.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..io.atomic import atomic_path, atomic_write_text
from ..provenance import default_roots, environment, input_roots, portable_paths, program_name


def write_csv(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]]) -> None:
    """Rows as CSV (header: keys in first-seen order; missing values empty)."""
    header: list[str] = []
    for row in rows:
        header.extend(k for k in row if k not in header)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


@dataclass
class Panel:
    """One plot: ``series`` maps a label to ``(x, y)`` sequences."""

    title: str
    series: dict[str, tuple[Sequence[float], Sequence[float]]] = field(default_factory=dict)
    xlabel: str = "iteration"
    ylabel: str = ""
    ylim: tuple[float, float] | None = None
    logy: bool = False


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over ``window`` values (shorter at the start); NaNs ignored."""
    data = np.asarray(values, dtype=float)
    out = np.full(len(data), np.nan)
    for i in range(len(data)):
        part = data[max(0, i - window + 1) : i + 1]
        part = part[~np.isnan(part)]
        if len(part):
            out[i] = part.mean()
    return out


def plot_panels(path: str | os.PathLike[str], panels: Sequence[Panel], title: str = "", columns: int = 2) -> None:
    """Line plots in a grid of ``columns``, saved as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3.6 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for label, (x, y) in panel.series.items():
            ax.plot(list(x), list(y), label=label, linewidth=1.2)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        if panel.logy:
            ax.set_yscale("log")
        if panel.ylim is not None:
            ax.set_ylim(*panel.ylim)
        ax.grid(alpha=0.3)
        if panel.series:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def save_image_grid(path: str | os.PathLike[str], rows: Sequence[tuple[str, Sequence[np.ndarray]]],
                    cell: int = 128, label_width: int = 110) -> None:
    """uint8 ``H x W x 3`` images in labelled rows, each image fitted into a ``cell`` square."""
    from PIL import Image, ImageDraw

    width = label_width + cell * max(len(images) for _, images in rows)
    canvas = Image.new("RGB", (width, cell * len(rows)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (label, images) in enumerate(rows):
        draw.text((4, r * cell + cell // 2 - 6), label, fill=(0, 0, 0))
        for c, image in enumerate(images):
            tile = Image.fromarray(np.asarray(image, np.uint8))
            tile.thumbnail((cell, cell))
            canvas.paste(tile, (label_width + c * cell + (cell - tile.width) // 2,
                                r * cell + (cell - tile.height) // 2))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")


def training_manifest(
    trainer: str,
    *,
    command: Sequence[str] | None = None,
    config: dict[str, Any],
    seeds: dict[str, Any],
    data: dict[str, Any],
    models: dict[str, Any],
    timings: dict[str, float],
    metrics: dict[str, Any],
    outputs: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The manifest of a training run (plain JSON-serialisable data, no absolute path of the machine)."""

    return portable_paths({
        "trainer": trainer,
        "command": list(command if command is not None else sys.argv),
        "written": datetime.now(timezone.utc).isoformat(),
        "config": config,
        "seeds": seeds,
        "data": data,
        "models": models,
        "timings_s": {k: round(float(v), 3) for k, v in timings.items()},
        "metrics": metrics,
        "outputs": outputs or {},
        "notes": list(notes),
        "environment": environment(),
    }, default_roots(), input_roots())


def cli_command() -> list[str] | None:
    """This process's command as ``campro-bench ...`` when it is the command-line tool, else ``None``
    (:func:`training_manifest` then records ``sys.argv`` as it is)."""
    if sys.argv and program_name(sys.argv[0]) == "campro-bench":
        return ["campro-bench", *sys.argv[1:]]
    return None


def relative_to(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when inside it (manifests avoid absolute paths)."""
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.name
