"""Object-centred crops of a COCO-format set, for the backbone's shape-classification stage.

One crop per annotated instance: a ``window x window`` patch of the image centred on the
instance's box, at the image's own scale (nothing is resized, so the backbone sees objects
at the size the detector will see them), padded with zeros where the window leaves the
image.  The label is the instance's category index (``category_id - 1`` for the
embedded dataset, whose ids run from 1).

Only numpy and OpenCV are used here.
"""
import json
import os.path as osp
from typing import Tuple

import cv2
import numpy as np

__all__ = ['object_crops']


def object_crops(ann_file: str, img_dir: str, window: int) -> Tuple[np.ndarray, np.ndarray]:
    """Read every instance of ``ann_file`` as a centred crop.

    Args:
        ann_file (str): COCO json with ``images``, ``annotations`` and ``categories``.
        img_dir (str): Folder holding the images' ``file_name``.
        window (int): Side of the square crop in pixels (>= 8).

    Returns:
        tuple: ``crops`` (uint8 ndarray[N, window, window, 3], BGR as OpenCV reads it)
        and ``labels`` (int64 ndarray[N], index of the category in the file's
        ``categories`` sorted by id), in annotation order of the file.

    Raises:
        ValueError: ``window`` is not an int >= 8, or the file has no instance.
        FileNotFoundError: an image of the file is missing.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 8:
        raise ValueError(f'window: expected an int >= 8, got {window!r}')
    with open(ann_file) as f:
        coco = json.load(f)
    cat_index = {c['id']: i for i, c in enumerate(sorted(coco['categories'],
                                                          key=lambda c: c['id']))}
    images = {im['id']: im for im in coco['images']}
    by_image = {}
    for ann in coco['annotations']:
        if not ann.get('iscrowd', 0) and ann['bbox'][2] > 0 and ann['bbox'][3] > 0:
            by_image.setdefault(ann['image_id'], []).append(ann)
    crops, labels = [], []
    half = window // 2
    for image_id in sorted(by_image):
        path = osp.join(img_dir, images[image_id]['file_name'])
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f'image {path!r} of {ann_file!r} (id {image_id}) '
                                    'is missing or unreadable')
        padded = cv2.copyMakeBorder(img, half, window, half, window, cv2.BORDER_CONSTANT,
                                    value=0)
        for ann in by_image[image_id]:
            x, y, w, h = ann['bbox']
            cx, cy = int(round(x + w / 2)), int(round(y + h / 2))
            # (cx, cy) in the padded image is (cx + half, cy + half): the window starts at cx.
            crops.append(padded[cy:cy + window, cx:cx + window])
            labels.append(cat_index[ann['category_id']])
    if not crops:
        raise ValueError(f'{ann_file!r} holds no usable instance')
    return np.stack(crops), np.asarray(labels, dtype=np.int64)
