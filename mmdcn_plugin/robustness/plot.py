"""The robustness plot: bbox mAP against the transform's value, one line per checkpoint.

A ``matplotlib.figure.Figure`` made without pyplot (no GUI backend is touched);
matplotlib is imported here only, on first use.
"""
from typing import Sequence

AXIS_LABELS = {'rotate': 'rotation (degrees, counter-clockwise)',
               'scale': 'scale factor (1 = unchanged)',
               'shear': 'horizontal shear (degrees)'}


def plot_sweep(rows: Sequence[dict], transform: str, title: str = '',
               metric: str = 'bbox_mAP'):
    """Figure of ``metric`` against ``value``; rows carry ``checkpoint``, ``value``, ``metric``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    order = []
    for row in rows:
        if row['checkpoint'] not in order:
            order.append(row['checkpoint'])
    for label in order:
        points = sorted((r['value'], r[metric]) for r in rows if r['checkpoint'] == label)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker='o', label=label)
    ax.set_xlabel(AXIS_LABELS.get(transform, transform))
    ax.set_ylabel(f'{metric} (COCO, transformed test split)')
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f'Robustness to {transform}' + (f'\n{title}' if title else ''), fontsize=10)
    fig.tight_layout()
    return fig
