"""Offset pictures (mmdcn_plugin/visualization/, tools/visualize_offsets.py, the hook)."""
import glob
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmdet.apis import inference_detector
from mmdet.registry import HOOKS, MODELS

from mmdcn_plugin import DeformableConv2d
from helpers import one_thread  # noqa: F401  (autouse fixture)
from helpers import load_tool, short_training_cfg
from mmdcn_plugin.hooks import OffsetVisualizationHook
from mmdcn_plugin.visualization import (LayerCapture, capture_layers, init_model,
                                        trace_image_point, trace_sampling_points,
                                        visualize_offsets, zero_offsets)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICKSTART = osp.join(ROOT, 'configs', 'quickstart')
BASELINE = osp.join(QUICKSTART, 'faster-rcnn_r50-narrow_fpn_synthetic.py')
DCNV2 = osp.join(QUICKSTART, 'faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')
LAST_THREE = ['backbone.layer4.0.conv2', 'backbone.layer4.1.conv2', 'backbone.layer4.2.conv2']



def capture(name, in_size, out_size, offset_fn, stride=1, padding=1, dilation=1):
    """A 3x3 LayerCapture whose offset at (kernel point k, y, x) is offset_fn(k)."""
    offset = torch.zeros(18, *out_size)
    for k in range(9):
        dy, dx = offset_fn(k)
        offset[2 * k], offset[2 * k + 1] = dy, dx
    return LayerCapture(name, in_size, out_size, (3, 3), (stride, stride),
                        (padding, padding), (dilation, dilation), offset)


def two_layer_stack():
    # A: 8x8 -> 8x8, every point moved by (0.5, -1).  Between A and B the map halves
    # (a strided conv elsewhere).  B: 4x4 -> 4x4, only kernel point 0 moved by (1, 2).
    a = capture('a', (8, 8), (8, 8), lambda k: (0.5, -1.0))
    b = capture('b', (4, 4), (4, 4), lambda k: (1.0, 2.0) if k == 0 else (0.0, 0.0))
    return [a, b]


def test_trace_two_layers_exact():
    pts = trace_sampling_points(two_layer_stack(), (2, 1))
    assert pts.shape == (81, 2)
    # B samples its input at (2 - 1 + i, 1 - 1 + j) + offset: point 0 at (1, 0) + (1, 2).
    # In A's output grid (x2): (4, 4); A samples (4 - 1 + i + 0.5, 4 - 1 + j - 1).
    assert pts[0].tolist() == [3.5, 2.0]        # B point 0, A point 0
    assert pts[8].tolist() == [5.5, 4.0]        # B point 0, A point 8
    # B point 1 at (1, 1) -> A grid (2, 2); A point 0: (2 - 1 + 0.5, 2 - 1 - 1).
    assert pts[9].tolist() == [1.5, 0.0]
    # B point 4 at (2, 1) -> (4, 2); A point 4 (i = j = 1): (4.5, 1.0).
    assert pts[4 * 9 + 4].tolist() == [4.5, 1.0]
    regular = trace_sampling_points(two_layer_stack(), (2, 1), regular=True)
    # B point 0 regular at (1, 0) -> (2, 0); A point 0: (2 - 1, 0 - 1).
    assert regular[0].tolist() == [1.0, -1.0]
    # Two stacked regular 3x3 grids (x2 between them) cover 7x7 distinct locations.
    assert len({tuple(p) for p in regular.tolist()}) == 7 * 7


def test_trace_stride_and_dilation():
    layer = capture('s', (9, 9), (5, 5), lambda k: (0.0, 0.0), stride=2, padding=1,
                    dilation=2)
    pts = trace_sampling_points([layer], (1, 3))
    assert pts[0].tolist() == [1.0, 5.0]        # (1*2 - 1, 3*2 - 1)
    assert pts[8].tolist() == [5.0, 9.0]        # + (2*2, 2*2)


def test_trace_follows_the_chosen_deform_group():
    """Offset channels are [group, kernel point, (dy, dx)], the op's layout."""
    offset = torch.zeros(2 * 2 * 9, 4, 4)          # two deform groups
    offset[18::2], offset[19::2] = 1.0, 2.0         # group 1: every point moved by (1, 2)
    layer = LayerCapture('g', (4, 4), (4, 4), (3, 3), (1, 1), (1, 1), (1, 1), offset)
    # Cell (1, 1), kernel point 0 samples (1 - 1 + 0, 1 - 1 + 0) + the group's offset.
    assert trace_sampling_points([layer], (1, 1))[0].tolist() == [0.0, 0.0]
    group1 = trace_sampling_points([layer], (1, 1), deform_group=1)
    assert group1[0].tolist() == [1.0, 2.0] and group1[8].tolist() == [3.0, 4.0]


def test_run_inference_of_visualization_is_infer_image_deprecated():
    """Renamed: mmdcn_plugin.apis.inference.run_inference is the other inference job."""
    from mmdcn_plugin import visualization
    with pytest.warns(DeprecationWarning, match='infer_image'):
        assert visualization.run_inference is visualization.infer_image
    assert 'run_inference' not in visualization.__all__


