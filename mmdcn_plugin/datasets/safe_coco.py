"""``SafeCocoDataset``: mmdet's ``CocoDataset`` that reports bad annotation data.

mmdet 3.3's ``CocoDataset`` (measured on a 6-image synthetic set) drops bad
annotations without a word, keeps out-of-image boxes unclipped, lets a missing
image surface as a ``FileNotFoundError`` from the middle of an epoch, fails on
a broken annotation file with an error that does not name it (``JSONDecodeError``
without the path; ``ValueError: need at least one array to concatenate`` for a file
without ``'images'``), and stops Mask R-CNN training with a bare ``KeyError: 'mask'``
on an instance without ``segmentation``.  This subclass keeps mmdet's parsing and
decides, per case (the rules themselves are in ``bad_data.py``, shared with
``SafeCocoMetric``):

* annotation file that is not JSON, not a JSON object, or lacks an ``'images'`` or
  ``'categories'`` list, whose items lack the keys COCO needs, have ids that are not
  ints, repeat an id, or whose image has a non-positive size: ``ValueError`` naming
  the file and the item (annotation id and image id).
* image listed but missing on disk: skipped, with a warning naming the file.
* category id not in the file's ``'categories'``: annotation skipped, warning
  naming the annotation id and the category id.  (A category that is listed but not
  among ``metainfo['classes']`` is a deliberate subset and stays silent, as in mmdet.)
* box with w or h below 1 px, or ``area`` <= 0 or missing: skipped with a warning
  (mmdet already ignored them, silently).  A box that is not four finite numbers:
  skipped with a warning (mmdet would fail deep inside).
* box partly outside the image: clipped to the image, with a warning; wholly outside
  (nothing of at least 1 px left): skipped, with a warning.
* ``iscrowd: 1``: kept as an ignored instance (mmdet: ``ignore_flag=1``, moved to
  ``ignored_instances`` by ``PackDetInputs``); ``ignore: 1``: not used at all, as in
  mmdet.  Both silent: they are valid COCO.
* when the pipeline loads masks: an instance without a usable mask (no
  ``segmentation``, an empty list, no polygon of 3 points, RLE of the wrong size) is
  ignored like a crowd region, with one warning; polygon parts of fewer than 3 points
  are dropped from the others, with a warning.  See ``bad_data.py`` for why.
* image without annotations: kept in test mode; in training dropped by
  ``filter_cfg.filter_empty_gt`` as in mmdet, logged at INFO.  Unlike mmdet, an
  image whose annotations were *all* skipped above is dropped too (mmdet kept such an
  image when the skipped boxes were zero-size or outside, training on it as pure
  background).
* nothing left to train or test on: ``ValueError`` naming the file and the counts.

Problems are gathered while the file is parsed and reported as one
:class:`BadDataWarning` per kind of problem, giving the count and the first few
examples, so a file with 1000 bad boxes gives one line, not 1000.  Python
``warnings`` (rather than the MMEngine logger) so that a run can make bad data fatal
with ``warnings.simplefilter('error', BadDataWarning)`` and tests can catch them.

A corrupt image is only found when the pipeline reads it: the dataset runs each
``LoadImageFromFile`` of its pipeline as ``SafeLoadImageFromFile`` (``transforms.py``),
so configs can keep mmdet's name, which ``DetInferencer`` requires.
"""
import logging
import os.path as osp
from typing import List, Optional, Union

from mmcv.transforms import LoadImageFromFile
from mmengine.fileio import exists
from mmengine.logging import print_log

from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.registry import DATASETS

from ..lazy_registry import register_class
from .bad_data import ProblemLog, check_box, check_mask, read_coco_json


class CheckedCOCO(COCO):
    """mmdet's ``COCO`` reading its file through :func:`read_coco_json`."""

    def __init__(self, annotation_file: Optional[str] = None):
        super().__init__(annotation_file=None)
        if annotation_file is not None:
            self.set_dataset(read_coco_json(annotation_file))

    def set_dataset(self, data: dict) -> None:
        """Index ``data`` (a checked COCO dict) as if it had been read from a file."""
        self.dataset = data
        self.createIndex()
        # mmdet's aliases were bound to the empty indexes createIndex replaced.
        self.img_ann_map = self.imgToAnns
        self.cat_img_map = self.catToImgs


def safe_pipeline(pipeline):
    """``pipeline`` with each ``LoadImageFromFile`` replaced by ``SafeLoadImageFromFile``.

    Configs keep mmdet's name, which ``DetInferencer`` looks for (it swaps that step
    for its own loader); datasets built from them read images the safe way.
    """
    names = ('LoadImageFromFile', 'mmcv.LoadImageFromFile', LoadImageFromFile)
    return [dict(step, type='SafeLoadImageFromFile')
            if isinstance(step, dict) and step.get('type') in names else step
            for step in pipeline]


