"""``campro-bench report``: one self-contained HTML page per run, checked in a real headless Chromium.

The page's own check (``#page-check``) counts images that decoded and tables with rows once loaded;
Chromium's ``--dump-dom`` returns the DOM after load, so a broken image or an empty table shows.
The browser tests skip, saying why, where Chromium is absent; ``.ci/run`` installs it (Debian ``chromium``).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from campro_bench.cli.main import main
from campro_bench.html_report import MAX_ROWS, build_report, reproduce_command

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
COMMITTED = [REPO / "baselines" / "tradeoff", REPO / "baselines" / "audit" / "rungs123"]


def tiny_png() -> bytes:
    from campro_bench.experiments.figures import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def run_folder(tmp_path: Path, broken_image: bool = False, rows: int = 3) -> Path:
    folder = tmp_path / "e1-run"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({
        "written_by": "campro-bench", "experiment": "e1", "command": ["campro-bench", "run", "e1", "--set", "repeats=3"],
        "started": "2026-01-01T00:00:00", "seeds": {"seed": 0}, "data": {"datasets": {"lfw": {}}},
        "models": {"sface": {}}, "timings_s": {"embedding": 2.0, "nearest": 0.5},
        "environment": {"python": "3.11", "campro_bench_commit": "abc"}}))
    pd.DataFrame({"image_type": ["raw", "invert <b>"] * rows, "accuracy_std": [8.5e-18, 0.01] * rows}).to_csv(
        folder / "e1.csv", index=False)
    (folder / "e1.md").write_text("# e1: e1\n\nTop-1 accuracy.\n\n- first **note** with `code`\n\n## e1\n\n| x |\n")
    (folder / "plane.png").write_bytes(tiny_png())
    if broken_image:
        (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return folder


def test_page_holds_command_manifest_tables_and_embedded_figures(tmp_path: Path) -> None:
    page = build_report(run_folder(tmp_path))
    assert "campro-bench run e1 --set repeats=3" in page
    assert "<dt>models</dt><dd>sface</dd>" in page and "<dt>data</dt><dd>lfw</dd>" in page
    assert 'src="data:image/png;base64,' in page and "plane.png" in page
    assert "invert &lt;b&gt;" in page and "<b>" not in page.split("<body>")[1].split("<script>")[0]  # escaped
    assert "e-18" not in page  # rounding noise shown as 0
    assert "<strong>note</strong>" in page and "<code>code</code>" in page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # nothing loaded from anywhere


def test_long_tables_are_cut_with_a_count(tmp_path: Path) -> None:
    page = build_report(run_folder(tmp_path, rows=MAX_ROWS))
    assert f"first {MAX_ROWS} of {2 * MAX_ROWS} rows" in page


def test_cli_writes_report_html_and_refuses_a_folder_without_manifest(tmp_path: Path, capsys) -> None:
    folder = run_folder(tmp_path)
    assert main(["report", str(folder)]) == 0
    assert (folder / "report.html").is_file() and "report written to" in capsys.readouterr().out
    assert main(["report", str(tmp_path)]) == 2
    assert "has no manifest.json" in capsys.readouterr().err


def test_reproduce_command_is_one_shell_line() -> None:
    assert reproduce_command({"command": ["campro-bench", "audit", "lowres:factor=16", "--set", "x=[1, 2]"]}) == \
        "campro-bench audit lowres:factor=16 --set 'x=[1, 2]'"


@pytest.mark.parametrize("folder", COMMITTED, ids=lambda f: f.name)
def test_committed_reports_are_built_from_the_committed_files(folder: Path) -> None:
    assert (folder / "report.html").read_text() == build_report(folder)


def render(page: Path, tmp_path: Path) -> dict[str, str]:
    """The ``#page-check`` attributes of ``page`` once Chromium has loaded it."""
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=15000", "--dump-dom",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=300)
    tag = re.search(r'<div id="page-check"[^>]*>', done.stdout)
    assert tag, f"no page check in Chromium's DOM (exit {done.returncode}): {done.stderr[-2000:]}"
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', tag.group(0)))


@needs_chromium
def test_a_broken_image_is_seen_by_the_browser(tmp_path: Path) -> None:
    folder = run_folder(tmp_path, broken_image=True)
    page = tmp_path / "page.html"
    page.write_text(build_report(folder))
    check = render(page, tmp_path)
    assert check == {"images": "2", "broken-images": "1", "tables": "1", "empty-tables": "0", "done": "1"}


@needs_chromium
@pytest.mark.parametrize("folder", COMMITTED, ids=lambda f: f.name)
def test_committed_reports_render_every_image_and_table(folder: Path, tmp_path: Path) -> None:
    check = render(folder / "report.html", tmp_path)
    pngs = len(list(folder.glob("*.png")))
    csvs = sum(1 for csv in folder.glob("*.csv") if len(pd.read_csv(csv)))
    assert check == {"images": str(pngs), "broken-images": "0", "tables": str(csvs), "empty-tables": "0", "done": "1"}
