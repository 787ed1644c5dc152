"""End to end through the command lines users run: generate -> train -> checkpoint -> test."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

import mmdcn_plugin  # noqa: F401  (loads MMEngine checkpoints under weights_only)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICK_DCN = osp.join(ROOT, 'configs', 'quickstart',
                     'faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')


def _run(args, cwd, timeout=600):
    # No PYTHONPATH: the tools import the installed package, as a user's would.
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('e2e')
    _run([osp.join(ROOT, 'tools', 'make_synthetic_coco.py'), '--out-dir',
          str(root / 'data'), '--num-train', '8', '--num-val', '4', '--seed', '3',
          '--no-progress'], cwd=root)
    return root


def _small(data_root, max_epochs):
    return ['--cfg-options', f'train_dataloader.dataset.data_root={data_root}/',
            f'val_dataloader.dataset.data_root={data_root}/',
            f'test_dataloader.dataset.data_root={data_root}/',
            f'val_evaluator.ann_file={data_root}/annotations/val.json',
            f'test_evaluator.ann_file={data_root}/annotations/val.json',
            'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
            f'train_cfg.max_epochs={max_epochs}', f'train_cfg.val_interval={max_epochs}',
            'default_hooks.checkpoint.interval=1']


def test_train_checkpoint_test_resume(tiny_data):
    data = tiny_data / 'data'
    work = tiny_data / 'work'
    out = _run([osp.join(ROOT, 'tools', 'train.py'), QUICK_DCN, '--work-dir', str(work),
                *_small(data, 1)], cwd=tiny_data)
    assert 'coco/bbox_mAP' in out
    ckpt = work / 'epoch_1.pth'
    assert ckpt.exists()
    # tools/test.py on the checkpoint (torch >= 2.6: weights_only loading).
    results = tiny_data / 'results.pkl'
    out = _run([osp.join(ROOT, 'tools', 'test.py'), QUICK_DCN, str(ckpt), '--work-dir',
                str(tiny_data / 'test'), '--out', str(results), *_small(data, 1)],
               cwd=tiny_data)
    assert 'coco/bbox_mAP' in out and results.exists()
    # --resume continues from the last checkpoint to the new end: the second run
    # loads epoch 1's state (2 iterations: 8 images, batch 4) and trains epoch 2 only,
    # where a run that did not resume would train both epochs from scratch.
    out = _run([osp.join(ROOT, 'tools', 'train.py'), QUICK_DCN, '--work-dir', str(work),
                '--resume', *_small(data, 2)], cwd=tiny_data)
    assert re.search(r'Auto resumed from the latest checkpoint \S*epoch_1\.pth',
                     out), out[-3000:]
    assert 'resumed epoch: 1, iter: 2' in out
    assert re.search(r'Epoch\(train\) +\[2\]\[2/2\]', out)
    assert not re.search(r'Epoch\(train\) +\[1\]', out), 'epoch 1 was trained again'
    final = torch.load(work / 'epoch_2.pth', map_location='cpu')
    assert (final['meta']['epoch'], final['meta']['iter']) == (2, 4)
    # The optimizer's state came back from epoch 1 and went on (AdamW counts steps).
    assert int(next(iter(final['optimizer']['state'].values()))['step']) == 4


def test_config_runs_from_mmdets_own_train_py(tiny_data):
    """custom_imports alone brings the plugin in (no wrapper)."""
    import mmdet
    mmdet_train = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'train.py')
    work = tiny_data / 'work_mmdet'
    out = _run([mmdet_train, QUICK_DCN, '--work-dir', str(work),
                *_small(tiny_data / 'data', 1)], cwd=tiny_data)
    assert 'coco/bbox_mAP' in out
    assert (work / 'epoch_1.pth').exists()


def test_dist_train_two_cpu_processes(tiny_data):
    """tools/dist_train.sh on a machine without GPUs: torchrun + gloo, 2 processes."""
    if __import__('torch').cuda.is_available():
        pytest.skip('this checks the CPU (gloo) path')
    work = tiny_data / 'work_dist'
    env = dict(os.environ, PYTHON=sys.executable, PORT='29517',
               OMP_NUM_THREADS='1')
    proc = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), QUICK_DCN, '2', '--work-dir',
         str(work), *_small(tiny_data / 'data', 1)],
        cwd=tiny_data, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert 'Distributed training: True' in out and 'GPU number: 2' in out
    assert (work / 'epoch_1.pth').exists()


EXAMPLE = osp.join(ROOT, 'docs', 'examples', 'my_project',
                   'retinanet_r50-dcn-backbone-and-head_fpn_1x_coco.py')


def test_user_project_config_trains_with_both_train_py(tiny_data):
    """docs/examples: an mmdet config + custom_imports, the layer in backbone and head."""
    import mmdet
    data = tiny_data / 'data'
    small = tiny_data / 'my_project_small.py'
    small.write_text(f"""
_base_ = {EXAMPLE!r}
classes = ('triangle', 'square', 'star', 'cross', 'l_shape', 'ring')
model = dict(backbone=dict(init_cfg=None), bbox_head=dict(num_classes=6))
pipe = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(96, 96), keep_ratio=True), dict(type='PackDetInputs')]
loader = dict(batch_size=4, num_workers=0, persistent_workers=False)
train_dataloader = dict(loader, dataset=dict(data_root='{data}/', metainfo=dict(classes=classes),
    ann_file='annotations/train.json', data_prefix=dict(img='images/train/'), pipeline=pipe))
val_dataloader = dict(loader, dataset=dict(data_root='{data}/', metainfo=dict(classes=classes),
    ann_file='annotations/val.json', data_prefix=dict(img='images/val/'), pipeline=pipe))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file='{data}/annotations/val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=1)
""")
    mmdet_train = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'train.py')
    for name, tool in (('ours', osp.join(ROOT, 'tools', 'train.py')), ('mmdet', mmdet_train)):
        out = _run([tool, str(small), '--work-dir', str(tiny_data / f'example_{name}')],
                   cwd=tiny_data)
        # Two iterations from scratch detect nothing yet; the val loop still runs.
        assert 'Epoch(train) [1][2/2]' in out and 'Epoch(val)' in out, out[-3000:]
        assert (tiny_data / f'example_{name}' / 'epoch_1.pth').exists()
