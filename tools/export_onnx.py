"""Export part of a detector with deformable convolutions to ONNX and check it.

Usage (from the repository root)::

    python tools/export_onnx.py CONFIG [--checkpoint CKPT]
        [--what backbone|backbone+neck|dense-model] [--shape H W] [--out FILE]
        [--opset N] [--deform-conv auto|native|gather] [--exporter torchscript|dynamo]
        [--atol A] [--threads T] [--repeat R]

Builds the model of an MMDetection config (random weights unless ``CKPT``) and exports
``--what`` on one random ``1 x 3 x H x W`` input (default 128 x 128; the batch axis
stays dynamic):

* ``backbone``, ``backbone+neck``: the feature maps;
* ``dense-model``: backbone, neck and the dense head (RetinaNet's, FCOS's, or a
  two-stage detector's RPN) up to its raw outputs, before decoding and NMS.

Every :class:`~mmdcn_plugin.layers.DeformableConv2d` becomes one standard ONNX
``DeformConv`` node (``--deform-conv native``; opset >= 19) or the pure-PyTorch
gather graph (``gather``, any opset); ``auto`` (the default) is native from opset 19.
``--opset`` defaults to the newest opset the installed onnx, onnxruntime and exporter
all support.  The tool then prints the number of ``DeformConv`` nodes (it must equal
the number of deformable layers, or 0 for the gather graph), the file size, the
largest difference between onnxruntime and PyTorch on the same input, and both
latencies (median of ``--repeat`` runs after a warm-up, ``--threads`` threads).

Exit status 1 when the node count is wrong or a difference exceeds ``--atol``
(default 1e-4); the file is kept.  Needs ``onnx`` and ``onnxruntime`` (and
``onnxscript`` for ``--exporter dynamo``): ``pip install -e '.[dev]'``.
"""
import argparse
import sys

from mmdcn_plugin.deploy import EXPORTERS, MODES, PARTS, export_model, report_lines


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export part of a detector (deformable convolutions as ONNX DeformConv) '
        'to ONNX and check it against PyTorch with onnxruntime.')
    parser.add_argument('config', help='MMDetection config file')
    parser.add_argument('--checkpoint', help='checkpoint to load (default: random weights)')
    parser.add_argument('--what', choices=PARTS, default='backbone',
                        help='what to export (default: backbone)')
    parser.add_argument('--shape', type=int, nargs=2, default=[128, 128], metavar=('H', 'W'),
                        help='height and width of the sample input (default: 128 128)')
    parser.add_argument('--out', help='ONNX file to write (default: <what>.onnx here, or '
                        'next to the checkpoint)')
    parser.add_argument('--opset', type=int, help='ONNX opset (default: the newest that '
                        'onnx, onnxruntime and the exporter support)')
    parser.add_argument('--deform-conv', choices=MODES, default='auto',
                        help='native: one DeformConv node per layer (opset >= 19); gather: '
                        'plain gathers (any opset); auto: native from opset 19 (default)')
    parser.add_argument('--exporter', choices=EXPORTERS, default='torchscript',
                        help="torch.onnx's TorchScript exporter (default) or its dynamo "
                        'exporter (needs onnxscript)')
    parser.add_argument('--atol', type=float, default=1e-4,
                        help='largest accepted absolute difference from PyTorch (default: 1e-4)')
    parser.add_argument('--threads', type=int,
                        help="threads for both runtimes' timing (default: torch's)")
    parser.add_argument('--repeat', type=int, default=3,
                        help='timed runs of each runtime after a warm-up (default: 3)')
    args = parser.parse_args(argv)
    if min(args.shape) < 1:
        parser.error(f'--shape: expected two positive ints, got {args.shape}')
    if not args.atol >= 0:
        parser.error(f'--atol: expected a number >= 0, got {args.atol}')
    if args.threads is not None and args.threads < 1:
        parser.error(f'--threads: expected a positive int, got {args.threads}')
    if args.repeat < 1:
        parser.error(f'--repeat: expected a positive int, got {args.repeat}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        done = export_model(args.config, checkpoint=args.checkpoint, what=args.what,
                            shape=tuple(args.shape), out=args.out, opset=args.opset,
                            deform_conv=args.deform_conv, exporter=args.exporter,
                            atol=args.atol, threads=args.threads, repeat=args.repeat)
    except (ImportError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f'export_onnx.py: error: {e}')
    print('\n'.join(report_lines(done)))
    if not done.ok:
        why = ([] if done.nodes_ok else ['the DeformConv node count is wrong'])
        why += ([] if done.numerics_ok else [f'onnxruntime differs from PyTorch by more '
                                             f'than --atol {args.atol:g}'])
        print(f"export_onnx.py: error: {' and '.join(why)} (see above); the file was kept at "
              f'{done.export.path}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
