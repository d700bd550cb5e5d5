"""Manifests, tables and extra files hold no absolute path of the machine: committed ones, and the ones a
run writes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from campro_bench.experiments.base import ExperimentResult
from campro_bench.experiments.runner import run_experiment
from campro_bench.provenance import has_absolute_path, portable_paths
from campro_bench.registries import EXPERIMENTS

REPO = Path(__file__).resolve().parents[1]


def committed_manifests() -> list[str]:
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "*manifest*.json"], capture_output=True,
                            text=True, check=True).stdout.split()
    return [name for name in listed if (REPO / name).is_file()]


def test_there_are_committed_manifests() -> None:
    assert len(committed_manifests()) >= 5


@pytest.mark.parametrize("name", committed_manifests())
def test_no_committed_manifest_holds_an_absolute_path(name: str) -> None:
    assert has_absolute_path(json.loads((REPO / name).read_text(encoding="utf-8"))) == []


def committed_results() -> list[str]:
    """Tables and result files the tool wrote (the hand-written READMEs excepted)."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "baselines/*.csv", "baselines/*.md", "baselines/*.json"],
                            capture_output=True, text=True, check=True).stdout.split()
    return [name for name in listed if (REPO / name).is_file() and "manifest" not in name and not name.endswith("README.md")]


def test_no_committed_table_or_result_file_names_a_machine_path() -> None:
    names = committed_results()
    assert len(names) >= 50
    found = {name: has_absolute_path((REPO / name).read_text(encoding="utf-8")) for name in names}
    assert {name: paths for name, paths in found.items() if paths} == {}


def test_portable_paths_makes_paths_relative_to_their_roots() -> None:
    manifest = {"root": "/data/sets/lfw", "cache": "/c/faces/embeddings/ab12", "spec": {"_source": "/pkg/protocols/e1.toml"},
                "command": ["/venv/bin/campro-bench", "run", "e1", "--out", "/tmp/x/run1"],
                "note": "weights not found in /m/models (--models-dir)", "url": "https://example.org/a/b",
                "ratio": "w=0.2/omega", "hash": "ab/cd"}
    out = portable_paths(manifest, {"/data/sets": "", "/c": "", "/pkg/protocols": "protocols"})
    assert out == {"root": "lfw", "cache": "faces/embeddings/ab12", "spec": {"_source": "protocols/e1.toml"},
                   "command": ["campro-bench", "run", "e1", "--out", "run1"],
                   "note": "weights not found in models (--models-dir)", "url": "https://example.org/a/b",
                   "ratio": "w=0.2/omega", "hash": "ab/cd"}
    assert has_absolute_path(out) == [] and len(has_absolute_path(manifest)) == 6


def test_a_run_writes_a_portable_manifest(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "faces").mkdir(parents=True)

    def run(spec, ctx) -> ExperimentResult:
        ctx.manifest.data["faces"] = {"root": str(ctx.data_root / "faces"), "cache": str(ctx.cache_dir / "k" / "1")}
        note = f"unavailable: no model folder {ctx.cache_dir / 'models' / 'blip'}"
        report = json.dumps({"checkpoint": str(ctx.cache_dir / "detectors" / "p.pt"), "epochs": 2}).encode()
        return ExperimentResult(tables={"t": pd.DataFrame({"a": [1], "note": [note]})}, notes=note,
                                extra_files={"report.json": report, "raw.bin": str(ctx.cache_dir).encode()})

    EXPERIMENTS.add("portable-test", run, origin="tests")
    protocol = tmp_path / "p.toml"
    protocol.write_text("seed = 0\n")
    try:
        out, _ = run_experiment("portable-test", protocol=str(protocol), out=tmp_path / "run", quiet=True,
                                data_root=str(data), cache_dir=str(tmp_path / "cache"))
    finally:
        EXPERIMENTS.remove("portable-test")
    manifest = json.loads((out / "manifest.json").read_text())
    assert has_absolute_path(manifest) == []
    assert manifest["data"]["faces"] == {"root": "faces", "cache": "k/1"}
    assert pd.read_csv(out / "t.csv")["note"].tolist() == ["unavailable: no model folder models/blip"]
    assert has_absolute_path((out / "t.md").read_text()) == []
    assert json.loads((out / "report.json").read_text()) == {"checkpoint": "detectors/p.pt", "epochs": 2}
    assert (out / "raw.bin").read_bytes() == str(tmp_path / "cache").encode()  # not JSON: written as given


def test_the_environment_records_the_cpu_thread_count_the_results_depend_on() -> None:
    from campro_bench.provenance import environment
    from campro_bench.runtime import torch_threads

    for n in (1, 2):
        with torch_threads(n):
            assert environment()["torch_threads"] == n
    assert environment()["cpu_count"] >= 1
