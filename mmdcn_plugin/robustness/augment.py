"""``RandomRotateScaleShear``: the robustness sweep's geometry as a training augmentation.

The study's arm (b) trains with the transforms it later tests, so the augmentation
must be the evaluation's geometry, not mmdet's ``RandomAffine`` (which moves the old
box corners and keeps a box whenever any of it is left).  For each image it draws a
rotation, a scale and a shear, composes the three matrices of
:func:`~mmdcn_plugin.robustness.transforms.transform_matrix` (all about the image
centre, so their product is too), warps the image with
:func:`~mmdcn_plugin.robustness.transforms.warp_image` and the instances with
:func:`~mmdcn_plugin.robustness.transforms.transform_annotations`: boxes are the tight
boxes of the transformed polygon masks, and an instance that leaves the image follows
the sweep's rule (removed with no mask pixel left; an ignore region when less than
``min_visible`` of it is inside).

It needs polygon masks: put ``LoadAnnotations(with_bbox=True, with_mask=True,
poly2mask=False)`` before it.  ``keep_masks=False`` drops them afterwards, for
detectors that do not train on masks (Faster R-CNN).
"""
import math
from typing import Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform

from mmdet.registry import TRANSFORMS

from ..lazy_registry import register_class
from .transforms import (FILL, MIN_VISIBLE, check_fill, is_identity, transform_annotations,
                         transform_matrix, warp_image)

#: The default ranges: any rotation, zooms from half to double size, shears up to 30 degrees.
ROTATE_RANGE = (-180.0, 180.0)
SCALE_RANGE = (0.5, 2.0)
SHEAR_RANGE = (-30.0, 30.0)
#: What a range may span: a full turn either way; a zoom above 0 (a floor, so its log is
#: finite); a shear inside (-90, 90) degrees, where its tangent is finite.
MAX_ROTATE = 360.0
MIN_SCALE = 1e-9
MAX_SHEAR = 89.999


def _check_range(name: str, value, low: float, high: float, rule: str) -> Tuple[float, float]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       and math.isfinite(v) for v in value)):
        raise ValueError(f'{name} must be a (min, max) pair of finite numbers, got {value!r}')
    lo, hi = float(value[0]), float(value[1])
    if not (low <= lo <= hi <= high):
        raise ValueError(f'{name} must satisfy {rule} and min <= max, got ({lo:g}, {hi:g})')
    return lo, hi


def compose(*matrices: np.ndarray) -> np.ndarray:
    """ndarray[2, 3] of the affine maps applied right to left (the last one first)."""
    out = np.eye(3)
    for m in matrices:
        out = out @ np.vstack([m, [0.0, 0.0, 1.0]])
    return out[:2]


