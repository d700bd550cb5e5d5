"""The restoration attack: the 3D U-Net keeps shapes, learns, never trains on test frames, is seeded,
and a restorer that did not learn is reported as failed (not as privacy)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from campro_bench.errors import CamproError
from campro_bench.video.data import load_video_clips, time_split
from campro_bench.video.models import clip_set, encode_set
from campro_bench.video.protectors import build_video_protector
from campro_bench.video.restore import (RestoreConfig, UNet3D, check_disjoint, restoration_attack,
                                        train_restorer)
from campro_bench.video.synthetic import write_kth_tree

FAST = RestoreConfig(steps=25, batch_size=4, lr=1e-2, width=4, depth=2, fold=2, probe=8, classifier_steps=5,
                     classifier_batch_size=8, classifier_width=2)


@pytest.mark.parametrize(("shape", "fold", "depth"), [((2, 3, 8, 64, 64), 4, 3), ((1, 3, 5, 20, 28), 2, 2),
                                                      ((2, 3, 1, 16, 16), 1, 3)])
def test_unet_output_has_the_input_shape(shape: tuple[int, ...], fold: int, depth: int) -> None:
    torch.manual_seed(0)
    clips = torch.rand(shape)
    with torch.no_grad():
        out = UNet3D(3, 3, width=4, depth=depth, fold=fold).eval()(clips)
    assert out.shape == clips.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def _sets(tmp_path: Path) -> tuple:
    write_kth_tree(tmp_path / "data", actors=3, frames=20, size=16)
    data = load_video_clips(tmp_path / "data", size=16)
    early, late = time_split(data, 0.6)
    return data, clip_set(data, early, 4, 1, 2), clip_set(data, late, 4, 1, 4)


def test_short_training_lowers_the_loss_on_the_identity_protector(tmp_path: Path) -> None:
    _data, train, _test = _sets(tmp_path)
    raw = encode_set(build_video_protector("raw"), train)
    fit = train_restorer(raw, raw, FAST, seed=0)
    assert not fit.failed and fit.probe_loss_end < (1 - FAST.min_drop) * fit.probe_loss_start
    assert len(fit.losses) == FAST.steps
    assert sum(fit.losses[-5:]) < sum(fit.losses[:5])  # the training loss fell too, not only the probe


def test_a_restorer_that_did_not_train_is_failed_not_private(tmp_path: Path) -> None:
    _data, train, test = _sets(tmp_path)
    encoder = build_video_protector("bdq")
    zero = RestoreConfig(**{**FAST.__dict__, "steps": 0})
    fit = train_restorer(encode_set(encoder, train), train.batch(torch.arange(len(train))), zero, seed=0)
    assert fit.failed and fit.probe_loss_end == fit.probe_loss_start
    out = restoration_attack(train, test, encode_set(encoder, train), encode_set(encoder, test), 3, zero, seed=0)
    assert out["restore_failed"] is True
    assert math.isnan(out["restored_raw_attacker"]) and math.isnan(out["restored_retrained"])


def test_the_restorer_never_sees_test_frames(tmp_path: Path) -> None:
    data, train, test = _sets(tmp_path)
    check_disjoint(train, test)  # the time split: no shared frame
    overlapping = clip_set(data, time_split(data, 0.6)[0], 4, 1, 4)
    with pytest.raises(CamproError, match="test frames are also training frames"):
        restoration_attack(train, overlapping, train.clips.float(), overlapping.clips.float(), 3, FAST, seed=0)
    # the restorer is a function of the training pairs only: other test clips leave it unchanged
    encoder = build_video_protector("diff")
    e_train = encode_set(encoder, train)
    a = restoration_attack(train, test, e_train, encode_set(encoder, test), 3, FAST, seed=0)
    torch.manual_seed(1)
    noise = torch.rand_like(encode_set(encoder, test))
    b = restoration_attack(train, test, e_train, noise, 3, FAST, seed=0)
    assert a["restore_probe_loss_end"] == b["restore_probe_loss_end"]
    assert a["restore_psnr_mean_clip"] == b["restore_psnr_mean_clip"]
    assert a["restore_psnr"] != b["restore_psnr"]  # the test clips did change


def test_seeded_runs_are_identical(tmp_path: Path) -> None:
    _data, train, test = _sets(tmp_path)
    encoder = build_video_protector("bdq")
    e_train, e_test = encode_set(encoder, train), encode_set(encoder, test)
    first = restoration_attack(train, test, e_train, e_test, 3, FAST, seed=3)
    again = restoration_attack(train, test, e_train, e_test, 3, FAST, seed=3)
    other = restoration_attack(train, test, e_train, e_test, 3, FAST, seed=4)
    assert first == again
    assert first["restore_probe_loss_end"] != other["restore_probe_loss_end"]


def test_restore_only_with_an_unknown_label_is_one_error_line(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from campro_bench.cli.main import main

    status = main(["run", "bdq", "--out", str(tmp_path / "run"), "--quiet", "--set", 'protectors={raw="raw"}',
                   "--set", 'restore_only=["bdq"]'])
    err = capsys.readouterr().err
    assert status == 2
    assert err.strip() == ("error: restore_only names protectors that are not in [protectors]: bdq; labels: raw "
                           "(restore_only=[] restores every protector)")
