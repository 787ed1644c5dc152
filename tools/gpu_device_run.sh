#!/usr/bin/env bash
# The one script a session with a lent GPU passes to the device tool (docs/gpu/README.md):
#
#     carry: [".gpu-kit"]      timeout_s: 500
#     command: bash tools/gpu_device_run.sh
#
# Prepare the kit first, on the CPU machine: `bash tools/gpu_prepare.sh` (the copied
# tree has no .git, so it writes the commit into .gpu-kit/COMMIT; or set
# MMDCN_GIT_COMMIT in the command).
#
# In one call of at most 8 minutes it installs the GPU kit (.gpu-kit, a copy of
# ../shared/device), builds this package's C++ extension with the system compiler, loads
# the Triton kernels compiled before the call where the kit holds them
# (.gpu-kit/triton-cache.tar.xz, see tools/gpu_triton_run.sh), and
# runs tools/gpu_check.py into $OUT/gpu-check (report.md, gpu_check.json, logs/), which
# comes back with the call.  Arguments go to tools/gpu_check.py (a rerun of part of it:
# `bash tools/gpu_device_run.sh --steps ops-float32 model-fp32`).  GPU_CHECK_TOTAL_S
# (default 450) is the whole script's budget in seconds; the check gets what the kit and
# the build leave of it.
set -u
OUT=${OUT:-$PWD/work_dirs/gpu-device-out}
SCRIPT=gpu-device-run
DEST="$OUT/gpu-check"
mkdir -p "$DEST/logs"
KIT_LOG="$DEST/logs/kit.log"
# shellcheck source=tools/gpu_kit.sh
. "$(dirname "${BASH_SOURCE[0]}")/gpu_kit.sh"
cat "$KIT_LOG"

if [ -z "${MMDCN_GIT_COMMIT:-}" ] && [ -f .gpu-kit/COMMIT ]; then
    MMDCN_GIT_COMMIT=$(head -n 1 .gpu-kit/COMMIT)
    export MMDCN_GIT_COMMIT
fi

# The system compiler: the machine's default gcc links libstdc++ into an extension
# statically, and two copies of libstdc++ in one process break C++ string streams
# (../shared/device/README.md, the mmcv segfault of issue 24).
if [ -x /usr/bin/gcc ] && [ -x /usr/bin/g++ ]; then
    export CC=/usr/bin/gcc CXX=/usr/bin/g++
fi
if timeout 150 python3 setup.py build_ext --inplace > "$DEST/logs/build_ext.log" 2>&1; then
    for so in mmdcn_plugin/_deform_conv_cpu*.so; do
        [ -f "$so" ] && readelf -d "$so" | grep -i 'libstdc' >> "$DEST/logs/build_ext.log"
    done
    say "C++ extension built with ${CXX:-the default compiler}"
else
    say "C++ extension not built (logs/build_ext.log): the cpp backend is left out"
fi

# The Triton kernels compiled before the call, if carried: the op's own launches at
# c3-c5 are among them (the op benchmarks'), the tests' small shapes are not.
unpack_triton_cache "$DEST/logs/triton-cache.log"
before=$(triton_cache_entries)

budget=$(( ${GPU_CHECK_TOTAL_S:-450} - ($(date +%s) - start) ))
say "gpu_check: $budget s for its steps"
python3 tools/gpu_check.py --out-dir "$DEST" --budget-s "$budget" "$@"
rc=$?
say "$(( $(triton_cache_entries) - before )) Triton kernels compiled here during the check" \
    | tee -a "$DEST/logs/triton-cache.log"
say "done (gpu_check exit status $rc); report: $DEST/report.md"
exit $rc
