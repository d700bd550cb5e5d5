"""Experiments E1-E5 and friends: declarative specs, a runner, manifests and tables."""

from .base import ExperimentResult, RunContext
from .manifest import Manifest
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
