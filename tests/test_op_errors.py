"""Malformed arguments are refused with errors naming the argument, before any kernel.

mmcv 2.1.0's CPU kernels kill the process (SIGFPE) on an offset with 17 channels for a
3x3 DCNv1 and read out of bounds on wrong-sized offsets and masks.
"""
import pytest
import torch

from helpers import make_problem
from mmdcn_plugin.ops import available_backends, deform_conv2d
from mmdcn_plugin.ops.backends import BACKENDS, mmcv_impl, resolve_backend
from mmdcn_plugin.ops.backends.cpp_impl import extension_available

BACKEND_NAMES = [b for b in available_backends() if b != 'auto']


def _base(**kw):
    p = make_problem(n=2, c_in=4, h=5, w=5, c_out=4, kernel=3, stride=1, padding=1,
                     groups=1, deform_groups=1, dtype=torch.float32, **kw)
    return {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in p.items()}


def _with(**changes):
    p = _base()
    p.update(changes)
    return p


CASES = [
    ('offset-17-channels', lambda: _with(offset=torch.zeros(2, 17, 5, 5), mask=None),
     ValueError, r'offset.shape\[1\] must be a positive multiple of 2 \* kernel_h \* kernel_w = 18.*got 17'),
    ('offset-batch', lambda: _with(offset=torch.zeros(3, 18, 5, 5)),
     ValueError, r'offset.shape\[0\] \(batch\) must equal input.shape\[0\]=2, got 3'),
    ('offset-spatial', lambda: _with(offset=torch.zeros(2, 18, 4, 5)),
     ValueError, r'offset spatial size must match the output size \(5, 5\).*got \(4, 5\)'),
    ('offset-deform-groups', lambda: _with(offset=torch.zeros(2, 54, 5, 5), mask=None),
     ValueError, r'input channels \(4\) must be divisible by deform_groups=3'),
    ('mask-channels', lambda: _with(mask=torch.zeros(2, 8, 5, 5)),
     ValueError, r'mask must have shape \[N, deform_groups \* kh \* kw, H_out, W_out\] = '
                 r'\[2, 9, 5, 5\], got \[2, 8, 5, 5\]'),
    ('mask-batch', lambda: _with(mask=torch.zeros(1, 9, 5, 5)),
     ValueError, r'mask must have shape .* = \[2, 9, 5, 5\], got \[1, 9, 5, 5\]'),
    ('mask-spatial', lambda: _with(mask=torch.zeros(2, 9, 5, 6)),
     ValueError, r'got \[2, 9, 5, 6\]'),
    ('groups-not-dividing', lambda: _with(weight=torch.zeros(4, 3, 3, 3)),
     ValueError, r'input channels \(4\) must be a multiple of weight.shape\[1\] \(3\)'),
    ('out-not-divisible-by-groups', lambda: _with(weight=torch.zeros(3, 2, 3, 3)),
     ValueError, r'weight.shape\[0\] \(output channels, 3\) must be divisible by groups=2'),
    ('kernel-0', lambda: _with(weight=torch.zeros(4, 4, 0, 3)),
     ValueError, r'kernel \(weight.shape\[2:\]\) must be at least 1x1, got 0x3'),
    ('bias-shape', lambda: _with(bias=torch.zeros(5)),
     ValueError, r'bias must have shape \[4\] \(weight.shape\[0\]\), got \[5\]'),
    ('input-3d', lambda: _with(input=torch.zeros(4, 5, 5)),
     ValueError, r'input must be a 4-D tensor, got shape \(4, 5, 5\)'),
    ('input-int', lambda: _with(input=torch.zeros(2, 4, 5, 5, dtype=torch.long)),
     TypeError, r'input must have a floating dtype, got torch.int64'),
    ('offset-not-tensor', lambda: _with(offset=[0.0]),
     TypeError, r'offset must be a torch.Tensor, got list'),
    ('stride-0', lambda: _with(stride=0),
     ValueError, r'stride must be >= 1 in both dimensions, got \(0, 0\)'),
    ('padding-negative', lambda: _with(padding=(1, -1)),
     ValueError, r'padding must be >= 0 in both dimensions, got \(1, -1\)'),
    ('dilation-float', lambda: _with(dilation=1.5),
     TypeError, r'dilation must be an int or a pair of ints, got 1.5'),
    ('empty-output', lambda: _with(padding=0, input=torch.zeros(2, 4, 2, 2)),
     ValueError, r'the output would be empty: input 2x2 with kernel 3x3'),
    ('dtype-mismatch', lambda: _with(offset=torch.zeros(2, 18, 5, 5, dtype=torch.float64)),
     TypeError, r'offset has dtype torch.float64 but input has torch.float32'),
]


