"""GPU checks: they skip on machines without CUDA (CI has none)."""
import warnings

import pytest
import torch

from helpers import make_problem, output_and_grads
from mmdcn_plugin.ops import deform_conv2d
from mmdcn_plugin.ops.backends import mmcv_impl, resolve_backend

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


def _cuda(problem):
    return {k: (v.detach().cuda().requires_grad_() if isinstance(v, torch.Tensor) else v)
            for k, v in problem.items()}


@pytest.mark.parametrize('modulated', [False, True])
def test_cuda_backends_match_cpu_reference(modulated):
    problem = make_problem(modulated=modulated, offset_scale=3.0)
    ref_out, ref_grads = output_and_grads(lambda **kw: deform_conv2d(**kw, backend='torch'),
                                          problem)
    for backend in ('auto', 'fast', 'torch'):
        out, grads = output_and_grads(lambda **kw: deform_conv2d(**kw, backend=backend),
                                      _cuda(problem))
        assert torch.allclose(out.cpu(), ref_out, atol=1e-6)
        for name in ref_grads:
            assert torch.allclose(grads[name].cpu(), ref_grads[name], atol=1e-6), name


def test_auto_uses_mmcv_cuda_kernels():
    if not mmcv_impl.mmcv_cuda_available():
        pytest.skip('mmcv was built without CUDA')
    assert resolve_backend('auto', torch.device('cuda')) == 'mmcv'


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_cuda_autocast(dtype):
    problem = _cuda(make_problem(dtype=torch.float32))
    expected = deform_conv2d(**problem, backend='torch')
    with torch.autocast('cuda', dtype=dtype):
        out = deform_conv2d(**problem)
    assert torch.isfinite(out).all()
    assert torch.allclose(out.float(), expected, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize('amp', [False, True])
def test_deterministic_mode_warns_on_mmcv_cuda(monkeypatch, amp):
    if not mmcv_impl.mmcv_cuda_available():
        pytest.skip('mmcv was built without CUDA')
    import mmdcn_plugin.ops.deform_conv as op_module
    monkeypatch.setattr(op_module, '_warned_nondeterministic', False)  # warns once a process
    problem = _cuda(make_problem(dtype=torch.float32))
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


def test_mmcv_refuses_cuda_tensors_without_a_cuda_build():
    if mmcv_impl.mmcv_cuda_available() or not mmcv_impl.mmcv_ops_available():
        pytest.skip("needs mmcv's ops built without CUDA")
    with pytest.raises(RuntimeError, match=r"backend 'mmcv' does not run on cuda tensors"):
        deform_conv2d(**_cuda(make_problem(dtype=torch.float32)), backend='mmcv')
