"""Shared test set-up.

Tests read the real datasets from ``CAMPRO_BENCH_DATA``; when it is unset they use
``../shared/datasets`` beside the checkout (the layout of CI). Converted models, aligned crops and
embeddings are cached in ``CAMPRO_BENCH_CACHE`` (default ``.cache/tests`` in the checkout) so a
second run of the suite reuses them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

if not os.environ.get("CAMPRO_BENCH_DATA"):
    shared = REPO.parent / "shared" / "datasets"
    if shared.is_dir():
        os.environ["CAMPRO_BENCH_DATA"] = str(shared)
os.environ.setdefault("CAMPRO_BENCH_CACHE", str(REPO / ".cache" / "tests"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data root; the suite requires it (CI provides ../shared/datasets)."""
    value = os.environ.get("CAMPRO_BENCH_DATA")
    if not value or not Path(value).is_dir():
        pytest.fail("CAMPRO_BENCH_DATA is not set to the shared datasets folder")
    return Path(value)


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    path = Path(os.environ["CAMPRO_BENCH_CACHE"])
    path.mkdir(parents=True, exist_ok=True)
    return path
