"""Training-engine pieces: distributed training without GPUs; mmdet's own tools run
through the package (:mod:`.mmdet_tools`)."""
from .cpu_distributed import (CPU_DIST_CFG_OPTIONS, CPUDistributedDataParallel,
                              exit_cpu_distributed, init_cpu_distributed)

# .mmdet_tools is not imported here: `python -m mmdcn_plugin.engine.mmdet_tools` runs it.
__all__ = ['CPUDistributedDataParallel', 'init_cpu_distributed', 'exit_cpu_distributed',
           'CPU_DIST_CFG_OPTIONS']
