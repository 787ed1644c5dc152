"""The robustness tool: geometric transforms with mask-derived boxes, the mAP sweep, and the
on-object fraction of deformable sampling locations."""
import copy
import csv
import json
import os.path as osp

import numpy as np
import pytest
import torch

from helpers import QUICK_DCNV2, load_tool, one_thread  # noqa: F401  (one_thread: fixture)
from mmdcn_plugin.robustness import (IDENTITY, by_stage, coco_samples, count_on_object,
                                     evaluate_checkpoint, evaluate_on_splits, interior_point,
                                     load_config, on_object_by_value, on_object_fractions,
                                     parse_values, rasterize, tight_box, transform_annotations,
                                     transform_matrix, warp_image, write_transformed_split)
from mmdcn_plugin.robustness.evaluate import write_csv


# ------------------------------------------------------------------ fixtures
def _generate(root, num_val):
    from mmdcn_plugin.datasets import generate_synthetic_coco
    out = generate_synthetic_coco(root, num_train=1, num_val=num_val, seed=5,
                                  deformation='strong', image_size=128, progress=False)
    return dict(root=root, ann_file=out['val']['ann_file'], img_dir=out['val']['img_dir'])


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    """6 val images of 128 px with strongly deformed (rotated, sheared) shapes."""
    return _generate(tmp_path_factory.mktemp('shapes'), 6)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """2 val images: what the detector runs on (a test run costs seconds per image here)."""
    return _generate(tmp_path_factory.mktemp('robustness'), 2)


def _load(ann_file):
    with open(ann_file) as f:
        coco = json.load(f)
    by_image = {}
    for ann in coco['annotations']:
        by_image.setdefault(ann['image_id'], []).append(ann)
    return coco, by_image


def _read(path):
    import cv2
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


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
    coco, by_image = _load(shapes['ann_file'])
    assert coco['annotations']
    for info in coco['images']:
        img = _read(osp.join(shapes['img_dir'], info['file_name']))
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
    coco, by_image = _load(shapes['ann_file'])
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


# ------------------------------------------------------------------ the split and the sweep
def test_identity_split_is_the_original(data, tmp_path):
    split = write_transformed_split(data['ann_file'], data['img_dir'], 'rotate', 0,
                                    str(tmp_path / 'rotate_0'), progress=False)
    coco, _ = _load(data['ann_file'])
    new, _ = _load(split['ann_file'])
    assert (split['n_instances'], split['n_ignored']) == (len(coco['annotations']), 0)
    keys = ('id', 'image_id', 'category_id', 'segmentation', 'bbox', 'area', 'iscrowd')
    assert ([{k: a[k] for k in keys} for a in new['annotations']]
            == [{k: a[k] for k in keys} for a in coco['annotations']])
    for old, img in zip(coco['images'], new['images']):
        assert np.array_equal(_read(osp.join(data['img_dir'], old['file_name'])),
                              _read(osp.join(split['img_dir'], img['file_name'])))
    again = write_transformed_split(data['ann_file'], data['img_dir'], 'rotate', 0,
                                    str(tmp_path / 'rotate_0'), progress=False)
    assert again['cached']
    other = write_transformed_split(data['ann_file'], data['img_dir'], 'rotate', 0,
                                    str(tmp_path / 'rotate_0'), min_visible=0.3,
                                    progress=False)
    assert not other['cached']


def _data_options(data):
    """cfg-options that point the quick-start config's test split at the tiny data."""
    data_root = osp.dirname(osp.dirname(data['ann_file'])) + '/'
    return {'test_dataloader.dataset.data_root': data_root,
            'test_evaluator.ann_file': data['ann_file'],
            'test_dataloader.num_workers': 0, 'test_dataloader.persistent_workers': False}


@pytest.fixture(scope='module')
def checkpoints(data):
    """Two random-weight checkpoints of the quick-start DCNv2 detector."""
    from mmdet.registry import MODELS
    from mmdcn_plugin.datasets import CLASSES
    cfg = load_config(QUICK_DCNV2)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = MODELS.build(cfg.model)
        model.init_weights()
        path = data['root'] / f'seed{seed}' / 'random.pth'
        path.parent.mkdir()
        torch.save(dict(state_dict=model.state_dict(),
                        meta=dict(dataset_meta=dict(classes=CLASSES))), path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope='module')
def plain(data, checkpoints, tmp_path_factory):
    """Metrics and dumped predictions of checkpoint 0 on the untransformed split."""
    work = tmp_path_factory.mktemp('plain')
    cfg = load_config(QUICK_DCNV2, _data_options(data))
    cfg.test_evaluator = [cfg.test_evaluator,
                          dict(type='DumpDetResults', out_file_path=str(work / 'preds.pkl'))]
    metrics = evaluate_checkpoint(cfg, checkpoints[0], str(work), 'robustness_test_plain')
    return cfg, metrics, str(work / 'preds.pkl')


def _predictions(path):
    from mmengine.fileio import load
    return load(path)


