"""The functional op: every backend against the loop reference and mmcv, in float64.

The correctness tests run on the ``device`` fixture (``--device cuda`` on a GPU): the
problem is made on the CPU, the backend runs on the device, and the loop reference and
mmcv's raw kernels run on the CPU copy.
"""
import warnings

import pytest
import torch
import torch.nn.functional as F

import mmdcn_plugin.ops.deform_conv as op_module
from helpers import (backends_on, make_problem, on_device, on_fake_cuda, output_and_grads,
                     skip_unless_runs_on, tensors_of)
from mmdcn_plugin.ops import (available_backends, deform_conv2d, deform_conv2d_reference,
                              inside_image, sampling_points)
from mmdcn_plugin.ops.backends import BACKENDS, mmcv_function, mmcv_impl

HAS_MMCV = mmcv_impl.mmcv_ops_available()
needs_mmcv = pytest.mark.skipif(not HAS_MMCV, reason="mmcv's compiled ops are not built")
# Collected from what is built here; each test skips those that do not take `device` tensors.
BACKEND_NAMES = [b for b in available_backends() if b != 'auto']

# Odd geometries: non-square kernels, strides, paddings, dilations, conv groups,
# deform groups, DCNv1 and DCNv2, with and without bias.
GEOMETRIES = {
    'k3x2-s2x1-g2-dg2-v2': dict(kernel=(3, 2), stride=(2, 1), padding=(1, 0), groups=2,
                               deform_groups=2),
    'k3-d2-p2-dg3-v1': dict(c_in=6, c_out=4, kernel=3, stride=1, padding=2, dilation=2,
                           groups=1, deform_groups=3, modulated=False),
    'k1-v2-nobias': dict(kernel=1, stride=1, padding=0, groups=1, deform_groups=1,
                         bias=False),
    'k2x3-s1x2-d(2,1)-v1-g2': dict(c_in=4, c_out=2, kernel=(2, 3), stride=(1, 2),
                                   padding=(0, 1), dilation=(2, 1), groups=2,
                                   deform_groups=1, modulated=False),
    'odd-batch-3': dict(n=3, c_in=3, c_out=3, kernel=3, stride=1, padding=1, groups=3,
                        deform_groups=1),
}


def _close(a, b, tol=1e-6):
    a, b = a.cpu(), b.cpu()
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=tol, rtol=tol), (a - b).abs().max().item()


def _op(backend):
    return lambda **kw: deform_conv2d(**kw, backend=backend)


def _assert_matches(result, reference, device, tol=1e-6, grad_tol=None):
    """``result`` (output, gradients) was computed on ``device`` and equals ``reference``."""
    (out, grads), (ref_out, ref_grads) = result, reference
    assert out.device.type == device.type
    _close(out, ref_out, tol)
    for name in ref_grads:
        assert grads[name].device.type == device.type, name
        _close(grads[name], ref_grads[name], grad_tol or tol)


@pytest.mark.parametrize('geometry', list(GEOMETRIES), ids=list(GEOMETRIES))
@pytest.mark.parametrize('backend', BACKEND_NAMES)
def test_backend_matches_loop_reference(backend, geometry, device):
    skip_unless_runs_on(backend, device)
    problem = make_problem(**GEOMETRIES[geometry])
    reference = output_and_grads(deform_conv2d_reference, problem)
    _assert_matches(output_and_grads(_op(backend), on_device(problem, device)), reference,
                    device)


@needs_mmcv
@pytest.mark.parametrize('geometry', list(GEOMETRIES), ids=list(GEOMETRIES))
@pytest.mark.parametrize('backend', [b for b in BACKEND_NAMES if b != 'mmcv'])
def test_backend_matches_mmcv_kernels(backend, geometry, device):
    """Output and all five gradients equal mmcv's own (CPU) kernels in float64."""
    from mmcv.ops import deform_conv2d as mmcv_v1, modulated_deform_conv2d as mmcv_v2

    skip_unless_runs_on(backend, device)
    problem = make_problem(**GEOMETRIES[geometry], offset_scale=3.0, seed=5)
    groups = problem['input'].shape[1] // problem['weight'].shape[1]
    deform_groups = problem['offset'].shape[1] // (2 * problem['weight'][0, 0].numel())

    def mmcv_raw(input, offset, weight, bias, stride, padding, dilation, mask):
        if mask is None:
            out = mmcv_v1(input, offset, weight, stride, padding, dilation, groups,
                          deform_groups, False, input.shape[0])
            return out if bias is None else out + bias.view(1, -1, 1, 1)
        return mmcv_v2(input, offset, mask, weight, bias, stride, padding, dilation, groups,
                       deform_groups)

    reference = output_and_grads(mmcv_raw, problem)
    _assert_matches(output_and_grads(_op(backend), on_device(problem, device)), reference,
                    device)


