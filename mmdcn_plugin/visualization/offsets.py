"""Pictures of what deformable layers do: where they sample, and what that changes.

Three figures for one image (all in the original image's pixels):

* ``sampling_points``: for a few activation points, the locations that the last
  ``num_layers`` stacked deformable layers sample, traced back to the image (DCNv1
  paper, Fig. 5: three stacked 3x3 layers give 9^3 = 729 points), next to the
  regular grid that the same layers sample with zero offsets (standard convs).
* ``feature_response``: the response of one deformable layer (channel mean of
  ``|y|``) next to the response of the same layer with its offsets zeroed (a plain
  conv with the same weights; a DCNv2 layer keeps its mask) on the same input.
* ``detections`` (optional, meaningful with trained weights): the detector's boxes
  with its deformable layers as they are, and with every layer's offsets zeroed.

How points are traced (:func:`trace_sampling_points`): the activation point is
mapped to the nearest cell of the last layer's output grid.  A layer with kernel
``kh x kw``, stride ``s``, padding ``p`` and dilation ``d`` samples, for output
cell ``o``, the input locations ``o*s - p + k*d + offset_k(o)`` (``offset`` taken
at the nearest output cell, group 0 for layers with several deform groups).  Each
location is then carried into the previous deformable layer's output grid.  When
something between the two layers changed the resolution (a strided 1x1 conv, a
stride in the residual path), the location is multiplied by that stride, inferred
from the measured sizes as ``round(H_out_prev / H_in)``: a strided convolution
maps its output cell ``o`` to input cell ``o * s``, so corner alignment is exact
for conv downsampling.  Finally the first traced layer's input grid is scaled to
the network input by ``H_net / H_in`` (the padded input size over the map size;
MMDetection pads to a multiple of 32, so this is the exact stride) and divided by
the test pipeline's resize factor.

Figures are ``matplotlib.figure.Figure`` objects made without pyplot: no GUI
backend is touched, and a notebook displays them as they are.  matplotlib is
imported on first use.
"""
import os
import os.path as osp
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn
from mmengine.model import is_model_wrapper

from ..layers import DeformableConv2d

Pair = Tuple[int, int]


@dataclass
class LayerCapture:
    """What one call of a deformable layer looked like, for image 0 of the batch.

    Attributes:
        name (str): module path, e.g. ``backbone.layer4.2.conv2``.
        input_size, output_size ((H, W)): the layer's input and output maps.
        kernel_size, stride, padding, dilation ((int, int)): its geometry.
        offset (Tensor[2*G*kh*kw, H_out, W_out]): (dy, dx) per group and kernel point.
        mask (Tensor[G*kh*kw, H_out, W_out] or None): DCNv2 masks.
        output (Tensor[C_out, H_out, W_out] or None): the layer's output, when kept.
    """

    name: str
    input_size: Pair
    output_size: Pair
    kernel_size: Pair
    stride: Pair
    padding: Pair
    dilation: Pair
    offset: Tensor
    mask: Optional[Tensor] = None
    output: Optional[Tensor] = None

    @property
    def deform_groups(self) -> int:
        return self.offset.shape[0] // (2 * self.kernel_size[0] * self.kernel_size[1])


def deformable_layers(model: nn.Module) -> List[Tuple[str, DeformableConv2d]]:
    """``(module path, layer)`` of every :class:`DeformableConv2d`, wrappers unwrapped."""
    if is_model_wrapper(model):
        model = model.module
    return [(name, m) for name, m in model.named_modules() if isinstance(m, DeformableConv2d)]


def check_layer_name(model: nn.Module, layer: Optional[str]) -> str:
    """``layer`` if it names a deformable layer of ``model``; the last one if None.

    Raises:
        ValueError: the model has no deformable layer, or ``layer`` is not one.
    """
    names = [name for name, _ in deformable_layers(model)]
    if not names:
        raise ValueError('no deformable layer found: the model has no DeformableConv2d')
    if layer is None:
        return names[-1]
    if layer not in names:
        raise ValueError(f'unknown layer {layer!r}: expected the module path of a '
                         f'deformable layer, one of {names}')
    return layer


