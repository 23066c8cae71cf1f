#!/usr/bin/env bash
# Quick start, first command: set up whatever is missing, then run the main job on the
# built-in demo data: the frequency pipeline on a real photo, written as a picture of its
# channels to output/demo/dct_channels.png. Extra arguments go to tools/visualize_dct.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$ROOT/tools/setup.sh"
cd "$ROOT"
exec "$PY" tools/visualize_dct.py --output output/demo/dct_channels.png "$@"
