"""Checkpoints written by MMEngine's Runner load under torch >= 2.6; code-running pickles do not."""
import os
import pickle
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import mmdcn_plugin  # noqa: F401  (registers the allowlist)
from mmdcn_plugin.checkpoint import history_buffer_getattr


class ToyDataset(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(4, generator=g), target=torch.randn(1, generator=g))


class ToyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, inputs, target, mode='loss'):
        # mmengine's BaseModel API is not needed: the Runner only calls train_step.
        return dict(loss=((self.linear(inputs) - target) ** 2).mean())


def _runner(work_dir, max_iters, resume=False, load_from=None):
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Wrapped(BaseModel):
        def __init__(self):
            super().__init__()
            self.toy = ToyModel()

        def forward(self, inputs, target, mode='loss'):
            return self.toy(inputs, target)

    return Runner(
        model=Wrapped(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyDataset(), sampler=dict(type='DefaultSampler',
                                                                 shuffle=False),
                              batch_size=2, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[3], by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=1000),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        resume=resume, load_from=load_from, default_scope='mmdet',
        experiment_name=f'toy_{max_iters}_{int(resume)}', randomness=dict(seed=0))


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('ckpt')
    _runner(work_dir, max_iters=4).train()
    path = work_dir / 'iter_4.pth'
    assert path.exists()
    return work_dir, path


def test_without_the_plugin_torch_refuses_runner_checkpoints(runner_checkpoint):
    """The problem being fixed: a fresh process without mmdcn_plugin cannot load it."""
    _, path = runner_checkpoint
    proc = subprocess.run([sys.executable, '-c', f'import torch; torch.load({str(path)!r})'],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert 'Unsupported global' in proc.stderr and 'HistoryBuffer' in proc.stderr


def test_fresh_process_with_the_plugin_loads_runner_checkpoints(runner_checkpoint):
    """As tools/test.py does: no HistoryBuffer exists yet when the checkpoint loads."""
    _, path = runner_checkpoint
    code = (f'import mmdcn_plugin, torch; c = torch.load({str(path)!r}); '
            "print(c['message_hub']['log_scalars']['train/loss'].mean())")
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    float(proc.stdout.strip().splitlines()[-1])


def test_allowlist_covers_everything_the_runner_writes(runner_checkpoint):
    _, path = runner_checkpoint
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []


def test_plain_torch_load_reads_runner_checkpoint(runner_checkpoint):
    _, path = runner_checkpoint
    ckpt = torch.load(path)  # weights_only=True is torch's default here
    assert ckpt['meta']['iter'] == 4
    buffers = ckpt['message_hub']['log_scalars']
    assert buffers['train/loss'].statistics('mean') == pytest.approx(
        buffers['train/loss'].mean())


def test_mmengine_loaders_read_runner_checkpoint(runner_checkpoint):
    from mmengine.runner import load_checkpoint
    _, path = runner_checkpoint
    model = nn.Module()
    model.toy = ToyModel()
    ckpt = load_checkpoint(model, str(path), map_location='cpu', strict=True)
    assert 'message_hub' in ckpt


def test_resume_restores_counters_and_finishes(runner_checkpoint, tmp_path):
    _, path = runner_checkpoint
    runner = _runner(tmp_path, max_iters=6, resume=True, load_from=str(path))
    runner.train()
    assert runner.iter == 6
    assert (tmp_path / 'iter_6.pth').exists()
    ckpt = torch.load(tmp_path / 'iter_6.pth')
    # The MultiStepLR milestone at iter 3 was passed before the resume: lr stays 0.001.
    assert ckpt['optimizer']['param_groups'][0]['lr'] == pytest.approx(0.001)
    assert 'momentum_buffer' in next(iter(ckpt['optimizer']['state'].values()))


class RunsCode:
    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_code_running_pickle_is_refused(tmp_path):
    from mmengine.runner import CheckpointLoader
    marker = tmp_path / 'pwned'
    evil = RunsCode()
    evil.marker = marker
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': {'x': evil}}, path)
    with pytest.raises(pickle.UnpicklingError, match='system'):
        torch.load(path)
    with pytest.raises(pickle.UnpicklingError, match='system'):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()


class GetattrAbuse:
    def __init__(self, target, name):
        self.target, self.name = target, name

    def __reduce__(self):
        return (getattr, (self.target, self.name))


@pytest.mark.parametrize('target,name', [
    ('HistoryBuffer', 'update'),
    ('HistoryBuffer', '__init__'),
    ('ndarray', 'tofile'),
])
def test_getattr_is_only_a_statistics_lookup(tmp_path, target, name):
    from mmengine.logging.history_buffer import HistoryBuffer
    import numpy as np
    obj = {'HistoryBuffer': HistoryBuffer, 'ndarray': np.ndarray}[target]
    path = tmp_path / 'abuse.pth'
    torch.save({'x': GetattrAbuse(obj, name)}, path)
    with pytest.raises(pickle.UnpicklingError, match='refuses getattr'):
        torch.load(path)


def test_history_buffer_getattr_allows_statistics_only():
    from mmengine.logging.history_buffer import HistoryBuffer
    assert history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError):
        history_buffer_getattr(os, 'system')


def test_truncated_checkpoint_error_names_the_file(runner_checkpoint, tmp_path):
    from mmengine.runner import CheckpointLoader
    _, path = runner_checkpoint
    data = path.read_bytes()
    truncated = tmp_path / 'epoch_3.pth'
    truncated.write_bytes(data[:len(data) // 2])  # killed half-way through torch.save
    with pytest.raises(RuntimeError, match=r'checkpoint .*epoch_3.pth \(\d+ bytes\) cannot be '
                                           r'read: .*probably truncated'):
        CheckpointLoader.load_checkpoint(str(truncated), map_location='cpu')
    # A complete one still loads through the same loader.
    assert CheckpointLoader.load_checkpoint(str(path), map_location='cpu')['meta']['iter'] == 4
