"""Re-draw the committed figures from the committed tables only (no dataset image, no model, no cache).

    python scripts/render_committed_figures.py [--check]

* ``baselines/tradeoff/tradeoff.png`` from ``baselines/tradeoff/tradeoff.csv``;
* ``baselines/audit/*/plane.png`` from each audit's ``summary.csv``.

Each PNG is written as ``campro-bench run`` writes figures (150 dpi, tight box), atomically. With
``--check`` nothing is written; the exit status is 1 when a figure has overlapping labels.
(``baselines/lensless/table/masks.png`` needs the learned masks of the training runs, which are not
committed; ``campro-bench run lensless`` draws it.)
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from campro_bench.experiments.audit_report import plane_figure  # noqa: E402
from campro_bench.experiments.figures import overlapping_labels, pyplot  # noqa: E402
from campro_bench.experiments.tradeoff import tradeoff_figure  # noqa: E402
from campro_bench.io import atomic_write_bytes  # noqa: E402


def committed_figures(repo: Path = REPO) -> dict[Path, object]:
    """``{png path: figure}`` for every committed figure drawn from a committed CSV."""
    figures: dict[Path, object] = {}
    tradeoff = repo / "baselines" / "tradeoff"
    figures[tradeoff / "tradeoff.png"] = tradeoff_figure(pd.read_csv(tradeoff / "tradeoff.csv"))
    for summary in sorted((repo / "baselines" / "audit").glob("*/summary.csv")):
        figures[summary.parent / "plane.png"] = plane_figure(pd.read_csv(summary))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; fail on overlapping labels")
    args = parser.parse_args()
    plt, status = pyplot(), 0
    for path, figure in committed_figures().items():
        overlaps = overlapping_labels(figure)
        if overlaps:
            print(f"{path.relative_to(REPO)}: overlapping labels {overlaps}")
            status = 1
        if not args.check:
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=150, bbox_inches="tight")
            atomic_write_bytes(path, buffer.getvalue())
            print(f"wrote {path.relative_to(REPO)}")
        plt.close(figure)
    return status


if __name__ == "__main__":
    sys.exit(main())
