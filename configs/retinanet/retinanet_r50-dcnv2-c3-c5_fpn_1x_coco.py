# mmdet's RetinaNet R50-FPN 1x with DCNv2 (ConvOffsetHead) in c3-c5.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdcn_plugin'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        dcn=dict(type='DeformableConv2d', modulated=True, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True)))
