"""The 'triton' backend: its kernels against the float64 reference, everywhere they can run.

Where the kernels run:

* On a machine with a CUDA GPU and Triton, the kernel tests below run in this process
  on CUDA tensors (the GPU check: ``pytest tests/test_triton_backend.py --runslow``).
* Under ``TRITON_INTERPRET=1`` they run in this process on CPU tensors, through
  Triton's interpreter.
* Otherwise (CI, ``make test``) they are skipped here and
  :func:`test_kernels_under_the_interpreter` runs this same file again in a child
  process with ``TRITON_INTERPRET=1``.  A child, because Triton reads the variable
  when a kernel is decorated (at import), so setting it inside this process could not
  switch kernels already imported, and would leak into every later test.

Tolerances are per dtype, relative to the largest reference value: the kernels
compute in fp32 (fp16/bf16 tiles rounded for ``tl.dot``), the reference in float64 on
the same inputs rounded to the tested dtype.
"""
import os
import re
import subprocess
import sys
import warnings

import pytest
import torch

from helpers import ROOT, make_problem, one_thread  # noqa: F401 (one_thread: autouse)
from test_deform_conv_op import BORDER_POINTS, GEOMETRIES as OP_GEOMETRIES, _border_problem
from mmdcn_plugin.ops import deform_conv2d, deform_conv2d_reference
from mmdcn_plugin.ops.backends import BACKENDS, mmcv_impl, resolve_backend
from mmdcn_plugin.ops.backends import triton as triton_backend
from mmdcn_plugin.ops.backends.triton import probe as triton_probe

HAS_TRITON = triton_backend.triton_importable()
INTERPRETING = triton_backend.interpreting()  # TRITON_INTERPRET=1 in this process
ON_GPU = HAS_TRITON and torch.cuda.is_available() and not INTERPRETING
DEVICE = torch.device('cuda' if ON_GPU else 'cpu')
kernels = pytest.mark.skipif(
    not (HAS_TRITON and (INTERPRETING or ON_GPU)),
    reason='no device for the Triton kernels in this process (no GPU, TRITON_INTERPRET '
           'unset): test_kernels_under_the_interpreter runs them in a child process')
gpu_only = pytest.mark.skipif(not ON_GPU, reason='sizes only the GPU runs in seconds')

TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


@pytest.fixture(autouse=True, scope='module')
def strict_fp32_on_the_gpu():
    """On a GPU, TF32 off for this file (as the ``device`` fixture does for the op's and
    the layer's tests): the references are float64, and the layer's offset head is a
    cuDNN conv, which uses TF32 by default (errors near 1e-3, ten times TOL's fp32)."""
    if not ON_GPU:
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved

# The op tests' odd geometries (the matrix every backend passes), plus channel counts
# that make tiles straddle deform groups and conv groups and span several channel blocks.
GEOMETRIES = {
    **OP_GEOMETRIES,
    # 24 channels in 3 deform groups of 8: a 16-channel block holds two groups.
    'c24-dg3-o20': dict(n=1, c_in=24, c_out=20, h=4, w=5, kernel=(2, 2), stride=1,
                        padding=0, groups=1, deform_groups=3),
    # Conv groups of 12 channels, deform groups of 18: neither nests in the other.
    'c36-g3-dg2': dict(n=1, c_in=36, c_out=6, h=4, w=4, kernel=(1, 2), stride=1, padding=0,
                       groups=3, deform_groups=2, bias=False),
}
QUICK = ['k3x2-s2x1-g2-dg2-v2', 'c24-dg3-o20']


def _cast(problem, dtype, device):
    """The problem's tensors as fresh leaves of ``dtype`` on ``device``."""
    return {k: (v.detach().to(device, dtype).requires_grad_() if isinstance(v, torch.Tensor)
                else v) for k, v in problem.items()}


def _run(backend, problem, dtype, device, grad_dtype=None, seed=1):
    """Output and gradients of every tensor of ``problem`` computed in ``dtype``.

    ``backend`` is a backend name, or ``'reference'`` for the loop reference.  The
    output gradient is drawn in float64 and rounded to ``grad_dtype`` (default
    ``dtype``), so that a float64 reference can see the same numbers.
    """
    tensors = _cast(problem, dtype, device)
    if backend == 'reference':
        out = deform_conv2d_reference(**tensors)
    else:
        out = deform_conv2d(**tensors, backend=backend)
    gen = torch.Generator().manual_seed(seed)
    grad_out = (torch.randn(out.shape, generator=gen, dtype=torch.float64)
                .to(grad_dtype or dtype).to(device, dtype))
    names = [k for k in ('input', 'offset', 'weight', 'bias', 'mask')
             if tensors.get(k) is not None]
    grads = torch.autograd.grad(out, [tensors[k] for k in names], grad_out)
    return out, dict(zip(names, grads))


def _reference(problem, dtype):
    """The float64 'torch' backend on the problem rounded to ``dtype`` (on the CPU)."""
    rounded = _cast(problem, dtype, 'cpu')
    return _run('torch', rounded, torch.float64, 'cpu', grad_dtype=dtype)


def _assert_close(name, got, want, dtype):
    got, want = got.detach().cpu().double(), want.detach().cpu().double()
    assert got.shape == want.shape, name
    err = (got - want).abs().max().item() if want.numel() else 0.0
    limit = TOL[dtype] * max(1.0, want.abs().max().item() if want.numel() else 0.0)
    assert err <= limit, f'{name}: max error {err:.3g} > {limit:.3g} ({dtype})'


