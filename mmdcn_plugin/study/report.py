"""The study's report: ``results.md``, ``results.csv``, ``summary.json`` and the plots."""
import csv
import datetime
import json
import os
import os.path as osp
from typing import List, Optional, Tuple

from .aggregate import aggregate, check_same_recipe, machine_of
from .complexity import complexity
from .constants import (ARMS, AUGMENTATION, BASE_CONFIG, DEFORMATION, REPO_ROOT, STAGES,
                        variant_label)
from .grid import StudySetup
from .plot import plot_curves, plot_on_object
from .stats import fmt, fmt_ci

CSV_KEYS = ('arm', 'variant', 'transform', 'value', 'n', 'mean', 'std', 'ci_low', 'ci_high',
            'mAP50_mean', 'mAP75_mean')
UNITS = {'rotate': 'degrees, counter-clockwise', 'scale': 'zoom factor',
         'shear': 'degrees, x\' = x + tan(v)(y - cy)'}


def _stat(s: dict) -> str:
    """``mean ± std<br>[lo, hi]`` (no std or interval where n < 2)."""
    text = fmt(s['mean'], s['std'])
    return text + (f'<br>{fmt_ci(s["ci_low"], s["ci_high"])}' if s['ci_low'] is not None
                   else '')


def _machines(results: List[dict]) -> List[str]:
    """``'AMD EPYC; 2 cores; torch 2.13.0+cpu: 21 runs (arm (a), (b)), 2026-12-02'`` per
    machine: timings compare only within one."""
    out = []
    for machine in sorted({machine_of(r) for r in results}):
        rs = [r for r in results if machine_of(r) == machine]
        days = sorted({(r.get('date') or '?')[:10] for r in rs})
        arms = ', '.join(f'({a})' for a in sorted({r['arm'] for r in rs}))
        when = days[0] if len(days) == 1 else f'{days[0]} to {days[-1]}'
        out.append(f'{machine}: {len(rs)} runs (arm {arms}), {when}')
    return out


def _stretched(setup: StudySetup) -> str:
    """`` (stretched by --epochs from the config's 8; ...)`` when the schedule is."""
    from .recipe import stretched_from
    base = stretched_from(setup.recipe)
    if not base:
        return ''
    return (f' (stretched by `--epochs` from the config\'s {base}; the LR drops at the same '
            'fractions of training)')


def _header(setup: StudySetup, results: List[dict], date: str, machine: str) -> List[str]:
    expected = len(setup.runs())
    aug = (f'rotation U({AUGMENTATION["rotate"][0]:g}, {AUGMENTATION["rotate"][1]:g}) degrees, '
           f'scale log-uniform in [{AUGMENTATION["scale"][0]:g}, {AUGMENTATION["scale"][1]:g}],'
           f' shear U({AUGMENTATION["shear"][0]:g}, {AUGMENTATION["shear"][1]:g}) degrees')
    lines = ['# Robustness study: deformable convolution under rotation, scale and shear', '',
             f'Report built {date} on {machine}; `{setup.command()}`.', '',
             f'Faster R-CNN (narrow ResNet-50 + FPN) with the quick-start recipe of '
             f'`{osp.relpath(BASE_CONFIG, REPO_ROOT)}`: {setup.recipe.describe()}'
             f'{_stretched(setup)}; '
             f'the variants differ only in the 3x3 convs of c3-c5. Data: the embedded '
             f'generator, `{DEFORMATION}` deformation. Arm (a): {ARMS["a"]}; arm (b): '
             f'{ARMS["b"]} (`RandomRotateScaleShear`: {aug}; the sweeps\' geometry and '
             'box rule). Each checkpoint is then evaluated with MMDetection\'s COCO metric on '
             'the val split transformed by each value (`mmdcn_plugin.robustness`; boxes are '
             'the tight boxes of the transformed masks).', '',
             f'Runs finished: {len(results)} of {expected} '
             f'({len(setup.arms)} arms x {len(setup.variants)} variants x seeds '
             f'{",".join(map(str, setup.seeds))}). Every cell states its n (seeds). '
             'Statistics over training seeds: mean ± sample std; the 95% confidence '
             'interval of the mean is Student\'s t with n - 1 degrees of freedom, in '
             'brackets; a cell with n < 2 has none.', '', 'Where the runs trained: '
             + '; '.join(_machines(results)) + '.']
    if len(results) < expected:
        lines += ['', f'**Partial grid: {expected - len(results)} runs still to train '
                  '(`make study` continues).**']
    return lines


