"""The functional op: every backend against the loop reference and mmcv, in float64."""
import pytest
import torch
import torch.nn.functional as F

from helpers import make_problem, output_and_grads, tensors_of
from mmdcn_plugin.ops import available_backends, deform_conv2d, deform_conv2d_reference
from mmdcn_plugin.ops.backends import mmcv_impl

HAS_MMCV = mmcv_impl.mmcv_ops_available()
needs_mmcv = pytest.mark.skipif(not HAS_MMCV, reason="mmcv's compiled ops are not built")
CPU_BACKENDS = [b for b in available_backends() if b != 'auto']

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
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=tol, rtol=tol), (a - b).abs().max().item()


@pytest.mark.parametrize('geometry', list(GEOMETRIES), ids=list(GEOMETRIES))
@pytest.mark.parametrize('backend', CPU_BACKENDS)
def test_backend_matches_loop_reference(backend, geometry):
    problem = make_problem(**GEOMETRIES[geometry])
    ref_out, ref_grads = output_and_grads(deform_conv2d_reference, problem)
    out, grads = output_and_grads(
        lambda **kw: deform_conv2d(**kw, backend=backend), problem)
    _close(out, ref_out)
    for name in ref_grads:
        _close(grads[name], ref_grads[name])


@needs_mmcv
@pytest.mark.parametrize('geometry', list(GEOMETRIES), ids=list(GEOMETRIES))
@pytest.mark.parametrize('backend', [b for b in CPU_BACKENDS if b != 'mmcv'])
def test_backend_matches_mmcv_kernels(backend, geometry):
    """Output and all five gradients equal mmcv's own kernels in float64."""
    from mmcv.ops import deform_conv2d as mmcv_v1, modulated_deform_conv2d as mmcv_v2

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

    ref_out, ref_grads = output_and_grads(mmcv_raw, problem)
    out, grads = output_and_grads(lambda **kw: deform_conv2d(**kw, backend=backend), problem)
    _close(out, ref_out)
    for name in ref_grads:
        _close(grads[name], ref_grads[name])


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
@pytest.mark.parametrize('backend', CPU_BACKENDS)
def test_border_rule_matches_reference(backend, modulated):
    problem = _border_problem(BORDER_POINTS, modulated=modulated)
    ref_out, ref_grads = output_and_grads(deform_conv2d_reference, problem)
    out, grads = output_and_grads(lambda **kw: deform_conv2d(**kw, backend=backend), problem)
    _close(out, ref_out)
    for name in ref_grads:
        _close(grads[name], ref_grads[name])


@needs_mmcv
@pytest.mark.parametrize('modulated', [False, True])
def test_border_rule_matches_mmcv(modulated):
    from mmcv.ops import deform_conv2d as mmcv_v1, modulated_deform_conv2d as mmcv_v2
    problem = _border_problem(BORDER_POINTS, modulated=modulated)

    def mmcv_raw(input, offset, weight, bias, stride, padding, dilation, mask):
        if mask is None:
            return mmcv_v1(input, offset, weight, 1, 0, 1, 1, 1, False, input.shape[0])
        return mmcv_v2(input, offset, mask, weight, None, 1, 0, 1, 1, 1)

    ref_out, ref_grads = output_and_grads(mmcv_raw, problem)
    for backend in CPU_BACKENDS:
        out, grads = output_and_grads(lambda **kw: deform_conv2d(**kw, backend=backend),
                                      problem)
        _close(out, ref_out)
        for name in ref_grads:
            _close(grads[name], ref_grads[name])


