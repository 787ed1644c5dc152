"""Host side of the Triton kernels: tile choice, buffers, launches.

Each function takes the backend's (already checked) tensors, of any layout, and
returns torch tensors.  Before a launch they are put in the layouts the kernels'
vector accesses assume, copying only what is not so already: the input channels-last
(a point's channels contiguous), the weight output-channels-last (a tap's weight
tile contiguous), offset, mask and grad_out with contiguous pixels.  Under Triton's
interpreter the same launches run on CPU tensors.
"""
import contextlib
import math
from typing import Dict, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from ....utils.tf32 import matmul_tf32
from ...checks import DeformGeometry
from .backward import deform_conv_backward_data_kernel, deform_conv_backward_weight_kernel
from .forward import INTERPRETED, deform_conv_forward_kernel

# Fixed-point input gradient (deterministic mode): the largest possible sum at one
# entry is mapped below 2**FIXED_POINT_BITS, well inside int64.
FIXED_POINT_BITS = 61


class Tiles(NamedTuple):
    block_p: int    # output pixels per tile (rows)
    block_o: int    # output channels per tile
    block_c: int    # input channels per tile
    num_warps: int
    num_stages: int


def _pow2_at_least(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, 1 << max(0, math.ceil(math.log2(max(n, 1))))))


def channel_block(geo: DeformGeometry, cap: int) -> int:
    """Input channels per tile: a power of two in [16, cap] (``tl.dot``'s minimum is 16).

    Prefers a block that divides both the channels of a conv group and of a deform
    group, so that no block straddles two deform groups (which costs one more
    sampling pass).
    """
    cpdg = geo.in_channels // geo.deform_groups
    cg = geo.in_channels // geo.groups
    common = math.gcd(cg, cpdg)
    block = cap
    while block > 16 and common % block:
        block //= 2
    return block if common % block == 0 else _pow2_at_least(min(cg, cpdg), 16, cap)


# Tiles to use instead of :func:`choose_tiles`'s, per kernel ('forward', 'data',
# 'weight'): for sweeping configurations on a GPU without editing this file
# (``python -m mmdcn_plugin.ops.backends.triton.tune`` does).
TILE_OVERRIDES: Dict[str, Tiles] = {}

# The kernels' LEAVE_OUT: a stage the 'forward' or 'weight' kernel leaves out, for
# timing what each stage costs (:mod:`.stages`); wrong numbers, so never set otherwise.
ONE_CORNER, NO_SAMPLING, NO_DOT = 1, 2, 3
LEAVE_OUT: Dict[str, int] = {}


def choose_tiles(geo: DeformGeometry, dtype: torch.dtype, kernel: str) -> Tiles:
    """Tiles for ``kernel`` in ('forward', 'data', 'weight').

    Under the interpreter a program costs Python time per operation, not per
    element: the smallest tiles ``tl.dot`` takes.  On the GPU, 8 warps and tiles
    that, as launched at ResNet-50's c3-c5, compile for sm_90 to Hopper's warp-group
    products without spilling in fp16, bf16 and TF32 (strict fp32 spills 8-32 bytes a
    thread in the gradients; ``python -m mmdcn_plugin.ops.backends.triton.resources``
    prints every candidate's registers, spills and loads).  Not yet timed on a GPU:
    see :data:`TILE_OVERRIDES` and :mod:`.tune`.
    """
    if kernel in TILE_OVERRIDES:
        return TILE_OVERRIDES[kernel]
    if INTERPRETED:
        return Tiles(32, 16, 16, 1, 1)
    og = geo.out_channels // geo.groups
    half = dtype in (torch.float16, torch.bfloat16)
    if kernel == 'forward':
        return Tiles(64, _pow2_at_least(og, 16, 128 if half else 64), channel_block(geo, 32),
                     8, 2)
    if kernel == 'data':
        return Tiles(64, _pow2_at_least(og, 16, 64), channel_block(geo, 16), 8, 2)
    return Tiles(64, _pow2_at_least(og, 16, 128 if half else 64), channel_block(geo, 32), 8, 2)


def dot_precision(input: Tensor) -> Optional[str]:
    """``tl.dot``'s input_precision for fp32: TF32 only where PyTorch's matmul flag allows it.

    None (Triton's default) for fp16/bf16, whose products are exact either way.
    """
    if input.dtype != torch.float32:
        return None
    if input.device.type == 'cuda' and matmul_tf32():
        return 'tf32'
    return 'ieee'


