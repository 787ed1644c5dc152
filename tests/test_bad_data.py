"""Bad COCO data: each problem is skipped with one warning naming it, or stops with an
error naming the file and the item (``SafeCocoDataset``, ``SafeLoadImageFromFile``).

Every case starts from the same generated set (6 train images holding 8 objects;
annotation id 1 is the only object of image id 1, ``000000.png``; image id 2 is
``000001.png``) and breaks one thing.
"""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import warnings

import pytest

from mmdcn_plugin.datasets import BadDataWarning
from mmdcn_plugin.datasets.safe_coco import SafeCocoDataset
from mmdcn_plugin.synthetic import CLASSES, generate_synthetic_coco
from mmdcn_plugin.datasets.transforms import SafeLoadImageFromFile  # noqa: F401 (registers)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICK = osp.join(ROOT, 'configs', 'quickstart', 'faster-rcnn_r50-narrow_fpn_synthetic.py')
PIPELINE = [dict(type='SafeLoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
            dict(type='PackDetInputs')]


@pytest.fixture(scope='module')
def clean_set(tmp_path_factory):
    root = tmp_path_factory.mktemp('clean')
    generate_synthetic_coco(str(root), num_train=6, num_val=4, seed=0, progress=False)
    return root


@pytest.fixture
def broken(clean_set, tmp_path):
    """Copy of the clean set; call with a function editing the train JSON in place."""
    root = tmp_path / 'data'
    shutil.copytree(clean_set, root)

    def make(edit=None, split='train'):
        path = root / 'annotations' / f'{split}.json'
        if edit is not None:
            data = json.loads(path.read_text())
            edit(data)
            path.write_text(json.dumps(data))
        return root
    return make


def build(root, split='train', test_mode=False):
    dataset = SafeCocoDataset(
        data_root=f'{root}/', ann_file=f'annotations/{split}.json',
        data_prefix=dict(img=f'images/{split}/'), metainfo=dict(classes=CLASSES),
        filter_cfg=None if test_mode else dict(filter_empty_gt=True, min_size=4),
        test_mode=test_mode, pipeline=PIPELINE)
    return dataset


def num_instances(dataset):
    return sum(len(dataset.get_data_info(i)['instances']) for i in range(len(dataset)))


def ann(data, ann_id):
    return next(a for a in data['annotations'] if a['id'] == ann_id)


def test_clean_set_gives_no_warning(broken):
    root = broken()
    with warnings.catch_warnings():
        warnings.simplefilter('error', BadDataWarning)
        dataset = build(root)
    assert (len(dataset), num_instances(dataset)) == (6, 8)


# (a) image listed but missing on disk
@pytest.mark.parametrize('test_mode', [False, True])
def test_missing_image_is_skipped_with_a_warning(broken, test_mode):
    root = broken()
    split = 'val' if test_mode else 'train'
    before = len(build(root, split, test_mode))
    os.remove(root / 'images' / split / '000001.png')
    match = r'1 images missing on disk, skipped.*000001\.png \(image id 2\)'
    with pytest.warns(BadDataWarning, match=match) as record:
        dataset = build(root, split, test_mode)
    messages = [str(w.message) for w in record if w.category is BadDataWarning]
    assert len(messages) == 1, messages
    assert len(dataset) == before - 1
    # The evaluator reads the annotation file, so the warning says what the skip costs.
    assert ('counts their objects as missed' in messages[0]) == test_mode


def test_every_image_missing_is_an_error(broken):
    root = broken()
    shutil.rmtree(root / 'images' / 'train')
    with pytest.raises(ValueError, match=r'train\.json leaves no image.*6 listed'), \
            pytest.warns(BadDataWarning, match='6 images missing'):
        build(root)


# (b) zero-size box, box partly and wholly outside the image
@pytest.mark.parametrize('side', [2, 3])
def test_zero_size_box_is_skipped_and_its_image_dropped(broken, side):
    def zero(data):
        ann(data, 1)['bbox'][side] = 0
    root = broken(zero)
    with pytest.warns(BadDataWarning, match=r'zero-size box.*annotation id 1 \(image id 1, 000000'):
        dataset = build(root)
    # mmdet kept image 1 with no objects; it is now filtered like an empty image.
    assert (len(dataset), num_instances(dataset)) == (5, 7)


def test_box_partly_outside_is_clipped(broken):
    def partly(data):
        ann(data, 1)['bbox'] = [100.0, -10.0, 60.0, 40.0]
    root = broken(partly)
    with pytest.warns(BadDataWarning,
                      match=r'partly outside the image, clipped: annotation id 1 .*'
                            r'-> \[100\.0, 0\.0, 28\.0, 30\.0\] in 128x128'):
        dataset = build(root)
    info = next(dataset.get_data_info(i) for i in range(len(dataset))
                if dataset.get_data_info(i)['img_id'] == 1)
    assert info['instances'][0]['bbox'] == [100.0, 0.0, 128.0, 30.0]
    assert num_instances(dataset) == 8


@pytest.mark.parametrize('bbox', [[200.0, 10.0, 20.0, 20.0], [127.5, 10.0, 20.0, 20.0]])
def test_box_outside_is_skipped(broken, bbox):
    def outside(data):
        ann(data, 1)['bbox'] = bbox
    root = broken(outside)
    with pytest.warns(BadDataWarning, match=r'box outside the image, skipped: annotation id 1'):
        dataset = build(root)
    assert (len(dataset), num_instances(dataset)) == (5, 7)


# (c) category id not in the categories list
def test_unknown_category_is_skipped(broken):
    def unknown(data):
        ann(data, 1)['category_id'] = 99
    root = broken(unknown)
    with pytest.warns(BadDataWarning,
                      match=r'category id not in "categories", skipped: '
                            r'annotation id 1 \(image id 1, 000000\.png\) category id 99'):
        dataset = build(root)
    assert (len(dataset), num_instances(dataset)) == (5, 7)


# (d) image without annotations: valid COCO, no warning
def test_empty_image_kept_for_test_filtered_for_training(broken):
    def empty(data):
        data['annotations'] = [a for a in data['annotations'] if a['image_id'] != 1]
    root = broken(empty)
    with warnings.catch_warnings():
        warnings.simplefilter('error', BadDataWarning)
        train = build(root)
        test = build(root, test_mode=True)
    assert (len(train), num_instances(train)) == (5, 7)
    assert (len(test), num_instances(test)) == (6, 7)


def test_many_bad_boxes_give_one_summary_line(broken):
    def many(data):
        base = ann(data, 1)
        data['annotations'] += [dict(base, id=1000 + i, bbox=[1.0, 1.0, 0.0, 5.0])
                                for i in range(1000)]
    root = broken(many)
    with pytest.warns(BadDataWarning) as record:
        dataset = build(root)
    messages = [str(w.message) for w in record if w.category is BadDataWarning]
    assert len(messages) == 1, messages
    assert '1000 annotations with a zero-size box' in messages[0]
    assert 'annotation id 1000 ' in messages[0] and 'and 997 more' in messages[0]
    assert num_instances(dataset) == 8


# (e) truncated or corrupt image: error naming the file, when the pipeline reads it
@pytest.mark.parametrize('damage', ['truncate', 'garbage'])
def test_corrupt_image_is_an_error_naming_it(broken, damage):
    root = broken()
    path = root / 'images' / 'train' / '000001.png'
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] if damage == 'truncate' else b'not a png')
    dataset = build(root)
    index = next(i for i in range(len(dataset)) if dataset.get_data_info(i)['img_id'] == 2)
    dataset[index - 1 if index else index + 1]  # the others still load
    with pytest.raises(OSError, match=r'cannot decode image .*000001\.png \(img_id 2\)'):
        dataset[index]


