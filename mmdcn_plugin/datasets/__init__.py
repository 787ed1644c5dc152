"""mmdet dataset and transform classes that handle bad COCO data, and its warning.

``SafeCocoDataset`` (``safe_coco.py``) and ``SafeLoadImageFromFile``
(``transforms.py``) apply the rules of ``bad_data.py`` and report through
:class:`BadDataWarning`.  ``safe_coco.py`` imports ``mmdet.datasets`` (and with it
mmcv's compiled ops), so it is registered here without being imported: the first
lookup in ``mmdet.registry.DATASETS`` imports it (see ``lazy_registry.py``).  The
training augmentation ``RandomRotateScaleShear`` lives with the geometry it shares,
and is registered by its own package, :mod:`mmdcn_plugin.robustness`.

The synthetic dataset generator moved to :mod:`mmdcn_plugin.synthetic`; its names
are re-exported here for code that imported them from ``mmdcn_plugin.datasets``.
"""
from mmdet.registry import DATASETS

from ..lazy_registry import register_lazily
from ..synthetic import CLASSES, DEFORMATION_LEVELS, generate_synthetic_coco
from .bad_data import BadDataWarning
from .transforms import SafeLoadImageFromFile

register_lazily(DATASETS, 'SafeCocoDataset', 'mmdcn_plugin.datasets.safe_coco')

__all__ = ['BadDataWarning', 'SafeLoadImageFromFile', 'CLASSES', 'DEFORMATION_LEVELS',
           'generate_synthetic_coco']
