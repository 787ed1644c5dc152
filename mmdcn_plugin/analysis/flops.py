"""FLOPs of models with deformable convolutions, on top of MMEngine's jit-trace counter.

MMEngine's :class:`~mmengine.analysis.FlopAnalyzer` (fvcore's design) traces the
model with ``torch.jit`` and counts FLOPs per traced ``aten::`` op through handles.
Deformable convolution has no handle, and tracing it is not even reliable:

* with an explicit backend other than ``'torch'`` the op refuses ``torch.jit.trace``
  with a ``RuntimeError`` (:func:`mmdcn_plugin.ops.deform_conv.recorder`): those
  backends' ``autograd.Function`` subclasses and compiled kernels are opaque to it;
* mmcv's own ``DCN``/``DCNv2`` trace as one opaque ``prim::PythonOp`` that no handle
  counts: a 64-channel 3x3 DCNv2 on a 32x32 map counts 15.9 MFLOPs (its offset conv)
  where a plain conv counts 37.7;
* the pure-PyTorch backend (the default while tracing) traces into gathers and a
  GEMM: the GEMM (the main conv) is counted, the bilinear sampling and the
  modulation are not.

The mechanism here makes the count independent of the backend.  While
:class:`DeformableFlopAnalyzer` traces, every :class:`DeformableConv2d` runs its
offset head normally (its convs, norms and activations are counted by MMEngine's
own handles) and then the op through :class:`DeformConv2dCountingOp`, an
``autograd.Function`` that the tracer records as one node,
``prim::PythonOp.DeformConv2dCountingOp``.  Inside it tracing is switched off and
the real op runs with the layer's backend, so the numbers flowing on through the
model (proposals, hence the RoI head's cost) are the real ones.  A handle for that
node computes the formula below from the node's tensor shapes.  mmcv's
``DeformConv2dFunction`` / ``ModulatedDeformConv2dFunction`` nodes (``DCN``,
``DCNv2``) get the same handle, so mmcv's layers count identically.  The layers
are patched on the instance only for the duration of the trace.

Formula (MMEngine's convention: one multiply-add = one FLOP; biases ignored, as in
MMEngine's conv handle).  With ``P = N * H_out * W_out`` output positions and
``K = kh * kw`` kernel points, ``S = P * K * C_in`` sampled values::

    deform_conv       = P * K * C_out * C_in / groups   (as a plain conv)
    deform_sampling   = 4 * S                           (bilinear: 4 corners)
    deform_modulation = S                               (DCNv2 only: x mask)

plus the offset head, counted op by op (a ``ConvOffsetHead`` is one conv of
``P * K * 3GK * C_in`` for DCNv2, ``2GK`` output channels for DCNv1).  See
``docs/flops.md``.
"""
from collections import Counter
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape
from mmengine.analysis.print_helper import complexity_stats_str, complexity_stats_table

from ..layers import DeformableConv2d
from ..ops import deform_conv2d
from .private_api import (analyzer_cached_stats, analyzer_model, format_size,
                          forward_replaced, mmengine_analyze, tracing_paused)

# Multiply-adds per sampled value: bilinear interpolation weighs 4 corners.  The
# corner weights themselves are computed once per point and shared by the C_in / G
# channels of a deform group, so they are left out, like MMEngine leaves out biases.
SAMPLING_MACS_PER_VALUE = 4
# Multiplies per sampled value for DCNv2's modulation mask.
MODULATION_MACS_PER_VALUE = 1

COUNTING_OP = 'prim::PythonOp.DeformConv2dCountingOp'
MMCV_DCN_OP = 'prim::PythonOp.DeformConv2dFunction'
MMCV_DCNV2_OP = 'prim::PythonOp.ModulatedDeformConv2dFunction'


def deform_conv2d_flops(input_shape: Sequence[int], weight_shape: Sequence[int],
                        output_shape: Sequence[int], modulated: bool) -> Counter:
    """FLOPs (multiply-adds) of one deformable convolution, offset head excluded.

    Args:
        input_shape (sequence [N, C_in, H, W]): the op's input.
        weight_shape (sequence [C_out, C_in / groups, kh, kw]): its kernel.
        output_shape (sequence [N, C_out, H_out, W_out]): its output.
        modulated (bool): DCNv2 (a mask multiplies every sampled value).

    Returns:
        Counter with ``deform_conv``, ``deform_sampling`` and, for DCNv2,
        ``deform_modulation`` (see the module docstring for the formula).
    """
    if len(input_shape) != 4 or len(weight_shape) != 4 or len(output_shape) != 4:
        raise ValueError('input_shape, weight_shape and output_shape must each have 4 '
                         f'entries, got {list(input_shape)}, {list(weight_shape)}, '
                         f'{list(output_shape)}')
    n, c_in = int(input_shape[0]), int(input_shape[1])
    c_out, c_per_group, kh, kw = (int(v) for v in weight_shape)
    h_out, w_out = int(output_shape[2]), int(output_shape[3])
    points = n * h_out * w_out * kh * kw        # sampling points per input channel
    sampled = points * c_in
    counts = Counter({'deform_conv': points * c_out * c_per_group,
                      'deform_sampling': SAMPLING_MACS_PER_VALUE * sampled})
    if modulated:
        counts['deform_modulation'] = MODULATION_MACS_PER_VALUE * sampled
    return counts