def test_image_removed_after_loading_is_an_error_naming_it(broken):
    root = broken()
    dataset = build(root)
    os.remove(root / 'images' / 'train' / '000001.png')
    index = next(i for i in range(len(dataset)) if dataset.get_data_info(i)['img_id'] == 2)
    with pytest.raises(FileNotFoundError, match=r'000001\.png \(img_id 2\) does not exist'):
        dataset[index]


# (f) annotation file that is not JSON, or not COCO
def test_invalid_json_is_an_error_with_file_and_position(broken):
    root = broken()
    (root / 'annotations' / 'train.json').write_text('{"images": [1, 2,,]}')
    with pytest.raises(ValueError, match=r'train\.json is not valid JSON: .*line 1 column 18'):
        build(root)


@pytest.mark.parametrize('key', ['images', 'categories'])
def test_missing_top_level_list_is_an_error(broken, key):
    def drop(data):
        del data[key]
    root = broken(drop)
    with pytest.raises(ValueError, match=rf"train\.json has no '{key}'"):
        build(root)


def test_annotation_without_bbox_is_an_error_naming_it(broken):
    def no_bbox(data):
        del ann(data, 3)['bbox']
    root = broken(no_bbox)
    with pytest.raises(ValueError, match=r"train\.json: annotations\[2\] "
                                         r"\(id 3, image id \d+\) lacks \['bbox'\]"):
        build(root)


