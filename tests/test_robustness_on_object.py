"""Where the offsets go: the fraction of deformable sampling locations on the object
(``robustness/on_object.py``)."""
import numpy as np
import pytest
import torch

from helpers import QUICK_DCNV2, one_thread  # noqa: F401  (one_thread: fixture)
from robustness_helpers import data  # noqa: F401  (fixture)
from mmdcn_plugin.robustness import (by_stage, coco_samples, count_on_object, interior_point,
                                     on_object_by_value, on_object_fractions)


def _toy_chain(dx):
    """One 3x3 DCNv1 layer on a 16 x 16 map whose every offset is (0, dx)."""
    from mmdcn_plugin.layers import DeformableConv2d
    from mmdcn_plugin.visualization import capture_layers
    layer = DeformableConv2d(1, 1, 3, padding=1, modulated=False)
    with torch.no_grad():
        layer.offset_head.conv.bias[1::2] = dx      # channels (dy, dx) per kernel point
    model = torch.nn.Sequential(layer)
    with capture_layers(model) as captures:
        model(torch.randn(1, 1, 16, 16))
    return captures


def test_on_object_toy_with_known_answer():
    mask = np.zeros((16, 16), np.uint8)
    mask[:, 10:] = 1
    meta = dict(img_shape=(16, 16), scale_factor=(1.0, 1.0))
    # (9, 8) is one pixel left of the mask: one column (x = 10) of its regular grid is on it.
    assert count_on_object(_toy_chain(0.0), mask, meta, point_xy=(9, 8)) == (3, 3, 9)
    assert count_on_object(_toy_chain(4.0), mask, meta, point_xy=(9, 8)) == (9, 3, 9)
    assert count_on_object(_toy_chain(-4.0), mask, meta, point_xy=(9, 8)) == (0, 3, 9)
    # Pushed past the image border: off the mask, though the mask touches the border.
    assert count_on_object(_toy_chain(9.0), mask, meta, point_xy=(9, 8)) == (0, 3, 9)


def test_interior_point_lies_on_the_mask():
    import cv2
    ring = np.zeros((40, 40), np.uint8)
    cv2.circle(ring, (20, 20), 15, 1, thickness=5)
    x, y = interior_point(ring)
    assert ring[int(y), int(x)] == 1 and abs(np.hypot(x - 20, y - 20) - 15) <= 2
    with pytest.raises(ValueError, match=r'mask must be a non-empty 2-D array, got shape '
                                         r'\(4, 4\) with 0 pixels set'):
        interior_point(np.zeros((4, 4)))


def test_on_object_fractions_on_a_detector(data):
    from mmdcn_plugin.visualization import init_model
    model = init_model(QUICK_DCNV2)            # fresh offset heads: every offset is zero
    samples = list(coco_samples(data['ann_file'], data['img_dir'], max_images=2))
    n = sum(len(m) for _, m in samples)
    counts = on_object_fractions(model, samples)
    assert [c.layer for c in counts][:1] == ['backbone.layer2.0.conv2']
    stages = by_stage(counts)
    assert list(stages) == ['c3', 'c4', 'c5']
    # ResNet-50 has 4, 6 and 3 blocks in c3, c4, c5: one 3x3 deformable conv each.
    assert {s: (c.instances, c.points) for s, c in stages.items()} == {
        'c3': (n, 4 * 9 * n), 'c4': (n, 6 * 9 * n), 'c5': (n, 3 * 9 * n)}
    for c in counts:
        assert (c.instances, c.points) == (n, 9 * n)
        assert c.on_deformable == c.on_regular
    assert 0 < stages['c3'].regular <= 1
    # Offsets of 1000 px send every sampling location off the image, so off the object.
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith('conv2.offset_head.conv'):
                module.bias[:2 * 9] = 1000.0
    moved = by_stage(on_object_fractions(model, samples))
    for stage, c in moved.items():
        assert c.deformable == 0 and c.regular == stages[stage].regular
    assert on_object_fractions(model, samples, num_layers=3)[-1].points == 9 ** 3 * n
    with pytest.raises(ValueError, match='num_layers must be a positive int, got 0'):
        on_object_fractions(model, samples, num_layers=0)


def test_on_object_follows_a_rotation(data, tmp_path):
    from mmdcn_plugin.visualization import init_model
    model = init_model(QUICK_DCNV2)
    rows = on_object_by_value(model, data['ann_file'], data['img_dir'], 'rotate', '0,90',
                              str(tmp_path / 'cache'), max_images=1)
    assert [(r['value'], r['stage']) for r in rows] == [
        (0.0, 'c3'), (0.0, 'c4'), (0.0, 'c5'), (90.0, 'c3'), (90.0, 'c4'), (90.0, 'c5')]
    for r in rows:       # zero offsets: the deformable layers sample their regular grid
        assert r['deformable'] == r['regular'] and r['instances'] == rows[0]['instances'] > 0
