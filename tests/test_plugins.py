"""A third-party protector, installed as a separate package, is usable by name from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PLUGIN = Path(__file__).parent / "plugins" / "campro_bench_example_plugin"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Install the example plugin into a private target folder and expose it on PYTHONPATH."""
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(PLUGIN)],
        check=True,
        capture_output=True,
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "campro_bench.cli.main", *args], env=env, capture_output=True, text=True
    )


def test_plugin_is_listed_with_its_origin(plugin_env: dict[str, str]) -> None:
    result = cli(plugin_env, "list", "protectors")
    assert result.returncode == 0, result.stderr
    assert "posterize" in result.stdout
    assert "campro-bench-example-plugin" in result.stdout.replace("\n", "").replace("│", "").replace(" ", "") or "plugin" in result.stdout


def test_plugin_protector_runs_from_the_cli(plugin_env: dict[str, str], tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(src / "a.png")
    out = tmp_path / "out"
    result = cli(plugin_env, "protect", "posterize:levels=2", str(src), str(out))
    assert result.returncode == 0, result.stderr
    values = np.unique(np.asarray(Image.open(out / "a.png")))
    assert set(values.tolist()) <= {0, 255}


def test_without_the_plugin_the_name_is_unknown(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    result = cli(env, "protect", "posterize", str(tmp_path), str(tmp_path / "o"))
    assert result.returncode == 2
    assert "unknown protector 'posterize'" in result.stderr


def test_plugin_capture_condition_is_listed_and_applied_before_the_protector(plugin_env: dict[str, str],
                                                                             tmp_path: Path) -> None:
    listed = cli(plugin_env, "list", "conditions")
    assert listed.returncode == 0 and "vignette" in listed.stdout, listed.stderr
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((21, 21, 3), 200, np.uint8)).save(src / "a.png")
    result = cli(plugin_env, "protect", "invert@vignette:strength=1", str(src), str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    out = np.asarray(Image.open(tmp_path / "out" / "a.png")).astype(int)
    assert out[10, 10, 0] == 255 - 200 and out[0, 0, 0] == 255  # darkened corner (0), then inverted
