"""Pictures of deformable layers: sampling locations, responses, detections.

Split by job: :mod:`.capture` (record layers, zero offsets), :mod:`.trace`
(sampling-point maths), :mod:`.draw` (figures), :mod:`.inference` (model, image,
inference) and :mod:`.offsets` (:func:`visualize_offsets`, which puts them together).
"""
from ..layers import deformable_layers
from ..utils.deprecation import deprecated_aliases
from .capture import LayerCapture, capture_layers, check_layer_name, zero_offsets
from .draw import draw_detections, draw_feature_response, draw_sampling_points, save_figures
from .inference import class_names, infer_image, init_model, read_image
from .offsets import visualize_offsets
from .trace import (ImageFrame, TracedPoint, cell_in_input, trace_image_point,
                    trace_sampling_points)

__all__ = ['LayerCapture', 'capture_layers', 'check_layer_name', 'zero_offsets',
           'TracedPoint', 'ImageFrame', 'cell_in_input', 'trace_image_point',
           'trace_sampling_points', 'draw_sampling_points', 'draw_feature_response',
           'draw_detections', 'save_figures', 'init_model', 'read_image', 'infer_image',
           'class_names', 'deformable_layers', 'visualize_offsets']

# infer_image was exported as run_inference, the name of the other inference job.
__getattr__ = deprecated_aliases(__name__, {'run_inference': (
    infer_image,
    'mmdcn_plugin.visualization.run_inference is deprecated: it is infer_image (one image, '
    'a built model); mmdcn_plugin.apis.inference.run_inference runs a config on image '
    'files')})
