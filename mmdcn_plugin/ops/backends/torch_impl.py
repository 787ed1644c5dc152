"""Pure-PyTorch deformable convolution: runs anywhere, no compiled code, traceable.

Bilinear sampling into channels-last columns followed by one GEMM; autograd yields
every gradient.  The sampling rules (mmcv's, border included) live in
:mod:`.sampling`.
"""
from typing import Optional

import torch
from torch import Tensor

from ..checks import DeformGeometry
from .sampling import (bilinear_corners, channels_last_rows, coordinate_dtype, mask_points,
                       sampling_coords, weight_matrix)


def bilinear_columns(input: Tensor, offset: Tensor, mask: Optional[Tensor],
                     geo: DeformGeometry) -> Tensor:
    """Sample the deformed grid into channels-last columns.

    Args:
        input (Tensor[N, C_in, H, W]): feature map.
        offset (Tensor[N, 2*G*kh*kw, H_out, W_out]): (dy, dx) per group and kernel point.
        mask (Tensor[N, G*kh*kw, H_out, W_out] or None): modulation (DCNv2).

    Returns:
        Tensor[N, H_out*W_out, kh*kw, C_in]: ``cols[n, p, k, c]`` is channel ``c``
        sampled at kernel point ``k`` of output position ``p``, times the mask.
    """
    n, c, g = geo.batch, geo.in_channels, geo.deform_groups
    k, p = geo.kernel[0] * geo.kernel[1], geo.out_size[0] * geo.out_size[1]
    cdtype = coordinate_dtype(input.dtype)
    y, x = sampling_coords(offset, geo, cdtype)
    m = mask_points(mask, geo, cdtype)
    rows = channels_last_rows(input, geo)
    zero = torch.zeros((), dtype=cdtype, device=input.device)
    cols = None
    for corner in bilinear_corners(y, x, geo):
        weight = torch.where(corner.inside, corner.wy * corner.wx, zero)
        if m is not None:
            weight = weight * m
        sampled = rows.index_select(0, corner.index.reshape(-1)).view(n, p, k, g, c // g)
        term = sampled * weight.to(input.dtype).unsqueeze(-1)
        cols = term if cols is None else cols + term
    return cols.reshape(n, p, k, c)


def columns_matmul(cols: Tensor, weight: Tensor, bias: Optional[Tensor],
                   geo: DeformGeometry) -> Tensor:
    """Apply the (grouped) convolution weight to channels-last columns.

    Args:
        cols (Tensor[N, P, K, C_in]): from :func:`bilinear_columns`.
        weight (Tensor[C_out, C_in/groups, kh, kw]).

    Returns:
        Tensor[N, C_out, H_out, W_out], contiguous.
    """
    n, p, k, c = cols.shape
    groups, c_out = geo.groups, geo.out_channels
    wmat = weight_matrix(weight, geo)
    if groups == 1:
        out = cols.reshape(n * p, k * c) @ wmat[0]
    else:
        cg = c // groups
        gcols = cols.reshape(n * p, k, groups, cg).permute(2, 0, 1, 3).reshape(groups, n * p,
                                                                             k * cg)
        out = torch.bmm(gcols, wmat).permute(1, 0, 2).reshape(n * p, c_out)
    if bias is not None:
        out = out + bias
    h_out, w_out = geo.out_size
    return out.reshape(n, h_out, w_out, c_out).permute(0, 3, 1, 2).contiguous()


def deform_conv2d_torch(input: Tensor, offset: Tensor, weight: Tensor, bias: Optional[Tensor],
                        mask: Optional[Tensor], geo: DeformGeometry) -> Tensor:
    """Deformable convolution in plain PyTorch (see :mod:`.sampling` for the rules)."""
    cols = bilinear_columns(input, offset, mask, geo)
    return columns_matmul(cols, weight, bias, geo)
