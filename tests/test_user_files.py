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
import torch
from PIL import Image

from campro_bench.cli.main import main
from campro_bench.errors import CamproError
from campro_bench.experiments.base import ExperimentResult
from campro_bench.experiments.runner import PARTIAL, remove_stale_partials, run_experiment
from campro_bench.protectors import Protector
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


# memory: batches sized to a budget, an image over it refused before decoding -----------------------
class CountingInvert(Protector):
    """``invert`` that records the size of every batch it is given."""

    name = "counting-invert"
    working_factor = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(images))
        return 1.0 - images


def _photos(folder: Path, n: int, side: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for k in range(n):
        paths.append(folder / f"{k}.png")
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def test_batches_shrink_to_the_memory_budget(tmp_path: Path) -> None:
    from campro_bench.protect_files import image_bytes, protect_files

    protector = CountingInvert()
    files = _photos(tmp_path / "in", 5, 40)
    one = image_bytes(protector, 40, 40)
    assert one == 40 * 40 * 3 * (9 + 4 * 1)
    report = protect_files(protector, files, tmp_path / "out", batch_size=8, memory_budget=2 * one + 1)
    assert report.ok and len(report.written) == 5
    assert protector.batches == [2, 2, 1]  # not one batch of 5: the budget holds two images
    protector.batches.clear()
    protect_files(protector, files, tmp_path / "out2", batch_size=8, memory_budget=10**9)
    assert protector.batches == [5]


def test_an_image_over_the_budget_is_refused_by_name_and_never_decoded(
        photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import campro_bench.protect_files as pf

    decoded: list[Path] = []
    real = pf.load_image_tensor
    monkeypatch.setattr(pf, "load_image_tensor", lambda path: decoded.append(Path(path)) or real(path))
    small = _photos(tmp_path / "in", 1, 8)[0]
    report = pf.protect_files(CountingInvert(), [photo, small], tmp_path / "out", memory_budget=15_000)
    assert list(report.failed) == [photo] and decoded == [small]
    assert "24 x 20 pixels need about" in report.failed[photo]
    assert "more than the memory budget of 15.0 kB" in report.failed[photo]
    assert "(raise --memory-budget, or reduce the image); not decoded" in report.failed[photo]
    # the command says so in one line per file and fails (exit 1), writing the rest
    assert main(["protect", "invert", str(photo.parent), str(tmp_path / "cli"), "--memory-budget", "10kB"]) == 1
    err = capsys.readouterr().err
    assert "skipped me.png: 24 x 20 pixels need about" in " ".join(err.split())


def test_an_8000_pixel_square_isp_image_is_estimated_at_its_measured_scale() -> None:
    """The estimate that sizes batches: a 64-megapixel image through the CamPro ISP (working factor 9,
    measured by bench/protect_memory.py) is about 9 GB, not the 200 MB of its 8-bit pixels."""
    from campro_bench.protect_files import image_bytes
    from campro_bench.protectors import build_protector

    need = image_bytes(build_protector("campro-isp:preset=casia-adv"), 8000, 8000)
    assert 8.5e9 < need < 9.5e9


@pytest.mark.parametrize(("text", "value"), [("6GB", 6 * 10**9), ("512MiB", 512 * 2**20), ("2e9", 2 * 10**9),
                                             (" 1.5 gb ", 1_500_000_000)])
def test_memory_budget_sizes_parse(text: str, value: int) -> None:
    from campro_bench.protect_files import parse_size

    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["0", "-3GB", "lots", "6 parsecs", "nan"])
def test_a_bad_memory_budget_is_one_error_line(text: str, photo: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["protect", "invert", str(photo), str(tmp_path / "out"), "--memory-budget", text]) == 2
    assert "memory budget must be a positive size" in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_every_builtin_protector_declares_its_working_factor() -> None:
    """A built-in without a measured factor would fall back to the cautious 16 (plugins may)."""
    from campro_bench.registries import PROTECTORS

    for name in PROTECTORS.names():
        factory = PROTECTORS.get(name)
        own = [c for c in factory.__mro__[: factory.__mro__.index(Protector)]
               if "working_factor" in vars(c) or "working_memory_factor" in vars(c)]
        assert own, name


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
