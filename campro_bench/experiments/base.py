"""What an experiment is: a function of (spec, context) that returns tables and figures.

Experiments are registered in :data:`~campro_bench.registries.EXPERIMENTS` with the name of their
default protocol::

    @EXPERIMENTS.register("e1", protocol="e1", description="Table I: ...")
    def run_e1(spec: dict, ctx: RunContext) -> ExperimentResult: ...

The :class:`~campro_bench.context.RunContext` they receive lives below them (the protocols of
:mod:`campro_bench.privacy` take it too) and is re-exported here. Experiments never write files
themselves: the runner writes the returned tables (CSV + Markdown), figures (PNG) and the
manifest, atomically, into the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from ..context import RunContext

__all__ = ["Experiment", "ExperimentResult", "RunContext"]


@dataclass
class ExperimentResult:
    """Tables (written as ``NAME.csv`` and ``NAME.md``), figures (``NAME.png``) and notes."""

    tables: dict[str, pd.DataFrame]
    figures: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    extra_files: dict[str, bytes] = field(default_factory=dict)


class Experiment(Protocol):
    def __call__(self, spec: dict[str, Any], ctx: RunContext) -> ExperimentResult: ...