def test_border_rule_pinned_values():
    """The coordinate gradient at the border, written out by hand."""
    h, w = 4, 5
    problem = _border_problem(BORDER_POINTS, h, w)
    img = problem['input'][0, 0].detach()
    out = deform_conv2d(**problem, backend='torch')
    (grad_off,) = torch.autograd.grad(out.sum(), [problem['offset']])
    # Every output pixel of sample i samples the same point; take pixel (0, 0).
    dy = grad_off[:, 0, 0, 0]
    dx = grad_off[:, 1, 0, 0]
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
def test_gradcheck_torch_backend(modulated):
    problem = make_problem(n=1, c_in=2, h=4, w=5, c_out=2, kernel=(2, 3), stride=1,
                           padding=1, groups=1, deform_groups=2, modulated=modulated,
                           offset_scale=0.7, seed=3)
    names, tensors = tensors_of(problem)

    def fn(*ts):
        kw = dict(problem, **dict(zip(names, ts)))
        return deform_conv2d(**kw, backend='torch')

    assert torch.autograd.gradcheck(fn, tuple(tensors), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize('backend', CPU_BACKENDS)
@pytest.mark.parametrize('modulated', [False, True])
def test_empty_batch(backend, modulated):
    problem = make_problem(n=0, modulated=modulated)
    out = deform_conv2d(**problem, backend=backend)
    assert out.shape == (0, 6, 3, 6)
    out.sum().backward()
    assert problem['weight'].grad is not None
    assert torch.count_nonzero(problem['weight'].grad) == 0
    assert problem['input'].grad.shape == problem['input'].shape


@pytest.mark.parametrize('backend', CPU_BACKENDS)
def test_non_contiguous_inputs(backend):
    problem = make_problem(seed=7)
    expected = deform_conv2d_reference(**problem)
    nc = dict(problem)
    # Same values, other strides: channels-last input, transposed-then-back offset.
    nc['input'] = problem['input'].detach().to(memory_format=torch.channels_last)
    nc['offset'] = problem['offset'].detach().transpose(2, 3).contiguous().transpose(2, 3)
    nc['mask'] = problem['mask'].detach()[:, :, :, :].transpose(0, 1).contiguous().transpose(0, 1)
    nc['weight'] = problem['weight'].detach().permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert not nc['offset'].is_contiguous() and not nc['weight'].is_contiguous()
    _close(deform_conv2d(**nc, backend=backend), expected)


@pytest.mark.parametrize('backend', CPU_BACKENDS)
@pytest.mark.parametrize('modulated', [False, True])
def test_map_smaller_than_kernel(backend, modulated):
    """1x1 and 2x1 maps with a padded 3x3 kernel (c5 of small images)."""
    for h, w in ((1, 1), (2, 1)):
        problem = make_problem(n=2, c_in=2, h=h, w=w, c_out=2, kernel=3, stride=1, padding=1,
                               groups=1, deform_groups=1, modulated=modulated)
        ref_out, ref_grads = output_and_grads(deform_conv2d_reference, problem)
        out, grads = output_and_grads(lambda **kw: deform_conv2d(**kw, backend=backend),
                                      problem)
        _close(out, ref_out)
        for name in ref_grads:
            _close(grads[name], ref_grads[name])


@pytest.mark.parametrize('backend', CPU_BACKENDS)
@pytest.mark.parametrize('modulated', [False, True])
def test_batch_sizes_never_refused(backend, modulated):
    """mmcv's DCNv1 asserts batch % im2col_step == 0 (33 with a step of 32)."""
    problem = make_problem(n=33, c_in=2, h=3, w=3, c_out=2, kernel=3, stride=1, padding=1,
                           groups=1, deform_groups=1, modulated=modulated,
                           dtype=torch.float32)
    out = deform_conv2d(**problem, backend=backend)
    ref = deform_conv2d(**problem, backend='torch')
    assert out.shape == (33, 2, 3, 3)
    assert torch.allclose(out, ref, atol=1e-5)


def test_im2col_step_divides_batch():
    for batch in (1, 2, 31, 32, 33, 64, 97, 128):
        step = mmcv_impl.im2col_step_for(batch)
        assert batch % step == 0 and 1 <= step <= 32
    assert mmcv_impl.im2col_step_for(33) == 11


@pytest.mark.parametrize('backend', CPU_BACKENDS)
@pytest.mark.parametrize('value', [1e30, -1e30, float('inf'), float('-inf'), float('nan'), 1e6])
def test_hostile_offsets(backend, value):
    """Huge, infinite and NaN offsets sample zeros: finite output, no crash."""
    problem = make_problem(dtype=torch.float32, seed=2)
    offset = problem['offset'].detach().clone()
    offset[:, ::3] = value
    problem['offset'] = offset.requires_grad_()
    out, grads = output_and_grads(lambda **kw: deform_conv2d(**kw, backend=backend), problem)
    assert torch.isfinite(out).all()
    for name, g in grads.items():
        assert torch.isfinite(g).all(), name
    # Points thrown out of the image contribute exactly nothing, as in the reference.
    ref = deform_conv2d_reference(**problem)
    assert torch.allclose(out, ref, atol=1e-4)


def test_bf16_and_autocast_cpu():
    problem = make_problem(dtype=torch.float32, seed=4)
    expected = deform_conv2d(**problem, backend='torch')
    with torch.autocast('cpu', dtype=torch.bfloat16):
        for backend in CPU_BACKENDS:
            out = deform_conv2d(**problem, backend=backend)
            assert torch.isfinite(out).all()
            assert torch.allclose(out.float(), expected, atol=2e-2, rtol=2e-2)
            out.float().sum().backward()
    for backend in CPU_BACKENDS:
        bf = {k: (v.detach().bfloat16() if isinstance(v, torch.Tensor) else v)
              for k, v in problem.items()}
        out = deform_conv2d(**bf, backend=backend)
        assert out.dtype == torch.bfloat16
        assert torch.allclose(out.float(), expected, atol=0.25, rtol=0.05)


@pytest.mark.parametrize('backend', CPU_BACKENDS)
def test_zero_offsets_float32_match_reference_slopes(backend):
    """A fresh layer: every point on an integer pixel, where the slope rule decides."""
    problem = make_problem(n=2, c_in=4, h=7, w=11, c_out=3, kernel=3, stride=1, padding=1,
                           groups=1, deform_groups=2, dtype=torch.float32)
    problem['offset'] = torch.zeros_like(problem['offset']).requires_grad_()
    ref_out, ref_grads = output_and_grads(deform_conv2d_reference, problem)
    out, grads = output_and_grads(lambda **kw: deform_conv2d(**kw, backend=backend), problem)
    _close(out, ref_out, tol=1e-5)
    for name in ref_grads:
        _close(grads[name], ref_grads[name], tol=1e-4)
