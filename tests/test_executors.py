"""Executors: the local default, the Ray executor's error without Ray, and E1 through a real local
Ray head on the loopback address equal to the local run, bit for bit."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from campro_bench.errors import CamproError
from campro_bench.executors import LOOPBACK_ENV, LocalExecutor, build_executor, local_ray_head
from campro_bench.experiments.runner import run_experiment
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
