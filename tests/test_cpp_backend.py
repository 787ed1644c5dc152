"""The compiled CPU backend ('cpp') and the fallback when it is not built.

The generic tests (test_deform_conv_op.py, test_op_errors.py, test_layers.py) run
every available backend, 'cpp' included when built.  These add what is particular
to the compiled kernels: channel runs cut by both deform and conv groups, wide
channel vectors, thread counts, bf16 and fp16, hostile offsets through the backward, the
columns' layout, the kernels' own argument checks, and the fallback to 'fast'.
"""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from helpers import ROOT, make_problem, output_and_grads
from mmdcn_plugin.ops import available_backends, deform_conv2d, deform_conv2d_reference
from mmdcn_plugin.ops.backends import cpp_impl, mmcv_impl, resolve_backend
from mmdcn_plugin.ops.checks import check_deform_conv2d_args

needs_ext = pytest.mark.skipif(
    not cpp_impl.extension_available(),
    reason='the compiled CPU kernels (mmdcn_plugin._deform_conv_cpu) are not built or are '
    'disabled by MMDCN_DISABLE_EXT; build with `python setup.py build_ext --inplace`')
needs_mmcv = pytest.mark.skipif(not mmcv_impl.mmcv_ops_available(),
                                reason="mmcv's compiled ops are not built")

# Geometries that stress the kernels' channel loops: runs of channels cut by deform
# groups and conv groups that do not nest, channel counts past the 8-lane dot product
# and the widest scatter block, a 1x1 kernel with stride 2.
GEOMETRIES = {
    'groups3-dg2-runs-split': dict(c_in=12, c_out=6, kernel=3, stride=(1, 2), padding=1,
                                   dilation=(1, 2), groups=3, deform_groups=2),
    'groups2-dg3-k2x3-v1': dict(c_in=6, c_out=4, kernel=(2, 3), stride=1, padding=(1, 0),
                                groups=2, deform_groups=3, modulated=False),
    'wide-70-channels': dict(c_in=70, c_out=5, kernel=3, stride=1, padding=1, groups=1,
                             deform_groups=1, h=5, w=6),
    'k1-s2-v1-nobias': dict(c_in=4, c_out=3, kernel=1, stride=2, padding=0, groups=1,
                            deform_groups=2, modulated=False, bias=False),
}


def _close(a, b, tol=1e-6):
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=tol, rtol=tol), (a - b).abs().max().item()


def _cpp(**kw):
    return deform_conv2d(**kw, backend='cpp')


def _cpp_in_blocks(block):
    """The backend called directly with ``block`` output positions per block."""
    def fn(input, offset, weight, bias, stride, padding, dilation, mask):
        geo = check_deform_conv2d_args(input, offset, weight, bias, stride, padding,
                                       dilation, mask)
        return cpp_impl.deform_conv2d_cpp(input, offset, weight, bias, mask, geo, block=block)
    return fn


@needs_ext
@pytest.mark.parametrize('block', [0, 1, 7], ids=['auto-block', 'block-1', 'block-7'])
@pytest.mark.parametrize('geometry', list(GEOMETRIES))
def test_matches_loop_reference(geometry, block):
    """Also with blocks of 1 and 7 output positions: the block loop (its last, partial
    block included) must not change the result."""
    problem = make_problem(**GEOMETRIES[geometry], offset_scale=3.0, seed=11)
    ref_out, ref_grads = output_and_grads(deform_conv2d_reference, problem)
    out, grads = output_and_grads(_cpp_in_blocks(block), problem)
    _close(out, ref_out)
    for name in ref_grads:
        _close(grads[name], ref_grads[name])


@needs_ext
@needs_mmcv
@pytest.mark.parametrize('geometry', list(GEOMETRIES))
def test_matches_mmcv(geometry):
    problem = make_problem(**GEOMETRIES[geometry], offset_scale=3.0, seed=12)
    ref_out, ref_grads = output_and_grads(
        lambda **kw: deform_conv2d(**kw, backend='mmcv'), problem)
    out, grads = output_and_grads(_cpp, problem)
    _close(out, ref_out)
    for name in ref_grads:
        _close(grads[name], ref_grads[name])


