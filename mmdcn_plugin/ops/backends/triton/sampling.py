"""Where a kernel tap samples, and the bilinear corners there, as Triton device functions.

The rules are mmcv's, restated for the kernels (the Python definition is
:mod:`mmdcn_plugin.ops.sampling_rules`):

* point ``(y, x)`` of tap ``k = i * KW + j`` at output cell ``(oy, ox)`` is
  ``(oy * stride_h - pad_h + i * dil_h + dy, ox * stride_w - pad_w + j * dil_w + dx)``
  with ``(dy, dx)`` at offset channels ``2 * (g * K + k)`` and ``+ 1``;
* it is *valid* only when ``-1 < y < H`` and ``-1 < x < W`` (false for NaN and inf);
  an invalid point samples 0 and has no gradient.  Invalid coordinates are replaced
  by 0 before any arithmetic, so NaN never reaches a weight;
* corners are ``floor(y)`` and ``floor(y) + 1`` (likewise in x); a corner outside the
  image reads 0.  Coordinates are float32 whatever the input dtype.

Tiles: a row of a tile is one output pixel ``p`` of one image ``n`` (``P = H_out *
W_out``), a column one input channel.  Per-point quantities are
``[BLOCK_P]`` vectors shared by all channels of the deform group.
"""
import triton
import triton.language as tl