def _deform_conv_handle(input_index: int, weight_index: int, modulated: Optional[bool]):
    """A jit handle reading the op's shapes from fixed input positions.

    ``modulated=None``: DCNv2 when a fourth 4-D tensor (the mask) is among the
    inputs, which is how :class:`DeformConv2dCountingOp` passes it.
    """

    def handle(inputs: List, outputs: List) -> Counter:
        shapes = [get_shape(v) for v in inputs]
        is_mod = modulated
        if is_mod is None:
            is_mod = sum(1 for s in shapes if s is not None and len(s) == 4) == 4
        input_shape, weight_shape = shapes[input_index], shapes[weight_index]
        output_shape = get_shape(outputs[0])
        if input_shape is None or weight_shape is None or output_shape is None:
            # Happens only when the tracer lost the shapes (e.g. dynamic sizes).
            raise RuntimeError('the traced deformable convolution has no static shapes; '
                               'count it on concrete example inputs')
        return deform_conv2d_flops(input_shape, weight_shape, output_shape, is_mod)

    return handle


# Tensor inputs of each node, in order:
#   DeformConv2dCountingOp:         input, offset, weight, [mask], [bias]
#   mmcv DeformConv2dFunction:      input, offset, weight
#   mmcv ModulatedDeformConv2dFunction: input, offset, mask, weight, [bias]
DEFORM_CONV_FLOP_HANDLES: Dict[str, object] = {
    COUNTING_OP: _deform_conv_handle(0, 2, None),
    MMCV_DCN_OP: _deform_conv_handle(0, 2, False),
    MMCV_DCNV2_OP: _deform_conv_handle(0, 3, True),
}


class DeformConv2dCountingOp(torch.autograd.Function):
    """The deformable op as one traced node, for counting only (no backward).

    ``forward(input, offset, weight, mask, bias, layer)`` runs
    :func:`mmdcn_plugin.ops.deform_conv2d` with ``layer``'s geometry and backend,
    with the tracer switched off so that no backend's internals reach the graph
    (and a backend that ``torch.jit.trace`` cannot record still runs).
    """

    @staticmethod
    def forward(ctx, input: Tensor, offset: Tensor, weight: Tensor, mask: Optional[Tensor],
                bias: Optional[Tensor], layer: DeformableConv2d) -> Tensor:
        with tracing_paused():
            out = deform_conv2d(input, offset, weight, bias, layer.stride, layer.padding,
                                layer.dilation, mask, backend=layer.backend)
        # The tracer records this node's body as a subgraph and must know the value
        # it returns: the clone, traced, reads `out` as a constant of that subgraph.
        # Returning `out` itself fails ("Cannot insert a Tensor that requires grad as
        # a constant") once autograd has wrapped it.
        return out.clone()

    @staticmethod
    def backward(ctx, grad_out):
        raise RuntimeError('DeformConv2dCountingOp exists only to count FLOPs while '
                           'tracing; it has no backward')


def _counting_forward(layer: DeformableConv2d, x: Tensor) -> Tensor:
    offset, mask = layer.offset_and_mask(x)
    return DeformConv2dCountingOp.apply(x, offset, layer.weight, mask, layer.bias, layer)


@contextmanager
def deform_conv_as_one_op(model: nn.Module) -> Iterator[List[str]]:
    """Route every :class:`DeformableConv2d` in ``model`` through the counting op.

    Replaces ``forward`` on the instances (not the class) and restores it on exit.
    Yields the names of the patched layers.
    """
    layers = [(name, m) for name, m in model.named_modules()
              if isinstance(m, DeformableConv2d)]
    with ExitStack() as stack:
        for _, m in layers:
            stack.enter_context(forward_replaced(m, partial(_counting_forward, m)))
        yield [name for name, _ in layers]


class DeformableFlopAnalyzer(FlopAnalyzer):
    """:class:`mmengine.analysis.FlopAnalyzer` that also counts deformable convolution.

    Counts :class:`DeformableConv2d` (any backend) and mmcv's ``DCN``/``DCNv2`` with
    :func:`deform_conv2d_flops`; everything else as MMEngine does.  The per-operator
    breakdown (``by_operator``) lists ``deform_conv``, ``deform_sampling`` and
    ``deform_modulation`` next to MMEngine's ``conv``, ``linear``, ...

    Args:
        model (nn.Module): the model to analyse.
        inputs (Tensor or tuple): what ``model.forward`` receives.
    """

    def __init__(self, model: nn.Module, inputs: Union[Tensor, Tuple]):
        super().__init__(model, inputs)
        self.set_op_handle(**DEFORM_CONV_FLOP_HANDLES)

    def _analyze(self):
        # Overrides MMEngine's private JitModelAnalysis._analyze, the one method every
        # query goes through (see private_api.mmengine_analyze).
        stats = analyzer_cached_stats(self)
        if stats is not None:
            return stats
        with deform_conv_as_one_op(analyzer_model(self)):
            return mmengine_analyze(self)


