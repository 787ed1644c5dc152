"""The shipped configs: every one loads and builds; one per detector family trains a step.

No COCO is needed: models are built from ``cfg.model`` only, and one loss step runs on
two tiny random images with hand-made ground truth.  The backbones are not initialised
from ImageNet (that would need the network); PyTorch's default init is enough to check
that losses are finite and that gradients reach the offset heads.
"""
import glob
import math
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import InstanceData
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks

from mmdcn_plugin import DeformableConv2d
from helpers import one_thread  # noqa: F401  (autouse fixture)
from mmdcn_plugin.ops.backends import mmcv_impl

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(
    osp.relpath(p, ROOT) for p in
    glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    + glob.glob(osp.join(ROOT, 'docs', 'examples', '**', '*.py'), recursive=True))

# One config per detector family (plus each offset-head/version variant once) for the
# training step; every config above is still loaded and built.
TRAIN_STEP_CONFIGS = [
    'configs/faster_rcnn/faster-rcnn_r50-dcnv1-c3-c5_fpn_1x_coco.py',
    'configs/faster_rcnn/faster-rcnn_r50-dcnv2-sep-c3-c5_fpn_1x_coco.py',
    'configs/mask_rcnn/mask-rcnn_r50-dcnv2-c3-c5_fpn_1x_coco.py',
    'configs/cascade_rcnn/cascade-rcnn_r50-dcnv2-c3-c5_fpn_1x_coco.py',
    'configs/retinanet/retinanet_r50-dcnv2-c3-c5_fpn_1x_coco.py',
    'configs/fcos/fcos_r50-caffe-dcnv2-c3-c5_fpn_gn-head_1x_coco.py',
    'configs/fcos/fcos_r50-caffe-dcnv2-c3-c5_fpn_gn-head-dcnv2_1x_coco.py',
    'docs/examples/my_project/retinanet_r50-dcn-backbone-and-head_fpn_1x_coco.py',
]
# The parts of a detector config that may hold the layer (in `dcn` or `conv_cfg`).
PARTS = ('backbone', 'neck', 'rpn_head', 'bbox_head', 'roi_head')

needs_mmcv = pytest.mark.skipif(not mmcv_impl.mmcv_ops_available(),
                                reason="mmcv's compiled ops are not built")



def mentions_layer(cfg) -> bool:
    """Whether a (nested) config asks for DeformableConv2d anywhere."""
    if isinstance(cfg, dict):
        return cfg.get('type') == 'DeformableConv2d' or any(
            mentions_layer(v) for v in cfg.values())
    if isinstance(cfg, (list, tuple)):
        return any(mentions_layer(v) for v in cfg)
    return False


def layers_in(module):
    return [m for m in module.modules() if isinstance(m, DeformableConv2d)]


def build(path):
    """Load a config and build its model; ``(cfg, model)``."""
    cfg = Config.fromfile(osp.join(ROOT, path))
    model = MODELS.build(cfg.model)
    return cfg, model


@pytest.mark.parametrize('path', CONFIGS)
def test_config_loads_and_builds(path):
    cfg, model = build(path)
    assert 'mmdcn_plugin' in cfg.custom_imports['imports']
    # A config that asks for the layer gets it, in every part of the detector that asks
    # (the backbone for `dcn`, a head or neck for `conv_cfg`) and in no other part.  A
    # plain baseline (configs/quickstart has one) asks for none and gets none; the COCO
    # configs are held to asking by test_coco_configs_keep_mmdet_layout.
    assert bool(layers_in(model)) == mentions_layer(cfg.model), path
    asked = [p for p in PARTS if mentions_layer(cfg.model.get(p))]
    for part in asked:
        assert layers_in(getattr(model, part)), f'{path}: no DeformableConv2d in {part}'
    for part in set(PARTS) - set(asked):
        if hasattr(model, part):
            assert not layers_in(getattr(model, part)), f'{path}: unexpected layer in {part}'


def test_coco_configs_keep_mmdet_layout():
    """Each COCO config inherits mmdet's own config and, like mmdet's dcn/dcnv2 ones,
    makes the 3x3 conv of every c3-c5 bottleneck deformable, strided ones included."""
    coco = [p for p in CONFIGS if p.startswith('configs/') and p.endswith('_coco.py')]
    assert len(coco) >= 9
    for path in coco:
        with open(osp.join(ROOT, path)) as f:
            assert "_base_ = 'mmdet::" in f.read(), path
        backbone = Config.fromfile(osp.join(ROOT, path)).model.backbone
        assert backbone.type == 'ResNet' and backbone.depth == 50, path
        assert tuple(backbone.stage_with_dcn) == (False, True, True, True), path
        assert backbone.dcn.type == 'DeformableConv2d', path
        assert backbone.dcn.fallback_on_stride is False, path


@pytest.mark.parametrize('path', CONFIGS)
def test_config_reads_coco_safely_and_suits_det_inferencer(path):
    """Every dataloader reads through SafeCocoDataset; the test pipeline starts with
    mmdet's LoadImageFromFile, the name DetInferencer looks for (the dataset runs it as
    SafeLoadImageFromFile); the COCO configs score with SafeCocoMetric."""
    cfg = Config.fromfile(osp.join(ROOT, path))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.type == 'SafeCocoDataset', (path, loader)
    assert cfg.test_dataloader.dataset.pipeline[0].type == 'LoadImageFromFile', path
    if not path.startswith('configs/quickstart/'):
        assert cfg.val_evaluator.type == cfg.test_evaluator.type == 'SafeCocoMetric', path


