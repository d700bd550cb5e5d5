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


# ----------------------------------------------------------------------------------------
# Bad numbers: one rule (finite, within the declared range) for every entry point; each case
# exits 2 with one `error:` line, no traceback, and writes nothing.
# ----------------------------------------------------------------------------------------
def _isp_file(folder, name: str, **changes) -> str:
    import json

    from campro_bench.protectors.isp import ISPParams

    data = ISPParams.standard().to_dict()
    for key, value in changes.items():
        if key == "ccm12":
            data["ccm"][1][2] = value
        else:
            data[key] = value
    path = folder / name
    path.write_text(json.dumps(data))
    return str(path)


BAD_ISP_FILES = {  # file name -> (changes, the message's field part)
    "lut2.json": ({"lut": [0.0, 1.0]}, "'lut' must be a list of exactly 32 numbers"),
    "lut31.json": ({"lut": [i / 30 for i in range(31)]}, "got 31 entries"),
    "lut33.json": ({"lut": [i / 32 for i in range(33)]}, "got 33 entries"),
    "lut100.json": ({"lut": [i / 99 for i in range(100)]}, "got 100 entries"),
    "degamma.json": ({"degamma": 1e308}, "'degamma' must lie within [0.1, 10], got 1e+308"),
    "ccm.json": ({"ccm12": 1e39}, "'ccm[1][2]' must lie within [-1000, 1000], got 1e+39"),
    "nan.json": ({"degamma": float("nan")}, "'degamma' must be finite"),
}

SPEC_CASES = [  # protector spec -> message
    ("defocus:sigma=nan", "option sigma=nan in 'defocus:sigma=nan' must be a finite number; allowed: [0.01, 1000]"),
    ("defocus:sigma=inf", "option sigma=inf in 'defocus:sigma=inf' must be a finite number"),
    ("defocus:kernel=1000001", "option kernel=1000001 in 'defocus:kernel=1000001' is out of range; allowed: [1, 1001]"),
    ("lensless:noise=nan", "option noise=nan in 'lensless:noise=nan' must be a finite number; allowed: [0, 1]"),
    ("lensless-wiener:lam=nan", "option lam=nan in 'lensless-wiener:lam=nan' must be a finite number"),
    ("lensless:seed=-1", "option seed=-1 in 'lensless:seed=-1' is out of range"),
    ("lowres:factor=4,factor=8", "option 'factor' is given twice in 'lowres:factor=4,factor=8'"),
]


@pytest.fixture
def bad_inputs(tmp_path):
    """A folder with one 20x20 image, and the bad ISP files."""
    from PIL import Image

    (tmp_path / "in").mkdir()
    Image.new("RGB", (20, 20), (120, 60, 30)).save(tmp_path / "in" / "a.png")
    files = {name: _isp_file(tmp_path, name, **changes) for name, (changes, _) in BAD_ISP_FILES.items()}
    files["deg18.json"] = _isp_file(tmp_path, "deg18.json", degamma=1.8)  # a valid file export cannot express
    files["ccm500.json"] = _isp_file(tmp_path, "ccm500.json", ccm12=500.0)
    return tmp_path, files


def _one_error_line(capsys: pytest.CaptureFixture[str], after_progress: bool = False) -> str:
    """The one `error:` line (with ``after_progress``, the last line after progress lines)."""
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:] and (after_progress or len(lines) == 1) and "Traceback" not in err, err
    return errors[0]


@pytest.mark.parametrize("spec, message", SPEC_CASES, ids=[s for s, _ in SPEC_CASES])
def test_protect_refuses_bad_numbers_in_one_line(spec: str, message: str, bad_inputs,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = bad_inputs
    assert main(["protect", spec, str(root / "in"), str(root / "out")]) == 2
    assert message in _one_error_line(capsys)
    assert not (root / "out").exists()


def test_protect_refuses_a_kernel_larger_than_the_image_calls_for(bad_inputs, capsys) -> None:
    root, _ = bad_inputs
    assert main(["protect", "defocus:kernel=43,sigma=5", str(root / "in"), str(root / "out")]) == 2
    assert "defocus kernel 43 is too large for a 20x20 image" in _one_error_line(capsys)  # before any work
    assert not (root / "out").exists()
    assert main(["protect", "defocus:kernel=41,sigma=5", str(root / "in"), str(root / "out")]) == 0  # 2 * 20 + 1


@pytest.mark.parametrize("name", list(BAD_ISP_FILES))
@pytest.mark.parametrize("command", ["protect", "export-isp"])
def test_isp_files_out_of_format_are_refused_naming_file_and_field(command: str, name: str, bad_inputs,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root, files = bad_inputs
    if command == "protect":
        args = ["protect", f"campro-isp:params={files[name]}", str(root / "in"), str(root / "out")]
    else:
        args = ["export-isp", files[name], "--out", str(root / "out.json")]
    assert main(args) == 2
    err = _one_error_line(capsys)
    assert files[name] in err and BAD_ISP_FILES[name][1] in err
    assert not (root / "out").exists() and not (root / "out.json").exists()


@pytest.mark.parametrize("args, message", [
    (["{deg18.json}"], "cannot export a de-gamma of 1.8"),
    (["{ccm500.json}", "--denominator", "10000000"],
     "CCM entry [1][2] = 500 times denominator 10000000 leaves the signed 32-bit range"),
    (["campro-isp:preset=standard,params=x.json"], "give one of preset=NAME or params=FILE"),
])
def test_export_refuses_what_the_target_cannot_represent(args: list[str], message: str, bad_inputs,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    root, files = bad_inputs
    args = [files[a[1:-1]] if a.startswith("{") else a for a in args]
    assert main(["export-isp", *args, "--out", str(root / "out.json")]) == 2
    assert message in _one_error_line(capsys)
    assert not (root / "out.json").exists()


@pytest.mark.parametrize("args, message", [
    (["run", "e1", "--protocol", "e1_ci", "--set", 'protectors=["raw", "defocus:sigma=nan"]'],
     "option sigma=nan in 'defocus:sigma=nan' must be a finite number"),
    (["audit", "lensless-wiener:lam=nan"], "option lam=nan in 'lensless-wiener:lam=nan' must be a finite number"),
    (["run", "lensless", "--set", "attack.wiener_lam=nan"], "[attack] wiener_lam = nan must be a finite number"),
    (["train", "lensless", "--set", "noise=nan"], "train lensless key 'noise': input should be a finite number"),
    (["train", "isp", "--lr-isp", "inf"], "train isp key 'lr_isp': input should be a finite number"),
])
def test_run_audit_and_training_apply_the_same_rule(args: list[str], message: str, tmp_path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    assert message in _one_error_line(capsys)
    assert not (tmp_path / "out").exists()
