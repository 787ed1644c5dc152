"""The transformed splits and the mAP sweep (``robustness/split.py``, ``evaluate.py``),
and ``tools/robustness.py`` end to end."""
import copy
import csv
import json
import os.path as osp

import numpy as np
import pytest
import torch

from helpers import QUICK_DCNV2, load_tool, one_thread  # noqa: F401  (one_thread: fixture)
from robustness_helpers import data, load, read  # noqa: F401  (data: fixture)
from mmdcn_plugin.robustness import (evaluate_on_splits, load_config, source_split,
                                     write_transformed_split)
from mmdcn_plugin.robustness.evaluate import write_csv


def test_identity_split_is_the_original(data, tmp_path):
    split = write_transformed_split(data['ann_file'], data['img_dir'], 'rotate', 0,
                                    str(tmp_path / 'rotate_0'), progress=False)
    coco, _ = load(data['ann_file'])
    new, _ = load(split['ann_file'])
    assert (split['n_instances'], split['n_ignored']) == (len(coco['annotations']), 0)
    keys = ('id', 'image_id', 'category_id', 'segmentation', 'bbox', 'area', 'iscrowd')
    assert ([{k: a[k] for k in keys} for a in new['annotations']]
            == [{k: a[k] for k in keys} for a in coco['annotations']])
    for old, img in zip(coco['images'], new['images']):
        assert np.array_equal(read(osp.join(data['img_dir'], old['file_name'])),
                              read(osp.join(split['img_dir'], img['file_name'])))
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
    # The config's own split, through a Runner of its own.
    ann_file, img_dir = source_split(cfg)
    own = dict(data_root=osp.dirname(osp.normpath(img_dir)), ann_file=ann_file, img_dir=img_dir)
    metrics = next(evaluate_on_splits(cfg, checkpoints[0], [own], str(work),
                                      'robustness_test_plain'))
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
    n = len(load(data['ann_file'])[0]['annotations'])
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
