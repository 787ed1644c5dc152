# mmdet's plain FCOS R50-FPN 1x (caffe-style ResNet-50, GN head: the FCOS paper's
# setting, no center sampling / GIoU / norm-on-bbox tricks) with DCNv2 in c3-c5.
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'
custom_imports = dict(imports=['mmdcn_plugin'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        # Caffe style puts the stride in conv1, so conv2 (the DCN) always has stride 1.
        dcn=dict(type='DeformableConv2d', modulated=True, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True)))
# Bad or incomplete annotations: one warning per kind, or an error naming file, image and
# annotation; the metric scores by the same rules (docs/reliability.md, "Bad and
# incomplete annotations").
train_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
val_dataloader = test_dataloader = dict(dataset=dict(type='SafeCocoDataset'))
val_evaluator = test_evaluator = dict(type='SafeCocoMetric')
