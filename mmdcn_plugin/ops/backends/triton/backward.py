"""The backward kernels: gradients of input, offset and mask; gradient of the weight.

With ``gcols[r, k, c] = sum_o grad_out[r, o] * W[o, c, k]`` (over the outputs of
``c``'s conv group) and ``v`` the unmasked bilinear sample:

* ``grad_mask[r, g, k]   = sum_{c in g} gcols * v``
* ``grad_offset[r, g, k] = m * sum_{c in g} gcols * dv/d(y, x)`` (mmcv's slope between
  ``floor`` and ``floor + 1``; zero for invalid points)
* ``grad_input[n, c, corner] += gcols * m * w_corner`` for the four corners;
* ``grad_W[o, c, k] = sum_r grad_out[r, o] * cols[r, k, c]``.

:func:`deform_conv_backward_data_kernel` owns one (pixel tile, deform group, tap):
it forms ``gcols`` a ``[BLOCK_P, BLOCK_C]`` tile at a time with ``tl.dot`` and
consumes it at once, so the offset and mask sums over the group's channels stay in
one program (no atomics; deterministic).  The input gradient is a scatter into a
channels-last buffer: fp32 ``atomic_add``, or, when ``FIXED_POINT``, int64
``atomic_add`` of ``round(value * scale)`` (integer sums do not depend on the order
in which the atomics land: bitwise reproducible).

:func:`deform_conv_backward_weight_kernel` is the forward's implicit GEMM with the
reduction over pixels instead of channels: a program owns a ``[BLOCK_O, BLOCK_C]``
tile of one tap and sums over one split of the pixel rows; the splits' fp32
partial sums are added afterwards in a fixed order.
"""
import triton
import triton.language as tl

from .sampling import (corner_mask, load_corner, mma, pixel_tile, sample_columns,
                       tap_point)


@triton.jit
def _corner(x_ptr, gx_ptr, pix, gpix, yi, xi, inside, s_xh, s_xw, s_gh, s_gw, c, c_ok,
            gcols, gm, weight, scale, NEED_VALUES: tl.constexpr, NEED_INPUT: tl.constexpr,
            FIXED_POINT: tl.constexpr):
    """One bilinear corner of a ``[BLOCK_P, BLOCK_C]`` tile, consumed at once.

    Returns ``sum_c gcols * v_corner`` per row (``[BLOCK_P]``; zeros unless
    ``NEED_VALUES``), and scatters ``gm * weight`` into the input gradient when
    ``NEED_INPUT``.  Handling the corners one by one keeps one value tile live.
    """
    total = tl.zeros(weight.shape, dtype=tl.float32)
    if NEED_VALUES:
        v = load_corner(x_ptr, pix, yi, xi, inside, s_xh, s_xw, c, c_ok)
        total = tl.sum(gcols * v, axis=1)
    if NEED_INPUT:
        ptrs = gx_ptr + (gpix + yi * s_gh + xi * s_gw)[:, None] + c[None, :]
        ok = inside[:, None] & c_ok[None, :]
        val = gm * weight[:, None]
        if FIXED_POINT:
            tl.atomic_add(ptrs, tl.floor(val * scale + 0.5).to(tl.int64), mask=ok,
                          sem='relaxed')
        else:
            tl.atomic_add(ptrs, val, mask=ok, sem='relaxed')  # a sum needs no ordering
    return total