@contextmanager
def zero_offsets(model: nn.Module, names: Optional[Sequence[str]] = None) -> Iterator[None]:
    """Make deformable layers sample their regular grid (offsets zeroed, masks kept).

    Each chosen layer then computes a plain convolution with its own weights
    (times its DCNv2 mask).  Implemented as forward hooks on the offset heads
    that replace the offsets by zeros; removed on exit.

    Args:
        model (nn.Module): the model (wrappers are unwrapped).
        names (sequence of str or None): module paths; None zeroes every layer.
    """
    handles = []

    def zero(head, inputs, output):
        offset, mask = output
        return torch.zeros_like(offset), mask

    try:
        for name, layer in deformable_layers(model):
            if names is None or name in names:
                handles.append(layer.offset_head.register_forward_hook(zero))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def capture_layers(model: nn.Module, keep_output: Sequence[str] = ()
                   ) -> Iterator[List[LayerCapture]]:
    """Record every deformable layer's first call while the block runs.

    Yields the list that fills up in forward order.  Only the first call of each
    layer is kept (a head shared across FPN levels runs once per level).

    Args:
        keep_output (sequence of str): layers whose output to keep as well.
    """
    captures: List[LayerCapture] = []
    seen = set()
    pending: Dict[str, tuple] = {}
    handles = []

    def on_head(name, layer):
        def hook(head, inputs, output):
            if name not in seen:
                offset, mask = output
                pending[name] = (tuple(inputs[0].shape[-2:]), offset[0].detach().float().cpu(),
                                 None if mask is None else mask[0].detach().float().cpu())
        return hook

    def on_layer(name, layer):
        def hook(module, inputs, output):
            if name in seen or name not in pending:
                return
            seen.add(name)
            input_size, offset, mask = pending.pop(name)
            captures.append(LayerCapture(
                name, input_size, tuple(output.shape[-2:]), layer.kernel_size, layer.stride,
                layer.padding, layer.dilation, offset, mask,
                output[0].detach().float().cpu() if name in keep_output else None))
        return hook

    try:
        for name, layer in deformable_layers(model):
            handles.append(layer.offset_head.register_forward_hook(on_head(name, layer)))
            handles.append(layer.register_forward_hook(on_layer(name, layer)))
        yield captures
    finally:
        for h in handles:
            h.remove()


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
        ky = np.repeat(np.arange(kh), kw) * layer.dilation[0]         # [K]
        kx = np.tile(np.arange(kw), kh) * layer.dilation[1]
        base_y = pos[:, 0:1] * layer.stride[0] - layer.padding[0] + ky[None]   # [M, K]
        base_x = pos[:, 1:2] * layer.stride[1] - layer.padding[1] + kx[None]
        if not regular:
            iy, ix = _nearest_cell(pos, layer.output_size)
            k = kh * kw
            off = layer.offset.numpy().reshape(layer.deform_groups, k, 2, *layer.output_size)
            off = off[deform_group][:, :, iy, ix]                   # [K, 2, M]
            base_y = base_y + off[:, 0].T
            base_x = base_x + off[:, 1].T
        pos = np.stack((base_y.reshape(-1), base_x.reshape(-1)), 1)  # [M*K, 2] input grid
        if i > 0:
            pos = pos * _stride_between(layers[i - 1].output_size, layer.input_size)
    return pos


@dataclass
class TracedPoint:
    """One activation point and what it sees, in original image pixels (x, y)."""

    activation_xy: np.ndarray        # [2]
    regular_xy: np.ndarray           # [M, 2]
    deformable_xy: np.ndarray        # [M, 2]


class _ImageFrame:
    """Conversions between a feature grid and original image pixels.

    ``net`` is the padded network input (H, W); ``scale`` the resize factor
    (w_scale, h_scale) of the test pipeline, as in MMDetection's metainfo.
    """

    def __init__(self, metainfo: dict):
        self.net = tuple(metainfo.get('batch_input_shape') or metainfo.get('pad_shape')
                         or metainfo['img_shape'])[:2]
        scale = metainfo.get('scale_factor', (1.0, 1.0))
        self.scale = np.array([float(scale[0]), float(scale[1])])   # (w, h)

    def grid_to_image(self, yx: np.ndarray, size: Pair) -> np.ndarray:
        y = yx[:, 0] * self.net[0] / size[0] / self.scale[1]
        x = yx[:, 1] * self.net[1] / size[1] / self.scale[0]
        return np.stack((x, y), 1)

    def image_to_grid(self, xy: Sequence[float], size: Pair) -> Tuple[float, float]:
        y = xy[1] * self.scale[1] * size[0] / self.net[0]
        x = xy[0] * self.scale[0] * size[1] / self.net[1]
        return y, x

    def extent(self) -> Tuple[float, float, float, float]:
        """imshow extent (left, right, bottom, top) of the padded input, image pixels."""
        return (-0.5, self.net[1] / self.scale[0] - 0.5, self.net[0] / self.scale[1] - 0.5,
                -0.5)


