"""Peak memory of one protector call, per input byte: the working factors of ``protectors/*.py``.

Usage::

    python bench/protect_memory.py [--side 2000] [SPEC ...]

Each SPEC runs in a fresh process: a random ``1 x 3 x side x side`` float32 batch is made, the
process's peak resident size is reset (``/proc/self/clear_refs``, Linux), the protector runs once
(as ``protect`` runs it: ``torch.inference_mode``), and the rise of the peak over the resident size
before the call is divided by the input batch's bytes. That ratio is the protector's
``working_factor`` (the input itself is not counted; the output is). Prints one JSON line per spec.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

DEFAULT_SPECS = ["raw", "invert", "lowres:factor=16", "defocus:kernel=25,sigma=7", "campro-isp:preset=casia-adv",
                 "campro-enhanced:preset=casia-adv", "lensless", "lensless-wiener"]

CHILD = r"""
import json, sys, torch
from campro_bench.protectors import build_protector

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
spec, side = sys.argv[1], int(sys.argv[2])
protector = build_protector(spec).eval()
with torch.inference_mode():
    protector(torch.rand(1, 3, 64, 64))  # libraries and kernels loaded
    x = torch.rand(1, 3, side, side)
    before = status("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")
    out = protector(x)
    peak = status("VmHWM")
print(json.dumps({"spec": spec, "side": side, "input_mb": x.numel() * 4 / 1e6, "peak_rise_mb": (peak - before) / 1e6,
                  "working_factor": round((peak - before) / (x.numel() * 4), 2), "threads": torch.get_num_threads()}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=2000)
    parser.add_argument("specs", nargs="*", default=DEFAULT_SPECS)
    args = parser.parse_args()
    for spec in args.specs:
        done = subprocess.run([sys.executable, "-c", CHILD, spec, str(args.side)], capture_output=True, text=True)
        print(done.stdout.strip() or json.dumps({"spec": spec, "error": done.stderr.strip().splitlines()[-1:]}),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
