"""FLOPs and parameters of a detector, deformable convolutions counted.

Usage (from the repository root)::

    python tools/get_flops.py CONFIG [--shape H W] [--per-layer] [--max-depth D]

Builds the model of an MMDetection config (the plugin imported first, the config's
default scope set), feeds one random image of ``H x W`` (default 800 x 1333, as
MMDetection's own ``get_flops.py``; padded by the data preprocessor), runs the
detector in ``mode='tensor'`` and prints::

    Flops: <number> GFLOPs
    Params: <number> M

FLOPs are multiply-adds (MMEngine's convention); deformable layers count their
main conv, bilinear sampling, DCNv2 modulation and offset head (see
``docs/flops.md``).  ``--per-layer`` adds MMEngine's per-module table and one row
per deformable layer.  On a CPU the trace runs the model once: a full ResNet-50
DCNv2 Faster R-CNN at 800 x 1333 takes about 20 s on two cores; use ``--shape``
for a quicker look.
No dataset and no checkpoint are needed (the counts do not depend on weights,
except through the number of RoIs a two-stage detector keeps).
"""
import argparse
import sys


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Count the FLOPs (multiply-adds) and parameters of a detector, '
        'deformable convolutions included.')
    parser.add_argument('config', help='MMDetection config file')
    parser.add_argument('--shape', type=int, nargs=2, default=[800, 1333],
                        metavar=('H', 'W'),
                        help='input image height and width (default: 800 1333)')
    parser.add_argument('--per-layer', action='store_true',
                        help='also print a per-module table and the deformable layers')
    parser.add_argument('--max-depth', type=int, default=3,
                        help='module depth of the per-module table (default: 3)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        help='key=value overrides merged into the config')
    args = parser.parse_args(argv)
    if min(args.shape) < 1:
        parser.error(f'--shape must be two positive ints, got {args.shape}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmdcn_plugin.analysis import (deformable_layer_flops, detector_complexity_info,
                                       format_deformable_table)
    from mmdcn_plugin.apis import build_model_from_config

    model = build_model_from_config(args.config, cfg_options=args.cfg_options)
    info = detector_complexity_info(model, tuple(args.shape), show_table=args.per_layer,
                                    max_depth=args.max_depth)
    if args.per_layer:
        print(info['out_table'])
        rows = deformable_layer_flops(info['analyzer'])
        if rows:
            print('\nDeformable layers (multiply-adds):')
            print(format_deformable_table(rows))
        else:
            print('\nNo deformable layer in this model.')
    h, w = args.shape
    print(f'Input shape: {h} x {w} (padded by the data preprocessor)')
    print(f"Flops: {info['flops'] / 1e9:.4f} GFLOPs")
    print(f"Params: {info['params'] / 1e6:.4f} M")
    print('FLOPs are multiply-adds (MMEngine convention); deformable convolution '
          'counted as in docs/flops.md.')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'get_flops.py: error: {e}')
