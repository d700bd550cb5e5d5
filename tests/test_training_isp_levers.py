"""The levers of ``train isp`` (training/isp_levers.py) at toy scale: the restorer re-initialised every K
iterations, its steps annealed upward, the LUT's slope bound; defaults change nothing, resume follows
the schedules, bad values fail in one line."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from campro_bench.enhancer.model import UNet
from campro_bench.errors import CamproError
from campro_bench.protectors.isp import ISPParams
from campro_bench.training import isp_levers
from campro_bench.training.isp import ISPTrainConfig
from campro_bench.training.isp_restoration import RestorationAdversary
from test_training_isp import make_trainer, restorer_config, states_equal, toy_config  # noqa: E402

LEVERS_ON = dict(restorer_reinit_every=2, restorer_steps_final=3, restorer_steps_ramp=4, lut_max_slope=0.8,
                 restorer_warmup_steps=5)


def strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_defaults_record_nothing_and_neutral_values_change_nothing(tmp_path: Path) -> None:
    assert not set(isp_levers.LEVER_DEFAULTS) & set(toy_config().to_dict())  # checkpoints and manifests as before
    assert toy_config(lut_max_slope=0.5).to_dict()["lut_max_slope"] == 0.5
    plain = make_trainer(tmp_path / "plain", restorer_config(iterations=4, restorer_warmup_steps=5))
    plain.run()
    # a ramp from R0 to R0 and a bound no 32-point LUT in [0, 1] can exceed run the same code paths
    neutral = make_trainer(tmp_path / "neutral", restorer_config(iterations=4, restorer_warmup_steps=5,
                                                                 restorer_steps_final=1, lut_max_slope=31.0))
    neutral.run()
    for name in ("isp", "attacker", "head", "detector"):
        assert states_equal(getattr(plain, name), getattr(neutral, name)), name
    assert states_equal(plain.restoration.net, neutral.restoration.net)
    assert strip(plain.rows) == strip(neutral.rows)


def test_restorer_is_reinitialised_with_a_seeded_init_after_every_kth_iteration(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, restorer_config(iterations=5, restorer_reinit_every=2, restorer_warmup_steps=3))
    adversary = trainer.restoration
    seen: list[tuple[int, dict, dict, dict]] = []  # (iteration, weights before, weights after, optimiser state)
    original = adversary.reinitialise

    def spy(init_seed: int) -> None:
        before = copy.deepcopy(adversary.net.state_dict())
        original(init_seed)
        seen.append((trainer.iteration + 1, before, copy.deepcopy(adversary.net.state_dict()),
                     adversary.optimizer.state_dict()["state"]))

    adversary.reinitialise = spy  # type: ignore[method-assign]
    trainer.run()
    assert [s[0] for s in seen] == [3, 5]  # before iterations 3 and 5: after iterations 2 and 4
    assert [r.get("restorer_reset") for r in trainer.rows] == [None, None, 1, None, 2]
    for resets, (_, before, after, optimiser) in enumerate(seen, start=1):
        torch.manual_seed(isp_levers.restorer_init_seed(trainer.config.seed, resets))
        fresh = UNet(adversary.size).state_dict()
        assert all(torch.equal(after[k], fresh[k]) for k in fresh)  # exactly the seeded init
        assert not all(torch.equal(before[k], after[k]) for k in fresh)  # the trained weights are gone
        assert optimiser == {}  # a fresh Adam
    assert not all(torch.equal(seen[0][2][k], seen[1][2][k]) for k in seen[0][2])  # each reset its own seed
    assert isp_levers.restorer_init_seed(3, 0) == 3  # the first init is the run's seed, as before


def test_restorer_steps_follow_the_upward_ramp(tmp_path: Path) -> None:
    schedule = lambda **kw: [isp_levers.restorer_steps_at(toy_config(**kw), i) for i in range(1, 8)]  # noqa: E731
    ramp = dict(restorer="unet", restorer_steps=1, restorer_steps_final=4)
    assert schedule(iterations=7, **ramp) == [1, 2, 2, 3, 3, 4, 4]  # 1 + 3 (i - 1) / 6, rounded half up
    assert schedule(iterations=7, restorer_steps_ramp=3, **ramp) == [1, 3, 4, 4, 4, 4, 4]
    assert schedule(iterations=7, restorer="unet", restorer_steps=2) == [2] * 7  # no ramp: constant
    trainer = make_trainer(tmp_path, restorer_config(iterations=5, restorer_steps=1, restorer_steps_final=3,
                                                     restorer_warmup_steps=0))  # only the iterations call R
    calls: list[int] = []
    step = trainer.restoration.restorer_step
    trainer.restoration.restorer_step = lambda *a: (calls.append(trainer.iteration + 1), step(*a))[1]  # type: ignore
    trainer.run()
    taken = [calls.count(i) for i in range(1, 6)]
    assert taken == [1, 2, 2, 3, 3] and [r["restorer_steps"] for r in trainer.rows] == taken
    assert trainer.summary()["levers"]["restorer_steps_total"] == 11


def test_lut_slope_bound_holds_on_the_trained_lut(tmp_path: Path) -> None:
    lut = torch.tensor([0.0, 0.9, 0.1, 1.0, 1.0, 0.2])
    bounded = isp_levers.limit_lut_slope_(lut.clone(), 1.0)
    assert torch.diff(bounded).abs().max() <= 1.0 / 5 + 1e-7 and bounded.min() >= 0 and bounded.max() <= 1
    assert torch.equal(isp_levers.limit_lut_slope_(bounded.clone(), 1.0), bounded)  # feasible: unchanged
    free = make_trainer(tmp_path / "free", toy_config(iterations=6))
    free.run()
    flat = make_trainer(tmp_path / "flat", toy_config(iterations=6, lut_max_slope=0.5))
    assert isp_levers.lut_slope(flat.isp.lut) <= 0.5  # the initial ISP already meets the bound
    flat.run()
    assert isp_levers.lut_slope(free.isp.lut) > 2.0  # the standard LUT is steep near 0
    assert isp_levers.lut_slope(flat.isp.lut) <= 0.5
    assert float(flat.isp.lut.detach().max() - flat.isp.lut.detach().min()) <= 0.5  # its outputs span at most s
    flat.finish()
    saved = ISPParams.load(tmp_path / "flat" / "isp.json")
    assert saved.metadata["lut_max_slope"] == 0.5 and isp_levers.lut_slope(saved.lut_tensor()) <= 0.5


class Interrupt(Exception):
    pass


def stop_after(iteration: int):  # noqa: ANN201
    def progress(phase: str, done: int, total: int) -> None:
        if phase == "train" and done == iteration:
            raise Interrupt
    return progress


@pytest.mark.parametrize("levers", [LEVERS_ON, {**LEVERS_ON, "restorer_steps_ramp": 0}], ids=["ramp4", "whole-run"])
def test_resume_with_levers_equals_an_uninterrupted_run(tmp_path: Path, levers: dict) -> None:
    config = restorer_config(iterations=6, **levers)
    whole = make_trainer(tmp_path / "whole", config)
    whole.run()
    first = make_trainer(tmp_path / "split", config)
    with pytest.raises(Interrupt):
        first.run(stop_after(3))  # killed in iteration 3's aftermath: the last checkpoint is iteration 2's
    second = make_trainer(tmp_path / "split", config)
    second.resume()
    assert second.iteration == 2
    second.run()
    for name in ("isp", "attacker", "head", "detector"):
        assert states_equal(getattr(whole, name), getattr(second, name)), name
    assert states_equal(whole.restoration.net, second.restoration.net)
    assert strip(whole.rows) == strip(second.rows) and whole.val_rows == second.val_rows
    assert [r.get("restorer_reset") for r in whole.rows] == [None, None, 1, None, 2, None]


def test_a_ramp_over_the_whole_run_fixes_its_length_on_resume(tmp_path: Path) -> None:
    make_trainer(tmp_path / "ramp", restorer_config(iterations=3, restorer_steps_final=3)).run()
    with pytest.raises(CamproError, match="iterations is fixed when restorer_steps_final ramps") as info:
        make_trainer(tmp_path / "ramp", restorer_config(iterations=6, restorer_steps_final=3)).resume()
    assert "\n" not in str(info.value)
    make_trainer(tmp_path / "fixed", restorer_config(iterations=3, restorer_steps_final=3,
                                                     restorer_steps_ramp=4)).run()
    extended = make_trainer(tmp_path / "fixed", restorer_config(iterations=6, restorer_steps_final=3,
                                                                restorer_steps_ramp=4))
    extended.resume()  # an explicit ramp length: a run may be extended
    assert extended.iteration == 3


def test_manifest_and_checkpoint_record_the_levers(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, restorer_config(iterations=4, **LEVERS_ON))
    trainer.run()
    manifest = trainer.finish()
    assert {k: manifest["config"][k] for k in isp_levers.LEVER_DEFAULTS} == {
        k: LEVERS_ON[k] for k in isp_levers.LEVER_DEFAULTS}
    levers = manifest["metrics"]["levers"]
    assert levers["restorer_steps_total"] == 1 + 2 + 2 + 3 and levers["restorer_resets"] == 1
    assert json.loads((tmp_path / "manifest.json").read_text())["metrics"]["levers"] == levers
    from campro_bench.training.checkpoint import load_training_checkpoint

    _, state = load_training_checkpoint(tmp_path / "checkpoint.pt", "isp")
    assert state["levers"] == {"iteration": 4, "restorer_resets": 1, "restorer_steps_next": 3,
                               "restorer_init_seed": isp_levers.restorer_init_seed(0, 1)}
    plain = make_trainer(tmp_path / "plain", toy_config(iterations=1))
    plain.run()
    assert plain.summary()["levers"] == {**isp_levers.LEVER_DEFAULTS, "isp_steps_per_iteration": 1}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"restorer": "unet", "restorer_reinit_every": -1}, "key 'restorer_reinit_every': input should be greater"),
        ({"restorer": "unet", "restorer_steps": 4, "restorer_steps_final": 2},
         r"restorer_steps_final \(2\) must be at least restorer_steps \(4\)"),
        ({"restorer_reinit_every": 5}, "restorer_reinit_every need a restorer"),
        ({"restorer": "unet", "restorer_steps_ramp": 5}, "restorer_steps_ramp needs restorer_steps_final"),
        ({"lut_max_slope": -0.5}, "key 'lut_max_slope'"),
        ({"lut_max_slope": 40.0}, "key 'lut_max_slope': input should be less than or equal to 31"),
    ],
)
def test_bad_lever_values_fail_in_one_line(overrides: dict, message: str) -> None:
    with pytest.raises(CamproError, match=message) as info:
        toy_config(**overrides).check()
    assert "\n" not in str(info.value)


def test_unknown_lever_key_fails_in_one_line() -> None:
    with pytest.raises(CamproError, match="unknown train isp key 'restorer_reinit'") as info:
        ISPTrainConfig.from_dict({"restorer_reinit": 3})
    assert "\n" not in str(info.value) and "restorer_reinit_every" in str(info.value)


def test_restorer_size_options_size_the_restorer() -> None:
    small = RestorationAdversary(4, 2, 1e-3, 10, 2, 0, False, torch.device("cpu"))
    large = RestorationAdversary(8, 3, 1e-3, 10, 2, 0, False, torch.device("cpu"))
    count = lambda a: sum(p.numel() for p in a.net.parameters())  # noqa: E731
    assert count(large) > 2 * count(small)
    again = RestorationAdversary(4, 2, 1e-3, 10, 2, 0, False, torch.device("cpu"))
    assert states_equal(small.net, again.net)  # the seed alone fixes R's initial weights


def test_shipped_levers_sweep_gives_two_seeds_per_setting() -> None:
    from importlib import resources

    from campro_bench.training.sweep import load_sweep, plan

    path = Path(str(resources.files("campro_bench") / "protocols" / "sweeps" / "isp-levers.toml"))
    runs = plan(load_sweep(path))  # every run's options checked as `train isp` checks them
    settings: dict[str, list[int]] = {}
    for run in runs:
        setting, _, seed = run.name.partition(",seed=")
        settings.setdefault(setting, []).append(int(seed))
        assert run.options["seed"] == int(seed)
    assert all(seeds == [0, 1] for seeds in settings.values()) and len(settings) == 6
    changed = {s: {k for k, v in r.options.items() if runs[0].options.get(k) != v} - {"seed"}
               for s, r in ((r.name.partition(",seed=")[0], r) for r in runs)}
    assert changed["base"] == set() and all(changed[s] for s in settings if s != "base")  # one lever each


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "restorer_reinit_every=-2"], "key 'restorer_reinit_every': input should be greater than or equal to 0"),
        (["--restorer", "unet", "--set", "restorer_steps=8", "--set", "restorer_steps_final=4"],
         "restorer_steps_final (4) must be at least restorer_steps (8)"),
        (["--set", "lut_slope=0.5"], "unknown train isp key 'lut_slope' (did you mean 'lut_max_slope'?)"),
    ],
)
def test_bad_lever_options_are_one_error_line_on_the_command_line(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from campro_bench.cli.main import main

    status = main(["train", "isp", "--out", str(tmp_path / "x"), "--device", "cpu", *extra])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith("error:") and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x").exists()  # refused before anything is written
