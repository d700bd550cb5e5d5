"""Print (or write into the README) the headline table of a trade-off run's ``tradeoff.csv``.

Usage, from the repository root::

    python scripts/headline_table.py baselines/tradeoff/tradeoff.csv            # print the table
    python scripts/headline_table.py baselines/tradeoff/tradeoff.csv --readme README.md

With ``--readme`` the table under "## Headline results" (from its header line to the next blank
line) is replaced in place, the rest of the file kept byte for byte. The rendering is
:func:`campro_bench.experiments.headline.headline_table`; ``tests/test_readme.py`` checks that the
README's table is the rendering of the committed ``baselines/tradeoff/tradeoff.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from campro_bench.errors import CamproError
from campro_bench.experiments.headline import headline_table, replace_table
from campro_bench.io.atomic import atomic_write_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tradeoff_csv", type=Path, help="a trade-off run's tradeoff.csv")
    parser.add_argument("--readme", type=Path, help="replace the headline table of this README in place")
    args = parser.parse_args(argv)
    try:
        if not args.tradeoff_csv.is_file():
            raise CamproError(f"{args.tradeoff_csv} does not exist")
        table = headline_table(pd.read_csv(args.tradeoff_csv))
        if args.readme is None:
            print(table)
        else:
            atomic_write_text(args.readme, replace_table(args.readme.read_text(encoding="utf-8"), table))
    except (CamproError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