def _check_against_reference(problem, dtype):
    want_out, want_grads = _reference(problem, dtype)
    out, grads = _run('triton', problem, dtype, DEVICE)
    assert out.dtype == dtype and out.device.type == DEVICE.type
    _assert_close('output', out, want_out, dtype)
    assert set(grads) == set(want_grads)
    for name in want_grads:
        assert grads[name].dtype == dtype, name
        _assert_close(f'grad {name}', grads[name], want_grads[name], dtype)


# --- registration: runs in every process ------------------------------------------------

def test_triton_is_registered_with_its_devices():
    entry = BACKENDS['triton']
    assert entry.available() == (HAS_TRITON and (INTERPRETING or torch.cuda.is_available()))
    assert 'cuda' in entry.devices()
    assert ('cpu' in entry.devices()) == INTERPRETING


def test_auto_on_cpu_never_picks_triton():
    assert resolve_backend('auto', torch.device('cpu')) != 'triton'


@pytest.mark.parametrize('mmcv_cuda', [False, True])
def test_auto_on_cuda_prefers_triton_then_mmcv_then_fast(monkeypatch, mmcv_cuda):
    monkeypatch.setattr(mmcv_impl, 'mmcv_cuda_available', lambda: mmcv_cuda)
    cuda = torch.device('cuda')
    monkeypatch.setitem(BACKENDS, 'triton', BACKENDS['triton']._replace(available=lambda: True))
    monkeypatch.setattr(triton_probe, 'triton_cuda_usable', lambda: True)
    assert resolve_backend('auto', cuda) == 'triton'
    # Triton imports, but its kernels failed the probe on this GPU.
    monkeypatch.setattr(triton_probe, 'triton_cuda_usable', lambda: False)
    assert resolve_backend('auto', cuda) == ('mmcv' if mmcv_cuda else 'fast')
    assert resolve_backend('triton', cuda) == 'triton'  # asked by name: still runs
    monkeypatch.setitem(BACKENDS, 'triton', BACKENDS['triton']._replace(available=lambda: False))
    assert resolve_backend('auto', cuda) == ('mmcv' if mmcv_cuda else 'fast')


def test_triton_probe_needs_a_gpu():
    triton_probe.triton_cuda_usable.cache_clear()
    try:
        assert triton_probe.triton_cuda_usable() == (HAS_TRITON and torch.cuda.is_available()
                                                     and triton_probe.triton_cuda_usable())
        if not torch.cuda.is_available():
            assert triton_probe.triton_cuda_usable() is False
    finally:
        triton_probe.triton_cuda_usable.cache_clear()


@pytest.mark.skipif(not HAS_TRITON, reason='Triton is not installed (pip install .[dev])')
@pytest.mark.parametrize('argv, message', [
    (['--dtypes', 'fp16,fp8'], '--dtypes: expected a comma-separated list of fp16, bf16, '
                              'fp32; got fp8'),
    (['--shapes', 'c6'], '--shapes: expected a comma-separated list of c3, c4, c5, tiny; '
                         'got c6'),
    (['--kernels', 'forwards'], '--kernels: expected a comma-separated list of forward, '
                                'data, weight; got forwards')])
def test_tile_sweep_refuses_unknown_names(argv, message, capsys):
    from mmdcn_plugin.ops.backends.triton import tune
    with pytest.raises(SystemExit) as exit_info:
        tune.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(not HAS_TRITON, reason='Triton is not installed (pip install .[dev])')
def test_tile_sweep_times_each_call_after_an_l2_flush(monkeypatch):
    """As the op benchmark does: a tile timed on inputs left in cache by its previous
    call would look faster than it is in a network."""
    from mmdcn_plugin.ops.backends.triton import tune
    asked = []

    def measure_for(device, flush_cache=False):
        asked.append((device, flush_cache))
        return lambda fn: (fn(), 0.002)[1]
    monkeypatch.setattr(tune, 'measure_for', measure_for)
    calls = []
    assert tune.timer(torch.device('cpu'), 3)(lambda: calls.append(1)) == 2.0
    assert asked == [('cpu', True)] and len(calls) == 5  # two untimed, three timed


@pytest.mark.skipif(not HAS_TRITON, reason='Triton is not installed (pip install .[dev])')
def test_stage_timing_refuses_unknown_names(capsys):
    from mmdcn_plugin.ops.backends.triton import stages
    with pytest.raises(SystemExit) as exit_info:
        stages.main(['--shapes', 'c3,c9'])
    assert exit_info.value.code == 2
    assert '--shapes: expected a comma-separated list of c3, c4, c5, tiny; got c9' in \
        capsys.readouterr().err


def test_package_works_without_triton():
    """With ``import triton`` failing, the op imports and the backend is unavailable."""
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch\n"
        "from mmdcn_plugin.ops import available_backends, deform_conv2d\n"
        "from mmdcn_plugin.ops.backends import BACKENDS, resolve_backend\n"
        "assert not BACKENDS['triton'].available()\n"
        "assert 'triton' not in available_backends()\n"
        "assert resolve_backend('auto', torch.device('cuda')) != 'triton'\n"
        "try:\n"
        "    resolve_backend('triton', torch.device('cpu'))\n"
        "except RuntimeError as err:\n"
        "    assert 'not available' in str(err), err\n"
        "else:\n"
        "    raise AssertionError('triton resolved without triton')\n"
        "x = torch.randn(1, 2, 4, 4)\n"
        "out = deform_conv2d(x, torch.zeros(1, 18, 4, 4), torch.randn(3, 2, 3, 3), padding=1)\n"
        "assert out.shape == (1, 3, 4, 4)\n")
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('TRITON_INTERPRET', None)
    run = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.skipif(not HAS_TRITON, reason='Triton is not installed (pip install .[dev])')
