"""``SafeCocoMetric``: mmdet's ``CocoMetric`` reading a messy annotation file by the
rules ``SafeCocoDataset`` trains by.

mmdet's ``CocoMetric`` hands the raw file to pycocotools, which fails deep inside
(``KeyError: 'segmentation'`` or ``'area'``, ``IndexError`` on an empty polygon
list, ``Exception: input type is not supported`` on a one-point polygon), reads a
two-point polygon as a box, decodes RLE of the wrong size into garbage or past its
buffer, counts zero-size boxes as objects no detector can find, and scores every
image in the file, also those the dataset skipped because they are missing on disk.

This subclass takes exactly ``CocoMetric``'s arguments and scores against the ground
truth the dataset trains on (the rules are in ``mmdcn_plugin/datasets/bad_data.py``):

* a file that is not COCO (see ``read_coco_json``): ``ValueError`` naming the file,
  the annotation id and image id, and what is wrong;
* annotations the dataset skips (unknown category, box not 4 numbers, zero-size or
  outside box, area <= 0 or missing, image id not in ``images``): left out, one
  ``BadDataWarning`` per kind; boxes partly outside are clipped;
* ``iscrowd: 1``: a crowd region, as in COCO (detections on it are neither true nor
  false positives); ``ignore: 1``, which mmdet leaves out of training: a crowd region
  too (pycocotools' ``COCOeval`` overwrites ``ignore`` with ``iscrowd``, so stock
  evaluation counts such an object as one to find);
* with ``segm`` among the metrics, an instance without a usable mask: a crowd region
  with its box as the region, as the dataset ignores it in training (one warning);
* only images that have predictions are scored (the dataset's images), so an image
  skipped for missing on disk is left out, not counted as all-missed.
"""
from typing import Dict, Optional

from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from mmdet.evaluation import CocoMetric
from mmdet.registry import METRICS

from ..datasets.bad_data import (ProblemLog, box_region, check_box, check_mask,
                                 mask_problem, read_coco_json)
from ..datasets.safe_coco import CheckedCOCO
from ..lazy_registry import register_class
from .private_api import ground_truth, set_ground_truth


def clean_ground_truth(data: dict, with_masks: bool, problems: ProblemLog) -> dict:
    """A copy of the checked COCO dict ``data`` holding the ground truth to score."""
    images = {img['id']: img for img in data['images']}
    cats = {cat['id'] for cat in data['categories']}
    kept = []
    for ann in data.get('annotations', []):
        img = images.get(ann['image_id'])
        if img is None:
            problems.add('annotations for an image id not in "images", skipped',
                         f'annotation id {ann["id"]} (image id {ann["image_id"]})')
            continue
        ann = check_box(ann, img, cats, problems)
        if ann is None:
            continue
        if ann.get('ignore', False):
            ann = dict(ann, iscrowd=1)
            if with_masks and mask_problem(ann.get('segmentation'), img['height'],
                                           img['width'])[0] is None:
                ann['segmentation'] = box_region(ann['bbox'])
        elif with_masks:
            ann = check_mask(ann, img, problems)
        kept.append(ann)
    return dict(data, annotations=kept)


@register_class(METRICS)
class SafeCocoMetric(CocoMetric):
    """``CocoMetric`` that scores a messy annotation file by the dataset's rules.

    Takes exactly ``CocoMetric``'s arguments; see the module docstring.
    """

    def __init__(self, ann_file: Optional[str] = None, *args, **kwargs):
        super().__init__(None, *args, **kwargs)
        self.ann_file = ann_file
        if ann_file is None:
            return
        if kwargs.get('sort_categories'):
            raise ValueError('SafeCocoMetric: sort_categories=True is not supported '
                             f'(got it with ann_file={ann_file!r}); use mmdet\'s CocoMetric')
        problems = ProblemLog()
        with get_local_path(ann_file, backend_args=self.backend_args) as local_path:
            data = read_coco_json(local_path)
        with_masks = 'segm' in self.metrics
        coco = CheckedCOCO()
        coco.set_dataset(clean_ground_truth(data, with_masks, problems))
        set_ground_truth(self, coco)
        problems.emit(f'{type(self).__name__}: {ann_file}')

    def compute_metrics(self, results: list) -> Dict[str, float]:
        if self.ann_file is not None and results:
            predicted = {pred['img_id'] for _, pred in results}
            listed = ground_truth(self).get_img_ids()
            self.img_ids = [i for i in listed if i in predicted]
            if len(self.img_ids) < len(listed):
                print_log(f'{type(self).__name__}: scoring the {len(self.img_ids)} images '
                          f'with predictions of the {len(listed)} in {self.ann_file}',
                          logger='current')
        return super().compute_metrics(results)
