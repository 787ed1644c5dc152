"""The ONNX DeformConv node (opset >= 19) against this package's forward.

onnxruntime's DeformConv kernel and ONNX's reference evaluator are independent
implementations of the ONNX spec: agreement on odd geometry proves the offset/mask
layout (the same as mmcv's), agreement on hostile offsets and border points proves
the sampling rules.
"""
import warnings

import pytest
import torch
from torch import nn

import mmdcn_plugin.ops.deform_conv as deform_conv_module
from mmdcn_plugin.deploy import (EXPORTERS, deform_conv_node, export_onnx, onnx_deform_conv,
                                 op_counts, resolve_mode)
from mmdcn_plugin.deploy.runtime import default_opset, exporter_max_opset, onnxruntime_runs
from helpers import backends_on
from mmdcn_plugin.ops import deform_conv2d

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')


class FunctionalDCN(nn.Module):
    """``deform_conv2d`` with given offsets and mask: the op alone, as graph inputs."""

    def __init__(self, c_in=8, c_out=6, kernel=(3, 2), groups=2, bias=True, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.in_channels = c_in
        self.weight = nn.Parameter(torch.randn(c_out, c_in // groups, *kernel, generator=gen))
        self.bias = nn.Parameter(torch.randn(c_out, generator=gen)) if bias else None
        self.geometry = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))

    def forward(self, x, offset, mask):
        return deform_conv2d(x, offset, self.weight, self.bias, mask=mask, **self.geometry)


def dcn_inputs(module, batch=2, size=(11, 13), deform_groups=3, seed=1, scale=3.0):
    """x, offset (a few pixels, past the borders) and mask (in [0, 1]) for ``module``."""
    gen = torch.Generator().manual_seed(seed)
    kh, kw = module.weight.shape[2:]
    x = torch.randn(batch, module.in_channels, *size, generator=gen)
    (sh, sw), (ph, pw), (dh, dw) = (module.geometry[k] for k in ('stride', 'padding',
                                                                  'dilation'))
    h_out = (size[0] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (size[1] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    k = deform_groups * kh * kw
    offset = torch.randn(batch, 2 * k, h_out, w_out, generator=gen) * scale
    mask = torch.rand(batch, k, h_out, w_out, generator=gen)
    return x, offset, mask


def export_functional(module, args, path, exporter='torchscript', opset=19, mode='native'):
    names = ['x', 'offset', 'mask'][:len(args)]
    with onnx_deform_conv(mode, opset), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        if exporter == 'dynamo':
            torch.onnx.export(module, tuple(args), str(path), dynamo=True, opset_version=opset,
                              input_names=names, output_names=['y'], external_data=False,
                              verbose=False)
        else:
            torch.onnx.export(module, tuple(args), str(path), dynamo=False, opset_version=opset,
                              input_names=names, output_names=['y'],
                              dynamic_axes={n: {0: 'batch'} for n in names + ['y']})
    return names


def run_ort(path, names, args):
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return torch.from_numpy(session.run(None, {n: a.numpy() for n, a in zip(names, args)})[0])


@pytest.fixture(scope='module')
def module24():
    # 24 input channels: divisible by 2 weight groups and 3 offset groups.
    return FunctionalDCN(c_in=24, c_out=6).eval()


@pytest.fixture(scope='module')
def exported24(module24, tmp_path_factory):
    """module24 exported once (TorchScript, opset 19, native)."""
    path = tmp_path_factory.mktemp('onnx') / 'dcn.onnx'
    args = dcn_inputs(module24)
    names = export_functional(module24, args, path)
    return path, names


# ------------------------------------------------------------------ layout and geometry

def test_native_node_has_the_layers_attributes(exported24):
    path, _ = exported24
    model = onnx.load(str(path))
    (node,) = [n for n in model.graph.node if n.op_type == 'DeformConv']
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs == dict(dilations=[1, 2], group=2, kernel_shape=[3, 2], offset_group=3,
                         pads=[1, 0, 1, 0], strides=[2, 1])
    assert len(node.input) == 5  # X, W, offset, B, mask
    assert op_counts(str(path))['GatherElements'] + op_counts(str(path))['Gather'] == 0


def test_onnxruntime_matches_forward_with_odd_geometry(module24, exported24):
    # kernel 3x2, stride (2, 1), padding (1, 0), dilation (1, 2), two weight groups,
    # three offset groups, offsets of several pixels: a layout mix-up would be O(1).
    path, names = exported24
    for batch, seed in ((2, 1), (3, 2)):  # the batch axis stays dynamic
        args = dcn_inputs(module24, batch=batch, seed=seed)
        with torch.no_grad():
            expected = module24(*args)
        got = run_ort(path, names, args)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_reference_evaluator_agrees(module24, exported24):
    from onnx.reference import ReferenceEvaluator
    path, names = exported24
    args = dcn_inputs(module24, seed=5)
    with torch.no_grad():
        expected = module24(*args)
    (got,) = ReferenceEvaluator(str(path)).run(None, {n: a.numpy() for n, a in zip(names, args)})
    torch.testing.assert_close(torch.from_numpy(got).float(), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize('bias', [True, False], ids=['bias', 'no-bias'])
@pytest.mark.parametrize('with_mask', [True, False], ids=['dcnv2', 'dcnv1'])
def test_bias_and_mask_optional(tmp_path, bias, with_mask):
    module = FunctionalDCN(c_in=24, c_out=4, kernel=(3, 3), groups=1, bias=bias).eval()
    x, offset, mask = dcn_inputs(module, deform_groups=1)
    args = (x, offset, mask) if with_mask else (x, offset)
    forward = module if with_mask else _NoMask(module)
    names = export_functional(forward, args, tmp_path / 'dcn.onnx')
    (node,) = [n for n in onnx.load(str(tmp_path / 'dcn.onnx')).graph.node
               if n.op_type == 'DeformConv']
    assert len(node.input) == (5 if with_mask else 4)
    with torch.no_grad():
        expected = forward(*args)
    torch.testing.assert_close(run_ort(tmp_path / 'dcn.onnx', names, args), expected,
                               rtol=0, atol=1e-4)


class _NoMask(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, offset):
        m = self.inner
        return deform_conv2d(x, offset, m.weight, m.bias, **m.geometry)


# ------------------------------------------------------------- hostile offsets, borders

N, C, H, W = 1, 4, 7, 9


class SmallDCN(nn.Module):
    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(5, C, 3, 3, generator=gen))
        self.bias = nn.Parameter(torch.randn(5, generator=gen))

    def forward(self, x, offset, mask):
        return deform_conv2d(x, offset, self.weight, self.bias, 1, 1, 1, mask)


def offsets_to(ay: float, ax: float) -> torch.Tensor:
    """Offsets that move every kernel point of every output cell to pixel ``(ay, ax)``."""
    rows = torch.arange(H, dtype=torch.float64).view(H, 1)
    cols = torch.arange(W, dtype=torch.float64).view(1, W)
    off = torch.zeros(N, 9, 2, H, W, dtype=torch.float64)
    for i in range(3):
        for j in range(3):
            off[:, 3 * i + j, 0] = ay - (rows - 1 + i)
            off[:, 3 * i + j, 1] = ax - (cols - 1 + j)
    return off.reshape(N, 18, H, W).float()


BORDER_Y = [-1.0, -1 + 1e-6, -0.5, 0.0, H - 1.0, H - 1 + 1e-5, H - 1e-6, float(H), H + 1e-6]
BORDER_X = [-1.0, -0.5, 0.0, W - 1.0, W - 1e-6, float(W), 4.25]


@pytest.fixture(scope='module')
def small_session(tmp_path_factory):
    path = tmp_path_factory.mktemp('onnx') / 'small.onnx'
    module = SmallDCN().eval()
    args = (torch.randn(N, C, H, W), torch.zeros(N, 18, H, W), torch.rand(N, 9, H, W))
    names = export_functional(module, args, path)
    return module, ort.InferenceSession(str(path), providers=['CPUExecutionProvider']), names


def _compare(small_session, offset):
    module, session, names = small_session
    backends = backends_on('cpu')   # cpp and mmcv when built; not triton (GPU only here)
    gen = torch.Generator().manual_seed(3)
    x, mask = torch.randn(N, C, H, W, generator=gen), torch.rand(N, 9, H, W, generator=gen)
    got = torch.from_numpy(session.run(None, {'x': x.numpy(), 'offset': offset.numpy(),
                                              'mask': mask.numpy()})[0])
    for backend in backends:
        with torch.no_grad():
            expected = deform_conv2d(x, offset, module.weight, module.bias, 1, 1, 1, mask,
                                     backend=backend)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5, equal_nan=False)
    return got


@pytest.mark.parametrize('ay', BORDER_Y)
@pytest.mark.parametrize('ax', BORDER_X)
def test_border_points_match(small_session, ay, ax):
    _compare(small_session, offsets_to(ay, ax))


@pytest.mark.parametrize('value', [1e4, -1e4, 1e30, -1e30, float('inf'), -float('inf'),
                                   float('nan')])
def test_hostile_offsets_sample_zero_in_both(small_session, value):
    got = _compare(small_session, torch.full((N, 18, H, W), value))
    # Every point is outside: only the bias is left, in onnxruntime as here.
    module = small_session[0]
    torch.testing.assert_close(got, module.bias.detach().view(1, -1, 1, 1).expand_as(got))


def test_isolated_nan_and_inf_offsets(small_session):
    gen = torch.Generator().manual_seed(4)
    offset = torch.randn(N, 18, H, W, generator=gen) * 3
    offset[0, 0, 2, 3] = float('nan')
    offset[0, 5, 1, 1] = float('inf')
    offset[0, 8, 4, 4] = -float('inf')
    got = _compare(small_session, offset)
    assert torch.isfinite(got).all()


# ------------------------------------------------------------------------ both exporters

@pytest.mark.parametrize('exporter', EXPORTERS)
def test_layer_exports_one_node_with_either_exporter(tmp_path, exporter):
    if exporter == 'dynamo':
        pytest.importorskip('onnxscript')
    from mmdcn_plugin.layers import DeformableConv2d
    torch.manual_seed(0)
    layer = DeformableConv2d(8, 6, 3, padding=1, deform_groups=2, bias=True).eval()
    last = layer.offset_head.last_layer()
    with torch.no_grad():
        last.weight.normal_(0, 0.5)
        last.bias.normal_(0, 2)
    x = torch.randn(2, 8, 10, 12)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        result = export_onnx(layer, x, str(tmp_path / 'layer.onnx'), opset=19,
                             exporter=exporter)
    assert result.deform_conv == 'native'
    assert op_counts(result.path)['DeformConv'] == 1
    session = ort.InferenceSession(result.path, providers=['CPUExecutionProvider'])
    for batch in (x, torch.randn(3, 8, 10, 12)):
        with torch.no_grad():
            expected = layer(batch)
        (got,) = session.run(None, {'input': batch.numpy()})
        torch.testing.assert_close(torch.from_numpy(got), expected, rtol=0, atol=1e-4)


# ------------------------------------------------------------------ modes and the hook

def test_resolve_mode():
    assert resolve_mode('auto', 19) == 'native'
    assert resolve_mode('auto', 18) == 'gather'
    assert resolve_mode('gather', 20) == 'gather'
    with pytest.raises(ValueError, match=r'opset 18 is too old for the ONNX DeformConv '
                                         r'operator: expected opset >= 19, got 18'):
        resolve_mode('native', 18)
    with pytest.raises(ValueError, match=r"deform_conv must be one of .*got 'onnx'"):
        resolve_mode('onnx', 19)


def test_gather_mode_exports_no_deform_conv(tmp_path, module24):
    args = dcn_inputs(module24)
    names = export_functional(module24, args, tmp_path / 'g.onnx', opset=17, mode='auto')
    counts = op_counts(str(tmp_path / 'g.onnx'))
    assert counts['DeformConv'] == 0 and counts['Gather'] > 0
    with torch.no_grad():
        expected = module24(*args)
    torch.testing.assert_close(run_ort(tmp_path / 'g.onnx', names, args), expected,
                               rtol=0, atol=1e-4)


def test_hook_is_set_only_inside_the_block():
    hook = deform_conv_module.current_onnx_export_hook
    assert hook() is None
    with pytest.raises(RuntimeError, match='boom'):
        with onnx_deform_conv('native', 19):
            assert hook() is deform_conv_node
            with pytest.raises(RuntimeError, match='do not nest'):
                with onnx_deform_conv('gather', 19):
                    pass
            raise RuntimeError('boom')
    assert hook() is None
    # Outside an export the hook is never consulted, even while set.
    module = SmallDCN()
    args = (torch.randn(N, C, H, W), torch.zeros(N, 18, H, W), torch.rand(N, 9, H, W))
    with onnx_deform_conv('native', 19), torch.no_grad():
        inside = module(*args)
    with torch.no_grad():
        torch.testing.assert_close(inside, module(*args))


def test_hook_is_set_for_the_calling_thread_only():
    """An export on one thread neither changes nor blocks the op on another."""
    import threading
    seen = {}

    def other_thread():
        seen['hook'] = deform_conv_module.current_onnx_export_hook()
        with onnx_deform_conv('gather', 19):          # no 'do not nest': its own block
            seen['own'] = deform_conv_module.current_onnx_export_hook()

    with onnx_deform_conv('native', 19):
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        assert deform_conv_module.current_onnx_export_hook() is deform_conv_node
    assert seen['hook'] is None
    assert seen['own'] is not None and seen['own'] is not deform_conv_node
    assert deform_conv_module.current_onnx_export_hook() is None


def test_probe_tells_an_unsupported_model_from_a_bug_in_the_probe(monkeypatch):
    from mmdcn_plugin.deploy import runtime
    # DeformConv exists from opset 19: onnxruntime refuses it at 18 with its own error.
    assert onnxruntime_runs(18, deform_conv=True) is False

    def broken(opset, deform_conv):
        raise KeyError('a bug in the probe')

    monkeypatch.setattr(runtime, '_probe_model', broken)
    runtime.onnxruntime_runs.cache_clear()
    try:
        with pytest.raises(KeyError, match='a bug in the probe'):
            runtime.onnxruntime_runs(19, deform_conv=True)
    finally:
        runtime.onnxruntime_runs.cache_clear()


def test_default_opset_runs_deform_conv():
    opset = default_opset()
    assert opset <= min(onnx.defs.onnx_opset_version(), exporter_max_opset(dynamo=False))
    if onnxruntime_runs(19, deform_conv=True):
        assert opset >= 19 and onnxruntime_runs(opset, deform_conv=True)