def _dot_args(input: Tensor) -> dict:
    """The kernels' ``PRECISION`` and ``DOT_UPCAST`` (see :func:`.sampling.mma`)."""
    return dict(PRECISION=dot_precision(input),
                DOT_UPCAST=INTERPRETED and input.dtype == torch.bfloat16)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _geometry_args(geo: DeformGeometry) -> Tuple[int, ...]:
    return (geo.stride[0], geo.stride[1], geo.padding[0], geo.padding[1], geo.dilation[0],
            geo.dilation[1])


def planes(t: Tensor) -> Tuple[Tensor, Tuple[int, int]]:
    """``t`` (Tensor[N, C, H_out, W_out]) with contiguous pixels, and its (n, c) strides.

    The kernels read tiles of consecutive pixels of one image and channel (pixel stride
    1, so those reads vectorise); offset, mask and grad_out usually are already.
    """
    t = t.contiguous()
    return t, (t.stride(0), t.stride(1))


# An experiment the tile sweep times (:mod:`.tune`), off until a GPU says it pays: the
# backward kernels read grad_out from a copy whose planes are zero-padded to a multiple
# of GRAD_OUT_ALIGN pixels, up to that length.  Where P is not such a multiple (c4, c5),
# Triton then vectorises those loads (compiled for sm_90: docs/gpu/README.md).
PAD_GRAD_OUT = False
GRAD_OUT_ALIGN = 16


@contextlib.contextmanager
def grad_out_padded():
    """Within: :data:`PAD_GRAD_OUT` on (the sweep's experiment); off again after."""
    global PAD_GRAD_OUT
    PAD_GRAD_OUT = True
    try:
        yield
    finally:
        PAD_GRAD_OUT = False


def grad_out_planes(grad_out: Tensor) -> Tuple[Tensor, Tuple[int, int], int]:
    """grad_out (Tensor[N, C_out, H_out, W_out]) as the backward kernels read it, its
    (n, c) strides, and how many pixels of a plane they may read (``P_GY``): ``P``, or
    with :data:`PAD_GRAD_OUT` a zero-padded Tensor[N, C_out, P_pad] and ``P_pad``."""
    g, strides = planes(grad_out)
    n, c, h, w = g.shape
    p = h * w
    if not PAD_GRAD_OUT or p % GRAD_OUT_ALIGN == 0:
        return g, strides, p
    p_pad = _cdiv(p, GRAD_OUT_ALIGN) * GRAD_OUT_ALIGN
    padded = g.new_zeros(n, c, p_pad)
    padded[:, :, :p] = g.view(n, c, p)
    return padded, (c * p_pad, p_pad), p_pad


def _mask_args(mask: Optional[Tensor], offset: Tensor):
    """The mask and its (n, c) strides; without one, the offset stands in (never read)."""
    if mask is None:
        return offset, (0, 0)
    return planes(mask)


def channels_last(input: Tensor) -> Tensor:
    """Tensor[N, C, H, W] with channels-last strides (no copy when already so)."""
    return input.contiguous(memory_format=torch.channels_last)


def _image_strides(x: Tensor) -> Tuple[int, int, int]:
    """(n, h, w) strides of a channels-last input; its channel stride is 1, which the
    kernels assume (one channel only: any stride, never multiplied by a non-zero index)."""
    assert x.stride(1) == 1 or x.shape[1] == 1, x.stride()
    return x.stride(0), x.stride(2), x.stride(3)


def output_channels_last(weight: Tensor) -> Tensor:
    """Tensor[C_out, C/groups, KH, KW] stored as [KH, KW, C/groups, C_out].

    The kernels read ``[channels, outputs]`` weight tiles of one tap; with the
    output channel innermost those reads are contiguous.  (A copy of the weight: small.)
    """
    return weight.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)


def _weight_strides(weight: Tensor) -> Tuple[int, int, int]:
    """(c, kh, kw) strides of :func:`output_channels_last`'s weight, whose output-channel
    stride is 1, which the kernels assume (so the tile reads vectorise)."""
    assert weight.stride(0) == 1 or weight.shape[0] == 1, weight.stride()
    return weight.stride(1), weight.stride(2), weight.stride(3)


