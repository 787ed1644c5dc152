"""The deformation study's report: does DCN's gain grow with the objects' deformation?

A study with ``levels`` (``tools/study.py --levels ...``) trains every variant on one
dataset per deformation level.  Its numbers are :func:`~.aggregate.aggregate`'s with the
level in the place of the arm: each DCN variant is paired by seed with the plain conv of
the same level.  Writes ``results.md``, ``summary.json`` and ``gain_by_level.png``.
"""
import datetime
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

from .aggregate import aggregate, check_same_recipe, on_object_gaps, run_areas
from .constants import (BASE_CONFIG, OFFSET_RECIPE, OFFSET_RECIPES, REPO_ROOT, STAGES,
                        variant_label)
from .grid import StudySetup, variant_key
from .stats import fmt, fmt_ci, paired_difference, summarize


def key_of(result: dict) -> str:
    """A run's variant with its offset recipe (``dcnv2``, ``dcnv2+ramp``)."""
    return variant_key(result['variant'], result.get('offset_recipe') or OFFSET_RECIPE)


def key_label(key: str) -> str:
    """``'DCNv2, ConvOffsetHead; offset heads at the full rate, ramped ...'``."""
    variant, _, recipe = key.partition('+')
    return variant_label(variant) + (f'; {OFFSET_RECIPES[recipe]["label"]}' if recipe else '')


def summarize_levels(results: Sequence[dict], levels: Sequence[str],
                     keys: Sequence[str]) -> dict:
    """The deformation study's numbers.

    Returns:
        dict: ``untransformed``, ``areas``, ``offsets`` and ``cost`` as
        :func:`~.aggregate.aggregate` gives them, with ``arm`` holding the level and
        ``variant`` the variant key; ``on_object_gap`` per level, key and stage (learned
        minus grid fraction on the object; upright and averaged over the rotations);
        ``vs_slow`` per level and key with another offset recipe than ``slow``: its bbox
        mAP and curve areas minus those of the same variant at ``slow``, paired by seed
        (what freeing the offsets changes).
    """
    as_arms = [dict(r, arm=r.get('level') or 'moderate', variant=key_of(r)) for r in results]
    out = aggregate(as_arms, levels, keys)
    gaps = []
    for level in levels:
        for key in keys:
            rs = [r for r in as_arms if (r['arm'], r['variant']) == (level, key)]
            for stage in STAGES:
                found = [g for g in (on_object_gaps(r, stage) for r in rs) if g is not None]
                if found:
                    gaps.append(dict(level=level, variant=key, stage=stage,
                                     upright=summarize([g[0] for g in found]),
                                     rotated=summarize([g[1] for g in found])))
    return dict(untransformed=out['untransformed'], areas=out['areas'],
                offsets=out['offsets'], on_object_gap=gaps, vs_slow=_vs_slow(as_arms, levels, keys),
                cost=out['cost'])


def _vs_slow(results: Sequence[dict], levels: Sequence[str], keys: Sequence[str]) -> List[dict]:
    out = []
    for level in levels:
        for key in keys:
            variant, _, recipe = key.partition('+')
            if not recipe or variant not in keys:
                continue
            mine = [r for r in results if (r['arm'], r['variant']) == (level, key)]
            slow = [r for r in results if (r['arm'], r['variant']) == (level, variant)]
            if not mine or not slow:
                continue
            final = [{r['seed']: r['final']['bbox_mAP'] for r in rs} for rs in (mine, slow)]
            areas = [{r['seed']: run_areas(r) for r in rs} for rs in (mine, slow)]
            out.append(dict(level=level, variant=key, vs=variant,
                            bbox_mAP=paired_difference(*final),
                            areas={t: paired_difference(*({s: a[t] for s, a in side.items()}
                                                          for side in areas))
                                   for t in sorted(next(iter(areas[0].values())))}))
    return out


def _delta(d: Optional[dict]) -> str:
    if not d or d.get('mean') is None:
        return '—'
    return f'{d["mean"]:+.3f} {fmt_ci(d["ci_low"], d["ci_high"])}'.rstrip()


