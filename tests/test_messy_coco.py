"""A user's messy COCO file (tests/messy_coco.py holds every case) through the dataset,
the metric, and one training iteration of the Mask R-CNN DCN config.

Each case is checked against what this package promises (docs/reliability.md, "Bad and
incomplete annotations"); where stock mmdet fails on the same file, a test says how.
"""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

import messy_coco as mc
from helpers import ROOT, one_thread  # noqa: F401  (autouse fixture)
from mmdcn_plugin.datasets import BadDataWarning
from mmdcn_plugin.datasets.bad_data import mask_problem, rle_string_counts

MASK_RCNN = osp.join(ROOT, 'configs', 'mask_rcnn', 'mask-rcnn_r50-dcnv2-c3-c5_fpn_1x_coco.py')
MASK_PIPELINE = [dict(type='LoadImageFromFile'),
                 dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                 dict(type='PackDetInputs')]
BOX_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
                dict(type='PackDetInputs')]
# pycocotools' mask.decode trips a numpy 2 deprecation inside pycocotools itself.
pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')


@pytest.fixture(scope='module')
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp('messy')
    mc.make_messy_coco(root)
    return root


def dataset(root, dataset_type='SafeCocoDataset', pipeline=MASK_PIPELINE, test_mode=False,
            split='train'):
    from mmdet.registry import DATASETS
    return DATASETS.build(dict(
        type=dataset_type, data_root=f'{root}/', ann_file=f'annotations/{split}.json',
        data_prefix=dict(img=f'images/{split}/'), metainfo=dict(classes=mc.CLASSES),
        filter_cfg=None if test_mode else dict(filter_empty_gt=True), test_mode=test_mode,
        pipeline=pipeline))


def info_of(ds, img_id=1):
    """The data info of one image (its instances in the file's order)."""
    info = next(ds.get_data_info(i) for i in range(len(ds))
                if ds.get_data_info(i)['img_id'] == img_id)
    return info


def bad_data_messages(record):
    return [str(w.message) for w in record if w.category is BadDataWarning]


def test_mask_dataset_applies_one_rule_per_case(messy):
    with pytest.warns(BadDataWarning) as record:
        ds = dataset(messy)
    messages = bad_data_messages(record)
    # One warning per kind, with the count and examples naming file, image and annotation.
    maskless = [m for m in messages if 'without a usable mask' in m]
    assert len(maskless) == 1, messages
    assert 'train.json: 5 instances without a usable mask, ignored' in maskless[0]
    assert 'annotation id 1001 (image id 1, 000000.png) has no "segmentation"' in maskless[0]
    assert 'annotation id 1002 (image id 1, 000000.png) has an empty "segmentation" list' \
        in maskless[0]
    assert 'annotation id 1003 (image id 1, 000000.png) has no polygon of at least 3 points' \
        in maskless[0]
    assert 'and 2 more' in maskless[0]
    assert any('1 annotations with polygon parts of fewer than 3 points, parts dropped: '
               'annotation id 1010' in m for m in messages), messages
    assert any('zero-size box' in m and 'annotation id 1008' in m for m in messages)
    assert any('category id not in "categories", skipped: annotation id 1009' in m
               for m in messages)
    assert not any('1006' in m or '1007' in m for m in messages)  # crowd, ignore: valid COCO

    info = info_of(ds)
    flags = [inst['ignore_flag'] for inst in info['instances']]
    n_clean = len(flags) - 7   # 5 mask-less + crowd (ignored) + the short-part one (kept)
    # file order: the clean ones, 1001-1005 (ignored), 1006 crowd (ignored), 1010 (kept);
    # 1007 (ignore=1), 1008 and 1009 (skipped) are not instances at all.
    assert flags == [0] * n_clean + [1] * 5 + [1] + [0]
    assert len(info['instances'][-1]['mask']) == len(info['instances'][0]['mask'])
    # The image without annotations is filtered for training, as in mmdet.
    assert mc.EMPTY_IMAGE_ID not in [ds.get_data_info(i)['img_id'] for i in range(len(ds))]

    sample = ds[next(i for i in range(len(ds)) if ds.get_data_info(i)['img_id'] == 1)]
    packed = sample['data_samples']
    assert len(packed.ignored_instances) == 6 and len(packed.gt_instances) == n_clean + 1
    assert packed.gt_instances.masks.masks.shape[1:] == (128, 128)


def test_box_dataset_keeps_instances_without_masks(messy):
    """The mask rule applies only when masks are loaded: a box detector trains on them."""
    with pytest.warns(BadDataWarning) as record:
        ds = dataset(messy, pipeline=BOX_PIPELINE)
    assert not any('mask' in m for m in bad_data_messages(record))
    flags = [inst['ignore_flag'] for inst in info_of(ds)['instances']]
    assert flags[-7:] == [0] * 5 + [1] + [0]  # only the crowd one is ignored


def test_test_mode_keeps_the_empty_image(messy):
    with pytest.warns(BadDataWarning):
        ds = dataset(messy, test_mode=True, split='val')
    assert mc.EMPTY_IMAGE_ID in [ds.get_data_info(i)['img_id'] for i in range(len(ds))]


