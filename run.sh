#!/usr/bin/env bash
# One command for a fresh machine: install campro-bench into .venv, then run the main job
# (experiment E1, Table I, with the protocol in protocols/e1.toml) on the data root in
# $CAMPRO_BENCH_DATA. Extra arguments go to `campro-bench run e1`.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install.sh
exec .venv/bin/campro-bench run e1 "$@"
