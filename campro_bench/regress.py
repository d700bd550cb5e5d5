"""Compare a result table with a baseline table, cell by cell, with a tolerance per column.

Generic over CSVs: rows are matched on key columns (by default every column that is not numeric
in either file; or the columns given with ``--key``), and every other column present in both files
is compared numerically. A cell *moved* when ``|result - baseline|`` exceeds that cell's tolerance,
or when exactly one of them is missing (NaN). Rows or columns present on one side only are reported
too; any finding makes the comparison fail. Used by ``campro-bench regress`` and the CI tests.

Two rules set the tolerances (:class:`AbsoluteRule`, :class:`ProbeFlipRule`):

* **absolute** (``--tol X`` alone): every numeric cell may move by at most ``X``. ``--tol 0`` asks
  for a bit-identical rerun, which holds on the machine that produced the baseline.
* **probe flips** (the default for identification tables, i.e. tables with ``accuracy_mean``,
  ``identities`` and ``repeats`` columns such as ``e1.csv``): tolerances are stated in *flipped
  probe decisions*. A row's accuracy is the mean over ``R`` repeats of ``correct / N`` with one
  probe per identity (``N`` = ``identities``), so a different CPU that rounds one protected pixel
  differently and flips one nearest-neighbour decision moves the mean by exactly ``1 / (N R)``.
  With a budget of ``k`` flips per repeat (``--flips k``, default 1, i.e. ``k R`` flips in all):

  - ``accuracy_mean`` (and the per-image ``*_detect_rate`` columns) may move by ``k / N``;
  - ``accuracy_std`` by ``k R / (N sqrt(R - 1))``, the largest change of a sample standard
    deviation when ``k R`` flips fall anywhere among the repeats (``||delta||_2 <= ||delta||_1``);
  - ``ci_low`` / ``ci_high`` are derived columns (``mean +- t std / sqrt(R)``, clipped to [0, 1]),
    so they may move by the mean's tolerance plus ``t`` times the std's over ``sqrt(R)``; this is
    what used to make one flip fail a 0.01 tolerance;
  - structural columns (``identities``, ``repeats``, ``chance``) must match exactly;
  - any other numeric column is held to ``--tol`` (default 0.01).

  A real change (another protector, model, alignment or classifier) moves many probes, far more
  than one per repeat, and still fails: see ``tests/test_regress_rule.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import pandas as pd
from scipy import stats

from .errors import CamproError, InvalidFileError, MissingFileError


IDENTIFICATION_COLUMNS = ("accuracy_mean", "identities", "repeats")
STRUCTURAL_COLUMNS = ("identities", "repeats", "chance")
DEFAULT_TOL = 0.01
DEFAULT_FLIPS = 1.0
# Tables are written with 6 significant digits; a flip budget met exactly must not fail on that rounding.
CSV_ROUNDING = 1e-6


class ToleranceRule(Protocol):
    """How far one cell may move: ``tolerance(column, baseline_row)``."""

    def describe(self) -> str: ...

    def tolerance(self, column: str, row: pd.Series) -> float: ...


@dataclass(frozen=True)
class AbsoluteRule:
    """Every numeric cell may move by at most ``tol`` (``tol = 0``: bit-identical)."""

    tol: float = DEFAULT_TOL

    def __post_init__(self) -> None:
        if not self.tol >= 0:  # also rejects NaN
            raise CamproError(f"tolerance must be >= 0, got {self.tol}")

    def describe(self) -> str:
        return f"absolute tol {self.tol:g}"

    def tolerance(self, column: str, row: pd.Series) -> float:
        return self.tol


@dataclass(frozen=True)
class ProbeFlipRule:
    """Tolerances of an identification table in flipped probe decisions (see the module docstring).

    Attributes:
        flips: flipped probe decisions allowed per repeat, on average (``flips * R`` in all).
        other_tol: absolute tolerance of the numeric columns the rule does not know.
        confidence: the level of the t-interval in ``ci_low`` / ``ci_high``.
    """

    flips: float = DEFAULT_FLIPS
    other_tol: float = DEFAULT_TOL
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if not self.flips >= 0:
            raise CamproError(f"--flips must be >= 0, got {self.flips}")
        if not self.other_tol >= 0:
            raise CamproError(f"tolerance must be >= 0, got {self.other_tol}")
        if not 0 < self.confidence < 1:
            raise CamproError(f"confidence must be in (0, 1), got {self.confidence}")

    def describe(self) -> str:
        return f"{self.flips:g} flipped probe(s) per repeat, other columns tol {self.other_tol:g}"

    def mean_tolerance(self, identities: int) -> float:
        return self.flips / identities

    def std_tolerance(self, identities: int, repeats: int) -> float:
        if repeats < 2:
            return 0.0  # one repeat: the std is NaN on both sides
        return self.flips * repeats / (identities * math.sqrt(repeats - 1))

    def interval_tolerance(self, identities: int, repeats: int) -> float:
        if repeats < 2:
            return 0.0
        t = float(stats.t.ppf((1 + self.confidence) / 2, repeats - 1))
        return self.mean_tolerance(identities) + t * self.std_tolerance(identities, repeats) / math.sqrt(repeats)

    def tolerance(self, column: str, row: pd.Series) -> float:
        if column in STRUCTURAL_COLUMNS:
            return 0.0
        return self._budget(column, row) + CSV_ROUNDING

    def _budget(self, column: str, row: pd.Series) -> float:
        identities, repeats = _count(row, "identities"), _count(row, "repeats")
        if column == "accuracy_mean" or column.endswith("_detect_rate"):
            return self.mean_tolerance(identities)
        if column == "accuracy_std":
            return self.std_tolerance(identities, repeats)
        if column in ("ci_low", "ci_high"):
            return self.interval_tolerance(identities, repeats)
        return self.other_tol


def _count(row: pd.Series, column: str) -> int:
    """A whole number >= 1 from ``row[column]``; one error line for anything else (NaN, inf, 2.5, text)."""
    value = row[column]
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number >= 1 and number == int(number)):
        raise CamproError(f"column '{column}' must hold a whole number >= 1 in every row of the baseline, got {value}")
    return int(number)


def is_identification_table(table: pd.DataFrame) -> bool:
    """Whether ``table`` has the columns the probe-flip rule needs (as ``e1.csv`` does)."""
    return all(c in table.columns for c in IDENTIFICATION_COLUMNS)


def choose_rule(
    baseline: pd.DataFrame, *, tol: float | None = None, flips: float | None = None
) -> ToleranceRule:
    """The rule ``campro-bench regress`` applies.

    ``--tol`` alone means an absolute tolerance everywhere (``--tol 0``: bit-identical). Otherwise an
    identification table gets the probe-flip rule (``--flips``, default 1 per repeat; ``--tol`` then
    applies to its other columns), and any other table the absolute rule with ``--tol`` (default 0.01).
    """
    if flips is not None:
        if not is_identification_table(baseline):
            raise CamproError(
                f"--flips needs an identification table with columns {list(IDENTIFICATION_COLUMNS)}; "
                f"the baseline has {list(baseline.columns)}: use --tol"
            )
        return ProbeFlipRule(flips=flips, other_tol=DEFAULT_TOL if tol is None else tol)
    if tol is not None or not is_identification_table(baseline):
        return AbsoluteRule(DEFAULT_TOL if tol is None else tol)
    return ProbeFlipRule()


@dataclass(frozen=True)
class CellChange:
    key: tuple[str, ...]
    column: str
    result: float
    baseline: float
    tol: float

    @property
    def delta(self) -> float:
        return self.result - self.baseline


@dataclass
class RegressionReport:
    """What differs between a result and a baseline table."""

    keys: list[str]
    compared_columns: list[str]
    rows_compared: int
    rule: str
    changed: list[CellChange] = field(default_factory=list)
    missing_rows: list[tuple[str, ...]] = field(default_factory=list)  # in baseline only
    extra_rows: list[tuple[str, ...]] = field(default_factory=list)  # in result only
    missing_columns: list[str] = field(default_factory=list)  # in baseline only
    extra_columns: list[str] = field(default_factory=list)  # in result only
    max_abs_delta: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing_rows or self.extra_rows
                    or self.missing_columns or self.extra_columns)

    def summary(self) -> str:
        """The verdict in one line: what was compared, under which rule, and how much moved."""
        verdict = "OK" if self.ok else "FAILED"
        return (
            f"{verdict}: {self.rows_compared} rows x {len(self.compared_columns)} numeric columns compared "
            f"on keys ({', '.join(self.keys) or 'none'}); rule: {self.rule}; max |delta| {self.max_abs_delta:.3g}; "
            f"{len(self.changed)} cells moved, {len(self.missing_rows)} rows missing, {len(self.extra_rows)} extra, "
            f"{len(self.missing_columns)} columns missing, {len(self.extra_columns)} extra"
        )

    def findings(self) -> list[str]:
        """One line per moved cell, then per row or column found on one side only."""
        def name(key: tuple[str, ...]) -> str:
            return ", ".join(f"{k}={v}" for k, v in zip(self.keys, key))

        out = [f"changed: [{name(c.key)}] {c.column}: {c.baseline:.6g} -> {c.result:.6g} "
               f"(delta {c.delta:+.6g}, tol {c.tol:.6g})" for c in self.changed]
        out += [f"missing row (in baseline only): [{name(k)}]" for k in self.missing_rows]
        out += [f"extra row (in result only): [{name(k)}]" for k in self.extra_rows]
        out += [f"missing column (in baseline only): {c}" for c in self.missing_columns]
        out += [f"extra column (in result only): {c}" for c in self.extra_columns]
        return out

    def lines(self, show: int | None = None) -> list[str]:
        """The summary line first, then the findings: all of them, or the first ``show`` and a count of the rest."""
        found = self.findings()
        if show is None or len(found) <= show:
            return [self.summary(), *found]
        return [self.summary(), *found[:show], f"... and {len(found) - show} more (--show N lists more)"]


@dataclass(frozen=True)
class Comparability:
    """Whether two tables come from the same protocol, so that a cell-by-cell comparison means anything."""

    differences: list[str]

    @property
    def ok(self) -> bool:
        return not self.differences

    def line(self) -> str:
        """One line: the protocols differ, and how."""
        return "NOT COMPARABLE: the two tables come from different protocols: " + "; ".join(self.differences)


MIN_SHARED_ROWS = 0.5
"""Below this share of the baseline's rows found in the result, the tables are different protocols."""


