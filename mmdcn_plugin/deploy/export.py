"""Export a module with deformable convolutions to ONNX, with either of torch's exporters."""
import warnings
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .deform_conv_onnx import onnx_deform_conv, resolve_mode
from .runtime import check_opset, require

EXPORTERS = ('torchscript', 'dynamo')


class ExportResult(NamedTuple):
    path: str
    opset: int
    exporter: str            # 'torchscript' or 'dynamo'
    deform_conv: str         # 'native' or 'gather'
    input_names: List[str]
    output_names: List[str]


def _output_names(module: nn.Module, args: Tuple[Tensor, ...]) -> List[str]:
    with torch.no_grad():
        out = module(*args)
    count = len(out) if isinstance(out, (tuple, list)) else 1
    names = module.output_names(count) if hasattr(module, 'output_names') else None
    return names if names and len(names) == count else [f'output{i}' for i in range(count)]


def export_onnx(module: nn.Module, args: Union[Tensor, Tuple[Tensor, ...]], path: str, *,
                opset: int, deform_conv: str = 'auto', exporter: str = 'torchscript',
                input_names: Optional[Sequence[str]] = None,
                output_names: Optional[Sequence[str]] = None,
                dynamic_batch: bool = True) -> ExportResult:
    """Export ``module`` (tensors in, a tensor or tuple of tensors out) to ``path``.

    Args:
        module (nn.Module): in eval mode; a method ``output_names(count)``, when it has
            one, names the outputs.
        args (Tensor[N, ...] or tuple of them): the example input(s).
        path (str): the ``.onnx`` file to write.
        opset (int): ONNX opset version.
        deform_conv (str): ``'native'`` (one ``DeformConv`` node per deformable
            convolution, opset >= 19), ``'gather'`` (plain gathers and a GEMM, any
            opset) or ``'auto'`` (native from opset 19); see
            :func:`~mmdcn_plugin.deploy.onnx_deform_conv`.
        exporter (str): ``'torchscript'`` (``torch.onnx.export(dynamo=False)``) or
            ``'dynamo'`` (torch.export underneath; needs ``onnxscript``).
        input_names (sequence of str or None): default: ``input`` for one input, else
            ``input0, input1, ...``.
        output_names (sequence of str or None): default: from the module, else
            ``output0, output1, ...``.
        dynamic_batch (bool): keep the batch axis (dimension 0) of every input and
            output dynamic.

    Returns:
        ExportResult: where, how, and the input and output names.

    Raises:
        ValueError: unknown ``exporter`` or ``deform_conv``; ``deform_conv='native'``
            below opset 19; an opset beyond the exporter's or onnx's newest.
        ImportError: ``onnx`` (or, for dynamo, ``onnxscript``) is not installed.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f'exporter must be one of {list(EXPORTERS)}, got {exporter!r}')
    dynamo = exporter == 'dynamo'
    mode = resolve_mode(deform_conv, opset)
    require('onnx', *(['onnxscript'] if dynamo else []))
    check_opset(opset, dynamo)
    args = (args,) if isinstance(args, Tensor) else tuple(args)
    inputs = list(input_names) if input_names else (
        ['input'] if len(args) == 1 else [f'input{i}' for i in range(len(args))])
    names = list(output_names) if output_names else _output_names(module, args)
    with onnx_deform_conv(mode, opset), warnings.catch_warnings():
        # Shape checks turn traced sizes into Python bools: true for this input's
        # geometry, which the exported graph keeps (the batch axis excepted).
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', 'You are using the legacy TorchScript',
                                DeprecationWarning)
        if dynamo:
            batch = torch.export.Dim.DYNAMIC if dynamic_batch else torch.export.Dim.STATIC
            torch.onnx.export(module, args, path, dynamo=True, opset_version=opset,
                              input_names=inputs, output_names=names,
                              dynamic_shapes=tuple({0: batch} for _ in args),
                              external_data=False, verbose=False)
        else:
            axes = {name: {0: 'batch'} for name in inputs + names} if dynamic_batch else None
            torch.onnx.export(module, args, path, dynamo=False, opset_version=opset,
                              input_names=inputs, output_names=names, dynamic_axes=axes)
    return ExportResult(path, opset, exporter, mode, inputs, names)
