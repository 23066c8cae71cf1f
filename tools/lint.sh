#!/usr/bin/env bash
# Lint and format check of the whole tree with ruff (configured in pyproject.toml), as CI runs
# it; tools/test.sh calls it before the tests. To fix what can be fixed:
#   .venv/bin/ruff format freqdet tools tests configs setup.py
#   .venv/bin/ruff check --fix freqdet tools tests configs setup.py
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
RUFF="$VENV/bin/ruff"
[ -x "$RUFF" ] || RUFF=ruff
PYTHON_FILES=(freqdet tools tests configs setup.py)
"$RUFF" check "${PYTHON_FILES[@]}"
"$RUFF" format --check "${PYTHON_FILES[@]}"
