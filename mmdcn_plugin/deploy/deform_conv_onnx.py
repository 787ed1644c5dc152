"""The ONNX ``DeformConv`` node (opset >= 19) for :func:`mmdcn_plugin.ops.deform_conv2d`.

ONNX opset 19 has a standard ``DeformConv`` operator (inputs ``X, W, offset, B, mask``;
attributes ``dilations, group, kernel_shape, offset_group, pads, strides``).  Its offset
and mask layouts are this package's (and mmcv's, and torchvision's)::

    offset[:, 2 * (g * kh * kw + k)]     = dy      (per offset group g,
    offset[:, 2 * (g * kh * kw + k) + 1] = dx       per kernel point k = i * kw + j)
    mask[:, g * kh * kw + k]             = m

so the op's tensors go into the node unchanged.

:func:`onnx_deform_conv` sets the op's export hook
(:func:`mmdcn_plugin.ops.deform_conv.onnx_export_hook`, on the calling thread only) for
the length of an export.  Every ``deform_conv2d`` call recorded then becomes:

* ``'native'``: one ``DeformConv`` node.  With the TorchScript exporter
  (``torch.onnx.export(..., dynamo=False)``) through an ``autograd.Function`` whose
  ``symbolic`` writes the node; with the dynamo exporter through
  ``torch.onnx.ops.symbolic``, which it translates without a custom table.
* ``'gather'``: the ``'torch'`` backend's plain tensor ops (gathers and a GEMM), for
  opsets below 19 and runtimes without ``DeformConv``.

The hook overrides the layer's ``backend`` choice: a backend says how to compute in
PyTorch, the mode says what the exported graph holds.
"""
import contextlib
from typing import Iterator, Optional

import torch
from torch import Tensor

from ..ops.backends import BACKENDS
from ..ops.checks import DeformGeometry
from ..ops.deform_conv import current_onnx_export_hook, onnx_export_hook

DEFORM_CONV_OPSET = 19
MODES = ('auto', 'native', 'gather')


def resolve_mode(mode: str, opset: int) -> str:
    """``'native'`` or ``'gather'``: what an export at ``opset`` records for ``mode``.

    ``'auto'`` is native from opset 19, the gather graph below.  Raises ``ValueError``
    for an unknown mode, or for ``'native'`` below opset 19.
    """
    if mode not in MODES:
        raise ValueError(f'deform_conv must be one of {list(MODES)}, got {mode!r}')
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 1:
        raise ValueError(f'opset must be a positive int, got {opset!r}')
    if mode == 'auto':
        return 'native' if opset >= DEFORM_CONV_OPSET else 'gather'
    if mode == 'native' and opset < DEFORM_CONV_OPSET:
        raise ValueError(
            f'opset {opset} is too old for the ONNX DeformConv operator: expected opset >= '
            f"{DEFORM_CONV_OPSET}, got {opset}; export the gather graph instead "
            "(deform_conv='gather', or --deform-conv gather)")
    return mode


def _attributes(geo: DeformGeometry) -> dict:
    ph, pw = geo.padding
    return dict(dilations=list(geo.dilation), group=geo.groups, kernel_shape=list(geo.kernel),
                offset_group=geo.deform_groups, pads=[ph, pw, ph, pw],
                strides=list(geo.stride))


