"""RNGStateHook: what it saves, and when it restores (the kill-and-resume run that ends
bitwise equal to an uninterrupted one is tests/test_reliability.py)."""
import logging
import random

import numpy as np
import torch

from mmdcn_plugin.hooks import RNGStateHook


class Runner:
    def __init__(self, iter):
        self.iter = iter
        self.logger = logging.getLogger('rng-state-test')


def draws():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def seed(value):
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def saved_state():
    seed(1)
    checkpoint = {}
    RNGStateHook().before_save_checkpoint(Runner(8), checkpoint)
    return checkpoint, draws()


def test_a_resumed_run_draws_on_from_the_checkpoint():
    checkpoint, after_save = saved_state()
    hook = RNGStateHook()
    seed(2)
    hook.after_load_checkpoint(Runner(8), checkpoint)
    hook.before_train(Runner(8))
    assert draws() == after_save


def test_loading_to_test_or_fine_tune_leaves_the_generators_alone():
    checkpoint, after_save = saved_state()
    seed(2)
    fresh = draws()
    for runner in (Runner(0), None):  # load_from before training; tools/test.py
        hook = RNGStateHook()
        seed(2)
        hook.after_load_checkpoint(runner, checkpoint)
        if runner is not None:
            hook.before_train(runner)
        assert draws() == fresh != after_save


class OnTheGpu(torch.Tensor):
    """What MMEngine's resume hands over on a GPU machine: it loads with
    map_location='cuda', so the saved ByteTensors arrive there."""

    @property
    def device(self):
        return torch.device('cuda', 0)

    def cpu(self):
        return self.as_subclass(torch.Tensor)


def test_states_loaded_onto_the_gpu_go_back_to_the_cpu(monkeypatch, caplog):
    checkpoint, after_save = saved_state()
    state = checkpoint['mmdcn_rng_state']
    state['torch'] = state['torch'].as_subclass(OnTheGpu)
    given = []
    real = torch.set_rng_state
    monkeypatch.setattr(torch, 'set_rng_state', lambda s: (given.append(s.device.type),
                                                           real(s)))
    hook = RNGStateHook()
    hook.after_load_checkpoint(Runner(8), checkpoint)
    hook.before_train(Runner(8))
    assert given == ['cpu']
    assert draws() == after_save


def test_resuming_a_checkpoint_without_the_state_warns(caplog):
    hook = RNGStateHook()
    hook.after_load_checkpoint(Runner(8), {})
    with caplog.at_level(logging.WARNING, logger='rng-state-test'):
        hook.before_train(Runner(8))
    assert 'the checkpoint has no RNG state' in caplog.text


def test_resume_through_a_saved_file_on_the_test_device(tmp_path, device):
    """As MMEngine resumes: the checkpoint file loaded with map_location=the device (CUDA
    in the GPU check), then the CPU and the device's generators draw on as before."""
    seed(1)
    on_device = lambda: float(torch.rand((), device=device))  # noqa: E731
    on_device()  # a CUDA generator is saved once CUDA is in use
    checkpoint = {}
    RNGStateHook().before_save_checkpoint(Runner(8), checkpoint)
    torch.save(checkpoint, tmp_path / 'epoch_1.pth')
    expected = draws(), on_device()
    seed(2)
    hook = RNGStateHook()
    hook.after_load_checkpoint(Runner(8), torch.load(tmp_path / 'epoch_1.pth',
                                                     map_location=device, weights_only=False))
    hook.before_train(Runner(8))
    assert (draws(), on_device()) == expected
