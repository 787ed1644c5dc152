"""FLOPs that count deformable convolution (mmdcn_plugin/analysis/flops.py, tools/get_flops.py).

Expected numbers come from the formula in docs/flops.md, written out by hand here:
with P output positions (batch included), K kernel points and C_in input channels,
main conv P*K*C_out*C_in/groups, sampling 4*P*K*C_in, modulation P*K*C_in (DCNv2),
plus the offset head's conv.
"""
import os.path as osp
import re
import subprocess
import sys
import warnings

import pytest
import torch
from mmengine.config import Config
from mmdet.registry import MODELS

from mmdcn_plugin import DeformableConv2d
from helpers import one_thread  # noqa: F401  (autouse fixture)
from mmdcn_plugin.analysis import (DeformableFlopAnalyzer, deform_conv2d_flops,
                                   deformable_layer_flops, detector_complexity_info,
                                   dummy_detector_inputs, format_deformable_table)
from mmdcn_plugin.analysis import private_api
from mmdcn_plugin.ops import available_backends

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICKSTART = osp.join(ROOT, 'configs', 'quickstart')
BASELINE = osp.join(QUICKSTART, 'faster-rcnn_r50-narrow_fpn_synthetic.py')
DCNV2 = osp.join(QUICKSTART, 'faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')
SHAPE = (128, 128)



# in=8, out=12, 3x3, stride 2, pad 1, groups 2, deform_groups 2 on 2x8x10x12:
# H_out=5, W_out=6, P=2*5*6=60, K=9.
MAIN = 60 * 9 * 12 * 4            # 25920
SAMPLING = 4 * 60 * 9 * 8         # 17280
MODULATION = 60 * 9 * 8           # 4320
HEAD_V2 = 60 * 9 * (3 * 2 * 9) * 8   # 233280: ConvOffsetHead, 54 output channels
HEAD_V1 = 60 * 9 * (2 * 2 * 9) * 8   # 155520: 36 output channels


def small_layer(modulated, backend=None):
    torch.manual_seed(0)
    return DeformableConv2d(8, 12, 3, stride=2, padding=1, groups=2, deform_groups=2,
                            modulated=modulated, backend=backend)


@pytest.mark.parametrize('backend', [b for b in available_backends() if b != 'auto'])
@pytest.mark.parametrize('modulated', [True, False])
def test_hand_computed_layer(modulated, backend):
    layer = small_layer(modulated, backend)
    x = torch.randn(2, 8, 10, 12)
    flops = DeformableFlopAnalyzer(layer, (x,))
    expected = {'deform_conv': MAIN, 'deform_sampling': SAMPLING, 'conv':
                HEAD_V2 if modulated else HEAD_V1}
    if modulated:
        expected['deform_modulation'] = MODULATION
    assert dict(flops.by_operator()) == expected
    assert flops.total() == sum(expected.values())
    assert flops.total('offset_head') == expected['conv']
    # The layer was patched only while tracing.
    assert 'forward' not in vars(layer)
    assert torch.equal(layer(x), layer(x))


def test_formula_function():
    counts = deform_conv2d_flops([2, 8, 10, 12], [12, 4, 3, 3], [2, 12, 5, 6], True)
    assert counts == {'deform_conv': MAIN, 'deform_sampling': SAMPLING,
                      'deform_modulation': MODULATION}
    assert 'deform_modulation' not in deform_conv2d_flops([2, 8, 10, 12], [12, 4, 3, 3],
                                                          [2, 12, 5, 6], False)
    with pytest.raises(ValueError, match='4 entries'):
        deform_conv2d_flops([8, 10, 12], [12, 4, 3, 3], [2, 12, 5, 6], True)


def test_64_channel_example_from_the_docs():
    layer = DeformableConv2d(64, 64, 3, padding=1)
    flops = DeformableFlopAnalyzer(layer, (torch.randn(1, 64, 32, 32),))
    assert flops.total() == 37748736 + 2359296 + 589824 + 15925248 == 56623104


def test_mmcv_dcn_counts_like_the_layer():
    ops = pytest.importorskip('mmcv.ops')
    if 'mmcv' not in available_backends():
        pytest.skip("mmcv's compiled ops are not built")
    x = torch.randn(2, 8, 10, 12)
    for cls, modulated in ((ops.ModulatedDeformConv2dPack, True),
                           (ops.DeformConv2dPack, False)):
        m = cls(8, 12, 3, stride=2, padding=1, groups=2, deform_groups=2, bias=False)
        ours = DeformableFlopAnalyzer(small_layer(modulated), (x,)).total()
        assert DeformableFlopAnalyzer(m, (x,)).total() == ours


def build(config):
    cfg = Config.fromfile(config)
    # The RoI head costs per proposal and the proposal count depends on the weights;
    # 10 proposals always survive NMS here, so both detectors keep exactly 10.
    cfg.model.test_cfg.rpn.max_per_img = 10
    torch.manual_seed(0)
    return MODELS.build(cfg.model).eval()


@pytest.fixture(scope='module')
def detectors():
    base, dcn = build(BASELINE), build(DCNV2)
    return dict(base=(base, detector_complexity_info(base, SHAPE, show_table=False)),
                dcn=(dcn, detector_complexity_info(dcn, SHAPE, show_table=False)))


def layer_shapes(model):
    """(input shape, output shape) of every DeformableConv2d on the dummy input."""
    shapes, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, DeformableConv2d):
            handles.append(m.register_forward_hook(
                lambda mod, i, o, name=name: shapes.__setitem__(
                    name, (tuple(i[0].shape), tuple(o.shape)))))
    inputs, _ = dummy_detector_inputs(model, SHAPE)
    with torch.no_grad():
        model.extract_feat(inputs)
    for h in handles:
        h.remove()
    return shapes


