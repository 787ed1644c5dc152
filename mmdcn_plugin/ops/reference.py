"""A slow, obviously-correct deformable convolution, for tests only.

Loops over every image, deform group, kernel point and output position and samples
with the rules of mmcv's CPU kernel, written out with Python control flow:

* a point outside ``-1 < y < H, -1 < x < W`` samples 0 and has no gradient;
* otherwise the four corners are ``floor(y), floor(y) + 1`` (and likewise in x),
  corners outside the image count as 0.

Autograd through the 0-d coordinate tensors gives the coordinate gradient mmcv
computes (the slope between ``floor`` and ``floor + 1``).  Use tiny sizes only.

Deliberately independent: the sampling grid and the inside rule are written out
again here instead of imported from :mod:`.sampling_rules`, so the tests compare
every backend with a second, separate reading of mmcv's rules.  A mistake in the
shared definition then shows up as a test failure instead of in both sides.
"""
import math
from typing import Optional

import torch
from torch import Tensor

from .checks import check_deform_conv2d_args


def _bilinear(img: Tensor, y: Tensor, x: Tensor) -> Tensor:
    """Sample ``img`` (Tensor[C, H, W]) at (y, x); returns Tensor[C]."""
    c, h, w = img.shape
    yf, xf = float(y.detach()), float(x.detach())
    # The inside rule, restated on purpose (see the module docstring).
    if not (yf > -1 and yf < h and xf > -1 and xf < w):  # also false for NaN
        return img.new_zeros(c)
    y0, x0 = math.floor(yf), math.floor(xf)
    ly, lx = y - y0, x - x0
    value = img.new_zeros(c)
    for yy, wy in ((y0, 1 - ly), (y0 + 1, ly)):
        for xx, wx in ((x0, 1 - lx), (x0 + 1, lx)):
            if 0 <= yy < h and 0 <= xx < w:
                value = value + wy * wx * img[:, yy, xx]
    return value


def deform_conv2d_reference(input: Tensor, offset: Tensor, weight: Tensor,
                            bias: Optional[Tensor] = None, stride=1, padding=0, dilation=1,
                            mask: Optional[Tensor] = None) -> Tensor:
    """Same contract as :func:`mmdcn_plugin.ops.deform_conv2d`; see module docstring."""
    geo = check_deform_conv2d_args(input, offset, weight, bias, stride, padding, dilation, mask)
    n, c = geo.batch, geo.in_channels
    kh, kw = geo.kernel
    h_out, w_out = geo.out_size
    g = geo.deform_groups
    cpg = c // g
    columns = []  # per image: Tensor[C, K, H_out, W_out]
    for b in range(n):
        per_group = []
        for dg in range(g):
            img = input[b, dg * cpg:(dg + 1) * cpg]
            points = []
            for i in range(kh):
                for j in range(kw):
                    k = i * kw + j
                    samples = []
                    for oy in range(h_out):
                        for ox in range(w_out):
                            dy = offset[b, 2 * (dg * kh * kw + k), oy, ox]
                            dx = offset[b, 2 * (dg * kh * kw + k) + 1, oy, ox]
                            y = oy * geo.stride[0] - geo.padding[0] + i * geo.dilation[0] + dy
                            x = ox * geo.stride[1] - geo.padding[1] + j * geo.dilation[1] + dx
                            v = _bilinear(img, y, x)
                            if mask is not None:
                                v = v * mask[b, dg * kh * kw + k, oy, ox]
                            samples.append(v)
                    points.append(torch.stack(samples, 1).view(cpg, h_out, w_out))
            per_group.append(torch.stack(points, 1))  # [C/G, K, H_out, W_out]
        columns.append(torch.cat(per_group, 0))
    cols = torch.stack(columns, 0)  # [N, C, K, H_out, W_out]
    groups = geo.groups
    cg, og = c // groups, geo.out_channels // groups
    outs = []
    for gr in range(groups):
        wg = weight[gr * og:(gr + 1) * og].reshape(og, cg * kh * kw)
        cg_cols = cols[:, gr * cg:(gr + 1) * cg].reshape(n, cg * kh * kw, h_out * w_out)
        outs.append(torch.einsum('ok,nkp->nop', wg, cg_cols))
    out = torch.cat(outs, 1).reshape(n, geo.out_channels, h_out, w_out)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out
