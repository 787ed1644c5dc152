"""Fast deformable convolution: fused bilinear sampling and a hand-written backward.

Same numbers as :mod:`.torch_impl` (and so as mmcv, border rule included) at a
fraction of the cost of autograd through it or of mmcv's CPU kernels.

Forward: ``grid_sample`` (one fused, multi-threaded pass that reads the four
corners of every point) samples the input straight into im2col layout
``[N, C, K, P]`` — deform groups are folded into the batch — and one batched GEMM
per conv group applies the weight, exactly the GEMM a plain convolution does.

Backward: ``grad_cols = W^T @ grad_out`` and ``grad_W = grad_out @ cols^T`` (two
GEMMs); ``grid_sample``'s own adjoint (``grid_sampler_2d_backward``) applied to
``grad_cols * mask`` gives the input gradient and the coordinate gradient in one
fused pass; ``grad_mask = sum_c grad_cols * value``.

Why grid_sample's coordinate gradient is mmcv's: mmcv takes the slope between
``floor(y)`` and ``floor(y) + 1``, so at an integer coordinate (every point of a
fresh layer, whose offsets are 0) the result depends on ``floor`` seeing exactly
that integer.  grid_sample maps its normalised grid back to pixels as
``(g + 1) * size / 2 - 0.5``, which is exact only when ``size`` is a power of two:
the input is therefore zero-padded on the bottom and right to power-of-two sizes
(zeros there are what mmcv reads outside the image anyway).  Invalid points
(outside ``(-1, H) x (-1, W)``, NaN, inf) are moved to ``(-2, -2)``, where value
and gradient are exactly 0, as mmcv defines them.

Memory: the sampled values and the masked columns (each ``N*C*K*P``, what an
im2col conv holds) are kept for backward, plus the padded input.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import DeformGeometry
from ..sampling_rules import inside_image
from .sampling import coordinate_dtype, sampling_coords

_BILINEAR, _ZEROS = 0, 0  # grid_sampler's interpolation_mode and padding_mode codes


def _pow2(size: int) -> int:
    return 1 << max(0, math.ceil(math.log2(size)))


def _normalise(coord: Tensor, size: int) -> Tensor:
    """Pixel coordinate -> grid_sample's [-1, 1] with ``align_corners=False``.

    Exact (and exactly inverted by grid_sample) when ``size`` is a power of two.
    """
    return (2 * coord + 1) / size - 1


class _FastDeformConv(torch.autograd.Function):

    @staticmethod
    def forward(ctx, input, offset, mask, weight, bias, geo: DeformGeometry):
        n, c, h, w = geo.batch, geo.in_channels, geo.height, geo.width
        g, groups = geo.deform_groups, geo.groups
        k, p = geo.kernel[0] * geo.kernel[1], geo.out_size[0] * geo.out_size[1]
        cdtype = coordinate_dtype(input.dtype)
        y, x = sampling_coords(offset, geo, cdtype, layout='ngkp')   # [N, G, K, P]
        valid = inside_image(y, x, (h, w))
        # Invalid points (outside, NaN, inf) are moved to (-2, -2): exactly zero there.
        far = torch.full((), -2.0, dtype=cdtype, device=input.device)
        y, x = torch.where(valid, y, far), torch.where(valid, x, far)
        hp, wp = _pow2(h), _pow2(w)
        grid = torch.stack((_normalise(x, wp), _normalise(y, hp)), -1).to(input.dtype)
        grid = grid.view(n * g, k, p, 2)
        image = input.reshape(n * g, c // g, h, w)
        if (hp, wp) != (h, w):
            image = F.pad(image, (0, wp - w, 0, hp - h))
        value = F.grid_sample(image, grid, mode='bilinear', padding_mode='zeros',
                              align_corners=False).view(n, c, k, p)  # [N, C, K, P]
        if mask is not None:
            m = mask.reshape(n, g, 1, k, p).to(input.dtype)
            cols = (value.view(n, g, c // g, k, p) * m).view(n, c, k, p)
        else:
            m, cols = None, value
        wmat = weight.reshape(groups, geo.out_channels // groups, (c // groups) * k)
        out = torch.matmul(wmat, cols.view(n, groups, (c // groups) * k, p))
        out = out.view(n, geo.out_channels, *geo.out_size)
        if bias is not None:
            out = out + bias.view(1, -1, 1, 1)

        ctx.geo = geo
        ctx.has_bias = bias is not None
        ctx.save_for_backward(image, weight, value, cols,
                              m if m is not None else torch.empty(0), valid, grid)
        ctx.has_mask = mask is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        geo = ctx.geo
        image, weight, value, cols, m, valid, grid = ctx.saved_tensors
        m = m if ctx.has_mask else None
        n, c, h, w = geo.batch, geo.in_channels, geo.height, geo.width
        g, groups, c_out = geo.deform_groups, geo.groups, geo.out_channels
        k, p = geo.kernel[0] * geo.kernel[1], geo.out_size[0] * geo.out_size[1]
        cg, og = c // groups, c_out // groups
        need_input, need_offset, need_mask, need_weight, need_bias, _ = ctx.needs_input_grad

        gout = grad_out.reshape(n, groups, og, p)
        grad_input = grad_offset = grad_mask = grad_weight = grad_bias = None
        if need_bias and ctx.has_bias:
            grad_bias = grad_out.sum((0, 2, 3))
        if need_weight:
            gcols = cols.view(n, groups, cg * k, p)
            grad_weight = torch.matmul(gout, gcols.transpose(2, 3)).sum(0).view_as(weight)
        if not (need_input or need_offset or need_mask):
            return grad_input, grad_offset, grad_mask, grad_weight, grad_bias, None

        wmat = weight.reshape(groups, og, cg * k)
        grad_cols = torch.matmul(wmat.transpose(1, 2), gout).view(n, g, c // g, k, p)
        scratch = None
        if need_mask and ctx.has_mask:
            scratch = grad_cols * value.view(n, g, c // g, k, p)
            grad_mask = scratch.sum(2).reshape(n, g * k, *geo.out_size)  # [N, G*K, Ho, Wo]
        if need_input or need_offset:
            if m is None:
                masked = grad_cols
            elif scratch is not None:  # reuse the product's memory: one cols-size
                masked = torch.mul(grad_cols, m, out=scratch)  # allocation fewer
            else:
                masked = grad_cols * m
            del grad_cols
            grad_image, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
                masked.reshape(n * g, c // g, k, p), image, grid, _BILINEAR, _ZEROS, False,
                [need_input, need_offset])
            if need_input:
                grad_input = grad_image[:, :, :h, :w].reshape(n, c, h, w)
            if need_offset:
                hp, wp = image.shape[-2:]
                # d(normalised)/d(pixel) = 2 / size; invalid points have no gradient.
                gx = grad_grid[..., 0].view(n, g, k, p) * (2.0 / wp)
                gy = grad_grid[..., 1].view(n, g, k, p) * (2.0 / hp)
                scale = valid.to(gy.dtype)
                grad_offset = (torch.stack((gy * scale, gx * scale), 3)      # [N, G, K, 2, P]
                               .reshape(n, 2 * g * k, *geo.out_size).to(grad_out.dtype))
        return grad_input, grad_offset, grad_mask, grad_weight, grad_bias, None


def deform_conv2d_fast(input: Tensor, offset: Tensor, weight: Tensor, bias: Optional[Tensor],
                       mask: Optional[Tensor], geo: DeformGeometry) -> Tensor:
    """Deformable convolution with fused sampling and a hand-written backward.

    On CUDA tensors under ``torch.use_deterministic_algorithms(True)`` it runs
    :mod:`.torch_impl` instead (the same numbers): CUDA's ``grid_sampler_2d_backward``
    has no deterministic implementation and raises there, while the pure path's
    ``index_select`` backward is deterministic.
    """
    if input.device.type == 'cuda' and torch.are_deterministic_algorithms_enabled():
        from .torch_impl import deform_conv2d_torch
        return deform_conv2d_torch(input, offset, weight, bias, mask, geo)
    return _FastDeformConv.apply(input.contiguous(), offset, mask, weight.contiguous(), bias,
                                 geo)
