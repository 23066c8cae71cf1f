#!/usr/bin/env bash
# Quick start, second command: set up whatever is missing, lint the tree, then run the test
# suite. Extra arguments go to pytest (e.g. -k dct).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$ROOT/tools/setup.sh"
bash "$ROOT/tools/lint.sh"
cd "$ROOT"
exec "$PY" -m pytest -q --timeout 900 tests "$@"
