"""scripts/threat_tables.py only selects and averages the committed run's columns: its summary rows
are the model means and maxima of ``e1_threats_wide.csv`` and ``e1_leakage.csv``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_K1, RUN_K3 = ROOT / "baselines/threats_lfw/k1", ROOT / "baselines/threats_lfw/k3"


def _script():
    spec = importlib.util.spec_from_file_location("threat_tables", ROOT / "scripts/threat_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_rows_are_the_model_means_and_maxima_of_the_committed_run() -> None:
    table = _script().summary_table(RUN_K1, RUN_K3).set_index("image type")
    wide = pd.read_csv(RUN_K1 / "e1_threats_wide.csv")
    raw_gallery = wide[wide.gallery == "raw"]
    assert list(table.index) == list(dict.fromkeys(raw_gallery.image_type))
    k3 = pd.read_csv(RUN_K3 / "e1_threats_wide.csv")
    leak = pd.read_csv(RUN_K1 / "e1_leakage.csv")
    for spec, row in table.iterrows():
        models = raw_gallery[raw_gallery.image_type == spec]
        assert row["top-1"] == pytest.approx(models["top-1 nearest"].mean())
        assert row["worst model top-1"] == pytest.approx(models["top-1 nearest"].max())
        assert row["worst model top-1"] >= row["top-1"]
        assert row["TAR@FAR=1e-3"] == pytest.approx(models["TAR@FAR=1e-3"].mean())
        k_models = k3[(k3.image_type == spec) & (k3.gallery == "raw")]
        assert row["k=3 top-1"] == pytest.approx(k_models["top-1 nearest"].mean())
        if spec != "raw":
            assert row["leak cos"] == pytest.approx(100 * leak[leak.image_type == spec]["cosine_mean"].mean())
    # the unprotected row is near-perfect and every protector is below it
    assert table.loc["raw", "top-1"] > 90
    assert (table.drop(index="raw")["top-1"] < table.loc["raw", "top-1"]).all()
