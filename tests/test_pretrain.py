"""The backbone's shape-classification pretraining: crops, reproducibility, loading."""
import json
import os.path as osp

import numpy as np
import pytest
import torch

from mmdcn_plugin.pretrain import object_crops, pretrain_backbone, sha256_of
from mmdcn_plugin.synthetic import generate_synthetic_coco

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICK = osp.join(ROOT, 'configs', 'quickstart')
BASE = osp.join(QUICK, 'faster-rcnn_r50-narrow_fpn_synthetic.py')
DCN = osp.join(QUICK, 'faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('pretrain') / 'data'
    generate_synthetic_coco(str(root), num_train=6, num_val=2, seed=5, progress=False)
    return root


def test_crops_are_centred_on_each_instance(data):
    ann = data / 'annotations' / 'train.json'
    crops, labels = object_crops(str(ann), str(data / 'images' / 'train'), 64)
    coco = json.loads(ann.read_text())
    assert crops.shape == (len(coco['annotations']), 64, 64, 3)
    assert crops.dtype == np.uint8
    assert labels.tolist() == [a['category_id'] - 1 for a in
                               sorted(coco['annotations'], key=lambda a: a['image_id'])]
    # The crop's centre pixel is the image pixel at the box centre.
    import cv2
    first = min(coco['annotations'], key=lambda a: (a['image_id'], a['id']))
    image = next(im for im in coco['images'] if im['id'] == first['image_id'])
    img = cv2.imread(str(data / 'images' / 'train' / image['file_name']))
    x, y, w, h = first['bbox']
    cx, cy = int(round(x + w / 2)), int(round(y + h / 2))
    assert (crops[0][32, 32] == img[cy, cx]).all()


def test_crop_window_is_checked(data):
    with pytest.raises(ValueError, match='window: expected an int >= 8, got 4'):
        object_crops(str(data / 'annotations' / 'train.json'), str(data), 4)


def test_pretraining_is_bitwise_reproducible_and_loads_into_both_backbones(data, tmp_path):
    settings = dict(num_train=6, num_val=2, data_seed=5, epochs=2, batch_size=4)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)    # not the pretraining's 1: it must be given back
    try:
        rng = torch.get_rng_state()
        a = pretrain_backbone(BASE, str(tmp_path / 'a.pth'), str(data), log=lambda m: None,
                              **settings)
        assert torch.get_num_threads() == 2
        assert torch.equal(torch.get_rng_state(), rng)   # the caller's generator untouched
    finally:
        torch.set_num_threads(threads)
    b = pretrain_backbone(BASE, str(tmp_path / 'b.pth'), str(data), log=lambda m: None,
                          **settings)
    assert a['sha256'] == sha256_of(str(tmp_path / 'a.pth'))
    sa = torch.load(tmp_path / 'a.pth', weights_only=True)['state_dict']
    sb = torch.load(tmp_path / 'b.pth', weights_only=True)['state_dict']
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # Training changed the weights (a different seed gives different ones).
    c = pretrain_backbone(BASE, str(tmp_path / 'c.pth'), str(data), log=lambda m: None,
                          **dict(settings, seed=1))
    assert c['sha256'] != a['sha256']
    # The weights load into the plain and the DCN backbone through init_cfg; the DCN one
    # misses only its offset heads.
    from mmdcn_plugin.apis import build_model_from_config
    for config in (BASE, DCN):
        model = build_model_from_config(
            config, cfg_options={'model.backbone.init_cfg.checkpoint': str(tmp_path / 'a.pth')},
            init_weights=True)
        own = model.backbone.state_dict()
        for key, value in sa.items():
            assert torch.equal(own[key], value), key
        extra = [k for k in own if k not in sa]
        assert all('offset_head' in k or 'conv_offset' in k for k in extra), extra
        assert (config == DCN) == bool(extra)


def test_a_set_of_other_counts_is_refused_not_reused(data, tmp_path):
    with pytest.raises(ValueError, match=r"holds a pretraining set of \{'train': 6, 'val': 2\} "
                       r"images; the settings ask for \{'train': 7, 'val': 2\}"):
        pretrain_backbone(BASE, str(tmp_path / 'x.pth'), str(data), num_train=7, num_val=2)


def test_unknown_setting_is_named(data, tmp_path):
    with pytest.raises(TypeError, match=r"unknown setting\(s\) \['epoch'\]"):
        pretrain_backbone(BASE, str(tmp_path / 'x.pth'), str(data), epoch=3)


def test_committed_weights_match_their_record():
    path = osp.join(ROOT, 'weights', 'resnet50-narrow_shapes.pth')
    with open(osp.splitext(path)[0] + '.json') as f:
        record = json.load(f)
    assert sha256_of(path) == record['sha256']
    assert osp.getsize(path) <= 10 * 2**20
    # `tools/pretrain_backbone.py CONFIG --out ...` with no other option made them.
    from mmdcn_plugin.pretrain import PRETRAIN_DEFAULTS
    assert record['settings'] == PRETRAIN_DEFAULTS
