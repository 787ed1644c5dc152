"""Evaluate detectors on rotated, scaled or sheared copies of their test split.

Usage (from the repository root)::

    python tools/robustness.py CONFIG CHECKPOINT [CHECKPOINT ...] \\
        --transform rotate --values 0,30,60,90 --out-dir work_dirs/robustness \\
        [--cfg-options KEY=VALUE ...] [--min-visible 0.5] [--fill 128]

For each value, the config's test split (images and instance masks) is transformed
about the image centre, boxes are recomputed as the tight boxes of the transformed
masks, and each checkpoint is evaluated with MMDetection's COCO metric.  Writes
``OUT_DIR/robustness_<transform>.csv`` (``value, bbox_mAP, mAP50, mAP75,
n_instances``; a ``checkpoint`` column first with several checkpoints), ``.png`` (mAP
against the value, one line per checkpoint) and ``.json``.  The rules (instances
leaving the image, fill, ranges) are in ``docs/robustness.md``; the logic lives in
``mmdcn_plugin/robustness/``.
"""
import argparse
import re
import sys


def join_negative_values(argv):
    """``--values -30,0,30`` as ``--values=-30,0,30``: argparse would read a list that
    starts with a minus sign as an option and stop with 'expected one argument'."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == '--values' and i + 1 < len(argv) and re.match(r'-[\d.]', argv[i + 1]):
            out.append(f'--values={argv[i + 1]}')
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='mAP of detectors on geometrically transformed test splits.',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='MMDetection config (its test dataloader and '
                        'CocoMetric are used)')
    parser.add_argument('checkpoints', nargs='+', metavar='CHECKPOINT',
                        help='one or more checkpoints')
    parser.add_argument('--transform', required=True, help='rotate, scale or shear')
    parser.add_argument('--values', required=True, metavar='V1,V2,...',
                        help='comma-separated values: rotate in degrees (counter-clockwise), '
                        'scale > 0 (1 = unchanged), shear in degrees (-90 < v < 90)')
    parser.add_argument('--out-dir', required=True, help='where the CSV, plot and data go')
    parser.add_argument('--min-visible', type=float, default=None,
                        help='an instance with less than this fraction of its area inside '
                        'the transformed image becomes an ignore region (default: 0.5)')
    parser.add_argument('--fill', type=int, default=None,
                        help='grey level of the uncovered image area (default: 128)')
    parser.add_argument('--cache-dir', default=None,
                        help='transformed splits (default: OUT_DIR/data); reused when the '
                        'source and the rule are unchanged')
    parser.add_argument('--no-plot', action='store_true', help='skip the PNG')
    parser.add_argument('--verbose', action='store_true',
                        help="keep MMEngine's INFO logs of every test run")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (as in tools/test.py)')
    return parser.parse_args(join_negative_values(sys.argv[1:] if argv is None else argv))


def main(argv=None) -> dict:
    """Run the sweep; return :func:`mmdcn_plugin.robustness.robustness_sweep`'s result."""
    args = parse_args(argv)
    from mmdcn_plugin.robustness import FILL, MIN_VISIBLE, robustness_sweep
    result = robustness_sweep(
        args.config, args.checkpoints, args.transform, args.values, args.out_dir,
        cfg_options=args.cfg_options,
        min_visible=MIN_VISIBLE if args.min_visible is None else args.min_visible,
        fill=FILL if args.fill is None else args.fill, cache_dir=args.cache_dir,
        verbose=args.verbose, plot=not args.no_plot)
    print('\n'.join(p for p in (result['csv'], result['plot']) if p))
    return result


def run(argv=None) -> int:
    """The command line: a bad argument ends with one line naming it, and status 2."""
    try:
        main(argv)
    except (FileNotFoundError, ValueError) as e:
        print(f'robustness.py: error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(run())
