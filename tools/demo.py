#!/usr/bin/env python
"""`make demo`: plain vs deformable convolution, end to end on the embedded dataset.

1. generate the embedded dataset into ``data/synthetic/`` if it is missing (or holds
   other numbers of images than the quick-start config's ``num_train_images`` /
   ``num_val_images``);
2. train the plain-conv baseline and the DCNv2 detector with the same recipe
   (``configs/quickstart/``) through ``tools/train.py``, both at once with the cores
   shared between them (``--at-once 1``: one after the other); resumable: run the demo
   again after an interruption and each training continues from its last checkpoint;
3. evaluate both final checkpoints with ``tools/test.py`` (MMDetection's COCO metric);
4. count parameters and GFLOPs (DCN counted) as ``tools/get_flops.py`` does, and read
   the seconds per training iteration from the training logs;
5. print one table (both detectors and their difference) and each run's convergence
   test, and write the pictures: both detectors' detections side by side on the same val
   images, the convergence curves, and the DCN model's sampling points
   (``tools/visualize_offsets.py``).

The logic is :func:`mmdcn_plugin.comparison.run_demo`.
"""
import argparse
import os.path as osp

from mmdcn_plugin.comparison import run_demo

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-root', default=osp.join(ROOT, 'data', 'synthetic'))
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    parser.add_argument('--num-images', type=int, default=4,
                        help='val images in the side-by-side detection picture')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='extra key=value overrides passed to both trainings and tests')
    parser.add_argument('--at-once', type=int, default=2, choices=(1, 2),
                        help='detectors trained at the same time, sharing the cores '
                             '(default: 2)')
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error(f'--num-images: expected >= 1, got {args.num_images}')
    run_demo(args.data_root, args.work_dir, args.num_images, args.cfg_options, args.at_once)


if __name__ == '__main__':
    main()
