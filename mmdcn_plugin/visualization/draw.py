"""Matplotlib figures of deformable layers: sampling points, responses, detections.

Figures are ``matplotlib.figure.Figure`` objects made without pyplot: no GUI
backend is touched, and a notebook displays them as they are.  matplotlib is
imported on first use.  Images are BGR ``ndarray[H, W, 3]`` (OpenCV's order) and
every coordinate is in original image pixels, (x, y).
"""
import os
import os.path as osp
from typing import Dict, List, Sequence

import numpy as np

from .capture import LayerCapture
from .trace import ImageFrame, TracedPoint

_COLOURS = ('#e41a1c', '#377eb8', '#4daf4a', '#984ea3', '#ff7f00', '#a65628')


def _title(fig, text: str, zero_note: str, note: str) -> None:
    lines = [text] + [t for t in (note,) if t]
    fig.suptitle('\n'.join(lines), fontsize=11)
    if zero_note:
        fig.text(0.5, 0.01, zero_note, ha='center', va='bottom', color='red',
                 fontsize=11, fontweight='bold')


def _rgb(img: np.ndarray) -> np.ndarray:
    return img[..., ::-1]


def draw_sampling_points(img: np.ndarray, traced: List[TracedPoint],
                         chain: Sequence[LayerCapture], zero_note: str = '', note: str = ''):
    """One row per traced point: the regular grid (left) and the deformable points (right).

    Args:
        img (ndarray[H, W, 3]): the image, BGR.
        traced (list of TracedPoint): from :func:`~.trace.trace_image_point`.
        chain (sequence of LayerCapture): the traced layers (for the title and count).
        zero_note (str): a red warning line (e.g. all offsets are zero), or ''.
        note (str): added to the title (e.g. the checkpoint), or ''.

    Returns:
        matplotlib.figure.Figure
    """
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


def draw_feature_response(img: np.ndarray, frame: ImageFrame, target: LayerCapture,
                          plain: LayerCapture, zero_note: str = '', note: str = ''):
    """A layer's response with its offsets, with them zeroed, and the difference.

    Args:
        img (ndarray[H, W, 3]): the image, BGR.
        frame (ImageFrame): of the inference that produced the captures.
        target, plain (LayerCapture): the same layer with and without offsets, both
            captured with their output.
        zero_note, note (str): as for :func:`draw_sampling_points`.

    Returns:
        matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    deform, regular = target.response_map(), plain.response_map()
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


def draw_detections(img: np.ndarray, result, plain_result, classes: Sequence[str],
                    score_thr: float, zero_note: str = '', note: str = '',
                    max_boxes: int = 20):
    """The detector's boxes as trained (left) and with every offset zeroed (right).

    Args:
        img (ndarray[H, W, 3]): the image, BGR.
        result, plain_result (DetDataSample): the two inference results.
        classes (sequence of str): class names (a label without one is drawn as
            ``class <label>``).
        score_thr (float): boxes below it are not drawn.
        max_boxes (int): at most this many boxes per panel, the best first.

    Returns:
        matplotlib.figure.Figure
    """
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
