"""The pinned CI protocol (protocols/e1_ci.toml) on real LFW, regressed against its baseline.

The baseline ``baselines/e1_ci.csv`` is the ``e1.csv`` of a reviewed run of
``campro-bench run e1 --protocol e1_ci``; any cell that moves by more than 0.01 fails the test and
is named in the failure message. Embeddings are cached in CAMPRO_BENCH_CACHE, so only the first run
on a machine pays for face detection and model forward passes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from campro_bench.experiments.runner import run_experiment
from campro_bench.regress import regress_files

BASELINE = Path(__file__).resolve().parents[1] / "baselines" / "e1_ci.csv"


@pytest.mark.realdata
@pytest.mark.slow
def test_e1_ci_matches_baseline(data_root: Path, cache_dir: Path, tmp_path: Path) -> None:
    if not BASELINE.is_file():
        pytest.skip(
            "baselines/e1_ci.csv does not exist yet: run `campro-bench run e1 --protocol e1_ci` and commit "
            "its e1.csv as baselines/e1_ci.csv"
        )
    out, result = run_experiment(
        "e1", protocol="e1_ci", out=tmp_path / "e1_ci", data_root=str(data_root), cache_dir=str(cache_dir),
        device="cpu", quiet=True,
    )
    long = result.tables["e1"]
    assert (long["identities"] == 100).all() and (long["repeats"] == 3).all()
    campro = long[(long.image_type == "campro-isp:preset=casia-adv") & (long.gallery == "raw")]
    assert len(campro) == 8 and (campro.accuracy_mean < 0.05).all()  # the shipped preset blinds every model
    report = regress_files(out / "e1.csv", BASELINE, tol=0.01)
    assert report.ok, "\n".join(report.lines())