@triton.jit
def pixel_tile(t, PB, P, W_OUT, BLOCK_P: tl.constexpr):
    """Tile ``t`` of output pixels: image ``t // PB``, pixels ``(t % PB) * BLOCK_P + ...``
    (``PB = cdiv(P, BLOCK_P)`` tiles per image, so a tile never spans two images and
    its pixels are contiguous in every NCHW tensor).

    Returns ``(row_ok, n, p, oy, ox)``: ``n`` an int64 scalar, the rest ``[BLOCK_P]``.
    """
    p = (t % PB) * BLOCK_P + tl.arange(0, BLOCK_P)
    return p < P, (t // PB).to(tl.int64), p, p // W_OUT, p % W_OUT


@triton.jit
def tap_point(off_ptr, msk_ptr, n, p, oy, ox, row_ok, i, j, ch_off, ch_msk, H, W,
              s_on, s_oc, s_mn, s_mc,
              stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, HAS_MASK: tl.constexpr):
    """One tap's sampling point for a tile of output pixels of image ``n`` (int64).

    ``p``, ``oy``, ``ox``, ``row_ok`` are ``[BLOCK_P]``; offset and mask are
    contiguous within a channel (pixel stride 1); ``ch_off`` is the offset channel of
    dy (dx is the next one), ``ch_msk`` the mask channel.

    Returns ``(y0, x0, ly, lx, valid, m)``: top-left corner (int32), fractional parts
    (fp32), validity (mmcv's rule, and a real row) and the modulation (1 without a
    mask; fp32), each ``[BLOCK_P]``.
    """
    base = off_ptr + n * s_on + p
    dy = tl.load(base + ch_off * s_oc, mask=row_ok, other=0.0).to(tl.float32)
    dx = tl.load(base + (ch_off + 1) * s_oc, mask=row_ok, other=0.0).to(tl.float32)
    y = (oy * stride_h - pad_h + i * dil_h).to(tl.float32) + dy
    x = (ox * stride_w - pad_w + j * dil_w).to(tl.float32) + dx
    valid = row_ok & (y > -1.0) & (y < H) & (x > -1.0) & (x < W)
    y = tl.where(valid, y, 0.0)
    x = tl.where(valid, x, 0.0)
    y0f = tl.floor(y)
    x0f = tl.floor(x)
    if HAS_MASK:
        m = tl.load(msk_ptr + n * s_mn + ch_msk * s_mc + p, mask=row_ok,
                    other=0.0).to(tl.float32)
    else:
        m = tl.full(y.shape, 1.0, tl.float32)
    return y0f.to(tl.int32), x0f.to(tl.int32), y - y0f, x - x0f, valid, m


@triton.jit
def corner_mask(yi, xi, valid, H, W):
    """``[BLOCK_P]`` bool: the point is valid and corner ``(yi, xi)`` lies in the image."""
    return valid & (yi >= 0) & (yi < H) & (xi >= 0) & (xi < W)


@triton.jit
def load_corner(x_ptr, pix, yi, xi, inside, s_xh, s_xw, c, c_ok):
    """``[BLOCK_P, BLOCK_C]`` fp32 values of one corner (0 where ``inside`` is false).

    ``pix`` is the int64 address of the tile's image, ``c`` the channels: the input is
    channels-last with channel stride 1, so a row's channels are contiguous (and the
    compiler can vectorise the gather).
    """
    ptrs = x_ptr + (pix + yi * s_xh + xi * s_xw)[:, None] + c[None, :]
    return tl.load(ptrs, mask=inside[:, None] & c_ok[None, :], other=0.0).to(tl.float32)


@triton.jit
def sample_columns(x_ptr, off_ptr, msk_ptr, n, p, oy, ox, row_ok, k, i, j, c, c_ok,
                   c_first, c_last, CPDG, KHW, H, W,
                   s_xn, s_xh, s_xw, s_on, s_oc, s_mn, s_mc,
                   stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
                   HAS_MASK: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
                   LEAVE_OUT: tl.constexpr):
    """The columns of tap ``k`` for a tile: ``[BLOCK_P, BLOCK_C]`` fp32, mask applied.

    ``c`` (``[BLOCK_C]``) are absolute input channels, ``c_first..c_last`` the first
    and last real one; a block that straddles deform groups is sampled once per
    group, each pass filling its own channels.

    ``LEAVE_OUT`` is 0 except in the timing variants of :mod:`.stages`: with
    ``ONE_CORNER`` (1) only the top-left corner is read (exact for integer offsets),
    with ``NO_SAMPLING`` (2) nothing is: the columns are cheap stand-in values.
    """
    cols = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    if LEAVE_OUT == 2:
        return cols + (p[:, None] + c[None, :]).to(tl.float32) * 1e-3
    pix = n * s_xn
    for g in range(c_first // CPDG, c_last // CPDG + 1):
        y0, x0, ly, lx, valid, m = tap_point(
            off_ptr, msk_ptr, n, p, oy, ox, row_ok, i, j, 2 * (g * KHW + k), g * KHW + k, H, W,
            s_on, s_oc, s_mn, s_mc,
            stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, HAS_MASK)
        in_g = c_ok & (c >= g * CPDG) & (c < (g + 1) * CPDG)
        y1 = y0 + 1
        x1 = x0 + 1
        hy = (1.0 - ly) * m
        ly = ly * m
        v = load_corner(x_ptr, pix, y0, x0, corner_mask(y0, x0, valid, H, W), s_xh, s_xw,
                        c, in_g)
        cols += (hy * (1.0 - lx))[:, None] * v
        if LEAVE_OUT != 1:
            v = load_corner(x_ptr, pix, y0, x1, corner_mask(y0, x1, valid, H, W), s_xh,
                            s_xw, c, in_g)
            cols += (hy * lx)[:, None] * v
            v = load_corner(x_ptr, pix, y1, x0, corner_mask(y1, x0, valid, H, W), s_xh,
                            s_xw, c, in_g)
            cols += (ly * (1.0 - lx))[:, None] * v
            v = load_corner(x_ptr, pix, y1, x1, corner_mask(y1, x1, valid, H, W), s_xh,
                            s_xw, c, in_g)
            cols += (ly * lx)[:, None] * v
    return cols


@triton.jit
def mma(a, b, acc, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """``acc + a @ b`` on the tensor cores (``tl.dot``, fp32 accumulator).

    ``UPCAST`` multiplies in fp32 instead: exact for fp16/bf16 operands, so the same
    numbers as the tensor cores' fp32 accumulation.  Used under the interpreter for
    bfloat16, whose ``tl.dot`` there multiplies the raw bits (Triton 3.9).
    """
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    return tl.dot(a, b, acc, input_precision=PRECISION)