def test_trace_to_image_pixels():
    # Network input 32x32 is the 16x16 image resized x2; B's map is 4x4 (stride 8).
    meta = dict(batch_input_shape=(32, 32), scale_factor=(2.0, 2.0), img_shape=(32, 32))
    t = trace_image_point(two_layer_stack(), (4.2, 8.1), meta)
    # Image (4.2, 8.1) -> network (8.4, 16.2) -> B cell (y=2, x=1) -> image (4, 8).
    assert t.activation_xy.tolist() == [4.0, 8.0]
    # Deformable point 0 at (3.5, 2.0) in A's 8x8 input: network x4, image /2.
    assert t.deformable_xy[0].tolist() == [4.0, 7.0]
    assert t.regular_xy[0].tolist() == [-2.0, 2.0]


def test_split_modules_keep_the_old_import_paths():
    """visualization/offsets.py was split by job; what users imported still imports."""
    from mmdcn_plugin import visualization
    from mmdcn_plugin.visualization import offsets
    from mmdcn_plugin.layers import deformable_layers
    from mmdcn_plugin.hooks import offset_stats_hook
    for name in ('LayerCapture', 'TracedPoint', 'capture_layers', 'check_layer_name',
                 'deformable_layers', 'init_model', 'read_image', 'save_figures',
                 'trace_image_point', 'trace_sampling_points', 'visualize_offsets',
                 'zero_offsets'):
        assert getattr(offsets, name) is getattr(visualization, name), name
    assert offsets.deformable_layers is deformable_layers
    assert offset_stats_hook.deformable_layers is deformable_layers


def test_response_map_needs_the_output():
    layer = capture('a', (4, 4), (4, 4), lambda k: (0.0, 0.0))
    with pytest.raises(ValueError, match=r"layer 'a': expected a capture with its output"):
        layer.response_map()
    layer.output = torch.tensor([[[1.0, -3.0]], [[-1.0, 1.0]]])    # [C=2, 1, 2]
    assert layer.response_map().tolist() == [[1.0, 2.0]]


def test_trace_rejects_empty_and_bad_group():
    with pytest.raises(ValueError, match='at least one LayerCapture'):
        trace_sampling_points([], (0, 0))
    with pytest.raises(ValueError, match=r'deform_group must be in \[0, 1\)'):
        trace_sampling_points(two_layer_stack(), (0, 0), deform_group=1)