def check_comparable(result: pd.DataFrame, baseline: pd.DataFrame, keys: Sequence[str] | None = None,
                     ignore: Sequence[str] = ()) -> Comparability:
    """Before any cell is compared: do both tables describe the same protocol?

    Identification tables must agree on their structural columns (``identities``, ``repeats``,
    ``chance``: another identity set, number of draws or gallery size makes every accuracy another
    quantity, and a delta of 80 between an identity count and an accuracy is meaningless); any tables
    must share their key columns and at least :data:`MIN_SHARED_ROWS` of the baseline's row keys.
    """
    differences = []
    for column in STRUCTURAL_COLUMNS:
        if column in result.columns and column in baseline.columns:
            ours, theirs = _values(result[column]), _values(baseline[column])
            if ours != theirs:
                differences.append(f"{column} {_show(ours)} vs baseline {_show(theirs)}")
    keys = [k for k in (list(keys) if keys else infer_keys(result, baseline)) if k not in set(ignore)]
    absent = [k for k in keys if k not in result.columns or k not in baseline.columns]
    if absent:
        differences.append(f"key column(s) {absent} missing on one side")
    elif keys and len(baseline):
        shared = len(_keyset(result, keys) & _keyset(baseline, keys))
        if shared < MIN_SHARED_ROWS * len(_keyset(baseline, keys)):
            differences.append(f"only {shared} of the baseline's {len(_keyset(baseline, keys))} rows "
                               f"({', '.join(keys)}) are in the result")
    return Comparability(differences)


