"""mmdcn_plugin: deformable convolution (DCNv1, DCNv2, separable offset heads) for MMDetection 3.x.

Importing the package registers its layers, offset heads and hooks into
``mmdet.registry`` and makes checkpoints written by MMEngine's Runner loadable
under torch >= 2.6 without disabling ``weights_only`` (see ``checkpoint.py``).
mmcv's compiled extension is not loaded until a deformable layer runs on it.
"""
from .version import __version__
from . import checkpoint  # noqa: F401  (allowlists what MMEngine checkpoints hold)
from .ops import available_backends, deform_conv2d
from .layers import ConvOffsetHead, DeformableConv2d, SeparableOffsetHead
from .engine import CPUDistributedDataParallel
from .hooks import OffsetStatsHook, OffsetVisualizationHook, RNGStateHook
from .datasets.bad_data import BadDataWarning
from .datasets.transforms import SafeLoadImageFromFile
from . import evaluation  # noqa: F401  (SafeCocoMetric, registered lazily)
from . import analysis, visualization  # noqa: F401  (FLOPs; offset pictures)
from . import robustness  # noqa: F401  (RandomRotateScaleShear, registered lazily)

__all__ = ['__version__', 'deform_conv2d', 'available_backends', 'DeformableConv2d',
           'ConvOffsetHead', 'SeparableOffsetHead', 'CPUDistributedDataParallel',
           'OffsetStatsHook', 'OffsetVisualizationHook', 'RNGStateHook',
           'SafeLoadImageFromFile', 'BadDataWarning', 'analysis', 'visualization']
