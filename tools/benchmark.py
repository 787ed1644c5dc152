"""Benchmarks: the deformable-convolution op against a plain conv, and whole detectors.

    python tools/benchmark.py ops [--device cpu|cuda] [--dtype float32|float16|bfloat16]
                                  [--shapes c3 c4 c5 | r50-c3c5] [--strict-fp32-conv]
                                  [--floor | --no-floor] [--ceilings K=V ...] --out-dir DIR
    python tools/benchmark.py floor [--dtype ...] [--shapes ...] [--ceilings K=V ...]
    python tools/benchmark.py model CONFIG [--baseline CONFIG] [--also CONFIG ...]
                                    [--device cpu|cuda] [--amp] [--synthetic H W] --out-dir DIR

``ops`` times a plain conv of the same shape (the floor: cuDNN on CUDA), every
backend of the plugin that runs on the device (``plugin:auto`` too on CUDA), mmcv's
raw kernel (``mmcv.ops.modulated_deform_conv2d``) and ``torchvision.ops.deform_conv2d``
when importable, forward and forward+backward, on ResNet-50's c3-c5 DCN shapes (DCNv2,
3x3): ``c3 c4 c5`` for a 400x667 image at batch 2 (the CPU default), ``r50-c3c5``
for a batch-2 800x1216 training batch (the CUDA default).  Candidates are interleaved
in every repetition (so drift hits all of them alike) after a warm-up, and the median
is reported: wall clock on the CPU, CUDA events on CUDA; ``results.json`` is saved
after every shape, so a run stopped part-way keeps what it measured.  On CUDA float32
the table says which TF32 switch governed each side (cuDNN may use TF32 by default,
matmuls not); ``--strict-fp32-conv`` turns cuDNN's off.  ``--memory`` also measures
the peak memory of one forward+backward of each candidate (a fresh process on the CPU).
With ``--floor`` (the default on CUDA) the machine's ceilings are measured first (a
large copy, a large matmul per precision, about a second on a GPU) and every row gets
its floor, the least time its work can take there, and its time over that floor;
``--ceilings memory=TB/s <precision>=TFLOP/s ...`` gives them instead.

``floor`` prints those floors before anything is timed: the work of the plain conv and
of the deformable op (matmul and bilinear flops, bytes moved) and the least time at the
``--ceilings`` given (or measured on ``--device``); see :mod:`mmdcn_plugin.benchmark.floor`.

``model`` times training iterations (``train_step``) and inference (``test_step``)
of a detector config, of its baseline (the same config with the backbone's
deformable layers removed, unless ``--baseline`` names another config) and of the
``--also`` configs; ``mmdet::<path>`` names one of mmdet's own configs.
``--synthetic H W`` times a random batch of that size instead of the config's
training data; ``--amp`` is mmdet's mixed precision (CUDA).

    python tools/benchmark.py overhead [--device cpu|cuda] [--backward] --out-dir DIR

``overhead`` times the op's wrapper per call on tiny tensors, where the host's work is
all there is: mmcv's raw kernel, our mmcv backend function, ``deform_conv2d`` with
``backend='mmcv'`` and by default, and the wrapper alone (a no-op backend).

    python tools/benchmark.py infer [--shapes c3 c4 c5] [--threads 2] --out-dir DIR
    python tools/benchmark.py model CONFIG --infer [--what backbone|backbone+neck]
                                    [--also CONFIG ...] [--threads 2] --out-dir DIR

``infer`` times inference of the DCNv2 op on ResNet-50's c3-c5 DCN shapes of a
batch-1 800x1333 image: onnxruntime's native ``DeformConv``, the plugin's ``cpp``
backend, mmcv's CPU kernel, the exported gather graph under onnxruntime, and a plain
conv (PyTorch's and onnxruntime's).  ``model --infer`` times a config's backbone (or
backbone + neck) against its plain-conv baseline on one 800x1216 image (batch 1).
Both use ``--threads`` threads (default 2) in every runtime and report the median of
``--repeat`` (default 3) interleaved rounds after a warm-up.

All print a Markdown table and write ``results.csv``, ``results.json`` and a PNG
bar chart into ``--out-dir``.  The work is done by :mod:`mmdcn_plugin.benchmark`.
"""
import argparse
import dataclasses
import json
import os
import sys