def test_stock_mmdet_stops_with_a_bare_key_error(messy):
    ds = dataset(messy, dataset_type='CocoDataset')
    index = next(i for i in range(len(ds)) if ds.get_data_info(i)['img_id'] == 1)
    with pytest.raises(KeyError, match="'mask'"):
        ds[index]


def test_dataset_reads_images_through_the_safe_loader(messy):
    from mmdcn_plugin.datasets import SafeLoadImageFromFile
    with pytest.warns(BadDataWarning):
        ds = dataset(messy)
    assert type(ds.pipeline.transforms[0]) is SafeLoadImageFromFile


@pytest.mark.parametrize('segm, problem', [
    (None, 'no "segmentation"'),
    ([], 'an empty "segmentation" list'),
    ([[1, 2, 3, 4]], 'no polygon of at least 3 points'),
    ([[1, 2, 3, 4, 5]], 'no polygon of at least 3 points'),
    ([[1, 2, 3, 4, float('nan'), 6]], 'no polygon of at least 3 points'),
    ('abc', 'neither polygons nor RLE'),
    (dict(size=[5, 4], counts=[20]), 'RLE size [5, 4], image is [4, 5]'),
    (dict(size=[4, 5], counts=[3, 4]), 'RLE counts add up to 7, not 4*5'),
    (dict(size=[4, 5], counts=[25, -5]), 'malformed RLE counts'),
    (dict(size=[4, 5], counts='~'), 'malformed RLE counts'),
])
def test_unusable_masks(segm, problem):
    used, found = mask_problem(segm, 4, 5)
    assert used is None and problem in found


def test_usable_masks_pass_unchanged():
    from pycocotools import mask as mask_utils
    mask = np.zeros((4, 5), dtype=np.uint8)
    mask[1:3, 2:4] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    assert rle_string_counts(rle['counts']) == mc.uncompressed_rle(mask)['counts']
    for segm in (rle, mc.uncompressed_rle(mask), [[0, 0, 4, 0, 4, 3]]):
        assert mask_problem(segm, 4, 5) == (segm, None)
    kept, problem = mask_problem([[0, 0, 4, 0, 4, 3], [1, 1]], 4, 5)
    assert kept == [[0, 0, 4, 0, 4, 3]] and '1 of 2 polygon part(s)' in problem


@pytest.mark.parametrize('edit, match', [
    (lambda d: d['annotations'][0].pop('bbox'),
     r"train\.json: annotations\[0\] \(id 1, image id 1\) lacks \['bbox'\]"),
    (lambda d: d['annotations'][1].update(id=1),
     r"train\.json: annotations\[1\] \(id 1, image id 2\) repeats the id of annotations\[0\]"),
    (lambda d: d['annotations'][0].update(category_id=[1]),
     r"annotations\[0\] \(id 1, image id 1\) has \['category_id'\] of types \['list'\]"),
    (lambda d: d['images'][0].update(height=0),
     r"images\[0\] \(id 1\) has height, width \(0, 128\); expected positive ints"),
])
def test_errors_name_file_image_and_annotation(messy, tmp_path, edit, match):
    data = json.loads((messy / 'annotations' / 'train.json').read_text())
    edit(data)
    (tmp_path / 'annotations').mkdir()
    (tmp_path / 'annotations' / 'train.json').write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match):
        dataset(tmp_path)


def perfect_predictions(ds, metric):
    """Feed ``metric`` the dataset's own (not ignored) ground truth as predictions."""
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        gt = sample.gt_instances
        pred = dict(bboxes=gt.bboxes.tensor, labels=gt.labels,
                    scores=torch.ones(len(gt.labels)),
                    masks=torch.from_numpy(gt.masks.masks.astype(bool)))
        metric.process({}, [dict(img_id=sample.img_id, ori_shape=sample.ori_shape,
                                 pred_instances=pred, gt_instances=gt.to_dict())])
    return metric.evaluate(len(ds))


def test_metric_scores_the_messy_file_by_the_same_rules(messy):
    from mmdet.registry import METRICS
    with pytest.warns(BadDataWarning):
        ds = dataset(messy, test_mode=True, split='val')
    ann_file = str(messy / 'annotations' / 'val.json')
    with pytest.warns(BadDataWarning, match='5 instances without a usable mask'):
        metric = METRICS.build(dict(type='SafeCocoMetric', ann_file=ann_file,
                                    metric=['bbox', 'segm']))
    metric.dataset_meta = ds.metainfo
    results = perfect_predictions(ds, metric)
    # Ignored instances (crowd, ignore=1, no usable mask) are crowd regions: not needed.
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['coco/segm_mAP'] == pytest.approx(1.0)


