"""Sampling-point maths: where stacked deformable layers sample, in feature grids and image pixels.

Numpy on :class:`~.capture.LayerCapture` records; no model, no drawing.  Where one
layer samples, and its offset layout, come from the op's own definition
(:func:`mmdcn_plugin.ops.sampling_points`).

How points are traced (:func:`trace_sampling_points`): the activation point is
mapped to the nearest cell of the last layer's output grid.  A layer with kernel
``kh x kw``, stride ``s``, padding ``p`` and dilation ``d`` samples, for output
cell ``o``, the input locations ``o*s - p + k*d + offset_k(o)``.  A location
``q`` between cells (carried from a later layer) samples those of its nearest cell
``o``, shifted by ``(q - o) * s``: the offsets are taken at the nearest cell, of
group 0 for layers with several deform groups unless told otherwise.  Each
location is then carried into the previous deformable layer's output grid.  When
something between the two layers changed the resolution (a strided 1x1 conv, a
stride in the residual path), the location is multiplied by that stride, inferred
from the measured sizes as ``round(H_out_prev / H_in)``: a strided convolution
maps its output cell ``o`` to input cell ``o * s``, so corner alignment is exact
for conv downsampling.  Finally (:class:`ImageFrame`) the first traced layer's
input grid is scaled to the network input by ``H_net / H_in`` (the padded input
size over the map size; MMDetection pads to a multiple of 32, so this is the exact
stride) and divided by the test pipeline's resize factor.

Coordinates are ``(y, x)`` in feature grids and ``(x, y)`` in image pixels (the
order of matplotlib and of MMDetection's boxes).
"""
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
import torch

from ..ops.sampling_rules import sampling_points
from .capture import LayerCapture

Pair = Tuple[int, int]


def _nearest_cell(pos: np.ndarray, size: Pair) -> Tuple[np.ndarray, np.ndarray]:
    iy = np.clip(np.rint(pos[:, 0]), 0, size[0] - 1).astype(np.int64)
    ix = np.clip(np.rint(pos[:, 1]), 0, size[1] - 1).astype(np.int64)
    return iy, ix


def _stride_between(prev_output: Pair, next_input: Pair) -> np.ndarray:
    """Per axis, the factor from ``next_input`` grid to ``prev_output`` grid.

    An integer stride when the map shrank (``round(prev / next)``), its inverse when
    it grew; 1 when the sizes match.
    """
    factors = []
    for prev, nxt in zip(prev_output, next_input):
        if prev >= nxt:
            factors.append(float(max(1, round(prev / nxt))))
        else:
            factors.append(1.0 / max(1, round(nxt / prev)))
    return np.array(factors)


def trace_sampling_points(layers: Sequence[LayerCapture], start_yx: Sequence[float],
                          regular: bool = False, deform_group: int = 0) -> np.ndarray:
    """Sampling locations of stacked deformable layers, in the first layer's input grid.

    Args:
        layers (sequence of LayerCapture): consecutive deformable layers in forward
            order; the trace starts at the last one.
        start_yx ((y, x)): a cell of the last layer's output grid (rounded to the
            nearest cell for the offset look-up).
        regular (bool): ignore the offsets (what standard convs would sample).
        deform_group (int): which group's offsets to follow.

    Returns:
        ndarray[prod(kh*kw), 2] of (y, x) in ``layers[0]``'s input grid; the last
        layer's kernel point is the slowest-varying index.

    Raises:
        ValueError: ``layers`` is empty, or ``deform_group`` is not a group of
            every layer.
    """
    if not layers:
        raise ValueError('layers must hold at least one LayerCapture, got none')
    pos = np.asarray([start_yx], dtype=np.float64)                   # [M, 2] output grid
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        kh, kw = layer.kernel_size
        if not 0 <= deform_group < layer.deform_groups:
            raise ValueError(f'deform_group must be in [0, {layer.deform_groups}) for layer '
                             f'{layer.name!r}, got {deform_group}')
        offset = layer.offset[None].to(torch.float64)               # [1, 2*G*K, H, W]
        if regular:
            offset = torch.zeros_like(offset)
        ys, xs = sampling_points(offset, (kh, kw), layer.stride, layer.padding,
                                 layer.dilation, dtype=torch.float64)  # [1, G, K, H, W]
        iy, ix = _nearest_cell(pos, layer.output_size)
        shift = (pos - np.stack((iy, ix), 1)) * np.array(layer.stride)  # [M, 2]
        y = ys[0, deform_group].numpy()[:, iy, ix].T + shift[:, 0:1]   # [M, K]
        x = xs[0, deform_group].numpy()[:, iy, ix].T + shift[:, 1:2]
        pos = np.stack((y.reshape(-1), x.reshape(-1)), 1)           # [M*K, 2] input grid
        if i > 0:
            pos = pos * _stride_between(layers[i - 1].output_size, layer.input_size)
    return pos