def _cell_in_input(layer: LayerCapture, cell: np.ndarray) -> np.ndarray:
    """Where output cells ``[M, 2]`` (y, x) sit in the input grid: the kernel's centre."""
    centre = np.array([(layer.kernel_size[0] - 1) * layer.dilation[0] / 2,
                       (layer.kernel_size[1] - 1) * layer.dilation[1] / 2])
    return cell * np.array(layer.stride) - np.array(layer.padding) + centre


def trace_image_point(chain: Sequence[LayerCapture], point_xy: Sequence[float],
                      metainfo: dict) -> TracedPoint:
    """Trace an activation point given in image pixels through ``chain``.

    The point snaps to the nearest output cell of ``chain[-1]``; the returned
    ``activation_xy`` is that cell in image pixels.
    """
    frame = _ImageFrame(metainfo)
    last, first = chain[-1], chain[0]
    y, x = frame.image_to_grid(point_xy, last.output_size)
    cell = np.array([[np.clip(round(y), 0, last.output_size[0] - 1),
                      np.clip(round(x), 0, last.output_size[1] - 1)]], dtype=np.float64)
    activation = frame.grid_to_image(_cell_in_input(last, cell), last.input_size)[0]
    regular = trace_sampling_points(chain, cell[0], regular=True)
    deformable = trace_sampling_points(chain, cell[0])
    return TracedPoint(activation, frame.grid_to_image(regular, first.input_size),
                       frame.grid_to_image(deformable, first.input_size))


def _heat(output: Tensor) -> np.ndarray:
    """Channel mean of |y|: Tensor[C, H, W] -> ndarray[H, W]."""
    return output.abs().mean(0).numpy()


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


def read_image(image: Union[str, np.ndarray]) -> np.ndarray:
    """BGR uint8 ``ndarray[H, W, 3]`` from a path (or an array, passed through).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is not an image OpenCV can decode.
    """
    import mmcv
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'image array must be [H, W, 3] (BGR), got shape {image.shape}')
        return image
    if not isinstance(image, (str, os.PathLike)):
        raise TypeError(f'image must be a path or an ndarray, got {type(image).__name__}')
    path = os.fspath(image)
    if not osp.isfile(path):
        raise FileNotFoundError(f'image {path!r} does not exist')
    img = mmcv.imread(path, channel_order='bgr')
    if img is None:
        raise ValueError(f'image {path!r} could not be read: not an image file OpenCV can '
                         'decode (expected e.g. PNG or JPEG)')
    return img


def _infer(model: nn.Module, image: np.ndarray, cfg=None):
    """``mmdet.apis.inference_detector`` on one image; ``cfg`` when the model has none."""
    from mmdet.apis import inference_detector
    if is_model_wrapper(model):
        model = model.module
    added = False
    if getattr(model, 'cfg', None) is None:
        if cfg is None:
            raise ValueError('the model has no .cfg (it was not built by init_detector): '
                             'pass cfg, the config with its test pipeline')
        model.cfg, added = cfg, True
    try:
        return inference_detector(model, image)
    finally:
        if added:
            del model.cfg


def _class_names(model: nn.Module, cfg=None) -> Sequence[str]:
    """The model's class names, else the config's test dataset's, else none."""
    if is_model_wrapper(model):
        model = model.module
    meta = getattr(model, 'dataset_meta', None) or {}
    if meta.get('classes'):
        return meta['classes']
    cfg = cfg if cfg is not None else getattr(model, 'cfg', None)
    try:
        return tuple(cfg.test_dataloader.dataset.metainfo.classes)
    except (AttributeError, KeyError, TypeError):
        return ()


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
        result = _infer(model, img, cfg)
    with zero_offsets(model, [layer]), capture_layers(model, keep_output=[layer]) as plain:
        _infer(model, img, cfg)
    plain_result = None
    if detections:
        with zero_offsets(model):
            plain_result = _infer(model, img, cfg)

    called = [c.name for c in captures]
    if layer not in called:
        raise ValueError(f'layer {layer!r} did not run during inference (it may belong to '
                         f'a training-only branch); layers that ran: {called}')
    index = called.index(layer)
    chain = captures[max(0, index - num_layers + 1):index + 1]
    target = captures[index]
    plain_target = next(c for c in plain if c.name == layer)
    metainfo = result.metainfo
    frame = _ImageFrame(metainfo)
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
            for y, x in _peaks(_heat(target.output), num_points):
                cell_in = _cell_in_input(target, np.array([[y, x]], dtype=np.float64))
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
        sampling_points=_draw_sampling_points(img, traced, chain, zero_note, note),
        feature_response=_draw_responses(img, frame, target, plain_target, zero_note, note))
    if detections:
        figures['detections'] = _draw_detections(img, result, plain_result,
                                                 _class_names(model, cfg), score_thr,
                                                 zero_note, note)
    return figures


