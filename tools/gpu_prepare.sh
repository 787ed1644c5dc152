#!/usr/bin/env bash
# Before the first device call of a session with a lent GPU (docs/gpu/README.md), on the
# CPU machine, from the checkout's root, at the commit the calls will run:
#
#     bash tools/gpu_prepare.sh
#
# 1. .gpu-kit: a fresh copy of the GPU kit (KIT_SRC, default ../shared/device), which
#    git ignores (.git/info/exclude), with the commit in .gpu-kit/COMMIT (the copy sent
#    to the machine has no .git; "+dirty" when the tree differs from it);
# 2. .gpu-kit/triton-cache.tar.xz: the tile sweep's and the op's Triton kernels compiled
#    for sm_90 with the GPU machine's Python and Triton (3.12, 3.6.0) in a scratch
#    stack, so both device calls load them instead of compiling (python -m
#    mmdcn_plugin.ops.backends.triton.precompile).  The stack is STACK_PY (a Python 3.12
#    with torch 2.11.0, numpy 2.5.2 and triton 3.6.0; default /tmp/dev312/bin/python,
#    created from PY312 with those from the package registry when missing, a few GB)
#    with the kit's wheels in STACK_SITE (default /tmp/site).  About 4-5 minutes of
#    compiling on the project's 2-core CPU machine, plus the stack's install the first
#    time.  NO_CACHE=1 skips this step.
#
# Then: the device call `bash tools/gpu_device_run.sh` with carry [".gpu-kit"].
# Exit status: 0 when the kit (and, unless NO_CACHE=1, the cache) is ready, else 2.
set -u
KIT_SRC=${KIT_SRC:-../shared/device}
STACK_PY=${STACK_PY:-/tmp/dev312/bin/python}
STACK_SITE=${STACK_SITE:-/tmp/site}
PY312=${PY312:-$HOME/.pyenv/versions/3.12.1/bin/python}
start=$(date +%s)
say() { echo "[gpu-prepare $(( $(date +%s) - start ))s] $*"; }

if [ ! -f "$KIT_SRC/setup.sh" ]; then
    say "no GPU kit at $KIT_SRC (KIT_SRC): expected its setup.sh and wheels/"
    exit 2
fi
if ! commit=$(git rev-parse HEAD 2>/dev/null); then
    say "not a git checkout: run it from the checkout's root"
    exit 2
fi
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpu-kit/' "$exclude" 2>/dev/null || echo '/.gpu-kit/' >> "$exclude"
# The kit's files are read-only where it lies: the copy is made writable.
[ -d .gpu-kit ] && chmod -R u+w .gpu-kit
rm -rf .gpu-kit && cp -r "$KIT_SRC" .gpu-kit && chmod -R u+w .gpu-kit
git diff --quiet HEAD || commit="$commit+dirty"
echo "$commit" > .gpu-kit/COMMIT
say "kit copied from $KIT_SRC into .gpu-kit (ignored by git); commit $commit"

if [ "${NO_CACHE:-0}" = 1 ]; then
    say "NO_CACHE=1: no Triton cache; the device calls compile every kernel"
    exit 0
fi
if [ ! -x "$STACK_PY" ]; then
    say "creating the scratch stack $STACK_PY from $PY312 (torch 2.11.0, numpy 2.5.2," \
        "triton 3.6.0)"
    "$PY312" -m venv "$(dirname "$(dirname "$STACK_PY")")" \
        && "$STACK_PY" -m pip install -q torch==2.11.0 numpy==2.5.2 triton==3.6.0 pyyaml \
            rich opencv-python-headless \
        || { say "the scratch stack did not install"; exit 2; }
fi
"$STACK_PY" -m pip install -q --no-index --no-deps --no-compile --upgrade \
    --target "$STACK_SITE" .gpu-kit/wheels/*.whl \
    || { say "the kit's wheels did not install into $STACK_SITE"; exit 2; }
cache=$(mktemp -d)
say "compiling the Triton kernels for sm_90 into $cache (minutes; every 50th launch shown)"
PYTHONPATH="$STACK_SITE:$PWD" "$STACK_PY" -m mmdcn_plugin.ops.backends.triton.precompile \
    --out "$cache" 2>&1 | tee .gpu-kit/precompile.log | awk 'NR % 50 == 0 { print; fflush() }'
if [ "${PIPESTATUS[0]}" != 0 ]; then
    tail -n 20 .gpu-kit/precompile.log
    say "precompile failed (.gpu-kit/precompile.log): no Triton cache"
    exit 2
fi
tail -n 1 .gpu-kit/precompile.log
if ! tar -cJf .gpu-kit/triton-cache.tar.xz -C "$cache" .; then
    rm -f .gpu-kit/triton-cache.tar.xz
    say "packing $cache into .gpu-kit/triton-cache.tar.xz failed: no Triton cache"
    exit 2
fi
rm -rf "$cache"
say "Triton cache: .gpu-kit/triton-cache.tar.xz ($(du -h .gpu-kit/triton-cache.tar.xz | cut -f1))"
