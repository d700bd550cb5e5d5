"""Per-protector Markdown tables of every threat model side by side, from E1 runs' outputs.

Reads the ``e1_threats_wide.csv`` and ``e1_leakage.csv`` of a one-image run and (optionally) of a
k-image run of the same protocol, and prints, per image type, one table: rows = models (raw
gallery) and their mean; columns = closed-set top-1, rank-k, TAR at each FAR, DIR at each FPIR,
the k-image run's top-1 / TAR / DIR, and the leakage. Then one table of the re-enrolled
(gray-box) galleries, model means per protector. It only selects and averages columns; every
number is the run's. Used for docs/privacy.md:

    python scripts/threat_tables.py baselines/e1_threats_lfw/k1 baselines/e1_threats_lfw/k3
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

OWN = " (own calibration)"


def _fmt(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, floatfmt=".1f")


def not_measured(run: Path, wide: pd.DataFrame) -> list[str]:
    """The metric columns no row of the run could measure, with the reason the run gave."""
    long = pd.read_csv(run / "e1_threats.csv")
    empty = [c for c in wide.columns if c.startswith(("TAR@", "DIR@")) and wide[c].isna().all()]
    return [f"{c}: {long[long.metric == c]['note'].dropna().iloc[0]}" for c in empty]


def main(one: Path, many: Path | None) -> None:
    wide = pd.read_csv(one / "e1_threats_wide.csv")
    skipped = not_measured(one, wide)
    for line in skipped:
        print(f"- {line}")
    wide = wide.drop(columns=[line.split(":")[0] for line in skipped])
    leak = pd.read_csv(one / "e1_leakage.csv")
    share = next(c for c in leak.columns if c.startswith("share_above"))
    k_wide = pd.read_csv(many / "e1_threats_wide.csv") if many else None
    k = int(pd.read_csv(many / "e1_threats.csv")["gallery_images"].iloc[0]) if many else 0
    base = ["top-1 nearest", "rank-5 nearest", "rank-10 nearest"]
    rates = [c for c in wide.columns if c.startswith(("TAR@", "DIR@")) and OWN not in c]
    k_cols = ["top-1 nearest", "TAR@FAR=1e-3", "DIR@FPIR=1e-2"]  # k images: FPIR 1e-2 has enough searches
    for spec in dict.fromkeys(wide["image_type"]):
        rows = wide[(wide.image_type == spec) & (wide.gallery == "raw")].set_index("model")
        table = rows[base + rates].copy()
        if k_wide is not None:
            k_rows = k_wide[(k_wide.image_type == spec) & (k_wide.gallery == "raw")].set_index("model")
            for col in k_cols:
                table[f"k={k} {col}"] = k_rows[col]
        if spec != "raw":
            lk = leak[leak.image_type == spec].set_index("model")
            table["leak cos"] = lk["cosine_mean"] * 100.0
            table["leak >thr"] = lk[share] * 100.0
        table.loc["mean"] = table.mean(axis=0)
        print(f"\n#### {spec}\n")
        print(_fmt(table.reset_index().rename(columns=lambda c: c.replace(" nearest", ""))))
    gray = wide[wide.gallery == "protected"]
    cols = ["top-1 nearest", "rank-10 nearest", "TAR@FAR=1e-2", f"TAR@FAR=1e-2{OWN}", f"TAR@FAR=1e-3{OWN}",
            f"DIR@FPIR=1e-1{OWN}"]
    table = gray.groupby("image_type", sort=False)[cols].mean()
    if k_wide is not None:
        k_gray = k_wide[k_wide.gallery == "protected"].groupby("image_type", sort=False)
        for col in ("top-1 nearest", f"TAR@FAR=1e-3{OWN}", f"DIR@FPIR=1e-2{OWN}"):
            table[f"k={k} {col}"] = k_gray[col].mean()
    print("\n#### re-enrolled (gray-box) galleries, mean over the models\n")
    print(_fmt(table.reset_index().rename(columns=lambda c: c.replace(" nearest", "").replace(OWN, " own"))))


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python scripts/threat_tables.py RUN_K1 [RUN_K]")
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else None)
