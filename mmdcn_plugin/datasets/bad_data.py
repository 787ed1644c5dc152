"""What the safe dataset classes share without importing mmdet.datasets.

``mmdet.datasets`` pulls in mmcv's compiled ops; importing ``mmdcn_plugin`` must not.
So ``SafeCocoDataset`` is registered here under its name as a builder that imports
the class on first use (MMEngine's registry builds functions as it builds classes).
"""
from mmdet.registry import DATASETS


class BadDataWarning(UserWarning):
    """A dataset item was skipped or changed because it was malformed."""


@DATASETS.register_module(name='SafeCocoDataset')
def build_safe_coco_dataset(*args, **kwargs):
    """Build :class:`mmdcn_plugin.datasets.safe_coco.SafeCocoDataset` (imported lazily)."""
    from .safe_coco import SafeCocoDataset
    return SafeCocoDataset(*args, **kwargs)
