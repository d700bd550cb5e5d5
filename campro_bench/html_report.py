"""One self-contained HTML page per run or audit folder: what a reader opens first.

``campro-bench report RUN_DIR`` reads what ``run`` / ``audit`` wrote into the folder (``*.csv``
tables, ``*.png`` figures, ``manifest.json``, the notes heading ``*.md``) and writes
``RUN_DIR/report.html``: the command that reproduces the run, a manifest summary (experiment, times,
commit, seeds, data, models, environment), the notes, every figure embedded as a ``data:`` URI and
every table as an HTML table (rounding noise shown as 0, long tables cut with the count of rows left
out). The page loads nothing from anywhere: it can be mailed, archived or opened offline.

A small script in the page checks, once loaded, that every image decoded and every table has rows,
and writes the counts into ``#page-check`` (``data-images``, ``data-broken-images``, ``data-tables``,
``data-empty-tables``); the browser test reads them from the rendered DOM.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import InvalidFileError, MissingFileError
from .io import atomic_write_text
from .io.display import denoised

MAX_ROWS = 300
"""Rows shown per table; the CSV beside the page has them all."""

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
pre, code { font: 12.5px/1.4 ui-monospace, monospace; background: #f5f5f5; }
pre { padding: .6em; overflow-x: auto; white-space: pre-wrap; }
table { border-collapse: collapse; font-size: 12.5px; margin: .5em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; } td.text { text-align: left; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; } dt { font-weight: 600; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 12px; color: #555; } .note { color: #555; font-size: 12.5px; }
"""

CHECK_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.from(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  var tables = Array.from(document.querySelectorAll("table.data"));
  var empty = tables.filter(function (t) { return t.tBodies.length === 0 || t.tBodies[0].rows.length === 0; }).length;
  var check = document.getElementById("page-check");
  check.setAttribute("data-images", images.length);
  check.setAttribute("data-broken-images", broken);
  check.setAttribute("data-tables", tables.length);
  check.setAttribute("data-empty-tables", empty);
  check.setAttribute("data-done", "1");
});
"""


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / "manifest.json"
    if not path.is_file():
        raise MissingFileError(f"{folder} has no manifest.json: not a campro-bench run or audit folder")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise InvalidFileError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise InvalidFileError(f"{path} is not a campro-bench manifest (not a JSON object)")
    return manifest


def reproduce_command(manifest: dict[str, Any]) -> str:
    """The command line the manifest records, as one shell line."""
    command = manifest.get("command")
    if isinstance(command, list):
        return shlex.join(str(c) for c in command)
    return str(command or "(not recorded)")


def _e(value: object) -> str:
    return html.escape(str(value))


def _short(value: object, limit: int = 160) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def manifest_summary(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) pairs a reader needs: what ran, when, on what, with which code."""
    env = manifest.get("environment") or {}
    data = manifest.get("data") or {}
    datasets = data.get("datasets", data) if isinstance(data, dict) else {}
    timings = manifest.get("timings_s") or {}
    total = sum(v for v in timings.values() if isinstance(v, (int, float))) if isinstance(timings, dict) else None
    rows = [
        ("experiment", manifest.get("experiment", "?")),
        ("started", manifest.get("started", "?")),
        ("finished", manifest.get("finished", "?")),
        ("code", env.get("campro_bench_commit", "?")),
        ("seeds", _short(manifest.get("seeds", {}))),
        ("data", ", ".join(datasets) if isinstance(datasets, dict) and datasets else _short(data)),
        ("models", ", ".join(manifest.get("models") or {}) or "-"),
        ("environment", ", ".join(f"{k} {env[k]}" for k in ("python", "platform", "cpu_count", "torch_threads")
                                  if k in env)),
        ("stage timings", f"{total:.0f} s summed over {len(timings)} stages" if total is not None else "-"),
    ]
    return [(k, str(v)) for k, v in rows]


