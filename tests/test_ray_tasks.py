"""The audit and E5 as keyed tasks: the same tables and manifest entries with the local executor,
with a stand-in that pickles every task and runs them in reverse order, and with Ray workers on a
private head on 127.0.0.1; seeds recorded per task key; no face embedded twice in one audit.

Each run starts from a cache of its own (only the converted model files are shared), so every
embedding, restoration network and re-training is computed by the executor under test. The local
run that Ray is compared with uses one torch thread, as each 1-CPU Ray task does: accuracies do
not depend on the thread count, but the leakage table's cosines move by about 1e-6 with it (the
order of float sums in the convolution kernels)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from campro_bench.context import RunContext
from campro_bench.errors import CamproError
from campro_bench.executors import LOOPBACK_ENV, LocalExecutor, local_ray_head
from campro_bench.experiments.runner import run_experiment
from campro_bench.experiments.tasks import Task, run_tasks
from campro_bench.manifest import Manifest
from campro_bench.regress import regress_files
from test_executors import PicklingReversedExecutor

AUDIT = ['protectors=["invert", "lowres:factor=8"]', 'conditions=["colour", "grey"]', "eval_identities=4",
         "train_identities=4", "max_images_per_identity=3", "repeats=2", 'models=["sface"]',
         'classifiers=["nearest"]', 'cheap.attacks=["grayscale"]', "utility.psnr_images=0", "grid_faces=0",
         "restoration.steps=2", "restoration.batch_size=4", "restoration.depth=2", "restoration.base_channels=4",
         "retrain.epochs=1", "retrain.batch_size=8",
         # one budget per trained rung and no SELECT identities: the executor's equality, at the least cost
         "select_identities=0", "restoration.budgets=[1]", "retrain.budgets=[1]"]
"""Two protectors x two capture conditions (four protector tasks), every rung, at the smallest scale."""

E5 = ["protector=lowres:factor=8", "eval_identities=4", "max_train_identities=4", "repeats=2",
      "retrain.epochs=1", "retrain.batch_size=8", "retrain.train_seeds=[0, 1]",
      'retrain.columns=[{label="Finetune-Softmax", extractor="facenet-casia", loss="softmax", lr=0.01}]',
      'restoration.models=["sface"]', "restoration.steps=2", "restoration.batch_size=4", "restoration.depth=2",
      "restoration.base_channels=4"]
"""Two train seeds of one re-training column and the restoration network: three tasks."""

TABLES = {"audit": ["audit.csv", "summary.csv", "budget.csv", "leakage.csv"], "e5": ["e5.csv"]}


def _fresh_cache(cache_dir: Path, where: Path) -> Path:
    """A cache folder that shares the suite cache's converted model files and nothing else."""
    where.mkdir(parents=True)
    if (cache_dir / "models").is_dir():
        (where / "models").symlink_to(cache_dir / "models", target_is_directory=True)
    return where


def _run(experiment: str, overrides: list[str], out: Path, cache: Path, **executor: Any) -> Path:
    folder, _ = run_experiment(experiment, overrides=overrides, out=out, cache_dir=str(cache), device="cpu",
                               quiet=True, **executor)
    return folder


def _assert_same_run(a: Path, b: Path, experiment: str) -> None:
    """Every table equal at --tol 0, and the same seeds and trained weights in both manifests."""
    for name in TABLES[experiment]:
        report = regress_files(a / name, b / name, tol=0.0)
        assert report.ok, "\n".join([name, *report.lines()])
    ma, mb = (json.loads((f / "manifest.json").read_text()) for f in (a, b))
    assert ma["seeds"] == mb["seeds"]
    assert ma["data"] == mb["data"] and set(ma["notes"]["embeddings"]) == set(mb["notes"]["embeddings"])
    if experiment == "audit":
        digests = [{s: n["restoration"]["weights_digest"] for s, n in m["notes"]["audit"].items()} for m in (ma, mb)]
        assert digests[0] == digests[1] and all(digests[0].values())


def _double(ctx: RunContext, n: int) -> int:
    with ctx.manifest.timer("double"):
        ctx.manifest.notes.setdefault("seen", {})[str(n)] = n
    return 2 * n


