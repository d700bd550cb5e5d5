"""One Markdown row per condition audit: the unbiased verdict per capture condition, the worst over
conditions, the upper bound, the trained rungs' convergence flags and the audit's wall time.

Reads every ``<folder>/summary.csv`` (and ``budget.csv``) of audits run with several conditions
(``campro-bench audit SPEC --set 'conditions=["colour", "grey"]' ...``), e.g. the committed
``baselines/audit_cg/*``. It only selects and formats: every number is the audit's own (top-1 in %,
95 % intervals in brackets). Used for docs/audit.md:

    python scripts/audit_cg_table.py baselines/audit_cg/*/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

WORST = "worst over conditions"


def _pct(value: float) -> str:
    return "–" if pd.isna(value) else f"{100 * value:.0f}"


def verdict_cell(row: pd.Series) -> str:
    """``verdict [low, high]`` in %, then the chosen attack (rung / attack / model, classifier)."""
    if pd.isna(row.get("verdict_top1")):
        return "–"
    attack = f"{row['chosen_rung']} / {row['chosen_attack']} / {row['chosen_model']}, {row['chosen_classifier']}"
    return f"{_pct(row['verdict_top1'])} [{_pct(row['verdict_ci_low'])}, {_pct(row['verdict_ci_high'])}] ({attack})"


def not_converged(folder: Path) -> str:
    """The trained series whose last budget still gained more than half its interval (``converged =
    no``) in some of their (classifier, gallery) curves, as ``condition: rung/series (k of n)``, or
    ``none``; ``–`` without a budget table."""
    path = folder / "budget.csv"
    if not path.is_file():
        return "–"
    budget = pd.read_csv(path)
    judged = budget[budget["converged"].astype(str).isin(["yes", "no"])]
    names = []
    for (spec, rung, series), group in judged.groupby(["protector", "rung", "series"], sort=True):
        flagged = int((group["converged"] == "no").sum())
        if flagged:
            names.append(f"{_condition(spec)}: {rung}/{series} ({flagged} of {len(group)})")
    failed = int((budget["status"] == "failed").sum())
    text = "; ".join(names) if names else "none"
    return text + (f" ({failed} failed trainings)" if failed else "")


def _condition(spec: str) -> str:
    return spec.rsplit("@", 1)[1] if "@" in spec else "colour"


def audit_row(folder: Path) -> dict[str, str]:
    """One row: protector, each condition's verdict, the worst over conditions, its upper bound,
    black-box best and raw top-1 (colour), the convergence flags and the audit's wall time."""
    summary = pd.read_csv(folder / "summary.csv")
    by_condition = {str(r["condition"]): r for _, r in summary.iterrows()}
    if WORST not in by_condition:
        raise SystemExit(f"error: {folder / 'summary.csv'} has no '{WORST}' row: not an audit under several conditions")
    worst, colour = by_condition[WORST], by_condition.get("colour", summary.iloc[0])
    row = {"protector": f"`{summary['protector'].iloc[0]}`"}
    for name, cond in by_condition.items():
        if name != WORST:
            row[f"{name}: unbiased % (chosen attack)"] = verdict_cell(cond)
    row["worst over conditions, unbiased %"] = (f"{_pct(worst['verdict_top1'])} [{_pct(worst['verdict_ci_low'])}, "
                                                f"{_pct(worst['verdict_ci_high'])}] ({worst['chosen_condition']})")
    row["upper bound %"] = _pct(worst["worst_case_top1"])
    row["black-box best % (colour)"] = _pct(colour["black_box_best"])
    row["raw %"] = _pct(colour["raw_best"])
    row["not converged"] = not_converged(folder)
    row["wall time s"] = wall_time(folder)
    return row


def wall_time(folder: Path) -> str:
    """The audit's whole wall time in seconds, from its manifest (``timings_s.total``), or ``–``."""
    path = folder / "manifest.json"
    total = json.loads(path.read_text()).get("timings_s", {}).get("total") if path.is_file() else None
    return "–" if total is None else f"{total:,.0f}"


def main(argv: list[str]) -> int:
    if not argv:
        raise SystemExit("usage: python scripts/audit_cg_table.py AUDIT_DIR [AUDIT_DIR ...]")
    rows = [audit_row(Path(folder)) for folder in argv]
    print(pd.DataFrame(rows).fillna("–").to_markdown(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
