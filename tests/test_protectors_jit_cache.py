"""``defocus``'s numba kernels are compiled once and then loaded from disk by every later process.

Each ``campro-bench protect`` call is a new process; before the on-disk cache each one paid the
kernels' compilation again (seconds, silently). Two fresh processes share an empty cache folder: the
first compiles (a cache miss) and writes numba's index and machine-code files under
``<cache>/numba``; the second loads them (a hit) and compiles nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import json, torch
from campro_bench.protectors import Protector, fast_blur
from campro_bench.registries import PROTECTORS
protector = PROTECTORS.build("defocus:kernel=9,sigma=3", Protector)
with torch.no_grad():
    out = protector(torch.rand(1, 3, 24, 20))
kernel = fast_blur.parallel_jit(fast_blur._separable, "probe")
print(json.dumps({"hits": sum(kernel.stats.cache_hits.values()), "misses": sum(kernel.stats.cache_misses.values()),
                  "shape": list(out.shape)}))
"""


def probe(cache: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env |= {"CAMPRO_BENCH_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=900,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_compiled_kernel(tmp_path: Path) -> None:
    first = probe(tmp_path)
    assert first == {"hits": 0, "misses": 1, "shape": [1, 3, 24, 20]}
    written = {p.suffix for p in (tmp_path / "numba").rglob("fast_blur._separable-*")}
    assert written == {".nbi", ".nbc"}  # numba's index and machine code, in the campro-bench cache
    second = probe(tmp_path)
    assert second == {"hits": 1, "misses": 0, "shape": [1, 3, 24, 20]}
