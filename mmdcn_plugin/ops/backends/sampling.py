"""Where a deformable convolution samples, and with which bilinear weights.

Shared by the pure-PyTorch backend (which differentiates through it with autograd)
and the fast CPU backend (which differentiates by hand).  The rules are mmcv's:

* A sampling point is *valid* only when it is inside the image by
  :func:`mmdcn_plugin.ops.sampling_rules.inside_image` (``-1 < y < H`` and
  ``-1 < x < W``), the one definition of that rule.  Invalid
  points sample 0 and have a zero coordinate gradient, including points exactly on
  ``y == -1`` (where a naive bilinear still sees row 0 with weight 0 but a non-zero
  slope).  ``torch.where`` replaces invalid coordinates by 0, so NaN/inf offsets
  never reach the arithmetic and their gradient is exactly 0.
* Corners come from ``floor``: at an integer coordinate the slope is taken between
  that pixel and the next one, as mmcv's ``get_coordinate_weight`` does.  Corners
  outside the image read 0.

Layout: every per-point tensor is ``[N, P, K, G]`` — image, output position
(``P = H_out * W_out``), kernel point, deform group — so that the sampled channels
form channels-last columns ``[N, P, K, C]`` ready for one GEMM.
"""
from typing import List, NamedTuple, Optional

import torch
from torch import Tensor

from ..checks import DeformGeometry
from ..sampling_rules import coordinate_dtype, geometry_points, inside_image

__all__ = ['Corner', 'coordinate_dtype', 'sampling_coords', 'bilinear_corners', 'mask_points',
           'channels_last_rows', 'weight_matrix']


class Corner(NamedTuple):
    """One of the four bilinear corners of every sampling point, each ``[N, P, K, G]``."""

    index: Tensor    # int64 row of the channels-last input (clamped into the image)
    inside: Tensor   # bool: the point is valid and this corner lies in the image
    wy: Tensor       # weight along y (1 - ly for the top corner, ly for the bottom)
    wx: Tensor       # weight along x
    sign_y: float    # d wy / d y
    sign_x: float    # d wx / d x


def sampling_coords(offset: Tensor, geo: DeformGeometry, dtype: torch.dtype,
                    layout: str = 'npkg'):
    """Absolute sampling coordinates ``(y, x)`` of ``dtype``.

    The grid is :func:`mmdcn_plugin.ops.sampling_points`'s (through
    :func:`~mmdcn_plugin.ops.sampling_rules.geometry_points`).

    ``layout='npkg'`` gives ``Tensor[N, P, K, G]`` (channels-last columns);
    ``'ngkp'`` gives ``Tensor[N, G, K, P]`` (im2col order, deform group first).
    """
    y, x = geometry_points(offset, geo, dtype)
    y, x = y.flatten(3), x.flatten(3)                                # [N, G, K, P]
    if layout == 'ngkp':
        return y, x
    return y.permute(0, 3, 2, 1), x.permute(0, 3, 2, 1)


def bilinear_corners(y: Tensor, x: Tensor, geo: DeformGeometry):
    """The four corners of every point, plus the fractional parts ``(ly, lx)``.

    Differentiable in ``y`` and ``x`` (through ``wy``/``wx``) with mmcv's rules.
    """
    h, w, g = geo.height, geo.width, geo.deform_groups
    valid = inside_image(y, x, (h, w))
    zero = torch.zeros((), dtype=y.dtype, device=y.device)
    y = torch.where(valid, y, zero)
    x = torch.where(valid, x, zero)
    y0 = torch.floor(y).detach()
    x0 = torch.floor(x).detach()
    ly, lx = y - y0, x - x0
    y0i, x0i = y0.long(), x0.long()
    y1i, x1i = y0i + 1, x0i + 1
    in_y0, in_y1 = (y0i >= 0) & valid, (y1i <= h - 1) & valid
    in_x0, in_x1 = x0i >= 0, x1i <= w - 1
    n = y.shape[0]
    # Row ((n*H + y)*W + x)*G + g of the channels-last input holds the C/G channels
    # of deform group g at pixel (y, x) of image n.
    img = torch.arange(n, device=y.device).view(n, 1, 1, 1) * (h * w)
    grp = torch.arange(g, device=y.device).view(1, 1, 1, g)

    def row(yi, xi):
        return (img + yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)) * g + grp

    corners: List[Corner] = [
        Corner(row(y0i, x0i), in_y0 & in_x0, 1 - ly, 1 - lx, -1.0, -1.0),
        Corner(row(y0i, x1i), in_y0 & in_x1, 1 - ly, lx, -1.0, 1.0),
        Corner(row(y1i, x0i), in_y1 & in_x0, ly, 1 - lx, 1.0, -1.0),
        Corner(row(y1i, x1i), in_y1 & in_x1, ly, lx, 1.0, 1.0),
    ]
    return corners


def mask_points(mask: Optional[Tensor], geo: DeformGeometry, dtype) -> Optional[Tensor]:
    """The modulation mask as ``Tensor[N, P, K, G]`` (or None)."""
    if mask is None:
        return None
    k = geo.kernel[0] * geo.kernel[1]
    p = geo.out_size[0] * geo.out_size[1]
    return mask.to(dtype).reshape(geo.batch, geo.deform_groups, k, p).permute(0, 3, 2, 1)


def channels_last_rows(input: Tensor, geo: DeformGeometry) -> Tensor:
    """``Tensor[N*H*W*G, C/G]``: the input's rows as indexed by :class:`Corner`."""
    g = geo.deform_groups
    return input.permute(0, 2, 3, 1).reshape(-1, geo.in_channels // g)


def weight_matrix(weight: Tensor, geo: DeformGeometry) -> Tensor:
    """``weight[o, c, kh, kw]`` as ``Tensor[groups, K * C/groups, C_out/groups]``.

    Rows follow the columns' (kernel point, channel) order.
    """
    groups = geo.groups
    k = geo.kernel[0] * geo.kernel[1]
    cg, og = geo.in_channels // groups, geo.out_channels // groups
    return weight.reshape(groups, og, cg, k).permute(0, 3, 2, 1).reshape(groups, k * cg, og)
