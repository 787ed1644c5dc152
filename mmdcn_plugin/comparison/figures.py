"""The demo's pictures: the convergence curves of both detectors, and their detections
side by side on the same validation images.

Figures are drawn on :class:`matplotlib.figure.Figure` objects and written by their own
``savefig`` (Agg for PNG), never through ``pyplot``: no global backend is chosen and no
figure is left registered in the caller's process.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ['plot_curves', 'detections_side_by_side']


def plot_curves(curves: Dict[str, Dict[str, List[Tuple[int, float]]]], path: str,
                title: str = 'Validation bbox mAP during training',
                xlabel: str = 'epoch') -> str:
    """Plot ``{model: {metric: [(step, value), ...]}}``, one colour per model and one
    line style per metric; write ``path`` (PNG) and return it."""
    from matplotlib.figure import Figure
    styles = ['-', '--', ':']
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    for (model, metrics), colour in zip(curves.items(), ['tab:blue', 'tab:red', 'tab:green',
                                                         'tab:orange']):
        for (metric, points), style in zip(metrics.items(), styles):
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, style, color=colour, marker='o', ms=3,
                        label=f'{model} {metric}')
    ax.set_xlabel(xlabel)
    ax.set_ylabel('COCO metric on val')
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _draw(ax, img_bgr: np.ndarray, result, classes: Sequence[str], score_thr: float,
          gt_boxes: Optional[np.ndarray]) -> int:
    from matplotlib.patches import Rectangle
    ax.imshow(img_bgr[..., ::-1])
    ax.set_xticks([])
    ax.set_yticks([])
    if gt_boxes is not None:
        for x1, y1, x2, y2 in gt_boxes:
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec='white',
                                   lw=0.8, ls='--'))
    pred = result.pred_instances
    keep = pred.scores >= score_thr
    shown = 0
    for box, label, score in zip(pred.bboxes[keep].tolist(), pred.labels[keep].tolist(),
                                 pred.scores[keep].tolist()):
        x1, y1, x2, y2 = box
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec='yellow', lw=1.2))
        name = classes[label] if label < len(classes) else str(label)
        ax.text(x1, y1, f'{name} {score:.2f}', color='black', fontsize=5,
                bbox=dict(facecolor='yellow', alpha=0.8, pad=0.5, lw=0))
        shown += 1
    return shown


def detections_side_by_side(models: Dict[str, Tuple[object, object]], images: Sequence[str],
                            path: str, classes: Sequence[str], score_thr: float = 0.3,
                            gt: Optional[Dict[str, np.ndarray]] = None) -> str:
    """One row per model, one column per image: each model's detections (yellow, score
    >= ``score_thr``) and the ground-truth boxes (dashed white, when ``gt`` maps an
    image path to an ndarray[K, 4] of x1y1x2y2).

    Args:
        models: ``{name: (model, cfg)}``, each a detector in eval mode and its config
            (for the test pipeline).
        images: Paths of the images, the same for every model.
        path: The PNG to write.
    """
    from matplotlib.figure import Figure
    from ..visualization import infer_image, read_image
    if not images:
        raise ValueError('images: expected at least one image path, got none')
    fig = Figure(figsize=(2.4 * len(images), 2.6 * len(models)))
    axes = fig.subplots(len(models), len(images), squeeze=False)
    for r, (name, (model, cfg)) in enumerate(models.items()):
        for c, image in enumerate(images):
            img = read_image(image)
            result = infer_image(model, img, cfg)
            n = _draw(axes[r][c], img, result, classes, score_thr,
                      None if gt is None else gt.get(image))
            axes[r][c].set_title(f'{name}: {n} box(es)', fontsize=7)
    fig.suptitle(f'Detections (score >= {score_thr}, yellow) and ground truth '
                 '(dashed white)', fontsize=8)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=130)
    return path
