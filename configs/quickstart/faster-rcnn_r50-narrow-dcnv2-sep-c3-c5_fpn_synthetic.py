# The baseline with DCNv2 and the SeparableOffsetHead in c3-c5 (mask_scale: see the
# ConvOffsetHead variant).
_base_ = './faster-rcnn_r50-narrow_fpn_synthetic.py'
model = dict(
    backbone=dict(
        dcn=dict(type='DeformableConv2d', deform_groups=1, fallback_on_stride=False,
                 mask_scale=2.0,
                 offset_head=dict(type='SeparableOffsetHead')),
        stage_with_dcn=(False, True, True, True)))
