"""Pictures of deformable layers: sampling locations, responses, detections.

Split by job: :mod:`.capture` (record layers, zero offsets), :mod:`.trace`
(sampling-point maths), :mod:`.draw` (figures), :mod:`.inference` (model, image,
inference) and :mod:`.offsets` (:func:`visualize_offsets`, which puts them together).
"""
from ..layers import deformable_layers
from .capture import LayerCapture, capture_layers, check_layer_name, zero_offsets
from .draw import draw_detections, draw_feature_response, draw_sampling_points, save_figures
from .inference import class_names, init_model, read_image, run_inference
from .offsets import visualize_offsets
from .trace import (ImageFrame, TracedPoint, cell_in_input, trace_image_point,
                    trace_sampling_points)

__all__ = ['LayerCapture', 'capture_layers', 'check_layer_name', 'zero_offsets',
           'TracedPoint', 'ImageFrame', 'cell_in_input', 'trace_image_point',
           'trace_sampling_points', 'draw_sampling_points', 'draw_feature_response',
           'draw_detections', 'save_figures', 'init_model', 'read_image', 'run_inference',
           'class_names', 'deformable_layers', 'visualize_offsets']
