"""Datasets shipped with mmdcn_plugin (currently a synthetic COCO generator)."""
from .synthetic_coco import CLASSES, DEFORMATION_LEVELS, generate_synthetic_coco

__all__ = ['CLASSES', 'DEFORMATION_LEVELS', 'generate_synthetic_coco']
