"""Generator of a small COCO-format dataset of geometrically deformed shapes.

The dataset exists to exercise deformable convolution: the object classes differ
only in their geometry (colours and textures are drawn from one distribution for
every class), and each instance is produced from a canonical shape through
rotation, anisotropic scale, shear, perspective and a smooth elastic warp whose
strength is set by ``deformation``.  Images also contain textured backgrounds,
unannotated clutter and occlusion between objects; annotations describe only the
visible part of each object.

Layout written under ``out_dir``::

    annotations/train.json   annotations/val.json
    images/train/000000.png  images/val/000000.png  ...

Every image is produced by its own random generator derived from
``(seed, split, index)``, so the output is byte-identical for the same arguments
(with the same numpy/OpenCV versions) and independent of generation order.  The
random draws for the deformation are made at every level and only scaled by it,
so one seed gives largely the same scenes (classes, colours, sizes) at every
deformation level.

This file writes the splits; ``shapes.py`` holds the classes and how one instance is
deformed, ``scene.py`` one image, ``annotation.py`` a visible mask as COCO polygons.
They import only numpy, OpenCV and the standard library, so that the command-line tool
can load this folder without torch or mmdet.
"""
import json
import os
import sys

import cv2
import numpy as np

from .scene import make_image
from .shapes import CLASSES, DEFORMATION_LEVELS

__all__ = ['CLASSES', 'DEFORMATION_LEVELS', 'generate_synthetic_coco']

_SPLIT_IDS = {'train': 0, 'val': 1}
_MIN_IMAGE_SIZE = 32


# --------------------------------------------------------------------------
# Argument validation
# --------------------------------------------------------------------------
def _check_int(name, value, minimum):
    """Raise ValueError unless ``value`` is an int (not bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f'{name} must be an integer >= {minimum}, '
                         f'got {value!r} ({type(value).__name__})')
    if value < minimum:
        raise ValueError(f'{name} must be an integer >= {minimum}, got {value}')
    return int(value)


def _check_args(out_dir, num_train, num_val, seed, deformation, image_size):
    """Validate the public arguments; return them normalised."""
    if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir):
        raise ValueError(f'out_dir must be a non-empty path, got {out_dir!r}')
    num_train = _check_int('num_train', num_train, 1)
    num_val = _check_int('num_val', num_val, 1)
    seed = _check_int('seed', seed, 0)
    image_size = _check_int('image_size', image_size, _MIN_IMAGE_SIZE)
    if deformation not in DEFORMATION_LEVELS:
        raise ValueError(
            f'deformation must be one of {", ".join(map(repr, DEFORMATION_LEVELS))}; '
            f'got {deformation!r}')
    return os.fspath(out_dir), num_train, num_val, seed, deformation, image_size


# --------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------
class _Progress:
    """``generating <split>: i/n`` on stderr.

    On a terminal the line is rewritten in place; otherwise (logs, CI) only
    about ten lines are printed, so captured output stays short.
    """

    def __init__(self, split, total):
        self.split, self.total = split, total
        self.in_place = hasattr(sys.stderr, 'isatty') and sys.stderr.isatty()
        self.every = max(1, total // 10)

    def update(self, done):
        if self.in_place:
            end = '\n' if done == self.total else ''
            sys.stderr.write(f'\rgenerating {self.split}: {done}/{self.total}{end}')
        elif done % self.every == 0 or done == self.total:
            sys.stderr.write(f'generating {self.split}: {done}/{self.total}\n')
        sys.stderr.flush()


def _write_split(out_dir, split, num, seed, level, size, show_progress):
    progress = _Progress(split, num) if show_progress else None
    img_dir = os.path.join(out_dir, 'images', split)
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    for index in range(num):
        seq = np.random.SeedSequence([seed, _SPLIT_IDS[split], index])
        img, anns = make_image(seq, size, level)
        file_name = f'{index:06d}.png'
        # OpenCV writes BGR; the array is RGB.
        cv2.imwrite(os.path.join(img_dir, file_name), img[..., ::-1],
                    [cv2.IMWRITE_PNG_COMPRESSION, 3])
        image_id = index + 1
        images.append(dict(id=image_id, file_name=file_name, width=size, height=size))
        for ann in anns:
            annotations.append(dict(id=len(annotations) + 1, image_id=image_id,
                                    category_id=ann['category_id'], bbox=ann['bbox'],
                                    segmentation=ann['segmentation'], area=ann['area'],
                                    iscrowd=0))
        if progress:
            progress.update(index + 1)

    coco = dict(
        info=dict(description='mmdcn_plugin synthetic deformed shapes', split=split,
                  seed=seed, deformation=level, image_size=size),
        images=images,
        annotations=annotations,
        categories=[dict(id=i + 1, name=name, supercategory='shape')
                    for i, name in enumerate(CLASSES)],
    )
    ann_dir = os.path.join(out_dir, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    ann_file = os.path.join(ann_dir, f'{split}.json')
    with open(ann_file, 'w') as f:
        json.dump(coco, f, separators=(',', ':'))
    return dict(ann_file=ann_file, img_dir=img_dir, num_images=len(images),
                num_instances=len(annotations))


def generate_synthetic_coco(out_dir, num_train=300, num_val=60, seed=0,
                            deformation='moderate', image_size=128, progress=True):
    """Write a COCO-format dataset of deformed shapes under ``out_dir``.

    Args:
        out_dir (str | os.PathLike): Root folder; created if needed.  Existing
            files of the same names are overwritten, others are left alone.
        num_train (int): Number of training images (>= 1).
        num_val (int): Number of validation images (>= 1).
        seed (int): Non-negative seed; the same arguments give byte-identical
            files.
        deformation (str): One of :data:`DEFORMATION_LEVELS`. ``'none'``: only
            position and size vary; ``'moderate'``/``'strong'``: rotation,
            anisotropic scale, shear, perspective and elastic warp of
            increasing strength.
        image_size (int): Side of the square images in pixels (>= 32).
            Object sizes scale with it (14-60 px at 128).
        progress (bool): Show progress on stderr.

    Returns:
        dict: ``out_dir``, ``classes`` and, per split (``'train'``, ``'val'``),
        a dict with ``ann_file``, ``img_dir``, ``num_images`` and
        ``num_instances``.

    Raises:
        ValueError: If an argument is out of range or of the wrong type.
    """
    out_dir, num_train, num_val, seed, deformation, image_size = _check_args(
        out_dir, num_train, num_val, seed, deformation, image_size)
    result = dict(out_dir=os.path.abspath(out_dir), classes=CLASSES)
    for split, num in (('train', num_train), ('val', num_val)):
        result[split] = _write_split(out_dir, split, num, seed, deformation,
                                     image_size, bool(progress))
    return result
