"""Training-engine pieces: distributed training without GPUs."""
from .cpu_distributed import (CPU_DIST_CFG_OPTIONS, CPUDistributedDataParallel,
                              init_cpu_distributed)

__all__ = ['CPUDistributedDataParallel', 'init_cpu_distributed', 'CPU_DIST_CFG_OPTIONS']
