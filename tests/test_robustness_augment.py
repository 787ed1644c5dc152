"""RandomRotateScaleShear: the robustness sweep's geometry as a training augmentation."""
import numpy as np
import pytest

from mmdcn_plugin.robustness import rasterize, tight_box, transform_annotations, transform_matrix
from mmdcn_plugin.robustness.augment import RandomRotateScaleShear, compose


def _results(h=96, w=128, ignore=(False, False, False)):
    """An image with three polygon instances (a square, a triangle, one near a corner)."""
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import PolygonMasks
    polys = [[np.array([40., 30., 70., 30., 70., 60., 40., 60.])],
             [np.array([80., 50., 110., 55., 90., 85.])],
             [np.array([2., 2., 14., 2., 14., 12., 2., 12.])]]
    boxes = []
    for p in polys:
        box = tight_box(rasterize([p[0].tolist()], w, h))
        boxes.append([box[0], box[1], box[0] + box[2], box[1] + box[3]])
    rng = np.random.default_rng(0)
    return dict(img=rng.integers(0, 255, (h, w, 3), dtype=np.uint8), img_shape=(h, w),
                gt_bboxes=HorizontalBoxes(np.array(boxes, np.float32)),
                gt_bboxes_labels=np.array([0, 1, 2]), gt_ignore_flags=np.array(ignore),
                gt_masks=PolygonMasks(polys, h, w))


def test_identity_gives_the_input_back():
    results = _results()
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in results.items()}
    boxes = results['gt_bboxes'].tensor.clone()
    out = RandomRotateScaleShear(rotate=(0, 0), scale=(1, 1), shear=(0, 0))(results)
    assert out['rotate_scale_shear'] == (0.0, 1.0, 0.0)
    assert np.array_equal(out['img'], before['img'])
    assert out['gt_bboxes'].tensor.equal(boxes)
    assert np.array_equal(out['gt_bboxes_labels'], before['gt_bboxes_labels'])
    assert len(out['gt_masks']) == 3


@pytest.mark.parametrize('seed', range(6))
def test_boxes_are_tight_around_the_transformed_masks_by_the_sweep_rule(seed):
    """The same boxes, ignore flags and removals as transform_annotations gives the
    evaluation, and each box is the tight box of its transformed mask."""
    np.random.seed(seed)
    results = _results(ignore=(False, True, False))
    polys = [[p.tolist() for p in inst] for inst in results['gt_masks'].masks]
    anns = [dict(id=i, segmentation=p, iscrowd=int(i == 1)) for i, p in enumerate(polys)]
    out = RandomRotateScaleShear(keep_masks=True)(results)
    rotate, scale, shear = out['rotate_scale_shear']
    assert -180 <= rotate <= 180 and 0.5 <= scale <= 2 and -30 <= shear <= 30
    h, w = 96, 128
    matrix = compose(transform_matrix('rotate', rotate, w, h),
                     transform_matrix('scale', scale, w, h),
                     transform_matrix('shear', shear, w, h))
    expected = transform_annotations(anns, matrix, w, h)
    assert [a['id'] for a in expected] == list(out['gt_bboxes_labels'])   # labels = ids here
    assert out['gt_ignore_flags'].tolist() == [bool(a['iscrowd']) for a in expected]
    boxes = out['gt_bboxes'].tensor.numpy()
    for box, ann, inst in zip(boxes, expected, out['gt_masks'].masks):
        x, y, bw, bh = tight_box(rasterize([p.tolist() for p in inst], w, h))
        assert box.tolist() == [x, y, x + bw, y + bh] == [
            ann['bbox'][0], ann['bbox'][1], ann['bbox'][0] + ann['bbox'][2],
            ann['bbox'][1] + ann['bbox'][3]]


def test_a_quarter_turn_moves_image_and_boxes_together():
    results = _results()
    img = results['img'].copy()
    out = RandomRotateScaleShear(rotate=(90, 90), scale=(1, 1), shear=(0, 0))(results)
    # 90 degrees counter-clockwise about the centre (64, 48) of a 128 x 96 image:
    # x' = y + 16, y' = 112 - x; so pixel (row r, col c) comes from (c - 16, 111 - r),
    # and the square [40, 70] x [30, 60] goes to [46, 76] x [42, 72].
    for r, c in ((50, 50), (20, 70), (90, 100)):
        assert np.array_equal(out['img'][r, c], img[c - 16, 111 - r])
    x, y, bw, bh = tight_box(rasterize([[46, 42, 76, 42, 76, 72, 46, 72]], 128, 96))
    assert out['gt_bboxes'].tensor[0].tolist() == [x, y, x + bw, y + bh]


def test_instances_leaving_the_image_are_removed_or_ignored():
    """Zoomed by 2 about the centre, the corner square leaves the image and is removed."""
    out = RandomRotateScaleShear(rotate=(0, 0), scale=(2, 2), shear=(0, 0),
                                 keep_masks=False)(_results())
    assert out['gt_bboxes_labels'].tolist() == [0, 1]
    assert 'gt_masks' not in out
    assert out['gt_bboxes'].tensor.shape == (2, 4)


@pytest.mark.parametrize('kwargs, match', [
    (dict(rotate=(10, 0)), r'rotate must satisfy .* min <= max, got \(10, 0\)'),
    (dict(rotate=5), r'rotate must be a \(min, max\) pair of finite numbers, got 5'),
    (dict(scale=(0, 2)), r'scale must satisfy 0 < min .* got \(0, 2\)'),
    (dict(shear=(-90, 0)), r'shear must satisfy -90 < min <= max < 90 .* got \(-90, 0\)'),
    (dict(min_visible=2), r'min_visible must be a number in \[0, 1\], got 2'),
    (dict(fill=300), r'fill must be an int in \[0, 255\]'),
    (dict(keep_masks='no'), r"keep_masks must be a bool, got 'no'"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomRotateScaleShear(**kwargs)


def test_it_needs_polygon_masks():
    from mmdet.structures.mask import BitmapMasks
    results = _results()
    del results['gt_masks']
    with pytest.raises(KeyError, match=r"need 'gt_masks'.*with_mask=True, poly2mask=False"):
        RandomRotateScaleShear()(results)
    results = _results()
    results['gt_masks'] = BitmapMasks(np.zeros((3, 96, 128), np.uint8), 96, 128)
    with pytest.raises(TypeError, match='gt_masks must be PolygonMasks .* got BitmapMasks'):
        RandomRotateScaleShear()(results)


def test_registered_in_mmdet_transforms():
    import mmdcn_plugin  # noqa: F401
    from mmdet.registry import TRANSFORMS
    t = TRANSFORMS.build(dict(type='RandomRotateScaleShear', rotate=(-10, 10)))
    assert isinstance(t, RandomRotateScaleShear) and t.rotate == (-10.0, 10.0)
