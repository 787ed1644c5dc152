"""The one-word swap over every mmdet 3.3.0 config whose backbone sets ``dcn=``.

``dcn=dict(type='DCN', ...)`` becomes ``dict(type='DeformableConv2d', modulated=False,
...)`` and ``type='DCNv2'`` becomes ``type='DeformableConv2d'``; every other key stays
(``deform_groups`` or its old spelling ``deformable_groups``, ``fallback_on_stride``).
For each config the backbone is built both ways; the mmcv-typed state dict loads
strictly into ours, the outputs agree with mmcv's on a small image, and a backward
pass reaches our offset heads.  Backbones only (the heads do not change), at full
width on a 96x96 image (mmcv refuses a feature map smaller than the kernel).  A few run in the default suite; all of them with --runslow.
"""
import copy
import glob
import os.path as osp
import re
import warnings

import pytest
import torch

from helpers import one_thread  # noqa: F401  (autouse fixture)
from mmdcn_plugin import DeformableConv2d
from mmdcn_plugin.ops.backends import mmcv_impl


def mmdet_configs_dir():
    import mmdet
    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')


def dcn_configs():
    """mmdet's configs that set ``dcn=dict(type='DCN'|'DCNv2', ...)`` themselves."""
    found = []
    for path in sorted(glob.glob(osp.join(mmdet_configs_dir(), '**', '*.py'),
                                 recursive=True)):
        with open(path, encoding='utf-8') as f:
            if re.search(r"dcn=dict\(\s*type='DCN(v2)?'", f.read()):
                found.append(osp.relpath(path, mmdet_configs_dir()))
    return found


DCN_CONFIGS = dcn_configs()
# One of each kind in the default suite: DCN in ResNet-50, DCNv2 with 4 offset groups,
# DCNv2 under its old spelling deformable_groups (the ones that failed before).
DEFAULT_SUITE = {'dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py',
                 'dcnv2/faster-rcnn_r50-mdconv-group4-c3-c5_fpn_1x_coco.py',
                 'solov2/solov2-light_r50-dcn_fpn_ms-3x_coco.py'}
needs_mmcv = pytest.mark.skipif(not mmcv_impl.mmcv_ops_available(),
                                reason="mmcv's compiled ops are not built")


def test_mmdet_ships_34_dcn_configs():
    assert len(DCN_CONFIGS) == 34, DCN_CONFIGS
    assert DEFAULT_SUITE <= set(DCN_CONFIGS)


def swap(dcn: dict) -> dict:
    """The README's one-word swap."""
    ours = dict(dcn, type='DeformableConv2d')
    if dcn['type'] == 'DCN':
        ours['modulated'] = False
    return ours


def backbone_cfg(path):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(mmdet_configs_dir(), path)).model.backbone
    cfg = copy.deepcopy(cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg))
    cfg['init_cfg'] = None  # no ImageNet download
    cfg.pop('pretrained', None)
    return cfg


@needs_mmcv
@pytest.mark.parametrize('path', [
    pytest.param(p, marks=() if p in DEFAULT_SUITE else pytest.mark.slow)
    for p in DCN_CONFIGS])
def test_swap_builds_loads_matches_and_trains(path):
    from mmcv.ops import DeformConv2dPack, ModulatedDeformConv2dPack
    from mmdet.registry import MODELS
    from mmengine.model import revert_sync_batchnorm

    theirs_cfg = backbone_cfg(path)
    assert theirs_cfg['dcn']['type'] in ('DCN', 'DCNv2')
    ours_cfg = dict(theirs_cfg, dcn=swap(theirs_cfg['dcn']))
    torch.manual_seed(0)
    theirs = revert_sync_batchnorm(MODELS.build(theirs_cfg))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)  # deformable_groups
        ours = revert_sync_batchnorm(MODELS.build(ours_cfg))
    theirs.eval()  # (mmdet's ResNet.train returns None, so no chaining)
    ours.eval()

    kind = ModulatedDeformConv2dPack if theirs_cfg['dcn']['type'] == 'DCNv2' \
        else DeformConv2dPack
    mmcv_layers = [m for m in theirs.modules() if isinstance(m, kind)]
    our_layers = [m for m in ours.modules() if isinstance(m, DeformableConv2d)]
    assert mmcv_layers and len(mmcv_layers) == len(our_layers)
    assert all(m.modulated == (kind is ModulatedDeformConv2dPack) for m in our_layers)
    with torch.no_grad():  # trained-looking offsets (and masks) instead of the zero init
        for layer in mmcv_layers:
            layer.conv_offset.weight.normal_(std=0.01)
            layer.conv_offset.bias.normal_(std=0.5)
    ours.load_state_dict(theirs.state_dict(), strict=True)

    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs(x)
    got = ours(x)
    assert len(got) == len(expected)
    for a, b in zip(expected, got):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * a.abs().max().item()), \
            (a - b).abs().max()

    sum(out.sum() for out in got).backward()
    grads = [layer.offset_head.last_layer().weight.grad for layer in our_layers]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_deformable_groups_is_the_old_spelling():
    with pytest.warns(DeprecationWarning, match='deformable_groups is deprecated'):
        layer = DeformableConv2d(8, 8, 3, padding=1, deformable_groups=2)
    assert layer.deform_groups == 2
    with pytest.warns(DeprecationWarning):
        same = DeformableConv2d(8, 8, 3, padding=1, deform_groups=2, deformable_groups=2)
    assert same.deform_groups == 2
    with pytest.raises(ValueError, match=r'deform_groups=1 and its deprecated spelling '
                                         r'deformable_groups=2 disagree'):
        DeformableConv2d(8, 8, 3, padding=1, deform_groups=1, deformable_groups=2)
    with pytest.raises(ValueError, match='deformable_groups must be a positive int, got 0'):
        DeformableConv2d(8, 8, 3, padding=1, deformable_groups=0)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert DeformableConv2d(8, 8, 3).deform_groups == 1
