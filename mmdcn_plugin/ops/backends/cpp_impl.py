"""Compiled CPU deformable convolution: C++ sampling kernels around ATen's GEMMs.

The kernels of ``mmdcn_plugin/csrc/deform_conv_cpu.cpp`` (multi-threaded with
``at::parallel_for``, so they follow ``torch.set_num_threads``) do the bilinear
sampling and its adjoint with mmcv's rules, border included; the weight is applied
by the same GEMMs an im2col convolution uses.  The work goes block by block of
output positions (about 2 MiB of columns each, ``kBlockBytes`` in the kernel), so
the columns of a block are still in cache when the GEMM reads them, and nothing of
the size of the whole columns (``N*C*K*P``) is allocated:

* forward: per block, sample the columns (channels-last, ``[P, K*C/groups]`` per
  conv group) and one GEMM per conv group writes the block's outputs;
* backward: per block, sample the columns again for ``grad_W += grad_out @ cols``,
  and ``grad_cols = grad_out^T @ W`` goes straight into the sampling adjoint: the
  input gradient (a scatter, split by channel so no two threads write one pixel's
  channel) and the offset and mask gradients (sums over a deform group's channels,
  split by output position).

Memory: a channels-last copy of the input is kept for the backward (none when the
input is already channels-last).  Besides its outputs, the forward allocates one block
of columns, the backward two and a channels-last float accumulator of the input
gradient.  mmcv's CPU kernels allocate one image's columns (DCNv2; ``im2col_step``
images' for DCNv1); the ``'fast'`` backend keeps two batches' worth between forward
and backward.

The extension is optional (see ``setup.py``); it is imported on first use, and the
environment variable ``MMDCN_DISABLE_EXT=1`` makes this backend unavailable, as if
it had not been built.
"""
import functools
import importlib
import os
import warnings
from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..checks import DeformGeometry

DISABLE_ENV_VAR = 'MMDCN_DISABLE_EXT'
EXTENSION = 'mmdcn_plugin._deform_conv_cpu'


@functools.lru_cache(maxsize=None)
def _load_extension():
    """The compiled module, or None when it was not built (or does not load)."""
    try:
        return importlib.import_module(EXTENSION)
    except ModuleNotFoundError:  # not built: the documented fallback
        return None
    except Exception as exc:  # built, but e.g. against another torch (undefined symbol)
        warnings.warn(f'the compiled CPU kernels ({EXTENSION}) are there but do not load '
                      f'({exc}); CPU deformable convolution falls back to the slower '
                      "'fast' backend.  Rebuild them: pip install --no-build-isolation -e . "
                      '(or python setup.py build_ext --inplace)', RuntimeWarning)
        return None


def extension_available() -> bool:
    """True when the compiled CPU kernels load and ``MMDCN_DISABLE_EXT`` is not set."""
    if os.environ.get(DISABLE_ENV_VAR, '0') not in ('', '0'):
        return False
    return _load_extension() is not None


class _CppDeformConv(torch.autograd.Function):

    @staticmethod
    def forward(ctx, input, offset, mask, weight, bias, geo: DeformGeometry, block: int):
        with torch.autocast('cpu', enabled=False):
            out = _load_extension().deform_conv_forward(
                input, offset, mask, weight, bias, *geo.stride, *geo.padding, *geo.dilation,
                geo.deform_groups, block)
        ctx.geo, ctx.block = geo, block
        ctx.has_bias = bias is not None
        ctx.save_for_backward(input, offset, mask, weight)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        geo = ctx.geo
        input, offset, mask, weight = ctx.saved_tensors
        need_input, need_offset, need_mask, need_weight, need_bias = ctx.needs_input_grad[:5]
        # Backward may run under the caller's autocast: the GEMMs inside must keep the
        # forward's dtype.
        with torch.autocast('cpu', enabled=False):
            grads = _load_extension().deform_conv_backward(
                grad_out, input, offset, mask, weight, ctx.has_bias, *geo.stride,
                *geo.padding, *geo.dilation, geo.deform_groups, ctx.block, need_input,
                need_offset, need_mask and mask is not None, need_weight,
                need_bias and ctx.has_bias)
        return (*grads, None, None)


def deform_conv2d_cpp(input: Tensor, offset: Tensor, weight: Tensor, bias: Optional[Tensor],
                      mask: Optional[Tensor], geo: DeformGeometry, block: int = 0) -> Tensor:
    """Deformable convolution with the compiled CPU kernels (CPU tensors only).

    ``block`` is the number of output positions per block (0: about 2 MiB of
    columns); any value gives the same result, tests use small ones.
    """
    if input.device.type != 'cpu':
        raise RuntimeError(f"backend 'cpp' runs on CPU tensors only, got {input.device}; "
                           "use backend='auto' (or 'fast', 'mmcv')")
    # The kernels read the input channels-last; converting once here serves both passes.
    return _CppDeformConv.apply(input.contiguous(memory_format=torch.channels_last),
                                offset.contiguous(),
                                mask.contiguous() if mask is not None else None,
                                weight.contiguous(), bias, geo, block)
