"""``regress`` says first when two tables come from different protocols, then the summary, then at most N cells."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from campro_bench.cli.main import main
from campro_bench.regress import check_comparable

REPO = Path(__file__).resolve().parents[1]
E1_CI = REPO / "baselines" / "e1_ci.csv"


def other_protocol(tmp_path: Path) -> Path:
    """The CI table as another protocol would give it: 50 identities, 10 draws, every accuracy different."""
    table = pd.read_csv(E1_CI)
    table["identities"], table["repeats"], table["chance"] = 50, 10, 0.02
    table["accuracy_mean"] = (table["accuracy_mean"] * 0.8).round(4)
    path = tmp_path / "other.csv"
    table.to_csv(path, index=False)
    return path


def test_the_ci_baseline_is_comparable_with_itself() -> None:
    table = pd.read_csv(E1_CI)
    assert check_comparable(table, table).ok


def test_different_identities_repeats_and_chance_are_named() -> None:
    table = pd.read_csv(E1_CI)
    other = table.assign(identities=50, repeats=10)
    found = check_comparable(other, table)
    assert not found.ok
    assert found.line().startswith("NOT COMPARABLE: ")
    assert "identities 50 vs baseline 100" in found.line() and "repeats 10 vs baseline 3" in found.line()


def test_few_shared_rows_are_named() -> None:
    table = pd.read_csv(E1_CI)
    other = table.assign(dataset="celeba-subset")
    found = check_comparable(other, table)
    assert f"only 0 of the baseline's {len(table)} rows" in found.line()
    assert check_comparable(table.head(len(table) - 3), table).ok  # a few rows missing: still one protocol


def test_cli_says_it_first_then_the_summary_then_n_cells(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["regress", str(other_protocol(tmp_path)), str(E1_CI), "--show", "5"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("NOT COMPARABLE:") and "identities 50 vs baseline 100" in lines[0]
    assert lines[1].startswith("FAILED:")
    changed = [line for line in lines if line.startswith("changed:")]
    assert len(changed) == 5 and lines[2:7] == changed
    assert lines[7].startswith("... and ") and lines[7].endswith("more (--show N lists more)")
    assert len(lines) == 8


def test_comparable_tables_print_no_comparability_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["regress", str(E1_CI), str(E1_CI)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("OK:")


def test_show_zero_prints_only_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["regress", str(other_protocol(tmp_path)), str(E1_CI), "--show", "0"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["NOT COMPARABLE", "FAILED"] and lines[2].startswith("... and")
