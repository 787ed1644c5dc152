"""Benchmarks: the deformable op against a plain conv, and whole detectors against
their baselines; ``tools/benchmark.py`` is the command line.

- :mod:`.ops`: time every backend of the op (and mmcv's kernels) on ResNet-50's
  c3-c5 DCN shapes, interleaved repetitions, medians; peak memory per candidate;
- :mod:`.model`: time ``train_step`` and ``test_step`` of a config and its baseline;
- :mod:`.output`: the ``results.json`` / ``results.csv`` / ``results.png`` files.
"""
from .model import model_table, run_model, summarize_model_times
from .ops import (DTYPES, OP_SHAPES, make_op_inputs, op_candidates, ops_summary, ops_table,
                  run_ops)
from .output import write_outputs

__all__ = ['OP_SHAPES', 'DTYPES', 'make_op_inputs', 'op_candidates', 'run_ops', 'ops_table',
           'ops_summary', 'run_model', 'summarize_model_times', 'model_table',
           'write_outputs']
