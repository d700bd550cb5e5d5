"""Summaries of per-repeat accuracies: mean, sample standard deviation and a t-interval."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class AccuracySummary:
    """Top-1 accuracy over repeats.

    ``ci_low``/``ci_high`` form a two-sided Student-t interval over the repeats
    (``mean +- t_{(1+confidence)/2, R-1} * std / sqrt(R)``), clipped to [0, 1]: it describes the
    variation due to the random gallery/probe draws for the fixed dataset and models, not sampling
    of new identities. With one repeat the standard deviation and interval are NaN.
    """

    mean: float
    std: float
    ci_low: float
    ci_high: float
    repeats: int
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(accuracies: np.ndarray | list[float], confidence: float = 0.95) -> AccuracySummary:
    """Mean, std (ddof=1) and t-interval of per-repeat accuracies."""
    values = np.asarray(accuracies, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("summarize needs a non-empty 1-D array of accuracies")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    mean = float(values.mean())
    if values.size < 2:
        return AccuracySummary(mean, math.nan, math.nan, math.nan, 1, confidence)
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, values.size - 1)) * std / math.sqrt(values.size)
    low, high = max(0.0, mean - half), min(1.0, mean + half)
    return AccuracySummary(mean, std, low, high, int(values.size), confidence)
