"""DeformableConv2d and the offset heads.

The forward checks run on the ``device`` fixture (``--device cuda`` on a GPU).
"""
import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer
from mmdet.registry import MODELS

from helpers import backends_on, skip_unless_runs_on
from mmdcn_plugin import ConvOffsetHead, DeformableConv2d, SeparableOffsetHead
from mmdcn_plugin.ops.backends import mmcv_impl

needs_mmcv = pytest.mark.skipif(not mmcv_impl.mmcv_ops_available(),
                                reason="mmcv's compiled ops are not built")
HEADS = [dict(type='ConvOffsetHead'), dict(type='SeparableOffsetHead'),
         dict(type='SeparableOffsetHead', context_dilation=3, max_offset=4.0)]


@pytest.mark.parametrize('head', HEADS, ids=lambda h: str(sorted(h.items())))
@pytest.mark.parametrize('modulated', [False, True])
def test_fresh_layer_is_the_plain_conv(head, modulated, device):
    torch.manual_seed(0)
    layer = DeformableConv2d(8, 6, 3, stride=2, padding=2, dilation=2, groups=2,
                             deform_groups=2, bias=True, modulated=modulated,
                             offset_head=head).to(device)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 8, 11, 9).to(device)
    conv = F.conv2d(x, layer.weight, None, 2, 2, 2, 2)
    # DCNv2 starts with every mask at sigmoid(0) = 0.5, as mmcv's DCNv2 does.
    expected = (0.5 * conv if modulated else conv) + layer.bias.view(1, -1, 1, 1)
    assert torch.allclose(layer(x), expected, atol=1e-5)


@pytest.mark.parametrize('head', HEADS, ids=lambda h: str(sorted(h.items())))
def test_mask_scale_2_starts_dcnv2_as_the_plain_conv(head, device):
    torch.manual_seed(0)
    layer = DeformableConv2d(8, 6, 3, padding=1, bias=True, offset_head=head,
                             mask_scale=2.0).to(device)
    x = torch.randn(2, 8, 9, 7).to(device)
    with torch.no_grad():
        layer.bias.normal_()
    assert torch.allclose(layer(x), F.conv2d(x, layer.weight, layer.bias, 1, 1), atol=1e-5)
    # The scale applies to whatever mask the head learns: (0, 1) becomes (0, 2).
    with torch.no_grad():
        layer.offset_head.last_layer().bias.fill_(-2.0)
    offset, mask = layer.offset_and_mask(x)
    assert torch.allclose(mask.cpu(), 2 * torch.sigmoid(torch.tensor(-2.0)).expand(mask.shape))
    assert 'mask_scale=2.0' in repr(layer)


@pytest.mark.parametrize('head', HEADS[:2], ids=['conv', 'separable'])
@pytest.mark.parametrize('geometry', [
    dict(kernel_size=3, stride=1, padding=1, dilation=1),
    dict(kernel_size=3, stride=2, padding=1, dilation=1),
    dict(kernel_size=(3, 1), stride=(2, 1), padding=(2, 0), dilation=(2, 1)),
    dict(kernel_size=5, stride=3, padding=0, dilation=1),
    dict(kernel_size=2, stride=1, padding=0, dilation=3),
])
def test_head_output_grid_matches_main_conv(head, geometry, device):
    layer = DeformableConv2d(4, 4, deform_groups=2, offset_head=head, **geometry).to(device)
    x = torch.randn(1, 4, 13, 10).to(device)
    offset, mask = layer.offset_head(x)
    ref = F.conv2d(x, layer.weight, None, layer.stride, layer.padding, layer.dilation)
    k = layer.kernel_size[0] * layer.kernel_size[1]
    assert offset.shape == (1, 2 * 2 * k, *ref.shape[2:])
    assert mask.shape == (1, 2 * k, *ref.shape[2:])
    assert layer(x).shape == ref.shape


def test_separable_head_is_at_least_5x_smaller():
    def params(m):
        return sum(p.numel() for p in m.parameters())

    for modulated in (True, False):
        conv = ConvOffsetHead(256, 3, padding=1, modulated=modulated)
        sep = SeparableOffsetHead(256, 3, padding=1, modulated=modulated)
        assert params(conv) >= 5 * params(sep), (params(conv), params(sep))