@register_class(TRANSFORMS)
class RandomRotateScaleShear(BaseTransform):
    """Random rotation, scale and shear about the image centre, with mask-tight boxes.

    Per image: ``rotate ~ U(rotate)`` degrees (counter-clockwise on screen),
    ``log(scale) ~ U(log(scale))`` (log-uniform: zooming in by 2 as likely as out by
    2), ``shear ~ U(shear)`` degrees (``x' = x + tan(shear) * (y - cy)``); the image
    is warped by rotate @ scale @ shear.  Units and rules are those of
    :mod:`mmdcn_plugin.robustness.transforms`.  When the drawn map is the identity
    (all three ranges degenerate at 0, 1, 0) the results are returned unchanged.

    Required keys: ``img``, ``gt_bboxes``, ``gt_bboxes_labels``, ``gt_ignore_flags``,
    ``gt_masks`` (``PolygonMasks``).  Modified keys: the same, and ``img_shape``
    stays.  Added key: ``rotate_scale_shear`` (the drawn ``(rotate, scale, shear)``).

    Args:
        rotate ((float, float)): degrees, ``-360 <= min <= max <= 360``.
        scale ((float, float)): zoom factors, ``0 < min <= max``.
        shear ((float, float)): degrees, ``-90 < min <= max < 90``.
        min_visible (float): in [0, 1]; the instance rule's threshold.
        fill (int or (int, int, int)): the uncovered pixels' value.
        keep_masks (bool): keep ``gt_masks`` (the transformed polygons); False drops them.
    """

    def __init__(self, rotate: Sequence[float] = ROTATE_RANGE,
                 scale: Sequence[float] = SCALE_RANGE, shear: Sequence[float] = SHEAR_RANGE,
                 min_visible: float = MIN_VISIBLE, fill=FILL, keep_masks: bool = True):
        self.rotate = _check_range('rotate', rotate, -MAX_ROTATE, MAX_ROTATE,
                                   f'{-MAX_ROTATE:g} <= min <= max <= {MAX_ROTATE:g}')
        self.scale = _check_range('scale', scale, MIN_SCALE, math.inf, '0 < min')
        self.shear = _check_range('shear', shear, -MAX_SHEAR, MAX_SHEAR,
                                  '-90 < min <= max < 90')
        if (isinstance(min_visible, bool) or not isinstance(min_visible, (int, float))
                or not 0 <= min_visible <= 1):
            raise ValueError(f'min_visible must be a number in [0, 1], got {min_visible!r}')
        self.min_visible = float(min_visible)
        self.fill = check_fill(fill)
        if not isinstance(keep_masks, bool):
            raise ValueError(f'keep_masks must be a bool, got {keep_masks!r}')
        self.keep_masks = keep_masks

    def draw(self) -> Tuple[float, float, float]:
        """One ``(rotate, scale, shear)`` from the ranges (numpy's global generator, which
        MMEngine seeds per worker from ``randomness.seed``)."""
        rotate = float(np.random.uniform(*self.rotate))
        scale = float(math.exp(np.random.uniform(math.log(self.scale[0]),
                                                 math.log(self.scale[1]))))
        shear = float(np.random.uniform(*self.shear))
        return rotate, scale, shear

    def transform(self, results: dict) -> dict:
        from mmdet.structures.mask import PolygonMasks
        for key in ('img', 'gt_bboxes', 'gt_bboxes_labels', 'gt_masks'):
            if key not in results:
                raise KeyError(f'RandomRotateScaleShear: results need {key!r} (found '
                               f'{sorted(results)}); put LoadAnnotations(with_bbox=True, '
                               'with_mask=True, poly2mask=False) before it')
        masks = results['gt_masks']
        if not isinstance(masks, PolygonMasks):
            raise TypeError('RandomRotateScaleShear: gt_masks must be PolygonMasks '
                            f'(LoadAnnotations(..., poly2mask=False)), got '
                            f'{type(masks).__name__}')
        rotate, scale, shear = self.draw()
        results['rotate_scale_shear'] = (rotate, scale, shear)
        img = results['img']
        h, w = img.shape[:2]
        matrix = compose(transform_matrix('rotate', rotate, w, h),
                         transform_matrix('scale', scale, w, h),
                         transform_matrix('shear', shear, w, h))
        if not is_identity(matrix):
            results['img'] = warp_image(img, matrix, self.fill)
            self._transform_instances(results, matrix, w, h)
        if not self.keep_masks:
            del results['gt_masks']
        return results

    def _transform_instances(self, results: dict, matrix: np.ndarray, w: int, h: int) -> None:
        from mmdet.structures.mask import PolygonMasks
        ignore = results.get('gt_ignore_flags')
        if ignore is None:
            ignore = np.zeros(len(results['gt_bboxes_labels']), bool)
        # One COCO annotation per instance, so the evaluation's rule applies unchanged.
        anns = [dict(id=i, segmentation=[np.asarray(p, np.float64).tolist() for p in polys],
                     iscrowd=int(bool(ignore[i])))
                for i, polys in enumerate(results['gt_masks'].masks)]
        out = transform_annotations(anns, matrix, w, h, self.min_visible,
                                    where='RandomRotateScaleShear')
        keep = np.array([a['id'] for a in out], dtype=np.int64)
        boxes = np.array([[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
                           a['bbox'][1] + a['bbox'][3]] for a in out],
                         dtype=np.float32).reshape(-1, 4)
        gt_bboxes = results['gt_bboxes']
        results['gt_bboxes'] = type(gt_bboxes)(boxes) if not isinstance(gt_bboxes, np.ndarray) \
            else boxes
        results['gt_bboxes_labels'] = results['gt_bboxes_labels'][keep]
        results['gt_ignore_flags'] = np.array([bool(a['iscrowd']) for a in out], bool)
        results['gt_masks'] = PolygonMasks(
            [[np.asarray(p, np.float64) for p in a['segmentation']] for a in out], h, w)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(rotate={self.rotate}, scale={self.scale}, '
                f'shear={self.shear}, min_visible={self.min_visible}, fill={self.fill!r}, '
                f'keep_masks={self.keep_masks})')