@needs_ext
@pytest.mark.parametrize('value', [1e30, -1e30, float('inf'), float('-inf'), float('nan')])
def test_hostile_offsets_backward(value):
    """Non-finite and huge offsets: output and every gradient as the reference, and the
    hostile points have exactly zero offset and mask gradients (they sample nothing)."""
    problem = make_problem(n=1, c_in=4, c_out=2, h=5, w=6, kernel=3, stride=1, padding=1,
                           groups=1, deform_groups=2, seed=3)
    offset = problem['offset'].detach().clone()
    offset[:, 0::4] = value   # dy of every other kernel point
    offset[:, 3::8, 1:3] = value   # dx of some points at some positions
    problem['offset'] = offset.requires_grad_()
    out, grads = output_and_grads(_cpp, problem)
    ref_out, ref_grads = output_and_grads(deform_conv2d_reference, problem)
    assert torch.isfinite(out).all()
    _close(out, ref_out)
    for name in ref_grads:
        assert torch.isfinite(grads[name]).all(), name
        _close(grads[name], ref_grads[name])
    hostile = ~torch.isfinite(offset) | (offset.abs() > 1e29)
    assert (grads['offset'][hostile] == 0).all()
    # mask channel j <-> offset channels 2j (dy), 2j + 1 (dx)
    hostile_point = hostile[:, 0::2] | hostile[:, 1::2]
    assert (grads['mask'][hostile_point] == 0).all()


