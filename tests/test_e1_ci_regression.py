"""The pinned CI protocol (protocols/e1_ci.toml) on real LFW, regressed against its baseline.

The baseline ``baselines/e1_ci.csv`` is the ``e1.csv`` of a reviewed run of
``campro-bench run e1 --protocol e1_ci``. It is compared with the probe-flip rule of
:mod:`campro_bench.regress` (what ``campro-bench regress`` does by default for identification
tables): each accuracy may move by one flipped probe decision per repeat, the amount by which
floating-point differences between CPUs can move it, and derived columns accordingly; any cell
beyond that fails the test and is named in the failure message (``tests/test_regress_rule.py``
shows that a swapped protector, model or classifier does). Embeddings are cached in CAMPRO_BENCH_CACHE, so only the first run
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
    report = regress_files(out / "e1.csv", BASELINE)
    assert report.ok, "\n".join(report.lines())
