"""`make demo`: the main job, end to end on the embedded dataset.

1. generate the synthetic COCO dataset into ``data/synthetic/`` if it is missing;
2. train the quick-start DCN detector (Faster R-CNN, narrow ResNet-50, DCNv2 in
   c3-c5) with ``tools/train.py`` — resumable: a killed demo continues from its last
   checkpoint when run again;
3. evaluate the final checkpoint with ``tools/test.py`` (MMDetection's COCO metric);
4. write the offset pictures with ``tools/visualize_offsets.py`` when that tool exists;
5. print the metrics and where everything went.
"""
import argparse
import glob
import os.path as osp
import re
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'quickstart',
                  'faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')


def step(msg):
    print(f'\n==> {msg}', flush=True)


def run(args):
    print('$ ' + ' '.join(osp.relpath(a, ROOT) if osp.isabs(a) else a for a in args),
          flush=True)
    # Stream the child's output (progress, ETA) while keeping it for the summary.
    lines = []
    with subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1) as child:
        for line in child.stdout:
            lines.append(line)
            if any(key in line for key in ('Epoch(', 'bbox_mAP', 'segm_mAP', 'Traceback',
                                           'Error:', 'generating', 'wrote', 'Saving')):
                print(line, end='', flush=True)
    if child.returncode != 0:
        sys.stdout.write(''.join(lines[-60:]))
        raise SystemExit(f'demo step failed (exit {child.returncode}): {" ".join(args)}')
    return ''.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-root', default=osp.join(ROOT, 'data', 'synthetic'))
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    parser.add_argument('--config', default=CONFIG)
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='extra key=value overrides passed to train and test')
    args = parser.parse_args(argv)
    start = time.time()
    data_root = osp.abspath(args.data_root)

    if not osp.isfile(osp.join(data_root, 'annotations', 'val.json')):
        step(f'generating the embedded dataset into {data_root}')
        run([osp.join(ROOT, 'tools', 'make_synthetic_coco.py'), '--out-dir', data_root])
    else:
        step(f'dataset found at {data_root}')

    overrides = ['--cfg-options',
                 f'train_dataloader.dataset.data_root={data_root}/',
                 f'val_dataloader.dataset.data_root={data_root}/',
                 f'test_dataloader.dataset.data_root={data_root}/',
                 f'val_evaluator.ann_file={data_root}/annotations/val.json',
                 f'test_evaluator.ann_file={data_root}/annotations/val.json',
                 *args.cfg_options]
    step(f'training {osp.relpath(args.config, ROOT)} (resumes if {args.work_dir} has a '
         'checkpoint)')
    run([osp.join(ROOT, 'tools', 'train.py'), args.config, '--work-dir', args.work_dir,
         '--resume', *overrides])
    last = osp.join(args.work_dir, 'last_checkpoint')
    with open(last) as f:
        ckpt = f.read().strip()

    step(f'evaluating {osp.relpath(ckpt, ROOT)} with tools/test.py (COCO metric)')
    out = run([osp.join(ROOT, 'tools', 'test.py'), args.config, ckpt, '--work-dir',
               osp.join(args.work_dir, 'test'), *overrides])
    metrics = dict(re.findall(r'coco/(\w+): (-?[0-9.]+)', out))

    pictures = []
    viz = osp.join(ROOT, 'tools', 'visualize_offsets.py')
    if osp.isfile(viz):
        step('drawing the learned offsets with tools/visualize_offsets.py')
        image = sorted(glob.glob(osp.join(data_root, 'images', 'val', '*.png')))[0]
        out_dir = osp.join(args.work_dir, 'offsets')
        run([viz, args.config, image, '--checkpoint', ckpt, '--out-dir', out_dir])
        pictures = sorted(glob.glob(osp.join(out_dir, '*.png')))

    step(f'done in {time.time() - start:.0f} s')
    for key in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'segm_mAP'):
        if key in metrics:
            print(f'  {key}: {metrics[key]}')
    print(f'  checkpoint: {ckpt}')
    for p in pictures:
        print(f'  offset picture: {p}')


if __name__ == '__main__':
    main()
