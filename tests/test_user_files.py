"""User files are never lost: protect never replaces its input nor (without --overwrite) a file already
in its output folder; --overwrite replaces only the files an earlier run's manifest lists and keeps the
rest; failed or interrupted runs leave no partial folders behind, and a failure while the new files
are moved in puts every earlier file back."""

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
WHILE_RUNNING: list = []
"""Actions the tiny experiment performs while it runs (what a user might do meanwhile)."""


@pytest.fixture
def tiny_experiment(tmp_path: Path):
    """A registered experiment that makes one table (or fails when the spec says so); ``tables``
    names other tables, ``extra`` adds a file in a subfolder."""
    def run(spec, ctx) -> ExperimentResult:
        if spec.get("fail"):
            raise CamproError("planned failure")
        while WHILE_RUNNING:
            WHILE_RUNNING.pop()()
        tables = {name: pd.DataFrame({"a": [1]}) for name in spec.get("tables", ["t"])}
        extra = {"reports/r.json": b'{"r": 1}'} if spec.get("extra") else {}
        return ExperimentResult(tables=tables, extra_files=extra)

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


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` with its bytes (relative POSIX paths)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def add_user_files(out: Path) -> dict[str, bytes]:
    """What a user adds to a result folder: notes and an analysis folder."""
    (out / "notes.md").write_text("my reading of the table\n")
    (out / "analysis").mkdir()
    (out / "analysis" / "plot.py").write_bytes(b"import matplotlib\n\x00\xff")
    return {k: v for k, v in snapshot(out).items() if k.startswith(("notes", "analysis"))}


def test_overwrite_replaces_the_listed_files_and_keeps_the_users(tiny_experiment: Path, tmp_path: Path) -> None:
    out = tmp_path / "results" / "run"
    run_experiment("tiny-test", protocol=str(tiny_experiment), overrides=["extra=true"], out=out, quiet=True)
    assert json.loads((out / "manifest.json").read_text())["files"] == ["reports/r.json", "t.csv", "t.md"]
    mine = add_user_files(out)
    run_experiment("tiny-test", protocol=str(tiny_experiment), overrides=['tables=["u"]'], out=out, quiet=True,
                   overwrite=True)
    after = snapshot(out)
    assert {k: after[k] for k in mine} == mine  # byte for byte
    assert sorted(after) == ["analysis/plot.py", "manifest.json", "notes.md", "u.csv", "u.md"]  # t.*, reports/ gone
    assert json.loads(after["manifest.json"])["files"] == ["u.csv", "u.md"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["run"]  # no hidden folder left


def test_overwrite_refuses_a_manifest_that_lists_no_files(tiny_experiment: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_experiment("tiny-test", protocol=str(tiny_experiment), out=out, quiet=True)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["files"]  # as an older campro-bench wrote it
    (out / "manifest.json").write_text(json.dumps(manifest))
    add_user_files(out)
    before = snapshot(out)
    with pytest.raises(CamproError, match=r"does not list the files .*analysis/plot.py, notes.md, t.csv, t.md"):
        run_experiment("tiny-test", protocol=str(tiny_experiment), out=out, quiet=True, overwrite=True)
    assert snapshot(out) == before


@pytest.mark.parametrize("entry", ["../victim.txt", "/etc/hostname", "a/../../victim.txt", ""])
def test_an_edited_manifest_cannot_point_outside_the_folder(entry: str, tiny_experiment: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_experiment("tiny-test", protocol=str(tiny_experiment), out=out, quiet=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"].append(entry)
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CamproError, match="does not list the files"):
        run_experiment("tiny-test", protocol=str(tiny_experiment), out=out, quiet=True, overwrite=True)
    assert victim.read_text() == "precious"


def test_a_user_file_where_a_new_output_goes_is_kept_and_so_are_the_new_results(tiny_experiment: Path,
                                                                                tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_experiment("tiny-test", protocol=str(tiny_experiment), out=out, quiet=True)
    (out / "u.csv").write_text("my own u table")
    before = snapshot(out)
    with pytest.raises(CamproError, match=r"holds u.csv, which campro-bench did not write.*new results are in"):
        run_experiment("tiny-test", protocol=str(tiny_experiment), overrides=['tables=["u"]'], out=out, quiet=True,
                       overwrite=True)
    assert snapshot(out) == before
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("run-new-")]
    assert len(kept) == 1 and sorted(snapshot(kept[0])) == ["manifest.json", "u.csv", "u.md"]


def test_a_folder_changed_while_the_run_worked_is_left_alone(tiny_experiment: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_experiment("tiny-test", protocol=str(tiny_experiment), out=out, quiet=True)
    WHILE_RUNNING.append(lambda: (out / "manifest.json").unlink())  # the folder is no longer a run's
    with pytest.raises(CamproError, match=r"did not write .*; the new results are in .*run-new-"):
        run_experiment("tiny-test", protocol=str(tiny_experiment), out=out, quiet=True, overwrite=True)
    assert sorted(snapshot(out)) == ["t.csv", "t.md"]  # untouched
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("run-new-")]
    assert len(kept) == 1 and sorted(snapshot(kept[0])) == ["manifest.json", "t.csv", "t.md"]


def test_a_failure_while_moving_the_new_files_in_puts_everything_back(tiny_experiment: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import campro_bench.io.outfolder as outfolder

    out = tmp_path / "run"
    run_experiment("tiny-test", protocol=str(tiny_experiment), out=out, quiet=True)
    add_user_files(out)
    before = snapshot(out)
    calls = {"n": 0}
    real_replace = os.replace

    def failing_replace(source, target):
        calls["n"] += 1
        if calls["n"] == 5:  # the earlier manifest, t.csv, t.md are out, one new file is in
            raise OSError(28, "No space left on device", str(target))
        return real_replace(source, target)

    monkeypatch.setattr(outfolder.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        run_experiment("tiny-test", protocol=str(tiny_experiment), overrides=['tables=["u"]'], out=out, quiet=True,
                       overwrite=True)
    assert calls["n"] > 5  # the undo ran
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tiny.toml"]  # no hidden folder left


def test_running_from_inside_the_target_is_refused_up_front(tiny_experiment: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    run_experiment("tiny-test", protocol=str(tiny_experiment), out=out, quiet=True)
    (out / "analysis").mkdir()
    before = snapshot(tmp_path)
    for cwd, target in ((out, "."), (out / "analysis", ".."), (out / "analysis", str(out))):
        monkeypatch.chdir(cwd)
        assert main(["run", "tiny-test", "--protocol", str(tiny_experiment), "--out", target, "--overwrite",
                     "--quiet"]) == 2
        assert "is the current folder or holds it" in one_error_line(capsys)
        assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run", "tiny.toml"]


def test_protect_never_replaces_a_file_it_did_not_write_unless_asked(photo: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "me.png").write_bytes(b"an unrelated file of the same name")
    (out / "other.txt").write_text("kept")
    before = snapshot(out)
    assert main(["protect", "invert", str(photo.parent), str(out)]) == 2
    err = one_error_line(capsys)
    assert "already holds me.png; pass --overwrite" in err
    assert snapshot(out) == before
    assert main(["protect", "invert", str(photo.parent), str(out), "--overwrite"]) == 0
    assert Image.open(out / "me.png").size == (24, 20) and (out / "other.txt").read_text() == "kept"


@pytest.mark.parametrize("command", [
    ["train", "isp", "--device", "cpu"],
    ["train", "enhancer", "--isp", "casia-adv", "--device", "cpu"],
    ["train", "lensless"],
])
def test_a_new_training_run_never_replaces_a_file_of_its_names(command: list[str], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.json").write_text('{"my": "own report"}')
    (out / "notes.md").write_text("kept")
    before = snapshot(out)
    assert main([*command, "--out", str(out)]) == 2
    assert "already holds report.json (an earlier run's or yours); pass --resume" in one_error_line(capsys)
    assert snapshot(out) == before
