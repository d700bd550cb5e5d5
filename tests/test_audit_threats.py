"""The audit's threat-model axis, its per-condition summary and the leaked-pairs curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from campro_bench.errors import CamproError, UnknownNameError
from campro_bench.experiments import audit_pairs
from campro_bench.experiments.audit import AuditConfig
from campro_bench.experiments.audit_threats import ThreatScorer, AuditThreatConfig, threat_verdict
from campro_bench.experiments.runner import run_experiment
from campro_bench.html_report import build_report
from campro_bench.privacy.identification import FeatureSet
from campro_bench.privacy.splits import sample_splits
from test_audit_select import SMALL, fake_audit  # noqa: F401  (tests/ is on sys.path; fixture)


def clustered(identities: int, per: int, spread: float, seed: int) -> tuple[FeatureSet, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(identities, 16))
    labels = np.repeat(np.arange(identities), per)
    x = centres[labels] + spread * rng.normal(size=(len(labels), 16))
    return FeatureSet(x.astype(np.float32), np.ones(len(labels), bool)), labels


def scorer(labels: np.ndarray, threat_models: list[str] | None = None) -> ThreatScorer:
    splits = sample_splits(labels, repeats=5, seed=0)
    return ThreatScorer(threat_models or ["closed-set", "rank-k", "verification", "open-set"], AuditThreatConfig(),
                        ["nearest"], {}, splits, seed=0, confidence=0.95)


def test_separable_faces_are_found_by_every_threat_model_and_a_raw_equal_attack_scores_as_raw() -> None:
    raw, labels = clustered(60, 3, 0.05, seed=0)
    s = scorer(labels)
    s.score("p", "reference", "raw", "m", "raw", raw, raw, raw)
    s.score("p", "black-box", "protected probes", "m", "raw", raw, FeatureSet(raw.embeddings.copy(), raw.detected), raw)
    table = pd.DataFrame(s.rows)
    assert set(table["metric"]) == {"rank-5", "rank-10", "TAR@FAR=1e-2", "TAR@FAR=1e-3", "DIR@FPIR=1e-2",
                                    "DIR@FPIR=1e-1"}
    ref, attacked = (table[table["rung"] == r].set_index("metric")["value_mean"] for r in ("reference", "black-box"))
    assert ref.equals(attacked)
    # 60 x 59 x 5 impostor pairs measure 1e-3; 30 x 2 x 5 = 300 non-mated searches cannot measure FPIR 1e-2
    assert ref["rank-5"] == 1.0 and ref["TAR@FAR=1e-2"] == 1.0 and ref["TAR@FAR=1e-3"] == 1.0
    assert np.isnan(ref["DIR@FPIR=1e-2"]) and "not measured" in table.set_index("metric").loc["DIR@FPIR=1e-2", "note"].iloc[0]
    assert ref["DIR@FPIR=1e-1"] == 1.0
    calibration = s.manifest()["m"]
    assert calibration["impostor_scores"] == 60 * 59 * 5 and calibration["FPIR=1e-2"].startswith("not measured")


def test_random_probes_are_judged_at_the_raw_threshold() -> None:
    raw, labels = clustered(60, 3, 0.05, seed=0)
    noise = FeatureSet(np.random.default_rng(5).normal(size=raw.embeddings.shape).astype(np.float32), raw.detected)
    s = scorer(labels, ["closed-set", "verification"])
    s.score("p", "black-box", "noise", "m", "raw", raw, noise, raw)
    (tar,) = [r["value_mean"] for r in s.rows if r["metric"] == "TAR@FAR=1e-2"]
    assert tar < 0.1  # unrelated probes are accepted about as often as impostors (FAR 1e-2), not as genuine pairs
    assert {r["threat_model"] for r in s.rows} == {"verification"}


def test_the_threat_verdict_is_chosen_on_select_and_bounded_above_by_the_eval_maximum() -> None:
    def rows(values: dict[str, float]) -> pd.DataFrame:
        return pd.DataFrame([{"protector": "p", "rung": rung, "attack": "a", "model": "m", "classifier": "cosine",
                              "gallery": "raw", "threat_model": "verification", "metric": "TAR@FAR=1e-2",
                              "value_mean": v, "ci_low": v - 0.05, "ci_high": v + 0.05, "note": ""}
                             for rung, v in values.items()])

    ev = rows({"reference": 0.9, "black-box": 0.2, "cheap": 0.6, "restoration": 0.3})
    sel = rows({"reference": 0.9, "black-box": 0.2, "cheap": 0.1, "restoration": 0.5})
    v = threat_verdict(ev, sel).iloc[0]
    assert (v["raw"], v["upper_bound"], v["upper_rung"]) == (0.9, 0.6, "cheap")
    assert (v["verdict"], v["chosen_rung"], v["select_value"]) == (0.3, "restoration", 0.5)
    assert "verdict" not in threat_verdict(ev).columns  # no SELECT: the upper bound only


def test_unknown_threat_models_and_a_missing_headline_fail_in_one_line() -> None:
    with pytest.raises(UnknownNameError, match="known: closed-set"):
        AuditConfig.from_spec({"protectors": ["invert"], "threat_models": ["closed-set", "mind-reading"]})
    with pytest.raises(CamproError, match="must include closed-set"):
        AuditConfig.from_spec({"protectors": ["invert"], "threat_models": ["rank-k"]})


def test_the_default_audit_has_an_unbiased_verdict_and_refuses_too_few_identities(fake_audit, tmp_path: Path) -> None:
    assert AuditConfig.from_spec({"protectors": ["invert"]}).select_identities > 0
    overrides = [o for o in SMALL if not o.startswith("select_identities")] + ["select_identities=15"]
    with pytest.raises(CamproError) as info:  # 30 identities: 10 EVAL + 6 TRAIN leave 14
        run_experiment("audit", overrides=overrides, out=tmp_path / "a", cache_dir=str(tmp_path / "c"), device="cpu",
                       quiet=True)
    assert "needs 15 SELECT identities" in str(info.value) and "only 14 are left" in str(info.value)
    assert len(str(info.value).splitlines()) == 1 and fake_audit["calls"] == 0


def test_conditions_and_threat_models_reach_the_summary_the_reports_and_the_html_page(fake_audit,
                                                                                     tmp_path: Path) -> None:
    out, result = run_experiment("audit", overrides=[*SMALL, 'conditions=["colour", "grey"]',
                                                     'rungs=["black-box", "gray-box"]'],
                                 out=tmp_path / "a", cache_dir=str(tmp_path / "c"), device="cpu", quiet=True)
    verdicts = result.tables["threat_verdict"]
    assert {"top-1", "rank-5", "TAR@FAR=1e-2", "DIR@FPIR=1e-1"} <= set(verdicts["metric"])
    worst = verdicts[verdicts["condition"] == "worst over conditions"].set_index("metric")
    per_condition = verdicts[verdicts["condition"] != "worst over conditions"]
    assert set(per_condition["condition"]) == {"colour", "grey"}
    for metric, row in worst.iterrows():
        assert row["upper_bound"] == per_condition[per_condition["metric"] == metric]["upper_bound"].max()
    top1 = verdicts[(verdicts["metric"] == "top-1") & (verdicts["condition"] == "colour")].iloc[0]
    summary = result.tables["summary"].set_index("condition").loc["colour"]
    assert (top1["verdict"], top1["upper_bound"]) == (summary["verdict_top1"], summary["worst_case_top1"])
    assert "Threat models beyond closed-set top-1" in (out / "report-test-copy.md").read_text()
    page = build_report(out)
    assert "worst over conditions" in page and "threat_verdict" in page and "TAR@FAR=1e-2" in page
    assert "worst over conditions" in (out / "summary.md").read_text()


# leaked pairs -------------------------------------------------------------------------------------------
def test_pair_counts_must_increase_and_pairs_come_from_train_in_one_seeded_order() -> None:
    for counts in ([8, 8], [0, 4], [16, 8]):
        with pytest.raises(CamproError, match="pairs.counts must be strictly increasing") as info:
            AuditConfig.from_spec({"protectors": ["invert"], "pairs": {"counts": counts}})
        assert len(str(info.value).splitlines()) == 1
    train = [f"t{i:02d}/0.jpg" for i in range(40)]
    first, again = audit_pairs.pair_ids(train, 0), audit_pairs.pair_ids(train, 0)
    assert first == again and sorted(first) == train and first != train
    assert first != audit_pairs.pair_ids(train, 1)
    cfg = AuditConfig(protectors=["invert"], pairs=audit_pairs_section([4, 16]))
    split = type("S", (), {"train_ids": train})()
    small, large = audit_pairs.leaked(cfg, split, 4), audit_pairs.leaked(cfg, split, 16)
    assert large[:4] == small and set(large) <= set(train)  # nested: more pairs hold every smaller set
    with pytest.raises(CamproError, match="TRAIN holds 40 images"):
        audit_pairs.leaked(cfg, split, 41)


def audit_pairs_section(counts: list[int]) -> Any:
    from campro_bench.experiments.audit import PairsSection

    return PairsSection(counts=counts)


@pytest.mark.slow
def test_a_decoder_from_more_leaked_pairs_restores_held_out_scenes_better() -> None:
    from campro_bench.protectors import build_protector
    from campro_bench.training.unet import TrainingImages, UNetTrainConfig, train_unet

    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.random((72, 3, 4, 4))).float()
    images = torch.nn.functional.interpolate(coarse, size=(16, 16), mode="bilinear", align_corners=False)
    uint8 = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    train, held_out = list(uint8[:64]), images[64:]
    camera = build_protector("campro-isp:preset=casia-adv")  # a folded tone curve: more pairs, fewer wrong branches
    errors = []
    for n in (2, 64):  # the same 64 AdamW steps from 2 and from 64 pairs
        config = UNetTrainConfig.from_dict({"epochs": max(1, 64 // max(1, n // 4)), "batch_size": min(4, n),
                                            "crop": 16, "base_channels": 4, "depth": 2, "lr": 3e-3, "seed": 0,
                                            "face_penalty": False, "hflip": False, "quantize": True,
                                            "face_crop_fraction": 0.0})
        result = train_unet(TrainingImages(train[:n], None, info={}), camera, config, trainer="restoration",
                            device="cpu")
        with torch.no_grad():
            errors.append(float((result.model(camera(held_out)).clamp(0, 1) - held_out).abs().mean()))
    assert errors[1] < 0.9 * errors[0], errors


def test_a_decoder_that_did_not_learn_is_failed_in_the_pairs_curve_not_scored(fake_audit, monkeypatch,
                                                                             tmp_path: Path) -> None:
    from campro_bench.experiments import audit

    def failed_decoders(cfg: Any, specs: list[str], split: Any, select: Any, ctx: Any) -> dict[Any, Any]:
        assert all(n <= len(split.train_ids) for n in cfg.pairs.counts)
        return {(s, "pairs"): [(float(n), {"weights": "never-written.pt", "info": {"history": [],
                                                                                "budget": {"steps": 0}}})
                               for n in cfg.pairs.counts] for s in specs}

    monkeypatch.setattr(audit, "trainings", failed_decoders)
    out, result = run_experiment("audit", overrides=[*SMALL, 'rungs=["black-box"]', "pairs.counts=[2, 8]"],
                                 out=tmp_path / "a", cache_dir=str(tmp_path / "c"), device="cpu", quiet=True)
    pairs = result.tables["pairs"]
    assert list(pairs["pairs"]) == [2, 8] and set(pairs["status"]) == {"failed"} and pairs["accuracy_mean"].isna().all()
    assert set(pairs["method"]) == {audit_pairs.DECODER}  # no mask estimation: not a lensless camera
    assert "failed: not scored" in (out / "report-test-copy.md").read_text() and (out / "pairs-test-copy.png").is_file()
    assert "pairs" not in set(result.tables["audit"]["rung"])  # the curve takes no part in the verdict
    manifest = (out / "manifest.json").read_text()
    assert '"pairs_order"' in manifest and '"open_set_watch_lists"' in manifest
