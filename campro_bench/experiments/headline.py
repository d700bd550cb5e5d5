"""The README's headline table, rendered from a trade-off run's ``tradeoff.csv``.

One row per protector: the black-box accuracy (mean over models), the worst case with the
protector as it is (colour; "≥" where no audit attacked it, so only a lower bound), the unbiased
verdict over colour and grey with its 95 % interval and the condition it came from ("–" where no
audit under conditions lists the protector), the attack behind the colour worst case, and person AP
with its bootstrap interval ("–": not measured on the utility set). It only formats the table's
columns; a ``tradeoff.csv`` written before the condition columns existed renders with "–" there.
``python scripts/headline_table.py baselines/tradeoff/tradeoff.csv`` prints it.
"""

from __future__ import annotations

import re

import pandas as pd

from ..errors import CamproError
from .tradeoff_audits import number

HEADER = ("| protector | black box % | worst case % (colour) | worst over colour and grey %, unbiased [95 % interval] "
          "| worst attack | person AP [95 % interval] |")
ALIGN = "|---|---:|---:|---:|---|---:|"
DASH = "–"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _with_interval(value: float, low: float, high: float, fmt: str) -> str:
    if pd.isna(value):
        return DASH
    text = format(value, fmt)
    return text if pd.isna(low) or pd.isna(high) else f"{text} [{format(low, fmt)}, {format(high, fmt)}]"


def attack_name(source: str) -> str:
    """A ``worst_case_source`` without the folder it came from: ``this run, raw gallery`` ->
    ``best model, raw gallery``; ``audit PATH: cheap / x / sface`` -> ``audit, cheap / x / sface``."""
    if source.startswith("this run, "):
        return "best model, " + source.removeprefix("this run, ")
    return re.sub(r"^(audit|E5) \S+: ", r"\1, ", source)


def over_conditions(row: pd.Series) -> str:
    """The unbiased verdict over conditions with its interval and condition, the upper bound where
    the audit had no SELECT identities, or "–" where no audit under conditions lists the protector."""
    verdict = number(row, "audit_worst_over_conditions_verdict")
    if pd.notna(verdict):
        interval = [100 * number(row, f"audit_worst_over_conditions_verdict_ci_{s}") for s in ("low", "high")]
        condition = str(row.get("audit_worst_over_conditions_chosen", "")).split(": ", 1)[0]
        return f"{_with_interval(100 * verdict, *interval, '.1f')} ({condition})"
    upper = number(row, "audit_worst_over_conditions")
    return f"upper bound {_pct(upper)}" if pd.notna(upper) else DASH


def headline_row(row: pd.Series) -> str:
    colour = "worst_case_colour" if "worst_case_colour" in row else "worst_case"
    source = row.get(f"{colour}_source", "")
    bound = "≥ " if pd.isna(number(row, "audit_worst_case")) else ""
    ap = _with_interval(number(row, "AP"), number(row, "AP_lo"), number(row, "AP_hi"), ".3f")
    cells = [f"`{row['spec']}`", _pct(number(row, "accuracy")), f"{bound}{_pct(number(row, colour))}",
             over_conditions(row), attack_name(str(source) if pd.notna(source) else ""), ap]
    return "| " + " | ".join(cells) + " |"


def headline_table(table: pd.DataFrame) -> str:
    """The Markdown table (header, alignment, one line per row of ``table``), no trailing newline."""
    return "\n".join([HEADER, ALIGN, *(headline_row(row) for _, row in table.iterrows())])


SECTION = "## Headline results"
TABLE_START = "| protector | black box % |"


def _table_span(text: str) -> tuple[int, int]:
    """Where the headline table lies in a README: from its header line (the first after
    "## Headline results") to the blank line that ends it."""
    section = text.find(SECTION)
    start = text.find(TABLE_START, section) if section >= 0 else -1
    if start < 0:
        raise CamproError(f"no table starting '{TABLE_START}' under '{SECTION}'")
    end = text.find("\n\n", start)
    return start, len(text.rstrip("\n")) if end < 0 else end


def readme_table(text: str) -> str:
    """The headline table of a README's text."""
    start, end = _table_span(text)
    return text[start:end]


def replace_table(text: str, table: str) -> str:
    """A README's text with its headline table replaced by ``table`` (all else kept)."""
    start, end = _table_span(text)
    return text[:start] + table + text[end:]
