"""Manifests, tables and extra files hold no absolute path of the machine: committed ones, and the ones a
run writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from campro_bench.experiments.base import ExperimentResult
from campro_bench.experiments.runner import run_experiment
from campro_bench.provenance import has_absolute_path, portable_command, portable_paths
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


def committed_audit_summaries() -> list[str]:
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "baselines/audit/*/summary.csv"], capture_output=True,
                            text=True, check=True).stdout.split()
    return [name for name in listed if (REPO / name).is_file()]


def _quoted(table_path: str, spec: str, column: str) -> list[float]:
    table = pd.read_csv(REPO / table_path)
    rows = table[table["protector"] == spec]
    if "reference" in rows:
        rows = rows[rows["reference"] == "raw"]
    return rows[column].tolist()


@pytest.mark.parametrize("name", committed_audit_summaries())
def test_committed_audit_summary_quotes_the_tables_it_cites(name: str) -> None:
    """Person AP and PSNR of an audit summary equal the E3/E4 table named in its source column, to the CSV's
    six digits; an AP "not found" is still found in none of the shipped audit protocol's E3 tables
    (``scripts/refresh_audit_utility.py`` rewrites summaries from the committed tables)."""
    from campro_bench.experiments.spec import load_spec

    e3_tables = load_spec("audit")["utility"]["e3"]
    for row in pd.read_csv(REPO / name).to_dict("records"):
        spec = row["protector"]
        if str(row["AP_source"]).endswith(".csv"):
            assert _quoted(row["AP_source"], spec, "AP")[:1] == [pytest.approx(row["person_AP"], rel=1e-5)], spec
        else:
            assert not any(_quoted(t, spec, "AP") for t in e3_tables if (REPO / t).is_file()), (spec, row["AP_source"])
        if str(row["PSNR_source"]).endswith(".csv"):
            assert _quoted(row["PSNR_source"], spec, "psnr_mean")[:1] == [pytest.approx(row["PSNR_dB"], rel=1e-5)], spec


def test_there_are_committed_audit_summaries() -> None:
    assert len(committed_audit_summaries()) >= 10


def test_portable_paths_makes_paths_relative_to_their_roots() -> None:
    manifest = {"root": "/data/sets/lfw", "cache": "/c/faces/embeddings/ab12", "spec": {"_source": "/pkg/protocols/e1.toml"},
                "command": ["/venv/bin/campro-bench", "run", "e1", "--out", "run1", "--data-root", "/data/sets"],
                "note": "weights not found in /m/models (--models-dir)", "url": "https://example.org/a/b",
                "ratio": "w=0.2/omega", "hash": "ab/cd", "protector": "restored:base=/c/e5/p.json"}
    out = portable_paths(manifest, {"/data/sets": "", "/c": "", "/pkg/protocols": "protocols"},
                         {"/c": "", "/pkg/protocols": "protocols"})
    assert out == {"root": "lfw", "cache": "faces/embeddings/ab12", "spec": {"_source": "protocols/e1.toml"},
                   "command": ["campro-bench", "run", "e1", "--out", "run1", "--data-root", "$CAMPRO_BENCH_DATA"],
                   "note": "weights not found in models (--models-dir)", "url": "https://example.org/a/b",
                   "ratio": "w=0.2/omega", "hash": "ab/cd", "protector": "restored:base=e5/p.json"}
    assert has_absolute_path(out) == [] and len(has_absolute_path(manifest)) == 7


def test_inputs_outside_the_named_roots_stay_absolute_so_they_replay() -> None:
    """The replay rule: a dataset folder or protocol given as an absolute path is recorded as that path
    (never shortened to its last component, nor made relative to the data root or the working folder,
    under which a replay would look instead); an output folder is not an input (a replay writes its own)."""
    roots = {"/data/sets": "", "/c": "", "/work": "", "/pkg/protocols": "protocols"}
    inputs = {"/c": "", "/pkg/protocols": "protocols"}
    spec = "identity-folder:folder=/home/u/faces"
    under_data_root = "identity-folder:folder=/data/sets/mine"
    under_cwd = "identity-folder:folder=/work/faces"
    manifest = {"spec": {"datasets": [spec, under_data_root, under_cwd], "_source": "/home/u/p.toml"},
                "command": ["/venv/bin/campro-bench", "run", "e1", "--protocol", "/work/p.toml", "--out", "/tmp/o",
                            "--set", f"datasets=[\"{spec}\"]", "--cache-dir=/c"],
                "data": {"faces": {"dataset": spec}}, "note": "read /home/u/faces/a/1.jpg"}
    out = portable_paths(manifest, roots, inputs)
    assert out["spec"] == manifest["spec"]
    assert out["command"] == ["campro-bench", "run", "e1", "--protocol", "/work/p.toml", "--out", "o",
                              "--set", f"datasets=[\"{spec}\"]", "--cache-dir=$CAMPRO_BENCH_CACHE"]
    assert out["data"]["faces"]["dataset"] == spec
    assert out["note"] == "read 1.jpg"  # free text: not an input, shortened as before
    # without the inputs' roots every root applies to inputs too, and an input outside all stays whole
    assert portable_paths({"d": under_cwd, "e": spec}, roots) == {"d": "identity-folder:folder=faces", "e": spec}


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
    assert has_absolute_path(manifest) == [str(protocol)]  # a protocol outside every root replays by its path
    assert manifest["spec"]["_source"] == str(protocol) and "path_bases" in manifest
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


@pytest.mark.realdata
def test_a_recorded_command_replays_to_the_same_table(data_root: Path, tmp_path: Path) -> None:
    """Run a tiny E1 through the command line on an identity folder given by absolute path (outside
    the data root and the working folder), with a protocol file given by absolute path; then run the
    manifest's recorded command in a shell, from another working folder and with a fresh cache: it
    reads the same files and writes the same table."""
    import os
    import shlex
    import shutil
    import sys

    faces = tmp_path / "elsewhere" / "faces"
    for person in ("Alvaro_Uribe", "Amelie_Mauresmo", "Andre_Agassi"):
        (faces / person).mkdir(parents=True)
        for k in (1, 2):
            shutil.copy(data_root / "lfw" / "images" / person / f"{person}_{k:04d}.jpg", faces / person / f"{k}.jpg")
    protocol = tmp_path / "protocols" / "tiny.toml"
    protocol.parent.mkdir()
    protocol.write_text('datasets = ["lfw"]\nmodels = ["sface"]\nprotectors = ["raw", "invert"]\n'
                        'classifiers = ["nearest"]\ngalleries = ["raw"]\nrepeats = 2\nbatch_size = 8\n')
    program = Path(sys.executable).parent / "campro-bench"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{program.parent}{os.pathsep}{os.environ['PATH']}"}
    first_cwd, second_cwd = tmp_path / "a", tmp_path / "b"
    first_cwd.mkdir()
    second_cwd.mkdir()
    spec = f"identity-folder:folder={faces}"
    subprocess.run([str(program), "run", "e1", "--protocol", str(protocol), "--set", f'datasets=["{spec}"]',
                    "--out", str(tmp_path / "run1"), "--cache-dir", str(tmp_path / "cache1"), "--device", "cpu",
                    "--quiet"], cwd=first_cwd, env=env, check=True, capture_output=True, text=True, timeout=600)
    manifest = json.loads((tmp_path / "run1" / "manifest.json").read_text())
    command = manifest["command"]
    assert command[0] == "campro-bench" and str(protocol) in command and f'datasets=["{spec}"]' in command
    assert manifest["spec"]["datasets"] == [spec] and manifest["spec"]["_source"] == str(protocol)
    assert command[command.index("--cache-dir") + 1] == "$CAMPRO_BENCH_CACHE"
    first = pd.read_csv(tmp_path / "run1" / "e1.csv")
    assert set(first["dataset"]) == {spec} and len(first) == 2
    assert command[command.index("--out") + 1] == "run1"  # an output, not an input: a replay writes its own
    command[command.index("--out") + 1] = str(tmp_path / "run2")
    line = " ".join(a if a.startswith("$") else shlex.quote(a) for a in command)
    subprocess.run(["bash", "-c", line], cwd=second_cwd, env={**env, "CAMPRO_BENCH_CACHE": str(tmp_path / "cache2")},
                   check=True, capture_output=True, text=True, timeout=600)
    assert (tmp_path / "cache2").is_dir() and not (second_cwd / "run2").exists()  # recomputed, written where asked
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "run2" / "e1.csv"), first)


def test_the_tool_run_as_a_module_is_recorded_as_campro_bench() -> None:
    argv = ["/x/checkout/campro_bench/cli/main.py", "audit", "raw", "--out", "/tmp/o"]
    assert portable_command(argv, {}, {"/tmp": ""})[:3] == ["campro-bench", "audit", "raw"]
    assert portable_command(["/x/other/main.py", "a"], {})[0] == "main.py"  # another program keeps its name


def test_training_manifests_name_the_tool_by_the_same_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    from campro_bench.training.report import cli_command
    monkeypatch.setattr(sys, "argv", ["/x/checkout/campro_bench/cli/main.py", "train", "isp"])
    assert cli_command() == ["campro-bench", "train", "isp"]
    monkeypatch.setattr(sys, "argv", ["/venv/bin/campro-bench", "train", "isp"])
    assert cli_command() == ["campro-bench", "train", "isp"]
    monkeypatch.setattr(sys, "argv", ["/x/other/main.py", "train"])  # not the tool: recorded as it is
    assert cli_command() is None