def test_fixed_point_scale_bounds_every_sum():
    """The deterministic input gradient's scale: a power of two that keeps the largest
    possible sum at one entry below 2**61, and 0 (NaN gradient) for non-finite inputs."""
    from mmdcn_plugin.ops.backends.triton.launch import FIXED_POINT_BITS, fixed_point_scale
    from mmdcn_plugin.ops.checks import check_deform_conv2d_args
    problem = _cast(make_problem(), torch.float32, 'cpu')
    geo = check_deform_conv2d_args(problem['input'], problem['offset'], problem['weight'],
                                   problem['bias'], problem['stride'],
                                   problem['padding'], problem['dilation'], problem['mask'])
    grad_out = torch.randn(2, 6, *geo.out_size)
    scale = fixed_point_scale(grad_out, problem['weight'], problem['mask'], geo).item()
    assert scale > 0 and scale == 2.0 ** round(torch.log2(torch.tensor(scale)).item())
    bound = (grad_out.abs().sum(1).max() * problem['weight'].abs().max()
             * problem['mask'].abs().max() * geo.out_size[0] * geo.out_size[1]
             * geo.kernel[0] * geo.kernel[1]).item()
    assert 2.0 ** (FIXED_POINT_BITS - 1) <= bound * scale <= 2.0 ** FIXED_POINT_BITS
    grad_out[0, 0, 0, 0] = float('inf')
    assert fixed_point_scale(grad_out, problem['weight'], problem['mask'], geo).item() == 0


@pytest.mark.skipif(INTERPRETING or ON_GPU, reason='the kernel tests run in this process')
@pytest.mark.skipif(not HAS_TRITON, reason='Triton is not installed (pip install .[dev])')
def test_kernels_under_the_interpreter(request):
    """This file's kernel tests, on CPU tensors, in a child with ``TRITON_INTERPRET=1``."""
    env = dict(os.environ, TRITON_INTERPRET='1', OMP_NUM_THREADS='1')
    args = [sys.executable, '-m', 'pytest', __file__, '-q', '-p', 'no:cacheprovider',
            '-W', 'ignore::DeprecationWarning']
    if request.config.getoption('--runslow'):
        args.append('--runslow')
    run = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=1200)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert ' passed' in run.stdout and ' failed' not in run.stdout, run.stdout[-3000:]


@pytest.mark.skipif(INTERPRETING or ON_GPU, reason='the op and layer tests take triton '
                    'in this process')
@pytest.mark.skipif(not HAS_TRITON, reason='Triton is not installed (pip install .[dev])')
def test_op_and_layer_suites_take_triton_under_the_interpreter():
    """The op's and the layer's own tests, which run every backend that takes the
    device's tensors, with ``triton`` among them (under the interpreter it takes CPU
    tensors): what the GPU check's ``tests`` step asks of it on CUDA."""
    env = dict(os.environ, TRITON_INTERPRET='1', OMP_NUM_THREADS='1')
    probe = subprocess.run(
        [sys.executable, '-c', 'from mmdcn_plugin.ops.backends import BACKENDS; '
         "print(BACKENDS['triton'].available())"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip().endswith('True'), probe.stdout + probe.stderr
    run = subprocess.run(
        [sys.executable, '-m', 'pytest', 'tests/test_deform_conv_op.py',
         'tests/test_layers.py', '-q', '-p', 'no:cacheprovider',
         '-W', 'ignore::DeprecationWarning'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert ' passed' in run.stdout and ' failed' not in run.stdout, run.stdout[-3000:]


# --- the kernels: in this process on a GPU or under the interpreter --------------------

@kernels
@pytest.mark.parametrize('geometry', QUICK)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16], ids=str)
def test_matches_reference_quick(geometry, dtype):
    _check_against_reference(make_problem(**GEOMETRIES[geometry]), dtype)


@kernels
@pytest.mark.slow
@pytest.mark.parametrize('geometry', [g for g in GEOMETRIES if g not in QUICK])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16], ids=str)
def test_matches_reference_every_geometry(geometry, dtype):
    _check_against_reference(make_problem(**GEOMETRIES[geometry]), dtype)


@kernels
@pytest.mark.parametrize('geometry', ['k3x2-s2x1-g2-dg2-v2'])
def test_bfloat16_matches_reference(geometry):
    _check_against_reference(make_problem(**GEOMETRIES[geometry]), torch.bfloat16)


@kernels
@pytest.mark.slow
@pytest.mark.parametrize('geometry', [g for g in GEOMETRIES if g != 'k3x2-s2x1-g2-dg2-v2'])
def test_bfloat16_every_geometry(geometry):
    _check_against_reference(make_problem(**GEOMETRIES[geometry]), torch.bfloat16)


@kernels
@pytest.mark.parametrize('modulated', [False, True])
def test_border_rule_is_mmcv_s(modulated):
    """The op tests' points on and around the borders, against the loop reference (an
    independent reading of mmcv's rule): -1 and H/W sample 0 with no gradient, integers
    take the slope towards floor + 1."""
    problem = _border_problem(BORDER_POINTS, modulated=modulated)
    rounded = _cast(problem, torch.float32, 'cpu')
    want_out, want_grads = _run('reference', rounded, torch.float64, 'cpu',
                                grad_dtype=torch.float32)
    out, grads = _run('triton', problem, torch.float32, DEVICE)
    _assert_close('output', out, want_out, torch.float32)
    for name in want_grads:
        _assert_close(f'grad {name}', grads[name], want_grads[name], torch.float32)