import torch
from mmengine.config import DictAction

from mmdcn_plugin.benchmark import (DTYPES, INFER_SHAPES, OP_SHAPES, SHAPE_PRESETS, infer_table,
                                    machine_for, model_table, ops_summary, ops_table,
                                    overhead_table, run_infer_ops, run_model, run_model_infer,
                                    run_ops, run_overhead, write_outputs, write_partial)
from mmdcn_plugin.benchmark.floor import (ceiling_keys, floor_rows, floor_table,
                                          measure_ceilings, parse_ceilings)

DEFAULT_SHAPES = {'cpu': ['c3', 'c4', 'c5'], 'cuda': ['r50-c3c5']}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='cmd', required=True)
    ops = sub.add_parser('ops', help='time the op against a plain conv')
    ops.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    ops.add_argument('--dtype', choices=sorted(DTYPES), default='float32')
    ops.add_argument('--shapes', nargs='+', choices=sorted(OP_SHAPES) + sorted(SHAPE_PRESETS),
                     help='shapes or presets (default: c3 c4 c5 on the CPU, r50-c3c5 on '
                     'CUDA)')
    ops.add_argument('--candidates', nargs='+', help='subset to time (conv is always timed)')
    ops.add_argument('--repeat', type=int, default=7)
    ops.add_argument('--warmup', type=int, default=2)
    ops.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    ops.add_argument('--memory', action='store_true', help='also measure peak memory')
    ops.add_argument('--strict-fp32-conv', action='store_true',
                     help="CUDA float32: turn cuDNN's TF32 off, so the conv computes in strict "
                     'float32 as the matmuls of the deformable kernels do')
    ops.add_argument('--floor', action=argparse.BooleanOptionalAction, default=None,
                     help="give every row its floor at the machine's measured ceilings "
                     '(default: on CUDA)')
    ops.add_argument('--ceilings', nargs='+', metavar='K=V',
                     help='ceilings instead of measuring them: memory=TB/s and '
                     '<float16|bfloat16|tf32|float32|float64>=TFLOP/s')
    ops.add_argument('--out-dir', required=True)
    floor = sub.add_parser('floor', help='the least time of the conv and the op, untimed')
    floor.add_argument('--device', choices=['cpu', 'cuda'], default='cuda',
                       help='whose TF32 switches apply and, without --ceilings, where the '
                       'ceilings are measured (default: cuda)')
    floor.add_argument('--dtype', choices=sorted(DTYPES), default='float32')
    floor.add_argument('--shapes', nargs='+', choices=sorted(OP_SHAPES) + sorted(SHAPE_PRESETS),
                       default=['r50-c3c5'])
    floor.add_argument('--ceilings', nargs='+', metavar='K=V',
                       help='memory=TB/s and <precision>=TFLOP/s (default: measure them)')
    floor.add_argument('--out-dir', help='also write floor.json there')
    overhead = sub.add_parser('overhead', help="the op wrapper's cost per call over mmcv's")
    overhead.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    overhead.add_argument('--number', type=int, default=2000, help='calls per timed round')
    overhead.add_argument('--repeat', type=int, default=9, help='timed rounds (the min counts)')
    overhead.add_argument('--threads', type=int, default=1, help='torch threads (default: 1)')
    overhead.add_argument('--backward', action='store_true',
                          help='also time every row forward+backward')
    overhead.add_argument('--out-dir', required=True)
    infer = sub.add_parser('infer', help='time inference of the op under every runtime')
    infer.add_argument('--shapes', nargs='+', choices=sorted(INFER_SHAPES),
                       default=['c3', 'c4', 'c5'])
    infer.add_argument('--threads', type=int, default=2, help='threads of every runtime')
    infer.add_argument('--repeat', type=int, default=3)
    infer.add_argument('--warmup', type=int, default=1)
    infer.add_argument('--out-dir', required=True)
    model = sub.add_parser('model', help='time a detector against its baseline')
    model.add_argument('config', help="a config file, or mmdet::<path> for one of mmdet's")
    model.add_argument('--baseline', help='baseline config (default: CONFIG without DCN)')
    model.add_argument('--also', nargs='+', default=[],
                       help="more configs timed in the same rounds (e.g. mmdet's mmcv DCN "
                       'config)')
    model.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    model.add_argument('--amp', action='store_true',
                       help="mixed precision as mmdet's --amp (CUDA; training steps)")
    model.add_argument('--synthetic', type=int, nargs=2, metavar=('H', 'W'),
                       help="time a random batch of HxW images instead of the config's "
                       'training data (no dataset needed)')
    model.add_argument('--batch-size', type=int, default=2)
    model.add_argument('--iters', type=int, default=5)
    model.add_argument('--warmup', type=int, default=1)
    model.add_argument('--out-dir', required=True)
    model.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                       help='key=value overrides for every config (as in tools/train.py)')
    model.add_argument('--infer', action='store_true',
                       help='time inference of the backbone (--what) at full resolution '
                       'instead of training and test steps')
    model.add_argument('--what', choices=['backbone', 'backbone+neck'], default='backbone',
                       help='with --infer: the part timed (default: backbone)')
    model.add_argument('--shape', type=int, nargs=2, default=[800, 1216], metavar=('H', 'W'),
                       help='with --infer: the image size (default: 800 1216)')
    model.add_argument('--threads', type=int, default=2,
                       help='with --infer: torch threads (default: 2)')
    model.add_argument('--repeat', type=int, default=3,
                       help='with --infer: timed rounds after the warm-up (default: 3)')
    args = parser.parse_args(argv)
    for name in ('repeat', 'iters', 'batch_size', 'number'):
        if getattr(args, name, 1) < 1:
            parser.error(f'--{name.replace("_", "-")}: expected >= 1, got {getattr(args, name)}')
    if getattr(args, 'warmup', 0) < 0:
        parser.error(f'--warmup: expected >= 0, got {args.warmup}')
    if getattr(args, 'threads', 0) < 0:
        parser.error(f'--threads: expected >= 0, got {args.threads}')
    if args.cmd in ('ops', 'floor') and args.ceilings:
        try:
            args.ceilings = parse_ceilings(args.ceilings)
        except ValueError as e:
            parser.error(f'--{e}')
    if args.cmd == 'floor' and not args.ceilings and (
            args.device == 'cuda' and not torch.cuda.is_available()):
        parser.error('--ceilings: expected with --device cuda on a machine without CUDA '
                     '(nothing to measure them on)')
    if args.cmd == 'ops':
        if args.floor is None:
            args.floor = args.device == 'cuda' or bool(args.ceilings)
        if args.ceilings and not args.floor:
            parser.error('--ceilings: expected without --no-floor')
        if args.shapes is None:
            args.shapes = DEFAULT_SHAPES[args.device]
        if args.strict_fp32_conv and (args.device, args.dtype) != ('cuda', 'float32'):
            parser.error('--strict-fp32-conv: expected with --device cuda --dtype float32, got '
                         f'--device {args.device} --dtype {args.dtype}')
    if args.cmd == 'model':
        if not args.infer and args.what != 'backbone':
            parser.error('--what: expected with --infer only')
        if args.infer and (args.device != 'cpu' or args.amp or args.synthetic):
            parser.error('--device, --amp, --synthetic: expected without --infer (inference '
                         'timing runs on the CPU, on --shape)')
        if args.amp and args.device != 'cuda':
            parser.error(f'--amp: expected with --device cuda, got --device {args.device}')
        if args.infer and min(args.shape) < 1:
            parser.error(f'--shape: expected two positive ints, got {args.shape}')
        if args.synthetic and min(args.synthetic) < 32:
            parser.error(f'--synthetic: expected H and W >= 32, got {args.synthetic}')
    args.inference = args.cmd == 'infer' or (args.cmd == 'model' and args.infer)
    if args.inference and args.threads < 1:
        parser.error(f'--threads: expected >= 1 for inference timing, got {args.threads}')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.cmd in ('ops', 'overhead') and args.threads:
        torch.set_num_threads(args.threads)
    device = getattr(args, 'device', 'cpu')
    machine = machine_for(device, threads=args.threads if args.inference
                          else torch.get_num_threads())
    log(f'machine: {machine}')
    ceilings, extra = None, {}
    if args.cmd == 'floor' or getattr(args, 'floor', None):
        try:
            ceilings = args.ceilings or measure_ceilings(device, ceiling_keys(args.dtype),
                                                         log=log)
        except RuntimeError as e:  # e.g. out of memory: an op run's timings matter more
            if args.cmd == 'floor':
                raise
            log(f'ceilings not measured, so no floors: {type(e).__name__}: {e}')
    if ceilings is not None:
        extra = dict(ceilings=dataclasses.asdict(ceilings))
        log(ceilings.describe())
    if args.cmd == 'floor':
        rows = floor_rows(args.shapes, args.dtype, ceilings, device)
        print(f'machine: {machine}\n{ceilings.describe()}\n\n{floor_table(rows)}')
        if args.out_dir:
            os.makedirs(args.out_dir, exist_ok=True)
            with open(os.path.join(args.out_dir, 'floor.json'), 'w') as f:
                json.dump(dict(machine=machine, **extra, rows=rows), f, indent=2)
        return 0
    if args.cmd == 'ops':
        rows = run_ops(device=args.device, dtype=args.dtype, shapes=args.shapes,
                       candidates=args.candidates, repeat=args.repeat, warmup=args.warmup,
                       memory=args.memory, log=log, strict_fp32_conv=args.strict_fp32_conv,
                       ceilings=ceilings,
                       on_rows=lambda rows: write_partial(rows, args.out_dir, 'ops', machine,
                                                          extra))
        table, summary = ops_table(rows), ops_summary(rows)
    elif args.cmd == 'overhead':
        rows = run_overhead(device=args.device, number=args.number, rounds=args.repeat, log=log,
                            backward=args.backward)
        table, summary = overhead_table(rows), ''
    elif args.cmd == 'infer':
        rows = run_infer_ops(shapes=args.shapes, threads=args.threads, repeat=args.repeat,
                             warmup=args.warmup, log=log)
        table, summary = infer_table(rows, 'op'), ''
    elif args.infer:
        rows = run_model_infer(args.config, baseline=args.baseline, also=args.also,
                               what=args.what, shape=tuple(args.shape), threads=args.threads,
                               repeat=args.repeat, warmup=args.warmup,
                               cfg_options=args.cfg_options, log=log)
        table, summary = infer_table(rows, 'model'), ''
    else:
        rows = run_model(args.config, baseline=args.baseline, also=args.also,
                         batch_size=args.batch_size, iters=args.iters, warmup=args.warmup,
                         cfg_options=args.cfg_options, device=args.device, amp=args.amp,
                         synthetic=tuple(args.synthetic) if args.synthetic else None, log=log)
        table, summary = model_table(rows), ''
    # Inference rows follow the ops schema (candidate, median_ms, vs_conv).
    paths = write_outputs(rows, args.out_dir, 'ops' if args.inference else args.cmd, machine,
                          extra)
    print(f'<!-- {" ".join(sys.argv)} -->')
    print(f'machine: {machine}\n')
    if ceilings is not None:
        print(f'{ceilings.describe()}\n')
    print(table)
    if summary:
        print('\n' + summary)
    log(f"wrote {', '.join(os.path.basename(p) for p in paths)} to {args.out_dir}")
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'benchmark.py: error: {e}')
