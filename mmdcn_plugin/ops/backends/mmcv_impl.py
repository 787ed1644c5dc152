"""mmcv's compiled deformable-convolution kernels (CPU, and CUDA on GPU).

mmcv is imported on first use only, so the package imports where mmcv's ops were
not built.  The kernels are called through this package's own autograd Functions
(:mod:`.mmcv_function`: mmcv's numbers, less per-call cost), which get only what the
kernels handle correctly:

* DCNv1's kernel asserts ``batch % im2col_step == 0``; the step is chosen as the
  largest divisor of the batch not above 32, so no batch size is refused.
* The kernels refuse feature maps smaller than the kernel even when padding makes
  the output non-empty (``input image is smaller than kernel``; c5 of small images):
  such calls go to the pure-PyTorch path, which has the same semantics.
* Offsets that are NaN, infinite or huge (1e30 overflows the kernels' int casts) are
  replaced by a finite value that still lies outside the image, so they sample 0
  exactly as mmcv defines it, with a zero gradient.
* mmcv has no bfloat16 kernels: bf16 tensors are computed in float32 and cast back.

Whether mmcv has CUDA kernels is decided by looking for GPU code in its extension and
running its kernels once on tiny tensors, never by mmcv's info functions: with some
source builds those end the process (mmcv#1292).
"""
import functools
import importlib
import mmap
import warnings
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..checks import DeformGeometry
from .mmcv_function import DeformConvMMCV, ModulatedDeformConvMMCV, mmcv_ext
from .torch_impl import deform_conv2d_torch


@functools.lru_cache(maxsize=None)
def mmcv_ops_available() -> bool:
    """True when mmcv is installed with its compiled ops (``mmcv._ext``), the five
    deformable-convolution kernels included."""
    try:
        mmcv_ext()
    except Exception:  # ImportError, or mmcv-lite raising on the missing extension
        return False
    return True


# What mmcv raises for a CUDA tensor when built without CUDA: DCNv1's own check
# (csrc/pytorch/deform_conv.cpp) and the device registry behind DCNv2
# (csrc/common/pytorch_device_registry.hpp).
_NOT_BUILT_FOR_DEVICE = ('not compiled with GPU support', 'implementation for device')


def _current_cuda_device() -> torch.device:
    """The device a CUDA probe runs on: the one this process computes on."""
    return torch.device('cuda', torch.cuda.current_device())


def mmcv_kernels_run_on(device: torch.device) -> bool:
    """Run mmcv's DCNv1 and DCNv2 forward kernels once on tiny tensors on ``device``.

    True when both return the right numbers.  False when mmcv says it was built
    without kernels for that device; False with a warning when they fail otherwise
    (e.g. no kernel image for this GPU's architecture), since 'auto' then takes a
    slower backend.  Never asks mmcv's info functions (``get_compiling_cuda_version``,
    ``get_compiler_version``): with some source builds they end the process with a
    segmentation fault (mmcv#1292) while the kernels themselves work.
    """
    try:
        from mmcv.ops import deform_conv2d as mmcv_deform_conv2d
        from mmcv.ops import modulated_deform_conv2d as mmcv_modulated_deform_conv2d
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            # A 2x2 map, a 1x1 kernel of weight 1, zero offsets: the output is the input.
            x = torch.arange(1.0, 5.0, device=device).view(1, 1, 2, 2)
            offset = torch.zeros(1, 2, 2, 2, device=device)
            weight = torch.ones(1, 1, 1, 1, device=device)
            outs = (mmcv_deform_conv2d(x, offset, weight, 1, 0, 1, 1, 1, False, 1),
                    mmcv_modulated_deform_conv2d(x, offset, torch.ones_like(x), weight, None,
                                                 1, 0, 1, 1, 1))
            right = all(torch.equal(out, x) for out in outs)
    except Exception as err:  # RuntimeError from the kernels, anything from a bad build
        if any(text in str(err) for text in _NOT_BUILT_FOR_DEVICE):
            return False
        _warn_unusable(device, f'failed ({type(err).__name__}: {err})')
        return False
    if not right:
        _warn_unusable(device, 'computed wrong numbers')
    return right


def _warn_unusable(device: torch.device, what: str) -> None:
    warnings.warn(f"mmcv's deformable-convolution kernels {what} on a tiny probe on {device}: "
                  f"backend 'mmcv' is not used for {device.type} tensors ('auto' takes "
                  "another backend)", RuntimeWarning, stacklevel=3)


# Left in a shared library by nvcc (hipcc): the device-code section and the call that
# registers it at load time.
_DEVICE_CODE_MARKS = (b'.nv_fatbin', b'__cudaRegisterFatBinary',
                      b'.hip_fatbin', b'__hipRegisterFatBinary')


def mmcv_ext_has_gpu_code() -> bool:
    """True when mmcv's compiled extension (``mmcv._ext``) holds GPU device code.

    Read from the file, so nothing of mmcv runs: with a CPU-only build the probe is
    never called on a CUDA tensor, and mmcv never has to format its "not compiled
    with GPU support" error (a string stream, which crashes the builds described in
    :func:`mmcv_kernels_run_on` instead of raising).
    """
    try:
        path = importlib.import_module('mmcv._ext').__file__
        with open(path, 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return any(data.find(mark) >= 0 for mark in _DEVICE_CODE_MARKS)
    except Exception:  # no extension, or one that is not a plain file
        return False


@functools.lru_cache(maxsize=None)
def mmcv_cuda_available() -> bool:
    """True when mmcv's kernels run on CUDA tensors here (what 'auto' uses there).

    Decided once a process, only when torch sees a GPU (a CPU machine never touches
    CUDA): mmcv's extension must hold GPU code (:func:`mmcv_ext_has_gpu_code`) and its
    kernels must pass a probe call (:func:`mmcv_kernels_run_on`).
    """
    if not mmcv_ops_available() or not torch.cuda.is_available():
        return False
    return mmcv_ext_has_gpu_code() and mmcv_kernels_run_on(_current_cuda_device())


def mmcv_devices() -> Tuple[str, ...]:
    """Device types mmcv's kernels take here: CPU, plus CUDA when built with CUDA."""
    return ('cpu', 'cuda') if mmcv_cuda_available() else ('cpu',)


def deform_conv2d_mmcv(input: Tensor, offset: Tensor, weight: Tensor, bias: Optional[Tensor],
                       mask: Optional[Tensor], geo: DeformGeometry) -> Tensor:
    """Deformable convolution through mmcv's kernels (:mod:`.mmcv_function`)."""
    if geo.height < geo.kernel[0] or geo.width < geo.kernel[1]:
        return deform_conv2d_torch(input, offset, weight, bias, mask, geo)
    out_dtype = input.dtype
    if out_dtype == torch.bfloat16:
        input, offset, weight = input.float(), offset.float(), weight.float()
        bias = bias.float() if bias is not None else None
        mask = mask.float() if mask is not None else None
    input, offset, weight = input.contiguous(), offset.contiguous(), weight.contiguous()
    if mask is None:
        out = DeformConvMMCV.apply(input, offset, weight, geo)
        if bias is not None:
            out = out + bias.view(1, -1, 1, 1)
    else:
        out = ModulatedDeformConvMMCV.apply(
            input, offset, mask.contiguous(), weight,
            bias.contiguous() if bias is not None else None, geo)
    return out if out.dtype == out_dtype else out.to(out_dtype)