def tiny_batch(with_mask: bool):
    """Two random uint8 images of different sizes with two boxes each, as a dataloader
    would hand them to ``model.data_preprocessor``."""
    gen = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[4., 6., 40., 50.], [22., 10., 60., 36.]])
    inputs, samples = [], []
    for i, (h, w) in enumerate([(64, 64), (56, 72)]):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8))
        sample = DetDataSample(metainfo=dict(img_id=i, img_shape=(h, w), ori_shape=(h, w),
                                             scale_factor=(1.0, 1.0)))
        gt = InstanceData(bboxes=boxes.clone(), labels=torch.tensor([0, 1]))
        if with_mask:
            masks = np.zeros((len(boxes), h, w), dtype=np.uint8)
            for j, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
                masks[j, y1:y2, x1:x2] = 1
            gt.masks = BitmapMasks(masks, h, w)
        sample.gt_instances = gt
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('path', TRAIN_STEP_CONFIGS)
def test_one_training_step(path):
    torch.manual_seed(0)
    cfg, model = build(path)
    model.train()
    with_mask = cfg.model.get('roi_head', {}).get('mask_head') is not None
    data = model.data_preprocessor(tiny_batch(with_mask), training=True)
    losses = model.loss(data['inputs'], data['data_samples'])
    loss, log_vars = model.parse_losses(losses)
    assert torch.isfinite(loss), log_vars
    assert all(math.isfinite(float(torch.as_tensor(v).detach())) for v in log_vars.values()), \
        log_vars
    if with_mask:
        assert 'loss_mask' in log_vars
    loss.backward()
    for part in PARTS:
        if not mentions_layer(cfg.model.get(part)):
            continue
        layers = layers_in(getattr(model, part))
        grads = [layer.offset_head.last_layer().weight.grad for layer in layers]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), part
        # Offsets start at zero, so this is the gradient that starts them moving.
        assert sum(g.abs().sum() for g in grads) > 0, f'no offset gradient in {part}'
        assert all(torch.isfinite(layer.weight.grad).all() for layer in layers), part


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@needs_mmcv
def test_mmdet_mdconv_config_takes_the_layer_and_mmcv_weights(tmp_path):
    """mmdet's own DCNv2 config with only the dcn type changed builds, and the state
    dict of the model built from the unchanged (mmcv DCNv2) config loads strictly."""
    from mmcv.ops import ModulatedDeformConv2dPack
    base = "_base_ = 'mmdet::dcnv2/faster-rcnn_r50-mdconv-c3-c5_fpn_1x_coco.py'\n"
    theirs_cfg = Config.fromfile(_write(tmp_path, 'theirs.py', base))
    ours_cfg = Config.fromfile(_write(
        tmp_path, 'ours.py', base
        + "custom_imports = dict(imports=['mmdcn_plugin'], allow_failed_imports=False)\n"
        + "model = dict(backbone=dict(dcn=dict(type='DeformableConv2d')))\n"))
    assert theirs_cfg.model.backbone.dcn.type == 'DCNv2'
    assert ours_cfg.model.backbone.dcn == dict(type='DeformableConv2d', deform_groups=1,
                                               fallback_on_stride=False)

    torch.manual_seed(0)
    theirs = MODELS.build(theirs_cfg.model)
    ours = MODELS.build(ours_cfg.model)
    mmcv_layers = [m for m in theirs.modules() if isinstance(m, ModulatedDeformConv2dPack)]
    assert len(mmcv_layers) == len(layers_in(ours)) == 4 + 6 + 3
    with torch.no_grad():  # trained-looking offsets and masks instead of the zero init
        for layer in mmcv_layers:
            layer.conv_offset.weight.normal_(std=0.01)
            layer.conv_offset.bias.normal_(std=0.5)
    ours.load_state_dict(theirs.state_dict(), strict=True)

    # Same weights, same numbers: the backbone + FPN features agree.
    theirs.eval()
    ours.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(theirs.extract_feat(x), ours.extract_feat(x)):
            assert torch.allclose(a, b, rtol=1e-3, atol=1e-4 * a.abs().max().item())


def test_quickstart_dcnv2_starts_as_its_pretrained_conv_and_offsets_learn_slower():
    """The quick-start recipe (#12): mask_scale=2 makes a fresh DCNv2 layer the plain
    conv it replaces, and the offset heads get a tenth of the learning rate."""
    from mmengine.optim import build_optim_wrapper
    cfg, model = build(
        'configs/quickstart/faster-rcnn_r50-narrow-dcnv2-c3-c5_fpn_synthetic.py')
    layers = layers_in(model)
    assert len(layers) == 13 and all(m.mask_scale == 2.0 for m in layers)
    layer = layers[0]
    x = torch.randn(1, layer.in_channels, 9, 9)
    plain = torch.nn.functional.conv2d(x, layer.weight, layer.bias, layer.stride,
                                       layer.padding, layer.dilation)
    assert torch.allclose(layer(x), plain, atol=1e-5)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    base = cfg.optim_wrapper.optimizer.lr
    names = {id(p): n for n, p in model.named_parameters()}
    lrs = {names[id(p)]: g['lr'] for g in wrapper.optimizer.param_groups for p in g['params']}
    offset = [lr for n, lr in lrs.items() if '.offset_head.' in n]
    assert len(offset) == 13 * 2 and offset == pytest.approx([0.1 * base] * len(offset))
    assert {lr for n, lr in lrs.items() if '.offset_head.' not in n} == {base}
