"""The study's robustness plots: bbox mAP against a transform's value, per variant and arm.

A ``matplotlib.figure.Figure`` made without pyplot (no GUI backend, nothing left open).
"""
from typing import Sequence

from .constants import variant_label

LINESTYLES = {'a': '-', 'b': '--'}


def plot_curves(curves: Sequence[dict], transform: str, title: str = ''):
    """One line per (variant, arm) with a mean ± std band over seeds.

    Args:
        curves: :func:`~.aggregate.aggregate`'s ``curves`` entries (any transform; those
            of ``transform`` are drawn).
    """
    from matplotlib.figure import Figure
    from ..robustness.plot import AXIS_LABELS
    fig = Figure(figsize=(7.5, 4.6), dpi=110)
    ax = fig.subplots()
    keys = []
    for c in curves:
        if c['transform'] == transform and (c['variant'], c['arm']) not in keys:
            keys.append((c['variant'], c['arm']))
    colours = {}
    for variant, arm in keys:
        rows = sorted((c for c in curves if c['transform'] == transform
                       and c['variant'] == variant and c['arm'] == arm),
                      key=lambda c: c['value'])
        xs = [c['value'] for c in rows]
        ms = [c['bbox_mAP']['mean'] for c in rows]
        n = min(c['bbox_mAP']['n'] for c in rows)
        line, = ax.plot(xs, ms, marker='o', markersize=3, linestyle=LINESTYLES[arm],
                        color=colours.get(variant),
                        label=f'{variant_label(variant)}, arm ({arm}), n={n}')
        colours[variant] = line.get_color()
        if n > 1:
            sds = [c['bbox_mAP']['std'] for c in rows]
            ax.fill_between(xs, [m - s for m, s in zip(ms, sds)],
                            [m + s for m, s in zip(ms, sds)], color=line.get_color(),
                            alpha=0.15, linewidth=0)
    ax.set_xlabel(AXIS_LABELS.get(transform, transform))
    ax.set_ylabel('COCO bbox mAP (transformed val split)')
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f'Robustness to {transform}: mean ± std over seeds; solid: arm (a) trained '
                 'untransformed, dashed: arm (b) augmented' + (f'\n{title}' if title else ''),
                 fontsize=8)
    fig.tight_layout()
    return fig


def plot_on_object(on_object: Sequence[dict], stages: Sequence[str]):
    """Learned minus grid on-object fraction against rotation: one panel per stage, one
    line per DCN variant with a mean ± std band over seeds, and the zero line (the grid).

    Args:
        on_object: :func:`~.aggregate.aggregate`'s ``on_object`` entries.
    """
    from matplotlib.figure import Figure
    fig = Figure(figsize=(10, 3.4), dpi=110)
    axes = fig.subplots(1, len(stages), sharey=True)
    for ax, stage in zip(axes, stages):
        rows = [r for r in on_object if r['stage'] == stage]
        for variant in dict.fromkeys(r['variant'] for r in rows):
            mine = sorted((r for r in rows if r['variant'] == variant), key=lambda r: r['value'])
            xs = [r['value'] for r in mine]
            ms = [r['gap']['mean'] for r in mine]
            n = min(r['gap']['n'] for r in mine)
            line, = ax.plot(xs, ms, marker='o', markersize=3,
                            label=f'{variant_label(variant)}, n={n}')
            if n > 1:
                sds = [r['gap']['std'] for r in mine]
                ax.fill_between(xs, [m - s for m, s in zip(ms, sds)],
                                [m + s for m, s in zip(ms, sds)], color=line.get_color(),
                                alpha=0.15, linewidth=0)
        ax.axhline(0, color='black', linewidth=0.8)
        ax.set_title(stage, fontsize=9)
        ax.set_xlabel('rotation of the val split (degrees)')
        ax.grid(alpha=0.3)
    axes[0].set_ylabel('on-object fraction:\nlearned minus grid')
    axes[-1].legend(fontsize=7)
    fig.suptitle('Do the offsets land on the object as it turns? Arm (a), mean ± std over '
                 'seeds; above 0: more sampling points on the instance than the grid',
                 fontsize=8)
    fig.tight_layout()
    return fig
