#!/usr/bin/env bash
# Bring up the project's virtual environment: torch, mmcv (with compiled ops), mmdet,
# mmengine, pycocotools and this package in editable mode.  Every step is skipped when
# what it installs is already there, so a second call costs a few seconds.
#
#   VENV        where the environment lives             (default: .venv)
#   PYTHON      interpreter that creates it             (default: python3)
#   TORCH_SPEC  the torch requirement, e.g. for a CUDA build on your platform
#               (default: torch==2.13.0, the CPU build this project is tested with).
#               If the venv already has a torch, it is kept.
#   MMCV_SPEC   default mmcv==2.1.0 (mmdet 3.3.0 accepts >=2.0.0rc4,<2.2.0)
#   MMDCN_WHEEL_CACHE  where built mmcv wheels are kept, keyed by python/torch/cuda
#               (default: ~/.cache/mmdcn_plugin/wheels)
set -euo pipefail

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
MMCV_SPEC=${MMCV_SPEC:-mmcv==2.1.0}
WHEEL_CACHE=${MMDCN_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmdcn_plugin/wheels}

say() { printf '[setup_env] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade 'pip>=23.2'
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip)

has() { "$PY" -c "import $1" >/dev/null 2>&1; }

if has torch; then
  say "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed"
else
  say "installing $TORCH_SPEC"
  "${PIP[@]}" install "$TORCH_SPEC"
fi

# mmcv 2.1.0's setup.py imports pkg_resources (gone after setuptools 80); torch 2.13
# declares setuptools>=77.  Installed in its own call so pip does not re-resolve torch.
if ! "$PY" -c 'import pkg_resources, setuptools, wheel, ninja, numpy' >/dev/null 2>&1; then
  say "installing build tools (setuptools>=77,<81, wheel, ninja, numpy)"
  "${PIP[@]}" install -q 'setuptools>=77,<81' wheel ninja numpy
fi

if "$PY" -c 'import mmcv.ops' >/dev/null 2>&1; then
  say "mmcv $("$PY" -c 'import mmcv; print(mmcv.__version__)') with compiled ops already installed"
else
  key=$("$PY" -c 'import sys, torch; print("py%d%d-torch%s-cuda%s" % (sys.version_info[0], sys.version_info[1], torch.__version__.replace("+", "_"), torch.version.cuda or "none"))')
  mmcv_ver=${MMCV_SPEC#mmcv==}
  dir="$WHEEL_CACHE/$key"
  wheel=$(ls "$dir"/mmcv-"$mmcv_ver"-*.whl 2>/dev/null | head -n 1 || true)
  if [ -n "$wheel" ]; then
    say "installing cached mmcv wheel $wheel"
    "${PIP[@]}" install --no-deps "$wheel"
    "${PIP[@]}" install -q "$wheel"
  else
    say "building $MMCV_SPEC with compiled ops from source (MAX_JOBS=$(nproc))."
    say "This is the long step: about 14 minutes on 2 cores, once per machine; the wheel is then"
    say "cached in $dir.  Progress: [compiled/total] source files."
    log=$(mktemp -t mmcv-build.XXXXXX.log)
    build=$(mktemp -d -t mmcv-wheel.XXXXXX)
    start=$(date +%s)
    set +e
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "${PIP[@]}" wheel -v --no-deps --no-build-isolation \
        -w "$build" "$MMCV_SPEC" 2>&1 | tee "$log" | \
      while IFS= read -r line; do
        line=${line#"${line%%[![:space:]]*}"}   # pip -v indents the build's output
        case "$line" in
          \[[0-9]*/[0-9]*\]*)
            prog=${line%%]*}]
            src=$(printf '%s' "$line" | grep -oE '[A-Za-z0-9_]+\.(cpp|cu|c)' | tail -n 1)
            printf '[setup_env] mmcv %s %s (%ds)\n' "$prog" "$src" $(( $(date +%s) - start ));;
          *rror*) printf '%s\n' "$line";;
        esac
      done
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -ne 0 ]; then
      say "mmcv build failed (exit $rc); full log: $log"
      tail -n 40 "$log"
      exit "$rc"
    fi
    wheel=$(ls "$build"/mmcv-*.whl | head -n 1)
    mkdir -p "$dir" && cp "$wheel" "$dir/"
    say "built $(basename "$wheel") in $(( $(date +%s) - start ))s; cached in $dir"
    "${PIP[@]}" install "$dir/$(basename "$wheel")"
  fi
  "$PY" -c 'import mmcv.ops' || { say "mmcv installed but mmcv.ops does not import"; exit 1; }
fi

if ! "$PY" -c 'import mmdet, mmengine, pycocotools' >/dev/null 2>&1; then
  say "installing mmdet, mmengine, pycocotools"
  "${PIP[@]}" install 'mmdet==3.3.0' 'mmengine==0.10.7' pycocotools
fi

if [ -f setup.py ]; then
  stamp="$VENV/.mmdcn-editable"
  # The editable install also compiles the optional CPU kernels (mmdcn_plugin/csrc) in
  # place: a changed source must reinstall as a changed setup.py does.
  changed_csrc=""
  if [ -f "$stamp" ] && [ -d mmdcn_plugin/csrc ]; then
    changed_csrc=$(find mmdcn_plugin/csrc -type f -newer "$stamp" -print -quit)
  fi
  if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ] || [ -n "$changed_csrc" ] \
      || ! "$PY" -c 'import mmdcn_plugin' >/dev/null 2>&1; then
    say "installing mmdcn_plugin in editable mode with the dev extra (compiles the CPU kernels: about a minute)"
    "${PIP[@]}" install -q --no-build-isolation -e '.[dev]'
    touch "$stamp"
    # setup.py never fails on the optional extension; say here whether it was built.
    if "$PY" -c 'import torch, mmdcn_plugin._deform_conv_cpu' >/dev/null 2>&1; then
      say "compiled CPU kernels built: backend 'cpp' is the CPU default"
    else
      say "WARNING: the compiled CPU kernels were not built (see: $PY -m pip install -v --no-build-isolation -e .); CPU deformable convolution falls back to the slower 'fast' backend"
    fi
  fi
fi
say "environment ready: $VENV"
