"""Tests of the synthetic COCO generator and its command-line tool."""
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mmdcn_plugin.synthetic import (CLASSES, DEFORMATION_LEVELS,
                                    generate_synthetic_coco)
from mmdcn_plugin.synthetic.annotation import mask_to_annotation

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
NUM_TRAIN, NUM_VAL = 6, 3
SPLITS = {'train': NUM_TRAIN, 'val': NUM_VAL}
# pycocotools' mask.decode trips a numpy 2 deprecation inside pycocotools itself.
IGNORE_PYCOCOTOOLS_NUMPY2_WARNING = pytest.mark.filterwarnings(
    'ignore:__array__ implementation:DeprecationWarning')


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """One small moderate-deformation dataset shared by the read-only tests."""
    out = tmp_path_factory.mktemp('synthetic_coco')
    result = generate_synthetic_coco(out, num_train=NUM_TRAIN, num_val=NUM_VAL,
                                     seed=0, deformation='moderate', progress=False)
    return out, result


def _files(root):
    """{relative path: bytes} of every file under ``root``."""
    found = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                found[osp.relpath(path, root)] = f.read()
    return found


def _load(out, split):
    with open(osp.join(out, 'annotations', f'{split}.json')) as f:
        return json.load(f)


def test_public_constants():
    assert 5 <= len(CLASSES) <= 6 and len(set(CLASSES)) == len(CLASSES)
    assert DEFORMATION_LEVELS == ('none', 'moderate', 'strong')


def test_returns_paths_and_counts(dataset):
    out, result = dataset
    assert result['out_dir'] == osp.abspath(out)
    assert tuple(result['classes']) == CLASSES
    for split, num in SPLITS.items():
        info = result[split]
        coco = _load(out, split)
        assert info['ann_file'] == osp.join(str(out), 'annotations', f'{split}.json')
        assert info['img_dir'] == osp.join(str(out), 'images', split)
        assert info['num_images'] == num == len(coco['images'])
        assert info['num_instances'] == len(coco['annotations']) > 0


def test_same_seed_gives_identical_files_other_seed_differs(tmp_path):
    kwargs = dict(num_train=3, num_val=2, deformation='strong', progress=False)
    generate_synthetic_coco(tmp_path / 'a', seed=3, **kwargs)
    generate_synthetic_coco(tmp_path / 'b', seed=3, **kwargs)
    generate_synthetic_coco(tmp_path / 'c', seed=4, **kwargs)
    a, b, c = (_files(tmp_path / name) for name in 'abc')
    assert len(a) == 2 + 3 + 2  # two JSON files and five PNGs
    assert a == b
    assert a.keys() == c.keys()
    # Every image and both annotation files change with the seed.
    assert all(a[path] != c[path] for path in a)


def test_image_depends_only_on_seed_split_and_index(tmp_path):
    # Each image has its own random stream, so a shorter run reproduces the
    # first images of a longer one exactly.
    generate_synthetic_coco(tmp_path / 'short', num_train=2, num_val=1, progress=False)
    generate_synthetic_coco(tmp_path / 'long', num_train=4, num_val=1, progress=False)
    for name in ('000000.png', '000001.png'):
        rel = osp.join('images', 'train', name)
        with open(tmp_path / 'short' / rel, 'rb') as f1, \
                open(tmp_path / 'long' / rel, 'rb') as f2:
            assert f1.read() == f2.read()
    assert _load(tmp_path / 'short', 'train')['annotations'] == \
        [a for a in _load(tmp_path / 'long', 'train')['annotations'] if a['image_id'] <= 2]


