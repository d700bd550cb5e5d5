"""Assemble the paper's layouts from long-form protocol rows.

Long form (one row per dataset x image type x classifier x gallery x model, accuracies as
fractions) is what ``e1.csv`` holds and what ``campro-bench regress`` compares. The wide
Table I view (models as columns plus Average, accuracies in %) and the Table II view are derived
from it here and only here.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .paper import PAPER_DATASETS, PAPER_MODELS, REFERENCE_DATASETS

ROW_KEYS = ["dataset", "image_type", "classifier", "gallery"]


def image_type_label(spec: str) -> str:
    """A Table I row's label: its protector spec, for every row alike (``raw`` included), as in e1.csv.

    One labelling keeps the wide and long tables joinable on ``image_type`` and lets ``regress`` keys,
    the README and the paper mapping (``paper_image_types``, keyed by spec) name a row the same way.
    """
    return spec


def table1_wide(long: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """Table I: one row per (dataset, image type, classifier, gallery), models + Average in %.

    Average is the mean over the models that ran (the paper's: all ten). Row order follows
    ``long``'s order.
    """
    present = [m for m in models if m in set(long["model"])]
    wide = long.pivot_table(index=ROW_KEYS, columns="model", values="accuracy_mean")
    order = pd.MultiIndex.from_frame(long[ROW_KEYS].drop_duplicates())  # pivoting sorts; restore
    wide = wide.reindex(index=order, columns=present) * 100.0
    wide["Average"] = wide.mean(axis=1)
    wide = wide.reset_index()
    wide["image_type"] = wide["image_type"].map(image_type_label)
    return wide


def paper_matches(
    long: pd.DataFrame, paper: pd.DataFrame, image_types: Mapping[str, str]
) -> pd.Series:
    """The paper's accuracy for each long-form row whose every factor is exactly the paper's.

    A row matches when its dataset is one the paper evaluated in full (``celeba``, ``lfw``), its
    model is one of the paper's ten, its gallery is ``raw`` and its image type is mapped to a paper
    image type in ``image_types`` (``{"raw": "Raw"}`` by default; map a protector spec to
    ``"Captured"`` only if it *is* the paper's released ISP). Everything else gets NaN.
    """
    lookup = {
        (r.dataset, r.image_type, r.classifier, r.gallery, r.model): float(r.accuracy)
        for r in paper.itertuples()
    }
    values = []
    for r in long.itertuples():
        key = (r.dataset, image_types.get(r.image_type), r.classifier, r.gallery, r.model)
        ok = r.dataset in PAPER_DATASETS and r.model in PAPER_MODELS
        values.append(lookup.get(key, math.nan) if ok else math.nan)
    return pd.Series(values, index=long.index, name="paper_accuracy")


def paper_reference_average(
    wide: pd.DataFrame, paper: pd.DataFrame, image_types: Mapping[str, str]
) -> tuple[pd.Series, pd.Series]:
    """The paper's Average (%) for the closest paper row of each wide row, with a label saying
    which paper row it is. This is a reference, not a like-for-like comparison."""
    averages = paper[paper["model"] == "average"]
    lookup = {(r.dataset, r.image_type, r.classifier, r.gallery): r for r in averages.itertuples()}
    values, labels = [], []
    reverse = {image_type_label(k): v for k, v in image_types.items()}
    for r in wide.itertuples():
        key = (REFERENCE_DATASETS.get(r.dataset), reverse.get(r.image_type), r.classifier, r.gallery)
        hit = lookup.get(key)
        values.append(float(hit.accuracy) * 100.0 if hit is not None else math.nan)
        labels.append(
            f"paper {hit.paper_dataset}/{hit.image_type}/{hit.classifier}"
            + ("/re-enrolled" if hit.gallery == "protected" else "")
            + ", mean of its 10 models"
            if hit is not None else ""
        )
    return pd.Series(values, index=wide.index), pd.Series(labels, index=wide.index)


def add_paper_columns(
    long: pd.DataFrame, wide: pd.DataFrame, paper: pd.DataFrame, image_types: Mapping[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``--compare paper``: exact per-model matches beside ours, plus the labelled paper Average."""
    long = long.copy()
    long["paper_accuracy"] = paper_matches(long, paper, image_types)
    wide = wide.copy()
    matched = long.dropna(subset=["paper_accuracy"])
    for model in [m for m in wide.columns if m in set(matched["model"])]:
        sub = matched[matched["model"] == model].copy()
        sub["image_type"] = sub["image_type"].map(image_type_label)
        col = sub.set_index(ROW_KEYS)["paper_accuracy"] * 100.0
        position = list(wide.columns).index(model) + 1
        wide.insert(position, f"{model} (paper)", [col.get(tuple(k), math.nan)
                                                  for k in wide[ROW_KEYS].itertuples(index=False)])
    ref, label = paper_reference_average(wide, paper, image_types)
    wide["Paper Average (reference)"] = ref
    wide["Paper reference row"] = label
    return long, wide


# Table II ------------------------------------------------------------------------------
def blackbox_summary(accuracy: Mapping[str, float], white_box: str) -> tuple[float, float]:
    """(mean accuracy of the black-box models, that mean / the white-box accuracy).

    The ratio is NaN when the white-box accuracy is 0 (undefined) or there is no black-box model.
    """
    if white_box not in accuracy:
        raise KeyError(f"white-box model {white_box!r} has no accuracy")
    black = [v for k, v in accuracy.items() if k != white_box]
    average = float(np.mean(black)) if black else math.nan
    wb = float(accuracy[white_box])
    ratio = average / wb if wb > 0 and not math.isnan(average) else math.nan
    return average, ratio


AVERAGE_ROW = "Average Black-box Accuracy"
RATIO_ROW = "Accuracy Ratio (Black-box/White-box)"


def table2_long(accuracy: Mapping[str, Mapping[str, float]], std: Mapping[str, Mapping[str, float]],
                white_box: str) -> pd.DataFrame:
    """Long-form Table II: ``accuracy[source][model]`` -> rows (row, role, source, value, std, quantity)."""
    rows: list[dict[str, Any]] = []
    for source, per_model in accuracy.items():
        for model, value in per_model.items():
            rows.append({"row": model, "role": "white-box" if model == white_box else "black-box",
                         "source": source, "quantity": "accuracy", "value": value,
                         "std": std[source][model]})
        average, ratio = blackbox_summary(per_model, white_box)
        rows.append({"row": AVERAGE_ROW, "role": "summary", "source": source, "quantity": "accuracy",
                     "value": average, "std": math.nan})
        rows.append({"row": RATIO_ROW, "role": "summary", "source": source, "quantity": "ratio",
                     "value": ratio, "std": math.nan})
    return pd.DataFrame(rows)


def table2_wide(long: pd.DataFrame, sources: Sequence[str]) -> pd.DataFrame:
    """The paper's layout: white-box row first, black-box rows by the first source's accuracy
    (ascending, as in the paper), then Average and Ratio; values in %."""
    wide = long.pivot_table(index=["row", "role"], columns="source", values="value", sort=False)
    wide = wide.reindex(columns=list(sources)).reset_index()
    role_order = {"white-box": 0, "black-box": 1, "summary": 2}
    summary_order = {AVERAGE_ROW: 0.0, RATIO_ROW: 1.0}
    first = wide[sources[0]] if sources else pd.Series(0.0, index=wide.index)
    wide["_r"] = wide["role"].map(role_order)
    wide["_v"] = [summary_order.get(r, 0.0) if role == "summary" else v
                  for r, role, v in zip(wide["row"], wide["role"], first)]
    wide = wide.sort_values(["_r", "_v"], kind="stable").drop(columns=["_r", "_v"]).reset_index(drop=True)
    for source in sources:  # accuracies and the ratio in %, as printed in the paper (1093%)
        wide[source] = wide[source] * 100.0
    return wide.rename(columns={"row": "model"})
