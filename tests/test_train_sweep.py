"""``campro-bench train sweep``: the sweep file is checked before any training; every run's folder
equals what its single ``train`` command writes; the same runs with the local executor, a pickling
reverse-order stand-in and Ray workers on 127.0.0.1; the overwrite rule (only what a sweep wrote).

The runs are BDQ trainings on a synthetic KTH-style tree (4 iterations at 16 pixels, under a
second each), the cheapest trainer there is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from campro_bench.cli.main import main
from campro_bench.config import parse_config
from campro_bench.errors import CamproError
from campro_bench.executors import LOOPBACK_ENV, local_ray_head
from campro_bench.training import sweep
from campro_bench.training.checkpoint import load_training_checkpoint
from campro_bench.training.sweep import SweepConfig, load_sweep, plan, run_sweep
from campro_bench.video.synthetic import write_kth_tree
from campro_bench.video.training import STATE_KEYS

REPO = Path(__file__).resolve().parents[1]

TOY = {"size": 16, "frames": 4, "stride": 1, "step": 4, "test_actors": 1, "iterations": 4, "batch_size": 4,
       "width": 2, "checkpoint_every": 2}
"""The BDQ settings of tests/test_video_training.py: 4 iterations on 16-pixel clips."""


def _config(data: dict[str, Any]) -> SweepConfig:
    return parse_config(SweepConfig, data, "sweep")


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(CamproError) as exc:
        plan(_config(data))
    message = str(exc.value)
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------------------
# the sweep file
# ----------------------------------------------------------------------------------------
def test_unknown_keys_and_trainers_are_refused_by_name() -> None:
    assert "unknown sweep key 'run' (did you mean 'runs'?)" in _error({"trainer": "bdq", "run": []})
    assert "unknown sweep key 'runs[0].sett' (did you mean 'runs[0].set'?)" in _error(
        {"trainer": "bdq", "runs": [{"name": "a", "sett": {}}]})
    assert _error({"trainer": "bqd", "grid": {"seed": [0]}}) == (
        "unknown trainer 'bqd' (did you mean 'bdq'?); known trainers: bdq, enhancer, isp, lensless")
    assert "sweep key 'threads': input should be greater than or equal to 1" in _error({"trainer": "bdq", "threads": 0})


def test_an_option_its_trainer_does_not_know_is_refused_with_the_run_that_gives_it() -> None:
    message = _error({"trainer": "bdq", "runs": [{"name": "a"}, {"name": "b", "set": {"iteratons": 3}}]})
    assert message.startswith("unknown sweep run 'b' (train bdq) key 'iteratons' (did you mean 'iterations'?)")
    assert "sweep run 'a' (train isp) key 'omega': input should be a valid number, got '1'" in _error(
        {"trainer": "isp", "options": {"omega": "1"}, "runs": [{"name": "a"}]})
    assert "(did you mean 'omega'?)" in _error({"trainer": "isp", "grid": {"omgea": [1.0]}})
    assert "key 'isp' is required" in _error({"trainer": "enhancer", "grid": {"seed": [0]}})
    assert "train enhancer) key 'isp_preset'" in _error({"trainer": "enhancer", "options": {"isp_preset": "x"},
                                                         "runs": [{"name": "a"}]})
    assert [r.options for r in plan(_config({"trainer": "enhancer", "options": {"isp": "standard", "epochs": 2},
                                             "runs": [{"name": "a", "set": {"box_margin": 0.5}}]}))] == [
        {"isp": "standard", "epochs": 2, "box_margin": 0.5}]


def test_run_names_are_unique_folder_names_and_the_list_is_not_empty() -> None:
    assert _error({"trainer": "bdq", "runs": [{"name": "a"}, {"name": "b"}, {"name": "a"}]}) == (
        "sweep run name 'a' repeats (runs[0] and runs[2]); give every run a name of its own")
    assert "repeats (runs[0] and grid)" in _error({"trainer": "bdq", "runs": [{"name": "seed=1"}],
                                                    "grid": {"seed": [0, 1]}})
    for bad in ("../a", ".hidden", "a/b", ""):
        assert "is not a folder name" in _error({"trainer": "bdq", "runs": [{"name": bad}]})
    assert _error({"trainer": "bdq"}) == ("the sweep names no runs; give [[runs]] (a name and its options) or a grid")
    assert _error({"trainer": "bdq", "grid": {"seed": []}}) == "sweep key 'grid.seed' has no values; give at least one"


def test_the_grid_expands_in_key_order_after_the_named_runs() -> None:
    runs = plan(_config({"trainer": "isp", "options": {"iterations": 5, "seed": 7},
                         "runs": [{"name": "paper", "set": {"omega": 0.2}}],
                         "grid": {"seed": [0, 1], "omega": [0.2, 1, 5.0], "init": ["standard"]}}))
    assert [r.name for r in runs] == [
        "paper", "seed=0,omega=0.2,init=standard", "seed=0,omega=1,init=standard", "seed=0,omega=5.0,init=standard",
        "seed=1,omega=0.2,init=standard", "seed=1,omega=1,init=standard", "seed=1,omega=5.0,init=standard"]
    assert runs[0].options == {"iterations": 5, "seed": 7, "omega": 0.2}  # a run's own options over the shared
    assert runs[4].options == {"iterations": 5, "seed": 1, "omega": 0.2, "init": "standard"}
    assert sweep.name_part("a/b c") == "a_b_c" and sweep.name_part(True) == "true"


@pytest.mark.parametrize("path", sorted((REPO / "campro_bench" / "protocols" / "sweeps").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_the_shipped_sweep_files_are_valid(path: Path) -> None:
    runs = plan(load_sweep(path))
    assert len(runs) >= 2


def test_a_bad_sweep_file_is_one_error_line_and_no_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "s.toml"
    config.write_text('trainer = "bdq"\n[[runs]]\nname = "a"\nset = { sed = 1 }\n')
    assert main(["train", "sweep", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown sweep run 'a' (train bdq) key 'sed' (did you mean 'seed'?)")
    assert len(err.splitlines()) == 1 and not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------------
# running it
# ----------------------------------------------------------------------------------------
@pytest.fixture()
def toy(tmp_path: Path) -> tuple[Path, Path]:
    """A synthetic video tree and a sweep file of two seeds of a toy BDQ training on it."""
    write_kth_tree(tmp_path / "data", actors=3, frames=20)
    shared = "\n".join(f"{k} = {v}" for k, v in TOY.items())
    config = tmp_path / "seeds.toml"
    config.write_text(f'trainer = "bdq"\n[options]\ndataset = "{tmp_path / "data"}"\n{shared}\n'
                      '[[runs]]\nname = "s0"\nset = { seed = 0 }\n[[runs]]\nname = "s1"\nset = { seed = 1, alpha = 0.5 }\n')
    return tmp_path / "data", config


def _tree(value: Any) -> Any:
    """Tensors as lists, for equality of checkpoint states."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tree(v) for v in value]
    return value


