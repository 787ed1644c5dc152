"""The one-line machine description that benchmarks and the study print with their numbers."""
import os
import platform
from typing import Optional


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else the platform's processor name."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(threads: Optional[int] = None) -> str:
    """``'<cpu>; <n> cores; torch <version>'``, plus ``' with <threads> threads'`` if given.

    Args:
        threads (int or None): the torch threads the measurement used (e.g.
            ``torch.get_num_threads()``); left out when the runs set their own.
    """
    import torch
    line = f'{cpu_name()}; {os.cpu_count()} cores; torch {torch.__version__}'
    if threads is not None:
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f'threads: expected a positive int or None, got {threads!r}')
        line += f' with {threads} threads'
    return line
