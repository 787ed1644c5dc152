"""Geometric robustness: transformed test splits, the mAP sweep, where the offsets go.

``import mmdcn_plugin`` imports this package only for the lazy registration below;
the sweep's heavy parts (pycocotools, and matplotlib for the plot) load on first use.
The command line is ``tools/robustness.py``; the rules are in ``docs/robustness.md``
and in :mod:`.transforms`.

The training augmentation ``RandomRotateScaleShear`` (:mod:`.augment`, the sweep's
geometry) is registered in mmdet's ``TRANSFORMS`` here without being imported: the
first lookup of the registry imports it (see ``lazy_registry.py``).
"""
from mmdet.registry import TRANSFORMS as _TRANSFORM_REGISTRY

from ..apis import load_config  # re-exported: the package's one config loader
from ..lazy_registry import register_lazily
from ..utils.deprecation import deprecated_aliases
from .evaluate import (CSV_COLUMNS, checkpoint_labels, evaluate_on_splits, metrics_row,
                       point_at_split, robustness_sweep, source_split)
from .on_object import (OnObjectCount, by_stage, coco_samples, count_on_object,
                        interior_point, on_mask, on_object_by_value, on_object_fractions,
                        stage_of)
from .split import split_name, write_transformed_split
from .transforms import (FILL, IDENTITY, MIN_VISIBLE, TRANSFORM_NAMES, check_fill,
                         check_transform, check_value, parse_values, rasterize, tight_box,
                         transform_annotations, transform_matrix, warp_image)

register_lazily(_TRANSFORM_REGISTRY, 'RandomRotateScaleShear', 'mmdcn_plugin.robustness.augment')

__all__ = ['CSV_COLUMNS', 'checkpoint_labels', 'evaluate_on_splits',
           'load_config', 'metrics_row', 'point_at_split', 'robustness_sweep', 'source_split',
           'OnObjectCount', 'by_stage', 'coco_samples', 'count_on_object', 'interior_point',
           'on_mask', 'on_object_by_value', 'on_object_fractions', 'stage_of', 'split_name',
           'write_transformed_split', 'FILL', 'IDENTITY', 'MIN_VISIBLE', 'TRANSFORM_NAMES',
           'check_fill', 'check_transform', 'check_value', 'parse_values', 'rasterize',
           'tight_box', 'transform_annotations', 'transform_matrix', 'warp_image']

# The tuple of transform names was exported as TRANSFORMS, the name of mmdet's
# transform registry.
__getattr__ = deprecated_aliases(__name__, {'TRANSFORMS': (
    TRANSFORM_NAMES,
    "mmdcn_plugin.robustness.TRANSFORMS is deprecated: it is the tuple of transform names "
    "('rotate', 'scale', 'shear'), now TRANSFORM_NAMES; mmdet's registry of that name is "
    'mmdet.registry.TRANSFORMS')})
