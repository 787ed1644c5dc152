"""The table of deformable-convolution backends and how a name is resolved.

A backend is a function ``fn(input, offset, weight, bias, mask, geo) -> Tensor``
that receives arguments already validated by :mod:`mmdcn_plugin.ops.checks`.
"""
import os
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import torch

from .cpp_impl import deform_conv2d_cpp, extension_available
from .fast_impl import deform_conv2d_fast
from . import mmcv_impl
from .mmcv_impl import deform_conv2d_mmcv, mmcv_ops_available
from .torch_impl import deform_conv2d_torch
from .triton import deform_conv2d_triton, triton_available, triton_devices
from .triton import probe as triton_probe

ENV_VAR = 'MMDCN_BACKEND'


def _any_device() -> None:
    return None


class Backend(NamedTuple):
    fn: Callable
    available: Callable[[], bool]
    description: str
    # The device types it runs on here (None: any).  A function, because what a
    # compiled backend takes depends on how it was built (mmcv with or without CUDA).
    devices: Callable[[], Optional[Tuple[str, ...]]] = _any_device
    # The graph recorders that record it as plain tensor ops (see deform_conv.recorder):
    # 'torch.jit.trace' (also torch.onnx.export(dynamo=False)) and 'torch.export'
    # (also torch.onnx.export(dynamo=True)).  Compiled kernels are opaque to both;
    # torch.compile, which falls back to eager around them, takes every backend.
    recorded_by: Tuple[str, ...] = ()


BACKENDS: Dict[str, Backend] = {
    'cpp': Backend(deform_conv2d_cpp, extension_available,
                   'compiled CPU kernels (optional extension): the CPU default when built',
                   devices=lambda: ('cpu',)),
    'fast': Backend(deform_conv2d_fast, lambda: True,
                    'vectorised PyTorch with a hand-written backward: the CPU default '
                    'without the extension',
                    recorded_by=('torch.export',)),
    'torch': Backend(deform_conv2d_torch, lambda: True,
                     'pure PyTorch: any device, no compiled code, traceable',
                     recorded_by=('torch.jit.trace', 'torch.export')),
    'mmcv': Backend(deform_conv2d_mmcv, mmcv_ops_available,
                    "mmcv's compiled kernels: CPU, and CUDA when mmcv was built with CUDA",
                    devices=lambda: mmcv_impl.mmcv_devices()),
    'triton': Backend(deform_conv2d_triton, triton_available,
                      "this package's Triton kernels: CUDA (CPU tensors only under "
                      'TRITON_INTERPRET=1); native fp16/bf16, deterministic backward on request',
                      devices=triton_devices),
}

# What 'auto' picks on the CPU, best first, among the available backends ('cpp' only
# when the extension was built and MMDCN_DISABLE_EXT is unset).  On CUDA tensors it
# takes 'triton' when Triton imports and its kernels pass a probe on the GPU
# (triton/probe.py), else mmcv's CUDA kernels when mmcv was compiled with CUDA (and
# passes its own probe), else 'fast'; never 'triton' on the CPU (only its interpreter
# runs there).
AUTO_CPU = ('cpp', 'fast', 'torch', 'mmcv')


def available_backends() -> List[str]:
    """Names usable on this machine, ``'auto'`` first."""
    return ['auto'] + [name for name, b in BACKENDS.items() if b.available()]


def resolve_backend(name, device: torch.device) -> str:
    """Turn a requested backend (None, 'auto' or a name) into a concrete backend name.

    ``None`` reads the environment variable ``MMDCN_BACKEND`` and falls back to
    ``'auto'``.  Raises ``ValueError`` for unknown names and ``RuntimeError`` for a
    known backend that cannot run here (not built, or not for this device).
    """
    source = 'backend'
    if name is None:
        name = os.environ.get(ENV_VAR) or 'auto'
        source = f'{ENV_VAR} (environment)'
    if not isinstance(name, str):
        raise TypeError(f'backend must be a string or None, got {type(name).__name__}')
    if name == 'auto':
        if device.type == 'cuda':
            if BACKENDS['triton'].available() and triton_probe.triton_cuda_usable():
                return 'triton'
            return 'mmcv' if mmcv_impl.mmcv_cuda_available() else 'fast'
        for candidate in AUTO_CPU:
            if BACKENDS[candidate].available():
                return candidate
        return 'torch'
    if name not in BACKENDS:
        raise ValueError(f'unknown deformable-convolution {source} {name!r}; expected one of '
                         f"{['auto'] + sorted(BACKENDS)}")
    if not BACKENDS[name].available():
        raise RuntimeError(f'backend {name!r} is not available on this machine '
                           f'(available: {available_backends()})')
    devices = BACKENDS[name].devices()
    if devices is not None and device.type not in devices:
        raise RuntimeError(f'backend {name!r} does not run on {device.type} tensors here '
                           f'(it runs on: {list(devices)}; {BACKENDS[name].description})')
    return name