def _border_problem(points, h=4, w=5, modulated=False):
    """One 1x1 kernel, one output pixel per sampling point; points as (y, x) pairs.

    With a 1x1 kernel and no padding, output pixel (0, j) samples (0 + dy, j + dx);
    we use a 1 x len(points) output row so each point is its own output.
    """
    n = len(points)
    x = torch.arange(h * w, dtype=torch.float64).view(1, 1, h, w) ** 1.5
    x = x.expand(n, 1, h, w).contiguous().requires_grad_()
    off = torch.zeros(n, 2, h, w, dtype=torch.float64)
    for i, (py, px) in enumerate(points):
        off[i, 0] = py - torch.arange(h, dtype=torch.float64).view(h, 1)
        off[i, 1] = px - torch.arange(w, dtype=torch.float64).view(1, w)
    off.requires_grad_()
    weight = torch.ones(1, 1, 1, 1, dtype=torch.float64, requires_grad=True)
    mask = (torch.full((n, 1, h, w), 0.7, dtype=torch.float64, requires_grad=True)
            if modulated else None)
    return dict(input=x, offset=off, weight=weight, bias=None, stride=1, padding=0,
                dilation=1, mask=mask)


# Points exactly on and around the borders of a 4x5 map: -1 (invalid: zero value
# and zero coordinate gradient in mmcv), 0 and interior integers (slope towards
# floor + 1), H - 1 and H - 0.5 (one corner outside), H (invalid).
BORDER_POINTS = [(-1.0, 2.0), (2.0, -1.0), (-0.5, 2.0), (0.0, 0.0), (1.0, 3.0), (3.0, 2.0),
                 (3.5, 1.0), (2.0, 4.5), (4.0, 2.0), (2.0, 5.0), (-1.0, -1.0), (3.0, 4.0)]


@pytest.mark.parametrize('modulated', [False, True])
@pytest.mark.parametrize('backend', BACKEND_NAMES)
def test_border_rule_matches_reference(backend, modulated, device):
    skip_unless_runs_on(backend, device)
    problem = _border_problem(BORDER_POINTS, modulated=modulated)
    reference = output_and_grads(deform_conv2d_reference, problem)
    _assert_matches(output_and_grads(_op(backend), on_device(problem, device)), reference,
                    device)


@needs_mmcv
@pytest.mark.parametrize('modulated', [False, True])
def test_border_rule_matches_mmcv(modulated, device):
    from mmcv.ops import deform_conv2d as mmcv_v1, modulated_deform_conv2d as mmcv_v2
    problem = _border_problem(BORDER_POINTS, modulated=modulated)

    def mmcv_raw(input, offset, weight, bias, stride, padding, dilation, mask):
        if mask is None:
            return mmcv_v1(input, offset, weight, 1, 0, 1, 1, 1, False, input.shape[0])
        return mmcv_v2(input, offset, mask, weight, None, 1, 0, 1, 1, 1)

    reference = output_and_grads(mmcv_raw, problem)
    for backend in backends_on(device):
        _assert_matches(output_and_grads(_op(backend), on_device(problem, device)), reference,
                        device)


