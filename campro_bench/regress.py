"""Compare a result table with a baseline table, cell by cell, within an absolute tolerance.

Generic over CSVs: rows are matched on key columns (by default every column that is not numeric
in either file; or the columns given with ``--key``), and every other column present in both files
is compared numerically. A cell *moved* when ``|result - baseline| > tol``, or when exactly one of
them is missing (NaN). Rows or columns present on one side only are reported too; any finding
makes the comparison fail. Used by ``campro-bench regress`` and the CI regression tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from .errors import CamproError, InvalidFileError, MissingFileError


@dataclass(frozen=True)
class CellChange:
    key: tuple[str, ...]
    column: str
    result: float
    baseline: float

    @property
    def delta(self) -> float:
        return self.result - self.baseline


@dataclass
class RegressionReport:
    """What differs between a result and a baseline table."""

    keys: list[str]
    compared_columns: list[str]
    rows_compared: int
    tol: float
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

    def lines(self) -> list[str]:
        """One line per finding, then a summary line."""
        out: list[str] = []

        def name(key: tuple[str, ...]) -> str:
            return ", ".join(f"{k}={v}" for k, v in zip(self.keys, key))

        for c in self.changed:
            out.append(f"changed: [{name(c.key)}] {c.column}: {c.baseline:.6g} -> {c.result:.6g} "
                       f"(delta {c.delta:+.6g}, tol {self.tol:g})")
        out += [f"missing row (in baseline only): [{name(k)}]" for k in self.missing_rows]
        out += [f"extra row (in result only): [{name(k)}]" for k in self.extra_rows]
        out += [f"missing column (in baseline only): {c}" for c in self.missing_columns]
        out += [f"extra column (in result only): {c}" for c in self.extra_columns]
        verdict = "OK" if self.ok else "FAILED"
        out.append(
            f"{verdict}: {self.rows_compared} rows x {len(self.compared_columns)} numeric columns compared "
            f"on keys ({', '.join(self.keys) or 'none'}); max |delta| {self.max_abs_delta:.3g}, tol {self.tol:g}; "
            f"{len(self.changed)} cells moved, {len(self.missing_rows)} rows missing, {len(self.extra_rows)} extra, "
            f"{len(self.missing_columns)} columns missing, {len(self.extra_columns)} extra"
        )
        return out


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"table {path} does not exist")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InvalidFileError(f"cannot read {path} as CSV: {exc}") from exc


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
    tol: float = 0.01,
    keys: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
) -> RegressionReport:
    """Compare ``result`` with ``baseline``; see the module docstring."""
    if tol < 0 or math.isnan(tol):
        raise CamproError(f"tolerance must be >= 0, got {tol}")
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
    report = RegressionReport(keys, compared, 0, tol, missing_columns=missing_cols, extra_columns=extra_cols)
    report.missing_rows = [k for k in base_idx if k not in res_idx]
    report.extra_rows = [k for k in res_idx if k not in base_idx]
    for key, bi in base_idx.items():
        ri = res_idx.get(key)
        if ri is None:
            continue
        report.rows_compared += 1
        for c in compared:
            b, r = float(baseline.at[bi, c]), float(result.at[ri, c])
            if math.isnan(b) and math.isnan(r):
                continue
            if math.isnan(b) or math.isnan(r):
                report.changed.append(CellChange(key, c, r, b))
                continue
            delta = abs(r - b)
            report.max_abs_delta = max(report.max_abs_delta, delta)
            if delta > tol:
                report.changed.append(CellChange(key, c, r, b))
    return report


def regress_files(result: str | Path, baseline: str | Path, **kwargs: object) -> RegressionReport:
    """:func:`compare_tables` on two CSV files."""
    return compare_tables(read_table(result), read_table(baseline), **kwargs)  # type: ignore[arg-type]
