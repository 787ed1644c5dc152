"""Geometric transforms of an image and its instances (``robustness/transforms.py``):
the values they take, the matrices, and boxes recomputed from the transformed masks."""
import os.path as osp
import warnings

import numpy as np
import pytest

from robustness_helpers import load, read, shapes  # noqa: F401  (shapes: fixture)
from mmdcn_plugin.robustness import (IDENTITY, TRANSFORM_NAMES, parse_values, rasterize,
                                     tight_box, transform_annotations, transform_matrix,
                                     warp_image)


def test_transform_names_and_the_deprecated_alias():
    """The names are not called TRANSFORMS (mmdet's registry); the old name still reads."""
    import mmdcn_plugin.robustness as robustness
    from mmdcn_plugin.robustness import augment
    from mmdet.registry import TRANSFORMS
    assert TRANSFORM_NAMES == ('rotate', 'scale', 'shear') == tuple(IDENTITY)
    assert augment.TRANSFORMS is TRANSFORMS
    with pytest.warns(DeprecationWarning, match='now TRANSFORM_NAMES'):
        assert robustness.TRANSFORMS == TRANSFORM_NAMES
    assert 'TRANSFORMS' not in robustness.__all__
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        for name in robustness.__all__:     # none of the exported names warns
            getattr(robustness, name)


# ------------------------------------------------------------------ values
@pytest.mark.parametrize('transform, values, match', [
    ('twist', '0,30', r"transform must be one of 'rotate', 'scale', 'shear'; got 'twist'"),
    ('rotate', '0,thirty', r"comma-separated numbers .* entry 2 is 'thirty'"),
    ('rotate', '', r'at least one rotate value, got none'),
    ('rotate', [], r'at least one rotate value, got none'),
    ('scale', '1,0', r'scale value must be > 0 .* got 0'),
    ('scale', '-0.5', r'scale value must be > 0 .* got -0.5'),
    ('shear', '10,90', r'shear value must be .* -90 < value < 90, got 90'),
    ('shear', '-120', r'-90 < value < 90, got -120'),
    ('rotate', '30,nan', r'rotate value must be finite, got nan'),
    ('rotate', '30,30', r'values must be distinct, got 30 twice'),
    ('rotate', ['30'], r"rotate value must be a number, got '30' \(str\)"),
])
def test_bad_values_are_named(transform, values, match):
    with pytest.raises(ValueError, match=match):
        parse_values(transform, values)


def test_values_parse():
    assert parse_values('rotate', ' 0, 30,-45.5') == [0.0, 30.0, -45.5]
    assert parse_values('scale', [0.5, 1, 2]) == [0.5, 1.0, 2.0]


@pytest.mark.parametrize('fill', [-1, 256, (0, 0), 1.5, 'grey'])
def test_bad_fill(fill):
    with pytest.raises(ValueError, match='fill must be an int in'):
        warp_image(np.zeros((4, 4, 3), np.uint8), transform_matrix('rotate', 0, 4, 4), fill)


# ------------------------------------------------------------------ geometry
@pytest.mark.parametrize('transform, value', sorted(IDENTITY.items()))
def test_identity_matrix_is_exact(transform, value):
    assert (transform, value) in {('rotate', 0), ('scale', 1), ('shear', 0)}
    matrix = transform_matrix(transform, value, 128, 96)
    assert np.array_equal(matrix, [[1, 0, 0], [0, 1, 0]])


def test_rotation_direction_and_centre():
    """+90 degrees is a quarter turn counter-clockwise on screen, about the centre."""
    img = np.arange(6 * 6 * 3, dtype=np.uint8).reshape(6, 6, 3)
    assert np.array_equal(warp_image(img, transform_matrix('rotate', 90, 6, 6)),
                          np.rot90(img))
    # The right edge's middle (6, 3) goes to the top edge's middle (3, 0).
    matrix = transform_matrix('rotate', 90, 6, 6)
    assert np.allclose(matrix @ [6, 3, 1], [3, 0])
    # Scale 2 about the centre maps (4, 3) to (5, 3); shear 45 moves the bottom right.
    assert np.allclose(transform_matrix('scale', 2, 6, 6) @ [4, 3, 1], [5, 3])
    assert np.allclose(transform_matrix('shear', 45, 6, 6) @ [3, 6, 1], [6, 6])


