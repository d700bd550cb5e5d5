"""The trade-off reads audits under capture conditions (colour, grey, worst over conditions) with
their unbiased verdicts; old summaries give their old columns unchanged; the README's headline
table is rendered from tradeoff.csv."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from campro_bench.experiments.audit_report import slug
from campro_bench.experiments.audit_select import WORST, worst_rows
from campro_bench.experiments.headline import headline_table, readme_table, replace_table
from campro_bench.experiments.spec import load_spec
from campro_bench.experiments.tradeoff import worst_case_points
from campro_bench.experiments.tradeoff_audits import AUDIT_COLUMNS, audited

REPO = Path(__file__).resolve().parents[1]
SPEC = "campro-isp:preset=a"


def _row(condition: str, upper: float, attack: str, model: str, verdict: float, chosen: str, select: float,
         spec: str = SPEC) -> dict[str, object]:
    return {"protector": spec, "condition": condition, "verdict_top1": verdict, "verdict_ci_low": verdict - 0.1,
            "verdict_ci_high": verdict + 0.1, "chosen_rung": "cheap", "chosen_attack": chosen, "chosen_model": "sface",
            "select_top1": select, "worst_case_top1": upper, "ci_low": upper - 0.1, "ci_high": upper + 0.1,
            "rung": "cheap", "attack": attack, "model": model}


def condition_summary(path: Path) -> str:
    """A summary as the audit writes it under conditions=["colour", "grey"]: grey has the higher
    upper bound (0.7), colour the attack best on SELECT (its verdict 0.45 counts over conditions)."""
    rows = pd.DataFrame([_row("colour", 0.5, "invert-inverse", "sface", 0.45, "invert-inverse", 0.6),
                         _row("grey", 0.7, "histeq", "dlib-resnet", 0.3, "grayscale", 0.4)])
    worst = worst_rows(rows, ["protector"], "worst_case_top1", ["worst_case_top1", "ci_low", "ci_high", "rung"],
                       "attack", "select_top1", ("verdict_", "chosen_", "select_"))  # the audit's own rule
    pd.concat([rows, pd.DataFrame(worst)], ignore_index=True).to_csv(path, index=False)
    return str(path)


def old_summary(path: Path, specs: list[str], upper: list[float]) -> str:
    """A summary of an audit without conditions or SELECT identities (one row per protector)."""
    pd.DataFrame({"protector": specs, "worst_case_top1": upper, "rung": "cheap", "attack": "inverse",
                  "model": "sface"}).to_csv(path, index=False)
    return str(path)


def points(specs: list[str], best: float = 0.05) -> pd.DataFrame:
    return pd.DataFrame({"spec": specs, "accuracy_best_model": best, "reenrolled_best_model": np.nan})


def test_a_condition_summary_fills_colour_grey_and_worst_over_conditions(tmp_path: Path) -> None:
    summary = condition_summary(tmp_path / "summary.csv")
    assert pd.read_csv(summary)["condition"].tolist() == ["colour", "grey", WORST]
    out = worst_case_points(points([SPEC]), [str(tmp_path / "missing.csv"), summary]).iloc[0]
    # colour: the protector as it is
    assert out["audit_worst_case"] == 0.5 and out["audit_attack"] == f"audit {summary}: cheap / invert-inverse / sface"
    assert (out["audit_verdict"], out["audit_verdict_ci_low"], out["audit_verdict_ci_high"]) == pytest.approx(
        (0.45, 0.35, 0.55))
    assert out["audit_verdict_attack"] == "cheap / invert-inverse / sface"
    # grey
    assert out["audit_grey_worst_case"] == 0.7
    assert (out["audit_grey_verdict"], out["audit_grey_verdict_ci_low"]) == pytest.approx((0.3, 0.2))
    # worst over conditions: the upper bound is grey's, the unbiased verdict colour's (best on SELECT)
    assert out["audit_worst_over_conditions"] == 0.7
    assert out["audit_worst_over_conditions_attack"] == f"audit {summary}: cheap / histeq / dlib-resnet (grey)"
    assert out["audit_worst_over_conditions_verdict"] == pytest.approx(0.45)
    assert out["audit_worst_over_conditions_verdict_ci_high"] == pytest.approx(0.55)
    assert out["audit_worst_over_conditions_chosen"] == "colour: cheap / invert-inverse / sface"
    assert out["audit_conditions"] == "colour, grey"
    # the worst-case axis takes the worst over conditions; the colour worst case stays beside it
    assert out["worst_case"] == 0.7 and out["worst_case_source"] == out["audit_worst_over_conditions_attack"]
    assert out["worst_case_colour"] == 0.5 and out["worst_case_colour_source"] == out["audit_attack"]


def test_the_committed_condition_audit_is_read_as_its_summary_states(tmp_path: Path) -> None:
    summary = str(REPO / "baselines/audit_conditions/summary.csv")
    out = worst_case_points(points(["campro-isp:preset=casia-adv"]), [summary]).iloc[0]
    table = pd.read_csv(summary).set_index("condition")
    for column, condition, field in (("audit_verdict", "colour", "verdict_top1"),
                                     ("audit_verdict_ci_low", "colour", "verdict_ci_low"),
                                     ("audit_grey_verdict", "grey", "verdict_top1"),
                                     ("audit_grey_worst_case", "grey", "worst_case_top1"),
                                     ("audit_worst_over_conditions", WORST, "worst_case_top1"),
                                     ("audit_worst_over_conditions_verdict", WORST, "verdict_top1")):
        assert out[column] == table.loc[condition, field], column
    assert out["audit_worst_over_conditions_chosen"].startswith(f"{table.loc[WORST, 'chosen_condition']}: ")
    assert out["worst_case"] == max(table["worst_case_top1"])


def test_an_old_summary_gives_its_old_columns_and_empty_new_ones(tmp_path: Path) -> None:
    summary = old_summary(tmp_path / "summary.csv", ["invert", "lowres:factor=4"], [0.895, 0.1])
    table = pd.DataFrame({"spec": ["raw", "invert", "lowres:factor=4"], "accuracy_best_model": [0.9, 0.02, 0.3],
                          "reenrolled_best_model": [0.9, 0.19, np.nan]})
    out = worst_case_points(table, [str(tmp_path / "missing.csv"), summary])
    assert out["worst_case"].tolist() == [0.9, 0.895, 0.3]
    assert out["worst_case_source"].tolist() == [
        "this run, raw gallery", f"audit {summary}: cheap / inverse / sface", "this run, raw gallery"]
    assert out["audit_worst_case"].fillna(-1).tolist() == [-1, 0.895, 0.1]
    assert out["worst_case_colour"].tolist() == out["worst_case"].tolist()
    assert out["worst_case_colour_source"].tolist() == out["worst_case_source"].tolist()
    assert out["audit_conditions"].tolist() == ["not audited", "colour", "colour"]
    assert out["audit_worst_over_conditions"].isna().all() and out["audit_verdict"].isna().all()
    assert out["audit_worst_over_conditions_attack"].tolist() == ["not audited", "no condition audit",
                                                                   "no condition audit"]
    assert out["audit_verdict_attack"].tolist()[1:] == ["no unbiased verdict"] * 2
    assert set(AUDIT_COLUMNS) <= set(out.columns)


def test_a_condition_audit_wins_and_a_protector_only_in_an_old_summary_still_counts(tmp_path: Path) -> None:
    new = condition_summary(tmp_path / "cg.csv")
    old = old_summary(tmp_path / "old.csv", [SPEC, "lowres:factor=16"], [0.2, 0.26])
    out = worst_case_points(points([SPEC, "lowres:factor=16", "raw"]), [str(tmp_path / "absent.csv"), new, old])
    assert out["audit_conditions"].tolist() == ["colour, grey", "colour", "not audited"]
    assert out["worst_case"].tolist() == [0.7, 0.26, 0.05]
    assert out["audit_attack"].iloc[1] == f"audit {old}: cheap / inverse / sface"
    assert math.isnan(out["audit_grey_worst_case"].iloc[1])
    # listed the other way round, the old summary (the first with the protector) counts
    assert worst_case_points(points([SPEC]), [old, new])["worst_case"].tolist() == [0.2]


def test_an_audit_under_grey_only_is_an_audit(tmp_path: Path) -> None:
    path = tmp_path / "grey.csv"
    pd.DataFrame([_row("grey", 0.4, "histeq", "sface", 0.35, "histeq", 0.3)]).to_csv(path, index=False)
    out = worst_case_points(points([SPEC, "raw"]), [str(path)])
    assert math.isnan(out["audit_worst_case"].iloc[0]) and out["audit_worst_over_conditions"].iloc[0] == 0.4
    assert out["audit_worst_over_conditions_chosen"].iloc[0] == "grey: cheap / histeq / sface"
    assert out["worst_case"].iloc[0] == 0.4 and out["worst_case_colour"].iloc[0] == 0.05
    assert audited(out).tolist() == [True, False]  # on the worst-case front, filled on the figure


def test_the_shipped_protocol_lists_each_condition_audit_before_the_old_one() -> None:
    audits = load_spec("tradeoff")["audits"]
    old = [a for a in audits if a.startswith("baselines/audit/")]
    assert old
    for path in old:
        name = path.split("/")[2]
        # the folder is its protector's slug, as `campro-bench audit` names a protector's files
        assert {slug(p) for p in pd.read_csv(REPO / path)["protector"]} == {name}, path
        assert audits.index(f"baselines/audit_cg/{name}/summary.csv") < audits.index(path)


TRADEOFF = pd.DataFrame([
    {"spec": "raw", "accuracy": 0.866, "worst_case": 0.928, "worst_case_source": "this run, raw gallery",
     "worst_case_colour": 0.928, "worst_case_colour_source": "this run, raw gallery", "audit_worst_case": np.nan,
     "audit_attack": "not audited", "AP": 0.45612, "AP_lo": 0.425071, "AP_hi": 0.490421},
    {"spec": "campro-isp:preset=a", "accuracy": 0.014, "worst_case": 0.7,
     "worst_case_source": "audit baselines/audit_cg/x/summary.csv: cheap / histeq / sface (grey)",
     "worst_case_colour": 0.5, "worst_case_colour_source": "audit baselines/audit_cg/x/summary.csv: cheap / inv / sface",
     "audit_worst_case": 0.5, "audit_attack": "audit baselines/audit_cg/x/summary.csv: cheap / inv / sface",
     "audit_worst_over_conditions": 0.7, "audit_worst_over_conditions_verdict": 0.55,
     "audit_worst_over_conditions_verdict_ci_low": 0.462201, "audit_worst_over_conditions_verdict_ci_high": 0.637799,
     "audit_worst_over_conditions_chosen": "grey: cheap / inv / sface", "AP": np.nan, "AP_lo": np.nan, "AP_hi": np.nan},
    {"spec": "lowres:factor=16", "accuracy": 0.035, "worst_case": 0.573, "worst_case_source": "E5 baselines/e5: R / sface",
     "worst_case_colour": 0.573, "worst_case_colour_source": "E5 baselines/e5: R / sface", "audit_worst_case": 0.2,
     "audit_attack": "audit old.csv: cheap / inv / sface", "audit_worst_over_conditions": 0.3,
     "audit_worst_over_conditions_verdict": np.nan, "AP": 0.0719, "AP_lo": np.nan, "AP_hi": np.nan},
])


def test_the_headline_table_of_a_small_tradeoff_csv(tmp_path: Path) -> None:
    path = tmp_path / "tradeoff.csv"
    TRADEOFF.to_csv(path, index=False)  # through a CSV, as the script reads it
    assert headline_table(pd.read_csv(path)).splitlines() == [
        "| protector | black box % | worst case % (colour) | worst over colour and grey %, unbiased [95 % interval] "
        "| worst attack | person AP [95 % interval] |",
        "|---|---:|---:|---:|---|---:|",
        "| `raw` | 86.6 | ≥ 92.8 | – | best model, raw gallery | 0.456 [0.425, 0.490] |",
        "| `campro-isp:preset=a` | 1.4 | 50.0 | 55.0 [46.2, 63.8] (grey) | audit, cheap / inv / sface | – |",
        "| `lowres:factor=16` | 3.5 | 57.3 | upper bound 30.0 | E5, R / sface | 0.072 |",
    ]


def test_a_tradeoff_csv_without_condition_columns_renders_its_one_worst_case(tmp_path: Path) -> None:
    old = TRADEOFF.drop(columns=[c for c in TRADEOFF.columns if c.startswith(("worst_case_colour", "audit_worst_over"))])
    lines = headline_table(old).splitlines()
    assert lines[3] == "| `campro-isp:preset=a` | 1.4 | 70.0 | – | audit, cheap / histeq / sface (grey) | – |"


def test_the_script_rewrites_only_the_readme_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("headline_script", REPO / "scripts" / "headline_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    csv_path = tmp_path / "tradeoff.csv"
    TRADEOFF.to_csv(csv_path, index=False)
    readme = tmp_path / "README.md"
    before, after = "# T\n\n## Headline results\n\nIntro.\n\n", "\n\nMore text.\n"
    readme.write_text(before + "| protector | black box % | old |\n|---|---|\n| `raw` | 1 |" + after)
    assert script.main([str(csv_path)]) == 0
    printed = capsys.readouterr().out
    assert printed == headline_table(pd.read_csv(csv_path)) + "\n"
    assert script.main([str(csv_path), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text == before + printed.rstrip("\n") + after and readme_table(text) == printed.rstrip("\n")
    assert replace_table(text, readme_table(text)) == text
    assert script.main([str(tmp_path / "nothing.csv")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_the_committed_sweeps_worst_cases_are_reproduced_from_the_committed_summaries() -> None:
    """The worst-case columns of the committed ``baselines/tradeoff`` re-made from the committed audit
    summaries and E5 folders the shipped protocol lists, with the sweep's draws: the same, cell by cell
    (an audit committed later without re-running the sweep fails here)."""
    import json

    from campro_bench.experiments.tradeoff import sweep_draws

    committed = pd.read_csv(REPO / "baselines/tradeoff/tradeoff.csv")
    spec = load_spec("tradeoff")
    draws = sweep_draws(json.loads((REPO / "baselines/tradeoff/manifest.json").read_text())["seeds"])
    out = worst_case_points(committed[["spec", "accuracy_best_model", "reenrolled_best_model"]], spec["audits"],
                            spec["whitebox"], draws)
    columns = [c for c in out.columns if c in committed.columns]
    assert {"worst_case", "worst_case_source", "audit_worst_case", "audit_attack", "whitebox_attack"} <= set(columns)
    portable = out[columns].replace(regex={rf"{REPO}/": ""})  # the runner writes checkout paths relative
    pd.testing.assert_frame_equal(portable, committed[columns], check_exact=True)