_COLOURS = ('#e41a1c', '#377eb8', '#4daf4a', '#984ea3', '#ff7f00', '#a65628')


def _title(fig, text: str, zero_note: str, note: str) -> None:
    lines = [text] + [t for t in (note,) if t]
    fig.suptitle('\n'.join(lines), fontsize=11)
    if zero_note:
        fig.text(0.5, 0.01, zero_note, ha='center', va='bottom', color='red',
                 fontsize=11, fontweight='bold')


def _rgb(img: np.ndarray) -> np.ndarray:
    return img[..., ::-1]


def _draw_sampling_points(img, traced: List[TracedPoint], chain, zero_note, note):
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    rows = max(1, len(traced))
    height = 4.6 * rows + 1.6          # inches: rows of square panels, title, legend
    fig = Figure(figsize=(10, height))
    axes = np.asarray(fig.subplots(rows, 2, squeeze=False))
    h, w = img.shape[:2]
    count = int(np.prod([c.kernel_size[0] * c.kernel_size[1] for c in chain]))
    for row, t in enumerate(traced):
        colour = _COLOURS[row % len(_COLOURS)]
        for ax, kind in zip(axes[row], ('regular', 'deformable')):
            pts = t.regular_xy if kind == 'regular' else t.deformable_xy
            ax.imshow(_rgb(img))
            # Stacked regular grids repeat locations: 729 points fall on far fewer
            # pixels, so dots are translucent and darker where they pile up.
            ax.scatter(pts[:, 0], pts[:, 1], s=9, c=colour, alpha=0.35, linewidths=0)
            ax.scatter([t.activation_xy[0]], [t.activation_xy[1]], s=260, marker='*',
                       c='yellow', edgecolors='black', linewidths=1.0, zorder=3)
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            inside = int(((pts[:, 0] >= -0.5) & (pts[:, 0] <= w - 0.5) & (pts[:, 1] >= -0.5)
                          & (pts[:, 1] <= h - 0.5)).sum())
            head = ('standard conv: regular grid' if kind == 'regular'
                    else 'deformable conv: with offsets')
            ax.set_title(f'{head}\npoint ({t.activation_xy[0]:.0f}, {t.activation_xy[1]:.0f})'
                         f' px: {inside}/{len(pts)} locations inside the image', fontsize=9)
    handles = [Line2D([], [], marker='*', ls='', color='yellow', markeredgecolor='black',
                      markersize=14, label='activation point'),
               Line2D([], [], marker='o', ls='', color='grey', markersize=4,
                      label=f'sampling locations ({count} per point)')]
    fig.legend(handles=handles, loc='lower center', ncol=2, fontsize=9,
               bbox_to_anchor=(0.5, 0.03 if zero_note else 0.0))
    names = chain[0].name if len(chain) == 1 else f'{chain[0].name} ... {chain[-1].name}'
    _title(fig, f'Sampling locations of {len(chain)} stacked deformable layer(s)\n'
                f'({names}), traced to image pixels', zero_note, note)
    fig.tight_layout(rect=(0, 0.7 / height, 1, 1 - 0.9 / height))
    return fig


