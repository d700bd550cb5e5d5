"""Images: every Pillow mode and format decodes to what the file shows; bad images fail by name;
an identity folder of .pgm faces (AT&T/ORL style) runs E1."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from campro_bench.datasets.faces import load_face_dataset
from campro_bench.errors import EmptyDatasetError, InvalidFileError
from campro_bench.io import images
from campro_bench.io.images import load_image

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, (6, 5), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".webp", ".ppm"])
def test_lossless_rgb_formats_round_trip(suffix: str, tmp_path: Path) -> None:
    path = tmp_path / f"x{suffix}"
    Image.fromarray(RGB).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    assert np.array_equal(load_image(path), RGB)


@pytest.mark.parametrize("suffix", [".pgm", ".png", ".bmp", ".tif"])
def test_greyscale_is_copied_to_three_channels(suffix: str, tmp_path: Path) -> None:
    Image.fromarray(GREY).save(tmp_path / f"g{suffix}")
    assert np.array_equal(load_image(tmp_path / f"g{suffix}"), np.repeat(GREY[..., None], 3, axis=2))


@pytest.mark.parametrize("suffix", [".png", ".pgm", ".tif"])
def test_16_bit_greyscale_is_scaled_not_clipped(suffix: str, tmp_path: Path) -> None:
    deep = (GREY.astype(np.uint16) * 257)  # the 8-bit levels at 16 bits
    deep[0, 0] = 65535
    Image.fromarray(deep).save(tmp_path / f"d{suffix}")
    out = load_image(tmp_path / f"d{suffix}")
    expected = GREY.copy()
    expected[0, 0] = 255
    assert np.array_equal(out[..., 0], expected) and np.array_equal(out[..., 2], expected)


def test_alpha_is_composited_onto_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere ...
    rgba[0, 0, 3] = 0  # ... transparent here, half transparent there, opaque elsewhere
    rgba[0, 1, 3] = 128
    rgba[1, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png").astype(int)
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 0].tolist() == [255, 0, 0]
    assert abs(out[0, 1, 1] - 127) <= 1
    la = Image.fromarray(np.stack([GREY, np.zeros_like(GREY)], axis=2), "LA")
    la.save(tmp_path / "la.png")
    assert (load_image(tmp_path / "la.png") == 255).all()


def test_palette_and_palette_transparency(tmp_path: Path) -> None:
    img = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    img.save(tmp_path / "p.png")
    assert np.array_equal(load_image(tmp_path / "p.png"), np.asarray(img.convert("RGB")))
    index = np.asarray(img)[0, 0]
    img.save(tmp_path / "t.gif", transparency=int(index))
    out = load_image(tmp_path / "t.gif")
    assert out[0, 0].tolist() == [255, 255, 255]


def test_cmyk_without_profile_uses_pillows_conversion(tmp_path: Path) -> None:
    cmyk = Image.fromarray(RGB).convert("CMYK")
    cmyk.save(tmp_path / "c.tif")
    assert np.array_equal(load_image(tmp_path / "c.tif"), np.asarray(cmyk.convert("RGB")))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: a viewer turns it 90 degrees clockwise
    Image.fromarray(RGB).save(tmp_path / "r.png", exif=exif)
    assert load_image(tmp_path / "r.png").shape == (5, 6, 3)


def test_bad_images_fail_with_one_named_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(GREY).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    cases = {"truncated.png": data[:40], "empty.jpg": b"", "text.png": b"hello"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    Image.fromarray(np.ones((3, 3), np.float32), "F").save(tmp_path / "float.tif")
    monkeypatch.setattr(images, "MAX_PIXELS", 20)  # a 'bomb' without allocating one
    for name, message in [*((n, "cannot decode image") for n in cases), ("float.tif", "mode F"),
                          ("ok.png", "more than the limit of 20")]:
        with pytest.raises(InvalidFileError) as info:
            load_image(tmp_path / name)
        assert str(tmp_path / name) in str(info.value) and message in str(info.value)
        assert "\n" not in str(info.value)


def test_folders_without_readable_images_are_named(tmp_path: Path) -> None:
    for person in ("alice", "bob", "carol"):
        (tmp_path / "faces" / person).mkdir(parents=True)
    Image.fromarray(GREY).save(tmp_path / "faces" / "alice" / "1.pgm")
    (tmp_path / "faces" / "bob" / "1.xyz").write_bytes(b"?")
    (tmp_path / "faces" / "carol" / "1.pgm").write_bytes(b"P5 broken")
    with pytest.warns(UserWarning, match="skipped 1 unreadable images: carol/1.pgm"):
        with pytest.raises(EmptyDatasetError) as info:
            load_face_dataset("identity-folder:folder=faces", tmp_path).items()
    message = str(info.value)
    assert "1 identity folder(s) hold readable images" in message
    assert "bob (1 files, e.g. 1.xyz)" in message and "carol (1 files, e.g. 1.pgm)" in message


@pytest.mark.realdata
def test_pgm_identity_folder_runs_e1(data_root: Path, tmp_path: Path) -> None:
    """AT&T/ORL-style: greyscale .pgm per identity folder, converted here from a few LFW faces."""
    from campro_bench.experiments.runner import run_experiment

    root = tmp_path / "data"
    for person in ("Alvaro_Uribe", "Amelie_Mauresmo", "Andre_Agassi"):
        (root / "orl" / person).mkdir(parents=True)
        for k in (1, 2):
            source = data_root / "lfw" / "images" / person / f"{person}_{k:04d}.jpg"
            Image.open(source).convert("L").save(root / "orl" / person / f"{k}.pgm")
    good = (root / "orl" / "Andre_Agassi" / "1.pgm").read_bytes()
    (root / "orl" / "Andre_Agassi" / "3.pgm").write_bytes(good[: len(good) // 3])  # a header, half the pixels
    protocol = tmp_path / "orl.toml"
    protocol.write_text('datasets = ["identity-folder:folder=orl"]\nmodels = ["sface"]\nprotectors = ["raw"]\n'
                        'classifiers = ["nearest"]\ngalleries = ["raw"]\nrepeats = 2\nbatch_size = 8\n')
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out, result = run_experiment("e1", protocol=str(protocol), out=tmp_path / "run", data_root=str(root),
                                     cache_dir=str(tmp_path / "cache"), device="cpu", quiet=True)
    assert any("Andre_Agassi/3.pgm" in str(w.message) for w in seen)  # reported, and the run went on
    table = result.tables["e1"]
    assert len(table) == 1 and table["model"].tolist() == ["sface"]
    assert table["accuracy_mean"].iloc[0] > 1 / 3  # better than chance on three identities
    assert json.loads((out / "manifest.json").read_text())["experiment"] == "e1"