def _values(series: pd.Series) -> list[str]:
    return sorted({f"{v:g}" if isinstance(v, float) else str(v) for v in series.dropna()})


def _show(values: list[str]) -> str:
    return values[0] if len(values) == 1 else "{" + ", ".join(values[:4]) + (", ...}" if len(values) > 4 else "}")


def _keyset(table: pd.DataFrame, keys: list[str]) -> set[tuple[str, ...]]:
    return {tuple(str(v) for v in row) for row in table[keys].itertuples(index=False)}


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"table {path} does not exist")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InvalidFileError(f"cannot read {path} as CSV: {exc}") from exc
    if table.empty:
        raise InvalidFileError(f"table {path} has no rows (a header only): nothing to compare")
    return table


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def infer_keys(result: pd.DataFrame, baseline: pd.DataFrame) -> list[str]:
    """Columns that are non-numeric in either table, in the baseline's column order."""
    columns = list(baseline.columns) + [c for c in result.columns if c not in baseline.columns]
    return [c for c in columns
            if (c in baseline and not _is_numeric(baseline[c])) or (c in result and not _is_numeric(result[c]))]


def _index(table: pd.DataFrame, keys: list[str], which: str) -> dict[tuple[str, ...], int]:
    missing = [k for k in keys if k not in table.columns]
    if missing:
        raise CamproError(f"key column(s) {missing} not in the {which} table (columns: {list(table.columns)})")
    index: dict[tuple[str, ...], int] = {}
    for i, row in enumerate(table[keys].itertuples(index=False)):
        key = tuple("" if (isinstance(v, float) and math.isnan(v)) else str(v) for v in row)
        if key in index:
            raise CamproError(f"duplicate key {dict(zip(keys, key))} in the {which} table; "
                              "pass --key options that identify each row")
        index[key] = i
    return index