def _draw_responses(img, frame: _ImageFrame, target: LayerCapture, plain: LayerCapture,
                    zero_note, note):
    from matplotlib.figure import Figure

    deform, regular = _heat(target.output), _heat(plain.output)
    diff = np.abs(deform - regular)
    vmax = max(float(deform.max()), float(regular.max()), 1e-12)
    # A zero (or rounding-size) difference is drawn on the responses' scale, so it
    # reads as nothing instead of as noise stretched to full colour.
    diff_top = float(diff.max()) if diff.max() > 1e-6 * vmax else vmax
    fig = Figure(figsize=(15, 5.6))
    axes = fig.subplots(1, 3)
    h, w = img.shape[:2]
    panels = ((deform, 'deformable (learned offsets)', vmax, 'viridis'),
              (regular, 'same layer, offsets zeroed (plain conv)', vmax, 'viridis'),
              (diff, f'|difference| (max {float(diff.max()):.3g})', diff_top, 'magma'))
    for ax, (heat, title, top, cmap) in zip(axes, panels):
        ax.imshow(_rgb(img), alpha=0.45)
        im = ax.imshow(heat, extent=frame.extent(), cmap=cmap, vmin=0, vmax=top, alpha=0.75,
                       interpolation='nearest')
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    _title(fig, f'Response of {target.name} (channel mean of |output|, '
                f'{target.output_size[0]}x{target.output_size[1]} map)', zero_note, note)
    fig.tight_layout(rect=(0, 0.04, 1, 0.92))
    return fig


def _draw_detections(img, result, plain_result, classes, score_thr, zero_note, note,
                     max_boxes: int = 20):
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=(12, 6.6))
    axes = fig.subplots(1, 2)
    for ax, res, title in ((axes[0], result, 'deformable layers as trained'),
                           (axes[1], plain_result, 'all offsets zeroed (plain convs)')):
        ax.imshow(_rgb(img))
        inst = res.pred_instances
        keep = inst.scores >= score_thr
        total = int(keep.sum())
        # Boxes come sorted by score; more than a few dozen hide the image.
        boxes = inst.bboxes[keep][:max_boxes].tolist()
        for box, label, score in zip(boxes, inst.labels[keep][:max_boxes].tolist(),
                                     inst.scores[keep][:max_boxes].tolist()):
            colour = _COLOURS[label % len(_COLOURS)]
            ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1],
                                   fill=False, edgecolor=colour, linewidth=1.5))
            name = classes[label] if label < len(classes) else f'class {label}'
            ax.text(box[0], box[1], f'{name} {score:.2f}', color='white', fontsize=7,
                    va='bottom', bbox=dict(facecolor=colour, alpha=0.8, pad=1, lw=0))
        ax.set_xticks([])
        ax.set_yticks([])
        shown = f'top {len(boxes)} of ' if len(boxes) < total else ''
        ax.set_title(f'{title}\n{shown}{total} boxes with score >= {score_thr}', fontsize=10)
    _title(fig, 'Detections', zero_note, note)
    fig.tight_layout(rect=(0, 0.04, 1, 0.93))
    return fig


def save_figures(figures: Dict[str, 'object'], out_dir: str, prefix: str = '') -> List[str]:
    """Write each figure as ``out_dir/<prefix><name>.png``; return the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, fig in figures.items():
        path = osp.join(out_dir, f'{prefix}{name}.png')
        fig.savefig(path, dpi=100)
        paths.append(path)
    return paths


def init_model(config: str, checkpoint: Optional[str] = None, device: str = 'cpu'):
    """``mmdet.apis.init_detector``, checked to hold deformable layers.

    Class names come from the checkpoint's meta, else from the config's test
    dataset (``metainfo.classes``), instead of COCO's.

    Raises:
        FileNotFoundError: ``config`` or ``checkpoint`` does not exist.
        ValueError: the model built from ``config`` has no DeformableConv2d.
    """
    import warnings
    import mmdcn_plugin  # noqa: F401  (registers the layers)
    from mmdet.apis import init_detector
    from mmengine.config import Config

    if not osp.isfile(config):
        raise FileNotFoundError(f'config {config!r} does not exist')
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint!r} does not exist')
    cfg = Config.fromfile(config)
    with warnings.catch_warnings(record=True):
        # init_detector warns that it falls back to COCO's class names (fixed below);
        # recording, not filtering, because it resets the filters itself.
        model = init_detector(cfg, checkpoint, device=device)
    if not deformable_layers(model):
        raise ValueError(f'config {config!r}: no deformable layer found (the model built '
                         'from it has no DeformableConv2d; use a DCN config, e.g. '
                         "model.backbone.dcn=dict(type='DeformableConv2d'))")
    classes = (cfg.get('test_dataloader', {}) or {}).get('dataset', {}).get(
        'metainfo', {}).get('classes')
    meta = getattr(model, 'dataset_meta', None) or {}
    from mmdet.evaluation import get_classes
    if classes and tuple(meta.get('classes', ())) == tuple(get_classes('coco')):
        model.dataset_meta = dict(meta, classes=tuple(classes))
    return model
