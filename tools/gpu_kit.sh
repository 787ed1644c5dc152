# Sourced by tools/gpu_device_run.sh and tools/gpu_triton_run.sh, the scripts of a lent
# GPU machine (docs/gpu/README.md).  Expects SCRIPT (the name in messages) and DEST (the
# folder under $OUT for this call); defines start, say, unpack_triton_cache and
# triton_cache_entries, creates DEST, and installs the GPU kit (.gpu-kit, a copy of
# ../shared/device) into this shell, its output in KIT_LOG.  Leaves the calling script
# with status 2 when there is no kit or it does not install.
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

# Kernels compiled before the call on the CPU machine, with this machine's Triton
# (python -m mmdcn_plugin.ops.backends.triton.precompile, packed into
# .gpu-kit/triton-cache.tar.xz; docs/gpu/README.md): unpacked into TRITON_CACHE_DIR
# (exported) and checked there, so they are loaded instead of compiled.  The verdict goes
# to stdout and to the file $1.  Each entry a step adds to the cache is a kernel
# compiled here: triton_cache_entries counts them.
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/tmp/mmdcn-triton-cache}
mkdir -p "$TRITON_CACHE_DIR"
unpack_triton_cache() {
    local tarball=.gpu-kit/triton-cache.tar.xz
    if [ -f "$tarball" ] && tar -xJf "$tarball" -C "$TRITON_CACHE_DIR"; then
        python3 -m mmdcn_plugin.ops.backends.triton.precompile --check "$TRITON_CACHE_DIR" \
            2>&1 | tee "$1"
    else
        say "no $tarball: every kernel compiles here" | tee "$1"
    fi
}
triton_cache_entries() { find "$TRITON_CACHE_DIR" -mindepth 1 -maxdepth 1 -type d | wc -l; }