def _delta(d: Optional[dict]) -> Tuple[str, str, str]:
    """A paired difference's cells: signed mean, 95% interval, number of pairs."""
    if d is None:
        return '—', '—', '—'
    return ('n/a' if d['mean'] is None else f'{d["mean"]:+.3f}',
            fmt_ci(d['ci_low'], d['ci_high']), str(d['n']))


def _untransformed(summary: dict) -> List[str]:
    lines = ['', '## bbox mAP on the untransformed val split (final validation)', '',
             'Δ: the variant minus the baseline, paired by training seed (see the areas).', '',
             '| arm | variant | n | bbox mAP | 95% CI | Δ vs baseline | Δ 95% CI | pairs |',
             '|---|---|---|---|---|---|---|---|']
    for e in summary['untransformed']:
        s = e['bbox_mAP']
        lines.append(f'| ({e["arm"]}) | {variant_label(e["variant"])} | {s["n"]} | '
                     f'{fmt(s["mean"], s["std"])} | {fmt_ci(s["ci_low"], s["ci_high"])} | '
                     + ' | '.join(_delta(e.get('vs_baseline'))) + ' |')
    return lines


def _curves(setup: StudySetup, summary: dict) -> List[str]:
    lines = ['', '## Robustness curves: bbox mAP on the transformed val split', '']
    for transform, values in setup.sweeps.items():
        rows = [c for c in summary['curves'] if c['transform'] == transform]
        if not rows:
            continue
        values = sorted({c['value'] for c in rows})
        lines += [f'### {transform} ({UNITS[transform]})', '',
                  '| arm | variant | n | ' + ' | '.join(f'{v:g}' for v in values) + ' |',
                  '|---|---|---|' + '---|' * len(values)]
        seen = []
        for c in rows:
            if (c['arm'], c['variant']) in seen:
                continue
            seen.append((c['arm'], c['variant']))
            cells = {x['value']: x for x in rows
                     if (x['arm'], x['variant']) == (c['arm'], c['variant'])}
            lines.append(f'| ({c["arm"]}) | {variant_label(c["variant"])} | '
                         f'{c["bbox_mAP"]["n"]} | '
                         + ' | '.join(_stat(cells[v]['bbox_mAP']) for v in values) + ' |')
        lines += ['', f'![bbox mAP against {transform}](robustness_{transform}.png)', '']
    return lines


def _areas(summary: dict) -> List[str]:
    lines = ['## Area under the robustness curves', '',
             'Area: the trapezoid rule over the swept values, divided by their range, so it '
             'is the mean bbox mAP over the sweep. Δ: the variant minus the baseline, '
             '**paired by training seed** (both trained with the same seed, same arm): mean '
             'and 95% t interval of the per-seed differences over the n seeds both have.', '',
             '| arm | transform | variant | n | area | 95% CI | Δ vs baseline | Δ 95% CI |'
             ' pairs |', '|---|---|---|---|---|---|---|---|---|']
    for e in sorted(summary['areas'], key=lambda e: (e['arm'], e['transform'])):
        a, delta = e['area'], _delta(e.get('vs_baseline'))
        lines.append(f'| ({e["arm"]}) | {e["transform"]} | {variant_label(e["variant"])} | '
                     f'{a["n"]} | {fmt(a["mean"], a["std"])} | {fmt_ci(a["ci_low"], a["ci_high"])}'
                     f' | {delta[0]} | {delta[1]} | {delta[2]} |')
    return lines


def _welch(d: Optional[dict]) -> str:
    """A Welch difference's cell: ``+0.012 [−0.004, +0.028] (5 vs 5)``."""
    if d is None or d['mean'] is None:
        return '—'
    ci = '' if d['ci_low'] is None else f' {fmt_ci(d["ci_low"], d["ci_high"])}'
    return f'{d["mean"]:+.3f}{ci} ({d["n_a"]} vs {d["n_b"]})'


def _augmentation(summary: dict) -> List[str]:
    rows = summary.get('augmentation') or []
    if not rows:
        return []
    lines = ['', '## Does training with the transforms close the gap? (arm (b) − arm (a))', '',
             'Per variant: its arm (b) value minus its arm (a) value (different models, so '
             'Welch\'s 95% t interval, not a paired one; n (b) vs n (a)). "Gap change": the '
             'variant\'s per-seed difference from the baseline in arm (b), minus the same in '
             'arm (a); negative means the augmentation closes part of the DCN variant\'s '
             'lead. Measures: bbox mAP on the untransformed val split, and each '
             'transform\'s curve area.', '',
             '| variant | measure | (b) − (a) | gap change (b) − (a) |', '|---|---|---|---|']
    for e in rows:
        lines.append(f'| {variant_label(e["variant"])} | {e["measure"]} | '
                     f'{_welch(e["b_minus_a"])} | {_welch(e.get("gap_change"))} |')
    return lines


