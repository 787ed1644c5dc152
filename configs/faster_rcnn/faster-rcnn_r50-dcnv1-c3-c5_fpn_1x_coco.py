# mmdet's Faster R-CNN R50-FPN 1x with DCNv1 (no modulation) in the 3x3 conv of every
# bottleneck of c3-c5: mmdet's dcn/faster-rcnn_r50-dconv-c3-c5 with our layer.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
# Registers DeformableConv2d before the model is built (also under mmdet's tools/train.py).
custom_imports = dict(imports=['mmdcn_plugin'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        # fallback_on_stride=False: the strided first block of each stage is deformable too.
        dcn=dict(type='DeformableConv2d', modulated=False, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True)))
# Bad or incomplete annotations: one warning per kind, or an error naming file, image and
# annotation; the metric scores by the same rules (docs/reliability.md, "Bad and
# incomplete annotations").
train_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
val_dataloader = test_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
val_evaluator = test_evaluator = dict(type='SafeCocoMetric')