@register_class(DATASETS)
class SafeCocoDataset(CocoDataset):
    """``CocoDataset`` that skips, clips or rejects bad items and says which.

    Takes exactly ``CocoDataset``'s arguments; see the module docstring for what
    happens to each kind of bad item.
    """

    COCOAPI = CheckedCOCO

    def __init__(self, *args, pipeline=(), **kwargs):
        super().__init__(*args, pipeline=safe_pipeline(pipeline), **kwargs)

    def _loads_masks(self) -> bool:
        return any(getattr(t, 'with_mask', False) for t in self.pipeline.transforms)

    def load_data_list(self) -> List[dict]:
        self._problems = ProblemLog()
        self._links_checked = False
        self._with_masks = self._loads_masks()
        data_list = super().load_data_list()
        self._num_listed = len(data_list)
        # parse_data_info returns None for an image it skips.
        data_list = [info for info in data_list if info is not None]
        self._problems.emit(f'{type(self).__name__}: {self.ann_file}')
        if not data_list:
            found = (f'{self._num_listed} listed, none found under '
                     f'{self.data_prefix.get("img")!r}' if self._num_listed else
                     "its 'images' list is empty")
            raise ValueError(f'annotation file {self.ann_file} leaves no image to use: '
                             f'{found}')
        return data_list

    def _report_unlinked_annotations(self) -> None:
        """Annotations whose image_id is not in 'images' would never be looked at."""
        self._links_checked = True
        for ann in self.coco.dataset.get('annotations', []):
            if ann['image_id'] not in self.coco.imgs:
                self._problems.add('annotations for an image id not in "images", skipped',
                                   f'annotation id {ann["id"]} (image id {ann["image_id"]})')

    def parse_data_info(self, raw_data_info: dict) -> Union[dict, List[dict], None]:
        if not self._links_checked:
            self._report_unlinked_annotations()
        img_info = raw_data_info['raw_img_info']
        img_path = osp.join(self.data_prefix['img'], img_info['file_name'])
        if not exists(img_path, backend_args=self.backend_args):
            kind = 'images missing on disk, skipped'
            if self.test_mode:
                kind += (' (SafeCocoMetric leaves them out of the score; mmdet\'s '
                         'CocoMetric counts their objects as missed)')
            self._problems.add(kind, f'{img_path} (image id {img_info["img_id"]})')
            return None
        anns = [ann for ann in (self._check_annotation(ann, img_info)
                                for ann in raw_data_info['raw_ann_info'])
                if ann is not None]
        data_info = super().parse_data_info(dict(raw_data_info, raw_ann_info=anns))
        data_info['num_anns_in_file'] = len(raw_data_info['raw_ann_info'])
        return data_info

    def _check_annotation(self, ann: dict, img_info: dict) -> Optional[dict]:
        """The annotation (clipped, or ignored for want of a mask) or None (logged why)."""
        if ann.get('ignore', False):
            return ann  # mmdet's parse_data_info leaves it out
        ann = check_box(ann, img_info, self.coco.cats, self._problems)
        if ann is not None and self._with_masks:
            ann = check_mask(ann, img_info, self._problems)
        return ann

    def filter_data(self) -> List[dict]:
        data_list = super().filter_data()
        if not self.test_mode and self.filter_cfg and self.filter_cfg.get('filter_empty_gt'):
            # mmdet keeps an image whose every annotation it ignored (its cat_img_map
            # still lists it): drop it like any image without objects.
            emptied = [d for d in data_list if not d['instances'] and d['num_anns_in_file']]
            data_list = [d for d in data_list if d['instances']]
            if emptied:
                print_log(f'{type(self).__name__}: filter_empty_gt also dropped '
                          f'{len(emptied)} images whose annotations were all skipped '
                          f'(e.g. {emptied[0]["img_path"]})', logger='current',
                          level=logging.INFO)
        dropped = len(self.data_list) - len(data_list)
        if dropped:
            print_log(f'{type(self).__name__}: {self.ann_file}: filter_cfg '
                      f'{dict(self.filter_cfg)} dropped {dropped} of {len(self.data_list)} '
                      'images (no usable annotations, or smaller than min_size)',
                      logger='current', level=logging.INFO)
        if not data_list:
            raise ValueError(f'annotation file {self.ann_file}: no image left for training '
                             f'after filter_cfg={dict(self.filter_cfg)} '
                             f'({len(self.data_list)} images before filtering); '
                             'check the annotations and the warnings above')
        return data_list