def _offset_px(summary: dict, level: str, key: str) -> Dict[str, str]:
    return {e['stage']: fmt(e['mean_px']['mean'], e['mean_px']['std'])
            for e in summary['offsets'] if (e['arm'], e['variant']) == (level, key)}


def _table(summary: dict, levels: Sequence[str], keys: Sequence[str]) -> List[str]:
    lines = ['| level | variant | n | bbox mAP | Δ vs plain conv [95 % CI] | Δ rotate area | '
             'Δ scale area | Δ shear area | mean \\|offset\\| c3 / c4 / c5 (px) |',
             '|---|---|---|---|---|---|---|---|---|']
    for level in levels:
        for key in keys:
            e = next((x for x in summary['untransformed']
                      if (x['arm'], x['variant']) == (level, key)), None)
            if e is None:
                continue
            areas = {a['transform']: a.get('vs_baseline') for a in summary['areas']
                     if (a['arm'], a['variant']) == (level, key)}
            px = _offset_px(summary, level, key)
            m = e['bbox_mAP']
            lines.append(
                f'| {level} | {key_label(key)} | {m["n"]} | {fmt(m["mean"], m["std"])} '
                f'{fmt_ci(m["ci_low"], m["ci_high"])} | {_delta(e.get("vs_baseline"))} | '
                + ' | '.join(_delta(areas.get(t)) for t in ('rotate', 'scale', 'shear'))
                + ' | ' + (' / '.join(px.get(s, '—') for s in STAGES) if px else '—') + ' |')
    return lines


def _freed(summary: dict) -> List[str]:
    if not summary['vs_slow']:
        return []
    lines = ['', '## Freeing the offsets', '',
             'Each other offset recipe minus the same variant at `slow` (`lr_mult=0.1`), '
             'paired by training seed [95 % CI].', '',
             '| level | variant | n | Δ bbox mAP | Δ rotate area | Δ scale area | '
             'Δ shear area |', '|---|---|---|---|---|---|---|']
    for e in summary['vs_slow']:
        lines.append(f'| {e["level"]} | {key_label(e["variant"])} | {e["bbox_mAP"]["n"]} | '
                     f'{_delta(e["bbox_mAP"])} | '
                     + ' | '.join(_delta(e['areas'].get(t)) for t in ('rotate', 'scale', 'shear'))
                     + ' |')
    return lines


def _on_object(summary: dict) -> List[str]:
    if not summary['on_object_gap']:
        return []
    lines = ['', '## Where the offsets go', '',
             'Fraction of the deformable layers\' sampling points that land on the object, '
             'minus the regular grid\'s, on the first val images of the run\'s own level; '
             'upright, and averaged over the rotations of the sweep. Mean over seeds '
             '[95 % CI].', '', '| level | variant | stage | n | upright | rotated |',
             '|---|---|---|---|---|---|']
    for g in summary['on_object_gap']:
        lines.append(f'| {g["level"]} | {key_label(g["variant"])} | {g["stage"]} | '
                     f'{g["upright"]["n"]} | {_delta(g["upright"])} | {_delta(g["rotated"])} |')
    return lines


