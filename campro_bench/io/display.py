"""Tables as people read them: Markdown without floating-point rounding noise.

The rule for noise: a float whose magnitude is below :data:`ROUNDING_NOISE` (1e-12) is shown as 0.
Every quantity in these tables (accuracies, AP, PSNR in dB, milliseconds, counts) means something
at 1e-6 or above, while float64 arithmetic on values of order one leaves residues of order 1e-16
(the standard deviation of ten equal accuracies comes out as 8.5e-18, not 0). Twelve decimal orders
lie between the two, so the threshold hides only noise. It is applied to what is displayed (printed
tables, Markdown files, HTML reports); CSV files keep every value as computed.
"""

from __future__ import annotations

import math

import pandas as pd

ROUNDING_NOISE = 1e-12
"""Floats of smaller magnitude are rounding noise and displayed as 0."""


def denoise(value: object) -> object:
    """``value`` with rounding noise (and -0.0) replaced by 0.0; anything else unchanged."""
    if isinstance(value, float) and math.isfinite(value) and abs(value) < ROUNDING_NOISE:
        return 0.0
    return value


def denoised(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` whose float columns show rounding noise as 0."""
    out = table.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            out[column] = out[column].map(denoise)
        elif pd.api.types.is_object_dtype(out[column]):
            out[column] = out[column].map(denoise)
    return out


def markdown(table: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """``table`` as a Markdown table with rounding noise shown as 0 and no index."""
    return denoised(table).to_markdown(index=False, floatfmt=floatfmt)