@dataclass
class TracedPoint:
    """One activation point and what it sees, in original image pixels.

    Attributes:
        activation_xy (ndarray[2]): the output cell the point snapped to, (x, y).
        regular_xy (ndarray[M, 2]): the locations with every offset ignored, (x, y).
        deformable_xy (ndarray[M, 2]): the locations the layers really sample, (x, y);
            ``M = prod(kh * kw)`` over the traced layers (729 for three 3x3 layers).
    """

    activation_xy: np.ndarray
    regular_xy: np.ndarray
    deformable_xy: np.ndarray


class ImageFrame:
    """Conversions between a feature grid and original image pixels.

    Args:
        metainfo (dict): a ``DetDataSample``'s metainfo: ``batch_input_shape`` (else
            ``pad_shape``, else ``img_shape``) is the padded network input ``(H, W)``;
            ``scale_factor`` is the test pipeline's resize factor ``(w_scale,
            h_scale)``, 1 when absent.
    """

    def __init__(self, metainfo: dict):
        self.net = tuple(metainfo.get('batch_input_shape') or metainfo.get('pad_shape')
                         or metainfo['img_shape'])[:2]
        scale = metainfo.get('scale_factor', (1.0, 1.0))
        self.scale = np.array([float(scale[0]), float(scale[1])])   # (w, h)

    def grid_to_image(self, yx: np.ndarray, size: Pair) -> np.ndarray:
        """``ndarray[M, 2]`` (y, x) in an ``H x W`` grid -> ``ndarray[M, 2]`` (x, y) pixels."""
        y = yx[:, 0] * self.net[0] / size[0] / self.scale[1]
        x = yx[:, 1] * self.net[1] / size[1] / self.scale[0]
        return np.stack((x, y), 1)

    def image_to_grid(self, xy: Sequence[float], size: Pair) -> Tuple[float, float]:
        """One (x, y) in image pixels -> (y, x) in an ``H x W`` grid."""
        y = xy[1] * self.scale[1] * size[0] / self.net[0]
        x = xy[0] * self.scale[0] * size[1] / self.net[1]
        return y, x

    def extent(self) -> Tuple[float, float, float, float]:
        """imshow extent (left, right, bottom, top) of the padded input, image pixels."""
        return (-0.5, self.net[1] / self.scale[0] - 0.5, self.net[0] / self.scale[1] - 0.5,
                -0.5)


def cell_in_input(layer: LayerCapture, cell: np.ndarray) -> np.ndarray:
    """Where output cells ``ndarray[M, 2]`` (y, x) sit in the input grid: the kernel's centre."""
    centre = np.array([(layer.kernel_size[0] - 1) * layer.dilation[0] / 2,
                       (layer.kernel_size[1] - 1) * layer.dilation[1] / 2])
    return cell * np.array(layer.stride) - np.array(layer.padding) + centre


def trace_image_point(chain: Sequence[LayerCapture], point_xy: Sequence[float],
                      metainfo: dict) -> TracedPoint:
    """Trace an activation point given in image pixels through ``chain``.

    Args:
        chain (sequence of LayerCapture): consecutive deformable layers, forward order.
        point_xy ((x, y)): in original image pixels.
        metainfo (dict): the inference result's metainfo (see :class:`ImageFrame`).

    The point snaps to the nearest output cell of ``chain[-1]``; the returned
    ``activation_xy`` is that cell in image pixels.
    """
    frame = ImageFrame(metainfo)
    last, first = chain[-1], chain[0]
    y, x = frame.image_to_grid(point_xy, last.output_size)
    cell = np.array([[np.clip(round(y), 0, last.output_size[0] - 1),
                      np.clip(round(x), 0, last.output_size[1] - 1)]], dtype=np.float64)
    activation = frame.grid_to_image(cell_in_input(last, cell), last.input_size)[0]
    regular = trace_sampling_points(chain, cell[0], regular=True)
    deformable = trace_sampling_points(chain, cell[0])
    return TracedPoint(activation, frame.grid_to_image(regular, first.input_size),
                       frame.grid_to_image(deformable, first.input_size))
