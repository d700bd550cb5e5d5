"""Fig. 11 trade-off sweep: the Pareto front and a real end-to-end run at tiny scale."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from campro_bench.errors import CamproError, UnknownNameError
from campro_bench.experiments.tradeoff import (INCOMPARABLE, PAPER_POINTS, pareto_front, sweep_draws,
                                              worst_case_points)


def test_pareto_front_on_a_hand_made_set() -> None:
    # (accuracy, AP): lower accuracy and higher AP are better
    points = [
        (0.80, 0.60),  # A: most useful -> front
        (0.10, 0.45),  # B: front
        (0.20, 0.40),  # C: dominated by B
        (0.01, 0.30),  # D: most private -> front
        (0.10, 0.40),  # E: dominated by B (same accuracy, lower AP)
        (0.50, 0.60),  # F: dominates A? same AP, lower accuracy -> A is dominated, F on the front
        (0.01, 0.30),  # G: duplicate of D: neither dominates the other -> both on the front
        (np.nan, 0.9),  # H: incomplete -> never on the front
    ]
    acc, ap = zip(*points)
    assert pareto_front(acc, ap).tolist() == [False, True, False, True, False, True, True, False]
    assert pareto_front([0.5], [0.5]).tolist() == [True]
    assert pareto_front([], []).tolist() == []


def test_the_worst_case_is_the_highest_attack_over_galleries_and_the_audit(tmp_path: Path) -> None:
    table = pd.DataFrame({"spec": ["raw", "invert", "lowres:factor=4"], "accuracy_best_model": [0.9, 0.02, 0.3],
                          "reenrolled_best_model": [0.9, 0.19, np.nan]})
    audit = tmp_path / "summary.csv"
    pd.DataFrame({"protector": ["invert", "lowres:factor=4"], "worst_case_top1": [0.895, 0.1],
                  "rung": ["cheap", "black-box"], "attack": ["invert-inverse", "protected probes"],
                  "model": ["sface", "sface"]}).to_csv(audit, index=False)
    out = worst_case_points(table, [str(tmp_path / "missing.csv"), str(audit)])
    assert out["worst_case"].tolist() == [0.9, 0.895, 0.3]
    assert out["worst_case_source"].tolist() == [
        "this run, raw gallery", f"audit {audit}: cheap / invert-inverse / sface", "this run, raw gallery"]
    assert out["audit_worst_case"].fillna(-1).tolist() == [-1, 0.895, 0.1]
    assert out["audit_attack"].iloc[0] == "not audited"
    assert worst_case_points(table, [])["worst_case"].tolist() == [0.9, 0.19, 0.3]


def _e5_folder(folder: Path, spec: str, rows: list[tuple[str, str, float]], draws: str = "") -> str:
    folder.mkdir()
    seeds = {"splits/celeba-subset": {"splits_sha256": draws}} if draws else {}
    (folder / "manifest.json").write_text(json.dumps({"models": {"isp": {"spec": spec}}, "seeds": seeds}))
    pd.DataFrame([{"model": "sface", "attack": a, "probe": probe, "accuracy_mean": v} for a, probe, v in rows]).to_csv(
        folder / "e5.csv", index=False)
    return str(folder)


def test_an_e5_run_on_the_protector_joins_its_worst_case(tmp_path: Path) -> None:
    table = pd.DataFrame({"spec": ["campro-isp:preset=a", "campro-isp:preset=b"], "accuracy_best_model": [0.02, 0.05],
                          "reenrolled_best_model": [0.03, 0.06]})
    other = _e5_folder(tmp_path / "other", "campro-isp:preset=c", [("Restoration", "restored", 0.99)])
    e5 = _e5_folder(tmp_path / "e5", "campro-isp:preset=a", [
        ("Raw", "raw", 0.93),  # raw probes are context, not an attack
        ("Restoration", "restored", 0.45), ("Captured", "captured", 0.04)])
    out = worst_case_points(table, [], [str(tmp_path / "missing"), other, e5])
    assert out["worst_case"].tolist() == [0.45, 0.06]
    assert out["worst_case_source"].tolist() == [f"E5 {e5}: Restoration / sface", "this run, re-enrolled gallery"]
    assert out["whitebox_worst_case"].fillna(-1).tolist() == [0.45, -1]
    assert out["whitebox_attack"].iloc[1] == "no E5 run"


def test_an_e5_run_with_other_draws_is_named_but_not_counted(tmp_path: Path) -> None:
    table = pd.DataFrame({"spec": ["campro-isp:preset=a", "campro-isp:preset=b", "campro-isp:preset=c"],
                          "accuracy_best_model": [0.02, 0.05, 0.01], "reenrolled_best_model": [0.03, 0.06, 0.02]})
    same = _e5_folder(tmp_path / "same", "campro-isp:preset=a", [("Restoration", "restored", 0.45)], draws="d1")
    other = _e5_folder(tmp_path / "other", "campro-isp:preset=b", [("Restoration", "restored", 0.7)], draws="d2")
    unrecorded = _e5_folder(tmp_path / "old", "campro-isp:preset=c", [("Restoration", "restored", 0.6)])
    sweep = sweep_draws({"splits/celeba-subset": {"splits_sha256": "d1", "base_seed": 0}, "splits": [0, 1]})
    assert sweep == {"splits/celeba-subset": "d1"}
    out = worst_case_points(table, [], [same, other, unrecorded], sweep)
    assert out["worst_case"].tolist() == [0.45, 0.06, 0.02]  # only the run with the sweep's draws counts
    assert out["whitebox_worst_case"].fillna(-1).tolist() == [0.45, -1, -1]
    assert out["whitebox_attack"].tolist()[1:] == [f"E5 {other}: {INCOMPARABLE}", f"E5 {unrecorded}: {INCOMPARABLE}"]
    unchecked = worst_case_points(table, [], [same, other, unrecorded])  # no draws given: nothing to check against
    assert unchecked["worst_case"].tolist() == [0.45, 0.7, 0.6]
    later = _e5_folder(tmp_path / "later", "campro-isp:preset=b", [("Restoration", "restored", 0.3)], draws="d1")
    out = worst_case_points(table, [], [other, later], sweep)  # a comparable run after an incomparable one counts
    assert out["whitebox_worst_case"].fillna(-1).tolist() == [-1, 0.3, -1]
    assert out["whitebox_attack"].iloc[1] == f"E5 {later}: Restoration / sface"
    stronger = _e5_folder(tmp_path / "stronger", "campro-isp:preset=b", [("Restoration", "restored", 0.5)], draws="d1")
    for order in ([later, stronger], [stronger, later], [stronger, other, later]):  # the strongest, in any order
        out = worst_case_points(table, [], order, sweep)
        assert out["whitebox_worst_case"].iloc[1] == 0.5 and out["whitebox_attack"].iloc[1] == f"E5 {stronger}: Restoration / sface"


def test_a_folder_that_is_not_an_e5_run_is_one_clear_error(tmp_path: Path) -> None:
    table = pd.DataFrame({"spec": ["raw"], "accuracy_best_model": [0.9], "reenrolled_best_model": [np.nan]})
    folder = tmp_path / "e1"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"models": {}}))
    (folder / "e5.csv").write_text("model,accuracy_mean\nsface,0.5\n")
    with pytest.raises(CamproError, match="not the manifest of an E5 run"):
        worst_case_points(table, [], [str(folder)])
    (folder / "manifest.json").write_text(json.dumps({"models": {"isp": {"spec": "raw"}}}))
    with pytest.raises(CamproError, match="not an E5 table"):
        worst_case_points(table, [], [str(folder)])


def test_paper_points_are_only_the_text_values() -> None:
    assert [(p["accuracy_pct"], p["AP"]) for p in PAPER_POINTS] == [(84.3, 0.578), (0.3, 0.475), (11.8, 0.540)]
    assert all(p["source"] for p in PAPER_POINTS)


@pytest.mark.realdata
def test_tradeoff_runs_end_to_end_at_tiny_scale(tmp_path: Path, data_root: Path, cache_dir: Path) -> None:
    """Everything real, tiny: sface on 5 celeba-subset identities, pretrained SSDLite on 4 images."""
    from campro_bench.experiments.runner import run_experiment

    methods = ('methods=[{method="Raw", label="raw", spec="raw"}, '
               '{method="Low-Resolution", label="x8", spec="lowres:factor=8"}, '
               '{method="Low-Resolution", label="x16", spec="lowres:factor=16"}, '
               '{method="Defocused", label="9/3", spec="defocus:kernel=9,sigma=3"}, '
               '{method="CamPro", label="missing", spec="campro-isp:preset=no-such-preset", optional=true}]')
    overrides = [methods, 'privacy.models=["sface"]', "privacy.max_identities=5", "privacy.repeats=3",
                 "utility.finetune_epochs=0", "utility.max_images=4"]
    out, result = run_experiment("tradeoff", overrides=overrides, out=tmp_path / "t", cache_dir=str(cache_dir),
                                 device="cpu", quiet=True, compare="paper")
    table = result.tables["tradeoff"]
    assert list(table["label"]) == ["raw", "x8", "x16", "9/3"]  # the missing optional preset is skipped
    assert ((table["accuracy"] >= 0) & (table["accuracy"] <= 1)).all()
    assert ((table["AP"] >= 0) & (table["AP"] <= 1)).all()
    assert np.allclose(table["accuracy"], table["accuracy/sface"])  # one model: the mean is that model
    raw = table[table["label"] == "raw"].iloc[0]
    x16 = table[table["label"] == "x16"].iloc[0]
    assert raw["accuracy"] > x16["accuracy"]  # x16 low resolution hides identities from sface
    assert raw["AP"] == table["AP"].max() and raw["pareto"]  # the most useful point is on the front
    assert table["pareto"].tolist() == pareto_front(table["accuracy"], table["AP"]).tolist()
    assert np.allclose(table["accuracy_best_model"], table["accuracy/sface"])
    reenrolled = table.set_index("label")["reenrolled"]
    assert np.isnan(reenrolled["raw"])  # raw probes have no separate re-enrolled gallery
    assert ((reenrolled.drop("raw") >= 0) & (reenrolled.drop("raw") <= 1)).all()
    assert (table["worst_case"] >= table[["accuracy_best_model", "reenrolled_best_model"]].max(axis=1)).all()
    audited = table["audit_worst_case"].notna()  # the shipped audits (lowres x16 among them, when run from the repo)
    assert not table.loc[~audited, "pareto_worst_case"].any()  # a lower bound only: never on the worst-case front
    assert table["pareto_worst_case"].tolist() == pareto_front(table["worst_case"].where(audited), table["AP"]).tolist()
    assert (out / "tradeoff.png").is_file() and (out / "tradeoff.csv").is_file()
    assert "paper_points" in result.tables
    manifest = json.loads((out / "manifest.json").read_text())
    assert "campro-isp:preset=no-such-preset" in manifest["notes"]["skipped"]
    assert manifest["notes"]["utility"]["eval_images"] == 4


def test_tradeoff_spec_errors(tmp_path: Path) -> None:
    from campro_bench.experiments.runner import run_experiment

    with pytest.raises(CamproError, match=r"tradeoff protocol key 'methods\[0\]\.method': field required"):
        run_experiment("tradeoff", overrides=['methods=[{label="x"}]'], out=tmp_path / "a", quiet=True)
    with pytest.raises(UnknownNameError, match="unknown ISP preset"):
        run_experiment("tradeoff", overrides=['methods=[{method="CamPro", spec="campro-isp:preset=nope"}]'],
                       out=tmp_path / "b", quiet=True)
    with pytest.raises(CamproError, match="compare"):
        run_experiment("tradeoff", out=tmp_path / "c", quiet=True, compare="arxiv")


def test_shipped_protocol_lists_the_papers_levels() -> None:
    from campro_bench.experiments.spec import load_spec

    spec = load_spec("tradeoff")
    specs = [m["spec"] for m in spec["methods"]]
    assert [s for s in specs if s.startswith("lowres")] == [f"lowres:factor={f}" for f in (4, 8, 16)]
    assert [s for s in specs if s.startswith("defocus")] == [
        "defocus:kernel=9,sigma=3", "defocus:kernel=13,sigma=5", "defocus:kernel=15,sigma=7", "defocus:kernel=25,sigma=7"]
    assert all(m.get("optional") for m in spec["methods"] if m["method"] == "CamPro")
    assert spec["privacy"]["gallery"] == "raw" and spec["utility"]["finetune_epochs"] == 1
    assert spec["utility"]["dataset"] == spec["utility"]["train_dataset"] == "coco-person-val"  # E3's protocol


def _earlier_e3(folder: Path, eval_sha: str, ap: float) -> None:
    """An E3 result folder as `campro-bench run e3` writes it (pretrained detector, the shipped keys)."""
    folder.mkdir(parents=True)
    spec = {"detector": "ssdlite-mobilenetv2-coco", "seed": 0, "bootstrap": 1000, "batch_size": 8, "lr": 0.001,
            "momentum": 0.9, "weight_decay": 4e-5, "hflip": True, "finetune_epochs": 0}
    (folder / "manifest.json").write_text(json.dumps({"experiment": "e3", "spec": spec,
                                                      "data": {"eval": {"sha256": eval_sha}}}))
    pd.DataFrame([
        {"Method": "Raw", "protector": "raw", "source": "ours", "AP": ap, "AP_lo": ap - 0.1, "AP_hi": ap + 0.1,
         "AP@0.5": 0.5, "AP@0.75": 0.3, "Precision": 0.7, "Recall": 0.6, "F1": 0.65},
        {"Method": "Raw Images", "protector": None, "source": "paper", "AP": 0.578},
    ]).to_csv(folder / "table3.csv", index=False)


@pytest.mark.realdata
def test_utility_points_are_read_from_an_earlier_e3_run_on_the_same_test_images(tmp_path: Path,
                                                                                data_root: Path) -> None:
    from campro_bench.context import RunContext
    from campro_bench.datasets.coco import load_person_dataset
    from campro_bench.experiments.tradeoff import TradeoffConfig, utility_points
    from campro_bench.manifest import Manifest

    test = load_person_dataset("coco-person-val", data_root, "val")
    _earlier_e3(tmp_path / "e3", test.subset(3, 0).fingerprint()["sha256"], 0.4)
    methods = [{"method": "Raw", "label": "raw", "spec": "raw"}, {"method": "Inverted", "label": "inv", "spec": "invert"}]

    def points(max_images: int) -> tuple[pd.DataFrame, dict]:
        cfg = TradeoffConfig.from_spec({
            "methods": [{"method": m["method"], "spec": m["spec"]} for m in methods],
            "privacy": {"datasets": ["celeba-subset"], "models": ["sface"]},
            "utility": {"dataset": "coco-person-val", "train_dataset": "coco-person-val", "finetune_epochs": 0,
                        "max_images": max_images},
            "utility_from": [str(tmp_path / "e3")], "measure_missing": False})
        ctx = RunContext(manifest=Manifest("tradeoff", {}), cache_dir=tmp_path / "cache", quiet=True)
        return utility_points(methods, cfg, ctx), ctx.manifest.notes["utility"]

    table, notes = points(3)
    assert table.loc["raw", ["AP", "AP_lo", "AP_hi"]].tolist() == pytest.approx([0.4, 0.3, 0.5])
    assert table.loc["raw", "utility_measured_in"] == str(tmp_path / "e3")
    assert np.isnan(table.loc["invert", "AP"]) and table.loc["invert", "utility_measured_in"] == "not measured"
    assert notes["not_measured"] == ["invert"] and not (tmp_path / "cache" / "detectors").exists()
    # the same run does not stand for other test images: passed over, with the reason
    table, notes = points(2)
    assert table["AP"].isna().all()
    assert "other test images" in notes["utility_from_skipped"][str(tmp_path / "e3")]


def test_privacy_columns_are_read_from_an_earlier_sweep_with_the_same_privacy_keys(tmp_path: Path) -> None:
    from campro_bench.context import RunContext
    from campro_bench.experiments.spec import apply_overrides, load_spec
    from campro_bench.experiments.tradeoff import SPLITS_SEED_PREFIX, TradeoffConfig, earlier_privacy
    from campro_bench.manifest import Manifest

    committed = pd.read_csv(Path(__file__).resolve().parents[1] / "baselines/tradeoff/tradeoff.csv")
    methods = [{"method": "Raw", "label": "raw", "spec": "raw"}, {"method": "L", "label": "x16", "spec": "lowres:factor=16"}]

    def read(overrides: list[str]) -> tuple[pd.DataFrame, Manifest]:
        cfg = TradeoffConfig.from_spec(apply_overrides(load_spec("tradeoff"), ["privacy_from=baselines/tradeoff",
                                                                                *overrides]))
        ctx = RunContext(manifest=Manifest("tradeoff", {}), cache_dir=tmp_path, quiet=True)
        return earlier_privacy(methods, cfg, ctx), ctx.manifest

    table, manifest = read([])
    expected = committed.set_index("spec").loc[["raw", "lowres:factor=16"]]
    assert table["accuracy"].tolist() == expected["accuracy"].tolist()
    assert table["reenrolled_best_model"].tolist()[1] == expected["reenrolled_best_model"].tolist()[1]
    assert any(k.startswith(SPLITS_SEED_PREFIX) for k in manifest.seeds)  # E5 runs are checked against these draws
    with pytest.raises(CamproError, match="its privacy is"):
        read(["privacy.max_identities=50"])  # other identities: its accuracies do not stand for this sweep's
    with pytest.raises(CamproError, match="not a tradeoff run folder"):
        read(["privacy_from=baselines/nothing-here"])
