"""Autograd over mmcv's compiled deformable-convolution kernels, called directly.

``mmcv.ops.deform_conv2d`` and ``mmcv.ops.modulated_deform_conv2d`` are autograd
Functions around the kernels of ``mmcv._ext``.  The ``mmcv`` backend calls those
kernels through the two Functions below instead, with the same arguments, so the
numbers are mmcv's to the bit (tests/test_mmcv_function.py compares them), for two
reasons of cost (issue 24 item 4: the wrapper may cost at most 5 % over mmcv's own
call):

* the offset sanitising (:func:`sanitize_offset`) runs inside the Function, where
  autograd does not record it: no graph nodes, and no extra kernels in the backward.
  Its gradient needs none: a value it replaces becomes a point outside the image, whose
  sample is 0 and whose gradient in every kernel is 0 (offset, mask and input alike),
  exactly what the chain rule through ``nan_to_num`` and ``clamp`` gives there;
* the checks, dtype casts and output-size arithmetic of mmcv's Python layer are left
  out: :func:`~mmdcn_plugin.ops.checks.check_deform_conv2d_args` has done them, and
  its geometry gives the output size.

Every tensor a kernel receives is contiguous and of one dtype (the caller's job,
:func:`.mmcv_impl.deform_conv2d_mmcv`).
"""
import functools
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import Function, once_differentiable

from ..checks import DeformGeometry

MAX_IM2COL_STEP = 32


@functools.lru_cache(maxsize=None)
def mmcv_ext():
    """mmcv's compiled extension with the five deformable-convolution kernels."""
    from mmcv.utils import ext_loader
    return ext_loader.load_ext('_ext', [
        'deform_conv_forward', 'deform_conv_backward_input', 'deform_conv_backward_parameters',
        'modulated_deform_conv_forward', 'modulated_deform_conv_backward'])


def im2col_step_for(batch: int, limit: int = MAX_IM2COL_STEP) -> int:
    """Largest divisor of ``batch`` that is at most ``limit`` (DCNv1 needs one)."""
    for step in range(min(batch, limit), 0, -1):
        if batch % step == 0:
            return step
    return 1


def sanitize_offset(offset: Tensor, geo: DeformGeometry) -> Tensor:
    """Map non-finite and huge offsets to a finite value outside the image.

    Any |offset| >= ``far`` already puts the point outside (-1, H) x (-1, W) for every
    output position, so clamping there changes no sample and no gradient.  mmcv's
    kernels cast coordinates to int: NaN, inf and 1e30 would overflow there.

    Args:
        offset (Tensor[N, 2 * G * kh * kw, H_out, W_out])

    Returns:
        Tensor of the same shape: a new tensor (``offset`` is not changed).
    """
    far = 2.0 * (max(geo.height, geo.width) + max(geo.padding)
                 + max(geo.dilation) * max(geo.kernel) + 2)
    return torch.nan_to_num(offset, nan=far, posinf=far, neginf=-far).clamp_(-far, far)


def _kernel_args(geo: DeformGeometry) -> dict:
    """The geometry keywords of mmcv's DCNv2 kernels."""
    return dict(kernel_h=geo.kernel[0], kernel_w=geo.kernel[1], stride_h=geo.stride[0],
                stride_w=geo.stride[1], pad_h=geo.padding[0], pad_w=geo.padding[1],
                dilation_h=geo.dilation[0], dilation_w=geo.dilation[1], group=geo.groups,
                deformable_group=geo.deform_groups)


def _v1_kernel_args(geo: DeformGeometry) -> dict:
    """The geometry keywords of mmcv's DCNv1 kernels (their own names, width first)."""
    return dict(kW=geo.kernel[1], kH=geo.kernel[0], dW=geo.stride[1], dH=geo.stride[0],
                padW=geo.padding[1], padH=geo.padding[0], dilationW=geo.dilation[1],
                dilationH=geo.dilation[0], group=geo.groups, deformable_group=geo.deform_groups,
                im2col_step=im2col_step_for(geo.batch))


