"""Fast deformable convolution: fused bilinear sampling and a hand-written backward.

Same numbers as :mod:`.torch_impl` (and so as mmcv, border rule included) at a
fraction of the cost of autograd through it or of mmcv's CPU kernels.

Forward: ``grid_sample`` (one fused, multi-threaded pass that reads the four
corners of every point) samples the input straight into im2col layout
``[N, C, K, P]`` — deform groups are folded into the batch — and one batched GEMM
per conv group applies the weight, exactly the GEMM a plain convolution does.

Backward, by hand:

* ``grad_cols = W^T @ grad_out`` and ``grad_W = grad_out @ cols^T`` (two GEMMs);
* the input gradient is ``grid_sample``'s own adjoint (``grid_sampler_2d_backward``,
  input part only) applied to ``grad_cols * mask``;
* the coordinate gradient follows mmcv's rule — zero for invalid points, and the
  slope between ``floor(y)`` and ``floor(y) + 1`` — computed without gathers: the
  y-slope is the forward difference image ``x[r] - x[r-1]`` (zero rows outside)
  sampled at the *exact integer* row ``floor(y) + 1`` and the fractional column
  ``x``; likewise for x.  Because the sampled row is integral, coordinate rounding
  inside ``grid_sample`` can only blend in a neighbour with a weight of float
  rounding size, never pick the other slope;
* ``grad_mask = sum_c grad_cols * value``.

Memory: the sampled values (``N*C*K*P``, what an im2col conv holds) are kept for
backward; the forward briefly holds them twice (values and masked columns).
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import DeformGeometry
from .sampling import coordinate_dtype, sampling_coords

_BILINEAR, _ZEROS = 0, 0  # grid_sampler's interpolation_mode and padding_mode codes


def _normalise(coord: Tensor, size: int) -> Tensor:
    """Pixel coordinate -> grid_sample's [-1, 1] with ``align_corners=False``."""
    return (2 * coord + 1) / size - 1


def _grid(y: Tensor, x: Tensor, height: int, width: int, dtype) -> Tensor:
    return torch.stack((_normalise(x, width), _normalise(y, height)), -1).to(dtype)


def _sample(image: Tensor, grid: Tensor) -> Tensor:
    return F.grid_sample(image, grid, mode='bilinear', padding_mode='zeros',
                         align_corners=False)


class _FastDeformConv(torch.autograd.Function):

    @staticmethod
    def forward(ctx, input, offset, mask, weight, bias, geo: DeformGeometry):
        n, c, h, w = geo.batch, geo.in_channels, geo.height, geo.width
        g, groups = geo.deform_groups, geo.groups
        k, p = geo.kernel[0] * geo.kernel[1], geo.out_size[0] * geo.out_size[1]
        cdtype = coordinate_dtype(input.dtype)
        y, x = sampling_coords(offset, geo, cdtype, layout='ngkp')   # [N, G, K, P]
        valid = (y > -1) & (y < h) & (x > -1) & (x < w)
        # Invalid points (outside, NaN, inf) are moved to (-2, -2): exactly zero there.
        far = torch.full((), -2.0, dtype=cdtype, device=input.device)
        y, x = torch.where(valid, y, far), torch.where(valid, x, far)
        grid = _grid(y, x, h, w, input.dtype).view(n * g, k, p, 2)
        image = input.reshape(n * g, c // g, h, w)
        value = _sample(image, grid).view(n, c, k, p)                # [N, C, K, P]
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
        ctx.save_for_backward(input, weight, value, m if m is not None else torch.empty(0),
                              y, x, valid, grid)
        ctx.has_mask = mask is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        geo = ctx.geo
        input, weight, value, m, y, x, valid, grid = ctx.saved_tensors
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
            cols = value if m is None else (value.view(n, g, c // g, k, p) * m)
            cols = cols.reshape(n, groups, cg * k, p)
            grad_weight = torch.matmul(gout, cols.transpose(2, 3)).sum(0).view_as(weight)
        if not (need_input or need_offset or need_mask):
            return grad_input, grad_offset, grad_mask, grad_weight, grad_bias, None

        wmat = weight.reshape(groups, og, cg * k)
        grad_cols = torch.matmul(wmat.transpose(1, 2), gout).view(n, g, c // g, k, p)
        if need_input:
            masked = grad_cols if m is None else grad_cols * m
            grad_image, _ = torch.ops.aten.grid_sampler_2d_backward(
                masked.reshape(n * g, c // g, k, p), input.reshape(n * g, c // g, h, w), grid,
                _BILINEAR, _ZEROS, False, [True, False])
            grad_input = grad_image.view(n, c, h, w)
        if need_mask and ctx.has_mask:
            grad_m = (grad_cols * value.view(n, g, c // g, k, p)).sum(2)     # [N, G, K, P]
            grad_mask = grad_m.reshape(n, g * k, *geo.out_size)
        if need_offset:
            image = input.reshape(n * g, c // g, h, w)
            padded = F.pad(image, (1, 1, 1, 1))
            # diff_y[r + 1] = x[r + 1] - x[r], rows -1..H-1 (zero outside the image).
            diff_y = padded[:, :, 1:, 1:-1] - padded[:, :, :-1, 1:-1]      # [NG, C/G, H+1, W]
            diff_x = padded[:, :, 1:-1, 1:] - padded[:, :, 1:-1, :-1]      # [NG, C/G, H, W+1]
            y0, x0 = torch.floor(y), torch.floor(x)
            grid_y = _grid(y0 + 1, x, h + 1, w, input.dtype).view(n * g, k, p, 2)
            grid_x = _grid(y, x0 + 1, h, w + 1, input.dtype).view(n * g, k, p, 2)
            slope_y = _sample(diff_y, grid_y).view(n, g, c // g, k, p)
            slope_x = _sample(diff_x, grid_x).view(n, g, c // g, k, p)
            gy = (grad_cols * slope_y).sum(2)
            gx = (grad_cols * slope_x).sum(2)
            scale = valid.to(gy.dtype)
            if m is not None:
                scale = scale * m.view(n, g, k, p)
            grad_offset = (torch.stack((gy * scale, gx * scale), 3)          # [N, G, K, 2, P]
                           .reshape(n, 2 * g * k, *geo.out_size).to(grad_out.dtype))
        return grad_input, grad_offset, grad_mask, grad_weight, grad_bias, None


def deform_conv2d_fast(input: Tensor, offset: Tensor, weight: Tensor, bias: Optional[Tensor],
                       mask: Optional[Tensor], geo: DeformGeometry) -> Tensor:
    """Deformable convolution with fused sampling and a hand-written backward."""
    return _FastDeformConv.apply(input.contiguous(), offset, mask, weight.contiguous(), bias,
                                 geo)
