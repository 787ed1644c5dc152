"""The study's figure: bbox mAP against deformation strength, one line per variant."""
from typing import Dict, List, Tuple

from .constants import variant_label
from .stats import mean_std


def plot(grid: dict, cells: Dict[Tuple[str, str], List[dict]], path: str) -> None:
    """Mean ± std over seeds of every (level, variant) cell, saved as a PNG to ``path``.

    Args:
        cells: (level, variant) -> the results of its runs.
    """
    # A Figure without pyplot: no global backend switch, nothing left open.
    from matplotlib.figure import Figure
    levels, variants = grid['levels'], grid['variants']
    fig = Figure(figsize=(7, 4.2), dpi=120)
    ax = fig.subplots()
    width = 0.08
    for i, variant in enumerate(variants):
        xs, ms, ss = [], [], []
        for j, level in enumerate(levels):
            m, s = mean_std([r['bbox_mAP'] for r in cells.get((level, variant), [])])
            if m is not None:
                xs.append(j + (i - (len(variants) - 1) / 2) * width)
                ms.append(m)
                ss.append(s)
        if xs:
            ax.errorbar(xs, ms, yerr=ss, marker='o', capsize=3, label=variant_label(variant),
                        linestyle='--' if variant == 'baseline' else '-')
    ax.set_xticks(range(len(levels)), levels)
    ax.set_xlabel('deformation strength of the dataset')
    ax.set_ylabel('COCO bbox mAP (val)')
    ax.set_title(f'Deformation study: mean ± std over {len(grid["seeds"])} seed(s), '
                 f'{grid["epochs"]} epochs', fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