@needs_ext
def test_thread_count_does_not_change_results():
    """Each output element is summed in one fixed order whatever the thread count:
    the kernels are bitwise equal with 1 and 2 threads (the GEMMs need not be)."""
    ext = cpp_impl._load_extension()
    gen = torch.Generator().manual_seed(0)
    n, c, h, w, g, groups = 2, 32, 20, 21, 2, 2
    x = torch.randn(n, c, h, w, generator=gen)
    off = torch.randn(n, 2 * g * 9, h, w, generator=gen) * 3
    m = torch.rand(n, g * 9, h, w, generator=gen)
    geo = (3, 3, 1, 1, 1, 1, 1, 1, g, groups)
    grad_cols = torch.randn(n, groups, h * w, 9, c // groups, generator=gen)
    results = []
    saved = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append((ext.deform_im2col(x, off, m, *geo),
                            *ext.deform_col2im_backward(grad_cols, x, off, m, *geo,
                                                        True, True, True)))
    finally:
        torch.set_num_threads(saved)
    for one, two in zip(*results):
        assert torch.equal(one, two)


@needs_ext
def test_thread_count_whole_op():
    """The whole op, GEMMs included, over several blocks, with 1 and 2 threads."""
    problem = make_problem(n=2, c_in=8, c_out=6, h=15, w=17, kernel=3, stride=1, padding=1,
                           groups=2, deform_groups=2, offset_scale=3.0, seed=9)
    saved = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runs.append(output_and_grads(_cpp_in_blocks(40), problem))
    finally:
        torch.set_num_threads(saved)
    (out1, grads1), (out2, grads2) = runs
    _close(out1, out2, tol=1e-12)
    for name in grads1:
        _close(grads1[name], grads2[name], tol=1e-12)


@needs_ext
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision_close_to_float32(dtype):
    """Same inputs (bf16 or fp16 values) computed in that dtype and in float32.

    The offset gradient jumps where a point crosses a pixel row or column, so the
    float32 run takes the rounded offsets too, not the originals.
    """
    problem = make_problem(n=2, c_in=16, c_out=8, h=9, w=10, kernel=3, stride=1, padding=1,
                           groups=2, deform_groups=2, dtype=torch.float32, seed=6)
    half = {k: (v.detach().to(dtype).requires_grad_() if isinstance(v, torch.Tensor) else v)
            for k, v in problem.items()}
    problem = {k: (v.detach().float().requires_grad_() if isinstance(v, torch.Tensor) else v)
               for k, v in half.items()}
    out32, grads32 = output_and_grads(_cpp, problem)
    out16, grads16 = output_and_grads(_cpp, half)
    assert out16.dtype == dtype

    def close(a, b):  # a few roundings of values and products
        scale = b.abs().max().item()
        assert (a.float() - b).abs().max().item() <= 0.02 * scale + 1e-3, (a.float() - b)

    close(out16, out32)
    for name in grads32:
        assert grads16[name].dtype == dtype, name
        close(grads16[name], grads32[name])


@needs_ext
@pytest.mark.parametrize('groups', [1, 2])
def test_columns_layout_matches_unfold(groups):
    """Zero offsets and no mask: the columns are a plain im2col, channels-last."""
    ext = cpp_impl._load_extension()
    n, c, h, w = 2, 6, 5, 7
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    off = torch.zeros(n, 2 * 9, h, w, dtype=torch.float64)
    cols = ext.deform_im2col(x, off, None, 3, 3, 1, 1, 1, 1, 1, 1, 1, groups)
    assert cols.shape == (n, groups, h * w, 9, c // groups)
    unfolded = F.unfold(x, 3, padding=1).view(n, groups, c // groups, 9, h * w)
    assert torch.equal(cols, unfolded.permute(0, 1, 4, 3, 2))


@needs_ext
def test_kernels_take_an_empty_batch():
    ext = cpp_impl._load_extension()
    x = torch.randn(0, 4, 5, 6)
    off = torch.randn(0, 18, 5, 6)
    cols = ext.deform_im2col(x, off, None, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1)
    assert cols.shape == (0, 1, 30, 9, 4)
    gi, go, gm = ext.deform_col2im_backward(cols, x, off, None, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1,
                                            True, True, False)
    assert gi.shape == x.shape and go.shape == off.shape and gm is None
    weight, bias = torch.randn(3, 4, 3, 3), torch.randn(3)
    out = ext.deform_conv_forward(x, off, None, weight, bias, 1, 1, 1, 1, 1, 1, 1)
    assert out.shape == (0, 3, 5, 6)
    grads = ext.deform_conv_backward(out, x, off, None, weight, True, 1, 1, 1, 1, 1, 1, 1, 0,
                                     True, True, False, True, True)
    assert grads[0].shape == x.shape and grads[1].shape == off.shape and grads[2] is None
    assert torch.equal(grads[3], torch.zeros_like(weight))
    assert torch.equal(grads[4], torch.zeros_like(bias))


@needs_ext
def test_kernels_check_their_arguments():
    """Called directly, the kernels refuse what would read out of bounds."""
    ext = cpp_impl._load_extension()
    x = torch.randn(1, 4, 5, 6)
    off = torch.randn(1, 18, 5, 6)
    with pytest.raises(RuntimeError, match='grad_columns must be'):
        ext.deform_col2im_backward(torch.randn(10), x, off, None, 3, 3, 1, 1, 1, 1, 1, 1,
                                   1, 1, True, True, False)
    with pytest.raises(RuntimeError, match='offset spatial size'):
        ext.deform_im2col(x, off, None, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1)
    with pytest.raises(RuntimeError, match='offset dtype'):
        ext.deform_im2col(x, off.double(), None, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1)
    with pytest.raises(RuntimeError, match='mask must be'):
        ext.deform_im2col(x, off, torch.rand(1, 8, 5, 6), 3, 3, 1, 1, 1, 1, 1, 1, 1, 1)
    with pytest.raises(RuntimeError, match='grad_mask needs a mask'):
        ext.deform_col2im_backward(torch.randn(1, 1, 30, 9, 4), x, off, None, 3, 3, 1, 1,
                                   1, 1, 1, 1, 1, 1, False, False, True)
    with pytest.raises(RuntimeError, match='weight must be'):
        ext.deform_conv_forward(x, off, None, torch.randn(3, 3, 3, 3), None, 1, 1, 1, 1, 1, 1, 1)
    with pytest.raises(RuntimeError, match='bias must be'):
        ext.deform_conv_forward(x, off, None, torch.randn(3, 4, 3, 3), torch.randn(4), 1, 1, 1,
                                1, 1, 1, 1)
    with pytest.raises(RuntimeError, match='grad_out must be'):
        ext.deform_conv_backward(torch.randn(1, 3, 5, 5), x, off, None, torch.randn(3, 4, 3, 3),
                                 False, 1, 1, 1, 1, 1, 1, 1, 0, True, True, False, True, False)


@needs_ext
def test_auto_prefers_cpp_on_cpu_only(monkeypatch):
    assert resolve_backend('auto', torch.device('cpu')) == 'cpp'
    monkeypatch.setattr(mmcv_impl, 'mmcv_cuda_available', lambda: False)
    assert resolve_backend('auto', torch.device('cuda', 0)) == 'fast'


def test_fallback_when_disabled(monkeypatch):
    """MMDCN_DISABLE_EXT=1, as if the extension had not been built: 'auto' is 'fast'."""
    monkeypatch.setenv(cpp_impl.DISABLE_ENV_VAR, '1')
    assert 'cpp' not in available_backends()
    assert resolve_backend('auto', torch.device('cpu')) == 'fast'
    with pytest.raises(RuntimeError, match="backend 'cpp' is not available"):
        resolve_backend('cpp', torch.device('cpu'))
    problem = make_problem(seed=8)
    ref_out, ref_grads = output_and_grads(deform_conv2d_reference, problem)
    out, grads = output_and_grads(deform_conv2d, problem)
    _close(out, ref_out)
    for name in ref_grads:
        _close(grads[name], ref_grads[name])


def test_fallback_when_not_built(monkeypatch):
    monkeypatch.setattr(cpp_impl, '_load_extension', lambda: None)
    assert not cpp_impl.extension_available()
    assert resolve_backend('auto', torch.device('cpu')) == 'fast'


def _run_python(code, **env):
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, **env), timeout=300)


def test_package_import_does_not_load_the_extension():
    result = _run_python(
        'import sys, mmdcn_plugin, torch\n'
        'from mmdcn_plugin.ops.backends import resolve_backend\n'
        "assert 'mmdcn_plugin._deform_conv_cpu' not in sys.modules\n"
        "print(resolve_backend('auto', torch.device('cpu')))\n",
        MMDCN_DISABLE_EXT='1')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'fast'


def test_extension_that_does_not_load_warns_and_falls_back(monkeypatch):
    """Built against another torch (undefined symbol): say so, then use 'fast'."""
    real = cpp_impl.importlib.import_module

    def broken(name, *args):
        if name == cpp_impl.EXTENSION:
            raise ImportError('undefined symbol: _ZN3c1010TensorImpl')
        return real(name, *args)

    monkeypatch.setattr(cpp_impl.importlib, 'import_module', broken)
    cpp_impl._load_extension.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match='do not load.*undefined symbol'):
            assert not cpp_impl.extension_available()
        assert resolve_backend('auto', torch.device('cpu')) == 'fast'
    finally:
        monkeypatch.undo()
        cpp_impl._load_extension.cache_clear()


@needs_ext
def test_forward_never_writes_into_the_bias_on_a_1x1_map():
    # expand().contiguous() of a [1, C, 1, 1] view is the bias itself; the GEMM added the
    # output into the layer's parameter (found with DetInferencer on RetinaNet's P7).
    from mmdcn_plugin import DeformableConv2d
    torch.manual_seed(0)
    layer = DeformableConv2d(4, 4, 3, padding=1, bias=True, backend='cpp')
    before = layer.bias.detach().clone()
    with torch.no_grad():
        y = layer(torch.randn(1, 4, 1, 1))
        y.add_(1)
        layer(torch.randn(1, 4, 1, 1))
    assert torch.equal(layer.bias, before)
