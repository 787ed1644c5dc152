"""Model analysis: FLOPs that count deformable convolution."""
from .flops import (DEFORM_CONV_FLOP_HANDLES, DeformableFlopAnalyzer, DeformConv2dCountingOp,
                    deform_conv2d_flops, deform_conv_as_one_op, deformable_layer_flops,
                    detector_complexity_info, dummy_detector_inputs,
                    get_model_complexity_info)
from .table import format_deformable_table

__all__ = ['DeformableFlopAnalyzer', 'DeformConv2dCountingOp', 'DEFORM_CONV_FLOP_HANDLES',
           'deform_conv2d_flops', 'deform_conv_as_one_op', 'deformable_layer_flops',
           'get_model_complexity_info', 'detector_complexity_info', 'dummy_detector_inputs',
           'format_deformable_table']
