# The quick-start DCN detector: the baseline with DCNv2 (ConvOffsetHead) in c3-c5.
# mask_scale=2: the mask is 2 * sigmoid, so a fresh layer is exactly the pretrained plain
# conv it replaces (mmcv's DCNv2 starts at half of it; docs/recipe/ measures both).
_base_ = './faster-rcnn_r50-narrow_fpn_synthetic.py'
model = dict(
    backbone=dict(
        dcn=dict(type='DeformableConv2d', deform_groups=1, fallback_on_stride=False,
                 mask_scale=2.0),
        stage_with_dcn=(False, True, True, True)))
