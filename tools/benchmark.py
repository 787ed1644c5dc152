"""Benchmarks: the deformable-convolution op against a plain conv, and whole detectors.

    python tools/benchmark.py ops [--device cpu|cuda] [--dtype float32] --out-dir DIR
    python tools/benchmark.py model CONFIG [--baseline CONFIG] [--iters N] --out-dir DIR

``ops`` times every backend of the plugin, mmcv's raw kernels and a plain
``F.conv2d`` of the same shape (the floor), forward and forward+backward, on the
DCN shapes of ResNet-50's c3-c5 for a 400x667 image at batch 2 (DCNv2, 3x3).
Candidates are interleaved in every repetition (so drift hits all of them alike)
after a warm-up, and the median is reported.  ``--memory`` also measures the peak
memory of one forward+backward of each candidate in a fresh process.

``model`` times training iterations (``train_step``) and inference (``test_step``)
of a detector config and of its baseline: the same config with the backbone's
deformable layers removed, unless ``--baseline`` names another config.

    python tools/benchmark.py infer [--shapes c3 c4 c5] [--threads 2] --out-dir DIR
    python tools/benchmark.py model CONFIG --infer [--what backbone|backbone+neck]
                                    [--also CONFIG ...] [--threads 2] --out-dir DIR

``infer`` times inference of the DCNv2 op on ResNet-50's c3-c5 DCN shapes of a
batch-1 800x1333 image: onnxruntime's native ``DeformConv``, the plugin's ``cpp``
backend, mmcv's CPU kernel, the exported gather graph under onnxruntime, and a plain
conv (PyTorch's and onnxruntime's).  ``model --infer`` times a config's backbone (or
backbone + neck) against its plain-conv baseline on one 800x1216 image (batch 1).
Both use ``--threads`` threads (default 2) in every runtime and report the median of
``--repeat`` (default 3) interleaved rounds after a warm-up; the work is done by
:mod:`mmdcn_plugin.deploy.speed`.

All print a Markdown table and write ``results.csv``, ``results.json`` and a PNG
bar chart into ``--out-dir``.  The work is done by :mod:`mmdcn_plugin.benchmark`.
"""
import argparse
import sys

import torch
from mmengine.config import DictAction

from mmdcn_plugin.benchmark import (DTYPES, OP_SHAPES, model_table, ops_summary, ops_table,
                                    run_model, run_ops, write_outputs)
from mmdcn_plugin.deploy import INFER_SHAPES, infer_table, run_infer_ops, run_model_infer
from mmdcn_plugin.utils import machine_line


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='cmd', required=True)
    ops = sub.add_parser('ops', help='time the op against a plain conv')
    ops.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    ops.add_argument('--dtype', choices=sorted(DTYPES), default='float32')
    ops.add_argument('--shapes', nargs='+', choices=sorted(OP_SHAPES), default=['c3', 'c4', 'c5'])
    ops.add_argument('--candidates', nargs='+', help='subset to time (conv is always timed)')
    ops.add_argument('--repeat', type=int, default=7)
    ops.add_argument('--warmup', type=int, default=2)
    ops.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    ops.add_argument('--memory', action='store_true', help='also measure peak memory (CPU)')
    ops.add_argument('--out-dir', required=True)
    infer = sub.add_parser('infer', help='time inference of the op under every runtime')
    infer.add_argument('--shapes', nargs='+', choices=sorted(INFER_SHAPES),
                       default=['c3', 'c4', 'c5'])
    infer.add_argument('--threads', type=int, default=2, help='threads of every runtime')
    infer.add_argument('--repeat', type=int, default=3)
    infer.add_argument('--warmup', type=int, default=1)
    infer.add_argument('--out-dir', required=True)
    model = sub.add_parser('model', help='time a detector against its baseline')
    model.add_argument('config')
    model.add_argument('--baseline', help='baseline config (default: CONFIG without DCN)')
    model.add_argument('--batch-size', type=int, default=2)
    model.add_argument('--iters', type=int, default=5)
    model.add_argument('--warmup', type=int, default=1)
    model.add_argument('--out-dir', required=True)
    model.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                       help='key=value overrides for both configs (as in tools/train.py)')
    model.add_argument('--infer', action='store_true',
                       help='time inference of the backbone (--what) at full resolution '
                       'instead of training and test steps')
    model.add_argument('--what', choices=['backbone', 'backbone+neck'], default='backbone',
                       help='with --infer: the part timed (default: backbone)')
    model.add_argument('--shape', type=int, nargs=2, default=[800, 1216], metavar=('H', 'W'),
                       help='with --infer: the image size (default: 800 1216)')
    model.add_argument('--also', nargs='+', default=[],
                       help="with --infer: more configs timed in the same rounds (e.g. "
                       "mmdet's mmcv DCNv2 config)")
    model.add_argument('--threads', type=int, default=2,
                       help='with --infer: torch threads (default: 2)')
    model.add_argument('--repeat', type=int, default=3,
                       help='with --infer: timed rounds after the warm-up (default: 3)')
    args = parser.parse_args(argv)
    for name in ('repeat', 'iters', 'batch_size'):
        if getattr(args, name, 1) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got {getattr(args, name)}')
    if getattr(args, 'threads', 0) < 0:
        parser.error(f'--threads must be >= 0, got {args.threads}')
    if args.cmd == 'model' and not args.infer and (args.also or args.what != 'backbone'):
        parser.error('--also and --what: expected with --infer only')
    if args.cmd == 'model' and args.infer and min(args.shape) < 1:
        parser.error(f'--shape: expected two positive ints, got {args.shape}')
    args.inference = args.cmd == 'infer' or (args.cmd == 'model' and args.infer)
    if args.inference and args.threads < 1:
        parser.error(f'--threads: expected >= 1 for inference timing, got {args.threads}')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.cmd == 'ops' and args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_line(threads=args.threads if args.inference else torch.get_num_threads())
    log(f'machine: {machine}')
    if args.cmd == 'ops':
        rows = run_ops(device=args.device, dtype=args.dtype, shapes=args.shapes,
                       candidates=args.candidates, repeat=args.repeat, warmup=args.warmup,
                       memory=args.memory, log=log)
        table, summary = ops_table(rows), ops_summary(rows)
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
        rows = run_model(args.config, baseline=args.baseline, batch_size=args.batch_size,
                         iters=args.iters, warmup=args.warmup, cfg_options=args.cfg_options,
                         log=log)
        table, summary = model_table(rows), ''
    # Inference rows follow the ops schema (candidate, median_ms, vs_conv).
    write_outputs(rows, args.out_dir, 'ops' if args.inference else args.cmd, machine)
    print(f'<!-- {" ".join(sys.argv)} -->')
    print(f'machine: {machine}\n')
    print(table)
    if summary:
        print('\n' + summary)
    log(f'wrote results.csv, results.json, results.png to {args.out_dir}')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'benchmark.py: error: {e}')
