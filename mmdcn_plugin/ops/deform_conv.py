"""The functional deformable convolution, DCNv1 and DCNv2.

References:
    Dai et al., "Deformable Convolutional Networks", ICCV 2017 (DCNv1).
    Zhu et al., "Deformable ConvNets v2: More Deformable, Better Results", CVPR 2019
    (DCNv2, the modulation ``mask``).
"""
import contextlib
import threading
import warnings
from typing import Callable, Iterator, Optional, Tuple, Union

import torch
from torch import Tensor

from .backends import BACKENDS, resolve_backend
from .checks import check_deform_conv2d_args, check_dtypes

IntPair = Union[int, Tuple[int, int]]

_warned_nondeterministic = False


class _ExportHook(threading.local):
    # fn(input, offset, weight, bias, mask, geo) -> Tensor, or None; per thread, so an
    # export on one thread changes nothing for calls on another.
    fn: Optional[Callable] = None


_export_hook = _ExportHook()


@contextlib.contextmanager
def onnx_export_hook(fn: Callable) -> Iterator[None]:
    """Within this block, on this thread, ONNX exports record ``fn`` for every call.

    How :mod:`mmdcn_plugin.deploy` records a deformable convolution as an ONNX node
    without ops importing deploy: while ``torch.onnx.is_in_onnx_export()``,
    :func:`deform_conv2d` returns ``fn(input, offset, weight, bias, mask, geo)`` (``geo``
    the checked :class:`~.checks.DeformGeometry`) instead of running a backend.  Outside
    an export the hook is never consulted; other threads never see it.

    Raises:
        RuntimeError: a hook is already set on this thread (blocks do not nest).
    """
    if _export_hook.fn is not None:
        raise RuntimeError('ONNX export hook blocks do not nest: an export hook is already '
                           'set on this thread')
    _export_hook.fn = fn
    try:
        yield
    finally:
        _export_hook.fn = None


def current_onnx_export_hook() -> Optional[Callable]:
    """The hook :func:`onnx_export_hook` set on this thread, or None."""
    return _export_hook.fn


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 has no device argument
        if device_type == 'cpu':
            return torch.is_autocast_cpu_enabled()
        return device_type == 'cuda' and torch.is_autocast_enabled()


def _autocast_dtype(device_type: str) -> torch.dtype:
    try:
        return torch.get_autocast_dtype(device_type)
    except (AttributeError, TypeError):
        if device_type == 'cpu':
            return torch.get_autocast_cpu_dtype()
        return torch.get_autocast_gpu_dtype()


# Looked up once (torch < 2.3 has no torch.compiler.is_compiling, torch < 2.6 no
# is_exporting), not on every call.
_is_compiling = getattr(getattr(torch, 'compiler', None), 'is_compiling', lambda: False)
_is_exporting = getattr(getattr(torch, 'compiler', None), 'is_exporting', lambda: False)
_is_dynamo_compiling = getattr(getattr(torch, 'compiler', None), 'is_dynamo_compiling',
                               lambda: False)


def recorder() -> Optional[str]:
    """The graph recorder running now that can record only plain tensor ops, or None.

    ``'torch.jit.trace'`` while ``torch.jit.trace`` or ``torch.onnx.export(dynamo=False)``
    traces; ``'torch.export'`` while ``torch.export.export`` or
    ``torch.onnx.export(dynamo=True)`` does; None in eager mode and under
    ``torch.compile``, which runs what it cannot record eagerly.
    """
    # Cheap flags cover every case: the ONNX exporters run one of the two recorders,
    # so torch.onnx.is_in_onnx_export (about 1 us a call) is not asked.  torch 2.11's
    # dynamo answers is_exporting() with True under torch.compile as well; only there
    # is is_dynamo_compiling() True (export, strict or not, says False), checked with
    # torch 2.11 and 2.13.
    if torch.jit.is_tracing():
        return 'torch.jit.trace'
    if _is_compiling() and _is_exporting() and not _is_dynamo_compiling():
        return 'torch.export'
    return None


def _refuse_unrecordable(name: str, graph_recorder: str) -> None:
    """Raise: backend ``name`` cannot be recorded by ``graph_recorder``."""
    tool = graph_recorder
    if torch.onnx.is_in_onnx_export():
        tool = f'torch.onnx.export (through {graph_recorder})'
    able = [n for n, b in BACKENDS.items() if graph_recorder in b.recorded_by]
    raise RuntimeError(
        f'deform_conv2d: backend={name!r} cannot be recorded by {tool}: that backend is '
        f'opaque to {graph_recorder}, so the graph would fail or hold this call\'s output as '
        f"a constant.  Expected backend=None (it picks 'torch' while recording) or one of "
        f'{able} (same numbers); or export with tools/export_onnx.py '
        '(mmdcn_plugin.deploy), which writes an ONNX DeformConv node whatever the backend')


