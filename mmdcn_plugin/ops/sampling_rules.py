"""Where a deformable convolution samples, and which of those points are inside the image.

The one Python definition of both rules, used by the backends
(:mod:`.backends.sampling`, :mod:`.backends.fast_impl`) and by code that inspects a
layer from outside (``OffsetStatsHook``).  The compiled kernel
(``mmdcn_plugin/csrc/deform_conv_cpu.cpp``, ``make_corners``) restates the inside
rule in C++; the loop reference (:mod:`.reference`) restates it on purpose, so that
tests compare against an independent reading of mmcv rather than against this code.

Kernel point ``k = i * kw + j`` of output cell ``(oy, ox)``, deform group ``g``,
samples the input at::

    y = oy * stride_h - pad_h + i * dilation_h + offset[:, 2 * (g * K + k)]
    x = ox * stride_w - pad_w + j * dilation_w + offset[:, 2 * (g * K + k) + 1]

and the point is *inside* (it reads the image and gets a gradient) only when
``-1 < y < H`` and ``-1 < x < W``.  A point on ``y == -1`` exactly, NaN or infinite
coordinates: outside.  That is mmcv's rule; a bilinear sample at ``-1 < y < 0``
still reads row 0 with weight ``1 + y``.
"""
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from .checks import DeformGeometry, to_pair

IntPair = Union[int, Tuple[int, int]]


def coordinate_dtype(dtype: torch.dtype) -> torch.dtype:
    """Coordinates stay in float32 at least: bf16 cannot even represent pixel 257.5."""
    return torch.promote_types(dtype, torch.float32)


def sampling_points(offset: Tensor, kernel_size: IntPair, stride: IntPair = 1,
                    padding: IntPair = 0, dilation: IntPair = 1,
                    dtype: Optional[torch.dtype] = None) -> Tuple[Tensor, Tensor]:
    """Absolute sampling coordinates ``(y, x)`` of every kernel point, in input pixels.

    Args:
        offset (Tensor[N, 2 * G * kh * kw, H_out, W_out]): the (dy, dx) pairs a
            deformable layer's offset head returns (mmcv's layout).
        kernel_size, stride, padding, dilation (int or (int, int)): the layer's
            convolution geometry.
        dtype (torch.dtype or None): of the coordinates. Default: the offset's dtype,
            at least float32 (:func:`coordinate_dtype`).

    Returns:
        (y, x), each Tensor[N, G, kh * kw, H_out, W_out].

    Raises:
        ValueError: ``offset`` is not 4-D, or its channels are not a positive
            multiple of ``2 * kh * kw``.
    """
    kernel = to_pair(kernel_size, 'kernel_size', 1)
    k = kernel[0] * kernel[1]
    if offset.dim() != 4 or offset.shape[1] == 0 or offset.shape[1] % (2 * k) != 0:
        raise ValueError('offset must be Tensor[N, 2 * G * kh * kw, H_out, W_out] with '
                         f'2 * kh * kw = {2 * k}, got shape {tuple(offset.shape)}')
    n, channels, h_out, w_out = offset.shape
    return _points(offset, kernel, to_pair(stride, 'stride', 1), to_pair(padding, 'padding', 0),
                   to_pair(dilation, 'dilation', 1), channels // (2 * k), (h_out, w_out),
                   dtype if dtype is not None else coordinate_dtype(offset.dtype))


def geometry_points(offset: Tensor, geo: DeformGeometry,
                    dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    """:func:`sampling_points` for the backends, from an already checked geometry.

    No argument is checked again: under ``torch.jit.trace`` the geometry's sizes may
    be traced values, not Python ints.
    """
    return _points(offset, geo.kernel, geo.stride, geo.padding, geo.dilation,
                   geo.deform_groups, geo.out_size, dtype)


def _points(offset: Tensor, kernel, stride, padding, dilation, deform_groups: int, out_size,
            dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    kh, kw = kernel
    h_out, w_out = out_size
    k = kh * kw
    device = offset.device
    # The regular grid of a plain convolution, per output cell and kernel point.
    oy = torch.arange(h_out, device=device, dtype=dtype) * stride[0] - padding[0]
    ox = torch.arange(w_out, device=device, dtype=dtype) * stride[1] - padding[1]
    ky = torch.arange(kh, device=device, dtype=dtype) * dilation[0]
    kx = torch.arange(kw, device=device, dtype=dtype) * dilation[1]
    base_y = (ky[:, None, None, None] + oy[None, None, :, None]).expand(kh, kw, h_out, w_out)
    base_x = (kx[None, :, None, None] + ox[None, None, None, :]).expand(kh, kw, h_out, w_out)
    # Offset channels are laid out [G, K, (dy, dx)].
    off = offset.to(dtype).reshape(offset.shape[0], deform_groups, k, 2, h_out, w_out)
    return (base_y.reshape(k, h_out, w_out) + off[:, :, :, 0],
            base_x.reshape(k, h_out, w_out) + off[:, :, :, 1])


def inside_image(y: Tensor, x: Tensor, size: Tuple[int, int]) -> Tensor:
    """Which sampling points are inside an ``H x W`` input (mmcv's rule, see above).

    Args:
        y, x (Tensor, any shape, same shape): sampling coordinates in pixels.
        size ((H, W)): the input map.

    Returns:
        bool Tensor of the shape of ``y``: ``-1 < y < H and -1 < x < W``; False for
        NaN and infinite coordinates.
    """
    h, w = size[0], size[1]  # no int(): under jit.trace they may be traced sizes
    return (y > -1) & (y < h) & (x > -1) & (x < w)