def compare_tables(
    result: pd.DataFrame,
    baseline: pd.DataFrame,
    *,
    tol: float | None = None,
    flips: float | None = None,
    rule: ToleranceRule | None = None,
    keys: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
) -> RegressionReport:
    """Compare ``result`` with ``baseline``; see the module docstring.

    The tolerances come from ``rule`` when given, else from :func:`choose_rule` (``tol``, ``flips``).
    The probe-flip rule reads ``identities`` and ``repeats`` from the baseline row.
    """
    if rule is None:
        rule = choose_rule(baseline, tol=tol, flips=flips)
    ignored = set(ignore)
    keys = [k for k in (list(keys) if keys else infer_keys(result, baseline)) if k not in ignored]
    base_idx, res_idx = _index(baseline, keys, "baseline"), _index(result, keys, "result")
    value_cols = [c for c in baseline.columns if c not in keys and c not in ignored]
    missing_cols = [c for c in value_cols if c not in result.columns]
    extra_cols = [c for c in result.columns if c not in keys and c not in ignored and c not in baseline.columns]
    compared = [c for c in value_cols if c in result.columns]
    for c in compared:
        for table, which in ((baseline, "baseline"), (result, "result")):
            if not _is_numeric(table[c]):
                raise CamproError(f"column '{c}' is not numeric in the {which} table; make it a --key or --ignore it")
    report = RegressionReport(keys, compared, 0, rule.describe(), missing_columns=missing_cols,
                              extra_columns=extra_cols)
    report.missing_rows = [k for k in base_idx if k not in res_idx]
    report.extra_rows = [k for k in res_idx if k not in base_idx]
    for key, bi in base_idx.items():
        ri = res_idx.get(key)
        if ri is None:
            continue
        report.rows_compared += 1
        base_row = baseline.iloc[bi]
        for c in compared:
            b, r = float(baseline.at[bi, c]), float(result.at[ri, c])
            cell_tol = rule.tolerance(c, base_row)
            if math.isnan(b) and math.isnan(r):
                continue
            if math.isnan(b) or math.isnan(r):
                report.changed.append(CellChange(key, c, r, b, cell_tol))
                continue
            delta = abs(r - b)
            report.max_abs_delta = max(report.max_abs_delta, delta)
            if delta > cell_tol:
                report.changed.append(CellChange(key, c, r, b, cell_tol))
    return report


def regress_files(result: str | Path, baseline: str | Path, **kwargs: object) -> RegressionReport:
    """:func:`compare_tables` on two CSV files."""
    return compare_tables(read_table(result), read_table(baseline), **kwargs)  # type: ignore[arg-type]
