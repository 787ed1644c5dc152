"""Pictures of what deformable layers do: where they sample, and what that changes.

:func:`visualize_offsets` makes three figures for one image (all in the original
image's pixels):

* ``sampling_points``: for a few activation points, the locations that the last
  ``num_layers`` stacked deformable layers sample, traced back to the image (DCNv1
  paper, Fig. 5: three stacked 3x3 layers give 9^3 = 729 points), next to the
  regular grid that the same layers sample with zero offsets (standard convs).
* ``feature_response``: the response of one deformable layer (channel mean of
  ``|y|``) next to the response of the same layer with its offsets zeroed (a plain
  conv with the same weights; a DCNv2 layer keeps its mask) on the same input.
* ``detections`` (optional, meaningful with trained weights): the detector's boxes
  with its deformable layers as they are, and with every layer's offsets zeroed.

The work is split by job, and this module only puts it together:
:mod:`.capture` (hooks that record a layer's input size, offsets, masks and
output; zeroing offsets), :mod:`.trace` (the sampling-point maths, how a point is
traced), :mod:`.draw` (the figures) and :mod:`.inference` (model, image,
inference).  Their public names stay importable from here.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from torch import nn

from ..layers import deformable_layers
from .capture import LayerCapture, capture_layers, check_layer_name, zero_offsets
from .draw import draw_detections, draw_feature_response, draw_sampling_points, save_figures
from .inference import class_names, infer_image, init_model, read_image
from .trace import (ImageFrame, TracedPoint, cell_in_input, trace_image_point,
                    trace_sampling_points)

__all__ = ['visualize_offsets', 'LayerCapture', 'TracedPoint', 'capture_layers',
           'check_layer_name', 'deformable_layers', 'init_model', 'read_image', 'save_figures',
           'trace_image_point', 'trace_sampling_points', 'zero_offsets']


def _peaks(heat: np.ndarray, count: int) -> List[Tuple[int, int]]:
    """The ``count`` strongest cells, at least 2 cells apart (y, x)."""
    order = np.argsort(heat.reshape(-1))[::-1]
    picked: List[Tuple[int, int]] = []
    for flat in order:
        y, x = divmod(int(flat), heat.shape[1])
        if all(max(abs(y - py), abs(x - px)) >= 2 for py, px in picked):
            picked.append((y, x))
        if len(picked) == count:
            break
    return picked


def visualize_offsets(model: nn.Module, image: Union[str, np.ndarray], *,
                      cfg=None, layer: Optional[str] = None,
                      points: Optional[Sequence[Sequence[float]]] = None,
                      num_layers: int = 3, num_points: int = 3,
                      detections: bool = False, score_thr: float = 0.3,
                      note: str = '') -> Dict[str, 'object']:
    """Figures comparing deformable layers with plain convolutions on one image.

    Args:
        model (nn.Module): a detector in eval mode, e.g. from :func:`init_model`
            (it carries its config) or a training model with ``cfg`` given.
        image (str or ndarray[H, W, 3] BGR): the image.
        cfg (Config or None): the config, when ``model`` has no ``cfg``.
        layer (str or None): deformable layer (module path) whose response is shown
            and at which the trace ends. Default: the last one.
        points (sequence of (x, y) or None): activation points in image pixels.
            Default: detection centres when ``detections`` finds some, else the
            strongest responses of ``layer``.
        num_layers (int): how many deformable layers (ending at ``layer``) to trace.
        num_points (int): how many points to pick automatically.
        detections (bool): add the detections figure (needs trained weights to
            mean anything).
        score_thr (float): minimum score of the boxes drawn and of detection points.
        note (str): text added to every figure's title (e.g. the checkpoint).

    Returns:
        dict of matplotlib figures: ``sampling_points``, ``feature_response`` and,
        with ``detections``, ``detections``.
    """
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f'num_layers must be a positive int, got {num_layers!r}')
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
        raise ValueError(f'num_points must be a positive int, got {num_points!r}')
    if points is not None:
        points = list(points)
        for p in points:
            if (not isinstance(p, (tuple, list, np.ndarray)) or len(p) != 2
                    or not all(isinstance(v, (int, float, np.number)) for v in p)):
                raise ValueError(f'points must be (x, y) pairs in image pixels, got {p!r}')
    layer = check_layer_name(model, layer)
    img = read_image(image)

    with capture_layers(model, keep_output=[layer]) as captures:
        result = infer_image(model, img, cfg)
    with zero_offsets(model, [layer]), capture_layers(model, keep_output=[layer]) as plain:
        infer_image(model, img, cfg)
    plain_result = None
    if detections:
        with zero_offsets(model):
            plain_result = infer_image(model, img, cfg)

    called = [c.name for c in captures]
    if layer not in called:
        raise ValueError(f'layer {layer!r} did not run during inference (it may belong to '
                         f'a training-only branch); layers that ran: {called}')
    index = called.index(layer)
    chain = captures[max(0, index - num_layers + 1):index + 1]
    target = captures[index]
    plain_target = next(c for c in plain if c.name == layer)
    metainfo = result.metainfo
    frame = ImageFrame(metainfo)
    all_zero = all(bool((c.offset == 0).all()) for c in chain)

    if points is not None:
        traced = [trace_image_point(chain, p, metainfo) for p in points]
    else:
        candidates = []
        if detections:
            inst = result.pred_instances
            keep = inst.scores >= score_thr
            candidates = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
                          for b in inst.bboxes[keep].tolist()]
        if not candidates:
            for y, x in _peaks(target.response_map(), num_points):
                cell_in = cell_in_input(target, np.array([[y, x]], dtype=np.float64))
                candidates.append(tuple(frame.grid_to_image(cell_in, target.input_size)[0]))
        # Points snap to output cells: several boxes may share one; keep distinct cells.
        traced = []
        for p in candidates:
            t = trace_image_point(chain, p, metainfo)
            if not any(np.array_equal(t.activation_xy, u.activation_xy) for u in traced):
                traced.append(t)
            if len(traced) == num_points:
                break

    zero_note = ('ALL OFFSETS ARE ZERO (untrained or no checkpoint): '
                 'deformable = regular' if all_zero else '')
    figures = dict(
        sampling_points=draw_sampling_points(img, traced, chain, zero_note, note),
        feature_response=draw_feature_response(img, frame, target, plain_target, zero_note, note))
    if detections:
        figures['detections'] = draw_detections(img, result, plain_result,
                                                class_names(model, cfg), score_thr,
                                                zero_note, note)
    return figures
