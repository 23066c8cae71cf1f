#!/usr/bin/env bash
# Quick start, second command: set up whatever is missing, lint the tree, then run the test
# suite, reporting every skip with its reason (-rs) and the slowest tests (--durations).
# --quick leaves out the tests marked slow (those taking more than a few seconds: training runs,
# tools in subprocesses), for the inner loop. Other arguments go to pytest (e.g. -k dct).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
tier=()
if [ "${1:-}" = "--quick" ]; then
  shift
  tier=(-m "not slow")
fi
bash "$ROOT/tools/setup.sh"
bash "$ROOT/tools/lint.sh"
cd "$ROOT"
# One worker per core (FREQDET_TEST_WORKERS to change it, 0 for none), each file's tests in one worker.
workers="${FREQDET_TEST_WORKERS:-$(nproc)}"
parallel=()
[ "$workers" -gt 1 ] && parallel=(-n "$workers" --dist loadfile)
exec "$PY" -m pytest -q -rs --durations=25 --timeout 900 "${parallel[@]}" "${tier[@]}" tests "$@"
