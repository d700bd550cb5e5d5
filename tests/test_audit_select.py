"""The audit's unbiased verdict: SELECT identities (neither EVAL nor TRAIN) choose the attack, EVAL
scores it once; disjointness is checked before any training."""

from __future__ import annotations

import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from campro_bench.experiments import audit, audit_select
from campro_bench.experiments.audit import AuditConfig, IdentityLeakError, split_identities
from campro_bench.experiments.audit_select import check_disjoint_sets, select_split, unbiased_verdict
from campro_bench.experiments.runner import run_experiment
from campro_bench.privacy import evaluate
from campro_bench.protectors import Protector
from campro_bench.registries import PROTECTORS

NAMES = [f"id{i:02d}" for i in range(30)]
INDEX = [(f"{n}/{k}.jpg", n) for n in NAMES for k in range(3)]


def test_select_is_disjoint_from_eval_and_train_and_a_leak_is_refused() -> None:
    cfg = AuditConfig(protectors=["invert"], eval_identities=4, train_identities=5, max_images_per_identity=2)
    split = split_identities(cfg, INDEX)
    sel = select_split(INDEX, split.eval_names + split.train_names, 6, 2, 2, repeats=3, seed=0)
    assert sel.names == NAMES[9:15] and len(sel.ids) == 12 and sel.splits.n_identities == 6
    check_disjoint_sets(INDEX, {"EVAL": split.eval_ids, "TRAIN": split.train_ids, "SELECT": sel.ids})
    with pytest.raises(IdentityLeakError, match="EVAL and SELECT share 1 identit"):
        check_disjoint_sets(INDEX, {"EVAL": split.eval_ids, "TRAIN": split.train_ids,
                                    "SELECT": sel.ids + [split.eval_ids[0]]})
    with pytest.raises(IdentityLeakError, match="TRAIN and SELECT share"):
        check_disjoint_sets(INDEX, {"EVAL": split.eval_ids, "TRAIN": split.train_ids, "SELECT": [split.train_ids[-1]]})


