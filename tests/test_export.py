"""Export and compilation: ONNX (checked with onnxruntime), torch.compile, tools/export_onnx.py."""
import importlib.util
import os.path as osp
import warnings

import pytest
import torch

import mmdcn_plugin.ops.deform_conv as deform_conv_module
from mmdcn_plugin.layers import DeformableConv2d

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICK_DCN = osp.join(ROOT, 'configs', 'quickstart',
                     'faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')
QUICK_PLAIN = osp.join(ROOT, 'configs', 'quickstart', 'faster-rcnn_r50-narrow_fpn_synthetic.py')
HEADS = ('ConvOffsetHead', 'SeparableOffsetHead')


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'export_onnx_tool', osp.join(ROOT, 'tools', 'export_onnx.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def perturb_offsets(layer: DeformableConv2d, seed: int, scale: float = 0.5) -> None:
    """Give the offset head a non-zero last layer: offsets of a few pixels, past the borders."""
    gen = torch.Generator().manual_seed(seed)
    last = layer.offset_head.last_layer()
    with torch.no_grad():
        last.weight.copy_(torch.randn(last.weight.shape, generator=gen) * scale)
        last.bias.copy_(torch.randn(last.bias.shape, generator=gen) * 2)


def make_layer(modulated: bool, head: str, backend='torch') -> DeformableConv2d:
    torch.manual_seed(0)
    layer = DeformableConv2d(8, 6, 3, stride=(2, 1), padding=1, dilation=(1, 2), groups=2,
                             deform_groups=2, bias=True, modulated=modulated,
                             offset_head=dict(type=head), backend=backend)
    perturb_offsets(layer, seed=1)
    return layer.eval()


def export_legacy(module, x, path, opset=17):
    with warnings.catch_warnings():  # TracerWarnings of the shape checks; deprecation
        warnings.simplefilter('ignore')
        torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=opset,
                          input_names=['x'], output_names=['y'],
                          dynamic_axes={'x': {0: 'batch'}, 'y': {0: 'batch'}})


def forbid_compiled_backends(monkeypatch):
    """Make the non-traceable backends fail loudly if the op ever picks them."""
    def refuse(*args):
        raise AssertionError('a non-torch backend ran while exporting or compiling')

    for name in ('cpp', 'fast', 'mmcv'):
        monkeypatch.setitem(deform_conv_module.BACKENDS, name,
                            deform_conv_module.BACKENDS[name]._replace(fn=refuse))


# ---------------------------------------------------------------------------- ONNX, one layer

@pytest.mark.parametrize('head', HEADS)
@pytest.mark.parametrize('modulated', [False, True], ids=['dcnv1', 'dcnv2'])
def test_layer_onnx_matches_onnxruntime(tmp_path, modulated, head):
    pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    layer = make_layer(modulated, head)
    x = torch.randn(2, 8, 11, 17)  # non-square; the batch axis is exported dynamic
    export_legacy(layer, x, tmp_path / 'layer.onnx')
    session = ort.InferenceSession(str(tmp_path / 'layer.onnx'),
                                   providers=['CPUExecutionProvider'])
    for batch in (x, torch.randn(3, 8, 11, 17)):
        with torch.no_grad():
            expected = layer(batch)
        (got,) = session.run(None, {'x': batch.numpy()})
        assert got.shape == tuple(expected.shape)
        torch.testing.assert_close(torch.from_numpy(got), expected, rtol=0, atol=1e-4)


