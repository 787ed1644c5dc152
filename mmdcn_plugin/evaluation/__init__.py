"""Evaluation: ``SafeCocoMetric``, mmdet's ``CocoMetric`` reading a messy annotation
file by the rules ``SafeCocoDataset`` trains by.

``coco_metric.py`` imports ``mmdet.evaluation`` (and with it ``mmdet.datasets`` and
mmcv's compiled ops), so it is registered here without being imported: the first
lookup in ``mmdet.registry.METRICS`` imports it (see ``lazy_registry.py``).
"""
from mmdet.registry import METRICS

from ..lazy_registry import register_lazily

register_lazily(METRICS, 'SafeCocoMetric', 'mmdcn_plugin.evaluation.coco_metric')
