"""The embedded dataset: a generator of small COCO-format sets of deformed shapes.

``coco.py`` imports only numpy, OpenCV and the standard library, so that
``tools/make_synthetic_coco.py`` can load that file without torch or mmdet.
"""
from .coco import CLASSES, DEFORMATION_LEVELS, generate_synthetic_coco
from .ensure import ensure_synthetic_coco

__all__ = ['CLASSES', 'DEFORMATION_LEVELS', 'generate_synthetic_coco', 'ensure_synthetic_coco']