def test_identity_value_gives_the_untransformed_metric(data, checkpoints, plain, tmp_path):
    """Through one reused Runner: a quarter turn first, then the identity."""
    cfg, metrics, preds_file = plain
    splits = [write_transformed_split(data['ann_file'], data['img_dir'], transform, value,
                                      str(tmp_path / f'{transform}_{value}'), progress=False)
              for transform, value in (('rotate', 90), ('shear', 0))]
    cfg = copy.deepcopy(cfg)
    cfg.test_evaluator[1]['out_file_path'] = str(tmp_path / 'preds.pkl')
    runs = evaluate_on_splits(cfg, checkpoints[0], splits, str(tmp_path / 'work'),
                              'robustness_test_identity')
    turned = next(runs)
    assert all(p['img_path'].startswith(splits[0]['img_dir'])
               for p in _predictions(str(tmp_path / 'preds.pkl')))
    ident = next(runs)
    assert ident == metrics
    assert len([k for k in metrics if k.startswith('coco/bbox_mAP')]) == 6
    # The same detections, box for box, read from the transformed copy of the images.
    before, after = _predictions(preds_file), _predictions(str(tmp_path / 'preds.pkl'))
    assert len(before) == len(after) == 2
    for b, a in zip(before, after):
        assert a['img_path'].startswith(splits[1]['img_dir'])
        for key in ('bboxes', 'scores', 'labels'):
            assert torch.equal(a['pred_instances'][key], b['pred_instances'][key])
        assert len(a['pred_instances']['bboxes']) > 0
    assert set(turned) == set(metrics)


def _tool():
    """tools/robustness.py as a module (run in this process: a fresh interpreter spends
    more time importing torch and mmdet than the whole sweep takes)."""
    return load_tool('robustness')


def test_tool_end_to_end(data, checkpoints, plain, tmp_path, capsys):
    out = tmp_path / 'out'
    argv = [QUICK_DCNV2, *checkpoints, '--transform', 'rotate', '--values', '90,0',
            '--out-dir', str(out),
            '--cfg-options', *[f'{k}={v}' for k, v in _data_options(data).items()]]
    assert _tool().run(argv) == 0
    err = capsys.readouterr().err
    assert '2/2 images' in err and 'checkpoint 2/2' in err and 'rotate_0: 1/1 test batches' in err
    with open(out / 'robustness_rotate.csv') as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ['checkpoint', 'value', 'bbox_mAP', 'mAP50', 'mAP75', 'n_instances']
    assert [(r['checkpoint'], r['value']) for r in rows] == [
        ('seed0/random.pth', '90'), ('seed0/random.pth', '0'),
        ('seed1/random.pth', '90'), ('seed1/random.pth', '0')]
    # A quarter turn of a square image loses nothing.
    n = len(_load(data['ann_file'])[0]['annotations'])
    assert [int(r['n_instances']) for r in rows] == [n] * 4
    # The identity row, run second on a reused Runner, is the untransformed metric.
    metrics = plain[1]
    assert float(rows[1]['bbox_mAP']) == metrics['coco/bbox_mAP']
    assert float(rows[1]['mAP50']) == metrics['coco/bbox_mAP_50']
    assert float(rows[1]['mAP75']) == metrics['coco/bbox_mAP_75']
    assert (out / 'robustness_rotate.png').stat().st_size > 1000
    with open(out / 'robustness_rotate.json') as f:
        assert json.load(f)['labels'] == ['seed0/random.pth', 'seed1/random.pth']
    # With one checkpoint the CSV has no checkpoint column.
    write_csv([dict(checkpoint='a.pth', value=30.0, bbox_mAP=0.5, mAP50=0.75, mAP75=0.25,
                    n_instances=3)], str(tmp_path / 'one.csv'), with_checkpoint=False)
    with open(tmp_path / 'one.csv') as f:
        assert f.read().splitlines() == ['value,bbox_mAP,mAP50,mAP75,n_instances',
                                         '30,0.5,0.75,0.25,3']


def test_tool_reads_negative_values():
    args = _tool().parse_args(['c.py', 'a.pth', '--transform', 'shear', '--values', '-30,15',
                               '--out-dir', 'o', '--cfg-options', 'x=-1'])
    assert (args.values, args.cfg_options) == ('-30,15', {'x': -1})


@pytest.mark.parametrize('args, message', [
    (['--transform', 'scale', '--values', '1,0'], 'scale value must be > 0 (a zoom factor '
     'about the image centre, 1 = unchanged), got 0'),
    (['--transform', 'spin', '--values', '1'], "transform must be one of 'rotate', 'scale', "
     "'shear'; got 'spin'"),
    (['--transform', 'rotate', '--values', '10,x'], "values must be comma-separated numbers "
     "(e.g. 0,30,60); entry 2 is 'x'"),
])
def test_tool_reports_bad_arguments(tmp_path, capsys, args, message):
    ckpt = tmp_path / 'a.pth'
    ckpt.write_bytes(b'')
    assert _tool().run([QUICK_DCNV2, str(ckpt), *args, '--out-dir', str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f'robustness.py: error: {message}'
    assert _tool().run([QUICK_DCNV2, str(tmp_path / 'missing.pth'), '--transform', 'rotate',
                        '--values', '0', '--out-dir', str(tmp_path)]) == 2
    assert "checkpoint '" in capsys.readouterr().err


# ------------------------------------------------------------------ where the offsets go
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