def notes_of(folder: Path) -> str:
    """The notes heading the run's Markdown tables (the text before the first table section)."""
    for md in sorted(folder.glob("*.md")):
        if md.name.startswith("report-") or md.name == "README.md":
            continue
        text = md.read_text()
        head = text.split("\n## ", 1)[0]
        lines = [line for line in head.splitlines() if not line.startswith("# ")]
        if any(line.strip() for line in lines):
            return "\n".join(lines).strip()
    return ""


def _inline(text: str) -> str:
    """Escape, then render the Markdown a note uses: `code` and **bold**."""
    out = _e(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def notes_html(text: str) -> str:
    items, paragraphs = [], []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if lines and all(line.startswith("- ") for line in lines):
            items += [f"<li>{_inline(line[2:])}</li>" for line in lines]
        elif lines:
            paragraphs.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "".join(paragraphs) + (f"<ul>{''.join(items)}</ul>" if items else "")


def table_html(table: pd.DataFrame) -> str:
    """An HTML table (numbers right-aligned, rounding noise as 0, 4 significant digits)."""
    shown = denoised(table.head(MAX_ROWS))
    head = "".join(f"<th>{_e(c)}</th>" for c in shown.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = []
        for value in row:
            if isinstance(value, float):
                cells.append(f"<td>{'' if value != value else f'{value:.4g}'}</td>")
            elif isinstance(value, (int, bool)) and not isinstance(value, bool):
                cells.append(f"<td>{value}</td>")
            else:
                cells.append(f"<td class=\"text\">{_e(value)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table class=\"data\"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def image_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def build_report(folder: Path) -> str:
    """The HTML page of the run or audit in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"run folder {folder} does not exist")
    manifest = read_manifest(folder)
    title = f"campro-bench {manifest.get('experiment', 'run')}: {folder.name}"
    parts = [f"<h1>{_e(title)}</h1>",
             "<h2>Reproduce</h2>", f"<pre>{_e(reproduce_command(manifest))}</pre>",
             "<p class=\"note\">Run from the campro-bench checkout with the same data root; the manifest "
             "(<code>manifest.json</code>) holds the resolved protocol, seeds, data fingerprints and model hashes.</p>",
             "<h2>Run</h2>", "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in manifest_summary(manifest))
             + "</dl>"]
    notes = notes_of(folder)
    if notes:
        parts += ["<h2>Notes</h2>", notes_html(notes)]
    figures = sorted(folder.glob("*.png"))
    if figures:
        parts.append("<h2>Figures</h2>")
        for png in figures:
            parts.append(f"<figure><img src=\"{image_data_uri(png)}\" alt=\"{_e(png.stem)}\">"
                         f"<figcaption>{_e(png.name)}</figcaption></figure>")
    tables = sorted(folder.glob("*.csv"))
    if tables:
        parts.append("<h2>Tables</h2>")
    for csv in tables:
        try:
            table = pd.read_csv(csv)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InvalidFileError(f"cannot read {csv} as CSV: {exc}") from None
        parts.append(f"<h3>{_e(csv.stem)}</h3>")
        if table.empty:
            parts.append(f"<p class=\"note\">{_e(csv.name)} has no rows.</p>")
            continue
        parts.append(table_html(table))
        if len(table) > MAX_ROWS:
            parts.append(f"<p class=\"note\">first {MAX_ROWS} of {len(table)} rows; all of them: "
                         f"<code>{_e(csv.name)}</code></p>")
    body = "\n".join(parts)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\"><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n{body}\n"
            "<div id=\"page-check\" hidden></div>"
            f"<script>{CHECK_SCRIPT}</script></body></html>\n")


def write_report(folder: Path, out: Path | None = None) -> Path:
    """Write the page (atomically) to ``out`` (default ``folder/report.html``); its path."""
    target = Path(out) if out is not None else Path(folder) / "report.html"
    atomic_write_text(target, build_report(Path(folder)))
    return target