def rows(protector: str, values: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame([{"protector": protector, "rung": rung, "attack": "a", "model": "m", "classifier": "nearest",
                          "gallery": "raw", "accuracy_mean": v, "ci_low": v - 0.05, "ci_high": v + 0.05,
                          "x_chance": v / 0.1, "chance": 0.1} for rung, v in values.items()])


def test_the_verdict_is_chosen_on_select_and_never_looks_at_eval() -> None:
    ev = rows("p", {"reference": 0.9, "black-box": 0.1, "cheap": 0.6, "restoration": 0.3})
    sel = rows("p", {"reference": 0.9, "black-box": 0.1, "cheap": 0.2, "restoration": 0.4})
    v = unbiased_verdict(ev, sel).iloc[0]
    assert v["chosen_rung"] == "restoration" and v["verdict_top1"] == 0.3 and v["select_top1"] == 0.4
    assert (v["verdict_ci_low"], v["verdict_ci_high"], v["select_rows"]) == (0.25, 0.35, 3)
    ev.loc[ev["rung"] == "cheap", "accuracy_mean"] = 0.99  # EVAL rows that were not chosen change nothing
    assert unbiased_verdict(ev, sel).iloc[0]["verdict_top1"] == 0.3
    assert audit.verdict(ev).iloc[0]["worst_case_top1"] == 0.99  # ... while the max over EVAL rows follows them


# a protector equal to raw, end to end on a fake face pipeline -----------------------------------------------
class Copy(Protector):
    """Changes nothing: the protector equal to ``raw``."""

    def protect(self, images: torch.Tensor) -> torch.Tensor:
        return images.clone()


def fake_embeddings(dataset: str, model: str, protector: Any, **options: Any) -> SimpleNamespace:
    """Identity centres plus noise; the same noise for raw and the copy (equal images give equal
    embeddings), more noise for every blind attack."""
    name = protector if isinstance(protector, str) else protector.spec()
    items = [it for it in INDEX if it[0] in options["image_ids"]]
    names = sorted({n for _, n in items})
    centres = np.random.default_rng(1).normal(size=(len(NAMES), 8))
    equal_to_raw = name in ("raw", "test-copy")
    noise = np.random.default_rng(0 if equal_to_raw else zlib.crc32(name.encode()))
    x = centres[[NAMES.index(n) for _, n in items]] + (0.9 if equal_to_raw else 2.0) * noise.normal(size=(len(items), 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return SimpleNamespace(image_ids=[i for i, _ in items], labels=np.array([names.index(n) for _, n in items]),
                           identity_names=names, embeddings=x.astype(np.float32), detected=np.ones(len(items), bool),
                           provenance={"model": model})


@pytest.fixture
def fake_audit(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    trained = {"calls": 0}

    def no_training(*args: Any, **kwargs: Any) -> dict[Any, Any]:
        trained["calls"] += 1
        return {}

    PROTECTORS.add("test-copy", Copy, origin="tests")
    for module in (evaluate, audit):
        monkeypatch.setattr(module, "load_embeddings", fake_embeddings)
        monkeypatch.setattr(module, "dataset_index", lambda dataset, root: list(INDEX))
    monkeypatch.setattr(evaluate, "contract_of", lambda name: SimpleNamespace(weights_file=None, alignment="a"))
    monkeypatch.setattr(audit, "trainings", no_training)
    yield trained
    PROTECTORS.remove("test-copy")


SMALL = ['protectors=["test-copy"]', 'models=["m"]', 'classifiers=["nearest"]', "eval_identities=10",
         "train_identities=6", "select_identities=10", "max_images_per_identity=3", "repeats=5",
         'rungs=["black-box", "gray-box", "cheap"]', "cheap.inverses=false", "grid_faces=0", "utility.psnr_images=0",
         "utility.e3=[]", "utility.e4=[]"]


def test_a_protector_equal_to_raw_gets_the_raw_accuracy_as_its_unbiased_verdict(fake_audit, tmp_path: Path) -> None:
    out, result = run_experiment("audit", overrides=SMALL, out=tmp_path / "a", cache_dir=str(tmp_path / "c"),
                                 device="cpu", quiet=True)
    summary, long = result.tables["summary"].iloc[0], result.tables["audit"]
    raw = long[long["rung"] == "reference"].iloc[0]
    assert summary["chosen_rung"] in ("black-box", "gray-box")
    assert summary["verdict_ci_low"] <= raw["accuracy_mean"] <= summary["verdict_ci_high"]
    assert summary["verdict_top1"] == pytest.approx(raw["accuracy_mean"])
    assert summary["worst_case_top1"] >= summary["verdict_top1"]  # the upper bound stays beside it
    select = result.tables["select"]
    assert len(select) == len(long) and set(select["rung"]) == set(long["rung"])
    assert "Verdict (unbiased)" in (out / "report-test-copy.md").read_text()
    assert "select.csv" in {p.name for p in out.iterdir()}


def test_a_leak_into_select_stops_the_audit_before_any_training(fake_audit, monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    real = audit_select.select_split

    def leaky(index: Any, taken: Any, *args: Any, **kwargs: Any) -> Any:
        sel = real(index, taken, *args, **kwargs)
        return audit_select.SelectSplit(sel.ids + ["id00/0.jpg"], sel.names, sel.splits)

    monkeypatch.setattr(audit_select, "select_split", leaky)
    with pytest.raises(IdentityLeakError, match="EVAL and SELECT share"):
        run_experiment("audit", overrides=[*SMALL, 'rungs=["black-box", "restoration"]'], out=tmp_path / "a",
                       cache_dir=str(tmp_path / "c"), device="cpu", quiet=True)
    assert fake_audit["calls"] == 0


def test_conditions_are_audited_one_row_each_with_a_worst_over_conditions_row(fake_audit, tmp_path: Path) -> None:
    out, result = run_experiment("audit", overrides=[*SMALL, 'conditions=["colour", "grey"]',
                                                     'rungs=["black-box", "gray-box"]'],
                                 out=tmp_path / "a", cache_dir=str(tmp_path / "c"), device="cpu", quiet=True)
    summary = result.tables["summary"]
    assert list(summary["condition"]) == ["colour", "grey", "worst over conditions"]
    assert set(summary["protector"]) == {"test-copy"}
    colour, grey, worst = (summary.iloc[i] for i in range(3))
    assert worst["worst_case_top1"] == max(colour["worst_case_top1"], grey["worst_case_top1"])
    best = colour if colour["select_top1"] >= grey["select_top1"] else grey
    assert (worst["chosen_condition"], worst["verdict_top1"]) == (best["condition"], best["verdict_top1"])
    assert set(result.tables["audit"]["protector"]) == {"test-copy", "test-copy@grey"}
    assert (out / "report-test-copy-grey.md").is_file()


def test_a_restorer_forced_to_0_steps_is_flagged_failed_not_scored(fake_audit, monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    def zero_steps(cfg: Any, specs: list[str], split: Any, *_: Any) -> dict[Any, Any]:  # select, ctx
        return {(s, "restoration"): [(b, {"weights": "never-written.pt", "info": {"history": []}})
                                     for b in cfg.restoration.budgets] for s in specs}

    monkeypatch.setattr(audit, "trainings", zero_steps)
    out, result = run_experiment("audit", overrides=[*SMALL, 'rungs=["black-box", "restoration"]',
                                                     "restoration.budgets=[1, 4]"],
                                 out=tmp_path / "a", cache_dir=str(tmp_path / "c"), device="cpu", quiet=True)
    assert "restoration" not in set(result.tables["audit"]["rung"])  # never reported as a low accuracy
    assert "restoration" not in set(result.tables["select"]["rung"])
    budget = result.tables["budget"]
    assert set(budget["status"]) == {"failed"} and budget["accuracy_mean"].isna().all()
    assert list(budget["budget"].unique()) == [1.0, 4.0] and list(budget["steps"].unique()) == [84, 336]
    assert "failed: not scored" in (out / "report-test-copy.md").read_text()
