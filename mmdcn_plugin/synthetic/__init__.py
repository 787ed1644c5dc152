"""The embedded dataset: a generator of small COCO-format sets of deformed shapes.

The files of this folder import only numpy, OpenCV and the standard library, so that
``tools/make_synthetic_coco.py`` can load the folder without torch or mmdet.
"""
from .coco import CLASSES, DEFORMATION_LEVELS, generate_synthetic_coco
from .ensure import ensure_synthetic_coco

__all__ = ['CLASSES', 'DEFORMATION_LEVELS', 'generate_synthetic_coco', 'ensure_synthetic_coco']
