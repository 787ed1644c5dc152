# A user's own project config, kept outside this repository's configs/: RetinaNet R50-FPN
# 1x from mmdet with deformable convolutions in two places, each with its own offset head.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

# The one line that makes the plugin's layers known; works with mmdet's own tools/train.py.
custom_imports = dict(imports=['mmdcn_plugin'], allow_failed_imports=False)

model = dict(
    # 1. Backbone: DCNv2 in c3-c5 with the cheap SeparableOffsetHead. context_dilation=2
    #    lets the offsets see a 5x5 neighbourhood; max_offset bounds them smoothly (in
    #    feature-map pixels) against runaway offsets early in training.
    backbone=dict(
        dcn=dict(type='DeformableConv2d', modulated=True, fallback_on_stride=False,
                 offset_head=dict(type='SeparableOffsetHead', context_dilation=2,
                                  max_offset=8.0)),
        stage_with_dcn=(False, True, True, True)),
    # 2. Head: RetinaHead builds its 4+4 tower convs with ConvModule(conv_cfg=...), so
    #    conv_cfg turns all of them into DCNv2 with the classic ConvOffsetHead.
    bbox_head=dict(
        conv_cfg=dict(type='DeformableConv2d', modulated=True,
                      offset_head=dict(type='ConvOffsetHead'))))

# Your own COCO-format data: the Safe* dataset and metric skip, clip or ignore bad
# annotations with one warning per kind (or stop naming the file, image and annotation).
# Add num_classes to bbox_head above, and data_root, ann_file, metainfo=dict(classes=...)
# to each dataset below, as in any mmdet config.
train_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
val_dataloader = test_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
val_evaluator = test_evaluator = dict(type='SafeCocoMetric')
