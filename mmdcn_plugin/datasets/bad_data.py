"""The rules for bad COCO annotations, shared by ``SafeCocoDataset`` and ``SafeCocoMetric``.

Plain functions on the JSON dicts (no mmdet.datasets, no mmcv ops), so training and
evaluation read one file by one set of rules.  Each rule either returns the item
(possibly clipped or marked) or records why it was skipped in a :class:`ProblemLog`,
which reports one :class:`BadDataWarning` per kind of problem.

The rule for an instance without a usable mask (``segmentation`` missing, an empty
list, no polygon of at least 3 points, RLE whose size is not the image's or whose
counts do not fill it), applied only where masks are used (a pipeline that loads them,
a ``segm`` metric): the instance is **ignored**, as a crowd region is.  It becomes
``iscrowd=1`` with its box as the region.  Why this and not the alternatives:

* it is mmdet's own rule for an instance whose polygons are all invalid
  (``LoadAnnotations._process_masks`` sets ``ignore_flag``), so one rule covers every
  way of having no mask;
* a box-shaped mask would teach the mask head rectangles and, at evaluation, score
  real masks against rectangles;
* dropping the instance would make the object a false positive at evaluation.

In training mmdet moves ignored instances out of the ground truth
(``PackDetInputs``); at evaluation a crowd region makes detections on it neither
true nor false positives.
"""
import json
import math
import warnings
from collections import defaultdict
from typing import Optional

MAX_EXAMPLES = 3


class BadDataWarning(UserWarning):
    """A dataset item was skipped or changed because it was malformed."""


class ProblemLog:
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


def _json_error_message(path: str, err: json.JSONDecodeError) -> str:
    return (f'annotation file {path} is not valid JSON: {err.msg} at line {err.lineno} '
            f'column {err.colno} (char {err.pos})')


def _item_name(section: str, index: int, item) -> str:
    if not isinstance(item, dict):
        return f'{section}[{index}] (a {type(item).__name__}, expected an object)'
    name = f'{section}[{index}] (id {item.get("id")!r}'
    if section == 'annotations':
        name += f', image id {item.get("image_id")!r}'
    return name + ')'