def test_keyed_tasks_record_their_seeds_and_manifest_parts_whatever_the_executor() -> None:
    tasks = [Task(f"t{n}", _double, (n,), {"seed": 100 + n}) for n in (1, 2, 3)]
    manifests = []
    for executor in (LocalExecutor(), PicklingReversedExecutor()):
        ctx = RunContext(manifest=Manifest("t", {}), quiet=True, executor=executor)
        assert run_tasks(tasks, "double", ctx) == [2, 4, 6]
        manifests.append(ctx.manifest)
    for m in manifests:
        assert m.seeds["tasks"] == {"t1": {"seed": 101}, "t2": {"seed": 102}, "t3": {"seed": 103}}
        assert m.notes["seen"] == {"1": 1, "2": 2, "3": 3} and m.timings["double"] >= 0
    ctx = RunContext(manifest=Manifest("t", {}), quiet=True)
    with pytest.raises(CamproError, match="unique"):
        run_tasks([tasks[0], tasks[0]], "double", ctx)


@pytest.mark.realdata
@pytest.mark.slow
def test_audit_through_a_pickling_executor_equals_the_local_run_and_embeds_each_face_once(
        data_root: Path, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local run embeds no (model, protector, image) twice, across rungs and conditions; the
    pickled, reverse-order run gives the same tables, seeds and restoration weights."""
    from campro_bench.faces import embeddings

    embedded: list[tuple[str, str, str]] = []
    inner = embeddings._embed_missing

    def counting(ds: Any, missing: list[str], model: str, prot: Any, *args: Any) -> Any:
        embedded.extend((model, prot.fingerprint(), image_id) for image_id in missing)
        return inner(ds, missing, model, prot, *args)

    monkeypatch.setattr(embeddings, "_embed_missing", counting)
    local = _run("audit", AUDIT, tmp_path / "local", _fresh_cache(cache_dir, tmp_path / "cache-local"))
    assert embedded and len(set(embedded)) == len(embedded), "a face was embedded twice"
    raw = {key for key in embedded if key[1] == embedded[0][1]}  # the reference task embeds raw first
    assert len(raw) == len({key[2] for key in raw}), "raw faces embedded once for all protectors and conditions"
    manifest = json.loads((local / "manifest.json").read_text())
    keys = set(manifest["seeds"]["tasks"])
    assert {"reference", "audit invert@grey", "train retrain lowres:factor=8@grey 1x"} <= keys and len(keys) == 1 + 4 * 3
    assert manifest["seeds"]["tasks"]["audit invert"] == {"splits": [0, 1]}
    monkeypatch.setattr(embeddings, "_embed_missing", inner)
    import campro_bench.experiments.runner as runner

    monkeypatch.setattr(runner, "build_executor", lambda name, address: PicklingReversedExecutor())
    remote = _run("audit", AUDIT, tmp_path / "remote", _fresh_cache(cache_dir, tmp_path / "cache-remote"))
    _assert_same_run(remote, local, "audit")


def _through_ray(experiment: str, overrides: list[str], cache_dir: Path, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    for key, value in LOOPBACK_ENV.items():
        monkeypatch.setenv(key, value)  # before Ray is imported here
    pytest.importorskip("ray")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each 1-CPU Ray task runs: float sums in the kernels follow the thread count
    try:
        local = _run(experiment, overrides, tmp_path / "local", _fresh_cache(cache_dir, tmp_path / "cache-local"))
    finally:
        torch.set_num_threads(threads)
    with local_ray_head(num_cpus=2) as address:
        remote = _run(experiment, overrides, tmp_path / "ray", _fresh_cache(cache_dir, tmp_path / "cache-ray"),
                      executor="ray", address=address)
    manifest = json.loads((remote / "manifest.json").read_text())
    assert manifest["notes"]["executor"]["executor"] == "ray" and manifest["notes"]["executor"]["cluster_cpus"] == 2
    return local, remote


@pytest.mark.realdata
@pytest.mark.slow
def test_audit_through_ray_equals_the_local_run(data_root: Path, cache_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Two protectors x two conditions, every rung: Ray workers on a 2-CPU head on 127.0.0.1 (stopped
    afterwards), each run from a cache of its own, give the local run's tables at --tol 0."""
    local, remote = _through_ray("audit", AUDIT, cache_dir, tmp_path, monkeypatch)
    _assert_same_run(remote, local, "audit")


@pytest.mark.realdata
@pytest.mark.slow
def test_e5_through_ray_equals_the_local_run(data_root: Path, cache_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Two train seeds of a re-training column and the restoration network as Ray tasks: e5.csv equal
    to the local run's at --tol 0, the seed of each task recorded by its key."""
    local, remote = _through_ray("e5", E5, cache_dir, tmp_path, monkeypatch)
    _assert_same_run(remote, local, "e5")
    tasks = json.loads((remote / "manifest.json").read_text())["seeds"]["tasks"]
    assert tasks["retrain Finetune-Softmax seed 1"] == {"train": 1} and tasks["restoration"] == {"restoration": 0}
