#!/usr/bin/env python
"""Pretrain a detector config's backbone on shape classification (the embedded data).

    python tools/pretrain_backbone.py CONFIG --out weights/NAME.pth [--data-dir D] \
        [--epochs E] [--num-train N] [--seed S] [--threads T]

The defaults reproduce the committed ``weights/`` file bit for bit on the same torch
build and thread count (the README of ``weights/`` gives the command and the SHA-256).
"""
import argparse
import os.path as osp
import sys

from mmdcn_plugin.pretrain import PRETRAIN_DEFAULTS, pretrain_backbone

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='detector config whose model.backbone is pretrained')
    p.add_argument('--out', required=True, help='the .pth to write (a .json goes beside it)')
    p.add_argument('--data-dir', default=osp.join(ROOT, 'data', 'pretrain'),
                   help='where the pretraining set is generated (reused when present)')
    for key, value in PRETRAIN_DEFAULTS.items():
        if key != 'deformation':
            p.add_argument('--' + key.replace('_', '-'), type=type(value), default=value)
    p.add_argument('--deformation', default=PRETRAIN_DEFAULTS['deformation'])
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = vars(parse_args(argv))
    config, out, data_dir = args.pop('config'), args.pop('out'), args.pop('data_dir')
    pretrain_backbone(config, out, data_dir, log=lambda m: print(m, flush=True), **args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
