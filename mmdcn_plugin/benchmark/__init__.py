"""Benchmarks: the deformable op against a plain conv, and whole detectors against
their baselines; ``tools/benchmark.py`` is the command line.

- :mod:`.ops`: time every backend of the op (and mmcv's and torchvision's kernels)
  on ResNet-50's c3-c5 DCN shapes, CPU or CUDA, interleaved repetitions, medians;
  peak memory per candidate; the candidates and the op's inputs for every benchmark;
- :mod:`.ops_report`: those rows as a Markdown table, and each backend against mmcv;
- :mod:`.floor`: the least time the op can take on a machine (its work over the
  machine's measured ceilings), and each row's time over it;
- :mod:`.model`: time ``train_step`` and ``test_step`` of a config, its baseline and
  more configs (CPU or CUDA, fp32 or AMP, on a config's data or a synthetic batch);
- :mod:`.infer`: CPU inference of the op under onnxruntime and of a backbone
  (``tools/benchmark.py infer``, ``model --infer``; formerly ``deploy.speed``);
- :mod:`.overhead`: what the op's wrapper costs per call over mmcv's raw kernel;
- :mod:`.output`: the ``results.json`` / ``results.csv`` / ``results.png`` files;
- :mod:`.gpu_check`: the end-to-end check of a GPU machine (``tools/gpu_check.py``).

Every timing goes through :mod:`mmdcn_plugin.utils.timing` (one interleaved loop).
"""
from .infer import INFER_SHAPES, infer_candidates, infer_table, run_infer_ops, run_model_infer
from .model import (count_deformable_layers, model_table, resolve_config, run_model,
                    summarize_model_times, synthetic_batch)
from .floor import Ceilings, add_floors, measure_ceilings, op_work, parse_ceilings
from .ops import (DTYPES, OP_SHAPES, SHAPE_PRESETS, expand_shapes, make_op_inputs,
                  op_candidates, op_run, run_ops, tf32_flags)
from .ops_report import ops_summary, ops_table
from .output import machine_for, write_outputs, write_partial
from .overhead import overhead_table, run_overhead

__all__ = ['OP_SHAPES', 'SHAPE_PRESETS', 'DTYPES', 'expand_shapes', 'make_op_inputs',
           'op_candidates', 'op_run', 'run_ops', 'ops_table', 'ops_summary', 'tf32_flags',
           'run_model', 'summarize_model_times', 'model_table', 'synthetic_batch',
           'resolve_config', 'count_deformable_layers', 'INFER_SHAPES', 'infer_candidates',
           'run_infer_ops', 'run_model_infer', 'infer_table', 'write_outputs', 'write_partial',
           'machine_for', 'run_overhead', 'overhead_table', 'Ceilings', 'add_floors',
           'measure_ceilings', 'op_work', 'parse_ceilings']
