"""Offset heads: modules predicting a deformable layer's offsets and masks."""
from .base_offset_head import GEOMETRY_ARGS, BaseOffsetHead
from .conv_offset_head import ConvOffsetHead
from .separable_offset_head import SeparableOffsetHead

__all__ = ['BaseOffsetHead', 'ConvOffsetHead', 'SeparableOffsetHead', 'GEOMETRY_ARGS']
