"""Reliability of training runs: kill and resume, determinism (CPU)."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

import mmdcn_plugin  # noqa: F401  (loads MMEngine checkpoints under weights_only)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'quickstart',
                  'faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')
TRAIN = osp.join(ROOT, 'tools', 'train.py')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('rel')
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'make_synthetic_coco.py'),
                    '--out-dir', str(root / 'data'), '--num-train', '8', '--num-val', '2',
                    '--seed', '5', '--no-progress'], check=True, capture_output=True)
    return root / 'data'


def _options(data, max_epochs, deterministic=False, log_every_iter=False):
    opts = [f'train_dataloader.dataset.data_root={data}/',
            f'val_dataloader.dataset.data_root={data}/',
            f'test_dataloader.dataset.data_root={data}/',
            f'val_evaluator.ann_file={data}/annotations/val.json',
            f'test_evaluator.ann_file={data}/annotations/val.json',
            'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
            'val_dataloader.persistent_workers=False', 'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False',
            f'train_cfg.max_epochs={max_epochs}', f'train_cfg.val_interval={max_epochs}',
            'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=-1',
            'randomness.seed=0']
    if deterministic:
        opts.append('randomness.deterministic=True')
    if log_every_iter:
        opts.append('default_hooks.logger.interval=1')
    return ['--cfg-options', *opts]


def _env():
    return dict(os.environ, OMP_NUM_THREADS='1')


def _train(args, cwd, timeout=600):
    proc = subprocess.run([sys.executable, TRAIN, CONFIG, *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout + proc.stderr


def _weights(path):
    return torch.load(path, map_location='cpu')['state_dict']


def _last_logged_iter(work) -> int:
    """The last training iteration the runs in ``work`` logged (MMEngine's
    ``vis_data/scalars.json`` of each session); 0 before any."""
    import glob
    import json
    last = 0
    for path in glob.glob(str(work / '*' / 'vis_data' / 'scalars.json')):
        with open(path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:     # the line being written
                    continue
                if 'loss' in record:
                    last = max(last, int(record['iter']))
    return last


@pytest.mark.parametrize('max_epochs', [
    2,                                          # the short schedule `make test` runs
    pytest.param(6, marks=pytest.mark.slow),    # killed anywhere in a longer run
])
def test_sigkill_then_resume_continues_to_the_end(data, tmp_path, max_epochs):
    iters_per_epoch = 4
    work = tmp_path / 'killed'
    child = subprocess.Popen([sys.executable, TRAIN, CONFIG, '--work-dir', str(work),
                              *_options(data, max_epochs, deterministic=True,
                                        log_every_iter=True)],
                             cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    last = work / 'last_checkpoint'
    deadline = time.time() + 300
    # Kill in the middle of the second epoch: after its first iteration was logged (so
    # epoch 1's checkpoint was written, path and all, and the work since is lost).
    while (_last_logged_iter(work) <= iters_per_epoch and child.poll() is None
           and time.time() < deadline):
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    killed_at = time.time()
    # The kill landed mid-run: the process was still training, had trained past its
    # last checkpoint, and had not reached the end of the schedule.
    assert child.returncode == -signal.SIGKILL, 'the run ended before it could be killed'
    ckpt_before = open(last).read().strip()
    epoch_before = torch.load(ckpt_before, map_location='cpu')['meta']['epoch']
    logged = _last_logged_iter(work)
    assert epoch_before * iters_per_epoch < logged < max_epochs * iters_per_epoch, (
        f'the kill did not land mid-run: last checkpoint epoch {epoch_before}, last '
        f'logged iteration {logged} of {max_epochs * iters_per_epoch}')
    assert not (work / f'epoch_{max_epochs}.pth').exists()
    print(f'killed at iteration {logged}, {killed_at - osp.getmtime(ckpt_before):.2f} s '
          f'after {osp.basename(ckpt_before)} was written')
    # A kill in the middle of torch.save leaves the next checkpoint truncated (and
    # last_checkpoint still naming the previous one): --resume must skip it.
    partial = work / f'epoch_{epoch_before + 1}.pth'
    partial.write_bytes(open(ckpt_before, 'rb').read()[:1000])

    out = _train(['--work-dir', str(work), '--resume',
                  *_options(data, max_epochs, deterministic=True)], tmp_path)
    assert f'resumed epoch: {epoch_before}' in out
    assert partial.stat().st_size > 1000  # rewritten whole when that epoch ended
    final = torch.load(work / f'epoch_{max_epochs}.pth', map_location='cpu')
    assert final['meta']['epoch'] == max_epochs
    assert final['meta']['iter'] == max_epochs * iters_per_epoch
    # Optimizer state (AdamW's moments) and the schedulers came back and went on.
    state = next(iter(final['optimizer']['state'].values()))
    assert int(state['step']) == max_epochs * iters_per_epoch
    warmup, steps = final['param_schedulers']
    assert warmup['last_step'] == max_epochs * iters_per_epoch  # by iteration
    assert steps['last_step'] == max_epochs  # by epoch
    # The message hub kept the losses logged before the kill.
    history = final['message_hub']['log_scalars']['train/loss']
    assert len(history._log_history) == max_epochs * iters_per_epoch

    # Nothing was lost: the same run without the kill ends with the same weights.
    ref = tmp_path / 'uninterrupted'
    _train(['--work-dir', str(ref), *_options(data, max_epochs, deterministic=True)],
           tmp_path)
    resumed, straight = final['state_dict'], _weights(ref / f'epoch_{max_epochs}.pth')
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), key


def test_deterministic_runs_are_bitwise_identical(data, tmp_path):
    for name in ('a', 'b'):
        _train(['--work-dir', str(tmp_path / name), *_options(data, 2, deterministic=True)],
               tmp_path)
    a, b = _weights(tmp_path / 'a' / 'epoch_2.pth'), _weights(tmp_path / 'b' / 'epoch_2.pth')
    assert a.keys() == b.keys()
    changed = 0
    for key in a:
        assert torch.equal(a[key], b[key]), key
    first = _weights(tmp_path / 'a' / 'epoch_1.pth')
    changed = sum(not torch.equal(first[k], a[k]) for k in a)
    assert changed > 0  # training really moved the weights between the epochs


def _duplicated_image_set(data, out):
    """One training image listed twice: a global batch of two identical images.

    mmdet normalises each loss over the samples of a process; over two different
    images, the mean of two per-image losses (DDP) differs from one loss over both
    (one process) even with exact arithmetic.  With the same image twice both are
    equal, so what remains to compare is the distributed mechanics themselves:
    the sampler's split, gradient all-reduce, per-process BN.
    """
    import json
    import shutil
    shutil.copytree(data, out)
    ann = json.load(open(out / 'annotations' / 'train.json'))
    image = ann['images'][0]
    anns = [a for a in ann['annotations'] if a['image_id'] == image['id']]
    second = dict(image, id=image['id'] + 100000)
    dup = [dict(a, id=a['id'] + 100000, image_id=second['id']) for a in anns]
    ann['images'] = [image, second]
    ann['annotations'] = anns + dup
    json.dump(ann, open(out / 'annotations' / 'train.json', 'w'))
    return out


@pytest.mark.slow   # three trainings; `make test` runs DDP in test_tools_e2e.py
def test_two_process_ddp_matches_one_process(data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip('this checks the CPU (gloo) path')
    dup = _duplicated_image_set(data, tmp_path / 'dup')
    common = _options(dup, 1) + [
        'train_dataloader.dataset.pipeline.3.prob=0.0',       # no random flip
        'model.train_cfg.rpn.sampler.type=PseudoSampler',     # no random RoI/anchor draws
        'model.train_cfg.rcnn.sampler.type=PseudoSampler',
        # Plain SGD: AdamW's first step is ~lr * sign(g), which turns float noise in
        # near-zero gradients into full-size differences.
        'optim_wrapper.optimizer.type=SGD', 'optim_wrapper.optimizer.lr=1.0']  # x0.01 warm-up
    single = tmp_path / 'single'
    _train(['--work-dir', str(single), *common,
            'train_dataloader.batch_size=2'], tmp_path)
    dist = tmp_path / 'dist'
    env = dict(_env(), PYTHON=sys.executable, PORT='29533')
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), CONFIG, '2',
                           '--work-dir', str(dist), *common, 'train_dataloader.batch_size=1'],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    a, b = _weights(single / 'epoch_1.pth'), _weights(dist / 'epoch_1.pth')
    # Parameters, not BN running statistics: the unbiased running variance uses
    # n / (n - 1) with n = pixels in the process's batch, which differs by design.
    params = [k for k in a if 'running_' not in k and 'num_batches_tracked' not in k]
    worst = max((a[k] - b[k]).abs().max().item() for k in params)
    print(f'DDP parity: max |w_single - w_ddp| over {len(params)} parameters = {worst:.3e}')
    # The step was real: the same run with lr=0 (the initial weights) is far away.
    frozen = tmp_path / 'frozen'
    _train(['--work-dir', str(frozen), *common, 'train_dataloader.batch_size=2',
            'optim_wrapper.optimizer.lr=0.0'], tmp_path)
    w0 = _weights(frozen / 'epoch_1.pth')
    moved = max((a[k] - w0[k]).abs().max().item() for k in params)
    print(f'DDP parity: the step itself moved parameters by up to {moved:.3e}')
    # float32 all-reduce vs one process sums gradients in another order; the loss of
    # this sampler-free set-up is large (every anchor counts), so allow 0.5% of the step.
    assert worst <= 5e-3 * moved
