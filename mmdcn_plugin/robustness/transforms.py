"""Geometric transforms of an image and its instance masks, with boxes recomputed from the masks.

One transform is one 2x3 affine matrix ``A`` acting about the image centre, on a canvas
of the same size:

* ``rotate``: ``value`` degrees, counter-clockwise as seen on screen (OpenCV's
  convention); any finite number.
* ``scale``: zoom by ``value`` (> 0); 1 leaves the image unchanged, 2 doubles objects.
* ``shear``: horizontal shear by the angle ``value`` in degrees, ``-90 < value < 90``:
  ``x' = x + tan(value) * (y - cy)``, so a positive value moves the bottom to the right.

Coordinates are COCO's: pixel ``i`` spans ``[i, i + 1]``, the centre of a ``W x H``
image is ``(W / 2, H / 2)``.  The image is warped with bilinear interpolation and the
uncovered area filled with a constant (``fill``, default 128 as mmdet's geometric
transforms).  Polygons (COCO ``segmentation``) are transformed vertex by vertex, which
is exact, and clipped to the image; the mask is the clipped polygons rasterised as
MMDetection rasterises them (pycocotools), and the box is the tight box of that mask
(never the transformed corners of the old box).  Multiples of 90 degrees use exact
matrices, so four quarter turns give the original polygons back bit for bit.

Instances that leave the image (one rule, :func:`transform_annotations`):
  * ``visible`` = polygon area inside the image / area of the transformed polygons;
  * no mask pixel left inside the image: the annotation is removed;
  * ``visible < min_visible`` (default 0.5): kept as an ignore region (``iscrowd=1``,
    box of its visible part): COCO evaluation counts a detection on it neither as a
    hit nor as a false positive, and does not count it as a miss;
  * otherwise: kept as an instance with the visible part's polygons, box and area.
  Annotations that were crowd regions stay crowd regions.
"""
import math
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

#: The transforms' names (not mmdet's ``TRANSFORMS`` registry, which ``augment.py`` uses).
TRANSFORM_NAMES = ('rotate', 'scale', 'shear')
IDENTITY = {'rotate': 0.0, 'scale': 1.0, 'shear': 0.0}
MIN_VISIBLE = 0.5
FILL = 128


def check_transform(transform) -> str:
    """``transform`` if it names a transform, else ValueError naming the choices."""
    if transform not in TRANSFORM_NAMES:
        raise ValueError(f'transform must be one of {", ".join(map(repr, TRANSFORM_NAMES))}; '
                         f'got {transform!r}')
    return transform


def check_value(transform: str, value) -> float:
    """A finite float in the range of ``transform``; ValueError otherwise."""
    check_transform(transform)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f'{transform} value must be a number, got {value!r} '
                         f'({type(value).__name__})')
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f'{transform} value must be finite, got {value}')
    if transform == 'scale' and value <= 0:
        raise ValueError(f'scale value must be > 0 (a zoom factor about the image centre, '
                         f'1 = unchanged), got {value:g}')
    if transform == 'shear' and not -90 < value < 90:
        raise ValueError(f'shear value must be an angle in degrees with -90 < value < 90, '
                         f'got {value:g}')
    return value


def check_fill(fill):
    """``fill`` if it is a grey level 0..255 or a (B, G, R) triple of them; else ValueError."""
    if np.isscalar(fill):
        levels = [fill]
    else:
        levels = list(fill) if isinstance(fill, (list, tuple)) else None
    if (levels is None or len(levels) not in (1, 3)
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                       and 0 <= v <= 255 for v in levels)):
        raise ValueError(f'fill must be an int in [0, 255] or three of them (B, G, R), '
                         f'got {fill!r}')
    return fill


def parse_values(transform: str, values) -> List[float]:
    """Check a list of values, or parse ``'V1,V2,...'``; they must be distinct.

    Raises:
        ValueError: unknown transform; empty list; an entry that is not a number or out
            of the transform's range; a value given twice.
    """
    check_transform(transform)
    if isinstance(values, str):
        items = [v.strip() for v in values.split(',')]
        if items == ['']:
            items = []
        parsed = []
        for i, item in enumerate(items):
            try:
                parsed.append(float(item))
            except ValueError:
                raise ValueError(f'values must be comma-separated numbers (e.g. 0,30,60); '
                                 f'entry {i + 1} is {item!r}') from None
        values = parsed
    values = list(values)
    if not values:
        raise ValueError(f'values must hold at least one {transform} value, got none')
    checked = [check_value(transform, v) for v in values]
    seen = set()
    for v in checked:
        if v in seen:
            raise ValueError(f'values must be distinct, got {v:g} twice')
        seen.add(v)
    return checked


