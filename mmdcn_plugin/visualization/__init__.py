"""Pictures of deformable layers: sampling locations, responses, detections."""
from .offsets import (LayerCapture, TracedPoint, capture_layers, check_layer_name,
                      deformable_layers, init_model, read_image, save_figures, trace_image_point,
                      trace_sampling_points, visualize_offsets, zero_offsets)

__all__ = ['LayerCapture', 'TracedPoint', 'capture_layers', 'check_layer_name',
           'deformable_layers', 'init_model',
           'read_image', 'save_figures', 'trace_image_point', 'trace_sampling_points',
           'visualize_offsets', 'zero_offsets']
