"""Checks that only mean something on a GPU: run with ``--device cuda``.

The correctness tests (every backend against the loop reference and mmcv in float64,
the border rule, tiny maps, empty batches, hostile offsets, autocast, the layer) are
not repeated here: they take the ``device`` fixture in test_deform_conv_op.py and
test_layers.py and run on CUDA under ``--device cuda``.  What stays is what depends on
the machine: which backend 'auto' picks, mmcv's CUDA build, its atomicAdd warning.
"""
import warnings

import pytest
import torch

from helpers import make_problem, set_aside_backends_preferred_to_mmcv
from mmdcn_plugin.ops import deform_conv2d
from mmdcn_plugin.ops.backends import mmcv_impl, resolve_backend


@pytest.fixture(autouse=True)
def _on_cuda(device):
    if device.type != 'cuda':
        pytest.skip('a CUDA-only check: run with --device cuda (or MMDCN_TEST_DEVICE=cuda)')


def test_mmcv_cuda_answer_matches_the_build(device, monkeypatch):
    """The probe says yes exactly when mmcv's extension holds GPU code (a CUDA build):
    its kernels then ran on this GPU, and 'auto' takes them unless Triton is preferred."""
    if not mmcv_impl.mmcv_ops_available():
        pytest.skip("mmcv's compiled ops are not built")
    with_cuda = mmcv_impl.mmcv_ext_has_gpu_code()
    assert mmcv_impl.mmcv_cuda_available() is with_cuda
    assert mmcv_impl.mmcv_devices() == (('cpu', 'cuda') if with_cuda else ('cpu',))
    set_aside_backends_preferred_to_mmcv(monkeypatch)
    assert resolve_backend('auto', device) == ('mmcv' if with_cuda else 'fast')


@pytest.mark.parametrize('amp', [False, True])
def test_deterministic_mode_warns_on_mmcv_cuda(monkeypatch, amp, device):
    if not mmcv_impl.mmcv_cuda_available():
        pytest.skip('mmcv was built without CUDA')
    import mmdcn_plugin.ops.deform_conv as op_module
    monkeypatch.setattr(op_module, '_warned_nondeterministic', False)  # warns once a process
    problem = make_problem(dtype=torch.float32, device=device)
    torch.use_deterministic_algorithms(True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            with torch.autocast('cuda', dtype=torch.float16, enabled=amp):
                out = deform_conv2d(**problem, backend='mmcv')
    finally:
        torch.use_deterministic_algorithms(False)
    assert out.dtype == (torch.float16 if amp else torch.float32)
    assert any('atomicAdd' in str(w.message) for w in caught)


def test_mmcv_refuses_cuda_tensors_without_a_cuda_build(device):
    if mmcv_impl.mmcv_cuda_available() or not mmcv_impl.mmcv_ops_available():
        pytest.skip("needs mmcv's ops built without CUDA")
    with pytest.raises(RuntimeError, match=r"backend 'mmcv' does not run on cuda tensors"):
        deform_conv2d(**make_problem(dtype=torch.float32, device=device), backend='mmcv')
