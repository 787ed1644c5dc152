# The baseline with DCNv1 (no modulation) in c3-c5.
_base_ = './faster-rcnn_r50-narrow_fpn_synthetic.py'
model = dict(
    backbone=dict(
        dcn=dict(type='DeformableConv2d', modulated=False, deform_groups=1,
                 fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True)))
