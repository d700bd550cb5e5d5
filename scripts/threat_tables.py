"""Per-protector Markdown tables of every threat model side by side, from E1 runs' outputs.

Reads the ``e1_threats_wide.csv`` and ``e1_leakage.csv`` of a one-image run and (optionally) of a
k-image run of the same protocol, and prints, per image type, one table: rows = models (raw
gallery) and their mean; columns = closed-set top-1, rank-k, TAR at each FAR, DIR at each FPIR,
the k-image run's top-1 / TAR / DIR, and the leakage. Then one table of the re-enrolled
(gray-box) galleries, model means per protector. It only selects and averages columns; every
number is the run's. ``--summary`` prints instead one row per image type: each threat model's mean
over the models, the worst model's top-1, k-image enrolment, leakage and the re-enrolled gallery.
Used for docs/privacy.md and docs/threats_lfw.md:

    python scripts/threat_tables.py baselines/threats_lfw/k1 baselines/threats_lfw/k3 [--summary]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

OWN = " (own calibration)"


def _fmt(table: pd.DataFrame) -> str:
    return table.astype(object).where(table.notna(), None).to_markdown(index=False, floatfmt=".1f", missingval="–")


def not_measured(run: Path, wide: pd.DataFrame) -> list[str]:
    """The metric columns no row of the run could measure, with the reason the run gave."""
    long = pd.read_csv(run / "e1_threats.csv")
    empty = [c for c in wide.columns if c.startswith(("TAR@", "DIR@")) and wide[c].isna().all()]
    return [f"{c}: {long[long.metric == c]['note'].dropna().iloc[0]}" for c in empty]


def _k_images(many: Path | None) -> tuple[pd.DataFrame | None, int]:
    if many is None:
        return None, 0
    return pd.read_csv(many / "e1_threats_wide.csv"), int(pd.read_csv(many / "e1_threats.csv")["gallery_images"].iloc[0])


def _leakage(run: Path) -> tuple[pd.DataFrame, str]:
    """The run's leakage table and the name of its share-above-threshold column."""
    leak = pd.read_csv(run / "e1_leakage.csv")
    return leak, next(c for c in leak.columns if c.startswith("share_above"))


def summary_table(one: Path, many: Path | None) -> pd.DataFrame:
    """One row per image type (raw gallery): every threat model's mean over the models, the worst
    (highest) model's top-1, the k-image top-1 and the leakage, in %."""
    wide = pd.read_csv(one / "e1_threats_wide.csv")
    raw_gallery = wide[wide.gallery == "raw"]
    by_type = raw_gallery.groupby("image_type", sort=False)
    cols = {"top-1": "top-1 nearest", "rank-10": "rank-10 nearest", "TAR@FAR=1e-2": "TAR@FAR=1e-2",
            "TAR@FAR=1e-3": "TAR@FAR=1e-3", "DIR@FPIR=1e-1": "DIR@FPIR=1e-1"}
    table = pd.DataFrame({name: by_type[col].mean() for name, col in cols.items()})
    table.insert(1, "worst model top-1", by_type["top-1 nearest"].max())
    k_wide, k = _k_images(many)
    if k_wide is not None:
        k_by_type = k_wide[k_wide.gallery == "raw"].groupby("image_type", sort=False)
        table[f"k={k} top-1"] = k_by_type["top-1 nearest"].mean()
        table[f"k={k} worst model top-1"] = k_by_type["top-1 nearest"].max()
    leak, share = _leakage(one)
    leak_by_type = leak.groupby("image_type", sort=False)
    table["leak cos"] = leak_by_type["cosine_mean"].mean() * 100.0
    table["leak >thr"] = leak_by_type[share].mean() * 100.0
    gray = wide[wide.gallery == "protected"].groupby("image_type", sort=False)["top-1 nearest"]
    table["re-enrolled top-1"] = gray.mean()
    table["re-enrolled worst model"] = gray.max()
    return table.rename_axis("image type").reset_index()


def main(one: Path, many: Path | None) -> None:
    wide = pd.read_csv(one / "e1_threats_wide.csv")
    skipped = not_measured(one, wide)
    for line in skipped:
        print(f"- {line}")
    wide = wide.drop(columns=[line.split(":")[0] for line in skipped])
    leak, share = _leakage(one)
    k_wide, k = _k_images(many)
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
    args = [a for a in sys.argv[1:] if a != "--summary"]
    if len(args) not in (1, 2):
        sys.exit("usage: python scripts/threat_tables.py RUN_K1 [RUN_K] [--summary]")
    runs = (Path(args[0]), Path(args[1]) if len(args) == 2 else None)
    if "--summary" in sys.argv:
        print(_fmt(summary_table(*runs)))
    else:
        main(*runs)
