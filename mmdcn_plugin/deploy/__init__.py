"""Deployment: ONNX export with the standard ``DeformConv`` operator (opset >= 19).

* :func:`onnx_deform_conv` - a block within which ``torch.onnx.export`` records every
  deformable convolution as one ``DeformConv`` node, or as the gather graph;
* :func:`export_onnx` - export a module with either of torch's exporters;
* :func:`export_model` - export and check part of a detector config
  (``tools/export_onnx.py``);
* :func:`default_opset` - the newest opset onnx, onnxruntime and the exporter share;
* :func:`run_infer_ops`, :func:`run_model_infer`, :func:`infer_table`,
  :data:`INFER_SHAPES` - CPU inference timing (``tools/benchmark.py infer``, ``model
  --infer``): moved to :mod:`mmdcn_plugin.benchmark.infer` and still importable from
  here, loaded on first use (benchmark imports deploy, so deploy does not import it).

``onnx``/``onnxruntime``/``onnxscript`` are imported on first use only.
"""
from .check import check_export, compare_outputs, op_counts
from .deform_conv_onnx import (DEFORM_CONV_OPSET, MODES, deform_conv_node, onnx_deform_conv,
                               resolve_mode)
from .export import EXPORTERS, ExportResult, export_onnx
from .model_export import ModelExport, default_out, export_model, report_lines
from .parts import PARTS, export_part
from .runtime import default_opset, inference_session, require

__all__ = ['DEFORM_CONV_OPSET', 'EXPORTERS', 'INFER_SHAPES', 'MODES', 'PARTS', 'ExportResult',
           'ModelExport', 'check_export', 'compare_outputs', 'default_opset', 'default_out',
           'deform_conv_node', 'export_model', 'export_onnx',
           'export_part', 'infer_table', 'inference_session', 'onnx_deform_conv',
           'op_counts', 'report_lines', 'require', 'resolve_mode', 'run_infer_ops',
           'run_model_infer']

# Names that moved to mmdcn_plugin.benchmark.infer (inference timing is a benchmark).
_MOVED_TO_BENCHMARK = ('INFER_SHAPES', 'infer_table', 'run_infer_ops', 'run_model_infer')


def __getattr__(name):
    if name in _MOVED_TO_BENCHMARK:
        from ..benchmark import infer
        return getattr(infer, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
