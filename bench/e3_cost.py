"""Wall time of E3 on coco-person-val, per protector: fine-tuning and evaluation (a figure, not a test).

Usage::

    python bench/e3_cost.py --run baselines/e3_person/raw [--run ...] [--out docs/img/e3-person-cost.png]

Reads what runs of ``campro-bench run e3`` recorded in their folders (one run, or one run per row)
and draws one stacked bar per protector, so a user knows what a run costs before starting one:

* evaluation: the manifest's ``timings_s["evaluate <row>"]`` (wall seconds of this run);
* fine-tuning: from ``finetune_reports.json``, the report each fine-tuned detector carries from
  when it was trained (``prepare_seconds`` + the ``epoch_seconds``), so a detector read from the
  cache still shows what training it cost (such rows are marked "cached").

Wall time on a shared CPU depends on its load by several times; the run's start time and torch
threads are in the title, the load average is in the docs beside the figure.

Measured (docs/detection.md, "Cost"): the nine-row run ``baselines/e3_person/all`` took 1,836 s of
wall time at load average 2-5 on the 2-core machine, three of its detectors read from the cache; the
six rows it fine-tuned took 99-825 s each (median 191 s: fine-tuning 545 images once, then scoring
500), so nine rows from an empty cache cost about 9 x 190 s = 29 min at that load, about 14 min idle.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def rows(manifest: dict[str, Any], reports: dict[str, Any]) -> list[dict[str, Any]]:
    """Per protector row: label, fine-tune seconds (when trained), evaluate seconds, cached or not."""
    timings = manifest.get("timings_s", {})
    out = []
    for key, seconds in timings.items():
        if not key.startswith("evaluate "):
            continue
        label = key[len("evaluate "):]
        report = reports.get(label, {})
        trained = float(report.get("prepare_seconds", 0.0)) + sum(report.get("epoch_seconds", []))
        out.append({"label": label, "finetune_s": trained or float(timings.get(f"finetune {label}", 0.0)),
                    "evaluate_s": float(seconds), "cached": bool(report.get("cached", False))})
    return out


def figure(table: list[dict[str, Any]], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 0.45 * len(table) + 1.9))
    labels = [r["label"] + (" (detector cached)" if r["cached"] else "") for r in table]
    fine = [r["finetune_s"] / 60 for r in table]
    ev = [r["evaluate_s"] / 60 for r in table]
    ax.barh(labels, fine, label="fine-tune (545 images)")
    ax.barh(labels, ev, left=fine, label="evaluate (500 images)")
    ax.invert_yaxis()
    ax.set(xlabel="wall time (min)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", required=True, help="an E3 result folder (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("docs/img/e3-person-cost.png"))
    args = parser.parse_args()
    table, threads, started, runs_total = [], set(), [], []
    for folder in args.run:
        manifest = json.loads((folder / "manifest.json").read_text())
        reports_file = folder / "finetune_reports.json"
        reports = json.loads(reports_file.read_text()) if reports_file.is_file() else {}
        table += rows(manifest, reports)
        threads.add(str(manifest.get("environment", {}).get("torch_threads", "?")))
        started.append(manifest.get("started", "?")[:16])
        runs_total.append(float(manifest.get("timings_s", {}).get("total", 0.0)))
    total = sum(r["finetune_s"] + r["evaluate_s"] for r in table)
    fresh = [r for r in table if not r["cached"]]
    per_row = sorted(r["finetune_s"] + r["evaluate_s"] for r in fresh)
    title = (f"E3: {sum(runs_total) / 60:.0f} min of run wall time for {len(table)} rows\n"
             f"({len(table) - len(fresh)} detectors cached: their bars show their earlier training)\n"
             f"torch threads {'/'.join(sorted(threads))}, runs started {min(started)} .. {max(started)} UTC")
    for r in table:
        print(f"{r['label']:<55} fine-tune {r['finetune_s']:8.1f} s  evaluate {r['evaluate_s']:7.1f} s"
              + ("  (cached: fine-tuned by an earlier run)" if r["cached"] else ""))
    print(f"total fine-tune + evaluate {total:.1f} s (a cached row counts the training its detector's report records)")
    print(f"runs' own wall time {sum(runs_total):.1f} s; rows fine-tuned in them: {len(fresh)}"
          + (f", median {per_row[len(per_row) // 2]:.0f} s per row (fine-tune + evaluate)" if per_row else ""))
    figure(table, title, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