@kernels
def test_huge_and_nan_offsets_sample_zero():
    problem = make_problem(n=1, c_in=4, c_out=4, h=5, w=5, kernel=3, stride=1, padding=1,
                           groups=1, deform_groups=1, dtype=torch.float32)
    offset = problem['offset'].detach().clone()
    offset[0, 0, 0, :] = float('nan')
    offset[0, 1, 1, :] = float('inf')
    offset[0, 2, 2, :] = -float('inf')
    offset[0, 3, 3, :] = 1e30
    offset[0, 4, 4, :] = -3e38
    problem['offset'] = offset
    want_out, want_grads = _run('torch', problem, torch.float32, 'cpu')
    out, grads = _run('triton', problem, torch.float32, DEVICE)
    assert torch.isfinite(out).all()
    _assert_close('output', out, want_out, torch.float32)
    for name in want_grads:
        assert torch.isfinite(grads[name]).all(), name
        _assert_close(f'grad {name}', grads[name], want_grads[name], torch.float32)
    for ch, row in ((0, 0), (1, 1), (2, 2), (3, 3), (4, 4)):
        assert torch.count_nonzero(grads['offset'][0, ch, row].cpu()) == 0


@kernels
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16], ids=str)
def test_layer_contract(dtype):
    """DeformableConv2d on 'triton' equals 'torch', outputs and every parameter's grad."""
    from mmdcn_plugin import DeformableConv2d
    torch.manual_seed(0)
    layers = {}
    for backend in ('torch', 'triton'):
        torch.manual_seed(0)
        layer = DeformableConv2d(8, 6, 3, padding=1, groups=2, deform_groups=2, bias=True,
                                 backend=backend)
        with torch.no_grad():  # a field that actually deforms
            layer.offset_head.last_layer().weight.normal_(0, 0.3)
        layers[backend] = layer
    x = torch.randn(1, 8, 5, 6)  # 30 output pixels: one tile of rows
    results = {}
    for backend, layer in layers.items():
        device = DEVICE if backend == 'triton' else torch.device('cpu')
        compute = dtype if backend == 'triton' else torch.float64
        layer = layer.to(device, compute)
        inp = x.to(dtype).to(device, compute).requires_grad_()
        out = layer(inp)
        out.backward(torch.ones_like(out))
        results[backend] = [out, inp.grad] + [p.grad for p in layer.parameters()]
    for i, (got, want) in enumerate(zip(results['triton'], results['torch'])):
        _assert_close(f'tensor {i}', got, want, dtype)