@pytest.mark.parametrize('split', sorted(SPLITS))
def test_annotations_are_valid_coco(dataset, split):
    from pycocotools.coco import COCO
    from pycocotools import mask as mask_utils

    out, _ = dataset
    ann_file = osp.join(out, 'annotations', f'{split}.json')
    coco = COCO(ann_file)
    raw = _load(out, split)

    assert [c['name'] for c in raw['categories']] == list(CLASSES)
    assert all(c['supercategory'] for c in raw['categories'])
    cat_ids = set(coco.getCatIds())
    images = {img['id']: img for img in raw['images']}
    assert len(images) == SPLITS[split]
    assert len({a['id'] for a in raw['annotations']}) == len(raw['annotations'])

    for img in raw['images']:
        path = osp.join(out, 'images', split, img['file_name'])
        pixels = cv2.imread(path)
        assert pixels is not None, path
        assert pixels.shape == (img['height'], img['width'], 3)

    for ann in raw['annotations']:
        img = images[ann['image_id']]
        assert ann['category_id'] in cat_ids
        assert ann['iscrowd'] == 0
        x, y, w, h = ann['bbox']
        assert all(isinstance(v, float) for v in ann['bbox'])
        assert w > 0 and h > 0 and ann['area'] > 0
        assert 0 <= x and 0 <= y and x + w <= img['width'] and y + h <= img['height']

        polygons = ann['segmentation']
        assert isinstance(polygons, list) and polygons
        assert all(len(p) >= 6 and len(p) % 2 == 0 for p in polygons)
        points = np.concatenate([np.reshape(p, (-1, 2)) for p in polygons])
        extent = [points[:, 0].min(), points[:, 1].min(),
                  points[:, 0].max(), points[:, 1].max()]
        assert np.allclose(extent, [x, y, x + w, y + h], atol=1.0), (extent, ann['bbox'])
        # The polygons rasterise back to the annotated (visible) area.
        rle = mask_utils.merge(
            mask_utils.frPyObjects(polygons, img['height'], img['width']))
        assert mask_utils.area(rle) == pytest.approx(ann['area'], rel=0.1)


@IGNORE_PYCOCOTOOLS_NUMPY2_WARNING
def test_mask_to_annotation_bridges_holes_and_drops_specks():
    from pycocotools import mask as mask_utils

    mask = np.zeros((40, 40), np.uint8)
    cv2.circle(mask, (15, 15), 10, 1, -1)
    cv2.circle(mask, (15, 15), 5, 0, -1)  # a ring: the hole must stay empty
    mask[35, 35] = 1  # a speck: not annotated, and not in bbox/area
    ann = mask_to_annotation(mask)
    mask[35, 35] = 0
    assert len(ann['segmentation']) == 1
    assert ann['area'] == mask.sum()
    assert ann['bbox'] == [5.0, 5.0, 21.0, 21.0]
    decoded = mask_utils.decode(mask_utils.merge(
        mask_utils.frPyObjects(ann['segmentation'], 40, 40)))
    assert decoded[15, 15] == 0
    iou = (decoded & mask).sum() / (decoded | mask).sum()
    assert iou > 0.95


@pytest.mark.parametrize('level', DEFORMATION_LEVELS)
def test_every_deformation_level(tmp_path, level):
    result = generate_synthetic_coco(tmp_path, num_train=3, num_val=1, seed=1,
                                     deformation=level, image_size=96, progress=False)
    assert result['train']['num_images'] == 3
    assert result['train']['num_instances'] > 0
    coco = _load(tmp_path, 'train')
    assert {(i['width'], i['height']) for i in coco['images']} == {(96, 96)}
    assert len(os.listdir(tmp_path / 'images' / 'train')) == 3


def test_deformation_level_changes_the_shapes(tmp_path):
    for level in ('none', 'strong'):
        generate_synthetic_coco(tmp_path / level, num_train=2, num_val=1, seed=0,
                                deformation=level, progress=False)
    boxes = {level: [a['bbox'] for a in _load(tmp_path / level, 'train')['annotations']]
             for level in ('none', 'strong')}
    assert boxes['none'] != boxes['strong']


@pytest.mark.parametrize('kwargs, message', [
    (dict(deformation='extreme'),
     r"deformation must be one of 'none', 'moderate', 'strong'; got 'extreme'"),
    (dict(num_train=0), r'num_train must be an integer >= 1, got 0'),
    (dict(num_val=-2), r'num_val must be an integer >= 1, got -2'),
    (dict(image_size=0), r'image_size must be an integer >= 32, got 0'),
    (dict(seed=-1), r'seed must be an integer >= 0, got -1'),
    (dict(num_train=2.5), r'num_train must be an integer >= 1, got 2.5 \(float\)'),
    (dict(out_dir=''), r"out_dir must be a non-empty path, got ''"),
])
def test_bad_arguments_raise_before_writing(tmp_path, kwargs, message):
    out = kwargs.pop('out_dir', tmp_path / 'out')
    with pytest.raises(ValueError, match=message):
        generate_synthetic_coco(out, progress=False, **kwargs)
    assert not (tmp_path / 'out').exists()


