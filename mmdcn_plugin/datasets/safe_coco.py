"""``SafeCocoDataset``: mmdet's ``CocoDataset`` that reports bad annotation data.

mmdet 3.3's ``CocoDataset`` (measured on a 6-image synthetic set) drops bad
annotations without a word, keeps out-of-image boxes unclipped, lets a missing
image surface as a ``FileNotFoundError`` from the middle of an epoch, and fails on
a broken annotation file with an error that does not name it (``JSONDecodeError``
without the path; ``ValueError: need at least one array to concatenate`` for a file
without ``'images'``).  This subclass keeps mmdet's parsing and decides, per case:

* annotation file that is not JSON, not a JSON object, or lacks an ``'images'`` or
  ``'categories'`` list, or whose images/annotations lack the keys COCO needs:
  ``ValueError`` naming the file (and the JSON error position, or the item).
* image listed but missing on disk: skipped, with a warning naming the file.  In
  test mode the evaluator still reads the annotation file, so the warning says its
  objects will count as missed.
* category id not in the file's ``'categories'``: annotation skipped, warning
  naming the annotation id and the category id.  (A category that is listed but not
  among ``metainfo['classes']`` is a deliberate subset and stays silent, as in mmdet.)
* box with w or h below 1 px, or ``area`` <= 0 or missing: skipped with a warning
  (mmdet already ignored them, silently).  A box that is not four finite numbers:
  skipped with a warning (mmdet would fail deep inside).
* box partly outside the image: clipped to the image, with a warning; wholly outside
  (nothing of at least 1 px left): skipped, with a warning.
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

A corrupt image is only found when the pipeline reads it; see
``SafeLoadImageFromFile`` in ``transforms.py``.
"""
import json
import logging
import math
import os.path as osp
import warnings
from collections import defaultdict
from typing import List, Optional, Union

from mmengine.fileio import exists
from mmengine.logging import print_log

from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO

from .bad_data import BadDataWarning

MAX_EXAMPLES = 3


def _json_error_message(path: str, err: json.JSONDecodeError) -> str:
    return (f'annotation file {path} is not valid JSON: {err.msg} at line {err.lineno} '
            f'column {err.colno} (char {err.pos})')


def read_coco_json(path: str) -> dict:
    """Read a COCO annotation file and check the structure ``COCO`` relies on.

    Raises ``ValueError`` naming ``path`` (and the JSON error position, or the first
    malformed item) instead of the ``JSONDecodeError``/``KeyError`` pycocotools gives.
    """
    with open(path, encoding='utf-8') as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(_json_error_message(path, err)) from None
    if not isinstance(data, dict):
        raise ValueError(f'annotation file {path} holds a JSON {type(data).__name__}; '
                         "a COCO file is an object with 'images', 'annotations' and "
                         "'categories'")
    for key in ('images', 'categories'):
        if not isinstance(data.get(key), list):
            found = 'has no' if key not in data else f'has a non-list {key!r} in'
            raise ValueError(f'annotation file {path} {found} {key!r} '
                             f"(top-level keys: {sorted(data)}); a COCO file needs "
                             f'a list of {key}')
    if not isinstance(data.get('annotations', []), list):
        raise ValueError(f"annotation file {path}: 'annotations' is not a list")
    required = (('images', ('id', 'file_name', 'width', 'height')),
                ('annotations', ('id', 'image_id', 'category_id', 'bbox')),
                ('categories', ('id', 'name')))
    for section, keys in required:
        for index, item in enumerate(data.get(section, [])):
            missing = [k for k in keys if not isinstance(item, dict) or k not in item]
            if missing:
                raise ValueError(f'annotation file {path}: {section}[{index}] '
                                 f'(id {item.get("id") if isinstance(item, dict) else None}) '
                                 f'lacks {missing}')
    return data


class CheckedCOCO(COCO):
    """mmdet's ``COCO`` reading its file through :func:`read_coco_json`."""

    def __init__(self, annotation_file: Optional[str] = None):
        super().__init__(annotation_file=None)
        if annotation_file is not None:
            self.dataset = read_coco_json(annotation_file)
            self.createIndex()
            # mmdet's aliases were bound to the empty indexes createIndex replaced.
            self.img_ann_map = self.imgToAnns
            self.cat_img_map = self.catToImgs


class _ProblemLog:
    """Counts problems by kind and keeps the first few examples of each."""

    def __init__(self):
        self.counts = defaultdict(int)
        self.examples = defaultdict(list)

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] += 1
        if len(self.examples[kind]) < MAX_EXAMPLES:
            self.examples[kind].append(example)

    def emit(self, source: str) -> None:
        for kind, count in self.counts.items():
            more = f'; and {count - MAX_EXAMPLES} more' if count > MAX_EXAMPLES else ''
            warnings.warn(f'{source}: {count} {kind}: {"; ".join(self.examples[kind])}{more}',
                          BadDataWarning, stacklevel=3)


class SafeCocoDataset(CocoDataset):
    """``CocoDataset`` that skips, clips or rejects bad items and says which.

    Takes exactly ``CocoDataset``'s arguments; see the module docstring for what
    happens to each kind of bad item.
    """

    COCOAPI = CheckedCOCO

    def load_data_list(self) -> List[dict]:
        self._problems = _ProblemLog()
        self._links_checked = False
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
                kind += (' (an evaluator reading the annotation file counts their '
                         'objects as missed)')
            self._problems.add(kind, f'{img_path} (image id {img_info["img_id"]})')
            return None
        anns = [ann for ann in (self._check_annotation(ann, img_info)
                                for ann in raw_data_info['raw_ann_info'])
                if ann is not None]
        data_info = super().parse_data_info(dict(raw_data_info, raw_ann_info=anns))
        data_info['num_anns_in_file'] = len(raw_data_info['raw_ann_info'])
        return data_info

    def _check_annotation(self, ann: dict, img_info: dict) -> Optional[dict]:
        """Return the annotation (clipped if needed) or None after logging why not."""
        if ann.get('ignore', False):
            return ann
        where = f'annotation id {ann["id"]} (image {img_info["file_name"]})'
        cat_id = ann['category_id']
        if cat_id not in self.coco.cats:
            self._problems.add('annotations with a category id not in "categories", skipped',
                               f'{where} category id {cat_id!r}')
            return None
        bbox = ann['bbox']
        if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)):
            self._problems.add('annotations whose bbox is not 4 finite numbers, skipped',
                               f'{where} bbox {bbox!r}')
            return None
        x, y, w, h = bbox
        if w < 1 or h < 1:
            self._problems.add('annotations with a zero-size box (w or h < 1 px), skipped',
                               f'{where} bbox {bbox}')
            return None
        area = ann.get('area')
        if not isinstance(area, (int, float)) or area <= 0:
            self._problems.add('annotations with area <= 0 or missing, skipped',
                               f'{where} area {area!r}')
            return None
        width, height = img_info['width'], img_info['height']
        x1, y1 = max(x, 0.0), max(y, 0.0)
        x2, y2 = min(x + w, width), min(y + h, height)
        if (x1, y1, x2, y2) == (x, y, x + w, y + h):
            return ann
        if x2 - x1 < 1 or y2 - y1 < 1:
            self._problems.add('annotations with a box outside the image, skipped',
                               f'{where} bbox {bbox} in {width}x{height}')
            return None
        clipped = [x1, y1, x2 - x1, y2 - y1]
        self._problems.add('annotations with a box partly outside the image, clipped',
                           f'{where} bbox {bbox} -> {clipped} in {width}x{height}')
        return dict(ann, bbox=clipped)

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
