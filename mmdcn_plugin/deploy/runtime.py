"""What the installed ONNX stack can do: required packages, opsets, onnxruntime sessions.

``onnx``, ``onnxruntime`` and (for the dynamo exporter) ``onnxscript`` are optional
dependencies (``pip install -e '.[dev]'``); they are imported here, on first use only.
"""
import functools
import importlib
import importlib.util
from typing import Optional

from .deform_conv_onnx import DEFORM_CONV_OPSET

INSTALL_HINT = "install the development extras: pip install -e '.[dev]'"
# torch.onnx.export(dynamo=False) refuses opsets above 20 (torch 2.1-2.13).
TORCHSCRIPT_MAX_OPSET = 20
# The gather graph clamps int64 indices: onnxruntime rejects an int64 Clip at opset 11.
MIN_OPSET = 13


def require(*names: str) -> None:
    """Raise ``ImportError`` naming every package of ``names`` that is not installed."""
    missing = [name for name in names if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"{' and '.join(missing)} not installed (expected by the ONNX export "
                          f'and its check); {INSTALL_HINT}')


def exporter_max_opset(dynamo: bool) -> int:
    """The newest opset torch's TorchScript (``dynamo=False``) or dynamo exporter writes."""
    try:
        from torch.onnx import _constants
        key = 'ONNX_MAX_OPSET' if dynamo else 'ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET'
        return int(getattr(_constants, key))
    except (ImportError, AttributeError):  # a private module: fall back to torch 2.13's
        return 23 if dynamo else TORCHSCRIPT_MAX_OPSET


def _probe_model(opset: int, deform_conv: bool):
    """A one-node model: ``DeformConv`` (3x3, 1 channel, with B and mask) or ``Relu``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def value(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    if deform_conv:
        inits = [numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), 'W'),
                 numpy_helper.from_array(np.zeros(1, np.float32), 'B')]
        node = helper.make_node('DeformConv', ['X', 'W', 'offset', 'B', 'mask'], ['Y'],
                                kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        inputs = [value('X', [1, 1, 4, 4]), value('offset', [1, 18, 4, 4]),
                  value('mask', [1, 9, 4, 4])]
    else:
        inits, node = [], helper.make_node('Relu', ['X'], ['Y'])
        inputs = [value('X', [1, 1, 4, 4])]
    graph = helper.make_graph([node], 'probe', inputs, [value('Y', [1, 1, 4, 4])], inits)
    opset_id = helper.make_opsetid('', opset)
    model = helper.make_model(graph, opset_imports=[opset_id])
    model.ir_version = helper.find_min_ir_version_for([opset_id])
    return model.SerializeToString(), [i.name for i in inputs]


#: onnxruntime's own exception types (``onnxruntime.capi.onnxruntime_pybind11_state``),
#: what it raises for a model it cannot load or run.
ORT_ERRORS = ('Fail', 'InvalidArgument', 'NoSuchFile', 'NoModel', 'EngineError',
              'RuntimeException', 'InvalidProtobuf', 'ModelLoaded', 'NotImplemented',
              'InvalidGraph', 'EPFail')


def onnxruntime_errors() -> tuple:
    """The exception classes of :data:`ORT_ERRORS` that the installed onnxruntime has."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state
    found = (getattr(state, name, None) for name in ORT_ERRORS)
    return tuple(cls for cls in found if isinstance(cls, type) and issubclass(cls, Exception))


@functools.lru_cache(maxsize=None)
def onnxruntime_runs(opset: int, deform_conv: bool = False) -> bool:
    """True when onnxruntime loads and runs a model of ``opset`` (with a ``DeformConv``).

    False only when onnxruntime refuses the model with one of its own errors (an
    opset or operator it does not implement); any other exception, a bug in the probe
    itself, propagates.
    """
    import numpy as np
    import onnxruntime as ort
    model, inputs = _probe_model(opset, deform_conv)
    try:
        session = ort.InferenceSession(model, providers=['CPUExecutionProvider'])
        feeds = {name: np.full(session.get_inputs()[i].shape, 0.5, np.float32)
                 for i, name in enumerate(inputs)}
        session.run(None, feeds)
    except onnxruntime_errors():
        return False
    return True


def default_opset(dynamo: bool = False) -> int:
    """The newest opset that onnx, onnxruntime and the exporter all support.

    Among those, the newest at which onnxruntime runs ``DeformConv`` (>= 19) when there
    is one; else the newest opset onnxruntime loads at all (the gather graph then).
    """
    require('onnx', 'onnxruntime')
    import onnx
    top = min(onnx.defs.onnx_opset_version(), exporter_max_opset(dynamo))
    for opset in range(top, DEFORM_CONV_OPSET - 1, -1):
        if onnxruntime_runs(opset, deform_conv=True):
            return opset
    for opset in range(top, MIN_OPSET - 1, -1):
        if onnxruntime_runs(opset):
            return opset
    raise RuntimeError(f'onnxruntime runs no opset between {MIN_OPSET} and {top}; reinstall it')


def check_opset(opset: int, dynamo: bool = False) -> None:
    """Raise ``ValueError`` when ``opset`` is older than :data:`MIN_OPSET` or beyond what
    onnx or the exporter writes."""
    require('onnx')
    import onnx
    top = min(onnx.defs.onnx_opset_version(), exporter_max_opset(dynamo))
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= top:
        exporter = 'dynamo' if dynamo else 'TorchScript'
        raise ValueError(f'opset must be an int between {MIN_OPSET} (the gather graph clamps '
                         f'int64 indices) and {top} (the newest that onnx {onnx.__version__} '
                         f'and the {exporter} exporter write), got {opset!r}')


def inference_session(path: str, threads: Optional[int] = None):
    """An onnxruntime CPU session of ``path``; ``threads`` intra-op threads (default: ort's)."""
    require('onnxruntime')
    ort = importlib.import_module('onnxruntime')
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
