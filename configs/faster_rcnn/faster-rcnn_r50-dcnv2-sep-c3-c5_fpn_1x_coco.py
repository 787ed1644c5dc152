# As faster-rcnn_r50-dcnv2-c3-c5, with the SeparableOffsetHead (depthwise 3x3 -> GN ->
# ReLU -> 1x1) predicting offsets and masks: about 6x fewer offset parameters.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdcn_plugin'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        dcn=dict(type='DeformableConv2d', modulated=True, fallback_on_stride=False,
                 offset_head=dict(type='SeparableOffsetHead')),
        stage_with_dcn=(False, True, True, True)))
# Bad or incomplete annotations: one warning per kind, or an error naming file, image and
# annotation; the metric scores by the same rules (docs/reliability.md, "Bad and
# incomplete annotations").
train_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
val_dataloader = test_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
val_evaluator = test_evaluator = dict(type='SafeCocoMetric')
