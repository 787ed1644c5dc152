"""Draw what the deformable layers of a detector do on one image.

Usage (from the repository root)::

    python tools/visualize_offsets.py CONFIG IMAGE --out-dir DIR \\
        [--checkpoint CKPT] [--layer NAME] [--points x,y ...] [--num-layers 3]

Writes ``<image>_sampling_points.png`` (where the last ``--num-layers`` stacked
deformable layers sample for a few activation points, traced back to the image,
next to the regular grid of standard convs), ``<image>_feature_response.png`` (a
deformable layer's response with and without its offsets) and, with a
checkpoint, ``<image>_detections.png`` (boxes with the offsets, and with every
layer's offsets zeroed).  Without a checkpoint the offset heads are zero-initialised,
so every offset is zero and the pictures say so.  The logic lives in
``mmdcn_plugin/visualization/offsets.py``.
"""
import argparse
import os.path as osp
import sys


def parse_point(text: str):
    try:
        x, y = (float(v) for v in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'a point must be "x,y" in image pixels (e.g. 64,40), got {text!r}') from None
    return x, y


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Visualise deformable convolution offsets on an image.')
    parser.add_argument('config', help='MMDetection config with deformable layers')
    parser.add_argument('image', help='image file')
    parser.add_argument('--checkpoint', default=None, help='checkpoint (default: none; '
                        'offsets are then all zero)')
    parser.add_argument('--layer', default=None,
                        help='deformable layer (module path) whose response is shown and '
                        'where the trace ends (default: the last one)')
    parser.add_argument('--points', nargs='+', type=parse_point, default=None,
                        metavar='X,Y', help='activation points in image pixels (default: '
                        'detection centres with a checkpoint, else the strongest responses)')
    parser.add_argument('--num-layers', type=int, default=3,
                        help='stacked deformable layers to trace (default: 3)')
    parser.add_argument('--num-points', type=int, default=3,
                        help='activation points picked automatically (default: 3)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='minimum score of drawn detections (default: 0.3)')
    parser.add_argument('--device', default='cpu', help='device (default: cpu)')
    parser.add_argument('--out-dir', required=True, help='where to write the PNGs')
    return parser.parse_args(argv)


def main(argv=None) -> list:
    """Run the tool; return the paths written."""
    args = parse_args(argv)
    from mmdcn_plugin.visualization import (init_model, read_image, save_figures,
                                            visualize_offsets)
    image = read_image(args.image)
    model = init_model(args.config, args.checkpoint, device=args.device)
    note = (f'checkpoint: {osp.basename(args.checkpoint)}' if args.checkpoint
            else 'no checkpoint: offset heads as initialised')
    figures = visualize_offsets(model, image, layer=args.layer, points=args.points,
                                num_layers=args.num_layers, num_points=args.num_points,
                                detections=args.checkpoint is not None,
                                score_thr=args.score_thr, note=note)
    stem = osp.splitext(osp.basename(args.image))[0]
    paths = save_figures(figures, args.out_dir, prefix=f'{stem}_')
    for path in paths:
        print(path)
    return paths


if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'visualize_offsets.py: error: {e}')