def test_border_rule_pinned_values(device):
    """The coordinate gradient at the border, written out by hand."""
    h, w = 4, 5
    problem = on_device(_border_problem(BORDER_POINTS, h, w), device)
    img = problem['input'][0, 0].detach().cpu()
    out = deform_conv2d(**problem, backend='torch')
    (grad_off,) = torch.autograd.grad(out.sum(), [problem['offset']])
    # Every output pixel of sample i samples the same point; take pixel (0, 0).
    dy = grad_off[:, 0, 0, 0].cpu()
    dx = grad_off[:, 1, 0, 0].cpu()
    out = out.cpu()
    # y == -1 exactly: mmcv says zero value and zero gradient, although a naive
    # bilinear has slope img[0, x] there.
    assert out[0, 0, 0, 0] == 0 and dy[0] == 0 and dx[0] == 0
    assert out[1, 0, 0, 0] == 0 and dy[1] == 0 and dx[1] == 0
    # Interior integer point (1, 3): the slope towards floor + 1.
    assert dy[4] == pytest.approx(float(img[2, 3] - img[1, 3]))
    assert dx[4] == pytest.approx(float(img[1, 4] - img[1, 3]))
    # y == H - 1 (3, 2): the next row is outside and counts as 0.
    assert dy[5] == pytest.approx(float(-img[3, 2]))
    # y == H: outside, zero gradient.
    assert out[8, 0, 0, 0] == 0 and dy[8] == 0
    # A naive grid_sample version disagrees at y == -1 (this is what the rule is about):
    # its y-gradient there is the slope towards row 0, not zero.
    grid = torch.tensor([[[[2.0 / (w - 1) * 2 - 1, -1.0 / (h - 1) * 2 - 1]]]],
                        dtype=torch.float64, requires_grad=True)
    naive = F.grid_sample(img.view(1, 1, h, w), grid, mode='bilinear', padding_mode='zeros',
                          align_corners=True)
    (naive_grad,) = torch.autograd.grad(naive.sum(), [grid])
    assert naive_grad[0, 0, 0, 1] != 0