def _is_id(value) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def read_coco_json(path: str) -> dict:
    """Read a COCO annotation file and check the structure ``COCO`` relies on.

    Raises ``ValueError`` naming ``path`` and the item (its index, id and, for an
    annotation, its image id) instead of the ``JSONDecodeError``/``KeyError``
    pycocotools gives, or the silent overwrite of a repeated id.
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
        seen = {}
        for index, item in enumerate(data.get(section, [])):
            missing = [k for k in keys if not isinstance(item, dict) or k not in item]
            if missing:
                raise ValueError(f'annotation file {path}: '
                                 f'{_item_name(section, index, item)} lacks {missing}')
            bad_ids = [k for k in keys if k.endswith('id') and not _is_id(item[k])]
            if bad_ids:
                raise ValueError(f'annotation file {path}: {_item_name(section, index, item)} '
                                 f'has {bad_ids} of types '
                                 f'{[type(item[k]).__name__ for k in bad_ids]}; '
                                 'expected int (or str) ids')
            if item['id'] in seen:
                raise ValueError(f'annotation file {path}: {_item_name(section, index, item)} '
                                 f'repeats the id of {section}[{seen[item["id"]]}]; '
                                 'pycocotools would keep only the last of them')
            seen[item['id']] = index
        if section == 'images':
            for index, item in enumerate(data['images']):
                size = (item['height'], item['width'])
                if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                           for v in size):
                    raise ValueError(f'annotation file {path}: '
                                     f'{_item_name(section, index, item)} has height, width '
                                     f'{size!r}; expected positive ints')
    return data


def check_box(ann: dict, img: dict, cats, problems: ProblemLog) -> Optional[dict]:
    """The annotation, its box clipped to the image if needed, or None (logged why).

    ``img`` is the image's entry of the file; ``cats`` the category ids it lists.
    """
    where = (f'annotation id {ann["id"]} (image id {img["id"]}, '
             f'{img["file_name"]})')
    cat_id = ann['category_id']
    if cat_id not in cats:
        problems.add('annotations with a category id not in "categories", skipped',
                     f'{where} category id {cat_id!r}')
        return None
    bbox = ann['bbox']
    if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       and math.isfinite(v) for v in bbox)):
        problems.add('annotations whose bbox is not 4 finite numbers, skipped',
                     f'{where} bbox {bbox!r}')
        return None
    x, y, w, h = bbox
    if w < 1 or h < 1:
        problems.add('annotations with a zero-size box (w or h < 1 px), skipped',
                     f'{where} bbox {bbox}')
        return None
    area = ann.get('area')
    if isinstance(area, bool) or not isinstance(area, (int, float)) or not area > 0:
        problems.add('annotations with area <= 0 or missing, skipped', f'{where} area {area!r}')
        return None
    width, height = img['width'], img['height']
    x1, y1 = max(x, 0.0), max(y, 0.0)
    x2, y2 = min(x + w, width), min(y + h, height)
    if (x1, y1, x2, y2) == (x, y, x + w, y + h):
        return ann
    if x2 - x1 < 1 or y2 - y1 < 1:
        problems.add('annotations with a box outside the image, skipped',
                     f'{where} bbox {bbox} in {width}x{height}')
        return None
    clipped = [x1, y1, x2 - x1, y2 - y1]
    problems.add('annotations with a box partly outside the image, clipped',
                 f'{where} bbox {bbox} -> {clipped} in {width}x{height}')
    return dict(ann, bbox=clipped)


def rle_string_counts(s) -> Optional[list]:
    """The run lengths of a compressed COCO RLE string, or None if it is malformed.

    The inverse of pycocotools' ``rleToString`` (``maskApi.c``): 5 bits a character
    offset by 48, a continuation bit, a sign bit, each count after the second stored
    as the difference from the count two before.
    """
    if isinstance(s, bytes):
        s = s.decode('ascii', errors='replace')
    counts, p = [], 0
    while p < len(s):
        x = k = 0
        more = True
        while more:
            if p >= len(s):
                return None
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1f) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _number_list(value) -> bool:
    return isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for v in value)


def mask_problem(segm, height: int, width: int):
    """``(segmentation to use, problem)``: problem is None when ``segm`` is usable.

    Polygons: parts that are not an even number (>= 6) of finite numbers are dropped,
    as mmdet's ``LoadAnnotations`` drops them (the problem then says so but the rest
    is used).  RLE: ``size`` must be the image's ``[height, width]`` and the counts
    must add up to ``height * width`` (pycocotools decodes past the buffer otherwise).
    """
    if segm is None:
        return None, 'no "segmentation"'
    if isinstance(segm, (list, tuple)):
        if not segm:
            return None, 'an empty "segmentation" list'
        parts = [p for p in segm if _number_list(p) and len(p) >= 6 and len(p) % 2 == 0]
        if not parts:
            return None, f'no polygon of at least 3 points ({len(segm)} part(s))'
        dropped = len(segm) - len(parts)
        return parts, (f'{dropped} of {len(segm)} polygon part(s) with fewer than 3 '
                       'points dropped' if dropped else None)
    if not isinstance(segm, dict) or 'counts' not in segm or 'size' not in segm:
        return None, f'a "segmentation" that is neither polygons nor RLE ({type(segm).__name__})'
    size = segm['size']
    if not (isinstance(size, (list, tuple)) and list(size) == [height, width]):
        return None, f'RLE size {size!r}, image is [{height}, {width}]'
    counts = segm['counts']
    if isinstance(counts, (str, bytes)):
        counts = rle_string_counts(counts)
    elif not (isinstance(counts, list) and all(isinstance(c, int) for c in counts)):
        counts = None
    if counts is None or any(c < 0 for c in counts):
        return None, 'malformed RLE counts'
    if sum(counts) != height * width:
        return None, f'RLE counts add up to {sum(counts)}, not {height}*{width}'
    return segm, None


def box_region(bbox) -> list:
    """A polygon covering ``bbox`` (x, y, w, h): the region of an ignored instance."""
    x, y, w, h = bbox
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def check_mask(ann: dict, img: dict, problems: ProblemLog) -> dict:
    """The annotation with a usable ``segmentation``; see the module docstring.

    An instance without a usable mask comes back ignored (``iscrowd=1``, its box as
    the region); polygon parts with fewer than 3 points are dropped from the rest.
    """
    segm, problem = mask_problem(ann.get('segmentation'), img['height'], img['width'])
    where = f'annotation id {ann["id"]} (image id {img["id"]}, {img["file_name"]})'
    if segm is None:
        problems.add('instances without a usable mask, ignored (as crowd regions: not '
                     'learnt from, not scored)', f'{where} has {problem}')
        return dict(ann, iscrowd=1, segmentation=box_region(ann['bbox']))
    if problem is not None:
        problems.add('annotations with polygon parts of fewer than 3 points, parts dropped',
                     f'{where}: {problem}')
    return dict(ann, segmentation=segm) if segm is not ann['segmentation'] else ann
