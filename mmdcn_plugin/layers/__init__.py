"""Modules that own parameters: the deformable layer and its offset heads."""
from .deformable_conv import DeformableConv2d
from .deformable_layers import deformable_layers
from .offset_heads import BaseOffsetHead, ConvOffsetHead, SeparableOffsetHead

__all__ = ['DeformableConv2d', 'BaseOffsetHead', 'ConvOffsetHead', 'SeparableOffsetHead',
           'deformable_layers']
