"""Functional deformable convolution and its backends.

Only pure-Python modules are imported here; mmcv's compiled extension is loaded on
first use of the ``'mmcv'`` backend.
"""
from .backends import available_backends
from .deform_conv import deform_conv2d
from .reference import deform_conv2d_reference

__all__ = ['deform_conv2d', 'available_backends', 'deform_conv2d_reference']
