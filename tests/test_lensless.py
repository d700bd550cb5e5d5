"""The lensless (coded-mask) protector: image formation, masks, mask files, gradients, training."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from campro_bench.errors import CamproError
from campro_bench.protectors import build_protector
from campro_bench.protectors.lensless import (
    Lensless,
    builtin_mask,
    fft_convolve_same,
    load_mask_file,
    mls_vector,
    save_mask_file,
)


@pytest.mark.parametrize("scene_shape,psf_shape", [((9, 11), (4, 5)), ((16, 16), (7, 7)), ((12, 10), (8, 8))])
def test_fft_convolution_equals_scipy_convolve2d_same(scene_shape: tuple[int, int], psf_shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    scene, psf = rng.random(scene_shape), rng.random(psf_shape)
    ours = fft_convolve_same(torch.tensor(scene), torch.tensor(psf)).numpy()
    assert np.abs(ours - convolve2d(scene, psf, mode="same")).max() < 1e-12


def test_pinhole_reproduces_the_scene() -> None:
    x = torch.rand(2, 3, 63, 63, dtype=torch.float64)
    exact = Lensless(mask="pinhole", noise=0.0, bits=0).double()
    assert torch.allclose(exact.capture(x), x, atol=1e-12)
    quantised = Lensless(mask="pinhole", noise=0.0)(x.float())
    assert (quantised - x.float()).abs().max() <= 0.5 / 255 + 1e-6


def test_open_mask_is_a_box_blur_of_the_scene() -> None:
    x = torch.rand(1, 3, 20, 20, dtype=torch.float64)
    y = Lensless(mask="open", image_size=20, mask_size=4, noise=0.0, bits=0).double().capture(x)
    expected = convolve2d(x[0, 0].numpy(), np.ones((4, 4)), mode="same") / 16
    assert np.abs(y[0, 0].detach().numpy() - expected).max() < 1e-12


def test_output_contract_and_batch_invariant_seeded_noise() -> None:
    x = torch.rand(3, 3, 50, 40)
    p = build_protector("lensless:mask=random,seed=1,noise=0.02")
    y = p(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert torch.equal(p(x[1:2]), y[1:2])  # the noise of an image does not depend on its batch
    assert not torch.equal(build_protector("lensless:mask=random,seed=2,noise=0.02")(x), y)
    again = build_protector(p.spec())
    assert again.fingerprint() == p.fingerprint() and torch.equal(again(x), y)


def test_gradients_reach_the_mask() -> None:
    p = Lensless(mask="random", noise=0.01)
    x = torch.rand(2, 3, 63, 63)
    (p(x) * torch.randn_like(x)).sum().backward()
    assert p.mask.grad is not None and p.mask.grad.abs().sum() > 0
    assert p.mask.grad.shape == (32, 32)


def test_separable_model_equals_the_psf_model_for_a_rank1_mask(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    mask = np.outer(rng.random(8), rng.random(8))
    save_mask_file(tmp_path / "m.json", mask)
    x = torch.rand(2, 3, 21, 21)
    conv = build_protector(f"lensless:file={tmp_path / 'm.json'},image_size=21,noise=0,bits=0")
    sep = build_protector(f"lensless:file={tmp_path / 'm.json'},image_size=21,noise=0,bits=0,model=separable")
    assert (conv.capture(x) - sep.capture(x)).abs().max() < 1e-5
    builtin = [build_protector(f"lensless:mask=mseq,mask_size=16,image_size=21,noise=0,bits=0,model={m}") for m in
               ("conv", "separable")]
    assert (builtin[0].capture(x) - builtin[1].capture(x)).abs().max() < 1e-5


def test_separable_model_refuses_a_full_rank_mask(tmp_path: Path) -> None:
    np.save(tmp_path / "r.npy", builtin_mask("random", 8, seed=0))
    with pytest.raises(CamproError, match="rank-1"):
        build_protector(f"lensless:file={tmp_path / 'r.npy'},model=separable")


def test_builtin_masks() -> None:
    seq = mls_vector(32)
    assert seq.sum() == 16 and len(seq) == 32  # an M-sequence of length 31: 16 ones, 15 zeros, one pad
    assert builtin_mask("pinhole", 32).sum() == 1 and builtin_mask("open", 32).mean() == 1
    assert np.array_equal(builtin_mask("random", 32, 5), builtin_mask("random", 32, 5))
    assert not np.array_equal(builtin_mask("random", 32, 5), builtin_mask("random", 32, 6))
    with pytest.raises(CamproError, match="known masks"):
        build_protector("lensless:mask=lens")


def _bad_files(tmp: Path) -> dict[str, Path]:
    def js(name: str, payload: object) -> Path:
        (tmp / name).write_text(json.dumps(payload))
        return tmp / name

    ok = {"format": "campro-lensless-mask", "format_version": 1}
    np.save(tmp / "nan.npy", np.full((4, 4), np.nan))
    np.save(tmp / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp / "broken.json").write_text("{not json")
    return {
        "must be a square": js("shape.json", {**ok, "mask": [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]}),
        "within \\[0, 1\\]": js("range.json", {**ok, "mask": [[0.5, 1.5], [0.0, 0.2]]}),
        "fully closed": js("closed.json", {**ok, "mask": [[0.0, 0.0], [0.0, 0.0]]}),
        "not a lensless mask file": js("format.json", {"mask": [[1.0]]}),
        "missing key": js("nomask.json", ok),
        "finite": tmp / "nan.npy",
        "not a readable .npy": tmp / "obj.npy",
        "not valid JSON": tmp / "broken.json",
        "does not exist": tmp / "absent.json",
    }


def test_bad_mask_files_give_one_clear_error(tmp_path: Path) -> None:
    for expected, path in _bad_files(tmp_path).items():
        with pytest.raises(CamproError, match=expected) as info:
            build_protector(f"lensless:file={path}")
        assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_bad_mask_file_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from campro_bench.cli.main import main

    path = _bad_files(tmp_path)["within \\[0, 1\\]"]
    assert main(["protect", f"lensless:file={path}", str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "[0, 1]" in err[0]


def test_mask_file_round_trip(tmp_path: Path) -> None:
    mask = np.random.default_rng(0).random((6, 6))
    save_mask_file(tmp_path / "m.json", mask, note="x")
    loaded, meta = load_mask_file(tmp_path / "m.json")
    assert np.array_equal(loaded, mask) and meta == {"note": "x"}


# ----------------------------------------------------------------------------------------
# training (synthetic data, tiny sizes)
# ----------------------------------------------------------------------------------------
def _synthetic_data(config):  # type: ignore[no-untyped-def]
    from campro_bench.training.lensless import LenslessData

    gen = torch.Generator().manual_seed(0)
    s = config.image_size
    protos = torch.rand(config.identities + config.heldout_identities, 3, s, s, generator=gen)

    def images(ids: range, per: int) -> tuple[torch.Tensor, np.ndarray]:
        labels = np.repeat(np.array(list(ids)), per)
        noisy = protos[labels] + 0.1 * torch.randn(len(labels), 3, s, s, generator=gen)
        return noisy.clamp(0, 1), labels

    train, train_labels = images(range(config.identities), 6)
    val, val_labels = images(range(config.identities), 2)
    held, held_labels = images(range(config.identities, config.identities + config.heldout_identities), 3)
    return LenslessData(train, train_labels, val, val_labels, held, held_labels - config.identities, {"synthetic": True})


def test_training_is_resumable_and_learns_the_mask(tmp_path: Path) -> None:
    from campro_bench.protectors.lensless import load_mask_file as load
    from campro_bench.training.lensless import LenslessTrainConfig, train_lensless

    config = LenslessTrainConfig(identities=4, heldout_identities=3, image_size=15, mask_size=8, epochs=2,
                                 batch_size=8, width=4, w_tv=0.5, w_inv=0.1, w_rip=0.1, w_sim=1.0, heldout_repeats=3)
    data = _synthetic_data(config)
    full = train_lensless(config, tmp_path / "full", data=data)
    assert train_lensless(config, tmp_path / "part", data=data, stop_after=1) is None  # "interrupted"
    assert not (tmp_path / "part" / "mask.json").exists()
    with pytest.raises(CamproError, match="another configuration"):
        train_lensless(replace(config, w_tv=0.0), tmp_path / "part", data=data, resume=True)
    resumed = train_lensless(config, tmp_path / "part", data=data, resume=True)
    assert resumed["mask_digest"] == full["mask_digest"]
    mask, meta = load(tmp_path / "full" / "mask.json")
    assert mask.shape == (8, 8) and meta["image_size"] == 15 and meta["selection"] == "last epoch"
    initial = torch.sigmoid(torch.randn(8, 8, generator=torch.Generator().manual_seed(17)))
    assert not np.allclose(mask, initial.double().numpy())  # the mask was trained
    manifest = json.loads((tmp_path / "full" / "manifest.json").read_text())
    assert manifest["outputs"]["mask_digest"] == full["mask_digest"] and manifest["config"]["epochs"] == 2
    assert 0 <= full["final"]["heldout_accuracy_mean"] <= 1 and 0 < full["final"]["aperture_ratio"] < 1
    assert build_protector(f"lensless:file={tmp_path / 'full' / 'mask.json'},image_size=15")(torch.rand(1, 3, 15, 15)).shape == (1, 3, 15, 15)


def test_shipped_preset_is_the_training_runs_output() -> None:
    from importlib import resources

    from campro_bench.protectors.lensless import list_presets
    from campro_bench.training.lensless import mask_digest

    root = Path(str(resources.files("campro_bench") / "presets" / "lensless"))
    assert "celeba-lwoc-63" in list_presets()
    for name in list_presets():
        mask, meta = load_mask_file(root / f"{name}.json")
        manifest = json.loads((root / f"{name}.manifest.json").read_text())
        assert manifest["trainer"] == "lensless"
        assert manifest["outputs"]["mask_digest"] == mask_digest(mask)  # the file is the run's output, unedited
        assert meta["image_size"] == manifest["config"]["image_size"] and meta["epochs"] == manifest["config"]["epochs"]
        assert mask.shape == (manifest["config"]["mask_size"],) * 2
        p = build_protector(f"lensless:preset={name}")
        assert p.image_size == meta["image_size"] and p.fingerprint() == build_protector(p.spec()).fingerprint()


def test_deconvolution_with_the_known_mask_inverts_a_noiseless_capture() -> None:
    from campro_bench.protectors.lensless import lensless_adjoint, tikhonov_deconvolve

    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(8, 8, dtype=torch.float64, generator=gen)
    x, y = (torch.rand(1, 1, 20, 20, dtype=torch.float64, generator=gen) for _ in range(2))
    assert abs(float((fft_convolve_same(x, mask) * y).sum() - (x * lensless_adjoint(y, mask)).sum())) < 1e-9
    scene = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 40, 40, dtype=torch.float64, generator=gen), 2)
    captured = fft_convolve_same(scene, mask) / mask.sum()
    restored = tikhonov_deconvolve(captured, mask, lam=1e-8, iters=300)
    assert (restored - scene).abs().mean() < 0.25 * (captured - scene).abs().mean()
    attacker = build_protector("lensless-wiener:mask=random,image_size=20,mask_size=8,noise=0,bits=0,lam=1e-8,iters=300")
    assert "lam=" in attacker.spec() and attacker(scene.float()).shape == scene.shape


def test_protocol_variants_are_typed() -> None:
    from campro_bench.experiments.lensless import variant_configs
    from campro_bench.experiments.spec import load_spec

    configs = variant_configs(load_spec("lensless"))
    assert configs["lwc-tv"].w_tv > 0 and configs["pinhole"].mask == "pinhole"
    with pytest.raises(CamproError, match="w_tvv"):
        variant_configs({"train": {}, "variant": {"x": {"w_tvv": 1.0}}})