@kernels
def test_deterministic_backward_is_bitwise_reproducible(monkeypatch):
    from mmdcn_plugin.ops import deform_conv as op_module
    monkeypatch.setattr(op_module, '_warned_nondeterministic', False)  # warns once a process
    problem = make_problem(**GEOMETRIES['c24-dg3-o20'])
    default = _run('triton', problem, torch.float32, DEVICE)[1]
    torch.use_deterministic_algorithms(True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            first = _run('triton', problem, torch.float32, DEVICE)[1]
            second = _run('triton', problem, torch.float32, DEVICE)[1]
    finally:
        torch.use_deterministic_algorithms(False)
    # No "not bitwise reproducible" warning for triton (other warnings, e.g. numpy's
    # deprecations inside an older Triton's interpreter, are not the op's business).
    assert not [w for w in caught if 'reproducible' in str(w.message)], caught
    for name in first:
        assert torch.equal(first[name], second[name]), name
        # The fixed-point scatter agrees with the fp32 atomics to fp32 precision.
        _assert_close(f'grad {name}', first[name], default[name], torch.float32)


@kernels
def test_empty_batch_and_float64():
    from mmdcn_plugin.ops.backends.triton import deform_conv2d_triton
    from mmdcn_plugin.ops.checks import check_deform_conv2d_args
    problem = _cast(make_problem(n=0), torch.float32, DEVICE)
    geo = check_deform_conv2d_args(problem['input'], problem['offset'], problem['weight'],
                                   problem['bias'], problem['stride'], problem['padding'],
                                   problem['dilation'], problem['mask'])
    out = deform_conv2d_triton(problem['input'], problem['offset'], problem['weight'],
                               problem['bias'], problem['mask'], geo)
    assert out.shape == (0, 6, 3, 6)
    out.sum().backward()
    assert torch.count_nonzero(problem['weight'].grad) == 0
    # float64 is served by 'fast', exactly.
    problem = make_problem()
    want_out, want_grads = _run('torch', problem, torch.float64, 'cpu')
    out, grads = _run('triton', problem, torch.float64, DEVICE)
    assert torch.allclose(out.cpu(), want_out, atol=1e-10)
    for name in want_grads:
        assert torch.allclose(grads[name].cpu(), want_grads[name], atol=1e-10), name


@kernels
def test_strided_and_channels_last_inputs():
    problem = _cast(make_problem(**GEOMETRIES['c24-dg3-o20']), torch.float32, DEVICE)
    want = deform_conv2d(**problem, backend='triton')
    odd = dict(problem)
    odd['input'] = problem['input'].contiguous(memory_format=torch.channels_last)
    odd['offset'] = problem['offset'].transpose(2, 3).contiguous().transpose(2, 3)
    odd['weight'] = problem['weight'].permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert torch.equal(deform_conv2d(**odd, backend='triton'), want)


@kernels
@pytest.mark.parametrize('geometry', QUICK)
def test_every_element_of_the_kernels_outputs_is_written(monkeypatch, geometry):
    """The buffers the kernels write without zeroing first (the output, the weight
    gradient's per-split partial sums) come poisoned with NaN: an element a kernel
    leaves unwritten then fails the comparison with the reference, where fresh memory
    (zeros under the interpreter) could hide it."""
    from mmdcn_plugin.ops.backends.triton import launch
    poisoned = []

    class PoisonedTorch:
        def __getattr__(self, name):
            return getattr(torch, name)

        @staticmethod
        def empty(*size, **kwargs):
            out = torch.empty(*size, **kwargs)
            poisoned.append(tuple(out.shape))
            return out.fill_(float('nan'))
    monkeypatch.setattr(launch, 'torch', PoisonedTorch())
    _check_against_reference(make_problem(**GEOMETRIES[geometry]), torch.float32)
    assert len(poisoned) >= 2, poisoned  # the output and the partial weight gradients


@kernels
def test_padded_grad_out_gives_the_same_gradients(monkeypatch):
    """The sweep's experiment, launch.PAD_GRAD_OUT: the backward kernels read grad_out
    from zero-padded planes, up to their padded length. 35 pixels are padded to 48, and
    the last pixel tile reaches past even that: the gradients match the reference and
    are the same bits as without padding."""
    from mmdcn_plugin.ops.backends.triton import launch
    problem = make_problem(n=2, c_in=16, h=7, w=5, c_out=16, kernel=3, stride=1, padding=1,
                           groups=1, deform_groups=1)
    unpadded = _run('triton', problem, torch.float32, DEVICE)[1]
    monkeypatch.setattr(launch, 'PAD_GRAD_OUT', True)
    grad_out = torch.randn(2, 16, 7, 5, device=DEVICE)
    padded, strides, p_gy = launch.grad_out_planes(grad_out)
    assert p_gy == 48 and strides == (16 * 48, 48) and padded[:, :, 35:].eq(0).all()
    _check_against_reference(problem, torch.float32)
    for name, grad in _run('triton', problem, torch.float32, DEVICE)[1].items():
        assert torch.equal(grad, unpadded[name]), name


@kernels
def test_layout_copies_once_per_pass(monkeypatch):
    """An NCHW input is copied channels-last once in the forward and once in the
    backward, which both backward kernels then share; the weight is put in the
    kernels' layout once, in the forward, and the backward reuses that copy."""
    from mmdcn_plugin.ops.backends.triton import launch
    copies = []

    def counting(name):
        real = getattr(launch, name)

        def layout(t):
            out = real(t)
            if out.data_ptr() != t.data_ptr():
                copies.append(name)
            return out
        monkeypatch.setattr(launch, name, layout)
    counting('channels_last')
    counting('output_channels_last')
    problem = _cast(make_problem(**GEOMETRIES['c24-dg3-o20']), torch.float32, DEVICE)
    out = deform_conv2d(**problem, backend='triton')
    assert sorted(copies) == ['channels_last', 'output_channels_last']
    copies.clear()
    out.backward(torch.randn_like(out))
    assert copies == ['channels_last']
    assert all(problem[k].grad is not None for k in ('input', 'offset', 'mask', 'weight'))
    assert problem['weight'].grad.shape == problem['weight'].shape


@kernels
@gpu_only
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_realistic_channels_on_gpu(dtype):
    """ResNet-like channel counts: the GPU tile sizes, several blocks of each kind."""
    problem = make_problem(n=2, c_in=64, c_out=96, h=20, w=24, kernel=3, stride=1, padding=1,
                           groups=1, deform_groups=1, offset_scale=3.0)
    _check_against_reference(problem, dtype)


@kernels
@gpu_only
def test_tf32_only_when_pytorch_allows_it():
    from mmdcn_plugin.ops.backends.triton.launch import dot_precision
    x = torch.zeros(1, device=DEVICE)
    saved = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        assert dot_precision(x) == 'ieee'
        torch.backends.cuda.matmul.allow_tf32 = True
        assert dot_precision(x) == 'tf32'
        assert dot_precision(x.half()) is None
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


@kernels
def test_probe_passes_the_kernels_and_catches_failures_and_wrong_numbers(monkeypatch):
    """The probe 'auto' runs before taking triton on a GPU: right kernels pass without a
    warning; a kernel that raises, or a wrong output or gradient, fails with a warning
    that says which."""
    from mmdcn_plugin.ops.backends.triton import launch
    # The probe's own 64 channels on a GPU; 16 under the interpreter (quicker).
    channels = triton_probe.PROBE_CHANNELS if ON_GPU else 16
    with warnings.catch_warnings():
        warnings.simplefilter('error', RuntimeWarning)
        assert triton_probe.triton_kernels_run_on(DEVICE, channels) is True
        # The first 'auto' call of an evaluation comes inside inference_mode.
        with torch.inference_mode(), torch.autocast(DEVICE.type, dtype=torch.bfloat16):
            assert triton_probe.triton_kernels_run_on(DEVICE, channels) is True
        # ... or after mmengine's randomness=dict(deterministic=True), under which the
        # reference's ('fast') CUDA grid_sample backward would raise.
        torch.use_deterministic_algorithms(True)
        try:
            assert triton_probe.triton_kernels_run_on(DEVICE, channels) is True
        finally:
            torch.use_deterministic_algorithms(False)

    def out_of_resources(*args, **kwargs):
        raise RuntimeError('out of resource: shared memory')
    forward, backward_weight = launch.forward, launch.backward_weight
    cases = [('forward', out_of_resources, r'failed \(RuntimeError: out of resource'),
             ('forward', lambda *a: 1.05 * forward(*a), 'wrong output'),
             ('backward_weight', lambda *a: backward_weight(*a).flip(0), 'wrong grad weight')]
    for name, broken, message in cases:
        with monkeypatch.context() as patch:
            patch.setattr(launch, name, broken)
            with pytest.warns(RuntimeWarning, match=message):
                assert triton_probe.triton_kernels_run_on(DEVICE, channels) is False


@kernels
def test_tile_sweep_reports_every_candidate_and_keeps_rows_when_cut_short(monkeypatch,
                                                                         tmp_path):
    """The tile sweep (``triton.tune``) on the 'tiny' shape: a row per candidate, a
    failing candidate (a channel block that is no power of two) recorded as NaN and
    never chosen, the op timed with the fastest tiles, the JSON rewritten after every
    row, and the tile overrides gone afterwards, also when the run fails midway."""
    import json
    import math
    from mmdcn_plugin.ops.backends.triton import launch, tune
    from mmdcn_plugin.ops.backends.triton.launch import Tiles

    good, bad = Tiles(32, 16, 16, 1, 1), Tiles(32, 16, 24, 1, 1)
    monkeypatch.setattr(tune, 'CANDIDATES', {'forward': [good, bad], 'data': [good],
                                             'weight': [good]})
    out = tmp_path / 'tune.json'
    tune.main(['--device', DEVICE.type, '--shapes', 'tiny', '--dtypes', 'fp32',
               '--iters', '1', '--json', str(out)])
    rows = json.loads(out.read_text())['results']
    sweep = [(r['kernel'], tuple(r['tiles']), math.isnan(r['ms'])) for r in rows[:-1]]
    assert sweep == [('forward', tuple(good), False), ('forward', tuple(bad), True),
                     ('data', tuple(good), False), ('weight', tuple(good), False)]
    assert rows[1]['note']  # why it failed
    op = rows[-1]
    assert op['kernel'] == 'op' and op['best_tiles'] == {k: list(good) for k in
                                                           ('forward', 'data', 'weight')}
    assert op['triton_train_ms'] > 0 and op['forward_vs_conv'] > 0
    assert launch.TILE_OVERRIDES == {}

    def fail(*args, **kwargs):
        raise RuntimeError('cut short')
    monkeypatch.setattr(tune, '_whole_op', fail)
    out.unlink()
    with pytest.raises(RuntimeError, match='cut short'):
        tune.main(['--device', DEVICE.type, '--shapes', 'tiny', '--dtypes', 'fp32',
                   '--kernels', 'forward', '--iters', '1', '--json', str(out)])
    assert len(json.loads(out.read_text())['results']) == 2  # the sweep's rows survive
    assert launch.TILE_OVERRIDES == {}


@kernels
def test_stage_variants_leave_out_what_they_say():
    """The timing variants of ``triton.stages`` compute what their names claim, so a
    profile built from them measures those stages: ``no-dot`` is the op with an
    all-ones weight (forward) or grad_out (weight gradient), ``one-corner`` is exact for
    integer offsets and not otherwise, ``no-sampling`` never reads the input."""
    from mmdcn_plugin.ops.backends.triton import launch
    from mmdcn_plugin.ops.checks import check_deform_conv2d_args
    p = make_problem(n=2, c_in=16, c_out=16, h=5, w=6, kernel=3, stride=1, padding=1,
                     groups=1, deform_groups=1, dtype=torch.float64)
    t = {k: p[k].detach().to(DEVICE) for k in ('input', 'offset', 'mask', 'weight')}
    x, off, msk, w = (t[k].float() for k in ('input', 'offset', 'mask', 'weight'))
    geo = check_deform_conv2d_args(x, off, w, None, 1, 1, 1, msk)

    def forward(leave_out, offset=off, inp=x):
        launch.LEAVE_OUT.clear()
        if leave_out:
            launch.LEAVE_OUT['forward'] = leave_out
        try:
            return launch.forward(inp, offset, msk, w, None, geo).double()
        finally:
            launch.LEAVE_OUT.clear()

    def reference(weight, offset=t['offset']):
        return deform_conv2d_reference(t['input'], offset, weight, None, 1, 1, 1, t['mask'])

    ones = torch.ones_like(t['weight'])
    torch.testing.assert_close(forward(launch.NO_DOT), reference(ones), rtol=0, atol=1e-4)
    whole = t['offset'].round()
    torch.testing.assert_close(forward(launch.ONE_CORNER, whole.float()),
                               reference(t['weight'], whole), rtol=0, atol=1e-4)
    assert (forward(launch.ONE_CORNER) - forward(0)).abs().max() > 0.1
    stand_in = forward(launch.NO_SAMPLING)
    assert torch.equal(stand_in, forward(launch.NO_SAMPLING, inp=x * 3))
    assert not torch.equal(stand_in, forward(0))

    leaf = t['weight'].clone().requires_grad_()
    out = deform_conv2d_reference(t['input'], t['offset'], leaf, None, 1, 1, 1, t['mask'])
    (want,) = torch.autograd.grad(out, leaf, torch.ones_like(out))
    launch.LEAVE_OUT['weight'] = launch.NO_DOT
    try:
        got = launch.backward_weight(x, off, msk, torch.randn_like(x), geo)
    finally:
        launch.LEAVE_OUT.clear()
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-3)


