"""Usage errors (unknown option, missing argument, bad value) print the usage and exit 2, never a traceback."""

from __future__ import annotations

import pytest
import typer

from campro_bench.cli.main import app, main


def command_paths() -> list[list[str]]:
    """Every leaf command of the CLI, as the words that name it (``["train", "isp"]``)."""
    paths: list[list[str]] = []

    def walk(command, words: list[str]) -> None:
        children = getattr(command, "commands", None)
        if children:
            for name, child in children.items():
                walk(child, [*words, name])
        else:
            paths.append(words)

    walk(typer.main.get_command(app), [])
    return paths


def test_the_sweep_sees_the_commands() -> None:
    names = {" ".join(p) for p in command_paths()}
    assert {"run", "protect", "list"} <= names and len(names) >= 8


@pytest.mark.parametrize("words", command_paths(), ids=lambda w: " ".join(w))
def test_unknown_option_prints_usage_and_exits_2(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*words, "--no-such-option"]) == 2
    err = capsys.readouterr().err
    assert "Usage:" in err and "No such option: --no-such-option" in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["protect"], "Missing argument"),
    (["protect", "raw", "a", "b", "--batch-size", "0"], "Invalid value for '--batch-size'"),
    (["protect", "raw", "a", "b", "--jpeg-quality", "many"], "Invalid value for '--jpeg-quality'"),
    (["run"], "Missing argument"),
    (["run", "e1", "--out"], "requires an argument"),
    (["no-such-command"], "No such command"),
])
def test_missing_and_bad_values_print_usage_and_exit_2(args: list[str], message: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Error:" in err and message in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------
# Bad places and bad files: one error line (exit 2, no traceback), and the user's files unchanged
# --------------------------------------------------------------------------------------------
import errno  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from campro_bench.experiments.base import ExperimentResult  # noqa: E402
from campro_bench.io.atomic import atomic_write_bytes  # noqa: E402
from campro_bench.registries import EXPERIMENTS  # noqa: E402

CACHE_WRITER = "cache-writer-test"


@pytest.fixture
def cache_writer():
    """A registered experiment that writes one cache entry, then one table."""
    def run(spec, ctx) -> ExperimentResult:
        atomic_write_bytes(ctx.cache_dir / "entries" / "one.bin", b"cached")
        return ExperimentResult(tables={"t": pd.DataFrame({"a": [1]})})

    EXPERIMENTS.add(CACHE_WRITER, run, origin="tests")
    yield CACHE_WRITER
    EXPERIMENTS.remove(CACHE_WRITER)


def read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``folder`` read-only: really (chmod) for a normal user; root ignores permission bits, so
    there ``os.access`` (what the up-front check asks) answers as for a read-only file system and
    creating a file or folder in it raises ``EROFS``, as the kernel would. Root without the
    permission-bypassing capabilities takes the real path: ``setpriv --bounding-set
    -dac_override,-dac_read_search python -m pytest -p no:cacheprovider -k bad_place``."""
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root
        real_access, real_mkstemp, real_mkdir = os.access, tempfile.mkstemp, os.mkdir

        def inside(path: object) -> bool:
            return path is not None and Path(path).absolute().is_relative_to(folder.absolute())

        def access(path, mode, *args, **kwargs):
            return False if inside(path) and mode & os.W_OK else real_access(path, mode, *args, **kwargs)

        def mkstemp(suffix=None, prefix=None, dir=None, text=False):
            if inside(dir):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
            return real_mkstemp(suffix, prefix, dir, text)

        def mkdir(path, *args, **kwargs):
            if inside(path):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)
        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
        monkeypatch.setattr(os, "mkdir", mkdir)


def _image(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    Image.fromarray(np.full((12, 16, 3), 90, np.uint8)).save(folder / "me.png")
    return folder / "me.png"


def _protocol(tmp: Path) -> str:
    (tmp / "p.toml").write_text("seed = 0\n")
    return str(tmp / "p.toml")


def read_only_output_run(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[list[str], str]:
    (tmp / "shared").mkdir()
    read_only(tmp / "shared", mp)
    return ["run", CACHE_WRITER, "-p", _protocol(tmp), "--out", str(tmp / "shared" / "r"), "--quiet",
            "--cache-dir", str(tmp / "cache")], "is not writable"


def read_only_output_protect(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[list[str], str]:
    photo = _image(tmp / "photos")
    (tmp / "shared").mkdir()
    read_only(tmp / "shared", mp)
    return ["protect", "invert", str(photo), str(tmp / "shared")], "is not writable"


def read_only_cache(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[list[str], str]:
    (tmp / "cache").mkdir()
    read_only(tmp / "cache", mp)
    return ["run", CACHE_WRITER, "-p", _protocol(tmp), "--out", str(tmp / "r"), "--quiet",
            "--cache-dir", str(tmp / "cache")], "--cache-dir"


def _a_file(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("not a folder")
    return tmp / "notes.txt"


def out_under_file(command: list[str]) -> Callable[[Path, pytest.MonkeyPatch], tuple[list[str], str]]:
    def make(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[list[str], str]:
        words = [w.replace("PHOTO", str(_image(tmp / "photos"))) for w in command] if "PHOTO" in command else command
        words = [w.replace("PROTOCOL", _protocol(tmp)) for w in words]
        return [w.replace("OUT", str(_a_file(tmp) / "sub")) for w in words], "which is a file, not a folder"
    return make


def resume_without_state(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[list[str], str]:
    from campro_bench.training.checkpoint import save_training_checkpoint

    (tmp / "run").mkdir()
    save_training_checkpoint(tmp / "run" / "checkpoint.pt", "isp", {}, {"phase": "adversarial", "iteration": 3})
    return ["train", "isp", "--resume", "--out", str(tmp / "run"), "--device", "cpu"], "checkpoint state lacks warmup_source, isp"


def protect_on_missing_gpu(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[list[str], str]:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    return ["protect", "invert", str(_image(tmp / "photos")), str(tmp / "out"), "--device", "cuda"], "no CUDA GPU"


def regress_tables(result: str, baseline: str) -> Callable[[Path, pytest.MonkeyPatch], tuple[list[str], str]]:
    def make(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[list[str], str]:
        (tmp / "r.csv").write_text(result)
        (tmp / "b.csv").write_text(baseline)
        message = "has no rows" if result.count("\n") == 1 else "must hold a whole number >= 1"
        return ["regress", str(tmp / "r.csv"), str(tmp / "b.csv")], message
    return make


E1_HEADER = "protector,identities,repeats,accuracy_mean\n"
BAD_PLACES = {
    "read-only output folder (run)": read_only_output_run,
    "read-only output folder (protect)": read_only_output_protect,
    "read-only cache": read_only_cache,
    "run --out under a file": out_under_file(["run", CACHE_WRITER, "-p", "PROTOCOL", "--out", "OUT", "--quiet"]),
    "protect into a path under a file": out_under_file(["protect", "invert", "PHOTO", "OUT"]),
    "train isp --out under a file": out_under_file(["train", "isp", "--out", "OUT", "--device", "cpu"]),
    "train lensless --out under a file": out_under_file(["train", "lensless", "--out", "OUT"]),
    "train enhancer --out under a file": out_under_file(["train", "enhancer", "--isp", "casia-adv", "--out", "OUT"]),
    "train isp --resume, checkpoint without its state": resume_without_state,
    "protect --device cuda without a GPU": protect_on_missing_gpu,
    "regress, infinite identities": regress_tables(E1_HEADER + "raw,inf,5,0.5\n", E1_HEADER + "raw,inf,5,0.5\n"),
    "regress, NaN identities": regress_tables(E1_HEADER + "raw,40,5,0.5\n", E1_HEADER + "raw,,5,0.5\n"),
    "regress, header-only tables": regress_tables(E1_HEADER, E1_HEADER),
}


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", list(BAD_PLACES))
def test_bad_place_or_file_is_one_error_line_and_user_files_survive(
    case: str, cache_writer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args, message = BAD_PLACES[case](tmp_path, monkeypatch)
    before = files_of(tmp_path)
    try:
        status = main(args)
    finally:
        monkeypatch.undo()
        for folder in tmp_path.rglob("*"):
            if folder.is_dir():
                folder.chmod(0o755)
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    assert files_of(tmp_path) == before  # byte for byte, and nothing half-written beside them
