# Paths shared by tools/setup.sh, tools/demo.sh and tools/test.sh (sourced, not run).
# FREQDET_VENV picks another virtual environment; PYTHON the interpreter that creates it.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FREQDET_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
PYTHON="${PYTHON:-python3}"
