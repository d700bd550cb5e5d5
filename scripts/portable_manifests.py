"""Rewrite committed run manifests so that they hold no absolute path of the machine that ran them.

Usage (the roots are the folders of the machine that wrote the manifests)::

    python scripts/portable_manifests.py --root DATA_ROOT= --root CACHE_DIR= \
        --root CHECKOUT/campro_bench/protocols=protocols --root CHECKOUT= MANIFEST.json ...

Each ``--root FOLDER=NAME`` makes paths under FOLDER relative to it (prefixed with NAME when NAME is
not empty); any other absolute path keeps only its last component, except inputs (spec option
values, the protocol path, the command), which keep their absolute path so that they replay
(:func:`campro_bench.provenance.portable_paths`). Only strings change: tables are not touched, and
numbers, seeds and hashes stay as they are. Files are rewritten atomically; a file already portable
is left byte-identical.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from campro_bench.io.atomic import atomic_write_text
from campro_bench.provenance import has_absolute_path, portable_paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", action="append", default=[], help="FOLDER=NAME (repeatable)")
    parser.add_argument("manifests", nargs="+", type=Path)
    args = parser.parse_args()
    roots = dict(item.split("=", 1) for item in args.root)
    for path in args.manifests:
        original = json.loads(path.read_text(encoding="utf-8"))
        if not has_absolute_path(original):
            continue
        rewritten = portable_paths(original, roots)
        atomic_write_text(path, json.dumps(rewritten, indent=2) + "\n")
        print(f"{path}: {len(has_absolute_path(original))} absolute paths rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