def test_four_quarter_turns_return_the_original(shapes):
    coco, by_image = load(shapes['ann_file'])
    assert coco['annotations']
    for info in coco['images']:
        img = read(osp.join(shapes['img_dir'], info['file_name']))
        h, w = img.shape[:2]
        anns = by_image.get(info['id'], [])
        matrix = transform_matrix('rotate', 90, w, h)
        turned, cur = img, anns
        for quarter in range(4):
            turned = warp_image(turned, matrix)
            cur = transform_annotations(cur, matrix, w, h)
            if quarter == 0:
                # One quarter turn: the image is np.rot90, each box the turned old box.
                assert np.array_equal(turned, np.rot90(img))
                for old, new in zip(anns, cur):
                    x, y, bw, bh = old['bbox']
                    assert new['bbox'] == [y, w - x - bw, bh, bw]
        assert np.array_equal(turned, img)
        assert len(cur) == len(anns)
        for old, new in zip(anns, cur):
            for key in ('id', 'category_id', 'segmentation', 'bbox', 'area', 'iscrowd'):
                assert new[key] == old[key], (key, old['id'])


@pytest.mark.parametrize('transform, value', [('rotate', 30), ('rotate', 135), ('scale', 1.7),
                                              ('scale', 0.5), ('shear', 25)])
def test_boxes_are_tight_around_the_transformed_masks(shapes, transform, value):
    coco, by_image = load(shapes['ann_file'])
    looser = 0
    for info in coco['images']:
        w, h = info['width'], info['height']
        matrix = transform_matrix(transform, value, w, h)
        anns = {a['id']: a for a in by_image.get(info['id'], [])}
        for new in transform_annotations(list(anns.values()), matrix, w, h):
            old = anns[new['id']]
            mask = rasterize(new['segmentation'], w, h)
            x, y, bw, bh = map(int, new['bbox'])
            assert new['bbox'] == tight_box(mask)
            assert mask[y:y + bh, x:x + bw].sum() == mask.sum() == new['area']
            # Every edge of the box touches the mask.
            assert mask[y].any() and mask[y + bh - 1].any()
            assert mask[:, x].any() and mask[:, x + bw - 1].any()
            poly = np.concatenate([np.reshape(p, (-1, 2)) for p in new['segmentation']])
            assert (poly >= 0).all() and (poly[:, 0] <= w).all() and (poly[:, 1] <= h).all()
            # The turned corners of the old box give a box at least as large; often larger.
            ox, oy, ow, oh = old['bbox']
            corners = np.array([[ox, oy, 1], [ox + ow, oy, 1], [ox, oy + oh, 1],
                                [ox + ow, oy + oh, 1]]) @ matrix.T
            cx0, cy0 = np.clip(corners.min(0), 0, [w, h])
            cx1, cy1 = np.clip(corners.max(0), 0, [w, h])
            assert cx0 <= x + 1 and cy0 <= y + 1 and cx1 >= x + bw - 1 and cy1 >= y + bh - 1
            looser += (cx1 - cx0) * (cy1 - cy0) > bw * bh * 1.1
    if transform == 'rotate':
        assert looser > 0


def test_instances_leaving_the_image_follow_the_rule():
    """Scale 2 about (50, 50) on a 100 x 100 image: x -> 2x - 50."""
    def square(ann_id, x0, x1):
        return dict(id=ann_id, image_id=1, category_id=1, iscrowd=0, area=0, bbox=[],
                    segmentation=[[x0, 40, x1, 40, x1, 50, x0, 50]])

    anns = [square(1, 60, 70),     # -> [70, 90]: inside, an instance
            square(2, 70, 78),     # -> [90, 106]: 10/16 inside, an instance (clipped)
            square(3, 72, 80),     # -> [94, 110]: 6/16 inside < 0.5: an ignore region
            square(4, 90, 98)]     # -> [130, 146]: outside, removed
    out = transform_annotations(anns, transform_matrix('scale', 2, 100, 100), 100, 100)
    assert [a['id'] for a in out] == [1, 2, 3]
    assert [a['iscrowd'] for a in out] == [0, 0, 1]
    assert [a['bbox'] for a in out] == [[70.0, 30.0, 20.0, 20.0], [90.0, 30.0, 10.0, 20.0],
                                        [94.0, 30.0, 6.0, 20.0]]
    assert [a['area'] for a in out] == [400.0, 200.0, 120.0]
    # min_visible=0: anything still visible stays an instance.
    out = transform_annotations(anns, transform_matrix('scale', 2, 100, 100), 100, 100,
                                min_visible=0)
    assert [a['iscrowd'] for a in out] == [0, 0, 0]
    with pytest.raises(ValueError, match=r'min_visible must be in \[0, 1\], got 1.5'):
        transform_annotations(anns, transform_matrix('scale', 2, 100, 100), 100, 100, 1.5)


def test_annotations_need_polygons():
    ann = dict(id=7, image_id=1, category_id=1, bbox=[0, 0, 2, 2], area=4, iscrowd=0,
               segmentation={'counts': 'abc', 'size': [4, 4]})
    with pytest.raises(ValueError, match=r'val.json: annotation id 7 needs polygon '
                                         r'segmentation .* got RLE \(dict\)'):
        transform_annotations([ann], transform_matrix('rotate', 10, 4, 4), 4, 4,
                              where='val.json')