class ModulatedDeformConvMMCV(Function):
    """DCNv2 through ``modulated_deform_conv_forward``/``_backward``.

    ``apply(input, offset, mask, weight, bias, geo)``; shapes as in
    :func:`mmdcn_plugin.ops.deform_conv2d`.  Returns Tensor[N, C_out, H_out, W_out].
    """

    @staticmethod
    def forward(ctx, input: Tensor, offset: Tensor, mask: Tensor, weight: Tensor,
                bias: Optional[Tensor], geo: DeformGeometry) -> Tensor:
        ctx.geo, ctx.with_bias = geo, bias is not None
        if bias is None:
            bias = input.new_empty(0)
        offset = sanitize_offset(offset, geo)
        output = input.new_empty((geo.batch, geo.out_channels) + geo.out_size)
        ctx.bufs = (input.new_empty(0), input.new_empty(0))  # ones, columns
        mmcv_ext().modulated_deform_conv_forward(
            input, weight, bias, ctx.bufs[0], offset, mask, output, ctx.bufs[1],
            with_bias=ctx.with_bias, **_kernel_args(geo))
        ctx.save_for_backward(input, offset, mask, weight, bias)
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor) -> Tuple[Optional[Tensor], ...]:
        input, offset, mask, weight, bias = ctx.saved_tensors
        # The kernel accumulates into all five (atomicAdd on CUDA): zeros, as mmcv's.
        grads = [torch.zeros_like(t) for t in (input, weight, bias, offset, mask)]
        mmcv_ext().modulated_deform_conv_backward(
            input, weight, bias, ctx.bufs[0], offset, mask, ctx.bufs[1], *grads,
            grad_output.contiguous(), with_bias=ctx.with_bias, **_kernel_args(ctx.geo))
        grad_input, grad_weight, grad_bias, grad_offset, grad_mask = grads
        return (grad_input, grad_offset, grad_mask, grad_weight,
                grad_bias if ctx.with_bias else None, None)


class DeformConvMMCV(Function):
    """DCNv1 (no mask, no bias) through ``deform_conv_forward``/``_backward_*``.

    ``apply(input, offset, weight, geo)``; shapes as in
    :func:`mmdcn_plugin.ops.deform_conv2d`.  Returns Tensor[N, C_out, H_out, W_out].
    The images go through the kernels ``im2col_step`` at a time, a divisor of the
    batch (:func:`im2col_step_for`; mmcv asserts that it divides).
    """

    @staticmethod
    def forward(ctx, input: Tensor, offset: Tensor, weight: Tensor,
                geo: DeformGeometry) -> Tensor:
        ctx.geo = geo
        offset = sanitize_offset(offset, geo)
        output = input.new_empty((geo.batch, geo.out_channels) + geo.out_size)
        ctx.bufs = (input.new_empty(0), input.new_empty(0))  # columns, ones
        mmcv_ext().deform_conv_forward(input, weight, offset, output, *ctx.bufs,
                                       **_v1_kernel_args(geo))
        ctx.save_for_backward(input, offset, weight)
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor) -> Tuple[Optional[Tensor], ...]:
        input, offset, weight = ctx.saved_tensors
        grad_output = grad_output.contiguous()
        args = _v1_kernel_args(ctx.geo)
        grad_input = grad_offset = grad_weight = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            grad_input, grad_offset = torch.zeros_like(input), torch.zeros_like(offset)
            mmcv_ext().deform_conv_backward_input(input, offset, grad_output, grad_input,
                                                  grad_offset, weight, ctx.bufs[0], **args)
        if ctx.needs_input_grad[2]:
            grad_weight = torch.zeros_like(weight)
            mmcv_ext().deform_conv_backward_parameters(input, offset, grad_output, grad_weight,
                                                       *ctx.bufs, scale=1, **args)
        return grad_input, grad_offset, grad_weight, None
