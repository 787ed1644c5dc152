"""Compiled CPU deformable convolution: C++ sampling kernels around PyTorch's GEMMs.

The structure of :mod:`.fast_impl` (im2col columns, one batched GEMM per conv
group), with the bilinear sampling and its adjoint done by the kernels of
``mmdcn_plugin/csrc/deform_conv_cpu.cpp`` (multi-threaded with ``at::parallel_for``,
so they follow ``torch.set_num_threads``) instead of ``grid_sample`` and its
backward.  Same numbers as mmcv, border rule included.

The kernels work channels-last: they read the input as ``[N, H, W, C]`` (the four
corners of a point are four contiguous channel vectors) and write the columns as
``Tensor[N, groups, P, K, C/groups]``, so that conv group ``g`` of image ``n`` is
one row-major ``[P, K*C/groups]`` matrix, the GEMM's transposed operand.

Backward: ``grad_W = grad_out @ cols`` and ``grad_cols = grad_out^T @ W`` (two
GEMMs); one kernel call turns ``grad_cols`` into the input gradient (a scatter, split
by channel so no two threads write one pixel's channel), the offset gradient and the
mask gradient (sums over a deform group's channels, split by output position).

Memory: the masked columns (``N*C*K*P``, what an im2col conv holds) and a
channels-last copy of the input are kept for the weight gradient; the backward
goes one image at a time through one ``grad_cols`` buffer (``C*K*P``).  The
kernels' corner table is ``G*K*P`` small entries per image.

The extension is optional (see ``setup.py``); it is imported on first use, and the
environment variable ``MMDCN_DISABLE_EXT=1`` makes this backend unavailable, as if
it had not been built.
"""
import functools
import importlib
import os
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
    except Exception:  # ImportError, or an undefined symbol from a mismatched torch
        return None


def extension_available() -> bool:
    """True when the compiled CPU kernels load and ``MMDCN_DISABLE_EXT`` is not set."""
    if os.environ.get(DISABLE_ENV_VAR, '0') not in ('', '0'):
        return False
    return _load_extension() is not None


def _geometry_args(geo: DeformGeometry):
    return (*geo.kernel, *geo.stride, *geo.padding, *geo.dilation, geo.deform_groups,
            geo.groups)


def _weight_matrix(weight: Tensor, geo: DeformGeometry) -> Tensor:
    """``weight[o, c, kh, kw]`` as ``Tensor[groups, C_out/groups, K * C/groups]``.

    Columns ordered (kernel point, channel), as in the channels-last columns.
    """
    groups, k = geo.groups, geo.kernel[0] * geo.kernel[1]
    og, cg = geo.out_channels // groups, geo.in_channels // groups
    return weight.reshape(groups, og, cg, k).transpose(2, 3).reshape(groups, og, k * cg)


class _CppDeformConv(torch.autograd.Function):

    @staticmethod
    def forward(ctx, input, offset, mask, weight, bias, geo: DeformGeometry):
        ext = _load_extension()
        n, groups = geo.batch, geo.groups
        k, p = geo.kernel[0] * geo.kernel[1], geo.out_size[0] * geo.out_size[1]
        kcg = k * (geo.in_channels // groups)
        # [N, groups, P, K, C/groups]: conv group g of image n is a [P, K*C/groups] matrix.
        cols = ext.deform_im2col(input, offset, mask, *_geometry_args(geo))
        out = torch.matmul(_weight_matrix(weight, geo),               # [groups, og, K*cg]
                           cols.view(n, groups, p, kcg).transpose(2, 3))  # [N, groups, og, P]
        out = out.view(n, geo.out_channels, *geo.out_size)
        if bias is not None:
            out = out + bias.view(1, -1, 1, 1)
        ctx.geo = geo
        ctx.has_bias = bias is not None
        ctx.has_mask = mask is not None
        ctx.save_for_backward(input, offset, mask if mask is not None else torch.empty(0),
                              weight, cols)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        # Backward may run under the caller's autocast: the GEMMs must stay in the
        # forward's dtype, which the kernels require of grad_columns.
        with torch.autocast('cpu', enabled=False):
            return _CppDeformConv._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out):
        geo = ctx.geo
        input, offset, mask, weight, cols = ctx.saved_tensors
        mask = mask if ctx.has_mask else None
        n, groups, c_out = geo.batch, geo.groups, geo.out_channels
        k, p = geo.kernel[0] * geo.kernel[1], geo.out_size[0] * geo.out_size[1]
        cg, og = geo.in_channels // groups, c_out // groups
        need_input, need_offset, need_mask, need_weight, need_bias, _ = ctx.needs_input_grad
        need_mask = need_mask and ctx.has_mask

        gout = grad_out.reshape(n, groups, og, p)
        grad_input = grad_offset = grad_mask = grad_weight = grad_bias = None
        if need_bias and ctx.has_bias:
            grad_bias = grad_out.sum((0, 2, 3))
        if need_weight:
            gw = torch.matmul(gout, cols.view(n, groups, p, k * cg)).sum(0)  # [groups, og, K*cg]
            grad_weight = gw.view(groups, og, k, cg).transpose(2, 3).reshape(weight.shape)
        if need_input or need_offset or need_mask:
            # One image at a time through one buffer: the backward adds one image's
            # columns to what the forward kept, not the batch's.
            ext = _load_extension()
            wmat = _weight_matrix(weight, geo)
            grad_cols = cols.new_empty((1, groups, p, k * cg))  # the columns' layout
            per_image = []
            for i in range(n):
                torch.matmul(gout[i:i + 1].transpose(2, 3), wmat, out=grad_cols)
                per_image.append(ext.deform_col2im_backward(
                    grad_cols, input[i:i + 1], offset[i:i + 1],
                    mask[i:i + 1] if mask is not None else None, *_geometry_args(geo),
                    need_input, need_offset, need_mask))
            grad_input, grad_offset, grad_mask = (
                torch.cat(grads) if grads[0] is not None else None for grads in zip(*per_image))
        return grad_input, grad_offset, grad_mask, grad_weight, grad_bias, None


def deform_conv2d_cpp(input: Tensor, offset: Tensor, weight: Tensor, bias: Optional[Tensor],
                      mask: Optional[Tensor], geo: DeformGeometry) -> Tensor:
    """Deformable convolution with the compiled CPU kernels (CPU tensors only)."""
    if input.device.type != 'cpu':
        raise RuntimeError(f"backend 'cpp' runs on CPU tensors only, got {input.device}; "
                           "use backend='auto' (or 'fast', 'mmcv')")
    # The kernels read the input channels-last; converting once here serves both passes.
    return _CppDeformConv.apply(input.contiguous(memory_format=torch.channels_last),
                                offset.contiguous(),
                                mask.contiguous() if mask is not None else None,
                                weight.contiguous(), bias, geo)
