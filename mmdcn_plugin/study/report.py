"""The study's report: Markdown tables, ``summary.json``, ``results.csv`` and the plot."""
import csv
import datetime
import json
import os
import os.path as osp
import statistics
from typing import Callable, Dict, List, Optional, Tuple

from .complexity import complexity
from .constants import IMAGE_SIZE, METRICS, variant_label
from .grid import StudySetup
from .plot import plot
from .stats import fmt, mean_std, welch_p

Cells = Dict[Tuple[str, str], List[dict]]
CSV_KEYS = ('level', 'variant', 'seed', *METRICS, 'train_iter_s', 'peak_rss_mb', 'wall_s',
            'iterations', 'epochs', 'num_train', 'num_val', 'threads', 'config')


def group_cells(results: List[dict]) -> Cells:
    """(level, variant) -> the results of its runs, in the order given."""
    cells = {}
    for r in results:
        cells.setdefault((r['level'], r['variant']), []).append(r)
    return cells


def level_table(grid: dict, cells: Cells, cell_text: Callable[[str, str, List[dict]], str]
                ) -> List[str]:
    """Markdown rows: one per variant, one column per level."""
    rows = ['| variant | ' + ' | '.join(grid['levels']) + ' |',
            '|---|' + '---|' * len(grid['levels'])]
    for variant in grid['variants']:
        texts = [cell_text(level, variant, cells.get((level, variant), []))
                 for level in grid['levels']]
        rows.append('| ' + ' | '.join([variant_label(variant)] + texts) + ' |')
    return rows


def map_cell_text(cells: Cells, level: str, variant: str, rs: List[dict]) -> str:
    """``mean ± std (n)`` of bbox mAP, and for a DCN variant Δ and p against the baseline."""
    m, s = mean_std([r['bbox_mAP'] for r in rs])
    text = f'{fmt(m, s)} ({len(rs)})'
    base = [r['bbox_mAP'] for r in cells.get((level, 'baseline'), [])]
    if variant != 'baseline' and rs and base:
        delta = m - statistics.mean(base)
        p = welch_p([r['bbox_mAP'] for r in rs], base)
        text += f'<br>Δ {delta:+.3f}' + (
            '' if p is None else f', p={p:.2f}' if p >= 0.01 else ', p<0.01')
    return text


def cell_summaries(grid: dict, cells: Cells) -> List[dict]:
    """Per (variant, level): n, and mean and std of every metric."""
    out = []
    for variant in grid['variants']:
        for level in grid['levels']:
            rs = cells.get((level, variant), [])
            out.append(dict(
                level=level, variant=variant, n=len(rs),
                **{f'{k}_mean': mean_std([r[k] for r in rs])[0] for k in METRICS},
                **{f'{k}_std': mean_std([r[k] for r in rs])[1] for k in METRICS}))
    return out


def cost_rows(setup: StudySetup, results: List[dict], costs: Dict[str, dict]
              ) -> Tuple[List[str], Dict[str, dict]]:
    """The cost table's Markdown rows and the per-variant summary entries."""
    lines, variants = [], {}
    for variant in setup.grid['variants']:
        c = costs[variant]
        rs = [r for r in results if r['variant'] == variant]
        it = statistics.median([r['train_iter_s'] for r in rs if r['train_iter_s']]) \
            if rs else None
        mem = max((r['peak_rss_mb'] for r in rs), default=None)
        variants[variant] = dict(c, train_iter_s=it, peak_rss_mb=mem,
                                 label=variant_label(variant))
        lines.append(f'| {variant_label(variant)} | {c["params"] / 1e6:.3f} M | '
                     f'{c["offset_params"] / 1e3:.1f} k | {c["flops"] / 1e9:.3f} G | '
                     f'{c["offset_flops"] / 1e6:.1f} M | {c["sampling_flops"] / 1e6:.1f} M | '
                     + (f'{it:.3f}' if it else 'n/a') + ' | '
                     + (f'{mem:.0f}' if mem else 'n/a') + ' |')
    return lines, variants


def build_report(setup: StudySetup, results: List[dict], date: Optional[str] = None,
                 machine: Optional[str] = None) -> str:
    """Write ``results.md``, ``summary.json``, ``results.csv`` and ``results.png`` into
    ``setup.docs_dir``; return the path of ``results.md``.

    Args:
        results: the runs' results (:func:`~.grid.collect`).
        date, machine: what the report says of when and where (default: today and
            :func:`mmdcn_plugin.utils.machine_line`).
    """
    from ..utils import machine_line
    grid = setup.grid
    os.makedirs(setup.docs_dir, exist_ok=True)
    cells = group_cells(results)
    costs = {v: complexity(v, osp.join(setup.out_dir, 'complexity.json'))
             for v in grid['variants']}
    summary = dict(grid=setup.grid_name, date=date or datetime.date.today().isoformat(),
                   machine=machine or machine_line(), command=setup.command(),
                   epochs=grid['epochs'], num_train=grid['num_train'],
                   num_val=grid['num_val'], seeds=list(grid['seeds']),
                   jobs=setup.jobs, threads=setup.threads,
                   cells=cell_summaries(grid, cells), variants={})
    lines = [f'# Deformation study results ({setup.grid_name} grid)', '',
             f'{summary["date"]}, {summary["machine"]}; `{summary["command"]}`.',
             f'Faster R-CNN (narrow ResNet-50, quick-start configs) trained from scratch for '
             f'{grid["epochs"]} epoch(s) on {grid["num_train"]} images of {IMAGE_SIZE} px, '
             f'COCO bbox metric on {grid["num_val"]} val images; mean ± std over seeds '
             f'{", ".join(map(str, grid["seeds"]))} (n per cell in brackets). Δ: difference '
             'of means from the baseline at the same level, p: two-sided Welch t-test.', '',
             '## bbox mAP', '']
    lines += level_table(grid, cells, lambda *a: map_cell_text(cells, *a))
    lines += ['', '## bbox mAP50 / mAP75', '']
    lines += level_table(grid, cells, lambda level, variant, rs: (
        fmt(*mean_std([r['bbox_mAP_50'] for r in rs])) + ' / '
        + fmt(*mean_std([r['bbox_mAP_75'] for r in rs]))))
    lines += ['', '## Cost', '',
              f'Offset branch: the offset heads of all deformable layers; FLOPs are '
              f'multiply-adds at {IMAGE_SIZE}x{IMAGE_SIZE} (DCN-aware counting, '
              '`docs/flops.md`); sampling = bilinear sampling and modulation. Train '
              f'time per iteration (batch 8) and peak resident memory of the training '
              f'process: median and max over this grid\'s runs ({setup.jobs} runs at a time, '
              f'{setup.threads} thread(s) each).', '',
              '| variant | params | offset-branch params | model FLOPs | offset-branch FLOPs '
              '| sampling FLOPs | train s/iter | peak RSS MB |',
              '|---|---|---|---|---|---|---|---|']
    rows, summary['variants'] = cost_rows(setup, results, costs)
    lines += rows
    expected = len(setup.runs())
    if len(results) < expected:
        lines += ['', f'**Incomplete: {len(results)} of {expected} runs finished.**']
    lines += ['', '![bbox mAP against deformation strength](results.png)', '']
    report = osp.join(setup.docs_dir, 'results.md')
    with open(report, 'w') as f:
        f.write('\n'.join(lines))
    with open(osp.join(setup.docs_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    with open(osp.join(setup.docs_dir, 'results.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, CSV_KEYS, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(results)
    plot(grid, cells, osp.join(setup.docs_dir, 'results.png'))
    return report
