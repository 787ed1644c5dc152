"""OffsetStatsHook (mmdcn_plugin/hooks/offset_stats_hook.py): exact statistics and a real run.

The unit case: a 3x3 DCNv2 with padding 1 on a 4x4 map, whose offset head outputs
constants (zero weights, chosen biases):

* kernel point 0 (top-left) moves by (dy, dx) = (3, 4): |5| px;
* kernel point 8 (bottom-right) moves by (-6, 8): |10| px;
* the other seven stay on the grid; mask logits log(3): mask 3/4.

16 output positions x 9 points = 144 points: mean |offset| = 16 * (5 + 10) / 144,
max 10.  Outside (the op's rule: inside only when -1 < y < 4 and -1 < x < 4), with
y = o - 1 + i + dy:
* point 0: y = o + 2 inside for o in {0, 1}, x = o + 3 inside for o = 0: 2 of 16
  inside, 14 outside;
* point 8: y = o - 5 < -1 always: 16 outside;
* points 1..7 (no offset; row/column i = 0 or 2 loses one of 4 positions to the
  padding): inside 12 + 9 + 12 + 16 + 12 + 9 + 12 = 82 of 112, 30 outside.
Total outside 60 / 144.
"""
import glob
import json
import math
import os.path as osp

import pytest
import torch
from mmengine.runner import Runner
from mmdet.registry import HOOKS

from mmdcn_plugin import DeformableConv2d
from helpers import one_thread  # noqa: F401  (autouse fixture)
from helpers import load_tool, short_training_cfg
from mmdcn_plugin.hooks import OffsetStats, OffsetStatsHook, offset_statistics

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DCNV2 = osp.join(ROOT, 'configs', 'quickstart',
                 'faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')



def known_layer(modulated=True):
    layer = DeformableConv2d(2, 2, 3, padding=1, modulated=modulated)
    conv = layer.offset_head.conv
    bias = torch.zeros(conv.weight.shape[0])
    # Offset channel 2k is dy and 2k+1 is dx of kernel point k.
    bias[0], bias[1] = 3.0, 4.0
    bias[16], bias[17] = -6.0, 8.0
    if modulated:
        bias[18:] = math.log(3.0)            # sigmoid(log 3) = 3/4
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(bias)
    return layer


@pytest.mark.parametrize('modulated', [True, False])
def test_statistics_of_known_offsets(modulated):
    layer = known_layer(modulated)
    x = torch.randn(1, 2, 4, 4)
    offset, mask = layer.offset_head(x)
    stats = offset_statistics(offset, mask, layer.offset_head, x.shape[-2:])
    assert stats['mean_px'] == pytest.approx(16 * 15 / 144, rel=1e-6)
    assert stats['max_px'] == pytest.approx(10.0, rel=1e-6)
    assert stats['outside_frac'] == 60 / 144
    if modulated:
        assert stats['mask_mean'] == pytest.approx(0.75, rel=1e-6)
    else:
        assert 'mask_mean' not in stats


def test_zero_offsets_count_only_the_padding():
    layer = DeformableConv2d(2, 2, 3, padding=1)
    x = torch.randn(2, 2, 4, 4)
    stats = offset_statistics(*layer.offset_head(x), layer.offset_head, x.shape[-2:])
    assert stats['mean_px'] == 0 and stats['max_px'] == 0
    assert stats['outside_frac'] == (144 - (12 + 9 + 12 + 16 + 12 + 9 + 12 + 9 + 9)) / 144
    assert stats['mask_mean'] == 0.5


def test_calls_accumulate():
    # A layer called twice in one iteration (a head shared by FPN levels).
    layer = known_layer()
    acc = OffsetStats()
    for size in (4, 8):
        x = torch.randn(1, 2, size, size)
        offset, mask = layer.offset_head(x)
        acc.update(offset, mask, layer.offset_head, x.shape[-2:])
    s = acc.summary()
    assert acc.points == 9 * (16 + 64)
    assert s['mean_px'] == pytest.approx(15 * 80 / 720, rel=1e-6)
    assert s['max_px'] == pytest.approx(10.0, rel=1e-6)


def test_registered_and_validated():
    assert HOOKS.get('OffsetStatsHook') is OffsetStatsHook
    with pytest.raises(ValueError, match='interval must be a positive int, got 0'):
        OffsetStatsHook(interval=0)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic')
    tool = load_tool('make_synthetic_coco')
    tool.main(['--out-dir', str(root), '--num-train', '8', '--num-val', '4', '--no-progress'])
    return str(root) + '/'


def test_short_training_logs_the_scalars(data_root, tmp_path):
    cfg = short_training_cfg(data_root, str(tmp_path),
                             [dict(type='OffsetStatsHook', interval=1)])
    runner = Runner.from_cfg(cfg)
    runner.train()

    hub = runner.message_hub
    layers = [f'backbone.layer{s}.{b}.conv2' for s, n in ((2, 4), (3, 6), (4, 3))
              for b in range(n)]
    for name in layers:
        for stat in ('mean_px', 'max_px', 'outside_frac', 'mask_mean'):
            buf = hub.log_scalars[f'offset_stats/{name}/{stat}']
            values, counts = buf.data
            assert len(values) == 2                      # interval=1, 2 iterations
            assert all(math.isfinite(v) for v in values)
    # Iteration 1 runs the zero-initialised heads: no offset, masks 0.5.
    first = hub.log_scalars['offset_stats/backbone.layer2.0.conv2/mean_px'].data[0]
    assert first[0] == 0
    assert hub.log_scalars['offset_stats/backbone.layer2.0.conv2/mask_mean'].data[0][0] == 0.5
    # One update after the first iteration makes offsets non-zero.
    assert hub.log_scalars['offset_stats/backbone.layer2.0.conv2/max_px'].current() > 0

    # The hooks were removed after the logging iteration.
    model = runner.model
    for m in model.modules():
        if isinstance(m, DeformableConv2d):
            assert not m.offset_head._forward_hooks

    log = glob.glob(osp.join(str(tmp_path), '*', '*.log'))
    text = open(log[0]).read()
    assert text.count('Offset statistics at iter') == 2
    assert 'backbone.layer4.2.conv2  mean' in text
    scalars = glob.glob(osp.join(str(tmp_path), '*', 'vis_data', 'scalars.json'))
    lines = [json.loads(line) for line in open(scalars[0])]
    assert [line['step'] for line in lines if 'offset_stats/backbone.layer2.0.conv2/mean_px'
            in line] == [1, 2]