@kernels
def test_stage_timing_reports_every_variant_and_clears_its_switch(monkeypatch, tmp_path):
    """``triton.stages`` on the 'tiny' shape: a row per kernel and variant, the JSON
    rewritten after every row, ``LEAVE_OUT`` empty afterwards, also when a run fails."""
    import json
    from mmdcn_plugin.ops.backends.triton import launch, stages

    out = tmp_path / 'stages.json'
    stages.main(['--device', DEVICE.type, '--shapes', 'tiny', '--dtypes', 'fp32',
                 '--iters', '1', '--json', str(out)])
    rows = json.loads(out.read_text())['results']
    assert [(r['kernel'], r['variant']) for r in rows] == [
        (kernel, variant) for kernel, variants in stages.KERNEL_VARIANTS.items()
        for variant in variants]
    assert all(r['ms'] > 0 and not r['note'] for r in rows)
    assert [r['vs_full'] for r in rows if r['variant'] == 'full'] == [1.0, 1.0, 1.0]
    assert launch.LEAVE_OUT == {}

    calls = []

    def cut_short_in_the_second_variant(*args, **kwargs):
        calls.append(dict(launch.LEAVE_OUT))
        if len(calls) == 4:  # 'full': two warm-up calls and one timed
            raise KeyboardInterrupt  # a run cut short, not a failing variant
        return torch.zeros(())
    monkeypatch.setattr(launch, 'forward', cut_short_in_the_second_variant)
    out.unlink()
    with pytest.raises(KeyboardInterrupt):
        stages.main(['--device', DEVICE.type, '--shapes', 'tiny', '--dtypes', 'fp32',
                     '--iters', '1', '--json', str(out)])
    assert calls[-1] == {'forward': launch.ONE_CORNER}
    assert launch.LEAVE_OUT == {}
    assert len(json.loads(out.read_text())['results']) == 1  # 'full' was kept