VARYING = ("command", "written", "timings_s")
"""Manifest keys that name how and when a run was made, not what it made."""


def _assert_same_run(a: Path, b: Path) -> None:
    """The same BDQ run: parameter file and log byte for byte, checkpoint tensors and manifest equal."""
    for name in ("bdq.json", "log.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    states = [load_training_checkpoint(f / "checkpoint.pt", "bdq", STATE_KEYS) for f in (a, b)]
    assert _tree(states[0]) == _tree(states[1])
    ma, mb = (json.loads((f / "manifest.json").read_text()) for f in (a, b))
    assert {k: v for k, v in ma.items() if k not in VARYING} == {k: v for k, v in mb.items() if k not in VARYING}
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())


def test_each_run_equals_its_single_train_command(toy: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data, config = toy
    assert main(["train", "sweep", str(config), "--out", str(tmp_path / "sweep"), "--device", "cpu"]) == 0
    record = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert record["kind"] == sweep.SWEEP_KIND and record["executor"] == {"executor": "local"}
    assert [(e["name"], e["status"]) for e in record["runs"]] == [("s0", "done"), ("s1", "done")]
    assert record["runs"][1]["files"] == ["bdq.json", "checkpoint.pt", "log.csv", "manifest.json"]
    assert record["runs"][1]["metrics"]["iterations"] == 4 and record["runs"][1]["wall_s"] > 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the sweep's runs (threads = 1): float sums follow the thread count
    try:
        for name, extra in (("s0", ["--set", "seed=0"]), ("s1", ["--set", "seed=1", "--set", "alpha=0.5"])):
            single = ["train", "bdq", "--out", str(tmp_path / "single" / name), "--set", f'dataset="{data}"',
                      *[w for k, v in TOY.items() for w in ("--set", f"{k}={v}")], *extra]
            assert main(single) == 0
            _assert_same_run(tmp_path / "sweep" / name, tmp_path / "single" / name)
    finally:
        torch.set_num_threads(threads)
    manifest = json.loads((tmp_path / "sweep" / "s1" / "manifest.json").read_text())
    assert manifest["command"][:5] == ["campro-bench", "train", "bdq", "--out", "s1"]  # its single command
    assert manifest["command"][-4:] == ["--set", "seed=1", "--set", "alpha=0.5"]
    assert json.loads((tmp_path / "sweep" / "s0" / "bdq.json").read_text()) != json.loads(
        (tmp_path / "sweep" / "s1" / "bdq.json").read_text())
    assert not list((tmp_path / "sweep").glob(".*"))  # no work folder left


def test_overwrite_replaces_only_what_the_sweep_wrote(toy: tuple[Path, Path], tmp_path: Path) -> None:
    _, config = toy
    out = tmp_path / "sweep"
    run_sweep(load_sweep(config), out, quiet=True)
    before = (out / "s0" / "bdq.json").read_bytes()
    with pytest.raises(CamproError, match=r"already holds sweep.json, s0, s1; pass --overwrite"):
        run_sweep(load_sweep(config), out, quiet=True)
    (out / "s0" / "notes.txt").write_text("mine")
    (out / "s0" / "log.csv").unlink()
    record = run_sweep(load_sweep(config), out, overwrite=True, quiet=True)
    assert [e["status"] for e in record["runs"]] == ["done", "done"]
    assert (out / "s0" / "notes.txt").read_text() == "mine" and (out / "s0" / "bdq.json").read_bytes() == before
    assert (out / "s0" / "log.csv").exists()
    # a folder under a run's name that no sweep record lists is never replaced
    (out / "sweep.json").unlink()
    with pytest.raises(CamproError, match="holds s0, s1 but no sweep.json"):
        run_sweep(load_sweep(config), out, overwrite=True, quiet=True)
    (out / "sweep.json").write_text('{"kind": "something else", "runs": []}')
    with pytest.raises(CamproError, match="is not the record of a campro-bench sweep"):
        run_sweep(load_sweep(config), out, overwrite=True, quiet=True)
    other = tmp_path / "other"
    (other / "s1").mkdir(parents=True)
    (other / "sweep.json").write_text(json.dumps({"kind": sweep.SWEEP_KIND, "runs": [{"name": "s0", "files": []}]}))
    with pytest.raises(CamproError, match="s1 is not a run folder that .*sweep.json lists"):
        run_sweep(load_sweep(config), other, overwrite=True, quiet=True)
    assert (other / "s1").is_dir() and not list((other / "s1").iterdir())


def test_a_failing_run_is_recorded_and_the_others_finish(toy: tuple[Path, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    _, config = toy
    config.write_text(config.read_text() + '[[runs]]\nname = "broken"\nset = { dataset = "no-such-dataset" }\n')
    out = tmp_path / "sweep"
    (out / ".s0.partial-999999999-abc").mkdir(parents=True)  # a run killed outright: its process is gone
    assert main(["train", "sweep", str(config), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: 1 of 3 runs failed (broken: ") and len(err.splitlines()) == 1
    record = json.loads((out / "sweep.json").read_text())
    assert [e["status"] for e in record["runs"]] == ["done", "done", "failed"]
    assert record["runs"][2]["error"] and record["runs"][2]["files"] is None
    assert sorted(p.name for p in out.iterdir()) == ["s0", "s1", "sweep.json"]  # no work folder, old or new


# ----------------------------------------------------------------------------------------
# executors
# ----------------------------------------------------------------------------------------
def _local_and(executor: str, toy: tuple[Path, Path], tmp_path: Path, **options: Any) -> tuple[Path, Path, dict]:
    _, config = toy
    run_sweep(load_sweep(config), tmp_path / "local", quiet=True)
    record = run_sweep(load_sweep(config), tmp_path / executor, executor=executor, quiet=True, **options)
    return tmp_path / "local", tmp_path / executor, record


def test_runs_from_pickled_tasks_in_reverse_order_equal_the_local_ones(toy: tuple[Path, Path], tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from test_executors import PicklingReversedExecutor

    remote = PicklingReversedExecutor()
    real = sweep.build_executor
    monkeypatch.setattr(sweep, "build_executor", lambda name, address: remote if name == "pickled" else real(name))
    local, other, record = _local_and("pickled", toy, tmp_path)
    assert remote.maps == [("call_with_context", 2)]  # one task per run
    for name in ("s0", "s1"):
        _assert_same_run(other / name, local / name)
    assert [e["status"] for e in record["runs"]] == ["done", "done"]


@pytest.mark.slow
def test_runs_as_ray_tasks_equal_the_local_ones(toy: tuple[Path, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs as Ray tasks on a 2-CPU head on 127.0.0.1 (stopped afterwards): the same files."""
    for key, value in LOOPBACK_ENV.items():
        monkeypatch.setenv(key, value)  # before Ray is imported here
    pytest.importorskip("ray")
    with local_ray_head(num_cpus=2) as address:
        local, remote, record = _local_and("ray", toy, tmp_path, address=address)
    assert record["executor"]["executor"] == "ray" and record["executor"]["cluster_cpus"] == 2
    for name in ("s0", "s1"):
        _assert_same_run(remote / name, local / name)
