"""The mmcv backend's own autograd Functions over mmcv's kernels
(``ops/backends/mmcv_function.py``): mmcv's numbers, with the offset sanitising
outside the autograd graph.

On the CPU the Functions must give mmcv's public Functions' numbers to the bit (the
same kernels on the same inputs); on CUDA, where mmcv's backward accumulates with
atomicAdd, to rounding.  Device: ``--device`` / ``MMDCN_TEST_DEVICE`` (tests/conftest.py).
"""
import pytest
import torch

from helpers import make_problem, on_device, output_and_grads, skip_unless_runs_on
from mmdcn_plugin.ops import deform_conv2d
from mmdcn_plugin.ops.backends import mmcv_impl
from mmdcn_plugin.ops.checks import check_deform_conv2d_args

pytestmark = pytest.mark.skipif(not mmcv_impl.mmcv_ops_available(),
                                reason="mmcv's compiled ops are not installed")

GEOMETRIES = {
    'plain': dict(kernel=3, stride=1, padding=1, groups=1, deform_groups=1),
    'grouped': dict(),  # make_problem's default: 3x2 kernel, stride (2, 1), 2 groups
    'dilated': dict(kernel=3, stride=2, padding=2, dilation=2, groups=1, deform_groups=2),
    'batch33': dict(n=33, c_in=2, h=4, w=4, c_out=2, kernel=3, stride=1, padding=1,
                    groups=1, deform_groups=1),
}


def _mmcv_public(input, offset, weight, bias, stride, padding, dilation, mask):
    """mmcv's own Functions (``mmcv.ops``), on the offsets as given."""
    from mmcv.ops import deform_conv2d as mmcv_v1
    from mmcv.ops import modulated_deform_conv2d as mmcv_v2
    from mmdcn_plugin.ops.backends.mmcv_function import im2col_step_for
    geo = check_deform_conv2d_args(input, offset, weight, bias, stride, padding, dilation, mask)
    if mask is None:
        out = mmcv_v1(input, offset, weight, geo.stride, geo.padding, geo.dilation, geo.groups,
                      geo.deform_groups, False, im2col_step_for(geo.batch))
        return out + bias.view(1, -1, 1, 1) if bias is not None else out
    return mmcv_v2(input, offset, mask, weight, bias, geo.stride, geo.padding, geo.dilation,
                   geo.groups, geo.deform_groups)


def _ours(**problem):
    return deform_conv2d(**problem, backend='mmcv')


def _assert_same(ours, theirs, device, what):
    if device.type == 'cpu':
        assert torch.equal(ours, theirs), f'{what}: not bitwise equal to mmcv.ops'
    else:  # atomicAdd order differs from run to run
        torch.testing.assert_close(ours, theirs, msg=lambda m: f'{what}: {m}')


@pytest.mark.parametrize('geometry', sorted(GEOMETRIES))
@pytest.mark.parametrize('modulated', [True, False], ids=['dcnv2', 'dcnv1'])
@pytest.mark.parametrize('bias', [True, False], ids=['bias', 'nobias'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64], ids=str)
def test_same_numbers_as_mmcv_ops(geometry, modulated, bias, dtype, device):
    """Output and all five gradients equal those of ``mmcv.ops``' own Functions."""
    skip_unless_runs_on('mmcv', device)
    problem = on_device(make_problem(**GEOMETRIES[geometry], modulated=modulated, bias=bias,
                                     dtype=dtype, seed=3), device)
    out, grads = output_and_grads(_ours, problem)
    ref_out, ref_grads = output_and_grads(_mmcv_public, problem)
    _assert_same(out, ref_out, device, 'output')
    assert set(grads) == set(ref_grads)
    for name in grads:
        _assert_same(grads[name], ref_grads[name], device, f'grad of {name}')


@pytest.mark.parametrize('modulated', [True, False], ids=['dcnv2', 'dcnv1'])
@pytest.mark.parametrize('value', [float('nan'), float('inf'), -1e30, 1e6])
def test_replaced_offsets_get_zero_gradient_and_no_graph_node(modulated, value, device):
    """A NaN, infinite or huge offset gets a gradient of exactly 0 (the chain rule
    through the replacement), the others mmcv's gradient on the replaced offsets; and
    the replacement is not in the autograd graph (no NanToNum or Clamp node)."""
    skip_unless_runs_on('mmcv', device)
    problem = on_device(make_problem(modulated=modulated, dtype=torch.float64, seed=5), device)
    hostile = torch.zeros_like(problem['offset'], dtype=torch.bool)
    hostile[:, ::3] = True
    with torch.no_grad():
        problem['offset'][hostile] = value
    out, grads = output_and_grads(_ours, problem)
    assert torch.isfinite(out).all()
    assert torch.all(grads['offset'][hostile] == 0)
    assert torch.isfinite(grads['offset']).all()

    # The same offsets, replaced by hand before mmcv's own Functions.
    geo = check_deform_conv2d_args(problem['input'], problem['offset'], problem['weight'],
                                   problem['bias'], problem['stride'], problem['padding'],
                                   problem['dilation'], problem['mask'])
    from mmdcn_plugin.ops.backends.mmcv_function import sanitize_offset
    replaced = dict(problem, offset=sanitize_offset(problem['offset'].detach(), geo)
                    .requires_grad_())
    ref_out, ref_grads = output_and_grads(_mmcv_public, replaced)
    _assert_same(out, ref_out, device, 'output')
    for name in grads:
        expected = ref_grads[name]
        if name == 'offset':
            expected = torch.where(hostile, torch.zeros_like(expected), expected)
        _assert_same(grads[name], expected, device, f'grad of {name}')

    seen, todo = set(), [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        todo += [n for n, _ in node.next_functions]
    names = {type(n).__name__ for n in seen}
    assert not any('NanToNum' in n or 'Clamp' in n for n in names), names


def test_sanitize_leaves_its_argument_alone():
    from mmdcn_plugin.ops.backends.mmcv_function import sanitize_offset
    problem = make_problem(dtype=torch.float32)
    geo = check_deform_conv2d_args(problem['input'], problem['offset'], problem['weight'],
                                   problem['bias'], problem['stride'], problem['padding'],
                                   problem['dilation'], problem['mask'])
    offset = problem['offset'].detach().clone()
    offset[0, 0, 0, 0], offset[0, 1, 0, 0] = float('nan'), 1e30
    before = offset.clone()
    safe = sanitize_offset(offset, geo)
    assert torch.equal(offset.nan_to_num(), before.nan_to_num())
    assert torch.isfinite(safe).all() and safe[0, 1, 0, 0] == safe.abs().max()
