# As fcos_r50-caffe-dcnv2-c3-c5_fpn_gn-head_1x_coco, and the head's conv towers are
# DeformableConv2d too.
#
# Why conv_cfg and not dcn_on_last_conv=True: mmdet's AnchorFreeHead hard-codes
# `conv_cfg = dict(type='DCNv2')` (mmcv's layer) for the last tower conv when
# dcn_on_last_conv is set, ignoring conv_cfg there. conv_cfg is honoured for every
# *other* tower conv, and for all of them when dcn_on_last_conv=False (the default), so
# the cleanest config-only way is: all 4 convs of both towers (cls and reg) deformable.
# See README.md in this folder.
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'
custom_imports = dict(imports=['mmdcn_plugin'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        dcn=dict(type='DeformableConv2d', modulated=True, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True)),
    bbox_head=dict(
        # ConvModule builds each tower conv from this; GN follows, so no conv bias.
        conv_cfg=dict(type='DeformableConv2d', modulated=True),
        dcn_on_last_conv=False))
# Bad or incomplete annotations: one warning per kind, or an error naming file, image and
# annotation; the metric scores by the same rules (docs/reliability.md, "Bad and
# incomplete annotations").
train_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
val_dataloader = test_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
val_evaluator = test_evaluator = dict(type='SafeCocoMetric')
