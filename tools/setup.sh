#!/usr/bin/env bash
# Set up everything freqdet needs, idempotently; a second run takes a second or two.
#
#   1. libjpeg-turbo's TurboJPEG library (Debian package libturbojpeg0, installed when root);
#   2. a virtual environment in .venv (FREQDET_VENV to move it), made with the base
#      interpreter's site-packages when that interpreter already imports Detectron2;
#   3. torch 2.14.1 + torchvision 0.29.1 unless the environment already has torch;
#   4. Detectron2: the importable one if there is one, else the fallback in
#      tools/d2_fallback/ (Detectron2 0.6's Python sources, no C++ extension);
#   5. freqdet itself (pip install -e .[test,deploy]) with PyTurboJPEG matched to the library, and
#      its two small C extensions: the JPEG coefficient reader (libjpeg's headers installed
#      when root) and the frequency transform's CPU kernel.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
STAMP="$VENV/.freqdet-setup"
PINS="$VENV/freqdet-constraints.txt"
TORCH_SPEC="${FREQDET_TORCH:-torch==2.14.1 torchvision==0.29.1}"

log() { printf 'freqdet setup: %s\n' "$*"; }

pip_install() {
  # This machine's pip config names local index folders that may not exist; drop that noise.
  "$PY" -m pip install --quiet --disable-pip-version-check -c "$PINS" "$@" \
    2> >(grep -v "is neither a file nor a directory" >&2)
}