def _offset_head_name(module: nn.Module) -> Optional[str]:
    if isinstance(module, DeformableConv2d):
        return 'offset_head'
    if hasattr(module, 'conv_offset'):   # mmcv's DCN / DCNv2
        return 'conv_offset'
    return None


def deformable_layer_flops(analyzer: DeformableFlopAnalyzer) -> List[dict]:
    """Per deformable layer (forward order of ``named_modules``), FLOPs by part.

    Returns:
        list of dicts: ``name``, ``deform_conv``, ``deform_sampling``,
        ``deform_modulation``, ``offset_head`` and ``total`` (the layer's whole
        count, its offset head included).
    """
    from mmcv.ops import DeformConv2d, ModulatedDeformConv2d
    kinds = (DeformableConv2d, DeformConv2d, ModulatedDeformConv2d)
    counts = analyzer.by_module_and_operator()
    rows = []
    for name, module in analyzer_model(analyzer).named_modules():
        if not isinstance(module, kinds):
            continue
        by_op = counts.get(name, Counter())
        head = _offset_head_name(module)
        rows.append(dict(
            name=name, deform_conv=by_op.get('deform_conv', 0),
            deform_sampling=by_op.get('deform_sampling', 0),
            deform_modulation=by_op.get('deform_modulation', 0),
            offset_head=analyzer.total(f'{name}.{head}') if head else 0,
            total=analyzer.total(name)))
    return rows


def get_model_complexity_info(model: nn.Module, inputs: Union[Tensor, Tuple],
                              show_table: bool = True, show_arch: bool = False,
                              max_depth: int = 3) -> dict:
    """FLOPs and parameters of ``model`` on ``inputs``, deformable layers included.

    Like :func:`mmengine.analysis.get_model_complexity_info` with explicit
    ``inputs``, but with :class:`DeformableFlopAnalyzer` and without activation
    counts.

    Returns:
        dict with ``flops`` (int, multiply-adds), ``flops_str``, ``params`` (int),
        ``params_str``, ``out_table`` and ``out_arch`` (strings, empty unless asked
        for) and ``analyzer`` (the :class:`DeformableFlopAnalyzer`, for
        ``by_module()`` and ``by_operator()``).
    """
    analyzer = DeformableFlopAnalyzer(model, inputs)
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    flops = analyzer.total()
    params = parameter_count(model)['']
    table = ('\n' + complexity_stats_table(flops=analyzer, max_depth=max_depth,
                                           show_param_shapes=False)) if show_table else ''
    arch = ('\n' + complexity_stats_str(flops=analyzer)) if show_arch else ''
    return dict(flops=flops, flops_str=format_size(flops), params=params,
                params_str=format_size(params), out_table=table, out_arch=arch,
                analyzer=analyzer)


def dummy_detector_inputs(model: nn.Module, shape: Tuple[int, int],
                          seed: int = 0) -> Tuple[Tensor, list]:
    """A random image of ``shape`` (H, W) through the detector's data preprocessor.

    Returns:
        (inputs (Tensor[1, 3, H_pad, W_pad]), data_samples): what
        ``model(inputs, data_samples, mode='tensor')`` takes; the preprocessor
        normalises and pads (to its ``pad_size_divisor``) as in training.
    """
    from mmdet.structures import DetDataSample
    if (not isinstance(shape, (tuple, list)) or len(shape) != 2
            or not all(isinstance(v, int) and v > 0 for v in shape)):
        raise ValueError(f'shape must be (height, width) with positive ints, got {shape!r}')
    h, w = shape
    gen = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8)
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                         scale_factor=(1.0, 1.0), img_id=0))
    data = model.data_preprocessor(dict(inputs=[image], data_samples=[sample]), False)
    return data['inputs'], data['data_samples']


def detector_complexity_info(model: nn.Module, shape: Tuple[int, int], **kwargs) -> dict:
    """:func:`get_model_complexity_info` of an MMDetection detector on a dummy image.

    The detector runs ``mode='tensor'`` (backbone, neck and heads, no
    post-processing), as MMDetection's ``tools/analysis_tools/get_flops.py`` does.
    ``model`` should be in eval mode.  ``kwargs`` go to
    :func:`get_model_complexity_info`.
    """
    inputs, data_samples = dummy_detector_inputs(model, shape)
    # The tracer calls model(inputs); the samples ride along as a keyword.
    with forward_replaced(model, partial(model.forward, data_samples=data_samples,
                                         mode='tensor')):
        return get_model_complexity_info(model, inputs, **kwargs)
