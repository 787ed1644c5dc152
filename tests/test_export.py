"""Export and compilation: ONNX (checked with onnxruntime), torch.compile, tools/export_onnx.py."""
import importlib.util
import os.path as osp
import warnings

import pytest
import torch

import mmdcn_plugin.ops.deform_conv as deform_conv_module
from helpers import load_tool
from mmdcn_plugin.layers import DeformableConv2d
from mmdcn_plugin.ops import available_backends, deform_conv2d

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICK_DCN = osp.join(ROOT, 'configs', 'quickstart',
                     'faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')
QUICK_PLAIN = osp.join(ROOT, 'configs', 'quickstart', 'faster-rcnn_r50-narrow_fpn_synthetic.py')
HEADS = ('ConvOffsetHead', 'SeparableOffsetHead')


def export_tool():
    return load_tool('export_onnx')


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



# ------------------------------------------------------- recording an explicit backend

# The backends other than 'torch' available here; each is refused by torch.jit.trace.
UNTRACEABLE = [b for b in available_backends() if b not in ('auto', 'torch')]
# Compiled kernels, refused by torch.export as well ('fast' is plain ops there).
UNEXPORTABLE = [b for b in UNTRACEABLE if b != 'fast']


class OpModule(torch.nn.Module):
    """deform_conv2d with a fixed weight and an explicit backend."""

    def __init__(self, backend):
        super().__init__()
        self.backend = backend
        self.weight = torch.nn.Parameter(torch.randn(4, 3, 3, 3, generator=torch.Generator()
                                                     .manual_seed(0)))

    def forward(self, x, offset, mask):
        return deform_conv2d(x, offset, self.weight, padding=1, mask=mask,
                             backend=self.backend)


def op_inputs(seed, batch=1):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, 6, 7, generator=gen),
            torch.randn(batch, 18, 6, 7, generator=gen) * 2,
            torch.rand(batch, 9, 6, 7, generator=gen))


@pytest.mark.parametrize('backend', UNTRACEABLE)
def test_jit_trace_refuses_an_explicit_untraceable_backend(backend):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # TracerWarnings of the shape checks
        with pytest.raises(RuntimeError, match=rf"backend='{backend}' cannot be recorded by "
                                               r"torch.jit.trace: .*Expected backend=None "
                                               r".*\['torch'\].*tools/export_onnx.py"):
            torch.jit.trace(OpModule(backend), op_inputs(0), check_trace=False)


@pytest.mark.parametrize('backend', UNTRACEABLE)
def test_legacy_onnx_export_refuses_an_explicit_untraceable_backend(tmp_path, backend):
    """Not a broken file: 'cpp' used to export as one Constant, this call's output."""
    pytest.importorskip('onnx')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with pytest.raises(RuntimeError, match=rf"backend='{backend}' cannot be recorded by "
                                               r"torch.onnx.export \(through torch.jit.trace\)"):
            torch.onnx.export(OpModule(backend), op_inputs(0), str(tmp_path / 'op.onnx'),
                              dynamo=False, opset_version=17)
    assert not (tmp_path / 'op.onnx').exists()


def test_explicit_torch_backend_traces_and_matches_eager():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        traced = torch.jit.trace(OpModule('torch'), op_inputs(0), check_trace=False)
    other = op_inputs(1)
    torch.testing.assert_close(traced(*other), OpModule('torch')(*other))


@pytest.mark.skipif(not hasattr(torch, 'export'), reason='torch.export needs torch >= 2.1')
def test_torch_export_records_fast_and_refuses_compiled_kernels():
    exported = torch.export.export(OpModule('fast'), op_inputs(0), strict=False)
    other = op_inputs(1)
    # A graph of plain ops, not this call's output: other inputs give other outputs.
    torch.testing.assert_close(exported.module()(*other), OpModule('torch')(*other),
                               rtol=1e-5, atol=1e-5)
    for backend in UNEXPORTABLE:
        with pytest.raises(RuntimeError, match=rf"backend='{backend}' cannot be recorded by "
                                               r"torch.export: .*\['fast', 'torch'\]"):
            torch.export.export(OpModule(backend), op_inputs(0), strict=False)


