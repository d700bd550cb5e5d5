"""Experiments E1-E5 and friends: declarative specs, a runner, manifests and tables."""

from ..context import RunContext
from ..manifest import Manifest
from .base import ExperimentResult
from .runner import run_experiment
from .spec import apply_overrides, load_spec

__all__ = [
    "ExperimentResult",
    "Manifest",
    "RunContext",
    "apply_overrides",
    "load_spec",
    "run_experiment",
]
