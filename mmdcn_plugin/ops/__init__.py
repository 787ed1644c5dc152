"""Functional deformable convolution and its backends.

Only pure-Python modules are imported here; mmcv's compiled extension is loaded on
first use of the ``'mmcv'`` backend.
"""
from .backends import available_backends
from .deform_conv import deform_conv2d
from .reference import deform_conv2d_reference
from .sampling_rules import inside_image, sampling_points

__all__ = ['deform_conv2d', 'available_backends', 'deform_conv2d_reference', 'sampling_points',
           'inside_image']