class _DeformConvTorchScript(torch.autograd.Function):
    """A placeholder of the output's shape; the TorchScript exporter calls ``symbolic``.

    ``forward(ctx, geo, x, weight, offset, bias[, mask])``: every tensor argument is
    present (the caller materialises a zero bias), the mask only for DCNv2, so that
    ``symbolic`` never meets an absent optional input.

    Like ``torch.onnx.ops.symbolic`` for the dynamo exporter, ``forward`` returns
    zeros: the tracer records this Function as one node and its value is never used.
    (Recording the ``'torch'`` backend's ops inside the Function instead trips internal
    asserts of the TorchScript graph passes (peephole, dead-code elimination) in torch 2.13.)
    """

    @staticmethod
    def forward(ctx, geo: tuple, x: Tensor, weight: Tensor, offset: Tensor, bias: Tensor,
                *mask: Tensor) -> Tensor:
        geo = DeformGeometry(*geo)
        return x.new_zeros(x.shape[0], geo.out_channels, *geo.out_size)

    @staticmethod
    def symbolic(g, geo, x, weight, offset, bias, *mask):
        attrs = _attributes(DeformGeometry(*geo))
        return g.op('DeformConv', x, weight, offset, bias, *mask,
                    dilations_i=attrs['dilations'], group_i=attrs['group'],
                    kernel_shape_i=attrs['kernel_shape'],
                    offset_group_i=attrs['offset_group'], pads_i=attrs['pads'],
                    strides_i=attrs['strides'])


def deform_conv_node(input: Tensor, offset: Tensor, weight: Tensor, bias: Optional[Tensor],
                     mask: Optional[Tensor], geo: DeformGeometry) -> Tensor:
    """Record one ONNX ``DeformConv`` node (call only while exporting).

    Args:
        input (Tensor[N, C_in, H, W]), offset (Tensor[N, 2*G*kh*kw, H_out, W_out]),
        weight (Tensor[C_out, C_in/groups, kh, kw]), bias (Tensor[C_out] or None),
        mask (Tensor[N, G*kh*kw, H_out, W_out] or None), geo: as checked by the op.

    Returns:
        Tensor[N, C_out, H_out, W_out]
    """
    if torch.jit.is_tracing():
        if bias is None:
            # A constant zero bias: ``symbolic`` cannot leave out B and still pass mask.
            bias = torch.zeros(geo.out_channels, dtype=weight.dtype, device=weight.device)
        masks = () if mask is None else (mask,)
        # Sizes read while exporting are 0-d tensors; the node's attributes want ints.
        static = tuple(tuple(int(v) for v in f) if isinstance(f, tuple) else int(f)
                       for f in geo)
        return _DeformConvTorchScript.apply(static, input, weight, offset, bias, *masks)
    # The dynamo exporter (torch.export underneath) translates this op by itself.
    shape = [input.shape[0], geo.out_channels, geo.out_size[0], geo.out_size[1]]
    return torch.onnx.ops.symbolic('DeformConv', [input, weight, offset, bias, mask],
                                   _attributes(geo), dtype=input.dtype, shape=shape,
                                   version=DEFORM_CONV_OPSET)


def _gather_graph(input, offset, weight, bias, mask, geo):
    return BACKENDS['torch'].fn(input, offset, weight, bias, mask, geo)


@contextlib.contextmanager
def onnx_deform_conv(mode: str = 'auto', opset: int = DEFORM_CONV_OPSET) -> Iterator[str]:
    """Within this block, this thread's ONNX exports record ``deform_conv2d`` as ``mode`` says.

    Exports running on other threads at the same time are not affected (each sets its
    own block).

    Args:
        mode (str): ``'native'`` (one ``DeformConv`` node per call, opset >= 19),
            ``'gather'`` (the pure-PyTorch gathers and GEMM, any opset) or ``'auto'``
            (native from opset 19).
        opset (int): the opset the export will use.

    Yields:
        str: the resolved mode, ``'native'`` or ``'gather'``.

    Example::

        with onnx_deform_conv('native', opset=19):
            torch.onnx.export(model, (x,), 'model.onnx', opset_version=19, dynamo=False)
    """
    resolved = resolve_mode(mode, opset)
    if current_onnx_export_hook() is not None:
        raise RuntimeError('onnx_deform_conv blocks do not nest: an export hook is already '
                           'set on this thread')
    with onnx_export_hook(deform_conv_node if resolved == 'native' else _gather_graph):
        yield resolved
