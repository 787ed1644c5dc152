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
import os.path as osp
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


def build_detector(config: str, cfg_options=None):
    """The model of ``config`` in eval mode, on the CPU, SyncBN reverted."""
    import mmdcn_plugin  # noqa: F401  (registers the layers)
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS

    if not osp.isfile(config):
        raise FileNotFoundError(f'config file {config!r} does not exist')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    return model.eval()


def format_deformable_table(rows) -> str:
    """A text table of :func:`mmdcn_plugin.analysis.deformable_layer_flops`'s rows."""
    from mmengine.analysis.print_helper import _format_size
    keys = ('deform_conv', 'deform_sampling', 'deform_modulation', 'offset_head', 'total')
    header = ('deformable layer', 'main conv', 'sampling', 'modulation', 'offset head',
              'total')
    body = [(r['name'],) + tuple(_format_size(r[k]) for k in keys) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    lines = [' | '.join(str(x).ljust(w) for x, w in zip(header, widths)),
             '-+-'.join('-' * w for w in widths)]
    lines += [' | '.join(str(x).ljust(w) for x, w in zip(row, widths)) for row in body]
    return '\n'.join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmdcn_plugin.analysis import deformable_layer_flops, detector_complexity_info

    model = build_detector(args.config, args.cfg_options)
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
