#!/usr/bin/env bash
# Lint and format check of the whole tree with ruff (configured in pyproject.toml), as CI runs
# it; tools/test.sh calls it before the tests. To fix what can be fixed:
#   .venv/bin/ruff format freqdet tools tests && .venv/bin/ruff check --fix freqdet tools tests
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
RUFF="$VENV/bin/ruff"
[ -x "$RUFF" ] || RUFF=ruff
"$RUFF" check freqdet tools tests
"$RUFF" format --check freqdet tools tests
