#!/usr/bin/env bash
# Launch tools/train.py in NUM_PROCS processes with torchrun (MMEngine's pytorch launcher).
#   bash tools/dist_train.sh CONFIG NUM_PROCS [tools/train.py arguments]
# GPUs: one process per GPU (NCCL). Without CUDA: CPU processes on gloo.
# Several machines: set NNODES, NODE_RANK, MASTER_ADDR, PORT on each (see docs/configs-and-tools.md).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash tools/dist_train.sh CONFIG NUM_PROCS [args]" >&2
  exit 2
fi
CONFIG=$1

NPROC=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-$( [ -x "$here/../.venv/bin/python" ] && echo "$here/../.venv/bin/python" || echo python3)}
exec "$PYTHON" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
  --nproc_per_node="$NPROC" \
  "$here/train.py" "$CONFIG" --launcher pytorch "$@"
