#!/usr/bin/env bash
# The second, short device call of a session with a lent GPU (docs/gpu/README.md), made
# right after tools/gpu_device_run.sh while the machine is still warm:
#
#     carry: [".gpu-kit"]      timeout_s: 300
#     command: bash tools/gpu_triton_run.sh
#
# Compile its kernels on the CPU machine first, into the kit (docs/gpu/README.md,
# "Compiled before the call"): `bash tools/gpu_prepare.sh` does, with the GPU machine's
# Python and Triton, into .gpu-kit/triton-cache.tar.xz.
#
# It times the Triton kernels' tile candidates (python -m
# mmdcn_plugin.ops.backends.triton.tune, into $OUT/triton/tune.json), then each kernel
# with one stage left out (python -m mmdcn_plugin.ops.backends.triton.stages, into
# $OUT/triton/stages.json): where the time goes when a target is missed.  Both rewrite
# their JSON after every row, so a step stopped at its limit keeps what it measured.
# TRITON_RUN_TOTAL_S (default 270) is the whole script's budget; the sweep gets
# TUNE_S of it (default 180) and the stage timing the rest.
set -u
OUT=${OUT:-$PWD/work_dirs/gpu-device-out}
SCRIPT=gpu-triton-run
DEST="$OUT/triton"
KIT_LOG="$DEST/kit.log"
# shellcheck source=tools/gpu_kit.sh
. "$(dirname "${BASH_SOURCE[0]}")/gpu_kit.sh"

# The kernels compiled before the call (.gpu-kit/triton-cache.tar.xz; gpu_kit.sh).
unpack_triton_cache "$DEST/cache.log"

# A step runs under `timeout -s INT` (Python stops with KeyboardInterrupt; its JSON so far
# stays), then TERM and KILL 10 s apart.
step() {
    local name=$1 limit=$2
    shift 2
    if [ "$limit" -lt 5 ]; then
        say "$name: skipped, $limit s left"
        return 0
    fi
    say "$name: up to $limit s"
    local before
    before=$(triton_cache_entries)
    timeout -s INT -k 10 "$limit" "$@" > "$DEST/$name.log" 2>&1
    local rc=$?
    tail -n 40 "$DEST/$name.log"
    say "$name: exit status $rc (124: stopped at its limit); $(( $(triton_cache_entries) - before ))" \
        "kernels compiled here" | tee -a "$DEST/cache.log"
    return 0
}

# Triton prints each compile's `ptxas -v` log (registers and spills a thread) into the
# step logs: the GPU's side of what `python -m mmdcn_plugin.ops.backends.triton.resources`
# predicted without one (docs/gpu/README.md).
export TRITON_DUMP_PTXAS_LOG=1
total=${TRITON_RUN_TOTAL_S:-270}
step tune "${TUNE_S:-180}" python3 -m mmdcn_plugin.ops.backends.triton.tune \
    --dtypes fp16,bf16,fp32 --shapes c3,c4,c5 --json "$DEST/tune.json"
step stages $(( total - ($(date +%s) - start) )) python3 -m mmdcn_plugin.ops.backends.triton.stages \
    --dtypes fp16 --shapes c3,c4,c5 --json "$DEST/stages.json"
say "done: $DEST"
