"""Deciding whether mmcv has CUDA kernels must never take the process down.

With some source builds of mmcv its info functions (``get_compiling_cuda_version``,
``get_compiler_version``) end the process with a segmentation fault while its kernels
work (mmcv#1292; seen on the lent H200).  These tests replace those functions with one
that ends the process, or that records the call, and check that choosing a backend
never reaches them, on the CPU and with a GPU faked.
"""
import json
import os.path as osp
import subprocess
import sys
import warnings

import pytest
import torch

from helpers import ROOT, make_problem, on_fake_cuda, set_aside_backends_preferred_to_mmcv
from mmdcn_plugin.ops import deform_conv2d
from mmdcn_plugin.ops.backends import mmcv_impl, resolve_backend

needs_mmcv = pytest.mark.skipif(not mmcv_impl.mmcv_ops_available(),
                                reason="mmcv's compiled ops are not built")
CPU, CUDA = torch.device('cpu'), torch.device('cuda', 0)
INFO_FUNCTIONS = ('get_compiling_cuda_version', 'get_compiler_version')
# What mmcv 2.1 raises for a CUDA tensor when built without CUDA (DCNv1's own check
# in csrc/pytorch/deform_conv.cpp, the device registry in pytorch_device_registry.hpp).
NOT_BUILT = {'v1': 'DeformConv is not compiled with GPU support',
             'v2': 'modulated_deform_conv_forward_impl: implementation for device cuda:0 '
                   'not found.\n'}
CRASH_EXIT = 86

# Runs in a fresh interpreter: the info functions end it, as the segfault would.
_CRASHING_INFO = f'''
import os, sys
sys.path.insert(0, {osp.join(ROOT, 'tests')!r})
import mmcv._ext, mmcv.ops, mmcv.ops.info

def _crash(*args, **kwargs):
    os._exit({CRASH_EXIT})

for module in (mmcv._ext, mmcv.ops.info, mmcv.ops):
    for name in {INFO_FUNCTIONS!r}:
        setattr(module, name, _crash)
'''

_SELECT_BACKENDS = _CRASHING_INFO + '''
import json
import torch
import mmcv.ops
from helpers import PREFERRED_OVER_MMCV, make_problem, on_fake_cuda
from mmdcn_plugin.ops import available_backends, deform_conv2d
from mmdcn_plugin.ops.backends import BACKENDS, mmcv_impl, resolve_backend

CPU, CUDA = torch.device('cpu'), torch.device('cuda', 0)
report = {}


def on_a_faked_gpu(name):
    """resolve 'auto' and feed 'mmcv' a CUDA tensor; record what happened."""
    mmcv_impl.mmcv_cuda_available.cache_clear()
    entry = {'auto': resolve_backend('auto', CUDA), 'devices': list(mmcv_impl.mmcv_devices())}
    try:
        deform_conv2d(**on_fake_cuda(make_problem(dtype=torch.float32)), backend='mmcv')
        entry['mmcv'] = 'accepted'
    except RuntimeError as err:
        entry['mmcv'] = str(err)
    report[name] = entry


# This machine as it is.
problem = make_problem(dtype=torch.float32)
report['cpu'] = {'auto': resolve_backend('auto', CPU), 'available': available_backends(),
                 'devices': list(mmcv_impl.mmcv_devices()),
                 'auto_out': list(deform_conv2d(**problem).shape),
                 'mmcv_out': list(deform_conv2d(**problem, backend='mmcv').shape)}
torch.cuda.is_available = lambda: True
# What 'auto' takes on CUDA when mmcv cannot: Triton, when it imports, comes first.
for name in set(PREFERRED_OVER_MMCV) & set(BACKENDS):
    BACKENDS[name] = BACKENDS[name]._replace(available=lambda: False)
# A GPU with a CPU-only mmcv build (as this machine's is, unless it has a GPU).
mmcv_impl.mmcv_ext_has_gpu_code = lambda: False
on_a_faked_gpu('cpu_only_build')
# A GPU and an extension with GPU code; the CPU stands in for the GPU.
mmcv_impl.mmcv_ext_has_gpu_code = lambda: True
mmcv_impl._current_cuda_device = lambda: CPU
on_a_faked_gpu('kernels_run')


def not_built(*args, **kwargs):
    raise RuntimeError('DeformConv is not compiled with GPU support')


mmcv.ops.deform_conv2d = not_built
on_a_faked_gpu('kernels_not_built')
print('REPORT ' + json.dumps(report))
'''