def plot_gain(summary: dict, levels: Sequence[str], keys: Sequence[str]):
    """DCN minus plain conv (bbox mAP, 95 % CI) against the level, one line per DCN
    variant; beside it, the mean |offset| over the stages per level."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(10, 4.2), dpi=110)
    gain, move = fig.subplots(1, 2)
    xs = list(range(len(levels)))
    dcn = [k for k in keys if k != 'baseline']
    for j, key in enumerate(dcn):
        label = key if '+' in key else f'{key} (slow)'
        dodge = (j - (len(dcn) - 1) / 2) * 0.05     # side by side, so the bars don't hide
        pts = [(i + dodge, e['vs_baseline']) for i, level in enumerate(levels)
               for e in summary['untransformed']
               if (e['arm'], e['variant']) == (level, key) and e.get('vs_baseline')]
        if pts:
            x = [i for i, _ in pts]
            m = [d['mean'] for _, d in pts]
            err = [[d['mean'] - d['ci_low'] if d['ci_low'] is not None else 0 for _, d in pts],
                   [d['ci_high'] - d['mean'] if d['ci_high'] is not None else 0 for _, d in pts]]
            gain.errorbar(x, m, yerr=err, marker='o', capsize=4, label=label)
        px = [(i, [e['mean_px']['mean'] for e in summary['offsets']
                   if (e['arm'], e['variant']) == (level, key)]) for i, level in enumerate(levels)]
        px = [(i, sum(v) / len(v)) for i, v in px if v]
        if px:
            move.plot([i for i, _ in px], [v for _, v in px], marker='o', label=label)
    gain.axhline(0, color='grey', linewidth=0.8)
    for ax, title in ((gain, 'DCN minus plain conv, bbox mAP (95 % CI)'),
                      (move, 'mean |offset| over c3-c5 (px of the input map)')):
        ax.set_xticks(xs, levels)
        ax.set_xlabel('deformation level of the objects (train and val)')
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def build_deformation_report(setup: StudySetup, results: List[dict],
                             date: Optional[str] = None) -> str:
    """Write the deformation study's ``results.md``, ``summary.json`` and
    ``gain_by_level.png`` into ``setup.docs_dir``; return ``results.md``'s path.

    Raises:
        ValueError: no results, runs of different recipes or sweeps, or a setup without
            levels.
    """
    if not setup.levels:
        raise ValueError('setup: expected a study with levels (tools/study.py --levels), '
                         'got one without')
    if not results:
        raise ValueError(f'results: expected at least one finished run under '
                         f'{setup.docs_dir}/runs, got none')
    check_same_recipe(results)
    keys = list(dict.fromkeys(r.key for r in setup.runs()))
    summary = summarize_levels(results, setup.levels, keys)
    date = date or datetime.date.today().isoformat()
    machines = sorted({r.get('machine') or '?' for r in results})
    adopted = sum(1 for r in results if r.get('adopted_from'))
    lines = ['# When does deformable convolution help? Gain against deformation', '',
             f'Report built {date}; regenerate with `{setup.command()}` (`--report-only` '
             'rebuilds it from the committed runs).', '',
             f'Faster R-CNN (narrow ResNet-50 + FPN), the quick-start recipe of '
             f'`{osp.relpath(BASE_CONFIG, REPO_ROOT)}`: {setup.recipe.describe()}; trained '
             'and validated on the embedded dataset generated at each deformation level '
             '(generator seed 0, the same sizes). Δ: the variant minus the plain conv of '
             'the same level, paired by training seed, with a 95 % Student-t interval. '
             'Curve areas: mean bbox mAP over the rotation, scale and shear sweeps of the '
             'level\'s val split.', '',
             f'{len(results)} of {len(setup.runs())} runs finished'
             + (f' ({adopted} taken over from the one-level study, `adopted_from` in their '
                'JSONs: the same runs)' if adopted else '') + '. Trained on: '
             + '; '.join(machines) + '.', '',
             'Offset recipes: ' + '; '.join(f'`{k}`: {OFFSET_RECIPES[k]["label"]}'
                                            for k in setup.offset_recipes) + '.', '',
             '![gain by level](gain_by_level.png)', '']
    lines += _table(summary, setup.levels, keys) + _freed(summary) + _on_object(summary)
    os.makedirs(setup.docs_dir, exist_ok=True)
    report = osp.join(setup.docs_dir, 'results.md')
    with open(report, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    with open(osp.join(setup.docs_dir, 'summary.json'), 'w') as f:
        json.dump(dict(date=date, command=setup.command(), recipe=setup.recipe.as_dict(),
                       levels=list(setup.levels), variants=keys, seeds=list(setup.seeds),
                       runs_finished=len(results), runs_expected=len(setup.runs()),
                       **summary), f, indent=1)
    plot_gain(summary, setup.levels, keys).savefig(osp.join(setup.docs_dir,
                                                             'gain_by_level.png'))
    return report
