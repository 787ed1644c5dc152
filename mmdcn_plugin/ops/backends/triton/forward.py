"""The forward kernel: deformable convolution as an implicit GEMM.

``out[n, o, p] = sum_{k, c} cols[n, p, k, c] * W[o, c, k] + b[o]`` for output pixel
``p`` of image ``n`` and output channel ``o`` of conv group ``gr``, where
``cols[n, p, k, c]`` (input channel ``c`` sampled at tap ``k``, times the mask) is
never stored: each program samples a ``[BLOCK_P, BLOCK_C]`` tile of it into
registers (:func:`.sampling.sample_columns`) and feeds it to ``tl.dot`` with the
``[BLOCK_C, BLOCK_O]`` weight tile, accumulating in fp32.

Grid: ``(N * cdiv(P, BLOCK_P), cdiv(C_out / groups, BLOCK_O), groups)``.
"""
import triton
import triton.language as tl

from .sampling import mma, pixel_tile, sample_columns

# Triton picks the interpreter (TRITON_INTERPRET) when a kernel is decorated, i.e.
# now (see :func:`mmdcn_plugin.ops.backends.triton.interpreting`).
INTERPRETED = bool(triton.knobs.runtime.interpret)


@triton.jit
def deform_conv_forward_kernel(
        x_ptr, off_ptr, msk_ptr, w_ptr, b_ptr, out_ptr,
        PB, P, W_OUT, H, W, CG, OG, CPDG,
        s_xn, s_xh, s_xw, s_on, s_oc, s_mn, s_mc,
        s_wc, s_wh, s_ww, s_yn, s_yc,
        stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
        KH: tl.constexpr, KW: tl.constexpr, HAS_MASK: tl.constexpr, HAS_BIAS: tl.constexpr,
        BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr,
        PRECISION: tl.constexpr, DOT_UPCAST: tl.constexpr, LEAVE_OUT: tl.constexpr):
    """One ``[BLOCK_P, BLOCK_O]`` tile of the output of conv group ``program_id(2)``.

    ``x``: Tensor[N, C, H, W] channels-last (channel stride 1), ``off``:
    Tensor[N, 2*G*K, H_out, W_out], ``msk``: Tensor[N, G*K, H_out, W_out] (unused
    without ``HAS_MASK``), both with pixel stride 1; ``w``: Tensor[C_out, C/groups, KH,
    KW] with output-channel stride 1, ``b``: Tensor[C_out], ``out``: Tensor[N, C_out, P]
    (pixel stride 1).
    ``PB``: pixel tiles per image; ``CG``/``OG``: input/output channels per conv
    group, ``CPDG``: input channels per deform group.  ``LEAVE_OUT``: 0, or a stage
    left out for timing (:mod:`.stages`); ``NO_DOT`` (3) adds the columns' row sums
    instead of multiplying them by the weight (the output of an all-ones weight).
    """
    gr = tl.program_id(2)
    row_ok, n, p, oy, ox = pixel_tile(tl.program_id(0), PB, P, W_OUT, BLOCK_P)
    o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    o_ok = o < OG
    w_rows = w_ptr + (gr * OG + o)[None, :]
    acc = tl.zeros([BLOCK_P, BLOCK_O], dtype=tl.float32)
    for k in range(KH * KW):
        i = k // KW
        j = k % KW
        for c0 in range(0, CG, BLOCK_C):
            cl = c0 + tl.arange(0, BLOCK_C)
            c_ok = cl < CG
            c_first = gr * CG + c0
            c_last = gr * CG + tl.minimum(c0 + BLOCK_C, CG) - 1
            cols = sample_columns(
                x_ptr, off_ptr, msk_ptr, n, p, oy, ox, row_ok, k, i, j, gr * CG + cl, c_ok,
                c_first, c_last, CPDG, KH * KW, H, W,
                s_xn, s_xh, s_xw, s_on, s_oc, s_mn, s_mc,
                stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, HAS_MASK, BLOCK_P, BLOCK_C,
                LEAVE_OUT)
            if LEAVE_OUT == 3:
                acc += tl.sum(cols, axis=1)[:, None]
            else:
                wt = tl.load(w_rows + cl[:, None] * s_wc + i * s_wh + j * s_ww,
                             mask=c_ok[:, None] & o_ok[None, :], other=0.0)
                acc = mma(cols.to(wt.dtype), wt, acc, PRECISION, DOT_UPCAST)
    if HAS_BIAS:
        acc += tl.load(b_ptr + gr * OG + o, mask=o_ok, other=0.0).to(tl.float32)[None, :]
    ptrs = out_ptr + n * s_yn + p[:, None] + ((gr * OG + o) * s_yc)[None, :]
    tl.store(ptrs, acc.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & o_ok[None, :])