@pytest.mark.parametrize('modulated', [False, True])
def test_gradcheck_torch_backend(modulated, device):
    problem = make_problem(n=1, c_in=2, h=4, w=5, c_out=2, kernel=(2, 3), stride=1,
                           padding=1, groups=1, deform_groups=2, modulated=modulated,
                           offset_scale=0.7, seed=3, device=device)
    names, tensors = tensors_of(problem)

    def fn(*ts):
        kw = dict(problem, **dict(zip(names, ts)))
        return deform_conv2d(**kw, backend='torch')

    assert torch.autograd.gradcheck(fn, tuple(tensors), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize('backend', BACKEND_NAMES)
@pytest.mark.parametrize('modulated', [False, True])
def test_empty_batch_goes_to_the_pure_path(backend, modulated, monkeypatch, device):
    """Whatever backend is asked for, an empty batch is served by 'torch' (the compiled
    kernels do not all take one): the right shape, and zero gradients."""
    skip_unless_runs_on(backend, device)
    called = []
    for name, entry in list(BACKENDS.items()):
        def spy(*args, _name=name, _fn=entry.fn):
            called.append(_name)
            return _fn(*args)
        monkeypatch.setitem(BACKENDS, name, entry._replace(fn=spy))
    problem = make_problem(n=0, modulated=modulated, device=device)
    out = deform_conv2d(**problem, backend=backend)
    assert called == ['torch']
    assert out.shape == (0, 6, 3, 6) and out.device.type == device.type
    out.sum().backward()
    assert problem['weight'].grad is not None
    assert torch.count_nonzero(problem['weight'].grad) == 0
    assert problem['input'].grad.shape == problem['input'].shape


@pytest.mark.parametrize('backend', BACKEND_NAMES)
def test_non_contiguous_inputs(backend, device):
    skip_unless_runs_on(backend, device)
    problem = make_problem(seed=7)
    expected = deform_conv2d_reference(**problem)
    nc = on_device(problem, device)
    # Same values, other strides: channels-last input, transposed-then-back offset.
    nc['input'] = nc['input'].detach().to(memory_format=torch.channels_last)
    nc['offset'] = nc['offset'].detach().transpose(2, 3).contiguous().transpose(2, 3)
    nc['mask'] = nc['mask'].detach()[:, :, :, :].transpose(0, 1).contiguous().transpose(0, 1)
    nc['weight'] = nc['weight'].detach().permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert not nc['offset'].is_contiguous() and not nc['weight'].is_contiguous()
    _close(deform_conv2d(**nc, backend=backend), expected)


@pytest.mark.parametrize('backend', BACKEND_NAMES)
@pytest.mark.parametrize('modulated', [False, True])
def test_map_smaller_than_kernel(backend, modulated, device):
    """1x1 and 2x1 maps with a padded 3x3 kernel (c5 of small images)."""
    skip_unless_runs_on(backend, device)
    for h, w in ((1, 1), (2, 1)):
        problem = make_problem(n=2, c_in=2, h=h, w=w, c_out=2, kernel=3, stride=1, padding=1,
                               groups=1, deform_groups=1, modulated=modulated)
        reference = output_and_grads(deform_conv2d_reference, problem)
        _assert_matches(output_and_grads(_op(backend), on_device(problem, device)), reference,
                        device)


@pytest.mark.parametrize('backend', BACKEND_NAMES)
@pytest.mark.parametrize('modulated', [False, True])
def test_batch_sizes_never_refused(backend, modulated, device):
    """mmcv's DCNv1 asserts batch % im2col_step == 0 (33 with a step of 32)."""
    skip_unless_runs_on(backend, device)
    problem = make_problem(n=33, c_in=2, h=3, w=3, c_out=2, kernel=3, stride=1, padding=1,
                           groups=1, deform_groups=1, modulated=modulated,
                           dtype=torch.float32, device=device)
    out = deform_conv2d(**problem, backend=backend)
    ref = deform_conv2d(**problem, backend='torch')
    assert out.shape == (33, 2, 3, 3)
    assert torch.allclose(out, ref, atol=1e-5)


def test_im2col_step_divides_batch():
    for batch in (1, 2, 31, 32, 33, 64, 97, 128):
        step = mmcv_function.im2col_step_for(batch)
        assert batch % step == 0 and 1 <= step <= 32
    assert mmcv_function.im2col_step_for(33) == 11


@pytest.mark.parametrize('backend', BACKEND_NAMES)
@pytest.mark.parametrize('value', [1e30, -1e30, float('inf'), float('-inf'), float('nan'), 1e6])
def test_hostile_offsets(backend, value, device):
    """Huge, infinite and NaN offsets sample zeros: finite output, no crash."""
    skip_unless_runs_on(backend, device)
    problem = make_problem(dtype=torch.float32, seed=2)
    with torch.no_grad():
        problem['offset'][:, ::3] = value
    out, grads = output_and_grads(_op(backend), on_device(problem, device))
    assert out.device.type == device.type
    assert torch.isfinite(out).all()
    for name, g in grads.items():
        assert torch.isfinite(g).all(), name
    # Points thrown out of the image contribute exactly nothing, as in the reference.
    ref = deform_conv2d_reference(**problem)
    assert torch.allclose(out.cpu(), ref, atol=1e-4)


# The amp dtypes training uses: bfloat16 on the CPU; float16 (--amp) and bfloat16 on CUDA.
LOW_PRECISION = {'cpu': (torch.bfloat16,), 'cuda': (torch.float16, torch.bfloat16)}


def test_low_precision_and_autocast(device):
    problem = make_problem(dtype=torch.float32, seed=4, device=device)
    expected = deform_conv2d(**problem, backend='torch')
    for dtype in LOW_PRECISION[device.type]:
        with torch.autocast(device.type, dtype=dtype):
            for backend in backends_on(device):
                out = deform_conv2d(**problem, backend=backend)
                assert torch.isfinite(out).all()
                # float32 inside autocast, but the autocast dtype with triton (fp16 and
                # bf16) and with mmcv's kernels on CUDA (fp16).
                tol = 5e-2 if out.dtype in (torch.float16, torch.bfloat16) else 2e-2
                assert torch.allclose(out.float(), expected, atol=tol, rtol=tol), backend
                out.float().sum().backward()
        for backend in backends_on(device):
            low = {k: (v.detach().to(dtype) if isinstance(v, torch.Tensor) else v)
                   for k, v in problem.items()}
            out = deform_conv2d(**low, backend=backend)
            assert out.dtype == dtype
            assert torch.allclose(out.float(), expected, atol=0.25, rtol=0.05), backend


@pytest.mark.parametrize('backend', BACKEND_NAMES)
def test_zero_offsets_float32_match_reference_slopes(backend, device):
    """A fresh layer: every point on an integer pixel, where the slope rule decides."""
    skip_unless_runs_on(backend, device)
    problem = make_problem(n=2, c_in=4, h=7, w=11, c_out=3, kernel=3, stride=1, padding=1,
                           groups=1, deform_groups=2, dtype=torch.float32)
    problem['offset'] = torch.zeros_like(problem['offset']).requires_grad_()
    reference = output_and_grads(deform_conv2d_reference, problem)
    _assert_matches(output_and_grads(_op(backend), on_device(problem, device)), reference,
                    device, tol=1e-5, grad_tol=1e-4)


def test_sampling_points_follow_the_op_layout():
    """The public grid helper (what OffsetStatsHook uses), element by element."""
    problem = make_problem(**GEOMETRIES['k3x2-s2x1-g2-dg2-v2'])   # stride (2, 1), pad (1, 0)
    offset = problem['offset'].detach()
    y, x = sampling_points(offset, (3, 2), stride=(2, 1), padding=(1, 0))
    n, _, h_out, w_out = offset.shape
    assert y.shape == x.shape == (n, 2, 6, h_out, w_out)
    for b, g, k, oy, ox in ((0, 0, 0, 0, 0), (1, 1, 5, 2, 5), (0, 1, 3, 1, 2)):
        i, j = divmod(k, 2)
        channel = 2 * (g * 6 + k)
        assert y[b, g, k, oy, ox] == oy * 2 - 1 + i + offset[b, channel, oy, ox]
        assert x[b, g, k, oy, ox] == ox + j + offset[b, channel + 1, oy, ox]
    with pytest.raises(ValueError, match=r'2 \* kh \* kw = 18, got shape \(1, 17, 4, 4\)'):
        sampling_points(torch.zeros(1, 17, 4, 4), 3)


def test_inside_rule_is_the_ops():
    """inside_image says which BORDER_POINTS the op reads (-1 and H are outside)."""
    y = torch.tensor([p[0] for p in BORDER_POINTS] + [float('nan'), float('inf'), 1.0])
    x = torch.tensor([p[1] for p in BORDER_POINTS] + [1.0, 1.0, float('-inf')])
    expected = [False, False, True, True, True, True, True, True, False, False, False, True,
                False, False, False]
    assert inside_image(y, x, (4, 5)).tolist() == expected
    # The same verdict from the loop reference: outside points read 0 (the map is > 0
    # everywhere but at pixel (0, 0), which BORDER_POINTS[3] samples exactly).
    out = deform_conv2d_reference(**_border_problem(BORDER_POINTS))[:, 0, 0, 0]
    assert ((out != 0) | (torch.arange(len(BORDER_POINTS)) == 3)).tolist() == expected[:12]


@pytest.fixture
def fake_mmcv_cuda(monkeypatch):
    """No GPU here: mmcv 'built with CUDA'; the mmcv and torch kernels record
    (backend, input dtype) instead of running."""
    calls = []

    def recorder(name):
        def kernel(input, offset, weight, bias, mask, geo):
            calls.append((name, input.dtype))
            return torch.zeros(geo.batch, geo.out_channels, *geo.out_size)
        return kernel

    monkeypatch.setattr(mmcv_impl, 'mmcv_cuda_available', lambda: True)
    for name in ('mmcv', 'torch'):
        monkeypatch.setitem(BACKENDS, name, BACKENDS[name]._replace(fn=recorder(name),
                                                                    available=lambda: True))
    monkeypatch.setattr(op_module, '_warned_nondeterministic', False)  # warns once a process
    return calls


@pytest.mark.parametrize('backend', ['mmcv', 'torch'])
@pytest.mark.parametrize('amp', [False, True])
def test_deterministic_mode_warns_on_mmcv_cuda_also_under_autocast(fake_mmcv_cuda, monkeypatch,
                                                                  backend, amp):
    if amp:  # what --amp does on a GPU: CUDA float16 autocast
        monkeypatch.setattr(op_module, '_autocast_enabled', lambda device: device == 'cuda')
        monkeypatch.setattr(op_module, '_autocast_dtype', lambda device: torch.float16)
    problem = on_fake_cuda(make_problem(dtype=torch.float32))
    torch.use_deterministic_algorithms(True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            deform_conv2d(**problem, backend=backend)
    finally:
        torch.use_deterministic_algorithms(False)
    # The kernel ran through the path under test: float16 only for mmcv under amp.
    dtype = torch.float16 if amp and backend == 'mmcv' else torch.float32
    assert fake_mmcv_cuda == [(backend, dtype)]
    warned = [w for w in caught if 'atomicAdd' in str(w.message)]
    assert len(warned) == (1 if backend == 'mmcv' else 0)


def test_fast_takes_the_pure_path_on_cuda_in_deterministic_mode(monkeypatch):
    """CUDA's grid_sampler_2d_backward raises under deterministic algorithms: there 'fast'
    (what 'auto' takes on CUDA without Triton and mmcv, and triton's float64 path) runs
    the pure path, whose backward is deterministic; elsewhere it runs its own.  (No GPU
    here: both paths record their call instead of running.)"""
    from mmdcn_plugin.ops.backends import fast_impl, torch_impl
    calls = []

    def record(name):
        def kernel(input, *args):
            calls.append((name, input.device.type))
            return torch.zeros(())
        return kernel
    monkeypatch.setattr(torch_impl, 'deform_conv2d_torch', record('torch'))
    monkeypatch.setattr(fast_impl._FastDeformConv, 'apply', record('fast'))
    problem = make_problem(dtype=torch.float32)
    for tensors, deterministic in ((on_fake_cuda(problem), True), (on_fake_cuda(problem), False),
                                   (problem, True)):
        torch.use_deterministic_algorithms(deterministic)
        try:
            fast_impl.deform_conv2d_fast(tensors['input'], tensors['offset'], tensors['weight'],
                                         tensors['bias'], tensors['mask'], None)
        finally:
            torch.use_deterministic_algorithms(False)
    assert calls == [('torch', 'cuda'), ('fast', 'cuda'), ('fast', 'cpu')]


@pytest.mark.parametrize('backend', ['fast', 'torch'])
def test_deterministic_mode_gives_the_same_gradients_twice(backend, device):
    """On the device (CUDA in the GPU check): forward and backward run under
    ``torch.use_deterministic_algorithms(True)``, bitwise equal from run to run."""
    skip_unless_runs_on(backend, device)
    problem = make_problem(dtype=torch.float64)
    torch.use_deterministic_algorithms(True)
    try:
        first = output_and_grads(_op(backend), on_device(problem, device))
        second = output_and_grads(_op(backend), on_device(problem, device))
    finally:
        torch.use_deterministic_algorithms(False)
    _assert_matches(first, output_and_grads(deform_conv2d_reference, problem), device)
    assert torch.equal(first[0], second[0])
    for name in first[1]:
        assert torch.equal(first[1][name], second[1][name]), name


def test_mmcv_without_cuda_refuses_a_cuda_tensor_before_its_kernel(fake_mmcv_cuda,
                                                                   monkeypatch):
    monkeypatch.setattr(mmcv_impl, 'mmcv_cuda_available', lambda: False)
    problem = on_fake_cuda(make_problem(dtype=torch.float32))
    with pytest.raises(RuntimeError, match=r"backend 'mmcv' does not run on cuda tensors here "
                                           r"\(it runs on: \['cpu'\]"):
        deform_conv2d(**problem, backend='mmcv')
    assert fake_mmcv_cuda == []
    monkeypatch.setattr(mmcv_impl, 'mmcv_cuda_available', lambda: True)
    deform_conv2d(**problem, backend='mmcv')
    assert fake_mmcv_cuda == [('mmcv', torch.float32)]


@pytest.mark.parametrize('name,expected', [('triton', torch.bfloat16), ('fast', torch.float32)])
def test_autocast_gives_triton_its_half_precision_path(monkeypatch, name, expected):
    # The Triton kernels compute in the autocast dtype (fp32 accumulation); the others in
    # fp32.  Checked with a recording stand-in, so it holds without Triton or a GPU.
    from mmdcn_plugin.ops.backends import Backend
    seen = []

    def record(input, offset, weight, bias, mask, geo):
        seen.append(input.dtype)
        return BACKENDS['torch'].fn(input, offset, weight, bias, mask, geo)

    monkeypatch.setitem(BACKENDS, name, Backend(record, lambda: True, 'recording stand-in'))
    p = make_problem(dtype=torch.float32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = deform_conv2d(p['input'], p['offset'], p['weight'], p['bias'], p['stride'],
                            p['padding'], p['dilation'], p['mask'], backend=name)
    assert seen == [expected] and out.dtype == expected