def test_stock_metric_fails_on_the_messy_file(messy):
    from mmdet.evaluation import CocoMetric
    with pytest.warns(BadDataWarning):
        ds = dataset(messy, test_mode=True, split='val', pipeline=MASK_PIPELINE)
    metric = CocoMetric(ann_file=str(messy / 'annotations' / 'val.json'),
                        metric=['bbox', 'segm'])
    metric.dataset_meta = ds.metainfo
    with pytest.raises(Exception) as err:
        perfect_predictions(ds, metric)
    # Nothing in the error says which file, image or annotation.
    assert 'val.json' not in str(err.value) and '1001' not in str(err.value)


def test_metric_scores_ignore_as_a_crowd_region(tmp_path):
    """An ``ignore: 1`` object that nobody detects costs nothing (stock: a miss)."""
    from mmdet.evaluation import CocoMetric
    from mmdet.registry import METRICS
    data = dict(images=[dict(id=1, file_name='a.png', width=64, height=64)],
                categories=[dict(id=1, name='a')],
                annotations=[dict(id=1, image_id=1, category_id=1, bbox=[4, 4, 20, 20],
                                  area=400, iscrowd=0),
                             dict(id=2, image_id=1, category_id=1, bbox=[30, 30, 20, 20],
                                  area=400, iscrowd=0, ignore=1)])
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(data))
    pred = dict(bboxes=torch.tensor([[4., 4., 24., 24.]]), labels=torch.tensor([0]),
                scores=torch.tensor([1.0]))
    safe = METRICS.build(dict(type='SafeCocoMetric', ann_file=str(path)))
    stock = CocoMetric(ann_file=str(path))
    scores = {}
    for name, metric in (('safe', safe), ('stock', stock)):
        metric.dataset_meta = dict(classes=('a',))
        metric.process({}, [dict(img_id=1, ori_shape=(64, 64), pred_instances=pred)])
        scores[name] = metric.evaluate(1)['coco/bbox_mAP']
    # pycocotools overwrites `ignore` with `iscrowd`: stock scores a miss.
    assert scores['safe'] == pytest.approx(1.0) and scores['stock'] < 0.6, scores


def narrow_mask_rcnn(root, work_dir):
    """The Mask R-CNN DCNv2 config on the messy set: narrow, small images, one iteration."""
    cfg = Config.fromfile(MASK_RCNN)
    classes = mc.CLASSES
    cfg.model.backbone.update(base_channels=16, init_cfg=None)
    cfg.model.neck.update(in_channels=[64, 128, 256, 512], out_channels=32)
    cfg.model.rpn_head.update(in_channels=32, feat_channels=32)
    roi = cfg.model.roi_head
    roi.bbox_roi_extractor.out_channels = 32
    roi.bbox_head.update(in_channels=32, fc_out_channels=64, num_classes=len(classes))
    roi.mask_roi_extractor.out_channels = 32
    roi.mask_head.update(in_channels=32, conv_out_channels=32, num_classes=len(classes))
    loader = cfg.train_dataloader
    # Not shuffled: the first batch holds image id 1, where every bad case is.
    loader.update(batch_size=2, num_workers=0, persistent_workers=False,
                  sampler=dict(type='DefaultSampler', shuffle=False))
    loader.dataset.update(data_root=f'{root}/', ann_file='annotations/train.json',
                          data_prefix=dict(img='images/train/'),
                          metainfo=dict(classes=classes))
    for step in loader.dataset.pipeline:
        if step.type == 'Resize':
            step.scale = (128, 128)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=100)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg[key] = None
    test = cfg.test_dataloader
    test.update(batch_size=2, num_workers=0, persistent_workers=False)
    test.dataset.update(data_root=f'{root}/', ann_file='annotations/val.json',
                        data_prefix=dict(img='images/val/'), metainfo=dict(classes=classes))
    for step in test.dataset.pipeline:
        if step.type == 'Resize':
            step.scale = (128, 128)
    cfg.test_evaluator.ann_file = f'{root}/annotations/val.json'
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = None
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = osp.basename(str(work_dir))
    cfg.visualizer.name = osp.basename(str(work_dir))
    cfg.randomness = dict(seed=0)
    return cfg


def test_mask_rcnn_dcn_trains_an_iteration_on_the_messy_file(messy, tmp_path):
    from mmengine.runner import Runner
    cfg = narrow_mask_rcnn(messy, tmp_path / 'work')
    assert cfg.train_dataloader.dataset.type == 'SafeCocoDataset'
    runner = Runner.from_cfg(cfg)
    with pytest.warns(BadDataWarning, match='5 instances without a usable mask'):
        runner.train()
    assert runner.iter == 1
    losses = {k: v.current() for k, v in runner.message_hub.log_scalars.items()
              if k.startswith('train/loss')}
    assert 'train/loss_mask' in losses and all(np.isfinite(v) for v in losses.values()), losses
    # The config's own test loop and SafeCocoMetric score the same messy file.
    assert cfg.test_evaluator.type == 'SafeCocoMetric'
    with pytest.warns(BadDataWarning, match='SafeCocoMetric: .*val.json: 5 instances without'):
        metrics = runner.test()
    assert {'coco/bbox_mAP', 'coco/segm_mAP'} <= set(metrics), metrics
