#!/usr/bin/env bash
# Quick start, second command: set up whatever is missing, lint the tree, then run the test
# suite, reporting every skip with its reason (-rs) and the slowest tests (--durations). Extra
# arguments go to pytest (e.g. -k dct).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$ROOT/tools/setup.sh"
bash "$ROOT/tools/lint.sh"
cd "$ROOT"
exec "$PY" -m pytest -q -rs --durations=25 --timeout 900 tests "$@"
