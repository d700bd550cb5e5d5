"""The re-training rung's loss history per audited protector and condition, from audit manifests.

Reads ``<folder>/manifest.json`` of audits (e.g. the committed ``baselines/audit_cg/*``) and prints one
Markdown row per (protector, condition, budget) with the re-training's mean training loss and
training accuracy per epoch, its learning rate per epoch, the SGD steps it took, and the audit's
status for it. It only selects and formats: every number is the audit's own. Audits written before
the manifest kept every budget's history hold only the last budget's (marked so).

Chance level of the loss is ``ln(train identities)`` (printed in the header): a history that stays
there learnt nothing. Used for docs/audit.md:

    python scripts/audit_training_history.py baselines/audit_cg/*/
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

HEADER = ["protector", "condition", "budget", "status", "SGD steps", "lr per epoch", "loss per epoch",
          "train accuracy per epoch (%)"]


def _condition(spec: str) -> tuple[str, str]:
    return (spec.rsplit("@", 1)[0], spec.rsplit("@", 1)[1]) if "@" in spec else (spec, "colour")


def history_rows(manifest: dict[str, Any]) -> list[list[str]]:
    """One row per re-training budget recorded in an audit manifest."""
    rows = []
    train_images = int((manifest.get("data", {}).get("identity_split") or {}).get("train_images", 0) or 0)
    asked = ((manifest.get("spec") or {}).get("retrain") or {}).get("budgets") or []
    last = f"{asked[-1]:g}x (only the last budget recorded)" if asked else "last budget"
    for spec, notes in sorted((manifest.get("notes", {}).get("audit") or {}).items()):
        retrain = notes.get("retrain") if isinstance(notes, dict) else None
        if not retrain:
            continue
        budgets = retrain.get("budgets") or {last: {"status": retrain.get("status", "?"),
                                                    "history": retrain.get("history") or []}}
        batch = int((retrain.get("config") or {}).get("batch_size", 0) or 0)
        protector, condition = _condition(spec)
        for budget, record in budgets.items():
            history = record.get("history") or []
            steps = str(len(history) * (train_images // batch)) if batch and train_images else "–"  # whole batches
            rows.append([f"`{protector}`", condition, budget, record.get("status", "?"), steps,
                         ", ".join(f"{h.get('lr', math.nan):g}" for h in history),
                         ", ".join(f"{h.get('train_loss', math.nan):.2f}" for h in history),
                         ", ".join(f"{100 * h.get('train_accuracy', math.nan):.0f}" for h in history)])
    return rows


def main(folders: list[str]) -> int:
    if not folders:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: python scripts/audit_training_history.py AUDIT_FOLDER [...]", file=sys.stderr)
        return 2
    rows, identities = [], set()
    for folder in folders:
        path = Path(folder) / "manifest.json"
        if not path.is_file():
            print(f"error: {path} does not exist (an audit folder holds manifest.json)", file=sys.stderr)
            return 2
        manifest = json.loads(path.read_text())
        identities.add((manifest.get("data", {}).get("identity_split") or {}).get("train_identities"))
        rows += history_rows(manifest)
    chance = ", ".join(f"ln({n}) = {math.log(n):.2f}" for n in sorted(i for i in identities if i))
    print(f"Chance-level loss: {chance or 'unknown'}\n")
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
