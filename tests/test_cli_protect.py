from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from campro_bench.cli.main import main
from campro_bench.io import load_image


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, size in enumerate([(40, 60), (40, 60), (33, 21)]):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(folder / "photo.jpg", quality=95)
    return folder


def test_protect_folder_writes_same_names(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["protect", "invert", str(image_folder), str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["img0.png", "img1.png", "img2.png", "photo.jpg"]
    src = load_image(image_folder / "img2.png")
    np.testing.assert_array_equal(load_image(out / "img2.png"), 255 - src)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_protect_single_file(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "single"
    assert main(["protect", "lowres:factor=4", str(image_folder / "img0.png"), str(out)]) == 0
    assert [p.name for p in out.iterdir()] == ["img0.png"]
    assert load_image(out / "img0.png").shape == (40, 60, 3)


def test_corrupt_and_non_image_files_are_reported_and_counted(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (image_folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (image_folder / "notes.txt").write_text("hello")
    out = tmp_path / "out"
    status = main(["protect", "raw", str(image_folder), str(out)])
    err = capsys.readouterr().err
    assert status == 1
    assert "broken.jpg" in err and "notes.txt" in err
    assert "4 written" in err and "2 failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["img0.png", "img1.png", "img2.png", "photo.jpg"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["protect", "nosuch", "IN", "OUT"], "unknown protector 'nosuch'; known protectors:"),
        (["protect", "raw", "MISSING", "OUT"], "does not exist"),
        (["protect", "lowres:factor=0", "IN", "OUT"], "option factor=0 in 'lowres:factor=0' is out of range; allowed: [1, 1024]"),
        (["list", "gadgets"], "unknown kind 'gadgets'"),
    ],
)
def test_bad_input_gives_one_error_line(
    args: list[str], message: str, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        str(image_folder) if a == "IN" else str(tmp_path / "missing") if a == "MISSING" else str(tmp_path / "o") if a == "OUT" else a
        for a in args
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert err.startswith("error:") and len(err.splitlines()) == 1


def test_refuses_to_overwrite_inputs(image_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["protect", "raw", str(image_folder), str(image_folder)]) == 2
    assert "must differ" in capsys.readouterr().err


def test_list_protectors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "protectors"]) == 0
    out = capsys.readouterr().out
    for name in ("raw", "invert", "lowres", "defocus", "campro-isp"):
        assert name in out


def test_failed_write_leaves_no_partial_file(image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from campro_bench.io import images as images_module

    def exploding_save(self, fp, format=None, **kwargs):  # noqa: ANN001
        Path(fp).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(images_module.Image.Image, "save", exploding_save)
    out = tmp_path / "out"
    assert main(["protect", "raw", str(image_folder), str(out)]) == 1
    assert list(out.iterdir()) == []
