#!/usr/bin/env bash
# Quick start, first command: set up whatever is missing, then run the main job on the
# built-in demo data: train Mask R-CNN with DCT inputs on the CPU (about 15 minutes on
# 2 cores), print COCO box and mask AP on freqdet_demo_val, and draw predictions to
# output/demo/mask_rcnn_dct_demo/predictions.png. Extra arguments go to tools/train_net.py
# (e.g. --resume, or config overrides such as SOLVER.MAX_ITER 100).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$ROOT/tools/setup.sh"
cd "$ROOT"
exec "$PY" -W ignore::DeprecationWarning -W ignore::FutureWarning tools/train_net.py \
  --config-file configs/demo/mask_rcnn_dct_demo.yaml "$@"
