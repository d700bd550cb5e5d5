"""Re-read the person AP and PSNR of committed audit summaries from the E3/E4 tables they cite.

Usage, from the repository root::

    python scripts/refresh_audit_utility.py baselines/audit/*/

An audit copies person AP (E3) and PSNR (E4) from the tables listed in its protocol's ``[utility]``;
an E3 table rerun later leaves the summary quoting old values. For each folder this rewrites
``summary.csv``, the table of ``summary.md`` (its notes kept) and ``plane.png`` from the committed
CSVs only, with the lookup of the audit itself (:func:`campro_bench.experiments.audit.refresh_utility`)
and the tables of the shipped audit protocol. No attack is rerun; a PSNR the audit computed itself
("computed now") is kept. ``tests/test_manifest_paths.py`` checks the committed summaries against the tables.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pandas as pd

from campro_bench.experiments.audit import AuditConfig, refresh_utility
from campro_bench.experiments.audit_report import plane_figure
from campro_bench.experiments.runner import table_markdown
from campro_bench.experiments.spec import load_spec
from campro_bench.io.atomic import atomic_write_bytes, atomic_write_text


def refresh(folder: Path, cfg: AuditConfig) -> bool:
    """Rewrite one audit folder's summary files; whether anything changed."""
    old_csv = (folder / "summary.csv").read_text(encoding="utf-8")
    summary = refresh_utility(pd.read_csv(folder / "summary.csv"), cfg.utility.e3, cfg.utility.e4)
    buffer = io.StringIO()
    summary.to_csv(buffer, index=False, float_format="%.6g")
    if buffer.getvalue() == old_csv:
        return False
    atomic_write_text(folder / "summary.csv", buffer.getvalue())
    markdown = (folder / "summary.md").read_text(encoding="utf-8")
    head = markdown[: markdown.index("## summary")]
    atomic_write_text(folder / "summary.md", head + table_markdown("summary", pd.read_csv(folder / "summary.csv")))
    figure = plane_figure(summary)
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=150, bbox_inches="tight")
    atomic_write_bytes(folder / "plane.png", png.getvalue())
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    cfg = AuditConfig.from_spec({**load_spec("audit"), "protectors": ["raw"]})  # only its [utility] is read
    for folder in args.folders:
        print(f"{folder}: {'rewritten' if refresh(folder, cfg) else 'unchanged'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