@pytest.fixture(scope='module')
def image_path(tmp_path_factory):
    """A 128x128 image with a few shapes (the quick-start input size)."""
    img = np.full((128, 128, 3), 200, np.uint8)
    cv2.circle(img, (40, 44), 20, (40, 90, 200), -1)
    cv2.rectangle(img, (76, 70), (112, 110), (30, 160, 60), -1)
    cv2.line(img, (10, 120), (60, 80), (10, 10, 10), 3)
    path = str(tmp_path_factory.mktemp('img') / 'shapes.png')
    cv2.imwrite(path, img)
    return path


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """A state dict of the DCNv2 quick-start model whose offset heads are not zero."""
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(DCNV2).model)
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, DeformableConv2d):
            bias = m.offset_head.last_layer().bias
            with torch.no_grad():
                bias.copy_(torch.randn(bias.shape, generator=gen) * 1.5)
    path = str(tmp_path_factory.mktemp('ckpt') / 'offsets.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def visualize_tool():
    return load_tool('visualize_offsets')


def test_cli_without_checkpoint(image_path, tmp_path, capsys):
    paths = visualize_tool().main([DCNV2, image_path, '--out-dir', str(tmp_path)])
    assert sorted(osp.basename(p) for p in paths) == ['shapes_feature_response.png',
                                                      'shapes_sampling_points.png']
    for p in paths:
        assert cv2.imread(p) is not None
    assert 'shapes_sampling_points.png' in capsys.readouterr().out


def test_no_checkpoint_figure_says_offsets_are_zero(image_path):
    model = init_model(DCNV2)
    figures = visualize_offsets(model, image_path, points=[(40, 44)])
    texts = [t.get_text() for t in figures['sampling_points'].texts]
    assert any('ALL OFFSETS ARE ZERO' in t for t in texts)


def test_checkpoint_gives_non_regular_points(image_path, checkpoint, tmp_path):
    model = init_model(DCNV2, checkpoint)
    img = cv2.imread(image_path)
    with capture_layers(model) as captures:
        result = inference_detector(model, img)
    chain = [c for c in captures if c.name in LAST_THREE]
    assert [c.name for c in chain] == LAST_THREE
    assert [c.input_size for c in chain] == [(8, 8), (4, 4), (4, 4)]
    traced = trace_image_point(chain, (40, 44), result.metainfo)
    assert traced.regular_xy.shape == traced.deformable_xy.shape == (729, 2)
    assert np.abs(traced.deformable_xy - traced.regular_xy).max() > 1.0
    # Zeroing the offsets brings back the regular grid.
    with zero_offsets(model), capture_layers(model) as plain:
        inference_detector(model, img)
    plain_chain = [c for c in plain if c.name in LAST_THREE]
    again = trace_image_point(plain_chain, (40, 44), result.metainfo)
    assert np.array_equal(again.deformable_xy, traced.regular_xy)

    paths = visualize_tool().main([DCNV2, image_path, '--checkpoint', checkpoint,
                              '--points', '40,44', '100,90', '--out-dir', str(tmp_path)])
    assert sorted(osp.basename(p) for p in paths) == [
        'shapes_detections.png', 'shapes_feature_response.png', 'shapes_sampling_points.png']


def test_config_without_deformable_layer(image_path, tmp_path):
    with pytest.raises(ValueError, match=r"faster-rcnn_r50-narrow_fpn_synthetic\.py.*"
                                         r'no deformable layer found'):
        visualize_tool().main([BASELINE, image_path, '--out-dir', str(tmp_path)])


def test_unreadable_image(tmp_path):
    bad = tmp_path / 'notes.png'
    bad.write_text('not an image')
    with pytest.raises(ValueError, match=r'notes\.png.*could not be read'):
        visualize_tool().main([DCNV2, str(bad), '--out-dir', str(tmp_path)])
    with pytest.raises(FileNotFoundError, match=r'missing\.png.*does not exist'):
        visualize_tool().main([DCNV2, str(tmp_path / 'missing.png'), '--out-dir', str(tmp_path)])


def test_unknown_layer(image_path, tmp_path):
    with pytest.raises(ValueError, match=r"unknown layer 'backbone\.nope'.*"
                                         r"'backbone\.layer2\.0\.conv2'.*"
                                         r"'backbone\.layer4\.2\.conv2'"):
        visualize_tool().main([DCNV2, image_path, '--layer', 'backbone.nope',
                          '--out-dir', str(tmp_path)])


def test_hook_writes_pictures(image_path, tmp_path):
    assert HOOKS.get('OffsetVisualizationHook') is OffsetVisualizationHook
    data_root = str(tmp_path / 'data') + '/'
    tool = load_tool('make_synthetic_coco')
    tool.main(['--out-dir', data_root, '--num-train', '4', '--num-val', '1', '--no-progress'])

    cfg = short_training_cfg(data_root, str(tmp_path / 'work'),
                             [dict(type='OffsetVisualizationHook', image_path=image_path,
                                   interval=1)])
    runner = Runner.from_cfg(cfg)
    runner.train()
    written = sorted(osp.basename(p) for p in
                     glob.glob(osp.join(cfg.work_dir, 'offset_vis', '*.png')))
    assert written == ['epoch_1_detections.png', 'epoch_1_feature_response.png',
                       'epoch_1_sampling_points.png']
    assert runner.model.training          # the hook restored training mode


def test_hook_draws_on_rank_0_only(image_path, tmp_path, monkeypatch):
    """Under DDP every rank runs the hook: one draws, the others would write the same
    files at the same time."""
    from mmdcn_plugin.hooks import offset_visualization_hook
    drawn = []
    monkeypatch.setattr(offset_visualization_hook, 'visualize_offsets',
                        lambda *args, **kwargs: drawn.append(kwargs['note']) or {})

    class Logger:
        def info(self, text):
            pass

    class StubRunner:
        model = MODELS.build(Config.fromfile(DCNV2).model)
        work_dir = str(tmp_path)
        logger = Logger()
        epoch = 0
        cfg = None

    for rank in (1, 0):
        runner = StubRunner()
        runner.rank = rank
        hook = OffsetVisualizationHook(image_path, interval=1)
        hook.before_train(runner)
        hook.after_train_epoch(runner)
        assert drawn == ([] if rank else ['epoch 1'])


def test_hook_skips_a_model_without_deformable_layers(image_path, tmp_path):
    class Logger:
        def __init__(self):
            self.warnings = []

        def warning(self, text):
            self.warnings.append(text)

    class StubRunner:
        model = MODELS.build(Config.fromfile(BASELINE).model)
        work_dir = str(tmp_path)
        logger = Logger()
        epoch = 0

    hook = OffsetVisualizationHook(image_path, interval=1)
    runner = StubRunner()
    hook.before_train(runner)
    hook.after_train_epoch(runner)
    assert 'no DeformableConv2d' in runner.logger.warnings[0]
    assert not glob.glob(osp.join(str(tmp_path), '**', '*.png'), recursive=True)
    with pytest.raises(ValueError, match='interval must be a positive int, got 0'):
        OffsetVisualizationHook(image_path, interval=0)
    with pytest.raises(FileNotFoundError, match=r'nowhere\.png'):
        OffsetVisualizationHook(str(tmp_path / 'nowhere.png')).before_train(runner)
