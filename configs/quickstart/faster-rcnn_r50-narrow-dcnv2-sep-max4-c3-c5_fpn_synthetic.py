# DCNv2 with the SeparableOffsetHead whose offsets are bounded smoothly by
# 4 * tanh(o / 4): at most 4 feature-map pixels (32-128 input pixels in c3-c5).
_base_ = './faster-rcnn_r50-narrow-dcnv2-sep-c3-c5_fpn_synthetic.py'
model = dict(backbone=dict(dcn=dict(offset_head=dict(max_offset=4.0))))
