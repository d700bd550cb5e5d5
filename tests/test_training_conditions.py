"""Capture conditions in the training loops (``train isp`` and ``train enhancer``, key ``conditions``).

Toy models and data from the ISP and enhancer trainer tests; the trainer code paths are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training_enhancer import TINY, toy_data, toy_isp
from test_training_isp import make_trainer, restorer_config, states_equal, toy_config

from campro_bench.config import apply_overrides
from campro_bench.errors import CamproError
from campro_bench.training.conditions import COLOUR, TrainingConditions
from campro_bench.training.enhancer import training_sources
from campro_bench.training.isp import ISPTrainConfig
from campro_bench.training.unet import UNetTrainConfig, sample_crops, train_unet

PLAYERS = ("isp", "attacker", "head", "detector")


def strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def isp_inputs(module: torch.nn.Module) -> list[torch.Tensor]:
    """Every batch ``module`` (the ISP) receives from now on."""
    seen: list[torch.Tensor] = []
    module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    return seen


def is_grey(x: torch.Tensor) -> bool:
    return bool(torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2]))


# the option ----------------------------------------------------------------------------------
@pytest.mark.parametrize("table, message", [
    ({"colour": 0.2}, "remainder"),
    ({"jpeg:quality=50": 0.2}, "after the camera"),
    ({"grey": 0.7, "low-light": 0.5}, "sum to 1.2"),
    ({"grey": -0.1}, r"in \[0, 1\]"),
    ({"no-such-condition": 0.1}, "no-such-condition"),
    ({"distance": 0.1, "distance:scale=0.5": 0.1}, "twice"),
])
def test_bad_condition_tables_fail_in_one_line(table: dict, message: str) -> None:
    with pytest.raises(CamproError, match=message):
        ISPTrainConfig(conditions=table).check()
    with pytest.raises(CamproError, match=message):
        UNetTrainConfig(conditions=table)


def test_draws_are_seeded_stateless_and_follow_the_probabilities() -> None:
    spec = {"grey": 0.3, "distance:scale=0.5": 0.2}
    a, b, other = (TrainingConditions.parse(spec, s) for s in (0, 0, 1))
    names = lambda c: [c.name(c.draw("protect", t, 0)) for t in range(4000)]  # noqa: E731
    first = names(a)
    assert first == names(b) and first != names(other)  # same seed, same draws; another seed, others
    share = {n: first.count(n) / len(first) for n in ("grey", "distance:scale=0.5", COLOUR)}
    assert abs(share["grey"] - 0.3) < 0.03 and abs(share["distance:scale=0.5"] - 0.2) < 0.03
    assert abs(share[COLOUR] - 0.5) < 0.03
    assert a.draw("attack", 7, 2) is a.draw("attack", 7, 2)  # no state: asking twice gives the same
    assert [a.name(a.draw("attack", t, 0)) for t in range(50)] != [a.name(a.draw("person", t, 0)) for t in range(50)]
    never = TrainingConditions.parse({"grey": 0.0}, 0)
    assert not never.active and all(never.draw("protect", t, 0) is None for t in range(200))


def test_the_option_is_typed_set_from_the_command_line_and_absent_when_empty() -> None:
    data = apply_overrides({}, ['conditions={grey = 0.5, "low-light:exposure=0.1" = 0.25}'])
    config = ISPTrainConfig.from_dict(data)
    assert config.conditions == {"grey": 0.5, "low-light:exposure=0.1": 0.25}
    assert config.to_dict()["conditions"] == config.conditions
    assert "conditions" not in ISPTrainConfig().to_dict()  # earlier runs' configs, checkpoints and keys
    assert "conditions" not in UNetTrainConfig().to_dict()
    with pytest.raises(CamproError, match="conditions"):
        ISPTrainConfig.from_dict({"conditions": ["grey"]})


# train isp -----------------------------------------------------------------------------------
def test_grey_probability_zero_is_the_run_without_the_option(tmp_path: Path) -> None:
    plain = make_trainer(tmp_path / "plain", restorer_config(iterations=4, restorer_warmup_steps=6))
    plain.run()
    zero = make_trainer(tmp_path / "zero", restorer_config(iterations=4, restorer_warmup_steps=6,
                                                           conditions={"grey": 0.0}))
    zero.run()
    for name in PLAYERS:
        assert states_equal(getattr(plain, name), getattr(zero, name)), name
    assert states_equal(plain.restoration.net, zero.restoration.net)
    assert strip(plain.rows) == strip(zero.rows) and plain.val_rows == zero.val_rows
    half = make_trainer(tmp_path / "half", restorer_config(iterations=4, restorer_warmup_steps=6,
                                                           conditions={"grey": 0.5}))
    half.run()
    assert not states_equal(plain.isp, half.isp)  # the option does act when drawn


def test_sampled_conditions_are_seeded_logged_and_in_the_manifest(tmp_path: Path) -> None:
    config = restorer_config(iterations=4, restorer_warmup_steps=6, restorer_steps=2, m=2, n=1,
                             conditions={"grey": 0.5})
    trainer = make_trainer(tmp_path / "a", config)
    trainer.run()
    again = make_trainer(tmp_path / "b", config)
    again.run()
    assert [r["conditions"] for r in trainer.rows] == [r["conditions"] for r in again.rows]
    draws = TrainingConditions.parse({"grey": 0.5}, config.seed)
    for t, row in enumerate(trainer.rows):  # each batch's logged condition is the seeded draw
        logged = dict(part.split(":", 1) for part in row["conditions"].split())
        steps = {"attack": 2, "restore": 2, "protect": 1, "person": 1}
        assert set(logged) == set(steps)
        for role, k in steps.items():
            assert logged[role].split("|") == [draws.name(draws.draw(role, t, s)) for s in range(k)]
    manifest = trainer.finish()
    recorded = manifest["seeds"]["conditions"]
    assert manifest["config"]["conditions"] == {"grey": 0.5}
    assert recorded["conditions"][0]["spec"] == "grey" and recorded["colour_probability"] == 0.5
    assert {role: sum(c.values()) for role, c in recorded["counts"].items()} == {
        "attack": 8, "restore": 8, "protect": 4, "person": 4, "restore-warmup": 6}
    all_draws = " ".join(r["conditions"] for r in trainer.rows)
    assert sum(c.get("grey", 0) for role, c in recorded["counts"].items() if role != "restore-warmup") == \
        all_draws.count("grey")
    on_disk = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert on_disk["seeds"]["conditions"]["counts"] == recorded["counts"]
    assert {"val_acc_protected@grey", "val_acc_restored@grey"} <= trainer.val_rows[-1].keys()
    warm = (tmp_path / "a" / "restorer_warmup.csv").read_text().splitlines()
    assert warm[0].split(",")[-1] == "condition" and len(warm) == 7


def test_grey_batches_reach_the_isp_as_three_identical_channels(tmp_path: Path) -> None:
    always = make_trainer(tmp_path / "grey", toy_config(iterations=3, conditions={"grey": 1.0}))
    always.run_warmup()
    seen = isp_inputs(always.isp)
    for _ in range(3):
        always.iterate()
    assert len(seen) == 3 * 3 and all(is_grey(x) for x in seen)  # attacker, protector-face and person batches
    assert all(not is_grey(x) for x in always._faces(np.arange(4))[0])  # the data itself is colour
    half = make_trainer(tmp_path / "half", toy_config(iterations=6, conditions={"grey": 0.5}))
    half.run_warmup()
    seen = isp_inputs(half.isp)
    half.iterate()
    parts = dict(p.split(":", 1) for p in half.rows[-1]["conditions"].split())
    assert [is_grey(x) for x in seen] == [parts[r] == "grey" for r in ("attack", "protect", "person")]


def test_resume_with_conditions_is_bit_identical(tmp_path: Path) -> None:
    config = dict(restorer_warmup_steps=6, conditions={"grey": 0.5, "distance:scale=0.5": 0.2})
    whole = make_trainer(tmp_path / "whole", restorer_config(iterations=5, **config))
    whole.run()
    first = make_trainer(tmp_path / "split", restorer_config(iterations=2, **config))
    first.run()
    second = make_trainer(tmp_path / "split", restorer_config(iterations=5, **config))
    second.resume()
    second.run()
    for name in PLAYERS:
        assert states_equal(getattr(whole, name), getattr(second, name)), name
    assert states_equal(whole.restoration.net, second.restoration.net)
    assert strip(whole.rows) == strip(second.rows) and whole.val_rows == second.val_rows
    drawn = {n for r in whole.rows for part in r["conditions"].split() for n in part.split(":", 1)[1].split("|")}
    assert drawn == {"grey", "distance:scale=0.5", COLOUR}
    with pytest.raises(CamproError, match="conditions"):
        make_trainer(tmp_path / "split", restorer_config(iterations=6, restorer_warmup_steps=6)).resume()


# train enhancer ------------------------------------------------------------------------------
def test_enhancer_with_grey_probability_zero_is_the_plain_enhancer_and_grey_reaches_the_isp() -> None:
    data, isp = toy_data(4), toy_isp()
    plain = train_unet(data, isp, UNetTrainConfig(**TINY, epochs=3, seed=2))
    zero = train_unet(data, isp, UNetTrainConfig(**TINY, epochs=3, seed=2, conditions={"grey": 0.0}))
    for (k, a), b in zip(plain.model.state_dict().items(), zero.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert strip(plain.history) == strip(zero.history)
    seen = isp_inputs(isp)
    grey = train_unet(data, isp, UNetTrainConfig(**TINY, epochs=3, seed=2, conditions={"grey": 0.5}))
    flags = [is_grey(x) for x in seen]
    assert any(flags) and not all(flags)
    assert sum(r["batches@grey"] for r in grey.history) == sum(flags)
    assert all(r["batches@grey"] + r[f"batches@{COLOUR}"] == 2 for r in grey.history)  # 4 images, batch 2
    again = train_unet(data, isp, UNetTrainConfig(**TINY, epochs=3, seed=2, conditions={"grey": 0.5}))
    assert strip(again.history) == strip(grey.history)


def test_enhancer_resume_with_conditions_is_identical(tmp_path: Path) -> None:
    data, isp = toy_data(4), toy_isp()
    config = dict(TINY, seed=3, conditions={"grey": 0.5})
    whole = train_unet(data, isp, UNetTrainConfig(**config, epochs=4))
    ckpt = tmp_path / "checkpoint.pt"
    train_unet(data, isp, UNetTrainConfig(**config, epochs=2), checkpoint=ckpt)
    resumed = train_unet(data, isp, UNetTrainConfig(**config, epochs=4), checkpoint=ckpt, resume=True)
    for (k, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert strip(whole.history) == strip(resumed.history)


def test_enhancer_never_trains_on_a_test_split() -> None:
    assert training_sources("coco-person-val") == [("coco-person-val", ("train",))]
    assert training_sources("coco128") == [("coco128", ("train", "val"))]
    with pytest.raises(CamproError, match="test split"):
        training_sources("coco128,coco-person-val:val")


# the face penalty on close-up faces ------------------------------------------------------------
def test_a_face_that_fills_the_crop_is_masked_everywhere_as_a_small_one_is_inside_its_box() -> None:
    data = toy_data(2)
    size = data.images[0].shape[0]
    big = np.array([[0, 0, size, size]], np.float32)  # a close-up: the face is the whole image
    from campro_bench.training import face_masks

    data.boxes[0], data.masks[0] = big, face_masks.keep_mask(big, size, size)
    config = UNetTrainConfig(**TINY, face_crop_fraction=1.0)
    rng = np.random.default_rng(0)
    for _ in range(10):
        _, keep = sample_crops(data, np.array([0, 1]), np.array([False, False]), config, rng)
        assert float(keep[0].max()) == 0.0  # every pixel of the close-up crop is face: all penalised
        small = keep[1]  # the small face (8 x 10 box): masked inside, kept around
        assert 0 < int((small == 0).sum()) <= 8 * 10 and float(small.max()) == 1.0


def test_close_up_crops_make_the_face_fill_the_frame_and_mask_it_there() -> None:
    from campro_bench.training import face_masks

    size = 64
    data = toy_data(2, size=size)
    small = np.array([[20, 24, 32, 38]], np.float32)  # a 12 x 14 face in a 64 px image
    for k in range(2):
        data.boxes[k], data.masks[k] = small, face_masks.keep_mask(small, size, size)
    config = UNetTrainConfig(**{**TINY, "crop": 32}, face_crop_fraction=1.0, close_up_fraction=1.0)
    rng = np.random.default_rng(0)
    for _ in range(10):
        x, keep = sample_crops(data, np.array([0, 1]), np.array([False, True]), config, rng)
        assert x.shape == (2, 3, 32, 32) and keep.shape == (2, 1, 32, 32)
        face_share = (keep == 0).float().mean(dim=(1, 2, 3))
        assert bool((face_share >= 0.2).all())  # the face fills a quarter of the frame or more
    plain = UNetTrainConfig(**{**TINY, "crop": 32}, face_crop_fraction=1.0)
    _, keep = sample_crops(data, np.array([0, 1]), np.array([False, False]), plain, np.random.default_rng(0))
    assert float((keep == 0).float().mean()) <= 14 * 12 / (32 * 32)  # at native scale the face stays small
    assert "close_up_fraction" not in plain.to_dict() and config.to_dict()["close_up_fraction"] == 1.0
    again = sample_crops(data, np.array([0]), np.array([False]), plain, np.random.default_rng(3))[0]
    before = UNetTrainConfig(**{**TINY, "crop": 32}, face_crop_fraction=1.0, close_up_fraction=0.0)
    assert torch.equal(again, sample_crops(data, np.array([0]), np.array([False]), before,
                                           np.random.default_rng(3))[0])