def _run(script):
    proc = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode != CRASH_EXIT, (
        f"an mmcv info function was called (exit {CRASH_EXIT}):\n{proc.stderr[-3000:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@needs_mmcv
def test_choosing_a_backend_never_calls_mmcv_info_functions():
    """In a process where calling them ends it: the CPU path, and a faked GPU with a
    CPU-only mmcv, with working kernels, and with kernels that say 'not built'."""
    line = next(ln for ln in _run(_SELECT_BACKENDS).splitlines() if ln.startswith('REPORT '))
    report = json.loads(line[len('REPORT '):])
    assert report['cpu']['auto'] in ('cpp', 'fast')
    assert report['cpu']['available'][0] == 'auto' and 'mmcv' in report['cpu']['available']
    assert report['cpu']['auto_out'] == report['cpu']['mmcv_out'] == [2, 6, 3, 6]
    refused = ("backend 'mmcv' does not run on cuda tensors here (it runs on: ['cpu']")
    for case in ('cpu_only_build', 'kernels_not_built'):
        assert report[case]['auto'] == 'fast', case
        assert report[case]['devices'] == ['cpu'], case
        assert report[case]['mmcv'].startswith(refused), (case, report[case]['mmcv'])
    assert report['kernels_run'] == {'auto': 'mmcv', 'devices': ['cpu', 'cuda'],
                                     'mmcv': 'accepted'}
    if torch.version.cuda is None and torch.version.hip is None:
        # This machine's mmcv could not be built with CUDA: the real answer is no.
        assert report['cpu']['devices'] == ['cpu']


@needs_mmcv
def test_cuda_op_never_calls_mmcv_info_functions(device):
    """On a real GPU: the first CUDA forward and backward with the default backend."""
    if device.type != 'cuda':
        pytest.skip('a CUDA-only check: run with --device cuda (or MMDCN_TEST_DEVICE=cuda)')
    script = _CRASHING_INFO + '''
import torch
from helpers import make_problem
from mmdcn_plugin.ops import deform_conv2d
from mmdcn_plugin.ops.backends import mmcv_impl, resolve_backend
problem = make_problem(dtype=torch.float32, device='cuda')
with_cuda = mmcv_impl.mmcv_cuda_available()  # the probe, with the info functions armed
expected = deform_conv2d(**problem, backend='torch')
for backend in ['auto'] + (['mmcv'] if with_cuda else []):
    out = deform_conv2d(**problem, backend=backend)
    out.sum().backward()
    assert torch.allclose(out, expected, atol=1e-4), (backend, (out - expected).abs().max())
print('MMCV_CUDA', with_cuda, 'AUTO', resolve_backend('auto', torch.device('cuda')))
'''
    assert 'MMCV_CUDA ' in _run(script)


@pytest.fixture
def fresh_answer():
    """mmcv_cuda_available is cached once a process: start and leave it undecided."""
    mmcv_impl.mmcv_cuda_available.cache_clear()
    yield
    mmcv_impl.mmcv_cuda_available.cache_clear()


@pytest.fixture
def info_calls(monkeypatch):
    """mmcv's info functions, recording each call and answering like a CUDA build
    (what the old check would have believed)."""
    import mmcv.ops
    calls = []
    for name in INFO_FUNCTIONS:
        monkeypatch.setattr(mmcv.ops, name, lambda _name=name: calls.append(_name) or '12.1')
    return calls


@pytest.fixture
def mmcv_first(monkeypatch):
    set_aside_backends_preferred_to_mmcv(monkeypatch)


def _not_built(message):
    def kernel(*args, **kwargs):
        raise RuntimeError(message)
    return kernel


@needs_mmcv
@pytest.mark.parametrize('build', ['no GPU code in the extension', 'kernels say not built'])
def test_cpu_only_mmcv_is_refused_on_cuda_tensors(build, monkeypatch, fresh_answer,
                                                  info_calls, mmcv_first):
    import mmcv.ops
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(mmcv_impl, '_current_cuda_device', lambda: CPU)  # stands in
    if build == 'kernels say not built':
        monkeypatch.setattr(mmcv_impl, 'mmcv_ext_has_gpu_code', lambda: True)
        monkeypatch.setattr(mmcv.ops, 'deform_conv2d', _not_built(NOT_BUILT['v1']))
    else:
        monkeypatch.setattr(mmcv_impl, 'mmcv_ext_has_gpu_code', lambda: False)
    problem = on_fake_cuda(make_problem(dtype=torch.float32))
    with pytest.raises(RuntimeError, match=r"backend 'mmcv' does not run on cuda tensors here "
                                           r"\(it runs on: \['cpu'\]"):
        deform_conv2d(**problem, backend='mmcv')
    assert resolve_backend('auto', CUDA) == 'fast'
    assert info_calls == []


@needs_mmcv
def test_working_kernels_are_taken_on_cuda(monkeypatch, fresh_answer, info_calls, mmcv_first):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(mmcv_impl, '_current_cuda_device', lambda: CPU)  # real kernels
    monkeypatch.setattr(mmcv_impl, 'mmcv_ext_has_gpu_code', lambda: True)
    assert resolve_backend('auto', CUDA) == 'mmcv'
    assert mmcv_impl.mmcv_devices() == ('cpu', 'cuda')
    assert info_calls == []


def test_no_gpu_no_probe(monkeypatch, fresh_answer, info_calls):
    """Where torch sees no GPU, nothing of mmcv is asked or run."""
    def asked():
        raise AssertionError('probed without a GPU')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(mmcv_impl, 'mmcv_ext_has_gpu_code', asked)
    monkeypatch.setattr(mmcv_impl, 'mmcv_kernels_run_on', lambda device: asked())
    assert mmcv_impl.mmcv_cuda_available() is False
    assert mmcv_impl.mmcv_devices() == ('cpu',)
    assert info_calls == []


@needs_mmcv
def test_probe_runs_the_real_kernels():
    """The probe's calls fit this mmcv's signatures (here on its CPU kernels)."""
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert mmcv_impl.mmcv_kernels_run_on(CPU) is True


@needs_mmcv
@pytest.mark.parametrize('kernel', ['v1', 'v2'])
def test_probe_reads_mmcv_not_built_errors_quietly(kernel, monkeypatch):
    import mmcv.ops
    name = {'v1': 'deform_conv2d', 'v2': 'modulated_deform_conv2d'}[kernel]
    monkeypatch.setattr(mmcv.ops, name, _not_built(NOT_BUILT[kernel]))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert mmcv_impl.mmcv_kernels_run_on(CPU) is False


@needs_mmcv
def test_probe_warns_when_built_kernels_fail(monkeypatch):
    """A CUDA build for another GPU architecture: 'auto' falls back, and says why."""
    import mmcv.ops
    monkeypatch.setattr(mmcv.ops, 'modulated_deform_conv2d', _not_built(
        'CUDA error: no kernel image is available for execution on the device'))
    with pytest.warns(RuntimeWarning, match=r"failed \(RuntimeError: CUDA error: no kernel "
                                            r"image .*backend 'mmcv' is not used"):
        assert mmcv_impl.mmcv_kernels_run_on(CPU) is False


@needs_mmcv
def test_probe_warns_on_wrong_numbers(monkeypatch):
    import mmcv.ops
    monkeypatch.setattr(mmcv.ops, 'modulated_deform_conv2d',
                        lambda input, *args: torch.zeros_like(input))
    with pytest.warns(RuntimeWarning, match='computed wrong numbers'):
        assert mmcv_impl.mmcv_kernels_run_on(CPU) is False


@needs_mmcv
def test_gpu_code_is_read_from_the_extension_file(monkeypatch, tmp_path):
    import mmcv._ext
    if torch.version.cuda is None and torch.version.hip is None:
        assert mmcv_impl.mmcv_ext_has_gpu_code() is False  # a CPU-only torch: CPU-only mmcv
    for content, expected in ((b'\x7fELF\0.text\0.nv_fatbin\0', True),
                              (b'\x7fELF\0__hipRegisterFatBinary\0', True),
                              (b'\x7fELF\0.text\0.rodata\0', False)):
        fake = tmp_path / 'fake_ext.so'
        fake.write_bytes(content * 1000)
        monkeypatch.setattr(mmcv._ext, '__file__', str(fake))
        assert mmcv_impl.mmcv_ext_has_gpu_code() is expected, content
    monkeypatch.setattr(mmcv._ext, '__file__', str(tmp_path / 'missing.so'))
    assert mmcv_impl.mmcv_ext_has_gpu_code() is False