def forward(input: Tensor, offset: Tensor, mask: Optional[Tensor], weight: Tensor,
            bias: Optional[Tensor], geo: DeformGeometry) -> Tensor:
    """Tensor[N, C_out, H_out, W_out], contiguous, of the input's dtype."""
    n, c_out = geo.batch, geo.out_channels
    h_out, w_out = geo.out_size
    out = torch.empty(n, c_out, h_out, w_out, dtype=input.dtype, device=input.device)
    p = h_out * w_out
    if n == 0:
        return out
    x = channels_last(input)
    weight = output_channels_last(weight)
    offset, s_o = planes(offset)
    msk, s_m = _mask_args(mask, offset)
    og = c_out // geo.groups
    t = choose_tiles(geo, input.dtype, 'forward')
    pb = _cdiv(p, t.block_p)
    grid = (n * pb, _cdiv(og, t.block_o), geo.groups)
    deform_conv_forward_kernel[grid](
        x, offset, msk, weight, bias if bias is not None else out, out,
        pb, p, w_out, geo.height, geo.width, geo.in_channels // geo.groups, og,
        geo.in_channels // geo.deform_groups,
        *_image_strides(x), *s_o, *s_m, *_weight_strides(weight), out.stride(0), out.stride(1),
        *_geometry_args(geo),
        KH=geo.kernel[0], KW=geo.kernel[1], HAS_MASK=mask is not None,
        HAS_BIAS=bias is not None, BLOCK_P=t.block_p, BLOCK_O=t.block_o, BLOCK_C=t.block_c,
        **_dot_args(input), LEAVE_OUT=LEAVE_OUT.get('forward', 0), num_warps=t.num_warps,
        num_stages=t.num_stages)
    return out


def fixed_point_scale(grad_out: Tensor, weight: Tensor, mask: Optional[Tensor],
                      geo: DeformGeometry) -> Tensor:
    """A power-of-two scale (fp32 scalar tensor) for the fixed-point input gradient.

    One entry of the input gradient sums at most ``P * K`` terms (one corner of each
    sampling point of its image), each at most ``|m| * sum_o |W| |grad_out|`` with
    bilinear weights <= 1; so ``bound = P * K * max|m| * max|W| * max_r ||grad_out_r||_1``
    bounds every sum, and ``scale <= 2**61 / bound`` keeps it inside int64.  Each term
    is rounded to ``1 / scale <= 2 * bound / 2**61`` (about ``1e-18 * bound``).
    The scale is 0 when the bound is not finite (inf or NaN in grad_out, W or m): the
    caller then returns NaN.  No host synchronisation: the kernel reads the tensor.
    """
    p = geo.out_size[0] * geo.out_size[1]
    k = geo.kernel[0] * geo.kernel[1]
    # fp32 sums may round low by a few ulps: the int64 headroom (2**63 / 2**61) covers it.
    row_l1 = torch.linalg.vector_norm(grad_out.detach(), ord=1, dim=1, dtype=torch.float32)
    bound = row_l1.amax().double() * weight.detach().abs().amax().double()
    if mask is not None:
        bound = bound * mask.detach().double().abs().amax()
    bound = bound * float(p * k)
    exponent = (FIXED_POINT_BITS - torch.ceil(torch.log2(bound))).clamp(-126, 126)
    scale = torch.where(torch.isfinite(bound), torch.exp2(exponent), torch.zeros_like(bound))
    return scale.float().reshape(1)


def backward_data(input: Tensor, offset: Tensor, mask: Optional[Tensor], weight: Tensor,
                  grad_out: Tensor, geo: DeformGeometry, need_input: bool, need_offset: bool,
                  need_mask: bool, deterministic: bool):
    """Gradients of input, offset and mask (None where not needed), in their dtypes.

    ``deterministic`` makes the input gradient's scatter add int64 fixed-point values
    (:func:`fixed_point_scale`) instead of floats: bitwise reproducible.
    """
    n, c, h, w = geo.batch, geo.in_channels, geo.height, geo.width
    h_out, w_out = geo.out_size
    p = h_out * w_out
    gk = geo.deform_groups * geo.kernel[0] * geo.kernel[1]
    need_mask = need_mask and mask is not None
    dev = input.device
    f32 = dict(dtype=torch.float32, device=dev)
    gx = torch.zeros(n, h, w, c, dtype=torch.int64 if deterministic else torch.float32,
                     device=dev) if need_input else None
    goff = torch.zeros(n, 2 * gk, h_out, w_out, **f32) if need_offset else None
    gmsk = torch.zeros(n, gk, h_out, w_out, **f32) if need_mask else None
    scale = (fixed_point_scale(grad_out, weight, mask, geo) if need_input and deterministic
             else torch.ones(1, **f32))
    if n > 0 and (need_input or need_offset or need_mask):
        x = channels_last(input)
        weight = output_channels_last(weight)
        offset, s_o = planes(offset)
        msk, s_m = _mask_args(mask, offset)
        grad_out, s_y, p_gy = grad_out_planes(grad_out)
        dummy = scale  # stands in for the buffers that are not written
        t = choose_tiles(geo, input.dtype, 'data')
        pb = _cdiv(p, t.block_p)
        grid = (n * pb, geo.deform_groups, geo.kernel[0] * geo.kernel[1])
        deform_conv_backward_data_kernel[grid](
            x, offset, msk, weight, grad_out, gx if gx is not None else dummy,
            goff if goff is not None else dummy, gmsk if gmsk is not None else dummy, scale,
            pb, p, p_gy, w_out, h, w, c // geo.groups, geo.out_channels // geo.groups,
            c // geo.deform_groups,
            *_image_strides(x), *s_o, *s_m, *_weight_strides(weight), *s_y,
            h * w * c, w * c, c,
            *_geometry_args(geo),
            KH=geo.kernel[0], KW=geo.kernel[1], HAS_MASK=mask is not None,
            NEED_INPUT=need_input, NEED_OFFSET=need_offset, NEED_MASK=need_mask,
            FIXED_POINT=deterministic, BLOCK_P=t.block_p, BLOCK_O=t.block_o,
            BLOCK_C=t.block_c, **_dot_args(input), num_warps=t.num_warps,
            num_stages=t.num_stages)
    grad_input = None
    if need_input:
        if deterministic:
            gx = torch.where(scale > 0, gx.double() / scale.double(),
                             torch.full((), float('nan'), dtype=torch.float64, device=dev))
        grad_input = gx.permute(0, 3, 1, 2).to(input.dtype).contiguous()
    return (grad_input, goff.to(offset.dtype) if goff is not None else None,
            gmsk.to(mask.dtype) if gmsk is not None else None)


