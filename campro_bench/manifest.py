"""Run manifests: everything needed to know how a table was produced.

A manifest records the command, the resolved spec, every seed, package versions, the git commit
of campro-bench, dataset fingerprints, model weight hashes and per-stage timings. It is written
as ``manifest.json`` beside the tables of each run. Data, caches and protocols are named
relative to their roots, and inputs (spec option values, the protocol path, the command) replay to
the same files: an input outside the cache, models and protocols folders keeps its absolute path
(:func:`campro_bench.provenance.portable_paths`; ``path_bases`` states the bases). The manifest sits below the experiments: the
runner, the protocols of :mod:`campro_bench.privacy` and the training commands all record into one.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .io.outfolder import clean_relative
from .provenance import PATH_BASES, default_roots, environment, input_roots, portable_paths

WRITTEN_BY = "campro-bench"
"""The ``written_by`` mark of a manifest: ``run --overwrite`` replaces only folders that carry it."""


def written_by_campro_bench(folder: Path) -> bool:
    """Whether ``folder`` holds the ``manifest.json`` of a campro-bench run.

    Manifests written before the ``written_by`` mark are recognised by their own fields
    (``experiment``, ``spec`` and ``environment.campro_bench_commit``).
    """
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    if manifest.get("written_by") == WRITTEN_BY:
        return True
    env = manifest.get("environment")
    return ("experiment" in manifest and "spec" in manifest and isinstance(env, dict)
            and "campro_bench_commit" in env)


def written_files(folder: Path) -> list[str] | None:
    """The files (relative paths) that the run whose manifest is in ``folder`` wrote there, besides
    ``manifest.json``; ``None`` when the manifest does not list them (written before the list
    existed, or edited so that an entry is not a clean relative path inside the folder)."""
    if not written_by_campro_bench(folder):
        return None
    listed = json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("files")
    if not isinstance(listed, list):
        return None
    names = [clean_relative(name) for name in listed]
    return None if any(name is None for name in names) else [n for n in names if n is not None]


@dataclass
class Manifest:
    """Collects provenance while an experiment runs; :meth:`to_dict` gives the JSON."""

    experiment: str
    spec: dict[str, Any]
    command: list[str] = field(default_factory=lambda: list(sys.argv))
    seeds: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    started: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    path_roots: dict[str, str] = field(default_factory=dict)
    """Folders whose paths are written relative to them (see :func:`~campro_bench.provenance.default_roots`)."""
    input_roots: dict[str, str] = field(default_factory=dict)
    """The roots that apply to inputs too (see :func:`~campro_bench.provenance.input_roots`)."""
    files: list[str] = field(default_factory=list)
    """The files the run wrote beside the manifest (relative paths): ``run --overwrite`` replaces
    these and nothing else."""

    @contextlib.contextmanager
    def timer(self, stage: str) -> Iterator[None]:
        """Add the wall time of the ``with`` body to ``timings[stage]`` (seconds)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start

    def to_dict(self) -> dict[str, Any]:
        return portable_paths(self._raw_dict(), self.path_roots or default_roots(),
                              self.input_roots or input_roots())

    def _raw_dict(self) -> dict[str, Any]:
        return {
            "written_by": WRITTEN_BY,
            "experiment": self.experiment,
            "command": self.command,
            "started": self.started,
            "finished": datetime.now(timezone.utc).isoformat(),
            "spec": self.spec,
            "seeds": self.seeds,
            "data": self.data,
            "models": self.models,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "notes": self.notes,
            "environment": environment(),
            "path_bases": PATH_BASES,
            "files": self.files,
        }