def test_default_backend_switches_to_torch_for_onnx(tmp_path, monkeypatch):
    pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    layer = make_layer(True, 'ConvOffsetHead', backend=None)
    x = torch.randn(1, 8, 9, 13)
    with torch.no_grad():
        expected = layer(x)
    forbid_compiled_backends(monkeypatch)
    export_legacy(layer, x, tmp_path / 'layer.onnx')
    session = ort.InferenceSession(str(tmp_path / 'layer.onnx'),
                                   providers=['CPUExecutionProvider'])
    (got,) = session.run(None, {'x': x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- torch.compile

def _compile_matches_eager(layer, eager_layer, compile_backend):
    compiled = torch.compile(layer, fullgraph=True, backend=compile_backend)
    x = torch.randn(2, 8, 11, 17, requires_grad=True)
    out = compiled(x)  # fullgraph=True: any graph break raises here
    expected = eager_layer(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    grad_out = torch.randn_like(expected)
    got = torch.autograd.grad(out, [x, *layer.parameters()], grad_out)
    want = torch.autograd.grad(expected, [x, *eager_layer.parameters()], grad_out)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('head', HEADS)
@pytest.mark.parametrize('modulated', [False, True], ids=['dcnv1', 'dcnv2'])
def test_compile_fullgraph_matches_eager(modulated, head):
    torch._dynamo.reset()
    layer = make_layer(modulated, head)
    # aot_eager traces forward and backward exactly as inductor receives them, without
    # inductor's C++ build (half a minute on a cold cache); see the slow test below.
    _compile_matches_eager(layer, layer, 'aot_eager')


def test_compile_default_backend_switches_to_torch(monkeypatch):
    torch._dynamo.reset()
    layer = make_layer(True, 'SeparableOffsetHead', backend=None)
    eager = make_layer(True, 'SeparableOffsetHead', backend='torch')
    eager.load_state_dict(layer.state_dict())
    # Under dynamo torch.compiler.is_compiling() is True while the op picks its
    # backend: 'cpp', 'fast' or 'mmcv' would raise, inside the graph or in a break.
    forbid_compiled_backends(monkeypatch)
    _compile_matches_eager(layer, eager, 'aot_eager')


def test_explicit_torch_backend_has_one_graph():
    torch._dynamo.reset()
    layer = make_layer(True, 'ConvOffsetHead')
    explanation = torch._dynamo.explain(layer)(torch.randn(1, 8, 11, 17))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.slow
def test_compile_inductor_matches_eager():
    torch._dynamo.reset()
    layer = make_layer(True, 'ConvOffsetHead')
    _compile_matches_eager(layer, layer, 'inductor')


# -------------------------------------------------------------------- tools/export_onnx.py

@pytest.fixture(scope='module')
def tool():
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    return load_tool()


def test_cli_exports_quickstart_backbone(tool, tmp_path, capsys):
    out = tmp_path / 'backbone.onnx'
    assert tool.main([QUICK_DCN, '--shape', '128', '128', '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert "13 DeformableConv2d layer(s) set to backend='torch'" in printed
    assert printed.count('max abs error') == 4  # one line per ResNet stage
    assert out.exists()


def test_cli_with_checkpoint_of_nonzero_offsets(tool, tmp_path, capsys):
    import onnxruntime as ort

    model = tool.build_model(QUICK_DCN)
    layers = [m for m in model.modules() if isinstance(m, DeformableConv2d)]
    for i, layer in enumerate(layers):
        perturb_offsets(layer, seed=10 + i, scale=0.05)
    ckpt = tmp_path / 'perturbed.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)

    assert tool.main([QUICK_DCN, '--checkpoint', str(ckpt)]) == 0
    printed = capsys.readouterr().out
    onnx_file = tmp_path / 'perturbed_backbone.onnx'  # next to the checkpoint
    assert onnx_file.exists(), printed

    # The file holds this model's weights (not the tool's fresh random ones), its
    # offsets are not zero, and its batch axis is dynamic.
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        expected = model.backbone(x)
        offset, _ = layers[0].offset_head(torch.randn(1, layers[0].in_channels, 16, 16))
    assert offset.abs().max() > 0.5
    session = ort.InferenceSession(str(onnx_file), providers=['CPUExecutionProvider'])
    got = session.run(None, {'input': x.numpy()})
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        torch.testing.assert_close(torch.from_numpy(g), e, rtol=0, atol=1e-4)


def test_cli_without_deformable_layer_warns_and_fails_beyond_atol(tool, tmp_path, capsys):
    out = tmp_path / 'plain.onnx'
    # atol 0: float differences between onnxruntime and PyTorch must fail the check.
    assert tool.main([QUICK_PLAIN, '--shape', '64', '96', '--out', str(out), '--atol',
                      '0']) == 1
    captured = capsys.readouterr()
    assert 'no DeformableConv2d found' in captured.err
    assert 'differs from PyTorch by more than --atol 0' in captured.err
    assert out.exists()


def test_cli_says_how_to_install_onnx(tool, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'onnxruntime' else
                        real_find_spec(name, *a))
    with pytest.raises(SystemExit, match=r"onnxruntime not installed.*pip install -e '\.\[dev\]'"):
        tool.main([QUICK_DCN])


def test_cli_rejects_old_opset(tool, capsys):
    with pytest.raises(SystemExit):
        tool.main([QUICK_DCN, '--opset', '11'])
    assert '--opset must be >= 17' in capsys.readouterr().err
