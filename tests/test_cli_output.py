"""What the CLI prints off a terminal and at narrow widths: whole table rows, no rounding noise, whole cells.

These run without data: ``run`` and ``audit`` get a stand-in for the runner, so only the printing is tested.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from campro_bench.cli.main import main
from campro_bench.experiments.base import ExperimentResult
from campro_bench.io.display import ROUNDING_NOISE, denoise, denoised, markdown

LONG = "campro-enhanced:preset=casia-restore16-w1 with a long label that no 80-column console holds"


def wide_table() -> pd.DataFrame:
    return pd.DataFrame({
        "image_type": [LONG, "raw"],
        "accuracy_mean": [0.0375, 0.98],
        "accuracy_std": [8.498e-18, 0.0125],
        "ci_low": [-3.1e-17, 0.9],
        "identities": [100, 100],
    })


def markdown_rows(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("|")]


@pytest.fixture()
def fake_runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    def run_experiment(name: str, **kwargs):
        return tmp_path / name, ExperimentResult(tables={"summary": wide_table(), "e1": wide_table()})

    import campro_bench.cli.audit_cmd as audit_cmd
    import campro_bench.cli.run_cmd as run_cmd

    monkeypatch.setattr(run_cmd, "run_experiment", run_experiment)
    monkeypatch.setattr(audit_cmd, "run_experiment", run_experiment)
    monkeypatch.setenv("COLUMNS", "60")  # what a narrow log would get; rich must not wrap at it


@pytest.mark.parametrize("args", [["run", "e1"], ["audit", "invert"]])
def test_tables_off_a_terminal_keep_one_row_per_line(
    fake_runner, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = markdown_rows(out)
    assert len(rows) >= 4  # header, rule, two rows
    columns = rows[0].count("|")
    assert all(row.count("|") == columns for row in rows)  # no row broken over lines
    assert any(LONG in row for row in rows)
    assert "results written to" in out and "[bold]" not in out


def test_printed_tables_show_rounding_noise_as_zero(fake_runner, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "e1"]) == 0
    out = capsys.readouterr().out
    assert "e-17" not in out and "e-18" not in out
    row = next(r for r in markdown_rows(out) if LONG in r)
    assert [c.strip() for c in row.strip("|").split("|")][1:4] == ["0.0375", "0", "0"]


def test_noise_rule() -> None:
    assert denoise(8.498e-18) == 0.0 and denoise(-3e-13) == 0.0 and str(denoise(-0.0)) == "0.0"
    assert denoise(1e-9) == 1e-9 and denoise(ROUNDING_NOISE) == ROUNDING_NOISE  # real small values stay
    assert denoise("8e-18") == "8e-18" and math.isnan(denoise(float("nan")))  # text and NaN are not numbers to clean
    table = wide_table()
    cleaned = denoised(table)
    assert cleaned["accuracy_std"].tolist() == [0.0, 0.0125] and table["accuracy_std"][0] == 8.498e-18  # a copy
    assert cleaned["identities"].tolist() == [100, 100]
    assert "e-18" not in markdown(table)


def test_run_help_shows_the_ray_extra(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    assert main(["run", "--help"]) == 0
    assert "pip install -e '.[ray]'" in capsys.readouterr().out


@pytest.mark.parametrize("kind, title", [
    ("models", "face-recognizers"), ("model", "face-recognizers"), ("protector", "protectors"),
    ("face_detectors", "face-detectors"), ("Experiments", "experiments"), ("plugins", "plugins"),
])
def test_list_accepts_the_kinds_the_readme_names(
    kind: str, title: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["list", kind]) == 0
    out = capsys.readouterr().out.lstrip()
    assert out.startswith(title) or (title == "plugins" and out.startswith("no plugin installed"))


def test_list_plugins_without_plugins_says_how_to_declare_one(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from campro_bench.registries import ALL

    if any(e.metadata.get("plugin") for r in ALL.values() for e in r.entries()):
        pytest.skip("a plugin is installed in this environment")
    assert main(["list", "plugins"]) == 0
    out = capsys.readouterr().out
    assert "no plugin installed" in out and 'entry-points."campro_bench.protectors"' in out and "┏" not in out


def test_run_log_lines_are_not_wrapped_off_a_terminal() -> None:
    from campro_bench.context import RunContext
    from campro_bench.manifest import Manifest

    ctx = RunContext(manifest=Manifest(experiment="x", spec={}))
    with ctx.console.capture() as captured:
        ctx.log("lfw: the 3 draws over 100 identities use 298 of 507 images; expected cost: 298 images x 5 image "
                "types x 4 models = 5960 face embeddings (cached ones are read, not recomputed)")
    assert len(captured.get().strip().splitlines()) == 1


def test_list_of_an_unknown_kind_names_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "wizards"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "unknown kind 'wizards'" in err
    for kind in ("protectors", "face-recognizers", "datasets", "experiments", "plugins", "models"):
        assert kind in err


@pytest.mark.parametrize("width", [30, 60, 80, 120, 250])
def test_models_table_never_squeezes_a_cell(
    width: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    assert main(["models", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith(("│", "┃"))]
    if not table:  # too narrow for even name and weights: one whole line per model instead
        assert width < 40 and "(missing): " in out and "(found): " in out
        return
    assert all(len(line) <= width for line in table)
    assert "…" not in "\n".join(table)
    header = [c.strip() for c in table[0].strip("┃").split("┃")]
    assert "name" in header and "weights" in header
    for line in table[1:]:
        cells = [c.strip() for c in line.strip("│").split("│")]
        if cells[0]:  # a row's first line (a folded location continues on lines with an empty name)
            assert cells[header.index("weights")] in ("found", "missing", "invalid")