# --- compiled for the GPU, on a machine without one -------------------------------------

NO_GPU_COMPILE = pytest.mark.skipif(
    not HAS_TRITON or INTERPRETING or ON_GPU,
    reason='compiles for a GPU on a machine without one (Triton ships ptxas and cuobjdump); '
           'on a GPU the tests above compile the kernels for real')


@NO_GPU_COMPILE
@pytest.mark.parametrize('dtype', ['fp16', 'bf16', 'tf32', 'fp32'])
def test_kernels_compile_for_hopper_as_launched(dtype, monkeypatch):
    """The backend's own launches at c5 (fp16: also c3), with choose_tiles's tiles and
    Triton's specialisation of the real integers, compiled for sm_90: every kernel
    multiplies with Hopper's HGMMA (strict fp32: on the FMA units) and, but in strict
    fp32, keeps everything in registers.  fp16 also: the deterministic input gradient
    adds int64, DCNv1 compiles, and so does the forward for Ampere (HMMA)."""
    from mmdcn_plugin.ops.backends.triton import launch, precompile, resources, tune
    from mmdcn_plugin.ops.checks import check_deform_conv2d_args
    if dtype == 'tf32':  # what launch passes for fp32 CUDA tensors while TF32 is allowed
        monkeypatch.setattr(launch, 'dot_precision',
                            lambda t: 'tf32' if t.dtype == torch.float32 else None)
    torch_dtype = tune.DTYPES['fp32' if dtype == 'tf32' else dtype]
    with precompile.compile_only(90, precompile.MULTIPROCESSORS) as compiled:
        for shape in ('c3', 'c5') if dtype == 'fp16' else ('c5',):
            tensors = tune.problem(tune.SHAPES[shape], torch_dtype, torch.device('cpu'))
            x, offset, mask, weight, _ = tensors
            geo = check_deform_conv2d_args(x, offset, weight, None, 1, 1, 1, mask)
            for kernel, run in tune.kernel_runs(*tensors, geo).items():
                run()
                usage = resources.cubin_usage(compiled[-1].asm['cubin'])
                assert usage['mma'] == ('none' if dtype == 'fp32' else 'HGMMA'), kernel
                if dtype != 'fp32':  # strict fp32 spills 8-32 B (docs/gpu/README.md)
                    assert usage['stack'] == usage['local'] == 0, (shape, kernel, usage)
        if dtype != 'fp16':
            return
        tune.kernel_runs(*tensors, geo, deterministic=True)['data']()
        assert re.search(r'(red|atom)\.global[.\w]*\.[su]64', compiled[-1].asm['ptx'])
        dcnv1 = check_deform_conv2d_args(x, offset, weight, None, 1, 1, 1, None)
        launch.forward(x, offset, None, weight, None, dcnv1)
        assert compiled[-1].metadata.name == 'deform_conv_forward_kernel'
    with precompile.compile_only(80, 108) as compiled:
        launch.forward(x, offset, mask, weight, None, geo)
    assert resources.cubin_usage(compiled[-1].asm['cubin'])['mma'] == 'HMMA'


def test_resource_and_instruction_counts_are_read_from_cuobjdump():
    from mmdcn_plugin.ops.backends.triton.resources import (count_instructions,
                                                            parse_res_usage)
    text = (" Function deform_conv_backward_data_kernel:\n"
            "  REG:128 STACK:32 SHARED:1024 LOCAL:0 CONSTANT[0]:712 TEXTURE:0\n")
    assert parse_res_usage(text) == {'registers': 128, 'stack': 32, 'local': 0}
    with pytest.raises(ValueError, match='no registers'):
        parse_res_usage(text.replace('REG:128', 'REG:'))
    sass = ('        /*0a10*/  LDG.E.128 R4, desc[UR6][R2.64] ;\n'
            '        /*0a20*/  LDG.E.U16 R8, desc[UR6][R6.64] ;\n'
            '        /*0a30*/  LDG.E R9, desc[UR6][R6.64+0x4] ;\n'
            '        /*0a40*/  LDG.E.64 R10, desc[UR6][R6.64] ;\n'
            '        /*0a50*/  HGMMA.64x64x16.F32 R24, gdesc[UR8], R24 ;\n')
    assert count_instructions(sass) == {'wide_loads': 2, 'narrow_loads': 2, 'mma': 'HGMMA'}
    assert count_instructions('FFMA R1, R2, R3, R1 ;')['mma'] == 'none'