def _cos_sin(degrees: float) -> Tuple[float, float]:
    """cos and sin, exact for multiples of 90 degrees."""
    if degrees % 90 == 0:
        return ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))[int(degrees // 90) % 4]
    rad = math.radians(degrees)
    return math.cos(rad), math.sin(rad)


def transform_matrix(transform: str, value: float, width: int, height: int) -> np.ndarray:
    """The affine map of ``transform`` by ``value`` about the centre of a W x H image.

    Returns:
        ndarray[2, 3] ``A`` in COCO coordinates: ``[x', y'] = A @ [x, y, 1]``.
    """
    value = check_value(transform, value)
    if transform == 'rotate':
        c, s = _cos_sin(value)
        linear = np.array([[c, s], [-s, c]])      # y points down: counter-clockwise on screen
    elif transform == 'scale':
        linear = np.array([[value, 0.0], [0.0, value]])
    else:
        linear = np.array([[1.0, math.tan(math.radians(value))], [0.0, 1.0]])
    centre = np.array([width / 2.0, height / 2.0])
    return np.concatenate([linear, (centre - linear @ centre)[:, None]], 1)


def is_identity(matrix: np.ndarray) -> bool:
    return bool(np.array_equal(matrix, np.array([[1.0, 0, 0], [0, 1.0, 0]])))


def warp_image(img: np.ndarray, matrix: np.ndarray, fill=FILL) -> np.ndarray:
    """Warp ``img`` (ndarray[H, W] or [H, W, C]) by ``matrix`` onto an H x W canvas.

    Bilinear; the uncovered area is ``fill``.  The identity returns an exact copy.
    """
    check_fill(fill)
    if is_identity(matrix):
        return img.copy()
    # OpenCV puts pixel centres at integers (COCO at i + 0.5): conjugate by that shift.
    linear, shift = matrix[:, :2], matrix[:, 2]
    pixel = np.concatenate([linear, (shift + linear @ [0.5, 0.5] - 0.5)[:, None]], 1)
    channels = 1 if img.ndim == 2 else img.shape[2]
    border = (fill,) * channels if np.isscalar(fill) else tuple(fill)
    return cv2.warpAffine(img, pixel, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """ndarray[N, 2] of (x, y) -> the same points mapped by ``matrix``."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def _clip_polygon(poly: np.ndarray, width: float, height: float) -> np.ndarray:
    """Sutherland-Hodgman: ndarray[N, 2] -> the part inside [0, W] x [0, H], ndarray[M, 2]."""
    inside_all = ((poly >= 0).all() and (poly[:, 0] <= width).all()
                  and (poly[:, 1] <= height).all())
    if inside_all:
        return poly
    for axis, bound, low in ((0, 0.0, True), (0, width, False), (1, 0.0, True),
                             (1, height, False)):
        if len(poly) == 0:
            break
        inside = poly[:, axis] >= bound if low else poly[:, axis] <= bound
        out = []
        prev, prev_in = poly[-1], inside[-1]
        for cur, cur_in in zip(poly, inside):
            if cur_in != prev_in:
                cross = prev + (bound - prev[axis]) / (cur[axis] - prev[axis]) * (cur - prev)
                cross[axis] = bound
                out.append(cross)
            if cur_in:
                out.append(cur)
            prev, prev_in = cur, cur_in
        poly = np.array(out, dtype=np.float64).reshape(-1, 2)
    return poly


def polygon_area(poly: np.ndarray) -> float:
    """Area enclosed by ndarray[N, 2] (shoelace; a bridged hole counts as a hole)."""
    x, y = poly[:, 0], poly[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2


def rasterize(polygons: Sequence[Sequence[float]], width: int, height: int) -> np.ndarray:
    """COCO polygons -> ndarray[H, W] uint8 mask, as MMDetection rasterises them."""
    from pycocotools import mask as mask_utils
    polygons = [list(map(float, p)) for p in polygons if len(p) >= 6]
    if not polygons:
        return np.zeros((height, width), np.uint8)
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    return mask_utils.decode(rle)


def tight_box(mask: np.ndarray) -> Optional[List[float]]:
    """COCO ``[x, y, w, h]`` of the pixels of ndarray[H, W] mask; None if it is empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)]


def _polygons_of(ann: dict, where: str) -> List[np.ndarray]:
    seg = ann.get('segmentation')
    if not isinstance(seg, list) or not seg:
        kind = 'none' if not seg else f'RLE ({type(seg).__name__})'
        raise ValueError(f'{where}: annotation id {ann.get("id")!r} needs polygon '
                         f'segmentation (a list of [x1, y1, x2, y2, ...]) to recompute its '
                         f'box from its mask; got {kind}')
    polys = []
    for p in seg:
        if not isinstance(p, (list, tuple)) or len(p) % 2:
            raise ValueError(f'{where}: annotation id {ann.get("id")!r} has a polygon that is '
                             f'not a flat list of x, y pairs: {str(p)[:60]}')
        if len(p) >= 6:
            polys.append(np.asarray(p, dtype=np.float64).reshape(-1, 2))
    return polys


def transform_annotations(anns: Sequence[dict], matrix: np.ndarray, width: int, height: int,
                          min_visible: float = MIN_VISIBLE, where: str = 'annotations'
                          ) -> List[dict]:
    """The annotations of one W x H image after ``matrix`` (the rule in the module doc).

    Args:
        anns (sequence of dict): COCO annotations with polygon ``segmentation``.
        matrix (ndarray[2, 3]): from :func:`transform_matrix`.
        min_visible (float): in [0, 1]; below it an instance becomes an ignore region.
        where (str): named in errors (e.g. the annotation file).

    Returns:
        list of dict: new annotations (same ids and keys; ``segmentation``, ``bbox``,
        ``area``, ``iscrowd`` recomputed), removed ones left out.
    """
    if not 0 <= min_visible <= 1:
        raise ValueError(f'min_visible must be in [0, 1], got {min_visible!r}')
    det = abs(float(np.linalg.det(matrix[:, :2])))
    out = []
    for ann in anns:
        polys = _polygons_of(ann, where)
        moved = [_apply(matrix, p) for p in polys]
        clipped = [c for c in (_clip_polygon(p, width, height) for p in moved) if len(c) >= 3]
        segmentation = [[float(v) for v in c.reshape(-1)] for c in clipped]
        mask = rasterize(segmentation, width, height)
        box = tight_box(mask)
        if box is None:
            continue
        full = det * sum(polygon_area(p) for p in polys)
        visible = sum(polygon_area(c) for c in clipped) / full if full > 0 else 0.0
        crowd = int(bool(ann.get('iscrowd', 0)) or visible < min_visible)
        out.append(dict(ann, segmentation=segmentation, bbox=box, area=float(mask.sum()),
                        iscrowd=crowd))
    return out