@triton.jit
def deform_conv_backward_data_kernel(
        x_ptr, off_ptr, msk_ptr, w_ptr, gy_ptr, gx_ptr, goff_ptr, gmsk_ptr, scale_ptr,
        PB, P, P_GY, W_OUT, H, W, CG, OG, CPDG,
        s_xn, s_xh, s_xw, s_on, s_oc, s_mn, s_mc,
        s_wc, s_wh, s_ww, s_yn, s_yc, s_gn, s_gh, s_gw,
        stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
        KH: tl.constexpr, KW: tl.constexpr, HAS_MASK: tl.constexpr,
        NEED_INPUT: tl.constexpr, NEED_OFFSET: tl.constexpr, NEED_MASK: tl.constexpr,
        FIXED_POINT: tl.constexpr,
        BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr,
        PRECISION: tl.constexpr, DOT_UPCAST: tl.constexpr):
    """Grid ``(N * PB, G, KH * KW)`` (``PB = cdiv(P, BLOCK_P)`` pixel tiles per image).

    ``gy``: grad_out, Tensor[N, C_out, H_out, W_out] with pixel stride 1, of which the
    first ``P_GY`` pixels of a plane are read (``P``, or the length of its zero-padded
    planes: :data:`.launch.PAD_GRAD_OUT`); ``gx``:
    channels-last Tensor[N, H, W, C] of fp32 (int64 with ``FIXED_POINT``), channel
    stride 1; ``goff``/``gmsk``: contiguous like ``off``/``msk``, fp32;
    ``scale_ptr``: the fixed-point scale (fp32 scalar tensor); ``w``: as in the
    forward kernel (output-channel stride 1).
    """
    g = tl.program_id(1)
    k = tl.program_id(2)
    i = k // KW
    j = k % KW
    KHW = KH * KW
    row_ok, n, p, oy, ox = pixel_tile(tl.program_id(0), PB, P, W_OUT, BLOCK_P)
    y0, x0, ly, lx, valid, m = tap_point(
        off_ptr, msk_ptr, n, p, oy, ox, row_ok, i, j, 2 * (g * KHW + k), g * KHW + k, H, W,
        s_on, s_oc, s_mn, s_mc,
        stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, HAS_MASK)
    y1 = y0 + 1
    x1 = x0 + 1
    in00 = corner_mask(y0, x0, valid, H, W)
    in01 = corner_mask(y0, x1, valid, H, W)
    in10 = corner_mask(y1, x0, valid, H, W)
    in11 = corner_mask(y1, x1, valid, H, W)
    hy = 1.0 - ly
    hx = 1.0 - lx
    pix = n * s_xn
    gpix = n * s_gn
    gy_rows = gy_ptr + n * s_yn + p
    NEED_VALUES: tl.constexpr = NEED_OFFSET or NEED_MASK
    scale = 1.0
    if FIXED_POINT:
        scale = tl.load(scale_ptr)
    # Per row, sum_c gcols * v at each corner; the mask and offset gradients are
    # combinations of these four (the bilinear weights do not depend on the channel).
    s00 = tl.zeros([BLOCK_P], dtype=tl.float32)
    s01 = tl.zeros([BLOCK_P], dtype=tl.float32)
    s10 = tl.zeros([BLOCK_P], dtype=tl.float32)
    s11 = tl.zeros([BLOCK_P], dtype=tl.float32)
    for c0 in range(0, CPDG, BLOCK_C):
        cl = c0 + tl.arange(0, BLOCK_C)
        c_ok = cl < CPDG
        c = g * CPDG + cl
        c_first = g * CPDG + c0
        c_last = g * CPDG + tl.minimum(c0 + BLOCK_C, CPDG) - 1
        # gcols for this channel block, one conv group at a time.
        gcols = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
        for gr in range(c_first // CG, c_last // CG + 1):
            in_gr = c_ok & (c >= gr * CG) & (c < (gr + 1) * CG)
            for o0 in range(0, OG, BLOCK_O):
                o = gr * OG + o0 + tl.arange(0, BLOCK_O)
                o_ok = (o0 + tl.arange(0, BLOCK_O)) < OG
                gout = tl.load(gy_rows[:, None] + o[None, :] * s_yc,
                               mask=(p < P_GY)[:, None] & o_ok[None, :], other=0.0)
                wt = tl.load(w_ptr + o[:, None] + (c - gr * CG)[None, :] * s_wc
                             + i * s_wh + j * s_ww,
                             mask=o_ok[:, None] & in_gr[None, :], other=0.0)
                gcols = mma(gout, wt, gcols, PRECISION, DOT_UPCAST)
        gm = gcols * m[:, None]
        s00 += _corner(x_ptr, gx_ptr, pix, gpix, y0, x0, in00, s_xh, s_xw, s_gh, s_gw, c,
                       c_ok, gcols, gm, hy * hx, scale, NEED_VALUES, NEED_INPUT, FIXED_POINT)
        s01 += _corner(x_ptr, gx_ptr, pix, gpix, y0, x1, in01, s_xh, s_xw, s_gh, s_gw, c,
                       c_ok, gcols, gm, hy * lx, scale, NEED_VALUES, NEED_INPUT, FIXED_POINT)
        s10 += _corner(x_ptr, gx_ptr, pix, gpix, y1, x0, in10, s_xh, s_xw, s_gh, s_gw, c,
                       c_ok, gcols, gm, ly * hx, scale, NEED_VALUES, NEED_INPUT, FIXED_POINT)
        s11 += _corner(x_ptr, gx_ptr, pix, gpix, y1, x1, in11, s_xh, s_xw, s_gh, s_gw, c,
                       c_ok, gcols, gm, ly * lx, scale, NEED_VALUES, NEED_INPUT, FIXED_POINT)
    GK = tl.num_programs(1) * KHW
    if NEED_OFFSET:
        # d v / d y: the slope between rows y0 and y1 (mmcv's), likewise in x.
        ptrs = goff_ptr + n * (2 * GK * P) + 2 * (g * KHW + k) * P + p
        tl.store(ptrs, (hx * (s10 - s00) + lx * (s11 - s01)) * m, mask=row_ok)
        tl.store(ptrs + P, (hy * (s01 - s00) + ly * (s11 - s10)) * m, mask=row_ok)
    if NEED_MASK:
        tl.store(gmsk_ptr + n * (GK * P) + (g * KHW + k) * P + p,
                 hy * (hx * s00 + lx * s01) + ly * (hx * s10 + lx * s11), mask=row_ok)


@triton.jit
def deform_conv_backward_weight_kernel(
        x_ptr, off_ptr, msk_ptr, gy_ptr, part_ptr,
        TILES, TILES_PER_SPLIT, SPLIT_STRIDE, PB, P, P_GY, W_OUT, H, W, CG, OG, CPDG,
        s_xn, s_xh, s_xw, s_on, s_oc, s_mn, s_mc, s_yn, s_yc,
        stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
        KH: tl.constexpr, KW: tl.constexpr, HAS_MASK: tl.constexpr,
        BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr,
        PRECISION: tl.constexpr, DOT_UPCAST: tl.constexpr, LEAVE_OUT: tl.constexpr):
    """Grid ``(cdiv(OG, BLOCK_O) * cdiv(CG, BLOCK_C), groups * KH * KW, splits)``.

    ``part``: contiguous fp32 Tensor[splits, C_out, CG, KH * KW], one partial
    weight gradient per split of ``TILES_PER_SPLIT`` of the ``TILES = N * PB`` pixel
    tiles; ``SPLIT_STRIDE = C_out * CG * KH * KW``; ``gy`` as in
    :func:`deform_conv_backward_data_kernel`.  ``LEAVE_OUT``: 0, or a stage left
    out for timing (:mod:`.stages`); ``NO_DOT`` (3) adds the columns' sums over the
    pixels instead (the weight gradient of an all-ones grad_out), reading no grad_out.
    """
    KHW = KH * KW
    n_cb = tl.cdiv(CG, BLOCK_C)
    ob = tl.program_id(0) // n_cb
    c0 = (tl.program_id(0) % n_cb) * BLOCK_C
    gr = tl.program_id(1) // KHW
    k = tl.program_id(1) % KHW
    i = k // KW
    j = k % KW
    split = tl.program_id(2)
    o = gr * OG + ob * BLOCK_O + tl.arange(0, BLOCK_O)
    o_ok = (ob * BLOCK_O + tl.arange(0, BLOCK_O)) < OG
    cl = c0 + tl.arange(0, BLOCK_C)
    c_ok = cl < CG
    c_first = gr * CG + c0
    c_last = gr * CG + tl.minimum(c0 + BLOCK_C, CG) - 1
    acc = tl.zeros([BLOCK_O, BLOCK_C], dtype=tl.float32)
    start = split * TILES_PER_SPLIT
    for t in range(start, tl.minimum(start + TILES_PER_SPLIT, TILES)):
        row_ok, n, p, oy, ox = pixel_tile(t, PB, P, W_OUT, BLOCK_P)
        cols = sample_columns(
            x_ptr, off_ptr, msk_ptr, n, p, oy, ox, row_ok, k, i, j, gr * CG + cl, c_ok,
            c_first, c_last, CPDG, KHW, H, W,
            s_xn, s_xh, s_xw, s_on, s_oc, s_mn, s_mc,
            stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, HAS_MASK, BLOCK_P, BLOCK_C,
            LEAVE_OUT)
        if LEAVE_OUT == 3:
            acc += tl.sum(tl.where(row_ok[:, None], cols, 0.0), axis=0)[None, :]
        else:
            gout_t = tl.load(gy_ptr + n * s_yn + p[None, :] + o[:, None] * s_yc,
                             mask=o_ok[:, None] & (p < P_GY)[None, :], other=0.0)
            acc = mma(gout_t, cols.to(gout_t.dtype), acc, PRECISION, DOT_UPCAST)
    ptrs = (part_ptr + split.to(tl.int64) * SPLIT_STRIDE
            + (o * (CG * KHW))[:, None] + (cl * KHW)[None, :] + k)
    tl.store(ptrs, acc, mask=o_ok[:, None] & c_ok[None, :])