@NO_GPU_COMPILE
def test_resources_tool_reports_every_candidate(tmp_path, capsys, monkeypatch):
    """The command line compiles each candidate of the sweep as launched and writes a
    row for it, the stage variants left out."""
    import json
    from mmdcn_plugin.ops.backends.triton import launch, precompile
    from mmdcn_plugin.ops.backends.triton.launch import Tiles
    tiles = [Tiles(64, 64, 32, 8, 2), Tiles(32, 64, 32, 4, 2)]
    monkeypatch.setattr(precompile, 'CANDIDATES', {'weight': tiles, 'forward': tiles[:1]})
    from mmdcn_plugin.ops.backends.triton import resources
    monkeypatch.setattr(resources, 'CANDIDATES', precompile.CANDIDATES)
    resources.main(['--kernels', 'weight', '--dtypes', 'bf16', '--shapes', 'c5', '--json',
                    str(tmp_path / 'r.json')])
    rows = json.loads((tmp_path / 'r.json').read_text())['rows']
    assert [(r['kernel'], r['tiles'], r['variant']) for r in rows] == [
        ('weight', list(t), 'candidate') for t in tiles]
    assert all(r['registers'] > 0 and r['shared'] > 0 and r['mma'] == 'HGMMA'
               and r['wide_loads'] > 0 for r in rows)
    assert capsys.readouterr().out.count('registers') == 2
    assert launch.TILE_OVERRIDES == {}
    with pytest.raises(SystemExit):
        resources.main(['--dtypes', 'fp8'])
    assert '--dtypes: expected' in capsys.readouterr().err


@NO_GPU_COMPILE
def test_precompiled_kernels_are_loaded_from_the_cache_not_compiled_again(tmp_path,
                                                                           monkeypatch,
                                                                           capsys):
    """precompile makes the sweep's and the stages' launches as compiles for sm_90 into a
    cache; the same launches in a process that has only that cache compile nothing."""
    from triton.backends.nvidia.compiler import CUDABackend
    from mmdcn_plugin.ops.backends.triton import launch, precompile, stages
    from mmdcn_plugin.ops.backends.triton.launch import Tiles
    tiles = Tiles(32, 16, 16, 4, 1)
    monkeypatch.setattr(precompile, 'CANDIDATES', {k: [tiles] for k in
                                                   ('forward', 'data', 'weight')})
    monkeypatch.setattr(stages, 'KERNEL_VARIANTS', {
        'forward': {'full': 0, 'no-dot': launch.NO_DOT},
        'data': {'no-input-grad': (False, True, True, False)}})
    splits = launch.weight_splits
    compiles = []
    make_cubin = CUDABackend.make_cubin
    monkeypatch.setattr(CUDABackend, 'make_cubin',
                        lambda self, *a, **k: compiles.append(1) or make_cubin(self, *a, **k))
    argv = ['--out', str(tmp_path / 'cache'), '--dtypes', 'fp16', '--shapes', 'tiny']
    cache_dir = os.environ.get('TRITON_CACHE_DIR')
    manifest = precompile.main(argv)
    # 3 candidates, the deterministic input gradient, the padded-grad_out gradients (30
    # pixels), 3 stage variants; each a new kernel
    assert manifest['launches'] == 9 and manifest['entries'] == len(compiles) == 9
    assert manifest['capability'] == 90 and manifest['triton_key']
    assert launch.weight_splits is splits  # launch is as it was
    kernels = (launch.deform_conv_forward_kernel, launch.deform_conv_backward_data_kernel,
               launch.deform_conv_backward_weight_kernel)
    assert not any(isinstance(k, precompile._Warmup) for k in kernels)
    compiles.clear()  # compile_only starts with no kernel in memory: only the files remain
    assert precompile.main(argv)['entries'] == 9
    assert compiles == []
    assert launch.PAD_GRAD_OUT is False
    # The op's own launches (choose_tiles's tiles): the forward's is the stages' 'full'
    # one, loaded; the gradients' (not the candidate's tiles) compiled once, then loaded;
    # and --check says so.
    cache = str(tmp_path / 'cache')
    assert precompile.replay(cache, manifest) == (3, 2) and len(compiles) == 2
    assert precompile.replay(cache, manifest) == (3, 0) and len(compiles) == 2
    assert precompile.main(['--check', cache]) is True
    assert "the op's 3 launches at fp16 tiny: 3 loaded from it, 0 compiled here" \
        in capsys.readouterr().out
    assert len(compiles) == 2 and os.environ.get('TRITON_CACHE_DIR') == cache_dir


@pytest.mark.skipif(not HAS_TRITON, reason='Triton is not installed')
def test_precompile_check_says_whether_the_cache_fits_this_triton(tmp_path, capsys):
    import json
    from mmdcn_plugin.ops.backends.triton import precompile
    (tmp_path / 'K1').mkdir()
    manifest = dict(precompile.triton_keys(90), capability=90, multiprocessors=132,
                    environment=precompile.key_environment())
    (tmp_path / 'manifest.json').write_text(json.dumps(manifest))
    assert precompile.main(['--check', str(tmp_path), '--no-replay']) is True
    assert '1 entries, built by this Triton' in capsys.readouterr().out
    manifest['triton_key'] = 'another'
    (tmp_path / 'manifest.json').write_text(json.dumps(manifest))
    assert precompile.check(str(tmp_path)) is False
    out = capsys.readouterr().out
    assert 'built by another Triton or for another GPU (triton_key;' in out
    assert 'of its 1 entries' in out
    # A setting that Triton keys kernels on (TRITON_DEBUG), set there and not here
    manifest = dict(manifest, triton_key=precompile.triton_keys(90)['triton_key'],
                    environment=dict(manifest['environment'], debug='True'))
    (tmp_path / 'manifest.json').write_text(json.dumps(manifest))
    assert precompile.check(str(tmp_path)) is False
    assert '(debug=False here, True there;' in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match=r"expected manifest.json in '.*K1'"):
        precompile.check(str(tmp_path / 'K1'))  # a folder without a manifest
