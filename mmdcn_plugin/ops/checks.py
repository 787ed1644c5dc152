"""Validation of the arguments of :func:`mmdcn_plugin.ops.deform_conv2d`.

Every check runs before any kernel does: mmcv's compiled kernels read out of
bounds, assert, or kill the process (SIGFPE) on malformed shapes, so nothing
malformed may reach them.  Messages name the argument, the rule, what was
expected and what arrived.
"""
from typing import NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

IntPair = Union[int, Tuple[int, int]]


class DeformGeometry(NamedTuple):
    """Everything the backends need to know about one call, already checked."""

    batch: int
    in_channels: int
    height: int
    width: int
    out_channels: int
    kernel: Tuple[int, int]
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]
    groups: int
    deform_groups: int
    out_size: Tuple[int, int]


def to_pair(value, name: str, minimum: int) -> Tuple[int, int]:
    """Turn an int or a pair of ints into a pair, checking each is >= minimum."""
    if type(value) is int and value >= minimum:  # the common case, on every call: fast
        return (value, value)
    if isinstance(value, torch.Tensor) and value.numel() in (1, 2):
        value = value.tolist()
    if isinstance(value, bool):
        raise TypeError(f'{name} must be an int or a pair of ints, got bool {value!r}')
    if isinstance(value, int):
        pair = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f'{name} must be an int or a pair of ints, got {value!r}')
    if pair[0] < minimum or pair[1] < minimum:
        raise ValueError(f'{name} must be >= {minimum} in both dimensions, got {pair}')
    return pair


def conv_out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a convolution along one dimension (may be <= 0)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _check_tensor(t, name: str, ndim: int, device: Optional[torch.device] = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f'{name} must be a torch.Tensor, got {type(t).__name__}')
    if t.dim() != ndim:
        raise ValueError(f'{name} must be a {ndim}-D tensor, got shape {tuple(t.shape)}')
    if not t.is_floating_point():
        raise TypeError(f'{name} must have a floating dtype, got {t.dtype}')
    if device is not None and t.device != device:
        raise ValueError(f'{name} is on {t.device} but input is on {device}; '
                         'all tensors must be on one device')


def check_deform_conv2d_args(input: Tensor, offset: Tensor, weight: Tensor,
                             bias: Optional[Tensor], stride: IntPair, padding: IntPair,
                             dilation: IntPair, mask: Optional[Tensor]) -> DeformGeometry:
    """Check shapes, types and devices; return the call's geometry.

    Raises:
        TypeError: a non-tensor, a non-floating dtype, or a malformed int pair.
        ValueError: a shape, size or device that does not fit the rules of
            :func:`mmdcn_plugin.ops.deform_conv2d`.
    """
    # Runs on every call of the op: kept to plain attribute reads (issue 24 measured the
    # wrapper's cost), and every message is built only when a check fails.
    _check_tensor(input, 'input', 4)
    device = input.device
    _check_tensor(weight, 'weight', 4, device)
    _check_tensor(offset, 'offset', 4, device)
    if mask is not None:
        _check_tensor(mask, 'mask', 4, device)
    if bias is not None:
        _check_tensor(bias, 'bias', 1, device)

    n, c_in, h, w = input.shape
    c_out, c_per_group, kh, kw = weight.shape
    if kh < 1 or kw < 1:
        raise ValueError(f'the kernel (weight.shape[2:]) must be at least 1x1, got {kh}x{kw}')
    if c_out < 1 or c_per_group < 1:
        raise ValueError('weight must have at least one output and one input channel, '
                         f'got shape {tuple(weight.shape)}')
    if c_in % c_per_group != 0:
        raise ValueError(
            f'input channels ({c_in}) must be a multiple of weight.shape[1] ({c_per_group}) '
            '(the input channels per group); got input.shape=' + str(tuple(input.shape)) +
            ', weight.shape=' + str(tuple(weight.shape)))
    groups = c_in // c_per_group
    if c_out % groups != 0:
        raise ValueError(f'weight.shape[0] (output channels, {c_out}) must be divisible by '
                         f'groups={groups} (= input channels {c_in} / weight.shape[1] '
                         f'{c_per_group})')

    stride_ = to_pair(stride, 'stride', 1)
    padding_ = to_pair(padding, 'padding', 0)
    dilation_ = to_pair(dilation, 'dilation', 1)
    h_out = conv_out_size(h, kh, stride_[0], padding_[0], dilation_[0])
    w_out = conv_out_size(w, kw, stride_[1], padding_[1], dilation_[1])
    if h_out < 1 or w_out < 1:
        raise ValueError(
            f'the output would be empty: input {h}x{w} with kernel {kh}x{kw}, stride '
            f'{stride_}, padding {padding_}, dilation {dilation_} gives {h_out}x{w_out}; '
            'increase padding or use a larger input')

    k = kh * kw
    if offset.shape[0] != n:
        raise ValueError(f'offset.shape[0] (batch) must equal input.shape[0]={n}, '
                         f'got {offset.shape[0]}')
    if offset.shape[1] == 0 or offset.shape[1] % (2 * k) != 0:
        raise ValueError(
            'offset.shape[1] must be a positive multiple of 2 * kernel_h * kernel_w = '
            f'{2 * k} (2 * deform_groups * {kh} * {kw}), got {offset.shape[1]}')
    deform_groups = offset.shape[1] // (2 * k)
    if c_in % deform_groups != 0:
        raise ValueError(
            f'input channels ({c_in}) must be divisible by deform_groups={deform_groups} '
            f'(offset.shape[1] {offset.shape[1]} / (2 * {k}))')
    if offset.shape[2] != h_out or offset.shape[3] != w_out:
        raise ValueError(
            f'offset spatial size must match the output size {(h_out, w_out)} (input '
            f'{h}x{w}, kernel {kh}x{kw}, stride {stride_}, padding {padding_}, dilation '
            f'{dilation_}), got {tuple(offset.shape[2:])}')
    if mask is not None:
        expected = (n, deform_groups * k, h_out, w_out)
        if mask.shape != expected:  # torch.Size is a tuple
            raise ValueError(f'mask must have shape [N, deform_groups * kh * kw, H_out, '
                             f'W_out] = {list(expected)}, got {list(mask.shape)}')
    if bias is not None and bias.shape[0] != c_out:
        raise ValueError(f'bias must have shape [{c_out}] (weight.shape[0]), '
                         f'got {list(bias.shape)}')
    return DeformGeometry(n, c_in, h, w, c_out, (kh, kw), stride_, padding_, dilation_,
                          groups, deform_groups, (h_out, w_out))


def check_dtypes(input: Tensor, offset: Tensor, weight: Tensor, bias: Optional[Tensor],
                 mask: Optional[Tensor]) -> None:
    """Outside autocast every tensor must share the input's dtype (as in torchvision)."""
    for name, t in (('offset', offset), ('weight', weight), ('bias', bias), ('mask', mask)):
        if t is not None and t.dtype != input.dtype:
            raise TypeError(f'{name} has dtype {t.dtype} but input has {input.dtype}; '
                            'cast them to one dtype (or run under torch.autocast)')
