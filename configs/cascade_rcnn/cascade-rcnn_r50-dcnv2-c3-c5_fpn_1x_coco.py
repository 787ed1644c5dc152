# mmdet's Cascade R-CNN R50-FPN 1x with DCNv2 (ConvOffsetHead) in c3-c5.
# (mmdet ships the DCNv1 version, dcn/cascade-rcnn_r50-dconv-c3-c5; there is no mdconv one.)
_base_ = 'mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdcn_plugin'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        dcn=dict(type='DeformableConv2d', modulated=True, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True)))
# Bad or incomplete annotations: one warning per kind, or an error naming file, image and
# annotation; the metric scores by the same rules (docs/reliability.md, "Bad and
# incomplete annotations").
train_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
val_dataloader = test_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
val_evaluator = test_evaluator = dict(type='SafeCocoMetric')