def test_progress_goes_to_stderr_only_when_asked(tmp_path, capsys):
    generate_synthetic_coco(tmp_path / 'p', num_train=2, num_val=1, progress=True)
    captured = capsys.readouterr()
    assert 'generating train: 2/2' in captured.err
    assert 'generating val: 1/1' in captured.err
    assert captured.out == ''
    generate_synthetic_coco(tmp_path / 'q', num_train=2, num_val=1, progress=False)
    assert capsys.readouterr().err == ''


def test_cli_writes_dataset_and_summary(tmp_path):
    out = tmp_path / 'cli'
    proc = subprocess.run(
        [sys.executable, osp.join('tools', 'make_synthetic_coco.py'), '--out-dir',
         str(out), '--num-train', '2', '--num-val', '1', '--seed', '5',
         '--deformation', 'strong', '--image-size', '64'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 'train: 2 images' in proc.stdout and 'val  : 1 images' in proc.stdout
    assert str(out) in proc.stdout
    assert 'generating train: 2/2' in proc.stderr
    assert len(_load(out, 'train')['images']) == 2
    assert sorted(os.listdir(out / 'images' / 'val')) == ['000000.png']
    # Same arguments through the API give the same files.
    generate_synthetic_coco(tmp_path / 'api', num_train=2, num_val=1, seed=5,
                            deformation='strong', image_size=64, progress=False)
    assert _files(out) == _files(tmp_path / 'api')


def test_cli_loads_the_generator_without_torch_or_mmdet():
    """The tool loads the generator's folder on its own, never the whole package."""
    code = ('import importlib.util, sys\n'
            'spec = importlib.util.spec_from_file_location("t", "tools/make_synthetic_coco.py")\n'
            'tool = importlib.util.module_from_spec(spec)\n'
            'spec.loader.exec_module(tool)\n'
            'gen = tool._load_generator()\n'
            'print(gen.__name__, gen.DEFORMATION_LEVELS == ("none", "moderate", "strong"),\n'
            '      sorted(m for m in ("torch", "mmdet", "mmcv", "mmdcn_plugin")\n'
            '             if m in sys.modules))\n')
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split(None, 1) == ['_mmdcn_synthetic.coco', 'True []\n']


def test_cli_rejects_bad_arguments(tmp_path):
    proc = subprocess.run(
        [sys.executable, osp.join('tools', 'make_synthetic_coco.py'), '--out-dir',
         str(tmp_path / 'x'), '--num-train', '0', '--no-progress'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert 'num_train must be an integer >= 1, got 0' in proc.stderr
    assert not (tmp_path / 'x').exists()


@IGNORE_PYCOCOTOOLS_NUMPY2_WARNING
def test_mmdet_coco_dataset_reads_it_back(dataset):
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    from mmdet.datasets import CocoDataset

    out, result = dataset
    for split in SPLITS:
        ds = CocoDataset(
            data_root=str(out), ann_file=f'annotations/{split}.json',
            data_prefix=dict(img=f'images/{split}/'), metainfo=dict(classes=CLASSES),
            pipeline=[], test_mode=split == 'val')
        assert len(ds) == result[split]['num_images']
        infos = [ds.get_data_info(i) for i in range(len(ds))]
        instances = [inst for info in infos for inst in info['instances']]
        assert len(instances) == result[split]['num_instances']
        assert all(inst['ignore_flag'] == 0 for inst in instances)
        assert {inst['bbox_label'] for inst in instances} <= set(range(len(CLASSES)))
        assert all(osp.isfile(info['img_path']) for info in infos)

    # Through the loading transforms, the polygons become masks and boxes.
    ds = CocoDataset(
        data_root=str(out), ann_file='annotations/train.json',
        data_prefix=dict(img='images/train/'), metainfo=dict(classes=CLASSES),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', with_bbox=True, with_mask=True)])
    sample = ds[0]
    num = len(ds.get_data_info(0)['instances'])
    assert sample['img'].shape == (128, 128, 3)
    assert len(sample['gt_masks']) == len(sample['gt_bboxes']) == num
    assert (sample['gt_masks'].areas > 0).all()