def test_max_offset_bounds_offsets_smoothly():
    head = SeparableOffsetHead(4, 3, padding=1, max_offset=2.0)
    with torch.no_grad():
        head.project.weight.normal_(std=50.0)
    offset, mask = head(torch.randn(2, 4, 6, 6))
    assert offset.abs().max() <= 2.0 and offset.abs().max() > 1.5
    assert ((mask >= 0) & (mask <= 1)).all()
    # Identity near zero: with small raw offsets the bounded head equals the unbounded one.
    free = SeparableOffsetHead(4, 3, padding=1)
    with torch.no_grad():
        head.project.weight.normal_(std=1e-3)
    free.load_state_dict(head.state_dict())
    x = torch.randn(2, 4, 6, 6)
    bounded, raw = head(x)[0], free(x)[0]
    assert raw.abs().max() > 0 and torch.allclose(bounded, raw, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize('modulated', [True, False], ids=['dcnv2', 'dcnv1'])
def test_conv_offset_head_max_offset_bounds_only_the_offsets(modulated):
    # The classic head has the same bound (the study's `ramp-max1` offset recipe uses it);
    # the mask logits are left alone.
    head = ConvOffsetHead(4, 3, padding=1, modulated=modulated, max_offset=1.0)
    free = ConvOffsetHead(4, 3, padding=1, modulated=modulated)
    with torch.no_grad():
        head.conv.weight.normal_(std=20.0)
    free.load_state_dict(head.state_dict())
    x = torch.randn(2, 4, 5, 5)
    (offset, mask), (raw, raw_mask) = head(x), free(x)
    assert raw.abs().max() > 3.0 and offset.abs().max() <= 1.0
    assert torch.allclose(offset, torch.tanh(raw), atol=1e-6)
    if modulated:
        assert torch.equal(mask, raw_mask)
    else:
        assert mask is None and raw_mask is None
    with pytest.raises(ValueError, match=r'max_offset must be a positive finite number or None, '
                                         r'got True'):
        ConvOffsetHead(4, 3, max_offset=True)


@pytest.mark.parametrize('head', HEADS[:2], ids=['conv', 'separable'])
def test_initialisers_leave_the_offset_head_at_zero(head):
    """mmdet's heads run Normal(layer='Conv2d') and ResNet Kaiming(layer='Conv2d') over
    every conv they own, the offset head's included; inside mmcv's ConvModule nobody
    calls the layer's init_weights afterwards."""
    from mmengine.model import initialize
    layer = DeformableConv2d(4, 4, 3, padding=1, offset_head=head)
    initialize(layer, [dict(type='Normal', layer='Conv2d', std=0.5, bias=0.3),
                       dict(type='Kaiming', layer='Conv2d')])
    offset, mask = layer.offset_head(torch.randn(1, 4, 5, 5))
    assert offset.abs().sum() == 0 and torch.all(mask == 0.5)
    # And init_weights restores zeros after anything else touched the last layer.
    with torch.no_grad():
        layer.offset_head.last_layer().weight.normal_()
    assert layer.offset_head(torch.randn(1, 4, 5, 5))[0].abs().sum() > 0
    layer.init_weights()
    assert layer.offset_head(torch.randn(1, 4, 5, 5))[0].abs().sum() == 0


def test_layer_works_inside_conv_module_with_head_init(device):
    from mmcv.cnn import ConvModule
    from mmengine.model import initialize
    module = ConvModule(4, 8, 3, padding=1, conv_cfg=dict(type='DeformableConv2d'),
                        norm_cfg=dict(type='GN', num_groups=4))
    initialize(module, dict(type='Normal', layer='Conv2d', std=0.01))
    assert isinstance(module.conv, DeformableConv2d)
    module.to(device)
    x = torch.randn(2, 4, 6, 6).to(device)
    # Offsets still zero: the DCNv2 conv equals 0.5 * the plain conv before the norm.
    expected = 0.5 * F.conv2d(x, module.conv.weight, None, 1, 1)
    assert torch.allclose(module.conv(x), expected, atol=1e-5)
    assert module(x).shape == (2, 8, 6, 6)


def test_resnet_init_keeps_offsets_zero():
    from mmdet.models.backbones import ResNet
    net = ResNet(depth=50, base_channels=16, num_stages=4, out_indices=(3,),
                 dcn=dict(type='DeformableConv2d', deform_groups=1),
                 stage_with_dcn=(False, True, True, True))
    net.init_weights()
    layers = [m for m in net.modules() if isinstance(m, DeformableConv2d)]
    assert len(layers) == 4 + 6 + 3
    for layer in layers:
        assert layer.offset_head.conv.weight.abs().sum() == 0


@pytest.mark.parametrize('dcn', [
    dict(type='DeformableConv2d', modulated=False),
    dict(type='DeformableConv2d', modulated=True),
    dict(type='DeformableConv2d', modulated=False, offset_head=dict(type='SeparableOffsetHead')),
    dict(type='DeformableConv2d', modulated=True,
         offset_head=dict(type='SeparableOffsetHead', max_offset=8.0)),
], ids=['v1-conv', 'v2-conv', 'v1-separable', 'v2-separable'])
def test_resnet50_c3_c5_trains_a_step(dcn, device):
    from mmdet.models.backbones import ResNet
    torch.manual_seed(0)
    # zero_init_residual=False: mmdet's default zeroes each block's last norm, which
    # cuts every gradient into conv2 at initialisation.
    net = ResNet(depth=50, num_stages=4, out_indices=(1, 2, 3), zero_init_residual=False,
                 dcn=dict(dcn, deform_groups=1, fallback_on_stride=False),
                 stage_with_dcn=(False, True, True, True))
    net.init_weights()
    net.to(device).train()
    # 32x32 makes c5 a 1x1 map: the padded 3x3 kernel is larger than its input.
    outs = net(torch.randn(2, 3, 32, 32).to(device))
    assert [o.shape[1] for o in outs] == [512, 1024, 2048]
    assert outs[-1].shape[-2:] == (1, 1)
    sum(o.mean() for o in outs).backward()
    layer = next(m for m in net.modules() if isinstance(m, DeformableConv2d))
    head_grad = layer.offset_head.last_layer().weight.grad
    assert head_grad is not None and torch.isfinite(head_grad).all()
    assert torch.isfinite(layer.weight.grad).all() and layer.weight.grad.abs().sum() > 0


def test_build_conv_layer_under_mmdet_scope_and_without_scope():
    layer = build_conv_layer(dict(type='DeformableConv2d', deform_groups=2), 4, 8,
                             kernel_size=3, padding=1)
    assert isinstance(layer, DeformableConv2d) and layer.deform_groups == 2
    from mmengine.registry import DefaultScope
    # No default scope at all: the scoped name still resolves.
    saved = DefaultScope._instance_dict.copy()
    DefaultScope._instance_dict.clear()
    try:
        assert DefaultScope.get_current_instance() is None
        layer = build_conv_layer(dict(type='mmdet.DeformableConv2d'), 4, 8, kernel_size=3)
        assert isinstance(layer, DeformableConv2d)
    finally:
        DefaultScope._instance_dict.update(saved)
    assert MODELS.get('SeparableOffsetHead') is SeparableOffsetHead


@needs_mmcv
@pytest.mark.parametrize('mmcv_type,modulated,bias', [('DCN', False, False),
                                                      ('DCNv2', True, False),
                                                      ('DCNv2', True, True)])
def test_mmcv_state_dict_loads_strictly_and_agrees(mmcv_type, modulated, bias, device):
    from mmcv.ops import DeformConv2dPack, ModulatedDeformConv2dPack
    skip_unless_runs_on('mmcv', device)  # mmcv's own layer runs mmcv's kernels
    cls = {'DCN': DeformConv2dPack, 'DCNv2': ModulatedDeformConv2dPack}[mmcv_type]
    torch.manual_seed(0)
    kwargs = dict(stride=2, padding=1, dilation=1, groups=2, deform_groups=2)
    theirs = cls(8, 6, 3, bias=bias, **kwargs) if mmcv_type == 'DCNv2' else cls(8, 6, 3, **kwargs)
    with torch.no_grad():  # a trained-looking offset conv, not the zero init
        theirs.conv_offset.weight.normal_(std=0.3)
        theirs.conv_offset.bias.normal_(std=0.3)
    ours = DeformableConv2d(8, 6, 3, bias=bias, modulated=modulated, **kwargs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.to(device), theirs.to(device)
    x = torch.randn(2, 8, 9, 10).to(device)
    assert torch.allclose(ours(x), theirs(x), atol=1e-4)


def test_separable_head_refuses_mmcv_keys_strictly():
    ours = DeformableConv2d(4, 4, 3, padding=1, offset_head=dict(type='SeparableOffsetHead'))
    state = {'weight': torch.zeros(4, 4, 3, 3), 'conv_offset.weight': torch.zeros(27, 4, 3, 3),
             'conv_offset.bias': torch.zeros(27)}
    with pytest.raises(RuntimeError, match='conv_offset.weight'):
        ours.load_state_dict(state, strict=True)


@pytest.mark.parametrize('kwargs,exc,match', [
    (dict(in_channels=4, out_channels=6, kernel_size=3, groups=4), ValueError,
     r'groups=4 must divide in_channels \(4\) and out_channels \(6\)'),
    (dict(in_channels=4, out_channels=4, kernel_size=0), ValueError,
     r'kernel_size must be >= 1 in both dimensions, got \(0, 0\)'),
    (dict(in_channels=4, out_channels=4, kernel_size=3, deform_groups=3), ValueError,
     r'deform_groups=3 must divide in_channels \(4\)'),
    (dict(in_channels=0, out_channels=4, kernel_size=3), ValueError,
     r'in_channels must be a positive int, got 0'),
    (dict(in_channels=4, out_channels=4, kernel_size=3, backend='cuda'), ValueError,
     r"unknown backend 'cuda'"),
    (dict(in_channels=4, out_channels=4, kernel_size=3, offset_head=dict(type='Nope')),
     ValueError, r"offset_head type 'Nope' is not registered"),
    (dict(in_channels=4, out_channels=4, kernel_size=3,
          offset_head=dict(type='ConvOffsetHead', stride=2)), ValueError,
     r"offset_head must not set \['stride'\]"),
    (dict(in_channels=4, out_channels=4, kernel_size=3,
          offset_head=dict(type='SeparableOffsetHead', max_offset=-1)), ValueError,
     r'max_offset must be a positive finite number or None, got -1'),
    (dict(in_channels=4, out_channels=4, kernel_size=2,
          offset_head=dict(type='SeparableOffsetHead', context_dilation=2)), ValueError,
     r'context_dilation=2 with kernel size 2'),
    (dict(in_channels=4, out_channels=4, kernel_size=3,
          offset_head=dict(type='ConvOffsetHead', bogus=1)), TypeError, r'bogus'),
    (dict(in_channels=4, out_channels=4, kernel_size=3, mask_scale=0), ValueError,
     r'mask_scale: expected a positive finite number, got 0'),
    (dict(in_channels=4, out_channels=4, kernel_size=3, mask_scale=float('nan')),
     ValueError, r'mask_scale: expected a positive finite number, got nan'),
    (dict(in_channels=4, out_channels=4, kernel_size=3, modulated=False, mask_scale=2),
     ValueError, r'mask_scale=2 needs modulated=True'),
])
def test_constructor_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        DeformableConv2d(**kwargs)


def test_extra_repr_names_the_geometry():
    layer = DeformableConv2d(4, 8, 3, stride=2, padding=1, deform_groups=2,
                             offset_head=dict(type='SeparableOffsetHead', max_offset=5))
    assert layer.extra_repr().startswith('4, 8, kernel_size=(3, 3), stride=(2, 2)')
    text = repr(layer)
    assert 'deform_groups=2' in text and 'modulated=True' in text
    assert 'SeparableOffsetHead(' in text and 'max_offset=5.0' in text


def test_layer_backends_agree(device):
    torch.manual_seed(0)
    layer = DeformableConv2d(4, 4, 3, padding=1, deform_groups=2)
    with torch.no_grad():
        layer.offset_head.conv.weight.normal_(std=0.5)
    layer.to(device)
    x = torch.randn(2, 4, 7, 7).to(device)
    outs = {}
    for b in ['auto'] + backends_on(device):
        layer.backend = b
        outs[b] = layer(x)
    for b, out in outs.items():
        assert torch.allclose(out, outs['torch'], atol=1e-4), b