def _on_object(summary: dict, images: int) -> List[str]:
    rows = summary['on_object']
    if not rows:
        return []
    values = sorted({r['value'] for r in rows})
    lines = ['', '## Where the offsets go (arm (a), rotated val split)', '',
             f'Fraction of a deformable layer\'s 3x3 sampling locations, traced to image '
             f'pixels from each instance\'s most interior mask pixel, that land on the '
             f'instance\'s own mask: learned offsets / regular grid (offsets zeroed), pooled '
             f'over the layers of each stage and the instances of the first {images} val '
             'images; mean over seeds (n).', '',
             '| variant | stage | n | ' + ' | '.join(f'{v:g}°' for v in values) + ' |',
             '|---|---|---|' + '---|' * len(values)]
    keys = []
    for r in rows:
        if (r['variant'], r['stage']) not in keys:
            keys.append((r['variant'], r['stage']))
    for variant, stage in keys:
        cells = {r['value']: r for r in rows if (r['variant'], r['stage']) == (variant, stage)}
        n = min(c['deformable']['n'] for c in cells.values())
        lines.append(f'| {variant_label(variant)} | {stage} | {n} | ' + ' | '.join(
            f'{cells[v]["deformable"]["mean"]:.3f} / {cells[v]["regular"]["mean"]:.3f}'
            if v in cells else 'n/a' for v in values) + ' |')
    lines += ['', '![learned minus grid against rotation](on_object_rotate.png)', '',
              'Learned minus grid, **paired by run** (the same model, offsets on and '
              'zeroed): upright (0°) and averaged over the rotated values; mean ± std over '
              'seeds and the 95% t interval. Above 0: the offsets move sampling points onto '
              'the object; above 0 when rotated: they still do as the object turns.', '',
              '| variant | stage | n | upright gap | 95% CI | rotated gap | 95% CI |',
              '|---|---|---|---|---|---|---|']
    for g in summary['on_object_gap']:
        up, rot = g['upright'], g['rotated']
        lines.append(f'| {variant_label(g["variant"])} | {g["stage"]} | {up["n"]} | '
                     f'{_signed(up)} | {fmt_ci(up["ci_low"], up["ci_high"])} | '
                     f'{_signed(rot)} | {fmt_ci(rot["ci_low"], rot["ci_high"])} |')
    return lines


def _signed(s: dict) -> str:
    """``'+0.031 ± 0.004'`` (n/a without a mean)."""
    if s['mean'] is None:
        return 'n/a'
    return f'{s["mean"]:+.3f}' + ('' if s['std'] is None else f' ± {s["std"]:.3f}')


def _offsets(summary: dict) -> List[str]:
    rows = summary['offsets']
    if not rows:
        return []
    lines = ['', '## How far the offsets move', '',
             'From each run\'s last `OffsetStatsHook` record (the end of training): mean '
             '|offset| over the stage\'s layers and the largest |offset| seen, in pixels of '
             'the layer\'s input map (the 3x3 grid\'s spacing is 1 px); points off the '
             'input map; DCNv2\'s mean mask as its offset head returns it (the sigmoid, '
             'before `mask_scale`; 0.5 is the start). Mean ± std over seeds. For scale: turning a '
             'grid point at distance 1 by θ takes an offset of 2·sin(θ/2) px: 0.52 at 30°, '
             '1 at 60°, 1.41 at 90°, 2 at 180° (`docs/theory.md`, section 2).', '',
             '| arm | variant | stage | n | mean \\|offset\\| (px) | max \\|offset\\| (px) | '
             'off the map | mask |', '|---|---|---|---|---|---|---|---|']
    for e in rows:
        mask = e['mask_mean']
        lines.append(f'| ({e["arm"]}) | {variant_label(e["variant"])} | {e["stage"]} | '
                     f'{e["mean_px"]["n"]} | {fmt(e["mean_px"]["mean"], e["mean_px"]["std"])} |'
                     f' {fmt(e["max_px"]["mean"], e["max_px"]["std"], digits=2)} | '
                     f'{fmt(e["outside_frac"]["mean"])} | '
                     f'{fmt(mask["mean"]) if mask["n"] else "—"} |')
    return lines