def weight_splits(geo: DeformGeometry, t: Tiles, tiles: int, device: torch.device) -> int:
    """How many slices of the ``tiles`` pixel tiles the weight gradient is split into.

    Enough programs to fill the GPU (about four per multiprocessor); each split adds
    one fp32 weight-sized partial sum.  Two under the interpreter, so the tests cover
    the reduction over splits.
    """
    if INTERPRETED or device.type != 'cuda':
        return min(2, tiles)
    return gpu_weight_splits(geo, t, tiles,
                             torch.cuda.get_device_properties(device).multi_processor_count)


def gpu_weight_splits(geo: DeformGeometry, t: Tiles, tiles: int, multiprocessors: int) -> int:
    """:func:`weight_splits` on a GPU with ``multiprocessors`` multiprocessors."""
    og, cg = geo.out_channels // geo.groups, geo.in_channels // geo.groups
    programs = (_cdiv(og, t.block_o) * _cdiv(cg, t.block_c) * geo.groups
                * geo.kernel[0] * geo.kernel[1])
    return max(1, min(tiles, _cdiv(4 * multiprocessors, programs)))


def backward_weight(input: Tensor, offset: Tensor, mask: Optional[Tensor], grad_out: Tensor,
                    geo: DeformGeometry) -> Tensor:
    """Tensor[C_out, C_in / groups, KH, KW] in fp32 (the caller casts)."""
    n, c = geo.batch, geo.in_channels
    h_out, w_out = geo.out_size
    p = h_out * w_out
    khw = geo.kernel[0] * geo.kernel[1]
    cg, og = c // geo.groups, geo.out_channels // geo.groups
    if n == 0:
        return torch.zeros(geo.out_channels, cg, *geo.kernel, dtype=torch.float32,
                           device=input.device)
    t = choose_tiles(geo, input.dtype, 'weight')
    pb = _cdiv(p, t.block_p)
    tiles = n * pb
    splits = weight_splits(geo, t, tiles, input.device)
    tiles_per_split = _cdiv(tiles, splits)
    splits = _cdiv(tiles, tiles_per_split)
    part = torch.empty(splits, geo.out_channels, cg, khw, dtype=torch.float32,
                       device=input.device)
    x = channels_last(input)
    offset, s_o = planes(offset)
    msk, s_m = _mask_args(mask, offset)
    grad_out, s_y, p_gy = grad_out_planes(grad_out)
    grid = (_cdiv(og, t.block_o) * _cdiv(cg, t.block_c), geo.groups * khw, splits)
    deform_conv_backward_weight_kernel[grid](
        x, offset, msk, grad_out, part,
        tiles, tiles_per_split, geo.out_channels * cg * khw, pb, p, p_gy, w_out, geo.height,
        geo.width, cg, og, c // geo.deform_groups,
        *_image_strides(x), *s_o, *s_m, *s_y,
        *_geometry_args(geo),
        KH=geo.kernel[0], KW=geo.kernel[1], HAS_MASK=mask is not None,
        BLOCK_P=t.block_p, BLOCK_O=t.block_o, BLOCK_C=t.block_c,
        **_dot_args(input), LEAVE_OUT=LEAVE_OUT.get('weight', 0), num_warps=t.num_warps,
        num_stages=t.num_stages)
    # A fixed order of additions: the same bits every run.
    return part.sum(0).view(geo.out_channels, cg, *geo.kernel)