def test_detector_with_dcn_counts_more_by_the_formula(detectors):
    base_model, base = detectors['base']
    dcn_model, dcn = detectors['dcn']
    shapes = layer_shapes(dcn_model)
    assert len(shapes) == 4 + 6 + 3          # conv2 of every block in c3-c5
    extra = 0
    for (n, c_in, _, _), (_, c_out, h_out, w_out) in shapes.values():
        p, k = n * h_out * w_out, 9
        extra += 4 * p * k * c_in            # bilinear sampling
        extra += p * k * c_in                # modulation
        extra += p * k * (3 * k) * c_in      # ConvOffsetHead (DCNv2: 27 channels)
    # The main convs count the same as the baseline's plain conv2 layers.
    assert base['analyzer'].total('roi_head') == dcn['analyzer'].total('roi_head')
    assert dcn['flops'] > base['flops']
    assert dcn['flops'] - base['flops'] == extra
    rows = deformable_layer_flops(dcn['analyzer'])
    assert [r['name'] for r in rows] == list(shapes)
    assert all(r['total'] == r['deform_conv'] + r['deform_sampling']
               + r['deform_modulation'] + r['offset_head'] for r in rows)


def test_cli_prints_flops_and_params(detectors):
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'get_flops.py'), DCNV2,
                           '--shape', '128', '128', '--per-layer'], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    flops = re.search(r'^Flops: ([0-9.]+) GFLOPs$', out, re.M)
    params = re.search(r'^Params: ([0-9.]+) M$', out, re.M)
    assert flops and params, out
    # The CLI keeps the config's 300 proposals: at least the fixture's 10-RoI count.
    assert float(flops.group(1)) * 1e9 >= detectors['dcn'][1]['flops'] - 1e5
    assert float(params.group(1)) == pytest.approx(detectors['dcn'][1]['params'] / 1e6,
                                                   abs=1e-4)
    assert 'backbone.layer4.2.conv2' in out and 'modulation' in out


def test_cli_names_a_missing_config():
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'get_flops.py'),
                           'missing.py'], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert "config: expected an existing file, got 'missing.py'" in proc.stderr


def test_deformable_table_has_one_line_per_layer():
    rows = [dict(name='backbone.layer2.0.conv2', deform_conv=2_000_000, deform_sampling=1000,
                 deform_modulation=0, offset_head=3_500_000, total=5_501_000)]
    lines = format_deformable_table(rows).splitlines()
    assert len(lines) == 3
    assert re.match(r'deformable layer +\| main conv \| sampling \| modulation \| '
                    r'offset head \| total', lines[0]), lines[0]
    assert re.fullmatch(r'backbone\.layer2\.0\.conv2 \| 2M +\| 1K +\| 0 +\| 3\.5M +\| 5\.501M *',
                        lines[2]), lines[2]
    with pytest.raises(ValueError, match=r"the first lacks \['total'\]"):
        format_deformable_table([{k: v for k, v in rows[0].items() if k != 'total'}])


# The private torch / MMEngine APIs the counter relies on (analysis/private_api.py).
# Each test fails, loudly and by name, when an upgrade moves one.
MOVED = f'a private API moved since {private_api.CHECKED_WITH}: update private_api.py'


def test_private_api_tracing_paused():
    def f(x):
        assert torch.jit.is_tracing(), MOVED
        with private_api.tracing_paused():
            assert not torch.jit.is_tracing(), MOVED
            doubled = x * 2      # not recorded: a constant of the traced graph
        assert torch.jit.is_tracing(), MOVED
        return doubled + x

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')     # torch.jit.trace's deprecation
        traced = torch.jit.trace(f, torch.ones(2), check_trace=False)
    # Recorded: (constant 2) + x.  Traced through: x * 2 + x.
    assert torch.equal(traced(torch.full((2,), 5.0)), torch.full((2,), 7.0)), MOVED


def test_private_api_analyzer_model_stats_and_analyze():
    layer = small_layer(True, backend='torch')   # the backend a plain trace can record
    x = torch.randn(2, 8, 10, 12)
    flops = DeformableFlopAnalyzer(layer, (x,))
    assert private_api.analyzer_model(flops) is layer, MOVED
    assert private_api.analyzer_cached_stats(flops) is None, MOVED
    total = flops.total()
    assert private_api.analyzer_cached_stats(flops) is not None, MOVED
    # Our override is the one the public queries go through: the count includes the
    # sampling and modulation, which MMEngine's own analysis (unpatched) cannot see.
    assert total == MAIN + SAMPLING + MODULATION + HEAD_V2, MOVED
    assert private_api.mmengine_analyze(flops) is private_api.analyzer_cached_stats(flops)
    plain = private_api.mmengine_analyze(DeformableFlopAnalyzer(layer, (x,)))
    assert 0 < sum(plain.counts[''].values()) < total, MOVED


def test_private_api_format_size():
    assert private_api.format_size(1_500_000_000) == '1.5G', MOVED
    assert private_api.format_size(3_400_000) == '3.4M', MOVED


def test_private_api_forward_replaced():
    layer = torch.nn.Linear(2, 2)
    with private_api.forward_replaced(layer, lambda x: x + 100):
        assert torch.equal(layer(torch.zeros(1, 2)), torch.full((1, 2), 100.0)), MOVED
    assert 'forward' not in vars(layer)
    own = layer.forward = lambda x: x - 1    # an instance that had its own forward
    with private_api.forward_replaced(layer, lambda x: x + 100):
        pass
    assert layer.forward is own