fingerprint() {
  # Also whether libjpeg's headers are there: installing them later must rebuild freqdet.io._jpeg.
  { cat "$ROOT/setup.py" "$ROOT/tools/setup.sh" "$ROOT/tools/env.sh" "$ROOT"/tools/d2_fallback/* "$ROOT"/freqdet/dct/*.c "$ROOT"/freqdet/io/*.c
    [ -f /usr/include/jpeglib.h ] && echo "jpeglib.h present"; } | sha256sum | cut -c1-16
}

has_turbojpeg_lib() {
  { ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | grep 'libturbojpeg\.so\.0' >/dev/null
}

ensure_turbojpeg() {
  has_turbojpeg_lib && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing libjpeg-turbo's TurboJPEG library (Debian package libturbojpeg0)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends libturbojpeg0 >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 \
           && apt-get install -y -qq --no-install-recommends libturbojpeg0 >/dev/null 2>&1; } \
      || log "WARNING: apt-get could not install libturbojpeg0; JPEGs will be decoded with Pillow (slower)"
  else
    log "WARNING: libturbojpeg.so.0 not found and not root. Install it (Debian/Ubuntu:" \
        "sudo apt-get install libturbojpeg0; elsewhere libjpeg-turbo >= 2.0) and re-run;" \
        "until then freqdet decodes JPEGs with Pillow (slower)."
  fi
}

ensure_jpeg_headers() {
  # For freqdet.io._jpeg, the compressed-domain path's coefficient reader; optional.
  # jpegtran (libjpeg-turbo-progs) writes the restart-marker JPEGs of the bad-input tests.
  [ -f /usr/include/jpeglib.h ] && command -v jpegtran >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing libjpeg's headers and tools (Debian libjpeg-dev, libjpeg-turbo-progs)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends libjpeg-dev libjpeg-turbo-progs >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 \
           && apt-get install -y -qq --no-install-recommends libjpeg-dev libjpeg-turbo-progs >/dev/null 2>&1; } \
      || log "WARNING: apt-get could not install libjpeg-dev; INPUT.DCT.SOURCE 'jpeg' will be unavailable"
  else
    [ -f /usr/include/jpeglib.h ] || log "WARNING: libjpeg's headers (jpeglib.h) are missing and we are not" \
        "root: INPUT.DCT.SOURCE 'jpeg' will be unavailable until you install them (Debian/Ubuntu:" \
        "libjpeg-dev) and re-run"
    command -v jpegtran >/dev/null 2>&1 || log "WARNING: jpegtran is missing (Debian/Ubuntu:" \
        "libjpeg-turbo-progs): the restart-marker case of the bad-input tests will be skipped"
  fi
}

ensure_venv() {
  [ -x "$PY" ] && return 0
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    log "ERROR: '$PYTHON' is not Python >= 3.10 (today's torch needs it); set PYTHON=/path/to/python3.10+ and re-run"
    exit 1
  fi
  local flags=()
  if "$PYTHON" -c 'import detectron2, torch' >/dev/null 2>&1; then
    flags+=(--system-site-packages)
    log "$PYTHON already imports Detectron2 and torch: the virtual environment will use them"
  fi
  log "creating the virtual environment $VENV"
  "$PYTHON" -m venv "${flags[@]}" "$VENV" \
    || { log "ERROR: '$PYTHON -m venv' failed (on Debian: apt-get install python3-venv)"; exit 1; }
}

detectron2_route() {
  # existing: a Detectron2 someone installed; fallback: ours (its _C is the stand-in); missing.
  "$PY" - <<'PYEOF'
import importlib.util, os
spec = importlib.util.find_spec("detectron2")
if spec is None or spec.origin is None:
    print("missing")
else:
    standin = os.path.join(os.path.dirname(spec.origin), "_C.py")
    ours = os.path.exists(standin) and "FREQDET_STANDIN" in open(standin).read()
    print("fallback" if ours else "existing")
PYEOF
}

write_pins() {
  # PyTurboJPEG 2.x needs libjpeg-turbo >= 3.0 (the tj3* API); Debian 12 ships 2.1.5.
  : >"$PINS"
  if "$PY" -c "import ctypes, ctypes.util, sys; p = ctypes.util.find_library('turbojpeg'); sys.exit(0 if p and hasattr(ctypes.CDLL(p), 'tj3Init') else 1)" 2>/dev/null; then
    echo "PyTurboJPEG>=2" >>"$PINS"
  else
    echo "PyTurboJPEG>=1.7,<2" >>"$PINS"
  fi
  if [ "$1" != existing ]; then
    grep -v '^#' "$ROOT/tools/d2_fallback/constraints.txt" >>"$PINS"
  fi
}

main() {
  local fp route
  fp=$(fingerprint)
  if [ -f "$STAMP" ] && [ "$(head -n 1 "$STAMP")" = "$fp" ] \
      && "$PY" -W ignore -c 'import freqdet, detectron2, torch' >/dev/null 2>&1; then
    log "environment is up to date ($VENV; $(sed -n 2p "$STAMP"))"
    return 0
  fi
  ensure_turbojpeg
  ensure_jpeg_headers
  ensure_venv
  route=$(detectron2_route)
  write_pins "$route"
  pip_install "setuptools" wheel
  if ! "$PY" -c 'import torch, torchvision' >/dev/null 2>&1; then
    log "installing $TORCH_SPEC (a few GB, about a minute from a local mirror)"
    # shellcheck disable=SC2086
    pip_install $TORCH_SPEC
  fi
  if [ "$route" != existing ]; then
    if [ "$route" = missing ]; then
      log "no Detectron2 importable: installing the fallback (Detectron2 0.6 Python sources" \
          "from PyPI's pb1-detectron2 sdist, without the C++ extension; see docs/setup.md)"
    else
      log "refreshing the Detectron2 fallback installed by an earlier set-up"
    fi
    pip_install -r "$ROOT/tools/d2_fallback/requirements.txt"
    "$PY" -W ignore "$ROOT/tools/d2_fallback/install.py" --cache "$VENV/cache" \
      2> >(grep -v "is neither a file nor a directory" >&2)
    route=fallback
  elif [ "$(ls "$VENV/cache"/pb1-detectron2-0.6*.tar.gz 2>/dev/null)" = "" ]; then
    # The tests run Detectron2's own tools/lazyconfig_train_net.py, which no wheel installs.
    "$PY" -W ignore "$ROOT/tools/d2_fallback/install.py" --cache "$VENV/cache" --download-only \
      || log "WARNING: could not download Detectron2's source; the tests of its lazyconfig tool will fail"
  fi
  pip_install --no-build-isolation -e "$ROOT[test,deploy]"
  "$PY" -W ignore -c 'import freqdet, detectron2, torch' || { log "ERROR: the environment does not import"; exit 1; }
  local d2 summary
  d2=$("$PY" -W ignore -c 'import detectron2, os; print(detectron2.__version__, "at", os.path.dirname(detectron2.__file__))')
  if [ "$route" = fallback ]; then
    summary="Detectron2 route: fallback ($d2; Python sources only, detectron2._C is a stand-in)"
  else
    summary="Detectron2 route: existing installation ($d2)"
  fi
  has_turbojpeg_lib || summary="$summary; TurboJPEG library missing, JPEGs decode with Pillow"
  "$PY" -c 'import freqdet.io._jpeg' 2>/dev/null || summary="$summary; JPEG coefficient reader not built"
  "$PY" -c 'import freqdet.dct._banded' 2>/dev/null \
    || summary="$summary; CPU transform kernel not built (torch path used, slower; '$PY setup.py build_ext --inplace' in $ROOT shows why)"
  printf '%s\n%s\n' "$fp" "$summary" >"$STAMP"
  log "done: $summary"
}

main "$@"
