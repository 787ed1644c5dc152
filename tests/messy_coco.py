"""One tiny COCO file holding every kind of bad or incomplete annotation a user's file
tends to have (issue 16), built on a generated synthetic set so the images are real.

Each case is a copy of the first annotation of image id 1 (``000000.png``) with one
thing changed, added under its own id; the generated annotations stay as they were,
so the file still has objects to train on.
"""
import json
import shutil

import numpy as np

from mmdcn_plugin.synthetic import CLASSES, generate_synthetic_coco

# annotation id -> what is wrong with it (or special about it)
NO_SEGMENTATION = 1001
EMPTY_SEGMENTATION = 1002
TWO_POINT_POLYGON = 1003   # pycocotools would read [x1, y1, x2, y2] as a box
ONE_POINT_POLYGON = 1004
RLE_WRONG_SIZE = 1005
CROWD = 1006               # iscrowd=1 with an uncompressed RLE of the right size
IGNORE = 1007              # ignore=1
ZERO_SIZE_BOX = 1008
UNKNOWN_CATEGORY = 1009
SHORT_PART_BESIDE_GOOD = 1010  # a good polygon and a one-point part
EMPTY_IMAGE_ID = 100       # an image listed without annotations

MASKLESS = (NO_SEGMENTATION, EMPTY_SEGMENTATION, TWO_POINT_POLYGON, ONE_POINT_POLYGON,
            RLE_WRONG_SIZE)
CASE_IDS = MASKLESS + (CROWD, IGNORE, ZERO_SIZE_BOX, UNKNOWN_CATEGORY,
                       SHORT_PART_BESIDE_GOOD)


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a 0/1 mask: run lengths in column-major order,
    starting with a run of zeros."""
    flat = mask.flatten(order='F').astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return dict(size=list(mask.shape), counts=counts)


def box_mask(bbox, height, width) -> np.ndarray:
    x, y, w, h = (int(round(v)) for v in bbox)
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y:y + h, x:x + w] = 1
    return mask


def add_cases(data: dict) -> dict:
    """Add every case to a generated COCO dict (in place); returns it."""
    from pycocotools import mask as mask_utils
    image = next(img for img in data['images'] if img['id'] == 1)
    height, width = image['height'], image['width']
    base = next(a for a in data['annotations'] if a['image_id'] == 1)
    x, y, w, h = base['bbox']
    wrong = mask_utils.encode(np.asfortranarray(box_mask(base['bbox'], height + 1, width)))
    changes = {
        NO_SEGMENTATION: dict(segmentation=None),
        EMPTY_SEGMENTATION: dict(segmentation=[]),
        TWO_POINT_POLYGON: dict(segmentation=[[x, y, x + w, y + h]]),
        ONE_POINT_POLYGON: dict(segmentation=[[x, y]]),
        RLE_WRONG_SIZE: dict(segmentation=dict(size=wrong['size'],
                                               counts=wrong['counts'].decode('ascii'))),
        CROWD: dict(iscrowd=1,
                    segmentation=uncompressed_rle(box_mask(base['bbox'], height, width))),
        IGNORE: dict(ignore=1),
        ZERO_SIZE_BOX: dict(bbox=[x, y, 0.0, h]),
        UNKNOWN_CATEGORY: dict(category_id=99),
        SHORT_PART_BESIDE_GOOD: dict(segmentation=base['segmentation'] + [[x, y]]),
    }
    for ann_id, change in changes.items():
        ann = dict(base, id=ann_id, **change)
        if ann['segmentation'] is None:
            del ann['segmentation']
        data['annotations'].append(ann)
    data['images'].append(dict(image, id=EMPTY_IMAGE_ID, file_name='000100.png'))
    return data


def make_messy_coco(root, num_images: int = 3) -> dict:
    """Write the messy set under ``root``: ``annotations/{train,val}.json`` (the same
    cases in both) and ``images/{train,val}/``.  Returns the train COCO dict."""
    generate_synthetic_coco(str(root), num_train=num_images, num_val=num_images, seed=0,
                            progress=False)
    for split in ('train', 'val'):
        path = root / 'annotations' / f'{split}.json'
        data = add_cases(json.loads(path.read_text()))
        path.write_text(json.dumps(data))
        images = root / 'images' / split
        shutil.copy(images / '000000.png', images / '000100.png')
    return json.loads((root / 'annotations' / 'train.json').read_text())


__all__ = ['CLASSES', 'CASE_IDS', 'MASKLESS', 'make_messy_coco', 'uncompressed_rle']
