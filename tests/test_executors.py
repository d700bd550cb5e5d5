"""Executors: the local default, the Ray executor's error without Ray, tasks that see the run's own
context locally and a rebuilt one elsewhere, the trade-off's detector tasks through a pickling
executor equal to the local run, and E1 through a real local Ray head on the loopback address equal
to the local run, bit for bit."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from campro_bench.context import RunContext
from campro_bench.errors import CamproError
from campro_bench.executors import LOOPBACK_ENV, LocalExecutor, build_executor, local_ray_head
from campro_bench.experiments.runner import run_experiment
from campro_bench.manifest import Manifest
from campro_bench.regress import regress_files


def test_local_executor_keeps_submission_order_and_reports_progress() -> None:
    done: list[int] = []
    results = LocalExecutor().map(pow, [(2, 3), (3, 2), (5, 0)], on_done=done.append)
    assert results == [8, 9, 1] and done == [1, 1, 1]


def test_unknown_executor_and_stray_address_fail_with_one_line() -> None:
    with pytest.raises(CamproError, match="known executors: local, ray"):
        build_executor("dask")
    with pytest.raises(CamproError, match="--executor ray only"):
        build_executor("local", "127.0.0.1:6379")


def test_loopback_addresses_are_recognised() -> None:
    from campro_bench.executors import _is_loopback

    assert _is_loopback("127.0.0.1:6379") and _is_loopback("localhost:1") and _is_loopback("local")
    assert not _is_loopback("auto") and not _is_loopback("10.0.0.5:6379")


def test_ray_executor_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(CamproError, match=r'pip install -e "\.\[ray\]"'):
        build_executor("ray", "auto")


@pytest.mark.realdata
@pytest.mark.slow
def test_e1_through_ray_equals_the_local_run(data_root: Path, cache_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """protocols/e1_ci.toml on its first 20 identities: the local run (the suite's cache) and the
    Ray run (a fresh cache, every cell computed by Ray workers on a head started on 127.0.0.1 for
    it, stopped afterwards) give the same e1.csv at --tol 0."""
    for key, value in LOOPBACK_ENV.items():
        monkeypatch.setenv(key, value)  # before Ray is imported here
    pytest.importorskip("ray")
    overrides = ["max_identities=20"]
    local, _ = run_experiment("e1", protocol="e1_ci", overrides=overrides, out=tmp_path / "local",
                              data_root=str(data_root), cache_dir=str(cache_dir), device="cpu", quiet=True)
    fresh = tmp_path / "ray-cache"
    fresh.mkdir()
    if (cache_dir / "models").is_dir():  # converted model files only: every embedding is recomputed
        shutil.copytree(cache_dir / "models", fresh / "models")
    with local_ray_head(num_cpus=2) as address:
        remote, _ = run_experiment("e1", protocol="e1_ci", overrides=overrides, out=tmp_path / "ray",
                                   data_root=str(data_root), cache_dir=str(fresh), device="cpu", quiet=True,
                                   executor="ray", address=address)
    report = regress_files(remote / "e1.csv", local / "e1.csv", tol=0.0)
    assert report.ok, "\n".join(report.lines())
    manifest = json.loads((remote / "manifest.json").read_text())
    assert manifest["notes"]["executor"]["executor"] == "ray" and manifest["notes"]["executor"]["cluster_cpus"] == 2
    assert any((fresh / "faces").rglob("*")), "the Ray workers wrote their embeddings into the cache they were given"


class PicklingReversedExecutor:
    """A stand-in for a remote executor: every call's function and arguments make a pickle round
    trip (as Ray would send them), the calls run in reverse order, the results come back in
    submission order."""

    name = "pickling-reversed"

    def __init__(self) -> None:
        self.maps: list[tuple[str, int]] = []

    def map(self, fn, calls, *, resources=None, on_done=None):
        self.maps.append((getattr(fn, "__name__", str(fn)), len(calls)))
        results = [None] * len(calls)
        for n in reversed(range(len(calls))):
            task, args = pickle.loads(pickle.dumps((fn, tuple(calls[n]))))
            results[n] = task(*args)
            if on_done:
                on_done(1)
        return results

    def describe(self) -> dict:
        return {"executor": self.name}

    def close(self) -> None:
        return None


def _task_with_timer(ctx: RunContext, n: int) -> tuple[int, str, bool]:
    with ctx.manifest.timer("task"):
        return n * n, str(ctx.cache_dir), ctx.quiet


def test_map_tasks_gives_the_run_context_locally_and_a_rebuilt_one_elsewhere(tmp_path: Path) -> None:
    ctx = RunContext(manifest=Manifest("t", {}), cache_dir=tmp_path, quiet=False)
    assert ctx.map_tasks(_task_with_timer, [(2,), (3,)], "squares") == [(4, str(tmp_path), False),
                                                                        (9, str(tmp_path), False)]
    assert "task" in ctx.manifest.timings  # the run's own context recorded the timer
    remote = RunContext(manifest=Manifest("t", {}), cache_dir=tmp_path, quiet=True, executor=PicklingReversedExecutor())
    assert remote.map_tasks(_task_with_timer, [(2,), (3,), (4,)], "squares") == [
        (n * n, str(tmp_path.absolute()), True) for n in (2, 3, 4)]  # a quiet context of the same folders
    assert remote.manifest.timings["task"] > 0  # the tasks' timers are added to the run's manifest


def _fresh_cache(cache_dir: Path, tmp_path: Path) -> Path:
    """A cache folder that shares the session cache's models and face crops but nothing trained."""
    fresh = tmp_path / "cache"
    fresh.mkdir(parents=True)
    for name in ("models", "faces"):
        if (cache_dir / name).is_dir():
            (fresh / name).symlink_to(cache_dir / name)
    return fresh


def _tiny_utility(cache_dir: Path, tmp_path: Path, executors: dict) -> dict:
    """The trade-off's utility axis (raw and x16, the detector fine-tuned one epoch on one coco128
    image, evaluated on one) with each executor, each from a cache with nothing trained."""
    from campro_bench.experiments.tradeoff import TradeoffConfig, utility_points

    cfg = TradeoffConfig.from_spec({
        "methods": [{"method": "Raw", "spec": "raw"}, {"method": "Low-Resolution", "spec": "lowres:factor=16"},
                    {"method": "Low-Resolution", "label": "again", "spec": "lowres:factor=16"}],
        "privacy": {"datasets": ["celeba-subset"], "models": ["sface"]},
        "utility": {"finetune_epochs": 1, "max_images": 1, "max_train_images": 1}})
    methods = [{"method": m.method, "label": m.label or m.spec, "spec": m.spec} for m in cfg.methods]
    tables = {}
    for name, executor in executors.items():
        ctx = RunContext(manifest=Manifest("tradeoff", {}), cache_dir=_fresh_cache(cache_dir, tmp_path / name),
                         quiet=True, executor=executor)
        tables[name] = utility_points(methods, cfg, ctx)
        assert ctx.manifest.models["ssdlite-mobilenetv2-coco"]["weights_sha256"]
        assert "utility/finetune lowres:factor=16" in ctx.manifest.timings  # the tasks' timers reach the run
    assert list(tables["local"].index) == ["raw", "lowres:factor=16"]  # one task per distinct protector spec
    assert not tables["local"]["detector_cached"].any()  # every run fine-tuned from scratch
    return tables


@pytest.mark.realdata
def test_tradeoff_utility_through_a_pickling_executor_equals_the_local_run(data_root: Path, cache_dir: Path,
                                                                           tmp_path: Path) -> None:
    """One detector fine-tuning + evaluation task per protector: the same table, bit for bit,
    whether the tasks run in this process or from pickled arguments in reverse order."""
    remote = PicklingReversedExecutor()
    tables = _tiny_utility(cache_dir, tmp_path, {"local": LocalExecutor(), "remote": remote})
    assert remote.maps == [("call_with_context", 2)]
    pd.testing.assert_frame_equal(tables["remote"], tables["local"], check_exact=True)


@pytest.mark.realdata
@pytest.mark.slow
def test_tradeoff_utility_through_ray_equals_the_local_run(data_root: Path, cache_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The same detector tasks as Ray tasks on a head started on 127.0.0.1 (stopped afterwards)."""
    for key, value in LOOPBACK_ENV.items():
        monkeypatch.setenv(key, value)  # before Ray is imported here
    pytest.importorskip("ray")
    from campro_bench.executors import RayExecutor

    with local_ray_head(num_cpus=2) as address:
        ray = RayExecutor(address)
        try:
            tables = _tiny_utility(cache_dir, tmp_path, {"local": LocalExecutor(), "ray": ray})
        finally:
            ray.close()
    pd.testing.assert_frame_equal(tables["ray"], tables["local"], check_exact=True)