def _cost(setup: StudySetup, results: List[dict], summary: dict, costs: dict) -> List[str]:
    size = setup.recipe.image_size
    how = ', '.join(f'{j} run(s) at a time with {t} thread(s) each' for j, t in sorted(
        {(r.get('jobs'), r.get('threads')) for r in results}, key=str))
    lines = ['', '## Cost', '',
             f'Offset branch: the offset heads of all deformable layers; FLOPs are '
             f'multiply-adds at {size}x{size} (DCN-aware counting, `docs/flops.md`); '
             'sampling: bilinear sampling and modulation. s/iter: median of the logged '
             f'training iteration time (batch {setup.recipe.batch_size}, data included); wall: '
             f'median per run of training + evaluation; {how}. Timings are per machine: '
             'compare variants within one machine, not across.', '',
             '| machine | variant | params | offset-branch params | FLOPs | '
             'offset-branch FLOPs | sampling FLOPs | s/iter | wall per run (s) | peak RSS MB '
             '| runs |', '|---|---|---|---|---|---|---|---|---|---|---|']
    total = 0.0
    for e in summary['cost']:
        c = costs[e['variant']]
        total += e['total_wall_s']
        lines.append(
            f'| {e["machine"].split(";")[0]} | {variant_label(e["variant"])} | '
            f'{c["params"] / 1e6:.3f} M | '
            f'{c["offset_params"] / 1e3:.1f} k | {c["flops"] / 1e9:.3f} G | '
            f'{c["offset_flops"] / 1e6:.1f} M | {c["sampling_flops"] / 1e6:.1f} M | '
            f'{fmt(e["sec_per_iter"])} | {fmt(e["wall_s"], digits=0)} | '
            f'{fmt(e["peak_rss_mb"], digits=0)} | {e["runs"]} |')
    lines += ['', f'Wall time of all finished runs together: {total / 3600:.2f} h.']
    return lines


def build_report(setup: StudySetup, results: List[dict], date: Optional[str] = None,
                 machine: Optional[str] = None) -> str:
    """Write ``results.md``, ``results.csv``, ``summary.json`` and
    ``robustness_<transform>.png`` (and ``on_object_rotate.png`` once a DCN run of arm (a)
    is finished) into ``setup.docs_dir``; return ``results.md``'s path.

    Raises:
        ValueError: no results, or runs of different recipes or sweeps.
    """
    from ..utils import machine_line
    if not results:
        raise ValueError(f'results: expected at least one finished run under '
                         f'{setup.docs_dir}/runs, got none')
    check_same_recipe(results)
    summary = aggregate(results, setup.arms, setup.variants)
    costs = {v: complexity(v, setup.recipe.image_size, osp.join(setup.out_dir, 'complexity.json'))
             for v in dict.fromkeys(e['variant'] for e in summary['cost'])}   # ordered
    date = date or datetime.date.today().isoformat()
    machine = machine or results[-1]['machine'] or machine_line()
    lines = _header(setup, results, date, machine) + _untransformed(summary)
    lines += _curves(setup, summary) + _areas(summary) + _augmentation(summary)
    lines += _on_object(summary, setup.on_object_images) + _offsets(summary)
    lines += _cost(setup, results, summary, costs)
    os.makedirs(setup.docs_dir, exist_ok=True)
    report = osp.join(setup.docs_dir, 'results.md')
    with open(report, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    with open(osp.join(setup.docs_dir, 'summary.json'), 'w') as f:
        json.dump(dict(date=date, machine=machine, command=setup.command(),
                       recipe=setup.recipe.as_dict(), arms=list(setup.arms),
                       variants=list(setup.variants), seeds=list(setup.seeds),
                       runs_finished=len(results), runs_expected=len(setup.runs()),
                       complexity=costs, **summary), f, indent=1)
    with open(osp.join(setup.docs_dir, 'results.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, CSV_KEYS, lineterminator='\n')
        writer.writeheader()
        for c in summary['curves']:
            writer.writerow(dict(arm=c['arm'], variant=c['variant'], transform=c['transform'],
                                 value=f'{c["value"]:g}', **c['bbox_mAP'],
                                 mAP50_mean=c['mAP50']['mean'], mAP75_mean=c['mAP75']['mean']))
    for transform in setup.sweeps:
        plot_curves(summary['curves'], transform).savefig(
            osp.join(setup.docs_dir, f'robustness_{transform}.png'))
    if summary['on_object']:
        plot_on_object(summary['on_object'], STAGES).savefig(
            osp.join(setup.docs_dir, 'on_object_rotate.png'))
    return report
