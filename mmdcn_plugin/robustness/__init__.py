"""Geometric robustness: transformed test splits, the mAP sweep, where the offsets go.

Not imported by ``import mmdcn_plugin`` (it needs pycocotools, and matplotlib for the
plot); import it as ``mmdcn_plugin.robustness``.  The command line is
``tools/robustness.py``; the rules are in ``docs/robustness.md`` and in
:mod:`.transforms`.
"""
from .evaluate import (CSV_COLUMNS, checkpoint_labels, evaluate_checkpoint,
                       evaluate_on_splits, load_config, metrics_row, point_at_split,
                       robustness_sweep, source_split)
from .on_object import (OnObjectCount, by_stage, coco_samples, count_on_object,
                        interior_point, on_mask, on_object_by_value, on_object_fractions,
                        stage_of)
from .split import split_name, write_transformed_split
from .transforms import (FILL, IDENTITY, MIN_VISIBLE, TRANSFORMS, check_fill, check_transform,
                         check_value, parse_values, rasterize, tight_box, transform_annotations,
                         transform_matrix, warp_image)

__all__ = ['CSV_COLUMNS', 'checkpoint_labels', 'evaluate_checkpoint', 'evaluate_on_splits',
           'load_config', 'metrics_row', 'point_at_split', 'robustness_sweep', 'source_split',
           'OnObjectCount', 'by_stage', 'coco_samples', 'count_on_object', 'interior_point',
           'on_mask', 'on_object_by_value', 'on_object_fractions', 'stage_of', 'split_name',
           'write_transformed_split', 'FILL', 'IDENTITY', 'MIN_VISIBLE', 'TRANSFORMS',
           'check_fill', 'check_transform', 'check_value', 'parse_values', 'rasterize',
           'tight_box', 'transform_annotations', 'transform_matrix', 'warp_image']
