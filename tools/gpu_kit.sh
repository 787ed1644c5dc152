# Sourced by tools/gpu_device_run.sh and tools/gpu_triton_run.sh, the scripts of a lent
# GPU machine (docs/gpu/README.md).  Expects SCRIPT (the name in messages) and DEST (the
# folder under $OUT for this call); defines start and say, creates DEST, and installs the
# GPU kit (.gpu-kit, a copy of ../shared/device) into this shell, its output in KIT_LOG.
# Leaves the calling script with status 2 when there is no kit or it does not install.
start=$(date +%s)
say() { echo "[$SCRIPT $(( $(date +%s) - start ))s] $*"; }
mkdir -p "$DEST"
if [ ! -f .gpu-kit/setup.sh ]; then
    say "no .gpu-kit/setup.sh: copy ../shared/device to .gpu-kit and carry it"
    exit 2
fi
# shellcheck source=/dev/null
if ! . .gpu-kit/setup.sh > "$KIT_LOG" 2>&1; then
    cat "$KIT_LOG"
    say "the GPU kit did not install ($KIT_LOG)"
    exit 2
fi