@pytest.mark.parametrize('backend', UNTRACEABLE)
def test_compile_keeps_an_explicit_backend(backend, monkeypatch):
    """torch.compile runs what it cannot record eagerly: the chosen backend still runs."""
    torch._dynamo.reset()
    ran = []
    original = deform_conv_module.BACKENDS[backend]

    def spy(*args):
        ran.append(backend)
        return original.fn(*args)

    monkeypatch.setitem(deform_conv_module.BACKENDS, backend, original._replace(fn=spy))
    module = OpModule(backend)
    inputs = op_inputs(2)
    out = torch.compile(module, backend='eager')(*inputs)
    assert ran == [backend]
    torch.testing.assert_close(out, OpModule('torch')(*inputs), rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------- tools/export_onnx.py

@pytest.fixture(scope='module')
def tool():
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    return export_tool()


def run_tool(tool, capsys, *args):
    code = tool.main([*map(str, args), '--repeat', '1'])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize('opset, extra, mode, nodes', [
    (19, [], 'native', 13),
    (17, [], 'gather', 0),  # the fallback below opset 19
    (19, ['--deform-conv', 'gather'], 'gather', 0),  # the explicit switch
], ids=['native-19', 'fallback-17', 'gather-19'])
def test_cli_exports_quickstart_backbone(tool, tmp_path, capsys, opset, extra, mode, nodes):
    out = tmp_path / 'backbone.onnx'
    code, printed, err = run_tool(tool, capsys, QUICK_DCN, '--opset', opset, '--out', out,
                                  *extra)
    assert code == 0, printed + err
    assert f'opset {opset}, torchscript exporter, deformable convolutions as {mode}' in printed
    assert f'DeformConv nodes: {nodes} for 13 deformable layer(s)\n' in printed
    assert printed.count('max abs error') == 4  # one line per ResNet stage
    assert 'file size: ' in printed and 'onnxruntime' in printed and 'PyTorch' in printed
    from mmdcn_plugin.deploy import op_counts
    assert op_counts(str(out))['DeformConv'] == nodes
    if mode == 'native':
        assert data_gathers(out) == 0  # no gather graph left beside the nodes
    else:
        assert data_gathers(out) >= 13 * 4  # four bilinear corners per layer


def data_gathers(path) -> int:
    """Gather nodes that read tensor data (not a shape): the gather graph's sampling."""
    import onnx
    graph = onnx.load(str(path)).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    return sum(1 for node in graph.node if node.op_type.startswith('Gather')
               and producer.get(node.input[0]) != 'Shape')


def test_cli_default_opset_is_native(tool, tmp_path, capsys):
    from mmdcn_plugin.deploy import default_opset
    code, printed, err = run_tool(tool, capsys, QUICK_DCN, '--out', tmp_path / 'b.onnx',
                                  '--shape', 64, 96)
    assert code == 0, printed + err
    assert f'opset {default_opset()}, torchscript exporter' in printed
    if default_opset() >= 19:
        assert 'DeformConv nodes: 13 for 13' in printed


@pytest.mark.parametrize('what, outputs', [('backbone+neck', 5), ('dense-model', 10)])
def test_cli_exports_neck_and_dense_model(tool, tmp_path, capsys, what, outputs):
    out = tmp_path / 'part.onnx'
    code, printed, err = run_tool(tool, capsys, QUICK_DCN, '--what', what, '--opset', 19,
                                  '--out', out)
    assert code == 0, printed + err
    # FPN: 5 levels; the RPN's raw cls_score and bbox_pred per level.
    assert printed.count('max abs error') == outputs
    assert 'DeformConv nodes: 13 for 13' in printed
    if what == 'dense-model':
        assert 'output cls_score0' in printed and 'output bbox_pred4' in printed


def test_dense_part_names_its_outputs_without_keeping_state():
    """The names come from the head's levels, not from what a forward left behind."""
    from mmdcn_plugin.apis import build_model_from_config
    from mmdcn_plugin.deploy import export_part
    part = export_part(build_model_from_config(QUICK_DCN), 'dense-model')
    expected = [f'cls_score{i}' for i in range(5)] + [f'bbox_pred{i}' for i in range(5)]
    assert part.output_names(10) == expected          # before any forward
    attributes = dict(vars(part))
    with torch.no_grad():
        outputs = part(torch.randn(1, 3, 64, 64))
    assert len(outputs) == 10 and part.output_names(10) == expected
    assert vars(part).keys() == attributes.keys()     # forward stored nothing
    assert part.output_names(7) == [f'output{i}' for i in range(7)]  # no multiple of 5


def test_cli_with_checkpoint_of_nonzero_offsets(tool, tmp_path, capsys):
    import onnxruntime as ort
    from mmdcn_plugin.apis import build_model_from_config

    model = build_model_from_config(QUICK_DCN)
    layers = [m for m in model.modules() if isinstance(m, DeformableConv2d)]
    for i, layer in enumerate(layers):
        perturb_offsets(layer, seed=10 + i, scale=0.05)
    ckpt = tmp_path / 'perturbed.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)

    code, printed, err = run_tool(tool, capsys, QUICK_DCN, '--checkpoint', ckpt, '--opset', 19)
    assert code == 0, printed + err
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


def test_cli_fails_beyond_atol(tool, tmp_path, capsys):
    out = tmp_path / 'b.onnx'
    # atol 0: float differences between onnxruntime and PyTorch must fail the check.
    code, printed, err = run_tool(tool, capsys, QUICK_DCN, '--shape', 64, 96, '--out', out,
                                  '--opset', 19, '--atol', 0)
    assert code == 1
    assert 'differs from PyTorch by more than --atol 0' in err
    assert out.exists()


def test_cli_fails_on_wrong_node_count(tool, tmp_path, capsys, monkeypatch):
    from mmdcn_plugin.deploy import model_export
    monkeypatch.setattr(model_export, 'deformable_calls', lambda module, sample: 14)
    code, printed, err = run_tool(tool, capsys, QUICK_DCN, '--shape', 64, 64, '--opset', 19,
                                  '--out', tmp_path / 'b.onnx')
    assert code == 1
    assert 'DeformConv nodes: 13 for 13 deformable layer(s) run 14 times' in printed
    assert '(expected 14)' in printed
    assert 'the DeformConv node count is wrong' in err


def test_cli_error_opset_too_old_for_native(tool, tmp_path):
    with pytest.raises(SystemExit, match=r'opset 17 is too old for the ONNX DeformConv '
                                         r'operator: expected opset >= 19, got 17.*gather'):
        tool.main([QUICK_DCN, '--opset', '17', '--deform-conv', 'native',
                   '--out', str(tmp_path / 'x.onnx')])
    assert not (tmp_path / 'x.onnx').exists()


def test_cli_error_onnxruntime_missing(tool, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'onnxruntime' else
                        real_find_spec(name, *a))
    with pytest.raises(SystemExit, match=r"onnxruntime not installed.*pip install -e '\.\[dev\]'"):
        tool.main([QUICK_DCN, '--opset', '19'])


def test_cli_error_config_without_deformable_layers(tool, tmp_path):
    with pytest.raises(SystemExit, match=r'faster-rcnn_r50-narrow_fpn_synthetic.py: expected '
                                         r'DeformableConv2d layers in the backbone, found none'):
        tool.main([QUICK_PLAIN, '--opset', '19', '--out', str(tmp_path / 'plain.onnx')])
    assert not (tmp_path / 'plain.onnx').exists()


def test_cli_error_opset_beyond_exporter(tool, tmp_path):
    with pytest.raises(SystemExit, match=r'opset must be an int between 13 .* and 20 .*'
                                         r'TorchScript exporter write\), got 99'):
        tool.main([QUICK_DCN, '--opset', '99', '--out', str(tmp_path / 'x.onnx')])
    with pytest.raises(SystemExit, match=r'opset must be an int between 13 .*got 11'):
        tool.main([QUICK_DCN, '--opset', '11', '--out', str(tmp_path / 'x.onnx')])


@pytest.mark.slow
def test_cli_dynamo_exporter(tool, tmp_path, capsys):
    pytest.importorskip('onnxscript')
    code, printed, err = run_tool(tool, capsys, QUICK_DCN, '--exporter', 'dynamo', '--opset',
                                  19, '--out', tmp_path / 'd.onnx', '--shape', 64, 64)
    assert code == 0, printed + err
    assert 'DeformConv nodes: 13 for 13' in printed


@pytest.mark.slow
def test_cli_dense_model_of_fcos_with_deformable_head(tool, tmp_path, capsys):
    # 13 backbone layers + 8 head tower layers, the head shared by 5 FPN levels.
    config = osp.join(ROOT, 'configs', 'fcos',
                      'fcos_r50-caffe-dcnv2-c3-c5_fpn_gn-head-dcnv2_1x_coco.py')
    code, printed, err = run_tool(tool, capsys, config, '--what', 'dense-model', '--shape', 64,
                                  96, '--opset', 19, '--out', tmp_path / 'fcos.onnx')
    assert code == 0, printed + err
    assert 'DeformConv nodes: 53 for 21 deformable layer(s) run 53 times' in printed
    assert 'output centerness4' in printed