class KernelReached(Exception):
    pass


@pytest.fixture
def no_kernel(monkeypatch):
    """Every backend's kernel replaced by a failure: validation must stop a call first.

    Validation does not depend on the backend (it runs before one is chosen), so each
    malformed case runs once, on whatever backend 'auto' picks.
    """
    def refuse(*args):
        raise KernelReached('a backend kernel was reached')

    for name, entry in list(BACKENDS.items()):
        monkeypatch.setitem(BACKENDS, name, entry._replace(fn=refuse))


def test_the_kernel_guard_catches_a_well_formed_call(no_kernel):
    with pytest.raises(KernelReached):
        deform_conv2d(**_base())


@pytest.mark.parametrize('name,make,exc,match', CASES, ids=[c[0] for c in CASES])
def test_bad_arguments_raise_before_the_kernel(no_kernel, name, make, exc, match):
    with pytest.raises(exc, match=match):
        deform_conv2d(**make())


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match=r"unknown deformable-convolution backend 'cudnn'"):
        deform_conv2d(**_base(), backend='cudnn')


def test_backend_from_environment(monkeypatch):
    monkeypatch.setenv('MMDCN_BACKEND', 'nonsense')
    with pytest.raises(ValueError, match=r"MMDCN_BACKEND \(environment\) 'nonsense'"):
        deform_conv2d(**_base())
    monkeypatch.setenv('MMDCN_BACKEND', 'torch')
    assert resolve_backend(None, torch.device('cpu')) == 'torch'
    monkeypatch.delenv('MMDCN_BACKEND')
    assert resolve_backend(None, torch.device('cpu')) in BACKEND_NAMES


def test_available_backends_lists_auto_and_torch():
    names = available_backends()
    assert names[0] == 'auto' and 'torch' in names


def test_auto_dispatch_on_cuda_is_explicit(monkeypatch):
    """No GPU here: fake the device and mmcv's CUDA build; the choice is what we test."""
    cuda = torch.device('cuda', 0)
    monkeypatch.setattr(mmcv_impl, 'mmcv_cuda_available', lambda: True)
    assert resolve_backend('auto', cuda) == 'mmcv'
    monkeypatch.setattr(mmcv_impl, 'mmcv_cuda_available', lambda: False)
    assert resolve_backend('auto', cuda) == 'fast'
    cpu_default = 'cpp' if extension_available() else 'fast'
    assert resolve_backend('auto', torch.device('cpu')) == cpu_default
    assert resolve_backend('torch', cuda) == 'torch'
    if extension_available():
        # The compiled kernels are CPU-only: never chosen for, nor accepted with, CUDA.
        with pytest.raises(RuntimeError, match=r"backend 'cpp' does not run on cuda"):
            resolve_backend('cpp', cuda)


def test_mmcv_takes_cuda_tensors_only_when_built_with_cuda(monkeypatch):
    """backend='mmcv' is checked against the tensor's device like every backend."""
    monkeypatch.setitem(BACKENDS, 'mmcv', BACKENDS['mmcv']._replace(available=lambda: True))
    cuda = torch.device('cuda', 0)
    monkeypatch.setattr(mmcv_impl, 'mmcv_cuda_available', lambda: False)
    with pytest.raises(RuntimeError, match=r"backend 'mmcv' does not run on cuda tensors here "
                                           r"\(it runs on: \['cpu'\]; .*built with CUDA"):
        resolve_backend('mmcv', cuda)
    assert resolve_backend('mmcv', torch.device('cpu')) == 'mmcv'
    monkeypatch.setattr(mmcv_impl, 'mmcv_cuda_available', lambda: True)
    assert resolve_backend('mmcv', cuda) == 'mmcv'


def test_tracing_uses_the_traceable_backend():
    """jit.trace of the default backend records the pure-PyTorch graph and matches eager."""
    problem = _base()
    args = (problem['input'], problem['offset'], problem['weight'], problem['mask'])

    def fn(x, off, w, m):
        return deform_conv2d(x, off, w, None, 1, 1, 1, m)

    traced = torch.jit.trace(fn, args, check_trace=False)
    assert torch.allclose(traced(*args), fn(*args), atol=1e-5)
    other = _base(seed=9)
    other_args = (other['input'], other['offset'], other['weight'], other['mask'])
    assert torch.allclose(traced(*other_args), fn(*other_args), atol=1e-5)