def deform_conv2d(input: Tensor,
                  offset: Tensor,
                  weight: Tensor,
                  bias: Optional[Tensor] = None,
                  stride: IntPair = 1,
                  padding: IntPair = 0,
                  dilation: IntPair = 1,
                  mask: Optional[Tensor] = None,
                  *,
                  backend: Optional[str] = None) -> Tensor:
    r"""Deformable convolution: DCNv1 without ``mask``, DCNv2 (modulated) with it.

    Same signature and semantics as :func:`torchvision.ops.deform_conv2d`, and the
    same numbers as mmcv's kernels, plus a ``backend`` choice.  Kernel point
    :math:`k` of output position :math:`p` reads the input at
    :math:`p_0 + p_k + \Delta p_k` (bilinear, zeros outside the image), multiplied
    by :math:`m_k` when a mask is given.

    Offset layout (as in mmcv and torchvision), for deform group ``g`` and kernel
    point ``k = i * kw + j`` (row-major)::

        offset[:, 2 * (g * kh * kw + k)]     = dy
        offset[:, 2 * (g * kh * kw + k) + 1] = dx
        mask[:, g * kh * kw + k]             = m

    Input channel ``c`` belongs to deform group ``c // (C_in / G)``.

    Args:
        input (Tensor[N, C_in, H, W]): input feature map.
        offset (Tensor[N, 2 * G * kh * kw, H_out, W_out]): sampling offsets in pixels;
            ``G`` (deform groups) is inferred from the channel count.
        weight (Tensor[C_out, C_in / groups, kh, kw]): kernel; ``groups`` is inferred.
        bias (Tensor[C_out] or None): added to every output position.
        stride, padding, dilation (int or (int, int)): as for ``torch.nn.Conv2d``.
        mask (Tensor[N, G * kh * kw, H_out, W_out] or None): modulation scalars
            (already activated, e.g. by a sigmoid) for DCNv2.
        backend (str or None): ``None`` reads the environment variable
            ``MMDCN_BACKEND`` and defaults to ``'auto'``; ``'auto'`` takes, for CUDA
            tensors, this package's Triton kernels when Triton is importable, else
            mmcv's CUDA kernels, else ``'fast'``; on the CPU the fastest correct path
            (``'cpp'``, this package's compiled CPU kernels, when they were built;
            else ``'fast'``); ``'mmcv'`` forces mmcv's compiled kernels (a CUDA tensor
            is refused with a ``RuntimeError`` when mmcv was built without CUDA);
            ``'torch'`` is pure PyTorch (any device, traceable).  See
            :func:`available_backends`.

    Returns:
        Tensor[N, C_out, H_out, W_out]

    While tracing, exporting or compiling (``torch.jit.trace``, ``torch.export``,
    ``torch.onnx.export``, ``torch.compile``) the default backend is ``'torch'``, the
    traceable one.  An explicit backend that the recorder cannot record (any but
    ``'torch'`` under ``torch.jit.trace``; the compiled ones under ``torch.export``) is
    refused with a ``RuntimeError``; ``torch.compile`` keeps every backend.

    Under ``torch.autocast`` the op computes in float32 and returns that dtype, except
    for the kernels with a half-precision path of their own: ``'triton'`` computes in
    the autocast dtype (float16 or bfloat16, accumulating in float32), mmcv's CUDA
    kernels in float16 under float16 autocast.  mmcv's CUDA backward accumulates with
    atomicAdd and is not bitwise deterministic; with
    ``torch.use_deterministic_algorithms(True)`` a warning says so once
    (``'triton'``'s backward is deterministic then).
    """
    geo = check_deform_conv2d_args(input, offset, weight, bias, stride, padding, dilation, mask)
    hook = _export_hook.fn
    if hook is not None and torch.onnx.is_in_onnx_export():
        return hook(input, offset, weight, bias, mask, geo)
    graph_recorder = recorder()
    if backend in (None, 'auto') and (graph_recorder is not None or _is_compiling()):
        # jit.trace / torch.export / the ONNX exporters / torch.compile record plain
        # tensor ops; the autograd.Functions and compiled kernels of the other backends
        # are opaque.  Nor is any backend probed: that may import a compiled extension,
        # which torch.compile cannot trace.
        name = 'torch'
    else:
        # Refused before resolve_backend probes anything (see above).
        if (graph_recorder is not None and backend in BACKENDS
                and graph_recorder not in BACKENDS[backend].recorded_by):
            _refuse_unrecordable(backend, graph_recorder)
        name = resolve_backend(backend, input.device)
    if geo.batch == 0:
        # The backends' kernels do not all take empty batches; the pure path does,
        # and back-propagates zeros into the parameters.
        name = 'torch'
    device_type = input.device.type
    autocast = _autocast_enabled(device_type)
    if not autocast:
        check_dtypes(input, offset, weight, bias, mask)
    # Before either path runs: the autocast path (--amp) must warn as well.
    if (device_type == 'cuda' and name == 'mmcv' and torch.are_deterministic_algorithms_enabled()
            and torch.is_grad_enabled()):
        _warn_nondeterministic()
    if autocast:
        dtype = _compute_dtype(name, device_type, _autocast_dtype(device_type))
        cast = [t.to(dtype) if t is not None else None
                for t in (input, offset, weight, bias, mask)]
        with torch.autocast(device_type, enabled=False):
            return BACKENDS[name].fn(cast[0], cast[1], cast[2], cast[3], cast[4], geo)
    return BACKENDS[name].fn(input, offset, weight, bias, mask, geo)


def _compute_dtype(name: str, device_type: str, autocast_dtype: torch.dtype) -> torch.dtype:
    """The dtype backend ``name`` computes in under autocast to ``autocast_dtype``."""
    if name == 'triton' and autocast_dtype in (torch.float16, torch.bfloat16):
        return autocast_dtype
    if device_type == 'cuda' and name == 'mmcv' and autocast_dtype == torch.float16:
        return torch.float16
    return torch.float32


def _warn_nondeterministic() -> None:
    global _warned_nondeterministic
    if not _warned_nondeterministic:
        _warned_nondeterministic = True
        warnings.warn(
            "deterministic algorithms are enabled, but mmcv's CUDA deformable-convolution "
            'backward accumulates gradients with atomicAdd and is not bitwise '
            "reproducible; use backend='triton' (deterministic then) or backend='torch' "
            'for a reproducible path',
            UserWarning, stacklevel=3)