def test_evaluation_through_the_dataset_api(broken):
    """Perfect predictions on a val set with an unknown category and an empty image."""
    from mmdet.evaluation import CocoMetric

    def edit(data):
        data['annotations'][0]['category_id'] = 99
        data['annotations'] = [a for a in data['annotations'] if a['image_id'] != 4]
    root = broken(edit, split='val')
    with pytest.warns(BadDataWarning, match='category id 99'):
        dataset = build(root, 'val', test_mode=True)
    assert len(dataset) == 4
    metric = CocoMetric(ann_file=str(root / 'annotations' / 'val.json'), metric='bbox')
    metric.dataset_meta = dataset.metainfo
    for i in range(len(dataset)):
        sample = dataset[i]['data_samples']
        gt = sample.gt_instances
        pred = dict(img_id=sample.img_id, ori_shape=sample.ori_shape,
                    pred_instances=dict(bboxes=gt.bboxes.tensor, labels=gt.labels,
                                        scores=gt.labels.new_ones(len(gt.labels)).float()))
        metric.process({}, [dict(pred, gt_instances=gt.to_dict())])
    results = metric.evaluate(len(dataset))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)


def test_train_tool_on_a_file_with_several_problems(broken, tmp_path):
    def several(data):
        ann(data, 1)['category_id'] = 99
        ann(data, 2)['bbox'][2] = 0
        ann(data, 3)['bbox'] = [100.0, 100.0, 60.0, 60.0]
    root = broken(several)
    os.remove(root / 'images' / 'train' / '000005.png')
    safe = ('type=SafeCocoDataset', 'pipeline.0.type=SafeLoadImageFromFile')
    options = [f'{loader}_dataloader.dataset.{opt}' for loader in ('train', 'val', 'test')
               for opt in (*safe, f'data_root={root}/')]
    options += [f'{loader}_dataloader.{key}' for loader in ('train', 'val', 'test')
                for key in ('batch_size=2', 'num_workers=0', 'persistent_workers=False')]
    options += [f'val_evaluator.ann_file={root}/annotations/val.json',
                'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'custom_hooks=[]',
                'default_hooks.checkpoint.interval=1']
    # custom_imports are imported when the config file is read, before --cfg-options
    # apply, so the modules (until mmdcn_plugin imports them) come in by a child config.
    config = tmp_path / 'safe.py'
    config.write_text(f'_base_ = {QUICK!r}\n'
                      "custom_imports = dict(imports=['mmdcn_plugin', "
                      "'mmdcn_plugin.datasets.safe_coco', 'mmdcn_plugin.datasets.transforms'], "
                      'allow_failed_imports=False)\n')
    work_dir = tmp_path / 'work'
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'train.py'), str(config), '--work-dir',
         str(work_dir), '--cfg-options', *options],
        cwd=tmp_path, capture_output=True,
        text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert (work_dir / 'epoch_1.pth').is_file()
    for expected in ('images missing on disk, skipped: ', '000005.png (image id 6)',
                     'category id not in "categories", skipped: annotation id 1',
                     'zero-size box (w or h < 1 px), skipped: annotation id 2',
                     'partly outside the image, clipped: annotation id 3'):
        assert log.count(expected) == 1, expected
    assert 'coco/bbox_mAP' in log


LAZY_CHECK = '''
import sys
import mmdcn_plugin
from mmdet.registry import DATASETS, METRICS
print('light', 'mmdet.datasets' not in sys.modules)
dataset, metric = DATASETS.get('SafeCocoDataset'), METRICS.get('SafeCocoMetric')
from mmdet.datasets import CocoDataset
from mmdet.evaluation import CocoMetric
print('classes', isinstance(dataset, type) and issubclass(dataset, CocoDataset),
      isinstance(metric, type) and issubclass(metric, CocoMetric))
print('registered', DATASETS.module_dict['SafeCocoDataset'] is dataset,
      METRICS.module_dict['SafeCocoMetric'] is metric)
'''


def test_registry_holds_the_classes_imported_on_first_lookup():
    """``import mmdcn_plugin`` stays light; the first lookup gives the class itself."""
    out = subprocess.run([sys.executable, '-c', LAZY_CHECK], capture_output=True,
                         text=True, check=True).stdout
    assert 'light True' in out and 'classes True True' in out, out
    assert 'registered True True' in out, out


def test_registry_holds_the_class_once_mmdet_datasets_is_loaded():
    from mmdet.registry import DATASETS, METRICS
    from mmdcn_plugin.evaluation.coco_metric import SafeCocoMetric
    assert DATASETS.get('SafeCocoDataset') is SafeCocoDataset
    assert METRICS.get('SafeCocoMetric') is SafeCocoMetric


def test_lazy_registration_uses_mmengine_internals():
    """mmdcn_plugin/lazy_registry.py reads Registry._locations and _imported (mmengine
    0.10.7); this fails loudly if a new mmengine renames them."""
    from mmengine.registry import Registry
    from mmdet.registry import DATASETS, METRICS
    fresh = Registry('probe', locations=['json'])
    assert fresh._locations == ['json'] and fresh._imported is False
    assert 'mmdcn_plugin.datasets.safe_coco' in DATASETS._locations \
        or 'mmdcn_plugin.datasets.safe_coco' in sys.modules
    assert METRICS._imported or 'mmdcn_plugin.evaluation.coco_metric' in METRICS._locations
