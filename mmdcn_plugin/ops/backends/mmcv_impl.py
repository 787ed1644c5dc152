"""mmcv's compiled deformable-convolution kernels (CPU, and CUDA on GPU).

mmcv is imported on first use only, so the package imports where mmcv's ops were
not built.  This wrapper feeds the kernels only what they handle correctly:

* DCNv1's kernel asserts ``batch % im2col_step == 0``; the step is chosen as the
  largest divisor of the batch not above 32, so no batch size is refused.
* The kernels refuse feature maps smaller than the kernel even when padding makes
  the output non-empty (``input image is smaller than kernel``; c5 of small images):
  such calls go to the pure-PyTorch path, which has the same semantics.
* Offsets that are NaN, infinite or huge (1e30 overflows the kernels' int casts) are
  replaced by a finite value that still lies outside the image, so they sample 0
  exactly as mmcv defines it, with a zero gradient.
* mmcv has no bfloat16 kernels: bf16 tensors are computed in float32 and cast back.
"""
import functools
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..checks import DeformGeometry
from .torch_impl import deform_conv2d_torch

MAX_IM2COL_STEP = 32


@functools.lru_cache(maxsize=None)
def mmcv_ops_available() -> bool:
    """True when mmcv is installed with its compiled ops (``mmcv._ext``)."""
    try:
        from mmcv.utils import ext_loader
        ext_loader.load_ext('_ext', ['deform_conv_forward', 'modulated_deform_conv_forward'])
    except Exception:  # ImportError, or mmcv-lite raising on the missing extension
        return False
    return True


@functools.lru_cache(maxsize=None)
def mmcv_cuda_available() -> bool:
    """True when mmcv's ops were compiled with CUDA (what 'auto' uses on CUDA tensors)."""
    if not mmcv_ops_available():
        return False
    try:
        from mmcv.ops import get_compiling_cuda_version
        version = get_compiling_cuda_version()
    except Exception:
        return False
    # mmcv's csrc/pytorch/info.cpp: the CUDA runtime version when built with
    # MMCV_WITH_CUDA, else 'not available' ('rocm not available' in some versions).
    return bool(version) and 'not available' not in str(version)


def mmcv_devices() -> Tuple[str, ...]:
    """Device types mmcv's kernels take here: CPU, plus CUDA when built with CUDA."""
    return ('cpu', 'cuda') if mmcv_cuda_available() else ('cpu',)


def im2col_step_for(batch: int, limit: int = MAX_IM2COL_STEP) -> int:
    """Largest divisor of ``batch`` that is at most ``limit`` (DCNv1 needs one)."""
    for step in range(min(batch, limit), 0, -1):
        if batch % step == 0:
            return step
    return 1


def sanitize_offset(offset: Tensor, geo: DeformGeometry) -> Tensor:
    """Map non-finite and huge offsets to a finite value outside the image.

    Any |offset| >= ``far`` already puts the point outside (-1, H) x (-1, W) for every
    output position, so clamping there changes no sample and no gradient.
    """
    far = 2.0 * (max(geo.height, geo.width) + max(geo.padding)
                 + max(geo.dilation) * max(geo.kernel) + 2)
    return torch.nan_to_num(offset, nan=far, posinf=far, neginf=-far).clamp(-far, far)


def deform_conv2d_mmcv(input: Tensor, offset: Tensor, weight: Tensor, bias: Optional[Tensor],
                       mask: Optional[Tensor], geo: DeformGeometry) -> Tensor:
    """Deformable convolution through mmcv's ``deform_conv2d``/``modulated_deform_conv2d``."""
    if geo.height < geo.kernel[0] or geo.width < geo.kernel[1]:
        return deform_conv2d_torch(input, offset, weight, bias, mask, geo)
    out_dtype = input.dtype
    if out_dtype == torch.bfloat16:
        input, offset, weight = input.float(), offset.float(), weight.float()
        bias = bias.float() if bias is not None else None
        mask = mask.float() if mask is not None else None

    from mmcv.ops import deform_conv2d as mmcv_deform_conv2d
    from mmcv.ops import modulated_deform_conv2d as mmcv_modulated_deform_conv2d

    input, weight = input.contiguous(), weight.contiguous()
    offset = sanitize_offset(offset, geo).contiguous()
    if mask is None:
        out = mmcv_deform_conv2d(input, offset, weight, geo.stride, geo.padding, geo.dilation,
                                 geo.groups, geo.deform_groups, False,
                                 im2col_step_for(geo.batch))
        if bias is not None:
            out = out + bias.view(1, -1, 1, 1)
    else:
        out = mmcv_modulated_deform_conv2d(input, offset, mask.contiguous(), weight,
                                           bias.contiguous() if bias is not None else None,
                                           geo.stride, geo.padding, geo.dilation,
                                           geo.groups, geo.deform_groups)
    return out.to(out_dtype)
