"""Moved: inference timing is a benchmark, now :mod:`mmdcn_plugin.benchmark.infer`.

Kept so that ``from mmdcn_plugin.deploy.speed import ...`` still works; the
package's own code imports from :mod:`mmdcn_plugin.benchmark`.
"""
from typing import Sequence, Tuple

from torch import Tensor

from ..benchmark.infer import (INFER_SHAPES, infer_candidates, infer_table, run_infer_ops,
                               run_model_infer)
from ..benchmark.ops import make_op_inputs
from ..utils.timing import interleaved_medians

op_candidates = infer_candidates


def op_inputs(shape: Sequence[int], seed: int = 0) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`mmdcn_plugin.benchmark.make_op_inputs` on the CPU in float32, without grad."""
    return make_op_inputs(shape, seed=seed, requires_grad=False)


__all__ = ['INFER_SHAPES', 'infer_table', 'interleaved_medians', 'op_candidates', 'op_inputs',
           'run_infer_ops', 'run_model_infer']
