"""User files are never lost: protect never replaces its input, --overwrite only replaces a run folder,
and failed or interrupted runs leave no partial folders behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from campro_bench.cli.main import main
from campro_bench.errors import CamproError
from campro_bench.experiments.base import ExperimentResult
from campro_bench.experiments.runner import PARTIAL, remove_stale_partials, run_experiment
from campro_bench.registries import EXPERIMENTS


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    path = folder / "me.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)
    return path


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("target", ["own folder", "same file", "link to folder"])
def test_protect_never_writes_over_its_input(target: str, photo: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    before = photo.read_bytes()
    out = {"own folder": photo.parent, "same file": photo, "link to folder": tmp_path / "link"}[target]
    if target == "link to folder":
        out.symlink_to(photo.parent, target_is_directory=True)
    assert main(["protect", "invert", str(photo), str(out)]) == 2
    err = one_error_line(capsys)
    assert ("would overwrite the input" in err) or ("is a file, not a folder" in err)
    assert photo.read_bytes() == before
    assert sorted(p.name for p in photo.parent.iterdir()) == ["me.png"]


def test_protect_into_another_folder_still_works(photo: Path, tmp_path: Path) -> None:
    assert main(["protect", "invert", str(photo), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "me.png").is_file()


@pytest.fixture
def tiny_experiment(tmp_path: Path):
    """A registered experiment that makes one table (or fails when the spec says so)."""
    def run(spec, ctx) -> ExperimentResult:
        if spec.get("fail"):
            raise CamproError("planned failure")
        return ExperimentResult(tables={"t": pd.DataFrame({"a": [1]})})

    EXPERIMENTS.add("tiny-test", run, origin="tests")
    protocol = tmp_path / "tiny.toml"
    protocol.write_text("seed = 0\n")
    yield protocol
    EXPERIMENTS.remove("tiny-test")


def test_overwrite_replaces_an_earlier_run_only(tiny_experiment: Path, tmp_path: Path) -> None:
    out = tmp_path / "results" / "run"
    run_experiment("tiny-test", protocol=str(tiny_experiment), out=out, quiet=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["written_by"] == "campro-bench"
    with pytest.raises(CamproError, match="already holds files; pass --overwrite"):
        run_experiment("tiny-test", protocol=str(tiny_experiment), out=out, quiet=True)
    run_experiment("tiny-test", protocol=str(tiny_experiment), out=out, quiet=True, overwrite=True)
    assert (out / "t.csv").is_file()

    foreign = tmp_path / "my-thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("precious")
    (foreign / "manifest.json").write_text('{"title": "not a campro-bench manifest"}')
    with pytest.raises(CamproError, match="--overwrite refused: .*did not write"):
        run_experiment("tiny-test", protocol=str(tiny_experiment), out=foreign, quiet=True, overwrite=True)
    assert (foreign / "chapter1.tex").read_text() == "precious"


def test_failed_run_leaves_no_partial_folder_and_keeps_the_earlier_result(tiny_experiment: Path,
                                                                         tmp_path: Path) -> None:
    out = tmp_path / "results" / "run"
    run_experiment("tiny-test", protocol=str(tiny_experiment), out=out, quiet=True)
    with pytest.raises(CamproError, match="planned failure"):
        run_experiment("tiny-test", protocol=str(tiny_experiment), overrides=["fail=true"], out=out,
                       quiet=True, overwrite=True)
    assert sorted(p.name for p in out.parent.iterdir()) == ["run"]
    assert (out / "t.csv").is_file()


def test_partial_folders_of_dead_runs_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f".run{PARTIAL}{dead}-abc"
    live = tmp_path / f".run{PARTIAL}{os.getpid()}-xyz"
    stale.mkdir()
    live.mkdir()
    assert remove_stale_partials(tmp_path) == [stale]
    assert not stale.exists() and live.exists()
